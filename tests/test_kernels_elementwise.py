"""Big elementwise ops in parts: the same numbers as the plain expressions, in the input's
layout, on any thread count, and never in a buffer someone still holds."""

import numpy as np
import pytest
from conftest import held_threads

from core.kernels import elementwise, threads
from core.kernels.elementwise import (
    dropout_draw_forward,
    dropout_forward,
    relu_forward,
    times_mask,
)
from core.kernels.layout import batch_first
from core.kernels.scratch import Scratch
from core.ops import Context, get_op

# batch-last (the image kernels' layout) and plain, big enough to be cut into several spans
_BIG = (32, 14, 14, 128)


def _batch_last(rng, shape=_BIG, dtype=np.float32):
    return batch_first(rng.normal(size=shape).astype(dtype))


@pytest.fixture(params=[1, 2], ids=["1 thread", "2 threads"])
def layer_threads(request):
    old = threads.set_layer_threads(request.param)
    yield request.param
    threads.set_layer_threads(old)


def test_big_arrays_are_cut_into_several_spans():
    """The shapes below really take the parted path (else these tests would test nothing)."""
    x = _batch_last(np.random.default_rng(0))
    assert elementwise._worth_it(x)
    assert len(elementwise._spans(x.size, x.itemsize)) >= 2


@pytest.mark.parametrize("layout", ["batch-last", "batch-first"])
def test_relu_forward_equals_the_plain_expressions(layer_threads, layout):
    rng = np.random.default_rng(1)
    x = _batch_last(rng)
    if layout == "batch-first":
        x = np.ascontiguousarray(x)
    x.reshape(-1, order="A")[::97] = np.nan  # NaN passes through max as np.maximum does
    y, mask = relu_forward(Scratch(), x)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    np.testing.assert_array_equal(mask, x > 0)
    assert y.strides == x.strides and mask.dtype == np.bool_


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_of_a_small_array_is_the_plain_expressions_bits(dtype):
    """Below the split size the maximum runs against a row of zeros, not the scalar 0 (a
    faster loop): the same bits, signed zeros, NaN and infinities included, in x's layout."""
    x = np.random.default_rng(3).normal(size=(16, 6, 5, 5)).astype(dtype)
    x.reshape(-1)[:6] = [-0.0, 0.0, np.nan, -np.inf, np.inf, -1.0]
    x = x.transpose(3, 0, 1, 2)  # a batch-last view, as the image layers hand it on
    assert not elementwise._worth_it(x)
    y, mask = relu_forward(Scratch(), x)
    want = np.maximum(x, 0)
    assert y.strides == want.strides
    bits = np.uint32 if dtype == np.float32 else np.uint64
    np.testing.assert_array_equal(y.view(bits), want.view(bits))
    np.testing.assert_array_equal(mask, x > 0)
    with pytest.raises(ValueError):  # the shared zeros cannot be written through
        elementwise._zeros(4, dtype)[0] = 1


def test_relu_of_a_strided_view_takes_the_plain_path():
    """A view that is no contiguous block in any order is not cut; the numbers are the same."""
    x = np.random.default_rng(2).normal(size=(8, 16, 30, 130)).astype(np.float32)[:, :, ::2, 1:]
    y, mask = relu_forward(Scratch(), x)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    np.testing.assert_array_equal(mask, x > 0)


def test_times_mask_of_mixed_layouts_equals_the_plain_product(layer_threads):
    """A batch-first gradient (from Flatten) meets a batch-last mask: reordered, not changed."""
    rng = np.random.default_rng(3)
    mask = _batch_last(rng) > 0
    g = rng.normal(size=mask.shape).astype(np.float32)
    out = times_mask(Scratch(), g, mask)
    np.testing.assert_array_equal(out, g * mask)
    assert out.strides == _batch_last(rng).strides and out.dtype == np.float32


def test_dropout_forward_equals_the_plain_expressions(layer_threads):
    rng = np.random.default_rng(4)
    x = _batch_last(rng)
    u = batch_first(rng.random(_BIG, dtype=np.float32))
    scale = np.float32(1 / (1 - 0.3))
    y, mask = dropout_forward(Scratch(), x, u, 0.3, scale)
    np.testing.assert_array_equal(mask, (u >= 0.3) * scale)
    np.testing.assert_array_equal(y, x * ((u >= 0.3) * scale))
    assert y.dtype == mask.dtype == np.float32 and y.strides == x.strides


