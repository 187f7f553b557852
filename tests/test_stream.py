"""Data larger than memory: training from a .npy file read in shuffled chunks with bounded RAM
(:mod:`elbokit.data.stream`), through the trainer, the Python API and ``elbokit fit --stream``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from elbokit import VAE, Mixture, distributed
from elbokit.checkpoint import load_checkpoint
from elbokit.cli import main
from elbokit.data import NpyStream, parse_size
from elbokit.errors import ConfigError, DataError
from elbokit.training import TrainConfig, Trainer

TINY = dict(latent_dim=2, hidden=(8,), epochs=2, batch_size=16, seed=3)


def save(path: Path, x: np.ndarray) -> Path:
    np.save(path, x)
    return path


def binary(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, dim)) < 0.3).astype(np.uint8)


def numbered(path: Path, n: int, dim: int = 3) -> Path:
    """A float64 file whose first column is the row's own number."""
    x = np.random.default_rng(1).random((n, dim))
    x[:, 0] = np.arange(n)
    return save(path, x)


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def untimed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in line.items() if k != "seconds"} for line in history]


# -- issue 6, test 2: a file larger than the budget, peak RSS under it -----------------

CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np, torch
    torch.set_num_threads(1)
    from elbokit import VAE
    from elbokit.data import NpyStream

    def peak():  # this process's peak RSS in bytes: VmHWM, the high-water mark of its memory
        # (ru_maxrss would do, but Linux carries the parent's over fork + exec: a child of a
        # big pytest process starts with the parent's peak, and clear_refs cannot lower it)
        with open("/proc/self/status") as f:
            line = next(line for line in f if line.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024

    def reset_peak():  # from here on, the peak is measured from the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return peak()

    path, budget = sys.argv[1], sys.argv[2]
    options = dict(latent_dim=2, hidden=(), encoder="linear", decoder="linear", epochs=1,
                   batch_size=64, seed=0)
    stream = NpyStream(path, ram_budget=budget)
    # Warm-up on a few in-memory rows: torch's one-off allocations (autograd, Adam, kernels)
    # belong to the baseline, not to the data.
    warm = (np.random.default_rng(0).random((256, stream.dim)) < 0.5).astype(np.float64)
    VAE(**options).fit(warm)
    base = reset_peak()
    vae = VAE(**options).fit(stream)  # scan, held-out rows, sample, one epoch, validation
    streamed = peak()
    # The control: the same file read through one long-lived memory map.
    base_map = reset_peak()
    total = float(np.load(path, mmap_mode="r").sum(dtype=np.float64))
    mapped = peak()
    print(json.dumps({"base": base, "streamed": streamed, "base_map": base_map,
                      "mapped": mapped, "chunks": len(stream.chunks(0, 1)),
                      "epochs": len(vae.history_), "ones": total,
                      "n_val": round(len(stream) * vae.val_fraction)}))
""")

MB = 2**20


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(),
                    reason="resetting the peak RSS of a process needs Linux's /proc")
def test_training_on_a_file_16_times_the_budget_keeps_peak_rss_under_the_budget(tmp_path):
    """The issue's test. A 512 MiB float32 file of 0/1 values (65,536 rows x 2,048) is
    trained on for one full epoch (every row read once, plus the checking scan, the held-out
    rows and the build sample) with a RAM budget of 32 MiB, in a child process so that the
    measurement is its own: VmHWM, the peak RSS, reset (Linux ``clear_refs``) after the
    imports and a warm-up fit, so it measures what fitting the stream adds on top of a python
    + torch process (about 330 MiB here, which no budget can cover). Asserted: that growth
    stays under the 32 MiB budget (measured: 17-19 MiB over 7 runs; the chunk is 16 MiB),
    and even the whole process's peak (about 342 MiB) stays under the file's size.
    Control: reading the same file through one long-lived memory map grows RSS by the file's
    size, so the measurement would catch streaming that kept the file's pages resident.
    About 5 s on one core."""
    rows, dim, budget = 65_536, 2_048, 32 * MB
    path = tmp_path / "big.npy"
    block = (np.random.default_rng(0).random((1_024, dim)) < 0.3).astype(np.float32)
    with path.open("wb") as f:  # 512 MiB without holding it: the header, then one block, 64 times
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (rows, dim)})
        for _ in range(rows // len(block)):
            f.write(block.tobytes())
    try:
        size = path.stat().st_size
        assert size > 16 * budget
        script = tmp_path / "child.py"
        script.write_text(CHILD)
        done = subprocess.run([sys.executable, str(script), str(path), str(budget)],
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stderr
        found = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        path.unlink()
    growth = found["streamed"] - found["base"]
    print(f"file {size / MB:.0f} MiB, budget {budget / MB:.0f} MiB: peak RSS {found['streamed'] / MB:.0f} "
          f"MiB = baseline {found['base'] / MB:.0f} MiB + {growth / MB:.1f} MiB; one memory map of "
          f"the file: + {(found['mapped'] - found['base_map']) / MB:.0f} MiB")
    assert found["epochs"] == 1 and found["chunks"] >= 32  # a real stream: many chunks
    assert found["ones"] == block.sum(dtype=np.float64) * (rows // len(block))  # the file's data
    assert 0 <= growth < budget  # 0: no new pages needed (the control shows the instrument works)
    assert found["streamed"] < size
    assert found["mapped"] - found["base_map"] > 0.9 * size  # the measurement sees mapped pages


# -- the shuffle --------------------------------------------------------------------------

def epoch_rows(stream: NpyStream, seed: int, epoch: int, batch_size: int) -> list[np.ndarray]:
    return [b[:, 0].numpy().astype(np.int64) for b in stream.batches(batch_size, seed, epoch,
                                                                       torch.float64)]


def test_every_epoch_is_a_seeded_permutation_of_all_rows_in_full_batches(tmp_path):
    n, batch_size = 1000, 7
    stream = NpyStream(numbered(tmp_path / "rows.npy", n), ram_budget="8K")
    chunks = stream.chunks(0, 1)
    assert stream.chunk_rows == 85 and len(chunks) == 12  # 1000 rows in chunks of <= 85 ...
    assert all(sum(b - a for a, b in ranges) <= 85 for ranges in chunks)
    assert all(len(ranges) > 1 for ranges in chunks)  # ... each from several places in the file
    epochs = {}
    for epoch in (1, 2):
        batches = epoch_rows(stream, 0, epoch, batch_size)
        # ceil(n / B) batches, every one full but the last, every row exactly once.
        assert len(batches) == math.ceil(n / batch_size)
        assert [len(b) for b in batches[:-1]] == [batch_size] * (len(batches) - 1)
        epochs[epoch] = np.concatenate(batches)
        assert np.array_equal(np.sort(epochs[epoch]), np.arange(n))
    assert not np.array_equal(epochs[1], epochs[2])  # a new order every epoch
    assert np.array_equal(np.concatenate(epoch_rows(stream, 0, 2, batch_size)), epochs[2])  # seeded
    assert not np.array_equal(np.concatenate(epoch_rows(stream, 1, 2, batch_size)), epochs[2])
    # Far from file order: neighbours in a batch are rarely neighbours in the file.
    assert np.mean(np.abs(np.diff(epochs[1])) == 1) < 0.05
    # Held-out rows are left out, and only they.
    held = np.concatenate(stream.pick([30, 20], seed=0))
    assert len(np.unique(held)) == 50
    rest = np.concatenate(epoch_rows(stream.excluding(held), 0, 1, batch_size))
    assert np.array_equal(np.sort(rest), np.setdiff1d(np.arange(n), held))


def test_values_reach_the_batches_unchanged_in_every_dtype(tmp_path):
    x = np.arange(60, dtype=np.int64).reshape(20, 3) * 3 - 50
    for dtype in (np.uint8, np.int16, np.bool_, np.float16, np.float32, np.float64):
        data = (x % 2 == 0) if dtype is np.bool_ else np.abs(x).astype(dtype)
        stream = NpyStream(save(tmp_path / "x.npy", data), ram_budget="4K")
        got = torch.cat(list(stream.batches(6, 0, 1, torch.float64))).numpy()
        want = data.astype(np.float64)
        assert sorted(map(tuple, got)) == sorted(map(tuple, want)), dtype
    images = np.arange(24, dtype=np.float32).reshape(4, 2, 3)  # [n, h, w] rows are flattened
    stream = NpyStream(save(tmp_path / "images.npy", images))
    assert stream.image_shape == (2, 3) and stream.dim == 6
    assert np.array_equal(stream.read_rows(np.arange(4)), images.reshape(4, 6))


# -- the same training as in memory ---------------------------------------------------------

@pytest.mark.parametrize("kind", ["uint8", "bool", "gaussian-float64", "dynamic-float32"])
def test_a_stream_in_one_chunk_trains_bit_for_bit_like_the_array(tmp_path, kind):
    rng = np.random.default_rng(0)
    options = dict(TINY)
    if kind == "uint8":
        x = binary(300, 12)
    elif kind == "bool":
        x = binary(300, 12).astype(bool)
    elif kind == "gaussian-float64":  # auto: Gaussian; standardized on the sample = all rows
        x = rng.normal(2.0, 3.0, (300, 12))
    else:  # probabilities, a fresh Bernoulli draw per (streamed) batch
        x = rng.random((300, 12)).astype(np.float32)
        options["dynamic_binarization"] = True
    path = save(tmp_path / "x.npy", x)
    val = np.asarray(x[:40], dtype=np.float64)
    if kind == "dynamic-float32":
        val = (val > 0.5).astype(np.float64)
    in_memory = VAE(**options).fit(np.asarray(x, dtype=np.float64), X_val=val)
    stream = NpyStream(path)
    assert len(stream.chunks(3, 1)) == 1
    streamed = VAE(**options).fit(stream, X_val=val)
    assert states_equal(in_memory.module_.state_dict(), streamed.module_.state_dict())
    assert untimed(in_memory.history_) == untimed(streamed.history_)


def test_the_trainer_takes_a_stream_in_place_of_the_tensor(tmp_path):
    x = binary(200, 10)
    config = TrainConfig(epochs=2, batch_size=32, patience=None, seed=1)
    trained = []
    for data in (torch.as_tensor(x, dtype=torch.float32),
                 NpyStream(save(tmp_path / "x.npy", x))):
        module = VAE(**TINY).build(x)
        Trainer(module, config).fit(data)
        trained.append(module.state_dict())
    assert states_equal(*trained)
    # Several chunks: other batches, a model of the same quality, still deterministic.
    chunked = [VAE(**TINY).fit(NpyStream(tmp_path / "x.npy", ram_budget="4K")) for _ in range(2)]
    assert states_equal(chunked[0].module_.state_dict(), chunked[1].module_.state_dict())


# -- resume ---------------------------------------------------------------------------------

def test_resume_after_an_interruption_continues_bit_for_bit(tmp_path, monkeypatch):
    path = save(tmp_path / "x.npy", binary(400, 10))
    options = dict(TINY, epochs=3)

    def stream() -> NpyStream:
        return NpyStream(path, ram_budget="4K")  # 7 chunks of <= 60 rows

    straight = VAE(**options).fit(stream(), run_dir=tmp_path / "straight")
    # Interrupt the second run in the middle of its second epoch.
    batches, seen = NpyStream.batches, []

    def interrupted(self, batch_size, seed, epoch, dtype=torch.float32):
        for i, batch in enumerate(batches(self, batch_size, seed, epoch, dtype)):
            if epoch == 2 and i == 5:
                raise KeyboardInterrupt
            seen.append(epoch)
            yield batch

    monkeypatch.setattr(NpyStream, "batches", interrupted)
    with pytest.raises(KeyboardInterrupt):
        VAE(**options).fit(stream(), run_dir=tmp_path / "split")
    monkeypatch.setattr(NpyStream, "batches", batches)
    assert seen.count(2) == 5 and load_checkpoint(tmp_path / "split")[0]["epoch"] == 1
    resumed = VAE(**options).fit(stream(), run_dir=tmp_path / "split", resume=True)
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "split")
    assert a[0] == b[0] and a[0]["epoch"] == 3
    assert states_equal(a[1], b[1]) and torch.equal(a[3], b[3])  # weights, RNG
    assert states_equal(straight.module_.state_dict(), resumed.module_.state_dict())


# -- refusals ---------------------------------------------------------------------------------

def test_sizes_parse_and_bad_ones_are_refused():
    assert parse_size("512M") == 512 * 2**20 and parse_size("2G") == 2**31
    assert parse_size("1.5k") == 1536 and parse_size("64MiB") == 2**26 and parse_size(1000) == 1000
    for bad in ("", "abc", "-1M", "0", "12X", "1e3", "M"):
        with pytest.raises(ConfigError, match="RAM budget"):
            parse_size(bad)


def bad_file(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A file ``--stream`` must refuse, and what the one-line message must say."""
    x = binary(500, 10).astype(np.float32)
    if kind == "csv":
        path = tmp_path / "x.csv"
        path.write_text("1,0\n0,1\n")
        return path, "streaming reads .npy files"
    if kind == "not-npy":
        path = tmp_path / "x.npy"
        path.write_bytes(b"hello, world")
        return path, "cannot read as .npy"
    if kind == "1-d":
        return save(tmp_path / "x.npy", np.arange(10.0)), "expected a 2-D array"
    if kind == "fortran":
        return save(tmp_path / "x.npy", np.asfortranarray(x)), "column-major"
    if kind == "nan-late":  # far past the first chunk (16 rows at the 2K budget used below)
        x[487, 3] = np.nan
        return save(tmp_path / "x.npy", x), "row 487 (counting from 0) contain NaN"
    assert kind == "non-binary-late"
    x[451, 0] = 0.5
    return save(tmp_path / "x.npy", x), "the Bernoulli likelihood needs 0/1 data, but row 451 "


BAD = ["csv", "not-npy", "1-d", "fortran", "nan-late", "non-binary-late"]


@pytest.mark.parametrize("kind", BAD)
def test_bad_files_are_refused_in_one_line_naming_the_file(tmp_path, kind):
    path, message = bad_file(tmp_path, kind)
    with pytest.raises(DataError) as caught:
        VAE(**TINY, likelihood="bernoulli").fit(NpyStream(path, ram_budget="2K"))
    text = str(caught.value)
    assert message in text and text.startswith(str(path)) and "\n" not in text


@pytest.mark.parametrize("kind", BAD)
def test_the_cli_refuses_bad_files_with_exit_2_and_writes_nothing(tmp_path, capsys, kind):
    path, message = bad_file(tmp_path, kind)
    out = tmp_path / "run"
    code = main(["fit", "--data", str(path), "--stream", "--ram-budget", "2K", "--likelihood",
                 "bernoulli", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and str(path) in err and "\n" not in err, err
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["--stream", "--ram-budget", "lots"], "'lots' is not a size"),
    (["--stream", "--ram-budget", "0"], "must be at least 1 byte"),
    (["--ram-budget", "1M"], "add --stream"),
    (["--stream", "--ram-budget", "1K"], "too small for rows of 10 values"),
    (["--stream", "--model", "mixture"], "--stream trains VAEs"),
])
def test_bad_stream_options_exit_2_and_write_nothing(tmp_path, capsys, argv, message):
    path = save(tmp_path / "x.npy", binary(50, 10))
    out = tmp_path / "run"
    code = main(["fit", "--data", str(path), *argv, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err, err
    assert not out.exists()


def test_mixtures_and_several_processes_are_refused(tmp_path, monkeypatch):
    stream = NpyStream(save(tmp_path / "x.npy", binary(50, 10)))
    with pytest.raises(ConfigError, match="mixtures are fitted on data in memory"):
        Mixture(n_components=2).fit(stream)
    monkeypatch.setattr(distributed, "current", lambda: distributed.Context(0, 2))
    module = VAE(**TINY).build(binary(50, 10))
    with pytest.raises(ConfigError, match="one process"):
        Trainer(module, TrainConfig(epochs=1)).fit(stream)


def test_a_file_that_changes_after_it_was_checked_is_refused(tmp_path):
    path = save(tmp_path / "x.npy", binary(100, 10))
    stream = NpyStream(path)
    stream.scan()
    save(path, binary(120, 10))
    with pytest.raises(DataError, match="the file changed"):
        next(stream.batches(16, 0, 1))


# -- the command line -------------------------------------------------------------------------

FAST = ["--epochs", "2", "--hidden", "16", "--latent-dim", "2", "--eval-k", "20", "--quiet",
        "--no-report", "--batch-size", "32"]


def test_fit_stream_records_its_settings_resumes_and_evaluates(tmp_path, capsys):
    path = save(tmp_path / "big.npy", binary(3000, 16))
    options = ["--data", str(path), "--stream", "--ram-budget", "64K", *FAST]
    assert main(["fit", *options, "--out", str(tmp_path / "straight")]) == 0
    out = capsys.readouterr().out
    assert "streamed: trained on" in out
    config = json.loads((tmp_path / "straight" / "config.json").read_text())["data"]
    assert config["stream"] == {"ram_budget": 65536} and config["n_examples"] == 3000
    # Held out: the test and validation fractions, each capped at a sixteenth of the budget
    # as float64 rows (64K / 16 / (8 x 16) = 32 rows); the train row scores a sample.
    summary = json.loads((tmp_path / "straight" / "summary.json").read_text())
    assert summary["splits"]["test"]["n_examples"] == 32
    assert summary["splits"]["train"]["n_examples"] == 32
    # 1 epoch, then --resume to 2: the straight run, bit for bit.
    assert main(["fit", *options, "--epochs", "1", "--out", str(tmp_path / "split")]) == 0
    assert main(["fit", "--resume", "--epochs", "2", "--quiet", "--no-report", "--eval-k", "20",
                 "--out", str(tmp_path / "split")]) == 0
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "split")
    assert a[0] == b[0] and states_equal(a[1], b[1])
    capsys.readouterr()
    # evaluate scores the held-out test rows (it never reads the whole file).
    scores_path = tmp_path / "scores.json"
    assert main(["evaluate", str(tmp_path / "straight"), "--k", "20", "--json", str(scores_path)]) == 0
    scores = json.loads(scores_path.read_text())
    assert scores["n_examples"] == 32 and scores["split"] == "test"
    assert scores["elbo"] == summary["splits"]["test"]["elbo"]  # the same rows as fit's table
