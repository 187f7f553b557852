"""Bounds on log p(x), per example, in nats.

Pure functions over the model protocol (:mod:`elbokit.models.base`); nothing here knows a
model class. Every bound is built from one primitive, :func:`sample_log_weights`, which
draws z ~ q(z|x) and returns the three log-densities per sample and example:

    log w = log p(x|z) + log p(z) - log q(z|x)

- ELBO   = E_q[log p(x|z)] - KL(q(z|x) || p(z))                      (Kingma & Welling 2014)
- IWAE_k = E[log (1/k) sum_i w_i] ,  ELBO = IWAE_1 <= IWAE_k <= log p(x)  (Burda et al. 2016)
- log p(x) estimate = log (1/k) sum_i w_i with a delta-method standard error; one pass of
  draws gives it, IWAE_m and the ELBO's terms together (:func:`importance_scores`).
- exact log p(x) = log sum_z p(z) p(x|z) when z can be enumerated.

Gradients flow through reparameterized samples (``rsample``). Reductions over the batch
happen in the trainer, never here. The gradient estimators (:mod:`elbokit.estimators`) build
on the same primitives: :func:`sample_log_weights` (or :func:`draw` and
:func:`log_weights_at` when z's gradient path must be cut), :func:`log_mean_exp` and
:meth:`LogWeights.monte_carlo_kl`.

Enumeration policy, the one place that decides when a discrete z is small enough to sum over
(:func:`enumerable`, :func:`enumeration_limit`); a model says how many values its z takes by
a ``support_size`` attribute (inf or absent: never enumerated):

- ``"score"``: one-off sums, the exact log p(x) of scoring and evaluation, up to
  ``SCORING_LIMIT`` = 2^16 values (a [batch, 2^16] table per batch, once).
- ``"train"``: sums repeated every step or epoch, i.e. the ``enumerate`` estimator (and the
  ``auto`` estimator's choice of it) and the ELBO of validation and evaluation, up to
  ``TRAINING_LIMIT`` = 2^10 values (S decoder passes and a [batch, S] table at every step;
  larger supports are sampled: ``auto`` picks gumbel-st).

This module imports no model class: the KL shortcut of the standard-normal prior is a KL
registered with ``torch.distributions`` next to its type (:mod:`elbokit.models.latents`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

import torch
from torch import distributions as D

from . import numerics

if TYPE_CHECKING:  # the protocol only: bounds import nothing of elbokit.models at run time
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

    @functools.cached_property
    def mean_log_likelihood(self) -> torch.Tensor:
        """The reconstruction term's estimate, (1/k) sum_i log p(x | z_i): ``[batch]``."""
        return self.log_likelihood.mean(0)

    @property
    def log_w(self) -> torch.Tensor:
        """Importance log-weights log p(x, z) - log q(z | x): [k, batch]."""
        return self.log_likelihood + self.log_prior - self.log_posterior

    @property
    def monte_carlo_kl(self) -> torch.Tensor:
        """KL(q || p) estimated from the samples, (1/k) sum_i log q(z_i|x) - log p(z_i):
        ``[batch]``."""
        return (self.log_posterior - self.log_prior).mean(0)


def draw(q: D.Distribution, k: int, reparameterize: bool = True) -> torch.Tensor:
    """``k`` samples of q, reparameterized when q allows it and ``reparameterize`` asks for
    it: ``[k, *batch, *event]``. Samples of a discrete q carry no gradient to its parameters;
    estimators that need one (score function, relaxation, enumeration) live in
    :mod:`elbokit.estimators`."""
    return q.rsample((k,)) if reparameterize and q.has_rsample else q.sample((k,))


def likelihood_log_prob(model: LatentVariableModel, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x | z): ``z: [..., *event]``, ``x: [batch, dim]`` -> ``[...]``, through the
    model's ``likelihood_log_prob`` when it has one (no distribution object per step)."""
    direct = getattr(model, "likelihood_log_prob", None)
    return direct(z, x) if direct is not None else model.likelihood(z).log_prob(x)


