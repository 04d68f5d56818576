"""Undo commands: every edit the user makes to the graph is one of these.

Each command calls the model's methods (never the view's); the views follow
through the model's events. Undo restores the exact previous graph, including the
order of nodes and edges (that order decides the topological tie-breaks and the
per-node initialization seeds, so it is part of the graph, not a detail).
"""

from __future__ import annotations

import copy

import numpy as np
from PySide6.QtGui import QUndoCommand

from core.errors import GraphError, ParamError
from core.graph import Edge, Graph, Node
from core.ops import get_op
from core.serialize import graph_from_dict, graph_to_dict

MERGE_PARAMS = 4101
MERGE_VALUE = 4102


# ------------------------------------------------------------ order helpers
def _insert_node_at(graph: Graph, node: Node, index: int, pos):
    """``graph.add_node`` then move the node back to ``index`` in ``graph.nodes``.

    The model has no insert-at-index, so the dict is rebuilt in place (same object,
    so every holder of ``graph.nodes`` sees the change).
    """
    graph.add_node(node, pos)
    if index < len(graph.nodes) - 1:
        items = list(graph.nodes.items())
        items.insert(index, items.pop())
        graph.nodes.clear()
        graph.nodes.update(items)




class GraphCommand(QUndoCommand):
    """Base class: holds the graph the command edits."""

    def __init__(self, graph: Graph, text: str, parent=None):
        super().__init__(text, parent)
        self.graph = graph


class MacroCommand(QUndoCommand):
    """Several commands as one undo step, run in order and undone in reverse.

    The children live in a Python list: Qt's own parent/child commands would
    leave their lifetime to the Python wrappers, which the garbage collector
    may take too early.
    """

    def __init__(self, text: str, children: list):
        super().__init__(text)
        self.children = list(children)

    def redo(self):
        for c in self.children:
            c.redo()

    def undo(self):
        for c in reversed(self.children):
            c.undo()


# ------------------------------------------------------------------ nodes
class AddNodeCommand(GraphCommand):
    """Add one node running ``op_id`` at ``pos``."""

    def __init__(self, graph, op_id, pos, params=None, name=None, value=None, parent=None):
        super().__init__(graph, f"Add {get_op(op_id).label}", parent)
        # validate now: a command must not fail inside the undo stack
        get_op(op_id).validate_params(dict(params or {}))
        if name is not None and any(n.name == name for n in graph.nodes.values()):
            raise GraphError(f"a node named '{name}' already exists", nodes=(name,))
        self.op_id = op_id
        self.pos = (float(pos[0]), float(pos[1]))
        self.params = dict(params or {})
        self.name = name
        self.value = value
        self.node = None

    def redo(self):
        if self.node is None:
            self.node = self.graph.add(self.op_id, name=self.name, value=self.value,
                                       pos=self.pos, **self.params)
            self.setText(f"Add '{self.node.name}'")
        else:
            self.graph.add_node(self.node, self.pos)

    def undo(self):
        self.graph.remove_node(self.node)


class AddSubgraphCommand(GraphCommand):
    """Add prepared nodes and the edges between them (paste, duplicate)."""

    def __init__(self, graph, nodes: list, positions: dict, edges: list, text="Paste",
                 parent=None):
        super().__init__(graph, text, parent)
        self.nodes = nodes
        self.positions = positions
        self.edges = edges

    def redo(self):
        for node in self.nodes:
            self.graph.add_node(node, self.positions.get(node.id))
        for e in self.edges:
            self.graph.add_edge(e)

    def undo(self):
        for e in reversed(self.edges):
            self.graph.disconnect(e)
        for node in reversed(self.nodes):
            self.graph.remove_node(node)


class RemoveCommand(GraphCommand):
    """Delete nodes (with their wires) and loose wires; undo puts everything back in place."""

    def __init__(self, graph, node_ids=(), edges=(), text=None, parent=None):
        node_ids = [n for n in graph.nodes if n in set(node_ids)]
        n, m = len(node_ids), len(edges)
        if text is None:
            if n == 1 and not m:
                text = f"Delete '{graph.nodes[node_ids[0]].name}'"
            elif n:
                text = f"Delete {n} node{'s' * (n > 1)}"
            else:
                text = f"Delete {m} connection{'s' * (m > 1)}"
        super().__init__(graph, text, parent)
        self.node_ids = node_ids
        self.loose = list(edges)
        self._saved = None

    def redo(self):
        g = self.graph
        gone = set(self.node_ids)
        edges = [e for e in g.edges if e in self.loose or e.src in gone or e.dst in gone]
        self._saved = {
            "edges": [(g.edges.index(e), e) for e in edges],
            "nodes": [(list(g.nodes).index(nid), g.nodes[nid], g.layout.get(nid))
                      for nid in self.node_ids],
            "loss": g.loss,
        }
        for _, e in reversed(self._saved["edges"]):
            g.disconnect(e)
        for _, node, _ in reversed(self._saved["nodes"]):
            g.remove_node(node)

    def undo(self):
        g = self.graph
        for index, node, pos in self._saved["nodes"]:
            _insert_node_at(g, node, index, pos)
        for index, e in self._saved["edges"]:
            g.insert_edge(e, index)
        if g.loss != self._saved["loss"]:
            g.set_loss(self._saved["loss"])


