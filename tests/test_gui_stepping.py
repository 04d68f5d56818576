"""Stepping from the window: the Step menu and toolbar, the step list, breakpoints, resets.

The canvas overlay (G2) and the chain-rule panel and tensor view (G3) are other
branches; here small fakes with their interface stand in, so what the controller
tells them is checked too.
"""
# The fixtures come from gui_helpers; pytest passes them by name, which ruff reads as F811.
# ruff: noqa: F811

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import SHARED_MNIST
from gui_helpers import dialogs, make_window  # noqa: F401
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QWidget

from core.graph import Graph
from examples import example_path


class FakeOverlay:
    """Records what the canvas overlay is asked to draw."""

    def __init__(self):
        self.shown, self.cleared, self.animation_enabled = [], 0, None
        self.pictures_enabled = None

    def show(self, session):
        self.shown.append(session.position)

    def clear(self):
        self.cleared += 1

    def set_animation(self, enabled):
        self.animation_enabled = enabled

    def set_pictures(self, enabled):
        self.pictures_enabled = enabled


class FakeChainPanel(QWidget):
    """The chain-rule panel's interface: refreshes, predict mode and checks."""

    check_gradient_requested = Signal(str)

    def __init__(self):
        super().__init__()
        self.session, self.refreshes, self.predict, self.checks = None, 0, None, []

    def set_session(self, session):
        self.session = session

    def refresh(self):
        self.refreshes += 1

    def set_predict_mode(self, on):
        self.predict = on

    def show_check(self, report):
        self.checks.append((report, threading.current_thread() is threading.main_thread()))


class FakeTensorView(QWidget):
    def __init__(self):
        super().__init__()
        self.session, self.shown = None, []

    def set_session(self, session):
        self.session = session

    def show_tensor(self, node_id, port=0, grad=False, weight=None):
        self.shown.append((node_id, port, grad))


@pytest.fixture
def window(make_window):
    """A window on a preset, with fake G2/G3 views attached to the stepping controller."""
    def make(preset=None, graph=None):
        win = make_window()
        if preset is not None:
            assert win.files.open_example(example_path(preset))
        else:
            win.set_graph(graph)
        win.step_ui.panels()  # the real panels first, or a first step would attach them
        win.fake_overlay, win.fake_chain, win.fake_tensor = (FakeOverlay(), FakeChainPanel(),
                                                            FakeTensorView())
        win.stepping.attach_views(win.fake_overlay, win.fake_chain, win.fake_tensor)
        return win
    return make


def status(win) -> str:
    return win.statusBar().currentMessage()


def select(win, name):
    win.editing.select_nodes([win.document.graph.node(name).id])


def test_evaluate_on_abc_shows_f_2_and_the_gradients_2_3_1(window):
    """pressing Evaluate (F5) on f = a·b + c runs both passes: f = 2, ∂f/∂a, ∂f/∂b, ∂f/∂c =
    2, 3, 1, and the overlay and chain-rule panel are told"""
    win = window("abc")
    assert win.act_evaluate.shortcut().toString() == "F5"
    win.act_evaluate.trigger()
    s = win.stepping.session
    assert float(s.value("f")) == 2.0
    assert [float(s.grad(n)) for n in "abc"] == [2.0, 3.0, 1.0]
    assert status(win) == "All steps are done"
    assert win.fake_overlay.shown[-1] == len(s.steps) and win.fake_chain.refreshes >= 1
    last = len(s.steps) - 1
    assert win.step_list.row_state(last) == "current"
    assert all(win.step_list.row_state(i) == "done" for i in range(last))


def test_step_forward_and_back_move_the_current_row_and_restore_the_state(window):
    """F10 moves the highlighted step down a row, Shift+F10 moves it back and every value and
    gradient is what it was before"""
    win = window("abc")
    for _ in range(6):
        win.act_step.trigger()
    s = win.stepping.session
    assert win.step_list.row_state(5) == "current" and win.step_list.row_state(6) == "pending"
    assert win.step_list.list.currentRow() == 6
    before = ({k: np.array(v) for k, v in s.stepper.executor.values.items()},
              {k: np.array(v) for k, v in s.stepper.executor.grads.items()})
    win.act_step.trigger()
    assert win.step_list.row_state(6) == "current"
    assert status(win).startswith("Step 7 of 10: backward")
    win.act_step_back.trigger()
    assert win.step_list.row_state(5) == "current" and win.step_list.row_state(6) == "pending"
    after = (s.stepper.executor.values, s.stepper.executor.grads)
    for a, b in zip(before, after):
        assert a.keys() == b.keys()
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_clicking_a_row_of_the_step_list_goes_to_that_step(window, qtbot):
    """clicking the fourth row of the step list makes step 3 current; the first row goes back
    to before the first step"""
    win = window("abc")
    lst = win.step_list.list
    win.act_step.trigger()
    rect = lst.visualItemRect(lst.item(4))
    qtbot.mouseClick(lst.viewport(), Qt.LeftButton,
                     pos=rect.center())
    assert win.stepping.session.position == 4
    assert win.step_list.row_state(3) == "current"
    qtbot.mouseClick(lst.viewport(), Qt.LeftButton,
                     pos=lst.visualItemRect(lst.item(0)).center())
    assert win.stepping.session.position == 0


