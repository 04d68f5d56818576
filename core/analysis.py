"""Live facts about one graph: shapes, what may connect and why, quick fixes, totals.

The canvas, the inspector, the status bar and the CLI all read these facts from
here, so the rules for "can this wire go there?" exist once and run headless.
:class:`GraphAnalysis` subscribes to the graph's edit events and re-infers
shapes lazily, on the first read after an edit.

Example
-------
>>> from core.graph import Graph
>>> g = Graph()
>>> img = g.add("input", shape=(None, 1, 8, 8), name="img")
>>> dense = g.add("dense", name="dense")
>>> analysis = GraphAnalysis(g)
>>> analysis.can_connect(img.id, "out", dense.id, "x").fixable
True
>>> analysis.close()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from core.errors import GraphError, ShapeError, StudioError
from core.events import Event
from core.graph import Edge, Graph, ShapeReport
from core.ops import REGISTRY
from core.ops.base import fmt_shape, numel


class Connection(NamedTuple):
    """The verdict on a candidate wire.

    Attributes
    ----------
    edge : Edge or None
        The edge to add, or ``None`` when the wire is refused.
    message : str
        What the wire would do, or why it is refused.
    fixable : bool
        True when flattening the tensor first would make it fit.
    """

    edge: Edge | None
    message: str
    fixable: bool


class QuickFix(NamedTuple):
    """A repair for a node's shape error.

    Attributes
    ----------
    port : str
        The input port a Flatten goes in front of.
    text : str
        The action's label, e.g. ``"Insert Flatten before 'dense.x'"``.
    """

    port: str
    text: str


@dataclass(frozen=True)
class Totals:
    """Counts over a whole graph, as the status bar shows them.

    Attributes
    ----------
    nodes : int
        Number of nodes.
    connections : int
        Number of edges.
    parameters : int
        Trainable scalars (layer weights and trainable parameter nodes).
    multiply_adds : int
        Multiply-adds per sample over all inferred nodes.
    errors : int
        Nodes whose inputs are missing or do not fit.
    """

    nodes: int
    connections: int
    parameters: int
    multiply_adds: int
    errors: int

    def summary(self) -> str:
        """One line, e.g. ``"15 nodes · 14 connections · 61,706 parameters · …"``."""
        text = (f"{self.nodes} nodes · {self.connections} connections · "
                f"{self.parameters:,} parameters · "
                f"{human_count(self.multiply_adds)} multiply-adds per sample")
        if self.errors:
            text += f" · ⚠ {self.errors} error{'s' * (self.errors > 1)}"
        return text


def flattened(shape) -> tuple:
    """What Flatten makes of ``shape``: the batch kept, the rest multiplied.

    Unknown non-batch dimensions count as 1, so a guess is possible where
    ``Flatten.infer_shapes`` would refuse.

    Shape:
        ``(B, d1, ..., dn)`` -> ``(B, d1 · ... · dn)``
    """
    rest = 1
    for d in shape[1:]:
        rest *= 1 if d is None else d
    return (shape[0], rest)


def human_count(n: int) -> str:
    """``n`` with a unit prefix: ``416_520`` -> ``"416.52 k"``."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return str(n)


