"""The op contract and the registry every part of the studio reads.

An op is one class: its parameter spec, shape inference, ``forward``,
``backward`` (one vector-Jacobian product per input), display formulas, a
palette category and sample inputs for the registry-driven tests. It registers
itself with :func:`register_op`; a duplicate id is an error.

Example
-------
>>> import numpy as np
>>> from core.ops import get_op
>>> op = get_op("sigmoid")()
>>> ctx = Context()
>>> y = op.forward(ctx, np.array(0.0))
>>> float(y), float(op.backward(ctx, np.array(1.0))[0])
(0.5, 0.25)
"""

from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from core.errors import GraphError, MemoryLimitError, ParamError, ShapeError

Shape = tuple  # a tuple of int, with None for a dimension not known yet (the batch)

# palette category -> its label, in palette order
CATEGORIES = {
    "inputs": "Inputs",
    "math": "Math",
    "activations": "Activations",
    "layers": "Layers",
    "losses": "Losses",
    "regularization": "Regularization",
}


# largest dimension a shape may declare: numpy's index type (larger ones cannot even be inspected)
MAX_DIM = 2**63 - 1


def _is_int(value) -> bool:
    """A true integer: ``int`` or a NumPy integer, not ``bool``."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _as_int(value) -> int:
    """``value`` as an int; integral floats pass, text and booleans do not (TypeError)."""
    if _is_int(value):
        return int(value)
    if isinstance(value, (float, np.floating)) and math.isfinite(value) \
            and float(value).is_integer():
        return int(value)
    raise TypeError


def _as_float(value) -> float:
    """``value`` as a finite float; text, booleans, NaN and ±Inf raise TypeError."""
    if not (_is_int(value) or isinstance(value, (float, np.floating))):
        raise TypeError
    out = float(value)  # OverflowError for a huge int: reported like a type error
    if not math.isfinite(out):
        raise TypeError
    return out


@dataclass(frozen=True)
class Param:
    """One parameter of an op, as the inspector shows it and the file stores it.

    Parameters
    ----------
    name : str
        Key in the node's ``params`` and in files.
    kind : str
        ``"int"``, ``"float"``, ``"bool"``, ``"choice"``, ``"str"``, ``"ints"``
        (a tuple of ``length`` ints; a single int is repeated) or ``"shape"``
        (a tuple of ints where ``None`` marks the batch dimension).
    default : object
        Value used when the node does not set it.
    low, high : float, optional
        Inclusive range for numbers (each element for ``"ints"``).
    choices : tuple of str
        Allowed values of a ``"choice"``.
    length : int
        Number of elements of an ``"ints"`` parameter.
    doc : str
        One line for the tooltip.
    optional : bool
        ``None`` is allowed (for example an ``axis`` that means "all").
    quiet : bool
        A setting the node card leaves out (it rarely changes and would crowd the card);
        the inspector still shows it.
    """

    name: str
    kind: str
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    length: int = 2
    doc: str = ""
    optional: bool = False
    quiet: bool = False

    def validate(self, value: Any, where: str = ""):
        """Return ``value`` converted to this parameter's type, or raise :class:`ParamError`."""
        label = f"{where}: parameter '{self.name}'" if where else f"parameter '{self.name}'"
        if value is None:
            if self.optional:
                return None
            raise ParamError(f"{label} is required")
        try:
            if self.kind == "int":
                out = _as_int(value)
                self._check_range(out, label)
                if abs(out) > MAX_DIM:  # numpy cannot take it as an axis or a size
                    raise ParamError(f"{label} must be between {-MAX_DIM} and {MAX_DIM}")
            elif self.kind == "float":
                out = _as_float(value)
                self._check_range(out, label)
            elif self.kind == "bool":
                if not isinstance(value, (bool, np.bool_)):
                    raise TypeError
                out = bool(value)
            elif self.kind == "choice":
                if not isinstance(value, str) or value not in self.choices:
                    raise ParamError(f"{label} must be one of {', '.join(self.choices)}; "
                                     f"got {value!r}")
                out = str(value)
            elif self.kind == "str":
                if not isinstance(value, str):
                    raise TypeError
                out = value
            elif self.kind == "ints":
                if _is_int(value):
                    value = (int(value),) * self.length
                if not isinstance(value, (list, tuple)):  # text like "55" is not (5, 5)
                    raise TypeError
                items = tuple(value)
                if len(items) != self.length:
                    raise ParamError(f"{label} needs {self.length} integers; got {len(items)}")
                out = tuple(Param(self.name, "int", 0, self.low, self.high).validate(v, where)
                            for v in items)
            elif self.kind == "shape":
                if not isinstance(value, (list, tuple)):  # text like "42" is not (4, 2)
                    raise TypeError
                out = tuple(None if v is None or (_is_int(v) and v == -1) else
                            Param(self.name, "int", 0, 1, MAX_DIM).validate(v, where)
                            for v in value)
            else:  # pragma: no cover - a spec bug, not user input
                raise AssertionError(f"unknown parameter kind {self.kind}")
        except ParamError:
            raise
        except (TypeError, ValueError, OverflowError):
            raise ParamError(f"{label} must be {self._kind_text()}; got {value!r}") from None
        return out

    def _check_range(self, v, label):
        if self.low is not None and v < self.low:
            raise ParamError(f"{label} must be ≥ {self.low}; got {v}")
        if self.high is not None and v > self.high:
            raise ParamError(f"{label} must be ≤ {self.high}; got {v}")

    def _kind_text(self) -> str:
        texts = {"int": "an integer", "float": "a finite number", "bool": "true or false",
                 "str": "text", "ints": f"{self.length} integers",
                 "shape": "a list of positive integers (null for the batch)"}
        return texts.get(self.kind, self.kind)


