"""A user's own model (elbokit.plugins and the generic LatentModel facade): trained, scored,
saved, loaded, evaluated, reported, sampled and resumed like a built-in one, from Python and
the CLI; and never imported because a run's files say so."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from elbokit import LatentModel, plugins
from elbokit.cli import main
from elbokit.errors import CheckpointError, ConfigError, DataError

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "tiny_vae.py"
REFERENCE = f"{EXAMPLE}:TinyVAE"


def cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("elbokit") and ": error: " in lines[0], err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """Binarized 8x8 digits: 1,400 training and 397 test rows."""
    x = (load_digits().data > 7).astype(np.float64)
    return x[:1400], x[1400:]


@pytest.fixture(scope="module")
def fitted(digits) -> LatentModel:
    train, _ = digits
    return LatentModel(REFERENCE, model_options={"latent_dim": 4}, epochs=40, seed=0).fit(train)


def test_a_user_module_trains_to_a_better_density_than_independent_pixels(digits, fitted):
    """The facade trains any protocol module: its held-out log p(x) beats the best model
    without z (independent Bernoulli pixels fitted by their training means, with add-one
    smoothing), -24.88 nats here, by far more than the estimate's error (k = 500 importance
    samples: the mean's standard error is below 0.05 nats on these 397 rows)."""
    train, test = digits
    p = (train.sum(0) + 1) / (len(train) + 2)
    independent = float((test * np.log(p) + (1 - test) * np.log(1 - p)).sum(1).mean())
    estimate, stderr = fitted.log_likelihood(test, k=500)
    assert np.sqrt((stderr ** 2).sum()) / len(stderr) < 0.05  # the mean's standard error
    assert estimate.mean() > independent + 2.0, (estimate.mean(), independent)
    assert fitted.n_features_in_ == 64 and fitted.n_iter_ == fitted.epochs_trained_ >= 1
    assert fitted.transform(test[:5]).shape == (5, 4)
    assert fitted.reconstruct(test[:5]).shape == (5, 64)
    assert set(np.unique(fitted.sample(3, seed=0))) <= {0.0, 1.0}


def test_classes_instances_and_references_build_the_same_model(digits):
    """``model`` may be the class, a reference or an instance: the same seed gives the same
    weights; fit never changes the instance passed (scikit-learn's rule)."""
    train, _ = digits
    module = plugins.load_class(REFERENCE)
    by_class = LatentModel(module, epochs=1).fit(train[:200])
    by_reference = LatentModel(REFERENCE, epochs=1).fit(train[:200])
    for a, b in zip(by_class.module_.parameters(), by_reference.module_.parameters(), strict=True):
        assert torch.equal(a, b)
    instance = module(dim=64)
    before = [p.detach().clone() for p in instance.parameters()]
    LatentModel(instance, epochs=1).fit(train[:200])
    assert all(torch.equal(a, b) for a, b in zip(before, instance.parameters(), strict=True))


def test_save_and_load_need_the_model_named_again(tmp_path, digits, fitted):
    _, test = digits
    fitted.save(tmp_path / "m")
    with pytest.raises(CheckpointError, match="add --model .*tiny_vae.py:TinyVAE"):
        LatentModel.load(tmp_path / "m")
    for given in (REFERENCE, plugins.load_class(REFERENCE)):
        loaded = LatentModel.load(tmp_path / "m", model=given)
        assert np.array_equal(loaded.score_samples(test[:20], k=50),
                              fitted.score_samples(test[:20], k=50))
    other = tmp_path / "other.py"
    shutil.copy(EXAMPLE, other)
    with pytest.raises(CheckpointError, match="refused without importing"):
        LatentModel.load(tmp_path / "m", model=f"{other}:TinyVAE")


def test_scikit_learn_clone_and_pipeline(digits):
    train, _ = digits
    labels = load_digits().target[:1400]
    model = LatentModel(REFERENCE, model_options={"latent_dim": 4}, epochs=2)
    copy = clone(model)
    assert copy.get_params() == model.get_params() and copy is not model
    pipeline = Pipeline([("z", model), ("clf", LogisticRegression(max_iter=200))])
    pipeline.fit(train[:600], labels[:600])
    assert pipeline.predict(train[600:610]).shape == (10,)


