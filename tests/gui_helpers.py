"""Shared pieces of the GUI tests: a window with private settings, real mouse gestures."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, QSettings, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication, QMessageBox

from core.serialize import graph_to_dict


class DialogLog:
    """Stands in for QMessageBox's static functions so tests never block on a dialog."""

    def __init__(self, monkeypatch, answer=QMessageBox.Discard):
        self.calls = []
        self.answer = answer
        for kind in ("critical", "warning", "information", "question"):
            monkeypatch.setattr(QMessageBox, kind, self._make(kind))

    def _make(self, kind):
        def fake(_parent, title, text, *args, **kwargs):
            self.calls.append((kind, title, text))
            return self.answer if kind == "question" else QMessageBox.Ok
        return staticmethod(fake)

    def kinds(self):
        return [k for k, _, _ in self.calls]


@pytest.fixture
def dialogs(monkeypatch):
    return DialogLog(monkeypatch)


@pytest.fixture
def make_window(qtbot, tmp_path, dialogs):
    """A factory of main windows with their own settings file and recovery folder."""
    from app.main_window import MainWindow

    def make(pid=None, show=True):
        settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
        win = MainWindow(settings=settings, recovery_dir=tmp_path / "recovery", pid=pid)
        qtbot.addWidget(win)
        win.resize(1200, 800)
        if show:
            win.show()
            qtbot.waitExposed(win)
            # the window has finished starting: the plots it shows after its first frame
            # are in, and the docks have their sizes
            qtbot.waitUntil(win.train_panel.plots.is_made, timeout=5000)
            QApplication.processEvents()
        return win

    return make


def snapshot(graph) -> dict:
    """The graph as its file would hold it (what undo must restore exactly)."""
    return graph_to_dict(graph)


def viewport_point(win, scene_pos: QPointF) -> QPoint:
    return win.view.mapFromScene(scene_pos)


def _send(widget, kind, pos: QPoint, button, buttons):
    ev = QMouseEvent(kind, QPointF(pos), QPointF(widget.mapToGlobal(pos)), button, buttons,
                     Qt.NoModifier)
    QApplication.sendEvent(widget, ev)


def mouse_drag(win, start: QPointF, end: QPointF, steps: int = 8, after_move=None):
    """Press the left button at scene point ``start``, move to ``end`` and release there.

    ``after_move`` is called just before the release (to look at the canvas mid-drag).
    """
    vp = win.view.viewport()
    a, b = viewport_point(win, start), viewport_point(win, end)
    _send(vp, QEvent.MouseButtonPress, a, Qt.LeftButton, Qt.LeftButton)
    for i in range(1, steps + 1):
        p = QPoint(a.x() + (b.x() - a.x()) * i // steps, a.y() + (b.y() - a.y()) * i // steps)
        _send(vp, QEvent.MouseMove, p, Qt.NoButton, Qt.LeftButton)
    if after_move is not None:
        after_move()
    _send(vp, QEvent.MouseButtonRelease, b, Qt.LeftButton, Qt.NoButton)
    QApplication.processEvents()


def port_pos(win, node_name: str, port: str, output: bool) -> QPointF:
    node = win.document.graph.node(node_name)
    item = win.scene.nodes[node.id]
    ports = item.out_ports if output else item.in_ports
    return ports[port].scenePos()
