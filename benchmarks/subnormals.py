"""Subnormal floats in multi-sample bounds: Trainer steps with and without flush-to-zero.

IWAE_k's gradient weighs each of the k draws by its normalized importance weight; as the
posterior sharpens, all but the largest weights fall below float32's smallest normal number
(1.2e-38) and x86 processors take a slow path for every operation on them. ``Trainer.fit``
flushes subnormals to zero (``elbokit.training.flushed_subnormals``). This benchmark trains
a 784-H-Z Bernoulli VAE on IWAE k (default 784-400-20, k = 50, batch 128, one thread) for
a warm-up epoch on the first ``--n-train`` binarized MNIST training images, then times
epochs of the same Trainer alternately with the flushing on and switched off (in rotated
order, ``--rounds`` rounds), and prints the median seconds per step of each and their ratio.

    .venv/bin/python benchmarks/subnormals.py [--k 50] [--rounds 5] [--n-train 2560]

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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_DATA  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=400)
    parser.add_argument("--latent", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--n-train", type=int, default=2560)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"skipped: the binarized MNIST file is not at {args.data}")
    from elbokit import training
    from elbokit.models.vae import VAEConfig, VAEModule

    torch.set_num_threads(args.threads)
    with np.load(args.data, allow_pickle=False) as archive:
        x = torch.from_numpy(archive["x_train"].reshape(-1, 784)[:args.n_train].astype(np.float32))
    torch.manual_seed(0)
    module = VAEModule(VAEConfig(dim=784, latent_dim=args.latent, hidden=(args.hidden,),
                                 likelihood={"name": "bernoulli"}))
    config = training.TrainConfig(epochs=1, batch_size=args.batch_size, iwae_k=args.k,
                                  patience=None, lr_schedule="constant")
    trainer = training.Trainer(module, config)
    trainer.fit(x)  # warm-up: the posterior sharpens, the weights spread
    steps = -(-len(x) // args.batch_size)
    flushing = training.flushed_subnormals
    times: dict[str, list[float]] = {"flushed": [], "subnormals kept": []}
    for round_ in range(args.rounds):
        order = list(times) if round_ % 2 == 0 else list(times)[::-1]
        for name in order:
            training.flushed_subnormals = (flushing if name == "flushed"
                                           else contextlib.nullcontext)
            trainer.config = dataclasses.replace(config, epochs=trainer.state["epoch"] + 1)
            start = time.perf_counter()
            trainer.fit(x)
            times[name].append((time.perf_counter() - start) / steps)
    training.flushed_subnormals = flushing
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"IWAE k={args.k}, 784-{args.hidden}-{args.latent}, batch {args.batch_size}, "
          f"{args.threads} thread(s), {args.rounds} rounds of one epoch ({steps} steps) each:")
    for name, value in medians.items():
        print(f"  {name:16s} {value * 1e3:8.1f} ms per step (median)")
    print(f"  ratio {medians['subnormals kept'] / medians['flushed']:.2f}")


if __name__ == "__main__":
    main()
