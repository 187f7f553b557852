"""elbokit.figures: which figures a run gets follows what its model can do (traversals for a
continuous z, a posterior over components for a mixture), the training history it reads,
and the diagnostics it adds to a run's summary. (How each figure is drawn: test_plots.py.)"""

from __future__ import annotations

import json

import matplotlib.image
import numpy as np
import pytest

from elbokit import VAE, Mixture, runs
from elbokit import data as datasets
from elbokit.figures import FIGURES, diagnose, draw_run, held_out_split, read_history, write_figures


@pytest.fixture(scope="module")
def digits():
    d = datasets.load("digits")
    return d.x[:240], d.y[:240]


def fitted(kind: str, x: np.ndarray):
    if kind == "mixture":
        return Mixture(n_components=3, likelihood="bernoulli", max_iter=100, tol=1e-2, seed=0).fit(x)
    latent = {"gaussian": "gaussian:3", "discrete": "bernoulli:3"}[kind]
    return VAE(latent=latent, hidden=(16,), epochs=1, val_fraction=0, seed=0).fit(x)


@pytest.mark.parametrize("kind, expected", [
    ("gaussian", {"samples.png", "reconstructions.png", "latent_space.png", "traversals.png",
                  "kl_per_dimension.png"}),
    # A discrete z has nothing to traverse continuously.
    ("discrete", {"samples.png", "reconstructions.png", "latent_space.png", "kl_per_dimension.png"}),
    # A mixture has no encoder to reconstruct with: its posterior over components instead.
    ("mixture", {"samples.png", "latent_space.png"}),
])
def test_the_figures_follow_what_the_model_can_do(tmp_path, digits, kind, expected):
    x, y = digits
    model = fitted(kind, x)
    written = write_figures(model, tmp_path, x[:60], y[:60], (8, 8))
    assert set(written) == expected and len(written) == len(expected)
    assert {p.name for p in (tmp_path / FIGURES).iterdir()} == expected
    for name in expected:  # real images, not empty files
        image = matplotlib.image.imread(tmp_path / FIGURES / name)
        assert image.ndim == 3 and image.shape[0] > 50 and image.std() > 0, name
    # With a history, its training curves too.
    (tmp_path / "metrics.jsonl").write_text(
        "".join(json.dumps({"epoch": e, "train": {"elbo": -50.0 + e, "reconstruction": -45.0 + e,
                                                  "kl": 5.0}}) + "\n" for e in (1, 2)))
    assert "training_curves.png" in write_figures(model, tmp_path, x[:60], None, (8, 8))


def test_read_history_keeps_the_epochs_and_leaves_out_events(tmp_path):
    assert read_history(tmp_path) == []
    lines = [{"epoch": 1, "train": {"elbo": -3.0}}, {"event": "rolled back", "epoch": 2},
             {"epoch": 2, "train": {"elbo": -2.0}}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n\n")
    assert read_history(tmp_path) == [lines[0], lines[2]]


def test_diagnose_takes_the_exact_log_likelihood_over_the_estimate_for_the_gap(digits):
    x, _ = digits
    model = fitted("discrete", x)
    scores = {"elbo": -30.0, "log_likelihood": {"estimate": -28.0}}
    found = diagnose(model, x[:50], scores)
    assert found["gap"] == pytest.approx(2.0)
    assert found["model"] == "VAE (latent bernoulli:3, bernoulli likelihood)"
    assert diagnose(model, x[:50], {**scores, "exact_log_likelihood": -29.0})["gap"] == \
        pytest.approx(1.0)
    assert "gap" not in diagnose(model, x[:50])


def test_draw_run_uses_the_test_split_and_adds_the_diagnostics_to_the_summary(tmp_path, digits):
    x, _ = digits
    np.save(tmp_path / "x.npy", x)
    data = runs.load_data(str(tmp_path / "x.npy"))
    record = runs.data_record(str(tmp_path / "x.npy"), data, None, 0, 0.25, 0.0)
    run_data = runs.prepare_data(record)
    assert held_out_split(run_data) == "test"
    model = fitted("gaussian", run_data.split("train"))
    summary = {"splits": {"test": {"elbo": -40.0, "log_likelihood": {"estimate": -37.5}}}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    written = draw_run(model, tmp_path, run_data)
    assert "traversals.png" in written
    found = json.loads((tmp_path / "summary.json").read_text())["diagnostics"]
    assert found["split"] == "test" and found["n_examples"] == len(run_data.splits["test"]) == 60
    assert found["gap"] == pytest.approx(2.5)
    # No test split: the training examples.
    no_test = runs.prepare_data({**record, "split": {**record["split"], "test_fraction": 0.0}})
    assert held_out_split(no_test) == "train"
