"""The tensor view: the whole tensor of a wire, port or weight, as pictures and statistics.

Feature maps are an image grid, kernels a filter grid (one row per output channel),
matrices a heat map and vectors bars; a histogram and min/max/mean/std/norm go
below. Values use a sequential colour map, gradients a diverging one centred on
zero (the sign matters). It reads :meth:`core.stepping.StepSession.tensor` and owns
no numbers; the picture is built once per array and only rescaled on resize.
"""

from __future__ import annotations

import dataclasses
import weakref

import numpy as np
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QButtonGroup,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QToolButton,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from core.errors import GraphError
from core.stepping import histogram, summarize
from core.stepping.summary import format_number
from widgets.plots import pyqtgraph
from widgets.theme import DARK, LIGHT, Theme

# more elements than this per example: the core's thumbnail (64 tiles, 32 px) is drawn
FULL_LIMIT = 250_000


def default_theme() -> Theme:
    """The theme matching the application's palette (dark window: the dark theme)."""
    app = QApplication.instance()
    dark = app is not None and app.palette().window().color().lightnessF() < 0.5
    return DARK if dark else LIGHT


def gradient_colour(theme: Theme) -> str:
    """The colour gradients are drawn in, as on the canvas (values use the accent)."""
    return theme.gradient


def colour_map(theme: Theme, diverging: bool) -> np.ndarray:
    """The theme's heat map: diverging (centred on zero) for gradients, else sequential."""
    return theme.heat_table(diverging)


def indexed_image(data, lo, hi, table, background) -> QImage:
    """``data`` as an 8-bit indexed image: index 0 is ``background`` (NaN), 1..255 the map."""
    a = np.asarray(data, np.float64)
    span = hi - lo
    with np.errstate(invalid="ignore"):
        t = (a - lo) / span if span > 0 else np.full(a.shape, 0.5)
        idx = 1 + np.clip(np.nan_to_num(t, nan=0.0) * 254, 0, 254).round()
    idx = np.where(np.isfinite(a), idx, 0).astype(np.uint8)
    h, w = idx.shape
    buf = np.ascontiguousarray(idx)
    img = QImage(buf.data, w, h, w, QImage.Format_Indexed8)
    bg = QColor(background)
    img.setColorTable([bg.rgb()] + [QColor(int(r), int(g), int(b)).rgb() for r, g, b in table])
    return img.copy()  # owns its pixels once ``buf`` is gone


