"""In-memory data sets: seeded mini-batches, splits, normalization, augmentation, k-fold.

Example
-------
>>> import numpy as np
>>> ds = ArrayDataset(np.arange(10.0).reshape(5, 2), np.array([0, 1, 0, 1, 0]))
>>> [len(yb) for _, yb in ds.batches(2, seed=0)]
[2, 2, 1]
"""

from __future__ import annotations

import math

import numpy as np

from core.errors import DataError
from core.kernels.backend import array_module, on_host, to_device


class ArrayDataset:
    """Features ``x`` (N, …) and integer labels or targets ``y`` (N, …).

    Parameters
    ----------
    x, y : numpy.ndarray
        Same first dimension (device arrays too: see :meth:`to_device`).
    name : str
        Shown in reports.
    """

    def __init__(self, x, y, name: str = ""):
        if on_host(x):
            x = np.asarray(x)
        if on_host(y):
            y = np.asarray(y)
        if len(x) != len(y):
            raise DataError(f"data set {name or ''}: {len(x)} samples but {len(y)} labels")
        self.x, self.y, self.name = x, y, name

    def __len__(self):
        return len(self.x)

    def __repr__(self):
        return f"ArrayDataset({self.name!r}, x {self.x.shape} {self.x.dtype}, y {self.y.shape})"

    @property
    def n_classes(self) -> int:
        """1 + the largest integer label (labels are class indices)."""
        return int(self.y.max()) + 1 if len(self.y) and self.y.dtype.kind in "iu" else 0

    def to_device(self, device: str, dtype=None) -> ArrayDataset:
        """This data set on ``device`` (features as ``dtype``), copied there once.

        Its batches are then cut on the device, in the same order as on the host.
        """
        x = self.x if dtype is None else self.x.astype(dtype, copy=False)
        return ArrayDataset(to_device(x, device), to_device(self.y, device), self.name)

    def subset(self, index, name: str | None = None) -> ArrayDataset:
        return ArrayDataset(self.x[index], self.y[index], self.name if name is None else name)

    def batch_count(self, batch_size: int, drop_last: bool = False) -> int:
        n = len(self)
        return n // batch_size if drop_last else math.ceil(n / batch_size)

    def batches(self, batch_size: int, shuffle: bool = True, seed=0, drop_last: bool = False):
        """Yield ``(x, y)`` mini-batches; the order depends only on ``seed`` when shuffled.

        ``seed`` may be an int, a sequence of ints (for example ``[seed, epoch]``)
        or a ``numpy.random.Generator``.
        """
        if batch_size < 1:
            raise DataError(f"batch size must be ≥ 1; got {batch_size}")
        n = len(self)
        if shuffle:
            rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
            order = rng.permutation(n)
            if not on_host(self.x):  # drawn on the host, as on the CPU; indexes on the device
                order = array_module(self.x).asarray(order)
        else:
            order = None
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            if order is None:
                yield self.x[start:start + batch_size], self.y[start:start + batch_size]
            else:
                idx = order[start:start + batch_size]
                yield self.x[idx], self.y[idx]


def train_val_split(ds: ArrayDataset, val_fraction: float, seed: int = 0,
                    stratify: bool = True) -> tuple:
    """Split off ``val_fraction`` of ``ds`` as a validation set (stratified by label).

    Returns ``(train, val)``; ``val`` is ``None`` when the fraction is 0.
    """
    if not 0 <= val_fraction < 1:
        raise DataError(f"validation fraction must be in [0, 1); got {val_fraction}")
    if val_fraction == 0:
        return ds, None
    rng = np.random.default_rng(seed)
    n = len(ds)
    if stratify and ds.y.ndim == 1 and ds.y.dtype.kind in "iu":
        val_idx = []
        for c in np.unique(ds.y):
            members = np.flatnonzero(ds.y == c)
            k = round(len(members) * val_fraction)
            val_idx.append(rng.choice(members, size=k, replace=False))
        val_idx = np.sort(np.concatenate(val_idx))
    else:
        val_idx = np.sort(rng.choice(n, size=round(n * val_fraction), replace=False))
    mask = np.ones(n, bool)
    mask[val_idx] = False
    return (ds.subset(np.flatnonzero(mask), f"{ds.name} train"),
            ds.subset(val_idx, f"{ds.name} validation"))


