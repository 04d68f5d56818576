"""Kernels for arrays of any array module (CuPy on a GPU): what the ops call off the host.

The CPU kernels of this package lean on NumPy alone — a thread pool, reused scratch
buffers found free by reference counts, ``as_strided`` windows, the batch-last layout —
none of which carries over to a GPU. These do the same computations with plain
array-module calls on batch-first (NCHW) arrays: im2col by slicing, one batched
product (cuBLAS on CUDA) per convolution, pooling over stacked window taps, and the
scatter-adds of :mod:`core.kernels.backend`. Each result equals the CPU kernel's
within floating-point rounding (tests/test_device_ops.py runs every op through both).

Shape:
    every image tensor is (B, C, H, W), as at the ops' ports
"""

from __future__ import annotations

from dataclasses import dataclass

from core.kernels.backend import array_module, scatter_add, scatter_max


@dataclass
class DeviceState:
    """What a device forward keeps for its backward."""

    x_shape: tuple = ()
    cols: object = None
    w: object = None
    bias: bool = False
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    kernel: tuple = (1, 1)
    out_hw: tuple = (1, 1)
    padded_hw: tuple = (1, 1)
    x: object = None
    code: object = None


def _tap(a, ki, kj, stride, dilation, out_hw):
    """The (B, C, OH, OW) slice of a padded (B, C, H, W) array that tap (ki, kj) reads."""
    r0, c0 = ki * dilation[0], kj * dilation[1]
    return a[:, :, r0:r0 + stride[0] * (out_hw[0] - 1) + 1:stride[0],
             c0:c0 + stride[1] * (out_hw[1] - 1) + 1:stride[1]]


def _pad(x, padding, fill=0.0):
    xp = array_module(x)
    ph, pw = padding
    if not (ph or pw):
        return x
    out = xp.full(x.shape[:2] + (x.shape[2] + 2 * ph, x.shape[3] + 2 * pw), fill,
                  dtype=x.dtype)
    out[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]] = x
    return out


def _im2col(xpad, kernel, stride, dilation, out_hw):
    """(B, C·kh·kw, OH·OW) windows of a padded array; rows in the kernel's (C, kh, kw) order."""
    xp = array_module(xpad)
    b, c = xpad.shape[:2]
    taps = [_tap(xpad, ki, kj, stride, dilation, out_hw)
            for ki in range(kernel[0]) for kj in range(kernel[1])]
    cols = xp.stack(taps, axis=2)  # (B, C, kh·kw, OH, OW)
    return cols.reshape(b, c * kernel[0] * kernel[1], out_hw[0] * out_hw[1])


def _col2im(cols, shape, kernel, stride, dilation, out_hw):
    """Adjoint of :func:`_im2col`: each window column summed back into a (B, C, H, W) array."""
    xp = array_module(cols)
    b, c = shape[:2]
    cols = cols.reshape(b, c, kernel[0], kernel[1], out_hw[0], out_hw[1])
    out = xp.zeros(shape, dtype=cols.dtype)
    for ki in range(kernel[0]):
        for kj in range(kernel[1]):
            view = _tap(out, ki, kj, stride, dilation, out_hw)
            view += cols[:, :, ki, kj]
    return out


def _empty_grad(g):
    return array_module(g).zeros((0,), dtype=g.dtype)


# ------------------------------------------------------------------ convolution
def conv2d_forward(x, w, b, stride, padding, dilation, out_hw):
    """Cross-correlation ``y[o] = b[o] + Σ w[o]·window(x)`` as one batched product.

    Shape:
        x (B, C, H, W), w (O, C, kh, kw), b (O,) or (0,) -> y (B, O, OH, OW)
    """
    xp = array_module(x)
    o, kernel = w.shape[0], w.shape[2:]
    cols = _im2col(_pad(x, padding), kernel, stride, dilation, out_hw)
    w2 = xp.ascontiguousarray(w).reshape(o, -1)
    y = xp.matmul(w2, cols)  # (B, O, OH·OW)
    bias = b.size > 0
    if bias:
        y += b.reshape(1, o, 1)
    state = DeviceState(x_shape=x.shape, cols=cols, w=w2, bias=bias, stride=stride,
                        padding=padding, dilation=dilation, kernel=kernel, out_hw=out_hw)
    return y.reshape(x.shape[0], o, out_hw[0], out_hw[1]), state


