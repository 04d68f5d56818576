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

from core.errors import DataError, FileFormatError, GraphError
from core.kernels import blas_kernel_hint
from core.kernels.backend import DEVICE_ENV, DEVICES, describe_device, device_status, resolve_device
from core.serialize import load_graph
from core.train import OPTIMIZERS, EarlyStopping, Trainer, parse_schedule
from core.train.checkpoint import describe_augment, load_weights, read_checkpoint
from core.train.recipe import (
    AUGMENT_ROTATION,
    AUGMENT_SHIFT,
    TRAIN_DEFAULTS,
    check_data_set,
    default_augment,
    graph_values,
    image_training_data,
    load_images,
    make_training_optimizer,
    normalized_test_set,
    saved_normalizer,
    stored_training_data,
)
from core.train.trainer import find_role
from examples import resolve


# ------------------------------------------------------------ helpers
def _load_graph_arg(file):
    """A graph from a path, or from a preset name when no such file exists."""
    return load_graph(resolve(file))


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
    return load_images(sample=args.sample, data_dir=args.data, dataset=args.dataset,
                       download=getattr(args, "download", False),
                       progress=_download_progress(sys.stderr))


def _check_writable(out) -> None:
    """Refuse a checkpoint path that cannot be written, before any training is done."""
    path = Path(out)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise DataError(f"--out {out}: is a folder; give a file name such as {path / 'run.npz'}")
    if not folder.is_dir():
        raise DataError(f"--out {out}: the folder {folder} does not exist; create it or "
                        "choose another path")
    if not os.access(folder, os.W_OK):
        raise DataError(f"--out {out}: the folder {folder} is not writable; choose another "
                        "path")


def _device(args, quiet: bool = False) -> str:
    """The device of the run (``--device``, else ``$BACKPROP_STUDIO_DEVICE``, else the CPU).

    CUDA that cannot run here is an error naming what is missing; ``auto`` falls back to
    the CPU and says so on stderr, as does any run that goes to the GPU.
    """
    asked = args.device if args.device is not None else os.environ.get(DEVICE_ENV, "").strip()
    device = resolve_device(args.device)
    if not quiet and (device == "cuda" or asked.lower() == "auto"):
        why = ("" if device == "cuda"
               else f"; cuda is not available: {device_status()['cuda'].reason}")
        print(f"device: {describe_device(device)}{why}", file=sys.stderr)
    return device


# --------------------------------------------------------------- train
def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _resume_settings(args, meta: dict) -> dict:
    """Take seed, batch size and data settings from a checkpoint's metadata into ``args``.

    A value given on the command line that differs from the checkpoint's is an
    error: a different seed or validation split would move validation images
    into training, and the optimizer and schedule always continue as saved.
    Returns the checkpoint's ``data`` entry.
    """
    path = args.resume

    def refuse(flag, given, saved):
        raise DataError(f"{flag} {given} differs from the checkpoint {path}, which was "
                        f"trained with {saved}; leave {flag} out to continue that run, or "
                        "start a new run without --resume")

    def take(name, saved):
        given = getattr(args, name)
        if given is not None and given != saved:
            refuse(_flag(name), given, saved)
        setattr(args, name, saved)

    _check_resume_augment(args, meta)
    take("seed", meta.get("seed", args.seed if args.seed is not None else 0))
    take("batch_size", meta.get("batch_size", args.batch_size or TRAIN_DEFAULTS["batch_size"]))
    data = meta.get("data") or {}
    if not isinstance(data, dict):
        raise FileFormatError(path, "meta.json.data", "must be a JSON object")
    check_data_set(data, path)
    if data.get("set") == "graph":
        for flag, given in (("--sample", args.sample), ("--data", args.data),
                            ("--download", getattr(args, "download", False))):
            if given:
                refuse(flag, "" if given is True else given,
                       "the values stored in the graph's input nodes")
    elif data.get("set") is not None:
        _check_data_settings(data, path)
        take("dataset", data["set"])
        if data.get("source") == "sample":
            if args.data:
                refuse("--data", args.data, "the embedded sample (--sample)")
            args.sample = True
        elif data.get("source") == "files" and args.sample:
            refuse("--sample", "", "the data set files (--data DIR)")
        if "val_split" in data:
            take("val_split", data["val_split"])
        if "limit" in data:
            take("limit", data["limit"])
    opt = meta.get("optimizer") or {}
    sched = (meta.get("schedule") or {}).get("config") or {}  # structure checked on reading
    if args.optimizer is not None and args.optimizer != opt.get("name"):
        refuse("--optimizer", args.optimizer, f"optimizer {opt.get('name')}")
    checks = (("lr", sched.get("lr")), ("weight_decay", opt.get("weight_decay")),
              ("clip_norm", opt.get("clip_norm")), ("momentum", opt.get("momentum")))
    for name, saved in checks:
        given = getattr(args, name)
        if given is not None and not (_number(saved) and float(given) == float(saved)):
            refuse(_flag(name), given, f"{name.replace('_', ' ')} {saved}")
    warm = sched.get("warmup_epochs", 0.0) if sched.get("name") == "warmup" else 0.0
    if not _number(warm):
        raise FileFormatError(path, "meta.json.schedule.config.warmup_epochs",
                              f"must be a number; got {warm!r:.40}")
    if args.warmup is not None and float(args.warmup) != warm:
        refuse("--warmup", args.warmup, f"{warm:g} warm-up epochs")
    inner = sched.get("after", {}) if sched.get("name") == "warmup" else sched
    if not isinstance(inner, dict):
        raise FileFormatError(path, "meta.json.schedule.config.after", "must be a JSON object")
    if args.schedule is not None:
        try:
            given = parse_schedule(args.schedule, inner.get("lr", 0.0), args.epochs).config()
        except ValueError as exc:
            raise DataError(f"--schedule {args.schedule}: {exc}") from None
        if given != inner:
            refuse("--schedule", args.schedule, f"schedule {inner}")
    return data


