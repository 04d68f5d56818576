"""The canvas view: zoom around the cursor, pan, drops from the palette and files."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QCursor, QPainter, QPixmapCache
from PySide6.QtWidgets import QGraphicsView

from widgets.canvas.items import OP_MIME, NodeItem
from widgets.canvas.lod import DETAIL_LOD, PIXMAP_CACHE_KB, READABLE_ZOOM, ZOOMING_CARDS
from widgets.canvas.overview import Minimap
from widgets.canvas.scene import GraphScene
from widgets.canvas.wires import EdgeItem


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
        # bound methods, not lambdas: Qt drops the connection when the view is deleted, while
        # a scene that outlives its view goes on emitting
        scene.changed.connect(self._schedule_minimap)
        for bar in (self.horizontalScrollBar(), self.verticalScrollBar()):
            bar.sliderPressed.connect(self.keep_view)
            bar.valueChanged.connect(self._schedule_minimap)

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
        plain blocks then anyway (see :meth:`GraphScene.set_scaling`), and
        drawing a hundred cards and wires one by one is slow. A little
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
    def _schedule_minimap(self, *_):
        self._minimap_timer.start()

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
        if sc is None:  # the scene went before the view's timer fired
            return
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
        if sc.stepping.shown:
            self.viewport().update()  # the legend is pinned to the corner, not scrolled
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
        if isinstance(self.scene().mouseGrabberItem(), NodeItem) and not self.scene().connecting:
            # a card is dragged: its wires are drawn the fast way, like a pan, until it rests
            self._moving()

    def mouseReleaseEvent(self, event):
        if self._pan is not None:
            self._pan = None
            self.viewport().setCursor(Qt.OpenHandCursor if self._space else Qt.ArrowCursor)
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event):
        pos = self.mapToScene(event.position().toPoint())
        if not any(isinstance(it, (NodeItem, EdgeItem)) for it in self.items(
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
