"""Figures, one function per figure, written as PNG files.

Each function draws on its own :class:`matplotlib.figure.Figure` with an Agg canvas (never
``pyplot``: no global figure registry to leak memory into, no backend switched under the
caller), returns the figure, and with ``path=`` also writes it as a PNG through
:func:`save_png`, which replaces the file atomically. The PNGs carry no metadata (matplotlib
would write its URL into them), so the same figure gives the same bytes and an HTML page that
inlines them holds no link. Each function states its pixel size: 600 x 450 (``FIGURE_SIZE``
at ``DPI``) unless said otherwise; the sizes chosen here are whole multiples of 50 pixels, so
that ``inches * DPI`` is exact (matplotlib truncates a fraction of a pixel).

Classifier figures take the true labels ``y_true: [n]`` and ``scores``, a mapping of method
name to p(positive | x) ``[n]`` (one curve per method), and the ``positive`` label (default:
:func:`elbokit.metrics.positive_class`).

The figures of a latent-variable model ("Understanding the ELBO") take plain arrays, nats per
example throughout:

- :func:`training_curves`: ELBO, reconstruction and KL per epoch (or the log-likelihood per
  EM iteration) from a run's ``metrics.jsonl`` records;
- :func:`samples`, :func:`reconstructions`: data ``[n, dim]`` as grey images (with an
  ``image_shape``) or as heatmaps;
- :func:`latent_scatter`: posterior means ``[n, d]`` (PCA beyond two dimensions);
- :func:`latent_traversal`: the decoder's mean along one latent dimension at a time;
- :func:`kl_per_dimension`: the rate each latent dimension pays, collapsed ones in grey;
- :func:`rate_distortion`: a beta sweep in the rate-distortion plane with lines of equal ELBO.

Bad input (wrong shapes, NaN, nothing to draw) raises a one-line
:class:`elbokit.errors.DataError`.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .checkpoint import atomic_write
from .errors import DataError, describe_rows
from .metrics import binary_report, positive_class

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn, not with elbokit
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

__all__ = ["FIGURE_SIZE", "DPI", "new_figure", "png_bytes", "svg_bytes", "save_png",
           "precision_recall_curve", "calibration_plot", "training_curves", "samples",
           "reconstructions", "latent_scatter", "latent_traversal", "kl_per_dimension",
           "rate_distortion"]

FIGURE_SIZE = (6.0, 4.5)  # inches
DPI = 100  # 6 x 4.5 in -> 600 x 450 pixels
WIDE_SIZE = (9.0, 4.5)  # three panels side by side: 900 x 450 pixels
SQUARE_SIZE = (6.0, 6.0)  # a grid of images: 600 x 600 pixels
MARKERS = ("o", "s", "^", "D", "v")
GAP_COLOUR = "#d5dde8"  # the lines between the images of a grid, apart from black and white


def new_figure(size: tuple[float, float] = FIGURE_SIZE, dpi: int = DPI) -> tuple[Figure, Axes]:
    """A figure of ``size`` inches at ``dpi`` on an Agg canvas, with one set of axes."""
    figure = _blank_figure(size, dpi)
    return figure, figure.add_subplot()


def _blank_figure(size: tuple[float, float] = FIGURE_SIZE, dpi: int = DPI,
                  layout: str | None = None) -> Figure:
    """A figure of ``size`` inches at ``dpi`` on an Agg canvas, without axes; ``layout=
    "constrained"`` for a colour bar beside several axes (which tight_layout cannot place)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=dpi, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG bytes, exactly ``size * dpi`` pixels (no tight bounding box), without
    metadata: matplotlib would name itself and its URL in a "Software" entry."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi, metadata={"Software": None})
    return buffer.getvalue()


