"""elbokit: learn latent-variable generative models by maximizing the ELBO.

The names below load on first use (PEP 562), so that ``import elbokit.bounds`` loads the
maths alone, and ``import elbokit`` stays quick.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "VAE": "api", "Mixture": "api", "LatentModel": "api",
    "VAEModule": "models.vae", "VAEConfig": "models.vae",
    "MixtureModule": "models.mixture", "MixtureConfig": "models.mixture",
    "LatentVariableModel": "models.base",
    "Terms": "bounds", "elbo": "bounds", "enumerated_elbo": "bounds",
    "exact_log_likelihood": "bounds", "iwae_bound": "bounds", "kl_divergence": "bounds",
    "log_likelihood": "bounds", "importance_scores": "bounds",
    "TrainConfig": "training", "Trainer": "training",
    "ElbokitError": "errors", "DataError": "errors", "ConfigError": "errors",
    "CheckpointError": "errors",
    "Run": "workflows", "fit_run": "workflows", "resume_run": "workflows",
}
_MODULES = ("api", "bounds", "estimators", "likelihoods", "plugins", "registry", "training",
            "workflows", "data", "models", "errors", "checkpoint", "runs")
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _MODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'elbokit' has no attribute {name!r}")
    globals()[name] = value  # once: later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, *_MODULES])
