"""Discrete latents: the speed of exact enumeration, and the gradient variance of estimators.

Table 1: speed of exact enumeration (a mixture of Bernoullis)
--------------------------------------------------------------
A mixture of K Bernoulli distributions over 784 binary pixels (K = 2, 10, 50), trained by
Adam on its exact marginal likelihood, loss = -mean_b log p(x_b) with
log p(x) = logsumexp_k (log softmax(mixing logits)_k + log p(x | k)). Parameters: mixing
logits [K] and component logits [K, 784]. Contestants, each training its own copy of the
same initial parameters (``MixtureModule`` seeded, then ``init_from_data(method="kmeans")``)
with its own ``torch.optim.Adam(lr=1e-2)`` on the same batches:

- ``elbokit``: ``loss = -bounds.exact_log_likelihood(module, x).mean()`` with
  ``module = MixtureModule(MixtureConfig(dim=784, n_components=K))``: elbokit's generic
  enumeration path (``support`` -> ``prior().log_prob`` + ``bounds.likelihood_table`` ->
  ``MixtureModule.likelihood_table`` -> ``Bernoulli.log_prob_table``, one matrix product).
- ``elbokit Trainer``: what ``elbokit fit --model mixture --fit gradient`` runs: elbokit's
  ``Trainer`` with the ``enumerate`` estimator (the exact ELBO, whose gradient is that of
  log p(x) since the mixture's posterior is exact) and elbokit's Adam, its finiteness check
  and metric sums; each window is one more epoch of ``Trainer.fit`` on the window's batches
  (the per-epoch work, a snapshot for rollback and the epoch's record, is included; no
  validation, nothing written). ``--no-trainer`` drops it.
- ``elbokit log_marginal`` (diagnostic, ``--no-log-marginal`` drops it): the module's own
  ``-module.log_marginal(x).mean()`` (the same matrix product, without the generic path), so
  the difference between the two rows is the cost of the generic path.
- ``pyro``: a model with ``pyro.sample("z", Categorical(logits=mixing), infer={"enumerate":
  "parallel"})`` in a ``pyro.plate`` over the batch and ``pyro.sample("x", Bernoulli(logits=
  components[z]).to_event(1), obs=x)``, an empty guide, and ``loss = TraceEnum_ELBO(
  max_plate_nesting=1).differentiable_loss(model, guide, x, mixing, components) / B``
  (= -mean log p(x), since the guide is empty), on plain leaf tensors (no param store).
  Pyro's argument validation is switched off (as elbokit's ``validate_args=False``).
  ``--pyro-jit`` adds ``JitTraceEnum_ELBO`` as a further contestant.
- ``hand``: log p(x | k) = x @ log sigmoid(theta)^T + (1 - x) @ log sigmoid(-theta)^T,
  then ``logsumexp`` with ``log_softmax`` weights.

First a check on one batch at the initial parameters: the loss of every contestant, the max
|difference| between any two and against a float64 reference (the hand formula in float64),
and the max |difference| of their gradients. Then the timing: data are the first
``--n-train`` binarized MNIST training images (``../shared/data/binarized_mnist/
binarized_mnist.npz`` relative to the repo root, key ``x_train``; random Bernoulli(0.2)
data with a loud warning if the file is missing), in batches of ``--batch-size`` (256) from
a seeded permutation, the same batch sequence for every contestant. A training step is
``zero_grad``, loss, ``backward``, ``step``. The machine is shared and noisy, so the
contestants run in interleaved windows (order rotated every round: A B C, B C A, C A B, ...)
after ``--warmup-steps`` untimed steps each; each contestant's steps per window are set from
its warm-up speed so that a window lasts about ``--window-seconds``. Reported per contestant:
the median examples/s over ``--windows`` windows, the min..max, the median step time, and
the elbokit/contestant ratio of medians and the median of per-round ratios (windows of one
round ran next to each other, so slow drifts of the machine cancel). Aims: elbokit >= 5x
Pyro at K = 10 and >= 15x at K = 50.

Also reported, from ``getrusage`` around each window: ``sys %``, the kernel CPU time (summed
over threads, so it can pass 100 with ``--threads 2``) over the wall time, and
``faults/step``, minor page faults per step. Pyro's enumeration materializes [K, B, 784]
tensors (40 MB at K = 50, B = 256); glibc's malloc serves blocks that large with a fresh
``mmap`` each time, so every step page-faults them in again and the kernel zero-fills them.
That kernel time is part of Pyro's cost here, but it varies between runs and machines
(``MALLOC_MMAP_THRESHOLD_`` removes it), hence the columns.

Table 2: gradient variance of the estimators (a discrete VAE)
-------------------------------------------------------------
``VAEModule(VAEConfig(dim=64, latent_dim=8, latent="bernoulli", hidden=(64,)))`` (2^8 = 256
values of z) on scikit-learn's digits binarized (``elbokit.data.load("digits")``), trained
first by ``elbokit.VAE(..., estimator="enumerate")`` for ``--vae-epochs`` epochs (30; after 5
the KL is ~0.1 nats: z is hardly used, so the encoder's gradient would be ~0 and the
comparison moot). For a fixed batch of ``--grad-batch`` (64) examples drawn with a fixed
seed, the gradient of the training objective ``surrogate.mean()`` with respect to the model's
parameters (encoder and decoder; a learned baseline's own parameters are left out) is taken:

- exactly, by ``estimators.Enumerate()`` (a sum over all 256 values of z: its variance is 0
  by construction; three repeated evaluations confirm it), and
- ``--draws`` (500) times by each sampling estimator: ``Reinforce`` with baseline none, mean,
  learned, both; ``VIMCO(k=5)``; ``Gumbel`` and its straight-through variant at fixed
  temperatures 1.0 and 0.5 (``min_temperature`` = temperature, no annealing).

Baselines are prepared first, with the model frozen: the moving average (``mean``, ``both``)
and the learned baseline network (``learned``, ``both``; Adam, lr 1e-2) are fitted for
``--baseline-steps`` (1000) steps on random training batches of the same size (after 300
steps, as in the tests, the network alone is no better than the moving average; its variance
levels off by about 1000); then every estimator is put in eval mode, so the moving average
stays fixed and the draws are i.i.d.

Reported per estimator: the total variance (sum over parameters of the per-parameter sample
variance), relative to REINFORCE without a baseline, and its split between the encoder's and
the decoder's parameters; the squared bias estimate
||mean - exact||^2 - sum(var)/n (unbiased for ||bias||^2), with its noise level
sqrt(2 tr(Sigma^2)) / n (its standard deviation when the bias is 0, Gaussian approximation,
tr(Sigma^2) from the draws' Gram matrix) and relative to ||exact||^2; and the wall time per
estimate (forward, backward, gradient copy), whose product with the variance compares
estimators at equal compute. VIMCO's target is the gradient of IWAE_5, not of the ELBO, so
its bias against the ELBO gradient is expected; the Gumbel relaxations are biased by design.

Usage::

    .venv/bin/python benchmarks/discrete.py [--windows 15] [--window-seconds 0.4]
        [--components 2 10 50] [--batch-size 256] [--n-train 10000] [--draws 500]
        [--threads 1] [--pyro-jit] [--skip-speed] [--skip-variance] [--json FILE]
"""

