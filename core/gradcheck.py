"""Numerical gradient checking with float64 central differences.

The relative error reported is ``‖a − n‖ / (‖a‖ + ‖n‖)`` between analytic
(``a``) and numerical (``n``) gradients: about 1e-7 or less is right, 1e-3 or
more is a bug.

Example
-------
>>> import numpy as np
>>> from core.ops import get_op
>>> from core.ops.base import Sample
>>> rows = check_op(get_op("tanh"), Sample((np.array([0.3, -1.2]),)))
>>> rows[0].ok
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import GraphError
from core.executor import Executor
from core.ops.base import Context, Sample
from core.serialize import graph_from_dict, graph_to_dict

GOOD = 1e-6
BAD = 1e-3


@dataclass
class GradCheck:
    """One compared gradient.

    Attributes
    ----------
    node : str
        Node name (or op id for op-level checks).
    target : str
        The input port or weight the gradient is for.
    rel_error : float
        ``‖a − n‖ / (‖a‖ + ‖n‖)``; 0 when both are zero.
    analytic_norm, numeric_norm : float
        Sizes of the two gradients.
    checked : int
        Number of elements compared.
    """

    node: str
    target: str
    rel_error: float
    analytic_norm: float
    numeric_norm: float
    checked: int

    @property
    def ok(self) -> bool:
        return self.rel_error < BAD

    @property
    def verdict(self) -> str:
        if self.rel_error < GOOD:
            return "good"
        return "suspicious" if self.rel_error < BAD else "WRONG"


def rel_error(a, n) -> float:
    a, n = np.asarray(a, np.float64).ravel(), np.asarray(n, np.float64).ravel()
    denom = np.linalg.norm(a) + np.linalg.norm(n)
    return 0.0 if denom == 0 else float(np.linalg.norm(a - n) / denom)


def _pick(size: int, limit: int | None, rng) -> np.ndarray:
    if limit is None or size <= limit:
        return np.arange(size)
    return np.sort(rng.choice(size, limit, replace=False))


def central_differences(f, base, idx, eps: float) -> np.ndarray:
    """(f(x + ε·e_i) − f(x − ε·e_i)) / 2ε for the flat positions ``idx`` of ``base``.

    ``f`` takes a perturbed copy of ``base`` and returns a float.
    """
    num = np.zeros(len(idx))
    for j, flat in enumerate(idx):
        xp, xm = base.copy(), base.copy()
        xp.flat[flat] += eps
        xm.flat[flat] -= eps
        num[j] = (f(xp) - f(xm)) / (2 * eps)
    return num


def _as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def check_op(op_cls, sample, eps: float = 1e-6, seed: int = 0, max_elements=None) -> list:
    """Compare an op's ``backward`` with central differences on one sample.

    A random cotangent weighs the outputs, so every output and element counts.
    Inputs in ``no_grad_inputs`` and integer inputs are skipped.

    Returns
    -------
    list of GradCheck
        One per differentiable input, then per weight.
    """
    rng = np.random.default_rng(seed)
    training = getattr(sample, "training", False)
    op = op_cls(**sample.params)
    xs = [np.array(x, dtype=np.float64) if np.asarray(x).dtype.kind == "f" else np.asarray(x)
          for x in sample.inputs]

    def run(args):
        ctx = Context(training=training, rng=np.random.default_rng(seed))
        return ctx, _as_tuple(op.forward(ctx, *args))

    ctx, outs = run(xs)
    cots = [rng.normal(size=np.shape(y)) if np.asarray(y).dtype.kind == "f" else None
            for y in outs]

    def objective(args):
        _, ys = run(args)
        return sum(float(np.sum(np.asarray(y, np.float64) * c)) for y, c in zip(ys, cots)
                   if c is not None)

    analytic = _as_tuple(op.backward(ctx, *[c if c is not None else None for c in cots]))
    names = list(op_cls.inputs) + list(op_cls.weights)
    rows = []
    for i, x in enumerate(xs):
        name = names[i] if i < len(names) else f"#{i}"
        if name in op_cls.no_grad_inputs or x.dtype.kind != "f":
            continue
        a = analytic[i] if i < len(analytic) else None
        a = np.zeros_like(x) if a is None else np.asarray(a, np.float64)
        if a.shape != x.shape:
            raise GraphError(f"op '{op_cls.id}': gradient for '{name}' has shape {a.shape}, "
                             f"input has {x.shape}")
        idx = _pick(x.size, max_elements, rng)
        num = central_differences(lambda v, i=i: objective(xs[:i] + [v] + xs[i + 1:]), x, idx, eps)
        av = a.ravel()[idx]
        rows.append(GradCheck(op_cls.id, name, rel_error(av, num), float(np.linalg.norm(av)),
                              float(np.linalg.norm(num)), len(idx)))
    return rows


def _float64_copy(graph):
    data = graph_to_dict(graph, values=True, arrays=True)
    data["dtype"] = "float64"
    return graph_from_dict(data)


def check_graph(graph, loss=None, feeds=None, eps: float = 1e-6, max_elements: int | None = 20,
                seed: int = 0, nodes=None) -> list:
    """Check ∂loss/∂(every input, constant, parameter and weight) by central differences.

    The graph is copied to float64 first; the original is not touched.

    Parameters
    ----------
    loss : node name or id
        Defaults to the graph's loss.
    max_elements : int or None
        Compare at most this many randomly chosen elements per tensor (None: all).
    nodes : iterable of names, optional
        Only check these nodes.

    Returns
    -------
    list of GradCheck
    """
    g = _float64_copy(graph)
    loss = loss if loss is not None else graph.loss
    if loss is None:
        raise GraphError("gradient check needs a loss node: choose one (a scalar output)")
    feeds = {k: np.asarray(v, np.float64) if np.asarray(v).dtype.kind == "f" else np.asarray(v)
             for k, v in (feeds or {}).items()}
    g.initialize(seed, feeds=feeds)
    ex = Executor(g, check_finite=False, input_grads=True, seed=seed)
    ex.run(feeds, loss=loss)
    loss_id = g.node(loss).id
    rng = np.random.default_rng(seed)
    wanted = None if nodes is None else {g.node(n).id for n in nodes}

    def loss_value():
        ex.forward(feeds)
        return float(np.asarray(ex.values[(loss_id, 0)], np.float64).sum())

    analytic = {}
    for node in g.nodes.values():
        if wanted is not None and node.id not in wanted:
            continue
        if type(node.op).source and (node.id, 0) in ex.values and node.id in ex._needs \
                and ex._needs[node.id]:
            analytic[(node, None)] = ex.grad(node)
        for w in type(node.op).weights:
            if (node.id, w) in ex.weight_grads:
                analytic[(node, w)] = ex.weight_grads[(node.id, w)]

    rows = []
    for (node, w), a in analytic.items():
        if w is None:
            fed_key = node.name if node.name in feeds else node.id if node.id in feeds else None
            base = feeds[fed_key] if fed_key else node.value
            if base is None or np.asarray(base).dtype.kind != "f":
                continue

            def set_(v, node=node, fed_key=fed_key):
                if fed_key:
                    feeds[fed_key] = v
                else:
                    node.value = v
        else:
            base = node.weights[w]

            def set_(v, node=node, w=w):
                node.weights[w] = v
        base = np.array(base, np.float64)
        idx = _pick(base.size, max_elements, rng)

        def perturbed_loss(v, set_=set_):
            set_(v)
            return loss_value()

        num = central_differences(perturbed_loss, base, idx, eps)
        set_(base)
        av = np.asarray(a, np.float64).ravel()[idx]
        rows.append(GradCheck(node.name, w or "value", rel_error(av, num),
                              float(np.linalg.norm(av)), float(np.linalg.norm(num)), len(idx)))
    return rows


def check_node(graph, node, feeds=None, eps: float = 1e-6, seed: int = 0) -> list:
    """Check one node's ``backward`` at the inputs it gets in a forward run of ``graph``."""
    g = _float64_copy(graph)
    g.initialize(seed, feeds=feeds)
    ex = Executor(g, check_finite=False, seed=seed)
    ex.forward(feeds)
    n = g.node(node)
    if type(n.op).source:
        return []
    xs = [ex.values[k] for k in ex._inputs[n.id]] + [n.weights[w] for w in type(n.op).weights]
    rows = check_op(type(n.op), Sample(tuple(xs), dict(n.params)), eps=eps, seed=seed,
                    max_elements=50)
    for r in rows:
        r.node = n.name
    return rows