def _check_resume_augment(args, meta: dict):
    """Refuse to resume with augmentation switched on or off against the checkpoint's.

    Checkpoints of version 1 did not record it: the run continues as the
    command line says, with a note on stderr.
    """
    path = args.resume
    if "augment" not in meta:
        print(f"note: {path} does not record whether it was trained with --augment (it is "
              f"older than that record); continuing {'with' if args.augment else 'without'} "
              "augmentation as the command line says", file=sys.stderr)
        return
    saved = meta["augment"]
    if saved is not None and not args.augment:
        raise DataError(f"{path} was trained with --augment ({describe_augment(saved)}); pass "
                        "--augment to resume it, or start a new run without --resume")
    if saved is None and args.augment:
        raise DataError(f"{path} was trained without --augment; leave --augment out to resume "
                        "it, or start a new run without --resume")
    if saved is not None and (saved.get("shift"), saved.get("rotation")) != (
            AUGMENT_SHIFT, AUGMENT_ROTATION):
        raise DataError(f"{path} was trained with {describe_augment(saved)}, which --augment "
                        f"does not make (shift ±{AUGMENT_SHIFT} px, rotation "
                        f"±{AUGMENT_ROTATION:g}°); start a new run without --resume")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_data_settings(data: dict, path):
    """The data settings of an image checkpoint: source, split and limit of the right kinds."""
    where = "meta.json.data"
    if data.get("source") not in (None, "sample", "files"):
        raise FileFormatError(path, where + ".source", f"must be 'sample' or 'files'; got "
                                                       f"{data['source']!r:.40}")
    if "val_split" in data and not (_number(data["val_split"]) and 0 <= data["val_split"] < 1):
        raise FileFormatError(path, where + ".val_split", f"must be a number in [0, 1); got "
                                                          f"{data['val_split']!r:.40}")
    limit = data.get("limit")
    if limit is not None and not (isinstance(limit, int) and not isinstance(limit, bool)
                                  and limit >= 1):
        raise FileFormatError(path, where + ".limit", f"must be a whole number ≥ 1 or null; "
                                                      f"got {limit!r:.40}")


def _check_numbers(args):
    """Refuse option values no range test would catch (NaN, a negative warm-up)."""
    if args.batch_size < 1:
        raise DataError("--batch-size must be at least 1")
    for flag in ("lr", "momentum", "weight_decay", "clip_norm", "warmup", "val_split"):
        v = getattr(args, flag)
        if v is not None and not math.isfinite(v):  # NaN slips through every range test
            raise DataError(f"{_flag(flag)} {v}: must be a finite number")
    if args.warmup < 0:
        raise DataError(f"--warmup {args.warmup:g}: the number of warm-up epochs must be ≥ 0")


def _load_trainable(args):
    """The graph of ``args.file``, refused early when it has no loss or features input."""
    graph = _load_graph_arg(args.file)
    if graph.loss is None:
        raise GraphError(f"{args.file}: the graph has no loss node; choose one in the app "
                         "(or set \"loss\" in the file) before training")
    if find_role(graph, "features") is None:
        raise GraphError(f"{args.file}: no input node has role 'features'; the trainer "
                         "feeds data there")
    return graph


def _prepared_data(args, graph, saved_data: dict):
    """The run's :class:`TrainingData`: the graph's stored values unless images are asked for."""
    prepared = None
    if not (args.sample or args.data or getattr(args, "download", False)):
        prepared = stored_training_data(graph)
    if prepared is None:
        images, desc = _image_data(args)
        # a resumed run keeps the normalization it started with
        norm = (saved_normalizer(saved_data["normalizer"], args.resume)
                if "normalizer" in saved_data else None)
        prepared = image_training_data(graph, images, desc, dataset=args.dataset,
                                       source="sample" if args.sample else "files",
                                       limit=args.limit, val_split=args.val_split,
                                       seed=args.seed, normalizer=norm)
    return prepared