# ------------------------------------------------------------------ edges
class ConnectCommand(GraphCommand):
    """Add one wire (already checked by ``Graph.check_connect``)."""

    def __init__(self, graph, edge: Edge, parent=None):
        src, dst = graph.nodes[edge.src].name, graph.nodes[edge.dst].name
        super().__init__(graph, f"Connect '{src}' → '{dst}.{edge.dst_port}'", parent)
        self.edge = edge

    def redo(self):
        self.graph.add_edge(self.edge)

    def undo(self):
        self.graph.disconnect(self.edge)


class ConnectPendingCommand(GraphCommand):
    """Connect to a node created earlier in the same macro (its id is known only then)."""

    def __init__(self, graph, src, dst, src_port=None, dst_port=None, parent=None):
        super().__init__(graph, "Connect", parent)
        self.ends = (src, dst, src_port, dst_port)
        self.edge = None

    def redo(self):
        if self.edge is None:
            src, dst, sp, dp = (x() if callable(x) else x for x in self.ends)
            self.edge = self.graph.check_connect(src, dst, dst_port=dp, src_port=sp)
        self.graph.add_edge(self.edge)

    def undo(self):
        self.graph.disconnect(self.edge)


# ---------------------------------------------------------------- changes
class SetParamsCommand(GraphCommand):
    """Change parameters of one node; successive edits of one field merge."""

    def __init__(self, graph, node_id, changes: dict, parent=None):
        node = graph.nodes[node_id]
        names = ", ".join(changes)
        super().__init__(graph, f"Set {names} of '{node.name}'", parent)
        self.node_id = node_id
        self.old = dict(node.params)
        self.old_weights = dict(node.weights)
        self.new = dict(node.params)
        self.new.update(changes)
        type(node.op).validate_params(self.new, where=f"node '{node.name}'")
        self.keys = frozenset(changes)

    def id(self):
        return MERGE_PARAMS

    def mergeWith(self, other):
        if not isinstance(other, SetParamsCommand) or other.node_id != self.node_id \
                or other.keys != self.keys:
            return False
        self.new = other.new
        return True

    def redo(self):
        self.graph.set_params(self.node_id, **self.new)

    def undo(self):
        self.graph.set_params(self.node_id, **self.old)
        node = self.graph.nodes[self.node_id]
        if node.weights != self.old_weights:
            # weights dropped because their shape changed come back with the old shape
            node.weights.clear()
            node.weights.update(self.old_weights)
            self.graph.node_changed.emit(node)


class SetValueCommand(GraphCommand):
    """Set the value held by an input, constant or parameter node."""

    def __init__(self, graph, node_id, value, parent=None):
        node = graph.nodes[node_id]
        super().__init__(graph, f"Set value of '{node.name}'", parent)
        self.node_id = node_id
        self.old = None if node.value is None else node.value.copy()
        if value is not None:
            value = np.array(value, dtype=graph.dtype)
            if not np.all(np.isfinite(value)):
                raise ParamError(f"node '{node.name}': a value must be finite numbers")
        self.new = value

    def redo(self):
        self.graph.set_value(self.node_id, self.new)

    def undo(self):
        self.graph.set_value(self.node_id, self.old)


class RenameCommand(GraphCommand):
    def __init__(self, graph, node_id, name, parent=None):
        node = graph.nodes[node_id]
        name = str(name).strip()
        if not name:
            raise GraphError("a node name cannot be empty", nodes=(node.name,))
        if any(n.name == name and n is not node for n in graph.nodes.values()):
            raise GraphError(f"a node named '{name}' already exists", nodes=(name,))
        super().__init__(graph, f"Rename '{node.name}' to '{name}'", parent)
        self.node_id = node_id
        self.old = node.name
        self.new = name

    def redo(self):
        self.graph.rename(self.node_id, self.new)

    def undo(self):
        self.graph.rename(self.node_id, self.old)


class SetLossCommand(GraphCommand):
    def __init__(self, graph, node_id, parent=None):
        text = ("Clear the loss" if node_id is None
                else f"Use '{graph.nodes[node_id].name}' as the loss")
        super().__init__(graph, text, parent)
        self.old = graph.loss
        self.new = node_id

    def redo(self):
        self.graph.set_loss(self.new)

    def undo(self):
        self.graph.set_loss(self.old)


class SetMetaCommand(GraphCommand):
    """Change the graph's title and description."""

    def __init__(self, graph, name, description, parent=None):
        super().__init__(graph, "Edit graph title and description", parent)
        self.old = (graph.name, graph.description)
        self.new = (name, description)

    def _apply(self, pair):
        self.graph.name, self.graph.description = pair
        self.graph.meta_changed.emit()

    def redo(self):
        self._apply(self.new)

    def undo(self):
        self._apply(self.old)


