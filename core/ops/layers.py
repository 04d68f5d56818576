"""CNN layers: dense, convolutions, pooling and unpooling (batch norm and dropout are in
:mod:`core.ops.normalization`).

Tensors are NCHW (batch first) at every port. This module says what each layer
is (parameters, shapes, formulas, samples); how fast it runs — the batch-last
layout, the thread pool, reused buffers, im2col variants — lives in
:mod:`core.kernels`, which the forward and backward passes call.

Example
-------
>>> conv = Conv2d(out_channels=96, kernel=11, stride=4)  # AlexNet's first layer
>>> conv.infer_shapes((None, 3, 227, 227))
((None, 96, 55, 55),)
"""

from __future__ import annotations

import numpy as np

from core.errors import ShapeError
from core.init import INITIALIZERS
from core.kernels import conv, device, elementwise, pool
from core.kernels.backend import array_module
from core.kernels.matmul import dense_grads, matmul_small
from core.kernels.scratch import scratch_for
from core.ops.base import (
    Context,
    Op,
    Param,
    Sample,
    WeightSpec,
    fmt_shape,
    numel,
    register_op,
)

# --------------------------------------------------------------------- helpers



_INIT = Param("init", "choice", "he_uniform", choices=INITIALIZERS,
              doc="initializer of the kernel (biases always start at zero)", quiet=True)
_BIAS = Param("bias", "bool", True, doc="add a learned bias per output", quiet=True)


def _kernel(default=(3, 3)):
    return Param("kernel", "ints", default, low=1, high=64, doc="window height, width")


def _stride(default=(1, 1)):
    return Param("stride", "ints", default, low=1, high=32, doc="step between windows (rows, cols)")


def _padding(default=(0, 0)):
    return Param("padding", "ints", default, low=0, high=32,
                 doc="zeros added on each side (rows, cols)")


_DILATION = Param("dilation", "ints", (1, 1), low=1, high=16,
                  doc="spacing between kernel taps (rows, cols); 1 = dense kernel", quiet=True)


def conv_out_size(n, k, s, p, d=1):
    """Output length of a sliding window: ⌊(n + 2p − d(k−1) − 1)/s⌋ + 1.

    ``None`` (unknown) stays ``None``; ``None`` is also returned when the window
    does not fit, for the caller to report with both axes.
    """
    if n is None:
        return None
    span = d * (k - 1) + 1
    if n + 2 * p < span:
        return None  # reported by the caller, which knows both axes
    return (n + 2 * p - span) // s + 1


def _window_out(op_name, x_hw, kernel, stride, padding, dilation=(1, 1), what="kernel"):
    """Both output sizes of a 2-D window op, with a readable error when it does not fit."""
    outs = [conv_out_size(n, k, s, p, d) for n, k, s, p, d in
            zip(x_hw, kernel, stride, padding, dilation)]
    for n, o in zip(x_hw, outs):
        if n is not None and o is None:
            h, w = ("?" if v is None else v for v in x_hw)
            raise ShapeError(f"{op_name}: {what} {kernel[0]}×{kernel[1]} with dilation "
                             f"{dilation[0] if dilation[0] == dilation[1] else dilation} does not "
                             f"fit a {h}×{w} input after padding {padding[0]}×{padding[1]}")
    return tuple(outs)


def _need_4d(op_name, x):
    if len(x) != 4:
        raise ShapeError(f"{op_name} expects images (B, C, H, W); got {fmt_shape(x)}")


def _empty_bias(dtype, xp=np):
    return xp.zeros((0,), dtype=dtype)


# ----------------------------------------------------------------------- dense

