"""Finite mixture models as latent-variable models: z is the component, one-hot in K.

    p(z) = Categorical(pi)                  pi = softmax(mixing logits)          [K]
    p(x | z) = observation(z @ theta)       theta = component parameters        [K, n_params]
    q(z | x) = p(z | x) = pi_k p(x | k) / sum_j pi_j p(x | j)                (exact, Bayes' rule)

``theta`` holds, row by row, the raw parameters the observation model's ``forward`` takes
(what a VAE's decoder would output for that component), so every observation model of
:mod:`elbokit.likelihoods` gives a mixture: Bernoulli (binary data), Gaussian (diagonal
covariance: ``scale="decoder"`` gives every component its own sigma per dimension, like
scikit-learn's ``covariance_type="diag"``), Categorical and Multinomial (bag of words).

Because q is the exact posterior, the ELBO equals log p(x) for every sample of z, and the
model fits the protocol's bounds unchanged. Two ways to fit it, both in nats per example:

- :func:`fit_em`: expectation-maximization (Dempster, Laird & Rubin 1977). The loop is
  written once; the closed-form M-step of each observation family is a small function
  chosen from :data:`M_STEPS` by the observation model's ``name`` (the template of
  scikit-learn's ``BaseMixture``).
- gradient ascent on the exact log-likelihood needs nothing here: the posterior is exact,
  so the enumerated ELBO *is* log p(x), and :class:`~elbokit.training.Trainer` with the
  ``enumerate`` estimator trains a mixture like any other model (batches, early stopping,
  checkpoints, resume).

:func:`init_from_data` starts either from k-means++ seeds or random responsibilities;
:func:`set_gaussian_parameters` / :func:`gaussian_parameters` read and write a Gaussian
mixture as (weights, means, variances) in data units, e.g. to start from the same point as
``sklearn.mixture.GaussianMixture``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import distributions as D
from torch import nn

from .. import numerics
from ..errors import ConfigError, DataError
from ..likelihoods import Categorical, Gaussian, ObservationModel, build_likelihood
from ..progress import progress_bar

__all__ = [
    "EMOptions", "INIT_METHODS", "M_STEPS", "MixtureConfig", "MixtureModule",
    "fit_em", "gaussian_parameters", "init_from_data", "set_gaussian_parameters",
]

INIT_METHODS = ("kmeans", "random")


@dataclass
class MixtureConfig:
    """Everything needed to rebuild a :class:`MixtureModule` (weights aside).

    ``likelihood`` is an observation model's ``config()`` (e.g. ``{"name": "gaussian",
    "scale": "decoder", "min_scale": 1e-3}``).
    """

    dim: int
    n_components: int = 10
    likelihood: dict = field(default_factory=lambda: {"name": "bernoulli"})

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ConfigError(f"data dimension must be >= 1, not {self.dim}")
        if self.n_components < 1:
            raise ConfigError(f"a mixture needs n_components >= 1, not {self.n_components}")
        if not isinstance(self.likelihood, dict) or "name" not in self.likelihood:
            raise ConfigError(f"likelihood must be a dict with a 'name', not {self.likelihood!r}")
        try:
            # Building the observation model validates its name and options (e.g. scale).
            build_likelihood(self.likelihood, self.dim)
        except TypeError as err:
            raise ConfigError(f"likelihood options {self.likelihood!r} do not fit "
                              f"{self.likelihood['name']!r}: {err}") from None

    def to_dict(self) -> dict:
        return asdict(self)


class MixtureModule(nn.Module):
    """A K-component mixture speaking the model protocol. ``x: [batch, dim]``, ``z: [..., K]``
    one-hot.

    Parameters: ``mixing_logits`` [K] (pi = softmax) and ``component_params``
    [K, observation.n_params] (raw observation-model parameters, one row per component).
    """

    # posterior(x) is p(z | x) itself: the enumerated ELBO takes it from its own tables.
    exact_posterior = True

    def __init__(self, config: MixtureConfig, observation: ObservationModel | None = None) -> None:
        super().__init__()
        self.config = config
        self.observation = observation or build_likelihood(config.likelihood, config.dim)
        if self.observation.dim != config.dim:
            raise ConfigError(f"the observation model is for {self.observation.dim} dimensions, "
                              f"the mixture for {config.dim}")
        config.likelihood = self.observation.config()
        k = config.n_components
        self.mixing_logits = nn.Parameter(torch.zeros(k))
        # Small random rows break the symmetry between components before any initialization;
        # init_from_data replaces them with values taken from the data.
        self.component_params = nn.Parameter(0.1 * torch.randn(k, self.observation.n_params))

    @property
    def n_components(self) -> int:
        return self.config.n_components

    def log_weights(self) -> torch.Tensor:
        """log pi: [K]."""
        return self.mixing_logits.log_softmax(-1)

    def describe(self) -> str:
        """One line: the components and the observation model (the report's header)."""
        return (f"Mixture model ({self.config.n_components} components, "
                f"{self.observation.name} likelihood)")

    def prior(self) -> D.Distribution:
        """p(z) = Categorical(pi) as one-hot vectors: batch_shape [], event_shape [K]."""
        return D.OneHotCategorical(logits=self.mixing_logits, validate_args=False)

    def likelihood(self, z: torch.Tensor) -> D.Distribution:
        """p(x | z): ``z: [..., K]`` one-hot -> batch_shape [...], event_shape [dim].
        ``z @ theta`` selects the component's row (and mixes rows for a relaxed z)."""
        return self.observation(z @ self.component_params)

    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """log pi_k + log p(x_b | k) for every example and component: ``[B, dim] -> [B, K]``.
        One matrix product (``log_prob_table``), no [B, K, dim] tensor."""
        return self.log_weights() + self.observation.log_prob_table(self.component_params, x)

    def posterior(self, x: torch.Tensor) -> D.Distribution:
        """The exact posterior p(z | x) (Bayes' rule): batch_shape [B], event_shape [K]."""
        return D.OneHotCategorical(logits=self.log_joint(x), validate_args=False)

    def likelihood_table(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x_b | z_s) for all pairs: ``z: [S, K]``, ``x: [B, dim]`` -> ``[B, S]``
        (the enumeration fast path of :func:`elbokit.bounds.likelihood_table`)."""
        return self.observation.log_prob_table(z @ self.component_params, x)

    @property
    def support_size(self) -> int:
        """z is one of K components."""
        return self.n_components

    def support(self, limit: int) -> torch.Tensor:
        """Every value of z, the K one-hot vectors: ``[K, K]``; refuses when K > ``limit``."""
        k = self.n_components
        if k > limit:
            raise ConfigError(f"cannot enumerate z: {k:,} components; enumeration handles up to "
                              f"{limit:,} values")
        return torch.eye(k, dtype=self.mixing_logits.dtype, device=self.mixing_logits.device)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = logsumexp_k (log pi_k + log p(x | k)), exact: ``[B, dim] -> [B]`` nats."""
        return numerics.logsumexp(self.log_joint(x), dim=-1)

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """r_bk = p(z = k | x_b): ``[B, dim] -> [B, K]``, rows summing to 1."""
        return self.log_joint(x).softmax(-1)

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z]: ``[..., K] -> [..., dim]``."""
        return self.observation.mean(z @ self.component_params)


# -- M-steps, one per observation family ---------------------------------------------------


@dataclass(frozen=True)
class EMOptions:
    """Regularization of the closed-form M-steps.

    ``reg``: added to every Gaussian variance as a fraction of its column's variance in the
    training data, i.e. in the model's standardized units (scikit-learn's ``reg_covar`` on
    standardized data). Relative, so rescaling a column only adds its Jacobian to log p(x):
    in data units a column of standard deviation 1e-4 has variance 1e-8, and an absolute
    floor of 1e-6 would widen its components 100-fold (about 2.3 nats per example lost).
    ``alpha``: pseudo-count added to every (component, word) or (component, dimension,
    category) count of multinomial and categorical data, so no probability is 0 (a MAP
    estimate under a symmetric Dirichlet(1 + alpha) prior).
    ``eps``: Bernoulli probabilities are clamped to [eps, 1 - eps], so logits stay finite.
    """

    reg: float = 1e-6
    alpha: float = 1e-2
    eps: float = 1e-6

    def __post_init__(self) -> None:
        if not self.reg >= 0:
            raise ConfigError(f"reg must be >= 0, not {self.reg}")
        if not self.alpha > 0:
            raise ConfigError(f"alpha (pseudo-count) must be > 0, not {self.alpha}")
        if not 0 < self.eps < 0.5:
            raise ConfigError(f"eps must lie in (0, 0.5), not {self.eps}")


# An M-step maps (observation, x [B, D], responsibilities [B, K], N_k [K], options) to the
# new component parameters [K, n_params]. Families whose observation model holds parameters
# shared by all components (a tied Gaussian sigma) update those in place.
MStep = Callable[[ObservationModel, torch.Tensor, torch.Tensor, torch.Tensor, EMOptions], torch.Tensor]


def _m_step_bernoulli(obs: ObservationModel, x: torch.Tensor, resp: torch.Tensor, nk: torch.Tensor,
                      options: EMOptions) -> torch.Tensor:
    """p_kd = sum_b r_bk x_bd / N_k, clamped to [eps, 1 - eps], stored as logits."""
    p = (resp.T @ x / nk[:, None]).clamp(options.eps, 1 - options.eps)
    # The log-likelihood is concave in each p_kd, so the clamp is the constrained maximizer
    # and EM stays monotone.
    return p.log() - torch.log1p(-p)


def _softplus_inverse(y: torch.Tensor) -> torch.Tensor:
    """r with softplus(r) = y > 0, stably: log(e^y - 1) = y + log(1 - e^-y).

    ``-expm1(-y)`` keeps full precision for small y (where e^y - 1 ~ y) and cannot overflow
    for large y; above 20 torch's softplus returns its input, so the inverse does too.
    """
    return torch.where(y > 20, y, y + torch.log(-torch.expm1(-y)))


def _gaussian_component_params(obs: Gaussian, loc: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Store standardized means ``loc`` [K, D] and variances ``var`` (standardized units:
    [K, D] for scale "decoder", [D] for "dim", [1] for "shared") as the model's parameters.

    sigma = softplus(raw) + min_scale ("decoder") or exp(log_scale) + min_scale (tied), so
    the free part is sigma - min_scale. Where sigma is below the floor min_scale the model
    cannot represent it; the per-dimension log-likelihood is unimodal in sigma, so sigma =
    min_scale is then the constrained maximizer. A floor of machine epsilon on the free part
    keeps its logarithm finite.
    """
    free = (var.sqrt() - obs.min_scale).clamp_min(torch.finfo(var.dtype).eps)
    if obs.scale == "decoder":
        return torch.cat([loc, _softplus_inverse(free)], dim=-1)
    obs.log_scale.copy_(free.log().expand_as(obs.log_scale))
    return loc


