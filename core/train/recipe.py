"""The training recipe: what a run trains on and with what, for every front end.

Splits, the pixel normalizer, default learning rates, optimizer construction
and the choice of training data live here, so ``backprop-studio train`` and the
window's Training panel train the same way; they only parse, show and report.

>>> from core.train.recipe import TrainSettings, make_training_optimizer
>>> opt, lr = make_training_optimizer("adam")
>>> opt.name, lr, TrainSettings().optimizer
('adam', 0.001, 'momentum')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data.datasets import ArrayDataset, Augment, Normalizer, train_val_split
from core.data.mnist import FILE_NAMES, PARTS, find_files, load_mnist
from core.errors import DataError, FileFormatError, StudioError
from core.graph import Graph
from core.train.optim import make_optimizer
from core.train.trainer import find_role

DEFAULT_LR = {"sgd": 0.1, "momentum": 0.01, "nesterov": 0.01, "rmsprop": 0.001,
              "adam": 0.001, "adagrad": 0.01, "adadelta": 1.0}

# Defaults of the options a resumed run takes from its checkpoint; they are ``None`` in
# the parser so that a value given on the command line can be told from the default.
TRAIN_DEFAULTS = {"batch_size": 64, "seed": 0, "val_split": 0.1, "optimizer": "momentum",
                  "momentum": 0.9, "weight_decay": 0.0, "schedule": "constant", "warmup": 0.0,
                  "dataset": "mnist"}

# what --augment does; a checkpoint records it to be resumed the same way
AUGMENT_SHIFT, AUGMENT_ROTATION = 2, 10.0

SOURCES = ("sample", "folder", "graph")

FULL_BATCH_FEED = "__full_batch_feed__"


@dataclass
class TrainSettings:
    """What the Training panel asks for.

    ``source`` is ``"sample"`` (the embedded MNIST sample), ``"folder"`` (the
    four IDX files in ``folder``) or ``"graph"`` (the values stored in the
    graph's features/target inputs). ``device`` is ``"cpu"`` or ``"cuda"``. Defaults
    are :data:`TRAIN_DEFAULTS`.
    """

    source: str = "sample"
    folder: str | None = None
    epochs: int = 1
    batch_size: int = TRAIN_DEFAULTS["batch_size"]
    optimizer: str = TRAIN_DEFAULTS["optimizer"]
    lr: float = DEFAULT_LR[TRAIN_DEFAULTS["optimizer"]]
    schedule: str = TRAIN_DEFAULTS["schedule"]
    seed: int = TRAIN_DEFAULTS["seed"]
    limit: int | None = None
    val_split: float = TRAIN_DEFAULTS["val_split"]
    reset_weights: bool = False
    device: str = "cpu"


@dataclass
class TrainingData:
    """What a training run reads: the three splits, a description and checkpoint metadata.

    ``val`` and ``test`` are ``None`` for data stored in the graph's input nodes.
    """

    train: object
    val: object
    test: object
    description: str
    extra: dict


# ------------------------------------------------------------ data
def load_images(sample=False, data_dir=None, dataset="mnist", download=False, progress=None):
    """(MnistData, description): the embedded sample, a folder of IDX files, or the cache."""
    if sample:
        if dataset != "mnist":
            raise DataError("--sample is MNIST only")
        return load_mnist(source="sample"), "MNIST sample (embedded)"
    data = load_mnist(data_dir=data_dir, kind=dataset, download_missing=download,
                      progress=progress)
    title = "Fashion-MNIST" if dataset.startswith("fashion") else "MNIST"
    return data, f"{title} ({data.source})"


def check_data_set(info: dict, path):
    """Refuse a checkpoint's ``data.set`` that names no data set the studio reads."""
    if info.get("set") not in (None, "graph", "mnist", "fashion-mnist"):
        raise FileFormatError(path, "meta.json.data.set", f"unknown data set {info['set']!r}; "
                                                          "expected mnist, fashion-mnist or graph")


def saved_normalizer(d, path):
    """The pixel normalizer stored in a checkpoint's metadata; a clear error if malformed.

    Beyond :meth:`Normalizer.from_dict`'s checks, the figures must be those of
    pixels 0-255 times ``scale``: a mean in [0, 255·scale] and a std of at most
    half that range.
    """
    where = "meta.json.data.normalizer"
    try:
        norm = Normalizer.from_dict(d)
    except DataError as exc:
        raise FileFormatError(path, where, str(exc)) from None
    top = 255.0 * norm.scale
    if not 0.0 <= norm.mean <= top:
        raise FileFormatError(path, where + ".mean", f"{norm.mean!r} is outside the range "
                                                     f"[0, {top:g}] of pixels 0-255 × scale "
                                                     f"{norm.scale:g}")
    if norm.std > top / 2:
        raise FileFormatError(path, where + ".std", f"{norm.std!r} is more than half the "
                                                    f"range [0, {top:g}] of pixels 0-255 × "
                                                    f"scale {norm.scale:g}")
    return norm


def graph_values(graph: Graph):
    """The data stored in the graph's features/target input nodes, or ``None``."""
    features, target = find_role(graph, "features"), find_role(graph, "target")
    if features is None or features.value is None:
        return None
    if target is not None and target.value is None:
        return None
    x = features.value
    y = target.value if target is not None else np.zeros(len(x))
    return ArrayDataset(x, y, "graph values")


def stored_training_data(graph: Graph):
    """The values stored in the graph's features/target inputs as :class:`TrainingData`,
    or ``None`` when the features input holds no value."""
    stored = graph_values(graph)
    if stored is None:
        return None
    return TrainingData(stored, None, None, "values stored in the graph's input nodes",
                        {"data": {"set": "graph"}})


def split_images(images, limit=None, val_split=0.1, seed=0) -> tuple:
    """The raw (training, validation) parts of ``images`` (MnistData), as training splits them.

    ``validation`` is ``None`` when ``val_split`` is 0.
    """
    full = ArrayDataset(images.train_x, images.train_y, "train")
    if limit:
        full = full.subset(np.arange(min(limit, len(full))))
    train_raw, val_raw = train_val_split(full, val_split, seed)
    if len(train_raw) == 0:
        raise DataError(f"a validation split of {val_split:g} of {len(full):,} images leaves "
                        "none for training; use more images (--limit) or a smaller split "
                        "(--val-split)")
    return train_raw, val_raw


def fit_image_normalizer(train_raw: ArrayDataset) -> Normalizer:
    """The pixel normalizer of a run: mean and std of its raw training part only."""
    return Normalizer.fit(train_raw.x, scale=1 / 255)


def image_training_data(graph, images, description, *, dataset="mnist", source="files",
                        limit=None, val_split=0.1, seed=0, normalizer=None) -> TrainingData:
    """Split ``images`` (MnistData) into train/validation/test, normalized for ``graph``.

    The normalizer is fitted on the training part only, so validation and test
    figures do not leak into it; a resumed run passes the one it started with.
    """
    train_raw, val_raw = split_images(images, limit, val_split, seed)
    norm = normalizer if normalizer is not None else fit_image_normalizer(train_raw)
    dtype = graph.dtype
    train = ArrayDataset(norm.apply(train_raw.x, dtype), train_raw.y, "train")
    val = None if val_raw is None else ArrayDataset(norm.apply(val_raw.x, dtype), val_raw.y,
                                                    "validation")
    test = ArrayDataset(norm.apply(images.test_x, dtype), images.test_y, "test")
    extra = {"data": {"set": dataset, "source": source, "normalizer": norm.to_dict(),
                      "val_split": val_split, "limit": limit}}
    return TrainingData(train, val, test, description, extra)


def normalized_test_set(graph: Graph, images, normalizer=None) -> ArrayDataset:
    """The test images normalized for ``graph``: with a checkpoint's ``normalizer``, or
    one fitted on all training images when the checkpoint recorded none."""
    norm = normalizer if normalizer is not None else Normalizer.fit(images.train_x,
                                                                    scale=1 / 255)
    return ArrayDataset(norm.apply(images.test_x, graph.dtype), images.test_y, "test")


def default_augment(extra: dict) -> Augment:
    """The augmentation ``--augment`` makes; shifted-in pixels are a normalized 0 (black)."""
    fill = 0.0
    if "normalizer" in extra.get("data", {}):
        fill = float(Normalizer.from_dict(extra["data"]["normalizer"]).apply(0.0))
    return Augment(shift=AUGMENT_SHIFT, rotation=AUGMENT_ROTATION, fill=fill)


# ------------------------------------------------------- optimizer
def make_training_optimizer(name: str, lr=None, momentum: float = 0.9,
                            weight_decay: float = 0.0, clip_norm=None):
    """(optimizer, learning rate): ``lr`` defaults by optimizer (:data:`DEFAULT_LR`).

    Raises ``ValueError`` for a bad name or bad numbers.
    """
    name = name.lower()
    lr = lr if lr is not None else DEFAULT_LR.get(name, 0.01)
    kw = {"lr": lr, "weight_decay": weight_decay, "clip_norm": clip_norm}
    if name in ("momentum", "nesterov"):
        kw["momentum"] = momentum
    elif name == "rmsprop" and momentum:
        kw["momentum"] = momentum
    return make_optimizer(name, **kw), lr


# ------------------------------------------------ the panel's runs
def training_problem(graph: Graph) -> str | None:
    """Why ``graph`` cannot be trained as it is, or ``None`` when it can."""
    if graph.loss is None or graph.loss not in graph.nodes:
        return "choose a loss node first (right-click a node ▸ Use as Loss)"
    try:
        find_role(graph, "features")
        find_role(graph, "target")
    except StudioError as exc:
        return str(exc)
    if not graph.trainable():
        return "nothing to train: the graph has no weights or trainable parameters"
    return None


def is_full_batch(graph: Graph) -> bool:
    """True for graphs with no features input (textbook examples): they train on the
    values stored in their nodes, one gradient step per epoch."""
    return find_role(graph, "features") is None


def prepare_full_batch(graph: Graph) -> TrainingData:
    """Make ``graph`` (a training copy) trainable on its own stored values.

    The trainer feeds batches into a features input; a graph without one gets an
    unconnected dummy input fed a single zero sample, so every epoch is one step
    on the values the graph holds. A target input keeps its stored value (its
    role becomes "value", so the trainer does not overwrite it).
    Returns the one-sample :class:`TrainingData`.
    """
    for node in list(graph.nodes.values()):
        if node.op_id == "input" and node.params.get("role") == "target":
            graph.set_params(node, role="value")
    graph.add("input", name=FULL_BATCH_FEED, shape=(None, 1), role="features")
    data = ArrayDataset(np.zeros((1, 1), graph.dtype), np.zeros(1))
    return TrainingData(data, None, None, "values stored in the graph (one step per epoch)",
                        {"data": {"set": "graph"}})


def check_folder(folder):
    """Raise a :class:`DataError` worded for the window when ``folder`` lacks MNIST files.

    (The loader would otherwise go on to the cache, and its message speaks of
    command-line options.)
    """
    path = Path(folder)
    if not path.is_dir():
        raise DataError(f"{folder}: no such folder")
    found = find_files(path)
    missing = [FILE_NAMES[p] for p in PARTS if p not in found]
    if missing:
        raise DataError(f"{folder}: missing {', '.join(missing)} (.gz or unpacked); the "
                        "folder needs the four MNIST IDX files")


def training_data(graph: Graph, settings: TrainSettings, on_status=None) -> tuple:
    """``(TrainingData, full_batch)`` for a run of ``graph`` with ``settings``.

    A graph without a features input trains full-batch on its stored values
    (``graph`` must then be a training copy: it gets a dummy input). Otherwise
    the data is the graph's stored values, the embedded MNIST sample, or the
    MNIST folder ``settings.folder``, split and normalized by
    :func:`image_training_data`. ``on_status(text)`` hears what is being read.
    """
    s = settings
    say = on_status or (lambda _text: None)
    if is_full_batch(graph):
        if s.source != "graph":
            raise StudioError("the graph has no input with role 'features' to feed images "
                              "into; train it on the values stored in it")
        return prepare_full_batch(graph), True
    if s.source == "graph":
        data = stored_training_data(graph)
        if data is None:
            raise StudioError("the graph's features input holds no values to train on; "
                              "choose the MNIST sample or a folder")
        return data, False
    if s.source == "sample":
        say("Reading the embedded MNIST sample…")
        images, desc = load_images(sample=True)
    else:
        if not s.folder:
            raise StudioError("choose a folder holding the four MNIST IDX files")
        check_folder(s.folder)
        say(f"Reading MNIST from {s.folder}…")
        images, desc = load_images(data_dir=s.folder)
    data = image_training_data(graph, images, desc,
                               source="sample" if s.source == "sample" else "files",
                               limit=s.limit, val_split=s.val_split, seed=s.seed)
    return data, False