class MoveNodesCommand(GraphCommand):
    """Move nodes: ``moves`` maps node id -> (old position or None, new position)."""

    def __init__(self, graph, moves: dict, text=None, parent=None):
        n = len(moves)
        if text is None:
            text = (f"Move '{graph.nodes[next(iter(moves))].name}'" if n == 1
                    else f"Move {n} nodes")
        super().__init__(graph, text, parent)
        self.moves = {k: (None if a is None else tuple(a), tuple(b)) for k, (a, b) in moves.items()}

    def redo(self):
        for nid, (_, new) in self.moves.items():
            self.graph.move(nid, new)

    def undo(self):
        for nid, (old, _) in self.moves.items():
            if old is None:
                # the node had no position: take it out of the layout again
                self.graph.layout.pop(nid, None)
                self.graph.layout_changed.emit(nid)
            else:
                self.graph.move(nid, old)


def clone_nodes(graph: Graph, data: dict, offset=(40.0, 40.0)):
    """Fresh nodes (new ids and unique names) from a clipboard dict made by ``subgraph_dict``.

    Returns ``(nodes, positions, edges)`` ready for :class:`AddSubgraphCommand`.
    """
    part = graph_from_dict(data)
    taken = {n.name for n in graph.nodes.values()}
    used_ids = set(graph.nodes)
    id_map, nodes, positions = {}, [], {}
    for node in part.nodes.values():
        nid = graph.new_id()
        while nid in used_ids:
            nid = graph.new_id()
        used_ids.add(nid)
        id_map[node.id] = nid
        name = _fresh_name(node.name, taken)
        taken.add(name)
        fresh = Node(nid, name, node.op_id, dict(node.params))
        fresh.value = None if node.value is None else node.value.astype(graph.dtype)
        fresh.weights = {k: v.astype(graph.dtype) for k, v in node.weights.items()}
        fresh.state = copy.deepcopy(node.state)
        nodes.append(fresh)
        pos = part.layout.get(node.id)
        if pos is not None:
            positions[nid] = (pos[0] + offset[0], pos[1] + offset[1])
    edges = [Edge(id_map[e.src], e.src_port, id_map[e.dst], e.dst_port) for e in part.edges]
    return nodes, positions, edges


def _fresh_name(name: str, taken: set) -> str:
    if name not in taken:
        return name
    stem = name.rstrip("0123456789") or name
    i = 2
    while f"{stem}{i}" in taken:
        i += 1
    return f"{stem}{i}"


def subgraph_dict(graph: Graph, node_ids) -> dict:
    """A graph-file dict holding ``node_ids`` and the wires among them (for the clipboard)."""
    keep = set(node_ids)
    data = graph_to_dict(graph)
    data["nodes"] = [n for n in data["nodes"] if n["id"] in keep]
    data["edges"] = [e for e in data["edges"] if e["from"][0] in keep and e["to"][0] in keep]
    data["layout"] = {k: v for k, v in data["layout"].items() if k in keep}
    data["loss"] = None
    data["name"] = ""
    data["description"] = ""
    return data


class SetTrainedWeightsCommand(GraphCommand):
    """Put the tensors of a training run into the graph (one undo step).

    ``arrays`` maps ``(node id, kind, name)`` to an array, ``kind`` being
    ``"value"`` (a parameter node), ``"weight"`` or ``"state"``. Entries whose
    node is gone, or whose shape no longer matches (the graph was edited while
    it trained), are left out and listed in :attr:`skipped`.
    """

    def __init__(self, graph, arrays: dict, text: str = "Apply trained weights", parent=None):
        super().__init__(graph, text, parent)
        self.changes = []  # (node id, kind, name, old or None, new)
        self.skipped = []
        for (nid, kind, name), new in arrays.items():
            node = graph.nodes.get(nid)
            if node is None:
                self.skipped.append(f"{nid}.{name or 'value'}")
                continue
            if kind == "value":
                old = node.value
            elif kind == "weight":
                old = node.weights.get(name)
            else:
                old = node.state.get(name)
            if old is not None and np.shape(old) != np.shape(new):
                self.skipped.append(f"{node.name}.{name or 'value'}")
                continue
            self.changes.append((nid, kind, name, None if old is None else np.copy(old),
                                 np.array(new, dtype=graph.dtype if kind != "state"
                                          or np.asarray(new).dtype.kind == "f" else None)))

    def _apply(self, which: int):
        touched = []
        for change in self.changes:
            nid, kind, name = change[:3]
            arr = change[which]
            node = self.graph.nodes[nid]
            if kind == "value":
                node.value = None if arr is None else np.copy(arr)
            else:
                store = node.weights if kind == "weight" else node.state
                if arr is None:
                    store.pop(name, None)
                else:
                    store[name] = np.copy(arr)
            if nid not in touched:
                touched.append(nid)
        for nid in touched:
            self.graph.node_changed.emit(self.graph.nodes[nid])

    def redo(self):
        self._apply(4)

    def undo(self):
        self._apply(3)
