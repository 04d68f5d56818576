"""The overview map: the whole graph in a small panel, with the part the view shows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QWidget

if TYPE_CHECKING:
    from widgets.canvas.view import GraphView


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
