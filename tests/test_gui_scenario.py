"""The issue's acceptance story: build f = a·b + c with the mouse, save, reopen, same graph."""
# The fixtures come from gui_helpers; pytest passes them by name, which ruff reads as F811.
# ruff: noqa: F811

from __future__ import annotations

import pytest
from gui_helpers import dialogs, make_window, mouse_drag, port_pos, snapshot  # noqa: F401
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QFileDialog
from test_gui_editing import drop_op

from core.executor import Executor
from core.serialize import load_graph

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def type_into(qtbot, widget, text):
    widget.setFocus()
    widget.selectAll()
    qtbot.keyClicks(widget, text)
    qtbot.keyClick(widget, Qt.Key_Return)


def test_building_f_equals_a_times_b_plus_c_by_hand_and_reopening_it(make_window, qtbot,
                                                                     tmp_path, monkeypatch):
    """drop three inputs, a Multiply and an Add, wire them, type values, save and reopen"""
    win = make_window()
    g = win.document.graph
    spots = {"a": QPointF(0, 0), "b": QPointF(0, 160), "c": QPointF(260, 260)}
    for name, at in spots.items():
        drop_op(win, "input", at)
        node = list(g.nodes.values())[-1]
        win.editing.select_nodes([node.id])
        type_into(qtbot, win.inspector.editor("__name__"), name)
        type_into(qtbot, win.inspector.editor("__value__"), {"a": "3", "b": "2", "c": "-4"}[name])
    drop_op(win, "multiply", QPointF(300, 60))
    drop_op(win, "add", QPointF(560, 140))
    mul, add = [n for n in g.nodes.values() if n.op_id in ("multiply", "add")]
    mouse_drag(win, port_pos(win, "a", "out", True), port_pos(win, mul.name, "a", False))
    mouse_drag(win, port_pos(win, "b", "out", True), port_pos(win, mul.name, "b", False))
    mouse_drag(win, port_pos(win, mul.name, "out", True), port_pos(win, add.name, "a", False))
    mouse_drag(win, port_pos(win, "c", "out", True), port_pos(win, add.name, "b", False))
    assert len(g.edges) == 4
    win.editing.select_nodes([add.id])
    win.inspector.editor("__loss__").click()
    assert g.loss == add.id
    # the cards show what the model holds
    win.scene.refresh_shapes()
    assert win.scene.nodes[g.node("a").id].param_lines[0] == "= 3"
    assert win.scene.nodes[add.id].footer == "→ scalar"

    path = tmp_path / "abc.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(path), ""))
    win.act_save.trigger()
    assert path.exists() and not win.isWindowModified()

    other = make_window()
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    other.act_open.trigger()
    assert snapshot(other.document.graph) == snapshot(g)
    reopened = load_graph(path)
    ex = Executor(reopened).run(loss=reopened.loss)
    assert float(ex.value(add.name)) == 2.0 and float(ex.grad("a")) == 2.0
