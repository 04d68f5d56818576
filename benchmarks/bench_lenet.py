"""Training speed of the MNIST presets users train, against PyTorch's CPU build.

Loads the presets themselves (``examples/lenet5.json``, ``examples/keras_mnist_cnn.json``;
``--model lenet|keras|both``), trains each through ``Trainer.train_step`` (the path
``backprop-studio train`` takes) with SGD + momentum, and trains the same network in
PyTorch, built layer for layer from the graph and starting from its weights, on the
same batches. Every round runs on 1 thread and on 2 threads (``--threads``), ours
then torch's within each thread count, so a busy machine slows all four alike; the
medians are compared. "1 thread" holds our layer pool and BLAS to the calling thread
and sets ``torch.set_num_threads(1)``.

Prints, in order:

* the load average before the run;
* with ``--memory``, first (while this process is small: a child's ``ru_maxrss`` starts
  at its parent's size): the peak RSS of a child process that runs one real epoch of
  ``backprop-studio train`` on full MNIST, with its test accuracy;
* per model: the preset, its parameters, the data (full MNIST, or clearly labelled the
  embedded sample / synthetic images), the BLAS and layer threads;
* per model and thread count: ms per batch and s per 60,000-image epoch for each side,
  and how many cores it kept busy (its CPU time over its wall time: torch's count
  includes threads spinning while they wait);
* whether our losses (every step) and final weights are bit-identical between 1 and 2
  threads, and how far torch's losses are from ours (LeNet-5: same start, same batches;
  networks with dropout draw different masks on each side, so they are not compared);
* where our time goes (forward and backward per op type, 2 threads);
* the load line (machine.LoadCheck: load average before/after, the CPU share other
  processes took) and then the ratios ours/torch per thread count, each side's
  1→2-thread speed-up and the ``--memory`` epoch's time, each tagged
  ``[UNRELIABLE: machine busy]`` unless the machine was quiet;
* the peak RSS of this process.

Run from the repository root::

    python benchmarks/bench_lenet.py                     # LeNet-5, full MNIST if found
    python benchmarks/bench_lenet.py --model both --memory
    python benchmarks/bench_lenet.py --mnist DIR         # the folder with the IDX files
    python benchmarks/bench_lenet.py --synthetic         # random images, no files needed
    python benchmarks/bench_lenet.py --sample            # the embedded 5,000-image sample
    python benchmarks/bench_lenet.py --device cuda       # GPU (CuPy) against CPU, torch on the GPU

MNIST is found by the project's loader (``core.data.mnist.load_mnist``): the folder
``--mnist`` names, else ``../shared/data/mnist`` beside the repository when it exists,
else ``$BACKPROP_STUDIO_DATA`` and the cache (``--download`` fetches and checks the files).
Without full MNIST the embedded 5,000-image sample is used and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# isort: off
import core  # noqa: E402, F401 - before NumPy, as the app does: sets up BLAS threading
import numpy as np  # noqa: E402
# isort: on

from benchmarks.machine import LoadCheck  # noqa: E402
from core.data.mnist import load_mnist  # noqa: E402
from core.errors import DataError  # noqa: E402
from core.kernels import blas_kernels, blas_threads, layer_threads, threads  # noqa: E402
from core.serialize import copy_graph, load_graph  # noqa: E402
from core.train.optim import make_optimizer  # noqa: E402
from core.train.trainer import Trainer  # noqa: E402
from examples import example_path  # noqa: E402

EPOCH = 60_000
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"
PRESETS = {"lenet": "lenet5", "keras": "keras_mnist_cnn"}
# a Keras CNN batch costs many LeNet-5 batches: fewer of them keep a run to minutes
DEFAULT_BATCHES = {"lenet": 40, "keras": 8}
LR, MOMENTUM = 0.05, 0.9


# ------------------------------------------------------------------- data

def find_mnist(args):
    """``(images uint8 (N, 28, 28) or None, labels, description)``.

    ``None`` images mean synthetic data. A folder the user named must hold the files;
    otherwise a missing full set falls back to the embedded sample, labelled as such.
    """
    if args.synthetic:
        return None, None, "SYNTHETIC random images (not MNIST)"
    if args.sample:
        data = load_mnist(source="sample")
        return (data.train_x, data.train_y,
                f"the embedded MNIST SAMPLE ({len(data.train_x):,} images, NOT the full set)")
    try:
        data = load_mnist(data_dir=_mnist_folder(args), download_missing=args.download)
    except DataError as exc:
        if args.mnist is not None:
            raise
        print(f"full MNIST not reachable, using the embedded sample instead: {exc}")
        data = load_mnist(source="sample")
        return (data.train_x, data.train_y,
                f"the embedded MNIST SAMPLE ({len(data.train_x):,} images, NOT the full set)")
    return (data.train_x, data.train_y,
            f"full MNIST ({len(data.train_x):,} training images from {data.source})")


def make_batches(images, labels, n_batches, bs, rng):
    """``n_batches`` batches of float32 images in [0, 1], shape (bs, 1, 28, 28), and labels."""
    n = n_batches * bs
    if images is None:
        x = rng.random((n, 1, 28, 28), dtype=np.float32)
        t = rng.integers(0, 10, n).astype(np.int64)
    else:
        # the sample has fewer images than a long run needs: go round it again
        pick = np.concatenate([rng.permutation(len(images))
                               for _ in range(-(-n // len(images)))])[:n]
        x = images[pick].astype(np.float32)[:, None] / np.float32(255.0)
        t = labels[pick].astype(np.int64)
    return [(np.ascontiguousarray(x[i * bs:(i + 1) * bs]), t[i * bs:(i + 1) * bs])
            for i in range(n_batches)]


# ------------------------------------------------------------------ models

def preset_graph(model: str):
    """The preset users open from the Examples menu, initialized as a training run does."""
    graph = load_graph(example_path(PRESETS[model]))
    graph.initialize(seed=0)
    return graph


def torch_model(torch, graph):
    """The graph's chain of layers in PyTorch, starting from the graph's weights.

    Raises ``ValueError`` for an op with no PyTorch equivalent here.
    """
    nn = torch.nn
    layers = []
    for node in graph.order():
        op, p = node.op_id, node.params
        if op == "input" or op == "softmax_cross_entropy":
            continue  # the loss is torch's CrossEntropyLoss
        if op == "conv2d":
            w = node.weights["W"]
            m = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]),
                          stride=tuple(p.get("stride", (1, 1))),
                          padding=tuple(p.get("padding", (0, 0))),
                          dilation=tuple(p.get("dilation", (1, 1))), bias=p.get("bias", True))
        elif op == "dense":
            w = node.weights["W"]
            m = nn.Linear(w.shape[0], w.shape[1], bias=p.get("bias", True))
            w = w.T  # dense stores W as (in, out) for y = x·W; torch's Linear keeps (out, in)
        elif op == "max_pool2d":
            m = nn.MaxPool2d(tuple(p["kernel"]), tuple(p.get("stride") or p["kernel"]),
                             tuple(p.get("padding", (0, 0))))
        elif op == "relu":
            m = nn.ReLU()
        elif op == "dropout":
            m = nn.Dropout(p["p"])
        elif op == "flatten":
            m = nn.Flatten()
        else:
            raise ValueError(f"node '{node.name}' ({op}) has no PyTorch equivalent here")
        if op in ("conv2d", "dense"):
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
                if m.bias is not None:
                    m.bias.copy_(torch.from_numpy(node.weights["b"]))
        layers.append(m)
    return nn.Sequential(*layers)


@contextlib.contextmanager
def our_threads(n: int):
    """Our layer pool limited to ``n`` threads (the caller counts as one) while the block runs.

    BLAS is held to one thread by ``import core``.
    """
    saved = threads.set_layer_threads(n)
    try:
        yield n
    finally:
        threads.set_layer_threads(saved)


# ------------------------------------------------------------------ timing

def time_ours(trainer, batches):
    """``Trainer.train_step`` per batch: (seconds, losses, CPU seconds of all our threads)."""
    times, losses = [], []
    cpu0 = time.process_time()
    for x, t in batches:
        t0 = time.perf_counter()
        info = trainer.train_step(x, t)
        times.append(time.perf_counter() - t0)
        losses.append(info.loss)
    return times, losses, time.process_time() - cpu0


def time_torch(torch, model, opt, batches):
    """One SGD step per batch: (seconds, losses, CPU seconds of all threads, spinning included)."""
    loss_fn = torch.nn.CrossEntropyLoss()
    times, losses = [], []
    cpu0 = time.process_time()
    for x, t in batches:
        xt, tt = torch.from_numpy(x), torch.from_numpy(t)
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = loss_fn(model(xt), tt)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        losses.append(float(loss.detach()))
    return times, losses, time.process_time() - cpu0


def _helpers_idle(trace, start, end) -> float:
    """Seconds of the helper threads' time within ``[start, end]`` with no part to run
    (summed over helpers; this thread is the caller)."""
    helpers = threads.layer_threads() - 1
    return helpers * (end - start) - threads.busy_seconds(trace, start, end,
                                                          threading.get_ident())


def breakdown(trainer, batches, shares=None, idle=None):
    """Median seconds per batch by (phase, op), stepping the same plan ``run`` executes.

    A weight gradient left to a helper thread (``threads.deferring``) counts where the run
    waits for it: "(deferred weight gradients)" is the wait at the end of the run. With a
    set ``shares``, the (phase, op) of every step that handed work to the thread pool is
    added to it. With a dict ``idle``, the median seconds per batch that the helper threads
    ran no part while each (phase, op) ran are put in it: the second core's idle time."""
    ex = trainer._train_ex
    spent = defaultdict(lambda: np.zeros(len(batches)))
    unused = defaultdict(lambda: np.zeros(len(batches)))
    steps = ex.plan(trainer.loss_node.id)
    handed = [0]
    pool = threads._workers

    def counted():
        handed[0] += 1
        return pool()

    windows = []  # (key, start, end) of this batch's steps

    def timed(key, i, t0):
        t1 = time.perf_counter()
        spent[key][i] += t1 - t0
        windows.append((key, t0, t1))

    def idle_of(i, trace):
        # once every part of the batch is done: a part still running when its step
        # ended is in the trace only from then on
        for key, t0, t1 in windows:
            unused[key][i] += _helpers_idle(trace, t0, t1)
        windows.clear()

    if shares is not None:
        threads._workers = counted
    try:
        with threads.tracing() as trace:
            for i, (x, t) in enumerate(batches):
                ex.feeds = trainer._feeds(x, t)
                ex.reset()
                # as Executor.run: weight gradients may be left to a helper, finished at the end
                with threads.deferring():
                    for st in steps:
                        t0 = time.perf_counter()
                        before = handed[0]
                        ex.apply(st, detail=False)
                        op_id = ex.graph.nodes[st.node_id].op_id
                        if st.fused is not None:  # a convolution run in its pool's forward step
                            op_id = f"{ex.graph.nodes[st.fused].op_id} + {op_id}"
                        elif st.then is not None and op_id == "conv2d":  # its ReLU in its step
                            op_id = f"{op_id} + {ex.graph.nodes[st.then].op_id}"
                        timed((st.phase, op_id), i, t0)
                        if handed[0] > before and shares is not None:
                            shares.add((st.phase, op_id))
                    t0 = time.perf_counter()
                    before = handed[0]
                    threads.finish_deferred()
                    key = ("backward", "(deferred weight gradients)")
                    timed(key, i, t0)
                    if handed[0] > before and shares is not None:
                        shares.add(key)
                ex.iteration += 1
                idle_of(i, trace)
                trace.clear()
    finally:
        threads._workers = pool
    if idle is not None:
        idle.update({k: float(np.median(v)) for k, v in unused.items()})
    return {k: float(np.median(v)) for k, v in spent.items()}


