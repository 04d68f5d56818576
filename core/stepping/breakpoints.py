"""Breakpoints: on nodes, and on conditions a step can trigger (NaN/Inf, gradient norms).

A condition looks at one :class:`core.executor.StepRecord` after it ran and
answers with a :class:`StopReason` (why to stop there) or ``None``.

Example
-------
>>> import numpy as np
>>> from core.executor import StepRecord
>>> rec = StepRecord("backward", "h", "n3", grad_inputs=[np.full(3, 1e4)])
>>> GradNormAbove(100.0).check(rec, ("x",)).kind
'exploding'
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.kernels.backend import array_module


@dataclass(frozen=True)
class StopReason:
    """Where a run stopped and why, for the status bar and the step list.

    Attributes
    ----------
    kind : str
        ``"step"`` (one step done), ``"start"``, ``"end"``, ``"forward_done"``,
        ``"target"`` (run-to reached its node), ``"breakpoint"`` (a node breakpoint),
        ``"nonfinite"``, ``"exploding"``, ``"vanishing"``, ``"error"`` (a step failed
        and changed nothing), ``"stale"`` (the graph changed; reset first) or
        ``"cancelled"`` (a move run apart was stopped and changed nothing).
    message : str
        One line for the user.
    index : int or None
        The step stopped on (the one just run); ``None`` before the first step.
    node, phase : str or None
        Its node's name and phase.
    target : str or None
        What triggered a condition: ``"output 0"``, ``"gradient to input 'x'"``…
    value, threshold : float or None
        The norm that crossed a threshold, and the threshold.
    """

    kind: str
    message: str
    index: int | None = None
    node: str | None = None
    phase: str | None = None
    target: str | None = None
    value: float | None = None
    threshold: float | None = None

    @property
    def triggered(self) -> bool:
        """A breakpoint or condition stopped the run (not its end or its target)."""
        return self.kind in ("breakpoint", "nonfinite", "exploding", "vanishing")


def _norm(a) -> float:
    """The 2-norm in float64, computed where ``a`` lives (one number comes back)."""
    xp = array_module(a)
    flat = xp.asarray(a).astype(xp.float64, copy=False).ravel()
    return float(math.sqrt(float(xp.dot(flat, flat))))


def _is_float(a) -> bool:
    if a is None:
        return False
    dtype = a.dtype if hasattr(a, "dtype") else np.asarray(a).dtype
    return dtype.kind == "f"


def _float_arrays(rec, names):
    """``(label, array)`` for what a step produced: outputs forward, gradients backward."""
    if rec.phase == "forward":
        for k, y in enumerate(rec.outputs):
            if _is_float(y):
                yield f"output {k}", y
        return
    for i, g in enumerate(rec.grad_inputs):
        if _is_float(g):
            what = names[i] if i < len(names) else f"#{i}"
            yield f"gradient to {what}", g


class Condition:
    """A breakpoint condition; subclasses implement :meth:`check`."""

    kind = ""

    def check(self, rec, names) -> StopReason | None:
        """A reason to stop after ``rec`` (``names``: its inputs then weights), or ``None``."""
        raise NotImplementedError


@dataclass(frozen=True)
class NonFinite(Condition):
    """Stop on the step whose output (forward) or gradient (backward) holds NaN or Inf."""

    kind = "nonfinite"

    def check(self, rec, names):
        for label, a in _float_arrays(rec, names):
            xp = array_module(a)  # counted on the device: only the counts come back
            if bool(xp.isfinite(a).all()):
                continue
            n_nan, n_inf = int(xp.isnan(a).sum()), int(xp.isinf(a).sum())
            return StopReason("nonfinite", f"'{rec.node}' {rec.phase}: {label} has {n_nan} NaN "
                              f"and {n_inf} Inf of {a.size} values", node=rec.node,
                              phase=rec.phase, target=label)
        return None


@dataclass(frozen=True)
class GradNormAbove(Condition):
    """Stop on a backward step that passes a gradient whose norm exceeds ``threshold``."""

    threshold: float
    kind = "exploding"

    def check(self, rec, names):
        if rec.phase != "backward":
            return None
        for label, g in _float_arrays(rec, names):
            n = _norm(g)
            if n > self.threshold:  # NaN is not above anything: NonFinite reports it
                return StopReason("exploding", f"'{rec.node}': {label} has norm "
                                  f"{n:.4g} > {self.threshold:g} (exploding)", node=rec.node,
                                  phase=rec.phase, target=label, value=n,
                                  threshold=self.threshold)
        return None


@dataclass(frozen=True)
class GradNormBelow(Condition):
    """Stop on a backward step that passes a gradient whose norm is below ``threshold``."""

    threshold: float
    kind = "vanishing"

    def check(self, rec, names):
        if rec.phase != "backward":
            return None
        for label, g in _float_arrays(rec, names):
            n = _norm(g)
            if n < self.threshold:
                return StopReason("vanishing", f"'{rec.node}': {label} has norm "
                                  f"{n:.4g} < {self.threshold:g} (vanishing)", node=rec.node,
                                  phase=rec.phase, target=label, value=n,
                                  threshold=self.threshold)
        return None
