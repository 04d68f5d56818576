"""Scratch buffers: big per-batch temporaries reused once nothing refers to them."""

from __future__ import annotations

import sys
import threading

import numpy as np

from core.kernels.threads import POOL_PREFIX

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
