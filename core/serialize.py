"""Graph files: versioned JSON, read as data only, written atomically.

Layout of a file::

    {"format_version": 1, "name": "...", "description": "...", "dtype": "float64",
     "loss": "n7",
     "nodes": [{"id": "n1", "name": "a", "op": "input", "params": {...},
                "value": 3.0, "weights": {"W": [[...]]}, "state": {...}}],
     "edges": [{"from": ["n1", "out"], "to": ["n3", "a"]}],
     "layout": {"n1": [0.0, 120.0]}}

Every problem found while loading raises one :class:`FileFormatError` that names
the file and the place in it (``nodes[2].params.stride``); a graph is returned
only when the whole file is good.
"""

from __future__ import annotations

import contextlib
import difflib
import gc
import itertools
import json
import math
import os
import re
import stat
import tempfile
import time
from pathlib import Path

import numpy as np

from core.errors import FileFormatError, GraphError, StudioError
from core.graph import DTYPES, Edge, Graph, Node
from core.ops import REGISTRY

FORMAT_VERSION = 1
MAX_FILE_BYTES = 256 * 1024 * 1024

# format_version -> function turning a dict of that version into the next one
MIGRATIONS: dict = {}


# ------------------------------------------------------------------ writing
def _array_to_json(arr):
    arr = np.asarray(arr)
    if arr.dtype.kind in "iub":
        return arr.tolist()
    # float64 -> Python float keeps every bit (json writes repr, which round-trips)
    return arr.astype(np.float64).tolist()


def graph_to_dict(graph: Graph, values: bool = True, arrays: bool = True) -> dict:
    """A JSON-ready dict of ``graph``.

    Parameters
    ----------
    values : bool
        Store the values of input, constant and parameter nodes.
    arrays : bool
        Store layer weights and state (batch-norm statistics) too.
    """
    nodes = []
    for node in graph.nodes.values():
        item = {"id": node.id, "name": node.name, "op": node.op_id,
                "params": _params_to_json(node.params)}
        if values and node.value is not None:
            item["value"] = _array_to_json(node.value)
        if arrays and node.weights:
            item["weights"] = {k: _array_to_json(v) for k, v in node.weights.items()}
        if arrays and node.state:
            item["state"] = {k: _array_to_json(v) for k, v in node.state.items()}
        nodes.append(item)
    return {
        "format_version": FORMAT_VERSION,
        "name": graph.name,
        "description": graph.description,
        "dtype": graph.dtype,
        "loss": graph.loss,
        "nodes": nodes,
        "edges": [{"from": [e.src, e.src_port], "to": [e.dst, e.dst_port]} for e in graph.edges],
        "layout": {nid: [round(x, 3), round(y, 3)] for nid, (x, y) in graph.layout.items()
                   if nid in graph.nodes},
    }


def _params_to_json(params: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


def dumps(graph: Graph, **kw) -> str:
    """The file text of ``graph``."""
    return json.dumps(graph_to_dict(graph, **kw), indent=1, ensure_ascii=False,
                      allow_nan=False) + "\n"


def atomic_write(path, data: bytes | str):
    """Write ``data`` to ``path`` through a temporary file and a rename.

    A crash mid-write leaves the old file whole. Through a symbolic link the
    link's target is written (the link stays); an existing file keeps its
    permission bits, a new one gets those of the umask. Temporary files left by
    a save that was killed are removed on the next save of the same file.
    """
    target = Path(os.path.realpath(path))
    folder = target.parent
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    _remove_stale_temps(target)
    binary = isinstance(data, bytes)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}-", suffix=".tmp",
                               dir=folder)
    try:
        os.fchmod(fd, mode)
        kw = {} if binary else {"encoding": "utf-8"}
        with os.fdopen(fd, "wb" if binary else "w", **kw) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


