"""Figures, one function per figure, written as PNG files.

Each function draws on its own :class:`matplotlib.figure.Figure` with an Agg canvas (never
``pyplot``: no global figure registry to leak memory into, no backend switched under the
caller), returns the figure, and with ``path=`` also writes it as a PNG of ``size`` inches at
``dpi`` (default 6 x 4.5 in at 100 dpi = 600 x 450 pixels) through :func:`save_png`, which
replaces the file atomically.

Classifier figures take the true labels ``y_true: [n]`` and ``scores``, a mapping of method
name to p(positive | x) ``[n]`` (one curve per method), and the ``positive`` label (default:
:func:`elbokit.metrics.positive_class`).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .checkpoint import atomic_write
from .errors import DataError
from .metrics import binary_report, positive_class

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn, not with elbokit
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["FIGURE_SIZE", "DPI", "new_figure", "png_bytes", "save_png", "precision_recall_curve",
           "calibration_plot"]

FIGURE_SIZE = (6.0, 4.5)  # inches
DPI = 100  # 6 x 4.5 in -> 600 x 450 pixels
MARKERS = ("o", "s", "^", "D", "v")


def new_figure(size: tuple[float, float] = FIGURE_SIZE, dpi: int = DPI) -> tuple[Figure, Axes]:
    """A figure of ``size`` inches at ``dpi`` on an Agg canvas, with one set of axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG bytes, exactly ``size * dpi`` pixels (no tight bounding box)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi)
    return buffer.getvalue()


def save_png(figure: Figure, path: str | Path) -> None:
    """Write the figure to ``path`` as PNG, atomically (readers never see half a file)."""
    atomic_write(path, png_bytes(figure))


def _binary_scores(y_true: Sequence | np.ndarray, scores: Mapping[str, Sequence | np.ndarray],
                   positive: object | None) -> tuple[np.ndarray, dict[str, np.ndarray], object]:
    """``(truth [n] bool, {method: p [n] float64}, positive label)``, checked."""
    y_true = np.asarray(y_true)
    if y_true.ndim != 1 or len(y_true) == 0:
        raise DataError(f"expected one label per example, got shape {list(y_true.shape)}")
    if not scores:
        raise DataError("no methods to plot")
    positive = positive_class(y_true) if positive is None else positive
    truth = y_true == positive
    if truth.all() or not truth.any():
        raise DataError(f"the labels hold {'only' if truth.all() else 'no'} {positive!r} examples: "
                        "a precision-recall or calibration curve needs both classes")
    checked = {}
    for name, p in scores.items():
        p = np.asarray(p, dtype=np.float64)
        if p.shape != y_true.shape or not np.all((p >= 0) & (p <= 1)):
            raise DataError(f"{name}: expected {len(y_true)} probabilities in [0, 1]")
        checked[name] = p
    return truth, checked, positive


def _finish(figure: Figure, ax: Axes, path: str | Path | None) -> Figure:
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    figure.tight_layout()  # fits the labels inside the fixed figure size
    if path is not None:
        save_png(figure, path)
    return figure


def precision_recall_curve(y_true: Sequence | np.ndarray,
                           scores: Mapping[str, Sequence | np.ndarray],
                           positive: object | None = None, path: str | Path | None = None,
                           thresholds: Sequence[float] = (0.5, 0.9),
                           size: tuple[float, float] = FIGURE_SIZE, dpi: int = DPI) -> Figure:
    """Precision against recall of the positive class as the threshold sweeps, one curve per
    method (its average precision in the legend), with the operating points of deciding
    positive when p(positive | x) > t marked for each of ``thresholds``.

    ``y_true: [n]`` labels, ``scores: {method: p(positive | x) [n]}``; writes a PNG to
    ``path`` when given (``size`` inches at ``dpi``).
    """
    from sklearn.metrics import average_precision_score
    from sklearn.metrics import precision_recall_curve as pr_curve

    truth, scores, positive = _binary_scores(y_true, scores, positive)
    figure, ax = new_figure(size, dpi)
    for name, p in scores.items():
        precision, recall, _ = pr_curve(truth, p)
        ap = average_precision_score(truth, p)
        (line,) = ax.plot(recall, precision, drawstyle="steps-post", label=f"{name} (AP {ap:.3f})")
        for t, marker in zip(thresholds, MARKERS, strict=False):
            # The same decision rule (p > t, 0/0 = 1) as the reported metrics.
            report = binary_report(truth, p, threshold=t, positive=True)
            ax.plot(report["recall"], report["precision"], marker=marker, linestyle="none",
                    color=line.get_color(), markeredgecolor="black", zorder=3)
    for t, marker in zip(thresholds, MARKERS, strict=False):  # one legend entry per threshold
        ax.plot([], [], marker=marker, linestyle="none", color="white", markeredgecolor="black",
                label=f"threshold {t:g}")
    ax.set(xlabel=f"recall (fraction of {positive} found)",
           ylabel=f"precision (fraction of flagged that is {positive})",
           xlim=(-0.01, 1.02), ylim=(0, 1.03), title=f"Precision-recall, positive class {positive}")
    return _finish(figure, ax, path)


def calibration_plot(y_true: Sequence | np.ndarray, scores: Mapping[str, Sequence | np.ndarray],
                     positive: object | None = None, path: str | Path | None = None,
                     n_bins: int = 10, size: tuple[float, float] = FIGURE_SIZE,
                     dpi: int = DPI) -> Figure:
    """Reliability diagram: the examples binned by predicted p(positive | x) (``n_bins``
    equal-width bins; empty bins left out), the bin's mean prediction against the observed
    fraction of positives, one line per method (its Brier score in the legend), and the
    diagonal of perfect calibration. A marker's area grows with its bin's number of
    examples, so that a bin of two messages does not look as telling as one of two thousand.
    Arguments as :func:`precision_recall_curve`.
    """
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import brier_score_loss

    truth, scores, positive = _binary_scores(y_true, scores, positive)
    figure, ax = new_figure(size, dpi)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    edges = np.linspace(0, 1, n_bins + 1)
    for name, p in scores.items():
        observed, predicted = calibration_curve(truth, p, n_bins=n_bins, strategy="uniform")
        # calibration_curve's own binning, to count the examples in each non-empty bin
        counts = np.bincount(np.searchsorted(edges[1:-1], p), minlength=n_bins)
        counts = counts[counts > 0]
        (line,) = ax.plot(predicted, observed, label=f"{name} (Brier {brier_score_loss(truth, p):.3f})")
        ax.scatter(predicted, observed, s=12 + 150 * np.sqrt(counts / counts.max()),
                   color=line.get_color(), edgecolors="black", linewidths=0.5, zorder=3)
    ax.set(xlabel=f"mean predicted p({positive}|x) in the bin",
           ylabel=f"observed fraction of {positive}", xlim=(-0.03, 1.03), ylim=(-0.03, 1.03),
           title=f"Calibration ({n_bins} bins; marker area grows with the bin's examples)")
    return _finish(figure, ax, path)
