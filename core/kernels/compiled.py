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

The window loads them on a background thread after its first paint
(:func:`load_in_background`); while that runs, :func:`kernels` answers ``None``
at once and the NumPy kernels run meanwhile (each forward records which ran,
so its backward takes the same path). The command line loads them on first use.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

_state = {"module": None, "tried": False, "enabled": True,
          "loader": None,    # the background loading thread while it runs
          "warming": None}   # the module it loaded, used by that thread alone until it is warm
_lock = threading.Lock()
# Held by a thread while it imports a large third-party package (numba here, pyqtgraph in the
# window): two such imports at once on two threads met a half-imported module both use
# (colorama) and one of them failed
IMPORT_LOCK = threading.RLock()


def importing_now() -> bool:
    """Whether another thread is importing a large package (:data:`IMPORT_LOCK` is held)."""
    if IMPORT_LOCK.acquire(blocking=False):
        IMPORT_LOCK.release()
        return False
    return True


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
        with IMPORT_LOCK:
            from core.kernels import _numba  # noqa: PLC0415 - numba is loaded on first use only
    except Exception as exc:  # noqa: BLE001 - no numba, or one that does not load
        log.warning("compiled kernels unavailable (%s: %s); using the NumPy kernels",
                    type(exc).__name__, exc)
        return None
    return _numba


_warmers = []  # the kernel modules' own warm-ups (see warm_up_with)


def warm_up_with(fn):
    """Register ``fn`` (no arguments) to run on the loading thread once numba is loaded: a
    kernel module compiles its kernels there, so no later call waits for the compiler."""
    _warmers.append(fn)
    return fn


def _load_and_warm():
    """What the background thread does: load the module, then compile its kernels."""
    module = _load()
    if module is not None:
        _state["warming"] = module
        for fn in list(_warmers):
            fn()
    return module


def _background():
    try:
        module = _load_and_warm()
    except Exception as exc:  # noqa: BLE001 - a kernel that does not compile while warming
        failed("warm-up", exc)
        module = None
    with _lock:
        if not _state["tried"]:  # a kernel that failed while warming has said so already
            _state["module"] = module
            _state["tried"] = True
        _state["loader"] = _state["warming"] = None


def load_in_background() -> bool:
    """Start loading (and compiling) the kernels on a plain Python thread; ``False`` when
    they are loaded, being loaded, or switched off. Until it is done, :func:`kernels`
    returns ``None`` at once and the NumPy kernels run."""
    with _lock:
        if _state["tried"] or _state["loader"] is not None or not _state["enabled"]:
            return False
        t = threading.Thread(target=_background, name="compiled-kernels", daemon=True)
        _state["loader"] = t
    t.start()
    return True


def loading() -> bool:
    """Whether a background load is in progress."""
    return _state["loader"] is not None


def wait_loaded(timeout: float | None = None) -> bool:
    """Wait for a background load to end (scripts and tests); ``True`` when none runs."""
    t = _state["loader"]
    if t is not None:
        t.join(timeout)
    return _state["loader"] is None


def kernels():
    """The compiled kernels module, or ``None`` (no numba, failed, switched off, or still
    loading in the background)."""
    if not _state["enabled"]:
        return None
    if not _state["tried"]:
        loader = _state["loader"]
        if loader is not None:
            # the loading thread warms the kernels through the ordinary calls; others go on
            # with the NumPy kernels instead of waiting
            return _state["warming"] if threading.current_thread() is loader else None
        with _lock:
            if not _state["tried"] and _state["loader"] is None:
                _state["module"] = _load()
                _state["tried"] = True
    return _state["module"]


def failed(name: str, exc: BaseException) -> None:
    """A kernel did not compile: say so once and use the NumPy kernels from now on."""
    with _lock:
        if _state["module"] is not None or _state["warming"] is not None:
            log.warning("compiled kernel %s failed (%s: %s); using the NumPy kernels",
                        name, type(exc).__name__, exc)
        _state["module"] = _state["warming"] = None
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
