"""Posterior families q(z | x) over a Gaussian latent space, registered under the name
``--posterior`` uses.

    diagonal    N(mu(x), diag sigma(x)^2)                       (Kingma & Welling 2014)
    iaf:S       that Gaussian pushed through S inverse autoregressive flow steps, each a
                MADE conditioned on a context h(x) from the encoder  (Kingma et al. 2016)

One IAF step maps z to z' = g * z + (1 - g) * m with [m, s] = MADE(z, h) and the gate
g = sigmoid(s + 2) (starting near the identity): output i depends on z_1..z_{i-1} only, so
the Jacobian is triangular with diagonal g and log |det J| = sum_i log g_i. The order of the
coordinates is reversed between steps. The density of a sample follows from the base
density and the log-determinants computed while drawing it:

    log q(z_S | x) = log N(z_0; mu, sigma) - sum_t sum_i log g_t,i

so sampling returns z with its log-density (:meth:`FlowPosterior.rsample_and_log_prob`, used
by the bounds). The density of any other z needs the inverse, which an autoregressive map
gives exactly in ``latent_dim`` passes per step (:meth:`IAF.inverse`): correct, slower, used
only off the training path.
"""

from __future__ import annotations

import torch
from torch import distributions as D
from torch import nn

from ..registry import Registry, SizedSpec

POSTERIORS: Registry[type[Posterior]] = Registry("posterior")


class PosteriorSpec(SizedSpec):
    """``kind`` (a name in :data:`POSTERIORS`) with ``size`` S (flows only)."""

    registry = POSTERIORS
    flag = "--posterior"
    letter = "S"

    def build(self, latent_dim: int) -> Posterior:
        return POSTERIORS[self.kind](latent_dim, self.size)


class Posterior(nn.Module):
    """Base class: q(z | x) from the encoder's Gaussian and ``context_dim`` more encoder
    outputs per example."""

    syntax = ""  # how --posterior spells it: "name", or "name:S" with an ``example`` S
    example = 0
    context_dim = 0

    def __init__(self, latent_dim: int, steps: int) -> None:
        super().__init__()

    def distribution(self, base: D.Distribution, context: torch.Tensor) -> D.Distribution:
        """q(z | x): ``base`` the encoder's diagonal Gaussian (batch [batch], event
        [latent]), ``context: [batch, context_dim]``."""
        raise NotImplementedError  # pragma: no cover


