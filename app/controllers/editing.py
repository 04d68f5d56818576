"""Edits of the document's graph: every gesture becomes a command on its undo stack.

A view emits a request, the controller builds an :mod:`app.commands` command and
pushes it, the command calls the :class:`core.graph.Graph`, and the graph's events
update the views. Whether a wire may go somewhere, and the quick fixes, come from
the document's :class:`core.analysis.GraphAnalysis`.
"""

from __future__ import annotations

import json

from PySide6.QtCore import QObject, QPointF, Signal
from PySide6.QtGui import QGuiApplication, QUndoCommand

from app.commands import (
    AddNodeCommand,
    AddSubgraphCommand,
    ConnectCommand,
    ConnectPendingCommand,
    MacroCommand,
    MoveNodesCommand,
    RemoveCommand,
    RenameCommand,
    SetLossCommand,
    SetMetaCommand,
    SetParamsCommand,
    SetValueCommand,
    clone_nodes,
    subgraph_dict,
)
from app.document import Document
from core.errors import StudioError
from core.graph import Edge
from core.layout import layered_layout
from core.ops import REGISTRY, get_op
from core.ops.base import fmt_shape
from widgets.canvas import GRID, NODE_MIN_W, NodeItem


def _aligned(rects: dict, how: str) -> dict:
    """New top-left corners of card ``rects`` aligned by ``how`` (``"left"``, ``"hcenter"``…)."""
    if how == "left":
        v = min(r.left() for r in rects.values())
        return {k: (v, r.top()) for k, r in rects.items()}
    if how == "right":
        v = max(r.right() for r in rects.values())
        return {k: (v - r.width(), r.top()) for k, r in rects.items()}
    if how == "top":
        v = min(r.top() for r in rects.values())
        return {k: (r.left(), v) for k, r in rects.items()}
    if how == "bottom":
        v = max(r.bottom() for r in rects.values())
        return {k: (r.left(), v - r.height()) for k, r in rects.items()}
    if how == "hcenter":  # centres on one vertical line
        v = sum(r.center().x() for r in rects.values()) / len(rects)
        return {k: (v - r.width() / 2, r.top()) for k, r in rects.items()}
    # centres on one horizontal line
    v = sum(r.center().y() for r in rects.values()) / len(rects)
    return {k: (r.left(), v - r.height() / 2) for k, r in rects.items()}


def _distributed(rects: list, axis: str) -> dict:
    """Top-left corners spacing ``(id, rect)`` pairs (sorted along ``axis``) evenly."""
    new = {}
    if axis == "x":
        span = rects[-1][1].right() - rects[0][1].left()
        gap = (span - sum(r.width() for _, r in rects)) / (len(rects) - 1)
        at = rects[0][1].left()
        for k, r in rects:
            new[k] = (at, r.top())
            at += r.width() + gap
    else:
        span = rects[-1][1].bottom() - rects[0][1].top()
        gap = (span - sum(r.height() for _, r in rects)) / (len(rects) - 1)
        at = rects[0][1].top()
        for k, r in rects:
            new[k] = (r.left(), at)
            at += r.height() + gap
    return new