@register_op("dense")
class Dense(Op):
    """Fully connected layer: every output is a weighted sum of every input plus a bias.

    Parameters
    ----------
    units : int
        Number of outputs per sample.
    bias : bool
        Add the learned bias ``b``; when off, ``b`` is an empty array.
    init : str
        Initializer of ``W``.

    Shape:
        x (B, F) -> out (B, units); W (F, units), b (units,)
    """

    label = "Dense"
    category = "layers"
    weights = ("W", "b")
    params = (Param("units", "int", 10, low=1, high=65536, doc="number of outputs"),
              _BIAS, _INIT)
    formula = "y = x·W + b"
    derivative = "∂L/∂x = G·Wᵀ, ∂L/∂W = xᵀ·G, ∂L/∂b = Σ_batch G"

    def infer_shapes(self, x):
        if len(x) != 2:
            raise ShapeError(f"dense expects (B, features); got {fmt_shape(x)} "
                             "(put a Flatten in front)")
        if x[1] is None:
            raise ShapeError("dense: the number of input features must be known")
        return ((x[0], self.p["units"]),)

    def weight_specs(self, x):
        self.infer_shapes(x)
        f, u = x[1], self.p["units"]
        return {"W": WeightSpec((f, u), self.p["init"], fan_in=f, fan_out=u),
                "b": WeightSpec((u,) if self.p["bias"] else (0,), "zeros", fan_in=f, fan_out=u)}

    def multiply_adds(self, x):
        return (x[1] or 0) * self.p["units"]

    def forward(self, ctx, x, w, b):
        self.infer_shapes(x.shape)
        if x.shape[1] != w.shape[0]:
            raise ShapeError(f"dense: input has {x.shape[1]} features but W is "
                             f"{fmt_shape(w.shape)}")
        ctx.x, ctx.w, ctx.bias = x, w, b.size > 0
        # NumPy arrays take the CPU kernels; any other array module its own product
        y = matmul_small(x, w) if isinstance(x, np.ndarray) else x @ w
        if ctx.bias:
            y += b
        return y

    def backward(self, ctx, g):
        if isinstance(g, np.ndarray):
            gx, gw = dense_grads(ctx.x, ctx.w, g, ctx.needs(0))
        else:
            gx, gw = (g @ ctx.w.T if ctx.needs(0) else None), ctx.x.T @ g
        gb = g.sum(axis=0) if ctx.bias else _empty_bias(g.dtype, array_module(g))
        return gx, gw, gb

    @classmethod
    def sample_inputs(cls, rng):
        return [
            Sample((rng.normal(size=(4, 5)), rng.normal(size=(5, 3)), rng.normal(size=(3,))),
                   {"units": 3}),
            Sample((rng.normal(size=(2, 6)), rng.normal(size=(6, 4)), _empty_bias(np.float64)),
                   {"units": 4, "bias": False}, note="no bias"),
        ]

    @classmethod
    def torch_reference(cls, torch, params, x, w, b):
        y = x @ w
        # an unused empty bias still needs a (empty) gradient in the comparison
        return y + b if params["bias"] else y + b.sum()


# ---------------------------------------------------------------- convolution

