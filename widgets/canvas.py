"""The node canvas: a scene mirroring the graph model, its items, and the view.

The :class:`core.graph.Graph` is the truth. :class:`GraphScene` subscribes to its
events and keeps one :class:`NodeItem` per node and one :class:`EdgeItem` per edge.
User gestures never edit the model from here: the scene emits *requests*
(``connect_requested``, ``nodes_moved``, ``op_dropped``…) that the main window
turns into undo commands, which call the model, whose events update the items.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QLineF, QPointF, QRectF, QSizeF, Qt, QTimer, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontDatabase,
    QFontMetricsF,
    QPainter,
    QPainterPath,
    QPainterPathStroker,
    QPen,
    QPixmapCache,
    QPolygonF,
    QStaticText,
    QTransform,
)
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsScene,
    QGraphicsView,
    QWidget,
)

from core.errors import GraphError, ShapeError
from core.graph import Edge, Graph, ShapeReport
from core.ops.base import fmt_shape
from widgets.icons import draw_category_glyph
from widgets.theme import LIGHT, Theme

OP_MIME = "application/x-backprop-studio-op"
GRID = 20.0
NODE_MIN_W = 172.0
NODE_MAX_W = 260.0
HEADER_H = 28.0
ROW_H = 20.0
LINE_H = 16.0
FOOTER_H = 22.0
PAD = 10.0
PORT_R = 5.0
MAX_PARAM_LINES = 3
# Parameters that rarely matter at a glance; the inspector shows them.
QUIET_PARAMS = {"init", "fill", "trainable", "reduction", "keepdims", "keep_batch", "bias",
                "mode", "dilation", "approximate", "role"}


def _fonts():
    base = QFont()
    title = QFont(base)
    title.setPointSizeF(9.5)
    title.setWeight(QFont.DemiBold)
    body = QFont(base)
    body.setPointSizeF(8.5)
    small = QFont(base)
    small.setPointSizeF(7.5)
    mono = QFontDatabase.systemFont(QFontDatabase.FixedFont)
    mono.setPointSizeF(8.0)
    return {"title": title, "body": body, "small": small, "mono": mono}


_ADVANCES: dict = {}
_METRICS: dict = {}


def _advance(fonts: dict, kind: str, text: str) -> float:
    """Width of ``text`` in font ``kind``; cached, as the same labels recur on many cards."""
    key = (kind, text)
    w = _ADVANCES.get(key)
    if w is None:
        fm = _METRICS.get(kind)
        if fm is None:
            fm = _METRICS[kind] = QFontMetricsF(fonts[kind])
        w = _ADVANCES[key] = fm.horizontalAdvance(text)
    return w


def fmt_value(v) -> str:
    """A parameter value as the card shows it: ``(5, 5)`` -> ``5×5``."""
    if isinstance(v, tuple):
        if v and all(x == v[0] for x in v) and len(v) == 2:
            return f"{v[0]}×{v[1]}"
        return "×".join("B" if x is None else str(x) for x in v) or "()"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def port_kind(op_cls, port: str, is_output: bool) -> str:
    """``"tensor"``, ``"target"`` (no gradient flows) or ``"index"`` (integer indices)."""
    if port == "indices":
        return "index"
    if not is_output and port in op_cls.no_grad_inputs:
        return "target"
    return "tensor"


# --------------------------------------------------------------------- ports
class PortItem(QGraphicsItem):
    """A connector on the edge of a card; dragging from it starts a connection."""

    def __init__(self, node_item: NodeItem, name: str, is_output: bool, kind: str):
        super().__init__(node_item)
        self.node_item = node_item
        self.name = name
        self.is_output = is_output
        self.kind = kind
        self.connected = False
        self.hover = False
        self.highlight = None  # None, "ok" or "bad" while a connection is dragged
        self.setAcceptHoverEvents(True)
        self.setCursor(Qt.CrossCursor)
        self.setZValue(2)
        # a hit area only: Qt never calls paint, which matters with thousands of ports
        self.setFlag(QGraphicsItem.ItemHasNoContents)

    @property
    def node_id(self) -> str:
        return self.node_item.node_id

    def boundingRect(self):
        r = PORT_R + 5
        return QRectF(-r, -r, 2 * r, 2 * r)

    def shape(self):
        p = QPainterPath()
        p.addEllipse(QPointF(0, 0), PORT_R + 4, PORT_R + 4)
        return p

    def paint(self, painter, option, widget=None):
        pass  # drawn by its card (one cached picture per card; see draw)

    def draw(self, painter, theme):
        """Draw the port at its position on the card (called from the card's paint)."""
        color = theme.category_color(self.node_item.category)
        if self.kind == "target":
            color = theme.color("warning")
        elif self.kind == "index":
            color = theme.color("muted")
        c = self.pos()
        r = PORT_R + (1.5 if self.hover or self.highlight else 0)
        if self.highlight:
            ring = theme.color("ok" if self.highlight == "ok" else "error")
            painter.setPen(Qt.NoPen)
            ring.setAlpha(70)
            painter.setBrush(ring)
            painter.drawEllipse(c, r + 4, r + 4)
        painter.setPen(QPen(color, 1.8))
        painter.setBrush(color if self.connected else theme.color("node_body"))
        if self.kind == "tensor":
            painter.drawEllipse(c, r, r)
        else:  # diamond: no gradient flows through this port
            x, y = c.x(), c.y()
            painter.drawPolygon(QPolygonF([QPointF(x, y - r - 1), QPointF(x + r + 1, y),
                                           QPointF(x, y + r + 1), QPointF(x - r - 1, y)]))

    def update(self, *args):
        # the card draws the port, so the card is what needs repainting
        self.node_item.update()

    def hoverEnterEvent(self, event):
        self.hover = True
        self.update()

    def hoverLeaveEvent(self, event):
        self.hover = False
        self.update()

    def mousePressEvent(self, event):
        if event.button() == Qt.LeftButton:
            if not self.is_output and self.connected:
                self.scene().begin_rewire(self, event.scenePos())  # pick the wire up
            else:
                self.scene().begin_connection(self, event.scenePos())
            event.accept()
        else:
            event.ignore()

    def mouseMoveEvent(self, event):
        self.scene().drag_connection(event.scenePos())

    def mouseReleaseEvent(self, event):
        self.scene().end_connection(event.scenePos())


# --------------------------------------------------------------------- nodes
_POS_CHANGE = QGraphicsItem.ItemPositionChange
_POS_CHANGED = QGraphicsItem.ItemPositionHasChanged
_SELECTED_CHANGED = QGraphicsItem.ItemSelectedHasChanged


class NodeItem(QGraphicsItem):
    """A node drawn as a card: header with icon and name, ports, key parameters, shape."""

    def __init__(self, scene: GraphScene, node, info=()):
        super().__init__()
        self.node_id = node.id
        self.theme = scene.theme
        self.fonts = scene.fonts
        self.category = type(node.op).category
        self.setFlags(QGraphicsItem.ItemIsMovable | QGraphicsItem.ItemIsSelectable
                      | QGraphicsItem.ItemSendsGeometryChanges)
        self.setAcceptHoverEvents(True)
        self.setZValue(1)
        self.width = 0.0  # set by set_node
        self.height = 0.0
        self.in_ports: dict[str, PortItem] = {}
        self.out_ports: dict[str, PortItem] = {}
        self.edges: list[EdgeItem] = []
        self.title = ""
        self.subtitle = ""
        self.param_lines: list = []
        self.footer = ""
        self.footer_right = ""
        self.error = None
        self.blocked = False
        self.is_loss = False
        self._syncing = False
        self._press_pos = None
        self._signature = None
        self.warm = False  # drawn in full since the zoom started changing (see set_scaling)
        self.scaled = scene.scaling  # drawn for a changing zoom, not cached per pixel
        # while the zoom changes a card is first a block drawn directly (no cache)
        self.setCacheMode(QGraphicsItem.NoCache if scene.scaling
                          else QGraphicsItem.DeviceCoordinateCache)
        op_cls = type(node.op)
        for p in op_cls.inputs:
            self.in_ports[p] = PortItem(self, p, False, port_kind(op_cls, p, False))
        for p in op_cls.outputs:
            self.out_ports[p] = PortItem(self, p, True, port_kind(op_cls, p, True))
        self.set_node(node, *info)

    # ------------------------------------------------------------ content
    def set_node(self, node, shapes=None, error=None, blocked=False, params=0):
        """Recompute texts and size from the model node and its inferred shapes.

        Does nothing when nothing visible changed: shape inference refreshes every
        card after each edit, and most cards stay the same.
        """
        op_cls = type(node.op)
        title = node.name
        subtitle = op_cls.label
        stem = node.name.rstrip("0123456789").replace("_", "").lower()
        if stem in (op_cls.id.replace("_", "").lower(), op_cls.label.replace(" ", "").lower()):
            subtitle = ""
        items = []
        if op_cls.source:
            if node.value is not None:
                v = node.value
                items.append("= " + (f"{float(v):g}" if v.ndim == 0 else
                                     f"array {fmt_shape(v.shape)}"))
            elif op_cls.id == "input" and node.params.get("role") != "value":
                items.append(f"fed: {node.params['role']}")
            else:
                items.append("no value yet")
        for p in op_cls.params:
            if p.name in QUIET_PARAMS or (op_cls.source and p.name == "shape"):
                continue
            v = node.params.get(p.name)
            if v is None:
                continue
            items.append(f"{p.name.replace('_', ' ')} {fmt_value(v)}")
        # two short items share a line so cards stay compact
        lines = []
        for it in items:
            if lines and len(lines[-1]) + len(it) < 24 and "  ·  " not in lines[-1]:
                lines[-1] += "  ·  " + it
            else:
                lines.append(it)
        if len(lines) > MAX_PARAM_LINES:
            lines = lines[:MAX_PARAM_LINES - 1] + [lines[MAX_PARAM_LINES - 1] + "  …"]
        if error:
            footer, footer_right = error, ""
        elif shapes is None:
            footer = "→ ?" if blocked or not op_cls.source else "→ scalar"
            footer_right = ""
        else:
            footer = "→ " + ", ".join(fmt_shape(s) for s in shapes)
            footer_right = f"{params:,} params" if params else ""
        signature = (title, subtitle, tuple(lines), footer, footer_right, error, blocked)
        if signature == self._signature:
            return
        self._signature = signature
        self.title, self.subtitle, self.param_lines = title, subtitle, lines
        self.footer, self.footer_right, self.error, self.blocked = (footer, footer_right,
                                                                    error, blocked)
        f = self.fonts
        want = max(
            _advance(f, "title", self.title) + 44
            + (_advance(f, "small", self.subtitle) + 12 if self.subtitle else 0),
            max((_advance(f, "body", s) for s in self.param_lines), default=0) + 2 * PAD,
            (0 if error else _advance(f, "mono", self.footer)
             + _advance(f, "small", self.footer_right) + 2 * PAD + 12),
            max((_advance(f, "body", p) for p in op_cls.inputs), default=0)
            + max((_advance(f, "body", p) for p in op_cls.outputs), default=0)
            + 2 * PAD + 30,
        )
        width = float(min(NODE_MAX_W, max(NODE_MIN_W, math.ceil(want / GRID) * GRID)))
        rows = max(len(op_cls.inputs), len(op_cls.outputs), 1)
        height = HEADER_H + rows * ROW_H + len(self.param_lines) * LINE_H + 6 + FOOTER_H
        resized = (width, height) != (self.width, self.height)
        if resized:
            self.prepareGeometryChange()
            self.width, self.height = width, height
            for i, p in enumerate(op_cls.inputs):
                self.in_ports[p].setPos(0, self.port_offset(i))
            for i, p in enumerate(op_cls.outputs):
                self.out_ports[p].setPos(self.width, self.port_offset(i))
        tip = f"<b>{node.name}</b> — {op_cls.label}"
        if op_cls.formula:
            tip += f"<br><span style='font-family:serif'>{op_cls.formula}</span>"
        if error:
            tip += f"<br><span style='color:{self.theme.error}'>⚠ {error}</span>"
        self.setToolTip(tip)
        self.update()
        if resized:
            self.geometry_changed()

    def geometry_changed(self):
        """The card moved or changed size: its wires and the scene's obstacle map follow."""
        sc = self.scene()
        if sc is None:
            return
        sc.card_geometry_changed(self)
        if self._syncing or sc.mouseGrabberItem() is None:
            # model-driven changes come in bursts (undo, auto layout): route once after
            for e in self.edges:
                sc.mark_edge_dirty(e)
        else:
            for e in self.edges:
                e.update_path()

    @staticmethod
    def port_offset(index: int) -> float:
        """Vertical offset of the ``index``-th port row from the card's top."""
        return HEADER_H + 4 + ROW_H * index + ROW_H / 2

    def port_y(self, name: str, is_output: bool) -> float:
        ports = self.out_ports if is_output else self.in_ports
        return ports[name].pos().y()

    # ------------------------------------------------------------ geometry
    def boundingRect(self):
        return QRectF(-PORT_R - 6, -12, self.width + 2 * PORT_R + 18, self.height + 18)

    def card_rect(self) -> QRectF:
        return QRectF(0, 0, self.width, self.height)

    def shape(self):
        p = QPainterPath()
        p.addRoundedRect(self.card_rect(), 7, 7)
        return p

    def scene_card_rect(self) -> QRectF:
        return self.card_rect().translated(self.pos())

    def itemChange(self, change, value):
        # called for every flag, cache and position change of every card (thousands when
        # the zoom crosses the overview threshold): module constants, and no call back
        # into the base class, whose itemChange only returns the value
        if change == _POS_CHANGE:
            if not self._syncing:
                sc = self.scene()
                if sc is not None and sc.snap_to_grid:
                    return QPointF(round(value.x() / GRID) * GRID,
                                   round(value.y() / GRID) * GRID)
        elif change == _POS_CHANGED:
            self.geometry_changed()
        elif change == _SELECTED_CHANGED:
            for e in self.edges:
                e.update()
        return value

    def sync_pos(self, pos):
        """Move to the model's position (no snapping: the model is the truth)."""
        self._syncing = True
        self.setPos(QPointF(*pos))
        self._syncing = False

    # ------------------------------------------------------------- drawing
    def paint(self, painter, option, widget=None):
        t = self.theme
        if self.scaled and not self.warm:
            # while the zoom changes: first a block drawn straight to the screen (two
            # rectangles; a cached picture would cost more to make than to scale when
            # many cards come into view at once), then, warm, painted into an
            # item-coordinate cache at scale 1 with the detail the current zoom can
            # show. Once the zoom rests the card waits its turn to be drawn sharp.
            # Kept short: a frame that brings 60 cards into view draws 60 blocks.
            sc = self.scene()
            if sc is not None and sc.scaling:
                sc.queue_refine(self)
            self._draw_block(painter)
            return
        lod = option.levelOfDetailFromTransform(painter.worldTransform())
        if self.scaled:
            sc = self.scene()
            if sc is not None:
                lod = min(lod, sc.scaling_lod)
        rect = self.card_rect()
        cat = t.category_color(self.category)
        selected = self.isSelected()
        painter.setRenderHint(QPainter.Antialiasing)
        if lod < 0.35:
            self._draw_block(painter)
            return
        # shadow
        shadow = t.color("node_shadow")
        shadow.setAlpha(60 if t.dark else 22)
        painter.setPen(Qt.NoPen)
        painter.setBrush(shadow)
        painter.drawRoundedRect(rect.translated(0, 2.5), 8, 8)
        # body
        painter.setBrush(t.color("node_body"))
        painter.drawRoundedRect(rect, 7, 7)
        # header tinted with the category colour
        header = QPainterPath()
        header.addRoundedRect(QRectF(0, 0, self.width, HEADER_H + 8), 7, 7)
        clip = QPainterPath()
        clip.addRect(QRectF(0, 0, self.width, HEADER_H))
        tint = QColor(cat)
        tint.setAlpha(235 if t.dark else 255)
        painter.setBrush(tint)
        painter.drawPath(header.intersected(clip))
        # icon and title
        draw_category_glyph(painter, self.category, QRectF(9, 7, 14, 14), QColor("white"), 1.5)
        painter.setPen(QColor("white"))
        painter.setFont(self.fonts["title"])
        fm = QFontMetricsF(self.fonts["title"])
        sub_w = 0.0
        if self.subtitle:
            painter.setFont(self.fonts["small"])
            fms = QFontMetricsF(self.fonts["small"])
            sub_w = min(fms.horizontalAdvance(self.subtitle), self.width * 0.45)
            sub = fms.elidedText(self.subtitle, Qt.ElideRight, sub_w + 1)
            faded = QColor(255, 255, 255, 200)
            painter.setPen(faded)
            painter.drawText(QRectF(self.width - sub_w - 10, 0, sub_w + 2, HEADER_H),
                             Qt.AlignVCenter | Qt.AlignRight, sub)
            painter.setPen(QColor("white"))
            painter.setFont(self.fonts["title"])
        title_w = self.width - 32 - sub_w - 16
        painter.drawText(QRectF(29, 0, title_w, HEADER_H), Qt.AlignVCenter | Qt.AlignLeft,
                         fm.elidedText(self.title, Qt.ElideRight, title_w))
        if self.is_loss:
            self._draw_loss_tag(painter)
        if lod < 0.45:
            # small on screen: the body text would be unreadable anyway
            painter.setBrush(Qt.NoBrush)
            painter.setPen(QPen(t.color("error" if self.error else
                                        "selection" if selected else "node_border"),
                                2 if selected or self.error else 1))
            painter.drawRoundedRect(rect, 7, 7)
            for port in self.in_ports.values():
                port.draw(painter, t)
            for port in self.out_ports.values():
                port.draw(painter, t)
            return
        # port labels
        painter.setFont(self.fonts["body"])
        painter.setPen(t.color("text"))
        for port in self.in_ports.values():
            y = port.pos().y()
            painter.drawText(QRectF(PAD + 2, y - ROW_H / 2, self.width / 2, ROW_H),
                             Qt.AlignVCenter | Qt.AlignLeft, port.name)
        for port in self.out_ports.values():
            y = port.pos().y()
            painter.drawText(QRectF(self.width / 2 - PAD - 2, y - ROW_H / 2, self.width / 2, ROW_H),
                             Qt.AlignVCenter | Qt.AlignRight, port.name)
        # parameters
        rows = max(len(self.in_ports), len(self.out_ports), 1)
        y = HEADER_H + 4 + rows * ROW_H
        painter.setPen(t.color("muted"))
        fmb = QFontMetricsF(self.fonts["body"])
        for line in self.param_lines:
            painter.drawText(QRectF(PAD, y, self.width - 2 * PAD, LINE_H),
                             Qt.AlignVCenter | Qt.AlignLeft,
                             fmb.elidedText(line, Qt.ElideRight, self.width - 2 * PAD))
            y += LINE_H
        # footer: output shape or the error
        fy = self.height - FOOTER_H
        sep = t.color("node_border")
        sep.setAlpha(120)
        painter.setPen(QPen(sep, 1))
        painter.drawLine(QPointF(1, fy), QPointF(self.width - 1, fy))
        if self.error:
            painter.setPen(t.color("error"))
            painter.setFont(self.fonts["small"])
            fms = QFontMetricsF(self.fonts["small"])
            painter.drawText(QRectF(PAD, fy, self.width - 2 * PAD, FOOTER_H),
                             Qt.AlignVCenter | Qt.AlignLeft,
                             fms.elidedText("⚠ " + self.error, Qt.ElideRight,
                                            self.width - 2 * PAD))
        else:
            painter.setFont(self.fonts["mono"])
            painter.setPen(t.color("muted" if self.blocked else "text"))
            painter.drawText(QRectF(PAD, fy, self.width - 2 * PAD, FOOTER_H),
                             Qt.AlignVCenter | Qt.AlignLeft, self.footer)
            if self.footer_right:
                painter.setFont(self.fonts["small"])
                painter.setPen(t.color("muted"))
                painter.drawText(QRectF(PAD, fy, self.width - 2 * PAD, FOOTER_H),
                                 Qt.AlignVCenter | Qt.AlignRight, self.footer_right)
        # outline
        painter.setBrush(Qt.NoBrush)
        if selected:
            painter.setPen(QPen(t.color("selection"), 2.2))
            painter.drawRoundedRect(rect.adjusted(-1.5, -1.5, 1.5, 1.5), 8.5, 8.5)
        elif self.error:
            painter.setPen(QPen(t.color("error"), 1.8))
            painter.drawRoundedRect(rect, 7, 7)
        else:
            painter.setPen(QPen(t.color("node_border"), 1))
            painter.drawRoundedRect(rect, 7, 7)
        for port in self.in_ports.values():
            port.draw(painter, t)
        for port in self.out_ports.values():
            port.draw(painter, t)
        if self.error:
            self._draw_badge(painter)

    def _draw_block(self, painter):
        """The card as a miniature: tinted body and coloured header, no text.

        Drawn far out and as the first picture of a card while zooming; its pens
        and brushes are made once per theme, category and state.
        """
        selected = self.isSelected()
        key = (self.theme.name, self.category, selected, bool(self.error))
        style = _BLOCK_STYLES.get(key)
        if style is None:
            t = self.theme
            cat = t.category_color(self.category)
            pen = QPen(t.color("selection" if selected else "error" if self.error
                               else "node_border"), 3 if selected or self.error else 1)
            pen.setCosmetic(True)
            style = _BLOCK_STYLES[key] = (pen, QBrush(_tint(cat)), QBrush(cat))
        pen, body, header = style
        painter.setRenderHint(QPainter.Antialiasing, False)
        painter.setPen(pen)
        painter.setBrush(body)
        painter.drawRect(QRectF(0, 0, self.width, self.height))
        painter.setPen(_NO_PEN)
        painter.setBrush(header)
        painter.drawRect(QRectF(0, 0, self.width, HEADER_H))
        painter.setRenderHint(QPainter.Antialiasing, True)

    def _draw_badge(self, painter):
        c = QPointF(self.width - 2, -2)
        painter.setPen(QPen(self.theme.color("node_body"), 2))
        painter.setBrush(self.theme.color("error"))
        painter.drawEllipse(c, 9, 9)
        painter.setPen(QColor("white"))
        f = QFont(self.fonts["title"])
        f.setBold(True)
        painter.setFont(f)
        painter.drawText(QRectF(c.x() - 9, c.y() - 9, 18, 18), Qt.AlignCenter, "!")

    def _draw_loss_tag(self, painter):
        painter.setFont(self.fonts["small"])
        fm = QFontMetricsF(self.fonts["small"])
        w = fm.horizontalAdvance("LOSS") + 10
        r = QRectF(self.width - w - 6, -9, w, 15)
        painter.setPen(Qt.NoPen)
        painter.setBrush(self.theme.color("error"))
        painter.drawRoundedRect(r, 7, 7)
        painter.setPen(QColor("white"))
        painter.drawText(r, Qt.AlignCenter, "LOSS")

    # -------------------------------------------------------------- mouse
    def mousePressEvent(self, event):
        self._press_pos = {it.node_id: it.pos() for it in self.scene().selected_nodes()}
        super().mousePressEvent(event)
        self._press_pos.update({it.node_id: it.pos() for it in self.scene().selected_nodes()
                                if it.node_id not in self._press_pos})

    def mouseReleaseEvent(self, event):
        super().mouseReleaseEvent(event)
        if self._press_pos is not None:
            self.scene().finish_move(self._press_pos)
        self._press_pos = None

    def mouseDoubleClickEvent(self, event):
        self.scene().node_activated.emit(self.node_id)


# --------------------------------------------------------------------- edges
_T = np.linspace(0.0, 1.0, 25)
_B = np.stack([(1 - _T) ** 3, 3 * (1 - _T) ** 2 * _T, 3 * (1 - _T) * _T ** 2, _T ** 3], axis=1)


def _cubic_points(p0, c1, c2, p3):
    """25 points along a cubic Bézier, as an (n, 2) array."""
    ctrl = np.array([[p0.x(), p0.y()], [c1.x(), c1.y()], [c2.x(), c2.y()], [p3.x(), p3.y()]])
    return _B @ ctrl


_B_FROM = _B[:, 0] + _B[:, 1]  # weight of the first two control points' common y
_B_TO = _B[:, 2] + _B[:, 3]    # weight of the last two control points' common y


def _first_free_lane(lanes, xs1, y_start, xs2, y_end, rects):
    """Index of the first lane whose two turns miss every rectangle, or ``None``.

    A detour leaves ``y_start`` and reaches the lane along a cubic whose control
    points have the x coordinates ``xs1`` and the y coordinates (y_start,
    y_start, lane, lane); it leaves the lane along ``xs2`` with (lane, lane,
    y_end, y_end). All lanes are tested at once (a frame while dragging a card
    re-routes its wires; one lane at a time took milliseconds per wire).
    """
    if not len(lanes):
        return None
    if not len(rects):
        return 0
    lanes = np.asarray(lanes, dtype=float)[:, None]
    l, t, r, b = (rects[:, i] for i in range(4))
    free = np.ones(len(lanes), dtype=bool)
    for xs, ys in ((xs1, _B_FROM * y_start + _B_TO * lanes),
                   (xs2, _B_FROM * lanes + _B_TO * y_end)):
        x = (_B @ np.asarray(xs, dtype=float))[:, None]         # (points, 1)
        in_x = (x > l) & (x < r)                                  # (points, rects)
        y = ys[:, :, None]                                        # (lanes, points, 1)
        free &= ~((y > t) & (y < b) & in_x).any(axis=(1, 2))
    hit = np.flatnonzero(free)
    return int(hit[0]) if len(hit) else None


def _hits(points, rects) -> bool:
    """Whether any point lies strictly inside any rectangle (rows of left, top, right, bottom)."""
    if not len(rects) or not len(points):
        return False
    x = points[:, 0:1]
    y = points[:, 1:2]
    inside = ((x > rects[:, 0]) & (x < rects[:, 2]) & (y > rects[:, 1]) & (y < rects[:, 3]))
    return bool(inside.any())


class EdgeItem(QGraphicsItem):
    """A wire from an output port to an input port, labelled with the tensor's shape."""

    def __init__(self, scene: GraphScene, edge: Edge, src: NodeItem, dst: NodeItem):
        super().__init__()
        self.edge = edge
        self.src = src
        self.dst = dst
        self.theme = scene.theme
        self.fonts = scene.fonts
        self.label = ""
        self.bad = False
        self.path = QPainterPath()
        self.label_pos = QPointF()
        self._rect = QRectF()
        self._label_box = QRectF()  # where the label's pill goes (see _update_rect)
        self._label_text = None  # the label laid out once (QStaticText), made when first drawn
        self._shape = None  # the stroked hit area, made when first asked for (see shape)
        self.setFlag(QGraphicsItem.ItemIsSelectable)
        self.setZValue(0)
        self.setAcceptHoverEvents(True)
        self.hover = False
        self._long = False
        src.edges.append(self)
        dst.edges.append(self)

    def detach(self):
        for item in (self.src, self.dst):
            if self in item.edges:
                item.edges.remove(self)

    def endpoints(self):
        p1 = self.src.out_ports[self.edge.src_port].scenePos()
        p2 = self.dst.in_ports[self.edge.dst_port].scenePos()
        return p1, p2

    def set_label(self, text: str, bad: bool = False):
        if text != self.label or bad != self.bad:
            self.prepareGeometryChange()
            self.label = text
            self.bad = bad
            self._label_text = None
            self._update_rect()
            self.update()

    def update_path(self):
        """Recompute the curve; detour around cards that the direct curve would cross."""
        p1, p2 = self.endpoints()
        # route first: it queries the scene's index, which must not see this item half changed
        path = route(self.scene(), p1, p2, exclude=(self.src, self.dst))
        self.prepareGeometryChange()
        self.path = path
        self._shape = None
        self.label_pos = path.pointAtPercent(0.5)
        self._long = QLineF(p1, p2).length() >= 70  # short wires get no label
        self._update_rect()

    def _update_rect(self):
        r = self.path.boundingRect().adjusted(-6, -6, 6, 6)
        if self.label:
            # measured here, not per paint: font metrics cost more than drawing the pill
            self._label_box = self._label_rect()
            r = r.united(self._label_box)
        self._rect = r

    def _label_rect(self) -> QRectF:
        fm = QFontMetricsF(self.fonts["small"])
        w = fm.horizontalAdvance(self.label) + 10
        h = fm.height() + 3
        return QRectF(self.label_pos.x() - w / 2, self.label_pos.y() - h / 2, w, h)

    def boundingRect(self):
        return self._rect

    def shape(self):
        # asked again at every hover move, every wheel step under the cursor and for every
        # wire a rubber band touches; the curve changes only in update_path
        if self._shape is None:
            stroker = QPainterPathStroker()
            stroker.setWidth(10)
            self._shape = stroker.createStroke(self.path)
        return self._shape

    def hoverEnterEvent(self, event):
        self.hover = True
        self.update()

    def hoverLeaveEvent(self, event):
        self.hover = False
        self.update()

    def paint(self, painter, option, widget=None):
        # kept lean: hundreds of wires are painted per frame when the whole graph shows
        hot = self.isSelected() or self.src.isSelected() or self.dst.isSelected()
        pen = _wire_pen(self.theme, hot, self.bad, self.hover)
        painter.setPen(pen)
        painter.setBrush(_NO_BRUSH)
        sc = self.scene()
        if sc is not None and sc.interacting:
            # while the view moves, plain lines: antialiasing a long curve costs ~0.3 ms,
            # and the settled frame redraws it smooth
            painter.setRenderHint(QPainter.Antialiasing, False)
            painter.drawPath(self.path)
            painter.setRenderHint(QPainter.Antialiasing, True)
        else:
            painter.drawPath(self.path)
        if not self.label or not self._long or (sc is not None and sc.scaling) or \
                option.levelOfDetailFromTransform(painter.worldTransform()) < 0.55:
            return  # no label while the zoom changes: it returns when the view rests
        t = self.theme
        r = self._label_box
        painter.setPen(_label_pen(t, pen.color() if hot else None))
        painter.setBrush(t.color("edge_label_bg"))
        painter.drawRoundedRect(r, r.height() / 2, r.height() / 2)
        painter.setFont(self.fonts["small"])
        painter.setPen(t.color("error") if self.bad else t.color("edge_label_text"))
        text = self._label_text
        if text is None:
            # laid out once: a wire's label is drawn again in every frame that shows it
            text = self._label_text = QStaticText(self.label)
            text.setTextFormat(Qt.PlainText)
            text.prepare(QTransform(), self.fonts["small"])
        size = text.size()
        c = r.center()
        painter.drawStaticText(QPointF(c.x() - size.width() / 2, c.y() - size.height() / 2),
                               text)


_NO_BRUSH = Qt.NoBrush
_NO_PEN = Qt.NoPen
_BLOCK_STYLES: dict = {}  # (theme, category, selected, error) -> pen and brushes of a block
_CENTER = Qt.AlignCenter
_PENS: dict = {}


def _wire_pen(theme: Theme, hot: bool, bad: bool, hover: bool) -> QPen:
    key = (theme.name, hot, bad, hover)
    pen = _PENS.get(key)
    if pen is None:
        color = (theme.color("selection") if hot else theme.color("error") if bad
                 else theme.color("edge"))
        pen = _PENS[key] = QPen(color, 2.6 if hot or hover else 1.8, Qt.SolidLine, Qt.RoundCap)
    return pen


def _label_pen(theme: Theme, hot_color: QColor | None) -> QPen:
    """The outline of a wire label: the border colour, or the wire's when it is selected."""
    key = (theme.name, "label", None if hot_color is None else hot_color.rgba())
    pen = _PENS.get(key)
    if pen is None:
        pen = _PENS[key] = QPen(theme.color("node_border") if hot_color is None
                                else hot_color, 1)
    return pen


def _default_curve(p1: QPointF, p2: QPointF):
    dx = abs(p2.x() - p1.x())
    k = max(36.0, dx * 0.5) if p2.x() >= p1.x() else max(80.0, dx * 0.35)
    return p1, QPointF(p1.x() + k, p1.y()), QPointF(p2.x() - k, p2.y()), p2


def route(scene, p1: QPointF, p2: QPointF, exclude=()) -> QPainterPath:
    """A smooth wire from ``p1`` to ``p2``; goes through a free lane if cards are in the way."""
    a, c1, c2, b = _default_curve(p1, p2)
    path = QPainterPath(a)
    path.cubicTo(c1, c2, b)
    if scene is not None and p2.x() < p1.x() - 20:
        return _route_back(scene, p1, p2, exclude) or path
    if scene is None or p2.x() - p1.x() < 60:
        return path
    top, bottom = min(p1.y(), p2.y()), max(p1.y(), p2.y())
    rects = scene.obstacles(p1.x() + 2, p2.x() - 2, top - 60, bottom + 60, exclude, margin=8)
    if not _hits(_cubic_points(a, c1, c2, b), rects):
        return path
    # Candidate lanes: just above or below each card in the way, nearest first.
    rects = scene.obstacles(p1.x() + 2, p2.x() - 2, top - 1200, bottom + 1200, exclude,
                            margin=10)
    lanes = np.concatenate([[p1.y(), p2.y()], rects[:, 1] - 4, rects[:, 3] + 4])
    cost = np.abs(lanes - p1.y()) + np.abs(lanes - p2.y())
    span = p2.x() - p1.x()
    ramp = min(70.0, span / 3)
    q1x, q2x = p1.x() + ramp * 1.6, p2.x() - ramp * 1.6
    if q2x < q1x:
        return path
    # nearest lanes first, skipping those whose straight middle part crosses a card
    cand = lanes[np.argsort(cost, kind="stable")][:40]
    mid = rects[(rects[:, 2] > q1x) & (rects[:, 0] < q2x)]
    if len(mid):
        cand = cand[~((mid[:, 1] < cand[:, None]) & (mid[:, 3] > cand[:, None])).any(axis=1)]
    i = _first_free_lane(cand, (p1.x(), p1.x() + ramp, q1x - ramp, q1x), p1.y(),
                         (q2x, q2x + ramp, p2.x() - ramp, p2.x()), p2.y(), rects)
    if i is not None:
        lane = float(cand[i])
        q1, q2 = QPointF(q1x, lane), QPointF(q2x, lane)
        path = QPainterPath(p1)
        path.cubicTo(QPointF(p1.x() + ramp, p1.y()), QPointF(q1x - ramp, lane), q1)
        path.lineTo(q2)
        path.cubicTo(QPointF(q2x + ramp, lane), QPointF(p2.x() - ramp, p2.y()), p2)
        return path
    return path


def _route_back(scene, p1: QPointF, p2: QPointF, exclude):
    """A wire to a port on the left (the next row of a folded network): out to the right,
    back along a free lane between the cards, and in from the left. ``None`` if no lane."""
    k = 36.0
    x_lo, x_hi = p2.x() - 2 * k, p1.x() + 2 * k
    top, bottom = min(p1.y(), p2.y()), max(p1.y(), p2.y())
    rects = scene.obstacles(x_lo, x_hi, top - 600, bottom + 600, exclude, margin=10)
    mid = (p1.y() + p2.y()) / 2
    lanes = np.concatenate([[mid], rects[:, 1] - 4, rects[:, 3] + 4]) if len(rects) else \
        np.array([mid])
    cand = lanes[np.argsort(np.abs(lanes - mid), kind="stable")][:40]
    if len(rects):
        across = (rects[:, 2] > x_lo) & (rects[:, 0] < x_hi)
        cand = cand[~((rects[:, 1] < cand[:, None]) & (rects[:, 3] > cand[:, None])
                      & across).any(axis=1)]
    i = _first_free_lane(cand, (p1.x(), p1.x() + 2 * k, p1.x() + 2 * k, p1.x()), p1.y(),
                         (p2.x(), p2.x() - 2 * k, p2.x() - 2 * k, p2.x()), p2.y(), rects)
    if i is not None:
        lane = float(cand[i])
        q1, q2 = QPointF(p1.x(), lane), QPointF(p2.x(), lane)
        turn1 = (p1, QPointF(p1.x() + 2 * k, p1.y()), QPointF(p1.x() + 2 * k, lane), q1)
        turn2 = (q2, QPointF(p2.x() - 2 * k, lane), QPointF(p2.x() - 2 * k, p2.y()), p2)
        path = QPainterPath(p1)
        path.cubicTo(*turn1[1:])
        path.lineTo(q2)
        path.cubicTo(*turn2[1:])
        return path
    return None


class _DragWire(QGraphicsItem):
    """The wire that follows the mouse while a connection is being made."""

    def __init__(self, theme: Theme, fonts):
        super().__init__()
        self.theme = theme
        self.fonts = fonts
        self.path = QPainterPath()
        self.state = None  # None (no target), "ok", "bad" or "fix"
        self.hint = ""
        self.hint_at = QPointF()
        self.bounds: QRectF | None = None  # the part of the scene on screen
        self.setZValue(10)

    def set(self, a: QPointF, b: QPointF, state, hint: str, hint_at: QPointF,
            bounds: QRectF | None = None):
        self.prepareGeometryChange()
        p1, c1, c2, p2 = _default_curve(a, b)
        self.path = QPainterPath(p1)
        self.path.cubicTo(c1, c2, p2)
        self.state = state
        self.hint = hint
        self.hint_at = hint_at
        self.bounds = bounds

    def hint_rect(self) -> QRectF:
        """Where the hint box goes: below right of the pointer, turned to stay on screen."""
        if not self.hint:
            return QRectF()
        fm = QFontMetricsF(self.fonts["body"])
        room = 420.0
        if self.bounds is not None:
            room = max(80.0, min(room, self.bounds.width() - 24))
        text = fm.boundingRect(QRectF(0, 0, room, 1e6), Qt.TextWordWrap, self.hint)
        size = QSizeF(math.ceil(text.width()) + 16, math.ceil(text.height()) + 10)
        r = QRectF(self.hint_at + QPointF(16, 14), size)
        b = self.bounds
        if b is not None:
            if r.right() > b.right() - 4:  # left of the pointer instead, or against the edge
                left = self.hint_at.x() - 16 - r.width()
                r.moveLeft(left if left >= b.left() + 4 else b.right() - 4 - r.width())
            if r.bottom() > b.bottom() - 4:
                r.moveBottom(self.hint_at.y() - 14)
            if r.left() < b.left() + 4:
                r.moveLeft(b.left() + 4)
            if r.top() < b.top() + 4:
                r.moveTop(b.top() + 4)
        return r

    def boundingRect(self):
        return self.path.boundingRect().adjusted(-4, -4, 4, 4).united(self.hint_rect())

    def paint(self, painter, option, widget=None):
        t = self.theme
        painter.setRenderHint(QPainter.Antialiasing)
        color = {"ok": t.color("ok"), "bad": t.color("error"), "fix": t.color("warning")}.get(
            self.state, t.color("accent"))
        pen = QPen(color, 2.2, Qt.DashLine if self.state in (None, "bad") else Qt.SolidLine)
        painter.setPen(pen)
        painter.setBrush(Qt.NoBrush)
        painter.drawPath(self.path)
        if self.hint:
            r = self.hint_rect()
            painter.setPen(QPen(color, 1.2))
            painter.setBrush(t.color("node_body"))
            painter.drawRoundedRect(r, 5, 5)
            painter.setFont(self.fonts["body"])
            painter.setPen(t.color("text"))
            painter.drawText(r.adjusted(8, 5, -8, -5), Qt.TextWordWrap | Qt.AlignLeft
                             | Qt.AlignVCenter, self.hint)


def _tint(color: QColor) -> QColor:
    """The category colour, faded, for the body of a far-away card."""
    c = QColor(color)
    c.setAlpha(70)
    return c


# ------------------------------------------------------------------ overview
DETAIL_LOD = 0.35  # below this zoom the cards are too small to read
READABLE_ZOOM = 0.6  # the least zoom a graph opens at: titles, shapes and parameters legible
BOUNDS_STEP = 2000.0  # the overview's (and so the scene's) area grows in steps this big
REFINE_PER_FRAME = 3  # cards drawn in full per tick while zooming (~0.5 ms each)
ZOOMING_CARDS = 40  # more cards in view than this: the overview draws them while zooming
DETAIL_PER_TICK = 200  # items switched per idle tick to or from the overview
DETAIL_PER_TICK_MOVING = 10  # ... while the view moves (each costs ~40 µs of the next frame)
SHARPEN_PER_FRAME = 6  # cards re-cached per pixel per frame once the zoom rests
PIXMAP_CACHE_KB = 64 * 1024  # Qt's default, 10 MB, held only ~20 cards on a 2× screen
SHARPEN_LATER_PER_TICK = 100  # ... out of view, per idle tick (~5 µs each, no painting)


class OverviewItem(QGraphicsItem):
    """The whole graph in one picture when zoomed far out: cards as blocks, wires as one path.

    Far out, hundreds of cards and wires each painted by Python cost more than a
    frame; this item draws them in a few calls while the real items stay in the
    scene (not painted but clickable, so selecting and dragging still work).
    """

    def __init__(self, scene: GraphScene):
        super().__init__()
        self._scene = scene
        self._key = None
        self._blocks = {}
        self._bodies = []
        self._errors = []
        self._wires = QPainterPath()
        self._bounds = QRectF(-BOUNDS_STEP, -BOUNDS_STEP, 2 * BOUNDS_STEP, 2 * BOUNDS_STEP)
        self.setZValue(-1)
        self.setAcceptedMouseButtons(Qt.NoButton)
        self.setVisible(False)

    def boundingRect(self):
        # the cards' area, grown and rounded out (see GraphScene.fit_bounds): the scene's
        # item index is laid over the union of all bounding rectangles, and a huge one
        # made its cells so coarse that every frame asked most items for theirs
        return self._bounds

    def set_bounds(self, rect: QRectF):
        if rect != self._bounds:
            self.prepareGeometryChange()
            self._bounds = QRectF(rect)

    def _rebuild(self):
        sc = self._scene
        t = sc.theme
        blocks, bodies, errors = {}, [], []
        for item in sc.nodes.values():
            r = item.scene_card_rect()
            bodies.append(r)
            if item.error:
                errors.append(r)
            color = t.category_color(item.category)
            entry = blocks.setdefault(color.rgba(), (color, [], []))
            entry[1].append(QRectF(r.x(), r.y(), r.width(), HEADER_H))
            entry[2].append(r)
        wires = QPainterPath()
        for e in sc.edges.values():
            wires.addPath(e.path)
        self._blocks, self._wires, self._bodies, self._errors = blocks, wires, bodies, errors

    def paint(self, painter, option, widget=None):
        sc = self._scene
        t = sc.theme
        key = (sc.geometry_version, sc.shape_version, t.name, len(sc.edges))
        if key != self._key:
            self._rebuild()
            self._key = key
        pen = QPen(t.color("edge"), 1.0)
        pen.setCosmetic(True)
        painter.setPen(pen)
        painter.setBrush(Qt.NoBrush)
        if sc.interacting:
            # hundreds of curves and a thousand rectangles: plain pixels while the view
            # moves (half the cost of the frame), smooth again when it rests
            painter.setRenderHint(QPainter.Antialiasing, False)
        painter.drawPath(self._wires)
        border = QPen(t.color("node_border"), 1.0)
        border.setCosmetic(True)
        painter.setPen(border)
        for color, _heads, bodies in self._blocks.values():
            painter.setBrush(_tint(color))
            painter.drawRects(bodies)
        painter.setPen(Qt.NoPen)
        for color, heads, _bodies in self._blocks.values():
            painter.setBrush(color)
            painter.drawRects(heads)
        if self._errors:
            bad = QPen(t.color("error"), 2.0)
            bad.setCosmetic(True)
            painter.setPen(bad)
            painter.setBrush(Qt.NoBrush)
            painter.drawRects(self._errors)
        selected = sc.selectedItems()
        if selected:
            pen = QPen(t.color("selection"), 3.0)
            pen.setCosmetic(True)
            painter.setPen(pen)
            painter.setBrush(Qt.NoBrush)
            for it in selected:
                if isinstance(it, NodeItem):
                    painter.drawRect(it.scene_card_rect())
                elif isinstance(it, EdgeItem):
                    painter.drawPath(it.path)
        painter.setRenderHint(QPainter.Antialiasing, True)


# --------------------------------------------------------------------- scene
class GraphScene(QGraphicsScene):
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

    def __init__(self, graph: Graph | None = None, theme: Theme = LIGHT, parent=None):
        super().__init__(parent)
        self.theme = theme
        self.fonts = _fonts()
        self.graph: Graph | None = None
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
        self._refine: dict = {}  # cards drawn as blocks while zooming, in order (see set_scaling)
        self._refine_timer = QTimer(self)
        self._refine_timer.setInterval(12)
        self._refine_timer.timeout.connect(self._refine_some)
        self._detail_pending: dict = {}  # items not yet switched (see set_detail)
        self._detail_timer = QTimer(self)
        self._detail_timer.setInterval(0)
        self._detail_timer.timeout.connect(self._detail_some)
        self._sharpen: dict = {}  # scaled cards in view, to be cached per pixel (see sharpen)
        self._sharpen_timer = QTimer(self)
        self._sharpen_timer.setSingleShot(True)
        self._sharpen_timer.setInterval(0)
        self._sharpen_timer.timeout.connect(self._sharpen_some)
        self._sharpen_later: dict = {}  # scaled cards out of view (see sharpen)
        self._later_timer = QTimer(self)
        self._later_timer.setInterval(0)
        self._later_timer.timeout.connect(self._sharpen_later_some)
        self._cards = None  # (items, array of left, top, right, bottom), rebuilt when stale
        self._bounds_timer = QTimer(self)
        self._bounds_timer.setSingleShot(True)
        self._bounds_timer.setInterval(0)
        self._bounds_timer.timeout.connect(self.fit_bounds)
        self.geometry_version = 0
        self.shape_version = 0
        self.detailed = True
        self.interacting = False  # the view is panning or zooming: draw fast, not fine
        self.scaling = False  # the zoom is changing: cards cached in item coordinates
        self.scaling_lod = 1.0  # the zoom the view shows meanwhile (detail cards can show)
        self.smooth_grid = False  # antialiased grid lines (for pictures, see render_scene)
        self.overview = OverviewItem(self)
        self.addItem(self.overview)
        self.selectionChanged.connect(self._on_selection_for_overview)
        self.setItemIndexMethod(QGraphicsScene.BspTreeIndex)
        if graph is not None:
            self.set_graph(graph)

    # --------------------------------------------------------- model sync
    def set_detail(self, detailed: bool, in_view=None):
        """Draw each card and wire itself (True) or all of them as one overview (False).

        With ``in_view`` (the items a view shows) only those change now and the
        rest a few hundred per tick: switching all 1100 items of a 500-node graph
        took 25 ms of the frame that crosses the overview threshold.
        """
        detailed = bool(detailed)
        if detailed == self.detailed:
            if in_view is None and self._detail_pending:
                self._detail_timer.stop()
                pending, self._detail_pending = self._detail_pending, {}
                for item in pending:
                    if item.scene() is self:
                        item.setFlag(QGraphicsItem.ItemHasNoContents, not detailed)
            return
        self.detailed = detailed
        # an item flagged as having no contents is never painted but still takes clicks
        items = list(self.nodes.values()) + list(self.edges.values())
        if in_view is None:
            now, self._detail_pending = items, {}
        else:
            now = [it for it in in_view if isinstance(it, (NodeItem, EdgeItem))]
            first = set(now)
            self._detail_pending = {it: None for it in items if it not in first}
        for item in now:
            item.setFlag(QGraphicsItem.ItemHasNoContents, not detailed)
        self.overview.setVisible(not detailed)
        if self._detail_pending:
            self._detail_timer.start()
        else:
            self._detail_timer.stop()

    def _take(self, queue: dict, n: int) -> list:
        """Remove the first ``n`` items of a work queue (a dict kept in order); return
        those still in this scene."""
        taken = []
        for _ in range(min(n, len(queue))):
            item = next(iter(queue))
            del queue[item]
            if item.scene() is self:
                taken.append(item)
        return taken

    def _detail_some(self):
        """Switch the next items still drawn the other way (see set_detail)."""
        pending = self._detail_pending
        # few while the view moves: each switched item costs the next frame ~40 µs, and
        # between two wheel steps the event loop runs several ticks anyway
        # and while the cards in view sharpen after a zoom (those are frames too)
        busy = self.interacting or self._sharpen
        for item in self._take(pending, DETAIL_PER_TICK_MOVING if busy else DETAIL_PER_TICK):
            item.setFlag(QGraphicsItem.ItemHasNoContents, not self.detailed)
        if not pending:
            self._detail_timer.stop()

    def switch_now(self, cards):
        """Switch these cards and their wires now if they still wait (they are in view)."""
        pending = self._detail_pending
        for card in cards:
            for item in (card, *card.edges):
                if item in pending:
                    del pending[item]
                    item.setFlag(QGraphicsItem.ItemHasNoContents, not self.detailed)
        if not pending:
            self._detail_timer.stop()

    def set_scaling(self, scaling: bool, in_view=()):
        """While the zoom changes, cards are cached at their own size and scaled (True).

        A device-resolution cache is valid for one zoom only: every wheel step
        re-painted every visible card (50–70 ms frames at 150 cards). Cached in
        item coordinates, a card is painted once when the zoom starts and then
        only scaled; when the zoom rests (False) the sharp per-pixel cache returns,
        a few per frame for those in ``in_view`` and a few hundred per idle tick
        for the others (see :meth:`sharpen`).
        """
        scaling = bool(scaling)
        if scaling == self.scaling:
            return
        self.scaling = scaling
        self._refine.clear()
        self._refine_timer.stop()
        if scaling:
            self._sharpen.clear()
            self._sharpen_timer.stop()
            self._sharpen_later.clear()
            self._later_timer.stop()
            for item in self.nodes.values():
                if item.warm or not item.scaled:
                    item.warm = False
                    item.scaled = True
                    item.setCacheMode(QGraphicsItem.NoCache)
        else:
            self.sharpen(in_view)

    def sharpen(self, in_view=()):
        """Cache the scaled cards per pixel again: those in ``in_view`` a few per frame.

        Re-caching every card in view at once made the frame in which the zoom
        rests take 35–55 ms (70 cards at 0.5 ms each); the scaled pictures stay
        on screen meanwhile, so the cards sharpen over a few frames instead.
        The cards out of view follow in idle ticks: doing all 450 of a 500-card
        graph at once added 4 ms to that frame. One panned into view before its
        turn joins the cards in view (see :meth:`sharpen_in_view`).
        """
        for item in in_view if self.detailed else ():  # the overview draws no card
            if item.scaled:
                self._sharpen[item] = None
        for item in self.nodes.values():
            if item.scaled and item not in self._sharpen:
                self._sharpen_later[item] = None
        if self._sharpen:
            self._sharpen_timer.start()
        elif self._sharpen_later:
            self._later_timer.start()

    def sharpen_in_view(self, cards):
        """Cards that came into view while still waiting to sharpen go next, a few per frame."""
        later = self._sharpen_later
        for card in cards:
            if card in later:
                del later[card]
                self._sharpen[card] = None
        if self._sharpen and not self._sharpen_timer.isActive():
            self._sharpen_timer.start()
        if not later:
            self._later_timer.stop()

    def _sharpen_later_some(self):
        """Cache the next cards out of view per pixel (nothing on screen changes)."""
        later = self._sharpen_later
        for item in self._take(later, SHARPEN_LATER_PER_TICK):
            if item.scaled:
                self._sharpen_one(item, repaint=False)
        if not later:
            self._later_timer.stop()

    def _sharpen_one(self, item, repaint=True):
        item.scaled = False
        item.warm = False
        item.setCacheMode(QGraphicsItem.DeviceCoordinateCache)
        if repaint:
            item.update()  # Qt repaints on its own only when leaving an item-coordinate cache

    def _sharpen_some(self):
        for item in self._take(self._sharpen, SHARPEN_PER_FRAME):
            if item.scaled:
                self._sharpen_one(item)
        if not self._sharpen and self._sharpen_later:
            self._later_timer.start()  # the cards out of view once those in view are done

    def frame_painted(self):
        """A view finished a frame: sharpen the next few cards in the next one."""
        if self._sharpen and not self.scaling and not self._sharpen_timer.isActive():
            self._sharpen_timer.start()

    def finish_sharpening(self):
        """Cache every card per pixel now (before a picture of the scene is taken)."""
        self.set_scaling(False)
        for item in [*self._sharpen, *self._sharpen_later]:
            if item.scaled:
                self._sharpen_one(item)
        self._sharpen.clear()
        self._sharpen_timer.stop()
        self._sharpen_later.clear()
        self._later_timer.stop()

    def queue_refine(self, item):
        """``item`` was drawn as a plain block while zooming: draw it fully soon.

        A zoom that brings many cards into view (from the overview, or out)
        would otherwise draw them all in one frame (45–100 ms); they appear as
        blocks at once and fill in a few per frame.
        """
        self._refine[item] = None
        if not self._refine_timer.isActive():
            self._refine_timer.start()

    def _refine_some(self):
        for item in self._take(self._refine, REFINE_PER_FRAME):
            if item.scaled:
                item.warm = True
                item.setCacheMode(QGraphicsItem.ItemCoordinateCache)  # repaints it
        if not self._refine:
            self._refine_timer.stop()

    def _on_selection_for_overview(self):
        if not self.detailed:
            self.overview.update()

    def set_graph(self, graph: Graph, route: bool = True):
        """Show ``graph`` (unsubscribing from the previous one) and rebuild every item.

        ``route=False`` leaves the wires unrouted until :meth:`flush_edges`, for a
        caller that moves the cards first (routing 600 wires twice cost 0.2 s).
        """
        self.detach()
        self.clearSelection()
        for item in list(self.nodes.values()) + list(self.edges.values()):
            self.removeItem(item)
        self.nodes.clear()
        self.edges.clear()
        self.graph = graph
        self.report = graph.infer_shapes()  # so each card is built once, with its shape
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
            self._on_node_added(node, schedule=False)
        self.card_geometry_changed()  # the obstacle map was the previous graph's
        for edge in graph.edges:
            self._on_edge_added(edge, schedule=False)
        self._on_meta_changed()
        self.refresh_shapes(self.report)  # nothing changed since it was computed above
        if route:
            self.flush_edges()
        self.fit_bounds()
        # cells fine enough that a frame asks only the items near the view for their
        # bounds (Qt kept 5 levels, 32 cells, for a 500-node graph)
        self.setBspTreeDepth(max(8, min(14, round(math.log2(len(self.items()) + 2)))))

    def detach(self):
        """Stop listening to the current graph."""
        for ev, cb in getattr(self, "_subs", ()):
            ev.unsubscribe(cb)
        self._subs = []

    def _on_node_added(self, node, schedule=True):
        item = NodeItem(self, node, self._info(node.id))
        if not self.detailed:
            item.setFlag(QGraphicsItem.ItemHasNoContents)
        self.nodes[node.id] = item
        pos = self.graph.layout.get(node.id)
        item.sync_pos(pos if pos is not None else (0.0, 0.0))
        self.addItem(item)
        if schedule:
            self.schedule_shapes()

    def _on_node_removed(self, node):
        item = self.nodes.pop(node.id, None)
        if item is not None:
            for e in list(item.edges):
                self._remove_edge_item(e)
            self.removeItem(item)
            self.card_geometry_changed()
        self.schedule_shapes()

    def _on_node_changed(self, node):
        item = self.nodes.get(node.id)
        if item is not None:
            item.set_node(node, *self._info(node.id))
        self.schedule_shapes()

    def _on_edge_added(self, edge, schedule=True):
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
        if schedule:
            self.schedule_shapes()

    def _on_edge_removed(self, edge):
        item = self.edges.get(edge)
        if item is not None:
            self._remove_edge_item(item)
        self.schedule_shapes()

    def _remove_edge_item(self, item):
        self.edges.pop(item.edge, None)
        self._dirty_edges.discard(item)
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

    # ---------------------------------------------------------- geometry
    def card_geometry_changed(self, item=None):
        """A card moved, appeared or changed size: the obstacle map is stale.

        With ``item`` (one card moved or resized) only its row is updated: a
        drag moves one card per frame, and rebuilding the map for 500 cards
        cost several milliseconds each time.
        """
        self.geometry_version += 1
        self._bounds_timer.start()
        if item is not None and self._cards is not None:
            row = self._cards[2].get(item)
            if row is not None:
                self._cards[1][row] = (item.x(), item.y(), item.x() + item.width,
                                       item.y() + item.height)
                return
        self._cards = None

    def obstacles(self, x0, x1, y0, y1, exclude=(), margin=8.0):
        """Card rectangles (grown by ``margin``) meeting the box, as rows of l, t, r, b."""
        if self._cards is None:
            items = list(self.nodes.values())
            arr = np.array([(it.x(), it.y(), it.x() + it.width, it.y() + it.height)
                            for it in items], dtype=float).reshape(-1, 4)
            self._cards = (items, arr, {it: i for i, it in enumerate(items)})
        items, arr, rows = self._cards
        keep = (arr[:, 2] + margin > x0) & (arr[:, 0] - margin < x1) & \
               (arr[:, 3] + margin > y0) & (arr[:, 1] - margin < y1)
        for it in exclude:
            row = rows.get(it)
            if row is not None:
                keep[row] = False
        out = arr[keep].copy()
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
        self.obstacles(0, 0, 0, 0)  # builds the map when stale
        items, arr, _rows = self._cards
        keep = np.flatnonzero((arr[:, 2] > rect.left()) & (arr[:, 0] < rect.right())
                              & (arr[:, 3] > rect.top()) & (arr[:, 1] < rect.bottom()))
        keep = keep[np.lexsort((arr[keep, 1], arr[keep, 0]))]
        return [items[i] for i in keep]

    def overlapping_cards(self) -> int:
        """How many pairs of cards overlap (a file laid out for other card sizes has some)."""
        arr = self.obstacles(-1e9, 1e9, -1e9, 1e9, margin=0.0)
        if len(arr) < 2:
            return 0
        l, t, r, b = (arr[:, i:i + 1] for i in range(4))
        hit = (l < r.T) & (l.T < r) & (t < b.T) & (t.T < b)
        return int((hit.sum() - len(arr)) // 2)

    def mark_edge_dirty(self, item):
        """Re-route ``item`` soon (once, however many of its ends moved)."""
        self._dirty_edges.add(item)
        self._edge_timer.start()

    def flush_edges(self):
        """Re-route every wire whose ends moved since the last flush."""
        self._edge_timer.stop()
        dirty, self._dirty_edges = self._dirty_edges, set()
        for item in dirty:
            if item.scene() is self:
                item.update_path()
        if dirty:
            self.geometry_version += 1  # the overview redraws the wires

    # -------------------------------------------------------------- shapes
    def schedule_shapes(self):
        """Re-infer shapes once control returns to the event loop (edits come in bursts)."""
        self._shape_timer.start()

    def _info(self, node_id):
        r = self.report
        return (r.shapes.get(node_id), r.errors.get(node_id), node_id in r.blocked,
                r.params_of(node_id))

    def refresh_shapes(self, report: ShapeReport | None = None):
        """Run shape inference now (or take ``report``) and update every card and wire label."""
        self._shape_timer.stop()
        if self.graph is None:
            return
        self.report = report if report is not None else self.graph.infer_shapes()
        for nid, item in self.nodes.items():
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

    def output_shape(self, node_id: str, port: str):
        shapes = self.report.shapes.get(node_id)
        if shapes is None:
            return None
        return shapes[self.graph.nodes[node_id].output_ports.index(port)]

    # -------------------------------------------------------- connections
    def check_connection(self, src_id, src_port, dst_id, dst_port):
        """``(edge or None, message, fixable)`` for a candidate connection.

        Refuses cycles, occupied inputs and shapes the destination cannot take;
        ``fixable`` is True when flattening the tensor first would make it fit.
        """
        g = self.graph
        if self._shape_timer.isActive():
            self.refresh_shapes()  # an edit is pending: judge against the current graph
        try:
            edge = g.check_connect(src_id, dst_id, dst_port=dst_port, src_port=src_port)
        except GraphError as exc:
            return None, str(exc), False
        src_shape = self.output_shape(src_id, src_port)
        dst = g.nodes[dst_id]
        if src_shape is None:
            return edge, f"connect {g.nodes[src_id].name}.{src_port} → {dst.name}.{dst_port}", \
                False
        in_shapes = []
        edges = g.in_edges(dst)
        for p in dst.input_ports:
            if p == dst_port:
                in_shapes.append(src_shape)
            elif p in edges:
                in_shapes.append(self.output_shape(edges[p].src, edges[p].src_port))
            else:
                in_shapes.append(None)
        ok_text = (f"connect {g.nodes[src_id].name} → {dst.name}.{dst_port}  "
                   f"{fmt_shape(src_shape)}")
        if any(s is None for s in in_shapes):
            return edge, ok_text, False
        try:
            dst.op.infer_shapes(*in_shapes)
        except ShapeError as exc:
            msg = f"shape mismatch: {exc}"
            fixable = False
            if len(src_shape) > 2:
                flat = self.flattened(src_shape)
                try:
                    dst.op.infer_shapes(*[flat if p == dst_port else s
                                          for p, s in zip(dst.input_ports, in_shapes)])
                    fixable = True
                except ShapeError:
                    pass
            if fixable:
                return None, msg + " — release to insert a Flatten in between", True
            return None, msg, False
        return edge, ok_text, False

    @staticmethod
    def flattened(shape):
        """What Flatten makes of ``shape``: the batch kept, the rest multiplied."""
        rest = 1
        for d in shape[1:]:
            rest *= 1 if d is None else d
        return (shape[0], rest)

    def quick_fix(self, node_id):
        """``(input port, text)`` if flattening one input would cure the node's error."""
        if self._shape_timer.isActive():
            self.refresh_shapes()
        if node_id not in self.report.errors or "flatten" not in _registry():
            return None
        g = self.graph
        node = g.nodes[node_id]
        edges = g.in_edges(node)
        shapes = []
        for p in node.input_ports:
            if p not in edges:
                return None
            s = self.output_shape(edges[p].src, edges[p].src_port)
            if s is None:
                return None
            shapes.append(s)
        for i, p in enumerate(node.input_ports):
            if len(shapes[i]) > 2:
                trial = list(shapes)
                trial[i] = self.flattened(shapes[i])
                try:
                    node.op.infer_shapes(*trial)
                except ShapeError:
                    continue
                return p, f"Insert Flatten before '{node.name}.{p}'"
        return None

    def begin_connection(self, port: PortItem, pos: QPointF, lifted: Edge | None = None):
        self._drag = {"port": port, "target": None, "lifted": lifted}
        self._wire = _DragWire(self.theme, self.fonts)
        self.addItem(self._wire)
        self.drag_connection(pos)

    def begin_rewire(self, port: PortItem, pos: QPointF):
        """Pick up the wire plugged into input ``port``: drop it on another input or let go."""
        edge = self.graph.in_edges(port.node_id)[port.name]
        self.edges[edge].hide()
        origin = self.nodes[edge.src].out_ports[edge.src_port]
        self.begin_connection(origin, pos, lifted=edge)

    def _port_near(self, pos: QPointF, want_output: bool):
        best, best_d = None, 22.0
        for it in self.items(QRectF(pos.x() - 22, pos.y() - 22, 44, 44)):
            if isinstance(it, PortItem) and it.is_output == want_output:
                d = QLineF(it.scenePos(), pos).length()
                if d < best_d:
                    best, best_d = it, d
        if best is None:
            # dropping on a card's body means its first free input (or its first output)
            for it in self.items(pos):
                if isinstance(it, NodeItem):
                    ports = it.out_ports if want_output else it.in_ports
                    free = [p for p in ports.values() if want_output or not p.connected]
                    if free:
                        return free[0]
        return best

    def _ends(self, origin: PortItem, target: PortItem):
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
            edge, msg, fixable = self.check_connection(*self._ends(origin, target))
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
        # on screen, crisp one-pixel lines: smoothing them cost 2–3 ms of each zoom step
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


def _registry():
    from core.ops import REGISTRY  # noqa: PLC0415

    return REGISTRY


# ---------------------------------------------------------------------- view
class Minimap(QWidget):
    """An overview of the whole graph with the visible area; click or drag to pan."""

    def __init__(self, view: GraphView, parent=None):
        # a panel of its own: overlaid on the canvas it would stop Qt from scrolling
        # the canvas by copying pixels, and every pan would repaint everything
        super().__init__(parent)
        self.view = view
        self.setMinimumSize(160, 110)
        self.setCursor(Qt.PointingHandCursor)
        self._dragging = False
        self._cache = None

    def _mapping(self):
        scene = self.view.scene()
        # the cards only, so the overview stays put while the view pans over it
        world = scene.content_rect().adjusted(-40, -40, 40, 40)
        if world.isEmpty():
            return None
        inner = QRectF(self.rect()).adjusted(6, 6, -6, -6)
        s = min(inner.width() / world.width(), inner.height() / world.height())
        ox = inner.x() + (inner.width() - world.width() * s) / 2
        oy = inner.y() + (inner.height() - world.height() * s) / 2
        return world, s, ox, oy

    def paintEvent(self, event):
        scene = self.view.scene()
        t = scene.theme
        m = self._mapping()
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        key = (scene.geometry_version, t.name, self.size().toTuple(), self.devicePixelRatioF(),
               None if m is None else (m[0].getRect(), m[1]))
        if self._cache is None or self._cache[0] != key:
            # the overview of the cards changes only when cards move: draw it once
            self._cache = (key, self._render_cards(scene, t, m))
        p.drawPixmap(0, 0, self._cache[1])
        if m is None:
            return
        world, s, ox, oy = m
        r = self.view.visible_rect()
        view_r = QRectF(ox + (r.x() - world.x()) * s, oy + (r.y() - world.y()) * s,
                        r.width() * s, r.height() * s)
        sel = t.color("selection")
        p.setPen(QPen(sel, 1.5))
        fill = QColor(sel)
        fill.setAlpha(40)
        p.setBrush(fill)
        p.setClipRect(QRectF(self.rect()).adjusted(2, 2, -2, -2))
        p.drawRect(view_r)

    def _render_cards(self, scene, t, m):
        from PySide6.QtGui import QPixmap  # noqa: PLC0415

        dpr = self.devicePixelRatioF()
        pm = QPixmap(int(self.width() * dpr), int(self.height() * dpr))
        pm.setDevicePixelRatio(dpr)
        pm.fill(Qt.transparent)
        p = QPainter(pm)
        p.setRenderHint(QPainter.Antialiasing)
        bg = t.color("panel")
        bg.setAlpha(235)
        p.setPen(QPen(t.color("node_border"), 1))
        p.setBrush(bg)
        p.drawRoundedRect(QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5), 6, 6)
        if m is not None:
            world, s, ox, oy = m
            p.setPen(Qt.NoPen)
            for item in scene.nodes.values():
                p.setBrush(t.color("error") if item.error else t.category_color(item.category))
                r = item.scene_card_rect()
                p.drawRect(QRectF(ox + (r.x() - world.x()) * s, oy + (r.y() - world.y()) * s,
                                  max(r.width() * s, 1.5), max(r.height() * s, 1.5)))
        p.end()
        return pm

    def _pan_to(self, pos):
        m = self._mapping()
        if m is None:
            return
        world, s, ox, oy = m
        self.view.centerOn(QPointF(world.x() + (pos.x() - ox) / s,
                                   world.y() + (pos.y() - oy) / s))

    def mousePressEvent(self, event):
        self._dragging = True
        self._pan_to(event.position())

    def mouseMoveEvent(self, event):
        if self._dragging:
            self._pan_to(event.position())

    def mouseReleaseEvent(self, event):
        self._dragging = False


class GraphView(QGraphicsView):
    """Zoom with the wheel around the cursor, pan with the middle button (or Space+drag).

    Signals
    -------
    op_dropped(str, QPointF)
        An op from the palette was dropped at a scene point.
    file_dropped(str)
    quick_add_at(QPointF)
        Tab or a double-click on empty canvas.
    zoom_changed(float)
    """

    op_dropped = Signal(str, QPointF)
    file_dropped = Signal(str)
    quick_add_at = Signal(QPointF)
    zoom_changed = Signal(float)
    context_menu_requested = Signal(QPointF, object)

    MIN_ZOOM = 0.02
    MAX_ZOOM = 4.0

    def __init__(self, scene: GraphScene, parent=None):
        super().__init__(scene, parent)
        # smooth: scaled cards (while zooming, and until each is sharp again) look soft
        # rather than jagged; per-pixel caches are drawn unscaled, so it costs them nothing.
        # Set once: changing a render hint repaints the whole view.
        self.setRenderHints(QPainter.Antialiasing | QPainter.TextAntialiasing
                            | QPainter.SmoothPixmapTransform)
        self.setDragMode(QGraphicsView.RubberBandDrag)
        self.setRubberBandSelectionMode(Qt.IntersectsItemShape)
        self.setTransformationAnchor(QGraphicsView.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.SmartViewportUpdate)
        self.setOptimizationFlag(QGraphicsView.DontSavePainterState, True)
        self.setCacheMode(QGraphicsView.CacheBackground)
        self.setAcceptDrops(True)
        self.setFocusPolicy(Qt.StrongFocus)
        self.setFrameShape(QGraphicsView.NoFrame)
        self.setSceneRect(QRectF(-50000, -50000, 100000, 100000))
        # every card's picture lives in Qt's pixmap cache: at 2× a card takes ~0.5 MB, and
        # with the default limit panning back over cards just seen painted them again
        if QPixmapCache.cacheLimit() < PIXMAP_CACHE_KB:
            QPixmapCache.setCacheLimit(PIXMAP_CACHE_KB)
        self._pan = None
        self._space = False
        self._fit_until_moved = False  # see fit_opened
        self.minimap = Minimap(self)
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(160)
        self._settle.timeout.connect(self._settled)
        self._minimap_timer = QTimer(self)
        self._minimap_timer.setSingleShot(True)
        self._minimap_timer.setInterval(30)
        self._minimap_timer.timeout.connect(self._update_minimap)
        scene.changed.connect(lambda _r: self._minimap_timer.start())
        for bar in (self.horizontalScrollBar(), self.verticalScrollBar()):
            bar.sliderPressed.connect(self.keep_view)
        self.horizontalScrollBar().valueChanged.connect(lambda _v: self._minimap_timer.start())
        self.verticalScrollBar().valueChanged.connect(lambda _v: self._minimap_timer.start())

    # ---------------------------------------------------------------- zoom
    @property
    def zoom(self) -> float:
        return self.transform().m11()

    def set_zoom(self, z: float, anchor: QPointF | None = None):
        """Zoom to ``z`` keeping ``anchor`` (viewport point) fixed (default: the centre)."""
        z = max(self.MIN_ZOOM, min(self.MAX_ZOOM, z))
        self._moving()
        if abs(z - self.zoom) > 1e-9 * z and self.isVisible():
            self.scene().scaling_lod = z
            self.scene().set_scaling(True)  # sharp again when the view rests (_settled)
            self._hold_scroll_bars(True)
        if anchor is None:
            anchor = QPointF(self.viewport().rect().center())
        before = self.mapToScene(anchor.toPoint())
        old = self.transformationAnchor()
        self.setTransformationAnchor(QGraphicsView.NoAnchor)
        self.resetTransform()
        self.scale(z, z)
        after = self.mapToScene(anchor.toPoint())
        delta = after - before
        self.translate(delta.x(), delta.y())
        self.setTransformationAnchor(old)
        self._update_detail()
        self.zoom_changed.emit(z)
        self._minimap_timer.start()

    def _update_detail(self, zooming: bool = True):
        """Cards and wires drawn one by one, or all together as the overview picture.

        Far out (below ``DETAIL_LOD``) always the overview. While the zoom changes,
        also when more than ``ZOOMING_CARDS`` cards are in view: the cards are
        plain blocks then anyway (see :meth:`GraphScene.set_scaling`), and a
        hundred cards and wires drawn one by one took 20–30 ms a frame. A little
        hysteresis keeps it from flipping at each step near the limit.
        """
        sc = self.scene()
        z = self.zoom
        want = z >= DETAIL_LOD
        if want and zooming and sc.scaling:
            limit = ZOOMING_CARDS if sc.detailed else ZOOMING_CARDS * 3 // 4
            want = sc.cards_in(self.visible_rect()) <= limit
        if want != sc.detailed:
            # by bounding rectangle: the view's own items() tests each wire's stroked shape
            sc.set_detail(want, sc.items(self.visible_rect(), Qt.IntersectsItemBoundingRect))
        elif sc._detail_pending:
            sc.switch_now(sc.cards_meeting(self.visible_rect()))  # cards that came into view

    def zoom_by(self, factor: float, anchor: QPointF | None = None):
        self._fit_until_moved = False
        self.set_zoom(self.zoom * factor, anchor)

    def fit_opened(self):
        """Show a graph just opened (readable fit), and fit again each time the canvas
        changes size until the user moves the view: a window still being laid out (docks
        restored, a dialog closing) would otherwise leave the cards out of sight."""
        self._fit_until_moved = True
        self.fit_to_view(readable=True)

    def resizeEvent(self, event):  # noqa: N802 - Qt override
        super().resizeEvent(event)
        if self._fit_until_moved:
            self.fit_to_view(readable=True)

    def wheelEvent(self, event):
        delta = event.angleDelta().y() or event.angleDelta().x()
        if not delta:
            return
        self.zoom_by(1.0015 ** delta, event.position())
        event.accept()

    def keep_view(self):
        """The user placed the view: a resize no longer fits the graph again."""
        self._fit_until_moved = False

    def fit_to_view(self, rect: QRectF | None = None, readable: bool = False):
        """Show all the cards (or ``rect``), never magnifying past 150 %.

        With ``readable`` (a graph just opened) the zoom stays at least
        :data:`READABLE_ZOOM`: a long network such as LeNet-5 then opens with its
        first cards legible, from the left, instead of as tiny blocks; Fit to
        View (F) still shows the whole graph, and the overview map shows where
        the view is.
        """
        scene = self.scene()
        r = rect if rect is not None else scene.content_rect()
        if r.isEmpty():
            self.set_zoom(1.0)
            self.centerOn(0, 0)
            return
        r = r.adjusted(-40, -40, 40, 40)
        vp = self.viewport().rect()
        z = min(vp.width() / r.width(), vp.height() / r.height(), 1.5)
        if readable and z < READABLE_ZOOM:
            self.set_zoom(READABLE_ZOOM)
            shown = self.visible_rect()
            # the start of the graph at the left edge, its middle row at mid-height
            self.centerOn(r.left() + shown.width() / 2, r.center().y())
        else:
            self.set_zoom(z)
            self.centerOn(r.center())
        self._minimap_timer.start()

    def visible_rect(self) -> QRectF:
        return self.mapToScene(self.viewport().rect()).boundingRect()

    # ------------------------------------------------------------- minimap
    def _update_minimap(self):
        if self.minimap.isVisible():
            self.minimap.update()

    # ---------------------------------------------------------- interaction
    def _moving(self):
        """The view is moving: draw the fast way until it rests for a moment."""
        self.scene().interacting = True
        self._settle.start()

    def _hold_scroll_bars(self, hold: bool):
        """Keep the scroll bars' picture while the zoom changes (``True``); redraw them.

        Every wheel step changes both ranges, and repainting the two bars cost
        about half a millisecond of each zoom frame; they still work meanwhile
        and show the new position once the view rests.
        """
        for bar in (self.horizontalScrollBar(), self.verticalScrollBar()):
            if bar.updatesEnabled() == hold:
                bar.setUpdatesEnabled(not hold)  # enabling again repaints the bar

    def _settled(self):
        sc = self.scene()
        sc.interacting = False
        self._hold_scroll_bars(False)
        if sc.scaling:
            self._update_detail(zooming=False)  # first: only cards drawn one by one sharpen
            sc.set_scaling(False, sc.cards_meeting(self._near_view()))
        self.viewport().update()

    def paintEvent(self, event):
        super().paintEvent(event)
        self.scene().frame_painted()

    def _near_view(self) -> QRectF:
        """The visible area and the strip around it where a card's ports and badge reach."""
        m = 16 / max(self.zoom, 1e-6) + 14
        return self.visible_rect().adjusted(-m, -m, m, m)

    def scrollContentsBy(self, dx, dy):
        self._moving()
        super().scrollContentsBy(dx, dy)
        sc = self.scene()
        if sc._detail_pending:
            sc.switch_now(sc.cards_meeting(self.visible_rect()))  # cards that came into view
        if sc._sharpen_later and not sc.scaling:
            sc.sharpen_in_view(sc.cards_meeting(self._near_view()))

    # ------------------------------------------------------------------ pan
    def mousePressEvent(self, event):
        self._fit_until_moved = False
        if event.button() == Qt.MiddleButton or (event.button() == Qt.LeftButton and self._space):
            self._pan = event.position()
            self.viewport().setCursor(Qt.ClosedHandCursor)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event):
        if self._pan is not None:
            d = event.position() - self._pan
            self._pan = event.position()
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - int(d.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - int(d.y()))
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event):
        if self._pan is not None:
            self._pan = None
            self.viewport().setCursor(Qt.OpenHandCursor if self._space else Qt.ArrowCursor)
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event):
        pos = self.mapToScene(event.position().toPoint())
        if not any(isinstance(it, (NodeItem, PortItem, EdgeItem)) for it in self.items(
                event.position().toPoint())):
            self.quick_add_at.emit(pos)
            return
        super().mouseDoubleClickEvent(event)

    def keyPressEvent(self, event):
        self._fit_until_moved = False
        if event.key() == Qt.Key_Tab and event.modifiers() == Qt.NoModifier:
            # the Add Node action normally takes Tab; this covers a window not yet active
            self.quick_add_at.emit(self.cursor_scene_pos())
            return
        if event.key() == Qt.Key_Space and not event.isAutoRepeat():
            self._space = True
            self.viewport().setCursor(Qt.OpenHandCursor)
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event):
        if event.key() == Qt.Key_Space and not event.isAutoRepeat():
            self._space = False
            self.viewport().setCursor(Qt.ArrowCursor)
            return
        super().keyReleaseEvent(event)

    def focusNextPrevChild(self, _next):
        return False  # Tab opens the quick-add popup instead of moving focus

    def cursor_scene_pos(self) -> QPointF:
        """Where the mouse is on the canvas (the view's centre when it is outside)."""
        from PySide6.QtGui import QCursor  # noqa: PLC0415

        p = self.viewport().mapFromGlobal(QCursor.pos())
        if not self.viewport().rect().contains(p):
            p = self.viewport().rect().center()
        return self.mapToScene(p)

    def contextMenuEvent(self, event):
        pos = self.mapToScene(event.pos())
        item = None
        for it in self.items(event.pos()):
            if isinstance(it, (NodeItem, EdgeItem)):
                item = it
                break
            if isinstance(it, PortItem):
                item = it.node_item
                break
        self.context_menu_requested.emit(pos, item)

    # ---------------------------------------------------------- drag & drop
    def dragEnterEvent(self, event):
        md = event.mimeData()
        if md.hasFormat(OP_MIME) or md.hasUrls():  # an op from the palette, or a file
            event.acceptProposedAction()
        else:
            event.ignore()

    dragMoveEvent = dragEnterEvent

    def dropEvent(self, event):
        md = event.mimeData()
        if md.hasFormat(OP_MIME):
            op_id = bytes(md.data(OP_MIME)).decode("utf-8")
            self.op_dropped.emit(op_id, self.mapToScene(event.position().toPoint()))
            event.acceptProposedAction()
        elif md.hasUrls():
            for url in md.urls():
                if url.isLocalFile():
                    self.file_dropped.emit(url.toLocalFile())
                    break
            event.acceptProposedAction()
        else:
            event.ignore()


