"""Pooling kernels: max pooling with its first-maximum mask, and average pooling.

Both work on the batch-last layout (:mod:`core.kernels.layout`), channel group by
channel group in the thread pool. When pooling windows tile the input exactly, the
maximum is taken row then column over whole rows of a tile view, and in training the
forward pass marks each window's first maximum in a mask, so that backward is one pass.
"""

from __future__ import annotations

import numpy as np

from core.kernels import compiled
from core.kernels.layout import batch_first, batch_last, pad_batch_last, tap
from core.kernels.threads import COMPILED_PART_BYTES, even_spans, part_spans, run_parts

# A compiled pool of a few megabytes runs faster on one core than shared by two: one
# pass over memory, half of it in the other core's cache after a layer shared there
_POOL_MIN_SPLIT = 8 << 20


class PoolState:
    """What a pooling forward keeps for its backward."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


def tiles(kernel, stride, padding, hw) -> bool:
    """Whether pooling windows tile the plane exactly: each position is in one window."""
    return (tuple(stride) == tuple(kernel) and tuple(padding) == (0, 0)
            and hw[0] % kernel[0] == 0 and hw[1] % kernel[1] == 0)


def _tile_view(a, kernel):
    """The (C, OH, kh, OW, kw, B) view of a batch-last array whose windows tile it."""
    c, h, w, b = a.shape
    return a.reshape(c, h // kernel[0], kernel[0], w // kernel[1], kernel[1], b)


def _tile_max(src, kernel, out):
    """``out`` = the maximum of each window of a batch-last ``src`` that tiles exactly.

    The window rows are reduced first and then the columns, each step one pass
    over whole rows of the (C, OH, kh, OW, kw, B) view: 2×2 windows take 2
    passes instead of 4 over strided taps.
    """
    kh, kw = kernel
    x6 = _tile_view(src, kernel)
    rows = x6[:, :, 0]
    if kh > 1:
        rows = np.maximum(rows, x6[:, :, 1])
        for i in range(2, kh):
            np.maximum(rows, x6[:, :, i], out=rows)
    if kw == 1:
        np.copyto(out, rows[:, :, :, 0])
        return
    np.maximum(rows[:, :, :, 0], rows[:, :, :, 1], out=out)
    for j in range(2, kw):
        np.maximum(out, rows[:, :, :, j], out=out)


def _mark_first_max(src, best, kernel, mask):
    """``mask`` (like ``src``) marks the first position of each tile's maximum ``best``.

    One comparison of the whole input with the maxima spread over their tiles, then
    ties are broken: a position stays marked only if no earlier one of its tile is.
    """
    kh, kw = kernel
    m6 = _tile_view(mask, kernel)
    np.equal(_tile_view(src, kernel), best[:, :, None, :, None, :], out=m6)
    taken = None
    for t in range(1, kh * kw):
        prev = m6[:, :, (t - 1) // kw, :, (t - 1) % kw]
        if taken is None:
            taken = prev.copy() if kh * kw > 2 else prev
        else:
            np.logical_or(taken, prev, out=taken)
        hit = m6[:, :, t // kw, :, t % kw]
        np.greater(hit, taken, out=hit)  # hit and no earlier hit


def _first_hits(src, best, kernel, stride, out_hw):
    """Yield ``(tap, mask)``: where each window's maximum ``best`` sits in the padded ``src``.

    When several values of a window equal the maximum (MNIST's zero background
    makes this common), only the first in row-major window order is marked, so
    the gradient goes to one place. The mask array is reused between taps.
    """
    kh, kw = kernel
    hit = np.empty(best.shape, dtype=bool)
    taken = np.empty(best.shape, dtype=bool)
    for t in range(kh * kw):
        np.equal(tap(src, t // kw, t % kw, stride, (1, 1), out_hw), best, out=hit)
        if t:
            np.greater(hit, taken, out=hit)  # hit and not yet taken
        if t < kh * kw - 1:
            if t:
                np.logical_or(taken, hit, out=taken)
            else:
                np.copyto(taken, hit)
        yield t, hit


def max_pool2d_forward(scratch, x, kernel, stride, padding, out_hw, want_indices=True,
                       training=False):
    """The maximum of each window, and (when ``want_indices``) where it was.

    An index is the flat position (row · W + col) of the first maximum in
    row-major window order within its channel's H×W plane; padding counts as −∞.
    ``training`` with windows that tile the input marks the maxima for backward.

    Shape:
        x (B, C, H, W) -> out (B, C, OH, OW), indices (B, C, OH, OW) int64 or ``None``
    """
    nb = compiled.kernels()
    if nb is not None:
        try:
            return _max_pool_forward_compiled(nb, scratch, x, kernel, stride, padding, out_hw,
                                              want_indices, training)
        except Exception as exc:  # noqa: BLE001 - a kernel that does not compile
            compiled.failed("max_pool2d", exc)
    (ph, pw), (kh, kw) = padding, kernel
    oh, ow = out_hw
    h, w = x.shape[2:]
    fill = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    xp = pad_batch_last(batch_last(x), ph, pw, fill, scratch=scratch)
    c, bsz = xp.shape[0], xp.shape[3]
    best = scratch.get("out", (c, oh, ow, bsz), x.dtype)
    idx = offsets = origin = None
    if want_indices:
        idx = scratch.get("indices", (c, oh, ow, bsz), np.int64)
        # flat index in the unpadded plane: window origin plus the tap's offset
        origin = ((np.arange(oh) * stride[0] - ph)[:, None] * w
                  + (np.arange(ow) * stride[1] - pw)[None, :]).astype(np.int64)
        offsets = np.array([ki * w + kj for ki in range(kh) for kj in range(kw)], np.int64)
    tiled = tiles((kh, kw), stride, (ph, pw), (h, w))
    # windows that tile the input: in training, the forward pass marks each window's
    # (first) maximum in a mask of the input's size while the input is in cache, and
    # backward is then one pass that spreads the gradient through it: a dearer forward
    # buys a much cheaper backward
    mask = scratch.get("mask", xp.shape, np.bool_) if tiled and training else None

    def part(span):
        c0, c1 = span
        src, b = xp[c0:c1], best[c0:c1]
        # the maximum alone (and the mask above): where it was is worked out
        # here only if the indices output is connected, which costs less than
        # tracking the winning tap through every comparison
        if tiled:
            _tile_max(src, (kh, kw), b)
            if mask is not None:
                _mark_first_max(src, b, (kh, kw), mask[c0:c1])
        else:
            np.copyto(b, tap(src, 0, 0, stride, (1, 1), out_hw))
            for t in range(1, kh * kw):
                np.maximum(b, tap(src, t // kw, t % kw, stride, (1, 1), out_hw), out=b)
        if want_indices:
            # the winning tap's number, then its offset in the plane (mode="clip"
            # skips take's costly bounds check; the codes are valid)
            code = np.zeros(b.shape, dtype=np.uint8 if kh * kw < 256 else np.int32)
            for t, hit in _first_hits(src, b, (kh, kw), stride, out_hw):
                if t:
                    code += hit.view(np.uint8) * code.dtype.type(t)
            np.take(offsets, code, out=idx[c0:c1], mode="clip")
            idx[c0:c1] += origin[None, :, :, None]

    run_parts(part, even_spans(c, xp[0].nbytes + best[0].nbytes))
    state = PoolState(xp=xp, best=best, hw=(h, w), out_hw=out_hw, mask=mask, kernel=kernel,
                      stride=stride, padding=padding, compiled=False)
    return batch_first(best), (batch_first(idx) if want_indices else None), state


def max_pool2d_backward(scratch, state, g):
    """The gradient of :func:`max_pool2d_forward`: each window's gradient goes to its
    first maximum.

    Shape:
        g (B, C, OH, OW) -> gx (B, C, H, W)
    """
    if state.compiled:
        return _max_pool_backward_compiled(scratch, state, g)
    (ph, pw), (kh, kw), stride = state.padding, state.kernel, state.stride
    # a batch-first gradient (from a Flatten, say) is made batch-last once, so that
    # the loops below read runs of B contiguous numbers
    gl = np.ascontiguousarray(batch_last(g))
    # windows that tile the input exactly write every position once: no zeroing, no adds
    h, w = state.hw
    tiled = tiles((kh, kw), stride, (ph, pw), (h, w))
    gxp = scratch.get("grad", state.xp.shape, g.dtype)
    mask = state.mask

    def part(span):
        c0, c1 = span
        dst, gs = gxp[c0:c1], gl[c0:c1]
        if mask is not None:  # the maxima marked in forward: one pass
            np.multiply(gs[:, :, None, :, None, :], _tile_view(mask[c0:c1], (kh, kw)),
                        out=_tile_view(dst, (kh, kw)))
            return
        if not tiled:
            dst[...] = 0
        for t, hit in _first_hits(state.xp[c0:c1], state.best[c0:c1], (kh, kw), stride,
                                  state.out_hw):
            view = tap(dst, t // kw, t % kw, stride, (1, 1), state.out_hw)
            if tiled:
                np.multiply(gs, hit, out=view)
            else:
                view += gs * hit

    run_parts(part, even_spans(gxp.shape[0], 2 * gxp[0].nbytes))
    return batch_first(gxp[:, ph:ph + h, pw:pw + w, :])


def _code_dtype(kernel):
    """The smallest type that holds a tap number and the "no maximum" code ``kh·kw``."""
    return np.uint8 if kernel[0] * kernel[1] < 255 else np.int32


def _max_pool_forward_compiled(nb, scratch, x, kernel, stride, padding, out_hw, want_indices,
                               training):
    """:func:`max_pool2d_forward` in one compiled pass per part: the maximum and (for
    backward or the indices) the number of each window's first maximum's tap, with no
    padded copy and no mask of the input's size."""
    (ph, pw), (kh, kw), (sh, sw) = padding, kernel, stride
    oh, ow = out_hw
    xl = batch_last(x)
    if not xl.flags.c_contiguous:  # a batch-first input: made batch-last once
        buf = scratch.get("input", xl.shape, x.dtype)
        np.copyto(buf, xl)
        xl = buf
    c, h, w, bsz = xl.shape
    best = scratch.get("out", (c, oh, ow, bsz), x.dtype)
    code = (scratch.get("code", best.shape, _code_dtype(kernel)) if training or want_indices
            else np.empty((0, 0, 0, 0), _code_dtype(kernel)))
    idx = scratch.get("indices", best.shape, np.int64) if want_indices else None
    row_bytes = (kh * w + ow) * bsz * x.itemsize

    def part(span):
        nb.max_pool_rows(xl, span[0], span[1], kh, kw, sh, sw, ph, pw, best, code)
        if idx is not None:
            nb.pool_indices(code, span[0], span[1], kh, kw, sh, sw, ph, pw, w, idx)

    run_parts(part, part_spans(c * oh, 1, row_bytes, COMPILED_PART_BYTES,
                             _POOL_MIN_SPLIT))
    state = PoolState(x=xl, best=best, code=code if code.size else None, hw=(h, w),
                      out_hw=out_hw, kernel=kernel, stride=stride, padding=padding,
                      compiled=True, nb=nb)
    return batch_first(best), (batch_first(idx) if want_indices else None), state


