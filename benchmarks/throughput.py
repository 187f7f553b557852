"""Training throughput of elbokit's :class:`~elbokit.training.Trainer` vs a hand-written loop.

What is measured
----------------
Examples per second while training the same VAE, in the same process, two ways:

- ``elbokit``: ``VAEModule(VAEConfig(dim=784, latent_dim=20, hidden=(400,),
  likelihood={"name": "bernoulli"}))`` trained by ``Trainer(module, TrainConfig(batch_size=128,
  lr=1e-3, patience=None, seed=0)).fit(x_train)`` with no validation data and ``run_dir=None``
  (no disk I/O, no progress bar). One Trainer lives through the whole benchmark; each window
  raises ``trainer.config.epochs`` by the window size and calls ``fit`` again, which resumes
  at the next epoch (so the model and Adam state carry on, as in the hand loop).
- ``hand loop``: the minimal PyTorch loop of the same model: ``nn.Sequential`` encoder
  784 -> 400 -> 40 (loc, raw scale) and decoder 20 -> 400 -> 784 (logits), ReLU, the
  reparameterization ``z = loc + (softplus(raw) + 1e-5) * eps`` by hand, reconstruction
  ``-binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)``, the analytic
  KL(N(loc, scale) || N(0, I)) by hand, ``torch.optim.Adam(lr=1e-3)``. Per epoch: a seeded
  permutation, index-slice batches of 128, ``zero_grad(set_to_none=True)``,
  ``loss = -elbo.mean()``, ``backward``, ``step``; the loss is summed on the device (a mul and an add
  per step) and read back once per window, so neither contestant syncs per step.

Both models start from the same weights (the hand loop copies elbokit's initial parameters),
and a one-batch check with the same seed confirms they compute the same ELBO.

How
---
The machine is noisy, so the contestants run in alternating windows (ABBA order: A B, B A,
A B, ...) after one untimed warm-up window each; every window is ``--window-epochs`` epochs
over ``--n-train`` examples, timed by wall clock around the whole call. Reported: the median
examples/s of each contestant, the ratio of the medians (elbokit / hand loop) and the median
of the per-window-pair ratios (pair i = elbokit window i with hand window i, which ran next
to each other, so slow drifts of the machine cancel).

FLOPs per training step are counted analytically from the matmuls only: a Linear layer
``in -> out`` on a batch of B costs 2*B*in*out forward and 2x that backward (the gradient of
its input and of its weight), except the first encoder layer, whose input is the data, so
autograd skips its input gradient (1x). Element-wise work (activations, softplus, BCE, KL,
Adam's ~12 flops per parameter) is left out; it adds roughly 2-3% to the matmul flops here.
Achieved GFLOP/s = flops per step * steps per second. The compute limit for comparison is
the measured float32 matmul rate of this machine, for one layer's shape
(128x784 @ 784x400) and for a large 1024^3 product.

Data: binarized MNIST (``../shared/data/binarized_mnist/binarized_mnist.npz`` relative to
the repo root, key ``x_train``, uint8 0/1 of shape (50000, 28, 28)); the first ``--n-train``
images as float32 [n, 784]. If the file is missing, random Bernoulli(0.2) data of the same
shape is used, and the output says so.

Usage::

    .venv/bin/python benchmarks/throughput.py [--windows 15] [--window-epochs 5]
        [--n-train 10000] [--threads N] [--data PATH] [--json FILE]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from _common import DEFAULT_DATA, finish, load_binarized_mnist  # noqa: E402

from elbokit import bounds  # noqa: E402
from elbokit.models.vae import VAEConfig, VAEModule  # noqa: E402
from elbokit.training import TrainConfig, Trainer  # noqa: E402

DIM, HIDDEN, LATENT, BATCH, LR, SEED = 784, 400, 20, 128, 1e-3, 0


# -- data ------------------------------------------------------------------------------------
# -- the hand-written contestant -------------------------------------------------------------
class HandVAE(nn.Module):
    """784-400-20 VAE in plain PyTorch: encoder -> (loc, raw scale), decoder -> logits."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(DIM, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 2 * LATENT))
        self.decoder = nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, DIM))

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """Single-sample ELBO per example, ``x: [B, 784] -> [B]``."""
        loc, raw = self.encoder(x).chunk(2, dim=-1)
        scale = F.softplus(raw) + 1e-5
        z = loc + scale * torch.randn_like(loc)
        logits = self.decoder(z)
        reconstruction = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        kl = (0.5 * (loc.square() + scale.square() - 1.0) - scale.log()).sum(-1)
        return reconstruction - kl


