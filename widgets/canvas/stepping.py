"""The stepping overlay: values above the wires, gradients below, node states, a flow pulse.

The overlay only draws what a :class:`core.stepping.StepSession` reports; the
controller owns the session and calls :meth:`SteppingOverlay.show` after each
step. Its items are made once per wire and card and updated in place, so a
step repaints only what changed.
"""

from __future__ import annotations

import math
import time

from PySide6.QtCore import QEasingCurve, QLineF, QObject, QPointF, QRectF, Qt, QVariantAnimation
from PySide6.QtGui import (
    QColor,
    QFontMetricsF,
    QLinearGradient,
    QPainter,
    QPainterPath,
    QPainterPathStroker,
    QPen,
)
from PySide6.QtWidgets import QGraphicsItem

from core.stepping.summary import format_number
from widgets.canvas.items import PORT_R
from widgets.canvas.overlays import OVERLAY_Z
from widgets.theme import Theme

PULSE_MS = 350
LABEL_LOD = 0.55  # below this zoom the numbers are unreadable: colours only
GAP = 3.0  # between the wire and its labels


def ramp(theme: Theme, level: float | None) -> QColor:
    """The gradient colour of ``level`` (0 vanishing … 1 exploding) on the theme's ramp."""
    if level is None:
        return theme.color("gradient")
    t = min(1.0, max(0.0, float(level)))
    a, b, u = ((theme.color("grad_faint"), theme.color("gradient"), t / 0.6) if t < 0.6 else
               (theme.color("gradient"), theme.color("grad_hot"), (t - 0.6) / 0.4))
    return QColor.fromRgbF(a.redF() + (b.redF() - a.redF()) * u,
                           a.greenF() + (b.greenF() - a.greenF()) * u,
                           a.blueF() + (b.blueF() - a.blueF()) * u)


def _shape_text(shape) -> str:
    return "×".join(str(d) for d in shape)


def _label(s, stats) -> str:
    """The number, or the shape with ``stats(s)``; non-finite tensors count their NaN/Inf."""
    if s is None:
        return ""
    if s.scalar:
        return ("⚠ " if not s.finite else "") + s.text
    if not s.finite:
        return f"⚠ {_shape_text(s.shape)}  {s.n_nan} NaN {s.n_inf} Inf"
    return f"{_shape_text(s.shape)}  {stats(s)}"


def value_label(s) -> str:
    """A value as a wire shows it: the number, or the shape with mean and std."""
    return _label(s, lambda t: f"μ {format_number(t.mean)}  σ {format_number(t.std)}")


def grad_label(s) -> str:
    """A gradient as a wire shows it: the number, or the shape with its norm."""
    return _label(s, lambda t: f"‖·‖ {format_number(t.norm)}")


def short_labels(s, grad: bool) -> list:
    """Shorter forms of a tensor's label, longest first, for wires with little room."""
    if s is None or s.scalar or not s.finite:
        return []
    if grad:
        return [f"‖·‖ {format_number(s.norm)}"]
    return [f"μ {format_number(s.mean)}  σ {format_number(s.std)}", f"μ {format_number(s.mean)}"]


def _fit(fm, room, texts) -> str:
    """The first of ``texts`` that fits in ``room`` pixels (the last one if none does)."""
    for text in texts:
        if fm.horizontalAdvance(text) + 10 <= room:
            return text
    return texts[-1]


def _tip(value, grad) -> str:
    lines = []
    if value is not None:
        lines.append(f"value: {value.full_text}")
    if grad is not None:
        lines.append(f"gradient: {grad.full_text}")
    return "\n".join(lines)