def _m_step_gaussian(obs: ObservationModel, x: torch.Tensor, resp: torch.Tensor, nk: torch.Tensor,
                     options: EMOptions) -> torch.Tensor:
    """Weighted means and diagonal variances, computed in the model's standardized units
    u = (x - shift) / unit (where the data are centred, so E[u^2] - m^2 loses little):

        m_k = sum_b r_bk u_b / N_k,   v_k = sum_b r_bk u_b^2 / N_k - m_k^2 + reg

    ``reg`` is added in standardized units, i.e. reg * unit^2 in data units: a fraction of
    each column's own variance. The floor only has to keep a component from collapsing onto
    a point, a singularity with no scale of its own, so its size must come from the data
    (as the weak data-dependent prior of Fraley & Raftery 2007 does); an absolute floor
    would also make the fit depend on the units a column happens to be recorded in. Scale
    "dim" pools the variances over components (sum_k N_k v_k / N), "shared" also over
    dimensions.
    """
    assert isinstance(obs, Gaussian)
    u = obs.network_input(x)  # [B, D]
    loc = resp.T @ u / nk[:, None]  # [K, D]
    var = (resp.T @ u.square() / nk[:, None] - loc.square()).clamp_min(0)  # [K, D]
    if obs.scale != "decoder":
        var = (nk[:, None] * var).sum(0) / nk.sum()  # [D]
    var = var + options.reg
    if obs.scale == "shared":
        var = var.mean().reshape(1)
    return _gaussian_component_params(obs, loc, var)


