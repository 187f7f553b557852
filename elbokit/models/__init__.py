"""Models: modules that compose distributions behind the prior/likelihood/posterior protocol."""

from .base import LatentVariableModel
from .vae import VAEModule

__all__ = ["LatentVariableModel", "VAEModule"]