BREAKDOWN_ROUNDS = 4


def _print_breakdown(trainer, batches, counts):
    """Where our time goes per op and phase on each thread count, over the first (up to) 10
    ``batches``, the thread counts in turn for ``BREAKDOWN_ROUNDS`` rounds.

    With two or more counts it also prints the most that sharing the ops gives: the time
    if every op that hands work to the thread pool ran exactly as many times faster as
    there are threads, and every other op as on the fewest.
    """
    batches = batches[:min(10, len(batches))]
    runs = {n: [] for n in counts}
    idles = []
    shares = set()
    for _ in range(BREAKDOWN_ROUNDS):
        for n in counts:
            with our_threads(n):
                idle = {} if n == counts[-1] and n > 1 else None
                runs[n].append(breakdown(trainer, batches, shares if n > 1 else None, idle))
                if idle is not None:
                    idles.append(idle)
    spent = {n: {k: float(np.median([r[k] for r in runs[n]])) for k in runs[n][0]}
             for n in counts}
    lo, hi = counts[0], counts[-1]
    idle = {k: float(np.median([r[k] for r in idles])) for k in idles[0]} if idles else {}
    total = {n: sum(spent[n].values()) for n in counts}
    heads = "".join(f"{f'{n} thread' + ('s' if n > 1 else ''):>11s}" for n in counts)
    print(f"  where our time goes (median ms per batch over {BREAKDOWN_ROUNDS} × {len(batches)} "
          f"batches, the thread counts in turn; the optimizer step is not included; "
          f"* hands work to the thread pool"
          + (f"; idle: the helper threads' time with no part to run, on {hi} threads"
             if idle else "") + "):")
    print(f"    {'':8s} {'':34s}{heads}" + (f"{'speed-up':>10s}" if hi > lo else "")
          + (f"{'idle':>8s}" if idle else ""))
    for key in sorted(spent[hi], key=lambda k: -spent[hi][k]):
        if max(spent[n][key] for n in counts) * 1e3 < 0.005:
            continue
        phase, op_id = key
        row = "".join(f"{spent[n][key] * 1e3:11.2f}" for n in counts)
        gain = (f"{spent[lo][key] / spent[hi][key]:9.2f}×"
                if hi > lo and spent[hi][key] > 0 else "")
        mark = "*" if key in shares else " "
        print(f"    {phase:8s} {op_id:32s} {mark}{row}{gain}"
              + (f"{idle[key] * 1e3:8.2f}" if idle else ""))
    row = "".join(f"{total[n] * 1e3:11.2f}" for n in counts)
    print(f"    {'all':8s} {'executor steps':32s}  {row}"
          + (f"{total[lo] / total[hi]:9.2f}×" if hi > lo else "")
          + (f"{sum(idle.values()) * 1e3:8.2f}" if idle else ""))
    if hi > lo:
        best = total[lo] - sum(spent[lo][k] for k in shares) * (1 - lo / hi)
        print(f"  with every * op exactly {hi / lo:.0f}× faster on {hi} threads than on {lo} "
              f"and the others as on {lo}: {best * 1e3:.2f} ms, a speed-up of at most "
              f"{total[lo] / best:.2f}× for the executor steps")
        with our_threads(hi):
            whole, unused = step_idle(trainer, batches)
        print(f"  whole training steps on {hi} threads (optimizer included): {whole * 1e3:.2f} ms, "
              f"of which the helper threads ran no part for {unused * 1e3:.2f} ms "
              f"({unused / ((hi - 1) * whole):.0%} of their time)")


