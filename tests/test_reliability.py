"""Reliability under attack: killed and interrupted training, numerical faults, hostile
checkpoint files and failing output directories.

- SIGKILL at seeded random points of ``elbokit fit`` processes and, through a driver that
  pauses inside ``save_checkpoint``, in the middle of checkpoint writes; every run is resumed
  until it finishes, and its final files equal, bit for bit, those of a run never interrupted.
- SIGINT (Ctrl-C): exit status 130, one line, the state at the step boundary checkpointed,
  and the resumed run still bit for bit the uninterrupted one.
- NaN / inf injected into the loss or a gradient: never stepped, rolled back exactly to the
  last good state with the learning rate halved; retries run out -> one line, exit 2, the last
  good checkpoint intact and finite.
- Pickles (``torch.save`` files) in place of tensor files, truncated or tampered files: refused
  with one line, never unpickled.
- Full disk / read-only output (simulated: the tests may run as root, where chmod does not
  stop writes): one line, the last good checkpoint intact, the resumed run loses nothing.

Training processes are forked from the test process (tests/forked.py) and compute on one
thread (bit-for-bit comparisons need the same thread count).
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import random
import signal
import time
from pathlib import Path

import forked
import numpy as np
import pytest
import torch
from torch import nn

from elbokit import VAE, checkpoint, data, training
from elbokit.bounds import Terms
from elbokit.checkpoint import (
    CheckpointWriteError,
    NonFiniteError,
    has_checkpoint,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from elbokit.cli import main
from elbokit.data import NpyStream
from elbokit.errors import CheckpointError, ConfigError
from elbokit.training import (
    NumericalError,
    NumericalFaultWarning,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
)

REPO = Path(__file__).resolve().parents[1]
EPOCHS, STEPS = 6, 21  # digits: 1294 training examples in batches of 64
FIT = ["fit", "--data", "digits", "--hidden", "16", "--latent-dim", "2", "--batch-size", "64",
       "--epochs", str(EPOCHS), "--eval-k", "10", "--no-report", "--quiet", "--patience", "0"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TIMEOUT = 120

# Runs ``elbokit fit`` (as ``python -m elbokit`` does) with test hooks that only wait: at the
# N-th checkpoint save of this process, in WINDOW, it writes MARKER and sleeps, so the test can
# SIGKILL it exactly there. Windows: "files" (checkpoint.tmp/ half written: model and optimizer
# files in, the rest not), "renames" (checkpoint.tmp/ complete, before any rename), "between"
# (the old checkpoint/ moved to checkpoint.old/, the new one not yet in place). "sigint": send
# this process SIGINT when epoch E's batch S is taken (PAUSE="sigint:E:S").
DRIVER = r"""
import os, signal, sys, time
from pathlib import Path
import elbokit.checkpoint as ck
from elbokit import training
window, *where = os.environ["RELIABILITY_PAUSE"].split(":")
marker = Path(os.environ.get("RELIABILITY_MARKER", os.devnull))
saves = [0]
def pause():
    marker.write_text(window)
    time.sleep(600)
save_tensors, fsync_dir, replace = ck.save_tensors, ck._fsync_dir, os.replace
def hooked_save_tensors(path, tensors):
    digest = save_tensors(path, tensors)
    if Path(path).parent.name == "checkpoint.tmp" and Path(path).name == "optimizer.safetensors":
        saves[0] += 1
        if window == "files" and saves[0] == int(where[0]):
            pause()
    return digest
def hooked_fsync_dir(path):
    fsync_dir(path)
    if window == "renames" and Path(path).name == "checkpoint.tmp" and saves[0] == int(where[0]):
        pause()
def hooked_replace(src, dst, **kwargs):
    if window == "between" and Path(src).name == "checkpoint.tmp" and saves[0] == int(where[0]):
        pause()
    return replace(src, dst, **kwargs)
ck.save_tensors, ck._fsync_dir, os.replace = hooked_save_tensors, hooked_fsync_dir, hooked_replace
batches = training.Trainer._batches
def hooked_batches(self, x, epoch, first=0):
    for i, batch in enumerate(batches(self, x, epoch, first), start=first):
        if window == "sigint" and (epoch, i) == (int(where[0]), int(where[1])):
            os.kill(os.getpid(), signal.SIGINT)
        yield batch
training.Trainer._batches = hooked_batches
from elbokit.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


# -- helpers ----------------------------------------------------------------------------------

def spawn(run: Path, pause: str | None = None, marker: Path | None = None) -> forked.Forked:
    """``elbokit fit`` on the tiny digits model into ``run`` (``--resume`` once it exists),
    in a forked child (tests/forked.py: a real process, killed for real, without the seconds
    of a fresh interpreter's imports); with ``pause``, under the hooks of DRIVER."""
    argv = [*FIT, "--out", str(run)]
    if (run / "config.json").exists():
        argv.append("--resume")
    if pause is None:
        return forked.elbokit(argv, run.parent, ENV)
    env = {**ENV, "RELIABILITY_PAUSE": pause, "RELIABILITY_MARKER": str(marker or os.devnull)}
    return forked.Forked(DRIVER, argv, run.parent, env)


def finish(proc: forked.Forked) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, out, err


