"""Convolution kernels: im2col products made span by span, paired output columns for thin
layers, compiled direct convolutions for thin layers, the kernel gradient, and the
transposed convolution.

:func:`conv2d_forward` picks the path (the compiled direct convolution of
:mod:`core.kernels._numba` for thin layers when numba is there, else paired columns or
plain im2col) and the per-thread block buffers; :func:`conv2d_backward` runs the kernel
gradient (compiled for thin layers with column stride 1) and the input gradient
(:mod:`core.kernels.col2im`) as one hand-out of parts. Every path gives the numbers of
the plain definition; which one runs depends on the shapes (and on numba being there)
only, never on the thread count, and the im2col products stay as reference and fallback.
"""

from __future__ import annotations

import numpy as np

from core.kernels import compiled
from core.kernels.col2im import col2im_matmul, col2im_shifted
from core.kernels.layout import batch_first, batch_last, col2im, im2col, pad_batch_last, windows
from core.kernels.matmul import matmul_wide_nt
from core.kernels.scratch import Scratch, thread_blocks
from core.kernels.threads import (
    COMPILED_PART_BYTES,
    can_defer,
    defer,
    part_spans,
    run_jobs,
    run_parts,
)


def _row_spans(win, rows_bytes):
    """Output-row spans of about a part's size of columns each (fixed by the shapes)."""
    return part_spans(win.shape[3], 1, rows_bytes)


def _fill_block(block, win, span, bias):
    """im2col of the output rows ``span`` into ``block``, plus a row of ones for the bias."""
    c, kh, kw, _, ow, bsz = win.shape
    k = c * kh * kw
    np.copyto(block[:k].reshape(c, kh, kw, span[1] - span[0], ow, bsz),
              win[:, :, :, span[0]:span[1]])
    if bias:
        block[k] = 1


def _im2col_matmul(w2, win, out, bias, spans, block_for, after=None):
    """``out = w2 @ im2col(win)``, made and multiplied output-row span by span.

    ``win`` is (C, kh, kw, OH, OW, B); ``block_for(span)`` gives the
    ``(C·kh·kw [+1], rows·OW·B)`` buffer a span's columns go to, with a last
    row of ones when ``bias``. A span's block is multiplied while it is in
    cache, and its product reads one compact matrix instead of a strided slice
    of a very wide one. Spans run in parallel; ``after(out4, r0, r1)``, if given,
    runs on each span's rows of the (O, OH, OW, B) output once they are made.
    """
    row = win.shape[4] * win.shape[5]
    out4 = out.reshape(out.shape[0], win.shape[3], win.shape[4], win.shape[5])

    def part(span):
        block = block_for(span)
        _fill_block(block, win, span, bias)
        # one product per span: the block is in cache and BLAS runs on this thread, so
        # cutting it into column blocks (as matmul_cols does) would only add calls
        np.matmul(w2, block, out=out[:, span[0] * row:span[1] * row])
        if after is not None:
            after(out4, span[0], span[1])

    run_parts(part, spans)


def _im2col_weight_grad(grad_for, win, bias, spans, block_for, block_first=True):
    """``gc @ im2col(win)ᵀ`` span by span: the kernel (and bias) gradient.

    Returns the job ``(part, parts)`` for :func:`run_jobs` and ``finish()``,
    which gives the gradient once the parts have run.

    ``grad_for(span)`` gives the span's rows of the output gradient ``gc`` as
    one compact (M, rows·OW·B) matrix: OpenBLAS multiplies that faster than a
    strided slice of the very wide ``gc``.

    Each span's columns are made again from the window view into a block that
    stays in cache: the forward pass keeps no copy of them, because writing
    the whole im2col matrix to memory and reading it back costs more than
    remaking it (LeNet-5: 10 MB for the first layer alone; the machine's memory
    bandwidth, shared by both cores, is what the image ops wait on). Partial
    products of the spans run in parallel and are added in span order, so the
    result does not depend on the thread count.

    ``block_first`` computes each partial product as ``block · gcᵀ`` and
    transposes the sum: OpenBLAS runs that faster for most shapes, but not for
    a thin layer's paired columns (12 by 31 rows), which pass ``False``.
    """
    partial = [None] * len(spans)

    def part(i):
        block = block_for(spans[i])
        _fill_block(block, win, spans[i], bias)
        # np.dot, not @: NumPy's matmul holds the GIL through a product with a
        # transposed operand, which kept the other thread from running any span at all
        if block_first:
            partial[i] = np.dot(block, grad_for(spans[i]).T)
        else:
            partial[i] = np.dot(grad_for(spans[i]), block.T)

    def finish():
        total = partial[0]
        for extra in partial[1:]:
            total = total + extra
        return total.T if block_first else total

    return (part, range(len(spans))), finish


