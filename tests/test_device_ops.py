"""Every op of the registry, forward and backward, on the CuPy stand-in (a NumPy-backed device
that refuses silent conversion to NumPy), against the plain NumPy run; and the seam functions."""

import numpy as np
import pytest
from cupy_standin import install

from core.kernels import backend
from core.kernels.backend import to_device, to_numpy
from core.ops import REGISTRY, Context

ALL_CASES = [(op_id, k) for op_id in sorted(REGISTRY)
             for k in range(len(REGISTRY[op_id].sample_inputs(np.random.default_rng(0))))]


@pytest.fixture
def cp(monkeypatch):
    return install(monkeypatch)


def _as(x, dtype):
    a = np.asarray(x)
    return a.astype(np.float32).astype(dtype) if a.dtype.kind == "f" else a


class _HostDraws:
    """Draws made on the host then moved, so both runs of a random op (dropout) draw alike."""

    def __init__(self, seed, move):
        self._rng, self._move = np.random.default_rng(seed), move

    def random(self, size=None, dtype=np.float64, out=None):
        return self._move(self._rng.random(size).astype(dtype))


def _run(op_id, k, dtype, move):
    """Forward and backward of sample ``k`` with every array passed through ``move``."""
    cls = REGISTRY[op_id]
    sample = cls.sample_inputs(np.random.default_rng(0))[k]
    op = cls(**sample.params)
    xs = [move(_as(x, dtype)) for x in sample.inputs]
    ctx = Context(training=sample.training, rng=_HostDraws(0, move))
    if cls.source:
        ctx.value = move(_as(np.random.default_rng(2).normal(size=(3, 2)), dtype))
    out = op.forward(ctx, *xs)
    outs = list(out) if isinstance(out, tuple) else [out]
    rng = np.random.default_rng(1)
    cots = [move(_as(rng.normal(size=y.shape), dtype)) if y.dtype.kind == "f" else None
            for y in outs]
    grads = op.backward(ctx, *cots)
    grads = list(grads) if isinstance(grads, tuple) else [grads]
    return outs, grads, xs, sample


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("op_id,k", ALL_CASES)
def test_every_op_on_the_device_gives_the_numpy_numbers(cp, op_id, k, dtype):
    """Each output and gradient of a device run is a device array (no silent host result),
    equal to the NumPy run's within rounding; the inputs are left unchanged."""
    o_ref, g_ref, _, _ = _run(op_id, k, dtype, lambda a: a)
    o_dev, g_dev, xs, sample = _run(op_id, k, dtype, lambda a: to_device(a, "cuda"))
    for i, (x, x0) in enumerate(zip(xs, sample.inputs)):
        np.testing.assert_array_equal(to_numpy(x), _as(x0, dtype),
                                      err_msg=f"{op_id}[{k}] input {i} was written to")
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    for what, dev, ref in (("output", o_dev, o_ref), ("gradient", g_dev, g_ref)):
        assert len(dev) == len(ref), f"{op_id}[{k}] {what}s"
        for i, (a, b) in enumerate(zip(dev, ref)):
            where = f"{op_id}[{k}] {what} {i}"
            assert (a is None) == (b is None), where
            if b is None:
                continue
            assert isinstance(a, cp.ndarray), f"{where} came back as {type(a).__name__}"
            a, b = a.get(), np.asarray(b)
            assert a.shape == b.shape and a.dtype == b.dtype, where
            if b.dtype.kind != "f":
                np.testing.assert_array_equal(a, b, err_msg=where)
            else:
                scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
                np.testing.assert_allclose(a, b, rtol=tol["rtol"], atol=tol["atol"] * scale,
                                           err_msg=where)


def test_the_standin_refuses_numpy_calls_on_device_arrays(cp):
    """What makes the suite above meaningful: NumPy functions, ufuncs, np.asarray and mixing a
    host array into device arithmetic all raise, as on a GPU."""
    a = to_device(np.arange(6.0).reshape(2, 3), "cuda")
    for call in (lambda: np.asarray(a), lambda: np.exp(a), lambda: np.sum(a),
                 lambda: np.where(a > 0, a, 0), lambda: a + np.ones(3),
                 lambda: a[np.array([0, 1])]):
        with pytest.raises(TypeError):
            call()
    assert isinstance(a.sum(), cp.ndarray) and float(a.sum()) == 15.0


def test_seam_functions_agree_between_numpy_and_the_device(cp):
    """scatter_add adds repeated indices, put_along_last writes along the last axis, erf and
    the seeded device generator repeat themselves."""
    idx = np.array([0, 2, 2, 1, 2])
    vals = np.arange(5.0)
    host = np.zeros(4)
    backend.scatter_add(host, idx, vals)
    dev = cp.zeros(4)
    backend.scatter_add(dev, to_device(idx, "cuda"), to_device(vals, "cuda"))
    np.testing.assert_array_equal(dev.get(), host)
    np.testing.assert_array_equal(host, [0.0, 3.0, 7.0, 0.0])

    a = np.zeros((2, 3, 4))
    where = np.random.default_rng(0).integers(0, 4, (2, 3, 1))
    backend.put_along_last(a, where, 5.0)
    d = cp.zeros((2, 3, 4))
    backend.put_along_last(d, to_device(where, "cuda"), 5.0)
    np.testing.assert_array_equal(d.get(), a)

    x = np.linspace(-2, 2, 7).astype(np.float32)
    np.testing.assert_allclose(backend.erf(to_device(x, "cuda")).get(), backend.erf(x))
    assert backend.erf(to_device(x, "cuda")).dtype == np.float32

    r1 = backend.make_rng([3, 1, 0], "cuda").random((5,), dtype=np.float32).get()
    r2 = backend.make_rng([3, 1, 0], "cuda").random((5,), dtype=np.float32).get()
    r3 = backend.make_rng([3, 1, 1], "cuda").random((5,), dtype=np.float32).get()
    np.testing.assert_array_equal(r1, r2)
    assert not np.array_equal(r1, r3)
