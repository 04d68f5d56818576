"""Activation functions. All are elementwise except softmax and log-softmax."""

from __future__ import annotations

import math

import numpy as np

from core.errors import ShapeError
from core.kernels.backend import array_module, erf
from core.kernels.elementwise import relu_forward, times_mask
from core.kernels.scratch import scratch_for
from core.ops.base import Op, Param, Sample, numel, register_op
from core.ops.functional import log_softmax, sigmoid, softmax


def _avoid_zero(rng, shape):
    """Samples away from 0, where several activations have a kink."""
    return rng.uniform(0.1, 2.5, shape) * rng.choice([-1.0, 1.0], shape)


class _Activation(Op):
    category = "activations"
    elementwise = True

    def infer_shapes(self, x):
        return (x,)

    def multiply_adds(self, x):
        return numel(x)

    @classmethod
    def sample_inputs(cls, rng):
        return [Sample((_avoid_zero(rng, (3, 5)),)), Sample((_avoid_zero(rng, ()),))]


@register_op("identity")
class Identity(_Activation):
    """Passes its input through (a linear unit)."""

    label = "Identity"
    formula = "x"
    derivative = "1"

    def forward(self, ctx, x):
        return x

    def backward(self, ctx, g):
        return (g,)

    @classmethod
    def torch_reference(cls, torch, params, x):
        return x * 1.0


@register_op("sigmoid")
class Sigmoid(_Activation):
    """Logistic sigmoid."""

    label = "Sigmoid"
    formula = "σ(x) = 1/(1+e⁻ˣ)"
    derivative = "σ(x)(1−σ(x))"

    def forward(self, ctx, x):
        ctx.y = sigmoid(x)
        return ctx.y

    def backward(self, ctx, g):
        y = ctx.y
        return (g * y * (1.0 - y),)

    @classmethod
    def torch_reference(cls, torch, params, x):
        return torch.sigmoid(x)


@register_op("tanh")
class Tanh(_Activation):
    """Hyperbolic tangent."""

    label = "Tanh"
    formula = "tanh(x)"
    derivative = "1 − tanh²(x)"

    def forward(self, ctx, x):
        ctx.y = array_module(x).tanh(x)
        return ctx.y

    def backward(self, ctx, g):
        return (g * (1.0 - ctx.y * ctx.y),)

    @classmethod
    def torch_reference(cls, torch, params, x):
        return torch.tanh(x)


@register_op("relu")
class ReLU(_Activation):
    """Rectified linear unit; the gradient at 0 is 0."""

    label = "ReLU"
    formula = "max(0, x)"
    derivative = "[x > 0]"
    # max(0, ·) keeps the order of positive numbers and sends the rest to 0: a window's
    # maximum, and which position gets its gradient, are the same before or after it
    commutes_with = ("max_pool2d",)

    def forward(self, ctx, x):
        if isinstance(x, np.ndarray):
            # reused buffers for training's batches only: an evaluation's would outlive it
            y, ctx.mask = relu_forward(scratch_for(self) if ctx.training else None, x)
            return y
        ctx.mask = x > 0
        return array_module(x).maximum(x, 0)

    def backward(self, ctx, g):
        # the CPU kernel multiplies in the mask's memory order; other modules as they are
        if isinstance(g, np.ndarray):
            return (times_mask(scratch_for(self) if ctx.training else None, g, ctx.mask),)
        return (g * ctx.mask,)

    @classmethod
    def torch_reference(cls, torch, params, x):
        return torch.relu(x)


@register_op("leaky_relu")
class LeakyReLU(_Activation):
    """ReLU with a small slope for negative inputs."""

    label = "Leaky ReLU"
    params = (Param("alpha", "float", 0.01, low=0.0, high=1.0, doc="slope for x < 0"),)
    formula = "x if x > 0 else αx"
    derivative = "1 if x > 0 else α"

    def forward(self, ctx, x):
        ctx.mask = x > 0
        return array_module(x).where(ctx.mask, x, self.p["alpha"] * x)

    def backward(self, ctx, g):
        return (array_module(g).where(ctx.mask, g, self.p["alpha"] * g),)

    @classmethod
    def torch_reference(cls, torch, params, x):
        return torch.nn.functional.leaky_relu(x, params.get("alpha", 0.01))


