"""Metrics against hand-computed cases (and scikit-learn's conventions)."""

import numpy as np
import pytest

from core.errors import DataError
from core.train.metrics import (
    auc,
    classification_report,
    confusion_matrix,
    precision_recall_f1,
    roc_auc_ovr,
    roc_curve,
)


def test_confusion_matrix_counts_true_rows_predicted_columns():
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_precision_recall_f1_by_hand():
    cm = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    p, r, f1, support = precision_recall_f1(cm)
    assert p == pytest.approx([0.5, 0.5, 1.0])
    assert r == pytest.approx([0.5, 1.0, 2 / 3])
    assert f1 == pytest.approx([0.5, 2 / 3, 0.8])
    assert support.tolist() == [2, 1, 3]


def test_never_predicted_class_has_zero_precision_not_nan():
    p, r, f1, _ = precision_recall_f1(confusion_matrix([0, 1], [0, 0], 2))
    assert p[1] == 0 and r[1] == 0 and f1[1] == 0


def test_roc_curve_with_ties_is_one_step():
    fpr, tpr, thr = roc_curve([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9])
    assert thr.tolist() == [np.inf, 0.9, 0.5, 0.2]
    assert tpr.tolist() == [0.0, 0.5, 1.0, 1.0]
    assert fpr.tolist() == [0.0, 0.0, 0.5, 1.0]
    # the tie counts one half: pairs (pos, neg) ordered right 3 of 4, one tied
    assert auc(fpr, tpr) == pytest.approx(0.875)


def test_auc_equals_the_pairwise_probability():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(size=200) + y, 1)  # rounded: many ties
    fpr, tpr, _ = roc_curve(y, s)
    pos, neg = s[y == 1], s[y == 0]
    diff = pos[:, None] - neg[None, :]
    expected = ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size
    assert auc(fpr, tpr) == pytest.approx(expected, abs=1e-12)


def test_perfect_and_reversed_scores():
    f, t, _ = roc_curve([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert auc(f, t) == 1.0
    f, t, _ = roc_curve([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9])
    assert auc(f, t) == 0.0


def test_one_vs_rest_auc_of_an_absent_class_is_nan():
    _, aucs = roc_auc_ovr([0, 1, 0, 1], np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0],
                                                  [0.6, 0.3, 0.1], [0.4, 0.5, 0.1]]))
    assert aucs[0] == 1.0 and aucs[1] == 1.0 and np.isnan(aucs[2])


def test_classification_report_binary_from_probabilities():
    ev = classification_report([0, 1, 1, 0], np.array([0.2, 0.7, 0.4, 0.1]), loss=0.3)
    assert ev.accuracy == 0.75
    assert ev.confusion.tolist() == [[2, 0], [1, 1]]
    assert ev.auc == pytest.approx([1.0, 1.0])
    d = ev.to_dict()
    assert d["loss"] == 0.3 and d["support"] == [2, 2]
    assert "precision" in ev.table()



def test_labels_outside_the_predicted_classes_are_a_clear_error():
    with pytest.raises(DataError, match="label 7 is not one of the 3 classes"):
        confusion_matrix([0, 1, 7], [0, 1, 2], 3)
    with pytest.raises(DataError, match="label -1"):
        classification_report([0, -1], np.array([[0.9, 0.1], [0.2, 0.8]]))