def _m_step_multinomial(obs: ObservationModel, x: torch.Tensor, resp: torch.Tensor, nk: torch.Tensor,
                        options: EMOptions) -> torch.Tensor:
    """theta_kd = (sum_b r_bk x_bd + alpha) / (sum_b r_bk n_b + D alpha), stored as log theta
    (logits: the observation model applies log_softmax, which leaves them unchanged)."""
    counts = resp.T @ x + options.alpha  # [K, D]
    return counts.log() - counts.sum(-1, keepdim=True).log()


def _m_step_categorical(obs: ObservationModel, x: torch.Tensor, resp: torch.Tensor, nk: torch.Tensor,
                        options: EMOptions) -> torch.Tensor:
    """theta_kdc = (sum_b r_bk [x_bd = c] + alpha) / (N_k + C alpha), stored as log theta,
    flattened to [K, D * C] like the observation model's parameters."""
    assert isinstance(obs, Categorical)
    one_hot = F.one_hot(x.long(), obs.n_categories).flatten(-2).to(x.dtype)  # [B, D * C]
    counts = (resp.T @ one_hot + options.alpha).unflatten(-1, (obs.dim, obs.n_categories))
    return (counts.log() - counts.sum(-1, keepdim=True).log()).flatten(-2)


M_STEPS: dict[str, MStep] = {
    "bernoulli": _m_step_bernoulli,
    "gaussian": _m_step_gaussian,
    "multinomial": _m_step_multinomial,
    "categorical": _m_step_categorical,
}


