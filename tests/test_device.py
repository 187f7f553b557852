"""Devices and numerics: --device, --compile, float64 against float32, seeded repeatability."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from elbokit import VAE, data
from elbokit.cli import main
from elbokit.errors import ConfigError

FAST = ["--epochs", "1", "--hidden", "16", "--latent-dim", "2", "--eval-k", "20", "--quiet",
        "--no-report"]


@pytest.fixture(scope="module")
def digits_split():
    d = data.load("digits")
    parts = data.split_indices(len(d.x), 0, 0.2, 0.1)
    return d.x[parts["train"]], d.x[parts["val"]]


def test_device_cuda_without_cuda_is_one_line_and_exit_2(capsys, tmp_path):
    if torch.cuda.is_available():  # a GPU machine: the option trains there instead
        assert main(["fit", *FAST, "--device", "cuda", "--out", str(tmp_path / "run")]) == 0
        return
    code = main(["fit", *FAST, "--device", "cuda", "--out", str(tmp_path / "run")])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "CUDA is not available" in err, err
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="CUDA"):
        VAE(device="cuda").fit(np.zeros((10, 4)))
    with pytest.raises(ConfigError, match="device must be"):
        VAE(device="tpu").fit(np.zeros((10, 4)))


def test_device_is_saved_and_a_resume_may_change_it(capsys, tmp_path):
    run = tmp_path / "run"
    assert main(["fit", *FAST, "--device", "cpu", "--out", str(run)]) == 0
    assert VAE.load(run).device == "cpu"
    code = main(["fit", "--resume", "--epochs", "2", "--device", "cpu", "--quiet", "--no-report",
                 "--eval-k", "20", "--out", str(run)])
    assert code == 0, capsys.readouterr().err


def _fit(train: np.ndarray, val: np.ndarray, **options) -> VAE:
    options = {"latent_dim": 2, "hidden": (16,), "seed": 0, "patience": None} | options
    return VAE(**options).fit(train, X_val=val)


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                    reason="torch.compile (inductor) needs a C compiler, and none is installed")
def test_compiled_training_matches_eager():
    x = (np.random.default_rng(0).random((60, 10)) < 0.3).astype(np.float64)
    train, val = x[:54], x[54:]  # three equal batches of 18: one compiled graph
    eager = _fit(train, val, epochs=2, batch_size=18)
    compiled = _fit(train, val, epochs=2, batch_size=18, compile=True)
    # The compiled step draws the same noise (inductor's fallback_random); only float32
    # rounding of fused kernels differs: measured 1.3e-7 nats and 1.5e-8 in the weights.
    for a, b in zip(eager.history_, compiled.history_, strict=True):
        assert abs(a["train"]["elbo"] - b["train"]["elbo"]) < 1e-5
        assert abs(a["val"]["elbo"] - b["val"]["elbo"]) < 1e-5
    for name, value in eager.module_.state_dict().items():
        assert torch.allclose(value, compiled.module_.state_dict()[name], rtol=0, atol=1e-5), name


def test_float64_reproduces_the_float32_elbo(digits_split):
    train, val = digits_split
    # A categorical z summed over exactly: no sampling. (With a Gaussian z the two runs
    # would not see the same noise: torch draws float32 and float64 normals by different
    # vectorized paths, so they agree only to Monte-Carlo error, ~1e-3 relative.)
    options = dict(latent="categorical:10", hidden=(64,), epochs=3)
    single = _fit(train, val, **options)
    double = _fit(train, val, dtype="float64", **options)
    assert next(double.module_.parameters()).dtype == torch.float64
    # float32 rounding (~6e-8 relative per operation) perturbs each step; over 3 epochs of
    # 11 Adam steps the weights drift apart by ~1e-4 relative, but the per-epoch mean ELBOs
    # agree to within 6e-8 relative (measured, 5 epochs); 1e-6 leaves a 15x margin.
    for a, b in zip(single.history_, double.history_, strict=True):
        for split in ("train", "val"):
            assert abs(a[split]["elbo"] / b[split]["elbo"] - 1) < 1e-6, (split, a, b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_same_seed_gives_bit_identical_runs_on_cpu(digits_split, tmp_path: Path, dtype):
    train, val = digits_split
    runs = [_fit(train, val, epochs=2, dtype=dtype) for _ in range(2)]
    a, b = (dict(run.module_.state_dict()) for run in runs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert runs[0].history_[-1]["train"] == runs[1].history_[-1]["train"]
