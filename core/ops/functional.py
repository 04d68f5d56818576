"""The numerically stable functions more than one op (and the trainer) needs, defined once.

Example
-------
>>> import numpy as np
>>> float(sigmoid(np.array(0.0)))
0.5
>>> softmax(np.array([0.0, 0.0])).tolist()
[0.5, 0.5]
"""

from __future__ import annotations

from core.kernels.backend import array_module


def sigmoid(x):
    """Logistic function ``1 / (1 + e^-x)``, stable for large ``|x|``.

    Shape:
        any -> same
    """
    xp = array_module(x)
    return xp.exp(-xp.logaddexp(0.0, -x))


def softmax(x, axis=-1):
    """Exponentials normalized to sum to 1 along ``axis``; the max is subtracted first.

    Shape:
        any -> same
    """
    e = array_module(x).exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    """``log(softmax(x))`` along ``axis`` without forming the softmax (no ``log(0)``).

    Shape:
        any -> same
    """
    xp = array_module(x)
    m = x.max(axis=axis, keepdims=True)
    return x - m - xp.log(xp.exp(x - m).sum(axis=axis, keepdims=True))
