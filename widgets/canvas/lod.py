"""Level of detail: how the canvas stays fast when far out, while zooming and panning.

Far out the :class:`OverviewItem` draws every card and wire in a few calls; while
the zoom changes, cards are scaled pictures, refined a few per frame; once it
rests they are re-cached per pixel ("sharpened"), those in view first. The work
is queued and done a little per tick so no single frame pays for all of it.
:class:`LevelOfDetail` holds that bookkeeping for :class:`GraphScene`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QRectF, Qt, QTimer
from PySide6.QtGui import QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem

from widgets.canvas.items import HEADER_H, NodeItem, _tint
from widgets.canvas.wires import EdgeItem

if TYPE_CHECKING:
    from widgets.canvas.scene import GraphScene

DETAIL_LOD = 0.35  # below this zoom the cards are too small to read
READABLE_ZOOM = 0.6  # the least zoom a graph opens at: titles, shapes and parameters legible
BOUNDS_STEP = 2000.0  # the overview's (and so the scene's) area grows in steps this big
REFINE_PER_FRAME = 3  # cards drawn in full per tick while zooming
ZOOMING_CARDS = 40  # more cards in view than this: the overview draws them while zooming
DETAIL_PER_TICK = 200  # items switched per idle tick to or from the overview
DETAIL_PER_TICK_MOVING = 10  # ... while the view moves (each adds to the next frame)
SHARPEN_PER_FRAME = 6  # cards re-cached per pixel per frame once the zoom rests
PIXMAP_CACHE_KB = 64 * 1024  # room for a large graph's card pictures on a 2× screen
SHARPEN_LATER_PER_TICK = 100  # ... out of view, per idle tick (cheap: nothing is painted)


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


class LevelOfDetail:
    """The level-of-detail half of :class:`GraphScene` (a mixin, first in its bases).

    It has no ``__init__``: the scene calls :meth:`_init_detail` from its own, so
    the attributes the view and the tests read (``detailed``, ``scaling``,
    ``_detail_pending``, ``_sharpen``, ``_sharpen_later``, ``_refine``) stay the
    scene's.
    """

    def _init_detail(self):
        """Create the work queues, their timers and the overview item."""
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
        self.detailed = True
        self.interacting = False  # the view is panning or zooming: draw fast, not fine
        self.scaling = False  # the zoom is changing: cards cached in item coordinates
        self.scaling_lod = 1.0  # the zoom the view shows meanwhile (detail cards can show)
        self.overview = OverviewItem(self)
        self.addItem(self.overview)
        self.selectionChanged.connect(self._on_selection_for_overview)

    def set_detail(self, detailed: bool, in_view=None):
        """Draw each card and wire itself (True) or all of them as one overview (False).

        With ``in_view`` (the items a view shows) only those change now and the
        rest a few hundred per tick, so the frame that crosses the overview
        threshold does not switch every item of a large graph.
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
        # few while the view moves: each switched item adds to the next frame, and
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
        re-painted every visible card. Cached in
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

        Re-caching every card in view at once would stall the frame in which the
        zoom rests; the scaled pictures stay on screen meanwhile, so the cards
        sharpen over a few frames instead. The cards out of view follow in idle
        ticks, so they never add to that frame. One panned into view before its
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
        would otherwise draw them all in one long frame; they appear as
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
