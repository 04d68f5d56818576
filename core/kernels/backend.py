"""Array back ends: NumPy always, CuPy when installed, a CUDA device is there and a run asks.

The array module (``numpy`` or ``cupy``) is chosen per run: the executor and the trainer
take ``device="cpu" | "cuda" | "auto"`` (scripts may set :data:`DEVICE_ENV`), move the
fed values and the weights there, and every op then works on whatever module owns its
inputs (:func:`array_module`). NumPy arrays go to the CPU kernels of ``core.kernels``
(threads, scratch buffers, strided views); other arrays go to the array-module kernels
of :mod:`core.kernels.device`. The few calls where NumPy and CuPy differ — scatter-add,
writing along an axis, the error function, random generators — are the functions
below, which every op uses. Data comes back to the host (:func:`to_numpy`) only for
display, for the stepping view and for saving.

Example
-------
>>> status = device_status()
>>> status["cpu"].available
True
>>> resolve_device("cpu")
'cpu'
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass

import numpy as np

from core.errors import StudioError
from core.kernels.blas import blas_kernel_hint, blas_kernels

DEVICES = ("cpu", "cuda", "auto")
DEVICE_ENV = "BACKPROP_STUDIO_DEVICE"  # scripts choose the device with it
GPU_INSTALL_HINT = ("install the 'gpu' extra (pip install 'backprop-studio[gpu]', CuPy for "
                    "CUDA 12) on a machine with an NVIDIA GPU and its driver")


class DeviceError(StudioError):
    """A device was asked for that this machine cannot run on (the message says why)."""


@dataclass(frozen=True)
class DeviceStatus:
    """Whether a device can run here; ``reason`` says what is missing, ``name`` what it is."""

    available: bool
    reason: str = ""
    name: str = ""


_probe: tuple | None = None  # (cupy module or None, reason, device name), made on first use


def _probe_cuda() -> tuple:
    try:
        import cupy  # noqa: PLC0415 - optional dependency
    except ImportError:
        return None, f"CuPy is not installed; {GPU_INSTALL_HINT}", ""
    except Exception as exc:  # a broken install raises anything at import
        return None, f"CuPy cannot be imported ({_first_line(exc)}); {GPU_INSTALL_HINT}", ""
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, no device, a CUDA version the wheel does not fit
        return None, (f"CuPy is installed but finds no CUDA device ({_first_line(exc)}); "
                      "check the NVIDIA driver and that the CuPy wheel matches the CUDA "
                      "version (python -c \"import cupy; cupy.show_config()\")"), ""
    if count < 1:
        return None, "CuPy is installed but this machine has no CUDA device", ""
    try:
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
        name = name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # the name is only for messages
        name = "CUDA device 0"
    return cupy, "", name


def _first_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _cuda() -> tuple:
    global _probe
    if _probe is None:
        _probe = _probe_cuda()
    return _probe


def reset_device_probe():
    """Forget what :func:`cupy_module` found (after CuPy was installed or replaced)."""
    global _probe
    _probe = None


def cupy_module():
    """Return the ``cupy`` module, or ``None`` when it is missing or has no device."""
    return _cuda()[0]


def device_status() -> dict:
    """``{device: DeviceStatus}`` for ``"cpu"`` and ``"cuda"``: available, or why not.

    The window greys out a device that is not available and shows the reason.
    """
    cp, reason, name = _cuda()
    cpu = f"CPU (NumPy; {blas_kernels()})"
    hint = blas_kernel_hint()
    return {"cpu": DeviceStatus(True, "", cpu + (f"\n{hint}" if hint else "")),
            "cuda": DeviceStatus(cp is not None, reason, name)}


def available_devices() -> list[str]:
    """Names of the devices this machine can run on, ``"cpu"`` first."""
    return ["cpu"] + (["cuda"] if cupy_module() is not None else [])


def resolve_device(device: str | None = None) -> str:
    """``"cpu"`` or ``"cuda"`` for a requested device; ``None`` reads :data:`DEVICE_ENV`.

    ``"cuda"`` on a machine without CuPy or a GPU is a :class:`DeviceError` saying
    what is missing; only ``"auto"`` falls back to the CPU.
    """
    if device is None:
        device = os.environ.get(DEVICE_ENV, "").strip() or "cpu"
        where = f" (from ${DEVICE_ENV})"
    else:
        where = ""
    name = str(device).strip().lower()
    if name not in DEVICES:
        raise DeviceError(f"unknown device {device!r}{where}; choose one of {', '.join(DEVICES)}")
    if name == "cpu":
        return "cpu"
    cp, reason, _ = _cuda()
    if cp is not None:
        return "cuda"
    if name == "auto":
        return "cpu"
    raise DeviceError(f"device 'cuda' was asked for{where} but cannot be used: {reason}; "
                      "or choose --device cpu (or auto, which falls back to the CPU)")


def describe_device(device: str) -> str:
    """``"cuda (NVIDIA …)"`` or ``"cpu"``, for the line that says where a run went."""
    if device == "cuda":
        return f"cuda ({_cuda()[2]})"
    return "cpu"


# ------------------------------------------------------------------ arrays
def array_module(x):
    """The module (``numpy`` or ``cupy``) that owns array ``x`` (NumPy for scalars)."""
    if type(x) is np.ndarray:  # the CPU path pays one type check
        return np
    if type(x).__module__.startswith("cupy"):
        return sys.modules["cupy"]
    return np


def on_host(x) -> bool:
    """Whether ``x`` lives in host memory (a NumPy array or a scalar)."""
    return type(x) is np.ndarray or not type(x).__module__.startswith("cupy")


def to_numpy(x):
    """Copy ``x`` to host memory as a NumPy array (no copy if it is already there)."""
    if x is None:
        return None
    if type(x).__module__.startswith("cupy"):
        return x.get()
    return np.asarray(x)


def to_device(x, device: str):
    """Move an array to ``device`` (``"cpu"`` or ``"cuda"``); no copy when it is there."""
    if device == "cpu":
        return to_numpy(x)
    if device == "cuda":
        cp = cupy_module()
        if cp is None:
            raise DeviceError(f"device 'cuda' cannot be used: {_cuda()[1]}")
        if isinstance(x, cp.ndarray):
            return x
        return cp.asarray(x)
    raise DeviceError(f"unknown device {device!r}; expected one of {available_devices()}")


def like(x, ref):
    """``x`` on the module of ``ref`` (a running statistic loaded on the host, say)."""
    if array_module(x) is array_module(ref):
        return x
    xp = array_module(ref)
    return to_numpy(x) if xp is np else xp.asarray(x)


# --------------------------------------- where NumPy and CuPy differ: one place
def scatter_add(a, index, values):
    """``a[index] += values`` with repeated indices adding up (``np.add.at``)."""
    if array_module(a) is np:
        np.add.at(a, index, values)
        return
    import cupyx  # noqa: PLC0415 - comes with CuPy

    cupyx.scatter_add(a, index, values)


def scatter_max(a, index, values):
    """``a[index] = max(a[index], values)`` with repeated indices (``np.maximum.at``)."""
    if array_module(a) is np:
        np.maximum.at(a, index, values)
        return
    import cupyx  # noqa: PLC0415 - comes with CuPy

    cupyx.scatter_max(a, index, values)


def put_along_last(a, index, values):
    """``np.put_along_axis(a, index, values, axis=-1)`` for NumPy and CuPy arrays alike."""
    xp = array_module(a)
    if xp is np:
        np.put_along_axis(a, index, values, axis=-1)
        return
    rows = math.prod(a.shape[:-1])
    flat = a.reshape(rows, a.shape[-1])  # a view: a is contiguous where the ops call this
    idx = index.reshape(rows, -1)
    vals = xp.broadcast_to(xp.asarray(values, dtype=a.dtype), index.shape).reshape(rows, -1)
    flat[xp.arange(rows)[:, None], idx] = vals


_erf_host = np.vectorize(math.erf, otypes=[np.float64])


def erf(x):
    """The error function, elementwise, in ``x``'s dtype."""
    if array_module(x) is np:
        return _erf_host(np.asarray(x, dtype=np.float64)).astype(x.dtype)
    from cupyx.scipy import special  # noqa: PLC0415 - comes with CuPy

    return special.erf(x).astype(x.dtype, copy=False)


def make_rng(seed_key, device: str = "cpu"):
    """A random generator for ``device`` seeded by ``seed_key`` (an int or a list of ints).

    On the CPU it is ``numpy.random.default_rng(seed_key)``; on CUDA a CuPy generator
    seeded with one number drawn from the same key, so runs are reproducible on each
    device (the two devices draw different streams).
    """
    if device == "cpu":
        return np.random.default_rng(seed_key)
    cp = cupy_module()
    if cp is None:
        raise DeviceError(f"device 'cuda' cannot be used: {_cuda()[1]}")
    seed = int(np.random.SeedSequence(seed_key).generate_state(1, np.uint32)[0])
    return cp.random.default_rng(seed)
