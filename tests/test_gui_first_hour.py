"""What a new user ran into in the first hour (issue 10): each test is one thing they saw."""
# The fixtures come from gui_helpers; pytest passes them by name, which ruff reads as F811.
# ruff: noqa: F811

from __future__ import annotations

import pytest
from gui_graphs import lenet5
from gui_helpers import dialogs, make_window  # noqa: F401
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication


def _wheel(widget, down=True):
    centre = QPointF(widget.rect().center())
    ev = QWheelEvent(centre, QPointF(widget.mapToGlobal(centre.toPoint())), QPoint(0, 0),
                     QPoint(0, -120 if down else 120), Qt.NoButton, Qt.NoModifier,
                     Qt.NoScrollPhase, False)
    QApplication.sendEvent(widget, ev)
    QApplication.processEvents()


def test_the_wheel_over_the_inspector_scrolls_it_and_leaves_the_parameters_alone(make_window,
                                                                                 qtbot):
    """scrolling the wheel over conv1's out channels in the Inspector scrolls the panel; the
    value stays 6 until the field is clicked (focused)"""
    win = make_window()
    win.set_graph(lenet5())
    conv = win.document.graph.node("conv1")
    win.editing.select_nodes([conv.id])
    ins = win.inspector
    ins.setFixedHeight(160)  # a short dock: the panel scrolls
    QApplication.processEvents()
    spin = ins.editor("out_channels")
    bar = ins.verticalScrollBar()
    ins.ensureWidgetVisible(spin)
    QApplication.processEvents()
    assert bar.maximum() > 0 and bar.value() < bar.maximum()
    win.view.setFocus()
    start = bar.value()
    for _ in range(3):
        _wheel(spin)
    assert conv.params["out_channels"] == 6 and spin.value() == 6
    assert win.document.undo_stack.count() == 0
    assert bar.value() > start  # the wheel went to the scroll area
    assert spin.focusPolicy() == Qt.StrongFocus


@pytest.mark.parametrize("name", ["optimizer", "epochs", "schedule"])
def test_the_wheel_over_the_training_controls_does_not_change_them(make_window, name):
    """the wheel passing over the Training panel's fields leaves their values as they were"""
    win = make_window()
    w = getattr(win.train_panel, name)
    win.view.setFocus()
    before = w.currentText() if hasattr(w, "currentText") else w.value()
    _wheel(w)
    after = w.currentText() if hasattr(w, "currentText") else w.value()
    assert after == before


def test_the_shape_mismatch_message_stays_inside_the_canvas_near_its_edge(make_window):
    """dragging a wire onto a clashing input near the canvas's bottom-right corner shows the
    whole 'shape mismatch' message on screen"""
    from gui_helpers import mouse_drag, port_pos

    win = make_window()
    x = win.editing.add_op("input", QPointF(0, 0), params={"shape": (None, 3)})
    w = win.editing.add_op("input", QPointF(0, 200), params={"shape": (4, 5)})
    mm = win.editing.add_op("matmul", QPointF(320, 100))
    assert win.editing.connect_ports(w, mm, "b")
    target = port_pos(win, mm.name, "a", False)
    shown = win.view.visible_rect()
    # the input port 30 px from the right edge and 30 px from the bottom
    win.view.centerOn(target.x() - shown.width() / 2 + 30, target.y() - shown.height() / 2 + 30)
    QApplication.processEvents()
    seen = []

    def look():
        wire = win.scene._wire
        seen.append((wire.hint, wire.hint_rect(), win.view.visible_rect()))

    mouse_drag(win, port_pos(win, x.name, "out", True), target, after_move=look)
    hint, box, visible = seen[-1]
    assert "shape mismatch" in hint
    assert visible.contains(box), (box, visible)


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("zoom", [1.0, 0.25, 4.0])
def test_the_zoom_readout_shows_its_whole_text(make_window, theme, zoom):
    """at 100 % the status bar reads '100 %' (not '00 %'): the text fits the readout"""
    win = make_window()
    win.set_theme(theme)
    win.view.set_zoom(zoom)
    QApplication.processEvents()
    label = win.zoom_label
    assert label.text() == f"{zoom * 100:.0f} %"
    assert label.fontMetrics().horizontalAdvance(label.text()) <= label.contentsRect().width()


