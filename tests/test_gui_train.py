"""The Training panel: training the open graph from the window, with live plots."""
# The fixtures come from gui_helpers; pytest passes them by name, which ruff reads as F811.
# ruff: noqa: F811

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest
from conftest import SHARED_MNIST
from gui_helpers import dialogs, make_window  # noqa: F401
from PySide6.QtCore import QTimer

from core.graph import Graph
from examples import example_path

RUN_TIMEOUT_MS = 30_000


@pytest.fixture
def window(make_window):
    """A window on a preset, with the Training panel ready for a short run."""
    def make(preset: str, epochs: int = 1, limit: int = 0):
        win = make_window()
        assert win.files.open_example(example_path(preset))
        panel = win.train_panel
        panel.epochs.setValue(epochs)
        panel.limit.setValue(limit)
        return win
    return make


def _finish(win, qtbot):
    qtbot.waitUntil(lambda: not win.training.is_training(), timeout=RUN_TIMEOUT_MS)


def test_training_on_the_embedded_sample_fills_the_plots_and_shows_test_accuracy(window,
                                                                               qtbot):
    """starting training on the embedded sample fills the loss plot and finishes with a test
    accuracy"""
    win = window("logistic_regression_mnist", epochs=1, limit=2000)
    panel = win.train_panel
    assert panel.current_source() == "sample"  # ready at start: no download, no folder
    panel.start_button.click()
    assert win.training.is_training()
    _finish(win, qtbot)
    x, y = panel.plots.train_loss.getData()
    # 2,000 images, 10 % held out, batches of 64: 29 steps, each one plotted
    assert len(x) == 29 and np.all(np.isfinite(y))
    assert x[-1] == pytest.approx(1.0)
    vx, vy = panel.plots.val_loss.getData()
    assert list(vx) == [1.0] and 0 < vy[0] < y[0]
    lx, ly = panel.plots.lr_curve.getData()
    assert len(lx) == 29 and np.allclose(ly, 0.01)
    text = panel.accuracy_label.text()
    assert text.endswith("%") and 60 < float(text.rstrip(" %")) <= 100
    assert "test set (1,000 images)" in panel.accuracy_caption.text()
    assert panel.confusion.matrix.sum() == 1000
    assert panel.start_button.isEnabled() and not panel.stop_button.isEnabled()


def test_the_trained_weights_land_in_the_graph_as_one_undoable_step(window, qtbot):
    """after a run the graph holds the trained weights; Undo puts back the previous ones"""
    win = window("logistic_regression_mnist", epochs=1, limit=500)
    linear = win.document.graph.node("linear")
    assert not linear.weights  # a preset ships without weights
    win.train_panel.start_button.click()
    _finish(win, qtbot)
    trained = {k: v.copy() for k, v in linear.weights.items()}
    assert set(trained) == {"W", "b"} and np.abs(trained["W"]).sum() > 0
    stack = win.document.undo_stack
    assert stack.count() == 1 and stack.undoText().startswith("Train")
    assert win.isWindowModified()
    win.document.undo_stack.undo()
    assert not linear.weights
    win.document.undo_stack.redo()
    assert np.array_equal(linear.weights["W"], trained["W"])


def test_stop_cancels_promptly_and_reenables_start(window, qtbot):
    """Stop during a LeNet-5 run ends it within a second and Start works again"""
    win = window("lenet5", epochs=20)
    panel = win.train_panel
    panel.start_button.click()
    qtbot.waitUntil(lambda: panel.plots.batch_count() > 0, timeout=RUN_TIMEOUT_MS)
    t0 = time.perf_counter()
    panel.stop_button.click()
    _finish(win, qtbot)
    assert time.perf_counter() - t0 < 1.0
    assert panel.start_button.isEnabled() and not panel.stop_button.isEnabled()
    assert "stopped" in panel.status_label.text()
    assert panel.plots.epoch_count() == 0  # it did not run on to the end of the epoch


