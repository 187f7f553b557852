"""Bad command lines: unknown options, impossible values, run directories that are not runs
and runs of another kind. Each is one line on stderr (``elbokit: error: ...``, or argparse's
``elbokit CMD: error: ... (see --help)``), exit status 2, no traceback, and nothing written:
the listing of the working folder (which holds a fit run, a classify run and a sweep) is the
same before and after."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from elbokit.cli import main
from elbokit.runs import write_config

FAST = ["--epochs", "1", "--hidden", "8", "--latent-dim", "2", "--eval-k", "10", "--no-report",
        "--quiet"]


def cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> Path:
    """A folder with data, a VAE fit run, a classify run, a sweep directory and things that
    are not runs: an empty folder, a file, a folder with a corrupt or foreign config.json."""
    root = tmp_path_factory.mktemp("bad-cli")
    rng = np.random.default_rng(0)
    x = (rng.random((60, 10)) < 0.3).astype(np.float32)
    np.save(root / "tiny.npy", x)
    np.savez(root / "labelled.npz", x=x, y=np.arange(60) % 2)
    code, _, err = cli("fit", "--data", root / "tiny.npy", "--out", root / "fit-run", *FAST)
    assert code == 0, err
    code, _, err = cli("classify", "--data", root / "labelled.npz", "--method", "generative",
                       "--out", root / "classify-run")
    assert code == 0, err
    (root / "sweep").mkdir()
    write_config(root / "sweep", {"kind": "sweep", "betas": [1.0], "params": {"data": "digits"}})
    (root / "empty").mkdir()
    (root / "a-file").write_text("not a run")
    (root / "corrupt").mkdir()
    (root / "corrupt" / "config.json").write_text('{"format": "elbokit.run", "kind": ')
    (root / "foreign").mkdir()
    (root / "foreign" / "config.json").write_text(json.dumps({"name": "someone else's"}))
    (root / "no-data").mkdir()  # an elbokit run config without its data section
    write_config(root / "no-data", {"kind": "vae", "params": {}})
    (root / "bad-params").mkdir()
    shutil.copy(root / "fit-run" / "config.json", root / "bad-params" / "config.json")
    config = json.loads((root / "bad-params" / "config.json").read_text())
    config["params"]["colour"] = "blue"
    (root / "bad-params" / "config.json").write_text(json.dumps(config))
    (root / "words.txt").write_text("hello\n")
    return root


def listing(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1)
                  for p in root.rglob("*"))


# (argv, what the one line must say); "@name" is a path in the fixture's folder.
CASES = [
    # -- no command, unknown commands and options
    ([], "required: COMMAND"),
    (["train"], "invalid choice: 'train'"),
    (["fit", "--unknown-option"], "unrecognized arguments: --unknown-option"),
    (["evaluate", "@fit-run", "--colour", "red"], "unrecognized arguments"),
    (["fit", "--epochs"], "expected one argument"),
    # -- fit: impossible values
    (["fit", "--epochs", "0"], "'0' is not a positive integer"),
    (["fit", "--epochs", "-3"], "'-3' is not a positive integer"),
    (["fit", "--epochs", "1.5"], "'1.5' is not a positive integer"),
    (["fit", "--batch-size", "0"], "'0' is not a positive integer"),
    (["fit", "--eval-k", "0"], "'0' is not a positive integer"),
    (["fit", "--iwae-k", "0"], "'0' is not a positive integer"),
    (["fit", "--n-samples", "0"], "'0' is not a positive integer"),
    (["fit", "--latent-dim", "0"], "'0' is not a positive integer"),
    (["fit", "--latent", "gaussian:0"], "latent size must be >= 1"),
    (["fit", "--latent", "categorical:1"], "needs >= 2 states"),
    (["fit", "--latent", "poisson:3"], "is not one of gaussian:N"),
    (["fit", "--beta", "-0.5"], "'-0.5' is not a non-negative number"),
    (["fit", "--beta", "nan"], "'nan' is not a non-negative number"),
    (["fit", "--beta", "inf"], "'inf' is not a non-negative number"),
    (["fit", "--beta", "1e300"], "too large"),
    (["fit", "--lr", "0"], "'0' is not a positive number"),
    (["fit", "--lr=-1e-3"], "is not a positive number"),
    (["fit", "--lr", "nan"], "'nan' is not a positive number"),
    (["fit", "--free-bits", "-1"], "is not a non-negative number"),
    (["fit", "--free-bits", "1e300"], "too large"),
    (["fit", "--kl-warmup", "-1"], "is not a non-negative integer"),
    (["fit", "--temperature", "0"], "'0' is not a positive number"),
    (["fit", "--temperature", "-1"], "is not a positive number"),
    (["fit", "--min-temperature", "0"], "'0' is not a positive number"),
    (["fit", "--anneal-rate", "-1"], "is not a non-negative number"),
    (["fit", "--patience", "-1"], "is not a non-negative integer"),
    (["fit", "--components", "0", "--model", "mixture"], "'0' is not a positive integer"),
    (["fit", "--max-iter", "0", "--model", "mixture"], "'0' is not a positive integer"),
    (["fit", "--hidden", "0"], "comma-separated list of positive widths"),
    (["fit", "--hidden", "8,-1"], "comma-separated list of positive widths"),
    (["fit", "--seed", "-1"], "'-1' is not a seed"),
    (["fit", "--seed", str(2**64)], "too large for a seed"),
    (["fit", "--binarize", "nan"], "expected a finite threshold or 'dynamic'"),
    (["fit", "--binarize", "half"], "expected a finite threshold or 'dynamic'"),
    (["fit", "--val-fraction", "1"], "is not a fraction in [0, 1)"),
    (["fit", "--val-fraction", "-0.1"], "is not a non-negative number"),
    (["fit", "--test-fraction", "1.5"], "is not a fraction in [0, 1)"),
    (["fit", "--data", "@tiny.npy", "--test-fraction", "0.9", "--val-fraction", "0.95"],
     "leave none for training"),
    (["fit", "--data", "@tiny.npy", "--test-fraction", "0.99"], "leave no validation example"),
    (["fit", "--image-shape", "0x8"], "is not an image shape like 28x28"),
    (["fit", "--image-shape", "8"], "is not an image shape like 28x28"),
    (["fit", "--image-shape", "axb"], "is not an image shape like 28x28"),
    (["fit", "--image-shape", "2x2x2x2"], "is not an image shape like 28x28"),
    (["fit", "--data", "@tiny.npy", "--image-shape", "3x3", "--encoder", "conv"],
     "has 9 values, but the data has 10"),
    (["fit", "--ram-budget", "0", "--stream"], "must be at least 1 byte"),
    (["fit", "--ram-budget", "lots", "--stream"], "is not a size like 512M"),
    (["fit", "--ram-budget=-1M", "--stream"], "is not a size like 512M"),
    (["fit", "--ram-budget", "1M"], "--ram-budget sizes the chunks of --stream"),
    (["fit", "--data", "@tiny.npy", "--stream", "--ram-budget", "10"], "is too small"),
    (["fit", "--data", "@tiny.npy", "--hidden", "1000000000000"], "does not fit in memory"),
    (["fit", "--estimator", "magic"], "invalid choice: 'magic'"),
    (["fit", "--device", "tpu"], "invalid choice: 'tpu'"),
    (["fit", "--data", "@missing.npy"], "missing.npy: no such file"),
    # -- fit: output folders and resuming what is not a run (or not this kind of run)
    (["fit", "--data", "@tiny.npy", "--out", "@a-file"], "exists and is not a directory"),
    (["fit", "--data", "@tiny.npy", "--out", "@fit-run"], "already exists"),
    (["fit", "--data", "@tiny.npy", "--out", "@words.txt/run"], "words.txt"),
    (["fit", "--resume", "--overwrite", "--out", "@fit-run"], "contradict each other"),
    (["fit", "--resume", "--out", "@nowhere"], "no such run directory"),
    (["fit", "--resume", "--out", "@empty"], "not an elbokit run (no config.json)"),
    (["fit", "--resume", "--out", "@a-file"], "not a run directory (a file)"),
    (["fit", "--resume", "--out", "@corrupt"], "not a readable JSON file"),
    (["fit", "--resume", "--out", "@foreign"], "not an elbokit run configuration"),
    (["fit", "--resume", "--out", "@no-data"], "malformed vae run configuration (missing data)"),
    (["fit", "--resume", "--out", "@bad-params"], "malformed model options"),
    (["fit", "--resume", "--out", "@sweep"], "a 'sweep' run"),
    (["fit", "--resume", "--out", "@classify-run"], "a 'classifier' run (from elbokit classify"),
    # -- evaluate
    (["evaluate", "@nowhere"], "no such run directory"),
    (["evaluate", "@empty"], "not an elbokit run (no config.json)"),
    (["evaluate", "@a-file"], "not a run directory (a file)"),
    (["evaluate", "@corrupt"], "not a readable JSON file"),
    (["evaluate", "@no-data"], "missing data"),
    (["evaluate", "@classify-run"], "a 'classifier' run"),
    (["evaluate", "@sweep"], "a 'sweep' run"),
    (["evaluate", "@fit-run", "--k", "0"], "'0' is not a positive integer"),
    (["evaluate", "@fit-run", "--k", "1"], "--k must be at least 2"),
    (["evaluate", "@fit-run", "--iwae-k", "0"], "'0' is not a positive integer"),
    (["evaluate", "@fit-run", "--split", "everything"], "invalid choice: 'everything'"),
    (["evaluate", "@fit-run", "--seed", "-2"], "is not a seed"),
    (["evaluate", "@fit-run", "--data", "@missing.csv"], "missing.csv: no such file"),
    (["evaluate", "@fit-run", "--data", "@words.txt", "--json", "@out.json"], "words.txt: no data rows"),
    (["evaluate", "@fit-run", "--json", "@nowhere/e.json"], "does not exist"),
    (["evaluate", "@fit-run", "--json", "@empty"], "is a directory"),
    # -- sample
    (["sample", "@nowhere"], "no such run directory"),
    (["sample", "@empty"], "not an elbokit run"),
    (["sample", "@corrupt"], "not a readable JSON file"),
    (["sample", "@classify-run"], "a 'classifier' run"),
    (["sample", "@sweep"], "a 'sweep' run"),
    (["sample", "@fit-run", "-n", "0"], "'0' is not a positive integer"),
    (["sample", "@fit-run", "-n", "-5"], "is not a positive integer"),
    (["sample", "@fit-run", "--seed", str(2**70)], "too large for a seed"),
    (["sample", "@fit-run", "-o", "@s.txt"], "unknown format"),
    (["sample", "@fit-run", "-o", "@s.png"], "not images"),
    (["sample", "@fit-run", "-o", "@nowhere/s.npy"], "does not exist"),
    (["sample", "@fit-run", "-n", "1000000000000", "-o", "@s.npy"], "does not fit in memory"),
    # -- report
    (["report", "@nowhere"], "no such run directory"),
    (["report", "@empty"], "not an elbokit run (no config.json)"),
    (["report", "@a-file"], "not a run directory (a file)"),
    (["report", "@corrupt"], "not a readable JSON file"),
    (["report", "@classify-run"], "a 'classifier' run"),
    (["report", "@no-data"], "missing data"),
    # -- classify
    (["classify", "--threshold", "1.5"], "is not a fraction in [0, 1)"),
    (["classify", "--threshold", "-0.1"], "is not a non-negative number"),
    (["classify", "--threshold", "nan"], "is not a non-negative number"),
    (["classify", "--test-fraction", "1"], "is not a fraction in [0, 1)"),
    (["classify", "--labels", "0"], "'0' is not a positive integer"),
    (["classify", "--vocabulary", "0"], "'0' is not a positive integer"),
    (["classify", "--components", "0"], "'0' is not a positive integer"),
    (["classify", "--epochs", "0"], "'0' is not a positive integer"),
    (["classify", "--seed", "-1"], "is not a seed"),
    (["classify", "--method", "svm"], "invalid choice: 'svm'"),
    (["classify", "--overwrite"], "--overwrite needs --out"),
    (["classify", "--out", "@fit-run"], "already exists"),
    (["classify", "--out", "@a-file"], "exists and is not a directory"),
    (["classify", "--json", "@nowhere/m.json"], "does not exist"),
    (["classify", "--data", "@tiny.npy"], "no labels"),
    (["classify", "--data", "@labelled.npz", "--labels", "1000"], "cannot keep 1000 labels"),
    # -- predict
    (["predict", "@fit-run", "hello"], "a 'vae' run (from elbokit fit), not a 'classifier' run"),
    (["predict", "@sweep", "hello"], "a 'sweep' run"),
    (["predict", "@nowhere", "hello"], "no such run directory"),
    (["predict", "@empty", "hello"], "not an elbokit run"),
    (["predict", "@corrupt", "hello"], "not a readable JSON file"),
    (["predict", "@classify-run", "--file", "@tiny.npy", "--threshold", "1.5"],
     "is not a fraction in [0, 1)"),
    (["predict", "@classify-run", "--file", "@tiny.npy", "--threshold", "-1"],
     "is not a non-negative number"),
    (["predict", "@classify-run", "--file", "@tiny.npy", "--method", "svm"], "--method svm: not in this run"),
    (["predict", "@classify-run", "hello"], "not texts"),
    (["predict", "@classify-run"], "no rows to classify"),
    (["predict", "@classify-run", "--file", "@words.txt"], "words.txt"),
    (["predict", "@classify-run", "--file", "@tiny.npy", "--json", "@nowhere/p.json"],
     "does not exist"),
    # -- sweep
    (["sweep", "--out", "@new", "--beta", "-1"], "betas must be finite numbers >= 0"),
    (["sweep", "--out", "@new", "--beta", "nan"], "betas must be finite numbers >= 0"),
    (["sweep", "--out", "@new", "--beta", "1,1e300"], "betas must be finite numbers >= 0"),
    (["sweep", "--out", "@new", "--beta", "1,1"], "betas repeat"),
    (["sweep", "--out", "@new", "--beta", "x"], "expected comma-separated numbers"),
    (["sweep", "--out", "@new", "--model", "mixture"], "--model mixture has none"),
    (["sweep", "--out", "@new", "--epochs", "0"], "'0' is not a positive integer"),
    (["sweep", "--beta", "1"], "required: --out"),
    (["sweep", "--out", "@fit-run", "--beta", "1"], "a 'vae' run"),
    (["sweep", "--out", "@fit-run", "--beta", "1", "--overwrite"], "a 'vae' run"),
    (["sweep", "--out", "@empty/../a-file", "--beta", "1"], "is not an elbokit sweep"),
    # -- datasets
    (["datasets", "--download", "cifar"], "invalid choice: 'cifar'"),
]


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(a) or "(none)" for a, _ in CASES])
def test_bad_command_lines(place, monkeypatch, argv, message):
    monkeypatch.chdir(place)  # anything written by accident would land here
    argv = [str(place / a[1:]) if a.startswith("@") else a for a in argv]
    if argv[:1] == ["fit"]:  # tiny and quick, should a case train; the case's options win
        argv = ["fit", *FAST, *(["--out", str(place / "new")] if "--out" not in argv else []),
                *argv[1:]]
    before = listing(place)
    code, out, err = cli(*argv)
    assert "Traceback" not in out + err, err
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(("elbokit: error: ", f"elbokit {argv[0]}: error: " if argv else
                                "elbokit: error: ")), lines[0]
    assert message in lines[0], lines[0]
    assert listing(place) == before, "nothing written"
