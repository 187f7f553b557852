"""Figures: valid PNGs of the stated pixel size, not blank, drawn from the right numbers,
written atomically, and without touching pyplot's global state."""

from __future__ import annotations

import os

import matplotlib.colors
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
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert b"http" not in data  # no "Software: matplotlib, https://..." entry (HTML inlines these)
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


# -- The figures of a latent-variable model (issue 5) -----------------------------------------

def _history(epochs: int = 3, val: bool = True) -> list[dict]:
    records = []
    for epoch in range(1, epochs + 1):
        train = {"elbo": -40.0 + 5 * epoch, "reconstruction": -35.0 + 6 * epoch, "kl": 5.0 + epoch}
        record = {"epoch": epoch, "train": train, "seconds": 0.1}
        if val:
            record["val"] = {key: value - 1 for key, value in train.items()}
        records.append(record)
    return records


EM_HISTORY = [{"iteration": i, "train": {"log_likelihood": -30 + 10 * (1 - 0.5 ** i)}} for i in range(6)]
POINTS = [{"beta": b, "rate": r, "distortion": d}  # shuffled: joined in order of beta all the same
          for b, r, d in [(1.0, 6, 12), (0.1, 20, 8), (10.0, 0.2, 30), (0.3, 12, 9.5), (3.0, 2, 18)]]


@pytest.fixture(scope="module")
def images():
    """9 grey 8x8 images [9, 64] in [0, 1], and slightly different reconstructions."""
    rng = np.random.default_rng(1)
    x = rng.random((9, 64))
    return x, np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)


def _lines(ax, linestyle: str) -> list:
    return [line for line in ax.lines if line.get_linestyle() == linestyle]


@pytest.mark.parametrize("val", [True, False])
def test_training_curves_of_a_vae(tmp_path, val):
    figure = plots.training_curves(_history(val=val), path=tmp_path / "curves.png")
    _check_png(tmp_path / "curves.png", 900, 450)
    assert [ax.get_title().split()[0] for ax in figure.axes] == ["ELBO", "reconstruction", "KL(q(z|x)"]
    kl = figure.axes[2]
    np.testing.assert_array_equal(_lines(kl, "-")[0].get_xydata(), [[1, 6], [2, 7], [3, 8]])
    assert len(_lines(kl, "--")) == val  # validation dashed, when there is one
    if val:
        np.testing.assert_array_equal(_lines(kl, "--")[0].get_ydata(), [5, 6, 7])
    assert figure.axes[0].get_ylabel() == "nats per example"


def test_training_curves_of_em_and_a_resumed_run(tmp_path):
    figure = plots.training_curves(EM_HISTORY, path=tmp_path / "em.png")
    _check_png(tmp_path / "em.png", 600, 450)
    (ax,) = figure.axes
    assert ax.get_xlabel() == "EM iteration"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [r["train"]["log_likelihood"] for r in EM_HISTORY])
    # An epoch re-run after an interruption is in metrics.jsonl twice: the later record counts.
    history = _history(3, val=False)
    again = {**history[1], "train": {"elbo": -1.0, "reconstruction": -1.0, "kl": 0.0}}
    ax = plots.training_curves([*history[:2], again, history[2]]).axes[0]
    np.testing.assert_array_equal(ax.lines[0].get_xydata(), [[1, -35], [2, -1], [3, -25]])


@pytest.mark.parametrize(("shape", "size"), [((8, 8), (600, 600)), (None, (600, 450))])
def test_samples(tmp_path, images, shape, size):
    x, _ = images
    figure = plots.samples(x, shape, path=tmp_path / "s.png", title="Nine draws")
    _check_png(tmp_path / "s.png", *size)
    ax = figure.axes[0]
    assert ax.get_title() == "Nine draws"
    if shape:  # a 3 x 3 grid of images, no ticks
        assert len(ax.get_xticks()) == len(ax.get_yticks()) == 3
        assert not any(t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels())
        assert ax.images[0].get_array().shape == (3 * 9 + 1, 3 * 9 + 1)  # 1-pixel gaps
    else:  # a heatmap of the 9 rows x 64 features, with a colour bar
        assert ax.get_xlabel() == "feature" and ax.images[0].get_array().shape == (9, 64)
        assert len(figure.axes) == 2


