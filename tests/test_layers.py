"""Layer ops beyond the registry tests: geometry grids against PyTorch, pooling
round trips and ties, batch-norm statistics, dropout, textbook shapes and counts,
and float32 staying float32 through a whole CNN (each op alone: test_ops.py)."""

import numpy as np
import pytest
from conftest import held_threads

from core.errors import ShapeError
from core.executor import Executor
from core.gradcheck import check_op
from core.graph import Graph
from core.kernels import threads
from core.kernels.scratch import Scratch
from core.ops import Context, get_op
from core.ops.base import Sample


def _forward_backward(op_id, params, inputs, training=False, seed=0):
    op = get_op(op_id)(**params)
    ctx = Context(training=training, rng=np.random.default_rng(seed))
    out = op.forward(ctx, *inputs)
    outs = out if isinstance(out, tuple) else (out,)
    cots = [np.random.default_rng(1).normal(size=y.shape).astype(y.dtype)
            if y.dtype.kind == "f" else None for y in outs]
    return outs, cots, op.backward(ctx, *cots)


def _torch_grads(torch, fn, arrays, cots):
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out = fn(*ts)
    (out * torch.tensor(cots[0])).sum().backward()
    return out.detach().numpy(), [t.grad.numpy() for t in ts]


# ------------------------------------------------------------ against PyTorch

CONV_GRID = [
    # x shape, out channels, kernel, stride, padding, dilation
    ((2, 3, 9, 8), 4, (3, 3), (1, 1), (0, 0), (1, 1)),
    ((2, 3, 9, 8), 4, (3, 3), (2, 2), (1, 1), (1, 1)),
    ((2, 2, 10, 9), 3, (3, 2), (2, 3), (1, 0), (2, 1)),
    ((1, 2, 11, 11), 2, (5, 5), (1, 1), (2, 2), (1, 1)),
    ((2, 1, 12, 10), 3, (3, 3), (3, 2), (2, 1), (2, 3)),
    ((3, 2, 7, 7), 2, (1, 1), (2, 2), (0, 0), (1, 1)),
    ((1, 2, 8, 8), 2, (4, 4), (4, 4), (0, 0), (1, 1)),
]


@pytest.mark.parametrize("x_shape,o,k,s,p,d", CONV_GRID)
@pytest.mark.parametrize("mode", ["cross_correlation", "convolution"])
def test_conv2d_matches_pytorch_over_geometries(x_shape, o, k, s, p, d, mode):
    """conv2d forward and all three gradients equal PyTorch's for stride/padding/dilation mixes."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.normal(size=x_shape)
    w = rng.normal(size=(o, x_shape[1]) + k)
    b = rng.normal(size=o)
    params = dict(out_channels=o, kernel=k, stride=s, padding=p, dilation=d, mode=mode)
    (y,), cots, grads = _forward_backward("conv2d", params, (x, w, b))

    def ref(x, w, b):
        if mode == "convolution":
            w = torch.flip(w, dims=(2, 3))
        return torch.nn.functional.conv2d(x, w, b, stride=s, padding=p, dilation=d)

    y_ref, g_ref = _torch_grads(torch, ref, (x, w, b), cots)
    np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-10)
    for g, gr in zip(grads, g_ref):
        np.testing.assert_allclose(g, gr, rtol=1e-10, atol=1e-10)


CONVT_GRID = [
    # x shape, out channels, kernel, stride, padding, output padding, dilation
    ((2, 3, 4, 5), 2, (3, 3), (1, 1), (0, 0), (0, 0), (1, 1)),
    ((2, 3, 4, 4), 2, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),
    ((1, 2, 5, 3), 3, (4, 2), (3, 2), (1, 0), (2, 1), (1, 1)),
    ((2, 2, 3, 3), 2, (3, 3), (2, 1), (0, 1), (0, 0), (2, 2)),
    ((1, 4, 7, 7), 1, (2, 2), (2, 2), (0, 0), (0, 0), (1, 1)),
]


@pytest.mark.parametrize("x_shape,o,k,s,p,op_,d", CONVT_GRID)
def test_conv_transpose2d_matches_pytorch(x_shape, o, k, s, p, op_, d):
    """conv_transpose2d equals PyTorch's, output_padding and dilation included."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x = rng.normal(size=x_shape)
    w = rng.normal(size=(x_shape[1], o) + k)
    b = rng.normal(size=o)
    params = dict(out_channels=o, kernel=k, stride=s, padding=p, output_padding=op_, dilation=d)
    (y,), cots, grads = _forward_backward("conv_transpose2d", params, (x, w, b))

    def ref(x, w, b):
        return torch.nn.functional.conv_transpose2d(x, w, b, stride=s, padding=p,
                                                    output_padding=op_, dilation=d)

    y_ref, g_ref = _torch_grads(torch, ref, (x, w, b), cots)
    np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-10)
    for g, gr in zip(grads, g_ref):
        np.testing.assert_allclose(g, gr, rtol=1e-10, atol=1e-10)


def test_conv_transpose2d_is_the_adjoint_of_conv2d():
    """<conv(x), y> = <x, convT(y)> with the same kernel and geometry (no bias)."""
    rng = np.random.default_rng(5)
    geo = dict(kernel=(3, 3), stride=(2, 2), padding=(1, 1))
    x = rng.normal(size=(2, 3, 7, 7))
    w = rng.normal(size=(4, 3, 3, 3))
    conv = get_op("conv2d")(out_channels=4, bias=False, **geo)
    y = conv.forward(Context(), x, w, np.zeros(0))
    z = rng.normal(size=y.shape)
    convt = get_op("conv_transpose2d")(out_channels=3, bias=False, **geo)
    back = convt.forward(Context(), z, w, np.zeros(0))
    assert back.shape == x.shape
    assert np.isclose(np.sum(y * z), np.sum(x * back))


