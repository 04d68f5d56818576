"""Every kind of edit can be undone and redone, giving back exactly the graph it changed."""
# The fixtures come from gui_helpers; pytest passes them by name, which ruff reads as F811.
# ruff: noqa: F811

from __future__ import annotations

import numpy as np
import pytest
from gui_graphs import abc_graph, lenet5
from gui_helpers import dialogs, make_window, snapshot  # noqa: F401
from PySide6.QtCore import QPointF

from core.graph import Edge


def check_undo_redo(win, edit):
    """Run ``edit``; undo must give the graph before it, redo the graph after it."""
    g = win.document.graph
    before = snapshot(g)
    depth = win.document.undo_stack.index()
    edit()
    assert win.document.undo_stack.index() == depth + 1, "the edit must be one undo step"
    after = snapshot(g)
    assert after != before, "the edit changed nothing"
    win.document.undo_stack.undo()
    assert snapshot(g) == before
    win.document.undo_stack.redo()
    assert snapshot(g) == after
    win.document.undo_stack.undo()
    assert snapshot(g) == before
    # the canvas follows the model through all of it
    assert set(win.scene.nodes) == set(g.nodes)
    assert set(win.scene.edges) == set(g.edges)
    for nid, item in win.scene.nodes.items():
        if nid in g.layout:
            assert (item.pos().x(), item.pos().y()) == g.layout[nid]


@pytest.fixture
def abc_win(make_window):
    win = make_window()
    win.set_graph(abc_graph())
    return win


def test_undo_of_adding_a_node_restores_the_graph(abc_win):
    """undoing 'Add ReLU' removes it, redo puts the same node back"""
    check_undo_redo(abc_win, lambda: abc_win.editing.add_op("relu", QPointF(50, 400)))


def test_undo_of_deleting_nodes_restores_them_with_their_wires_in_order(abc_win):
    """deleting x (in the middle of the graph) and undoing brings back x and its three wires"""
    g = abc_win.document.graph

    def edit():
        abc_win.editing.select_nodes([g.node("x").id, g.node("a").id])
        abc_win.editing.delete_selection()
    check_undo_redo(abc_win, edit)


def test_undo_of_deleting_the_loss_node_restores_the_loss(abc_win):
    """deleting f (the loss) and undoing makes f the loss again"""
    g = abc_win.document.graph

    def edit():
        abc_win.editing.select_nodes([g.node("f").id])
        abc_win.editing.delete_selection()
    check_undo_redo(abc_win, edit)
    assert g.loss == g.node("f").id


def test_undo_of_deleting_a_wire_restores_it(abc_win):
    """selecting the wire into f.b, deleting it and undoing reconnects it"""
    g = abc_win.document.graph

    def edit():
        abc_win.scene.clearSelection()
        abc_win.scene.edges[g.in_edges("f")["b"]].setSelected(True)
        abc_win.editing.delete_selection()
    check_undo_redo(abc_win, edit)


def test_undo_of_connecting_removes_the_wire(abc_win):
    """connecting c to a new Negate and undoing leaves the Negate unconnected"""
    neg = abc_win.editing.add_op("negate", QPointF(300, 400))
    check_undo_redo(abc_win, lambda: abc_win.editing.connect_ports("c", neg))


def test_undo_of_a_parameter_edit_restores_the_old_value_and_weights(make_window):
    """changing fc1's units after initializing restores units and the old weights on undo"""
    win = make_window()
    g = lenet5()
    g.initialize(seed=1)
    win.set_graph(g)
    fc1 = g.node("fc1")
    w_before = fc1.weights["W"].copy()
    check_undo_redo(win, lambda: win.editing.set_params(fc1.id, {"units": 64}))
    assert np.array_equal(g.node("fc1").weights["W"], w_before)


def test_undo_of_a_value_edit_restores_the_old_value(abc_win):
    """typing a new value for a and undoing gives a = 3 again"""
    check_undo_redo(abc_win, lambda: abc_win.editing.set_value(abc_win.document.graph.node("a").id,
                                                       np.array([1.0, 2.0])))


