"""Classifiers: p(y | x) from a generative model by Bayes' rule, or directly.

Every classifier *module* (torch) answers one question::

    log_proba(x) -> log p(y | x)        x: [B, dim] -> [B, C], rows log-normalized

Generative ones implement the joint and derive the conditional (Bayes' rule)::

    log_joint(x) -> log p(x, y) = log p(y) + log p(x | y)          [B, dim] -> [B, C]
    log p(y | x) = log p(x, y) - logsumexp_y' log p(x, y')         (:func:`bayes_rule`)

Discriminative ones parameterize log p(y | x) = log_softmax(f(x)) and are trained by
maximizing the conditional log-likelihood (minimizing the cross-entropy,
:func:`fit_conditional`).

The scikit-learn style *facades* share :class:`Classifier`: ``fit(X, y)``,
``predict_log_proba(X)``, ``predict_proba(X) -> [n, C]``, ``predict(X)``, ``score(X, y)``
(accuracy), ``classes_`` (the sorted labels; strings are fine, so for ``ham``/``spam`` the
positive class ``spam`` is column 1):

- :class:`MultinomialNaiveBayes` -- generative, closed form (counts + Lidstone smoothing);
- :class:`GenerativeClassifier` -- generative, one fitted density model per class (e.g.
  :class:`elbokit.Mixture` or :class:`elbokit.VAE` with ``likelihood="multinomial"``);
- :class:`LogisticRegression`, :class:`MLPClassifier` -- discriminative, Adam on the
  cross-entropy with an optional L2 penalty.

Inputs are checked before use: a wrong width, NaN/inf, or (for count models) negative values
raise :class:`~elbokit.errors.DataError` naming the rows.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import check_matrix
from ..errors import ConfigError, DataError, describe_rows
from ..likelihoods import Multinomial
from ..nets import ACTIVATIONS, mlp
from ..training import seeded

__all__ = [
    "ClassifierModule", "GenerativeModule", "NaiveBayesModule", "DiscriminativeModule",
    "FEATURE_TRANSFORMS", "bayes_rule", "fit_multinomial_nb", "fit_conditional",
    "Classifier", "JointClassifier", "MultinomialNaiveBayes", "GenerativeClassifier",
    "DiscriminativeClassifier", "LogisticRegression", "MLPClassifier",
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


def fit_conditional(module: DiscriminativeModule, x: torch.Tensor, y: torch.Tensor, *,
                    epochs: int, batch_size: int, lr: float, weight_decay: float = 0.0,
                    seed: int = 0) -> list[float]:
    """Maximize the conditional log-likelihood with Adam on shuffled minibatches:

        minimize  -1/n sum_i log p(y_i | x_i) + (weight_decay / 2) sum_W ||W||^2

    (cross-entropy plus an L2 penalty on the weight matrices, not the biases: MAP under a
    Gaussian prior with precision ``n * weight_decay``). ``x: [n, dim]``, ``y: [n]`` codes.
    Returns the mean objective over each epoch's batches.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0 or weight_decay < 0:
        raise ConfigError(f"need epochs >= 1, batch_size >= 1, lr > 0 and weight_decay >= 0, not "
                          f"{epochs}, {batch_size}, {lr}, {weight_decay}")
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    history = []
    module.train()
    for _ in range(epochs):
        total, batches = 0.0, 0
        for idx in torch.randperm(n, generator=generator).split(batch_size):
            loss = F.nll_loss(module.log_proba(x[idx]), y[idx])
            if weight_decay > 0:
                loss = loss + 0.5 * weight_decay * sum(w.square().sum() for w in module.weights())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
        history.append(total / batches)
    module.eval()
    return history


# -- facades ---------------------------------------------------------------------------------