def test_convolution_mode_flips_the_kernel():
    """mode='convolution' with W equals cross-correlation with W rotated by 180°."""
    rng = np.random.default_rng(6)
    x, w, b = rng.normal(size=(2, 2, 6, 6)), rng.normal(size=(3, 2, 3, 2)), rng.normal(size=3)
    conv = get_op("conv2d")(out_channels=3, kernel=(3, 2), mode="convolution")
    corr = get_op("conv2d")(out_channels=3, kernel=(3, 2))
    np.testing.assert_allclose(conv.forward(Context(), x, w, b),
                               corr.forward(Context(), x, w[:, :, ::-1, ::-1], b))


def test_batch_norm_eval_matches_pytorch():
    """In evaluation batch norm uses the stored running statistics, like PyTorch."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    x, gamma, beta = rng.normal(size=(4, 3, 2, 2)), rng.uniform(0.5, 2, 3), rng.normal(size=3)
    rm, rv = rng.normal(size=3), rng.uniform(0.5, 2, 3)
    op = get_op("batch_norm")(eps=1e-3)
    ctx = Context(training=False, state={"running_mean": rm, "running_var": rv})
    y = op.forward(ctx, x, gamma, beta)
    g = rng.normal(size=y.shape)
    grads = op.backward(ctx, g)
    ts = [torch.tensor(a, requires_grad=True) for a in (x, gamma, beta)]
    ref = torch.nn.functional.batch_norm(ts[0], torch.tensor(rm), torch.tensor(rv), ts[1], ts[2],
                                         training=False, eps=1e-3)
    (ref * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(y, ref.detach().numpy(), rtol=1e-10)
    for a, t in zip(grads, ts):
        np.testing.assert_allclose(a, t.grad.numpy(), rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------- batch norm

def test_batch_norm_updates_running_averages_like_pytorch():
    """Training updates running mean/var (unbiased) with momentum; PyTorch agrees."""
    rng = np.random.default_rng(8)
    op = get_op("batch_norm")(momentum=0.2)
    state = {}
    batches = [rng.normal(2.0, 3.0, size=(8, 4)) for _ in range(3)]
    mean, var = np.zeros(4), np.ones(4)
    for x in batches:
        op.forward(Context(training=True, state=state), x, np.ones(4), np.zeros(4))
        mean = 0.8 * mean + 0.2 * x.mean(0)
        var = 0.8 * var + 0.2 * x.var(0, ddof=1)
    np.testing.assert_allclose(state["running_mean"], mean)
    np.testing.assert_allclose(state["running_var"], var)
    torch = pytest.importorskip("torch")
    bn = torch.nn.BatchNorm1d(4, momentum=0.2).double()
    for x in batches:
        bn(torch.tensor(x))
    np.testing.assert_allclose(state["running_mean"], bn.running_mean.numpy())
    np.testing.assert_allclose(state["running_var"], bn.running_var.numpy())


def test_batch_norm_training_normalizes_and_eval_uses_running_stats():
    """A training batch comes out with mean 0 and variance 1 per channel; evaluation of the
    same batch differs, because it uses the running averages instead."""
    rng = np.random.default_rng(9)
    x = rng.normal(5.0, 2.0, size=(6, 3, 4, 4))
    op = get_op("batch_norm")()
    state = {}
    y = op.forward(Context(training=True, state=state), x, np.ones(3), np.zeros(3))
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, rtol=1e-4)
    y_eval = op.forward(Context(training=False, state=state), x, np.ones(3), np.zeros(3))
    expect = (x - state["running_mean"][:, None, None]) / np.sqrt(
        state["running_var"][:, None, None] + 1e-5)
    np.testing.assert_allclose(y_eval, expect)
    assert not np.allclose(y_eval, y)


def test_batch_norm_eval_gradient_matches_finite_differences():
    """The evaluation-mode backward (a fixed affine map) passes the gradient check."""
    rng = np.random.default_rng(10)
    sample = Sample((rng.normal(size=(3, 2, 2, 2)), rng.uniform(0.5, 1.5, 2),
                     rng.normal(size=2)), training=False)
    for row in check_op(get_op("batch_norm"), sample):
        assert row.rel_error < 1e-7, row


def test_batch_norm_running_stats_live_in_node_state():
    """Training a graph through the executor leaves running stats in the node's state."""
    g = Graph()
    x = g.add("input", name="x", value=np.random.default_rng(0).normal(3, 1, size=(5, 2)))
    bn = g.add("batch_norm", x, name="bn")
    g.add("mean", bn, name="loss")
    Executor(g, training=True).run(loss="loss")
    assert set(bn.state) == {"running_mean", "running_var"}
    assert np.all(bn.state["running_mean"] > 0.1)


# ------------------------------------------------------------------ pooling

