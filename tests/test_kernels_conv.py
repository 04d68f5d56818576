"""The convolution kernels (paired columns, plain im2col, shifted col2im, col2im products,
transposed convolution) against plain NumPy references written as loops over kernel taps."""


import numpy as np
import pytest
from conftest import on_both_threads

from core.kernels import compiled, conv, threads
from core.kernels.scratch import Scratch

RTOL = ATOL = 1e-10


def _out_size(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _tap_slices(m, n, stride, dilation, out_hw):
    (sh, sw), (dh, dw), (oh, ow) = stride, dilation, out_hw
    return (slice(m * dh, m * dh + sh * (oh - 1) + 1, sh),
            slice(n * dw, n * dw + sw * (ow - 1) + 1, sw))


def conv_reference(x, w, b, stride, padding, dilation):
    """Cross-correlation, one kernel tap at a time: y += w[:, :, m, n] · x shifted."""
    (ph, pw), (kh, kw) = padding, w.shape[2:]
    out_hw = tuple(_out_size(n, k, s, p, d) for n, k, s, p, d in
                   zip(x.shape[2:], (kh, kw), stride, padding, dilation))
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros((x.shape[0], w.shape[0]) + out_hw)
    for m in range(kh):
        for n in range(kw):
            rows, cols = _tap_slices(m, n, stride, dilation, out_hw)
            y += np.einsum("bcij,oc->boij", xp[:, :, rows, cols], w[:, :, m, n])
    if b.size:
        y += b[None, :, None, None]
    return y


def conv_reference_grads(x, w, b, g, stride, padding, dilation):
    """The adjoint of :func:`conv_reference`, tap by tap."""
    (ph, pw), (kh, kw) = padding, w.shape[2:]
    out_hw = g.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    gxp = np.zeros_like(xp)
    gw = np.zeros_like(w)
    for m in range(kh):
        for n in range(kw):
            rows, cols = _tap_slices(m, n, stride, dilation, out_hw)
            gw[:, :, m, n] = np.einsum("boij,bcij->oc", g, xp[:, :, rows, cols])
            gxp[:, :, rows, cols] += np.einsum("boij,oc->bcij", g, w[:, :, m, n])
    gx = gxp[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]]
    gb = g.sum(axis=(0, 2, 3)) if b.size else np.zeros((0,))
    return gx, gw, gb


CONV_CASES = [
    # x shape, out channels, kernel, stride, padding, dilation, bias, which path
    ((3, 2, 8, 10), 4, (3, 3), (1, 1), (1, 1), (1, 1), True, "paired columns"),
    ((2, 3, 7, 8), 6, (3, 5), (1, 1), (2, 2), (1, 1), False, "paired columns, no bias"),
    ((3, 2, 8, 10), 12, (3, 3), (1, 1), (1, 1), (1, 1), True, "paired kernel gradient only"),
    ((2, 2, 7, 9), 20, (3, 3), (1, 1), (0, 0), (1, 1), True, "plain im2col, shifted col2im"),
    ((2, 3, 9, 8), 5, (2, 3), (1, 1), (1, 2), (2, 1), True, "shifted col2im with dilation"),
    ((2, 3, 9, 9), 4, (3, 3), (2, 2), (1, 1), (1, 1), True, "stride 2: col2im products"),
    ((1, 2, 10, 9), 3, (3, 2), (3, 1), (0, 1), (1, 2), False, "mixed stride and dilation"),
    ((2, 4, 5, 6), 7, (1, 1), (1, 1), (0, 0), (1, 1), True, "1×1 kernel"),
]


def _run(case, rng):
    x_shape, o, kernel, stride, padding, dilation, bias, _ = case
    x = rng.normal(size=x_shape)
    w = rng.normal(size=(o, x_shape[1]) + kernel)
    b = rng.normal(size=o) if bias else np.zeros((0,))
    out_hw = tuple(_out_size(n, k, s, p, d) for n, k, s, p, d in
                   zip(x_shape[2:], kernel, stride, padding, dilation))
    scratch = Scratch()
    y, state = conv.conv2d_forward(scratch, x, w, b, stride, padding, dilation, out_hw)
    g = rng.normal(size=y.shape)
    grads = conv.conv2d_backward(scratch, state, g)
    return (x, w, b, g), y, grads