def wait_until(condition, proc: forked.Forked, timeout: float = 60.0) -> bool:
    """Poll ``condition()`` every 2 ms; False when ``proc`` ended first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the training process never got there")
        time.sleep(0.002)
    return True


def config_written(run: Path):
    """A condition: the run's config.json was (re)written since now. ``elbokit fit`` writes
    it right before training starts (a new run, and every --resume)."""
    path = run / "config.json"
    before = path.stat().st_ino if path.exists() else None
    return lambda: path.exists() and path.stat().st_ino != before


def checkpoint_saved(run: Path):
    """A condition: a checkpoint was saved since now (``checkpoint/state.json`` replaced)."""
    def inode() -> int | None:
        try:
            return (run / "checkpoint" / "state.json").stat().st_ino
        except FileNotFoundError:
            return None
    before = inode()
    return lambda: inode() not in (None, before)


def mid_write(run: Path) -> bool:
    """Is a checkpoint write unfinished (a kill's trace, until the next resume cleans up)?"""
    return (run / "checkpoint.tmp").exists() or (run / "checkpoint.old").exists()


def swap_dirs(run: Path) -> dict:
    """The identity of the swap's temporary directories, to tell a new one from a stale one."""
    found = {}
    for name in ("checkpoint.tmp", "checkpoint.old"):
        try:
            st = (run / name).stat()
            found[name] = (st.st_ino, st.st_mtime_ns)
        except FileNotFoundError:
            pass
    return found


def killed_mid_write(run: Path, before: dict) -> bool:
    """Did this kill interrupt a checkpoint write (a swap directory made by this process)?"""
    return any(before.get(name) != ident for name, ident in swap_dirs(run).items())


def check_valid(run: Path) -> None:
    """The run's checkpoint (if it has one yet) loads: checksums, format, finite values."""
    if has_checkpoint(run):
        state, weights, optimizer, rng, extra = load_checkpoint(run)
        assert 0 <= state["epoch"] <= EPOCHS
        assert all(torch.isfinite(t).all() for t in weights.values())


def final_files(run: Path) -> dict:
    """What must equal an uninterrupted run's: the checkpoint's tensors and counters, the saved
    model, the per-epoch metrics (without timings) and the final scores."""
    state, weights, optimizer, rng, extra = load_checkpoint(run)
    metrics = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
               for line in (run / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run / "summary.json").read_text())
    return {"state": state, "weights": weights, "optimizer": optimizer["state"], "rng": rng,
            "extra": extra, "model": (run / "model.safetensors").read_bytes(),
            "metrics": metrics, "summary": summary["splits"]}


def assert_same(a: dict, b: dict) -> None:
    assert a["state"] == b["state"] and a["state"]["epoch"] == EPOCHS
    assert tensors_equal(a["weights"], b["weights"])
    assert a["optimizer"].keys() == b["optimizer"].keys()
    assert all(tensors_equal(a["optimizer"][i], b["optimizer"][i]) for i in a["optimizer"])
    assert torch.equal(a["rng"], b["rng"])
    assert a["extra"].keys() == b["extra"].keys()
    assert all(tensors_equal(a["extra"][k], b["extra"][k]) for k in a["extra"])
    assert a["model"] == b["model"]  # model.safetensors, byte for byte
    assert a["metrics"] == b["metrics"]  # every epoch exactly once, the same numbers
    assert a["summary"] == b["summary"]


def tensors_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in a)


def one_line_error(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The run never interrupted, in a forked process like the interrupted ones."""
    run = tmp_path_factory.mktemp("reference") / "run"
    code, out, err = finish(spawn(run))
    assert code == 0, err
    return final_files(run)


# -- 3. interrupted training: SIGKILL -----------------------------------------------------------

KILLS = {"total": 0, "mid_write": 0}  # what this module's runs survived
FAULTS = [0]  # NaN / inf injected (Faulty below)


@pytest.fixture(scope="module", autouse=True)
def figures():
    """The module's figures, printed at its end (``pytest -s``)."""
    yield
    print(f"\nreliability: kills survived {KILLS['total']} ({KILLS['mid_write']} "
          f"mid-checkpoint-write), numerical faults injected {FAULTS[0]}")


def report_kills(kills: int, mid_writes: int) -> None:
    KILLS["total"] += kills
    KILLS["mid_write"] += mid_writes


def test_sigkill_at_random_points_then_resume_bit_for_bit(tmp_path, reference):
    """14 SIGKILLs at seeded random points of training processes, each followed by a resume
    until the run finishes; then a fresh run, until all kills are spent. A quarter of the
    kills come 0-2.2 s after the process wrote config.json (start-up, the first epoch), the
    rest 0-0.2 s after its first checkpoint (later epochs, checkpoint writes, the final
    evaluation). After every kill the checkpoint on disk is whole; every run, resumed to the
    end, equals the uninterrupted one bit for bit."""
    rng = random.Random(20261124)
    kills, mid_writes, attempts, landed, runs = 0, 0, 0, [], 0
    while kills < 14:
        runs += 1
        run = tmp_path / f"run{runs}"
        while not (run / "summary.json").exists():
            attempts += 1
            assert attempts < 80, "the processes kept finishing before the kill"
            early = rng.random() < 0.25
            started = config_written(run) if early else checkpoint_saved(run)
            delay = rng.uniform(0.0, 2.2) if early else rng.uniform(0.0, 0.2)
            before = swap_dirs(run)
            proc = spawn(run)
            if kills < 14 and wait_until(started, proc):
                time.sleep(delay)
            if kills < 14 and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=TIMEOUT)
                kills += 1
                mid_writes += killed_mid_write(run, before)
                landed.append(load_checkpoint(run)[0]["epoch"] if has_checkpoint(run) else 0)
            else:
                code, out, err = finish(proc)
                assert code == 0, err
            check_valid(run)
        assert not mid_write(run) and not list(run.glob(".*.tmp"))
        assert_same(final_files(run), reference)
    print(f"\nrandom kills: {kills} in {runs} runs, {mid_writes} mid-checkpoint-write; epoch "
          f"checkpointed at each kill: {landed}")
    report_kills(kills, mid_writes)