@pytest.mark.parametrize("source, message", [
    ("import nothing_called_this\n", "No module named 'nothing_called_this'"),
    ("def broken(:\n", "SyntaxError"),
    ("class TinyVAE:\n    def __init__(self, dim):\n        pass\n", "is not a torch.nn.Module"),
    ("import torch\nclass TinyVAE(torch.nn.Module):\n    def __init__(self, dim):\n"
     "        super().__init__(); self.w = torch.nn.Linear(dim, 1)\n    def prior(self): ...\n",
     "lacks likelihood, posterior()"),
    ("import torch\nclass TinyVAE(torch.nn.Module):\n    def __init__(self):\n"
     "        super().__init__()\n", "TinyVAE(dim=64, **{}) failed"),
])
def test_a_broken_user_file_is_one_line(tmp_path, digits, source, message):
    path = tmp_path / "user.py"
    path.write_text(source)
    code, _, err = cli("fit", "--model", f"{path}:TinyVAE", "--data", "digits", "--binarize",
                       "--epochs", "1", "--out", tmp_path / "run")
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "run").exists()


def test_bad_references_and_options_are_one_line(tmp_path):
    for argv, fragment in [
        (["--model", f"{tmp_path}/missing.py:TinyVAE"], "no such file"),
        (["--model", f"{EXAMPLE}:NotThere"], "defines no class NotThere"),
        (["--model", "not-a-plugin"], "not a built-in model, an installed plugin"),
        (["--model", REFERENCE, "--model-options", "[1]"], "expected a JSON object"),
        (["--model", REFERENCE, "--model-options", "{bad"], "not JSON"),
        (["--model-options", '{"latent_dim": 2}'], "--model vae takes its own options"),
        (["--model", REFERENCE, "--model-options", '{"depth": 2}'], "unexpected keyword"),
    ]:
        code, _, err = cli("fit", "--data", "digits", "--binarize", "--epochs", "1",
                           "--out", tmp_path / "run", *argv)
        assert_one_line_error(code, err, fragment)


def test_a_user_module_data_check_is_one_line(digits):
    train, _ = digits
    with pytest.raises(DataError, match="TinyVAE models 0/1 data"):
        LatentModel(REFERENCE, epochs=1).fit(train * 0.5)


def test_the_cli_trains_evaluates_reports_samples_and_resumes_a_user_model(tmp_path):
    run = tmp_path / "run"
    common = ["--data", "digits", "--binarize", "--eval-k", "50", "--seed", "3"]
    code, out, err = cli("fit", "--model", REFERENCE, "--model-options", '{"latent_dim": 3}',
                         "--epochs", "2", "--out", run, *common)
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())
    assert config["kind"] == "custom" and config["params"]["model"] == REFERENCE
    assert config["params"]["model_options"] == {"latent_dim": 3}
    assert (run / "report.html").exists() and (run / "figures" / "samples.png").exists()
    for command in (["evaluate", run, "--k", "20"], ["report", run, "--redraw"],
                    ["sample", run, "-n", "4", "-o", tmp_path / "s.npy"],
                    ["fit", "--out", run, "--resume", "--epochs", "3"]):
        code, _, err = cli(*command)
        assert_one_line_error(code, err, "add --model")
    code, _, err = cli("evaluate", run, "--k", "20", "--model", REFERENCE, "--json", tmp_path / "e.json")
    assert code == 0, err
    assert np.isfinite(json.loads((tmp_path / "e.json").read_text())["log_likelihood"]["estimate"])
    assert cli("report", run, "--redraw", "--model", REFERENCE)[0] == 0
    assert cli("sample", run, "-n", "4", "-o", tmp_path / "s.npy", "--model", REFERENCE)[0] == 0
    assert np.load(tmp_path / "s.npy").shape == (4, 64)
    code, _, err = cli("fit", "--out", run, "--resume", "--epochs", "4", "--model", REFERENCE,
                       "--eval-k", "50")
    assert code == 0, err
    assert json.loads((run / "summary.json").read_text())["epochs_trained"] == 4


def test_resume_is_exact_for_a_user_model(tmp_path):
    """Two epochs then two more give the weights four epochs in one go give (same process)."""
    common = ["--model", REFERENCE, "--data", "digits", "--binarize", "--eval-k", "20",
              "--no-report", "--patience", "0", "--ema", "0"]
    assert cli("fit", *common, "--epochs", "4", "--out", tmp_path / "once")[0] == 0
    assert cli("fit", *common, "--epochs", "2", "--out", tmp_path / "twice")[0] == 0
    code, _, err = cli("fit", "--resume", "--out", tmp_path / "twice", "--epochs", "4",
                       "--model", REFERENCE, "--eval-k", "20", "--no-report")
    assert code == 0, err
    once = LatentModel.load(tmp_path / "once", model=REFERENCE).module_.state_dict()
    twice = LatentModel.load(tmp_path / "twice", model=REFERENCE).module_.state_dict()
    assert all(torch.equal(once[k], twice[k]) for k in once)