def test_max_pool_then_unpool_round_trip():
    """Unpooling a max pool's output with its indices puts every maximum back where it
    was and zeros elsewhere (the classic pool → unpool exercise, through a graph)."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(2, 3, 6, 8))
    g = Graph()
    inp = g.add("input", name="x", value=x)
    pool = g.add("max_pool2d", inp, name="pool")
    unpool = g.add("max_unpool2d", pool, (pool, "indices"), name="unpool")
    g.add("sum", unpool, name="loss")
    ex = Executor(g).run(loss="loss")
    y = ex.value("unpool")
    assert y.shape == x.shape
    win = x.reshape(2, 3, 3, 2, 4, 2).max(axis=(3, 5))
    is_max = x == np.repeat(np.repeat(win, 2, axis=2), 2, axis=3)
    np.testing.assert_array_equal(y, np.where(is_max, x, 0.0))
    np.testing.assert_array_equal(ex.grad("x"), is_max.astype(float))


@pytest.mark.parametrize("training", [False, True], ids=["eval", "training"])
def test_max_pool_tie_sends_gradient_to_one_position(training):
    """A window of equal values (MNIST's zero background) passes its gradient to exactly one
    input — the first in row-major order, the one PyTorch's indices name. In training the
    maxima are marked during forward; the result is the same."""
    x = np.zeros((2, 3, 4, 6))
    x[0, 0, 0, 0] = x[0, 0, 1, 1] = 1.0   # a tie at the maximum inside one window
    x[1, 1, 2:, 2:4] = -3.0                # a window tied below zero
    (y, idx), cots, (gx,) = _forward_backward("max_pool2d", {}, (x,), training=training)
    hits = (gx != 0).reshape(2, 3, 2, 2, 3, 2).sum(axis=(3, 5))
    np.testing.assert_array_equal(hits, np.ones((2, 3, 2, 3)))
    assert gx[0, 0, 0, 0] == cots[0][0, 0, 0, 0] and gx[0, 0, 1, 1] == 0
    np.testing.assert_allclose(gx.reshape(2, 3, 2, 2, 3, 2).sum(axis=(3, 5)), cots[0])
    assert idx[0, 0, 0, 0] == 0 and idx[0, 0, 0, 1] == 2 and idx[1, 2, 1, 2] == 2 * 6 + 4
    torch = pytest.importorskip("torch")
    _, t_idx = torch.nn.functional.max_pool2d(torch.tensor(x), 2, 2, return_indices=True)
    np.testing.assert_array_equal(idx, t_idx.numpy())


def test_max_pool_tie_with_overlapping_windows():
    """Overlapping windows with padding: each window still gives its gradient to one input."""
    x = np.zeros((1, 1, 5, 5))
    (y, idx), cots, (gx,) = _forward_backward("max_pool2d", {"kernel": 3, "stride": 2,
                                                             "padding": 1}, (x,))
    assert np.isclose(gx.sum(), cots[0].sum())
    assert np.count_nonzero(gx) <= y.size
    torch = pytest.importorskip("torch")
    _, t_idx = torch.nn.functional.max_pool2d(torch.tensor(x), 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(idx, t_idx.numpy())


def test_max_unpool_repeated_index_gradient_goes_to_the_value_that_landed():
    """When overlapping pools pick one maximum twice, the gradient check still passes."""
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 1] = 5.0  # the maximum of all four overlapping windows
    _, idx = get_op("max_pool2d")(kernel=3, stride=1).forward(Context(), x)
    assert np.all(idx == 5)
    vals = np.array([[[[0.3, -1.2], [0.7, 2.1]]]])
    sample = Sample((vals, np.ascontiguousarray(idx)), {"kernel": 3, "stride": 1})
    for row in check_op(get_op("max_unpool2d"), sample):
        assert row.rel_error < 1e-7, row


def test_unpool_rejects_indices_of_another_geometry():
    """Indices that point outside the unpooled plane are a clear error."""
    op = get_op("max_unpool2d")(kernel=2, stride=2)
    with pytest.raises(ShapeError, match="outside the 4×4 output"):
        op.forward(Context(), np.ones((1, 1, 2, 2)), np.full((1, 1, 2, 2), 16))


def test_avg_and_global_pool_values():
    """2×2 average pooling and the global average of a known image."""
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    y = get_op("avg_pool2d")().forward(Context(), x)
    np.testing.assert_array_equal(y[0, 0], [[2.5, 4.5], [10.5, 12.5]])
    assert get_op("global_avg_pool")().forward(Context(), x)[0, 0] == 7.5


# ------------------------------------------------------------------ dropout

def test_dropout_scales_kept_values_and_is_reproducible():
    """Training drops about p of the values, scales the rest by 1/(1−p), the gradient uses
    the same mask, and the same generator seed gives the same mask."""
    x = np.random.default_rng(12).uniform(1, 2, size=(200, 100))
    (y,), cots, (gx,) = _forward_backward("dropout", {"p": 0.3}, (x,), training=True, seed=5)
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y[kept], x[kept] / 0.7)
    np.testing.assert_allclose(gx, cots[0] * kept / 0.7)
    (y2,), _, _ = _forward_backward("dropout", {"p": 0.3}, (x,), training=True, seed=5)
    np.testing.assert_array_equal(y, y2)
    (y3,), _, _ = _forward_backward("dropout", {"p": 0.3}, (x,), training=True, seed=6)
    assert not np.array_equal(y, y3)
    assert abs(y.mean() - x.mean()) < 0.02  # inverted dropout keeps the expected value


def test_dropout_is_identity_in_evaluation():
    x = np.random.default_rng(13).normal(size=(4, 5))
    (y,), cots, (gx,) = _forward_backward("dropout", {"p": 0.9}, (x,), training=False)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(gx, cots[0])


# ------------------------------------------------------------ shapes, counts

def test_alexnet_first_conv_gives_55x55x96():
    """AlexNet's conv1 (96 kernels of 11×11, stride 4) on a 227×227×3 image: 55×55×96."""
    op = get_op("conv2d")(out_channels=96, kernel=11, stride=4)
    assert op.infer_shapes((None, 3, 227, 227)) == ((None, 96, 55, 55),)
    g = Graph()
    x = g.add("input", name="img", shape=(None, 3, 227, 227), role="features")
    conv = g.add("conv2d", x, out_channels=96, kernel=11, stride=4)
    report = g.infer_shapes()
    assert report.shapes[conv.id] == ((None, 96, 55, 55),)
    assert report.macs[conv.id] == 96 * 55 * 55 * 3 * 11 * 11   # 105,415,200
    y = op.forward(Context(), np.zeros((1, 3, 227, 227)), np.zeros((96, 3, 11, 11)), np.zeros(96))
    assert y.shape == (1, 96, 55, 55)


def test_small_conv_parameter_and_mac_counts():
    """8 kernels of 3×3 over 3 channels on 32×32: 8·3·9 + 8 = 224 parameters and
    8·30·30·27 = 194,400 multiply-adds per image; without bias 216 parameters."""
    g = Graph()
    x = g.add("input", name="img", shape=(None, 3, 32, 32), role="features")
    conv = g.add("conv2d", x, out_channels=8, kernel=3)
    assert g.parameter_count() == 224
    assert g.infer_shapes().macs[conv.id] == 194_400
    g.set_params(conv, bias=False)
    assert g.parameter_count() == 216


def test_shape_errors_say_what_does_not_fit():
    """Geometry that cannot work names the kernel, the input size and the problem."""
    conv = get_op("conv2d")(kernel=5)
    with pytest.raises(ShapeError, match="kernel 5×5 with dilation 1 does not fit a 3×3 input "
                                         "after padding 0×0"):
        conv.infer_shapes((None, 1, 3, 3))
    with pytest.raises(ShapeError, match=r"expects images \(B, C, H, W\)"):
        conv.infer_shapes((None, 784))
    with pytest.raises(ShapeError, match="put a Flatten in front"):
        get_op("dense")().infer_shapes((None, 16, 5, 5))
    with pytest.raises(ShapeError, match="output_padding 2"):
        get_op("conv_transpose2d")(stride=2, output_padding=2).infer_shapes((None, 1, 4, 4))
    with pytest.raises(ShapeError, match="padding 2 must be at most half"):
        get_op("max_pool2d")(kernel=3, padding=2).infer_shapes((None, 1, 8, 8))
    g = Graph()
    x = g.add("input", name="img", shape=(None, 1, 3, 3), role="features")
    conv_node = g.add("conv2d", x, kernel=5)
    assert "does not fit a 3×3 input" in g.infer_shapes().errors[conv_node.id]


def _lenet(dtype="float32", batch=8):
    g = Graph(dtype=dtype)
    x = g.add("input", name="x", shape=(None, 1, 28, 28), role="features")
    t = g.add("input", name="t", shape=(None,), role="target")
    h = g.add("conv2d", x, out_channels=6, kernel=5, padding=2, name="c1")
    h = g.add("max_pool2d", g.add("relu", h), name="p1")
    h = g.add("conv2d", h, out_channels=16, kernel=5, name="c2")
    h = g.add("max_pool2d", g.add("relu", h), name="p2")
    h = g.add("flatten", h)
    h = g.add("relu", g.add("dense", h, units=120))
    h = g.add("relu", g.add("dense", h, units=84))
    h = g.add("dense", h, units=10, name="logits")
    loss = g.add("softmax_cross_entropy", h, t, name="loss")
    g.set_loss(loss)
    rng = np.random.default_rng(0)
    feeds = {"x": rng.random((batch, 1, 28, 28)).astype(dtype),
             "t": rng.integers(0, 10, batch)}
    return g, feeds


def test_lenet_float32_has_no_silent_float64():
    """Training LeNet-5 in float32: every value, gradient and weight gradient is float32."""
    g, feeds = _lenet()
    ex = Executor(g, training=True, input_grads=False).run(feeds)
    for key, v in ex.values.items():
        node = g.nodes[key[0]]
        if node.op_id not in ("input",) and key != (node.id, 1):
            assert v.dtype == np.float32, (node.name, v.dtype)
    assert ex.grads and all(v.dtype == np.float32 for v in ex.grads.values())
    assert len(ex.weight_grads) == 10
    assert all(v.dtype == np.float32 for v in ex.weight_grads.values())


def test_lenet_gradients_pass_the_graph_gradient_check():
    """The whole LeNet-5 (float64 copy) agrees with finite differences, ties included."""
    from core.gradcheck import check_graph

    g, feeds = _lenet(dtype="float64", batch=2)
    Executor(g, training=True).run(feeds)  # creates the weights
    rows = check_graph(g, loss="loss", feeds=feeds, max_elements=20)
    assert rows
    for row in rows:
        assert row.rel_error < 1e-5, row


def test_lenet_first_conv_skips_the_input_gradient():
    """With input_grads off, the first conv is told its input needs no gradient."""
    g, feeds = _lenet()
    ex = Executor(g, training=True, input_grads=False).run(feeds)
    c1 = g.node("c1")
    assert ex.ctxs[c1.id].needs(0) is False
    assert (c1.id, 0) in ex.weight_grads or (c1.id, "W") in ex.weight_grads


def test_thread_count_does_not_change_results(monkeypatch):
    """Work is split by shapes, not by threads: one worker gives bit-identical numbers."""

    monkeypatch.setattr(threads, "_MIN_SPLIT_BYTES", 0)  # split even this small batch
    monkeypatch.setattr(threads, "_WORKERS", 2)
    g, feeds = _lenet(batch=16)
    ex = Executor(g, training=True, input_grads=False).run(feeds)
    many = {k: v.copy() for k, v in ex.weight_grads.items()}
    monkeypatch.setattr(threads, "_WORKERS", 1)
    ex1 = Executor(g, training=True, input_grads=False).run(feeds)
    for k, v in many.items():
        np.testing.assert_array_equal(ex1.weight_grads[k], v)


def test_deferred_weight_gradients_are_complete_and_the_same_bits(monkeypatch):
    """On two threads a training run leaves the convolution's and the big dense layers'
    weight gradients to the helper beside the layers below; when ``run`` returns they hold
    the numbers one thread gives, bit for bit. A run that checks every node's numbers (the
    default outside training) reads each gradient at once and defers nothing."""
    from core.kernels import matmul

    monkeypatch.setattr(threads, "_MIN_SPLIT_BYTES", 0)
    monkeypatch.setattr(matmul, "_DEFER_MNK", 0)
    deferred = []
    real_defer = threads.defer

    def spy(fn, parts, finish):
        deferred.append(threads.can_defer())
        return real_defer(fn, parts, finish)

    from core.kernels import conv
    monkeypatch.setattr(conv, "defer", spy)
    monkeypatch.setattr(matmul, "defer", spy)
    g, feeds = _lenet(batch=16)
    monkeypatch.setattr(threads, "_WORKERS", 1)
    one = Executor(g, training=True, check_finite=False).run(feeds)
    assert deferred == []
    monkeypatch.setattr(threads, "_WORKERS", 2)
    two = Executor(g, training=True, check_finite=False).run(feeds)
    # both convolutions (the input's gradient is wanted too) and the three dense layers
    assert deferred == [True] * 5
    assert one.weight_grads.keys() == two.weight_grads.keys()
    for k, v in one.weight_grads.items():
        assert np.array_equal(two.weight_grads[k].view(np.uint8), v.view(np.uint8)), k
    deferred.clear()
    Executor(g, training=True, check_finite=True).run(feeds)
    assert deferred == []


def test_unconnected_pool_indices_are_skipped_only_when_asked():
    """Training (``all_outputs=False``) skips a max pool's unconnected indices output;
    a normal run computes it, and the other numbers do not change either way."""
    g, feeds = _lenet(batch=4)
    full = Executor(g, training=True).run(feeds)
    lean = Executor(g, training=True, all_outputs=False).run(feeds)
    p1 = g.node("p1").id
    assert full.values[(p1, 1)].dtype == np.int64
    assert (p1, 1) not in lean.values
    np.testing.assert_array_equal(lean.values[(p1, 0)], full.values[(p1, 0)])
    for k, v in full.weight_grads.items():
        np.testing.assert_array_equal(lean.weight_grads[k], v)


def test_reused_buffers_never_change_a_kept_result():
    """A second forward of the same conv node leaves the first run's saved state intact,
    so its backward (a stepper stepping back and replaying) still gives the right answer."""
    rng = np.random.default_rng(15)
    op = get_op("conv2d")(out_channels=3, kernel=3, padding=1)
    w, b = rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3)
    x1, x2 = rng.normal(size=(4, 2, 6, 6)), rng.normal(size=(4, 2, 6, 6))
    ctx1 = Context()
    y1 = op.forward(ctx1, x1, w, b)
    kept = y1.copy()
    g = rng.normal(size=y1.shape)
    expect = op.backward(ctx1, g)
    op.forward(Context(), x2, w, b)            # would overwrite shared buffers
    np.testing.assert_array_equal(y1, kept)
    for a, e in zip(op.backward(ctx1, g), expect):
        np.testing.assert_array_equal(a, e)
    del y1, ctx1                                # now the buffers are free to reuse
    ctx3 = Context()
    y3 = op.forward(ctx3, x1, w, b)
    np.testing.assert_array_equal(y3, kept)
    pool = get_op("max_pool2d")()
    p_ctx = Context()
    out1, idx1 = pool.forward(p_ctx, x1)
    kept_out, kept_idx = out1.copy(), idx1.copy()
    g_out = rng.normal(size=out1.shape)
    (gx1,) = pool.backward(p_ctx, g_out)
    kept_gx = gx1.copy()
    out2, idx2 = pool.forward(Context(), x2)
    ctx2 = Context()
    pool.forward(ctx2, x2)
    pool.backward(ctx2, g_out)                   # a second gradient, from other inputs
    np.testing.assert_array_equal(out1, kept_out)
    np.testing.assert_array_equal(idx1, kept_idx)
    np.testing.assert_array_equal(gx1, kept_gx)
    assert not np.array_equal(out2, kept_out)


