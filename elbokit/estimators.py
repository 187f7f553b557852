"""Gradient estimators for the bound, one class each, in one registry.

Each estimator is called as ``estimator(model, x) -> Terms`` (see :mod:`elbokit.bounds`):
``elbo``, ``reconstruction`` and ``kl`` estimate the true ELBO per example, and
``surrogate`` is a scalar-per-example function whose *gradient* is the estimator's gradient
of the objective. Estimators are ``nn.Module`` s, so learned baselines are trained by the
same optimizer and their state (moving averages, temperature step) is checkpointed.

    reparameterize  z = g(eps, x): pathwise gradients (Gaussian latents), ELBO or IWAE_k
    enumerate       exact sum over every value of a discrete z (small supports)
    gumbel          Concrete / Gumbel-softmax relaxation (Maddison et al.; Jang et al. 2017),
    gumbel-st       ... and its straight-through (hard) variant; annealed temperature
    reinforce       score function with a moving-average and a learned baseline (NVIL)
    vimco           multi-sample score function with leave-one-out baselines (Mnih &
                    Rezende 2016), on the IWAE_k bound
    dreg            doubly-reparameterized IWAE_k gradients (Tucker et al. 2018): no
                    score-function term in the encoder's gradient (Gaussian latents)
    auto            reparameterize if possible, else enumerate if the support is small
                    enough to sum over every step (:func:`elbokit.bounds.enumerable`,
                    "train"), else gumbel-st

Each class is declared once in :data:`ESTIMATORS` with its name and a one-line help, and
turns :func:`build`'s options into an instance by its :meth:`Estimator.from_options` (which
also refuses the options that do not apply to it). An estimator registered from outside,

    @ESTIMATORS.register("mine", help="...")
    class Mine(Estimator): ...

is then selectable by name like the built-in ones. The estimators sample and weigh z with
:mod:`elbokit.bounds`' primitives (:func:`~elbokit.bounds.sample_log_weights`,
:func:`~elbokit.bounds.log_mean_exp`, ...), so their terms are the bounds' by construction.
"""

from __future__ import annotations

import math

import torch
from torch import distributions as D
from torch import nn

from . import bounds
from .bounds import Terms
from .errors import ConfigError
from .models.base import LatentVariableModel
from .nets import mlp
from .registry import Registry

ESTIMATORS: Registry[type[Estimator]] = Registry("estimator")


def names() -> tuple[str, ...]:
    """The selectable names: ``auto``, then every registered estimator in registration order
    (the CLI's ``--estimator`` choices)."""
    return ("auto", *ESTIMATORS.names())


def __getattr__(attribute: str) -> object:
    # NAMES is computed on access, so that it includes estimators registered after import.
    if attribute == "NAMES":
        return names()
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")


def registered_name(cls: type) -> str:
    """The name ``cls`` is registered under in :data:`ESTIMATORS` ("" when it is not)."""
    return next((name for name, entry in ESTIMATORS.items() if entry is cls), "")


def _one_of(choices: list[str]) -> str:
    """The names joined as "a, b or c"."""
    return " or ".join(filter(None, (", ".join(choices[:-1]), choices[-1])))


def _analytic_kl(q: D.Distribution, p: D.Distribution, kl: str) -> torch.Tensor | None:
    """Closed-form KL if allowed and registered, else None (the caller goes Monte Carlo)."""
    if kl == "mc":
        return None
    divergence = bounds.closed_form_kl(q, p)
    if divergence is None and kl == "analytic":
        raise ConfigError("no closed-form KL for this posterior and prior; use --kl mc")
    return divergence


