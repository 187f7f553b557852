"""DDP scaling: training examples/s of elbokit's Trainer with 1 and 2 processes (issue 6,
benchmark 3).

What is measured
----------------
Examples per second while :class:`~elbokit.training.Trainer` trains a VAE (no validation,
no run directory, no progress bar) in three set-ups, each in fresh processes:

- ``1 process, T threads``: the ordinary single-process trainer with ``torch`` using all
  T = ``--threads`` cores (default: every core),
- ``1 process, 1 thread``: the same with one thread (what each of the two DDP ranks gets),
- ``2 processes``: two ranks (gloo on 127.0.0.1, spawned as torchrun would, one thread each,
  as torchrun sets ``OMP_NUM_THREADS=1``), each computing half of every global batch of
  ``--batch-size`` and all-reducing the gradients once per step.

Data sets: the 1,797 scikit-learn digits (64 pixels, binarized; the demo's VAE
64 -> 256 -> 256 -> 8-dim z) and the first ``--n-train`` (10,000) binarized-MNIST training
images (``../shared/data/binarized_mnist/binarized_mnist.npz``; 784 -> 400 -> 20-dim z, as
``benchmarks/throughput.py``). Batch size 128, Adam, seed 0.

How
---
Each set-up runs ``--rounds`` times, in alternating order (A B C, C B A, ...) so slow drifts
of the machine hit all of them; a run trains one untimed warm-up window, then ``--windows``
timed windows of ``--window-epochs`` epochs each (one Trainer throughout: each window raises
``config.epochs`` and calls ``fit`` again, which continues where it stopped). Under two
processes a barrier brackets every window, and rank 0's wall clock times it. Reported: the
median examples/s over all windows, and the ratio of the 2-process median to each
1-process median.

Result on the development machine (2 cores, torch 2.13.0+cpu, 3 x 5 windows per set-up)
---------------------------------------------------------------------------------------
::

    set-up                       digits ex/s   2-proc/this   MNIST-10k ex/s   2-proc/this
    1 process, 2 threads              50,037          0.52           25,992          0.45
    1 process, 1 thread               45,676          0.57           18,793          0.62
    2 processes (1 thread each)       26,027          1.00           11,665          1.00

Two processes are *slower* here: a step's forward and backward on half the batch take 3.1 ms
instead of 3.9 ms (a 64-row matmul is less efficient than a 128-row one, and the per-step
Python work does not shrink), every rank still runs the full Adam update (2.2 ms), and the
gloo all-reduce of the 2.6 MB of MNIST gradients over loopback costs 3.1 ms on its own
(4.8 ms in the step, competing for the same two cores). DistributedDataParallel measured
the same (10.8 ms per step against 10.5 ms for elbokit's single flat all-reduce).
Data parallelism pays where each rank has its own GPU or many cores; this machine has two.

Usage::

    .venv/bin/python benchmarks/ddp_scaling.py [--rounds 3] [--windows 5] [--n-train 10000]
        [--data PATH] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from elbokit import data as elbokit_data  # noqa: E402
from elbokit.models.vae import VAEConfig, VAEModule  # noqa: E402
from elbokit.training import TrainConfig, Trainer, seeded  # noqa: E402

DEFAULT_MNIST = REPO.parent / "shared" / "data" / "binarized_mnist" / "binarized_mnist.npz"
MODELS = {"digits": dict(hidden=(256, 256), latent_dim=8, window_epochs=3),
          "mnist": dict(hidden=(400,), latent_dim=20, window_epochs=1)}


def load(name: str, n_train: int, path: Path) -> np.ndarray:
    """``[n, dim]`` float32 0/1 training data."""
    if name == "digits":
        return elbokit_data.load("digits").x.astype(np.float32)
    with np.load(path, allow_pickle=False) as archive:
        images = archive["x_train"][:n_train]
    return images.reshape(len(images), -1).astype(np.float32)


def train_windows(name: str, x: np.ndarray, windows: int, window_epochs: int,
                  batch_size: int) -> list[float]:
    """Seconds per timed window (rank 0's clock when several processes)."""
    spec = MODELS[name]
    config = VAEConfig(dim=x.shape[1], latent_dim=spec["latent_dim"], hidden=spec["hidden"],
                       likelihood={"name": "bernoulli"})
    with seeded(0):
        module = VAEModule(config)
    trainer = Trainer(module, TrainConfig(epochs=window_epochs, batch_size=batch_size,
                                          patience=None, seed=0))
    data = torch.from_numpy(x)
    trainer.fit(data)  # warm-up window
    times = []
    for _ in range(windows):
        trainer.config.epochs += window_epochs
        if dist.is_initialized():
            dist.barrier()
        began = time.perf_counter()
        trainer.fit(data)
        if dist.is_initialized():
            dist.barrier()
        times.append(time.perf_counter() - began)
    return times


def _worker(rank: int, world: int, threads: int, port: int, job: dict, out: str) -> None:
    torch.set_num_threads(threads)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        x = load(job["name"], job["n_train"], Path(job["data"]))
        times = train_windows(job["name"], x, job["windows"], MODELS[job["name"]]["window_epochs"],
                              job["batch_size"])
        if rank == 0:
            Path(out).write_text(json.dumps({"times": times, "n": len(x)}))
    finally:
        if world > 1:
            dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_setup(world: int, threads: int, job: dict) -> dict:
    """One fresh run of a set-up: spawned processes, rank 0's window times."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "times.json")
        mp.spawn(_worker, args=(world, threads, free_port(), job, out), nprocs=world, join=True)
        return json.loads(Path(out).read_text())


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--windows", type=int, default=5)
    p.add_argument("--n-train", type=int, default=10_000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--data", type=Path, default=DEFAULT_MNIST)
    p.add_argument("--sets", default="digits,mnist")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    began = time.perf_counter()
    setups = {f"1 process, {args.threads} threads": (1, args.threads),
              "1 process, 1 thread": (1, 1),
              "2 processes (1 thread each)": (2, 1)}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"torch {torch.__version__}; batch {args.batch_size}")
    result: dict = {"cores": os.cpu_count(), "torch": torch.__version__, "sets": {}}
    for name in args.sets.split(","):
        if name == "mnist" and not args.data.is_file():
            print(f"{args.data}: not found; skipping binarized MNIST", file=sys.stderr)
            continue
        job = {"name": name, "n_train": args.n_train, "data": str(args.data),
               "windows": args.windows, "batch_size": args.batch_size}
        rates: dict[str, list[float]] = {label: [] for label in setups}
        n = 0
        for round_ in range(args.rounds):
            order = list(setups) if round_ % 2 == 0 else list(reversed(setups))
            for label in order:
                world, threads = setups[label]
                out = run_setup(world, threads, job)
                n = out["n"]
                epochs = MODELS[name]["window_epochs"]
                rates[label] += [epochs * n / t for t in out["times"]]
        medians = {label: statistics.median(r) for label, r in rates.items()}
        two = medians["2 processes (1 thread each)"]
        print(f"\n{name}: {n} training examples, {MODELS[name]['window_epochs']} epoch(s) per "
              f"window, {args.rounds} x {args.windows} windows per set-up")
        print(f"{'set-up':<30} {'examples/s (median)':>20} {'min':>9} {'max':>9} {'2-proc / this':>14}")
        for label, r in rates.items():
            print(f"{label:<30} {medians[label]:>20,.0f} {min(r):>9,.0f} {max(r):>9,.0f} "
                  f"{two / medians[label]:>14.2f}")
        result["sets"][name] = {"n_train": n, "examples_per_second": rates, "median": medians}
    result["total_seconds"] = time.perf_counter() - began
    print(f"\ntotal time {result['total_seconds']:.1f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