# ------------------------------------------------- the executor's finite check

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_nan_inf_or_huge_values_are_told_apart_by_the_finite_check(dtype):
    """The executor's fast finite test (a sum of squares first) stops at NaN and ±Inf in large
    arrays of any memory order, and never at huge finite values whose squares overflow."""
    from core.executor import _all_finite

    x = np.random.default_rng(0).normal(size=(8, 3, 16, 16)).astype(dtype)
    assert _all_finite(x) and _all_finite(x.transpose(1, 2, 3, 0))
    huge = x * dtype(np.finfo(dtype).max / 4)
    assert _all_finite(huge)
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[5, 1, 7, 9] = bad
        assert not _all_finite(y)
        assert not _all_finite(y.transpose(3, 0, 2, 1))
        assert not _all_finite(y[:, :, 1::2])  # a strided view holding row 7


def test_relu_moved_behind_max_pool_gives_the_same_numbers():
    """Training runs apply a ReLU that only feeds a max pool after the pool; the loss,
    the logits and every weight gradient stay bit-identical (ties included)."""
    g, feeds = _lenet(batch=16)
    feeds["x"][:, :, :6] = 0.0  # flat regions: ties in every pool window there
    plain = Executor(g, training=True, input_grads=False).run(feeds)
    fast = Executor(g, training=True, input_grads=False, all_outputs=False,
                    check_finite=False)
    steps = fast.plan(g.loss)
    moved = [s for s in steps if s.then is not None]
    assert {g.nodes[s.node_id].name for s in moved} == {"p1", "p2"}
    fast.run(feeds)
    for name in ("loss", "logits", "p1", "p2"):
        np.testing.assert_array_equal(fast.value(name), plain.value(name))
    assert plain.weight_grads.keys() == fast.weight_grads.keys()
    for k, v in plain.weight_grads.items():
        np.testing.assert_array_equal(fast.weight_grads[k], v)
    # with per-node NaN checks every node runs as drawn
    checked = Executor(g, training=True, all_outputs=False, check_finite=True)
    assert all(s.then is None for s in checked.plan(g.loss))


