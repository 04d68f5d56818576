"""Source nodes: inputs, constants and trainable parameters. They have no input ports.

The executor hands a source its value (the node's own, or a fed batch) as
``ctx.value``; ``forward`` returns it unchanged.
"""

from __future__ import annotations

import numpy as np

from core.init import INITIALIZERS
from core.kernels.backend import on_host
from core.ops.base import Op, Param, Sample, register_op


class _Source(Op):
    category = "inputs"
    inputs = ()
    source = True

    def infer_shapes(self):  # the graph reads a source's shape from its value
        return (tuple(self.p.get("shape", ())),)

    def forward(self, ctx):
        return ctx.value

    def backward(self, ctx, grad):
        return ()

    @classmethod
    def sample_inputs(cls, rng):
        return [Sample(())]


@register_op("input")
class Input(_Source):
    """A value the user types in, or a batch fed from data (``shape`` may start with null)."""

    label = "Input"
    params = (
        Param("shape", "shape", (), doc="shape of the value; null for the batch dimension"),
        Param("role", "choice", "value", choices=("value", "features", "target"),
              doc="where the trainer feeds data: a fixed value, the features or the targets",
              quiet=True),
    )
    formula = "x"
    derivative = "∂L/∂x is reported, not used"


@register_op("constant")
class Constant(_Source):
    """A fixed value; it gets a gradient for display but is never trained."""

    label = "Constant"
    params = (Param("shape", "shape", (), doc="shape of the value"),)
    formula = "c"
    derivative = "∂c/∂anything = 0"


@register_op("parameter")
class Parameter(_Source):
    """A trainable tensor (a weight or bias), initialized by a named scheme."""

    label = "Parameter"
    params = (
        Param("shape", "shape", (), doc="shape of the tensor"),
        Param("init", "choice", "xavier_uniform", choices=INITIALIZERS,
              doc="initializer used when the tensor has no value", quiet=True),
        Param("fill", "float", 0.0, doc="value for the 'constant' initializer", quiet=True),
        Param("trainable", "bool", True, doc="whether optimizers update it", quiet=True),
    )
    formula = "θ"
    derivative = "θ ← θ − η·∂L/∂θ"


def feed_value(node, fed, dtype):
    """The array a source node produces: what was fed, else its own value."""
    value = fed if fed is not None else node.value
    if value is None:
        raise ValueError("has no value: type one in, or feed it from data")
    if on_host(value):
        return np.asarray(value, dtype=dtype)
    return value.astype(dtype, copy=False)  # a device array stays where it is