def _metrics(args, graph, trainer, result, data_desc: str) -> dict:
    """The JSON line's figures of a finished run (before the test set is evaluated)."""
    last = trainer.history[-1] if trainer.history else {}
    optimizer, schedule = trainer.optimizer, trainer.schedule
    return {
        "status": result.status, "graph": graph.name or str(args.file), "data": data_desc,
        "epochs": result.epochs, "iterations": result.iterations, "seed": trainer.seed,
        "optimizer": optimizer.name, "lr": schedule.base_lr, "schedule": schedule.describe(),
        "batch_size": trainer.batch_size,
        "train_loss": _round(last.get("train_loss")),
        "train_accuracy": _round(last.get("train_accuracy")),
        "val_loss": _round(last.get("val_loss")),
        "val_accuracy": _round(last.get("val_accuracy")),
        "epoch_seconds": [_round(h.get("seconds"), 3) for h in trainer.history],
        "images_per_second": _round(last.get("images_per_second"), 1),
        "seconds": _round(result.seconds, 3),
    }


def cmd_train(args) -> int:
    device = _device(args, args.quiet)  # before anything is loaded: a missing GPU fails fast
    graph = _load_trainable(args)
    if args.out:
        _check_writable(args.out)
    saved_data = {}
    if args.resume:
        meta, _ = read_checkpoint(args.resume)
        saved_data = _resume_settings(args, meta)
    for name, default in TRAIN_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    _check_numbers(args)
    try:
        optimizer, lr = make_training_optimizer(args.optimizer, args.lr, args.momentum,
                                                args.weight_decay, args.clip_norm)
        schedule = parse_schedule(args.schedule, lr, args.epochs, args.warmup)
    except ValueError as exc:  # bad numbers or spec on the command line
        print(f"backprop-studio train: error: {exc}", file=sys.stderr)
        return 2

    prepared = _prepared_data(args, graph, saved_data)
    train, val, test = prepared.train, prepared.val, prepared.test
    augment = default_augment(prepared.extra) if args.augment else None
    trainer = Trainer(graph, optimizer, schedule, batch_size=args.batch_size, seed=args.seed,
                      augment=augment, grad_norms=False, device=device)
    trainer.extra_meta = prepared.extra
    if args.resume:
        meta = trainer.load_checkpoint(args.resume)
        print(f"resumed from {args.resume} after epoch {meta['epoch']}", file=sys.stderr)
    optimizer, schedule = trainer.optimizer, trainer.schedule
    bar = ProgressBar(sys.stderr, args.epochs, enabled=not args.quiet)
    if not args.quiet:
        print(f"training {graph.name or args.file} on {prepared.description}: "
              f"{len(train):,} samples"
              + (f", {len(val):,} for validation" if val is not None else "")
              + f"; {optimizer.name} lr {schedule.base_lr:g}, schedule {schedule.describe()}, "
                f"batch {trainer.batch_size}, seed {trainer.seed}", file=sys.stderr)
        hint = blas_kernel_hint() if trainer.device == "cpu" else None
        if hint:
            print(f"note: {hint}", file=sys.stderr)
    stopper = EarlyStopping(patience=args.early_stop) if args.early_stop is not None else None
    result = trainer.fit(train, val, args.epochs, on_batch=bar.batch, on_epoch=bar.epoch,
                         early_stopping=stopper, checkpoint=args.out)
    metrics = _metrics(args, graph, trainer, result, prepared.description)
    metrics["device"] = trainer.device
    if test is not None:
        ev = trainer.evaluate(test)
        metrics.update(test_loss=_round(ev.loss), test_accuracy=_round(ev.accuracy),
                       test_macro_f1=_round(ev.macro_f1), test_macro_auc=_round(ev.macro_auc))
        if not args.quiet:
            print(f"test accuracy {ev.accuracy:.4f} (loss {ev.loss:.4f}) on {len(test):,} "
                  "images", file=sys.stderr)
    if args.out:
        metrics["checkpoint"] = str(args.out)
    print(json.dumps(metrics, allow_nan=False))
    return 0


