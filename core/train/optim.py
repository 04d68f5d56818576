"""Optimizers that update a graph's trainable tensors in place.

Every optimizer follows the update rule of the PyTorch optimizer of the same
name (coupled L2 weight decay ``g ← g + λθ`` included), so results can be
checked against ``torch.optim`` step by step. Tensors are keyed by
``(node_id, weight_name)`` (``weight_name`` is ``None`` for a parameter node's
value), which is also how their state is saved in checkpoints.

Example
-------
>>> import numpy as np
>>> opt = SGD(lr=0.1)
>>> theta = np.array([1.0, 2.0])
>>> opt.step({("n1", None): theta}, {("n1", None): np.array([1.0, -1.0])})
>>> theta
array([0.9, 2.1])
"""

from __future__ import annotations

import math

import numpy as np

from core.kernels.backend import array_module, on_host, to_numpy

OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adagrad", "adadelta")


_TINY = {np.dtype(t): np.finfo(t).tiny for t in (np.float16, np.float32, np.float64)}
_FLUSH_EVERY = 8  # steps; a buffer decays by at most 0.9⁸ ≈ 0.43 in between


def _flush_denormals(buf, step: int = 0):
    """Zero the entries of ``buf`` smaller than the dtype's smallest normal number.

    Moving averages decay geometrically; once their entries fall into the
    subnormal range every arithmetic operation on them is several times slower
    on x86, and so is the whole update. Values take
    hundreds of steps to decay that far, so the check runs every
    :data:`_FLUSH_EVERY` optimizer steps (``step``), not on every one.
    """
    if step % _FLUSH_EVERY:
        return
    tiny = _TINY.get(buf.dtype)
    if tiny is None:
        tiny = np.finfo(buf.dtype).tiny
    xp = array_module(buf)
    xp.putmask(buf, abs(buf) < tiny, buf.dtype.type(0))


def global_norm(grads, per_tensor: list | None = None) -> float:
    """√(Σ‖g‖²) over the arrays in ``grads``, accumulated in float64.

    Each array is squared in float64: float32 gradients near 1e20 are finite,
    but their squares overflow float32 to Inf, which would zero the clipping
    scale and be reported as a non-finite loss. ``per_tensor``, a list, receives
    each array's own norm.
    """
    grads = list(grads)
    if grads and array_module(grads[0]) is not np:
        return _device_norm(grads, per_tensor)
    total = 0.0
    for g in grads:
        flat = np.asarray(g).ravel().astype(np.float64, copy=False)
        sq = float(np.dot(flat, flat))
        total += sq
        if per_tensor is not None:
            per_tensor.append(math.sqrt(sq))
    return math.sqrt(total)


def _device_norm(grads, per_tensor) -> float:
    """:func:`global_norm` of device arrays: the squares summed there, read back once."""
    xp = array_module(grads[0])
    squares = []
    for g in grads:
        flat = g.ravel().astype(np.float64, copy=False)
        squares.append(xp.vdot(flat, flat))
    sq = to_numpy(xp.stack(squares))  # one small transfer per step, not one per tensor
    if per_tensor is not None:
        per_tensor.extend(math.sqrt(float(v)) for v in sq)
    return math.sqrt(float(sq.sum()))