def test_continue_stops_at_a_node_breakpoint_and_selects_the_node(window):
    """F9 on the selected node e puts a breakpoint on it; F8 stops on its forward step, says so,
    and selects e; F8 again stops on its backward step"""
    win = window("abc")
    select(win, "e")
    win.act_breakpoint.trigger()
    xid = win.document.graph.node("e").id
    assert win.stepping.breakpoints() == {xid}
    win.editing.select_nodes([])
    win.act_continue.trigger()
    cur = win.stepping.session.current
    assert (cur.node, cur.phase) == ("e", "forward")
    assert status(win) == "Stopped at breakpoint on 'e' (forward)"
    assert win.editing.selected_node_ids() == [xid]
    assert win.step_list.row_text(cur.index).startswith("●")
    win.act_continue.trigger()
    assert win.stepping.session.current.phase == "backward"


def nan_graph() -> Graph:
    g = Graph(name="log of a negative")
    x = g.add("input", value=[-1.0, 4.0], name="x", pos=(0, 0))
    lg = g.add("log", x, name="lg", pos=(240, 0))
    g.set_loss(g.add("sum", lg, name="s", pos=(480, 0)))
    return g


def test_a_nan_stops_continue_with_the_nan_message(window):
    """on log of a negative input, Continue stops on the log's forward step and the status bar
    says it made a NaN; with Break on NaN/Inf unchecked it runs to the end"""
    win = window(graph=nan_graph())
    win.act_continue.trigger()
    cur = win.stepping.session.current
    assert (cur.node, cur.phase) == ("lg", "forward")
    assert status(win).startswith("Stopped: 'lg' forward: output 0 has 1 NaN")
    assert win.editing.selected_node_ids() == [win.document.graph.node("lg").id]
    win.act_break_nan.trigger()
    assert not win.act_break_nan.isChecked()
    win.act_reset_steps.trigger()
    win.act_continue.trigger()
    assert win.stepping.session.done


def test_gradient_norm_above_the_threshold_stops(window):
    """typing 100 and checking "above" under "Break on a gradient norm" stops Continue on the
    backward step whose gradient is 1e4·√2, with the norm in the status bar"""
    g = Graph(name="scaled")
    x = g.add("input", value=[1.0, 1.0], name="x", pos=(0, 0))
    k = g.add("constant", value=1e4, name="k", pos=(0, 140))
    g.set_loss(g.add("sum", g.add("multiply", x, k, name="kx", pos=(240, 0)), name="s",
                     pos=(480, 0)))
    win = window(graph=g)
    win.step_list.above_edit.setText("100")
    win.step_list.above_box.click()
    win.act_continue.trigger()
    cur = win.stepping.session.current
    assert (cur.node, cur.phase) == ("kx", "backward")
    assert status(win).startswith("Stopped: 'kx': gradient to input")
    assert "1.414e+04 > 100 (exploding)" in status(win)


def test_editing_resets_stepping_with_a_message_and_undo_works(window, qtbot):
    """renaming a node while stepped half way keeps the steps; changing a parameter resets
    stepping to the start with "The graph changed" in the status bar, and Undo restores the
    value (and resets again)"""
    win = window("abc")
    for _ in range(4):
        win.act_step.trigger()
    s = win.stepping.session
    xid = win.document.graph.node("e").id
    win.editing.rename_node(xid, "prod")
    assert s.position == 4 and not s.stale  # a rename changes no number
    a = win.document.graph.node("a")
    win.editing.set_value(a.id, 5.0)
    qtbot.waitUntil(lambda: status(win).startswith("The graph changed"))
    assert s.position == 0 and not s.stale
    assert win.step_list.list.currentRow() == 0
    win.act_evaluate.trigger()
    assert float(s.value("f")) == 6.0
    win.act_undo.trigger()
    qtbot.waitUntil(lambda: s.position == 0)
    assert float(win.document.graph.node("a").value) == 3.0
    win.act_evaluate.trigger()
    assert float(s.value("f")) == 2.0