def svg_bytes(figure: Figure) -> bytes:
    """The figure as SVG bytes, reproducibly (fixed element ids) and without the metadata block
    (creator URL, date, Dublin Core terms); only the XML namespaces an SVG needs name a URL."""
    import matplotlib

    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "elbokit"}):
        figure.savefig(buffer, format="svg", dpi=figure.dpi,
                       metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
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
    return _save(figure, path)


def _save(figure: Figure, path: str | Path | None) -> Figure:
    if figure.get_layout_engine() is None:
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


# -- The figures of a latent-variable model: plain arrays in, nats per example. ----------------

ELBO_TERMS = (("elbo", "ELBO"), ("reconstruction", "reconstruction E_q[log p(x|z)]"),
              ("kl", "KL(q(z|x) ‖ p(z))"))
MAX_LEGEND_LABELS = 20  # more distinct labels than this get a colour bar instead of a legend
HEATMAP_SDS = 3.0  # a standardized heatmap's colour scale: -3 to 3 column standard deviations
MAX_COLUMN_NAMES = 40  # more features than this are numbered, not named, on a heatmap's axis


def _array(x: object, name: str, shape: str, missing: bool = False) -> np.ndarray:
    """``x`` as float64 of the dimensions named by ``shape`` (e.g. "[n, dim]"), none of them
    empty, every value finite (``missing``: or NaN, a missing cell of a table, drawn blank);
    else a one-line DataError that says which."""
    ndim = shape.count(",") + 1
    try:
        array = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{name}: expected an array of numbers of shape {shape}") from None
    if array.ndim != ndim or array.size == 0:
        raise DataError(f"{name}: expected a non-empty array of shape {shape}, got shape "
                        f"{list(array.shape)}")
    fine = np.isfinite(array) | (np.isnan(array) if missing else False)
    bad = ~fine.reshape(len(array), -1).all(axis=1)
    if bad.any():
        raise DataError(f"{name}: NaN or infinite values in {describe_rows(bad)}")
    return array


def _image_shape(image_shape: Sequence[int] | None, dim: int) -> tuple[int, int] | None:
    """``(height, width)`` of images flattened into rows of ``dim`` values, checked."""
    if image_shape is None:
        return None
    shape = tuple(image_shape)
    if (len(shape) != 2 or not all(isinstance(s, int | np.integer) and s > 0 for s in shape)
            or shape[0] * shape[1] != dim):
        raise DataError(f"image_shape {list(shape)} does not fit rows of {dim} values "
                        "(expected (height, width) with height * width = dim)")
    return int(shape[0]), int(shape[1])


def _grey_limits(*arrays: np.ndarray) -> tuple[float, float]:
    """The grey scale of images: [0, 1] for probabilities and intensities in [0, 1] (so that a
    faint sample looks faint), else the range of the values."""
    lo, hi = min(float(a.min()) for a in arrays), max(float(a.max()) for a in arrays)
    if lo >= 0 and hi <= 1:
        return 0.0, 1.0
    return lo, hi if hi > lo else lo + 1


def _image_grid(ax: Axes, images: np.ndarray, limits: tuple[float, float],
                row_labels: Sequence[str] | None = None,
                column_labels: Sequence[str] | None = None) -> None:
    """Draw ``images: [rows, columns, h, w]`` (NaN: an empty cell) on ``ax`` as one grey
    mosaic on the common grey scale ``limits``, the cells parted by lines of ``GAP_COLOUR``
    (and empty cells filled with it); rows labelled on the left and columns on top when labels
    are given, no other ticks."""
    from matplotlib import colormaps

    rows, columns, h, w = images.shape
    gap = max(1, round(min(h, w) / 16))
    cells = np.pad(images, ((0, 0), (0, 0), (gap, 0), (gap, 0)), constant_values=np.nan)
    grid = cells.transpose(0, 2, 1, 3).reshape(rows * (h + gap), columns * (w + gap))
    grid = np.pad(grid, ((0, gap), (0, gap)), constant_values=np.nan)
    ax.imshow(grid, cmap=colormaps["gray"].with_extremes(bad=GAP_COLOUR), vmin=limits[0],
              vmax=limits[1])
    ax.set_frame_on(False)
    ax.set_yticks(gap + (h + gap) * np.arange(rows) + (h - 1) / 2, row_labels or [""] * rows)
    ax.set_xticks(gap + (w + gap) * np.arange(columns) + (w - 1) / 2,
                  column_labels or [""] * columns)
    ax.tick_params(length=0, labelbottom=False, labeltop=column_labels is not None,
                   labelleft=row_labels is not None)


def _diverging():
    """The heatmaps' colour map: red above a column's mean, blue below, grey where a cell is
    missing (NaN)."""
    import matplotlib

    return matplotlib.colormaps["RdBu_r"].with_extremes(bad="#bbbbbb")


def _standardizer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column ``(mean [dim], sd [dim])`` of ``x: [n, dim]`` (sd 1 for a constant column),
    the scale of a heatmap: columns of 1e-4 and 1e4 are then both visible."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column with every cell missing
        sd, mean = np.nanstd(x, axis=0), np.nanmean(x, axis=0)  # missing cells (NaN) aside
    return np.nan_to_num(mean), np.where(sd > 0, sd, 1.0)


def _heatmap(figure: Figure, ax: Axes | list[Axes], x: np.ndarray,
             scale: tuple[np.ndarray, np.ndarray], ylabel: str, title: str,
             columns: Sequence[str] | None) -> None:
    """``x: [n, dim]`` as a heatmap on ``ax`` (features across, rows down), each column
    standardized by ``scale`` (``(mean [dim], sd [dim])``, see :func:`_standardizer`) on a
    diverging colour scale of +-:data:`HEATMAP_SDS` with a colour bar (for ``ax`` a list:
    the first of them draws; the bar serves all); features named by ``columns`` (when at
    most :data:`MAX_COLUMN_NAMES`), else numbered."""
    from matplotlib.ticker import MaxNLocator

    target = ax[0] if isinstance(ax, list) else ax
    image = target.imshow((x - scale[0]) / scale[1], aspect="auto", cmap=_diverging(),
                          vmin=-HEATMAP_SDS, vmax=HEATMAP_SDS)
    target.set(xlabel="feature", ylabel=ylabel, title=title)
    if columns is not None and len(columns) == x.shape[1] and len(columns) <= MAX_COLUMN_NAMES:
        names = [_short(c) for c in columns]
        for each in ax if isinstance(ax, list) else [ax]:  # shared: the bottom one shows them
            each.set_xticks(np.arange(x.shape[1]), names, fontsize="small",
                            rotation=90 if max(map(len, names)) > 6 else 0)
    else:
        target.xaxis.set_major_locator(MaxNLocator(integer=True))
    target.yaxis.set_major_locator(MaxNLocator(integer=True))
    figure.colorbar(image, ax=ax, label="(value - column mean) / column sd", extend="both")


def _short(name: str, limit: int = 16) -> str:
    return name if len(name) <= limit else name[:limit - 1] + "…"


def _dedupe_steps(history: Sequence[Mapping]) -> tuple[str, list[tuple[int, Mapping]]]:
    """(``"epoch"`` or ``"iteration"``, [(index in history, record)] sorted by that step);
    a step recorded twice (a resumed run that re-ran an epoch) counts with its later record."""
    records = list(history)
    if not records:
        raise DataError("training_curves: the history is empty (no epoch or iteration recorded)")
    first = records[0]
    step = "iteration" if isinstance(first, Mapping) and "iteration" in first else "epoch"
    latest: dict[float, tuple[int, Mapping]] = {}
    for i, record in enumerate(records):
        if not isinstance(record, Mapping) or not isinstance(record.get(step), int | float):
            raise DataError(f"history record {i}: expected a mapping with a numeric {step!r} (all "
                            "records VAE epochs or all EM iterations)")
        latest[record[step]] = (i, record)
    return step, [latest[s] for s in sorted(latest)]


def _terms(i: int, record: Mapping, split: str, keys: Sequence[str]) -> list[float] | None:
    """The values of ``keys`` in ``record[split]`` (None when there is no such split), checked."""
    if split not in record:
        if split == "train":
            raise DataError(f"history record {i}: no 'train' metrics")
        return None
    part = record[split]
    missing = [k for k in keys if not isinstance(part, Mapping) or k not in part]
    if missing:
        raise DataError(f"history record {i}: {split!r} lacks {', '.join(map(repr, missing))}")
    try:
        values = [float(part[k]) for k in keys]
    except (TypeError, ValueError):
        raise DataError(f"history record {i}: {split!r} holds a non-number") from None
    for key, value in zip(keys, values, strict=True):
        if not np.isfinite(value):
            raise DataError(f"history record {i}: {split} {key} is {value}")
    return values


def training_curves(history: Sequence[Mapping], path: str | Path | None = None) -> Figure:
    """The learning curves of a run from its ``metrics.jsonl`` records, in nats per example.

    VAE-style records ``{"epoch": int, "train": {"elbo", "reconstruction", "kl"}, "val":
    {the same} (optional, in any record), ...}``: three panels side by side (ELBO,
    reconstruction, KL per epoch), training solid, validation dashed; 900 x 450 pixels.
    Mixture EM records ``{"iteration": int, "train": {"log_likelihood": float}}``: one panel,
    the training log-likelihood per EM iteration; 600 x 450 pixels. Records come in order; an
    epoch recorded twice (a resumed run that re-ran it) is drawn with its later record.
    """
    from matplotlib.ticker import MaxNLocator

    step, records = _dedupe_steps(history)
    em = step == "iteration"
    keys = ("log_likelihood",) if em else tuple(key for key, _ in ELBO_TERMS)
    steps, train, val_steps, val = [], [], [], []
    for i, record in records:
        steps.append(record[step])
        train.append(_terms(i, record, "train", keys))
        values = None if em else _terms(i, record, "val", keys)
        if values is not None:
            val_steps.append(record[step])
            val.append(values)
    train_array, val_array = np.array(train), np.array(val).reshape(-1, len(keys))
    figure = _blank_figure(FIGURE_SIZE if em else WIDE_SIZE)
    axes = [figure.add_subplot()] if em else list(figure.subplots(1, len(keys)))
    panels = ([("log_likelihood", "EM: training log-likelihood per iteration")] if em
              else ELBO_TERMS)
    marker = "o" if len(steps) <= 50 else None
    for k, (ax, (_, title)) in enumerate(zip(axes, panels, strict=True)):
        ax.plot(steps, train_array[:, k], marker=marker, markersize=3, color="C0", label="train")
        if len(val_steps):
            ax.plot(val_steps, val_array[:, k], marker=marker, markersize=3, color="C1",
                    linestyle="--", label="validation")
        ax.set(title=title, xlabel="EM iteration" if em else "epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("log-likelihood (nats per example)" if em else "nats per example")
    axes[0].legend(loc="best", fontsize="small")
    return _save(figure, path)


def samples(x: np.ndarray, image_shape: Sequence[int] | None, path: str | Path | None = None,
            title: str = "Samples from the prior", columns: Sequence[str] | None = None) -> Figure:
    """Draws from a model, ``x: [n, dim]`` (e.g. E[x | z] for z from the prior).

    With ``image_shape`` ``(h, w)`` (``h * w == dim``): a grid of grey images, ceil(sqrt(n))
    columns, no ticks, on the grey scale [0, 1] when the values lie in it (else their range);
    600 x 600 pixels. Without: a heatmap of the n rows by dim features, each feature
    standardized by the samples' own mean and sd (features of any scale side by side), with a
    colour bar, the features named by ``columns`` (a table's header) when given; 600 x 450
    pixels.
    """
    x = _array(x, "samples", "[n, dim]")
    shape = _image_shape(image_shape, x.shape[1])
    if shape is None:
        figure, ax = new_figure()
        _heatmap(figure, ax, x, _standardizer(x), "sample", title, columns)
        return _save(figure, path)
    n = len(x)
    columns = int(np.ceil(np.sqrt(n)))
    rows = -(-n // columns)
    cells = np.full((rows * columns, *shape), np.nan)
    cells[:n] = x.reshape(n, *shape)
    figure, ax = new_figure(SQUARE_SIZE)
    _image_grid(ax, cells.reshape(rows, columns, *shape), _grey_limits(x))
    ax.set_title(title)
    return _save(figure, path)


def reconstructions(originals: np.ndarray, reconstructed: np.ndarray,
                    image_shape: Sequence[int] | None, path: str | Path | None = None,
                    columns: Sequence[str] | None = None) -> Figure:
    """Examples beside their reconstructions, both ``[n, dim]`` (n <= 16 typical), on one
    colour scale; 600 x 450 pixels.

    With ``image_shape`` ``(h, w)``: grey images, min(n, max(8, ceil(sqrt(2 n)))) columns, each
    row of originals (labelled "original") above the row of their reconstructions (labelled
    "reconstruction"). Without: two heatmaps, originals above reconstructions, both
    standardized per feature by the originals' mean and sd (features of any scale side by
    side, and a reconstruction's error in the originals' units), features named by
    ``columns`` when given; a table's missing cells (NaN in the originals) are blank.
    """
    # A table (no image shape) may miss cells: NaN, drawn blank.
    originals = _array(originals, "originals", "[n, dim]", missing=image_shape is None)
    reconstructed = _array(reconstructed, "reconstructions", "[n, dim]")
    if originals.shape != reconstructed.shape:
        raise DataError(f"originals {list(originals.shape)} and reconstructions "
                        f"{list(reconstructed.shape)} differ in shape")
    shape = _image_shape(image_shape, originals.shape[1])
    title = "Originals and their reconstructions"
    if shape is None:
        figure = _blank_figure(layout="constrained")
        axes = list(figure.subplots(2, 1, sharex=True, sharey=True))
        scale = _standardizer(originals)
        _heatmap(figure, axes, originals, scale, "original", title, columns)
        axes[1].imshow((reconstructed - scale[0]) / scale[1], aspect="auto", cmap=_diverging(),
                       vmin=-HEATMAP_SDS, vmax=HEATMAP_SDS)
        axes[1].set(xlabel="feature", ylabel="reconstruction")
        axes[0].set_xlabel("")
        return _save(figure, path)
    n = len(originals)
    columns = min(n, max(8, int(np.ceil(np.sqrt(2 * n)))))
    pairs = -(-n // columns)
    cells = np.full((pairs, 2, columns, *shape), np.nan)
    for row, data in enumerate((originals, reconstructed)):
        padded = np.full((pairs * columns, *shape), np.nan)
        padded[:n] = data.reshape(n, *shape)
        cells[:, row] = padded.reshape(pairs, columns, *shape)
    figure, ax = new_figure()
    _image_grid(ax, cells.reshape(2 * pairs, columns, *shape),
                _grey_limits(originals, reconstructed),
                row_labels=["original", "reconstruction"] * pairs)
    ax.set_title(title)
    return _save(figure, path)


def _label_colours(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """(distinct labels in order, the colour value of each example, whether they are few
    enough for a legend). Few: the index of the example's label (tab10/tab20); many: the
    label itself when numeric, else its index."""
    try:
        distinct, codes = np.unique(labels, return_inverse=True)
    except TypeError:  # mixed types
        distinct, codes = np.unique(labels.astype(str), return_inverse=True)
    few = len(distinct) <= MAX_LEGEND_LABELS
    numeric = labels.dtype.kind in "biuf"
    return distinct, (codes if few or not numeric else labels.astype(np.float64)), few


def latent_scatter(z: np.ndarray, labels: np.ndarray | None = None,
                   path: str | Path | None = None, title: str = "Posterior means") -> Figure:
    """Posterior means ``z: [n, d]`` (E_q[z | x] per example), coloured by ``labels: [n]``
    when given (a legend to the right for up to 20 distinct labels, a colour bar beyond; the
    colour of a label does not depend on the order of the points); 600 x 450 pixels.

    d == 1: z0 against the example's index, with its histogram beside; d == 2: z1 against
    z0 (dimensions counted from 0, as everywhere in elbokit);
    d > 2: the first two principal components (PCA), each axis labelled with its share of the
    variance.
    """
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    z = _array(z, "latent_scatter z", "[n, d]")
    n, d = z.shape
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise DataError(f"latent_scatter: expected {n} labels (one per row of z), got shape "
                            f"{list(labels.shape)}")
        if labels.dtype.kind == "f" and not np.isfinite(labels).all():
            raise DataError(f"latent_scatter labels: NaN in {describe_rows(~np.isfinite(labels))}")
    figure = _blank_figure(layout="constrained")
    if d == 1:
        ax, side = figure.subplots(1, 2, sharey=True, width_ratios=(3, 1))
        x, y = np.arange(n), z[:, 0]
        side.hist(y, bins=min(50, max(5, n // 10)), orientation="horizontal", color="0.6")
        side.set_xlabel("count")
        side.grid(alpha=0.3)
        ax.set(xlabel="example (index)", ylabel="z0")
    else:
        ax = figure.add_subplot()
        if d == 2:
            x, y = z[:, 0], z[:, 1]
            ax.set(xlabel="z0", ylabel="z1")
        else:
            if n < 2:
                raise DataError("latent_scatter: PCA of z needs at least 2 examples")
            x, y, share = _pca(z)
            ax.set(xlabel=f"PC1 ({100 * share[0]:.0f}% of variance)",
                   ylabel=f"PC2 ({100 * share[1]:.0f}% of variance)")
    size = float(np.clip(10000 / n, 5, 40))  # points^2: big for a few points, small for many
    if labels is None:
        ax.scatter(x, y, s=size, color="C0", alpha=0.8, linewidths=0)
    else:
        distinct, colour, few = _label_colours(labels)
        cmap = colormaps["tab10" if len(distinct) <= 10 else "tab20"] if few else colormaps["viridis"]
        points = ax.scatter(x, y, c=colour, s=size, cmap=cmap, alpha=0.8, linewidths=0,
                            vmin=0 if few else None, vmax=cmap.N - 1 if few else None)
        if few:
            handles = [Line2D([], [], marker="o", linestyle="none", color=cmap(k), label=str(value))
                       for k, value in enumerate(distinct)]
            figure.axes[-1].legend(handles=handles, title="label", fontsize="small",
                                   loc="center left", bbox_to_anchor=(1.02, 0.5),
                                   ncol=1 if len(distinct) <= 10 else 2)
        else:
            figure.colorbar(points, ax=figure.axes, label="label" if labels.dtype.kind in "biuf"
                            else "label (index in sorted order)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(figure, path)


def _pca(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first two principal-component scores of ``z: [n, d]`` and their shares of the
    variance (zeros for a z that does not vary)."""
    from sklearn.decomposition import PCA

    if not np.ptp(z, axis=0).any():
        return np.zeros(len(z)), np.zeros(len(z)), np.zeros(2)
    pca = PCA(n_components=2, random_state=0)
    scores = pca.fit_transform(z)
    return scores[:, 0], scores[:, 1], np.nan_to_num(pca.explained_variance_ratio_)


def _traversal_height(rows: int, steps: int, shape: tuple[int, int] | None) -> int:
    """Pixels: 50 * ceil((100 + 500 * rows * h / (w * steps)) / 50) for images (cells about
    500 / steps pixels wide), 50 * ceil((100 + 80 * rows) / 50) for vectors; within
    [200, 1500]."""
    body = 500 * rows * shape[0] / (shape[1] * steps) if shape else 80 * rows
    return int(min(1500, max(200, 50 * np.ceil((100 + body) / 50))))


def latent_traversal(decoded: np.ndarray, values: np.ndarray, dims: Sequence[int],
                     image_shape: Sequence[int] | None, path: str | Path | None = None) -> Figure:
    """The decoder's mean as one latent dimension sweeps and the others stay at 0 (the prior
    mean): ``decoded: [len(dims), steps, dim]`` holds E[x | z] with z_{dims[r]} = values[s].

    One row per dimension (labelled "z{dim}", ``dims`` as given), one column per value of
    ``values: [steps]`` (the value on top). Vectors (no ``image_shape``): per row, one line
    across the features per value, coloured by the value. 600 pixels wide, the height growing
    with the rows: 50 * ceil((100 + 500 * rows * h / (w * steps)) / 50) for images,
    50 * ceil((100 + 80 * rows) / 50) for vectors, within [200, 1500] pixels.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    decoded = _array(decoded, "latent_traversal decoded", "[len(dims), steps, dim]")
    rows, steps, dim = decoded.shape
    values = _array(values, "latent_traversal values", "[steps]")
    if len(values) != steps:
        raise DataError(f"latent_traversal: {len(values)} values for {steps} steps")
    dims = list(dims)
    if len(dims) != rows or not all(isinstance(k, int | np.integer) for k in dims):
        raise DataError(f"latent_traversal: expected {rows} integer dimensions (one per row of "
                        f"decoded), got {dims}")
    shape = _image_shape(image_shape, dim)
    size = (6.0, _traversal_height(rows, steps, shape) / DPI)
    title = "Traversals: E[x | z], one latent dimension swept, the others at 0"
    if shape is not None:
        figure, ax = new_figure(size)
        _image_grid(ax, decoded.reshape(rows, steps, *shape), _grey_limits(decoded),
                    row_labels=[f"z{k}" for k in dims],
                    column_labels=[f"{v:.3g}" if abs(v) > 1e-9 * np.ptp(values) else "0"
                                   for v in values])  # not "5.55e-17" for a rounded zero
        ax.set_title(title, fontsize="medium")
        return _save(figure, path)
    figure = _blank_figure(size, layout="constrained")
    axes = list(np.atleast_1d(figure.subplots(rows, 1, sharex=True, sharey=True)))
    norm, cmap = Normalize(values.min(), values.max()), colormaps["coolwarm"]
    marker = "o" if dim <= 20 else None
    for ax, k, lines in zip(axes, dims, decoded, strict=True):
        for value, line in zip(values, lines, strict=True):
            ax.plot(np.arange(dim), line, color=cmap(norm(value)), marker=marker, markersize=2,
                    linewidth=1)
        ax.set_ylabel(f"z{k}", rotation=0, ha="right", va="center")
        ax.grid(alpha=0.3)
    axes[0].set_title(title, fontsize="medium")
    axes[-1].set_xlabel("feature")
    figure.colorbar(ScalarMappable(norm, cmap), ax=axes, label="value of the swept dimension")
    return _save(figure, path)


def kl_per_dimension(kl: np.ndarray, active: np.ndarray, path: str | Path | None = None,
                     threshold_note: str | None = None) -> Figure:
    """The rate each latent dimension pays: ``kl: [d]``, the mean KL(q(z_i|x) ‖ p(z_i)) in
    nats, as bars by dimension index, the ``active: [d]`` ones in colour and the inactive
    (collapsed) ones in grey; ``threshold_note`` (e.g. "active: KL > 0.01 nats") titles the
    legend. 600 x 450 pixels.
    """
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    kl = _array(kl, "kl_per_dimension kl", "[d]")
    active = np.asarray(active)
    if active.shape != kl.shape or not (active.dtype == bool or np.isin(active, (0, 1)).all()):
        raise DataError(f"kl_per_dimension: expected {len(kl)} booleans for 'active' (one per "
                        f"dimension), got shape {list(active.shape)} of {active.dtype}")
    active = active.astype(bool)
    figure, ax = new_figure()
    index = np.arange(len(kl))
    colours = np.where(active, "C0", "0.65")
    bars = ax.bar(index, kl, color=colours, edgecolor="black", linewidth=0.5)
    if len(kl) <= 16:
        ax.bar_label(bars, fmt="%.2f", fontsize="x-small", padding=2)
    handles = [Patch(facecolor=c, edgecolor="black", label=f"{name} ({count})")
               for c, name, count in (("C0", "active", active.sum()),
                                      ("0.65", "inactive (collapsed)", (~active).sum())) if count]
    ax.legend(handles=handles, title=threshold_note, fontsize="small", title_fontsize="small",
              loc="best")
    ax.set(xlabel="latent dimension (index)", ylabel="KL (nats)",
           title=f"KL per latent dimension: {active.sum()} of {len(kl)} active, "
                 f"{kl.sum():.2f} nats in all")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(kl) <= 32:
        ax.set_xticks(index)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.grid(alpha=0.3, axis="y")
    return _save(figure, path)


def _rate_distortion_points(points: Sequence[Mapping]) -> np.ndarray:
    """``[n, 3]`` rows (beta, rate, distortion) sorted by beta, checked."""
    points = list(points)
    if not points:
        raise DataError("rate_distortion: no points to plot")
    rows = []
    for i, point in enumerate(points):
        try:
            row = [float(point[key]) for key in ("beta", "rate", "distortion")]
        except (KeyError, TypeError, ValueError):
            raise DataError(f"rate_distortion point {i}: expected numbers 'beta', 'rate' and "
                            "'distortion'") from None
        if not np.isfinite(row).all() or row[0] < 0:
            raise DataError(f"rate_distortion point {i}: expected finite values and beta >= 0, "
                            f"got {dict(zip(('beta', 'rate', 'distortion'), row, strict=True))}")
        rows.append(row)
    table = np.array(rows)
    return table[np.argsort(table[:, 0], kind="stable")]


def _padded(v: np.ndarray, low: float = 0.1, high: float = 0.2) -> tuple[float, float]:
    lo, hi = float(v.min()), float(v.max())
    span = hi - lo or max(1.0, 0.1 * abs(hi))
    return lo - low * span, hi + high * span


# Where a label may go relative to its point: (dx, dy) in points, and the alignment that
# makes the text extend away from the point. Nearest first; the farther ones are for crowds.
_LABEL_SPOTS = tuple((sx * dx, sy * dy, "left" if sx > 0 else "right", "bottom" if sy > 0 else "top")
                     for dx, dy in ((6, 4), (10, 10), (18, 2), (4, 18), (26, 16))
                     for sx, sy in ((1, 1), (1, -1), (-1, 1), (-1, -1)))


def _overlap(a: Bbox, b: Bbox) -> float:
    """The area (pixels^2) two boxes share, 0 when they are disjoint."""
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(width, 0.0) * max(height, 0.0)


def _outside(box: Bbox, frame: Bbox) -> float:
    """How far (pixels, summed over the four sides) ``box`` sticks out of ``frame``."""
    return (max(frame.x0 - box.x0, 0.0) + max(box.x1 - frame.x1, 0.0)
            + max(frame.y0 - box.y0, 0.0) + max(box.y1 - frame.y1, 0.0))


def _place_text(figure: Figure, ax: Axes, make: Callable[[int], Text], n_spots: int,
                obstacles: list[Bbox], required: bool = True) -> Text | None:
    """Draw ``make(spot)`` for spot 0, 1, ... ``n_spots - 1`` and keep the first text that
    lies inside the axes and overlaps none of ``obstacles`` (display boxes, to which its box
    is added). Failing that: ``required``, the one that sticks out and overlaps least;
    otherwise none (returns None). The texts stay out of the layout, so placing them cannot
    move the axes under them."""
    renderer = figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    best, best_cost, best_box = None, np.inf, None
    for spot in range(n_spots):
        text = make(spot)
        text.set_in_layout(False)
        box = text.get_window_extent(renderer)
        # Sticking out of the axes weighs more than overlapping: a pixel out counts as much
        # as 1,000 square pixels of overlap.
        cost = 1e3 * _outside(box, frame) + sum(_overlap(box, other) for other in obstacles)
        if cost < best_cost:
            if best is not None:
                best.remove()
            best, best_cost, best_box = text, cost, box
        else:
            text.remove()
        if cost == 0:
            break
    if best is not None and best_cost > 0 and not required:
        best.remove()
        return None
    if best_box is not None:
        obstacles.append(best_box)
    return best


def _coincident_groups(xy: np.ndarray, within: float) -> list[list[int]]:
    """Indices of the points ``xy: [n, 2]`` (pixels) grouped so that points closer than
    ``within`` share a group (single linkage), in order of their first member."""
    groups: list[list[int]] = []
    for i, point in enumerate(xy):
        near = [g for g in groups if np.min(np.hypot(*(xy[g] - point).T)) < within]
        merged = [j for g in near for j in g] + [i]
        groups = [g for g in groups if g not in near] + [sorted(merged)]
    return sorted(groups)


def rate_distortion(points: Sequence[Mapping], path: str | Path | None = None,
                    svg_path: str | Path | None = None) -> Figure:
    """A beta sweep in the rate-distortion plane: ``points`` ``[{"beta", "rate" (the KL, nats),
    "distortion" (minus the reconstruction term, nats)}, ...]``, rate across and distortion
    up, each point annotated with its beta and the points joined in order of beta; the beta = 1
    point (the ELBO's own trade-off) starred, with its line of equal ELBO dotted; dashed grey
    lines of equal ELBO (rate + distortion = -ELBO, slope -1) across the plot, each labelled
    with its -ELBO where it is long enough. 600 x 450 pixels; with ``svg_path`` also an SVG
    (written atomically, no metadata).

    Layout: the legend sits below the axes, where it can hide nothing whatever the sweep's
    shape; every label is placed, from a few candidate spots, inside the axes clear of the
    points, of the labels placed before it and of the star; points closer than a marker share
    one label ("β=3, 10").
    """
    from matplotlib.ticker import MaxNLocator
    from matplotlib.transforms import Bbox

    beta, rate, distortion = _rate_distortion_points(points).T
    figure = _blank_figure(layout="constrained")
    ax = figure.add_subplot()
    (x0, x1), (y0, y1) = _padded(rate), _padded(distortion)
    levels = [c for c in MaxNLocator(nbins=6).tick_values(x0 + y0, x1 + y1) if x0 + y0 < c < x1 + y1]
    segments = []
    for k, c in enumerate(levels):
        lo, hi = max(x0, c - y1), min(x1, c - y0)  # where rate + distortion = c is in view
        ax.plot([lo, hi], [c - lo, c - hi], linestyle="--", color="grey", linewidth=0.8, zorder=1,
                label="equal ELBO: rate + distortion = −ELBO" if k == 0 else None)
        segments.append((c, lo, hi))
    ax.plot(rate, distortion, marker="o", color="C0", zorder=3, label="β sweep (joined in order of β)")
    one = np.flatnonzero(np.isclose(beta, 1.0))
    if len(one):
        r, d = rate[one[0]], distortion[one[0]]
        lo, hi = max(x0, r + d - y1), min(x1, r + d - y0)
        ax.plot([lo, hi], [r + d - lo, r + d - hi], linestyle=":", color="C3", linewidth=1.2,
                zorder=2, label=f"−ELBO at β = 1: {r + d:.2f} nats")
        ax.plot(r, d, marker="*", markersize=16, color="C3", markeredgecolor="black",
                linestyle="none", zorder=4, label="β = 1 (the ELBO)")
    ax.set(xlim=(x0, x1), ylim=(y0, y1), xlabel="rate: KL(q(z|x) ‖ p(z)) (nats)",
           ylabel="distortion: −E_q[log p(x|z)] (nats)", title="Rate-distortion: the β sweep")
    ax.grid(alpha=0.3)
    figure.legend(loc="outside lower center", ncol=2, fontsize="small", frameon=False)
    figure.canvas.draw()  # runs the layout: from here on, data map to their final pixels

    # Labels go where they hide nothing: the points (a marker's box; the star's is larger)
    # and every label placed before are obstacles. beta labels first, being the data.
    xy = ax.transData.transform(np.column_stack([rate, distortion]))  # [n, 2] pixels
    marker = 6 * figure.dpi / 72  # the default marker size, 6 points, in pixels
    obstacles = [Bbox.from_bounds(px - marker / 2, py - marker / 2, marker, marker) for px, py in xy]
    if len(one):
        star = 16 * figure.dpi / 72
        px, py = xy[one[0]]
        obstacles.append(Bbox.from_bounds(px - star / 2, py - star / 2, star, star))
    for group in _coincident_groups(xy, within=marker):
        label = "β=" + ", ".join(f"{beta[i]:g}" for i in group)
        r, d = rate[group[0]], distortion[group[0]]
        _place_text(figure, ax, lambda spot, label=label, r=r, d=d: ax.annotate(
            label, (r, d), xytext=_LABEL_SPOTS[spot][:2], textcoords="offset points",
            ha=_LABEL_SPOTS[spot][2], va=_LABEL_SPOTS[spot][3], fontsize="small"),
            len(_LABEL_SPOTS), obstacles)
    for c, lo, hi in segments:
        # Along the line: near its lower-right end, else its upper-left one, else its middle
        # or quarters; left out where none fits (a short line in a corner, say).
        spots = [(hi - 0.03 * (hi - lo), "right"), (lo + 0.03 * (hi - lo), "left"),
                 *((lo + t * (hi - lo), "center") for t in (0.5, 0.25, 0.75))]
        _place_text(figure, ax, lambda spot, c=c, spots=spots: ax.text(
            spots[spot][0], c - spots[spot][0], f"−ELBO = {c:g}", rotation=-45,
            rotation_mode="anchor", transform_rotates_text=True, fontsize="x-small",
            color="dimgrey", ha=spots[spot][1], va="bottom"), len(spots), obstacles, required=False)
    _save(figure, path)
    if svg_path is not None:
        atomic_write(svg_path, svg_bytes(figure))
    return figure
