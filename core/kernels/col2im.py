"""The input gradient of a convolution: col2im fused with its product, channel group by group,
and the shifted col2im of stride-1 convolutions.

Both return jobs for :func:`core.kernels.threads.run_jobs`, so that the input gradient's
parts share one hand-out of the thread pool with the kernel gradient's.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

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


def col2im_shifted(w4, gc, gxp, dilation, out_hw, sums, gpad, block_for):
    """The gradient of the padded input of a stride-1 convolution, with few passes over memory.

    ``gxp[c, y, x] = Σ W[o, c, ki, kj] · G[o, y − d₀·ki, x − d₁·kj]`` is computed
    in two steps. (1) The output gradient ``G`` is laid out at the padded
    input's row pitch (``W'·B`` numbers a row, zeros after the first ``OW·B``),
    so a shift by ``kj`` columns is a shift of the flat index; stacking the
    ``kw`` shifted copies of it gives a matrix ``P`` of ``O·kw`` rows, and one
    product ``S = Wₘ · P`` with ``Wₘ[(c, ki), (o, kj)] = W[o, c, ki, kj]``
    sums over ``o`` and ``kj`` at once. (2) Each channel adds its ``kh`` rows of
    ``S``, each shifted by ``ki`` input rows: ``kh`` contiguous adds.

    Compared with the plain col2im (a slab of ``C·kh·kw`` rows from a product
    whose inner dimension is only ``O``, then ``kh·kw`` adds per channel) this
    writes ``kw`` times less, and its product has an inner dimension of
    ``O·kw``, which BLAS runs closer to its peak. It does more multiply-adds (the
    zeros of the row pitch), which cost less than the memory traffic they save.

    ``w4`` is the (O, C, kh, kw) kernel, ``gc`` the (O, OH·OW·B) output gradient,
    ``gxp`` the (C, H', W', B) result; ``sums`` (C·kh, OH·W'·B) and ``gpad``
    (O, d₁(kw−1)·B + OH·W'·B) are buffers, ``block_for(n)`` lends a thread the
    (O·kw, n) block of ``P`` a part fills. Returns the jobs of step 1 and of
    step 2 for :func:`run_jobs`; step 2 must run after step 1.
    """
    o, c, kh, kw = w4.shape
    bsz = gxp.shape[3]
    oh, ow = out_hw
    d0, d1 = dilation
    pitch = gxp.shape[2] * bsz
    n = oh * pitch
    lead = d1 * (kw - 1) * bsz  # zeros before the first row: what a shift reads there
    gpad[:, :lead] = 0
    rows = gpad[:, lead:].reshape(o, oh, pitch)
    rows[:, :, ow * bsz:] = 0
    rows[:, :, :ow * bsz] = gc.reshape(o, oh, ow * bsz)
    wm = np.ascontiguousarray(w4.transpose(1, 2, 0, 3)).reshape(c * kh, o * kw)
    item = gc.itemsize

    def part(span):
        t0, t1 = span
        shifted = block_for(t1 - t0)
        # row (o, kj) of P is G moved kj columns on: kj·B numbers back in gpad
        np.copyto(shifted.reshape(o, kw, t1 - t0),
                  as_strided(gpad[:, lead + t0:], (o, kw, t1 - t0),
                             (gpad.strides[0], -d1 * bsz * item, item), writeable=False))
        np.matmul(wm, shifted, out=sums[:, t0:t1])

    def add_rows(span):
        c0, c1 = span
        dst = gxp[c0:c1].reshape(c1 - c0, -1)
        by_row = sums.reshape(c, kh, n)[c0:c1]
        dst[:, :n] = by_row[:, 0]
        dst[:, n:] = 0
        for ki in range(1, kh):
            view = dst[:, ki * d0 * pitch:ki * d0 * pitch + n]
            np.add(view, by_row[:, ki], out=view)

    return ((part, part_spans(n, bsz, o * kw * item)),
            (add_rows, even_spans(c, (kh * n + gxp[0].size) * item)))
