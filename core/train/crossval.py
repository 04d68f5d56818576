"""k-fold cross-validation: a fresh graph trained per fold, evaluated on the held-out fold."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.data.datasets import kfold_indices
from core.train.optim import make_optimizer
from core.train.trainer import Trainer


@dataclass
class CrossValidation:
    """Per-fold evaluations of :func:`cross_validate` and their summary."""

    folds: list

    @property
    def accuracies(self) -> np.ndarray:
        return np.array([f.accuracy for f in self.folds])

    @property
    def mean_accuracy(self) -> float:
        return float(self.accuracies.mean())

    @property
    def std_accuracy(self) -> float:
        return float(self.accuracies.std(ddof=1)) if len(self.folds) > 1 else 0.0


def cross_validate(make_graph, data, k: int = 5, *, epochs: int = 1, optimizer=None,
                   batch_size: int = 64, seed: int = 0, stratify: bool = True,
                   prepare=None, on_fold=None, **trainer_kw) -> CrossValidation:
    """k-fold cross-validation: train a fresh graph on k−1 folds, evaluate on the held-out one.

    Parameters
    ----------
    make_graph : callable
        ``make_graph() -> Graph``, called once per fold (a fresh, untrained graph).
    data : ArrayDataset
    optimizer : callable, optional
        ``optimizer() -> Optimizer`` per fold (default SGD 0.01).
    prepare : callable, optional
        ``prepare(train, test) -> (train, test)`` per fold, for example to fit a
        normalizer on the training folds only.
    on_fold : callable, optional
        ``on_fold(index, Evaluation)``.
    """
    labels = data.y if stratify and data.y.ndim == 1 else None
    folds = []
    for i, (tr_idx, te_idx) in enumerate(kfold_indices(len(data), k, seed, labels)):
        train, test = data.subset(tr_idx), data.subset(te_idx)
        if prepare is not None:
            train, test = prepare(train, test)
        opt = optimizer() if optimizer is not None else make_optimizer("sgd", lr=0.01)
        tr = Trainer(make_graph(), opt, batch_size=batch_size, seed=seed + i, **trainer_kw)
        tr.fit(train, epochs=epochs)
        ev = tr.evaluate(test)
        folds.append(ev)
        if on_fold is not None:
            on_fold(i, ev)
    return CrossValidation(folds)
