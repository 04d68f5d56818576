"""Blocked matrix products that stay on the calling thread in OpenBLAS, and dense layers.

OpenBLAS (0.3.31, as NumPy ships it) computes a product of up to about 10⁶ multiply-adds
on the calling thread with its small-matrix kernels, provided the right operand is
row-major; a transposed view there takes the general path, threaded above 4·65536.
Every blocked product below keeps its right operand row-major. Products larger than
that are cut into parts fixed by the shapes (:mod:`core.kernels.threads`), so the
numbers do not depend on the thread count.
"""

from __future__ import annotations

import numpy as np

from core.kernels.threads import can_defer, defer, part_spans, run_parts

_SERIAL_MNK = 900_000
_SERIAL_MNK_T = 4 * 65536  # the same with a transposed right operand
_SMALL_MNK = 1 << 24       # multiply-adds below which a product is too short to share


def _block(n, mk, limit=None):
    """Column block for a product with ``m·k = mk``: single-threaded in OpenBLAS, ≥ 16 wide."""
    limit = _SERIAL_MNK if limit is None else limit
    return int(min(n, max(16, limit // max(1, mk))))


def matmul_cols(a, b, out):
    """``out[:] = a @ b`` for a wide ``b`` (K, n), block by block (views welcome)."""
    m, k = a.shape
    n = b.shape[1]
    blk = _block(n, m * k)
    nb = n // blk
    if nb:
        cut = nb * blk
        np.matmul(a, b[:, :cut].reshape(k, nb, blk).transpose(1, 0, 2),
                  out=out[:, :cut].reshape(m, nb, blk).transpose(1, 0, 2))
    if nb * blk < n:
        out[:, nb * blk:] = a @ b[:, nb * blk:]


def _matmul_nt_cols(g, b):
    """``g @ b.T`` summed over the wide axis of ``g`` (M, n) and ``b`` (K, n), block by block."""
    m, n = g.shape
    k = b.shape[0]
    blk = _block(n, m * k, _SERIAL_MNK_T)
    if blk >= 512:
        # wide enough blocks even under the general path's limit: no copies needed
        nb = n // blk
        cut = nb * blk
        total = np.matmul(g[:, :cut].reshape(m, nb, blk).transpose(1, 0, 2),
                          b[:, :cut].reshape(k, nb, blk).transpose(1, 2, 0)).sum(axis=0)
    else:
        # b-block · (g-block)ᵀ with g transposed into a row-major copy: wider blocks on
        # the small-matrix path (see _SERIAL_MNK)
        blk = _block(n, m * k)
        nb = n // blk
        cut = nb * blk
        gt = np.ascontiguousarray(g[:, :cut].T)
        total = np.matmul(b[:, :cut].reshape(k, nb, blk).transpose(1, 0, 2),
                          gt.reshape(nb, blk, m)).sum(axis=0).T
    if cut < n:
        total = total + (b[:, cut:] @ np.ascontiguousarray(g[:, cut:].T)).T
    return total


def matmul_wide_nt(g, b):
    """``g @ b.T`` for ``g`` (M, N) and ``b`` (K, N) both very wide: a long reduction.

    Partial sums over fixed column spans are added in a fixed order, so the
    result does not depend on the thread count.
    """
    m, n = g.shape
    k = b.shape[0]
    blk = _block(n, m * k, _SERIAL_MNK_T)
    spans = part_spans(n, blk if blk >= 512 else _block(n, m * k), (m + k) * b.itemsize)
    partial = [None] * len(spans)

    def part(i):
        partial[i] = _matmul_nt_cols(g[:, spans[i][0]:spans[i][1]],
                                     b[:, spans[i][0]:spans[i][1]])

    run_parts(part, range(len(spans)))
    total = partial[0]
    for extra in partial[1:]:
        total = total + extra
    return total


def matmul_small(a, b):
    """``a @ b`` for 2-D operands (dense layers): one BLAS call, or parts for the layer pool.

    During a batch NumPy's BLAS runs on the calling thread (:func:`core.kernels.blas.own_threads`),
    so a product up to :data:`_SMALL_MNK` multiply-adds is one plain call (cutting
    it into pieces, as when OpenBLAS threaded it, only costs time); larger ones
    are shared by the layer pool.
    """
    m, k = a.shape
    n = b.shape[1]
    if m * n * k > _SMALL_MNK:
        return _matmul_parts(a, b)
    return a @ b


def _matmul_parts(a, b):
    """``a @ b`` for a large product, cut along its longer outer dimension into parts
    of about :data:`_SMALL_MNK` multiply-adds that the layer pool computes in parallel.

    The cut depends on the shapes only, so the result is the same on any machine.
    """
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    run_parts(*_product_job(a, b, out))
    return out


def _product_job(a, b, out):
    """``out[:] = a @ b`` as the job ``(part, parts)``: the parts of :func:`_matmul_parts`,
    or a single part for a product :func:`matmul_small` makes in one call."""
    m, k = a.shape
    n = b.shape[1]
    if m * n * k <= _SMALL_MNK:
        return (lambda _: np.matmul(a, b, out=out)), [None]
    pieces = max(1, min(64, (m * n * k) // _SMALL_MNK))
    if k > 4 * max(m, n):
        # a long inner dimension (a dense layer on a big image): every part reads all of
        # the other operand again, so two parts, one per core, cost the least
        pieces = min(pieces, 2)
        if n >= m:
            step = -(-n // pieces)
            return ((lambda c: np.matmul(a, b[:, c:c + step], out=out[:, c:c + step])),
                    range(0, n, step))
    if m >= n:
        step = -(-m // pieces)
        return (lambda r: np.matmul(a[r:r + step], b, out=out[r:r + step])), range(0, m, step)
    step = -(-n // pieces)
    return (lambda c: np.matmul(a, b[:, c:c + step], out=out[:, c:c + step])), range(0, n, step)


# a weight gradient smaller than this is made at once: handing it to a helper costs more
_DEFER_MNK = 1 << 22


def dense_grads(x, w, g, need_x=True):
    """``(g·Wᵀ, xᵀ·g)``: the input and weight gradients of ``y = x·W``.

    The input gradient is laid out as ``x``; ``need_x=False`` skips it (``None``). The
    two products run one after the other on the calling thread (each shared by the pool
    when it is large):
    side by side on two threads, LeNet-5's were slower, each waiting on memory. In a
    run that defers work (:func:`core.kernels.threads.deferring`) a large weight
    gradient, which no later layer reads, is left to a helper thread instead, beside the
    layers below; the array returned is filled in when the run's deferred work is done.
    """
    gx = None
    if need_x and x.flags.f_contiguous and not x.flags.c_contiguous:
        # x is an image layer's batch-last memory seen through a Flatten: the gradient gets
        # the same layout, so the layers below read it in their memory order, not transposed
        gx = matmul_small(w, np.ascontiguousarray(g.T)).T
    elif need_x:
        gx = matmul_small(g, w.T)
    xt = x.T
    if need_x and can_defer() and xt.shape[0] * xt.shape[1] * g.shape[1] >= _DEFER_MNK:
        gw = np.empty((xt.shape[0], g.shape[1]), dtype=np.result_type(xt, g))
        defer(*_product_job(xt, g, gw), lambda: None)
        return gx, gw
    return gx, matmul_small(xt, g)