# (window, n): pause at the n-th checkpoint save of that process. The six processes are killed
# while saving epochs 2, 3, 4, 5, 5 and 6 (the checkpoint on disk: 1, 2 (moved aside), 3, 4,
# 4 (moved aside), 5); the seventh finishes the run.
@pytest.mark.parametrize("windows", [[("files", 2), ("between", 2), ("renames", 2),
                                      ("files", 2), ("between", 1), ("renames", 2)]])
def test_sigkill_in_the_middle_of_checkpoint_writes(tmp_path, reference, windows):
    """Six SIGKILLs at the most dangerous moments of the checkpoint swap: tensor files half
    written into checkpoint.tmp/, all written but not renamed, and between the two renames
    (no checkpoint/ at all, only checkpoint.old/). Each time the resume finds a whole
    checkpoint (the old one), and the finished run equals the uninterrupted one."""
    run = tmp_path / "run"
    marker = tmp_path / "paused"
    epochs_on_disk = []
    for window, nth in windows:
        marker.unlink(missing_ok=True)
        proc = spawn(run, pause=f"{window}:{nth}", marker=marker)
        assert wait_until(marker.exists, proc), finish(proc)[2]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)
        assert mid_write(run)
        if window == "between":  # the dangerous state: only the old checkpoint, moved aside
            assert not (run / "checkpoint").exists() and (run / "checkpoint.old").is_dir()
        check_valid(run)
        epochs_on_disk.append(load_checkpoint(run)[0]["epoch"])
    assert epochs_on_disk == [1, 2, 3, 4, 4, 5]
    code, out, err = finish(spawn(run))
    assert code == 0, err
    assert not mid_write(run) and not list(run.glob(".*.tmp"))
    assert_same(final_files(run), reference)
    report_kills(len(windows), len(windows))


# -- 3. interrupted training: SIGINT ------------------------------------------------------------

def test_ctrl_c_mid_epoch_checkpoints_the_step_and_resumes_bit_for_bit(tmp_path, reference):
    """SIGINT while epoch 3's sixth batch is taken: that step finishes, the state after it is
    checkpointed (epoch 2 done + 6 steps, with the epoch's partial sums), exit 130 with one
    line saying how to continue; the resumed run is bit for bit the uninterrupted one."""
    run = tmp_path / "run"
    code, out, err = finish(spawn(run, pause="sigint:3:5"))
    assert code == 130
    one_line_error(err, "interrupted", "epoch 3, step 6 of 21", f"elbokit fit --out {run} --resume")
    state = json.loads((run / "checkpoint" / "state.json").read_text())["state"]
    assert state["epoch"] == 2 and state["step"] == 6 and state["seen"] == 6 * 64
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    code, out, err = finish(spawn(run))
    assert code == 0, err
    assert_same(final_files(run), reference)


def test_ctrl_c_at_random_points_exits_130_in_one_line_and_resumes(tmp_path, reference):
    """SIGINT from outside at seeded random moments after a process's first checkpoint
    (training, checkpointing or the final evaluation): always exit 130, one line, no
    traceback, a valid checkpoint; resumed to the end, the run equals the uninterrupted one."""
    rng = random.Random(7)
    run = tmp_path / "run"
    interrupted = 0
    for _ in range(2):
        started = checkpoint_saved(run)
        proc = spawn(run)
        if wait_until(started, proc):
            time.sleep(rng.uniform(0.0, 0.15))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGINT)
        code, out, err = finish(proc)
        if code == 0:  # it finished before the signal arrived
            break
        assert code == 130, err
        one_line_error(err, "elbokit: interrupted", f"continue with: elbokit fit --out {run} --resume")
        check_valid(run)
        assert not mid_write(run)  # Ctrl-C never leaves a write half done
        interrupted += 1
        print(f"\nSIGINT: {err.strip()}")
    assert interrupted >= 1
    code, out, err = finish(spawn(run))
    assert code == 0, err
    assert_same(final_files(run), reference)


# In-process (the API): a mid-epoch Ctrl-C on an array and on a stream, resumed exactly.

TINY = dict(latent_dim=2, hidden=(8,), batch_size=16, seed=3, patience=None)


def sigint_at(monkeypatch, epoch: int, step: int) -> None:
    """Send this process SIGINT when ``epoch``'s batch ``step`` is taken (once)."""
    batches = Trainer._batches

    def hooked(self, x, e, first=0):
        for i, batch in enumerate(batches(self, x, e, first), start=first):
            if (e, i) == (epoch, step):
                os.kill(os.getpid(), signal.SIGINT)
            yield batch

    monkeypatch.setattr(Trainer, "_batches", hooked)