def step_idle(trainer, batches):
    """Median seconds of ``train_step`` over ``batches``, and of the helper threads' time in
    it with no part to run (summed over helpers). The steps train ``trainer`` on."""
    whole, unused = [], []
    with threads.tracing() as trace:
        for x, t in batches:
            t0 = time.perf_counter()
            trainer.train_step(x, t)
            t1 = time.perf_counter()
            whole.append(t1 - t0)
            unused.append(_helpers_idle(trace, t0, t1))
            trace.clear()
    return float(np.median(whole)), float(np.median(unused))


def same_weights(a: Trainer, b: Trainer) -> bool:
    """Every trainable tensor of the two trainers' graphs equal bit for bit."""
    ta, tb = a.tensors(), b.tensors()
    return ta.keys() == tb.keys() and all(
        np.array_equal(ta[k].view(np.uint8), tb[k].view(np.uint8)) for k in ta)


def bench_model(model, args, images, labels, data_desc, torch, device="cpu"):
    """Time one preset on each thread count, alternating with torch; print its figures.

    Returns ``{n_threads: (ours s/batch, torch s/batch or None)}`` for the ratios.
    """
    rng = np.random.default_rng(0)
    n_batch = args.batches or DEFAULT_BATCHES[model]
    bs = args.batch_size
    batches = make_batches(images, labels, args.warmup + n_batch * args.rounds, bs, rng)
    warm, timed = batches[:args.warmup], batches[args.warmup:]
    rounds = [timed[r * n_batch:(r + 1) * n_batch] for r in range(args.rounds)]

    start = preset_graph(model)
    counts = args.threads
    trainers, models, opts = {}, {}, {}
    for n in counts:  # every thread count starts from the same weights
        trainers[n] = Trainer(copy_graph(start), make_optimizer("momentum", lr=LR,
                                                                momentum=MOMENTUM),
                              batch_size=bs, seed=0, grad_norms=False, device=device)
        if torch is not None:
            models[n] = torch_model(torch, start)
            opts[n] = torch.optim.SGD(models[n].parameters(), lr=LR, momentum=MOMENTUM)
    has_dropout = any(nd.op_id == "dropout" for nd in start.order())
    print(f"\n{start.name} (preset {PRESETS[model]}), {start.dtype}, "
          f"{start.parameter_count():,} parameters, batch {bs}; {data_desc}; "
          f"{args.rounds} round{'s' if args.rounds > 1 else ''} × {n_batch} batches per side "
          "and thread count, "
          f"{args.warmup} warm-up; momentum (lr {LR}, μ {MOMENTUM}); "
          f"BLAS threads {blas_threads()}, layer threads up to {layer_threads()}; "
          f"{blas_kernels()}", flush=True)

    for n in counts:
        with our_threads(n):
            time_ours(trainers[n], warm)
        if torch is not None:
            torch.set_num_threads(n)
            time_torch(torch, models[n], opts[n], warm)

    ours = {n: [] for n in counts}
    theirs = {n: [] for n in counts}
    our_losses = {n: [] for n in counts}
    their_losses = {n: [] for n in counts}
    cpu = {(side, n): 0.0 for side in ("ours", "torch") for n in counts}
    def run_ours(n, rb):
        with our_threads(n):
            t, lo, c = time_ours(trainers[n], rb)
        cpu["ours", n] += c
        ours[n] += t
        our_losses[n] += lo

    def run_torch(n, rb):
        # idle BLAS/OpenMP threads of one side spin for a while after their last
        # call; a pause keeps them from eating into the other side's time
        time.sleep(args.pause)
        torch.set_num_threads(n)
        t, lo, c = time_torch(torch, models[n], opts[n], rb)
        cpu["torch", n] += c
        theirs[n] += t
        their_losses[n] += lo
        time.sleep(args.pause)

    for r, rb in enumerate(rounds):
        # the thread counts and the two sides swap order every round: a side that always
        # ran second would gain (or lose) whatever the first left behind
        for n in (counts if r % 2 == 0 else counts[::-1]):
            sides = [run_ours] + ([run_torch] if torch is not None else [])
            for run in (sides if r % 2 == 0 else sides[::-1]):
                run(n, rb)

    result = {}
    for n in counts:
        ob = float(np.median(ours[n]))
        print(f"  {n} thread{'s' if n > 1 else ' '}  ours : {ob * 1e3:8.2f} ms/batch (median; "
              f"mean {np.mean(ours[n]) * 1e3:.2f}) -> {ob * EPOCH / bs:7.2f} s/epoch; "
              f"loss {our_losses[n][0]:.3f} -> {our_losses[n][-1]:.3f}; "
              f"{cpu['ours', n] / sum(ours[n]):.2f} cores busy")
        tb = None
        if torch is not None:
            tb = float(np.median(theirs[n]))
            print(f"            torch: {tb * 1e3:8.2f} ms/batch (median; mean "
                  f"{np.mean(theirs[n]) * 1e3:.2f}) -> {tb * EPOCH / bs:7.2f} s/epoch; "
                  f"loss {their_losses[n][0]:.3f} -> {their_losses[n][-1]:.3f}; "
                  f"{cpu['torch', n] / sum(theirs[n]):.2f} cores busy")
        if args.rounds > 1:  # how far the rounds scatter: a host's speed can jump mid-run
            line = "  ".join(
                f"{side} " + " ".join(f"{np.median(times[r * n_batch:(r + 1) * n_batch]) * 1e3:.2f}"
                                      for r in range(args.rounds))
                for side, times in (("ours", ours[n]), ("torch", theirs[n])) if times)
            print(f"            medians of the {args.rounds} rounds (ms): {line}")
        result[n] = (ob, tb)

    if len(counts) > 1:
        lo, hi = counts[0], counts[-1]
        steps = len(our_losses[lo])
        same = our_losses[lo] == our_losses[hi]
        weights = same_weights(trainers[lo], trainers[hi])
        print(f"  ours on {lo} vs {hi} threads: losses of all {steps} steps "
              f"{'bit-identical' if same else 'DIFFER'}, final weights "
              f"{'bit-identical' if weights else 'DIFFER'}")
    if torch is not None:
        n = counts[-1]
        if has_dropout:
            print("  losses not compared with torch: dropout draws different masks on each "
                  "side")
        else:
            gaps = [abs(a - b) for a, b in zip(our_losses[n], their_losses[n])]
            print(f"  same start, same batches: our losses and torch's differ by at most "
                  f"{max(gaps[:5]):.1e} over the first 5 timed steps and {max(gaps):.1e} over "
                  f"all {len(gaps)} (float32 rounding differences grow as training goes on)")
    _print_breakdown(trainers[counts[-1]], rounds[0], sorted(counts))
    return result