def render_scene(scene: GraphScene, width: int, height: int, dpr: float = 1.0, margin=40):
    """The whole graph drawn into a :class:`QImage` of ``width`` × ``height`` logical pixels."""
    from PySide6.QtGui import QImage  # noqa: PLC0415

    img = QImage(int(width * dpr), int(height * dpr), QImage.Format_ARGB32_Premultiplied)
    img.setDevicePixelRatio(dpr)
    img.fill(scene.theme.color("canvas"))
    source = scene.content_rect().adjusted(-margin, -margin, margin, margin)
    if source.isEmpty():
        source = QRectF(0, 0, width, height)
    # keep the aspect ratio and never blow small graphs up past 150 %
    s = min(width / source.width(), height / source.height(), 1.5)
    # the scene area that fills the whole picture, centred on the graph
    full = QRectF(source.center().x() - width / s / 2, source.center().y() - height / s / 2,
                  width / s, height / s)
    painter = QPainter(img)
    painter.setRenderHints(QPainter.Antialiasing | QPainter.TextAntialiasing)
    scene.finish_sharpening()  # a card still scaled from a zoom would come out soft
    detailed = scene.detailed
    scene.set_detail(True)  # the picture has its own scale; each item picks its detail
    scene.smooth_grid = True
    scene.render(painter, QRectF(0, 0, width, height), full, Qt.KeepAspectRatio)
    scene.smooth_grid = False
    scene.set_detail(detailed)
    painter.end()
    return img
