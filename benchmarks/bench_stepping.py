"""Per-step latency of stepping: the core alone, then through the window.

**Core.** Steps LeNet-5 on one digit of the embedded MNIST sample, and VGG-16 on
one random 224×224 image, all forward then all backward, and prints for each the
median, 95th percentile and maximum time of

* ``step``: the session's :meth:`~core.stepping.StepSession.step` alone;
* ``step+view``: the step plus what the view reads after it — every wire's
  value and gradient summary, every node's state, and at backward steps the
  chain rule.

Then it times the tensor view (statistics, histogram, thumbnail) of the
largest value.

**GUI.** An offscreen :class:`~app.main_window.MainWindow` at its own size opens
the same presets (the Digit panel's first sample digit for LeNet-5, the same
random image for VGG-16) and steps them through the real Step ▸ Step Forward
action: each step is the action triggered, the events processed and the canvas
viewport repainted synchronously, timed together (median, p95, max). LeNet-5 is
stepped with the wire heat maps on and off, alternating passes in this one
process. Then, while the gradient pulse runs after each backward step, every
animation frame is timed (the pulse's update plus a synchronous repaint of the
viewport): median, p95, max and frames counted, against the 16.7 ms a 60 fps
frame may take.

Each part prints the load check of :mod:`benchmarks.machine` (load average
before and after, other processes' CPU share): the machine is shared, and a
busy machine inflates every figure. Peak resident memory comes last.

Run from the repository root::

    python benchmarks/bench_stepping.py            # LeNet-5 and VGG-16, core and GUI
    python benchmarks/bench_stepping.py --lenet    # LeNet-5 only (seconds)
    python benchmarks/bench_stepping.py --gui      # the GUI part only
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# isort: off
import core  # noqa: E402, F401 - before NumPy, as the app does: sets up BLAS threading
import numpy as np  # noqa: E402
# isort: on

from benchmarks.machine import LoadCheck  # noqa: E402
from core.serialize import load_graph  # noqa: E402
from core.stepping import StepSession, chain_rule, digit_feeds, sample_digit  # noqa: E402
from examples import example_path  # noqa: E402

FRAME_BUDGET_MS = 1000 / 60


def _stats(times, what="steps") -> str:
    ms = np.asarray(times) * 1e3
    if not ms.size:
        return f"(no {what})"
    return (f"median {np.median(ms):8.2f} ms   p95 {np.percentile(ms, 95):8.2f} ms   "
            f"max {ms.max():8.2f} ms   ({len(ms)} {what})")


def vgg_feeds() -> dict:
    """One random 224×224 image and a label, the same in the core and the GUI part."""
    rng = np.random.default_rng(0)
    return {"image": rng.normal(size=(1, 3, 224, 224)).astype(np.float32),
            "label": np.array([3])}


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


def core_part(lenet_only: bool):
    g = load_graph(example_path("lenet5"))
    t0 = time.perf_counter()
    s = StepSession(g, feeds=digit_feeds(g, *sample_digit(0)))
    print(f"LeNet-5 session ready in {(time.perf_counter() - t0) * 1e3:.0f} ms")
    run("LeNet-5, one digit", s)
    s.close()
    if not lenet_only:
        g = load_graph(example_path("vgg16"))
        t0 = time.perf_counter()
        s = StepSession(g, feeds=vgg_feeds())
        print(f"VGG-16 session ready (weights initialized) in {time.perf_counter() - t0:.1f} s")
        run("VGG-16, batch 1", s)
        s.close()


# ------------------------------------------------------------------ GUI
class GuiBench:
    """An offscreen window at its own size, stepped through its real actions."""

    def __init__(self):
        from PySide6.QtCore import QSettings  # noqa: PLC0415 - Qt only for this part

        from app.main_window import MainWindow, make_app  # noqa: PLC0415

        self.app = make_app()
        self._tmp = tempfile.TemporaryDirectory()
        settings = QSettings(str(Path(self._tmp.name) / "bench.ini"), QSettings.IniFormat)
        self.win = MainWindow(settings=settings, recovery_dir=Path(self._tmp.name) / "rec")
        self.win.show()
        self._settle()
        self.viewport = self.win.view.viewport()

    def _settle(self, seconds=0.3):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            self.app.processEvents()
            time.sleep(0.005)

    def open(self, preset: str, feeds: dict | None = None):
        win = self.win
        if not win.files.open_example(example_path(preset)):
            raise SystemExit(f"cannot open the preset {preset}")
        self._settle()
        win.act_reset_steps.trigger()  # the session is made (weights initialized) here
        if feeds is not None:
            win.stepping.set_feeds(feeds, "the benchmark's image")
        if win.stepping.session is None:
            raise SystemExit(f"{preset}: stepping did not start (see the status bar: "
                             f"{win.statusBar().currentMessage()})")
        self._settle()

    def steps(self, pictures: bool = True) -> tuple:
        """One pass through every step: ``(forward times, backward times)`` in seconds."""
        win, app = self.win, self.app
        win.stepping.set_animation(False)  # the pulse is timed on its own, below
        win.stepping.set_wire_pictures(pictures)
        win.act_reset_steps.trigger()
        app.processEvents()
        s = win.stepping.session
        fwd, bwd = [], []
        while not s.done:
            phase = s.stepper.steps[s.position].phase
            t0 = time.perf_counter()
            win.act_step.trigger()
            app.processEvents()
            self.viewport.repaint()
            (fwd if phase == "forward" else bwd).append(time.perf_counter() - t0)
        return fwd, bwd

    def frames(self) -> tuple:
        """The gradient pulse after every backward step: ``(frame times, intervals, pulses)``."""
        win, app = self.win, self.app
        overlay = win.scene.stepping
        win.stepping.set_animation(True)
        win.stepping.set_wire_pictures(True)
        win.act_reset_steps.trigger()
        win.act_run_forward.trigger()
        app.processEvents()
        times, intervals, pulses = [], [], 0
        last = [None]

        def on_frame(_value):
            # after the overlay's own frame slot: time the repaint it asked for
            t0 = time.perf_counter()
            self.viewport.repaint()
            t1 = time.perf_counter()
            times.append(overlay.frame_times[-1] + (t1 - t0))
            if last[0] is not None:
                intervals.append(t0 - last[0])
            last[0] = t0

        overlay._anim.valueChanged.connect(on_frame)
        try:
            s = win.stepping.session
            while not s.done:
                win.act_step.trigger()
                self.viewport.repaint()
                last[0] = None
                if overlay.animating:
                    pulses += 1
                while overlay.animating:
                    app.processEvents()
                    time.sleep(0.001)
        finally:
            overlay._anim.valueChanged.disconnect(on_frame)
        return times, intervals, pulses

    def close(self):
        self.win.document.undo_stack.setClean()
        self.win.close()
        self.win.deleteLater()
        self.app.processEvents()
        self._tmp.cleanup()


def gui_part(lenet_only: bool):
    bench = GuiBench()
    size = bench.viewport.size()
    print(f"window {bench.win.width()}×{bench.win.height()}, canvas viewport "
          f"{size.width()}×{size.height()} (offscreen)")
    bench.open("lenet5")
    print(f"LeNet-5, one digit: step through Step ▸ Step Forward + events + repaint "
          f"(zoom {bench.win.view.zoom * 100:.0f} %)")
    runs = {True: ([], []), False: ([], [])}
    for r in range(2):  # alternating passes: heat maps on, off, then off, on
        for pictures in ((True, False) if r % 2 == 0 else (False, True)):
            fwd, bwd = bench.steps(pictures)
            runs[pictures][0].extend(fwd)
            runs[pictures][1].extend(bwd)
    for pictures, (fwd, bwd) in runs.items():
        name = "heat maps on " if pictures else "heat maps off"
        print(f"  {name}   {_stats(fwd + bwd)}")
        print(f"    forward       {_stats(fwd)}")
        print(f"    backward      {_stats(bwd)}")
    times, intervals, pulses = bench.frames()
    print(f"  gradient pulse frames (update + repaint): {_stats(times, 'frames')}; "
          f"{pulses} pulses, {len(times) / max(pulses, 1):.1f} frames each")
    if intervals:
        print(f"    between frames: median {np.median(intervals) * 1e3:.1f} ms "
              f"(60 fps target {FRAME_BUDGET_MS:.1f} ms); frames over budget: "
              f"{int((np.asarray(times) * 1e3 > FRAME_BUDGET_MS).sum())} of {len(times)}")
    if not lenet_only:
        t0 = time.perf_counter()
        bench.open("vgg16", vgg_feeds())
        print(f"VGG-16, batch 1 (ready in {time.perf_counter() - t0:.1f} s): step through "
              f"the action + events + repaint (zoom {bench.win.view.zoom * 100:.0f} %)")
        fwd, bwd = bench.steps(True)
        print(f"  heat maps on    {_stats(fwd + bwd)}")
        print(f"    forward       {_stats(fwd)}")
        print(f"    backward      {_stats(bwd)}")
        times, intervals, pulses = bench.frames()
        print(f"  gradient pulse frames (update + repaint): {_stats(times, 'frames')}; "
              f"{pulses} pulses")
    bench.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lenet", action="store_true", help="LeNet-5 only")
    part = p.add_mutually_exclusive_group()
    part.add_argument("--core", action="store_true", help="the core part only")
    part.add_argument("--gui", action="store_true", help="the GUI part only")
    args = p.parse_args(argv)
    print(f"{os.cpu_count()} CPUs")
    if not args.gui:
        print("== core ==")
        with LoadCheck() as load:
            core_part(args.lenet)
        print(load.report())
    if not args.core:
        print("== GUI (offscreen window) ==")
        with LoadCheck() as load:
            gui_part(args.lenet)
        print(load.report())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak:,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
