"""What a wire or port shows: a number, or a tensor's statistics, histogram and thumbnail.

Everything here is plain data for the views to draw; no colours. Statistics are
computed in float64 over the finite values, with NaN and Inf counted apart, where
the array lives (a device array gives back only the numbers); histograms and
thumbnails take host arrays.

Example
-------
>>> import numpy as np
>>> s = summarize(np.float64(0.7310585786300049))
>>> s.text, s.full_text
('0.7311', '0.7310585786300049')
>>> summarize(np.ones((1, 6, 28, 28), np.float32)).text
'(1, 6, 28, 28)'
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.kernels.backend import array_module, to_numpy

# display defaults: a thumbnail small enough to draw on a canvas card
MAX_TILES = 64
MAX_SIDE = 32
MAX_BARS = 64
HIST_BINS = 32


def format_number(x) -> str:
    """``x`` with 4 significant digits (``2.000``, ``0.7311``, ``-1.000e-07``)."""
    x = float(x)
    if not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("∞" if x > 0 else "−∞")
    text = f"{x:#.4g}"
    return text[:-1] if text.endswith(".") else text


def full_precision(x) -> str:
    """The shortest text that gives back ``x`` exactly in its own dtype."""
    arr = np.asarray(x)
    if arr.dtype.kind == "f":
        return str(arr.dtype.type(arr.item()))
    return str(arr.item())


@dataclass(frozen=True)
class TensorSummary:
    """A value or gradient as the stepping view shows it.

    Attributes
    ----------
    shape : tuple
        The array's shape (``()`` for a scalar).
    dtype : str
    size : int
    scalar : bool
        One number (any shape of size 1): the view writes it out.
    text : str
        4 significant digits for a scalar, the shape for a tensor.
    full_text : str
        Full precision for a scalar; for a tensor its statistics in one line.
    mean, std, norm, min, max : float
        Over the finite values (NaN when there are none).
    rms : float
        ``norm / sqrt(size)``: a size-independent magnitude, for the log colour scale.
    n_nan, n_inf : int
        Non-finite values.
    """

    shape: tuple
    dtype: str
    size: int
    scalar: bool
    text: str
    full_text: str
    mean: float
    std: float
    norm: float
    min: float
    max: float
    rms: float
    n_nan: int = 0
    n_inf: int = 0

    @property
    def finite(self) -> bool:
        return self.n_nan == 0 and self.n_inf == 0


# elements converted to float64 at a time: a 100-million-weight gradient is summarized
# without an 800 MB copy
CHUNK = 1 << 20


def _moments(a) -> tuple:
    """``(count, sum, sum of squares, min, max, n_nan, n_inf)`` of ``a`` in float64 chunks."""
    xp = array_module(a)
    flat = a.reshape(-1)
    count, total, total_sq = 0, 0.0, 0.0
    lo, hi, n_nan, n_inf = math.inf, -math.inf, 0, 0
    for start in range(0, flat.size, CHUNK):
        part = flat[start:start + CHUNK].astype(xp.float64)
        ok = xp.isfinite(part)
        if not bool(ok.all()):
            n_nan += int(xp.isnan(part).sum())
            n_inf += int((~ok).sum()) - int(xp.isnan(part).sum())
            part = part[ok]
        if part.size:
            count += part.size
            total += float(part.sum())
            total_sq += float(xp.dot(part, part))
            lo, hi = min(lo, float(part.min())), max(hi, float(part.max()))
    return count, total, total_sq, lo, hi, n_nan, n_inf


def summarize(arr) -> TensorSummary:
    """The statistics of ``arr`` (any array or number) for display."""
    xp = array_module(arr)
    a = np.asarray(arr) if xp is np else arr
    if a.dtype.kind not in "fiub":
        a = xp.zeros(a.shape)
    count, total, total_sq, lo, hi, n_nan, n_inf = _moments(a)
    if count:
        mean = total / count
        std = math.sqrt(max(total_sq / count - mean * mean, 0.0))
        norm = math.sqrt(total_sq)
    else:
        norm = mean = std = lo = hi = float("nan")
    rms = norm / math.sqrt(a.size) if a.size else 0.0
    shape = tuple(int(d) for d in a.shape)
    if a.size == 1:
        value = to_numpy(a.reshape(-1))[0]
        return TensorSummary(shape, str(a.dtype), 1, True, format_number(value),
                             full_precision(value), mean, std, norm, lo, hi, rms, n_nan, n_inf)
    full = (f"{shape} mean {format_number(mean)} std {format_number(std)} norm "
            f"{format_number(norm)} min {format_number(lo)} max {format_number(hi)}")
    if n_nan or n_inf:
        full += f" ({n_nan} NaN, {n_inf} Inf)"
    return TensorSummary(shape, str(a.dtype), int(a.size), False, str(shape), full,
                         mean, std, norm, lo, hi, rms, n_nan, n_inf)


def histogram(arr, bins: int = HIST_BINS) -> tuple:
    """``(counts, edges)`` of the finite values of ``arr`` (``bins`` equal bins)."""
    a = np.asarray(arr)
    count, _, _, lo, hi, n_nan, n_inf = _moments(a)
    if not count:
        return np.zeros(bins, np.int64), np.linspace(0.0, 1.0, bins + 1)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    vals = a.reshape(-1) if not (n_nan or n_inf) else a[np.isfinite(a)]
    counts, edges = np.histogram(vals, bins=bins, range=(lo, hi))
    return counts, edges


@dataclass(frozen=True)
class Thumbnail:
    """A small picture of a tensor, as numbers for a heat map, grid or bar widget.

    Attributes
    ----------
    kind : str
        ``"bars"`` (a vector: ``data`` is 1-D), ``"heatmap"`` (a matrix),
        ``"grid"`` (feature maps or kernels tiled; gaps between tiles are NaN)
        or ``"none"`` (a scalar).
    data : numpy.ndarray
        float32 values, NaN where nothing is drawn.
    lo, hi : float
        The finite range of ``data``, for the colour map.
    tiles : tuple
        ``(rows, cols)`` of the grid, ``(0, 0)`` otherwise.
    shown, total : int
        Tiles (or bars) drawn, and how many there are.
    example, examples : int
        The batch example shown and the batch size (1 when not batched).
    """

    kind: str
    data: np.ndarray
    lo: float
    hi: float
    tiles: tuple = (0, 0)
    shown: int = 0
    total: int = 0
    example: int = 0
    examples: int = 1


def _shrink(img, max_side):
    """Block means so that no side exceeds ``max_side`` (trailing pixels dropped)."""
    if max_side is None:
        return img
    f = max(1, math.ceil(max(img.shape) / max_side))
    if f == 1:
        return img
    h, w = (img.shape[0] // f) or 1, (img.shape[1] // f) or 1
    fh, fw = min(f, img.shape[0]), min(f, img.shape[1])
    return img[:h * fh, :w * fw].reshape(h, fh, w, fw).mean(axis=(1, 3), dtype=np.float64)


def _bars(vec, max_bars):
    n = vec.size
    if max_bars is None or n <= max_bars:
        return vec
    f = math.ceil(n / max_bars)
    pad = np.full(f * math.ceil(n / f) - n, np.nan)
    return np.nanmean(np.concatenate([vec, pad]).reshape(-1, f), axis=1)


def _tile(maps, max_tiles, max_side, cols=None):
    """Tile a stack of 2-D maps into one array with one NaN pixel between tiles."""
    total = len(maps)
    shown = total if max_tiles is None else min(total, max_tiles)
    small = [_shrink(m, max_side) for m in maps[:shown]]
    th, tw = small[0].shape
    cols = cols or math.ceil(math.sqrt(shown))
    rows = math.ceil(shown / cols)
    out = np.full((rows * (th + 1) - 1, cols * (tw + 1) - 1), np.nan)
    for i, m in enumerate(small):
        r, c = divmod(i, cols)
        out[r * (th + 1):r * (th + 1) + th, c * (tw + 1):c * (tw + 1) + tw] = m
    return out, (rows, cols), shown, total


def thumbnail(arr, *, batched: bool = False, example: int = 0, kernel: bool = False,
              max_tiles: int | None = MAX_TILES, max_side: int | None = MAX_SIDE,
              max_bars: int | None = MAX_BARS) -> Thumbnail:
    """A small picture of ``arr``.

    Parameters
    ----------
    batched : bool
        The first axis is the batch; ``example`` picks the one shown.
    kernel : bool
        A 4-D weight ``(out, in, kh, kw)``: a filter grid, one row per output channel.
    max_tiles, max_side, max_bars : int or None
        Limits that keep the thumbnail small (``None``: the whole tensor, for the tensor view).

    Shape:
        ``(C, H, W)`` or batched ``(N, C, H, W)``: a grid of C feature maps.
        ``(H, W)``: a heat map (a side of 1 gives bars). ``(N,)``: bars.
    """
    a = np.asarray(arr)  # converted to float64 after slicing and shrinking: it may be huge
    if a.dtype.kind not in "fiub":
        a = np.zeros(a.shape)
    examples = 1
    if batched and a.ndim >= 1 and a.shape[0] >= 1:
        examples = a.shape[0]
        if not 0 <= example < examples:
            raise IndexError(f"example {example} is outside the batch of {examples}")
        a = a[example]
    else:
        example = 0
    a = np.squeeze(a) if a.ndim == 2 and 1 in a.shape else a
    if a.size <= 1 and a.ndim <= 1:
        kind, data, tiles, shown, total = "none", a.reshape(-1), (0, 0), a.size, a.size
    elif a.ndim == 1:
        data = _bars(a.astype(np.float64), max_bars)
        kind, tiles, shown, total = "bars", (0, 0), data.size, a.size
    elif a.ndim == 2:
        data = _shrink(a, max_side)
        kind, tiles, shown, total = "heatmap", (0, 0), 1, 1
    else:
        if kernel and a.ndim == 4:
            maps, cols = a.reshape(-1, *a.shape[2:]), a.shape[1]
            if max_tiles is not None and len(maps) > max_tiles:
                cols = None
        else:
            maps, cols = a.reshape(-1, *a.shape[-2:]), None
        data, tiles, shown, total = _tile(maps, max_tiles, max_side, cols)
        kind = "grid"
    data = np.asarray(data, dtype=np.float64)
    finite = data[np.isfinite(data)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    return Thumbnail(kind, data.astype(np.float32), lo, hi, tiles, shown, total,
                     example, examples)


# --------------------------------------------------------- magnitude scale
@dataclass(frozen=True)
class MagnitudeScale:
    """Gradient magnitudes on a log scale mapped to 0..1 (faint: vanishing, 1: exploding).

    Attributes
    ----------
    lo, hi : float
        Magnitudes drawn at 0 and at 1; everything outside is clipped.

    Example
    -------
    >>> s = MagnitudeScale(1e-6, 1e2)
    >>> s.level(1e-2)
    0.5
    """

    lo: float = 1e-6
    hi: float = 1e2

    def __post_init__(self):
        if not (0 < self.lo < self.hi and math.isfinite(self.hi)):
            raise ValueError(f"a magnitude scale needs 0 < lo < hi; got {self.lo}, {self.hi}")

    def level(self, magnitude) -> float:
        """0..1 for ``magnitude`` (0 for zero, 1 for NaN/Inf: those must stand out)."""
        m = float(magnitude)
        if not math.isfinite(m):
            return 1.0
        if m <= 0:
            return 0.0
        t = (math.log10(m) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        return min(1.0, max(0.0, t))

    def ticks(self) -> list:
        """``(magnitude, level)`` at every power of ten from ``lo`` to ``hi``, for a legend."""
        first, last = math.ceil(math.log10(self.lo) - 1e-9), math.floor(math.log10(self.hi) + 1e-9)
        return [(10.0 ** e, self.level(10.0 ** e)) for e in range(first, last + 1)]

    @classmethod
    def fit(cls, magnitudes, decades_min: int = 2) -> MagnitudeScale:
        """The whole decades spanning the finite, positive ``magnitudes`` (default if none)."""
        m = np.asarray([float(v) for v in magnitudes], np.float64)
        m = m[np.isfinite(m) & (m > 0)]
        if not m.size:
            return cls()
        lo = math.floor(math.log10(m.min()))
        hi = max(math.ceil(math.log10(m.max())), lo + decades_min)
        return cls(10.0 ** lo, 10.0 ** hi)


@dataclass(frozen=True)
class TensorView:
    """Everything the tensor view shows for one array: statistics, histogram, picture."""

    summary: TensorSummary
    counts: np.ndarray
    edges: np.ndarray
    thumbnail: Thumbnail


def tensor_view(arr, *, batched: bool = False, example: int = 0, kernel: bool = False,
                full: bool = False, bins: int = HIST_BINS) -> TensorView:
    """:func:`summarize`, :func:`histogram` and :func:`thumbnail` of ``arr`` together.

    ``full=True`` draws every tile at full size (the tensor view), not a thumbnail.
    """
    counts, edges = histogram(arr, bins)
    limits = {"max_tiles": None, "max_side": None, "max_bars": None} if full else {}
    return TensorView(summarize(arr), counts, edges,
                      thumbnail(arr, batched=batched, example=example, kernel=kernel, **limits))
