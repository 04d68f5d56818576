"""The main window: docks, menus and the wiring between document, views and controllers.

Edits flow one way: a gesture in a view emits a request, a controller
(:mod:`app.controllers`) turns it into a :mod:`app.commands` command on the
document's undo stack, the command calls the :class:`core.graph.Graph`, and the
graph's events update the views.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

from PySide6.QtCore import QByteArray, QPointF, QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QCursor, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QUndoView,
)

from app import __version__
from app.controllers.editing import EditingController
from app.controllers.files import FilesController
from app.controllers.training import TrainingController
from app.document import APP_NAME, Document
from app.qt_preflight import check_gui_libraries
from app.stepping_ui import SteppingUI
from core.errors import FileFormatError
from core.graph import Graph
from core.kernels import compiled
from core.train import OPTIMIZERS
from core.train.recipe import DEFAULT_LR, training_problem
from examples import example_path, list_examples, resolve
from widgets.canvas import EdgeItem, GraphScene, GraphView, NodeItem
from widgets.icons import action_icon
from widgets.inspector import Inspector
from widgets.palette import Palette
from widgets.quick_add import QuickAdd
from widgets.theme import get_theme, qpalette, style_sheet
from widgets.train_panel import TrainPanel


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

    Attributes
    ----------
    document : Document
        The graph, its file, history and autosave.
    editing, training, files, stepping
        The controllers (:mod:`app.controllers`), children of the window.
    step_ui : SteppingUI
        Builds and wires the Step menu, toolbar and docks (:mod:`app.stepping_ui`).
    """

    def __init__(self, settings: QSettings | None = None, recovery_dir=None, pid=None):
        super().__init__()
        self.settings = settings or QSettings()
        self.document = Document(self.settings, recovery_dir, pid, self)
        self.theme = get_theme(self.settings.value("theme", "light"))
        # before the widgets exist: each is polished once, when first shown, instead of
        # all of them (hidden docks too) again when the style sheet changes
        self._apply_app_style()

        self.scene = GraphScene(self.document.graph, self.theme, self,
                                 analysis=self.document.analysis)
        self.scene.snap_to_grid = self.settings.value("snap", False, type=bool)
        self.view = GraphView(self.scene, self)
        self.setCentralWidget(self.view)
        self.palette = Palette(self.theme)
        self.inspector = Inspector()
        self.undo_view = QUndoView(self.document.undo_stack)
        self.undo_view.setEmptyLabel("<original graph>")
        self.quick_add = QuickAdd(self.theme, self)
        self.train_panel = TrainPanel(self.theme, DEFAULT_LR, OPTIMIZERS)
        # parented to the window and kept as attributes, so Python never collects them early
        self.editing = EditingController(self.document, self.scene, self.view, self.inspector,
                                         self.quick_add, self)
        self.training = TrainingController(self.document, self.train_panel, self)
        self.files = FilesController(self, self.document, self.scene, self.view,
                                     self.set_graph, lambda: self.theme)
        self.train_panel.dialog_closed.connect(self.files.take_focus_back)
        self.step_ui = SteppingUI(self)  # the step list and the stepping controller

        self._make_docks()
        self.step_ui.make_docks()
        self._make_actions()
        self._make_menus()
        self._make_toolbar()
        self._make_status_bar()
        self._connect_views()
        self._connect_controllers()
        self.setAcceptDrops(True)
        self._painted = False  # the slow start-up loads wait for the first paint
        self.resize(1400, 880)
        self._restore_settings()
        self._apply_theme()
        self._update_title()
        self._on_selection_changed()

    # the stepping panels are made just after the first paint, or here when asked for first
    @property
    def chain_panel(self):
        """The Chain Rule dock's :class:`~widgets.chain_rule_panel.ChainRulePanel`."""
        return self.step_ui.panels()[0]

    @property
    def tensor_view(self):
        """The Tensor dock's :class:`~widgets.tensor_view.TensorView`."""
        return self.step_ui.panels()[1]

    @property
    def digit_input(self):
        """The Digit dock's :class:`~widgets.digit_input.DigitInput`."""
        return self.step_ui.panels()[2]

    # =============================================================== set-up
    def _dock(self, title, widget, area, name):
        d = QDockWidget(title, self)
        d.setObjectName(name)
        if widget is not None:  # None: the widget comes later (the stepping panels)
            d.setWidget(widget)
        d.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetClosable
                      | QDockWidget.DockWidgetFloatable)
        self.addDockWidget(area, d)
        return d

    def _make_docks(self):
        dock = self._dock

        self.palette_dock = dock("Palette", self.palette, Qt.LeftDockWidgetArea, "palette")
        self.inspector_dock = dock("Inspector", self.inspector, Qt.RightDockWidgetArea,
                                   "inspector")
        self.history_dock = dock("History", self.undo_view, Qt.RightDockWidgetArea, "history")
        self.overview_dock = dock("Overview", self.view.minimap, Qt.RightDockWidgetArea,
                                  "overview")
        self.tabifyDockWidget(self.history_dock, self.overview_dock)
        self.history_dock.raise_()
        self.train_dock = dock("Training", self.train_panel, Qt.BottomDockWidgetArea, "training")
        self.step_ui.make_steps_dock()
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
        f, e = self.files, self.editing
        self.act_new = self._action("&New", f.new_file, K.New, tip="Start an empty graph")
        self.act_open = self._action("&Open…", lambda: f.open_file(), K.Open)
        self.act_examples = self._action("&Examples…", f.show_examples, "Ctrl+E",
                                         tip="Open one of the preset graphs")
        self.act_save = self._action("&Save", f.save, K.Save)
        self.act_save_as = self._action("Save &As…", f.save_as, K.SaveAs)
        self.act_export = self._action("Export &Picture…", f.export_picture, "Ctrl+Shift+E")
        self.act_quit = self._action("&Quit", self.close, K.Quit)

        self.act_undo = self.document.undo_stack.createUndoAction(self, "&Undo")
        self.act_undo.setShortcut(K.Undo)
        self.act_redo = self.document.undo_stack.createRedoAction(self, "&Redo")
        self.act_redo.setShortcuts([K("Ctrl+Y"), K("Ctrl+Shift+Z")])
        self.act_cut = self._action("Cu&t", e.cut, K.Cut, canvas=True)
        self.act_copy = self._action("&Copy", e.copy, K.Copy, canvas=True)
        self.act_paste = self._action("&Paste", e.paste, K.Paste, canvas=True)
        self.act_duplicate = self._action("&Duplicate", e.duplicate, "Ctrl+D", canvas=True)
        self.act_delete = self._action("De&lete", e.delete_selection,
                                       [K(Qt.Key_Delete), K(Qt.Key_Backspace)], canvas=True)
        self.act_select_all = self._action("Select &All", e.select_all, K.SelectAll,
                                           canvas=True)
        self.act_add = self._action("&Add Node…", e.quick_add_at_cursor, K(Qt.Key_Tab),
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

        self.act_layout = self._action("Auto &Layout", e.auto_layout, "Ctrl+L",
                                       tip="Arrange the graph in layers, left to right")
        self.align_actions = [
            self._action("Align &Left", lambda: e.align("left"), "Ctrl+Alt+Left"),
            self._action("Align &Right", lambda: e.align("right"), "Ctrl+Alt+Right"),
            self._action("Align &Top", lambda: e.align("top"), "Ctrl+Alt+Up"),
            self._action("Align &Bottom", lambda: e.align("bottom"), "Ctrl+Alt+Down"),
            self._action("Align Centres &Horizontally", lambda: e.align("hcenter")),
            self._action("Align Centres &Vertically", lambda: e.align("vcenter")),
        ]
        self.distribute_actions = [
            self._action("Distribute &Horizontally", lambda: e.distribute("x"),
                         "Ctrl+Alt+H"),
            self._action("Distribute &Vertically", lambda: e.distribute("y"), "Ctrl+Alt+V"),
        ]
        self.act_train = self._action("&Train", self.train_panel.request_start, "Ctrl+T",
                                      tip="Train the graph with the settings in the Training "
                                          "panel")
        self.act_stop_training = self._action("&Stop Training",
                                              lambda: self.training.stop_training(),
                                              "Ctrl+Shift+T")
        self.act_stop_training.setEnabled(False)
        self.step_ui.make_actions()
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
        for d in [self.palette_dock, self.inspector_dock, self.history_dock,
                  self.train_dock] + self.step_ui.docks():
            m.addAction(d.toggleViewAction())
        m = mb.addMenu("&Arrange")
        m.addAction(self.act_layout)
        m.addSeparator()
        m.addActions(self.align_actions)
        m.addSeparator()
        m.addActions(self.distribute_actions)
        self.step_ui.make_menu(mb)
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
        self.step_ui.make_toolbar()

    def _make_status_bar(self):
        sb = self.statusBar()
        self.totals_label = QLabel()
        self.zoom_label = QLabel()
        sb.addPermanentWidget(self.totals_label)
        sb.addPermanentWidget(self.zoom_label)
        # a fixed size: a label that may change size re-lays out the whole window (docks
        # included) each time its text changes, in every wheel-zoom frame
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
        sc, e = self.scene, self.editing
        sc.connect_requested.connect(e.connect_edge)
        sc.rewire_requested.connect(e.rewire)
        sc.connect_with_flatten_requested.connect(e.connect_through_flatten)
        sc.nodes_moved.connect(e._on_nodes_moved)
        sc.quick_add_requested.connect(e.open_quick_add)
        sc.shapes_updated.connect(self._on_shapes_updated)
        sc.connection_refused.connect(
            lambda msg: self.statusBar().showMessage("Not connected: " + msg, 8000))
        sc.node_activated.connect(self._focus_name)
        sc.selectionChanged.connect(self._on_selection_changed)
        v = self.view
        v.op_dropped.connect(e.add_op)
        v.file_dropped.connect(self.files.open_file)
        v.quick_add_at.connect(e.open_quick_add)
        v.zoom_changed.connect(self._on_zoom)
        v.context_menu_requested.connect(self._context_menu)
        self.palette.op_activated.connect(
            lambda op: e.add_op(op, self.scene.free_spot(self.view.visible_rect().center())))
        ins = self.inspector
        ins.params_edited.connect(e.set_params)
        ins.rename_requested.connect(e.rename_node)
        ins.value_edited.connect(e.set_value)
        ins.loss_requested.connect(e.set_loss)
        ins.quick_fix_requested.connect(e.apply_quick_fix)
        ins.meta_edited.connect(e.set_meta)

    def _connect_controllers(self):
        doc = self.document
        doc.modified_changed.connect(self._on_modified_changed)
        doc.title_changed.connect(self._update_title)
        doc.undo_stack.indexChanged.connect(self._on_history_changed)
        show = self.statusBar().showMessage
        for source in (doc, self.editing, self.training, self.files, self.stepping):
            source.message.connect(show)
        self.editing.inspector_refresh.connect(self._refresh_inspector)
        self.training.running_changed.connect(self._on_training_running)
        self.step_ui.connect_signals()
        self.training.show_node.connect(self._show_node)

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
            QTimer.singleShot(0, self._first_dock_sizes)

    def _first_dock_sizes(self):
        self.resizeDocks([self.train_dock], [350], Qt.Vertical)
        self.resizeDocks([self.palette_dock, self.steps_dock], [1, 1], Qt.Vertical)

    def _save_settings(self):
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("window_state", self.saveState())
        self.settings.setValue("theme", self.theme.name)
        self.settings.setValue("snap", self.scene.snap_to_grid)
        self.settings.sync()

    def _fill_recent_menu(self):
        self.recent_menu.clear()
        files = self.document.recent_files()
        if not files:
            a = self.recent_menu.addAction("No recent files")
            a.setEnabled(False)
            return
        for i, f in enumerate(files):
            a = self.recent_menu.addAction(f"&{i + 1}  {Path(f).name}")
            a.setToolTip(f)
            a.setStatusTip(f)
            a.triggered.connect(lambda _c=False, f=f: self.files.open_file(f))
        self.recent_menu.addSeparator()
        self.recent_menu.addAction("Clear Recent Files", self.document.clear_recent)

    # ============================================================== themes
    def set_theme(self, name: str):
        self.theme = get_theme(name)
        self._apply_theme()
        self.settings.setValue("theme", self.theme.name)

    def _apply_theme(self):
        ink = self.theme.color("text")
        for name, act in (("new", self.act_new), ("open", self.act_open),
                          ("save", self.act_save), ("undo", self.act_undo),
                          ("redo", self.act_redo), ("fit", self.act_fit),
                          ("layout", self.act_layout), ("examples", self.act_examples),
                          ("train", self.act_train)):
            act.setIcon(action_icon(name, ink))
        self._apply_app_style()
        self._fit_zoom_label()
        self.scene.set_theme(self.theme)
        self.palette.set_theme(self.theme)
        self.train_panel.set_theme(self.theme)
        self.step_ui.set_theme(self.theme)
        self.quick_add.theme = self.theme
        self.view.resetCachedContent()
        self.view.viewport().update()
        (self.act_dark if self.theme.dark else self.act_light).setChecked(True)

    def _apply_app_style(self):
        app = QApplication.instance()
        if app is not None:
            # both are application-wide: setting them again re-polishes every widget
            palette, css = qpalette(self.theme), style_sheet(self.theme)
            if app.palette() != palette:
                app.setPalette(palette)
            if app.styleSheet() != css:
                app.setStyleSheet(css)

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
        self.totals_label.setText(self.document.analysis.totals(report).summary())
        self._refresh_inspector()
        self.train_panel.set_problem(training_problem(self.document.graph))

    def _on_history_changed(self, _index):
        self.scene.flush_edges()  # one re-route per edit, however many nodes it moved
        self._update_title()
        # an edit that changes no shape (choosing the loss) must update it too
        self.train_panel.set_problem(training_problem(self.document.graph))

    def _on_modified_changed(self, _modified):
        self._update_title()

    def _update_title(self):
        doc = self.document
        name = doc.path.name if doc.path else (doc.graph.name or "Untitled")
        self.setWindowTitle(f"{name}[*] — {APP_NAME}")
        self.setWindowModified(doc.is_modified())

    def _on_training_running(self, running: bool):
        if running:
            self.train_dock.show()
        self.act_train.setEnabled(not running)
        self.act_stop_training.setEnabled(running)

    def _show_node(self, node_id: str):
        """Select ``node_id`` and centre the canvas on it."""
        self.editing.select_nodes([node_id])
        item = self.scene.nodes.get(node_id)
        if item is not None:
            self.view.centerOn(item)

    def _on_selection_changed(self):
        self._refresh_inspector()

    def _refresh_inspector(self):
        ids = self.editing.selected_node_ids()
        nid = ids[0] if len(ids) == 1 else None
        analysis = self.document.analysis
        fix = analysis.quick_fix(nid) if nid else None
        report = analysis.report
        self.inspector.show_node(self.document.graph, nid, report, fix.text if fix else None)

    def _focus_name(self, node_id):
        self.scene.clearSelection()
        self.scene.nodes[node_id].setSelected(True)
        self.inspector_dock.show()
        w = self.inspector.editor("__name__")
        w.setFocus()
        w.selectAll()

    # ------------------------------------------------------------ context
    def _context_menu(self, scene_pos: QPointF, item):
        menu = QMenu(self)
        e = self.editing
        if isinstance(item, NodeItem):
            self._node_menu(menu, item)
        elif isinstance(item, EdgeItem):
            menu.addAction("Delete Connection", lambda: e.delete_edge(item.edge))
        else:
            menu.addAction("Add Node Here…", lambda: e.open_quick_add(scene_pos, None))
            paste = menu.addAction("Paste Here", lambda: e.paste(scene_pos))
            paste.setEnabled(bool(e.clipboard_text()))
            menu.addSeparator()
            menu.addActions([self.act_select_all, self.act_layout, self.act_fit])
        menu.popup(QCursor.pos())

    def _node_menu(self, menu: QMenu, item: NodeItem):
        e = self.editing
        if not item.isSelected():
            e.select_nodes([item.node_id])
        nid = item.node_id
        fix = self.document.analysis.quick_fix(nid)
        if fix is not None:
            menu.addAction("⚕ " + fix.text, lambda: e.apply_quick_fix(nid))
            menu.addSeparator()
        menu.addAction("Rename…", lambda: self._focus_name(nid))
        if self.document.graph.loss == nid:
            menu.addAction("Stop Using as Loss", lambda: e.set_loss(None))
        else:
            menu.addAction("Use as Loss", lambda: e.set_loss(nid))
        menu.addSeparator()
        menu.addActions([self.act_cut, self.act_copy, self.act_duplicate, self.act_delete])
        if len(self.scene.selected_nodes()) > 1:
            menu.addSeparator()
            am = menu.addMenu("Align")
            am.addActions(self.align_actions)
            dm = menu.addMenu("Distribute")
            dm.addActions(self.distribute_actions)

    # =============================================================== files
    def set_graph(self, graph: Graph, path=None, fit=True) -> bool:
        """Show ``graph`` as the document (clears the undo history).

        Returns True when its cards overlapped and it was arranged again.
        """
        self.document.set_graph(graph, path)
        collector = _collector()
        if collector is not None:
            collector.thaw()  # what the graph before held may be frozen: collectable again
        self.step_ui.graph_replaced()
        # wires are routed once, below
        self.scene.set_graph(graph, route=False, analysis=self.document.analysis)
        missing = [nid for nid in graph.nodes if nid not in graph.layout]
        overlapping = not missing and self.scene.overlapping_cards() > 0
        if missing or overlapping:
            # a file without positions, or laid out for other card sizes: arrange it
            # (part of opening, not an undoable edit)
            placed = self.editing.layout_positions()
            with self.scene.moving_many():
                for nid in (missing or graph.nodes):
                    graph.move(nid, placed[nid])
        self.scene.flush_edges()
        self._update_title()
        self._refresh_inspector()
        self.training.offer_training_data()
        if fit:
            self.view.fit_opened()
        return overlapping  # told to the user by FilesController.open_file

    # =============================================================== events
    def paintEvent(self, event):
        super().paintEvent(event)
        if not self._painted:
            self._painted = True
            # queued: the window is on screen before anything slow starts
            QTimer.singleShot(0, self.step_ui.after_first_paint)
            collector = _collector()
            if collector is not None and collector.freeze_when is None:
                collector.freeze_when = self._start_up_settled

    def _start_up_settled(self) -> bool:
        """Whether start-up's late imports are done (the compiled kernels' background load, the
        plots) while no training run or stepping session holds its arrays: when the garbage
        collector may freeze what is alive (see :class:`GuiThreadCollector`)."""
        return (not compiled.loading() and self.train_panel.plots.is_made()
                and not self.training.is_training() and self.stepping.session is None)

    def closeEvent(self, event):
        if not self.files.maybe_save():
            event.ignore()
            return
        self.training.stop_training(wait=True)
        self.stepping.shutdown()
        self.document.stop_autosave()
        self.document.clear_recovery()
        self._save_settings()
        self.scene.detach()
        event.accept()

    def dragEnterEvent(self, event):
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event):
        for url in event.mimeData().urls():
            if url.isLocalFile():
                self.files.open_file(url.toLocalFile())
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


