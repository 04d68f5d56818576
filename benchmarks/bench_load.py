"""Loading and evaluating long graph files: time and peak memory.

    python benchmarks/bench_load.py [--eval-nodes 100000] [--load-nodes 1000001]

Writes two chain files (an input followed by ``tanh`` nodes, each with a layout
entry) to a temporary folder, then in a fresh process each: ``backprop-studio
eval`` on the first, ``load_graph`` on the second. Prints wall time and the
child's peak resident memory (``ru_maxrss``, as ``/usr/bin/time -v`` reports it).
Loading and evaluating should grow linearly with the node count; asserts nothing.

Prints the load average before the run, one line per child (wall time tagged
``[UNRELIABLE: machine busy]`` unless the machine was quiet, peak RSS, exit
code), then the load line (machine.LoadCheck: load average before/after, the
CPU share other processes took). Peak memory does not depend on the load.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from benchmarks.machine import LoadCheck  # noqa: E402


def write_chain(path: Path, n: int):
    """A file of ``n`` nodes: ``x -> tanh -> tanh -> …``, loss on the last one."""
    nodes = [{"id": "n1", "name": "x", "op": "input", "params": {"shape": []}, "value": 0.5}]
    nodes += [{"id": f"n{i}", "name": f"t{i}", "op": "tanh", "params": {}}
              for i in range(2, n + 1)]
    edges = [{"from": [f"n{i - 1}", "out"], "to": [f"n{i}", "x"]} for i in range(2, n + 1)]
    layout = {f"n{i}": [float(i), 0.0] for i in range(1, n + 1)}
    data = {"format_version": 1, "name": f"chain {n}", "loss": f"n{n}", "nodes": nodes,
            "edges": edges, "layout": layout}
    path.write_text(json.dumps(data))


def measure(code: str, *args) -> tuple:
    """Run ``code`` in a fresh Python; (seconds, its peak RSS in MiB, return code)."""
    code += "\nimport resource, sys\nprint('MAXRSS', " \
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, text=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - t0
    lines = proc.stderr.splitlines()
    peak = next((int(ln.split()[1]) for ln in lines if ln.startswith("MAXRSS ")), 0)
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
    return seconds, peak / 1024, proc.returncode


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--write"]:
        write_chain(Path(argv[1]), int(argv[2]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--eval-nodes", type=int, default=100_000)
    p.add_argument("--load-nodes", type=int, default=1_000_001)
    args = p.parse_args(argv)
    with LoadCheck() as load:  # first: its load average must not count our own work
        print(load.before(), flush=True)
        lines = _run(args)
    for timed, rest in lines:
        print(timed + load.mark() + rest)
    print(load.report())
    return 0


def _run(args) -> list:
    """Write both files, run both children; their result lines, cut after the time."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        chain = Path(tmp) / "chain.json"
        big = Path(tmp) / "big.json"
        # written by a child: a forked child's peak RSS starts at its parent's size
        for path, n in ((chain, args.eval_nodes), (big, args.load_nodes)):
            subprocess.run([sys.executable, __file__, "--write", str(path), str(n)], check=True)
        s, mib, rc = measure("import sys; from app.cli import main; main(['eval', sys.argv[1]])",
                             str(chain))
        out.append((f"eval {args.eval_nodes}-node chain: {s:.2f} s",
                    f", peak RSS {mib:.0f} MiB (exit {rc})"))
        s, mib, rc = measure("import sys; from core.serialize import load_graph; "
                             "load_graph(sys.argv[1])", str(big))
        out.append((f"load {args.load_nodes}-node file: {s:.2f} s",
                    f", peak RSS {mib:.0f} MiB (exit {rc}; file "
                    f"{big.stat().st_size / 2**20:.0f} MiB)"))
    return out


if __name__ == "__main__":
    sys.exit(main())
