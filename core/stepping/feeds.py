"""Inputs for image graphs: one digit from the embedded sample, or one the user drew.

Pixels are normalized with :class:`core.data.datasets.Normalizer`, the same
object training uses; by default it is fitted as a training run on the
embedded sample fits it (``Normalizer.fit`` with ``scale=1/255`` on the training
part left after the default validation split), or pass the normalizer saved
with the weights being stepped.

Example
-------
>>> from core.serialize import load_graph
>>> from examples import example_path
>>> g = load_graph(example_path("lenet5"))
>>> feeds = digit_feeds(g, *sample_digit(0))
>>> feeds["image"].shape, feeds["label"].shape
((1, 1, 28, 28), (1,))
"""

from __future__ import annotations

import functools

import numpy as np

from core.data.datasets import Normalizer
from core.data.mnist import load_sample
from core.errors import DataError, GraphError
from core.train import find_role
from core.train.recipe import TRAIN_DEFAULTS, fit_image_normalizer, split_images

DEFAULT_VAL_SPLIT = TRAIN_DEFAULTS["val_split"]
DEFAULT_SEED = TRAIN_DEFAULTS["seed"]
SIDE = 28


@functools.lru_cache(maxsize=1)
def _sample():
    return load_sample()


def sample_digit(index: int, split: str = "test") -> tuple:
    """``(image, label)``: digit ``index`` of the embedded sample (uint8 28×28, int)."""
    data = _sample()
    if split not in ("train", "test"):
        raise DataError(f"the sample has 'train' and 'test' digits; got {split!r}")
    x, y = (data.train_x, data.train_y) if split == "train" else (data.test_x, data.test_y)
    if not 0 <= index < len(x):
        raise DataError(f"the sample has {len(x)} {split} digits; digit {index} is not one")
    return x[index], int(y[index])


def drawn_digit(image) -> np.ndarray:
    """A 28×28 drawing (values 0..1, or 0..255) as pixels 0..255 like the data set's.

    Raises
    ------
    DataError
        Wrong shape, a non-finite value, or values outside both ranges.
    """
    a = np.asarray(image, dtype=np.float64)
    if a.shape != (SIDE, SIDE):
        raise DataError(f"a drawn digit is {SIDE}×{SIDE} pixels; got shape {a.shape}")
    if not np.isfinite(a).all():
        raise DataError("a drawn digit must hold finite numbers (no NaN or Inf)")
    lo, hi = float(a.min()), float(a.max())
    if lo < 0 or hi > 255:
        raise DataError(f"drawn pixels must be in 0..1 or 0..255; got {lo:g}..{hi:g}")
    return a * 255.0 if hi <= 1.0 else a


@functools.lru_cache(maxsize=4)
def training_normalizer(val_split: float = DEFAULT_VAL_SPLIT,
                        seed: int = DEFAULT_SEED) -> Normalizer:
    """The normalizer a training run on the embedded sample fits with these settings."""
    train, _ = split_images(_sample(), None, val_split, seed)
    return fit_image_normalizer(train)


def digit_feeds(graph, image, label=None, normalizer: Normalizer | None = None) -> dict:
    """Feeds for ``graph``'s features input (and target, given ``label``): a batch of one.

    Parameters
    ----------
    image : array_like
        28×28 pixels 0..255 (a sample digit, or :func:`drawn_digit`).
    label : int, optional
        The class, fed to the target input if the graph has one.
    normalizer : Normalizer, optional
        Default: :func:`training_normalizer`.

    Shape:
        The image goes in as ``(1,) + shape[1:]`` of the features input,
        ``(1, 1, 28, 28)`` for LeNet-5 or ``(1, 784)`` for an MLP.
    """
    features = find_role(graph, "features")
    if features is None:
        raise GraphError("the graph has no input with role 'features' to feed a digit into")
    norm = normalizer if normalizer is not None else training_normalizer()
    x = norm.apply(np.asarray(image)[None], graph.dtype)
    shape = features.params.get("shape") or ()
    want = tuple(shape[1:])
    if want and all(d is not None for d in want):
        if int(np.prod(want)) != x[0].size:
            raise GraphError(f"input '{features.name}' takes samples of shape {want}; a digit "
                             f"has {SIDE}×{SIDE} pixels", nodes=(features.name,))
        x = x.reshape((1,) + want)
    feeds = {features.name: x}
    target = find_role(graph, "target")
    if target is not None and label is not None:
        tshape = target.params.get("shape") or ()
        y = np.array([int(label)], dtype=np.int64)
        feeds[target.name] = y.reshape(1, 1) if len(tshape) == 2 and tshape[1] == 1 else y
    return feeds
