"""A digit for an image graph: one of the embedded sample, or one drawn on a 28×28 pad.

Emits ``digit_chosen(image, label)``: a 28×28 float array in 0..1 and the digit's
label (−1 when a drawing's label is not given). The controller turns it into feeds
with :func:`core.stepping.digit_feeds` (after :func:`core.stepping.drawn_digit`).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import (
    QApplication,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from core.data.mnist import load_sample
from core.errors import StudioError
from core.stepping import sample_digit
from widgets.theme import DARK, LIGHT, Theme

SIDE = 28
# brush in pad pixels: full ink within CORE, fading to nothing at EDGE; MNIST strokes are
# 2–3 pixels wide with soft edges
BRUSH_CORE = 0.9
BRUSH_EDGE = 2.0
STEP = 0.3  # pad pixels between brush dabs along a drag, so a fast stroke has no gaps
BOX = 20  # MNIST digits fit a 20×20 box centred in the 28×28 image


def default_theme() -> Theme:
    """The theme matching the application's palette (dark window: the dark theme)."""
    app = QApplication.instance()
    dark = app is not None and app.palette().window().color().lightnessF() < 0.5
    return DARK if dark else LIGHT


def grey_image(pixels) -> QImage:
    """A 28×28 array in 0..1 as a grey image, white ink on black as in MNIST."""
    a = np.clip(np.asarray(pixels, np.float64), 0, 1)
    buf = np.ascontiguousarray((a * 255).round().astype(np.uint8))
    h, w = buf.shape
    return QImage(buf.data, w, h, w, QImage.Format_Grayscale8).copy()


def dab(pixels, x: float, y: float):
    """Ink a soft round dab centred at pad coordinates ``(x, y)`` (in place, max-blended)."""
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    d = np.hypot(xx + 0.5 - x, yy + 0.5 - y)
    ink = np.clip((BRUSH_EDGE - d) / (BRUSH_EDGE - BRUSH_CORE), 0.0, 1.0)
    np.maximum(pixels, ink, out=pixels)


class DrawPad(QWidget):
    """A 28×28 pad drawn on with the mouse; :attr:`pixels` is the drawing (0..1).

    Signals
    -------
    stroke_finished()
        The mouse button was released after drawing.
    """

    stroke_finished = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.pixels = np.zeros((SIDE, SIDE), np.float64)
        self._last: QPointF | None = None
        self.guide = QColor("#5a6270")
        self.setMinimumSize(140, 140)
        self.setCursor(Qt.CrossCursor)
        self.setToolTip("Draw a digit with the mouse (keep it inside the dashed box, "
                        "as MNIST digits are)")

    def sizeHint(self):  # noqa: N802 - Qt override
        return QSize(196, 196)

    def hasHeightForWidth(self):  # noqa: N802 - Qt override
        return True

    def heightForWidth(self, w):  # noqa: N802 - Qt override
        return w

    def _cell(self) -> tuple:
        side = min(self.width(), self.height())
        return side / SIDE, (self.width() - side) / 2, (self.height() - side) / 2

    def to_pad(self, pos) -> QPointF:
        """A widget point in pad pixels (0..28 on both axes)."""
        cell, ox, oy = self._cell()
        return QPointF((pos.x() - ox) / cell, (pos.y() - oy) / cell)

    def clear(self):
        self.pixels[:] = 0
        self.update()

    def stroke_to(self, p: QPointF):
        """Ink from the last point to ``p`` (pad pixels) in dabs STEP apart."""
        start = self._last if self._last is not None else p
        dist = float(np.hypot(p.x() - start.x(), p.y() - start.y()))
        n = max(1, int(np.ceil(dist / STEP)))
        for k in range(1, n + 1):
            t = k / n
            dab(self.pixels, start.x() + (p.x() - start.x()) * t,
                start.y() + (p.y() - start.y()) * t)
        self._last = p
        self.update()

    def mousePressEvent(self, event):  # noqa: N802 - Qt override
        if event.button() == Qt.LeftButton:
            self._last = None
            self.stroke_to(self.to_pad(event.position()))

    def mouseMoveEvent(self, event):  # noqa: N802 - Qt override
        if event.buttons() & Qt.LeftButton and self._last is not None:
            self.stroke_to(self.to_pad(event.position()))

    def mouseReleaseEvent(self, event):  # noqa: N802 - Qt override
        if event.button() == Qt.LeftButton and self._last is not None:
            self._last = None
            self.stroke_finished.emit()

    def paintEvent(self, _event):  # noqa: N802 - Qt override
        cell, ox, oy = self._cell()
        side = cell * SIDE
        p = QPainter(self)
        p.drawImage(QRectF(ox, oy, side, side), grey_image(self.pixels))
        pen = QPen(self.guide, 1, Qt.DashLine)
        p.setPen(pen)
        m = (SIDE - BOX) / 2 * cell
        p.drawRect(QRectF(ox + m, oy + m, BOX * cell, BOX * cell))
        p.setPen(QPen(self.guide, 1))
        p.drawRect(QRectF(ox, oy, side - 1, side - 1))
        p.end()