def test_four_digit_counts_fit_in_the_confusion_matrix_cells(make_window):
    """on the full 10,000-image test set (1,135 ones) every count is written inside its cell
    of the confusion matrix the Training panel shows"""
    import numpy as np
    from PySide6.QtGui import QFontMetricsF

    win = make_window()
    m = np.full((10, 10), 3)
    np.fill_diagonal(m, [970, 1125, 1010, 1000, 960, 880, 940, 1015, 960, 990])
    conf = win.train_panel.confusion
    conf.set_matrix(m)
    QApplication.processEvents()
    font = conf.count_font()
    assert font is not None  # the panel's size leaves room for legible counts
    fm = QFontMetricsF(font)
    assert fm.horizontalAdvance("1125") <= conf.cell_size()
    assert font.pointSizeF() >= conf.MIN_COUNT_PT
    conf.grab()  # paints without error


def test_the_accuracy_plot_of_a_one_epoch_run_starts_at_epoch_zero(make_window):
    """after one epoch the accuracy plot's x axis runs from 0 to 1, not from −5"""
    win = make_window()
    plots = win.train_panel.plots
    plots.add_epoch(0, 0.3, 0.9, 0.92)
    QApplication.processEvents()
    (x0, x1), _ = plots.acc_plot.getPlotItem().viewRange()
    assert -0.1 <= x0 <= 0.0 and 1.0 <= x1 <= 1.1
    for _ in range(1, 12):
        plots.add_epoch(_, 0.3, 0.9, 0.92)
    (x0, x1), _ = plots.acc_plot.getPlotItem().viewRange()
    assert -1.0 <= x0 <= 0.0 and 12.0 <= x1 <= 13.0


def _train_xor(win, qtbot):
    from examples import example_path

    assert win.files.open_example(example_path("xor_mlp"))
    win.train_panel.epochs.setValue(3)
    win.act_train.trigger()
    qtbot.waitUntil(lambda: not win.training.is_training(), timeout=30_000)
    assert win.train_panel.plots.batch_count() > 0
    assert win.train_panel.confusion.matrix is not None


def test_file_new_clears_the_last_runs_plots_and_confusion_matrix(make_window, qtbot, dialogs):
    """after training XOR, File ▸ New shows empty plots, no accuracy and no confusion matrix"""
    win = make_window()
    _train_xor(win, qtbot)
    win.act_new.trigger()
    panel = win.train_panel
    assert len(win.document.graph.nodes) == 0
    assert panel.plots.batch_count() == 0 and panel.plots.epoch_count() == 0
    assert panel.confusion.matrix is None
    assert panel.accuracy_label.text() == "–"
    assert "finished" not in panel.status_label.text()


def test_ticking_loss_in_the_inspector_makes_the_graph_trainable_at_once(make_window):
    """ticking 'start backprop here' on LeNet-5's loss node enables Start and the panel stops
    saying 'choose a loss node first'"""
    g = lenet5()
    g.set_loss(None)
    win = make_window()
    win.set_graph(g)
    panel = win.train_panel
    assert "choose a loss node first" in panel.status_label.text()
    assert not panel.start_button.isEnabled()
    win.editing.select_nodes([g.node("loss").id])
    box = win.inspector.editor("__loss__")
    box.click()
    assert g.loss == g.node("loss").id
    assert "choose a loss" not in panel.status_label.text()
    assert panel.start_button.isEnabled()


