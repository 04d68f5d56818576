"""The numba kernels behind :mod:`core.kernels.compiled` (imported only from there).

Every kernel works on batch-last arrays (:mod:`core.kernels.layout`): the
innermost loop runs over the batch, B contiguous numbers, which the compiler
turns into vector instructions. A kernel does one part of an op (a span of rows
or channels fixed by the shapes), writes only that part's share of its output,
and runs without the GIL, so the thread pool's threads run parts side by side.
Kernels: max pooling (forward with the tap of each maximum, backward), the direct
convolution of thin layers and their kernel gradient, and a ReLU applied to the rows a
convolution just made.
"""

from __future__ import annotations

import numba
import numpy as np

_jit = numba.njit(nogil=True, cache=True)


# ------------------------------------------------------------------ max pooling

_pool_rows = {}


def pool_rows(kh, kw):
    """The compiled max-pool kernel for ``kh × kw`` windows (made once per size), behind
    :func:`max_pool_rows` and :func:`max_pool_row_span`.

    The window size is a constant of the compiled code: the taps' loop unrolls inside the
    batch loop, so each window's maximum and the number of its tap stay in vector
    registers and are stored once. Tracking the tap through a loop over run-time taps,
    batch loop inside, kept its stores scalar: many times slower than the maximum alone.
    """
    fns = _pool_rows.get((kh, kw))
    if fns is None:
        fns = _pool_rows.setdefault((kh, kw), _make_pool_rows(kh, kw))
    return fns


