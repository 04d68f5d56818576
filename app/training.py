"""Training from the window: a worker thread around :class:`core.train.Trainer`.

The trainer reports through plain callbacks on the worker thread; this module
turns them into Qt signals (queued to the GUI thread). Batch reports are
gathered and sent at most :data:`EMIT_INTERVAL` apart, so a fast model (tens
of thousands of images a second) cannot flood the event loop.

The worker trains a *copy* of the user's graph, so the canvas stays editable;
when the run ends the window puts the trained tensors back with one undoable
command (:class:`app.commands.SetTrainedWeightsCommand`).
"""

from __future__ import annotations

import math
import threading
import time
import traceback
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QThread, Signal

from core.errors import NonFiniteError, StudioError
from core.graph import Graph
from core.kernels import threads as kernel_threads
from core.serialize import graph_from_dict, graph_to_dict
from core.train import Trainer, parse_schedule
from core.train.recipe import TrainSettings, make_training_optimizer, training_data
from widgets.plots import REDRAW_MS

EMIT_INTERVAL = REDRAW_MS / 2000  # seconds: twice as often as the plots redraw
# the training threads' niceness: with both cores busy training, the event loop still gets a
# core the moment it wakes (at equal priority it could wait a whole time slice)
TRAINING_NICE = 5

@dataclass
class BatchPoint:
    """One optimizer step as the plots need it (``x`` counts epochs, fractional)."""

    x: float
    loss: float
    lr: float


@dataclass
class TrainOutcome:
    """What a finished run hands back to the window."""

    status: str  # completed | cancelled | early_stopped
    epochs: int
    iterations: int
    seconds: float
    arrays: dict  # (node id, kind, name) -> array; kind is value | weight | state
    evaluation: object  # core.train.metrics.Evaluation or None
    evaluated_on: str  # "test set (1,000 images)" or "stored data (4 samples)"
    data_description: str
    final_loss: float | None = None  # mean training loss of the last epoch
    device: str = "cpu"  # where it ran: cpu | cuda


def training_copy(graph: Graph) -> Graph:
    """A copy of ``graph`` for the worker: same node ids, arrays copied (not via JSON)."""
    g = graph_from_dict(graph_to_dict(graph, values=False, arrays=False))
    for nid, node in graph.nodes.items():
        twin = g.nodes[nid]
        if node.value is not None:
            twin.value = np.array(node.value, copy=True)
        twin.weights = {k: np.array(v, copy=True) for k, v in node.weights.items()}
        twin.state = {k: np.array(v, copy=True) for k, v in node.state.items()}
    return g


def trained_arrays(graph: Graph) -> dict:
    """Every trainable tensor and layer state of ``graph`` keyed ``(node id, kind, name)``."""
    out = {}
    for node, w in graph.trainable():
        arr = node.value if w is None else node.weights.get(w)
        if arr is not None:
            out[(node.id, "value" if w is None else "weight", w)] = arr
    for node in graph.nodes.values():
        for s, v in node.state.items():
            out[(node.id, "state", s)] = np.asarray(v)
    return out


