""""Check gradient" on a node, and predict mode's scoring of a guessed gradient.

The gradient check is :mod:`core.gradcheck` (float64 central differences, its
thresholds ``GOOD`` and ``BAD``) run on the session's graph and feeds.

Example
-------
>>> score_guess(0.2, 0.19661193324148185).verdict
'close'
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core import gradcheck
from core.kernels.backend import array_module


@dataclass(frozen=True)
class GradientCheckReport:
    """What "check gradient" found for one node.

    Attributes
    ----------
    node : str
    rows : list of core.gradcheck.GradCheck
        One per input port or weight (source nodes: their value), with ``rel_error``,
        ``ok`` and ``verdict`` (``"good"``, ``"suspicious"``, ``"WRONG"``).
    ok : bool
        Every row is below :data:`core.gradcheck.BAD`.
    worst : float
        The largest relative error (0 when nothing could be checked).
    verdict : str
        The worst row's verdict, or ``"nothing to check"``.
    good, bad : float
        The thresholds the verdicts use.
    """

    node: str
    rows: list
    ok: bool
    worst: float
    verdict: str
    good: float = gradcheck.GOOD
    bad: float = gradcheck.BAD


def check_gradient(session, node, eps: float = 1e-6) -> GradientCheckReport:
    """Compare ``node``'s analytic gradients with central differences (float64).

    A layer or math node is checked at the inputs it gets with the session's feeds
    (:func:`core.gradcheck.check_node`: its inputs and weights); an input,
    constant or parameter node by the loss's numerical derivative with respect to
    its value (:func:`core.gradcheck.check_graph`). The graph is copied; nothing
    the session holds changes.
    """
    n = session.graph.node(node)
    feeds = dict(session.feeds)
    if type(n.op).source:
        if session.loss_id is None:
            rows = []
        else:
            rows = gradcheck.check_graph(session.graph, loss=session.loss_id, feeds=feeds,
                                         eps=eps, seed=session.seed, nodes=[n.id])
    else:
        rows = gradcheck.check_node(session.graph, n.id, feeds=feeds, eps=eps, seed=session.seed)
    if not rows:
        return GradientCheckReport(n.name, [], True, 0.0, "nothing to check")
    worst = max(rows, key=lambda r: r.rel_error)
    return GradientCheckReport(n.name, rows, all(r.ok for r in rows), worst.rel_error,
                               worst.verdict)


# ------------------------------------------------------------ predict mode
# within the 4 significant digits the canvas shows
EXACT = 5e-4
CLOSE = 0.1


@dataclass(frozen=True)
class GuessScore:
    """How close a guessed gradient was.

    Attributes
    ----------
    guess, actual : float
        For a tensor, ``actual`` is its norm (the user guesses the norm).
    rel_error : float
        ``|guess − actual| / |actual|`` (``inf`` when only the actual value is zero).
    verdict : str
        ``"exact"`` (to the digits shown), ``"close"`` (within 10 %), ``"wrong sign"``
        or ``"off"``.
    message : str
    """

    guess: float
    actual: float
    rel_error: float
    verdict: str
    message: str


def score_guess(guess, actual) -> GuessScore:
    """Score ``guess`` against the gradient ``actual`` (a number, or a tensor's norm).

    Raises
    ------
    ValueError
        ``guess`` is not a finite number (text is parsed, so the view can pass what was typed).
    """
    try:
        g = float(str(guess).strip().replace("−", "-")) if isinstance(guess, str) else float(guess)
    except (TypeError, ValueError):
        raise ValueError(f"a guess is a number; got {guess!r}") from None
    if not math.isfinite(g):
        raise ValueError(f"a guess is a finite number; got {guess!r}")
    xp = array_module(actual)  # a gradient on a device: its norm is computed there
    a_arr = xp.asarray(actual).astype(xp.float64)
    tensor = a_arr.size != 1
    a = (float(xp.sqrt(xp.dot(a_arr.ravel(), a_arr.ravel()))) if tensor
         else float(a_arr.reshape(-1)[0]))
    if a == 0:
        rel = 0.0 if g == 0 else math.inf
    else:
        rel = abs(g - a) / abs(a)
    what = "the norm" if tensor else "the gradient"
    if rel <= EXACT:
        verdict = "exact"
    elif not tensor and g * a < 0:
        verdict = "wrong sign"
    elif rel <= CLOSE:
        verdict = "close"
    else:
        verdict = "off"
    pct = "" if math.isinf(rel) else f" ({rel:.1%} off)"
    return GuessScore(g, a, rel, verdict, f"you guessed {g:.4g}; {what} is {a:.4g}{pct}: "
                                          f"{verdict}")