@register_op("elu")
class ELU(_Activation):
    """Exponential linear unit."""

    label = "ELU"
    params = (Param("alpha", "float", 1.0, low=0.0, doc="saturation value for x → −∞"),)
    formula = "x if x > 0 else α(eˣ−1)"
    derivative = "1 if x > 0 else αeˣ"

    def forward(self, ctx, x):
        xp = array_module(x)
        ctx.mask = x > 0
        ctx.e = self.p["alpha"] * xp.exp(xp.minimum(x, 0.0))
        return xp.where(ctx.mask, x, ctx.e - self.p["alpha"])

    def backward(self, ctx, g):
        return (array_module(g).where(ctx.mask, g, g * ctx.e),)

    @classmethod
    def torch_reference(cls, torch, params, x):
        return torch.nn.functional.elu(x, params.get("alpha", 1.0))


@register_op("gelu")
class GELU(_Activation):
    """Gaussian error linear unit, exact (erf) or with the tanh approximation."""

    label = "GELU"
    params = (Param("approximate", "choice", "none", choices=("none", "tanh"),
                    doc="exact erf form, or the tanh approximation", quiet=True),)
    formula = "x·Φ(x)"
    derivative = "Φ(x) + x·φ(x)"

    _K = math.sqrt(2.0 / math.pi)

    def forward(self, ctx, x):
        ctx.x = x
        if self.p["approximate"] == "tanh":
            ctx.t = array_module(x).tanh(self._K * (x + 0.044715 * x ** 3))
            return 0.5 * x * (1.0 + ctx.t)
        ctx.cdf = 0.5 * (1.0 + erf(x.astype(np.float64) / math.sqrt(2.0))).astype(x.dtype)
        return x * ctx.cdf

    def backward(self, ctx, g):
        x = ctx.x
        if self.p["approximate"] == "tanh":
            t = ctx.t
            dt = (1.0 - t * t) * self._K * (1.0 + 3 * 0.044715 * x * x)
            return (g * (0.5 * (1.0 + t) + 0.5 * x * dt),)
        pdf = array_module(x).exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        return (g * (ctx.cdf + x * pdf),)

    @classmethod
    def sample_inputs(cls, rng):
        x = _avoid_zero(rng, (3, 5))
        return [Sample((x,)), Sample((x,), {"approximate": "tanh"})]

    @classmethod
    def torch_reference(cls, torch, params, x):
        return torch.nn.functional.gelu(x, approximate=params.get("approximate", "none"))


@register_op("softplus")
class Softplus(_Activation):
    """Smooth ReLU: log(1 + e^(βx))/β."""

    label = "Softplus"
    params = (Param("beta", "float", 1.0, low=1e-6, doc="sharpness β"),)
    formula = "ln(1+e^(βx))/β"
    derivative = "σ(βx)"

    def forward(self, ctx, x):
        b = self.p["beta"]
        ctx.s = sigmoid(b * x)
        return array_module(x).logaddexp(0.0, b * x) / b

    def backward(self, ctx, g):
        return (g * ctx.s,)

    @classmethod
    def torch_reference(cls, torch, params, x):
        # PyTorch switches to the identity above a threshold; ours stays exact
        return torch.nn.functional.softplus(x, beta=params.get("beta", 1.0), threshold=1e9)


@register_op("softsign")
class Softsign(_Activation):
    """x / (1 + |x|)."""

    label = "Softsign"
    formula = "x/(1+|x|)"
    derivative = "1/(1+|x|)²"

    def forward(self, ctx, x):
        ctx.d = 1.0 + abs(x)
        return x / ctx.d

    def backward(self, ctx, g):
        return (g / (ctx.d * ctx.d),)

    @classmethod
    def torch_reference(cls, torch, params, x):
        return torch.nn.functional.softsign(x)


@register_op("swish")
class Swish(_Activation):
    """x·σ(βx) (SiLU when β = 1)."""

    label = "Swish"
    params = (Param("beta", "float", 1.0, doc="β; 1 gives SiLU"),)
    formula = "x·σ(βx)"
    derivative = "σ(βx) + βx·σ(βx)(1−σ(βx))"

    def forward(self, ctx, x):
        ctx.x = x
        ctx.s = sigmoid(self.p["beta"] * x)
        return x * ctx.s

    def backward(self, ctx, g):
        s, x = ctx.s, ctx.x
        return (g * (s + self.p["beta"] * x * s * (1.0 - s)),)

    @classmethod
    def torch_reference(cls, torch, params, x):
        return x * torch.sigmoid(params.get("beta", 1.0) * x)


