"""Loss functions and the L2 penalty. Every loss returns a scalar; targets get no gradient."""

from __future__ import annotations

import numpy as np

from core.errors import ShapeError
from core.kernels.backend import array_module, put_along_last
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
from core.ops.functional import log_softmax, sigmoid

_REDUCE = Param("reduction", "choice", "mean", choices=("mean", "sum"),
                doc="average over the batch, or add up", quiet=True)


class _Loss(Op):
    category = "losses"
    inputs = ("y", "target")
    no_grad_inputs = ("target",)
    is_loss = True
    scores = "scores"

    def multiply_adds(self, y, t):
        return 3 * numel(y)


@register_op("squared_error")
class SquaredError(_Loss):
    """Squared error: ½Σ(t−y)² (the textbook form), Σ(t−y)² or the mean (MSE)."""

    label = "Squared Error"
    params = (Param("reduction", "choice", "half_sum", choices=("half_sum", "sum", "mean"),
                    doc="½Σ(t−y)², Σ(t−y)², or mean (MSE)", quiet=True),)
    formula = "½ Σ (t − y)²"
    derivative = "∂L/∂y = y − t"

    def infer_shapes(self, y, t):
        broadcast_shapes(y, t)
        return ((),)

    def forward(self, ctx, y, t):
        d = y - t
        ctx.d, ctx.shape = d, y.shape
        red = self.p["reduction"]
        s = (d * d).sum()
        if red == "half_sum":
            return 0.5 * s
        if red == "sum":
            return s
        return s / d.size

    def backward(self, ctx, g):
        red = self.p["reduction"]
        scale = {"half_sum": 1.0, "sum": 2.0}.get(red, 2.0 / ctx.d.size)
        return unbroadcast(g * scale * ctx.d, ctx.shape), None

    @classmethod
    def sample_inputs(cls, rng):
        y, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
        return [Sample((y, t), {"reduction": r}) for r in ("half_sum", "sum", "mean")]

    @classmethod
    def torch_reference(cls, torch, params, y, t):
        red = params.get("reduction", "half_sum")
        s = ((y - t) ** 2).sum()
        return 0.5 * s if red == "half_sum" else s if red == "sum" else ((y - t) ** 2).mean()


@register_op("binary_cross_entropy")
class BinaryCrossEntropy(_Loss):
    """−[t ln p + (1−t) ln(1−p)] from probabilities, or stably from logits."""

    label = "Binary Cross-Entropy"
    params = (Param("from_logits", "bool", False, doc="inputs are logits (σ applied inside)"),
              _REDUCE)
    formula = "−[t ln p + (1−t) ln(1−p)]"
    derivative = "∂L/∂p = (p − t)/(p(1−p)); from logits: σ(z) − t"

    def score_kind(self) -> str:
        return "logit" if self.p["from_logits"] else "prob"

    def infer_shapes(self, y, t):
        broadcast_shapes(y, t)
        return ((),)

    def forward(self, ctx, y, t):
        ctx.y, ctx.t = y, t
        n = y.size if self.p["reduction"] == "mean" else 1
        ctx.n = n
        xp = array_module(y)
        if self.p["from_logits"]:
            # ln(1+e^z) − t·z, written so neither term overflows
            loss = xp.logaddexp(0.0, y) - t * y
        else:
            loss = -(t * xp.log(y) + (1.0 - t) * xp.log1p(-y))
        return loss.sum() / n

    def backward(self, ctx, g):
        y, t = ctx.y, ctx.t
        if self.p["from_logits"]:
            gy = sigmoid(y) - t
        else:
            gy = (y - t) / (y * (1.0 - y))
        return g * gy / ctx.n, None

    @classmethod
    def sample_inputs(cls, rng):
        p = rng.uniform(0.1, 0.9, (5,))
        t = (rng.random(5) > 0.5).astype(float)
        z = rng.normal(size=(4, 2)) * 2
        tz = (rng.random((4, 2)) > 0.5).astype(float)
        return [Sample((p, t)), Sample((z, tz), {"from_logits": True, "reduction": "sum"})]

    @classmethod
    def torch_reference(cls, torch, params, y, t):
        f = torch.nn.functional
        red = params.get("reduction", "mean")
        if params.get("from_logits"):
            return f.binary_cross_entropy_with_logits(y, t, reduction=red)
        return f.binary_cross_entropy(y, t, reduction=red)


