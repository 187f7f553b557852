"""Observation models p(x | z).

An observation model turns the decoder's raw output ``params: [..., n_params]`` into a
``torch.distributions.Distribution`` over one example ``x: [..., dim]`` whose ``log_prob``
sums over the data dimensions (event shape ``[dim]``). Each model also knows how to check
that a data set fits it (binary values for Bernoulli, counts for Multinomial, ...), so bad
data is refused before training with a message that says which rows are wrong.

All log-densities are on the scale of the data as given: the Gaussian model maps its
standardized parameters back through the data's affine standardization, so the
Jacobian of that transform is part of the density, not an afterthought.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import distributions as D
from torch import nn

from .errors import ConfigError, DataError, describe_rows
from .registry import Registry

LIKELIHOODS: Registry[type[ObservationModel]] = Registry("likelihood")


class ObservationModel(nn.Module):
    """Base class: ``n_params(dim)`` decoder outputs per example -> a distribution over x."""

    # How several decoder outputs per data value are laid out in ``params``: all values' first
    # parameter, then all their second ("parameter-major", e.g. Gaussian loc then scale), or
    # each value's parameters together ("parameter-minor", e.g. a feature's K logits).
    parameter_layout: str = "parameter-major"
    # The range of what the encoder sees (network_input), where it is bounded: learned
    # encoder inputs (the VampPrior's pseudo-inputs) are kept inside it.
    input_range: tuple[float, float] | None = None

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    @property
    def name(self) -> str:
        """The name this model's class is registered under in :data:`LIKELIHOODS` (that of
        the nearest registered base class for an unregistered subclass): declared once, by
        the registration, and saved by :meth:`config`."""
        registered = {cls: name for name, cls in LIKELIHOODS.items()}
        return next(registered[cls] for cls in type(self).__mro__ if cls in registered)

    @property
    def n_params(self) -> int:
        """How many decoder outputs one example needs."""
        return self.dim

    def forward(self, params: torch.Tensor) -> D.Distribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """E[x | z] for decoder output ``params``: [..., n_params] -> [..., dim]."""
        return self(params).mean

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x | params) summed over the data dimensions: ``params: [..., n_params]``,
        ``x: [batch, dim]`` (broadcast against the leading dims) -> ``[...]``. The default
        builds the distribution; models override it where a direct formula skips the
        distribution objects' argument broadcasting on every training step."""
        return self(params).log_prob(x)

    def network_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the encoder sees of ``x: [..., dim]`` (Gaussian data: standardized)."""
        return x

    def from_network_input(self, u: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`network_input`: data values from encoder inputs."""
        return u

    def log_prob_table(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x_b | params_s) for every example and every parameter row:
        ``params: [S, n_params]``, ``x: [B, dim]`` -> ``[B, S]``.

        Enumeration needs this for all S latent values at once. The parameters do not depend
        on x, so exponential-family models override it with one matrix product of the
        sufficient statistics T(x) [B, .] and the natural parameters [S, .]: O(B S D) flops
        and an O(B S) result, instead of a [B, S, D] tensor. This default broadcasts.
        """
        return self(params.unsqueeze(1)).log_prob(x.unsqueeze(0)).transpose(0, 1)

    @classmethod
    def check(cls, x: np.ndarray, where: str) -> None:
        """Raise :class:`DataError` naming ``where`` when ``x: [n, dim]`` cannot come from
        this model."""

    def check_data(self, x: np.ndarray, where: str) -> None:
        """:meth:`check` with what this fitted model fixes (e.g. the category count)."""
        type(self).check(x, where)

    @classmethod
    def for_data(cls, x: np.ndarray, where: str, **options: object) -> ObservationModel:
        """:meth:`check` ``x: [n, dim]`` and build the model for it, fitting what the data
        fix (a Gaussian's standardization, the category count, the document length).
        ``options``: the facade's model options (``gaussian_scale``, ``n_categories``);
        each model takes those it knows and ignores the rest."""
        cls.check(x, where)
        return cls(x.shape[1])

    def config(self) -> dict:
        """What :func:`build_likelihood` needs to rebuild this model."""
        return {"name": self.name}


@LIKELIHOODS.register("bernoulli", help="0/1 data")
class Bernoulli(ObservationModel):
    """Independent binary pixels/features: x_d ~ Bernoulli(sigmoid(logit_d))."""

    input_range = (0.0, 1.0)

    def forward(self, params: torch.Tensor) -> D.Distribution:
        return D.Independent(D.Bernoulli(logits=params, validate_args=False), 1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(params)

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if params.requires_grad and torch.is_grad_enabled():
            # What torch's Bernoulli.log_prob computes: one fused kernel forward and backward.
            return -F.binary_cross_entropy_with_logits(params, x.expand_as(params),
                                                       reduction="none").sum(-1)
        # Scoring (no gradient): log p(x | logit) = x . logit - sum_d softplus(logit_d), a
        # contraction and one softplus pass. The fused kernel above does several elementwise
        # passes over [k, batch, dim] and was most of the time of importance sampling (k
        # draws per example), measured 1.9x slower per element on one core.
        return torch.einsum("...d,...d->...", params, x) - F.softplus(params).sum(-1)

    def log_prob_table(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # log p(x | logit) = x . logit - sum softplus(logit)
        return x @ params.T - F.softplus(params).sum(-1)

    @classmethod
    def check(cls, x: np.ndarray, where: str) -> None:
        bad = ~np.all((x == 0) | (x == 1), axis=1)
        if bad.any():
            raise DataError(
                f"{where}: the Bernoulli likelihood needs 0/1 data, but {describe_rows(bad)} "
                "have other values; use --likelihood gaussian, or --binarize [THRESHOLD]"
            )


@LIKELIHOODS.register("gaussian", help="real values, learned variance (--gaussian-scale)")
class Gaussian(ObservationModel):
    """x_d ~ Normal(mu_d(z), sigma_d) with a learned variance.

    ``scale``: ``"dim"`` one learned sigma per data dimension (default), ``"shared"`` one
    sigma for all dimensions (with a linear decoder this is probabilistic PCA), ``"decoder"``
    sigma_d(z) predicted by the decoder (heteroscedastic).

    The decoder works in standardized units; ``shift`` and ``unit`` (buffers, [dim]) map its
    output back to the data's own scale, so ``log_prob`` is a density of x as given.
    ``min_scale`` (in standardized units) keeps the density finite on constant dimensions.
    """

    scales = ("dim", "shared", "decoder")

    def __init__(self, dim: int, scale: str = "dim", min_scale: float = 1e-3) -> None:
        super().__init__(dim)
        if scale not in self.scales:
            raise ConfigError(f"gaussian scale must be one of {', '.join(self.scales)}, not {scale!r}")
        self.scale = scale
        self.min_scale = min_scale
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("unit", torch.ones(dim))
        if scale == "dim":
            self.log_scale = nn.Parameter(torch.zeros(dim))
        elif scale == "shared":
            self.log_scale = nn.Parameter(torch.zeros(1))

    @property
    def n_params(self) -> int:
        return 2 * self.dim if self.scale == "decoder" else self.dim

    def _loc_scale(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.scale == "decoder":
            loc, raw = params.split(self.dim, dim=-1)
            sigma = F.softplus(raw)
        else:
            loc, sigma = params, self.log_scale.exp().expand(self.dim)
        sigma = sigma + self.min_scale
        return self.shift + self.unit * loc, self.unit * sigma

    def forward(self, params: torch.Tensor) -> D.Distribution:
        loc, scale = self._loc_scale(params)
        return D.Independent(D.Normal(loc, scale, validate_args=False), 1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return self._loc_scale(params)[0]

    def network_input(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.unit

    def from_network_input(self, u: torch.Tensor) -> torch.Tensor:
        return self.shift + self.unit * u

    def log_prob_table(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # In standardized units u = (x - shift) / unit, with mean m and sd s per row:
        # -1/2 sum (u - m)^2 / s^2 = -1/2 (u^2 . 1/s^2 - 2 u . m/s^2 + sum m^2/s^2);
        # the change of units adds -sum log(unit). Expanded like scikit-learn's mixtures.
        loc, scale = self._loc_scale(params)
        m, s = (loc - self.shift) / self.unit, (scale / self.unit).expand_as(loc)  # [S, D]
        u = self.network_input(x)  # [B, D]
        precision = s.pow(-2)
        quadratic = u.square() @ precision.T - 2 * u @ (m * precision).T + (m.square() * precision).sum(-1)
        log_norm = s.log().sum(-1) + self.unit.log().sum() + 0.5 * self.dim * math.log(2 * math.pi)
        return -0.5 * quadratic - log_norm

    def config(self) -> dict:
        return {"name": self.name, "scale": self.scale, "min_scale": self.min_scale}

    @classmethod
    def for_data(cls, x: np.ndarray, where: str, gaussian_scale: str = "dim",
                 **options: object) -> Gaussian:
        """Standardized by ``x``'s column means and standard deviations."""
        cls.check(x, where)
        dim = x.shape[1]
        model = cls(dim, scale=gaussian_scale)
        model.shift.copy_(torch.as_tensor(x.mean(axis=0)))
        std = x.std(axis=0)
        if gaussian_scale == "shared":
            # One unit for all dimensions keeps a shared sigma isotropic on the data's scale
            # (so linear decoder + shared scale stays exactly probabilistic PCA).
            std = np.full(dim, np.sqrt(np.mean(std**2)))
        # A constant column keeps unit 1: its density is then limited by min_scale only.
        model.unit.copy_(torch.as_tensor(np.where(std > 0, std, 1.0)))
        return model


@LIKELIHOODS.register("categorical", help="integer codes 0..C-1 per feature")
class Categorical(ObservationModel):
    """Each of ``dim`` features takes one of ``n_categories`` values {0, ..., C-1}."""

    parameter_layout = "parameter-minor"

    def __init__(self, dim: int, n_categories: int) -> None:
        super().__init__(dim)
        if n_categories < 2:
            raise ConfigError(f"categorical likelihood needs at least 2 categories, not {n_categories}")
        self.n_categories = n_categories

    @property
    def n_params(self) -> int:
        return self.dim * self.n_categories

    def _logits(self, params: torch.Tensor) -> torch.Tensor:
        return params.unflatten(-1, (self.dim, self.n_categories))

    def forward(self, params: torch.Tensor) -> D.Distribution:
        return D.Independent(D.Categorical(logits=self._logits(params), validate_args=False), 1)

    def log_prob_table(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # One-hot codes [B, D*C] against log-probabilities [S, D*C].
        log_probs = self._logits(params).log_softmax(-1).flatten(-2)
        one_hot = F.one_hot(x.long(), self.n_categories).flatten(-2).to(log_probs.dtype)
        return one_hot @ log_probs.T

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        probs = self._logits(params).softmax(-1)
        values = torch.arange(self.n_categories, dtype=probs.dtype, device=probs.device)
        return probs @ values

    @classmethod
    def check(cls, x: np.ndarray, where: str, n_categories: int | None = None) -> None:
        bad = ~np.all((x >= 0) & (x == np.round(x)), axis=1)
        if n_categories is not None:
            bad |= ~np.all(x < n_categories, axis=1)
        if bad.any():
            limit = f" below {n_categories}" if n_categories is not None else ""
            raise DataError(
                f"{where}: the categorical likelihood needs integer codes >= 0{limit}, "
                f"but {describe_rows(bad)} have other values"
            )

    def check_data(self, x: np.ndarray, where: str) -> None:
        self.check(x, where, self.n_categories)

    @classmethod
    def for_data(cls, x: np.ndarray, where: str, n_categories: int | None = None,
                 **options: object) -> Categorical:
        """``n_categories`` codes (default: the largest code in ``x`` plus one)."""
        cls.check(x, where, n_categories)
        return cls(x.shape[1], n_categories or int(x.max()) + 1)

    def config(self) -> dict:
        return {"name": self.name, "n_categories": self.n_categories}


@LIKELIHOODS.register("multinomial", help="word counts of a document (bag of words)")
class Multinomial(ObservationModel):
    """Bag-of-words counts: x ~ Multinomial(n = sum(x), softmax(logits)).

    The document length n is conditioned on (the standard choice for text), so ``log_prob``
    accepts examples of any length; ``sample_length`` (the training data's median length)
    is the length of documents drawn by ``sample``.
    """

    def __init__(self, dim: int, sample_length: int = 1) -> None:
        super().__init__(dim)
        self.sample_length = int(sample_length)

    def forward(self, params: torch.Tensor) -> D.Distribution:
        # log_prob of torch's Multinomial uses the counts' own total, so one object serves
        # documents of every length once the (scalar) total_count check is switched off.
        return D.Multinomial(self.sample_length, logits=params, validate_args=False)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return self.sample_length * params.softmax(-1)

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # log n!/prod x_d! + x . log softmax(logits). The coefficient depends on x alone, so
        # it is computed once per example, not once per sample of z as torch's
        # Multinomial.log_prob does (it broadcasts x to [k, batch, dim] for the lgammas, and
        # its inner Categorical validates the logits on every call): 2-3x faster text models.
        return (x * params.log_softmax(-1)).sum(-1) + self.log_coefficient(x)

    @staticmethod
    def log_coefficient(x: torch.Tensor) -> torch.Tensor:
        """log n! / prod_d x_d! of counts ``x: [..., dim]`` -> ``[...]``."""
        return torch.lgamma(x.sum(-1) + 1) - torch.lgamma(x + 1).sum(-1)

    def log_prob_table(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x @ params.log_softmax(-1).T + self.log_coefficient(x)[:, None]

    @classmethod
    def check(cls, x: np.ndarray, where: str) -> None:
        bad = ~np.all((x >= 0) & (x == np.round(x)), axis=1)
        if bad.any():
            raise DataError(
                f"{where}: the multinomial likelihood needs non-negative integer counts, "
                f"but {describe_rows(bad)} have other values"
            )
        empty = x.sum(axis=1) == 0
        if empty.any():
            raise DataError(f"{where}: {describe_rows(empty)} have no counts (empty documents)")

    def config(self) -> dict:
        return {"name": self.name, "sample_length": self.sample_length}

    @classmethod
    def for_data(cls, x: np.ndarray, where: str, **options: object) -> Multinomial:
        """Samples as long as ``x``'s median document."""
        cls.check(x, where)
        return cls(x.shape[1], sample_length=int(np.median(x.sum(axis=1))))


def is_binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0) | (x == 1)))


def choose_likelihood(x: np.ndarray) -> str:
    """``--likelihood auto``: Bernoulli for 0/1 data, Gaussian otherwise."""
    return "bernoulli" if is_binary(x) else "gaussian"


def build_likelihood(spec: dict, dim: int) -> ObservationModel:
    """Rebuild an observation model from ``config()`` output (plus the data width)."""
    spec = dict(spec)
    return LIKELIHOODS.get(spec.pop("name"))(dim, **spec)


def likelihood_for_data(name: str, x: np.ndarray, where: str, gaussian_scale: str = "dim",
                        n_categories: int | None = None) -> ObservationModel:
    """Check ``x: [n, dim]`` against the named model (``"auto"``: see
    :func:`choose_likelihood`) and build it (:meth:`ObservationModel.for_data`)."""
    if name == "auto":
        name = choose_likelihood(x)
    if name not in LIKELIHOODS:
        raise ConfigError(
            f"unknown likelihood {name!r}; choose from auto, {', '.join(LIKELIHOODS)}"
        )
    return LIKELIHOODS[name].for_data(x, where, gaussian_scale=gaussian_scale,
                                      n_categories=n_categories)
