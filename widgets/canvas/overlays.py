"""Items drawn above the cards and wires (at ``OVERLAY_Z``): the wire being dragged."""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, QSizeF, Qt
from PySide6.QtGui import QFontMetricsF, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem

from widgets.canvas.routing import default_curve
from widgets.theme import Theme

OVERLAY_Z = 10  # above cards (1), their ports (2) and wires (0)


class DragWire(QGraphicsItem):
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
        self.setZValue(OVERLAY_Z)

    def set(self, a: QPointF, b: QPointF, state, hint: str, hint_at: QPointF,
            bounds: QRectF | None = None):
        self.prepareGeometryChange()
        p1, c1, c2, p2 = default_curve(a, b)
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