class GraphAnalysis:
    """Live facts about one graph, kept current by its edit events.

    Parameters
    ----------
    graph : Graph
        The graph to follow; :meth:`close` stops following it.

    Attributes
    ----------
    graph : Graph
        The graph analysed.
    changed : Event
        Emitted (no arguments) once when a report that was read goes stale, so a
        view schedules one redraw per burst of edits.
    """

    def __init__(self, graph: Graph):
        self.graph = graph
        self.changed = Event()
        self._report: ShapeReport | None = None
        # layout and meta edits do not change shapes
        self._subs = [(ev, self._stale) for ev in (
            graph.node_added, graph.node_removed, graph.node_changed,
            graph.edge_added, graph.edge_removed)]
        for ev, cb in self._subs:
            ev.subscribe(cb)

    def _stale(self, *_):
        if self._report is not None:
            self._report = None
            self.changed.emit()

    def close(self):
        """Stop following the graph's events."""
        for ev, cb in self._subs:
            ev.unsubscribe(cb)
        self._subs = []

    @property
    def report(self) -> ShapeReport:
        """The shape report of the graph as it is now (inferred on first read after an edit)."""
        if self._report is None:
            self._report = self.graph.infer_shapes()
        return self._report

    def output_shape(self, node_id: str, port: str):
        """Shape of output ``port`` of ``node_id``, or ``None`` if not inferred."""
        shapes = self.report.shapes.get(node_id)
        if shapes is None:
            return None
        return shapes[self.graph.nodes[node_id].output_ports.index(port)]

    def _input_shapes(self, node, port: str, shape) -> list:
        """The node's input shapes with ``shape`` on ``port`` (``None`` where unknown)."""
        edges = self.graph.in_edges(node)
        out = []
        for p in node.input_ports:
            if p == port:
                out.append(shape)
            elif p in edges:
                out.append(self.output_shape(edges[p].src, edges[p].src_port))
            else:
                out.append(None)
        return out

    def can_connect(self, src_id, src_port, dst_id, dst_port) -> Connection:
        """Whether ``src_id.src_port → dst_id.dst_port`` may be added, and why.

        Refuses cycles, occupied inputs and shapes the destination cannot take;
        ``fixable`` is True when flattening the tensor first would make it fit.
        """
        g = self.graph
        try:
            edge = g.check_connect(src_id, dst_id, dst_port=dst_port, src_port=src_port)
        except GraphError as exc:
            return Connection(None, str(exc), False)
        src_shape = self.output_shape(src_id, src_port)
        dst = g.nodes[dst_id]
        if src_shape is None:
            return Connection(
                edge, f"connect {g.nodes[src_id].name}.{src_port} → {dst.name}.{dst_port}", False)
        in_shapes = self._input_shapes(dst, dst_port, src_shape)
        ok_text = (f"connect {g.nodes[src_id].name} → {dst.name}.{dst_port}  "
                   f"{fmt_shape(src_shape)}")
        if any(s is None for s in in_shapes):
            return Connection(edge, ok_text, False)
        try:
            dst.op.infer_shapes(*in_shapes)
        except ShapeError as exc:
            msg = f"shape mismatch: {exc}"
            if len(src_shape) > 2 and self._fits(dst, dst_port, in_shapes, flattened(src_shape)):
                return Connection(None, msg + " — release to insert a Flatten in between", True)
            return Connection(None, msg, False)
        return Connection(edge, ok_text, False)

    @staticmethod
    def _fits(node, port: str, in_shapes: list, shape) -> bool:
        """Whether ``node`` takes ``in_shapes`` with ``shape`` on ``port`` instead."""
        try:
            node.op.infer_shapes(*[shape if p == port else s
                                   for p, s in zip(node.input_ports, in_shapes)])
        except ShapeError:
            return False
        return True

    def quick_fix(self, node_id: str) -> QuickFix | None:
        """The input to flatten if that would cure the node's error, else ``None``."""
        if node_id not in self.report.errors or "flatten" not in REGISTRY:
            return None
        node = self.graph.nodes[node_id]
        edges = self.graph.in_edges(node)
        shapes = []
        for p in node.input_ports:
            if p not in edges:
                return None
            s = self.output_shape(edges[p].src, edges[p].src_port)
            if s is None:
                return None
            shapes.append(s)
        for p, s in zip(node.input_ports, shapes):
            if len(s) > 2 and self._fits(node, p, shapes, flattened(s)):
                return QuickFix(p, f"Insert Flatten before '{node.name}.{p}'")
        return None

    def compatible_ops(self, node_id: str, port: str, is_output: bool) -> list:
        """Op ids that can take (``is_output``) or feed the port being dragged."""
        out = []
        shape = self.output_shape(node_id, port) if is_output else None
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

    def totals(self, report: ShapeReport | None = None) -> Totals:
        """Counts over the graph, from ``report`` (default: the current one)."""
        report = report if report is not None else self.report
        g = self.graph
        # counted from the report at hand (Graph.parameter_count would infer shapes again)
        params = sum(report.params_of(nid) for nid in g.nodes)
        for node in g.nodes.values():
            if node.op_id == "parameter" and node.params.get("trainable", True):
                params += numel(g.source_shape(node))
        return Totals(nodes=len(g.nodes), connections=len(g.edges), parameters=params,
                      multiply_adds=sum(report.macs.values()), errors=len(report.errors))
