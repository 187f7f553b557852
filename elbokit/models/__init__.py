"""Models: modules that compose distributions behind the prior/likelihood/posterior protocol.

``VAEModule`` loads on first use, so that the protocol (``models.base``) comes alone."""

from .base import LatentVariableModel

__all__ = ["LatentVariableModel", "VAEModule"]


def __getattr__(name: str):
    if name == "VAEModule":
        from .vae import VAEModule
        return VAEModule
    raise AttributeError(f"module 'elbokit.models' has no attribute {name!r}")