def test_the_window_keeps_handling_events_while_it_trains(window, qtbot):
    """a timer keeps firing while LeNet-5 trains: the GUI never freezes"""
    win = window("lenet5", epochs=2, limit=3000)
    ticks = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    win.train_panel.start_button.click()
    t0 = time.perf_counter()
    _finish(win, qtbot)
    timer.stop()
    run = time.perf_counter() - t0
    busy = [t for t in ticks if t >= t0]
    assert run > 0.3  # it did take a while …
    assert len(busy) >= 10  # … and the event loop ran all along:
    # a frozen window would miss ticks for the whole run; a busy machine only delays some
    assert max(np.diff(busy)) < max(0.5, run / 3)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="niceness is per thread on Linux")
def test_training_runs_below_the_event_loops_priority(window, qtbot, monkeypatch):
    """The worker and the layer pool's helpers train at TRAINING_NICE, the GUI thread stays
    where it was: with both cores busy the event loop still gets one as soon as it wakes."""
    from app import training
    from core.kernels import threads

    seen = {}
    original = training.TrainingWorker._on_batch

    def on_batch(worker, info):
        seen.setdefault("worker", os.getpriority(os.PRIO_PROCESS, 0))
        original(worker, info)

    monkeypatch.setattr(training.TrainingWorker, "_on_batch", on_batch)
    # helpers of this test's own, started by this thread (so at its priority), as when the
    # window has stepped a graph before it trains
    monkeypatch.setattr(threads, "_pool", None)
    monkeypatch.setattr(threads, "_helper_nice", 0)
    monkeypatch.setattr(threads, "_WORKERS", 2)
    gui = os.getpriority(os.PRIO_PROCESS, 0)
    pool = threads._workers()
    try:
        assert pool.submit(os.getpriority, os.PRIO_PROCESS, 0).result() == gui
        win = window("lenet5", epochs=1, limit=600)
        win.act_train.trigger()
        assert not win._start_up_settled()  # nothing is frozen while a run holds its arrays
        _finish(win, qtbot)
        assert seen["worker"] == max(gui, training.TRAINING_NICE)
        assert os.getpriority(os.PRIO_PROCESS, 0) == gui
        assert pool.submit(os.getpriority, os.PRIO_PROCESS, 0).result() \
            == max(gui, training.TRAINING_NICE)
    finally:
        pool.shutdown(wait=True)


def test_the_loss_plot_spans_the_whole_run_from_its_first_batch(window, qtbot):
    """during a 3-epoch run the loss and learning-rate plots run from epoch 0 to 3 at once,
    so their axes stay put while the curves grow"""
    win = window("logistic_regression_mnist", epochs=3, limit=2000)
    panel = win.train_panel
    win.act_train.trigger()
    qtbot.waitUntil(lambda: panel.plots.batch_count() > 0, timeout=RUN_TIMEOUT_MS)
    panel.plots.flush()
    for plot in (panel.plots.loss_plot, panel.plots.lr_plot):
        (x0, x1), _ = plot.getPlotItem().viewRange()
        assert -0.2 < x0 <= 0.0 and 3.0 <= x1 < 3.2
    panel.stop_button.click()
    _finish(win, qtbot)


def test_pause_holds_training_and_resume_continues(window, qtbot):
    """Pause stops the steps (the plot stops growing), Resume carries on to the end"""
    win = window("lenet5", epochs=1, limit=1000)
    panel = win.train_panel
    panel.start_button.click()
    panel.pause_button.click()  # held before its next batch, however fast the machine
    assert panel.pause_button.text() == "Resume"
    qtbot.wait(300)  # let a batch in flight arrive
    held = panel.plots.batch_count()
    qtbot.wait(400)
    assert panel.plots.batch_count() == held and win.training.is_training()
    panel.pause_button.click()
    _finish(win, qtbot)
    assert panel.plots.epoch_count() == 1 and "finished" in panel.status_label.text()