class Classifier:
    """The scikit-learn style facade every classifier shares.

    Subclasses implement ``_fit(X, codes)`` (``X`` checked float64 ``[n, dim]``, ``codes``
    ``[n]`` in ``range(C)``) and ``_log_proba(X) -> [n, C]``. Fitted state ends in ``_``:
    ``classes_`` (sorted labels; column order of :meth:`predict_proba`), ``n_features_in_``.
    """

    counts = False  # whether X must hold non-negative values (counts)

    def fit(self, X: np.ndarray, y: Sequence | np.ndarray) -> Classifier:
        """Fit on ``X: [n, dim]`` with labels ``y: [n]`` (any sortable labels, e.g. strings)."""
        X = self._as_matrix(X, "training data", dim=None)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(X):
            raise DataError(f"training labels: expected {len(X)} labels (one per example), "
                            f"got shape {list(y.shape)}")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise DataError(f"training labels: {describe_rows(~np.isfinite(y))} are NaN or inf")
        try:
            classes, codes = np.unique(y, return_inverse=True)
        except TypeError:
            raise DataError("training labels: cannot be sorted (mixed types?)") from None
        if len(classes) < 2:
            raise DataError(f"training labels: need at least two classes, found only {classes.tolist()}")
        self.classes_, self.n_features_in_ = classes, X.shape[1]
        try:
            self._fit(X, codes)
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
    def _fit(self, X: np.ndarray, codes: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _log_proba(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if getattr(self, "classes_", None) is None:
            raise ConfigError(f"this {type(self).__name__} is not fitted yet: call fit(X, y)")

    def _as_matrix(self, X: Any, where: str, dim: int | None) -> np.ndarray:
        """``X`` as checked float64 ``[n, dim]`` (one example may be given as a vector)."""
        try:
            X = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"{where}: expected numbers") from None
        if X.ndim == 1:
            X = X[None, :]
        check_matrix(X, where, dim)
        if self.counts:
            negative = (X < 0).any(axis=1)
            if negative.any():
                raise DataError(f"{where}: {type(self).__name__} needs non-negative counts, but "
                                f"{describe_rows(negative)} have negative values")
        return X


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


class DiscriminativeClassifier(Classifier):
    """p(y | x) = softmax(f(phi(x))) trained by maximum conditional likelihood
    (:func:`fit_conditional`); see :class:`DiscriminativeModule` for ``hidden``,
    ``activation`` and ``transform``.

    ``transform``: ``"log1p"`` (default; log(1 + count), for word counts), ``"tf"``
    (count / document length) or ``"identity"``. The count transforms refuse negative values.
    ``weight_decay``: the L2 penalty (lambda / 2) ||W||^2 on the weight matrices.
    Training: Adam, ``epochs`` passes over shuffled minibatches of ``batch_size``, ``lr``;
    ``seed`` fixes the initialization and the batch order. ``dtype``: "float32" or "float64".
    A row of zeros is an ordinary input (its probabilities come from the biases: finite).

    Fitted: ``module_`` (:class:`DiscriminativeModule`), ``history_`` (objective per epoch).
    """

    dtypes = {"float32": torch.float32, "float64": torch.float64}

    def __init__(self, hidden: Sequence[int] = (), activation: str = "relu",
                 transform: str = "log1p", weight_decay: float = 1e-4, epochs: int = 10,
                 batch_size: int = 64, lr: float = 1e-2, seed: int = 0,
                 dtype: str = "float32") -> None:
        self.hidden = tuple(hidden)
        self.activation = activation
        self.transform = transform
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed
        self.dtype = dtype

    @property
    def counts(self) -> bool:  # type: ignore[override]
        return self.transform in COUNT_TRANSFORMS

    def _fit(self, X: np.ndarray, codes: np.ndarray) -> None:
        if self.dtype not in self.dtypes:
            raise ConfigError(f"dtype must be one of {', '.join(self.dtypes)}, not {self.dtype!r}")
        dtype = self.dtypes[self.dtype]
        with seeded(self.seed):
            module = DiscriminativeModule(X.shape[1], len(self.classes_), self.hidden,
                                          self.activation, self.transform).to(dtype)
        self.history_ = fit_conditional(
            module, torch.as_tensor(X, dtype=dtype), torch.as_tensor(codes, dtype=torch.long),
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
            weight_decay=self.weight_decay, seed=self.seed)
        self.module_ = module

    @torch.no_grad()
    def _log_proba(self, X: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(X, dtype=self.dtypes[self.dtype])
        return self.module_.log_proba(x).double().log_softmax(-1).numpy()


class LogisticRegression(DiscriminativeClassifier):
    """Multinomial logistic regression: log p(y | x) = log_softmax(W phi(x) + b) (binary:
    the usual sigmoid model, over-parameterized by one redundant row that the L2 penalty
    pins down). Options as :class:`DiscriminativeClassifier`, without hidden layers."""

    def __init__(self, transform: str = "log1p", weight_decay: float = 1e-4, epochs: int = 10,
                 batch_size: int = 64, lr: float = 1e-2, seed: int = 0, dtype: str = "float32") -> None:
        super().__init__((), "relu", transform, weight_decay, epochs, batch_size, lr, seed, dtype)


class MLPClassifier(DiscriminativeClassifier):
    """log p(y | x) = log_softmax(MLP(phi(x))) with ``hidden`` widths (default one layer of
    64). Options as :class:`DiscriminativeClassifier`."""

    def __init__(self, hidden: Sequence[int] = (64,), activation: str = "relu",
                 transform: str = "log1p", weight_decay: float = 1e-4, epochs: int = 10,
                 batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                 dtype: str = "float32") -> None:
        super().__init__(hidden, activation, transform, weight_decay, epochs, batch_size, lr, seed,
                         dtype)
