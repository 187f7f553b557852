"""The one model protocol every bound, estimator and tool speaks.

A latent-variable model answers three questions, each with a
``torch.distributions.Distribution`` whose event dimensions are wrapped with ``Independent``
so that ``log_prob`` returns one number per example:

    prior()        -> p(z)          batch_shape [],      event_shape [latent]
    likelihood(z)  -> p(x | z)      z: [..., latent] ->  batch_shape [...], event [dim]
    posterior(x)   -> q(z | x)      x: [batch, dim]  ->  batch_shape [batch], event [latent]

Optional capabilities that bounds and estimators use when present (never a model class):

    support_size                  how many values z takes (inf when continuous)
    support(limit)  -> [S, *event] every value of z (discrete z)
    likelihood_table(z, x) -> [B, S]  log p(x_b | z_s) for all pairs, faster than broadcasting
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import distributions as D


@runtime_checkable
class LatentVariableModel(Protocol):
    """Anything with a prior, a likelihood and an approximate posterior (the encoder)."""

    def prior(self) -> D.Distribution: ...

    def likelihood(self, z: torch.Tensor) -> D.Distribution: ...

    def posterior(self, x: torch.Tensor) -> D.Distribution: ...
