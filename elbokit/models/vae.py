"""The Gaussian-latent variational autoencoder (Kingma & Welling 2014).

    p(z) = N(0, I)          p(x | z) = observation model(decoder(z))
    q(z | x) = N(mu(x), diag sigma(x)^2)   (the encoder)

or, with a discrete latent space (:mod:`elbokit.models.latents`), categorical or Bernoulli
codes with a uniform prior and an encoder that outputs their logits.

With ``decoder="linear"`` and a Gaussian likelihood with one shared variance this is
probabilistic PCA (Tipping & Bishop 1999), whose marginal likelihood is known in closed
form: :meth:`VAEModule.linear_gaussian_marginal` returns it, a ground truth for the bounds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import distributions as D
from torch import nn

from ..errors import ConfigError
from ..likelihoods import Gaussian, ObservationModel, build_likelihood
from ..nets import ACTIVATIONS, mlp
from .latents import LatentSpace, LatentSpec

ARCHITECTURES = ("mlp", "linear")


@dataclass
class VAEConfig:
    """Everything needed to rebuild a :class:`VAEModule` (weights aside)."""

    dim: int
    latent_dim: int = 8
    latent: str = "gaussian"
    categories: int = 2
    hidden: tuple[int, ...] = (256, 256)
    encoder: str = "mlp"
    decoder: str = "mlp"
    activation: str = "relu"
    likelihood: dict = field(default_factory=lambda: {"name": "bernoulli"})

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.dim < 1:
            raise ConfigError(f"data dimension must be >= 1, not {self.dim}")
        self.latent_spec  # noqa: B018 - building it validates kind, size and categories
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"hidden widths must be >= 1, not {list(self.hidden)}")
        for part in ("encoder", "decoder"):
            if getattr(self, part) not in ARCHITECTURES:
                raise ConfigError(
                    f"{part} must be one of {', '.join(ARCHITECTURES)}, not {getattr(self, part)!r}"
                )
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"activation must be one of {', '.join(ACTIVATIONS)}, not {self.activation!r}"
            )

    @property
    def latent_spec(self) -> LatentSpec:
        return LatentSpec(self.latent, self.latent_dim, self.categories)

    def to_dict(self) -> dict:
        return asdict(self) | {"hidden": list(self.hidden)}


class VAEModule(nn.Module):
    """A VAE speaking the model protocol. ``x: [batch, dim]``, ``z: [..., latent_dim]``."""

    def __init__(self, config: VAEConfig, observation: ObservationModel | None = None) -> None:
        super().__init__()
        self.config = config
        self.observation = observation or build_likelihood(config.likelihood, config.dim)
        config.likelihood = self.observation.config()
        widths = {"mlp": config.hidden, "linear": ()}
        self.latent = LatentSpace(config.latent_spec)
        self.encoder = mlp(config.dim, widths[config.encoder], config.latent_spec.n_params,
                           config.activation)
        self.decoder = mlp(config.latent_spec.flat_dim, widths[config.decoder][::-1],
                           self.observation.n_params, config.activation)

    def prior(self) -> D.Distribution:
        """p(z): batch_shape [], event_shape [latent_dim] (categorical: [latent_dim, K])."""
        return self.latent.prior()

    def posterior(self, x: torch.Tensor) -> D.Distribution:
        """q(z | x): batch_shape [batch], event_shape as the prior's."""
        return self.latent.posterior(self.encoder(self.observation.network_input(x)))

    def likelihood(self, z: torch.Tensor) -> D.Distribution:
        """p(x | z): ``z: [..., *event]`` -> batch_shape [...], event_shape [dim]."""
        return self.observation(self.decoder(self.latent.flatten(z)))

    def likelihood_table(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x_b | z_s) for all pairs: ``z: [S, *event]``, ``x: [B, dim]`` -> ``[B, S]``.
        The decoder runs once per latent value, not once per (example, value) pair."""
        return self.observation.log_prob_table(self.decoder(self.latent.flatten(z)), x)

    @property
    def support_size(self) -> float:
        """How many values z takes (inf for a Gaussian z)."""
        return self.config.latent_spec.support_size

    def support(self, limit: int) -> torch.Tensor:
        """Every value of a discrete z, ``[S, *event]`` (see :meth:`LatentSpace.support`)."""
        return self.latent.support(limit)

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z]: ``[..., *event] -> [..., dim]``."""
        return self.observation.mean(self.decoder(self.latent.flatten(z)))

    def linear_gaussian_marginal(self) -> D.MultivariateNormal:
        """Exact p(x) = N(b, W W^T + Psi) of a linear decoder with a Gaussian likelihood
        whose variance does not depend on z (probabilistic PCA / factor analysis)."""
        obs = self.observation
        if (self.config.decoder != "linear" or self.config.latent != "gaussian"
                or not isinstance(obs, Gaussian) or obs.scale == "decoder"):
            raise ConfigError("the marginal is closed-form only for a Gaussian latent, a linear "
                              "decoder and a Gaussian likelihood of scale 'dim' or 'shared'")
        (layer,) = self.decoder
        # x = shift + unit * (W z + b + sigma * eps): fold the standardization into W and Psi.
        weight = obs.unit[:, None] * layer.weight  # [dim, latent]
        loc = obs.shift + obs.unit * layer.bias
        noise_var = (obs.unit * (obs.log_scale.exp().expand(obs.dim) + obs.min_scale)) ** 2
        covariance = weight @ weight.T + torch.diag(noise_var)
        return D.MultivariateNormal(loc, covariance_matrix=covariance)
