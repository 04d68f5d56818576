"""Per-step latency of the stepping core (:class:`core.stepping.StepSession`).

Steps LeNet-5 on one digit of the embedded MNIST sample, and VGG-16 on one
random 224×224 image, all forward then all backward, and prints for each the
median, 95th percentile and maximum time of

* ``step``: the session's :meth:`~core.stepping.StepSession.step` alone;
* ``step+view``: the step plus what the view reads after it — every wire's
  value and gradient summary, every node's state, and at backward steps the
  chain rule.

Then it times the tensor view (statistics, histogram, thumbnail) of the
largest value, the peak resident memory, and the load average before and
after (the machine is shared; a high load inflates every figure). The GUI's
share (redraw) is measured by the GUI benchmark, not here.

Run from the repository root::

    python benchmarks/bench_stepping.py            # LeNet-5 and VGG-16
    python benchmarks/bench_stepping.py --lenet    # LeNet-5 only (seconds)
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# isort: off
import core  # noqa: E402, F401 - before NumPy, as the app does: sets up BLAS threading
import numpy as np  # noqa: E402
# isort: on

from core.serialize import load_graph  # noqa: E402
from core.stepping import StepSession, chain_rule, digit_feeds, sample_digit  # noqa: E402
from examples import example_path  # noqa: E402


def _stats(times) -> str:
    ms = np.asarray(times) * 1e3
    return (f"median {np.median(ms):8.2f} ms   p95 {np.percentile(ms, 95):8.2f} ms   "
            f"max {ms.max():8.2f} ms   ({len(ms)} steps)")


def _view_reads(s: StepSession):
    """What the stepping view reads after a step."""
    s.wires()
    s.node_states()
    rec = s.record()
    if rec is not None and rec.phase == "backward":
        chain_rule(s)


def run(name: str, s: StepSession):
    """Step ``s`` to the end twice (step only, then step + view reads) and print the figures."""
    plain, viewed = [], []
    for times, view in ((plain, False), (viewed, True)):
        s.reset()
        while not s.done:
            t0 = time.perf_counter()
            reason = s.step()
            if view:
                _view_reads(s)
            times.append(time.perf_counter() - t0)
            if reason.kind == "error":
                raise SystemExit(f"{name}: {reason.message}")
    fwd = s.n_forward
    print(f"{name}: {len(s.steps)} steps ({fwd} forward)")
    print(f"  step            {_stats(plain)}")
    print(f"    forward       {_stats(plain[:fwd])}")
    print(f"    backward      {_stats(plain[fwd:])}")
    print(f"  step+view       {_stats(viewed)}")
    largest = max(s.graph.nodes.values(), key=lambda n: np.size(s.value(n)))
    t0 = time.perf_counter()
    tv = s.tensor(largest, grad=True)
    t1 = time.perf_counter()
    s.tensor(largest, grad=True, full=True)
    t2 = time.perf_counter()
    print(f"  tensor view of '{largest.name}' {tv.summary.shape}: thumbnail "
          f"{(t1 - t0) * 1e3:.1f} ms, full size {(t2 - t1) * 1e3:.1f} ms")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lenet", action="store_true", help="LeNet-5 only")
    args = p.parse_args(argv)
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} "
          f"({os.cpu_count()} CPUs)")
    g = load_graph(example_path("lenet5"))
    t0 = time.perf_counter()
    s = StepSession(g, feeds=digit_feeds(g, *sample_digit(0)))
    print(f"LeNet-5 session ready in {(time.perf_counter() - t0) * 1e3:.0f} ms")
    run("LeNet-5, one digit", s)
    s.close()
    if not args.lenet:
        g = load_graph(example_path("vgg16"))
        rng = np.random.default_rng(0)
        feeds = {"image": rng.normal(size=(1, 3, 224, 224)).astype(np.float32),
                 "label": np.array([3])}
        t0 = time.perf_counter()
        s = StepSession(g, feeds=feeds)
        print(f"VGG-16 session ready (weights initialized) in {time.perf_counter() - t0:.1f} s")
        run("VGG-16, batch 1", s)
        s.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak:,.0f} MB")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
