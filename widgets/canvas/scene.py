"""The scene: one item per node and edge of a :class:`core.graph.Graph`, kept in sync.

The graph is the truth. :class:`GraphScene` subscribes to its events and keeps
one :class:`NodeItem` per node and one :class:`EdgeItem` per edge; the shapes
they show come from a :class:`core.analysis.GraphAnalysis`. User gestures never
edit the model from here: the scene emits *requests* (``connect_requested``,
``nodes_moved``, ``op_dropped``…) that the main window turns into undo
commands, which call the model, whose events update the items.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
from PySide6.QtCore import QLineF, QPointF, QRectF, QSizeF, Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPainter, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsScene

from core.analysis import GraphAnalysis
from core.graph import Edge, Graph, ShapeReport
from core.ops.base import fmt_shape
from widgets.canvas.items import FOOTER_H, GRID, HEADER_H, NODE_MIN_W, ROW_H, NodeItem, _fonts
from widgets.canvas.lod import BOUNDS_STEP, LevelOfDetail
from widgets.canvas.overlays import DragWire
from widgets.canvas.routing import plain_is_clear
from widgets.canvas.spatial import CardIndex
from widgets.canvas.stepping import SteppingOverlay
from widgets.canvas.wires import EdgeItem, Port
from widgets.theme import LIGHT, Theme

FEW_CARDS = 64  # up to this many cards near a box are tested one by one, more as an array
ROUTE_PER_MOVE = 12  # a dragged card's wires routed in full per mouse move; the rest plain
ROUTE_PER_TICK = 12  # plain wires routed in full per idle tick once the drag rests
DRAG_REST_MS = 120  # the mouse held this still mid-drag: the plain wires get their routes
MANY_WIRES = 200  # from this many wires at once the plain curves are checked as one array


class GraphScene(LevelOfDetail, QGraphicsScene):
    """Items mirroring a :class:`Graph`; gestures become request signals.

    Signals
    -------
    connect_requested(Edge)
        A legal connection was dropped on a port.
    rewire_requested(Edge, Edge or None)
        A wire picked up from an input was dropped on another input (or let go).
    connect_with_flatten_requested(src_id, src_port, dst_id, dst_port)
        A 4-D tensor was dropped on an input that wants it flattened.
    nodes_moved(dict)
        node id -> ((old x, old y), (new x, new y)) after a drag.
    quick_add_requested(QPointF, object)
        Open the add-node popup at a scene point; the object is ``None`` or
        ``(node_id, port, is_output)`` of a port dragged into empty space.
    shapes_updated(ShapeReport)
    connection_refused(str)
        Why a connection dropped on a port was refused.
    node_activated(str)
    wire_clicked(Edge)
        A wire was clicked while stepping is shown.
    port_clicked(node_id, port, is_output)
        A port was clicked while stepping is shown.
    breakpoint_toggled(node_id)
        The breakpoint dot of a card was clicked.

    Attributes
    ----------
    stepping : SteppingOverlay
        Values, gradients and node states while stepping (see ``show`` / ``clear``).
    """

    connect_requested = Signal(object)
    rewire_requested = Signal(object, object)
    connect_with_flatten_requested = Signal(str, str, str, str)
    nodes_moved = Signal(dict)
    quick_add_requested = Signal(QPointF, object)
    shapes_updated = Signal(object)
    connection_refused = Signal(str)
    node_activated = Signal(str)
    quick_fix_requested = Signal(str)
    wire_clicked = Signal(object)
    port_clicked = Signal(str, str, bool)
    breakpoint_toggled = Signal(str)

    def __init__(self, graph: Graph | None = None, theme: Theme = LIGHT, parent=None,
                 analysis: GraphAnalysis | None = None):
        super().__init__(parent)
        self.theme = theme
        self.fonts = _fonts()
        self.graph: Graph | None = None
        self.analysis: GraphAnalysis | None = None  # the shapes the cards show come from here
        self._owns_analysis = False
        self.nodes: dict[str, NodeItem] = {}
        self.edges: dict[Edge, EdgeItem] = {}
        self.report = ShapeReport()
        self.snap_to_grid = False
        self.last_refusal = ""
        self._drag = None
        self._wire = None
        self._shape_timer = QTimer(self)
        self._shape_timer.setSingleShot(True)
        self._shape_timer.setInterval(0)
        self._shape_timer.timeout.connect(self.refresh_shapes)
        self._dirty_edges = set()
        self._edge_timer = QTimer(self)
        self._edge_timer.setSingleShot(True)
        self._edge_timer.setInterval(0)
        self._edge_timer.timeout.connect(self.flush_edges)
        self._rough_edges: dict = {}  # wires drawn plain during a drag, in order (see flush_edges)
        self._rough_timer = QTimer(self)
        self._rough_timer.setSingleShot(True)
        self._rough_timer.timeout.connect(self._route_rough_some)
        self._cards = None  # (items, array of left, top, right, bottom), rebuilt when stale
        self._bounds_timer = QTimer(self)
        self._bounds_timer.setSingleShot(True)
        self._bounds_timer.setInterval(0)
        self._bounds_timer.timeout.connect(self.fit_bounds)
        self.geometry_version = 0
        self.shape_version = 0
        self.smooth_grid = False  # antialiased grid lines (for pictures, see render_scene)
        self._init_detail()
        self.stepping = SteppingOverlay(self)
        self._breakpoints: set = set()
        self._moved = None  # cards moved inside moving_many(), brought up to date at its end
        self.setItemIndexMethod(QGraphicsScene.BspTreeIndex)
        if graph is not None:
            self.set_graph(graph, analysis=analysis)

    # --------------------------------------------------------- model sync
    def set_graph(self, graph: Graph, route: bool = True,
                  analysis: GraphAnalysis | None = None):
        """Show ``graph`` (unsubscribing from the previous one) and rebuild every item.

        ``route=False`` leaves the wires unrouted until :meth:`flush_edges`, for a
        caller that moves the cards first (so no wire is routed twice).
        ``analysis`` is the graph's :class:`GraphAnalysis` if the caller keeps one
        (so shapes are inferred once per edit); otherwise the scene makes its own.
        """
        self.detach()
        self.clearSelection()
        for item in list(self.nodes.values()) + list(self.edges.values()):
            self.removeItem(item)
        self.nodes.clear()
        self.edges.clear()
        self._dirty_edges.clear()
        self._rough_edges.clear()
        self._rough_timer.stop()
        self.graph = graph
        self._owns_analysis = analysis is None
        self.analysis = GraphAnalysis(graph) if analysis is None else analysis
        self.analysis.changed.subscribe(self.schedule_shapes)
        self.report = self.analysis.report  # so each card is built once, with its shape
        self._subs = [
            (graph.node_added, self._on_node_added),
            (graph.node_removed, self._on_node_removed),
            (graph.node_changed, self._on_node_changed),
            (graph.edge_added, self._on_edge_added),
            (graph.edge_removed, self._on_edge_removed),
            (graph.layout_changed, self._on_layout_changed),
            (graph.meta_changed, self._on_meta_changed),
        ]
        for ev, cb in self._subs:
            ev.subscribe(cb)
        for node in graph.nodes.values():
            self._on_node_added(node)
        self.card_geometry_changed()  # the obstacle map was the previous graph's
        for edge in graph.edges:
            self._on_edge_added(edge)
        self._on_meta_changed()
        # the cards were built from this report just above: only the wire labels are new
        self.refresh_shapes(self.report, cards=False)
        if route:
            self.flush_edges()
        self.fit_bounds()
        # (the index stays on throughout: switched off and on again around a second
        # graph, Qt's index made every mouse move over the canvas ask every card)
        # cells fine enough that a frame asks only the items near the view for their
        # bounds (Qt kept 5 levels, 32 cells, for a 500-node graph)
        self.setBspTreeDepth(max(8, min(14, round(math.log2(len(self.items()) + 2)))))

    def detach(self):
        """Stop listening to the current graph (and close the analysis the scene made)."""
        for ev, cb in getattr(self, "_subs", ()):
            ev.unsubscribe(cb)
        self._subs = []
        if self.analysis is not None:
            self.analysis.changed.unsubscribe(self.schedule_shapes)
            if self._owns_analysis:
                self.analysis.close()

    def _on_node_added(self, node):
        item = NodeItem(self, node, self._info(node.id))
        if not self.detailed:
            item.setFlag(QGraphicsItem.ItemHasNoContents)
        self.nodes[node.id] = item
        pos = self.graph.layout.get(node.id)
        if pos is not None:  # without a place a card stays at (0, 0) until the model gives one
            item.sync_pos(pos)
        if node.id in self._breakpoints:
            item.breakpoint_dot.set_breakpoint(True)
        self.addItem(item)

    def _on_node_removed(self, node):
        item = self.nodes.pop(node.id, None)
        if item is not None:
            for e in list(item.edges):
                self._remove_edge_item(e)
            self.removeItem(item)
            self.card_geometry_changed()

    def _on_node_changed(self, node):
        item = self.nodes.get(node.id)
        if item is not None:
            item.set_node(node, *self._info(node.id))

    def _on_edge_added(self, edge):
        src, dst = self.nodes[edge.src], self.nodes[edge.dst]
        item = EdgeItem(self, edge, src, dst)
        if not self.detailed:
            item.setFlag(QGraphicsItem.ItemHasNoContents)
        self.edges[edge] = item
        self.addItem(item)
        self.mark_edge_dirty(item)
        src.out_ports[edge.src_port].connected = True
        dst.in_ports[edge.dst_port].connected = True
        src.out_ports[edge.src_port].update()
        dst.in_ports[edge.dst_port].update()

    def _on_edge_removed(self, edge):
        item = self.edges.get(edge)
        if item is not None:
            self._remove_edge_item(item)

    def _remove_edge_item(self, item):
        self.edges.pop(item.edge, None)
        self._dirty_edges.discard(item)
        self._rough_edges.pop(item, None)
        item.detach()
        self.removeItem(item)
        e = item.edge
        if e.src in self.nodes:
            port = self.nodes[e.src].out_ports[e.src_port]
            port.connected = any(x.src == e.src and x.src_port == e.src_port for x in self.edges)
            port.update()
        if e.dst in self.nodes:
            self.nodes[e.dst].in_ports[e.dst_port].connected = False
            self.nodes[e.dst].in_ports[e.dst_port].update()

    def _on_layout_changed(self, node_id):
        item = self.nodes.get(node_id)
        pos = self.graph.layout.get(node_id)
        if item is not None and pos is not None:
            item.sync_pos(pos)

    def _on_meta_changed(self):
        for nid, item in self.nodes.items():
            loss = nid == self.graph.loss
            if item.is_loss != loss:
                item.is_loss = loss
                item.update()

    @contextlib.contextmanager
    def moving_many(self):
        """Many cards move at once (a graph being opened is laid out): the obstacle map and
        the wires of the moved cards are brought up to date once at the end, not per card."""
        outer, self._moved = self._moved, set()
        try:
            yield
        finally:
            moved, self._moved = self._moved, outer
            if outer is not None:
                outer |= moved
            elif moved:
                self.card_geometry_changed()
                for item in moved:
                    self._mark_wires(item)

    def card_moved(self, item):
        """``item`` moved or changed size: its wires and the obstacle map follow."""
        if self._moved is not None:  # one of many cards moving at once: see moving_many
            self._moved.add(item)
            return
        self.card_geometry_changed(item)
        self._mark_wires(item)

    def _mark_wires(self, item):
        # each wire once, however many of its ends moved: after every dragged card has
        # moved (mouseMoveEvent), or once a burst of edits ends (undo, layout)
        for e in item.edges:
            self.mark_edge_dirty(e)

    # ---------------------------------------------------------- geometry
    def card_geometry_changed(self, item=None):
        """A card moved, appeared or changed size: the obstacle map is stale.

        With ``item`` (one card moved or resized) only its row is updated: a
        drag moves one card per frame, and rebuilding the map for a large graph
        each time would slow every frame of the drag.
        """
        self.geometry_version += 1
        self._bounds_timer.start()
        if item is not None and self._cards is not None:
            row = self._cards[2].get(item)
            if row is not None:
                self._cards[3].move(row, (item.x(), item.y(), item.x() + item.width,
                                          item.y() + item.height))
                return
        self._cards = None

    def _card_map(self):
        """(items, array of left, top, right, bottom, row of each item, grid index)."""
        if self._cards is None:
            items = list(self.nodes.values())
            arr = np.array([(it.x(), it.y(), it.x() + it.width, it.y() + it.height)
                            for it in items], dtype=float).reshape(-1, 4)
            self._cards = (items, arr, {it: i for i, it in enumerate(items)}, CardIndex(arr))
        return self._cards

    def obstacles(self, x0, x1, y0, y1, exclude=(), margin=8.0):
        """Card rectangles (grown by ``margin``) meeting the box, as rows of l, t, r, b.

        Only the cards filed near the box are tested (see :class:`CardIndex`); the
        result is the same as testing every card, in the same order.
        """
        _items, arr, rows_of, index = self._card_map()
        rows = index.rows(x0 - margin, x1 + margin, y0 - margin, y1 + margin)
        if rows is not None and len(rows) <= FEW_CARDS:
            # the few cards near the box, one by one (the same float arithmetic as below)
            skip = {rows_of.get(it) for it in exclude}
            boxes = index.boxes
            out = [(l - margin, t - margin, r + margin, b + margin)
                   for l, t, r, b in (boxes[i] for i in rows if i not in skip)
                   if r + margin > x0 and l - margin < x1 and b + margin > y0 and t - margin < y1]
            return np.array(out, dtype=float).reshape(-1, 4)
        if rows is not None:
            rows = np.array(rows, dtype=np.intp)
            arr = arr[rows]
        keep = (arr[:, 2] + margin > x0) & (arr[:, 0] - margin < x1) & \
               (arr[:, 3] + margin > y0) & (arr[:, 1] - margin < y1)
        for it in exclude:
            row = rows_of.get(it)
            if row is not None:
                if rows is None:
                    keep[row] = False
                else:
                    keep &= rows != row
        out = arr[keep]
        out[:, :2] -= margin
        out[:, 2:] += margin
        return out

    def fit_bounds(self):
        """Keep the scene's area (its item index) just around the cards.

        Rounded out to ``BOUNDS_STEP`` with a step of margin for wire detours, so a
        drag rarely changes it (each change re-indexes every item).
        """
        self._bounds_timer.stop()
        arr = self.obstacles(-1e12, 1e12, -1e12, 1e12, margin=0.0)
        if not len(arr):
            return
        step = BOUNDS_STEP
        left = (math.floor(arr[:, 0].min() / step) - 1) * step
        top = (math.floor(arr[:, 1].min() / step) - 1) * step
        right = (math.ceil(arr[:, 2].max() / step) + 1) * step
        bottom = (math.ceil(arr[:, 3].max() / step) + 1) * step
        self.overview.set_bounds(QRectF(left, top, right - left, bottom - top))

    def cards_in(self, rect: QRectF) -> int:
        """How many cards meet ``rect`` (from the obstacle map: no item is asked)."""
        return len(self.obstacles(rect.left(), rect.right(), rect.top(), rect.bottom(),
                                  margin=0.0))

    def cards_meeting(self, rect: QRectF) -> list:
        """The cards meeting ``rect``, left to right (neighbours come one after another)."""
        items, arr, _rows, _index = self._card_map()
        keep = np.flatnonzero((arr[:, 2] > rect.left()) & (arr[:, 0] < rect.right())
                              & (arr[:, 3] > rect.top()) & (arr[:, 1] < rect.bottom()))
        keep = keep[np.lexsort((arr[keep, 1], arr[keep, 0]))]
        return [items[i] for i in keep]

    def overlapping_cards(self) -> int:
        """How many pairs of cards overlap (a file laid out for other card sizes has some)."""
        arr = self._card_map()[1]
        l, t, r, b = (arr[:, i] for i in range(4))
        pairs = 0
        # a block of cards against all others at a time: a 5,000-card matrix is 25 M cells
        for start in range(0, len(arr), 512):
            part = arr[start:start + 512]
            hit = ((part[:, :1] < r) & (l < part[:, 2:3]) & (part[:, 1:2] < b)
                   & (t < part[:, 3:4]))
            hit &= np.arange(len(arr)) > np.arange(start, start + len(part))[:, None]
            pairs += int(hit.sum())
        return pairs

    def mark_edge_dirty(self, item):
        """Re-route ``item`` soon (once, however many of its ends moved)."""
        if not self._dirty_edges:
            self._edge_timer.start()  # once per burst: a graph being opened marks thousands
        self._dirty_edges.add(item)

    def flush_edges(self, budget: int | None = None):
        """Re-route every wire whose ends moved since the last flush.

        With ``budget`` (a frame of a drag) only that many, the shortest, are routed
        round the cards; the others are drawn as the plain curve for now and routed
        a few per tick once the mouse rests. Without it every wire gets its full
        route, those drawn plain included, so the picture after a drag, an undo or
        a redo is the one a full route gives.
        """
        self._edge_timer.stop()
        dirty, self._dirty_edges = self._dirty_edges, set()
        live = [it for it in dirty if it.scene() is self]
        plain = []
        if budget is None:
            self._rough_timer.stop()
            pending, self._rough_edges = self._rough_edges, {}
            live.extend(it for it in pending if it not in dirty and it.scene() is self)
        elif len(live) > budget:
            # the short wires stay next to the card (in view) and are the quickest to route
            live.sort(key=_span_of)
            live, plain = live[:budget], live[budget:]
        rough = self._rough_edges
        if len(live) >= MANY_WIRES:
            ends = [w.endpoints() for w in live]
            clear = self._clear_of_cards(live, ends).tolist()
        else:
            ends = clear = [None] * len(live)
        for item, ok, ports in zip(live, clear, ends):
            item.update_path(clear=bool(ok), ends=ports)
            rough.pop(item, None)
        for item in plain:
            item.update_path(rough=True)
            rough[item] = None
        if rough:
            self._rough_timer.start(DRAG_REST_MS)  # again from the start at each move
        if live or plain:
            self.geometry_version += 1  # the overview redraws the wires

    def _clear_of_cards(self, wires, ends) -> np.ndarray:
        """Which of ``wires`` (with their ``endpoints()``, ``ends``) the router would draw as
        the plain curve, found for all at once (most wires of a graph being opened run clear
        of every card)."""
        _items, arr, rows_of, _index = self._card_map()
        ends = np.array([(a.x(), a.y(), b.x(), b.y()) for a, b in ends],
                        dtype=float).reshape(-1, 4)
        own = np.array([(rows_of.get(w.src, -1), rows_of.get(w.dst, -1)) for w in wires],
                       dtype=np.int64).reshape(-1, 2)
        return plain_is_clear(ends, arr, own)

    def _route_rough_some(self):
        """Route the next few wires drawn plain during a drag (the mouse rests)."""
        rough = self._rough_edges
        for _ in range(min(ROUTE_PER_TICK, len(rough))):
            item = next(iter(rough))
            del rough[item]
            if item.scene() is self:
                item.update_path()
        self.geometry_version += 1
        if rough:
            self._rough_timer.start(0)

    # -------------------------------------------------------------- shapes
    def schedule_shapes(self):
        """Redraw the shapes once control returns to the event loop (edits come in bursts).

        Called by the analysis' ``changed`` event, once per burst of edits.
        """
        self._shape_timer.start()

    def _info(self, node_id):
        r = self.report
        return (r.shapes.get(node_id), r.errors.get(node_id), node_id in r.blocked,
                r.params_of(node_id))

    def refresh_shapes(self, report: ShapeReport | None = None, cards: bool = True):
        """Show the current shape report (or ``report``) on every card and wire label.

        ``cards=False`` leaves the cards as they are (they were just made from ``report``).
        """
        self._shape_timer.stop()
        if self.graph is None:
            return
        self.report = report if report is not None else self.analysis.report
        for nid, item in self.nodes.items() if cards else ():
            item.set_node(self.graph.nodes[nid], *self._info(nid))
        for edge, item in self.edges.items():
            shapes = self.report.shapes.get(edge.src)
            if shapes is None:
                item.set_label("?")
            else:
                k = self.graph.nodes[edge.src].output_ports.index(edge.src_port)
                item.set_label(fmt_shape(shapes[k]), bad=edge.dst in self.report.errors)
        self.shape_version += 1
        if not self.detailed:
            self.overview.update()
        self.shapes_updated.emit(self.report)

    # -------------------------------------------------------- connections
    def begin_connection(self, port: Port, pos: QPointF, lifted: Edge | None = None):
        self._drag = {"port": port, "target": None, "lifted": lifted}
        self._wire = DragWire(self.theme, self.fonts)
        self.addItem(self._wire)
        self.drag_connection(pos)

    def begin_rewire(self, port: Port, pos: QPointF):
        """Pick up the wire plugged into input ``port``: drop it on another input or let go."""
        edge = self.graph.in_edges(port.node_id)[port.name]
        self.edges[edge].hide()
        origin = self.nodes[edge.src].out_ports[edge.src_port]
        self.begin_connection(origin, pos, lifted=edge)

    def _port_near(self, pos: QPointF, want_output: bool):
        best, best_d = None, 22.0
        for it in self.items(QRectF(pos.x() - 22, pos.y() - 22, 44, 44)):
            if isinstance(it, NodeItem):
                for port in (it.out_ports if want_output else it.in_ports).values():
                    d = QLineF(port.scenePos(), pos).length()
                    if d < best_d:
                        best, best_d = port, d
        if best is None:
            # dropping on a card's body means its first free input (or its first output)
            for it in self.items(pos):
                if isinstance(it, NodeItem):
                    ports = it.out_ports if want_output else it.in_ports
                    free = [p for p in ports.values() if want_output or not p.connected]
                    if free:
                        return free[0]
        return best

    def _ends(self, origin: Port, target: Port):
        if origin.is_output:
            return origin.node_id, origin.name, target.node_id, target.name
        return target.node_id, target.name, origin.node_id, origin.name

    def drag_connection(self, pos: QPointF):
        if self._drag is None:
            return
        origin = self._drag["port"]
        target = self._port_near(pos, not origin.is_output)
        if target is not None and target.node_item is origin.node_item:
            target = None
        old = self._drag["target"]
        if old is not None and old is not target:
            old.highlight = None
            old.update()
        state, hint = None, ""
        lifted = self._drag.get("lifted")
        if target is not None and lifted is not None and \
                (target.node_id, target.name) == (lifted.dst, lifted.dst_port):
            # back where it came from: a drop changes nothing
            state, hint = "ok", "✓ put the wire back"
            target.highlight = "ok"
            target.update()
            self._drag.update(target=target, edge=lifted, msg="", fixable=False)
        elif target is not None:
            edge, msg, fixable = self.analysis.can_connect(*self._ends(origin, target))
            state = "ok" if edge is not None else ("fix" if fixable else "bad")
            hint = ("✓ " if edge is not None else "✗ ") + msg
            target.highlight = "ok" if edge is not None else "bad"
            target.update()
            self._drag.update(target=target, edge=edge, msg=msg, fixable=fixable)
        else:
            self._drag["target"] = None
            if lifted is not None:
                hint = "release to disconnect"
        a = origin.scenePos()
        b = target.scenePos() if target is not None else pos
        if not origin.is_output:
            a, b = b, a
        views = self.views()
        bounds = views[0].mapToScene(views[0].viewport().rect()).boundingRect() \
            if views else None
        self._wire.set(a, b, state, hint, pos, bounds)

    def end_connection(self, pos: QPointF):
        drag, self._drag = self._drag, None
        if self._wire is not None:
            self.removeItem(self._wire)
            self._wire = None
        if drag is None:
            return
        target = drag["target"]
        origin = drag["port"]
        lifted = drag.get("lifted")
        if lifted is not None and lifted in self.edges:
            self.edges[lifted].show()
        if lifted is not None:
            if target is not None:
                target.highlight = None
                target.update()
            if target is None:
                self.rewire_requested.emit(lifted, None)
            elif drag["edge"] is not None and drag["edge"] != lifted:
                self.rewire_requested.emit(lifted, drag["edge"])
            elif drag["edge"] is None:
                self.last_refusal = drag["msg"]
                self.connection_refused.emit(drag["msg"])
            return
        if target is not None:
            target.highlight = None
            target.update()
            if drag["edge"] is not None:
                self.last_refusal = ""
                self.connect_requested.emit(drag["edge"])
            elif drag["fixable"]:
                self.connect_with_flatten_requested.emit(*self._ends(origin, target))
            else:
                self.last_refusal = drag["msg"]
                self.connection_refused.emit(drag["msg"])
        elif QLineF(origin.scenePos(), pos).length() > 30:
            self.quick_add_requested.emit(pos, (origin.node_id, origin.name, origin.is_output))

    def mouseMoveEvent(self, event):  # noqa: N802 - Qt override
        super().mouseMoveEvent(event)
        if self._dirty_edges and self.mouseGrabberItem() is not None:
            # the dragged cards' wires, before this frame is painted: as many routed
            # round the cards as a frame has time for, the others plain until it rests
            self.flush_edges(budget=ROUTE_PER_MOVE)

    def mouseReleaseEvent(self, event):  # noqa: N802 - Qt override
        super().mouseReleaseEvent(event)
        if self._rough_edges and self.mouseGrabberItem() is None:
            self.flush_edges()  # the drag ended (with or without a move command): full routes

    @property
    def connecting(self) -> bool:
        return self._drag is not None

    # --------------------------------------------------------------- moves
    def selected_nodes(self) -> list:
        return [it for it in self.selectedItems() if isinstance(it, NodeItem)]

    def selected_edges(self) -> list:
        return [it for it in self.selectedItems() if isinstance(it, EdgeItem)]

    def finish_move(self, before: dict):
        """Report the nodes a drag moved (old and new positions) and put them back.

        The items return to the model's positions at once; the undo command then
        moves the model, whose events move the items again.
        """
        moved = {}
        for nid, old in before.items():
            item = self.nodes.get(nid)
            if item is None:
                continue
            new = item.pos()
            model_old = self.graph.layout.get(nid, (old.x(), old.y()))
            if abs(new.x() - model_old[0]) > 1e-6 or abs(new.y() - model_old[1]) > 1e-6:
                moved[nid] = (tuple(model_old), (new.x(), new.y()))
        if moved:
            self.nodes_moved.emit(moved)

    def node_items_in(self, rect: QRectF) -> list:
        return [it for it in self.items(rect) if isinstance(it, NodeItem)]

    def free_spot(self, pos: QPointF) -> QPointF:
        """``pos`` nudged down until the card placed there overlaps no other card."""
        p = QPointF(pos)
        for _ in range(200):
            r = QRectF(p, QSizeF(NODE_MIN_W, HEADER_H + ROW_H + FOOTER_H)).adjusted(-6, -6, 6, 6)
            if not self.node_items_in(r):
                return p
            p += QPointF(0, GRID * 2)
        return p

    # ------------------------------------------------------------ stepping
    def set_breakpoints(self, node_ids):
        """Show a breakpoint dot on exactly the cards of ``node_ids``."""
        self._breakpoints = set(node_ids)
        for nid, item in self.nodes.items():
            if nid in self._breakpoints or item.has_breakpoint_dot():
                item.breakpoint_dot.set_breakpoint(nid in self._breakpoints)

    def update_legend(self):
        """Repaint the views' foreground, where the stepping legend is pinned."""
        for v in self.views():
            v.viewport().update()

    def drawForeground(self, painter, rect):  # noqa: N802 - Qt override
        self.stepping.draw_legend(painter)

    # --------------------------------------------------------- appearance
    def set_theme(self, theme: Theme):
        self.theme = theme
        for item in list(self.nodes.values()) + list(self.edges.values()):
            item.theme = theme
            item.update()
        # the view shows canvas beyond the scene's area too
        self.invalidate(QRectF(-1e7, -1e7, 2e7, 2e7), QGraphicsScene.BackgroundLayer)
        self.update()

    def drawBackground(self, painter, rect):
        t = self.theme
        painter.fillRect(rect, t.color("canvas"))
        lod = painter.worldTransform().m11()
        step = GRID if lod > 0.6 else GRID * 5 if lod > 0.15 else 0
        if not step:
            return
        left = math.floor(rect.left() / step) * step
        top = math.floor(rect.top() / step) * step
        minor, major = [], []
        x = left
        while x < rect.right():
            (major if round(x / GRID) % 5 == 0 else minor).append(
                QLineF(x, rect.top(), x, rect.bottom()))
            x += step
        y = top
        while y < rect.bottom():
            (major if round(y / GRID) % 5 == 0 else minor).append(
                QLineF(rect.left(), y, rect.right(), y))
            y += step
        # on screen, crisp one-pixel lines: smoothing them slows every zoom step
        # (the cached background is redrawn at every step); pictures keep them smooth
        painter.setRenderHint(QPainter.Antialiasing, self.smooth_grid)
        if step == GRID:
            painter.setPen(QPen(t.color("grid_minor"), 0))
            painter.drawLines(minor)
        painter.setPen(QPen(t.color("grid_major"), 0))
        painter.drawLines(major)
        painter.setRenderHint(QPainter.Antialiasing, True)

    def content_rect(self) -> QRectF:
        """The cards' bounding rectangle (without the drag wire)."""
        cached = getattr(self, "_content", None)
        if cached is not None and cached[0] == self.geometry_version:
            return QRectF(cached[1])
        r = QRectF()
        for item in self.nodes.values():
            r = r.united(item.sceneBoundingRect())
        self._content = (self.geometry_version, QRectF(r))
        return r


