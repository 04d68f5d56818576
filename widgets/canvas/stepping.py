"""The stepping overlay: values above the wires, gradients below, node states, a flow pulse.

The overlay only draws what a :class:`core.stepping.StepSession` reports; the
controller owns the session and calls :meth:`SteppingOverlay.show` after each
step. Its items are made once per wire and card and updated in place, so a
step repaints only what changed. A tensor's label starts with a small picture of
it (:class:`WirePicture`: a heat map of a feature map or matrix, bars for a
vector), computed once per array and drawn from a cached image.
"""

from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import (
    QEasingCurve,
    QLineF,
    QObject,
    QPointF,
    QRectF,
    QSizeF,
    Qt,
    QVariantAnimation,
)
from PySide6.QtGui import (
    QColor,
    QFontMetricsF,
    QImage,
    QLinearGradient,
    QPainter,
    QPainterPath,
    QPen,
)
from PySide6.QtWidgets import QGraphicsItem

from core.stepping.summary import format_number, thumbnail
from widgets.canvas.items import PORT_R
from widgets.canvas.overlays import OVERLAY_Z
from widgets.theme import Theme

PULSE_MS = 350
LABEL_LOD = 0.55  # below this zoom the numbers are unreadable: colours only
GAP = 3.0  # between the wire and its labels
TEXT_LEVEL = 0.6  # gradient texts start at the ramp's plain gradient colour (see ramp)
PIC_H = 24.0  # a wire picture's height in scene units (stacked on its label's text)
PIC_MAX_W = 40.0  # ... and its widest (a wide matrix or a long vector is squeezed)
PIC_SIDE = 28  # a heat map has at most this many pixels a side (block means beyond)
PIC_BARS = 24  # a vector is drawn as at most this many bars


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


def text_ramp(theme: Theme, level: float | None) -> QColor:
    """A gradient label's text colour: the ramp, but never fainter than the plain gradient
    colour (the faint end is for wires; faint text could not be read)."""
    return ramp(theme, None if level is None else max(float(level), TEXT_LEVEL))


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


def _fit_picture(fm, room, texts, picture_width) -> tuple:
    """``(text, picture shown)``: the longest text that fits, and whether the picture
    (stacked on the text, away from the wire) does."""
    return _fit(fm, room, texts), bool(picture_width) and picture_width + 10 <= room


def _tip(value, grad, pictures=None) -> str:
    lines = []
    pictures = pictures or {}
    for name, s, word in (("value", value, "value"), ("grad", grad, "gradient")):
        if s is None:
            continue
        lines.append(f"{word}: {s.full_text}")
        pic = pictures.get(name)
        if pic is not None:
            what = "heat map" if pic.kind == "map" else "bars"
            lines.append(f"  picture: {what}" + (f" of {pic.note}" if pic.note else "")
                         + f", {format_number(pic.lo)} … {format_number(pic.hi)}")
    return "\n".join(lines)


@dataclass(frozen=True, eq=False)  # compared by identity: one picture per array
class WirePicture:
    """The small picture at the start of a tensor's label, as numbers.

    Attributes
    ----------
    kind : str
        ``"map"`` (a heat map: ``data`` is 2-D) or ``"bars"`` (a vector: 1-D).
    data : numpy.ndarray
        float32, at most :data:`PIC_SIDE` a side or :data:`PIC_BARS` long.
    lo, hi : float
        The colour map's range (symmetric about zero for a gradient).
    signed : bool
        A gradient: diverging colours centred on zero.
    note : str
        What the picture shows, for the tooltip ("example 0, mean over 6 channels").
    """

    kind: str
    data: np.ndarray = field(repr=False)
    lo: float
    hi: float
    signed: bool
    note: str

    def size(self) -> QSizeF:
        """Its size in scene units inside a pill."""
        if self.kind == "bars":
            return QSizeF(min(PIC_MAX_W, 4.0 + 2.5 * len(self.data)), PIC_H)
        h, w = self.data.shape
        return QSizeF(min(PIC_MAX_W, max(PIC_H / 2, PIC_H * w / h)), PIC_H)


