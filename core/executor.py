"""Forward and backward passes, whole or one node at a time.

The plan is a fixed list of steps: every node forward in topological order,
then the nodes that lead to the loss backward in the reverse order. A full
run executes the same steps as stepping does, so both give bit-identical
numbers. Gradients that fan out are accumulated with ``+`` into new arrays (never
in place) so that a step can be undone by restoring what it replaced.

Example
-------
>>> from core.serialize import load_graph
>>> from examples import example_path
>>> g = load_graph(example_path("abc"))
>>> s = Stepper(g, loss="f")
>>> rec = s.step()          # first forward step
>>> rec.phase, rec.node
('forward', 'a')
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np

from core.errors import GraphError, MemoryLimitError, NonFiniteError, ShapeError
from core.graph import Graph, Node
from core.kernels import own_threads
from core.kernels.backend import array_module, make_rng, resolve_device, to_device, to_numpy
from core.kernels.threads import deferring
from core.ops.base import Context, check_allocation, fmt_bytes, memory_limit, numel
from core.ops.sources import feed_value

_MISSING = object()
_LAZY = object()  # stands for "not drawn yet" in a _NodeContext


def _all_finite(a) -> bool:
    """Whether every number in ``a`` is finite (no NaN, no ±Inf).

    For large float32/float64 NumPy arrays the sum of squares (one BLAS dot
    product, read in memory order) answers first: it is finite whenever every
    value is, and cheaper than ``isfinite(a).all()``, which builds a
    boolean array. Only when it is not finite — a NaN or Inf, or an overflow of
    huge but finite values — does the exact elementwise test decide.
    """
    if isinstance(a, np.ndarray) and a.size >= 4096 and a.dtype in _DOT_DTYPES:
        flat = np.ravel(a, order="K")  # a view whenever the memory is contiguous
        with np.errstate(all="ignore"):
            if np.isfinite(np.dot(flat, flat)):
                return True
    return bool(array_module(a).isfinite(a).all())


_DOT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class _NodeContext(Context):
    """A :class:`Context` whose random generator is made on first use.

    Seeding a generator is not free and would be paid per node and batch;
    only dropout-like ops draw from it. The seed is the same as an eager one,
    so replays stay identical.
    """

    def __init__(self, seed_key, device="cpu", **kwargs):
        self._seed_key = seed_key
        self._device = device
        super().__init__(rng=_LAZY, **kwargs)

    @property
    def rng(self):
        if self._rng is _LAZY:
            self._rng = make_rng(self._seed_key, self._device)  # draws on the run's device
        return self._rng

    @rng.setter
    def rng(self, value):
        self._rng = value


@dataclass
class Step:
    """One entry of the plan."""

    phase: str  # "forward" or "backward"
    node_id: str
    # an activation node run in this node's step (training runs): after a max pool instead
    # of before it, or on the rows a convolution makes
    then: str | None = None
    # the convolution that alone feeds this max pool, run in the same forward (training runs)
    fused: str | None = None


@dataclass
class StepRecord:
    """What one step did, for the stepping view.

    Attributes
    ----------
    phase : str
        ``"forward"`` or ``"backward"``.
    node, node_id : str
        Name and id of the node.
    inputs : list
        Input values (forward) — also set in backward, for display.
    outputs : list
        Output values.
    upstream : list
        Backward: ∂L/∂(each output), ``None`` where none flowed.
    local : list or None
        Backward, elementwise ops: the local derivative ∂out/∂in per input.
    grad_inputs : list
        Backward: the gradient this node passed to each input (then each weight).
    formula, derivative : str
        The op's display formulas.
    """

    phase: str
    node: str
    node_id: str
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    upstream: list = field(default_factory=list)
    local: list | None = None
    grad_inputs: list = field(default_factory=list)
    formula: str = ""
    derivative: str = ""


# ------------------------------------------------------------ plan passes
#
# Each pass reads the graph and what earlier passes decided, and records one decision
# on the executor for the steps to follow; the executor runs them in the order of
# Executor.plan_passes. Facts about ops come from the ops' declared attributes.

def prune_unread_outputs(ex, order):
    """``ex._wanted``: with ``all_outputs`` off, each node computes only its first output and
    the outputs an edge reads (an op skips the others, such as a max pool's indices)."""
    ex._wanted = {}
    if ex.all_outputs:
        return
    g = ex.graph
    for node in order:
        ex._wanted[node.id] = {0}
    for e in g.edges:
        ex._wanted[e.src].add(g.nodes[e.src].output_ports.index(e.src_port))


def check_finiteness(ex, order):
    """``ex._finite_checked``: the nodes whose outputs and gradients are checked for NaN/Inf
    (every node with ``check_finite``, so a NaN is reported at the node that made it)."""
    ex._finite_checked = frozenset(n.id for n in order) if ex.check_finite else frozenset()


def move_commuting_ops(ex, order):
    """``ex._moved``: ``{reader id: op id}`` for single-input ops run after their reader.

    An op that declares the reader's op id in ``commutes_with`` (ReLU: max pool), whose
    one edge goes to that reader, and whose reader has one input and no other output
    anybody reads, runs on the reader's output instead, on fewer numbers; the reader
    then reads the op's input (rewired here). Only in training runs (``all_outputs``
    off) without finiteness checks: otherwise every node runs as drawn.
    """
    ex._moved = {}
    if ex.all_outputs or ex._finite_checked:
        return
    g = ex.graph
    for node in order:
        commutes = type(node.op).commutes_with
        if not commutes or node.id == ex.loss_id or len(node.input_ports) != 1:
            continue
        out = g.out_edges(node)
        if len(out) != 1:
            continue
        reader = g.nodes[out[0].dst]
        if (reader.op_id not in commutes or len(reader.input_ports) != 1
                or ex._wanted.get(reader.id, {0}) != {0}):
            continue
        ex._moved[reader.id] = node.id
        ex._inputs[reader.id] = list(ex._inputs[node.id])


def fuse_conv_pool(ex, order):
    """``ex._fused``: ``{max pool id: conv id}`` for a convolution whose output only that
    max pool reads (directly or through an activation moved behind it).

    The pool's forward step runs the convolution too, each part pooling the rows it
    just made while they are in its core's cache
    (:meth:`~core.ops.layers.Conv2d.forward_pooled`); the convolution's value is not
    kept, and its backward is a step of its own as usual. Only in training runs, like
    :func:`move_commuting_ops`; a pair that cannot run so runs as two forwards, with
    the same numbers.
    """
    ex._fused = {}
    if ex.all_outputs or ex._finite_checked:
        return
    g = ex.graph
    for node in order:
        if node.op_id != "max_pool2d" or node.id == ex.loss_id:
            continue
        (src, k), = ex._inputs[node.id]
        conv = g.nodes[src]
        if conv.op_id != "conv2d" or conv.id == ex.loss_id or k != 0:
            continue
        if {e.dst for e in g.out_edges(conv)} != {ex._moved.get(node.id, node.id)}:
            continue
        if ex._wanted.get(node.id, {0}) != {0}:
            continue
        ex._fused[node.id] = conv.id


def fuse_conv_activation(ex, order):
    """``ex._absorbed``: ``{conv id: ReLU id}`` for a ReLU whose one input is a convolution
    that only it reads, and that no max pool took in (:func:`move_commuting_ops`).

    The convolution's forward step runs the ReLU too, each part on the rows it just made,
    while they are in its core's cache (:meth:`~core.ops.layers.Conv2d.forward_activated`);
    the ReLU's readers read the convolution's value, which is the ReLU's output (rewired
    here), and the ReLU's backward runs first in the convolution's backward step. Only in
    runs that keep no values (``all_outputs`` off) without finiteness checks, like
    :func:`move_commuting_ops`; a pair that cannot run so runs as two forwards, with the
    same numbers.
    """
    ex._absorbed = {}
    if ex.all_outputs or ex._finite_checked:
        return
    g = ex.graph
    moved = set(ex._moved.values())
    for node in order:
        if node.op_id != "relu" or node.id in moved or node.id == ex.loss_id:
            continue
        (src, k), = ex._inputs[node.id]
        conv = g.nodes[src]
        if (conv.op_id != "conv2d" or conv.id == ex.loss_id or k != 0
                or conv.id in ex._fused.values()
                or {e.dst for e in g.out_edges(conv)} != {node.id}):
            continue
        ex._absorbed[conv.id] = node.id
        for reader, srcs in ex._inputs.items():
            ex._inputs[reader] = [(conv.id, 0) if s == (node.id, 0) else s for s in srcs]


class Executor:
    """Runs a graph forward and backward.

    Parameters
    ----------
    graph : Graph
        The graph to run; it is read, never changed (except lazily created weights).
    training : bool
        Dropout and batch norm use their training behaviour.
    seed : int
        Seeds each node's random generator (with the node's position and the run count).
    check_finite : bool
        Stop at the first node whose output or gradient is NaN/Inf.
    input_grads : bool
        Also compute gradients for inputs and constants (stepping and ``eval``
        show them; training turns this off to save work).
    all_outputs : bool
        Compute and keep every output of every node. Training turns this off,
        which allows four shortcuts with the same numbers: an extra output
        nothing is connected to (a max pool's indices) is skipped; a ReLU
        whose only reader is a max pool runs after the pool, on a quarter of
        the numbers (max pool(ReLU(x)) = ReLU(max pool(x)), and the gradient
        reaches the same positions); a convolution whose only reader is a
        max pool runs in the pool's forward step, each part pooling the rows it
        made; and a ReLU that alone reads a convolution runs in the
        convolution's step, each part on the rows it made (the convolution's
        value is then the ReLU's). Skipped outputs, moved activations and
        convolutions run in a pool's step have no stored value. With
        ``check_finite`` every node runs as drawn, so a NaN is reported at the
        node that made it.
    device : str
        ``"cpu"``, ``"cuda"`` (CuPy) or ``"auto"`` (CUDA when it can run here). On CUDA
        the fed values and the weights are moved there (weights that already are stay:
        the trainer keeps them there while it trains) and every value stays on the
        device; :func:`~core.kernels.backend.to_numpy` brings one back.
    """

    # run by plan() in this order; each records one decision for the steps (see above)
    plan_passes = (prune_unread_outputs, check_finiteness, move_commuting_ops,
                   fuse_conv_pool, fuse_conv_activation)

    def __init__(self, graph: Graph, *, training: bool = False, seed: int = 0,
                 check_finite: bool = True, input_grads: bool = True, device: str = "cpu",
                 all_outputs: bool = True):
        self.graph = graph
        self.training = training
        self.seed = seed
        self.check_finite = check_finite
        self.input_grads = input_grads
        self.all_outputs = all_outputs
        self.device = resolve_device(device)
        self.dtype = np.dtype(graph.dtype)
        self.iteration = 0
        self.feeds: dict = {}
        self.loss_id: str | None = None
        self._wanted: dict = {}
        self._absorbed: dict = {}
        self._moved: dict = {}
        self.reset()
        self._plan_cache = None

    # ------------------------------------------------------------- state
    def reset(self):
        """Forget every value and gradient."""
        self.values: dict = {}        # (node_id, output index) -> array
        self.grads: dict = {}         # (node_id, output index) -> ∂L/∂output
        self.weight_grads: dict = {}  # (node_id, weight name) -> ∂L/∂weight
        self.passed: dict = {}        # (node_id, input index) -> gradient sent to that input
        self.ctxs: dict = {}

    # -------------------------------------------------------------- plan
    def plan(self, loss=None) -> list:
        """The ordered steps: all nodes forward, then backward from ``loss`` if given."""
        g = self.graph
        order = g.order()
        self._index = {n.id: i for i, n in enumerate(g.nodes.values())}
        self._order = order
        self._inputs = {}
        for node in order:
            edges = g.in_edges(node)
            srcs = []
            for port in node.input_ports:
                e = edges.get(port)
                if e is None:
                    raise GraphError(f"input '{port}' of node '{node.name}' is not connected",
                                     nodes=(node.name,))
                srcs.append((e.src, g.nodes[e.src].output_ports.index(e.src_port)))
            self._inputs[node.id] = srcs
        self.loss_id = g.node(loss).id if loss is not None else None
        self._check_memory(order)
        for plan_pass in self.plan_passes:
            plan_pass(self, order)
        moved, fused, absorbed = self._moved, self._fused, self._absorbed
        then = {**moved, **absorbed}  # the activation each step runs besides its own node
        inside = set(moved.values()) | set(absorbed.values())  # run in another node's steps
        steps = [Step("forward", n.id, then.get(n.id), fused.get(n.id)) for n in order
                 if n.id not in inside and n.id not in fused.values()]
        self._needs = {}
        if loss is not None:
            needs = self._requires_grad(order)
            ancestors = self._ancestors(self.loss_id)
            for node in reversed(order):
                if node.id in ancestors and needs.get(node.id) and node.id not in inside:
                    steps.append(Step("backward", node.id, then.get(node.id)))
            self._needs = needs
        return steps

    def _check_memory(self, order):
        """Refuse, before allocating, a node output or a run too large for this machine.

        Shapes come from shape inference (an unknown batch counts as 1, fed
        values count as they are); nodes whose shapes cannot be inferred are
        left to fail by name when they run.
        """
        report = self.graph.infer_shapes(self.feeds)
        itemsize = self.dtype.itemsize
        total = 0
        for node in order:
            for shape in report.shapes.get(node.id, ()):
                if not type(node.op).source:  # a source's value exists already
                    check_allocation(shape, self.dtype, node.name, "output of shape")
                total += numel(shape) * itemsize
        limit = memory_limit()
        if total > limit:
            raise MemoryLimitError(f"the values of this run need {fmt_bytes(total)}; this "
                                   f"computer has {fmt_bytes(limit)} of memory")

    def _ancestors(self, node_id):
        seen, todo = {node_id}, [node_id]
        while todo:
            for src, _ in self._inputs[todo.pop()]:
                if src not in seen:
                    seen.add(src)
                    todo.append(src)
        return seen

    def _requires_grad(self, order) -> dict:
        needs = {}
        for node in order:
            op = type(node.op)
            if op.source:
                if node.op_id == "parameter":
                    needs[node.id] = True
                else:
                    needs[node.id] = self.input_grads and node.params.get("role") != "target"
                continue
            mine = bool(op.weights)
            for port, (src, _) in zip(node.input_ports, self._inputs[node.id]):
                if port not in op.no_grad_inputs and needs.get(src):
                    mine = True
            needs[node.id] = mine
        return needs

    # ------------------------------------------------------------ forward
    def _node_inputs(self, node: Node) -> list:
        vals = []
        for src, k in self._inputs[node.id]:
            v = self.values.get((src, k), _MISSING)
            if v is _MISSING:
                raise GraphError(f"node '{node.name}' runs before '{self.graph.nodes[src].name}'"
                                 " has a value", nodes=(node.name,))
            vals.append(v)
        return vals

    def _ensure_weights(self, node: Node, xs: list):
        op = type(node.op)
        if not op.weights or all(w in node.weights for w in op.weights):
            return
        specs = node.op.weight_specs(*[tuple(x.shape) for x in xs])
        rng = np.random.default_rng([self.seed, self._index[node.id]])
        for w in op.weights:
            if w not in node.weights:
                node.weights[w] = self.graph.make_weight(node, specs[w], rng)

    def _context(self, node: Node) -> _NodeContext:
        """A fresh context for one forward of ``node`` (seeded by node and run)."""
        return _NodeContext([self.seed, self._index[node.id], self.iteration], self.device,
                            training=self.training, state=node.state,
                            outputs_wanted=self._wanted.get(node.id))

    def forward_node(self, node: Node) -> dict:
        """Compute one node's outputs; returns ``{(node_id, k): value}`` without storing it."""
        op = type(node.op)
        ctx = self._context(node)
        try:
            if op.source:
                fed = self.feeds.get(node.name, self.feeds.get(node.id))
                try:
                    ctx.value = feed_value(node, fed, self.dtype)
                except ValueError as exc:
                    raise GraphError(f"node '{node.name}' {exc}", nodes=(node.name,)) from None
                if self.device != "cpu":
                    ctx.value = to_device(ctx.value, self.device)
                xs = []
            else:
                xs = self._op_arguments(node)
            ctx.needs_input_grad = self._input_needs(node)
            with np.errstate(all="ignore"):  # non-finite results are reported by name below
                out = node.op.forward(ctx, *xs)
        except ShapeError as exc:
            raise ShapeError(f"node '{node.name}': {exc}", nodes=(node.name,)) from None
        except MemoryError:
            raise MemoryLimitError(f"node '{node.name}' ({node.op_id}): not enough memory for "
                                   "its output", nodes=(node.name,)) from None
        except (ValueError, IndexError, TypeError, OverflowError) as exc:
            if isinstance(exc, GraphError):
                raise
            raise GraphError(f"node '{node.name}' ({node.op_id}) failed: {exc}",
                             nodes=(node.name,)) from None
        outs = out if isinstance(out, tuple) else (out,)
        if len(outs) != len(op.outputs):  # pragma: no cover - an op bug
            raise GraphError(f"op '{node.op_id}' returned {len(outs)} outputs, "
                             f"expected {len(op.outputs)}")
        result = {}
        for k, y in enumerate(outs):
            if y is None and not ctx.wants(k):
                continue  # an output nothing reads, skipped by the op
            if isinstance(y, np.generic) or not hasattr(y, "dtype"):
                y = np.asarray(y)  # 0-d ops give NumPy scalars; keep every value an array
                if self.device != "cpu":
                    y = to_device(y, self.device)
            if node.id in self._finite_checked and y.dtype.kind == "f" and not _all_finite(y):
                raise NonFiniteError(node.name, "forward", self._bad_detail(y))
            result[(node.id, k)] = y
        self._pending_ctx = ctx
        return result

    def _op_arguments(self, node: Node) -> list:
        """The inputs of a non-source ``node``, then its weights (made on first use), on the
        run's device."""
        xs = self._node_inputs(node)
        self._ensure_weights(node, xs)
        weights = [node.weights[w] for w in type(node.op).weights]
        if self.device != "cpu":
            weights = [to_device(w, self.device) for w in weights]
        return xs + weights

    def _forward_pair(self, node: Node, reader: Node, method):
        """``method(ctx, *node's arguments, reader's op, reader_ctx)``, the op method of
        ``node`` that runs its forward and that of ``reader`` in one: ``(out, ctx,
        reader_ctx)``, ``out`` ``None`` when the pair cannot run so or fails (its plain
        forwards then run, and report an error by name)."""
        ctx = self._context(node)
        reader_ctx = self._context(reader)
        try:
            xs = self._op_arguments(node)
            ctx.needs_input_grad = self._input_needs(node)
            reader_ctx.needs_input_grad = self._input_needs(reader)
            with np.errstate(all="ignore"):
                out = method(ctx, *xs, reader.op, reader_ctx)
        except (ShapeError, MemoryError, ValueError, IndexError, TypeError, OverflowError):
            out = None
        return out, ctx, reader_ctx

    def _forward_fused(self, pool: Node, conv: Node) -> dict:
        """The forward of ``conv`` and of the max pool ``pool`` that alone reads it, as one
        step (see :func:`fuse_conv_pool`): ``{(pool id, 0): value}``; both contexts are
        kept. A pair that cannot run so runs as two forwards, with the same numbers."""
        out, ctx, pool_ctx = self._forward_pair(conv, pool, conv.op.forward_pooled)
        if out is None:
            values = self.forward_node(conv)
            self.ctxs[conv.id] = self._pending_ctx
            self.values.update(values)
            return self.forward_node(pool)
        self.ctxs[conv.id] = ctx
        self._pending_ctx = pool_ctx
        return {(pool.id, 0): out}

    def _forward_activated(self, conv: Node, act: Node) -> dict:
        """The forward of ``conv`` and of the ReLU ``act`` that alone reads it, as one step
        (see :func:`fuse_conv_activation`): ``{(conv id, 0): the ReLU's output}``, also under
        the ReLU's own key; both contexts are kept. A pair that cannot run so runs as two
        forwards, with the same numbers."""
        out, ctx, act_ctx = self._forward_pair(conv, act, conv.op.forward_activated)
        if out is None:
            result = self.forward_node(conv)
            out = self._forward_after(act.id, result[(conv.id, 0)])
        else:
            self.ctxs[act.id] = act_ctx
            self._pending_ctx = ctx
        return {(conv.id, 0): out, (act.id, 0): out}

    def _input_needs(self, node: Node):
        if not self._needs:
            return None
        op = type(node.op)
        flags = [port not in op.no_grad_inputs and bool(self._needs.get(src))
                 for port, (src, _) in zip(node.input_ports, self._inputs.get(node.id, ()))]
        return tuple(flags) + (True,) * len(op.weights)

    def _array(self, g):
        """A NumPy scalar an op returned, as an array on the run's device."""
        return np.asarray(g) if self.device == "cpu" else to_device(np.asarray(g), self.device)

    @staticmethod
    def _bad_detail(arr) -> str:
        a = to_numpy(arr)
        n_nan, n_inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
        return f"{n_nan} NaN and {n_inf} Inf of {a.size} values"

    # ----------------------------------------------------------- backward
    def _forward_after(self, act_id, y):
        """Forward of the activation ``act_id`` moved behind a max pool, on its output ``y``."""
        act = self.graph.nodes[act_id]
        ctx = self._context(act)
        with np.errstate(all="ignore"):
            out = act.op.forward(ctx, y)
        self.ctxs[act_id] = ctx
        return out

    def backward_node(self, node: Node, then: str | None = None):
        """One node's backward; returns (input grads, weight grads, upstream) without storing.

        ``then``: an activation moved behind this max pool, whose backward comes first.
        """
        op = type(node.op)
        nout = len(op.outputs)
        upstream = [self.grads.get((node.id, k)) for k in range(nout)]
        if then is not None and upstream[0] is not None:
            act = self.graph.nodes[then]
            with np.errstate(all="ignore"):
                upstream[0] = act.op.backward(self.ctxs[then], upstream[0])[0]
        if node.id == self.loss_id and upstream[0] is None:
            y = self.values[(node.id, 0)]
            if y.size != 1:
                raise GraphError(f"the loss node '{node.name}' must give a scalar; it gives shape "
                                 f"{tuple(y.shape)} (add a Sum or Mean)", nodes=(node.name,))
            upstream[0] = array_module(y).ones_like(y)
        if op.source or all(u is None for u in upstream):
            return [], {}, upstream
        grads_out = []
        for k, u in enumerate(upstream):
            if u is None:
                y = self.values.get((node.id, k))  # None: a skipped output
                u = (array_module(y).zeros_like(y) if y is not None and y.dtype.kind == "f"
                     else None)
            grads_out.append(u)
        ctx = self.ctxs[node.id]
        try:
            with np.errstate(all="ignore"):
                gin = node.op.backward(ctx, *grads_out)
        except MemoryError:
            raise MemoryLimitError(f"backward of node '{node.name}' ({node.op_id}): not enough "
                                   "memory for its gradients", nodes=(node.name,)) from None
        except (ValueError, IndexError, TypeError, OverflowError) as exc:
            raise GraphError(f"backward of node '{node.name}' ({node.op_id}) failed: {exc}",
                             nodes=(node.name,)) from None
        gin = [self._array(g) if isinstance(g, np.generic) else g for g in gin]
        nin = len(node.input_ports)
        wgrads = {w: gin[nin + i] for i, w in enumerate(op.weights) if nin + i < len(gin)}
        gin = gin[:nin]
        for i, (port, (src, _)) in enumerate(zip(node.input_ports, self._inputs[node.id])):
            if i < len(gin) and (port in op.no_grad_inputs or not self._needs.get(src)):
                gin[i] = None  # the op may compute it anyway; nobody upstream wants it
        if node.id in self._finite_checked:
            for g in list(gin) + list(wgrads.values()):
                if g is not None and not _all_finite(g):
                    raise NonFiniteError(node.name, "backward", self._bad_detail(g))
        return gin, wgrads, upstream

    # ------------------------------------------------------------- steps
    def apply(self, step: Step, undo: list | None = None, detail: bool = True) -> StepRecord:
        """Execute one step, recording in ``undo`` what it replaced.

        ``detail=False`` skips what only the stepping view reads (the local
        derivative of elementwise ops, one extra backward each); full runs use it.
        """
        node = self.graph.nodes[step.node_id]
        op = type(node.op)
        rec = StepRecord(step.phase, node.name, node.id, formula=op.formula,
                         derivative=op.derivative)

        def put(store, key, val):
            if undo is not None:
                undo.append((store, key, store.get(key, _MISSING)))
            store[key] = val

        if step.phase == "forward":
            state_before = dict(node.state) if undo is not None else None
            weights_before = dict(node.weights) if undo is not None else None
            if step.fused is not None:
                result = self._forward_fused(node, self.graph.nodes[step.fused])
            elif step.then is not None and self._absorbed.get(node.id) == step.then:
                result = self._forward_activated(node, self.graph.nodes[step.then])
            else:
                result = self.forward_node(node)
            if step.then is not None and self._absorbed.get(node.id) != step.then:
                result[(node.id, 0)] = self._forward_after(step.then, result[(node.id, 0)])
            if undo is not None:
                # running statistics and lazily created weights change with a step too;
                # ops replace these arrays rather than writing into them
                for store, before in ((node.state, state_before),
                                      (node.weights, weights_before)):
                    for key in set(store) | set(before):
                        if store.get(key) is not before.get(key):
                            undo.append((store, key, before.get(key, _MISSING)))
            put(self.ctxs, node.id, self._pending_ctx)
            for key, val in result.items():
                put(self.values, key, val)
            rec.outputs = list(result.values())
            # a fused convolution's value is not kept
            rec.inputs = [self.values.get(k) for k in self._inputs.get(node.id, ())]
            return rec

        gin, wgrads, upstream = self.backward_node(node, step.then)
        rec.inputs = [self.values.get(k) for k in self._inputs.get(node.id, ())]
        rec.outputs = [self.values.get((node.id, k)) for k in range(len(op.outputs))]
        rec.upstream = upstream
        if node.id == self.loss_id and self.grads.get((node.id, 0)) is None:
            put(self.grads, (node.id, 0), upstream[0])
        for i, ((src, k), g) in enumerate(zip(self._inputs.get(node.id, ()), gin)):
            put(self.passed, (node.id, i), g)
            if g is None:
                continue
            prev = self.grads.get((src, k))
            put(self.grads, (src, k), g if prev is None else prev + g)
        for w, g in wgrads.items():
            put(self.weight_grads, (node.id, w), g)
        rec.grad_inputs = list(gin) + [wgrads.get(w) for w in op.weights]
        if detail and op.elementwise and not op.source and upstream and upstream[0] is not None:
            rec.local = self._local_derivative(node)
        return rec

    def _local_derivative(self, node: Node):
        """∂out/∂in per element for elementwise ops (backward of a ones cotangent)."""
        y = self.values[(node.id, 0)]
        ctx = self.ctxs[node.id]
        try:
            local = node.op.backward(ctx, array_module(y).ones_like(y))
        except Exception:  # display only; never let it break a step
            return None
        return list(local)

    # --------------------------------------------------------- full runs
    def _prepare(self, feeds, loss):
        self.feeds = dict(feeds or {})
        key = (loss, self.check_finite, self.graph_signature())
        if self._plan_cache is None or self._plan_cache[0] != key:
            self._plan_cache = (key, self.plan(loss))
        return self._plan_cache[1]

    def graph_signature(self):
        """Changes whenever nodes or edges change (plans are cached on it)."""
        g = self.graph
        return (tuple(g.nodes), tuple(g.edges), tuple(type(n.op) for n in g.nodes.values()))

    def forward(self, feeds: dict | None = None):
        """Run every node forward; returns ``self``."""
        steps = self._prepare(feeds, None)
        self.reset()
        with own_threads():
            for st in steps:
                self.apply(st, detail=False)
        return self

    def run(self, feeds: dict | None = None, loss=None):
        """Forward, then backward from ``loss`` (default: the graph's loss, if set)."""
        loss = loss if loss is not None else self.graph.loss
        steps = self._prepare(feeds, loss)
        self.reset()
        # weight gradients may finish beside the layers below theirs (see threads.deferring);
        # a run that checks every node's numbers as it goes reads each one at once
        later = contextlib.nullcontext() if self.check_finite else deferring()
        with own_threads(), later:
            for st in steps:
                self.apply(st, detail=False)
        self.iteration += 1
        return self

    # ------------------------------------------------------------- reads
    def value(self, node, port: int = 0):
        """Value of output ``port`` of ``node`` (name, id or Node)."""
        n = self.graph.node(node)
        try:
            return self.values[(n.id, port)]
        except KeyError:
            raise GraphError(f"node '{n.name}' has no value yet; run forward first",
                             nodes=(n.name,)) from None

    def grad(self, node, port: int = 0):
        """∂loss/∂(output ``port`` of ``node``); zeros if no gradient reached it.

        In a run that keeps no values, a node run inside another node's step has no
        gradient of its own kept (an error says so), except a ReLU run in its convolution's
        step, whose output the convolution's value is."""
        n = self.graph.node(node)
        conv = next((c for c, act in self._absorbed.items() if act == n.id), None)
        if conv is not None:
            n = self.graph.nodes[conv]  # whose value is this ReLU's output
        elif n.id in self._absorbed or n.id in self._moved.values():
            other = self._absorbed.get(n.id)
            why = (f"its ReLU '{self.graph.nodes[other].name}' ran in its step"
                   if other is not None else "it ran behind the max pool it feeds")
            raise GraphError(f"the gradient of node '{n.name}' is not kept in this run: {why} "
                             "(a run that keeps every value has it)", nodes=(n.name,))
        g = self.grads.get((n.id, port))
        if g is None:
            if (n.id, port) not in self.values:
                raise GraphError(f"node '{n.name}' has no value yet; run first", nodes=(n.name,))
            y = self.values[(n.id, port)]
            return array_module(y).zeros_like(y)
        return g

    def weight_grad(self, node, weight: str):
        """∂loss/∂ weight ``weight`` of a layer node."""
        n = self.graph.node(node)
        try:
            return self.weight_grads[(n.id, weight)]
        except KeyError:
            raise GraphError(f"no gradient for weight '{weight}' of '{n.name}'; run backward",
                             nodes=(n.name,)) from None


class Stepper:
    """Walk a run one node at a time, with step back, run-to and reset.

    Parameters
    ----------
    graph : Graph
    loss : node name or id, optional
        Where backward starts; without it only forward steps are planned.
    feeds : dict, optional
        Values for input nodes, by name.
    **options
        Passed to :class:`Executor`.
    """

    def __init__(self, graph: Graph, loss=None, feeds=None, **options):
        self.executor = Executor(graph, **options)
        self.executor.feeds = dict(feeds or {})
        loss = loss if loss is not None else graph.loss
        self.steps = self.executor.plan(loss)
        self.position = 0
        self._undo: list = []
        self.records: list = []

    @property
    def done(self) -> bool:
        return self.position >= len(self.steps)

    @property
    def current(self) -> Step | None:
        """The step that :meth:`step` will run next."""
        return None if self.done else self.steps[self.position]

    def step(self) -> StepRecord | None:
        """Run the next step; ``None`` at the end. A failing step changes nothing."""
        if self.done:
            return None
        undo: list = []
        try:
            rec = self.executor.apply(self.steps[self.position], undo)
        except Exception:
            self._rollback(undo)
            raise
        self._undo.append(undo)
        self.records.append(rec)
        self.position += 1
        return rec

    def back(self) -> bool:
        """Undo the last step; ``False`` at the start."""
        if not self._undo:
            return False
        self._rollback(self._undo.pop())
        self.records.pop()
        self.position -= 1
        return True

    @staticmethod
    def _rollback(undo):
        for store, key, old in reversed(undo):
            if old is _MISSING:
                store.pop(key, None)
            else:
                store[key] = old

    def run_to(self, node, phase: str = "forward") -> StepRecord | None:
        """Step forward (or back) until the step for ``node`` in ``phase`` has just run."""
        nid = self.executor.graph.node(node).id
        target = next((i for i, s in enumerate(self.steps)
                       if s.node_id == nid and s.phase == phase), None)
        if target is None:
            raise GraphError(f"there is no {phase} step for '{node}'")
        while self.position > target + 1:
            self.back()
        rec = None
        while self.position <= target:
            rec = self.step()
        return rec or (self.records[-1] if self.records else None)

    def run_all(self):
        """Run every remaining step."""
        while not self.done:
            self.step()

    def reset(self):
        """Back to before the first step."""
        while self.back():
            pass
