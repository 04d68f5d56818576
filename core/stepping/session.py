"""A stepping session: the debugger the stepping view, ``render --steps`` and the tests drive.

It wraps :class:`core.executor.Stepper` (so stepped numbers equal a full run's bit
for bit) and adds what a debugger needs: a step list with labels, run to a node
or to the end of a phase, continue to the next breakpoint (node breakpoints and
conditions such as NaN or an exploding gradient, stopping *on* the step that
triggers and saying why), go to any step, feeds, and invalidation when the graph
changes. Everything it returns is plain data; the GUI only draws.

A session runs on one device (``device="cpu"`` or ``"cuda"``): the values and
gradients stay there; what the views read (:meth:`StepSession.value`,
:meth:`~StepSession.grad`, :meth:`~StepSession.tensor`…) comes back to the host,
once per array, and summaries and breakpoint conditions are computed on the
device, bringing back only their numbers.

A move's forward steps can run apart from the session (:meth:`StepSession.begin`
gives a :class:`StepMove`; a worker thread calls :meth:`StepMove.run`;
:meth:`StepSession.finish` applies it): the steps run on a copy of the step
state, so the session the views read never changes half-way, and a move that
the graph, the inputs or a reset overtook is dropped whole.

Example
-------
>>> from core.serialize import load_graph
>>> from examples import example_path
>>> s = StepSession(load_graph(example_path("abc")))
>>> s.run_forward().kind
'forward_done'
>>> float(s.value("f"))
2.0
>>> s.continue_().kind
'end'
>>> float(s.grad("a")), float(s.grad("b")), float(s.grad("c"))
(2.0, 3.0, 1.0)
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from core.errors import GraphError, StudioError
from core.events import Event
from core.executor import _MISSING, Stepper  # the undo log's marker for "no entry"
from core.kernels.backend import on_host, to_numpy
from core.ops.base import numel
from core.stepping.breakpoints import GradNormAbove, GradNormBelow, NonFinite, StopReason
from core.stepping.summary import (
    MagnitudeScale,
    TensorSummary,
    TensorView,
    summarize,
    tensor_view,
)


@dataclass(frozen=True)
class StepEntry:
    """One line of the step list.

    Attributes
    ----------
    index : int
        Position in the list (forward steps first, then backward steps).
    phase : str
        ``"forward"`` or ``"backward"``.
    node_id, node : str
        The node's id and (current) name.
    label : str
        ``"forward conv1"``, ``"backward conv1"``.
    """

    index: int
    phase: str
    node_id: str
    node: str
    label: str


@dataclass(frozen=True)
class WireView:
    """What one wire shows after the current step.

    Attributes
    ----------
    edge : Edge
    state : str
        ``"pending"`` (no value yet), ``"value"`` (forward done) or ``"gradient"``
        (its gradient has flowed back along it).
    value : TensorSummary or None
        The value its source port holds.
    grad : TensorSummary or None
        The gradient sent back along this wire (one reader's share when the port fans out).
    level : float or None
        The gradient's magnitude (RMS) on the session's log scale, 0..1.
    """

    edge: object
    state: str
    value: TensorSummary | None
    grad: TensorSummary | None
    level: float | None


@dataclass
class _Fingerprint:
    """What a node held when the plan was made (to tell a rename from an edit)."""

    name: str
    op: object
    value: object
    weights: dict
    state: dict


_STORES = ("values", "grads", "weight_grads", "passed", "ctxs")


class StepMove:
    """The forward steps of one move, run on a copy of the session's step state.

    Made by :meth:`StepSession.begin` on the thread that owns the session; :meth:`run`
    may be called on any thread (it touches nothing the session's readers see);
    :meth:`StepSession.finish` applies it back on the owning thread.

    Attributes
    ----------
    work : float
        An estimate of the arithmetic the steps do (see :meth:`StepSession.work`).
    running : str
        ``"forward conv5_3"``: the step running now (read from another thread for a
        busy message), ``""`` before and after.
    cancelled : bool
        :meth:`cancel` stopped it before its last step.
    """

    def __init__(self, session, position, breakpoints, kind, message):
        self.session = session
        self.position, self.breakpoints = position, breakpoints
        self.kind, self.message = kind, message
        self.generation = session._generation
        live = session.stepper
        self.start = live.position
        self.work = session.work(live.position, position)
        ex = copy.copy(live.executor)
        for name in _STORES:
            setattr(ex, name, dict(getattr(live.executor, name)))
        # by id as well: a rename while the move runs must not lose a feed
        ex.feeds = dict(live.executor.feeds)
        for name, v in live.executor.feeds.items():
            node = session.graph.nodes.get(name) or session._by_name(name)
            if node is not None:
                ex.feeds.setdefault(node.id, v)
        st = copy.copy(live)
        st.executor, st._undo, st.records = ex, [], []
        self._stepper = st
        self._bps = dict(session._breakpoints)
        self._conds = list(session.conditions)
        self._cancel = False
        self.cancelled = False
        self.running = self.running_node = self.running_phase = ""
        self.reason: StopReason | None = None
        self.error: BaseException | None = None
        self.finished = False
        self.summarize = False  # set by a caller that runs it on a worker thread
        self._summaries: dict = {}  # id(array) -> (array, its summary)

    @property
    def steps(self) -> int:
        """How many steps the move runs (at most)."""
        return self.position - self.start

    @property
    def ran(self) -> int:
        """How many of them have run so far."""
        return self._stepper.position - self.start

    def cancel(self):
        """Stop after the step running now (callable from any thread)."""
        self._cancel = True

    @property
    def cancel_requested(self) -> bool:
        return self._cancel

    def run(self) -> StepMove:
        """Run the steps (on any thread); a breakpoint, a condition or an error stops it."""
        s, st = self.session, self._stepper
        try:
            while st.position < self.position:
                if self._cancel:
                    self.cancelled = True
                    break
                nxt = st.steps[st.position]
                node = s.graph.nodes.get(nxt.node_id)
                self.running_node = node.name if node else nxt.node_id
                self.running_phase = nxt.phase
                self.running = f"{nxt.phase} {self.running_node}"
                try:
                    with np.errstate(all="ignore"):  # a NaN or Inf is reported by the conditions
                        rec = st.step()
                except StudioError as exc:
                    i = st.position - 1 if st.position else None
                    self.reason = StopReason("error", str(exc), i,
                                             node.name if node else nxt.node_id, nxt.phase)
                    break
                if s.device != "cpu" and rec.phase == "forward" and node is not None:
                    # running statistics live in the graph, which stays in host memory
                    for key, v in list(node.state.items()):
                        if not on_host(v):
                            node.state[key] = to_numpy(v)
                if self.breakpoints:
                    reason = s._check(rec, st.position - 1, self._bps, self._conds)
                    if reason is not None:
                        self.reason = reason
                        break
            if self.summarize and not self._cancel:
                self._summarize_new()
        except Exception as exc:  # noqa: BLE001 - handed to finish(), on the owning thread
            self.error = exc
        finally:
            self.running = self.running_node = self.running_phase = ""
            self.finished = True
        return self

    def _summarize_new(self):
        """Summarize what the steps made, here (a worker thread), so that the views the
        session's thread draws next find the numbers made (a 100-million-weight gradient)."""
        done = self._summaries
        for rec in self._stepper.records:
            for group in (rec.outputs, rec.upstream, rec.local or (), rec.grad_inputs):
                for a in group:
                    if a is not None and id(a) not in done:
                        done[id(a)] = (a, summarize(a))

    def _commit(self):
        """Make the copy's state the session's (the owning thread, nothing else running)."""
        live, st = self.session.stepper, self._stepper
        remap = {}
        for name in _STORES:
            mine, theirs = getattr(st.executor, name), getattr(live.executor, name)
            theirs.clear()
            theirs.update(mine)
            remap[id(mine)] = theirs
        for undo in st._undo:
            live._undo.append([(remap.get(id(store), store), key, old)
                               for store, key, old in undo])
        live.records.extend(st.records)
        live.position = st.position
        self.session._made.update(self._summaries)

    def _discard(self):
        """Undo what the copy wrote into the graph (lazily made weights, running statistics),
        where nothing replaced it since."""
        st = self._stepper
        mine = {id(getattr(st.executor, name)) for name in _STORES}
        after = {}
        for undo in st._undo:
            for store, key, _ in undo:
                if id(store) not in mine:
                    after[(id(store), key)] = store.get(key)
        for undo in reversed(st._undo):
            for store, key, old in reversed(undo):
                if id(store) in mine or store.get(key) is not after.get((id(store), key)):
                    continue
                if old is _MISSING:
                    store.pop(key, None)
                else:
                    store[key] = old
                after[(id(store), key)] = store.get(key)


class StepSession:
    """Step a graph forward and backward one node at a time, like a debugger.

    Parameters
    ----------
    graph : Graph
        Read, never edited, except that ``initialize`` gives missing weights a value.
    loss : node name or id, optional
        Where backward starts (default: the graph's loss; none: forward steps only).
    feeds : dict, optional
        Values for input nodes by name (see :meth:`set_feed`, :mod:`core.stepping.feeds`).
    seed : int
        Seeds initialization and each node's random generator, as a full run does.
    training : bool
        Run dropout and batch norm in training mode.
    initialize : bool
        Give parameters and weights that have no value one first, as ``eval`` and training do.
    device : str
        ``"cpu"`` or ``"cuda"`` (CuPy): where the steps run (a :class:`DeviceError
        <core.kernels.backend.DeviceError>` when it cannot run here).

    Attributes
    ----------
    conditions : list of Condition
        Checked after every step run by :meth:`continue_` and the run methods;
        :class:`~core.stepping.breakpoints.NonFinite` is on by default.
    scale : MagnitudeScale
        Maps gradient magnitudes to 0..1 for the wires.
    stale : bool
        The graph changed since the plan was made: :meth:`reset` before stepping on.
    stale_message : str
    stale_changed : Event
        Emitted with the message when the session becomes stale.
    """

    def __init__(self, graph, loss=None, feeds=None, *, seed: int = 0, training: bool = False,
                 initialize: bool = True, device: str = "cpu"):
        self.graph = graph
        self._device_arg = device
        self._loss_arg = loss
        self.feeds = dict(feeds or {})
        self.seed = seed
        self.training = training
        self.initialize = initialize
        self.conditions: list = [NonFinite()]
        self.scale = MagnitudeScale()
        self.stale = False
        self.stale_message = ""
        self.stale_changed = Event()
        self._breakpoints: dict = {}  # node id -> phases
        self._memo: dict = {}  # key -> [array, its summary, its host copy]
        self._made: dict = {}  # id(array) -> (array, summary) made by a move's worker thread
        self._generation = 0   # bumped by every change of the step state
        self._deferring = False
        self._building = False
        self._build()
        self._subs = [(graph.node_added, self._on_node_added),
                      (graph.node_removed, self._on_node_removed),
                      (graph.node_changed, self._on_node_changed),
                      (graph.edge_added, self._on_edge),
                      (graph.edge_removed, self._on_edge),
                      (graph.meta_changed, self._on_meta_changed)]
        for ev, cb in self._subs:
            ev.subscribe(cb)

    # ------------------------------------------------------------ set-up
    def _build(self):
        """A new plan from the graph as it is now (raises a GraphError naming the node)."""
        g = self.graph
        self._building = True
        try:
            if self.initialize:
                g.initialize(self.seed, feeds=self.feeds)
            self.stepper = Stepper(g, loss=self._loss_arg, feeds=self.feeds, seed=self.seed,
                                   training=self.training, check_finite=False,
                                   device=self._device_arg)
        finally:
            self._building = False
        ex = self.stepper.executor
        self.device = ex.device
        self.loss_id = ex.loss_id
        self._fingerprints = {n.id: _Fingerprint(n.name, n.op, n.value, dict(n.weights),
                                                 dict(n.state)) for n in g.nodes.values()}
        self._index = {}
        for i, st in enumerate(self.stepper.steps):
            self._index[(st.node_id, st.phase)] = i
        self.n_forward = sum(1 for st in self.stepper.steps if st.phase == "forward")
        self.batch = self._batch_size()
        self._costs = self._step_costs()
        self._memo.clear()
        self._made.clear()
        self._generation += 1
        self.stale = False
        self.stale_message = ""

    def _batch_size(self):
        """The batch size when a features input has an open batch axis, else ``None``."""
        for node in self.graph.nodes.values():
            shape = node.params.get("shape") if node.op_id == "input" else None
            if node.params.get("role") == "features" and shape and shape[0] is None:
                fed = self.feeds.get(node.name, self.feeds.get(node.id, node.value))
                return int(np.shape(fed)[0]) if fed is not None and np.ndim(fed) else None
        return None

    def _by_name(self, name):
        return next((n for n in self.graph.nodes.values() if n.name == name), None)

    def _step_costs(self) -> list:
        """Per step, an estimate of its arithmetic from the shapes (see :meth:`work`)."""
        g = self.graph
        try:
            shapes = g.infer_shapes(self.feeds).shapes
        except StudioError:
            shapes = {}
        costs = []
        for st in self.stepper.steps:
            node = g.nodes[st.node_id]
            outs = shapes.get(node.id)
            if outs is None:
                costs.append(math.inf)  # unknown: never taken for a quick one
                continue
            n_out = sum(numel(sh) for sh in outs)
            n_in = 0
            for e in g.in_edges(node).values():
                src = shapes.get(e.src)
                if src is not None:
                    n_in += numel(src[g.nodes[e.src].output_ports.index(e.src_port)])
            macs = 0
            main = outs[0] if outs else ()
            per = numel(main) / max(1, int(main[1] or 1)) if len(main) >= 2 else 1
            for w in node.weights.values():
                macs += int(np.size(w)) * per  # a weight meets every position of its output
            cost = n_in + n_out + macs
            costs.append(cost if st.phase == "forward" else 2 * cost)
        return costs

    def work(self, start: int, stop: int) -> float:
        """An estimate of the arithmetic of steps ``start:stop`` (multiply-adds plus the
        elements read and written; ``inf`` when a shape is unknown), to tell a quick move
        from a long one."""
        return float(sum(self._costs[max(0, start):stop]))

    def close(self):
        """Stop listening to the graph."""
        for ev, cb in self._subs:
            ev.unsubscribe(cb)
        self._subs = []

    def set_feed(self, name, value) -> StopReason:
        """Feed ``value`` to the input ``name`` (``None``: its own value again); resets."""
        node = self.graph.node(name)
        if node.op_id != "input":
            raise GraphError(f"'{node.name}' is a {node.op_id} node; only inputs are fed",
                             nodes=(node.name,))
        self.feeds.pop(node.id, None)
        if value is None:
            self.feeds.pop(node.name, None)
        else:
            self.feeds[node.name] = value
        return self._rebuild("the inputs changed: stepping was reset")

    def set_feeds(self, feeds: dict) -> StopReason:
        """Replace every feed at once (a digit and its label, say); resets."""
        for name in feeds:
            self.graph.node(name)
        self.feeds = dict(feeds)
        return self._rebuild("the inputs changed: stepping was reset")

    def _rebuild(self, message) -> StopReason:
        if not self.stale:
            self.stepper.reset()
        try:
            self._build()
        except StudioError as exc:
            self._mark_stale(str(exc))
            return StopReason("error", str(exc))
        return StopReason("start", message)

    # ------------------------------------------------------------ events
    def _mark_stale(self, message):
        was = self.stale
        self.stale, self.stale_message = True, message
        if not was:
            self.stale_changed.emit(message)

    def _changed(self, detail):
        if not self._building:
            self._mark_stale(f"the graph changed ({detail}): stepping was reset")

    def _on_node_added(self, node):
        self._changed(f"'{node.name}' was added")

    def _on_node_removed(self, node):
        self._changed(f"'{node.name}' was removed")

    def _on_edge(self, edge):
        self._changed("a connection changed")

    def _on_node_changed(self, node):
        if self._building:
            return
        fp = self._fingerprints.get(node.id)
        same = (fp is not None and node.op is fp.op and node.value is fp.value
                and all(node.weights.get(k) is v for k, v in fp.weights.items())
                and all(node.state.get(k) is v for k, v in fp.state.items()))
        if same and node.name != fp.name:
            # a rename changes no number, but feeds are keyed by name
            for feeds in (self.feeds, self.stepper.executor.feeds):
                if fp.name in feeds:
                    feeds[node.name] = feeds.pop(fp.name)
            fp.name = node.name
            return
        self._changed(f"'{node.name}' was edited")

    def _on_meta_changed(self):
        if self._loss_arg is None and self.graph.loss != self.loss_id:
            self._changed("the loss changed")

    # ------------------------------------------------------------- steps
    @property
    def steps(self) -> list:
        """The step list: every forward step, then every backward step."""
        return [self._entry(i) for i in range(len(self.stepper.steps))]

    @property
    def position(self) -> int:
        """How many steps have run (0 … ``len(steps)``)."""
        return self.stepper.position

    @property
    def current_index(self) -> int | None:
        """The index of the step just run (``None`` before the first)."""
        return self.position - 1 if self.position else None

    @property
    def current(self) -> StepEntry | None:
        """The step just run, or ``None`` at the start."""
        i = self.current_index
        return None if i is None else self._entry(i)

    def _entry(self, i) -> StepEntry:
        st = self.stepper.steps[i]
        node = self.graph.nodes.get(st.node_id)
        name = node.name if node is not None else st.node_id
        return StepEntry(i, st.phase, st.node_id, name, f"{st.phase} {name}")

    @property
    def done(self) -> bool:
        return self.stepper.done

    def record(self, index: int | None = None):
        """The :class:`~core.executor.StepRecord` of step ``index`` (default: the current)."""
        i = self.current_index if index is None else index
        if i is None or not 0 <= i < self.position:
            return None
        return self.stepper.records[i]

    def step_index(self, node, phase: str = "forward") -> int:
        """Index of ``node``'s step in ``phase``; a GraphError if it has none."""
        n = self.graph.node(node)
        try:
            return self._index[(n.id, phase)]
        except KeyError:
            raise GraphError(f"there is no {phase} step for '{n.name}'"
                             + (" (it does not lead to the loss)" if phase == "backward" else ""),
                             nodes=(n.name,)) from None

    # -------------------------------------------------------- breakpoints
    def set_breakpoint(self, node, on: bool = True, phases=("forward", "backward")):
        """Stop :meth:`continue_` after ``node``'s steps in ``phases`` (``on=False`` clears)."""
        nid = self.graph.node(node).id
        if on:
            self._breakpoints[nid] = frozenset(phases)
        else:
            self._breakpoints.pop(nid, None)

    def toggle_breakpoint(self, node) -> bool:
        """Switch the breakpoint on ``node``; returns whether it is now set."""
        nid = self.graph.node(node).id
        self.set_breakpoint(nid, on=nid not in self._breakpoints)
        return nid in self._breakpoints

    def has_breakpoint(self, node) -> bool:
        return self.graph.node(node).id in self._breakpoints

    def break_on_grad_norm(self, above: float | None = None, below: float | None = None):
        """Stop on a backward step passing a gradient with norm above/below these (None: off)."""
        self.conditions = [c for c in self.conditions
                           if not isinstance(c, (GradNormAbove, GradNormBelow))]
        if above is not None:
            self.conditions.append(GradNormAbove(float(above)))
        if below is not None:
            self.conditions.append(GradNormBelow(float(below)))

    def break_on_nonfinite(self, on: bool = True):
        """Stop on the step that makes a NaN or Inf (on by default)."""
        self.conditions = [c for c in self.conditions if not isinstance(c, NonFinite)]
        if on:
            self.conditions.insert(0, NonFinite())

    def grad_names(self, node) -> tuple:
        """Labels of what a backward step passes gradients to: inputs, then weights."""
        n = self.graph.node(node)
        return (tuple(f"input '{p}'" for p in n.input_ports)
                + tuple(f"weight '{w}'" for w in type(n.op).weights))

    def _check(self, rec, index, breakpoints=None, conditions=None) -> StopReason | None:
        bps = self._breakpoints if breakpoints is None else breakpoints
        phases = bps.get(rec.node_id)
        names = self.grad_names(rec.node_id)
        for cond in self.conditions if conditions is None else conditions:
            reason = cond.check(rec, names)
            if reason is not None:
                return dataclasses.replace(reason, index=index)
        if phases and rec.phase in phases:
            return StopReason("breakpoint", f"breakpoint on '{rec.node}' ({rec.phase})",
                              index, rec.node, rec.phase)
        return None

    # ---------------------------------------------------------- movement
    def _here(self, kind, message) -> StopReason:
        cur = self.current
        return StopReason(kind, message, self.current_index, cur.node if cur else None,
                          cur.phase if cur else None)

    def _go(self, position, breakpoints, kind, message):
        if self.stale:
            return StopReason("stale", self.stale_message)
        if self.stepper.position > position:
            self._generation += 1
            while self.stepper.position > position:
                self.stepper.back()  # restores what each step replaced: quick
            self._prune()
        if self.stepper.position < position:
            move = StepMove(self, position, breakpoints, kind, message)
            if self._deferring:
                return move
            return self.finish(move.run())
        return self._arrived(None, kind, message)

    def _arrived(self, reason, kind, message) -> StopReason:
        if reason is not None:
            return reason
        if self.position == 0:
            return StopReason("start", "before the first step")
        if self.done and kind == "step":
            return self._here("end", "all steps are done")
        return self._here(kind, message)

    def begin(self, method: str, *args):
        """Start the move ``method`` (``"step"``, ``"run_forward"``, ``"run_to"``…) with
        ``args``: a :class:`StopReason` when it is done already (no forward step to run),
        else a :class:`StepMove` to :meth:`~StepMove.run` (on any thread) and
        :meth:`finish` here. Nothing else may move the session until then."""
        if method not in ("step", "step_back", "run_forward", "run_backward", "continue_",
                          "evaluate", "run_to", "go_to", "reset"):
            raise ValueError(f"{method!r} is not a move")
        self._deferring = True
        try:
            return getattr(self, method)(*args)
        finally:
            self._deferring = False

    def finish(self, move: StepMove) -> StopReason:
        """Apply a :class:`StepMove` that has run; a move overtaken by a graph change, new
        inputs, a reset or :meth:`~StepMove.cancel` is dropped (``"stale"``/``"cancelled"``)."""
        if move.session is not self:
            raise ValueError("this move belongs to another session")
        current = (move.generation == self._generation and move._stepper.steps is self.stepper.steps
                   and move.start == self.stepper.position)
        if self.stale or not current or move.cancelled:
            move._discard()
            if self.stale:
                return StopReason("stale", self.stale_message)
            return StopReason("cancelled", "the run was stopped")
        move._commit()
        self._generation += 1
        self._prune()
        if move.error is not None:
            raise move.error
        return self._arrived(move.reason, move.kind, move.message)

    def step(self) -> StopReason:
        """Run the next step (conditions are checked, so a NaN it makes is reported)."""
        if not self.stale and self.done:
            return self._here("end", "all steps are done")
        return self._go(self.position + 1, True, "step", "one step")

    def step_back(self) -> StopReason:
        """Undo the last step, restoring every value and gradient exactly."""
        return self._go(max(0, self.position - 1), False, "step", "one step back")

    def run_forward(self) -> StopReason:
        """Run to the end of the forward pass (stopping at breakpoints on the way)."""
        if self.position >= self.n_forward and not self.stale:
            return self._here("forward_done", "the forward pass is done")
        return self._go(self.n_forward, True, "forward_done", "the forward pass is done")

    def run_backward(self) -> StopReason:
        """Run the rest of the forward pass and the whole backward pass (stopping at
        breakpoints on the way)."""
        return self._go(len(self.stepper.steps), True, "end", "all steps are done")

    def continue_(self) -> StopReason:
        """Run until a breakpoint or condition triggers (stopping on that step) or the end."""
        return self._go(len(self.stepper.steps), True, "end", "all steps are done")

    def evaluate(self) -> StopReason:
        """Forward and backward at once: every remaining step, breakpoints ignored."""
        return self._go(len(self.stepper.steps), False, "end", "all steps are done")

    def run_to(self, node, phase: str = "forward") -> StopReason:
        """Make ``node``'s step in ``phase`` the current one (back or forth; breakpoints on
        the way forward stop it earlier)."""
        if self.stale:
            return StopReason("stale", self.stale_message)
        i = self.step_index(node, phase)
        name = self.graph.node(node).name
        return self._go(i + 1, i + 1 > self.position, "target", f"at {phase} '{name}'")

    def go_to(self, index: int) -> StopReason:
        """Make step ``index`` the current one (``-1``: before the first); no breakpoints."""
        if not -1 <= index < len(self.stepper.steps):
            raise IndexError(f"step {index} is outside the {len(self.stepper.steps)} steps")
        return self._go(index + 1, False, "target", f"at step {index + 1}")

    def reset(self) -> StopReason:
        """Back to before the first step; after a graph change, a new plan from the graph."""
        if self.stale:
            return self._rebuild("stepping was reset")
        self.stepper.reset()
        self._generation += 1
        self._prune()
        return StopReason("start", "before the first step")

    # ------------------------------------------------------------- reads
    # value(), grad(), weight_grad() and wire_grad() are for display: they come back in
    # host memory (one copy per array); the _raw_ ones are what the device holds
    def _raw_value(self, nid, port):
        return self.stepper.executor.values.get((nid, port))

    def _raw_grad(self, nid, port):
        return self.stepper.executor.grads.get((nid, port))

    def _raw_wire_grad(self, edge):
        dst = self.graph.nodes[edge.dst]
        return self.stepper.executor.passed.get((edge.dst, dst.input_ports.index(edge.dst_port)))

    def value(self, node, port: int = 0):
        """The array output ``port`` of ``node`` holds now, or ``None`` (not computed yet)."""
        nid = self.graph.node(node).id
        return self.host(self._raw_value(nid, port), ("v", nid, port))

    def grad(self, node, port: int = 0):
        """∂loss/∂(output ``port`` of ``node``) so far, or ``None`` (none has flowed)."""
        nid = self.graph.node(node).id
        return self.host(self._raw_grad(nid, port), ("g", nid, port))

    def weight_grad(self, node, weight: str):
        """∂loss/∂ weight ``weight`` of ``node``, or ``None`` before its backward step."""
        nid = self.graph.node(node).id
        arr = self.stepper.executor.weight_grads.get((nid, weight))
        return self.host(arr, ("wg", nid, weight))

    def wire_grad(self, edge):
        """The gradient sent back along ``edge`` (its reader's share), or ``None``."""
        return self.host(self._raw_wire_grad(edge), ("p", edge.dst, edge.dst_port))

    def _memo_of(self, key, arr):
        hit = self._memo.get(key) if key is not None else None
        if hit is None or hit[0] is not arr:
            hit = [arr, None, None]
            if key is not None:
                self._memo[key] = hit
        return hit

    def host(self, arr, key=None):
        """``arr`` in host memory (itself on the CPU; on a device, one copy per array)."""
        if arr is None or on_host(arr):
            return arr
        hit = self._memo_of(key, arr)
        if hit[2] is None:
            hit[2] = to_numpy(arr)
        return hit[2]

    def summary(self, arr, key=None) -> TensorSummary | None:
        """:func:`summarize` ``arr`` (computed where it lives), remembered while the session
        holds that very array (``None``: none)."""
        if arr is None:
            return None
        hit = self._memo_of(key, arr)
        if hit[1] is None:
            made = self._made.get(id(arr))
            hit[1] = made[1] if made is not None and made[0] is arr else summarize(arr)
        return hit[1]

    def _prune(self):
        """Forget summaries and host copies of arrays the session no longer holds."""
        if not self._memo and not self._made:
            return
        ex = self.stepper.executor
        held = {id(a) for store in (ex.values, ex.grads, ex.weight_grads, ex.passed)
                for a in store.values()}
        for rec in self.stepper.records:
            for group in (rec.inputs, rec.outputs, rec.upstream, rec.local or (),
                          rec.grad_inputs):
                held.update(id(a) for a in group)
        for node in self.graph.nodes.values():
            held.update(id(a) for a in node.weights.values())
        for key in [k for k, hit in self._memo.items() if id(hit[0]) not in held]:
            del self._memo[key]
        for key in [k for k in self._made if k not in held]:
            del self._made[key]

    def value_summary(self, node, port: int = 0) -> TensorSummary | None:
        nid = self.graph.node(node).id
        return self.summary(self._raw_value(nid, port), ("v", nid, port))

    def grad_summary(self, node, port: int = 0) -> TensorSummary | None:
        nid = self.graph.node(node).id
        return self.summary(self._raw_grad(nid, port), ("g", nid, port))

    def weight_summary(self, node, weight: str, grad: bool = False) -> TensorSummary | None:
        """A layer weight, or (``grad=True``) its gradient."""
        n = self.graph.node(node)
        arr = (self.stepper.executor.weight_grads.get((n.id, weight)) if grad
               else n.weights.get(weight))
        return self.summary(arr, ("wg" if grad else "w", n.id, weight))

    def level(self, summary: TensorSummary | None) -> float | None:
        """A gradient's RMS magnitude on :attr:`scale` (0..1), or ``None``."""
        if summary is None:
            return None
        return 1.0 if not summary.finite else self.scale.level(summary.rms)

    def wire(self, edge) -> WireView:
        """Value, gradient and state of one wire after the current step."""
        src = self.graph.nodes[edge.src]
        k = src.output_ports.index(edge.src_port)
        value = self.summary(self._raw_value(edge.src, k), ("v", edge.src, k))
        garr = self._raw_wire_grad(edge)
        grad = self.summary(garr, ("p", edge.dst, edge.dst_port))
        state = "gradient" if garr is not None else "value" if value is not None else "pending"
        return WireView(edge, state, value, grad, self.level(grad))

    def wires(self) -> list:
        """:meth:`wire` for every edge of the graph."""
        return [self.wire(e) for e in self.graph.edges]

    def node_state(self, node) -> str:
        """``"current"``, ``"backpropagated"``, ``"evaluated"`` or ``"pending"``."""
        return self._state(self.graph.node(node).id, self.current)

    def _state(self, nid, cur) -> str:
        if cur is not None and cur.node_id == nid:
            return "current"
        b = self._index.get((nid, "backward"))
        if b is not None and b < self.position:
            return "backpropagated"
        f = self._index.get((nid, "forward"))
        return "evaluated" if f is not None and f < self.position else "pending"

    def node_states(self) -> dict:
        """``{node id: state}`` (see :meth:`node_state`)."""
        cur = self.current
        return {nid: self._state(nid, cur) for nid in self.graph.nodes}

    def is_batched(self, arr) -> bool:
        """Whether ``arr``'s first axis is the batch (for picking the example shown)."""
        return (self.batch is not None and arr is not None and np.ndim(arr) >= 2
                and np.shape(arr)[0] == self.batch)

    def tensor(self, node, port: int = 0, *, grad: bool = False, weight: str | None = None,
               example: int = 0, full: bool = False) -> TensorView | None:
        """The tensor view of a port's value (or ``grad``), or of a layer ``weight``.

        ``example`` picks the batch example shown; ``None`` when nothing is computed yet.
        """
        n = self.graph.node(node)
        if weight is not None:
            arr = self.weight_grad(n, weight) if grad else n.weights.get(weight)
            if arr is None:
                return None
            return tensor_view(arr, kernel=np.ndim(arr) == 4, full=full)
        arr = self.grad(n, port) if grad else self.value(n, port)
        if arr is None:
            return None
        return tensor_view(arr, batched=self.is_batched(arr), example=example, full=full)