# ------------------------------------------------------------ evaluate
def cmd_evaluate(args) -> int:
    device = _device(args)
    graph = _load_graph_arg(args.file)
    meta = load_weights(graph, args.checkpoint)
    trainer = Trainer(graph, seed=int(meta.get("seed", 0)), device=device)
    info = meta.get("data") or {}
    if not isinstance(info, dict):
        raise FileFormatError(args.checkpoint, "meta.json.data", "must be a JSON object")
    check_data_set(info, args.checkpoint)
    if info.get("set") == "graph":
        data = graph_values(graph)
        desc = "values stored in the graph"
        if data is None:
            raise DataError(f"{args.checkpoint} was trained on the values stored in a graph's "
                            f"input nodes, but the input nodes of {args.file} hold no values; "
                            "evaluate it with the graph file it was trained on")
    else:
        if not args.dataset:
            args.dataset = info.get("set", "mnist")
        if info.get("source") == "sample" and not args.data:
            args.sample = True
        images, desc = _image_data(args)
        norm = (saved_normalizer(info["normalizer"], args.checkpoint)
                if "normalizer" in info else None)
        data = normalized_test_set(graph, images, norm)
    ev = trainer.evaluate(data, batch_size=args.batch_size)
    print(f"{graph.name or args.file}, checkpoint {args.checkpoint} "
          f"(epoch {meta.get('epoch')}), on {desc}: {len(data):,} samples")
    print(ev.table())
    print("confusion matrix (rows: true class, columns: predicted)")
    for k, row in enumerate(ev.confusion):
        print(f"{k:>5} " + " ".join(f"{int(v):5d}" for v in row))
    out = {"checkpoint": str(args.checkpoint), "epoch": meta.get("epoch"), "samples": len(data),
           "device": trainer.device, **ev.to_dict()}
    print(json.dumps(out, allow_nan=False))
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


def _device_option(p):
    p.add_argument("--device", choices=DEVICES, default=None,
                   help=f"where to compute: cpu, cuda (an NVIDIA GPU through CuPy; an error "
                        f"when it is missing) or auto (cuda when available, else cpu); "
                        f"default ${DEVICE_ENV}, else cpu")


def add_parsers(subparsers):
    """Add ``train`` and ``evaluate`` to the ``backprop-studio`` command line."""
    t = subparsers.add_parser(
        "train", help="train a graph on MNIST (or the data stored in it)",
        description="Train FILE (a graph file or a preset name such as lenet5). Progress "
                    "goes to stderr; the last stdout line is a JSON object of metrics.")
    t.add_argument("file")
    _data_options(t, "use the embedded 5,000/1,000-digit MNIST sample (offline)")
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--batch-size", type=int, help="default 64")
    t.add_argument("--optimizer", choices=OPTIMIZERS, help="default momentum")
    t.add_argument("--lr", type=float, help="learning rate (default depends on the optimizer)")
    t.add_argument("--momentum", type=float, help="default 0.9")
    t.add_argument("--weight-decay", type=float, help="L2 coefficient (default 0)")
    t.add_argument("--clip-norm", type=float, help="clip gradients to this global norm")
    t.add_argument("--schedule",
                   help="constant | step:step_size=3,gamma=0.5 | exponential:gamma=0.95 | "
                        "inverse_time:decay=0.1 | inverse_sqrt | cosine | "
                        "plateau:factor=0.5,patience=2 (default constant)")
    t.add_argument("--warmup", type=float, help="linear warm-up epochs (default 0)")
    t.add_argument("--seed", type=int, help="default 0")
    t.add_argument("--val-split", type=float,
                   help="fraction of the training set held out for validation (default 0.1)")
    t.add_argument("--augment", action="store_true", help="random shifts (±2 px) and "
                                                           "rotations (±10°)")
    t.add_argument("--early-stop", type=int, metavar="PATIENCE",
                   help="stop when validation loss has not improved for PATIENCE epochs")
    t.add_argument("--limit", type=int, help="use only the first N training images")
    t.add_argument("--out", metavar="CKPT", help="checkpoint saved after every epoch (.npz)")
    t.add_argument("--resume", metavar="CKPT",
                   help="continue from a checkpoint (with its optimizer, schedule, seed, batch "
                        "size and data settings)")
    t.add_argument("--quiet", action="store_true", help="no progress output")
    _device_option(t)
    t.set_defaults(func=_train_entry)

    e = subparsers.add_parser("evaluate", help="test-set metrics of a trained checkpoint")
    e.add_argument("file")
    e.add_argument("--checkpoint", required=True, metavar="CKPT")
    _data_options(e, "evaluate on the embedded sample's 1,000 test digits")
    e.add_argument("--batch-size", type=int, default=256)
    _device_option(e)
    e.set_defaults(func=cmd_evaluate)


def _train_entry(args) -> int:
    if args.epochs < 1:
        raise DataError("--epochs must be at least 1")
    if args.early_stop is not None and args.early_stop < 1:
        raise DataError(f"--early-stop {args.early_stop}: the patience must be at least 1 "
                        "epoch; leave it out to train all epochs")
    if args.limit is not None and args.limit < 1:
        raise DataError(f"--limit {args.limit}: must be at least 1 (the number of training "
                        "images to use); leave it out to use them all")
    return cmd_train(args)