class TensorPicture(QWidget):
    """The grid, filter grid or heat map of a :class:`~core.stepping.Thumbnail`, pixelated.

    Hovering a pixel shows its tile and value in a tooltip.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMouseTracking(True)
        self.setMinimumSize(160, 120)
        self.thumb = None
        self.image: QImage | None = None
        self._pixmap: QPixmap | None = None  # the image scaled to the widget, reused
        self.border = QColor("#888888")
        self.kernel = False

    def set_picture(self, thumb, image: QImage | None, border: str, kernel: bool = False):
        self.thumb, self.image, self.kernel = thumb, image, kernel
        self.border = QColor(border)
        self._pixmap = None
        self.update()

    def _target(self) -> QRectF:
        """Where the image goes: as large as fits, whole pixels per data pixel when possible."""
        h, w = self.image.height(), self.image.width()
        s = min(self.width() / w, self.height() / h)
        if s >= 2:
            s = float(int(s))
        dw, dh = w * s, h * s
        return QRectF((self.width() - dw) / 2, (self.height() - dh) / 2, dw, dh)

    def tile_shape(self):
        t = self.thumb
        rows, cols = t.tiles
        h, w = t.data.shape
        return (h + 1) // rows - 1, (w + 1) // cols - 1

    def paintEvent(self, _event):  # noqa: N802 - Qt override
        if self.image is None:
            return
        r = self._target()
        if self._pixmap is None or self._pixmap.size() != r.size().toSize():
            self._pixmap = QPixmap.fromImage(self.image.scaled(
                r.size().toSize(), Qt.IgnoreAspectRatio, Qt.FastTransformation))
        p = QPainter(self)
        p.drawPixmap(r.topLeft(), self._pixmap)
        t = self.thumb
        if t is not None and t.kind == "grid":
            # a frame per tile, so a map of zeros is still seen as a map
            th, tw = self.tile_shape()
            s = r.width() / self.image.width()
            p.setPen(QPen(self.border, 1))
            rows, cols = t.tiles
            for i in range(t.shown):
                row, col = divmod(i, cols)
                p.drawRect(QRectF(r.left() + col * (tw + 1) * s - 0.5,
                                  r.top() + row * (th + 1) * s - 0.5, tw * s, th * s))
        else:
            p.setPen(QPen(self.border, 1))
            p.drawRect(r.adjusted(-0.5, -0.5, 0, 0))
        p.end()

    def value_at(self, pos):
        """``(text, value)`` under the widget point ``pos``, or ``None`` off the picture."""
        if self.image is None or self.thumb is None:
            return None
        r = self._target()
        if not r.contains(pos):
            return None
        s = r.width() / self.image.width()
        x, y = int((pos.x() - r.left()) / s), int((pos.y() - r.top()) / s)
        data = self.thumb.data
        if not (0 <= y < data.shape[0] and 0 <= x < data.shape[1]):
            return None
        v = float(data[y, x])
        if not np.isfinite(v) and self.thumb.kind == "grid":
            return None
        if self.thumb.kind == "grid":
            th, tw = self.tile_shape()
            row, col = y // (th + 1), x // (tw + 1)
            i = row * self.thumb.tiles[1] + col
            where = (f"filter {row}, channel {col}" if self.kernel else f"map {i}")
            return f"{where} · ({y % (th + 1)}, {x % (tw + 1)}): {v:.7g}", v
        return f"({y}, {x}): {v:.7g}", v

    def mouseMoveEvent(self, event):  # noqa: N802 - Qt override
        hit = self.value_at(event.position())
        if hit is None:
            QToolTip.hideText()
        else:
            QToolTip.showText(event.globalPosition().toPoint(), hit[0], self)
        super().mouseMoveEvent(event)


class ColourBar(QWidget):
    """The colour map's range under the picture: lo ▬▬▬ hi (0 marked on a diverging map)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setFixedHeight(30)
        self.table = None
        self.lo = self.hi = 0.0
        self.ink = QColor("#000000")

    def set_range(self, table, lo, hi, ink):
        self.table, self.lo, self.hi, self.ink = table, lo, hi, QColor(ink)
        self.update()

    def paintEvent(self, _event):  # noqa: N802 - Qt override
        if self.table is None:
            return
        p = QPainter(self)
        w = max(40, self.width() - 140)
        x0 = (self.width() - w) / 2
        strip = np.ascontiguousarray(np.repeat(self.table[None], 2, axis=0))
        img = QImage(strip.data, strip.shape[1], 2, strip.shape[1] * 3, QImage.Format_RGB888)
        p.drawImage(QRectF(x0, 4, w, 9), img)
        p.setPen(self.ink)
        p.drawText(QRectF(0, 0, x0 - 6, 17), Qt.AlignRight | Qt.AlignVCenter,
                   format_number(self.lo))
        p.drawText(QRectF(x0 + w + 6, 0, 70, 17), Qt.AlignLeft | Qt.AlignVCenter,
                   format_number(self.hi))
        if self.lo < 0 < self.hi:
            zx = x0 + w * (-self.lo) / (self.hi - self.lo)
            p.drawLine(int(zx), 13, int(zx), 17)
            p.drawText(QRectF(zx - 20, 16, 40, 14), Qt.AlignCenter, "0")
        p.end()


