"""scikit-learn style estimators over the torch core.

    >>> from elbokit import VAE
    >>> vae = VAE(latent_dim=8, epochs=30).fit(X)          # X: [n, dim] array
    >>> vae.score_samples(X_test)                          # log p(x) estimates, nats
    >>> vae.transform(X_test)                              # posterior means [n, latent]
    >>> vae.sample(16); vae.reconstruct(X_test)
    >>> vae.save("my-vae"); VAE.load("my-vae")
    >>> Mixture(n_components=10).fit(X).predict(X)        # z = component, exact posterior

``__init__`` only stores hyper-parameters; fitted state ends in ``_`` (``module_``,
``history_``, ``epochs_trained_``). Scores are per example, in nats, on the scale of the data as given.
"""

from __future__ import annotations

import copy
import inspect
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import scipy.sparse
import torch
from sklearn import get_config
from sklearn.base import BaseEstimator, TransformerMixin

from . import bounds, distributed, imputation, plugins, tensorboard
from .checkpoint import atomic_write, load_model, save_model
from .data import NpyStream, check_matrix, check_probabilities, split_indices
from .data.columns import Schema, frame_from_rows, frame_with_schema, is_frame, read_frame, schema_for_numbers
from .errors import (
    CheckpointError,
    ConfigError,
    ConvergenceWarning,
    DataError,
    DataWarning,
    NotFittedError,
    describe_rows,
)
from .likelihoods import LIKELIHOODS, Categorical, Gaussian, ObservationModel, Table, likelihood_for_data
from .markup import esc, key_values, plain, training_log
from .models.base import ProtocolModule, describe
from .models.flows import PosteriorSpec
from .models.latents import LatentSpec, latent_help
from .models.mixture import MixtureConfig, MixtureModule, fit_em, init_from_data
from .models.priors import PriorSpec
from .models.vae import ARCHITECTURES, VAEConfig, VAEModule
from .nets import ACTIVATIONS
from .progress import progress_bar
from .registry import Registry
from .rng import seeded
from .training import TrainConfig, Trainer, check_run_dir, evaluate_terms, option

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def fixed_binarization(X: np.ndarray, seed: int) -> np.ndarray:
    """One draw x ~ Bernoulli(X) of probabilities ``X: [n, dim]`` (seeded): the 0/1 data a
    dynamically binarized model is validated and scored on."""
    return (np.random.default_rng(seed).random(X.shape) < X).astype(np.float64)


def fit_with_trainer(estimator: LatentModel, module: torch.nn.Module, config: TrainConfig,
                     X: np.ndarray | NpyStream, X_val: np.ndarray | None,
                     run_dir: str | Path | None, resume: bool, where: str,
                     dynamic: bool = False) -> None:
    """Train ``module`` with the generic :class:`Trainer`: hold out ``val_fraction`` for early
    stopping unless ``X_val`` is given, checkpoint into ``run_dir`` and keep the best model.
    ``dynamic``: ``X`` holds probabilities (checked by the caller) and every training batch
    is a fresh Bernoulli draw of them (dynamic binarization). ``X`` may be a stream (data
    larger than memory), checked by the caller, whose held-out rows the caller has taken.

    The module and the data go to ``estimator.device`` and stay there (the scores then run
    there too). Under a process group of several ranks (torchrun) every rank calls this with
    the same arguments; rank 0 writes ``run_dir`` (see :class:`~elbokit.training.Trainer`)."""
    if not isinstance(X, NpyStream):
        X = np.asarray(X, dtype=np.float64)
    run_dir = check_run_dir(run_dir, resume)
    if X_val is None and estimator.val_fraction > 0 and not isinstance(X, NpyStream):
        parts = split_indices(len(X), estimator.seed, 0.0, estimator.val_fraction)
        X, X_val = X[parts["train"]], X[parts["val"]]  # type: ignore[index]  # an array here
        if dynamic:
            X_val = fixed_binarization(X_val, estimator.seed)
    module.to(estimator.torch_device())
    x_val = None if X_val is None else estimator.as_tensor(X_val, module, "validation data")
    estimator.module_ = module
    parameter = next(module.parameters())
    if isinstance(X, NpyStream):
        x: torch.Tensor | NpyStream = X  # read chunk by chunk by the trainer
    elif dynamic:
        x = torch.as_tensor(X, dtype=parameter.dtype, device=parameter.device)
    else:
        x = estimator.as_tensor(X, module, where)
    log = tensorboard.epoch_log(estimator, run_dir, x, x_val)  # None unless tensorboard=True
    trainer = Trainer(module, config, run_dir=run_dir, progress=estimator.progress,
                      on_improve=(lambda _: estimator.save(run_dir)) if run_dir else None,
                      batch_transform=torch.bernoulli if dynamic else None,
                      compile=estimator.compile, on_epoch=log)
    try:
        estimator.history_ = trainer.fit(x, x_val, resume=resume)
    finally:
        if log is not None:
            log.close()
    estimator.epochs_trained_ = estimator.n_iter_ = trainer.state["epoch"]
    estimator.stopped_early_ = trainer.state["stopped_early"]
    if run_dir is not None and (run_dir / "model.json").exists():
        # The run's saved model is the best one, also across a resume.
        module.load_state_dict(load_model(run_dir)[1])


# Scores below this many nats per feature are no fit but a mismatch of model and data: a
# Gaussian pays about 1,000 nats for one value 45 of its standard deviations away, while a
# Bernoulli or categorical likelihood pays a few tens at most for its worst value.
ABSURD_NATS_PER_FEATURE = 1000.0
SCORE_K = 5000  # importance samples per example when evaluate() is not told (the literature's k)


def _warn_absurd(elbo: float, log_likelihood: np.ndarray, dim: int) -> None:
    """Warn (one line) when a mean ELBO is absurd for data of ``dim`` features (below
    -:data:`ABSURD_NATS_PER_FEATURE` per feature), naming the rows whose log p(x) estimates
    ``[n]`` are (when not all of them)."""
    limit = -ABSURD_NATS_PER_FEATURE * dim
    if not elbo < limit:
        return
    worst = log_likelihood < limit
    verb = "scores" if worst.sum() == 1 else "score"
    rows = (f"; {describe_rows(worst)} {verb} below {limit:.3g} nats"
            if worst.any() and not worst.all() else "")
    warnings.warn(f"the ELBO, {elbo:.4g} nats per example, is {elbo / dim:.3g} nats per feature: "
                  "the data lie far outside what the model learned (a header row read as data, "
                  f"outliers, another scale or unit than the training data?){rows}", DataWarning,
                  stacklevel=3)


def decode_mean(module: ProtocolModule, z: torch.Tensor) -> torch.Tensor:
    """E[x | z] for ``z: [..., latent]``: the module's ``decode_mean`` when it has one (a
    shortcut), else the mean of its likelihood."""
    if hasattr(module, "decode_mean"):
        return module.decode_mean(z)  # type: ignore[operator]  # an optional capability
    return module.likelihood(z).mean


def write_lines(path: Path, records: list[dict]) -> None:
    """A JSON-lines file, written atomically."""
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in records).encode())


def dense_matrix(X: Any, where: str) -> np.ndarray:
    """``X`` as a float64 array; sparse and complex data are refused in one line (a sparse
    matrix would become an array of objects, complex numbers would lose their imaginary
    part)."""
    if scipy.sparse.issparse(X):
        raise DataError(f"{where}: sparse input is not supported; pass a dense array "
                        "(X.toarray())")
    if np.iscomplexobj(X):
        raise DataError(f"{where}: complex values are not supported")
    return np.asarray(X, dtype=np.float64)


REPR_VALUE_CHARS = 120  # a parameter's value in the HTML repr is cut after this many characters


def _changed(value: object, default: object) -> bool:
    """Whether a parameter's ``value`` differs from its ``default`` (as scikit-learn's repr
    decides what to show)."""
    try:
        return not (value is default or bool(value == default))
    except Exception:  # an object whose == is not a truth value (an array)
        return repr(value) != repr(default)


def _description(module: ProtocolModule) -> str:
    """The fitted module's one line (:func:`elbokit.models.base.describe`), which for a user's
    module runs its protocol once: without gradients, with torch's RNG left as it was, and
    the class name if the module fails at it (a repr must not raise)."""
    try:
        with torch.no_grad(), seeded(0):
            return describe(module)
    except Exception:  # whatever a user's module raises
        return type(module).__name__


