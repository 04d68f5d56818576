"""The node editor, driven the way a person uses it: palette drops, wires, the inspector."""
# The fixtures come from gui_helpers; pytest passes them by name, which ruff reads as F811.
# ruff: noqa: F811

from __future__ import annotations

import pytest
from gui_graphs import abc_graph, lenet5
from gui_helpers import dialogs, make_window, mouse_drag, port_pos, snapshot  # noqa: F401
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from widgets.canvas import OP_MIME

# PySide marks the QPoint drag-event constructors deprecated; they are what Qt itself sends
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def drop_mime(win, md: QMimeData, scene_pos: QPointF):
    """Drag ``md`` over the canvas and drop it at ``scene_pos`` (enter, move, drop)."""
    vp = win.view.viewport()
    p = QPointF(win.view.mapFromScene(scene_pos))
    for cls in (QDragEnterEvent, QDragMoveEvent):
        ev = cls(p.toPoint(), Qt.CopyAction, md, Qt.LeftButton, Qt.NoModifier)
        QApplication.sendEvent(vp, ev)
        assert ev.isAccepted()
    ev = QDropEvent(p, Qt.CopyAction, md, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(vp, ev)
    QApplication.processEvents()


def drop_op(win, op_id: str, scene_pos: QPointF):
    """Drop the palette's drag data for ``op_id`` on the canvas at ``scene_pos``."""
    drop_mime(win, win.palette.mime_for(op_id), scene_pos)


def test_dragging_sigmoid_from_the_palette_adds_a_node_under_the_cursor(make_window):
    """dragging Sigmoid from the palette adds a node under the cursor"""
    win = make_window()
    assert bytes(win.palette.mime_for("sigmoid").data(OP_MIME)) == b"sigmoid"
    at = QPointF(300, 200)
    drop_op(win, "sigmoid", at)
    assert [n.op_id for n in win.document.graph.nodes.values()] == ["sigmoid"]
    node = next(iter(win.document.graph.nodes.values()))
    card = win.scene.nodes[node.id].scene_card_rect()
    assert card.contains(at)
    assert win.document.graph.layout[node.id] == (card.left(), card.top())


def test_the_palette_search_keeps_only_matching_ops(make_window):
    """typing 'relu' in the palette search leaves ReLU and Leaky ReLU"""
    win = make_window()
    win.palette.search.setText("relu")
    assert set(win.palette.visible_ops()) == {"relu", "leaky_relu"}


def test_dragging_an_output_onto_an_input_creates_an_edge(make_window, qtbot):
    """dragging from a's output to the free input of a Multiply connects them"""
    win = make_window()
    win.set_graph(abc_graph())
    g = win.document.graph
    mul = win.editing.add_op("multiply", QPointF(200, 420))
    qtbot.wait(10)
    before = len(g.edges)
    mouse_drag(win, port_pos(win, "a", "out", True), port_pos(win, mul.name, "a", False))
    assert len(g.edges) == before + 1
    e = g.edges[-1]
    assert (g.nodes[e.src].name, e.dst, e.dst_port) == ("a", mul.id, "a")
    assert win.scene.nodes[mul.id].in_ports["a"].connected


def test_a_connection_that_would_make_a_cycle_is_refused_with_the_reason(make_window):
    """dragging f's output back into x shows 'would create a cycle' and adds nothing"""
    win = make_window()
    win.set_graph(abc_graph())
    g = win.document.graph
    g_before = snapshot(g)
    shown = []

    def look():
        wire = win.scene._wire
        shown.append((wire.state, wire.hint))

    # x.b is taken, so first free it: the drop target is x's occupied input 'a'
    mouse_drag(win, port_pos(win, "f", "out", True), port_pos(win, "x", "a", False),
               after_move=look)
    assert snapshot(g) == g_before
    assert shown[0][0] == "bad"
    assert "already connected" in shown[0][1]
    assert "already connected" in win.statusBar().currentMessage()
    # a real cycle: disconnect x.a first (undoably), then try f -> x.a
    win.editing.select_nodes([])
    e = g.in_edges("x")["a"]
    win.scene.edges[e].setSelected(True)
    win.editing.delete_selection()
    mouse_drag(win, port_pos(win, "f", "out", True), port_pos(win, "x", "a", False),
               after_move=look)
    assert "cycle" in shown[1][1]
    assert "cycle" in win.scene.last_refusal
    assert "x" in [n.name for n in g.nodes.values()] and len(g.in_edges("x")) == 1


def test_a_shape_mismatch_is_refused_while_dragging(make_window):
    """dragging a (B, 3) tensor into a matmul that holds a (4, 5) matrix says the shapes clash"""
    win = make_window()
    g = win.document.graph
    x = win.editing.add_op("input", QPointF(0, 0), params={"shape": (None, 3)})
    w = win.editing.add_op("input", QPointF(0, 200), params={"shape": (4, 5)})
    mm = win.editing.add_op("matmul", QPointF(320, 100))
    assert win.editing.connect_ports(w, mm, "b")
    hints = []
    mouse_drag(win, port_pos(win, x.name, "out", True), port_pos(win, mm.name, "a", False),
               after_move=lambda: hints.append(win.scene._wire.hint))
    assert "shape mismatch" in hints[0]
    assert "shape mismatch" in win.scene.last_refusal
    assert "a" not in g.in_edges(mm)


def test_a_4d_tensor_dropped_on_a_dense_input_goes_through_a_new_flatten(make_window):
    """dropping conv output on a Dense inserts a Flatten between them (the obvious fix)"""
    win = make_window()
    g = win.document.graph
    img = win.editing.add_op("input", QPointF(0, 0), params={"shape": (None, 1, 8, 8)})
    dense = win.editing.add_op("dense", QPointF(500, 0))
    hints = []
    mouse_drag(win, port_pos(win, img.name, "out", True), port_pos(win, dense.name, "x", False),
               after_move=lambda: hints.append(win.scene._wire.hint))
    assert "Flatten" in hints[0]
    ops = [n.op_id for n in g.nodes.values()]
    assert "flatten" in ops
    win.scene.refresh_shapes()
    assert win.scene.report.shapes[dense.id] == ((None, 10),)
    win.document.undo_stack.undo()
    assert [n.op_id for n in g.nodes.values()] == ["input", "dense"] and not g.edges


def test_the_error_badge_offers_flatten_and_the_fix_repairs_the_graph(make_window):
    """a Dense fed a 4-D tensor shows an error, and the quick fix inserts Flatten"""
    from core.graph import Edge

    win = make_window()
    img = win.editing.add_op("input", QPointF(0, 0), params={"shape": (None, 3, 4, 4)})
    dense = win.editing.add_op("dense", QPointF(500, 0))
    # the file could hold this wire: add it as loading would, bypassing the drag checks
    win.editing.connect_edge(Edge(img.id, "out", dense.id, "x"))
    win.scene.refresh_shapes()
    item = win.scene.nodes[dense.id]
    assert item.error and "⚠" in item.toolTip()
    fix = win.document.analysis.quick_fix(dense.id)
    assert fix == ("x", f"Insert Flatten before '{dense.name}.x'")
    win.editing.select_nodes([dense.id])
    win.scene.refresh_shapes()
    assert win.inspector.fix.isVisibleTo(win.inspector)
    win.inspector.fix.click()
    win.scene.refresh_shapes()
    assert dense.id not in win.scene.report.errors
    assert win.scene.report.shapes[dense.id] == ((None, 10),)


def test_editing_a_parameter_in_the_inspector_updates_the_shape_labels(make_window, qtbot):
    """setting conv1's out channels to 10 changes its card and the wire to (B, 10, 28, 28)"""
    win = make_window()
    win.set_graph(lenet5())
    g = win.document.graph
    conv = g.node("conv1")
    win.editing.select_nodes([conv.id])
    spin = win.inspector.editor("out_channels")
    assert spin.value() == 6
    spin.setValue(10)
    qtbot.waitUntil(lambda: win.scene.nodes[conv.id].footer.startswith("→ (B, 10, 28, 28)"))
    assert g.node("conv1").params["out_channels"] == 10
    edge = g.out_edges(conv)[0]
    assert win.scene.edges[edge].label == "(B, 10, 28, 28)"
    # downstream shapes follow: conv2 now has 10 input channels in its weight
    assert win.scene.report.weights[g.node("conv2").id]["W"].shape == (16, 10, 5, 5)
    assert "Set out_channels" in win.document.undo_stack.undoText()


def test_an_out_of_range_parameter_is_refused_and_explained(make_window):
    """typing a dropout probability the op refuses leaves the model unchanged and says why"""
    win = make_window()
    node = win.editing.add_op("leaky_relu", QPointF(0, 0))
    win.inspector._emit_param("alpha", 5.0)
    assert win.document.graph.nodes[node.id].params["alpha"] == 0.01
    assert "alpha" in win.inspector.param_error.text()


def test_quick_add_from_a_dragged_port_lists_compatible_ops_and_connects(make_window):
    """dragging from a 4-D output into empty space offers ops that take it, then wires one"""
    win = make_window()
    g = win.document.graph
    img = win.editing.add_op("input", QPointF(0, 0), params={"shape": (None, 1, 28, 28)})
    start = port_pos(win, img.name, "out", True)
    mouse_drag(win, start, start + QPointF(260, 40))
    popup = win.quick_add
    assert popup.isVisible()
    offered = popup.ops()
    assert "conv2d" in offered and "relu" in offered and "flatten" in offered
    assert "dense" not in offered      # a dense layer cannot take a 4-D tensor
    assert "input" not in offered      # sources take nothing
    popup.choose("conv2d")
    conv = [n for n in g.nodes.values() if n.op_id == "conv2d"][0]
    assert g.in_edges(conv)["x"].src == img.id
    card = win.scene.nodes[conv.id].scene_card_rect()
    assert card.left() >= start.x() + 200


def test_tab_opens_the_quick_add_popup_and_enter_adds_the_first_match(make_window, qtbot):
    """pressing Tab on the canvas, typing 'tanh' and Enter adds a Tanh node"""
    win = make_window()
    win.view.setFocus()
    qtbot.keyClick(win.view, Qt.Key_Tab)
    assert win.quick_add.isVisible()
    qtbot.keyClicks(win.quick_add.search, "tanh")
    qtbot.keyClick(win.quick_add.search, Qt.Key_Return)
    assert [n.op_id for n in win.document.graph.nodes.values()] == ["tanh"]


def test_moving_a_node_with_the_mouse_moves_it_in_the_model(make_window):
    """dragging a card by its header moves the node and Undo puts it back"""
    win = make_window()
    win.set_graph(abc_graph())
    g = win.document.graph
    nid = g.node("x").id
    old = g.layout[nid]
    item = win.scene.nodes[nid]
    grab = item.scenePos() + QPointF(60, 12)
    mouse_drag(win, grab, grab + QPointF(100, 60))
    new = g.layout[nid]
    assert abs(new[0] - old[0] - 100) < 2 and abs(new[1] - old[1] - 60) < 2
    win.document.undo_stack.undo()
    assert g.layout[nid] == old
    assert item.pos() == QPointF(*old)


def test_snap_to_grid_moves_cards_in_grid_steps(make_window):
    """with snap on, a dragged card lands on the 20-pixel grid"""
    win = make_window()
    win.set_snap(True)
    node = win.editing.add_op("relu", QPointF(113, 77))
    x, y = win.document.graph.layout[node.id]
    assert x % 20 == 0 and y % 20 == 0
    grab = win.scene.nodes[node.id].scenePos() + QPointF(50, 12)
    mouse_drag(win, grab, grab + QPointF(33, 47))
    x, y = win.document.graph.layout[node.id]
    assert x % 20 == 0 and y % 20 == 0


def test_rubber_band_selects_the_nodes_it_touches(make_window):
    """dragging a rectangle over empty canvas selects the cards under it"""
    win = make_window()
    win.set_graph(abc_graph())
    win.view.fit_to_view()
    g = win.document.graph
    r = win.scene.nodes[g.node("a").id].scene_card_rect().united(
        win.scene.nodes[g.node("b").id].scene_card_rect())
    mouse_drag(win, r.topLeft() - QPointF(30, 30), r.bottomRight() + QPointF(5, 5))
    assert {g.nodes[i].name for i in win.editing.selected_node_ids()} == {"a", "b"}


def test_copy_and_paste_make_renamed_copies_with_their_internal_wires(make_window):
    """copying x and f and pasting adds x2 and f2 joined like the originals"""
    win = make_window()
    win.set_graph(abc_graph())
    g = win.document.graph
    win.editing.select_nodes([g.node("x").id, g.node("f").id])
    assert win.editing.copy()
    win.editing.paste(QPointF(0, 600))
    names = [n.name for n in g.nodes.values()]
    assert names[-2:] == ["x2", "f2"]
    e = g.in_edges("f2")["a"]
    assert g.nodes[e.src].name == "x2"
    assert {g.nodes[i].name for i in win.editing.selected_node_ids()} == {"x2", "f2"}


def test_align_left_lines_the_selected_cards_up(make_window):
    """Align Left gives every selected card the leftmost card's x"""
    win = make_window()
    win.set_graph(abc_graph())
    g = win.document.graph
    ids = [g.node(n).id for n in ("a", "x", "f")]
    win.editing.select_nodes(ids)
    win.editing.align("left")
    assert {g.layout[i][0] for i in ids} == {0.0}


def test_dropping_a_graph_file_on_the_canvas_opens_it(make_window, tmp_path):
    """dropping a .json graph file on the canvas opens it"""
    from core.serialize import save_graph

    path = tmp_path / "lenet.json"
    save_graph(lenet5(), path)
    win = make_window()
    md = QMimeData()
    md.setUrls([QUrl.fromLocalFile(str(path))])
    drop_mime(win, md, QPointF(50, 50))
    assert win.document.graph.name == "LeNet-5" and win.document.path == path


def test_the_status_bar_shows_the_graph_totals(make_window):
    """opening LeNet-5 shows 15 nodes and its 61,706 parameters in the status bar"""
    win = make_window()
    g = lenet5()
    win.set_graph(g)
    text = win.totals_label.text()
    assert g.parameter_count() == 61_706
    assert "61,706 parameters" in text
    assert text.startswith("15 nodes · 14 connections")
    assert "multiply-adds" in text and "error" not in text


def test_dragging_a_wire_off_an_input_moves_or_removes_it(make_window):
    """picking up the wire at x.b and dropping it on f.b moves it; letting go removes it"""
    win = make_window()
    g = abc_graph()
    g.disconnect(g.in_edges("f")["b"])
    win.set_graph(g)
    before = snapshot(g)
    mouse_drag(win, port_pos(win, "x", "b", False), port_pos(win, "f", "b", False))
    assert "b" not in g.in_edges("x")
    assert g.nodes[g.in_edges("f")["b"].src].name == "b"
    assert win.document.undo_stack.undoText().startswith("Move wire")
    win.document.undo_stack.undo()
    assert snapshot(g) == before
    mouse_drag(win, port_pos(win, "x", "b", False), port_pos(win, "x", "b", False)
               + QPointF(-150, 120))
    assert "b" not in g.in_edges("x") and len(g.edges) == len(before["edges"]) - 1
    assert win.document.undo_stack.undoText().startswith("Disconnect")
    win.document.undo_stack.undo()
    assert snapshot(g) == before


def test_typing_an_input_shape_reshapes_the_whole_network(make_window, qtbot):
    """typing 'B, 1, 32, 32' as LeNet-5's image shape updates conv1's card and fc1's weight"""
    win = make_window()
    win.set_graph(lenet5())
    g = win.document.graph
    win.editing.select_nodes([g.node("image").id])
    field = win.inspector.editor("shape")
    assert field.text() == "B, 1, 28, 28"
    field.setFocus()
    field.selectAll()
    qtbot.keyClicks(field, "B, 1, 32, 32")
    qtbot.keyClick(field, Qt.Key_Return)
    assert g.node("image").params["shape"] == (None, 1, 32, 32)
    win.scene.refresh_shapes()
    assert win.scene.nodes[g.node("conv1").id].footer.startswith("→ (B, 6, 32, 32)")
    assert win.scene.report.weights[g.node("fc1").id]["W"].shape == (16 * 6 * 6, 120)
    field.setFocus()
    field.selectAll()
    qtbot.keyClicks(field, "B, one")
    qtbot.keyClick(field, Qt.Key_Return)
    assert field.property("invalid") is True
    assert g.node("image").params["shape"] == (None, 1, 32, 32)
