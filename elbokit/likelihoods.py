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

    @property
    def input_dim(self) -> int:
        """How many values the encoder sees per example (:meth:`network_input`'s width)."""
        return self.dim

    # Whether log_prob leaves out missing cells (NaN in x): only then may data hold them.
    handles_missing: bool = False

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
    shift: torch.Tensor  # buffers (for type checkers: a submodule's attributes are Tensor | Module)
    unit: torch.Tensor

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


# -- tables of mixed columns -----------------------------------------------------------------

TABLE_KINDS = ("real", "positive", "poisson", "negbin", "binary", "categorical")
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class TableDistribution(D.Distribution):
    """p(x | z) of table rows: independent cells, each of its column's family; a missing cell
    (NaN in x) is left out of :meth:`log_prob`, so the density is that of the observed cells
    (Mattei & Frellsen 2019; Nazabal et al. 2020). batch_shape ``[...]``, event_shape ``[dim]``."""

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, table: Table, params: torch.Tensor) -> None:
        self.table, self.params = table, params
        super().__init__(params.shape[:-1], torch.Size([table.dim]), validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.table.cell_log_prob(self.params, value).sum(-1)

    @property
    def mean(self) -> torch.Tensor:
        return self.table.mean(self.params)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        return self.table.sample(self.params, torch.Size(sample_shape))


@LIKELIHOODS.register("table", help="a table's columns, each of its own type (real, positive, "
                      "poisson, negbin, binary, categorical); missing cells left out")
class Table(ObservationModel):
    """A row of a table, one value per column, each column of its own family:

    ============  ==========================================  ============================
    kind          x                                           p(x | z)
    ============  ==========================================  ============================
    real          a real number                               Normal, learned sd per column
    positive      a number > 0                                log-normal (Normal on log x)
    poisson       a count 0, 1, 2, ...                        Poisson
    negbin        a count                                     negative binomial, learned
                                                              dispersion per column
    binary        0 or 1                                      Bernoulli
    categorical   a code 0 .. K-1 of one of K levels          Categorical over the K levels
    ============  ==========================================  ============================

    ``x: [..., dim]``; NaN marks a missing cell, left out of the density (the reconstruction
    term sums over observed cells, and every bound stays a bound on log p(x_observed)). The
    encoder sees each column standardized (log x for positive columns, log(1 + x) for counts;
    categorical columns one-hot), missing cells as 0, and the mask of observed cells
    (:meth:`network_input`, ``[..., input_dim]``).

    The decoder's outputs (``n_params``: one per column, K per categorical column) are in
    standardized units: ``shift`` and ``unit`` map a real column's (positive: log x's) output
    to the data's scale, and a count column's log-mean is the output plus ``shift`` (the
    column's log mean count), so an untrained decoder starts at the data's own scale.
    """

    handles_missing = True

    def __init__(self, dim: int, kinds: list[str] | tuple[str, ...],
                 levels: list[int] | tuple[int, ...] | None = None, min_scale: float = 1e-3) -> None:
        super().__init__(dim)
        kinds = tuple(kinds)
        levels = tuple(int(k) for k in levels) if levels is not None else (0,) * dim
        if len(kinds) != dim or len(levels) != dim:
            raise ConfigError(f"a table likelihood of {dim} columns needs {dim} column types and "
                              f"level counts, not {len(kinds)} and {len(levels)}")
        unknown = sorted({k for k in kinds if k not in TABLE_KINDS})
        if unknown:
            raise ConfigError(f"unknown column type {unknown[0]!r}; choose from {', '.join(TABLE_KINDS)}")
        levels = tuple(2 if kind == "binary" else k if kind == "categorical" else 0
                       for kind, k in zip(kinds, levels, strict=True))
        for j, (kind, k) in enumerate(zip(kinds, levels, strict=True)):
            if kind == "categorical" and k < 2:
                raise ConfigError(f"categorical column {j + 1} needs at least 2 levels, not {k}")
        self.kinds, self.levels, self.min_scale = kinds, levels, min_scale
        widths = [k if kind == "categorical" else 1 for kind, k in zip(kinds, levels, strict=True)]
        starts = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(int)
        self._n_params = int(sum(widths))

        def index(values: list[int] | np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.asarray(values, dtype=np.int64).reshape(-1))

        # Column indices and decoder-output positions of each kind (non-persistent: they follow
        # from the config). Categorical logits are gathered into [n_cat, K_max], padded with
        # a -inf output (position n_params) so that absent levels have probability 0.
        self.groups = {kind: [j for j in range(dim) if kinds[j] == kind] for kind in TABLE_KINDS}
        for kind, cols in self.groups.items():
            self.register_buffer(f"_{kind}_cols", index(cols), persistent=False)
            self.register_buffer(f"_{kind}_params", index(starts[cols]) if cols else index([]),
                                 persistent=False)
        categorical = self.groups["categorical"]
        self.max_levels = max((levels[j] for j in categorical), default=0)
        gather = np.full((len(categorical), self.max_levels), self._n_params, dtype=np.int64)
        for row, j in enumerate(categorical):
            gather[row, :levels[j]] = starts[j] + np.arange(levels[j])
        self.register_buffer("_categorical_gather", torch.as_tensor(gather), persistent=False)
        valid = (np.arange(self.max_levels)[None, :] < np.array([levels[j] for j in categorical])[:, None]
                 if categorical else np.zeros((0, 0), dtype=bool))
        self.register_buffer("_one_hot_positions", index(np.flatnonzero(valid.reshape(-1))),
                             persistent=False)
        self.register_buffer("_one_hot_rows", index(np.nonzero(valid)[0]), persistent=False)
        # The columns grouped by kind, in TABLE_KINDS order (how the per-kind results are
        # concatenated), and the permutation back to the columns' own order.
        grouped = [j for kind in TABLE_KINDS for j in self.groups[kind]]
        self.register_buffer("_ungroup", index(np.argsort(grouped)), persistent=False)
        discrete = self.groups["binary"] + self.groups["categorical"]
        self.register_buffer("_ungroup_discrete", index(np.argsort(discrete)), persistent=False)
        self.numeric = [j for j in range(dim) if kinds[j] != "categorical"]
        self.register_buffer("_numeric_cols", index(self.numeric), persistent=False)
        log_cols = [kind == "positive" for kind in kinds]
        count_cols = [kind in ("poisson", "negbin") for kind in kinds]
        self.register_buffer("_log_cols", torch.as_tensor(log_cols), persistent=False)
        self.register_buffer("_count_cols", torch.as_tensor(count_cols), persistent=False)
        # A value each missing cell is replaced by before it is masked out (any value in the
        # column's support keeps every term finite, so no NaN reaches a gradient).
        fill = [1.0 if kind == "positive" else 0.0 for kind in kinds]
        self.register_buffer("_fill", torch.as_tensor(fill), persistent=False)
        # Fitted to the data (for_data) and saved with the weights.
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("unit", torch.ones(dim))
        self.register_buffer("input_shift", torch.zeros(dim))
        self.register_buffer("input_unit", torch.ones(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))  # real and positive columns
        self.log_dispersion = nn.Parameter(torch.zeros(dim))  # negbin columns

    @property
    def n_params(self) -> int:
        return self._n_params

    @property
    def input_dim(self) -> int:
        return len(self.numeric) + sum(self.levels[j] for j in self.groups["categorical"]) + self.dim

    def forward(self, params: torch.Tensor) -> D.Distribution:
        return TableDistribution(self, params)

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.cell_log_prob(params, x).sum(-1)

    def _outputs(self, kind: str, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder outputs ``[..., n_kind]`` and column indices of ``kind``'s columns
        (not categorical: one output each)."""
        return params.index_select(-1, getattr(self, f"_{kind}_params")), getattr(self, f"_{kind}_cols")

    def _group(self, kind: str, params: torch.Tensor, x: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The decoder outputs, values and column indices of ``kind``'s columns."""
        p, cols = self._outputs(kind, params)
        return p, x.index_select(-1, cols), cols

    def _normal(self, kind: str, params: torch.Tensor, values: torch.Tensor, cols: torch.Tensor
                ) -> torch.Tensor:
        """log N(values; shift + unit * params, unit * (exp(log_scale) + min_scale))."""
        unit = self.unit[cols]
        loc = self.shift[cols] + unit * params
        scale = unit * (self.log_scale[cols].exp() + self.min_scale)
        return -0.5 * ((values - loc) / scale).square() - scale.log() - _LOG_SQRT_2PI

    def cell_log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x_ij | params) per cell, 0 where the cell is missing: ``params: [...,
        n_params]``, ``x: [batch, dim]`` broadcast against the leading dims -> ``[..., dim]``."""
        observed = ~torch.isnan(x)
        x = torch.where(observed, x, self._fill.to(x.dtype))
        parts = []
        for kind in TABLE_KINDS:
            if not self.groups[kind]:
                continue
            p, v, cols = self._group(kind, params, x)
            if kind == "real":
                lp = self._normal(kind, p, v, cols)
            elif kind == "positive":
                log_v = v.log()
                lp = self._normal(kind, p, log_v, cols) - log_v
            elif kind == "poisson":
                rate = p + self.shift[cols]
                lp = v * rate - rate.exp() - torch.lgamma(v + 1)
            elif kind == "negbin":
                log_mean, log_r = p + self.shift[cols], self.log_dispersion[cols]
                r = log_r.exp()
                lp = (torch.lgamma(v + r) - torch.lgamma(r) - torch.lgamma(v + 1)
                      - r * F.softplus(log_mean - log_r) - v * F.softplus(log_r - log_mean))
            elif kind == "binary":
                p, v = torch.broadcast_tensors(p, v)
                lp = -F.binary_cross_entropy_with_logits(p, v, reduction="none")
            else:
                log_probs = self._categorical_logits(params).log_softmax(-1)  # [..., n_cat, K]
                codes = v.long().unsqueeze(-1)
                shape = torch.broadcast_shapes(log_probs.shape[:-1], codes.shape[:-1])
                lp = log_probs.expand(*shape, self.max_levels).gather(
                    -1, codes.expand(*shape, 1)).squeeze(-1)
            parts.append(lp)
        lead = torch.broadcast_shapes(*(part.shape[:-1] for part in parts))
        cells = torch.cat([part.expand(*lead, part.shape[-1]) for part in parts], -1)
        cells = cells.index_select(-1, self._ungroup)
        return torch.where(observed, cells, torch.zeros((), dtype=cells.dtype, device=cells.device))

    def _categorical_logits(self, params: torch.Tensor) -> torch.Tensor:
        """``[..., n_params] -> [..., n_categorical, K_max]``, -inf at absent levels."""
        padded = F.pad(params, (0, 1), value=-math.inf)
        return padded[..., self._categorical_gather]

    def level_probabilities(self, params: torch.Tensor) -> torch.Tensor:
        """p(level | params) of the binary and categorical columns, in column order:
        ``[..., n_discrete, K_max']`` (K_max' = max(2, K_max), absent levels 0)."""
        width = max(2, self.max_levels)
        parts = []
        if self.groups["binary"]:
            p1 = torch.sigmoid(params.index_select(-1, self._binary_params))
            parts.append(F.pad(torch.stack([1 - p1, p1], -1), (0, width - 2)))
        if self.groups["categorical"]:
            probs = self._categorical_logits(params).softmax(-1)
            parts.append(F.pad(probs, (0, width - self.max_levels)))
        if not parts:
            return params.new_zeros((*params.shape[:-1], 0, width))
        return torch.cat(parts, -2).index_select(-2, self._ungroup_discrete)

    def _numeric_means(self, params: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for kind in ("real", "positive", "poisson", "negbin", "binary"):
            if not self.groups[kind]:
                continue
            p, cols = self._outputs(kind, params)
            if kind in ("real", "positive"):
                loc = self.shift[cols] + self.unit[cols] * p
                if kind == "positive":
                    scale = self.unit[cols] * (self.log_scale[cols].exp() + self.min_scale)
                    loc = (loc + 0.5 * scale.square()).exp()
                out[kind] = loc
            elif kind == "binary":
                out[kind] = torch.sigmoid(p)
            else:
                out[kind] = (p + self.shift[cols]).exp()
        return out

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """E[x | z] per column on the data's scale (``[..., dim]``); for a categorical column,
        whose codes have no mean, the most likely level's code."""
        parts = list(self._numeric_means(params).values())  # in TABLE_KINDS order
        if self.groups["categorical"]:
            parts.append(self._categorical_logits(params).argmax(-1).to(params.dtype))
        return torch.cat(parts, -1).index_select(-1, self._ungroup)

    @torch.no_grad()
    def sample(self, params: torch.Tensor, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        """Draws of whole rows: ``sample_shape + [..., dim]`` (no gradient: draws of discrete
        columns have none)."""
        params = params.expand(*sample_shape, *params.shape)
        parts = []
        for kind in TABLE_KINDS:
            if not self.groups[kind]:
                continue
            p, cols = self._outputs(kind, params)
            if kind in ("real", "positive"):
                unit = self.unit[cols]
                loc = self.shift[cols] + unit * p
                scale = unit * (self.log_scale[cols].exp() + self.min_scale)
                draw = loc + scale * torch.randn_like(loc)
                draw = draw.exp() if kind == "positive" else draw
            elif kind == "poisson":
                draw = torch.poisson((p + self.shift[cols]).exp())
            elif kind == "negbin":
                log_r = self.log_dispersion[cols].expand_as(p)
                draw = D.NegativeBinomial(log_r.exp(), logits=p + self.shift[cols] - log_r,
                                          validate_args=False).sample()
            elif kind == "binary":
                draw = torch.bernoulli(torch.sigmoid(p))
            else:
                draw = D.Categorical(logits=self._categorical_logits(params),
                                     validate_args=False).sample().to(params.dtype)
            parts.append(draw)
        return torch.cat(parts, -1).index_select(-1, self._ungroup)

    def network_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x: [..., dim]`` (NaN: missing) -> ``[..., input_dim]``: the numeric columns
        standardized, the categorical ones one-hot, then the mask of observed cells; a missing
        cell's features are 0."""
        observed = ~torch.isnan(x)
        x = torch.where(observed, x, self._fill.to(x.dtype))
        seen = observed.to(x.dtype)
        value = torch.where(self._log_cols, x.clamp_min(1e-30).log(),
                            torch.where(self._count_cols, x.clamp_min(0).log1p(), x))
        numeric = ((value - self.input_shift) / self.input_unit * seen).index_select(-1, self._numeric_cols)
        parts = [numeric]
        if self.groups["categorical"]:
            codes = x.index_select(-1, self._categorical_cols).long()
            one_hot = F.one_hot(codes, self.max_levels).to(x.dtype).flatten(-2)
            one_hot = one_hot.index_select(-1, self._one_hot_positions)
            parts.append(one_hot * seen.index_select(-1, self._categorical_cols).index_select(
                -1, self._one_hot_rows))
        parts.append(seen)
        return torch.cat(parts, -1)

    def from_network_input(self, u: torch.Tensor) -> torch.Tensor:
        """Rows of data from encoder inputs (the VampPrior's pseudo-inputs): numeric columns
        mapped back, a categorical column's largest one-hot entry, NaN where the mask entry
        is below 1/2."""
        n_numeric, cols = len(self.numeric), self._numeric_cols
        out = u.new_zeros((*u.shape[:-1], self.dim))
        value = self.input_shift[cols] + self.input_unit[cols] * u[..., :n_numeric]
        value = torch.where(self._log_cols[cols], value.exp(),
                            torch.where(self._count_cols[cols], value.expm1().clamp_min(0).round(), value))
        out[..., self._numeric_cols] = value
        if self.groups["categorical"]:
            width = len(self.groups["categorical"]) * self.max_levels
            scores = u.new_full((*u.shape[:-1], width), -math.inf)
            scores[..., self._one_hot_positions] = u[..., n_numeric:self.input_dim - self.dim]
            codes = scores.unflatten(-1, (-1, self.max_levels)).argmax(-1)
            out[..., self._categorical_cols] = codes.to(u.dtype)
        binary = self._binary_cols
        out[..., binary] = (out[..., binary] > 0.5).to(u.dtype)
        return torch.where(u[..., -self.dim:] >= 0.5, out, torch.full_like(out, math.nan))

    @classmethod
    def check_kinds(cls, x: np.ndarray, where: str, kinds: tuple[str, ...], levels: tuple[int, ...]) -> None:
        """Refuse values outside their column's support (missing cells aside), and rows with
        every cell missing, naming rows and column."""
        if x.shape[1] != len(kinds):
            raise DataError(f"{where}: {x.shape[1]} columns, but the table model has {len(kinds)}")
        empty = np.isnan(x).all(axis=1)
        if empty.any():
            raise DataError(f"{where}: {describe_rows(empty)} have every cell missing")
        for j, kind in enumerate(kinds):
            v = x[:, j]
            seen = ~np.isnan(v)
            ok = np.isfinite(v)
            if kind == "positive":
                ok &= v > 0
            elif kind in ("poisson", "negbin"):
                ok &= (v >= 0) & (v == np.round(v))
            elif kind == "binary":
                ok &= (v == 0) | (v == 1)
            elif kind == "categorical":
                ok &= (v >= 0) & (v == np.round(v)) & (v < levels[j])
            bad = seen & ~ok
            if bad.any():
                need = {"real": "finite numbers", "positive": "numbers > 0",
                        "poisson": "counts 0, 1, 2, ...", "negbin": "counts 0, 1, 2, ...",
                        "binary": "0 or 1", "categorical": f"codes 0..{levels[j] - 1}"}[kind]
                raise DataError(f"{where}: column {j + 1} ({kind}) needs {need}, but "
                                f"{describe_rows(bad)} have other values")

    def check_data(self, x: np.ndarray, where: str) -> None:
        self.check_kinds(x, where, self.kinds, self.levels)

    @classmethod
    def check(cls, x: np.ndarray, where: str) -> None:
        raise ConfigError(f"{where}: the table likelihood needs its columns' types (a table "
                          "read with them, or column types)")

    @classmethod
    def for_data(cls, x: np.ndarray, where: str, column_kinds: tuple[str, ...] | None = None,
                 column_levels: tuple[int, ...] | None = None, **options: object) -> Table:
        """Columns of ``column_kinds`` (``column_levels``: each categorical column's level
        count), standardized by ``x``'s observed cells."""
        if column_kinds is None:
            cls.check(x, where)
        kinds = tuple(column_kinds)
        levels = tuple(column_levels) if column_levels is not None else tuple(
            int(np.nanmax(x[:, j])) + 1 if k == "categorical" else 0 for j, k in enumerate(kinds))
        cls.check_kinds(x, where, kinds, levels)
        model = cls(x.shape[1], kinds, levels)
        with np.errstate(all="ignore"):
            for j, kind in enumerate(kinds):
                v = x[:, j][~np.isnan(x[:, j])]
                if kind in ("real", "positive"):
                    v = np.log(v) if kind == "positive" else v
                    shift, unit = v.mean(), v.std()
                    model.shift[j], model.unit[j] = float(shift), float(unit if unit > 0 else 1.0)
                    model.input_shift[j], model.input_unit[j] = model.shift[j], model.unit[j]
                elif kind in ("poisson", "negbin"):
                    model.shift[j] = math.log(max(float(v.mean()), 1e-3))
                    t = np.log1p(v)
                    model.input_shift[j], model.input_unit[j] = float(t.mean()), float(t.std() or 1.0)
        return model

    def config(self) -> dict:
        return {"name": self.name, "kinds": list(self.kinds), "levels": list(self.levels),
                "min_scale": self.min_scale}


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
