"""Vector glyphs for op categories, drawn with QPainter so they stay crisp at any scale."""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap


def category_path(category: str, rect: QRectF) -> QPainterPath:
    """An outline glyph for ``category`` fitted into ``rect`` (stroke it, don't fill)."""
    x, y, w, h = rect.x(), rect.y(), rect.width(), rect.height()
    p = QPainterPath()

    def pt(u, v):
        return QPointF(x + u * w, y + v * h)

    if category == "inputs":  # an arrow entering a bracket
        p.moveTo(pt(0.05, 0.5))
        p.lineTo(pt(0.62, 0.5))
        p.moveTo(pt(0.42, 0.3))
        p.lineTo(pt(0.62, 0.5))
        p.lineTo(pt(0.42, 0.7))
        p.moveTo(pt(0.6, 0.12))
        p.lineTo(pt(0.92, 0.12))
        p.lineTo(pt(0.92, 0.88))
        p.lineTo(pt(0.6, 0.88))
    elif category == "math":  # a plus over a minus: arithmetic
        p.moveTo(pt(0.5, 0.1))
        p.lineTo(pt(0.5, 0.62))
        p.moveTo(pt(0.24, 0.36))
        p.lineTo(pt(0.76, 0.36))
        p.moveTo(pt(0.24, 0.86))
        p.lineTo(pt(0.76, 0.86))
    elif category == "activations":  # a sigmoid curve
        steps = 24
        for i in range(steps + 1):
            u = i / steps
            s = 1 / (1 + math.exp(-(u - 0.5) * 12))
            q = pt(0.06 + 0.88 * u, 0.86 - 0.72 * s)
            if i == 0:
                p.moveTo(q)
            else:
                p.lineTo(q)
    elif category == "layers":  # three stacked sheets
        for k in range(3):
            off = 0.2 * k
            p.addRoundedRect(QRectF(pt(0.08 + off, 0.08 + off * 0.9),
                                    pt(0.52 + off, 0.52 + off * 0.9)), 1.5, 1.5)
    elif category == "losses":  # a target
        c = pt(0.5, 0.5)
        for r in (0.42, 0.22):
            p.addEllipse(c, r * w, r * h)
        p.addEllipse(c, 0.04 * w, 0.04 * h)
    elif category == "regularization":  # a balance
        p.moveTo(pt(0.5, 0.12))
        p.lineTo(pt(0.5, 0.88))
        p.moveTo(pt(0.3, 0.88))
        p.lineTo(pt(0.7, 0.88))
        p.moveTo(pt(0.1, 0.28))
        p.lineTo(pt(0.9, 0.28))
        p.moveTo(pt(0.1, 0.28))
        p.lineTo(pt(0.02, 0.58))
        p.lineTo(pt(0.28, 0.58))
        p.lineTo(pt(0.1, 0.28))
        p.moveTo(pt(0.9, 0.28))
        p.lineTo(pt(0.72, 0.58))
        p.lineTo(pt(0.98, 0.58))
        p.lineTo(pt(0.9, 0.28))
    else:
        p.addEllipse(rect.adjusted(w * 0.2, h * 0.2, -w * 0.2, -h * 0.2))
    return p


def draw_category_glyph(painter: QPainter, category: str, rect: QRectF, color: QColor,
                        width: float = 1.6):
    """Stroke the glyph of ``category`` into ``rect``."""
    pen = QPen(color, width)
    pen.setCapStyle(Qt.RoundCap)
    pen.setJoinStyle(Qt.RoundJoin)
    painter.save()
    painter.setRenderHint(QPainter.Antialiasing)
    painter.setPen(pen)
    painter.setBrush(Qt.NoBrush)
    painter.drawPath(category_path(category, rect))
    painter.restore()


def category_icon(category: str, color: QColor, size: int = 18) -> QIcon:
    """A :class:`QIcon` of the category glyph on a rounded colour chip (1x and 2x)."""
    icon = QIcon()
    for dpr in (1, 2):
        pm = QPixmap(size * dpr, size * dpr)
        pm.setDevicePixelRatio(dpr)
        pm.fill(Qt.transparent)
        painter = QPainter(pm)
        painter.setRenderHint(QPainter.Antialiasing)
        painter.setPen(Qt.NoPen)
        painter.setBrush(color)
        painter.drawRoundedRect(QRectF(0.5, 0.5, size - 1, size - 1), 4, 4)
        draw_category_glyph(painter, category, QRectF(4, 4, size - 8, size - 8),
                            QColor("white"), 1.4)
        painter.end()
        icon.addPixmap(pm)
    return icon
