"""Training from the window: start, pause and stop a worker, show its progress, keep its weights."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from app.commands import SetTrainedWeightsCommand
from app.document import Document
from app.training import TrainingWorker
from core.errors import StudioError
from core.train import find_role
from core.train.recipe import training_problem


class TrainingController(QObject):
    """Runs one training worker at a time for the document and reports to the panel.

    The worker's signals are queued to this controller, a QObject of the GUI thread.

    Parameters
    ----------
    document : Document
        Whose graph is trained; the trained weights land on its undo stack.
    panel : TrainPanel
        The Training panel (settings in, curves and results out).
    parent : QObject
        Owner (the window).

    Attributes
    ----------
    running_changed : Signal(bool)
        A run started (True) or ended (False).
    message : Signal(str, int)
        A status message and how long to show it (ms).
    show_node : Signal(str)
        Id of the node a failed run named, to select and centre.
    """

    running_changed = Signal(bool)
    message = Signal(str, int)
    show_node = Signal(str)

    def __init__(self, document: Document, panel, parent=None):
        super().__init__(parent)
        self.document = document
        self.panel = panel
        self._worker: TrainingWorker | None = None
        panel.start_requested.connect(self.start_training)
        panel.pause_toggled.connect(self.pause_training)
        panel.stop_requested.connect(self.stop_training)

    def offer_training_data(self):
        """Pick the data that fits the open graph: its stored samples, else the MNIST sample."""
        panel = self.panel
        graph = self.document.graph
        panel.set_problem(training_problem(graph))
        if self.is_training():
            return
        panel.clear_results()  # the last run's curves belong to the graph that was closed
        if panel.status_label.property("kind") != "warning":
            panel.set_status("")
        try:
            features = find_role(graph, "features")
        except StudioError:
            features = None
        if features is None or features.value is not None:
            # its own samples, or no features input at all (a textbook graph)
            panel.set_source("graph")
        elif panel.current_source() == "graph":
            panel.use_image_source()

    def is_training(self) -> bool:
        return self._worker is not None

    def start_training(self, settings) -> bool:
        """Train a copy of the open graph on a worker thread; False if it cannot start.

        The canvas stays editable while it runs; at the end the trained tensors
        land in the graph as one undoable step.
        """
        if self._worker is not None:
            return False
        problem = training_problem(self.document.graph)
        if problem:
            self.panel.show_error("Cannot train this graph: " + problem)
            return False
        worker = TrainingWorker(self.document.graph, settings, self)
        worker.status.connect(lambda text: self.panel.set_status(text))
        worker.batches.connect(self._on_train_batches)
        worker.epoch_done.connect(self._on_train_epoch)
        worker.done.connect(self._on_train_done)
        worker.failed.connect(self._on_train_failed)
        # a finished worker (a QThread child of this controller) would otherwise live as
        # long as the window
        worker.finished.connect(worker.deleteLater)
        self._worker = worker
        self.running_changed.emit(True)
        self.panel.begin_run()
        self.panel.plots.set_epochs(settings.epochs)
        self.panel.set_status("Preparing…")
        worker.start()
        return True

    def pause_training(self, paused: bool):
        if self._worker is not None:
            self._worker.set_paused(paused)
            if paused:
                self.panel.show_paused()
                self.panel.set_status("Paused — Resume continues with the next batch.")

    def stop_training(self, wait: bool = False):
        """Ask the run to stop after the current batch (the weights so far are kept)."""
        worker = self._worker
        if worker is None:
            return
        worker.cancel()
        self.panel.set_status("Stopping…")
        if wait:
            worker.wait()
            self._worker = None
            self.running_changed.emit(False)

    def _on_train_batches(self, points, progress):
        self.panel.plots.add_batches(points)
        if self._worker is not None and not self._worker.paused:
            self.panel.show_progress(progress)

    def _on_train_epoch(self, info):
        self.panel.plots.add_epoch(info.epoch, info.val_loss, info.train_accuracy,
                                   info.val_accuracy)

    def _finish_worker(self):
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.wait()
        self.running_changed.emit(False)
        return worker

    def _on_train_done(self, outcome):
        worker = self._finish_worker()
        panel = self.panel
        panel.show_result(outcome.evaluation, outcome.evaluated_on, outcome.status,
                          outcome.seconds, outcome.final_loss)
        what = {"completed": "Training finished", "cancelled": "Training stopped",
                "early_stopped": "Training stopped early"}.get(outcome.status, outcome.status)
        if outcome.device == "cuda":
            what += " on the GPU"
        what += f" after {outcome.iterations:,} steps ({outcome.epochs} epoch"
        what += "s)" if outcome.epochs != 1 else ")"
        graph = self.document.graph
        if worker is None or worker.source_graph is not graph:
            panel.set_status(what + "; the graph it trained was closed, so its weights were "
                             "not kept.", "warning")
            return
        if outcome.iterations == 0:
            panel.set_status(what + "; the weights are unchanged.")
            return
        name = graph.name or "graph"
        cmd = SetTrainedWeightsCommand(graph, outcome.arrays,
                                       f"Train '{name}' ({outcome.iterations:,} steps)")
        self.document.undo_stack.push(cmd)
        note = (" Some tensors changed shape while it trained and were left out: "
                + ", ".join(cmd.skipped[:4]) + ("…" if len(cmd.skipped) > 4 else "")
                + ".") if cmd.skipped else ""
        panel.set_status(f"{what}. The trained weights are in the graph (Edit ▸ Undo puts "
                         f"back the previous ones; Save keeps them).{note}", "ok")
        self.message.emit(what, 6000)

    def _on_train_failed(self, message: str, node_name: str):
        worker = self._finish_worker()
        self.panel.show_failure(message)
        self.message.emit("Training stopped: " + message, 10000)
        graph = self.document.graph
        if node_name and worker is not None and worker.source_graph is graph:
            try:
                nid = graph.node(node_name).id
            except StudioError:
                return
            self.show_node.emit(nid)
