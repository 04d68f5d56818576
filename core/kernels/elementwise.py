"""Big elementwise ops (ReLU, masks) in memory order, in parts, into reused buffers.

A ReLU or dropout after an image layer handles megabytes per batch. Done as
whole-array NumPy calls, each pass allocates its result afresh (page faults:
the allocator hands big blocks back to the system) and every pass streams the
whole array from memory. Here the result goes to a buffer of the op's
:class:`~core.kernels.scratch.Scratch`, and the work is cut into spans of the
arrays' memory that the thread pool shares; both passes over a span run while it
is in cache. Every number is computed as the plain expression computes it, so the
results are the same bits for any cut and any thread count. A big dropout mask is the one
exception to the plain expression: its parts draw their own numbers, so its parts
(:data:`_DRAW_SPLIT_BYTES`, :data:`_DRAW_PART`) decide the mask, never the thread count.

Arrays under the pool's split size, or whose layouts differ, take the plain NumPy
expressions. Without a scratch (``None``: an evaluation run, whose batches are of another
size) the results are new arrays, so no buffer of that size outlives the run.
"""

from __future__ import annotations

import numpy as np

from core.kernels import compiled
from core.kernels.layout import batch_first, batch_last, in_layout_of
from core.kernels.threads import even_spans, run_parts

# Spans of at most 1 MB of the input: a span's passes then run out of the core's cache
_SPAN_BYTES = 1 << 20


def _flat(a):
    """``a`` as a 1-D view in its memory order, or ``None`` when that needs a copy."""
    flat = a.ravel(order="K")
    # a copy never overlaps the array; a view of all of it always does
    return flat if np.may_share_memory(flat, a) else None


def _like(scratch, tag, ref, dtype):
    """A buffer laid out like ``ref`` (same strides order), as ``ref``'s shape: lent by
    ``scratch``, or a new array for ``None``."""
    order = sorted(range(ref.ndim), key=lambda i: -ref.strides[i])
    shape = tuple(ref.shape[i] for i in order)
    buf = np.empty(shape, dtype) if scratch is None else scratch.get(tag, shape, dtype)
    return buf.transpose(np.argsort(order))


def _spans(n, item_bytes):
    return even_spans(n, item_bytes, _SPAN_BYTES)


def _worth_it(a) -> bool:
    return len(_spans(a.size, a.itemsize)) > 1


_zero_rows: dict = {}


def _zeros(n, dtype):
    """``n`` zeros of ``dtype`` (a shared read-only view): NumPy's maximum against an array
    runs its vector loop, against the scalar 0 a loop several times slower."""
    dtype = np.dtype(dtype)
    have = _zero_rows.get(dtype)
    if have is None or have.size < n:
        # calloc'd: the pages map to the system's zero page until written, and are never
        have = np.zeros(max(n, 1 << 16), dtype)
        have.flags.writeable = False
        _zero_rows[dtype] = have
    return have[:n]


def relu_forward(scratch, x):
    """``(max(x, 0), x > 0)`` of an ndarray, laid out as ``x``."""
    xf = _flat(x)
    if xf is None:
        return np.maximum(x, 0), x > 0
    big = x.ndim > 1 and _worth_it(x)
    if big:
        y = _like(scratch, "relu", x, x.dtype)
        mask = _like(scratch, "relu-mask", x, np.bool_)
    else:  # new arrays in x's memory order (order "K"), as np.maximum would make them
        y, mask = np.empty_like(x), np.empty_like(x, dtype=np.bool_)
    yf, mf = _flat(y), _flat(mask)

    def part(span):
        s = slice(*span)
        np.greater(xf[s], 0, out=mf[s])
        np.maximum(xf[s], _zeros(span[1] - span[0], x.dtype), out=yf[s])

    if big:
        run_parts(part, _spans(xf.size, x.itemsize))
    else:
        part((0, xf.size))
    return y, mask


class RowReLU:
    """A ReLU applied to a feature map row span by row span, by the part that made the rows
    (a convolution's), while they are in its core's cache: one pass over memory fewer than
    :func:`relu_forward` after the whole map.

    Needs the compiled kernels: ``RowReLU.make`` returns ``None`` otherwise. Pass
    :meth:`rows` as the producer's ``after_rows`` callback, then :meth:`result` with the map:
    the numbers of :func:`relu_forward` (NaN and −0.0 included).
    """

    @classmethod
    def make(cls, scratch, shape):
        """For a batch-last (C, H, W, B) map of ``shape``; ``None`` if it cannot run so.
        ``scratch`` lends the mask (``None``: a new one, as :func:`relu_forward` does)."""
        nb = compiled.kernels()
        if nb is None:
            return None
        return cls(nb, scratch, tuple(shape))

    def __init__(self, nb, scratch, shape):
        self.nb = nb
        # the buffer relu_forward uses for a mask of this layout
        self.mask = (np.empty(shape, np.bool_) if scratch is None
                     else scratch.get("relu-mask", shape, np.bool_))

    def rows(self, y4, r0, r1):
        """ReLU in place on rows ``r0:r1`` of the batch-last map ``y4``, and their mask."""
        self.nb.relu_rows(y4, self.mask, r0, r1)

    def whole(self, y):
        """ReLU in place on all of the (B, C, H, W) map ``y`` of batch-last memory, at once: for
        a producer whose parts made no whole rows."""
        self.rows(batch_last(y), 0, y.shape[2])

    def result(self, y):
        """``(y, mask)`` as :func:`relu_forward` gives them, once every row of the map ``y``
        (B, C, H, W; made and activated in place) is done."""
        return y, batch_first(self.mask)