def _umask() -> int:
    """The process umask (read without changing it where the system allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


# a writer that has not touched its temp file for this long is gone (or its pid was reused)
_STALE_SECONDS = 3600


def _remove_stale_temps(target: Path):
    """Delete ``.NAME.<pid>-XXXX.tmp`` files of ``target`` whose writing process is gone."""
    pattern = re.compile(re.escape(f".{target.name}.") + r"(?:(\d+)-)?[A-Za-z0-9_]+\.tmp")
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return
    now = time.time()
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None:
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
            pid = int(m.group(1)) if m.group(1) else None
            if pid is not None and _alive(pid) and age < _STALE_SECONDS:
                continue  # a live process (this one included) may be writing it right now
            if pid is None and age < 60:  # an older version's name: only if clearly left over
                continue
            os.unlink(entry.path)
        except OSError:
            pass  # gone already, or not ours to remove


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def _fsync_folder(folder: Path):
    """Make the rename itself durable (where the system allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_graph(graph: Graph, path, **kw):
    """Save ``graph`` as JSON at ``path`` (atomically)."""
    atomic_write(path, dumps(graph, **kw))


# ------------------------------------------------------------------ reading
def _reject_constant(name):
    raise ValueError(f"{name} is not allowed in a graph file (numbers must be finite)")


def loads(text: str, path=None) -> Graph:
    """Parse file text into a :class:`Graph` or raise :class:`FileFormatError`."""
    with _gc_paused():
        return _loads(text, path)


@contextlib.contextmanager
def _gc_paused():
    """No cyclic garbage collection while a file is parsed and built.

    Parsing allocates millions of objects and none of them form cycles; the
    collector would otherwise rescan the growing heap again and again.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _loads(text, path) -> Graph:
    """Parse and build; ``text`` may be a one-item list, emptied once parsed (frees it early)."""
    if isinstance(text, list):
        data = _parse(text[0], path)
        text.clear()
    else:
        data = _parse(text, path)
    return graph_from_dict(data, path)


def _parse(text: str, path):
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise FileFormatError(path, f"line {exc.lineno}, column {exc.colno}",
                              f"not valid JSON: {exc.msg}") from None
    except ValueError as exc:
        raise FileFormatError(path, "", str(exc)) from None
    except RecursionError:
        raise FileFormatError(path, "", "the JSON is nested too deeply") from None
    if _SURROGATE_ESCAPE.search(text):  # rare: only then walk the data to find where
        where = _lone_surrogate(data)
        if where is not None:
            raise FileFormatError(path, where, "text holds a lone surrogate (a \\uD800-\\uDFFF "
                                  "escape that is not half of a pair), which is not Unicode "
                                  "text and could not be saved or printed")
    return data


# a \uD800-\uDFFF escape in the file text: the only way a lone surrogate gets into the data
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _bad_text(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _lone_surrogate(data) -> str | None:
    """JSON path of the first key or text value holding a lone surrogate, else ``None``."""
    todo = [("", data)]
    while todo:
        where, v = todo.pop()
        if isinstance(v, str):
            if _bad_text(v):
                return where or "(top level)"
        elif isinstance(v, dict):
            for k, item in v.items():
                path = f"{where}.{k}" if where else k
                if _bad_text(k):
                    return path.encode("utf-8", "backslashreplace").decode("utf-8")
                todo.append((path, item))
        elif isinstance(v, list):
            todo.extend((f"{where}[{i}]", item) for i, item in enumerate(v))
    return None


def load_graph(path) -> Graph:
    """Load a graph file; every problem is one :class:`FileFormatError` naming where it is."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise FileFormatError(p, "", f"file is {size} bytes; graph files are at most "
                                         f"{MAX_FILE_BYTES} bytes")
        raw = p.read_bytes()
    except FileNotFoundError:
        raise FileFormatError(p, "", "no such file") from None
    except IsADirectoryError:
        raise FileFormatError(p, "", "is a folder, not a graph file") from None
    except PermissionError:
        raise FileFormatError(p, "", "permission denied") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileFormatError(p, f"byte {exc.start}", "not a UTF-8 text file (is it a graph "
                              "file? graph files are JSON)") from None
    del raw  # the file's bytes and text are dropped as soon as they are parsed
    box = [text]
    del text
    with _gc_paused():
        return _loads(box, p)


