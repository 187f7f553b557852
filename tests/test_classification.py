"""elbokit.classification: ``classify`` as a library function, the same run and scores the
``elbokit classify`` command prints and writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from elbokit import classification, workflows
from elbokit.classifiers import Classifier
from elbokit.cli import main
from elbokit.cli.common import format_table
from elbokit.errors import ConfigError


@pytest.fixture
def texts(tmp_path):
    rng = np.random.default_rng(0)
    ham, spam = ["see", "you", "lunch", "ok", "call"], ["free", "prize", "win", "now", "call"]
    lines = [f"ham\t{' '.join(rng.choice(ham, 4))}" for _ in range(40)]
    lines += [f"spam\t{' '.join(rng.choice(spam + ham[:3], 4))}" for _ in range(20)]
    (tmp_path / "texts.tsv").write_text("\n".join(lines) + "\n")
    return tmp_path / "texts.tsv"


def _plain(obj):
    return json.loads(json.dumps(obj))


def test_classify_returns_what_the_cli_prints_and_writes(texts, tmp_path, capsys):
    assert workflows.classify is classification.classify
    result = classification.classify(str(texts), "discriminative",
                                     threshold=0.7, seed=1, out=tmp_path / "lib")
    assert result.methods == ["logistic-regression", "mlp"]
    assert result.binary and result.positive == "spam" and list(result.classes) == ["ham", "spam"]
    assert (result.n_train, result.n_test, result.n_labelled) == (48, 12, 48)
    assert result.thresholds == [0.5, 0.7, 0.9] and len(result.rows) == 2 * 3
    assert set(result.seconds) == set(result.models) == set(result.probabilities) == set(result.methods)
    assert all(p.shape == (12,) for p in result.probabilities.values())
    assert isinstance(result.models["mlp"], Classifier)

    code = main(["classify", "--data", str(texts), "--method", "discriminative", "--threshold", "0.7",
                 "--seed", "1", "--json", str(tmp_path / "s.json"), "--out", str(tmp_path / "cli")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert format_table(("method", "threshold", "accuracy", "precision", "recall", "F1",
                         "ROC AUC", "PR AUC"), result.rows) in out  # the same rows, printed
    assert f"12 test examples, {result.training_note()})" in out
    cli_scores = json.loads((tmp_path / "s.json").read_text())
    assert cli_scores == _plain(result.scores)
    assert (result.path, result.figures) == (tmp_path / "lib", ["pr_curve.png", "calibration.png"])
    saved = json.loads((result.path / "config.json").read_text())
    assert {k: saved[k] for k in result.config} == _plain(result.config)
    assert json.loads((result.path / "metrics.json").read_text()) == _plain(result.details)
    loaded = Classifier.load(result.path / "methods" / "logistic-regression")
    x = result.featurizer.transform(["free prize now", "see you at lunch"])
    assert (loaded.predict(x) == result.models["logistic-regression"].predict(x)).all()
    assert sorted(p.name for p in result.path.iterdir()) == sorted(
        p.name for p in (tmp_path / "cli").iterdir())


def test_classify_multiclass_digits_without_a_run():
    result = classification.classify("digits", "generative", test_fraction=0.1, labels=300)
    assert not result.binary and result.positive is None and result.path is None
    assert result.rows[0][0] == "naive-bayes" and len(result.rows[0]) == 3
    assert set(result.scores["naive-bayes"]) == {"accuracy", "balanced_accuracy", "macro_f1"}
    assert result.scores["naive-bayes"]["accuracy"] > 0.7  # measured 0.87 on every label
    assert "confusion" in result.details["naive-bayes"] and result.undefined == []
    assert result.training_note() == f"{result.n_train} training examples, 300 of them labelled"


def test_bad_options_are_refused_before_anything_is_read_or_written(texts, tmp_path):
    for options, message in [({"method": "bayesian"}, "method bayesian: unknown"),
                             ({"model": "flow"}, "model 'flow': unknown"),
                             ({"overwrite": True}, "--overwrite needs --out")]:
        with pytest.raises(ConfigError, match=message):
            classification.classify(str(tmp_path / "missing.tsv"), **options)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("keep")
    with pytest.raises(ConfigError, match="already exists"):
        classification.classify(str(texts), out=tmp_path / "taken")
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["notes.txt"]
