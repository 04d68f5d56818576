"""Long steps run off the GUI thread; the window loads the compiled kernels after its first paint.

A move whose estimated work is above the controller's ``quick_work`` runs on a worker
thread. Here ``quick_work`` is set to 0 so that f = a·b + c's moves take that path, and
the multiply's forward waits on a gate the test opens: the step is "slow" for as long
as the test wants, with no timing involved.
"""
# The fixtures come from gui_helpers; pytest passes them by name, which ruff reads as F811.
# ruff: noqa: F811

from __future__ import annotations

import threading

import pytest
from gui_helpers import dialogs, make_window  # noqa: F401
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication

from core.kernels import compiled
from core.ops import REGISTRY
from examples import example_path


@pytest.fixture
def gate(monkeypatch):
    """The multiply's forward waits until ``gate.set()`` (a step as slow as the test wants)."""
    ev = threading.Event()
    cls = REGISTRY["multiply"]
    real = cls.forward

    def slow(self, ctx, *xs):
        ev.wait(30)  # bounded, so a broken test fails instead of hanging
        return real(self, ctx, *xs)

    monkeypatch.setattr(cls, "forward", slow)
    yield ev
    ev.set()  # before the window closes (it waits for the running step)


@pytest.fixture
def abc(make_window):
    win = make_window()
    assert win.files.open_example(example_path("abc"))
    win.stepping.quick_work = 0  # every move goes to the worker thread
    return win


def status(win) -> str:
    return win.statusBar().currentMessage()


def test_a_long_evaluate_runs_while_the_window_keeps_responding(abc, gate, qtbot):
    """pressing Evaluate on a graph whose step is slow leaves the window responsive: timers
    fire, the status bar says "Stepping e …", the cursor is busy and the Step actions are
    off; when the step ends f = 2 with gradients 2, 3, 1 and everything is back on"""
    win = abc
    win.act_evaluate.trigger()
    st = win.stepping
    assert st.is_busy()
    fired = []
    QTimer.singleShot(5, lambda: fired.append(True))
    qtbot.waitUntil(lambda: bool(fired), timeout=5000)  # the event loop runs during the step
    qtbot.waitUntil(lambda: status(win).startswith("Stepping e …"), timeout=5000)
    assert st.session.position == 0  # nothing is applied before the step ends
    assert not win.act_step.isEnabled() and not win.act_evaluate.isEnabled()
    assert not win.act_play.isEnabled() and not win.step_list.isEnabled()
    assert win.act_reset_steps.isEnabled()  # it stops the running step
    assert QApplication.overrideCursor().shape() == Qt.BusyCursor
    win.act_step.trigger()  # disabled: nothing happens
    gate.set()
    qtbot.waitUntil(lambda: not st.is_busy(), timeout=10000)
    s = st.session
    assert float(s.value("f")) == 2.0
    assert [float(s.grad(n)) for n in "abc"] == [2.0, 3.0, 1.0]
    assert status(win) == "All steps are done"
    assert win.act_step.isEnabled() and win.step_list.isEnabled()
    assert QApplication.overrideCursor() is None


def test_a_quick_move_runs_at_once_on_the_gui_thread(make_window):
    """on a small graph a step is applied before the action returns (no worker thread)"""
    win = make_window()
    assert win.files.open_example(example_path("abc"))
    win.act_evaluate.trigger()
    assert not win.stepping.is_busy()
    assert float(win.stepping.session.value("f")) == 2.0


def test_an_edit_during_a_step_stops_it_and_resets_stepping(abc, gate, qtbot):
    """changing a = 3 to a = 5 while a step runs is applied to the graph; the running step's
    result is dropped, stepping is reset, and the next Evaluate gives f = 5·2 − 4 = 6"""
    win = abc
    st = win.stepping
    win.act_evaluate.trigger()
    assert st.is_busy()
    a = win.document.graph.node("a").id
    win.editing.set_value(a, 5.0)
    assert win.document.graph.node("a").value == 5.0
    gate.set()
    qtbot.waitUntil(lambda: not st.is_busy(), timeout=10000)
    s = st.session
    assert not s.stale and s.position == 0 and s.value("f") is None
    assert "reset" in status(win)
    st.quick_work = float("inf")
    win.act_evaluate.trigger()
    assert float(st.session.value("f")) == 6.0