class Estimator(nn.Module):
    """Base: holds the options every estimator shares, and says how the trainer scores the
    objective it trains (:meth:`score`, :meth:`validation_terms`). ``forward(model,
    x: [batch, dim])`` returns :class:`~elbokit.bounds.Terms`, each ``[batch]``."""

    pathwise = False  # gradients through z's path (reparameterization): a Gaussian z only
    iwae_k: int | None = None  # set: the estimator trains IWAE_k, which validation then scores

    def __init__(self, n_samples: int = 1, beta: float = 1.0, kl: str = "auto") -> None:
        super().__init__()
        self.n_samples, self.beta, self.kl = n_samples, beta, kl

    @property
    def name(self) -> str:
        """The name this estimator's class is registered under."""
        return registered_name(type(self))

    @classmethod
    def from_options(cls, model: LatentVariableModel, dim: int | None, n_samples: int = 1,
                     beta: float = 1.0, kl: str = "auto", iwae_k: int | None = None,
                     **options) -> Estimator:
        """The estimator :func:`build` makes for these options, or a ConfigError naming the
        option that does not apply. ``dim``: features per example; ``options``: the
        estimator-specific ones (the trainer passes all of them, so those a class does not
        take are ignored). The base: an ELBO estimator of the shared options, without free
        bits or IWAE_k."""
        cls._elbo_only(options, iwae_k)
        return cls(n_samples, beta, kl)

    @classmethod
    def _refuse_free_bits(cls, options: dict, iwae_k: int | None) -> None:
        """Free bits weigh the reparameterized ELBO's KL; any other objective refuses them."""
        if options.get("free_bits"):
            raise ConfigError(f"--free-bits applies to the reparameterized ELBO, not to "
                              f"{registered_name(cls)}"
                              f"{' with --iwae-k' if iwae_k is not None else ''}")

    @classmethod
    def _elbo_only(cls, options: dict, iwae_k: int | None) -> None:
        """The checks of an estimator of the plain ELBO: no free bits, no IWAE_k."""
        cls._refuse_free_bits(options, iwae_k)
        if iwae_k is not None:
            raise ConfigError(f"--iwae-k trains the IWAE bound: use reparameterize, dreg or "
                              f"vimco, not {registered_name(cls)}")

    def forward(self, model: LatentVariableModel, x: torch.Tensor) -> Terms:  # pragma: no cover
        raise NotImplementedError

    def score(self, reconstruction, kl):
        """The objective's value from its two terms (floats, or tensors of one shape):
        reconstruction - beta KL. Without validation data the trainer follows it on the
        training terms."""
        return reconstruction - self.beta * kl

    @torch.no_grad()
    def validation_terms(self, model: LatentVariableModel, x: torch.Tensor) -> Terms:
        """Held-out terms of ``x: [batch, dim]``, each ``[batch]``: the true ELBO and its two
        terms (summed over z when it can be enumerated, else one draw), and as ``surrogate``
        the score that early stopping maximizes: the objective trained, IWAE_k when the
        estimator trains it, else :meth:`score` of the terms (the beta-ELBO)."""
        exact = bounds.enumerable(model, "train")
        terms = bounds.enumerated_elbo(model, x) if exact else bounds.elbo(model, x, kl=self.kl)
        score = (bounds.iwae_bound(model, x, self.iwae_k) if self.iwae_k is not None
                 else self.score(terms.reconstruction, terms.kl))
        return Terms(terms.elbo, terms.reconstruction, terms.kl, score)


@ESTIMATORS.register("reparameterize", help="pathwise gradients through rsample (Gaussian z); "
                     "with --iwae-k the IWAE_k bound")
class Reparameterize(Estimator):
    """Pathwise gradients through ``rsample``; with ``iwae_k`` the IWAE_k bound."""

    pathwise = True

    def __init__(self, n_samples: int = 1, beta: float = 1.0, kl: str = "auto",
                 iwae_k: int | None = None, free_bits: float = 0.0) -> None:
        super().__init__(n_samples, beta, kl)
        self.iwae_k, self.free_bits = iwae_k, free_bits

    @classmethod
    def from_options(cls, model: LatentVariableModel, dim: int | None, n_samples: int = 1,
                     beta: float = 1.0, kl: str = "auto", iwae_k: int | None = None,
                     **options) -> Estimator:
        if iwae_k is not None:  # free bits weigh the ELBO's KL, which IWAE_k has not
            cls._refuse_free_bits(options, iwae_k)
        return cls(n_samples, beta, kl, iwae_k, options.get("free_bits", 0.0))

    def forward(self, model: LatentVariableModel, x: torch.Tensor) -> Terms:
        if self.iwae_k is not None:
            return bounds.iwae(model, x, self.iwae_k, kl=self.kl)
        return bounds.elbo(model, x, n_samples=self.n_samples, kl=self.kl, beta=self.beta,
                           free_bits=self.free_bits)