@pytest.mark.parametrize("shape", [(8, 8), None])
def test_reconstructions(tmp_path, images, shape):
    x, x_hat = images
    figure = plots.reconstructions(x, x_hat, shape, path=tmp_path / "r.png")
    _check_png(tmp_path / "r.png", 600, 450)
    if shape:  # 9 pairs in 8 columns: two rows of originals, each above its reconstructions
        labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
        assert labels == ["original", "reconstruction"] * 2
    else:  # two heatmaps on one colour scale: per feature, the originals' z-scores
        first, second = (ax.images[0] for ax in figure.axes[:2])
        assert first.get_clim() == second.get_clim() == (-3.0, 3.0)
        sd = x.std(axis=0)
        sd[sd == 0] = 1  # a constant feature: shown as it differs from its value, unscaled
        np.testing.assert_allclose(second.get_array(), (x_hat - x.mean(axis=0)) / sd)


def test_reconstructions_of_a_table_leave_missing_cells_grey(tmp_path, images):
    """A table's missing cells (NaN) are drawn in the colour map's grey, and the columns are
    standardized by their observed cells; images may not miss pixels."""
    x, x_hat = images
    x = x.copy()
    x[0, 3] = x[4, 10] = np.nan
    figure = plots.reconstructions(x, x_hat, None, path=tmp_path / "r.png")
    first = figure.axes[0].images[0]
    assert np.ma.is_masked(first.get_array()[0, 3]) or np.isnan(first.get_array()[0, 3])
    assert first.get_cmap().get_bad()[:3] == pytest.approx((0xbb / 255,) * 3)
    second = figure.axes[1].images[0]
    sd = np.nanstd(x, axis=0)
    sd[sd == 0] = 1
    np.testing.assert_allclose(second.get_array(), (x_hat - np.nanmean(x, axis=0)) / sd)
    with pytest.raises(DataError, match="originals: NaN or infinite values in rows 0, 4"):
        plots.reconstructions(x, x_hat, (8, 8))


@pytest.mark.parametrize("d", [1, 2, 5])
@pytest.mark.parametrize("labelled", [True, False])
def test_latent_scatter(tmp_path, d, labelled):
    rng = np.random.default_rng(d)
    labels = np.repeat([0, 1, 2], 20)
    z = rng.normal(size=(60, d)) + labels[:, None]
    figure = plots.latent_scatter(z, labels if labelled else None, path=tmp_path / "z.png")
    _check_png(tmp_path / "z.png", 600, 450)
    ax = figure.axes[0]
    assert ax.get_title() == "Posterior means"
    if d == 1:
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("example (index)", "z0")
    elif d == 2:
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("z0", "z1")
        np.testing.assert_array_equal(ax.collections[0].get_offsets(), z)
    else:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=0).fit(z)
        np.testing.assert_allclose(ax.collections[0].get_offsets(), pca.transform(z))
        share = pca.explained_variance_ratio_
        assert ax.get_xlabel() == f"PC1 ({100 * share[0]:.0f}% of variance)"
        assert ax.get_ylabel() == f"PC2 ({100 * share[1]:.0f}% of variance)"
    legend = figure.axes[-1].get_legend()
    assert (legend is not None) == labelled
    if labelled:  # the legend's colours are the points' colours
        assert [t.get_text() for t in legend.get_texts()] == ["0", "1", "2"]
        colours = ax.collections[0].get_facecolors()[:, :3]
        for label, handle in enumerate(legend.legend_handles):
            np.testing.assert_allclose(colours[labels == label], np.broadcast_to(
                matplotlib.colors.to_rgb(handle.get_color()), (20, 3)))