@pytest.fixture
def interactive_sigint():
    """Python's own SIGINT handler, as an interactive process has it: a test runner started
    in the background inherits SIGINT ignored, and the Trainer (rightly) leaves an ignored
    SIGINT alone."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("kind", ["array", "stream"])
def test_api_ctrl_c_mid_epoch_resumes_bit_for_bit(tmp_path, monkeypatch, kind, interactive_sigint):
    x = (np.random.default_rng(0).random((300, 10)) < 0.3).astype(np.float32)
    np.save(tmp_path / "x.npy", x)

    def train_data():
        return NpyStream(tmp_path / "x.npy", ram_budget="4K") if kind == "stream" else x

    straight = VAE(epochs=3, **TINY).fit(train_data(), run_dir=tmp_path / "straight")
    sigint_at(monkeypatch, epoch=2, step=4)
    with pytest.raises(TrainingInterrupted) as caught:
        VAE(epochs=3, **TINY).fit(train_data(), run_dir=tmp_path / "split")
    assert caught.value.checkpointed and "epoch 2, step 5" in caught.value.where
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    monkeypatch.undo()
    state = load_checkpoint(tmp_path / "split")[0]
    assert (state["epoch"], state["step"]) == (1, 5)
    resumed = VAE(epochs=3, **TINY).fit(train_data(), run_dir=tmp_path / "split", resume=True)
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "split")
    assert a[0] == b[0] and tensors_equal(a[1], b[1]) and torch.equal(a[3], b[3])
    assert all(tensors_equal(a[2]["state"][i], b[2]["state"][i]) for i in a[2]["state"])
    assert tensors_equal(straight.module_.state_dict(), resumed.module_.state_dict())
    untimed = [[{k: v for k, v in h.items() if k != "seconds"} for h in
                map(json.loads, (tmp_path / name / "metrics.jsonl").read_text().splitlines())]
               for name in ("straight", "split")]
    assert untimed[0] == untimed[1]


# -- 4. numerical faults ----------------------------------------------------------------------

class Faulty(nn.Module):
    """Wraps an objective; on the calls numbered in ``nan_calls`` (counting from 0) the loss is
    NaN, on those in ``inf_grad_calls`` the loss is finite but the gradient of the first
    encoder weight is infinite (a backward hook)."""

    def __init__(self, inner: nn.Module, nan_calls=(), inf_grad_calls=()) -> None:
        super().__init__()
        self.inner = inner
        self.nan_calls, self.inf_grad_calls = set(nan_calls), set(inf_grad_calls)
        self.calls = 0

    def forward(self, model: nn.Module, batch: torch.Tensor) -> Terms:
        terms = self.inner(model, batch)
        call, self.calls = self.calls, self.calls + 1
        FAULTS[0] += call in self.nan_calls or call in self.inf_grad_calls
        if call in self.nan_calls:
            surrogate = terms.surrogate * torch.tensor(float("nan"))
            return Terms(terms.elbo, terms.reconstruction, terms.kl, surrogate)
        if call in self.inf_grad_calls:
            surrogate = terms.surrogate.clone()
            surrogate.register_hook(lambda g: g * torch.tensor(float("inf")))
            return Terms(terms.elbo, terms.reconstruction, terms.kl, surrogate)
        return terms


@pytest.fixture(scope="module")
def digits_train() -> tuple[torch.Tensor, torch.Tensor]:
    d = data.load("digits")
    parts = data.split_indices(len(d.x), 0, 0.2, 0.1)
    return (torch.tensor(d.x[parts["train"]][:512], dtype=torch.float32),
            torch.tensor(d.x[parts["val"]], dtype=torch.float32))


def trainer_for(run_dir: Path | None, faults: dict, steps_seen: list, **config) -> Trainer:
    """A trainer of a small VAE on 512 digits (8 steps of 64 per epoch) whose objective
    injects ``faults``; every optimizer step is checked to leave the weights finite."""
    vae = VAE(latent_dim=2, hidden=(16,), seed=0)
    module = vae.build(np.zeros((4, 64)) + np.eye(4, 64))  # the width; no data statistics
    cfg = TrainConfig(batch_size=64, patience=None, seed=0, **{"epochs": 4, **config})
    with training.seeded(cfg.seed):
        objective = Faulty(cfg.objective(module), **faults)
    trainer = Trainer(module, cfg, run_dir=run_dir, objective=objective)

    step = trainer.optimizer.step

    def step_then_check_finite() -> None:
        step()
        steps_seen.append(all(bool(torch.isfinite(p).all()) for p in trainer.params))

    trainer.optimizer.step = step_then_check_finite
    return trainer


@pytest.mark.parametrize("fault", ["nan_calls", "inf_grad_calls"])
def test_a_fault_is_rolled_back_exactly_and_the_learning_rate_halved(tmp_path, digits_train, fault):
    x, x_val = digits_train
    steps: list[bool] = []
    bad_call = 8 + 3  # epoch 2, step 4
    trainer = trainer_for(tmp_path, {fault: [bad_call]}, steps)
    restored = []
    restore = trainer._restore

    def spy(snapshot):  # the state right after the rollback vs the checkpoint of epoch 1
        restore(snapshot)
        state, weights, optimizer, rng, extra = load_checkpoint(tmp_path)
        restored.append(state["epoch"])
        assert tensors_equal(trainer.model.state_dict(), weights)
        live = trainer.optimizer.state_dict()["state"]
        assert all(tensors_equal(live[i], optimizer["state"][i]) for i in live)
        assert torch.equal(torch.get_rng_state(), rng)
        assert tensors_equal(trainer.objective.state_dict(), extra["estimator"])

    trainer._restore = spy
    with pytest.warns(NumericalFaultWarning, match=r"epoch 2, step 4 of 8: rolled back to the end "
                      r"of epoch 1, learning rate halved to 0\.0005 \(retry 1 of 5\)"):
        history = trainer.fit(x, x_val)
    assert restored == [1]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    # Every step taken left the weights finite; the bad one was not taken: 8 + 3 + 8 + 8 + 8.
    assert all(steps) and len(steps) == 35
    assert trainer.optimizer.param_groups[0]["lr"] == 5e-4
    assert trainer.state["retries"] == 1
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    events = [line for line in lines if "event" in line]
    what = "loss" if fault == "nan_calls" else "gradient (encoder"
    assert len(events) == 1 and events[0]["action"] == "rollback" and events[0]["lr"] == 5e-4
    assert (events[0]["epoch"], events[0]["step"], events[0]["retry"]) == (2, 4, 1)
    assert events[0]["what"].startswith(what)
    state, weights, optimizer, *_ = load_checkpoint(tmp_path)
    assert state["epoch"] == 4 and all(torch.isfinite(w).all() for w in weights.values())
    assert optimizer["param_groups"][0]["lr"] == 5e-4  # the halved rate is checkpointed


def test_a_fault_in_the_first_epoch_rolls_back_to_the_initial_state(digits_train):
    x, x_val = digits_train
    trainer = trainer_for(None, {"inf_grad_calls": [3]}, [])
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    torch.manual_seed(0)
    seeded = torch.get_rng_state()
    restore, seen = trainer._restore, []

    def spy(snapshot):
        restore(snapshot)
        seen.append(1)
        assert tensors_equal(trainer.model.state_dict(), initial)
        assert len(trainer.optimizer.state) == 0  # Adam's moments, made at step 1, gone again
        assert torch.equal(torch.get_rng_state(), seeded)

    trainer._restore = spy
    with pytest.warns(NumericalFaultWarning, match="rolled back to the start of training"):
        trainer.fit(x, x_val)
    assert seen == [1] and all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_many_random_faults_are_all_rolled_back_deterministically(tmp_path, digits_train):
    """NaN losses and infinite gradients at 40 seeded random training steps: every one is
    caught before the step, rolled back and logged; the run finishes with finite weights, the
    learning rate halved once per fault; and the same schedule gives the same run, bit for
    bit (the rollback restores the RNG too)."""
    x, x_val = digits_train
    rng = random.Random(3)
    calls = rng.sample(range(100), 40)  # 48 steps and the repeated ones: all of them fire
    faults = {"nan_calls": calls[:20], "inf_grad_calls": calls[20:]}
    models = []
    for name in ("a", "b"):
        steps: list[bool] = []
        before = FAULTS[0]
        # A constant learning rate: the halvings counted are the rollbacks' alone.
        trainer = trainer_for(tmp_path / name, faults, steps, epochs=6, max_retries=100,
                              lr_schedule="constant")
        with pytest.warns(NumericalFaultWarning):
            history = trainer.fit(x, x_val)
        fired = FAULTS[0] - before
        assert fired == 40 and len(history) == 6 and all(steps), fired
        assert trainer.state["retries"] == fired
        assert trainer.optimizer.param_groups[0]["lr"] == 1e-3 / 2 ** fired
        lines = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        assert sum(line.get("action") == "rollback" for line in lines) == fired
        assert [line["epoch"] for line in lines if "event" not in line] == [1, 2, 3, 4, 5, 6]
        models.append(trainer.model.state_dict())
    assert tensors_equal(*models)


def test_retries_run_out_one_error_and_the_last_good_checkpoint_is_intact(tmp_path, digits_train):
    x, x_val = digits_train
    steps: list[bool] = []
    # Every call from epoch 3, step 2 on is NaN: the epoch can never finish (the retries
    # fail at their first step).
    trainer = trainer_for(tmp_path, {"nan_calls": range(16 + 1, 10_000)}, steps, max_retries=3)
    with pytest.warns(NumericalFaultWarning) as warned, \
            pytest.raises(NumericalError, match=r"non-finite loss at epoch 3, step 1 of 8, still "
                          r"after 3 retries .* rolled back to the end of epoch 2 and stopped "
                          r"\(its last checkpoint \(epoch 2\) is intact\)"):
        trainer.fit(x, x_val)
    assert len(warned) == 3 and all(steps)
    state, weights, optimizer, *_ = load_checkpoint(tmp_path)
    assert state["epoch"] == 2 and "retries" not in state
    assert all(torch.isfinite(t).all() for t in [*weights.values(), *(
        v for s in optimizer["state"].values() for v in s.values())])
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())  # rolled back
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(line.get("action"), line.get("lr")) for line in lines if "event" in line] == [
        ("rollback", 5e-4), ("rollback", 2.5e-4), ("rollback", 1.25e-4), ("stop", None)]


def test_on_nan_stop_stops_at_the_first_fault(tmp_path, digits_train):
    x, x_val = digits_train
    steps: list[bool] = []
    trainer = trainer_for(tmp_path, {"inf_grad_calls": [5]}, steps, on_nan="stop")
    with pytest.raises(NumericalError, match="non-finite gradient .* on_nan is 'stop'"):
        trainer.fit(x, x_val)
    assert len(steps) == 5 and all(steps) and not has_checkpoint(tmp_path)


def test_the_device_side_check_skips_the_step_and_rolls_back_at_the_epoch_end(digits_train):
    """The GPU path, run on the CPU: the flag stays on the device, fused Adam skips flagged
    steps itself (found_inf), the fault is seen at the epoch's end and rolled back there."""
    x, x_val = digits_train
    steps: list[bool] = []
    trainer = trainer_for(None, {"nan_calls": [10]}, steps)
    trainer.deferred_check = True
    trainer.optimizer.found_inf = trainer._bad
    with pytest.warns(NumericalFaultWarning, match="epoch 2 \\(detected at its end\\)"):
        history = trainer.fit(x, x_val)
    assert len(history) == 4 and all(steps)
    assert trainer.optimizer.param_groups[0]["lr"] == 5e-4
    # Same as the immediate check: rollback to the start of epoch 2 and the same retry.
    immediate = trainer_for(None, {"nan_calls": [10]}, [])
    with pytest.warns(NumericalFaultWarning):
        immediate.fit(x, x_val)
    assert tensors_equal(trainer.model.state_dict(), immediate.model.state_dict())


