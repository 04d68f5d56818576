"""The chain-rule panel as data: upstream × local = downstream for one backward step.

Example
-------
>>> from core.serialize import load_graph
>>> from examples import example_path
>>> from core.stepping.session import StepSession
>>> s = StepSession(load_graph(example_path("abc")))
>>> _ = s.run_to("e", "backward")
>>> [t.text for t in chain_rule(s).terms]
['1.000 × 2.000 = 2.000', '1.000 × 3.000 = 3.000']
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import GraphError
from core.kernels.backend import to_numpy
from core.stepping.summary import TensorSummary, format_number


@dataclass(frozen=True)
class ChainTerm:
    """One input (or weight) of the node: the gradient it receives.

    Attributes
    ----------
    target : str
        ``"input 'x'"`` or ``"weight 'weight'"``.
    source : str or None
        The node feeding that input (``None`` for a weight).
    upstream, local, downstream : TensorSummary or None
        ∂L/∂out, ∂out/∂in (elementwise ops only; ``None`` for a full Jacobian)
        and ∂L/∂in. ``downstream`` is ``None`` where no gradient is needed.
    numbers : tuple or None
        ``(upstream, local, downstream)`` as floats when all three are scalars.
    text : str
        ``"1.000 × 0.1966 = 0.1966"`` for scalars; shapes and norms for tensors.
    """

    target: str
    source: str | None
    upstream: TensorSummary | None
    local: TensorSummary | None
    downstream: TensorSummary | None
    numbers: tuple | None
    text: str


@dataclass(frozen=True)
class Contribution:
    """One reader's share of a fanned-out output's gradient."""

    reader: str
    port: str
    grad: TensorSummary


@dataclass(frozen=True)
class ChainRule:
    """What the chain-rule panel shows for one backward step.

    Attributes
    ----------
    index : int
        The step.
    node, op : str
    formula, derivative : str
        The op's display formulas.
    upstream : list of TensorSummary or None
        ∂L/∂(each output), ``None`` where nothing flowed.
    seeded : bool
        The node is the loss: its upstream is the seed ∂L/∂L = 1.
    contributions : list of list of Contribution
        Per output, the readers whose gradients were summed into its upstream.
    sum_text : list of str
        Per output, ``"0.5 + 0.25 = 0.75"`` (or norms) when it fans out, else ``""``.
    terms : list of ChainTerm
        Per input, then per weight.
    """

    index: int
    node: str
    op: str
    formula: str
    derivative: str
    upstream: list
    seeded: bool
    contributions: list
    sum_text: list
    terms: list


def _describe(s: TensorSummary | None) -> str:
    if s is None:
        return "—"
    return s.text if s.scalar else f"{s.text} ‖·‖ {format_number(s.norm)}"


def _term(target, source, su, sl, sd, up, local, down) -> ChainTerm:
    if sd is None:
        return ChainTerm(target, source, su, sl, None, None, "no gradient needed")
    if su is not None and sl is not None and su.scalar and sl.scalar and sd.scalar:
        nums = tuple(float(to_numpy(a).reshape(-1)[0]) for a in (up, local, down))
        return ChainTerm(target, source, su, sl, sd, nums,
                         f"{su.text} × {sl.text} = {sd.text}")
    mid = f" ⊙ local {_describe(sl)}" if sl is not None else " through the Jacobian"
    return ChainTerm(target, source, su, sl, sd, None,
                     f"upstream {_describe(su)}{mid} → {_describe(sd)}")


def _contributions(session, node, k):
    """Readers of output ``k`` of ``node`` and the gradient each sent back."""
    g = session.graph
    port = node.output_ports[k]
    out = []
    for e in g.out_edges(node):
        if e.src_port != port:
            continue
        grad = session.wire_grad(e)
        if grad is not None:
            out.append(Contribution(g.nodes[e.dst].name, e.dst_port,
                                    session.summary(grad, ("p", e.dst, e.dst_port))))
    return out


def _sum_text(parts, total) -> str:
    if len(parts) < 2 or total is None:
        return ""
    if all(p.grad.scalar for p in parts) and total.scalar:
        return " + ".join(p.grad.text for p in parts) + f" = {total.text}"
    return (" + ".join(f"‖·‖ {format_number(p.grad.norm)}" for p in parts)
            + f" → ‖·‖ {format_number(total.norm)}")


def chain_rule(session, node=None) -> ChainRule:
    """The chain rule at ``node``'s backward step (default: the current step).

    Raises
    ------
    GraphError
        When that backward step has not run yet (or the current step is a forward one).
    """
    if node is None:
        index = session.current_index
        rec = session.record(index)
        if rec is None or rec.phase != "backward":
            raise GraphError("the chain rule is shown at a backward step; step into the "
                             "backward pass first")
    else:
        index = session.step_index(node, "backward")
        rec = session.record(index)
        if rec is None:
            name = session.graph.node(node).name
            raise GraphError(f"the backward step of '{name}' has not run yet", nodes=(name,))
    n = session.graph.nodes[rec.node_id]
    g = session.graph
    edges = g.in_edges(n)
    names = session.grad_names(n)
    up0 = rec.upstream[0] if rec.upstream else None
    terms = []
    for i, down in enumerate(rec.grad_inputs):
        target = names[i] if i < len(names) else f"#{i}"
        src = None
        if i < len(n.input_ports) and n.input_ports[i] in edges:
            src = g.nodes[edges[n.input_ports[i]].src].name
        local = rec.local[i] if rec.local is not None and i < len(rec.local) else None
        keys = [("up", index, 0), ("local", index, i), ("down", index, i)]
        su, sl, sd = (session.summary(a, key) for a, key in zip((up0, local, down), keys))
        terms.append(_term(target, src, su, sl, sd, up0, local, down))
    upstream = [session.summary(u, ("up", index, k)) for k, u in enumerate(rec.upstream)]
    contributions = [_contributions(session, n, k) for k in range(len(n.output_ports))]
    sums = [_sum_text(c, u) for c, u in zip(contributions, upstream)]
    return ChainRule(index, n.name, n.op_id, rec.formula, rec.derivative, upstream,
                     n.id == session.loss_id, contributions, sums, terms)