@ESTIMATORS.register("enumerate", help="exact sum over every value of a small discrete z")
class Enumerate(Estimator):
    """The exact expectation: a sum over all values of z, vectorized over a leading axis."""

    def __init__(self, beta: float = 1.0, limit: int = bounds.TRAINING_LIMIT) -> None:
        super().__init__(1, beta, "auto")
        self.limit = limit

    @classmethod
    def from_options(cls, model: LatentVariableModel, dim: int | None, n_samples: int = 1,
                     beta: float = 1.0, kl: str = "auto", iwae_k: int | None = None,
                     **options) -> Estimator:
        cls._elbo_only(options, iwae_k)
        return cls(beta)

    def forward(self, model: LatentVariableModel, x: torch.Tensor) -> Terms:
        return bounds.enumerated_elbo(model, x, beta=self.beta, limit=self.limit)


def _relaxed(q: D.Distribution, temperature: torch.Tensor) -> D.Distribution:
    """The Concrete relaxation of a (product of) one-hot categorical or Bernoulli q."""
    base, dims = q, 0
    while isinstance(base, D.Independent):
        dims += base.reinterpreted_batch_ndims
        base = base.base_dist
    if isinstance(base, D.OneHotCategorical):
        relaxed = D.RelaxedOneHotCategorical(temperature, logits=base.logits, validate_args=False)
    elif isinstance(base, D.Bernoulli):
        relaxed = D.RelaxedBernoulli(temperature, logits=base.logits, validate_args=False)
    else:
        raise ConfigError(f"gumbel needs a categorical or Bernoulli latent, not {type(base).__name__}")
    return D.Independent(relaxed, dims) if dims else relaxed


def _harden(z: torch.Tensor, q: D.Distribution) -> torch.Tensor:
    """The discrete value nearest a relaxed sample: argmax one-hot, or a 0/1 threshold."""
    base = q
    while isinstance(base, D.Independent):
        base = base.base_dist
    if isinstance(base, D.OneHotCategorical):
        return torch.nn.functional.one_hot(z.argmax(-1), z.shape[-1]).to(z.dtype)
    return (z > 0.5).to(z.dtype)


@ESTIMATORS.register("gumbel", help="Concrete / Gumbel-softmax relaxation of a discrete z, "
                     "annealed temperature")
class Gumbel(Estimator):
    """Concrete / Gumbel-softmax relaxation with an annealed temperature.

    tau_t = max(min_temperature, temperature * exp(-anneal_rate * t)), t = training steps.
    ``straight_through``: the forward pass uses the hard sample, gradients flow through the
    relaxed one (biased, but decoders only ever see discrete codes); None: the class's
    default (:class:`StraightThroughGumbel`'s is True). The KL is the discrete one (closed
    form), so only the reconstruction term is relaxed. Reported ``elbo`` and
    ``reconstruction`` are the true ones, at the hard sample.
    """

    straight_through = False
    OPTIONS = ("temperature", "min_temperature", "anneal_rate")

    def __init__(self, n_samples: int = 1, beta: float = 1.0, kl: str = "auto",
                 temperature: float = 1.0, min_temperature: float = 0.5,
                 anneal_rate: float = 1e-4, straight_through: bool | None = None) -> None:
        super().__init__(n_samples, beta, kl)
        if not (temperature > 0 and min_temperature > 0 and anneal_rate >= 0):
            raise ConfigError("gumbel temperatures must be > 0 and the anneal rate >= 0")
        self.temperature0, self.min_temperature = temperature, min_temperature
        self.anneal_rate = anneal_rate
        if straight_through is not None:
            self.straight_through = straight_through
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_options(cls, model: LatentVariableModel, dim: int | None, n_samples: int = 1,
                     beta: float = 1.0, kl: str = "auto", iwae_k: int | None = None,
                     **options) -> Estimator:
        cls._elbo_only(options, iwae_k)
        return cls(n_samples, beta, kl, **{k: options[k] for k in cls.OPTIONS if k in options})

    @property
    def temperature(self) -> float:
        tau = self.temperature0 * math.exp(-self.anneal_rate * int(self.step))
        return max(self.min_temperature, tau)

    def forward(self, model: LatentVariableModel, x: torch.Tensor) -> Terms:
        # The relaxed z is not a sample of q, so it is not weighed as one
        # (bounds.sample_log_weights): only its reconstruction term enters the surrogate.
        q, p = model.posterior(x), model.prior()
        tau = torch.tensor(self.temperature, dtype=x.dtype, device=x.device)
        soft = _relaxed(q, tau).rsample((self.n_samples,))  # [S, B, *event]
        hard = _harden(soft, q)
        z = hard + soft - soft.detach() if self.straight_through else soft
        relaxed_reconstruction = bounds.likelihood_log_prob(model, z, x).mean(0)  # [B]
        if self.straight_through:
            reconstruction = relaxed_reconstruction  # forward value is at the hard sample
        else:
            with torch.no_grad():
                reconstruction = bounds.likelihood_log_prob(model, hard, x).mean(0)
        divergence = _analytic_kl(q, p, "analytic" if self.kl == "analytic" else "auto")
        if divergence is None:
            raise ConfigError("gumbel needs a closed-form KL between q and the prior")
        if self.training and torch.is_grad_enabled():
            self.step += 1
        return Terms(elbo=reconstruction - divergence, reconstruction=reconstruction,
                     kl=divergence, surrogate=relaxed_reconstruction - self.beta * divergence)