def estimator_html(estimator: LatentModel) -> str:
    """An estimator as a notebook shows it (:meth:`LatentModel._repr_html_inner`): what it
    is and whether it is fitted; fitted, its module's description, its width and the training
    log of the fit that made it (``history_``; a loaded model has none: its run directory
    keeps metrics.jsonl); its text repr (scikit-learn's: the parameters changed from their
    defaults), and every parameter in a table that opens on a click, the changed ones in
    bold. Reads what the estimator holds: nothing is computed, and every value is escaped."""
    name = esc(type(estimator).__name__)
    params = estimator.get_params(deep=False)
    signature = inspect.signature(type(estimator).__init__).parameters
    changed = [k for k, v in params.items()
               if k in signature and _changed(v, signature[k].default)]
    module = getattr(estimator, "module_", None)
    parts = ['<div class="elbokit-model">']
    if module is None:
        parts.append(f"<p><strong>{name}</strong>, not fitted</p>")
    else:
        width = getattr(estimator, "n_features_in_", None)
        stopped = getattr(estimator, "stopped_early_", None) is True
        parts.append(f"<p><strong>{name}</strong>, fitted: {esc(_description(module))}"
                     + (f", on {esc(width)} features" if width is not None else "")
                     + ("; stopped early (the validation score stopped improving)" if stopped
                        else "") + "</p>")
    parts.append(f"<p><code>{esc(repr(estimator))}</code></p>")
    if module is not None:
        history = [r for r in getattr(estimator, "history_", None) or [] if isinstance(r, dict)]
        if history:
            parts.extend(training_log(history, "<code>history_</code>"))
        else:
            parts.append('<p class="note">No training log here (a loaded model; its run '
                         "directory keeps one, metrics.jsonl).</p>")
    shown = []
    for key, value in params.items():
        text = plain(value)
        shown.append((key, text if len(text) <= REPR_VALUE_CHARS
                      else text[:REPR_VALUE_CHARS - 1] + "\u2026"))
    parts.append(f"<details><summary>All {len(params)} parameters ({len(changed)} changed from "
                 "the defaults, in bold)</summary>"
                 + key_values(shown, marked=changed) + "</details>")
    parts.append("</div>")
    return "\n".join(parts)


