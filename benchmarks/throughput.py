"""Training throughput: elbokit's Trainer vs hand-written PyTorch loops vs Pyro SVI.

Models
------
Two VAEs (Gaussian latent, N(0, I) prior, softplus scale, Bernoulli pixels, one sample,
Adam lr 1e-3), each in its own table:

- ``mnist`` (a), compute-bound: the classic 784-400-20 MLP VAE, batch 128, on the first
  ``--n-train`` binarized-MNIST training images (``../shared/data/binarized_mnist/
  binarized_mnist.npz`` relative to the repo root, key ``x_train``; random Bernoulli(0.2)
  data with a loud warning if the file is missing).
- ``digits`` (b), where per-step overhead dominates: 64-64-8, batch 32, on scikit-learn's
  8x8 digits binarized at 8/16 (``elbokit.data.load("digits")``).

The number of examples is rounded down to a multiple of the batch size (MNIST 10240 = 80
batches, digits 1792 of 1797 = 56 batches), so every step has the same shape: Pyro's JIT
traces one shape, and no contestant gets a cheap short last batch.

Contestants
-----------
Every contestant trains its own copy of the same initial weights (those of the seeded
``VAEModule``), and the batches of epoch e are the rows ``elbokit.training.epoch_order(n,
seed, e)`` in order, for all of them: the same batch sequence.

- ``elbokit``: the real Trainer: ``Trainer(VAEModule(VAEConfig(dim, latent_dim, hidden=(h,),
  likelihood={"name": "bernoulli"})), TrainConfig(batch_size=B, lr=1e-3, patience=None,
  seed=0), run_dir=None, progress=False)``. One Trainer lives through the benchmark; each
  window raises ``trainer.config.epochs`` by the window's epochs and calls ``fit(x)`` again,
  which resumes at the next epoch (model and Adam state carry on). So every step is the
  Trainer's inner loop: the estimator's ``objective(model, batch)`` (q(z|x) a
  torch.distributions Normal, the Bernoulli log-likelihood and the KL by their direct
  formulas), ``loss = -surrogate.mean()``, ``zero_grad``, ``backward``, fused ``Adam.step``,
  and its metric sums on the device, and the update of the weights' running average
  (``--ema``, on by default); plus, per epoch, its bookkeeping (record, early-stopping state;
  no files, no progress bar). A fit without validation data ends on that average, which is
  what it returns, so each window starts from the last one's average: elbokit's training
  ELBO lags the others' (the experiment ``no-average`` trains as the hand loop does, to the
  same ELBO, and shows the average's cost).
- ``hand``: the minimal PyTorch loop: ``nn.Sequential`` encoder dim -> h -> 2L (loc, raw
  scale) and decoder L -> h -> dim (logits), ReLU, ``z = loc + (softplus(raw) + 1e-5) * eps``
  by hand, ``-binary_cross_entropy_with_logits(..., reduction="none").sum(-1)``, the analytic
  KL(N(loc, scale) || N(0, I)) by hand, ``torch.optim.Adam(lr=1e-3)`` (torch's default
  implementation: on the CPU the per-tensor loop), ``loss = -elbo.mean()``, ``zero_grad(
  set_to_none=True)``, ``backward``, ``step``; the loss is summed on the device and read back
  once per window.
- ``hand fused``: the same with ``Adam(fused=True)`` (one fused kernel for all parameters).
- ``pyro ...``: Pyro SVI, the idiomatic way: a model (``pyro.module`` of the decoder,
  ``pyro.plate`` over the batch, ``z ~ Normal(0, 1).to_event(1)``, ``x ~ Bernoulli(logits=
  decoder(z)).to_event(1)`` observed) and a guide (``pyro.module`` of the encoder, ``z ~
  Normal(loc, softplus(raw) + 1e-5).to_event(1)``), ``SVI(model, guide, pyro.optim.Adam(
  {"lr": 1e-3}), loss).step(batch)`` per batch, the returned float summed. Losses:
  ``Trace_ELBO`` (Monte-Carlo KL: log q - log p at the sample), ``TraceMeanField_ELBO``
  (analytic KL, as elbokit and the hand loop), and their JIT-compiled forms
  ``JitTrace_ELBO`` / ``JitTraceMeanField_ELBO`` (``torch.jit.trace``; compiled during the
  check, before any timing). Pyro 1.9.2's ``JitTraceMeanField_ELBO`` re-traces on every step
  (a bug, see ``CachedJitTraceMeanField``: 10-20x slower); the row ``pyro
  JitTraceMeanField`` uses it with that fixed, ``pyro-jit-mf-asis`` (not run by default,
  row marked *) as shipped. Pyro's argument validation is off (``pyro.enable_validation(
  False)``, as elbokit's ``validate_args=False``). Pyro's loss is the batch *sum* (its
  convention), the others' the batch mean; Adam's steps do not depend on the loss scale
  (up to its eps = 1e-8), so all follow the same trajectory.

Check
-----
First, on the first batch at the initial weights, every contestant's loss (per example)
and gradient, each with ``torch.manual_seed(123)`` right before, so all draw the same eps.
Analytic-KL contestants (hand, elbokit, Pyro TraceMeanField) are compared to the hand loop;
Pyro's Trace_ELBO (Monte-Carlo KL) to elbokit's ``bounds.elbo(..., kl="mc")`` at the same
eps: same noise, same estimator, so the numbers must agree to float32 rounding. JIT-traced
code draws its noise through another op, so the JIT rows may differ by the noise (reported,
not required to agree).

Timing
------
The machine is noisy, so contestants run in interleaved windows, the order rotated every
round (A B C ..., B C ... A, ...), after ``--warmup-epochs`` untimed epochs each. A window
is the same whole number of epochs for every contestant (so all stay on the same batches),
chosen from the warm-up so that the median contestant's window lasts about
``--window-seconds`` (or ``--window-epochs``). Reported per contestant: the median
examples/s over the windows, min..max, the median step time, the ratio of medians to the
plain ``hand`` loop, the median of the per-round ratios elbokit / contestant (windows of a
round ran next to each other, so slow drifts cancel), GFLOP/s and its share of the measured
matmul rate, and the mean training ELBO of the last window (nats per example; all
contestants trained on the same batches, so these agree to the noise of the samples, except
elbokit's with its weight average: see above).

FLOPs per step are counted from the matmuls only: a Linear layer ``in -> out`` on a batch of
B costs 2*B*in*out forward and twice that backward (input and weight gradients), except the
first encoder layer, whose input is the data (no input gradient). Element-wise work (ReLU,
softplus, BCE, KL, Adam) is left out. The compute limit is the float32 matmul rate of this
machine at the thread count used, measured for a large 1024^3 product (``% peak``) and for
the model's largest layer at its batch (``% layer``), after every round of windows: each
percentage is the median over rounds of the round's rate over that round's matmul rate.

Usage::

    .venv/bin/python benchmarks/throughput.py [--models mnist digits] [--contestants ...]
        [--windows 25] [--window-seconds 0.6] [--window-epochs N] [--warmup-epochs 1]
        [--n-train 10240] [--threads 1] [--data PATH] [--experiments [NAME ...]] [--quick]
        [--json FILE]

Defaults: both models, contestants ``hand hand-fused elbokit pyro pyro-mf pyro-jit
pyro-jit-mf``, 25 windows, one thread; about 3 minutes. ``--quick``: 3 short windows and
2560 MNIST images, about 12 s (a smoke run, not a measurement).

``--experiments`` adds elbokit variants (the same Trainer with one change each, applied to
that trainer only, in this process; elbokit's source is untouched): ``adam-plain`` (torch's
default per-tensor Adam instead of the fused one: what fusing buys), ``adam-torch``
(``torch.optim.Adam(fused=True)`` instead of elbokit's Adam, which calls the same kernels
without its wrappers: what the wrappers cost), ``direct`` (an objective
built without any torch.distributions object: what the distribution objects still cost),
``compile`` (``Trainer(compile=True)``); no names: all of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from _common import DEFAULT_DATA, finish, load_binarized_digits, load_binarized_mnist  # noqa: E402

from elbokit import bounds  # noqa: E402
from elbokit.models.vae import VAEConfig, VAEModule  # noqa: E402
from elbokit.training import (  # noqa: E402
    DEFAULT_THREADS,
    SMALL_STEP_WORK,
    THREAD_VARIABLES,
    TrainConfig,
    Trainer,
    epoch_order,
    step_work,
)

try:
    import pyro
    import pyro.distributions as pdist
    import pyro.optim
    from pyro.infer import SVI, JitTrace_ELBO, JitTraceMeanField_ELBO, Trace_ELBO, TraceMeanField_ELBO
except ImportError:  # pragma: no cover - reported in the output
    pyro = None

LR, SEED, CHECK_SEED = 1e-3, 0, 123


@dataclass(frozen=True)
class Spec:
    """One benchmark model: data width, hidden width, latent size, batch size."""

    key: str
    title: str
    dim: int
    hidden: int
    latent: int
    batch: int

    def layers(self) -> list[tuple[int, int]]:
        return [(self.dim, self.hidden), (self.hidden, 2 * self.latent),
                (self.latent, self.hidden), (self.hidden, self.dim)]

    def step_flops(self) -> int:
        """Matmul flops of one training step (forward + backward), see the module docstring."""
        forward = sum(2 * self.batch * a * b for a, b in self.layers())
        return 3 * forward - 2 * self.batch * self.dim * self.hidden

    def vae_config(self) -> VAEConfig:
        return VAEConfig(dim=self.dim, latent_dim=self.latent, hidden=(self.hidden,),
                         likelihood={"name": "bernoulli"})


SPECS = {
    "mnist": Spec("mnist", "(a) MNIST VAE 784-400-20, batch 128", 784, 400, 20, 128),
    "digits": Spec("digits", "(b) digits VAE 64-64-8, batch 32", 64, 64, 8, 32),
}


# -- the hand-written contestant -------------------------------------------------------------
class HandVAE(nn.Module):
    """The VAE in plain PyTorch: encoder -> (loc, raw scale), decoder -> logits."""

    def __init__(self, spec: Spec) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(spec.dim, spec.hidden), nn.ReLU(),
                                     nn.Linear(spec.hidden, 2 * spec.latent))
        self.decoder = nn.Sequential(nn.Linear(spec.latent, spec.hidden), nn.ReLU(),
                                     nn.Linear(spec.hidden, spec.dim))

    def loc_scale(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw = self.encoder(x).chunk(2, dim=-1)
        return loc, F.softplus(raw) + 1e-5

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """Single-sample ELBO per example, ``x: [B, dim] -> [B]``."""
        loc, scale = self.loc_scale(x)
        z = loc + scale * torch.randn_like(loc)
        logits = self.decoder(z)
        reconstruction = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        kl = (0.5 * (loc.square() + scale.square() - 1.0) - scale.log()).sum(-1)
        return reconstruction - kl


def copy_of(module: VAEModule, spec: Spec) -> HandVAE:
    """A HandVAE holding a copy of ``module``'s weights (the same layer layout)."""
    net = HandVAE(spec)
    net.encoder.load_state_dict(module.encoder.state_dict())
    net.decoder.load_state_dict(module.decoder.state_dict())
    return net


