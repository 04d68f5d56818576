"""The live training plots: what they keep and show while points stream in."""
# The fixtures come from gui_helpers; pytest passes them by name, which ruff reads as F811.
# ruff: noqa: F811

from __future__ import annotations

import numpy as np
import pytest
from gui_helpers import dialogs, make_window  # noqa: F401
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from app.training import BatchPoint
from widgets.plots import REDRAW_MS, TrainingPlots
from widgets.theme import get_theme


def _points(start, losses, per_epoch=100, lr=0.01):
    return [BatchPoint((start + i + 1) / per_epoch, loss, lr) for i, loss in enumerate(losses)]


@pytest.fixture
def plots(qtbot):
    """The plots on screen, made, for a 3-epoch run."""
    p = TrainingPlots(get_theme("light"))
    qtbot.addWidget(p)
    p.resize(900, 300)
    p.show()
    qtbot.waitExposed(p)
    p.parts()
    p.set_epochs(3)
    return p


def _y_range(plot):
    _, (y0, y1) = plot.getPlotItem().viewRange()
    return y0, y1


def test_every_batch_is_kept_in_order_however_many_arrive(plots):
    """after 5,000 batches in reports of 7, the plots hold each batch's loss and rate, in
    order"""
    losses = 2.0 + np.sin(np.arange(5000))
    for start in range(0, 5000, 7):
        plots.add_batches(_points(start, losses[start:start + 7], lr=0.01 + start))
    x, loss, lr = plots.batch_points()
    assert plots.batch_count() == 5000
    assert np.allclose(x, np.arange(1, 5001) / 100)
    assert np.array_equal(loss, losses)
    assert np.array_equal(lr, 0.01 + np.repeat(np.arange(0, 5000, 7), 7)[:5000])
    plots.flush()
    cx, cy = plots.train_loss.getOriginalDataset()
    assert len(cx) == 5000 and np.array_equal(cy, losses)


def test_the_loss_axis_holds_still_while_the_loss_falls_within_a_step(plots):
    """the loss plot's y axis shows 1 to 2.5 while the loss falls from 2.3 to 1.05, so it is
    not re-ticked at every batch; a loss below 1 moves its bottom a step down"""
    plots.add_batches(_points(0, np.linspace(2.3, 1.2, 30)))
    plots.flush()
    first = _y_range(plots.loss_plot)
    assert 0.95 < first[0] <= 1.0 and 2.5 <= first[1] < 2.55
    plots.add_batches(_points(30, np.linspace(1.15, 1.05, 30)))
    plots.flush()
    assert _y_range(plots.loss_plot) == first
    plots.add_batches(_points(60, [0.9]))
    plots.flush()
    lower = _y_range(plots.loss_plot)
    assert 0.45 < lower[0] <= 0.5 and 2.5 <= lower[1] < 2.55


def test_the_loss_axis_includes_the_validation_loss(plots):
    """a validation loss above every batch's loss is inside the loss plot"""
    plots.add_batches(_points(0, np.linspace(1.0, 0.5, 100)))
    plots.add_epoch(0, 1.8, 0.5, 0.5)
    assert _y_range(plots.loss_plot)[1] >= 1.8


def test_a_hidden_panel_draws_the_points_it_missed_when_shown_again(plots, qtbot):
    """while the plots are hidden the curves wait; shown again, they show every batch that
    came meanwhile"""
    plots.add_batches(_points(0, [2.0, 1.9]))
    plots.flush()
    plots.hide()
    plots.add_batches(_points(2, [1.8, 1.7, 1.6]))
    qtbot.wait(3 * REDRAW_MS)
    assert len(plots.train_loss.getOriginalDataset()[0]) == 2  # no redraw while hidden
    plots.show()
    qtbot.waitUntil(lambda: len(plots.train_loss.getOriginalDataset()[0]) == 5, timeout=2000)
    assert list(plots.train_loss.getOriginalDataset()[1]) == [2.0, 1.9, 1.8, 1.7, 1.6]


def test_plots_behind_another_dock_tab_catch_up_when_their_tab_is_raised(make_window, qtbot):
    """while the Tensor tab covers the Training panel its curves wait; raising the Training
    tab shows every batch that came meanwhile"""
    win = make_window()
    plots = win.train_panel.plots
    plots.set_epochs(3)
    plots.add_batches(_points(0, [2.0, 1.9]))
    plots.flush()
    win.tensor_dock.raise_()
    qtbot.waitUntil(lambda: plots.visibleRegion().isEmpty(), timeout=2000)
    plots.add_batches(_points(2, [1.8, 1.7, 1.6]))
    qtbot.wait(3 * REDRAW_MS)
    assert len(plots.train_loss.getOriginalDataset()[0]) == 2  # no redraw out of sight
    win.train_dock.raise_()
    qtbot.waitUntil(lambda: len(plots.train_loss.getOriginalDataset()[0]) == 5, timeout=2000)


def test_a_zoom_of_the_user_is_kept_while_points_arrive(plots):
    """after the user zooms the loss plot with the wheel, new batches leave the zoom alone"""
    plots.add_batches(_points(0, np.linspace(2.3, 1.0, 30)))
    plots.flush()
    QApplication.processEvents()
    view = plots.loss_plot.viewport()
    centre = QPointF(view.width() / 2, view.height() / 2)
    wheel = QWheelEvent(centre, plots.loss_plot.mapToGlobal(centre), QPoint(0, 0),
                        QPoint(0, 120), Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)
    QApplication.sendEvent(view, wheel)
    zoomed = _y_range(plots.loss_plot)
    assert zoomed[1] - zoomed[0] < 2.5
    plots.add_batches(_points(30, [3.5, 0.2]))
    plots.flush()
    assert _y_range(plots.loss_plot) == zoomed


@pytest.mark.parametrize(("lo", "hi", "expected"), [
    (0.05, 2.3, (0.0, 2.5)),
    (0.61, 0.93, (0.6, 0.95)),
    (-0.3, 1.2, (-0.5, 1.5)),
    (2.0, 2.0, (1.5, 2.5)),
    (0.0, 0.0, (-0.5, 0.5)),
])
def test_stepped_ranges_hold_the_values_on_round_steps(lo, hi, expected):
    """the loss axis runs between round numbers that hold every value"""
    from widgets.plots import stepped_range

    assert stepped_range(lo, hi) == pytest.approx(expected)


def test_the_plots_wait_while_another_thread_imports_numba(qtbot):
    """The plots are made after the panel's first paint, but not while another thread holds
    the import lock (numba and pyqtgraph imported on two threads at once share modules, and
    one import failed); the window goes on meanwhile and the plots appear once it is free."""
    import threading

    from core.kernels.compiled import IMPORT_LOCK

    held, release = threading.Event(), threading.Event()

    def importer():
        with IMPORT_LOCK:
            held.set()
            release.wait(10)

    t = threading.Thread(target=importer)
    t.start()
    held.wait(5)
    try:
        p = TrainingPlots(get_theme("light"))
        qtbot.addWidget(p)
        p.resize(900, 300)
        p.show()
        qtbot.waitExposed(p)
        qtbot.wait(200)  # four retries' worth: the window keeps running
        assert not p.is_made()
    finally:
        release.set()
        t.join()
    qtbot.waitUntil(p.is_made, timeout=3000)
