"""Multi-sample bounds at their compute cost: Trainer epochs against the isolated step.

Issue 15 found IWAE k = 50 on binarized MNIST training at half the speed its isolated step
time predicts. This benchmark trains a 784-H-Z Bernoulli VAE (default 784-400-20, batch 128,
one thread) with elbokit's ``Trainer`` on IWAE_k or DReG_k (``--estimators iwae dreg``), on
the first ``--n-train`` binarized MNIST training images, and compares, in interleaved windows
at the same model state:

- ``epoch``: one more epoch of ``Trainer.fit`` (shuffled batches, the finiteness check, the
  metric sums, the per-epoch snapshot; no validation), seconds per step;
- ``isolated``: the same number of steps of the bare step outside the Trainer (objective
  forward, ``backward``, elbokit's Adam) on one fixed batch, seconds per step.

Their ratio of medians is what an epoch costs over what the isolated step predicts (aim:
at most 1.2). Both run on one copy of the model, so the weights (and with them how far the
importance weights spread, which is what makes steps slow) are the same for both. Before
the windows, one warm-up epoch (the posterior sharpens, the weights spread) and the isolated
step at initialization, the figure the issue started from, are measured.

``--torch-logsumexp`` swaps elbokit's ``numerics.logsumexp`` and ``numerics.exp`` for torch's
own (which leave the vector kernel for arguments below -87, see elbokit/numerics.py), to show
what they bring; ``--keep-subnormals`` runs without the Trainer's flush-to-zero.

    .venv/bin/python benchmarks/multisample.py [--estimators iwae dreg] [--k 50]
        [--windows 5] [--n-train 5120] [--threads 1] [--torch-logsumexp] [--keep-subnormals]

Skipped with a message without the binarized MNIST file (``../shared/data``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_DATA  # noqa: E402


def isolated_steps(trainer, batch: torch.Tensor, n: int) -> float:
    """Seconds per step of ``n`` bare steps on ``batch`` (no shuffling, checks or sums)."""
    model, objective, optimizer = trainer.model, trainer.objective, trainer.optimizer
    model.train()
    objective.train()
    start = time.perf_counter()
    for _ in range(n):
        optimizer.zero_grad(set_to_none=True)
        (-objective(model, batch).surrogate.mean()).backward()
        optimizer.step()
    return (time.perf_counter() - start) / n


def run(estimator: str, x: torch.Tensor, args: argparse.Namespace) -> dict:
    from elbokit import training
    from elbokit.models.vae import VAEConfig, VAEModule

    torch.manual_seed(0)
    module = VAEModule(VAEConfig(dim=784, latent_dim=args.latent, hidden=(args.hidden,),
                                 likelihood={"name": "bernoulli"}))
    options = {"iwae_k": args.k} if estimator == "iwae" else {"estimator": "dreg",
                                                              "iwae_k": args.k}
    config = training.TrainConfig(epochs=1, batch_size=args.batch_size, patience=None,
                                  lr_schedule="constant", **options)
    trainer = training.Trainer(module, config)
    batch = x[:args.batch_size]
    steps = -(-len(x) // args.batch_size)
    flush = (contextlib.nullcontext if args.keep_subnormals else training.flushed_subnormals)
    with flush():
        at_start = statistics.median(isolated_steps(trainer, batch, 3) for _ in range(3))
    if args.keep_subnormals:
        training.flushed_subnormals = contextlib.nullcontext
    trainer.fit(x)  # warm-up epoch
    times: dict[str, list[float]] = {"epoch": [], "isolated": []}
    for window in range(args.windows):
        for name in (("epoch", "isolated") if window % 2 == 0 else ("isolated", "epoch")):
            if name == "epoch":
                trainer.config = dataclasses.replace(config, epochs=trainer.state["epoch"] + 1)
                start = time.perf_counter()
                trainer.fit(x)
                times[name].append((time.perf_counter() - start) / steps)
            else:
                with flush():
                    times[name].append(isolated_steps(trainer, batch, steps))
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {"estimator": estimator, "steps": steps, "isolated_at_start": at_start,
            "medians": medians, "ratio": medians["epoch"] / medians["isolated"],
            "ratio_to_start": medians["epoch"] / at_start, "times": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--estimators", nargs="+", default=["iwae", "dreg"],
                        choices=["iwae", "dreg"])
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=400)
    parser.add_argument("--latent", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--n-train", type=int, default=5120)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--torch-logsumexp", action="store_true")
    parser.add_argument("--keep-subnormals", action="store_true")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"skipped: the binarized MNIST file is not at {args.data}")
    from elbokit import numerics

    if args.torch_logsumexp:
        numerics.logsumexp = lambda v, dim, keepdim=False: torch.logsumexp(v, dim, keepdim=keepdim)
        numerics.exp = torch.exp
    torch.set_num_threads(args.threads)
    with np.load(args.data, allow_pickle=False) as archive:
        x = torch.from_numpy(archive["x_train"].reshape(-1, 784)[:args.n_train].astype(np.float32))
    print(f"784-{args.hidden}-{args.latent} Bernoulli VAE, k = {args.k}, batch {args.batch_size}, "
          f"{len(x)} images, {args.threads} thread(s), {args.windows} windows each"
          f"{', torch logsumexp' if args.torch_logsumexp else ''}"
          f"{', subnormals kept' if args.keep_subnormals else ''}")
    for estimator in args.estimators:
        result = run(estimator, x, args)
        m = result["medians"]
        print(f"  {estimator:5s} epoch {m['epoch'] * 1e3:7.1f} ms/step, isolated step "
              f"{m['isolated'] * 1e3:7.1f} ms (at initialization "
              f"{result['isolated_at_start'] * 1e3:.1f} ms): epoch / isolated "
              f"{result['ratio']:.2f}, epoch / isolated at initialization "
              f"{result['ratio_to_start']:.2f}")


if __name__ == "__main__":
    main()
