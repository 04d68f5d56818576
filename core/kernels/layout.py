"""The batch-last layout and the window views of the image kernels.

Tensors are NCHW (batch first) at every port. Inside the image kernels the work
is done on a *channels-first, batch-last* view ``(C, H, W, B)``: an ``im2col``
copy then moves runs of ``W·B`` contiguous numbers instead of single rows of
``W``: fewer, longer copies. A kernel returns its result as an
NCHW *view* of batch-last memory; the next image kernel asks for the batch-last
view again (:func:`batch_last`) and gets it without a copy. Elementwise ops in
between (ReLU) keep the memory order of their input (:mod:`~core.kernels.elementwise`), so a
chain conv → ReLU → pool → conv never transposes data.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided


def batch_last(x):
    """``(B, C, H, W)`` -> ``(C, H, W, B)`` view; free when memory is already batch-last."""
    return x.transpose(1, 2, 3, 0)


def batch_first(x):
    """``(C, H, W, B)`` -> the ``(B, C, H, W)`` view the ports carry."""
    return x.transpose(3, 0, 1, 2)


def pad_batch_last(xc, ph, pw, fill=0.0, scratch=None):
    """A C-contiguous ``(C, H + 2ph, W + 2pw, B)`` copy of ``xc`` with a constant border.

    Without padding an already batch-last input is returned as it is; ``scratch``
    (a :class:`~core.kernels.scratch.Scratch`) lends the buffer.
    """
    c, h, w, b = xc.shape
    if ph == 0 and pw == 0 and xc.flags.c_contiguous:
        return xc
    shape = (c, h + 2 * ph, w + 2 * pw, b)
    xp = (np.empty(shape, dtype=xc.dtype) if scratch is None
          else scratch.get("padded", shape, xc.dtype))
    if ph == 0 and pw == 0:
        np.copyto(xp, xc)
        return xp
    # only the border is filled: the inside is overwritten right away
    xp[:, :ph] = fill
    xp[:, h + ph:] = fill
    xp[:, ph:h + ph, :pw] = fill
    xp[:, ph:h + ph, w + pw:] = fill
    xp[:, ph:h + ph, pw:w + pw] = xc
    return xp


def windows(xp, kernel, stride, dilation, out_hw):
    """Read-only ``(C, kh, kw, OH, OW, B)`` view of every window of a padded batch-last array."""
    sc, sh, sw, sb = xp.strides
    kh, kw = kernel
    return as_strided(xp, (xp.shape[0], kh, kw, out_hw[0], out_hw[1], xp.shape[3]),
                      (sc, sh * dilation[0], sw * dilation[1], sh * stride[0], sw * stride[1], sb),
                      writeable=False)


def tap(xp, ki, kj, stride, dilation, out_hw):
    """The ``(C, OH, OW, B)`` slice of a padded array that kernel tap (ki, kj) reads."""
    r0, c0 = ki * dilation[0], kj * dilation[1]
    return xp[:, r0:r0 + stride[0] * (out_hw[0] - 1) + 1:stride[0],
              c0:c0 + stride[1] * (out_hw[1] - 1) + 1:stride[1], :]


def im2col(xp, kernel, stride, dilation, out_hw):
    """``(C·kh·kw, OH·OW·B)`` matrix of windows; rows follow the kernel's (C, kh, kw) order."""
    win = windows(xp, kernel, stride, dilation, out_hw)
    return win.reshape(-1, out_hw[0] * out_hw[1] * xp.shape[3])


def col2im(cols, padded_shape, kernel, stride, dilation, out_hw, dtype):
    """Adjoint of :func:`im2col`: sum each window column back into a padded array."""
    c = padded_shape[0]
    b = padded_shape[3]
    cols = cols.reshape(c, kernel[0], kernel[1], out_hw[0], out_hw[1], b)
    xp = np.zeros(padded_shape, dtype=dtype)
    for ki in range(kernel[0]):
        for kj in range(kernel[1]):
            view = tap(xp, ki, kj, stride, dilation, out_hw)
            view += cols[:, ki, kj]
    return xp



def in_layout_of(a, ref):
    """``a`` in the memory order of ``ref`` (copied only when the orders differ).

    NumPy multiplies a batch-first array by a batch-last one through strided
    loops, far slower than two arrays laid out alike (as when a gradient from
    Flatten meets a ReLU mask from the image ops).
    """
    if a.shape != ref.shape or a.ndim < 2 or a.strides == ref.strides:
        return a
    if _axis_order(a.strides) == _axis_order(ref.strides):
        return a
    out = np.empty_like(ref, dtype=a.dtype)
    np.copyto(out, a)
    return out


def _axis_order(strides) -> list:
    """Axes from the largest stride to the smallest (ties in axis order): the memory order."""
    return sorted(range(len(strides)), key=lambda i: -strides[i])


def random_like(rng, x, dtype, scratch=None):
    """Uniform numbers in [0, 1) of ``x``'s shape, laid out in ``x``'s memory order.

    A mask drawn in the default order and multiplied into a batch-last ``x`` goes
    through NumPy's slow strided loops; drawn in ``x``'s order, it does not.
    ``scratch`` (a :class:`~core.kernels.scratch.Scratch`) lends the buffer; the
    numbers are the same either way.
    """
    order = _axis_order(x.strides) if x.ndim > 1 else list(range(x.ndim))
    shape = tuple(x.shape[i] for i in order)
    out = None if scratch is None else scratch.get("draw", shape, dtype)
    u = rng.random(shape, dtype=dtype, out=out)
    return u if order == list(range(x.ndim)) else u.transpose(np.argsort(order))