class LatentModel(TransformerMixin, BaseEstimator):
    """Any latent-variable model, trained and scored: a user's own module, and the base of
    :class:`VAE` and :class:`Mixture`.

        >>> LatentModel(MyVAE, model_options={"latent_dim": 4}, epochs=50).fit(X)
        >>> LatentModel("my_model.py:MyVAE").fit(X).score_samples(X_test)

    ``model``: a ``torch.nn.Module`` class speaking the protocol of
    :mod:`elbokit.models.base` (``prior()``, ``likelihood(z)``, ``posterior(x)``), built as
    ``model(dim=<the data's width>, **model_options)``; a reference to one (``"PATH.py:Class"``,
    ``"package.module:Class"`` or the name of an installed plugin, see
    :mod:`elbokit.plugins`); or a module instance (copied, then trained). Optional
    capabilities the module may offer: ``check_data(x: np.ndarray [n, dim], where)`` (refuse
    data outside the likelihood's support, one line), ``decode_mean(z)`` (E[x | z]; default
    ``likelihood(z).mean``), and those of :mod:`elbokit.models.base`. The other parameters
    are :class:`~elbokit.training.TrainConfig`'s, as for :class:`VAE`.

    What every fitted model offers: scores, bounds, samples, save/load. A scikit-learn
    estimator: ``get_params(deep)``, ``set_params``, ``sklearn.base.clone``, a readable repr,
    ``fit(X, y=None)`` (y is ignored: the model learns p(x)), ``transform`` and
    ``fit_transform`` (a step of a ``Pipeline``), ``score(X)`` the mean log-likelihood (what
    ``GridSearchCV`` maximizes), ``n_features_in_`` once fitted. Subclasses set ``kind``,
    ``module_class`` and ``config_class`` and build their module from their options.
    """

    kind = "custom"
    module_class: type[torch.nn.Module]
    config_class: type
    kl = TrainConfig.kl
    dtype = "float32"
    device = "cpu"  # class defaults: models saved before these options load unchanged
    compile = False
    tensorboard = False
    on_nan = TrainConfig.on_nan
    max_retries = TrainConfig.max_retries

    # The training parameters are TrainConfig's fields, their defaults read from it (one
    # declaration; spelled here because scikit-learn reads __init__'s signature). lr=None:
    # the model's own default (learning_rate()).
    def __init__(self, model: type | torch.nn.Module | str | None = None, model_options: dict | None = None,
                 epochs: int = TrainConfig.epochs, batch_size: int = TrainConfig.batch_size,
                 lr: float | None = None, estimator: str = TrainConfig.estimator,
                 n_samples: int = TrainConfig.n_samples, iwae_k: int | None = TrainConfig.iwae_k,
                 beta: float = TrainConfig.beta, kl: str = TrainConfig.kl,
                 kl_warmup: int = TrainConfig.kl_warmup, free_bits: float = TrainConfig.free_bits,
                 temperature: float = TrainConfig.temperature,
                 min_temperature: float = TrainConfig.min_temperature,
                 anneal_rate: float = TrainConfig.anneal_rate, baseline: str = TrainConfig.baseline,
                 val_fraction: float = 0.1, patience: int | None = TrainConfig.patience,
                 lr_schedule: str = TrainConfig.lr_schedule, lr_patience: int = TrainConfig.lr_patience,
                 lr_factor: float = TrainConfig.lr_factor, min_lr: float = TrainConfig.min_lr,
                 tolerance: float = TrainConfig.tolerance, ema: float = TrainConfig.ema,
                 seed: int = TrainConfig.seed, dtype: str = "float32", progress: bool = False,
                 device: str = "cpu", compile: bool = False, on_nan: str = TrainConfig.on_nan,
                 max_retries: int = TrainConfig.max_retries, tensorboard: bool = False) -> None:
        self._store(locals())

    def _store(self, params: dict) -> None:
        """``__init__``'s arguments as attributes of the same names, unchanged (scikit-learn:
        ``__init__`` only stores; ``get_params`` reads them back by the signature's names)."""
        for name, value in params.items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

    def _show_progress(self) -> bool | None:
        """``show`` for :func:`~elbokit.progress.progress_bar`: True with ``progress=True``,
        else None (drawn as the ``elbokit`` command decides: on a terminal)."""
        return True if getattr(self, "progress", False) else None

    # -- inputs --------------------------------------------------------------------------
    def train_config(self) -> TrainConfig:
        """The :class:`~elbokit.training.TrainConfig` of this estimator: every field of it
        that is also a parameter here (one declaration of the training options), with the
        learning rate of :meth:`learning_rate`."""
        params = self.get_params(deep=False)
        options = {f.name: params[f.name] for f in fields(TrainConfig) if f.name in params}
        return TrainConfig(**{**options, "lr": self.learning_rate()})

    def learning_rate(self) -> float:
        """``lr=None``: Adam's usual 1e-3."""
        return 1e-3 if self.lr is None else self.lr

    def torch_dtype(self) -> torch.dtype:
        """The ``dtype`` option as a torch dtype, refusing anything but float32/float64."""
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        return DTYPES[self.dtype]

    def torch_device(self) -> torch.device:
        """The ``device`` option (``cpu`` or ``cuda``; ``cuda:LOCAL_RANK`` under torchrun) as a
        torch device, refusing ``cuda`` where CUDA is not available."""
        return distributed.resolve_device(self.device)

    def _fitted(self) -> ProtocolModule:
        module = getattr(self, "module_", None)
        if module is None:
            name = type(self).__name__
            raise NotFittedError(f"this {name} is not fitted yet: call fit(X) or {name}.load(path)")
        return module

    def as_tensor(self, X: np.ndarray, module: torch.nn.Module | None = None,
                where: str = "data") -> torch.Tensor:
        """``X: [n, dim]`` as a tensor for the model (its dtype, on its device), after checking
        that it fits (width, finite values, the likelihood's support); errors name ``where``."""
        module = module or self._fitted()
        X = dense_matrix(self._table_input(X, where), where)
        if X.ndim == 1:
            X = X[None, :]
        observation = getattr(module, "observation", None)
        check_matrix(X, where, self._width(module),
                     missing=bool(getattr(observation, "handles_missing", False)))
        if observation is not None:
            observation.check_data(X, where)
        elif hasattr(module, "check_data"):  # a user module's own check (optional)
            try:
                module.check_data(X, where)  # type: ignore[operator]  # optional, as above
            except ValueError as e:  # the user's one line, as elbokit's own data errors
                raise DataError(str(e)) from None
        parameter = next(module.parameters())
        return torch.as_tensor(X, dtype=parameter.dtype, device=parameter.device)

    def _table_input(self, X: object, where: str) -> Any:
        """``X`` as numbers: a model fitted on a table reads a DataFrame by its columns
        (:meth:`VAE._table_input`); here, ``X`` unchanged."""
        return X

    # -- scores --------------------------------------------------------------------------
    @torch.no_grad()
    def score_samples(self, X: np.ndarray, k: int = 1000, chunk: int = 100,
                      seed: int | None = 0) -> np.ndarray:
        """log p(x) per example (nats): ``[n, dim] -> [n]``; exact when z can be enumerated
        (at most 2^16 values), otherwise importance-sampled with ``k`` proposals."""
        module = self._fitted()
        if bounds.enumerable(module, "score"):
            x = self.as_tensor(X)
            return torch.cat([bounds.exact_log_likelihood(module, x[s:s + 256])
                              for s in range(0, len(x), 256)]).double().cpu().numpy()
        return self.log_likelihood(X, k=k, chunk=chunk, seed=seed)[0]

    def score(self, X: np.ndarray, y: object = None, k: int = 1000) -> float:
        """Mean log-likelihood estimate per example (nats); ``y`` is ignored (scikit-learn's
        signature: model selection scores a density by it)."""
        return float(self.score_samples(X, k=k).mean())

    @torch.no_grad()
    def log_likelihood(self, X: np.ndarray, k: int = 1000, chunk: int = 100,
                       seed: int | None = 0, batch_size: int = 256
                       ) -> tuple[np.ndarray, np.ndarray]:
        """``(estimate [n], stderr [n])`` of log p(x) with ``k`` importance samples."""
        scores = self._importance_scores(self.as_tensor(X), k, None, chunk, seed, batch_size)
        return scores["estimate"], scores["stderr"]

    def _importance_scores(self, x: torch.Tensor, k: int, iwae_k: int | None, chunk: int,
                           seed: int | None, batch_size: int = 256) -> dict[str, Any]:
        """:func:`bounds.importance_scores` over ``x: [n, dim]`` by batches of examples, with a
        progress bar: each field of :class:`bounds.ImportanceScores` as ``[n]`` (float64)."""
        module = self._fitted()
        parts: dict[str, list[torch.Tensor]] = {}
        # The slow part of scoring (k = 5000 weights per example): a bar counting them.
        with seeded(seed), progress_bar(total=len(x) * k, desc=f"log p(x), k={k}", unit="w",
                                        unit_scale=True, show=self._show_progress()) as bar:
            for start in range(0, len(x), batch_size):
                found = bounds.importance_scores(module, x[start:start + batch_size], k, chunk,
                                                 iwae_k=iwae_k, kl=cast("bounds.KL", self.kl),
                                                 drawn=bar.update)
                for name in ("estimate", "stderr", "iwae", "reconstruction", "kl"):
                    value = getattr(found, name)
                    if value is not None:
                        parts.setdefault(name, []).append(value)
        return {name: (torch.cat(parts[name]).double().cpu().numpy() if name in parts else None)
                for name in ("estimate", "stderr", "iwae", "reconstruction", "kl")}

    @torch.no_grad()
    def evaluate(self, X: np.ndarray, k: int | None = None, iwae_k: int = 50, chunk: int = 100,
                 seed: int = 0, n_samples: int = 10) -> dict:
        """ELBO terms, IWAE_k and log p(x), in nats per example.

        Returns ``{"elbo", "reconstruction", "kl", "iwae": {"value", "k"} or None,
        "log_likelihood": {"estimate", "stderr", "k", "exact"}, "exact_log_likelihood",
        "n_examples"}``.

        Where z can be enumerated (discrete, at most 2^16 values) log p(x) is the exact sum,
        and unless ``k`` is given nothing is sampled: ``log_likelihood`` is the exact value
        (``"exact": True``, stderr 0, k None), ``iwae`` None, and the ELBO exact too (its
        terms from ``n_samples`` draws when z has more than 2^10 values). Elsewhere one pass
        of ``k`` importance draws per example (default :data:`SCORE_K`) gives log p(x) with
        the Monte-Carlo standard error of the mean, IWAE_{iwae_k} from disjoint groups of the
        same draws (None when k < iwae_k), and the ELBO's terms (the KL in closed form where
        torch has one). Seeded: the same call gives the same numbers.
        """
        module, x = self._fitted(), self.as_tensor(X)
        exact = bounds.enumerable(module, "score")
        if k is None and not exact:
            k = SCORE_K
        if (k is not None and k < 2) or iwae_k < 1:
            raise ConfigError(f"need k >= 2 and iwae_k >= 1, not k={k}, iwae_k={iwae_k}")
        sampled = self._importance_scores(x, k, iwae_k, chunk, seed) if k is not None else None
        if exact or sampled is None:
            with seeded(seed):
                terms = evaluate_terms(module, x, batch_size=256, n_samples=n_samples, kl=self.kl)
        else:
            reconstruction, kl = float(sampled["reconstruction"].mean()), float(sampled["kl"].mean())
            terms = {"elbo": reconstruction - kl, "reconstruction": reconstruction, "kl": kl}
        # A discrete z small enough to sum over: the truth, beside (or instead of) the bounds.
        exact_rows = self.score_samples(X) if exact else None
        exact_value = float(exact_rows.mean()) if exact_rows is not None else None
        _warn_absurd(terms["elbo"], sampled["estimate"] if sampled is not None
                     else exact_rows, x.shape[1])  # type: ignore[arg-type]  # exact, when not sampled
        if sampled is not None:
            stderr = sampled["stderr"]
            log_likelihood = {"estimate": float(sampled["estimate"].mean()),
                              "stderr": float(np.sqrt((stderr ** 2).sum()) / len(stderr)),
                              "k": k, "exact": False}
            iwae = ({"value": float(sampled["iwae"].mean()), "k": iwae_k}
                    if sampled["iwae"] is not None else None)
        else:
            log_likelihood = {"estimate": exact_value, "stderr": 0.0, "k": None, "exact": True}
            iwae = None
        return {**terms, "iwae": iwae, "log_likelihood": log_likelihood,
                "exact_log_likelihood": exact_value, "n_examples": len(x)}

    def elbo(self, X: np.ndarray, n_samples: int = 1, seed: int | None = 0) -> dict[str, float]:
        """Mean ELBO, reconstruction and KL per example (nats)."""
        module, x = self._fitted(), self.as_tensor(X)
        with seeded(seed):
            return evaluate_terms(module, x, n_samples=n_samples, kl=self.kl)

    @torch.no_grad()
    def sample(self, n: int = 1, seed: int | None = None, mean: bool = False) -> np.ndarray:
        """``n`` draws x ~ p(x) (``mean=True``: E[x | z] for z ~ p(z)): ``[n, dim]``."""
        if n < 1:
            raise ConfigError(f"number of samples must be >= 1, not {n}")
        module = self._fitted()
        with seeded(seed):
            z = module.prior().sample((n,))
            x = decode_mean(module, z) if mean else module.likelihood(z).sample()
        return x.double().cpu().numpy()

    @torch.no_grad()
    def transform(self, X: np.ndarray) -> np.ndarray:
        """Posterior means E_q[z | x]: ``[n, dim] -> [n, latent]`` (a z of several event
        dimensions flattened)."""
        module, x = self._fitted(), self.as_tensor(X)
        return module.posterior(x).mean.reshape(len(x), -1).double().cpu().numpy()

    @torch.no_grad()
    def reconstruct(self, X: np.ndarray) -> np.ndarray:
        """E[x | z = E_q[z | x]]: ``[n, dim] -> [n, dim]``."""
        module, x = self._fitted(), self.as_tensor(X)
        return decode_mean(module, module.posterior(x).mean).double().cpu().numpy()

    # -- a user's own module -------------------------------------------------------------
    def model_class(self) -> type:
        """The class ``model`` names (imported now when it is a reference)."""
        if isinstance(self.model, str):
            return plugins.load_class(plugins.normalize(self.model, "model"), "model")
        if isinstance(self.model, torch.nn.Module):
            return type(self.model)
        if isinstance(self.model, type):
            return self.model
        raise ConfigError("model must be a torch.nn.Module class, an instance of one, or a "
                          f"reference 'PATH.py:Class' / 'package.module:Class', not {self.model!r}")

    def reference(self) -> str:
        """How a saved model or run records ``model``: a normalized reference."""
        if isinstance(self.model, str):
            return plugins.normalize(self.model, "model")
        return plugins.reference_of(self.model_class())

    def build(self, X: np.ndarray, where: str = "data") -> torch.nn.Module:
        """The untrained module for data like ``X: [n, dim]``: ``model(dim=dim,
        **model_options)`` (seeded), or a copy of the ``model`` instance; checked to speak
        the protocol and to accept ``X``."""
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), not {self.val_fraction}")
        X = dense_matrix(X, where)
        check_matrix(X, where)
        module = self._construct(self.model_class(), X.shape[1])
        self.as_tensor(X[:1], module, where)  # width, finite values, the module's own checks
        return module

    def _construct(self, cls: type, dim: int) -> torch.nn.Module:
        name = getattr(cls, "__qualname__", repr(cls))
        if isinstance(self.model, torch.nn.Module):
            module = copy.deepcopy(self.model)  # scikit-learn: fit never changes a parameter
        else:
            options = dict(self.model_options or {})
            with seeded(self.seed):
                try:
                    module = cls(dim=dim, **options)
                except TypeError as e:
                    raise ConfigError(f"{name}(dim={dim}, **{options}) failed: {e}") from None
        missing = [m for m in ("prior", "likelihood", "posterior")
                   if not callable(getattr(module, m, None))]
        if not isinstance(module, torch.nn.Module) or missing:
            what = f"lacks {', '.join(missing)}()" if missing else ""
            what = "is not a torch.nn.Module" if not isinstance(module, torch.nn.Module) else what
            raise ConfigError(f"{name} {what}: a model is a torch.nn.Module with prior(), "
                              "likelihood(z) and posterior(x) (see elbokit.models.base)")
        if next(module.parameters(), None) is None:
            raise ConfigError(f"{name} has no parameters to train")
        module.elbokit_dim = dim  # type: ignore[assignment]  # the width it takes, for modules without a config
        return module.to(self.torch_dtype())

    def check(self, X: np.ndarray, where: str = "data") -> None:
        """Refuse impossible options, data or model before anything is trained or written."""
        self.train_config().objective(self.build(X, where))

    def fit(self, X: np.ndarray, y: object = None, X_val: np.ndarray | None = None,
            run_dir: str | Path | None = None, resume: bool = False,
            where: str = "data") -> LatentModel:
        """Maximize the objective on ``X: [n, dim]`` (see :meth:`VAE.fit`: ``X_val``,
        ``run_dir``, ``resume``; ``y`` is ignored)."""
        self._check_unsupervised(y)
        module = self.build(X, where)
        fit_with_trainer(self, module, self.train_config(), X, X_val, run_dir, resume, where)
        self.module_.eval()
        self._fitted_width()
        return self

    # -- notebooks -----------------------------------------------------------------------
    def _repr_html_inner(self) -> str:
        """The estimator as HTML (:func:`estimator_html`): scikit-learn's ``_repr_html_``
        returns this method, unless its ``display`` option is "text"."""
        return estimator_html(self)

    def _repr_mimebundle_(self, **kwargs: object) -> dict[str, str]:
        """What Jupyter shows (asked before ``_repr_html_``): the text repr, and
        :func:`estimator_html` unless scikit-learn's ``display`` option is "text".
        Overridden because scikit-learn's would draw its own estimator diagram."""
        bundle = {"text/plain": repr(self)}
        if get_config()["display"] == "diagram":
            bundle["text/html"] = self._repr_html_inner()
        return bundle

    # -- persistence ---------------------------------------------------------------------
    def _check_unsupervised(self, y: Any) -> None:
        """``fit(X, y)``: y is ignored, but 2-D data there is a validation set passed where
        scikit-learn's signature puts y (the earlier ``fit(X, X_val)``): refused, not
        silently dropped."""
        if y is not None and np.ndim(y) == 2:
            raise ConfigError("fit(X, y): y is ignored by a density model and this one is 2-D; "
                              "pass validation data as fit(X, X_val=...)")

    @staticmethod
    def _width(module: Any) -> int:  # a module with config.dim, or a user's with elbokit_dim
        """The number of features ``module`` takes."""
        config: Any = getattr(module, "config", None)
        return int(config.dim if hasattr(config, "dim") else module.elbokit_dim)

    def _fitted_width(self) -> None:
        """``n_features_in_`` (scikit-learn): the width the fitted model takes."""
        self.n_features_in_ = self._width(self.module_)

    def saved_params(self) -> dict:
        """The parameters as JSON records them (a saved model, a run's config.json): a
        user's ``model`` as its reference."""
        params = self.get_params(deep=False)
        if self.kind == "custom":
            params["model"] = self.reference()
        return params

    def _module_record(self, module: torch.nn.Module) -> dict:
        """What rebuilds the module (in :meth:`load`): its configuration; for a
        user's module its width, and its reference and source digest to check on load."""
        if self.kind != "custom":
            return cast("VAEModule | MixtureModule", module).config.to_dict()
        reference = self.reference()
        return {"dim": self._width(module), "reference": reference,
                "source_sha256": plugins.source_digest(reference)}

    def save(self, path: str | Path) -> None:
        """Write ``path/model.safetensors`` and ``path/model.json`` (atomically)."""
        module = self._fitted()
        save_model(path, module, {"kind": self.kind, "params": self.saved_params(),
                                  "module": self._module_record(module)})

    @classmethod
    def load(cls, path: str | Path, model: type | str | None = None) -> LatentModel:
        """A fitted model from :meth:`save`'s directory (or a run directory). Called on a
        subclass, it refuses a saved model of another kind. ``model``: for a user's own
        model, its class or reference again (elbokit never imports code because a file
        says so; see :mod:`elbokit.plugins`), unless an installed plugin provides it."""
        record, state = load_model(path)
        kind = record.get("kind")
        if kind not in MODEL_KINDS or (cls is not LatentModel
                                       and MODEL_KINDS[kind] is not cls):  # type: ignore[index]
            raise CheckpointError(f"{path}: holds a {kind!r} model, not a {cls.kind or 'known'} one")
        estimator_class = MODEL_KINDS[kind]  # type: ignore[index]  # a name of MODEL_KINDS
        # JSON has no tuples: sequences (hidden widths, image shapes) come back as lists.
        params: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in record["params"].items()}
        if kind == "custom":
            module_record = record["module"]
            params["model"] = plugins.check_reference(
                module_record["reference"],
                type(model) if isinstance(model, torch.nn.Module) else model, str(path))
            if isinstance(params["model"], str):
                plugins.warn_if_changed(params["model"], module_record.get("source_sha256"),
                                        str(path))
        estimator = estimator_class(**params)
        # Whether bars were drawn (a terminal) and training was logged for TensorBoard were the
        # saving session's choices, not the model's.
        estimator.progress = estimator.tensorboard = False
        if kind == "custom":
            module = estimator._construct(estimator.model_class(), record["module"]["dim"])
        else:
            module = estimator_class.module_class(estimator_class.config_class(**record["module"]))
        try:
            module.load_state_dict(state)
        except RuntimeError as e:
            raise CheckpointError(f"{path}: weights do not match the configuration ({e})") from None
        estimator.module_ = module.to(estimator.torch_dtype()).eval()
        estimator._fitted_width()
        if params.get("table_schema") is not None:  # a VAE fitted on a table
            estimator.schema_ = Schema.from_dict(params["table_schema"])
        return estimator