@compiled.warm_up_with
def _warm_row_relu() -> None:
    """Compile (or read from the disk cache) the row ReLU for float32 and float64 maps."""
    for dtype in (np.float32, np.float64):
        relu = RowReLU.make(None, (2, 2, 2, 2))
        if relu is not None:
            relu.rows(np.zeros((2, 2, 2, 2), dtype), 0, 2)


def times_mask(scratch, g, mask, tag="grad"):
    """``g · mask`` computed in the memory order of ``mask`` (a ReLU's or dropout's gradient).

    A gradient laid out otherwise (batch-first, from a Flatten) is reordered slab by slab
    of the mask's outermost axis, each slab multiplied while it is in cache.
    """
    if g.ndim < 2 or g.shape != mask.shape or not _worth_it(g):
        return in_layout_of(g, mask) * mask
    out = _like(scratch, tag, mask, np.result_type(g.dtype, mask.dtype))
    gf = _flat(g) if _same_order(g, mask) else None
    mf, of = _flat(mask), _flat(out)
    if gf is not None and mf is not None and of is not None:
        def part(span):
            s = slice(*span)
            np.multiply(gf[s], mf[s], out=of[s])

        run_parts(part, _spans(gf.size, g.itemsize))
        return out
    axis = max(range(mask.ndim), key=lambda i: mask.strides[i])
    n = mask.shape[axis]

    def slab(span):
        cut = (slice(None),) * axis + (slice(*span),)
        np.copyto(out[cut], g[cut])
        np.multiply(out[cut], mask[cut], out=out[cut])

    run_parts(slab, even_spans(n, g.nbytes // n, _SPAN_BYTES))
    return out


def dropout_forward(scratch, x, u, p, scale):
    """``(x · m, m)`` with ``m = (u ≥ p) · scale``, for ``u`` laid out as ``x``."""
    xf = _flat(x) if x.ndim > 1 and _worth_it(x) and _same_order(x, u) else None
    uf = _flat(u) if xf is not None else None
    if xf is None or uf is None:
        mask = (u >= p) * scale
        return x * mask, mask
    mask = _like(scratch, "dropout-mask", x, np.result_type(x.dtype, scale))
    y = _like(scratch, "dropout", x, np.result_type(x.dtype, mask.dtype))
    mf, yf = _flat(mask), _flat(y)

    def part(span):
        s = slice(*span)
        np.multiply(uf[s] >= p, scale, out=mf[s])
        np.multiply(xf[s], mf[s], out=yf[s])

    run_parts(part, _spans(xf.size, x.itemsize))
    return y, mask


# A mask this big is drawn in parts, each with a generator of its own: NumPy's generator
# draws on one thread. Changing either number changes the masks a seed gives
_DRAW_SPLIT_BYTES = 1 << 21
# numbers a part draws: halving it evens out two threads' share of the Keras CNN's mask
# (nine parts) but costs more in each part's own generator and calls than it saves
_DRAW_PART = 1 << 17


def dropout_draw_forward(scratch, x, rng, p, scale, draw):
    """:func:`dropout_forward` with the uniform numbers drawn here in parts, or ``None``
    (nothing drawn) for an ``x`` too small for it or not laid out as one block.

    Each part of :data:`_DRAW_PART` numbers, in ``x``'s memory order, draws from a
    generator seeded by a number ``rng`` draws for it, then makes its share of the mask and
    the output while the numbers are in cache. The parts are fixed by the size alone, so
    the mask is the same on any number of threads, and a replay from the same ``rng``
    draws it again.
    """
    xf = _flat(x) if x.ndim > 1 and scratch is not None else None
    if xf is None or x.size * np.dtype(draw).itemsize < _DRAW_SPLIT_BYTES:
        return None
    n = x.size
    u = scratch.get("draw", (n,), draw)
    mask = _like(scratch, "dropout-mask", x, np.result_type(x.dtype, scale))
    y = _like(scratch, "dropout", x, np.result_type(x.dtype, mask.dtype))
    mf, yf = _flat(mask), _flat(y)
    spans = [(i, min(n, i + _DRAW_PART)) for i in range(0, n, _DRAW_PART)]
    seeds = rng.integers(0, 2 ** 63, size=len(spans), dtype=np.int64)

    def part(k):
        s = slice(*spans[k])
        np.random.Generator(np.random.PCG64(int(seeds[k]))).random(out=u[s], dtype=draw)
        np.multiply(u[s] >= p, scale, out=mf[s])
        np.multiply(xf[s], mf[s], out=yf[s])

    run_parts(part, range(len(spans)))
    return y, mask


def _same_order(a, b) -> bool:
    """Whether ``a`` and ``b`` (same shape) lay their axes out in the same memory order."""
    if a.shape != b.shape:
        return False
    key = lambda s: sorted(range(len(s)), key=lambda i: -s[i])  # noqa: E731
    return key(a.strides) == key(b.strides)