@dataclass(frozen=True)
class WeightSpec:
    """A tensor an op owns and trains (a layer's kernel or bias).

    ``init`` names an initializer in :mod:`core.init`; ``fan_in``/``fan_out``
    feed Xavier and He scaling.
    """

    shape: tuple
    init: str = "zeros"
    fan_in: int = 1
    fan_out: int = 1


@dataclass
class Sample:
    """One test case for an op: its parameters and its inputs (weights after inputs)."""

    inputs: tuple
    params: dict = field(default_factory=dict)
    note: str = ""
    training: bool = False


class Context:
    """Per-node, per-run scratch space: ``forward`` saves what ``backward`` needs here.

    Attributes
    ----------
    training : bool
        Dropout and batch norm behave differently in training.
    rng : numpy.random.Generator
        Random source for this node and run, seeded so replays are identical.
    needs_input_grad : tuple of bool
        Which inputs (then weights) want a gradient; ops may skip the others.
    state : dict
        Persistent per-node buffers that are not trained (batch-norm running averages).
    outputs_wanted : set of int, optional
        Outputs something reads (``None``: all); see :meth:`wants`.
    """

    def __init__(self, training=False, rng=None, needs_input_grad=None, state=None,
                 outputs_wanted=None):
        self.training = training
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.needs_input_grad = needs_input_grad
        self.state = state if state is not None else {}
        self.outputs_wanted = outputs_wanted

    def needs(self, i: int) -> bool:
        """Whether input ``i`` (counting weights after inputs) wants a gradient."""
        return self.needs_input_grad is None or bool(self.needs_input_grad[i])

    def wants(self, k: int) -> bool:
        """Whether output ``k`` is read; an op may return ``None`` for one that is not."""
        return self.outputs_wanted is None or k in self.outputs_wanted


