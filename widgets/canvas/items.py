"""The cards: one per node, drawing its ports (``wires``), with its breakpoint dot.

Items draw what the model and its shape report say; they never edit the model.
A gesture on an item calls back into its scene (``begin_connection``,
``finish_move``…), which turns it into a request signal.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontDatabase,
    QFontMetricsF,
    QPainter,
    QPainterPath,
    QPen,
)
from PySide6.QtWidgets import QGraphicsItem

from core.ops.base import fmt_shape
from widgets.canvas.wires import PORT_HIT_R, PORT_R, EdgeItem, Port, _advance
from widgets.icons import draw_category_glyph

if TYPE_CHECKING:
    from widgets.canvas.scene import GraphScene

OP_MIME = "application/x-backprop-studio-op"
GRID = 20.0
NODE_MIN_W = 172.0
NODE_MAX_W = 260.0
HEADER_H = 28.0
ROW_H = 20.0
LINE_H = 16.0
FOOTER_H = 22.0
PAD = 10.0
MAX_PARAM_LINES = 3


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


# --------------------------------------------------------------------- nodes
_POS_CHANGE = QGraphicsItem.ItemPositionChange
_POS_CHANGED = QGraphicsItem.ItemPositionHasChanged
_SELECTED_CHANGED = QGraphicsItem.ItemSelectedHasChanged
_CARD_FLAGS = (QGraphicsItem.ItemIsMovable | QGraphicsItem.ItemIsSelectable
               | QGraphicsItem.ItemSendsGeometryChanges)
_NO_CACHE = QGraphicsItem.NoCache
_DEVICE_CACHE = QGraphicsItem.DeviceCoordinateCache
_CROSS = Qt.CrossCursor


class NodeItem(QGraphicsItem):
    """A node drawn as a card: header with icon and name, ports, key parameters, shape."""

    def __init__(self, scene: GraphScene, node, info=()):
        super().__init__()
        self.node_id = node.id
        self.theme = scene.theme
        self.fonts = scene.fonts
        self.category = type(node.op).category
        self.setFlags(_CARD_FLAGS)
        self.setAcceptHoverEvents(True)
        self.setZValue(1)
        self.width = 0.0  # set by set_node
        self.height = 0.0
        self.in_ports: dict[str, Port] = {}
        self.out_ports: dict[str, Port] = {}
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
        self._port_pressed = False  # a press on a port: the moves drag a wire, not the card
        self._hover_port = None
        self._shape = None  # the card and its ports' hit areas, made when first asked for
        self._signature = None
        self._tip = None  # the tooltip not yet given to Qt (see hoverEnterEvent)
        self.warm = False  # drawn in full since the zoom started changing (see set_scaling)
        self.scaled = scene.scaling  # drawn for a changing zoom, not cached per pixel
        # while the zoom changes a card is first a block drawn directly (no cache)
        self.setCacheMode(_NO_CACHE if scene.scaling else _DEVICE_CACHE)
        op_cls = type(node.op)
        for p in op_cls.inputs:
            self.in_ports[p] = Port(self, p, False, op_cls.port_kind(p, False))
        for p in op_cls.outputs:
            self.out_ports[p] = Port(self, p, True, op_cls.port_kind(p, True))
        self._dot = None  # the breakpoint dot, made when first needed (see breakpoint_dot)
        self.set_node(node, *info)

    @property
    def breakpoint_dot(self) -> BreakpointDot:
        """The dot left of the header, made on first use: most cards never show one."""
        if self._dot is None:
            self._dot = BreakpointDot(self)
        return self._dot

    def has_breakpoint_dot(self) -> bool:
        return self._dot is not None

    # ------------------------------------------------------------ content
    def set_node(self, node, shapes=None, error=None, blocked=False, params=0):
        """Recompute texts and size from the model node and its inferred shapes.

        Does nothing when nothing visible changed: shape inference refreshes every
        card after each edit, and most cards stay the same.
        """
        op_cls = type(node.op)
        title, subtitle, lines, footer, footer_right = self._card_texts(
            node, shapes, error, blocked, params)
        signature = (title, subtitle, tuple(lines), footer, footer_right, error, blocked)
        if signature == self._signature:
            return
        self._signature = signature
        self.title, self.subtitle, self.param_lines = title, subtitle, lines
        self.footer, self.footer_right, self.error, self.blocked = (footer, footer_right,
                                                                    error, blocked)
        width, height = self._fit_size(op_cls)
        resized = (width, height) != (self.width, self.height)
        if resized:
            self.prepareGeometryChange()
            self.width, self.height = width, height
            self._shape = None
            for i, p in enumerate(op_cls.inputs):
                self.in_ports[p].setPos(0, self.port_offset(i))
            for i, p in enumerate(op_cls.outputs):
                self.out_ports[p].setPos(self.width, self.port_offset(i))
        tip = f"<b>{node.name}</b> — {op_cls.label}"
        if op_cls.formula:
            tip += f"<br><span style='font-family:serif'>{op_cls.formula}</span>"
        if error:
            tip += f"<br><span style='color:{self.theme.error}'>⚠ {error}</span>"
        self._tip = tip  # handed to Qt when the mouse comes: setting 5,000 of them slowed opening
        self.update()
        if resized:
            self.geometry_changed()

    @staticmethod
    def _card_texts(node, shapes, error, blocked, params) -> tuple:
        """``(title, subtitle, parameter lines, footer, footer right)`` of the card."""
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
            if p.quiet or (op_cls.source and p.name == "shape"):
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
        return title, subtitle, lines, footer, footer_right

    def _fit_size(self, op_cls) -> tuple:
        """``(width, height)`` that fits the current texts, on the grid, within the limits."""
        f = self.fonts
        want = max(
            _advance(f, "title", self.title) + 44
            + (_advance(f, "small", self.subtitle) + 12 if self.subtitle else 0),
            max((_advance(f, "body", s) for s in self.param_lines), default=0) + 2 * PAD,
            (0 if self.error else _advance(f, "mono", self.footer)
             + _advance(f, "small", self.footer_right) + 2 * PAD + 12),
            max((_advance(f, "body", p) for p in op_cls.inputs), default=0)
            + max((_advance(f, "body", p) for p in op_cls.outputs), default=0)
            + 2 * PAD + 30,
        )
        width = float(min(NODE_MAX_W, max(NODE_MIN_W, math.ceil(want / GRID) * GRID)))
        rows = max(len(op_cls.inputs), len(op_cls.outputs), 1)
        height = HEADER_H + rows * ROW_H + len(self.param_lines) * LINE_H + 6 + FOOTER_H
        return width, height

    def geometry_changed(self):
        """The card moved or changed size: its wires and the scene's obstacle map follow."""
        sc = self.scene()
        if sc is not None:
            sc.card_moved(self)

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
        # the ports stick out of the card by half: their discs are part of what a press hits
        if self._shape is None:
            card = QPainterPath()
            card.addRoundedRect(self.card_rect(), 7, 7)
            discs = QPainterPath()
            for port in (*self.in_ports.values(), *self.out_ports.values()):
                discs.addEllipse(port.pos(), PORT_HIT_R, PORT_HIT_R)
            self._shape = card.united(discs)
        return self._shape

    def port_at(self, local: QPointF) -> Port | None:
        """The port at the card point ``local``, if any."""
        x = local.x()
        if abs(x) <= PORT_HIT_R:
            ports = self.in_ports
        elif abs(x - self.width) <= PORT_HIT_R:
            ports = self.out_ports
        else:
            return None
        for port in ports.values():
            if port.hit(local):
                return port
        return None

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
        painter.setRenderHint(QPainter.Antialiasing)
        if lod < 0.35:
            self._draw_block(painter)
            return
        self._draw_card(painter)
        if lod < 0.45:
            # small on screen: the body text would be unreadable anyway
            self._draw_outline(painter, far=True)
            self._draw_ports(painter)
            return
        self._draw_params(painter)
        self._draw_footer(painter)
        self._draw_outline(painter, far=False)
        self._draw_ports(painter)
        if self.error:
            self._draw_badge(painter)

    def _draw_card(self, painter):
        """Shadow, body, and the header tinted with the category colour, with icon and title."""
        t = self.theme
        rect = self.card_rect()
        shadow = t.color("node_shadow")
        shadow.setAlpha(60 if t.dark else 22)
        painter.setPen(Qt.NoPen)
        painter.setBrush(shadow)
        painter.drawRoundedRect(rect.translated(0, 2.5), 8, 8)
        painter.setBrush(t.color("node_body"))
        painter.drawRoundedRect(rect, 7, 7)
        header = QPainterPath()
        header.addRoundedRect(QRectF(0, 0, self.width, HEADER_H + 8), 7, 7)
        clip = QPainterPath()
        clip.addRect(QRectF(0, 0, self.width, HEADER_H))
        tint = QColor(t.category_color(self.category))
        tint.setAlpha(235 if t.dark else 255)
        painter.setBrush(tint)
        painter.drawPath(header.intersected(clip))
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

    def _draw_params(self, painter):
        """The port names beside their connectors, then the parameter lines."""
        t = self.theme
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
        rows = max(len(self.in_ports), len(self.out_ports), 1)
        y = HEADER_H + 4 + rows * ROW_H
        painter.setPen(t.color("muted"))
        fmb = QFontMetricsF(self.fonts["body"])
        for line in self.param_lines:
            painter.drawText(QRectF(PAD, y, self.width - 2 * PAD, LINE_H),
                             Qt.AlignVCenter | Qt.AlignLeft,
                             fmb.elidedText(line, Qt.ElideRight, self.width - 2 * PAD))
            y += LINE_H

    def _draw_footer(self, painter):
        """Below a separator: the output shape and parameter count, or the error."""
        t = self.theme
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

    def _draw_outline(self, painter, far: bool):
        """The card's border: selection, error or plain (``far``: one simple line)."""
        t = self.theme
        rect = self.card_rect()
        selected = self.isSelected()
        painter.setBrush(Qt.NoBrush)
        if far:
            painter.setPen(QPen(t.color("error" if self.error else
                                        "selection" if selected else "node_border"),
                                2 if selected or self.error else 1))
            painter.drawRoundedRect(rect, 7, 7)
        elif selected:
            painter.setPen(QPen(t.color("selection"), 2.2))
            painter.drawRoundedRect(rect.adjusted(-1.5, -1.5, 1.5, 1.5), 8.5, 8.5)
        elif self.error:
            painter.setPen(QPen(t.color("error"), 1.8))
            painter.drawRoundedRect(rect, 7, 7)
        else:
            painter.setPen(QPen(t.color("node_border"), 1))
            painter.drawRoundedRect(rect, 7, 7)

    def _draw_ports(self, painter):
        """The connectors, over the outline."""
        t = self.theme
        for port in self.in_ports.values():
            port.draw(painter, t)
        for port in self.out_ports.values():
            port.draw(painter, t)

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
        port = self.port_at(event.pos())
        if port is not None and port.press(event):
            self._port_pressed = True
            event.accept()
            return
        self._press_pos = {it.node_id: it.pos() for it in self.scene().selected_nodes()}
        super().mousePressEvent(event)
        self._press_pos.update({it.node_id: it.pos() for it in self.scene().selected_nodes()
                                if it.node_id not in self._press_pos})

    def mouseMoveEvent(self, event):
        if self._port_pressed:
            self.scene().drag_connection(event.scenePos())
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event):
        if self._port_pressed:
            self._port_pressed = False
            self.scene().end_connection(event.scenePos())
            return
        super().mouseReleaseEvent(event)
        if self._press_pos is not None:
            self.scene().finish_move(self._press_pos)
        self._press_pos = None

    def mouseDoubleClickEvent(self, event):
        if self.port_at(event.pos()) is not None:
            self.mousePressEvent(event)  # a second press on a port, as Qt's items take it
            return
        self.scene().node_activated.emit(self.node_id)

    # no call to the base class: it repaints the whole cached card on every hover
    def hoverEnterEvent(self, event):
        self._give_tip()
        self.breakpoint_dot.set_card_hover(True)
        self._hover_at(event.pos())

    def _give_tip(self):
        if self._tip is not None:
            self.setToolTip(self._tip)
            self._tip = None

    def toolTip(self):  # noqa: N802 - Qt's name
        self._give_tip()
        return super().toolTip()

    def hoverMoveEvent(self, event):
        self._hover_at(event.pos())

    def hoverLeaveEvent(self, event):
        self.breakpoint_dot.set_card_hover(False)
        self._hover_at(None)

    def _hover_at(self, local):
        """Show which port the mouse is on (grown, with a cross cursor), if it changed."""
        port = None if local is None else self.port_at(local)
        old = self._hover_port
        if port is old:
            return
        if old is not None:
            old.hover = False
        if port is not None:
            port.hover = True
            self.setCursor(_CROSS)
        else:
            self.unsetCursor()
        self._hover_port = port
        self.update()


