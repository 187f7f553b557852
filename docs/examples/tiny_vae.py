"""A user's own model in one file: a VAE with a Student-t prior, written from scratch.

Train it with ``elbokit fit --model docs/examples/tiny_vae.py:TinyVAE`` or from Python with
``elbokit.LatentModel(TinyVAE)``; elbokit constructs it as ``TinyVAE(dim=<data width>,
**model_options)``.
"""

import torch
from torch import distributions as D
from torch import nn


class TinyVAE(nn.Module):
    """Bernoulli pixels, a Gaussian posterior, a heavy-tailed Student-t prior."""

    def __init__(self, dim: int, latent_dim: int = 4, hidden: int = 64, prior_df: float = 5.0):
        super().__init__()
        self.latent_dim, self.prior_df = latent_dim, prior_df
        self.encoder = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.register_buffer("zero", torch.zeros(latent_dim))

    def prior(self) -> D.Distribution:  # p(z): event [latent_dim]
        return D.Independent(D.StudentT(self.prior_df, self.zero, torch.ones_like(self.zero)), 1)

    def likelihood(self, z: torch.Tensor) -> D.Distribution:  # p(x | z): z [..., latent] -> event [dim]
        return D.Independent(D.Bernoulli(logits=self.decoder(z)), 1)

    def posterior(self, x: torch.Tensor) -> D.Distribution:  # q(z | x): x [batch, dim]
        mean, log_scale = self.encoder(x).chunk(2, dim=-1)
        return D.Independent(D.Normal(mean, log_scale.exp()), 1)

    def check_data(self, x, where: str) -> None:  # optional: refuse what p(x | z) cannot score
        if ((x != 0) & (x != 1)).any():
            raise ValueError(f"{where}: TinyVAE models 0/1 data")
