"""Classifiers: p(y | x) from a generative model by Bayes' rule, or directly.

Every classifier *module* (torch) answers one question::

    log_proba(x) -> log p(y | x)        x: [B, dim] -> [B, C], rows log-normalized

Generative ones implement the joint and derive the conditional (Bayes' rule)::

    log_joint(x) -> log p(x, y) = log p(y) + log p(x | y)          [B, dim] -> [B, C]
    log p(y | x) = log p(x, y) - logsumexp_y' log p(x, y')         (:func:`bayes_rule`)

Discriminative ones parameterize log p(y | x) = log_softmax(f(x)) and are trained by
maximizing the conditional log-likelihood (minimizing the cross-entropy): the generic
:class:`~elbokit.training.Trainer` with :class:`ConditionalObjective`.

The scikit-learn style *facades* share :class:`Classifier`: ``fit(X, y)``,
``predict_log_proba(X)``, ``predict_proba(X) -> [n, C]``, ``predict(X)``, ``score(X, y)``
(accuracy), ``classes_`` (the sorted labels; strings are fine, so for ``ham``/``spam`` the
positive class ``spam`` is column 1):

- :class:`MultinomialNaiveBayes` -- generative, closed form (counts + Lidstone smoothing);
- :class:`GenerativeClassifier` -- generative, one fitted density model per class (e.g.
  :class:`elbokit.Mixture` or :class:`elbokit.VAE` with ``likelihood="multinomial"``);
- :class:`LogisticRegression`, :class:`MLPClassifier` -- discriminative, Adam on the
  cross-entropy with an optional L2 penalty, through the generic trainer
  (:class:`TrainedClassifier`: ``fit(X, y, run_dir=..., resume=True)`` checkpoints every
  epoch and continues an interrupted fit exactly).

Inputs are checked before use: a wrong width, NaN/inf, or (for count models) negative values
raise :class:`~elbokit.errors.DataError` naming the rows.

A fitted facade is saved with ``save(path)`` and read back with ``Classifier.load(path)`` (or
``LogisticRegression.load(path)`` etc., which refuses a saved classifier of another kind)::

    path/classifier.json           format "elbokit.classifier", version, kind, constructor
                                   params, classes (type kept), n_features_in, fitted state,
                                   SHA-256 of the tensors
    path/classifier.safetensors    the fitted tensors
    path/densities/<c>/            GenerativeClassifier: each class's density (LatentModel.save)

No pickles: safetensors and JSON only, the directory replaced as a whole
(:func:`elbokit.checkpoint.atomic_directory`). A facade takes part by setting a class
attribute ``kind`` (which registers it in :data:`CLASSIFIER_KINDS`) and implementing
``_fitted_tensors()`` and ``_restore(tensors, state, directory)`` (plus ``_save_parts`` for
JSON state or sub-models).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .api import MODEL_KINDS, LatentModel
from .bounds import Terms
from .checkpoint import SAVED_KINDS, atomic_directory, load_record, save_record
from .data import as_matrix, split_indices
from .distributed import resolve_device
from .errors import CheckpointError, ConfigError, DataError, ElbokitError, describe_rows
from .estimators import Estimator
from .likelihoods import Multinomial
from .nets import ACTIVATIONS, mlp
from .rng import seeded
from .training import TrainConfig, Trainer, check_run_dir

__all__ = [
    "ClassifierModule", "GenerativeModule", "NaiveBayesModule", "DiscriminativeModule",
    "FEATURE_TRANSFORMS", "bayes_rule", "encode_labels", "fit_multinomial_nb", "ConditionalObjective",
    "labelled_rows",
    "Classifier", "JointClassifier", "MultinomialNaiveBayes", "GenerativeClassifier",
    "ModuleClassifier", "TrainedClassifier", "DiscriminativeClassifier", "LogisticRegression",
    "MLPClassifier", "CLASSIFIER_KINDS",
]


# -- the module protocol ---------------------------------------------------------------------


@runtime_checkable
class ClassifierModule(Protocol):
    """Anything that gives class log-probabilities: ``log_proba(x: [B, dim]) -> [B, C]``."""

    def log_proba(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class GenerativeModule(ClassifierModule, Protocol):
    """A classifier that also gives the joint: ``log_joint(x: [B, dim]) -> [B, C]``."""

    def log_joint(self, x: torch.Tensor) -> torch.Tensor: ...


def bayes_rule(log_joint: torch.Tensor) -> torch.Tensor:
    """log p(y | x) = log p(x, y) - log sum_y' p(x, y'): ``[B, C] -> [B, C]``."""
    return log_joint.log_softmax(-1)


# -- multinomial naive Bayes -----------------------------------------------------------------


def fit_multinomial_nb(x: torch.Tensor, y: torch.Tensor, n_classes: int, alpha: float,
                       class_prior: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Closed-form (MAP) multinomial naive Bayes from counts ``x: [n, D]``, codes ``y: [n]``.

        N_c  = #{i: y_i = c}                 log p(y = c) = log N_c - log n   (or ``class_prior``)
        N_cd = sum_{i: y_i = c} x_id         theta_cd = (N_cd + alpha) / (sum_d N_cd + D alpha)

    Lidstone smoothing with pseudo-count ``alpha`` (Laplace: ``alpha = 1``), the estimates of
    scikit-learn's ``MultinomialNB``. Returns ``(log p(y) [C], log theta [C, D],
    class counts [C], feature counts [C, D])``.
    """
    one_hot = F.one_hot(y, n_classes).to(x.dtype)  # [n, C]
    feature_count = one_hot.T @ x  # [C, D]
    class_count = one_hot.sum(0)  # [C]
    smoothed = feature_count + alpha
    feature_log_prob = smoothed.log() - smoothed.sum(-1, keepdim=True).log()
    if class_prior is None:
        class_log_prior = class_count.log() - class_count.sum().log()
    else:
        class_log_prior = class_prior.to(x.dtype).log()
    return class_log_prior, feature_log_prob, class_count, feature_count


