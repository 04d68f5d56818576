"""Parallel parts: a small thread pool that shares an op's memory-bound work.

Two facts about this kind of machine shape the code below. (1) OpenBLAS runs a
product on several threads once M·N·K passes about 10⁶. A very skinny product
(a few rows or a short inner dimension against ~10⁵ columns) then runs
slower than the same product cut into column blocks that stay under that size
and fit in cache; and when another process holds a core, every threaded call
waits a scheduler tick for its helper thread. (2) NumPy releases the GIL inside copies,
ufunc loops and BLAS calls, so plain Python threads can share the memory-bound
work (im2col, col2im, pooling) that OpenBLAS would not parallelize anyway.
So large image ops cut their work into parts fixed by the shapes alone —
never by the number of threads, so results are bit-identical on any machine —
and hand the parts to a small thread pool.

Work is cut by :func:`part_spans` and :func:`even_spans` (sizes fixed by the
shapes), run by :func:`run_parts` or, for several jobs in one hand-out, by
:func:`run_jobs`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

# parts of 1 MB: few enough hand-offs (each wakes the other core), small enough to balance
_PART_BYTES = 1 << 20
# parts of a compiled kernel: one call each without the GIL, so many small parts balance
# two threads better at little cost
COMPILED_PART_BYTES = 1 << 18
# Work smaller than this is done in one part on the calling thread: waking a helper
# thread costs more than it saves
_MIN_SPLIT_BYTES = 1 << 21


def _default_workers() -> int:
    """One thread per core, at most 4 (the parts are sized for few threads)."""
    return max(1, min(4, os.cpu_count() or 1))


_WORKERS = _default_workers()
_pool = None
_pool_lock = threading.Lock()
POOL_PREFIX = "kernel-pool"
_in_part = threading.local()
_trace = None  # the list :func:`tracing` records parts in, while it runs


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
                    trace = _trace
                    if trace is None:
                        self.fn(self.parts[i])
                    else:
                        _in_part.start = time.perf_counter()
                        self.fn(self.parts[i])
                        # from the start of its work: a part that waited for another job
                        # moved its start on (run_jobs)
                        trace.append((threading.get_ident(), _in_part.start,
                                      time.perf_counter()))
                except BaseException as exc:  # re-raised in the calling thread
                    self.error = self.error or exc
                finally:
                    with self.lock:
                        self.done += 1
                        if self.done == len(self.parts):
                            self.all_done.set()
        finally:
            _in_part.active = was_active


@contextlib.contextmanager
def tracing():
    """Record the parts the pool shares while the block runs, in the list it yields: one
    ``(thread ident, start, end)`` per part (``time.perf_counter`` seconds).

    For benchmarks: how long each thread was busy, and so how long a helper sat idle.
    Parts run inline on one thread (too small to share, or inside a part) are not recorded,
    nor is a part that raised; a part's wait for an earlier job (:func:`run_jobs`) counts as
    idle. One block at a time: the list belongs to the whole process.
    """
    global _trace
    outer, _trace = _trace, []
    try:
        yield _trace
    finally:
        _trace = outer


def busy_seconds(trace, start, end, besides=None) -> float:
    """Seconds within ``[start, end]`` that the parts in ``trace`` (from :func:`tracing`) ran,
    summed over the threads, leaving out the thread whose ident is ``besides``."""
    return sum(max(0.0, min(t1, end) - max(t0, start))
               for who, t0, t1 in trace if who != besides)


def run_parts(fn, parts):
    """Call ``fn(part)`` for every part, shared with the worker threads; wait for all.

    A part that itself asks for parallel work runs it inline, so workers never
    wait on each other. Which thread runs a part never changes its result.
    """
    parts = list(parts)
    if _WORKERS == 1 or len(parts) < 2 or getattr(_in_part, "active", False):
        for part in parts:
            fn(part)
        return
    pool = _workers()
    work = _Parts(fn, parts)
    for _ in range(min(_WORKERS, len(parts)) - 1):
        pool.submit(work.drain)
    # deferred work after these parts: two products side by side wait on each other less
    # than a product beside a compiled kernel, but a helper that took the deferred work
    # first would leave this thread alone on the critical path
    _hand_on_deferred(pool)
    work.drain()
    work.all_done.wait()
    if work.error is not None:
        raise work.error


def _workers() -> ThreadPoolExecutor:
    """The pool of helper threads, made on first use."""
    global _pool
    # a forked child needs threads of its own, and a larger count more of them
    if _pool is None or _pool[0] != os.getpid() or _pool[1] < _WORKERS - 1:
        with _pool_lock:
            if _pool is None or _pool[0] != os.getpid() or _pool[1] < _WORKERS - 1:
                if _pool is not None and _pool[0] == os.getpid():
                    _pool[2].shutdown(wait=False)  # its idle threads end; none is waited on
                _pool = (os.getpid(), _WORKERS - 1,
                         ThreadPoolExecutor(_WORKERS - 1, thread_name_prefix=POOL_PREFIX,
                                            initializer=_start_helper))
    return _pool[2]


# ------------------------------------------------------------------ priority

_helper_nice = 0  # the niceness the helpers run at (see lower_helper_priority)
_lowered = None  # (pool, niceness) whose running helpers were lowered already


def lower_thread_priority(nice: int = 5) -> bool:
    """Run the calling thread at niceness ``nice`` (never raising its priority); ``False``
    where that cannot be done.

    Only on Linux, where niceness belongs to each thread (elsewhere it would lower the whole
    process). Without privileges it cannot be raised again.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) < nice:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError:
        return False
    return True


