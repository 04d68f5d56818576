"""The graph model: nodes with named ports, edges between them, a layout map beside them.

The model is plain Python. Views subscribe to its events; every edit goes
through a method here so that validation (cycles, occupied ports, unknown ops,
bad parameters) happens at edit time with an error that names the nodes.

Example
-------
>>> from core.graph import Graph
>>> from core.executor import Executor
>>> g = Graph()
>>> a = g.add("input", value=3.0, name="a")
>>> b = g.add("input", value=2.0, name="b")
>>> c = g.add("input", value=-4.0, name="c")
>>> f = g.add("add", g.add("multiply", a, b), c, name="f")
>>> ex = Executor(g); ex.run(loss="f")
>>> float(ex.value("f")), float(ex.grad("a"))
(2.0, 2.0)
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from core.errors import GraphError, ParamError, ShapeError
from core.events import Event
from core.init import initialize
from core.ops import get_op
from core.ops.base import WeightSpec, check_allocation, fmt_shape, numel

if TYPE_CHECKING:
    import networkx as nx

DTYPES = ("float64", "float32")


@dataclass(frozen=True, slots=True)
class Edge:
    """A connection from output port ``src_port`` of ``src`` to input ``dst_port`` of ``dst``.

    Nodes are referred to by id, ports by name.
    """

    src: str
    src_port: str
    dst: str
    dst_port: str


class Node:
    """One node: an op instance with its parameters, and the arrays it holds.

    Attributes
    ----------
    id : str
        Stable identifier used by edges, the layout and files.
    name : str
        Unique display name, used by the builder and the CLI.
    op : Op
        The op instance (holds the validated parameters in ``op.p``).
    value : numpy.ndarray or None
        The value of an input, constant or parameter node.
    weights : dict of str to numpy.ndarray
        Trainable tensors owned by a layer op.
    state : dict of str to numpy.ndarray
        Buffers that are saved but not trained (batch-norm running statistics).
    """

    # a file of a million nodes holds a million of these
    __slots__ = ("id", "name", "op", "value", "weights", "state")

    def __init__(self, node_id: str, name: str, op_id: str, params: dict | None = None):
        self.id = node_id
        self.name = name
        self.op = get_op(op_id)(**(params or {}))
        self.value = None
        self.weights: dict = {}
        self.state: dict = {}

    @property
    def op_id(self) -> str:
        return self.op.id

    @property
    def params(self) -> dict:
        return self.op.p

    @property
    def input_ports(self) -> tuple:
        return type(self.op).inputs

    @property
    def output_ports(self) -> tuple:
        return type(self.op).outputs

    @property
    def trainable(self) -> bool:
        """True for a trainable parameter node or a layer with weights."""
        if self.op_id == "parameter":
            return bool(self.params.get("trainable", True))
        return bool(type(self.op).weights)

    def __repr__(self):
        return f"<Node {self.name} ({self.op_id})>"


def _as_array(value, dtype):
    arr = np.array(value, dtype=dtype)
    if not np.all(np.isfinite(arr)):
        raise ParamError("a value must be finite numbers (no NaN or Inf)")
    return arr


class Graph:
    """A directed acyclic graph of ops.

    Parameters
    ----------
    dtype : str
        ``"float64"`` (the textbook graphs, exact numbers) or ``"float32"`` (training).
    name : str
        Title shown by the app.

    Events
    ------
    node_added(node), node_removed(node), node_changed(node), edge_added(edge),
    edge_removed(edge), layout_changed(node_id), meta_changed()
    """

    def __init__(self, dtype: str = "float64", name: str = ""):
        if dtype not in DTYPES:
            raise GraphError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
        self.dtype = dtype
        self.name = name
        self.description = ""
        self.nodes: dict[str, Node] = {}
        self.edges: list[Edge] = []
        self.layout: dict[str, tuple] = {}
        self.loss: str | None = None  # id of the node the backward pass starts from
        self._ids = itertools.count(1)
        self._dg = None
        self._order = None  # topological order of node ids, cached until an edit
        self._by_node = None  # edge index by node (see _edge_index)
        self._names = None  # node by name, kept up to date once made (see _name_index)
        self._next_suffix: dict = {}  # where unique_name looks first for each base
        self.node_added = Event()
        self.node_removed = Event()
        self.node_changed = Event()
        self.edge_added = Event()
        self.edge_removed = Event()
        self.layout_changed = Event()
        self.meta_changed = Event()

    # ------------------------------------------------------------ look-ups
    def node(self, key) -> Node:
        """The node with this id or name (or the node itself); a clear error if none."""
        if isinstance(key, Node):
            if self.nodes.get(key.id) is not key:
                raise GraphError(f"node '{key.name}' is not in this graph", nodes=(key.name,))
            return key
        if key in self.nodes:
            return self.nodes[key]
        n = self._name_index().get(key)
        if n is not None:
            return n
        raise GraphError(f"no node named '{key}' in the graph")

    def _name_index(self) -> dict:
        """Node by name: made on first use, then kept up to date by every edit (a scan per
        look-up made building a large graph quadratic)."""
        if self._names is None:
            self._names = {n.name: n for n in self.nodes.values()}
        return self._names

    def __contains__(self, key) -> bool:
        try:
            self.node(key)
        except GraphError:
            return False
        return True

    def __len__(self):
        return len(self.nodes)

    def _edge_index(self):
        """``(dst id -> {port: edge}, src id -> [edges])``, cached until the edges change."""
        if self._by_node is None:
            ins, outs = {}, {}
            for e in self.edges:
                ins.setdefault(e.dst, {})[e.dst_port] = e
                outs.setdefault(e.src, []).append(e)
            self._by_node = (ins, outs)
        return self._by_node

    def in_edges(self, node) -> dict:
        """Input port name -> edge feeding it."""
        node = self.node(node)
        return dict(self._edge_index()[0].get(node.id, {}))

    def out_edges(self, node) -> list:
        """Edges leaving any output of ``node``."""
        node = self.node(node)
        return list(self._edge_index()[1].get(node.id, ()))

    def digraph(self) -> nx.DiGraph:
        """The node-level networkx view (cached until the next edit)."""
        if self._dg is None:
            import networkx as nx  # noqa: PLC0415 - a slow import, needed only from here on

            dg = nx.DiGraph()
            for i, nid in enumerate(self.nodes):
                dg.add_node(nid, index=i)
            dg.add_edges_from((e.src, e.dst) for e in self.edges)
            self._dg = dg
        return self._dg

    def order(self) -> list:
        """Nodes in a deterministic topological order (ties broken by insertion order).

        The same order as ``networkx.lexicographical_topological_sort`` keyed by
        insertion index, computed on integers and cached until the next edit.
        """
        if self._order is None:
            ids = list(self.nodes)
            index = {nid: i for i, nid in enumerate(ids)}
            succ = [[] for _ in ids]
            indegree = [0] * len(ids)
            for e in self.edges:
                succ[index[e.src]].append(index[e.dst])
                indegree[index[e.dst]] += 1
            ready = [i for i, d in enumerate(indegree) if d == 0]  # sorted, so a valid heap
            out = []
            while ready:
                i = heapq.heappop(ready)
                out.append(i)
                for j in succ[i]:
                    indegree[j] -= 1
                    if indegree[j] == 0:
                        heapq.heappush(ready, j)
            if len(out) != len(ids):
                stuck = [ids[i] for i, d in enumerate(indegree) if d > 0]
                names = [self.nodes[nid].name for nid in stuck[:3]]
                raise GraphError("the graph has a cycle through " + ", ".join(
                    f"'{n}'" for n in names) + ("…" if len(stuck) > 3 else ""), nodes=names)
            self._order = [ids[i] for i in out]
        return [self.nodes[nid] for nid in self._order]

    # --------------------------------------------------------------- edits
    def new_id(self) -> str:
        while True:
            nid = f"n{next(self._ids)}"
            # an id that equals some node's name would make node(key) ambiguous
            if nid not in self.nodes and nid not in self._name_index():
                return nid

    def unique_name(self, base: str) -> str:
        """``base`` if free, else ``base2``, ``base3``…"""
        names = self._name_index()
        if base not in names and base not in self.nodes:
            return base
        # the numbers below the hint are taken until a node is removed or renamed, which
        # forgets the hints: the answer stays the smallest free number
        for i in itertools.count(self._next_suffix.get(base, 2)):
            name = f"{base}{i}"
            if name not in names and name not in self.nodes:
                self._next_suffix[base] = i + 1
                return name

    def add(self, op_id: str, *inputs, name: str | None = None, value=None,
            node_id: str | None = None, pos=None, **params) -> Node:
        """Add a node running ``op_id`` and connect ``inputs`` to its input ports in order.

        Parameters
        ----------
        op_id : str
            Registered op id, e.g. ``"multiply"`` or ``"conv2d"``.
        *inputs : Node, str or (node, port)
            What feeds each input port; a node feeds from its first output.
        name : str, optional
            Unique display name (default: the op id, numbered).
        value : array_like, optional
            The value of an ``input``, ``constant`` or ``parameter`` node.
        pos : (float, float), optional
            Where the node sits on the canvas.
        **params
            The op's parameters (see its spec).
        """
        op_cls = get_op(op_id)
        if name is not None:
            self.check_name(name)
        if len(inputs) > len(op_cls.inputs):
            raise GraphError(f"op '{op_id}' has {len(op_cls.inputs)} inputs "
                             f"({', '.join(op_cls.inputs)}); {len(inputs)} were given")
        nid = node_id or self.new_id()
        if nid in self.nodes:
            raise GraphError(f"node id '{nid}' is already used")
        label = name or self.unique_name(op_id)
        try:
            node = Node(nid, label, op_id, params)
        except ParamError as exc:
            raise ParamError(f"node '{label}': {exc}", nodes=(label,)) from None
        if value is not None:
            if not op_cls.source:
                raise GraphError(f"node '{label}': only input, constant and parameter nodes "
                                 "hold a value", nodes=(label,))
            node.value = _as_array(value, self.dtype)
        self.add_node(node, pos)
        for port, src in zip(op_cls.inputs, inputs):
            if isinstance(src, tuple):
                self.connect(src[0], node, dst_port=port, src_port=src[1])
            else:
                self.connect(src, node, dst_port=port)
        return node

    def add_node(self, node: Node, pos=None):
        """Insert an existing :class:`Node` (used by undo and by the loader)."""
        if node.id in self.nodes:
            raise GraphError(f"node id '{node.id}' is already used")
        self.nodes[node.id] = node
        if pos is not None:
            self.layout[node.id] = (float(pos[0]), float(pos[1]))
        if self._dg is not None:
            # extended in place: a rebuild per added node made building a graph quadratic
            self._dg.add_node(node.id, index=len(self.nodes) - 1)
        if self._names is not None:
            self._names[node.name] = node
        self._order = None
        self.node_added.emit(node)
        return node

    def remove_node(self, node) -> list:
        """Remove ``node`` and its edges; returns the removed edges (for undo)."""
        node = self.node(node)
        removed = [e for e in self.edges if node.id in (e.src, e.dst)]
        for e in removed:
            self.disconnect(e)
        del self.nodes[node.id]
        self.layout.pop(node.id, None)
        if self._names is not None:
            self._names.pop(node.name, None)
        self._next_suffix.clear()
        if self.loss == node.id:
            self.loss = None
        self._dg = None
        self._order = None
        self.node_removed.emit(node)
        return removed

    def _port(self, node: Node, port, outputs: bool) -> str:
        ports = node.output_ports if outputs else node.input_ports
        kind = "output" if outputs else "input"
        if port is None:
            port = 0
        if isinstance(port, (int, np.integer)):
            if not 0 <= port < len(ports):
                raise GraphError(f"node '{node.name}' has no {kind} port {port} "
                                 f"(it has {len(ports)})", nodes=(node.name,))
            return ports[port]
        if port not in ports:
            raise GraphError(f"node '{node.name}' has no {kind} port '{port}'; "
                             f"its {kind}s are: {', '.join(ports) or 'none'}", nodes=(node.name,))
        return port

    def check_connect(self, src, dst, dst_port=None, src_port=None) -> Edge:
        """The edge that :meth:`connect` would add, or a :class:`GraphError` saying why not."""
        src, dst = self.node(src), self.node(dst)
        if dst_port is None:
            free = [p for p in dst.input_ports if p not in self.in_edges(dst)]
            if not free:
                raise GraphError(f"every input of '{dst.name}' is already connected",
                                 nodes=(dst.name,))
            dst_port = free[0]
        sp = self._port(src, src_port, outputs=True)
        dp = self._port(dst, dst_port, outputs=False)
        if src.id == dst.id:
            raise GraphError(f"'{src.name}' cannot feed itself (that would be a cycle)",
                             nodes=(src.name,))
        if dp in self.in_edges(dst):
            other = self.nodes[self.in_edges(dst)[dp].src].name
            raise GraphError(f"input '{dp}' of '{dst.name}' is already connected to "
                             f"'{other}'; disconnect it first", nodes=(dst.name, other))
        import networkx as nx  # noqa: PLC0415 - a slow import: not before the first edit

        if nx.has_path(self.digraph(), dst.id, src.id):
            raise GraphError(f"connecting '{src.name}' → '{dst.name}' would create a cycle: "
                             f"'{dst.name}' already feeds '{src.name}'",
                             nodes=(src.name, dst.name))
        return Edge(src.id, sp, dst.id, dp)

    def connect(self, src, dst, dst_port=None, src_port=None) -> Edge:
        """Connect output ``src_port`` of ``src`` to input ``dst_port`` of ``dst``.

        Ports are names or indices; ``dst_port=None`` takes the first free input.
        Raises :class:`GraphError` on a cycle, an occupied input or an unknown port.
        """
        edge = self.check_connect(src, dst, dst_port, src_port)
        return self.add_edge(edge)

    def add_edge(self, edge: Edge) -> Edge:
        """Insert an edge already checked (used by undo); the input must be free."""
        if edge.src not in self.nodes or edge.dst not in self.nodes:
            raise GraphError("an edge must join two nodes of this graph")
        self.edges.append(edge)
        self._order = None
        if self._by_node is not None:  # extended in place, like the networkx view below
            self._by_node[0].setdefault(edge.dst, {})[edge.dst_port] = edge
            self._by_node[1].setdefault(edge.src, []).append(edge)
        if self._dg is not None:
            # extend the cached view instead of rebuilding it: loading a file adds
            # edges one by one, and a rebuild per edge made that quadratic
            self._dg.add_edge(edge.src, edge.dst)
        self.edge_added.emit(edge)
        return edge

    def insert_edge(self, edge: Edge, index: int) -> Edge:
        """:meth:`add_edge` at position ``index`` of :attr:`edges` (undo restores the order)."""
        self.add_edge(edge)
        if index < len(self.edges) - 1:
            self.edges.remove(edge)
            self.edges.insert(index, edge)
            self._by_node = None
        return edge

    def disconnect(self, edge: Edge):
        """Remove ``edge``."""
        try:
            self.edges.remove(edge)
        except ValueError:
            raise GraphError("that connection is not in the graph") from None
        self._dg = None
        self._order = None
        self._by_node = None
        self.edge_removed.emit(edge)

    def set_params(self, node, **params):
        """Change some parameters of ``node`` (validated); weights are re-created if shapes move."""
        node = self.node(node)
        new = dict(node.params)
        new.update(params)
        try:
            node.op = type(node.op)(**new)
        except ParamError as exc:
            raise ParamError(f"node '{node.name}': {exc}", nodes=(node.name,)) from None
        self._drop_stale_weights(node)
        self.node_changed.emit(node)

    def set_value(self, node, value):
        """Set the value held by an input, constant or parameter node."""
        node = self.node(node)
        if not type(node.op).source:
            raise GraphError(f"node '{node.name}' ({node.op_id}) holds no value",
                             nodes=(node.name,))
        node.value = None if value is None else _as_array(value, self.dtype)
        self.node_changed.emit(node)

    def check_name(self, name: str, node: Node | None = None):
        """Raise :class:`GraphError` unless ``name`` can name ``node`` (or a new node).

        Names are unique, not empty, and not another node's id, so that
        :meth:`node` finds one node for any key.
        """
        if not isinstance(name, str) or not name.strip():
            raise GraphError("a node name cannot be empty")
        other = self._name_index().get(name)
        if other is not None and other is not node:
            raise GraphError(f"a node named '{name}' already exists", nodes=(name,))
        other = self.nodes.get(name)
        if other is not None and other is not node:
            raise GraphError(f"'{name}' is the id of node '{other.name}'; choose another "
                             "name", nodes=(other.name,))

    def rename(self, node, name: str):
        """Give ``node`` a new unique name."""
        node = self.node(node)
        name = str(name).strip()
        self.check_name(name, node)
        if self._names is not None:
            self._names.pop(node.name, None)
            self._names[name] = node
        self._next_suffix.clear()
        node.name = name
        self.node_changed.emit(node)

    def move(self, node, pos):
        """Place ``node`` at ``pos`` on the canvas."""
        node = self.node(node)
        self.layout[node.id] = (float(pos[0]), float(pos[1]))
        self.layout_changed.emit(node.id)

    def set_loss(self, node):
        """Choose the scalar node the backward pass starts from (``None`` to clear)."""
        self.loss = None if node is None else self.node(node).id
        self.meta_changed.emit()

    # ------------------------------------------------------------- shapes
    def source_shape(self, node: Node) -> tuple:
        """Shape of an input, constant or parameter node (its value, else its ``shape``)."""
        if node.value is not None:
            return tuple(node.value.shape)
        return tuple(node.params.get("shape", ()))

    def infer_shapes(self, feeds: dict | None = None) -> ShapeReport:
        """Propagate shapes through the graph without computing values.

        Returns a :class:`ShapeReport`; nodes whose inputs are missing or do not
        fit get an error message instead of shapes, and their successors are skipped.
        """
        report = ShapeReport()
        feeds = feeds or {}
        for node in self.order():
            op_cls = type(node.op)
            if op_cls.source:
                fed = feeds.get(node.name, feeds.get(node.id))
                shape = tuple(np.shape(fed)) if fed is not None else self.source_shape(node)
                report.shapes[node.id] = (shape,)
                continue
            edges = self.in_edges(node)
            missing = [p for p in op_cls.inputs if p not in edges]
            if missing:
                report.errors[node.id] = f"input '{missing[0]}' is not connected"
                continue
            in_shapes = []
            for p in op_cls.inputs:
                e = edges[p]
                src_shapes = report.shapes.get(e.src)
                if src_shapes is None:
                    break
                in_shapes.append(src_shapes[self.nodes[e.src].output_ports.index(e.src_port)])
            else:
                try:
                    report.shapes[node.id] = tuple(node.op.infer_shapes(*in_shapes))
                    report.weights[node.id] = node.op.weight_specs(*in_shapes)
                    report.macs[node.id] = node.op.multiply_adds(*in_shapes)
                    report.in_shapes[node.id] = tuple(in_shapes)
                except ShapeError as exc:
                    report.errors[node.id] = (str(exc) + " (inputs: "
                                              + ", ".join(fmt_shape(s) for s in in_shapes) + ")")
                except (ValueError, TypeError, IndexError, OverflowError) as exc:
                    # an op's inference tripping on odd parameters: a message, not a crash
                    report.errors[node.id] = f"shapes cannot be inferred: {exc}"
                continue
            report.blocked.add(node.id)
        return report

    # ------------------------------------------------------------ weights
    def _drop_stale_weights(self, node: Node):
        """Forget weights whose shape no longer matches the op's spec (after a param edit)."""
        if not node.weights:
            return
        try:
            specs = self.infer_shapes().weights.get(node.id, {})
        except GraphError:
            specs = {}
        for wname, arr in list(node.weights.items()):
            spec = specs.get(wname)
            if spec is None or tuple(spec.shape) != arr.shape:
                del node.weights[wname]

    def initialize(self, seed: int = 0, reinit: bool = False, feeds: dict | None = None):
        """Give every trainable tensor that has none (or all, with ``reinit``) an initial value.

        Each node draws from its own generator seeded by ``(seed, position)``, so a
        graph initializes the same way whatever else is in it.
        """
        layers = any(type(n.op).weights for n in self.nodes.values())
        weights = self.infer_shapes(feeds).weights if layers else {}
        for i, node in enumerate(self.nodes.values()):
            fill = node.op_id == "parameter" and (reinit or node.value is None)
            todo = [(w, spec) for w, spec in (weights.get(node.id) or {}).items()
                    if reinit or w not in node.weights]
            if not fill and not todo:
                continue  # seeding a generator costs more than most nodes' whole run
            rng = np.random.default_rng([seed, i])
            if fill:
                shape = tuple(d or 1 for d in node.params["shape"])
                check_allocation(shape, self.dtype, node.name)
                fan_in = shape[-1] if shape else 1
                fan_out = shape[0] if len(shape) > 1 else 1
                node.value = initialize(node.params["init"], shape, rng, fan_in, fan_out,
                                        dtype=self.dtype, value=node.params.get("fill", 0.0))
                self.node_changed.emit(node)
            for wname, spec in todo:
                node.weights[wname] = self.make_weight(node, spec, rng)
            if todo:
                self.node_changed.emit(node)

    def make_weight(self, node: Node, spec: WeightSpec, rng):
        """Draw one weight tensor by its spec (or the node's ``init`` parameter, if set)."""
        check_allocation(spec.shape, self.dtype, node.name, "weight of shape")
        init = spec.init
        if spec.init not in ("zeros", "ones") and "init" in node.params:
            init = node.params["init"]
        return initialize(init, spec.shape, rng, spec.fan_in, spec.fan_out, dtype=self.dtype)

    # --------------------------------------------------------------- misc
    def trainable(self) -> list:
        """``(node, weight_name_or_None)`` for every trainable tensor, in graph order."""
        out = []
        for node in self.nodes.values():
            if node.op_id == "parameter" and node.params.get("trainable", True):
                out.append((node, None))
            for w in type(node.op).weights:
                out.append((node, w))
        return out

    def parameter_count(self) -> int:
        """Number of trainable scalars (from shapes, so it works before initialization)."""
        report = self.infer_shapes()
        total = 0
        for node in self.nodes.values():
            if node.op_id == "parameter" and node.params.get("trainable", True):
                total += numel(self.source_shape(node))
            for spec in (report.weights.get(node.id) or {}).values():
                total += numel(spec.shape)
        return total


class ShapeReport:
    """What :meth:`Graph.infer_shapes` found.

    Attributes
    ----------
    shapes : dict
        node id -> tuple of output shapes.
    errors : dict
        node id -> message, for nodes whose inputs do not fit or are missing.
    blocked : set
        nodes not inferred because something upstream failed.
    weights : dict
        node id -> {weight name: WeightSpec}.
    macs : dict
        node id -> multiply-adds per sample.
    """

    def __init__(self):
        self.shapes: dict = {}
        self.errors: dict = {}
        self.blocked: set = set()
        self.weights: dict = {}
        self.macs: dict = {}
        self.in_shapes: dict = {}

    def params_of(self, node_id: str) -> int:
        """Trainable scalars owned by a node."""
        return sum(numel(s.shape) for s in (self.weights.get(node_id) or {}).values())
