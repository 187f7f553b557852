"""The training loop: seeded mini-batches, Adam, validation, early stopping, checkpoints.

The trainer takes a bound (an objective returning :class:`~elbokit.bounds.Terms`), not a
model type, and the objective says how it is scored (``validation_terms``, ``score``: see
:class:`~elbokit.estimators.Estimator`); the trainer never looks inside either. One loop
(:class:`Trainer`) runs one step, the same in one process and under several
(:class:`OneProcess`, :class:`DataParallel`: the few things that differ); what is not the
loop is a small part it calls, each testable alone: :class:`EarlyStopping` (best score,
plateau learning-rate schedule, patience), the schedules (:class:`KLWarmup`),
:class:`NaNGuard` (roll back or stop), :class:`MetricsLog`, :class:`Progress`,
:class:`Interrupts` (Ctrl-C); checkpointing is the trainer's, which owns the state.

Hot path: batches are index slices of one in-memory tensor, metrics accumulate on the device
and are read back once per epoch (and every ``log_every`` steps for the progress bar), so no
per-example Python work and no per-step host sync. Data larger than
memory comes as a :class:`~elbokit.data.NpyStream` instead of the tensor: the same loop takes
its chunk-shuffled batches (:meth:`Trainer._batches` is the one place the two differ).

Determinism: the batch order of epoch ``e`` is a permutation drawn from a generator seeded
by ``(seed, e)``, and the torch RNG state (the posterior samples) is part of every
checkpoint, so a resumed run is bit-for-bit the run that was never interrupted (CPU, same
thread count).

Devices: the trainer runs where the model's parameters are (the caller moves the model and
the data); the objective follows the model. On CUDA the checkpoint also holds the CUDA RNG
state. ``compile=True`` runs the training step's ``objective(model, batch)`` through
``torch.compile`` (inductor's ``fallback_random``: the same random draws as eager).

Several processes (``torchrun``, see :mod:`elbokit.distributed`): when a process group with
more than one rank exists, the same loop runs data-parallel. Every rank holds all the data;
each step's global batch is the one a single process would take, rank r computes its
contiguous slice of it, the gradients are summed over the ranks (the losses are scaled so the
sum is the gradient of the global-batch mean), and every rank takes the same Adam step.
Validation is split over the ranks and its sums all-reduced, so every rank sees the same
numbers and makes the same early-stopping decision. Rank r draws its posterior samples from
its own stream, seeded by (seed, r) (:func:`elbokit.distributed.rank_seed`), and every rank's
RNG state is checkpointed: resumed with the same number of processes, a run continues bit for
bit (CPU, gloo, same thread count); with another number, weights, optimizer, counters and batch
order continue exactly and each rank re-seeds from (seed, rank, epoch) (with a warning). Only
rank 0 writes files and calls ``on_improve``. One limitation: ``free_bits`` clamps the KL of
the *rank's* slice (a batch statistic), so with it N processes follow a slightly different
objective than one process on the same global batch.

Numerical faults: after every ``backward`` one fused kernel (torch's AMP check) looks for
NaN and infinities in the running sums of the loss's terms (reconstruction, KL) and in every
gradient (where any other NaN of the loss ends up), before ``optimizer.step``, so the weights
never take a non-finite step. On the CPU its flag is read at once, through a numpy view (no
call into torch); the check costs one pass over the gradients: measured 1.5-2% of a step on
the 64-64-8 digits VAE (dispatch-bound) and 2.5-4% on the 784-400-20 MNIST VAE (memory-bound)
(``benchmarks/throughput.py``). On a GPU with the fused Adam the flag stays on the device:
Adam skips a flagged step there (its ``found_inf``) and the flag is read once, at the end of
the epoch, so the fast path gains no host sync. A fault rolls model, optimizer, estimator
state and RNG back to the last good state (the start of the epoch, which is the last
checkpoint; kept in memory, one copy per epoch), halves the learning rate and runs the
epoch again: at most ``max_retries`` times per run (``on_nan="stop"``: never), each one a
warning and a ``metrics.jsonl`` record (``"event": "non-finite"``); then
:class:`NumericalError`, with the last good checkpoint untouched. A checkpoint holding NaN or
infinities is never written (:func:`~elbokit.checkpoint.save_checkpoint` refuses it).

Interruptions: in one process (the main thread) the first Ctrl-C (SIGINT) stops training at
the next step boundary: the state there is checkpointed, step and partial epoch sums included,
so the resumed run is still bit for bit the uninterrupted one, and
:class:`TrainingInterrupted` (a ``KeyboardInterrupt``) is raised. A second Ctrl-C interrupts at
once (the last checkpoint stays as it was). A killed process (SIGKILL, power loss) loses at
most the epoch in progress: checkpoints are replaced atomically (see :mod:`elbokit.checkpoint`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from tqdm.auto import tqdm

from . import bounds, distributed, estimators
from .checkpoint import (
    CheckpointWriteError,
    atomic_write,
    has_checkpoint,
    load_checkpoint,
    remove_temporaries,
    save_checkpoint,
)
from .data.stream import NpyStream, permutation
from .errors import CheckpointError, ConfigError, ElbokitError
from .optimizer import Adam
from .progress import progress_bar, shown
from .rng import seeded  # noqa: F401 (also elbokit.training.seeded)

if TYPE_CHECKING:  # for annotations only
    from types import FrameType

    from .models.base import LatentVariableModel

ON_NAN = ("rollback", "stop")
LR_SCHEDULES = ("plateau", "constant")
# An upper bound: early stopping on the (averaged, common-random-number) validation score
# normally ends a run sooner; 50 cut off a 20,000-example linear-Gaussian fit 0.02 nats short.
DEFAULT_EPOCHS = 200
VALIDATION_SEED = 0x5EED  # the validation draws: the same every epoch (common random numbers)
VALIDATION_BATCH = 1024  # examples scored at once


class NumericalError(ElbokitError):
    """Training met NaN or infinite values it could not recover from (retries exhausted, or
    ``on_nan="stop"``); the last good checkpoint is intact."""


class NumericalFaultWarning(UserWarning):
    """A NaN or infinity in the loss or gradients, rolled back (one per event)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training at a step boundary; ``where`` says where, ``checkpointed``
    whether that state was saved (a run directory)."""

    def __init__(self, where: str, checkpointed: bool) -> None:
        super().__init__(where)
        self.where = where
        self.checkpointed = checkpointed


KL_MODES = ("auto", "analytic", "mc")


def option(default: Any, help: str | Callable[[], str], parse: str | None = None,
           metavar: str | None = None,
           choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None,
           flag: str | None = None) -> Any:
    """A dataclass field with its command-line flag, declared beside it (the fields of
    :class:`TrainConfig`, and the model options of the facades, :class:`elbokit.api.VAEOptions`
    and :class:`elbokit.api.MixtureOptions`): ``elbokit fit --NAME-WITH-DASHES`` (built by
    :func:`elbokit.cli.fit.add_options`; ``flag``: another NAME than the field's, e.g.
    ``--components`` for ``n_components``), its ``help`` text, ``metavar`` and ``choices`` (a
    function, for either: computed when the parser is built, e.g. the estimators registered by
    then), and ``parse``, the name of the argument type that checks a value on the command
    line (:data:`elbokit.cli.common.PARSERS`; named, not imported: the types speak argparse,
    which the training layer does not). The facades' parameters take their defaults from the
    same fields, and a run's config.json records them by name."""
    return field(default=default, metadata={"cli": {"help": help, "parse": parse,
                                                    "metavar": metavar, "choices": choices,
                                                    "flag": flag}})


def check_run_dir(run_dir: str | Path | None, resume: bool) -> Path | None:
    """``run_dir`` as a path (None: no run directory), refused with a one-line
    :class:`~elbokit.errors.ConfigError` when it already holds a training checkpoint and
    ``resume`` is false: a fit never overwrites a run it could continue. The rule of every
    ``fit(..., run_dir, resume)``; call it before changing anything."""
    if run_dir is None:
        return None
    if not resume and has_checkpoint(run_dir):
        raise ConfigError(f"{run_dir}: already holds a training checkpoint; pass "
                          "resume=True to continue it, or use another directory")
    return Path(run_dir)


