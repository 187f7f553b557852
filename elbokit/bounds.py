"""Bounds on log p(x), per example, in nats.

Pure functions over the model protocol (:mod:`elbokit.models.base`); nothing here knows a
model class. Every bound is built from one primitive, :func:`sample_log_weights`, which
draws z ~ q(z|x) and returns the three log-densities per sample and example:

    log w = log p(x|z) + log p(z) - log q(z|x)

- ELBO   = E_q[log p(x|z)] - KL(q(z|x) || p(z))                      (Kingma & Welling 2014)
- IWAE_k = E[log (1/k) sum_i w_i] ,  ELBO = IWAE_1 <= IWAE_k <= log p(x)  (Burda et al. 2016)
- log p(x) estimate = log (1/k) sum_i w_i with a delta-method standard error.

Gradients flow through reparameterized samples (``rsample``). Reductions over the batch
happen in the trainer, never here.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import distributions as D

from .models.base import LatentVariableModel

KL = Literal["analytic", "mc", "auto"]


@dataclass
class Terms:
    """Per-example terms of a bound, each ``[batch]``.

    ``elbo`` is always the true ELBO (``reconstruction - kl``, beta = 1); ``surrogate`` is
    the objective whose gradient the trainer follows (beta-weighted ELBO or IWAE_k).
    """

    elbo: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor
    surrogate: torch.Tensor


class LogWeights:
    """``k`` samples z ~ q(z|x) per example and their log-densities, each ``[k, batch]``.

    ``log_likelihood`` (log p(x|z)) is computed at once; ``log_prior`` (log p(z)) and
    ``log_posterior`` (log q(z|x)) only when asked for: the ELBO with an analytic KL never
    needs them, and skipping them is a measurable share of a small model's step.
    """

    def __init__(self, z: torch.Tensor, log_likelihood: torch.Tensor, prior: D.Distribution,
                 posterior: D.Distribution) -> None:
        self.z = z
        self.log_likelihood = log_likelihood
        self.prior = prior
        self.posterior = posterior

    @functools.cached_property
    def log_prior(self) -> torch.Tensor:
        return self.prior.log_prob(self.z)

    @functools.cached_property
    def log_posterior(self) -> torch.Tensor:
        return self.posterior.log_prob(self.z)

    @property
    def log_w(self) -> torch.Tensor:
        """Importance log-weights log p(x, z) - log q(z | x): [k, batch]."""
        return self.log_likelihood + self.log_prior - self.log_posterior


def sample_log_weights(model: LatentVariableModel, x: torch.Tensor, k: int = 1) -> LogWeights:
    """Draw ``k`` reparameterized samples per example. ``x: [batch, dim]``."""
    q = model.posterior(x)
    z = q.rsample((k,))  # [k, batch, latent]
    return LogWeights(z, model.likelihood(z).log_prob(x), model.prior(), q)


def kl_divergence(q: D.Distribution, p: D.Distribution, weights: LogWeights | None = None,
                  kl: KL = "auto") -> torch.Tensor:
    """KL(q || p) per example: closed form when torch registers one, else Monte Carlo.

    ``kl="mc"`` (or ``"auto"`` without a registered closed form) averages
    log q(z) - log p(z) over the samples in ``weights``.
    """
    if kl not in ("analytic", "mc", "auto"):
        raise ValueError(f"kl must be 'analytic', 'mc' or 'auto', not {kl!r}")
    if kl != "mc":
        try:
            return D.kl_divergence(q, p)
        except NotImplementedError:
            if kl == "analytic":
                raise NotImplementedError(
                    f"no closed-form KL registered for {type(q).__name__} || "
                    f"{type(p).__name__}; use kl='mc' or 'auto'"
                ) from None
    if weights is None:
        raise ValueError("a Monte-Carlo KL needs the samples' log-weights")
    return (weights.log_posterior - weights.log_prior).mean(0)


def _terms(model: LatentVariableModel, x: torch.Tensor, k: int, kl: KL,
           beta: float | None) -> Terms:
    """ELBO terms from ``k`` samples; surrogate = reconstruction - beta KL, or IWAE_k when
    ``beta`` is None."""
    weights = sample_log_weights(model, x, k)
    reconstruction = weights.log_likelihood.mean(0)
    divergence = kl_divergence(weights.posterior, weights.prior, weights, kl)
    surrogate = (_log_mean_exp(weights.log_w) if beta is None
                 else reconstruction - beta * divergence)
    return Terms(elbo=reconstruction - divergence, reconstruction=reconstruction,
                 kl=divergence, surrogate=surrogate)


def elbo(model: LatentVariableModel, x: torch.Tensor, n_samples: int = 1, kl: KL = "auto",
         beta: float = 1.0) -> Terms:
    """The evidence lower bound per example. ``x: [batch, dim]`` -> :class:`Terms` ([batch]).

    reconstruction = (1/S) sum_s log p(x | z_s),  z_s ~ q(z|x),  S = ``n_samples``
    kl             = KL(q(z|x) || p(z))  (analytic, Monte Carlo, or auto)
    elbo           = reconstruction - kl;    surrogate = reconstruction - beta * kl
    """
    return _terms(model, x, n_samples, kl, beta)


def _log_mean_exp(log_w: torch.Tensor) -> torch.Tensor:
    """log (1/k) sum_i exp(log_w_i) over the leading axis, stably."""
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


def iwae_bound(model: LatentVariableModel, x: torch.Tensor, k: int) -> torch.Tensor:
    """The importance-weighted bound IWAE_k per example: ``x: [batch, dim]`` -> ``[batch]``."""
    return _log_mean_exp(sample_log_weights(model, x, k).log_w)


def iwae(model: LatentVariableModel, x: torch.Tensor, k: int, kl: KL = "auto") -> Terms:
    """Train on IWAE_k: ``surrogate`` is the IWAE bound, while ``elbo``, ``reconstruction``
    and ``kl`` are the ELBO terms estimated from the same ``k`` samples (for monitoring)."""
    return _terms(model, x, k, kl, None)


@torch.no_grad()
def log_likelihood(model: LatentVariableModel, x: torch.Tensor, k: int = 1000,
                   chunk: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Importance-sampled estimate of log p(x) with its Monte-Carlo standard error.

    ``x: [batch, dim]`` -> ``(estimate [batch], stderr [batch])``. The ``k`` proposals from
    q(z|x) are drawn ``chunk`` at a time, so memory is O(chunk * batch), not O(k * batch).

    estimate = log mean_i w_i (a stochastic lower bound whose bias falls as O(1/k));
    stderr   = sd(w) / (sqrt(k) mean(w)), the delta-method error of the log of the mean,
    computed from running log-sum-exps of log w and 2 log w so that nothing overflows.
    """
    if k < 2:
        raise ValueError(f"log_likelihood needs k >= 2 samples for a standard error, not {k}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, not {chunk}")
    lse1 = lse2 = None
    remaining = k
    while remaining > 0:
        n = min(chunk, remaining)
        log_w = sample_log_weights(model, x, n).log_w  # [n, batch]
        part1, part2 = torch.logsumexp(log_w, 0), torch.logsumexp(2 * log_w, 0)
        lse1 = part1 if lse1 is None else torch.logaddexp(lse1, part1)
        lse2 = part2 if lse2 is None else torch.logaddexp(lse2, part2)
        remaining -= n
    log_k = math.log(k)
    estimate = lse1 - log_k
    # ratio = mean(w^2) / mean(w)^2 >= 1; unbiased variance of w relative to mean(w)^2 is
    # k/(k-1) (ratio - 1), and the standard error of the mean divides that by k.
    ratio = torch.exp(lse2 - log_k - 2 * estimate)
    stderr = torch.sqrt(torch.clamp(ratio - 1, min=0) / (k - 1))
    return estimate, stderr
