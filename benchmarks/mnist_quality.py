"""MNIST quality at equal wall-clock: elbokit's VAE and IWAE (k = 5, 50; with and without
DReG) next to Pyro's VAE, each trained for the same CPU budget, scored by test log-likelihood.

Data: the fixed binarized MNIST (Larochelle & Murray; ``../shared/data/binarized_mnist``),
50,000 training images; the score is log p(x) estimated by importance sampling with k = 5,000
(elbokit's ``bounds.log_likelihood``, with its standard error) on the first ``--n-test`` test
images, in nats per image. The architecture is Burda et al.'s one-stochastic-layer model:
784 -> 200 -> 200 -> 50-d Gaussian z, tanh, Bernoulli pixels; Adam lr 1e-3, batches of 100.

Each contestant trains for ``--minutes`` of wall-clock time on ``--threads`` threads, in
rounds of a tenth of an epoch, stopping at the first round boundary past the budget (the
epochs done are reported):

- elbokit VAE (ELBO, 1 sample), IWAE k = 5 and k = 50 (reparameterized), IWAE k = 5 and 50
  with ``dreg``: the real ``Trainer`` (one Trainer per contestant; each round raises
  ``config.epochs`` by one and calls ``fit`` on the next tenth of a seeded permutation of the
  training set, resuming its state);
- Pyro: the same networks in a Pyro model/guide (``pyro.sample`` of z ~ N(0, I) and x ~
  Bernoulli(logits).to_event(1) in a plate), ``SVI(model, guide, Adam(lr=1e-3),
  Trace_ELBO())``, a seeded permutation per epoch; its encoder and decoder are then scored
  by the same importance sampler.

Published full-training references (not reproduced here: they train for thousands of
epochs): statically binarized VAE about -89.9 and IWAE k = 50 about -87.1 nats (VAE
benchmark suites); Burda et al. 2015 Table 1 on dynamic binarization: VAE -86.76, IWAE k = 50
-84.78. The command that trains to convergence is printed at the end.

    .venv/bin/python benchmarks/mnist_quality.py [--minutes 2] [--n-test 1000] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_DATA, finish  # noqa: E402

from elbokit import bounds  # noqa: E402
from elbokit.models.vae import VAEConfig, VAEModule  # noqa: E402
from elbokit.training import TrainConfig, Trainer, epoch_order  # noqa: E402

HIDDEN, LATENT, BATCH = (200, 200), 50, 100
CHUNKS = 10  # training proceeds in rounds of a tenth of the data, checking the budget between


def load(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(path, allow_pickle=False) as archive:
        train, test = archive["x_train"], archive["x_test"]
    as_tensor = lambda a: torch.from_numpy(a.reshape(len(a), -1).astype(np.float32))  # noqa: E731
    return as_tensor(train), as_tensor(test)


def new_module(seed: int) -> VAEModule:
    torch.manual_seed(seed)
    return VAEModule(VAEConfig(dim=784, latent_dim=LATENT, hidden=HIDDEN, activation="tanh",
                               likelihood={"name": "bernoulli"}))


def train_elbokit(name: str, options: dict, x: torch.Tensor, seconds: float,
                  seed: int) -> tuple[VAEModule, float]:
    """Train until the budget is spent, in rounds of one tenth of the training set (so the
    budget is overshot by at most a tenth of an epoch); returns the model and the epochs."""
    module = new_module(seed)
    config = TrainConfig(epochs=1, batch_size=BATCH, lr=1e-3, patience=None, seed=seed, **options)
    trainer = Trainer(module, config)
    chunks = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))].chunk(CHUNKS)
    began, rounds = time.perf_counter(), 0
    while time.perf_counter() - began < seconds:
        trainer.config.epochs = rounds + 1  # fit() resumes at the next "epoch": the next chunk
        trainer.fit(chunks[rounds % CHUNKS])
        rounds += 1
    print(f"  {name}: {rounds / CHUNKS:.1f} epochs in {time.perf_counter() - began:.0f} s",
          file=sys.stderr, flush=True)
    return module.eval(), rounds / CHUNKS


def train_pyro(x: torch.Tensor, seconds: float, seed: int) -> tuple[VAEModule, float]:
    """Pyro SVI on networks of the same shapes; returns them inside a VAEModule for scoring."""
    import pyro
    import pyro.distributions as pdist
    from pyro.infer import SVI, Trace_ELBO
    from pyro.optim import Adam

    module = new_module(seed)  # the same initial weights as elbokit's contestants
    pyro.clear_param_store()
    pyro.enable_validation(False)

    def model(batch: torch.Tensor) -> None:
        pyro.module("decoder", module.decoder)
        with pyro.plate("data", batch.shape[0]):
            z = pyro.sample("z", pdist.Normal(torch.zeros(LATENT), torch.ones(LATENT)).to_event(1))
            pyro.sample("x", pdist.Bernoulli(logits=module.decoder(z)).to_event(1), obs=batch)

    def guide(batch: torch.Tensor) -> None:
        pyro.module("encoder", module.encoder)
        q = module.posterior(batch)  # the same loc / softplus scale parameterization
        with pyro.plate("data", batch.shape[0]):
            pyro.sample("z", pdist.Normal(q.base_dist.loc, q.base_dist.scale).to_event(1))

    svi = SVI(model, guide, Adam({"lr": 1e-3}), Trace_ELBO())
    torch.manual_seed(seed)
    began, epochs = time.perf_counter(), 0
    steps = 0
    per_epoch = -(-len(x) // BATCH)
    while time.perf_counter() - began < seconds:
        epochs += 1
        for i, index in enumerate(epoch_order(len(x), seed, epochs).split(BATCH)):
            svi.step(x[index])
            steps += 1
            # the same granularity as elbokit's contestants: check between tenths of an epoch
            if (i + 1) % (per_epoch // CHUNKS) == 0 and time.perf_counter() - began >= seconds:
                break
    print(f"  pyro: {steps / per_epoch:.1f} epochs in {time.perf_counter() - began:.0f} s",
          file=sys.stderr, flush=True)
    return module.eval(), steps / per_epoch


@torch.no_grad()
def score(module: VAEModule, x: torch.Tensor, k: int) -> tuple[float, float]:
    """Mean log p(x) estimate over ``x`` and its standard error (nats)."""
    torch.manual_seed(0)
    estimates, errors = [], []
    for batch in x.split(100):
        est, err = bounds.log_likelihood(module, batch, k=k, chunk=500)
        estimates.append(est)
        errors.append(err)
    est, err = torch.cat(estimates).double(), torch.cat(errors).double()
    # The mean's error: the Monte-Carlo errors of the examples combined.
    return float(est.mean()), float(err.square().sum().sqrt() / len(err))


CONTESTANTS = {
    "elbokit VAE": {},
    "elbokit IWAE k=5": {"iwae_k": 5},
    "elbokit IWAE k=5 DReG": {"iwae_k": 5, "estimator": "dreg"},
    "elbokit IWAE k=50": {"iwae_k": 50},
    "elbokit IWAE k=50 DReG": {"iwae_k": 50, "estimator": "dreg"},
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="training budget per contestant")
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--k", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-pyro", action="store_true")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    x_train, x_test = load(args.data)
    x_test = x_test[:args.n_test]
    seconds = 60 * args.minutes
    rows = []
    for name, options in CONTESTANTS.items():
        module, epochs = train_elbokit(name, options, x_train, seconds, seed=0)
        rows.append((name, epochs, *score(module, x_test, args.k)))
    if not args.no_pyro:
        module, epochs = train_pyro(x_train, seconds, seed=0)
        rows.append(("Pyro VAE (Trace_ELBO)", epochs, *score(module, x_test, args.k)))
    print(f"Binarized MNIST, {args.minutes:g} min of training each ({args.threads} thread(s)), "
          f"log p(x) on the first {len(x_test)} test images, k = {args.k}:")
    print("contestant | epochs | test log p(x) | ± SE")
    for name, epochs, est, err in rows:
        print(f"{name} | {epochs:.1f} | {est:.2f} | {err:.3f}")
    print("references (full training): VAE about -89.9, IWAE k=50 about -87.1 (static binarization)")
    print("to convergence: elbokit fit --data binarized-mnist --hidden 200,200 --latent-dim 50 "
          "--activation tanh --batch-size 100 --epochs 3280 --patience 50 --iwae-k 50 --estimator dreg "
          "--eval-k 5000 --out runs/mnist-iwae50")
    return finish({"rows": [dict(zip(("contestant", "epochs", "log_likelihood", "stderr"), r,
                                     strict=True)) for r in rows],
                   "minutes": args.minutes, "n_test": len(x_test), "k": args.k,
                   "total_seconds": time.perf_counter() - began}, args.json)


if __name__ == "__main__":
    main()