def _start_helper():
    if _helper_nice:
        lower_thread_priority(_helper_nice)


def lower_helper_priority(nice: int = 5, timeout: float = 1.0) -> bool:
    """Run the pool's helper threads, and those it starts later, at niceness ``nice``.

    A program whose own thread must answer at once (a window's event loop) trains at a lower
    priority than that thread: with every core busy, the scheduler then gives the event loop
    a core as soon as it wakes instead of at the end of a time slice. Results do not change.
    ``False`` where priorities cannot be lowered or a helper stayed busy for ``timeout``.
    """
    global _helper_nice, _lowered
    if not sys.platform.startswith("linux"):
        return False
    _helper_nice = max(_helper_nice, nice)
    if _WORKERS == 1:
        return True
    pool = _workers()
    if _lowered == (pool, _helper_nice):
        return True  # its helpers were lowered, and any it starts later lower themselves
    # each helper takes one task: the tasks wait for each other, so no helper takes two
    gate = threading.Barrier(_pool[1])

    def lower():
        done = lower_thread_priority(_helper_nice)
        gate.wait(timeout)
        return done

    try:
        done = all(f.result(timeout + 1) for f in [pool.submit(lower) for _ in range(_pool[1])])
    except (threading.BrokenBarrierError, TimeoutError):
        return False
    if done:
        _lowered = (pool, _helper_nice)
    return done


def layer_threads() -> int:
    """Threads that share the layer ops' work (the caller and its helpers)."""
    return _WORKERS


def set_layer_threads(n: int | None = None) -> int:
    """Let ``n`` threads share the layer ops' work (``None``: up to 4, one per core).

    Only who runs a part changes, never what a part computes: results are the
    same bits for any ``n``. Returns the previous count.
    """
    global _WORKERS
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ValueError(f"layer threads must be a whole number ≥ 1, not {n!r}")
    old = _WORKERS
    _WORKERS = _default_workers() if n is None else n
    return old


