"""Latent spaces: the prior p(z), the encoder's posterior family q(z|x), and the support.

    gaussian:N        z in R^N,            p = N(0, I),             q = N(mu(x), diag sigma(x)^2)
    categorical:NxK   N one-hot variables with K states each (event [N, K]), p uniform
    bernoulli:N       N binary variables (event [N]),                 p = Bernoulli(1/2)^N

``categorical:K`` is ``categorical:1xK`` (one K-way variable, e.g. the 2-state "spam / not
spam" z). Discrete spaces can list their support, which enumeration and the exact
log-likelihood use; the size is K^N or 2^N, checked before anything is allocated.

Each kind is a :class:`LatentSpace` subclass registered in :data:`LATENTS` under the name
that ``--latent KIND:N`` uses; a new kind is a subclass plus its registration.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import distributions as D
from torch import nn

from ..errors import ConfigError
from ..registry import Registry

LATENTS: Registry[type[LatentSpace]] = Registry("latent")


@dataclass(frozen=True)
class LatentSpec:
    """``kind`` (a name in :data:`LATENTS`) with ``n`` variables of ``categories`` states
    (categorical only)."""

    kind: str = "gaussian"
    n: int = 8
    categories: int = 2

    def __post_init__(self) -> None:
        space = LATENTS.get(self.kind)  # an unknown kind: one line naming the known ones
        if self.n < 1:
            raise ConfigError(f"latent size must be >= 1, not {self.n}")
        space.check(self)

    @classmethod
    def parse(cls, text: str) -> LatentSpec:
        """``gaussian:16``, ``categorical:10``, ``categorical:20x10``, ``bernoulli:32``: a
        registered kind, then the sizes its :meth:`LatentSpace.sizes` accepts."""
        match = re.fullmatch(r"([\w-]+):(\d+)(?:x(\d+))?", text.strip())
        space = LATENTS[match.group(1)] if match and match.group(1) in LATENTS else None
        sizes = space and space.sizes(int(match.group(2)),
                                      int(match.group(3)) if match.group(3) else None)
        if not sizes:
            forms = [form for _, kind in LATENTS.items() for form in kind.syntax]
            raise ConfigError(f"latent {text!r} is not one of {', '.join(forms[:-1])} or "
                              f"{forms[-1]}")
        return cls(match.group(1), *sizes)

    @property
    def space(self) -> type[LatentSpace]:
        """The :class:`LatentSpace` subclass of this kind."""
        return LATENTS[self.kind]

    def build(self) -> LatentSpace:
        """The latent space (prior buffers, posterior family) of this spec."""
        return self.space(self)

    def __str__(self) -> str:
        return self.space.text(self)

    @property
    def support_size(self) -> float:
        """How many values z can take (inf when continuous); a float, since K^N overflows."""
        return self.space.support_size(self)

    @property
    def n_params(self) -> int:
        """Encoder outputs per example."""
        return self.space.n_params(self)

    @property
    def flat_dim(self) -> int:
        """Decoder inputs per example (a one-hot code is flattened)."""
        return self.space.flat_dim(self)


def latent_help() -> str:
    """The registered kinds, their spellings and help, for ``--latent``'s help text."""
    return ", ".join(f"{' or '.join(kind.syntax)} ({LATENTS.help(name)})"
                     for name, kind in LATENTS.items())


class StandardNormal(D.Normal):
    """N(0, 1): a ``Normal`` whose ``loc`` is 0 and ``scale`` 1 (the caller passes those).
    The type selects the KL registered below, whose short form needs no arithmetic with p's
    parameters (fewer ops per training step). It expands and samples as any ``Normal``."""


