"""Elementwise math, reductions, matmul and shape ops.

Elementwise binary ops broadcast like NumPy; their backward sums the gradient
back down to each input's shape (:func:`unbroadcast`).
"""

from __future__ import annotations

import numpy as np

from core.errors import ShapeError
from core.kernels.backend import array_module
from core.ops.base import (
    Op,
    Param,
    Sample,
    broadcast_shapes,
    fmt_shape,
    numel,
    register_op,
    unbroadcast,
)


def _signed(rng, shape, low=0.3, high=1.5):
    """Values away from zero, both signs: safe for finite differences at kinks."""
    return rng.uniform(low, high, shape) * rng.choice([-1.0, 1.0], shape)


class _Binary(Op):
    category = "math"
    inputs = ("a", "b")
    elementwise = True

    def multiply_adds(self, a, b):
        return numel(self.infer_shapes(a, b)[0])

    @classmethod
    def sample_inputs(cls, rng):
        return [
            Sample((_signed(rng, (3, 4)), _signed(rng, (3, 4))), note="same shape"),
            Sample((_signed(rng, (2, 3, 4)), _signed(rng, (3, 1))), note="broadcast"),
            Sample((_signed(rng, ()), _signed(rng, (4,))), note="scalar with vector"),
        ]


@register_op("add")
class Add(_Binary):
    """Sum of two tensors."""

    label = "Add"
    formula = "a + b"
    derivative = "∂/∂a = 1, ∂/∂b = 1"

    def forward(self, ctx, a, b):
        ctx.shapes = (a.shape, b.shape)
        return a + b

    def backward(self, ctx, g):
        return unbroadcast(g, ctx.shapes[0]), unbroadcast(g, ctx.shapes[1])

    @classmethod
    def torch_reference(cls, torch, params, a, b):
        return a + b


@register_op("subtract")
class Subtract(_Binary):
    """Difference of two tensors."""

    label = "Subtract"
    formula = "a − b"
    derivative = "∂/∂a = 1, ∂/∂b = −1"

    def forward(self, ctx, a, b):
        ctx.shapes = (a.shape, b.shape)
        return a - b

    def backward(self, ctx, g):
        return unbroadcast(g, ctx.shapes[0]), unbroadcast(-g, ctx.shapes[1])

    @classmethod
    def torch_reference(cls, torch, params, a, b):
        return a - b


@register_op("multiply")
class Multiply(_Binary):
    """Elementwise product."""

    label = "Multiply"
    formula = "a · b"
    derivative = "∂/∂a = b, ∂/∂b = a"

    def forward(self, ctx, a, b):
        ctx.a, ctx.b = a, b
        return a * b

    def backward(self, ctx, g):
        a, b = ctx.a, ctx.b
        return (unbroadcast(g * b, a.shape) if ctx.needs(0) else None,
                unbroadcast(g * a, b.shape) if ctx.needs(1) else None)

    @classmethod
    def torch_reference(cls, torch, params, a, b):
        return a * b


@register_op("divide")
class Divide(_Binary):
    """Elementwise quotient."""

    label = "Divide"
    formula = "a / b"
    derivative = "∂/∂a = 1/b, ∂/∂b = −a/b²"

    def forward(self, ctx, a, b):
        ctx.a, ctx.b = a, b
        return a / b

    def backward(self, ctx, g):
        a, b = ctx.a, ctx.b
        return (unbroadcast(g / b, a.shape) if ctx.needs(0) else None,
                unbroadcast(-g * a / (b * b), b.shape) if ctx.needs(1) else None)

    @classmethod
    def torch_reference(cls, torch, params, a, b):
        return a / b


class _Select(_Binary):
    """Picks one of its inputs per element; the gradient goes to the one picked."""

    def takes_a(self, a, b):
        raise NotImplementedError

    def forward(self, ctx, a, b):
        ctx.shapes = (a.shape, b.shape)
        ctx.mask = self.takes_a(a, b)
        return _module(a, b).where(ctx.mask, a, b)

    def backward(self, ctx, g):
        xp = array_module(g)
        return (unbroadcast(xp.where(ctx.mask, g, 0.0), ctx.shapes[0]),
                unbroadcast(xp.where(ctx.mask, 0.0, g), ctx.shapes[1]))


