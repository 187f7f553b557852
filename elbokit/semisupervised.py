"""Semi-supervised learning with a latent class: the "M2" model of Kingma et al. (2014).

The generative story has a class y and a continuous style z::

    p(y) = Categorical(pi)      p(z) = N(0, I)      p(x | y, z) = observation model(decoder(y, z))

and the inference networks are a classifier and a class-conditional encoder::

    q(y | x) = softmax(f(phi(x)))          q(z | x, y) = N(mu(phi(x), y), diag sigma(phi(x), y)^2)

For a labelled example y is observed and the bound is the ELBO of p(x, y)::

    log p(x, y) >= L(x, y) = E_q(z|x,y)[log p(x | y, z)] + log p(y) - KL(q(z | x, y) || p(z))

For an unlabelled one y is a latent variable too, summed out exactly (enumerated over the
C classes, no sampling) under q(y | x)::

    log p(x) >= U(x) = sum_y q(y | x) L(x, y) + H(q(y | x))

The objective adds the classifier's log-likelihood on the labelled examples, weighted by
``alpha`` (otherwise q(y | x) would learn only from unlabelled data):

    maximize  mean_u U(x_u) + mean_l [L(x_l, y_l) + alpha log q(y_l | x_l)]

Unlabelled examples reach the classifier through U: the gradient of sum_y q(y|x) L(x, y)
pushes q(y | x) towards the classes whose generative model explains x best, which is how
messages nobody labelled teach it what spam looks like.

Everything here speaks the model protocol of :mod:`elbokit.models.base` through
:class:`ClassConditional` (the model with y fixed), so the ELBO is :func:`elbokit.bounds.elbo`
itself, and training is the generic :class:`elbokit.training.Trainer` with
:class:`SemiSupervisedObjective` as its objective.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import distributions as D
from torch import nn

from . import bounds, numerics
from .bounds import Terms
from .classifiers import (
    COUNT_TRANSFORMS,
    FEATURE_TRANSFORMS,
    DiscriminativeModule,
    TrainedClassifier,
    _class_prior,
    encode_labels,
)
from .errors import ConfigError, DataError
from .estimators import Estimator
from .likelihoods import ObservationModel, build_likelihood, likelihood_for_data
from .models.latents import LatentSpec
from .nets import mlp
from .rng import seeded
from .training import TrainConfig

__all__ = ["M2Config", "M2Module", "ClassConditional", "SemiSupervisedObjective",
           "SemiSupervisedClassifier"]


@dataclass
class M2Config:
    """Everything needed to rebuild an :class:`M2Module` (weights aside).

    ``hidden``: widths of the encoder's hidden layers (the decoder mirrors them);
    ``classifier_hidden``: of q(y | x)'s (``()``: logistic regression); ``transform``: what
    the networks see of x (:data:`elbokit.classifiers.FEATURE_TRANSFORMS`; ``log1p``
    for word counts).
    """

    dim: int
    n_classes: int
    latent_dim: int = 4
    hidden: tuple[int, ...] = (128,)
    classifier_hidden: tuple[int, ...] = ()
    activation: str = "relu"
    transform: str = "log1p"
    likelihood: dict = field(default_factory=lambda: {"name": "multinomial"})

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        self.classifier_hidden = tuple(int(h) for h in self.classifier_hidden)
        if self.dim < 1 or self.n_classes < 2 or self.latent_dim < 1:
            raise ConfigError(f"need dim >= 1, n_classes >= 2 and latent_dim >= 1, not "
                              f"{self.dim}, {self.n_classes}, {self.latent_dim}")
        if any(h < 1 for h in (*self.hidden, *self.classifier_hidden)):
            raise ConfigError(f"hidden widths must be >= 1, not {list(self.hidden)} / "
                              f"{list(self.classifier_hidden)}")

    def to_dict(self) -> dict:
        return asdict(self) | {"hidden": list(self.hidden),
                               "classifier_hidden": list(self.classifier_hidden)}


class M2Module(nn.Module):
    """The M2 model: ``x: [batch, dim]``, ``y``: one-hot ``[batch, C]`` or codes ``[batch]``.

    Buffer ``class_log_prior`` [C] is log p(y) (uniform until :meth:`set_class_prior`).
    """

    def __init__(self, config: M2Config, observation: ObservationModel | None = None) -> None:
        super().__init__()
        self.config = config
        c = config.n_classes
        self.observation = observation or build_likelihood(config.likelihood, config.dim)
        config.likelihood = self.observation.config()
        self.latent = LatentSpec("gaussian", config.latent_dim).build()
        # q(y | x) is the discriminative module itself: one classifier, not a copy of one.
        self.classifier = DiscriminativeModule(config.dim, c, config.classifier_hidden,
                                               config.activation, config.transform)
        self.encoder = mlp(config.dim + c, config.hidden, 2 * config.latent_dim, config.activation)
        self.decoder = mlp(config.latent_dim + c, config.hidden[::-1], self.observation.n_params,
                           config.activation)
        self.register_buffer("class_log_prior", torch.full((c,), -torch.log(torch.tensor(float(c)))))

    def set_class_prior(self, prior: torch.Tensor) -> None:
        """p(y) := ``prior`` [C] (normalized here)."""
        self.class_log_prior.copy_((prior / prior.sum()).log())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi(x), what the encoder and classifier see: ``[..., dim] -> [..., dim]``."""
        return FEATURE_TRANSFORMS[self.config.transform](x)

    def log_proba(self, x: torch.Tensor) -> torch.Tensor:
        """log q(y | x): ``[B, dim] -> [B, C]`` (the classifier; see ``ClassifierModule``)."""
        return self.classifier.log_proba(x)

    def given(self, y: torch.Tensor) -> ClassConditional:
        """The model of (x, z) with the class fixed per example: ``y: [B]`` codes."""
        return ClassConditional(self, F.one_hot(y, self.config.n_classes).to(self.class_log_prior.dtype))

    def labelled_terms(self, x: torch.Tensor, y: torch.Tensor, n_samples: int = 1) -> Terms:
        """L(x, y), the ELBO of log p(x, y) per example: ``x: [B, dim]``, ``y: [B]`` -> [B].
        ``kl`` is KL(q(z|x,y) || p(z)) - log p(y) (the class's "rate" joins the KL)."""
        terms = bounds.elbo(self.given(y), x, n_samples=n_samples)
        kl = terms.kl - self.class_log_prior[y]
        elbo = terms.reconstruction - kl
        return Terms(elbo=elbo, reconstruction=terms.reconstruction, kl=kl, surrogate=elbo)

    def unlabelled_terms(self, x: torch.Tensor, n_samples: int = 1) -> Terms:
        """U(x) per example, y summed out under q(y | x): ``[B, dim] -> [B]``.

        U = E_q(y|x)[E_q(z|x,y) log p(x|y,z)] - KL(q(y, z | x) || p(y) p(z)), a lower bound
        on log p(x); all C classes go through the networks as one batch of C * B rows.
        """
        batch, c = x.shape[0], self.config.n_classes
        y = torch.arange(c, device=x.device).repeat_interleave(batch)  # [C * B], class-major
        per_class = self.labelled_terms(x.repeat(c, 1), y, n_samples)
        log_q = self.log_proba(x)  # [B, C]
        q = numerics.exp(log_q)
        reconstruction = (q * per_class.reconstruction.view(c, batch).T).sum(-1)
        # KL(q(y,z|x) || p(y)p(z)) = sum_y q(y) [KL_z(y) - log p(y) + log q(y)]
        kl = (q * (per_class.kl.view(c, batch).T + log_q)).sum(-1)
        elbo = reconstruction - kl
        return Terms(elbo=elbo, reconstruction=reconstruction, kl=kl, surrogate=elbo)

    @torch.no_grad()
    def log_joint(self, x: torch.Tensor, k: int = 100) -> torch.Tensor:
        """Importance-sampled estimates of log p(x, y) for every class: ``[B, dim] -> [B, C]``
        (``k`` draws of z ~ q(z | x, y) each); Bayes' rule on them is the generative
        classifier hidden in M2, beside the trained q(y | x)."""
        batch, c = x.shape[0], self.config.n_classes
        y = torch.arange(c, device=x.device).repeat_interleave(batch)
        weights = bounds.sample_log_weights(self.given(y), x.repeat(c, 1), k)
        log_px_given_y = bounds.log_mean_exp(weights.log_w)
        return log_px_given_y.view(c, batch).T + self.class_log_prior


