"""docs/extending.md: every Python block and every command in it runs, in order, as written.

They run in a temporary directory holding a copy of docs/examples/ (the page's file
references are relative to the repository's root); the Python blocks share one namespace,
as in a notebook, and each command must exit 0. What the page promises is checked on the
objects its blocks leave behind.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from elbokit.cli import main
from elbokit.estimators import ESTIMATORS
from elbokit.likelihoods import LIKELIHOODS

PAGE = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def blocks() -> list[tuple[str, str]]:
    """``(language, text)`` of every fenced block, in the page's order."""
    return re.findall(r"```(python|sh)\n(.*?)```", PAGE.read_text(), flags=re.S)


def test_the_page_covers_a_model_an_observation_model_and_an_estimator():
    text = PAGE.read_text()
    languages = [language for language, _ in blocks()]
    assert languages.count("python") >= 4 and languages.count("sh") >= 2
    for needle in ("--model", "LIKELIHOODS.register", "ESTIMATORS.register", "elbokit.models"):
        assert needle in text, needle


@pytest.fixture
def registries():
    """The page registers components as a user would; they are taken out again afterwards,
    so that no other test sees them among the choices."""
    before = {registry: set(registry.names()) for registry in (LIKELIHOODS, ESTIMATORS)}
    yield
    for registry, names in before.items():
        for name in set(registry.names()) - names:
            registry.remove(name)


def test_every_block_of_the_page_runs(tmp_path, monkeypatch, capsys, registries):
    shutil.copytree(PAGE.parent / "examples", tmp_path / "docs" / "examples")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "extending"}
    for language, text in blocks():
        if language == "python":
            exec(compile(text, str(PAGE), "exec"), namespace)  # noqa: S102 (our own page)
            continue
        for line in text.splitlines():
            if line.strip():
                code = main(shlex.split(line)[1:])
                out, err = capsys.readouterr()
                assert code == 0, f"{line}\n{err}"
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
