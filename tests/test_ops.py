"""Registry-driven op tests: every op's backward against float64 finite differences,
shape inference against the real output, float32 against float64, the array back end's
round trip, and PyTorch where it is installed."""

import numpy as np
import pytest

from core.gradcheck import check_op
from core.kernels.backend import available_devices, to_device, to_numpy
from core.ops import REGISTRY, Context, Op, register_op

REGISTERED = frozenset(REGISTRY)  # before any test registers an op of its own
OPS = sorted(i for i, c in REGISTRY.items() if not c.source)
CASES = [(op_id, k) for op_id in OPS
         for k in range(len(REGISTRY[op_id].sample_inputs(np.random.default_rng(0))))]
# sources included: the executor hands them their value, so dtype and device reach them too
ALL_CASES = [(op_id, k) for op_id in sorted(REGISTERED)
             for k in range(len(REGISTRY[op_id].sample_inputs(np.random.default_rng(0))))]


def _samples(op_id):
    return REGISTRY[op_id].sample_inputs(np.random.default_rng(0))


@pytest.mark.parametrize("op_id,k", CASES)
def test_backward_matches_finite_differences(op_id, k):
    """Every sample of every op: analytic gradient = float64 central differences."""
    sample = _samples(op_id)[k]
    rows = check_op(REGISTRY[op_id], sample, max_elements=200)
    for r in rows:
        assert r.rel_error < 1e-6, f"{op_id}[{k}] {r.target}: rel. error {r.rel_error:.2e}"


@pytest.mark.parametrize("op_id,k", CASES)
def test_shape_inference_matches_forward(op_id, k):
    """infer_shapes gives the shape forward really produces, with and without a batch."""
    sample = _samples(op_id)[k]
    cls = REGISTRY[op_id]
    op = cls(**sample.params)
    out = op.forward(Context(training=sample.training), *sample.inputs)
    outs = out if isinstance(out, tuple) else (out,)
    nin = len(cls.inputs)
    in_shapes = [tuple(np.shape(x)) for x in sample.inputs[:nin]]
    inferred = op.infer_shapes(*in_shapes)
    assert [tuple(s) for s in inferred] == [tuple(np.shape(y)) for y in outs]
    specs = op.weight_specs(*in_shapes)
    for w, x in zip(cls.weights, sample.inputs[nin:]):
        assert tuple(specs[w].shape) == np.shape(x)


def test_registry_driven_tests_cover_every_registered_op():
    """No op drops out of the parametrized tests: each has a sample and appears in the cases."""
    assert all(_samples(op_id) for op_id in REGISTERED), "an op without sample_inputs"
    assert {op_id for op_id, _ in ALL_CASES} == REGISTERED
    assert {op_id for op_id, _ in CASES} == {i for i in REGISTERED if not REGISTRY[i].source}
    assert len(REGISTERED) >= 50  # the registry really was filled when the cases were built


def _as(x, dtype):
    """``x`` rounded to float32 first, so both precisions start from the same numbers."""
    a = np.asarray(x)
    return a.astype(np.float32).astype(dtype) if a.dtype.kind == "f" else a


class _SameDraws:
    """A generator whose draws do not depend on the dtype asked for (float64, then rounded),
    so a random op (dropout) draws the same mask in float32 as in float64."""

    def __init__(self, seed):
        self._rng = np.random.default_rng(seed)

    def __getattr__(self, name):
        return getattr(self._rng, name)

    def random(self, size=None, dtype=np.float64, out=None):
        assert out is None
        return self._rng.random(size).astype(dtype)

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        assert out is None
        return self._rng.standard_normal(size).astype(dtype)


def _forward_backward(op_id, k, dtype, move=lambda a: a, back=lambda a: a):
    """Forward and backward of one sample in ``dtype``; ``move``/``back`` wrap the arrays."""
    cls = REGISTRY[op_id]
    sample = _samples(op_id)[k]
    op = cls(**sample.params)
    xs = [move(_as(x, dtype)) for x in sample.inputs]
    ctx = Context(training=sample.training, rng=_SameDraws(0))
    if cls.source:  # what the executor does: hand the source its (fed) value
        ctx.value = move(_as(np.random.default_rng(2).normal(size=(3, 2)), dtype))
    out = op.forward(ctx, *xs)
    outs = [np.asarray(back(y)) for y in (out if isinstance(out, tuple) else (out,))]
    rng = np.random.default_rng(1)
    cots = [_as(rng.normal(size=y.shape), dtype) if y.dtype.kind == "f" else None for y in outs]
    grads = op.backward(ctx, *[None if c is None else move(c) for c in cots])
    grads = grads if isinstance(grads, tuple) else (grads,)
    return outs, [None if g is None else np.asarray(back(g)) for g in grads], xs