class HandLoop:
    """The minimal training loop: seeded permutation, index-slice batches, Adam."""

    def __init__(self, model: HandVAE, x: torch.Tensor) -> None:
        self.model, self.x = model, x
        self.optimizer = torch.optim.Adam(model.parameters(), lr=LR)
        self.epoch = 0
        self.generator = torch.Generator()

    def run(self, epochs: int) -> float:
        """Train ``epochs`` epochs; returns the mean training ELBO (nats/example)."""
        model, x, optimizer = self.model, self.x, self.optimizer
        n = len(x)
        total = torch.zeros(())
        model.train()
        for _ in range(epochs):
            self.epoch += 1
            order = torch.randperm(n, generator=self.generator.manual_seed(SEED * 100_003 + self.epoch))
            for start in range(0, n, BATCH):
                batch = x[order[start:start + BATCH]]
                loss = -model.elbo(batch).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach() * len(batch)
        return -total.item() / (n * epochs)


# -- the elbokit contestant ------------------------------------------------------------------
class ElbokitLoop:
    """One Trainer for the whole benchmark; each call trains the next ``epochs`` epochs."""

    def __init__(self, module: VAEModule, x: torch.Tensor) -> None:
        self.x = x
        config = TrainConfig(epochs=1, batch_size=BATCH, lr=LR, patience=None, seed=SEED)
        self.trainer = Trainer(module, config, run_dir=None, progress=False)
        self.fit_seconds: list[float] = []  # the trainer's own per-epoch "seconds", summed per call

    def run(self, epochs: int) -> float:
        trainer = self.trainer
        trainer.config.epochs = trainer.state["epoch"] + epochs
        history = trainer.fit(self.x)
        assert len(history) == epochs, history
        self.fit_seconds.append(sum(record["seconds"] for record in history))
        return statistics.fmean(record["train"]["elbo"] for record in history)


# -- accounting ------------------------------------------------------------------------------
def step_flops(batch: int) -> int:
    """Matmul flops of one training step (forward + backward), see the module docstring."""
    layers = [(DIM, HIDDEN), (HIDDEN, 2 * LATENT), (LATENT, HIDDEN), (HIDDEN, DIM)]
    forward = sum(2 * batch * a * b for a, b in layers)
    first = 2 * batch * DIM * HIDDEN
    return forward + 2 * forward - first


