"""Latent spaces: the prior p(z), the encoder's posterior family q(z|x), and the support.

    gaussian:N        z in R^N,            p = N(0, I),             q = N(mu(x), diag sigma(x)^2)
    categorical:NxK   N one-hot variables with K states each (event [N, K]), p uniform
    bernoulli:N       N binary variables (event [N]),                 p = Bernoulli(1/2)^N

``categorical:K`` is ``categorical:1xK`` (one K-way variable, e.g. the 2-state "spam / not
spam" z). Discrete spaces can list their support, which enumeration and the exact
log-likelihood use; the size is K^N or 2^N, checked before anything is allocated.
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

KINDS = ("gaussian", "categorical", "bernoulli")


@dataclass(frozen=True)
class LatentSpec:
    """``kind`` with ``n`` variables of ``categories`` states (categorical only)."""

    kind: str = "gaussian"
    n: int = 8
    categories: int = 2

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"latent kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.n < 1:
            raise ConfigError(f"latent size must be >= 1, not {self.n}")
        if self.kind == "categorical" and self.categories < 2:
            raise ConfigError(f"a categorical latent needs >= 2 states, not {self.categories}")

    @classmethod
    def parse(cls, text: str) -> LatentSpec:
        """``gaussian:16``, ``categorical:10``, ``categorical:20x10``, ``bernoulli:32``."""
        match = re.fullmatch(r"(gaussian|bernoulli|categorical):(\d+)(?:x(\d+))?", text.strip())
        if match is None or (match.group(3) and match.group(1) != "categorical"):
            raise ConfigError(f"latent {text!r} is not one of gaussian:N, bernoulli:N, "
                              "categorical:K or categorical:NxK")
        kind, first, second = match.group(1), int(match.group(2)), match.group(3)
        if kind == "categorical":
            return cls(kind, first, int(second)) if second else cls(kind, 1, first)
        return cls(kind, first)

    def __str__(self) -> str:
        if self.kind == "categorical":
            return f"categorical:{self.n}x{self.categories}"
        return f"{self.kind}:{self.n}"

    @property
    def support_size(self) -> float:
        """How many values z can take (inf for Gaussian); a float, since K^N overflows."""
        if self.kind == "gaussian":
            return math.inf
        base = self.categories if self.kind == "categorical" else 2
        return float(base) ** self.n

    @property
    def n_params(self) -> int:
        """Encoder outputs per example."""
        return {"gaussian": 2 * self.n, "bernoulli": self.n,
                "categorical": self.n * self.categories}[self.kind]

    @property
    def flat_dim(self) -> int:
        """Decoder inputs per example (a one-hot code is flattened)."""
        return self.n * self.categories if self.kind == "categorical" else self.n


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
    shape = torch.broadcast_shapes(kl.shape, p.batch_shape)
    # p's parameters take no part, but its batch shape does (as in the general form).
    return kl if shape == kl.shape else kl.expand(shape)


class LatentSpace(nn.Module):
    """Builds p(z), q(z|x) from encoder output, and the support, for one :class:`LatentSpec`."""

    def __init__(self, spec: LatentSpec) -> None:
        super().__init__()
        self.spec = spec
        # Buffers, so the prior follows the module across devices and dtypes.
        if spec.kind == "gaussian":
            self.register_buffer("prior_loc", torch.zeros(spec.n))
            self.register_buffer("prior_scale", torch.ones(spec.n))
        elif spec.kind == "categorical":
            self.register_buffer("prior_logits", torch.zeros(spec.n, spec.categories))
        else:
            self.register_buffer("prior_logits", torch.zeros(spec.n))

    def _wrap(self, params: torch.Tensor) -> D.Distribution:
        kind = self.spec.kind
        if kind == "categorical":
            return D.Independent(D.OneHotCategorical(logits=params, validate_args=False), 1)
        return D.Independent(D.Bernoulli(logits=params, validate_args=False), 1)

    def prior(self) -> D.Distribution:
        if self.spec.kind == "gaussian":
            return D.Independent(StandardNormal(self.prior_loc, self.prior_scale, validate_args=False), 1)
        return self._wrap(self.prior_logits)

    def posterior(self, encoded: torch.Tensor) -> D.Distribution:
        """q(z|x) from encoder output ``encoded: [batch, n_params]``."""
        if self.spec.kind == "gaussian":
            loc, raw_scale = encoded.chunk(2, dim=-1)
            # softplus keeps sigma positive without exp's overflow; the floor avoids log(0).
            scale = F.softplus(raw_scale) + 1e-5
            return D.Independent(D.Normal(loc, scale, validate_args=False), 1)
        if self.spec.kind == "categorical":
            encoded = encoded.unflatten(-1, (self.spec.n, self.spec.categories))
        return self._wrap(encoded)

    def flatten(self, z: torch.Tensor) -> torch.Tensor:
        """``z: [..., *event]`` -> decoder input ``[..., flat_dim]``."""
        return z.flatten(-2) if self.spec.kind == "categorical" else z

    def support(self, limit: int) -> torch.Tensor:
        """Every value of z, ``[S, *event]``; refuses when S > ``limit``."""
        spec, size = self.spec, self.spec.support_size
        if size > limit:
            what = ("a continuous (Gaussian) latent" if spec.kind == "gaussian"
                    else f"{size:.4g} values ({spec})")
            raise ConfigError(f"cannot enumerate z: {what}; enumeration handles up to {limit:,} "
                              "values; use --estimator gumbel, gumbel-st, reinforce or vimco")
        dtype, device = self.prior_logits.dtype, self.prior_logits.device
        base = 2 if spec.kind == "bernoulli" else spec.categories
        # Value s has digits (s // base^j) % base, j = N-1 .. 0: every code, in order, built
        # by tensor arithmetic rather than a Python loop over values.
        index = torch.arange(int(size), device=device)[:, None]
        powers = base ** torch.arange(spec.n - 1, -1, -1, device=device)
        digits = (index // powers) % base  # [S, N]
        if spec.kind == "bernoulli":
            return digits.to(dtype)
        return F.one_hot(digits, spec.categories).to(dtype)  # [S, N, K]
