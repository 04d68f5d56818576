"""Loading and evaluating long graph files: time and peak memory.

    python benchmarks/bench_load.py [--eval-nodes 100000] [--load-nodes 1000001]

Writes two chain files (an input followed by ``tanh`` nodes, each with a layout
entry) to a temporary folder, then in a fresh process each: ``backprop-studio
eval`` on the first, ``load_graph`` on the second. Prints wall time and the
child's peak resident memory (``ru_maxrss``). Loading and evaluating should
grow linearly with the node count; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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


def measure(code: list) -> tuple:
    """Run ``code`` in a fresh Python; (seconds, peak RSS in MiB, return code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *code], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
    # ru_maxrss of children is the largest child so far: run the bigger case last
    return seconds, max(peak, before) / 1024, proc.returncode


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--eval-nodes", type=int, default=100_000)
    p.add_argument("--load-nodes", type=int, default=1_000_001)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        chain = Path(tmp) / "chain.json"
        big = Path(tmp) / "big.json"
        write_chain(chain, args.eval_nodes)
        write_chain(big, args.load_nodes)
        s, mib, rc = measure(["-m", "app", "eval", str(chain)])
        print(f"eval {args.eval_nodes}-node chain: {s:.2f} s, peak RSS {mib:.0f} MiB "
              f"(exit {rc})")
        s, mib, rc = measure(["-c", "import sys; from core.serialize import load_graph; "
                                    "load_graph(sys.argv[1])", str(big)])
        print(f"load {args.load_nodes}-node file: {s:.2f} s, peak RSS {mib:.0f} MiB "
              f"(exit {rc}; file {big.stat().st_size / 2**20:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
