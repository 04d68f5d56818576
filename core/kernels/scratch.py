"""Scratch buffers: big per-batch temporaries reused once nothing refers to them."""

from __future__ import annotations

import sys
import threading

import numpy as np

from core.kernels.threads import POOL_PREFIX

# Buffers start on a cache line (malloc gives 16 bytes): vector loads then straddle no two
# lines, and parts cut at whole rows of a batch-last map start on a line too
ALIGN = 64


def aligned_empty(shape, dtype) -> np.ndarray:
    """An uninitialized C-contiguous array whose data starts on an :data:`ALIGN` boundary:
    a view of a slightly larger byte buffer (its ``base``), which every view of it keeps."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGN, np.uint8)
    start = -raw.ctypes.data % ALIGN
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def _refs(arr) -> tuple:
    """References to a buffer and to its byte buffer, which every view of it refers to
    (the caller's views of views included)."""
    return sys.getrefcount(arr), sys.getrefcount(arr.base)


_probe = {"a": aligned_empty((1,), np.float64)}
_UNSHARED = _refs(_probe["a"])  # those of a cached buffer nobody else holds
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
        """An uninitialized C-contiguous array on a cache-line boundary, reused when it is
        free."""
        key = (tag, tuple(shape), np.dtype(dtype).str)
        with self._lock:
            if key in self._arrays and _refs(self._arrays[key]) == _UNSHARED:
                return self._arrays[key]
            arr = aligned_empty(shape, dtype)
            self._arrays[key] = arr
            return arr


def scratch_for(owner) -> Scratch:
    """The :class:`Scratch` of ``owner`` (an op instance: one node's buffers), made on first use."""
    try:
        return owner._scratch
    except AttributeError:
        owner._scratch = Scratch()
        return owner._scratch


def thread_blocks(scratch, kb, row, dtype, tag="cols"):
    """Where each output-row span's block goes: a buffer per thread, reused from span to
    span so that it stays in cache.

    ``block_for(span)`` gives a ``(kb, rows·row)`` buffer. The pool's workers have a
    buffer each; every other thread (the main thread, a GUI's training thread, a new
    one per run) shares one, so buffers do not pile up run after run.
    :meth:`Scratch.get` never hands out a buffer still in use, so two such threads
    running at once stay correct (they only allocate more).
    """
    def block_for(span):
        name = threading.current_thread().name
        key = name if name.startswith(POOL_PREFIX) else "caller"
        return scratch.get(f"{tag}-{key}", (kb, (span[1] - span[0]) * row), dtype)

    return block_for
