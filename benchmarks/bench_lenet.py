"""LeNet-5 training speed: the generic graph executor against PyTorch's CPU build.

Builds LeNet-5 as a float32 :class:`core.graph.Graph` (conv 6@5×5 pad 2, ReLU,
max pool 2, conv 16@5×5, ReLU, max pool 2, flatten, dense 120, ReLU, dense 84,
ReLU, dense 10, softmax cross-entropy), trains it with SGD + momentum on
batches of real MNIST through ``Trainer.train_step`` (the path
``backprop-studio train`` takes), and trains the same model in PyTorch on the same batches
with the same thread count. Rounds alternate between the two so that a busy
machine slows both alike; the medians are compared.

Prints seconds per 60,000-image epoch for both, the ratio ours/torch (≤ 1.0
means we are at least as fast), the peak RSS, and where our time goes (forward
and backward per op type).

Run from the repository root::

    python benchmarks/bench_lenet.py                # real MNIST from ../shared/data/mnist
    python benchmarks/bench_lenet.py --synthetic    # random images, no files needed
"""

from __future__ import annotations

import argparse
import gzip
import os
import resource
import struct
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# isort: off
import core  # noqa: E402, F401 - before NumPy, as the app does: sets up BLAS threading
import numpy as np  # noqa: E402
# isort: on

from core.graph import Graph  # noqa: E402
from core.kernels import blas_threads, layer_threads  # noqa: E402
from core.serialize import copy_graph  # noqa: E402
from core.train.optim import make_optimizer  # noqa: E402
from core.train.trainer import Trainer  # noqa: E402

EPOCH = 60_000
MNIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"


# ------------------------------------------------------------------- data

def read_idx(path: Path) -> np.ndarray:
    """One IDX file (gzip-compressed) as an array; the header gives dtype and shape."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(root: Path, synthetic: bool, n: int, rng):
    """``n`` training images (float32 in [0, 1], shape (n, 1, 28, 28)) and labels."""
    if synthetic:
        return (rng.random((n, 1, 28, 28), dtype=np.float32),
                rng.integers(0, 10, n).astype(np.int64))
    images = read_idx(root / "train-images-idx3-ubyte.gz")
    labels = read_idx(root / "train-labels-idx1-ubyte.gz")
    pick = rng.permutation(len(images))[:n]
    x = images[pick].astype(np.float32)[:, None] / np.float32(255.0)
    return x, labels[pick].astype(np.int64)


# ------------------------------------------------------------------ models

def lenet_graph() -> Graph:
    g = Graph(dtype="float32", name="LeNet-5")
    x = g.add("input", name="x", shape=(None, 1, 28, 28), role="features")
    t = g.add("input", name="t", shape=(None,), role="target")
    h = g.add("conv2d", x, out_channels=6, kernel=5, padding=2, name="conv1")
    h = g.add("max_pool2d", g.add("relu", h, name="relu1"), name="pool1")
    h = g.add("conv2d", h, out_channels=16, kernel=5, name="conv2")
    h = g.add("max_pool2d", g.add("relu", h, name="relu2"), name="pool2")
    h = g.add("flatten", h, name="flatten")
    h = g.add("relu", g.add("dense", h, units=120, name="fc1"), name="relu3")
    h = g.add("relu", g.add("dense", h, units=84, name="fc2"), name="relu4")
    h = g.add("dense", h, units=10, name="fc3")
    g.set_loss(g.add("softmax_cross_entropy", h, t, name="loss"))
    return g


def torch_lenet(torch, graph=None):
    """The same network in PyTorch; with ``graph``, starting from the graph's weights."""
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    if graph is not None:
        layers = [m for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]
        names = ["conv1", "conv2", "fc1", "fc2", "fc3"]
        with torch.no_grad():
            for layer, name in zip(layers, names):
                node = graph.node(name)
                w = node.weights["W"]
                # dense stores W as (in, out) for y = x·W; torch's Linear keeps (out, in)
                layer.weight.copy_(torch.from_numpy(w if w.ndim == 4 else w.T.copy()))
                layer.bias.copy_(torch.from_numpy(node.weights["b"]))
    return model


# ------------------------------------------------------------------ timing

def time_ours(trainer, batches):
    """``Trainer.train_step`` per batch: the path ``backprop-studio train`` takes."""
    times, losses = [], []
    for x, t in batches:
        t0 = time.perf_counter()
        info = trainer.train_step(x, t)
        times.append(time.perf_counter() - t0)
        losses.append(info.loss)
    return times, losses


def time_torch(torch, model, opt, batches):
    loss_fn = torch.nn.CrossEntropyLoss()
    times, losses = [], []
    for x, t in batches:
        xt, tt = torch.from_numpy(x), torch.from_numpy(t)
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = loss_fn(model(xt), tt)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        losses.append(float(loss.detach()))
    return times, losses


def breakdown(ex, batches):
    """Median seconds per batch by (phase, op), stepping the same plan ``run`` executes."""
    spent = defaultdict(lambda: np.zeros(len(batches)))
    steps = ex.plan(ex.graph.loss)
    for i, (x, t) in enumerate(batches):
        ex.feeds = {"x": x, "t": t}
        ex.reset()
        for st in steps:
            t0 = time.perf_counter()
            ex.apply(st, detail=False)
            spent[(st.phase, ex.graph.nodes[st.node_id].op_id)][i] += time.perf_counter() - t0
        ex.iteration += 1
    return {k: float(np.median(v)) for k, v in spent.items()}


def _load_average():
    try:
        return os.getloadavg()[0]
    except OSError:  # no load average on this system
        return None


