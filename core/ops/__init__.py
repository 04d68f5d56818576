"""The op registry. Importing this package registers every built-in op."""

from core.ops import activations, layers, normalization, losses, math_ops, sources  # noqa: F401,E402,I001
from core.ops.base import (  # noqa: F401
    CATEGORIES,
    REGISTRY,
    Context,
    Op,
    Param,
    Sample,
    WeightSpec,
    get_op,
    register_op,
)


def all_ops():
    """Every registered op class, sorted by category then label."""
    order = {c: i for i, c in enumerate(CATEGORIES)}
    return sorted(REGISTRY.values(), key=lambda c: (order[c.category], c.label.lower()))