class TrainingWorker(QThread):
    """Trains a copy of a graph on its own thread and reports through signals.

    Signals
    -------
    status(str)
        What it is doing before the first batch (loading data…).
    batches(list, dict)
        New :class:`BatchPoint` s and the latest progress figures.
    epoch_done(EpochInfo)
    done(TrainOutcome)
    failed(str, str)
        The message and the name of the node to show (empty when none).
    """

    status = Signal(str)
    batches = Signal(list, dict)
    epoch_done = Signal(object)
    done = Signal(object)
    failed = Signal(str, str)

    def __init__(self, graph: Graph, settings: TrainSettings, parent=None):
        super().__init__(parent)
        self.source_graph = graph
        self.settings = settings
        self.graph = training_copy(graph)
        self.trainer = None
        self.full_batch = False
        self._cancel = threading.Event()
        self._paused = False
        self._lock = threading.Lock()
        self._pending: list = []
        self._progress: dict = {}
        self._last_emit = 0.0
        self._start_time = 0.0

    # ------------------------------------------------------------ control
    def cancel(self):
        """Stop after the current batch (also while paused or still loading data)."""
        with self._lock:
            self._cancel.set()
            if self.trainer is not None:
                self.trainer.cancel()

    def set_paused(self, paused: bool):
        with self._lock:
            self._paused = bool(paused)
            if self.trainer is not None:
                (self.trainer.pause if paused else self.trainer.resume)()

    @property
    def paused(self) -> bool:
        return self._paused

    # ---------------------------------------------------------------- run
    def run(self):
        kernel_threads.lower_thread_priority(TRAINING_NICE)
        kernel_threads.lower_helper_priority(TRAINING_NICE)
        try:
            self._run_reporting()
        finally:
            # the copy, the trainer and its executors are big: not kept by a finished worker
            with self._lock:
                self.trainer = None
                self.graph = None

    def _run_reporting(self):
        try:
            self._run()
        except NonFiniteError as exc:
            self._flush(force=True)  # the steps before the failure belong on the plot
            self.failed.emit(f"{exc}. The weights in your graph were left as they were "
                             "before this run.", exc.node)
        except StudioError as exc:
            self._flush(force=True)
            self.failed.emit(str(exc), "")
        except (ValueError, OSError, MemoryError) as exc:
            self._flush(force=True)
            self.failed.emit(f"{type(exc).__name__}: {exc}", "")
        except Exception as exc:  # noqa: BLE001 - a bug must reach the user, not kill the thread
            traceback.print_exc()
            self._flush(force=True)
            self.failed.emit(f"unexpected error: {type(exc).__name__}: {exc}", "")

    def _run(self):
        s = self.settings
        self._start_time = time.perf_counter()
        data, self.full_batch = training_data(self.graph, s, self.status.emit)
        optimizer, lr = make_training_optimizer(s.optimizer, s.lr)
        schedule = parse_schedule(s.schedule, lr, s.epochs)
        if s.reset_weights:
            self.graph.initialize(s.seed, reinit=True)
        self.status.emit(f"Training on {data.description}: {len(data.train):,} samples"
                         + (f", {len(data.val):,} for validation" if data.val else "")
                         + (" (on the GPU)" if s.device == "cuda" else ""))
        with self._lock:
            self.trainer = Trainer(self.graph, optimizer, schedule, batch_size=s.batch_size,
                                   seed=s.seed, grad_norms=False, device=s.device)
            if self._cancel.is_set():
                self.trainer.cancel()
            if self._paused:
                self.trainer.pause()
        self._epochs = s.epochs
        self._start_time = time.perf_counter()
        result = self.trainer.fit(data.train, data.val, s.epochs, on_batch=self._on_batch,
                                  on_epoch=self._on_epoch)
        self._flush(force=True)
        evaluation, on = None, ""
        if result.status != "cancelled" and self.trainer.has_scores \
                and not self.full_batch:
            if data.test is not None:
                self.status.emit("Evaluating on the test set…")
                evaluation, on = self.trainer.evaluate(data.test), \
                    f"test set ({len(data.test):,} images)"
            else:
                evaluation, on = self.trainer.evaluate(data.train), \
                    f"stored data ({len(data.train):,} samples)"
        last = self.trainer.history[-1] if self.trainer.history else {}
        self.done.emit(TrainOutcome(result.status, result.epochs, result.iterations,
                                    time.perf_counter() - self._start_time,
                                    trained_arrays(self.graph), evaluation, on,
                                    data.description, last.get("train_loss"),
                                    self.trainer.device))

    # ---------------------------------------------------------- callbacks
    def _on_batch(self, info):
        x = info.epoch + (info.batch + 1) / max(info.batches, 1)
        self._pending.append(BatchPoint(x, info.loss, info.lr))
        done = info.epoch * info.batches + info.batch + 1
        total = self._epochs * info.batches
        elapsed = time.perf_counter() - self._start_time
        self._progress = {
            "epoch": info.epoch, "epochs": self._epochs, "batch": info.batch,
            "batches": info.batches, "fraction": done / max(total, 1),
            "images_per_second": info.images_per_second, "loss": info.loss, "lr": info.lr,
            "eta": elapsed / done * (total - done) if done else math.nan,
        }
        self._flush(force=info.batch + 1 == info.batches)

    def _on_epoch(self, einfo):
        if self.full_batch:
            # no target is fed in this mode, so the trainer's accuracy (0) means nothing
            einfo.train_accuracy = math.nan
        self._flush(force=True)
        self.epoch_done.emit(einfo)

    def _flush(self, force=False):
        now = time.perf_counter()
        if not self._pending or (not force and now - self._last_emit < EMIT_INTERVAL):
            return
        self._last_emit = now
        points, self._pending = self._pending, []
        self.batches.emit(points, dict(self._progress))
