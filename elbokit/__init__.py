"""elbokit: learn latent-variable generative models by maximizing the ELBO.

The names below load on first use (PEP 562), so that ``import elbokit.bounds`` loads the
maths alone, and ``import elbokit`` stays quick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:  # the same names for type checkers, which do not run __getattr__ (`X as X`:
    # an explicit re-export, as a py.typed package's names must be under mypy --strict)
    from . import api as api
    from . import bounds as bounds
    from . import checkpoint as checkpoint
    from . import data as data
    from . import errors as errors
    from . import estimators as estimators
    from . import likelihoods as likelihoods
    from . import models as models
    from . import plugins as plugins
    from . import registry as registry
    from . import runs as runs
    from . import training as training
    from . import workflows as workflows
    from .api import VAE as VAE
    from .api import LatentModel as LatentModel
    from .api import Mixture as Mixture
    from .bounds import Terms as Terms
    from .bounds import elbo as elbo
    from .bounds import enumerated_elbo as enumerated_elbo
    from .bounds import exact_log_likelihood as exact_log_likelihood
    from .bounds import importance_scores as importance_scores
    from .bounds import iwae_bound as iwae_bound
    from .bounds import kl_divergence as kl_divergence
    from .bounds import log_likelihood as log_likelihood
    from .errors import CheckpointError as CheckpointError
    from .errors import ConfigError as ConfigError
    from .errors import DataError as DataError
    from .errors import ElbokitError as ElbokitError
    from .models.base import LatentVariableModel as LatentVariableModel
    from .models.mixture import MixtureConfig as MixtureConfig
    from .models.mixture import MixtureModule as MixtureModule
    from .models.vae import VAEConfig as VAEConfig
    from .models.vae import VAEModule as VAEModule
    from .training import TrainConfig as TrainConfig
    from .training import Trainer as Trainer
    from .workflows import Run as Run
    from .workflows import fit_run as fit_run
    from .workflows import resume_run as resume_run


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
