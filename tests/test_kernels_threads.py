"""The thread pool, BLAS control and scratch buffers of core.kernels."""

import contextlib
import functools
import os
import sys
import threading

import numpy as np
import pytest

from core.kernels import threads
from core.kernels.scratch import Scratch, scratch_for, thread_blocks


def test_parallel_parts_run_once_each_and_pass_errors_on(monkeypatch):
    """Every part runs exactly once across the threads; an error in one reaches the caller."""
    monkeypatch.setattr(threads, "_WORKERS", 2)
    seen = []
    threads.run_parts(seen.append, range(50))
    assert sorted(seen) == list(range(50))

    def fail(i):
        if i == 7:
            raise ValueError("part 7 failed")

    with pytest.raises(ValueError, match="part 7"):
        threads.run_parts(fail, range(20))


def test_tracing_records_each_shared_part_and_tells_a_helpers_busy_time(monkeypatch):
    """While tracing, every part the pool shares is recorded with its thread and times; the
    busy time left to the helpers leaves the calling thread out, and nothing is recorded
    once the block ends."""
    import time

    monkeypatch.setattr(threads, "_WORKERS", 2)
    gate = threading.Barrier(2, timeout=5)

    def part(i):
        if i < 2:
            gate.wait()  # the first two parts run on two threads at once
        time.sleep(0.01)

    t0 = time.perf_counter()
    with threads.tracing() as trace:
        threads.run_parts(part, range(4))
    t1 = time.perf_counter()
    threads.run_parts(part, [5, 6])
    assert len(trace) == 4
    me = threading.get_ident()
    idents = {who for who, _, _ in trace}
    assert me in idents and len(idents) == 2
    assert all(t0 <= a <= b <= t1 for _, a, b in trace)
    everyone = threads.busy_seconds(trace, t0, t1)
    helper = threads.busy_seconds(trace, t0, t1, besides=me)
    assert 0.01 <= helper < everyone and everyone >= 0.04
    # only the overlap with the window counts
    assert threads.busy_seconds(trace, t1, t1 + 1) == 0.0


def test_tracing_counts_a_part_from_the_end_of_its_wait_for_an_earlier_job(monkeypatch):
    """A part of a job that needs another waits for it inside the hand-out; that wait is
    no work, so its record starts once the job it needs is done."""
    import time

    monkeypatch.setattr(threads, "_WORKERS", 2)
    with threads.tracing() as trace:
        # the thread done with the short part first takes the waiting one
        threads.run_jobs((lambda i: time.sleep(0.005 if i == 0 else 0.04), [0, 1]),
                         (lambda _: None, [0], 0))
    assert len(trace) == 3
    *first, last = sorted(trace, key=lambda r: r[2])  # the waiting part ends last
    assert last[1] >= max(end for _, _, end in first) - 1e-3
    assert last[2] - last[1] < 0.01


def test_jobs_too_small_to_cut_up_run_on_the_calling_thread(monkeypatch):
    """Two independent single-part jobs (a small batch's kernel and input gradients) do not
    wake the thread pool; jobs that were cut into parts share one hand-out."""
    handed_out = []
    monkeypatch.setattr(threads, "run_parts", lambda fn, parts: handed_out.append(list(parts)))
    done = []
    threads.run_jobs((done.append, ["a"]), (done.append, ["b"]))
    assert done == ["a", "b"] and handed_out == []
    threads.run_jobs((done.append, ["c", "d"]), (done.append, ["e"]))
    assert len(handed_out) == 1 and len(handed_out[0]) == 3


def test_a_job_that_needs_another_starts_after_all_its_parts(monkeypatch):
    """A job ``(fn, parts, after)`` in the same hand-out sees every part of job ``after``
    finished, however the two threads share them; its error still reaches the caller."""
    import time

    monkeypatch.setattr(threads, "_WORKERS", 2)

    def slow(first, i):
        time.sleep(0.002 * (i % 3))
        first.append(i)

    for _ in range(5):
        first, seen = [], []
        threads.run_jobs((functools.partial(slow, first), range(7)), (lambda j: None, range(3)),
                         (lambda j, first=first, seen=seen: seen.append(len(first)), range(4), 0))
        assert seen == [7, 7, 7, 7]

    def fail(i):
        raise ValueError("first job failed")

    with pytest.raises(ValueError, match="first job"):
        threads.run_jobs((fail, range(2)), (seen.append, range(2), 0))