class _Labels:
    """Value and gradient pills around a point (shared by wires and loose outputs)."""

    def __init__(self, fonts):
        self.fonts = fonts
        self.value_text = ""
        self.grad_text = ""
        self.value_rect = QRectF()
        self.grad_rect = QRectF()
        self.bad = False  # NaN or Inf: drawn in the error colour

    def place(self, at: QPointF, anchor_left: bool):
        fm = QFontMetricsF(self.fonts["body"])
        h = fm.height() + 2
        self.value_rect = self.grad_rect = QRectF()
        for name in ("value", "grad"):
            text = getattr(self, name + "_text")
            if not text:
                continue
            w = fm.horizontalAdvance(text) + 10
            x = at.x() if anchor_left else at.x() - w / 2
            y = at.y() - GAP - h if name == "value" else at.y() + GAP
            setattr(self, name + "_rect", QRectF(x, y, w, h))

    def rect(self) -> QRectF:
        return self.value_rect.united(self.grad_rect)

    def paint(self, painter, theme: Theme, grad_color: QColor):
        painter.setFont(self.fonts["body"])
        for text, r, color in ((self.value_text, self.value_rect, theme.color("value")),
                               (self.grad_text, self.grad_rect, grad_color)):
            if not text:
                continue
            if self.bad and text.startswith("⚠"):
                color = theme.color("error")
            bg = theme.color("canvas")
            bg.setAlpha(225)
            painter.setPen(Qt.NoPen)
            painter.setBrush(bg)
            painter.drawRoundedRect(r, 4, 4)
            painter.setPen(color)
            painter.drawText(r, Qt.AlignCenter, text)


