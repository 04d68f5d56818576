"""Scratch buffers: cache-line aligned, reused only when nothing refers to them."""

import gc

import numpy as np
import pytest

from core.kernels.scratch import ALIGN, Scratch, aligned_empty


@pytest.mark.parametrize("shape, dtype", [((3, 4), np.float32), ((7,), np.float64),
                                          ((2, 3, 5), np.bool_), ((0, 4), np.float32),
                                          ((), np.int64)])
def test_aligned_empty_starts_on_a_cache_line(shape, dtype):
    for _ in range(20):  # malloc's 16-byte blocks land on every offset of a line in turn
        a = aligned_empty(shape, dtype)
        assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
        # an empty array has no data to align (NumPy gives it any address)
        assert a.flags.writeable and (a.size == 0 or a.ctypes.data % ALIGN == 0)
        a[...] = 1
        assert (a == 1).all()


def test_scratch_buffers_are_aligned_and_reused_once_free():
    s = Scratch()
    a = s.get("x", (5, 6), np.float32)
    assert a.ctypes.data % ALIGN == 0
    first = id(a)
    del a
    assert id(s.get("x", (5, 6), np.float32)) == first  # nobody held it: the same buffer


@pytest.mark.parametrize("keep", [
    lambda a: a,                          # the buffer itself
    lambda a: a.T,                        # a view of it
    lambda a: a.reshape(-1)[3:9],         # a view of a view
    lambda a: a[1:].view(np.int32),       # another dtype's view of part of it
])
def test_a_buffer_anyone_still_sees_is_never_handed_out_again(keep):
    s = Scratch()
    a = s.get("x", (5, 6), np.float32)
    a[...] = 7
    held = keep(a)
    del a
    gc.collect()
    b = s.get("x", (5, 6), np.float32)
    assert not np.shares_memory(b, held)
    b[...] = -1
    assert (np.asarray(held).view(np.float32) == 7).all()
