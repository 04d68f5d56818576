"""Array back ends: NumPy always, CuPy when installed and asked for.

The ops in ``core.ops`` say what they compute and call the kernels of
``core.kernels``; the kernels are where an array back end is chosen. Those kernels
are written for NumPy on the CPU: a thread pool, reused buffers (``np.empty``,
reference counts) and strided views, none of which carries over to CuPy. A GPU back
end is therefore a second set of kernels behind the same calls; in the ops themselves
only a few NumPy constructors remain (such as empty bias gradients and the unpooled
output), which would take their module from :func:`array_module`.
The executor moves data to a device and back with :func:`to_device` and :func:`to_numpy`.
"""

from __future__ import annotations

import numpy as np


def cupy_module():
    """Return the ``cupy`` module, or ``None`` when it is missing or has no device."""
    try:
        import cupy  # noqa: PLC0415 - optional dependency

        cupy.cuda.runtime.getDeviceCount()
    except Exception:  # ImportError, or CUDA runtime without a device
        return None
    return cupy


def available_devices() -> list[str]:
    """Names of the devices this machine can run on, ``"cpu"`` first."""
    return ["cpu"] + (["cuda"] if cupy_module() is not None else [])


def array_module(x):
    """The module (``numpy`` or ``cupy``) that owns array ``x``."""
    mod = type(x).__module__
    if mod.startswith("cupy"):
        import cupy  # noqa: PLC0415

        return cupy
    return np


def to_numpy(x):
    """Copy ``x`` to host memory as a NumPy array (no copy if it is already there)."""
    if x is None:
        return None
    if type(x).__module__.startswith("cupy"):
        return x.get()
    return np.asarray(x)


def to_device(x, device: str):
    """Move a NumPy array to ``device`` (``"cpu"`` or ``"cuda"``)."""
    if device == "cpu":
        return to_numpy(x)
    if device == "cuda":
        cp = cupy_module()
        if cp is None:
            raise RuntimeError("device 'cuda' asked for, but CuPy or a CUDA device is missing; "
                               "install the 'gpu' extra on a machine with an NVIDIA GPU")
        return cp.asarray(x)
    raise ValueError(f"unknown device {device!r}; expected one of {available_devices()}")