def test_the_check_changes_nothing_when_all_is_finite(digits_train):
    """The check multiplies by exactly 1.0: training without faults is bit for bit what it
    was without the check (the same trainer with the check patched out)."""
    x, x_val = digits_train
    checked = trainer_for(None, {}, [], epochs=2)
    checked.fit(x, x_val)
    unchecked = trainer_for(None, {}, [], epochs=2)
    unchecked._mark = lambda tensors, flag, one: None  # never marks anything
    unchecked.fit(x, x_val)
    assert tensors_equal(checked.model.state_dict(), unchecked.model.state_dict())


def test_cli_retries_exhausted_is_one_line_exit_2_checkpoint_intact(tmp_path, capsys, monkeypatch):
    build = TrainConfig.objective

    def faulty(self, model):  # NaN from epoch 2, step 3 on (21 steps per epoch)
        return Faulty(build(self, model), nan_calls=range(21 + 2, 10_000))

    monkeypatch.setattr(TrainConfig, "objective", faulty)
    run = tmp_path / "run"
    code = main([*FIT, "--out", str(run), "--max-retries", "2"])
    _, err = capsys.readouterr()
    assert code == 2
    warnings_, errors = err.strip().splitlines()[:-1], err.strip().splitlines()[-1:]
    assert len(warnings_) == 2 and all(w.startswith("elbokit: warning: non-finite loss") for w in warnings_)
    assert "epoch 2, step 3 of 21: rolled back to the end of epoch 1" in warnings_[0]
    one_line_error(errors[0], "elbokit: error: non-finite loss at epoch 2, step 1 of 21",
                   "after 2 retries", "(epoch 1) is intact")
    assert "Traceback" not in err
    state, weights, *_ = load_checkpoint(run)
    assert state["epoch"] == 1 and all(torch.isfinite(w).all() for w in weights.values())
    VAE.load(run)  # the best model so far loads too
    code = main([*FIT, "--out", str(tmp_path / "stop"), "--on-nan", "stop"])
    _, err = capsys.readouterr()
    assert code == 2
    one_line_error(err, "elbokit: error: non-finite loss at epoch 2, step 3 of 21", "on_nan is 'stop'")