def test_latent_scatter_of_many_labels_has_a_colour_bar():
    z = np.random.default_rng(0).normal(size=(50, 2))
    figure = plots.latent_scatter(z, np.arange(50) % 25, title="25 classes")
    assert figure.axes[0].get_legend() is None and len(figure.axes) == 2  # the scatter, the bar
    assert figure.axes[1].get_ylabel() == "label"


@pytest.mark.parametrize(("shape", "height"), [((8, 8), 400), (None, 350)])
def test_latent_traversal(tmp_path, images, shape, height):
    x, _ = images
    values = np.linspace(-2, 2, 5)
    decoded = x[:3, None, :] * (values[None, :, None] + 3) / 5  # [3 dims, 5 steps, 64]
    figure = plots.latent_traversal(decoded, values, [4, 0, 2], shape, path=tmp_path / "t.png")
    # images: 50 * ceil((100 + 500 * 3 * 8 / (8 * 5)) / 50) = 400; vectors: 100 + 80 * 3 -> 350
    _check_png(tmp_path / "t.png", 600, height)
    if shape:
        ax = figure.axes[0]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["z4", "z0", "z2"]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["-2", "-1", "0", "1", "2"]
    else:
        assert [ax.get_ylabel() for ax in figure.axes[:3]] == ["z4", "z0", "z2"]
        assert len(figure.axes[0].lines) == 5  # one line per value
        np.testing.assert_array_equal(figure.axes[1].lines[4].get_ydata(), decoded[1, 4])


def test_kl_per_dimension(tmp_path):
    kl = np.array([2.1, 0.001, 3.4, 0.0, 1.2])
    figure = plots.kl_per_dimension(kl, kl > 0.01, path=tmp_path / "kl.png",
                                    threshold_note="active: KL > 0.01 nats")
    _check_png(tmp_path / "kl.png", 600, 450)
    ax = figure.axes[0]
    np.testing.assert_allclose([bar.get_height() for bar in ax.patches], kl)
    colours = [bar.get_facecolor() for bar in ax.patches]
    assert colours[0] == colours[2] == colours[4] != colours[1] == colours[3]  # grey: inactive
    legend = ax.get_legend()
    assert legend.get_title().get_text() == "active: KL > 0.01 nats"
    assert [t.get_text() for t in legend.get_texts()] == ["active (3)", "inactive (collapsed) (2)"]
    assert ax.get_ylabel() == "KL (nats)"


def test_rate_distortion(tmp_path):
    import xml.etree.ElementTree as ET

    figure = plots.rate_distortion(POINTS, path=tmp_path / "rd.png", svg_path=tmp_path / "rd.svg")
    _check_png(tmp_path / "rd.png", 600, 450)
    root = ET.fromstring((tmp_path / "rd.svg").read_bytes())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert b"matplotlib.org" not in (tmp_path / "rd.svg").read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["rd.png", "rd.svg"]  # no temporary files left
    ax = figure.axes[0]
    sweep = next(line for line in ax.lines if line.get_label().startswith("β sweep"))
    np.testing.assert_array_equal(sweep.get_xydata(), [[20, 8], [12, 9.5], [6, 12], [2, 18], [0.2, 30]])
    star = next(line for line in ax.lines if line.get_label() == "β = 1 (the ELBO)")
    assert star.get_marker() == "*" and star.get_xydata().tolist() == [[6, 12]]
    texts = {t.get_text() for t in ax.texts}
    assert {"β=0.1", "β=0.3", "β=1", "β=3", "β=10"} <= texts
    equal_elbo = _lines(ax, "--")
    assert len(equal_elbo) >= 3
    for line in equal_elbo:  # rate + distortion constant along each, labelled with that -ELBO
        total = line.get_xdata() + line.get_ydata()
        # (a line may go unlabelled where no label fits; in this figure every one fits)
        assert np.ptp(total) < 1e-9 and f"−ELBO = {total[0]:g}" in texts
        for x, y in line.get_xydata()[[0, -1]]:  # from edge to edge of the plot
            assert np.isclose(x, ax.get_xlim()).any() or np.isclose(y, ax.get_ylim()).any()


