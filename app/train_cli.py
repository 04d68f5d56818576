"""The ``train`` and ``evaluate`` subcommands (headless; no Qt).

``backprop-studio train FILE`` trains a graph file (or a preset by name, e.g.
``lenet5``) on MNIST, Fashion-MNIST, the embedded sample, or the values stored
in the graph's own input nodes (small problems such as XOR). Progress goes to
stderr as a text bar with images/s and ETA; the last line on stdout is one JSON
object of metrics. ``backprop-studio evaluate FILE --checkpoint CKPT`` prints
the test-set report of a trained checkpoint and the same kind of JSON line.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from core.errors import DataError, GraphError

DEFAULT_LR = {"sgd": 0.1, "momentum": 0.01, "nesterov": 0.01, "rmsprop": 0.001,
              "adam": 0.001, "adagrad": 0.01, "adadelta": 1.0}


# ------------------------------------------------------------ helpers
def _load_graph_arg(file):
    """A graph from a path, or from a preset name when no such file exists."""
    from core.serialize import load_graph  # noqa: PLC0415

    path = Path(file)
    if not path.exists() and path.suffix == "" and os.sep not in file:
        from examples import example_path  # noqa: PLC0415

        try:
            path = example_path(file)
        except FileNotFoundError as exc:
            raise GraphError(f"{file}: no such file, and {exc}") from None
    return load_graph(path)


class ProgressBar:
    """A one-line progress bar on a stream, redrawn at most ~8 times a second.

    On a stream that is not a terminal only one line per epoch is written.
    """

    def __init__(self, stream=None, epochs: int = 1, width: int = 24, enabled: bool = True):
        self.stream = stream or sys.stderr
        self.epochs, self.width, self.enabled = epochs, width, enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = 0.0

    def batch(self, info):
        if not (self.enabled and self.tty):
            return
        now = time.perf_counter()
        if now - self._last < 0.125 and info.batch + 1 < info.batches:
            return
        self._last = now
        frac = (info.batch + 1) / max(info.batches, 1)
        filled = int(round(frac * self.width))
        rate = info.images_per_second
        left = info.seconds / frac - info.seconds if frac > 0 else 0.0
        line = (f"\repoch {info.epoch + 1}/{self.epochs} "
                f"[{'#' * filled}{'.' * (self.width - filled)}] {info.batch + 1}/{info.batches} "
                f"loss {info.loss:.4f} lr {info.lr:.3g} | {rate:,.0f} img/s "
                f"ETA {_clock(left)}")
        self.stream.write(line)
        self.stream.flush()

    def epoch(self, e):
        if not self.enabled:
            return
        val = ""
        if e.val_loss is not None and math.isfinite(e.val_loss):
            val = f"  val loss {e.val_loss:.4f} val acc {e.val_accuracy:.4f}"
        acc = f" acc {e.train_accuracy:.4f}" if math.isfinite(e.train_accuracy) else ""
        end = "\r\x1b[K" if self.tty else ""
        self.stream.write(f"{end}epoch {e.epoch + 1}/{self.epochs}: loss {e.train_loss:.4f}{acc}"
                          f"{val}  lr {e.lr:.3g}  {e.seconds:.1f} s "
                          f"({e.images_per_second:,.0f} img/s)\n")
        self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _round(v, nd=6):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return round(float(v), nd)


def _download_progress(stream):
    def report(name, done, total):
        if total:
            stream.write(f"\rdownloading {name}: {done / 1e6:.1f}/{total / 1e6:.1f} MB")
        else:
            stream.write(f"\rdownloading {name}: {done / 1e6:.1f} MB")
        if total and done >= total:
            stream.write("\n")
        stream.flush()
    return report


def _image_data(args):
    """(MnistData, description) for --sample / --data / the environment / the cache."""
    from core.data.mnist import load_mnist  # noqa: PLC0415

    if args.sample:
        if args.dataset != "mnist":
            raise DataError("--sample is MNIST only")
        return load_mnist(source="sample"), "MNIST sample (embedded)"
    data = load_mnist(data_dir=args.data, kind=args.dataset,
                      download_missing=getattr(args, "download", False),
                      progress=_download_progress(sys.stderr))
    title = "Fashion-MNIST" if args.dataset.startswith("fashion") else "MNIST"
    return data, f"{title} ({data.source})"


def _graph_values(graph, trainer_features, trainer_target):
    """The data stored in the features/target input nodes, or ``None``."""
    from core.data.datasets import ArrayDataset  # noqa: PLC0415

    if trainer_features is None or trainer_features.value is None:
        return None
    if trainer_target is not None and trainer_target.value is None:
        return None
    x = trainer_features.value
    y = trainer_target.value if trainer_target is not None else np.zeros(len(x))
    return ArrayDataset(x, y, "graph values")


# --------------------------------------------------------------- train
def cmd_train(args) -> int:
    from core.data.datasets import ArrayDataset, Augment, Normalizer, train_val_split  # noqa: PLC0415
    from core.train import EarlyStopping, Trainer, make_optimizer, parse_schedule  # noqa: PLC0415
    from core.train.trainer import find_role  # noqa: PLC0415

    graph = _load_graph_arg(args.file)
    if graph.loss is None:
        raise GraphError(f"{args.file}: the graph has no loss node; choose one in the app "
                         "(or set \"loss\" in the file) before training")
    features, target = find_role(graph, "features"), find_role(graph, "target")
    if features is None:
        raise GraphError(f"{args.file}: no input node has role 'features'; the trainer "
                         "feeds data there")
    name = args.optimizer.lower()
    lr = args.lr if args.lr is not None else DEFAULT_LR.get(name, 0.01)
    kw = {"lr": lr, "weight_decay": args.weight_decay, "clip_norm": args.clip_norm}
    if name in ("momentum", "nesterov"):
        kw["momentum"] = args.momentum
    elif name == "rmsprop" and args.momentum:
        kw["momentum"] = args.momentum
    try:
        optimizer = make_optimizer(name, **kw)
        schedule = parse_schedule(args.schedule, lr, args.epochs, args.warmup)
    except ValueError as exc:  # bad numbers or spec on the command line
        print(f"backprop-studio train: error: {exc}", file=sys.stderr)
        return 2

    stored = None
    if not (args.sample or args.data or getattr(args, "download", False)):
        stored = _graph_values(graph, features, target)
    extra = {}
    test = None
    if stored is not None:
        train, val = stored, None
        data_desc = "values stored in the graph's input nodes"
        extra["data"] = {"set": "graph"}
    else:
        data, data_desc = _image_data(args)
        full = ArrayDataset(data.train_x, data.train_y, "train")
        if args.limit:
            full = full.subset(np.arange(min(args.limit, len(full))))
        train_raw, val_raw = train_val_split(full, args.val_split, args.seed)
        # statistics from the training part only: validation and test must not leak into them
        norm = Normalizer.fit(train_raw.x, scale=1 / 255)
        dtype = graph.dtype
        train = ArrayDataset(norm.apply(train_raw.x, dtype), train_raw.y, "train")
        val = None if val_raw is None else ArrayDataset(norm.apply(val_raw.x, dtype), val_raw.y,
                                                        "validation")
        test = ArrayDataset(norm.apply(data.test_x, dtype), data.test_y, "test")
        extra["data"] = {"set": args.dataset, "source": "sample" if args.sample else "files",
                         "normalizer": norm.to_dict(), "val_split": args.val_split}
    augment = None
    if args.augment:
        fill = 0.0
        if "normalizer" in extra.get("data", {}):
            fill = float(Normalizer.from_dict(extra["data"]["normalizer"]).apply(0.0))
        augment = Augment(shift=2, rotation=10.0, fill=fill)
    trainer = Trainer(graph, optimizer, schedule, batch_size=args.batch_size, seed=args.seed,
                      augment=augment, grad_norms=False)
    trainer.extra_meta = extra
    if args.resume:
        meta = trainer.load_checkpoint(args.resume)
        print(f"resumed from {args.resume} after epoch {meta['epoch']}", file=sys.stderr)
    bar = ProgressBar(sys.stderr, args.epochs, enabled=not args.quiet)
    if not args.quiet:
        print(f"training {graph.name or args.file} on {data_desc}: {len(train):,} samples"
              + (f", {len(val):,} for validation" if val is not None else "")
              + f"; {optimizer.name} lr {lr:g}, schedule {schedule.describe()}, "
                f"batch {args.batch_size}, seed {args.seed}", file=sys.stderr)
    stopper = EarlyStopping(patience=args.early_stop) if args.early_stop else None
    result = trainer.fit(train, val, args.epochs, on_batch=bar.batch, on_epoch=bar.epoch,
                         early_stopping=stopper, checkpoint=args.out)
    last = trainer.history[-1] if trainer.history else {}
    metrics = {
        "status": result.status, "graph": graph.name or str(args.file), "data": data_desc,
        "epochs": result.epochs, "iterations": result.iterations, "seed": args.seed,
        "optimizer": optimizer.name, "lr": lr, "batch_size": args.batch_size,
        "train_loss": _round(last.get("train_loss")),
        "train_accuracy": _round(last.get("train_accuracy")),
        "val_loss": _round(last.get("val_loss")),
        "val_accuracy": _round(last.get("val_accuracy")),
        "epoch_seconds": [_round(h["seconds"], 3) for h in trainer.history],
        "images_per_second": _round(last.get("images_per_second"), 1),
        "seconds": _round(result.seconds, 3),
    }
    if test is not None:
        ev = trainer.evaluate(test)
        metrics.update(test_loss=_round(ev.loss), test_accuracy=_round(ev.accuracy),
                       test_macro_f1=_round(ev.macro_f1), test_macro_auc=_round(ev.macro_auc))
        if not args.quiet:
            print(f"test accuracy {ev.accuracy:.4f} (loss {ev.loss:.4f}) on {len(test):,} "
                  "images", file=sys.stderr)
    if args.out:
        metrics["checkpoint"] = str(args.out)
    print(json.dumps(metrics))
    return 0


# ------------------------------------------------------------ evaluate
def cmd_evaluate(args) -> int:
    from core.data.datasets import ArrayDataset, Normalizer  # noqa: PLC0415
    from core.train import Trainer  # noqa: PLC0415
    from core.train.trainer import find_role, load_weights  # noqa: PLC0415

    graph = _load_graph_arg(args.file)
    meta = load_weights(graph, args.checkpoint)
    trainer = Trainer(graph, seed=int(meta.get("seed", 0)))
    info = meta.get("data", {})
    if info.get("set") == "graph":
        data = _graph_values(graph, find_role(graph, "features"), find_role(graph, "target"))
        desc = "values stored in the graph"
    else:
        if not args.dataset:
            args.dataset = info.get("set", "mnist")
        if info.get("source") == "sample" and not args.data:
            args.sample = True
        images, desc = _image_data(args)
        norm = Normalizer.from_dict(info["normalizer"]) if "normalizer" in info \
            else Normalizer.fit(images.train_x, scale=1 / 255)
        data = ArrayDataset(norm.apply(images.test_x, graph.dtype), images.test_y, "test")
    ev = trainer.evaluate(data, batch_size=args.batch_size)
    print(f"{graph.name or args.file}, checkpoint {args.checkpoint} "
          f"(epoch {meta.get('epoch')}), on {desc}: {len(data):,} samples")
    print(ev.table())
    print("confusion matrix (rows: true class, columns: predicted)")
    for k, row in enumerate(ev.confusion):
        print(f"{k:>5} " + " ".join(f"{int(v):5d}" for v in row))
    out = {"checkpoint": str(args.checkpoint), "epoch": meta.get("epoch"), "samples": len(data),
           **ev.to_dict()}
    print(json.dumps(out))
    return 0


# -------------------------------------------------------------- parsers
def _data_options(p, sample_help: str):
    p.add_argument("--data", metavar="DIR",
                   help="folder with the four IDX files (.gz or raw); default: "
                        "$BACKPROP_STUDIO_DATA, then the cache")
    p.add_argument("--sample", action="store_true", help=sample_help)
    p.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default=None,
                   help="which IDX data set (default mnist)")
    p.add_argument("--download", action="store_true",
                   help="download missing files from the public mirrors into the cache")


def add_parsers(subparsers):
    """Add ``train`` and ``evaluate`` to the ``backprop-studio`` command line."""
    from core.train.optim import OPTIMIZERS  # noqa: PLC0415

    t = subparsers.add_parser(
        "train", help="train a graph on MNIST (or the data stored in it)",
        description="Train FILE (a graph file or a preset name such as lenet5). Progress "
                    "goes to stderr; the last stdout line is a JSON object of metrics.")
    t.add_argument("file")
    _data_options(t, "use the embedded 5,000/1,000-digit MNIST sample (offline)")
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="momentum")
    t.add_argument("--lr", type=float, help="learning rate (default depends on the optimizer)")
    t.add_argument("--momentum", type=float, default=0.9)
    t.add_argument("--weight-decay", type=float, default=0.0, help="L2 coefficient")
    t.add_argument("--clip-norm", type=float, help="clip gradients to this global norm")
    t.add_argument("--schedule", default="constant",
                   help="constant | step:step_size=3,gamma=0.5 | exponential:gamma=0.95 | "
                        "inverse_time:decay=0.1 | inverse_sqrt | cosine | "
                        "plateau:factor=0.5,patience=2")
    t.add_argument("--warmup", type=float, default=0.0, help="linear warm-up epochs")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--val-split", type=float, default=0.1,
                   help="fraction of the training set held out for validation")
    t.add_argument("--augment", action="store_true", help="random shifts (±2 px) and "
                                                           "rotations (±10°)")
    t.add_argument("--early-stop", type=int, metavar="PATIENCE",
                   help="stop when validation loss has not improved for PATIENCE epochs")
    t.add_argument("--limit", type=int, help="use only the first N training images")
    t.add_argument("--out", metavar="CKPT", help="checkpoint saved after every epoch (.npz)")
    t.add_argument("--resume", metavar="CKPT", help="continue from a checkpoint")
    t.add_argument("--quiet", action="store_true", help="no progress output")
    t.set_defaults(func=_train_entry)

    e = subparsers.add_parser("evaluate", help="test-set metrics of a trained checkpoint")
    e.add_argument("file")
    e.add_argument("--checkpoint", required=True, metavar="CKPT")
    _data_options(e, "evaluate on the embedded sample's 1,000 test digits")
    e.add_argument("--batch-size", type=int, default=256)
    e.set_defaults(func=cmd_evaluate)


def _train_entry(args) -> int:
    if args.dataset is None:
        args.dataset = "mnist"
    if args.epochs < 1 or args.batch_size < 1:
        raise DataError("--epochs and --batch-size must be at least 1")
    return cmd_train(args)
