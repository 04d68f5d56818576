"""Blocked products and the dense kernel of core.kernels.matmul against plain NumPy products."""

import numpy as np
from conftest import held_threads

from core.kernels import matmul, threads
from core.kernels.matmul import dense_grads, matmul_cols, matmul_small, matmul_wide_nt


def test_wide_matmul_blocking_is_exact():
    """The blocked products used for skinny convolutions equal the plain ones."""
    rng = np.random.default_rng(14)
    a = rng.normal(size=(6, 25)).astype(np.float32)
    b = rng.normal(size=(25, 128 * 784)).astype(np.float32)
    out = np.empty((6, b.shape[1]), dtype=np.float32)
    matmul_cols(a, b, out)  # the column blocks conv2d multiplies
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-4)
    g = rng.normal(size=(6, 128 * 784)).astype(np.float32)
    np.testing.assert_allclose(matmul_wide_nt(g, b), g @ b.T, rtol=1e-4, atol=1e-2)
    for shape_a, shape_b in (((131, 400), (400, 120)), ((400, 131), (131, 120)),
                             ((120, 131), (131, 407))):
        x = rng.normal(size=shape_a).astype(np.float32)
        y = rng.normal(size=shape_b).astype(np.float32)
        np.testing.assert_allclose(matmul_small(x, y), x @ y, rtol=1e-5, atol=1e-4)
    xt = rng.normal(size=(400, 131)).astype(np.float32).T   # a transposed view, as in dense
    w = rng.normal(size=(400, 120)).astype(np.float32)
    np.testing.assert_allclose(matmul_small(xt, w), xt @ w, rtol=1e-5, atol=1e-4)


def test_large_products_are_split_exactly(monkeypatch):
    """Products too big for one core are cut into parts for the layer threads."""
    monkeypatch.setattr(threads, "_WORKERS", 2)  # the parts run on two threads
    rng = np.random.default_rng(16)
    for shape_a, shape_b in (((512, 1024), (1024, 96)), ((64, 1024), (1024, 600))):
        a = rng.normal(size=shape_a).astype(np.float32)
        b = rng.normal(size=shape_b).astype(np.float32)
        assert a.shape[0] * a.shape[1] * b.shape[1] > matmul._SMALL_MNK
        np.testing.assert_allclose(matmul_small(a, b), a @ b, rtol=1e-5, atol=1e-3)


def test_a_long_inner_dimension_is_cut_into_two_column_parts(monkeypatch):
    """A product whose parts would each read a long operand again (the Keras CNN's first
    dense layer: 9,216 inputs) is cut into two parts of columns, one per core."""
    monkeypatch.setattr(threads, "_WORKERS", 2)
    rng = np.random.default_rng(17)
    a = rng.normal(size=(128, 9216)).astype(np.float32)
    b = rng.normal(size=(9216, 128)).astype(np.float32)
    handed = []
    real = matmul.run_parts
    monkeypatch.setattr(matmul, "run_parts",
                        lambda fn, parts: handed.append(list(parts)) or real(fn, parts))
    np.testing.assert_allclose(matmul_small(a, b), a @ b, rtol=1e-5, atol=1e-2)
    assert handed == [[0, 64]]


def test_dense_gradients_equal_the_plain_products(monkeypatch):
    """Both products of a dense backward equal ``g·Wᵀ`` and ``xᵀ·g``; without the input
    gradient only ``xᵀ·g`` is made."""
    monkeypatch.setattr(threads, "_WORKERS", 2)
    rng = np.random.default_rng(21)
    for batch, features, units in ((8, 5, 3), (128, 400, 120)):  # small; LeNet-5's fc1
        x = rng.normal(size=(batch, features)).astype(np.float32)
        w = rng.normal(size=(features, units)).astype(np.float32)
        g = rng.normal(size=(batch, units)).astype(np.float32)
        gx, gw = dense_grads(x, w, g)
        np.testing.assert_allclose(gx, g @ w.T, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(gw, x.T @ g, rtol=1e-5, atol=1e-4)
        none, gw_only = dense_grads(x, w, g, need_x=False)
        assert none is None
        np.testing.assert_allclose(gw_only, x.T @ g, rtol=1e-5, atol=1e-4)


def test_a_dense_input_gradient_is_laid_out_as_its_input():
    """An input seen through a Flatten of batch-last memory (column-major (B, F)) gets its
    gradient in that layout, so the layer below reads it in its own memory order; a
    row-major input keeps a row-major gradient. The numbers are ``g·Wᵀ`` either way, the
    same bits on one thread or two (LeNet-5's fc1 and the Keras CNN's, which is shared)."""
    rng = np.random.default_rng(22)
    for batch, features, units in ((128, 400, 120), (128, 9216, 128)):
        x_rows = rng.normal(size=(batch, features)).astype(np.float32)
        x_cols = np.asfortranarray(x_rows)
        w = rng.normal(size=(features, units)).astype(np.float32)
        g = rng.normal(size=(batch, units)).astype(np.float32)
        runs = []
        for workers in (1, 2):
            with held_threads(workers):
                runs.append((dense_grads(x_rows, w, g)[0], dense_grads(x_cols, w, g)[0]))
        for gx_rows, gx_cols in runs:
            assert gx_rows.flags.c_contiguous and gx_cols.flags.f_contiguous
            np.testing.assert_allclose(gx_cols, g @ w.T, rtol=1e-5, atol=1e-4)
            np.testing.assert_allclose(gx_rows, g @ w.T, rtol=1e-5, atol=1e-4)
        np.testing.assert_array_equal(runs[0][1], runs[1][1])