def _targets(t, logits):
    """Integer class indices from integer or one-hot targets; error names the shapes."""
    if t.ndim == logits.ndim and t.shape == logits.shape:
        return None, t  # one-hot or soft targets
    if t.shape != logits.shape[:-1] and t.shape != logits.shape[:1]:
        raise ShapeError(f"target {fmt_shape(t.shape)} fits neither class indices "
                         f"{fmt_shape(logits.shape[:-1])} nor one-hot {fmt_shape(logits.shape)}")
    idx = t.astype(np.int64)
    c = logits.shape[-1]
    if idx.size and (idx.min() < 0 or idx.max() >= c):
        raise ShapeError(f"class index {int(idx.max() if idx.max() >= c else idx.min())} is "
                         f"outside 0…{c - 1}")
    return idx, None


def _class_shapes(y, t):
    if len(y) < 1:
        raise ShapeError("scores need a class axis (last)")
    ok = (tuple(t) == tuple(y) or tuple(t) == tuple(y[:-1]))
    if not ok and not (len(t) == len(y) - 1 and all(a is None or b is None or a == b
                                                     for a, b in zip(t, y[:-1]))):
        if not (len(t) == len(y) and all(a is None or b is None or a == b for a, b in zip(t, y))):
            raise ShapeError(f"target {fmt_shape(t)} fits neither class indices "
                             f"{fmt_shape(y[:-1])} nor one-hot {fmt_shape(y)}")
    return ((),)


@register_op("softmax_cross_entropy")
class SoftmaxCrossEntropy(_Loss):
    """Softmax and cross-entropy fused for stability; integer or one-hot targets.

    Shape:
        logits (B, C), target (B,) class indices or (B, C) one-hot -> scalar
    """

    label = "Softmax Cross-Entropy"
    inputs = ("logits", "target")
    scores = "logits"
    params = (_REDUCE,)
    formula = "−Σ tᵢ ln softmax(z)ᵢ"
    derivative = "∂L/∂z = softmax(z) − t"

    def infer_shapes(self, y, t):
        return _class_shapes(y, t)

    def multiply_adds(self, y, t):
        return 4 * numel(y)

    def forward(self, ctx, z, t):
        xp = array_module(z)
        logp = log_softmax(z, -1)
        idx, onehot = _targets(t, z)
        n = int(np.prod(z.shape[:-1])) if self.p["reduction"] == "mean" else 1
        ctx.p, ctx.idx, ctx.onehot, ctx.n = xp.exp(logp), idx, onehot, n
        if idx is not None:
            if z.ndim == 2:  # (B, C): plain indexing, cheaper than take_along_axis
                return -logp[xp.arange(len(idx)), idx].sum() / n
            picked = xp.take_along_axis(logp, idx[..., None], axis=-1)
            return -picked.sum() / n
        return -(onehot * logp).sum() / n

    def backward(self, ctx, g):
        xp = array_module(ctx.p)
        gz = ctx.p.copy()
        if ctx.idx is not None and gz.ndim == 2:
            gz[xp.arange(len(ctx.idx)), ctx.idx] -= 1.0
        elif ctx.idx is not None:
            put_along_last(gz, ctx.idx[..., None],
                           xp.take_along_axis(gz, ctx.idx[..., None], axis=-1) - 1.0)
        else:
            gz = ctx.p * ctx.onehot.sum(axis=-1, keepdims=True) - ctx.onehot
        return gz * (g / ctx.n), None

    @classmethod
    def sample_inputs(cls, rng):
        z = rng.normal(size=(4, 5)) * 2
        idx = rng.integers(0, 5, 4)
        onehot = np.eye(5)[rng.integers(0, 5, 3)]
        return [Sample((z, idx)), Sample((rng.normal(size=(3, 5)), onehot), {"reduction": "sum"})]

    @classmethod
    def torch_reference(cls, torch, params, z, t):
        red = params.get("reduction", "mean")
        if t.dim() == z.dim():
            loss = -(t * torch.log_softmax(z, -1)).sum()
            return loss / z.shape[0] if red == "mean" else loss
        return torch.nn.functional.cross_entropy(z, t.long(), reduction=red)