@ESTIMATORS.register("gumbel-st", help="straight-through Gumbel-softmax: hard codes forward, "
                     "relaxed gradients")
class StraightThroughGumbel(Gumbel):
    """:class:`Gumbel` whose forward pass uses the hard sample (``straight_through``)."""

    straight_through = True


@ESTIMATORS.register("reinforce", help="score function with moving-average and learned "
                     "baselines (NVIL)")
class Reinforce(Estimator):
    """Score-function gradient with variance reduction (Williams 1992; Mnih & Gregor 2014).

    surrogate = f(z) + (f(z) - b(x)).detach() * log q(z|x),  f = log p(x|z) (plus
    log p(z) - log q(z|x) when the KL has no closed form); E[grad] is the exact gradient
    for any baseline b that does not depend on z. ``baseline``: "none", "mean" (moving
    average of f), "learned" (a small MLP b(x) fitted to f by least squares), or "both"
    (learned on top of the moving average).
    """

    baselines = ("none", "mean", "learned", "both")

    def __init__(self, dim: int, n_samples: int = 1, beta: float = 1.0, kl: str = "auto",
                 baseline: str = "both", decay: float = 0.9, hidden: int = 64) -> None:
        super().__init__(n_samples, beta, kl)
        if baseline not in self.baselines:
            raise ConfigError(f"baseline must be one of {', '.join(self.baselines)}, not {baseline!r}")
        self.baseline, self.decay = baseline, decay
        self.register_buffer("average", torch.zeros(()))
        self.register_buffer("seen", torch.zeros((), dtype=torch.bool))
        self.net = mlp(dim, (hidden,), 1, "tanh") if baseline in ("learned", "both") else None

    @classmethod
    def from_options(cls, model: LatentVariableModel, dim: int | None, n_samples: int = 1,
                     beta: float = 1.0, kl: str = "auto", iwae_k: int | None = None,
                     **options) -> Estimator:
        cls._elbo_only(options, iwae_k)
        # The learned baseline reads what the encoder reads (network_input: input_dim wide).
        dim = getattr(getattr(model, "observation", None), "input_dim", dim)
        return cls(dim, n_samples, beta, kl, **{k: options[k] for k in ("baseline",) if k in options})

    def _baseline(self, model: LatentVariableModel, x: torch.Tensor) -> torch.Tensor:
        b = torch.zeros((), dtype=x.dtype, device=x.device)
        if self.baseline in ("mean", "both"):
            b = b + self.average
        if self.net is not None:
            network_input = getattr(getattr(model, "observation", None), "network_input", None)
            b = b + self.net(network_input(x) if network_input else x).squeeze(-1)
        return b

    def forward(self, model: LatentVariableModel, x: torch.Tensor) -> Terms:
        # S samples of z without a pathwise gradient: fields [S, B].
        weights = bounds.sample_log_weights(model, x, self.n_samples, reparameterize=False)
        log_q = weights.log_posterior
        divergence = _analytic_kl(weights.posterior, weights.prior, self.kl)
        if divergence is None:  # Monte-Carlo KL: it is part of f
            f = weights.log_w
            divergence = weights.monte_carlo_kl.detach()
            kl_term = torch.zeros_like(divergence)
        else:
            f = weights.log_likelihood
            kl_term = divergence
        baseline = self._baseline(model, x)
        signal = (f.detach() - baseline.detach())
        surrogate = (f + signal * log_q).mean(0) - self.beta * kl_term
        if self.net is not None:  # fit b(x) to f: its gradient touches only the baseline
            surrogate = surrogate - (f.detach() - baseline).pow(2).mean(0)
        if self.baseline in ("mean", "both") and self.training and torch.is_grad_enabled():
            with torch.no_grad():  # the moving average tracks the mean of f
                mean = f.mean()
                self.average.copy_(torch.where(self.seen, self.decay * self.average
                                               + (1 - self.decay) * mean, mean))
                self.seen.fill_(True)
        reconstruction = weights.mean_log_likelihood
        return Terms(elbo=reconstruction - divergence, reconstruction=reconstruction,
                     kl=divergence, surrogate=surrogate)


