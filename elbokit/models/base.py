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
    exact_posterior  -> bool       True when posterior(x) is the exact p(z | x) (a mixture):
                                   enumeration then derives log q from the prior and likelihood
                                   tables (Bayes' rule) instead of calling posterior(x)
    describe()      -> str         one line naming the model and its components (the report's
                                   header); :func:`describe` falls back to the distributions' types
    posterior(x).rsample_and_log_prob(shape) -> (z, log q(z|x))
                                   a draw and its density in one pass (a flow, whose density
                                   elsewhere needs an inverse); the bounds use it when present
    latent_layers   -> sizes       the stochastic layers within z, bottom first (diagnostics
                                   report active units per layer)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch
from torch import distributions as D


@runtime_checkable
class LatentVariableModel(Protocol):
    """Anything with a prior, a likelihood and an approximate posterior (the encoder)."""

    def prior(self) -> D.Distribution: ...

    def likelihood(self, z: torch.Tensor) -> D.Distribution: ...

    def posterior(self, x: torch.Tensor) -> D.Distribution: ...


if TYPE_CHECKING:
    class ProtocolModule(torch.nn.Module):
        """For type checkers only: a ``torch.nn.Module`` that speaks the protocol (what the
        trainer and the facades hold; a module's attributes otherwise type as Tensor | Module).
        At run time the name is ``torch.nn.Module`` itself."""

        def prior(self) -> D.Distribution: ...

        def likelihood(self, z: torch.Tensor) -> D.Distribution: ...

        def posterior(self, x: torch.Tensor) -> D.Distribution: ...
else:
    ProtocolModule = torch.nn.Module


def family(distribution: D.Distribution) -> str:
    """The distribution's type under its ``Independent`` wrappers, e.g. ``"Normal"``."""
    while isinstance(distribution, D.Independent):
        distribution = distribution.base_dist
    return type(distribution).__name__


@torch.no_grad()
def describe(module: LatentVariableModel) -> str:
    """One line describing ``module``: its own ``describe()`` when it has one; otherwise its
    class name and the families of p(z), q(z | x) and p(x | z), found by running the protocol
    once (z drawn from the prior, x from p(x | z), then q(z | x) of that x), so a model
    nothing in elbokit has heard of is still described by what it is made of."""
    own = getattr(module, "describe", None)
    if callable(own):
        return str(own())
    prior = module.prior()
    likelihood = module.likelihood(prior.sample())
    posterior = module.posterior(likelihood.sample().unsqueeze(0))
    return (f"{type(module).__name__} (prior {family(prior)}, posterior {family(posterior)}, "
            f"likelihood {family(likelihood)})")