@numba.njit(inline="always")
def _inside_max(xc, y0, x0, b, kw, taps):
    """The maximum of a window inside the input at batch position ``b``, and its first
    tap's number (``|`` and ``&``, not ``or`` and ``and``: no branches, vector code)."""
    m = xc[y0, x0, b]
    t = 0
    for k in range(1, taps):
        v = xc[y0 + k // kw, x0 + k % kw, b]
        # NaN wins once and stays, as np.maximum propagates it
        up = (v > m) | ((v != v) & (m == m))
        m = v if up else m
        t = k if up else t
    return m, t


@numba.njit(inline="always")
def _edge_max(xc, y0, x0, first, h, w, b, kw, taps):
    """:func:`_inside_max` of a window reaching into the padding, from ``first``, its first
    tap inside the input: taps in the padding take no part (that is what −∞ there means)."""
    m = xc[y0 + first // kw, x0 + first % kw, b]
    t = first
    for k in range(first + 1, taps):
        yy = y0 + k // kw
        xx = x0 + k % kw
        if 0 <= yy < h and 0 <= xx < w:
            v = xc[yy, xx, b]
            up = (v > m) | ((v != v) & (m == m))
            m = v if up else m
            t = k if up else t
    return m, t


def _make_pool_rows(kh, kw):
    taps = kh * kw

    @numba.njit(nogil=True, cache=True)
    def rows(x, r0, r1, p0, p1, sh, sw, ph, pw, best, code):
        """:func:`max_pool_rows` for this window size, of the rows ``r0:r1`` (flat over
        C·OH) that are output rows ``p0:p1`` of their channel."""
        _, h, w, nb = x.shape
        oh, ow = best.shape[1], best.shape[2]
        want = code.size > 0
        for r in range(r0, r1):
            c = r // oh
            i = r - c * oh
            if i < p0 or i >= p1:
                continue
            xc = x[c]
            y0 = i * sh - ph
            for j in range(ow):
                x0 = j * sw - pw
                bo = best[c, i, j]
                co = code[c, i, j] if want else code.ravel()
                if 0 <= y0 and y0 + kh <= h and 0 <= x0 and x0 + kw <= w:
                    if want:
                        for b in range(nb):
                            m, t = _inside_max(xc, y0, x0, b, kw, taps)
                            bo[b] = m
                            # a NaN maximum sits nowhere: no gradient goes back
                            co[b] = taps if m != m else t
                    else:
                        for b in range(nb):
                            bo[b] = _inside_max(xc, y0, x0, b, kw, taps)[0]
                    continue
                # a window reaching into the padding starts at its first tap inside the
                # input (it always holds one)
                first = 0
                while not (0 <= y0 + first // kw < h and 0 <= x0 + first % kw < w):
                    first += 1
                for b in range(nb):
                    m, t = _edge_max(xc, y0, x0, first, h, w, b, kw, taps)
                    bo[b] = m
                    if want:
                        co[b] = taps if m != m else t

    return rows


def max_pool_rows(x, r0, r1, kh, kw, sh, sw, ph, pw, best, code):
    """The maximum of every window of output rows ``r0:r1`` (flat over C·OH) and, when
    ``code`` is not empty, the number of its first maximum's tap (``kh·kw`` for a NaN).

    ``x`` is the unpadded (C, H, W, B) input: taps in the padding are skipped, which
    is what −∞ there means (a window always holds a real pixel).
    """
    pool_rows(kh, kw)(x, r0, r1, 0, best.shape[1], sh, sw, ph, pw, best, code)


def max_pool_row_span(x, p0, p1, kh, kw, best, code):
    """:func:`max_pool_rows` of output rows ``p0:p1`` of every channel, for windows that
    tile the input (stride = kernel, no padding): one call per span of rows."""
    pool_rows(kh, kw)(x, 0, x.shape[0] * best.shape[1], p0, p1, kh, kw, 0, 0, best, code)


@_jit
def pool_indices(code, r0, r1, kh, kw, sh, sw, ph, pw, w, idx):
    """Flat input positions (row · W + col) of the taps ``code`` names, rows ``r0:r1``;
    a window without a maximum (NaN) points at its first tap."""
    oh, ow, nb = code.shape[1], code.shape[2], code.shape[3]
    none = kh * kw
    # each tap's offset from its window's origin, looked up: a division by the run-time
    # kernel width in the batch loop kept it scalar; "none" takes the first tap
    offset = np.zeros(none + 1, np.int64)
    for t in range(none):
        offset[t] = (t // kw) * w + t % kw
    for r in range(r0, r1):
        c = r // oh
        i = r - c * oh
        for j in range(ow):
            origin = (i * sh - ph) * w + (j * sw - pw)
            co = code[c, i, j]
            out = idx[c, i, j]
            for b in range(nb):
                out[b] = origin + offset[co[b]]


@_jit
def max_pool_back_tiled(g, code, r0, r1, kh, kw, gx):
    """Windows that tile the input: every position of input rows ``r0·kh:r1·kh`` (flat
    over C·H) gets its window's gradient at the marked tap and zero elsewhere."""
    oh, ow, nb = g.shape[1], g.shape[2], g.shape[3]
    zero = np.zeros(1, dtype=gx.dtype)[0]
    for r in range(r0, r1):
        c = r // oh
        i = r - c * oh
        # input row by input row: the writes run along memory
        for ki in range(kh):
            for j in range(ow):
                gs = g[c, i, j]
                co = code[c, i, j]
                for kj in range(kw):
                    t = ki * kw + kj
                    dst = gx[c, i * kh + ki, j * kw + kj]
                    for b in range(nb):
                        dst[b] = gs[b] if co[b] == t else zero


@_jit
def max_pool_back_add(g, code, c0, c1, kh, kw, sh, sw, ph, pw, gx):
    """Overlapping (or gapped) windows, channels ``c0:c1``: zero the input gradient, then
    add each window's gradient at its marked tap, window by window in row-major order."""
    _, h, w, nb = gx.shape
    oh, ow = g.shape[1], g.shape[2]
    zero = np.zeros(1, dtype=gx.dtype)[0]
    for c in range(c0, c1):
        gx[c] = 0
        for i in range(oh):
            for j in range(ow):
                gs = g[c, i, j]
                co = code[c, i, j]
                for ki in range(kh):
                    y = i * sh - ph + ki
                    if y < 0 or y >= h:
                        continue
                    for kj in range(kw):
                        xx = j * sw - pw + kj
                        if xx < 0 or xx >= w:
                            continue
                        t = ki * kw + kj
                        dst = gx[c, y, xx]
                        # adding +0.0 where another tap won leaves every bit as it was (a
                        # sum that starts at +0.0 is never −0.0), and runs as vector code
                        for b in range(nb):
                            dst[b] += gs[b] if co[b] == t else zero


# ------------------------------------------------------------------ convolution

_conv_rows = {}


def conv_rows(kh, kw):
    """The direct-convolution kernel for ``kh × kw`` kernels (made once per size).

    The kernel size is a constant of the compiled code, so the taps' loops unroll and
    the batch loop, innermost, becomes vector instructions that keep the sum in a
    register; a loop over a run-time tap count stays scalar.
    """
    fn = _conv_rows.get((kh, kw))
    if fn is None:
        fn = _conv_rows.setdefault((kh, kw), _make_conv_rows(kh, kw))
    return fn


def _make_conv_rows(kh, kw):
    # FMA contraction only: each output's sum keeps its order, so any thread gives its bits
    @numba.njit(nogil=True, cache=True, fastmath={"contract"})
    def rows(xp, w, bias, y, r0, r1, sh, sw, dh, dw):
        """``y[o, i, j] = bias[o] + Σ_c Σ_taps w[o, c, ki, kj] · xp[c, i·sh + ki·dh,
        j·sw + kj·dw]`` for output rows ``r0:r1``, summed channel by channel, taps in
        row-major order; ``xp`` is the padded (C, H', W', B) input, ``y`` (O, OH, OW, B)."""
        o_n, c_n = w.shape[0], w.shape[1]
        ow, nb = y.shape[2], y.shape[3]
        with_bias = bias.size > 0
        zero = np.zeros(1, dtype=y.dtype)[0]  # a literal 0 would make the sums float64
        for i in range(r0, r1):
            y0 = i * sh
            for j in range(ow):
                x0 = j * sw
                # channel outermost: its windows stay in L1 while every output adds them;
                # the first channel starts each sum from the bias (no pass to set it)
                xc = xp[0]
                for o in range(o_n):
                    dst = y[o, i, j]
                    wc = w[o, 0]
                    start = bias[o] if with_bias else zero
                    for b in range(nb):
                        s = start
                        for ki in range(kh):
                            for kj in range(kw):
                                s += wc[ki, kj] * xc[y0 + ki * dh, x0 + kj * dw, b]
                        dst[b] = s
                for c in range(1, c_n):
                    xc = xp[c]
                    for o in range(o_n):
                        dst = y[o, i, j]
                        wc = w[o, c]
                        for b in range(nb):
                            s = dst[b]
                            for ki in range(kh):
                                for kj in range(kw):
                                    s += wc[ki, kj] * xc[y0 + ki * dh, x0 + kj * dw, b]
                            dst[b] = s

    return rows


_KGRAD_CHUNK = 1024  # numbers of a window row summed at a time: four kernels' share stays in L1


# FMA and reassociation (vector partial sums): the order is fixed by this code alone,
# so any thread gives the same bits
@numba.njit(nogil=True, cache=True, fastmath={"contract", "reassoc"})
def conv_kernel_grad(g, xp, acc, o0, o1, r0, r1, sh, dh, dw):
    """``acc[o − o0, c, ki, kj] = Σ_{i ∈ r0:r1, j, b} g[o, i, j, b] · xp[c, i·sh + ki·dh,
    j + kj·dw, b]`` for kernels ``o0:o1`` (at most 4) of a convolution with column stride 1.

    ``g`` is the (O, OH, OW, B) output gradient, ``xp`` the padded (C, H', W', B) input:
    with column stride 1 the numbers a kernel tap meets in an output row are one
    contiguous run of OW·B, so every sum is a dot product along it, taken a chunk at a
    time so that the chunk's gradient rows stay in cache for all taps; four kernels
    share each load of the input.
    """
    _, c_n, kh, kw = acc.shape
    _, oh, ow, nb = g.shape
    run = ow * nb
    zero = np.zeros(1, dtype=acc.dtype)[0]
    m = o1 - o0
    acc[:] = 0
    for i in range(r0, r1):
        for n0 in range(0, run, _KGRAD_CHUNK):
            n1 = min(run, n0 + _KGRAD_CHUNK)
            if m == 4:
                g0 = g[o0, i].ravel()[n0:n1]
                g1 = g[o0 + 1, i].ravel()[n0:n1]
                g2 = g[o0 + 2, i].ravel()[n0:n1]
                g3 = g[o0 + 3, i].ravel()[n0:n1]
                for c in range(c_n):
                    for ki in range(kh):
                        xrow = xp[c, i * sh + ki * dh].ravel()
                        for kj in range(kw):
                            q = kj * dw * nb + n0
                            xr = xrow[q:q + n1 - n0]
                            s0 = zero
                            s1 = zero
                            s2 = zero
                            s3 = zero
                            for n in range(n1 - n0):
                                v = xr[n]
                                s0 += g0[n] * v
                                s1 += g1[n] * v
                                s2 += g2[n] * v
                                s3 += g3[n] * v
                            acc[0, c, ki, kj] += s0
                            acc[1, c, ki, kj] += s1
                            acc[2, c, ki, kj] += s2
                            acc[3, c, ki, kj] += s3
            else:
                for q_o in range(m):
                    g0 = g[o0 + q_o, i].ravel()[n0:n1]
                    for c in range(c_n):
                        for ki in range(kh):
                            xrow = xp[c, i * sh + ki * dh].ravel()
                            for kj in range(kw):
                                q = kj * dw * nb + n0
                                xr = xrow[q:q + n1 - n0]
                                s0 = zero
                                for n in range(n1 - n0):
                                    s0 += g0[n] * xr[n]
                                acc[q_o, c, ki, kj] += s0


@numba.njit(nogil=True, cache=True, fastmath={"contract", "reassoc"})
def conv_kernel_grad_5x4(g, xp, acc, o0, o1, r0, r1, sh, dh, dw):
    """:func:`conv_kernel_grad` for kernels five taps wide, 4 kernels at a time
    (``o1 − o0`` ≤ 4; missing ones repeat the last): the 20 sums of a window row
    stay in registers through one pass along it, so each number loaded feeds several
    of them instead of one."""
    _, c_n, kh, _ = acc.shape
    _, oh, ow, nb = g.shape
    run = ow * nb
    zero = np.zeros(1, dtype=acc.dtype)[0]
    step = dw * nb
    acc[:] = 0
    for i in range(r0, r1):
        for n0 in range(0, run, _KGRAD_CHUNK):
            n1 = min(run, n0 + _KGRAD_CHUNK)
            g0 = g[o0, i].ravel()[n0:n1]
            g1 = g[min(o0 + 1, o1 - 1), i].ravel()[n0:n1]
            g2 = g[min(o0 + 2, o1 - 1), i].ravel()[n0:n1]
            g3 = g[min(o0 + 3, o1 - 1), i].ravel()[n0:n1]
            for c in range(c_n):
                for ki in range(kh):
                    row = xp[c, i * sh + ki * dh].ravel()
                    x0 = row[n0:n1]
                    x1 = row[n0 + step:n1 + step]
                    x2 = row[n0 + 2 * step:n1 + 2 * step]
                    x3 = row[n0 + 3 * step:n1 + 3 * step]
                    x4 = row[n0 + 4 * step:n1 + 4 * step]
                    s00 = s01 = s02 = s03 = s04 = zero
                    s10 = s11 = s12 = s13 = s14 = zero
                    s20 = s21 = s22 = s23 = s24 = zero
                    s30 = s31 = s32 = s33 = s34 = zero
                    for n in range(n1 - n0):
                        v0, v1, v2, v3, v4 = x0[n], x1[n], x2[n], x3[n], x4[n]
                        u = g0[n]
                        s00 += u * v0
                        s01 += u * v1
                        s02 += u * v2
                        s03 += u * v3
                        s04 += u * v4
                        u = g1[n]
                        s10 += u * v0
                        s11 += u * v1
                        s12 += u * v2
                        s13 += u * v3
                        s14 += u * v4
                        u = g2[n]
                        s20 += u * v0
                        s21 += u * v1
                        s22 += u * v2
                        s23 += u * v3
                        s24 += u * v4
                        u = g3[n]
                        s30 += u * v0
                        s31 += u * v1
                        s32 += u * v2
                        s33 += u * v3
                        s34 += u * v4
                    acc[0, c, ki, 0] += s00
                    acc[0, c, ki, 1] += s01
                    acc[0, c, ki, 2] += s02
                    acc[0, c, ki, 3] += s03
                    acc[0, c, ki, 4] += s04
                    if o0 + 1 < o1:
                        acc[1, c, ki, 0] += s10
                        acc[1, c, ki, 1] += s11
                        acc[1, c, ki, 2] += s12
                        acc[1, c, ki, 3] += s13
                        acc[1, c, ki, 4] += s14
                    if o0 + 2 < o1:
                        acc[2, c, ki, 0] += s20
                        acc[2, c, ki, 1] += s21
                        acc[2, c, ki, 2] += s22
                        acc[2, c, ki, 3] += s23
                        acc[2, c, ki, 4] += s24
                    if o0 + 3 < o1:
                        acc[3, c, ki, 0] += s30
                        acc[3, c, ki, 1] += s31
                        acc[3, c, ki, 2] += s32
                        acc[3, c, ki, 3] += s33
                        acc[3, c, ki, 4] += s34


@numba.njit(nogil=True, cache=True, fastmath={"contract", "reassoc"})
def conv_kernel_grad_5x2(g, xp, acc, o0, o1, r0, r1, sh, dh, dw):
    """:func:`conv_kernel_grad` for kernels five taps wide, 2 kernels at a time
    (``o1 − o0`` ≤ 2; missing ones repeat the last): the 10 sums of a window row
    stay in registers through one pass along it, so each number loaded feeds several
    of them instead of one."""
    _, c_n, kh, _ = acc.shape
    _, oh, ow, nb = g.shape
    run = ow * nb
    zero = np.zeros(1, dtype=acc.dtype)[0]
    step = dw * nb
    acc[:] = 0
    for i in range(r0, r1):
        for n0 in range(0, run, _KGRAD_CHUNK):
            n1 = min(run, n0 + _KGRAD_CHUNK)
            g0 = g[o0, i].ravel()[n0:n1]
            g1 = g[min(o0 + 1, o1 - 1), i].ravel()[n0:n1]
            for c in range(c_n):
                for ki in range(kh):
                    row = xp[c, i * sh + ki * dh].ravel()
                    x0 = row[n0:n1]
                    x1 = row[n0 + step:n1 + step]
                    x2 = row[n0 + 2 * step:n1 + 2 * step]
                    x3 = row[n0 + 3 * step:n1 + 3 * step]
                    x4 = row[n0 + 4 * step:n1 + 4 * step]
                    s00 = s01 = s02 = s03 = s04 = zero
                    s10 = s11 = s12 = s13 = s14 = zero
                    for n in range(n1 - n0):
                        v0, v1, v2, v3, v4 = x0[n], x1[n], x2[n], x3[n], x4[n]
                        u = g0[n]
                        s00 += u * v0
                        s01 += u * v1
                        s02 += u * v2
                        s03 += u * v3
                        s04 += u * v4
                        u = g1[n]
                        s10 += u * v0
                        s11 += u * v1
                        s12 += u * v2
                        s13 += u * v3
                        s14 += u * v4
                    acc[0, c, ki, 0] += s00
                    acc[0, c, ki, 1] += s01
                    acc[0, c, ki, 2] += s02
                    acc[0, c, ki, 3] += s03
                    acc[0, c, ki, 4] += s04
                    if o0 + 1 < o1:
                        acc[1, c, ki, 0] += s10
                        acc[1, c, ki, 1] += s11
                        acc[1, c, ki, 2] += s12
                        acc[1, c, ki, 3] += s13
                        acc[1, c, ki, 4] += s14


# ------------------------------------------------------------------ ReLU


@_jit
def relu_rows(y, mask, r0, r1):
    """ReLU in place on rows ``r0:r1`` of the (O, OH, OW, B) map ``y``, and ``mask`` (the same
    shape) set to ``y > 0`` first: the numbers of ``np.maximum(y, 0)`` and ``y > 0``, NaN kept
    (either sign) and −0.0 made +0.0, as ``np.maximum`` does."""
    zero = np.zeros(1, dtype=y.dtype)[0]
    for o in range(y.shape[0]):
        for i in range(r0, r1):
            for j in range(y.shape[2]):
                src = y[o, i, j]
                dst = mask[o, i, j]
                for b in range(y.shape[3]):
                    v = src[b]
                    dst[b] = v > zero
                    # a select, not a branch: the loop stays vector code
                    src[b] = v if (v > zero or v != v) else zero