def _m_step_for(module: MixtureModule) -> MStep:
    name = module.observation.name
    if name not in M_STEPS:
        raise ConfigError(f"no closed-form M-step for the {name!r} likelihood; use --fit gradient")
    return M_STEPS[name]


@torch.no_grad()
def _m_step(module: MixtureModule, x: torch.Tensor, resp: torch.Tensor, m_step: MStep,
            options: EMOptions) -> None:
    """Set pi and theta to maximize E_r[log p(x, z)] given responsibilities ``resp`` [B, K]."""
    # As in scikit-learn, 10 machine epsilons keep an empty component's N_k (and log pi_k)
    # away from 0 instead of dividing by zero.
    nk = resp.sum(0) + 10 * torch.finfo(resp.dtype).eps  # [K]
    module.mixing_logits.copy_(nk.log() - nk.sum().log())  # pi_k = N_k / N
    module.component_params.copy_(m_step(module.observation, x, resp, nk, options))


@torch.no_grad()
def _e_step(module: MixtureModule, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(x_b) [B], log p(z = k | x_b) [B, K]) under the current parameters."""
    log_joint = module.log_joint(x)
    log_px = numerics.logsumexp(log_joint, dim=-1)
    return log_px, log_joint - log_px[:, None]


def _as_data(module: MixtureModule, x: torch.Tensor | np.ndarray, where: str) -> torch.Tensor:
    """``x`` as a [n, dim] tensor of the module's dtype and device, checked against the
    observation model (a DataError names the offending rows)."""
    ref = module.mixing_logits
    x = torch.as_tensor(x).to(dtype=ref.dtype, device=ref.device)
    if x.dim() != 2 or x.shape[1] != module.config.dim:
        raise DataError(f"{where}: expected an array of shape [n, {module.config.dim}], "
                        f"got {list(x.shape)}")
    if x.shape[0] == 0:
        raise DataError(f"{where}: no examples")
    module.observation.check_data(x.detach().cpu().numpy(), where)
    return x


def fit_em(module: MixtureModule, x: torch.Tensor | np.ndarray, max_iter: int = 100, tol: float = 1e-6,
           reg: float = 1e-6, *, alpha: float = 1e-2, eps: float = 1e-6,
           show: bool | None = None, desc: str = "EM") -> list[float]:
    """Fit by expectation-maximization from the module's current parameters.

    E-step: r_bk = p(z = k | x_b), the exact posterior. M-step: pi_k = N_k / N with
    N_k = sum_b r_bk, and the family's closed form from :data:`M_STEPS` (see
    :class:`EMOptions` for ``reg``, ``alpha``, ``eps``). EM is coordinate ascent on the ELBO
    with q = the exact posterior, where the ELBO touches log p(x), so the log-likelihood
    never decreases. The Bernoulli clamp and the Gaussian sigma floor (``min_scale``) keep
    that exact: they give the constrained maxima. The pseudo-count ``alpha`` makes it MAP-EM,
    monotone in log p(x) + log p(theta), whose log-likelihood may dip by O(alpha) near the
    optimum; ``reg`` shifts the fixed point by O(reg).

    ``x: [n, dim]``. Returns the mean log-likelihood (nats per example) of the initial
    parameters and after each M-step, so the last entry is the fitted module's. Stops when
    an iteration improves it by less than ``tol``, or after ``max_iter`` M-steps (then the
    history has ``max_iter + 1`` entries and EM may not have converged).
    ``show``, ``desc``: the progress bar's (see :func:`elbokit.progress.progress_bar`).
    """
    if max_iter < 1:
        raise ConfigError(f"max_iter must be >= 1, not {max_iter}")
    options = EMOptions(reg=reg, alpha=alpha, eps=eps)
    m_step = _m_step_for(module)
    x = _as_data(module, x, "training data")
    log_px, log_resp = _e_step(module, x)
    history = [log_px.mean().item()]
    with progress_bar(total=max_iter, desc=desc, unit="iteration", show=show) as bar:
        for _ in range(max_iter):
            _m_step(module, x, numerics.exp(log_resp), m_step, options)
            log_px, log_resp = _e_step(module, x)
            history.append(log_px.mean().item())
            bar.update()
            bar.set_postfix(log_likelihood=f"{history[-1]:.4g}", refresh=False)
            if history[-1] - history[-2] < tol:
                break
    return history


# -- initialization -------------------------------------------------------------------------


def _init_features(obs: ObservationModel, x: torch.Tensor) -> torch.Tensor:
    """Where k-means measures distances: standardized Gaussian data, word proportions of
    documents (so length does not dominate), one-hot codes of categories, raw binary data."""
    if obs.name == "gaussian":
        return obs.network_input(x)
    if obs.name == "multinomial":
        return x / x.sum(-1, keepdim=True)
    if isinstance(obs, Categorical):
        return F.one_hot(x.long(), obs.n_categories).flatten(-2).to(x.dtype)
    return x


def _kmeans_labels(features: torch.Tensor, k: int, generator: torch.Generator,
                   n_iter: int = 20) -> torch.Tensor:
    """Greedy k-means++ seeds (Arthur & Vassilvitskii 2007, with scikit-learn's 2 + log k
    candidates per seed) refined by up to ``n_iter`` Lloyd steps: ``features: [n, F]`` ->
    cluster labels ``[n]``."""
    n = features.shape[0]
    n_trials = 2 + int(math.log(k))
    norms = features.square().sum(-1)  # |x_b|^2: [n], once

    def squared_distances(rows: torch.Tensor) -> torch.Tensor:
        """|r - x_b|^2 for each row r of ``rows: [R, F]`` and every point: ``[R, n]``, by
        one matrix product (|r|^2 - 2 r.x + |x|^2): torch.cdist took 2-5x longer here,
        most of a mixture's set-up on MNIST."""
        return (rows.square().sum(-1)[:, None] - 2 * rows @ features.T + norms).clamp_min(0)

    first = torch.randint(n, (1,), generator=generator, device=features.device)
    centers = features[first]  # [1, F]
    d2 = (features - centers).square().sum(-1)  # squared distance to the nearest seed: [n]
    for _ in range(1, k):
        total = d2.sum()
        # All points on the seeds already (duplicated data): any point is as good a seed.
        weights = d2 / total if total > 0 else torch.ones_like(d2)
        candidates = torch.multinomial(weights, n_trials, replacement=True, generator=generator)
        # Keep the candidate that lowers the k-means cost sum_b d2_b the most: a single draw
        # too often lands two seeds in one cluster.
        trial_d2 = torch.minimum(d2, squared_distances(features[candidates]))  # [T, n]
        best = trial_d2.sum(-1).argmin()
        centers = torch.cat([centers, features[candidates[best]][None]])
        d2 = trial_d2[best]
    for _ in range(n_iter):
        labels = squared_distances(centers).argmin(0)
        sums = torch.zeros_like(centers).index_add_(0, labels, features)
        counts = torch.bincount(labels, minlength=k).to(features.dtype)[:, None]
        # A cluster that lost all its points keeps its center rather than becoming NaN.
        updated = torch.where(counts > 0, sums / counts.clamp_min(1), centers)
        if torch.equal(updated, centers):
            break
        centers = updated
    return squared_distances(centers).argmin(0)