def _max_pool_backward_compiled(scratch, state, g):
    """:func:`max_pool2d_backward` from the tap numbers the compiled forward kept."""
    nb = state.nb
    (ph, pw), (kh, kw), (sh, sw) = state.padding, state.kernel, state.stride
    oh, ow = state.out_hw
    xl = state.x
    c, h, w, bsz = xl.shape
    code = state.code
    if code is None:  # forward ran for inference: find the maxima again
        code = scratch.get("code", (c, oh, ow, bsz), _code_dtype(state.kernel))
        best = scratch.get("best", code.shape, xl.dtype)
        run_parts(lambda s: nb.max_pool_rows(xl, s[0], s[1], kh, kw, sh, sw, ph, pw, best,
                                             code),
                  part_spans(c * oh, 1, (kh * w + ow) * bsz * xl.itemsize, COMPILED_PART_BYTES,
                             _POOL_MIN_SPLIT))
    gl = np.ascontiguousarray(batch_last(g))
    gx = scratch.get("grad", xl.shape, g.dtype)
    if tiles(state.kernel, state.stride, state.padding, (h, w)):
        # every input position lies in one window: written once, no zeroing
        run_parts(lambda s: nb.max_pool_back_tiled(gl, code, s[0], s[1], kh, kw, gx),
                  part_spans(c * oh, 1, 2 * kh * w * bsz * g.itemsize, COMPILED_PART_BYTES,
                             _POOL_MIN_SPLIT))
    else:
        # windows that overlap add into the same rows: parts are whole channels
        run_parts(lambda s: nb.max_pool_back_add(gl, code, s[0], s[1], kh, kw, sh, sw, ph, pw,
                                                 gx),
                  part_spans(c, 1, 2 * h * w * bsz * g.itemsize, COMPILED_PART_BYTES,
                             _POOL_MIN_SPLIT))
    return batch_first(gx)


