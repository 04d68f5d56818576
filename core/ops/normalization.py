"""Batch normalization and dropout: the layers whose training behaviour differs from evaluation.

Example
-------
>>> BatchNorm().infer_shapes((None, 6, 28, 28))
((None, 6, 28, 28),)
"""

from __future__ import annotations

import numpy as np

from core.errors import ShapeError
from core.kernels.backend import array_module, like
from core.kernels.elementwise import dropout_draw_forward, dropout_forward, times_mask
from core.kernels.layout import random_like
from core.kernels.scratch import scratch_for
from core.ops.base import Op, Param, Sample, WeightSpec, fmt_shape, numel, register_op


@register_op("batch_norm")
class BatchNorm(Op):
    """Batch normalization: standardize each feature (or channel) then scale and shift.

    In training the mean and variance come from the batch and update running
    averages kept in the node's state (``running_mean``, ``running_var``;
    the running variance is the unbiased one, like PyTorch); in evaluation the
    running averages are used, so a single sample gives a deterministic answer.

    Parameters
    ----------
    momentum : float
        Weight of the new batch in the running averages.
    eps : float
        Added to the variance before the square root.

    Shape:
        x (B, F) -> out (B, F), per feature; x (B, C, H, W) -> out (B, C, H, W),
        per channel; gamma, beta (F,) or (C,)
    """

    label = "BatchNorm"
    category = "layers"
    weights = ("gamma", "beta")
    state_like = {"running_mean": "gamma", "running_var": "gamma"}
    params = (Param("momentum", "float", 0.1, low=0.0, high=1.0,
                    doc="weight of the current batch in the running averages"),
              Param("eps", "float", 1e-5, low=0.0, high=1.0, doc="added to the variance"))
    formula = "y = γ·(x − μ_B)/√(σ²_B + ε) + β"
    derivative = ("∂L/∂x = γ/(N·σ)·(N·G − ΣG − x̂·Σ(G·x̂)); ∂L/∂γ = Σ G·x̂, ∂L/∂β = Σ G "
                  "(evaluation: ∂L/∂x = γ·G/σ)")

    @staticmethod
    def _check(x):
        if len(x) not in (2, 4):
            raise ShapeError(f"batch_norm expects (B, F) or (B, C, H, W); got {fmt_shape(x)}")
        if x[1] is None:
            raise ShapeError("batch_norm: the number of features/channels must be known")

    def infer_shapes(self, x):
        self._check(x)
        return (x,)

    def weight_specs(self, x):
        self._check(x)
        return {"gamma": WeightSpec((x[1],), "ones", fan_in=x[1], fan_out=x[1]),
                "beta": WeightSpec((x[1],), "zeros", fan_in=x[1], fan_out=x[1])}

    def multiply_adds(self, x):
        return 2 * numel(x[1:])

    def forward(self, ctx, x, gamma, beta):
        self._check(x.shape)
        axes = (0,) if x.ndim == 2 else (0, 2, 3)
        bshape = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)
        nf = x.shape[1]
        n = x.size // nf
        state = ctx.state
        xp = array_module(x)
        rm, rv = state.get("running_mean"), state.get("running_var")
        if rm is None or rm.shape != (nf,):
            rm, rv = xp.zeros(nf, dtype=x.dtype), xp.ones(nf, dtype=x.dtype)
        elif xp is not np:  # statistics loaded on the host (a checkpoint) join the run's module
            rm, rv = like(rm, x), like(rv, x)
        eps, m = self.p["eps"], self.p["momentum"]
        if ctx.training:
            if n < 2:
                raise ShapeError("batch_norm in training needs more than one value per "
                                 "feature (a batch of 1 has no variance)")
            mean = x.mean(axis=axes)
            xm = x - mean.reshape(bshape)
            var = (xm * xm).mean(axis=axes)
            # new arrays (not in place): an earlier step's saved state stays as it was
            state["running_mean"] = ((1 - m) * rm + m * mean).astype(x.dtype, copy=False)
            state["running_var"] = ((1 - m) * rv + m * var * (n / (n - 1))).astype(
                x.dtype, copy=False)
        else:
            mean, var = rm, rv
            xm = x - mean.reshape(bshape)
        inv = (1.0 / xp.sqrt(var + eps)).astype(x.dtype, copy=False)
        xhat = xm * inv.reshape(bshape)
        ctx.xhat, ctx.inv, ctx.gamma = xhat, inv, gamma
        ctx.axes, ctx.bshape, ctx.n, ctx.batch_stats = axes, bshape, n, ctx.training
        return xhat * gamma.reshape(bshape) + beta.reshape(bshape)

    def backward(self, ctx, g):
        axes, bshape, xhat = ctx.axes, ctx.bshape, ctx.xhat
        gbeta = g.sum(axis=axes)
        ggamma = (g * xhat).sum(axis=axes)
        gx = None
        if ctx.needs(0):
            scale = (ctx.gamma * ctx.inv).reshape(bshape)
            if ctx.batch_stats:
                # mean and variance depend on every x: subtract their share of the gradient
                gx = scale * (g - (gbeta / ctx.n).reshape(bshape)
                              - xhat * (ggamma / ctx.n).reshape(bshape))
            else:
                gx = g * scale
        return gx, ggamma, gbeta

    @classmethod
    def sample_inputs(cls, rng):
        # gamma is drawn first: x must not be the gradient checker's cotangent (same seed),
        # which would lie in the span of {1, x̂} where the true gradient is exactly zero
        gamma = rng.uniform(0.5, 1.5, 3)
        return [
            Sample((rng.normal(size=(5, 3)) * 2 + 1, gamma, rng.normal(size=3)),
                   training=True, note="(B, F), training"),
            Sample((rng.normal(size=(3, 2, 3, 3)), rng.uniform(0.5, 1.5, 2), rng.normal(size=2)),
                   {"eps": 1e-3}, training=True, note="(B, C, H, W), training"),
        ]

    @classmethod
    def torch_reference(cls, torch, params, x, gamma, beta):
        # the registry samples are in training mode; evaluation is compared in test_layers
        return torch.nn.functional.batch_norm(x, None, None, gamma, beta, training=True,
                                              momentum=params["momentum"], eps=params["eps"])


