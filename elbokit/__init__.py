"""elbokit: learn latent-variable generative models by maximizing the ELBO."""

from .api import VAE, LatentModel, Mixture
from .bounds import (
    Terms,
    elbo,
    enumerated_elbo,
    exact_log_likelihood,
    iwae_bound,
    kl_divergence,
    log_likelihood,
)
from .errors import CheckpointError, ConfigError, DataError, ElbokitError
from .models import LatentVariableModel, VAEModule
from .models.mixture import MixtureConfig, MixtureModule
from .models.vae import VAEConfig
from .training import TrainConfig, Trainer

__version__ = "0.1.0"
__all__ = [
    "VAE", "Mixture", "LatentModel", "VAEModule", "VAEConfig", "MixtureModule", "MixtureConfig",
    "LatentVariableModel", "Terms", "elbo", "enumerated_elbo", "exact_log_likelihood",
    "iwae_bound", "kl_divergence", "log_likelihood", "TrainConfig", "Trainer", "ElbokitError",
    "DataError", "ConfigError", "CheckpointError",
]