@register_op("conv2d")
class Conv2d(Op):
    """2-D convolution layer (cross-correlation, like every DL framework, or true convolution).

    ``mode="convolution"`` flips the kernel (rows and columns) before sliding it,
    which is the textbook convolution; the stored ``W`` is the unflipped kernel.

    Parameters
    ----------
    out_channels : int
        Number of kernels, i.e. output channels ``O``.
    kernel, stride, padding, dilation : (int, int)
        Window geometry (rows, columns).
    bias : bool
        Add a learned bias per output channel; when off ``b`` is an empty array.
    mode : str
        ``"cross_correlation"`` or ``"convolution"``.
    init : str
        Initializer of ``W``.

    Shape:
        x (B, C, H, W) -> out (B, O, H', W') with H' = ⌊(H + 2p − d(k−1) − 1)/s⌋ + 1;
        W (O, C, kh, kw), b (O,)
    """

    label = "Conv2D"
    category = "layers"
    weights = ("W", "b")
    params = (Param("out_channels", "int", 8, low=1, high=4096, doc="number of kernels"),
              _kernel(), _stride(), _padding(), _DILATION, _BIAS,
              Param("mode", "choice", "cross_correlation",
                    choices=("cross_correlation", "convolution"),
                    doc="cross-correlation (frameworks) or convolution (flipped kernel)",
                    quiet=True),
              _INIT)
    formula = "y[o,i,j] = b[o] + Σ_c,m,n W[o,c,m,n]·x[c, s·i+d·m−p, s·j+d·n−p]"
    derivative = ("∂L/∂W = Σ windows(x)·G (correlate x with G), "
                  "∂L/∂x = full convolution of G with W (col2im of Wᵀ·G)")

    def infer_shapes(self, x):
        _need_4d("conv2d", x)
        p = self.p
        oh, ow = _window_out("conv2d", x[2:], p["kernel"], p["stride"], p["padding"],
                             p["dilation"])
        return ((x[0], p["out_channels"], oh, ow),)

    def weight_specs(self, x):
        _need_4d("conv2d", x)
        c, (kh, kw), o = x[1], self.p["kernel"], self.p["out_channels"]
        return {"W": WeightSpec((o, c, kh, kw), self.p["init"], fan_in=c * kh * kw,
                                fan_out=o * kh * kw),
                "b": WeightSpec((o,) if self.p["bias"] else (0,), "zeros",
                                fan_in=c * kh * kw, fan_out=o * kh * kw)}

    def multiply_adds(self, x):
        _, o, oh, ow = self.infer_shapes(x)[0]
        kh, kw = self.p["kernel"]
        return o * (oh or 0) * (ow or 0) * (x[1] or 0) * kh * kw

    def forward(self, ctx, x, w, b):
        p = self.p
        out_hw = self.infer_shapes(x.shape)[0][2:]
        if w.shape[1] != x.shape[1]:
            raise ShapeError(f"conv2d: input has {x.shape[1]} channels but the kernel W is "
                             f"{fmt_shape(w.shape)}")
        if isinstance(x, np.ndarray):
            return self._forward_cpu(ctx, x, w, b, out_hw)
        if p["mode"] == "convolution":
            w = w[:, :, ::-1, ::-1]
        y, ctx.kernel_state = device.conv2d_forward(x, w, b, p["stride"], p["padding"],
                                                    p["dilation"], out_hw)
        return y

    def _forward_cpu(self, ctx, x, w, b, out_hw, after_rows=None):
        """The NumPy kernels' forward (``after_rows`` as :func:`conv.conv2d_forward` takes it)."""
        p = self.p
        if p["mode"] == "convolution":
            w = w[:, :, ::-1, ::-1]
        y, ctx.kernel_state = conv.conv2d_forward(scratch_for(self), x, w, b, p["stride"],
                                                  p["padding"], p["dilation"], out_hw,
                                                  after_rows=after_rows)
        return y

    @staticmethod
    def _takes_rows(x, w) -> bool:
        """Whether a forward that hands its rows on (the shortcuts below) can run on ``x``."""
        return isinstance(x, np.ndarray) and x.ndim == 4 and w.shape[1] == x.shape[1]

    def backward(self, ctx, g):
        flip = self.p["mode"] == "convolution"
        if isinstance(g, np.ndarray):
            # flipped there: a kernel gradient left to a helper is filled in later
            gx, gw, gb = conv.conv2d_backward(scratch_for(self), ctx.kernel_state, g,
                                              ctx.needs(0), flip=flip)
        else:
            gx, gw, gb = device.conv2d_backward(ctx.kernel_state, g, ctx.needs(0))
            if flip:
                gw = gw[:, :, ::-1, ::-1]
        return gx, array_module(gw).ascontiguousarray(gw), gb

    def forward_pooled(self, ctx, x, w, b, pool_op, pool_ctx):
        """This layer's forward and that of the max pool ``pool_op`` that alone reads it,
        each part of the convolution pooling the rows it just made (a training shortcut).

        Returns the pool's output, with both contexts as their own forwards leave them, or
        ``None`` when they cannot run so (a pool whose windows overlap, no compiled
        kernels); then nothing has run.
        """
        q = pool_op.p
        if not self._takes_rows(x, w):
            return None
        out_hw = self.infer_shapes(x.shape)[0][2:]
        rows = pool.RowPool.make(scratch_for(pool_op), (w.shape[0], *out_hw, x.shape[0]),
                                 x.dtype, q["kernel"], q["stride"], q["padding"],
                                 pool_ctx.training)
        if rows is None:
            return None
        y = self._forward_cpu(ctx, x, w, b, out_hw, after_rows=(rows.unit, rows.rows))
        if not ctx.kernel_state.rows_done:  # the paired-column path ran: pool the whole map
            return pool_op.forward(pool_ctx, y)[0]
        out, _, pool_ctx.kernel_state = rows.result(y)
        return out

    def forward_activated(self, ctx, x, w, b, act_op, act_ctx):
        """This layer's forward and that of the ReLU ``act_op`` that alone reads it, each part
        of the convolution applying it to the rows it just made (a training shortcut).

        Returns the ReLU's output, with both contexts as their own forwards leave them, or
        ``None`` when they cannot run so (another activation, no compiled kernels); then
        nothing has run.
        """
        if getattr(act_op, "id", None) != "relu" or not self._takes_rows(x, w):
            return None
        out_hw = self.infer_shapes(x.shape)[0][2:]
        # reused buffers for training's batches only, as the ReLU's own forward
        relu = elementwise.RowReLU.make(scratch_for(act_op) if act_ctx.training else None,
                                        (w.shape[0], *out_hw, x.shape[0]))
        if relu is None:
            return None
        y = self._forward_cpu(ctx, x, w, b, out_hw, after_rows=(1, relu.rows))
        if not ctx.kernel_state.rows_done:  # the paired-column path ran: the whole map after
            relu.whole(y)
        y, act_ctx.mask = relu.result(y)
        return y

    @classmethod
    def sample_inputs(cls, rng):
        def case(x_shape, o, params, bias=True, note=""):
            kh, kw = params.get("kernel", (3, 3))
            w = rng.normal(size=(o, x_shape[1], kh, kw))
            b = rng.normal(size=(o,)) if bias else _empty_bias(np.float64)
            return Sample((rng.normal(size=x_shape), w, b),
                          dict(params, out_channels=o, bias=bias), note=note)

        return [
            case((2, 2, 5, 5), 3, {}, note="3×3, stride 1, no padding"),
            case((2, 2, 6, 5), 2, {"stride": (2, 2), "padding": (1, 1)}, note="stride 2, pad 1"),
            case((1, 2, 7, 6), 2, {"kernel": (3, 2), "stride": (1, 2), "padding": (2, 1),
                                   "dilation": (2, 1)}, note="dilation, mixed strides"),
            case((2, 1, 5, 5), 2, {"kernel": (2, 3), "mode": "convolution"}, bias=False,
                 note="true convolution, no bias"),
            case((1, 3, 6, 6), 2, {"kernel": (3, 3), "stride": (3, 2), "padding": (0, 2),
                                   "dilation": (1, 2)}, note="stride 3, dilation 2"),
            case((2, 2, 6, 7), 3, {"kernel": (2, 3), "padding": (1, 2), "dilation": (2, 1)},
                 note="stride 1 (shifted col2im) with dilation and padding"),
            case((2, 3, 7, 9), 2, {"kernel": (2, 3), "padding": (0, 1), "dilation": (3, 2)},
                 bias=False, note="stride 1, dilation in both axes, no bias"),
            case((2, 3, 4, 5), 4, {"kernel": (1, 1)}, note="1×1 kernel"),
            case((2, 2, 5, 6), 3, {"padding": (1, 1)}, note="thin layer: output columns in pairs"),
            case((2, 2, 5, 6), 10, {}, note="paired columns in the kernel gradient only"),
            case((1, 1, 6, 8), 2, {"kernel": (3, 5), "padding": (1, 2), "mode": "convolution"},
                 bias=False, note="paired columns, true convolution, no bias"),
        ]

    @classmethod
    def torch_reference(cls, torch, params, x, w, b):
        if params["mode"] == "convolution":
            w = torch.flip(w, dims=(2, 3))
        y = torch.nn.functional.conv2d(x, w, b if params["bias"] else None,
                                       stride=params["stride"], padding=params["padding"],
                                       dilation=params["dilation"])
        return y if params["bias"] else y + b.sum()