def _report_load(before, after):
    """Print the 1-minute load average; other jobs distort the ratio (PyTorch's threads suffer
    far more than our code from a busy core), so only quiet-machine figures compare fairly."""
    if before is None:
        return
    print(f"load average (1 min): {before:.2f} before, {after:.2f} after the run (this run's own "
          "work adds up to ~1)")
    if before > 0.5:
        print("WARNING: the machine was busy before the run started; the ratio is not a "
              "quiet-machine figure")


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _parse_args(argv):
    """The command line (see ``--help``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=40, help="timed batches per round and side")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (ours, torch)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--synthetic", action="store_true", help="random images instead of MNIST")
    ap.add_argument("--mnist", type=Path, default=MNIST, help="folder with the IDX .gz files")
    ap.add_argument("--no-torch", action="store_true", help="time only our executor")
    ap.add_argument("--pause", type=float, default=0.3,
                    help="seconds between the two sides' rounds (not timed)")
    return ap.parse_args(argv)


def _print_breakdown(trainer, batches):
    """Where our time goes per op and phase, over the first (up to) 10 ``batches``."""
    spent = breakdown(trainer._train_ex, batches[:min(10, len(batches))])
    total = sum(spent.values())
    print(f"\nwhere our time goes (median ms per batch over {min(10, len(batches))} batches; "
          f"{total * 1e3:.2f} in executor steps, the optimizer step is the rest):")
    for (phase, op_id), s in sorted(spent.items(), key=lambda kv: -kv[1]):
        if s * 1e3 >= 0.005:
            print(f"  {phase:8s} {op_id:22s} {s * 1e3:7.2f}  {100 * s / total:5.1f} %")


def main(argv=None) -> int:
    args = _parse_args(argv)

    load_before = _load_average()
    rng = np.random.default_rng(0)
    n_batches = args.warmup + args.batches * args.rounds
    bs = args.batch_size
    x_all, t_all = load_mnist(args.mnist, args.synthetic, n_batches * bs, rng)
    batches = [(np.ascontiguousarray(x_all[i * bs:(i + 1) * bs]), t_all[i * bs:(i + 1) * bs])
               for i in range(n_batches)]
    warm, timed = batches[:args.warmup], batches[args.warmup:]
    rounds = [timed[r * args.batches:(r + 1) * args.batches] for r in range(args.rounds)]

    graph = lenet_graph()
    graph.initialize(seed=0, feeds={"x": batches[0][0], "t": batches[0][1]})
    trainer = Trainer(graph, make_optimizer("momentum", lr=0.05, momentum=0.9),
                      batch_size=bs, seed=0)
    print(f"LeNet-5, float32, batch {bs}, {'synthetic' if args.synthetic else 'MNIST'} data, "
          f"{args.rounds} rounds × {args.batches} batches; Trainer.train_step with "
          "momentum (lr 0.05, μ 0.9), as `backprop-studio train` runs it; "
          f"BLAS threads: {blas_threads()}, layer threads: {layer_threads()}")
    print(f"parameters: {graph.parameter_count():,}")
    start = copy_graph(graph)  # torch starts from these weights
    time_ours(trainer, warm)
    rss_ours = rss_mib()  # before torch is imported: our own footprint

    torch = None
    if not args.no_torch:
        try:
            import torch  # noqa: PLC0415 - optional comparison
        except ImportError:
            print("PyTorch is not installed: skipping the comparison")
    if torch is not None:
        torch.set_num_threads(args.threads)
        model = torch_lenet(torch, start)  # same starting weights, same batches
        topt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        time_torch(torch, model, topt, warm)

    ours, theirs, our_losses, their_losses = [], [], [], []
    for rb in rounds:
        t, lo = time_ours(trainer, rb)
        ours += t
        our_losses += lo
        if torch is not None:
            # idle BLAS/OpenMP threads of one side spin for a while after their last
            # call; a pause keeps them from eating into the other side's time
            time.sleep(args.pause)
            t, lo = time_torch(torch, model, topt, rb)
            theirs += t
            their_losses += lo
            time.sleep(args.pause)

    per_batch = float(np.median(ours))
    ours_epoch = per_batch * EPOCH / bs
    print(f"\nours : {per_batch * 1e3:7.2f} ms/batch (median; mean {np.mean(ours) * 1e3:.2f}) "
          f"-> {ours_epoch:6.2f} s/epoch; loss {our_losses[0]:.3f} -> {our_losses[-1]:.3f}")
    if torch is not None:
        tb = float(np.median(theirs))
        torch_epoch = tb * EPOCH / bs
        print(f"torch: {tb * 1e3:7.2f} ms/batch (median; mean {np.mean(theirs) * 1e3:.2f}) "
              f"-> {torch_epoch:6.2f} s/epoch; loss {their_losses[0]:.3f} -> "
              f"{their_losses[-1]:.3f} ({args.threads} threads)")
        print(f"ratio ours/torch: {ours_epoch / torch_epoch:.3f}")
        gaps = [abs(a - b) for a, b in zip(our_losses, their_losses)]
        print(f"same start, same batches: losses differ by at most {max(gaps[:5]):.1e} over "
              f"the first 5 timed steps and {max(gaps):.1e} over all {len(gaps)} (float32 "
              "rounding differences grow as training goes on)")
    _report_load(load_before, _load_average())
    print(f"peak RSS: {rss_ours:.0f} MiB after our warm-up (data included, before torch is "
          f"imported), {rss_mib():.0f} MiB at the end (torch included)")

    _print_breakdown(trainer, rounds[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