@dataclass
class TrainConfig:
    """How to optimize. ``iwae_k`` set: maximize IWAE_k instead of the (beta-)ELBO.

    Each field declares its command-line flag (:func:`option`); the fields are in the order
    ``elbokit fit --help`` lists them."""

    epochs: int = option(
        DEFAULT_EPOCHS, parse="positive_int",
        help=f"maximum epochs (default {DEFAULT_EPOCHS}; early stopping usually ends a run "
        "sooner); with --resume: extend the run to N in all (at least the epochs it has "
        "trained; as many: nothing is trained, the run is finalized again) or, omitted, the "
        "run's own")
    batch_size: int = option(128, parse="positive_int",
                             help="examples per gradient step (default 128)")
    lr: float = option(1e-3, parse="positive_float",
                       help="Adam learning rate (default: 1e-2 for a VAE whose encoder and decoder "
                       "are linear and for a mixture's gradient fit, else 1e-3)")
    beta: float = option(1.0, parse="nonnegative_float",
                         help="weight of the KL term in the objective; the reported ELBO uses 1 "
                         "(default 1)")
    kl_warmup: int = option(0, parse="nonnegative_int", metavar="EPOCHS",
                            help="raise the KL weight linearly from 0 to --beta over the first "
                            "EPOCHS (0)")
    free_bits: float = option(0.0, parse="nonnegative_float", metavar="NATS",
                              help="free bits: each latent dimension's first NATS of (batch-mean) "
                              "KL cost no gradient (0; reparameterized ELBO only)")
    n_samples: int = option(1, parse="positive_int",
                            help="samples of z per example for the ELBO's reconstruction term "
                            "(default 1)")
    iwae_k: int | None = option(None, parse="positive_int", metavar="K",
                                help="train on the importance-weighted bound IWAE_K instead of "
                                "the ELBO")
    kl: str = option("auto", choices=KL_MODES,
                     help="closed-form KL when registered (auto), always, or Monte Carlo")
    estimator: str = option(
        "auto", choices=estimators.names,
        help="gradient estimator; auto: reparameterize a Gaussian z, enumerate a discrete z "
        f"with <= {bounds.TRAINING_LIMIT} values, else gumbel-st (default auto)")
    temperature: float = option(1.0, parse="positive_float",
                                help="gumbel: initial temperature (1.0)")
    min_temperature: float = option(0.5, parse="positive_float",
                                    help="gumbel: temperature floor (0.5)")
    anneal_rate: float = option(1e-4, parse="nonnegative_float",
                                help="gumbel: tau = max(floor, tau0 exp(-rate * step)) (1e-4)")
    baseline: str = option("both", choices=estimators.Reinforce.baselines,
                           help="reinforce: moving-average (mean) and/or learned baseline (both)")
    patience: int | None = option(
        10, parse="positive_int",
        help="stop after N epochs without a better validation objective (0: never) (default 10)")
    lr_schedule: str = option(
        "plateau", choices=LR_SCHEDULES,
        help="plateau: multiply the learning rate by --lr-factor after --lr-patience epochs "
        "without a better validation objective (the training objective when there is no "
        "validation split); constant: never (plateau)")
    lr_patience: int = option(3, parse="positive_int", metavar="N",
                              help="epochs without improvement before the learning rate drops (3)")
    lr_factor: float = option(0.5, parse="open_unit", metavar="F",
                              help="factor of each learning-rate drop, in (0, 1) (0.5)")
    min_lr: float = option(1e-6, parse="nonnegative_float",
                           help="the learning rate never drops below this (1e-6)")
    tolerance: float = option(1e-5, parse="nonnegative_float",
                              help="an improvement counts (for --patience and --lr-patience) when "
                              "it exceeds this fraction of the best value so far (1e-5)")
    ema: float = option(0.999, parse="unit_interval", metavar="DECAY",
                        help="validate, keep and return an exponential moving average of the "
                        "weights with this decay per step (Polyak averaging; 0: the weights "
                        "themselves) (0.999)")
    seed: int = option(0, parse="seed",
                       help="seeds the split, the initial weights, the batches and the samples of "
                       "z; the same seed and options give the same run on one machine (default 0)")
    on_nan: str = option(
        "rollback", choices=ON_NAN,
        help="a NaN or infinite loss or gradient (never stepped): roll back to the last good "
        "epoch and halve the learning rate, at most --max-retries times, or stop with the last "
        "good checkpoint (rollback)")
    max_retries: int = option(5, parse="nonnegative_int", metavar="N",
                              help="rollbacks allowed per run with --on-nan rollback (5)")
    log_every: int = 20  # steps between progress-bar updates: no flag, not a training choice

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, not {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be >= 1, not {self.batch_size}"),
            (math.isfinite(self.lr) and self.lr > 0, f"learning rate must be > 0, not {self.lr}"),
            (self.n_samples >= 1, f"n-samples must be >= 1, not {self.n_samples}"),
            (math.isfinite(self.beta) and self.beta >= 0, f"beta must be >= 0, not {self.beta}"),
            (self.iwae_k is None or self.iwae_k >= 1, f"iwae-k must be >= 1, not {self.iwae_k}"),
            (self.kl in KL_MODES,
             f"kl must be analytic, mc or auto, not {self.kl!r}"),
            (self.patience is None or self.patience >= 1,
             f"patience must be >= 1, not {self.patience}"),
            (self.lr_schedule in LR_SCHEDULES,
             f"lr-schedule must be {' or '.join(LR_SCHEDULES)}, not {self.lr_schedule!r}"),
            (self.lr_patience >= 1, f"lr-patience must be >= 1, not {self.lr_patience}"),
            (0 < self.lr_factor < 1, f"lr-factor must be in (0, 1), not {self.lr_factor}"),
            (math.isfinite(self.min_lr) and self.min_lr >= 0, f"min-lr must be >= 0, not {self.min_lr}"),
            (math.isfinite(self.tolerance) and self.tolerance >= 0,
             f"tolerance must be >= 0, not {self.tolerance}"),
            (math.isfinite(self.ema) and 0 <= self.ema < 1, f"ema must be in [0, 1), not {self.ema}"),
            (self.kl_warmup >= 0, f"kl-warmup must be >= 0 epochs, not {self.kl_warmup}"),
            (math.isfinite(self.free_bits) and self.free_bits >= 0,
             f"free-bits must be >= 0 nats, not {self.free_bits}"),
            (self.on_nan in ON_NAN, f"on-nan must be rollback or stop, not {self.on_nan!r}"),
            (isinstance(self.max_retries, int) and self.max_retries >= 0,
             f"max-retries must be >= 0, not {self.max_retries}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.iwae_k is not None and (self.beta != 1.0 or self.kl_warmup or self.free_bits):
            raise ConfigError("--beta, --kl-warmup and --free-bits apply to the ELBO; the IWAE "
                              "bound has no KL term to weigh")
        if self.estimator not in estimators.names():
            raise ConfigError(f"unknown estimator {self.estimator!r}; choose from "
                              f"{', '.join(estimators.names())}")

    def objective(self, model: torch.nn.Module) -> estimators.Estimator:
        """The gradient estimator of the bound this configuration maximizes, for ``model``."""
        dim = getattr(getattr(model, "config", None), "dim", None)
        return estimators.build(self.estimator, cast("LatentVariableModel", model), dim,
                                n_samples=self.n_samples,
                                beta=self.beta, kl=self.kl, iwae_k=self.iwae_k,
                                temperature=self.temperature,
                                min_temperature=self.min_temperature,
                                anneal_rate=self.anneal_rate, baseline=self.baseline,
                                free_bits=self.free_bits)

    def beta_at(self, epoch: int, fraction: float) -> float:
        """The KL weight at ``fraction`` of the way through ``epoch`` (1-based): with
        ``kl_warmup`` = W epochs it rises linearly from 0 to ``beta`` over the first W
        epochs (one small step per batch), then stays at ``beta``."""
        if self.kl_warmup <= 0:
            return self.beta
        return self.beta * min(1.0, (epoch - 1 + fraction) / self.kl_warmup)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The batch order of ``epoch``: a permutation of ``range(n)`` fixed by (seed, epoch).
    (A stream whose rows fit in one chunk is shuffled by the same permutation.)"""
    return permutation(n, seed, epoch)


@torch.no_grad()
def evaluate_terms(model: LatentVariableModel, x: torch.Tensor, batch_size: int = 1024,
                   n_samples: int = 1, kl: str = "auto") -> dict[str, float]:
    """Mean ELBO, reconstruction and KL over ``x: [n, dim]``, in nats per example (exact
    sums over z when z can be enumerated, else ``n_samples`` Monte-Carlo draws)."""
    return mean_terms(total_terms(model, x, batch_size, n_samples, kl), len(x))


@torch.no_grad()
def total_terms(model: LatentVariableModel, x: torch.Tensor, batch_size: int = 1024,
                n_samples: int = 1, kl: str = "auto") -> torch.Tensor:
    """[sum reconstruction, sum KL] over ``x: [n, dim]`` (float64, on the CPU): what
    :func:`evaluate_terms` averages, and what ranks add up when they split the examples."""
    exact = bounds.enumerable(model, "train")  # small discrete z: exact ELBO
    sums = torch.zeros(2, dtype=torch.float64)
    for start in range(0, len(x), batch_size):
        batch = x[start:start + batch_size]
        terms = (bounds.enumerated_elbo(model, batch) if exact
                 else bounds.elbo(model, batch, n_samples=n_samples, kl=cast("bounds.KL", kl)))
        sums += term_sums(terms).cpu()
    return sums


def term_sums(terms: bounds.Terms) -> torch.Tensor:
    """[sum reconstruction, sum KL] over a batch: ``[2]``, float64. One reduction in the
    model's dtype, widened once: a batch's float32 sum is good to ~1e-7 relative, and the
    epoch's running total (the caller's) accumulates in float64. Stays on the device: no
    per-step host sync."""
    return torch.stack([terms.reconstruction, terms.kl]).sum(-1).double()


def mean_terms(sums: torch.Tensor, n: int) -> dict[str, float]:
    """Per-example means from :func:`term_sums`; the ELBO is reconstruction - KL by
    definition (beta = 1, whatever the objective weighed), so the reported three agree
    exactly."""
    reconstruction, kl = (sums / n).tolist()
    return {"elbo": reconstruction - kl, "reconstruction": reconstruction, "kl": kl}


def adam(params: list[torch.nn.Parameter], lr: float) -> Adam:
    """Adam with one fused kernel for all parameters where torch has one (CPU and CUDA,
    floating parameters): measured +20-27% training throughput on the CPU over the
    per-tensor loop (``benchmarks/throughput.py``). The same algorithm; last-bit rounding
    differs from the unfused step. A checkpoint's optimizer state carries its ``fused``
    flag, so a run resumes with the implementation it started with. Stepped by
    :class:`elbokit.optimizer.Adam` (torch's kernels without ``torch.optim``'s per-call
    wrappers: see there)."""
    return Adam(params, lr=lr)


def subnormals_flushed() -> bool:
    """Whether this thread's CPU flushes subnormal floats to zero now (a probe: there is no
    getter for ``torch.set_flush_denormal``)."""
    return bool(torch.full((), 1e-40) * 1.5 == 0)


@contextlib.contextmanager
def flushed_subnormals() -> Iterator[None]:
    """Within the block, subnormal floats (below 1.2e-38 in float32) are flushed to zero on
    the CPU, where the processor supports it; the previous mode is restored after.

    Why: the importance weights of a multi-sample bound are a softmax over k draws, and
    all but the largest underflow into the subnormal range as the posterior sharpens. x86
    processors take a slow path for every arithmetic operation on a subnormal: measured on
    IWAE k = 50 (784-400-20, batch 128, one thread), a training step took 790 ms with them
    and 235 ms flushed. Values that small change no weight: a gradient term of 1e-39 next
    to terms of order 1e-3 is below float32's resolution anyway."""
    if subnormals_flushed() or not torch.set_flush_denormal(True):
        yield  # already flushed (by the caller), or a CPU without the mode
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


