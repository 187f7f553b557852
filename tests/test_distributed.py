"""Data-parallel training on torch.distributed: N processes take the steps one process takes
on the same global batches; ``torchrun ... elbokit fit`` writes one run and resumes it.

Two cores here: the multi-process tests use gloo on 127.0.0.1 with one thread per process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from elbokit import VAE, data, distributed, estimators
from elbokit.checkpoint import load_checkpoint
from elbokit.cli import main
from elbokit.training import TrainConfig, Trainer

TORCHRUN = Path(sys.executable).with_name("torchrun")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- pieces ----------------------------------------------------------------------------

@pytest.mark.parametrize("n, world", [(10, 2), (9, 2), (1, 2), (0, 3), (7, 3), (128, 4)])
def test_shards_are_contiguous_ordered_and_cover_the_batch(n, world):
    parts = [distributed.Context(rank, world).shard(n) for rank in range(world)]
    assert [i for part in parts for i in range(n)[part]] == list(range(n))
    sizes = [part.stop - part.start for part in parts]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_rank_seeds_differ_by_rank_and_epoch_and_from_the_batch_order_seeds():
    seeds = {distributed.rank_seed(0, rank, epoch) for rank in range(4) for epoch in range(3)}
    assert len(seeds) == 12
    assert distributed.rank_seed(5, 1) == distributed.rank_seed(5, 1)
    order_seed = int(np.random.SeedSequence([0, 1]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))
    assert order_seed not in seeds  # epoch_order's generator for (seed 0, epoch 1)


def test_without_torchrun_nothing_is_initialized(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert not distributed.launched() and distributed.init("cpu") is None
    assert not dist.is_initialized()


# -- issue test 1: N processes step like one ---------------------------------------------

class BaselinedELBO(nn.Module):
    """The exact (enumerated) ELBO plus what estimators may carry: a learned parameter
    trained by the same optimizer (like a learned baseline), a moving average of the batch
    mean and a step counter (buffers). Deterministic, so one process and two can be compared
    to float rounding."""

    def __init__(self) -> None:
        super().__init__()
        self.exact = estimators.Enumerate()
        self.baseline = nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.register_buffer("average", torch.zeros((), dtype=torch.float64))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, model: nn.Module, x: torch.Tensor):
        terms = self.exact(model, x)
        with torch.no_grad():
            self.average.mul_(0.9).add_(0.1 * terms.elbo.mean())
            self.steps += 1
        fit = (terms.elbo.detach() - self.average - self.baseline).pow(2)
        return type(terms)(elbo=terms.elbo, reconstruction=terms.reconstruction, kl=terms.kl,
                           surrogate=terms.surrogate - 0.01 * fit)


CASES = {
    # one step on one global batch of 8 (4 examples per rank)
    "one-step": dict(n=8, batch_size=8, epochs=1),
    # batches of 5, 5 and 1 for two epochs: slices of 3 and 2 examples, and of 1 and none
    "uneven": dict(n=11, batch_size=5, epochs=2),
}


def train_case(case: str) -> tuple[dict[str, torch.Tensor], list[dict], int]:
    """Train a float64 VAE with a categorical z (summed over exactly) on digits; returns its
    parameters and buffers (model and objective), the history and the trainer's number of
    processes."""
    spec = CASES[case]
    x = data.load("digits").x
    train, val = x[:spec["n"]], x[100:105]
    vae = VAE(latent="categorical:3", hidden=(8,), dtype="float64", seed=0)
    module = vae.build(train)
    objective = BaselinedELBO()
    config = TrainConfig(epochs=spec["epochs"], batch_size=spec["batch_size"], lr=1e-2,
                         patience=None, seed=0)
    trainer = Trainer(module, config, objective=objective)
    history = trainer.fit(torch.as_tensor(train), torch.as_tensor(val))
    state = {f"model.{k}": v for k, v in module.state_dict().items()}
    state |= {f"objective.{k}": v for k, v in objective.state_dict().items()}
    return state, history, trainer.dist.world_size if trainer.dist is not None else 1


def train_richer() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Two epochs of a Gaussian VAE with a VampPrior and an IAF posterior on 16 digits;
    returns its state before and after. Each rank draws its own samples, so replicas can only
    agree with each other (every parameter's gradient averaged over ranks), not with one
    process."""
    x = data.load("digits").x[:16]
    module = VAE(hidden=(8,), latent_dim=2, prior="vamp:3", posterior="iaf:1", seed=0).build(x)
    start = {k: v.clone() for k, v in module.state_dict().items()}
    Trainer(module, TrainConfig(epochs=2, batch_size=8, patience=None, seed=0)).fit(
        torch.as_tensor(x, dtype=torch.float32))
    return start, module.state_dict()


