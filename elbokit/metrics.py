"""Classification metrics on top of ``sklearn.metrics``, as plain dicts of floats.

:func:`binary_report` scores the probability of a positive class (e.g. spam) at a decision
threshold, plus the threshold-free ranking scores (ROC AUC, average precision);
:func:`multiclass_report` scores predicted labels of any number of classes (e.g. digits).

Conventions (stated once, used everywhere):

- an example is predicted positive when ``p_positive > threshold`` (strictly), so at 0.5 the
  predictions are those of a two-class ``Classifier.predict``;
- a ratio with nothing to count is 1.0, not a warning: precision when nothing is predicted
  positive (no false alarm was raised), recall when there is no positive example (none was
  missed), F1 when both hold. ``n_predicted_positive`` and ``n_positive`` say when that
  happened;
- ROC AUC and average precision are NaN when ``y_true`` holds one class only (undefined).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import ConfigError, DataError, describe_rows

__all__ = ["binary_report", "multiclass_report", "positive_class"]


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
    and F1 are of the positive class; 0/0 counts as 1.0 (see the module docstring).
    """
    from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

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
    return {
        "accuracy": (tp + tn) / len(p),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "roc_auc": float(roc_auc_score(truth, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(truth, p)) if both else float("nan"),
        "threshold": float(threshold),
        "n_examples": len(p),
        "n_positive": tp + fn,
        "n_predicted_positive": tp + fp,
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
    }


def _ratio(numerator: int, denominator: int) -> float:
    """numerator / denominator, 1.0 when there is nothing to count (0 / 0)."""
    return numerator / denominator if denominator else 1.0


def multiclass_report(y_true: Sequence | np.ndarray, y_pred: Sequence | np.ndarray,
                      labels: Sequence | None = None) -> dict:
    """Scores of predicted labels ``y_pred: [n]`` against ``y_true: [n]``, any number of classes.

    Returns ``{"accuracy", "balanced_accuracy" (mean per-class recall over the classes
    present in y_true), "macro_f1" (unweighted mean F1 over ``labels``, 0/0 counted as 1.0),
    "n_examples", "labels", "confusion" (rows: true, columns: predicted, in ``labels`` order;
    default: the sorted labels of both)}``.
    """
    from sklearn.metrics import confusion_matrix

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim != 1 or y_pred.shape != y_true.shape:
        raise DataError(f"expected one true and one predicted label per example, got shapes "
                        f"{list(y_true.shape)} and {list(y_pred.shape)}")
    if len(y_true) == 0:
        raise DataError("no examples to score")
    labels = np.unique(np.concatenate([y_true, y_pred])) if labels is None else np.asarray(labels)
    matrix = confusion_matrix(y_true, y_pred, labels=labels)  # [C, C]
    tp = np.diag(matrix)
    support, predicted = matrix.sum(1), matrix.sum(0)
    present = support > 0
    f1 = [_ratio(2 * t, s + q) for t, s, q in zip(tp, support, predicted, strict=True)]
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "balanced_accuracy": float(np.mean(tp[present] / support[present])) if present.any() else 1.0,
        "macro_f1": float(np.mean(f1)),
        "n_examples": len(y_true),
        "labels": labels.tolist(),
        "confusion": matrix.tolist(),
    }
