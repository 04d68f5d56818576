"""Live training plots (pyqtgraph): loss, accuracy and learning rate.

Each curve is created once and updated with ``setData``. New points are only
stored when they arrive (appended to arrays that grow by doubling); a timer
redraws at most :data:`REDRAW_MS` apart, and only while the plots are on
screen, because the GUI thread's work competes with the training thread for
the interpreter lock and the cores. A redraw paints once: the y ranges are
set here, in steps, rather than by pyqtgraph's auto-range (which re-ranges
during the paint and so paints twice, and re-ticks the axis at every new
minimum); the axes with their grid lines and the legends are cached as
pixmaps, so a redraw paints the curves and blits the rest. The x axis counts
epochs, so per-batch and per-epoch curves share it.

pyqtgraph is imported when the plots are first needed: after the panel's
first paint (the rest of the window is on screen by then), or when a curve or
plot is asked for.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt, QTimer
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter
from PySide6.QtWidgets import QGraphicsItem, QHBoxLayout, QSizePolicy, QWidget

from core.kernels.compiled import IMPORT_LOCK, importing_now
from widgets.theme import Theme

SYMBOL_LIMIT = 40  # epochs drawn with a marker each
REDRAW_MS = 300  # ≤ 3.3 redraws a second: a growing curve still looks live, and each
# redraw's Python takes the GIL and a core from the training threads
PLOT_MIN_SIZE = (160, 120)
PLOT_HINT = (600, 480)  # the size a pyqtgraph plot asks for: the dock is laid out for it
PLOT_SPACING = 6


@functools.cache
def pyqtgraph():
    """The pyqtgraph module, imported (and configured) at the first call."""
    with IMPORT_LOCK:  # not while another thread imports numba (they share modules)
        import pyqtgraph as pg  # noqa: PLC0415 - a slow import, deferred until a plot is shown

    pg.setConfigOptions(antialias=True)
    return pg


def stepped_range(lo: float, hi: float) -> tuple[float, float]:
    """``[lo, hi]`` widened to multiples of a step of 1/20 to 1/2 of its span.

    The range moves only when a value crosses a step, so the axis is re-ticked
    a few times a run, not at every new minimum.
    """
    span = hi - lo
    if not span > 0:
        span = abs(hi) or 1.0
    step = 10.0 ** math.floor(math.log10(span)) / 2
    low, high = math.floor(lo / step) * step, math.ceil(hi / step) * step
    if low == high:  # a constant value on a step: a step either side, not an empty range
        low, high = low - step, high + step
    return low, high


class _Columns:
    """Rows of floats (one row a series) that grow by doubling: appending costs
    the new points only, and :meth:`view` hands out views, not copies."""

    def __init__(self, rows: int):
        self._data = np.empty((rows, 256))
        self.n = 0

    def extend(self, *series):
        k = len(series[0])
        if self.n + k > self._data.shape[1]:
            # a new array: views handed out earlier (held by the curves) stay valid
            grown = np.empty((self._data.shape[0], max(2 * self._data.shape[1], self.n + k)))
            grown[:, :self.n] = self._data[:, :self.n]
            self._data = grown
        for row, values in enumerate(series):
            self._data[row, self.n:self.n + k] = values
        self.n += k

    def view(self, row: int) -> np.ndarray:
        return self._data[row, :self.n]


def _series_colours(theme: Theme) -> dict:
    """Curve colours taken from the theme, so they read on its background."""
    return {"train": theme.accent, "val": theme.warning, "acc_train": theme.accent,
            "acc_val": theme.ok, "lr": theme.categories.get("layers", theme.accent)}


class _Plots:
    """The pyqtgraph widgets and curves of :class:`TrainingPlots` (made once)."""

    def __init__(self, layout: QHBoxLayout):
        pg = pyqtgraph()
        self.loss_plot = self._plot(pg, "Loss")
        self.acc_plot = self._plot(pg, "Accuracy")
        self.lr_plot = self._plot(pg, "Learning rate")
        for p in (self.loss_plot, self.acc_plot, self.lr_plot):
            layout.addWidget(p, 1)
        self.acc_plot.setYRange(0, 1, padding=0.05)
        # x from epoch 0 to the last one: autorange centres a single point in ±5 epochs
        self.acc_plot.getPlotItem().enableAutoRange(enable=False)
        self.loss_plot.addLegend(offset=(-8, 8))
        self.acc_plot.addLegend(offset=(-8, -8))
        # curves are created once and fed with setData
        self.train_loss = self.loss_plot.plot(name="train (per batch)")
        self.val_loss = self.loss_plot.plot(name="validation", symbol="o", symbolSize=6)
        self.train_acc = self.acc_plot.plot(name="train", symbol="o", symbolSize=5)
        self.val_acc = self.acc_plot.plot(name="validation", symbol="o", symbolSize=6)
        self.lr_curve = self.lr_plot.plot()
        for c in (self.train_loss, self.lr_curve):
            c.setClipToView(True)
            c.setDownsampling(auto=True, method="peak")
            c.setSkipFiniteCheck(True)  # TrainingPlots hands them finite values only
        for plot in (self.loss_plot, self.acc_plot, self.lr_plot):
            item = plot.getPlotItem()
            # the y ranges follow the points in steps set by TrainingPlots
            item.enableAutoRange(y=False)
            # drawn once into a pixmap, redrawn when they change (a new range, a resize):
            # the grid lines span the plot, so every curve update would repaint them
            for name in ("left", "bottom"):
                item.getAxis(name).setCacheMode(QGraphicsItem.DeviceCoordinateCache)
            if item.legend is not None:
                item.legend.setCacheMode(QGraphicsItem.DeviceCoordinateCache)

    @staticmethod
    def _plot(pg, title: str):
        p = pg.PlotWidget()
        p.setTitle(title)
        p.setLabel("bottom", "epoch")
        p.setMenuEnabled(False)
        p.showGrid(x=True, y=True, alpha=0.25)
        p.setMinimumSize(*PLOT_MIN_SIZE)
        for name in ("left", "bottom"):
            # "epoch (x0.001)" mid-run reads badly: plain numbers only
            p.getPlotItem().getAxis(name).enableAutoSIPrefix(False)
        return p


def _part(name: str):
    """A property that makes the plots on first access and returns one of their parts."""
    return property(lambda self: getattr(self.parts(), name),
                    doc=f"The ``{name}`` of the plots (made on first access).")


class TrainingPlots(QWidget):
    """Three plots side by side: loss, accuracy and learning rate.

    The points are kept here; the pyqtgraph curves show them once they exist.
    """

    loss_plot = _part("loss_plot")
    acc_plot = _part("acc_plot")
    lr_plot = _part("lr_plot")
    train_loss = _part("train_loss")
    val_loss = _part("val_loss")
    train_acc = _part("train_acc")
    val_acc = _part("val_acc")
    lr_curve = _part("lr_curve")

    def __init__(self, theme: Theme, parent=None):
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)  # as the plots are
        self._parts: _Plots | None = None
        self._make_soon = False
        self.theme = theme
        self._dirty = False
        self._epochs = None
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(REDRAW_MS)
        self._redraw.timeout.connect(self._redraw_if_shown)
        self.clear()

    # ------------------------------------------------------------ making
    def is_made(self) -> bool:
        """Whether the pyqtgraph plots exist yet."""
        return self._parts is not None

    def parts(self) -> _Plots:
        """The plots and curves, made (and filled with the points so far) at the first call."""
        if self._parts is None:
            layout = QHBoxLayout(self)
            layout.setContentsMargins(0, 0, 0, 0)
            layout.setSpacing(PLOT_SPACING)
            self._parts = _Plots(layout)
            for plot in (self._parts.loss_plot, self._parts.lr_plot):
                # a zoom or pan of the user's is not undone by the next points
                plot.getPlotItem().getViewBox().sigRangeChangedManually.connect(
                    lambda _mask, plot=plot: self._user_ranged.add(plot))
            self._apply_theme()
            self._clear_curves()
            self._show_extent()
            self._dirty = bool(self._batches.n)
            self.flush()
            self._draw_epochs()
        return self._parts

    # the plots' sizes from the start, so the panel does not change when they appear
    def sizeHint(self):  # noqa: N802 - Qt override
        if self._parts is not None:
            return super().sizeHint()
        w, h = PLOT_HINT
        return QSize(3 * w + 2 * PLOT_SPACING, h)

    def minimumSizeHint(self):  # noqa: N802 - Qt override
        if self._parts is not None:
            return super().minimumSizeHint()
        w, h = PLOT_MIN_SIZE
        return QSize(3 * w + 2 * PLOT_SPACING, h)

    def paintEvent(self, event):  # noqa: N802 - Qt override
        # the window's first frame goes out without waiting for pyqtgraph; the plots follow
        if self._parts is None and not self._make_soon:
            self._make_soon = True
            QTimer.singleShot(0, self._make_when_free)
        super().paintEvent(event)

    def _make_when_free(self):
        """Make the plots now, or a little later while another thread imports numba (so the
        window does not wait for that import)."""
        if self._parts is None and importing_now():
            QTimer.singleShot(50, self._make_when_free)
            return
        self.parts()

    def showEvent(self, event):  # noqa: N802 - Qt override
        super().showEvent(event)
        if self._dirty and not self._redraw.isActive():
            self._redraw.start()  # the points that came while the panel was hidden

    # ------------------------------------------------------------- data
    def clear(self):
        """Forget every point (a new run)."""
        self._batches = _Columns(3)  # x, loss, learning rate
        self._ex, self._eval_loss, self._etrain_acc, self._eval_acc = [], [], [], []
        self._dirty = False
        self._y_ranges = {}  # plot -> the y range last set
        self._user_ranged = set()  # plots the user zoomed or panned this run
        if self._parts is not None:
            self._clear_curves()

    def _clear_curves(self):
        p = self._parts
        for curve, size in ((p.val_loss, 6), (p.train_acc, 5), (p.val_acc, 6)):
            curve.setSymbol("o")
            curve.setSymbolSize(size)
        for c in (p.train_loss, p.val_loss, p.train_acc, p.val_acc, p.lr_curve):
            c.setData([], [])
        for plot in (p.loss_plot, p.lr_plot):
            plot.getPlotItem().enableAutoRange(y=False)  # a new run: its ranges set here again
        p.acc_plot.setXRange(0, 1, padding=0.05)

    def set_epochs(self, epochs: int | None):
        """The run's length: the per-batch plots span it from the start, so their x axes
        stay put while the curves grow (``None``: follow the points)."""
        self._epochs = epochs
        if self._parts is not None:
            self._show_extent()

    def _show_extent(self):
        p = self._parts
        for plot in (p.loss_plot, p.lr_plot):
            item = plot.getPlotItem()
            if self._epochs:
                # a fixed range: the axes are not re-ticked and repainted at every redraw
                item.enableAutoRange(x=False)
                plot.setXRange(0, self._epochs, padding=0.02)
            else:
                item.enableAutoRange(x=True)

    def add_batches(self, points):
        """Append :class:`app.training.BatchPoint` s; the curves follow within REDRAW_MS."""
        if not points:
            return
        n = len(points)
        self._batches.extend(np.fromiter((p.x for p in points), float, n),
                             np.fromiter((p.loss for p in points), float, n),
                             np.fromiter((p.lr for p in points), float, n))
        self._dirty = True
        if not self._redraw.isActive():
            self._redraw.start()

    def batch_points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every batch's x (epochs), loss and learning rate so far, as received."""
        b = self._batches
        return b.view(0), b.view(1), b.view(2)

    def _redraw_if_shown(self):
        # plots out of sight (a closed dock, or a dock tab behind another, which Qt moves
        # off screen but keeps "visible") are not redrawn; their points wait, and raising
        # the tab sends no show event, so look again at the next tick
        if not self._dirty:
            return
        if self.visibleRegion().isEmpty():
            self._redraw.start()
            return
        self.flush()

    def flush(self):
        """Draw the per-batch points received so far (now, not at the next tick)."""
        self._redraw.stop()
        p = self._parts
        if not self._dirty or p is None:
            return
        self._dirty = False
        x, loss, lr = self.batch_points()
        # a NaN or Inf would break the range and the path; the run stops on it anyway
        loss = np.nan_to_num(loss, nan=0.0, posinf=0.0, neginf=0.0)
        lr = np.nan_to_num(lr, nan=0.0, posinf=0.0, neginf=0.0)
        p.train_loss.setData(x, loss)
        p.lr_curve.setData(x, lr)
        self._fit_loss_range(loss)
        # from zero up, so a constant rate is a flat line near the top, not mid-plot
        top = float(lr.max()) if len(lr) else 0.0
        self._set_y_range(p.lr_plot, 0.0, top * 1.1 if top > 0 else 1.0, padding=0.0)

    def _fit_loss_range(self, loss=None):
        if loss is None:
            loss = np.nan_to_num(self._batches.view(1), nan=0.0, posinf=0.0, neginf=0.0)
        val = np.asarray(self._eval_loss, dtype=float)
        val = val[np.isfinite(val)]
        if not len(loss) and not len(val):
            return
        lo = min(float(loss.min()) if len(loss) else math.inf,
                 float(val.min()) if len(val) else math.inf)
        hi = max(float(loss.max()) if len(loss) else -math.inf,
                 float(val.max()) if len(val) else -math.inf)
        self._set_y_range(self._parts.loss_plot, *stepped_range(lo, hi))

    def _set_y_range(self, plot, lo: float, hi: float, padding: float = 0.02):
        """Show ``[lo, hi]`` unless it is shown already or the user chose another view
        (a zoom, a pan, or auto-range turned back on)."""
        if plot in self._user_ranged or self._y_ranges.get(plot) == (lo, hi):
            return
        if plot.getPlotItem().getViewBox().autoRangeEnabled()[1]:
            return
        self._y_ranges[plot] = (lo, hi)
        plot.setYRange(lo, hi, padding=padding)

    def add_epoch(self, epoch: int, val_loss: float, train_acc: float, val_acc: float):
        """Append one epoch's figures (NaN where there is no validation data)."""
        self.flush()
        self._ex.append(epoch + 1.0)
        self._eval_loss.append(val_loss)
        self._etrain_acc.append(train_acc)
        self._eval_acc.append(val_acc)
        self._draw_epochs()

    def _draw_epochs(self):
        p = self._parts
        if p is None or not self._ex:
            return
        x = np.asarray(self._ex)
        if len(x) > SYMBOL_LIMIT:
            # hundreds of markers would merge into a thick bar: lines only from here on
            for curve in (p.val_loss, p.train_acc, p.val_acc):
                if curve.opts["symbol"] is not None:
                    curve.setSymbol(None)
        for curve, ys in ((p.val_loss, self._eval_loss), (p.train_acc, self._etrain_acc),
                          (p.val_acc, self._eval_acc)):
            y = np.asarray(ys, dtype=float)
            ok = np.isfinite(y)
            curve.setData(x[ok], y[ok])
        self._fit_loss_range()
        p.acc_plot.setXRange(0, max(1.0, float(x[-1])), padding=0.05)  # room for markers

    def batch_count(self) -> int:
        return self._batches.n

    def epoch_count(self) -> int:
        return len(self._ex)

    # ------------------------------------------------------------ theme
    def set_theme(self, theme: Theme):
        self.theme = theme
        if self._parts is not None:
            self._apply_theme()

    def _apply_theme(self):
        pg = pyqtgraph()
        theme, p = self.theme, self._parts
        bg, ink, muted = theme.base, theme.text, theme.muted
        col = _series_colours(theme)
        for plot in (p.loss_plot, p.acc_plot, p.lr_plot):
            plot.setBackground(bg)
            item = plot.getPlotItem()
            item.titleLabel.setText(item.titleLabel.text, color=ink, size="9pt")
            for name in ("left", "bottom"):
                ax = item.getAxis(name)
                ax.setPen(pg.mkPen(muted))
                ax.setTextPen(pg.mkPen(ink))
            legend = item.legend
            if legend is not None:
                legend.setBrush(pg.mkBrush(theme.base + "cc"))
                legend.setPen(pg.mkPen(theme.node_border))
                legend.setLabelTextColor(ink)
        p.train_loss.setPen(pg.mkPen(col["train"], width=1.2))
        p.val_loss.setPen(pg.mkPen(col["val"], width=2))
        p.val_loss.setSymbolBrush(pg.mkBrush(col["val"]))
        p.val_loss.setSymbolPen(pg.mkPen(bg))
        p.train_acc.setPen(pg.mkPen(col["acc_train"], width=1.5, style=Qt.DashLine))
        p.train_acc.setSymbolBrush(pg.mkBrush(col["acc_train"]))
        p.train_acc.setSymbolPen(pg.mkPen(bg))
        p.val_acc.setPen(pg.mkPen(col["acc_val"], width=2))
        p.val_acc.setSymbolBrush(pg.mkBrush(col["acc_val"]))
        p.val_acc.setSymbolPen(pg.mkPen(bg))
        p.lr_curve.setPen(pg.mkPen(col["lr"], width=1.5))
        # legends copy the pen when items are added: refresh their samples
        for plot in (p.loss_plot, p.acc_plot):
            legend = plot.getPlotItem().legend
            if legend is not None:
                legend.update()