@D.register_kl(D.Normal, StandardNormal)
def _kl_normal_standard_normal(q: D.Normal, p: StandardNormal) -> torch.Tensor:
    """KL(N(m, s^2) || N(0, 1)) = (m^2 + s^2 - 1) / 2 - log s, per coordinate: q's batch
    shape broadcast with p's. Found by ``torch.distributions.kl_divergence`` (and so by
    :func:`elbokit.bounds.closed_form_kl`) for any Normal q against this prior."""
    kl = 0.5 * (q.loc.square() + q.scale.square() - 1) - q.scale.log()
    # p's parameters take no part, but its batch shape does (as in the general form). The
    # usual case, p's shape a suffix of q's, is checked in Python: torch.broadcast_shapes
    # costs as much as the arithmetic above on a small model's every training step.
    prior = p.batch_shape
    if len(prior) <= kl.dim() and kl.shape[kl.dim() - len(prior):] == prior:
        return kl
    return kl.expand(torch.broadcast_shapes(kl.shape, p.batch_shape))


class LatentSpace(nn.Module):
    """p(z), q(z|x) from encoder output, and the support, for one :class:`LatentSpec`.

    One subclass per kind, registered in :data:`LATENTS`. The classmethods answer what a
    spec of the kind needs before any module exists (sizes, support size, its spelling);
    instances hold the prior's parameters as buffers, so the prior follows the module across
    devices and dtypes.
    """

    syntax: tuple[str, ...] = ()  # how --latent spells the kind, e.g. ("gaussian:N",)

    def __init__(self, spec: LatentSpec) -> None:
        super().__init__()
        self.spec = spec

    @classmethod
    def sizes(cls, first: int, second: int | None) -> tuple[int, int] | None:
        """``(n, categories)`` from the numbers of ``KIND:first`` or ``KIND:firstxsecond``;
        None when the kind has no such spelling."""
        return (first, 2) if second is None else None

    @classmethod
    def check(cls, spec: LatentSpec) -> None:
        """Raise :class:`ConfigError` for sizes the kind cannot take."""

    @classmethod
    def n_params(cls, spec: LatentSpec) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def flat_dim(cls, spec: LatentSpec) -> int:
        return spec.n

    @classmethod
    def support_size(cls, spec: LatentSpec) -> float:
        return math.inf

    @classmethod
    def text(cls, spec: LatentSpec) -> str:
        return f"{spec.kind}:{spec.n}"

    def prior(self) -> D.Distribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def posterior(self, encoded: torch.Tensor) -> D.Distribution:  # pragma: no cover - abstract
        """q(z|x) from encoder output ``encoded: [batch, n_params]``."""
        raise NotImplementedError

    def flatten(self, z: torch.Tensor) -> torch.Tensor:
        """``z: [..., *event]`` -> decoder input ``[..., flat_dim]``."""
        return z

    def support(self, limit: int) -> torch.Tensor:
        """Every value of z, ``[S, *event]``; refuses when S > ``limit``."""
        spec, size = self.spec, self.spec.support_size
        if size > limit:
            what = (f"a continuous latent ({spec})" if math.isinf(size)
                    else f"{size:.4g} values ({spec})")
            raise ConfigError(f"cannot enumerate z: {what}; enumeration handles up to {limit:,} "
                              "values; use --estimator gumbel, gumbel-st, reinforce or vimco")
        return self.enumerate(int(size))

    def enumerate(self, size: int) -> torch.Tensor:  # pragma: no cover - continuous kinds
        """Every one of the ``size`` values of a discrete z, ``[S, *event]``."""
        raise NotImplementedError


@LATENTS.register("gaussian", help="N real variables, standard normal prior")
class GaussianLatent(LatentSpace):
    syntax = ("gaussian:N",)

    def __init__(self, spec: LatentSpec) -> None:
        super().__init__(spec)
        self.register_buffer("prior_loc", torch.zeros(spec.n))
        self.register_buffer("prior_scale", torch.ones(spec.n))

    @classmethod
    def n_params(cls, spec: LatentSpec) -> int:
        return 2 * spec.n  # mean and raw scale per variable

    def prior(self) -> D.Distribution:
        return D.Independent(StandardNormal(self.prior_loc, self.prior_scale, validate_args=False), 1)

    def posterior(self, encoded: torch.Tensor) -> D.Distribution:
        loc, raw_scale = encoded.chunk(2, dim=-1)
        # softplus keeps sigma positive without exp's overflow; the floor avoids log(0).
        scale = F.softplus(raw_scale) + 1e-5
        return D.Independent(D.Normal(loc, scale, validate_args=False), 1)