GC_INTERVAL_S = 1.0


class GuiThreadCollector:
    """Python's cyclic garbage collection on a timer of the GUI thread (automatic GC off).

    Each tick collects the generations whose counts passed the thresholds Python itself
    would use, youngest first. As in Python, a full collection also waits until the oldest
    generation has grown by a quarter since the last one: a full pass over the window's
    objects holds up the event loop for tens of milliseconds. :meth:`freeze_startup` takes
    what start-up made out of every later pass, once ``freeze_when()`` says start-up is over;
    :meth:`thaw` gives it back when the first graph is replaced.
    """

    def __init__(self, interval: float = GC_INTERVAL_S):
        self.threshold = gc.get_threshold()
        self.long_lived = 0  # objects in the oldest generation after the last full collection
        self.next_count = 0  # the oldest generation's count at which to look at its size again
        self.frozen = False
        self.freeze_when = None  # a check that start-up is over (the first window's)
        gc.disable()
        self.timer = QTimer()
        self.timer.timeout.connect(self.check)
        self.timer.start(int(interval * 1000))

    def check(self):
        if not self.frozen and self.freeze_when is not None and self.freeze_when():
            self.freeze_startup()
        counts = gc.get_count()
        for generation in range(3):
            if counts[generation] <= self.threshold[generation]:
                break
            if generation == 2:
                if counts[2] < self.next_count:
                    break
                if len(gc.get_objects(2)) - self.long_lived <= self.long_lived // 4:
                    # counting the oldest generation takes milliseconds: not again until as
                    # many collections of the middle one have passed as its threshold
                    self.next_count = counts[2] + self.threshold[2]
                    break
                gc.collect(2)
                self.long_lived = len(gc.get_objects(2))
                self.next_count = 0
                break
            gc.collect(generation)

    def freeze_startup(self):
        """Move every object alive now out of the collector's sight (``gc.freeze``), once: the
        modules, widgets and preset of the first window shown live as long as the program,
        and every collection would otherwise scan them again, holding up the event loop.
        Later windows freeze nothing: what an earlier one left would never be collected."""
        if not self.frozen:
            self.frozen = True
            gc.freeze()

    def thaw(self):
        """Give what :meth:`freeze_startup` froze back to the collector (``gc.unfreeze``): the
        first graph is being replaced, and its objects may now be garbage. They are passed
        over again only at the next full collection, which waits as Python's does."""
        if self.frozen and gc.get_freeze_count():
            gc.unfreeze()