class ConfusionMatrix(QWidget):
    """A small heat map of a confusion matrix (rows: true class, columns: predicted)."""

    def __init__(self, theme: Theme, parent=None):
        super().__init__(parent)
        self.theme = theme
        self.matrix = None
        self.setMinimumSize(150, 150)
        self.setToolTip("Confusion matrix on the test set: rows are the true digit, "
                        "columns the predicted one; the diagonal is right")

    def set_matrix(self, matrix):
        self.matrix = None if matrix is None else np.asarray(matrix)
        self.update()

    def set_theme(self, theme: Theme):
        self.theme = theme
        self.update()

    LABEL_W = 12.0  # the class numbers along the top and left
    MIN_COUNT_PT = 5.0  # smaller counts would not be legible: cells show colour only

    def cell_size(self) -> float:
        n = self.matrix.shape[0]
        return min(self.width() - self.LABEL_W, self.height() - self.LABEL_W) / n

    def count_font(self):
        """The font the counts are written in, small enough for the widest count to fit in
        a cell; ``None`` when that would be too small to read."""
        cell = self.cell_size()
        widest = str(int(self.matrix.max())) if self.matrix.size else "0"
        font = QFont(self.font())
        size = max(self.MIN_COUNT_PT, min(8.0, cell * 0.32))
        while size >= self.MIN_COUNT_PT:
            font.setPointSizeF(size)
            fm = QFontMetricsF(font)
            if fm.horizontalAdvance(widest) <= cell - 2 and fm.height() <= cell:
                return font
            size -= 0.25
        return None

    def paintEvent(self, _event):  # noqa: N802 - Qt override
        if self.matrix is None or self.matrix.size == 0:
            return
        m = self.matrix
        n = m.shape[0]
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing, False)
        label_w = self.LABEL_W
        cell = self.cell_size()
        x0, y0 = label_w, label_w
        rows = m.sum(axis=1, keepdims=True).astype(float)
        frac = np.divide(m, rows, out=np.zeros_like(m, dtype=float), where=rows > 0)
        base = QColor(self.theme.base)
        good, bad = QColor(self.theme.accent), QColor(self.theme.error)
        font = self.count_font()
        if font is not None:
            p.setFont(font)
        for i in range(n):
            for j in range(n):
                f = float(frac[i, j]) if i == j else min(1.0, float(frac[i, j]) * 4)
                tint = good if i == j else bad
                c = QColor(
                    round(base.red() + (tint.red() - base.red()) * f),
                    round(base.green() + (tint.green() - base.green()) * f),
                    round(base.blue() + (tint.blue() - base.blue()) * f))
                r = QRectF(x0 + j * cell, y0 + i * cell, cell, cell)
                p.fillRect(r, c)
                if m[i, j] and font is not None:
                    light = c.lightnessF() > 0.55
                    p.setPen(QColor("#1d2330") if light else QColor("#f4f5f7"))
                    p.drawText(r, Qt.AlignCenter, str(int(m[i, j])))
        p.setPen(QColor(self.theme.muted))
        labels = QFont(self.font())
        labels.setPointSizeF(7.0)
        p.setFont(labels)
        for k in range(n):
            p.drawText(QRectF(x0 + k * cell, 0, cell, label_w), Qt.AlignCenter, str(k))
            p.drawText(QRectF(0, y0 + k * cell, label_w, cell), Qt.AlignCenter, str(k))
        p.setPen(QColor(self.theme.node_border))
        p.drawRect(QRectF(x0, y0, cell * n, cell * n))
        p.end()