# torch's intra-op thread count when elbokit was imported. A different count at fit time is
# the caller's own choice (torch.set_num_threads), which training keeps.
DEFAULT_THREADS = torch.get_num_threads()
# Environment variables by which a user sets the thread count (torchrun sets OMP_NUM_THREADS).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# Below this much work per step, batch x samples of z x parameters, a second thread costs
# more (OpenMP's fork and join around every small kernel) than it saves. Measured with
# Trainer epochs of Bernoulli VAEs on binarized MNIST, 1 against 2 threads on a 2-core Xeon
# (2 threads over 1): 0.3M (digits 64-64-8, batch 32) 0.90x, 2.6M 0.92x, 5.2M (784-100-20,
# batch 32) 0.95x; 10.5M (784-200-20, batch 32) 1.19x, 21M 1.28-1.31x, 84M (784-400-20,
# batch 128) 1.43x.
SMALL_STEP_WORK = 8_000_000


def step_work(params: list[torch.nn.Parameter], config: TrainConfig) -> int:
    """The size of a training step: ``batch_size`` x samples of z per example (``iwae_k``
    or ``n_samples``) x the number of parameters trained."""
    samples = config.iwae_k or config.n_samples
    return config.batch_size * samples * sum(p.numel() for p in params)


@contextlib.contextmanager
def training_threads(work: int, device: torch.device) -> Iterator[None]:
    """Within the block, CPU training of a small step (``work`` < :data:`SMALL_STEP_WORK`)
    runs on one thread; torch's thread count is restored after. Left as it is on an
    accelerator, for a large step, and wherever the count is the user's choice: set by
    ``torch.set_num_threads`` since elbokit was imported, or by ``OMP_NUM_THREADS`` /
    ``MKL_NUM_THREADS`` (which is also how ``elbokit fit`` is given a count)."""
    threads = torch.get_num_threads()
    chosen = (threads != DEFAULT_THREADS or any(v in os.environ for v in THREAD_VARIABLES))
    if device.type != "cpu" or threads == 1 or chosen or work >= SMALL_STEP_WORK:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _mark_nonfinite_slowly(tensors: list[torch.Tensor], flag: torch.Tensor,
                           one: torch.Tensor) -> None:
    for tensor in tensors:
        flag.add_((~torch.isfinite(tensor.detach())).any().to(flag.dtype)).clamp_(max=1)


def nonfinite_marker(device: torch.device) -> Callable[[list[torch.Tensor], torch.Tensor,
                                                        torch.Tensor], None]:
    """``mark(tensors, flag, one)``: sets ``flag`` (a 0-dim float tensor on ``device``) to 1
    when any of ``tensors`` holds a NaN or an infinity, else leaves it; no host sync. One
    fused kernel over all the tensors where torch has it for ``device`` (the AMP check,
    which multiplies by ``one`` = 1.0: no bit changes), else one check per tensor."""
    fused = getattr(torch, "_amp_foreach_non_finite_check_and_unscale_", None)
    if fused is not None:
        try:  # not every device (or build) has it
            flag = torch.zeros((), device=device)
            fused([torch.tensor([1.0, math.inf], device=device)], flag, torch.ones((), device=device))
            if flag.item() == 1.0:
                return fused
        except (NotImplementedError, RuntimeError):  # pragma: no cover - other devices
            pass
    return _mark_nonfinite_slowly  # pragma: no cover - other devices



# -- the parts the loop calls ------------------------------------------------------------------
# Each is small and testable alone; the loop (Trainer) owns the state they read and change.


def improvement(best: float | None, value: float, tolerance: float) -> tuple[bool, bool]:
    """``(better, significant)``: whether ``value`` beats ``best`` at all (a new best, to
    keep) and by more than ``tolerance`` relative (what resets the patience counters). With
    no best yet any finite value is both; a NaN or infinite value is neither (nor does it
    block a later best)."""
    if not math.isfinite(value):
        return False, False
    if best is None:
        return True, True
    return value > best, value > best + tolerance * abs(best)


@dataclass
class EarlyStopping:
    """Follows the score monitored after every epoch (the validation score, or the training
    one without validation data): keeps the best value, counts the epochs since the last
    *significant* improvement (:func:`improvement`), multiplies the learning rate by
    ``lr_factor`` every ``lr_patience`` of them (``lr_schedule="plateau"``; never below
    ``min_lr``, never raised) and stops after ``patience`` of them.

    Why the schedule: Adam at a constant rate ends in a noise ball around the optimum whose
    size is set by the rate; lowering it when progress stalls is what lets a run reach the
    optimum (measured on probabilistic PCA: docs/design.md). The counters live in the
    trainer's checkpointed ``state``, so a resumed run continues them."""

    tolerance: float = 1e-5
    patience: int | None = 10
    lr_schedule: str = "plateau"
    lr_patience: int = 3
    lr_factor: float = 0.5
    min_lr: float = 1e-6

    @classmethod
    def from_config(cls, config: TrainConfig) -> EarlyStopping:
        return cls(config.tolerance, config.patience, config.lr_schedule, config.lr_patience,
                   config.lr_factor, config.min_lr)

    def update(self, state: dict, score: float, param_groups: list[dict], best: str = "best_val",
               stop: bool = True) -> bool:
        """After an epoch whose monitored ``score`` is given: record it under ``state[best]``
        when it is the best yet (returned: True), then count, lower the rate and (``stop``)
        set ``state["stopped_early"]``. ``stop=False``: no stopping (patience needs held-out
        data), the rate schedule alone."""
        better, significant = improvement(state.get(best), score, self.tolerance)
        if better:
            state[best] = score
        if significant:
            state.update(bad_epochs=0, lr_bad_epochs=0)
            return better
        state["bad_epochs"] += 1
        state["lr_bad_epochs"] = state.get("lr_bad_epochs", 0) + 1
        if self.lr_schedule == "plateau" and state["lr_bad_epochs"] >= self.lr_patience:
            state["lr_bad_epochs"] = 0
            for group in param_groups:  # never raised (rollbacks halve it too)
                group["lr"] = max(group["lr"] * self.lr_factor, min(group["lr"], self.min_lr))
        if stop and self.patience is not None and state["bad_epochs"] >= self.patience:
            state["stopped_early"] = True
        return better


