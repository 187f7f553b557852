"""docs/extending.md: every Python block and every command in it runs, in order, as written.

They run through the mechanism that runs every page's runnable blocks (tests/docs_pages.py):
in a temporary directory holding a copy of docs/examples/ (the page's file references are
relative to the repository's root); the Python blocks share one namespace, as in a
notebook, each command must exit 0, and the components the page registers are taken out
again afterwards. What the page promises is checked on the objects its blocks leave behind.
"""

from __future__ import annotations

import numpy as np
from docs_pages import DOCS, run_page, runnable_blocks
from sklearn.datasets import load_digits

from elbokit.estimators import ESTIMATORS
from elbokit.likelihoods import LIKELIHOODS

PAGE = DOCS / "extending.md"


def test_the_page_covers_a_model_an_observation_model_and_an_estimator():
    text = PAGE.read_text()
    languages = [language for language, _ in runnable_blocks(PAGE)]
    assert languages.count("python") >= 4 and languages.count("sh") >= 2
    for needle in ("--model", "LIKELIHOODS.register", "ESTIMATORS.register", "elbokit.models"):
        assert needle in text, needle


def test_every_block_of_the_page_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = run_page(PAGE, tmp_path, capsys)
    # The components the page registered are gone again: no other test sees them.
    assert "poisson" not in LIKELIHOODS.names() and "stl" not in ESTIMATORS.names()
    # What the page says happened: a user model that learned something, its run evaluated,
    # reported, sampled and resumed.
    x = (load_digits().data > 7).astype(float)
    p = (x[:1400].sum(0) + 1) / 1402
    independent = (x[1400:] * np.log(p) + (1 - x[1400:]) * np.log(1 - p)).sum(1).mean()
    # Better than the best model without z by over a nat, a hundred times the estimate's
    # standard error (k = 500 on 397 rows; tests/test_plugins.py trains longer and asks 2).
    assert namespace["log_p"].mean() > independent + 1.0
    assert (tmp_path / "runs/tiny/report.html").is_file()
    assert np.load(tmp_path / "runs/tiny/samples.npy").shape == (16, 64)
    assert namespace["run"].summary["epochs_trained"] >= 1
    # The Poisson VAE learned the shared factor: better than independent Poissons by more
    # than the estimate's error (k = 200 on 200 rows: a standard error of the mean below 0.01).
    assert namespace["vae"].score(namespace["counts"][400:], k=200) > namespace["independent"] + 0.3
