"""A fuzzer over graph files: mutated example graphs through load, shapes and ``eval``.

Every input must either load (and then evaluate, or fail with one clear
message) or be refused with :class:`core.errors.StudioError`; any other
exception is a bug, and so is an input that takes longer than the time limit.

    python -m tests.fuzz_graph_files --examples 5000 [--seed 0] [--timeout 20]

prints how many inputs were tried, loaded, refused cleanly, raised a traceback
or hung, and the first failures. ``tests/test_fuzz_graph_files.py`` runs a few
hundred of the same mutations under hypothesis in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import random
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import core.ops.base as base  # noqa: E402
from app.cli import main as cli_main  # noqa: E402
from core.errors import StudioError  # noqa: E402
from core.ops import REGISTRY  # noqa: E402
from core.serialize import loads  # noqa: E402

# examples small enough to evaluate many times (VGG16 and AlexNet weigh hundreds of MB)
STEMS = ("abc", "xyz", "net_222", "sigmoid_neuron", "perceptron_nand", "xor_mlp",
         "logistic_regression", "logistic_regression_mnist", "mlp_784_30_10", "lenet5",
         "keras_mnist_cnn")
BASES = {stem: json.loads((ROOT / "examples" / f"{stem}.json").read_text("utf-8"))
         for stem in STEMS}
# the fuzzer's tensors stay small: the same check refuses them, without filling the RAM
FUZZ_MEMORY_LIMIT = 256 * 2**20

# text spliced into the file where a marker value was put (JSON cannot hold these as values)
RAW = {"@@neg_overflow@@": "-1e400", "@@overflow@@": "1e999", "@@nan@@": "NaN",
       "@@inf@@": "-Infinity", "@@bigint@@": "9" * 400, "@@surrogate@@": '"\\ud800"',
       "@@lowsurrogate@@": '"a\\udfffb"', "@@deep@@": "[" * 5000 + "]" * 5000,
       "@@deepobj@@": '{"a":' * 3000 + "1" + "}" * 3000}

SCALARS = ["55", "42", "4", "0.5", "", "x" * 300, "B, 1, 28, 28", True, False, None, 0, -1, 1,
           2, 1.5, -0.0, 1e308, -1e308, 5e-324, 2**31, 2**63, -2**63 - 1, 10**30, [], {},
           [True, 3], [1, "2"], [None], [[1, 2], [3]], [1e19, 10], [100000, 100000],
           [2**62, 4], [None, 10**6, 10**6], [0, 3], [-5], {"a": 1}, "\u00b7\U0001F600"]
SCALARS += list(RAW)


def _paths(obj, prefix=()):
    """Every (container, key) pair inside ``obj``."""
    out = []
    todo = [obj]
    while todo:
        cur = todo.pop()
        items = cur.items() if isinstance(cur, dict) else enumerate(cur)
        for k, v in items:
            out.append((cur, k))
            if isinstance(v, (dict, list)):
                todo.append(v)
    return out


def _shape(rng: random.Random):
    pick = rng.random()
    if pick < 0.3:
        return rng.choice([[100000, 100000], [1e19, 10], [10**400], [2**63 - 1, 2],
                           [4096, 4096, 64], [None, 10**7]])
    return [rng.choice([None, 1, 2, 3, 4, 28, 0, -1, 64]) for _ in range(rng.randint(0, 5))]


def _scaled(value, factor):
    if isinstance(value, list):
        return [_scaled(v, factor) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value * factor
    return value


def mutate(data: dict, rng: random.Random) -> str:
    """One to three structural mutations of ``data`` (changed in place), as file text."""
    for _ in range(rng.choice((1, 1, 2, 3))):
        kind = rng.randrange(14)
        nodes = data.get("nodes") if isinstance(data.get("nodes"), list) else []
        edges = data.get("edges") if isinstance(data.get("edges"), list) else []
        node = rng.choice(nodes) if nodes else None
        if kind <= 2:  # any value anywhere becomes something odd
            paths = _paths(data)
            if paths:
                cur, k = rng.choice(paths)
                pool = list(RAW) if rng.random() < 0.3 else SCALARS  # what JSON cannot hold
                cur[k] = copy.deepcopy(rng.choice(pool))
        elif kind == 3:  # a field disappears
            paths = [(c, k) for c, k in _paths(data) if isinstance(c, dict)]
            if paths:
                cur, k = rng.choice(paths)
                del cur[k]
        elif kind == 4 and isinstance(node, dict):  # another op, valid or not
            node["op"] = rng.choice(sorted(REGISTRY) + ["sigmod", "__import__('os')", ""])
        elif kind == 5 and isinstance(node, dict):  # a shape, often huge
            params = node.setdefault("params", {})
            if isinstance(params, dict):
                params["shape"] = _shape(rng)
        elif kind == 6 and nodes:  # duplicated node (same id and name)
            nodes.insert(rng.randrange(len(nodes) + 1), copy.deepcopy(rng.choice(nodes)))
        elif kind == 7 and nodes:  # a new edge, maybe closing a cycle or onto a taken port
            a, b = rng.choice(nodes), rng.choice(nodes)
            if isinstance(a, dict) and isinstance(b, dict):
                ports = ["out", "x", "a", "b", "y", "target", "zz", 0]
                edges.append({"from": [a.get("id"), rng.choice(ports)],
                              "to": [b.get("id"), rng.choice(ports)]})
        elif kind == 8 and edges:  # an edge reversed
            e = rng.choice(edges)
            if isinstance(e, dict) and "from" in e and "to" in e:
                e["from"], e["to"] = e["to"], e["from"]
        elif kind == 9 and isinstance(node, dict):  # a value of another shape or kind
            node["value"] = rng.choice([[[1.0] * 3] * 2, 7, [[1, 2], [3]], "1", [True],
                                        [[0.5] * 784], "@@neg_overflow@@", [1e308, 1e308]])
        elif kind == 10 and isinstance(node, dict):  # a parameter set to a neighbour's name
            params = node.setdefault("params", {})
            if isinstance(params, dict):
                params[rng.choice(["kernel", "units", "p", "axis", "stride", "shape", "fill",
                                   "out_channels", "padding", "role", "init"])] = \
                    copy.deepcopy(rng.choice(SCALARS))
        elif kind == 11:  # layout and loss
            layout = data.setdefault("layout", {})
            if isinstance(layout, dict) and isinstance(node, dict):
                layout[str(node.get("id"))] = [rng.choice(["@@bigint@@", "@@overflow@@",
                                                           *SCALARS]), rng.choice([0, 1.5])]
            data["loss"] = rng.choice([None, "n404", "@@surrogate@@",
                                       node.get("id") if isinstance(node, dict) else None])
        elif kind == 12 and isinstance(node, dict) and isinstance(node.get("params"), dict):
            # a plausible number: the file still loads and the run meets odd sizes
            params = node["params"]
            for key, val in params.items():
                if isinstance(val, int) and not isinstance(val, bool):
                    params[key] = rng.choice([1, 2, 3, val * 2, 0])
                elif isinstance(val, list) and all(isinstance(v, int) for v in val):
                    params[key] = [rng.choice([1, 2, 3, 7]) for _ in val]
        elif kind == 13 and isinstance(node, dict) and "value" in node:
            # huge or tiny but finite numbers: overflow is for the run to report
            node["value"] = _scaled(node["value"], rng.choice([1e300, -1e-300, 0.0, 1e154]))
    text = json.dumps(data, ensure_ascii=True)
    for marker, raw in RAW.items():
        text = text.replace(f'"{marker}"', raw)
    return text


def random_file(rng: random.Random) -> str:
    """A mutated copy of one example, as file text."""
    stem = rng.choice(STEMS)
    return mutate(copy.deepcopy(BASES[stem]), rng)


class Hang(Exception):
    """An input that took longer than the time limit."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`Hang` after ``seconds`` (main thread, POSIX)."""
    if not seconds or not hasattr(signal, "SIGALRM"):
        yield
        return

    def on_alarm(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def check(text: str, folder: str) -> str:
    """Feed one file through load, shape inference and ``eval`` (text and ``--json``).

    Returns ``"refused"`` (at load), ``"evaluated"`` or ``"eval_error"`` (one clear
    line from ``eval``); lets any other exception escape.
    """
    try:
        g = loads(text, "fuzz.json")
    except StudioError:
        return "refused"
    g.infer_shapes()
    g.parameter_count()
    path = os.path.join(folder, "fuzz.json")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    result = "evaluated"
    for extra in ((), ("--json",)):
        out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # strict, like a terminal
        err = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli_main(["eval", path, *extra])
            out.flush()
        if code not in (0, 2):
            raise AssertionError(f"eval exited {code}: {err.getvalue()}")
        if code == 2 and len(err.getvalue().strip().splitlines()) != 1:
            raise AssertionError(f"eval error is not one line: {err.getvalue()!r}")
        if code == 2:
            result = "eval_error"
    return result


@contextlib.contextmanager
def small_memory():
    """The fuzzer's memory limit (see :data:`FUZZ_MEMORY_LIMIT`)."""
    old = base.MEMORY_LIMIT
    base.MEMORY_LIMIT = FUZZ_MEMORY_LIMIT
    try:
        yield
    finally:
        base.MEMORY_LIMIT = old


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Fuzz graph files (see the module docstring).")
    p.add_argument("--examples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=20.0, help="seconds per input")
    args = p.parse_args(argv)
    counts = {"evaluated": 0, "eval_error": 0, "refused": 0, "traceback": 0, "hang": 0}
    failures = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder, small_memory():
        for i in range(args.examples):
            rng = random.Random(args.seed * 1_000_003 + i)
            text = random_file(rng)
            try:
                with time_limit(args.timeout):
                    counts[check(text, folder)] += 1
            except Hang:
                counts["hang"] += 1
                failures.append((i, "hang", text[:300]))
            except Exception:  # noqa: BLE001 - counting them is the point
                counts["traceback"] += 1
                failures.append((i, traceback.format_exc(limit=-3), text[:300]))
    seconds = time.perf_counter() - t0
    loaded = counts["evaluated"] + counts["eval_error"]
    print(f"inputs tried: {args.examples}\nloaded ok: {loaded} (evaluated {counts['evaluated']},"
          f" clean eval error {counts['eval_error']})\nclean errors: "
          f"{counts['refused'] + counts['eval_error']} ({counts['refused']} at load)\n"
          f"tracebacks: {counts['traceback']}\nhangs: {counts['hang']}\n({seconds:.0f} s)")
    for i, what, text in failures[:10]:
        print(f"--- input {i}:\n{what}\n{text}\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
