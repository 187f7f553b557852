"""Figures: valid PNGs of the stated pixel size, not blank, drawn from the right numbers,
written atomically, and without touching pyplot's global state."""

from __future__ import annotations

import os

import matplotlib.image
import numpy as np
import pytest

from elbokit import plots
from elbokit.errors import DataError
from elbokit.metrics import binary_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def scores():
    """Labels [400] (ham/spam) and p(spam|x) of a good and a useless method."""
    rng = np.random.default_rng(0)
    y = np.where(rng.random(400) < 0.3, "spam", "ham")
    good = np.clip(0.75 * (y == "spam") + 0.5 * rng.random(400) - 0.1, 0, 1)
    return y, {"good": good, "coin": rng.random(400)}


def _check_png(path, width: int, height: int) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (height, width)
    assert pixels[..., :3].var() > 1e-3  # lines and text, not a blank canvas


@pytest.mark.parametrize("draw", [plots.precision_recall_curve, plots.calibration_plot])
def test_figures_are_pngs_of_the_stated_size(tmp_path, scores, draw):
    y, p = scores
    draw(y, p, path=tmp_path / "a.png")
    _check_png(tmp_path / "a.png", 600, 450)  # 6 x 4.5 in at 100 dpi
    draw(y, p, positive="spam", path=tmp_path / "b.png", size=(4, 3), dpi=50)
    _check_png(tmp_path / "b.png", 200, 150)
    assert sorted(os.listdir(tmp_path)) == ["a.png", "b.png"]  # no temporary files left


def test_precision_recall_marks_the_thresholds_of_the_reported_metrics(scores):
    y, p = scores
    figure = plots.precision_recall_curve(y, p)
    ax = figure.axes[0]
    assert ax.get_xlabel().startswith("recall") and ax.get_ylabel().startswith("precision")
    points = {(line.get_marker(), tuple(np.round(line.get_xydata()[0], 12)))
              for line in ax.lines if line.get_marker() in ("o", "s") and len(line.get_xydata())}
    for method in p:
        for t, marker in ((0.5, "o"), (0.9, "s")):
            report = binary_report(y, p[method], threshold=t, positive="spam")
            assert (marker, (round(report["recall"], 12), round(report["precision"], 12))) in points
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert any(label.startswith("good (AP") for label in labels) and "threshold 0.9" in labels


def test_calibration_plot_shows_the_binned_frequencies(scores):
    from sklearn.calibration import calibration_curve

    y, p = scores
    ax = plots.calibration_plot(y, p, n_bins=5).axes[0]
    observed, predicted = calibration_curve(y == "spam", p["good"], n_bins=5)
    good = next(line for line in ax.lines if line.get_label().startswith("good"))
    np.testing.assert_allclose(good.get_xydata(), np.c_[predicted, observed])
    diagonal = next(line for line in ax.lines if line.get_label() == "perfectly calibrated")
    np.testing.assert_array_equal(diagonal.get_xydata(), [[0, 0], [1, 1]])


def test_no_pyplot_figures_are_left_open(scores):
    from matplotlib import pyplot

    before = pyplot.get_fignums()
    plots.calibration_plot(*scores)
    assert pyplot.get_fignums() == before


def test_bad_inputs(scores):
    y, p = scores
    with pytest.raises(DataError, match="only 'spam'"):
        plots.precision_recall_curve(np.array(["spam"] * 3), {"m": [0.1, 0.2, 0.3]}, positive="spam")
    with pytest.raises(DataError, match="in \\[0, 1\\]"):
        plots.calibration_plot(y, {"m": p["good"] * 2})
    with pytest.raises(DataError, match="no methods"):
        plots.calibration_plot(y, {})
