"""Training: optimizers, schedules, the trainer loop and metrics.

>>> from core.train import Trainer, make_optimizer, parse_schedule
"""

from core.train.metrics import Evaluation, classification_report, roc_curve  # noqa: F401
from core.train.optim import OPTIMIZERS, Optimizer, make_optimizer  # noqa: F401
from core.train.schedules import SCHEDULES, Schedule, make_schedule, parse_schedule  # noqa: F401
from core.train.trainer import (  # noqa: F401
    BatchInfo,
    CrossValidation,
    EarlyStopping,
    EpochInfo,
    FitResult,
    Trainer,
    cross_validate,
    load_weights,
)