class TensorView(QWidget):
    """The whole tensor of a port (value or gradient) or of a layer weight.

    Use :meth:`set_session`, then :meth:`show_tensor`; :meth:`refresh` after a step.
    """

    shown = Signal()  # a new picture is drawn (tests and the benchmark wait for it)

    def __init__(self, theme: Theme | None = None, parent=None):
        super().__init__(parent)
        self.theme = theme or default_theme()
        self.session = None
        self.target = None  # (node id, port, weight)
        self.grad = False
        self.view = None  # the core TensorView drawn
        self._cache: dict = {}  # (target, grad, example) -> (weakref to array, view, image)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.setSpacing(6)
        head = QHBoxLayout()
        self.title = QLabel()
        self.title.setObjectName("tensorTitle")
        self.title.setTextInteractionFlags(Qt.TextSelectableByMouse)
        head.addWidget(self.title, 1)
        self.example_label = QLabel("example")
        self.example_spin = QSpinBox()
        self.example_spin.setToolTip("Which example of the batch is shown")
        self.example_spin.valueChanged.connect(lambda _v: self.refresh())
        head.addWidget(self.example_label)
        head.addWidget(self.example_spin)
        self.value_button = QToolButton()
        self.value_button.setText("Value")
        self.grad_button = QToolButton()
        self.grad_button.setText("Gradient")
        self.grad_button.setToolTip("∂L/∂ this tensor (diverging colours: the sign matters)")
        group = QButtonGroup(self)
        for b in (self.value_button, self.grad_button):
            b.setCheckable(True)
            group.addButton(b)
            head.addWidget(b)
        self.value_button.setChecked(True)
        self.value_button.toggled.connect(self._toggled)
        lay.addLayout(head)

        self.shape_label = QLabel()
        self.shape_label.setObjectName("tensorMuted")
        lay.addWidget(self.shape_label)
        self.hint = QLabel("Click a wire or a port to see its tensor")
        self.hint.setObjectName("tensorHint")
        self.hint.setAlignment(Qt.AlignCenter)
        self.hint.setWordWrap(True)
        lay.addWidget(self.hint, 1)
        self.scalar_label = QLabel()
        self.scalar_label.setObjectName("tensorScalar")
        self.scalar_label.setAlignment(Qt.AlignCenter)
        self.scalar_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.scalar_label, 1)

        self.picture = TensorPicture()
        lay.addWidget(self.picture, 3)
        self.colour_bar = ColourBar()
        lay.addWidget(self.colour_bar)
        # the bar chart and the histogram (pyqtgraph) go in when the first tensor is drawn
        self._layout = lay
        self.bars = self.bar_item = self.hist = self.hist_curve = None

        self.stats = QWidget()
        stats = QGridLayout(self.stats)
        stats.setContentsMargins(0, 0, 0, 0)
        stats.setHorizontalSpacing(14)
        self.stat_labels = {}
        for col, key in enumerate(("min", "max", "mean", "std", "norm")):
            name = QLabel(key)
            name.setObjectName("tensorMuted")
            value = QLabel()
            value.setTextInteractionFlags(Qt.TextSelectableByMouse)
            stats.addWidget(name, 0, col)
            stats.addWidget(value, 1, col)
            self.stat_labels[key] = value
        self.nonfinite_label = QLabel()
        self.nonfinite_label.setObjectName("tensorError")
        stats.addWidget(self.nonfinite_label, 0, 5, 2, 1)
        stats.setColumnStretch(5, 1)
        lay.addWidget(self.stats)
        self.note = QLabel()
        self.note.setObjectName("tensorMuted")
        self.note.setWordWrap(True)
        lay.addWidget(self.note)
        self.set_theme(self.theme)
        self._show_nothing("Click a wire or a port to see its tensor")

    def _make_plots(self):
        """The bar chart (under the picture) and the histogram (under the colour bar)."""
        if self.bars is not None:
            return
        pg = pyqtgraph()
        lay = self._layout
        self.bars = pg.PlotWidget()
        self.bars.setMenuEnabled(False)
        self.bars.setMinimumHeight(120)
        self.bars.showGrid(y=True, alpha=0.25)
        self.bar_item = pg.BarGraphItem(x=[], height=[], width=0.8)
        self.bars.addItem(self.bar_item)
        lay.insertWidget(lay.indexOf(self.picture) + 1, self.bars, 3)
        self.hist = pg.PlotWidget()
        self.hist.setMenuEnabled(False)
        self.hist.setFixedHeight(110)
        self.hist.setMouseEnabled(x=False, y=False)
        self.hist_curve = self.hist.plot([0, 1], [0], stepMode="center", fillLevel=0)
        for ax in ("left", "bottom"):
            self.hist.getPlotItem().getAxis(ax).enableAutoSIPrefix(False)
        lay.insertWidget(lay.indexOf(self.colour_bar) + 1, self.hist)
        self._theme_plots()

    # -------------------------------------------------------------- API
    def set_session(self, session):
        """Read ``session`` (``None``: nothing shown)."""
        self.session = session
        self._cache.clear()
        if session is None:
            self.target = None
        self.refresh()

    def show_tensor(self, node_id: str, port: int = 0, grad: bool = False,
                    weight: str | None = None):
        """Show output ``port`` of ``node_id`` (or its layer ``weight``), value or ``grad``."""
        self.target = (node_id, port, weight)
        self.grad = bool(grad)
        for b, on in ((self.grad_button, self.grad), (self.value_button, not self.grad)):
            b.blockSignals(True)
            b.setChecked(on)
            b.blockSignals(False)
        self.refresh()

    @property
    def example(self) -> int:
        """The batch example shown (0 when the tensor has no batch axis)."""
        return self.view.thumbnail.example if self.view is not None else 0

    def refresh(self):
        """Draw the target again from the session (after a step)."""
        s = self.session
        if s is None or self.target is None:
            self._show_nothing("Click a wire or a port to see its tensor")
            return
        node_id, port, weight = self.target
        try:
            node = s.graph.node(node_id)
        except GraphError:  # removed since it was clicked
            self._show_nothing("That node is no longer in the graph")
            return
        what = f"weight '{weight}'" if weight else (
            f"output {port}" if len(node.output_ports) > 1 else "output")
        kind = "gradient" if self.grad else "value"
        self.title.setText(f"{node.name} · {what} · {kind}")
        arr = self._array(node, port, weight)
        batch = s.batch if weight is None and s.is_batched(arr) else None
        self.example_label.setVisible(bool(batch and batch > 1))
        self.example_spin.setVisible(bool(batch and batch > 1))
        if batch:
            self.example_spin.blockSignals(True)
            self.example_spin.setRange(0, batch - 1)
            self.example_spin.setSuffix(f" of {batch}")
            self.example_spin.blockSignals(False)
        if arr is None:
            step = "backward" if self.grad else "forward"
            self._show_nothing(f"'{node.name}' has no {kind} yet: step {step} past it")
            return
        example = self.example_spin.value() if batch else 0
        key = (self.target, self.grad, example)
        hit = self._cache.get(key)
        if hit is not None and hit[0]() is arr:
            view, image = hit[1], hit[2]
        else:
            per_example = arr.size // (batch or 1)
            view = s.tensor(node.id, port, grad=self.grad, weight=weight,
                            example=example if batch else 0, full=per_example <= FULL_LIMIT)
            if batch:
                # the statistics of the example drawn, so the numbers match the picture
                counts, edges = histogram(arr[example])
                view = dataclasses.replace(view, summary=summarize(arr[example]),
                                           counts=counts, edges=edges)
            image = None
            if view.thumbnail.kind in ("grid", "heatmap"):
                image = indexed_image(view.thumbnail.data, *self._range(view.thumbnail),
                                      self._table(), self.theme.panel)
            try:
                self._cache[key] = (weakref.ref(arr), view, image)
            except TypeError:  # NumPy scalars cannot be weakly referenced
                pass
        self._draw(view, image, kernel=weight is not None and np.ndim(arr) == 4)

    # ---------------------------------------------------------- drawing
    def _array(self, node, port, weight):
        s = self.session
        if weight is not None:
            return s.weight_grad(node, weight) if self.grad else node.weights.get(weight)
        return s.grad(node, port) if self.grad else s.value(node, port)

    def _table(self):
        return colour_map(self.theme, self.grad)

    def _range(self, thumb):
        if self.grad:
            m = max(abs(thumb.lo), abs(thumb.hi))
            return (-m, m) if m > 0 else (-1.0, 1.0)
        return thumb.lo, thumb.hi

    def _show_nothing(self, text):
        self.view = None
        if self.target is None:
            self.title.setText("Tensor")
            self.example_label.hide()
            self.example_spin.hide()
        self.hint.setText(text)
        self.hint.show()
        for w in (self.shape_label, self.scalar_label, self.picture, self.bars, self.colour_bar,
                  self.hist, self.stats, self.note):
            if w is not None:  # the plots, before the first tensor
                w.hide()
        for v in self.stat_labels.values():
            v.setText("—")
            v.setToolTip("")

    def _draw(self, view, image, kernel):
        self._make_plots()
        self.view = view
        t, summ = view.thumbnail, view.summary
        self.hint.hide()
        count = "1 number" if summ.size == 1 else f"{summ.size:,} numbers"
        shape = summ.shape if t.examples == 1 else (t.examples,) + summ.shape
        self.shape_label.setText(f"shape {shape} · {summ.dtype} · {count}"
                                 + (" per example" if t.examples > 1 else ""))
        self.shape_label.show()
        ink = gradient_colour(self.theme) if self.grad else self.theme.accent
        self.scalar_label.setVisible(t.kind == "none")
        self.picture.setVisible(t.kind in ("grid", "heatmap"))
        self.bars.setVisible(t.kind == "bars")
        self.colour_bar.setVisible(t.kind in ("grid", "heatmap"))
        self.hist.setVisible(t.kind != "none")
        self.stats.setVisible(t.kind != "none")  # a number is its own statistics
        if t.kind == "none":
            self.scalar_label.setTextFormat(Qt.RichText)
            self.scalar_label.setText(
                f"<div style='color:{ink}; font-size:28px; font-weight:600'>{summ.text}</div>"
                f"<div style='color:{self.theme.muted}'>{summ.full_text}</div>")
            self.scalar_label.setToolTip(summ.full_text)
        elif t.kind == "bars":
            y = np.nan_to_num(t.data.astype(np.float64))
            pg = pyqtgraph()
            brushes = [pg.mkBrush(ink if v >= 0 or not self.grad else self.theme.accent)
                       for v in y]
            self.bar_item.setOpts(x=np.arange(y.size), height=y, width=0.8, brushes=brushes,
                                  pen=pg.mkPen(None))
            self.bars.getPlotItem().getAxis("bottom").setTicks(
                [[(i, str(i)) for i in range(y.size)]] if y.size <= 20 else None)
            self.bars.setXRange(-0.6, y.size - 0.4, padding=0)
            lo, hi = min(0.0, float(y.min(initial=0))), max(0.0, float(y.max(initial=0)))
            self.bars.setYRange(lo, hi if hi > lo else lo + 1, padding=0.08)
        else:
            self.picture.set_picture(t, image, self.theme.node_border, kernel)
            lo, hi = self._range(t)
            self.colour_bar.set_range(self._table(), lo, hi, self.theme.text)
        counts, edges = view.counts, view.edges
        pg = pyqtgraph()
        self.hist_curve.setData(edges, counts, stepMode="center", fillLevel=0,
                                brush=pg.mkBrush(QColor(ink).lighter(100).name() + "aa"),
                                pen=pg.mkPen(ink, width=1))
        self.hist.setXRange(float(edges[0]), float(edges[-1]), padding=0.02)
        self.hist.setYRange(0, max(1, int(counts.max(initial=0))), padding=0.05)
        for key in self.stat_labels:
            v = getattr(summ, key)
            self.stat_labels[key].setText(format_number(v))
            self.stat_labels[key].setToolTip(repr(float(v)))
        bad = []
        if summ.n_nan:
            bad.append(f"{summ.n_nan} NaN")
        if summ.n_inf:
            bad.append(f"{summ.n_inf} Inf")
        self.nonfinite_label.setText(", ".join(bad))
        self.nonfinite_label.setVisible(bool(bad))
        notes = []
        if t.kind == "grid":
            what = "filters × channels" if kernel else ("map" if t.total == 1 else "maps")
            notes.append(f"{t.shown} of {t.total} {what}" if t.shown < t.total
                         else f"{t.total} {what}" + (f" ({t.tiles[0]} × {t.tiles[1]})"
                                                     if kernel else ""))
        elif t.kind == "bars" and t.shown < t.total:
            notes.append(f"{t.total} values in {t.shown} bars (means)")
        if t.examples > 1:
            notes.append(f"example {t.example} of a batch of {t.examples} (its statistics)")
        self.note.setText(" · ".join(notes))
        self.note.setVisible(bool(notes))
        self.shown.emit()

    def _toggled(self, value_on):
        self.grad = not value_on
        if self.target is not None:
            self.refresh()

    # ------------------------------------------------------------ theme
    def set_theme(self, theme: Theme):
        self.theme = t = theme
        self.setStyleSheet(f"""
QLabel#tensorTitle {{ font-size: 14px; font-weight: 600; color: {t.text}; }}
QLabel#tensorMuted {{ color: {t.muted}; }}
QLabel#tensorHint {{ color: {t.muted}; font-style: italic; }}
QLabel#tensorError {{ color: {t.error}; font-weight: 600; }}
QToolButton {{ border: 1px solid {t.node_border}; border-radius: 4px; padding: 3px 8px;
    color: {t.text}; background: {t.base}; }}
QToolButton:checked {{ background: {t.accent}; color: white; border-color: {t.accent}; }}
""")
        self._theme_plots()
        self._cache.clear()  # the colour tables changed
        if self.target is not None:
            self.refresh()

    def _theme_plots(self):
        if self.bars is None:
            return
        pg, t = pyqtgraph(), self.theme
        for p in (self.bars, self.hist):
            p.setBackground(t.base)
            for name in ("left", "bottom"):
                ax = p.getPlotItem().getAxis(name)
                ax.setPen(pg.mkPen(t.muted))
                ax.setTextPen(pg.mkPen(t.text))