def test_a_non_finite_checkpoint_or_model_is_never_written(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    save_checkpoint(tmp_path, model, optimizer, {"epoch": 1})
    good = {p.name: p.read_bytes() for p in (tmp_path / "checkpoint").iterdir()}
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="not checkpointed: the model tensor 'weight' holds NaN"):
        save_checkpoint(tmp_path, model, optimizer, {"epoch": 2})
    with torch.no_grad():
        model.weight[0, 0] = 0.0
    optimizer.state[model.weight]["exp_avg_sq"][0, 0] = float("inf")
    with pytest.raises(NonFiniteError, match="optimizer tensor .* holds infinite values"):
        save_checkpoint(tmp_path, model, optimizer, {"epoch": 2})
    assert {p.name: p.read_bytes() for p in (tmp_path / "checkpoint").iterdir()} == good
    assert sorted(os.listdir(tmp_path)) == ["checkpoint"]
    assert load_checkpoint(tmp_path)[0] == {"epoch": 1}
    with torch.no_grad():
        model.bias[0] = float("inf")
    with pytest.raises(NonFiniteError):
        checkpoint.save_model(tmp_path / "m", model, {})
    assert not (tmp_path / "m" / "model.json").exists()


def test_training_options_are_checked(capsys):
    with pytest.raises(ConfigError, match="on-nan"):
        TrainConfig(on_nan="ignore")
    with pytest.raises(ConfigError, match="max-retries"):
        TrainConfig(max_retries=-1)
    assert main([*FIT, "--on-nan", "ignore"]) == 2
    assert "--on-nan" in capsys.readouterr().err


# -- 5. checkpoints: safetensors + JSON only --------------------------------------------------

class Evil:
    """Unpickling this creates ``marker``: proof that a file was (or was not) unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("finished") / "run"
    assert main([*FIT[:FIT.index("--epochs")], "--epochs", "2", *FIT[FIT.index("--epochs") + 2:],
                 "--out", str(run)]) == 0
    return run


def copy_run(run: Path, to: Path) -> Path:
    import shutil
    shutil.copytree(run, to)
    return to


@pytest.fixture
def no_unpickling(monkeypatch):
    """Any unpickling in this process fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("something tried to unpickle")
    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)


@pytest.mark.parametrize("target", ["model.safetensors", "checkpoint/model.safetensors",
                                    "checkpoint/optimizer.safetensors"])