def test_a_graph_with_its_own_data_trains_on_it(window, qtbot):
    """XOR trains on the four samples stored in its inputs, no image data involved"""
    win = window("xor_mlp", epochs=50)
    panel = win.train_panel
    assert panel.current_source() == "graph"
    panel.start_button.click()
    _finish(win, qtbot)
    assert panel.plots.epoch_count() == 50
    assert "stored data (4 samples)" in panel.accuracy_caption.text()


def test_a_graph_with_nothing_to_train_cannot_start(window):
    """f = a·b + c has no weights: Start is disabled and the panel says why"""
    win = window("abc")
    panel = win.train_panel
    assert not panel.start_button.isEnabled()
    assert "nothing to train" in panel.status_label.text()


def test_a_textbook_graph_trains_on_the_values_stored_in_it(window, qtbot):
    """the 2-2-2 network (no features input) takes one step per epoch and its error falls"""
    win = window("net_222", epochs=30)
    panel = win.train_panel
    assert panel.current_source() == "graph" and panel.start_button.isEnabled()
    before = win.document.graph.node("W1").value.copy()
    panel.optimizer.setCurrentText("sgd")
    panel.lr.setText("0.5")
    panel.start_button.click()
    _finish(win, qtbot)
    _, loss = panel.plots.train_loss.getData()
    assert len(loss) == 30 and loss[-1] < 0.5 * loss[0]
    assert panel.accuracy_caption.text() == "Loss after the last epoch"
    assert panel.plots.train_acc.getData()[0] is None or \
        len(panel.plots.train_acc.getData()[0]) == 0  # no target fed: no accuracy to show
    assert not np.array_equal(win.document.graph.node("W1").value, before)
    assert "__" not in "".join(n.name for n in win.document.graph.nodes.values())  # no helper node


def _exploding_graph() -> Graph:
    g = Graph("float32")
    x = g.add("input", name="x", shape=(None, 2), role="features",
              value=np.array([[1, 2], [3, 4], [5, 6], [7, 8]], "float32"))
    t = g.add("input", name="t", shape=(None,), role="target", value=np.array([0, 1, 0, 1]))
    w = g.add("parameter", name="W", shape=(2, 2), init="ones")
    scores = g.add("matmul", x, w, name="scores")
    g.set_loss(g.add("softmax_cross_entropy", scores, t, name="loss"))
    return g


def test_a_nan_stops_training_names_the_node_and_selects_it(make_window, qtbot):
    """a huge learning rate overflows: the message names the node and the canvas selects it"""
    win = make_window()
    win.set_graph(_exploding_graph())
    panel = win.train_panel
    panel.epochs.setValue(20)
    panel.optimizer.setCurrentText("sgd")
    panel.lr.setText("1e38")
    panel.start_button.click()
    _finish(win, qtbot)
    assert "'scores'" in panel.status_label.text()
    assert win.editing.selected_node_ids() == [win.document.graph.node("scores").id]
    assert panel.start_button.isEnabled()
    assert win.document.undo_stack.count() == 0  # the blown-up weights were not put in the graph


def _pick_folder(monkeypatch, panel, folder):
    from PySide6.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                        staticmethod(lambda *a, **k: str(folder)))
    i = panel.source.findData("folder")
    panel.source.setCurrentIndex(i)
    panel.source.activated.emit(i)


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="no MNIST files in ../shared")
def test_a_folder_of_idx_files_chosen_in_the_dialog_is_trained_on(window, qtbot, monkeypatch):
    """choosing the MNIST folder trains on it and reports accuracy on its 10,000 test digits"""
    win = window("logistic_regression_mnist", epochs=1, limit=1000)
    panel = win.train_panel
    _pick_folder(monkeypatch, panel, SHARED_MNIST)
    assert panel.current_source() == "folder" and panel.folder == str(SHARED_MNIST)
    panel.start_button.click()
    _finish(win, qtbot)
    assert "test set (10,000 images)" in panel.accuracy_caption.text()
    assert panel.confusion.matrix.sum() == 10_000