def _lean_and_plain(g, feeds):
    plain = Executor(g, training=True, input_grads=False).run(feeds)
    lean = Executor(g, training=True, input_grads=False, all_outputs=False, check_finite=False)
    return plain, lean


def _same_numbers(lean, plain, g, names):
    for name in names:
        np.testing.assert_array_equal(lean.value(name), plain.value(name))
    assert plain.weight_grads.keys() == lean.weight_grads.keys()
    for k, v in plain.weight_grads.items():
        np.testing.assert_array_equal(lean.weight_grads[k], v)


def test_a_convolution_and_the_pool_it_feeds_run_in_one_forward_with_the_same_numbers():
    """Training runs make each thin convolution's rows and pool them in the same part; the
    convolution's value is not kept, and the loss, the pools' outputs and every weight
    gradient stay bit-identical (ties in flat regions included), on one thread or two."""
    from core.kernels import compiled

    if compiled.kernels() is None:
        pytest.skip("numba is not installed: the pair runs as two forwards")
    g, feeds = _lenet(batch=16)
    feeds["x"][:, :, :6] = 0.0
    plain, lean = _lean_and_plain(g, feeds)
    fused = {(g.nodes[s.node_id].name, g.nodes[s.fused].name)
             for s in lean.plan(g.loss) if s.fused is not None}
    assert fused == {("p1", "c1"), ("p2", "c2")}
    for workers in (1, 2):
        with held_threads(workers):
            lean.run(feeds)
        assert (g.node("c1").id, 0) not in lean.values  # made and pooled, not kept
        _same_numbers(lean, plain, g, ("loss", "logits", "p1", "p2"))
    # with per-node NaN checks, or keeping every value, every node runs as drawn
    checked = Executor(g, training=True, all_outputs=False, check_finite=True)
    assert all(s.fused is None for s in checked.plan(g.loss))
    assert all(s.fused is None for s in Executor(g, training=True).plan(g.loss))