@register_op("conv_transpose2d")
class ConvTranspose2d(Op):
    """Transposed convolution ("deconvolution"): the adjoint of a strided conv2d, upsampling.

    Every input pixel scatters a copy of the kernel, scaled by its value, into
    the output at stride ``s``; overlapping copies add. ``padding`` crops the
    result and ``output_padding`` adds rows/columns at the bottom/right, so that
    it can undo a conv2d whose output size was rounded down.

    Parameters
    ----------
    out_channels : int
        Output channels ``O``.
    kernel, stride, padding, output_padding, dilation : (int, int)
        Geometry (rows, columns); ``output_padding`` must be smaller than the
        stride or the dilation.
    bias : bool
        Add a learned bias per output channel; when off ``b`` is an empty array.
    init : str
        Initializer of ``W``.

    Shape:
        x (B, C, H, W) -> out (B, O, H', W') with H' = (H − 1)s − 2p + d(k−1) + output_padding + 1;
        W (C, O, kh, kw) (PyTorch layout), b (O,)
    """

    label = "ConvTranspose2D"
    category = "layers"
    weights = ("W", "b")
    params = (Param("out_channels", "int", 8, low=1, high=4096, doc="output channels"),
              _kernel(), _stride(), _padding(),
              Param("output_padding", "ints", (0, 0), low=0, high=31,
                    doc="extra rows/cols at the bottom/right (< stride)"),
              _DILATION, _BIAS, _INIT)
    formula = "y[o, s·i+d·m−p, s·j+d·n−p] += W[c,o,m,n]·x[c,i,j]  (+ b[o])"
    derivative = "∂L/∂x = conv2d(G, W) with the same stride; ∂L/∂W = Σ x·windows(G)"

    def _out_hw(self, x_hw):
        p = self.p
        outs = []
        for n, k, s, pad, op_, d, axis in zip(x_hw, p["kernel"], p["stride"], p["padding"],
                                              p["output_padding"], p["dilation"], ("rows", "cols")):
            if op_ >= max(s, d):
                raise ShapeError(f"conv_transpose2d: output_padding {op_} ({axis}) must be "
                                 f"smaller than the stride {s} or the dilation {d}")
            if n is None:
                outs.append(None)
                continue
            o = (n - 1) * s - 2 * pad + d * (k - 1) + op_ + 1
            if o < 1:
                raise ShapeError(f"conv_transpose2d: padding {pad} crops away the whole "
                                 f"{axis} of the output (a {n}-long input gives {o})")
            outs.append(o)
        return tuple(outs)

    def infer_shapes(self, x):
        _need_4d("conv_transpose2d", x)
        oh, ow = self._out_hw(x[2:])
        return ((x[0], self.p["out_channels"], oh, ow),)

    def weight_specs(self, x):
        _need_4d("conv_transpose2d", x)
        c, (kh, kw), o = x[1], self.p["kernel"], self.p["out_channels"]
        return {"W": WeightSpec((c, o, kh, kw), self.p["init"], fan_in=c * kh * kw,
                                fan_out=o * kh * kw),
                "b": WeightSpec((o,) if self.p["bias"] else (0,), "zeros",
                                fan_in=c * kh * kw, fan_out=o * kh * kw)}

    def multiply_adds(self, x):
        kh, kw = self.p["kernel"]
        return (x[1] or 0) * (x[2] or 0) * (x[3] or 0) * self.p["out_channels"] * kh * kw

    def forward(self, ctx, x, w, b):
        p = self.p
        out_hw = self.infer_shapes(x.shape)[0][2:]
        if w.shape[0] != x.shape[1]:
            raise ShapeError(f"conv_transpose2d: input has {x.shape[1]} channels but W is "
                             f"{fmt_shape(w.shape)}")
        kernels = conv if isinstance(x, np.ndarray) else device
        y, ctx.kernel_state = kernels.conv_transpose2d_forward(
            x, w, b, p["kernel"], p["stride"], p["padding"], p["dilation"],
            p["output_padding"], out_hw)
        return y

    def backward(self, ctx, g):
        kernels = conv if isinstance(g, np.ndarray) else device
        return kernels.conv_transpose2d_backward(ctx.kernel_state, g, ctx.needs(0))

    @classmethod
    def sample_inputs(cls, rng):
        def case(x_shape, o, params, bias=True, note=""):
            kh, kw = params.get("kernel", (3, 3))
            w = rng.normal(size=(x_shape[1], o, kh, kw))
            b = rng.normal(size=(o,)) if bias else _empty_bias(np.float64)
            return Sample((rng.normal(size=x_shape), w, b),
                          dict(params, out_channels=o, bias=bias), note=note)

        return [
            case((2, 2, 3, 3), 2, {}, note="3×3, stride 1"),
            case((2, 2, 3, 4), 3, {"stride": (2, 2), "padding": (1, 1),
                                   "output_padding": (1, 0)}, note="stride 2, output_padding"),
            case((1, 3, 3, 3), 2, {"kernel": (2, 3), "stride": (3, 1), "padding": (0, 1),
                                   "dilation": (1, 2)}, bias=False, note="dilation, no bias"),
        ]

    @classmethod
    def torch_reference(cls, torch, params, x, w, b):
        y = torch.nn.functional.conv_transpose2d(
            x, w, b if params["bias"] else None, stride=params["stride"],
            padding=params["padding"], output_padding=params["output_padding"],
            dilation=params["dilation"])
        return y if params["bias"] else y + b.sum()


