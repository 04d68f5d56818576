"""Stepping from the window: one :class:`core.stepping.StepSession` for the document's graph.

The controller owns the session; the views only read it. After every move it
tells the views that are attached (the canvas overlay, the chain-rule panel, the
tensor view, the step list) and says in the status bar where it stopped and why.
A graph edit makes the session stale: it is reset once the edit is done. The
gradient check runs on a plain Python thread (no Qt object there) and comes back
through a queued signal.

A move whose estimated work (:meth:`StepSession.work`) is small runs at once on
the GUI thread, so single steps of small graphs stay instant; a longer one
(VGG-16's fc1, say) runs on a plain Python thread on a copy of the step state
(:class:`~core.stepping.StepMove`) while the window keeps drawing: the Step
actions are off, the status bar says which node is running. An edit, new inputs,
Reset or another graph while it runs cancel it (its result is dropped) and reset
stepping at once; only one move runs at a time, so the next waits for the thread.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, QTimer, Signal

import core.stepping as steps  # its session loads at the first step, not at start-up
from app.document import Document
from core.errors import GraphError, StudioError
from core.kernels.backend import DeviceError, device_status
from core.serialize import copy_graph
from core.train import find_role
from core.train.recipe import check_folder, load_images
from widgets.device_choice import DEVICE_NAMES

if TYPE_CHECKING:
    from core.stepping import StepMove, StepSession, StopReason

DIGIT_PIXELS = 28 * 28
DEFAULT_SPEED = 4  # steps per second while playing
MAX_SPEED = 30
TRAINING_REASON = "Stepping is off while training runs (Train ▸ Stop Training ends it)"
STALE_MESSAGE = "The graph changed: stepping was reset"
# estimated multiply-adds and elements (StepSession.work) a move may do on the GUI thread:
# LeNet-5's whole pass is far below, one VGG-16 convolution far above
QUICK_WORK = 2e7
BUSY_REFRESH_MS = 100
JOIN_TIMEOUT_S = 60.0  # closing the window waits for the step that runs (one node)


def default_feeds(graph) -> dict:
    """A sample digit for a graph whose features input takes 28×28 images, else nothing."""
    try:
        features = find_role(graph, "features")
    except StudioError:
        return {}
    if features is None or features.value is not None:
        return {}
    shape = features.params.get("shape") or ()
    dims = tuple(shape[1:])
    if not dims or any(d is None for d in dims):
        return {}
    size = 1
    for d in dims:
        size *= int(d)
    if size != DIGIT_PIXELS:
        return {}
    try:
        return steps.digit_feeds(graph, *steps.sample_digit(0))
    except StudioError:
        return {}


def status_text(reason: StopReason, total: int) -> str:
    """The status bar's line for where a move stopped."""
    msg = reason.message
    if reason.kind == "breakpoint":
        return "Stopped at " + msg
    if reason.kind in ("nonfinite", "exploding", "vanishing"):
        return "Stopped: " + msg
    if reason.kind == "error":
        return "The step failed: " + msg
    if reason.kind == "step" and reason.index is not None:
        return f"Step {reason.index + 1} of {total}: {reason.phase} '{reason.node}'"
    return msg[:1].upper() + msg[1:]


