"""Learning-rate schedules.

A schedule maps training progress to a learning rate. The trainer calls
:meth:`Schedule.rate` before every batch with the epoch (counted from 0), the
batch index inside it and the number of batches per epoch, and
:meth:`Schedule.observe` after every epoch with the monitored metric (only
reduce-on-plateau uses it). :attr:`Schedule.current` is the rate last returned.

Example
-------
>>> s = Exponential(0.1, gamma=0.5)
>>> [s.rate(e) for e in range(3)]
[0.1, 0.05, 0.025]
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "step", "exponential", "inverse_time", "inverse_sqrt", "cosine",
             "warmup", "plateau")


class Schedule:
    """Base class. Subclasses implement :meth:`_rate` (per-epoch rules)."""

    name = "constant"

    def __init__(self, lr: float):
        if not (math.isfinite(lr) and lr >= 0):  # NaN passes "lr < 0"
            raise ValueError(f"learning rate must be a finite number ≥ 0; got {lr}")
        self.base_lr = float(lr)
        self.current = float(lr)

    def rate(self, epoch: int, batch: int = 0, batches: int = 1) -> float:
        """The learning rate for ``batch`` of ``epoch``; also stored in :attr:`current`."""
        self.current = float(self._rate(epoch, batch, batches))
        return self.current

    def _rate(self, epoch, batch, batches):
        return self.base_lr

    def observe(self, metric: float):
        """Called after each epoch with the monitored value (validation loss)."""

    def config(self) -> dict:
        """Name and settings (JSON-ready), enough to rebuild the schedule."""
        return {"name": self.name, "lr": self.base_lr}

    def state(self) -> dict:
        """Mutable state to save in a checkpoint (JSON-ready)."""
        return {"current": self.current}

    def load_state(self, state: dict):
        self.current = float(state.get("current", self.base_lr))

    def describe(self) -> str:
        return self.name

    def __repr__(self):
        return f"{type(self).__name__}({self.config()})"


class Constant(Schedule):
    """η stays the same."""

    name = "constant"


class StepDecay(Schedule):
    """η·γ^⌊epoch / step_size⌋."""

    name = "step"

    def __init__(self, lr, step_size: int = 5, gamma: float = 0.5):
        super().__init__(lr)
        if step_size < 1:
            raise ValueError("step_size must be ≥ 1")
        self.step_size, self.gamma = int(step_size), float(gamma)

    def _rate(self, epoch, batch, batches):
        return self.base_lr * self.gamma ** (epoch // self.step_size)

    def config(self):
        return {**super().config(), "step_size": self.step_size, "gamma": self.gamma}


class Exponential(Schedule):
    """η·γ^epoch (for example 0.95^epoch)."""

    name = "exponential"

    def __init__(self, lr, gamma: float = 0.95):
        super().__init__(lr)
        self.gamma = float(gamma)

    def _rate(self, epoch, batch, batches):
        return self.base_lr * self.gamma ** epoch

    def config(self):
        return {**super().config(), "gamma": self.gamma}


class InverseTime(Schedule):
    """η / (1 + decay·epoch)."""

    name = "inverse_time"

    def __init__(self, lr, decay: float = 0.1):
        super().__init__(lr)
        self.decay = float(decay)

    def _rate(self, epoch, batch, batches):
        return self.base_lr / (1.0 + self.decay * epoch)

    def config(self):
        return {**super().config(), "decay": self.decay}


class InverseSqrt(Schedule):
    """k/√t with t the epoch counted from 1 (so the first epoch runs at k = η)."""

    name = "inverse_sqrt"

    def _rate(self, epoch, batch, batches):
        return self.base_lr / math.sqrt(epoch + 1)


class Cosine(Schedule):
    """η_min + (η − η_min)·(1 + cos(π·epoch/T))/2 over ``epochs`` = T epochs."""

    name = "cosine"

    def __init__(self, lr, epochs: int = 10, min_lr: float = 0.0):
        super().__init__(lr)
        if epochs < 1:
            raise ValueError("cosine schedule needs epochs ≥ 1")
        self.epochs, self.min_lr = int(epochs), float(min_lr)

    def _rate(self, epoch, batch, batches):
        t = min(epoch, self.epochs) / self.epochs
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))

    def config(self):
        return {**super().config(), "epochs": self.epochs, "min_lr": self.min_lr}


class WarmUp(Schedule):
    """Linear warm-up over the first ``warmup_epochs`` (per batch), then ``after``.

    During warm-up the rate is ``after``'s rate times (i+1)/n, where i counts
    batches from the start and n is the number of warm-up batches.
    """

    name = "warmup"

    def __init__(self, after: Schedule, warmup_epochs: float = 1.0):
        super().__init__(after.base_lr)
        if warmup_epochs <= 0:
            raise ValueError("warm-up needs a positive number of epochs")
        self.after, self.warmup_epochs = after, float(warmup_epochs)

    def _rate(self, epoch, batch, batches):
        target = self.after.rate(epoch, batch, batches)
        n = max(1, round(self.warmup_epochs * batches))
        i = epoch * batches + batch
        return target * min(1.0, (i + 1) / n)

    def observe(self, metric):
        self.after.observe(metric)

    def config(self):
        return {"name": self.name, "lr": self.base_lr, "warmup_epochs": self.warmup_epochs,
                "after": self.after.config()}

    def state(self):
        return {"current": self.current, "after": self.after.state()}

    def load_state(self, state):
        super().load_state(state)
        self.after.load_state(state.get("after", {}))

    def describe(self):
        return f"warm-up {self.warmup_epochs:g} epochs, then {self.after.describe()}"


class ReduceOnPlateau(Schedule):
    """Multiply η by ``factor`` when the metric has not improved for ``patience`` epochs.

    Improvement means falling below ``best·(1 − threshold)`` (relative, as in
    PyTorch's default); after a reduction ``cooldown`` epochs pass before
    counting again; η never goes under ``min_lr``.
    """

    name = "plateau"

    def __init__(self, lr, factor: float = 0.5, patience: int = 2, threshold: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0):
        super().__init__(lr)
        if not 0 < factor < 1:
            raise ValueError("plateau factor must be in (0, 1)")
        self.factor, self.patience = float(factor), int(patience)
        self.threshold, self.cooldown, self.min_lr = float(threshold), int(cooldown), float(min_lr)
        self.level = float(lr)
        self.best = math.inf
        self.bad_epochs = 0
        self.cooldown_left = 0

    def _rate(self, epoch, batch, batches):
        return self.level

    def observe(self, metric):
        metric = float(metric)
        if metric < self.best * (1.0 - self.threshold):
            self.best = metric
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_epochs = 0
        if self.bad_epochs > self.patience:
            self.level = max(self.min_lr, self.level * self.factor)
            self.cooldown_left = self.cooldown
            self.bad_epochs = 0
        self.current = self.level

    def config(self):
        return {**super().config(), "factor": self.factor, "patience": self.patience,
                "threshold": self.threshold, "cooldown": self.cooldown, "min_lr": self.min_lr}

    def state(self):
        return {"current": self.current, "level": self.level,
                "best": None if math.isinf(self.best) else self.best,
                "bad_epochs": self.bad_epochs, "cooldown_left": self.cooldown_left}

    def load_state(self, state):
        super().load_state(state)
        self.level = float(state.get("level", self.base_lr))
        best = state.get("best")
        self.best = math.inf if best is None else float(best)
        self.bad_epochs = int(state.get("bad_epochs", 0))
        self.cooldown_left = int(state.get("cooldown_left", 0))


_CLASSES = {c.name: c for c in (Constant, StepDecay, Exponential, InverseTime, InverseSqrt,
                                Cosine, ReduceOnPlateau)}


def make_schedule(config) -> Schedule:
    """A schedule from a config dict (as :meth:`Schedule.config` gives) or a name."""
    if isinstance(config, str):
        config = {"name": config}
    cfg = dict(config)
    name = cfg.pop("name", "constant")
    if name == "warmup":
        after = make_schedule(cfg.pop("after", {"name": "constant", "lr": cfg.get("lr", 0.01)}))
        return WarmUp(after, cfg.get("warmup_epochs", 1.0))
    try:
        cls = _CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown schedule '{name}'; choose one of {', '.join(SCHEDULES)}") \
            from None
    try:
        return cls(**cfg)
    except TypeError as exc:
        raise ValueError(f"schedule '{name}': {exc}") from None


def parse_schedule(text: str, lr: float, epochs: int = 10, warmup: float = 0.0) -> Schedule:
    """Parse a command-line spec: ``NAME`` or ``NAME:key=value,key=value``.

    Examples: ``constant``, ``step:step_size=3,gamma=0.5``, ``exponential:gamma=0.95``,
    ``inverse_time:decay=0.1``, ``inverse_sqrt``, ``cosine`` (over ``epochs``),
    ``plateau:factor=0.5,patience=2``. ``warmup`` > 0 wraps it in a linear warm-up.
    """
    name, _, rest = (text or "constant").partition(":")
    name = name.strip().lower().replace("-", "_")
    cfg: dict = {"name": name, "lr": lr}
    if name == "cosine":
        cfg["epochs"] = epochs
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, val = item.partition("=")
        if not eq:
            raise ValueError(f"schedule option '{item}' must look like key=value")
        try:
            num = float(val)
        except ValueError:
            raise ValueError(f"schedule option '{key}' needs a number; got '{val}'") from None
        if not math.isfinite(num):
            raise ValueError(f"schedule option '{key}' needs a finite number; got '{val}'")
        cfg[key.strip()] = int(num) if num.is_integer() and key in (
            "step_size", "patience", "cooldown", "epochs") else num
    if not (math.isfinite(warmup) and warmup >= 0):
        raise ValueError(f"warm-up must be a finite number of epochs ≥ 0; got {warmup}")
    sched = make_schedule(cfg)
    return WarmUp(sched, warmup) if warmup > 0 else sched