def _collector() -> GuiThreadCollector | None:
    """The application's :class:`GuiThreadCollector`, if it collects on the GUI thread."""
    return getattr(QApplication.instance(), "_gui_thread_gc", None)


def collect_garbage_on_gui_thread(app: QApplication):
    """Turn off Python's automatic cyclic GC; collect on a timer of the GUI thread instead.

    Automatic collection runs on whichever thread happens to allocate, so a Qt object
    caught in a reference cycle (a traceback holding a frame holding a widget) could be
    destroyed on the training thread, and Qt aborts when an object with a timer dies off
    its own thread. Returns the collector (kept on ``app``; calling again reuses it).
    """
    collector = getattr(app, "_gui_thread_gc", None)
    if collector is None:
        collector = GuiThreadCollector(GC_INTERVAL_S)
        app._gui_thread_gc = collector
    return collector


def stop_collecting_on_gui_thread(app: QApplication):
    """Undo :func:`collect_garbage_on_gui_thread` (automatic GC again)."""
    collector = getattr(app, "_gui_thread_gc", None)
    if collector is not None:
        collector.timer.stop()
        del app._gui_thread_gc
    gc.unfreeze()
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
        # the style named to Qt, not set from Python: setStyle returns a QStyle, and making
        # PySide's QStyle type (its many enums) would hold up the first paint
        app = QApplication(list(argv if argv is not None else sys.argv[:1])
                           + ["-style", "Fusion"])
    elif app.style().name() != "fusion":
        app.setStyle("Fusion")
    collect_garbage_on_gui_thread(app)
    app.setApplicationName(APP_NAME)
    app.setOrganizationName("Backprop Studio")
    app.setApplicationVersion(__version__)
    return app


