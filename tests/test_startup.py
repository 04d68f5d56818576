"""Start-up: the slow imports wait until what needs them is shown or asked for."""
# The fixtures come from gui_helpers; pytest passes them by name, which ruff reads as F811.
# ruff: noqa: F811

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from gui_helpers import dialogs, make_window  # noqa: F401
from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QApplication

from examples import example_path

ROOT = Path(__file__).resolve().parents[1]


def _run(args, tmp_path, code=None):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT),
               XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"))
    cmd = [sys.executable] + (["-c", code] if code else ["-m", "app", *args])
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_window_paints_its_canvas_before_pyqtgraph_is_imported(tmp_path):
    """backprop-studio --startup-time shows LeNet-5 and reports its first painted canvas; by
    then neither the plotting library (it waits for the plots) nor the graph library (the
    preset opens at its stored positions, nothing is laid out) nor the downloader's web
    client nor the stepping panels' modules nor the stepping session have been imported"""
    lines = [json.loads(s) for s in _run(["--startup-time"], tmp_path).splitlines()
             if s.startswith("{")]
    assert len(lines) == 1
    assert 0 < lines[0]["first_paint_s"] < 120
    assert "pyqtgraph" in lines[0]["not_loaded"]
    assert "networkx" in lines[0]["not_loaded"]
    assert "urllib.request" in lines[0]["not_loaded"]
    for later in ("widgets.chain_rule_panel", "widgets.tensor_view", "widgets.digit_input",
                  "core.stepping.session"):
        assert later in lines[0]["not_loaded"]


def test_reading_and_running_a_graph_file_does_not_import_networkx(tmp_path):
    """loading LeNet-5, ordering it and writing it back, and running f = a·b + c, need no
    networkx"""
    code = """
import sys
from core.executor import Executor
from core.serialize import graph_to_dict, load_graph
from examples import example_path
g = load_graph(example_path("lenet5"))
g.order()
graph_to_dict(g)
g = load_graph(example_path("abc"))
Executor(g).run(loss=g.loss)
print("networkx" in sys.modules)
"""
    assert _run([], tmp_path, code).strip() == "False"


def test_the_training_plots_appear_once_the_window_has_painted(make_window, qtbot):
    """the Training panel's loss, accuracy and learning-rate plots are there right after the
    window's first frame"""
    win = make_window()
    plots = win.train_panel.plots
    qtbot.waitUntil(plots.is_made, timeout=5000)
    qtbot.waitUntil(lambda: all(p.isVisible() for p in (plots.loss_plot, plots.acc_plot,
                                                        plots.lr_plot)), timeout=5000)


def test_points_received_before_the_plots_exist_are_drawn_when_they_appear(qtbot):
    """batches that arrive while the Training panel is hidden show on its plots later"""
    from app.training import BatchPoint
    from widgets.plots import TrainingPlots
    from widgets.theme import get_theme

    plots = TrainingPlots(get_theme("light"))
    qtbot.addWidget(plots)
    plots.add_batches([BatchPoint(0.5, 2.0, 0.01), BatchPoint(1.0, 1.5, 0.01)])
    plots.add_epoch(0, 1.4, 0.6, 0.65)
    assert not plots.is_made()
    x, y = plots.train_loss.getData()
    assert list(x) == [0.5, 1.0] and list(y) == [2.0, 1.5]
    assert list(plots.val_acc.getData()[1]) == [0.65]


def test_the_stepping_panels_are_docked_once_the_window_has_painted(make_window, qtbot):
    """the Chain Rule, Tensor and Digit docks start empty and get their panels right after
    the window's first frame, in the window's theme"""
    win = make_window(show=False)
    docks = (win.chain_dock, win.tensor_dock, win.digit_dock)
    assert [d.widget() for d in docks] == [None, None, None]
    win.set_theme("dark")
    win.show()
    qtbot.waitUntil(lambda: all(d.widget() is not None for d in docks), timeout=5000)
    assert [d.widget() for d in docks] == [win.chain_panel, win.tensor_view, win.digit_input]
    assert all(d.widget().theme is win.theme for d in docks)
    assert win.stepping.chain_panel is win.chain_panel
    assert win.stepping.tensor_view is win.tensor_view


def test_a_first_step_before_the_first_paint_makes_and_tells_the_panels(make_window):
    """Step Forward on a window not yet painted makes the stepping panels first, and they
    show the new session"""
    win = make_window(show=False)
    assert win.files.open_example(example_path("abc"))
    assert win.chain_dock.widget() is None
    win.act_step.trigger()
    session = win.stepping.session
    assert session is not None and session.position == 1
    assert win.chain_dock.widget() is win.chain_panel
    assert win.chain_panel.session is session
    assert win.tensor_view.session is session


def test_raising_a_stepping_tab_before_the_panels_exist_docks_them(make_window):
    """a tab brought forward before the panels were made (a restored layout, a click)
    shows its panel, never an empty dock"""
    win = make_window(show=False)
    win.tensor_dock.show()
    win.tensor_dock.raise_()
    win.show()
    QApplication.processEvents()
    assert win.tensor_dock.widget() is win.tensor_view
    assert win.tensor_view.isVisible()


def test_the_digit_panel_reads_the_embedded_sample_when_its_tab_is_first_raised(
        make_window, qtbot, monkeypatch):
    """the window starts without reading the embedded MNIST sample; raising the Digit tab
    shows the sample's test and training sets, on image 0, in its first frame"""
    import widgets.digit_input as digit_input

    reads = []
    read = digit_input.load_sample
    monkeypatch.setattr(digit_input, "load_sample", lambda *a: reads.append(a) or read(*a))
    win = make_window()
    assert reads == []
    d = win.digit_input
    painted = []
    d.set_combo.installEventFilter(_PaintLog(painted, d))
    win.digit_dock.raise_()
    qtbot.waitUntil(lambda: bool(painted), timeout=5000)
    assert len(reads) == 1
    assert painted[0] == "embedded sample · test set (1,000)"  # never painted empty
    assert [d.set_combo.itemText(i) for i in range(d.set_combo.count())] == [
        "embedded sample · test set (1,000)", "embedded sample · train set (5,000)"]
    assert d.where_label.text() == "embedded sample · test set · image 0 of 1,000"


class _PaintLog(QObject):
    """Notes the text a combo box shows each time it is painted."""

    def __init__(self, log, parent):
        super().__init__(parent)
        self.log = log

    def eventFilter(self, obj, event):  # noqa: N802 - Qt override
        if event.type() == QEvent.Paint:
            self.log.append(obj.currentText())
        return False


def test_a_digit_panel_shown_on_its_own_shows_the_sample_at_once(qtbot):
    """a Digit panel shown by itself offers the embedded sample's sets when it appears"""
    from widgets.digit_input import DigitInput
    from widgets.theme import LIGHT

    d = DigitInput(LIGHT, seed=0)
    qtbot.addWidget(d)
    d.show()
    assert d.set_combo.count() == 2
    assert d.where_label.text() == "embedded sample · test set · image 0 of 1,000"