# -------------------------------------------------------------------- pooling

class _Pool(Op):
    category = "layers"
    params = (_kernel((2, 2)), _stride((2, 2)), _padding())

    def _check_padding(self):
        for k, pad in zip(self.p["kernel"], self.p["padding"]):
            if 2 * pad > k:
                raise ShapeError(f"{self.id}: padding {pad} must be at most half the kernel "
                                 f"({k}); a window could otherwise see only padding")

    def _out_hw(self, x):
        _need_4d(self.id, x)
        self._check_padding()
        p = self.p
        return _window_out(self.id, x[2:], p["kernel"], p["stride"], p["padding"],
                           what="window")

    def infer_shapes(self, x):
        oh, ow = self._out_hw(x)
        return ((x[0], x[1], oh, ow),)

    @staticmethod
    def _distinct(rng, shape):
        """Values at least 0.05 apart, so no window has a near-tie for finite differences."""
        n = int(np.prod(shape))
        return (rng.permutation(n) * 0.05 - n * 0.025).reshape(shape) + rng.uniform(
            0, 0.01, shape)


@register_op("max_pool2d")
class MaxPool2d(_Pool):
    """Max pooling: the largest value of each window, and where it was.

    The second output, ``indices``, is the flat position (row · W + col) of each
    maximum within its channel's H×W input plane, like PyTorch; it feeds
    :class:`MaxUnpool2d`. When several values of a window tie for the maximum
    (common on MNIST's zero background), the first one in row-major window order
    gets the whole gradient, so the gradient is never duplicated.

    Parameters
    ----------
    kernel, stride, padding : (int, int)
        Window geometry; padding counts as −∞ and is at most half the kernel.

    Shape:
        x (B, C, H, W) -> out (B, C, H', W'), indices (B, C, H', W') int64
        with H' = ⌊(H + 2p − k)/s⌋ + 1
    """

    label = "MaxPool2D"
    outputs = ("out", "indices")
    index_ports = ("indices",)
    formula = "y[i,j] = max over window(i,j) of x"
    derivative = "∂y/∂x = 1 at the (first) maximum of the window, 0 elsewhere"

    def infer_shapes(self, x):
        (shape,) = super().infer_shapes(x)
        return shape, shape

    def forward(self, ctx, x):
        p = self.p
        if not isinstance(x, np.ndarray):
            out, idx, ctx.kernel_state = device.max_pool2d_forward(
                x, p["kernel"], p["stride"], p["padding"], self._out_hw(x.shape),
                want_indices=ctx.wants(1))
            return out, idx
        out, idx, ctx.kernel_state = pool.max_pool2d_forward(
            scratch_for(self), x, p["kernel"], p["stride"], p["padding"], self._out_hw(x.shape),
            want_indices=ctx.wants(1), training=ctx.training)
        return out, idx

    def backward(self, ctx, g, g_indices=None):
        if not isinstance(g, np.ndarray):
            return (device.max_pool2d_backward(ctx.kernel_state, g),)
        return (pool.max_pool2d_backward(scratch_for(self), ctx.kernel_state, g),)

    @classmethod
    def sample_inputs(cls, rng):
        d = cls._distinct
        return [
            Sample((d(rng, (2, 2, 4, 4)),), {}, note="2×2, stride 2"),
            Sample((d(rng, (1, 2, 5, 5)),), {"kernel": (3, 3), "stride": (2, 2),
                                             "padding": (1, 1)}, note="3×3, stride 2, pad 1"),
            Sample((d(rng, (2, 1, 4, 6)),), {"kernel": (2, 3), "stride": (1, 2)},
                   note="overlapping rows"),
            Sample((d(rng, (1, 2, 5, 7)),), {"kernel": (2, 2), "stride": (2, 3)},
                   note="uneven fit"),
            Sample((d(rng, (2, 2, 4, 6)),), {}, training=True,
                   note="2×2 in training: the maxima are marked in forward"),
            Sample((d(rng, (1, 2, 6, 6)),), {"kernel": (3, 2)}, training=True,
                   note="3×2 tiles in training"),
        ]

    @classmethod
    def torch_reference(cls, torch, params, x):
        out, idx = torch.nn.functional.max_pool2d(x, params["kernel"], params["stride"],
                                                  params["padding"], return_indices=True)
        return out, idx