class ClassConditional:
    """M2 with y fixed per example, as a latent-variable model of (x, z):

        prior() = p(z),   posterior(x) = q(z | x, y),   likelihood(z) = p(x | y, z)

    ``y: [B, C]`` one-hot rows aligned with the batch given to :meth:`posterior`.
    """

    def __init__(self, module: M2Module, y: torch.Tensor) -> None:
        self.module, self.y = module, y

    def prior(self) -> D.Distribution:
        return self.module.latent.prior()

    def posterior(self, x: torch.Tensor) -> D.Distribution:
        m = self.module
        return m.latent.posterior(m.encoder(torch.cat([m.features(x), self.y], -1)))

    def likelihood(self, z: torch.Tensor) -> D.Distribution:
        """``z: [..., B, latent]`` -> p(x | y, z) with batch shape ``[..., B]``."""
        return self.module.observation(self._decoded(z))

    def likelihood_log_prob(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x | y, z) through the observation model's direct formula (no distribution
        object per step): ``z: [..., B, latent]``, ``x: [B, dim]`` -> ``[..., B]``."""
        return self.module.observation.log_prob(self._decoded(z), x)

    def _decoded(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's output for ``z: [..., B, latent]`` and this batch's classes."""
        y = self.y.expand(*z.shape[:-1], self.y.shape[-1])
        return self.module.decoder(torch.cat([z, y], -1))


