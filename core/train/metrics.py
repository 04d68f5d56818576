"""Classification metrics: accuracy, confusion matrix, precision/recall/F1, ROC and AUC.

ROC curves are exact: thresholds are the distinct scores, tied scores form one
step, and the AUC is the trapezoid area under those points (which equals the
probability that a random positive scores above a random negative, ties
counting one half).

Example
-------
>>> import numpy as np
>>> fpr, tpr, thr = roc_curve(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
>>> float(auc(fpr, tpr))
0.75
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.errors import DataError


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """``C[i, j]`` = number of samples of true class i predicted as j."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    for what, y in (("label", y_true), ("prediction", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            bad = int(y.min()) if y.min() < 0 else int(y.max())
            raise DataError(f"{what} {bad} is not one of the {n_classes} classes the model "
                            f"predicts (0 to {n_classes - 1}); the data's labels do not fit "
                            "the graph's output")
    flat = y_true * n_classes + y_pred
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def precision_recall_f1(cm: np.ndarray):
    """Per-class precision, recall, F1 and support from a confusion matrix.

    A class never predicted has precision 0 (and F1 0), as scikit-learn reports
    with ``zero_division=0``.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    predicted = cm.sum(axis=0)
    actual = cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
    return precision, recall, f1, actual.astype(np.int64)


def roc_curve(y_true, scores):
    """Exact ROC curve of a binary problem.

    Parameters
    ----------
    y_true : array_like of bool or {0, 1}
        1 for the positive class.
    scores : array_like of float
        Higher means "more positive".

    Returns
    -------
    fpr, tpr, thresholds : numpy.ndarray
        Starting at (0, 0) with threshold +inf; one point per distinct score.
    """
    y = np.asarray(y_true).ravel().astype(bool)
    s = np.asarray(scores, dtype=np.float64).ravel()
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    # the last index of each run of equal scores: ties move the curve in one step
    ends = np.r_[np.nonzero(np.diff(s))[0], s.size - 1] if s.size else np.array([], int)
    tps = np.cumsum(y)[ends]
    fps = (ends + 1) - tps
    pos, neg = int(y.sum()), int(y.size - y.sum())
    tpr = np.r_[0.0, tps / pos] if pos else np.r_[0.0, np.zeros(len(ends))]
    fpr = np.r_[0.0, fps / neg] if neg else np.r_[0.0, np.zeros(len(ends))]
    thresholds = np.r_[np.inf, s[ends]]
    return fpr, tpr, thresholds


def auc(x, y) -> float:
    """Trapezoid area under the points (x, y), x non-decreasing."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def roc_auc_ovr(y_true, probs) -> tuple:
    """One-vs-rest ROC curves and AUCs of a multiclass problem.

    Returns ``(curves, aucs)``: ``curves[k] = (fpr, tpr, thresholds)`` and
    ``aucs[k]`` (NaN for a class absent from ``y_true`` or present alone).
    """
    y = np.asarray(y_true, dtype=np.int64).ravel()
    probs = np.asarray(probs, dtype=np.float64)
    curves, aucs = [], []
    for k in range(probs.shape[1]):
        pos = y == k
        fpr, tpr, thr = roc_curve(pos, probs[:, k])
        curves.append((fpr, tpr, thr))
        aucs.append(auc(fpr, tpr) if 0 < pos.sum() < y.size else float("nan"))
    return curves, np.array(aucs)


@dataclass
class Evaluation:
    """Everything :func:`classification_report` computes.

    Attributes
    ----------
    loss : float
        Mean loss over the data (NaN when not computed).
    accuracy : float
    confusion : numpy.ndarray
        (C, C) counts, rows = true class.
    precision, recall, f1, support : numpy.ndarray
        Per class.
    auc : numpy.ndarray
        One-vs-rest AUC per class.
    roc : list
        ``(fpr, tpr, thresholds)`` per class.
    """

    loss: float
    accuracy: float
    confusion: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    auc: np.ndarray
    roc: list = field(default_factory=list, repr=False)

    @property
    def macro_f1(self) -> float:
        return float(np.mean(self.f1))

    @property
    def macro_auc(self) -> float:
        ok = self.auc[np.isfinite(self.auc)]
        return float(ok.mean()) if ok.size else float("nan")

    def to_dict(self) -> dict:
        """JSON-ready summary (no ROC points)."""
        def num(v):
            return None if not np.isfinite(v) else round(float(v), 6)

        return {"loss": num(self.loss), "accuracy": num(self.accuracy),
                "macro_f1": num(self.macro_f1), "macro_auc": num(self.macro_auc),
                "precision": [num(v) for v in self.precision],
                "recall": [num(v) for v in self.recall],
                "f1": [num(v) for v in self.f1],
                "support": [int(v) for v in self.support],
                "auc": [num(v) for v in self.auc],
                "confusion": self.confusion.tolist()}

    def table(self) -> str:
        """A plain-text per-class table."""
        lines = [f"accuracy {self.accuracy:.4f}   loss {self.loss:.4f}   "
                 f"macro F1 {self.macro_f1:.4f}   macro AUC {self.macro_auc:.4f}",
                 "class  precision  recall     F1      AUC   support"]
        for k in range(len(self.f1)):
            lines.append(f"{k:>5}  {self.precision[k]:9.4f}  {self.recall[k]:6.4f}  "
                         f"{self.f1[k]:6.4f}  {self.auc[k]:7.4f}  {int(self.support[k]):7d}")
        return "\n".join(lines)


def classification_report(y_true, probs, loss: float = float("nan")) -> Evaluation:
    """All metrics from true labels and per-class scores (probabilities).

    ``probs`` may be (N, C) for C classes or (N,) / (N, 1) for a binary problem
    (the probability of class 1); binary problems are reported as two classes.
    """
    y = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 1 or p.shape[1] == 1:
        p1 = p.reshape(-1)
        p = np.stack([1.0 - p1, p1], axis=1)
    n_classes = p.shape[1]
    pred = p.argmax(axis=1)
    cm = confusion_matrix(y, pred, n_classes)
    precision, recall, f1, support = precision_recall_f1(cm)
    curves, aucs = roc_auc_ovr(y, p)
    acc = float((pred == y).mean()) if y.size else float("nan")
    return Evaluation(float(loss), acc, cm, precision, recall, f1, support, aucs, curves)