# The sweep of issue 12 (`elbokit sweep --beta 0.1,0.5,1,3,10 --data digits --latent-dim 2
# --hidden 64,64 --epochs 5`) as measured: beta 3 and 10 fall on the same pixels, and their
# labels were drawn over each other. In POINTS the legend (then inside the axes) hid the
# label of -ELBO = 50, and that of -ELBO = 30 ran into beta = 0.1's.
DIGITS_SWEEP = [{"beta": b, "rate": r, "distortion": d} for b, r, d in [
    (0.1, 4.5305, 24.8232), (0.5, 1.2563, 25.1101), (1.0, 0.5597, 25.3825),
    (3.0, 0.0208, 25.7851), (10.0, 0.0051, 25.7781)]]
COLLAPSED = [{"beta": b, "rate": 0.0, "distortion": 25.0} for b in (1, 3, 10, 30)] + [
    {"beta": 0.1, "rate": 3.0, "distortion": 24.0}]


def _layout(figure) -> tuple[list[str], list[float]]:
    """(problems, labelled betas) of a rendered rate-distortion figure, from the display boxes
    of its artists: a text of the axes (beta or -ELBO label) outside the axes, over the
    legend or over another text; the title, an axis label or the legend outside the figure."""
    renderer = figure.canvas.get_renderer()
    ax = figure.axes[0]
    (legend,) = figure.legends or [ax.get_legend()]  # wherever the figure puts it
    axes, legend_box = ax.get_window_extent(renderer), legend.get_window_extent(renderer)

    def inside(box, outer) -> bool:  # to 0.01 pixel: the extents are floats
        return (box.x0 >= outer.x0 - 0.01 and box.x1 <= outer.x1 + 0.01
                and box.y0 >= outer.y0 - 0.01 and box.y1 <= outer.y1 + 0.01)

    problems = [f"the {name} sticks out of the figure" for name, artist in
                (("title", ax.title), ("x label", ax.xaxis.label), ("y label", ax.yaxis.label),
                 ("legend", legend)) if not inside(artist.get_window_extent(renderer), figure.bbox)]
    boxes = [(text.get_text(), text.get_window_extent(renderer)) for text in ax.texts]
    for i, (name, box) in enumerate(boxes):
        if not inside(box, axes):
            problems.append(f"{name!r} sticks out of the axes")
        if box.overlaps(legend_box):
            problems.append(f"{name!r} is under the legend")
        problems += [f"{name!r} overlaps {other!r}" for other, box2 in boxes[i + 1:] if box.overlaps(box2)]
    betas = [float(b) for name, _ in boxes if name.startswith("β=") for b in name[2:].split(", ")]
    return problems, sorted(betas)


@pytest.mark.parametrize("points", [POINTS, DIGITS_SWEEP, COLLAPSED], ids=["points", "digits", "collapsed"])
def test_rate_distortion_labels_are_inside_and_clear_of_the_legend_and_each_other(tmp_path, points):
    figure = plots.rate_distortion(points, path=tmp_path / "rd.png")  # rendered as saved
    problems, labelled = _layout(figure)
    assert problems == []
    assert labelled == sorted(p["beta"] for p in points)  # every beta named, once
    if points is DIGITS_SWEEP:  # the two coincident points share one label
        assert "β=3, 10" in {t.get_text() for t in figure.axes[0].texts}