class SemiSupervisedObjective(Estimator):
    """The M2 objective as a :class:`~elbokit.training.Trainer` objective.

    The trainer walks over the unlabelled data (``x`` of each call: all training examples,
    labelled ones included, as unlabelled); every call also draws ``labelled_batch``
    labelled examples (with replacement, from torch's RNG, which checkpoints carry) so each
    step sees labels however few there are. Per example of the batch::

        elbo, reconstruction, kl:  U(x) and its two terms (a true bound on log p(x))
        surrogate:                 U(x) + mean_l [L(x_l, y_l) + alpha log q(y_l | x_l)]

    Validation data reach the trainer without labels: their score is U(x)
    (:meth:`validation_terms`).
    """

    def __init__(self, x_labelled: torch.Tensor, y_labelled: torch.Tensor, alpha: float,
                 labelled_batch: int = 16, n_samples: int = 1) -> None:
        super().__init__(n_samples)
        if len(x_labelled) == 0 or len(x_labelled) != len(y_labelled):
            raise ConfigError("the semi-supervised objective needs labelled examples")
        if not alpha >= 0 or labelled_batch < 1:
            raise ConfigError(f"need alpha >= 0 and labelled_batch >= 1, not {alpha}, {labelled_batch}")
        # Plain attributes, not buffers: the data is not state to checkpoint.
        self.x_labelled, self.y_labelled = x_labelled, y_labelled
        self.alpha, self.labelled_batch = alpha, labelled_batch

    def forward(self, model: M2Module, x: torch.Tensor) -> Terms:
        unlabelled = model.unlabelled_terms(x, self.n_samples)
        pick = torch.randint(len(self.x_labelled), (self.labelled_batch,), device=x.device)
        x_l, y_l = self.x_labelled[pick], self.y_labelled[pick]
        labelled = model.labelled_terms(x_l, y_l, self.n_samples).elbo
        log_q = model.log_proba(x_l).gather(-1, y_l[:, None])[:, 0]
        supervised = (labelled + self.alpha * log_q).mean()
        return Terms(elbo=unlabelled.elbo, reconstruction=unlabelled.reconstruction,
                     kl=unlabelled.kl, surrogate=unlabelled.surrogate + supervised)

    @torch.no_grad()
    def validation_terms(self, model: M2Module, x: torch.Tensor) -> Terms:
        """U(x) and its terms, each ``[batch]``, for ``x: [batch, dim]``; the score
        (``surrogate``) is U(x), the bound on log p(x) (the generic ELBO does not apply: M2
        has no posterior over z alone)."""
        return model.unlabelled_terms(x, self.n_samples)