class DiscreteLatent(LatentSpace):
    """N variables of ``states(spec)`` values each, with uniform prior logits (a buffer,
    ``prior_logits``) and posterior logits from the encoder; the support is every code."""

    @classmethod
    def states(cls, spec: LatentSpec) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def wrap(self, logits: torch.Tensor) -> D.Distribution:  # pragma: no cover - abstract
        """The distribution of z with ``logits: [..., *logit event]``."""
        raise NotImplementedError

    def prior(self) -> D.Distribution:
        return self.wrap(self.prior_logits)

    def posterior(self, encoded: torch.Tensor) -> D.Distribution:
        return self.wrap(encoded)

    @classmethod
    def support_size(cls, spec: LatentSpec) -> float:
        return float(cls.states(spec)) ** spec.n

    def enumerate(self, size: int) -> torch.Tensor:
        dtype, device = self.prior_logits.dtype, self.prior_logits.device
        base = self.states(self.spec)
        # Value s has digits (s // base^j) % base, j = N-1 .. 0: every code, in order, built
        # by tensor arithmetic rather than a Python loop over values.
        index = torch.arange(size, device=device)[:, None]
        powers = base ** torch.arange(self.spec.n - 1, -1, -1, device=device)
        return self.code((index // powers) % base).to(dtype)

    def code(self, digits: torch.Tensor) -> torch.Tensor:
        """z from the state index of each variable, ``digits: [S, N]`` -> ``[S, *event]``."""
        return digits


@LATENTS.register("categorical", help="N one-hot variables of K states, uniform prior; "
                  "K alone: one variable")
class CategoricalLatent(DiscreteLatent):
    syntax = ("categorical:K", "categorical:NxK")

    def __init__(self, spec: LatentSpec) -> None:
        super().__init__(spec)
        self.register_buffer("prior_logits", torch.zeros(spec.n, spec.categories))

    @classmethod
    def sizes(cls, first: int, second: int | None) -> tuple[int, int]:
        return (first, second) if second is not None else (1, first)

    @classmethod
    def check(cls, spec: LatentSpec) -> None:
        if spec.categories < 2:
            raise ConfigError(f"a categorical latent needs >= 2 states, not {spec.categories}")

    @classmethod
    def states(cls, spec: LatentSpec) -> int:
        return spec.categories

    @classmethod
    def n_params(cls, spec: LatentSpec) -> int:
        return spec.n * spec.categories

    @classmethod
    def flat_dim(cls, spec: LatentSpec) -> int:
        return spec.n * spec.categories

    @classmethod
    def text(cls, spec: LatentSpec) -> str:
        return f"categorical:{spec.n}x{spec.categories}"

    def wrap(self, logits: torch.Tensor) -> D.Distribution:
        return D.Independent(D.OneHotCategorical(logits=logits, validate_args=False), 1)

    def posterior(self, encoded: torch.Tensor) -> D.Distribution:
        return self.wrap(encoded.unflatten(-1, (self.spec.n, self.spec.categories)))

    def flatten(self, z: torch.Tensor) -> torch.Tensor:
        return z.flatten(-2)

    def code(self, digits: torch.Tensor) -> torch.Tensor:
        return F.one_hot(digits, self.spec.categories)  # [S, N, K]


@LATENTS.register("bernoulli", help="N bits, uniform prior")
class BernoulliLatent(DiscreteLatent):
    syntax = ("bernoulli:N",)

    def __init__(self, spec: LatentSpec) -> None:
        super().__init__(spec)
        self.register_buffer("prior_logits", torch.zeros(spec.n))

    @classmethod
    def states(cls, spec: LatentSpec) -> int:
        return 2

    @classmethod
    def n_params(cls, spec: LatentSpec) -> int:
        return spec.n

    def wrap(self, logits: torch.Tensor) -> D.Distribution:
        return D.Independent(D.Bernoulli(logits=logits, validate_args=False), 1)
