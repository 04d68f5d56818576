"""The quick-add popup: type a few letters, press Enter, the op appears at the cursor."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QPoint, Qt, Signal
from PySide6.QtWidgets import QFrame, QLabel, QLineEdit, QListWidget, QListWidgetItem, QVBoxLayout

from core.ops import all_ops
from widgets.icons import category_icon
from widgets.palette import matches, op_tooltip, rank
from widgets.theme import LIGHT, Theme


class QuickAdd(QFrame):
    """A search popup listing ops, optionally only those that fit a dragged port.

    Signals
    -------
    chosen(str)
        The op id picked (the popup closes itself).
    """

    chosen = Signal(str)

    def __init__(self, theme: Theme = LIGHT, parent=None):
        super().__init__(parent, Qt.Popup)
        self.setObjectName("quickAdd")
        self.theme = theme
        self.setFixedWidth(300)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.setSpacing(6)
        self.caption = QLabel()
        self.caption.setObjectName("muted")
        self.caption.setWordWrap(True)
        lay.addWidget(self.caption)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Add node…")
        self.search.textChanged.connect(self._refilter)
        self.search.installEventFilter(self)
        lay.addWidget(self.search)
        self.list = QListWidget()
        self.list.setMinimumHeight(280)
        self.list.itemActivated.connect(self._pick)
        self.list.itemClicked.connect(self._pick)
        lay.addWidget(self.list)
        self.allowed = None

    def open_at(self, global_pos: QPoint, allowed=None, caption: str = ""):
        """Show the popup at ``global_pos``; ``allowed`` optionally limits the op ids."""
        self.allowed = None if allowed is None else set(allowed)
        self.caption.setText(caption)
        self.caption.setVisible(bool(caption))
        self.search.clear()
        self._refilter("")
        self.move(global_pos)
        self.show()
        self.search.setFocus()

    def _refilter(self, text):
        self.list.clear()
        found = [c for c in all_ops() if (self.allowed is None or c.id in self.allowed)
                 and matches(c, text)]
        # best names first; sorted() is stable so categories keep their order
        for op_cls in sorted(found, key=lambda c: rank(c, text)):
            item = QListWidgetItem(category_icon(op_cls.category,
                                                 self.theme.category_color(op_cls.category)),
                                   f"{op_cls.label}    {op_cls.formula}")
            item.setData(Qt.UserRole, op_cls.id)
            item.setToolTip(op_tooltip(op_cls))
            self.list.addItem(item)
        if self.list.count():
            self.list.setCurrentRow(0)

    def ops(self) -> list:
        """The op ids listed right now."""
        return [self.list.item(i).data(Qt.UserRole) for i in range(self.list.count())]

    def choose(self, op_id: str):
        """Pick ``op_id`` as if the user clicked it."""
        self.hide()
        self.chosen.emit(op_id)

    def _pick(self, item):
        self.choose(item.data(Qt.UserRole))

    def eventFilter(self, obj, event):
        if obj is self.search and event.type() == QEvent.KeyPress:
            key = event.key()
            if key in (Qt.Key_Down, Qt.Key_Up):
                row = self.list.currentRow() + (1 if key == Qt.Key_Down else -1)
                self.list.setCurrentRow(max(0, min(self.list.count() - 1, row)))
                return True
            if key in (Qt.Key_Return, Qt.Key_Enter):
                item = self.list.currentItem()
                if item is not None:
                    self._pick(item)
                return True
            if key == Qt.Key_Escape:
                self.hide()
                return True
        return super().eventFilter(obj, event)
