"""New, open, save, export, examples and crash recovery: the file dialogs of the window."""

from __future__ import annotations

import os
import time
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox

from app.document import APP_NAME, Document
from app.examples_dialog import ExamplesDialog
from core.errors import StudioError
from core.graph import Graph
from core.serialize import load_graph
from widgets.canvas import render_scene

FILE_FILTER = "Backprop Studio graphs (*.json);;All files (*)"


class FilesController(QObject):
    """Asks, opens and saves for the window; the document does the file work.

    Parameters
    ----------
    window : QWidget
        Parent of the dialogs (and of this controller).
    document : Document
        The document opened into and saved from.
    scene, view
        The canvas (export draws the scene; the view gets the focus back after a dialog).
    show_graph : callable
        ``show_graph(graph, path=None) -> bool`` shows a graph as the document; True when
        its cards overlapped and it was arranged again.
    theme : callable
        Returns the current theme (for the examples dialog).

    Attributes
    ----------
    message : Signal(str, int)
        A status message and how long to show it (ms).
    """

    message = Signal(str, int)

    def __init__(self, window, document: Document, scene, view, show_graph, theme):
        super().__init__(window)
        self.window = window
        self.document = document
        self.scene = scene
        self.view = view
        self.show_graph = show_graph
        self.theme = theme

    def take_focus_back(self):
        """After a dialog: the window active and the canvas focused again, so its shortcuts
        (Ctrl+E, Ctrl+T…) work at once (a closed dialog left no window active)."""
        self.window.activateWindow()
        self.window.raise_()
        self.view.setFocus(Qt.OtherFocusReason)

    def maybe_save(self) -> bool:
        """Ask about unsaved changes; False means the user cancelled."""
        if not self.document.is_modified():
            return True
        path = self.document.path
        name = path.name if path else "this graph"
        answer = QMessageBox.question(
            self.window, APP_NAME, f"Save the changes to {name} first?\n\n"
            "If you don't save, your changes will be lost.",
            QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel, QMessageBox.Save)
        if answer == QMessageBox.Save:
            return self.save()
        return answer == QMessageBox.Discard

    def new_file(self):
        if self.maybe_save():
            self.show_graph(Graph())
            self.document.clear_recovery()

    def open_file(self, path=None) -> bool:
        """Open ``path`` (or ask); a bad file shows why and keeps the current graph."""
        if path is None:
            current = self.document.path
            start = str(current.parent) if current else str(Path.home())
            path, _ = QFileDialog.getOpenFileName(self.window, "Open graph", start, FILE_FILTER)
            self.take_focus_back()
            if not path:
                return False
            if not self.maybe_save():
                return False
        elif not self.maybe_save():
            return False
        try:
            graph = load_graph(path)
        except StudioError as exc:
            QMessageBox.critical(self.window, "Cannot open the file",
                                 f"{exc}\n\nThe graph you were working on is unchanged.")
            return False
        except Exception as exc:  # noqa: BLE001 - any bad file must leave the graph intact
            QMessageBox.critical(self.window, "Cannot open the file",
                                 f"{path}: {type(exc).__name__}: {exc}\n\n"
                                 "The graph you were working on is unchanged.")
            return False
        rearranged = self.show_graph(graph, path)
        self.document.add_recent(Path(path).resolve())
        self.document.clear_recovery()
        note = (" — its cards overlapped, so it was arranged again (Auto Layout)"
                if rearranged else "")
        self.message.emit(f"Opened {path}{note}", 8000)
        return True

    def save(self) -> bool:
        if self.document.path is None:
            return self.save_as()
        return self._write(self.document.path)

    def save_as(self) -> bool:
        current = self.document.path
        start = str(current) if current else str(Path.home() / "graph.json")
        path, _ = QFileDialog.getSaveFileName(self.window, "Save graph as", start, FILE_FILTER)
        self.take_focus_back()
        if not path:
            return False
        if not Path(path).suffix:
            path += ".json"
        return self._write(Path(path))

    def _write(self, path: Path) -> bool:
        try:
            self.document.write(path)
        except (OSError, StudioError, ValueError) as exc:
            QMessageBox.critical(self.window, "Cannot save", f"{path}: {exc}")
            return False
        self.message.emit(f"Saved {path}", 4000)
        return True

    def export_picture(self):
        current = self.document.path
        start = str(current.with_suffix(".png") if current else Path.home() / "graph.png")
        path, _ = QFileDialog.getSaveFileName(self.window, "Export picture", start,
                                              "PNG pictures (*.png)")
        self.take_focus_back()
        if not path:
            return
        path = Path(path)
        if path.suffix.lower() != ".png":  # the dialog does not add it everywhere
            path = path.with_name(path.name + ".png")
        r = self.scene.content_rect()
        w = int(min(max(r.width() + 80, 400), 4000))
        h = int(min(max(r.height() + 80, 300), 4000))
        img = render_scene(self.scene, w, h, dpr=2.0)
        # written beside it and moved over it: a failed export leaves an older picture whole
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            if not img.save(str(tmp), "PNG"):
                raise OSError("the picture could not be written there")
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            reason = exc.strerror or str(exc)
            QMessageBox.critical(self.window, "Cannot export", f"Could not write {path}: {reason}")
            return
        self.message.emit(f"Exported the picture to {path}", 4000)

    def show_examples(self):
        dlg = ExamplesDialog(self.theme(), self.window)
        accepted = dlg.exec()
        self.take_focus_back()
        if accepted and dlg.chosen_path is not None:
            self.open_example(dlg.chosen_path)

    def open_example(self, path) -> bool:
        """Open a preset as a new untitled document (saving asks for a new name)."""
        if not self.open_file(path):
            return False
        self.document.path = None
        name = self.document.graph.name or Path(path).stem
        self.message.emit(f"Opened the example '{name}' as a new graph", 6000)
        return True

    def offer_recovery(self) -> bool:
        """Offer to restore unsaved work from a crashed session; True if restored."""
        found = self.document.read_recovery()
        if found is None:
            return False
        graph, meta, files = found
        when = time.strftime("%H:%M on %d %b", time.localtime(meta["time"]))
        orig = meta.get("path")
        what = f"'{Path(orig).name}'" if orig else "an unsaved graph"
        answer = QMessageBox.question(
            self.window, "Restore unsaved work?",
            f"Backprop Studio did not close properly last time.\n\nRestore the unsaved "
            f"changes to {what} ({len(graph.nodes)} nodes, autosaved at {when})?",
            QMessageBox.Yes | QMessageBox.No, QMessageBox.Yes)
        self.document.discard_recovery(files)
        if answer != QMessageBox.Yes:
            return False
        self.show_graph(graph, orig if orig and Path(orig).exists() else None)
        self.document.recovered = True
        self.document.autosave_now()
        self.message.emit("Restored the unsaved work; save it to keep it.", 8000)
        return True
