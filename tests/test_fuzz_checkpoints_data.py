"""Fuzzing checkpoints and data folders through the real loaders (issue 10).

Valid inputs (checkpoints of a tiny training run, a tiny IDX data folder) are
mutated — truncated, bytes flipped, headers rewritten, huge dimensions, wrong
dtypes, NaN, extra or missing members, metadata of the wrong type, deep
nesting, missing keys — and fed to ``evaluate``'s checkpoint path, to
``train --resume`` and to the MNIST/Fashion-MNIST folder loader. Each input
must either work or raise a :class:`~core.errors.StudioError` that names the
file; never another exception, never a hang.

In the test suite a few hundred derandomized examples run. For a big run::

    python tests/test_fuzz_checkpoints_data.py --examples 2000

prints, per target, the inputs tried, how many worked, clean errors,
tracebacks and hangs (and the first tracebacks found).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import struct
import sys
import tempfile
import traceback
import warnings
import zipfile
from collections import Counter
from functools import cache
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from core.data.mnist import ENV_VAR, FILE_NAMES, PARTS, DatasetSpec, load_mnist  # noqa: E402
from core.errors import NonFiniteError, StudioError  # noqa: E402

SECONDS_PER_INPUT = 20  # far above the slowest valid input (a resumed epoch, ~0.2 s)
SAMPLE_ARGS = ("logistic_regression_mnist", "--sample", "--limit", "64", "--val-split", "0",
               "--batch-size", "32")
XOR_ARGS = ("xor_mlp", "--batch-size", "4")


class Input(bytes):
    """Bytes of a fuzzed input that show as their recipe (hypothesis prints failing inputs)."""

    def __new__(cls, data: bytes, recipe: str):
        obj = super().__new__(cls, data)
        obj.recipe = recipe
        return obj

    def __repr__(self):
        return f"<{len(self)} bytes: {self.recipe}>"


class Hang(Exception):
    """An input took longer than :data:`SECONDS_PER_INPUT`."""


def _alarm(signum, frame):
    raise Hang()


def _run_cli(argv):
    """Run a subcommand as ``backprop-studio`` would, but let any exception through."""
    from app.cli import build_parser  # noqa: PLC0415

    args = build_parser().parse_args([str(a) for a in argv])
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return args.func(args)


@contextlib.contextmanager
def _isolated_data_env():
    """No data folder from the environment and an empty cache: only the input is read."""
    saved = {k: os.environ.get(k) for k in (ENV_VAR, "XDG_CACHE_HOME")}
    os.environ.pop(ENV_VAR, None)
    os.environ["XDG_CACHE_HOME"] = str(workdir() / "cache")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def outcome(fn, must_name=None) -> tuple:
    """``(kind, detail)``: kind is ok, clean, unnamed (clean but naming neither ``must_name``
    nor where data was looked for), traceback or hang."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, SECONDS_PER_INPUT)
    try:
        with _isolated_data_env(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns of the duplicates made on purpose
            fn()
    except Hang:
        return "hang", ""
    except StudioError as exc:
        msg = str(exc)
        # a finite but huge weight is found where it overflows: the error names that node
        named = isinstance(exc, NonFiniteError) or "files not found (looked in" in msg
        if must_name is not None and str(must_name) not in msg and not named:
            return "unnamed", msg
        return "clean", msg
    except Exception:  # noqa: BLE001 - any other exception is what the fuzzer looks for
        return "traceback", traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return "ok", ""


# ------------------------------------------------------------ valid seeds
@cache
def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="fuzz-ckpt-"))


@cache
def seed_checkpoint(which: str) -> bytes:
    """The bytes of a checkpoint made by a tiny training run (``sample`` or ``xor``)."""
    path = workdir() / f"seed-{which}.npz"
    base = SAMPLE_ARGS if which == "sample" else XOR_ARGS
    _run_cli(("train", *base, "--epochs", "1", "--quiet", "--out", path))
    return path.read_bytes()


