"""Compiled kernels: numba versions of the memory-bound loops, loaded on first use.

The plain NumPy kernels beside this module are the reference and the fallback.
Where a loop of many small NumPy calls (each holding the GIL between calls and
making a strided copy) can be one pass over memory, a numba kernel
(:mod:`core.kernels._numba`) does it instead, with the GIL released, on the
thread pool's parts (:mod:`core.kernels.threads`): numba starts no threads of
its own, so the layer thread count is the only one there is.

numba is imported the first time a kernel asks for it, never by ``import core``
(it takes a while to load). Compiled code is cached on disk: next to the
sources when that folder is writable, else in the user's cache folder. When
numba is missing or a kernel fails to compile, one log line says so and the
NumPy kernels run: slower, never wrong.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

_state = {"module": None, "tried": False, "enabled": True}
_lock = threading.Lock()


def _cache_dir() -> Path | None:
    """Where numba keeps compiled code when this package's folder is read-only
    (an installed copy): ``$XDG_CACHE_HOME/backprop-studio/numba``; ``None`` when
    the folder beside the sources can be written."""
    here = Path(__file__).resolve().parent
    cache = here / "__pycache__"
    if os.access(cache if cache.exists() else here, os.W_OK):
        return None
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "backprop-studio" / "numba"


def _load():
    """Import numba and the kernels (compiled lazily, per argument types); ``None`` if it fails."""
    try:
        where = _cache_dir()
        if where is not None and "NUMBA_CACHE_DIR" not in os.environ:
            where.mkdir(parents=True, exist_ok=True)
            # read by numba when it is imported, just below
            os.environ["NUMBA_CACHE_DIR"] = str(where)
        from core.kernels import _numba  # noqa: PLC0415 - numba is loaded on first use only
    except Exception as exc:  # noqa: BLE001 - no numba, or one that does not load
        log.warning("compiled kernels unavailable (%s: %s); using the NumPy kernels",
                    type(exc).__name__, exc)
        return None
    return _numba


def kernels():
    """The compiled kernels module, or ``None`` (no numba, failed, or switched off)."""
    if not _state["enabled"]:
        return None
    if not _state["tried"]:
        with _lock:
            if not _state["tried"]:
                _state["module"] = _load()
                _state["tried"] = True
    return _state["module"]


def failed(name: str, exc: BaseException) -> None:
    """A kernel did not compile: say so once and use the NumPy kernels from now on."""
    with _lock:
        if _state["module"] is not None:
            log.warning("compiled kernel %s failed (%s: %s); using the NumPy kernels",
                        name, type(exc).__name__, exc)
        _state["module"] = None
        _state["tried"] = True


def set_enabled(flag: bool) -> bool:
    """Use the compiled kernels (``True``, the default) or the NumPy ones; returns the old
    setting. The NumPy kernels are the reference the compiled ones are tested against."""
    old = _state["enabled"]
    _state["enabled"] = bool(flag)
    return old


def enabled() -> bool:
    """Whether the compiled kernels run (numba loaded, nothing failed, not switched off)."""
    return kernels() is not None