def test_a_convolution_someone_else_reads_runs_on_its_own():
    """A convolution whose output also feeds another node keeps its value: no fused step."""
    g, feeds = _lenet(batch=4)
    g.add("sum", g.node("c2"), name="peek")
    _, lean = _lean_and_plain(g, feeds)
    fused = {g.nodes[s.fused].name for s in lean.plan(g.loss) if s.fused is not None}
    assert "c2" not in fused


def test_a_pair_that_cannot_run_fused_runs_as_two_forwards(monkeypatch):
    """When the pool cannot be made row by row (no compiled kernels, say) the fused step
    runs the two forwards; without the direct convolution, the im2col products pool their
    rows as they make them, and a thin layer pairing its columns pools its whole map after:
    the same numbers every way."""
    from core.kernels import conv, pool

    g, feeds = _lenet(batch=8)
    plain, lean = _lean_and_plain(g, feeds)
    calls = []
    real = pool.RowPool.make
    monkeypatch.setattr(pool.RowPool, "make",
                        classmethod(lambda cls, *a, **k: calls.append(1) or None))
    lean.run(feeds)
    assert calls
    _same_numbers(lean, plain, g, ("loss", "logits", "p1", "p2"))
    monkeypatch.setattr(pool.RowPool, "make", real)
    monkeypatch.setattr(conv, "_DIRECT_MAX_K", 0)  # every layer takes the im2col products
    plain = Executor(g, training=True, input_grads=False).run(feeds)
    lean.run(feeds)
    _same_numbers(lean, plain, g, ("loss", "logits", "p1", "p2"))
    if pool.RowPool.make(Scratch(), (16, 10, 10, 8), np.float32, (2, 2), (2, 2), (0, 0),
                         True) is not None:
        assert lean.ctxs[g.node("c2").id].kernel_state.rows_done        # im2col, pooled
        assert not lean.ctxs[g.node("c1").id].kernel_state.rows_done    # paired columns