class Optimizer:
    """Base class: weight decay, clipping by global norm, per-tensor state.

    Parameters
    ----------
    lr : float
        Learning rate (a schedule may change :attr:`lr` between steps).
    weight_decay : float
        L2 coefficient λ: the gradient becomes ``g + λθ``.
    clip_norm : float or None
        Rescale all gradients together so their global norm is at most this.

    Attributes
    ----------
    state : dict
        ``slot name -> {key: array}`` buffers (momentum, second moments…).
    steps : int
        Number of updates done (Adam's bias correction reads it).
    last_grad_norm : float
        Global gradient norm before clipping, from the last step.
    """

    name = "optimizer"
    slots: tuple = ()
    hyper: tuple = ()  # names of the hyper-parameters saved with a checkpoint

    def __init__(self, lr: float = 0.01, weight_decay: float = 0.0, clip_norm=None):
        # NaN passes every "< 0" test, so finiteness is checked first
        if not (math.isfinite(lr) and lr >= 0):
            raise ValueError(f"learning rate must be a finite number ≥ 0; got {lr}")
        if not (math.isfinite(weight_decay) and weight_decay >= 0):
            raise ValueError(f"weight decay must be a finite number ≥ 0; got {weight_decay}")
        if clip_norm is not None and not (math.isfinite(clip_norm) and clip_norm > 0):
            raise ValueError(f"clip norm must be a finite number > 0; got {clip_norm}")
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.clip_norm = None if clip_norm is None else float(clip_norm)
        self.state: dict = {s: {} for s in self.slots}
        self.steps = 0
        self.last_grad_norm = 0.0

    # ------------------------------------------------------------- public
    def step(self, params: dict, grads: dict, grad_norm: float | None = None):
        """Update every array in ``params`` in place from ``grads`` (same keys).

        Keys present in ``params`` but missing from ``grads`` (no gradient
        reached them) are left alone. ``grad_norm`` saves recomputing the
        global norm when the caller already has it.
        """
        keys = [k for k in params if grads.get(k) is not None]
        norm = global_norm(grads[k] for k in keys) if grad_norm is None else float(grad_norm)
        self.last_grad_norm = norm
        scale = 1.0
        if self.clip_norm is not None and norm > self.clip_norm:
            scale = self.clip_norm / (norm + 1e-6)  # PyTorch's clip_grad_norm_ formula
        self.steps += 1
        for k in keys:
            p, g = params[k], grads[k]
            if scale != 1.0:
                g = g * p.dtype.type(scale)
            if self.weight_decay:
                g = g + p.dtype.type(self.weight_decay) * p
            self._update(k, p, g)

    def _buffer(self, slot: str, key, like):
        buf = self.state[slot].get(key)
        if buf is None or buf.shape != like.shape:
            buf = array_module(like).zeros_like(like)
            self.state[slot][key] = buf
        return buf

    def _update(self, key, p, g):  # pragma: no cover - overridden
        raise NotImplementedError

    # ------------------------------------------------------- checkpoints
    def config(self) -> dict:
        """Name and hyper-parameters (JSON-ready)."""
        out = {"name": self.name, "lr": self.lr, "weight_decay": self.weight_decay,
               "clip_norm": self.clip_norm}
        out.update({h: getattr(self, h) for h in self.hyper})
        return out

    def state_arrays(self) -> dict:
        """``{(slot, key): array}`` of every buffer."""
        return {(slot, k): v for slot, bufs in self.state.items() for k, v in bufs.items()}

    def load_state(self, arrays: dict, steps: int):
        """Restore buffers saved by :meth:`state_arrays` (copied, dtype kept)."""
        self.state = {s: {} for s in self.slots}
        for (slot, k), v in arrays.items():
            if slot not in self.state:
                raise ValueError(f"optimizer {self.name} has no state slot '{slot}'")
            self.state[slot][k] = np.array(v) if on_host(v) else v.copy()
        self.steps = int(steps)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Plain gradient descent: θ ← θ − η·g."""

    name = "sgd"

    def _update(self, key, p, g):
        p -= p.dtype.type(self.lr) * g


class Momentum(Optimizer):
    """Heavy-ball momentum (PyTorch form): v ← μv + g; θ ← θ − η·v.

    With ``nesterov=True``: θ ← θ − η·(g + μv), the look-ahead form.
    """

    name = "momentum"
    slots = ("velocity",)
    hyper = ("momentum", "nesterov")

    def __init__(self, lr=0.01, momentum=0.9, nesterov=False, **kw):
        super().__init__(lr, **kw)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1); got {momentum}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def _update(self, key, p, g):
        t = p.dtype.type
        v = self._buffer("velocity", key, p)
        v *= t(self.momentum)
        v += g
        _flush_denormals(v, self.steps)
        if self.nesterov:
            p -= t(self.lr) * (g + t(self.momentum) * v)
        else:
            p -= t(self.lr) * v


class Nesterov(Momentum):
    """Nesterov accelerated gradient (momentum with look-ahead)."""

    name = "nesterov"

    def __init__(self, lr=0.01, momentum=0.9, **kw):
        kw.pop("nesterov", None)
        super().__init__(lr, momentum, nesterov=True, **kw)


class RMSProp(Optimizer):
    """RMSProp: s ← αs + (1−α)g²; θ ← θ − η·g/(√s + ε) (optional momentum as in PyTorch)."""

    name = "rmsprop"
    slots = ("square_avg", "momentum_buffer")
    hyper = ("alpha", "eps", "momentum")

    def __init__(self, lr=0.001, alpha=0.99, eps=1e-8, momentum=0.0, **kw):
        super().__init__(lr, **kw)
        self.alpha, self.eps, self.momentum = float(alpha), float(eps), float(momentum)

    def _update(self, key, p, g):
        t = p.dtype.type
        s = self._buffer("square_avg", key, p)
        s *= t(self.alpha)
        s += t(1.0 - self.alpha) * g * g
        _flush_denormals(s, self.steps)
        step = g / (array_module(s).sqrt(s) + t(self.eps))
        if self.momentum:
            b = self._buffer("momentum_buffer", key, p)
            b *= t(self.momentum)
            b += step
            _flush_denormals(b, self.steps)
            step = b
        p -= t(self.lr) * step


class Adam(Optimizer):
    """Adam with bias correction.

    m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g²,
    θ ← θ − η·m̂/(√v̂ + ε) with m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ).
    """

    name = "adam"
    slots = ("m", "v")
    hyper = ("beta1", "beta2", "eps")

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, **kw):
        super().__init__(lr, **kw)
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError("Adam's betas must be in [0, 1)")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def _update(self, key, p, g):
        t = p.dtype.type
        m = self._buffer("m", key, p)
        v = self._buffer("v", key, p)
        m *= t(self.beta1)
        m += t(1.0 - self.beta1) * g
        v *= t(self.beta2)
        v += t(1.0 - self.beta2) * g * g
        _flush_denormals(m, self.steps)
        _flush_denormals(v, self.steps)
        bc1 = 1.0 - self.beta1 ** self.steps
        bc2 = 1.0 - self.beta2 ** self.steps
        # the same arithmetic order as torch.optim.Adam (step size and denominator apart)
        denom = array_module(v).sqrt(v) / t(math.sqrt(bc2)) + t(self.eps)
        p -= t(self.lr / bc1) * (m / denom)


class Adagrad(Optimizer):
    """Adagrad: G ← G + g²; θ ← θ − η·g/(√G + ε)."""

    name = "adagrad"
    slots = ("sum",)
    hyper = ("eps",)

    def __init__(self, lr=0.01, eps=1e-10, **kw):
        super().__init__(lr, **kw)
        self.eps = float(eps)

    def _update(self, key, p, g):
        t = p.dtype.type
        s = self._buffer("sum", key, p)
        s += g * g
        p -= t(self.lr) * g / (array_module(s).sqrt(s) + t(self.eps))


class Adadelta(Optimizer):
    """Adadelta: v ← ρv + (1−ρ)g²; Δ = √(u+ε)/√(v+ε)·g; u ← ρu + (1−ρ)Δ²; θ ← θ − η·Δ."""

    name = "adadelta"
    slots = ("square_avg", "acc_delta")
    hyper = ("rho", "eps")

    def __init__(self, lr=1.0, rho=0.9, eps=1e-6, **kw):
        super().__init__(lr, **kw)
        self.rho, self.eps = float(rho), float(eps)

    def _update(self, key, p, g):
        t = p.dtype.type
        v = self._buffer("square_avg", key, p)
        u = self._buffer("acc_delta", key, p)
        v *= t(self.rho)
        v += t(1.0 - self.rho) * g * g
        xp = array_module(v)
        delta = xp.sqrt(u + t(self.eps)) / xp.sqrt(v + t(self.eps)) * g
        u *= t(self.rho)
        u += t(1.0 - self.rho) * delta * delta
        _flush_denormals(v, self.steps)
        _flush_denormals(u, self.steps)
        p -= t(self.lr) * delta


_CLASSES = {c.name: c for c in (SGD, Momentum, Nesterov, RMSProp, Adam, Adagrad, Adadelta)}


def make_optimizer(name: str, **kw) -> Optimizer:
    """An optimizer by name (see :data:`OPTIMIZERS`); ``None`` values mean "default"."""
    try:
        cls = _CLASSES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown optimizer '{name}'; choose one of "
                         f"{', '.join(OPTIMIZERS)}") from None
    kw = {k: v for k, v in kw.items() if v is not None or k == "clip_norm"}
    if cls is Nesterov:
        kw.pop("nesterov", None)
    return cls(**kw)