def test_independent_jobs_take_turns_in_the_hand_out_on_two_threads(monkeypatch):
    """On two threads the parts of jobs that wait for none alternate (so the threads run
    different jobs side by side); on one thread each job runs whole, in order. Jobs that
    wait for another come last either way."""
    for workers, want in ((2, ["p0", "k0", "p1", "k1", "p2", "a0"]),
                          (1, ["p0", "p1", "p2", "k0", "k1", "a0"])):
        monkeypatch.setattr(threads, "_WORKERS", workers)
        order = []
        monkeypatch.setattr(threads, "run_parts",
                            lambda fn, parts: [fn(p) for p in parts])
        threads.run_jobs((lambda i, order=order: order.append(f"p{i}"), range(3)),
                         (lambda i, order=order: order.append(f"k{i}"), range(2)),
                         (lambda i, order=order: order.append(f"a{i}"), range(1), 0))
        assert order == want


def test_deferred_work_runs_beside_later_parts_and_is_finished_when_the_block_ends(
        monkeypatch):
    """In a ``deferring`` block with two threads, deferred parts are handed to the helper
    behind the next parts handed out, and every part has run (once) and ``finish`` has been
    called when the block ends; outside a block, or on one thread, ``defer`` runs at once."""
    import threading
    import time

    monkeypatch.setattr(threads, "_WORKERS", 2)
    ran, finished = [], []
    main = threading.current_thread().name

    def slow(i):
        time.sleep(0.002)
        ran.append((i, threading.current_thread().name))

    with threads.deferring():
        assert threads.can_defer()
        job = threads.defer(slow, range(20), lambda: finished.append(len(ran)) or "sums")
        assert ran == [] and not job.done
        threads.run_parts(lambda i: time.sleep(0.005), range(4))  # hands the job on
        # this thread goes on while the helper works through the deferred parts
        time.sleep(0.03)
        assert 0 < len(ran) < 20 and {name for _, name in ran} != {main}
    assert sorted(i for i, _ in ran) == list(range(20)) and finished == [20]
    assert job.result() == "sums" and finished == [20]  # finished once

    for workers, scoped in ((2, False), (1, True)):
        monkeypatch.setattr(threads, "_WORKERS", workers)
        done = []
        with threads.deferring() if scoped else contextlib.nullcontext():
            assert not threads.can_defer()
            threads.defer(done.append, range(3), functools.partial(done.append, "end"))
            assert done == [0, 1, 2, "end"]


def test_an_error_in_deferred_work_reaches_the_caller_when_the_block_ends(monkeypatch):
    """A failing deferred part does not stop the block's other work; its error is raised
    when the block ends, after every deferred job has finished."""
    monkeypatch.setattr(threads, "_WORKERS", 2)
    done = []

    def fail(i):
        if i == 3:
            raise ValueError("deferred part 3 failed")

    with pytest.raises(ValueError, match="deferred part 3"):
        with threads.deferring():
            threads.defer(fail, range(6), lambda: None)
            threads.defer(done.append, range(4), lambda: done.append("end"))
            threads.run_parts(lambda i: None, range(4))
    assert sorted(done[:4]) == [0, 1, 2, 3] and done[4] == "end"
    assert not threads.can_defer()  # the block is over


def test_importing_core_first_holds_blas_to_one_thread():
    """``import core`` before NumPy sets OpenBLAS to one thread, unless the user chose."""
    import os
    import subprocess
    import sys

    code = ("import core, numpy; from core.kernels import blas_threads; "
            "print(blas_threads())")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, cwd=root).stdout.strip()
    if out == "None":
        pytest.skip("threadpoolctl does not see NumPy's BLAS here")
    assert out == "1"
    env["OPENBLAS_NUM_THREADS"] = "2"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, cwd=root).stdout.strip()
    assert out == str(min(2, os.cpu_count() or 1))


def test_a_scratch_buffer_is_lent_again_only_when_nobody_holds_it():
    """A buffer that an array, a view or a saved state still refers to is never handed out
    again; once it is free, the same memory comes back."""
    scratch = Scratch()
    a = scratch.get("out", (4, 5), np.float32)
    b = scratch.get("out", (4, 5), np.float32)
    assert b is not a                                   # a is still held
    view = b[1:]
    del b
    assert scratch.get("out", (4, 5), np.float32) is not view.base  # a view holds it
    del view
    c = scratch.get("out", (4, 5), np.float32)
    d = scratch.get("out", (4, 5), np.float32)
    assert c is not d
    free_id = id(d)
    del d
    assert id(scratch.get("out", (4, 5), np.float32)) == free_id
    assert scratch.get("out", (4, 5), np.float64).dtype == np.float64   # dtype is part of the key
    assert scratch.get("out", (5, 4), np.float32).shape == (5, 4)


def test_scratch_for_makes_one_scratch_per_owner_and_blocks_per_pool_thread():
    """An op instance keeps one Scratch; threads outside the pool share one block buffer."""
    class Owner:
        pass

    one, two = Owner(), Owner()
    assert scratch_for(one) is scratch_for(one)
    assert scratch_for(one) is not scratch_for(two)
    block_for = thread_blocks(scratch_for(one), 3, 4, np.float64, tag="cols")
    assert block_for((2, 5)).shape == (3, 12)
    assert {key[0] for key in scratch_for(one)._arrays} == {"cols-caller"}


