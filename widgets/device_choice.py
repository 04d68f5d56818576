"""The device choice (CPU / CUDA) shared by the Training panel and the Step toolbar."""

from __future__ import annotations

from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import QComboBox

DEVICE_NAMES = {"cpu": "CPU", "cuda": "CUDA"}
CHECKING = "Checking for CuPy and a CUDA device…"


class DeviceCombo(QComboBox):
    """CPU and CUDA; a device that cannot run here is greyed out with the reason as its
    tooltip. Until :meth:`set_status` is called, CUDA is greyed out as being checked (importing
    CuPy takes a while, so the window asks off the GUI thread)."""

    def __init__(self, what: str, parent=None):
        super().__init__(parent)
        for key, text in DEVICE_NAMES.items():
            self.addItem(text, key)
        self.setToolTip(what)
        self._set_item("cuda", False, CHECKING)

    def _set_item(self, key: str, available: bool, tip: str):
        model = self.model()
        if isinstance(model, QStandardItemModel):
            item = model.item(self.findData(key))
            item.setEnabled(available)
            item.setToolTip(tip)

    def set_status(self, status: dict):
        """Grey out what ``status`` (:func:`core.kernels.backend.device_status`) says cannot
        run; a chosen device that cannot falls back to the CPU."""
        for key in DEVICE_NAMES:
            s = status[key]
            tip = s.name if s.available else f"Not available: {s.reason}"
            self._set_item(key, s.available, tip)
        if not status[self.device()].available:
            self.set_device("cpu")

    def device(self) -> str:
        return self.currentData()

    def set_device(self, key: str):
        """Show ``key`` as chosen without emitting :attr:`activated` (a user's choice)."""
        self.blockSignals(True)
        self.setCurrentIndex(self.findData(key))
        self.blockSignals(False)
