"""A NumPy-backed stand-in for the part of CuPy the core uses, so device code runs without a GPU.

Like CuPy's, its arrays never turn into NumPy arrays by themselves: ``np.asarray`` on one
raises ``TypeError``, NumPy's functions and ufuncs refuse them, arithmetic or indexing
with a NumPy array (other than a scalar) is refused, and only ``.get()`` and
:func:`asnumpy` copy data back to the host. So a NumPy call left in a device path fails
a test here just as it would fail on a GPU. Functions return arrays where CuPy does
(a reduction gives a 0-d array, not a scalar); ``asarray`` copies host data, so nothing
aliases host memory. :func:`install` puts it in ``sys.modules`` as ``cupy`` and
``cupyx``, with one "CUDA device", and makes the core find it again.
"""

from __future__ import annotations

import math
import sys
import types

import numpy as np

_REFUSE = ("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to "
           "construct a NumPy array explicitly.")  # CuPy's own message


_METADATA = (np.shape, np.ndim, np.size)
# every copy between host and device: ("to_device" | "to_host", number of elements)
TRANSFERS: list = []


def _un(v):
    """The wrapped ndarray of a device array; host arrays are refused like CuPy does."""
    if isinstance(v, ndarray):
        return v._a
    if isinstance(v, np.ndarray):
        raise TypeError(f"Unsupported type {type(v)}")
    if isinstance(v, (list, tuple)):
        return type(v)(_un(i) for i in v)
    return v


def _wrap(r):
    if isinstance(r, np.ndarray):
        return ndarray(r)
    if isinstance(r, np.generic):  # CuPy gives 0-d arrays where NumPy gives scalars
        return ndarray(np.asarray(r))
    if isinstance(r, tuple):
        return tuple(_wrap(i) for i in r)
    if isinstance(r, list):
        return [_wrap(i) for i in r]
    return r


def _call(fn, args, kwargs):
    return _wrap(fn(*[_un(a) for a in args], **{k: _un(v) for k, v in kwargs.items()}))


class ndarray:  # noqa: N801 - CuPy's name
    """A device array: an ndarray the host cannot see without ``.get()``."""

    __slots__ = ("_a",)
    __array_ufunc__ = None  # NumPy ufuncs refuse it; NumPy operators defer to it
    __array_priority__ = 1000

    def __init__(self, a):
        self._a = a

    def __array__(self, *args, **kwargs):
        raise TypeError(_REFUSE)

    def __array_function__(self, func, types, args, kwargs):
        if func in _METADATA:  # CuPy answers these through the same protocol; no data moves
            return func(args[0]._a, *args[1:], **kwargs)
        return NotImplemented  # np.sum(x), np.where(x, …) and the like raise TypeError

    # what reads data back, explicitly
    def get(self, stream=None, out=None):
        TRANSFERS.append(("to_host", self._a.size))
        return np.array(self._a, copy=True)

    def item(self):
        TRANSFERS.append(("to_host", 1))
        return self._a.item()

    def tolist(self):
        TRANSFERS.append(("to_host", self._a.size))
        return self._a.tolist()

    def __float__(self):
        TRANSFERS.append(("to_host", 1))
        return float(self._a)

    def __int__(self):
        TRANSFERS.append(("to_host", 1))
        return int(self._a)

    def __bool__(self):
        TRANSFERS.append(("to_host", 1))
        return bool(self._a)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (ndarray(np.asarray(r)) if not isinstance(r, np.ndarray) else ndarray(r)
                for r in self._a)

    def __repr__(self):
        return "array(" + np.array2string(self._a, separator=", ") + ", device=standin)"

    # attributes
    shape = property(lambda self: self._a.shape)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    dtype = property(lambda self: self._a.dtype)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray(self._a.T))

    def __getitem__(self, key):
        return _wrap(self._a[_un(key)])

    def __setitem__(self, key, value):
        self._a[_un(key)] = _un(value)

    __hash__ = None