def conv2d_backward(state, g, need_x=True):
    """Input, kernel and bias gradients of :func:`conv2d_forward`.

    Shape:
        g (B, O, OH, OW) -> gx (B, C, H, W) or None, gw (O, C, kh, kw), gb (O,) or (0,)
    """
    xp = array_module(g)
    b, o = g.shape[:2]
    g3 = g.reshape(b, o, -1)
    c = state.x_shape[1]
    gw = xp.tensordot(g3, state.cols, axes=([0, 2], [0, 2])).reshape(
        o, c, state.kernel[0], state.kernel[1])
    gb = g3.sum(axis=(0, 2)) if state.bias else _empty_grad(g)
    gx = None
    if need_x:
        (ph, pw), (h, w) = state.padding, state.x_shape[2:]
        gcols = xp.matmul(state.w.T, g3)  # (B, C·kh·kw, OH·OW)
        gxp = _col2im(gcols, (b, c, h + 2 * ph, w + 2 * pw), state.kernel, state.stride,
                      state.dilation, state.out_hw)
        gx = gxp[:, :, ph:ph + h, pw:pw + w]
    return gx, gw, gb


def conv_transpose2d_forward(x, w, b, kernel, stride, padding, dilation, output_padding,
                             out_hw):
    """Transposed convolution: each input pixel scatters ``w`` scaled by its value (col2im).

    Shape:
        x (B, C, H, W), w (C, O, kh, kw), b (O,) or (0,) -> y (B, O, OH, OW)
    """
    xp = array_module(x)
    bsz, c, h, wd = x.shape
    o = w.shape[1]
    (ph, pw), (oh, ow) = padding, out_hw
    w2 = xp.ascontiguousarray(w).reshape(c, -1)
    cols = xp.matmul(w2.T, x.reshape(bsz, c, h * wd))  # (B, O·kh·kw, H·W)
    full = _col2im(cols, (bsz, o, oh + 2 * ph, ow + 2 * pw), kernel, stride, dilation, (h, wd))
    y = full[:, :, ph:ph + oh, pw:pw + ow]
    bias = b.size > 0
    if bias:
        y = y + b.reshape(1, o, 1, 1)
    state = DeviceState(x_shape=x.shape, x=x, w=w2, bias=bias, stride=stride, padding=padding,
                        dilation=dilation, kernel=tuple(kernel), out_hw=out_hw,
                        padded_hw=(oh + 2 * ph, ow + 2 * pw))
    return xp.ascontiguousarray(y), state


def conv_transpose2d_backward(state, g, need_x=True):
    """Input, kernel and bias gradients of :func:`conv_transpose2d_forward` (im2col of ``g``).

    Shape:
        g (B, O, OH, OW) -> gx (B, C, H, W) or None, gw (C, O, kh, kw), gb (O,) or (0,)
    """
    xp = array_module(g)
    bsz, c, h, wd = state.x_shape
    o = g.shape[1]
    (ph, pw), (oh, ow) = state.padding, state.out_hw
    gfull = xp.zeros((bsz, o) + tuple(state.padded_hw), dtype=g.dtype)
    gfull[:, :, ph:ph + oh, pw:pw + ow] = g
    gcols = _im2col(gfull, state.kernel, state.stride, state.dilation, (h, wd))
    x3 = state.x.reshape(bsz, c, h * wd)
    gw = xp.tensordot(x3, gcols, axes=([0, 2], [0, 2])).reshape(
        c, o, state.kernel[0], state.kernel[1])
    gb = g.sum(axis=(0, 2, 3)) if state.bias else _empty_grad(g)
    gx = xp.matmul(state.w, gcols).reshape(state.x_shape) if need_x else None
    return gx, gw, gb


# ---------------------------------------------------------------------- pooling
def _stacked_taps(xpad, kernel, stride, out_hw):
    xp = array_module(xpad)
    return xp.stack([_tap(xpad, ki, kj, stride, (1, 1), out_hw)
                     for ki in range(kernel[0]) for kj in range(kernel[1])], axis=2)