def test_the_chosen_mnist_folder_stays_chosen_when_other_graphs_open(make_window, monkeypatch):
    """after choosing an MNIST folder for LeNet-5, opening XOR (its own data) and LeNet-5
    again brings back that folder, not the sample"""
    from PySide6.QtWidgets import QFileDialog

    from examples import example_path

    win = make_window()
    assert win.files.open_example(example_path("lenet5"))
    panel = win.train_panel
    monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                        staticmethod(lambda *a, **k: "/data/mnist"))
    i = panel.source.findData("folder")
    panel.source.setCurrentIndex(i)
    panel.source.activated.emit(i)
    assert panel.current_source() == "folder"
    assert win.files.open_example(example_path("xor_mlp"))
    assert panel.current_source() == "graph"
    assert win.files.open_example(example_path("lenet5"))
    assert panel.current_source() == "folder" and panel.folder == "/data/mnist"
    assert panel.settings().folder == "/data/mnist"


def _real_dialog_returning(result):
    """A real (Qt-drawn) file dialog that the user closes at once; the static function's
    return value is ``result``."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QFileDialog

    def run(parent, *_a, **_k):
        d = QFileDialog(parent, "choose")
        d.setOption(QFileDialog.DontUseNativeDialog)
        QTimer.singleShot(0, lambda: d.done(1))
        d.exec()
        return result
    return staticmethod(run)


@pytest.mark.parametrize("how", ["open", "save_as", "mnist_folder"])
def test_ctrl_e_opens_examples_right_after_a_file_dialog_closed(make_window, monkeypatch,
                                                                qtbot, tmp_path, how):
    """closing the Open, Save As or MNIST-folder dialog, then Ctrl+E opens the Examples"""
    from PySide6.QtWidgets import QFileDialog

    from app.examples_dialog import ExamplesDialog
    from examples import example_path

    win = make_window()
    opened = []
    monkeypatch.setattr(ExamplesDialog, "exec", lambda self: opened.append(True) and 0)
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        _real_dialog_returning((str(example_path("lenet5")), "")))
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        _real_dialog_returning((str(tmp_path / "g.json"), "")))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", _real_dialog_returning(""))
    win.activateWindow()
    win.view.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is win.view)
    if how == "open":
        win.act_open.trigger()
    elif how == "save_as":
        win.act_save_as.trigger()
    else:
        win.train_panel.choose_folder()
    QApplication.processEvents()
    target = QApplication.focusWidget()
    assert target is not None and target.window() is win
    qtbot.keyClick(target, Qt.Key_E, Qt.ControlModifier)
    assert opened == [True]


def test_after_recovery_the_cards_are_in_view_once_the_window_has_its_size(make_window,
                                                                           dialogs):
    """restoring unsaved LeNet-5 while the window is still being laid out (small), then the
    window reaching its size: the first cards sit at the left edge, the row mid-height"""
    from PySide6.QtWidgets import QMessageBox

    crashed = make_window(pid=4_000_000, show=False)
    crashed.set_graph(lenet5())
    crashed.editing.set_params(crashed.document.graph.node("conv1").id, {"out_channels": 12})
    crashed.document.autosave_now()
    crashed.scene.detach()
    dialogs.answer = QMessageBox.Yes
    win = make_window()
    win.resize(520, 420)
    QApplication.processEvents()
    assert win.files.offer_recovery()
    QApplication.processEvents()  # the graph is shown while the window is still small …
    win.resize(1400, 880)  # … then the window gets its size (docks restored, dialog gone)
    QApplication.processEvents()
    shown = win.view.visible_rect()
    content = win.scene.content_rect()
    first = win.scene.nodes[win.document.graph.node("image").id].scene_card_rect()
    assert shown.contains(first)
    assert shown.top() <= content.top() and abs(shown.left() - (content.left() - 40)) < 2
    assert abs(shown.center().y() - content.center().y()) < 2


def test_moving_the_view_stops_the_refit(make_window):
    """once the user zooms, a resize of the window keeps the view where the user put it"""
    win = make_window()
    win.set_graph(lenet5())
    QApplication.processEvents()
    win.act_zoom_in.trigger()
    z = win.view.zoom
    win.resize(900, 700)
    QApplication.processEvents()
    assert win.view.zoom == pytest.approx(z)