def _conv_relu_net(c_in=1, c1_out=8, dtype="float32", batch=6, hw=12):
    """A Keras-style stack: convolution, ReLU, convolution, ReLU, max pool, a dense layer."""
    g = Graph(dtype=dtype)
    x = g.add("input", name="x", shape=(None, c_in, hw, hw), role="features")
    t = g.add("input", name="t", shape=(None,), role="target")
    h = g.add("relu", g.add("conv2d", x, out_channels=c1_out, kernel=3, name="c1"), name="r1")
    h = g.add("relu", g.add("conv2d", h, out_channels=12, kernel=3, name="c2"), name="r2")
    h = g.add("flatten", g.add("max_pool2d", h, name="p2"))
    g.set_loss(g.add("softmax_cross_entropy", g.add("dense", h, units=10, name="logits"), t,
                     name="loss"))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, c_in, hw, hw)).astype(dtype)
    x[:, :, :4] = 0.0  # flat rows: outputs of exactly the bias, and ties
    return g, {"x": x, "t": rng.integers(0, 10, batch)}


def test_a_relu_runs_in_the_forward_of_the_convolution_it_reads_with_the_same_numbers():
    """Training runs apply a ReLU that alone reads a convolution to each part's rows as the
    convolution makes them: the ReLU has no steps of its own, its readers read the
    convolution's value (the ReLU's output), and the loss, the values and every weight
    gradient stay bit-identical, on one thread or two; thin layers (the direct convolution)
    and wide ones (the im2col products) alike."""
    from core.kernels import compiled

    if compiled.kernels() is None:
        pytest.skip("numba is not installed: the pair runs as two forwards")
    # 9 and 180 taps per output: the direct convolution, the im2col products
    for c_in, c1_out in ((1, 8), (20, 16)):
        g, feeds = _conv_relu_net(c_in, c1_out)
        plain, lean = _lean_and_plain(g, feeds)
        plan = lean.plan(g.loss)
        c1, r1 = g.node("c1").id, g.node("r1").id
        assert [(s.phase, s.then) for s in plan if s.node_id == c1] == [
            ("forward", r1), ("backward", r1)]
        assert all(s.node_id != r1 for s in plan)
        # the second ReLU moves behind its pool, which runs its convolution
        assert g.node("r2").id not in {s.then for s in plan if s.node_id == g.node("c2").id}
        for workers in (1, 2):
            with held_threads(workers):
                lean.run(feeds)
            assert lean.ctxs[c1].kernel_state.rows_done
            _same_numbers(lean, plain, g, ("loss", "logits", "r1", "p2"))
            np.testing.assert_array_equal(lean.values[(c1, 0)], plain.value("r1"))


def test_a_relu_that_cannot_run_in_the_convolutions_parts_runs_after_it(monkeypatch):
    """Without the compiled kernels, or on a layer that pairs its output columns (whose
    parts do not make whole rows), the step runs the convolution, then the ReLU on its whole
    map: the same numbers."""
    from core.kernels import compiled, conv

    g, feeds = _conv_relu_net(20)
    with monkeypatch.context() as m:
        m.setattr(compiled, "kernels", lambda: None)
        plain, lean = _lean_and_plain(g, feeds)
        lean.run(feeds)
        _same_numbers(lean, plain, g, ("loss", "logits", "r1", "p2"))
    plain, lean = _lean_and_plain(g, feeds)
    # 8 kernels of 180 taps: too many taps for the direct convolution, few enough kernels
    # to pair columns
    assert conv._folds(8, (3, 3), (1, 1), (1, 1), (10, 10))
    lean.run(feeds)
    if compiled.kernels() is not None:
        assert not lean.ctxs[g.node("c1").id].kernel_state.rows_done
    _same_numbers(lean, plain, g, ("loss", "logits", "r1", "p2"))
    from core.kernels import scratch

    # a map of 2 MB, whose mask comes from the ReLU's reused buffers: no new one per batch
    g, feeds = _conv_relu_net(20, batch=64, hw=34)
    plain, lean = _lean_and_plain(g, feeds)
    lean.run(feeds)
    made = []
    real = scratch.aligned_empty
    monkeypatch.setattr(scratch, "aligned_empty",
                        lambda shape, dtype: made.append(np.dtype(dtype)) or real(shape, dtype))
    lean.run(feeds)
    lean.run(feeds)
    assert np.dtype(np.bool_) not in made
    _same_numbers(lean, plain, g, ("loss", "logits", "r1", "p2"))


def test_a_convolution_someone_else_reads_keeps_its_relu_apart():
    """A convolution whose output also feeds another node, a ReLU with a second input
    path, per-node NaN checks, or a run that keeps every value: the ReLU runs as drawn."""
    g, feeds = _conv_relu_net()
    g.add("sum", g.node("c1"), name="peek")
    _, lean = _lean_and_plain(g, feeds)
    assert all(s.node_id != g.node("c1").id or s.then is None for s in lean.plan(g.loss))
    g, feeds = _conv_relu_net()
    checked = Executor(g, training=True, all_outputs=False, check_finite=True)
    assert all(s.then is None for s in checked.plan(g.loss))
    assert all(s.then is None for s in Executor(g, training=True).plan(g.loss))