class NaiveBayesModule(nn.Module):
    """Multinomial naive Bayes as a generative model of (x, y), x a vector of word counts:

        p(y = c) = pi_c,    p(x | y = c) = Multinomial(x; n = sum_d x_d, theta_c)
        log p(x, y = c) = log pi_c + log n! - sum_d log x_d! + sum_d x_d log theta_cd

    The document length n is conditioned on (:class:`elbokit.likelihoods.Multinomial`), and
    the multinomial coefficient is included, so :meth:`log_joint` is a true log-density;
    being the same for every class it cancels in p(y | x), which therefore equals
    scikit-learn's (which drops it). A document with no known word (x = 0) has
    p(x | y) = 1 for every class (the only document of length 0), so p(y | x) = p(y): the
    class prior, exactly.

    Buffers: ``class_log_prior`` [C], ``feature_log_prob`` [C, D] (log theta).
    """

    def __init__(self, class_log_prior: torch.Tensor, feature_log_prob: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("class_log_prior", class_log_prior)
        self.register_buffer("feature_log_prob", feature_log_prob)
        self.observation = Multinomial(feature_log_prob.shape[-1])

    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x, y): ``[B, D] -> [B, C]`` (one matrix product)."""
        return self.class_log_prior + self.observation.log_prob_table(self.feature_log_prob, x)

    def log_proba(self, x: torch.Tensor) -> torch.Tensor:
        """log p(y | x): ``[B, D] -> [B, C]``."""
        return bayes_rule(self.log_joint(x))


# -- discriminative modules ------------------------------------------------------------------


def _log1p(x: torch.Tensor) -> torch.Tensor:
    return torch.log1p(x)


def _term_frequency(x: torch.Tensor) -> torch.Tensor:
    # An empty document stays a row of zeros instead of 0/0.
    return x / x.sum(-1, keepdim=True).clamp_min(1)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


FEATURE_TRANSFORMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "log1p": _log1p,  # log(1 + count): a sublinear term frequency, length information kept
    "tf": _term_frequency,  # count / document length: word proportions
    "identity": _identity,  # the values as given (e.g. binary pixels, standardized data)
}
COUNT_TRANSFORMS = ("log1p", "tf")


class DiscriminativeModule(nn.Module):
    """log p(y | x) = log_softmax(f(phi(x))): ``[B, dim] -> [B, C]``.

    ``phi`` is a fixed feature transform (:data:`FEATURE_TRANSFORMS`), ``f`` the shared
    :func:`elbokit.nets.mlp` with ``hidden`` widths; ``hidden=()`` makes ``f`` one affine
    map, i.e. (multinomial) logistic regression.
    """

    def __init__(self, dim: int, n_classes: int, hidden: Sequence[int] = (),
                 activation: str = "relu", transform: str = "log1p") -> None:
        super().__init__()
        if transform not in FEATURE_TRANSFORMS:
            raise ConfigError(f"transform must be one of {', '.join(FEATURE_TRANSFORMS)}, "
                              f"not {transform!r}")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}, not {activation!r}")
        self.transform = transform
        self.net = mlp(dim, tuple(hidden), n_classes, activation)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(FEATURE_TRANSFORMS[self.transform](x))

    def log_proba(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x).log_softmax(-1)

    def weights(self) -> list[torch.Tensor]:
        """The linear maps' weight matrices (what the L2 penalty acts on; biases are free)."""
        return [m.weight for m in self.modules() if isinstance(m, nn.Linear)]


class ConditionalObjective(Estimator):
    """Maximum conditional likelihood as a :class:`~elbokit.training.Trainer` objective, so
    a discriminative classifier trains through the one loop (validation and early stopping,
    the NaN guard, checkpoints, devices)::

        maximize  1/n sum_i log p(y_i | x_i) - (weight_decay / 2) sum_W ||W||^2

    (the cross-entropy plus an L2 penalty on the weight matrices, not the biases: MAP under a
    Gaussian prior with precision ``n * weight_decay``). The trainer's batches are rows of
    one tensor, so each row carries its label: ``[x | y]``, ``[B, dim + 1]``, the class code
    in the last column (:func:`labelled_rows`). Per example of a batch::

        reconstruction:  log p(y | x)
        kl:              the penalty, (weight_decay / 2) sum_W ||W||^2 (the prior's share)
        elbo, surrogate: their difference, the objective

    Validation scores the held-out log p(y | x) (no penalty: :meth:`validation_terms`).
    """

    def __init__(self, weight_decay: float = 0.0) -> None:
        super().__init__()
        if not weight_decay >= 0:
            raise ConfigError(f"weight_decay must be >= 0, not {weight_decay}")
        self.weight_decay = weight_decay

    def forward(self, model: DiscriminativeModule, rows: torch.Tensor) -> Terms:
        x, y = rows[:, :-1], rows[:, -1].long()
        log_likelihood = model.log_proba(x).gather(-1, y[:, None])[:, 0]  # [B]
        penalty = torch.zeros((), dtype=log_likelihood.dtype, device=log_likelihood.device)
        if self.weight_decay > 0:
            penalty = 0.5 * self.weight_decay * sum(w.square().sum() for w in model.weights())
        penalty = penalty.expand_as(log_likelihood)
        objective = log_likelihood - penalty
        return Terms(elbo=objective, reconstruction=log_likelihood, kl=penalty, surrogate=objective)

    @torch.no_grad()
    def validation_terms(self, model: DiscriminativeModule, rows: torch.Tensor) -> Terms:
        terms = self(model, rows)
        return Terms(terms.elbo, terms.reconstruction, terms.kl, terms.reconstruction)