def log_weights_at(model: LatentVariableModel, x: torch.Tensor, z: torch.Tensor,
                   posterior: D.Distribution) -> LogWeights:
    """The log-weights of given samples ``z: [k, batch, *event]`` of ``posterior`` (q(z|x),
    possibly with its parameters detached), ``x: [batch, dim]``. For an estimator that must
    choose z's gradient path itself (DReG evaluates the weights at stop(z))."""
    return LogWeights(z, likelihood_log_prob(model, z, x), model.prior(), posterior)


def sample_log_weights(model: LatentVariableModel, x: torch.Tensor, k: int = 1,
                       reparameterize: bool = True) -> LogWeights:
    """Draw ``k`` samples per example, ``x: [batch, dim]``, and weigh them (each field
    ``[k, batch]``). Reparameterized when q allows it, unless ``reparameterize`` is False
    (score-function estimators want z without a path to q's parameters)."""
    q = model.posterior(x)
    # A posterior that computes log q(z|x) while drawing z (a flow: its density elsewhere
    # needs an inverse) says so with ``rsample_and_log_prob``; the weights keep that value.
    joint = getattr(q, "rsample_and_log_prob", None) if reparameterize else None
    if k == 1:
        # One sample, the training step's usual case: the decoder sees a [batch, *event]
        # matrix rather than [1, batch, ...], and the reconstruction term is log p(x|z)
        # itself, not a mean over a length-1 axis: fewer ops in the forward and the
        # backward pass (small models are dispatch-bound). The same random numbers.
        if joint is not None:
            z, log_q = joint()
        else:
            z = q.rsample() if reparameterize and q.has_rsample else q.sample()
        log_likelihood = likelihood_log_prob(model, z, x)  # [batch]
        weights = LogWeights(z[None], log_likelihood[None], model.prior(), q)
        weights.mean_log_likelihood = log_likelihood  # fills the cached property
        if joint is not None:
            weights.log_posterior = log_q[None]
        return weights
    if joint is None:
        return log_weights_at(model, x, draw(q, k, reparameterize), q)
    z, log_q = joint((k,))
    weights = log_weights_at(model, x, z, q)
    weights.log_posterior = log_q
    return weights


def _diagonal_normals(q: D.Distribution, p: D.Distribution) -> bool:
    """Whether q and p are both products of univariate normals over one event dimension."""
    return all(type(d) is D.Independent and isinstance(d.base_dist, D.Normal)
               and d.reinterpreted_batch_ndims == 1 for d in (q, p))


def closed_form_kl(q: D.Distribution, p: D.Distribution) -> torch.Tensor | None:
    """KL(q || p) per example from torch's registry, or None when none is registered.

    The prior is expanded to q's batch shape first: some registered forms (Bernoulli's in
    torch 2.13) index with masks that do not broadcast a batch-less prior.

    Diagonal Gaussians (the VAE's every training step) take the univariate normals' KL,
    summed over the event: that skips ``Independent``'s dispatch and the prior's expansion
    (normals broadcast), and still goes through torch's registry, so that a prior type with
    a registered short form gets it (the standard-normal prior of
    :mod:`elbokit.models.latents`, sum_i (m_q^2 + s_q^2 - 1) / 2 - log s_q).
    """
    if _diagonal_normals(q, p):
        return D.kl_divergence(q.base_dist, p.base_dist).sum(-1)  # type: ignore[attr-defined]  # both Independent
    try:
        return D.kl_divergence(q, p.expand(q.batch_shape))
    except NotImplementedError:
        return None