def test_the_move_behind_a_pool_follows_the_fact_the_op_declares(monkeypatch):
    """The plan pass reads ``commutes_with`` from the op: without it a ReLU stays where it
    is drawn, and any op that declares it (here Tanh, which is increasing) is moved."""
    g, feeds = _lenet(batch=4)
    lean = dict(training=True, input_grads=False, all_outputs=False, check_finite=False)
    monkeypatch.setattr(get_op("relu"), "commutes_with", ())
    # the ReLUs stay behind their convolutions (whose steps may run them): none behind a pool
    assert all(s.then is None for s in Executor(g, **lean).plan(g.loss)
               if g.nodes[s.node_id].op_id == "max_pool2d")
    monkeypatch.undo()
    h = g.add("max_pool2d", g.add("tanh", g.node("x"), name="th"), name="p0")
    g.set_loss(g.add("sum", h, name="s0"))
    monkeypatch.setattr(get_op("tanh"), "commutes_with", ("max_pool2d",))
    moved = {s.then for s in Executor(g, **lean).plan(g.loss) if s.then is not None}
    assert g.node("th").id in moved


def test_thin_convolution_pairs_output_columns_with_the_same_numbers(monkeypatch):
    """LeNet-5's first layer (6 kernels) computes output columns in pairs; values and every
    gradient agree with the plain im2col path to float32 rounding, in float64 to 1e-12."""
    from core.kernels import conv

    assert conv._folds(6, (5, 5), (1, 1), (1, 1), (28, 28))
    assert not conv._folds(16, (5, 5), (1, 1), (1, 1), (10, 10))  # wide enough already
    for dtype, tol in (("float32", 1e-5), ("float64", 1e-12)):
        g, feeds = _lenet(dtype=dtype, batch=6)
        paired = Executor(g, training=True).run(feeds)
        monkeypatch.setattr(conv, "_FOLD_MAX_OUT", 0)
        plain = Executor(g, training=True).run(feeds)
        monkeypatch.undo()
        c1 = g.node("c1").id
        np.testing.assert_allclose(paired.values[(c1, 0)], plain.values[(c1, 0)],
                                   rtol=tol, atol=tol)
        for k, v in plain.weight_grads.items():
            np.testing.assert_allclose(paired.weight_grads[k], v, rtol=tol, atol=tol)
        np.testing.assert_allclose(paired.grads[(g.node("x").id, 0)],
                                   plain.grads[(g.node("x").id, 0)], rtol=tol, atol=tol)


def test_training_from_new_threads_does_not_pile_up_column_buffers():
    """A GUI starts a new thread for each training run: the im2col block buffers are
    shared by such threads instead of kept per thread id, so they do not accumulate."""
    import threading

    from core.kernels import compiled

    g, feeds = _lenet(batch=4)
    ex = Executor(g, training=True)
    old = compiled.set_enabled(False)  # the im2col path: compiled convolutions use no blocks
    try:
        for _ in range(3):
            t = threading.Thread(target=ex.run, args=(feeds,))
            t.start()
            t.join()
        ex.run(feeds)  # and the main thread
    finally:
        compiled.set_enabled(old)
    conv = g.node("c1").op
    callers = {key[0] for key in conv._scratch._arrays if not key[0].startswith("cols-kernel-pool")}
    assert {k for k in callers if k.startswith("cols-")} == {"cols-caller"}


def test_a_flipped_kernel_gradient_left_to_a_helper_is_flipped_once_it_is_made():
    """A true convolution (``mode="convolution"``) below another layer: in a training run on
    two threads its kernel gradient is finished beside the layers below, and must be
    flipped then, not copied from the array that is still waiting for it."""
    g = Graph(dtype="float32")
    x = g.add("input", name="x", shape=(None, 3, 12, 12), role="features")
    t = g.add("input", name="t", shape=(None,), role="target")
    h = g.add("conv2d", x, out_channels=8, kernel=3, name="c1")
    h = g.add("conv2d", h, out_channels=8, kernel=3, mode="convolution", name="c2")
    g.set_loss(g.add("softmax_cross_entropy", g.add("dense", g.add("flatten", h), units=10),
                     t, name="loss"))
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((16, 3, 12, 12)).astype("float32"),
             "t": rng.integers(0, 10, 16)}
    plain = Executor(g, training=True, input_grads=False).run(feeds)
    for workers in (1, 2):
        with held_threads(workers):
            lean = Executor(g, training=True, input_grads=False, all_outputs=False,
                            check_finite=False).run(feeds)
        for name in ("c1", "c2"):
            np.testing.assert_array_equal(lean.weight_grad(name, "W"), plain.weight_grad(name, "W"))


def test_a_lean_run_gives_the_gradients_it_keeps_and_names_those_it_does_not():
    """A ReLU run in its convolution's step has the gradient of the value its readers read;
    the convolution's own, and that of a ReLU moved behind a pool, are not kept: an error
    names the node instead of a silent zero."""
    from core.errors import GraphError

    g, feeds = _conv_relu_net()
    plain, lean = _lean_and_plain(g, feeds)
    lean.run(feeds)
    np.testing.assert_array_equal(lean.grad("r1"), plain.grad("r1"))
    np.testing.assert_array_equal(lean.grad("p2"), plain.grad("p2"))
    with pytest.raises(GraphError, match="'c1'.*ReLU 'r1'"):
        lean.grad("c1")
    with pytest.raises(GraphError, match="'r2'.*behind the max pool"):
        lean.grad("r2")
    plain.grad("c1")  # a run that keeps every value has them all
    plain.grad("r2")