@register_op("avg_pool2d")
class AvgPool2d(_Pool):
    """Average pooling: the mean of each window (padding counts as zeros, like PyTorch).

    Parameters
    ----------
    kernel, stride, padding : (int, int)
        Window geometry; padding is at most half the kernel.

    Shape:
        x (B, C, H, W) -> out (B, C, H', W') with H' = ⌊(H + 2p − k)/s⌋ + 1
    """

    label = "AvgPool2D"
    formula = "y[i,j] = (1/(kh·kw)) Σ window(i,j) of x"
    derivative = "∂y/∂x = 1/(kh·kw) for every x in the window"

    def multiply_adds(self, x):
        _, c, oh, ow = self.infer_shapes(x)[0]
        kh, kw = self.p["kernel"]
        return (c or 0) * (oh or 0) * (ow or 0) * kh * kw

    def forward(self, ctx, x):
        p = self.p
        kernels = pool if isinstance(x, np.ndarray) else device
        y, ctx.kernel_state = kernels.avg_pool2d_forward(x, p["kernel"], p["stride"],
                                                         p["padding"], self._out_hw(x.shape))
        return y

    def backward(self, ctx, g):
        kernels = pool if isinstance(g, np.ndarray) else device
        return (kernels.avg_pool2d_backward(ctx.kernel_state, g),)

    @classmethod
    def sample_inputs(cls, rng):
        return [
            Sample((rng.normal(size=(2, 2, 4, 4)),), {}, note="2×2, stride 2"),
            Sample((rng.normal(size=(1, 2, 5, 5)),), {"kernel": (3, 3), "stride": (2, 2),
                                                      "padding": (1, 1)}, note="pad 1"),
            Sample((rng.normal(size=(2, 1, 4, 5)),), {"kernel": (2, 3), "stride": (1, 1)},
                   note="overlapping"),
        ]

    @classmethod
    def torch_reference(cls, torch, params, x):
        return torch.nn.functional.avg_pool2d(x, params["kernel"], params["stride"],
                                              params["padding"])