class KLWarmup:
    """A schedule of the objective's KL weight: ``beta`` rises linearly from 0 to the
    configured one over the first ``kl_warmup`` epochs, one small step per batch
    (:meth:`TrainConfig.beta_at`). Set before every step, from (epoch, step) alone, so a
    resumed run sees the same weights; put back to the full weight after the epoch's steps,
    so that the epoch's score weighs the KL as the objective asked, not as the warm-up did."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    # ``objective``: a module with a ``beta`` (an Estimator's); Any, since a plain module's
    # attributes type as Tensor | Module.
    def before_step(self, objective: Any, epoch: int, step: int, steps: int) -> None:
        objective.beta = self.config.beta_at(epoch, step / steps)

    def after_steps(self, objective: Any, epoch: int) -> dict:
        """Restores the full weight; returns what the epoch's metrics record says of it."""
        objective.beta = self.config.beta
        return {"beta": self.config.beta_at(epoch, 1.0)}


def schedules(config: TrainConfig) -> list[KLWarmup]:
    """The per-step schedules ``config`` asks for. (The Gumbel relaxation's temperature is
    annealed by its estimator, from a step counter that is estimator state: checkpointed,
    and kept equal on every rank.)"""
    return [KLWarmup(config)] if config.kl_warmup else []


@dataclass
class NaNGuard:
    """What a non-finite loss or gradient (caught before the step) leads to: roll back to
    the last good state and retry with the learning rate halved, at most ``max_retries``
    times per run, or (``on_nan="stop"``, retries spent) stop with :class:`NumericalError`.
    The rollback itself is the trainer's (it owns the state)."""

    on_nan: str = "rollback"
    max_retries: int = 5

    def retry(self, retries: int) -> bool:
        """Whether to roll back and go on, ``retries`` retries into the run."""
        return self.on_nan != "stop" and retries < self.max_retries

    def why_stop(self, retries: int, lr: float) -> str:
        """The reason given when :meth:`retry` says no."""
        if self.on_nan == "stop":
            return "on_nan is 'stop'"
        return (f"still after {retries} {'retry' if retries == 1 else 'retries'} with a halved "
                f"learning rate (now {lr:.3g})")


