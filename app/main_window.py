"""The main window: canvas, palette, inspector, undo history, files and preferences.

Edits flow one way: a gesture in a view emits a request, the window turns it
into a :mod:`app.commands` command on the undo stack, the command calls the
:class:`core.graph.Graph`, and the graph's events update the views.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from pathlib import Path

from PySide6.QtCore import QByteArray, QPointF, QSettings, QStandardPaths, Qt, QTimer
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QGuiApplication,
    QKeySequence,
    QUndoCommand,
    QUndoStack,
)
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QUndoView,
)

from app import __version__
from app.commands import (
    AddNodeCommand,
    AddSubgraphCommand,
    ConnectCommand,
    ConnectPendingCommand,
    MacroCommand,
    MoveNodesCommand,
    RemoveCommand,
    RenameCommand,
    SetLossCommand,
    SetMetaCommand,
    SetParamsCommand,
    SetTrainedWeightsCommand,
    SetValueCommand,
    clone_nodes,
    subgraph_dict,
)
from app.training import TrainingWorker
from core.errors import StudioError
from core.graph import Edge, Graph
from core.layout import layered_layout
from core.ops import REGISTRY, get_op
from core.ops.base import fmt_shape, numel
from core.serialize import dumps, load_graph, loads, save_graph
from core.train import OPTIMIZERS
from core.train.recipe import DEFAULT_LR, training_problem
from widgets.canvas import GRID, NODE_MIN_W, EdgeItem, GraphScene, GraphView, NodeItem
from widgets.inspector import Inspector
from widgets.palette import Palette
from widgets.quick_add import QuickAdd
from widgets.theme import get_theme, qpalette, style_sheet
from widgets.train_panel import TrainPanel

APP_NAME = "Backprop Studio"
FILE_FILTER = "Backprop Studio graphs (*.json);;All files (*)"
MAX_RECENT = 8
AUTOSAVE_DELAY_MS = 2000  # the longest an unsaved edit waits for its autosave
STALE_TMP_AGE_S = 600  # a temporary file of no known session this old is left over


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
        from core.serialize import atomic_write  # noqa: PLC0415

        with self._lock:
            if gen != self._generation:
                return
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, text)
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


def default_recovery_dir() -> Path:
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


class MainWindow(QMainWindow):
    """The node editor.

    Parameters
    ----------
    settings : QSettings, optional
        Where preferences and the window layout persist (tests pass a temporary file).
    recovery_dir : path, optional
        Folder for autosave files (default: the platform's app-data folder).
    pid : int, optional
        Process id stamped on this window's recovery file; a file whose process is
        gone is offered for restore at the next start.
    """

    def __init__(self, settings: QSettings | None = None, recovery_dir=None, pid=None):
        super().__init__()
        self.settings = settings or QSettings()
        self.recovery_dir = Path(recovery_dir) if recovery_dir else default_recovery_dir()
        self.pid = pid or os.getpid()
        self.path: Path | None = None
        self.graph = Graph()
        self._recovered = False
        self.rearranged_on_open = False
        self._clipboard_fallback = None
        self.theme = get_theme(self.settings.value("theme", "light"))
        self.undo_stack = QUndoStack(self)
        self.undo_stack.cleanChanged.connect(self._on_clean_changed)
        self.undo_stack.indexChanged.connect(self._on_history_changed)

        self.scene = GraphScene(self.graph, self.theme, self)
        self.scene.snap_to_grid = self.settings.value("snap", False, type=bool)
        self.view = GraphView(self.scene, self)
        self.setCentralWidget(self.view)
        self.palette = Palette(self.theme)
        self.inspector = Inspector()
        self.undo_view = QUndoView(self.undo_stack)
        self.undo_view.setEmptyLabel("<original graph>")
        self.quick_add = QuickAdd(self.theme, self)
        self.quick_add.chosen.connect(self._on_quick_add_chosen)
        self._quick_ctx = None
        self.train_panel = TrainPanel(self.theme, DEFAULT_LR, OPTIMIZERS)
        self.train_panel.dialog_closed.connect(self.take_focus_back)
        self._worker: TrainingWorker | None = None

        self._make_docks()
        self._make_actions()
        self._make_menus()
        self._make_toolbar()
        self._make_status_bar()
        self._connect_views()
        self.setAcceptDrops(True)
        self.resize(1400, 880)
        self._restore_settings()
        self._apply_theme()

        self._autosave_timer = QTimer(self)
        self._autosave_timer.setSingleShot(True)
        self._autosave_timer.setInterval(AUTOSAVE_DELAY_MS)
        self._autosave_timer.timeout.connect(self._autosave_in_background)
        self._recovery_writer = RecoveryWriter()
        remove_stale_temporary_files(self.recovery_dir)
        self._update_title()
        self._on_selection_changed()

    # =============================================================== set-up
    def _make_docks(self):
        def dock(title, widget, area, name):
            d = QDockWidget(title, self)
            d.setObjectName(name)
            d.setWidget(widget)
            d.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetClosable
                          | QDockWidget.DockWidgetFloatable)
            self.addDockWidget(area, d)
            return d

        self.palette_dock = dock("Palette", self.palette, Qt.LeftDockWidgetArea, "palette")
        self.inspector_dock = dock("Inspector", self.inspector, Qt.RightDockWidgetArea,
                                   "inspector")
        self.history_dock = dock("History", self.undo_view, Qt.RightDockWidgetArea, "history")
        self.overview_dock = dock("Overview", self.view.minimap, Qt.RightDockWidgetArea,
                                  "overview")
        self.tabifyDockWidget(self.history_dock, self.overview_dock)
        self.history_dock.raise_()
        self.train_dock = dock("Training", self.train_panel, Qt.BottomDockWidgetArea, "training")
        self.resizeDocks([self.palette_dock], [240], Qt.Horizontal)
        self.resizeDocks([self.inspector_dock], [320], Qt.Horizontal)
        self.resizeDocks([self.inspector_dock, self.history_dock], [640, 170], Qt.Vertical)

    def _action(self, text, slot, shortcut=None, canvas=False, tip=None, checkable=False):
        a = QAction(text, self)
        if shortcut is not None:
            if isinstance(shortcut, (list, tuple)):
                a.setShortcuts([QKeySequence(s) for s in shortcut])
            else:
                a.setShortcut(QKeySequence(shortcut))
        if canvas:
            # only while the canvas has focus, so text fields keep Delete, Tab, Ctrl+C…
            a.setShortcutContext(Qt.WidgetWithChildrenShortcut)
            self.view.addAction(a)
        if tip:
            a.setStatusTip(tip)
        a.setCheckable(checkable)
        if checkable:
            a.triggered.connect(slot)
        else:
            # triggered(bool) would hand its `checked` flag to the slot's first parameter
            # (Paste took False for its position)
            a.triggered.connect(lambda _checked=False, slot=slot: slot())
        return a

    def _make_actions(self):
        K = QKeySequence
        self.act_new = self._action("&New", self.new_file, K.New, tip="Start an empty graph")
        self.act_open = self._action("&Open…", lambda: self.open_file(), K.Open)
        self.act_examples = self._action("&Examples…", self.show_examples, "Ctrl+E",
                                         tip="Open one of the preset graphs")
        self.act_save = self._action("&Save", self.save, K.Save)
        self.act_save_as = self._action("Save &As…", self.save_as, K.SaveAs)
        self.act_export = self._action("Export &Picture…", self.export_picture, "Ctrl+Shift+E")
        self.act_quit = self._action("&Quit", self.close, K.Quit)

        self.act_undo = self.undo_stack.createUndoAction(self, "&Undo")
        self.act_undo.setShortcut(K.Undo)
        self.act_redo = self.undo_stack.createRedoAction(self, "&Redo")
        self.act_redo.setShortcuts([K("Ctrl+Y"), K("Ctrl+Shift+Z")])
        self.act_cut = self._action("Cu&t", self.cut, K.Cut, canvas=True)
        self.act_copy = self._action("&Copy", self.copy, K.Copy, canvas=True)
        self.act_paste = self._action("&Paste", self.paste, K.Paste, canvas=True)
        self.act_duplicate = self._action("&Duplicate", self.duplicate, "Ctrl+D", canvas=True)
        self.act_delete = self._action("De&lete", self.delete_selection,
                                       [K(Qt.Key_Delete), K(Qt.Key_Backspace)], canvas=True)
        self.act_select_all = self._action("Select &All", self.select_all, K.SelectAll,
                                           canvas=True)
        self.act_add = self._action("&Add Node…", self.quick_add_at_cursor, K(Qt.Key_Tab),
                                    canvas=True, tip="Search ops and add one at the cursor")

        self.act_fit = self._action("&Fit to View", self._fit_to_view, "F",
                                    canvas=True)
        self.act_zoom_in = self._action("Zoom &In", lambda: self.view.zoom_by(1.25),
                                        [K.ZoomIn, K("Ctrl+=")])
        self.act_zoom_out = self._action("Zoom &Out", lambda: self.view.zoom_by(0.8), K.ZoomOut)
        self.act_zoom_reset = self._action("&Actual Size", self._actual_size,
                                           "Ctrl+0")
        self.act_snap = self._action("&Snap to Grid", self.set_snap, "Ctrl+Shift+G",
                                     checkable=True)
        self.act_snap.setChecked(self.scene.snap_to_grid)
        self.act_minimap = self.overview_dock.toggleViewAction()
        self.act_minimap.setText("&Overview Map")
        self.act_minimap.setShortcut(QKeySequence("Ctrl+Shift+M"))
        self.theme_group = QActionGroup(self)
        self.act_light = self._action("&Light", lambda: self.set_theme("light"), checkable=True)
        self.act_dark = self._action("&Dark", lambda: self.set_theme("dark"), checkable=True)
        for a in (self.act_light, self.act_dark):
            self.theme_group.addAction(a)
        (self.act_dark if self.theme.dark else self.act_light).setChecked(True)

        self.act_layout = self._action("Auto &Layout", self.auto_layout, "Ctrl+L",
                                       tip="Arrange the graph in layers, left to right")
        self.align_actions = [
            self._action("Align &Left", lambda: self.align("left"), "Ctrl+Alt+Left"),
            self._action("Align &Right", lambda: self.align("right"), "Ctrl+Alt+Right"),
            self._action("Align &Top", lambda: self.align("top"), "Ctrl+Alt+Up"),
            self._action("Align &Bottom", lambda: self.align("bottom"), "Ctrl+Alt+Down"),
            self._action("Align Centres &Horizontally", lambda: self.align("hcenter")),
            self._action("Align Centres &Vertically", lambda: self.align("vcenter")),
        ]
        self.distribute_actions = [
            self._action("Distribute &Horizontally", lambda: self.distribute("x"),
                         "Ctrl+Alt+H"),
            self._action("Distribute &Vertically", lambda: self.distribute("y"), "Ctrl+Alt+V"),
        ]
        self.act_train = self._action("&Train", self.train_panel.request_start, "Ctrl+T",
                                      tip="Train the graph with the settings in the Training "
                                          "panel")
        self.act_stop_training = self._action("&Stop Training", lambda: self.stop_training(),
                                              "Ctrl+Shift+T")
        self.act_stop_training.setEnabled(False)
        self.act_about = self._action("&About Backprop Studio", self.about)
        self.act_shortcuts = self._action("&Keyboard Shortcuts", self.show_shortcuts,
                                          K.HelpContents)

    def _make_menus(self):
        mb = self.menuBar()
        m = mb.addMenu("&File")
        m.addActions([self.act_new, self.act_open])
        self.recent_menu = m.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        m.addAction(self.act_examples)
        m.addSeparator()
        m.addActions([self.act_save, self.act_save_as, self.act_export])
        m.addSeparator()
        m.addAction(self.act_quit)
        m = mb.addMenu("&Edit")
        m.addActions([self.act_undo, self.act_redo])
        m.addSeparator()
        m.addActions([self.act_cut, self.act_copy, self.act_paste, self.act_duplicate,
                      self.act_delete])
        m.addSeparator()
        m.addActions([self.act_select_all, self.act_add])
        m = mb.addMenu("&View")
        m.addActions([self.act_fit, self.act_zoom_in, self.act_zoom_out, self.act_zoom_reset])
        m.addSeparator()
        m.addActions([self.act_snap, self.act_minimap])
        tm = m.addMenu("&Theme")
        tm.addActions([self.act_light, self.act_dark])
        m.addSeparator()
        for d in (self.palette_dock, self.inspector_dock, self.history_dock, self.train_dock):
            m.addAction(d.toggleViewAction())
        m = mb.addMenu("&Arrange")
        m.addAction(self.act_layout)
        m.addSeparator()
        m.addActions(self.align_actions)
        m.addSeparator()
        m.addActions(self.distribute_actions)
        m = mb.addMenu("&Train")
        m.addActions([self.act_train, self.act_stop_training])
        m.addSeparator()
        m.addAction(self.train_dock.toggleViewAction())
        m = mb.addMenu("&Help")
        m.addActions([self.act_shortcuts, self.act_about])

    def _make_toolbar(self):
        tb = self.addToolBar("Main")
        tb.setObjectName("main_toolbar")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        tb.addActions([self.act_new, self.act_open, self.act_save])
        tb.addSeparator()
        tb.addActions([self.act_undo, self.act_redo])
        tb.addSeparator()
        tb.addActions([self.act_fit, self.act_layout, self.act_examples])
        tb.addSeparator()
        tb.addAction(self.act_train)

    def _make_status_bar(self):
        sb = self.statusBar()
        self.totals_label = QLabel()
        self.zoom_label = QLabel()
        sb.addPermanentWidget(self.totals_label)
        sb.addPermanentWidget(self.zoom_label)
        # a fixed size: a label that may change size re-lays out the whole window (docks
        # included) each time its text changes, ~1 ms of every wheel-zoom frame
        self.zoom_label.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
        self._fit_zoom_label()
        self._on_zoom(self.view.zoom)

    def _fit_zoom_label(self):
        """Size the zoom readout for its widest text, with the style sheet's padding (applied
        after the status bar is made: sized before it, "100 %" showed as "00 %")."""
        label = self.zoom_label
        text = label.text()
        label.setMinimumSize(0, 0)
        label.setMaximumSize(16777215, 16777215)
        label.setText("8888 %")
        label.ensurePolished()
        label.setFixedSize(label.sizeHint())
        label.setText(text)

    def _connect_views(self):
        sc = self.scene
        sc.connect_requested.connect(self.connect_edge)
        sc.rewire_requested.connect(self.rewire)
        sc.connect_with_flatten_requested.connect(self.connect_through_flatten)
        sc.nodes_moved.connect(self._on_nodes_moved)
        sc.quick_add_requested.connect(self.open_quick_add)
        sc.shapes_updated.connect(self._on_shapes_updated)
        sc.connection_refused.connect(
            lambda msg: self.statusBar().showMessage("Not connected: " + msg, 8000))
        sc.node_activated.connect(self._focus_name)
        sc.selectionChanged.connect(self._on_selection_changed)
        v = self.view
        v.op_dropped.connect(self.add_op)
        v.file_dropped.connect(self.open_file)
        v.quick_add_at.connect(self.open_quick_add)
        v.zoom_changed.connect(self._on_zoom)
        v.context_menu_requested.connect(self._context_menu)
        self.palette.op_activated.connect(
            lambda op: self.add_op(op, self.scene.free_spot(self.view.visible_rect().center())))
        ins = self.inspector
        ins.params_edited.connect(self.set_params)
        ins.rename_requested.connect(self.rename_node)
        ins.value_edited.connect(self.set_value)
        ins.loss_requested.connect(self.set_loss)
        ins.quick_fix_requested.connect(self.apply_quick_fix)
        ins.meta_edited.connect(self.set_meta)
        tp = self.train_panel
        tp.start_requested.connect(self.start_training)
        tp.pause_toggled.connect(self.pause_training)
        tp.stop_requested.connect(self.stop_training)

    # =========================================================== settings
    def _restore_settings(self):
        geo = self.settings.value("geometry")
        if isinstance(geo, QByteArray) and not geo.isEmpty():
            self.restoreGeometry(geo)
        state = self.settings.value("window_state")
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state)
        else:
            # first start: room for the training plots and controls (docks can only be
            # sized once the window is laid out)
            QTimer.singleShot(0, lambda: self.resizeDocks([self.train_dock], [350],
                                                          Qt.Vertical))

    def _save_settings(self):
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("window_state", self.saveState())
        self.settings.setValue("theme", self.theme.name)
        self.settings.setValue("snap", self.scene.snap_to_grid)
        self.settings.sync()

    def recent_files(self) -> list:
        value = self.settings.value("recent", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def _add_recent(self, path: Path):
        items = [p for p in self.recent_files() if p != str(path)]
        items.insert(0, str(path))
        self.settings.setValue("recent", items[:MAX_RECENT])

    def _fill_recent_menu(self):
        self.recent_menu.clear()
        files = self.recent_files()
        if not files:
            a = self.recent_menu.addAction("No recent files")
            a.setEnabled(False)
            return
        for i, f in enumerate(files):
            a = self.recent_menu.addAction(f"&{i + 1}  {Path(f).name}")
            a.setToolTip(f)
            a.setStatusTip(f)
            a.triggered.connect(lambda _c=False, f=f: self.open_file(f))
        self.recent_menu.addSeparator()
        self.recent_menu.addAction("Clear Recent Files",
                                   lambda: self.settings.setValue("recent", []))

    # ============================================================== themes
    def set_theme(self, name: str):
        self.theme = get_theme(name)
        self._apply_theme()
        self.settings.setValue("theme", self.theme.name)

    def _apply_theme(self):
        from widgets.icons import action_icon  # noqa: PLC0415

        ink = self.theme.color("text")
        for name, act in (("new", self.act_new), ("open", self.act_open),
                          ("save", self.act_save), ("undo", self.act_undo),
                          ("redo", self.act_redo), ("fit", self.act_fit),
                          ("layout", self.act_layout), ("examples", self.act_examples),
                          ("train", self.act_train)):
            act.setIcon(action_icon(name, ink))
        app = QApplication.instance()
        if app is not None:
            app.setPalette(qpalette(self.theme))
            app.setStyleSheet(style_sheet(self.theme))
        self._fit_zoom_label()
        self.scene.set_theme(self.theme)
        self.palette.set_theme(self.theme)
        self.train_panel.set_theme(self.theme)
        self.quick_add.theme = self.theme
        self.view.resetCachedContent()
        self.view.viewport().update()
        (self.act_dark if self.theme.dark else self.act_light).setChecked(True)

    def set_snap(self, on: bool):
        self.scene.snap_to_grid = bool(on)
        self.act_snap.setChecked(bool(on))
        self.settings.setValue("snap", bool(on))

    def _fit_to_view(self):
        self.view.keep_view()  # the user's own fit: not redone when the window resizes
        self.view.fit_to_view()

    def _actual_size(self):
        self.view.keep_view()
        self.view.set_zoom(1.0)

    def set_minimap(self, on: bool):
        self.overview_dock.setVisible(bool(on))

    # ============================================================== status
    def _on_zoom(self, z):
        self.zoom_label.setText(f"{z * 100:.0f} %")

    def _on_shapes_updated(self, report):
        g = self.graph
        # counted from the report at hand (Graph.parameter_count would infer shapes again)
        params = sum(report.params_of(nid) for nid in g.nodes)
        for node in g.nodes.values():
            if node.op_id == "parameter" and node.params.get("trainable", True):
                params += numel(g.source_shape(node))
        macs = sum(report.macs.values())
        errors = len(report.errors)
        text = (f"{len(g.nodes)} nodes · {len(g.edges)} connections · {params:,} parameters · "
                f"{_human(macs)} multiply-adds per sample")
        if errors:
            text += f" · ⚠ {errors} error{'s' * (errors > 1)}"
        self.totals_label.setText(text)
        self._refresh_inspector()
        self.train_panel.set_problem(training_problem(g))

    def _on_clean_changed(self, _clean):
        self._update_title()

    def _on_history_changed(self, _index):
        self.scene.flush_edges()  # one re-route per edit, however many nodes it moved
        self._update_title()
        # an edit that changes no shape (choosing the loss) must update it too
        self.train_panel.set_problem(training_problem(self.graph))
        # not restarted by each edit: steady editing must not put the autosave off forever
        if not self._autosave_timer.isActive():
            self._autosave_timer.start()

    def is_modified(self) -> bool:
        return self._recovered or not self.undo_stack.isClean()

    def _update_title(self):
        name = self.path.name if self.path else (self.graph.name or "Untitled")
        self.setWindowTitle(f"{name}[*] — {APP_NAME}")
        self.setWindowModified(self.is_modified())

    # =========================================================== selection
    def selected_node_ids(self) -> list:
        ids = {it.node_id for it in self.scene.selected_nodes()}
        return [nid for nid in self.graph.nodes if nid in ids]

    def _on_selection_changed(self):
        self._refresh_inspector()

    def _refresh_inspector(self):
        ids = self.selected_node_ids()
        nid = ids[0] if len(ids) == 1 else None
        fix = self.scene.quick_fix(nid) if nid else None
        self.inspector.show_node(self.graph, nid, self.scene.report, fix[1] if fix else None)

    def _focus_name(self, node_id):
        self.scene.clearSelection()
        self.scene.nodes[node_id].setSelected(True)
        self.inspector_dock.show()
        w = self.inspector.editor("__name__")
        w.setFocus()
        w.selectAll()

    def select_all(self):
        for item in self.scene.nodes.values():
            item.setSelected(True)

    def select_nodes(self, node_ids):
        self.scene.clearSelection()
        for nid in node_ids:
            if nid in self.scene.nodes:
                self.scene.nodes[nid].setSelected(True)

    # ============================================================== edits
    def push(self, command) -> bool:
        """Put a command (or a function building one) on the undo stack.

        Commands check their input when they are built, so a refused edit is
        reported here and never reaches the stack half done.
        """
        if not isinstance(command, QUndoCommand):
            command = self.build(command)
            if command is None:
                return False
        self.undo_stack.push(command)
        return True

    def build(self, factory):
        """``factory()``, or ``None`` after showing why the edit is refused."""
        try:
            return factory()
        except StudioError as exc:
            self.statusBar().showMessage(str(exc), 8000)
            self.inspector.show_param_error(str(exc))
            return None

    def add_op(self, op_id: str, scene_pos: QPointF, **kw):
        """Add ``op_id`` with its card's header centred under ``scene_pos``."""
        if op_id not in REGISTRY:
            return None
        pos = self._card_origin(scene_pos)
        cmd = self.build(lambda: AddNodeCommand(self.graph, op_id, pos, **kw))
        if cmd is None:
            return None
        self.push(cmd)
        self.select_nodes([cmd.node.id])
        return cmd.node

    def _card_origin(self, scene_pos: QPointF, x_off=NODE_MIN_W / 2, y_off=14.0):
        x, y = scene_pos.x() - x_off, scene_pos.y() - y_off
        if self.scene.snap_to_grid:
            x, y = round(x / GRID) * GRID, round(y / GRID) * GRID
        return (x, y)

    def connect_edge(self, edge: Edge):
        self.push(ConnectCommand(self.graph, edge))

    def rewire(self, old: Edge, new: Edge | None):
        """Move a wire to another input (``new``), or take it out (``None``)."""
        g = self.graph
        what = f"'{g.nodes[old.src].name}' → '{g.nodes[old.dst].name}.{old.dst_port}'"
        if new is None:
            self.push(RemoveCommand(g, edges=[old], text=f"Disconnect {what}"))
            return
        remove = RemoveCommand(g, edges=[old])
        self.push(MacroCommand(f"Move wire {what} to '{g.nodes[new.dst].name}.{new.dst_port}'",
                               [remove, ConnectCommand(g, new)]))

    def connect_ports(self, src, dst, dst_port=None, src_port=None) -> bool:
        """Connect like a drop would, with the same checks; returns whether it connected."""
        src_id, dst_id = self.graph.node(src).id, self.graph.node(dst).id
        dst_port = dst_port or self.graph.nodes[dst_id].input_ports[0]
        src_port = src_port or self.graph.nodes[src_id].output_ports[0]
        edge, msg, fixable = self.scene.check_connection(src_id, src_port, dst_id, dst_port)
        if edge is None:
            if fixable:
                self.connect_through_flatten(src_id, src_port, dst_id, dst_port)
                return True
            self.scene.last_refusal = msg
            self.statusBar().showMessage("Not connected: " + msg, 8000)
            return False
        self.connect_edge(edge)
        return True

    def connect_through_flatten(self, src_id, src_port, dst_id, dst_port, replace=None):
        """Connect ``src`` to ``dst`` through a new Flatten node (the obvious shape fix)."""
        g = self.graph
        si, di = self.scene.nodes[src_id], self.scene.nodes[dst_id]
        x = (si.pos().x() + si.width + di.pos().x()) / 2 - NODE_MIN_W / 2
        y = di.pos().y() + di.port_y(dst_port, False) - 50
        pos = self.scene.free_spot(QPointF(x, y))
        steps = [] if replace is None else [RemoveCommand(g, edges=[replace])]
        add = AddNodeCommand(g, "flatten", (pos.x(), pos.y()))
        steps += [add,
                  ConnectPendingCommand(g, src_id, lambda: add.node.id, src_port=src_port),
                  ConnectPendingCommand(g, lambda: add.node.id, dst_id, dst_port=dst_port)]
        self.push(MacroCommand(f"Insert Flatten before '{g.nodes[dst_id].name}'", steps))

    def apply_quick_fix(self, node_id):
        fix = self.scene.quick_fix(node_id)
        if fix is None:
            return
        port = fix[0]
        e = self.graph.in_edges(node_id)[port]
        self.connect_through_flatten(e.src, e.src_port, node_id, port, replace=e)

    def set_params(self, node_id, changes: dict):
        self.push(lambda: SetParamsCommand(self.graph, node_id, changes))

    def set_value(self, node_id, value):
        self.push(lambda: SetValueCommand(self.graph, node_id, value))

    def rename_node(self, node_id, name):
        if not self.push(lambda: RenameCommand(self.graph, node_id, name)):
            self._refresh_inspector()

    def set_loss(self, node_id):
        if node_id != self.graph.loss:
            self.push(SetLossCommand(self.graph, node_id))

    def set_meta(self, name, description):
        self.push(SetMetaCommand(self.graph, name, description))
        self._update_title()

    def _on_nodes_moved(self, moves: dict):
        self.push(MoveNodesCommand(self.graph, moves))

    def delete_selection(self):
        nodes = self.selected_node_ids()
        edges = [it.edge for it in self.scene.selected_edges()
                 if it.edge.src not in nodes and it.edge.dst not in nodes]
        if nodes or edges:
            self.push(RemoveCommand(self.graph, nodes, edges))

    # ------------------------------------------------------------ clipboard
    def copy(self) -> bool:
        ids = self.selected_node_ids()
        if not ids:
            return False
        text = json.dumps(subgraph_dict(self.graph, ids))
        self._clipboard_fallback = text
        # Plain text (the graph-file JSON of the selection), not a QMimeData of our own:
        # PySide6 crashes at exit when the clipboard still owns a Python-made QMimeData.
        QGuiApplication.clipboard().setText(text)
        self.statusBar().showMessage(f"Copied {len(ids)} node{'s' * (len(ids) > 1)}", 3000)
        return True

    def cut(self):
        if self.copy():
            self.push(RemoveCommand(self.graph, self.selected_node_ids(), text="Cut"))

    def _clipboard_text(self):
        md = QGuiApplication.clipboard().mimeData()
        if md is not None and md.hasText() and md.text().lstrip().startswith("{"):
            return md.text()
        return self._clipboard_fallback

    def paste(self, at: QPointF | None = None):
        text = self._clipboard_text()
        if not text:
            return
        try:
            data = json.loads(text)
            nodes, positions, edges = clone_nodes(self.graph, data, offset=(0, 0))
        except (ValueError, StudioError) as exc:
            self.statusBar().showMessage(f"The clipboard holds no nodes ({exc})", 5000)
            return
        if positions:
            left = min(p[0] for p in positions.values())
            top = min(p[1] for p in positions.values())
            target = at if at is not None else self.view.cursor_scene_pos()
            dx, dy = target.x() - left, target.y() - top
            positions = {k: (x + dx, y + dy) for k, (x, y) in positions.items()}
        self._add_subgraph(nodes, positions, edges, "Paste")

    def duplicate(self):
        ids = self.selected_node_ids()
        if not ids:
            return
        nodes, positions, edges = clone_nodes(self.graph, subgraph_dict(self.graph, ids),
                                              offset=(GRID * 2, GRID * 2))
        self._add_subgraph(nodes, positions, edges, "Duplicate")

    def _add_subgraph(self, nodes, positions, edges, text):
        n = len(nodes)
        if self.push(AddSubgraphCommand(self.graph, nodes, positions, edges,
                                        f"{text} {n} node{'s' * (n > 1)}")):
            self.select_nodes([node.id for node in nodes])

    # ------------------------------------------------------------ arrange
    def layout_positions(self) -> dict:
        """Where :func:`app.layout.layered_layout` would put every node now."""
        items = self.scene.nodes
        sizes = {nid: (it.width, it.height) for nid, it in items.items()}
        return layered_layout(self.graph, sizes,
                              lambda nid, port, out: items[nid].port_y(port, out))

    def auto_layout(self):
        pos = self.layout_positions()
        moves = {nid: (self.graph.layout.get(nid), p) for nid, p in pos.items()
                 if self.graph.layout.get(nid) != p}
        if moves:
            self.push(MoveNodesCommand(self.graph, moves, text="Auto layout"))
        self.view.fit_to_view()

    def align(self, how: str):
        items = self.scene.selected_nodes()
        if len(items) < 2:
            self.statusBar().showMessage("Select two or more nodes to align them", 4000)
            return
        rects = {it.node_id: it.scene_card_rect() for it in items}
        if how == "left":
            v = min(r.left() for r in rects.values())
            new = {k: (v, r.top()) for k, r in rects.items()}
        elif how == "right":
            v = max(r.right() for r in rects.values())
            new = {k: (v - r.width(), r.top()) for k, r in rects.items()}
        elif how == "top":
            v = min(r.top() for r in rects.values())
            new = {k: (r.left(), v) for k, r in rects.items()}
        elif how == "bottom":
            v = max(r.bottom() for r in rects.values())
            new = {k: (r.left(), v - r.height()) for k, r in rects.items()}
        elif how == "hcenter":  # centres on one vertical line
            v = sum(r.center().x() for r in rects.values()) / len(rects)
            new = {k: (v - r.width() / 2, r.top()) for k, r in rects.items()}
        else:  # centres on one horizontal line
            v = sum(r.center().y() for r in rects.values()) / len(rects)
            new = {k: (r.left(), v - r.height() / 2) for k, r in rects.items()}
        self._move_to(new, f"Align {how}")

    def distribute(self, axis: str):
        items = self.scene.selected_nodes()
        if len(items) < 3:
            self.statusBar().showMessage("Select three or more nodes to distribute them", 4000)
            return
        rects = sorted(((it.node_id, it.scene_card_rect()) for it in items),
                       key=lambda kr: kr[1].left() if axis == "x" else kr[1].top())
        if axis == "x":
            span = rects[-1][1].right() - rects[0][1].left()
            gap = (span - sum(r.width() for _, r in rects)) / (len(rects) - 1)
            at, new = rects[0][1].left(), {}
            for k, r in rects:
                new[k] = (at, r.top())
                at += r.width() + gap
        else:
            span = rects[-1][1].bottom() - rects[0][1].top()
            gap = (span - sum(r.height() for _, r in rects)) / (len(rects) - 1)
            at, new = rects[0][1].top(), {}
            for k, r in rects:
                new[k] = (r.left(), at)
                at += r.height() + gap
        self._move_to(new, "Distribute " + ("horizontally" if axis == "x" else "vertically"))

    def _move_to(self, new: dict, text: str):
        moves = {k: (self.graph.layout.get(k), (round(x, 3), round(y, 3)))
                 for k, (x, y) in new.items()
                 if self.graph.layout.get(k) != (round(x, 3), round(y, 3))}
        if moves:
            self.push(MoveNodesCommand(self.graph, moves, text=text))

    # ------------------------------------------------------------ quick add
    def quick_add_at_cursor(self):
        self.open_quick_add(self.view.cursor_scene_pos(), None)

    def compatible_ops(self, port_ctx) -> list:
        """Op ids that can take (or feed) the port being dragged."""
        node_id, port, is_output = port_ctx
        out = []
        shape = self.scene.output_shape(node_id, port) if is_output else None
        for op_id, op_cls in REGISTRY.items():
            if is_output:
                if not op_cls.inputs:
                    continue
                if shape is not None and len(op_cls.inputs) == 1:
                    try:
                        op_cls().infer_shapes(shape)
                    except (StudioError, TypeError, ValueError):
                        continue
            elif not op_cls.outputs:
                continue
            out.append(op_id)
        return out

    def open_quick_add(self, scene_pos: QPointF, port_ctx=None):
        self._quick_ctx = (QPointF(scene_pos), port_ctx)
        allowed, caption = None, ""
        if port_ctx is not None:
            allowed = self.compatible_ops(port_ctx)
            node = self.graph.nodes[port_ctx[0]]
            if port_ctx[2]:
                shape = self.scene.output_shape(port_ctx[0], port_ctx[1])
                caption = f"Ops that take {node.name}.{port_ctx[1]}" + (
                    f" {fmt_shape(shape)}" if shape is not None else "")
            else:
                caption = f"Ops that can feed {node.name}.{port_ctx[1]}"
        gp = self.view.viewport().mapToGlobal(self.view.mapFromScene(scene_pos))
        self.quick_add.open_at(gp, allowed, caption)

    def _on_quick_add_chosen(self, op_id):
        if self._quick_ctx is None:
            return
        pos, port_ctx = self._quick_ctx
        self._quick_ctx = None
        self.add_from_quick(op_id, pos, port_ctx)

    def add_from_quick(self, op_id, pos: QPointF, port_ctx=None):
        """Add ``op_id`` at ``pos``; when a port was dragged out, wire the new node to it."""
        if port_ctx is None:
            return self.add_op(op_id, pos)
        node_id, port, is_output = port_ctx
        op_cls = get_op(op_id)
        g = self.graph
        if is_output:
            origin = self._card_origin(pos, x_off=0, y_off=NodeItem.port_offset(0))
        else:
            origin = self._card_origin(pos, x_off=NODE_MIN_W,
                                       y_off=NodeItem.port_offset(0))
        add = AddNodeCommand(g, op_id, origin)
        if is_output:
            wire = ConnectPendingCommand(g, node_id, lambda: add.node.id, src_port=port,
                                         dst_port=op_cls.inputs[0])
        else:
            wire = ConnectPendingCommand(g, lambda: add.node.id, node_id,
                                         src_port=op_cls.outputs[0], dst_port=port)
        if self.push(MacroCommand(f"Add {op_cls.label} and connect", [add, wire])):
            self.select_nodes([add.node.id])
            return add.node
        return None

    # ------------------------------------------------------------ context
    def _context_menu(self, scene_pos: QPointF, item):
        menu = QMenu(self)
        if isinstance(item, NodeItem):
            if not item.isSelected():
                self.select_nodes([item.node_id])
            nid = item.node_id
            fix = self.scene.quick_fix(nid)
            if fix is not None:
                menu.addAction("⚕ " + fix[1], lambda: self.apply_quick_fix(nid))
                menu.addSeparator()
            menu.addAction("Rename…", lambda: self._focus_name(nid))
            if self.graph.loss == nid:
                menu.addAction("Stop Using as Loss", lambda: self.set_loss(None))
            else:
                menu.addAction("Use as Loss", lambda: self.set_loss(nid))
            menu.addSeparator()
            menu.addActions([self.act_cut, self.act_copy, self.act_duplicate, self.act_delete])
            if len(self.scene.selected_nodes()) > 1:
                menu.addSeparator()
                am = menu.addMenu("Align")
                am.addActions(self.align_actions)
                dm = menu.addMenu("Distribute")
                dm.addActions(self.distribute_actions)
        elif isinstance(item, EdgeItem):
            menu.addAction("Delete Connection",
                           lambda: self.push(RemoveCommand(self.graph, edges=[item.edge])))
        else:
            menu.addAction("Add Node Here…", lambda: self.open_quick_add(scene_pos, None))
            paste = menu.addAction("Paste Here", lambda: self.paste(scene_pos))
            paste.setEnabled(bool(self._clipboard_text()))
            menu.addSeparator()
            menu.addActions([self.act_select_all, self.act_layout, self.act_fit])
        from PySide6.QtGui import QCursor  # noqa: PLC0415

        menu.popup(QCursor.pos())

    # ============================================================ training
    def _offer_training_data(self):
        """Pick the data that fits the open graph: its stored samples, else the MNIST sample."""
        from core.train.trainer import find_role  # noqa: PLC0415

        panel = self.train_panel
        panel.set_problem(training_problem(self.graph))
        if self.is_training():
            return
        panel.clear_results()  # the last run's curves belong to the graph that was closed
        if panel.status_label.property("kind") != "warning":
            panel.set_status("")
        try:
            features = find_role(self.graph, "features")
        except StudioError:
            features = None
        if features is None or features.value is not None:
            # its own samples, or no features input at all (a textbook graph)
            panel.set_source("graph")
        elif panel.current_source() == "graph":
            panel.use_image_source()

    def is_training(self) -> bool:
        return self._worker is not None

    def start_training(self, settings) -> bool:
        """Train a copy of the open graph on a worker thread; False if it cannot start.

        The canvas stays editable while it runs; at the end the trained tensors
        land in the graph as one undoable step.
        """
        if self._worker is not None:
            return False
        problem = training_problem(self.graph)
        if problem:
            self.train_panel.show_error("Cannot train this graph: " + problem)
            return False
        self.train_dock.show()
        worker = TrainingWorker(self.graph, settings, self)
        worker.status.connect(lambda text: self.train_panel.set_status(text))
        worker.batches.connect(self._on_train_batches)
        worker.epoch_done.connect(self._on_train_epoch)
        worker.done.connect(self._on_train_done)
        worker.failed.connect(self._on_train_failed)
        # a finished worker (a QThread child of the window) would otherwise live as long
        # as the window
        worker.finished.connect(worker.deleteLater)
        self._worker = worker
        self._sync_train_actions()
        self.train_panel.begin_run()
        self.train_panel.set_status("Preparing…")
        worker.start()
        return True

    def pause_training(self, paused: bool):
        if self._worker is not None:
            self._worker.set_paused(paused)
            if paused:
                self.train_panel.show_paused()
                self.train_panel.set_status("Paused — Resume continues with the next batch.")

    def stop_training(self, wait: bool = False):
        """Ask the run to stop after the current batch (the weights so far are kept)."""
        worker = self._worker
        if worker is None:
            return
        worker.cancel()
        self.train_panel.set_status("Stopping…")
        if wait:
            worker.wait()
            self._worker = None
            self._sync_train_actions()

    def _on_train_batches(self, points, progress):
        self.train_panel.plots.add_batches(points)
        if self._worker is not None and not self._worker.paused:
            self.train_panel.show_progress(progress)

    def _on_train_epoch(self, info):
        self.train_panel.plots.add_epoch(info.epoch, info.val_loss, info.train_accuracy,
                                         info.val_accuracy)

    def _finish_worker(self):
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.wait()
        self._sync_train_actions()
        return worker

    def _sync_train_actions(self):
        running = self._worker is not None
        self.act_train.setEnabled(not running)
        self.act_stop_training.setEnabled(running)

    def _on_train_done(self, outcome):
        worker = self._finish_worker()
        panel = self.train_panel
        panel.show_result(outcome.evaluation, outcome.evaluated_on, outcome.status,
                          outcome.seconds, outcome.final_loss)
        what = {"completed": "Training finished", "cancelled": "Training stopped",
                "early_stopped": "Training stopped early"}.get(outcome.status, outcome.status)
        what += f" after {outcome.iterations:,} steps ({outcome.epochs} epoch"
        what += "s)" if outcome.epochs != 1 else ")"
        if worker is None or worker.source_graph is not self.graph:
            panel.set_status(what + "; the graph it trained was closed, so its weights were "
                             "not kept.", "warning")
            return
        if outcome.iterations == 0:
            panel.set_status(what + "; the weights are unchanged.")
            return
        name = self.graph.name or "graph"
        cmd = SetTrainedWeightsCommand(self.graph, outcome.arrays,
                                       f"Train '{name}' ({outcome.iterations:,} steps)")
        self.push(cmd)
        note = (" Some tensors changed shape while it trained and were left out: "
                + ", ".join(cmd.skipped[:4]) + ("…" if len(cmd.skipped) > 4 else "")
                + ".") if cmd.skipped else ""
        panel.set_status(f"{what}. The trained weights are in the graph (Edit ▸ Undo puts "
                         f"back the previous ones; Save keeps them).{note}", "ok")
        self.statusBar().showMessage(what, 6000)

    def _on_train_failed(self, message: str, node_name: str):
        worker = self._finish_worker()
        self.train_panel.show_failure(message)
        self.statusBar().showMessage("Training stopped: " + message, 10000)
        if node_name and worker is not None and worker.source_graph is self.graph:
            try:
                nid = self.graph.node(node_name).id
            except StudioError:
                return
            self.select_nodes([nid])
            item = self.scene.nodes.get(nid)
            if item is not None:
                self.view.centerOn(item)

    # =============================================================== files
    def set_graph(self, graph: Graph, path=None, fit=True):
        """Show ``graph`` as the document (clears the undo history)."""
        self.undo_stack.clear()
        self.graph = graph
        self.scene.set_graph(graph, route=False)  # wires are routed once, below
        missing = [nid for nid in graph.nodes if nid not in graph.layout]
        overlapping = not missing and self.scene.overlapping_cards() > 0
        if missing or overlapping:
            # a file without positions, or laid out for other card sizes: arrange it
            # (part of opening, not an undoable edit)
            placed = self.layout_positions()
            for nid in (missing or graph.nodes):
                graph.move(nid, placed[nid])
        self.scene.flush_edges()
        # told to the user by open_file
        self.rearranged_on_open = overlapping
        self.path = Path(path) if path else None
        self._recovered = False
        self.undo_stack.setClean()
        self._update_title()
        self._refresh_inspector()
        self._offer_training_data()
        if fit:
            self.view.fit_opened()

    def take_focus_back(self):
        """After a dialog: the window active and the canvas focused again, so its shortcuts
        (Ctrl+E, Ctrl+T…) work at once (a closed dialog left no window active)."""
        self.activateWindow()
        self.raise_()
        self.view.setFocus(Qt.OtherFocusReason)

    def maybe_save(self) -> bool:
        """Ask about unsaved changes; False means the user cancelled."""
        if not self.is_modified():
            return True
        name = self.path.name if self.path else "this graph"
        answer = QMessageBox.question(
            self, APP_NAME, f"Save the changes to {name} first?\n\n"
            "If you don't save, your changes will be lost.",
            QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel, QMessageBox.Save)
        if answer == QMessageBox.Save:
            return self.save()
        return answer == QMessageBox.Discard

    def new_file(self):
        if self.maybe_save():
            self.set_graph(Graph())
            self.clear_recovery()

    def open_file(self, path=None) -> bool:
        """Open ``path`` (or ask); a bad file shows why and keeps the current graph."""
        if path is None:
            start = str(self.path.parent) if self.path else str(Path.home())
            path, _ = QFileDialog.getOpenFileName(self, "Open graph", start, FILE_FILTER)
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
            QMessageBox.critical(self, "Cannot open the file",
                                 f"{exc}\n\nThe graph you were working on is unchanged.")
            return False
        except Exception as exc:  # noqa: BLE001 - any bad file must leave the graph intact
            QMessageBox.critical(self, "Cannot open the file",
                                 f"{path}: {type(exc).__name__}: {exc}\n\n"
                                 "The graph you were working on is unchanged.")
            return False
        self.set_graph(graph, path)
        self._add_recent(Path(path).resolve())
        self.clear_recovery()
        note = (" — its cards overlapped, so it was arranged again (Auto Layout)"
                if self.rearranged_on_open else "")
        self.statusBar().showMessage(f"Opened {path}{note}", 8000)
        return True

    def save(self) -> bool:
        if self.path is None:
            return self.save_as()
        return self._write(self.path)

    def save_as(self) -> bool:
        start = str(self.path) if self.path else str(Path.home() / "graph.json")
        path, _ = QFileDialog.getSaveFileName(self, "Save graph as", start, FILE_FILTER)
        self.take_focus_back()
        if not path:
            return False
        if not Path(path).suffix:
            path += ".json"
        return self._write(Path(path))

    def _write(self, path: Path) -> bool:
        try:
            save_graph(self.graph, path)
        except (OSError, StudioError, ValueError) as exc:
            QMessageBox.critical(self, "Cannot save", f"{path}: {exc}")
            return False
        self.path = Path(path)
        self._recovered = False
        self.undo_stack.setClean()
        self._add_recent(self.path.resolve())
        self.clear_recovery()
        self._update_title()
        self.statusBar().showMessage(f"Saved {path}", 4000)
        return True

    def export_picture(self):
        from widgets.canvas import render_scene  # noqa: PLC0415

        start = str((self.path.with_suffix(".png")) if self.path else Path.home() / "graph.png")
        path, _ = QFileDialog.getSaveFileName(self, "Export picture", start,
                                              "PNG pictures (*.png)")
        self.take_focus_back()
        if not path:
            return
        r = self.scene.content_rect()
        w = int(min(max(r.width() + 80, 400), 4000))
        h = int(min(max(r.height() + 80, 300), 4000))
        img = render_scene(self.scene, w, h, dpr=2.0)
        if not img.save(path):
            QMessageBox.critical(self, "Cannot export", f"Could not write {path}")

    def show_examples(self):
        from app.examples_dialog import ExamplesDialog  # noqa: PLC0415

        dlg = ExamplesDialog(self.theme, self)
        accepted = dlg.exec()
        self.take_focus_back()
        if accepted and dlg.chosen_path is not None:
            self.open_example(dlg.chosen_path)

    def open_example(self, path) -> bool:
        """Open a preset as a new untitled document (saving asks for a new name)."""
        if not self.open_file(path):
            return False
        self.path = None
        self._update_title()
        self.statusBar().showMessage(f"Opened the example '{self.graph.name or Path(path).stem}'"
                                     " as a new graph", 6000)
        return True

    # ============================================================ recovery
    def recovery_file(self) -> Path:
        return self.recovery_dir / f"autosave-{self.pid}.json"

    def _recovery_text(self) -> str:
        data = json.loads(dumps(self.graph))
        data["recovery"] = {"pid": self.pid, "path": str(self.path) if self.path else None,
                            "time": time.time()}
        return json.dumps(data)

    def autosave_now(self):
        """Write the graph to this window's recovery file (or remove it when nothing is unsaved)."""
        if not self.is_modified():
            self.clear_recovery()
            return
        try:
            self._recovery_writer.write_now(self.recovery_file(), self._recovery_text())
        except (OSError, ValueError) as exc:
            self.statusBar().showMessage(f"Autosave failed: {exc}", 6000)

    def _autosave_in_background(self):
        """The timer's autosave: the graph is read here, the file written on another thread."""
        writer = self._recovery_writer
        if writer.error:
            self.statusBar().showMessage(f"Autosave failed: {writer.error}", 6000)
            writer.error = None
        if not self.is_modified():
            self.clear_recovery()
            return
        try:
            text = self._recovery_text()
        except ValueError as exc:
            self.statusBar().showMessage(f"Autosave failed: {exc}", 6000)
            return
        return writer.write_later(self.recovery_file(), text)

    def clear_recovery(self):
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

    def offer_recovery(self) -> bool:
        """Offer to restore unsaved work from a crashed session; True if restored."""
        files = self.orphaned_recovery_files()
        if not files:
            return False
        f = max(files, key=lambda p: p.stat().st_mtime)
        try:
            text = f.read_text(encoding="utf-8")
            data = json.loads(text)
            meta = data.pop("recovery", {}) or {}
            graph = loads(json.dumps(data), f)
        except (OSError, ValueError, StudioError):
            for x in files:
                x.unlink(missing_ok=True)
            return False
        when = time.strftime("%H:%M on %d %b", time.localtime(meta.get("time", f.stat().st_mtime)))
        orig = meta.get("path")
        what = f"'{Path(orig).name}'" if orig else "an unsaved graph"
        answer = QMessageBox.question(
            self, "Restore unsaved work?",
            f"Backprop Studio did not close properly last time.\n\nRestore the unsaved "
            f"changes to {what} ({len(graph.nodes)} nodes, autosaved at {when})?",
            QMessageBox.Yes | QMessageBox.No, QMessageBox.Yes)
        for x in files:
            x.unlink(missing_ok=True)
        if answer != QMessageBox.Yes:
            return False
        self.set_graph(graph, orig if orig and Path(orig).exists() else None)
        self._recovered = True
        self._update_title()
        self.autosave_now()
        self.statusBar().showMessage("Restored the unsaved work; save it to keep it.", 8000)
        return True

    # =============================================================== events
    def closeEvent(self, event):
        if not self.maybe_save():
            event.ignore()
            return
        self.stop_training(wait=True)
        self._autosave_timer.stop()
        self.clear_recovery()
        self._save_settings()
        self.scene.detach()
        event.accept()

    def dragEnterEvent(self, event):
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event):
        for url in event.mimeData().urls():
            if url.isLocalFile():
                self.open_file(url.toLocalFile())
                event.acceptProposedAction()
                return

    def about(self):
        QMessageBox.about(self, f"About {APP_NAME}",
                          f"<h3>{APP_NAME} {__version__}</h3>"
                          "<p>Build computational graphs by drag and drop and watch "
                          "backpropagation, node by node.</p><p>MIT licence.</p>")

    def show_shortcuts(self):
        rows = []
        for a in self.findChildren(QAction):
            if a.shortcut().isEmpty() or not a.text():
                continue
            keys = ", ".join(s.toString(QKeySequence.NativeText) for s in a.shortcuts())
            rows.append((a.text().replace("&", ""), keys))
        rows += [("Zoom around the cursor", "mouse wheel"),
                 ("Pan", "middle button drag, or Space + drag"),
                 ("Add node at the cursor", "double-click on empty canvas"),
                 ("Connect", "drag from an output port to an input port")]
        html = "<table cellspacing=4>" + "".join(
            f"<tr><td>{t}</td><td><b>{k}</b></td></tr>" for t, k in sorted(set(rows))) + "</table>"
        QMessageBox.information(self, "Keyboard shortcuts", html)