def _method(name):
    def m(self, *args, **kwargs):
        return _call(getattr(self._a, name), args, kwargs)
    m.__name__ = name
    return m


for _name in ("reshape", "transpose", "swapaxes", "sum", "mean", "max", "min", "argmax",
              "argmin", "prod", "var", "std", "any", "all", "cumsum", "astype", "copy", "ravel",
              "flatten", "fill", "squeeze", "clip", "dot", "take", "repeat", "nonzero", "view",
              "round", "conj"):
    setattr(ndarray, _name, _method(_name))


def _binary(name):
    op = getattr(np.ndarray, name)

    def m(self, other):
        if isinstance(other, np.ndarray):
            raise TypeError(f"Unsupported type {type(other)}")
        if not isinstance(other, (ndarray, int, float, complex, bool, np.generic)):
            return NotImplemented
        return _wrap(op(self._a, _un(other)))
    m.__name__ = name
    return m


def _inplace(name):
    op = getattr(np.ndarray, name)

    def m(self, other):
        if isinstance(other, np.ndarray):
            raise TypeError(f"Unsupported type {type(other)}")
        op(self._a, _un(other))
        return self
    m.__name__ = name
    return m


for _base in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or",
              "xor"):
    setattr(ndarray, f"__{_base}__", _binary(f"__{_base}__"))
    setattr(ndarray, f"__r{_base}__", _binary(f"__r{_base}__"))
    setattr(ndarray, f"__i{_base}__", _inplace(f"__i{_base}__"))
for _cmp in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(ndarray, f"__{_cmp}__", _binary(f"__{_cmp}__"))
for _unary in ("neg", "pos", "abs", "invert"):
    setattr(ndarray, f"__{_unary}__",
            (lambda op: lambda self: _wrap(op(self._a)))(getattr(np.ndarray, f"__{_unary}__")))
ndarray.__module__ = "cupy"  # where the core looks to tell device arrays apart


# ------------------------------------------------------------------ module
def asarray(a, dtype=None, order=None):
    """Host data to the device (a copy, as a transfer is); a device array stays as it is."""
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == np.dtype(dtype) else a.astype(dtype)
    out = np.array(a, dtype=dtype, order=order or "K", copy=True)
    TRANSFERS.append(("to_device", out.size))
    return ndarray(out)


def array(a, dtype=None, copy=True, order="K"):
    if isinstance(a, ndarray):
        return ndarray(np.array(a._a, dtype=dtype, copy=copy, order=order))
    out = np.array(a, dtype=dtype, copy=True, order=order)
    TRANSFERS.append(("to_device", out.size))
    return ndarray(out)


def asnumpy(a, stream=None, order="C", out=None):
    return a.get() if isinstance(a, ndarray) else np.asarray(a)


def get_array_module(*args):
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else np


_FUNCTIONS = (
    "zeros", "ones", "empty", "full", "zeros_like", "ones_like", "empty_like", "full_like",
    "arange", "eye", "exp", "log", "log1p", "expm1", "logaddexp", "sqrt", "square", "abs",
    "absolute", "sign", "tanh", "sin", "cos", "floor", "ceil", "rint", "round", "maximum",
    "minimum", "where", "clip", "sum", "mean", "prod", "max", "min", "amax", "amin", "argmax",
    "argmin", "any", "all", "isfinite", "isnan", "isinf", "matmul", "dot", "vdot", "einsum",
    "tensordot", "outer", "stack", "concatenate", "pad", "transpose", "swapaxes", "moveaxis",
    "reshape", "expand_dims", "squeeze", "broadcast_to", "take", "take_along_axis", "copyto",
    "putmask", "multiply", "add", "subtract", "divide", "true_divide", "negative", "power",
    "sort", "argsort", "cumsum", "unique", "bincount", "flatnonzero", "nonzero", "ravel",
    "ascontiguousarray", "deg2rad", "logical_and", "logical_or", "logical_not", "equal",
    "greater", "less", "tile", "repeat", "count_nonzero", "var", "std", "flip", "indices",
)


