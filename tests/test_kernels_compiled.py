"""The compiled kernels (core.kernels.compiled): the same numbers as the NumPy kernels, the
same bits on one or two threads, loaded only when first used, and a NumPy fallback that
says so once when numba is missing or a kernel does not compile."""

import logging
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from conftest import on_both_threads

from core.kernels import compiled, pool, threads
from core.kernels.scratch import Scratch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

needs_numba = pytest.mark.skipif(not compiled.enabled(), reason="numba is not installed")


def _out_hw(hw, kernel, stride, padding):
    return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(hw, kernel, stride, padding))


def _batch_last(x):
    """``x`` with batch-last memory, as the image kernels hand their outputs on."""
    return np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)


def _max_pool(x, kernel, stride, padding, training=True, want_indices=True, on=True,
              seed=1):
    """Forward and backward of max pooling on the compiled (``on``) or the NumPy kernels."""
    old = compiled.set_enabled(on)
    try:
        scratch = Scratch()
        out, idx, state = pool.max_pool2d_forward(
            scratch, x, kernel, stride, padding, _out_hw(x.shape[2:], kernel, stride, padding),
            want_indices=want_indices, training=training)
        assert state.compiled == on
        g = np.random.default_rng(seed).normal(size=out.shape).astype(x.dtype)
        gx = pool.max_pool2d_backward(scratch, state, g)
        return out.copy(), None if idx is None else idx.copy(), gx.copy()
    finally:
        compiled.set_enabled(old)


CASES = [
    # x shape, kernel, stride, padding, note
    ((1, 1, 5, 7), (2, 2), (2, 2), (0, 0), "batch 1, uneven fit"),
    ((3, 2, 6, 8), (2, 2), (2, 2), (0, 0), "2×2 tiles"),
    ((5, 3, 9, 6), (3, 2), (3, 2), (0, 0), "3×2 tiles, odd batch"),
    ((2, 2, 7, 7), (3, 3), (2, 2), (1, 1), "3×3, stride 2, pad 1"),
    ((3, 1, 5, 7), (2, 3), (1, 2), (0, 1), "overlapping rows, column padding"),
    ((2, 2, 8, 8), (2, 2), (3, 3), (0, 0), "gaps between windows"),
]