class MetricsLog:
    """``metrics.jsonl``: one JSON record a line, appended (an epoch's record, or a
    numerical-fault event; each has an integer ``"epoch"``). OSErrors propagate (the trainer
    turns them into one line)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def epochs(self) -> list[dict]:
        """The epochs' records, in order (events and lines a crash cut short left out): the
        whole history of a run, also one resumed (:meth:`Trainer.fit` returns the epochs it
        trained)."""
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("epoch"), int) and "train" in record:
                records.append(record)
        return records

    def trim(self, epoch: int) -> None:
        """Drop the lines of epochs after ``epoch`` (written after the last checkpoint, before
        a crash or kill) and any line a crash cut short; atomically."""
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("epoch"), int) and record["epoch"] <= epoch:
                kept.append(line)
        atomic_write(self.path, "".join(line + "\n" for line in kept).encode())


class Progress:
    """The one training bar (shown when asked for, or by the elbokit command on a terminal;
    rank 0's): a tick per step of every epoch, the running means every ``log_every`` steps
    (then one read of the device's sums) and the epoch's means at its end."""

    def __init__(self, show: bool, total: int, initial: int, log_every: int) -> None:
        self.show, self.log_every = show, log_every
        self.bar: tqdm = progress_bar(total=total, desc="training", initial=initial, unit="step",
                                      show=show)

    def step(self, epoch: int, step: int, sums: torch.Tensor, seen: int) -> None:
        self.bar.update(1)
        if self.show and (step + 1) % self.log_every == 0:
            self.bar.set_postfix(_postfix(epoch, mean_terms(sums, seen)), refresh=False)

    def rewind(self, position: int) -> None:
        """Back to ``position`` steps (an epoch rolled back)."""
        self.bar.n = position
        self.bar.refresh()

    def end_epoch(self, epoch: int, train: dict[str, float], val: dict | None) -> None:
        self.bar.set_postfix(_postfix(epoch, train, val), refresh=True)

    def close(self) -> None:
        self.bar.close()


def _postfix(epoch: int, train: dict[str, float], val: dict | None = None) -> dict:
    out = {"epoch": epoch, "elbo": f"{train['elbo']:.2f}", "rec": f"{train['reconstruction']:.2f}",
           "kl": f"{train['kl']:.2f}"}
    if val is not None:
        out["val_elbo"] = f"{val['elbo']:.2f}"
    return out


class Interrupts:
    """Ctrl-C. While active (one process, main thread, Python's own SIGINT handler in
    place): the first SIGINT sets ``pending`` and puts the old handler back, so training can
    stop at the next step boundary, and a second one interrupts at once."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.pending = False
        self.previous: Callable[[int, FrameType | None], Any] | int | None = None

    def __enter__(self) -> Interrupts:
        self.pending = False
        if (self.enabled and threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.pending = True
        signal.signal(signal.SIGINT, self.previous)

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            if signal.getsignal(signal.SIGINT) == self._handle:
                signal.signal(signal.SIGINT, self.previous)
            self.previous = None


class OneProcess:
    """What the step does where processes differ, for one process: it takes the whole
    batch, adds nothing to the gradients, and its finiteness check reads the running sums
    of the loss's terms (non-finite as soon as one reconstruction or KL value is) and every
    gradient (where any other NaN of the loss ends up)."""

    culprit: str | None = None  # a fault is traced to the loss or to a gradient by name (Trainer._culprit)

    def slice(self, batch: torch.Tensor) -> torch.Tensor:
        return batch

    def reduce(self, params: list[torch.nn.Parameter], loss: torch.Tensor | None,
               sums: torch.Tensor) -> list[torch.Tensor]:
        """The tensors the finiteness check reads."""
        return [sums, *[p.grad for p in params if p.grad is not None]]

    def after_step(self, share: float) -> None:
        pass


class DataParallel(OneProcess):
    """... and under several processes (see the module docstring): rank r takes its
    contiguous slice of the global batch, the gradients are summed over the ranks, and the
    estimator's buffers made equal after the step.

    Every rank must make the same step-or-fault decision: a rank's non-finite loss poisons
    its gradient (times ``loss * 0 + 1``, which is 1.0 when the loss is finite) before the
    all-reduce, and the check reads the reduced gradients, the same on every rank; which rank
    and which tensor it was is not traced.

    Gradients are summed by an explicit all-reduce after ``backward`` rather than by wrapping
    a module in DistributedDataParallel: the objective is called as ``objective(model,
    batch)`` (DDP wraps one module's forward), some estimators call ``autograd.grad`` inside
    it (DReG) or leave parameters unused, the learned baseline's parameters live in the
    objective, and a rank's slice can be empty on the last batch. One flat all-reduce per
    step of all trained parameters (the model's and the objective's) handles all of these,
    keeps ``state_dict`` keys and ``torch.compile`` untouched, and costs about what DDP's
    bucketed reduction does at these model sizes."""

    culprit = "loss or gradient"

    def __init__(self, context: distributed.Context, buffers: list[torch.Tensor],
                 device: torch.device) -> None:
        self.context, self.buffers, self.device = context, buffers, device

    def slice(self, batch: torch.Tensor) -> torch.Tensor:
        return batch[self.context.shard(len(batch))]

    def reduce(self, params: list[torch.nn.Parameter], loss: torch.Tensor | None,
               sums: torch.Tensor) -> list[torch.Tensor]:
        if loss is not None:
            with torch.no_grad():
                carrier = next((p.grad for p in params if p.grad is not None), None)
                if carrier is not None:
                    carrier.mul_(loss.detach() * 0 + 1)
        distributed.all_reduce_gradients(params)
        return [p.grad for p in params if p.grad is not None]

    def after_step(self, share: float) -> None:
        distributed.sync_buffers(self.buffers, share, self.device)


class Trainer:
    """Fits ``model`` by maximizing ``config.objective()`` with Adam: one loop, one step
    (the same in one process and under several), and the parts above around it.

    Early stopping and the model kept follow the validation score *the objective* gives
    (its ``validation_terms``; an objective without one is scored by the ELBO): for the
    estimators the objective trained, the beta-ELBO reconstruction - beta KL (beta the weight
    after any warm-up) or IWAE_k when training it. Reported ELBOs are the true ones.

    ``run_dir``: where ``metrics.jsonl`` and the per-epoch checkpoint go (None: nothing is
    written). ``on_improve(model)`` is called whenever the validation score reaches a new
    best (the run saves its model there). ``resume=True`` continues from the run's checkpoint,
    which also holds the best validated weights so far, so a resumed fit ends with the model
    an uninterrupted one ends with (:func:`check_run_dir`: the facades' rule for a directory
    that holds a checkpoint already).
    ``objective``: an ``nn.Module`` called as ``objective(model, batch) -> Terms`` to use
    instead of ``config.objective(model)`` (e.g. the semi-supervised M2 objective, or a
    classifier's conditional likelihood); it may say how it is scored (``validation_terms``
    and ``score``, see :class:`~elbokit.estimators.Estimator`).
    ``batch_transform``: applied to every training batch (dynamic binarization draws
    ``torch.bernoulli`` of it; torch's RNG is checkpointed, so resumes stay exact).
    ``compile``: run ``objective(model, batch)`` of the training step through
    ``torch.compile`` (default mode); validation stays eager.
    ``on_epoch(record, model)``: called after every epoch (rank 0 only) with the epoch's
    record (as ``metrics.jsonl`` gets it) and the model as it was validated (the averaged
    weights), before the epoch's checkpoint, e.g. to log it (:mod:`elbokit.tensorboard`);
    it must leave the model and the random number streams as it found them.

    Under a process group of several ranks (see the module docstring) every rank constructs
    its trainer the same way and passes the same, whole ``x_train``; ``run_dir`` is written
    and ``on_improve`` called by rank 0 only.

    NaN or infinite losses and gradients are rolled back (``config.on_nan``,
    ``config.max_retries``; :class:`NumericalError` when they run out), and Ctrl-C stops at a
    step boundary with that state checkpointed (:class:`TrainingInterrupted`): see the
    module docstring.
    """

    def __init__(self, model: torch.nn.Module, config: TrainConfig, run_dir: Path | None = None,
                 progress: bool = False,
                 on_improve: Callable[[torch.nn.Module], None] | None = None,
                 objective: torch.nn.Module | None = None,
                 batch_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 compile: bool = False,
                 on_epoch: Callable[[dict, torch.nn.Module], None] | None = None) -> None:
        self.model = model
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.dist = distributed.current()
        self.main = self.dist is None or self.dist.is_main
        # Asked for (progress=True), or the elbokit command on a terminal; one bar, rank 0's.
        self.progress = (progress or shown()) and self.main
        self.on_improve = on_improve
        self.on_epoch = on_epoch
        self.batch_transform = batch_transform
        self.device = next(model.parameters()).device  # where the caller put the model
        if objective is None:
            with seeded(config.seed):  # a learned baseline starts from the same weights every run
                objective = config.objective(model)
        self.objective = objective.to(self.device)
        # How the objective is scored: its own say, else as the ELBO (an objective that is a
        # plain module, e.g. a wrapper).
        elbo = estimators.Estimator(kl=config.kl)
        self.validation_terms = getattr(self.objective, "validation_terms", elbo.validation_terms)
        self.training_score = getattr(self.objective, "score", elbo.score)
        # Learned baselines are trained by the same optimizer as the model.
        self.params = [*model.parameters(), *self.objective.parameters()]
        self.optimizer = adam(self.params, config.lr)
        # The estimator's running state (moving averages, step counters) is kept equal on
        # every rank after each step (DataParallel.after_step). The model's buffers are taken
        # as constants (elbokit's hold the prior's parameters and the data's standardization).
        self.parallel = (OneProcess() if self.dist is None else
                         DataParallel(self.dist, list(self.objective.buffers()), self.device))
        # fallback_random: compiled code draws its random numbers with eager torch's
        # generator, so a compiled run samples what the uncompiled one does.
        self.forward: Callable[[torch.nn.Module, torch.Tensor], bounds.Terms] = (
            torch.compile(self.objective, options={"fallback_random": True}) if compile
            else self.objective)
        self.state: dict[str, Any] = {"epoch": 0, "best_val": None, "best_epoch": None, "bad_epochs": 0,
                      "lr_bad_epochs": 0, "stopped_early": False, "ema_updates": 0}
        self.stopping = EarlyStopping.from_config(config)
        self.schedules = schedules(config)
        self.guard = NaNGuard(config.on_nan, config.max_retries)
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl") if self.run_dir is not None else None
        # Polyak averaging: an exponential moving average of the model's weights, which is
        # what is validated, kept and returned (see _update_average).
        self.params_model = list(model.parameters())
        self._weights = [p.detach() for p in self.params_model]  # views: stepped in place
        self.average = ([p.detach().clone() for p in self.params_model] if config.ema > 0
                        else None)
        self.best_state: dict[str, torch.Tensor] | None = None
        # The finiteness check: a flag on the device; on the CPU read after every step, on an
        # accelerator with the fused Adam left there (Adam skips a flagged step itself) and
        # read once per epoch.
        self._bad = torch.zeros((), device=self.device)  # 0-dim, as Adam's found_inf must be
        self._one = torch.ones((), device=self.device)
        self._mark = nonfinite_marker(self.device)
        # The flag read on the CPU: through a numpy view of it (no call into torch).
        self._flagged = self._bad.numpy().__bool__ if self.device.type == "cpu" else self._bad.item
        self.deferred_check = False
        self._configure_check()
        self._resume_at: tuple[int, torch.Tensor, int] | None = None  # a mid-epoch checkpoint
        self._saved: tuple[int, int] | None = None  # (epoch, step) of the checkpoint on disk
        self._interrupts = Interrupts(self.dist is None)

    def _configure_check(self) -> None:
        """Immediate finiteness checks on the CPU and under several processes (whose
        all-reduce synchronizes every step anyway); on one accelerator deferred to the
        epoch's end when Adam is fused (it then skips flagged steps on the device:
        ``found_inf``)."""
        fused = all(bool(group.get("fused")) for group in self.optimizer.param_groups)
        self.deferred_check = self.device.type != "cpu" and fused and self.dist is None
        self.optimizer.found_inf = self._bad if self.deferred_check else None

    # -- persistence -------------------------------------------------------------------
    def _model_config(self) -> dict | None:
        """The model's configuration (``model.config.to_dict()``, where it has one), which
        travels with the checkpoint and must match on resume."""
        model_config: Any = getattr(self.model, "config", None)
        return model_config.to_dict() if hasattr(model_config, "to_dict") else None

    def resume(self) -> None:
        """Load the run's checkpoint: weights, optimizer, counters and RNG state (and, from a
        checkpoint written at a Ctrl-C, the position in the epoch and its partial sums).
        A checkpoint of another model configuration, or whose tensors do not fit the model,
        is refused (:class:`~elbokit.errors.CheckpointError`)."""
        assert self.run_dir is not None
        state, model_state, optimizer_state, rng, extra = load_checkpoint(
            self.run_dir, self._model_config())
        try:
            self.model.load_state_dict(model_state)
            if "estimator" in extra:
                self.objective.load_state_dict(extra["estimator"])
            if self.average is not None:
                self._load_average(extra.get("average"))
            if "best" in extra:  # the best validated weights so far (see _save)
                self.best_state = self._checked_best(extra["best"])
            self.optimizer.load_state_dict(optimizer_state)
            self._configure_check()  # the checkpoint's Adam may be the unfused one
        except (RuntimeError, KeyError, ValueError, TypeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"{self.run_dir}: the checkpoint does not fit this model "
                                  f"({first})") from None
        self._restore_rng(rng, extra.get("rng", {}), state["epoch"])
        step, seen = int(state.pop("step", 0)), int(state.pop("seen", 0))
        if step > 0:  # written at a Ctrl-C, in the middle of epoch state["epoch"] + 1
            sums = extra.get("partial", {}).get("sums")
            if sums is None or sums.shape != (2,):
                raise CheckpointError(f"{self.run_dir}: a mid-epoch checkpoint without its "
                                      "partial sums")
            self._resume_at = (step, sums.to(torch.float64), seen)
        self.state = state
        self._saved = (state["epoch"], step)
        self._trim_metrics(state["epoch"])

    def _checked_best(self, saved: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A checkpoint's best weights, on the model's device, refused (``KeyError``,
        ``ValueError``) unless they have the model's names and shapes."""
        live = self.model.state_dict()
        if set(saved) != set(live):
            raise KeyError("best weights")
        for name, tensor in saved.items():
            if tensor.shape != live[name].shape:
                raise ValueError(f"best weights: {name} has shape {list(tensor.shape)}, "
                                 f"expected {list(live[name].shape)}")
        return {name: tensor.to(live[name].device) for name, tensor in saved.items()}

    @torch.no_grad()
    def _load_average(self, saved: dict[str, torch.Tensor] | None) -> None:
        """The averaged weights from a checkpoint; one written without averaging continues
        with the average starting at its weights."""
        assert self.average is not None  # called only when averaging
        if saved is None:
            torch._foreach_copy_(self.average, [p.detach() for p in self.params_model])
            return
        if set(saved) != {str(i) for i in range(len(self.average))}:
            raise KeyError("averaged weights")
        for i, tensor in enumerate(self.average):
            tensor.copy_(saved[str(i)])

    def _trim_metrics(self, epoch: int) -> None:
        """Drop the ``metrics.jsonl`` lines after ``epoch`` (see :meth:`MetricsLog.trim`)."""
        if self.main and (metrics := self.metrics) is not None:
            self._write("metrics.jsonl", lambda: metrics.trim(epoch))

    def _append_metrics(self, record: dict) -> None:
        if self.main and (metrics := self.metrics) is not None:
            self._write("metrics.jsonl", lambda: metrics.append(record))

    def _restore_rng(self, rng: torch.Tensor, saved: dict[str, torch.Tensor], epoch: int) -> None:
        """Put back this rank's RNG state(s) from a checkpoint (see :meth:`_rng_states`)."""
        rank, size = (self.dist.rank, self.dist.world_size) if self.dist is not None else (0, 1)
        written_by = int(saved["world_size"]) if "world_size" in saved else 1
        if written_by != size:
            # Another number of processes: no stream of this run continues; re-seed each rank.
            torch.manual_seed(distributed.rank_seed(self.config.seed, rank, epoch))
            if self.main:
                warnings.warn(f"the checkpoint was written by {written_by} process(es) and is resumed "
                              f"by {size}: weights, optimizer and batch order continue exactly; the "
                              "random draws are re-seeded from (seed, rank, epoch)", stacklevel=3)
            return
        torch.set_rng_state(rng if size == 1 else saved[f"torch.{rank}"])
        if self.device.type == "cuda":
            if f"cuda.{rank}" in saved:
                torch.cuda.set_rng_state(saved[f"cuda.{rank}"], self.device)
            else:  # a CPU checkpoint resumed on a GPU
                torch.cuda.manual_seed(distributed.rank_seed(self.config.seed, rank, epoch))

    def _rng_states(self) -> dict[str, torch.Tensor] | None:
        """RNG states beyond the CPU one that every checkpoint holds: each rank's CPU state
        (``torch.R``) under several processes, the GPU's (``cuda.R``) on CUDA, with
        ``world_size``; None for one CPU process (its checkpoint is unchanged). A collective
        under several processes: every rank calls it."""
        cuda = self.device.type == "cuda"
        if self.dist is None:
            if not cuda:
                return None
            return {"world_size": torch.tensor([1]), "cuda.0": torch.cuda.get_rng_state(self.device)}
        mine = (torch.get_rng_state(), torch.cuda.get_rng_state(self.device) if cuda else None)
        states: dict[str, torch.Tensor] = {"world_size": torch.tensor([self.dist.world_size])}
        for rank, (cpu, gpu) in enumerate(distributed.all_gather_objects(mine)):
            states[f"torch.{rank}"] = cpu
            if gpu is not None:
                states[f"cuda.{rank}"] = gpu
        return states

    def _save(self, partial: tuple[int, torch.Tensor, int] | None = None) -> None:
        """Checkpoint the state after ``self.state["epoch"]``, or, with ``partial`` = (steps
        done, sums, examples seen) of the next epoch, the state at that step boundary."""
        if self.run_dir is not None:
            rng = self._rng_states()  # every rank takes part in gathering them
            if not self.main:
                return
            # The configuration travels with the state, so a checkpoint describes itself.
            config = {"train": asdict(self.config), "model": self._model_config()}
            extra = {"estimator": self.objective.state_dict()}
            if self.average is not None:
                extra["average"] = {str(i): t for i, t in enumerate(self.average)}
            if self.best_state is not None:  # kept in memory: a resumed fit ends with it too
                extra["best"] = self.best_state
            if rng is not None:
                extra["rng"] = rng
            state = self.state
            if partial is not None:
                step, sums, seen = partial
                state = {**state, "step": step, "seen": seen}
                extra["partial"] = {"sums": sums.detach().cpu()}
            try:
                save_checkpoint(self.run_dir, self.model, self.optimizer, state, config,
                                extra=extra)
            except CheckpointWriteError as e:
                raise CheckpointWriteError(f"{e}; {self._intact()}", e) from e
            self._saved = (state["epoch"], partial[0] if partial is not None else 0)

    def _intact(self) -> str:
        """What the run directory still holds, for error messages."""
        if self._saved is None:
            return "no checkpoint was written yet"
        epoch, step = self._saved
        if step:
            return f"its last checkpoint (epoch {epoch + 1}, step {step}) is intact"
        return f"its last checkpoint (epoch {epoch}) is intact"

    def _write(self, what: str, action: Callable[[], None]) -> None:
        """Run ``action`` (a file write), turning an OSError into a one-line
        :class:`CheckpointWriteError` that says what is intact."""
        try:
            action()
        except OSError as e:
            if isinstance(e, CheckpointWriteError):
                raise CheckpointWriteError(f"{e}; {self._intact()}", e) from e
            where = e.filename or self.run_dir
            raise CheckpointWriteError(f"{where}: cannot write {what}: {e.strerror or e}; "
                                       f"{self._intact()}", e) from e

    # -- the loop ----------------------------------------------------------------------
    def fit(self, x_train: torch.Tensor | NpyStream, x_val: torch.Tensor | None = None,
            resume: bool = False) -> list[dict]:
        """Train on ``x_train: [n, dim]`` (a tensor, or a :class:`~elbokit.data.NpyStream`
        read chunk by chunk: data larger than memory); early-stop on the objective's score
        of ``x_val: [m, dim]``. Returns the per-epoch history (also appended to
        ``metrics.jsonl``). Runs with subnormal floats flushed to zero (see
        :func:`flushed_subnormals`) and a small step on one CPU thread (see
        :func:`training_threads`)."""
        with (flushed_subnormals(),
              training_threads(step_work(self.params, self.config), self.device)):
            return self._fit(x_train, x_val, resume)

    def _fit(self, x_train: torch.Tensor | NpyStream, x_val: torch.Tensor | None,
             resume: bool) -> list[dict]:
        cfg = self.config
        if self.dist is not None and not isinstance(x_train, torch.Tensor):
            raise ConfigError("streamed training data runs in one process; under torchrun "
                              "every rank would read the whole file (load it in memory, or "
                              "train without torchrun)")
        resumed = resume and self.run_dir is not None and has_checkpoint(self.run_dir)
        if self.run_dir is not None and self.main:
            run_dir = self.run_dir
            self._write("the run directory", lambda: run_dir.mkdir(parents=True, exist_ok=True))
            if resume:
                remove_temporaries(run_dir)  # what writes a crash interrupted left behind
        if resumed:
            self.resume()
        else:
            if resume and self.run_dir is not None:  # stopped before its first checkpoint
                self._trim_metrics(0)
            # Each rank its own posterior samples.
            torch.manual_seed(cfg.seed if self.dist is None
                              else distributed.rank_seed(cfg.seed, self.dist.rank))
        if self.dist is not None:
            distributed.broadcast_state([self.model, self.objective])
        n = len(x_train)
        steps = math.ceil(n / cfg.batch_size)
        history: list[dict] = []
        start_epoch = self.state["epoch"]
        start, self._resume_at = self._resume_at, None
        progress = Progress(self.progress, cfg.epochs * steps,
                            start_epoch * steps + (start[0] if start is not None else 0),
                            cfg.log_every)
        try:
            with self._interrupts:
                for epoch in range(start_epoch + 1, cfg.epochs + 1):
                    if self.state["stopped_early"]:
                        break
                    history.append(self._epoch(epoch, x_train, x_val, steps, progress, start))
                    start = None
                    if self._interrupts.pending:  # Ctrl-C after the last step: saved above
                        raise TrainingInterrupted(f"after epoch {epoch}",
                                                  checkpointed=self.run_dir is not None)
        finally:
            progress.close()
        if self.dist is not None:  # rank 0's files are complete before anyone reads them
            distributed.barrier(self.device)
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        elif self.average is not None:  # no validation: the last average is the model
            with torch.no_grad():
                torch._foreach_copy_([p.data for p in self.params_model], self.average)
        return history

    def _epoch(self, epoch: int, x_train: torch.Tensor | NpyStream, x_val: torch.Tensor | None,
               steps: int, progress: Progress,
               start: tuple[int, torch.Tensor, int] | None = None) -> dict:
        """Train one epoch (from step ``start[0]`` with its partial sums when resuming in the
        middle of one), score it, log, checkpoint. A numerical fault rolls the epoch back to
        where it began and runs it again (see :meth:`_recover`)."""
        began = time.perf_counter()
        device = x_train.device if isinstance(x_train, torch.Tensor) else self.device
        first, sums0, seen0 = start if start is not None else (
            0, torch.zeros(2, dtype=torch.float64), 0)
        snapshot = self._snapshot()  # the last good state: the epoch's start (= last checkpoint)
        while True:
            self.model.train()
            self.objective.train()
            sums, seen = sums0.to(device, copy=True), seen0
            seen, fault = self._steps(epoch, x_train, steps, progress, first, sums, seen)
            if fault is None:
                break
            self._recover(epoch, steps, first, fault, snapshot)
            progress.rewind((epoch - 1) * steps + first)
        if self.dist is not None:  # every rank's sums, over all n examples
            distributed.all_reduce_sum(sums)
        train = mean_terms(sums, len(x_train))
        record: dict = {"epoch": epoch, "train": train}
        for schedule in self.schedules:
            record.update(schedule.after_steps(self.objective, epoch))
        self.model.eval()
        self.objective.eval()
        with self.averaged_weights():
            if x_val is not None and len(x_val) > 0:
                record["val"], score = self._validate(x_val)
                self._monitor(epoch, score)
            else:
                # No validation data: every epoch's model is kept, and the learning-rate schedule
                # follows the training objective (no early stopping: patience needs held-out data).
                self.state["best_epoch"] = epoch
                self._improved()
                self.stopping.update(self.state, self.training_score(train["reconstruction"], train["kl"]),
                                     self.optimizer.param_groups, best="best_train", stop=False)
        record["seconds"] = time.perf_counter() - began
        record["lr"] = self.optimizer.param_groups[0]["lr"]
        self.state["epoch"] = epoch
        progress.end_epoch(epoch, train, record.get("val"))
        self._append_metrics(record)
        if (on_epoch := self.on_epoch) is not None and self.main:
            # Before the checkpoint, as metrics.jsonl: an epoch logged and then lost to a kill
            # is trained again on resuming, and its log replaced (TensorBoard's purge_step).
            with self.averaged_weights():
                self._write("the epoch's log", lambda: on_epoch(record, self.model))
        self._save()
        return record

    def _monitor(self, epoch: int, score: float) -> None:
        """After validation: keep the model when ``score`` is the best yet (any improvement),
        and let :class:`EarlyStopping` count, lower the rate, stop. The score is a
        deterministic function of the weights (common random numbers, see :meth:`_validate`),
        so no Monte-Carlo noise decides either."""
        if self.stopping.update(self.state, score, self.optimizer.param_groups):
            self.state["best_epoch"] = epoch
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self._improved()

    def _improved(self) -> None:
        if (on_improve := self.on_improve) is not None and self.main:
            model = self.model
            self._write("the model", lambda: on_improve(model))

    @torch.no_grad()
    def _update_average(self) -> None:
        """After an optimizer step: average <- average + (1 - d) (weights - average), with
        d = min(ema, (1 + t) / (10 + t)) at the t-th update (TensorFlow's warm-up of the
        decay: early on the average follows the weights closely, later it spans ~1/(1 - ema)
        steps). One fused op over all the weights.

        Why: Adam at a fixed learning rate leaves the weights jittering around the optimum,
        and lowering the rate to quiet them also slows the progress along flat directions.
        The average keeps the rate's speed and removes most of the jitter (Polyak & Juditsky
        1992); validating the average also gives early stopping and the learning-rate
        schedule a score with less noise."""
        t = self.state["ema_updates"] = self.state.get("ema_updates", 0) + 1
        decay = min(self.config.ema, (1 + t) / (10 + t))
        torch._foreach_lerp_(self.average, self._weights, 1 - decay)  # type: ignore[arg-type]  # set

    @contextlib.contextmanager
    def averaged_weights(self) -> Iterator[None]:
        """Within the block the model holds the averaged weights (if averaging is on); the
        trained ones are put back after it."""
        if self.average is None:
            yield
            return
        with torch.no_grad():
            trained = [p.detach().clone() for p in self.params_model]
            torch._foreach_copy_([p.data for p in self.params_model], self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_([p.data for p in self.params_model], trained)

    def _steps(self, epoch: int, x_train: torch.Tensor | NpyStream, steps: int,
               progress: Progress, first: int, sums: torch.Tensor,
               seen: int) -> tuple[int, tuple[int, str] | None]:
        """The optimizer steps of ``epoch`` from step ``first``, adding to ``sums`` and
        ``seen``. Returns ``(seen, None)``, or ``(seen, (step, what))`` at a step whose loss
        or gradients are not finite (not taken). A pending Ctrl-C checkpoints the state at the
        next step boundary and raises :class:`TrainingInterrupted`."""
        for step, batch in enumerate(self._batches(x_train, epoch, first), start=first):
            taken, fault = self._step(epoch, step, steps, batch, sums)
            if fault is not None:
                return seen, (step, fault)
            seen += taken
            progress.step(epoch, step, sums, seen)
            if self._interrupts.pending and step + 1 < steps:
                if self.deferred_check and bool(self._bad.item()):
                    return seen, (step, "loss or gradient")
                self._save(partial=(step + 1, sums, seen))
                raise TrainingInterrupted(f"at epoch {epoch}, step {step + 1} of {steps}",
                                          checkpointed=self.run_dir is not None)
        if self.deferred_check and bool(self._bad.item()):  # once per epoch on a GPU
            return seen, (steps - 1, "loss or gradient")
        return seen, None

    def _step(self, epoch: int, step: int, steps: int, global_batch: torch.Tensor,
              sums: torch.Tensor) -> tuple[int, str | None]:
        """One optimizer step on this process's part of ``global_batch: [b, dim]`` (all of
        it in one process; see :class:`DataParallel`), adding its term sums to ``sums``.
        Returns the number of examples it took, and None, or what was not finite (then
        nothing was stepped: the check comes before ``optimizer.step``, so the weights never
        take a non-finite step; deferred on an accelerator, where Adam skips the step)."""
        batch = self.parallel.slice(global_batch)
        # Sizes read once: len() of a tensor is a Python-level call in torch, and at small
        # batch sizes the step's Python overhead shows in its throughput (benchmarks/).
        taken, total = batch.shape[0], global_batch.shape[0]
        for schedule in self.schedules:  # functions of (epoch, step): resumed runs see the same
            schedule.before_step(self.objective, epoch, step, steps)
        self.optimizer.zero_grad(set_to_none=True)
        loss = terms = None
        if taken:  # a rank's slice is empty when the last batch has fewer examples than ranks
            if self.batch_transform is not None:  # e.g. a fresh binarization (torch's RNG)
                batch = self.batch_transform(batch)
            terms = self.forward(self.model, batch)
            # A slice's sum divided by the *global* batch size: the ranks' gradients then add
            # up to the gradient of the global-batch mean, whatever the slice sizes.
            loss = (-terms.surrogate.mean() if taken == total
                    else -terms.surrogate.sum() / total)
            loss.backward()
            with torch.no_grad():
                sums += term_sums(terms)
        self._mark(self.parallel.reduce(self.params, loss, sums), self._bad, self._one)
        if not self.deferred_check and self._flagged():
            # one process always has a loss; a rank with an empty slice names its culprit
            return taken, self.parallel.culprit or self._culprit(loss, terms)  # type: ignore[arg-type]
        self.optimizer.step()
        if self.average is not None:
            self._update_average()
        self.parallel.after_step(taken / total)
        return taken, None

    def _culprit(self, loss: torch.Tensor, terms: bounds.Terms) -> str:
        """What was not finite (the rare path after a fault): the loss, or which gradient."""
        if not all(bool(torch.isfinite(t.detach()).all())
                   for t in (loss, terms.reconstruction, terms.kl)):
            return "loss"
        names = {id(p): name for name, p in self.model.named_parameters()}
        names.update({id(p): f"estimator.{name}" for name, p in self.objective.named_parameters()})
        for p in self.params:
            if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                return f"gradient ({names.get(id(p), 'a parameter')})"
        return "gradient"

    def _live_state(self) -> tuple[list[torch.Tensor], list[tuple[int, str]], dict]:
        """What a rollback restores, in a fixed order: the model's and the objective's
        parameters and buffers, then the optimizer's per-parameter tensors, with their
        ``(parameter index, key)`` layout, and its other per-parameter values."""
        tensors = [*self.model.parameters(), *self.model.buffers(),
                   *self.objective.parameters(), *self.objective.buffers(), *(self.average or ())]
        layout: list[tuple[int, str]] = []
        plain: dict = {}
        state = self.optimizer.state
        for i, param in enumerate(self.params):
            for key, value in (state[param].items() if param in state else ()):
                if isinstance(value, torch.Tensor):
                    tensors.append(value)
                    layout.append((i, key))
                else:
                    plain[i, key] = copy.deepcopy(value)
        return tensors, layout, plain

    @torch.no_grad()
    def _snapshot(self) -> dict:
        """The state to roll back to (weights, optimizer, estimator state, RNG), copied once
        per epoch: on the CPU into buffers kept from one epoch to the next (one fused copy),
        from an accelerator into host memory."""
        tensors, layout, plain = self._live_state()
        copies = getattr(self, "_snapshot_buffers", None)
        if (self.device.type == "cpu" and copies is not None
                and getattr(self, "_snapshot_layout", None) == layout and len(copies) == len(tensors)):
            torch._foreach_copy_(copies, tensors)
        else:
            copies = [t.detach().clone() if t.device.type == "cpu" else t.detach().cpu()
                      for t in tensors]
            if self.device.type == "cpu":
                self._snapshot_buffers, self._snapshot_layout = copies, layout
        cuda = self.device.type == "cuda"
        return {"copies": copies, "layout": layout, "plain": plain,
                "ema_updates": self.state.get("ema_updates", 0),
                "lrs": [group["lr"] for group in self.optimizer.param_groups],
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(self.device) if cuda else None}

    @torch.no_grad()
    def _restore(self, snapshot: dict) -> None:
        """Put back what :meth:`_snapshot` copied, in place; optimizer state created since
        (Adam's lazily made moments, at the first step) is dropped again."""
        state, layout = self.optimizer.state, snapshot["layout"]
        kept = {i for i, _ in layout} | {i for i, _ in snapshot["plain"]}
        for i, param in enumerate(self.params):
            if param in state and i not in kept:
                del state[param]
        for (i, key), value in snapshot["plain"].items():
            state[self.params[i]][key] = copy.deepcopy(value)
        tensors, now, _ = self._live_state()
        if now != layout:  # the optimizer's state changed shape: rebuild it from the copies
            n = len(tensors) - len(now)
            for (i, key), value in zip(layout, snapshot["copies"][n:], strict=True):
                state[self.params[i]][key] = value.clone().to(self.params[i].device)
            tensors = tensors[:n]
        torch._foreach_copy_(tensors, snapshot["copies"][:len(tensors)])
        for group, lr in zip(self.optimizer.param_groups, snapshot["lrs"], strict=True):
            group["lr"] = lr
        self.state["ema_updates"] = snapshot["ema_updates"]
        torch.set_rng_state(snapshot["rng"])
        if snapshot["cuda_rng"] is not None:
            torch.cuda.set_rng_state(snapshot["cuda_rng"], self.device)
        self._bad.zero_()
        self.optimizer.zero_grad(set_to_none=True)

    def _recover(self, epoch: int, steps: int, first: int, fault: tuple[int, str],
                 snapshot: dict) -> None:
        """After a non-finite loss or gradient at ``fault = (step, what)``: roll back to
        ``snapshot`` (the epoch's start) and, as :class:`NaNGuard` decides, halve the
        learning rate and go on, or raise :class:`NumericalError`. Every event is a warning
        and a ``metrics.jsonl`` record."""
        step, what = fault
        retries = int(self.state.get("retries", 0))
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        self._restore(snapshot)
        back_to = (f"epoch {epoch}, step {first}" if first
                   else f"the end of epoch {epoch - 1}" if epoch > 1 else "the start of training")
        where = (f"epoch {epoch}, step {step + 1} of {steps}" if not self.deferred_check
                 else f"epoch {epoch} (detected at its end)")
        event = {"epoch": epoch, "event": "non-finite", "step": step + 1, "what": what}
        if not self.guard.retry(retries):
            self._append_metrics({**event, "action": "stop", "retries": retries})
            kept = self._intact() if self.run_dir is not None else "no run directory"
            raise NumericalError(f"non-finite {what} at {where}, {self.guard.why_stop(retries, lrs[0])}; "
                                 f"rolled back to {back_to} and stopped ({kept}); try a lower "
                                 "learning rate")
        halved = [lr / 2 for lr in lrs]
        for group, lr in zip(self.optimizer.param_groups, halved, strict=True):
            group["lr"] = lr
        self.state["retries"] = retries + 1
        self._append_metrics({**event, "action": "rollback", "lr": halved[0],
                              "retry": retries + 1, "max_retries": self.guard.max_retries})
        if self.main:
            warnings.warn(f"non-finite {what} at {where}: rolled back to {back_to}, learning "
                          f"rate halved to {halved[0]:.3g} (retry {retries + 1} of "
                          f"{self.guard.max_retries})", NumericalFaultWarning, stacklevel=4)

    def _batches(self, x_train: torch.Tensor | NpyStream, epoch: int,
                 first: int = 0) -> Iterator[torch.Tensor]:
        """The (global) batches of ``epoch`` from batch ``first`` on, ``[batch_size, dim]``
        each (the last may be smaller): slices of :func:`epoch_order` of an in-memory tensor,
        or a stream's chunk-shuffled batches in the model's dtype on its device. Either
        depends on (seed, epoch) only, so a resumed run takes the uninterrupted one's
        batches (a stream resumed mid-epoch reads and skips the first ``first``)."""
        size, seed = self.config.batch_size, self.config.seed
        if isinstance(x_train, torch.Tensor):
            order = epoch_order(len(x_train), seed, epoch).to(x_train.device)
            for start in range(first * size, len(x_train), size):
                # index_select copies whole rows: 4.5x faster than x_train[rows] (measured:
                # 21 vs 96 us for 128 rows of 784 floats), which goes element by element.
                yield x_train.index_select(0, order[start:start + size])
            return
        dtype = next(self.model.parameters()).dtype
        for i, batch in enumerate(x_train.batches(size, seed, epoch, dtype)):
            if i >= first:
                yield batch.to(self.device)


    @torch.no_grad()
    def _validate(self, x_val: torch.Tensor) -> tuple[dict[str, float], float]:
        """The mean validation terms of ``x_val: [m, dim]`` (the record's ``"val"``: ELBO,
        reconstruction, KL) and the mean score early stopping follows, both from the
        objective's ``validation_terms``. Under several processes each rank scores its
        contiguous share of ``x_val`` and the sums are all-reduced, so every rank gets the
        same numbers (and makes the same early-stopping decision)."""
        part = x_val if self.dist is None else x_val[self.dist.shard(len(x_val))]
        sums = torch.zeros(3, dtype=torch.float64)  # reconstruction, KL, score
        # The same draws of z every epoch (common random numbers): the epoch-to-epoch change
        # of the score is then the change of the model, not Monte-Carlo noise, and validating
        # leaves the training stream of random numbers untouched.
        with seeded((VALIDATION_SEED + self.config.seed) % 2**64):
            for start in range(0, len(part), VALIDATION_BATCH):
                terms = self.validation_terms(cast("LatentVariableModel", self.model),
                                              part[start:start + VALIDATION_BATCH])
                sums[:2] += term_sums(terms).cpu()
                sums[2] += terms.surrogate.sum().double().cpu()
        if self.dist is not None:
            sums = distributed.all_reduce_sum(sums.to(self.device)).cpu()
        return mean_terms(sums[:2], len(x_val)), float(sums[2]) / len(x_val)
