"""The ``elbokit`` command end to end on tiny data, and its answers to bad input."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import numpy as np
import pytest
from commands import FAST, run

from elbokit.cli import COMMANDS


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_help_for_every_command(capsys, command):
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0 and out.startswith("usage: elbokit")


def test_fit_evaluate_sample_end_to_end(capsys, tmp_path, tiny):
    out_dir = tmp_path / "run"
    code, out, err = run(capsys, "fit", "--data", tiny, "--out", out_dir, *FAST)
    assert code == 0, err
    assert "ELBO" in out and "run directory:" in out and "test" in out
    for name in ("config.json", "model.json", "model.safetensors", "metrics.jsonl",
                 "summary.json", "checkpoint"):
        assert (out_dir / name).exists(), name
    assert len((out_dir / "metrics.jsonl").read_text().splitlines()) == 2

    code, out, err = run(capsys, "evaluate", out_dir, "--k", "50", "--json", tmp_path / "e.json")
    assert code == 0, err
    scores = json.loads((tmp_path / "e.json").read_text())
    for key in ("elbo", "reconstruction", "kl", "iwae", "log_likelihood", "n_examples", "split"):
        assert key in scores
    assert scores["split"] == "test" and scores["n_examples"] == 12  # 20% of 60
    assert scores["log_likelihood"]["k"] == 50 and scores["log_likelihood"]["stderr"] > 0
    assert abs(scores["elbo"] - (scores["reconstruction"] - scores["kl"])) < 1e-5
    # Seeded: the same command gives the same numbers.
    run(capsys, "evaluate", out_dir, "--k", "50", "--json", tmp_path / "f.json")
    assert (tmp_path / "f.json").read_text() == (tmp_path / "e.json").read_text()
    # Any file of the same width.
    code, *_ = run(capsys, "evaluate", out_dir, "--data", tiny, "--k", "10", "--json", "-")
    assert code == 0

    for name in ("s.npy", "s.csv"):
        code, out, err = run(capsys, "sample", out_dir, "-n", "7", "-o", tmp_path / name)
        assert code == 0, err
    assert np.load(tmp_path / "s.npy").shape == (7, 10)
    assert np.loadtxt(tmp_path / "s.csv", delimiter=",").shape == (7, 10)


def test_sample_writes_an_image_grid_for_image_data(capsys, tmp_path):
    out_dir = tmp_path / "digits"
    assert run(capsys, "fit", "--out", out_dir, *FAST)[0] == 0
    code, out, err = run(capsys, "sample", out_dir, "-n", "16", "-o", tmp_path / "grid.png")
    assert code == 0, err
    import matplotlib.image

    grid = matplotlib.image.imread(tmp_path / "grid.png")
    assert grid.shape[0] >= 4 * 8 and grid.std() > 0  # 4x4 digits, not a blank image


def test_resume_extends_a_run_and_matches_a_straight_run(capsys, tmp_path, tiny):
    common = ["--data", tiny, "--hidden", "16", "--latent-dim", "2", "--eval-k", "20",
              "--quiet", "--patience", "0"]
    assert run(capsys, "fit", "--out", tmp_path / "a", "--epochs", "3", *common)[0] == 0
    assert run(capsys, "fit", "--out", tmp_path / "b", "--epochs", "1", *common)[0] == 0
    code, _, err = run(capsys, "fit", "--out", tmp_path / "b", "--resume", "--epochs", "3",
                       "--quiet")
    assert code == 0, err
    a = (tmp_path / "a" / "checkpoint" / "model.safetensors").read_bytes()
    b = (tmp_path / "b" / "checkpoint" / "model.safetensors").read_bytes()
    assert a == b
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["epochs_trained"] == 3


def test_datasets_lists_the_bundled_sets(capsys):
    code, out, _ = run(capsys, "datasets")
    assert code == 0 and "digits" in out and "digits-gray" in out


def _bad_input(capsys, tmp_path, *argv) -> str:
    out_dir = tmp_path / "never"
    code, out, err = run(capsys, *argv, "--out", out_dir) if argv[0] == "fit" else run(capsys, *argv)
    assert code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not out_dir.exists(), "no partial run directory"
    return err


def test_nan_rows_are_named(capsys, tmp_path):
    path = tmp_path / "nan.csv"
    path.write_text("0,1\n1,nan\n0,0\ninf,1\n")
    err = _bad_input(capsys, tmp_path, "fit", "--data", path)
    assert "rows 1, 3 (counting from 0) contain NaN or inf" in err and str(path) in err


def test_non_binary_data_with_bernoulli_suggests_fixes(capsys, tmp_path):
    path = tmp_path / "grey.npy"
    np.save(path, np.random.default_rng(0).random((30, 4)))
    err = _bad_input(capsys, tmp_path, "fit", "--data", path, "--likelihood", "bernoulli")
    assert "--likelihood gaussian" in err and "--binarize" in err


@pytest.mark.parametrize("content", [b"", b"\x93NUMPY garbage", b"\x00" * 50])
def test_empty_or_unreadable_files(capsys, tmp_path, content):
    path = tmp_path / "bad.npy"
    path.write_bytes(content)
    err = _bad_input(capsys, tmp_path, "fit", "--data", path)
    assert str(path) in err


@pytest.mark.parametrize("argv, message", [
    (["fit", "--data", "mnistt"], "unknown data set 'mnistt'"),
    (["fit", "--data", "missing.csv"], "no such file"),
    (["fit", "--epochs", "-1"], "is not a positive integer"),
    (["fit", "--latent-dim", "0"], "is not a positive integer"),
    (["fit", "--beta", "-1"], "is not a non-negative number"),
    (["fit", "--lr", "nan"], "is not a positive number"),
    (["fit", "--hidden", "64,x"], "comma-separated"),
    (["fit", "--test-fraction", "1.5"], "fraction"),
    (["fit", "--likelihood", "poisson"], "invalid choice"),
    (["fit", "--unknown-option"], "unrecognized arguments"),
    (["fit", "--resume"], "no such run directory"),
    (["fit", "--iwae-k", "5", "--beta", "2"], "no KL term to weigh"),
    (["fit", "--kl-warmup", "-1"], "kl-warmup"),
    (["fit", "--free-bits", "0.5", "--latent", "categorical:4"], "free-bits applies to the reparameterized"),
    (["evaluate", "not-a-run"], "no such run directory"),
    (["sample", "not-a-run"], "no such run directory"),
])
def test_bad_arguments(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    err = _bad_input(capsys, tmp_path, *argv)
    assert message in err


def test_wrong_width_for_a_trained_run(capsys, tmp_path, tiny):
    out_dir = tmp_path / "run"
    assert run(capsys, "fit", "--data", tiny, "--out", out_dir, *FAST)[0] == 0
    wide = tmp_path / "wide.npy"
    np.save(wide, np.zeros((5, 11)))
    err = _bad_input(capsys, tmp_path, "evaluate", out_dir, "--data", wide)
    assert "11 features per example, but the model expects 10" in err
    assert not (out_dir / "evaluation.json").exists()
    err = _bad_input(capsys, tmp_path, "sample", out_dir, "-o", tmp_path / "x.png")
    assert "not images" in err and not (tmp_path / "x.png").exists()


def test_the_installed_command_exits_2_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "elbokit", "fit", "--data", "nope"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == ("elbokit: error: unknown data set 'nope': use one of digits, "
                                     "digits-gray, mnist, binarized-mnist or a path to a .npy, "
                                     ".npz, .csv, .tsv, .tab, .txt file")


def test_an_unwritable_output_path_is_a_one_line_error(capsys, tmp_path, tiny):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    code, _, err = run(capsys, "fit", "--data", tiny, "--out", blocker / "run", *FAST)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert str(blocker) in err


def test_categorical_counts_codes_over_all_the_data(capsys, tmp_path):
    codes = np.random.default_rng(0).integers(0, 3, size=(50, 4)).astype(float)
    codes[7, 2] = 5  # one rare code: whichever split it lands in, the model must know it
    path = tmp_path / "codes.csv"
    np.savetxt(path, codes, delimiter=",", fmt="%d")
    out_dir = tmp_path / "run"
    assert run(capsys, "fit", "--data", path, "--likelihood", "categorical", "--out", out_dir,
               *FAST)[0] == 0
    code, _, err = run(capsys, "evaluate", out_dir, "--split", "all", "--k", "10")
    assert code == 0, err
    config = json.loads((out_dir / "model.json").read_text())
    assert config["module"]["likelihood"] == {"name": "categorical", "n_categories": 6}


def test_discrete_latents_from_the_command_line(capsys, tmp_path):
    out_dir = tmp_path / "c"
    code, out, err = run(capsys, "fit", "--latent", "categorical:3", "--out", out_dir, *FAST)
    assert code == 0, err
    assert "exact log p(x)" in out
    code, _, err = run(capsys, "evaluate", out_dir, "--k", "20", "--json", tmp_path / "e.json")
    assert code == 0, err
    scores = json.loads((tmp_path / "e.json").read_text())
    ll = scores["log_likelihood"]  # the estimate agrees with the exact sum within 4 SE
    assert abs(ll["estimate"] - scores["exact_log_likelihood"]) <= 4 * ll["stderr"] + 1e-9
    code, _, err = run(capsys, "fit", "--latent", "bernoulli:40", "--estimator", "vimco",
                       "--n-samples", "3", "--out", tmp_path / "v", *FAST)
    assert code == 0, err
    assert json.loads((tmp_path / "v" / "summary.json").read_text())["splits"]["test"][
        "exact_log_likelihood"] is None


@pytest.mark.parametrize("argv, message", [
    (["--latent", "categorical:20x10", "--estimator", "enumerate"], "1e+20 values"),
    (["--latent", "gaussian:2x3"], "is not one of gaussian:N"),
    (["--latent", "categorical:1"], "needs >= 2 states"),
    (["--latent", "bernoulli:4", "--estimator", "reparameterize"], "cannot be reparameterized"),
    (["--estimator", "vimco"], "for discrete latents"),
    (["--latent", "bernoulli:4", "--estimator", "vimco"], "k >= 2"),
    (["--estimator", "magic"], "invalid choice"),
])
def test_bad_discrete_options(capsys, tmp_path, argv, message):
    err = _bad_input(capsys, tmp_path, "fit", *argv, *FAST)
    assert message in err




@pytest.mark.parametrize("options", [
    ["--prior", "vamp:8", "--stochastic-layers", "2"],
    ["--posterior", "iaf:2"],
], ids=["two-layers-vamp", "iaf"])
def test_richer_priors_posteriors_and_layers_fit_resume_evaluate_report_sample(capsys, tmp_path, tiny,
                                                                             options):
    """Every command works on a run of each new component (the run records them), and a
    resumed run is the straight run's bit for bit."""
    common = ["--data", tiny, "--hidden", "16", "--latent-dim", "2", "--eval-k", "20",
              "--quiet", "--patience", "0", *options]
    assert run(capsys, "fit", "--out", tmp_path / "a", "--epochs", "2", "--no-report", *common)[0] == 0
    assert run(capsys, "fit", "--out", tmp_path / "b", "--epochs", "1", "--no-report", *common)[0] == 0
    code, _, err = run(capsys, "fit", "--out", tmp_path / "b", "--resume", "--epochs", "2", "--quiet")
    assert code == 0, err
    for name in ("model.safetensors", "extra-average.safetensors"):
        assert ((tmp_path / "a" / "checkpoint" / name).read_bytes()
                == (tmp_path / "b" / "checkpoint" / name).read_bytes()), name
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    described = summary["diagnostics"]["model"]
    assert described.startswith("VAE (") and options[1] in described
    code, out, err = run(capsys, "evaluate", tmp_path / "b", "--k", "20")
    assert code == 0 and "log p(x)" in out, err
    code, _, err = run(capsys, "sample", tmp_path / "b", "-n", "5", "-o", tmp_path / "s.npy")
    assert code == 0, err
    assert np.load(tmp_path / "s.npy").shape == (5, 10)
    html = (tmp_path / "b" / "report.html").read_text()
    if "vamp:8" in options:
        assert (tmp_path / "b" / "figures" / "pseudo_inputs.png").is_file()
        assert "pseudo-inputs" in html and "by stochastic layer" in html
        assert summary["diagnostics"]["latent_dim"] == 4
    else:
        assert not (tmp_path / "b" / "figures" / "pseudo_inputs.png").exists()
    assert config  # the run's configuration is on disk for evaluate/report to rebuild it


