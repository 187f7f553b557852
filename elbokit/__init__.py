"""elbokit: learn latent-variable generative models by maximizing the ELBO."""

from .api import VAE
from .bounds import Terms, elbo, iwae_bound, kl_divergence, log_likelihood
from .errors import CheckpointError, ConfigError, DataError, ElbokitError
from .models import LatentVariableModel, VAEModule
from .models.vae import VAEConfig
from .training import TrainConfig, Trainer

__version__ = "0.1.0"
__all__ = [
    "VAE", "VAEModule", "VAEConfig", "LatentVariableModel", "Terms", "elbo", "iwae_bound",
    "kl_divergence", "log_likelihood", "TrainConfig", "Trainer", "ElbokitError", "DataError",
    "ConfigError", "CheckpointError",
]
