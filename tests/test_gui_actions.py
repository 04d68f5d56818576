"""Every menu command, triggered as its shortcut or menu entry would, on a window with a graph."""
# The fixtures come from gui_helpers; pytest passes them by name, which ruff reads as F811.
# ruff: noqa: F811

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from gui_helpers import dialogs, make_window  # noqa: F401
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox

from examples import example_path


def _menu_actions(menu, path=()):
    for a in menu.actions():
        if a.isSeparator():
            continue
        here = (*path, a.text().replace("&", ""))
        if a.menu() is not None:
            yield from _menu_actions(a.menu(), here)
        else:
            yield " ▸ ".join(here)


def _all_menu_paths() -> list:
    """The menu bar's commands, read from a real window (so a new one is tested too)."""
    from app.main_window import MainWindow

    _app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        win = MainWindow(settings=QSettings(str(Path(tmp) / "s.ini"), QSettings.IniFormat),
                         recovery_dir=Path(tmp) / "recovery")
        paths = [p for m in win.menuBar().actions() for p in _menu_actions(m.menu(),
                                                                            (m.text().replace(
                                                                                "&", ""),))]
        win.scene.detach()
        win.deleteLater()
    return paths


MENU_PATHS = _all_menu_paths()


def _find(win, path: str):
    parts = path.split(" ▸ ")
    actions = win.menuBar().actions()
    for part in parts:
        a = next(a for a in actions if a.text().replace("&", "") == part)
        actions = a.menu().actions() if a.menu() is not None else None
    return a


def test_the_menu_bar_is_read():
    """the parametrized list holds the menus' commands (Paste among them)"""
    assert "Edit ▸ Paste" in MENU_PATHS and "Train ▸ Train" in MENU_PATHS
    assert len(MENU_PATHS) > 30


@pytest.mark.parametrize("path", MENU_PATHS)
def test_every_menu_command_runs_without_an_error(make_window, qtbot, monkeypatch, tmp_path,
                                                  path):
    """choosing any menu command on LeNet-5 with three cards selected and a copied card
    raises nothing (dialogs answered at once)"""
    from app.examples_dialog import ExamplesDialog

    monkeypatch.setattr(QMessageBox, "about", staticmethod(lambda *a, **k: None))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: ("", "")))
    out = tmp_path / "out"
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda _p, _t, start, flt="": (
                            str(out) + (".png" if "png" in start else ".json"), "")))
    monkeypatch.setattr(ExamplesDialog, "exec", lambda self: 0)
    win = make_window()
    assert win.files.open_example(example_path("lenet5"))
    names = ["conv1", "pool1", "conv2"]
    win.editing.select_nodes([win.document.graph.node(n).id for n in names])
    assert win.editing.copy()
    win.view.setFocus()
    action = _find(win, path)
    with qtbot.capture_exceptions() as errors:
        if action.isEnabled():
            action.trigger()
        QApplication.processEvents()
        win.training.stop_training(wait=True)
        QApplication.processEvents()
    assert not errors, "".join(str(e[1]) for e in errors)


def test_ctrl_v_pastes_the_copied_cards_under_the_cursor(make_window, qtbot):
    """Ctrl+V (Edit ▸ Paste) after Ctrl+C adds a renamed copy of the selected card"""
    win = make_window()
    assert win.files.open_example(example_path("lenet5"))
    before = len(win.document.graph.nodes)
    win.editing.select_nodes([win.document.graph.node("conv1").id])
    win.act_copy.trigger()
    with qtbot.capture_exceptions() as errors:
        win.act_paste.trigger()
    assert not errors
    assert len(win.document.graph.nodes) == before + 1
    assert win.document.undo_stack.undoText().startswith("Paste")
