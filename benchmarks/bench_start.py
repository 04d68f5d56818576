"""Start-up time: from launching ``backprop-studio`` to the first painted canvas.

Starts ``python -m app --startup-time`` (the window on the default preset,
LeNet-5) in a fresh process N times, offscreen, each with empty settings and
recovery folders, and prints the median and the worst of two figures:

* ``launch→paint``: from this script's launch of the process to the moment the
  canvas had finished its first paint (the interpreter's own start included);
* ``process→paint``: the same as the process itself measures it from its
  creation (see :mod:`app.startup_time`).

Python's compiled bytecode is cached between the starts, as an installed app
has it (in a temporary ``PYTHONPYCACHEPREFIX``, so no tree gets ``__pycache__``
folders), even where ``PYTHONDONTWRITEBYTECODE`` is set; ``--no-pyc`` compiles
the project's modules at every start instead.

With ``--compare TREE`` it alternates runs of this tree and of another checkout
(for example ``git worktree add /tmp/base main``), so both see the same load.
The load line (:class:`benchmarks.machine.LoadCheck`) says whether the machine
was quiet.

Run from the repository root::

    python benchmarks/bench_start.py                 # 10 starts
    python benchmarks/bench_start.py -n 20 --compare /tmp/base
    python benchmarks/bench_start.py --importtime    # the slowest imports of one start
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import LoadCheck  # noqa: E402


def child_env(tree: Path, home: str, pycache: str | None) -> dict:
    """The environment of one start: offscreen, fresh settings, bytecode in ``pycache``."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(tree),
               XDG_CONFIG_HOME=str(Path(home, "config")), XDG_DATA_HOME=str(Path(home, "data")))
    if pycache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = pycache
    return env


def start_once(tree: Path, pycache: str | None) -> dict:
    """One start of the app in ``tree``: its figures in seconds (and any error text)."""
    with tempfile.TemporaryDirectory(prefix="bps-start-") as tmp:
        env = child_env(tree, tmp, pycache)
        t0 = time.time()
        proc = subprocess.run([sys.executable, "-m", "app", "--startup-time"], cwd=tree,
                              env=env, capture_output=True, text=True, timeout=120)
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            got = json.loads(line)
            return {"launch": got["wall_time"] - t0, "process": got["first_paint_s"],
                    "not_loaded": got.get("not_loaded"), "stderr": proc.stderr}
    raise RuntimeError(f"{tree}: no start-up time printed (exit code {proc.returncode})\n"
                       f"{proc.stdout}\n{proc.stderr}")


def summary(name: str, runs: list) -> str:
    launch = [r["launch"] * 1e3 for r in runs]
    process = [r["process"] * 1e3 for r in runs]
    waited = runs[-1]["not_loaded"]
    waited = "unknown" if waited is None else (", ".join(waited) or "none")
    return (f"{name:<6} launch→paint median {statistics.median(launch):5.0f} ms, "
            f"worst {max(launch):5.0f} ms   process→paint median "
            f"{statistics.median(process):5.0f} ms, worst {max(process):5.0f} ms   "
            f"({len(runs)} starts; not imported by the first paint: {waited})")


def importtime(tree: Path, top: int, pycache: str | None):
    """The ``top`` slowest imports (cumulative) of one start, from ``python -X importtime``
    (until the process quit: imports made after the first paint are listed too)."""
    if pycache is not None:
        start_once(tree, pycache)  # compile first, as for the timed starts
    with tempfile.TemporaryDirectory(prefix="bps-start-") as tmp:
        env = child_env(tree, tmp, pycache)
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "app",
                               "--startup-time"], cwd=tree, env=env, capture_output=True,
                              text=True, timeout=120)
    rows = []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cum, name = line[len("import time:"):].split("|")
            rows.append((int(cum), name.rstrip()))
    print(f"slowest imports (cumulative, {tree}):")
    for cum, name in sorted(rows, reverse=True)[:top]:
        print(f"  {cum / 1e3:7.1f} ms  {name}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", "--starts", type=int, default=10, help="starts per tree (default 10)")
    p.add_argument("--compare", type=Path, help="another checkout, started in alternation")
    p.add_argument("--importtime", action="store_true", help="list the slowest imports")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--no-pyc", action="store_true",
                   help="no bytecode cache: compile the project's modules at every start")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bps-pyc-") as cache_root:
        return measure(args, cache_root)


def measure(args, cache_root: str) -> int:
    trees = {"this": ROOT}
    if args.compare is not None:
        trees["other"] = args.compare.resolve()
    caches = {name: None if args.no_pyc else str(Path(cache_root, name)) for name in trees}
    if args.importtime:
        importtime(ROOT, args.top, caches["this"])
        return 0
    runs = {name: [] for name in trees}
    for name, tree in trees.items():  # a first start compiles and fills the disk cache
        start_once(tree, caches[name])
    with LoadCheck() as load:
        for i in range(args.starts):
            # the trees swap order every round: neither always starts right after the other
            for name, tree in (list(trees.items()) if i % 2 == 0 else list(trees.items())[::-1]):
                runs[name].append(start_once(tree, caches[name]))
    print("bytecode: " + ("compiled at every start (--no-pyc)" if args.no_pyc
                          else "cached between starts, as installed"))
    for name, tree in trees.items():
        print(summary(name, runs[name]) + f"   {tree}")
    if "other" in runs:
        a = statistics.median(r["launch"] for r in runs["this"])
        b = statistics.median(r["launch"] for r in runs["other"])
        print(f"this / other (launch→paint medians): {a / b:.2f}")
    print(load.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