def default_preset():
    """The preset opened when no file is given: LeNet-5 if shipped, else the first one."""
    try:
        stems = [s for s, _, _ in list_examples()]
    except (OSError, ValueError):
        return None
    for stem in ("lenet5", "abc"):
        if stem in stems:
            return example_path(stem)
    return example_path(stems[0]) if stems else None


def _preset_named(text):
    """The preset file ``text`` names when it is no file itself (``backprop-studio lenet5``)."""
    try:
        found = resolve(text)
    except FileFormatError:
        return None  # neither: opening it says the file is missing
    return found if found != Path(str(text)) else None


def run_app(path=None, startup_time=False) -> int:
    """Open the editor on ``path`` (or a preset) and run the event loop; the exit code.

    ``startup_time``: print the time to the canvas's first paint and quit
    (:mod:`app.startup_time`).
    """
    code = check_gui_libraries()  # before Qt would abort on a missing X11 library
    if code is not None:
        return code
    app = make_app()
    win = MainWindow()
    if startup_time:
        from app.startup_time import report_first_paint  # noqa: PLC0415 - benchmarks only

        report_first_paint(win)
    win.show()
    if not win.files.offer_recovery():
        open_at_start(win, path)
    return app.exec()


def open_at_start(win, path=None):
    """What the window opens when it starts: ``path`` (a file, or a preset's name such as
    ``lenet5``), else the default preset. A preset opens as a new untitled graph; a file
    that cannot be opened shows its error, and the window stays open on an empty graph."""
    preset = default_preset() if path is None else _preset_named(path)
    if preset is not None:
        win.files.open_example(preset)
    elif path is not None:
        win.files.open_file(path)