@torch.no_grad()
def init_from_data(module: MixtureModule, x: torch.Tensor | np.ndarray, seed: int = 0,
                   method: str = "kmeans", *, reg: float = 1e-6, alpha: float = 1e-2,
                   eps: float = 1e-6) -> MixtureModule:
    """Set the parameters from data, ready for :func:`fit_em` or gradient training.

    ``method="kmeans"``: k-means++ seeds and a few Lloyd steps on features suited to the
    likelihood (see :func:`_init_features`), then one M-step from the hard assignments.
    ``method="random"``: one M-step from random responsibilities (uniform, normalized per
    example), as scikit-learn's ``init_params="random"``. ``reg``, ``alpha``, ``eps`` as in
    :func:`fit_em`. Returns the module.
    """
    if method not in INIT_METHODS:
        raise ConfigError(f"init method must be one of {', '.join(INIT_METHODS)}, not {method!r}")
    options = EMOptions(reg=reg, alpha=alpha, eps=eps)
    m_step = _m_step_for(module)
    x = _as_data(module, x, "training data")
    n, k = x.shape[0], module.n_components
    generator = torch.Generator(device=x.device).manual_seed(seed)
    if method == "kmeans":
        if n < k:
            raise DataError(f"k-means initialization needs at least {k} examples (one per "
                            f"component), got {n}")
        labels = _kmeans_labels(_init_features(module.observation, x), k, generator)
        resp = F.one_hot(labels, k).to(x.dtype)
    else:
        resp = torch.rand(n, k, generator=generator, dtype=x.dtype, device=x.device)
        resp = resp / resp.sum(-1, keepdim=True)
    _m_step(module, x, resp, m_step, options)
    return module


