"""Stepping through forward and backward passes: the Qt-free core of the stepping view.

:class:`StepSession` is the debugger (steps, breakpoints, feeds, invalidation);
:mod:`~core.stepping.summary` turns arrays into what a wire shows;
:func:`chain_rule` gives the chain-rule panel; :func:`check_gradient` and
:func:`score_guess` are "check gradient" and predict mode; :mod:`~core.stepping.feeds`
makes a digit into inputs.
"""

import importlib

# name -> submodule: loaded on first use, so a view that needs only the summaries (the
# canvas overlay, at start-up) does not load the session and its debugger
_WHERE = {
    **dict.fromkeys(("Condition", "GradNormAbove", "GradNormBelow", "NonFinite", "StopReason"),
                    "breakpoints"),
    **dict.fromkeys(("ChainRule", "ChainTerm", "Contribution", "chain_rule"), "chain"),
    **dict.fromkeys(("GradientCheckReport", "GuessScore", "check_gradient", "score_guess"),
                    "checks"),
    **dict.fromkeys(("digit_feeds", "drawn_digit", "sample_digit", "training_normalizer"),
                    "feeds"),
    **dict.fromkeys(("StepEntry", "StepMove", "StepSession", "WireView"), "session"),
    **dict.fromkeys(("MagnitudeScale", "TensorSummary", "TensorView", "Thumbnail", "histogram",
                     "summarize", "tensor_view", "thumbnail"), "summary"),
}

__all__ = [
    "ChainRule", "ChainTerm", "Condition", "Contribution", "GradNormAbove", "GradNormBelow",
    "GradientCheckReport", "GuessScore", "MagnitudeScale", "NonFinite", "StepEntry",
    "StepMove", "StepSession", "StopReason", "TensorSummary", "TensorView", "Thumbnail",
    "WireView",
    "chain_rule", "check_gradient", "digit_feeds", "drawn_digit", "histogram", "sample_digit",
    "score_guess", "summarize", "tensor_view", "thumbnail", "training_normalizer",
]


def __getattr__(name):
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    globals()[name] = value  # found at once next time
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
