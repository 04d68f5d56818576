"""Registry-driven op tests: every op's backward against float64 finite differences,
shape inference against the real output, and PyTorch where it is installed."""

import numpy as np
import pytest

from core.gradcheck import check_op
from core.ops import REGISTRY, Context, Op, register_op

OPS = sorted(i for i, c in REGISTRY.items() if not c.source)
CASES = [(op_id, k) for op_id in OPS
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