def test_undo_of_a_rename_restores_the_name(abc_win):
    """renaming x to product and undoing gives x back"""
    x = abc_win.document.graph.node("x").id
    check_undo_redo(abc_win, lambda: abc_win.editing.rename_node(x, "product"))


def test_undo_of_setting_the_loss(abc_win):
    """choosing x as the loss and undoing makes f the loss again"""
    check_undo_redo(abc_win, lambda: abc_win.editing.set_loss(abc_win.document.graph.node("x").id))


def test_undo_of_editing_the_title(abc_win):
    """changing the graph's title and description is undoable"""
    check_undo_redo(abc_win, lambda: abc_win.editing.set_meta("Chain rule", "two steps"))


def test_undo_of_a_move(abc_win):
    """moving two nodes and undoing puts both back"""
    g = abc_win.document.graph
    a, b = g.node("a").id, g.node("b").id
    check_undo_redo(abc_win, lambda: abc_win.editing._on_nodes_moved(
        {a: (g.layout[a], (400.0, 500.0)), b: (g.layout[b], (400.0, 650.0))}))


def test_undo_of_auto_layout(abc_win):
    """Auto Layout is one undo step that puts every node back"""
    check_undo_redo(abc_win, abc_win.editing.auto_layout)


def test_undo_of_align_and_distribute(abc_win):
    """Align Top and Distribute Horizontally are undoable"""
    g = abc_win.document.graph
    abc_win.editing.select_nodes([g.node(n).id for n in ("a", "x", "f")])
    check_undo_redo(abc_win, lambda: abc_win.editing.align("top"))
    abc_win.editing.select_nodes([g.node(n).id for n in ("a", "b", "x")])
    check_undo_redo(abc_win, lambda: abc_win.editing.distribute("x"))


def test_undo_of_paste_duplicate_and_cut(abc_win):
    """paste, duplicate and cut each undo to the graph before them"""
    g = abc_win.document.graph
    abc_win.editing.select_nodes([g.node("x").id, g.node("f").id])
    abc_win.editing.copy()
    check_undo_redo(abc_win, lambda: abc_win.editing.paste(QPointF(0, 500)))
    abc_win.editing.select_nodes([g.node("a").id, g.node("x").id])
    check_undo_redo(abc_win, abc_win.editing.duplicate)
    abc_win.editing.select_nodes([g.node("x").id])
    check_undo_redo(abc_win, abc_win.editing.cut)


def test_undo_of_the_flatten_quick_fix(make_window):
    """the Insert Flatten fix (remove wire, add node, two wires) is one undo step"""
    win = make_window()
    g = win.document.graph
    img = win.editing.add_op("input", QPointF(0, 0), params={"shape": (None, 3, 4, 4)})
    dense = win.editing.add_op("dense", QPointF(500, 0))
    win.editing.connect_edge(Edge(img.id, "out", dense.id, "x"))
    check_undo_redo(win, lambda: win.editing.apply_quick_fix(dense.id))
    assert "flatten" not in [n.op_id for n in g.nodes.values()]


def test_undo_of_quick_add_from_a_port(make_window):
    """adding a node from a dragged port (node and wire) undoes in one step"""
    win = make_window()
    x = win.editing.add_op("input", QPointF(0, 0), params={"shape": (None, 4)})
    check_undo_redo(win, lambda: win.editing.add_from_quick("tanh", QPointF(300, 0),
                                                    (x.id, "out", True)))


def test_the_history_view_lists_the_edits(abc_win):
    """the History panel shows one row per edit, named after it"""
    abc_win.editing.add_op("relu", QPointF(0, 400))
    abc_win.editing.rename_node(abc_win.document.graph.node("relu").id, "r")
    model = abc_win.undo_view.model()
    texts = [model.index(i, 0).data() for i in range(model.rowCount())]
    assert texts == ["<original graph>", "Add 'relu'", "Rename 'relu' to 'r'"]