class BreakpointDot(QGraphicsItem):
    """A debugger-gutter dot left of a card's header: shown on hover or when set; a click
    asks the scene to toggle the node's breakpoint."""

    R = 5.0

    def __init__(self, node_item: NodeItem):
        super().__init__(node_item)
        self.node_item = node_item
        self.set = False
        self.card_hover = False
        self.hover = False
        self.setPos(-PORT_R - 7, HEADER_H / 2)
        self.setZValue(3)
        self.setAcceptHoverEvents(True)
        self.setCursor(Qt.PointingHandCursor)
        self.setToolTip("toggle breakpoint")

    def set_card_hover(self, on: bool):
        if on != self.card_hover:
            self.card_hover = on
            self.update()

    def set_breakpoint(self, on: bool):
        if on != self.set:
            self.set = on
            self.update()

    def boundingRect(self):
        r = self.R + 3
        return QRectF(-r, -r, 2 * r, 2 * r)

    def paint(self, painter, option, widget=None):
        if not (self.set or self.card_hover or self.hover):
            return
        t = self.node_item.theme
        painter.setRenderHint(QPainter.Antialiasing)
        red = t.color("error")
        if self.set:
            painter.setPen(QPen(t.color("node_body"), 1.2))
            painter.setBrush(red)
        else:
            red.setAlpha(200 if self.hover else 110)
            painter.setPen(QPen(red, 1.2))
            painter.setBrush(Qt.NoBrush)
        painter.drawEllipse(QPointF(0, 0), self.R, self.R)

    def hoverEnterEvent(self, event):
        self.hover = True
        self.update()

    def hoverLeaveEvent(self, event):
        self.hover = False
        self.update()

    def mousePressEvent(self, event):
        if event.button() == Qt.LeftButton:
            self.scene().breakpoint_toggled.emit(self.node_item.node_id)
            event.accept()
        else:
            event.ignore()




_NO_PEN = Qt.NoPen
_BLOCK_STYLES: dict = {}  # (theme, category, selected, error) -> pen and brushes of a block



def _tint(color: QColor) -> QColor:
    """The category colour, faded, for the body of a far-away card."""
    c = QColor(color)
    c.setAlpha(70)
    return c