def _worker(rank: int, world: int, port: int, case: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        state, history, world = train_case(case)
        # The richer components ride along in one case's processes (a spawn costs seconds).
        richer = train_richer() if case == "uneven" else None
        torch.save({"state": state, "history": history, "world": world, "richer": richer},
                   Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("case", list(CASES))
def test_two_processes_take_the_single_process_steps(tmp_path, case):
    """Two processes take the one-process steps; in the "uneven" case they also keep a
    VampPrior and an IAF posterior identical on both ranks."""
    mp.spawn(_worker, args=(2, free_port(), case, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    single, single_history, _ = train_case(case)
    assert [r["world"] for r in ranks] == [2, 2]  # the trainers did run data-parallel
    # Every rank holds exactly the same model and estimator state.
    assert ranks[0]["state"].keys() == ranks[1]["state"].keys() == single.keys()
    for key in single:
        assert torch.equal(ranks[0]["state"][key], ranks[1]["state"][key]), key
    # ... and it is the single-process one up to the order of float64 additions (the
    # gradient is summed over two slices instead of one batch): measured at most 4e-15;
    # 1e-10 leaves a wide margin and still catches any mis-weighted slice.
    for key, value in single.items():
        other = ranks[0]["state"][key]
        if value.is_floating_point():
            assert torch.allclose(other, value, rtol=0, atol=1e-10), (key, (other - value).abs().max())
        else:
            assert torch.equal(other, value), key  # the step counter: every step counted once
    if case == "uneven":  # a VampPrior and a flow stay identical on both ranks, and train
        (start, richer), (_, other) = ranks[0]["richer"], ranks[1]["richer"]
        assert any(k.startswith("prior_module.") for k in richer)
        assert any(k.startswith("posterior_module.") for k in richer)
        for key, value in richer.items():
            assert torch.equal(value, other[key]), key
            if key.endswith(("weight", "bias", "raw_inputs")):
                assert not torch.equal(value, start[key]), f"{key} never trained"
    steps = -(-CASES[case]["n"] // CASES[case]["batch_size"])
    assert int(single["objective.steps"]) == CASES[case]["epochs"] * steps
    # The metrics: train sums over all examples of all ranks, validation split and summed.
    for got, want in zip(ranks[1]["history"], single_history, strict=True):
        for split in ("train", "val"):
            for term in ("elbo", "reconstruction", "kl"):
                assert abs(got[split][term] - want[split][term]) < 1e-10, (split, term)


# -- issue test 2: torchrun ... elbokit fit ---------------------------------------------

OPTIONS = ["--data", "digits", "--hidden", "32", "--eval-k", "20", "--quiet", "--no-report",
           "--seed", "1"]


def torchrun(*argv: object, timeout: float = 120,
             launch: Sequence[str] = ("--standalone", "--nproc-per-node", "2"),
             ) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(TORCHRUN), *launch, "-m", "elbokit", "fit", *map(str, argv)],
                          capture_output=True, text=True, timeout=timeout, env=env)


def two_nodes(*argv: object, timeout: float = 120) -> list[subprocess.CompletedProcess]:
    """Two torchrun launchers as two nodes of one process each, started at once with the same
    command, meeting at a c10d rendezvous on 127.0.0.1 as two machines would at one's address
    (``--local-addr``: the workers' process group connects over 127.0.0.1 too)."""
    launch = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
              "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", f"elbokit-test-{os.getpid()}",
              "--local-addr", "127.0.0.1"]
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda _: torchrun(*argv, timeout=timeout, launch=launch), range(2)))


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def untimed(lines: list[dict]) -> list[dict]:
    return [{k: v for k, v in line.items() if k != "seconds"} for line in lines]