class SemiSupervisedClassifier(TrainedClassifier):
    """M2 (Kingma et al. 2014) as a scikit-learn style classifier that learns from labelled
    *and* unlabelled examples: ``fit(X, y)`` with ``y[i] = unlabelled`` (default -1; None and
    NaN count too) for the examples nobody labelled.

    Predictions are q(y | x), the classifier trained jointly with the generative model
    (:class:`M2Module`). Options: ``latent_dim``, ``hidden``, ``classifier_hidden``,
    ``activation``, ``transform`` (:class:`M2Config`); ``likelihood``: "multinomial" (word
    counts; default) or any name :func:`elbokit.likelihoods.likelihood_for_data` knows;
    ``alpha``: weight of the labelled examples' log q(y | x); ``labelled_batch``: labelled
    examples drawn per step; ``class_prior``: p(y), default the labelled frequencies with
    one pseudo-count per class; training: ``epochs`` (no early stopping: scarce labels make
    no validation set, and the validation ELBO does not track accuracy), ``batch_size``,
    ``lr``, ``seed`` (initialization, batch order and labelled draws), ``dtype``.
    ``fit(X, y, run_dir=..., resume=...)``: checkpoints into ``run_dir`` and continues an
    interrupted fit exactly (:meth:`elbokit.classifiers.TrainedClassifier.fit`).

    Rows of zeros under the multinomial likelihood (messages with no known word) say
    nothing about p(x) and are left out of the unlabelled data; they still get a prediction
    (from the classifier's biases).

    Fitted: ``module_`` (:class:`M2Module`), ``history_`` (per-epoch training bound U(x),
    nats per example), ``n_labelled_``.
    """

    kind = "semi-supervised"

    def __init__(self, latent_dim: int = 4, hidden: Sequence[int] = (128,),
                 classifier_hidden: Sequence[int] = (), activation: str = "relu",
                 transform: str = "log1p", likelihood: str = "multinomial", alpha: float = 10.0,
                 labelled_batch: int = 16, class_prior: Sequence[float] | None = None,
                 epochs: int = 30, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                 dtype: str = "float32", unlabelled: object = -1) -> None:
        self.latent_dim = latent_dim
        self.hidden = tuple(hidden)
        self.classifier_hidden = tuple(classifier_hidden)
        self.activation = activation
        self.transform = transform
        self.likelihood = likelihood
        self.alpha = alpha
        self.labelled_batch = labelled_batch
        self.class_prior = class_prior
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed
        self.dtype = dtype
        self.unlabelled = unlabelled

    @property
    def counts(self) -> bool:  # type: ignore[override]
        return self.transform in COUNT_TRANSFORMS or self.likelihood == "multinomial"

    def _encode_labels(self, y, n: int) -> tuple[np.ndarray, np.ndarray]:
        return encode_labels(y, n, unlabelled=self.unlabelled)

    def _fit(self, X: np.ndarray, codes: np.ndarray, run_dir: Path | None = None,
             resume: bool = False) -> None:
        dtype, n_classes = self._torch_dtype(), len(self.classes_)
        labelled = codes >= 0
        # An empty document is the one document of length 0 under every class: no evidence.
        informative = X.sum(axis=1) > 0 if self.likelihood == "multinomial" else np.ones(len(X), bool)
        if not informative.any():
            raise DataError("training data: every example is empty (no counts)")
        observation = likelihood_for_data(self.likelihood, X[informative], "training data")
        config = M2Config(X.shape[1], n_classes, self.latent_dim, self.hidden,
                          self.classifier_hidden, self.activation, self.transform)
        with seeded(self.seed):
            module = M2Module(config, observation).to(dtype)
        prior = _class_prior(self.class_prior, n_classes)
        if prior is None:
            prior = torch.as_tensor(np.bincount(codes[labelled], minlength=n_classes) + 1.0)
        module.set_class_prior(prior.to(dtype))
        objective = SemiSupervisedObjective(
            torch.as_tensor(X[labelled], dtype=dtype), torch.as_tensor(codes[labelled]),
            alpha=self.alpha, labelled_batch=self.labelled_batch)
        train = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                            patience=None, seed=self.seed)
        history, _ = self._train(module, train, objective,
                                 torch.as_tensor(X[informative], dtype=dtype), None, run_dir, resume)
        self.module_ = module.eval()
        self.history_ = [record["train"]["elbo"] for record in history]
        self.n_labelled_ = int(labelled.sum())

    # -- persistence hooks (see elbokit.classifiers) --------------------------------
    def _save_parts(self, directory) -> dict:
        return {"config": self.module_.config.to_dict(), "n_labelled": self.n_labelled_,
                "history": [float(v) for v in self.history_]}

    def _restore(self, tensors: dict[str, torch.Tensor], state: dict, directory) -> None:
        with seeded(self.seed):  # building draws initial weights: leave the caller's RNG alone
            module = M2Module(M2Config(**state["config"])).to(self._torch_dtype())
        module.load_state_dict(tensors)  # strict: names and shapes must match
        self.module_ = module.eval()
        self.n_labelled_ = int(state["n_labelled"])
        self.history_ = [float(v) for v in state["history"]]
