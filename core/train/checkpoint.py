"""The checkpoint format: write, read, validate and apply a training checkpoint.

A checkpoint is one ``.npz`` archive (never pickled) holding the graph's trained
arrays (``value/…``, ``weights/…``, ``state/…``), the optimizer's buffers
(``optim/…``) and a JSON string under ``meta.json`` that starts with
``format`` and ``version``. Reading checks every member's ``.npy`` header
against size limits before its data is read, and checks the arrays against a
graph before any is applied, so a bad file is a clear
:class:`~core.errors.FileFormatError` that changes nothing.

This module knows nothing of the training loop: :class:`core.train.trainer.Trainer`
builds the metadata and calls :func:`write_checkpoint`.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

from core.errors import FileFormatError
from core.graph import Graph
from core.kernels.backend import to_numpy
from core.serialize import atomic_write
from core.train.optim import make_optimizer
from core.train.schedules import make_schedule

CHECKPOINT_FORMAT = "backprop-studio-checkpoint"
# 2: records whether (and how) training batches were augmented ("augment")
CHECKPOINT_VERSION = 2


def augment_record(augment):
    """What a checkpoint stores about the augmentation: ``None``, its settings, or its name."""
    if augment is None:
        return None
    if hasattr(augment, "to_dict"):
        return augment.to_dict()
    return {"callable": f"{type(augment).__module__}.{type(augment).__qualname__}"}


def describe_augment(record) -> str:
    """``record`` of :func:`augment_record` in words."""
    if record is None:
        return "no augmentation"
    if isinstance(record, dict) and "shift" in record and "rotation" in record:
        return f"augmentation (shift ±{record['shift']} px, rotation ±{record['rotation']}°)"
    return f"augmentation {record!r:.80}"


def optimizer_from_checkpoint(graph: Graph, meta: dict, arrays: dict, path) -> tuple:
    """The optimizer (with its buffers) and schedule saved in a checkpoint, checked."""
    cfg = meta.get("optimizer")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("name"), str):
        raise FileFormatError(path, "meta.json.optimizer", "missing or has no 'name'")
    cfg = dict(cfg)
    name, steps = cfg.pop("name"), cfg.pop("steps", 0)
    try:
        opt = make_optimizer(name, **cfg)
    except (TypeError, ValueError) as exc:
        raise FileFormatError(path, "meta.json.optimizer", str(exc)) from None
    if not isinstance(steps, int) or steps < 0:
        raise FileFormatError(path, "meta.json.optimizer.steps",
                              f"must be a whole number ≥ 0; got {steps!r}")
    sched = meta.get("schedule")
    if not isinstance(sched, dict) or not isinstance(sched.get("config"), dict) \
            or not isinstance(sched.get("state", {}), dict):
        raise FileFormatError(path, "meta.json.schedule", "missing or not {config, state}")
    try:
        schedule = make_schedule(sched["config"])
        schedule.load_state(sched.get("state", {}))
    except (TypeError, ValueError, KeyError) as exc:
        raise FileFormatError(path, "meta.json.schedule", str(exc)) from None
    shapes = {}
    for node, w in graph.trainable():
        key = f"value/{node.id}" if w is None else f"weights/{node.id}/{w}"
        if key in arrays:
            shapes[(node.id, w)] = arrays[key].shape
    state = {}
    dtype = np.dtype(graph.dtype)
    for key, v in arrays.items():
        if not key.startswith("optim/"):
            continue
        parts = key.split("/", 3)
        if len(parts) != 4 or parts[1] not in opt.slots:
            raise FileFormatError(path, key, f"not a state buffer of the {opt.name} optimizer")
        _, slot, nid, w = parts
        tkey = (nid, None if w == "-" else w)
        if tkey not in shapes:
            raise FileFormatError(path, key, "optimizer state for a tensor this graph does "
                                             "not train")
        if v.shape != shapes[tkey] or v.dtype.kind != "f":
            raise FileFormatError(path, key, f"optimizer state has shape {v.shape}; the "
                                             f"tensor has {shapes[tkey]}")
        if not np.all(np.isfinite(v)):
            raise FileFormatError(path, key, "optimizer state holds NaN or Inf; the "
                                             "checkpoint was saved from a diverged run")
        state[(slot, tkey)] = v.astype(dtype)
    opt.load_state(state, steps)
    return opt, schedule


def graph_arrays(graph: Graph) -> dict:
    """The arrays a checkpoint keeps: parameter values, layer weights and layer state.

    Host copies of arrays that live on a device, so a checkpoint saved on a GPU loads
    on a CPU (and back).
    """
    arrays = {}
    for node in graph.nodes.values():
        if node.op_id == "parameter" and node.value is not None:
            arrays[f"value/{node.id}"] = to_numpy(node.value)
        for w, v in node.weights.items():
            arrays[f"weights/{node.id}/{w}"] = to_numpy(v)
        for s, v in node.state.items():
            arrays[f"state/{node.id}/{s}"] = to_numpy(v)
    return arrays


# Limits on what a checkpoint may declare, checked from each member's .npy header before
# its data is read: far above any graph the studio trains, far below what would exhaust memory.
def write_checkpoint(path, graph: Graph, optimizer, meta: dict):
    """Write ``graph``'s arrays, ``optimizer``'s buffers and ``meta`` to ``path`` atomically.

    ``meta`` is what the caller records (progress, settings, history); the
    format name and version are put first, as every checkpoint starts with them.
    """
    arrays = graph_arrays(graph)
    for (slot, key), v in optimizer.state_arrays().items():
        arrays[f"optim/{slot}/{key[0]}/{key[1] or '-'}"] = to_numpy(v)
    meta = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **meta}
    arrays["meta.json"] = np.array(json.dumps(meta, allow_nan=False))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write(path, buf.getvalue())


MAX_ARRAY_BYTES = 256 << 20
MAX_CHECKPOINT_BYTES = 1 << 30
MAX_META_BYTES = 16 << 20
MAX_META_DEPTH = 64
# members named by the format (besides meta.json); any other member is never read
ARRAY_KINDS = ("value", "weights", "state", "optim")


def _read_npz_member(zf, info, key: str, path, limit: int) -> np.ndarray:
    """One array of an open .npz, its size checked from the .npy header before reading.

    The header's shape × item size must be within ``limit`` and match the size
    the zip directory gives the member; object (pickled) data is refused.
    """
    fmt = np.lib.format
    if info.file_size > limit + 4096:
        raise FileFormatError(path, key, f"member holds {info.file_size:,} bytes, more than the "
                                    f"{limit:,} a checkpoint array may have")
    try:
        with zf.open(info) as fh:
            try:
                version = fmt.read_magic(fh)
                if version == (1, 0):
                    shape, fortran, dtype = fmt.read_array_header_1_0(fh)
                elif version == (2, 0):
                    shape, fortran, dtype = fmt.read_array_header_2_0(fh)
                else:
                    raise ValueError(f"unsupported .npy format version {version}")
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error):
                raise
            except Exception as exc:  # noqa: BLE001 - numpy parses the header text with
                # ast and tokenize, which raise SyntaxError, TokenError and others on garbage
                raise FileFormatError(path, key, f"the .npy header cannot be parsed "
                                                 f"({type(exc).__name__}: {exc})") from None
            header_len = fh.tell()
            if dtype.hasobject or dtype.fields is not None or dtype.kind == "V":
                raise FileFormatError(path, key, f"holds {dtype} records or Python objects; a "
                                            "checkpoint holds plain numbers (pickle is never "
                                            "loaded)")
            if any(d < 0 for d in shape):
                raise FileFormatError(path, key, f".npy header declares a negative dimension "
                                            f"{shape}")
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > limit:
                raise FileFormatError(path, key, f".npy header declares shape {shape} of {dtype} "
                                            f"= {nbytes:,} bytes, more than the {limit:,} a "
                                            "checkpoint array may have")
            if header_len + nbytes != info.file_size:
                raise FileFormatError(path, key, f".npy header declares shape {shape} of {dtype} "
                                            f"= {nbytes:,} bytes of data, but the member "
                                            f"holds {info.file_size - header_len:,}; the "
                                            "file is truncated or corrupt")
            data = fh.read(nbytes)
            if len(data) != nbytes:
                raise FileFormatError(path, key, "member is cut short; the file is truncated")
            fh.read(1)  # reaching the end makes zipfile check the CRC
    except FileFormatError:
        raise
    except (ValueError, TypeError, OSError, EOFError, RuntimeError, NotImplementedError,
            zipfile.BadZipFile, zlib.error) as exc:
        raise FileFormatError(path, key, f"cannot be read ({exc}); the file is damaged or not a "
                                    "checkpoint") from None
    order = "F" if fortran and len(shape) > 1 else "C"
    arr = np.frombuffer(data, dtype=dtype).reshape(shape, order=order)
    return arr.astype(arr.dtype.newbyteorder("="), copy=True)


def _json_depth(value) -> int:
    """Deepest nesting of lists and objects in parsed JSON (walked without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (list, dict)):
            deepest = max(deepest, depth)
            stack.extend((c, depth + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def read_checkpoint(path) -> tuple:
    """``(metadata, arrays)`` of a checkpoint file; a clear error if it is not one.

    Only ``meta.json`` and the members the format names (``value/…``,
    ``weights/…``, ``state/…``, ``optim/…``) are read, each after its .npy
    header has been checked against :data:`MAX_ARRAY_BYTES` and the zip
    member's size; other members are never read. No pickle is ever loaded.
    """
    path = Path(path)
    raw, arrays = _read_archive(path)
    return _parse_meta(raw, path), arrays


def _read_archive(path: Path) -> tuple:
    """``(meta.json string array, arrays)`` of the members the format names, sizes checked."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except FileNotFoundError:
        raise FileFormatError(path, "", "no such checkpoint file") from None
    except IsADirectoryError:
        raise FileFormatError(path, "", "is a folder, not a checkpoint file") from None
    except OSError as exc:
        raise FileFormatError(path, "", f"cannot be read ({exc.strerror or exc})") from None
    if head[:2] != b"PK":
        # np.load would read a lone .npy array or offer to unpickle other files
        raise FileFormatError(path, "", "not a checkpoint: not an .npz archive (checkpoints "
                                        "are the .npz files written by 'train --out')")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise FileFormatError(path, "", f"not a checkpoint: the .npz archive is damaged or "
                                        f"truncated ({exc}); save it again") from None
    with zf:
        members: dict = {}
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            key = info.filename[:-4]
            if key != "meta.json" and key.split("/", 1)[0] not in ARRAY_KINDS:
                continue
            if key in members:
                raise FileFormatError(path, key, "appears twice in the archive")
            members[key] = info
        if "meta.json" not in members:
            raise FileFormatError(path, "meta.json", "missing: this .npz is not a "
                                                     "Backprop Studio checkpoint")
        raw = _read_npz_member(zf, members.pop("meta.json"), "meta.json", path,
                               MAX_META_BYTES)
        if raw.dtype.kind != "U" or raw.shape != ():
            raise FileFormatError(path, "meta.json", f"must be one text string; got {raw.dtype} "
                                                     f"{raw.shape}")
        total = sum(info.file_size for info in members.values())
        if total > MAX_CHECKPOINT_BYTES:
            raise FileFormatError(path, "", f"its arrays hold {total:,} bytes, more than the "
                                            f"{MAX_CHECKPOINT_BYTES:,} a checkpoint may have")
        arrays = {key: _read_npz_member(zf, info, key, path, MAX_ARRAY_BYTES)
                  for key, info in sorted(members.items())}
    return raw, arrays


def _parse_meta(raw: np.ndarray, path: Path) -> dict:
    """The checked metadata of a checkpoint from its ``meta.json`` member."""
    deep = FileFormatError(path, "meta.json", f"nested more than {MAX_META_DEPTH} levels "
                                              "deep; this is not a checkpoint's metadata")
    try:
        meta = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise FileFormatError(path, "meta.json", f"not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise deep from None
    if _json_depth(meta) > MAX_META_DEPTH:
        raise deep
    if not isinstance(meta, dict):
        raise FileFormatError(path, "meta.json", "must be a JSON object; this file is not a "
                                                 "Backprop Studio checkpoint")
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise FileFormatError(path, "meta.json.format", "not a Backprop Studio checkpoint")
    version = meta.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise FileFormatError(path, "meta.json.version", f"must be an integer; got {version!r}")
    if version > CHECKPOINT_VERSION:
        raise FileFormatError(path, "meta.json.version",
                              f"written by a newer version ({version})")
    if version >= 2 and "augment" not in meta:
        raise FileFormatError(path, "meta.json.augment", "missing (a version 2 checkpoint "
                                                         "records its augmentation)")
    if "augment" in meta and not (meta["augment"] is None or isinstance(meta["augment"], dict)):
        raise FileFormatError(path, "meta.json.augment", "must be null or a JSON object; got "
                                                         f"{meta['augment']!r:.40}")
    for key in ("epoch", "iteration", "executor_iteration", "seed", "batch_size"):
        if key in meta or key == "epoch":
            v = meta.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise FileFormatError(path, f"meta.json.{key}",
                                      f"must be a whole number ≥ 0; got {v!r}")
    _check_meta_sections(meta, path)
    nodes = meta.get("nodes")
    if not isinstance(nodes, dict) or not all(
            isinstance(v, list) and len(v) == 2 and all(isinstance(s, str) for s in v)
            for v in nodes.values()):
        raise FileFormatError(path, "meta.json.nodes", "missing or not a map of node id to "
                                                       "[name, op]")
    return meta


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_meta_sections(meta: dict, path):
    """The structure of the sections a resume reads (history, early stopping, optimizer,
    schedule), so that no later step trips over a value of the wrong type."""
    history = meta.get("history", [])
    if not isinstance(history, list):
        raise FileFormatError(path, "meta.json.history", "must be a list of epoch records")
    for i, h in enumerate(history):
        if not isinstance(h, dict) or not all(v is None or _is_number(v) for v in h.values()):
            raise FileFormatError(path, f"meta.json.history[{i}]", "must be an object of "
                                                                  "numbers (or null)")
    early = meta.get("early_stopping")
    if early is not None:
        where = "meta.json.early_stopping"
        if not isinstance(early, dict):
            raise FileFormatError(path, where, "must be a JSON object")
        if not isinstance(early.get("monitor"), str):
            raise FileFormatError(path, where + ".monitor", "must be a name")
        for key, ok in (("best", lambda v: v is None or _is_number(v)),
                        ("best_epoch", lambda v: v is None or (isinstance(v, int)
                                                               and not isinstance(v, bool))),
                        ("wait", lambda v: isinstance(v, int) and not isinstance(v, bool)
                         and v >= 0)):
            if key in early and not ok(early[key]):
                raise FileFormatError(path, f"{where}.{key}", f"has the wrong type or value: "
                                                              f"{early[key]!r:.40}")
    opt = meta.get("optimizer")
    if opt is not None and (not isinstance(opt, dict) or not isinstance(opt.get("name"), str)):
        raise FileFormatError(path, "meta.json.optimizer", "must be an object with a 'name'")
    sched = meta.get("schedule")
    if sched is not None and (not isinstance(sched, dict)
                              or not isinstance(sched.get("config"), dict)
                              or not isinstance(sched.get("state", {}), dict)):
        raise FileFormatError(path, "meta.json.schedule", "must be an object {config, state}")


def _expected_value_shape(node) -> tuple:
    # the shape Graph.initialize gives a parameter node (unknown dimensions become 1)
    return tuple(d or 1 for d in node.params.get("shape", ()))


def check_graph_arrays(graph: Graph, arrays: dict, meta: dict, path=None) -> dict:
    """Check checkpoint arrays against ``graph`` without changing it.

    Returns ``{node_id: [(kind, name, array), …]}`` ready to apply. Every
    array must belong to a node of the same op with the shape the graph gives
    it, and every trainable tensor of the graph must be in the checkpoint;
    anything else is a :class:`FileFormatError` naming the array.
    """
    saved_nodes = meta.get("nodes", {})
    report = graph.infer_shapes()
    dtype = np.dtype(graph.dtype)
    plan: dict = {}
    for key in sorted(arrays):
        v = arrays[key]
        kind, _, rest = key.partition("/")
        if kind not in ("value", "weights", "state"):
            continue
        nid, _, name = rest.partition("/")
        saved = saved_nodes.get(nid)
        if saved is None:
            raise FileFormatError(path, key, f"node '{nid}' is not listed in meta.json.nodes")
        if nid not in graph.nodes:
            raise FileFormatError(path, key, f"node '{saved[0]}' ({saved[1]}) of the "
                                             "checkpoint is not in this graph; the checkpoint "
                                             "was trained on another graph")
        node = graph.nodes[nid]
        if node.op_id != saved[1]:
            raise FileFormatError(path, key, f"node '{saved[0]}' is a {saved[1]} in the "
                                             f"checkpoint but '{node.name}' is a {node.op_id} "
                                             "here; the checkpoint was trained on another "
                                             "graph")
        if v.dtype.kind not in "fiu":
            raise FileFormatError(path, key, f"holds {v.dtype} data, not numbers")
        if kind == "value":
            if node.op_id != "parameter":
                raise FileFormatError(path, key, f"node '{node.name}' ({node.op_id}) holds no "
                                                 "trained value")
            want = _expected_value_shape(node)
        else:
            # a weight has its own spec; a state buffer has the shape of the weight it is like
            op_cls = type(node.op)
            if kind == "weights":
                like = name if name in op_cls.weights else None
                missing = f"has no weight '{name}'"
            else:
                like = op_cls.state_like.get(name)
                missing = f"keeps no state '{name}'"
            if like is None:
                raise FileFormatError(path, key, f"'{node.name}' ({node.op_id}) {missing}")
            spec = (report.weights.get(nid) or {}).get(like)
            if spec is None:
                why = report.errors.get(nid, "its input shapes are unknown")
                what = "weight" if kind == "weights" else "state"
                raise FileFormatError(path, key, f"cannot check {what} '{name}' of "
                                                 f"'{node.name}': {why}")
            want = tuple(spec.shape)
        if tuple(v.shape) != want:
            what = {"value": "value", "weights": f"weight '{name}'", "state": f"state '{name}'"}
            raise FileFormatError(path, key, f"{what[kind]} of '{node.name}' has shape {want} "
                                             f"in this graph but {tuple(v.shape)} in the "
                                             "checkpoint; it was trained on another graph")
        if v.dtype.kind == "f" and not np.all(np.isfinite(v)):
            raise FileFormatError(path, key, "holds NaN or Inf; the checkpoint was saved from "
                                             "a diverged run")
        if kind != "state" or v.dtype.kind == "f":
            v = v.astype(dtype)
        plan.setdefault(nid, []).append((kind, name, v))
    for node, w in graph.trainable():
        key = f"value/{node.id}" if w is None else f"weights/{node.id}/{w}"
        if key not in arrays:
            what = "value" if w is None else f"weight '{w}'"
            raise FileFormatError(path, key, f"missing: the checkpoint has no {what} for "
                                             f"'{node.name}' ({node.op_id}); it was trained on "
                                             "another graph")
    return plan


def apply_graph_arrays(graph: Graph, arrays: dict, meta: dict, path=None):
    """Copy checkpoint arrays into ``graph``; all are checked before any is applied.

    A mismatch (node, op, weight name, shape, missing tensor) is a
    :class:`FileFormatError` and leaves the graph untouched.
    """
    plan = check_graph_arrays(graph, arrays, meta, path)
    for nid, items in plan.items():
        node = graph.nodes[nid]
        for kind, name, v in items:
            if kind == "value":
                node.value = v
            elif kind == "weights":
                node.weights[name] = v
            else:
                node.state[name] = v
        graph.node_changed.emit(node)


def load_weights(graph: Graph, path) -> dict:
    """Put a checkpoint's weights and layer state into ``graph``; returns its metadata."""
    meta, arrays = read_checkpoint(path)
    apply_graph_arrays(graph, arrays, meta, path)
    return meta