def part_spans(n, unit, bytes_per_item, part_bytes=_PART_BYTES, min_split=None):
    """Split ``range(n)`` into ``(start, stop)`` spans of about ``part_bytes``.

    Spans are whole multiples of ``unit`` items (a GEMM block, say), except the last.
    Work under ``min_split`` bytes (default ``_MIN_SPLIT_BYTES``) is one span.
    """
    if n * bytes_per_item < (_MIN_SPLIT_BYTES if min_split is None else min_split):
        return [(0, n)]
    per = unit * max(1, part_bytes // max(1, bytes_per_item * unit))
    return [(i, min(n, i + per)) for i in range(0, n, per)]


def even_spans(n, bytes_per_item, max_part=4 << 20):
    """Split ``range(n)`` into a multiple of the thread count of near-equal spans.

    For work whose result does not depend on how it is cut (elementwise work
    per channel, no sums across spans): one span per thread, or more of them
    where a span would pass ``max_part`` bytes. Every part then costs one round
    of NumPy calls, and the threads finish together (three parts on two threads
    would leave one of them idle while the last part runs).
    """
    total = n * bytes_per_item
    if n < 2 or total < _MIN_SPLIT_BYTES:
        return [(0, n)]
    k = min(n, _WORKERS * max(1, -(-total // (_WORKERS * max_part))))
    return [(n * i // k, n * (i + 1) // k) for i in range(k)]


def run_jobs(*jobs):
    """Run the parts of several jobs ``(fn, parts)`` as one batch of parts.

    One hand-out for all of them: the threads wake once, and the tail of one
    job overlaps the start of the next. A job ``(fn, parts, after)`` starts
    only once the earlier job number ``after`` is done; its parts come later in
    the hand-out, so a thread that takes one waits at most for the parts the
    other threads are finishing (a second hand-out would wake them again).

    With more than one thread, the parts of the jobs that wait for none are handed
    out in turn, one of each job: two threads then mostly run parts of different
    jobs side by side (a memory-bound product beside a compute-bound kernel
    gradient), instead of both competing for memory on the same job. Which thread
    runs a part, and when, never changes what it computes.
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
            if _trace is not None:
                _in_part.start = time.perf_counter()  # the wait was no work
        try:
            fn(p)
        finally:
            with lock:
                left[i] -= 1
                if left[i] == 0:
                    done[i].set()

    free = [[(i, p) for p in parts] for i, (_, parts, after) in enumerate(jobs)
            if after is None]
    if _WORKERS > 1:
        order = [item for turn in itertools.zip_longest(*free) for item in turn
                 if item is not None]
    else:
        order = [item for items in free for item in items]
    order += [(i, p) for i, (_, parts, after) in enumerate(jobs) if after is not None
              for p in parts]
    run_parts(run, order)




# ------------------------------------------------------------------ deferred work

class Deferred:
    """Work off the critical path: parts the helpers take when they are free, finished by
    :meth:`result` (the caller takes the parts nobody has started, then waits).

    Which thread runs a part never changes what it computes, so the result is the same
    bits as running the parts at once.
    """

    def __init__(self, fn, parts, finish):
        self.work = _Parts(fn, list(parts))
        self.finish = finish
        self.handed = False
        self.value = None
        self.done = False

    def result(self):
        if not self.done:
            self.done = True
            self.work.drain()
            self.work.all_done.wait()
            if self.work.error is not None:
                raise self.work.error
            self.value = self.finish()
        return self.value


_scope = threading.local()


@contextlib.contextmanager
def deferring():
    """Within this block, :func:`defer` may leave work to the helper threads; it is all
    finished when the block ends (or at :func:`finish_deferred`). A full training run's
    backward uses this: a layer's weight gradient, which no later layer reads, then runs
    beside the layers below it instead of before them."""
    outer = getattr(_scope, "pending", None)
    _scope.pending = []
    try:
        yield
    except BaseException:
        # the helpers finish what they hold before the error goes on; it is the one reported
        with contextlib.suppress(BaseException):
            finish_deferred()
        raise
    else:
        finish_deferred()
    finally:
        _scope.pending = outer


def can_defer() -> bool:
    """Whether :func:`defer` would leave work to a helper (in a :func:`deferring` block, with
    helpers, not inside a part)."""
    return (getattr(_scope, "pending", None) is not None and _WORKERS > 1
            and not getattr(_in_part, "active", False))


def defer(fn, parts, finish):
    """A :class:`Deferred` for ``fn(part)`` over ``parts``, then ``finish()``. Handed to the
    helpers with the next parts this thread hands out (they take it once those are done),
    or run at once where :func:`can_defer` is false."""
    job = Deferred(fn, parts, finish)
    if not can_defer():
        job.result()
    else:
        _scope.pending.append(job)
    return job


def _hand_on_deferred(pool):
    """Queue the deferred jobs not yet handed to the helpers."""
    for job in getattr(_scope, "pending", None) or ():
        if not job.handed and not job.done:
            job.handed = True
            pool.submit(job.work.drain)


def finish_deferred():
    """Finish every deferred job of this thread's :func:`deferring` block."""
    pending = getattr(_scope, "pending", None) or []
    error = None
    while pending:
        job = pending.pop(0)
        try:
            job.result()
        except BaseException as exc:  # the first error is raised once all are finished
            error = error or exc
    if error is not None:
        raise error
