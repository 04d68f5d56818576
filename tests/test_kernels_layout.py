"""The batch-last layout helpers and window views of core.kernels.layout against plain
NumPy references."""

import numpy as np

from core.kernels.layout import in_layout_of
from core.ops import Context, get_op


def test_relu_backward_with_mixed_memory_orders_gives_the_same_numbers():
    """A batch-first gradient meeting a batch-last ReLU mask is reordered, not changed."""
    rng = np.random.default_rng(17)
    x = rng.normal(size=(6, 5, 5, 8)).astype(np.float32).transpose(3, 0, 1, 2)  # batch-last
    g = rng.normal(size=(8, 6, 5, 5)).astype(np.float32)                        # batch-first
    op = get_op("relu")()
    ctx = Context()
    op.forward(ctx, x)
    (gx,) = op.backward(ctx, g)
    np.testing.assert_array_equal(gx, g * (x > 0))
    moved = in_layout_of(g, ctx.mask)
    assert moved.strides != g.strides and np.array_equal(moved, g)
    assert in_layout_of(x, ctx.mask) is x  # same order: no copy