# ------------------------------------------------- thin layers: output columns in pairs
#
# A layer with few output channels (LeNet-5's first: 6) multiplies a 6-row kernel
# matrix, and OpenBLAS's register tile of 16 rows then does mostly padding. Two
# neighbouring output columns j = 2q and 2q + 1 read kernel-wide windows that
# overlap in all but one column, so they are computed together: one window
# kw + 1 columns wide at column stride 2, against a kernel matrix of 2·O rows
# holding W twice, shifted by one column (the gap a zero). LeNet-5's first layer
# then has a 12×31 kernel against half as many, shorter columns, in the forward
# pass and the weight gradient alike: more of the tile does real work.

_FOLD_MAX_OUT = 8  # output channels up to which columns are paired (2·O ≤ the tile)
# The kernel gradient pairs columns for more channels: its product's other side is the
# block, and a paired block holds fewer numbers than two plain ones (a smaller im2col)
_KGRAD_FOLD_MAX_OUT = 16
# Im2col sums up to this many products per output (C·kh·kw) run as a direct convolution
# when numba is there: BLAS runs such short, thin products far from its peak, after a copy
_DIRECT_MAX_K = 160
# A compiled kernel gradient with fewer taps per output (C·kh·kw) than this and a gradient
# under this size runs its parts on one thread (same parts, same sums, same bits)
_KGRAD_ONE_THREAD_TAPS = 64
_KGRAD_ONE_THREAD_BYTES = 4 << 20


def _folds(o, kernel, stride, dilation, out_hw, most=None) -> bool:
    """Whether a convolution computes its output columns in pairs (see above): with
    up to ``most`` (default :data:`_FOLD_MAX_OUT`) output channels."""
    most = _FOLD_MAX_OUT if most is None else most
    return (o <= most and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1)
            and kernel[1] >= 3 and out_hw[1] % 2 == 0)


def _fold_kernel(w, b):
    """``(2·O, C·kh·(kw+1) [+1])``: row ``2o + s`` is kernel ``o`` shifted by ``s`` columns."""
    o, c, kh, kw = w.shape
    wf = np.zeros((o, 2, c, kh, kw + 1), dtype=w.dtype)
    wf[:, 0, :, :, :kw] = w
    wf[:, 1, :, :, 1:] = w
    wf = wf.reshape(2 * o, -1)
    if b is not None:
        wf = np.concatenate([wf, np.repeat(b, 2)[:, None]], axis=1)
    return wf


def _unfold_kernel_grad(gwf, w_shape, bias):
    """Kernel and bias gradients from the gradient of :func:`_fold_kernel`'s matrix."""
    o, c, kh, kw = w_shape
    kf = c * kh * (kw + 1)
    g5 = gwf[:, :kf].reshape(o, 2, c, kh, kw + 1)
    gw = g5[:, 0, :, :, :kw] + g5[:, 1, :, :, 1:]
    gb = gwf[:, kf].reshape(o, 2).sum(axis=1) if bias else None
    return gw, gb


def _im2col_matmul_folded(wf, win, y4, bias, spans, block_for):
    """:func:`_im2col_matmul` with output columns in pairs: ``win`` is the
    (C, kh, kw+1, OH, OW/2, B) window view, ``y4`` the (O, OH, OW, B) output."""
    o = wf.shape[0] // 2
    owh, bsz = win.shape[4], win.shape[5]

    def part(span):
        r0, r1 = span
        block = block_for(span)
        _fill_block(block, win, span, bias)
        pairs = np.dot(wf, block)  # rows (o, s): output columns 2q + s
        np.copyto(y4[:, r0:r1].reshape(o, r1 - r0, owh, 2, bsz),
                  pairs.reshape(o, 2, r1 - r0, owh, bsz).transpose(0, 2, 3, 1, 4))

    run_parts(part, spans)


# ------------------------------------------------------------------ conv2d