def max_pool2d_forward(x, kernel, stride, padding, out_hw, want_indices=True):
    """The maximum of each window and, when ``want_indices``, the flat position of the first one.

    An index is row · W + col in the unpadded plane; padding counts as −∞.

    Shape:
        x (B, C, H, W) -> out (B, C, OH, OW), indices (B, C, OH, OW) int64 or ``None``
    """
    xp = array_module(x)
    (ph, pw), (kh, kw) = padding, kernel
    h, w = x.shape[2:]
    fill = -xp.inf if x.dtype.kind == "f" else xp.iinfo(x.dtype).min
    taps = _stacked_taps(_pad(x, padding, fill), kernel, stride, out_hw)  # (B, C, k, OH, OW)
    code = xp.argmax(taps, axis=2)  # the first maximum in row-major window order
    best = xp.take_along_axis(taps, code[:, :, None], axis=2)[:, :, 0]
    idx = None
    if want_indices:
        idx = _plane_index(xp, code, kw, stride, (-ph, -pw), w, out_hw)
    state = DeviceState(x_shape=x.shape, code=code, kernel=(kh, kw), stride=stride,
                        padding=padding, out_hw=out_hw, padded_hw=(h + 2 * ph, w + 2 * pw))
    return best, idx, state


def _plane_index(xp, code, kw, stride, origin, width, out_hw):
    """Flat index (row · width + col) of each window's tap ``code`` in a plane ``width`` wide."""
    rows = xp.arange(out_hw[0], dtype=xp.int64) * stride[0] + origin[0]
    cols = xp.arange(out_hw[1], dtype=xp.int64) * stride[1] + origin[1]
    start = rows[:, None] * width + cols[None, :]
    code = code.astype(xp.int64)
    return start + (code // kw) * width + code % kw


def max_pool2d_backward(state, g):
    """Each window's gradient to its first maximum (overlapping windows add up).

    Shape:
        g (B, C, OH, OW) -> gx (B, C, H, W)
    """
    xp = array_module(g)
    b, c = g.shape[:2]
    (ph, pw), (hp, wp) = state.padding, state.padded_hw
    h, w = state.x_shape[2:]
    pidx = _plane_index(xp, state.code, state.kernel[1], state.stride, (0, 0), wp, state.out_hw)
    gxp = xp.zeros((b * c, hp * wp), dtype=g.dtype)
    rows = xp.arange(b * c)[:, None]
    scatter_add(gxp, (rows, pidx.reshape(b * c, -1)), g.reshape(b * c, -1))
    return gxp.reshape(b, c, hp, wp)[:, :, ph:ph + h, pw:pw + w]


def avg_pool2d_forward(x, kernel, stride, padding, out_hw):
    """The mean of each window; padding counts as zeros.

    Shape:
        x (B, C, H, W) -> out (B, C, OH, OW)
    """
    (kh, kw) = kernel
    taps = _stacked_taps(_pad(x, padding), kernel, stride, out_hw)
    y = taps.sum(axis=2) * x.dtype.type(1.0 / (kh * kw))
    state = DeviceState(x_shape=x.shape, kernel=tuple(kernel), stride=stride, padding=padding,
                        out_hw=out_hw)
    return y, state


def avg_pool2d_backward(state, g):
    """``g/(kh·kw)`` to every tap of its window.

    Shape:
        g (B, C, OH, OW) -> gx (B, C, H, W)
    """
    xp = array_module(g)
    (ph, pw), (kh, kw) = state.padding, state.kernel
    b, c, h, w = state.x_shape
    gs = g * g.dtype.type(1.0 / (kh * kw))
    gxp = xp.zeros((b, c, h + 2 * ph, w + 2 * pw), dtype=g.dtype)
    for ki in range(kh):
        for kj in range(kw):
            view = _tap(gxp, ki, kj, state.stride, (1, 1), state.out_hw)
            view += gs
    return gxp[:, :, ph:ph + h, pw:pw + w]


def max_unpool2d(x, flat, out_size):
    """Each value of ``x`` (B, C, n) to position ``flat`` of a zero (B, C, out_size) array.

    Where several values share a position the last one lands, as in NumPy's
    ``put_along_axis``; returns the output and which values landed (``None`` if all did).
    """
    xp = array_module(x)
    b, c, n = flat.shape
    rows = xp.arange(b * c)[:, None]
    f2 = flat.reshape(b * c, n)
    ids = xp.broadcast_to(xp.arange(n), (b * c, n))
    landed = xp.full((b * c, out_size), -1, dtype=xp.int64)
    scatter_max(landed, (rows, f2), ids)  # the last value of each position wins
    won = landed[rows, f2] == ids
    y = xp.zeros((b * c, out_size), dtype=x.dtype)
    # only the winners write (the others add zero): no write order to depend on
    scatter_add(y, (rows, f2), xp.where(won, x.reshape(b * c, n), x.dtype.type(0)))
    won = won.reshape(b, c, n)
    return y.reshape(b, c, out_size), (None if bool(won.all()) else won)