@needs_numba
@pytest.mark.parametrize("case", CASES, ids=[c[-1] for c in CASES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["batch-last", "batch-first"])
def test_compiled_max_pool_gives_the_numpy_kernels_numbers(case, dtype, layout):
    """Maxima and indices are the NumPy kernels' bits for float32 and float64, for a batch-
    last input and a plain (batch-first, non-contiguous batch-last view) one; the gradient
    too where windows do not overlap, to rounding where they add up."""
    shape, kernel, stride, padding, _ = case
    x = np.random.default_rng(0).integers(0, 3, size=shape).astype(dtype)  # many ties
    if layout == "batch-last":
        x = _batch_last(x)
    fast = _max_pool(x, kernel, stride, padding, on=True)
    plain = _max_pool(x, kernel, stride, padding, on=False)
    np.testing.assert_array_equal(fast[0], plain[0])
    np.testing.assert_array_equal(fast[1], plain[1])
    if all(s >= k for s, k in zip(stride, kernel)):
        np.testing.assert_array_equal(fast[2], plain[2])
    else:
        np.testing.assert_allclose(fast[2], plain[2], rtol=1e-6, atol=1e-6)


@needs_numba
@pytest.mark.parametrize("training, want_indices", [(True, False), (False, True), (False, False)])
def test_compiled_max_pool_backward_finds_the_maxima_however_forward_ran(training,
                                                                        want_indices):
    """Without the tap numbers kept for training (an evaluation forward), backward finds
    the first maxima again: the same gradient as the NumPy kernels."""
    x = _batch_last(np.random.default_rng(3).integers(0, 3, (4, 3, 8, 6)).astype(np.float32))
    fast = _max_pool(x, (2, 2), (2, 2), (0, 0), training, want_indices, on=True)
    plain = _max_pool(x, (2, 2), (2, 2), (0, 0), training, want_indices, on=False)
    for a, b in zip(fast, plain):
        if a is None:
            assert b is None
        else:
            np.testing.assert_array_equal(a, b)


@needs_numba
def test_a_nan_maximum_sends_no_gradient_like_the_numpy_kernels():
    """A window holding NaN has the maximum NaN and passes no gradient back, as on NumPy."""
    x = np.zeros((2, 1, 4, 4), np.float32)
    x[0, 0, 1, 1] = np.nan
    fast = _max_pool(x, (2, 2), (2, 2), (0, 0), on=True)
    plain = _max_pool(x, (2, 2), (2, 2), (0, 0), on=False)
    np.testing.assert_array_equal(fast[0], plain[0])  # NaN equals NaN here
    np.testing.assert_array_equal(fast[1], plain[1])
    np.testing.assert_array_equal(fast[2], plain[2])
    assert fast[2][0, 0, :2, :2].tolist() == [[0, 0], [0, 0]]


@needs_numba
@pytest.mark.parametrize("case", CASES, ids=[c[-1] for c in CASES])
def test_nan_and_ties_in_windows_inside_and_at_the_padding_match_the_numpy_kernels(case):
    """Windows inside the input and windows reaching into the padding (compiled apart):
    NaN maxima, ties and the first maximum's position are the NumPy kernels' bits."""
    shape, kernel, stride, padding, _ = case
    rng = np.random.default_rng(7)
    x = rng.integers(0, 3, size=(4,) + shape[1:]).astype(np.float32)
    x.reshape(-1)[rng.choice(x.size, max(1, x.size // 15), replace=False)] = np.nan
    x = _batch_last(x)
    fast = _max_pool(x, kernel, stride, padding, on=True)
    plain = _max_pool(x, kernel, stride, padding, on=False)
    np.testing.assert_array_equal(fast[0], plain[0])
    np.testing.assert_array_equal(fast[1], plain[1])
    np.testing.assert_allclose(fast[2], plain[2], rtol=1e-6, atol=1e-6)


@needs_numba
@pytest.mark.parametrize("case", CASES[1:], ids=[c[-1] for c in CASES[1:]])
def test_compiled_max_pool_gives_the_same_bits_on_one_or_two_threads(case, monkeypatch):
    """Cut into many parts fixed by the shapes, the compiled pool gives the same bits
    whether one thread runs every part or two share them."""
    monkeypatch.setattr(threads, "_MIN_SPLIT_BYTES", 0)
    monkeypatch.setattr(threads, "COMPILED_PART_BYTES", 64)
    monkeypatch.setattr(pool, "COMPILED_PART_BYTES", 64)
    monkeypatch.setattr(pool, "_POOL_MIN_SPLIT", 0)
    shape, kernel, stride, padding, _ = case
    x = _batch_last(np.random.default_rng(4).normal(size=(6, 5) + shape[2:]).astype(np.float32))
    spy, ran_on = on_both_threads(compiled.kernels().max_pool_rows)

    results = []
    monkeypatch.setattr(compiled.kernels(), "max_pool_rows", spy)
    for workers in (2, 1):
        monkeypatch.setattr(threads, "_WORKERS", workers)
        results.append(_max_pool(x, kernel, stride, padding, on=True))
    assert any(name.startswith(threads.POOL_PREFIX) for name in ran_on)  # two threads ran
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_parts_use_two_threads_however_busy_the_machine_is(monkeypatch):
    """A high load average no longer sends the layers to one thread: the pool's helper
    thread still takes parts (the numbers never depended on it, and figures measured
    on one thread would misstate the two-thread speed)."""
    import time

    monkeypatch.setattr(threads, "_WORKERS", 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (99.0, 99.0, 99.0))
    names = set()

    def part(i):
        names.add(threading.current_thread().name)
        time.sleep(0.002)

    threads.run_parts(part, range(40))
    assert any(name.startswith(threads.POOL_PREFIX) for name in names)


def test_set_layer_threads_changes_who_runs_the_parts_and_checks_its_argument(monkeypatch):
    """``set_layer_threads(1)`` runs every part on the calling thread; ``None`` goes back
    to one thread per core; a count below 1 is an error naming it."""
    monkeypatch.setattr(threads, "_WORKERS", threads._WORKERS)
    old = threads.set_layer_threads(1)
    assert threads.layer_threads() == 1
    names = set()
    threads.run_parts(lambda i: names.add(threading.current_thread().name), range(20))
    assert names == {threading.current_thread().name}
    assert threads.set_layer_threads(None) == 1
    assert threads.layer_threads() == max(1, min(4, os.cpu_count() or 1))
    with pytest.raises(ValueError, match="at least 1|≥ 1"):
        threads.set_layer_threads(0)
    threads.set_layer_threads(old)


def _python(code, **env):
    full = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


def test_numba_is_imported_only_when_a_kernel_first_needs_it():
    """``import core``, the ops, the executor and the window's module leave numba unloaded
    (it is slow to import); the first max pooling loads it."""
    code = ("import sys, numpy as np; import core, core.ops, core.executor, core.kernels, "
            "core.kernels.compiled, core.kernels.pool; import app.main_window; "
            "print('numba' in sys.modules); "
            "from core.kernels import pool; from core.kernels.scratch import Scratch; "
            "pool.max_pool2d_forward(Scratch(), np.zeros((1, 1, 4, 4)), (2, 2), (2, 2), (0, 0),"
            " (2, 2)); print('numba' in sys.modules)")
    out = _python(code, QT_QPA_PLATFORM="offscreen")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert lines[0] == "False"
    if lines[1] == "False":
        pytest.skip("numba is not installed")


def test_without_numba_the_numpy_kernels_run_after_one_log_line():
    """With numba missing, pooling gives the NumPy kernels' numbers and one warning says
    the compiled kernels are unavailable; no traceback, no second warning."""
    code = ("import sys, logging; sys.modules['numba'] = None; logging.basicConfig(); "
            "import numpy as np; from core.kernels import pool, compiled; "
            "from core.kernels.scratch import Scratch; x = np.arange(32.).reshape(2, 1, 4, 4); "
            "outs = [pool.max_pool2d_forward(Scratch(), x, (2, 2), (2, 2), (0, 0), (2, 2))[0]"
            " for _ in range(3)]; "
            "print(outs[0].ravel().tolist(), compiled.enabled())")
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ("[5.0, 7.0, 13.0, 15.0, 21.0, 23.0, 29.0, 31.0] False")
    warnings = [line for line in out.stderr.splitlines() if "compiled kernels unavailable" in line]
    assert len(warnings) == 1 and "Traceback" not in out.stderr


@needs_numba
def test_a_kernel_that_fails_to_compile_falls_back_to_numpy_once(monkeypatch):
    """A kernel that raises (as a failed compile does) is logged once; that call and every
    later one get the NumPy kernels' numbers."""
    class Broken:
        def __getattr__(self, name):
            def fail(*args):
                raise RuntimeError(f"cannot compile {name}")
            return fail

    x = _batch_last(np.random.default_rng(5).normal(size=(2, 2, 6, 6)))
    want = _max_pool(x, (2, 2), (2, 2), (0, 0), on=False)
    monkeypatch.setitem(compiled._state, "module", Broken())
    monkeypatch.setitem(compiled._state, "tried", True)
    messages = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("core.kernels.compiled")
    logger.addHandler(handler)
    monkeypatch.setattr(logger, "disabled", False)
    monkeypatch.setattr(logger, "level", logging.WARNING)
    try:
        scratch = Scratch()
        for _ in range(2):
            out, idx, state = pool.max_pool2d_forward(scratch, x, (2, 2), (2, 2), (0, 0),
                                                      (3, 3), training=True)
            assert not state.compiled
    finally:
        logger.removeHandler(handler)
    np.testing.assert_array_equal(out, want[0])
    np.testing.assert_array_equal(idx, want[1])
    assert messages == [
        "compiled kernel max_pool2d failed (RuntimeError: cannot compile max_pool_rows); "
        "using the NumPy kernels"]
    assert compiled.kernels() is None


def test_compiled_code_is_cached_in_the_user_cache_when_the_package_is_read_only(monkeypatch,
                                                                                tmp_path):
    """An installed, read-only copy keeps numba's cache under
    ``$XDG_CACHE_HOME/backprop-studio/numba``; a writable tree keeps it beside the sources."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert compiled._cache_dir() == tmp_path / "backprop-studio" / "numba"
    monkeypatch.setattr(os, "access", lambda path, mode: True)
    assert compiled._cache_dir() is None


@pytest.fixture
def unloaded(monkeypatch):
    """The compiled kernels as before their first use, with a loader the test releases."""
    release, started = threading.Event(), threading.Event()
    sentinel = object()

    def slow_load():
        started.set()
        release.wait(30)  # bounded, so a broken test fails instead of hanging
        return sentinel

    monkeypatch.setattr(compiled, "_load_and_warm", slow_load)
    for key, value in (("tried", False), ("module", None), ("loader", None),
                       ("warming", None), ("enabled", True)):
        monkeypatch.setitem(compiled._state, key, value)
    yield release, started, sentinel
    release.set()
    compiled.wait_loaded(30)


def test_while_a_background_load_runs_kernels_answers_none_at_once(unloaded):
    """While the background load runs, ``kernels()`` returns ``None`` without waiting for it
    (on another thread too), pooling runs on the NumPy kernels with their numbers, and a
    second start is refused; once the load ends, ``kernels()`` returns the module."""
    release, started, sentinel = unloaded
    assert compiled.load_in_background()
    assert started.wait(10)
    assert compiled.loading()
    answers, done = [], threading.Event()

    def ask():
        answers.append(compiled.kernels())
        done.set()

    threading.Thread(target=ask).start()
    assert done.wait(10), "kernels() waited for the background load"
    assert answers == [None] and compiled.kernels() is None
    assert not compiled.load_in_background()  # one load at a time
    x = _batch_last(np.random.default_rng(6).normal(size=(2, 3, 6, 6)).astype(np.float32))
    old = compiled.set_enabled(False)
    want = pool.max_pool2d_forward(Scratch(), x, (2, 2), (2, 2), (0, 0), (3, 3))[0].copy()
    compiled.set_enabled(old)
    out, _, state = pool.max_pool2d_forward(Scratch(), x, (2, 2), (2, 2), (0, 0), (3, 3),
                                            training=True)
    assert not state.compiled  # the state says which kernels ran, for its backward
    np.testing.assert_array_equal(out, want)
    release.set()
    assert compiled.wait_loaded(10)
    assert not compiled.loading()
    assert compiled.kernels() is sentinel
    assert not compiled.load_in_background()  # loaded: nothing more to do


def test_the_command_line_still_loads_the_kernels_on_first_use(unloaded, monkeypatch):
    """Without a background load, the first ``kernels()`` loads them and waits (as the
    command line and scripts want)."""
    _, _, sentinel = unloaded
    monkeypatch.setattr(compiled, "_load", lambda: sentinel)
    assert compiled.kernels() is sentinel and not compiled.loading()


@needs_numba
def test_a_background_load_compiles_every_pool_kernel_before_it_is_used():
    """After a background load, the max-pool kernels are compiled for float32 and float64,
    and pooling forward and backward (tiled and overlapping, training and inference) then
    compiles nothing more: the first step of a graph in the window compiles nothing."""
    code = ("import numpy as np; from core.kernels import compiled, pool; "
            "from core.kernels.scratch import Scratch; assert compiled.load_in_background(); "
            "compiled.wait_loaded(); nb = compiled.kernels(); "
            "kernels = [nb.pool_rows(2, 2), nb.pool_rows(3, 3), nb.pool_indices, "
            "nb.max_pool_back_tiled, nb.max_pool_back_add]; "
            "print(sorted({str(s[0].dtype) for s in nb.pool_rows(2, 2).signatures})); "
            "before = [len(k.signatures) for k in kernels]; "
            "xs = [np.random.default_rng(0).normal(size=(3, 2, 6, 6)).astype(t) "
            "for t in (np.float32, np.float64)]; "
            "runs = [(x, k, s, tr, wi) for x in xs for k, s in (((2, 2), (2, 2)), ((3, 3), (1, 1)))"
            " for tr, wi in ((True, True), (True, False), (False, True), (False, False))]; "
            "outs = [pool.max_pool2d_forward(Scratch(), x, k, s, (0, 0), "
            "((6 - k[0]) // s[0] + 1,) * 2, want_indices=wi, training=tr) "
            "for x, k, s, tr, wi in runs]; "
            "assert all(st.compiled for _, _, st in outs); "
            "[pool.max_pool2d_backward(Scratch(), st, np.ones_like(o)) for o, _, st in outs]; "
            "print([len(k.signatures) for k in kernels] == before)")
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["['float32',", "'float64']", "True"]


def test_a_background_load_compiles_the_presets_thin_convolutions_before_they_are_used():
    """After a background load (started, as in the window, once the ops are loaded), a
    LeNet-5 and a Keras-CNN training step compile no convolution kernel (nor the pool that
    pools a convolution's rows as they are made): the window's first step of either preset
    does not wait for numba."""
    code = ("import numpy as np; import core.ops; from core.kernels import compiled; "
            "assert compiled.load_in_background(); compiled.wait_loaded(); "
            "nb = compiled.kernels(); "
            "count = lambda: (sorted((k, len(f.signatures)) for k, f in nb._conv_rows.items()), "
            "len(nb.conv_kernel_grad.signatures), len(nb.pool_rows(2, 2).signatures)); "
            "before = count(); "
            "from core.serialize import load_graph; from core.train.trainer import Trainer; "
            "from core.train.optim import make_optimizer; "
            "[Trainer(load_graph(f'examples/{n}.json'), make_optimizer('sgd', lr=0.01), "
            "batch_size=4, seed=0).train_step(np.zeros((4, 1, 28, 28), np.float32), "
            "np.zeros(4, np.int64)) for n in ('lenet5', 'keras_mnist_cnn')]; "
            "print(before[1] > 0 and before[2] > 0 and count() == before)")
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "True"


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_relu_on_a_convolutions_rows_gives_the_bits_of_the_plain_relu(dtype):
    """``RowReLU`` (ReLU in place on the rows a part just made, and its mask) against
    ``relu_forward`` on the whole map: the same bits, NaN of either sign, −0.0, ±inf and
    subnormal numbers included, whatever rows each call gets."""
    from core.kernels.elementwise import RowReLU, relu_forward
    from core.kernels.layout import batch_first

    rng = np.random.default_rng(3)
    special = np.array([-1.0, -0.0, 0.0, 2.5, np.nan, -np.nan, -np.inf, np.inf, 1e-310,
                        -1e-310, 1e-45, -1e-45], dtype)
    y4 = rng.standard_normal((3, 5, 4, 16)).astype(dtype)
    y4.reshape(-1)[:200] = np.resize(special, 200)
    ref, ref_mask = relu_forward(None, batch_first(y4.copy()))
    relu = RowReLU.make(Scratch(), y4.shape)
    for r0, r1 in ((0, 2), (2, 3), (3, 5)):
        relu.rows(y4, r0, r1)
    y, mask = relu.result(batch_first(y4))
    assert np.ascontiguousarray(y).tobytes() == np.ascontiguousarray(ref).tobytes()
    np.testing.assert_array_equal(mask, ref_mask)
    assert mask.strides == ref_mask.strides  # laid out as the ReLU's own mask