def test_dreg_refuses_a_flow_posterior_in_one_line(capsys, tmp_path):
    err = _bad_input(capsys, tmp_path, "fit", "--data", "digits", "--posterior", "iaf:1",
                     "--estimator", "dreg", "--iwae-k", "5")
    assert "dreg needs a Gaussian posterior" in err and "FlowPosterior" in err


def test_a_reader_that_stops_reading_gets_no_error_message():
    """``elbokit datasets | head -0``: the pipe's reader is gone before elbokit writes; the
    command ends quietly with 141, as a shell reports a command ended by SIGPIPE, rather
    than printing "error: Broken pipe"."""
    proc = subprocess.Popen([sys.executable, "-m", "elbokit", "datasets"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # before the interpreter has even imported elbokit
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141 and err == b"", (proc.returncode, err)


def test_the_list_of_commands_imports_no_command_module():
    """``elbokit --help``, ``--version``, no command and an unknown command answer from the
    commands' names and lines alone: neither a command's module nor torch, scikit-learn or
    elbokit's own modules are imported (with them each took about 5 s here, without them
    0.05 s). The unknown one is still refused in one line with the list, exit status 2."""
    code = ("import sys, io, contextlib\nfrom elbokit import __version__\nfrom elbokit.cli import main\n"
            "for argv in (['--help'], ['--version'], [], ['fitt', '--epochs', '3']):\n"
            "    out, err = io.StringIO(), io.StringIO()\n"
            "    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
            "        try:\n            status = main(argv)\n"
            "        except SystemExit as e:\n            status = e.code\n"
            "    print(repr((status, out.getvalue(), err.getvalue())))\n"
            "print([m for m in ('torch', 'sklearn', 'matplotlib', 'elbokit.errors', 'elbokit.cli.fit')"
            " if m in sys.modules], __version__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    lines = result.stdout.splitlines()
    assert len(lines) == 5, (result.stdout, result.stderr)
    (help_status, help_out, _), (v_status, v_out, _), (none_status, _, none_err), \
        (bad_status, _, bad_err) = (ast.literal_eval(line) for line in lines[:4])
    loaded, version = lines[4].rsplit(" ", 1)
    assert help_status == 0 and "impute" in help_out
    assert v_status == 0 and v_out == f"elbokit {version}\n"
    assert none_status == 2 and none_err.count("\n") == 1 and "required: COMMAND" in none_err
    assert bad_status == 2 and bad_err.count("\n") == 1 and "invalid choice: 'fitt'" in bad_err
    assert loaded == "[]", loaded