def wire_picture(arr, batched: bool, signed: bool) -> WirePicture | None:
    """The picture of ``arr`` on a wire, or ``None`` (a number, or nothing to draw).

    Shape:
        A batch shows its first example. ``(C, H, W)``: the mean over the C
        channels as a heat map; ``(H, W)``: a heat map; ``(N,)`` or ``(1, N)``: bars.
    """
    a = np.asarray(arr)
    if a.size <= 1 or a.dtype.kind not in "fiub":
        return None
    notes = []
    if batched and a.ndim >= 2:
        if a.shape[0] > 1:
            notes.append(f"example 0 of {a.shape[0]}")
        a = a[0]
    if a.ndim > 2:
        if int(np.prod(a.shape[:-2])) > 1:
            notes.append(f"mean over the {int(np.prod(a.shape[:-2]))} channels")
        a = a.reshape(-1, *a.shape[-2:]).mean(axis=0, dtype=np.float64)
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.size <= 1:
        return None
    thumb = thumbnail(a, max_side=PIC_SIDE, max_bars=PIC_BARS)
    kind = "bars" if thumb.kind == "bars" else "map"
    lo, hi = thumb.lo, thumb.hi
    if signed and kind == "map":
        top = max(abs(lo), abs(hi))
        lo, hi = -top, top
    return WirePicture(kind, thumb.data, lo, hi, signed, ", ".join(notes))


def heat_image(pic: WirePicture, theme: Theme) -> QImage:
    """A heat map's pixels in the theme's colour map (NaN in the canvas colour)."""
    table = theme.heat_table(pic.signed)
    a = np.asarray(pic.data, np.float64)
    span = pic.hi - pic.lo
    ok = np.isfinite(a)
    with np.errstate(invalid="ignore"):
        t = np.where(ok, (a - pic.lo) / span, 0.5) if span > 0 else np.full(a.shape, 0.5)
    rgb = table[np.clip(np.round(t * (len(table) - 1)), 0, len(table) - 1).astype(np.intp)]
    canvas = theme.color("canvas")
    rgb[~ok] = (canvas.red(), canvas.green(), canvas.blue())
    h, w = a.shape
    buf = np.empty((h, w, 4), np.uint8)
    buf[..., 0], buf[..., 1], buf[..., 2], buf[..., 3] = rgb[..., 2], rgb[..., 1], rgb[..., 0], 255
    img = QImage(buf.data, w, h, 4 * w, QImage.Format_RGB32)
    return img.copy()  # owns its pixels once ``buf`` is gone


def bars_path(pic: WirePicture, rect: QRectF) -> tuple:
    """``(positive, negative, baseline y)``: a vector's bars in ``rect``.

    The baseline is the bottom when no value is negative, the top when none is
    positive, else the middle.
    """
    pos, neg = QPainterPath(), QPainterPath()
    data = np.asarray(pic.data, np.float64)
    top = max(abs(pic.lo), abs(pic.hi))
    if pic.lo >= 0:
        base, room = rect.bottom() - 1, rect.height() - 2
    elif pic.hi <= 0:
        base, room = rect.top() + 1, rect.height() - 2
    else:
        base, room = rect.center().y(), rect.height() / 2 - 1
    w = rect.width() / len(data)
    for i, v in enumerate(data):
        if not math.isfinite(v) or top <= 0:
            continue
        h = max(0.6, abs(v) / top * room)
        x = rect.left() + i * w + w * 0.12
        if v >= 0:
            pos.addRect(QRectF(x, base - h, w * 0.76, h))
        else:
            neg.addRect(QRectF(x, base, w * 0.76, h))
    return pos, neg, base