@register_op("nll")
class NegativeLogLikelihood(_Loss):
    """Softmax log-likelihood loss on log-probabilities (pair it with log-softmax).

    Shape:
        log_probs (B, C), target (B,) class indices -> scalar
    """

    label = "Negative Log-Likelihood"
    inputs = ("log_probs", "target")
    scores = "log_probs"
    params = (_REDUCE,)
    formula = "−ln p_target"
    derivative = "∂L/∂(ln p)ᵢ = −[i = target]"

    def infer_shapes(self, y, t):
        return _class_shapes(y, t)

    def forward(self, ctx, lp, t):
        idx, onehot = _targets(t, lp)
        n = int(np.prod(lp.shape[:-1])) if self.p["reduction"] == "mean" else 1
        ctx.shape, ctx.idx, ctx.onehot, ctx.n = lp.shape, idx, onehot, n
        if idx is not None:
            return -array_module(lp).take_along_axis(lp, idx[..., None], axis=-1).sum() / n
        return -(onehot * lp).sum() / n

    def backward(self, ctx, g):
        if ctx.idx is not None:
            xp = array_module(ctx.idx)
            gl = xp.zeros(ctx.shape, dtype=np.result_type(getattr(g, "dtype", g), np.float32))
            put_along_last(gl, ctx.idx[..., None], -1.0)
        else:
            gl = -ctx.onehot
        return gl * (g / ctx.n), None

    @classmethod
    def sample_inputs(cls, rng):
        z = rng.normal(size=(4, 5))
        lp = log_softmax(z, -1)
        return [Sample((lp, rng.integers(0, 5, 4)))]

    @classmethod
    def torch_reference(cls, torch, params, lp, t):
        return torch.nn.functional.nll_loss(lp, t.long(), reduction=params.get("reduction", "mean"))


@register_op("hinge")
class MulticlassHinge(_Loss):
    """Multiclass SVM (Weston–Watkins) hinge loss: Σ_{j≠y} max(0, s_j − s_y + Δ).

    Shape:
        scores (B, C), target (B,) class indices -> scalar
    """

    label = "Multiclass Hinge"
    inputs = ("scores", "target")
    params = (Param("margin", "float", 1.0, low=0.0, doc="margin Δ"), _REDUCE)
    formula = "Σ_{j≠y} max(0, sⱼ − s_y + Δ)"
    derivative = "∂/∂sⱼ = [margin_j > 0]; ∂/∂s_y = −#violations"

    def infer_shapes(self, y, t):
        return _class_shapes(y, t)

    def forward(self, ctx, s, t):
        idx, onehot = _targets(t, s)
        xp = array_module(s)
        if idx is None:
            idx = onehot.argmax(axis=-1)
        correct = xp.take_along_axis(s, idx[..., None], axis=-1)
        margins = xp.maximum(0.0, s - correct + self.p["margin"])
        put_along_last(margins, idx[..., None], 0.0)
        n = int(np.prod(s.shape[:-1])) if self.p["reduction"] == "mean" else 1
        ctx.mask, ctx.idx, ctx.n = (margins > 0).astype(s.dtype), idx, n
        return margins.sum() / n

    def backward(self, ctx, g):
        gs = ctx.mask.copy()
        put_along_last(gs, ctx.idx[..., None], -ctx.mask.sum(axis=-1, keepdims=True))
        return gs * (g / ctx.n), None

    @classmethod
    def sample_inputs(cls, rng):
        # scores spread out so no margin sits at the kink (0) within the step size
        s = rng.permuted(np.tile(np.arange(5.0) * 0.37, (4, 1)), axis=1) + 0.05
        return [Sample((s, rng.integers(0, 5, 4))),
                Sample((s * 3, rng.integers(0, 5, 4)), {"margin": 0.5, "reduction": "sum"})]

    @classmethod
    def torch_reference(cls, torch, params, s, t):
        idx = t.long()
        correct = s.gather(-1, idx[:, None])
        m = torch.clamp(s - correct + params.get("margin", 1.0), min=0)
        m = m.scatter(-1, idx[:, None], 0.0)
        return m.sum() / (s.shape[0] if params.get("reduction", "mean") == "mean" else 1)


@register_op("l2_penalty")
class L2Penalty(Op):
    """Weight decay term ½λ‖w‖² to add to a loss."""

    label = "L2 Penalty"
    category = "regularization"
    inputs = ("w",)
    params = (Param("lam", "float", 1e-4, low=0.0, doc="strength λ"),)
    formula = "½ λ ‖w‖²"
    derivative = "∂/∂w = λw"
    is_loss = True

    def infer_shapes(self, w):
        return ((),)

    def multiply_adds(self, w):
        return numel(w)

    def forward(self, ctx, w):
        ctx.w = w
        return 0.5 * self.p["lam"] * (w * w).sum()

    def backward(self, ctx, g):
        return (g * self.p["lam"] * ctx.w,)

    @classmethod
    def sample_inputs(cls, rng):
        return [Sample((rng.normal(size=(3, 4)),), {"lam": 0.1})]

    @classmethod
    def torch_reference(cls, torch, params, w):
        return 0.5 * params.get("lam", 1e-4) * (w * w).sum()