def _human(n: int) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return str(n)


GC_INTERVAL_S = 1.0


def collect_garbage_on_gui_thread(app: QApplication):
    """Turn off Python's automatic cyclic GC; collect on a timer of the GUI thread instead.

    Automatic collection runs on whichever thread happens to allocate, so a Qt object
    caught in a reference cycle (a traceback holding a frame holding a widget) could be
    destroyed on the training thread, and Qt aborts when an object with a timer dies off
    its own thread. Returns the collector (kept on ``app``; calling again reuses it).
    """
    from pyqtgraph.util.garbage_collector import GarbageCollector  # noqa: PLC0415

    collector = getattr(app, "_gui_thread_gc", None)
    if collector is None:
        collector = GarbageCollector(interval=GC_INTERVAL_S)
        app._gui_thread_gc = collector
    return collector


def stop_collecting_on_gui_thread(app: QApplication):
    """Undo :func:`collect_garbage_on_gui_thread` (automatic GC again)."""
    import gc  # noqa: PLC0415

    collector = getattr(app, "_gui_thread_gc", None)
    if collector is not None:
        collector.timer.stop()
        del app._gui_thread_gc
    gc.enable()


def make_app(argv=None) -> QApplication:
    """The QApplication (created once), with the names QSettings uses.

    Python's cyclic garbage collector runs on the GUI thread only (see
    :func:`collect_garbage_on_gui_thread`).
    """
    app = QApplication.instance()
    if app is None:
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
            Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(argv if argv is not None else sys.argv[:1])
    collect_garbage_on_gui_thread(app)
    app.setApplicationName(APP_NAME)
    app.setOrganizationName("Backprop Studio")
    app.setApplicationVersion(__version__)
    app.setStyle("Fusion")
    return app


def default_preset():
    """The preset opened when no file is given: LeNet-5 if shipped, else the first one."""
    try:
        from examples import example_path, list_examples  # noqa: PLC0415

        stems = [s for s, _, _ in list_examples()]
    except (ImportError, OSError, ValueError):
        return None
    for stem in ("lenet5", "abc"):
        if stem in stems:
            return example_path(stem)
    return example_path(stems[0]) if stems else None


def run_app(path=None) -> int:
    """Open the editor on ``path`` (or a preset) and run the event loop; the exit code."""
    from app.qt_preflight import check_gui_libraries  # noqa: PLC0415

    code = check_gui_libraries()  # before Qt would abort on a missing X11 library
    if code is not None:
        return code
    app = make_app()
    win = MainWindow()
    win.show()
    restored = win.offer_recovery()
    if not restored:
        if path is not None:
            if not win.open_file(path):
                pass  # the error was shown; the window stays open on an empty graph
        else:
            preset = default_preset()
            if preset is not None:
                win.open_example(preset)
    return app.exec()