def test_an_edited_reference_is_refused_and_never_imported(tmp_path):
    """Someone edits a run to point at another file: elbokit refuses it without executing
    it, whatever --model is given."""
    run = tmp_path / "run"
    assert cli("fit", "--model", REFERENCE, "--data", "digits", "--binarize", "--epochs", "1",
               "--eval-k", "20", "--no-report", "--out", run)[0] == 0
    marker = tmp_path / "EXECUTED"
    evil = tmp_path / "evil.py"
    evil.write_text(EXAMPLE.read_text() + f"\nopen({str(marker)!r}, 'w').write('x')\n")
    for name in ("config.json", "model.json"):
        path = run / name
        path.write_text(path.read_text().replace(str(EXAMPLE), str(evil)))
    for argv in (["evaluate", run, "--k", "20"], ["evaluate", run, "--k", "20", "--model", REFERENCE],
                 ["sample", run, "-o", tmp_path / "s.npy", "--model", REFERENCE],
                 ["report", run, "--model", REFERENCE],
                 ["fit", "--resume", "--out", run, "--epochs", "2", "--model", REFERENCE]):
        code, _, err = cli(*argv)
        assert_one_line_error(code, err, str(evil))
    assert not marker.exists()


def test_an_installed_plugin_needs_no_reference(tmp_path, monkeypatch):
    """An entry point in the group elbokit.models names the model; runs of it load with no
    --model (the installed package is trusted as any installed package is)."""
    site = tmp_path / "site"
    (site / "tiny_plugin-0.1.dist-info").mkdir(parents=True)
    shutil.copy(EXAMPLE, site / "tiny_plugin.py")
    (site / "tiny_plugin-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tiny-plugin\nVersion: 0.1\n")
    (site / "tiny_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[elbokit.models]\ntiny = tiny_plugin:TinyVAE\n")
    monkeypatch.syspath_prepend(str(site))
    assert plugins.installed_plugins()["tiny"] == "tiny_plugin:TinyVAE"
    run = tmp_path / "run"
    code, out, err = cli("fit", "--model", "tiny", "--data", "digits", "--binarize", "--epochs", "1",
                         "--eval-k", "20", "--no-report", "--out", run)
    assert code == 0, err
    assert cli("evaluate", run, "--k", "20")[0] == 0
    sys.modules.pop("tiny_plugin", None)


def test_a_class_without_a_file_is_loaded_from_python_only(tmp_path, digits):
    """A class defined in a notebook or script (no importable file) trains and saves; its
    model loads when the class is passed again."""
    train, _ = digits
    cls = plugins.load_class(REFERENCE)

    class Notebook(cls):
        pass

    model = LatentModel(Notebook, epochs=1).fit(train[:200])
    model.save(tmp_path / "m")
    assert LatentModel.load(tmp_path / "m", model=Notebook).n_features_in_ == 64
    with pytest.raises(CheckpointError, match="not"):
        LatentModel.load(tmp_path / "m", model=cls)
    with pytest.raises(ConfigError, match="model must be"):
        LatentModel(model=42).fit(train[:10])


def test_an_installed_component_plugin_is_offered_by_the_cli(tmp_path, monkeypatch):
    """A package listing a module under elbokit.components: the CLI imports it at start,
    and the observation model it registers is a --likelihood choice."""
    from elbokit.likelihoods import LIKELIHOODS

    site = tmp_path / "site"
    (site / "counts_plugin-0.1.dist-info").mkdir(parents=True)
    shutil.copy(EXAMPLE.parent / "poisson.py", site / "counts_plugin.py")
    (site / "counts_plugin-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: counts-plugin\nVersion: 0.1\n")
    (site / "counts_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[elbokit.components]\npoisson = counts_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    counts = np.random.default_rng(0).poisson(3.0, size=(300, 5)).astype(float)
    np.save(tmp_path / "counts.npy", counts)
    try:
        code, _, err = cli("fit", "--data", tmp_path / "counts.npy", "--likelihood", "poisson",
                           "--latent-dim", "1", "--hidden", "8", "--epochs", "1", "--eval-k", "20",
                           "--no-report", "--out", tmp_path / "run")
        assert code == 0, err
        assert "poisson" in LIKELIHOODS
    finally:
        if "poisson" in LIKELIHOODS:
            LIKELIHOODS.remove("poisson")
        sys.modules.pop("counts_plugin", None)
    (site / "counts_plugin.py").write_text("raise RuntimeError('broken on purpose')\n")
    code, _, err = cli("datasets")
    assert_one_line_error(code, err, "plugin poisson (counts_plugin) failed to load",
                          "RuntimeError: broken on purpose")
    sys.modules.pop("counts_plugin", None)