def kfold_indices(n: int, k: int, seed: int = 0, labels=None) -> list:
    """``k`` pairs ``(train_index, test_index)`` covering ``range(n)``; stratified if labels.

    Every sample is in exactly one test fold; fold sizes differ by at most one
    (per class when stratified).
    """
    if k < 2 or k > n:
        raise DataError(f"k-fold needs 2 ≤ k ≤ number of samples ({n}); got k = {k}")
    rng = np.random.default_rng(seed)
    fold_of = np.empty(n, dtype=np.int64)
    if labels is not None:
        labels = np.asarray(labels).ravel()
        offset = 0
        for c in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == c))
            # continue the round-robin across classes so fold sizes stay balanced
            fold_of[members] = (np.arange(len(members)) + offset) % k
            offset += len(members)
    else:
        fold_of[rng.permutation(n)] = np.arange(n) % k
    return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(k)]


# smallest std a saved normalizer may have, relative to its scale (one raw unit)
STD_FLOOR = 1e-6


class Normalizer:
    """Standardize with one mean and standard deviation, fitted on training data only.

    Example
    -------
    >>> norm = Normalizer.fit(np.array([0.0, 255.0]), scale=1 / 255)
    >>> norm.apply(np.array([0.0, 255.0])).tolist()
    [-1.0, 1.0]
    """

    def __init__(self, mean: float = 0.0, std: float = 1.0, scale: float = 1.0):
        if not std > 0:
            raise DataError("cannot normalize: the training data has zero variance")
        self.mean, self.std, self.scale = float(mean), float(std), float(scale)

    @classmethod
    def fit(cls, x, scale: float = 1.0, chunk: int = 8192) -> Normalizer:
        """Mean and std of ``x·scale`` (computed in float64 chunks to stay exact and small)."""
        total = total_sq = 0.0
        count = 0
        flat = np.asarray(x).reshape(len(x), -1) if np.ndim(x) > 1 else np.asarray(x)[:, None]
        for start in range(0, len(flat), chunk):
            part = flat[start:start + chunk].astype(np.float64) * scale
            total += float(part.sum())
            total_sq += float(np.square(part).sum())
            count += part.size
        mean = total / count
        var = max(total_sq / count - mean * mean, 0.0)
        return cls(mean, math.sqrt(var), scale)

    def apply(self, x, dtype="float32") -> np.ndarray:
        """``(x·scale − mean)/std`` as ``dtype``."""
        x = np.asarray(x, dtype=dtype)
        t = np.dtype(dtype).type
        return (x * t(self.scale / self.std) - t(self.mean / self.std)).astype(dtype, copy=False)

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "scale": self.scale}

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        """The normalizer :meth:`to_dict` saved; a :class:`DataError` naming a bad field.

        ``mean``, ``std`` and ``scale`` must all be present as finite numbers,
        ``scale`` positive and ``std`` at least :data:`STD_FLOOR` × ``scale``
        (data that varies less than that is constant, and dividing by it would
        turn every input into Inf or noise).
        """
        if not isinstance(d, dict):
            raise DataError(f"a normalizer is an object {{mean, std, scale}}; got {d!r:.40}")
        values = {}
        for name in ("mean", "std", "scale"):
            if name not in d:
                raise DataError(f"normalizer field '{name}' is missing")
            v = d[name]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise DataError(f"normalizer field '{name}' must be a finite number; got "
                                f"{v!r:.40}")
            values[name] = float(v)
        mean, std, scale = values["mean"], values["std"], values["scale"]
        if not scale > 0:
            raise DataError(f"normalizer field 'scale' must be > 0; got {scale!r}")
        if not std >= STD_FLOOR * scale:
            raise DataError(f"normalizer field 'std' is {std!r}, below {STD_FLOOR:g} × scale "
                            f"({STD_FLOOR * scale:.3g}); no real data varies that little")
        if abs(mean) / std > 1e6:
            raise DataError(f"normalizer field 'mean' is {mean!r}, more than 10⁶ standard "
                            f"deviations ({std!r}) from zero; normalized values would lose "
                            "all precision")
        return cls(mean, std, scale)