class _Grid:
    """``mgrid``: index grids made on the device."""

    def __getitem__(self, key):
        return ndarray(np.mgrid[key])


class Generator:
    """``cupy.random.Generator``: NumPy's generator, its draws made on the device."""

    def __init__(self, seed):
        self._rng = np.random.default_rng(seed)

    def random(self, size=None, dtype=np.float64, out=None):
        return ndarray(np.asarray(self._rng.random(size, dtype=dtype)))

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        return ndarray(np.asarray(self._rng.standard_normal(size, dtype=dtype)))

    def uniform(self, low=0.0, high=1.0, size=None, dtype=np.float64):
        return ndarray(np.asarray(self._rng.uniform(low, high, size)).astype(dtype))

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False):
        return ndarray(np.asarray(self._rng.integers(low, high, size, dtype, endpoint)))


def default_rng(seed=None):
    if seed is not None and not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int; got {type(seed).__name__}")  # as XORWOW takes
    return Generator(seed)


def _erf(x):
    a = _un(x)
    return ndarray(np.vectorize(math.erf, otypes=[np.float64])(a).astype(a.dtype))


def scatter_add(a, slices, value):
    np.add.at(_un(a), _un(slices), _un(value))


def scatter_max(a, slices, value):
    np.maximum.at(_un(a), _un(slices), _un(value))


def show_config():
    print("CuPy stand-in backed by NumPy", np.__version__)


def build(devices: int = 1) -> dict:
    """The modules to put in ``sys.modules``: ``cupy``, ``cupyx`` and its parts."""
    cp = types.ModuleType("cupy")
    this = sys.modules[__name__]
    for name in _FUNCTIONS:
        fn = getattr(np, name)
        setattr(cp, name, (lambda f: lambda *a, **k: _call(f, a, k))(fn))
    for name in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
                 "uint32", "bool_", "dtype", "finfo", "iinfo", "result_type", "newaxis", "inf",
                 "nan", "pi", "e"):
        setattr(cp, name, getattr(np, name))
    cp.ndarray = ndarray
    cp.asarray, cp.array, cp.asnumpy = asarray, array, asnumpy
    cp.get_array_module, cp.show_config, cp.mgrid = get_array_module, show_config, _Grid()
    cp.random = types.SimpleNamespace(default_rng=default_rng, Generator=Generator)

    def count():
        if devices < 1:
            raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
        return devices
    # the device runs nothing asynchronously: waiting for it returns at once
    device = types.SimpleNamespace(synchronize=lambda: None)
    cp.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(
        getDeviceCount=count, getDeviceProperties=lambda i: {"name": b"NumPy stand-in"}),
        Device=lambda i=0: device)
    cp.__standin__ = this
    cupyx = types.ModuleType("cupyx")
    cupyx.scatter_add, cupyx.scatter_max = scatter_add, scatter_max
    special = types.ModuleType("cupyx.scipy.special")
    special.erf = _erf
    scipy = types.ModuleType("cupyx.scipy")
    scipy.special = special
    cupyx.scipy = scipy
    return {"cupy": cp, "cupyx": cupyx, "cupyx.scipy": scipy, "cupyx.scipy.special": special}


def install(monkeypatch, devices: int = 1):
    """Make the core see the stand-in as CuPy (``devices`` CUDA devices) for one test."""
    from core.kernels import backend  # noqa: PLC0415

    for name, mod in build(devices).items():
        monkeypatch.setitem(sys.modules, name, mod)
    TRANSFERS.clear()
    monkeypatch.setattr(backend, "_probe", None)  # probed again now, and restored after
    return sys.modules["cupy"]


def uninstall_cupy(monkeypatch):
    """Make the core see no CuPy at all (for a machine that has one installed)."""
    from core.kernels import backend  # noqa: PLC0415

    for name in ("cupy", "cupyx"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    monkeypatch.setattr(backend, "_probe", None)
