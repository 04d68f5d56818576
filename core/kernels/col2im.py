"""The input gradient of a convolution: col2im fused with its product, channel group by group,
and the shifted col2im of stride-1 convolutions.

Both return jobs for :func:`core.kernels.threads.run_jobs`, so that the input gradient's
parts share one hand-out of the thread pool with the kernel gradient's.
"""

from __future__ import annotations

import numpy as np

from core.kernels.layout import tap
from core.kernels.matmul import matmul_cols
from core.kernels.threads import even_spans, part_spans


def col2im_matmul(w2, gc, gxp, kernel, stride, dilation, out_hw, slabs=None):
    """``gxp = col2im(w2ᵀ · gc)``: the gradient of the padded input, channel group by group.

    A group's slab of columns is made and scattered back while it is in cache;
    channel groups write disjoint parts of ``gxp``, so they run in parallel.
    ``slabs`` (C·kh·kw, N), if given, is where the slabs go (a reused buffer).
    Returns the job ``(part, parts)`` for :func:`run_jobs`.
    """
    c = gxp.shape[0]
    kh, kw = kernel
    bsz = gxp.shape[3]
    o, n = gc.shape
    taps = kh * kw
    w2t = np.ascontiguousarray(w2.T)  # (C·kh·kw, O)
    if slabs is None:
        slabs = np.empty((c * taps, n), dtype=gc.dtype)

    def part(span):
        c0, c1 = span
        slab = slabs[c0 * taps:c1 * taps]
        matmul_cols(w2t[c0 * taps:c1 * taps], gc, slab)
        slab6 = slab.reshape(c1 - c0, kh, kw, out_hw[0], out_hw[1], bsz)
        dst = gxp[c0:c1]
        dst[...] = 0
        for ki in range(kh):
            for kj in range(kw):
                tap(dst, ki, kj, stride, dilation, out_hw)[...] += slab6[:, ki, kj]

    return part, part_spans(c, 1, taps * n * gc.itemsize)


def col2im_shifted(w4, gc, gxp, dilation, out_hw, sums, block_for):
    """The gradient of the padded input of a stride-1 convolution, with few passes over memory.

    ``gxp[c, y, x] = Σ W[o, c, ki, kj] · G[o, y − d₀·ki, x − d₁·kj]`` is computed
    in two steps. (1) The output gradient ``G`` is laid out at the padded
    input's row pitch (``W'·B`` numbers a row), so a shift by ``kj`` columns is a
    shift of the flat index; stacking the ``kw`` shifted copies of it gives a
    matrix ``P`` of ``O·kw`` rows, and one product ``S = Wₘ · P`` with
    ``Wₘ[(c, ki), (o, kj)] = W[o, c, ki, kj]`` sums over ``o`` and ``kj`` at once.
    (2) Each channel adds its ``kh`` rows of ``S``, each shifted by ``ki`` input
    rows: ``kh`` contiguous adds.

    Compared with the plain col2im (a slab of ``C·kh·kw`` rows from a product
    whose inner dimension is only ``O``, then ``kh·kw`` adds per channel) this
    writes ``kw`` times less, and its product has an inner dimension of
    ``O·kw``, which BLAS runs closer to its peak. It does more multiply-adds (the
    zeros of the row pitch), which cost less than the memory traffic they save.

    Step 1 runs in spans of whole output rows: row ``(o, kj)`` of a span's block of
    ``P`` holds, at column ``x`` of each padded row, ``G[o, y, x − d₁·kj]`` where that
    lies in ``0..OW−1`` and zero elsewhere, copied straight from ``gc`` (a laid-out copy
    of all of ``G`` first would be one more pass over it, on one thread, before any part
    could start).

    ``w4`` is the (O, C, kh, kw) kernel, ``gc`` the (O, OH·OW·B) output gradient,
    ``gxp`` the (C, H', W', B) result; ``sums`` (C·kh, OH·W'·B) is a buffer,
    ``block_for(n)`` lends a thread the (O·kw, n) block of ``P`` a part fills.
    Returns the jobs of step 1 and of step 2 for :func:`run_jobs`; step 2 must run
    after step 1.
    """
    o, c, kh, kw = w4.shape
    bsz = gxp.shape[3]
    oh, ow = out_hw
    d0, d1 = dilation
    wp = gxp.shape[2]
    pitch = wp * bsz
    n = oh * pitch
    g4 = gc.reshape(o, oh, ow, bsz)
    wm = np.ascontiguousarray(w4.transpose(1, 2, 0, 3)).reshape(c * kh, o * kw)
    item = gc.itemsize

    def part(span):
        r0, r1 = span
        shifted = block_for((r1 - r0) * pitch)
        rows = shifted.reshape(o, kw, r1 - r0, wp, bsz)
        for kj in range(kw):
            at = kj * d1
            rows[:, kj, :, :at] = 0
            rows[:, kj, :, at:at + ow] = g4[:, r0:r1]
            rows[:, kj, :, at + ow:] = 0
        np.matmul(wm, shifted, out=sums[:, r0 * pitch:r1 * pitch])

    def add_rows(span):
        c0, c1 = span
        dst = gxp[c0:c1].reshape(c1 - c0, -1)
        by_row = sums.reshape(c, kh, n)[c0:c1]
        dst[:, :n] = by_row[:, 0]
        dst[:, n:] = 0
        for ki in range(1, kh):
            view = dst[:, ki * d0 * pitch:ki * d0 * pitch + n]
            np.add(view, by_row[:, ki], out=view)

    return ((part, part_spans(oh, 1, o * kw * pitch * item)),
            (add_rows, even_spans(c, (kh * n + gxp[0].size) * item)))
