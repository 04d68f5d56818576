"""Training from the window against the command line, and the window's responsiveness.

LeNet-5 trains N batches (of 64, momentum, the panel's defaults) on the MNIST
sample embedded in the project, or on ../shared/data/mnist with ``--mnist``:

* ``cli``: the path ``backprop-studio train`` runs — the core recipe's data and
  optimizer, :class:`core.train.Trainer` on this thread, the progress bar
  (written to /dev/null);
* ``gui``: a real window (offscreen) on the LeNet-5 preset, started with its
  Train action; the worker thread trains while the event loop runs.

Every run stays within one epoch, so no validation pass is timed. Rounds
alternate cli and gui, the two swapping places every round. Each run's speed counts
the images from the end of its first batch to the end of its last (the first batch
pays for warm-up). The median of the rounds' ratios comes with a 95 % bootstrap
interval: on a host whose speed jumps from one run to the next, few rounds cannot
tell a few per cent apart. ``--aa`` runs the command-line path on both sides, to
show how far two runs of the same code differ on this machine.
Meanwhile a 5 ms timer on the GUI thread records how late each of its ticks
was: the gaps between ticks (median, 99th percentile, worst) say how long the
window could not answer. The load line says whether the machine was quiet.

Run from the repository root::

    python benchmarks/bench_gui_train.py                # 3 rounds of 60 batches
    python benchmarks/bench_gui_train.py --mnist -n 300 --rounds 5
    python benchmarks/bench_gui_train.py --mnist -n 300 --rounds 30 --aa  # the noise floor
    python benchmarks/bench_gui_train.py --tree /tmp/base   # another checkout's code
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def _setup_path(argv):
    """Put the tree to measure first on ``sys.path`` (``--tree``, else this checkout)."""
    tree = HERE
    if "--tree" in argv:
        tree = Path(argv[argv.index("--tree") + 1]).resolve()
    sys.path.insert(0, str(tree))
    sys.path.insert(1, str(HERE))  # benchmarks.machine
    return tree


TREE = _setup_path(sys.argv)
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# isort: off
import core  # noqa: E402, F401 - before NumPy, as the app does: sets up BLAS threading
import numpy as np  # noqa: E402
# isort: on

from benchmarks.machine import LoadCheck  # noqa: E402

BATCH = 64
SAMPLE_BATCHES = 5000 * 9 // 10 // BATCH  # one epoch of the embedded sample, less validation
TICK_MS = 5


def _settings(n_batches: int, source: str, folder):
    from core.train.recipe import TrainSettings

    # the recipe holds 10 % out for validation: enough images for n_batches after it
    limit = math.ceil(n_batches * BATCH / 0.9) + BATCH
    if source == "sample":
        limit = min(limit, 5000)
    return TrainSettings(source=source, folder=folder, epochs=1, batch_size=BATCH,
                         optimizer="momentum", lr=0.01, schedule="constant", seed=0,
                         limit=limit)


def _speed(stamps, n_batches) -> float:
    """Images a second from the end of the first batch to the end of batch ``n_batches``."""
    stamps = stamps[:n_batches]
    return BATCH * (len(stamps) - 1) / (stamps[-1] - stamps[0])


def run_cli(n_batches: int, source: str, folder) -> float:
    """The ``backprop-studio train`` path; images a second."""
    from app.train_cli import ProgressBar
    from core.serialize import load_graph
    from core.train import Trainer, parse_schedule
    from core.train.recipe import make_training_optimizer, training_data
    from examples import example_path

    s = _settings(n_batches, source, folder)
    graph = load_graph(example_path("lenet5"))
    data, _ = training_data(graph, s)
    optimizer, lr = make_training_optimizer(s.optimizer, s.lr)
    schedule = parse_schedule(s.schedule, lr, s.epochs)
    trainer = Trainer(graph, optimizer, schedule, batch_size=s.batch_size, seed=s.seed,
                      grad_norms=False)
    stamps = []
    with open(os.devnull, "w") as null:
        bar = ProgressBar(null, s.epochs)

        def on_batch(info):
            bar.batch(info)
            stamps.append(time.perf_counter())
            if len(stamps) >= n_batches:
                trainer.cancel()

        trainer.fit(data.train, None, s.epochs, on_batch=on_batch, on_epoch=bar.epoch)
    return _speed(stamps, n_batches)


def run_gui(win, n_batches: int, source: str, folder) -> tuple:
    """A run started by the window's Train action: images a second and the timer's gaps."""
    from PySide6.QtCore import QEventLoop, Qt, QTimer

    from app.training import TrainingWorker
    from core.serialize import load_graph
    from examples import example_path

    s = _settings(n_batches, source, folder)
    # a fresh LeNet-5 each run, as the cli path has (no "save changes?" for the last run's)
    win.set_graph(load_graph(example_path("lenet5")))
    panel = win.train_panel
    if source == "folder":
        panel.set_folder(folder)
    else:
        panel.set_source("sample")
    panel.epochs.setValue(s.epochs)
    panel.batch_size.setValue(s.batch_size)
    panel.limit.setValue(s.limit)
    panel.optimizer.setCurrentText(s.optimizer)
    panel.lr.setText(f"{s.lr:g}")
    panel.schedule.setCurrentText(s.schedule)
    panel.seed.setValue(s.seed)

    stamps = []
    original = TrainingWorker._on_batch

    def on_batch(worker, info):
        original(worker, info)
        stamps.append(time.perf_counter())
        if len(stamps) >= n_batches:
            worker.cancel()

    ticks = []
    loop = QEventLoop()

    def ended(running):
        if not running:
            loop.quit()

    win.training.running_changed.connect(ended)
    timer = QTimer()
    timer.setTimerType(Qt.PreciseTimer)
    timer.setInterval(TICK_MS)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    TrainingWorker._on_batch = on_batch
    try:
        timer.start()
        win.act_train.trigger()
        if win.training.is_training():
            loop.exec()  # a real event loop, as the app's
    finally:
        win.training.running_changed.disconnect(ended)
        timer.stop()
        TrainingWorker._on_batch = original
    if len(stamps) < n_batches:
        raise RuntimeError(f"the window ran {len(stamps)} of {n_batches} batches: "
                           + panel.status_label.text())
    t0, t1 = stamps[0], stamps[n_batches - 1]
    during = np.array([t for t in ticks if t0 <= t <= t1])
    gaps = np.diff(during) * 1e3 if len(during) > 1 else np.array([math.nan])
    return _speed(stamps, n_batches), gaps


def interval(ratios, level=0.95, draws=4000) -> tuple[float, float]:
    """A bootstrap interval of the median of ``ratios`` (rounds drawn with replacement)."""
    r = np.asarray(ratios, dtype=float)
    picks = np.random.default_rng(0).integers(0, len(r), size=(draws, len(r)))
    medians = np.median(r[picks], axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(medians, tail)), float(np.percentile(medians, 100 - tail))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", "--batches", type=int, default=None,
                   help="batches per run, within one epoch (default: 60 of the sample's 70, "
                        "300 of MNIST)")
    p.add_argument("--rounds", type=int, default=3, help="cli/gui pairs (default 3)")
    p.add_argument("--mnist", action="store_true", help="../shared/data/mnist, not the sample")
    p.add_argument("--tree", type=Path, help="measure another checkout's code")
    p.add_argument("--aa", action="store_true",
                   help="the command-line path on both sides: how much runs of the same code "
                        "differ here")
    args = p.parse_args(argv)
    source, folder, most = "sample", None, SAMPLE_BATCHES
    if args.mnist:
        folder = HERE.parent / "shared" / "data" / "mnist"
        if not folder.is_dir():
            p.error(f"no MNIST folder at {folder}")
        source, folder, most = "folder", str(folder), 60_000 * 9 // 10 // BATCH
    if args.batches is None:
        args.batches = 60 if source == "sample" else 300
    if not 2 <= args.batches <= most:
        p.error(f"--batches must be from 2 to {most} (one epoch of the data)")

    from PySide6.QtCore import QSettings

    from app.main_window import MainWindow, make_app

    app = make_app()
    tmp = tempfile.TemporaryDirectory(prefix="bps-guitrain-")
    settings = QSettings(str(Path(tmp.name, "settings.ini")), QSettings.IniFormat)
    win = MainWindow(settings=settings, recovery_dir=Path(tmp.name, "recovery"))
    win.resize(1400, 880)
    win.show()
    app.processEvents()
    print(f"LeNet-5, {args.batches} batches of {BATCH} on the "
          f"{'MNIST folder' if args.mnist else 'embedded sample'}, code of {TREE}"
          + ("; A/A: the command line on both sides (the column 'gui' is a second cli run)"
             if args.aa else ""))
    run_cli(20, source, folder)  # warm-up: kernels, caches, data reading
    run_gui(win, 20, source, folder)
    # a second or two with the window idle, as before anyone presses Train: start-up's work
    # that waits for a quiet moment (freezing its objects out of the garbage collector) runs
    from PySide6.QtCore import QEventLoop, QTimer

    idle = QEventLoop()
    QTimer.singleShot(1500, idle.quit)
    idle.exec()
    cli, gui, gaps = [], [], []
    with LoadCheck() as load:
        for r in range(args.rounds):
            # the sides swap places every round: the run that goes second is a few per
            # cent slower in either order, so neither side always pays for it
            for side in (("cli", "gui") if r % 2 == 0 else ("gui", "cli")):
                if side == "cli":
                    cli.append(run_cli(args.batches, source, folder))
                elif args.aa:
                    gui.append(run_cli(args.batches, source, folder))
                else:
                    speed, g = run_gui(win, args.batches, source, folder)
                    gui.append(speed)
                    gaps.append(g)
            line = (f"  round {r + 1}: cli {cli[-1]:7.0f} images/s   gui {gui[-1]:7.0f} "
                    f"images/s   gui/cli {gui[-1] / cli[-1]:.3f}")
            if gaps and not args.aa:
                line += (f"   gaps p99 {np.percentile(gaps[-1], 99):5.1f} ms, "
                         f"max {gaps[-1].max():5.1f} ms")
            print(line)
    c, g = statistics.median(cli), statistics.median(gui)
    ratios = [a / b for a, b in zip(gui, cli)]
    paired = statistics.median(ratios)
    lo, hi = interval(ratios)
    print(f"cli {c:7.0f} images/s   gui {g:7.0f} images/s (medians)   gui/cli {g / c:.3f}; "
          f"median of the rounds' ratios {paired:.3f} (95 % bootstrap interval "
          f"{lo:.3f}–{hi:.3f}, {len(ratios)} rounds)")
    if gaps:
        all_gaps = np.concatenate(gaps)
        print(f"event-loop gaps while training ({TICK_MS} ms timer, {len(all_gaps)} gaps): "
              f"median {np.median(all_gaps):.1f} ms, p99 {np.percentile(all_gaps, 99):.1f} "
              f"ms, max {all_gaps.max():.1f} ms")
    print(load.report())
    win.document.undo_stack.setClean()  # the runs' weights need no "save changes?"
    win.close()
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