@POSTERIORS.register("diagonal", help="a diagonal Gaussian")
class DiagonalPosterior(Posterior):
    syntax = "diagonal"

    def distribution(self, base: D.Distribution, context: torch.Tensor) -> D.Distribution:
        return base


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 ``mask: [out, in]``."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """An autoregressive network (Germain et al. 2015): ``z: [..., n]`` and a context
    ``h: [..., c]`` -> ``(m, s)``, each ``[..., n]``, where output i depends on z_j for j < i
    only (and on all of h).

    Degrees: input i has degree i (1..n); each hidden unit a degree in 0..n-1 (cycling) and
    sees the units below it of degree <= its own; output i sees hidden units of degree < i.
    A hidden unit of degree 0 sees the context alone, so output 1 depends on h only."""

    def __init__(self, n: int, context_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        degrees = [torch.arange(1, n + 1)]
        for width in hidden:
            degrees.append(torch.arange(width) % n)
        layers = [MaskedLinear((degrees[i + 1][:, None] >= degrees[i][None, :]).float())
                  for i in range(len(hidden))]
        self.hidden = nn.ModuleList(layers)
        self.context = nn.Linear(context_dim, hidden[0])
        out_degrees = torch.arange(1, n + 1).repeat(2)
        self.out = MaskedLinear((out_degrees[:, None] > degrees[-1][None, :]).float())
        self.activation = nn.ELU()

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.activation(self.hidden[0](z) + self.context(h))
        for layer in self.hidden[1:]:
            a = self.activation(layer(a))
        m, s = self.out(a).chunk(2, dim=-1)
        return m, s


class IAF(nn.Module):
    """``steps`` inverse autoregressive flow steps, z: ``[..., n]``, context ``[..., c]``."""

    # sigmoid(s + 2) starts near 0.88: each step starts close to the identity, as Kingma et
    # al. (2016) advise. Measured on the digits (iaf:2, 50 epochs, seed 1): a bias of 1 (gate
    # 0.73) let the posterior collapse (KL 0.7 nats, test log p(x) -23.5); 2 gave -20.1.
    GATE_BIAS = 2.0

    def __init__(self, n: int, steps: int, context_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.made = nn.ModuleList(MADE(n, context_dim, hidden) for _ in range(steps))

    def _gate(self, made: MADE, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m, s = made(z, h)
        return m, torch.sigmoid(s + self.GATE_BIAS)

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z_S, sum of log |det J|)``: ``[..., n]`` and ``[...]``."""
        log_det = z.new_zeros(z.shape[:-1])
        for t, made in enumerate(self.made):
            if t:
                z = z.flip(-1)
            m, gate = self._gate(made, z, h)
            z = gate * z + (1 - gate) * m
            log_det = log_det + gate.log().sum(-1)
        return z, log_det

    def inverse(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z_0, sum of log |det J|)`` for a given z_S (n passes of each MADE: after pass
        j the first j coordinates are exact, since output j depends on those before it)."""
        log_det = z.new_zeros(z.shape[:-1])
        h = h.expand(*z.shape[:-1], h.shape[-1])
        for t in range(len(self.made) - 1, -1, -1):
            made, target, previous = self.made[t], z, torch.zeros_like(z)
            for _ in range(z.shape[-1]):
                m, gate = self._gate(made, previous, h)
                previous = (target - (1 - gate) * m) / gate
            m, gate = self._gate(made, previous, h)
            log_det = log_det + gate.log().sum(-1)
            z = previous.flip(-1) if t else previous
        return z, log_det


class FlowPosterior(D.Distribution):
    """q(z | x): a diagonal Gaussian ``base`` (batch [batch], event [n]) through an
    :class:`IAF` with ``context: [batch, c]``. ``mean`` is the flow applied to the base's
    mean (the flow's image of the Gaussian's centre, not E[z]: no closed form exists); it is
    what ``transform`` and the diagnostics' posterior means use."""

    has_rsample = True
    arg_constraints: dict = {}

    def __init__(self, base: D.Independent, flow: IAF, context: torch.Tensor) -> None:
        self.base, self.flow, self.context = base, flow, context
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    def rsample_and_log_prob(self, sample_shape: tuple[int, ...] | torch.Size = ()
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z [*sample, batch, n], log q(z | x) [*sample, batch])`` in one pass."""
        z0 = self.base.rsample(sample_shape)
        z, log_det = self.flow(z0, self.context)
        return z, self.base.log_prob(z0) - log_det

    def rsample(self, sample_shape: tuple[int, ...] | torch.Size = ()) -> torch.Tensor:
        return self.rsample_and_log_prob(sample_shape)[0]

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log q(value | x) for any ``value: [..., batch, n]``, through the exact inverse."""
        z0, log_det = self.flow.inverse(value, self.context)
        return self.base.log_prob(z0) - log_det

    @property
    def mean(self) -> torch.Tensor:
        return self.flow(self.base.mean, self.context)[0]

    def expand(self, batch_shape, _instance=None):  # pragma: no cover - not needed by bounds
        raise NotImplementedError("a flow posterior does not expand")


@POSTERIORS.register("iaf", help="S inverse autoregressive flow steps on the diagonal Gaussian")
class IAFPosterior(Posterior):
    """The diagonal Gaussian through ``steps`` IAF steps, each a MADE with two hidden layers
    of max(32, 4n) units, conditioned on 2n more encoder outputs (the context h(x))."""

    syntax, example = "iaf:S", 2

    def __init__(self, latent_dim: int, steps: int) -> None:
        super().__init__(latent_dim, steps)
        self.context_dim = max(8, 2 * latent_dim)
        width = max(32, 4 * latent_dim)
        self.flow = IAF(latent_dim, steps, self.context_dim, (width, width))

    def distribution(self, base: D.Distribution, context: torch.Tensor) -> D.Distribution:
        return FlowPosterior(base, self.flow, context)