def _nice():
    return os.getpriority(os.PRIO_PROCESS, 0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="niceness is per thread on Linux")
def test_a_thread_lowers_its_own_priority_only_and_never_raises_it():
    """lower_thread_priority changes the calling thread, not the others, and a call asking for
    a higher priority than the thread has leaves it as it is."""
    seen = {}

    def body():
        seen["before"] = _nice()
        seen["lowered"] = threads.lower_thread_priority(seen["before"] + 3)
        seen["after"] = _nice()
        threads.lower_thread_priority(seen["before"])  # a higher priority: not taken
        seen["kept"] = _nice()

    main = _nice()
    worker = threading.Thread(target=body)
    worker.start()
    worker.join()
    assert seen["lowered"] and seen["after"] == seen["before"] + 3 == seen["kept"]
    assert _nice() == main


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="niceness is per thread on Linux")
def test_the_pools_helpers_now_and_later_run_at_the_lowered_priority(monkeypatch):
    """Every running helper takes the new niceness, and helpers the pool starts afterwards
    (a larger thread count) start with it; the calling thread keeps its own."""
    monkeypatch.setattr(threads, "_pool", None)  # a pool of this test's own
    monkeypatch.setattr(threads, "_helper_nice", 0)
    monkeypatch.setattr(threads, "_WORKERS", 3)
    main = _nice()
    target = max(main, 0) + 4
    try:
        assert threads.lower_helper_priority(target)
        gate = threading.Barrier(2)

        def nice_of_a_helper():
            gate.wait(5)  # both helpers at once: each answers for itself
            return _nice()

        pool = threads._workers()
        assert [f.result(10) for f in [pool.submit(nice_of_a_helper) for _ in range(2)]] \
            == [target, target]
        monkeypatch.setattr(threads, "_WORKERS", 4)  # a new pool of three helpers
        gate = threading.Barrier(3)
        pool = threads._workers()
        assert [f.result(10) for f in [pool.submit(nice_of_a_helper) for _ in range(3)]] \
            == [target] * 3
        assert _nice() == main
    finally:
        if threads._pool is not None:
            threads._pool[2].shutdown(wait=True)


def test_the_blas_description_names_the_kernels_and_a_pinned_core_type():
    """benchmark headers say which BLAS kernels ran, and when the environment chose them"""
    import os
    import platform
    import subprocess
    import sys

    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("OpenBLAS core types are named for x86-64 CPUs")
    code = "import core; from core.kernels import blas_kernels; print(blas_kernels())"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    env["OPENBLAS_CORETYPE"] = "Nehalem"  # SSE4.2 kernels: x86-64 CPUs of the last 15 years
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, cwd=root).stdout.strip()
    if out.startswith("BLAS unknown") or not out.startswith("openblas"):
        pytest.skip(f"not OpenBLAS, or threadpoolctl cannot see it: {out}")
    assert "Nehalem kernels (OPENBLAS_CORETYPE=Nehalem is set)" in out


class _Lib:
    def __init__(self, **info):
        self._info = info

    def info(self):
        return dict(self._info)


class _Ctl:
    def __init__(self, **info):
        self.lib_controllers = [_Lib(**info)]


@pytest.mark.parametrize("arch, pinned, avx512, hint", [
    ("Haswell", "Haswell", True, True),      # held to AVX2 kernels on an AVX-512 CPU
    ("SkylakeX", "SkylakeX", True, False),   # AVX-512 kernels: nothing to say
    ("Haswell", None, True, False),          # OpenBLAS's own choice: not the user's setting
    ("Haswell", "Haswell", False, False),    # the CPU has no AVX-512
])
def test_a_hint_names_a_core_type_that_holds_openblas_below_the_cpu(monkeypatch, arch, pinned,
                                                                    avx512, hint):
    """training tells the user when OPENBLAS_CORETYPE keeps AVX-512 kernels from running"""
    from core.kernels import blas

    monkeypatch.setattr(blas, "_blas_controller",
                        lambda: _Ctl(internal_api="openblas", architecture=arch))
    monkeypatch.setattr(blas, "_cpu_has_avx512", lambda: avx512)
    if pinned is None:
        monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    else:
        monkeypatch.setenv("OPENBLAS_CORETYPE", pinned)
    text = blas.blas_kernel_hint()
    if hint:
        assert text.startswith(f"OPENBLAS_CORETYPE={pinned} holds NumPy's BLAS")
        assert "AVX-512" in text
    else:
        assert text is None