@pytest.mark.parametrize("op_id,k", ALL_CASES)
def test_float32_matches_float64(op_id, k):
    """float32 in gives float32 out, in values and gradients, equal to the float64 result
    within float32 rounding (integer outputs such as pool indices exactly equal)."""
    o32, g32, _ = _forward_backward(op_id, k, np.float32)
    o64, g64, _ = _forward_backward(op_id, k, np.float64)
    pairs = [(f"output {i}", a, b) for i, (a, b) in enumerate(zip(o32, o64))]
    pairs += [(f"gradient {i}", a, b) for i, (a, b) in enumerate(zip(g32, g64))]
    assert len(g32) == len(g64)
    for what, a, b in pairs:
        where = f"{op_id}[{k}] {what}"
        assert (a is None) == (b is None), where
        if b is None:
            continue
        assert a.shape == b.shape, where
        if b.dtype.kind != "f":
            assert a.dtype == b.dtype, where
            np.testing.assert_array_equal(a, b, err_msg=where)
            continue
        assert a.dtype == np.float32, f"{where}: {a.dtype}"
        scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale, err_msg=where)


@pytest.mark.parametrize("device", available_devices())
@pytest.mark.parametrize("op_id,k", ALL_CASES)
def test_backend_round_trip_gives_the_numpy_numbers(op_id, k, device):
    """Inputs moved with to_device and results brought back with to_numpy give NumPy arrays
    with the plain run's numbers, and the op leaves the arrays it was handed unchanged."""
    o_ref, g_ref, _ = _forward_backward(op_id, k, np.float64)
    o_dev, g_dev, xs = _forward_backward(op_id, k, np.float64,
                                         move=lambda a: to_device(a, device), back=to_numpy)
    for i, (x, x0) in enumerate(zip(xs, _samples(op_id)[k].inputs)):
        np.testing.assert_array_equal(to_numpy(x), _as(x0, np.float64),
                                      err_msg=f"{op_id}[{k}] input {i} was written to")
    for what, dev, ref in (("output", o_dev, o_ref), ("gradient", g_dev, g_ref)):
        assert len(dev) == len(ref), f"{op_id}[{k}] {what}s"
        for i, (a, b) in enumerate(zip(dev, ref)):
            where = f"{op_id}[{k}] {what} {i} on {device}"
            assert (a is None) == (b is None), where
            if b is None:
                continue
            assert type(a) is np.ndarray and a.dtype == b.dtype, where
            if device == "cpu":
                np.testing.assert_array_equal(a, b, err_msg=where)
            else:
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=where)


@pytest.mark.parametrize("op_id", OPS)
def test_op_is_documented(op_id):
    """Each op has a label, category, formula, derivative and a docstring for the palette."""
    cls = REGISTRY[op_id]
    assert cls.label and cls.formula and cls.derivative and cls.__doc__


@pytest.mark.parametrize("op_id,k", CASES)
def test_matches_pytorch(op_id, k):
    """Forward values and gradients agree with PyTorch (skipped without torch)."""
    torch = pytest.importorskip("torch")
    cls = REGISTRY[op_id]
    sample = _samples(op_id)[k]
    names = list(cls.inputs) + list(cls.weights)
    tensors = []
    for name, x in zip(names, sample.inputs):
        x = np.asarray(x)
        if x.dtype.kind == "f":
            tensors.append(torch.tensor(x, dtype=torch.float64,
                                        requires_grad=name not in cls.no_grad_inputs))
        else:
            tensors.append(torch.tensor(x))
    ref = cls.torch_reference(torch, dict(cls(**sample.params).p), *tensors)
    if ref is None:
        pytest.skip(f"{op_id} has no PyTorch counterpart")
    refs = ref if isinstance(ref, tuple) else (ref,)
    op = cls(**sample.params)
    ctx = Context(training=sample.training)
    out = op.forward(ctx, *sample.inputs)
    outs = out if isinstance(out, tuple) else (out,)
    rng = np.random.default_rng(1)
    cots = []
    for y, r in zip(outs, refs):
        if r is None:
            cots.append(None)
            continue
        np.testing.assert_allclose(np.asarray(y), r.detach().numpy(), rtol=1e-7, atol=1e-9)
        cots.append(rng.normal(size=np.shape(y)) if np.asarray(y).dtype.kind == "f" else None)
    total = sum((r * torch.tensor(c)).sum() for r, c in zip(refs, cots)
                if c is not None and r.dtype.is_floating_point)
    total.backward()
    grads = op.backward(ctx, *cots)
    for t, g, name in zip(tensors, grads, names):
        if t.requires_grad:
            assert g is not None, f"{op_id}: no gradient for {name}"
            np.testing.assert_allclose(np.asarray(g), t.grad.numpy(), rtol=1e-6, atol=1e-9,
                                       err_msg=f"{op_id} gradient of {name}")


def test_duplicate_registration_is_an_error():
    """Registering a second op under an existing id raises instead of replacing it."""
    with pytest.raises(ValueError, match="registered twice"):
        @register_op("add")
        class Another(Op):
            """Clash."""


def test_unknown_op_suggests_close_names():
    from core.errors import GraphError
    from core.ops import get_op

    with pytest.raises(GraphError, match="did you mean.*sigmoid"):
        get_op("sigmod")