class EditingController(QObject):
    """Turns the canvas's, the inspector's and the menus' requests into undoable commands.

    Parameters
    ----------
    document : Document
        Whose graph is edited (read anew each time: opening a file replaces it).
    scene : GraphScene
        The canvas (selection, card geometry, snapping).
    view : GraphView
        The canvas view (cursor position, fitting).
    inspector : Inspector
        Shows why a parameter edit was refused.
    quick_add : QuickAdd
        The op search popup.
    parent : QObject, optional
        Owner (the window).

    Attributes
    ----------
    message : Signal(str, int)
        A status message and how long to show it (ms).
    inspector_refresh : Signal()
        The inspector must show the node again (a refused rename).
    """

    message = Signal(str, int)
    inspector_refresh = Signal()

    def __init__(self, document: Document, scene, view, inspector, quick_add, parent=None):
        super().__init__(parent)
        self.document = document
        self.scene = scene
        self.view = view
        self.inspector = inspector
        self.quick_add = quick_add
        self._clipboard_fallback = None
        self._quick_ctx = None
        quick_add.chosen.connect(self._on_quick_add_chosen)

    @property
    def graph(self):
        return self.document.graph

    # ------------------------------------------------------------ selection
    def selected_node_ids(self) -> list:
        ids = {it.node_id for it in self.scene.selected_nodes()}
        return [nid for nid in self.graph.nodes if nid in ids]

    def select_all(self):
        for item in self.scene.nodes.values():
            item.setSelected(True)

    def select_nodes(self, node_ids):
        self.scene.clearSelection()
        for nid in node_ids:
            if nid in self.scene.nodes:
                self.scene.nodes[nid].setSelected(True)

    # ------------------------------------------------------------ commands
    def push(self, command) -> bool:
        """Put a command (or a function building one) on the undo stack.

        Commands check their input when they are built, so a refused edit is
        reported here and never reaches the stack half done.
        """
        if not isinstance(command, QUndoCommand):
            command = self.build(command)
            if command is None:
                return False
        self.document.undo_stack.push(command)
        return True

    def build(self, factory):
        """``factory()``, or ``None`` after showing why the edit is refused."""
        try:
            return factory()
        except StudioError as exc:
            self.message.emit(str(exc), 8000)
            self.inspector.show_param_error(str(exc))
            return None

    def add_op(self, op_id: str, scene_pos: QPointF, **kw):
        """Add ``op_id`` with its card's header centred under ``scene_pos``."""
        if op_id not in REGISTRY:
            return None
        pos = self._card_origin(scene_pos)
        cmd = self.build(lambda: AddNodeCommand(self.graph, op_id, pos, **kw))
        if cmd is None:
            return None
        self.push(cmd)
        self.select_nodes([cmd.node.id])
        return cmd.node

    def _card_origin(self, scene_pos: QPointF, x_off=NODE_MIN_W / 2, y_off=14.0):
        x, y = scene_pos.x() - x_off, scene_pos.y() - y_off
        if self.scene.snap_to_grid:
            x, y = round(x / GRID) * GRID, round(y / GRID) * GRID
        return (x, y)

    def connect_edge(self, edge: Edge):
        self.push(ConnectCommand(self.graph, edge))

    def rewire(self, old: Edge, new: Edge | None):
        """Move a wire to another input (``new``), or take it out (``None``)."""
        g = self.graph
        what = f"'{g.nodes[old.src].name}' → '{g.nodes[old.dst].name}.{old.dst_port}'"
        if new is None:
            self.push(RemoveCommand(g, edges=[old], text=f"Disconnect {what}"))
            return
        remove = RemoveCommand(g, edges=[old])
        self.push(MacroCommand(f"Move wire {what} to '{g.nodes[new.dst].name}.{new.dst_port}'",
                               [remove, ConnectCommand(g, new)]))

    def connect_ports(self, src, dst, dst_port=None, src_port=None) -> bool:
        """Connect like a drop would, with the same checks; returns whether it connected."""
        src_id, dst_id = self.graph.node(src).id, self.graph.node(dst).id
        dst_port = dst_port or self.graph.nodes[dst_id].input_ports[0]
        src_port = src_port or self.graph.nodes[src_id].output_ports[0]
        edge, msg, fixable = self.document.analysis.can_connect(src_id, src_port,
                                                                dst_id, dst_port)
        if edge is None:
            if fixable:
                self.connect_through_flatten(src_id, src_port, dst_id, dst_port)
                return True
            self.scene.last_refusal = msg
            self.message.emit("Not connected: " + msg, 8000)
            return False
        self.connect_edge(edge)
        return True

    def connect_through_flatten(self, src_id, src_port, dst_id, dst_port, replace=None):
        """Connect ``src`` to ``dst`` through a new Flatten node (the obvious shape fix)."""
        g = self.graph
        si, di = self.scene.nodes[src_id], self.scene.nodes[dst_id]
        x = (si.pos().x() + si.width + di.pos().x()) / 2 - NODE_MIN_W / 2
        y = di.pos().y() + di.port_y(dst_port, False) - 50
        pos = self.scene.free_spot(QPointF(x, y))
        steps = [] if replace is None else [RemoveCommand(g, edges=[replace])]
        add = AddNodeCommand(g, "flatten", (pos.x(), pos.y()))
        steps += [add,
                  ConnectPendingCommand(g, src_id, lambda: add.node.id, src_port=src_port),
                  ConnectPendingCommand(g, lambda: add.node.id, dst_id, dst_port=dst_port)]
        self.push(MacroCommand(f"Insert Flatten before '{g.nodes[dst_id].name}'", steps))

    def apply_quick_fix(self, node_id):
        fix = self.document.analysis.quick_fix(node_id)
        if fix is None:
            return
        port = fix.port
        e = self.graph.in_edges(node_id)[port]
        self.connect_through_flatten(e.src, e.src_port, node_id, port, replace=e)

    def set_params(self, node_id, changes: dict):
        self.push(lambda: SetParamsCommand(self.graph, node_id, changes))

    def set_value(self, node_id, value):
        self.push(lambda: SetValueCommand(self.graph, node_id, value))

    def rename_node(self, node_id, name):
        if not self.push(lambda: RenameCommand(self.graph, node_id, name)):
            self.inspector_refresh.emit()

    def set_loss(self, node_id):
        if node_id != self.graph.loss:
            self.push(SetLossCommand(self.graph, node_id))

    def set_meta(self, name, description):
        self.push(SetMetaCommand(self.graph, name, description))
        self.document.title_changed.emit()

    def _on_nodes_moved(self, moves: dict):
        self.push(MoveNodesCommand(self.graph, moves))

    def delete_selection(self):
        nodes = self.selected_node_ids()
        edges = [it.edge for it in self.scene.selected_edges()
                 if it.edge.src not in nodes and it.edge.dst not in nodes]
        if nodes or edges:
            self.push(RemoveCommand(self.graph, nodes, edges))

    def delete_edge(self, edge: Edge):
        self.push(RemoveCommand(self.graph, edges=[edge]))

    # ------------------------------------------------------------ clipboard
    def copy(self) -> bool:
        ids = self.selected_node_ids()
        if not ids:
            return False
        text = json.dumps(subgraph_dict(self.graph, ids))
        self._clipboard_fallback = text
        # Plain text (the graph-file JSON of the selection), not a QMimeData of our own:
        # PySide6 crashes at exit when the clipboard still owns a Python-made QMimeData.
        QGuiApplication.clipboard().setText(text)
        self.message.emit(f"Copied {len(ids)} node{'s' * (len(ids) > 1)}", 3000)
        return True

    def cut(self):
        if self.copy():
            self.push(RemoveCommand(self.graph, self.selected_node_ids(), text="Cut"))

    def clipboard_text(self):
        """The graph JSON on the clipboard (or the last copy, if the clipboard lost it)."""
        md = QGuiApplication.clipboard().mimeData()
        if md is not None and md.hasText() and md.text().lstrip().startswith("{"):
            return md.text()
        return self._clipboard_fallback

    def paste(self, at: QPointF | None = None):
        text = self.clipboard_text()
        if not text:
            return
        try:
            data = json.loads(text)
            nodes, positions, edges = clone_nodes(self.graph, data, offset=(0, 0))
        except (ValueError, StudioError) as exc:
            self.message.emit(f"The clipboard holds no nodes ({exc})", 5000)
            return
        if positions:
            left = min(p[0] for p in positions.values())
            top = min(p[1] for p in positions.values())
            target = at if at is not None else self.view.cursor_scene_pos()
            dx, dy = target.x() - left, target.y() - top
            positions = {k: (x + dx, y + dy) for k, (x, y) in positions.items()}
        self._add_subgraph(nodes, positions, edges, "Paste")

    def duplicate(self):
        ids = self.selected_node_ids()
        if not ids:
            return
        nodes, positions, edges = clone_nodes(self.graph, subgraph_dict(self.graph, ids),
                                              offset=(GRID * 2, GRID * 2))
        self._add_subgraph(nodes, positions, edges, "Duplicate")

    def _add_subgraph(self, nodes, positions, edges, text):
        n = len(nodes)
        if self.push(AddSubgraphCommand(self.graph, nodes, positions, edges,
                                        f"{text} {n} node{'s' * (n > 1)}")):
            self.select_nodes([node.id for node in nodes])

    # ------------------------------------------------------------ arrange
    def layout_positions(self) -> dict:
        """Where :func:`layered_layout` would put every node now."""
        items = self.scene.nodes
        sizes = {nid: (it.width, it.height) for nid, it in items.items()}
        return layered_layout(self.graph, sizes,
                              lambda nid, port, out: items[nid].port_y(port, out))

    def auto_layout(self):
        pos = self.layout_positions()
        moves = {nid: (self.graph.layout.get(nid), p) for nid, p in pos.items()
                 if self.graph.layout.get(nid) != p}
        if moves:
            self.push(MoveNodesCommand(self.graph, moves, text="Auto layout"))
        self.view.fit_to_view()

    def align(self, how: str):
        items = self.scene.selected_nodes()
        if len(items) < 2:
            self.message.emit("Select two or more nodes to align them", 4000)
            return
        rects = {it.node_id: it.scene_card_rect() for it in items}
        self._move_to(_aligned(rects, how), f"Align {how}")

    def distribute(self, axis: str):
        items = self.scene.selected_nodes()
        if len(items) < 3:
            self.message.emit("Select three or more nodes to distribute them", 4000)
            return
        rects = sorted(((it.node_id, it.scene_card_rect()) for it in items),
                       key=lambda kr: kr[1].left() if axis == "x" else kr[1].top())
        self._move_to(_distributed(rects, axis),
                      "Distribute " + ("horizontally" if axis == "x" else "vertically"))

    def _move_to(self, new: dict, text: str):
        moves = {k: (self.graph.layout.get(k), (round(x, 3), round(y, 3)))
                 for k, (x, y) in new.items()
                 if self.graph.layout.get(k) != (round(x, 3), round(y, 3))}
        if moves:
            self.push(MoveNodesCommand(self.graph, moves, text=text))

    # ------------------------------------------------------------ quick add
    def quick_add_at_cursor(self):
        self.open_quick_add(self.view.cursor_scene_pos(), None)

    def open_quick_add(self, scene_pos: QPointF, port_ctx=None):
        self._quick_ctx = (QPointF(scene_pos), port_ctx)
        allowed, caption = None, ""
        if port_ctx is not None:
            node_id, port, is_output = port_ctx
            analysis = self.document.analysis
            allowed = analysis.compatible_ops(node_id, port, is_output)
            node = self.graph.nodes[node_id]
            if is_output:
                shape = analysis.output_shape(node_id, port)
                caption = f"Ops that take {node.name}.{port}" + (
                    f" {fmt_shape(shape)}" if shape is not None else "")
            else:
                caption = f"Ops that can feed {node.name}.{port}"
        gp = self.view.viewport().mapToGlobal(self.view.mapFromScene(scene_pos))
        self.quick_add.open_at(gp, allowed, caption)

    def _on_quick_add_chosen(self, op_id):
        if self._quick_ctx is None:
            return
        pos, port_ctx = self._quick_ctx
        self._quick_ctx = None
        self.add_from_quick(op_id, pos, port_ctx)

    def add_from_quick(self, op_id, pos: QPointF, port_ctx=None):
        """Add ``op_id`` at ``pos``; when a port was dragged out, wire the new node to it."""
        if port_ctx is None:
            return self.add_op(op_id, pos)
        node_id, port, is_output = port_ctx
        op_cls = get_op(op_id)
        g = self.graph
        if is_output:
            origin = self._card_origin(pos, x_off=0, y_off=NodeItem.port_offset(0))
        else:
            origin = self._card_origin(pos, x_off=NODE_MIN_W,
                                       y_off=NodeItem.port_offset(0))
        add = AddNodeCommand(g, op_id, origin)
        if is_output:
            wire = ConnectPendingCommand(g, node_id, lambda: add.node.id, src_port=port,
                                         dst_port=op_cls.inputs[0])
        else:
            wire = ConnectPendingCommand(g, lambda: add.node.id, node_id,
                                         src_port=op_cls.outputs[0], dst_port=port)
        if self.push(MacroCommand(f"Add {op_cls.label} and connect", [add, wire])):
            self.select_nodes([add.node.id])
            return add.node
        return None