@dataclass(frozen=True)
class VAEOptions:
    """The model options of :class:`VAE`, each declared once with its command-line flag
    (:func:`~elbokit.training.option`, as :class:`~elbokit.training.TrainConfig` declares the
    training options): ``VAE``'s parameters default to these fields, and ``elbokit fit`` and
    ``elbokit sweep`` build their model flags from them (:func:`elbokit.cli.fit.model_flags`),
    in this order, after the mixture's (:class:`MixtureOptions`). ``--likelihood`` serves a
    mixture too."""

    latent_dim: int = option(8, parse="positive_int",
                             help="dimensions of a Gaussian z (8); same as --latent gaussian:N")
    latent: str | None = option(None, metavar="SPEC", help=lambda: f"latent space: {latent_help()}")
    likelihood: str = option(
        "auto", choices=lambda: ("auto", *LIKELIHOODS.names()),
        help=lambda: f"observation model p(x|z): {LIKELIHOODS.describe()}; auto: table for a "
        "table with text or missing cells (or --column-types, --missing), bernoulli for 0/1 data, "
        "else gaussian (default auto)")
    gaussian_scale: str = option("dim", choices=Gaussian.scales,
                                 help="gaussian variance: one per dimension, one shared, or from "
                                 "the decoder (default dim)")
    n_categories: int | None = None  # no flag: the largest code in the training data + 1
    hidden: tuple[int, ...] = option(
        (256, 256), parse="widths", metavar="W1,W2,...",
        help="hidden layer widths of the encoder; the decoder mirrors them (256,256); "
        "conv: the dense layers after the convolutions")
    encoder: str = option("auto", choices=("auto", *ARCHITECTURES),
                          help="mlp: the --hidden layers; conv: two stride-2 convolutions (32, 64 "
                          "channels) before them, for images; auto: the --decoder's architecture "
                          "(default auto)")
    decoder: str = option("mlp", choices=ARCHITECTURES,
                          help="mlp: the --hidden layers mirrored; linear + gaussian likelihood is "
                          "probabilistic PCA; conv: the --hidden layers, then two transposed "
                          "convolutions back to the image size (default mlp)")
    image_shape: tuple[int, ...] | None = option(
        None, parse="image_shape", metavar="HxW|CxHxW",
        help="conv: the images the rows hold, channels first (default: the data "
        "set's own, e.g. 28x28, or SxS when a row has S*S values)")
    activation: str = option("relu", choices=lambda: tuple(ACTIVATIONS),
                             help="nonlinearity of the hidden layers (default relu)")
    prior: str = option("standard", metavar="SPEC",
                        help=lambda: f"prior p(z) of a Gaussian z: {PriorSpec.describe()} (default standard)")
    posterior: str = option("diagonal", metavar="SPEC",
                            help=lambda: f"posterior q(z|x) of a Gaussian z: {PosteriorSpec.describe()} "
                            "(default diagonal)")
    stochastic_layers: int = option(
        1, parse="positive_int", metavar="N",
        help="1, or 2: z2 -> z1 -> x, each of --latent-dim Gaussian variables, inferred "
        "top-down as q(z2|x) q(z1|x,z2) (Tomczak & Welling 2018); --prior applies to z2 "
        "(default 1)")
    # A table's columns (no flags of their own: elbokit fit's --column-types and --missing
    # are data options, read with the file). column_types: {"name": "real", ...} overriding
    # the inferred types of a DataFrame's columns; missing: NaN in an array marks a missing
    # cell (left out of p(x|z)) instead of being refused; table_schema: the typed columns
    # (elbokit.data.columns.Schema.to_dict()), as a run reads them from its file.
    column_types: dict | None = None
    missing: bool = False
    table_schema: dict | None = None


