"""The step list dock: every forward step, then every backward step, and where stepping is.

It reads a :class:`core.stepping.StepSession` and never changes it: a click on a
row asks for that step (:attr:`StepList.step_chosen`), the controller moves the
session and calls :meth:`StepList.show_position`. Below the list sit the
gradient-norm breakpoint conditions (exploding / vanishing).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QDoubleValidator, QFont
from PySide6.QtWidgets import (
    QCheckBox,
    QGridLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

STATE_ROLE = Qt.UserRole + 1
START_TEXT = "   ·  before the first step"
DONE_MARK, CURRENT_MARK, PENDING_MARK = "✓", "▶", " "
BREAK_MARK = "●"
DEFAULT_ABOVE, DEFAULT_BELOW = 1e3, 1e-8


class StepList(QWidget):
    """The steps of a session as rows, the current one highlighted, done ones ticked.

    Row 0 is "before the first step"; row ``i + 1`` is step ``i``.

    Signals
    -------
    step_chosen(int)
        The step index clicked (``-1``: before the first step).
    grad_norm_changed(object, object)
        The thresholds for "gradient norm above" and "below" (``None``: off).
    """

    step_chosen = Signal(int)
    grad_norm_changed = Signal(object, object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setObjectName("step_list")
        self.list.setUniformItemSizes(True)
        self.list.setMinimumHeight(self.list.fontMetrics().height() * 6)
        self.list.itemClicked.connect(self._on_clicked)
        self.caption = QLabel("Step the graph with the Step menu or toolbar.")
        self.caption.setWordWrap(True)

        self.above_box = QCheckBox("above")
        self.above_edit = QLineEdit(f"{DEFAULT_ABOVE:g}")
        self.below_box = QCheckBox("below")
        self.below_edit = QLineEdit(f"{DEFAULT_BELOW:g}")
        grid = QGridLayout()
        grid.addWidget(QLabel("Break on a gradient norm"), 0, 0, 1, 2)
        for row, (box, edit) in enumerate(((self.above_box, self.above_edit),
                                           (self.below_box, self.below_edit))):
            v = QDoubleValidator(0.0, 1e300, 12, edit)
            v.setNotation(QDoubleValidator.ScientificNotation)
            edit.setValidator(v)
            edit.setMaximumWidth(edit.fontMetrics().horizontalAdvance("0.0000e+000"))
            box.toggled.connect(self._emit_grad_norm)
            edit.editingFinished.connect(self._emit_grad_norm)
            grid.addWidget(box, row + 1, 0)
            grid.addWidget(edit, row + 1, 1)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.caption)
        lay.addWidget(self.list, 1)
        lay.addLayout(grid)
        self._breakpoints: set = set()
        self._entries: list = []

    # ------------------------------------------------------------ reading
    def set_session(self, session):
        """Fill the rows from ``session.steps`` (``None``: empty)."""
        self.list.clear()
        self._entries = list(session.steps) if session is not None else []
        if session is None:
            return
        QListWidgetItem(START_TEXT, self.list)
        for e in self._entries:
            item = QListWidgetItem(self.list)
            item.setData(Qt.UserRole, e.index)
        self.show_position(session)

    def set_breakpoints(self, node_ids):
        """Which nodes have a breakpoint (their rows get a dot)."""
        self._breakpoints = set(node_ids)

    def show_position(self, session):
        """Tick the steps that have run and highlight the current one."""
        if session is None or self.list.count() != len(self._entries) + 1:
            self.set_session(session)
            return
        pos = session.position
        bold = QFont(self.list.font())
        bold.setBold(True)
        plain = QFont(self.list.font())
        done_brush = QBrush(self.palette().color(self.foregroundRole()))
        pending = QColor(self.palette().color(self.foregroundRole()))
        pending.setAlpha(120)
        for e in self._entries:
            item = self.list.item(e.index + 1)
            state = ("current" if e.index == pos - 1 else "done" if e.index < pos
                     else "pending")
            mark = {"current": CURRENT_MARK, "done": DONE_MARK}.get(state, PENDING_MARK)
            dot = BREAK_MARK if e.node_id in self._breakpoints else " "
            item.setText(f"{dot}{mark} {e.index + 1:>3}  {e.label}")
            item.setData(STATE_ROLE, state)
            item.setFont(bold if state == "current" else plain)
            item.setForeground(done_brush if state != "pending" else QBrush(pending))
        self.list.setCurrentRow(pos)
        self.list.scrollToItem(self.list.item(pos))
        total = len(self._entries)
        self.caption.setText(f"{pos} of {total} steps done ({session.n_forward} forward, "
                             f"{total - session.n_forward} backward)")

    def row_state(self, index: int) -> str:
        """``"current"``, ``"done"`` or ``"pending"`` for step ``index``."""
        return self.list.item(index + 1).data(STATE_ROLE)

    def row_text(self, index: int) -> str:
        return self.list.item(index + 1).text()

    # ------------------------------------------------------------ gestures
    def _on_clicked(self, item):
        self.step_chosen.emit(self.list.row(item) - 1)

    def grad_norm_thresholds(self) -> tuple:
        """``(above, below)`` as the fields say (``None`` where unchecked or empty)."""
        def read(box, edit):
            if not box.isChecked():
                return None
            try:
                return float(edit.text())
            except ValueError:
                return None
        return read(self.above_box, self.above_edit), read(self.below_box, self.below_edit)

    def _emit_grad_norm(self, *_):
        self.grad_norm_changed.emit(*self.grad_norm_thresholds())