def _gaussian(module: MixtureModule) -> Gaussian:
    obs = module.observation
    if not isinstance(obs, Gaussian):
        raise ConfigError(f"(weights, means, variances) describe a Gaussian mixture, not a "
                          f"{obs.name} one")
    return obs


@torch.no_grad()
def set_gaussian_parameters(module: MixtureModule, weights: torch.Tensor | np.ndarray,
                            means: torch.Tensor | np.ndarray,
                            variances: torch.Tensor | np.ndarray) -> MixtureModule:
    """Set a Gaussian mixture from mixing ``weights`` [K] (normalized here), ``means`` [K, D]
    and diagonal ``variances`` in data units: [K, D] for scale "decoder", [D] for "dim",
    a scalar for "shared" (whose unit is isotropic). Variances below the model's floor
    (min_scale * unit)^2 are raised to it. Returns the module.

    scikit-learn's ``GaussianMixture(covariance_type="diag")`` takes the same point as
    ``weights_init=weights, means_init=means, precisions_init=1 / variances``.
    """
    obs = _gaussian(module)
    ref = module.mixing_logits
    weights, means, variances = (torch.as_tensor(a).to(dtype=ref.dtype, device=ref.device)
                                 for a in (weights, means, variances))
    k, d = module.n_components, obs.dim
    expected = {"decoder": (k, d), "dim": (d,), "shared": ()}[obs.scale]
    if weights.shape != (k,) or means.shape != (k, d) or variances.shape != expected:
        raise ConfigError(f"expected weights [{k}], means [{k}, {d}] and variances {list(expected)} "
                          f"(scale {obs.scale!r}), got {list(weights.shape)}, {list(means.shape)}, "
                          f"{list(variances.shape)}")
    if not (torch.all(weights > 0) and torch.all(variances > 0)):
        raise ConfigError("mixing weights and variances must be positive")
    var = variances / obs.unit.square()  # standardized units
    if obs.scale == "shared":
        var = var.mean().reshape(1)
    module.mixing_logits.copy_(weights.log() - weights.sum().log())
    module.component_params.copy_(_gaussian_component_params(obs, (means - obs.shift) / obs.unit, var))
    return module


@torch.no_grad()
def gaussian_parameters(module: MixtureModule) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(weights [K], means [K, D], variances [K, D]) of a Gaussian mixture in data units
    (tied variances are repeated for every component)."""
    obs = _gaussian(module)
    dist = obs(module.component_params)
    base = dist.base_dist
    k = module.n_components
    return (module.log_weights().exp(), base.loc.expand(k, obs.dim).clone(),
            base.scale.square().expand(k, obs.dim).clone())