class _Reader:
    """Checks one field at a time so each error names its JSON path."""

    def __init__(self, path):
        self.path = path

    def fail(self, where, msg):
        raise FileFormatError(self.path, where, msg)

    def get(self, obj, key, kind, where, required=True, default=None):
        if key not in obj:
            if required:
                self.fail(where, f"missing field '{key}'")
            return default
        val = obj[key]
        if kind is not None and not isinstance(val, kind) or (kind in (int, float) and
                                                               isinstance(val, bool)):
            names = {dict: "an object", list: "a list", str: "text", int: "an integer",
                     float: "a number", (int, float): "a number"}
            self.fail(f"{where}.{key}" if where else key,
                      f"must be {names.get(kind, str(kind))}, not {type(val).__name__}")
        return val

    def array(self, val, where, dtype):
        try:
            raw = np.array(val)
        except (ValueError, TypeError, OverflowError, RecursionError):
            self.fail(where, "must be a number or a rectangular list of numbers")
        if raw.dtype.kind not in "iuf" or _holds_bool(val):  # text, true/false, null, ragged
            self.fail(where, "must be a number or a rectangular list of numbers")
        with np.errstate(over="ignore"):  # 1e300 in a float32 graph: refused just below
            arr = raw.astype(dtype)
        if not np.all(np.isfinite(arr)):
            self.fail(where, "must be finite numbers")
        return arr


def _holds_bool(val) -> bool:
    """Whether ``true``/``false`` hides in a list of numbers (NumPy would read it as 1/0)."""
    todo = [val]
    while todo:
        v = todo.pop()
        if v is True or v is False:
            return True
        if isinstance(v, list):
            todo.extend(v)
    return False


def _fits(shape, declared) -> bool:
    """``shape`` matches ``declared``, where ``None`` in ``declared`` matches any length."""
    return len(shape) == len(declared) and all(d is None or d == n
                                               for n, d in zip(shape, declared))


def _check_arrays(g: Graph, r: _Reader):
    """Stored weights must have the shapes the op would create from its inputs."""
    report = g.infer_shapes()
    index = {nid: i for i, nid in enumerate(g.nodes)}
    for node in g.nodes.values():
        specs = report.weights.get(node.id)
        if specs is None:
            continue  # shapes not known yet (inputs missing): checked when the graph runs
        like = type(node.op).state_like
        arrays = [("weights", k, v, specs[k].shape) for k, v in node.weights.items()]
        arrays += [("state", k, v, specs[like[k]].shape) for k, v in node.state.items()]
        for key, name, arr, want in arrays:
            if arr.shape != tuple(want):
                r.fail(f"nodes[{index[node.id]}].{key}.{name}",
                       f"has shape {arr.shape}; node '{node.name}' ({node.op_id}) needs "
                       f"{tuple(want)} for its inputs")


def _check_acyclic(g: Graph, r: _Reader):
    """Fail naming an edge that closes a cycle, if there is one."""
    try:
        g.order()
    except GraphError:
        import networkx as nx  # noqa: PLC0415 - a slow import, for a broken file only

        cycle = nx.find_cycle(g.digraph())
        names = [g.nodes[u].name for u, _ in cycle] + [g.nodes[cycle[0][0]].name]
        u, v = cycle[-1]
        k = next(i for i, e in enumerate(g.edges) if (e.src, e.dst) == (u, v))
        r.fail(f"edges[{k}]", "the edges make a cycle: "
               + " → ".join(f"'{n}'" for n in names))


