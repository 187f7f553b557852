"""The Gaussian-latent variational autoencoder (Kingma & Welling 2014).

    p(z) = N(0, I)          p(x | z) = observation model(decoder(z))
    q(z | x) = N(mu(x), diag sigma(x)^2)   (the encoder)

With ``decoder="linear"`` and a Gaussian likelihood with one shared variance this is
probabilistic PCA (Tipping & Bishop 1999), whose marginal likelihood is known in closed
form: :meth:`VAEModule.linear_gaussian_marginal` returns it, a ground truth for the bounds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import distributions as D
from torch import nn

from ..errors import ConfigError
from ..likelihoods import Gaussian, ObservationModel, build_likelihood
from ..nets import ACTIVATIONS, mlp

ARCHITECTURES = ("mlp", "linear")


@dataclass
class VAEConfig:
    """Everything needed to rebuild a :class:`VAEModule` (weights aside)."""

    dim: int
    latent_dim: int = 8
    hidden: tuple[int, ...] = (256, 256)
    encoder: str = "mlp"
    decoder: str = "mlp"
    activation: str = "relu"
    likelihood: dict = field(default_factory=lambda: {"name": "bernoulli"})

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.dim < 1:
            raise ConfigError(f"data dimension must be >= 1, not {self.dim}")
        if self.latent_dim < 1:
            raise ConfigError(f"latent dimension must be >= 1, not {self.latent_dim}")
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
        self.encoder = mlp(config.dim, widths[config.encoder], 2 * config.latent_dim,
                           config.activation)
        self.decoder = mlp(config.latent_dim, widths[config.decoder][::-1],
                           self.observation.n_params, config.activation)
        self.register_buffer("prior_loc", torch.zeros(config.latent_dim))
        self.register_buffer("prior_scale", torch.ones(config.latent_dim))

    def prior(self) -> D.Distribution:
        """p(z) = N(0, I): batch_shape [], event_shape [latent_dim]."""
        return D.Independent(D.Normal(self.prior_loc, self.prior_scale, validate_args=False), 1)

    def posterior(self, x: torch.Tensor) -> D.Distribution:
        """q(z | x) = N(mu(x), diag sigma(x)^2): batch_shape [batch], event [latent_dim]."""
        loc, raw_scale = self.encoder(self.observation.network_input(x)).chunk(2, dim=-1)
        # softplus keeps sigma positive without exp's overflow; the floor avoids log(0).
        scale = F.softplus(raw_scale) + 1e-5
        return D.Independent(D.Normal(loc, scale, validate_args=False), 1)

    def likelihood(self, z: torch.Tensor) -> D.Distribution:
        """p(x | z): ``z: [..., latent_dim]`` -> batch_shape [...], event_shape [dim]."""
        return self.observation(self.decoder(z))

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z]: ``[..., latent_dim] -> [..., dim]``."""
        return self.observation.mean(self.decoder(z))

    def linear_gaussian_marginal(self) -> D.MultivariateNormal:
        """Exact p(x) = N(b, W W^T + Psi) of a linear decoder with a Gaussian likelihood
        whose variance does not depend on z (probabilistic PCA / factor analysis)."""
        obs = self.observation
        if self.config.decoder != "linear" or not isinstance(obs, Gaussian) or obs.scale == "decoder":
            raise ConfigError("the marginal is closed-form only for a linear decoder with a "
                              "Gaussian likelihood of scale 'dim' or 'shared'")
        (layer,) = self.decoder
        # x = shift + unit * (W z + b + sigma * eps): fold the standardization into W and Psi.
        weight = obs.unit[:, None] * layer.weight  # [dim, latent]
        loc = obs.shift + obs.unit * layer.bias
        noise_var = (obs.unit * (obs.log_scale.exp().expand(obs.dim) + obs.min_scale)) ** 2
        covariance = weight @ weight.T + torch.diag(noise_var)
        return D.MultivariateNormal(loc, covariance_matrix=covariance)