def test_a_folder_without_the_idx_files_is_reported(window, qtbot, monkeypatch, tmp_path):
    """a folder without MNIST files gives a message naming it, and Start works again"""
    empty = tmp_path / "nothing here"
    empty.mkdir()
    win = window("logistic_regression_mnist")
    panel = win.train_panel
    _pick_folder(monkeypatch, panel, empty)
    panel.start_button.click()
    _finish(win, qtbot)
    assert "nothing here" in panel.status_label.text()
    assert panel.start_button.isEnabled() and win.document.undo_stack.count() == 0


def test_closing_the_window_stops_a_run(window, qtbot):
    """closing the window while LeNet-5 trains stops the worker thread cleanly"""
    win = window("lenet5", epochs=20)
    win.train_panel.start_button.click()
    worker = win.training._worker
    qtbot.waitUntil(lambda: win.train_panel.plots.batch_count() > 0, timeout=RUN_TIMEOUT_MS)
    assert win.close()
    assert worker.isFinished() and not win.training.is_training()


def test_the_graph_stays_editable_while_it_trains(window, qtbot):
    """renaming a node during a run works; the trained weights still land, after the rename"""
    win = window("logistic_regression_mnist", epochs=1, limit=1000)
    panel = win.train_panel
    panel.start_button.click()
    panel.pause_button.click()  # held before its next batch: the run cannot end meanwhile
    assert win.training.is_training()
    win.editing.rename_node(win.document.graph.node("linear").id, "classifier")
    assert win.training.is_training() and win.document.graph.node("classifier")
    panel.pause_button.click()
    _finish(win, qtbot)
    stack = win.document.undo_stack
    assert stack.count() == 2
    assert stack.text(0).startswith("Rename") and stack.text(1).startswith("Train")
    assert set(win.document.graph.node("classifier").weights) == {"W", "b"}


def test_finished_runs_leave_no_worker_trainer_or_graph_copy_behind(window, qtbot, monkeypatch):
    """after five runs in one window, no worker thread, trainer or training copy of the graph
    is still alive (the memory of each run is given back)"""
    import gc
    import weakref

    from PySide6.QtCore import QCoreApplication, QEvent

    from app.training import TrainingWorker

    refs = []
    run = TrainingWorker._run

    def recording_run(self):
        refs.extend([weakref.ref(self), weakref.ref(self.graph)])
        try:
            run(self)
        finally:
            if self.trainer is not None:
                refs.append(weakref.ref(self.trainer))

    monkeypatch.setattr(TrainingWorker, "_run", recording_run)
    win = window("xor_mlp", epochs=2)
    for _ in range(5):
        win.train_panel.start_button.click()
        _finish(win, qtbot)
    assert len(refs) == 15

    def all_gone():
        QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
        gc.collect()
        return all(r() is None for r in refs)

    qtbot.waitUntil(all_gone, timeout=10_000)
    assert not win.findChildren(TrainingWorker)


def test_start_up_is_frozen_out_of_the_collector_once_settled_and_thawed_by_a_new_graph(
        window, qtbot, monkeypatch):
    """the window's collector freezes what start-up left once the window is idle (kernels
    loaded, plots made, nothing training or stepping), and a replaced graph gives it back"""
    from PySide6.QtWidgets import QApplication

    from app import main_window
    from core.kernels import compiled
    from core.serialize import load_graph

    calls = []
    monkeypatch.setattr(main_window.gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(main_window.gc, "unfreeze", lambda: calls.append("unfreeze"))
    monkeypatch.setattr(main_window.gc, "get_freeze_count", lambda: calls.count("freeze"))
    collector = main_window.GuiThreadCollector(interval=3600)  # ticked by hand below
    collector.timer.stop()
    monkeypatch.setattr(QApplication.instance(), "_gui_thread_gc", collector, raising=False)
    win = window("lenet5")
    assert collector.freeze_when is not None  # set by the window's first paint
    compiled.wait_loaded(30)
    qtbot.waitUntil(win._start_up_settled, timeout=10_000)
    collector.check()
    collector.check()
    assert calls == ["freeze"]
    win.set_graph(load_graph(example_path("mlp_784_30_10")))
    assert calls == ["freeze", "unfreeze"]