@register_op("maximum")
class Maximum(_Select):
    """Elementwise larger of two tensors; a tie sends the gradient to ``a``."""

    label = "Max"
    formula = "max(a, b)"
    derivative = "∂/∂a = [a ≥ b], ∂/∂b = [a < b]"

    def takes_a(self, a, b):
        return a >= b

    @classmethod
    def torch_reference(cls, torch, params, a, b):
        return torch.maximum(a, b)


@register_op("minimum")
class Minimum(_Select):
    """Elementwise smaller of two tensors; a tie sends the gradient to ``a``."""

    label = "Min"
    formula = "min(a, b)"
    derivative = "∂/∂a = [a ≤ b], ∂/∂b = [a > b]"

    def takes_a(self, a, b):
        return a <= b

    @classmethod
    def torch_reference(cls, torch, params, a, b):
        return torch.minimum(a, b)


def _module(a, b):
    """The array module of two operands (a host scalar takes the other's)."""
    xp = array_module(a)
    return xp if xp is not np else array_module(b)


class _Unary(Op):
    category = "math"
    inputs = ("x",)
    elementwise = True

    def infer_shapes(self, x):
        return (x,)

    def multiply_adds(self, x):
        return numel(x)


@register_op("negate")
class Negate(_Unary):
    """Change of sign."""

    label = "Negate"
    formula = "−x"
    derivative = "∂/∂x = −1"

    def forward(self, ctx, x):
        return -x

    def backward(self, ctx, g):
        return (-g,)

    @classmethod
    def torch_reference(cls, torch, params, x):
        return -x


@register_op("reciprocal")
class Reciprocal(_Unary):
    """One over x."""

    label = "Reciprocal"
    formula = "1/x"
    derivative = "∂/∂x = −1/x²"

    def forward(self, ctx, x):
        ctx.y = 1.0 / x
        return ctx.y

    def backward(self, ctx, g):
        return (-g * ctx.y * ctx.y,)

    @classmethod
    def torch_reference(cls, torch, params, x):
        return 1.0 / x


@register_op("exp")
class Exp(_Unary):
    """Natural exponential."""

    label = "Exp"
    formula = "eˣ"
    derivative = "∂/∂x = eˣ"

    def forward(self, ctx, x):
        ctx.y = array_module(x).exp(x)
        return ctx.y

    def backward(self, ctx, g):
        return (g * ctx.y,)

    @classmethod
    def torch_reference(cls, torch, params, x):
        return torch.exp(x)


@register_op("log")
class Log(_Unary):
    """Natural logarithm (inputs must be positive)."""

    label = "Log"
    formula = "ln x"
    derivative = "∂/∂x = 1/x"

    def forward(self, ctx, x):
        ctx.x = x
        return array_module(x).log(x)

    def backward(self, ctx, g):
        return (g / ctx.x,)

    @classmethod
    def sample_inputs(cls, rng):
        return [Sample((rng.uniform(0.3, 3.0, (3, 4)),))]

    @classmethod
    def torch_reference(cls, torch, params, x):
        return torch.log(x)


@register_op("power")
class Power(_Unary):
    """x raised to a fixed exponent."""

    label = "Power"
    params = (Param("exponent", "float", 2.0, doc="the fixed exponent p"),)
    formula = "xᵖ"
    derivative = "∂/∂x = p·xᵖ⁻¹"

    def forward(self, ctx, x):
        ctx.x = x
        return x ** self.p["exponent"]

    def backward(self, ctx, g):
        p = self.p["exponent"]
        return (g * p * ctx.x ** (p - 1),)

    @classmethod
    def sample_inputs(cls, rng):
        return [Sample((_signed(rng, (3, 4)),), {"exponent": 3.0}),
                Sample((rng.uniform(0.3, 2.0, (5,)),), {"exponent": -1.5}),
                Sample((_signed(rng, (2, 2)),), {"exponent": 2.0})]

    @classmethod
    def torch_reference(cls, torch, params, x):
        return x ** params["exponent"]


