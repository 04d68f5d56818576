"""The open document: graph, file path, undo stack, clean state, autosave and recent files.

The window shows a :class:`Document`; the controllers edit it. It knows nothing of
docks or dialogs: it raises on a failed save (the caller says why) and reports a
failed autosave through its :attr:`Document.message` signal.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, QStandardPaths, QTimer, Signal
from PySide6.QtGui import QUndoStack

from core import serialize
from core.analysis import GraphAnalysis
from core.errors import StudioError
from core.graph import Graph

APP_NAME = "Backprop Studio"
MAX_RECENT = 8
AUTOSAVE_DELAY_MS = 2000  # the longest an unsaved edit waits for its autosave
STALE_TMP_AGE_S = 600  # a temporary file of no known session this old is left over


def default_recovery_dir() -> Path:
    """The platform's app-data folder for autosave files."""
    base = QStandardPaths.writableLocation(QStandardPaths.AppDataLocation)
    return Path(base or Path.home() / ".backprop-studio") / "recovery"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


class RecoveryWriter:
    """Writes (and removes) a recovery file, in the background or at once, in edit order.

    A plain Python thread does the file work, so a slow disk never holds up the window;
    it touches no Qt object. Each request bumps a generation number under one lock,
    so a write that was overtaken (by a newer write, or by removing the file after a
    save) is dropped instead of bringing back an old autosave.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._generation = 0
        self.error: str | None = None  # the last failure, shown by the window

    def _next(self) -> int:
        with self._lock:
            self._generation += 1
            return self._generation

    def write_later(self, path: Path, text: str) -> threading.Thread:
        gen = self._next()
        t = threading.Thread(target=self._write, args=(path, text, gen),
                             name="autosave", daemon=True)
        t.start()
        return t

    def write_now(self, path: Path, text: str):
        self._write(path, text, self._next(), raise_errors=True)

    def _write(self, path: Path, text: str, gen: int, raise_errors=False):
        with self._lock:
            if gen != self._generation:
                return
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                serialize.atomic_write(path, text)
            except OSError as exc:
                if raise_errors:
                    raise
                self.error = str(exc)

    def remove(self, path: Path):
        self._next()
        with self._lock:  # waits for a write in progress, then removes what it wrote
            try:
                path.unlink()
            except OSError:
                pass


def remove_stale_temporary_files(folder: Path, alive=None) -> list:
    """Delete ``.*.tmp`` files a killed session left in ``folder``; the paths removed.

    A temporary file of a recovery file names its session's process id
    (``.autosave-PID.json.XXXX.tmp``): it is stale once that process is gone. Any
    other one is stale after :data:`STALE_TMP_AGE_S`.
    """
    alive = alive or _pid_alive
    removed = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for f in folder.glob(".*.tmp"):
        m = re.match(r"\.autosave-(\d+)\.json\.", f.name)
        try:
            stale = (not alive(int(m.group(1)))) if m else \
                now - f.stat().st_mtime > STALE_TMP_AGE_S
            if stale:
                f.unlink()
                removed.append(f)
        except OSError:
            continue
    return removed


class Document(QObject):
    """One graph being edited: its file, its history, its autosave.

    Parameters
    ----------
    settings : QSettings
        Where the recent-file list persists.
    recovery_dir : path, optional
        Folder for autosave files (default: :func:`default_recovery_dir`).
    pid : int, optional
        Process id stamped on the recovery file; a file whose process is gone is an
        orphan offered for restore at the next start.
    parent : QObject, optional
        Owner (the window).

    Attributes
    ----------
    graph : Graph
        The graph shown.
    analysis : GraphAnalysis
        Live facts about :attr:`graph` (replaced with the graph).
    undo_stack : QUndoStack
        Every edit of :attr:`graph`.
    modified_changed : Signal(bool)
        The unsaved state may have changed.
    title_changed : Signal()
        The path or the graph's name may have changed.
    message : Signal(str, int)
        A status message and how long to show it (ms), e.g. a failed autosave.
    """

    modified_changed = Signal(bool)
    title_changed = Signal()
    message = Signal(str, int)

    def __init__(self, settings: QSettings, recovery_dir=None, pid=None, parent=None):
        super().__init__(parent)
        self.settings = settings
        self.recovery_dir = Path(recovery_dir) if recovery_dir else default_recovery_dir()
        self.pid = pid or os.getpid()
        self.graph = Graph()
        self.analysis = GraphAnalysis(self.graph)
        self._path: Path | None = None
        self._recovered = False
        self.undo_stack = QUndoStack(self)
        self.undo_stack.cleanChanged.connect(self._on_clean_changed)
        self.undo_stack.indexChanged.connect(self._on_index_changed)

        self._autosave_timer = QTimer(self)
        self._autosave_timer.setSingleShot(True)
        self._autosave_timer.setInterval(AUTOSAVE_DELAY_MS)
        self._autosave_timer.timeout.connect(self._autosave_in_background)
        self._recovery_writer = RecoveryWriter()
        remove_stale_temporary_files(self.recovery_dir)

    # ------------------------------------------------------------ state
    @property
    def path(self) -> Path | None:
        """The file the graph was opened from or saved to (``None``: untitled)."""
        return self._path

    @path.setter
    def path(self, value):
        self._path = Path(value) if value else None
        self.title_changed.emit()

    @property
    def recovered(self) -> bool:
        """True while the graph is restored work that was never saved."""
        return self._recovered

    @recovered.setter
    def recovered(self, value: bool):
        self._recovered = bool(value)
        self._emit_modified()

    def is_modified(self) -> bool:
        """Whether there are changes a close would lose."""
        return self._recovered or not self.undo_stack.isClean()

    def _on_clean_changed(self, _clean):
        self._emit_modified()

    def _emit_modified(self):
        self.modified_changed.emit(self.is_modified())

    def _on_index_changed(self, _index):
        # not restarted by each edit: steady editing must not put the autosave off forever
        if not self._autosave_timer.isActive():
            self._autosave_timer.start()

    def set_graph(self, graph: Graph, path=None):
        """Make ``graph`` the document, clean, with an empty history and a new analysis."""
        self.undo_stack.clear()
        self.analysis.close()
        self.graph = graph
        self.analysis = GraphAnalysis(graph)
        self._path = Path(path) if path else None
        self._recovered = False
        self.undo_stack.setClean()
        self.title_changed.emit()

    def write(self, path):
        """Save the graph to ``path`` and make it the document's file (raises on failure).

        Raises
        ------
        OSError, StudioError, ValueError
            The file could not be written; the document is unchanged.
        """
        serialize.save_graph(self.graph, path)
        self._path = Path(path)
        self._recovered = False
        self.undo_stack.setClean()
        self.add_recent(self._path.resolve())
        self.clear_recovery()
        self.title_changed.emit()

    # ------------------------------------------------------------ recent files
    def recent_files(self) -> list:
        """Paths opened or saved lately, newest first."""
        value = self.settings.value("recent", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def add_recent(self, path: Path):
        """Put ``path`` first in the recent list (at most :data:`MAX_RECENT`)."""
        items = [p for p in self.recent_files() if p != str(path)]
        items.insert(0, str(path))
        self.settings.setValue("recent", items[:MAX_RECENT])

    def clear_recent(self):
        """Forget the recent files."""
        self.settings.setValue("recent", [])

    # ------------------------------------------------------------ recovery
    def recovery_file(self) -> Path:
        """This session's autosave file."""
        return self.recovery_dir / f"autosave-{self.pid}.json"

    def _recovery_text(self) -> str:
        data = json.loads(serialize.dumps(self.graph))
        data["recovery"] = {"pid": self.pid, "path": str(self.path) if self.path else None,
                            "time": time.time()}
        return json.dumps(data)

    def autosave_now(self):
        """Write the graph to the recovery file (or remove it when nothing is unsaved)."""
        if not self.is_modified():
            self.clear_recovery()
            return
        try:
            self._recovery_writer.write_now(self.recovery_file(), self._recovery_text())
        except (OSError, ValueError) as exc:
            self.message.emit(f"Autosave failed: {exc}", 6000)

    def _autosave_in_background(self):
        """The timer's autosave: the graph is read here, the file written on another thread."""
        writer = self._recovery_writer
        if writer.error:
            self.message.emit(f"Autosave failed: {writer.error}", 6000)
            writer.error = None
        if not self.is_modified():
            self.clear_recovery()
            return
        try:
            text = self._recovery_text()
        except ValueError as exc:
            self.message.emit(f"Autosave failed: {exc}", 6000)
            return
        return writer.write_later(self.recovery_file(), text)

    def stop_autosave(self):
        """No more timed autosaves (the window is closing)."""
        self._autosave_timer.stop()

    def clear_recovery(self):
        """Remove this session's recovery file (after a write in progress)."""
        self._recovery_writer.remove(self.recovery_file())

    def orphaned_recovery_files(self) -> list:
        """Recovery files left by a session that ended without closing (a crash)."""
        out = []
        if not self.recovery_dir.is_dir():
            return out
        for f in sorted(self.recovery_dir.glob("autosave-*.json")):
            try:
                pid = int(f.stem.split("-", 1)[1])
            except ValueError:
                continue
            if pid != self.pid and not _pid_alive(pid):
                out.append(f)
        return out

    def read_recovery(self):
        """The newest orphaned autosave as ``(graph, meta, files)``, or ``None``.

        ``meta`` holds the crashed session's ``path`` and ``time``; ``files`` are all
        orphans (see :meth:`discard_recovery`). Unreadable orphans are deleted.
        """
        files = self.orphaned_recovery_files()
        if not files:
            return None
        f = max(files, key=lambda p: p.stat().st_mtime)
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
            meta = data.pop("recovery", {}) or {}
            graph = serialize.loads(json.dumps(data), f)
        except (OSError, ValueError, StudioError):
            self.discard_recovery(files)
            return None
        meta.setdefault("time", f.stat().st_mtime)
        return graph, meta, files

    @staticmethod
    def discard_recovery(files):
        """Delete orphaned recovery ``files``."""
        for x in files:
            x.unlink(missing_ok=True)
