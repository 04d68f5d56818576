"""Stepping through forward and backward passes: the Qt-free core of the stepping view.

:class:`StepSession` is the debugger (steps, breakpoints, feeds, invalidation);
:mod:`~core.stepping.summary` turns arrays into what a wire shows;
:func:`chain_rule` gives the chain-rule panel; :func:`check_gradient` and
:func:`score_guess` are "check gradient" and predict mode; :mod:`~core.stepping.feeds`
makes a digit into inputs.
"""

from core.stepping.breakpoints import (
    Condition,
    GradNormAbove,
    GradNormBelow,
    NonFinite,
    StopReason,
)
from core.stepping.chain import ChainRule, ChainTerm, Contribution, chain_rule
from core.stepping.checks import GradientCheckReport, GuessScore, check_gradient, score_guess
from core.stepping.feeds import digit_feeds, drawn_digit, sample_digit, training_normalizer
from core.stepping.session import StepEntry, StepMove, StepSession, WireView
from core.stepping.summary import (
    MagnitudeScale,
    TensorSummary,
    TensorView,
    Thumbnail,
    histogram,
    summarize,
    tensor_view,
    thumbnail,
)

__all__ = [
    "ChainRule", "ChainTerm", "Condition", "Contribution", "GradNormAbove", "GradNormBelow",
    "GradientCheckReport", "GuessScore", "MagnitudeScale", "NonFinite", "StepEntry",
    "StepMove", "StepSession", "StopReason", "TensorSummary", "TensorView", "Thumbnail",
    "WireView",
    "chain_rule", "check_gradient", "digit_feeds", "drawn_digit", "histogram", "sample_digit",
    "score_guess", "summarize", "tensor_view", "thumbnail", "training_normalizer",
]
