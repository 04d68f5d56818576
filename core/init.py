"""Weight initializers, all drawn from a seeded ``numpy.random.Generator``.

Example
-------
>>> import numpy as np
>>> w = initialize("he_normal", (30, 784), np.random.default_rng(0), fan_in=784, fan_out=30)
>>> w.shape
(30, 784)
"""

from __future__ import annotations

import numpy as np

INITIALIZERS = ("zeros", "ones", "constant", "uniform", "normal", "xavier_uniform",
                "xavier_normal", "he_uniform", "he_normal", "sparse")


def initialize(name: str, shape: tuple, rng: np.random.Generator, fan_in: int = 1,
               fan_out: int = 1, dtype=np.float64, value: float = 0.0, scale: float = 0.01):
    """Return a new array of ``shape`` drawn by initializer ``name``.

    Parameters
    ----------
    name : str
        One of :data:`INITIALIZERS`. ``uniform`` and ``normal`` are the "small
        random" schemes (±``scale``, σ = ``scale``); Xavier/Glorot scales by
        ``fan_in + fan_out``, He/Kaiming by ``fan_in``; ``sparse`` keeps 10 % of
        the entries non-zero (σ = ``scale``).
    """
    shape = tuple(int(d) for d in shape)
    fan_in, fan_out = max(int(fan_in), 1), max(int(fan_out), 1)
    if name == "zeros":
        w = np.zeros(shape)
    elif name == "ones":
        w = np.ones(shape)
    elif name == "constant":
        w = np.full(shape, float(value))
    elif name == "uniform":
        w = rng.uniform(-scale, scale, shape)
    elif name == "normal":
        w = rng.normal(0.0, scale, shape)
    elif name == "xavier_uniform":
        a = np.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-a, a, shape)
    elif name == "xavier_normal":
        w = rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), shape)
    elif name == "he_uniform":
        a = np.sqrt(6.0 / fan_in)
        w = rng.uniform(-a, a, shape)
    elif name == "he_normal":
        w = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    elif name == "sparse":
        w = rng.normal(0.0, scale, shape) * (rng.random(shape) < 0.1)
    else:
        raise ValueError(f"unknown initializer '{name}'; choose one of {', '.join(INITIALIZERS)}")
    return w.astype(dtype, copy=False)
