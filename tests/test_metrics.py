"""elbokit.metrics: the binary and multiclass reports, by hand and against scikit-learn's own
functions on random data, their 0/0 convention and their input checks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from elbokit.errors import ConfigError, DataError
from elbokit.metrics import ZERO_DIVISION, binary_report, multiclass_report, positive_class


def test_binary_report_by_hand():
    y = np.array(["ham", "spam", "spam", "ham", "spam"])
    p = np.array([0.1, 0.8, 0.4, 0.6, 0.95])
    report = binary_report(y, p, threshold=0.5)  # predicted spam: rows 1, 3, 4
    assert report["confusion"] == {"tp": 2, "fp": 1, "fn": 1, "tn": 1}
    assert report["precision"] == pytest.approx(2 / 3) and report["recall"] == pytest.approx(2 / 3)
    assert report["f1"] == pytest.approx(2 / 3) and report["accuracy"] == pytest.approx(3 / 5)
    # ROC AUC: ordered (spam, ham) pairs: 0.8>0.1, 0.8>0.6, 0.4>0.1, 0.4<0.6, 0.95>both -> 5/6.
    assert report["roc_auc"] == pytest.approx(5 / 6)
    # Average precision: spam at ranks 1, 2, 4 -> (1 + 1 + 3/4) / 3.
    assert report["pr_auc"] == pytest.approx((1 + 1 + 0.75) / 3)
    assert positive_class(y) == "spam" and positive_class(np.array([0, 1, 1])) == 1
    # A probability equal to the threshold is not positive (as predict() at 0.5).
    assert binary_report([0, 1], [0.5, 0.5])["n_predicted_positive"] == 0


def test_binary_report_zero_division_is_one_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nothing_flagged = binary_report(["ham", "spam", "ham"], [0.1, 0.2, 0.3], threshold=0.5)
        assert nothing_flagged["precision"] == 1.0 and nothing_flagged["recall"] == 0.0
        assert nothing_flagged["f1"] == 0.0 and nothing_flagged["n_predicted_positive"] == 0
        no_spam = binary_report(np.array([0, 0]), [0.1, 0.2], positive=1)
        assert no_spam["precision"] == no_spam["recall"] == no_spam["f1"] == 1.0
        assert no_spam["roc_auc"] is None and no_spam["pr_auc"] is None  # not defined


def test_zero_division_is_sklearns_passed_explicitly():
    """0/0 ratios are sklearn's zero_division=ZERO_DIVISION, the same everywhere."""
    from sklearn.metrics import f1_score, precision_score, recall_score

    y, p = np.array([0, 0, 1, 0]), np.array([0.1, 0.2, 0.3, 0.4])  # nothing predicted 1
    report = binary_report(y, p, positive=1)
    predicted = p > 0.5
    for name, score in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
        assert report[name] == score(y == 1, predicted, zero_division=ZERO_DIVISION), name
    assert report["precision"] == ZERO_DIVISION == 1.0
    # Per-class F1 of a label that is neither true nor predicted: 0/0 too.
    macro = multiclass_report(["a", "a"], ["a", "a"], labels=["a", "b"])["macro_f1"]
    assert macro == (1.0 + ZERO_DIVISION) / 2


def test_binary_report_refuses_bad_input():
    with pytest.raises(DataError, match="row 1"):
        binary_report([0, 1], [0.2, 1.5])
    with pytest.raises(DataError, match="shapes"):
        binary_report([0, 1, 1], [0.2, 0.5])
    with pytest.raises(ConfigError, match="threshold"):
        binary_report([0, 1], [0.2, 0.5], threshold=2)
    with pytest.raises(DataError, match="positive"):
        binary_report(["a", "b", "c"], [0.2, 0.5, 0.1])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.9])
def test_binary_report_equals_sklearns_scores_on_random_data(seed, threshold):
    """Every ratio and count of the report equals scikit-learn's function of the same name on
    random labels and probabilities (ties included: probabilities are rounded to 0.1)."""
    from sklearn import metrics

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=200)
    p = np.round(np.clip(0.3 * y + 0.7 * rng.random(200), 0, 1), 1)
    report = binary_report(y, p, threshold=threshold)
    predicted = p > threshold
    assert report["accuracy"] == pytest.approx(metrics.accuracy_score(y, predicted), abs=1e-12)
    for name, score in (("precision", metrics.precision_score), ("recall", metrics.recall_score),
                        ("f1", metrics.f1_score)):
        assert report[name] == pytest.approx(score(y, predicted, zero_division=ZERO_DIVISION),
                                             abs=1e-12), name
    assert report["roc_auc"] == pytest.approx(metrics.roc_auc_score(y, p), abs=1e-12)
    assert report["pr_auc"] == pytest.approx(metrics.average_precision_score(y, p), abs=1e-12)
    tn, fp, fn, tp = metrics.confusion_matrix(y, predicted, labels=[0, 1]).ravel()
    assert report["confusion"] == {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
    assert (report["n_examples"], report["n_positive"], report["n_predicted_positive"]) == (
        200, int(y.sum()), int(predicted.sum()))


def test_scores_mode_takes_any_real_score_and_threshold():
    """``scores=True``: a real-valued score (larger: more positive) ranks as the probability
    it is a monotone map of, and the threshold moves with it."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=300)
    p = np.clip(0.4 * y + 0.6 * rng.random(300), 1e-6, 1 - 1e-6)
    logit = np.log(p / (1 - p))  # strictly increasing in p
    as_probability = binary_report(y, p, threshold=0.7)
    as_score = binary_report(y, logit, threshold=np.log(0.7 / 0.3), scores=True)
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "confusion"):
        assert as_score[key] == pytest.approx(as_probability[key]), key
    with pytest.raises(DataError, match="probabilities must lie in"):
        binary_report(y, logit)  # scores outside [0, 1] need scores=True
    with pytest.raises(ConfigError, match="threshold"):
        binary_report(y, logit, threshold=float("inf"), scores=True)


@pytest.mark.parametrize("seed", range(3))
def test_multiclass_report_equals_sklearns_scores_on_random_labels(seed):
    from sklearn import metrics

    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 5, size=150)
    # Right about half the time; class 4 never predicted, so its F1 is 0 (not 0/0).
    y_pred = np.where(rng.random(150) < 0.5, y_true, rng.integers(0, 4, size=150))
    report = multiclass_report(y_true, y_pred)
    assert report["labels"] == [0, 1, 2, 3, 4]
    assert report["accuracy"] == pytest.approx(metrics.accuracy_score(y_true, y_pred))
    assert report["balanced_accuracy"] == pytest.approx(
        metrics.balanced_accuracy_score(y_true, y_pred))
    assert report["macro_f1"] == pytest.approx(
        metrics.f1_score(y_true, y_pred, average="macro", zero_division=ZERO_DIVISION))
    assert report["confusion"] == metrics.confusion_matrix(y_true, y_pred).tolist()
    # Given labels fix the order of the confusion matrix's rows and columns.
    order = [4, 2, 0, 1, 3]
    assert multiclass_report(y_true, y_pred, labels=order)["confusion"] == \
        metrics.confusion_matrix(y_true, y_pred, labels=order).tolist()
    with pytest.raises(DataError, match="shapes"):
        multiclass_report(y_true, y_pred[:-1])
    with pytest.raises(DataError, match="no examples"):
        multiclass_report([], [])