@register_op("dropout")
class Dropout(Op):
    """Inverted dropout: in training, zero each value with probability p, scale the rest by 1/(1−p).

    The expected value is unchanged, so evaluation is the identity. The mask is
    drawn from the node's seeded generator, so a replayed step is identical.

    Parameters
    ----------
    p : float
        Probability of dropping a value, in [0, 1).

    Shape:
        x (any) -> out (same shape)
    """

    label = "Dropout"
    category = "regularization"
    elementwise = True
    params = (Param("p", "float", 0.5, low=0.0, high=0.99, doc="probability of dropping"),)
    formula = "y = x·m/(1−p), m ~ Bernoulli(1−p) (training); y = x (evaluation)"
    derivative = "∂y/∂x = m/(1−p) (training), 1 (evaluation)"

    def infer_shapes(self, x):
        return (x,)

    def multiply_adds(self, x):
        return numel(x)

    def forward(self, ctx, x):
        p = self.p["p"]
        if not ctx.training or p == 0.0:
            ctx.mask = None
            return x
        # Generator.random draws float32 or float64 only; a float32 draw is half the bytes
        draw = np.float32 if x.dtype == np.float32 else np.float64
        scale = x.dtype.type(1.0 / (1.0 - p))
        if isinstance(x, np.ndarray):
            scratch = scratch_for(self)
            drawn = dropout_draw_forward(scratch, x, ctx.rng, p, scale, draw)
            if drawn is not None:  # a big mask, drawn in parts on the pool's threads
                y, ctx.mask = drawn
                return y
            # in x's memory order, so the products stay fast; a big draw goes to a reused
            # buffer (a fresh one costs page faults every batch)
            u = random_like(ctx.rng, x, draw, scratch if x.nbytes >= 1 << 20 else None)
            y, ctx.mask = dropout_forward(scratch, x, u, p, scale)
            return y
        u = ctx.rng.random(x.shape, dtype=draw)
        ctx.mask = (u >= p) * scale
        return x * ctx.mask

    def backward(self, ctx, g):
        if ctx.mask is None:
            return (g,)
        if isinstance(g, np.ndarray):
            return (times_mask(scratch_for(self), g, ctx.mask),)
        return (g * ctx.mask,)

    @classmethod
    def sample_inputs(cls, rng):
        return [Sample((rng.normal(size=(4, 6)),), {"p": 0.3}, training=True, note="training"),
                Sample((rng.normal(size=(2, 3, 2, 2)),), {"p": 0.5}, note="evaluation")]