def graph_from_dict(data, path=None) -> Graph:
    """Build a graph from a file's dict, checking every field.

    Raises
    ------
    FileFormatError
        On the first problem, naming the file and the JSON path inside it.
    """
    r = _Reader(path)
    if not isinstance(data, dict):
        r.fail("", "a graph file must hold a JSON object at the top level")
    data = _read_version(data, r)
    g = _read_header(data, r)
    nodes = r.get(data, "nodes", list, "")
    _read_nodes(g, nodes, r)
    _read_edges(g, r.get(data, "edges", list, ""), r)
    _check_acyclic(g, r)
    _read_layout(g, r.get(data, "layout", dict, "", required=False, default={}), r)
    loss = data.get("loss")
    if loss is not None:
        if not isinstance(loss, str) or loss not in g.nodes:
            r.fail("loss", f"no node with id {loss!r}")
        g.loss = loss
    for i, item in enumerate(nodes):
        if item["id"] != item.get("name", item["id"]) and item.get("name") in g.nodes:
            r.fail(f"nodes[{i}].name", f"'{item['name']}' is the id of another node")
    if any(node.weights or node.state for node in g.nodes.values()):
        _check_arrays(g, r)
    g._ids = itertools.count(len(g.nodes) + 1)
    return g


def _read_version(data: dict, r: _Reader) -> dict:
    """``data`` migrated to :data:`FORMAT_VERSION`; a newer or unknown version fails."""
    version = r.get(data, "format_version", int, "")
    if version > FORMAT_VERSION:
        r.fail("format_version", f"version {version} is newer than this Backprop Studio "
               f"understands ({FORMAT_VERSION}); update the application")
    if version < 1:
        r.fail("format_version", f"unknown version {version}")
    while version < FORMAT_VERSION:
        data = MIGRATIONS[version](data)
        version += 1
    return data


def _read_header(data: dict, r: _Reader) -> Graph:
    """An empty graph with the file's dtype, name and description."""
    dtype = r.get(data, "dtype", str, "", required=False, default="float64")
    if dtype not in DTYPES:
        r.fail("dtype", f"must be one of {', '.join(DTYPES)}; got {dtype!r}")
    g = Graph(dtype=dtype, name=str(r.get(data, "name", str, "", False, "")))
    g.description = r.get(data, "description", str, "", False, "")
    return g


def _read_nodes(g: Graph, nodes: list, r: _Reader):
    """Add every node of the ``nodes`` section to ``g``; ids and names must be unique."""
    names = set()
    for i, item in enumerate(nodes):
        where = f"nodes[{i}]"
        if not isinstance(item, dict):
            r.fail(where, "each node must be an object")
        nid = r.get(item, "id", str, where)
        if not nid or nid in g.nodes:
            r.fail(f"{where}.id", f"node id {nid!r} is empty or used twice")
        op_id = r.get(item, "op", str, where)
        if op_id not in REGISTRY:
            hint = difflib.get_close_matches(op_id, REGISTRY, n=1)
            r.fail(f"{where}.op", f"unknown op '{op_id}'"
                   + (f" (did you mean '{hint[0]}'?)" if hint else ""))
        name = r.get(item, "name", str, where, required=False, default=nid)
        if not name.strip():
            r.fail(f"{where}.name", "a node name cannot be empty")
        if name in names:
            r.fail(f"{where}.name", f"node name '{name}' is used twice")
        names.add(name)
        g.add_node(_read_node(item, where, nid, name, op_id, g.dtype, r))