def test_opening_another_graph_closes_the_session(window):
    """opening another file while stepping clears the overlay and starts a new session on the
    next step"""
    win = window("abc")
    win.act_step.trigger()
    old = win.stepping.session
    assert win.files.open_example(example_path("sigmoid_neuron"))
    assert win.stepping.session is None and win.fake_overlay.cleared >= 1
    win.act_step.trigger()
    assert win.stepping.session is not old
    assert win.stepping.session.graph is win.document.graph


def test_step_actions_are_disabled_while_training(window):
    """while a training run is on, the Step actions are greyed out with the reason as their
    tooltip, and come back when it ends"""
    win = window("abc")
    win.training.running_changed.emit(True)
    assert not win.act_step.isEnabled() and not win.act_evaluate.isEnabled()
    assert "while training" in win.act_step.toolTip()
    win.act_step.trigger()  # a disabled action does nothing
    assert win.stepping.session is None
    win.training.running_changed.emit(False)
    assert win.act_step.isEnabled() and "while training" not in win.act_step.toolTip()


def test_play_steps_on_its_own_and_pause_stops_it(window, qtbot):
    """Play (F7) steps at the toolbar's speed until Pause; the step list stays where it
    stopped"""
    win = window("lenet5")
    win.speed_slider.setValue(30)
    win.act_play.trigger()
    assert win.act_play.isChecked() and win.act_play.text() == "Pa&use"
    qtbot.waitUntil(lambda: win.stepping.session.position >= 3, timeout=10_000)
    win.act_play.trigger()
    assert not win.stepping.is_playing() and not win.act_play.isChecked()
    pos = win.stepping.session.position
    qtbot.wait(100)  # nothing to wait for: checking that no further step comes
    assert win.stepping.session.position == pos
    assert win.step_list.row_state(pos - 1) == "current"


def test_play_stops_by_itself_at_the_end(window, qtbot):
    """Play on abc runs all ten steps and unchecks itself"""
    win = window("abc")
    win.speed_slider.setValue(30)
    win.act_play.trigger()
    qtbot.waitUntil(lambda: not win.act_play.isChecked(), timeout=10_000)
    assert win.stepping.session.done


def test_check_gradient_runs_off_the_gui_thread_and_delivers(window, qtbot, monkeypatch):
    """Check Gradient on the chain-rule panel's request computes on another thread and shows
    the verdict on the panel (on the GUI thread) and in the status bar"""
    win = window("abc")
    seen = []
    import core.stepping as steps  # the controller calls it through the package
    real = steps.check_gradient

    def spy(session, node, eps=1e-6):
        seen.append(threading.current_thread() is threading.main_thread())
        return real(session, node, eps)

    monkeypatch.setattr(steps, "check_gradient", spy)
    with qtbot.waitSignal(win.stepping.check_finished, timeout=10_000) as sig:
        win.fake_chain.check_gradient_requested.emit(win.document.graph.node("e").id)
    report = sig.args[0]
    assert seen == [False]
    assert report.ok and report.node == "e"
    assert win.fake_chain.checks == [(report, True)]
    assert status(win).startswith("Gradient check on 'e': good")


def test_lenet_gets_a_sample_digit_and_clicking_a_wire_shows_its_tensor(window):
    """stepping LeNet-5 feeds the first sample digit; a wire clicked shows its source's tensor"""
    win = window("lenet5")
    win.act_run_forward.trigger()
    s = win.stepping.session
    assert s.value("image").shape == (1, 1, 28, 28)
    edge = next(e for e in win.document.graph.edges
                if e.src == win.document.graph.node("conv1").id)
    win.stepping.show_wire(edge)
    assert win.fake_tensor.shown == [(edge.src, 0, False)]


def test_a_drawn_digit_resets_stepping_with_its_pixels(window):
    """choosing a drawn digit feeds it and resets stepping to the start"""
    win = window("lenet5")
    win.act_step.trigger()
    img = np.zeros((28, 28))
    img[5:20, 12:15] = 1.0
    win.stepping.set_digit(img, 1)
    s = win.stepping.session
    assert s.position == 0 and status(win) == "Feeding digit 1: stepping was reset"
    assert int(s.feeds["label"][0]) == 1


def test_animation_persists_and_predict_mode_reaches_the_panel(window, make_window):
    """unchecking Animation turns the overlay's animation off and a new window remembers it;
    Predict Mode is off by default and reaches the chain-rule panel"""
    win = window("abc")
    assert win.act_animation.isChecked()
    win.act_animation.trigger()
    assert win.fake_overlay.animation_enabled is False
    assert not win.act_predict.isChecked()
    win.act_predict.trigger()
    assert win.fake_chain.predict is True
    win.settings.sync()
    assert not make_window().act_animation.isChecked()


