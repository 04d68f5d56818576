"""The pooling kernels (tiled maxima, the training mask, strided taps, average pooling)
against plain NumPy references written as loops over the windows, on both paths: the
NumPy kernels and the compiled ones."""

import numpy as np
import pytest

from core.kernels import compiled, pool, threads
from core.kernels.scratch import Scratch


@pytest.fixture(params=["numpy", "compiled"], autouse=True)
def kernel_path(request):
    """Every test runs on the NumPy kernels and again on the compiled ones."""
    old = compiled.set_enabled(request.param == "compiled")
    if request.param == "compiled" and not compiled.enabled():
        compiled.set_enabled(old)
        pytest.skip("numba is not installed")
    yield request.param
    compiled.set_enabled(old)


def _out_hw(hw, kernel, stride, padding):
    return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(hw, kernel, stride, padding))


def max_pool_reference(x, kernel, stride, padding):
    """Window by window: the maximum, the flat index of its first occurrence (row-major
    window order, padding −∞) and the gradient ``g`` sent to that position."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    bsz, c, h, w = x.shape
    oh, ow = _out_hw((h, w), kernel, stride, padding)
    out = np.empty((bsz, c, oh, ow))
    idx = np.empty((bsz, c, oh, ow), dtype=np.int64)
    for b in range(bsz):
        for ch in range(c):
            for i in range(oh):
                for j in range(ow):
                    best, where = -np.inf, None
                    for m in range(kh):
                        for n in range(kw):
                            r, q = i * sh - ph + m, j * sw - pw + n
                            if 0 <= r < h and 0 <= q < w and x[b, ch, r, q] > best:
                                best, where = x[b, ch, r, q], r * w + q
                    out[b, ch, i, j], idx[b, ch, i, j] = best, where
    return out, idx


def max_pool_reference_grad(x_shape, idx, g):
    gx = np.zeros(x_shape)
    bsz, c = x_shape[:2]
    flat = gx.reshape(bsz, c, -1)
    for b in range(bsz):
        for ch in range(c):
            np.add.at(flat[b, ch], idx[b, ch].ravel(), g[b, ch].ravel())
    return gx


def avg_pool_reference(x, kernel, stride, padding):
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh, ow = _out_hw(x.shape[2:], kernel, stride, padding)
    out = np.empty(x.shape[:2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw].mean(axis=(2, 3))
    return out


POOL_CASES = [
    # x shape, kernel, stride, padding, training, note
    ((3, 2, 6, 8), (2, 2), (2, 2), (0, 0), True, "2×2 tiles, training mask"),
    ((3, 2, 6, 8), (2, 2), (2, 2), (0, 0), False, "2×2 tiles"),
    ((2, 3, 6, 6), (3, 2), (3, 2), (0, 0), True, "3×2 tiles, training mask"),
    ((2, 2, 7, 7), (3, 3), (2, 2), (1, 1), True, "3×3, stride 2, pad 1"),
    ((2, 1, 5, 7), (2, 3), (1, 2), (0, 1), False, "overlapping rows"),
    ((1, 2, 5, 7), (2, 2), (2, 3), (0, 0), True, "uneven fit"),
]


def _ties(rng, shape):
    """Small integers: most windows hold several equal maxima (like MNIST's background)."""
    return rng.integers(0, 3, size=shape).astype(np.float64)


def _run_max(case, x, g_rng):
    x_shape, kernel, stride, padding, training, _ = case
    out_hw = _out_hw(x_shape[2:], kernel, stride, padding)
    scratch = Scratch()
    out, idx, state = pool.max_pool2d_forward(scratch, x, kernel, stride, padding, out_hw,
                                              want_indices=True, training=training)
    g = g_rng.normal(size=out.shape)
    gx = pool.max_pool2d_backward(scratch, state, g)
    return out, idx, g, gx


@pytest.mark.parametrize("case", POOL_CASES, ids=[c[-1] for c in POOL_CASES])
@pytest.mark.parametrize("values", ["distinct", "ties"])
def test_max_pool_kernels_match_the_window_reference(case, values):
    """Maximum and first-maximum index agree exactly with the window loops, the gradient to
    rounding, also when windows hold ties (the whole gradient goes to the first maximum)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=case[0]) if values == "distinct" else _ties(rng, case[0])
    out, idx, g, gx = _run_max(case, x, np.random.default_rng(1))
    want, want_idx = max_pool_reference(x, *case[1:4])
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(idx, want_idx)
    # overlapping windows add their gradients in another order than the reference
    np.testing.assert_allclose(gx, max_pool_reference_grad(x.shape, want_idx, g), rtol=1e-12,
                               atol=1e-12)


def test_max_pool_without_indices_or_mask_gives_the_same_numbers():
    """Skipping the indices output (a lean training run) or the mask (evaluation) changes
    neither the maxima nor the gradient."""
    case = POOL_CASES[0]
    x = _ties(np.random.default_rng(2), case[0])
    out_hw = _out_hw(case[0][2:], *case[1:4])
    results = []
    for want_indices, training in ((True, True), (False, True), (False, False)):
        scratch = Scratch()
        out, idx, state = pool.max_pool2d_forward(scratch, x, *case[1:4], out_hw,
                                                  want_indices=want_indices, training=training)
        assert (idx is None) == (not want_indices)
        if state.compiled:  # the tap numbers are kept only for backward or the indices
            assert (state.code is None) == (not training and not want_indices)
        else:
            assert (state.mask is None) == (not training)
        g = np.random.default_rng(3).normal(size=out.shape)
        results.append((out.copy(), pool.max_pool2d_backward(scratch, state, g).copy()))
    for out, gx in results[1:]:
        np.testing.assert_array_equal(out, results[0][0])
        np.testing.assert_array_equal(gx, results[0][1])


@pytest.mark.parametrize("case", POOL_CASES[:4], ids=[c[-1] for c in POOL_CASES[:4]])
def test_max_pool_parts_give_the_same_bits_on_one_or_two_threads(case, monkeypatch):
    """Cut into one part per channel group, the pool gives the same bits on one or two threads."""
    monkeypatch.setattr(threads, "_MIN_SPLIT_BYTES", 0)
    x = _ties(np.random.default_rng(4), (2, 6) + case[0][2:])
    results = []
    for workers in (2, 1):
        monkeypatch.setattr(threads, "_WORKERS", workers)
        out, idx, _, gx = _run_max((x.shape,) + case[1:], x, np.random.default_rng(5))
        results.append((out.copy(), idx.copy(), gx.copy()))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    want, want_idx = max_pool_reference(x, *case[1:4])
    np.testing.assert_array_equal(results[1][0], want)
    np.testing.assert_array_equal(results[1][1], want_idx)


@pytest.mark.parametrize("geometry", [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)),
                                      ((2, 3), (1, 1), (1, 1))])
def test_avg_pool_kernels_match_the_window_reference(geometry):
    """The mean of each window (padding counts as zeros) and its gradient, checked as the
    reference's adjoint: <g, pool(dx)> = <gx, dx>."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 3, 6, 7))
    out_hw = _out_hw(x.shape[2:], *geometry)
    out, state = pool.avg_pool2d_forward(x, *geometry, out_hw)
    np.testing.assert_allclose(out, avg_pool_reference(x, *geometry), rtol=1e-12, atol=1e-12)
    g = rng.normal(size=out.shape)
    gx = pool.avg_pool2d_backward(state, g)
    dx = rng.normal(size=x.shape)
    np.testing.assert_allclose(np.vdot(g, avg_pool_reference(dx, *geometry)), np.vdot(gx, dx),
                               rtol=1e-12)