@ESTIMATORS.register("vimco", help="multi-sample score function on IWAE_k with leave-one-out "
                     "baselines")
class VIMCO(Estimator):
    """Multi-sample score function on IWAE_k with leave-one-out baselines.

    L = log (1/k) sum_j w_j;  L_{-i} = L with w_i replaced by the geometric mean of the
    others;  surrogate = L + sum_i (L - L_{-i}).detach() * log q(z_i|x).
    """

    def __init__(self, k: int = 5, kl: str = "auto") -> None:
        super().__init__(k, 1.0, kl)
        self.iwae_k = k
        if k < 2:
            raise ConfigError(f"vimco needs k >= 2 samples (--n-samples or --iwae-k), not {k}")

    @classmethod
    def from_options(cls, model: LatentVariableModel, dim: int | None, n_samples: int = 1,
                     beta: float = 1.0, kl: str = "auto", iwae_k: int | None = None,
                     **options) -> Estimator:
        cls._refuse_free_bits(options, iwae_k)
        if beta != 1.0:
            raise ConfigError("vimco trains the IWAE bound, which has no beta")
        return cls(iwae_k or n_samples, kl)

    def forward(self, model: LatentVariableModel, x: torch.Tensor) -> Terms:
        k = self.n_samples
        # k samples of z without a pathwise gradient: fields [k, B].
        weights = bounds.sample_log_weights(model, x, k, reparameterize=False)
        log_q, log_w = weights.log_posterior, weights.log_w
        bound = bounds.log_mean_exp(log_w)
        with torch.no_grad():
            others = (log_w.sum(0, keepdim=True) - log_w) / (k - 1)  # [k, B]
            eye = torch.eye(k, dtype=torch.bool, device=x.device)[:, :, None]  # [i, j, 1]
            replaced = torch.where(eye, others[:, None, :], log_w[None, :, :])  # [i, j, B]
            leave_one_out = bounds.log_mean_exp(replaced, 1)  # [k, B]
        surrogate = bound + ((bound.detach() - leave_one_out) * log_q).sum(0)
        divergence = _analytic_kl(weights.posterior, weights.prior, self.kl)
        if divergence is None:
            divergence = weights.monte_carlo_kl.detach()
        reconstruction = weights.mean_log_likelihood
        return Terms(elbo=reconstruction - divergence, reconstruction=reconstruction,
                     kl=divergence, surrogate=surrogate)


def _detached(q: D.Distribution) -> D.Distribution:
    """q with its parameters cut from the graph: the same density, no gradient to phi.

    Handles (``Independent``-wrapped) ``Normal`` and ``MultivariateNormal``; the nested
    ``Independent`` dimensions are kept.
    """
    base, dims = q, 0
    while isinstance(base, D.Independent):
        dims += base.reinterpreted_batch_ndims
        base = base.base_dist
    if isinstance(base, D.Normal):
        copy = D.Normal(base.loc.detach(), base.scale.detach(), validate_args=False)
    elif isinstance(base, D.MultivariateNormal):
        copy = D.MultivariateNormal(base.loc.detach(), scale_tril=base.scale_tril.detach(),
                                    validate_args=False)
    else:
        # DReG evaluates log q at stop-gradient parameters; a flow's or a hierarchy's density
        # runs through networks whose weights would need the same treatment.
        raise ConfigError(f"dreg needs a Gaussian posterior q(z|x), not a {type(base).__name__} "
                          "(a flow or two stochastic layers): use --estimator reparameterize "
                          "with --iwae-k")
    return D.Independent(copy, dims) if dims else copy


