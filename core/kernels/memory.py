"""Memory: the pages of arrays freed in one batch serve the next one.

glibc's malloc serves a block larger than its mmap threshold (128 KiB at first) with
fresh pages from the system and hands them back when the block is freed; and it hands
back the top of its heap once more than its trim threshold is free there. A training
step makes and frees arrays of the same sizes every batch, so either way it would fault
the same pages in again, every batch. glibc raises both thresholds by itself as larger
blocks are freed, but how far depends on what ran before in the process (importing some
libraries frees a large block). :func:`keep_freed_memory` sets them from the start.
"""

from __future__ import annotations

import ctypes
import os
import sys

# mallopt's parameter numbers (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc's largest mmap threshold of its own on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX)
MMAP_THRESHOLD = 32 << 20
# as large, so the heap does not shrink under a step's arrays; more would raise the peak
TRIM_THRESHOLD = MMAP_THRESHOLD


def _user_set() -> bool:
    """Whether the environment sets malloc's thresholds itself: then its settings stand."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return ("MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ
            or "malloc.mmap_threshold" in tunables or "malloc.trim_threshold" in tunables)


def keep_freed_memory() -> bool:
    """Blocks under :data:`MMAP_THRESHOLD` come from the heap, and up to
    :data:`TRIM_THRESHOLD` of freed heap stays with the process for reuse.

    ``False`` (nothing changed) where the C library is not glibc, or where the
    environment already sets malloc's thresholds.
    """
    if not sys.platform.startswith("linux") or _user_set():
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it (musl has no mallopt)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success
    return (mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