# A categorical z summed over exactly: no sampling, so two processes and one can be compared
# to float32 rounding. With TensorBoard's log, which rank 0 alone writes.
EXACT = [*OPTIONS, "--latent", "categorical:4", "--epochs", "2", "--tensorboard"]


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference for every launch below: the same ``elbokit fit`` in this process."""
    out = tmp_path_factory.mktemp("one-process") / "run"
    assert main(["fit", *map(str, EXACT), "--out", str(out)]) == 0
    return out


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed beside python")
def test_torchrun_fit_writes_one_run_averaged_over_all_examples(tmp_path, one_process_run):
    """Two processes as two nodes of one process each (``--nnodes 2``, c10d rendezvous) fit
    as one process does. (One node of two processes, ``--standalone``, is the launch of the
    resume and refusal tests below, and two processes of one node take the one-process steps
    in test_two_processes_take_the_single_process_steps; a ``--standalone`` fit of its own
    here cost 14 s of the suite.)"""
    run = tmp_path / "ddp"
    launched = two_nodes(*EXACT, "--out", run)
    for done in launched:
        assert done.returncode == 0, done.stderr
    # Rank 0 alone prints and writes the run; with two nodes, on whichever node the rendezvous
    # made rank 0 (both were given the same --out here, one machine's file system).
    stdout = "".join(done.stdout for done in launched)
    assert stdout.count("split     n") == 1 and stdout.count("run directory:") == 1
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint", "config.json", "metrics.jsonl", "model.json", "model.safetensors",
        "summary.json", "tensorboard"]
    assert len(list((run / "tensorboard").iterdir())) == 1  # one event file: rank 0's
    rng = load_checkpoint(run)[4]["rng"]
    assert int(rng["world_size"]) == 2 and {"torch.0", "torch.1"} <= rng.keys()

    # The same global batches and steps: the per-epoch means over all 1,294 training and 144
    # validation examples agree to float32 rounding (measured: 3.4e-6 nats at most, both
    # launches alike). Summing one rank's examples only, or dividing by one rank's count,
    # would be off by ~20 nats.
    for got, want in zip(metrics(run), metrics(one_process_run), strict=True):
        for split in ("train", "val"):
            assert abs(got[split]["elbo"] - want[split]["elbo"]) < 1e-4, (got, want)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["splits"]["train"]["n_examples"] == 1294 and summary["epochs_trained"] == 2


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed beside python")
def test_torchrun_resume_continues_bit_for_bit(tmp_path, capsys):
    # A Gaussian z: every rank draws its own posterior samples; the checkpoint holds each
    # rank's RNG state, so 1 epoch + resume to 2 is the straight 2-epoch run, bit for bit.
    options = [*OPTIONS, "--latent-dim", "2"]
    straight = torchrun(*options, "--epochs", "2", "--out", tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr
    first = torchrun(*options, "--epochs", "1", "--out", tmp_path / "split")
    assert first.returncode == 0, first.stderr
    resumed = torchrun("--resume", "--epochs", "2", "--quiet", "--no-report", "--eval-k", "20",
                       "--out", tmp_path / "split")
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "split")
    assert a[0] == b[0] and a[0]["epoch"] == 2
    for key in a[1]:
        assert torch.equal(a[1][key], b[1][key]), key
    for key in a[4]["rng"]:
        assert torch.equal(a[4]["rng"][key], b[4]["rng"][key]), key
    assert untimed(metrics(tmp_path / "straight")) == untimed(metrics(tmp_path / "split"))
    # One process may continue a two-process run: exactly, but for new random streams.
    code = main(["fit", "--resume", "--epochs", "3", "--quiet", "--no-report", "--eval-k", "20",
                 "--out", str(tmp_path / "split")])
    err = capsys.readouterr().err
    assert code == 0 and "written by 2 process(es) and is resumed by 1" in err, err
    assert [line["epoch"] for line in metrics(tmp_path / "split")] == [1, 2, 3]


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed beside python")
def test_torchrun_refusal_on_rank_zero_ends_every_rank_with_one_line(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "something").write_text("not a run")
    done = torchrun(*OPTIONS, "--epochs", "1", "--out", tmp_path / "taken", timeout=60)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("elbokit: error")]
    assert len(lines) == 1 and "already exists" in lines[0], done.stderr

