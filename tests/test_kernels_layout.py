"""The batch-last layout helpers and window views of core.kernels.layout against plain
NumPy references."""

import numpy as np

from core.kernels.elementwise import times_mask
from core.kernels.layout import (
    batch_first,
    batch_last,
    col2im,
    im2col,
    in_layout_of,
    pad_batch_last,
    tap,
)
from core.kernels.scratch import Scratch
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


def test_times_mask_is_the_plain_product_in_the_mask_layout():
    """A ReLU's gradient ``g · mask`` equals the plain product and has the mask's memory order."""
    rng = np.random.default_rng(18)
    mask = (rng.normal(size=(6, 5, 5, 8)) > 0).transpose(3, 0, 1, 2)     # batch-last
    g = rng.normal(size=(8, 6, 5, 5))                                     # batch-first
    out = times_mask(Scratch(), g, mask)
    np.testing.assert_array_equal(out, g * mask)
    assert np.argsort(out.strides).tolist() == np.argsort(mask.strides).tolist()


def test_batch_last_views_and_padding_match_numpy():
    """``batch_last``/``batch_first`` are inverse views; ``pad_batch_last`` equals np.pad, with
    the border filled, and returns an unpadded contiguous input as it is."""
    rng = np.random.default_rng(19)
    x = rng.normal(size=(3, 2, 4, 5))
    xl = batch_last(x)
    assert xl.shape == (2, 4, 5, 3) and np.shares_memory(xl, x)
    np.testing.assert_array_equal(batch_first(xl), x)
    want = np.pad(xl, ((0, 0), (2, 2), (1, 1), (0, 0)), constant_values=-7.0)
    np.testing.assert_array_equal(pad_batch_last(xl, 2, 1, fill=-7.0), want)
    np.testing.assert_array_equal(pad_batch_last(xl, 2, 1, fill=-7.0, scratch=Scratch()), want)
    contiguous = np.ascontiguousarray(xl)
    assert pad_batch_last(contiguous, 0, 0) is contiguous
    np.testing.assert_array_equal(pad_batch_last(xl, 0, 0), xl)


def test_im2col_matches_explicit_window_loops_and_col2im_is_its_adjoint():
    """Row (c, m, n) of im2col holds tap (m, n) of channel c for every window, in
    (row, column, batch) order; col2im sums columns back: <im2col(x), c> = <x, col2im(c)>."""
    rng = np.random.default_rng(20)
    xp = rng.normal(size=(2, 7, 8, 3))  # (C, H, W, B), already padded
    kernel, stride, dilation = (2, 3), (2, 1), (1, 2)
    out_hw = ((7 - 1 * (2 - 1) - 1) // 2 + 1, (8 - 2 * (3 - 1) - 1) // 1 + 1)
    cols = im2col(xp, kernel, stride, dilation, out_hw)
    want = np.empty((2 * 2 * 3, out_hw[0], out_hw[1], 3))
    for c in range(2):
        for m in range(2):
            for n in range(3):
                for i in range(out_hw[0]):
                    for j in range(out_hw[1]):
                        want[(c * 2 + m) * 3 + n, i, j] = xp[c, i * 2 + m, j + 2 * n]
    np.testing.assert_array_equal(cols, want.reshape(cols.shape))
    for m in range(2):
        for n in range(3):
            np.testing.assert_array_equal(tap(xp, m, n, stride, dilation, out_hw),
                                          want.reshape(2, 2, 3, *out_hw, 3)[:, m, n])
    c = rng.normal(size=cols.shape)
    back = col2im(c, xp.shape, kernel, stride, dilation, out_hw, np.float64)
    np.testing.assert_allclose(np.vdot(cols, c), np.vdot(xp, back), rtol=1e-12)


def test_a_mask_drawn_like_a_batch_last_array_is_laid_out_like_it():
    """random_like draws in the array's memory order, so a dropout mask multiplies a
    batch-last feature map without NumPy's strided loops, and the draw is seeded"""
    import numpy as np

    from core.kernels.layout import batch_last, random_like

    x = batch_last(np.zeros((4, 3, 5, 6), np.float32))
    u = random_like(np.random.default_rng(1), x, np.float32)
    assert u.shape == x.shape and u.strides == x.strides
    again = random_like(np.random.default_rng(1), x, np.float32)
    np.testing.assert_array_equal(u, again)
    plain = np.zeros((4, 3), np.float32)
    assert random_like(np.random.default_rng(1), plain, np.float32).flags.c_contiguous
    # a lent buffer changes where the numbers go, not which numbers are drawn
    lent = random_like(np.random.default_rng(1), x, np.float32, Scratch())
    np.testing.assert_array_equal(lent, u)
    assert lent.strides == x.strides
