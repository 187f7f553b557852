"""Diagnostics of a fitted latent-variable model: where the ELBO's nats go, per latent variable.

Pure functions over the model protocol (:mod:`elbokit.models.base`), evaluated on a data set
``x: [n, dim]``:

- KL per latent variable: mean_x KL(q(z_i | x) || p(z_i)), the rate each variable pays
  (:func:`elbokit.bounds.kl_per_dimension`; the variables are q's independent components).
- Active units (Burda et al. 2016): variable i is active when its posterior mean moves with
  x, Cov_x(E_q[z_i | x]) > 0.01 (for a categorical variable, summed over its categories).
  An inactive variable carries no information about x: its posterior is the same for every x.
- The gap log p(x) - ELBO = E_x KL(q(z | x) || p(z | x)): how far the encoder is from the true
  posterior (needs a log-likelihood estimate; computed by the caller).
- Mutual information I_q(x; z) = E_x E_q(z|x)[log q(z | x) - log q(z)] with the aggregate
  posterior q(z) = 1/N sum_n q(z | x_n) (Hoffman & Johnson 2016): how many nats z carries
  about x. At most log N on N examples. Estimated with one z ~ q(z | x_i) per example and the
  exact mixture q(z_i) over the (at most ``max_examples``) examples.
- Posterior collapse: no active unit; the decoder models x without z, and the KL is ~0.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import bounds
from .models.base import LatentVariableModel
from .rng import seeded

ACTIVE_THRESHOLD = 0.01

__all__ = ["ACTIVE_THRESHOLD", "posterior_means", "kl_per_dimension", "active_units", "is_one_hot",
           "mutual_information", "diagnose"]


def _batches(x: torch.Tensor, batch_size: int):
    return (x[s:s + batch_size] for s in range(0, len(x), batch_size))


@torch.no_grad()
def posterior_means(model: LatentVariableModel, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """E_q[z | x] per example: ``[n, dim] -> [n, *event]`` (probabilities for a discrete z)."""
    return torch.cat([model.posterior(b).mean for b in _batches(x, batch_size)])


@torch.no_grad()
def kl_per_dimension(model: LatentVariableModel, x: torch.Tensor,
                     batch_size: int = 1024) -> torch.Tensor | None:
    """mean_x KL(q(z_i | x) || p(z_i)) per latent variable ``[latent]`` (nats), or None when
    there is no closed form per variable."""
    total, prior = None, model.prior()
    for b in _batches(x, batch_size):
        per = bounds.kl_per_dimension(model.posterior(b), prior)
        if per is None:
            return None
        total = per.sum(0) if total is None else total + per.sum(0)
    return total / len(x)


def active_units(means: torch.Tensor, threshold: float = ACTIVE_THRESHOLD,
                 one_hot: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Cov_x(E_q[z_i|x]) [latent], active [latent] bool)`` from ``means: [n, *event]``.
    ``one_hot``: the last axis holds the categories of categorical variables, whose variances
    are summed (one unit per variable, not per category)."""
    variance = means.double().var(0) if len(means) > 1 else torch.zeros(means.shape[1:]).double()
    if one_hot:
        variance = variance.sum(-1)
    return variance.reshape(-1), variance.reshape(-1) > threshold


def is_one_hot(q: torch.distributions.Distribution) -> bool:
    """Whether q's samples are one-hot codes (categorical latent variables)."""
    while isinstance(q, torch.distributions.Independent):
        q = q.base_dist
    return isinstance(q, torch.distributions.OneHotCategorical)


