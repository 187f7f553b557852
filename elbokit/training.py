"""The training loop: seeded mini-batches, Adam, validation, early stopping, checkpoints.

The trainer takes a bound (an objective returning :class:`~elbokit.bounds.Terms`), not a
model type. Hot path: batches are index slices of one in-memory tensor, metrics accumulate
on the device and are read back once per epoch (and every ``log_every`` steps for the
progress bar), so no per-example Python work and no per-step host sync. Data larger than
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
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import bounds, distributed, estimators
from .checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from .data.stream import NpyStream, permutation
from .errors import ConfigError


@dataclass
class TrainConfig:
    """How to optimize. ``iwae_k`` set: maximize IWAE_k instead of the (beta-)ELBO."""

    epochs: int = 50
    batch_size: int = 128
    lr: float = 1e-3
    n_samples: int = 1
    beta: float = 1.0
    iwae_k: int | None = None
    kl: str = "auto"
    estimator: str = "auto"
    temperature: float = 1.0
    min_temperature: float = 0.5
    anneal_rate: float = 1e-4
    baseline: str = "both"
    kl_warmup: int = 0
    free_bits: float = 0.0
    patience: int | None = 10
    seed: int = 0
    log_every: int = 20

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, not {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be >= 1, not {self.batch_size}"),
            (math.isfinite(self.lr) and self.lr > 0, f"learning rate must be > 0, not {self.lr}"),
            (self.n_samples >= 1, f"n-samples must be >= 1, not {self.n_samples}"),
            (math.isfinite(self.beta) and self.beta >= 0, f"beta must be >= 0, not {self.beta}"),
            (self.iwae_k is None or self.iwae_k >= 1, f"iwae-k must be >= 1, not {self.iwae_k}"),
            (self.kl in ("analytic", "mc", "auto"),
             f"kl must be analytic, mc or auto, not {self.kl!r}"),
            (self.patience is None or self.patience >= 1,
             f"patience must be >= 1, not {self.patience}"),
            (self.kl_warmup >= 0, f"kl-warmup must be >= 0 epochs, not {self.kl_warmup}"),
            (math.isfinite(self.free_bits) and self.free_bits >= 0,
             f"free-bits must be >= 0 nats, not {self.free_bits}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.iwae_k is not None and (self.beta != 1.0 or self.kl_warmup or self.free_bits):
            raise ConfigError("--beta, --kl-warmup and --free-bits apply to the ELBO; the IWAE "
                              "bound has no KL term to weigh")
        if self.estimator not in estimators.NAMES:
            raise ConfigError(f"unknown estimator {self.estimator!r}; choose from "
                              f"{', '.join(estimators.NAMES)}")

    def objective(self, model: torch.nn.Module) -> estimators.Estimator:
        """The gradient estimator of the bound this configuration maximizes, for ``model``."""
        dim = getattr(getattr(model, "config", None), "dim", None)
        return estimators.build(self.estimator, model, dim, n_samples=self.n_samples,
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


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run a block with torch's RNG seeded, leaving the caller's RNG state untouched (the
    CPU one, and the current GPU's once CUDA is in use)."""
    if seed is None:
        yield
        return
    devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The batch order of ``epoch``: a permutation of ``range(n)`` fixed by (seed, epoch).
    (A stream whose rows fit in one chunk is shuffled by the same permutation.)"""
    return permutation(n, seed, epoch)


@torch.no_grad()
def evaluate_terms(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1024,
                   n_samples: int = 1, kl: str = "auto") -> dict[str, float]:
    """Mean ELBO, reconstruction and KL over ``x: [n, dim]``, in nats per example (exact
    sums over z when z can be enumerated, else ``n_samples`` Monte-Carlo draws)."""
    return mean_terms(total_terms(model, x, batch_size, n_samples, kl), len(x))


@torch.no_grad()
def total_terms(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1024,
                n_samples: int = 1, kl: str = "auto") -> torch.Tensor:
    """[sum reconstruction, sum KL] over ``x: [n, dim]`` (float64, on the CPU): what
    :func:`evaluate_terms` averages, and what ranks add up when they split the examples."""
    exact = bounds.enumerable(model, bounds.AUTO_ENUMERATE)  # small discrete z: exact ELBO
    sums = torch.zeros(2, dtype=torch.float64)
    for start in range(0, len(x), batch_size):
        batch = x[start:start + batch_size]
        terms = (bounds.enumerated_elbo(model, batch) if exact
                 else bounds.elbo(model, batch, n_samples=n_samples, kl=kl))
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


def adam(params: list[torch.nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam with one fused kernel for all parameters where torch has one (CPU and CUDA,
    floating parameters): measured +20-27% training throughput on the CPU over the
    per-tensor loop (``benchmarks/throughput.py``). The same algorithm; last-bit rounding
    differs from the unfused step. A checkpoint's optimizer state carries its ``fused``
    flag, so a run resumes with the implementation it started with."""
    fusable = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fusable or None)


