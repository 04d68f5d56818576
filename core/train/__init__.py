"""Training: optimizers, schedules, the trainer loop, checkpoints, cross-validation and metrics.

The recipe a front end follows (splits, normalizer, default learning rates,
optimizer construction, the data a run trains on) is :mod:`core.train.recipe`.

>>> from core.train import Trainer, make_optimizer, parse_schedule
"""

from core.train.checkpoint import load_weights, read_checkpoint  # noqa: F401
from core.train.crossval import CrossValidation, cross_validate  # noqa: F401
from core.train.metrics import Evaluation, classification_report, roc_curve  # noqa: F401
from core.train.optim import OPTIMIZERS, Optimizer, make_optimizer  # noqa: F401
from core.train.schedules import SCHEDULES, Schedule, make_schedule, parse_schedule  # noqa: F401
from core.train.trainer import (  # noqa: F401
    BatchInfo,
    EarlyStopping,
    EpochInfo,
    FitResult,
    Trainer,
    find_role,
)