@register_op("square")
class Square(_Unary):
    """x squared."""

    label = "Square"
    formula = "x²"
    derivative = "∂/∂x = 2x"

    def forward(self, ctx, x):
        ctx.x = x
        return x * x

    def backward(self, ctx, g):
        return (2.0 * g * ctx.x,)

    @classmethod
    def torch_reference(cls, torch, params, x):
        return x * x


@register_op("sqrt")
class Sqrt(_Unary):
    """Square root (inputs must be non-negative)."""

    label = "Sqrt"
    formula = "√x"
    derivative = "∂/∂x = 1/(2√x)"

    def forward(self, ctx, x):
        ctx.y = array_module(x).sqrt(x)
        return ctx.y

    def backward(self, ctx, g):
        return (g / (2.0 * ctx.y),)

    @classmethod
    def sample_inputs(cls, rng):
        return [Sample((rng.uniform(0.3, 3.0, (3, 4)),))]

    @classmethod
    def torch_reference(cls, torch, params, x):
        return torch.sqrt(x)


@register_op("abs")
class Abs(_Unary):
    """Absolute value; the gradient at 0 is taken as 0."""

    label = "Abs"
    formula = "|x|"
    derivative = "∂/∂x = sign(x)"

    def forward(self, ctx, x):
        ctx.x = x
        return abs(x)

    def backward(self, ctx, g):
        return (g * array_module(ctx.x).sign(ctx.x),)

    @classmethod
    def torch_reference(cls, torch, params, x):
        return torch.abs(x)


@register_op("matmul")
class MatMul(Op):
    """Matrix product with NumPy's batching rules for 1-D and stacked operands.

    Shape:
        a (…, n, k), b (…, k, m) -> (…, n, m); a 1-D operand is promoted and squeezed.
    """

    label = "MatMul"
    category = "math"
    inputs = ("a", "b")
    formula = "A·B"
    derivative = "∂/∂A = G·Bᵀ, ∂/∂B = Aᵀ·G"

    def infer_shapes(self, a, b):
        if len(a) == 0 or len(b) == 0:
            raise ShapeError("matmul needs at least 1-D inputs; use multiply for scalars")
        ka = a[-1]
        kb = b[0] if len(b) == 1 else b[-2]
        if ka is not None and kb is not None and ka != kb:
            raise ShapeError(f"matmul: inner dimensions differ: {fmt_shape(a)} · {fmt_shape(b)} "
                             f"({ka} ≠ {kb})")
        batch_a = a[:-2]
        batch_b = b[:-2]
        batch = broadcast_shapes(batch_a, batch_b)
        rows = (a[-2],) if len(a) > 1 else ()
        cols = (b[-1],) if len(b) > 1 else ()
        return (tuple(batch) + rows + cols,)

    def multiply_adds(self, a, b):
        out = self.infer_shapes(a, b)[0]
        return numel(out) * (a[-1] or 1)

    def forward(self, ctx, a, b):
        ctx.a, ctx.b = a, b
        return a @ b

    def backward(self, ctx, g):
        a, b = ctx.a, ctx.b
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g
        if b.ndim == 1:  # restore the squeezed column axis, then the squeezed row axis
            g2 = g2[..., None]
        if a.ndim == 1:
            g2 = g2[..., None, :]
        ga = gb = None
        if ctx.needs(0):
            ga = unbroadcast(g2 @ b2.swapaxes(-1, -2), a2.shape).reshape(a.shape)
        if ctx.needs(1):
            gb = unbroadcast(a2.swapaxes(-1, -2) @ g2, b2.shape).reshape(b.shape)
        return ga, gb

    @classmethod
    def sample_inputs(cls, rng):
        return [
            Sample((rng.normal(size=(3, 4)), rng.normal(size=(4, 2))), note="matrix"),
            Sample((rng.normal(size=(4,)), rng.normal(size=(4, 3))), note="vector · matrix"),
            Sample((rng.normal(size=(3, 4)), rng.normal(size=(4,))), note="matrix · vector"),
            Sample((rng.normal(size=(2, 3, 4)), rng.normal(size=(4, 5))), note="batched"),
            Sample((rng.normal(size=(4,)), rng.normal(size=(4,))), note="dot product"),
            Sample((rng.normal(size=(4,)), rng.normal(size=(2, 4, 3))), note="vector · stack"),
        ]

    @classmethod
    def torch_reference(cls, torch, params, a, b):
        return torch.matmul(a, b)


