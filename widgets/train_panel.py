"""The Training panel: data, settings, Start / Pause / Stop, progress, plots and results.

The panel is a view: it turns the user's choices into a settings object and
emits requests; the window runs the training and feeds progress back in.
"""

from __future__ import annotations

import math

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QDoubleValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from core.train.recipe import TrainSettings
from widgets.device_choice import DeviceCombo
from widgets.plots import REDRAW_MS, ConfusionMatrix, TrainingPlots
from widgets.theme import Theme
from widgets.wheel import guard_wheel_in

SOURCE_LABELS = (("sample", "MNIST sample"), ("folder", "MNIST folder…"),
                 ("graph", "Stored in the graph"))
SCHEDULE_CHOICES = ("constant", "step", "exponential", "inverse_time", "inverse_sqrt", "cosine",
                    "plateau")


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "–"
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class TrainPanel(QWidget):
    """Controls and live view of one training run.

    Signals
    -------
    start_requested(TrainSettings)
    pause_toggled(bool)
        ``True`` to pause, ``False`` to resume.
    stop_requested()
    dialog_closed()
        A file dialog of the panel closed.
    """

    start_requested = Signal(object)
    pause_toggled = Signal(bool)
    stop_requested = Signal()
    dialog_closed = Signal()  # the window takes the focus back

    def __init__(self, theme: Theme, default_lrs: dict, optimizers, parent=None):
        super().__init__(parent)
        self.theme = theme
        self.default_lrs = dict(default_lrs)
        self.folder: str | None = None
        self.image_source = "sample"  # the user's last image choice (sample or folder)
        self._lr_edited = False
        self._problem: str | None = None

        self._make_settings(optimizers)
        buttons = self._make_controls()
        left = self._make_data_box(buttons)
        right = self._make_results()

        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 4, 6, 4)
        middle = QVBoxLayout()
        middle.setContentsMargins(0, 0, 0, 0)
        middle.addWidget(self.plots, 1)
        # under the plots, full width: errors must be readable without scrolling
        middle.addWidget(self.status_label)
        lay.addWidget(left)
        lay.addLayout(middle, 1)
        lay.addWidget(right)
        self._progress_info = None
        self._progress_timer = QTimer(self)
        self._progress_timer.setSingleShot(True)
        self._progress_timer.setInterval(REDRAW_MS)
        self._progress_timer.timeout.connect(self._draw_progress)
        self.setMinimumHeight(290)  # room for the plots; the controls scroll below that
        self.set_running(False)
        self._show_folder()
        self.set_theme(theme)

    # ---------------------------------------------------------- layout
    def _make_settings(self, optimizers):
        """The fields of a run: data, images, epochs, batch, optimizer, rate, schedule, seed."""
        self.source = QComboBox()
        for key, text in SOURCE_LABELS:
            self.source.addItem(text, key)
        self.source.activated.connect(self._on_source_chosen)
        self.limit = QSpinBox()
        self.limit.setRange(0, 1_000_000)
        self.limit.setSingleStep(1000)
        self.limit.setSpecialValueText("all")
        self.limit.setToolTip("Train on the first N training images only (0 = all)")
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.epochs.setValue(3)
        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, 8192)
        self.batch_size.setValue(64)
        self.optimizer = QComboBox()
        self.optimizer.addItems(list(optimizers))
        self.optimizer.setCurrentText("momentum")
        self.optimizer.currentTextChanged.connect(self._on_optimizer)
        self.lr = QLineEdit()
        v = QDoubleValidator(0.0, 1e308, 12, self.lr)
        v.setNotation(QDoubleValidator.ScientificNotation)
        self.lr.setValidator(v)
        self.lr.setText(f"{self.default_lrs.get('momentum', 0.01):g}")
        self.lr.textEdited.connect(self._on_lr_edited)
        self.schedule = QComboBox()
        self.schedule.addItems(list(SCHEDULE_CHOICES))
        self.schedule.setToolTip("How the learning rate changes during training")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setMaximumWidth(90)
        self.device = DeviceCombo("Where training runs: the CPU, or an NVIDIA GPU through CuPy")
        self.reset = QCheckBox("re-init")
        self.reset.setToolTip("Draw new initial weights (with the seed) instead of continuing "
                              "from the weights the graph holds")

    def _make_controls(self) -> QHBoxLayout:
        """Start / Pause / Stop (returned as a row), the progress bar and the status lines."""
        self.start_button = QPushButton("Start")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self._on_start)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.toggled.connect(self._on_pause)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop_requested)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.pause_button, self.stop_button):
            buttons.addWidget(b)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.progress.setFormat("ready")
        self.speed_label = QLabel()
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        return buttons

    def _make_data_box(self, buttons: QHBoxLayout) -> QScrollArea:
        """The left column: the settings form and the controls, scrolling in a short dock."""
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        form.addRow("Data", self.source)
        self.folder_label = QLabel()
        # one line (a long path is elided): a wrapping label gets squeezed in a short dock
        self.folder_label.setMinimumWidth(10)
        self.folder_label.setObjectName("muted")
        form.addRow("", self.folder_label)
        form.addRow("Images", self.limit)
        row = QHBoxLayout()
        row.addWidget(self.epochs)
        row.addWidget(QLabel("batch"))
        row.addWidget(self.batch_size)
        form.addRow("Epochs", row)
        form.addRow("Optimizer", self.optimizer)
        form.addRow("Learning rate", self.lr)
        form.addRow("Schedule", self.schedule)
        row = QHBoxLayout()
        row.addWidget(self.seed, 1)
        row.addWidget(self.reset)
        form.addRow("Seed", row)
        form.addRow("Device", self.device)

        controls = QVBoxLayout()
        controls.addLayout(form)
        controls.addLayout(buttons)
        controls.addWidget(self.progress)
        controls.addWidget(self.speed_label)
        controls.addStretch(1)
        inner = QWidget()
        inner.setLayout(controls)
        guard_wheel_in(inner)
        inner.setFixedWidth(280)
        # a short dock scrolls the controls instead of squeezing the fields flat
        left = QScrollArea()
        left.setWidget(inner)
        left.setWidgetResizable(True)
        left.setFrameShape(QFrame.NoFrame)
        left.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        left.setFixedWidth(280 + left.verticalScrollBar().sizeHint().width())
        return left

    def _make_results(self) -> QWidget:
        """The right column: what the finished run scored and its confusion matrix."""
        self.plots = TrainingPlots(self.theme)
        self.accuracy_label = QLabel("–")
        self.accuracy_label.setObjectName("train_accuracy")
        self.accuracy_label.setAlignment(Qt.AlignLeft | Qt.AlignVCenter)
        self.accuracy_caption = QLabel("Test accuracy")
        self.accuracy_caption.setWordWrap(True)
        self.confusion = ConfusionMatrix(self.theme)
        results = QVBoxLayout()
        results.addWidget(self.accuracy_caption)
        results.addWidget(self.accuracy_label)
        results.addWidget(self.confusion, 1)
        right = QWidget()
        right.setLayout(results)
        right.setFixedWidth(250)  # cells wide enough for four-digit counts
        return right

    # -------------------------------------------------------- settings
    def current_source(self) -> str:
        return self.source.currentData()

    def set_source(self, key: str):
        i = self.source.findData(key)
        if i >= 0:
            self.source.setCurrentIndex(i)
        self._show_folder()

    def set_folder(self, folder: str | None):
        self.folder = folder
        if folder:
            self.set_source("folder")
            self.image_source = "folder"
        self._show_folder()

    def use_image_source(self):
        """Go back to the images the user last chose (a graph with its own data was open)."""
        self.set_source(self.image_source if self.folder or self.image_source == "sample"
                        else "sample")

    def _on_source_chosen(self, _index):
        if self.current_source() == "folder" and not self.choose_folder() and not self.folder:
            self.set_source("sample")
        if self.current_source() in ("sample", "folder"):
            self.image_source = self.current_source()
        self._show_folder()

    def choose_folder(self) -> bool:
        """Ask for a folder holding the four MNIST IDX files; False when cancelled."""
        folder = QFileDialog.getExistingDirectory(self, "Folder with the MNIST IDX files",
                                                  self.folder or "")
        self.dialog_closed.emit()
        if not folder:
            return False
        self.set_folder(folder)
        return True

    def _show_folder(self):
        src = self.current_source()
        text = {"sample": "5,000 + 1,000 test digits",
                "folder": self.folder or "no folder chosen",
                "graph": "the graph's own samples"}[src]
        metrics = self.folder_label.fontMetrics()
        self.folder_label.setText(metrics.elidedText(text, Qt.ElideMiddle, 165))
        self.folder_label.setToolTip(text)
        self.limit.setEnabled(src != "graph")

    def _on_optimizer(self, name):
        if not self._lr_edited:
            self.lr.setText(f"{self.default_lrs.get(name, 0.01):g}")

    def _on_lr_edited(self, _text):
        self._lr_edited = True

    def settings(self):
        """The run the user asked for (:class:`core.train.recipe.TrainSettings`)."""
        try:
            lr = float(self.lr.text().replace(",", "."))
        except ValueError:
            raise ValueError(f"the learning rate '{self.lr.text()}' is not a number") from None
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError("the learning rate must be a positive number")
        return TrainSettings(source=self.current_source(), folder=self.folder,
                             epochs=self.epochs.value(), batch_size=self.batch_size.value(),
                             optimizer=self.optimizer.currentText(), lr=lr,
                             schedule=self.schedule.currentText(), seed=self.seed.value(),
                             limit=self.limit.value() or None,
                             reset_weights=self.reset.isChecked(), device=self.device.device())

    def set_devices(self, status: dict):
        """Which devices can train here (:func:`core.kernels.backend.device_status`)."""
        self.device.set_status(status)

    def request_start(self):
        """Start with the settings shown (what the Start button does)."""
        if self.start_button.isEnabled():
            self._on_start()

    def _on_start(self):
        try:
            s = self.settings()
        except ValueError as exc:
            self.show_error(str(exc))
            return
        self.start_requested.emit(s)

    def _on_pause(self, on: bool):
        self.pause_button.setText("Resume" if on else "Pause")
        self.pause_toggled.emit(on)

    # ---------------------------------------------------------- state
    def set_problem(self, problem: str | None):
        """Why the open graph cannot train (Start disabled), or ``None``."""
        self._problem = problem
        if not self.stop_button.isEnabled():
            self.start_button.setEnabled(problem is None)
            if problem:
                self.set_status("Cannot train this graph: " + problem, "warning")
            elif self.status_label.property("kind") == "warning":
                self.set_status("")

    def set_running(self, running: bool):
        for w in (self.source, self.limit, self.epochs, self.batch_size, self.optimizer,
                  self.lr, self.schedule, self.seed, self.reset, self.device):
            w.setEnabled(not running)
        if not running:
            self.limit.setEnabled(self.current_source() != "graph")
        self.start_button.setEnabled(not running and self._problem is None)
        self.pause_button.setEnabled(running)
        self.stop_button.setEnabled(running)
        if not running:
            self.pause_button.blockSignals(True)
            self.pause_button.setChecked(False)
            self.pause_button.setText("Pause")
            self.pause_button.blockSignals(False)

    def clear_results(self):
        """Forget the last run's plots, accuracy and confusion matrix (another graph)."""
        self.plots.clear()
        self.confusion.set_matrix(None)
        self.accuracy_label.setText("–")
        self.accuracy_label.setToolTip("")
        self.accuracy_caption.setText("Test accuracy")
        self.progress.setValue(0)
        self.progress.setFormat("ready")
        self.speed_label.setText("")

    def begin_run(self):
        """Reset the plots and results for a new run."""
        self.clear_results()
        self.progress.setFormat("starting…")
        self.set_running(True)

    def set_status(self, text: str, kind: str = ""):
        self.status_label.setText(text)
        self.status_label.setProperty("kind", kind)
        colour = {"error": self.theme.error, "warning": self.theme.warning,
                  "ok": self.theme.ok}.get(kind, self.theme.muted)
        self.status_label.setStyleSheet(f"color: {colour};")

    def show_error(self, text: str):
        self.set_status(text, "error")

    def show_progress(self, info: dict):
        """Show the latest figures; repainted with the plots, not on every report."""
        self._progress_info = info
        if not self._progress_timer.isActive():
            self._progress_timer.start()

    def _draw_progress(self):
        info = self._progress_info
        if info is None:
            return
        self._progress_info = None
        self.progress.setValue(int(round(info["fraction"] * 1000)))
        self.progress.setFormat(
            f"epoch {info['epoch'] + 1}/{info['epochs']} · batch {info['batch'] + 1}/"
            f"{info['batches']}")
        self.speed_label.setText(f"{info['images_per_second']:,.0f} images/s · "
                                 f"ETA {_clock(info['eta'])} · loss {info['loss']:.4f}")

    def show_failure(self, message: str):
        """A run that ended with an error (the message says why)."""
        self._progress_timer.stop()
        self._draw_progress()
        self.plots.flush()
        self.set_running(False)
        self.progress.setFormat("failed at " + self.progress.format()
                                if self.progress.value() else "failed")
        self.show_error(message)

    def show_paused(self):
        self._progress_timer.stop()
        self._draw_progress()
        self.progress.setFormat("paused — " + self.progress.format())

    def show_result(self, evaluation, evaluated_on: str, status: str, seconds: float,
                    final_loss=None):
        """The end of a run: accuracy, confusion matrix and a line on what happened."""
        self._progress_timer.stop()
        self._draw_progress()
        self.plots.flush()
        self.set_running(False)
        self.progress.setFormat({"completed": "done", "cancelled": "stopped"}.get(status, status)
                                + f" in {_clock(seconds)}")
        if status == "completed":
            self.progress.setValue(1000)
        if evaluation is not None:
            self.accuracy_caption.setText(f"Accuracy on the {evaluated_on}")
            self.accuracy_label.setText(f"{evaluation.accuracy * 100:.2f} %")
            self.accuracy_label.setToolTip(f"loss {evaluation.loss:.4f}, "
                                           f"macro F1 {evaluation.macro_f1:.4f}")
            self.confusion.set_matrix(evaluation.confusion)
        elif final_loss is not None:
            self.accuracy_caption.setText("Loss after the last epoch")
            self.accuracy_label.setText(f"{final_loss:.4g}")

    # ---------------------------------------------------------- theme
    def set_theme(self, theme: Theme):
        self.theme = theme
        self.plots.set_theme(theme)
        self.confusion.set_theme(theme)
        self.accuracy_label.setStyleSheet(f"font-size: 20pt; font-weight: 600; "
                                          f"color: {theme.text};")
        self.accuracy_caption.setStyleSheet(f"color: {theme.muted};")
        self.folder_label.setStyleSheet(f"color: {theme.muted}; font-size: 8pt;")
        self.speed_label.setStyleSheet(f"color: {theme.muted};")
        self.set_status(self.status_label.text(), self.status_label.property("kind") or "")
