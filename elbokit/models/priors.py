"""Priors p(z) over a Gaussian latent space, each registered under the name ``--prior`` uses.

    standard    N(0, I)                                        (Kingma & Welling 2014)
    mog:K       a learned mixture of K diagonal Gaussians
    vamp:K      the VampPrior: (1/K) sum_k q(z | u_k), the encoder's Gaussian posterior at
                K learned pseudo-inputs u_k                    (Tomczak & Welling 2018)

A prior is a module holding its parameters (none for ``standard``). Its one method,
:meth:`Prior.distribution`, returns p(z) as a ``torch.distributions`` object, given the
model's Gaussian latent space and a function ``encode(u) -> q(z | u)`` over encoder inputs
``u: [K, dim]`` (only the VampPrior calls it). Neither mixture has a closed-form KL against
the posterior, so the bounds estimate the KL by Monte Carlo (:mod:`elbokit.bounds`).

With a flow posterior (:mod:`elbokit.models.flows`) the VampPrior's components are the
encoder's Gaussian before the flow: still a valid prior, a mixture of K Gaussians whose
parameters the encoder computes from the pseudo-inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import distributions as D
from torch import nn

from .. import numerics
from ..errors import ConfigError
from ..registry import Registry, SizedSpec

PRIORS: Registry[type[Prior]] = Registry("prior")

Encode = Callable[[torch.Tensor], D.Distribution]


class PriorSpec(SizedSpec):
    """``kind`` (a name in :data:`PRIORS`) with ``size`` K (mixtures only)."""

    registry = PRIORS
    flag = "--prior"
    letter = "K"

    def build(self, latent_dim: int, dim: int, input_range: tuple[float, float] | None) -> Prior:
        return PRIORS[self.kind](latent_dim, self.size, dim, input_range)


class Prior(nn.Module):
    """Base class: ``distribution(latent, encode)`` -> p(z), batch_shape [], event [latent_dim]."""

    syntax = ""  # how --prior spells it: "name", or "name:K" with an ``example`` K
    example = 0

    def __init__(self, latent_dim: int, components: int, dim: int,
                 input_range: tuple[float, float] | None) -> None:
        super().__init__()
        self.latent_dim, self.components = latent_dim, components

    def distribution(self, latent: nn.Module, encode: Encode) -> D.Distribution:  # pragma: no cover
        raise NotImplementedError

    def initialize(self, inputs: torch.Tensor) -> None:
        """Set what data can set (the VampPrior's pseudo-inputs) from encoder inputs
        ``inputs: [n, dim]`` of training examples; the default does nothing."""


@PRIORS.register("standard", help="N(0, I)")
class StandardPrior(Prior):
    """The latent space's own prior, N(0, I), with its closed-form KL."""

    syntax = "standard"

    def distribution(self, latent: nn.Module, encode: Encode) -> D.Distribution:
        return latent.prior()


class GaussianMixture(D.Distribution):
    """A mixture of K diagonal Gaussians over ``[latent]``: means ``loc`` and scales
    ``scale`` ``[K, latent]``, weights softmax(``logits: [K]``). Batch shape [], event
    [latent].

    ``log_prob`` expands the squares, -1/2 sum_d (z_d - m_kd)^2 / s_kd^2 = -1/2 (z^2 . 1/s_k^2
    - 2 z . m_k/s_k^2 + sum_d m_kd^2/s_kd^2), into two matrix products ``[N, latent] @
    [latent, K]``: O(N K latent) flops in a matrix multiply, not the [N, K, latent] tensor of
    ``MixtureSameFamily`` (whose broadcasting made the VampPrior's K = 500 the larger part of a
    training step). Agrees with ``MixtureSameFamily`` to rounding (tested)."""

    arg_constraints: dict = {}

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, logits: torch.Tensor) -> None:
        self.loc, self.scale, self.logits = loc, scale, logits
        super().__init__(torch.Size(), loc.shape[-1:], validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        precision = self.scale.pow(-2)  # [K, latent]
        flat = value.reshape(-1, value.shape[-1])  # [N, latent]
        quadratic = (flat.square() @ precision.T - 2 * flat @ (self.loc * precision).T
                     + (self.loc.square() * precision).sum(-1))  # [N, K]
        log_norm = -self.scale.log().sum(-1) - 0.5 * value.shape[-1] * math.log(2 * math.pi)
        log_weights = torch.log_softmax(self.logits, -1)
        per_component = log_weights + log_norm - 0.5 * quadratic.clamp_min(0)
        return numerics.logsumexp(per_component, -1).reshape(value.shape[:-1])

    def sample(self, sample_shape: tuple[int, ...] | torch.Size = ()) -> torch.Tensor:
        with torch.no_grad():
            k = D.Categorical(logits=self.logits).sample(sample_shape)
            return self.loc[k] + self.scale[k] * torch.randn_like(self.loc[k])

    @property
    def mean(self) -> torch.Tensor:
        return (torch.softmax(self.logits, -1)[:, None] * self.loc).sum(0)


@PRIORS.register("mog", help="a learned mixture of K diagonal Gaussians")
class MixturePrior(Prior):
    """p(z) = sum_k pi_k N(z; m_k, diag s_k^2), all learned; the means start spread as
    N(0, I) draws, the scales at 1, the weights equal."""

    syntax, example = "mog:K", 10

    def __init__(self, latent_dim: int, components: int, dim: int,
                 input_range: tuple[float, float] | None) -> None:
        super().__init__(latent_dim, components, dim, input_range)
        self.loc = nn.Parameter(torch.randn(components, latent_dim))
        self.raw_scale = nn.Parameter(torch.full((components, latent_dim), 0.5413))  # softplus -> 1
        self.logits = nn.Parameter(torch.zeros(components))

    def distribution(self, latent: nn.Module, encode: Encode) -> D.Distribution:
        return GaussianMixture(self.loc, F.softplus(self.raw_scale) + 1e-5, self.logits)


@PRIORS.register("vamp", help="VampPrior: the posterior at K learned pseudo-inputs")
class VampPrior(Prior):
    """p(z) = (1/K) sum_k q(z | u_k) with learned pseudo-inputs ``u: [K, dim]`` in the
    encoder's input space (Tomczak & Welling 2018). Where the encoder's inputs are bounded
    (0/1 data: ``input_range`` (0, 1)) the pseudo-inputs are clipped to that range, as in the
    paper's hard-tanh parameterization. They start at N(0.05, 0.01) draws (the paper's
    initialization for binary images), or at training examples when :meth:`initialize` is
    called (the facade does so)."""

    syntax, example = "vamp:K", 500

    def __init__(self, latent_dim: int, components: int, dim: int,
                 input_range: tuple[float, float] | None) -> None:
        super().__init__(latent_dim, components, dim, input_range)
        self.input_range = tuple(input_range) if input_range else None
        self.raw_inputs = nn.Parameter(0.05 + 0.01 * torch.randn(components, dim))

    def pseudo_inputs(self) -> torch.Tensor:
        """u: ``[K, dim]``, in the encoder's input space."""
        if self.input_range is None:
            return self.raw_inputs
        return F.hardtanh(self.raw_inputs, *self.input_range)

    def initialize(self, inputs: torch.Tensor) -> None:
        """u_k = K examples drawn (with replacement when fewer) from ``inputs: [n, dim]``,
        plus N(0, 0.01^2) noise so that repeated examples part ways."""
        pick = torch.randint(len(inputs), (self.components,))
        with torch.no_grad():
            chosen = inputs[pick].to(self.raw_inputs)
            self.raw_inputs.copy_(chosen + 0.01 * torch.randn_like(chosen))

    def distribution(self, latent: nn.Module, encode: Encode) -> D.Distribution:
        q = encode(self.pseudo_inputs())  # q(z | u_k): batch [K], event [latent]
        base = q.base_dist if isinstance(q, D.Independent) else q
        if not isinstance(base, D.Normal):
            raise ConfigError(f"the VampPrior needs a Gaussian posterior, not {type(base).__name__}")
        return GaussianMixture(base.loc, base.scale, base.loc.new_zeros(self.components))
