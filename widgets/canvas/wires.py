"""Ports and wires: the connectors on a card's edges, and a wire per edge.

A port is drawn and hit-tested by its card; a wire is routed by ``routing``
around the cards and labelled with the tensor's shape. Like the cards they only
draw; a gesture calls back into the scene (``begin_connection``…).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QLineF, QPointF, QRectF, Qt
from PySide6.QtGui import (
    QColor,
    QFontMetricsF,
    QPainter,
    QPainterPath,
    QPainterPathStroker,
    QPen,
    QPolygonF,
    QStaticText,
    QTransform,
)
from PySide6.QtWidgets import QGraphicsItem

from core.graph import Edge
from widgets.canvas.routing import plain_path, route
from widgets.theme import Theme

if TYPE_CHECKING:
    from widgets.canvas.items import NodeItem
    from widgets.canvas.scene import GraphScene

PORT_R = 5.0
# Qt's enum members looked up once: each lookup costs microseconds, times thousands of items
_SELECTABLE = QGraphicsItem.ItemIsSelectable

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


def _line_height(fonts: dict, kind: str) -> float:
    """Height of a line in font ``kind`` (cached with the advances)."""
    h = _ADVANCES.get((kind, None))
    if h is None:
        fm = _METRICS.get(kind)
        if fm is None:
            fm = _METRICS[kind] = QFontMetricsF(fonts[kind])
        h = _ADVANCES[(kind, None)] = fm.height()
    return h


# --------------------------------------------------------------------- ports
PORT_HIT_R = PORT_R + 4  # how near a port a press or the mouse must be to be on it


class Port:
    """A connector on the edge of a card: where it sits, what it carries, how it shows.

    Not an item of its own: its card draws it, tests which port the mouse is on
    and passes presses on a port to the scene (``begin_connection``…). With one
    item per port a large graph had two or three times as many items, which Qt
    creates, indexes and deletes one by one.
    """

    __slots__ = ("node_item", "name", "is_output", "kind", "connected", "hover",
                 "highlight", "_pos")

    def __init__(self, node_item: NodeItem, name: str, is_output: bool, kind: str):
        self.node_item = node_item
        self.name = name
        self.is_output = is_output
        self.kind = kind
        self.connected = False
        self.hover = False
        self.highlight = None  # None, "ok" or "bad" while a connection is dragged
        self._pos = QPointF()

    @property
    def node_id(self) -> str:
        return self.node_item.node_id

    def pos(self) -> QPointF:
        """Where the port sits on its card (card coordinates)."""
        return QPointF(self._pos)

    def setPos(self, x: float, y: float):  # noqa: N802 - named as Qt's items name it
        self._pos = QPointF(x, y)

    def scenePos(self) -> QPointF:  # noqa: N802 - named as Qt's items name it
        return self.node_item.pos() + self._pos

    def hit(self, local: QPointF) -> bool:
        """Whether the card point ``local`` is on this port."""
        dx, dy = local.x() - self._pos.x(), local.y() - self._pos.y()
        return dx * dx + dy * dy <= PORT_HIT_R * PORT_HIT_R

    def draw(self, painter, theme):
        """Draw the port at its position on the card (called from the card's paint)."""
        color = theme.category_color(self.node_item.category)
        if self.kind == "target":
            color = theme.color("warning")
        elif self.kind == "index":
            color = theme.color("muted")
        c = self._pos
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

    def update(self):
        # the card draws the port, so the card is what needs repainting
        self.node_item.update()

    def press(self, event):
        """A press on the port (passed on by its card): connect, pick a wire up, or, while
        stepping, ask to see the port's tensor. Returns whether it was taken."""
        sc = self.node_item.scene()
        if event.button() != Qt.LeftButton or sc is None:
            return False
        if sc.stepping.shown:
            # while stepping a click asks to see the port's tensor, not to connect
            sc.port_clicked.emit(self.node_id, self.name, self.is_output)
        elif not self.is_output and self.connected:
            sc.begin_rewire(self, event.scenePos())  # pick the wire up
        else:
            sc.begin_connection(self, event.scenePos())
        return True


# --------------------------------------------------------------------- edges
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
        self.setFlag(_SELECTABLE)  # under the cards (z 1) at Qt's default z of 0
        self.setAcceptHoverEvents(True)
        self.hover = False
        self._long = False
        self.rough = False  # drawn as the plain curve while a card is dragged (see update_path)
        self.pill_hidden = False  # the stepping overlay shows the value there instead
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

    def set_pill_hidden(self, hidden: bool):
        if hidden != self.pill_hidden:
            self.pill_hidden = hidden
            self.update()

    def set_label(self, text: str, bad: bool = False):
        if text != self.label or bad != self.bad:
            self.label = text
            self.bad = bad
            self._label_text = None
            if self.path.isEmpty():
                return  # not routed yet (a graph being opened): measured when it is
            self.prepareGeometryChange()
            self._update_rect()
            self.update()

    def update_path(self, rough: bool = False, clear: bool = False, ends=None):
        """Recompute the curve; detour around cards that the direct curve would cross.

        ``rough``: only the plain curve, with no look for cards in its way (a dragged
        card's wires beyond what one frame can route; the scene routes them later).
        ``clear``: the caller found the plain curve clear of cards, as routing would.
        ``ends``: :meth:`endpoints` as the caller just read them.
        """
        p1, p2 = self.endpoints() if ends is None else ends
        # route first: it queries the scene's index, which must not see this item half changed
        path = plain_path(p1, p2) if rough or clear else route(self.scene(), p1, p2,
                                                               exclude=(self.src, self.dst))
        self.rough = rough
        self.prepareGeometryChange()
        self.path = path
        self._shape = None
        self.label_pos = path.pointAtPercent(0.5)
        self._long = QLineF(p1, p2).length() >= 70  # short wires get no label
        self._update_rect()
        self.scene().stepping.wire_moved(self)

    def _update_rect(self):
        r = self.path.boundingRect().adjusted(-6, -6, 6, 6)
        if self.label:
            # measured here, not per paint: font metrics cost more than drawing the pill
            self._label_box = self._label_rect()
            r = r.united(self._label_box)
        self._rect = r

    def _label_rect(self) -> QRectF:
        w = _advance(self.fonts, "small", self.label) + 10  # labels recur: cached widths
        h = _line_height(self.fonts, "small") + 3
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
            # while the view moves, plain lines: antialiasing a long curve is slow,
            # and the settled frame redraws it smooth
            painter.setRenderHint(QPainter.Antialiasing, False)
            painter.drawPath(self.path)
            painter.setRenderHint(QPainter.Antialiasing, True)
        else:
            painter.drawPath(self.path)
        if not self.label or not self._long or self.pill_hidden or \
                (sc is not None and sc.scaling) or \
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