@register_op("global_avg_pool")
class GlobalAvgPool(Op):
    """Mean of each channel over the whole image: one number per channel.

    Shape:
        x (B, C, H, W) -> out (B, C)
    """

    label = "Global AvgPool"
    category = "layers"
    formula = "y[c] = (1/(H·W)) Σ_i,j x[c,i,j]"
    derivative = "∂y[c]/∂x[c,i,j] = 1/(H·W)"

    def infer_shapes(self, x):
        _need_4d("global_avg_pool", x)
        return ((x[0], x[1]),)

    def multiply_adds(self, x):
        return numel(x[1:])

    def forward(self, ctx, x):
        self.infer_shapes(x.shape)
        ctx.shape = x.shape
        return x.mean(axis=(2, 3))

    def backward(self, ctx, g):
        h, w = ctx.shape[2:]
        gx = array_module(g).empty(ctx.shape, dtype=g.dtype)
        gx[...] = (g * g.dtype.type(1.0 / (h * w)))[:, :, None, None]
        return (gx,)

    @classmethod
    def sample_inputs(cls, rng):
        return [Sample((rng.normal(size=(2, 3, 4, 5)),))]

    @classmethod
    def torch_reference(cls, torch, params, x):
        return x.mean(dim=(2, 3))


@register_op("max_unpool2d")
class MaxUnpool2d(_Pool):
    """Partial inverse of max pooling: each value goes back to where its maximum came from.

    ``indices`` is the second output of a :class:`MaxPool2d` with the same
    geometry; every other output position is zero. When overlapping windows
    picked the same maximum twice, one copy lands there and only it gets the
    gradient (PyTorch's backward sends it to both, which its forward does not do).

    Parameters
    ----------
    kernel, stride, padding : (int, int)
        The geometry of the max pool being undone.

    Shape:
        x (B, C, H, W), indices (B, C, H, W) int -> out (B, C, H', W')
        with H' = (H − 1)s − 2p + k
    """

    label = "MaxUnpool2D"
    inputs = ("x", "indices")
    no_grad_inputs = ("indices",)
    index_ports = ("indices",)
    formula = "y[indices[i,j]] = x[i,j], 0 elsewhere"
    derivative = "∂L/∂x[i,j] = G[indices[i,j]]"

    def infer_shapes(self, x, idx):
        _need_4d("max_unpool2d", x)
        if len(idx) != 4 or any(a is not None and b is not None and a != b
                                for a, b in zip(x, idx)):
            raise ShapeError(f"max_unpool2d: indices {fmt_shape(idx)} must have the shape of "
                             f"x {fmt_shape(x)} (connect the indices output of the max pool)")
        self._check_padding()
        p = self.p
        hw = []
        for n, k, s, pad in zip(x[2:], p["kernel"], p["stride"], p["padding"]):
            o = None if n is None else (n - 1) * s - 2 * pad + k
            if o is not None and o < 1:
                raise ShapeError(f"max_unpool2d: padding {pad} leaves no output")
            hw.append(o)
        return ((x[0], x[1], hw[0], hw[1]),)

    def forward(self, ctx, x, idx):
        oh, ow = self.infer_shapes(x.shape, idx.shape)[0][2:]
        if idx.dtype.kind not in "iu":
            raise ShapeError(f"max_unpool2d: indices must be integers; got {idx.dtype}")
        b, c = x.shape[:2]
        flat = idx.reshape(b, c, -1)
        if flat.size and (flat.min() < 0 or flat.max() >= oh * ow):
            raise ShapeError(f"max_unpool2d: an index ({int(flat.max())}) lies outside the "
                             f"{oh}×{ow} output; the kernel/stride/padding must match the pool's")
        if not isinstance(x, np.ndarray):
            y, won = device.max_unpool2d(x, flat, oh * ow)
            ctx.flat, ctx.x_shape, ctx.won = flat, x.shape, won
            return y.reshape(b, c, oh, ow)
        y = np.zeros((b, c, oh * ow), dtype=x.dtype)
        np.put_along_axis(y, flat, x.reshape(b, c, -1), axis=2)
        # Overlapping pool windows can repeat an index: only one value lands there (the
        # same one as in PyTorch) and only that one may get the gradient. Writing each
        # value's own number the same way tells which one landed.
        ids = np.broadcast_to(np.arange(flat.shape[2]), flat.shape)
        landed = np.full((b, c, oh * ow), -1, dtype=np.int64)
        np.put_along_axis(landed, flat, ids, axis=2)
        won = np.take_along_axis(landed, flat, axis=2) == ids
        ctx.flat, ctx.x_shape, ctx.won = flat, x.shape, None if won.all() else won
        return y.reshape(b, c, oh, ow)

    def backward(self, ctx, g, *_):
        b, c = ctx.x_shape[:2]
        gx = array_module(g).take_along_axis(g.reshape(b, c, -1), ctx.flat, axis=2)
        if ctx.won is not None:
            gx *= ctx.won
        return gx.reshape(ctx.x_shape), None

    @classmethod
    def sample_inputs(cls, rng):
        cases = []
        for shape, params in (((2, 2, 4, 4), {}),
                              ((1, 2, 4, 4), {"kernel": (3, 3), "stride": (3, 3),
                                              "padding": (1, 1)})):
            pooled, idx = MaxPool2d(**params).forward(Context(), cls._distinct(rng, shape))
            cases.append(Sample((rng.normal(size=pooled.shape), np.ascontiguousarray(idx)),
                                params, note=str(params or "2×2, stride 2")))
        return cases

    @classmethod
    def torch_reference(cls, torch, params, x, idx):
        return torch.nn.functional.max_unpool2d(x, idx.long(), params["kernel"],
                                                params["stride"], params["padding"])