@ESTIMATORS.register("dreg", help="doubly-reparameterized IWAE_k gradients (Gaussian z, "
                     "--iwae-k K >= 2)")
class DReG(Estimator):
    """Doubly-reparameterized gradients of IWAE_k (Tucker, Lawson, Gu & Maddison 2018).

    Why: the plain (reparameterized) IWAE_k gradient of the encoder parameters phi has a
    signal-to-noise ratio that *falls* like O(1/sqrt(k)) as k grows (Rainforth et al. 2018),
    so a tighter bound trains a worse encoder. Its per-sample gradient contains a score
    function term, -grad_phi log q_phi(z_i|x) at fixed z_i, which has expectation zero but
    large variance. DReG rewrites that term by a second reparameterization and removes it:

        z_i = g(eps_i, phi) ~ q(z|x),  log w_i = log p(x, z_i) - log q_{stop(phi)}(z_i|x),
        w~_i = softmax_i(log w)  (held constant),
        theta:  sum_i w~_i   grad_theta log w_i                       (the IWAE gradient)
        phi:    sum_i w~_i^2 (d log w_i / d z_i) (d z_i / d phi)      (pathwise only)

    Both expectations are the gradients of E[IWAE_k]: the estimator is unbiased, with a
    much lower encoder variance (and zero variance when q is the exact posterior, where
    log w is constant in z). One surrogate per example delivers both through one backward:

        surrogate = sum_i w~_i^2 log w_i(z_i) + sum_i (w~_i - w~_i^2) log w_i(stop(z_i))

    (theta gets w~^2 + w~ - w~^2 = w~ per sample; phi only the first term's path, since
    q's parameters are detached in log w and the second term's z is). Computed that way the
    decoder runs twice; instead it runs once, on stop(z), and the same gradient comes from

        surrogate = sum_i w~_i log w_i(stop(z_i)) + sum_i stop(w~_i^2 d log w_i / d z_i) . z_i

    with the path derivative taken by ``autograd.grad`` in the forward pass (a backward
    through the decoder to z only): a training step costs about 1.2x IWAE's, not 2x.
    The *value* of those sums is not IWAE_k; a constant (no gradient) is added so that
    ``surrogate`` reads IWAE_k, as with ``reparameterize --iwae-k``. ``elbo``,
    ``reconstruction`` and ``kl`` are the ELBO terms from the same k samples, as
    :func:`elbokit.bounds.iwae` reports them.
    """

    pathwise = True

    def __init__(self, k: int, kl: str = "auto") -> None:
        super().__init__(k, 1.0, kl)
        self.iwae_k = k
        if k is None or k < 2:
            raise ConfigError(f"dreg needs --iwae-k K with K >= 2, not {k}")

    @classmethod
    def from_options(cls, model: LatentVariableModel, dim: int | None, n_samples: int = 1,
                     beta: float = 1.0, kl: str = "auto", iwae_k: int | None = None,
                     **options) -> Estimator:
        cls._refuse_free_bits(options, iwae_k)
        if iwae_k is None or iwae_k < 2:
            given = "" if iwae_k is None else f", not {iwae_k}"
            raise ConfigError(f"dreg needs --iwae-k K with K >= 2{given}")
        if beta != 1.0:
            raise ConfigError("dreg trains the IWAE bound, which has no beta")
        if n_samples != 1:
            raise ConfigError("dreg draws --iwae-k samples per example; leave --n-samples at 1")
        parameter = next(iter(model.parameters()), None) if isinstance(model, nn.Module) else None
        if dim is not None and parameter is not None:
            # Refuse a posterior DReG cannot detach (a flow, two layers) before any training,
            # from q at one all-zero example.
            with torch.no_grad():
                _detached(model.posterior(parameter.new_zeros(1, dim)))
        return cls(iwae_k, kl)

    def forward(self, model: LatentVariableModel, x: torch.Tensor) -> Terms:
        q = model.posterior(x)
        if not q.has_rsample:
            raise ConfigError(f"dreg needs a reparameterizable (Gaussian) posterior, not {type(q).__name__}")
        k = self.n_samples
        z = bounds.draw(q, k)  # [k, B, *event], carries the path to phi
        z_stopped = z.detach().requires_grad_(torch.is_grad_enabled())
        # The weights at stop(z) under q with detached parameters: fields [k, B].
        drawn = bounds.log_weights_at(model, x, z_stopped, _detached(q))
        log_w = drawn.log_w  # gradient to theta only
        weights = torch.softmax(log_w.detach(), 0)  # w~: [k, B], constants
        surrogate = (weights * log_w).sum(0)
        if log_w.requires_grad:  # the encoder's path term: sum_i w~_i^2 (d log w_i / d z_i) . z_i
            (path,) = torch.autograd.grad(log_w, z_stopped, weights * weights, retain_graph=True)
            surrogate = surrogate + (path * z).reshape(k, z.shape[1], -1).sum(-1).sum(0)
        bound = bounds.log_mean_exp(log_w.detach())  # IWAE_k
        surrogate = surrogate + (bound - surrogate).detach()  # reads IWAE_k, same gradient
        reconstruction = drawn.mean_log_likelihood
        divergence = _analytic_kl(q, drawn.prior, self.kl)
        if divergence is None:  # Monte Carlo from the same k samples
            divergence = drawn.monte_carlo_kl
        return Terms(elbo=reconstruction - divergence, reconstruction=reconstruction,
                     kl=divergence, surrogate=surrogate)