from __future__ import annotations

import argparse
import math
import platform
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from _common import DEFAULT_DATA, finish, load_binarized_mnist  # noqa: E402

from elbokit import VAE, bounds, data, estimators  # noqa: E402
from elbokit.models.mixture import MixtureConfig, MixtureModule, init_from_data  # noqa: E402
from elbokit.training import TrainConfig, Trainer  # noqa: E402

try:
    import pyro
    import pyro.distributions as pdist
    from pyro.infer import JitTraceEnum_ELBO, TraceEnum_ELBO
except ImportError:  # pragma: no cover - reported in the output
    pyro = None

DIM, LR, SEED = 784, 1e-2, 0
Step = Callable[[torch.Tensor], torch.Tensor]


# -- data ------------------------------------------------------------------------------------
# -- table 1: the contestants ----------------------------------------------------------------
def hand_log_marginal(x: torch.Tensor, mixing: torch.Tensor, components: torch.Tensor) -> torch.Tensor:
    """log p(x) of a Bernoulli mixture by hand: ``x: [B, D]`` -> ``[B]``."""
    table = x @ F.logsigmoid(components).T + (1 - x) @ F.logsigmoid(-components).T  # [B, K]
    return torch.logsumexp(table + mixing.log_softmax(-1), dim=-1)


