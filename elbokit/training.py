"""The training loop: seeded mini-batches, Adam, validation, early stopping, checkpoints.

The trainer takes a bound (an objective returning :class:`~elbokit.bounds.Terms`), not a
model type. Hot path: batches are index slices of one in-memory tensor, metrics accumulate
on the device and are read back once per epoch (and every ``log_every`` steps for the
progress bar), so no per-example Python work and no per-step host sync.

Determinism: the batch order of epoch ``e`` is a permutation drawn from a generator seeded
by ``(seed, e)``, and the torch RNG state (the posterior samples) is part of every
checkpoint, so a resumed run is bit-for-bit the run that was never interrupted (CPU, same
thread count).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import bounds, estimators
from .checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
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
    """Run a block with torch's RNG seeded, leaving the caller's RNG state untouched."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The batch order of ``epoch``: a permutation of ``range(n)`` fixed by (seed, epoch)."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(2, dtype=np.uint64)
    generator = torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))
    return torch.randperm(n, generator=generator)


@torch.no_grad()
def evaluate_terms(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1024,
                   n_samples: int = 1, kl: str = "auto") -> dict[str, float]:
    """Mean ELBO, reconstruction and KL over ``x: [n, dim]``, in nats per example (exact
    sums over z when z can be enumerated, else ``n_samples`` Monte-Carlo draws)."""
    exact = bounds.enumerable(model, bounds.AUTO_ENUMERATE)  # small discrete z: exact ELBO
    sums = torch.zeros(2, dtype=torch.float64)
    for start in range(0, len(x), batch_size):
        batch = x[start:start + batch_size]
        terms = (bounds.enumerated_elbo(model, batch) if exact
                 else bounds.elbo(model, batch, n_samples=n_samples, kl=kl))
        sums += term_sums(terms).cpu()
    return mean_terms(sums, len(x))


def term_sums(terms: bounds.Terms) -> torch.Tensor:
    """[sum reconstruction, sum KL] over a batch, accumulated in float64: ``[2]``."""
    return torch.stack([terms.reconstruction.double().sum(), terms.kl.double().sum()])


def mean_terms(sums: torch.Tensor, n: int) -> dict[str, float]:
    """Per-example means from :func:`term_sums`; the ELBO is reconstruction - KL by
    definition (beta = 1, whatever the objective weighed), so the reported three agree
    exactly."""
    reconstruction, kl = (sums / n).tolist()
    return {"elbo": reconstruction - kl, "reconstruction": reconstruction, "kl": kl}


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
    """

    def __init__(self, model: torch.nn.Module, config: TrainConfig, run_dir: Path | None = None,
                 progress: bool = False,
                 on_improve: Callable[[torch.nn.Module], None] | None = None,
                 objective: torch.nn.Module | None = None,
                 batch_transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.model = model
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress = progress
        self.on_improve = on_improve
        self.batch_transform = batch_transform
        if objective is None:
            with seeded(config.seed):  # a learned baseline starts from the same weights every run
                objective = config.objective(model)
        self.objective = objective
        # Learned baselines are trained by the same optimizer as the model.
        self.optimizer = torch.optim.Adam([*model.parameters(), *self.objective.parameters()],
                                          lr=config.lr)
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
        torch.set_rng_state(rng)
        self.state = state
        # Drop metrics lines from epochs after the checkpoint (a crash mid-epoch).
        path = self._metrics_path()
        if path is not None and path.exists():
            lines = [ln for ln in path.read_text().splitlines()
                     if ln.strip() and json.loads(ln)["epoch"] <= state["epoch"]]
            path.write_text("".join(ln + "\n" for ln in lines))

    def _save(self) -> None:
        if self.run_dir is not None:
            # The configuration travels with the state, so a checkpoint describes itself.
            model_config = getattr(self.model, "config", None)
            config = {"train": asdict(self.config),
                                "model": model_config.to_dict() if hasattr(model_config, "to_dict") else None}
            save_checkpoint(self.run_dir, self.model, self.optimizer, self.state, config,
                            extra={"estimator": self.objective.state_dict()})

    # -- the loop ----------------------------------------------------------------------
    def fit(self, x_train: torch.Tensor, x_val: torch.Tensor | None = None,
            resume: bool = False) -> list[dict]:
        """Train on ``x_train: [n, dim]``; early-stop on the ELBO of ``x_val``.
        Returns the per-epoch history (also appended to ``metrics.jsonl``)."""
        cfg = self.config
        if resume and self.run_dir is not None and has_checkpoint(self.run_dir):
            self.resume()
        else:
            torch.manual_seed(cfg.seed)
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
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return history

    def _epoch(self, epoch: int, x_train: torch.Tensor, x_val: torch.Tensor | None,
               steps: int, bar: tqdm) -> dict:
        cfg, model, optimizer = self.config, self.model, self.optimizer
        began = time.perf_counter()
        model.train()
        self.objective.train()
        order = epoch_order(len(x_train), cfg.seed, epoch).to(x_train.device)
        sums = torch.zeros(2, dtype=torch.float64, device=x_train.device)
        for step in range(steps):
            batch = x_train[order[step * cfg.batch_size:(step + 1) * cfg.batch_size]]
            if self.batch_transform is not None:  # e.g. a fresh binarization (torch's RNG)
                batch = self.batch_transform(batch)
            if cfg.kl_warmup:  # a function of (epoch, step) only: resumed runs see the same
                self.objective.beta = cfg.beta_at(epoch, step / steps)
            terms = self.objective(model, batch)
            loss = -terms.surrogate.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                sums += term_sums(terms)
            bar.update(1)
            if self.progress and (step + 1) % cfg.log_every == 0:
                seen = min((step + 1) * cfg.batch_size, len(x_train))
                bar.set_postfix(_postfix(epoch, mean_terms(sums, seen)), refresh=False)
        train = mean_terms(sums, len(x_train))
        record: dict = {"epoch": epoch, "train": train}
        if cfg.kl_warmup:
            record["beta"] = cfg.beta_at(epoch, 1.0)
        model.eval()
        if x_val is not None and len(x_val) > 0:
            record["val"] = evaluate_terms(model, x_val, kl=cfg.kl)
            # Select on the objective being maximized: with beta != 1 the best true ELBO may
            # sit at an epoch that is not the best trade-off the user asked for.
            val = record["val"]
            self._early_stopping(epoch, val["reconstruction"] - cfg.beta * val["kl"]
                                 if cfg.iwae_k is None else val["elbo"])
        else:
            self.state["best_epoch"] = epoch
            if self.on_improve is not None:
                self.on_improve(model)
        record["seconds"] = time.perf_counter() - began
        self.state["epoch"] = epoch
        bar.set_postfix(_postfix(epoch, train, record.get("val")), refresh=True)
        self._append_metrics(record)
        self._save()
        return record

    def _early_stopping(self, epoch: int, val_objective: float) -> None:
        state = self.state
        if state["best_val"] is None or val_objective > state["best_val"]:
            state.update(best_val=val_objective, best_epoch=epoch, bad_epochs=0)
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            if self.on_improve is not None:
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