def test_step_shortcuts_are_unique_and_listed_in_help(window, dialogs):
    """every shortcut of the window is bound to one action only, and Help ▸ Keyboard Shortcuts
    lists the Step ones"""
    from PySide6.QtGui import QAction
    win = window("abc")
    keys = [s.toString() for a in win.findChildren(QAction) for s in a.shortcuts()]
    assert len(keys) == len(set(keys))
    assert all(a.shortcut().toString() for a in win.step_actions)
    win.act_shortcuts.trigger()
    text = dialogs.calls[-1][2]
    for label, key in (("Evaluate", "F5"), ("Step Forward", "F10"), ("Step Back", "Shift+F10"),
                       ("Continue", "F8"), ("Toggle Breakpoint", "F9"), ("Play", "F7"),
                       ("Run to Selected Node", "Ctrl+F10"), ("Reset Stepping", "Shift+F5")):
        assert f"<tr><td>{label}</td><td><b>{key}</b></td></tr>" in text


def _menu(win, title):
    return next(a.menu() for a in win.menuBar().actions() if a.text().replace("&", "") == title)


def test_the_step_menu_and_toolbar_run_steps_and_show_the_stepping_docks(window):
    """Step ▸ Step Forward in the menu bar runs the first step; the Step toolbar carries the
    same action and the play speed; Step ▸ Digit opens the Digit panel"""
    win = window("abc")
    menu = _menu(win, "Step")
    by_text = {a.text().replace("&", ""): a for a in menu.actions() if a.text()}
    assert {"Evaluate", "Step Forward", "Step Back", "Run Forward Pass", "Run Backward Pass",
            "Continue", "Reset Stepping", "Play", "Toggle Breakpoint", "Check Gradient",
            "Animation", "Predict Mode", "Steps", "Chain Rule", "Tensor", "Digit"} <= set(by_text)
    by_text["Step Forward"].trigger()
    assert win.stepping.session.position == 1 and win.step_list.row_state(0) == "current"
    assert status(win).startswith("Step 1 of 10")
    toolbar_texts = [a.text().replace("&", "") for a in win.step_toolbar.actions()]
    assert "Step Forward" in toolbar_texts and win.speed_slider.value() == 4
    win.digit_dock.hide()
    by_text["Digit"].trigger()
    assert win.digit_dock.isVisible()
    assert [d.windowTitle() for d in win.step_ui.docks()] == ["Steps", "Chain Rule", "Tensor",
                                                              "Digit"]


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="no MNIST files in ../shared")
def test_the_training_panels_mnist_folder_feeds_image_5_of_its_test_set(window, qtbot):
    """with an MNIST folder chosen in the Training panel, the Digit panel offers its test and
    training sets; choosing the test set and image 5 feeds that very image, and the status
    bar names the set, the image and its label"""
    from core.data.mnist import load_mnist  # noqa: PLC0415
    from core.stepping import digit_feeds  # noqa: PLC0415

    win = window("lenet5")
    win.act_step.trigger()
    win.train_panel.set_folder(str(SHARED_MNIST))
    d = win.digit_input
    qtbot.waitUntil(lambda: d.set_combo.count() == 4, timeout=20000)
    title = f"MNIST folder ‘{SHARED_MNIST.name}’ · test set"
    assert d.set_combo.itemText(2) == title + " (10,000)"
    d.choose_set(title)
    d.index_spin.setValue(5)
    data = load_mnist(data_dir=SHARED_MNIST)
    want = digit_feeds(win.document.graph, data.test_x[5], int(data.test_y[5]))
    s = win.stepping.session
    np.testing.assert_array_equal(s.feeds["image"], want["image"])
    assert int(s.feeds["label"][0]) == int(data.test_y[5])
    assert d.where_label.text() == title + " · image 5 of 10,000"
    assert status(win) == (f"Feeding image 5 of the {title} (label {int(data.test_y[5])}): "
                           "stepping was reset")


def test_a_folder_without_mnist_files_is_explained_in_the_digit_panel(window, qtbot, tmp_path):
    """a Training panel folder that holds no MNIST files leaves the Digit panel on the sample
    with a line saying why"""
    win = window("lenet5")
    win.train_panel.set_folder(str(tmp_path))
    d = win.digit_input
    qtbot.waitUntil(lambda: "cannot be offered" in d.set_note.text(), timeout=10000)
    assert str(tmp_path) in d.set_note.text() and "missing" in d.set_note.text()
    win.digit_dock.raise_()  # the user looks at the panel
    assert d.set_combo.count() == 2 and d.current_set().key == "sample/test:sample"
