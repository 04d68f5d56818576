"""The examples browser: every preset with a rendered preview and its description."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
)

from core.errors import StudioError
from core.layout import layered_layout
from core.serialize import load_graph
from examples import example_path, list_examples
from widgets.canvas import GraphScene, render_scene
from widgets.theme import Theme

PREVIEW_W, PREVIEW_H = 560, 340


def preset_scene(path, theme: Theme) -> GraphScene:
    """A scene of the preset at ``path``, laid out if the file has no positions."""
    graph = load_graph(path)
    scene = GraphScene(graph, theme)
    if any(nid not in graph.layout for nid in graph.nodes) or scene.overlapping_cards():
        items = scene.nodes
        pos = layered_layout(graph, {k: (v.width, v.height) for k, v in items.items()},
                             lambda nid, port, out: items[nid].port_y(port, out))
        for nid, p in pos.items():
            graph.move(nid, p)
    scene.flush_edges()
    return scene


class ExamplesDialog(QDialog):
    """Pick a preset; ``chosen_path`` is set when the dialog is accepted."""

    def __init__(self, theme: Theme, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Examples")
        self.theme = theme
        self.chosen_path = None
        self._paths = {}
        self._previews = {}
        lay = QHBoxLayout(self)
        self.list = QListWidget()
        self.list.setFixedWidth(220)
        lay.addWidget(self.list)
        right = QVBoxLayout()
        self.preview = QLabel()
        self.preview.setFixedSize(PREVIEW_W, PREVIEW_H)
        self.preview.setAlignment(Qt.AlignCenter)
        right.addWidget(self.preview)
        self.title = QLabel()
        self.title.setObjectName("inspectorTitle")
        right.addWidget(self.title)
        self.description = QLabel()
        self.description.setWordWrap(True)
        self.description.setAlignment(Qt.AlignTop | Qt.AlignLeft)
        self.description.setMinimumHeight(80)
        right.addWidget(self.description, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.Open | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        self.open_button = buttons.button(QDialogButtonBox.Open)
        right.addWidget(buttons)
        lay.addLayout(right)
        for stem, title, desc in list_examples():
            item = QListWidgetItem(title)
            item.setData(Qt.UserRole, stem)
            item.setData(Qt.UserRole + 1, desc)
            self.list.addItem(item)
            self._paths[stem] = example_path(stem)
        self.list.currentItemChanged.connect(self._show)
        self.list.itemDoubleClicked.connect(lambda _i: self._accept())
        if self.list.count():
            self.list.setCurrentRow(0)
        else:
            self.description.setText("No presets are installed.")
            self.open_button.setEnabled(False)

    def _show(self, item, _prev=None):
        if item is None:
            return
        stem = item.data(Qt.UserRole)
        self.title.setText(item.text())
        self.description.setText(item.data(Qt.UserRole + 1) or "")
        if stem not in self._previews:
            try:
                scene = preset_scene(self._paths[stem], self.theme)
                img = render_scene(scene, PREVIEW_W, PREVIEW_H,
                                   dpr=self.devicePixelRatioF(), margin=20)
                self._previews[stem] = QPixmap.fromImage(img)
                scene.detach()
            except StudioError as exc:
                self._previews[stem] = None
                self.description.setText(f"This preset cannot be read: {exc}")
        pm = self._previews[stem]
        self.preview.setPixmap(pm if pm is not None else QPixmap())
        self.open_button.setEnabled(pm is not None)

    def _accept(self):
        item = self.list.currentItem()
        if item is None:
            return
        self.chosen_path = self._paths[item.data(Qt.UserRole)]
        self.accept()