def resolve(name: str, model: LatentVariableModel) -> str:
    """The registered estimator ``name`` stands for, checked against ``model``'s z: ``auto``
    -> reparameterize (continuous z), enumerate (z small enough to sum over every step, by
    :func:`elbokit.bounds.enumerable`) or gumbel-st."""
    if name not in names():
        raise ConfigError(f"unknown estimator {name!r}; choose from {', '.join(names())}")
    spec = getattr(getattr(model, "config", None), "latent_spec", None)
    if name == "auto":
        if spec is not None and spec.kind == "gaussian":
            return "reparameterize"
        if bounds.enumerable(model, "train"):
            return "enumerate"
        # Not enumerable: a model that lists no z (e.g. user code), or a large discrete z.
        return "reparameterize" if spec is None else "gumbel-st"
    pathwise = [n for n, cls in ESTIMATORS.items() if cls.pathwise]
    if spec is not None and spec.kind == "gaussian" and name not in pathwise:
        raise ConfigError(f"estimator {name!r} is for discrete latents; a Gaussian z uses "
                          f"{_one_of(pathwise)}")
    if spec is not None and spec.kind != "gaussian" and name in pathwise:
        needs = " (dreg needs a Gaussian z)" if name == "dreg" else ""
        others = [n for n in ESTIMATORS.names() if n not in pathwise]
        raise ConfigError(f"a {spec} latent cannot be reparameterized{needs}; use "
                          f"{_one_of(others)}")
    if spec is None and name == "dreg" and bounds.enumerable(model, "train"):
        raise ConfigError("dreg needs a reparameterizable (Gaussian) latent; this model's z is "
                          "discrete: use enumerate or vimco")
    if name == "enumerate" and spec is not None and not bounds.enumerable(model, "train"):
        model.support(bounds.enumeration_limit("train"))  # raises: how large, and what fits
    return name


def build(name: str, model: LatentVariableModel, dim: int | None, n_samples: int = 1,
          beta: float = 1.0, kl: str = "auto", iwae_k: int | None = None,
          **options) -> Estimator:
    """The estimator registered as ``name`` (or the one ``auto`` resolves to, see
    :func:`resolve`) for ``model``, made by its class's :meth:`Estimator.from_options`."""
    return ESTIMATORS[resolve(name, model)].from_options(model, dim, n_samples, beta, kl,
                                                         iwae_k, **options)