class Op:
    """Base class of every op. Subclasses set the class attributes and override methods.

    Class attributes
    ----------------
    id : str
        Registry key, set by :func:`register_op`.
    label : str
        Name shown in the palette and on the node.
    category : str
        A key of :data:`CATEGORIES`.
    inputs, outputs : tuple of str
        Port names, in order.
    weights : tuple of str
        Trainable tensors the op owns; ``forward`` receives them after the inputs.
    no_grad_inputs : tuple of str
        Inputs that get no gradient (targets, indices).
    index_ports : tuple of str
        Ports (inputs or outputs) that carry integer indices, not values; see :meth:`port_kind`.
    state_like : dict
        Buffers kept in the node's ``state`` but not trained (batch-norm running
        statistics), each mapped to the weight whose shape it shares.
    params : tuple of Param
        The parameter spec.
    formula, derivative : str
        What the op computes and its local derivative, for display.
    """

    id: ClassVar[str] = ""
    label: ClassVar[str] = ""
    category: ClassVar[str] = "math"
    inputs: ClassVar[tuple] = ("x",)
    outputs: ClassVar[tuple] = ("out",)
    weights: ClassVar[tuple] = ()
    no_grad_inputs: ClassVar[tuple] = ()
    index_ports: ClassVar[tuple] = ()  # integer-index ports, drawn and checked apart
    state_like: ClassVar[dict] = {}  # saved, untrained buffer -> weight whose shape it has
    params: ClassVar[tuple] = ()
    formula: ClassVar[str] = ""
    derivative: ClassVar[str] = ""
    description: ClassVar[str] = ""
    source: ClassVar[bool] = False
    elementwise: ClassVar[bool] = False  # local derivative is one number per element
    # ids of ops g with this op applied after g equal to before it, gradients included, bit
    # for bit (ReLU and max pool): a plan pass may move the op behind a g it feeds
    commutes_with: ClassVar[tuple] = ()
    is_loss: ClassVar[bool] = False
    # what a loss's prediction input holds, so the trainer can read accuracy from it:
    # "logits", "log_probs", "logit", "prob" or "scores"; None for ops that are not losses
    scores: ClassVar[str | None] = None

    def score_kind(self) -> str | None:
        """What this loss's prediction input holds (:attr:`scores`; a parameter may choose)."""
        return self.scores

    def __init__(self, **params):
        self.p = self.validate_params(params)

    @classmethod
    def validate_params(cls, params: dict, where: str = "") -> dict:
        """Fill defaults and check every value; unknown names are an error."""
        spec = {p.name: p for p in cls.params}
        unknown = set(params) - set(spec)
        if unknown:
            name = sorted(unknown)[0]
            hint = difflib.get_close_matches(name, spec, n=1)
            extra = f" (did you mean '{hint[0]}'?)" if hint else ""
            known = ", ".join(spec) or "none"
            raise ParamError(f"{where + ': ' if where else ''}op '{cls.id}' has no parameter "
                             f"'{name}'{extra}; it takes: {known}")
        return {name: p.validate(params.get(name, p.default), where) for name, p in spec.items()}

    # ----------------------------------------------------------------- shapes
    @classmethod
    def port_kind(cls, port: str, is_output: bool) -> str:
        """What flows through ``port``: ``"tensor"``, ``"target"`` or ``"index"``.

        ``"index"``: integer indices (:attr:`index_ports`); ``"target"``: an input that
        gets no gradient (:attr:`no_grad_inputs`); anything else is a ``"tensor"``.
        """
        if port in cls.index_ports:
            return "index"
        if not is_output and port in cls.no_grad_inputs:
            return "target"
        return "tensor"

    def infer_shapes(self, *shapes: Shape) -> tuple:
        """Output shapes from input shapes; raise :class:`ShapeError` if they do not fit.

        The default suits elementwise ops: the broadcast of all inputs.
        """
        return (broadcast_shapes(*shapes),)

    def weight_specs(self, *shapes: Shape) -> dict:
        """Shapes and initializers of the weights, from the input shapes."""
        return {}

    def multiply_adds(self, *shapes: Shape) -> int:
        """Multiply-adds of one forward pass (batch dimension taken as 1)."""
        return 0

    # -------------------------------------------------------------- numerics
    def forward(self, ctx: Context, *xs):
        """Compute the outputs (one array, or a tuple when the op has several)."""
        raise NotImplementedError

    def backward(self, ctx: Context, *grads):
        """Vector-Jacobian products: one gradient per input then per weight, ``None`` if none."""
        raise NotImplementedError

    # ----------------------------------------------------------------- tests
    @classmethod
    def sample_inputs(cls, rng: np.random.Generator) -> list:
        """Test cases in float64; the default is one unary case away from kinks."""
        return [Sample((rng.uniform(0.2, 1.5, (3, 4)) * rng.choice([-1, 1], (3, 4)),))]

    @classmethod
    def torch_reference(cls, torch, params: dict, *xs):
        """The same computation in PyTorch, for comparison tests; ``None`` if there is none."""
        return None

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.p.items())
        return f"{type(self).__name__}({args})"