def kl_divergence(q: D.Distribution, p: D.Distribution, weights: LogWeights | None = None,
                  kl: KL = "auto") -> torch.Tensor:
    """KL(q || p) per example: closed form when torch registers one, else Monte Carlo.

    ``kl="mc"`` (or ``"auto"`` without a registered closed form) averages
    log q(z) - log p(z) over the samples in ``weights``.
    """
    if kl not in ("analytic", "mc", "auto"):
        raise ValueError(f"kl must be 'analytic', 'mc' or 'auto', not {kl!r}")
    if kl != "mc":
        divergence = closed_form_kl(q, p)
        if divergence is not None:
            return divergence
        if kl == "analytic":
            raise NotImplementedError(
                f"no closed-form KL registered for {type(q).__name__} || "
                f"{type(p).__name__}; use kl='mc' or 'auto'"
            )
    if weights is None:
        raise ValueError("a Monte-Carlo KL needs the samples' log-weights")
    return weights.monte_carlo_kl


def kl_per_dimension(q: D.Distribution, p: D.Distribution) -> torch.Tensor | None:
    """KL(q(z_i|x) || p(z_i)) for each latent variable i: ``[batch, latent]``, or None when
    torch registers no closed form. The latent variables are q's independent components:
    the coordinates of a diagonal Gaussian, the bits of a Bernoulli code, the categorical
    variables of a categorical code; their KLs sum to :func:`kl_divergence`."""
    if isinstance(q, D.Independent) != isinstance(p, D.Independent):
        return None  # one of them does not factorize over the variables (a flow, a mixture)
    base_q = q.base_dist if isinstance(q, D.Independent) else q
    base_p = p.base_dist if isinstance(p, D.Independent) else p
    per_variable = closed_form_kl(base_q, base_p)
    if per_variable is None:
        return None
    return per_variable.reshape(*q.batch_shape, -1)


def free_bits_penalty(q: D.Distribution, p: D.Distribution, free_bits: float) -> torch.Tensor:
    """sum_i max(lambda, mean_batch KL_i): the KL the free-bits objective pays (Kingma et al.
    2016). A latent variable whose batch-mean KL is below ``free_bits`` = lambda nats costs
    lambda and gets no gradient pushing it towards the prior: it may carry that much for free."""
    per_variable = kl_per_dimension(q, p)
    if per_variable is None:
        raise NotImplementedError(f"free bits needs a closed-form KL per latent variable; none is "
                                  f"registered for {type(q).__name__} || {type(p).__name__}")
    return per_variable.mean(0).clamp_min(free_bits).sum()


def _terms(model: LatentVariableModel, x: torch.Tensor, k: int, kl: KL,
           beta: float | None, free_bits: float = 0.0) -> Terms:
    """ELBO terms from ``k`` samples; surrogate = reconstruction - beta KL (KL with free bits
    when ``free_bits`` > 0), or IWAE_k when ``beta`` is None."""
    weights = sample_log_weights(model, x, k)
    reconstruction = weights.mean_log_likelihood
    divergence = kl_divergence(weights.posterior, weights.prior, weights, kl)
    elbo = reconstruction - divergence
    if beta is None:
        surrogate = log_mean_exp(weights.log_w)
    elif free_bits > 0:
        surrogate = reconstruction - beta * free_bits_penalty(weights.posterior, weights.prior, free_bits)
    elif beta == 1:
        surrogate = elbo
    else:
        surrogate = reconstruction - beta * divergence
    return Terms(elbo=elbo, reconstruction=reconstruction, kl=divergence, surrogate=surrogate)


def elbo(model: LatentVariableModel, x: torch.Tensor, n_samples: int = 1, kl: KL = "auto",
         beta: float = 1.0, free_bits: float = 0.0) -> Terms:
    """The evidence lower bound per example. ``x: [batch, dim]`` -> :class:`Terms` ([batch]).

    reconstruction = (1/S) sum_s log p(x | z_s),  z_s ~ q(z|x),  S = ``n_samples``
    kl             = KL(q(z|x) || p(z))  (analytic, Monte Carlo, or auto)
    elbo           = reconstruction - kl;    surrogate = reconstruction - beta * kl
    ``free_bits`` > 0: surrogate = reconstruction - beta * :func:`free_bits_penalty` (the
    reported ``elbo`` and ``kl`` stay the true ones).
    """
    return _terms(model, x, n_samples, kl, beta, free_bits)


