"""A digit for an image graph: one of a data set, or one drawn on a 28×28 pad.

The data sets are the embedded sample's test and training digits and, once the
Training panel has a folder of MNIST files, that folder's (:meth:`DigitInput.set_data_sets`).
Emits ``digit_chosen(image, label)``: a 28×28 float array in 0..1 and the digit's
label (−1 when a drawing's label is not given); :meth:`DigitInput.description`
says which set and image it was. The controller turns it into feeds with
:func:`core.stepping.digit_feeds` (after :func:`core.stepping.drawn_digit`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
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
from widgets.theme import DARK, LIGHT, Theme

SIDE = 28
# brush in pad pixels: full ink within CORE, fading to nothing at EDGE; MNIST strokes are
# 2–3 pixels wide with soft edges
BRUSH_CORE = 0.9
BRUSH_EDGE = 2.0
STEP = 0.3  # pad pixels between brush dabs along a drag, so a fast stroke has no gaps
BOX = 20  # MNIST digits fit a 20×20 box centred in the 28×28 image


@dataclass(frozen=True, eq=False)
class DigitSet:
    """Images to pick a digit from.

    Attributes
    ----------
    key : str
        Tells sets apart across refreshes (``"sample/test"``, ``"folder/test:PATH"``).
    title : str
        As the user reads it: "MNIST test set (folder mnist)".
    images : numpy.ndarray
        uint8, shape (N, 28, 28), pixels 0..255.
    labels : numpy.ndarray
        (N,) class indices.
    classes : tuple of str
    """

    key: str
    title: str
    images: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    classes: tuple = ()

    def __len__(self):
        return len(self.labels)


def mnist_sets(data, key: str, where: str) -> list:
    """The test and training :class:`DigitSet` of a :class:`core.data.mnist.MnistData`."""
    return [DigitSet(f"{key}/{split}:{data.source}", f"{where} · {split} set",
                     getattr(data, f"{split}_x"), getattr(data, f"{split}_y"), data.classes)
            for split in ("test", "train")]


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
        # the embedded sample is read when the panel is first shown or asked for a digit:
        # the window's first frame does not wait for it
        self._builtin: list | None = None
        self._sets: list | None = None
        self._sample_error = ""
        self._from_set = False  # the last digit emitted came from a set (not the pad)

        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        self.sample_box = sample = QGroupBox("Pick a digit")
        sl = QGridLayout(sample)
        self.set_combo = QComboBox()
        self.set_combo.setToolTip("Which images to pick from: the embedded MNIST sample, or "
                                  "the MNIST folder chosen in the Training panel")
        self.set_combo.currentIndexChanged.connect(self._on_set_chosen)
        self.set_combo.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.index_spin = QSpinBox()
        self.index_spin.setPrefix("image ")
        self.index_spin.setKeyboardTracking(False)  # typing "12" is one choice, not 1 then 12
        self.index_spin.valueChanged.connect(self.choose_sample)
        self.random_button = QPushButton("Random")
        self.random_button.setToolTip("A random digit of the chosen set")
        self.random_button.clicked.connect(self._random)
        self.use_button = QPushButton("Use")
        self.use_button.setToolTip("Feed this digit to the graph")
        self.use_button.clicked.connect(lambda: self.choose_sample(self.index_spin.value()))
        self.preview = DigitPreview()
        self.label_shown = QLabel()
        self.label_shown.setObjectName("digitLabel")
        self.where_label = QLabel()  # which set and image, in words
        self.where_label.setObjectName("muted")
        self.where_label.setWordWrap(True)
        self.set_note = QLabel()  # a folder being read, or why it could not be
        self.set_note.setObjectName("muted")
        self.set_note.setWordWrap(True)
        self.set_note.hide()
        sl.addWidget(self.set_combo, 0, 0, 1, 2)
        sl.addWidget(self.preview, 1, 0, 3, 1)
        sl.addWidget(self.index_spin, 1, 1)
        sl.addWidget(self.label_shown, 2, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.random_button)
        buttons.addWidget(self.use_button)
        sl.addLayout(buttons, 3, 1)
        sl.addWidget(self.where_label, 4, 0, 1, 2)
        sl.addWidget(self.set_note, 5, 0, 1, 2)
        sl.setRowStretch(6, 1)
        sample.setMinimumWidth(300)
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

    def showEvent(self, event):  # noqa: N802 - Qt override
        # before its first paint; a dock tab behind another is shown with no visible
        # region, and read when it is raised (read_sample)
        if not self.visibleRegion().isEmpty():
            self.read_sample()
        super().showEvent(event)

    def read_sample(self):
        """Read the embedded sample now, if not read yet (any use of the sets reads it)."""
        if self._sets is not None:
            return
        try:
            self._builtin = mnist_sets(load_sample(), "sample", "embedded sample")
        except StudioError as exc:  # a missing sample: drawing still works
            self._builtin, self._sample_error = [], str(exc)
        self._sets = list(self._builtin)
        self._fill_sets()
        if not self._sets:
            self.label_shown.setText(self._sample_error)

    # -------------------------------------------------------------- API
    @property
    def builtin(self) -> list:
        """The embedded sample's test and training sets (empty when it cannot be read)."""
        self.read_sample()
        return self._builtin

    @property
    def sets(self) -> list:
        """The sets offered: the built-in ones, then those of :meth:`set_data_sets`."""
        self.read_sample()
        return self._sets

    @property
    def sample_error(self) -> str:
        """Why the embedded sample could not be read ("" when it was)."""
        self.read_sample()
        return self._sample_error

    @property
    def count(self) -> int:
        """How many digits the chosen set has."""
        s = self.current_set()
        return len(s) if s is not None else 0

    def current_set(self) -> DigitSet | None:
        i = self.set_combo.currentIndex()
        return self.sets[i] if 0 <= i < len(self.sets) else None

    def set_data_sets(self, extra):
        """Offer the built-in sets and ``extra`` (:class:`DigitSet` list); the chosen set
        stays chosen if it is still offered."""
        self._sets = list(self.builtin) + list(extra)
        self.set_note.hide()
        self._fill_sets()

    def set_note_text(self, text: str):
        """A line under the picker: a folder being read, or why it could not be ("": none)."""
        self.set_note.setText(text)
        self.set_note.setVisible(bool(text))

    def choose_set(self, key_or_title: str):
        """Make the set with this key or title the chosen one (shows its image 0)."""
        for i, s in enumerate(self.sets):
            if key_or_title in (s.key, s.title):
                self.set_combo.setCurrentIndex(i)
                return
        raise KeyError(f"no digit set {key_or_title!r}")

    def sample_pixels(self, index: int) -> tuple:
        """``(28×28 float array 0..1, label)`` of digit ``index`` of the chosen set."""
        s = self.current_set()
        return np.asarray(s.images[index], np.float64) / 255.0, int(s.labels[index])

    def choose_sample(self, index: int):
        """Show digit ``index`` of the chosen set and emit it."""
        if self.index_spin.value() != index:
            self.index_spin.setValue(index)  # its valueChanged comes back here
            return
        if self.current_set() is None:
            return
        pixels, label = self._show_sample(index)
        self._from_set = True
        self.digit_chosen.emit(pixels, label)

    def description(self) -> str:
        """The digit last emitted in words: "image 5 of the embedded sample · test set
        (label 1)"; "" for a drawing."""
        s = self.current_set()
        if s is None or not self._from_set:
            return ""
        i = self.index_spin.value()
        return f"image {i} of the {s.title} (label {self._class_text(s, int(s.labels[i]))})"

    def drawing(self) -> np.ndarray:
        """A copy of the drawing (28×28, 0..1)."""
        return self.pad.pixels.copy()

    def clear(self):
        """Empty the pad and emit the empty drawing (the graph sees what the pad shows)."""
        self.pad.clear()
        self._drawn()

    # ---------------------------------------------------------- helpers
    def _fill_sets(self):
        keep = self.current_set()
        keep_key = keep.key if keep is not None else None
        index = self.index_spin.value()
        self.set_combo.blockSignals(True)
        self.set_combo.clear()
        for s in self.sets:
            self.set_combo.addItem(f"{s.title} ({len(s):,})", s.key)
        at = self.set_combo.findData(keep_key) if keep_key is not None else -1
        self.set_combo.setCurrentIndex(at if at >= 0 else 0 if self.sets else -1)
        self.set_combo.blockSignals(False)
        self.sample_box.setEnabled(bool(self.sets))
        self._set_range()
        if self.sets:
            self._show_sample(min(index, self.count - 1) if at >= 0 else 0)

    def _set_range(self):
        s = self.current_set()
        self.index_spin.blockSignals(True)
        self.index_spin.setRange(0, max(0, self.count - 1))
        self.index_spin.blockSignals(False)
        if s is not None:
            self.index_spin.setToolTip(f"One of the {len(s):,} digits of the {s.title}")

    def _on_set_chosen(self, _i):
        """Another set: show its first digit (fed only when the user picks one)."""
        self._set_range()
        self.index_spin.blockSignals(True)
        self.index_spin.setValue(0)
        self.index_spin.blockSignals(False)
        if self.current_set() is not None:
            self._show_sample(0)

    @staticmethod
    def _class_text(s: DigitSet, label: int) -> str:
        name = s.classes[label] if 0 <= label < len(s.classes) else str(label)
        return str(label) if name == str(label) else f"{label} ({name})"

    def _show_sample(self, index):
        s = self.current_set()
        pixels, label = self.sample_pixels(index)
        self.preview.set_pixels(pixels)
        self.label_shown.setText(f"label {self._class_text(s, label)}")
        self.where_label.setText(f"{s.title} · image {index} of {len(s):,}")
        return pixels, label

    def _random(self):
        if self.count:
            self.choose_sample(int(self._rng.integers(self.count)))

    def _drawn(self):
        self._from_set = False
        self.digit_chosen.emit(self.drawing(), int(self.draw_label.value()))

    # ------------------------------------------------------------ theme
    def set_theme(self, theme: Theme):
        self.theme = t = theme
        self.pad.guide = QColor(t.muted)
        self.preview.border = QColor(t.node_border)
        self.setStyleSheet(f"QLabel#digitLabel {{ font-size: 14px; font-weight: 600; "
                           f"color: {t.text}; }}")
        self.update()