@torch.no_grad()
def mutual_information(model: LatentVariableModel, x: torch.Tensor, max_examples: int = 2000,
                       seed: int | None = 0, chunk: int = 256) -> float:
    """Estimate of I_q(x; z) in nats over (a seeded subset of at most ``max_examples`` of) x.

    For each example i: z_i ~ q(z | x_i), and log q(z_i) = logsumexp_j log q(z_i | x_j) - log N
    over all N examples (O(N^2) density evaluations, ``chunk`` z's at a time). Never
    negative (a negative Monte-Carlo estimate is reported as 0).
    """
    with seeded(seed):
        if len(x) > max_examples:
            x = x[torch.randperm(len(x))[:max_examples]]
        q = model.posterior(x)  # batch [N]
        z = q.sample()  # [N, *event]
        log_q_own = q.log_prob(z)  # [N]
        n = len(x)
        log_aggregate = []
        for s in range(0, n, chunk):
            zs = z[s:s + chunk]  # [c, *event]
            # log q(z_c | x_j) for every pair: [c, N] via broadcasting z over q's batch.
            pairs = q.log_prob(zs.reshape(len(zs), 1, *zs.shape[1:]).expand(len(zs), n, *q.event_shape))
            log_aggregate.append(bounds.log_mean_exp(pairs, -1))
    estimate = float((log_q_own - torch.cat(log_aggregate)).mean())
    # I(x; z) >= 0, but the one-sample estimate is noisy and can fall below 0 when z carries
    # (almost) nothing about x (e.g. -6e-4 nats, or -2e-9 from rounding for a collapsed
    # encoder, printed "-0.00"). Clamping at 0 only moves a negative estimate towards the
    # true value, so it never makes the estimate worse.
    return max(estimate, 0.0)


def diagnose(model: LatentVariableModel, x: torch.Tensor, elbo: float | None = None,
             log_likelihood: float | None = None, threshold: float = ACTIVE_THRESHOLD,
             seed: int = 0) -> dict:
    """All of the above on ``x: [n, dim]`` as a JSON-able dict:

    ``{"n_examples", "latent_dim" (latent variables), "kl_per_dimension" (list or absent),
    "posterior_mean_variance", "active", "active_units", "active_threshold",
    "active_units_per_layer" (two or more stochastic layers, the model's ``latent_layers``:
    their sizes within z, bottom first), "mutual_information", "mutual_information_limit"
    (log n), "gap" (when ``elbo`` and
    ``log_likelihood`` are given), "collapsed", "warnings" (plain sentences)}``.
    """
    variance, active = active_units(posterior_means(model, x), threshold,
                                    one_hot=is_one_hot(model.posterior(x[:1])))
    kl = kl_per_dimension(model, x)
    n_active = int(active.sum())
    total_kl = float(kl.sum()) if kl is not None else None
    out: dict = {
        "n_examples": len(x), "latent_dim": len(variance),
        "posterior_mean_variance": variance.tolist(), "active": active.tolist(),
        "active_units": n_active, "active_threshold": threshold,
        "mutual_information": mutual_information(model, x, seed=seed),
        "mutual_information_limit": math.log(min(len(x), 2000)),
    }
    layers = getattr(model, "latent_layers", ())
    if len(layers) > 1:  # z = [z1, z2, ...]: the active units of each stochastic layer
        ends = np.cumsum(layers).tolist()
        out["active_units_per_layer"] = [int(active[end - size:end].sum())
                                         for size, end in zip(layers, ends, strict=True)]
    if kl is not None:
        out["kl_per_dimension"] = kl.double().tolist()
    if elbo is not None and log_likelihood is not None:
        out["gap"] = log_likelihood - elbo
    out["collapsed"] = n_active == 0
    warnings = []
    if n_active == 0:
        what = f" and the KL is {total_kl:.3g} nats" if total_kl is not None else ""
        warnings.append(f"posterior collapse: no latent variable's posterior mean varies with x "
                        f"(all {len(variance)} inactive){what}; the decoder models the data "
                        "without z. Try --kl-warmup, --free-bits or a lower --beta.")
    elif n_active < len(variance):
        inactive = np.flatnonzero(~active.numpy()).tolist()
        out["inactive"] = inactive
    out["warnings"] = warnings
    return out