def test_reset_during_a_step_goes_back_to_the_start_at_once(abc, gate, qtbot):
    """Reset while a step runs goes back to before the first step right away; the running
    step's result never appears"""
    win = abc
    st = win.stepping
    win.act_run_forward.trigger()
    assert st.is_busy()
    win.act_reset_steps.trigger()
    assert st.session.position == 0
    assert status(win).startswith("Stopping the step") or "reset" in status(win)
    gate.set()
    qtbot.waitUntil(lambda: not st.is_busy(), timeout=10000)
    assert st.session.position == 0 and st.session.value("e") is None
    assert win.act_step.isEnabled()


def test_play_steps_through_long_steps_one_after_the_other(abc, gate, qtbot):
    """Play with slow steps runs each on the worker thread, one at a time, to the end"""
    win = abc
    gate.set()
    st = win.stepping
    st.set_speed(30)
    win.act_play.trigger()
    qtbot.waitUntil(lambda: not st.is_playing(), timeout=20000)
    qtbot.waitUntil(lambda: not st.is_busy(), timeout=10000)
    assert st.session.done
    assert [float(st.session.grad(n)) for n in "abc"] == [2.0, 3.0, 1.0]


def test_closing_the_window_waits_for_the_running_step(abc, gate, qtbot):
    """closing the window while a step runs stops it and waits for its thread: nothing is
    left running"""
    win = abc
    st = win.stepping
    win.act_evaluate.trigger()
    thread = st._job_thread
    assert thread is not None and thread.is_alive()
    threading.Timer(0.05, gate.set).start()
    win.close()
    assert not thread.is_alive()
    assert not st.is_busy() and QApplication.overrideCursor() is None


def test_the_window_starts_loading_the_compiled_kernels_once_after_its_first_paint(
        make_window, monkeypatch, qtbot):
    """the compiled kernels load on a background thread started once the window is painted,
    not again on later paints; meanwhile a LeNet-5 Evaluate runs on the NumPy kernels"""
    started = threading.Event()
    release = threading.Event()

    def slow_load():
        started.set()
        release.wait(30)
        return None  # as when numba is missing: the NumPy kernels stay

    monkeypatch.setattr(compiled, "_load_and_warm", slow_load)
    monkeypatch.setitem(compiled._state, "tried", False)
    monkeypatch.setitem(compiled._state, "module", None)
    calls = []
    real = compiled.load_in_background
    monkeypatch.setattr(compiled, "load_in_background", lambda: calls.append(1) or real())
    win = make_window(show=False)
    assert calls == []
    win.show()
    qtbot.waitExposed(win)
    qtbot.waitUntil(started.is_set, timeout=5000)
    assert compiled.loading() and compiled.kernels() is None
    assert win.files.open_example(example_path("lenet5"))
    win.act_evaluate.trigger()  # runs meanwhile, on the NumPy kernels
    assert win.stepping.session.done
    win.repaint()
    win.hide()
    win.show()
    qtbot.waitExposed(win)
    QApplication.processEvents()
    assert calls == [1]
    release.set()
    assert compiled.wait_loaded(10)


def test_pause_stays_on_while_play_waits_for_a_long_step(abc, gate, qtbot):
    """while Play waits for a slow step, Pause can be pressed: the running step ends and is
    shown, and no other step follows"""
    win = abc
    st = win.stepping
    st.set_speed(30)
    win.act_run_forward.trigger()  # a slow move first, so Play starts behind it
    gate.set()
    qtbot.waitUntil(lambda: not st.is_busy(), timeout=10000)
    gate.clear()
    st.reset()
    st.quick_work = float("inf")
    for _ in range(3):  # a, b, c at once, on the GUI thread
        win.act_step.trigger()
    assert st.session.position == 3
    st.quick_work = 0
    win.act_play.trigger()
    qtbot.waitUntil(st.is_busy, timeout=5000)  # the multiply's step runs
    assert win.act_play.isEnabled() and not win.act_step.isEnabled()
    win.act_play.trigger()  # Pause
    assert not st.is_playing()
    gate.set()
    qtbot.waitUntil(lambda: not st.is_busy(), timeout=10000)
    QApplication.processEvents()
    assert not st.is_playing() and st.session.position == 4
    assert st.session.current.node == "e"