def test_rate_distortion_labels_fit_sweeps_of_any_shape():
    """20 random sweeps: 2 to 8 betas, rates falling and distortions rising on scales from
    0.01 to 1000 nats, a fifth of the rates exactly 0 (collapsed members on one spot)."""
    rng = np.random.default_rng(12)
    for _ in range(20):
        betas = np.unique(np.round(np.exp(rng.uniform(-4, 4, rng.integers(2, 9))), 3))
        n, scale = len(betas), 10 ** rng.uniform(-2, 3)
        rate = np.sort(rng.exponential(1, n))[::-1] * scale * (rng.random(n) > 0.2)
        distortion = 20 + np.sort(rng.exponential(1, n)) * scale * rng.uniform(0.1, 3)
        points = [{"beta": b, "rate": r, "distortion": d}
                  for b, r, d in zip(betas, rate, distortion, strict=True)]
        figure = plots.rate_distortion(points)
        plots.png_bytes(figure)  # rendered as saved
        problems, labelled = _layout(figure)
        assert problems == [], points
        assert labelled == sorted(betas.tolist()), points


def test_files_are_reproducible_and_free_of_urls(images):
    # (every PNG the tests write is checked for URLs by _check_png)
    png = plots.png_bytes(plots.samples(images[0], (8, 8)))
    assert b"http" not in png and png == plots.png_bytes(plots.samples(images[0], (8, 8)))
    svg = plots.svg_bytes(plots.rate_distortion(POINTS))
    assert svg == plots.svg_bytes(plots.rate_distortion(POINTS))  # fixed ids, no date
    assert b"matplotlib.org" not in svg and b"<metadata" not in svg


def test_no_pyplot_figures_are_left_open_by_the_latent_figures(images):
    from matplotlib import pyplot

    x, x_hat = images
    before = pyplot.get_fignums()
    plots.training_curves(EM_HISTORY)
    plots.samples(x, None)
    plots.latent_scatter(x[:, :1])
    plots.rate_distortion(POINTS[:1])
    assert pyplot.get_fignums() == before == []


NAN = np.full((9, 64), np.nan)


@pytest.mark.parametrize(("draw", "message"), [
    (lambda x: plots.training_curves([]), "history is empty"),
    (lambda x: plots.training_curves([{"epoch": 1, "train": {"elbo": -1.0, "kl": 1.0}}]),
     "'train' lacks 'reconstruction'"),
    (lambda x: plots.training_curves([{"epoch": 1, "train": {"elbo": np.nan, "reconstruction": -1,
                                                              "kl": 1}}]), "train elbo is nan"),
    (lambda x: plots.training_curves([{"loss": 1.0}]), "record 0: expected a mapping with"),
    (lambda x: plots.samples(x[0], None), r"shape \[n, dim\], got shape \[64\]"),
    (lambda x: plots.samples(x, (8, 9)), "image_shape"),
    (lambda x: plots.samples(np.where(np.arange(9)[:, None] == 4, np.nan, x), None), "row 4"),
    (lambda x: plots.reconstructions(x, x[:8], (8, 8)), "differ in shape"),
    (lambda x: plots.reconstructions(x, NAN, (8, 8)), "NaN"),
    (lambda x: plots.latent_scatter(x[:, :2], np.arange(8)), "expected 9 labels"),
    (lambda x: plots.latent_scatter(x[:1, :5]), "at least 2 examples"),
    (lambda x: plots.latent_traversal(x[None], np.arange(8.0), [0], (8, 8)), "8 values for 9 steps"),
    (lambda x: plots.latent_traversal(x[None], np.arange(9.0), [0, 1], None), "expected 1 integer"),
    (lambda x: plots.kl_per_dimension(np.ones(3), np.ones(2, bool)), "expected 3 booleans"),
    (lambda x: plots.kl_per_dimension(np.array([1, np.nan]), np.ones(2, bool)), "NaN"),
    (lambda x: plots.rate_distortion([]), "no points"),
    (lambda x: plots.rate_distortion([{"beta": 1.0, "rate": 2.0}]), "point 0: expected numbers"),
    (lambda x: plots.rate_distortion([{"beta": 1.0, "rate": np.nan, "distortion": 1}]), "finite"),
])
def test_bad_inputs_of_the_latent_figures(images, draw, message):
    with pytest.raises(DataError, match=message) as raised:
        draw(images[0])
    assert "\n" not in str(raised.value)