# -- contestants -----------------------------------------------------------------------------
class Contestant:
    """Trains its own copy of the model on ``x``; ``train(epochs)`` continues where it left."""

    name = ""
    kind = ""  # check group: "analytic" KL or Monte-Carlo ("mc") KL
    threads: int | None = None  # torch.set_num_threads before each window (--thread-counts)
    count = 0  # with threads == 0 (elbokit's own choice): the count that choice comes to

    def __init__(self, spec: Spec, x: torch.Tensor) -> None:
        self.spec, self.x = spec, x
        self.epoch = 0
        self.seconds: list[float] = []
        self.elbos: list[float] = []

    def batches(self) -> Iterator[torch.Tensor]:
        """The next epoch's batches: ``epoch_order`` rows, in slices of the batch size."""
        self.epoch += 1
        order = epoch_order(len(self.x), SEED, self.epoch)
        b = self.spec.batch
        for start in range(0, len(self.x), b):
            yield self.x[order[start:start + b]]

    def train(self, epochs: int) -> float:
        """Train ``epochs`` epochs; the mean training ELBO (nats per example)."""
        raise NotImplementedError

    def check(self, x: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
        """(loss per example, gradients) on ``x`` with the check seed, without a step."""
        raise NotImplementedError

    def parameters(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def window(self, epochs: int) -> None:
        if self.threads == 0:  # elbokit's own choice: torch's default count, nothing set
            for variable in THREAD_VARIABLES:
                os.environ.pop(variable, None)
            torch.set_num_threads(DEFAULT_THREADS)
        elif self.threads is not None:
            # A count the user chose (elbokit.training.training_threads keeps it).
            for variable in THREAD_VARIABLES:
                os.environ[variable] = str(self.threads)
            torch.set_num_threads(self.threads)
        began = time.perf_counter()
        elbo = self.train(epochs)
        self.seconds.append(time.perf_counter() - began)
        self.elbos.append(elbo)

    def _grads(self) -> list[torch.Tensor]:
        grads = [p.grad.detach().clone() for p in self.parameters()]
        for p in self.parameters():
            p.grad = None
        return grads


class Hand(Contestant):
    kind = "analytic"

    def __init__(self, spec: Spec, x: torch.Tensor, module: VAEModule, fused: bool = False) -> None:
        super().__init__(spec, x)
        self.name = "hand fused" if fused else "hand"
        self.net = copy_of(module, spec)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=LR, fused=fused or None)

    def parameters(self) -> list[torch.Tensor]:
        return [*self.net.encoder.parameters(), *self.net.decoder.parameters()]

    def train(self, epochs: int) -> float:
        net, optimizer = self.net, self.optimizer
        total = torch.zeros(())
        net.train()
        for _ in range(epochs):
            for batch in self.batches():
                loss = -net.elbo(batch).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach() * len(batch)
        return -total.item() / (len(self.x) * epochs)

    def check(self, x: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
        torch.manual_seed(CHECK_SEED)
        loss = -self.net.elbo(x).mean()
        loss.backward()
        return float(loss), self._grads()


class Elbokit(Contestant):
    """One Trainer for the whole benchmark; each call trains the next ``epochs`` epochs."""

    kind = "analytic"

    def __init__(self, spec: Spec, x: torch.Tensor, module: VAEModule, name: str = "elbokit",
                 patch: Callable[[Elbokit], None] | None = None, **trainer_options: object) -> None:
        super().__init__(spec, x)
        self.name = name
        self.module = module
        config = TrainConfig(epochs=1, batch_size=spec.batch, lr=LR, patience=None, seed=SEED)
        self.trainer = Trainer(module, config, run_dir=None, progress=False, **trainer_options)
        self.fit_seconds: list[float] = []  # the trainer's own per-epoch "seconds", summed per call
        if patch is not None:
            patch(self)

    def parameters(self) -> list[torch.Tensor]:
        return list(self.module.parameters())

    def train(self, epochs: int) -> float:
        trainer = self.trainer
        trainer.config.epochs = trainer.state["epoch"] + epochs
        history = trainer.fit(self.x)
        assert len(history) == epochs, history
        self.epoch = trainer.state["epoch"]
        self.fit_seconds.append(sum(record["seconds"] for record in history))
        return statistics.fmean(record["train"]["elbo"] for record in history)

    def check(self, x: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
        torch.manual_seed(CHECK_SEED)
        loss = -self.trainer.forward(self.module, x).surrogate.mean()
        loss.backward()
        return float(loss), self._grads()

    def check_mc(self, x: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
        """The same with a Monte-Carlo KL (``bounds.elbo(kl="mc")``): Trace_ELBO's estimator."""
        torch.manual_seed(CHECK_SEED)
        loss = -bounds.elbo(self.module, x, kl="mc").elbo.mean()
        loss.backward()
        return float(loss), self._grads()


PYRO_LOSSES = {  # key: (row name, loss class, check group)
    "pyro": ("pyro Trace_ELBO", "Trace_ELBO", "mc"),
    "pyro-mf": ("pyro TraceMeanField", "TraceMeanField_ELBO", "analytic"),
    "pyro-jit": ("pyro JitTrace_ELBO", "JitTrace_ELBO", "mc"),
    "pyro-jit-mf": ("pyro JitTraceMeanField", "JitTraceMeanField_ELBO", "analytic"),
    "pyro-jit-mf-asis": ("pyro JitTraceMeanField*", "JitTraceMeanField_ELBO as is", "analytic"),
}
DEFAULT_CONTESTANTS = ("hand", "hand-fused", "elbokit", "pyro", "pyro-mf", "pyro-jit", "pyro-jit-mf")

if pyro is not None:
    class CachedJitTraceMeanField(JitTraceMeanField_ELBO):
        """``JitTraceMeanField_ELBO`` that traces once. Pyro 1.9.2's ``differentiable_loss``
        tests ``self._loss_and_surrogate_loss`` (never set in this class) but stores the traced
        function as ``self._differentiable_loss``, so it builds and traces a new function on
        every step (13-24 ms per step here, 1 thread); setting the attribute it tests makes it
        reuse the first trace.
        The unpatched class is the contestant ``pyro-jit-mf-asis`` (row marked *)."""

        def differentiable_loss(self, model, guide, *args, **kwargs):
            loss = super().differentiable_loss(model, guide, *args, **kwargs)
            self._loss_and_surrogate_loss = self._differentiable_loss
            return loss


class Pyro(Contestant):
    """Pyro SVI on its own copy of the networks (parameters named by the contestant, so the
    contestants' parameters do not meet in Pyro's global parameter store)."""

    def __init__(self, spec: Spec, x: torch.Tensor, module: VAEModule, key: str) -> None:
        super().__init__(spec, x)
        self.name, loss_name, self.kind = PYRO_LOSSES[key]
        self.net = net = copy_of(module, spec)
        prefix = f"{spec.key}.{key}."
        zeros, ones = torch.zeros(spec.latent), torch.ones(spec.latent)

        def model(batch: torch.Tensor) -> None:
            pyro.module(prefix + "decoder", net.decoder)
            with pyro.plate("data", batch.shape[0]):
                z = pyro.sample("z", pdist.Normal(zeros, ones).to_event(1))
                pyro.sample("x", pdist.Bernoulli(logits=net.decoder(z)).to_event(1), obs=batch)

        def guide(batch: torch.Tensor) -> None:
            pyro.module(prefix + "encoder", net.encoder)
            loc, scale = net.loc_scale(batch)
            with pyro.plate("data", batch.shape[0]):
                pyro.sample("z", pdist.Normal(loc, scale).to_event(1))

        losses = {"Trace_ELBO": Trace_ELBO, "TraceMeanField_ELBO": TraceMeanField_ELBO,
                  "JitTrace_ELBO": JitTrace_ELBO, "JitTraceMeanField_ELBO": CachedJitTraceMeanField,
                  "JitTraceMeanField_ELBO as is": JitTraceMeanField_ELBO}
        options = {"ignore_jit_warnings": True} if loss_name.startswith("Jit") else {}
        self.loss = losses[loss_name](**options)
        self.model, self.guide = model, guide
        self.svi = SVI(model, guide, pyro.optim.Adam({"lr": LR}), self.loss)

    def parameters(self) -> list[torch.Tensor]:
        return [*self.net.encoder.parameters(), *self.net.decoder.parameters()]

    def train(self, epochs: int) -> float:
        svi, total = self.svi, 0.0
        self.net.train()
        for _ in range(epochs):
            for batch in self.batches():
                total += svi.step(batch)
        return -total / (len(self.x) * epochs)

    def check(self, x: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
        torch.manual_seed(CHECK_SEED)
        loss = self.loss.loss_and_grads(self.model, self.guide, x)  # also compiles the JIT forms
        # Pyro's loss is the batch sum: per example, and the gradient of the mean
        grads = [g / len(x) for g in self._grads()]
        return loss / len(x), grads


# -- experiments: elbokit's Trainer with one change each --------------------------------------
class DirectElbo(nn.Module):
    """The Reparameterize estimator's ELBO terms with fewer torch.distributions objects (what a
    fast path in ``bounds.elbo`` for a Gaussian q, N(0, I) prior and Bernoulli likelihood
    would do): the same numbers from the same noise. ``kl``: KL(q || N(0, I)) by formula
    instead of ``kl_divergence(q, prior.expand(...))``; ``likelihood``: ``-BCE(logits, x)``
    instead of ``Independent(Bernoulli(logits)).log_prob(x)``; ``posterior``: loc and scale
    straight from the encoder (no ``Normal``/``Independent`` objects, no ``rsample``);
    ``flat``: z of shape [B, L] instead of [1, B, L] (one sample), so no ``mean(0)``."""

    def __init__(self, kl: bool = True, likelihood: bool = True, posterior: bool = True,
                 flat: bool = False) -> None:
        super().__init__()
        self.direct_kl, self.direct_likelihood, self.direct_posterior = kl, likelihood, posterior
        self.flat = flat

    def forward(self, model: VAEModule, x: torch.Tensor) -> bounds.Terms:
        q = None
        if self.direct_posterior:  # the same formula as LatentSpace.posterior
            loc, raw = model.encoder(model.observation.network_input(x)).chunk(2, dim=-1)
            scale = F.softplus(raw) + 1e-5
        else:
            q = model.posterior(x)
            loc, scale = q.base_dist.loc, q.base_dist.scale
        eps = torch.randn(loc.shape if self.flat else (1, *loc.shape), dtype=loc.dtype, device=loc.device)
        z = loc + eps * scale
        if self.direct_likelihood:
            logits = model.decoder(z)
            reconstruction = -F.binary_cross_entropy_with_logits(
                logits, x.expand_as(logits), reduction="none").sum(-1)
        else:
            reconstruction = model.likelihood(z).log_prob(x)
        if not self.flat:
            reconstruction = reconstruction.mean(0)
        if self.direct_kl:
            kl = (0.5 * (loc.square() + scale.square() - 1.0) - scale.log()).sum(-1)
        else:
            kl = bounds.closed_form_kl(q if q is not None else model.latent.posterior(
                torch.cat([loc, raw], -1)), model.prior())
        elbo = reconstruction - kl
        return bounds.Terms(elbo=elbo, reconstruction=reconstruction, kl=kl, surrogate=elbo)


def _adam(**options: object) -> Callable[[Elbokit], None]:
    def patch(c: Elbokit) -> None:
        c.trainer.optimizer = torch.optim.Adam(c.trainer.params, lr=LR, **options)
    return patch


def _objective(**options: bool) -> dict:
    """Trainer keyword arguments that train on a :class:`DirectElbo` (the Trainer's public
    ``objective=`` argument, so ``compile=True`` compiles it)."""
    return {"objective": DirectElbo(**options)}


def _no_average(c: Elbokit) -> None:
    """No Polyak average of the weights (``ema=0``): no per-step ``lerp_``, and a window's
    fit ends on the trained weights, as the other contestants' windows do."""
    c.trainer.config = dataclasses.replace(c.trainer.config, ema=0.0)
    c.trainer.average = None


EXPERIMENTS: dict[str, tuple[str, Callable[[Elbokit], None] | None, dict]] = {
    # key: (row name, change applied to the constructed Trainer, Trainer keyword arguments)
    "adam-plain": ("elbokit, torch's default Adam", _adam(), {}),
    "adam-torch": ("elbokit, torch's fused Adam", _adam(fused=True), {}),
    "direct": ("elbokit, no distributions", None, _objective(flat=True)),
    "compile": ("elbokit compile=True", None, {"compile": True}),
    "no-average": ("elbokit, no weight average", _no_average, {}),
}


# -- measurement -----------------------------------------------------------------------------
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


def run_check(contestants: list[Contestant], elbokit: Elbokit | None, x: torch.Tensor) -> dict:
    """Loss and gradient of every contestant on ``x`` at the initial weights, same seed.
    Analytic-KL rows are compared with the hand loop (or elbokit), Monte-Carlo-KL rows with
    elbokit's ``kl="mc"`` ELBO."""
    rows: dict[str, dict] = {}
    results = {c.name: (c.kind, *c.check(x)) for c in contestants}
    if elbokit is not None:
        results["elbokit kl=mc"] = ("mc", *elbokit.check_mc(x))
    references = {"analytic": next((n for n in ("hand", "elbokit") if n in results), None),
                  "mc": "elbokit kl=mc" if "elbokit kl=mc" in results else None}
    for name, (kind, loss, grads) in results.items():
        reference = references[kind]
        row = {"kind": kind, "loss": loss, "reference": reference}
        if reference is not None and reference != name:
            _, ref_loss, ref_grads = results[reference]
            row["abs_loss_diff"] = abs(loss - ref_loss)
            row["max_abs_grad_diff"] = max(float((a - b).abs().max())
                                           for a, b in zip(grads, ref_grads, strict=True))
            row["grad_norm"] = float(torch.cat([g.flatten() for g in ref_grads]).norm())
        rows[name] = row
    return rows


def thread_count(c: Contestant, args: argparse.Namespace) -> int:
    """The threads ``c`` trains with: its own count, elbokit's choice, or ``--threads``."""
    if c.threads is None:
        return args.threads
    return c.threads or c.count


def run_model(spec: Spec, x: torch.Tensor, data_note: str, args: argparse.Namespace) -> dict:
    torch.manual_seed(SEED)
    module = VAEModule(spec.vae_config())
    initial = {k: v.clone() for k, v in module.state_dict().items()}
    contestants: list[Contestant] = []
    elbokit: Elbokit | None = None
    counts = args.thread_counts or [None]
    for count in counts:
        # Every thread count's contestants train their own copies from the same weights; the
        # first count's rows keep the plain names (and the same-loss check's references).
        twin = module
        if count != counts[0]:
            twin = VAEModule(spec.vae_config())
            twin.load_state_dict(initial)
        added = []
        for key in args.contestants:
            if key in ("hand", "hand-fused"):
                added.append(Hand(spec, x, twin, fused=key == "hand-fused"))
            elif key == "elbokit":
                added.append(Elbokit(spec, x, twin))
                if count == counts[0]:
                    elbokit = added[-1]
            elif key in PYRO_LOSSES and pyro is not None:
                added.append(Pyro(spec, x, twin, key))
        for c in added:
            c.threads = count
            if count != counts[0]:
                c.name += f" x{count} threads"
        contestants += added
    if args.auto_threads:
        twin = VAEModule(spec.vae_config())
        twin.load_state_dict(initial)
        auto = Elbokit(spec, x, twin, name="elbokit, default threads")
        auto.threads = 0
        # The count it trains with: one thread for a small step (see training_threads).
        small = step_work(auto.trainer.params, auto.trainer.config) < SMALL_STEP_WORK
        auto.count = 1 if small else DEFAULT_THREADS
        contestants.append(auto)
    for key in args.experiments:
        twin = VAEModule(spec.vae_config())
        twin.load_state_dict(initial)
        name, patch, options = EXPERIMENTS[key]
        contestants.append(Elbokit(spec, x, twin, name=name, patch=patch, **options))

    first_batch = x[epoch_order(len(x), SEED, 1)[:spec.batch]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the JIT's tracer warnings
        check = run_check(contestants, elbokit, first_batch)
        epoch_seconds = []
        for c in contestants:  # warm up; the last warm-up epoch sizes the windows
            if args.warmup_epochs > 1:
                c.train(args.warmup_epochs - 1)
            began = time.perf_counter()
            c.train(1)
            epoch_seconds.append(time.perf_counter() - began)
        window_epochs = args.window_epochs or max(
            1, round(args.window_seconds / statistics.median(epoch_seconds)))
        for c in contestants:
            if isinstance(c, Elbokit):
                c.fit_seconds.clear()
        largest = max(spec.layers(), key=lambda ab: ab[0] * ab[1])
        # The matmul rate in every round, at every thread count in use: the machine's speed
        # drifts (2-3x from hour to hour on a shared VM), so a percentage of a rate measured
        # once would drift too. A contestant is compared with the rate at its own count
        # (elbokit's default-threads row with the count it chooses).
        counts = sorted({thread_count(c, args) for c in contestants})
        round_peaks: dict[tuple[str, int], list[float]] = {
            (shape, count): [] for shape in ("layer", "1024^3") for count in counts}
        for i in range(args.windows):
            shift = i % len(contestants)
            for c in contestants[shift:] + contestants[:shift]:
                c.window(window_epochs)
            for count in counts:
                torch.set_num_threads(count)
                round_peaks["layer", count].append(matmul_gflops(spec.batch, *largest,
                                                                 min_seconds=args.peak_seconds))
                round_peaks["1024^3", count].append(matmul_gflops(1024, 1024, 1024,
                                                                  min_seconds=args.peak_seconds))
        torch.set_num_threads(args.threads)
    assert len({c.epoch for c in contestants}) == 1, [(c.name, c.epoch) for c in contestants]

    n, steps = len(x), len(x) // spec.batch
    examples = n * window_epochs
    rates = {c.name: [examples / s for s in c.seconds] for c in contestants}
    medians = {name: statistics.median(r) for name, r in rates.items()}
    hand = "hand" if "hand" in rates else contestants[0].name
    ours = elbokit.name if elbokit is not None else None
    peaks = {name: statistics.median(values) for name, values in round_peaks.items()}
    flops = spec.step_flops() / spec.batch  # per example
    out: dict = {
        "model": spec.key, "title": spec.title, "data": data_note, "n_train": n,
        "batch_size": spec.batch, "steps_per_epoch": steps, "window_epochs": window_epochs,
        "windows": args.windows, "warmup_epochs": args.warmup_epochs,
        "flops_per_step": spec.step_flops(),
        "matmul_gflops": {
            f"{spec.batch}x{largest[0]}@{largest[0]}x{largest[1]} x{count} threads"
            if shape == "layer" else f"1024^3 x{count} threads": rate
            for (shape, count), rate in peaks.items()},
        "matmul_gflops_per_round": {f"{shape} x{count} threads": values
                                    for (shape, count), values in round_peaks.items()},
        "check": check, "contestants": {},
    }
    for c in contestants:
        count = thread_count(c, args)
        gflops = medians[c.name] / spec.batch * spec.step_flops() / 1e9
        row = {
            "median_examples_per_s": medians[c.name],
            "min_examples_per_s": min(rates[c.name]),
            "max_examples_per_s": max(rates[c.name]),
            "median_step_ms": 1e3 * spec.batch / medians[c.name],
            "ratio_to_hand": medians[c.name] / medians[hand],
            "gflops": gflops,
            # Medians over rounds of the round's rate over the round's matmul rate.
            "percent_of_peak": 100 * statistics.median(
                r * flops / 1e9 / peak for r, peak in zip(rates[c.name],
                                                          round_peaks["1024^3", count],
                                                          strict=True)),
            "percent_of_layer_matmul": 100 * statistics.median(
                r * flops / 1e9 / peak for r, peak in zip(rates[c.name],
                                                          round_peaks["layer", count],
                                                          strict=True)),
            "last_window_train_elbo": c.elbos[-1],
            "window_seconds": c.seconds,
        }
        if ours is not None:
            pair = [a / b for a, b in zip(rates[ours], rates[c.name], strict=True)]
            row["elbokit_over_this_median_round_ratio"] = statistics.median(pair)
            row["elbokit_over_this_ratio_of_medians"] = medians[ours] / medians[c.name]
        if isinstance(c, Elbokit):
            row["fit_seconds_sum"] = sum(c.fit_seconds)
        out["contestants"][c.name] = row
    if args.thread_counts:
        out["thread_counts"] = args.thread_counts
        torch.set_num_threads(args.thread_counts[0])
    return out


def print_model(r: dict) -> None:
    print(f"== {r['title']}: {r['data']}")
    print(f"{r['steps_per_epoch']} steps/epoch; {r['windows']} windows x {r['window_epochs']} epoch(s) per "
          f"contestant, rotated order, after {r['warmup_epochs']} warm-up epoch(s); matmul flops per "
          f"step (fwd + bwd) {r['flops_per_step'] / 1e6:.2f} MFLOP")
    print("check (first batch, initial weights, torch.manual_seed before each; loss = -ELBO per example):")
    for name, row in r["check"].items():
        line = f"  {name:<26}{row['kind']:>9} KL  loss {row['loss']:12.6f}"
        if "abs_loss_diff" in row:
            line += (f"   vs {row['reference']}: |loss diff| {row['abs_loss_diff']:.1e}, max |grad diff| "
                     f"{row['max_abs_grad_diff']:.1e} (grad norm {row['grad_norm']:.2f})")
        print(line)
    header = (f"{'contestant':<26}{'median ex/s':>12}{'min..max ex/s':>19}{'step ms':>9}{'/ hand':>8}"
              f"{'elbokit/this':>13}{'GFLOP/s':>9}{'% peak':>8}{'% layer':>8}{'train ELBO':>11}")
    print(header)
    print("-" * len(header))
    for name, c in r["contestants"].items():
        spread = f"{c['min_examples_per_s']:.0f}..{c['max_examples_per_s']:.0f}"
        versus = c.get("elbokit_over_this_median_round_ratio")
        versus_text = f"{versus:.3f}" if versus is not None else "-"
        print(f"{name:<26}{c['median_examples_per_s']:>12.0f}{spread:>19}{c['median_step_ms']:>9.3f}"
              f"{c['ratio_to_hand']:>8.3f}{versus_text:>13}{c['gflops']:>9.2f}{c['percent_of_peak']:>8.1f}"
              f"{c['percent_of_layer_matmul']:>8.1f}{c['last_window_train_elbo']:>11.2f}")
    for shape, rate in r["matmul_gflops"].items():
        print(f"{'matmul limit ' + shape:<26}{'':>12}{'':>19}{'':>9}{'':>8}{'':>13}{rate:>9.1f}")
    print("(/ hand: ratio of medians to the plain hand loop; elbokit/this: median over rounds of "
          "elbokit's window rate / this one's, same round)")
    print()


# -- main ------------------------------------------------------------------------------------
ALL_CONTESTANTS = ("hand", "hand-fused", "elbokit", *PYRO_LOSSES)  # default: DEFAULT_CONTESTANTS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=tuple(SPECS), default=list(SPECS))
    parser.add_argument("--contestants", nargs="+", choices=ALL_CONTESTANTS,
                        default=list(DEFAULT_CONTESTANTS), help=f"default: {' '.join(DEFAULT_CONTESTANTS)}")
    parser.add_argument("--experiments", nargs="*", choices=tuple(EXPERIMENTS), default=None,
                        help="add elbokit variants (no names: all of them)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="binarized MNIST .npz")
    parser.add_argument("--n-train", type=int, default=10_240,
                        help="MNIST training images, rounded down to a multiple of 128 (default 10240)")
    parser.add_argument("--windows", type=int, default=25, help="timed windows per contestant (default 25)")
    parser.add_argument("--window-seconds", type=float, default=0.6,
                        help="target length of the median contestant's window (default 0.6)")
    parser.add_argument("--window-epochs", type=int, default=None, help="epochs per window (default: from "
                        "--window-seconds)")
    parser.add_argument("--warmup-epochs", type=int, default=1, help="untimed epochs each first (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--auto-threads", action="store_true",
                        help="add a row 'elbokit, default threads': torch's default thread count "
                             "and no OMP_NUM_THREADS, so elbokit chooses (one thread for a small "
                             "step, see elbokit.training.training_threads)")
    parser.add_argument("--thread-counts", type=int, nargs="+", default=None,
                        help="run every contestant at each of these thread counts, as separate "
                             "contestants in the same interleaved rounds (rows of the counts "
                             "after the first are named '... xN threads'); overrides --threads")
    parser.add_argument("--quick", action="store_true", help="a smoke run (< 1 minute): 3 short windows, "
                        "2560 MNIST images")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here as JSON")
    args = parser.parse_args(argv)
    args.experiments = (list(EXPERIMENTS) if args.experiments == [] else args.experiments) or []
    if args.quick:
        args.windows, args.window_seconds, args.n_train = 3, 0.15, min(args.n_train, 2560)
    args.peak_seconds = 0.1 if args.quick else 0.5
    for name in ("n_train", "windows", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.thread_counts is not None and min(args.thread_counts) < 1:
        parser.error("--thread-counts must be >= 1")
    if args.thread_counts:
        args.threads = args.thread_counts[0]
    if args.window_epochs is not None and args.window_epochs < 1:
        parser.error("--window-epochs must be >= 1")
    if args.warmup_epochs < 1:
        parser.error("--warmup-epochs must be >= 1 (it sizes the windows)")
    if args.n_train < SPECS["mnist"].batch:
        parser.error(f"--n-train must be >= {SPECS['mnist'].batch}")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    if pyro is not None:
        pyro.enable_validation(False)
        pyro.clear_param_store()
    result: dict = {
        "torch": torch.__version__, "pyro": pyro.__version__ if pyro is not None else None,
        "python": platform.python_version(), "threads": torch.get_num_threads(),
        "contestants": args.contestants, "experiments": args.experiments, "quick": args.quick,
        "models": {},
    }
    print(f"elbokit throughput benchmark: torch {result['torch']}, pyro {result['pyro']}, "
          f"{result['threads']} thread(s), python {result['python']}")
    if pyro is None:
        print("NOTE: pyro is not installed; pip install 'pyro-ppl>=1.9' for the Pyro contestants")
    print()
    for key in args.models:
        spec = SPECS[key]
        if key == "mnist":
            x, note = load_binarized_mnist(args.data, args.n_train)
        else:
            x, note = load_binarized_digits()
        x = x[:len(x) // spec.batch * spec.batch]
        note += f"; using {len(x)} (a multiple of the batch)"
        r = run_model(spec, x, note, args)
        result["models"][key] = r
        print_model(r)
    print_aims(result)
    result["total_seconds"] = time.perf_counter() - started
    return finish(result, args.json)


def print_aims(result: dict) -> None:
    """elbokit >= 1.0x the plain hand loop on both models; >= 1.3x (a) / 3x (b) Pyro."""
    aims = {"mnist": 1.3, "digits": 3.0}
    for key, r in result["models"].items():
        rows = r["contestants"]
        if "elbokit" not in rows:
            continue
        parts = []
        if "hand" in rows:
            ratio = rows["elbokit"]["median_examples_per_s"] / rows["hand"]["median_examples_per_s"]
            parts.append(f"elbokit / hand {ratio:.3f} (round median "
                         f"{rows['hand']['elbokit_over_this_median_round_ratio']:.3f}; aim >= 1.0)")
        pyros = {n: c for n, c in rows.items() if n.startswith("pyro") and not n.endswith("*")}
        if "pyro Trace_ELBO" in pyros:
            ratio = pyros["pyro Trace_ELBO"]["elbokit_over_this_median_round_ratio"]
            parts.append(f"elbokit / pyro Trace_ELBO {ratio:.2f} (aim >= {aims[key]})")
        if pyros:
            fastest = max(pyros, key=lambda n: pyros[n]["median_examples_per_s"])
            ratio = pyros[fastest]["elbokit_over_this_median_round_ratio"]
            parts.append(f"elbokit / fastest Pyro ({fastest}) {ratio:.2f}")
        print(f"aims {key}: " + "; ".join(parts))
        for count in r.get("thread_counts", [])[1:]:
            line = []
            for base in ("elbokit", "hand", "hand fused"):
                other = f"{base} x{count} threads"
                if base in rows and other in rows:
                    gain = rows[other]["median_examples_per_s"] / rows[base]["median_examples_per_s"]
                    line.append(f"{base} {gain:.2f}x")
            if "hand" in rows and f"hand x{count} threads" in rows and f"elbokit x{count} threads" in rows:
                ratio = (rows[f"elbokit x{count} threads"]["median_examples_per_s"]
                         / rows[f"hand x{count} threads"]["median_examples_per_s"])
                line.append(f"elbokit / hand at {count} threads {ratio:.3f}")
            print(f"  {count} threads over {r['thread_counts'][0]}: " + ", ".join(line))


if __name__ == "__main__":
    main()