def pyro_model(x: torch.Tensor, mixing: torch.Tensor, components: torch.Tensor) -> None:
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", pdist.Categorical(logits=mixing), infer={"enumerate": "parallel"})
        pyro.sample("x", pdist.Bernoulli(logits=components[z]).to_event(1), obs=x)


def pyro_guide(x: torch.Tensor, mixing: torch.Tensor, components: torch.Tensor) -> None:
    """Empty: z is enumerated in the model, so the loss is -log p(x)."""


@dataclass
class Contestant:
    """One way of computing the loss, training its own parameters with its own Adam."""

    name: str
    loss: Step  # batch -> scalar loss (-mean log p(x))
    params: list[torch.Tensor]
    optimizer: torch.optim.Optimizer = field(init=False)
    cursor: int = 0
    steps_per_window: int = 1
    seconds: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    system_seconds: list[float] = field(default_factory=list)  # kernel CPU time per window
    page_faults: list[int] = field(default_factory=list)  # minor page faults per window

    def __post_init__(self) -> None:
        self.optimizer = torch.optim.Adam(self.params, lr=LR)

    def gradient(self, x: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
        """(loss, gradients) at the current parameters, without a step."""
        for p in self.params:
            p.grad = None
        loss = self.loss(x)
        loss.backward()
        grads = [p.grad.detach().clone() for p in self.params]
        for p in self.params:
            p.grad = None
        return float(loss.detach()), grads

    def train(self, batches: list[torch.Tensor], n: int) -> float:
        """``n`` training steps on the next batches; returns the last loss."""
        total = torch.zeros(())
        for _ in range(n):
            batch = batches[self.cursor % len(batches)]
            self.cursor += 1
            loss = self.loss(batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.detach()
        return float(total) / n

    def window(self, batches: list[torch.Tensor]) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        began = time.perf_counter()
        loss = self.train(batches, self.steps_per_window)
        self.seconds.append(time.perf_counter() - began)
        after = resource.getrusage(resource.RUSAGE_SELF)
        self.system_seconds.append(after.ru_stime - usage.ru_stime)
        self.page_faults.append(after.ru_minflt - usage.ru_minflt)
        self.steps.append(self.steps_per_window)
        self.losses.append(loss)


@dataclass
class TrainerContestant(Contestant):
    """elbokit's Trainer (``elbokit fit``'s loop): each call trains one more epoch on the
    next ``n`` batches (the Trainer shuffles them within the epoch)."""

    trainer: Trainer | None = None
    flat: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.optimizer = self.trainer.optimizer

    def gradient(self, x: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
        self.trainer.optimizer.zero_grad(set_to_none=True)
        loss = -self.trainer.objective(self.trainer.model, x).surrogate.mean()
        loss.backward()
        grads = [p.grad.detach().clone() for p in self.params]
        self.trainer.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach()), grads

    def train(self, batches: list[torch.Tensor], n: int) -> float:
        # A view of the batches laid end to end (repeated as often as a window needs): no
        # copy per window, whose fresh pages would be the Trainer's cost in the fault column.
        start = self.cursor % len(batches)
        size = len(batches[0])
        if self.flat is None or len(self.flat) < (start + n) * size:
            self.flat = torch.cat(batches * (1 + (start + n) // len(batches)))
        x = self.flat[start * size:(start + n) * size]
        self.cursor += n
        self.trainer.config.epochs = self.trainer.state["epoch"] + 1
        record = self.trainer.fit(x)[-1]
        return -record["train"]["elbo"]


def make_contestants(module: MixtureModule, with_log_marginal: bool, pyro_jit: bool,
                     with_trainer: bool = True, batch_size: int = 256) -> list[Contestant]:
    """elbokit (generic path) first; the others train copies of the module's parameters."""
    def copies() -> tuple[torch.Tensor, torch.Tensor]:
        return (module.mixing_logits.detach().clone().requires_grad_(),
                module.component_params.detach().clone().requires_grad_())

    contestants = [Contestant("elbokit", lambda x: -bounds.exact_log_likelihood(module, x).mean(),
                              list(module.parameters()))]
    if with_trainer:
        model = MixtureModule(MixtureConfig(dim=module.config.dim, n_components=module.n_components,
                                            likelihood=dict(module.config.likelihood)))
        model.load_state_dict(module.state_dict())
        config = TrainConfig(epochs=1, batch_size=batch_size, lr=LR, estimator="enumerate",
                             seed=SEED)
        contestants.append(TrainerContestant("elbokit Trainer", None, list(model.parameters()),
                                             trainer=Trainer(model, config)))
    if with_log_marginal:
        twin = MixtureModule(MixtureConfig(dim=module.config.dim, n_components=module.n_components,
                                           likelihood=dict(module.config.likelihood)))
        twin.load_state_dict(module.state_dict())
        contestants.append(Contestant("elbokit log_marginal", lambda x: -twin.log_marginal(x).mean(),
                                      list(twin.parameters())))
    if pyro is not None:
        pyro.enable_validation(False)
        elbos = [("pyro", TraceEnum_ELBO(max_plate_nesting=1))]
        if pyro_jit:
            elbos.append(("pyro jit", JitTraceEnum_ELBO(max_plate_nesting=1, ignore_jit_warnings=True)))
        for name, elbo in elbos:
            mixing, components = copies()
            contestants.append(Contestant(
                name, lambda x, e=elbo, m=mixing, c=components:
                e.differentiable_loss(pyro_model, pyro_guide, x, m, c) / x.shape[0], [mixing, components]))
    mixing, components = copies()
    contestants.append(Contestant("hand", lambda x: -hand_log_marginal(x, mixing, components).mean(),
                                  [mixing, components]))
    return contestants


def check_same_loss(contestants: list[Contestant], module: MixtureModule, x: torch.Tensor) -> dict:
    """Losses and gradients of every contestant on one batch at the shared initial parameters,
    and a float64 reference loss."""
    with torch.no_grad():
        reference = -float(hand_log_marginal(x.double(), module.mixing_logits.double(),
                                             module.component_params.double()).mean())
        per_example_64 = hand_log_marginal(x.double(), module.mixing_logits.double(),
                                           module.component_params.double())
        per_example = {"elbokit": bounds.exact_log_likelihood(module, x),
                       "hand": hand_log_marginal(x, module.mixing_logits, module.component_params)}
    results = {c.name: c.gradient(x) for c in contestants}
    losses = {name: loss for name, (loss, _) in results.items()}
    names = list(results)
    pairs = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            grad_diff = max(float((ga - gb).abs().max()) for ga, gb in zip(results[a][1], results[b][1],
                                                                           strict=True))
            pairs[f"{a} vs {b}"] = {"loss": abs(losses[a] - losses[b]), "grad": grad_diff}
    return {
        "losses": losses,
        "float64_reference_loss": reference,
        "vs_float64": {name: abs(loss - reference) for name, loss in losses.items()},
        "per_example_max_abs_vs_float64": {name: float((v.double() - per_example_64).abs().max())
                                           for name, v in per_example.items()},
        "pairs": pairs,
        "max_abs_loss_diff": max(p["loss"] for p in pairs.values()),
        "max_abs_grad_diff": max(p["grad"] for p in pairs.values()),
    }


def speed_for(k: int, x: torch.Tensor, args: argparse.Namespace) -> dict:
    """Check and time every contestant for a K-component mixture (see the module docstring)."""
    torch.manual_seed(SEED)
    module = MixtureModule(MixtureConfig(dim=DIM, n_components=k, likelihood={"name": "bernoulli"}))
    init_from_data(module, x, seed=SEED, method="kmeans")
    contestants = make_contestants(module, args.log_marginal, args.pyro_jit, args.trainer,
                                   args.batch_size)
    check = check_same_loss(contestants, module, x[:args.batch_size])

    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SEED))
    batches = [x[idx] for idx in order.split(args.batch_size) if len(idx) == args.batch_size]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the JIT's tracer warnings, when --pyro-jit
        for c in contestants:  # warm up, and size the windows from the warm-up speed
            c.train(batches, max(1, args.warmup_steps // 2))
            began = time.perf_counter()
            c.train(batches, max(1, args.warmup_steps - args.warmup_steps // 2))
            per_step = (time.perf_counter() - began) / max(1, args.warmup_steps - args.warmup_steps // 2)
            c.steps_per_window = max(1, round(args.window_seconds / per_step))
        for i in range(args.windows):
            shift = i % len(contestants)
            for c in contestants[shift:] + contestants[:shift]:
                c.window(batches)

    rates = {c.name: [s * args.batch_size / t for s, t in zip(c.steps, c.seconds, strict=True)]
             for c in contestants}
    medians = {name: statistics.median(r) for name, r in rates.items()}
    ours = contestants[0].name
    out: dict = {"k": k, "check": check, "contestants": {}}
    for c in contestants:
        pair = [a / b for a, b in zip(rates[ours], rates[c.name], strict=True)]
        out["contestants"][c.name] = {
            "median_examples_per_s": medians[c.name],
            "min_examples_per_s": min(rates[c.name]),
            "max_examples_per_s": max(rates[c.name]),
            "median_step_ms": 1e3 * args.batch_size / medians[c.name],
            "steps_per_window": c.steps_per_window,
            "window_seconds": c.seconds,
            "elbokit_over_this_ratio_of_medians": medians[ours] / medians[c.name],
            "elbokit_over_this_median_pair_ratio": statistics.median(pair),
            "pair_ratios": pair,
            "last_window_mean_loss": c.losses[-1],
            "kernel_time_share": sum(c.system_seconds) / sum(c.seconds),
            "minor_page_faults_per_step": sum(c.page_faults) / sum(c.steps),
        }
    return out


def print_speed(results: list[dict], args: argparse.Namespace, data_note: str) -> None:
    print("Table 1: exact enumeration, mixture of K Bernoullis over 784 pixels, loss -mean log p(x), "
          f"Adam lr {LR}")
    print(f"data: {data_note}; batch {args.batch_size}; {args.windows} windows of ~{args.window_seconds} s "
          f"per contestant, rotated order, after {args.warmup_steps} warm-up steps")
    print("elbokit = -bounds.exact_log_likelihood(module, x).mean() (generic path: support -> "
          "prior.log_prob + likelihood_table -> Bernoulli.log_prob_table)")
    if pyro is None:
        print("NOTE: pyro is not installed; pip install 'pyro-ppl>=1.9' for the Pyro contestant")
    print()
    print("same-loss check on one batch at the initial (k-means) parameters:")
    for r in results:
        check = r["check"]
        vs64 = ", ".join(f"{name} {diff:.1e}" for name, diff in check["vs_float64"].items())
        print(f"  K={r['k']:<3} loss {check['float64_reference_loss']:.4f} (float64); max |loss diff| "
              f"between contestants {check['max_abs_loss_diff']:.1e}, max |grad diff| "
              f"{check['max_abs_grad_diff']:.1e}; |loss - float64|: {vs64}")
    print()
    header = (f"{'K':>3}  {'contestant':<22}{'median ex/s':>13}{'min..max ex/s':>21}{'step ms':>10}"
              f"{'elbokit/this':>14}{'pair median':>13}{'sys %':>7}{'faults/step':>13}")
    print(header)
    print("-" * len(header))
    for r in results:
        for name, c in r["contestants"].items():
            spread = f"{c['min_examples_per_s']:.0f}..{c['max_examples_per_s']:.0f}"
            print(f"{r['k']:>3}  {name:<22}{c['median_examples_per_s']:>13.0f}{spread:>21}"
                  f"{c['median_step_ms']:>10.3f}{c['elbokit_over_this_ratio_of_medians']:>14.2f}"
                  f"{c['elbokit_over_this_median_pair_ratio']:>13.2f}{100 * c['kernel_time_share']:>7.0f}"
                  f"{c['minor_page_faults_per_step']:>13.0f}")
        print()
    aims = {10: 5.0, 50: 15.0}
    for r in results:
        rows = r["contestants"]
        pyro_row = rows.get("pyro")
        if r["k"] in aims and pyro_row is not None:
            ratio = pyro_row["elbokit_over_this_ratio_of_medians"]
            verdict = "met" if ratio >= aims[r["k"]] else "NOT met"
            line = f"aim at K={r['k']}: elbokit >= {aims[r['k']]:.0f}x Pyro: {ratio:.1f}x, {verdict}"
            trainer = rows.get("elbokit Trainer")
            if trainer is not None:  # what elbokit fit runs, against Pyro in the same rounds
                pairs = [p / t for t, p in zip(trainer["pair_ratios"], pyro_row["pair_ratios"],
                                               strict=True)]  # (e/p) / (e/t) = t/p, per round
                ratio = trainer["median_examples_per_s"] / pyro_row["median_examples_per_s"]
                verdict = "met" if ratio >= aims[r["k"]] else "NOT met"
                line += (f"; elbokit Trainer (elbokit fit's loop): {ratio:.1f}x (round median "
                         f"{statistics.median(pairs):.1f}x), {verdict}")
            print(line)


# -- table 2: gradient variance ----------------------------------------------------------------
def flat_grad(model: torch.nn.Module, value: torch.Tensor) -> torch.Tensor:
    """d value / d (model parameters), flattened: ``[P]``."""
    params = list(model.parameters())
    grads = torch.autograd.grad(value, params, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for p, g in zip(params, grads,
                                                                                         strict=True)])


def estimator_zoo(dim: int) -> list[tuple[str, estimators.Estimator, str]]:
    zoo: list[tuple[str, estimators.Estimator, str]] = [
        (f"reinforce {b}", estimators.Reinforce(dim, baseline=b), "unbiased")
        for b in ("none", "mean", "learned", "both")
    ]
    zoo.append(("vimco k=5", estimators.VIMCO(k=5), "targets grad IWAE_5"))
    for straight in (False, True):
        for tau in (1.0, 0.5):
            name = f"gumbel{'-st' if straight else ''} tau={tau}"
            zoo.append((name, estimators.Gumbel(temperature=tau, min_temperature=tau, anneal_rate=0.0,
                                                straight_through=straight), "biased (relaxation)"))
    return zoo


def prepare_baseline(estimator: estimators.Estimator, model: torch.nn.Module, x_train: torch.Tensor,
                     batch: int, steps: int) -> None:
    """Fit a REINFORCE baseline (moving average and/or network) with the model frozen."""
    if not isinstance(estimator, estimators.Reinforce) or estimator.baseline == "none":
        return
    generator = torch.Generator().manual_seed(SEED + 1)
    optimizer = (torch.optim.Adam(estimator.net.parameters(), lr=1e-2)
                 if estimator.net is not None else None)
    estimator.train()
    for _ in range(steps):
        xb = x_train[torch.randint(len(x_train), (batch,), generator=generator)]
        surrogate = estimator(model, xb).surrogate.sum()
        if optimizer is not None:
            optimizer.zero_grad()
            (-surrogate).backward(inputs=list(estimator.net.parameters()))
            optimizer.step()


def draw_gradients(estimator: estimators.Estimator, model: torch.nn.Module, x: torch.Tensor,
                   n: int) -> tuple[torch.Tensor, float]:
    """``n`` gradient estimates ``[n, P]`` and the wall seconds per estimate."""
    estimator.eval()
    out = []
    began = time.perf_counter()
    for _ in range(n):
        out.append(flat_grad(model, estimator(model, x).surrogate.mean()))
    return torch.stack(out), (time.perf_counter() - began) / n


def gradient_stats(draws: torch.Tensor, exact: torch.Tensor, groups: dict[str, torch.Tensor]) -> dict:
    """Total variance, squared-bias estimate and its noise level, from ``draws: [n, P]``;
    variance and squared bias also per parameter group (``groups``: name -> boolean mask [P])."""
    d = draws.double()
    n = len(d)
    centred = d - d.mean(0)
    per_parameter = centred.square().sum(0) / (n - 1)
    variance = float(per_parameter.sum())
    gram = centred @ centred.T  # [n, n]: tr(Sigma^2) = ||C C^T||_F^2 / (n - 1)^2
    trace_sigma2 = float(gram.square().sum()) / (n - 1) ** 2
    error = (d.mean(0) - exact.double()).square() - per_parameter / n
    return {"total_variance": variance, "squared_bias": float(error.sum()),
            "squared_bias_noise": math.sqrt(2 * trace_sigma2) / n,
            "variance_by_group": {g: float(per_parameter[m].sum()) for g, m in groups.items()},
            "squared_bias_by_group": {g: float(error[m].sum()) for g, m in groups.items()}}


def variance_table(args: argparse.Namespace) -> dict:
    digits = data.load("digits").x.astype(np.float32)
    vae = VAE(latent="bernoulli:8", hidden=(64,), likelihood="bernoulli", estimator="enumerate",
              epochs=args.vae_epochs, lr=3e-3, batch_size=128, val_fraction=0.0, patience=None, seed=SEED)
    began = time.perf_counter()
    vae.fit(digits)
    train_seconds = time.perf_counter() - began
    model = vae.module_
    for p in model.parameters():
        p.requires_grad_(True)
    x_all = torch.from_numpy(digits)
    pick = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(SEED + 2))[:args.grad_batch]
    x = x_all[pick]
    n_params = sum(p.numel() for p in model.parameters())
    # Encoder (q's parameters, where the estimators differ) and decoder, in flat_grad's order.
    prefixes = [name.split(".")[0] for name, p in model.named_parameters() for _ in range(p.numel())]
    groups = {g: torch.tensor([prefix == g for prefix in prefixes]) for g in ("encoder", "decoder")}

    enumerate_ = estimators.Enumerate()
    began = time.perf_counter()
    repeats = torch.stack([flat_grad(model, enumerate_(model, x).surrogate.mean()) for _ in range(3)])
    exact_seconds = (time.perf_counter() - began) / 3
    exact = repeats[0]
    rows = {"enumerate (exact)": {"total_variance": float(repeats.double().var(0).sum()), "squared_bias": 0.0,
                                  "squared_bias_noise": 0.0, "seconds_per_estimate": exact_seconds,
                                  "variance_by_group": dict.fromkeys(groups, 0.0),
                                  "note": "exact: variance 0 by construction"}}
    torch.manual_seed(SEED + 3)
    for name, estimator, note in estimator_zoo(model.config.dim):
        prepare_baseline(estimator, model, x_all, args.grad_batch, args.baseline_steps)
        draws, seconds = draw_gradients(estimator, model, x, args.draws)
        rows[name] = gradient_stats(draws, exact, groups) | {"seconds_per_estimate": seconds, "note": note}
    reference = rows["reinforce none"]["total_variance"]
    exact_sq = float(exact.double().square().sum())
    for row in rows.values():
        row["relative_variance"] = row["total_variance"] / reference
        row["relative_squared_bias"] = row["squared_bias"] / exact_sq
        row["variance_x_ms"] = row["total_variance"] * 1e3 * row["seconds_per_estimate"]
    history = vae.history_[-1]["train"]
    return {"model": "VAEModule(VAEConfig(dim=64, latent_dim=8, latent='bernoulli', hidden=(64,), "
                     "likelihood={'name': 'bernoulli'}))",
            "data": "sklearn digits binarized at 8/16 (elbokit.data.load('digits')), 1797 x 64",
            "vae_epochs": args.vae_epochs, "vae_train_seconds": train_seconds,
            "trained_elbo": history["elbo"], "trained_kl": history["kl"],
            "n_parameters": n_params, "grad_batch": args.grad_batch, "draws": args.draws,
            "baseline_steps": args.baseline_steps, "exact_gradient_norm_sq": exact_sq, "rows": rows}


def print_variance(result: dict) -> None:
    print(f"Table 2: gradient estimators on {result['model']}")
    print(f"data: {result['data']}; trained {result['vae_epochs']} epochs by enumeration "
          f"({result['vae_train_seconds']:.1f} s): ELBO {result['trained_elbo']:.2f}, KL "
          f"{result['trained_kl']:.2f} nats")
    print(f"gradient of surrogate.mean() over a fixed batch of {result['grad_batch']} w.r.t. the "
          f"{result['n_parameters']} model parameters; {result['draws']} draws per estimator; "
          f"||exact grad||^2 = {result['exact_gradient_norm_sq']:.4g}")
    print("bias^2 = ||mean - exact||^2 - sum(var)/n, +- its noise level (sd if unbiased); "
          "vs the exact ELBO gradient")
    print()
    header = (f"{'estimator':<20}{'total var':>12}{'rel. var':>10}{'enc var':>10}{'dec var':>10}"
              f"{'bias^2':>12}{'+-':>10}{'bias^2/|g|^2':>14}{'ms/est':>9}{'var x ms':>11}  note")
    print(header)
    print("-" * (len(header) + 22))
    for name, r in result["rows"].items():
        groups = r["variance_by_group"]
        print(f"{name:<20}{r['total_variance']:>12.4g}{r['relative_variance']:>10.4f}"
              f"{groups['encoder']:>10.4g}{groups['decoder']:>10.4g}{r['squared_bias']:>12.4g}{r['squared_bias_noise']:>10.2g}"
              f"{r['relative_squared_bias']:>14.4f}{1e3 * r['seconds_per_estimate']:>9.2f}"
              f"{r['variance_x_ms']:>11.4g}  {r['note']}")


# -- main ------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--data", type=Path, default=DEFAULT_DATA, help="binarized MNIST .npz")
    add("--n-train", type=int, default=10_000, help="MNIST training examples (default 10000)")
    add("--components", type=int, nargs="+", default=[2, 10, 50], help="values of K (default 2 10 50)")
    add("--batch-size", type=int, default=256, help="table 1 batch size (default 256)")
    add("--windows", type=int, default=15, help="timed windows per contestant and K (default 15)")
    add("--window-seconds", type=float, default=0.4, help="target length of a window (default 0.4)")
    add("--warmup-steps", type=int, default=6, help="untimed steps per contestant and K (default 6)")
    add("--no-log-marginal", dest="log_marginal", action="store_false",
        help="drop the 'elbokit log_marginal' diagnostic row")
    add("--no-trainer", dest="trainer", action="store_false",
        help="drop the 'elbokit Trainer' row (elbokit fit's training loop)")
    add("--pyro-jit", action="store_true", help="add Pyro's JitTraceEnum_ELBO as a contestant")
    add("--vae-epochs", type=int, default=30, help="table 2: epochs of training first (default 30)")
    add("--grad-batch", type=int, default=64, help="table 2: examples in the fixed batch (default 64)")
    add("--draws", type=int, default=500, help="table 2: gradient estimates per estimator (default 500)")
    add("--baseline-steps", type=int, default=1000, help="table 2: baseline fitting steps (default 1000)")
    add("--threads", type=int, default=1,
        help="torch.set_num_threads (default 1: on a shared 2-core machine a second OpenMP thread "
             "stalls small ops whenever the other core is busy; 0 = leave torch's default)")
    add("--skip-speed", action="store_true", help="skip table 1")
    add("--skip-variance", action="store_true", help="skip table 2")
    add("--json", type=Path, default=None, help="also write all numbers here as JSON")
    args = parser.parse_args(argv)
    for name in ("n_train", "batch_size", "windows", "warmup_steps", "vae_epochs", "grad_batch",
                 "baseline_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.draws < 2:
        parser.error("--draws must be >= 2")
    if not args.window_seconds > 0:
        parser.error("--window-seconds must be > 0")
    if any(k < 1 for k in args.components):
        parser.error("--components must be >= 1")
    if args.threads < 0:
        parser.error("--threads must be >= 0")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    result: dict = {
        "torch": torch.__version__,
        "pyro": getattr(pyro, "__version__", None),
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    print(f"elbokit discrete-latent benchmark: torch {result['torch']}, pyro {result['pyro']}, "
          f"{result['threads']} thread(s) ({result['interop_threads']} inter-op), "
          f"python {result['python']}")
    print()
    if not args.skip_speed:
        began = time.perf_counter()
        x, data_note = load_binarized_mnist(args.data, args.n_train)
        speed = [speed_for(k, x, args) for k in args.components]
        print_speed(speed, args, data_note)
        result["speed"] = {"data": data_note, "batch_size": args.batch_size, "results": speed,
                           "seconds": time.perf_counter() - began}
        print(f"(table 1: {result['speed']['seconds']:.1f} s)")
        print()
    if not args.skip_variance:
        began = time.perf_counter()
        variance = variance_table(args)
        variance["seconds"] = time.perf_counter() - began
        print_variance(variance)
        print(f"(table 2: {variance['seconds']:.1f} s)")
        result["variance"] = variance
        print()
    result["total_seconds"] = time.perf_counter() - started
    return finish(result, args.json)


if __name__ == "__main__":
    main()