def log_mean_exp(values: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log (1/k) sum_i exp(values_i) over ``dim`` (of size k), stably: the one place every
    bound, estimator and diagnostic averages weights given as logarithms (without torch's
    slow path for the weights that underflow, see :mod:`elbokit.numerics`)."""
    return numerics.logsumexp(values, dim) - math.log(values.shape[dim])


def iwae_bound(model: LatentVariableModel, x: torch.Tensor, k: int) -> torch.Tensor:
    """The importance-weighted bound IWAE_k per example: ``x: [batch, dim]`` -> ``[batch]``."""
    return log_mean_exp(sample_log_weights(model, x, k).log_w)


def iwae(model: LatentVariableModel, x: torch.Tensor, k: int, kl: KL = "auto") -> Terms:
    """Train on IWAE_k: ``surrogate`` is the IWAE bound, while ``elbo``, ``reconstruction``
    and ``kl`` are the ELBO terms estimated from the same ``k`` samples (for monitoring)."""
    return _terms(model, x, k, kl, None)


@dataclass
class ImportanceScores:
    """What one pass of ``k`` draws z ~ q(z|x) tells about each example, each ``[batch]``:

    - ``estimate``: log (1/k) sum_i w_i, the log p(x) estimate (biased low by O(1/k));
    - ``stderr``: its delta-method Monte-Carlo standard error, sd(w) / (sqrt(k) mean(w));
    - ``iwae``: IWAE_m, the mean over the k // m disjoint groups of m draws of
      log (1/m) sum w (None when k < m);
    - ``reconstruction``: (1/k) sum_i log p(x | z_i), and ``kl``: KL(q || p) in closed form
      where torch has one, else (1/k) sum_i log q(z_i|x) - log p(z_i); the ELBO is their
      difference.
    """

    estimate: torch.Tensor
    stderr: torch.Tensor
    iwae: torch.Tensor | None
    reconstruction: torch.Tensor
    kl: torch.Tensor
    k: int
    iwae_k: int | None

    @property
    def elbo(self) -> torch.Tensor:
        return self.reconstruction - self.kl


@torch.no_grad()
def importance_scores(model: LatentVariableModel, x: torch.Tensor, k: int = 1000,
                      chunk: int = 100, iwae_k: int | None = 50, kl: KL = "auto",
                      drawn: Callable[[int], object] | None = None) -> ImportanceScores:
    """The log p(x) estimate, IWAE_m and the ELBO's terms from the same ``k`` draws per
    example, ``x: [batch, dim]`` (see :class:`ImportanceScores`): one decoder pass per draw
    serves all three. Draws are taken ``chunk`` at a time (rounded down to whole groups of
    ``iwae_k``; ``iwae_k=None``: no IWAE), so memory is O(chunk * batch), not O(k * batch);
    the sums run as log-sum-exps of log w and 2 log w, so nothing overflows.

    ``drawn(m)``: called after each chunk with the m = chunk * batch weights it drew (a
    progress bar's ``update``).
    """
    if k < 2:
        raise ValueError(f"importance sampling needs k >= 2 samples for a standard error, not {k}")
    if chunk < 1 or (iwae_k is not None and iwae_k < 1):
        raise ValueError(f"chunk and iwae_k must be >= 1, not chunk={chunk}, iwae_k={iwae_k}")
    group = iwae_k if iwae_k is not None and iwae_k <= k else None
    if group is not None:  # whole groups per chunk: no group straddles two chunks
        chunk = group * max(1, chunk // group)
    lse1: torch.Tensor | None = None
    lse2 = iwae_sum = reconstruction_sum = mc_kl_sum = closed_kl = lse1
    remaining = k
    while remaining > 0:
        n = min(chunk, remaining)
        weights = sample_log_weights(model, x, n)
        log_w = weights.log_w  # [n, batch]
        part1, part2 = numerics.logsumexp(log_w, 0), numerics.logsumexp(2 * log_w, 0)
        lse1 = part1 if lse1 is None else torch.logaddexp(lse1, part1)
        lse2 = part2 if lse2 is None else torch.logaddexp(lse2, part2)
        if group is not None and n >= group:
            groups = log_w[:n - n % group].reshape(n // group, group, -1)
            part = log_mean_exp(groups, 1).sum(0)
            iwae_sum = part if iwae_sum is None else iwae_sum + part
        part = weights.log_likelihood.sum(0)
        reconstruction_sum = part if reconstruction_sum is None else reconstruction_sum + part
        if remaining == k and kl != "mc":  # q and p are the same for every chunk
            closed_kl = closed_form_kl(weights.posterior, weights.prior)
            if closed_kl is None and kl == "analytic":
                kl_divergence(weights.posterior, weights.prior, weights, kl)  # raises, saying why
        if closed_kl is None:
            part = (weights.log_posterior - weights.log_prior).sum(0)
            mc_kl_sum = part if mc_kl_sum is None else mc_kl_sum + part
        remaining -= n
        if drawn is not None:
            drawn(n * len(x))
    # k >= 2: the loop ran, and filled the sums it needs (mc_kl_sum without a closed form)
    assert lse1 is not None and lse2 is not None and reconstruction_sum is not None
    log_k = math.log(k)
    estimate = lse1 - log_k
    # ratio = mean(w^2) / mean(w)^2 >= 1; unbiased variance of w relative to mean(w)^2 is
    # k/(k-1) (ratio - 1), and the standard error of the mean divides that by k.
    ratio = torch.exp(lse2 - log_k - 2 * estimate)
    stderr = torch.sqrt(torch.clamp(ratio - 1, min=0) / (k - 1))
    return ImportanceScores(
        estimate=estimate, stderr=stderr,
        iwae=iwae_sum / (k // group) if group is not None and iwae_sum is not None else None,
        reconstruction=reconstruction_sum / k,
        kl=closed_kl if closed_kl is not None else cast(torch.Tensor, mc_kl_sum) / k,
        k=k, iwae_k=group)


def log_likelihood(model: LatentVariableModel, x: torch.Tensor, k: int = 1000,
                   chunk: int = 100, drawn: Callable[[int], object] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Importance-sampled estimate of log p(x) with its Monte-Carlo standard error:
    ``x: [batch, dim]`` -> ``(estimate [batch], stderr [batch])``, from
    :func:`importance_scores` (``k`` draws, ``chunk`` at a time)."""
    scores = importance_scores(model, x, k, chunk, iwae_k=None, drawn=drawn)
    return scores.estimate, scores.stderr


# -- enumeration ---------------------------------------------------------------------------

# The policy of the module docstring: the most values a sum over z may have, by use.
SCORING_LIMIT = 2**16  # one-off: the exact log p(x)
TRAINING_LIMIT = 2**10  # every step or epoch: the enumerate estimator, the validation ELBO
Use = Literal["score", "train"]
_LIMITS: dict[str, int] = {"score": SCORING_LIMIT, "train": TRAINING_LIMIT}


def enumeration_limit(use: Use) -> int:
    """The most values of z a sum for ``use`` ("score" or "train") may run over."""
    if use not in _LIMITS:
        raise ValueError(f"enumeration use must be 'score' or 'train', not {use!r}")
    return _LIMITS[use]


def enumerable(model: LatentVariableModel, use: Use) -> bool:
    """Whether z is small enough to sum over for ``use``: "score" (exact log p(x)) or
    "train" (the enumerate estimator, ``auto``'s choice of it, the validation ELBO). The
    model reports how many values z takes by ``support_size`` (absent: continuous)."""
    return getattr(model, "support_size", math.inf) <= enumeration_limit(use)


def likelihood_table(model: LatentVariableModel, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x_b | z_s) for every example and latent value: ``z: [S, *event]``, ``x: [B, dim]``
    -> ``[B, S]``. Uses the model's ``likelihood_table`` (one decoder pass over the S values
    and one matrix product, see ``ObservationModel.log_prob_table``) when it has one."""
    table = getattr(model, "likelihood_table", None)
    if table is not None:
        return table(z, x)
    event_dims = z.dim() - 1
    z = z.reshape(z.shape[:1] + (1,) + z.shape[1:]) if event_dims else z[:, None]
    return model.likelihood(z).log_prob(x.unsqueeze(0)).transpose(0, 1)


def support(model: LatentVariableModel, limit: int = SCORING_LIMIT) -> torch.Tensor:
    """Every value of z, ``[S, *event]``, from the model's ``support(limit)``."""
    values = getattr(model, "support", None)
    if values is None:
        raise NotImplementedError(f"{type(model).__name__} cannot list the values of its z")
    return values(limit)


@dataclass
class Enumeration:
    """Everything a sum over all values of z needs, for ``B`` examples and ``S`` values."""

    table: torch.Tensor  # log p(x | z_s): [B, S]
    log_prior: torch.Tensor  # log p(z_s): [S]
    log_posterior: torch.Tensor  # log q(z_s | x): [B, S]
    posterior: D.Distribution | None  # None when q is the exact posterior, built from the tables
    prior: D.Distribution


def enumerate_latents(model: LatentVariableModel, x: torch.Tensor,
                      limit: int = SCORING_LIMIT) -> Enumeration:
    """Evaluate every term of the bound at every value of z (no Python loop over values).
    A model whose ``posterior(x)`` is the exact p(z | x) (``exact_posterior``, a mixture)
    gets log q from the two tables by Bayes' rule, log_softmax_s(log p(z_s) + log p(x | z_s)),
    instead of a second pass through the likelihood inside ``posterior(x)``: at K = 50 on
    MNIST that pass was half of a training step's arithmetic."""
    z = support(model, limit)  # [S, *event]
    prior = model.prior()
    table, log_prior = likelihood_table(model, z, x), prior.log_prob(z)
    if getattr(model, "exact_posterior", False):
        return Enumeration(table=table, log_prior=log_prior,
                           log_posterior=(log_prior + table).log_softmax(-1), posterior=None,
                           prior=prior)
    q = model.posterior(x)
    z_batched = z.reshape(z.shape[:1] + (1,) * len(q.batch_shape) + z.shape[1:])  # [S, 1, *event]
    return Enumeration(table=table, log_prior=log_prior,
                       log_posterior=q.log_prob(z_batched).transpose(0, 1), posterior=q, prior=prior)


def enumerated_elbo(model: LatentVariableModel, x: torch.Tensor, beta: float = 1.0,
                    limit: int = SCORING_LIMIT) -> Terms:
    """The ELBO as an exact sum over z (no sampling, exact gradients):

    reconstruction = sum_s q(z_s|x) log p(x|z_s);  kl = sum_s q(z_s|x) log q(z_s|x)/p(z_s)
    (the closed form when torch registers one)."""
    e = enumerate_latents(model, x, limit)
    q_probs = numerics.exp(e.log_posterior)  # [B, S]
    reconstruction = (q_probs * e.table).sum(-1)
    divergence = None if e.posterior is None else closed_form_kl(e.posterior, e.prior)
    if divergence is None:
        divergence = (q_probs * (e.log_posterior - e.log_prior)).sum(-1)
    return Terms(elbo=reconstruction - divergence, reconstruction=reconstruction, kl=divergence,
                 surrogate=reconstruction - beta * divergence)


def exact_log_likelihood(model: LatentVariableModel, x: torch.Tensor,
                         limit: int = SCORING_LIMIT) -> torch.Tensor:
    """log p(x) = log sum_s p(z_s) p(x | z_s), exactly: ``x: [batch, dim]`` -> ``[batch]``."""
    z = support(model, limit)
    return numerics.logsumexp(model.prior().log_prob(z) + likelihood_table(model, z, x), dim=-1)