def matmul_gflops(m: int, k: int, n: int, min_seconds: float = 0.5, repeats: int = 5) -> float:
    """Best-of-``repeats`` float32 GFLOP/s of ``[m, k] @ [k, n]`` on this machine."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    out = torch.empty(m, n)
    for _ in range(3):
        torch.mm(a, b, out=out)
    reps = 1
    while True:  # calibrate so one repeat takes about min_seconds / repeats
        began = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b, out=out)
        elapsed = time.perf_counter() - began
        if elapsed >= min_seconds / repeats:
            break
        reps *= 2
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - began)
    return 2 * m * k * n * reps / best / 1e9


def check_same_model(module: VAEModule, hand: HandVAE, x: torch.Tensor) -> float:
    """Max |ELBO difference| per example between the two models on one batch, same seed."""
    with torch.no_grad():
        torch.manual_seed(123)
        ours = bounds.elbo(module, x, n_samples=1).elbo
        torch.manual_seed(123)
        theirs = hand.elbo(x)
    return float((ours - theirs).abs().max())


@dataclass
class Contestant:
    name: str
    run: Callable[[int], float]
    seconds: list[float] = field(default_factory=list)
    elbos: list[float] = field(default_factory=list)

    def window(self, epochs: int) -> None:
        began = time.perf_counter()
        elbo = self.run(epochs)
        self.seconds.append(time.perf_counter() - began)
        self.elbos.append(elbo)


# -- main ------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="binarized MNIST .npz")
    parser.add_argument("--n-train", type=int, default=10_000, help="training examples (default 10000)")
    parser.add_argument("--windows", type=int, default=15, help="timed windows per contestant (default 15)")
    parser.add_argument("--window-epochs", type=int, default=5, help="epochs per window (default 5)")
    parser.add_argument("--warmup-epochs", type=int, default=1, help="untimed epochs each first (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here as JSON")
    args = parser.parse_args(argv)
    for name in ("n_train", "windows", "window_epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup_epochs < 0:
        parser.error("--warmup-epochs must be >= 0")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)

    x, data_note = load_binarized_mnist(args.data, args.n_train)
    n = len(x)
    steps = -(-n // BATCH)

    module = VAEModule(VAEConfig(dim=DIM, latent_dim=LATENT, hidden=(HIDDEN,),
                                 likelihood={"name": "bernoulli"}))
    hand = HandVAE()
    hand.encoder.load_state_dict(module.encoder.state_dict())
    hand.decoder.load_state_dict(module.decoder.state_dict())
    same = check_same_model(module, hand, x[:BATCH])

    elbokit_loop = ElbokitLoop(module, x)
    contestants = [Contestant("elbokit Trainer", elbokit_loop.run),
                   Contestant("hand loop", HandLoop(hand, x).run)]
    if args.warmup_epochs:
        for c in contestants:
            c.run(args.warmup_epochs)
    elbokit_loop.fit_seconds.clear()
    for i in range(args.windows):
        for c in contestants if i % 2 == 0 else contestants[::-1]:  # ABBA
            c.window(args.window_epochs)

    examples = n * args.window_epochs
    flops = step_flops(n) * args.window_epochs  # per window: flops are linear in the batch size
    rates = {c.name: [examples / s for s in c.seconds] for c in contestants}
    medians = {name: statistics.median(r) for name, r in rates.items()}
    ours, theirs = (c.name for c in contestants)
    pair_ratios = [a / b for a, b in zip(rates[ours], rates[theirs], strict=True)]
    gflops = {name: med * flops / examples / 1e9 for name, med in medians.items()}
    peak_layer = matmul_gflops(BATCH, DIM, HIDDEN)
    peak_large = matmul_gflops(1024, 1024, 1024)

    result = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "data": data_note,
        "n_train": n,
        "batch_size": BATCH,
        "steps_per_epoch": steps,
        "windows": args.windows,
        "window_epochs": args.window_epochs,
        "same_model_max_abs_elbo_diff": same,
        "flops_per_step": step_flops(BATCH),
        "matmul_gflops": {f"{BATCH}x{DIM}@{DIM}x{HIDDEN}": peak_layer, "1024^3": peak_large},
        "contestants": {
            c.name: {
                "median_examples_per_s": medians[c.name],
                "min_examples_per_s": min(rates[c.name]),
                "max_examples_per_s": max(rates[c.name]),
                "median_step_ms": 1e3 * examples / medians[c.name] / (steps * args.window_epochs),
                "gflops": gflops[c.name],
                "window_seconds": c.seconds,
                "final_train_elbo": c.elbos[-1],
            } for c in contestants
        },
        "ratio_of_medians": medians[ours] / medians[theirs],
        "median_pair_ratio": statistics.median(pair_ratios),
        "pair_ratios": pair_ratios,
        "elbokit_fit_seconds_sum": sum(elbokit_loop.fit_seconds),
        "elbokit_window_seconds_sum": sum(contestants[0].seconds),
    }
    result["total_seconds"] = time.perf_counter() - started

    print(f"elbokit throughput benchmark: torch {result['torch']}, {result['threads']} threads "
          f"({result['interop_threads']} inter-op), python {result['python']}")
    print(f"data: {data_note}")
    print(f"VAE 784-400-20, Bernoulli, batch {BATCH}, 1 sample, Adam {LR}; {steps} steps/epoch; "
          f"{args.windows} windows x {args.window_epochs} epoch(s) each, ABBA-interleaved, "
          f"after {args.warmup_epochs} warm-up epoch(s)")
    print(f"same-model check: max |ELBO(elbokit) - ELBO(hand)| on one batch = {same:.2e} nats")
    print(f"matmul flops per step (fwd + bwd): {step_flops(BATCH) / 1e6:.1f} MFLOP")
    print()
    header = f"{'contestant':<18}{'median ex/s':>13}{'min..max ex/s':>19}{'step ms':>9}{'GFLOP/s':>9}" \
             f"{'ratio':>8}{'train ELBO':>12}"
    print(header)
    print("-" * len(header))
    for c in contestants:
        r = result["contestants"][c.name]
        spread = f"{r['min_examples_per_s']:.0f}..{r['max_examples_per_s']:.0f}"
        print(f"{c.name:<18}{r['median_examples_per_s']:>13.0f}{spread:>19}{r['median_step_ms']:>9.2f}"
              f"{r['gflops']:>9.1f}{medians[c.name] / medians[theirs]:>8.3f}{r['final_train_elbo']:>12.2f}")
    print(f"{'matmul limit':<18}{'':>13}{'':>19}{'':>9}{peak_layer:>9.1f}   ({BATCH}x{DIM} @ {DIM}x{HIDDEN})")
    print(f"{'':<18}{'':>13}{'':>19}{'':>9}{peak_large:>9.1f}   (1024^3)")
    print()
    print(f"elbokit / hand loop: ratio of medians {result['ratio_of_medians']:.3f}, "
          f"median of per-pair ratios {result['median_pair_ratio']:.3f} "
          f"(pairs: {', '.join(f'{r:.2f}' for r in pair_ratios)})")
    print(f"elbokit: Trainer's own epoch 'seconds' sum {result['elbokit_fit_seconds_sum']:.2f} s "
          f"vs wall clock around fit() {result['elbokit_window_seconds_sum']:.2f} s")
    return finish(result, args.json)


if __name__ == "__main__":
    main()