class WireLabel(QGraphicsItem):
    """One wire's stepping look: its state colour, value above, gradient below, the pulse."""

    def __init__(self, overlay: SteppingOverlay, edge_item):
        super().__init__()
        self.overlay = overlay
        self.edge_item = edge_item
        self.edge = edge_item.edge
        self.labels = _Labels(overlay.scene.fonts)
        self.state = "pending"
        self.level = None
        self.pulse = None  # 0..1 along the wire while its gradient flows back
        self._sig = None
        self._texts = None  # (value forms, gradient forms), longest first
        self._rect = QRectF()
        self._shape = None
        self.setZValue(OVERLAY_Z)
        self.setAcceptHoverEvents(True)
        self.setCursor(Qt.PointingHandCursor)

    @property
    def value_text(self) -> str:
        return self.labels.value_text

    @property
    def grad_text(self) -> str:
        return self.labels.grad_text

    def set_view(self, wv) -> bool:
        """Show the session's :class:`WireView`; ``False`` when nothing visible changed."""
        v, g = wv.value, wv.grad
        sig = (wv.state, v, g, wv.level)
        if sig == self._sig:
            return False
        self._sig = sig
        self.state, self.level = wv.state, wv.level
        self._texts = ([value_label(v)] + short_labels(v, False),
                       [grad_label(g)] + short_labels(g, True))
        self.labels.bad = (v is not None and not v.finite) or (g is not None and not g.finite)
        self.setToolTip(_tip(v, g))
        self.relayout()
        return True

    def relayout(self):
        """Place the labels at the wire's middle, shortened to the room between its cards."""
        self.prepareGeometryChange()
        path = self.edge_item.path
        if self._texts is not None:
            p1, p2 = self.edge_item.endpoints()
            room = max(abs(p2.x() - p1.x()), abs(p2.y() - p1.y())) - 2 * PORT_R - 6
            fm = QFontMetricsF(self.labels.fonts["body"])
            self.labels.value_text = _fit(fm, room, self._texts[0])
            self.labels.grad_text = _fit(fm, room, self._texts[1])
        self.labels.place(path.pointAtPercent(0.5), anchor_left=False)
        self._rect = path.boundingRect().adjusted(-14, -14, 14, 14).united(self.labels.rect())
        self._shape = None
        self.update()

    def boundingRect(self):
        return self._rect

    def shape(self):
        if self._shape is None:
            stroker = QPainterPathStroker()
            stroker.setWidth(10)
            p = stroker.createStroke(self.edge_item.path)
            for r in (self.labels.value_rect, self.labels.grad_rect):
                if not r.isNull():
                    p.addRect(r)
            self._shape = p
        return self._shape

    def pen(self) -> QPen:
        t = self.overlay.scene.theme
        if self.labels.bad:
            return QPen(t.color("error"), 3.2, Qt.DashLine, Qt.RoundCap)
        if self.state == "gradient":
            level = self.level or 0.0
            return QPen(ramp(t, level), 1.4 + 5.0 * level, Qt.SolidLine, Qt.RoundCap)
        if self.state == "value":
            c = t.color("value")
            c.setAlpha(200)
            return QPen(c, 2.0, Qt.SolidLine, Qt.RoundCap)
        c = t.color("canvas")  # pending: fade the plain wire under it
        c.setAlpha(150)
        return QPen(c, 2.4, Qt.SolidLine, Qt.RoundCap)

    def paint(self, painter, option, widget=None):
        t = self.overlay.scene.theme
        path = self.edge_item.path
        painter.setRenderHint(QPainter.Antialiasing)
        pen = self.pen()
        painter.setBrush(Qt.NoBrush)
        if self.state == "gradient" and (self.level or 0) > 0.8 or self.labels.bad:
            glow = QColor(pen.color())
            glow.setAlpha(70)
            painter.setPen(QPen(glow, pen.widthF() + 8, Qt.SolidLine, Qt.RoundCap))
            painter.drawPath(path)
        if self.state != "pending":  # a pending wire stays the plain grey one, pill and all
            painter.setPen(pen)
            painter.drawPath(path)
        if self.pulse is not None:
            # from the reader back toward the input: the gradient flows against the wire
            c = path.pointAtPercent(max(0.0, min(1.0, 1.0 - self.pulse)))
            col = QColor(ramp(t, self.level))
            painter.setPen(Qt.NoPen)
            col.setAlpha(90)
            painter.setBrush(col)
            painter.drawEllipse(c, 9, 9)
            col.setAlpha(255)
            painter.setBrush(col)
            painter.drawEllipse(c, 4.5, 4.5)
        sc = self.overlay.scene
        if sc.scaling or option.levelOfDetailFromTransform(painter.worldTransform()) < LABEL_LOD:
            return
        self.labels.paint(painter, t, ramp(t, self.level) if not self.labels.bad
                          else t.color("error"))

    def mousePressEvent(self, event):
        ends = self.edge_item.endpoints()
        near_port = any(QLineF(p, event.scenePos()).length() <= PORT_R + 5 for p in ends)
        if event.button() == Qt.LeftButton and not near_port:  # a port's click is its own
            self.overlay.scene.wire_clicked.emit(self.edge)
            event.accept()
        else:
            event.ignore()


class OutputLabel(QGraphicsItem):
    """Value and gradient of an output nothing reads (the loss ``f = 2``), beside its port."""

    def __init__(self, overlay: SteppingOverlay, node_item, port: str):
        super().__init__(node_item)
        self.overlay = overlay
        self.node_item = node_item
        self.port = port
        self.labels = _Labels(overlay.scene.fonts)
        self.level = None
        self._sig = None
        self._rect = QRectF()
        self.setZValue(OVERLAY_Z)
        self.setAcceptHoverEvents(True)

    @property
    def value_text(self) -> str:
        return self.labels.value_text

    @property
    def grad_text(self) -> str:
        return self.labels.grad_text

    def set_summaries(self, name, v, g, level) -> bool:
        sig = (name, v, g, level)
        if sig == self._sig:
            return False
        self._sig = sig
        self.level = level
        text = value_label(v)
        self.labels.value_text = f"{name} = {text}" if v is not None and v.scalar else text
        self.labels.grad_text = grad_label(g)
        self.labels.bad = (v is not None and not v.finite) or (g is not None and not g.finite)
        self.setToolTip(_tip(v, g))
        self.prepareGeometryChange()
        port = self.node_item.out_ports[self.port].pos()
        self.labels.place(port + QPointF(PORT_R + 8, 0), anchor_left=True)
        self._rect = self.labels.rect()
        self.update()
        return True

    def boundingRect(self):
        return self._rect

    def paint(self, painter, option, widget=None):
        sc = self.overlay.scene
        if sc.scaling or option.levelOfDetailFromTransform(painter.worldTransform()) < LABEL_LOD:
            return
        painter.setRenderHint(QPainter.Antialiasing)
        t = sc.theme
        self.labels.paint(painter, t, ramp(t, self.level))

    def mousePressEvent(self, event):
        if event.button() == Qt.LeftButton:
            self.overlay.scene.port_clicked.emit(self.node_item.node_id, self.port, True)
            event.accept()
        else:
            event.ignore()