def _members(data: bytes) -> dict:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: np.array(z[k]) for k in z.files}


def _npz(arrays: dict, raw: dict | None = None) -> bytes:
    """An .npz of ``arrays`` plus members given as raw bytes."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    if raw:
        with zipfile.ZipFile(buf, "a") as zf, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a duplicate member is one of the mutations
            for name, payload in raw.items():
                zf.writestr(name, payload)
    return buf.getvalue()


def _npy_header(shape, descr) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                               "shape": tuple(shape)})
    return buf.getvalue()


# ------------------------------------------------------------ strategies
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                      st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                      st.sampled_from([0, 1, -1, 1e-320, 1e308, "", "mnist", "sample",
                                       "files", "graph", "sgd", "adam", "constant"]))
json_value = st.recursive(json_leaf, lambda kids: st.one_of(
    st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=6), kids, max_size=3)),
    max_leaves=6)


def _paths(value, prefix=()):
    """Every path into a JSON value (keys and list indices)."""
    out = [prefix]
    stack = [(value, prefix)]
    while stack:
        v, p = stack.pop()
        items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) \
            else ()
        for k, c in items:
            out.append(p + (k,))
            stack.append((c, p + (k,)))
    return out


def _mutate_meta(draw, meta):
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(meta) if p]
        if not paths:
            break
        path = draw(st.sampled_from(sorted(paths, key=repr)))
        parent = meta
        for k in path[:-1]:
            parent = parent[k]
        op = draw(st.sampled_from(["delete", "replace", "nest", "retype"]))
        key = path[-1]
        if op == "delete":
            parent.pop(key) if isinstance(parent, dict) else parent.pop(key)
        elif op == "replace":
            parent[key] = draw(json_value)
        elif op == "nest":
            depth = draw(st.sampled_from([65, 1000, 100_000]))
            parent[key] = ("nest", depth)  # written as text below: json cannot hold it
        else:
            v = parent[key]
            parent[key] = [v] if not isinstance(v, list) else {"v": v}
    text = json.dumps(meta, default=str)
    # splice in deep nesting as raw text (json.dumps would recurse through it)
    for depth in (65, 1000, 100_000):
        text = text.replace(f'["nest", {depth}]', "[" * depth + "]" * depth)
    return text


@st.composite
def checkpoint_bytes(draw, which: str):
    """A mutated checkpoint: ``(bytes, description)``."""
    data, description = draw(_checkpoint_raw(which))
    return Input(data, description), description


@st.composite
def _checkpoint_raw(draw, which: str):
    data = seed_checkpoint(which)
    kind = draw(st.sampled_from(["truncate", "flip", "meta", "meta", "meta", "array",
                                 "members", "meta_text"]))
    if kind == "truncate":
        n = draw(st.integers(0, len(data) - 1))
        return data[:n], f"truncate {n}"
    if kind == "flip":
        out = bytearray(data)
        spots = draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8))
        for i in spots:
            out[i] ^= draw(st.integers(1, 255))
        return bytes(out), f"flip {spots}"
    arrays = _members(data)
    names = sorted(k for k in arrays if k != "meta.json")
    raw = {}
    if kind in ("meta", "meta_text"):
        if kind == "meta":
            text = _mutate_meta(draw, json.loads(str(arrays["meta.json"])))
        else:
            text = draw(st.one_of(st.text(max_size=40), st.just("[" * 100_000),
                                  st.just('{"format": "backprop-studio-checkpoint"}')))
        arrays["meta.json"] = np.array(text)
        return _npz(arrays), f"meta {text[:120]!r}"
    if kind == "array":
        name = draw(st.sampled_from(names))
        v = arrays[name]
        change = draw(st.sampled_from(["nan", "dtype", "shape", "scalar", "huge", "descr",
                                       "text"]))
        if change == "nan":
            arrays[name] = np.full(v.shape, draw(st.sampled_from([np.nan, np.inf, 1e38])),
                                   v.dtype if v.dtype.kind == "f" else np.float32)
        elif change == "dtype":
            dt = draw(st.sampled_from(["int64", "bool", "complex64", "float16", "uint8",
                                       ">f8"]))
            arrays[name] = v.astype(dt)
        elif change == "shape":
            shape = draw(st.lists(st.integers(0, 5), max_size=4))
            arrays[name] = np.zeros(shape, v.dtype)
        elif change == "scalar":
            arrays[name] = np.array(1.5)
        elif change == "text":
            arrays[name] = np.array(["a", "b"])
        else:
            del arrays[name]
            shape = (draw(st.sampled_from([10**12, 2**62, 2**31])),) if change == "huge" \
                else v.shape
            descr = "<f4" if change == "huge" else draw(st.sampled_from(
                ["|O", "<U0", "|V8", "<M8[s]", "<c16", ">i8", "|S3"]))
            raw[name + ".npy"] = _npy_header(shape, descr) + b"\0" * 64
        return _npz(arrays, raw), f"array {name} {change}"
    change = draw(st.sampled_from(["drop", "extra", "duplicate"]))
    if change == "drop":
        name = draw(st.sampled_from(names + ["meta.json"]))
        del arrays[name]
        return _npz(arrays), f"drop {name}"
    if change == "extra":
        name = draw(st.sampled_from(["weights/zz/W", "value/zz", "state/zz/running_mean",
                                     "optim/m/zz/W", "optim/bogus/zz/-", "junk"]))
        if names and draw(st.booleans()):
            name = names[0].rsplit("/", 1)[0] + "/extra"
        arrays[name] = np.zeros(draw(st.lists(st.integers(0, 4), max_size=3)), np.float32)
        return _npz(arrays), f"extra {name}"
    name = draw(st.sampled_from(names))
    raw[name + ".npy"] = io.BytesIO()
    np.save(raw[name + ".npy"], arrays[name] * 2)
    raw[name + ".npy"] = raw[name + ".npy"].getvalue()
    return _npz(arrays, raw), f"duplicate {name}"


# ------------------------------------------------------------ data folders
TINY_COUNTS = {"train": 6, "test": 4}


def _idx(arr: np.ndarray, code: int = 0x08) -> bytes:
    big = arr.astype(arr.dtype.newbyteorder(">")) if arr.dtype.itemsize > 1 else arr
    return bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) \
        + big.tobytes()


@cache
def seed_folder_files() -> dict:
    rng = np.random.default_rng(0)
    return {"train_images": _idx(rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)),
            "train_labels": _idx(np.array([0, 1, 2, 3, 4, 5], np.uint8)),
            "test_images": _idx(rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)),
            "test_labels": _idx(np.array([9, 8, 7, 6], np.uint8))}


def tiny_spec(with_sums: bool) -> DatasetSpec:
    raw = seed_folder_files()
    gz = {p: gzip.compress(b, mtime=0) for p, b in raw.items()}

    def sums(d):
        return {p: hashlib.md5(b).hexdigest() for p, b in d.items()}

    return DatasetSpec(key="tiny", title="Tiny", raw_md5=sums(raw) if with_sums else {},
                       gz_md5=sums(gz), counts=TINY_COUNTS, mirrors=(), subdirs=("",),
                       classes=tuple(str(i) for i in range(10)))


@st.composite
def folder_files(draw):
    """``{part: bytes or None (missing) or "dir"}``, ``gzip flags`` and a description."""
    files = dict(seed_folder_files())
    gz = {p: draw(st.booleans()) for p in PARTS}
    what = []
    for part in draw(st.lists(st.sampled_from(PARTS), min_size=1, max_size=2, unique=True)):
        b = files[part]
        change = draw(st.sampled_from(["truncate", "flip_header", "flip", "type", "ndim",
                                       "dims", "append", "random", "values", "missing",
                                       "dir", "gz_damage"]))
        what.append(f"{part} {change}")
        if change == "truncate":
            b = b[:draw(st.integers(0, len(b) - 1))]
        elif change in ("flip_header", "flip"):
            top = min(len(b), 16) if change == "flip_header" else len(b)
            out = bytearray(b)
            for i in draw(st.lists(st.integers(0, top - 1), min_size=1, max_size=4)):
                out[i] ^= draw(st.integers(1, 255))
            b = bytes(out)
        elif change == "type":
            b = b[:2] + bytes([draw(st.integers(0, 255))]) + b[3:]
        elif change == "ndim":
            b = b[:3] + bytes([draw(st.integers(0, 255))]) + b[4:]
        elif change == "dims":
            ndim = b[3]
            dims = draw(st.lists(st.one_of(st.integers(0, 40), st.integers(0, 2**32 - 1)),
                                 min_size=ndim, max_size=ndim))
            b = b[:4] + struct.pack(f">{ndim}I", *dims) + b[4 + 4 * ndim:]
        elif change == "append":
            b = b + draw(st.binary(min_size=1, max_size=64))
        elif change == "random":
            b = draw(st.binary(max_size=64))
        elif change == "values":
            n = TINY_COUNTS["train" if part.startswith("train") else "test"]
            shape = (n, 28, 28) if part.endswith("images") else (n,)
            fill = draw(st.sampled_from([np.nan, 1e30, -1.0, 5.5, 300.0]))
            code, dt = draw(st.sampled_from([(0x0D, np.float32), (0x0E, np.float64),
                                             (0x0C, np.int32), (0x09, np.int8),
                                             (0x0B, np.int16)]))
            with np.errstate(invalid="ignore", over="ignore"):
                b = _idx(np.full(shape, fill).astype(dt), code)
        elif change == "missing":
            b = None
        elif change == "dir":
            b = "dir"
        else:
            gz[part] = True
            b = gzip.compress(b, mtime=0)
            b = b[:draw(st.integers(0, len(b) - 1))]
            b = b"\x1f\x8b" + b[2:] if len(b) >= 2 else b
            files[part] = ("gz", b)
            continue
        files[part] = b
    for part, b in files.items():
        if isinstance(b, bytes):
            files[part] = Input(b, part)
        elif isinstance(b, tuple):
            files[part] = ("gz", Input(b[1], part + " gzip"))
    return files, gz, "; ".join(what)


def write_folder(folder: Path, files: dict, gz: dict):
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for part, b in files.items():
        name = FILE_NAMES[part]
        if b is None:
            continue
        if b == "dir":
            (folder / name).mkdir()
            continue
        if isinstance(b, tuple):  # already gzip bytes
            (folder / (name + ".gz")).write_bytes(b[1])
        elif gz[part]:
            (folder / (name + ".gz")).write_bytes(gzip.compress(b, mtime=0))
        else:
            (folder / name).write_bytes(b)


# ------------------------------------------------------------ targets
def try_evaluate(which: str, data: bytes):
    path = workdir() / f"evaluate-{which}.npz"
    path.write_bytes(data)
    graph = SAMPLE_ARGS[0] if which == "sample" else XOR_ARGS[0]
    return outcome(lambda: _run_cli(("evaluate", graph, "--checkpoint", path)), path)


def try_resume(which: str, data: bytes):
    path = workdir() / f"resume-{which}.npz"
    path.write_bytes(data)
    graph = SAMPLE_ARGS[0] if which == "sample" else XOR_ARGS[0]
    return outcome(lambda: _run_cli(("train", graph, "--epochs", "2", "--quiet",
                                     "--resume", path)), path)


def try_folder(files, gz, with_sums: bool):
    folder = workdir() / "folder"
    write_folder(folder, files, gz)
    return outcome(lambda: load_mnist(data_dir=folder, kind=tiny_spec(with_sums)), folder)


def _explain(result, description):
    kind, detail = result
    return f"{kind} for input {description}:\n{detail}"


CI = settings(max_examples=60, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))


@CI
@given(st.sampled_from(["sample", "xor"]).flatmap(
    lambda w: st.tuples(st.just(w), checkpoint_bytes(w))))
def test_mutated_checkpoints_evaluate_or_fail_clearly(case):
    which, (data, description) = case
    result = try_evaluate(which, data)
    assert result[0] in ("ok", "clean"), _explain(result, description)


@CI
@given(st.sampled_from(["sample", "xor"]).flatmap(
    lambda w: st.tuples(st.just(w), checkpoint_bytes(w))))
def test_mutated_checkpoints_resume_or_fail_clearly(case):
    which, (data, description) = case
    result = try_resume(which, data)
    assert result[0] in ("ok", "clean"), _explain(result, description)


@settings(CI, max_examples=120)
@given(folder_files(), st.booleans())
def test_mutated_data_folders_load_or_fail_clearly(case, with_sums):
    files, gz, description = case
    result = try_folder(files, gz, with_sums)
    assert result[0] in ("ok", "clean"), _explain(result, description)


def test_seeds_are_valid():
    """The unmutated inputs load: the fuzzer starts from inputs that work."""
    for which in ("sample", "xor"):
        assert try_evaluate(which, seed_checkpoint(which))[0] == "ok"
        assert try_resume(which, seed_checkpoint(which))[0] == "ok"
    assert try_folder(dict(seed_folder_files()), dict.fromkeys(PARTS, True), True)[0] == "ok"
    assert try_folder(dict(seed_folder_files()), dict.fromkeys(PARTS, False), False)[0] == "ok"


# ------------------------------------------------------------ big run
def big_run(examples: int, seed: int | None = None) -> int:
    """Run each target ``examples`` times (random, not derandomized) and print the figures."""
    big = settings(max_examples=examples, derandomize=seed is not None, deadline=None,
                   database=None, suppress_health_check=list(HealthCheck))
    tallies, samples = {}, {}

    def record(target, result, description):
        tallies.setdefault(target, Counter())[result[0]] += 1
        if result[0] not in ("ok", "clean") and len(samples.setdefault(target, [])) < 3:
            samples[target].append(_explain(result, description))

    checkpoints = st.sampled_from(["sample", "xor"]).flatmap(
        lambda w: st.tuples(st.just(w), checkpoint_bytes(w)))

    @big
    @given(checkpoints)
    def evaluate(case):
        which, (data, description) = case
        record("evaluate --checkpoint", try_evaluate(which, data), description)

    @big
    @given(checkpoints)
    def resume(case):
        which, (data, description) = case
        record("train --resume", try_resume(which, data), description)

    @big
    @given(folder_files(), st.booleans())
    def folder(case, with_sums):
        files, gz, description = case
        record("data folder", try_folder(files, gz, with_sums), description)

    for fn in (evaluate, resume, folder):
        fn()
    print(f"{'target':<24}{'tried':>7}{'ok':>7}{'clean':>7}{'unnamed':>9}{'traceback':>11}"
          f"{'hang':>6}")
    bad = 0
    for target, c in tallies.items():
        print(f"{target:<24}{sum(c.values()):>7}{c['ok']:>7}{c['clean']:>7}{c['unnamed']:>9}"
              f"{c['traceback']:>11}{c['hang']:>6}")
        bad += c["unnamed"] + c["traceback"] + c["hang"]
    for target, found in samples.items():
        for text in found:
            print(f"\n--- {target}: {text}")
    return 1 if bad else 0


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--examples", type=int, default=1000, help="inputs per target")
    p.add_argument("--seed", type=int, help="derandomize (repeatable run)")
    a = p.parse_args()
    sys.exit(big_run(a.examples, a.seed))
