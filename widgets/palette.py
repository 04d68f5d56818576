"""The palette: every registered op, grouped by category, searchable, draggable."""

from __future__ import annotations

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QLineEdit,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.ops import all_ops, get_op
from core.ops.base import CATEGORIES
from widgets.canvas import OP_MIME
from widgets.icons import category_icon
from widgets.theme import LIGHT, Theme

OP_ROLE = Qt.UserRole + 1


def op_tooltip(op_cls) -> str:
    """Rich-text tooltip: name, formula, derivative, ports and description."""
    parts = [f"<b>{op_cls.label}</b> <span style='color:gray'>({op_cls.id})</span>"]
    if op_cls.formula:
        parts.append(f"<p style='font-family:serif; font-size:13pt'>{op_cls.formula}</p>")
    if op_cls.derivative:
        parts.append(f"<p style='font-family:serif'>local derivative: {op_cls.derivative}</p>")
    ins = ", ".join(op_cls.inputs) or "none"
    outs = ", ".join(op_cls.outputs)
    parts.append(f"<p>inputs: {ins}<br>outputs: {outs}</p>")
    doc = (op_cls.description or (op_cls.__doc__ or "")).strip().split("\n\n")[0]
    if doc:
        parts.append(f"<p>{' '.join(doc.split())}</p>")
    return "".join(parts)


def matches(op_cls, text: str) -> bool:
    """Whether every word of ``text`` occurs in the op's label, id, category or formula."""
    hay = " ".join((op_cls.label, op_cls.id, op_cls.category, op_cls.formula)).lower()
    return all(w in hay for w in text.lower().split())


def rank(op_cls, text: str) -> int:
    """How well ``text`` names the op: 0 exact, 1 prefix, 2 inside the label, 3 elsewhere."""
    t = text.lower().strip()
    label, op_id = op_cls.label.lower(), op_cls.id
    if not t or t in (label, op_id):
        return 0
    if label.startswith(t) or op_id.startswith(t):
        return 1
    if t in label or t in op_id:
        return 2
    return 3


class _OpTree(QTreeWidget):
    def mimeData(self, items):
        md = QMimeData()
        ops = [it.data(0, OP_ROLE) for it in items if it.data(0, OP_ROLE)]
        if ops:
            md.setData(OP_MIME, ops[0].encode("utf-8"))
            md.setText(ops[0])
        return md

    def mimeTypes(self):
        return [OP_MIME]


class Palette(QWidget):
    """Search box over a tree of ops. Drag an op onto the canvas, or double-click to add it.

    Signals
    -------
    op_activated(str)
        An op was double-clicked or chosen with Enter.
    """

    op_activated = Signal(str)

    def __init__(self, theme: Theme = LIGHT, parent=None):
        super().__init__(parent)
        self.theme = theme
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.setSpacing(6)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search ops…  (e.g. conv, σ, loss)")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.filter)
        self.search.returnPressed.connect(self._activate_first)
        lay.addWidget(self.search)
        self.tree = _OpTree()
        self.tree.setHeaderHidden(True)
        self.tree.setRootIsDecorated(True)
        self.tree.setIndentation(12)
        self.tree.setDragEnabled(True)
        self.tree.setDragDropMode(QAbstractItemView.DragOnly)
        self.tree.setSelectionMode(QAbstractItemView.SingleSelection)
        self.tree.itemActivated.connect(self._on_activated)
        lay.addWidget(self.tree)
        self.populate()

    def populate(self):
        """Fill the tree from the op registry (call again after registering ops)."""
        self.tree.clear()
        self.groups = {}
        self.items = {}
        for cat in CATEGORIES:
            group = QTreeWidgetItem([CATEGORIES[cat]])
            group.setFlags(Qt.ItemIsEnabled)
            f = group.font(0)
            f.setBold(True)
            group.setFont(0, f)
            group.setIcon(0, category_icon(cat, self.theme.category_color(cat)))
            self.groups[cat] = group
        for op_cls in all_ops():
            item = QTreeWidgetItem([op_cls.label])
            item.setData(0, OP_ROLE, op_cls.id)
            item.setToolTip(0, op_tooltip(op_cls))
            item.setFlags(Qt.ItemIsEnabled | Qt.ItemIsSelectable | Qt.ItemIsDragEnabled)
            self.groups[op_cls.category].addChild(item)
            self.items[op_cls.id] = item
        for cat in CATEGORIES:
            if self.groups[cat].childCount():
                self.tree.addTopLevelItem(self.groups[cat])
                self.groups[cat].setExpanded(True)

    def set_theme(self, theme: Theme):
        self.theme = theme
        for cat, group in self.groups.items():
            group.setIcon(0, category_icon(cat, theme.category_color(cat)))

    def filter(self, text: str):
        """Show only the ops matching ``text`` (and their categories)."""
        for group in self.groups.values():
            shown = 0
            for i in range(group.childCount()):
                item = group.child(i)
                ok = matches(get_op(item.data(0, OP_ROLE)), text)
                item.setHidden(not ok)
                shown += ok
            group.setHidden(shown == 0)
            if text:
                group.setExpanded(True)

    def visible_ops(self) -> list:
        out = []
        for group in self.groups.values():
            for i in range(group.childCount()):
                item = group.child(i)
                if not item.isHidden() and not group.isHidden():
                    out.append(item.data(0, OP_ROLE))
        return out

    def _activate_first(self):
        ops = self.visible_ops()
        if ops:
            self.op_activated.emit(ops[0])

    def _on_activated(self, item, _col):
        op_id = item.data(0, OP_ROLE)
        if op_id:
            self.op_activated.emit(op_id)

    def mime_for(self, op_id: str) -> QMimeData:
        """The drag data the palette produces for ``op_id``."""
        return self.tree.mimeData([self.items[op_id]])