class NodeMark(QGraphicsItem):
    """A card's stepping state: dimmed (pending), ringed (current), edged (backpropagated)."""

    def __init__(self, overlay: SteppingOverlay, node_item):
        super().__init__(node_item)
        self.overlay = overlay
        self.node_item = node_item
        self.state = "pending"
        self.setZValue(OVERLAY_Z)
        self.setAcceptedMouseButtons(Qt.NoButton)
        self.setAcceptHoverEvents(False)

    def set_state(self, state: str) -> bool:
        if state == self.state:
            return False
        self.state = state
        self.update()
        return True

    def boundingRect(self):
        return self.node_item.card_rect().adjusted(-8, -8, 8, 8)

    def shape(self):
        return QPainterPath()  # clicks and hovers go to the card below

    def paint(self, painter, option, widget=None):
        t = self.overlay.scene.theme
        r = self.node_item.card_rect()
        painter.setRenderHint(QPainter.Antialiasing)
        painter.setBrush(Qt.NoBrush)
        if self.state == "pending":
            veil = t.color("canvas")
            veil.setAlpha(150)
            painter.setPen(Qt.NoPen)
            painter.setBrush(veil)
            painter.drawRoundedRect(r, 7, 7)
        elif self.state == "current":
            c = t.color("current")
            halo = QColor(c)
            halo.setAlpha(60)
            painter.setPen(QPen(halo, 8))
            painter.drawRoundedRect(r.adjusted(-3, -3, 3, 3), 9, 9)
            painter.setPen(QPen(c, 2.6))
            painter.drawRoundedRect(r.adjusted(-1.5, -1.5, 1.5, 1.5), 8, 8)
        elif self.state == "backpropagated":
            painter.setPen(QPen(t.color("gradient"), 1.6))
            painter.drawRoundedRect(r.adjusted(-1, -1, 1, 1), 7.5, 7.5)