@pytest.mark.parametrize("fmt", ["pickle", "torch.save"])
@pytest.mark.parametrize("checksum", ["kept", "forged"])
def test_a_pickle_in_place_of_a_tensor_file_is_refused_never_unpickled(
        tmp_path, capsys, finished_run, no_unpickling, target, fmt, checksum):
    run = copy_run(finished_run, tmp_path / "run")
    marker = tmp_path / "pwned"
    payload = {"weight": Evil(marker)}
    path = run / target
    if fmt == "pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path)
    if checksum == "forged":  # an attacker who rewrites the JSON record to match
        digest = checkpoint.sha256(path.read_bytes())
        record_path = run / ("model.json" if target == "model.safetensors" else "checkpoint/state.json")
        record = json.loads(record_path.read_text())
        if target == "model.safetensors":
            record["sha256"] = digest
        else:
            record["sha256"][Path(target).stem] = digest
        record_path.write_text(json.dumps(record))
    command = (["evaluate", str(run), "--k", "10"] if target == "model.safetensors"
               else [*FIT, "--out", str(run), "--resume", "--epochs", "3"])
    code = main(command)
    _, err = capsys.readouterr()
    assert code == 2
    one_line_error(err, "elbokit: error:", target.split("/")[-1])
    assert "refused" in err and "never unpickles" in err
    with pytest.raises(CheckpointError, match="never unpickles"):
        (load_model(run) if target == "model.safetensors" else load_checkpoint(run))
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "appended", "empty",
                                    "truncated, checksum forged"])
@pytest.mark.parametrize("target", ["model.safetensors", "checkpoint/rng.safetensors",
                                    "checkpoint/extra-estimator.safetensors"])
def test_truncated_or_tampered_tensor_files_are_refused(tmp_path, capsys, finished_run, damage, target):
    run = copy_run(finished_run, tmp_path / "run")
    path = run / target
    original = path.read_bytes()
    damaged = {"truncated": original[:len(original) // 2], "empty": b"",
               "flipped byte": original[:-1] + bytes([original[-1] ^ 1]),
               "appended": original + b"\0",
               "truncated, checksum forged": original[:len(original) - 3]}[damage]
    path.write_bytes(damaged)
    expected = "checksum mismatch"
    if damage.endswith("forged"):
        record_path = run / ("model.json" if target == "model.safetensors" else "checkpoint/state.json")
        record = json.loads(record_path.read_text())
        digest = checkpoint.sha256(damaged)
        if target == "model.safetensors":
            record["sha256"] = digest
        elif "extra" in target:
            record["extra"]["estimator"] = digest
        else:
            record["sha256"]["rng"] = digest
        record_path.write_text(json.dumps(record))
        expected = "not a safetensors file"
    command = (["evaluate", str(run), "--k", "10"] if target == "model.safetensors"
               else [*FIT, "--out", str(run), "--resume", "--epochs", "3"])
    code = main(command)
    _, err = capsys.readouterr()
    assert code == 2
    one_line_error(err, "elbokit: error:", Path(target).name, expected)


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.update(version=99), "written by a newer elbokit"),
    (lambda r: r.update(format="something"), "not an elbokit checkpoint"),
    (lambda r: r.pop("sha256"), "incomplete or malformed"),
    (lambda r: r["state"].update(epoch="2"), "incomplete or malformed"),
    (lambda r: r["config"]["model"].update(latent_dim=3),
     "written for another model configuration (latent_dim differ)"),
    (lambda r: r["optimizer"].update(plain=[1]), "malformed optimizer state"),
])
def test_a_tampered_checkpoint_record_is_refused(tmp_path, capsys, finished_run, edit, message):
    run = copy_run(finished_run, tmp_path / "run")
    path = run / "checkpoint" / "state.json"
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))
    code = main([*FIT, "--out", str(run), "--resume", "--epochs", "3"])
    _, err = capsys.readouterr()
    assert code == 2
    one_line_error(err, "elbokit: error:", message)


def test_resuming_with_another_model_is_refused(tmp_path, digits_train):
    x, x_val = digits_train
    trainer_for(tmp_path, {}, [], epochs=1).fit(x, x_val)
    other = VAE(latent_dim=3, hidden=(16,), seed=0).build(np.eye(4, 64))
    trainer = Trainer(other, TrainConfig(batch_size=64, epochs=2, patience=None), run_dir=tmp_path)
    with pytest.raises(CheckpointError, match="another model configuration"):
        trainer.fit(x, x_val, resume=True)


def call_text(text: str, start: int) -> str:
    """The call beginning at ``text[start]`` up to its closing parenthesis."""
    depth, end = 0, text.index("(", start)
    for end in range(end, len(text)):  # noqa: B020 - continues from the opening parenthesis
        depth += {"(": 1, ")": -1}.get(text[end], 0)
        if depth == 0:
            break
    return text[start:end + 1]


def test_no_unsafe_loading_anywhere_in_the_source():
    """No torch.load without weights_only=True, no pickle/joblib/dill loading, no np.load
    that allows pickles, in the package or the tests."""
    import re
    offenders = []
    for path in [*(REPO / "elbokit").rglob("*.py"), *(REPO / "tests").rglob("*.py")]:
        text = path.read_text()
        for match in re.finditer(r"torch\.load\(", text):
            call = call_text(text, match.start())
            if "weights_only=True" not in call:
                offenders.append(f"{path}: {call}")
        for match in re.finditer(r"\b(np|numpy)\.load\(|read_array\(", text):
            call = call_text(text, match.start())
            if re.search(r"allow_pickle\s*=\s*True", call):
                offenders.append(f"{path}: {call}")
        for pattern in (r"pickle\.loads?\(", r"\bUnpickler\(", r"joblib\.load\(", r"dill\.loads?\("):
            offenders += [f"{path}: {m.group(0)}" for m in re.finditer(pattern, text)]
    assert offenders == []