def _span_of(item) -> float:
    """How far apart a wire's ends are (the order in which a drag routes its wires)."""
    p1, p2 = item.endpoints()
    return abs(p2.x() - p1.x()) + abs(p2.y() - p1.y())


def render_scene(scene: GraphScene, width: int, height: int, dpr: float = 1.0, margin=40):
    """The whole graph drawn into a :class:`QImage` of ``width`` × ``height`` logical pixels."""
    img = QImage(int(width * dpr), int(height * dpr), QImage.Format_ARGB32_Premultiplied)
    img.setDevicePixelRatio(dpr)
    img.fill(scene.theme.color("canvas"))
    painter = QPainter(img)
    paint_scene(scene, painter, width, height, margin)
    painter.end()
    return img


def paint_scene(scene: GraphScene, painter: QPainter, width: int, height: int, margin=40):
    """Draw the whole graph with ``painter`` onto ``width`` × ``height`` (a picture or an SVG)."""
    source = scene.content_rect().adjusted(-margin, -margin, margin, margin)
    for lab in scene.stepping.visible_items():
        source = source.united(lab.sceneBoundingRect())  # loose output labels stick out
    if source.isEmpty():
        source = QRectF(0, 0, width, height)
    # keep the aspect ratio and never blow small graphs up past 150 %
    s = min(width / source.width(), height / source.height(), 1.5)
    # the scene area that fills the whole picture, centred on the graph
    full = QRectF(source.center().x() - width / s / 2, source.center().y() - height / s / 2,
                  width / s, height / s)
    painter.setRenderHints(QPainter.Antialiasing | QPainter.TextAntialiasing)
    scene.finish_sharpening()  # a card still scaled from a zoom would come out soft
    detailed = scene.detailed
    scene.set_detail(True)  # the picture has its own scale; each item picks its detail
    scene.smooth_grid = True
    scene.render(painter, QRectF(0, 0, width, height), full, Qt.KeepAspectRatio)
    scene.smooth_grid = False
    scene.set_detail(detailed)
