"""The window's stepping part: the Step menu and toolbar, the stepping docks and their wiring.

:class:`SteppingUI` builds them on the :class:`~app.main_window.MainWindow` (the
actions and docks stay attributes of the window, as the editor's own do) and
connects the canvas, the panels and the :class:`~app.controllers.stepping.SteppingController`.
The window calls it at fixed points of its set-up, so docks are made in the same
order as the editor's and a saved window layout restores the same way.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import QApplication, QLabel, QSlider

from app.controllers.stepping import DEFAULT_SPEED, MAX_SPEED, SteppingController
from core.kernels import compiled
from widgets.device_choice import DeviceCombo
from widgets.step_list import StepList


class SteppingUI(QObject):
    """Makes and wires everything of the window that steps through forward and backward.

    Parameters
    ----------
    win : MainWindow
        The window; it gets ``step_list``, ``stepping`` (the controller), the docks
        ``steps_dock``, ``chain_dock``, ``tensor_dock``, ``digit_dock``, the ``act_…``
        step actions, ``step_actions``, ``step_toolbar``, ``speed_slider`` and
        ``step_device`` (the device combo box). The panels in the last three docks are
        made by :meth:`panels`, just after the window's first paint or when first needed.
    """


    def __init__(self, win):
        super().__init__(win)
        self.win = win
        win.step_list = StepList()
        win.stepping = SteppingController(win.document, win.step_list, win.settings, win)
        self._docks_raised = False
        self._tips: dict = {}
        self._busy = False
        self._enabled, self._enabled_reason = True, ""
        self._started = False
        self._panels = None
        self._digit_sets_folder = None

    # ============================================================== docks
    def make_steps_dock(self):
        """The step list, a tab beside the palette (made among the editor's docks)."""
        w = self.win
        w.steps_dock = w._dock("Steps", w.step_list, Qt.LeftDockWidgetArea, "steps")
        w.tabifyDockWidget(w.palette_dock, w.steps_dock)

    def make_docks(self):
        """The Chain Rule, Tensor and Digit docks, and the canvas overlay's signals.

        The docks are made now, so a saved window layout restores them; the panels inside
        wait for :meth:`panels`: their modules and widgets would hold up the first paint.
        """
        w = self.win
        w.chain_dock = w._dock("Chain Rule", None, Qt.RightDockWidgetArea, "chain_rule")
        w.tensor_dock = w._dock("Tensor", None, Qt.BottomDockWidgetArea, "tensor")
        w.digit_dock = w._dock("Digit", None, Qt.BottomDockWidgetArea, "digit")
        # stepping panels share the editor's places and come forward when stepping starts
        w.tabifyDockWidget(w.inspector_dock, w.chain_dock)
        w.tabifyDockWidget(w.train_dock, w.tensor_dock)
        w.tabifyDockWidget(w.tensor_dock, w.digit_dock)  # wide: beside the plots
        for d in (w.palette_dock, w.inspector_dock, w.train_dock):
            d.raise_()
        self._docks_raised = False
        for d in (w.chain_dock, w.tensor_dock):
            d.visibilityChanged.connect(lambda on: on and self.panels())
        # its tab comes forward: the sample is read before the panel's first paint
        w.digit_dock.visibilityChanged.connect(lambda on: on and self.panels()[2].read_sample())
        st, sc = w.stepping, w.scene
        st.attach_views(sc.stepping)
        st.views_needed = self.panels  # a session tells the panels from its first step
        self._connect_digit_sets()
        sc.wire_clicked.connect(self.show_wire)
        sc.port_clicked.connect(self.show_port)
        sc.breakpoint_toggled.connect(st.toggle_breakpoint)
        st.breakpoints_changed.connect(sc.set_breakpoints)
        st.moved.connect(self._raise_docks)

    def panels(self) -> tuple:
        """The chain-rule panel, tensor view and digit input, made and docked at the first call."""
        if self._panels is not None:
            return self._panels
        # imported here: the window's first paint does not wait for these modules
        from widgets.chain_rule_panel import ChainRulePanel  # noqa: PLC0415
        from widgets.digit_input import DigitInput  # noqa: PLC0415
        from widgets.tensor_view import TensorView  # noqa: PLC0415

        w = self.win
        self._panels = chain, tensor, digit = ChainRulePanel(), TensorView(), DigitInput()
        for dock, panel in ((w.chain_dock, chain), (w.tensor_dock, tensor),
                            (w.digit_dock, digit)):
            if panel.theme is not w.theme:
                panel.set_theme(w.theme)
            dock.setWidget(panel)
        w.stepping.attach_views(w.scene.stepping, chain, tensor)
        digit.digit_chosen.connect(self._feed_digit)
        return self._panels

    # ======================================================== digit sets
    def _connect_digit_sets(self):
        """The Digit panel offers the MNIST folder the Training panel has chosen."""
        w, panel = self.win, self.win.train_panel
        # the panel sets its folder after these signals (the dialog closes first): look later
        later = lambda *_a: QTimer.singleShot(0, self.offer_training_data)  # noqa: E731
        panel.source.currentIndexChanged.connect(later)
        panel.dialog_closed.connect(later)
        panel.start_requested.connect(later)
        w.digit_dock.visibilityChanged.connect(lambda on: on and later())
        w.stepping.digit_data_loaded.connect(self._on_digit_data)

    def offer_training_data(self):
        """Read the Training panel's folder for the Digit panel, if not read yet."""
        folder = self.win.train_panel.folder
        if folder and folder != self._digit_sets_folder:
            if self.win.stepping.load_digit_folder(folder):
                self.panels()[2].set_note_text(f"Reading the MNIST files in {folder}…")

    def _on_digit_data(self, folder, data, error):
        from widgets.digit_input import mnist_sets  # noqa: PLC0415 - made with the panels

        d = self.panels()[2]
        if data is None:
            d.set_note_text("The Training panel's folder cannot be offered: " + error)
            return
        self._digit_sets_folder = folder
        d.set_data_sets(mnist_sets(data, "folder", f"MNIST folder ‘{Path(folder).name}’"))

    def _feed_digit(self, image, label):
        self.win.stepping.set_digit(image, label, self.panels()[2].description())

    def docks(self) -> list:
        """The stepping docks, for the View and Step menus."""
        w = self.win
        return [w.steps_dock, w.chain_dock, w.tensor_dock, w.digit_dock]

    # ============================================================ actions
    def _selected_node(self):
        ids = self.win.editing.selected_node_ids()
        return ids[0] if len(ids) == 1 else None

    def make_actions(self):
        w, st, act = self.win, self.win.stepping, self.win._action
        w.act_evaluate = act("&Evaluate", st.evaluate, "F5",
                             tip="Run the forward and the backward pass at once")
        w.act_step = act("Step &Forward", st.step, "F10", tip="Run the next step (one node)")
        w.act_step_back = act("Step &Back", st.step_back, "Shift+F10",
                              tip="Undo the last step exactly")
        w.act_run_forward = act("Run Forward &Pass", st.run_forward, "F6",
                                tip="Run to the end of the forward pass")
        w.act_run_backward = act("Run Bac&kward Pass", st.run_backward, "Shift+F6",
                                 tip="Run to the end of the backward pass")
        w.act_run_to = act("Run to &Selected Node", lambda: st.run_to(self._selected_node()),
                           "Ctrl+F10", tip="Run to the selected node's forward step, or its "
                                           "backward step once forward passed it")
        w.act_continue = act("&Continue", st.continue_, "F8",
                             tip="Run to the next breakpoint or condition")
        w.act_reset_steps = act("&Reset Stepping", st.reset, "Shift+F5",
                                tip="Back to before the first step")
        w.act_play = act("P&lay", st.play, "F7", checkable=True,
                         tip="Step on its own at the speed on the Step toolbar")
        w.act_breakpoint = act("Toggle &Breakpoint",
                               lambda: st.toggle_breakpoint(self._selected_node()), "F9",
                               tip="Stop at the selected node's steps")
        w.act_break_nan = act("Break on &NaN/Inf", st.set_break_on_nonfinite, checkable=True,
                              tip="Stop on the step that makes a NaN or Inf")
        w.act_break_nan.setChecked(True)
        w.act_check_gradient = act(
            "Check &Gradient", lambda: st.check_gradient_of(self._selected_node()), "Ctrl+G",
            tip="Compare the selected node's gradients with finite differences")
        w.act_animation = act("&Animation", st.set_animation, checkable=True,
                              tip="Animate gradients flowing back along the wires")
        w.act_animation.setChecked(st.animation)
        w.act_wire_pictures = act("&Heat Maps on Wires", st.set_wire_pictures, checkable=True,
                                  tip="Show a small heat map (feature maps, matrices) or bars "
                                      "(vectors) on each tensor wire")
        w.act_wire_pictures.setChecked(st.wire_pictures)
        w.act_predict = act("Predict &Mode", st.set_predict_mode, checkable=True,
                            tip="Guess each gradient before it is shown")
        w.step_actions = [w.act_evaluate, w.act_step, w.act_step_back, w.act_run_forward,
                          w.act_run_backward, w.act_run_to, w.act_continue, w.act_reset_steps,
                          w.act_play, w.act_check_gradient]
        self._tips = {a: a.toolTip() for a in w.step_actions}

    def make_menu(self, menubar):
        """The Step menu."""
        w = self.win
        m = menubar.addMenu("&Step")
        m.addActions([w.act_evaluate, w.act_step, w.act_step_back])
        m.addSeparator()
        m.addActions([w.act_run_forward, w.act_run_backward, w.act_run_to, w.act_continue,
                      w.act_reset_steps])
        m.addSeparator()
        m.addAction(w.act_play)
        m.addSeparator()
        m.addActions([w.act_breakpoint, w.act_break_nan])
        m.addSeparator()
        m.addActions([w.act_check_gradient, w.act_animation, w.act_wire_pictures,
                      w.act_predict])
        m.addSeparator()
        for d in self.docks():
            m.addAction(d.toggleViewAction())
        return m

    def make_toolbar(self):
        """The Step toolbar, on its own row below the main one."""
        w = self.win
        w.addToolBarBreak()  # its own row: beside the main one, it ran off the window
        tb = w.addToolBar("Step")
        tb.setObjectName("step_toolbar")
        w.step_toolbar = tb
        tb.addActions([w.act_evaluate, w.act_reset_steps])
        tb.addSeparator()
        tb.addActions([w.act_step_back, w.act_step, w.act_run_to, w.act_continue])
        tb.addSeparator()
        tb.addAction(w.act_play)
        w.speed_slider = QSlider(Qt.Horizontal)
        w.speed_slider.setObjectName("step_speed")
        w.speed_slider.setRange(1, MAX_SPEED)
        w.speed_slider.setValue(DEFAULT_SPEED)
        w.speed_slider.setMaximumWidth(120)
        w.speed_slider.setToolTip("Play speed (steps per second)")
        self.speed_label = QLabel()
        w.speed_slider.valueChanged.connect(self._on_speed)
        tb.addWidget(w.speed_slider)
        tb.addWidget(self.speed_label)
        self._on_speed(w.speed_slider.value())
        tb.addSeparator()
        tb.addActions([w.act_breakpoint, w.act_break_nan, w.act_animation])
        tb.addSeparator()
        tb.addWidget(QLabel(" Device "))
        w.step_device = combo = DeviceCombo("Where stepping runs")
        combo.setObjectName("step_device")
        combo.set_device(w.stepping.device)
        combo.activated.connect(self._on_device_chosen)
        tb.addWidget(combo)

    def connect_signals(self):
        """The controller's signals to the window (status bar, selection, actions)."""
        w, st = self.win, self.win.stepping
        w.training.running_changed.connect(st.set_training)
        st.show_node.connect(w._show_node)
        st.enabled_changed.connect(self._on_enabled)
        st.playing_changed.connect(self._on_playing)
        st.busy_changed.connect(self._on_busy)
        st.devices_probed.connect(self._on_devices_probed)
        st.device_changed.connect(self._on_device_changed)

    def after_first_paint(self):
        """Once the window is on screen: load the compiled kernels and find out which
        devices can step, each on a plain Python thread (the window never waits for them),
        then make the stepping panels."""
        if self._started:
            return
        self._started = True
        compiled.load_in_background()
        self.win.stepping.probe_devices()
        QTimer.singleShot(0, self.panels)  # after the frame on screen, before anyone steps

    # ============================================================ devices
    def _on_devices_probed(self, status):
        self.win.step_device.set_status(status)
        self.win.train_panel.set_devices(status)
        self._on_device_changed(self.win.stepping.device)

    def _on_device_chosen(self, index):
        self.win.stepping.set_device(self.win.step_device.itemData(index))

    def _on_device_changed(self, device):
        self.win.step_device.set_device(device)

    # =========================================================== handlers
    def graph_replaced(self):
        """Another graph is shown: the docks come forward again at its first step."""
        self._docks_raised = False
        self.win.stepping.graph_replaced()

    def set_theme(self, theme):
        for panel in self._panels or ():  # panels made later take the window's theme then
            if panel.theme is not theme:  # a style sheet set again re-polishes the panel
                panel.set_theme(theme)

    def _on_speed(self, value: int):
        self.win.stepping.set_speed(value)
        self.speed_label.setText(f" {value}/s ")

    def _raise_docks(self, _reason=None):
        """The first move on a graph brings the step list and the chain rule forward."""
        if not self._docks_raised:
            self._docks_raised = True
            self.win.steps_dock.raise_()
            self.win.chain_dock.raise_()

    def show_wire(self, edge):
        w = self.win
        self.panels()
        w.tensor_dock.show()
        w.tensor_dock.raise_()
        w.stepping.show_wire(edge)

    def show_port(self, node_id, port, is_output):
        w = self.win
        self.panels()
        w.tensor_dock.show()
        w.tensor_dock.raise_()
        w.stepping.show_port(node_id, port, is_output)

    def _on_enabled(self, enabled: bool, reason: str):
        self._enabled, self._enabled_reason = enabled, reason
        self._update_actions()

    def _on_busy(self, busy: bool):
        """A long move runs on the worker thread: its actions wait, the cursor says so."""
        if busy == self._busy:
            return
        self._busy = busy
        if busy:
            QApplication.setOverrideCursor(Qt.BusyCursor)
        else:
            QApplication.restoreOverrideCursor()
        self._update_actions()

    def _update_actions(self):
        w = self.win
        busy_reason = "A step is running (Reset stops it)"
        playing = w.stepping.is_playing()
        for a in w.step_actions:
            # Reset stays: it stops the running step; Pause stays while playing
            on = self._enabled and (not self._busy or a is w.act_reset_steps
                                    or (a is w.act_play and playing))
            a.setEnabled(on)
            tip = self._enabled_reason if not self._enabled else busy_reason
            a.setToolTip(self._tips[a] if on else tip)
        on = self._enabled and not self._busy
        w.step_list.setEnabled(on)
        w.step_list.setToolTip("" if on else (self._enabled_reason or busy_reason))
        w.step_device.setEnabled(not self._busy)

    def _on_playing(self, playing: bool):
        w = self.win
        self._update_actions()
        w.act_play.setChecked(playing)
        w.act_play.setText("Pa&use" if playing else "P&lay")