@pytest.mark.parametrize("case", CONV_CASES, ids=[c[-1] for c in CONV_CASES])
def test_conv2d_kernels_match_the_tap_by_tap_reference(case):
    """Every convolution path gives the reference's output and input, kernel and bias
    gradients (float64, to rounding)."""
    (x, w, b, g), y, (gx, gw, gb) = _run(case, np.random.default_rng(0))
    stride, padding, dilation = case[3], case[4], case[5]
    np.testing.assert_allclose(y, conv_reference(x, w, b, stride, padding, dilation),
                               rtol=RTOL, atol=ATOL)
    rx, rw, rb = conv_reference_grads(x, w, b, g, stride, padding, dilation)
    np.testing.assert_allclose(gx, rx, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(gw, rw, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(gb, rb, rtol=RTOL, atol=ATOL)


def test_conv2d_paths_are_chosen_by_the_shapes():
    """Thin stride-1 layers pair their output columns; up to 16 kernels pair them in the
    kernel gradient only; wider layers, odd widths and strides take the plain path."""
    assert conv._folds(6, (5, 5), (1, 1), (1, 1), (28, 28))
    assert conv._folds(6, (5, 5), (1, 1), (1, 1), (27, 28))  # an odd number of rows is fine
    assert not conv._folds(6, (5, 5), (1, 1), (1, 1), (28, 27))
    assert not conv._folds(6, (5, 5), (2, 2), (1, 1), (28, 28))
    assert not conv._folds(12, (3, 3), (1, 1), (1, 1), (8, 10))
    assert conv._folds(12, (3, 3), (1, 1), (1, 1), (8, 10), conv._KGRAD_FOLD_MAX_OUT)
    for case, fold, kfold in ((CONV_CASES[0], True, True), (CONV_CASES[2], False, True),
                              (CONV_CASES[3], False, False)):
        x_shape, o, kernel, stride, padding, dilation = case[:6]
        x = np.zeros(x_shape)
        w = np.zeros((o, x_shape[1]) + kernel)
        out_hw = tuple(_out_size(n, k, s, p, d) for n, k, s, p, d in
                       zip(x_shape[2:], kernel, stride, padding, dilation))
        _, state = conv.conv2d_forward(Scratch(), x, w, np.zeros(o), stride, padding,
                                       dilation, out_hw)
        assert (state.fold, state.kfold) == (fold, kfold), case[-1]


@pytest.mark.parametrize("case", CONV_CASES[:6], ids=[c[-1] for c in CONV_CASES[:6]])
def test_conv2d_parts_give_the_same_bits_on_one_or_two_threads(case, monkeypatch):
    """Cut into many parts, the kernels give the same bits whether one thread or two run
    them, and still the reference's numbers."""
    monkeypatch.setattr(threads, "_MIN_SPLIT_BYTES", 0)
    monkeypatch.setattr(threads, "_PART_BYTES", 256)
    results = []
    for workers in (2, 1):
        monkeypatch.setattr(threads, "_WORKERS", workers)
        inputs, y, grads = _run(case, np.random.default_rng(1))
        results.append((y.copy(), [gr.copy() for gr in grads]))
    (y2, g2), (y1, g1) = results
    np.testing.assert_array_equal(y2, y1)
    for a, b in zip(g2, g1):
        np.testing.assert_array_equal(a, b)
    x, w, b, g = inputs
    stride, padding, dilation = case[3], case[4], case[5]
    np.testing.assert_allclose(y1, conv_reference(x, w, b, stride, padding, dilation),
                               rtol=RTOL, atol=ATOL)
    for got, want in zip(g1, conv_reference_grads(x, w, b, g, stride, padding, dilation)):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_conv2d_skips_the_input_gradient_when_not_needed():
    """``need_x=False`` gives no input gradient and the same kernel and bias gradients."""
    rng = np.random.default_rng(2)
    (x, w, b, g), _, full = _run(CONV_CASES[0], rng)
    scratch = Scratch()
    _, state = conv.conv2d_forward(scratch, x, w, b, (1, 1), (1, 1), (1, 1), (8, 10))
    gx, gw, gb = conv.conv2d_backward(scratch, state, g, need_x=False)
    assert gx is None
    np.testing.assert_array_equal(gw, full[1])
    np.testing.assert_array_equal(gb, full[2])


def conv_transpose_reference(x, w, b, stride, padding, dilation, output_padding):
    """Every input pixel scatters its kernel copy, tap by tap, then the border is cropped."""
    (sh, sw), (dh, dw), (ph, pw) = stride, dilation, padding
    c, o, kh, kw = w.shape
    bsz, _, h, wd = x.shape
    full = np.zeros((bsz, o, (h - 1) * sh + dh * (kh - 1) + 1 + output_padding[0],
                     (wd - 1) * sw + dw * (kw - 1) + 1 + output_padding[1]))
    for m in range(kh):
        for n in range(kw):
            rows, cols = _tap_slices(m, n, stride, dilation, (h, wd))
            full[:, :, rows, cols] += np.einsum("bcij,co->boij", x, w[:, :, m, n])
    oh, ow = full.shape[2] - 2 * ph, full.shape[3] - 2 * pw
    y = full[:, :, ph:ph + oh, pw:pw + ow]
    return y + b[None, :, None, None] if b.size else y


@pytest.mark.parametrize("geometry", [
    ((2, 2, 3, 4), 3, (3, 3), (2, 2), (1, 1), (1, 1), (1, 0)),
    ((1, 3, 3, 3), 2, (2, 3), (3, 1), (0, 1), (1, 2), (0, 0)),
    ((2, 2, 4, 4), 4, (3, 3), (1, 1), (0, 0), (1, 1), (0, 0)),
])
def test_conv_transpose2d_kernels_match_the_scatter_reference(geometry):
    """The transposed convolution and its gradients (the reference's adjoint, checked by
    inner products) agree with the scatter-by-tap reference."""
    x_shape, o, kernel, stride, padding, dilation, output_padding = geometry
    rng = np.random.default_rng(3)
    x = rng.normal(size=x_shape)
    w = rng.normal(size=(x_shape[1], o) + kernel)
    b = rng.normal(size=o)
    want = conv_transpose_reference(x, w, b, stride, padding, dilation, output_padding)
    y, state = conv.conv_transpose2d_forward(x, w, b, kernel, stride, padding, dilation,
                                             output_padding, want.shape[2:])
    np.testing.assert_allclose(y, want, rtol=RTOL, atol=ATOL)
    g = rng.normal(size=y.shape)
    gx, gw, gb = conv.conv_transpose2d_backward(state, g)
    # y is linear in x and in w: <g, y(dx)> = <gx, dx> and <g, y(dw)> = <gw, dw>
    dx, dw = rng.normal(size=x.shape), rng.normal(size=w.shape)
    no_b = np.zeros((0,))
    lin_x = conv_transpose_reference(dx, w, no_b, stride, padding, dilation, output_padding)
    lin_w = conv_transpose_reference(x, dw, no_b, stride, padding, dilation, output_padding)
    np.testing.assert_allclose(np.vdot(g, lin_x), np.vdot(gx, dx), rtol=1e-10)
    np.testing.assert_allclose(np.vdot(g, lin_w), np.vdot(gw, dw), rtol=1e-10)
    np.testing.assert_allclose(gb, g.sum(axis=(0, 2, 3)), rtol=RTOL, atol=ATOL)


needs_numba_direct = pytest.mark.skipif(not compiled.enabled(), reason="numba is not installed")

DIRECT_CASES = [
    # x shape, out channels, kernel, stride, padding, dilation, bias, note
    ((3, 1, 12, 12), 6, (5, 5), (1, 1), (2, 2), (1, 1), True, "LeNet-5's first layer"),
    ((2, 6, 9, 9), 16, (5, 5), (1, 1), (0, 0), (1, 1), True, "LeNet-5's second layer"),
    ((1, 2, 9, 8), 5, (3, 3), (1, 1), (1, 1), (1, 1), False, "batch 1, no bias"),
    ((2, 3, 9, 9), 4, (3, 2), (2, 1), (1, 0), (1, 2), True, "stride and dilation"),
    ((2, 2, 11, 13), 7, (3, 5), (2, 1), (1, 2), (1, 2), True,
     "five taps wide: blocks of four and three, row stride, column dilation"),
    ((2, 1, 8, 8), 2, (5, 5), (1, 1), (2, 2), (1, 1), False, "five taps wide, two kernels"),
]


def _conv_on(case, dtype, compiled_on, seed=3):
    """Forward and backward of ``case`` with the compiled kernels on or off."""
    x_shape, o, kernel, stride, padding, dilation, bias, _ = case
    rng = np.random.default_rng(seed)
    x = rng.normal(size=x_shape).astype(dtype)
    w = rng.normal(size=(o, x_shape[1]) + kernel).astype(dtype)
    b = rng.normal(size=o).astype(dtype) if bias else np.zeros((0,), dtype)
    out_hw = tuple(_out_size(n, k, s, p, d) for n, k, s, p, d in
                   zip(x_shape[2:], kernel, stride, padding, dilation))
    old = compiled.set_enabled(compiled_on)
    try:
        scratch = Scratch()
        y, state = conv.conv2d_forward(scratch, x, w, b, stride, padding, dilation, out_hw)
        g = rng.normal(size=y.shape).astype(dtype)
        grads = conv.conv2d_backward(scratch, state, g)
        return state.direct, y.copy(), [gr.copy() for gr in grads]
    finally:
        compiled.set_enabled(old)


@needs_numba_direct
@pytest.mark.parametrize("case", DIRECT_CASES, ids=[c[-1] for c in DIRECT_CASES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_direct_convolution_gives_the_numpy_kernels_numbers(case, dtype):
    """Thin layers run the compiled direct convolution (numba) and give the im2col
    products' output and gradients, to rounding."""
    direct, y, grads = _conv_on(case, dtype, True)
    plain, y_ref, grads_ref = _conv_on(case, dtype, False)
    assert direct and not plain
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, y_ref, rtol=tol, atol=tol)
    for got, want in zip(grads, grads_ref):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@needs_numba_direct
def test_wide_layers_keep_the_im2col_products():
    """A layer summing more than ``_DIRECT_MAX_K`` products per output stays on BLAS."""
    case = ((2, 20, 6, 6), 8, (3, 3), (1, 1), (0, 0), (1, 1), True, "wide")
    assert 20 * 9 > conv._DIRECT_MAX_K
    assert not _conv_on(case, np.float32, True)[0]


@needs_numba_direct
@pytest.mark.parametrize("case", DIRECT_CASES[:2], ids=[c[-1] for c in DIRECT_CASES[:2]])
def test_direct_convolution_gives_the_same_bits_on_one_or_two_threads(case, monkeypatch):
    """Cut into one part per output row, the direct convolution gives the same bits
    whether one thread runs every part or two share them."""
    monkeypatch.setattr(threads, "_MIN_SPLIT_BYTES", 0)
    monkeypatch.setattr(conv, "COMPILED_PART_BYTES", 64)
    kh, kw = case[2]
    real = compiled.kernels().conv_rows(kh, kw)
    spy, ran_on = on_both_threads(real)

    monkeypatch.setattr(compiled.kernels(), "conv_rows", lambda *size: spy)
    results = []
    for workers in (2, 1):
        monkeypatch.setattr(threads, "_WORKERS", workers)
        results.append(_conv_on(case, np.float32, True))
    assert any(name.startswith(threads.POOL_PREFIX) for name in ran_on)
    (d2, y2, g2), (d1, y1, g1) = results
    assert d2 and d1
    np.testing.assert_array_equal(y2, y1)
    for a, b in zip(g2, g1):
        np.testing.assert_array_equal(a, b)


@needs_numba_direct
@pytest.mark.parametrize("case", DIRECT_CASES, ids=[c[-1] for c in DIRECT_CASES])
def test_compiled_kernel_gradient_gives_the_same_bits_on_one_or_two_threads(case, monkeypatch):
    """A thin layer's kernel gradient runs compiled, in parts of kernel blocks and row
    spans whose sums are added in a fixed order: the same bits whether one thread runs
    every part or two share them."""
    monkeypatch.setattr(conv, "_KGRAD_ONE_THREAD_TAPS", 0)  # every layer's parts shared
    seen = []  # the threads that called each kernel-gradient kernel
    for name in ("conv_kernel_grad", "conv_kernel_grad_5x4", "conv_kernel_grad_5x2"):
        spy, ran = on_both_threads(getattr(compiled.kernels(), name))
        monkeypatch.setattr(compiled.kernels(), name, spy)
        seen.append(ran)
    results = []
    for workers in (2, 1):
        monkeypatch.setattr(threads, "_WORKERS", workers)
        results.append(_conv_on(case, np.float32, True))
    ran_on = set().union(*seen)
    assert any(name.startswith(threads.POOL_PREFIX) for name in ran_on)
    (_, y2, g2), (_, y1, g1) = results
    for a, b in zip(g2, g1):
        np.testing.assert_array_equal(a, b)


@needs_numba_direct
def test_a_first_layers_kernel_gradient_runs_on_the_calling_thread(monkeypatch):
    """LeNet-5's first layer (one input channel, 25 taps) reads many numbers per
    multiply-add: its kernel gradient is one part, for the calling thread, with the same
    bits as when its blocks are parts two threads share; the second layer's are shared."""
    monkeypatch.setattr(threads, "_WORKERS", 2)
    first = ((8, 1, 28, 28), 6, (5, 5), (1, 1), (2, 2), (1, 1), True, "first")
    second = ((8, 6, 14, 14), 16, (5, 5), (1, 1), (0, 0), (1, 1), True, "second")

    def parts(case):
        x_shape, o, kernel, _, padding, _, _, _ = case
        x = np.ones(x_shape, np.float32)
        w = np.ones((o, x_shape[1]) + kernel, np.float32)
        out = tuple(n + 2 * p - k + 1 for n, k, p in zip(x_shape[2:], kernel, padding))
        y, state = conv.conv2d_forward(Scratch(), x, w, np.ones(o, np.float32), (1, 1),
                                       padding, (1, 1), out)
        gc = np.ones((o, y.size // o), np.float32)
        (_, keys), _ = conv._compiled_weight_grad(compiled.kernels(), state, gc)
        return len(keys)

    assert parts(first) == 1 and parts(second) > 1
    _, _, one = _conv_on(first, np.float32, True)
    monkeypatch.setattr(conv, "_KGRAD_ONE_THREAD_TAPS", 0)
    assert parts(first) > 1
    _, _, shared = _conv_on(first, np.float32, True)
    for a, b in zip(one, shared):
        np.testing.assert_array_equal(a, b)


@needs_numba_direct
def test_column_strides_keep_the_im2col_kernel_gradient(monkeypatch):
    """With a column stride a window row is no contiguous run: the kernel gradient stays
    on the im2col products (and still gives the reference's numbers)."""
    calls = []
    real = compiled.kernels().conv_kernel_grad
    monkeypatch.setattr(compiled.kernels(), "conv_kernel_grad",
                        lambda *args: calls.append(1) or real(*args))
    case = ((2, 2, 9, 9), 4, (3, 3), (1, 2), (1, 1), (1, 1), True, "column stride 2")
    _, _, (gx, gw, gb) = _conv_on(case, np.float64, True)
    _, _, (rx, rw, rb) = _conv_on(case, np.float64, False)
    assert not calls
    np.testing.assert_allclose(gw, rw, rtol=1e-12, atol=1e-12)


@needs_numba_direct
@pytest.mark.parametrize("case", DIRECT_CASES, ids=[c[-1] for c in DIRECT_CASES])
def test_a_direct_forward_whose_backward_has_no_compiled_kernels_still_gets_its_gradient(case):
    """The direct forward makes none of the im2col views; when the compiled kernels are gone
    by the backward (a kernel that failed meanwhile), the im2col kernel gradient makes them
    then: the same numbers as a run on the NumPy kernels throughout."""
    x_shape, o, kernel, stride, padding, dilation, bias, _ = case
    rng = np.random.default_rng(5)
    x = rng.normal(size=x_shape)
    w = rng.normal(size=(o, x_shape[1]) + kernel)
    b = rng.normal(size=o) if bias else np.zeros((0,))
    out_hw = tuple(_out_size(n, k, s, p, d) for n, k, s, p, d in
                   zip(x_shape[2:], kernel, stride, padding, dilation))
    g = rng.normal(size=(x_shape[0], o) + out_hw)
    runs = []
    for forward_compiled in (True, False):
        old = compiled.set_enabled(forward_compiled)
        try:
            scratch = Scratch()
            _, state = conv.conv2d_forward(scratch, x, w, b, stride, padding, dilation, out_hw)
            assert state.direct == forward_compiled
            compiled.set_enabled(False)
            runs.append([a.copy() for a in conv.conv2d_backward(scratch, state, g)])
        finally:
            compiled.set_enabled(old)
    for got, want in zip(*runs):
        np.testing.assert_array_equal(got, want)