# ---------------------------------------------------------------- registry
REGISTRY: dict[str, type[Op]] = {}


def register_op(op_id: str):
    """Class decorator adding an op to the registry under ``op_id``; duplicates are an error."""

    def deco(cls):
        if op_id in REGISTRY:
            raise ValueError(f"op id '{op_id}' is registered twice "
                             f"({REGISTRY[op_id].__qualname__} and {cls.__qualname__})")
        if cls.category not in CATEGORIES:
            raise ValueError(f"op '{op_id}' has unknown category '{cls.category}'")
        cls.id = op_id
        if not cls.label:
            cls.label = op_id.replace("_", " ").title()
        REGISTRY[op_id] = cls
        return cls

    return deco


def get_op(op_id: str) -> type[Op]:
    """The op class registered as ``op_id``; an unknown id names the closest ones."""
    try:
        return REGISTRY[op_id]
    except KeyError:
        hint = difflib.get_close_matches(str(op_id), REGISTRY, n=3)
        extra = f"; did you mean {', '.join(hint)}?" if hint else ""
        raise GraphError(f"unknown op '{op_id}'{extra}") from None


# ----------------------------------------------------------------- helpers
def broadcast_shapes(*shapes: Shape) -> Shape:
    """NumPy broadcasting of shapes that may hold ``None`` (unknown batch)."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(-ndim, 0):
        dims = [s[axis] for s in shapes if len(s) >= -axis]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise ShapeError("shapes " + " and ".join(fmt_shape(s) for s in shapes)
                             + " cannot be broadcast together")
        if known:
            out.append(known.pop())
        elif None in dims:
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


def fmt_shape(shape: Shape) -> str:
    """``(None, 3)`` -> ``"(B, 3)"``; ``()`` -> ``"scalar"``."""
    if shape is None:
        return "?"
    if len(shape) == 0:
        return "scalar"
    return "(" + ", ".join("B" if d is None else str(d) for d in shape) + ")"


def unbroadcast(grad, shape: tuple):
    """Sum ``grad`` down to ``shape``, undoing NumPy broadcasting (for elementwise backward)."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def numel(shape: Shape) -> int:
    """Number of elements, counting an unknown batch as 1."""
    return math.prod(1 if d is None else int(d) for d in shape)  # exact: no int64 wrap-around


def physical_memory() -> int:
    """Bytes of RAM of this machine (16 GiB where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


# most bytes one tensor, or all the values of one run, may take; None: the machine's RAM
MEMORY_LIMIT: int | None = None


def memory_limit() -> int:
    """The byte limit that :func:`check_allocation` enforces."""
    return MEMORY_LIMIT if MEMORY_LIMIT is not None else physical_memory()


def fmt_bytes(n: int) -> str:
    """``80000000000`` -> ``"74.5 GiB"``."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def check_allocation(shape: Shape, dtype, node: str, what: str = "shape"):
    """Raise :class:`MemoryLimitError` if an array of ``shape`` cannot fit in memory.

    Called before allocating, so that a file asking for a huge tensor gets a
    clear error naming ``node`` instead of a ``MemoryError`` (or the kernel
    killing the process once the pages are touched).
    """
    nbytes = numel(shape) * np.dtype(dtype).itemsize
    limit = memory_limit()
    if nbytes > limit:
        raise MemoryLimitError(f"node '{node}': {what} {fmt_shape(shape)} needs "
                               f"{fmt_bytes(nbytes)}; this computer has {fmt_bytes(limit)} "
                               "of memory", nodes=(node,))