class ConvState:
    """What :func:`conv2d_forward` keeps for :func:`conv2d_backward`.

    Views of the forward's scratch buffers (the padded input through the window
    views): while a state is alive its buffers are not handed out again.
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)


def conv2d_forward(scratch, x, w, b, stride, padding, dilation, out_hw, after_rows=None):
    """Cross-correlation ``y[o] = b[o] + Σ w[o]·window(x)`` and the state its backward needs.

    ``scratch`` (a :class:`~core.kernels.scratch.Scratch`) lends the buffers; ``b``
    is empty for no bias. With a bias, one extra row of ones in the im2col block
    makes the product add it (and the kernel-gradient product yield its gradient).

    ``after_rows`` ``(unit, fn)``: each part calls ``fn(y4, r0, r1)`` on the output rows
    it just made (spans are whole multiples of ``unit`` rows), while they are in its
    core's cache; ``state.rows_done`` says whether that happened (not for a thin layer
    without the compiled kernels, whose columns are paired).

    Shape:
        x (B, C, H, W), w (O, C, kh, kw), b (O,) or (0,) -> y (B, O, OH, OW), an NCHW
        view of batch-last memory
    """
    oh, ow = out_hw
    o, c, kh, kw = w.shape
    bsz = x.shape[0]
    k = c * kh * kw
    ph, pw = padding
    xp = pad_batch_last(batch_last(x), ph, pw, scratch=scratch)
    bias = b.size > 0
    w2 = w.reshape(o, k)
    if bias:
        w2 = np.concatenate([w2, b[:, None]], axis=1)
    y = scratch.get("out", (o, oh * ow * bsz), x.dtype)
    fold = _folds(o, (kh, kw), stride, dilation, out_hw)
    direct = _direct_forward(xp, w, b, y.reshape(o, oh, ow, bsz), stride, dilation, after_rows)
    rows_done = direct and after_rows is not None
    # the kernel gradient may pair the columns of a layer whose forward does not
    kfold = fold or _folds(o, (kh, kw), stride, dilation, out_hw, _KGRAD_FOLD_MAX_OUT)
    # the im2col kernel gradient's window view, spans and blocks, when this forward made them;
    # after a direct forward the backward makes them only if the compiled gradient fails
    kviews = None
    if fold and not direct:
        kviews = _paired(scratch, xp, (kh, kw), out_hw, bias)
        win, spans, block_for = kviews
        _im2col_matmul_folded(_fold_kernel(w, b if bias else None), win,
                              y.reshape(o, oh, ow, bsz), bias, spans, block_for)
    elif not direct:
        win, spans, block_for = _plain(scratch, xp, (kh, kw), stride, dilation, out_hw, bias)
        if not kfold:
            kviews = (win, spans, block_for)
        fwd_spans, after = spans, None
        if after_rows is not None:
            # the forward's spans may differ from the kernel gradient's (its sums follow
            # them): every output is one product, however the rows are cut
            unit, after = after_rows
            fwd_spans = part_spans(oh, unit, (k + bias) * ow * bsz * x.itemsize)
            rows_done = True
        _im2col_matmul(w2, win, y, bias, fwd_spans, block_for, after)
    state = ConvState(w2=w2[:, :k], fold=fold, kfold=kfold, direct=direct, xp=xp,
                      kviews=kviews, xp_shape=xp.shape, x_shape=x.shape,
                      out_hw=out_hw, w_shape=w.shape, bias=bias, stride=stride,
                      padding=padding, dilation=dilation, rows_done=rows_done)
    return batch_first(y.reshape(o, oh, ow, bsz)), state


@compiled.warm_up_with
def _warm_direct() -> None:
    """Compile (or read from the disk cache) the direct convolutions of the thin layers the
    presets have (5×5 and 3×3 kernels, with and without padding and bias), forward and
    kernel gradient, for float32 and float64, through the ordinary calls."""
    for dtype in (np.float32, np.float64):
        for c, k, pad, bias in ((1, 5, 2, True), (6, 5, 0, True), (1, 3, 0, True),
                                (1, 3, 1, False)):
            x = np.zeros((2, c, 8, 8), dtype)
            # six kernels: a block of four and one of two (the kernel gradient's widths)
            w = np.zeros((6, c, k, k), dtype)
            b = np.zeros(6 if bias else 0, dtype)
            out = 8 + 2 * pad - k + 1
            y, state = conv2d_forward(Scratch(), x, w, b, (1, 1), (pad, pad), (1, 1),
                                      (out, out))
            conv2d_backward(Scratch(), state, np.zeros(y.shape, dtype))


def _direct_forward(xp, w, b, y4, stride, dilation, after_rows=None) -> bool:
    """``y4 = conv(xp)`` by the compiled direct convolution, row span by row span, when
    the layer is thin enough for it (see :data:`_DIRECT_MAX_K`); ``False`` if it did not run.

    ``xp`` is the C-contiguous padded (C, H', W', B) input, ``y4`` the (O, OH, OW, B) output;
    ``after_rows`` as in :func:`conv2d_forward`.
    """
    o, c, kh, kw = w.shape
    if c * kh * kw > _DIRECT_MAX_K:
        return False
    nb = compiled.kernels()
    if nb is None:
        return False
    unit, after = after_rows if after_rows is not None else (1, None)
    try:
        rows = nb.conv_rows(kh, kw)
        wc = np.ascontiguousarray(w, dtype=y4.dtype)
        bc = np.ascontiguousarray(b, dtype=y4.dtype)
        (sh, sw), (dh, dw) = stride, dilation

        def part(span):
            rows(xp, wc, bc, y4, span[0], span[1], sh, sw, dh, dw)
            if after is not None:
                after(y4, span[0], span[1])

        # a span's cost is its rows' outputs times the taps each one sums
        row_work = y4[:, 0].nbytes * max(1, c * kh * kw // 16)
        run_parts(part, part_spans(y4.shape[1], unit, row_work, COMPILED_PART_BYTES))
    except Exception as exc:  # noqa: BLE001 - a kernel that does not compile
        compiled.failed("conv2d", exc)
        return False
    return True


def _plain(scratch, xp, kernel, stride, dilation, out_hw, bias):
    """Window view, row spans and block buffers for plain im2col columns."""
    k = xp.shape[0] * kernel[0] * kernel[1] + bias
    row = out_hw[1] * xp.shape[3]
    win = windows(xp, kernel, stride, dilation, out_hw)
    return win, _row_spans(win, k * row * xp.itemsize), thread_blocks(scratch, k, row, xp.dtype)


def _paired(scratch, xp, kernel, out_hw, bias, tag="cols"):
    """Window view, row spans and block buffers for output columns taken in pairs."""
    kh, kw = kernel
    oh, ow = out_hw
    c, bsz = xp.shape[0], xp.shape[3]
    win = windows(xp, (kh, kw + 1), (1, 2), (1, 1), (oh, ow // 2))
    kb = c * kh * (kw + 1) + bias
    spans = _row_spans(win, kb * (ow // 2) * bsz * xp.itemsize)
    return win, spans, thread_blocks(scratch, kb, (ow // 2) * bsz, xp.dtype, tag=tag)


def conv2d_backward(scratch, state, g, need_x=True, flip=False):
    """Input, kernel and bias gradients of :func:`conv2d_forward` for the output gradient ``g``.

    ``need_x=False`` skips the input gradient (``None``); the bias gradient is
    empty for no bias. The kernel gradient is returned as computed (maybe a view),
    rows and columns reversed with ``flip`` (the forward ran a flipped kernel: a true
    convolution); a kernel gradient left to a helper is flipped once it is made.

    Shape:
        g (B, O, OH, OW) -> gx (B, C, H, W), gw (O, C, kh, kw), gb (O,) or (0,)
    """
    o, c, kh, kw = state.w_shape
    gc = np.ascontiguousarray(batch_last(g)).reshape(o, -1)
    nb = compiled.kernels() if _direct_kernel_grad(state) else None
    if nb is not None:
        try:
            return _conv2d_backward(scratch, state, g, gc, need_x, nb, flip)
        except Exception as exc:  # noqa: BLE001 - a kernel that does not compile
            compiled.failed("conv2d kernel gradient", exc)
    return _conv2d_backward(scratch, state, g, gc, need_x, None, flip)


def _direct_kernel_grad(state) -> bool:
    """Whether the kernel gradient may run compiled: a thin layer (as for the direct
    forward) with column stride 1, whose window rows are contiguous runs."""
    o, c, kh, kw = state.w_shape
    return c * kh * kw <= _DIRECT_MAX_K and state.stride[1] == 1


def _conv2d_backward(scratch, state, g, gc, need_x, nb, flip=False):
    """:func:`conv2d_backward` with the compiled kernel gradient of ``nb`` or, for
    ``None``, the im2col products."""
    o, c, kh, kw = state.w_shape
    k = c * kh * kw
    if nb is not None:
        weight_job, weight_grad = _compiled_weight_grad(nb, state, gc)
    else:
        kwin, kspans, kblock_for = state.kviews or _kernel_grad_views(scratch, state)
        weight_job, weight_grad = _im2col_weight_grad(
            _grad_rows(state, gc, g.shape[0]), kwin, state.bias, kspans, kblock_for,
            block_first=not state.fold)

    def grads():
        if nb is not None:
            gw, gb = weight_grad()
        elif state.kfold:
            gw, gb = _unfold_kernel_grad(weight_grad(), state.w_shape, state.bias)
        else:
            gwb = weight_grad()
            gw = gwb[:, :k].reshape(state.w_shape)
            gb = gwb[:, k].copy() if state.bias else None
        if flip:
            gw = gw[:, :, ::-1, ::-1]
        return gw, (np.zeros((0,), dtype=g.dtype) if gb is None else gb)

    if not need_x:
        run_jobs(weight_job)
        return (None, *grads())
    gxp = scratch.get("grad", state.xp_shape, g.dtype)
    ph, pw = state.padding
    h, w = state.x_shape[2:]
    gx = batch_first(gxp[:, ph:ph + h, pw:pw + w, :])
    if can_defer():
        # no later layer reads the kernel gradient: it runs beside the layers below, and
        # the arrays returned are filled in when the run's deferred work is finished
        dtype = np.result_type(gc.dtype, state.xp.dtype)
        gw_out = np.empty(state.w_shape, dtype)
        gb_out = np.empty((o if state.bias else 0,), dtype)

        def finish():
            gw, gb = grads()
            gw_out[...] = gw
            gb_out[...] = gb

        defer(*weight_job, finish)
        run_jobs(*_with_input_grad_jobs(scratch, state, gc, gxp, None))
        return gx, gw_out, gb_out
    # the input gradient's parts share one hand-out with the kernel gradient's
    run_jobs(*_with_input_grad_jobs(scratch, state, gc, gxp, weight_job))
    return (gx, *grads())


def _kernel_grad_views(scratch, state):
    """The window view, row spans and block buffers of the im2col kernel gradient, as
    :func:`conv2d_forward` makes them for a layer whose forward is no direct convolution."""
    kernel = state.w_shape[2:]
    if state.kfold:
        return _paired(scratch, state.xp, kernel, state.out_hw, state.bias,
                       tag="cols" if state.fold else "kcols")
    return _plain(scratch, state.xp, kernel, state.stride, state.dilation, state.out_hw,
                  state.bias)


def _compiled_weight_grad(nb, state, gc):
    """The compiled kernel gradient's job ``(part, parts)`` and ``finish()`` giving ``(gw, gb)``.

    A part sums a block of up to four kernels over a span of output rows; the spans'
    partial sums are added in span order, so parts and order are fixed by the shapes.
    """
    o, c, kh, kw = state.w_shape
    oh, ow = state.out_hw
    g4 = gc.reshape(o, oh, ow, -1)
    sh = state.stride[0]
    dh, dw = state.dilation
    blocks = [(o0, min(o, o0 + 4)) for o0 in range(0, o, 4)]
    # about eight parts, so two threads balance even with one or two kernel blocks
    per = max(1, -(-oh * len(blocks) // 8))
    spans = [(r, min(oh, r + per)) for r in range(0, oh, per)]
    partial = {(bi, si): np.empty((o1 - o0, c, kh, kw), dtype=gc.dtype)
               for bi, (o0, o1) in enumerate(blocks) for si in range(len(spans))}

    def part(key):
        (o0, o1), (r0, r1) = blocks[key[0]], spans[key[1]]
        if kw == 5:  # the presets' kernel width: its taps' sums stay in registers
            fn = nb.conv_kernel_grad_5x4 if o1 - o0 > 2 else nb.conv_kernel_grad_5x2
        else:
            fn = nb.conv_kernel_grad
        fn(g4, state.xp, partial[key], o0, o1, r0, r1, sh, dh, dw)

    def finish():
        gw = np.empty(state.w_shape, dtype=gc.dtype)
        for bi, (o0, o1) in enumerate(blocks):
            total = partial[bi, 0]
            for si in range(1, len(spans)):
                total = total + partial[bi, si]
            gw[o0:o1] = total
        return gw, (gc.sum(axis=1) if state.bias else None)

    keys = list(partial)
    if c * kh * kw < _KGRAD_ONE_THREAD_TAPS and gc.nbytes < _KGRAD_ONE_THREAD_BYTES:
        # few multiply-adds per number read (a first layer): a second thread would only wait
        # on memory, and on the cache of the thread that just made the gradient
        return (lambda _: [part(key) for key in keys], [None]), finish
    return (part, keys), finish


def _grad_rows(state, gc, bsz):
    """``grad_for(span)``: a span's rows of the output gradient as one compact matrix."""
    o = gc.shape[0]
    oh, ow = state.out_hw
    if state.kfold:
        g4 = gc.reshape(o, oh, ow, -1)

        def grad_for(span):  # rows (o, s): the gradient of output columns 2q + s
            r0, r1 = span
            pairs = g4[:, r0:r1].reshape(o, r1 - r0, ow // 2, 2, g4.shape[3])
            return np.ascontiguousarray(pairs.transpose(0, 3, 1, 2, 4)).reshape(2 * o, -1)

        return grad_for
    row = ow * bsz  # numbers per output row: OW·B

    def grad_for(span):
        return np.ascontiguousarray(gc[:, span[0] * row:span[1] * row])

    return grad_for


def _with_input_grad_jobs(scratch, state, gc, gxp, weight_job):
    """The jobs of the kernel gradient (``None``: none) and of the input gradient into ``gxp``,
    in hand-out order."""
    o, c, kh, kw = state.w_shape
    if tuple(state.stride) == (1, 1):
        wp, bsz = state.xp_shape[2], state.xp_shape[3]
        n = state.out_hw[0] * wp * bsz
        shifted_for = thread_blocks(scratch, o * kw, 1, gc.dtype, tag="shifted")
        products, adds = col2im_shifted(
            state.w2.reshape(state.w_shape), gc, gxp, state.dilation, state.out_hw,
            scratch.get("row_sums", (c * kh, n), gc.dtype),
            lambda cols: shifted_for((0, cols)))
        # the products first, so that the adds that need them wait the least
        jobs = [products, weight_job, (*adds, 0)]
    else:
        slabs = scratch.get("slabs", (c * kh * kw, gc.shape[1]), gc.dtype)
        jobs = [weight_job, col2im_matmul(state.w2, gc, gxp, (kh, kw), state.stride,
                                          state.dilation, state.out_hw, slabs)]
    return [job for job in jobs if job is not None]


# -------------------------------------------------------- conv_transpose2d

def conv_transpose2d_forward(x, w, b, kernel, stride, padding, dilation, output_padding,
                             out_hw):
    """Transposed convolution: every input pixel scatters ``w`` scaled by its value (col2im).

    Shape:
        x (B, C, H, W), w (C, O, kh, kw), b (O,) or (0,) -> y (B, O, OH, OW)
    """
    c, o = w.shape[:2]
    bsz, _, h, wd = x.shape
    (ph, pw), (sh, sw), (dh, dw) = padding, stride, dilation
    kh, kw = kernel
    oh, ow = out_hw
    # the uncropped result: every tap of every input pixel lands inside it
    full = (o, (h - 1) * sh + dh * (kh - 1) + 1 + output_padding[0],
            (wd - 1) * sw + dw * (kw - 1) + 1 + output_padding[1], bsz)
    xc = np.ascontiguousarray(batch_last(x)).reshape(c, -1)
    w2 = w.reshape(c, -1)
    cols = w2.T @ xc
    yp = col2im(cols, full, kernel, stride, dilation, (h, wd), x.dtype)
    y = yp[:, ph:ph + oh, pw:pw + ow, :]
    if b.size:
        y = y + b[:, None, None, None]
    state = ConvState(xc=xc, w2=w2, full=full, in_hw=(h, wd), w_shape=w.shape, out_hw=out_hw,
                      bias=b.size > 0, kernel=kernel, stride=stride, padding=padding,
                      dilation=dilation)
    return batch_first(y), state


def conv_transpose2d_backward(state, g, need_x=True):
    """Input, kernel and bias gradients of :func:`conv_transpose2d_forward` (im2col of ``g``).

    Shape:
        g (B, O, OH, OW) -> gx (B, C, H, W), gw (C, O, kh, kw), gb (O,) or (0,)
    """
    ph, pw = state.padding
    oh, ow = state.out_hw
    gl = batch_last(g)
    gp = np.zeros(state.full, dtype=g.dtype)
    gp[:, ph:ph + oh, pw:pw + ow, :] = gl
    gcols = im2col(gp, state.kernel, state.stride, state.dilation, state.in_hw)
    c = state.w_shape[0]
    gx = None
    if need_x:
        gx = (state.w2 @ gcols).reshape(c, state.in_hw[0], state.in_hw[1], -1)
        gx = batch_first(gx)
    gw = matmul_wide_nt(state.xc, gcols).reshape(state.w_shape)
    gb = gl.sum(axis=(1, 2, 3)) if state.bias else np.zeros((0,), dtype=g.dtype)
    return gx, gw, gb