def labelled_rows(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``[x | y]``: ``x: [n, dim]`` with the codes ``y: [n]`` as a last column, in x's dtype
    (exact for codes below 2^24 in float32): what :class:`ConditionalObjective` trains on."""
    return torch.cat([x, y[:, None].to(x.dtype)], -1)


# -- facades ---------------------------------------------------------------------------------

FORMAT = "elbokit.classifier"  # the saved kind (elbokit.checkpoint.SAVED_KINDS)
RECORD_FILE = SAVED_KINDS[FORMAT].record_file
MODEL_TAG = "elbokit_model"  # marks a LatentModel hyper-parameter (a density) in the JSON record

#: Saved kind -> facade class; a subclass that sets ``kind`` registers itself here.
CLASSIFIER_KINDS: dict[str, type[Classifier]] = {}


class Classifier:
    """The scikit-learn style facade every classifier shares.

    Subclasses implement ``_fit(X, codes)`` (``X`` checked float64 ``[n, dim]``, ``codes``
    ``[n]`` in ``range(C)``) and ``_log_proba(X) -> [n, C]``. Fitted state ends in ``_``:
    ``classes_`` (sorted labels; column order of :meth:`predict_proba`), ``n_features_in_``.
    To be saved they set ``kind`` and implement the persistence hooks (see the module
    docstring).
    """

    counts = False  # whether X must hold non-negative values (counts)
    kind = ""  # the name save() records; "" = abstract, not registered

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if kind:  # registered on definition, so that Classifier.load finds every facade
            known = CLASSIFIER_KINDS.get(kind)
            if known is not None and known.__qualname__ != cls.__qualname__:
                raise TypeError(f"classifier kind {kind!r} is already taken by {known.__qualname__}")
            CLASSIFIER_KINDS[kind] = cls

    def get_params(self) -> dict:
        """The constructor's arguments, as given (scikit-learn convention)."""
        names = list(inspect.signature(type(self).__init__).parameters)[1:]
        return {name: getattr(self, name) for name in names}

    def fit(self, X: np.ndarray, y: Sequence | np.ndarray) -> Classifier:
        """Fit on ``X: [n, dim]`` with labels ``y: [n]`` (any sortable labels, e.g. strings)."""
        return self._fit_labels(X, y)

    def _fit_labels(self, X: np.ndarray, y: Sequence | np.ndarray, **options: Any) -> Classifier:
        """Check ``X`` and ``y``, set ``classes_`` and ``n_features_in_``, and call
        ``_fit(X, codes, **options)``; a failed fit leaves the classifier unfitted."""
        X = self._as_matrix(X, "training data", dim=None)
        classes, codes = self._encode_labels(y, len(X))
        self.classes_, self.n_features_in_ = classes, X.shape[1]
        try:
            self._fit(X, codes, **options)
        except BaseException:
            del self.classes_  # a failed fit leaves no half-fitted model behind
            raise
        return self

    def predict_log_proba(self, X: np.ndarray) -> np.ndarray:
        """log p(y | x): ``[n, dim] -> [n, C]`` (float64), columns in ``classes_`` order."""
        self._check_fitted()
        return self._log_proba(self._as_matrix(X, "data", dim=self.n_features_in_))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """p(y | x): ``[n, dim] -> [n, C]``, rows summing to 1."""
        return np.exp(self.predict_log_proba(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most probable class per example (ties: the first in ``classes_``): ``[n]``."""
        codes = self.predict_log_proba(X).argmax(-1)
        return self.classes_[codes]

    def score(self, X: np.ndarray, y: Sequence | np.ndarray) -> float:
        """Accuracy of :meth:`predict` against ``y``."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    # -- for subclasses ----------------------------------------------------------------------
    def _encode_labels(self, y: Sequence | np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        return encode_labels(y, n)

    def _fit(self, X: np.ndarray, codes: np.ndarray, **options: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _log_proba(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if getattr(self, "classes_", None) is None:
            raise ConfigError(f"this {type(self).__name__} is not fitted yet: call fit(X, y)")

    def _as_matrix(self, X: Any, where: str, dim: int | None) -> np.ndarray:
        """``X`` as checked float64 ``[n, dim]`` (one example may be given as a vector)."""
        X = as_matrix(X, where, dim)
        if self.counts:
            negative = (X < 0).any(axis=1)
            if negative.any():
                raise DataError(f"{where}: {type(self).__name__} needs non-negative counts, but "
                                f"{describe_rows(negative)} have negative values")
        return X

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the fitted classifier to the directory ``path`` (``classifier.json`` +
        ``classifier.safetensors`` [+ sub-models]), replacing it as a whole: a failure leaves
        the old one. Refuses to replace a directory that is not a saved classifier."""
        self._check_fitted()
        path = Path(path)
        name = type(self).__name__
        if CLASSIFIER_KINDS.get(self.kind) is not type(self):
            raise ConfigError(f"a {name} cannot be saved: it has no kind of its own "
                              "(set a class attribute kind = 'NAME')")
        if path.exists() and not (path.is_dir() and ((path / RECORD_FILE).exists()
                                                     or not any(path.iterdir()))):
            raise ConfigError(f"{path}: exists and is not a saved classifier; refusing to replace it")
        params = {k: _to_json(v, f"{name} parameter {k}") for k, v in self.get_params().items()}
        classes = [_to_json(v, f"{name} class label") for v in self.classes_.tolist()]
        if not all(isinstance(v, str | int | float | bool) for v in classes):
            raise ConfigError(f"cannot save {name}: class labels must be strings or numbers")
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_directory(path) as tmp:
            state = self._save_parts(tmp)
            save_record(tmp, FORMAT, {
                "kind": self.kind, "params": params, "classes": classes,
                "classes_dtype": self.classes_.dtype.str,
                "n_features_in": int(self.n_features_in_), "state": state}, self._fitted_tensors())

    @classmethod
    def load(cls, path: str | Path) -> Classifier:
        """A fitted classifier from :meth:`save`'s directory. Called on a subclass (e.g.
        ``LogisticRegression.load``) it refuses a saved classifier of another kind; tensors
        whose checksum differs from the record (truncated, modified) are refused too."""
        path = Path(path)
        where = path / RECORD_FILE
        record, tensors = load_record(path, FORMAT)
        kind = record.get("kind")
        saved = CLASSIFIER_KINDS.get(kind) if isinstance(kind, str) else None
        if saved is None:
            raise CheckpointError(f"{where}: unknown classifier kind {kind!r} "
                                  f"(known: {', '.join(CLASSIFIER_KINDS)})")
        if not issubclass(saved, cls):
            raise CheckpointError(f"{path}: holds a {kind!r} classifier ({saved.__name__}), "
                                  f"not a {cls.__name__}")
        try:
            model = saved(**_from_json(record["params"]))
            model.classes_ = np.array(record["classes"], dtype=np.dtype(record["classes_dtype"]))
            model.n_features_in_ = int(record["n_features_in"])
            if model.classes_.ndim != 1 or len(model.classes_) < 2 or model.n_features_in_ < 1:
                raise ValueError("expected two or more class labels and one or more features")
        except (KeyError, TypeError, ValueError, ElbokitError) as e:
            raise CheckpointError(f"{where}: malformed classifier record ({_one_line(e)})") from None
        try:
            model._restore(tensors, record.get("state") or {}, path)
        except CheckpointError:  # a sub-model's file (it names itself)
            raise
        except (KeyError, TypeError, ValueError, RuntimeError, ElbokitError) as e:
            # The checksum matched, so the record and the tensors were written inconsistently.
            raise CheckpointError(f"{path}: the saved classifier does not fit together "
                                  f"({_one_line(e)})") from None
        return model

    def _fitted_tensors(self) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        """The fitted tensors to save (names are free; ``_restore`` reads them back)."""
        raise NotImplementedError

    def _save_parts(self, directory: Path) -> dict:
        """Fitted state beyond the tensors, as JSON (returned), and sub-models written into
        ``directory`` (the temporary directory being built). Default: nothing."""
        return {}

    def _restore(self, tensors: dict[str, torch.Tensor], state: dict,
                 directory: Path) -> None:  # pragma: no cover - abstract
        """Rebuild the fitted state from :meth:`_fitted_tensors`' tensors, :meth:`_save_parts`'
        ``state`` and ``directory``; ``classes_`` and ``n_features_in_`` are already set.
        Raise ``ValueError`` (or let ``KeyError``/``RuntimeError`` through) when they do not fit."""
        raise NotImplementedError


def _to_json(value: Any, where: str) -> Any:
    """A hyper-parameter as JSON data: numpy scalars and arrays become numbers and lists,
    tuples lists, and an elbokit :class:`~elbokit.api.LatentModel` (a density)
    ``{MODEL_TAG: kind, "params": ...}``; anything else is refused (no pickles)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray | list | tuple):
        return [_to_json(v, where) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _to_json(v, where) for k, v in value.items()}
    if isinstance(value, LatentModel):
        return {MODEL_TAG: value.kind, "params": _to_json(value.get_params(), where)}
    raise ConfigError(f"cannot save {where}: a {type(value).__name__} is neither JSON data nor "
                      "an elbokit model (e.g. pass Mixture(...) rather than a factory)")


def _from_json(value: Any) -> Any:
    """Inverse of :func:`_to_json` (lists stay lists: the constructors accept sequences)."""
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if not isinstance(value, dict):
        return value
    if MODEL_TAG in value:
        if value[MODEL_TAG] not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {value[MODEL_TAG]!r}")
        return MODEL_KINDS[value[MODEL_TAG]](**value["params"])
    return {k: _from_json(v) for k, v in value.items()}


def _one_line(error: BaseException) -> str:
    # torch's load_state_dict errors span lines; the CLI prints errors on one.
    return " ".join(str(error).split())


def _tensor(tensors: dict[str, torch.Tensor], name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """``tensors[name]``, refused unless it has ``shape``."""
    if name not in tensors:
        raise ValueError(f"no tensor {name!r}")
    if tuple(tensors[name].shape) != shape:
        raise ValueError(f"tensor {name!r} has shape {list(tensors[name].shape)}, "
                         f"expected {list(shape)}")
    return tensors[name]


def encode_labels(y: Sequence | np.ndarray, n: int, unlabelled: object = None,
                  where: str = "training labels") -> tuple[np.ndarray, np.ndarray]:
    """``(classes [C] sorted, codes [n] in range(C))`` of labels ``y: [n]``, checked.

    ``unlabelled``: a marker (e.g. -1) for examples without a label; they get code -1, and
    None/NaN entries count as unlabelled too. Without a marker every entry must be a label.
    """
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{where}: expected {n} labels (one per example), got shape {list(y.shape)}")
    missing = np.array([v is None or (isinstance(v, float) and v != v) for v in y.tolist()], dtype=bool)
    if unlabelled is not None:
        # numpy turns ["ham", -1] into strings: compare the marker as a string there too.
        marker = str(unlabelled) if y.dtype.kind in "US" else unlabelled
        missing |= np.array([v == marker for v in y.tolist()], dtype=bool)
    elif missing.any() or (y.dtype.kind == "f" and not np.isfinite(y).all()):
        bad = missing | (~np.isfinite(y) if y.dtype.kind == "f" else False)
        raise DataError(f"{where}: {describe_rows(bad)} are None, NaN or inf")
    try:
        classes, labelled_codes = np.unique(y[~missing], return_inverse=True)
    except TypeError:
        raise DataError(f"{where}: cannot be sorted (mixed types?)") from None
    if classes.dtype == object:  # labels that shared an array with markers: their own dtype
        classes = np.asarray(classes.tolist())
    if len(classes) < 2:
        raise DataError(f"{where}: need at least two classes, found only {classes.tolist()}")
    codes = np.full(n, -1, dtype=np.int64)
    codes[~missing] = labelled_codes
    return classes, codes


def _class_prior(class_prior: Sequence[float] | None, n_classes: int) -> torch.Tensor | None:
    """A user's class prior as a float64 tensor [C] (normalized), or None for the empirical."""
    if class_prior is None:
        return None
    prior = torch.as_tensor(np.asarray(class_prior, dtype=np.float64))
    if prior.shape != (n_classes,) or not torch.all(prior > 0) or not torch.isfinite(prior).all():
        raise ConfigError(f"class_prior must hold {n_classes} positive numbers (one per class), "
                          f"got {np.asarray(class_prior).tolist()}")
    return prior / prior.sum()


class JointClassifier(Classifier):
    """A generative classifier: implements ``log_joint(X) -> log p(x, y)`` ``[n, C]`` and gets
    p(y | x) from it by Bayes' rule."""

    def log_joint(self, X: np.ndarray) -> np.ndarray:
        """log p(x, y) for every example and class: ``[n, dim] -> [n, C]`` (float64, nats)."""
        self._check_fitted()
        return self._log_joint(self._as_matrix(X, "data", dim=self.n_features_in_))

    def _log_proba(self, X: np.ndarray) -> np.ndarray:
        return bayes_rule(torch.as_tensor(self._log_joint(X))).numpy()

    def _log_joint(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class MultinomialNaiveBayes(JointClassifier):
    """Multinomial naive Bayes for word counts (:class:`NaiveBayesModule`), fitted in closed
    form (:func:`fit_multinomial_nb`) in float64.

    ``alpha > 0``: Lidstone pseudo-count per word and class (1 = Laplace smoothing).
    ``class_prior``: p(y) [C] in ``classes_`` order; default: the training frequencies.
    Non-integer non-negative values (e.g. tf-idf) are accepted, as by scikit-learn.

    A message with no known word (a row of zeros) gets the class prior: p(y | x) = p(y).
    ``predict_log_proba`` equals scikit-learn's ``MultinomialNB(alpha=alpha)``.

    Fitted: ``module_``, ``class_log_prior_`` [C], ``feature_log_prob_`` [C, D],
    ``class_count_`` [C], ``feature_count_`` [C, D] (numpy, as scikit-learn names them).
    """

    counts = True
    kind = "naive-bayes"
    _fitted_names = ("class_log_prior", "feature_log_prob", "class_count", "feature_count")

    def __init__(self, alpha: float = 1.0, class_prior: Sequence[float] | None = None) -> None:
        self.alpha = alpha
        self.class_prior = class_prior

    def _fit(self, X: np.ndarray, codes: np.ndarray) -> None:
        if not self.alpha > 0:
            raise ConfigError(f"alpha must be > 0 (a pseudo-count; 1 = Laplace), not {self.alpha}")
        prior = _class_prior(self.class_prior, len(self.classes_))
        log_prior, log_theta, class_count, feature_count = fit_multinomial_nb(
            torch.as_tensor(X), torch.as_tensor(codes, dtype=torch.long), len(self.classes_),
            float(self.alpha), prior)
        self.module_ = NaiveBayesModule(log_prior, log_theta).eval()
        self.class_log_prior_, self.feature_log_prob_ = log_prior.numpy(), log_theta.numpy()
        self.class_count_, self.feature_count_ = class_count.numpy(), feature_count.numpy()

    @torch.no_grad()
    def _log_joint(self, X: np.ndarray) -> np.ndarray:
        return self.module_.log_joint(torch.as_tensor(X)).numpy()

    def _fitted_tensors(self) -> dict[str, torch.Tensor]:
        return {name: torch.as_tensor(getattr(self, f"{name}_")) for name in self._fitted_names}

    def _restore(self, tensors: dict[str, torch.Tensor], state: dict, directory: Path) -> None:
        c, d = len(self.classes_), self.n_features_in_
        shapes = {"class_log_prior": (c,), "feature_log_prob": (c, d), "class_count": (c,),
                  "feature_count": (c, d)}
        for name in self._fitted_names:
            setattr(self, f"{name}_", _tensor(tensors, name, shapes[name]).double().numpy())
        self.module_ = NaiveBayesModule(torch.as_tensor(self.class_log_prior_),
                                        torch.as_tensor(self.feature_log_prob_)).eval()


class GenerativeClassifier(JointClassifier):
    """One density model per class plus a class prior; p(y | x) by Bayes' rule:

        log p(x, y = c) = log p(y = c) + log p_c(x),     p_c fitted on the examples of class c

    ``density``: an unfitted estimator with ``fit(X)`` and ``score_samples(X) -> log p(x)
    [n]`` (e.g. ``elbokit.Mixture(n_components=3, likelihood="multinomial")`` or
    ``elbokit.VAE(likelihood="multinomial")``), copied for each class (rebuilt from its
    ``get_params()`` when it has one, else deep-copied), or a zero-argument factory returning
    one. ``score_options``: keyword arguments for ``score_samples`` (e.g. ``{"k": 100}``
    importance samples for a VAE). ``class_prior``: as in :class:`MultinomialNaiveBayes`.

    ``empty_documents``: what a row of zeros means. ``"prior"``: an empty document under a
    length-conditioned multinomial likelihood, which every class generates with probability 1
    (the only document of length 0), so log p_c(x) = 0 and p(y | x) = p(y), the class prior.
    Such rows are left out of the densities' training data too (they carry no information
    about them) and never shown to ``score_samples`` (elbokit's multinomial likelihood refuses
    them). ``"score"``: rows of zeros are ordinary data (e.g. a blank binary image).
    ``"auto"`` (default): ``"prior"`` when ``density.likelihood == "multinomial"``, else
    ``"score"``.

    Fitted: ``densities_`` (one per class, ``classes_`` order), ``class_log_prior_`` [C].
    """

    modes = ("auto", "prior", "score")
    kind = "generative"

    def __init__(self, density: Any, class_prior: Sequence[float] | None = None,
                 empty_documents: str = "auto", score_options: dict | None = None) -> None:
        self.density = density
        self.class_prior = class_prior
        self.empty_documents = empty_documents
        self.score_options = score_options

    def _empty_as_prior(self) -> bool:
        if self.empty_documents not in self.modes:
            raise ConfigError(f"empty_documents must be one of {', '.join(self.modes)}, "
                              f"not {self.empty_documents!r}")
        if self.empty_documents == "auto":
            return getattr(self._new_density(), "likelihood", None) == "multinomial"
        return self.empty_documents == "prior"

    def _new_density(self) -> Any:
        density = self.density
        if isinstance(density, type) or (callable(density) and not hasattr(density, "fit")):
            return density()
        if hasattr(density, "get_params"):
            return type(density)(**density.get_params())
        return copy.deepcopy(density)

    def _fit(self, X: np.ndarray, codes: np.ndarray) -> None:
        self.empty_as_prior_ = self._empty_as_prior()
        n_classes = len(self.classes_)
        prior = _class_prior(self.class_prior, n_classes)
        if prior is None:
            counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
            self.class_log_prior_ = np.log(counts) - np.log(counts.sum())
        else:
            self.class_log_prior_ = prior.log().numpy()
        keep = X.sum(axis=1) != 0 if self.empty_as_prior_ else np.ones(len(X), dtype=bool)
        self.densities_ = []
        for c, label in enumerate(self.classes_):
            rows = (codes == c) & keep
            if not rows.any():
                raise DataError(f"training data: class {label!r} has no non-empty examples to "
                                "fit its density to")
            density = self._new_density()
            density.fit(X[rows])
            self.densities_.append(density)

    def class_log_likelihoods(self, X: np.ndarray) -> np.ndarray:
        """log p_c(x) for every example and class: ``[n, dim] -> [n, C]`` (0 for empty
        documents when they mean the prior)."""
        self._check_fitted()
        return self._class_log_likelihoods(self._as_matrix(X, "data", dim=self.n_features_in_))

    def _class_log_likelihoods(self, X: np.ndarray) -> np.ndarray:
        scored = X.sum(axis=1) != 0 if self.empty_as_prior_ else np.ones(len(X), dtype=bool)
        table = np.zeros((len(X), len(self.classes_)))
        if scored.any():
            for c, density in enumerate(self.densities_):
                table[scored, c] = density.score_samples(X[scored], **(self.score_options or {}))
        bad = ~np.isfinite(table).any(axis=1) | np.isnan(table).any(axis=1)
        if bad.any():
            raise DataError(f"data: the class densities give no finite log-likelihood for "
                            f"{describe_rows(bad)}")
        return table

    def _log_joint(self, X: np.ndarray) -> np.ndarray:
        return self.class_log_prior_ + self._class_log_likelihoods(X)

    def _fitted_tensors(self) -> dict[str, torch.Tensor]:
        return {"class_log_prior": torch.as_tensor(self.class_log_prior_)}

    def _save_parts(self, directory: Path) -> dict:

        for c, density in enumerate(self.densities_):
            if not isinstance(density, LatentModel):
                raise ConfigError(f"cannot save a GenerativeClassifier whose densities are "
                                  f"{type(density).__name__}s: only elbokit models (VAE, Mixture)")
            density.save(directory / "densities" / str(c))
        return {"empty_as_prior": bool(self.empty_as_prior_)}

    def _restore(self, tensors: dict[str, torch.Tensor], state: dict, directory: Path) -> None:

        n_classes = len(self.classes_)
        self.class_log_prior_ = _tensor(tensors, "class_log_prior", (n_classes,)).double().numpy()
        self.empty_as_prior_ = bool(state["empty_as_prior"])
        self.densities_ = [LatentModel.load(directory / "densities" / str(c)) for c in range(n_classes)]
        for c, density in enumerate(self.densities_):
            if density.module_.config.dim != self.n_features_in_:
                raise ValueError(f"density {c} models {density.module_.config.dim} features, "
                                 f"not {self.n_features_in_}")


class ModuleClassifier(Classifier):
    """A classifier whose fitted state is one torch module ``module_`` with
    ``log_proba(x) -> [B, C]`` (:class:`ClassifierModule`), in ``dtype`` ("float32" or
    "float64"); its tensors are the module's state dict."""

    dtypes = {"float32": torch.float32, "float64": torch.float64}
    dtype = "float32"

    def _torch_dtype(self) -> torch.dtype:
        if self.dtype not in self.dtypes:
            raise ConfigError(f"dtype must be one of {', '.join(self.dtypes)}, not {self.dtype!r}")
        return self.dtypes[self.dtype]

    @torch.no_grad()
    def _log_proba(self, X: np.ndarray) -> np.ndarray:
        device = next(self.module_.parameters()).device  # where it was fitted (or loaded)
        x = torch.as_tensor(X, dtype=self._torch_dtype(), device=device)
        return self.module_.log_proba(x).double().log_softmax(-1).cpu().numpy()

    def _fitted_tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.module_.state_dict())


class TrainedClassifier(ModuleClassifier):
    """A :class:`ModuleClassifier` trained by the generic :class:`~elbokit.training.Trainer`,
    and so checkpointed like the density models: ``fit(X, y, run_dir=..., resume=...)``.
    Subclasses build the module, objective and data in ``_fit(X, codes, run_dir, resume)``
    and train them with :meth:`_train`."""

    def fit(self, X: np.ndarray, y: Sequence | np.ndarray, run_dir: str | Path | None = None,
            resume: bool = False) -> TrainedClassifier:
        """Fit on ``X: [n, dim]`` with labels ``y: [n]`` (any sortable labels, e.g. strings).

        ``run_dir``: a directory the training writes as it goes, as a density model's fit
        does: ``metrics.jsonl`` (one JSON record per epoch: the training objective's terms,
        the validation score, the rate) and ``checkpoint/`` (weights, Adam's state, counters,
        RNG state and the best weights so far, replaced atomically after every epoch, and at
        a Ctrl-C at that step: :class:`~elbokit.training.TrainingInterrupted`). The fitted
        classifier itself is saved with :meth:`save`, elsewhere. A directory that already
        holds a checkpoint is refused (:class:`~elbokit.errors.ConfigError`, nothing
        changed) unless ``resume=True``, which continues that training (same data and
        options): in the same process and on the CPU the weights and ``history_`` end bit
        for bit as an uninterrupted fit's."""
        run_dir = check_run_dir(run_dir, resume)
        return self._fit_labels(X, y, run_dir=run_dir, resume=resume)

    def _train(self, module: nn.Module, config: TrainConfig, objective: nn.Module,
               x: torch.Tensor, x_val: torch.Tensor | None, run_dir: Path | None,
               resume: bool) -> tuple[list[dict], Trainer]:
        """Train ``module`` on ``x: [n, ...]`` (early stopping on ``x_val`` when given),
        checkpointing into ``run_dir``; returns every epoch's record (a resumed run's
        included, read back from its ``metrics.jsonl``) and the trainer."""
        trainer = Trainer(module, config, run_dir=run_dir, objective=objective)
        history = trainer.fit(x, x_val, resume=resume)
        if resume and trainer.metrics is not None:
            history = trainer.metrics.epochs()  # the epochs before the interruption too
        return history, trainer


class DiscriminativeClassifier(TrainedClassifier):
    """p(y | x) = softmax(f(phi(x))) trained by maximum conditional likelihood through the
    generic :class:`~elbokit.training.Trainer` (:class:`ConditionalObjective`); see
    :class:`DiscriminativeModule` for ``hidden``, ``activation`` and ``transform``.

    ``transform``: ``"log1p"`` (default; log(1 + count), for word counts), ``"tf"``
    (count / document length) or ``"identity"``. The count transforms refuse negative values.
    ``weight_decay``: the L2 penalty (lambda / 2) ||W||^2 on the weight matrices.
    Training: Adam at a constant ``lr``, at most ``epochs`` passes over shuffled minibatches
    of ``batch_size``; ``seed`` fixes the initialization, the batch order and the split.
    ``val_fraction`` > 0 holds out that share of the examples: training then stops after
    ``patience`` epochs without a better held-out log p(y | x), and the best epoch's weights
    are kept (0: every epoch is trained, the last weights kept). A NaN or infinite loss or
    gradient is rolled back and retried at half the rate (the trainer's guard). ``device``:
    "cpu" or "cuda". ``dtype``: "float32" or "float64". A row of zeros is an ordinary input
    (its probabilities come from the biases: finite). ``fit(X, y, run_dir=..., resume=...)``
    checkpoints the training and continues it exactly (:meth:`TrainedClassifier.fit`).

    Fitted: ``module_`` (:class:`DiscriminativeModule`), ``history_`` (the training
    objective per epoch: mean cross-entropy plus the penalty), ``stopped_early_``.
    """

    kind = "discriminative"

    def __init__(self, hidden: Sequence[int] = (), activation: str = "relu",
                 transform: str = "log1p", weight_decay: float = 1e-4, epochs: int = 10,
                 batch_size: int = 64, lr: float = 1e-2, seed: int = 0,
                 dtype: str = "float32", val_fraction: float = 0.0, patience: int = 10,
                 device: str = "cpu") -> None:
        self.hidden = tuple(hidden)
        self.activation = activation
        self.transform = transform
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed
        self.dtype = dtype
        self.val_fraction = val_fraction
        self.patience = patience
        self.device = device

    @property
    def counts(self) -> bool:  # type: ignore[override]
        return self.transform in COUNT_TRANSFORMS

    def _fit(self, X: np.ndarray, codes: np.ndarray, run_dir: Path | None = None,
             resume: bool = False) -> None:
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), not {self.val_fraction}")
        dtype, device = self._torch_dtype(), resolve_device(self.device)
        objective = ConditionalObjective(self.weight_decay)
        # Plain Adam at a constant rate on the raw weights: what the penalized objective's
        # optimum (scikit-learn's, for logistic regression) is reached by.
        config = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                             seed=self.seed, patience=self.patience, lr_schedule="constant", ema=0.0)
        with seeded(self.seed):
            module = DiscriminativeModule(X.shape[1], len(self.classes_), self.hidden,
                                          self.activation, self.transform).to(dtype)
        rows = labelled_rows(torch.as_tensor(X, dtype=dtype), torch.as_tensor(codes))
        validation = None
        if self.val_fraction > 0:
            parts = split_indices(len(rows), self.seed, 0.0, self.val_fraction)
            rows, validation = rows[parts["train"]], rows[parts["val"]].to(device)
        history, trainer = self._train(module.to(device), config, objective, rows.to(device),
                                       validation, run_dir, resume)
        self.history_ = [-record["train"]["elbo"] for record in history]
        self.stopped_early_ = bool(trainer.state["stopped_early"])
        self.module_ = module.eval()

    def _save_parts(self, directory: Path) -> dict:
        return {"history": [float(v) for v in self.history_]}

    def _restore(self, tensors: dict[str, torch.Tensor], state: dict, directory: Path) -> None:
        with seeded(self.seed):  # building draws initial weights: leave the caller's RNG alone
            module = DiscriminativeModule(self.n_features_in_, len(self.classes_), self.hidden,
                                          self.activation, self.transform).to(self._torch_dtype())
        module.load_state_dict(tensors)  # strict: names and shapes must match
        self.module_ = module.eval()
        self.history_ = [float(v) for v in state.get("history", [])]


class LogisticRegression(DiscriminativeClassifier):
    """Multinomial logistic regression: log p(y | x) = log_softmax(W phi(x) + b) (binary:
    the usual sigmoid model, over-parameterized by one redundant row that the L2 penalty
    pins down). Options as :class:`DiscriminativeClassifier`, without hidden layers."""

    kind = "logistic-regression"

    def __init__(self, transform: str = "log1p", weight_decay: float = 1e-4, epochs: int = 10,
                 batch_size: int = 64, lr: float = 1e-2, seed: int = 0, dtype: str = "float32",
                 val_fraction: float = 0.0, patience: int = 10, device: str = "cpu") -> None:
        super().__init__((), "relu", transform, weight_decay, epochs, batch_size, lr, seed, dtype,
                         val_fraction, patience, device)


class MLPClassifier(DiscriminativeClassifier):
    """log p(y | x) = log_softmax(MLP(phi(x))) with ``hidden`` widths (default one layer of
    64). Options as :class:`DiscriminativeClassifier`."""

    kind = "mlp"

    def __init__(self, hidden: Sequence[int] = (64,), activation: str = "relu",
                 transform: str = "log1p", weight_decay: float = 1e-4, epochs: int = 10,
                 batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                 dtype: str = "float32", val_fraction: float = 0.0, patience: int = 10,
                 device: str = "cpu") -> None:
        super().__init__(hidden, activation, transform, weight_decay, epochs, batch_size, lr, seed,
                         dtype, val_fraction, patience, device)