# ------------------------------------------------------------- augmentation
def random_shift(images, max_shift: int, rng, fill=0.0) -> np.ndarray:
    """Shift each image (…, H, W) by up to ``max_shift`` pixels in x and y; ``fill`` elsewhere.

    The shifts are drawn from the host generator ``rng``; device images stay on the device.
    """
    if on_host(images):
        images = np.asarray(images)
    xp = array_module(images)
    if max_shift <= 0:
        return images
    b = images.shape[0]
    h, w = images.shape[-2:]
    m = int(max_shift)
    padded = xp.full(images.shape[:-2] + (h + 2 * m, w + 2 * m), fill, dtype=images.dtype)
    padded[..., m:m + h, m:m + w] = images
    dy = rng.integers(-m, m + 1, b).tolist()
    dx = rng.integers(-m, m + 1, b).tolist()
    out = xp.empty_like(images)
    for i in range(b):
        out[i] = padded[i, ..., m - dy[i]:m - dy[i] + h, m - dx[i]:m - dx[i] + w]
    return out


def random_rotation(images, max_degrees: float, rng, fill=0.0) -> np.ndarray:
    """Rotate each image (…, H, W) about its centre by a uniform angle in ±``max_degrees``.

    Bilinear interpolation; pixels that come from outside the image get ``fill``. The
    angles are drawn from the host generator ``rng``; device images stay on the device.
    """
    if on_host(images):
        images = np.asarray(images)
    xp = array_module(images)
    if max_degrees <= 0:
        return images
    b = images.shape[0]
    h, w = images.shape[-2:]
    lead = images.shape[1:-2]
    theta = np.deg2rad(rng.uniform(-max_degrees, max_degrees, b))
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = xp.mgrid[0:h, 0:w].astype(np.float64)
    yy, xx = yy - cy, xx - cx
    cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    if xp is not np:  # b angles to the device, not b images to the host
        cos, sin = xp.asarray(cos), xp.asarray(sin)
    # inverse mapping: for each output pixel, where it comes from in the input
    src_x = cos * xx + sin * yy + cx
    src_y = -sin * xx + cos * yy + cy
    x0, y0 = xp.floor(src_x).astype(np.int64), xp.floor(src_y).astype(np.int64)
    fx, fy = src_x - x0, src_y - y0
    flat = images.reshape(b, -1, h * w).astype(np.float64)
    out = xp.zeros((b, flat.shape[1], h, w))
    for oy, ox, wt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                       (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yi, xi = y0 + oy, x0 + ox
        inside = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
        idx = xp.where(inside, yi * w + xi, 0).reshape(b, 1, h * w)
        vals = xp.take_along_axis(flat, xp.broadcast_to(idx, (b, flat.shape[1], h * w)), axis=2)
        vals = xp.where(inside.reshape(b, 1, h * w), vals, fill)
        out += (wt.reshape(b, 1, h * w) * vals).reshape(out.shape)
    return out.reshape((b,) + lead + (h, w)).astype(images.dtype, copy=False)


class Augment:
    """Random shift and small rotation applied to each training batch.

    Parameters
    ----------
    shift : int
        Largest shift in pixels (0 = none).
    rotation : float
        Largest rotation in degrees (0 = none).
    fill : float
        Background value for uncovered pixels (the normalized value of black).
    """

    def __init__(self, shift: int = 2, rotation: float = 10.0, fill: float = 0.0):
        self.shift, self.rotation, self.fill = int(shift), float(rotation), float(fill)

    def __call__(self, images, rng):
        out = images
        if self.rotation > 0:
            out = random_rotation(out, self.rotation, rng, self.fill)
        if self.shift > 0:
            out = random_shift(out, self.shift, rng, self.fill)
        return out

    def to_dict(self) -> dict:
        return {"shift": self.shift, "rotation": self.rotation, "fill": self.fill}