class DigitPreview(QWidget):
    """A small picture of a 28×28 digit, pixelated."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.image = None
        self.setFixedSize(84, 84)
        self.border = QColor("#5a6270")

    def set_pixels(self, pixels):
        self.image = grey_image(pixels)
        self.update()

    def paintEvent(self, _event):  # noqa: N802 - Qt override
        if self.image is None:
            return
        p = QPainter(self)
        p.drawImage(QRectF(0, 0, self.width(), self.height()), self.image)
        p.setPen(QPen(self.border, 1))
        p.drawRect(QRectF(0, 0, self.width() - 1, self.height() - 1))
        p.end()


class DigitInput(QWidget):
    """Pick a sample digit or draw one; each choice emits :attr:`digit_chosen`.

    Signals
    -------
    digit_chosen(object, int)
        A 28×28 float64 array in 0..1 and the label (−1: a drawing of unknown digit).
    """

    digit_chosen = Signal(object, int)

    def __init__(self, theme: Theme | None = None, parent=None, seed: int | None = None):
        super().__init__(parent)
        self.theme = theme or default_theme()
        self._rng = np.random.default_rng(seed)
        try:
            self.count = len(load_sample().test_y)
        except StudioError as exc:  # a missing sample: drawing still works
            self.count, self.sample_error = 0, str(exc)
        else:
            self.sample_error = ""

        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        sample = QGroupBox("Sample digit")
        sl = QGridLayout(sample)
        self.index_spin = QSpinBox()
        self.index_spin.setRange(0, max(0, self.count - 1))
        self.index_spin.setPrefix("digit ")
        self.index_spin.setToolTip(f"One of the {self.count} test digits of the embedded "
                                   "MNIST sample")
        self.index_spin.setKeyboardTracking(False)  # typing "12" is one choice, not 1 then 12
        self.index_spin.valueChanged.connect(self.choose_sample)
        self.random_button = QPushButton("Random")
        self.random_button.setToolTip("A random digit of the sample")
        self.random_button.clicked.connect(self._random)
        self.use_button = QPushButton("Use")
        self.use_button.setToolTip("Feed this digit to the graph")
        self.use_button.clicked.connect(lambda: self.choose_sample(self.index_spin.value()))
        self.preview = DigitPreview()
        self.label_shown = QLabel()
        self.label_shown.setObjectName("digitLabel")
        sl.addWidget(self.preview, 0, 0, 3, 1)
        sl.addWidget(self.index_spin, 0, 1)
        sl.addWidget(self.label_shown, 1, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.random_button)
        buttons.addWidget(self.use_button)
        sl.addLayout(buttons, 2, 1)
        sl.setRowStretch(3, 1)
        sample.setEnabled(self.count > 0)
        lay.addWidget(sample)

        draw = QGroupBox("Draw a digit")
        dl = QVBoxLayout(draw)
        self.pad = DrawPad()
        self.pad.stroke_finished.connect(self._drawn)
        dl.addWidget(self.pad, 1)
        row = QHBoxLayout()
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(self.clear)
        self.draw_label = QSpinBox()
        self.draw_label.setRange(-1, 9)
        self.draw_label.setValue(-1)
        self.draw_label.setSpecialValueText("label ?")
        self.draw_label.setPrefix("label ")
        self.draw_label.setToolTip("Which digit you drew (for the loss); '?' leaves it unknown")
        self.draw_label.valueChanged.connect(lambda _v: self._drawn())
        row.addWidget(self.clear_button)
        row.addStretch(1)
        row.addWidget(self.draw_label)
        dl.addLayout(row)
        lay.addWidget(draw, 1)

        self.set_theme(self.theme)
        if self.count:
            self._show_sample(0)
        else:
            self.label_shown.setText(self.sample_error)

    # -------------------------------------------------------------- API
    def sample_pixels(self, index: int) -> tuple:
        """``(28×28 float array 0..1, label)`` of sample digit ``index``."""
        image, label = sample_digit(index)
        return np.asarray(image, np.float64) / 255.0, label

    def choose_sample(self, index: int):
        """Show sample digit ``index`` and emit it."""
        if self.index_spin.value() != index:
            self.index_spin.setValue(index)  # its valueChanged comes back here
            return
        pixels, label = self._show_sample(index)
        self.digit_chosen.emit(pixels, label)

    def drawing(self) -> np.ndarray:
        """A copy of the drawing (28×28, 0..1)."""
        return self.pad.pixels.copy()

    def clear(self):
        """Empty the pad and emit the empty drawing (the graph sees what the pad shows)."""
        self.pad.clear()
        self._drawn()

    # ---------------------------------------------------------- helpers
    def _show_sample(self, index):
        pixels, label = self.sample_pixels(index)
        self.preview.set_pixels(pixels)
        self.label_shown.setText(f"label {label}")
        return pixels, label

    def _random(self):
        self.choose_sample(int(self._rng.integers(self.count)))

    def _drawn(self):
        self.digit_chosen.emit(self.drawing(), int(self.draw_label.value()))

    # ------------------------------------------------------------ theme
    def set_theme(self, theme: Theme):
        self.theme = t = theme
        self.pad.guide = QColor(t.muted)
        self.preview.border = QColor(t.node_border)
        self.setStyleSheet(f"QLabel#digitLabel {{ font-size: 14px; font-weight: 600; "
                           f"color: {t.text}; }}")
        self.update()
