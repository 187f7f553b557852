"""MNIST and binarized MNIST from a local folder (checksums, official splits, download), and
dynamic binarization. The real arrays are read from ../shared/data when it is there."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from elbokit import VAE, runs
from elbokit.cli import main
from elbokit.data import load, mnist
from elbokit.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED / "mnist" / "mnist.npz").is_file(),
                                  reason="../shared/data/mnist not present")


@needs_shared
def test_mnist_sets_keep_their_official_splits(monkeypatch):
    monkeypatch.setenv(mnist.ENV, str(SHARED))
    data = load("mnist")
    assert data.x.shape == (70000, 784) and data.image_shape == (28, 28)
    assert 0 <= data.x.min() and data.x.max() == 1.0 and np.bincount(data.y[60000:])[0] == 980
    record = runs.data_record("mnist", data, "dynamic", 0, 0.2, 0.1)
    assert record["split"]["official"]
    split = runs.prepare_data(record, data).splits
    np.testing.assert_array_equal(split["test"], np.arange(60000, 70000))  # not 20% of 70k
    assert len(split["val"]) == 6000 and len(split["train"]) == 54000
    assert set(split["val"]) | set(split["train"]) == set(range(60000))
    binarized = load("binarized-mnist")
    split = runs.prepare_data(runs.data_record("binarized-mnist", binarized, None, 0, 0.2, 0.1),
                              binarized).splits
    assert [len(split[k]) for k in ("train", "val", "test")] == [50000, 10000, 10000]
    assert set(np.unique(binarized.x)) == {0.0, 1.0}
    assert binarized.x[60000:].mean() == pytest.approx(0.13251, abs=1e-5)  # PROVENANCE.md


def test_missing_or_tampered_files_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(mnist.ENV, str(tmp_path))
    with pytest.raises(DataError, match=f"not found in {tmp_path}.*ELBOKIT_DATA"):
        load("mnist")
    (tmp_path / "mnist").mkdir()
    np.savez_compressed(tmp_path / "mnist" / "mnist.npz", x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match="SHA-256 differs"):
        load("mnist")
    code = main(["fit", "--data", "mnist", "--out", str(tmp_path / "run")])
    assert code == 2 and not (tmp_path / "run").exists()


class FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@needs_shared
def test_download_verifies_what_it_fetches(tmp_path, monkeypatch):
    good = (SHARED / "mnist" / "mnist.npz").read_bytes()
    served = []
    monkeypatch.setattr(mnist.urllib.request, "urlopen",
                        lambda url, timeout: served.append(url) or FakeResponse(payload[0]))
    payload = [b"not the file"]
    with pytest.raises(DataError, match="SHA-256 is not the expected one"):
        mnist.download("mnist", tmp_path)
    assert list((tmp_path / "mnist").iterdir()) == []  # nothing kept
    payload[0] = good
    path = mnist.download("mnist", tmp_path)
    assert path == tmp_path / "mnist" / "mnist.npz" and path.read_bytes() == good
    assert mnist.download("mnist", tmp_path) == path and len(served) == 2  # verified: no refetch


def test_dynamic_binarization_trains_on_fresh_draws(tmp_path):
    """Grey digits as probabilities: every training batch is a new 0/1 Bernoulli draw (one
    per batch and epoch), and values outside [0, 1] are refused."""
    x = load("digits-gray").x
    draws = []
    model = VAE(hidden=(32,), epochs=2, batch_size=512, dynamic_binarization=True, val_fraction=0.0)
    original = torch.bernoulli

    def spy(t):
        out = original(t)
        draws.append(out)
        return out

    torch.bernoulli = spy
    try:
        model.fit(x)
    finally:
        torch.bernoulli = original
    assert len(draws) == 2 * 4  # 2 epochs x ceil(1797 / 512) batches
    assert all(set(d.unique().tolist()) <= {0.0, 1.0} for d in draws)
    with pytest.raises(DataError, match=r"values in \[0, 1\]"):
        VAE(epochs=1, dynamic_binarization=True).fit(x * 2)


def test_dynamic_binarization_from_the_cli(tmp_path, capsys):
    np.save(tmp_path / "gray.npy", load("digits-gray").x.reshape(-1, 8, 8))
    out = tmp_path / "run"
    argv = ["fit", "--data", str(tmp_path / "gray.npy"), "--binarize", "dynamic", "--epochs", "2",
            "--hidden", "32", "--eval-k", "10", "--no-report", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["binarize"] == "dynamic" and config["params"]["dynamic_binarization"]
    capsys.readouterr()
    # Scored on one fixed 0/1 draw of the held-out digits: the same numbers every time.
    scores = []
    for _ in range(2):
        assert main(["evaluate", str(out), "--k", "10", "--json", "-"]) == 0
        scores.append(json.loads(capsys.readouterr().out))  # stdout holds the JSON alone
    assert scores[0]["elbo"] == scores[1]["elbo"] and scores[0]["n_examples"] == 359
    assert main(["fit", "--data", str(tmp_path / "gray.npy"), "--binarize", "dynamic", "--model",
                 "mixture", "--out", str(tmp_path / "m")]) == 2
    shutil.rmtree(out)