def test_a_big_dropout_mask_is_drawn_in_parts_with_the_same_bits_on_any_thread_count(
        monkeypatch):
    """A big mask (the Keras CNN's first dropout) is drawn in parts, each from a generator
    seeded by the op's own: the same mask on one thread or two, and again from the same
    seed; the output is x times it, and about p of the numbers are dropped."""
    x = _batch_last(np.random.default_rng(6))
    scale = np.float32(1 / (1 - 0.3))
    runs = []
    for workers, seed in ((1, 9), (2, 9), (2, 10)):
        monkeypatch.setattr(threads, "_WORKERS", workers)
        drawn = dropout_draw_forward(Scratch(), x, np.random.default_rng(seed), 0.3, scale,
                                     np.float32)
        assert drawn is not None
        runs.append(tuple(a.copy(order="K") for a in drawn))
    (y, mask), (y2, mask2), (_, other) = runs
    np.testing.assert_array_equal(mask2, mask)
    np.testing.assert_array_equal(y2, y)
    assert not np.array_equal(other, mask)  # another seed, another mask
    np.testing.assert_array_equal(y, x * mask)
    assert set(np.unique(mask)) == {np.float32(0), scale}
    assert abs((mask == 0).mean() - 0.3) < 0.01
    assert y.strides == x.strides and y.dtype == mask.dtype == np.float32
    # each part draws a stream of its own: no part's mask repeats the first part's
    n = elementwise._DRAW_PART
    assert x.size >= 4 * n
    parts = mask.ravel(order="K")[:4 * n].reshape(4, n)
    assert not any(np.array_equal(parts[0], parts[i]) for i in range(1, 4))


def test_a_small_dropout_mask_is_drawn_as_before():
    """Under the split size nothing is drawn in parts: the op draws its mask in one call
    from the node's generator, the numbers it drew before."""
    x = np.random.default_rng(1).normal(size=(4, 6)).astype(np.float32)
    assert dropout_draw_forward(Scratch(), x, np.random.default_rng(0), 0.3,
                                np.float32(1 / 0.7), np.float32) is None
    ctx = Context(training=True, rng=np.random.default_rng(3))
    y = get_op("dropout")(p=0.3).forward(ctx, x)
    u = np.random.default_rng(3).random(x.shape, dtype=np.float32)
    np.testing.assert_array_equal(y, x * ((u >= 0.3) * np.float32(1 / 0.7)))


def test_dropout_in_training_draws_a_big_mask_in_parts_and_its_gradient_uses_it(
        monkeypatch):
    """The op, in training on a big batch-last input, draws its mask in parts: the output
    is x times the mask it keeps, its gradient is the incoming gradient times the same mask,
    and a replay from the same seed gives the same numbers."""
    from core.ops import normalization

    drawn = []
    real = normalization.dropout_draw_forward
    monkeypatch.setattr(normalization, "dropout_draw_forward",
                        lambda *a: drawn.append(real(*a)) or drawn[-1])
    x = _batch_last(np.random.default_rng(7))
    op = get_op("dropout")(p=0.4)
    outs = []
    for _ in range(2):
        ctx = Context(training=True, rng=np.random.default_rng(3))
        y = op.forward(ctx, x)
        g = np.full(x.shape, 2.0, np.float32)
        (gx,) = op.backward(ctx, g)
        np.testing.assert_array_equal(y, x * ctx.mask)
        np.testing.assert_array_equal(gx, g * ctx.mask)
        outs.append(y.copy())
    np.testing.assert_array_equal(outs[0], outs[1])
    assert len(drawn) == 2 and all(d is not None for d in drawn)


def test_a_held_result_is_never_overwritten_by_the_next_batch():
    """In training the op's buffers are reused only once nothing refers to them."""
    rng = np.random.default_rng(5)
    op = get_op("relu")()
    first_x = _batch_last(rng)
    ctx = Context(training=True)
    held = op.forward(ctx, first_x)
    kept = held.copy()
    again = op.forward(Context(training=True), _batch_last(rng))
    assert not np.shares_memory(held, again)
    np.testing.assert_array_equal(held, kept)
    # once nothing holds the second result, the third batch reuses its buffer
    again_at = np.lib.array_utils.byte_bounds(again)
    del again
    third = op.forward(Context(training=True), _batch_last(rng))
    assert np.lib.array_utils.byte_bounds(third) == again_at
    np.testing.assert_array_equal(held, kept)


def test_an_evaluation_keeps_no_buffer_of_its_batch_size():
    """Outside training (an evaluation's batches are of another size) ReLU's results are
    new arrays: nothing of that size stays in the op's scratch after the run."""
    rng = np.random.default_rng(8)
    op = get_op("relu")()
    ctx = Context(training=False)
    x = _batch_last(rng)
    y = op.forward(ctx, x)
    (gx,) = op.backward(ctx, _batch_last(rng))
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    assert y.strides == x.strides and gx.strides == x.strides
    assert not getattr(op, "_scratch", None) or not op._scratch._arrays


def test_relu_and_dropout_ops_give_the_same_bits_on_one_and_two_threads():
    rng = np.random.default_rng(6)
    x = _batch_last(rng)
    g = _batch_last(rng)
    results = []
    for n in (1, 2):
        with held_threads(n):
            out = []
            for name, params in (("relu", {}), ("dropout", {"p": 0.25})):
                op = get_op(name)(**params) if params else get_op(name)()
                ctx = Context(training=True, rng=np.random.default_rng(7))
                out.append(op.forward(ctx, x).copy())
                out.append(op.backward(ctx, g)[0].copy())
            results.append(out)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
