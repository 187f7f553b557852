"""Classification metrics on top of ``sklearn.metrics``, as plain dicts of floats.

:func:`binary_report` scores the probability of a positive class (e.g. spam) at a decision
threshold, plus the threshold-free ranking scores (ROC AUC, average precision);
:func:`multiclass_report` scores predicted labels of any number of classes (e.g. digits).

Conventions (stated once, used everywhere):

- an example is predicted positive when ``p_positive > threshold`` (strictly), so at 0.5 the
  predictions are those of a two-class ``Classifier.predict``;
- a ratio with nothing to count (0/0) is 1.0, not a warning: precision when nothing is
  predicted positive (no false alarm was raised), recall when there is no positive example
  (none was missed), F1 when both hold: sklearn's ``zero_division=1.0``
  (:data:`ZERO_DIVISION`), passed explicitly, which is also the precision that
  ``sklearn.metrics.precision_recall_curve`` gives where nothing is flagged.
  ``n_predicted_positive`` and ``n_positive`` say when that happened (``elbokit classify``
  warns);
- ROC AUC and average precision are None (not defined; JSON null) when ``y_true`` holds one
  class only: no pair of a positive and a negative example to rank.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import ConfigError, DataError, describe_rows

__all__ = ["ZERO_DIVISION", "binary_report", "multiclass_report", "positive_class"]

ZERO_DIVISION = 1.0  # what a 0/0 precision, recall or F1 is reported as (sklearn's zero_division)


def positive_class(y_true: np.ndarray) -> object:
    """The positive label when none is named: 1 (or True) for 0/1 labels, else the larger of
    exactly two labels (``"spam"`` of ham/spam, the last of ``TextDataset.classes``)."""
    labels = np.unique(y_true)
    if y_true.dtype == np.bool_:
        return True
    if y_true.dtype.kind in "iuf" and set(labels.tolist()) <= {0, 1}:
        return 1
    if len(labels) == 2:
        return labels[-1]
    raise DataError(f"cannot tell the positive class among labels {labels.tolist()[:10]}: "
                    "pass positive=...")


def binary_report(y_true: Sequence | np.ndarray, p_positive: Sequence | np.ndarray,
                  threshold: float = 0.5, positive: object | None = None,
                  scores: bool = False) -> dict:
    """Scores of ``p_positive: [n]`` = p(positive | x) against labels ``y_true: [n]``.

    ``scores=True``: ``p_positive`` is any real-valued score, larger meaning more positive
    (e.g. a novelty score, -log p(x)), and ``threshold`` any real number.

    ``positive``: the positive label (default: :func:`positive_class`). Returns
    ``{"accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "threshold",
    "n_examples", "n_positive", "n_predicted_positive", "confusion": {"tp", "fp", "fn",
    "tn"}}``; ``pr_auc`` is the average precision (the step-wise area under the
    precision-recall curve, ``sklearn.metrics.average_precision_score``). Precision, recall
    and F1 are of the positive class; 0/0 counts as :data:`ZERO_DIVISION`; ``roc_auc`` and
    ``pr_auc`` are None when ``y_true`` holds one class only (see the module docstring).
    """
    from sklearn.metrics import (
        average_precision_score,
        confusion_matrix,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    y_true = np.asarray(y_true)
    p = np.asarray(p_positive, dtype=np.float64)
    if y_true.ndim != 1 or p.ndim != 1 or len(y_true) != len(p):
        raise DataError(f"expected one label and one probability per example, got shapes "
                        f"{list(y_true.shape)} and {list(p.shape)}")
    if len(p) == 0:
        raise DataError("no examples to score")
    bad = ~np.isfinite(p) | (False if scores else (p < 0) | (p > 1))
    if bad.any():
        what = "scores must be finite" if scores else "probabilities must lie in [0, 1]"
        raise DataError(f"{what}, but {describe_rows(bad)} do not")
    if not (np.isfinite(threshold) if scores else 0 <= threshold <= 1):
        raise ConfigError(f"threshold must lie in {'(-inf, inf)' if scores else '[0, 1]'}, not {threshold}")
    if positive is None:
        positive = positive_class(y_true)
    truth = y_true == positive
    predicted = p > threshold
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(truth, predicted, labels=[False, True]).ravel())
    both = bool(truth.any() and (~truth).any())
    precision, recall, f1, _ = precision_recall_fscore_support(
        truth, predicted, labels=[True], average=None, zero_division=ZERO_DIVISION)
    return {
        "accuracy": (tp + tn) / len(p),
        "precision": float(precision[0]),
        "recall": float(recall[0]),
        "f1": float(f1[0]),
        "roc_auc": float(roc_auc_score(truth, p)) if both else None,
        "pr_auc": float(average_precision_score(truth, p)) if both else None,
        "threshold": float(threshold),
        "n_examples": len(p),
        "n_positive": tp + fn,
        "n_predicted_positive": tp + fp,
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
    }


def multiclass_report(y_true: Sequence | np.ndarray, y_pred: Sequence | np.ndarray,
                      labels: Sequence | None = None) -> dict:
    """Scores of predicted labels ``y_pred: [n]`` against ``y_true: [n]``, any number of classes.

    Returns ``{"accuracy", "balanced_accuracy" (mean per-class recall over the classes
    present in y_true), "macro_f1" (unweighted mean F1 over ``labels``, 0/0 counted as
    :data:`ZERO_DIVISION`), "n_examples", "labels", "confusion" (rows: true, columns:
    predicted, in ``labels`` order; default: the sorted labels of both)}``.
    """
    from sklearn.metrics import confusion_matrix, f1_score

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim != 1 or y_pred.shape != y_true.shape:
        raise DataError(f"expected one true and one predicted label per example, got shapes "
                        f"{list(y_true.shape)} and {list(y_pred.shape)}")
    if len(y_true) == 0:
        raise DataError("no examples to score")
    labels = np.unique(np.concatenate([y_true, y_pred])) if labels is None else np.asarray(labels)
    matrix = confusion_matrix(y_true, y_pred, labels=labels)  # [C, C]
    tp = np.diag(matrix)
    support = matrix.sum(1)
    present = support > 0
    f1 = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=ZERO_DIVISION)
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "balanced_accuracy": float(np.mean(tp[present] / support[present])) if present.any() else 1.0,
        "macro_f1": float(np.mean(f1)),
        "n_examples": len(y_true),
        "labels": labels.tolist(),
        "confusion": matrix.tolist(),
    }
