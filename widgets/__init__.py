"""Qt views of the graph model (canvas, palette, inspector…). Importing this package
applies :func:`guard_none_refcount`, so every Qt view is protected."""

from __future__ import annotations

import sys


def guard_none_refcount() -> bool:
    """Keep ``None`` alive under a PySide6 build that forgets to ``Py_INCREF`` it.

    Some PySide6 wheels (seen with 6.12 on CPython 3.11) return ``None`` from void
    C++ methods without taking a reference, as if ``None`` were immortal (it is from
    CPython 3.12 on, PEP 683). Each call then drops one reference, and after a few
    thousand calls (one repaint of a big canvas) CPython aborts with "deallocating
    None". When the leak is detected, ``None``'s count is raised out of reach, which
    is what 3.12 does by design. Returns whether the guard was needed.
    """
    if sys.version_info >= (3, 12):
        return False
    from PySide6.QtCore import QRectF  # noqa: PLC0415

    probe = QRectF()
    before = sys.getrefcount(None)
    for _ in range(32):
        probe.setWidth(1.0)
    if sys.getrefcount(None) >= before - 16:
        return False
    import ctypes  # noqa: PLC0415

    # ob_refcnt is the first field of every PyObject; None is never freed anyway
    ctypes.c_ssize_t.from_address(id(None)).value = 1 << 60
    return True


NONE_GUARD_APPLIED = guard_none_refcount()