# -- 6. output problems -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference_here(tmp_path_factory) -> dict:
    """The uninterrupted run in this process (in-process runs compare to it: same threads)."""
    run = tmp_path_factory.mktemp("here") / "run"
    assert main([*FIT, "--out", str(run)]) == 0
    return final_files(run)


def failing_writes(monkeypatch, error: OSError, when) -> list[Path]:
    """From the first file write for which ``when(path)`` holds on, every write of a file
    fails with ``error`` (a full disk, a directory made read-only)."""
    write = checkpoint._write_temporary
    failed: list[Path] = []

    def patched(path: Path, data: bytes) -> Path:
        if failed or when(path):
            failed.append(path)
            raise OSError(error.errno, error.strerror, str(path))
        return write(path, data)

    monkeypatch.setattr(checkpoint, "_write_temporary", patched)
    return failed


def nth_checkpoint_write(n: int):
    """A ``when``: true from the n-th checkpoint's first file on."""
    count = [0]

    def when(path: Path) -> bool:
        if path.parent.name == "checkpoint.tmp" and path.name == "model.safetensors":
            count[0] += 1
        return count[0] >= n
    return when


@pytest.mark.parametrize("error, reason", [
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
    (OSError(errno.EACCES, "Permission denied"), "Permission denied"),
    (OSError(errno.EROFS, "Read-only file system"), "Read-only file system"),
])
def test_a_full_or_read_only_disk_mid_run_then_resume_loses_nothing(
        tmp_path, capsys, monkeypatch, reference_here, error, reason):
    run = tmp_path / "run"
    failed = failing_writes(monkeypatch, error, nth_checkpoint_write(3))
    code = main([*FIT, "--out", str(run)])
    _, err = capsys.readouterr()
    assert code == 2 and failed
    one_line_error(err, f"elbokit: error: {run}: cannot write checkpoint: {reason}; its last "
                   f"checkpoint (epoch 2) is intact; once fixed, continue with: elbokit fit "
                   f"--out {run} --resume")
    assert load_checkpoint(run)[0]["epoch"] == 2
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint", "config.json", "metrics.jsonl", "model.json", "model.safetensors"]
    VAE.load(run)  # the saved model is whole
    monkeypatch.undo()  # the disk is fixed
    assert main([*FIT, "--out", str(run), "--resume"]) == 0
    capsys.readouterr()
    assert_same(final_files(run), reference_here)


def test_a_failed_model_write_keeps_the_old_model_whole(tmp_path, capsys, monkeypatch, reference_here):
    """The disk fills while the best model is saved (model.safetensors written, model.json
    not): neither is replaced, the pair still loads."""
    run = tmp_path / "run"
    count, before = [0], {}

    def when(path: Path) -> bool:  # the third save of the best model fails
        count[0] += path.name == "model.json" and path.parent == run
        if count[0] == 3 and not before:
            before.update({name: (run / name).read_bytes()
                           for name in ("model.json", "model.safetensors")})
        return count[0] >= 3
    failing_writes(monkeypatch, OSError(errno.ENOSPC, "No space left on device"), when)
    code = main([*FIT, "--out", str(run)])
    _, err = capsys.readouterr()
    assert code == 2
    epoch = load_checkpoint(run)[0]["epoch"]
    one_line_error(err, f"{run}: cannot write the model: No space left on device; its last "
                   f"checkpoint (epoch {epoch}) is intact")
    assert {name: (run / name).read_bytes() for name in before} == before  # neither replaced
    load_model(run)  # checksums agree: the old pair, whole
    monkeypatch.undo()
    assert main([*FIT, "--out", str(run), "--resume"]) == 0
    capsys.readouterr()
    assert_same(final_files(run), reference_here)


def test_api_a_full_disk_is_a_checkpoint_write_error_and_an_os_error(tmp_path, digits_train,
                                                                   monkeypatch):
    x, x_val = digits_train
    failing_writes(monkeypatch, OSError(errno.ENOSPC, "No space left on device"),
                   nth_checkpoint_write(2))
    with pytest.raises(CheckpointWriteError) as caught:
        trainer_for(tmp_path, {}, [], epochs=3).fit(x, x_val)
    assert isinstance(caught.value, OSError) and caught.value.errno == errno.ENOSPC
    assert str(caught.value) == (f"{tmp_path}: cannot write checkpoint: No space left on device; "
                                 "its last checkpoint (epoch 1) is intact")
    assert load_checkpoint(tmp_path)[0]["epoch"] == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_really_read_only_output_directory(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*FIT[:FIT.index("--epochs")], "--epochs", "1", *FIT[FIT.index("--epochs") + 2:],
                 "--out", str(run)]) == 0
    capsys.readouterr()
    run.chmod(0o500)
    try:
        code = main([*FIT, "--out", str(run), "--resume"])
    finally:
        run.chmod(0o700)
    _, err = capsys.readouterr()
    assert code == 2
    one_line_error(err, "elbokit: error:", "Permission denied")
    assert load_checkpoint(run)[0]["epoch"] == 1

