"""Two stochastic layers, z = (z1, z2), as in Tomczak & Welling (2018)'s hierarchical VAE:

    generative   p(z2) p(z1 | z2) p(x | z1, z2)      p(z2): any prior (:mod:`.priors`)
    inference    q(z2 | x) q(z1 | x, z2)             (top-down: z2 first, then z1 given it)

Both conditionals are diagonal Gaussians whose parameters networks compute. To the bounds the
pair is one latent vector ``z = [z1, z2]`` (event ``[2n]``), with the two distributions
below answering ``log_prob``, ``sample`` and ``rsample`` by the chain rule, so every bound,
estimator and diagnostic works unchanged; the KL has no closed form and is estimated by
Monte Carlo.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import distributions as D
from torch import nn

from ..nets import ACTIVATIONS, mlp

Conditional = Callable[[torch.Tensor], D.Distribution]


def sample_with_log_prob(q: D.Distribution, sample_shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
    """A reparameterized draw and its log-density, in one pass when q offers one."""
    joint = getattr(q, "rsample_and_log_prob", None)
    if joint is not None:
        return joint(sample_shape)
    z = q.rsample(sample_shape)
    return z, q.log_prob(z)


class TwoLayerPosterior(D.Distribution):
    """q(z | x) = q(z2 | x) q(z1 | x, z2) over ``z = [z1, z2]``: batch [batch], event [2n].

    ``top``: q(z2 | x); ``lower(z2)``: q(z1 | x, z2) for ``z2: [..., batch, n]``. ``mean``
    is ``[E[z1 | x, z2 = E[z2 | x]], E[z2 | x]]``: z1's conditional mean at z2's mean (the
    point transform and the active-unit diagnostic read; E[z1 | x] itself has no closed form).
    """

    has_rsample = True
    arg_constraints: dict = {}

    def __init__(self, top: D.Distribution, lower: Conditional) -> None:
        self.top, self.lower = top, lower
        n = top.event_shape[-1]
        super().__init__(top.batch_shape, torch.Size([2 * n]), validate_args=False)

    def rsample_and_log_prob(self, sample_shape: tuple[int, ...] | torch.Size = ()
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        z2, log_q2 = sample_with_log_prob(self.top, sample_shape)
        q1 = self.lower(z2)
        z1 = q1.rsample()
        return torch.cat([z1, z2], -1), log_q2 + q1.log_prob(z1)

    def rsample(self, sample_shape: tuple[int, ...] | torch.Size = ()) -> torch.Tensor:
        return self.rsample_and_log_prob(sample_shape)[0]

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        z1, z2 = value.chunk(2, -1)
        return self.top.log_prob(z2) + self.lower(z2).log_prob(z1)

    @property
    def mean(self) -> torch.Tensor:
        z2 = self.top.mean
        return torch.cat([self.lower(z2).mean, z2], -1)


class TwoLayerPrior(D.Distribution):
    """p(z) = p(z2) p(z1 | z2) over ``z = [z1, z2]``: batch [], event [2n].
    ``top``: p(z2); ``lower(z2)``: p(z1 | z2) for ``z2: [..., n]``."""

    arg_constraints: dict = {}

    def __init__(self, top: D.Distribution, lower: Conditional) -> None:
        self.top, self.lower = top, lower
        n = top.event_shape[-1]
        super().__init__(top.batch_shape, torch.Size([2 * n]), validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        z1, z2 = value.chunk(2, -1)
        return self.top.log_prob(z2) + self.lower(z2).log_prob(z1)

    def sample(self, sample_shape: tuple[int, ...] | torch.Size = ()) -> torch.Tensor:
        with torch.no_grad():
            z2 = self.top.sample(sample_shape)
            return torch.cat([self.lower(z2).sample(), z2], -1)


class JointInput(nn.Module):
    """An MLP of two inputs, ``a: [batch, da]`` and ``b: [..., batch, db]`` -> ``[..., batch,
    out]``, as if of their concatenation, but with the first layer split into W_a a + W_b b
    so that a (x: many features, the same for every sample of b) passes through its
    weights once per batch rather than once per sample."""

    def __init__(self, a_dim: int, b_dim: int, hidden: Sequence[int], out_dim: int,
                 activation: str = "relu") -> None:
        super().__init__()
        first = hidden[0] if hidden else out_dim
        self.from_a = nn.Linear(a_dim, first)
        self.from_b = nn.Linear(b_dim, first, bias=False)
        self.rest = (nn.Sequential(ACTIVATIONS[activation](), mlp(first, hidden[1:], out_dim, activation))
                     if hidden else nn.Identity())

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.rest(self.from_a(a) + self.from_b(b))
