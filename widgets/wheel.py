"""Spin boxes and combo boxes that take the mouse wheel only once they have the focus.

In a scrolling panel (the Inspector, the Training controls) the wheel is meant to
scroll: a field that passes under the pointer must not change its value.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QWidget,
)


class _WheelGuard(QObject):
    """Event filter: a wheel over an unfocused field goes on to its parent (the scroll area)."""

    def eventFilter(self, obj, event):  # noqa: N802 - Qt override
        if event.type() != QEvent.Wheel or not isinstance(obj, QWidget) or obj.hasFocus():
            return False
        area = obj.parentWidget()
        while area is not None and not isinstance(area, QAbstractScrollArea):
            area = area.parentWidget()
        if area is not None:
            # handed straight to the panel that scrolls (Qt would not pass on a wheel event
            # it did not get from the window system)
            QApplication.sendEvent(area.viewport(), event)
        else:
            event.ignore()  # filtered but not accepted: Qt offers it to the parents
        return True


def guard_wheel(*widgets: QWidget):
    """Let each of ``widgets`` take the wheel only while it has the keyboard focus."""
    for w in widgets:
        w.setFocusPolicy(Qt.StrongFocus)  # not WheelFocus: the wheel does not focus it
        w.installEventFilter(_WheelGuard(w))  # owned by the field, dies with it


def guard_wheel_in(container: QWidget):
    """:func:`guard_wheel` for every spin box and combo box inside ``container``."""
    guard_wheel(*container.findChildren(QAbstractSpinBox), *container.findChildren(QComboBox))
