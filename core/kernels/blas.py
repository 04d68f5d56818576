"""BLAS control: how many threads NumPy's BLAS may use while a batch runs.

The kernels share their work between cores themselves (:mod:`core.kernels.threads`);
a BLAS that threads on its own would take those cores and could round some products
differently, so :func:`own_threads` holds it to the calling thread.
"""

from __future__ import annotations

import contextlib
import functools
import os

_blas = {"controller": None, "tried": False}


def _blas_controller():
    """threadpoolctl's handle on NumPy's BLAS (``None`` when it is not installed)."""
    if not _blas["tried"]:
        _blas["tried"] = True
        try:
            import numpy  # noqa: F401, PLC0415 - threadpoolctl sees only libraries loaded
            from threadpoolctl import ThreadpoolController  # noqa: PLC0415 - optional
            _blas["controller"] = ThreadpoolController().select(user_api="blas")
        except Exception:  # noqa: BLE001 - no threadpoolctl, or no BLAS it knows
            _blas["controller"] = None
    return _blas["controller"]


def blas_threads():
    """How many threads NumPy's BLAS uses (``None`` when threadpoolctl cannot tell)."""
    ctl = _blas_controller()
    if ctl is None or not ctl.lib_controllers:
        return None
    return max(lib.num_threads for lib in ctl.lib_controllers)


def blas_kernels() -> str:
    """Which BLAS NumPy uses and the CPU kernels it picked, for benchmark headers.

    OpenBLAS picks its kernels by CPU model, or as ``OPENBLAS_CORETYPE`` says; a
    CPU with AVX-512 held to AVX2 kernels runs large products far slower, so the
    reader of a figure is told both.
    """
    lib = _blas_info()
    if lib is None:
        return "BLAS unknown (threadpoolctl cannot see it)"
    text = f"{lib.get('internal_api', 'BLAS')} {lib.get('version') or ''}".strip()
    arch = lib.get("architecture")
    if arch:
        text += f", {arch} kernels"
    pinned = os.environ.get("OPENBLAS_CORETYPE")
    if pinned and lib.get("internal_api") == "openblas":
        text += f" (OPENBLAS_CORETYPE={pinned} is set)"
    if _cpu_has_avx512():
        text += "; the CPU has AVX-512"
    return text


# OpenBLAS's names of its kernels that use AVX-512 (as threadpoolctl reports them)
_AVX512_KERNELS = frozenset({"skylakex", "cooperlake", "sapphirerapids"})


def blas_kernel_hint() -> str | None:
    """A line for the user when ``OPENBLAS_CORETYPE`` holds OpenBLAS to kernels without
    AVX-512 on a CPU that has it, else ``None``: such a setting often comes with the
    machine, and products then take up to twice as long."""
    pinned = os.environ.get("OPENBLAS_CORETYPE")
    if not pinned or not _cpu_has_avx512():
        return None
    lib = _blas_info()
    if lib is None or lib.get("internal_api") != "openblas":
        return None
    arch = lib.get("architecture") or pinned
    if arch.lower() in _AVX512_KERNELS:
        return None
    return (f"OPENBLAS_CORETYPE={pinned} holds NumPy's BLAS to its {arch} kernels on this "
            "CPU with AVX-512; without it, large products can run up to twice as fast")


def _blas_info() -> dict | None:
    """threadpoolctl's description of NumPy's BLAS (the first it sees), or ``None``."""
    ctl = _blas_controller()
    libs = [] if ctl is None else ctl.lib_controllers
    return libs[0].info() if libs else None


@functools.cache  # the CPU's flags do not change while the program runs
def _cpu_has_avx512() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return " avx512f" in line
    except OSError:
        pass
    return False


@contextlib.contextmanager
def own_threads():
    """Hold NumPy's BLAS to the calling thread while a batch runs.

    ``import core`` before NumPy already does this for the whole process; when
    NumPy was loaded first with a threaded BLAS, this limits it per batch.
    OpenBLAS's idle threads spin for a while after every threaded product and
    take the cores the layer pool's threads need, and products big enough to
    want two threads are split by :func:`core.kernels.matmul.matmul_small` instead.
    """
    # also with one layer thread: a BLAS on two threads may round some products
    # differently, and the numbers must not depend on how many threads share the work
    ctl = _blas_controller()
    if ctl is None or all(lib.num_threads == 1 for lib in ctl.lib_controllers):
        yield
        return
    with ctl.limit(limits=1):
        yield