class Trainer:
    """Fits ``model`` by maximizing ``config.objective()`` with Adam.

    Early stopping and the model kept follow the validation value of the objective: the
    beta-ELBO reconstruction - beta KL (beta = ``config.beta``, the weight after any warm-up;
    beta = 1: the ELBO), or the ELBO when training IWAE_k. Reported ELBOs are the true ones.

    ``run_dir``: where ``metrics.jsonl`` and the per-epoch checkpoint go (None: nothing is
    written). ``on_improve(model)`` is called whenever validation ELBO reaches a new best
    (the run saves its model there). ``resume=True`` continues from the run's checkpoint.
    ``objective``: an ``nn.Module`` called as ``objective(model, batch) -> Terms`` to use
    instead of ``config.objective(model)`` (e.g. the semi-supervised M2 objective).
    ``batch_transform``: applied to every training batch (dynamic binarization draws
    ``torch.bernoulli`` of it; torch's RNG is checkpointed, so resumes stay exact).
    ``compile``: run ``objective(model, batch)`` of the training step through
    ``torch.compile`` (default mode); validation stays eager.

    Under a process group of several ranks (see the module docstring) every rank constructs
    its trainer the same way and passes the same, whole ``x_train``; ``run_dir`` is written
    and ``on_improve`` called by rank 0 only.
    """

    def __init__(self, model: torch.nn.Module, config: TrainConfig, run_dir: Path | None = None,
                 progress: bool = False,
                 on_improve: Callable[[torch.nn.Module], None] | None = None,
                 objective: torch.nn.Module | None = None,
                 batch_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 compile: bool = False) -> None:
        self.model = model
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.dist = distributed.current()
        self.main = self.dist is None or self.dist.is_main
        self.progress = progress and self.main
        self.on_improve = on_improve
        self.batch_transform = batch_transform
        self.device = next(model.parameters()).device  # where the caller put the model
        if objective is None:
            with seeded(config.seed):  # a learned baseline starts from the same weights every run
                objective = config.objective(model)
        self.objective = objective.to(self.device)
        # Learned baselines are trained by the same optimizer as the model.
        self.params = [*model.parameters(), *self.objective.parameters()]
        self.optimizer = adam(self.params, config.lr)
        # The estimator's running state (moving averages, step counters) is kept equal on
        # every rank after each step (distributed.sync_buffers). The model's buffers are taken
        # as constants (elbokit's hold the prior's parameters and the data's standardization).
        self.buffers = list(self.objective.buffers()) if self.dist is not None else []
        # fallback_random: compiled code draws its random numbers with eager torch's
        # generator, so a compiled run samples what the uncompiled one does.
        self.forward: Callable[[torch.nn.Module, torch.Tensor], bounds.Terms] = (
            torch.compile(self.objective, options={"fallback_random": True}) if compile
            else self.objective)
        self.state = {"epoch": 0, "best_val": None, "best_epoch": None, "bad_epochs": 0,
                      "stopped_early": False}
        self.best_state: dict[str, torch.Tensor] | None = None

    # -- persistence -------------------------------------------------------------------
    def _metrics_path(self) -> Path | None:
        return self.run_dir / "metrics.jsonl" if self.run_dir is not None else None

    def resume(self) -> None:
        """Load the run's checkpoint: weights, optimizer, counters and RNG state."""
        assert self.run_dir is not None
        state, model_state, optimizer_state, rng, extra = load_checkpoint(self.run_dir)
        self.model.load_state_dict(model_state)
        if "estimator" in extra:
            self.objective.load_state_dict(extra["estimator"])
        self.optimizer.load_state_dict(optimizer_state)
        self._restore_rng(rng, extra.get("rng", {}), state["epoch"])
        self.state = state
        # Drop metrics lines from epochs after the checkpoint (a crash mid-epoch).
        path = self._metrics_path()
        if self.main and path is not None and path.exists():
            lines = [ln for ln in path.read_text().splitlines()
                     if ln.strip() and json.loads(ln)["epoch"] <= state["epoch"]]
            path.write_text("".join(ln + "\n" for ln in lines))

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

    def _save(self) -> None:
        if self.run_dir is not None:
            rng = self._rng_states()  # every rank takes part in gathering them
            if not self.main:
                return
            # The configuration travels with the state, so a checkpoint describes itself.
            model_config = getattr(self.model, "config", None)
            config = {"train": asdict(self.config),
                                "model": model_config.to_dict() if hasattr(model_config, "to_dict") else None}
            extra = {"estimator": self.objective.state_dict()}
            if rng is not None:
                extra["rng"] = rng
            save_checkpoint(self.run_dir, self.model, self.optimizer, self.state, config,
                            extra=extra)

    # -- the loop ----------------------------------------------------------------------
    def fit(self, x_train: torch.Tensor | NpyStream, x_val: torch.Tensor | None = None,
            resume: bool = False) -> list[dict]:
        """Train on ``x_train: [n, dim]`` (a tensor, or a :class:`~elbokit.data.NpyStream`
        read chunk by chunk: data larger than memory); early-stop on the ELBO of ``x_val``.
        Returns the per-epoch history (also appended to ``metrics.jsonl``)."""
        cfg = self.config
        if self.dist is not None and not isinstance(x_train, torch.Tensor):
            raise ConfigError("streamed training data runs in one process; under torchrun "
                              "every rank would read the whole file (load it in memory, or "
                              "train without torchrun)")
        if resume and self.run_dir is not None and has_checkpoint(self.run_dir):
            self.resume()
        elif self.dist is None:
            torch.manual_seed(cfg.seed)
        else:  # each rank its own posterior samples
            torch.manual_seed(distributed.rank_seed(cfg.seed, self.dist.rank))
        if self.dist is not None:
            distributed.broadcast_state([self.model, self.objective])
        n = len(x_train)
        steps = math.ceil(n / cfg.batch_size)
        history: list[dict] = []
        start_epoch = self.state["epoch"]
        bar = tqdm(total=cfg.epochs * steps, initial=start_epoch * steps, unit="step",
                   disable=not self.progress, dynamic_ncols=True, leave=False)
        try:
            for epoch in range(start_epoch + 1, cfg.epochs + 1):
                if self.state["stopped_early"]:
                    break
                history.append(self._epoch(epoch, x_train, x_val, steps, bar))
        finally:
            bar.close()
        if self.dist is not None:  # rank 0's files are complete before anyone reads them
            distributed.barrier(self.device)
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return history

    def _epoch(self, epoch: int, x_train: torch.Tensor | NpyStream, x_val: torch.Tensor | None,
               steps: int, bar: tqdm) -> dict:
        cfg, model, optimizer = self.config, self.model, self.optimizer
        began = time.perf_counter()
        model.train()
        self.objective.train()
        device = x_train.device if isinstance(x_train, torch.Tensor) else self.device
        sums = torch.zeros(2, dtype=torch.float64, device=device)
        seen = 0  # examples this process has trained on in this epoch
        for step, batch in enumerate(self._batches(x_train, epoch)):
            if self.dist is not None:  # this rank's contiguous slice of the global batch
                seen += self._distributed_step(epoch, step, steps, batch, sums)
            else:
                if self.batch_transform is not None:  # e.g. a fresh binarization (torch's RNG)
                    batch = self.batch_transform(batch)
                if cfg.kl_warmup:  # a function of (epoch, step) only: resumed runs see the same
                    self.objective.beta = cfg.beta_at(epoch, step / steps)
                terms = self.forward(model, batch)
                loss = -terms.surrogate.mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    sums += term_sums(terms)
                seen += len(batch)
            bar.update(1)
            if self.progress and (step + 1) % cfg.log_every == 0:
                bar.set_postfix(_postfix(epoch, mean_terms(sums, seen)), refresh=False)
        if self.dist is not None:  # every rank's sums, over all n examples
            distributed.all_reduce_sum(sums)
        train = mean_terms(sums, len(x_train))
        record: dict = {"epoch": epoch, "train": train}
        if cfg.kl_warmup:
            record["beta"] = cfg.beta_at(epoch, 1.0)
        model.eval()
        if x_val is not None and len(x_val) > 0:
            record["val"] = self._validate(x_val)
            # Select on the objective being maximized: with beta != 1 the best true ELBO may
            # sit at an epoch that is not the best trade-off the user asked for.
            val = record["val"]
            self._early_stopping(epoch, val["reconstruction"] - cfg.beta * val["kl"]
                                 if cfg.iwae_k is None else val["elbo"])
        else:
            self.state["best_epoch"] = epoch
            if self.on_improve is not None and self.main:
                self.on_improve(model)
        record["seconds"] = time.perf_counter() - began
        self.state["epoch"] = epoch
        bar.set_postfix(_postfix(epoch, train, record.get("val")), refresh=True)
        if self.main:
            self._append_metrics(record)
        self._save()
        return record

    def _batches(self, x_train: torch.Tensor | NpyStream, epoch: int) -> Iterator[torch.Tensor]:
        """The (global) batches of ``epoch``, ``[batch_size, dim]`` each (the last may be
        smaller): slices of :func:`epoch_order` of an in-memory tensor, or a stream's
        chunk-shuffled batches in the model's dtype on its device. Either depends on (seed,
        epoch) only, so a resumed run takes the uninterrupted one's batches."""
        size, seed = self.config.batch_size, self.config.seed
        if isinstance(x_train, torch.Tensor):
            order = epoch_order(len(x_train), seed, epoch).to(x_train.device)
            for start in range(0, len(x_train), size):
                yield x_train[order[start:start + size]]
            return
        dtype = next(self.model.parameters()).dtype
        for batch in x_train.batches(size, seed, epoch, dtype):
            yield batch.to(self.device)

    def _distributed_step(self, epoch: int, step: int, steps: int, global_batch: torch.Tensor,
                          sums: torch.Tensor) -> int:
        """One optimizer step on this rank's slice of ``global_batch``; adds the slice's
        term sums to ``sums`` and returns its size.

        Gradients are averaged by an explicit all-reduce after ``backward`` rather than by
        wrapping a module in DistributedDataParallel: the objective is called as
        ``objective(model, batch)`` (DDP wraps one module's forward), some estimators call
        ``autograd.grad`` inside it (DReG) or leave parameters unused, the learned baseline's
        parameters live in the objective, and a rank's slice can be empty on the last batch.
        One flat all-reduce per step of all trained parameters (the model's and the
        objective's) handles all of these, keeps ``state_dict`` keys and ``torch.compile``
        untouched, and costs about what DDP's bucketed reduction does at these model sizes
        (DDP's overlap of communication with the backward pass buys little here)."""
        cfg, optimizer = self.config, self.optimizer
        assert self.dist is not None
        batch = global_batch[self.dist.shard(len(global_batch))]
        if cfg.kl_warmup:  # a function of (epoch, step) only: resumed runs see the same
            self.objective.beta = cfg.beta_at(epoch, step / steps)
        optimizer.zero_grad(set_to_none=True)
        if len(batch):  # empty when the last global batch has fewer examples than ranks
            if self.batch_transform is not None:  # this rank's draw (its own RNG stream)
                batch = self.batch_transform(batch)
            terms = self.forward(self.model, batch)
            # A sum over the slice divided by the *global* batch size: the ranks' gradients
            # then add up to the gradient of the global-batch mean, whatever the slice sizes.
            loss = -terms.surrogate.sum() / len(global_batch)
            loss.backward()
            with torch.no_grad():
                sums += term_sums(terms)
        distributed.all_reduce_gradients(self.params)
        optimizer.step()
        distributed.sync_buffers(self.buffers, len(batch) / len(global_batch), self.device)
        return len(batch)

    def _validate(self, x_val: torch.Tensor) -> dict[str, float]:
        """Validation ELBO terms; under several processes each rank scores its contiguous
        share of ``x_val`` and the sums are all-reduced, so every rank gets the same numbers
        (and makes the same early-stopping decision)."""
        if self.dist is None:
            return evaluate_terms(self.model, x_val, kl=self.config.kl)
        sums = total_terms(self.model, x_val[self.dist.shard(len(x_val))], kl=self.config.kl)
        sums = distributed.all_reduce_sum(sums.to(self.device)).cpu()
        return mean_terms(sums, len(x_val))

    def _early_stopping(self, epoch: int, val_objective: float) -> None:
        state = self.state
        if state["best_val"] is None or val_objective > state["best_val"]:
            state.update(best_val=val_objective, best_epoch=epoch, bad_epochs=0)
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            if self.on_improve is not None and self.main:
                self.on_improve(self.model)
        else:
            state["bad_epochs"] += 1
            if self.config.patience is not None and state["bad_epochs"] >= self.config.patience:
                state["stopped_early"] = True

    def _append_metrics(self, record: dict) -> None:
        path = self._metrics_path()
        if path is not None:
            with path.open("a") as f:
                f.write(json.dumps(record) + "\n")


def _postfix(epoch: int, train: dict[str, float], val: dict | None = None) -> dict:
    out = {"epoch": epoch, "elbo": f"{train['elbo']:.2f}", "rec": f"{train['reconstruction']:.2f}",
           "kl": f"{train['kl']:.2f}"}
    if val is not None:
        out["val_elbo"] = f"{val['elbo']:.2f}"
    return out