class VAE(LatentModel):
    """A Gaussian-latent VAE with an MLP (or linear, or convolutional) encoder and decoder.

    Parameters mirror the CLI's ``elbokit fit`` options: ``latent_dim`` (Gaussian z) or
    ``latent`` ("gaussian:16", "categorical:10", "categorical:20x10", "bernoulli:32"; see
    :mod:`elbokit.models.latents`), ``estimator`` (see :mod:`elbokit.estimators`), ``hidden`` (widths of
    the encoder's hidden layers; the decoder mirrors them), ``likelihood`` ("auto",
    "bernoulli", "gaussian", "categorical", "multinomial", "table"), ``gaussian_scale`` ("dim",
    "shared", "decoder"), ``n_categories`` (categorical likelihood; default: the largest code in
    the training data + 1), ``encoder``/``decoder`` ("mlp", "linear" or "conv", and for
    the encoder "auto", the default: the decoder's architecture; a linear
    decoder with a shared-scale Gaussian is probabilistic PCA; "conv": stride-2 convolutions
    of 32 and 64 channels plus dense layers of ``hidden`` widths, see
    :class:`~elbokit.models.vae.VAEConfig`), ``image_shape`` (``(C, H, W)`` or ``(H, W)`` of
    the images flattened into X's rows, for "conv"; default: ``(1, s, s)`` when the width is
    ``s * s``), ``prior`` ("standard", "mog:K", "vamp:K": see :mod:`elbokit.models.priors`),
    ``posterior`` ("diagonal", "iaf:S": :mod:`elbokit.models.flows`), ``stochastic_layers``
    (1 or 2: :mod:`elbokit.models.hierarchy`); tables (:class:`~elbokit.likelihoods.Table`):
    :meth:`fit` takes a pandas DataFrame (its columns typed, ``column_types`` overriding
    them: ``{"age": "real", "plan": "categorical", "id": "skip"}``; missing cells left out of
    p(x|z)), or an array with NaN for missing cells when ``missing=True``; ``table_schema``
    gives the types instead (what ``elbokit fit`` read from a file); the fitted types are
    ``schema_``, and :meth:`impute` and :meth:`score_rows` fill and score cells; and the training options of
    :class:`~elbokit.training.TrainConfig` (``beta``: weight of the KL term; ``kl_warmup``:
    epochs over which that weight rises linearly from 0; ``free_bits``: nats per latent
    variable that cost no KL gradient; the reported ELBO is always the true one, beta = 1).
    ``val_fraction`` of the data passed to
    :meth:`fit` is held out for early stopping unless ``X_val`` is given. ``device``: "cpu"
    or "cuda" (the module trains and scores there; :meth:`load` puts it on the CPU);
    ``compile``: run the training step through ``torch.compile``. Data larger than memory:
    pass :meth:`fit` an :class:`~elbokit.data.NpyStream` (one process, not under torchrun).
    ``on_nan``: a NaN or infinite loss or gradient rolls training back to the last good
    epoch and halves the learning rate ("rollback", at most ``max_retries`` times), or
    stops ("stop"); either way the weights never take a non-finite step (see
    :mod:`elbokit.training`). ``tensorboard``: with :meth:`fit`'s ``run_dir``, log every epoch
    for TensorBoard into ``run_dir/tensorboard`` (curves, the KL per latent variable, samples
    and reconstructions when ``image_shape`` is given; see :mod:`elbokit.tensorboard`; needs
    ``pip install 'elbokit[tensorboard]'``).
    """

    kind = "vae"
    module_class = VAEModule
    config_class = VAEConfig

    # The model options default as VAEOptions declares them, the training options as
    # TrainConfig does.
    def __init__(self, latent_dim: int = VAEOptions.latent_dim, latent: str | None = VAEOptions.latent,
                 hidden: Sequence[int] = VAEOptions.hidden, likelihood: str = VAEOptions.likelihood,
                 gaussian_scale: str = VAEOptions.gaussian_scale,
                 n_categories: int | None = VAEOptions.n_categories,
                 encoder: str = VAEOptions.encoder, decoder: str = VAEOptions.decoder,
                 activation: str = VAEOptions.activation,
                 epochs: int = TrainConfig.epochs, batch_size: int = TrainConfig.batch_size,
                 lr: float | None = None, beta: float = TrainConfig.beta,
                 n_samples: int = TrainConfig.n_samples, iwae_k: int | None = TrainConfig.iwae_k,
                 kl: str = TrainConfig.kl, estimator: str = TrainConfig.estimator,
                 temperature: float = TrainConfig.temperature,
                 min_temperature: float = TrainConfig.min_temperature,
                 anneal_rate: float = TrainConfig.anneal_rate, baseline: str = TrainConfig.baseline,
                 kl_warmup: int = TrainConfig.kl_warmup, free_bits: float = TrainConfig.free_bits,
                 val_fraction: float = 0.1, patience: int | None = TrainConfig.patience,
                 lr_schedule: str = TrainConfig.lr_schedule, lr_patience: int = TrainConfig.lr_patience,
                 lr_factor: float = TrainConfig.lr_factor, min_lr: float = TrainConfig.min_lr,
                 tolerance: float = TrainConfig.tolerance, ema: float = TrainConfig.ema,
                 seed: int = TrainConfig.seed, dtype: str = "float32", progress: bool = False,
                 dynamic_binarization: bool = False, device: str = "cpu", compile: bool = False,
                 image_shape: Sequence[int] | None = VAEOptions.image_shape,
                 on_nan: str = TrainConfig.on_nan,
                 max_retries: int = TrainConfig.max_retries,
                 prior: str = VAEOptions.prior, posterior: str = VAEOptions.posterior,
                 stochastic_layers: int = VAEOptions.stochastic_layers,
                 column_types: dict | None = VAEOptions.column_types,
                 missing: bool = VAEOptions.missing,
                 table_schema: dict | None = VAEOptions.table_schema,
                 tensorboard: bool = False) -> None:
        self._store(locals())
        # Checked in build(); kept as given otherwise (scikit-learn: __init__ only stores).
        self.image_shape = tuple(image_shape) if isinstance(image_shape, list) else image_shape

    # -- configuration -------------------------------------------------------------------
    def learning_rate(self) -> float:
        """``lr=None``: 1e-2 for a model without hidden layers (linear encoder and decoder,
        like the mixtures' gradient fit), else Adam's usual 1e-3. Measured (docs/design.md):
        a linear-Gaussian VAE on 20,000 x 20 data ends 0.037 nats below the exact maximum
        likelihood with 1e-3 (the schedule lowers the rate before its slow directions
        converge) and 0.007 below with 1e-2, while the digits demo's 256-256 MLP scores
        0.3 nats worse with 3e-3 than with 1e-3."""
        if self.lr is not None:
            return self.lr
        shallow = self.encoder_architecture() == "linear" and self.decoder == "linear"
        return 1e-2 if shallow else 1e-3

    def encoder_architecture(self) -> str:
        """``encoder="auto"``: the decoder's architecture. A linear decoder with a Gaussian
        likelihood has an exact posterior whose mean is linear in x and whose covariance is
        constant, so a linear encoder holds it and an MLP only adds optimization noise
        (measured on probabilistic PCA: docs/design.md); a conv decoder gets the conv
        encoder made for images."""
        return self.decoder if self.encoder == "auto" else self.encoder

    def latent_spec(self) -> LatentSpec:
        return LatentSpec.parse(self.latent) if self.latent else LatentSpec("gaussian", self.latent_dim)

    def check(self, X: np.ndarray | NpyStream, where: str = "data") -> None:
        """Refuse impossible options, data or estimator before anything is trained or written
        (a stream: every row of its file is read and checked, once)."""
        module = self._stream_module(X) if isinstance(X, NpyStream) else self.build(X, where)
        self.train_config().objective(module)

    def build(self, X: np.ndarray, where: str = "data", likelihood: str | None = None,
              n_categories: int | None = None) -> VAEModule:
        """An untrained module for data like ``X: [n, dim]`` (checks X against the
        likelihood and fits what the data fix: standardization, categories).
        ``likelihood``/``n_categories``: instead of the options, what a scan of a whole
        file decided, for a module built on a sample of a stream's rows."""
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), not {self.val_fraction}")
        X = dense_matrix(X, where)
        schema = self._schema_for(X)
        check_matrix(X, where, missing=schema is not None)
        observation: ObservationModel
        if schema is not None:
            observation = self._table_likelihood(X, where, schema, likelihood or self.likelihood)
        else:
            observation = likelihood_for_data(likelihood or self.likelihood, X, where,
                                              self.gaussian_scale, n_categories or self.n_categories)
        spec = self.latent_spec()
        config = VAEConfig(dim=X.shape[1], latent_dim=spec.n, latent=spec.kind,
                           categories=spec.categories, hidden=tuple(self.hidden),
                           encoder=self.encoder_architecture(), decoder=self.decoder,
                           activation=self.activation, likelihood=observation.config(),
                           image_shape=self.image_shape,  # type: ignore[arg-type]  # VAEConfig checks it
                           prior=self.prior,
                           posterior=self.posterior, stochastic_layers=self.stochastic_layers)
        with seeded(self.seed):
            module = VAEModule(config, observation)
            if module.prior_inputs() is not None:
                # Learned encoder inputs (the VampPrior's pseudo-inputs) start at training
                # rows, drawn from at most 4,096 of them.
                rows = torch.randperm(len(X))[:4096].numpy()
                module.prior_module.initialize(
                    observation.network_input(torch.as_tensor(X[rows], dtype=torch.float32)))
        return module.to(self.torch_dtype())

    # -- tables --------------------------------------------------------------------------
    def _schema_for(self, X: np.ndarray) -> Schema | None:
        """The typed columns of ``X: [n, dim]`` when it is a table: the fitted ones
        (``schema_``), ``table_schema``, or, with ``likelihood="table"`` or ``missing=True``
        and a NaN in X, types inferred from X's values; None for plain data."""
        found = getattr(self, "schema_", None) or self.table_schema
        if found is not None:
            return found if isinstance(found, Schema) else Schema.from_dict(found)
        if self.likelihood == "table" or (self.missing and bool(np.isnan(X).any())):
            return schema_for_numbers(X, column_types=self.column_types)
        return None

    def _table_likelihood(self, X: np.ndarray, where: str, schema: Schema, likelihood: str) -> Table:
        if likelihood not in ("auto", "table"):
            raise ConfigError(f"the {likelihood} likelihood takes one type for every column and no "
                              "missing cells; a table of typed columns takes --likelihood table "
                              "(or auto)")
        if X.shape[1] != len(schema.columns):
            raise DataError(f"{where}: {X.shape[1]} columns, but the table has "
                            f"{len(schema.columns)} typed columns")
        return Table.for_data(X, where, column_kinds=tuple(c.kind for c in schema.columns),
                              column_levels=tuple(len(c.levels) for c in schema.columns))

    def _read_table(self, X: object, where: str) -> Any:
        """Fitting: a pandas DataFrame is read as a table (its columns typed, overridden by
        ``column_types``; empty cells missing) and its numbers returned; for any data the
        typed columns (if a table) become ``schema_``."""
        self.schema_ = None
        if is_frame(X):
            table = (frame_with_schema(X, Schema.from_dict(self.table_schema), where)
                     if self.table_schema is not None
                     else read_frame(X, column_types=self.column_types))
            self.schema_ = table.schema
            return table.x
        if not isinstance(X, NpyStream):
            self.schema_ = self._schema_for(dense_matrix(X, where))
        return X

    def _table_input(self, X: object, where: str) -> Any:
        """A DataFrame given to a model fitted on a table: its columns by name, coded as in
        training."""
        schema = getattr(self, "schema_", None)
        if schema is not None and is_frame(X):
            return frame_with_schema(X, schema, where).x
        return X

    def _as_rows(self, X: Any, where: str) -> torch.Tensor:
        if getattr(self, "schema_", None) is None:
            raise ConfigError("this model was not fitted on a table (a DataFrame, a table file, "
                              "or data with missing=True): it has no cells to fill or score")
        return self.as_tensor(X, where=where)

    def impute(self, X: object, k: int = 100, draws: int | None = None,
               seed: int | None = 0) -> object:
        """``X`` with its missing cells filled by the model (see :mod:`elbokit.imputation`):
        each a conditional mean (a level or count: the most probable level, the rounded
        mean) from ``k`` importance samples, or ``draws`` multiple imputations by importance
        resampling (``[draws, n, dim]``; a DataFrame: the draws stacked, numbered in a first
        column ``draw``). A DataFrame comes back as one, levels as their strings; an array as
        an array of numbers and codes."""
        given = dense_matrix(self._table_input(X, "impute"), "impute")  # a DataFrame read once
        x = self._as_rows(given, "impute")
        with seeded(seed):
            filled = torch.cat([imputation.impute(self.module_, x[s:s + 256], k, draws)
                                for s in range(0, len(x), 256)], dim=-2).double().cpu().numpy()
        # Observed cells exactly as given (the model computes in its own precision).
        filled = np.where(np.isnan(given), filled, given.reshape(filled.shape[-2:]))
        if is_frame(X):
            return frame_from_rows(X, filled, self.schema_)  # type: ignore[arg-type]  # a table's model
        return filled

    def score_rows(self, X: object, k: int = 1000, seed: int | None = 0,
                   reference: object = None) -> dict[str, np.ndarray]:
        """How likely each row is, for anomaly detection: ``{"log_likelihood": [n],
        "stderr": [n], "surprise": [n, dim], "surprise_stderr": [n, dim], "anomaly": [n],
        "reference_median": [dim], "reference_spread": [dim]}``:
        log p(x_observed) with its standard error (``k`` importance samples); per cell
        -log p(x_c | the row's other observed cells) in nats with its standard error (NaN
        where missing; at most 200 samples per estimate; see :mod:`elbokit.imputation`); and
        the row's anomaly score (:func:`elbokit.imputation.anomaly_scores`), each cell's
        surprise against its column's in the ``reference`` rows (default: ``X`` itself),
        whose medians and spreads come with it.

        Rank rows by ``anomaly`` rather than by log p(x): a density's log is in the units of
        its column and counts only the observed cells, so a row missing a wide column (a
        salary in dollars) gains nats without being any more usual; the surprise of a cell
        against its own column's is free of both."""
        given = self._table_input(X, "score")  # a DataFrame read once
        x = self._as_rows(given, "score")
        estimate, stderr = self.log_likelihood(given, k=k, seed=seed)
        surprise, surprise_se = self._surprise(x, k, seed)
        base = surprise if reference is None else self._surprise(
            self._as_rows(reference, "reference"), k, seed)[0]
        anomaly, median, spread = imputation.anomaly_scores(surprise, base)
        return {"log_likelihood": estimate, "stderr": stderr, "surprise": surprise,
                "surprise_stderr": surprise_se, "anomaly": anomaly,
                "reference_median": median, "reference_spread": spread}

    def _surprise(self, x: torch.Tensor, k: int, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
        with seeded(seed):
            parts = [imputation.cell_surprise(self.module_, x[s:s + 256], min(k, 200))
                     for s in range(0, len(x), 256)]
        return tuple(torch.cat([p[i] for p in parts]).double().cpu().numpy()  # type: ignore[return-value]
                     for i in (0, 1))

    def saved_params(self) -> dict:
        """As :meth:`LatentModel.saved_params`, with the typed columns of the table it was
        fitted on (``table_schema``), so that a saved model reads tables as it did."""
        params = super().saved_params()
        schema = getattr(self, "schema_", None)
        if schema is not None:
            params["table_schema"] = schema.to_dict()
        return params

    # -- fitting -------------------------------------------------------------------------
    def fit(self, X: np.ndarray | NpyStream, y: object = None, X_val: np.ndarray | None = None,
            run_dir: str | Path | None = None, resume: bool = False, where: str = "data") -> VAE:
        """Maximize the ELBO (or IWAE_k) on ``X: [n, dim]``, an array or a
        :class:`~elbokit.data.NpyStream` (data larger than memory, see :meth:`_stream_module`;
        without ``X_val``, ``val_fraction`` of its rows, at most a sixteenth of its budget, are
        held out).

        ``run_dir``: write metrics.jsonl, a checkpoint per epoch and the best model there;
        ``resume=True`` continues from its checkpoint. ``y``: ignored (scikit-learn).
        """
        self._check_unsupervised(y)
        X = self._read_table(X, where)
        if X_val is not None and self.schema_ is not None:
            X_val = frame_with_schema(X_val, self.schema_, "X_val").x if is_frame(X_val) else X_val
        if isinstance(X, NpyStream):
            n_val = min(round(len(X) * self.val_fraction), X.holdout_rows)
            if X_val is None and n_val > 0:
                (held,) = X.pick([n_val], self.seed)
                X_val = X.read_rows(held)
                if self.dynamic_binarization:
                    X_val = fixed_binarization(X_val, self.seed)
                X = X.excluding(held)
            module = self._stream_module(X)
            where = X.where
        elif self.dynamic_binarization:
            # X holds probabilities: the model is built (and checked) on one draw, and
            # trained on a fresh draw per batch (Burda et al. 2016's dynamic binarization).
            X = np.asarray(X, dtype=np.float64)
            check_matrix(X, where)
            check_probabilities(X, where)
            self._dynamic_likelihood()
            module = self.build(fixed_binarization(X, self.seed), where)
        else:
            module = self.build(X, where)
        fit_with_trainer(self, module, self.train_config(), X, X_val, run_dir, resume, where,
                         dynamic=self.dynamic_binarization)
        self.module_.eval()
        self._fitted_width()
        return self

    def _dynamic_likelihood(self) -> str:
        if self.likelihood not in ("auto", "bernoulli"):
            raise ConfigError("dynamic binarization makes 0/1 data: use the bernoulli likelihood")
        return "bernoulli"

    def _stream_module(self, stream: NpyStream) -> VAEModule:
        """An untrained module for the rows of ``stream``, after every row of its file is
        checked (once: the scan is cached on the stream) against the options: finite, and
        0/1 for a Bernoulli likelihood, probabilities with dynamic binarization, and so on.
        What depends on the whole file comes from that scan (``likelihood="auto"``:
        Bernoulli when every value is 0 or 1; the category count); what a sample shows as
        well (the Gaussian standardization, the multinomial's document length) comes from a
        seeded sample of at most ``stream.holdout_rows`` rows (all of them when they fit, so
        a small file gives the module the array would)."""
        if self.dynamic_binarization:
            likelihood = self._dynamic_likelihood()
        elif self.likelihood in ("auto", *LIKELIHOODS):
            likelihood = self.likelihood
        else:
            raise ConfigError(f"unknown likelihood {self.likelihood!r}; choose from auto, "
                              f"{', '.join(LIKELIHOODS)}")

        def check(x: np.ndarray, where: str) -> None:  # one piece of the file, [rows, dim]
            if self.dynamic_binarization:
                check_probabilities(x, where)
            elif likelihood == "categorical":
                Categorical.check(x, where, self.n_categories)
            elif likelihood != "auto":
                LIKELIHOODS[likelihood].check(x, where)

        found = stream.scan(check, key=("vae", likelihood, self.n_categories,
                                        self.dynamic_binarization))
        if likelihood == "auto":
            likelihood = "bernoulli" if found.binary else "gaussian"
        n_categories = self.n_categories
        if likelihood == "categorical" and n_categories is None:
            n_categories = int(found.max) + 1  # codes seen anywhere in the file, not only the sample
        (rows,) = stream.pick([stream.holdout_rows], self.seed)
        sample = stream.read_rows(rows)
        if self.dynamic_binarization:
            sample = fixed_binarization(sample, self.seed)
        return self.build(sample, stream.where, likelihood=likelihood, n_categories=n_categories)

    @torch.no_grad()
    def transform(self, X: np.ndarray) -> np.ndarray:
        """Posterior means E_q[z | x]: ``[n, dim] -> [n, latent_dim]`` (categorical codes:
        the state probabilities, flattened to ``[n, latent_dim * K]``)."""
        module, x = cast(VAEModule, self._fitted()), self.as_tensor(X)
        return module.latent.flatten(module.posterior(x).mean).double().cpu().numpy()



@dataclass(frozen=True)
class MixtureOptions:
    """The model options of :class:`Mixture`, declared once as :class:`VAEOptions` declares
    the VAE's: ``Mixture``'s parameters default to these fields, and ``elbokit fit`` builds
    ``--components``, ``--fit``, ``--max-iter`` and ``--n-init`` from them. A mixture's
    likelihood and Gaussian scale come from the VAE's flags (:class:`VAEOptions`;
    ``--gaussian-scale dim``, that flag's default, gives a mixture "decoder")."""

    n_components: int = option(10, parse="positive_int", flag="components",
                               help="mixture: number of components K (10)")
    likelihood: str = "auto"  # no flag of its own: --likelihood (VAEOptions.likelihood)
    gaussian_scale: str = "decoder"  # no flag of its own: --gaussian-scale (see above)
    fit: str = option("em", choices=lambda: Mixture.fits,
                      help="mixture: EM, or gradient ascent on the exact log-likelihood (em)")
    init: str = "kmeans"  # no flag: EM's start (the library's choice)
    max_iter: int = option(200, parse="positive_int", help="mixture EM: iterations (200)")
    n_init: int = option(1, parse="positive_int",
                         help="mixture EM: starts from seeds SEED, SEED+1, ...; the best is kept (1)")
    tol: float = 1e-6  # no flag: EM's convergence tolerance (the library's choice)
    smoothing: float = 1e-2  # no flag: EM's pseudo-count (the library's choice)


class Mixture(LatentModel):
    """A mixture of K components as a latent-variable model (z = component).

    ``likelihood``: "auto", "bernoulli", "gaussian" (diagonal: per-component, per-dimension
    variances), "multinomial" or "categorical". ``fit="em"``: expectation-maximization from a
    k-means (``init``) start, ``max_iter``/``tol``, the best of ``n_init`` starts (seeds
    ``seed``, ``seed + 1``, ...), warning when it stops unconverged; ``fit="gradient"``: Adam on the exact
    log-likelihood through the generic trainer (``epochs``, ``batch_size``, ``lr``, early
    stopping on held-out data). The posterior q(z|x) is exact, so the ELBO equals log p(x)
    and :meth:`score_samples` is exact. ``smoothing``: EM's pseudo-count for multinomial,
    categorical and Bernoulli components (MAP under a Dirichlet/Beta prior; 1 is Laplace
    smoothing, as naive Bayes uses). ``device``: "cpu" or "cuda"; ``compile``: run the
    gradient fit's training step through ``torch.compile``; ``on_nan``, ``max_retries``,
    ``tensorboard``: as for :class:`VAE` (the gradient fit).
    """

    kind = "mixture"
    module_class = MixtureModule
    config_class = MixtureConfig
    fits: tuple[str, ...] = ("em", "gradient")

    # The model options default as MixtureOptions declares them; epochs, batch_size, lr: the
    # mixture's gradient fit has defaults of its own; the other training parameters default as
    # TrainConfig declares them.
    def __init__(self, n_components: int = MixtureOptions.n_components,
                 likelihood: str = MixtureOptions.likelihood,
                 gaussian_scale: str = MixtureOptions.gaussian_scale, fit: str = MixtureOptions.fit,
                 init: str = MixtureOptions.init, n_init: int = MixtureOptions.n_init,
                 max_iter: int = MixtureOptions.max_iter, tol: float = MixtureOptions.tol,
                 epochs: int = 100, batch_size: int = 256, lr: float = 1e-2,
                 val_fraction: float = 0.1, patience: int | None = TrainConfig.patience,
                 lr_schedule: str = TrainConfig.lr_schedule, lr_patience: int = TrainConfig.lr_patience,
                 lr_factor: float = TrainConfig.lr_factor, min_lr: float = TrainConfig.min_lr,
                 tolerance: float = TrainConfig.tolerance, ema: float = TrainConfig.ema,
                 seed: int = TrainConfig.seed, dtype: str = "float32", progress: bool = False,
                 smoothing: float = MixtureOptions.smoothing, device: str = "cpu",
                 compile: bool = False, on_nan: str = TrainConfig.on_nan,
                 max_retries: int = TrainConfig.max_retries, tensorboard: bool = False) -> None:
        self.n_components = n_components
        self.likelihood = likelihood
        self.gaussian_scale = gaussian_scale
        self.fit_method = fit
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.val_fraction = val_fraction
        self.patience = patience
        self.lr_schedule = lr_schedule
        self.lr_patience = lr_patience
        self.lr_factor = lr_factor
        self.min_lr = min_lr
        self.tolerance = tolerance
        self.ema = ema
        self.seed = seed
        self.dtype = dtype
        self.progress = progress
        self.smoothing = smoothing
        self.device = device
        self.compile = compile
        self.on_nan = on_nan
        self.max_retries = max_retries
        self.tensorboard = tensorboard

    def get_params(self, deep: bool = True) -> dict:
        # The parameter "fit" is kept as fit_method: an attribute "fit" would hide the method.
        return super().get_params(deep) | {"fit": self.fit_method}

    def set_params(self, **params: Any) -> Mixture:
        if "fit" in params:
            self.fit_method = params.pop("fit")
        return super().set_params(**params)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """The exact posterior over components, :meth:`predict_proba`: ``[n, K]``."""
        return self.predict_proba(X)

    def check(self, X: np.ndarray, where: str = "data") -> None:
        """Refuse impossible options or data before anything is fitted or written."""
        self.build(X, where, initialize=False)

    def build(self, X: np.ndarray, where: str = "data", initialize: bool = True) -> MixtureModule:
        """An initialized (k-means or random) module for data like ``X: [n, dim]``."""
        if isinstance(X, NpyStream):
            raise ConfigError("mixtures are fitted on data in memory (EM and the k-means start "
                              "revisit every example); stream the file to a VAE instead")
        if self.fit_method not in self.fits:
            raise ConfigError(f"fit must be one of {', '.join(self.fits)}, not {self.fit_method!r}")
        X = dense_matrix(X, where)
        check_matrix(X, where)
        observation = likelihood_for_data(self.likelihood, X, where, self.gaussian_scale)
        config = MixtureConfig(dim=X.shape[1], n_components=self.n_components,
                               likelihood=observation.config())
        module = MixtureModule(config, observation).to(self.torch_dtype())
        if not initialize:
            return module
        return init_from_data(module, self.as_tensor(X, module, where), self.seed, self.init,
                              alpha=self.smoothing)

    def fit(self, X: np.ndarray, y: object = None, X_val: np.ndarray | None = None,
            run_dir: str | Path | None = None, resume: bool = False, where: str = "data") -> Mixture:
        """Fit on ``X: [n, dim]``; with ``run_dir``, write metrics.jsonl and the model there.
        ``y``: ignored (scikit-learn)."""
        self._check_unsupervised(y)
        if self.n_init < 1:
            raise ConfigError(f"n_init must be >= 1, not {self.n_init}")
        if self.fit_method != "em":  # refused before the fitted model is replaced
            check_run_dir(run_dir, resume)
        elif self.tensorboard:
            tensorboard.require(self)  # EM has no epochs to log: refused before it runs
        module = self.build(X, where).to(self.torch_device())
        self.module_ = module
        run_dir = Path(run_dir) if run_dir is not None else None
        if self.fit_method == "em":
            module, history = self._best_em(X, where, module)
            self.module_ = module
            self.converged_ = len(history) < 2 or history[-1] - history[-2] < self.tol
            if not self.converged_:
                warnings.warn(f"EM stopped after max_iter={self.max_iter} iterations without "
                              f"converging (last gain {history[-1] - history[-2]:.3g} nats >= "
                              f"tol={self.tol:g}); raise max_iter", ConvergenceWarning, stacklevel=2)
            self.history_ = [{"iteration": i, "train": {"log_likelihood": value}}
                             for i, value in enumerate(history)]
            self.epochs_trained_, self.stopped_early_ = len(history) - 1, False
            self.n_iter_ = self.epochs_trained_
            if run_dir is not None:
                write_lines(run_dir / "metrics.jsonl", self.history_)
                self.save(run_dir)
        else:
            # The posterior is exact: "enumerate" is gradient ascent on log p(x).
            config = replace(self.train_config(), estimator="enumerate")
            fit_with_trainer(self, module, config, X, X_val, run_dir, resume, where)
        self.module_.eval()
        self._fitted_width()
        return self

    def _best_em(self, X: np.ndarray, where: str, first: MixtureModule
                 ) -> tuple[MixtureModule, list[float]]:
        """EM from ``n_init`` starts; the one with the highest training log-likelihood wins."""
        show = self._show_progress()
        starts = f" (start 1 of {self.n_init})" if self.n_init > 1 else ""
        best, best_history = first, fit_em(first, self.as_tensor(X, first, where),
                                          self.max_iter, self.tol, alpha=self.smoothing,
                                          show=show, desc=f"EM{starts}")
        for restart in range(1, self.n_init):
            seed, self.seed = self.seed, self.seed + restart
            try:
                module = self.build(X, where).to(self.torch_device())
            finally:
                self.seed = seed
            history = fit_em(module, self.as_tensor(X, module, where), self.max_iter, self.tol,
                             alpha=self.smoothing, show=show,
                             desc=f"EM (start {restart + 1} of {self.n_init})")
            if history[-1] > best_history[-1]:
                best, best_history = module, history
        return best, best_history

    @torch.no_grad()
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Exact posterior p(z = k | x): ``[n, dim] -> [n, K]``."""
        module, x = cast(MixtureModule, self._fitted()), self.as_tensor(X)
        return module.responsibilities(x).double().cpu().numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most probable component per example: ``[n]``."""
        return self.predict_proba(X).argmax(-1)


MODEL_KINDS: Registry[type[LatentModel]] = Registry("model")
MODEL_KINDS.add("vae", VAE, "a VAE: Gaussian, categorical or Bernoulli z, MLP/linear/conv nets")
MODEL_KINDS.add("mixture", Mixture, "a mixture of --components K (z = component, exact "
                "posterior)")
MODEL_KINDS.add("custom", LatentModel, "a user's own module: --model PATH.py:Class, "
                "package.module:Class or an installed plugin's name")

# Command-line options (as argparse names them) that set a constructor parameter of
# another name (declared: option(flag=...)), e.g. components -> n_components.
OPTION_PARAMETERS = {f.metadata["cli"]["flag"]: f.name for options in (VAEOptions, MixtureOptions)
                     for f in fields(options) if (f.metadata.get("cli") or {}).get("flag")}


def options_for(kind: str, options: dict) -> dict:
    """The entries of ``options`` (command-line options by argparse name, e.g. the shared
    options ``elbokit sweep`` records) that apply to a model of ``kind``, in their order:
    all but those setting a constructor parameter that only other kinds take (a VAE has no
    ``components``, a mixture no ``hidden``). Options no constructor takes (the data's,
    the evaluation's) apply to every kind."""
    def parameters(cls: type[LatentModel]) -> set[str]:
        return set(list(inspect.signature(cls.__init__).parameters)[1:])

    own = parameters(MODEL_KINDS[kind])
    # A user's model takes no built-in's options ("model" there is the CLI's --model).
    foreign = set().union(*(parameters(cls) for name, cls in MODEL_KINDS.items()
                            if name != "custom")) - own
    return {k: v for k, v in options.items() if OPTION_PARAMETERS.get(k, k) not in foreign}