class _Labels:
    """Value and gradient pills around a point (shared by wires and loose outputs).

    A pill may start with a :class:`WirePicture`; its image (or bars) is made
    once per picture and theme, and a repaint only draws it.
    """

    def __init__(self, fonts):
        self.fonts = fonts
        self.value_text = ""
        self.grad_text = ""
        self.value_rect = QRectF()
        self.grad_rect = QRectF()
        self.pictures = {"value": None, "grad": None}  # WirePicture or None
        self.shown = {"value": False, "grad": False}  # the picture fits and is drawn
        self.bad = False  # NaN or Inf: drawn in the error colour
        self._drawn = {}  # name -> (picture, theme name, box, QImage or bar paths)

    def picture_width(self, name) -> float:
        pic = self.pictures[name]
        return 0.0 if pic is None else pic.size().width()

    def _text_height(self) -> float:
        return QFontMetricsF(self.fonts["body"]).height() + 2

    def place(self, at: QPointF, anchor_left: bool):
        """Pills at ``at``: the value's above, the gradient's below; a picture sits on the
        far side of its text (above the value, below the gradient)."""
        fm = QFontMetricsF(self.fonts["body"])
        th = self._text_height()
        self.value_rect = self.grad_rect = QRectF()
        for name in ("value", "grad"):
            text = getattr(self, name + "_text")
            if not text:
                continue
            pic = self.shown[name] and self.pictures[name] is not None
            h = th + (PIC_H + 3 if pic else 0)
            w = max(fm.horizontalAdvance(text), self.picture_width(name) if pic else 0) + 10
            x = at.x() if anchor_left else at.x() - w / 2
            y = at.y() - GAP - h if name == "value" else at.y() + GAP
            setattr(self, name + "_rect", QRectF(x, y, w, h))

    def rect(self) -> QRectF:
        return self.value_rect.united(self.grad_rect)

    def text_rect(self, name) -> QRectF:
        """The part of ``name``'s pill that holds its text (beside the wire)."""
        r = getattr(self, name + "_rect")
        if self.picture_rect(name).isNull():
            return r
        th = self._text_height()
        return (QRectF(r.left(), r.bottom() - th, r.width(), th) if name == "value"
                else QRectF(r.left(), r.top(), r.width(), th))

    def picture_rect(self, name) -> QRectF:
        """Where ``name``'s picture is drawn (empty when it has none or it is not shown)."""
        pic = self.pictures[name]
        r = getattr(self, name + "_rect")
        if pic is None or not self.shown[name] or r.isNull():
            return QRectF()
        size = pic.size()
        y = r.top() + 2 if name == "value" else r.bottom() - 2 - size.height()
        return QRectF(r.center().x() - size.width() / 2, y, size.width(), size.height())

    def _drawing(self, name, theme: Theme, box: QRectF):
        pic = self.pictures[name]
        hit = self._drawn.get(name)
        if (hit is not None and hit[0] is pic and hit[1] == theme.name
                and (pic.kind == "map" or hit[2] == box)):  # an image is scaled to its box
            return hit[3]
        drawing = heat_image(pic, theme) if pic.kind == "map" else bars_path(pic, box)
        self._drawn[name] = (pic, theme.name, QRectF(box), drawing)
        return drawing

    def _paint_picture(self, painter, name, theme: Theme, color: QColor):
        box = self.picture_rect(name)
        if box.isNull():
            return
        drawing = self._drawing(name, theme, box)
        if isinstance(drawing, QImage):
            # pixelated: each block of the map stays one flat colour at any zoom
            smooth = painter.testRenderHint(QPainter.SmoothPixmapTransform)
            painter.setRenderHint(QPainter.SmoothPixmapTransform, False)
            painter.drawImage(box, drawing)
            painter.setRenderHint(QPainter.SmoothPixmapTransform, smooth)
        else:
            pos, neg, base = drawing
            painter.setPen(QPen(theme.color("muted"), 0.6))
            painter.drawLine(QPointF(box.left(), base), QPointF(box.right(), base))
            painter.setPen(Qt.NoPen)
            painter.setBrush(color)
            painter.drawPath(pos)
            faded = QColor(color)
            faded.setAlphaF(0.6)
            painter.setBrush(faded)
            painter.drawPath(neg)
        painter.setPen(QPen(theme.color("node_border"), 1))
        painter.setBrush(Qt.NoBrush)
        painter.drawRect(box)

    def paint(self, painter, theme: Theme, grad_color: QColor):
        painter.setFont(self.fonts["body"])
        for name, text, r, color in (
                ("value", self.value_text, self.value_rect, theme.color("value")),
                ("grad", self.grad_text, self.grad_rect, grad_color)):
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
            painter.drawText(self.text_rect(name), Qt.AlignCenter, text)
            if self.shown[name] and self.pictures[name] is not None:
                self._paint_picture(painter, name, theme, color)


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
        self._arrays = {"value": None, "grad": None}  # weak references to the pictured arrays
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

    @property
    def pictures(self) -> dict:
        """``{"value": WirePicture or None, "grad": …}`` drawn on this wire now."""
        lab = self.labels
        return {k: p if lab.shown[k] else None for k, p in lab.pictures.items()}

    def set_view(self, wv, session=None) -> bool:
        """Show the session's :class:`WireView` (and, given ``session``, the pictures of its
        tensors); ``False`` when nothing visible changed."""
        v, g = wv.value, wv.grad
        pictures_changed = self._update_pictures(wv, session)
        sig = (wv.state, v, g, wv.level)
        if sig == self._sig and not pictures_changed:
            return False
        self._sig = sig
        self.state, self.level = wv.state, wv.level
        self._texts = ([value_label(v)] + short_labels(v, False),
                       [grad_label(g)] + short_labels(g, True))
        self.labels.bad = (v is not None and not v.finite) or (g is not None and not g.finite)
        self.setToolTip(_tip(v, g, self.labels.pictures))
        self.relayout()
        return True

    def _update_pictures(self, wv, session) -> bool:
        """Make the pictures of arrays not pictured yet (an array is pictured once)."""
        arrays = {"value": None, "grad": None}
        if session is not None and self.overlay.pictures_enabled:
            src = session.graph.nodes[self.edge.src]
            arrays["value"] = session.value(self.edge.src,
                                            src.output_ports.index(self.edge.src_port))
            arrays["grad"] = session.wire_grad(self.edge)
        changed = False
        for name, summary in (("value", wv.value), ("grad", wv.grad)):
            arr = arrays[name] if summary is not None and not summary.scalar else None
            ref = self._arrays[name]
            if arr is not None and ref is not None and ref() is arr:
                continue  # the same array: its picture stands
            pic = None if arr is None else wire_picture(arr, session.is_batched(arr),
                                                        name == "grad")
            try:
                self._arrays[name] = None if arr is None else weakref.ref(arr)
            except TypeError:  # a NumPy scalar: no weak reference (and no picture)
                self._arrays[name] = None
            if pic is not self.labels.pictures[name]:
                self.labels.pictures[name] = pic
                changed = True
        return changed

    def relayout(self):
        """Place the labels at the wire's middle, shortened to the room between its cards
        (the picture goes when even the shortest text does not fit beside it)."""
        self.prepareGeometryChange()
        path = self.edge_item.path
        lab = self.labels
        if self._texts is not None:
            p1, p2 = self.edge_item.endpoints()
            room = max(abs(p2.x() - p1.x()), abs(p2.y() - p1.y())) - 2 * PORT_R - 6
            fm = QFontMetricsF(lab.fonts["body"])
            lab.value_text, lab.shown["value"] = _fit_picture(fm, room, self._texts[0],
                                                              lab.picture_width("value"))
            lab.grad_text, lab.shown["grad"] = _fit_picture(fm, room, self._texts[1],
                                                            lab.picture_width("grad"))
        lab.place(path.pointAtPercent(0.5), anchor_left=False)
        self._rect = path.boundingRect().adjusted(-14, -14, 14, 14).united(self.labels.rect())
        self._shape = None
        self.update()

    def boundingRect(self):
        return self._rect

    def shape(self):
        if self._shape is None:
            p = QPainterPath(self.edge_item.shape())  # the wire's stroke, made once per route
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
        self.labels.paint(painter, t, text_ramp(t, self.level) if not self.labels.bad
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
        self.labels.paint(painter, t, text_ramp(t, self.level))

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
    pictures_enabled : bool
        A tensor's labels start with a small heat map or bars of it.
    frame_times : list of float
        Seconds each animation frame's update took (for the benchmark).
    """

    def __init__(self, scene):
        super().__init__(scene)
        self.scene = scene
        self.shown = False
        self.animation_enabled = True
        self.pictures_enabled = True
        self.scale = None
        self._session = None
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

    def set_pictures(self, enabled: bool):
        """Show or hide the heat maps and bars on the tensor wires."""
        self.pictures_enabled = bool(enabled)
        if self.shown and self._session is not None:
            self.show(self._session)

    @property
    def animating(self) -> bool:
        return self._anim.state() == QVariantAnimation.Running

    def show(self, session):
        """Draw the state after ``session``'s current step."""
        sc = self.scene
        self.shown = True
        self._session = session
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
            lab.set_view(wv, session)
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
        self._session = None
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