class _Reduce(Op):
    category = "math"
    params = (
        Param("axis", "int", None, optional=True, doc="axis to reduce; empty for all"),
        Param("keepdims", "bool", False, doc="keep the reduced axis with length 1", quiet=True),
    )

    def _axis(self, ndim):
        axis = self.p["axis"]
        if axis is None:
            return None
        if not -ndim <= axis < ndim:
            raise ShapeError(f"axis {axis} is out of range for a {ndim}-D input")
        return axis % ndim

    def infer_shapes(self, x):
        axis = self._axis(len(x))
        keep = self.p["keepdims"]
        if axis is None:
            return ((1,) * len(x) if keep else (),)
        return (tuple(1 if i == axis else d for i, d in enumerate(x) if keep or i != axis),)

    def multiply_adds(self, x):
        return numel(x)

    def _expand(self, g, shape):
        """``g`` broadcast back over the reduced axis, as a new array."""
        xp = array_module(g)
        axis = self._axis(len(shape))
        if axis is not None and not self.p["keepdims"]:
            g = xp.expand_dims(g, axis)
        return xp.array(xp.broadcast_to(g, shape))

    @classmethod
    def sample_inputs(cls, rng):
        return [Sample((rng.normal(size=(3, 4)),), {}),
                Sample((rng.normal(size=(3, 4)),), {"axis": 1}),
                Sample((rng.normal(size=(2, 3, 4)),), {"axis": 0, "keepdims": True}),
                Sample((rng.normal(size=(2, 3)),), {"axis": -1})]


@register_op("sum")
class Sum(_Reduce):
    """Sum over one axis or all."""

    label = "Sum"
    formula = "Σᵢ xᵢ"
    derivative = "∂/∂xᵢ = 1"

    def forward(self, ctx, x):
        ctx.shape = x.shape
        return x.sum(axis=self._axis(x.ndim), keepdims=self.p["keepdims"])

    def backward(self, ctx, g):
        return (self._expand(g, ctx.shape),)

    @classmethod
    def torch_reference(cls, torch, params, x):
        axis = params.get("axis")
        if axis is None:
            s = x.sum()
            return s.reshape((1,) * x.dim()) if params.get("keepdims") else s
        return x.sum(dim=axis, keepdim=params.get("keepdims", False))


@register_op("mean")
class Mean(_Reduce):
    """Mean over one axis or all."""

    label = "Mean"
    formula = "(1/n) Σᵢ xᵢ"
    derivative = "∂/∂xᵢ = 1/n"

    def forward(self, ctx, x):
        ctx.shape = x.shape
        axis = self._axis(x.ndim)
        ctx.n = x.size if axis is None else x.shape[axis]
        return x.mean(axis=axis, keepdims=self.p["keepdims"])

    def backward(self, ctx, g):
        return (self._expand(g / ctx.n, ctx.shape),)

    @classmethod
    def torch_reference(cls, torch, params, x):
        axis = params.get("axis")
        if axis is None:
            s = x.mean()
            return s.reshape((1,) * x.dim()) if params.get("keepdims") else s
        return x.mean(dim=axis, keepdim=params.get("keepdims", False))