class SteppingController(QObject):
    """Steps the document's graph: moves, breakpoints, play/pause, feeds and checks.

    Parameters
    ----------
    document : Document
        Whose graph is stepped.
    step_list : StepList
        The step list dock's widget (rows, clicks, gradient-norm conditions).
    settings : QSettings
        Where the animation switch persists.
    parent : QObject
        Owner (the window).

    Attributes
    ----------
    session : StepSession or None
        Made on the first stepping action; ``None`` again when the graph is replaced.
    overlay, chain_panel, tensor_view
        The views told after each move (attached by :meth:`attach_views`; ``None``: none).
    views_needed : callable or None
        Called before a session is made, so views made on demand are attached by then.
    message : Signal(str, int)
        A status message and how long to show it (ms).
    show_node : Signal(str)
        Id of a node to select and centre (a breakpoint or a NaN stopped there).
    moved : Signal(object)
        The :class:`StopReason` of every move (after the views were told).
    playing_changed : Signal(bool)
    enabled_changed : Signal(bool, str)
        Whether stepping may run now, and why not.
    breakpoints_changed : Signal(object)
        The set of node ids with a breakpoint.
    check_finished : Signal(object)
        The :class:`GradientCheckReport` (or ``None`` after a failure), on the GUI thread.
    digit_data_loaded : Signal(str, object, str)
        A folder asked for by :meth:`load_digit_folder`, its
        :class:`~core.data.mnist.MnistData` (``None`` on failure) and the error, on the
        GUI thread.
    busy_changed : Signal(bool)
        A move started (True) or ended on the worker thread.
    devices_probed : Signal(object)
        ``{device: DeviceStatus}`` from :meth:`probe_devices`, on the GUI thread.
    device_changed : Signal(str)
        The device stepping runs on now.
    """

    message = Signal(str, int)
    show_node = Signal(str)
    moved = Signal(object)
    playing_changed = Signal(bool)
    enabled_changed = Signal(bool, str)
    breakpoints_changed = Signal(object)
    check_finished = Signal(object)
    digit_data_loaded = Signal(str, object, str)
    busy_changed = Signal(bool)
    devices_probed = Signal(object)
    device_changed = Signal(str)
    _check_done = Signal(int, object, str)  # emitted on the check's thread, queued here
    _move_done = Signal(int)  # emitted on the step thread, queued here
    _probe_done = Signal(object)  # emitted on the probing thread, queued here
    _folder_done = Signal(str, object, str)  # emitted on the reading thread, queued here

    def __init__(self, document: Document, step_list, settings, parent=None):
        super().__init__(parent)
        self.document = document
        self.step_list = step_list
        self.settings = settings
        self.session: StepSession | None = None
        self.overlay = self.chain_panel = self.tensor_view = None
        self.views_needed = None
        self._breakpoints: set = set()
        self._nonfinite = True
        self._above = self._below = None
        self._training = False
        self._predict = False
        self._feeds: dict | None = None  # chosen by the user; None: the default digit
        self._reset_pending = False
        self._check_token = 0
        self._check_thread: threading.Thread | None = None
        self.animation = settings.value("stepping/animation", True, type=bool)
        self.wire_pictures = settings.value("stepping/wire_pictures", True, type=bool)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._on_tick)
        self.set_speed(DEFAULT_SPEED)
        self._check_done.connect(self._on_check_done, Qt.QueuedConnection)
        self._folder_done.connect(self._on_folder_done, Qt.QueuedConnection)
        self._digit_folder: str | None = None  # read, or being read, for the Digit panel
        self.quick_work = QUICK_WORK
        self._job: StepMove | None = None  # the move running on the worker thread
        self._job_thread: threading.Thread | None = None
        self._job_token = 0
        self._move_done.connect(self._on_move_done, Qt.QueuedConnection)
        self._busy_timer = QTimer(self)
        self._busy_timer.setInterval(BUSY_REFRESH_MS)
        self._busy_timer.timeout.connect(self._show_busy)
        self.device = settings.value("stepping/device", "cpu", type=str)
        if self.device not in DEVICE_NAMES:
            self.device = "cpu"
        self.device_status: dict | None = None  # filled by probe_devices
        self._probe_done.connect(self._on_probe_done, Qt.QueuedConnection)
        step_list.step_chosen.connect(self.go_to)
        step_list.grad_norm_changed.connect(self.set_grad_norm_breaks)

    def attach_views(self, overlay=None, chain_panel=None, tensor_view=None):
        """The canvas overlay (G2) and the chain-rule panel and tensor view (G3) to tell.

        Views attached while a session is open are shown it at once.
        """
        self.overlay, self.chain_panel, self.tensor_view = overlay, chain_panel, tensor_view
        if overlay is not None:
            overlay.set_animation(self.animation)
            overlay.set_pictures(self.wire_pictures)
        if chain_panel is not None:
            chain_panel.set_predict_mode(self._predict)
            chain_panel.check_gradient_requested.connect(self.check_gradient_of)
        if self.session is not None:
            for view in (chain_panel, tensor_view):
                if view is not None:
                    view.set_session(self.session)

    # ============================================================ session
    def _ensure_session(self) -> StepSession | None:
        """The session for the document's graph, made now if needed (``None``: cannot step)."""
        graph = self.document.graph
        if self.session is not None and self.session.graph is not graph:
            self.graph_replaced()
        if self.session is None:
            if self.views_needed is not None:
                self.views_needed()  # the window's panels, if not made yet, see it from the start
            feeds = self._feeds if self._feeds is not None else default_feeds(graph)
            try:
                s = steps.StepSession(graph, feeds=feeds, device=self.device)
            except DeviceError as exc:
                self.message.emit(f"Cannot step on {DEVICE_NAMES[self.device]}: {exc}", 10000)
                return None
            except StudioError as exc:
                self.message.emit("Cannot step this graph: " + str(exc), 10000)
                return None
            s.stale_changed.subscribe(self._on_stale)
            self._apply_conditions(s)
            self.session = s
            self._tell_session()
        elif self.session.stale:
            reason = self.session.reset()
            if reason.kind == "error":
                self.message.emit("Cannot step this graph: " + reason.message, 10000)
                return None
            self._after_rebuild()
        return self.session

    def _apply_conditions(self, s: StepSession):
        s.break_on_nonfinite(self._nonfinite)
        s.break_on_grad_norm(self._above, self._below)
        self._breakpoints &= set(s.graph.nodes)
        for nid in self._breakpoints:
            s.set_breakpoint(nid)

    def _tell_session(self):
        s = self.session
        self.step_list.set_breakpoints(self._breakpoints)
        self.step_list.set_session(s)
        for view in (self.chain_panel, self.tensor_view):
            if view is not None:
                view.set_session(s)

    def graph_replaced(self):
        """The document shows another graph: close the session (a new one comes on demand)."""
        self.pause()
        self._cancel_move()
        self._check_token += 1  # a check still running belongs to the old graph
        if self.session is not None:
            self.session.stale_changed.unsubscribe(self._on_stale)
            self.session.close()
            self.session = None
        self._breakpoints.clear()
        self._feeds = None
        if self.overlay is not None:
            self.overlay.clear()
        self._tell_session()
        self.breakpoints_changed.emit(set())

    def _on_stale(self, _message):
        # called from inside the edit (one command may fire several graph events):
        # rebuild once it is done; a move running on the old graph is dropped
        self.pause()
        self._cancel_move()
        if not self._reset_pending:
            self._reset_pending = True
            QTimer.singleShot(0, self._reset_after_edit)

    def _reset_after_edit(self):
        self._reset_pending = False
        s = self.session
        if s is None or not s.stale:
            return
        reason = s.reset()
        if reason.kind == "error":
            if self.overlay is not None:
                self.overlay.clear()
            self.step_list.set_session(None)
            self.message.emit(STALE_MESSAGE + "; it stays off until the graph is fixed: "
                              + reason.message, 10000)
            return
        self._after_rebuild()
        self._show(reason, STALE_MESSAGE)

    def _after_rebuild(self):
        self._apply_conditions(self.session)
        self.breakpoints_changed.emit(set(self._breakpoints))
        self._tell_session()

    # ============================================================= moves
    def can_step(self) -> bool:
        return not self._training

    def set_training(self, running: bool):
        """The training controller started (True) or ended a run: stepping waits for it."""
        self._training = bool(running)
        if running:
            self.pause()
            self._cancel_move()
        self.enabled_changed.emit(not running, TRAINING_REASON if running else "")

    def is_busy(self) -> bool:
        """A move runs on the worker thread (the next one waits for it)."""
        return self._job is not None

    def _move(self, method, *args) -> StopReason | None:
        """Make the move ``method`` of the session: at once when it is quick, else on the
        worker thread (``None`` is returned; :attr:`moved` tells when it is done)."""
        if self._training:
            self.message.emit(TRAINING_REASON, 5000)
            return None
        if self._job is not None:
            self.message.emit(self._busy_text() + " Wait for it, or Reset to stop it.", 4000)
            return None
        s = self._ensure_session()
        if s is None:
            return None
        try:
            out = s.begin(method, *args)
            if isinstance(out, steps.StepMove) and out.work <= self.quick_work:
                out = s.finish(out.run())
        except StudioError as exc:
            self.message.emit(str(exc), 8000)
            return None
        if isinstance(out, steps.StepMove):
            self._start_move(out)
            return None
        self._show(out)
        return out

    def _start_move(self, move: StepMove):
        move.summarize = True  # the numbers the views show next are made on the thread too
        self._job = move
        self._job_token += 1
        t = threading.Thread(target=self._move_worker, args=(self._job_token, move),
                             name="step", daemon=True)
        self._job_thread = t
        self.busy_changed.emit(True)
        self._show_busy()
        self._busy_timer.start()
        t.start()

    def _move_worker(self, token, move):
        # a plain thread: it steps the move's copy and emits one signal, queued here
        move.run()
        try:
            self._move_done.emit(token)
        except RuntimeError:  # the window closed while it ran
            pass

    def _busy_text(self) -> str:
        move = self._job
        if move is None:
            return ""
        if move.cancel_requested:
            return "Stopping the step that runs…"
        node = move.running_node or "…"
        extra = f" (step {move.ran + 1} of {move.steps})" if move.steps > 1 else ""
        return f"Stepping {node} …{extra}"

    def _show_busy(self):
        if self._job is not None:
            self.message.emit(self._busy_text(), 0)

    def _on_move_done(self, token):
        if token != self._job_token or self._job is None:
            return
        move, self._job, self._job_thread = self._job, None, None
        self._busy_timer.stop()
        self.busy_changed.emit(False)
        try:
            reason = move.session.finish(move)
        except StudioError as exc:
            self.message.emit(str(exc), 8000)
            reason = None
        if move.session is not self.session or reason is None:
            self.pause()
            return
        if reason.kind in ("cancelled", "stale"):
            self.pause()
            if not self._reset_pending:
                self.message.emit("The running step was stopped; stepping was reset", 8000)
            return
        self._show(reason)
        if self.is_playing() and reason.kind != "step":
            self.pause()

    def _cancel_move(self):
        """Drop the move that runs (its thread ends after its current step)."""
        if self._job is not None:
            self._job.cancel()
            self._show_busy()

    def shutdown(self):
        """The window closes: stop playing, stop the running move and wait for its thread."""
        self.pause()
        self._cancel_move()
        t = self._job_thread
        if t is not None:
            t.join(JOIN_TIMEOUT_S)
        self._job_token += 1  # its signal, if still queued, is ignored
        busy, self._job, self._job_thread = self._job is not None, None, None
        self._busy_timer.stop()
        if busy:
            self.busy_changed.emit(False)

    def _show(self, reason: StopReason, text: str | None = None):
        s = self.session
        if self.overlay is not None:
            self.overlay.show(s)
        if self.chain_panel is not None:
            self.chain_panel.refresh()
        self.step_list.show_position(s)
        self.message.emit(text or status_text(reason, len(s.stepper.steps)), 10000)
        if reason.triggered and reason.node is not None:
            try:
                self.show_node.emit(s.graph.node(reason.node).id)
            except StudioError:
                pass
        self.moved.emit(reason)

    def evaluate(self):
        """Forward and backward at once (breakpoints ignored)."""
        return self._move("evaluate")

    def step(self):
        return self._move("step")

    def step_back(self):
        return self._move("step_back")

    def run_forward(self):
        return self._move("run_forward")

    def run_backward(self):
        return self._move("run_backward")

    def continue_(self):
        return self._move("continue_")

    def reset(self):
        """Back to before the first step; a move running is stopped (its result dropped)."""
        self.pause()
        if self._job is not None and self.session is not None:
            self._cancel_move()
            reason = self.session.reset()  # the move runs on a copy: the session is free
            if reason.kind == "error":
                self.message.emit("Cannot step this graph: " + reason.message, 10000)
                return None
            if reason.kind == "start" and self.session.stale is False:
                self._after_rebuild()
            self._show(reason, "Stepping was reset; the running step is being stopped")
            return reason
        return self._move("reset")

    def go_to(self, index: int):
        """Make step ``index`` current (``-1``: before the first), back or forth."""
        return self._move("go_to", index)

    def run_to(self, node_id: str | None):
        """Run to ``node_id``: its forward step, or its backward step once forward passed it."""
        if node_id is None:
            self.message.emit("Select one node to run to", 5000)
            return None

        s = self.session
        phase = "forward"
        if s is not None and not s.stale and s.graph is self.document.graph:
            try:
                if s.position > s.step_index(node_id, "forward"):
                    try:
                        s.step_index(node_id, "backward")
                        phase = "backward"
                    except GraphError:
                        pass  # it does not lead to the loss: back to its forward step
            except StudioError:
                pass  # the move says what is wrong
        return self._move("run_to", node_id, phase)

    # ============================================================== play
    def set_speed(self, steps_per_second: int):
        """How many steps a second Play runs (1 … 30)."""
        self.speed = max(1, min(MAX_SPEED, int(steps_per_second)))
        self.timer.setInterval(round(1000 / self.speed))

    def is_playing(self) -> bool:
        return self.timer.isActive()

    def play(self, on: bool = True):
        """Step on its own on a GUI-thread timer until the end, a stop or :meth:`pause`."""
        if not on:
            self.pause()
            return
        if self._training or self.timer.isActive():
            if self._training:
                self.message.emit(TRAINING_REASON, 5000)
            self.playing_changed.emit(self.timer.isActive())
            return
        s = self._ensure_session()
        if s is None:
            self.playing_changed.emit(False)
            return
        if s.done:
            self.reset()
        self.timer.start()
        self.playing_changed.emit(True)

    def pause(self):
        if self.timer.isActive():
            self.timer.stop()
            self.playing_changed.emit(False)

    def _on_tick(self):
        if self._job is not None:
            return  # the last step still runs; the next tick tries again
        reason = self.step()
        if self._job is None and (reason is None or reason.kind != "step"):
            self.pause()

    # ======================================================= breakpoints
    def toggle_breakpoint(self, node_id: str | None):
        """Switch the breakpoint on ``node_id`` (the selected node, or a card's dot)."""
        if node_id is None:
            self.message.emit("Select one node to put a breakpoint on", 5000)
            return
        graph = self.document.graph
        if node_id not in graph.nodes:
            return
        on = node_id not in self._breakpoints
        (self._breakpoints.add if on else self._breakpoints.discard)(node_id)
        s = self.session
        if s is not None and s.graph is graph and not s.stale:
            s.set_breakpoint(node_id, on)
        name = graph.nodes[node_id].name
        self.message.emit(f"Breakpoint {'set' if on else 'cleared'} on '{name}'", 4000)
        self.breakpoints_changed.emit(set(self._breakpoints))
        self.step_list.set_breakpoints(self._breakpoints)
        if s is not None:
            self.step_list.show_position(s)

    def breakpoints(self) -> set:
        return set(self._breakpoints)

    def set_break_on_nonfinite(self, on: bool):
        self._nonfinite = bool(on)
        if self.session is not None:
            self.session.break_on_nonfinite(self._nonfinite)

    def set_grad_norm_breaks(self, above=None, below=None):
        """Stop on a backward step passing a gradient norm above / below these (None: off)."""
        self._above, self._below = above, below
        if self.session is not None:
            self.session.break_on_grad_norm(above, below)

    # ============================================================ modes
    def set_animation(self, on: bool):
        self.animation = bool(on)
        self.settings.setValue("stepping/animation", self.animation)
        if self.overlay is not None:
            self.overlay.set_animation(self.animation)

    def set_wire_pictures(self, on: bool):
        """Show heat maps and bars on the tensor wires (or only their numbers)."""
        self.wire_pictures = bool(on)
        self.settings.setValue("stepping/wire_pictures", self.wire_pictures)
        if self.overlay is not None:
            self.overlay.set_pictures(self.wire_pictures)

    def set_predict_mode(self, on: bool):
        self._predict = bool(on)
        if self.chain_panel is not None:
            self.chain_panel.set_predict_mode(self._predict)

    # =========================================================== devices
    def probe_devices(self) -> bool:
        """Find out off the GUI thread whether CUDA can run (importing CuPy takes a while);
        :attr:`devices_probed` brings the answer. False when it is known or being found."""
        if self.device_status is not None or getattr(self, "_probing", False):
            return False
        self._probing = True
        threading.Thread(target=self._probe_worker, name="probe-devices", daemon=True).start()
        return True

    def _probe_worker(self):
        # a plain thread: it asks the core and emits one signal, queued to the GUI thread
        status = device_status()
        try:
            self._probe_done.emit(status)
        except RuntimeError:  # the window closed meanwhile
            pass

    def _on_probe_done(self, status):
        self._probing = False
        self.device_status = status
        if self.device != "cpu" and not status[self.device].available:
            self.set_device("cpu", quiet=True)  # chosen last time, not available now
        self.devices_probed.emit(status)

    def set_device(self, device: str, quiet: bool = False) -> bool:
        """Step on ``device`` (``"cpu"`` or ``"cuda"``) from now on; stepping is reset.
        False (and a message saying why) when it cannot run here."""
        if device not in DEVICE_NAMES:
            raise ValueError(f"unknown device {device!r}")
        status = self.device_status if self.device_status is not None else device_status()
        if not status[device].available:
            self.message.emit(f"Cannot step on {DEVICE_NAMES[device]}: "
                              f"{status[device].reason}", 10000)
            self.device_changed.emit(self.device)
            return False
        if not quiet:
            self.settings.setValue("stepping/device", device)
        if device == self.device:
            return True
        self.device = device
        self.device_changed.emit(device)
        if self.session is not None:
            self.pause()
            self._cancel_move()
            old = self.session
            old.stale_changed.unsubscribe(self._on_stale)
            old.close()
            self.session = None
            if self._feeds is None:
                self._feeds = dict(old.feeds)
            if self._ensure_session() is None:
                self.step_list.set_session(None)
                if self.overlay is not None:
                    self.overlay.clear()
                return True
            if not quiet:
                self._show(steps.StopReason("start", "before the first step"),
                           f"Stepping on {DEVICE_NAMES[device]}: stepping was reset")
        elif not quiet:
            self.message.emit(f"Stepping runs on {DEVICE_NAMES[device]}", 5000)
        return True

    # ============================================================ feeds
    def load_digit_folder(self, folder: str | None) -> bool:
        """Read the MNIST files of ``folder`` off the GUI thread for the Digit panel;
        :attr:`digit_data_loaded` brings them. False when it is already read or asked for."""
        if not folder or folder == self._digit_folder:
            return False
        self._digit_folder = folder
        threading.Thread(target=self._folder_worker, args=(folder,), name="digit-folder",
                         daemon=True).start()
        return True

    def _folder_worker(self, folder):
        # a plain thread: it reads the files and emits one signal, queued to the GUI thread
        try:
            check_folder(folder)
            data, error = load_images(data_dir=folder)[0], ""
        except StudioError as exc:
            data, error = None, str(exc)
        except (OSError, ValueError, MemoryError) as exc:
            data, error = None, f"{folder}: {exc}"
        try:
            self._folder_done.emit(folder, data, error)
        except RuntimeError:  # the window closed while it read
            pass

    def _on_folder_done(self, folder, data, error):
        if folder != self._digit_folder:
            return  # another folder was chosen meanwhile
        if data is None:
            self._digit_folder = None  # asking again tries again
        self.digit_data_loaded.emit(folder, data, error)

    def set_digit(self, image, label: int = -1, source: str = ""):
        """Feed a digit (28×28, 0..1 or 0..255) and its label (``-1``: keep the target's);
        ``source`` says in words where it came from, for the status bar."""
        graph = self.document.graph
        try:
            pixels = steps.drawn_digit(image)
            feeds = steps.digit_feeds(graph, pixels,
                                      None if label is None or label < 0 else label)
        except StudioError as exc:
            self.message.emit("Cannot feed this digit: " + str(exc), 8000)
            return
        what = source or (f"digit {label}" if label is not None and label >= 0
                          else "the drawn digit")
        self.set_feeds(feeds, what)

    def set_feeds(self, feeds: dict, what: str = "new inputs"):
        """Feed these input values (by node name) from now on, keeping the other feeds;
        stepping is reset. ``what`` names them in the status bar."""
        graph = self.document.graph
        s = self.session if self.session is not None and self.session.graph is graph else None
        old = dict(s.feeds) if s is not None else dict(self._feeds or default_feeds(graph))
        old.update(feeds)
        self._feeds = old
        if s is None:
            return
        self.pause()
        self._cancel_move()
        reason = s.set_feeds(old)
        if reason.kind == "error":
            self.message.emit(f"Cannot step with {what}: " + reason.message, 10000)
            return
        self._after_rebuild()
        self._show(reason, f"Feeding {what}: stepping was reset")

    # ============================================================= views
    def show_wire(self, edge):
        """Show the tensor a wire carries in the tensor view."""
        if self.tensor_view is None or self.session is None:
            return
        src = self.document.graph.nodes.get(edge.src)
        if src is not None:
            self.tensor_view.show_tensor(edge.src, src.output_ports.index(edge.src_port))

    def show_port(self, node_id: str, port: str, is_output: bool):
        """Show a port's tensor: an output's value, or what arrives at an input."""
        if self.tensor_view is None or self.session is None:
            return
        graph = self.document.graph
        node = graph.nodes.get(node_id)
        if node is None:
            return
        if is_output:
            self.tensor_view.show_tensor(node_id, node.output_ports.index(port))
            return
        for e in graph.edges:
            if e.dst == node_id and e.dst_port == port:
                self.show_wire(e)
                return

    # ===================================================== gradient check
    def check_gradient_of(self, node_id: str | None):
        """Compare ``node_id``'s gradients with finite differences, off the GUI thread."""
        if node_id is None:
            self.message.emit("Select one node to check its gradient", 5000)
            return
        s = self._ensure_session()
        if s is None:
            return
        # a copy taken here, so edits made while it runs cannot reach the thread
        snapshot = SimpleNamespace(graph=copy_graph(s.graph), feeds=dict(s.feeds),
                                   loss_id=s.loss_id, seed=s.seed)
        self._check_token += 1
        token = self._check_token
        name = s.graph.nodes[node_id].name
        self.message.emit(f"Checking the gradient of '{name}'…", 0)
        t = threading.Thread(target=self._check_worker, args=(token, snapshot, node_id),
                             name="check-gradient", daemon=True)
        self._check_thread = t
        t.start()

    def _check_worker(self, token, snapshot, node_id):
        # a plain thread: it reads the copy and emits one signal, queued to the GUI thread
        try:
            report, error = steps.check_gradient(snapshot, node_id), ""
        except StudioError as exc:
            report, error = None, str(exc)
        except (ArithmeticError, ValueError, MemoryError) as exc:
            report, error = None, f"{type(exc).__name__}: {exc}"
        try:
            self._check_done.emit(token, report, error)
        except RuntimeError:  # the window closed while it ran: nobody to tell
            pass

    def _on_check_done(self, token, report, error):
        if token != self._check_token:
            return
        if self.chain_panel is not None:
            self.chain_panel.show_check(report)
        if report is None:
            self.message.emit("Gradient check failed: " + error, 10000)
        else:
            self.message.emit(f"Gradient check on '{report.node}': {report.verdict} "
                              f"(largest relative error {report.worst:.2e})", 10000)
        self.check_finished.emit(report)