class RowPool:
    """The max pool of a feature map made row span by row span (a thin convolution's
    output), pooled by the part that made the rows, while they are in its core's cache.

    Only windows that tile the map, with the compiled kernels: ``RowPool.make`` returns
    ``None`` otherwise. Pass :meth:`rows` as the producer's ``after_rows`` callback (spans
    of whole multiples of :attr:`unit` rows), then :meth:`result` with the map: the
    numbers and the state of :func:`max_pool2d_forward` on the whole map.
    """

    @classmethod
    def make(cls, scratch, shape, dtype, kernel, stride, padding, training):
        """For a batch-last (C, H, W, B) map of ``shape``; ``None`` if it cannot run so."""
        nb = compiled.kernels()
        if nb is None or not tiles(kernel, stride, padding, shape[1:3]):
            return None
        return cls(nb, scratch, shape, dtype, kernel, training)

    def __init__(self, nb, scratch, shape, dtype, kernel, training):
        c, h, w, bsz = shape
        self.nb, self.kernel, self.unit = nb, tuple(kernel), kernel[0]
        self.out_hw = (h // kernel[0], w // kernel[1])
        self.best = scratch.get("out", (c,) + self.out_hw + (bsz,), dtype)
        self.code = (scratch.get("code", self.best.shape, _code_dtype(kernel)) if training
                     else np.empty((0, 0, 0, 0), _code_dtype(kernel)))

    def rows(self, x, r0, r1):
        """Pool input rows ``r0:r1`` of the batch-last map ``x`` (whole windows)."""
        kh, kw = self.kernel
        self.nb.max_pool_row_span(x, r0 // kh, r1 // kh, kh, kw, self.best, self.code)

    def result(self, y):
        """``(out, None, state)`` as :func:`max_pool2d_forward` gives them (no indices), once
        every row of the map ``y`` (B, C, H, W) is pooled."""
        x = batch_last(y)
        state = PoolState(x=x, best=self.best, code=self.code if self.code.size else None,
                          hw=x.shape[1:3], out_hw=self.out_hw, kernel=self.kernel,
                          stride=self.kernel, padding=(0, 0), compiled=True, nb=self.nb)
        return batch_first(self.best), None, state


def avg_pool2d_forward(x, kernel, stride, padding, out_hw):
    """The mean of each window; padding counts as zeros.

    Shape:
        x (B, C, H, W) -> out (B, C, OH, OW)
    """
    (ph, pw), (kh, kw) = padding, kernel
    xp = pad_batch_last(batch_last(x), ph, pw)
    total = None
    for ki in range(kh):
        for kj in range(kw):
            v = tap(xp, ki, kj, stride, (1, 1), out_hw)
            if total is None:
                total = v.copy()
            else:
                total += v
    total *= x.dtype.type(1.0 / (kh * kw))
    state = PoolState(xp_shape=xp.shape, hw=x.shape[2:], out_hw=out_hw, kernel=kernel,
                      stride=stride, padding=padding)
    return batch_first(total), state


def avg_pool2d_backward(state, g):
    """The gradient of :func:`avg_pool2d_forward`: ``g/(kh·kw)`` to every tap of its window.

    Shape:
        g (B, C, OH, OW) -> gx (B, C, H, W)
    """
    (ph, pw), (kh, kw), stride = state.padding, state.kernel, state.stride
    gl = batch_last(g) * g.dtype.type(1.0 / (kh * kw))
    gxp = np.zeros(state.xp_shape, dtype=g.dtype)
    for ki in range(kh):
        for kj in range(kw):
            view = tap(gxp, ki, kj, stride, (1, 1), state.out_hw)
            view += gl
    h, w = state.hw
    return batch_first(gxp[:, ph:ph + h, pw:pw + w, :])


@compiled.warm_up_with
def _warm_compiled() -> None:
    """Compile (or read from the disk cache) every max-pool kernel for float32 and float64
    with the argument types this module gives them (C-contiguous batch-last arrays, uint8
    tap codes, int64 indices, Python ints) and the presets' window sizes (2×2, 3×3; the
    maximum's kernel is made per size), so no later step of a preset compiles."""
    nb = compiled.kernels()  # the loading thread's module
    c, h, w, b = 1, 4, 4, 2
    for dtype in (np.float32, np.float64):
        x = np.zeros((c, h, w, b), dtype)
        best = np.zeros((c, 2, 2, b), dtype)
        code = np.zeros(best.shape, np.uint8)
        idx = np.zeros(best.shape, np.int64)
        for kept in (code, np.empty((0, 0, 0, 0), np.uint8)):  # training / inference
            nb.max_pool_rows(x, 0, 2, 2, 2, 2, 2, 0, 0, best, kept)
            nb.max_pool_row_span(x, 0, 2, 2, 2, best, kept)  # a convolution's rows (RowPool)
            nb.max_pool_rows(x, 0, 1, 3, 3, 1, 1, 0, 0, best, kept)  # the other preset size
        nb.pool_indices(code, 0, 2, 2, 2, 2, 2, 0, 0, w, idx)
        gx = np.zeros_like(x)
        nb.max_pool_back_tiled(best, code, 0, 2, 2, 2, gx)
        nb.max_pool_back_add(best, code, 0, 1, 2, 2, 2, 2, 0, 0, gx)
