"""Files and directories a command creates get the modes the umask asks for (0644 / 0755
under umask 022, 0600 / 0700 under 077), although every file is written atomically through
a temporary sibling that is renamed into place."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from elbokit.cli import main
from elbokit.data import mnist


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def wrong_modes(root: Path, umask: int) -> list[str]:
    """Every file and directory under ``root`` (itself included) whose permission bits are
    not those of a new file (0o666) or directory (0o777) less ``umask``."""
    wrong = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        expected = (0o777 if path.is_dir() else 0o666) & ~umask
        if mode != expected:
            wrong.append(f"{path.relative_to(root.parent)}: {mode:o}, expected {expected:o}")
    return wrong


def test_a_fit_run_and_what_later_commands_write_follow_the_umask(tmp_path, capsys, umask):
    out = tmp_path / "run"
    assert main(["fit", "--data", "digits", "--epochs", "1", "--hidden", "16", "--latent-dim",
                 "2", "--eval-k", "10", "--quiet", "--tensorboard", "--out", str(out)]) == 0
    names = {p.name for p in out.rglob("*")}
    # What the run is expected to hold (so that the check below covers every kind of writer).
    assert {"config.json", "model.safetensors", "model.json", "metrics.jsonl", "summary.json",
            "checkpoint", "state.json", "report.html", "tensorboard"} <= names
    assert any(name.endswith(".png") for name in names)
    assert any(name.startswith("events.out.tfevents.") for name in names)  # TensorBoard's writer
    assert main(["evaluate", str(out), "--k", "2", "--iwae-k", "2"]) == 0  # RUN/evaluation.json
    assert (out / "evaluation.json").is_file()
    samples = tmp_path / "samples"
    samples.mkdir()
    for name in ("s.png", "s.npy", "s.csv"):
        assert main(["sample", str(out), "-n", "4", "-o", str(samples / name)]) == 0
    capsys.readouterr()
    assert wrong_modes(out, umask) == [] and wrong_modes(samples, umask) == []


def test_a_classify_run_follows_the_umask(tmp_path, capsys, umask):
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 30)
    x = (rng.random((60, 6)) < np.where(y[:, None] == 1, 0.7, 0.2)).astype(np.float64)
    np.savez(tmp_path / "labelled.npz", x=x, y=y)
    out = tmp_path / "classified"
    assert main(["classify", "--data", str(tmp_path / "labelled.npz"), "--method",
                 "discriminative", "--out", str(out), "--json", str(tmp_path / "m.json")]) == 0
    capsys.readouterr()
    assert (out / "pr_curve.png").is_file() and (out / "methods").is_dir()
    assert wrong_modes(out, umask) == []
    assert wrong_modes(tmp_path / "m.json", umask) == []


def test_a_download_follows_the_umask(tmp_path, umask):
    source = tmp_path / "served.bin"
    source.write_bytes(b"some bytes")
    digest = hashlib.sha256(b"some bytes").hexdigest()
    dest = tmp_path / "data" / "file.bin"
    mnist._fetch(source.as_uri(), {digest}, dest)
    assert dest.read_bytes() == b"some bytes"
    assert wrong_modes(dest.parent, umask) == []
    assert [p.name for p in dest.parent.iterdir()] == ["file.bin"]  # no temporary left
