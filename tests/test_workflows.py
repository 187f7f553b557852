"""elbokit.workflows: runs as library functions, the same runs the CLI writes and reads."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from elbokit import VAE, Mixture, evaluation, workflows
from elbokit.cli import main
from elbokit.errors import ConfigError

SMALL = {"latent_dim": 2, "hidden": (16,), "epochs": 2, "seed": 0}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> workflows.Run:
    out = tmp_path_factory.mktemp("workflows") / "run"
    return workflows.fit_run(VAE(**SMALL), "digits", out, binarize=0.5, eval_k=20)


def test_fit_run_returns_the_run_it_wrote(run):
    assert run.summary == json.loads((run.path / "summary.json").read_text())
    assert set(run.summary["splits"]) == {"train", "test"} and run.summary["epochs_trained"] == 2
    assert [m["epoch"] for m in run.metrics] == [1, 2]
    assert run.report_path == run.path / "report.html" and run.report_path.is_file()
    assert run.config["kind"] == "vae" and run.config["params"]["latent_dim"] == 2


def test_a_run_shows_its_scores_and_figures_in_a_notebook(run):
    html = run._repr_html_()
    test = run.summary["splits"]["test"]
    ll = test["log_likelihood"]
    row = re.search(r"<tr><td>test</td>(.*?)</tr>", html).group(1)
    assert re.findall(r'<td class="num">([^<]+)</td>', row) == [
        str(test["n_examples"]), f"{test['elbo']:.3f}", f"{test['reconstruction']:.3f}",
        f"{test['kl']:.3f}", "n/a" if test["iwae"] is None else f"{test['iwae']['value']:.3f}",
        f"{ll['estimate']:.3f} &plusmn; {ll['stderr']:.3f}"]
    assert f"{run.summary['epochs_trained']} epochs trained" in html
    assert html.count("<img") == 3  # training curves, samples, reconstructions
    loaded = workflows.Run.load(run.path)
    assert loaded._repr_html_() == html and loaded.model is None  # from its files; no model loaded


def test_a_loaded_run_scores_as_the_cli_does(run, tmp_path, capsys):
    loaded = workflows.Run.load(run.path)
    scores = loaded.evaluate(split="test", k=30, seed=4)
    argv = ["evaluate", str(run.path), "--k", "30", "--seed", "4", "--json", str(tmp_path / "e.json")]
    assert main(argv) == 0
    cli = json.loads((tmp_path / "e.json").read_text())
    assert cli["log_likelihood"] == scores["log_likelihood"] and cli["elbo"] == scores["elbo"]
    assert cli["diagnostics"] == json.loads(json.dumps(scores["diagnostics"]))
    assert loaded.sample(5, seed=1).shape == (5, 64)
    np.testing.assert_array_equal(loaded.sample(5, seed=1), loaded.sample(5, seed=1))
    with pytest.raises(ConfigError, match="k must be at least 2"):
        loaded.evaluate(k=1)


def test_resume_run_extends_a_run_to_more_epochs(tmp_path):
    out = tmp_path / "run"
    workflows.fit_run(VAE(**SMALL), "digits", out, binarize=0.5, eval_k=20, write_report=False)
    told = []
    resumed = workflows.resume_run(out, epochs=3, eval_k=20, write_report=False, notify=told.append)
    assert resumed.summary["epochs_trained"] == 3 and len(resumed.metrics) == 3 and not told
    again = workflows.resume_run(out, eval_k=20, write_report=False, notify=told.append)
    assert again.summary["epochs_trained"] == 3 and "nothing to train" in told[0]


def test_bad_options_are_refused_before_anything_is_written(tmp_path):
    for model, options, message in [
        (VAE(**SMALL), {"ram_budget": 10**6}, "add --stream"),
        (VAE(**SMALL), {"eval_k": 1}, "eval-k must be at least 2"),
        (Mixture(), {"stream": True}, "mixture is fitted on data in memory"),
        (Mixture(), {"binarize": "dynamic"}, "trains VAEs"),
        (VAE(**{**SMALL, "hidden": (-1,)}), {}, "hidden widths must be >= 1"),
    ]:
        with pytest.raises((ConfigError, ValueError), match=message):
            workflows.fit_run(model, "digits", tmp_path / "run", **options)
        assert not (tmp_path / "run").exists()


def test_a_sweep_trains_one_run_per_beta_and_continues(tmp_path):
    out = tmp_path / "sweep"
    first = workflows.sweep(VAE(**SMALL), "digits", [0.5, 2.0], out, binarize=0.5, eval_k=20,
                            write_report=False)
    assert first.betas == [0.5, 2.0] and all(p["rate"] is not None for p in first.points)
    assert json.loads((out / "beta-2" / "config.json").read_text())["params"]["beta"] == 2.0
    told = []
    more = workflows.sweep(VAE(**SMALL), "digits", [2.0, 4.0], out, binarize=0.5, eval_k=20,
                           write_report=False, notify=told.append)
    assert more.betas == [0.5, 2.0, 4.0] and "finished before, skipped" in told[0]
    with pytest.raises(ConfigError, match="other options"):
        workflows.sweep(VAE(**{**SMALL, "latent_dim": 3}), "digits", [1.0], out, binarize=0.5)
    with pytest.raises(ConfigError, match="mixture has none"):
        workflows.sweep(Mixture(), "digits", [1.0], tmp_path / "other")


def test_the_default_evaluation_fits_its_k_to_a_share_of_the_training_time(tmp_path, monkeypatch):
    # The pilot's measured cost is replaced by a known one, so the k it leads to is known:
    # 1e-5 s per draw and example, 300 training rows (a sample) + 359 test rows, and the
    # floor of 1 s (two epochs train in well under 6 s): 1 / (1e-5 * 659) = 152 -> k = 100.
    monkeypatch.setattr(evaluation, "seconds_per_draw", lambda module, x: 1e-5)
    monkeypatch.setattr(evaluation, "TRAIN_ROWS", 300)
    out = tmp_path / "run"
    run = workflows.fit_run(VAE(**SMALL), "digits", out, binarize=0.5, write_report=False)
    plan = run.summary["evaluation"]
    training = sum(m["seconds"] for m in run.metrics)
    assert plan["chosen"] == "auto" and plan["k"] == 100
    assert plan["training_seconds"] == pytest.approx(training, abs=1e-3)
    assert plan["budget_seconds"] == pytest.approx(max(1.0, 0.15 * training), abs=1e-3)
    splits = run.summary["splits"]
    assert plan["train_rows"] == splits["train"]["n_examples"] == 300 < plan["train_rows_of"]
    assert splits["test"]["n_examples"] == 359
    for scores in splits.values():
        assert scores["log_likelihood"]["k"] == 100 and scores["iwae"]["k"] == 50
        assert scores["log_likelihood"]["estimate"] >= scores["iwae"]["value"] - 0.05
    # Told a k, the whole training split is scored with it.
    given = workflows.resume_run(out, eval_k=20, write_report=False).summary
    assert given["evaluation"]["chosen"] == "given" and given["splits"]["train"]["n_examples"] \
        == given["evaluation"]["train_rows_of"] == plan["train_rows_of"]


def test_a_mixture_run_is_scored_exactly_without_sampling(tmp_path, capsys):
    out = tmp_path / "mix"
    assert main(["fit", "--model", "mixture", "--components", "3", "--data", "digits",
                 "--binarize", "--epochs", "2", "--no-report", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "log p(x) exact" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["evaluation"]["chosen"] == "exact" and summary["evaluation"]["k"] is None
    for scores in summary["splits"].values():
        assert scores["iwae"] is None and scores["log_likelihood"]["exact"]
        assert scores["log_likelihood"]["estimate"] == scores["exact_log_likelihood"]