# ------------------------------------------------------------------ memory

def _maxrss_mib(kib_or_bytes: int) -> float:
    """``ru_maxrss`` in MiB (Linux reports KiB, macOS bytes)."""
    return kib_or_bytes / (2**20 if sys.platform == "darwin" else 1024)


def child_peak(cmd):
    """Run ``cmd`` from the repository root; ``(exit code, its peak RSS in MiB, stdout, stderr)``.

    ``os.wait4`` gives this child's own ``ru_maxrss``; ``RUSAGE_CHILDREN`` would be the
    largest of every child waited for so far.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (proc.returncode, _maxrss_mib(usage.ru_maxrss),
                out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def _mnist_folder(args):
    """The folder the user named, else ``../shared/data/mnist`` when it exists, else ``None``
    (the loader then looks in ``$BACKPROP_STUDIO_DATA`` and the cache)."""
    if args.mnist is not None:
        return args.mnist
    return SHARED_MNIST if SHARED_MNIST.is_dir() else None


def measure_memory(model, args):
    """One real epoch of ``backprop-studio train`` on full MNIST in a child; print its peak RSS.

    Run before this process loads any data or torch: a child's ``ru_maxrss`` starts at the
    size of the process that spawned it. The child finds MNIST itself through the loader.
    Returns the epoch's seconds (or ``None``), printed with the other load-sensitive figures.
    """
    folder = _mnist_folder(args)
    cmd = [sys.executable, "-m", "app", "train", PRESETS[model], "--epochs", "1", "--quiet"]
    cmd += ["--data", str(folder)] if folder is not None else []
    cmd += ["--download"] if args.download else []
    parent = _maxrss_mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    print(f"\npeak memory: {' '.join(['backprop-studio'] + cmd[3:])} (one epoch on full "
          f"MNIST, in a child process; this process is at {parent:.0f} MiB) …", flush=True)
    rc, mib, out, err = child_peak(cmd)
    if rc != 0:
        last = err.strip().splitlines()[-1:] or [f"exit {rc}"]
        print(f"  SKIPPED — the child could not train on full MNIST: {last[0]}")
        return None
    try:
        metrics = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        metrics = {}
    acc = metrics.get("test_accuracy")
    print(f"  {PRESETS[model]}: peak RSS {mib:.0f} MiB (ru_maxrss of the child) for one epoch "
          f"on {metrics.get('data', '?')}; test accuracy "
          f"{'?' if acc is None else f'{100 * acc:.2f} %'}")
    return (metrics.get("epoch_seconds") or [None])[0]


# ------------------------------------------------------------------ main

def _thread_counts(text: str) -> list:
    try:
        counts = sorted({int(v) for v in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': thread counts are whole numbers, "
                                         "e.g. 1,2") from None
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError(f"'{text}': thread counts are at least 1")
    return counts


def _sync(torch, cp):
    """Wait for the GPU's queued work, so a step's time includes it."""
    if cp is not None:
        cp.cuda.Device().synchronize()
    if torch is not None:
        torch.cuda.synchronize()


def bench_gpu(models, args, images, labels, data_desc, torch):
    """``--device cuda``: images/s of our step on the GPU, on the CPU (the highest thread
    count asked for) and of PyTorch on the same GPU when its CUDA build sees one. Returns the
    ratio lines, printed after the load check; ``None`` (after one message) where CuPy or a
    GPU is missing."""
    from core.kernels.backend import (
        DeviceError,
        cupy_module,
        describe_device,
        resolve_device,
        to_device,
    )

    try:
        resolve_device("cuda")
    except DeviceError as exc:
        print(f"bench_lenet: error: {exc}", file=sys.stderr)
        return None
    cp = cupy_module()
    ratios = []
    gpu_torch = torch if torch is not None and torch.cuda.is_available() else None
    bs = args.batch_size
    for model in models:
        n_batch = args.batches or DEFAULT_BATCHES[model]
        batches = make_batches(images, labels, args.warmup + n_batch * args.rounds, bs,
                               np.random.default_rng(0))
        start = preset_graph(model)
        sides = {}
        for device in ("cuda", "cpu"):
            sides[device] = Trainer(copy_graph(start), make_optimizer(
                "momentum", lr=LR, momentum=MOMENTUM), batch_size=bs, seed=0,
                grad_norms=False, device=device)
        times = {k: [] for k in (*sides, "torch")}
        net = opt = None
        if gpu_torch is not None:
            net = torch_model(gpu_torch, start).cuda()
            opt = gpu_torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
        print(f"\n{PRESETS[model]}, batch {bs}, {data_desc}; ours on "
              f"{describe_device('cuda')} and on the CPU ({args.threads[-1]} threads)"
              + ("" if net is not None else "; PyTorch: no CUDA build or no GPU, not compared"))
        # the data set lives on the GPU during a run (Trainer.fit moves it there once)
        on_gpu = [(to_device(x, "cuda"), to_device(t, "cuda")) for x, t in batches]
        for r in range(-1, args.rounds):  # round -1 warms every side up
            span = slice(0, args.warmup) if r < 0 else slice(
                args.warmup + r * n_batch, args.warmup + (r + 1) * n_batch)
            chunk = batches[span]
            for key, tr in sides.items():
                with our_threads(args.threads[-1]):
                    for x, t in (on_gpu[span] if key == "cuda" else chunk):
                        t0 = time.perf_counter()
                        tr.train_step(x, t)
                        _sync(None, cp if key == "cuda" else None)
                        if r >= 0:
                            times[key].append(time.perf_counter() - t0)
            if net is not None:
                for x, t in chunk:
                    t0 = time.perf_counter()
                    xb = gpu_torch.from_numpy(x).cuda()
                    tb = gpu_torch.from_numpy(t.astype(np.int64)).cuda()
                    opt.zero_grad()
                    gpu_torch.nn.functional.cross_entropy(net(xb), tb).backward()
                    opt.step()
                    _sync(gpu_torch, None)
                    if r >= 0:
                        times["torch"].append(time.perf_counter() - t0)
        med = {k: float(np.median(v)) for k, v in times.items() if v}
        for key, label in (("cuda", "ours, GPU"), ("cpu", "ours, CPU"), ("torch", "torch, GPU")):
            if key in med:
                print(f"  {label:11s} {med[key] * 1e3:9.2f} ms/batch  "
                      f"{bs / med[key]:10.0f} images/s")
        ratios.append(f"{PRESETS[model]}: ours on the GPU {med['cpu'] / med['cuda']:.2f}× the "
                      f"images/s of ours on the CPU")
        if "torch" in med:
            ratios.append(f"{PRESETS[model]}: ratio ours/torch on the GPU "
                          f"{med['cuda'] / med['torch']:.3f}")
        sides["cuda"].to_host()
    return ratios


def _parse_args(argv):
    """The command line (see ``--help``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=("lenet", "keras", "both"), default="lenet",
                    help="which preset: LeNet-5, the Keras MNIST CNN, or both (default lenet)")
    ap.add_argument("--batches", type=int, default=None,
                    help="timed batches per round, side and thread count (default 40 for "
                         "LeNet-5, 8 for the Keras CNN)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=_thread_counts, default=[1, 2], metavar="N[,N]",
                    help="thread counts to run, each for both sides (default 1,2)")
    ap.add_argument("--synthetic", action="store_true", help="random images instead of MNIST")
    ap.add_argument("--sample", action="store_true",
                    help="the embedded 5,000-image MNIST sample instead of the full set")
    ap.add_argument("--mnist", "--data", dest="mnist", type=Path, default=None, metavar="DIR",
                    help="folder with the four MNIST IDX files (default: ../shared/data/mnist "
                         "when it exists, then $BACKPROP_STUDIO_DATA and the cache)")
    ap.add_argument("--download", action="store_true",
                    help="download missing MNIST files into the cache (checked)")
    ap.add_argument("--memory", action="store_true",
                    help="also measure the peak RSS of one real training epoch on full MNIST "
                         "in a child process (about a minute for LeNet-5, several for Keras)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="cuda: our step on the GPU (CuPy) against our CPU step and, when its "
                         "CUDA build is installed, PyTorch on the same GPU")
    ap.add_argument("--no-torch", action="store_true", help="time only our executor")
    ap.add_argument("--pause", type=float, default=0.3,
                    help="seconds between the two sides' rounds (not timed)")
    args = ap.parse_args(argv)
    for name in ("batches", "rounds", "batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        ap.error("--warmup must be 0 or more")
    return args


def _print_ratios(results, counts, epochs, load):
    """The load-sensitive figures, after the load line: ratios, 1→2-thread speed-ups and the
    memory run's epoch time."""
    for model, res in results.items():
        print(f"{PRESETS[model]}:")
        for n in counts:
            ob, tb = res[n]
            if tb is not None:
                print(f"  ratio ours/torch, {n} thread{'s' if n > 1 else ''}: {ob / tb:.3f} "
                      f"(≤ 1 means we are at least as fast){load.mark()}")
        if len(counts) > 1:
            lo, hi = counts[0], counts[-1]
            line = f"  speed-up {lo}→{hi} threads: ours {res[lo][0] / res[hi][0]:.2f}×"
            if res[lo][1] is not None:
                line += f", torch {res[lo][1] / res[hi][1]:.2f}×"
            print(line + load.mark())
        if epochs.get(model) is not None:
            print(f"  one `backprop-studio train` epoch on full MNIST (--memory): "
                  f"{epochs[model]:.1f} s{load.mark()}")


def main(argv=None) -> int:
    args = _parse_args(argv)
    with LoadCheck() as load:  # first: its load average must not count our own work
        print(load.before(), flush=True)
        models = ["lenet", "keras"] if args.model == "both" else [args.model]
        # first, while this process is small: a child's peak RSS starts at its parent's
        epochs = {m: measure_memory(m, args) for m in models} if args.memory else {}
        try:
            images, labels, data_desc = find_mnist(args)
        except DataError as exc:
            print(f"bench_lenet: error: {exc}", file=sys.stderr)
            return 2
        torch = None
        if not args.no_torch:
            try:
                import torch  # noqa: PLC0415 - optional comparison
            except ImportError:
                print("PyTorch is not installed: skipping the comparison")
        if args.device == "cuda":
            ratios = bench_gpu(models, args, images, labels, data_desc, torch)
            if ratios is None:
                return 2
        else:
            results = {m: bench_model(m, args, images, labels, data_desc, torch)
                       for m in models}
    print()
    if args.device == "cuda":
        print(load.report())
        for line in ratios:
            print(line + load.mark())
        return 0
    print(load.report())
    _print_ratios(results, args.threads, epochs, load)
    peak = _maxrss_mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    print(f"peak RSS of this process: {peak:.0f} MiB (data, every thread count's models"
          f"{' and torch' if torch is not None else ''} included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