@register_op("reshape")
class Reshape(Op):
    """Same values, new shape; the batch dimension (first) is kept.

    Shape:
        (B, …) -> (B, *shape); one entry of ``shape`` may be -1 (inferred).
    """

    label = "Reshape"
    category = "math"
    params = (Param("shape", "shape", (-1,), doc="new shape after the batch axis; -1 infers one"),
              Param("keep_batch", "bool", True, doc="keep the first axis as the batch",
                    quiet=True))
    formula = "reshape(x)"
    derivative = "∂/∂x = reshape back"

    def _target(self, x):
        lead = x[:1] if self.p["keep_batch"] and len(x) else ()
        rest = x[1:] if self.p["keep_batch"] and len(x) else x
        want = [-1 if d is None else d for d in self.p["shape"]]
        total = numel(rest)
        if any(d is None for d in rest):
            raise ShapeError("reshape: only the first (batch) axis may be unknown")
        if want.count(-1) > 1:
            raise ShapeError("reshape: at most one axis may be -1")
        known = int(np.prod([d for d in want if d != -1], dtype=np.int64))
        if -1 in want:
            if known == 0 or total % known:
                raise ShapeError(f"reshape: cannot fit {total} values into {self.p['shape']}")
            want[want.index(-1)] = total // known
        elif known != total:
            raise ShapeError(f"reshape: {fmt_shape(x)} has {total} values per sample; "
                             f"{tuple(want)} needs {known}")
        return tuple(lead) + tuple(want)

    def infer_shapes(self, x):
        return (self._target(x),)

    def forward(self, ctx, x):
        ctx.shape = x.shape
        return x.reshape(self._target(x.shape))

    def backward(self, ctx, g):
        return (g.reshape(ctx.shape),)

    @classmethod
    def sample_inputs(cls, rng):
        return [Sample((rng.normal(size=(2, 3, 4)),), {"shape": (4, 3)}),
                Sample((rng.normal(size=(2, 6)),), {"shape": (-1,), "keep_batch": False})]

    @classmethod
    def torch_reference(cls, torch, params, x):
        shape = [-1 if d is None else d for d in params["shape"]]
        if params.get("keep_batch", True):
            return x.reshape([x.shape[0]] + shape)
        return x.reshape(shape)


@register_op("flatten")
class Flatten(Op):
    """Collapse every axis after the batch into one.

    Shape:
        (B, d1, d2, …) -> (B, d1·d2·…)
    """

    label = "Flatten"
    category = "layers"
    formula = "flatten(x)"
    derivative = "∂/∂x = reshape back"

    def infer_shapes(self, x):
        if len(x) < 1:
            raise ShapeError("flatten needs an input with a batch axis")
        if any(d is None for d in x[1:]):
            raise ShapeError("flatten: only the batch axis may be unknown")
        return ((x[0], numel(x[1:])),)

    def forward(self, ctx, x):
        ctx.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, ctx, g):
        return (g.reshape(ctx.shape),)

    @classmethod
    def sample_inputs(cls, rng):
        return [Sample((rng.normal(size=(2, 3, 4, 2)),)), Sample((rng.normal(size=(3, 5)),))]

    @classmethod
    def torch_reference(cls, torch, params, x):
        return x.reshape(x.shape[0], -1)


@register_op("transpose")
class Transpose(Op):
    """Permute axes; with no ``axes`` the last two are swapped.

    Shape:
        (…, n, m) -> (…, m, n)
    """

    label = "Transpose"
    category = "math"
    params = (Param("axes", "str", "", doc="comma-separated permutation, e.g. 0,2,1; "
                                             "empty swaps the last two axes"),)
    formula = "xᵀ"
    derivative = "∂/∂x = transpose back"

    def _perm(self, ndim):
        text = self.p["axes"].strip()
        if not text:
            if ndim < 2:
                return tuple(range(ndim))
            return tuple(range(ndim - 2)) + (ndim - 1, ndim - 2)
        try:
            perm = tuple(int(t) for t in text.split(","))
        except ValueError:
            raise ShapeError(f"transpose: axes '{text}' must be integers separated by commas") \
                from None
        if sorted(perm) != list(range(ndim)):
            raise ShapeError(f"transpose: axes {perm} are not a permutation of {ndim} axes")
        return perm

    def infer_shapes(self, x):
        return (tuple(x[i] for i in self._perm(len(x))),)

    def forward(self, ctx, x):
        ctx.perm = self._perm(x.ndim)
        return x.transpose(ctx.perm)

    def backward(self, ctx, g):
        return (g.transpose(tuple(int(i) for i in np.argsort(ctx.perm))),)

    @classmethod
    def sample_inputs(cls, rng):
        return [Sample((rng.normal(size=(3, 4)),)),
                Sample((rng.normal(size=(2, 3, 4)),), {"axes": "1,2,0"})]

    @classmethod
    def torch_reference(cls, torch, params, x):
        text = params.get("axes", "")
        if not text:
            return x.transpose(-1, -2)
        return x.permute(*[int(t) for t in text.split(",")])