def _read_node(item: dict, where: str, nid: str, name: str, op_id: str, dtype: str,
               r: _Reader) -> Node:
    """The node of one ``nodes[i]`` entry: params, value, weights and state checked."""
    params = r.get(item, "params", dict, where, required=False, default={})
    try:
        node = Node(nid, name, op_id, dict(params))
    except StudioError as exc:
        msg = str(exc)
        bad = next((k for k in params if f"'{k}'" in msg), None)
        r.fail(f"{where}.params" + (f".{bad}" if bad else ""), msg)
    if "value" in item:
        if not REGISTRY[op_id].source:
            r.fail(f"{where}.value", f"op '{op_id}' holds no value")
        node.value = r.array(item["value"], f"{where}.value", dtype)
        declared = node.params.get("shape") or ()
        if declared and not _fits(node.value.shape, declared):
            r.fail(f"{where}.value", f"has shape {node.value.shape} but the node declares "
                   f"shape {list(declared)}")
    for key in ("weights", "state"):
        arrays = r.get(item, key, dict, where, required=False, default={})
        store = getattr(node, key)
        for wname, wval in arrays.items():
            if key == "weights" and wname not in REGISTRY[op_id].weights:
                r.fail(f"{where}.weights.{wname}", f"op '{op_id}' has no weight '{wname}'")
            if key == "state" and wname not in REGISTRY[op_id].state_like:
                r.fail(f"{where}.state.{wname}", f"op '{op_id}' keeps no state '{wname}'")
            store[wname] = r.array(wval, f"{where}.{key}.{wname}", dtype)
    return node


def _read_edges(g: Graph, edges: list, r: _Reader):
    """Add every edge of the ``edges`` section; each input is fed at most once."""
    fed = {}  # (node id, input port) -> index of the edge feeding it
    for i, item in enumerate(edges):
        where = f"edges[{i}]"
        if not isinstance(item, dict):
            r.fail(where, "each edge must be an object with 'from' and 'to'")
        ends = []
        for key in ("from", "to"):
            end = r.get(item, key, list, where)
            if len(end) != 2 or not all(isinstance(x, str) for x in end):
                r.fail(f"{where}.{key}", "must be [node id, port name]")
            if end[0] not in g.nodes:
                r.fail(f"{where}.{key}", f"no node with id '{end[0]}' (dangling edge)")
            ends.append(end)
        # checked here rather than by Graph.connect, whose cycle search per edge made
        # loading quadratic; cycles are found once, after all edges
        src, dst = g.nodes[ends[0][0]], g.nodes[ends[1][0]]
        try:
            src_port = g._port(src, ends[0][1], outputs=True)
            dst_port = g._port(dst, ends[1][1], outputs=False)
        except GraphError as exc:
            r.fail(where, str(exc))
        if src is dst:
            r.fail(where, f"'{src.name}' cannot feed itself (that would be a cycle)")
        taken = fed.get((dst.id, dst_port))
        if taken is not None:
            r.fail(where, f"input '{dst_port}' of '{dst.name}' is already connected to "
                   f"'{g.nodes[edges[taken]['from'][0]].name}' (edges[{taken}])")
        fed[(dst.id, dst_port)] = i
        g.add_edge(Edge(src.id, src_port, dst.id, dst_port))


def _read_layout(g: Graph, layout: dict, r: _Reader):
    """Card positions of the ``layout`` section: known node ids, finite ``[x, y]``."""
    for nid, pos in layout.items():
        where = f"layout.{nid}"
        if nid not in g.nodes:
            r.fail(where, f"no node with id '{nid}'")
        if (not isinstance(pos, list) or len(pos) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pos)):
            r.fail(where, "must be [x, y]")
        try:
            xy = (float(pos[0]), float(pos[1]))
        except OverflowError:  # an integer of hundreds of digits
            xy = (math.inf, math.inf)
        if not all(math.isfinite(v) for v in xy):
            r.fail(where, "coordinates must be finite numbers")
        g.layout[nid] = xy


def copy_graph(graph: Graph) -> Graph:
    """A deep copy of ``graph`` without subscribers (arrays copied): a save/load round trip.

    Lives here, not on :class:`~core.graph.Graph`, because it goes through the file format
    and the graph module must not import the serializer.
    """
    return graph_from_dict(graph_to_dict(graph, values=True, arrays=True))
