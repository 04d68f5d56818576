"""CNN layers: dense, convolutions, pooling, unpooling, batch norm and dropout.

Tensors are NCHW (batch first) at every port. Inside the image ops the work is
done on a *channels-first, batch-last* view ``(C, H, W, B)``: an ``im2col``
copy then moves runs of ``W·B`` contiguous numbers instead of single rows of
``W``, which makes it several times cheaper. An op returns its result as an
NCHW *view* of batch-last memory; the next image op asks for the batch-last
view again (:func:`_batch_last`) and gets it without a copy. Elementwise ops in
between (ReLU) keep the memory order of their input, so a chain
conv → ReLU → pool → conv never transposes data.

Speed without special cases: large products are cut into blocks that OpenBLAS
runs on the calling thread, the memory-bound work of an op is cut into
cache-sized parts that a small thread pool shares (see "parallel, blocked
work" below), and the big per-batch buffers are reused once nothing refers to
them (:class:`Scratch`). Results do not depend on the thread count or the load.

Example
-------
>>> conv = Conv2d(out_channels=96, kernel=11, stride=4)  # AlexNet's first layer
>>> conv.infer_shapes((None, 3, 227, 227))
((None, 96, 55, 55),)
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.lib.stride_tricks import as_strided

from core.errors import ShapeError
from core.init import INITIALIZERS
from core.ops.base import (
    Context,
    Op,
    Param,
    Sample,
    WeightSpec,
    fmt_shape,
    numel,
    register_op,
)

# --------------------------------------------------------------------- helpers

_probe = {"a": np.empty(1)}
_UNSHARED = sys.getrefcount(_probe["a"])  # references of a cached array nobody else holds
del _probe


class Scratch:
    """Big temporaries an op reuses from one batch to the next.

    Allocating tens of megabytes per batch costs page faults (the allocator
    hands large blocks back to the system). A buffer is handed out again only
    when nothing else refers to it — no saved context of an earlier run (a
    stepper's undo history, say), no array viewing it, no caller keeping an
    output — so reuse can never change a number someone still holds.
    """

    def __init__(self):
        self._arrays: dict = {}
        self._lock = threading.Lock()

    def get(self, tag: str, shape: tuple, dtype) -> np.ndarray:
        """An uninitialized C-contiguous array, reused when it is free."""
        key = (tag, tuple(shape), np.dtype(dtype).str)
        with self._lock:
            if key in self._arrays and sys.getrefcount(self._arrays[key]) == _UNSHARED:
                return self._arrays[key]
            arr = np.empty(shape, dtype=dtype)
            self._arrays[key] = arr
            return arr


def _scratch(op) -> Scratch:
    try:
        return op._scratch
    except AttributeError:
        op._scratch = Scratch()
        return op._scratch


_INIT = Param("init", "choice", "he_uniform", choices=INITIALIZERS,
              doc="initializer of the kernel (biases always start at zero)")
_BIAS = Param("bias", "bool", True, doc="add a learned bias per output")


def _kernel(default=(3, 3)):
    return Param("kernel", "ints", default, low=1, high=64, doc="window height, width")


def _stride(default=(1, 1)):
    return Param("stride", "ints", default, low=1, high=32, doc="step between windows (rows, cols)")


def _padding(default=(0, 0)):
    return Param("padding", "ints", default, low=0, high=32,
                 doc="zeros added on each side (rows, cols)")


_DILATION = Param("dilation", "ints", (1, 1), low=1, high=16,
                  doc="spacing between kernel taps (rows, cols); 1 = dense kernel")


def conv_out_size(n, k, s, p, d=1):
    """Output length of a sliding window: ⌊(n + 2p − d(k−1) − 1)/s⌋ + 1.

    ``None`` (unknown) stays ``None``; ``None`` is also returned when the window
    does not fit, for the caller to report with both axes.
    """
    if n is None:
        return None
    span = d * (k - 1) + 1
    if n + 2 * p < span:
        return None  # reported by the caller, which knows both axes
    return (n + 2 * p - span) // s + 1


def _window_out(op_name, x_hw, kernel, stride, padding, dilation=(1, 1), what="kernel"):
    """Both output sizes of a 2-D window op, with a readable error when it does not fit."""
    outs = [conv_out_size(n, k, s, p, d) for n, k, s, p, d in
            zip(x_hw, kernel, stride, padding, dilation)]
    for n, o in zip(x_hw, outs):
        if n is not None and o is None:
            h, w = ("?" if v is None else v for v in x_hw)
            raise ShapeError(f"{op_name}: {what} {kernel[0]}×{kernel[1]} with dilation "
                             f"{dilation[0] if dilation[0] == dilation[1] else dilation} does not "
                             f"fit a {h}×{w} input after padding {padding[0]}×{padding[1]}")
    return tuple(outs)


def _need_4d(op_name, x):
    if len(x) != 4:
        raise ShapeError(f"{op_name} expects images (B, C, H, W); got {fmt_shape(x)}")


def _batch_last(x):
    """``(B, C, H, W)`` -> ``(C, H, W, B)`` view; free when memory is already batch-last."""
    return x.transpose(1, 2, 3, 0)


def _batch_first(x):
    """``(C, H, W, B)`` -> the ``(B, C, H, W)`` view the ports carry."""
    return x.transpose(3, 0, 1, 2)


def _pad_batch_last(xc, ph, pw, fill=0.0, scratch=None):
    """A C-contiguous ``(C, H + 2ph, W + 2pw, B)`` copy of ``xc`` with a constant border.

    Without padding an already batch-last input is returned as it is; ``scratch``
    (a :class:`Scratch`) lends the buffer.
    """
    c, h, w, b = xc.shape
    if ph == 0 and pw == 0 and xc.flags.c_contiguous:
        return xc
    shape = (c, h + 2 * ph, w + 2 * pw, b)
    xp = (np.empty(shape, dtype=xc.dtype) if scratch is None
          else scratch.get("padded", shape, xc.dtype))
    if ph == 0 and pw == 0:
        np.copyto(xp, xc)
        return xp
    # only the border is filled: the inside is overwritten right away
    xp[:, :ph] = fill
    xp[:, h + ph:] = fill
    xp[:, ph:h + ph, :pw] = fill
    xp[:, ph:h + ph, w + pw:] = fill
    xp[:, ph:h + ph, pw:w + pw] = xc
    return xp


def _windows(xp, kernel, stride, dilation, out_hw):
    """Read-only ``(C, kh, kw, OH, OW, B)`` view of every window of a padded batch-last array."""
    sc, sh, sw, sb = xp.strides
    kh, kw = kernel
    return as_strided(xp, (xp.shape[0], kh, kw, out_hw[0], out_hw[1], xp.shape[3]),
                      (sc, sh * dilation[0], sw * dilation[1], sh * stride[0], sw * stride[1], sb),
                      writeable=False)


def _tap(xp, ki, kj, stride, dilation, out_hw):
    """The ``(C, OH, OW, B)`` slice of a padded array that kernel tap (ki, kj) reads."""
    r0, c0 = ki * dilation[0], kj * dilation[1]
    return xp[:, r0:r0 + stride[0] * (out_hw[0] - 1) + 1:stride[0],
              c0:c0 + stride[1] * (out_hw[1] - 1) + 1:stride[1], :]


def _im2col(xp, kernel, stride, dilation, out_hw):
    """``(C·kh·kw, OH·OW·B)`` matrix of windows; rows follow the kernel's (C, kh, kw) order."""
    win = _windows(xp, kernel, stride, dilation, out_hw)
    return win.reshape(-1, out_hw[0] * out_hw[1] * xp.shape[3])


def _col2im(cols, padded_shape, kernel, stride, dilation, out_hw, dtype):
    """Adjoint of :func:`_im2col`: sum each window column back into a padded array."""
    c = padded_shape[0]
    b = padded_shape[3]
    cols = cols.reshape(c, kernel[0], kernel[1], out_hw[0], out_hw[1], b)
    xp = np.zeros(padded_shape, dtype=dtype)
    for ki in range(kernel[0]):
        for kj in range(kernel[1]):
            view = _tap(xp, ki, kj, stride, dilation, out_hw)
            view += cols[:, ki, kj]
    return xp


# ------------------------------------------------------- parallel, blocked work
#
# Two facts about this kind of machine shape the code below. (1) OpenBLAS runs a
# product on several threads once M·N·K passes about 10⁶. A very skinny product
# (a few rows or a short inner dimension against ~10⁵ columns) then runs 2–3×
# slower than the same product cut into column blocks that stay under that size
# and fit in cache; and when another process holds a core, every threaded call
# waits a scheduler tick (~4 ms, measured: a 0.05 ms product took 4 ms) for its
# helper thread. (2) NumPy releases the GIL inside copies,
# ufunc loops and BLAS calls, so plain Python threads can share the memory-bound
# work (im2col, col2im, pooling) that OpenBLAS would not parallelize anyway.
# So large image ops cut their work into parts fixed by the shapes alone —
# never by the number of threads, so results are bit-identical on any machine —
# and hand the parts to a small thread pool.

# OpenBLAS (0.3.31, as NumPy ships it) computes a product of up to 10⁶ multiply-adds on
# the calling thread with its small-matrix kernels — measured: 966,400 stays on one
# thread, 1,014,720 uses two — provided the right operand is row-major; a transposed
# view there takes the general path, threaded above 4·65536. Every blocked product
# below keeps its right operand row-major.
_SERIAL_MNK = 900_000
_SERIAL_MNK_T = 4 * 65536  # the same with a transposed right operand
_SMALL_MNK = 1 << 24       # products below this take about a millisecond on one core
_PAIR_MNK = 1 << 21        # a dense backward this large computes its two products in parallel
# parts big enough that few hand-offs between the threads are needed (each costs a wake-up
# of the other core) and small enough to balance them: 1 MB beat 512 KB by ~2 % per
# LeNet-5 step in three A/B runs, 2 MB was no better
_PART_BYTES = 1 << 20
# Work smaller than this is done in one part on the calling thread: waking a helper
# thread costs more than it saves (LeNet-5's second pool: 0.64 ms alone, 1.2 ms shared)
_MIN_SPLIT_BYTES = 1 << 21
_WORKERS = max(1, min(4, os.cpu_count() or 1))
_pool = None
_pool_lock = threading.Lock()
_POOL_PREFIX = "layers-pool"
_in_part = threading.local()


class _Parts:
    """Parts handed out one at a time to whichever thread asks next.

    The calling thread starts on them at once and only ever waits for parts a
    worker has already taken; if no worker gets a core (another process holds
    it), the caller simply does them all — no waiting for a thread to wake up.
    """

    def __init__(self, fn, parts):
        self.fn, self.parts = fn, parts
        self.next = itertools.count()   # next() is atomic under the GIL
        self.lock = threading.Lock()
        self.done = 0
        self.all_done = threading.Event()
        self.error = None

    def drain(self):
        was_active = getattr(_in_part, "active", False)
        _in_part.active = True
        try:
            while True:
                i = next(self.next)
                if i >= len(self.parts):
                    return
                try:
                    self.fn(self.parts[i])
                except BaseException as exc:  # re-raised in the calling thread
                    self.error = self.error or exc
                finally:
                    with self.lock:
                        self.done += 1
                        if self.done == len(self.parts):
                            self.all_done.set()
        finally:
            _in_part.active = was_active


_load = {"checked": -1.0, "busy": False}


def _cores_busy() -> bool:
    """Whether other processes keep the cores busy (load average above the core count).

    A worker thread that is preempted in the middle of a part makes the caller
    wait for it; when every core is already taken, the calling thread is better
    off alone. Checked at most every quarter second; it decides only which
    thread runs a part, never what the part computes.
    """
    now = time.monotonic()
    if now - _load["checked"] > 0.25:
        _load["checked"] = now
        try:
            _load["busy"] = os.getloadavg()[0] > (os.cpu_count() or 1) + 0.5
        except OSError:  # no load average on this system
            _load["busy"] = False
    return _load["busy"]


def _run_parts(fn, parts):
    """Call ``fn(part)`` for every part, shared with the worker threads; wait for all.

    A part that itself asks for parallel work runs it inline, so workers never
    wait on each other. Which thread runs a part never changes its result.
    """
    global _pool
    parts = list(parts)
    if (_WORKERS == 1 or len(parts) < 2 or getattr(_in_part, "active", False)
            or _cores_busy()):
        for part in parts:
            fn(part)
        return
    if _pool is None or _pool[0] != os.getpid():  # a forked child needs threads of its own
        with _pool_lock:
            if _pool is None or _pool[0] != os.getpid():
                _pool = (os.getpid(),
                         ThreadPoolExecutor(_WORKERS - 1, thread_name_prefix=_POOL_PREFIX))
    work = _Parts(fn, parts)
    for _ in range(min(_WORKERS, len(parts)) - 1):
        _pool[1].submit(work.drain)
    work.drain()
    work.all_done.wait()
    if work.error is not None:
        raise work.error


_blas = {"controller": None, "tried": False}


def _blas_controller():
    """threadpoolctl's handle on NumPy's BLAS (``None`` when it is not installed)."""
    if not _blas["tried"]:
        _blas["tried"] = True
        try:
            from threadpoolctl import ThreadpoolController  # noqa: PLC0415 - optional
            _blas["controller"] = ThreadpoolController().select(user_api="blas")
        except Exception:  # noqa: BLE001 - no threadpoolctl, or no BLAS it knows
            _blas["controller"] = None
    return _blas["controller"]


def blas_threads():
    """How many threads NumPy's BLAS uses (``None`` when threadpoolctl cannot tell)."""
    ctl = _blas_controller()
    if ctl is None or not ctl.lib_controllers:
        return None
    return max(lib.num_threads for lib in ctl.lib_controllers)


def layer_threads() -> int:
    """Threads that share the layer ops' work (the caller and its helpers)."""
    return _WORKERS


@contextlib.contextmanager
def own_threads():
    """Hold NumPy's BLAS to the calling thread while a batch runs.

    ``import core`` before NumPy already does this for the whole process; when
    NumPy was loaded first with a threaded BLAS, this limits it per batch.
    OpenBLAS's idle threads spin for a while after every threaded product and
    take the cores the layer pool's threads need (LeNet-5: 27–29 ms per batch
    with both, 19–23 ms with BLAS on one thread), and products big enough to
    want two threads are split by :func:`matmul_small` instead.
    """
    # also with one layer thread: a BLAS on two threads may round some products
    # differently, and the numbers must not depend on how many threads share the work
    ctl = _blas_controller()
    if ctl is None or all(lib.num_threads == 1 for lib in ctl.lib_controllers):
        yield
        return
    with ctl.limit(limits=1):
        yield


def _spans(n, unit, bytes_per_item):
    """Split ``range(n)`` into ``(start, stop)`` spans of about :data:`_PART_BYTES`.

    Spans are whole multiples of ``unit`` items (a GEMM block, say), except the last.
    """
    if n * bytes_per_item < _MIN_SPLIT_BYTES:
        return [(0, n)]
    per = unit * max(1, _PART_BYTES // max(1, bytes_per_item * unit))
    return [(i, min(n, i + per)) for i in range(0, n, per)]


def _even_spans(n, bytes_per_item, max_part=4 << 20):
    """Split ``range(n)`` into a multiple of the thread count of near-equal spans.

    For work whose result does not depend on how it is cut (elementwise work
    per channel, no sums across spans): one span per thread, or more of them
    where a span would pass ``max_part`` bytes. Every part then costs one round
    of NumPy calls, and the threads finish together (LeNet-5's first pool, six
    channels: three parts left one thread idle for a third of the time).
    """
    total = n * bytes_per_item
    if n < 2 or total < _MIN_SPLIT_BYTES:
        return [(0, n)]
    k = min(n, _WORKERS * max(1, -(-total // (_WORKERS * max_part))))
    return [(n * i // k, n * (i + 1) // k) for i in range(k)]


def _block(n, mk, limit=None):
    """Column block for a product with ``m·k = mk``: single-threaded in OpenBLAS, ≥ 16 wide."""
    limit = _SERIAL_MNK if limit is None else limit
    return int(min(n, max(16, limit // max(1, mk))))


def _matmul_cols(a, b, out):
    """``out[:] = a @ b`` for a wide ``b`` (K, n), block by block (views welcome)."""
    m, k = a.shape
    n = b.shape[1]
    blk = _block(n, m * k)
    nb = n // blk
    if nb:
        cut = nb * blk
        np.matmul(a, b[:, :cut].reshape(k, nb, blk).transpose(1, 0, 2),
                  out=out[:, :cut].reshape(m, nb, blk).transpose(1, 0, 2))
    if nb * blk < n:
        out[:, nb * blk:] = a @ b[:, nb * blk:]


def _matmul_nt_cols(g, b):
    """``g @ b.T`` summed over the wide axis of ``g`` (M, n) and ``b`` (K, n), block by block."""
    m, n = g.shape
    k = b.shape[0]
    blk = _block(n, m * k, _SERIAL_MNK_T)
    if blk >= 512:
        # wide enough blocks even under the general path's limit: no copies needed
        nb = n // blk
        cut = nb * blk
        total = np.matmul(g[:, :cut].reshape(m, nb, blk).transpose(1, 0, 2),
                          b[:, :cut].reshape(k, nb, blk).transpose(1, 2, 0)).sum(axis=0)
    else:
        # b-block · (g-block)ᵀ with g transposed into a row-major copy: wider blocks on
        # the small-matrix path (see _SERIAL_MNK)
        blk = _block(n, m * k)
        nb = n // blk
        cut = nb * blk
        gt = np.ascontiguousarray(g[:, :cut].T)
        total = np.matmul(b[:, :cut].reshape(k, nb, blk).transpose(1, 0, 2),
                          gt.reshape(nb, blk, m)).sum(axis=0).T
    if cut < n:
        total = total + (b[:, cut:] @ np.ascontiguousarray(g[:, cut:].T)).T
    return total


def matmul_wide_nt(g, b):
    """``g @ b.T`` for ``g`` (M, N) and ``b`` (K, N) both very wide: a long reduction.

    Partial sums over fixed column spans are added in a fixed order, so the
    result does not depend on the thread count.
    """
    m, n = g.shape
    k = b.shape[0]
    blk = _block(n, m * k, _SERIAL_MNK_T)
    spans = _spans(n, blk if blk >= 512 else _block(n, m * k), (m + k) * b.itemsize)
    partial = [None] * len(spans)

    def part(i):
        partial[i] = _matmul_nt_cols(g[:, spans[i][0]:spans[i][1]],
                                     b[:, spans[i][0]:spans[i][1]])

    _run_parts(part, range(len(spans)))
    total = partial[0]
    for extra in partial[1:]:
        total = total + extra
    return total


def matmul_small(a, b):
    """``a @ b`` for 2-D operands (dense layers): one BLAS call, or parts for the layer pool.

    During a batch NumPy's BLAS runs on the calling thread (:func:`own_threads`),
    so a product up to :data:`_SMALL_MNK` multiply-adds is one plain call (cutting
    it into pieces, as when OpenBLAS threaded it, now only cost time: 30 µs of
    LeNet's 120 µs dense products); larger ones are shared by the layer pool.
    """
    m, k = a.shape
    n = b.shape[1]
    if m * n * k > _SMALL_MNK:
        return _matmul_parts(a, b)
    return a @ b


def _matmul_parts(a, b):
    """``a @ b`` for a large product, cut along its longer outer dimension into parts
    of about :data:`_SMALL_MNK` multiply-adds that the layer pool computes in parallel.

    The cut depends on the shapes only, so the result is the same on any machine.
    """
    m, k = a.shape
    n = b.shape[1]
    out = np.empty((m, n), dtype=np.result_type(a, b))
    pieces = max(1, min(64, (m * n * k) // _SMALL_MNK))
    if m >= n:
        step = -(-m // pieces)
        _run_parts(lambda r: np.matmul(a[r:r + step], b, out=out[r:r + step]),
                   range(0, m, step))
    else:
        step = -(-n // pieces)
        _run_parts(lambda c: np.matmul(a, b[:, c:c + step], out=out[:, c:c + step]),
                   range(0, n, step))
    return out


def _row_spans(win, rows_bytes):
    """Output-row spans of about :data:`_PART_BYTES` of columns each (fixed by the shapes)."""
    return _spans(win.shape[3], 1, rows_bytes)


def _fill_block(block, win, span, bias):
    """im2col of the output rows ``span`` into ``block``, plus a row of ones for the bias."""
    c, kh, kw, _, ow, bsz = win.shape
    k = c * kh * kw
    np.copyto(block[:k].reshape(c, kh, kw, span[1] - span[0], ow, bsz),
              win[:, :, :, span[0]:span[1]])
    if bias:
        block[k] = 1


def _im2col_matmul(w2, win, out, bias, spans, block_for):
    """``out = w2 @ im2col(win)``, made and multiplied output-row span by span.

    ``win`` is (C, kh, kw, OH, OW, B); ``block_for(span)`` gives the
    ``(C·kh·kw [+1], rows·OW·B)`` buffer a span's columns go to, with a last
    row of ones when ``bias``. A span's block is multiplied while it is in
    cache, and its product reads one compact matrix instead of a slice of a
    very wide one (LeNet-5's first layer: 1.2 ms instead of 2.8 ms on one
    core). Spans run in parallel.
    """
    row = win.shape[4] * win.shape[5]

    def part(span):
        block = block_for(span)
        _fill_block(block, win, span, bias)
        # one product per span: the block is in cache and BLAS runs on this thread, so
        # cutting it into column blocks (as _matmul_cols does) only costs time (15-25 %)
        np.matmul(w2, block, out=out[:, span[0] * row:span[1] * row])

    _run_parts(part, spans)


def _run_jobs(*jobs):
    """Run the parts of several jobs ``(fn, parts)`` as one batch of parts.

    One hand-out for all of them: the threads wake once, and the tail of one
    job overlaps the start of the next. A job ``(fn, parts, after)`` starts
    only once the earlier job number ``after`` is done; its parts come later in
    the hand-out, so a thread that takes one waits at most for the parts the
    other threads are finishing (a second hand-out would wake them again:
    100–150 µs on this kind of machine).
    """
    jobs = [(job[0], list(job[1]), job[2] if len(job) > 2 else None) for job in jobs]
    if all(len(parts) <= 1 for _, parts, _ in jobs):
        # each job was too small to cut up: waking a thread would cost more than it saves
        for fn, parts, _ in jobs:
            for p in parts:
                fn(p)
        return
    left = [len(parts) for _, parts, _ in jobs]
    done = [threading.Event() for _ in jobs]
    for i, n in enumerate(left):
        if n == 0:
            done[i].set()
    lock = threading.Lock()

    def run(item):
        i, p = item
        fn, _, after = jobs[i]
        if after is not None:
            done[after].wait()
        try:
            fn(p)
        finally:
            with lock:
                left[i] -= 1
                if left[i] == 0:
                    done[i].set()

    _run_parts(run, [(i, p) for i, (_, parts, _) in enumerate(jobs) for p in parts])


def _im2col_weight_grad(grad_for, win, bias, spans, block_for, block_first=True):
    """``gc @ im2col(win)ᵀ`` span by span: the kernel (and bias) gradient.

    Returns the job ``(part, parts)`` for :func:`_run_jobs` and ``finish()``,
    which gives the gradient once the parts have run.

    ``grad_for(span)`` gives the span's rows of the output gradient ``gc`` as
    one compact (M, rows·OW·B) matrix: OpenBLAS multiplies it ~40 % faster
    than a slice of the very wide ``gc``.

    Each span's columns are made again from the window view into a block that
    stays in cache: the forward pass keeps no copy of them, because writing
    the whole im2col matrix to memory and reading it back costs more than
    remaking it (LeNet-5: 10 MB for the first layer alone; the machine's memory
    bandwidth, shared by both cores, is what the image ops wait on). Partial
    products of the spans run in parallel and are added in span order, so the
    result does not depend on the thread count.

    ``block_first`` computes each partial product as ``block · gcᵀ`` and
    transposes the sum: OpenBLAS runs that 5–20 % faster for most shapes
    (LeNet-5's second layer: 30 instead of 24 GMAC/s), but not for a thin
    layer's paired columns (12 by 31 rows), which pass ``False``.
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
# then has a 12×31 kernel against half as many, 40 % shorter columns: a span
# took 58 instead of 86 µs in place, forward, and the weight gradient gains alike.

_FOLD_MAX_OUT = 8  # output channels up to which columns are paired (2·O ≤ the tile)
# The kernel gradient pairs columns for more channels: its product's other side is the
# block, and the paired block has 40 % fewer numbers (LeNet-5's second layer, 16 kernels:
# 0.28 instead of 0.35 ms per two rows, one thread, and a smaller im2col)
_KGRAD_FOLD_MAX_OUT = 16


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

    _run_parts(part, spans)


def _col2im_matmul(w2, gc, gxp, kernel, stride, dilation, out_hw, slabs=None):
    """``gxp = col2im(w2ᵀ · gc)``: the gradient of the padded input, channel group by group.

    A group's slab of columns is made and scattered back while it is in cache;
    channel groups write disjoint parts of ``gxp``, so they run in parallel.
    ``slabs`` (C·kh·kw, N), if given, is where the slabs go (a reused buffer).
    Returns the job ``(part, parts)`` for :func:`_run_jobs`.
    """
    c = gxp.shape[0]
    kh, kw = kernel
    bsz = gxp.shape[3]
    o, n = gc.shape
    taps = kh * kw
    w2t = np.ascontiguousarray(w2.T)  # (C·kh·kw, O)
    if slabs is None:
        slabs = np.empty((c * taps, n), dtype=gc.dtype)

    def part(span):
        c0, c1 = span
        slab = slabs[c0 * taps:c1 * taps]
        _matmul_cols(w2t[c0 * taps:c1 * taps], gc, slab)
        slab6 = slab.reshape(c1 - c0, kh, kw, out_hw[0], out_hw[1], bsz)
        dst = gxp[c0:c1]
        dst[...] = 0
        for ki in range(kh):
            for kj in range(kw):
                _tap(dst, ki, kj, stride, dilation, out_hw)[...] += slab6[:, ki, kj]

    return part, _spans(c, 1, taps * n * gc.itemsize)


def _col2im_shifted(w4, gc, gxp, dilation, out_hw, sums, gpad, block_for):
    """The gradient of the padded input of a stride-1 convolution, with few passes over memory.

    ``gxp[c, y, x] = Σ W[o, c, ki, kj] · G[o, y − d₀·ki, x − d₁·kj]`` is computed
    in two steps. (1) The output gradient ``G`` is laid out at the padded
    input's row pitch (``W'·B`` numbers a row, zeros after the first ``OW·B``),
    so a shift by ``kj`` columns is a shift of the flat index; stacking the
    ``kw`` shifted copies of it gives a matrix ``P`` of ``O·kw`` rows, and one
    product ``S = Wₘ · P`` with ``Wₘ[(c, ki), (o, kj)] = W[o, c, ki, kj]``
    sums over ``o`` and ``kj`` at once. (2) Each channel adds its ``kh`` rows of
    ``S``, each shifted by ``ki`` input rows: ``kh`` contiguous adds.

    Compared with the plain col2im (a slab of ``C·kh·kw`` rows from a product
    whose inner dimension is only ``O``, then ``kh·kw`` adds per channel) this
    writes ``kw`` times less, and its product has an inner dimension of
    ``O·kw``: LeNet-5's second layer, one thread: 2.5 instead of 4.4 ms. It does
    ~40 % more multiply-adds there (the zeros of the row pitch), which costs less.

    ``w4`` is the (O, C, kh, kw) kernel, ``gc`` the (O, OH·OW·B) output gradient,
    ``gxp`` the (C, H', W', B) result; ``sums`` (C·kh, OH·W'·B) and ``gpad``
    (O, d₁(kw−1)·B + OH·W'·B) are buffers, ``block_for(n)`` lends a thread the
    (O·kw, n) block of ``P`` a part fills. Returns the jobs of step 1 and of
    step 2 for :func:`_run_jobs`; step 2 must run after step 1.
    """
    o, c, kh, kw = w4.shape
    bsz = gxp.shape[3]
    oh, ow = out_hw
    d0, d1 = dilation
    pitch = gxp.shape[2] * bsz
    n = oh * pitch
    lead = d1 * (kw - 1) * bsz  # zeros before the first row: what a shift reads there
    gpad[:, :lead] = 0
    rows = gpad[:, lead:].reshape(o, oh, pitch)
    rows[:, :, ow * bsz:] = 0
    rows[:, :, :ow * bsz] = gc.reshape(o, oh, ow * bsz)
    wm = np.ascontiguousarray(w4.transpose(1, 2, 0, 3)).reshape(c * kh, o * kw)
    item = gc.itemsize

    def part(span):
        t0, t1 = span
        shifted = block_for(t1 - t0)
        # row (o, kj) of P is G moved kj columns on: kj·B numbers back in gpad
        np.copyto(shifted.reshape(o, kw, t1 - t0),
                  as_strided(gpad[:, lead + t0:], (o, kw, t1 - t0),
                             (gpad.strides[0], -d1 * bsz * item, item), writeable=False))
        np.matmul(wm, shifted, out=sums[:, t0:t1])

    def add_rows(span):
        c0, c1 = span
        dst = gxp[c0:c1].reshape(c1 - c0, -1)
        by_row = sums.reshape(c, kh, n)[c0:c1]
        dst[:, :n] = by_row[:, 0]
        dst[:, n:] = 0
        for ki in range(1, kh):
            view = dst[:, ki * d0 * pitch:ki * d0 * pitch + n]
            np.add(view, by_row[:, ki], out=view)

    return ((part, _spans(n, bsz, o * kw * item)),
            (add_rows, _even_spans(c, (kh * n + gxp[0].size) * item)))


def _empty_bias(dtype):
    return np.zeros((0,), dtype=dtype)


# ----------------------------------------------------------------------- dense

@register_op("dense")
class Dense(Op):
    """Fully connected layer: every output is a weighted sum of every input plus a bias.

    Parameters
    ----------
    units : int
        Number of outputs per sample.
    bias : bool
        Add the learned bias ``b``; when off, ``b`` is an empty array.
    init : str
        Initializer of ``W``.

    Shape:
        x (B, F) -> out (B, units); W (F, units), b (units,)
    """

    label = "Dense"
    category = "layers"
    weights = ("W", "b")
    params = (Param("units", "int", 10, low=1, high=65536, doc="number of outputs"),
              _BIAS, _INIT)
    formula = "y = x·W + b"
    derivative = "∂L/∂x = G·Wᵀ, ∂L/∂W = xᵀ·G, ∂L/∂b = Σ_batch G"

    def infer_shapes(self, x):
        if len(x) != 2:
            raise ShapeError(f"dense expects (B, features); got {fmt_shape(x)} "
                             "(put a Flatten in front)")
        if x[1] is None:
            raise ShapeError("dense: the number of input features must be known")
        return ((x[0], self.p["units"]),)

    def weight_specs(self, x):
        self.infer_shapes(x)
        f, u = x[1], self.p["units"]
        return {"W": WeightSpec((f, u), self.p["init"], fan_in=f, fan_out=u),
                "b": WeightSpec((u,) if self.p["bias"] else (0,), "zeros", fan_in=f, fan_out=u)}

    def multiply_adds(self, x):
        return (x[1] or 0) * self.p["units"]

    def forward(self, ctx, x, w, b):
        self.infer_shapes(x.shape)
        if x.shape[1] != w.shape[0]:
            raise ShapeError(f"dense: input has {x.shape[1]} features but W is "
                             f"{fmt_shape(w.shape)}")
        ctx.x, ctx.w, ctx.bias = x, w, b.size > 0
        y = matmul_small(x, w)
        if ctx.bias:
            y += b
        return y

    def backward(self, ctx, g):
        x, w = ctx.x, ctx.w
        if ctx.needs(0) and _PAIR_MNK <= x.shape[0] * x.shape[1] * g.shape[1] <= _SMALL_MNK:
            # the two products are independent: the layer pool runs them side by side
            # (np.dot: matmul would hold the GIL through these transposed operands)
            res = [None, None]

            def part(i):
                res[i] = np.dot(g, w.T) if i == 0 else np.dot(x.T, g)

            _run_parts(part, (0, 1))
            gx, gw = res
        else:
            gx = matmul_small(g, w.T) if ctx.needs(0) else None
            gw = matmul_small(x.T, g)
        gb = g.sum(axis=0) if ctx.bias else np.zeros((0,), dtype=g.dtype)
        return gx, gw, gb

    @classmethod
    def sample_inputs(cls, rng):
        return [
            Sample((rng.normal(size=(4, 5)), rng.normal(size=(5, 3)), rng.normal(size=(3,))),
                   {"units": 3}),
            Sample((rng.normal(size=(2, 6)), rng.normal(size=(6, 4)), _empty_bias(np.float64)),
                   {"units": 4, "bias": False}, note="no bias"),
        ]

    @classmethod
    def torch_reference(cls, torch, params, x, w, b):
        y = x @ w
        # an unused empty bias still needs a (empty) gradient in the comparison
        return y + b if params["bias"] else y + b.sum()


# ---------------------------------------------------------------- convolution

@register_op("conv2d")
class Conv2d(Op):
    """2-D convolution layer (cross-correlation, like every DL framework, or true convolution).

    ``mode="convolution"`` flips the kernel (rows and columns) before sliding it,
    which is the textbook convolution; the stored ``W`` is the unflipped kernel.

    Parameters
    ----------
    out_channels : int
        Number of kernels, i.e. output channels ``O``.
    kernel, stride, padding, dilation : (int, int)
        Window geometry (rows, columns).
    bias : bool
        Add a learned bias per output channel; when off ``b`` is an empty array.
    mode : str
        ``"cross_correlation"`` or ``"convolution"``.
    init : str
        Initializer of ``W``.

    Shape:
        x (B, C, H, W) -> out (B, O, H', W') with H' = ⌊(H + 2p − d(k−1) − 1)/s⌋ + 1;
        W (O, C, kh, kw), b (O,)
    """

    label = "Conv2D"
    category = "layers"
    weights = ("W", "b")
    params = (Param("out_channels", "int", 8, low=1, high=4096, doc="number of kernels"),
              _kernel(), _stride(), _padding(), _DILATION, _BIAS,
              Param("mode", "choice", "cross_correlation",
                    choices=("cross_correlation", "convolution"),
                    doc="cross-correlation (frameworks) or convolution (flipped kernel)"),
              _INIT)
    formula = "y[o,i,j] = b[o] + Σ_c,m,n W[o,c,m,n]·x[c, s·i+d·m−p, s·j+d·n−p]"
    derivative = ("∂L/∂W = Σ windows(x)·G (correlate x with G), "
                  "∂L/∂x = full convolution of G with W (col2im of Wᵀ·G)")

    def infer_shapes(self, x):
        _need_4d("conv2d", x)
        p = self.p
        oh, ow = _window_out("conv2d", x[2:], p["kernel"], p["stride"], p["padding"],
                             p["dilation"])
        return ((x[0], p["out_channels"], oh, ow),)

    def weight_specs(self, x):
        _need_4d("conv2d", x)
        c, (kh, kw), o = x[1], self.p["kernel"], self.p["out_channels"]
        return {"W": WeightSpec((o, c, kh, kw), self.p["init"], fan_in=c * kh * kw,
                                fan_out=o * kh * kw),
                "b": WeightSpec((o,) if self.p["bias"] else (0,), "zeros",
                                fan_in=c * kh * kw, fan_out=o * kh * kw)}

    def multiply_adds(self, x):
        _, o, oh, ow = self.infer_shapes(x)[0]
        kh, kw = self.p["kernel"]
        return o * (oh or 0) * (ow or 0) * (x[1] or 0) * kh * kw

    def forward(self, ctx, x, w, b):
        p = self.p
        oh, ow = self.infer_shapes(x.shape)[0][2:]
        if w.shape[1] != x.shape[1]:
            raise ShapeError(f"conv2d: input has {x.shape[1]} channels but the kernel W is "
                             f"{fmt_shape(w.shape)}")
        if p["mode"] == "convolution":
            w = w[:, :, ::-1, ::-1]
        o, c, kh, kw = w.shape
        bsz = x.shape[0]
        k = c * kh * kw
        n = oh * ow * bsz
        ph, pw = p["padding"]
        scratch = _scratch(self)
        xp = _pad_batch_last(_batch_last(x), ph, pw, scratch=scratch)
        # im2col into a reused buffer; with a bias, one extra row of ones makes the
        # GEMM add it (and the weight-gradient GEMM yield its gradient) for free
        bias = b.size > 0
        w2 = w.reshape(o, k)
        if bias:
            w2 = np.concatenate([w2, b[:, None]], axis=1)
        y = scratch.get("out", (o, n), x.dtype)
        fold = _folds(o, (kh, kw), p["stride"], p["dilation"], (oh, ow))
        if fold:
            win, spans, block_for = self._paired(scratch, xp, (kh, kw), (oh, ow), bias)
            _im2col_matmul_folded(_fold_kernel(w, b if bias else None), win,
                                  y.reshape(o, oh, ow, bsz), bias, spans, block_for)
        else:
            win = _windows(xp, (kh, kw), p["stride"], p["dilation"], (oh, ow))
            spans = _row_spans(win, (k + bias) * ow * bsz * x.itemsize)
            block_for = self._blocks(scratch, k + bias, ow * bsz, x.dtype)
            _im2col_matmul(w2, win, y, bias, spans, block_for)
        ctx.win, ctx.spans, ctx.block_for, ctx.w2 = win, spans, block_for, w2[:, :k]
        ctx.fold = fold
        # the kernel gradient may pair the columns of a layer whose forward does not
        ctx.kfold = fold or _folds(o, (kh, kw), p["stride"], p["dilation"], (oh, ow),
                                   _KGRAD_FOLD_MAX_OUT)
        if ctx.kfold and not fold:
            ctx.kwin, ctx.kspans, ctx.kblock_for = self._paired(scratch, xp, (kh, kw),
                                                                (oh, ow), bias, tag="kcols")
        else:
            ctx.kwin, ctx.kspans, ctx.kblock_for = win, spans, block_for
        ctx.xp_shape, ctx.x_shape = xp.shape, x.shape
        ctx.out_hw, ctx.w_shape, ctx.bias = (oh, ow), w.shape, bias
        return _batch_first(y.reshape(o, oh, ow, bsz))

    def _paired(self, scratch, xp, kernel, out_hw, bias, tag="cols"):
        """Window view, row spans and block buffers for output columns taken in pairs."""
        kh, kw = kernel
        oh, ow = out_hw
        c, bsz = xp.shape[0], xp.shape[3]
        win = _windows(xp, (kh, kw + 1), (1, 2), (1, 1), (oh, ow // 2))
        kb = c * kh * (kw + 1) + bias
        spans = _row_spans(win, kb * (ow // 2) * bsz * xp.itemsize)
        return win, spans, self._blocks(scratch, kb, (ow // 2) * bsz, xp.dtype, tag=tag)

    @staticmethod
    def _blocks(scratch, kb, row, dtype, tag="cols"):
        """Where each output-row span's im2col block goes: a buffer per thread, reused
        from span to span so that it stays in cache.

        The pool's workers have a buffer each; every other thread (the main thread, a
        GUI's training thread, a new one per run) shares one, so buffers do not pile up
        run after run. :meth:`Scratch.get` never hands out a buffer still in use, so two
        such threads running at once stay correct (they only allocate more).
        """
        def block_for(span):
            name = threading.current_thread().name
            key = name if name.startswith(_POOL_PREFIX) else "caller"
            return scratch.get(f"{tag}-{key}", (kb, (span[1] - span[0]) * row), dtype)

        return block_for

    def backward(self, ctx, g):
        p = self.p
        o, c, kh, kw = ctx.w_shape
        gc = np.ascontiguousarray(_batch_last(g)).reshape(o, -1)
        k = c * kh * kw
        oh, ow = ctx.out_hw
        if ctx.kfold:
            g4 = gc.reshape(o, oh, ow, -1)

            def grad_for(span):  # rows (o, s): the gradient of output columns 2q + s
                r0, r1 = span
                pairs = g4[:, r0:r1].reshape(o, r1 - r0, ow // 2, 2, g4.shape[3])
                return np.ascontiguousarray(pairs.transpose(0, 3, 1, 2, 4)).reshape(2 * o, -1)

        else:
            row = ow * g.shape[0]  # numbers per output row: OW·B

            def grad_for(span):
                return np.ascontiguousarray(gc[:, span[0] * row:span[1] * row])

        weight_job, weight_grad = _im2col_weight_grad(grad_for, ctx.kwin, ctx.bias, ctx.kspans,
                                                      ctx.kblock_for, block_first=not ctx.fold)
        jobs = [weight_job]
        gx = None
        if ctx.needs(0):
            # the input gradient's parts share one hand-out with the kernel gradient's
            scratch = _scratch(self)
            gxp = scratch.get("grad", ctx.xp_shape, g.dtype)
            if tuple(p["stride"]) == (1, 1):
                wp, bsz = ctx.xp_shape[2], ctx.xp_shape[3]
                n = oh * wp * bsz
                lead = p["dilation"][1] * (kw - 1) * bsz
                shifted_for = self._blocks(scratch, o * kw, 1, g.dtype, tag="shifted")
                products, adds = _col2im_shifted(
                    ctx.w2.reshape(ctx.w_shape), gc, gxp, p["dilation"], ctx.out_hw,
                    scratch.get("row_sums", (c * kh, n), g.dtype),
                    scratch.get("grad_pitched", (o, lead + n), g.dtype),
                    lambda cols: shifted_for((0, cols)))
                # the products first, so that the adds that need them wait the least
                jobs = [products, weight_job, (*adds, 0)]
            else:
                slabs = scratch.get("slabs", (k, gc.shape[1]), g.dtype)
                jobs.append(_col2im_matmul(ctx.w2, gc, gxp, (kh, kw), p["stride"],
                                           p["dilation"], ctx.out_hw, slabs))
            ph, pw = p["padding"]
            h, w = ctx.x_shape[2:]
            gx = _batch_first(gxp[:, ph:ph + h, pw:pw + w, :])
        _run_jobs(*jobs)
        if ctx.kfold:
            gw, gb = _unfold_kernel_grad(weight_grad(), ctx.w_shape, ctx.bias)
        else:
            gwb = weight_grad()
            gw = gwb[:, :k].reshape(ctx.w_shape)
            gb = gwb[:, k].copy() if ctx.bias else None
        if p["mode"] == "convolution":
            gw = gw[:, :, ::-1, ::-1]
        gw = np.ascontiguousarray(gw)
        if gb is None:
            gb = np.zeros((0,), dtype=g.dtype)
        return gx, gw, gb

    @classmethod
    def sample_inputs(cls, rng):
        def case(x_shape, o, params, bias=True, note=""):
            kh, kw = params.get("kernel", (3, 3))
            w = rng.normal(size=(o, x_shape[1], kh, kw))
            b = rng.normal(size=(o,)) if bias else _empty_bias(np.float64)
            return Sample((rng.normal(size=x_shape), w, b),
                          dict(params, out_channels=o, bias=bias), note=note)

        return [
            case((2, 2, 5, 5), 3, {}, note="3×3, stride 1, no padding"),
            case((2, 2, 6, 5), 2, {"stride": (2, 2), "padding": (1, 1)}, note="stride 2, pad 1"),
            case((1, 2, 7, 6), 2, {"kernel": (3, 2), "stride": (1, 2), "padding": (2, 1),
                                   "dilation": (2, 1)}, note="dilation, mixed strides"),
            case((2, 1, 5, 5), 2, {"kernel": (2, 3), "mode": "convolution"}, bias=False,
                 note="true convolution, no bias"),
            case((1, 3, 6, 6), 2, {"kernel": (3, 3), "stride": (3, 2), "padding": (0, 2),
                                   "dilation": (1, 2)}, note="stride 3, dilation 2"),
            case((2, 2, 6, 7), 3, {"kernel": (2, 3), "padding": (1, 2), "dilation": (2, 1)},
                 note="stride 1 (shifted col2im) with dilation and padding"),
            case((2, 3, 7, 9), 2, {"kernel": (2, 3), "padding": (0, 1), "dilation": (3, 2)},
                 bias=False, note="stride 1, dilation in both axes, no bias"),
            case((2, 3, 4, 5), 4, {"kernel": (1, 1)}, note="1×1 kernel"),
            case((2, 2, 5, 6), 3, {"padding": (1, 1)}, note="thin layer: output columns in pairs"),
            case((2, 2, 5, 6), 10, {}, note="paired columns in the kernel gradient only"),
            case((1, 1, 6, 8), 2, {"kernel": (3, 5), "padding": (1, 2), "mode": "convolution"},
                 bias=False, note="paired columns, true convolution, no bias"),
        ]

    @classmethod
    def torch_reference(cls, torch, params, x, w, b):
        if params["mode"] == "convolution":
            w = torch.flip(w, dims=(2, 3))
        y = torch.nn.functional.conv2d(x, w, b if params["bias"] else None,
                                       stride=params["stride"], padding=params["padding"],
                                       dilation=params["dilation"])
        return y if params["bias"] else y + b.sum()


@register_op("conv_transpose2d")
class ConvTranspose2d(Op):
    """Transposed convolution ("deconvolution"): the adjoint of a strided conv2d, upsampling.

    Every input pixel scatters a copy of the kernel, scaled by its value, into
    the output at stride ``s``; overlapping copies add. ``padding`` crops the
    result and ``output_padding`` adds rows/columns at the bottom/right, so that
    it can undo a conv2d whose output size was rounded down.

    Parameters
    ----------
    out_channels : int
        Output channels ``O``.
    kernel, stride, padding, output_padding, dilation : (int, int)
        Geometry (rows, columns); ``output_padding`` must be smaller than the
        stride or the dilation.
    bias : bool
        Add a learned bias per output channel; when off ``b`` is an empty array.
    init : str
        Initializer of ``W``.

    Shape:
        x (B, C, H, W) -> out (B, O, H', W') with H' = (H − 1)s − 2p + d(k−1) + output_padding + 1;
        W (C, O, kh, kw) (PyTorch layout), b (O,)
    """

    label = "ConvTranspose2D"
    category = "layers"
    weights = ("W", "b")
    params = (Param("out_channels", "int", 8, low=1, high=4096, doc="output channels"),
              _kernel(), _stride(), _padding(),
              Param("output_padding", "ints", (0, 0), low=0, high=31,
                    doc="extra rows/cols at the bottom/right (< stride)"),
              _DILATION, _BIAS, _INIT)
    formula = "y[o, s·i+d·m−p, s·j+d·n−p] += W[c,o,m,n]·x[c,i,j]  (+ b[o])"
    derivative = "∂L/∂x = conv2d(G, W) with the same stride; ∂L/∂W = Σ x·windows(G)"

    def _out_hw(self, x_hw):
        p = self.p
        outs = []
        for n, k, s, pad, op_, d, axis in zip(x_hw, p["kernel"], p["stride"], p["padding"],
                                              p["output_padding"], p["dilation"], ("rows", "cols")):
            if op_ >= max(s, d):
                raise ShapeError(f"conv_transpose2d: output_padding {op_} ({axis}) must be "
                                 f"smaller than the stride {s} or the dilation {d}")
            if n is None:
                outs.append(None)
                continue
            o = (n - 1) * s - 2 * pad + d * (k - 1) + op_ + 1
            if o < 1:
                raise ShapeError(f"conv_transpose2d: padding {pad} crops away the whole "
                                 f"{axis} of the output (a {n}-long input gives {o})")
            outs.append(o)
        return tuple(outs)

    def infer_shapes(self, x):
        _need_4d("conv_transpose2d", x)
        oh, ow = self._out_hw(x[2:])
        return ((x[0], self.p["out_channels"], oh, ow),)

    def weight_specs(self, x):
        _need_4d("conv_transpose2d", x)
        c, (kh, kw), o = x[1], self.p["kernel"], self.p["out_channels"]
        return {"W": WeightSpec((c, o, kh, kw), self.p["init"], fan_in=c * kh * kw,
                                fan_out=o * kh * kw),
                "b": WeightSpec((o,) if self.p["bias"] else (0,), "zeros",
                                fan_in=c * kh * kw, fan_out=o * kh * kw)}

    def multiply_adds(self, x):
        kh, kw = self.p["kernel"]
        return (x[1] or 0) * (x[2] or 0) * (x[3] or 0) * self.p["out_channels"] * kh * kw

    def forward(self, ctx, x, w, b):
        p = self.p
        oh, ow = self.infer_shapes(x.shape)[0][2:]
        if w.shape[0] != x.shape[1]:
            raise ShapeError(f"conv_transpose2d: input has {x.shape[1]} channels but W is "
                             f"{fmt_shape(w.shape)}")
        c, o = w.shape[:2]
        bsz, _, h, wd = x.shape
        (ph, pw), (sh, sw), (dh, dw) = p["padding"], p["stride"], p["dilation"]
        kh, kw = p["kernel"]
        # the uncropped result: every tap of every input pixel lands inside it
        full = (o, (h - 1) * sh + dh * (kh - 1) + 1 + p["output_padding"][0],
                (wd - 1) * sw + dw * (kw - 1) + 1 + p["output_padding"][1], bsz)
        xc = np.ascontiguousarray(_batch_last(x)).reshape(c, -1)
        w2 = w.reshape(c, -1)
        cols = w2.T @ xc
        yp = _col2im(cols, full, p["kernel"], p["stride"], p["dilation"], (h, wd), x.dtype)
        y = yp[:, ph:ph + oh, pw:pw + ow, :]
        if b.size:
            y = y + b[:, None, None, None]
        ctx.xc, ctx.w2, ctx.full, ctx.in_hw = xc, w2, full, (h, wd)
        ctx.w_shape, ctx.out_hw, ctx.bias = w.shape, (oh, ow), b.size > 0
        return _batch_first(y)

    def backward(self, ctx, g):
        p = self.p
        (ph, pw) = p["padding"]
        oh, ow = ctx.out_hw
        gl = _batch_last(g)
        gp = np.zeros(ctx.full, dtype=g.dtype)
        gp[:, ph:ph + oh, pw:pw + ow, :] = gl
        gcols = _im2col(gp, p["kernel"], p["stride"], p["dilation"], ctx.in_hw)
        c = ctx.w_shape[0]
        gx = None
        if ctx.needs(0):
            gx = (ctx.w2 @ gcols).reshape(c, ctx.in_hw[0], ctx.in_hw[1], -1)
            gx = _batch_first(gx)
        gw = matmul_wide_nt(ctx.xc, gcols).reshape(ctx.w_shape)
        gb = gl.sum(axis=(1, 2, 3)) if ctx.bias else np.zeros((0,), dtype=g.dtype)
        return gx, gw, gb

    @classmethod
    def sample_inputs(cls, rng):
        def case(x_shape, o, params, bias=True, note=""):
            kh, kw = params.get("kernel", (3, 3))
            w = rng.normal(size=(x_shape[1], o, kh, kw))
            b = rng.normal(size=(o,)) if bias else _empty_bias(np.float64)
            return Sample((rng.normal(size=x_shape), w, b),
                          dict(params, out_channels=o, bias=bias), note=note)

        return [
            case((2, 2, 3, 3), 2, {}, note="3×3, stride 1"),
            case((2, 2, 3, 4), 3, {"stride": (2, 2), "padding": (1, 1),
                                   "output_padding": (1, 0)}, note="stride 2, output_padding"),
            case((1, 3, 3, 3), 2, {"kernel": (2, 3), "stride": (3, 1), "padding": (0, 1),
                                   "dilation": (1, 2)}, bias=False, note="dilation, no bias"),
        ]

    @classmethod
    def torch_reference(cls, torch, params, x, w, b):
        y = torch.nn.functional.conv_transpose2d(
            x, w, b if params["bias"] else None, stride=params["stride"],
            padding=params["padding"], output_padding=params["output_padding"],
            dilation=params["dilation"])
        return y if params["bias"] else y + b.sum()


# -------------------------------------------------------------------- pooling

class _Pool(Op):
    category = "layers"
    params = (_kernel((2, 2)), _stride((2, 2)), _padding())

    def _check_padding(self):
        for k, pad in zip(self.p["kernel"], self.p["padding"]):
            if 2 * pad > k:
                raise ShapeError(f"{self.id}: padding {pad} must be at most half the kernel "
                                 f"({k}); a window could otherwise see only padding")

    def _out_hw(self, x):
        _need_4d(self.id, x)
        self._check_padding()
        p = self.p
        return _window_out(self.id, x[2:], p["kernel"], p["stride"], p["padding"],
                           what="window")

    def infer_shapes(self, x):
        oh, ow = self._out_hw(x)
        return ((x[0], x[1], oh, ow),)

    @staticmethod
    def _distinct(rng, shape):
        """Values at least 0.05 apart, so no window has a near-tie for finite differences."""
        n = int(np.prod(shape))
        return (rng.permutation(n) * 0.05 - n * 0.025).reshape(shape) + rng.uniform(
            0, 0.01, shape)


def _tiles(kernel, stride, padding, hw) -> bool:
    """Whether pooling windows tile the plane exactly: each position is in one window."""
    return (tuple(stride) == tuple(kernel) and tuple(padding) == (0, 0)
            and hw[0] % kernel[0] == 0 and hw[1] % kernel[1] == 0)


def _tile_view(a, kernel):
    """The (C, OH, kh, OW, kw, B) view of a batch-last array whose windows tile it."""
    c, h, w, b = a.shape
    return a.reshape(c, h // kernel[0], kernel[0], w // kernel[1], kernel[1], b)


def _tile_max(src, kernel, out):
    """``out`` = the maximum of each window of a batch-last ``src`` that tiles exactly.

    The window rows are reduced first and then the columns, each step one pass
    over whole rows of the (C, OH, kh, OW, kw, B) view: 2×2 windows take 2
    passes instead of 4 over strided taps, about twice as fast.
    """
    kh, kw = kernel
    x6 = _tile_view(src, kernel)
    rows = x6[:, :, 0]
    if kh > 1:
        rows = np.maximum(rows, x6[:, :, 1])
        for i in range(2, kh):
            np.maximum(rows, x6[:, :, i], out=rows)
    if kw == 1:
        np.copyto(out, rows[:, :, :, 0])
        return
    np.maximum(rows[:, :, :, 0], rows[:, :, :, 1], out=out)
    for j in range(2, kw):
        np.maximum(out, rows[:, :, :, j], out=out)


def _mark_first_max(src, best, kernel, mask):
    """``mask`` (like ``src``) marks the first position of each tile's maximum ``best``.

    One comparison of the whole input with the maxima spread over their tiles, then
    ties are broken: a position stays marked only if no earlier one of its tile is.
    """
    kh, kw = kernel
    m6 = _tile_view(mask, kernel)
    np.equal(_tile_view(src, kernel), best[:, :, None, :, None, :], out=m6)
    taken = None
    for t in range(1, kh * kw):
        prev = m6[:, :, (t - 1) // kw, :, (t - 1) % kw]
        if taken is None:
            taken = prev.copy() if kh * kw > 2 else prev
        else:
            np.logical_or(taken, prev, out=taken)
        hit = m6[:, :, t // kw, :, t % kw]
        np.greater(hit, taken, out=hit)  # hit and no earlier hit


def _first_hits(src, best, kernel, stride, out_hw):
    """Yield ``(tap, mask)``: where each window's maximum ``best`` sits in the padded ``src``.

    When several values of a window equal the maximum (MNIST's zero background
    makes this common), only the first in row-major window order is marked, so
    the gradient goes to one place. The mask array is reused between taps.
    """
    kh, kw = kernel
    hit = np.empty(best.shape, dtype=bool)
    taken = np.empty(best.shape, dtype=bool)
    for t in range(kh * kw):
        np.equal(_tap(src, t // kw, t % kw, stride, (1, 1), out_hw), best, out=hit)
        if t:
            np.greater(hit, taken, out=hit)  # hit and not yet taken
        if t < kh * kw - 1:
            if t:
                np.logical_or(taken, hit, out=taken)
            else:
                np.copyto(taken, hit)
        yield t, hit


@register_op("max_pool2d")
class MaxPool2d(_Pool):
    """Max pooling: the largest value of each window, and where it was.

    The second output, ``indices``, is the flat position (row · W + col) of each
    maximum within its channel's H×W input plane, like PyTorch; it feeds
    :class:`MaxUnpool2d`. When several values of a window tie for the maximum
    (common on MNIST's zero background), the first one in row-major window order
    gets the whole gradient, so the gradient is never duplicated.

    Parameters
    ----------
    kernel, stride, padding : (int, int)
        Window geometry; padding counts as −∞ and is at most half the kernel.

    Shape:
        x (B, C, H, W) -> out (B, C, H', W'), indices (B, C, H', W') int64
        with H' = ⌊(H + 2p − k)/s⌋ + 1
    """

    label = "MaxPool2D"
    outputs = ("out", "indices")
    formula = "y[i,j] = max over window(i,j) of x"
    derivative = "∂y/∂x = 1 at the (first) maximum of the window, 0 elsewhere"

    def infer_shapes(self, x):
        (shape,) = super().infer_shapes(x)
        return shape, shape

    def forward(self, ctx, x):
        p = self.p
        oh, ow = self._out_hw(x.shape)
        (ph, pw), (kh, kw), stride = p["padding"], p["kernel"], p["stride"]
        h, w = x.shape[2:]
        fill = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
        scratch = _scratch(self)
        xp = _pad_batch_last(_batch_last(x), ph, pw, fill, scratch=scratch)
        c, bsz = xp.shape[0], xp.shape[3]
        best = scratch.get("out", (c, oh, ow, bsz), x.dtype)
        want_idx = ctx.wants(1)
        if want_idx:
            idx = scratch.get("indices", (c, oh, ow, bsz), np.int64)
            # flat index in the unpadded plane: window origin plus the tap's offset
            origin = ((np.arange(oh) * stride[0] - ph)[:, None] * w
                      + (np.arange(ow) * stride[1] - pw)[None, :]).astype(np.int64)
            offsets = np.array([ki * w + kj for ki in range(kh) for kj in range(kw)],
                               np.int64)
        tiles = _tiles((kh, kw), stride, (ph, pw), (h, w))
        # windows that tile the input: in training, the forward pass marks each window's
        # (first) maximum in a mask of the input's size while the input is in cache, and
        # backward is then one pass that spreads the gradient through it. LeNet-5's first
        # pool, one thread: forward 0.2 -> 0.6 ms, backward 2.4 -> 0.3 ms
        mask = (scratch.get("mask", xp.shape, np.bool_) if tiles and ctx.training
                else None)

        def part(span):
            c0, c1 = span
            src, b = xp[c0:c1], best[c0:c1]
            # the maximum alone (and the mask above): where it was is worked out
            # here only if the indices output is connected, which costs less than
            # tracking the winning tap through every comparison
            if tiles:
                _tile_max(src, (kh, kw), b)
                if mask is not None:
                    _mark_first_max(src, b, (kh, kw), mask[c0:c1])
            else:
                np.copyto(b, _tap(src, 0, 0, stride, (1, 1), (oh, ow)))
                for t in range(1, kh * kw):
                    np.maximum(b, _tap(src, t // kw, t % kw, stride, (1, 1), (oh, ow)),
                               out=b)
            if want_idx:
                # the winning tap's number, then its offset in the plane (mode="clip"
                # skips a bounds check that makes take ~3× slower; codes are valid)
                code = np.zeros(b.shape, dtype=np.uint8 if kh * kw < 256 else np.int32)
                for t, hit in _first_hits(src, b, (kh, kw), stride, (oh, ow)):
                    if t:
                        code += hit.view(np.uint8) * code.dtype.type(t)
                np.take(offsets, code, out=idx[c0:c1], mode="clip")
                idx[c0:c1] += origin[None, :, :, None]

        _run_parts(part, _even_spans(c, xp[0].nbytes + best[0].nbytes))
        ctx.xp, ctx.best, ctx.hw, ctx.out_hw = xp, best, (h, w), (oh, ow)
        ctx.mask = mask
        return _batch_first(best), (_batch_first(idx) if want_idx else None)

    def backward(self, ctx, g, g_indices=None):
        p = self.p
        (ph, pw), (kh, kw), stride = p["padding"], p["kernel"], p["stride"]
        # a batch-first gradient (from a Flatten, say) is made batch-last once, so that
        # the loops below read runs of B contiguous numbers
        gl = np.ascontiguousarray(_batch_last(g))
        # windows that tile the input exactly write every position once: no zeroing, no adds
        h, w = ctx.hw
        tiles = _tiles((kh, kw), stride, (ph, pw), (h, w))
        gxp = _scratch(self).get("grad", ctx.xp.shape, g.dtype)
        mask = getattr(ctx, "mask", None)

        def part(span):
            c0, c1 = span
            dst, gs = gxp[c0:c1], gl[c0:c1]
            if mask is not None:  # the maxima marked in forward: one pass
                np.multiply(gs[:, :, None, :, None, :], _tile_view(mask[c0:c1], (kh, kw)),
                            out=_tile_view(dst, (kh, kw)))
                return
            if not tiles:
                dst[...] = 0
            for t, hit in _first_hits(ctx.xp[c0:c1], ctx.best[c0:c1], (kh, kw), stride,
                                      ctx.out_hw):
                view = _tap(dst, t // kw, t % kw, stride, (1, 1), ctx.out_hw)
                if tiles:
                    np.multiply(gs, hit, out=view)
                else:
                    view += gs * hit

        _run_parts(part, _even_spans(gxp.shape[0], 2 * gxp[0].nbytes))
        return (_batch_first(gxp[:, ph:ph + h, pw:pw + w, :]),)

    @classmethod
    def sample_inputs(cls, rng):
        d = cls._distinct
        return [
            Sample((d(rng, (2, 2, 4, 4)),), {}, note="2×2, stride 2"),
            Sample((d(rng, (1, 2, 5, 5)),), {"kernel": (3, 3), "stride": (2, 2),
                                             "padding": (1, 1)}, note="3×3, stride 2, pad 1"),
            Sample((d(rng, (2, 1, 4, 6)),), {"kernel": (2, 3), "stride": (1, 2)},
                   note="overlapping rows"),
            Sample((d(rng, (1, 2, 5, 7)),), {"kernel": (2, 2), "stride": (2, 3)},
                   note="uneven fit"),
            Sample((d(rng, (2, 2, 4, 6)),), {}, training=True,
                   note="2×2 in training: the maxima are marked in forward"),
            Sample((d(rng, (1, 2, 6, 6)),), {"kernel": (3, 2)}, training=True,
                   note="3×2 tiles in training"),
        ]

    @classmethod
    def torch_reference(cls, torch, params, x):
        out, idx = torch.nn.functional.max_pool2d(x, params["kernel"], params["stride"],
                                                  params["padding"], return_indices=True)
        return out, idx


@register_op("avg_pool2d")
class AvgPool2d(_Pool):
    """Average pooling: the mean of each window (padding counts as zeros, like PyTorch).

    Parameters
    ----------
    kernel, stride, padding : (int, int)
        Window geometry; padding is at most half the kernel.

    Shape:
        x (B, C, H, W) -> out (B, C, H', W') with H' = ⌊(H + 2p − k)/s⌋ + 1
    """

    label = "AvgPool2D"
    formula = "y[i,j] = (1/(kh·kw)) Σ window(i,j) of x"
    derivative = "∂y/∂x = 1/(kh·kw) for every x in the window"

    def multiply_adds(self, x):
        _, c, oh, ow = self.infer_shapes(x)[0]
        kh, kw = self.p["kernel"]
        return (c or 0) * (oh or 0) * (ow or 0) * kh * kw

    def forward(self, ctx, x):
        p = self.p
        oh, ow = self._out_hw(x.shape)
        (ph, pw), (kh, kw), stride = p["padding"], p["kernel"], p["stride"]
        xp = _pad_batch_last(_batch_last(x), ph, pw)
        total = None
        for ki in range(kh):
            for kj in range(kw):
                v = _tap(xp, ki, kj, stride, (1, 1), (oh, ow))
                if total is None:
                    total = v.copy()
                else:
                    total += v
        total *= x.dtype.type(1.0 / (kh * kw))
        ctx.xp_shape, ctx.hw, ctx.out_hw = xp.shape, x.shape[2:], (oh, ow)
        return _batch_first(total)

    def backward(self, ctx, g):
        p = self.p
        (ph, pw), (kh, kw), stride = p["padding"], p["kernel"], p["stride"]
        gl = _batch_last(g) * g.dtype.type(1.0 / (kh * kw))
        gxp = np.zeros(ctx.xp_shape, dtype=g.dtype)
        for ki in range(kh):
            for kj in range(kw):
                view = _tap(gxp, ki, kj, stride, (1, 1), ctx.out_hw)
                view += gl
        h, w = ctx.hw
        return (_batch_first(gxp[:, ph:ph + h, pw:pw + w, :]),)

    @classmethod
    def sample_inputs(cls, rng):
        return [
            Sample((rng.normal(size=(2, 2, 4, 4)),), {}, note="2×2, stride 2"),
            Sample((rng.normal(size=(1, 2, 5, 5)),), {"kernel": (3, 3), "stride": (2, 2),
                                                      "padding": (1, 1)}, note="pad 1"),
            Sample((rng.normal(size=(2, 1, 4, 5)),), {"kernel": (2, 3), "stride": (1, 1)},
                   note="overlapping"),
        ]

    @classmethod
    def torch_reference(cls, torch, params, x):
        return torch.nn.functional.avg_pool2d(x, params["kernel"], params["stride"],
                                              params["padding"])


@register_op("global_avg_pool")
class GlobalAvgPool(Op):
    """Mean of each channel over the whole image: one number per channel.

    Shape:
        x (B, C, H, W) -> out (B, C)
    """

    label = "Global AvgPool"
    category = "layers"
    formula = "y[c] = (1/(H·W)) Σ_i,j x[c,i,j]"
    derivative = "∂y[c]/∂x[c,i,j] = 1/(H·W)"

    def infer_shapes(self, x):
        _need_4d("global_avg_pool", x)
        return ((x[0], x[1]),)

    def multiply_adds(self, x):
        return numel(x[1:])

    def forward(self, ctx, x):
        self.infer_shapes(x.shape)
        ctx.shape = x.shape
        return x.mean(axis=(2, 3))

    def backward(self, ctx, g):
        h, w = ctx.shape[2:]
        gx = np.empty(ctx.shape, dtype=g.dtype)
        gx[...] = (g * g.dtype.type(1.0 / (h * w)))[:, :, None, None]
        return (gx,)

    @classmethod
    def sample_inputs(cls, rng):
        return [Sample((rng.normal(size=(2, 3, 4, 5)),))]

    @classmethod
    def torch_reference(cls, torch, params, x):
        return x.mean(dim=(2, 3))


@register_op("max_unpool2d")
class MaxUnpool2d(_Pool):
    """Partial inverse of max pooling: each value goes back to where its maximum came from.

    ``indices`` is the second output of a :class:`MaxPool2d` with the same
    geometry; every other output position is zero. When overlapping windows
    picked the same maximum twice, one copy lands there and only it gets the
    gradient (PyTorch's backward sends it to both, which its forward does not do).

    Parameters
    ----------
    kernel, stride, padding : (int, int)
        The geometry of the max pool being undone.

    Shape:
        x (B, C, H, W), indices (B, C, H, W) int -> out (B, C, H', W')
        with H' = (H − 1)s − 2p + k
    """

    label = "MaxUnpool2D"
    inputs = ("x", "indices")
    no_grad_inputs = ("indices",)
    formula = "y[indices[i,j]] = x[i,j], 0 elsewhere"
    derivative = "∂L/∂x[i,j] = G[indices[i,j]]"

    def infer_shapes(self, x, idx):
        _need_4d("max_unpool2d", x)
        if len(idx) != 4 or any(a is not None and b is not None and a != b
                                for a, b in zip(x, idx)):
            raise ShapeError(f"max_unpool2d: indices {fmt_shape(idx)} must have the shape of "
                             f"x {fmt_shape(x)} (connect the indices output of the max pool)")
        self._check_padding()
        p = self.p
        hw = []
        for n, k, s, pad in zip(x[2:], p["kernel"], p["stride"], p["padding"]):
            o = None if n is None else (n - 1) * s - 2 * pad + k
            if o is not None and o < 1:
                raise ShapeError(f"max_unpool2d: padding {pad} leaves no output")
            hw.append(o)
        return ((x[0], x[1], hw[0], hw[1]),)

    def forward(self, ctx, x, idx):
        oh, ow = self.infer_shapes(x.shape, idx.shape)[0][2:]
        if idx.dtype.kind not in "iu":
            raise ShapeError(f"max_unpool2d: indices must be integers; got {idx.dtype}")
        b, c = x.shape[:2]
        flat = idx.reshape(b, c, -1)
        if flat.size and (flat.min() < 0 or flat.max() >= oh * ow):
            raise ShapeError(f"max_unpool2d: an index ({int(flat.max())}) lies outside the "
                             f"{oh}×{ow} output; the kernel/stride/padding must match the pool's")
        y = np.zeros((b, c, oh * ow), dtype=x.dtype)
        np.put_along_axis(y, flat, x.reshape(b, c, -1), axis=2)
        # Overlapping pool windows can repeat an index: only one value lands there (the
        # same one as in PyTorch) and only that one may get the gradient. Writing each
        # value's own number the same way tells which one landed.
        ids = np.broadcast_to(np.arange(flat.shape[2]), flat.shape)
        landed = np.full((b, c, oh * ow), -1, dtype=np.int64)
        np.put_along_axis(landed, flat, ids, axis=2)
        won = np.take_along_axis(landed, flat, axis=2) == ids
        ctx.flat, ctx.x_shape, ctx.won = flat, x.shape, None if won.all() else won
        return y.reshape(b, c, oh, ow)

    def backward(self, ctx, g, *_):
        b, c = ctx.x_shape[:2]
        gx = np.take_along_axis(g.reshape(b, c, -1), ctx.flat, axis=2)
        if ctx.won is not None:
            gx *= ctx.won
        return gx.reshape(ctx.x_shape), None

    @classmethod
    def sample_inputs(cls, rng):
        cases = []
        for shape, params in (((2, 2, 4, 4), {}),
                              ((1, 2, 4, 4), {"kernel": (3, 3), "stride": (3, 3),
                                              "padding": (1, 1)})):
            pooled, idx = MaxPool2d(**params).forward(Context(), cls._distinct(rng, shape))
            cases.append(Sample((rng.normal(size=pooled.shape), np.ascontiguousarray(idx)),
                                params, note=str(params or "2×2, stride 2")))
        return cases

    @classmethod
    def torch_reference(cls, torch, params, x, idx):
        return torch.nn.functional.max_unpool2d(x, idx.long(), params["kernel"],
                                                params["stride"], params["padding"])


# ------------------------------------------------------------ normalization

@register_op("batch_norm")
class BatchNorm(Op):
    """Batch normalization: standardize each feature (or channel) then scale and shift.

    In training the mean and variance come from the batch and update running
    averages kept in the node's state (``running_mean``, ``running_var``;
    the running variance is the unbiased one, like PyTorch); in evaluation the
    running averages are used, so a single sample gives a deterministic answer.

    Parameters
    ----------
    momentum : float
        Weight of the new batch in the running averages.
    eps : float
        Added to the variance before the square root.

    Shape:
        x (B, F) -> out (B, F), per feature; x (B, C, H, W) -> out (B, C, H, W),
        per channel; gamma, beta (F,) or (C,)
    """

    label = "BatchNorm"
    category = "layers"
    weights = ("gamma", "beta")
    state_like = {"running_mean": "gamma", "running_var": "gamma"}
    params = (Param("momentum", "float", 0.1, low=0.0, high=1.0,
                    doc="weight of the current batch in the running averages"),
              Param("eps", "float", 1e-5, low=0.0, high=1.0, doc="added to the variance"))
    formula = "y = γ·(x − μ_B)/√(σ²_B + ε) + β"
    derivative = ("∂L/∂x = γ/(N·σ)·(N·G − ΣG − x̂·Σ(G·x̂)); ∂L/∂γ = Σ G·x̂, ∂L/∂β = Σ G "
                  "(evaluation: ∂L/∂x = γ·G/σ)")

    @staticmethod
    def _check(x):
        if len(x) not in (2, 4):
            raise ShapeError(f"batch_norm expects (B, F) or (B, C, H, W); got {fmt_shape(x)}")
        if x[1] is None:
            raise ShapeError("batch_norm: the number of features/channels must be known")

    def infer_shapes(self, x):
        self._check(x)
        return (x,)

    def weight_specs(self, x):
        self._check(x)
        return {"gamma": WeightSpec((x[1],), "ones", fan_in=x[1], fan_out=x[1]),
                "beta": WeightSpec((x[1],), "zeros", fan_in=x[1], fan_out=x[1])}

    def multiply_adds(self, x):
        return 2 * numel(x[1:])

    def forward(self, ctx, x, gamma, beta):
        self._check(x.shape)
        axes = (0,) if x.ndim == 2 else (0, 2, 3)
        bshape = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)
        nf = x.shape[1]
        n = x.size // nf
        state = ctx.state
        rm, rv = state.get("running_mean"), state.get("running_var")
        if rm is None or rm.shape != (nf,):
            rm, rv = np.zeros(nf, dtype=x.dtype), np.ones(nf, dtype=x.dtype)
        eps, m = self.p["eps"], self.p["momentum"]
        if ctx.training:
            if n < 2:
                raise ShapeError("batch_norm in training needs more than one value per "
                                 "feature (a batch of 1 has no variance)")
            mean = x.mean(axis=axes)
            xm = x - mean.reshape(bshape)
            var = (xm * xm).mean(axis=axes)
            # new arrays (not in place): an earlier step's saved state stays as it was
            state["running_mean"] = ((1 - m) * rm + m * mean).astype(x.dtype, copy=False)
            state["running_var"] = ((1 - m) * rv + m * var * (n / (n - 1))).astype(
                x.dtype, copy=False)
        else:
            mean, var = rm, rv
            xm = x - mean.reshape(bshape)
        inv = (1.0 / np.sqrt(var + eps)).astype(x.dtype, copy=False)
        xhat = xm * inv.reshape(bshape)
        ctx.xhat, ctx.inv, ctx.gamma = xhat, inv, gamma
        ctx.axes, ctx.bshape, ctx.n, ctx.batch_stats = axes, bshape, n, ctx.training
        return xhat * gamma.reshape(bshape) + beta.reshape(bshape)

    def backward(self, ctx, g):
        axes, bshape, xhat = ctx.axes, ctx.bshape, ctx.xhat
        gbeta = g.sum(axis=axes)
        ggamma = (g * xhat).sum(axis=axes)
        gx = None
        if ctx.needs(0):
            scale = (ctx.gamma * ctx.inv).reshape(bshape)
            if ctx.batch_stats:
                # mean and variance depend on every x: subtract their share of the gradient
                gx = scale * (g - (gbeta / ctx.n).reshape(bshape)
                              - xhat * (ggamma / ctx.n).reshape(bshape))
            else:
                gx = g * scale
        return gx, ggamma, gbeta

    @classmethod
    def sample_inputs(cls, rng):
        # gamma is drawn first: x must not be the gradient checker's cotangent (same seed),
        # which would lie in the span of {1, x̂} where the true gradient is exactly zero
        gamma = rng.uniform(0.5, 1.5, 3)
        return [
            Sample((rng.normal(size=(5, 3)) * 2 + 1, gamma, rng.normal(size=3)),
                   training=True, note="(B, F), training"),
            Sample((rng.normal(size=(3, 2, 3, 3)), rng.uniform(0.5, 1.5, 2), rng.normal(size=2)),
                   {"eps": 1e-3}, training=True, note="(B, C, H, W), training"),
        ]

    @classmethod
    def torch_reference(cls, torch, params, x, gamma, beta):
        # the registry samples are in training mode; evaluation is compared in test_layers
        return torch.nn.functional.batch_norm(x, None, None, gamma, beta, training=True,
                                              momentum=params["momentum"], eps=params["eps"])


@register_op("dropout")
class Dropout(Op):
    """Inverted dropout: in training, zero each value with probability p, scale the rest by 1/(1−p).

    The expected value is unchanged, so evaluation is the identity. The mask is
    drawn from the node's seeded generator, so a replayed step is identical.

    Parameters
    ----------
    p : float
        Probability of dropping a value, in [0, 1).

    Shape:
        x (any) -> out (same shape)
    """

    label = "Dropout"
    category = "regularization"
    elementwise = True
    params = (Param("p", "float", 0.5, low=0.0, high=0.99, doc="probability of dropping"),)
    formula = "y = x·m/(1−p), m ~ Bernoulli(1−p) (training); y = x (evaluation)"
    derivative = "∂y/∂x = m/(1−p) (training), 1 (evaluation)"

    def infer_shapes(self, x):
        return (x,)

    def multiply_adds(self, x):
        return numel(x)

    def forward(self, ctx, x):
        p = self.p["p"]
        if not ctx.training or p == 0.0:
            ctx.mask = None
            return x
        # Generator.random draws float32 or float64 only; float32 halves the cost
        draw = np.float32 if x.dtype == np.float32 else np.float64
        keep = ctx.rng.random(x.shape, dtype=draw) >= p
        ctx.mask = keep * x.dtype.type(1.0 / (1.0 - p))
        return x * ctx.mask

    def backward(self, ctx, g):
        return (g if ctx.mask is None else g * ctx.mask,)

    @classmethod
    def sample_inputs(cls, rng):
        return [Sample((rng.normal(size=(4, 6)),), {"p": 0.3}, training=True, note="training"),
                Sample((rng.normal(size=(2, 3, 2, 2)),), {"p": 0.5}, note="evaluation")]
