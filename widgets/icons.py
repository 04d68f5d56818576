"""Vector glyphs for op categories, drawn with QPainter so they stay crisp at any scale."""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap

_PATHS: dict = {}


def category_path(category: str, rect: QRectF) -> QPainterPath:
    """An outline glyph for ``category`` fitted into ``rect`` (stroke it, don't fill).

    Cached by category and rectangle: every card paints its glyph, and a zoom
    re-paints every card in view.
    """
    key = (category, rect.x(), rect.y(), rect.width(), rect.height())
    path = _PATHS.get(key)
    if path is None:
        if len(_PATHS) > 512:
            _PATHS.clear()
        path = _PATHS[key] = _category_path(category, rect)
    return path


def _category_path(category: str, rect: QRectF) -> QPainterPath:
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


def _hidpi_icon(size: int, paint) -> QIcon:
    """A :class:`QIcon` with 1x and 2x pixmaps, each drawn by ``paint(painter)``."""
    icon = QIcon()
    for dpr in (1, 2):
        pm = QPixmap(size * dpr, size * dpr)
        pm.setDevicePixelRatio(dpr)
        pm.fill(Qt.transparent)
        painter = QPainter(pm)
        painter.setRenderHint(QPainter.Antialiasing)
        paint(painter)
        painter.end()
        icon.addPixmap(pm)
    return icon


def category_icon(category: str, color: QColor, size: int = 18) -> QIcon:
    """A :class:`QIcon` of the category glyph on a rounded colour chip (1x and 2x)."""

    def paint(painter):
        painter.setPen(Qt.NoPen)
        painter.setBrush(color)
        painter.drawRoundedRect(QRectF(0.5, 0.5, size - 1, size - 1), 4, 4)
        draw_category_glyph(painter, category, QRectF(4, 4, size - 8, size - 8),
                            QColor("white"), 1.4)

    return _hidpi_icon(size, paint)


def _action_path(name: str, s: float) -> QPainterPath:
    """Outline glyphs for the toolbar, on an ``s``×``s`` square."""
    p = QPainterPath()

    def pt(u, v):
        return QPointF(u * s, v * s)

    if name == "new":  # a sheet with a folded corner
        p.moveTo(pt(0.22, 0.1))
        p.lineTo(pt(0.6, 0.1))
        p.lineTo(pt(0.8, 0.3))
        p.lineTo(pt(0.8, 0.9))
        p.lineTo(pt(0.22, 0.9))
        p.closeSubpath()
        p.moveTo(pt(0.6, 0.1))
        p.lineTo(pt(0.6, 0.3))
        p.lineTo(pt(0.8, 0.3))
    elif name == "open":  # an open folder
        p.moveTo(pt(0.08, 0.82))
        p.lineTo(pt(0.08, 0.2))
        p.lineTo(pt(0.38, 0.2))
        p.lineTo(pt(0.46, 0.3))
        p.lineTo(pt(0.8, 0.3))
        p.lineTo(pt(0.8, 0.42))
        p.moveTo(pt(0.08, 0.82))
        p.lineTo(pt(0.24, 0.45))
        p.lineTo(pt(0.95, 0.45))
        p.lineTo(pt(0.8, 0.82))
        p.closeSubpath()
    elif name == "save":  # a floppy disk
        p.addRoundedRect(QRectF(pt(0.12, 0.12), pt(0.88, 0.88)), 0.06 * s, 0.06 * s)
        p.addRect(QRectF(pt(0.3, 0.12), pt(0.7, 0.36)))
        p.addRect(QRectF(pt(0.26, 0.56), pt(0.74, 0.88)))
    elif name in ("undo", "redo"):  # a hooked arrow
        flip = name == "redo"

        def q(u, v):
            return pt(1 - u, v) if flip else pt(u, v)

        p.moveTo(q(0.3, 0.22))
        p.lineTo(q(0.12, 0.4))
        p.lineTo(q(0.3, 0.58))
        p.moveTo(q(0.12, 0.4))
        p.cubicTo(q(0.6, 0.4), q(0.9, 0.45), q(0.88, 0.64))
        p.cubicTo(q(0.86, 0.82), q(0.6, 0.86), q(0.42, 0.86))
    elif name == "fit":  # four corners around a frame
        for (u, v, du, dv) in ((0.1, 0.1, 1, 1), (0.9, 0.1, -1, 1), (0.1, 0.9, 1, -1),
                               (0.9, 0.9, -1, -1)):
            p.moveTo(pt(u, v + 0.22 * dv))
            p.lineTo(pt(u, v))
            p.lineTo(pt(u + 0.22 * du, v))
        p.addRect(QRectF(pt(0.34, 0.36), pt(0.66, 0.64)))
    elif name == "layout":  # three boxes in layers, wired
        p.addRoundedRect(QRectF(pt(0.06, 0.16), pt(0.32, 0.38)), 2, 2)
        p.addRoundedRect(QRectF(pt(0.06, 0.62), pt(0.32, 0.84)), 2, 2)
        p.addRoundedRect(QRectF(pt(0.68, 0.39), pt(0.94, 0.61)), 2, 2)
        p.moveTo(pt(0.32, 0.27))
        p.cubicTo(pt(0.5, 0.27), pt(0.5, 0.5), pt(0.68, 0.5))
        p.moveTo(pt(0.32, 0.73))
        p.cubicTo(pt(0.5, 0.73), pt(0.5, 0.5), pt(0.68, 0.5))
    elif name == "examples":  # a book
        p.moveTo(pt(0.5, 0.24))
        p.cubicTo(pt(0.38, 0.14), pt(0.2, 0.14), pt(0.1, 0.2))
        p.lineTo(pt(0.1, 0.84))
        p.cubicTo(pt(0.2, 0.78), pt(0.38, 0.78), pt(0.5, 0.88))
        p.cubicTo(pt(0.62, 0.78), pt(0.8, 0.78), pt(0.9, 0.84))
        p.lineTo(pt(0.9, 0.2))
        p.cubicTo(pt(0.8, 0.14), pt(0.62, 0.14), pt(0.5, 0.24))
        p.lineTo(pt(0.5, 0.88))
    elif name == "train":  # a falling loss curve over axes
        p.moveTo(pt(0.12, 0.1))
        p.lineTo(pt(0.12, 0.88))
        p.lineTo(pt(0.92, 0.88))
        p.moveTo(pt(0.22, 0.2))
        p.cubicTo(pt(0.34, 0.62), pt(0.5, 0.7), pt(0.88, 0.72))
    else:
        p.addEllipse(pt(0.5, 0.5), 0.3 * s, 0.3 * s)
    return p


def action_icon(name: str, color: QColor, size: int = 20) -> QIcon:
    """A toolbar icon drawn in ``color`` (so it follows the theme), at 1x and 2x."""

    def paint(painter):
        pen = QPen(color, 1.5)
        pen.setCapStyle(Qt.RoundCap)
        pen.setJoinStyle(Qt.RoundJoin)
        painter.setPen(pen)
        painter.setBrush(Qt.NoBrush)
        painter.drawPath(_action_path(name, size))

    return _hidpi_icon(size, paint)