@register_op("mish")
class Mish(_Activation):
    """x·tanh(softplus(x))."""

    label = "Mish"
    formula = "x·tanh(ln(1+eˣ))"
    derivative = "tanh(sp(x)) + x·σ(x)(1−tanh²(sp(x)))"

    def forward(self, ctx, x):
        ctx.x = x
        xp = array_module(x)
        ctx.t = xp.tanh(xp.logaddexp(0.0, x))
        return x * ctx.t

    def backward(self, ctx, g):
        t, x = ctx.t, ctx.x
        return (g * (t + x * sigmoid(x) * (1.0 - t * t)),)

    @classmethod
    def torch_reference(cls, torch, params, x):
        return torch.nn.functional.mish(x)


@register_op("log_sigmoid")
class LogSigmoid(_Activation):
    """log σ(x), computed without overflow."""

    label = "Log-Sigmoid"
    formula = "ln σ(x) = −ln(1+e⁻ˣ)"
    derivative = "1 − σ(x)"

    def forward(self, ctx, x):
        ctx.x = x
        return -array_module(x).logaddexp(0.0, -x)

    def backward(self, ctx, g):
        return (g * sigmoid(-ctx.x),)

    @classmethod
    def torch_reference(cls, torch, params, x):
        return torch.nn.functional.logsigmoid(x)


@register_op("step")
class Step(_Activation):
    """Heaviside step (the perceptron's threshold); its gradient is 0 everywhere."""

    label = "Step"
    formula = "1 if x > 0 else 0"
    derivative = "0 (almost everywhere)"

    def forward(self, ctx, x):
        return (x > 0).astype(x.dtype)

    def backward(self, ctx, g):
        return (array_module(g).zeros_like(g),)


class _SoftmaxBase(Op):
    category = "activations"
    params = (Param("axis", "int", -1, doc="axis the probabilities sum to 1 over"),)

    def infer_shapes(self, x):
        if len(x) == 0:
            raise ShapeError("softmax needs at least a 1-D input")
        if not -len(x) <= self.p["axis"] < len(x):
            raise ShapeError(f"axis {self.p['axis']} is out of range for a {len(x)}-D input")
        return (x,)

    def multiply_adds(self, x):
        return 3 * numel(x)

    @classmethod
    def sample_inputs(cls, rng):
        return [Sample((rng.normal(size=(3, 5)),)),
                Sample((rng.normal(size=(4, 3)),), {"axis": 0}),
                Sample((rng.normal(size=(6,)) * 3,))]


@register_op("softmax")
class Softmax(_SoftmaxBase):
    """Exponentials normalized to sum to 1 along ``axis``."""

    label = "Softmax"
    formula = "softmax(x)ᵢ = eˣⁱ / Σⱼ eˣʲ"
    derivative = "∂yᵢ/∂xⱼ = yᵢ(δᵢⱼ − yⱼ)"

    def forward(self, ctx, x):
        ctx.y = softmax(x, self.p["axis"])
        return ctx.y

    def backward(self, ctx, g):
        y = ctx.y
        return (y * (g - (g * y).sum(axis=self.p["axis"], keepdims=True)),)

    @classmethod
    def torch_reference(cls, torch, params, x):
        return torch.softmax(x, dim=params.get("axis", -1))


@register_op("log_softmax")
class LogSoftmax(_SoftmaxBase):
    """log of softmax, computed stably."""

    label = "Log-Softmax"
    formula = "xᵢ − ln Σⱼ eˣʲ"
    derivative = "∂yᵢ/∂xⱼ = δᵢⱼ − softmax(x)ⱼ"

    def forward(self, ctx, x):
        y = log_softmax(x, self.p["axis"])
        ctx.p = array_module(y).exp(y)
        return y

    def backward(self, ctx, g):
        return (g - ctx.p * g.sum(axis=self.p["axis"], keepdims=True),)

    @classmethod
    def torch_reference(cls, torch, params, x):
        return torch.log_softmax(x, dim=params.get("axis", -1))