class SteppingOverlay(QObject):
    """What the canvas shows while stepping: see the module docstring.

    Attributes
    ----------
    shown : bool
        The overlay is on (wire clicks and port clicks are reported only then).
    animation_enabled : bool
        Pulse along each wire whose gradient the last backward step computed.
    frame_times : list of float
        Seconds each animation frame's update took (for the benchmark).
    """

    def __init__(self, scene):
        super().__init__(scene)
        self.scene = scene
        self.shown = False
        self.animation_enabled = True
        self.scale = None
        self.frame_times: list = []
        self._wires: dict = {}  # Edge -> WireLabel
        self._marks: dict = {}  # node id -> NodeMark
        self._outs: dict = {}  # (node id, port) -> OutputLabel
        self._last_index = None
        self._pulsing: list = []
        self._anim = QVariantAnimation(self)
        self._anim.setStartValue(0.0)
        self._anim.setEndValue(1.0)
        self._anim.setDuration(PULSE_MS)
        self._anim.setEasingCurve(QEasingCurve.InOutQuad)
        self._anim.valueChanged.connect(self._on_frame)
        self._anim.finished.connect(self._on_finished)

    # -------------------------------------------------------------- API
    def set_animation(self, enabled: bool):
        """Turn the gradient flow pulse on or off (off stops one that runs)."""
        self.animation_enabled = bool(enabled)
        if not enabled:
            self._anim.stop()
            self._on_finished()

    @property
    def animating(self) -> bool:
        return self._anim.state() == QVariantAnimation.Running

    def show(self, session):
        """Draw the state after ``session``'s current step."""
        sc = self.scene
        self.shown = True
        self.scale = session.scale
        graph = session.graph
        states = session.node_states()
        for nid, item in sc.nodes.items():
            mark = self._marks.get(nid)
            if mark is None or mark.node_item is not item:
                mark = self._marks[nid] = NodeMark(self, item)
                mark.state = None
            mark.setVisible(True)
            mark.set_state(states.get(nid, "pending"))
        views = {}
        for wv in session.wires():
            views[wv.edge] = wv
        for edge, eitem in sc.edges.items():
            wv = views.get(edge)
            if wv is None:
                continue
            lab = self._wires.get(edge)
            if lab is None or lab.edge_item is not eitem:
                if lab is not None and lab.scene() is sc:
                    sc.removeItem(lab)
                lab = self._wires[edge] = WireLabel(self, eitem)
                sc.addItem(lab)
            lab.setVisible(True)
            lab.set_view(wv)
            eitem.set_pill_hidden(wv.state != "pending")
        for edge in [e for e in self._wires if e not in sc.edges]:
            lab = self._wires.pop(edge)
            if lab.scene() is sc:
                sc.removeItem(lab)
        # only a card nothing reads (the loss) gets its numbers beside it; an unread extra
        # output (pooling's indices) would crowd the next wire
        readers = {e.src for e in graph.edges}
        for nid, item in sc.nodes.items():
            node = graph.nodes.get(nid)
            if node is None or nid in readers:
                continue
            for k, port in enumerate(node.output_ports):
                v = session.value_summary(nid, k)
                g = session.grad_summary(nid, k)
                key = (nid, port)
                lab = self._outs.get(key)
                if lab is None or lab.node_item is not item:
                    lab = self._outs[key] = OutputLabel(self, item, port)
                lab.setVisible(v is not None)
                lab.set_summaries(node.name, v, g, session.level(g))
        self._pulse_for(session)
        sc.update_legend()

    def clear(self):
        """Back to the plain editor look (the items are kept, hidden, for the next show)."""
        self.shown = False
        self._anim.stop()
        self._on_finished()
        for lab in self._wires.values():
            lab.setVisible(False)
            lab.edge_item.set_pill_hidden(False)
        for item in list(self._marks.values()) + list(self._outs.values()):
            item.setVisible(False)
        self._last_index = None
        self.scene.update_legend()

    # ---------------------------------------------------------- readers
    def wire_label(self, edge) -> WireLabel | None:
        """The label item of ``edge`` (tests and the tensor view read its texts)."""
        lab = self._wires.get(edge)
        return lab if lab is not None and lab.isVisible() else None

    def output_label(self, node_id: str, port: str = "out") -> OutputLabel | None:
        lab = self._outs.get((node_id, port))
        return lab if lab is not None and lab.isVisible() else None

    def node_state(self, node_id: str) -> str | None:
        mark = self._marks.get(node_id)
        return mark.state if mark is not None and mark.isVisible() else None

    def visible_items(self) -> list:
        """The output labels shown (they reach beyond the cards)."""
        return [lab for lab in self._outs.values() if lab.isVisible()]

    def wire_moved(self, edge_item):
        """A wire was re-routed: its labels follow."""
        lab = self._wires.get(edge_item.edge)
        if lab is not None and lab.edge_item is edge_item:
            lab.relayout()

    # -------------------------------------------------------- animation
    def _pulse_for(self, session):
        cur = session.current
        index = session.current_index
        forward_one = (index is not None and self._last_index is not None
                       and index == self._last_index + 1) or (index == 0)
        self._last_index = index
        self._anim.stop()
        self._on_finished()
        if not (self.animation_enabled and cur is not None and cur.phase == "backward"
                and forward_one):
            return
        self._pulsing = [lab for e, lab in self._wires.items()
                         if e.dst == cur.node_id and lab.state == "gradient"]
        if self._pulsing:
            self.frame_times = []
            self._anim.start()

    def _on_frame(self, t):
        t0 = time.perf_counter()
        for lab in self._pulsing:
            lab.pulse = float(t)
            lab.update()
        self.frame_times.append(time.perf_counter() - t0)

    def _on_finished(self):
        for lab in self._pulsing:
            lab.pulse = None
            lab.update()
        self._pulsing = []

    # ------------------------------------------------------------ legend
    def draw_legend(self, painter):
        """The magnitude legend in the bottom-left corner of the painted device."""
        if not self.shown or self.scale is None:
            return
        t = self.scene.theme
        dev = painter.device()
        dpr = dev.devicePixelRatioF() if hasattr(dev, "devicePixelRatioF") else 1.0
        h_dev = dev.height() / dpr
        fonts = self.scene.fonts
        fm = QFontMetricsF(fonts["small"])
        w, h = 290.0, 90.0
        box = QRectF(12, h_dev - h - 12, w, h)
        painter.save()
        painter.resetTransform()
        painter.setRenderHint(QPainter.Antialiasing)
        bg = t.color("node_body")
        bg.setAlpha(235)
        painter.setPen(QPen(t.color("node_border"), 1))
        painter.setBrush(bg)
        painter.drawRoundedRect(box, 6, 6)
        painter.setFont(fonts["small"])
        painter.setPen(t.color("text"))
        painter.drawText(QRectF(box.left() + 10, box.top() + 4, w - 20, 16),
                         Qt.AlignLeft | Qt.AlignVCenter, "gradient magnitude (RMS, log scale)")
        bar = QRectF(box.left() + 18, box.top() + 24, w - 90, 10)
        grad = QLinearGradient(bar.topLeft(), bar.topRight())
        for i in range(11):
            grad.setColorAt(i / 10, ramp(t, i / 10))
        painter.setPen(Qt.NoPen)
        painter.setBrush(grad)
        painter.drawRoundedRect(bar, 3, 3)
        ticks = self.scale.ticks()
        every = max(1, math.ceil(len(ticks) / 5))
        painter.setPen(t.color("muted"))
        for i, (mag, lvl) in enumerate(ticks):
            x = bar.left() + lvl * bar.width()
            painter.drawLine(QPointF(x, bar.bottom()), QPointF(x, bar.bottom() + 3))
            if i % every == 0 or i == len(ticks) - 1:
                text = f"1e{round(math.log10(mag))}"
                tw = fm.horizontalAdvance(text)
                painter.drawText(QPointF(x - tw / 2, bar.bottom() + 4 + fm.ascent()), text)
        nan = QRectF(bar.right() + 12, bar.top() - 1, 44, 12)
        painter.setPen(QPen(t.color("error"), 2.4, Qt.DashLine))
        painter.drawLine(QPointF(nan.left(), nan.center().y()),
                         QPointF(nan.left() + 16, nan.center().y()))
        painter.setPen(t.color("error"))
        painter.drawText(QPointF(nan.left() + 20, nan.center().y() + fm.ascent() / 2 - 1), "NaN")
        x, y = box.left() + 10, box.bottom() - 24
        for text, color in (("value (above the wire)", t.color("value")),
                            ("gradient (below)", t.color("gradient"))):
            painter.setPen(color)
            painter.drawText(QPointF(x, y), text)
            x += fm.horizontalAdvance(text) + 12
        painter.setPen(t.color("muted"))
        painter.drawText(QPointF(box.left() + 10, box.bottom() - 9),
                         "faint: vanishing · thick, glowing: exploding")
        painter.restore()

