"""Classify and compare as a library function: generative vs discriminative classifiers on
labelled data, scored on held-out examples, optionally saved as a run ``elbokit predict`` reads.

    >>> from elbokit import workflows
    >>> result = workflows.classify("sms-spam", "discriminative", seed=0)
    >>> result.rows                                   # the table `elbokit classify` prints
    >>> result.scores["mlp"]["f1"], result.models["mlp"].predict(x)
    >>> workflows.classify("digits", "generative", out="runs/digits")   # a saved run

Text (the bundled SMS Spam Collection, a ``label<TAB>text`` file, a CSV with ``label`` and
``text`` columns, or a folder of e-mails with one sub-folder per label) becomes bag-of-words
counts with a vocabulary fitted on the training messages only; labelled numeric data
(``digits``, an ``.npz`` with ``x`` and ``y``) is used as it is.

``out`` saves a run, built in a temporary sibling and moved into place only when complete
(a failure leaves nothing, or the old run, behind)::

    DIR/config.json            kind "classifier": data, split, features, methods, threshold,
                               positive class, the metrics per method
       featurizer.json         text runs: the vocabulary and tokenizer (BagOfWords.load)
       methods/<method>/       one saved classifier each (Classifier.load; the one-class
                               detector: NoveltyDetector.load)
       metrics.json            the scores per method (and per threshold, for two classes)
       pr_curve.png, calibration.png    two classes: precision-recall and reliability diagrams

``elbokit classify`` is a thin face over :func:`classify`: it parses options, calls it and
prints what it returns.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import data as datasets
from . import plots, runs
from .api import VAE, Mixture
from .checkpoint import atomic_directory, write_json
from .classifiers import (
    GenerativeClassifier,
    LogisticRegression,
    MLPClassifier,
    MultinomialNaiveBayes,
)
from .data.email import read_email_folder
from .data.text import BagOfWords, TextDataset, load_sms_spam, read_labelled_text
from .errors import ConfigError, DataError
from .metrics import ZERO_DIVISION, binary_report, multiclass_report
from .novelty import NoveltyDetector
from .progress import progress_bar
from .semisupervised import SemiSupervisedClassifier

METHODS = {
    "generative": ("naive-bayes", "{model}-per-class"),
    "discriminative": ("logistic-regression", "mlp"),
    "semi-supervised": ("m2",),
    "one-class": ("one-class",),
}
ONE_CLASS = "one-class"  # scores -log p(x), not probabilities: its own row, not in the figures


@dataclass
class Classification:
    """What :func:`classify` found, per method in the table's order (``methods``), for the
    ``classes`` of the training labels (sorted; of two, the last is the positive one).

    ``rows``: the table (two classes: method, threshold ("val" for one-class), accuracy,
    precision, recall, F1, ROC AUC, PR AUC per row; more classes: method, accuracy, macro
    F1); ``scores``: per method, the scores at the chosen threshold (what ``--json``
    writes); ``details``: per method, what metrics.json holds (two classes: also per
    threshold; more classes: the full report with its confusion matrix); ``models``: the
    fitted classifiers; ``probabilities``: two classes, p(positive|x) of the test examples
    per method (not one-class), with their labels ``y_test``; ``seconds``: per method, the
    time to fit and score it;
    ``undefined``: one sentence per score not defined on the test examples (empty when all
    are); ``path``, ``config``, ``figures``: the saved run, when ``out`` was given."""

    methods: list[str]
    binary: bool
    classes: np.ndarray
    rows: list[list]
    scores: dict[str, dict]
    details: dict[str, dict]
    models: dict[str, object] = field(repr=False)
    seconds: dict[str, float]
    n_train: int
    n_labelled: int
    n_test: int
    threshold: float
    thresholds: list[float]
    undefined: list[str]
    y_test: np.ndarray = field(repr=False)
    probabilities: dict[str, np.ndarray] = field(repr=False)
    featurizer: BagOfWords | None = field(default=None, repr=False)
    path: Path | None = None
    config: dict | None = field(default=None, repr=False)
    figures: list[str] = field(default_factory=list)

    @property
    def positive(self) -> object | None:
        """The positive class (the larger label) of two classes; None for more."""
        return self.classes[-1] if self.binary else None

    def training_note(self) -> str:
        """``"N training examples"`` (``", M of them labelled"`` with ``labels``)."""
        if self.n_labelled == self.n_train:
            return f"{self.n_train} training examples"
        return f"{self.n_train} training examples, {self.n_labelled} of them labelled"


def classify(data: str, method: str | Sequence[str] = "all", *, test: str | None = None,
             model: str = "mixture", labels: int | None = None, epochs: int = 30,
             threshold: float = 0.5, vocabulary: int = 2000, components: int = 2,
             test_fraction: float = 0.2, seed: int = 0, out: str | Path | None = None,
             overwrite: bool = False) -> Classification:
    """Fit the classifiers of ``method`` (a key of :data:`METHODS` or "all", or several keys)
    on ``data`` (a named data set or a file, as ``elbokit classify --data``) and score them
    on ``test`` (a labelled file of the same kind) or on a held-out ``test_fraction`` of the
    examples (seeded by ``seed``, which also seeds the ``labels`` subset and the models).

    ``model``: the per-class density of the generative method ("mixture", with
    ``components``, or "vae"); ``labels``: keep only that many training labels (stratified;
    M2 also learns from the rest, unlabelled); ``epochs``: M2's; ``threshold``: p(positive|x)
    above which to decide positive (the table also shows 0.5 and 0.9); ``vocabulary``: text,
    the most frequent words kept; ``out``: save the run there (``overwrite``: replace an
    existing run). Options and ``out`` are checked before any work."""
    groups = {method} if isinstance(method, str) else set(method)
    unknown = sorted(groups - {*METHODS, "all"})
    if unknown:
        raise ConfigError(f"method {', '.join(unknown)}: unknown; choose from "
                          f"{', '.join([*METHODS, 'all'])}")
    if model not in ("mixture", "vae"):
        raise ConfigError(f"model {model!r}: unknown; choose mixture or vae")
    out = Path(out) if out is not None else None
    if out is not None:
        check_out(out, overwrite)
    elif overwrite:
        raise ConfigError("--overwrite needs --out")
    dataset = read_dataset(data)
    if test is not None:
        train, held_out = dataset, read_dataset(test)
        if type(train) is not type(held_out):
            raise DataError(f"{test}: not the same kind of data as {data}")
    else:
        parts = datasets.split_indices(len(_labels(dataset)), seed, test_fraction, 0.0)
        if len(parts["test"]) == 0:
            raise DataError(f"{data}: --test-fraction {test_fraction:g} of "
                            f"{len(_labels(dataset))} examples leaves no test examples")
        train, held_out = _subset(dataset, parts["train"]), _subset(dataset, parts["test"])
    y_train, y_test = _labels(train), _labels(held_out)
    if len(set(y_train.tolist())) < 2:
        raise DataError(f"{data}: the training examples hold one class only "
                        f"({plain_label(y_train[0]) if len(y_train) else 'none'}); a "
                        "classifier needs at least two classes")
    unseen = sorted(set(y_test.tolist()) - set(y_train.tolist()))
    if unseen:
        raise DataError(f"{test or data}: test labels {unseen} never occur in the "
                        f"training data (training labels: {sorted(set(y_train.tolist()))})")
    featurizer, x_train, x_test, likelihood = _features(train, held_out, vocabulary)
    binary = len(set(y_train.tolist())) == 2
    methods = [m.format(model=model) for group, names in METHODS.items()
               if groups & {group, "all"} for m in names
               if m != ONE_CLASS or binary]
    if not methods:
        raise ConfigError("--method one-class needs two classes (normal and novel)")
    labelled = (np.arange(len(y_train)) if labels is None
                else datasets.labelled_subset(y_train, labels, seed))
    thresholds = sorted({0.5, 0.9, threshold})
    classes = np.unique(y_train)
    negative = classes[0]
    options = {"model": model, "components": components, "epochs": epochs, "seed": seed,
               "text": featurizer is not None}
    results, rows, models, scores, details, seconds = {}, [], {}, {}, {}, {}
    scored: list[tuple[str, float | None, dict]] = []  # (method, threshold, binary report) per row
    with progress_bar(methods, desc="classify", unit="method") as bar:
        for name in bar:
            bar.set_postfix_str(name)  # each method's own training draws its bar below this one
            start = time.perf_counter()
            fitted = _fit(name, _model(name, likelihood, **options), x_train, y_train,
                          labelled, negative)
            models[name] = fitted
            if name == ONE_CLASS:
                report = binary_report(y_test, fitted.novelty_score(x_test),
                                       threshold=fitted.threshold_, positive=classes[-1],
                                       scores=True)
                rows.append([name, "val", report["accuracy"], report["precision"],
                             report["recall"], report["f1"], report["roc_auc"], report["pr_auc"]])
                scored.append((name, None, report))
                results[name] = report | {"positive": str(classes[-1]),
                                          "score": "-log p(x)", "threshold_rule": fitted.rule_}
                details[name] = {"at_threshold": results[name]}
            elif binary:
                proba = fitted.predict_proba(x_test)
                positive = fitted.classes_[-1]
                scores[name] = proba[:, -1]
                by_threshold = {}
                for t in thresholds:
                    report = by_threshold[f"{t:g}"] = binary_report(
                        y_test, proba[:, -1], threshold=t, positive=positive)
                    rows.append([name, t, report["accuracy"], report["precision"],
                                 report["recall"], report["f1"], report["roc_auc"],
                                 report["pr_auc"]])
                    scored.append((name, t, report))
                results[name] = binary_report(y_test, proba[:, -1], threshold=threshold,
                                              positive=positive) | {"positive": str(positive)}
                details[name] = {"at_threshold": results[name], "by_threshold": by_threshold}
            else:
                proba = fitted.predict_proba(x_test)
                report = multiclass_report(y_test, fitted.classes_[proba.argmax(1)],
                                           labels=fitted.classes_)
                rows.append([name, report["accuracy"], report["macro_f1"]])
                results[name] = {k: report[k] for k in ("accuracy", "balanced_accuracy",
                                                        "macro_f1")}
                details[name] = report
            seconds[name] = time.perf_counter() - start
    summary = {m: {k: v for k, v in r.items() if k != "confusion"} for m, r in results.items()}
    plain = [plain_label(c) for c in classes]
    result = Classification(
        methods=methods, binary=binary, classes=classes, rows=rows, scores=summary,
        details=details, models=models, seconds=seconds, n_train=len(y_train),
        n_labelled=len(labelled), n_test=len(y_test), threshold=threshold,
        thresholds=thresholds,
        undefined=undefined_scores(y_test, classes[-1], scored) if binary else [],
        y_test=y_test, probabilities=scores, featurizer=featurizer)
    if out is not None:
        config = {
            "kind": "classifier",
            "data": {"source": _source(data), "test": _source(test) if test else None,
                     "type": "text" if featurizer is not None else "numeric",
                     "n_train": len(y_train), "n_test": len(y_test)},
            "split": None if test else {"seed": seed, "test_fraction": test_fraction},
            "features": ({"type": "bag-of-words", "file": "featurizer.json",
                          "vocabulary_size": len(featurizer.vocabulary),
                          "max_features": vocabulary} if featurizer is not None else
                         {"type": "numeric", "dim": int(x_train.shape[1]),
                          "image_shape": _image_shape(dataset)}),
            # A list: JSON objects are written with sorted keys, and the order is the table's.
            "methods": [{"name": m, "path": f"methods/{m}", "kind": models[m].kind}
                        for m in methods],
            "components": components, "model": model, "labels": labels, "seed": seed,
            "classes": plain, "positive": plain[-1] if binary else None,
            "threshold": threshold, "thresholds": thresholds, "metrics": summary,
        }
        result.figures = _save_run(out, config, featurizer, models, details,
                                   (y_test, scores, plain[-1]) if binary else None)
        result.path, result.config = out, config | {"figures": result.figures}
    return result


def read_dataset(spec: str) -> TextDataset | datasets.Dataset:
    """The labelled data ``spec`` names: sms-spam, a folder of e-mails (one sub-folder per
    label), a .tsv/.txt/.csv of labelled texts, or a named data set or .npz with labels."""
    if spec == "sms-spam":
        return load_sms_spam()
    path = Path(spec)
    if path.is_dir():
        return read_email_folder(path)
    if path.suffix.lower() in (".tsv", ".txt", ".csv"):
        return read_labelled_text(path)
    dataset = datasets.load(spec)
    if dataset.y is None:
        raise DataError(f"{dataset.source}: no labels (an .npz needs an array 'y')")
    return dataset


def _features(train, test, vocabulary: int
              ) -> tuple[BagOfWords | None, np.ndarray, np.ndarray, str]:
    """``(featurizer or None, x_train, x_test, the likelihood for per-class densities)``."""
    if isinstance(train, TextDataset):
        bag = BagOfWords(vocabulary).fit(train.texts)
        return bag, bag.transform(train.texts), bag.transform(test.texts), "multinomial"
    return None, train.x, test.x, "auto"


def _subset(dataset, index: np.ndarray):
    if isinstance(dataset, TextDataset):
        return TextDataset([dataset.texts[i] for i in index], dataset.labels[index], dataset.source)
    return datasets.Dataset(x=dataset.x[index], y=dataset.y[index], source=dataset.source)


def _labels(dataset) -> np.ndarray:
    return dataset.labels if isinstance(dataset, TextDataset) else dataset.y


def _density(name: str, likelihood: str, components: int, seed: int):
    """The per-class (and one-class) density: a mixture with naive Bayes's Laplace smoothing,
    or a VAE (log p(x) by importance sampling, see ``_model``)."""
    if name == "vae":
        return VAE(likelihood=likelihood, latent_dim=8, hidden=(128,), epochs=50, batch_size=64,
                   patience=5, seed=seed)
    return Mixture(n_components=components, likelihood=likelihood, max_iter=300, tol=1e-3,
                   seed=seed, smoothing=1.0)


def _model(method: str, likelihood: str, *, model: str, components: int, epochs: int,
           seed: int, text: bool):
    density = _density(model, likelihood, components, seed)
    return {
        "naive-bayes": lambda: MultinomialNaiveBayes(alpha=1.0),
        "mixture-per-class": lambda: GenerativeClassifier(density),
        "vae-per-class": lambda: GenerativeClassifier(density, score_options={"k": 100}),
        "logistic-regression": lambda: LogisticRegression(seed=seed),
        "mlp": lambda: MLPClassifier(hidden=(64,), seed=seed),
        "m2": lambda: SemiSupervisedClassifier(
            likelihood=likelihood, transform="log1p" if text else "identity", epochs=epochs,
            seed=seed),
        ONE_CLASS: lambda: NoveltyDetector(density, seed=seed),
    }[method]()


def _fit(method: str, model, x: np.ndarray, y: np.ndarray, labelled: np.ndarray, negative):
    """Fit ``model`` on what its method may see: M2 every training example (the unlabelled
    marked -1), one-class the labelled negatives (threshold on a held-out 20% of the labelled
    examples, F1-optimal), the rest the labelled examples."""
    if method == "m2":
        partial = np.full(len(y), -1, dtype=object)
        partial[labelled] = y[labelled]
        return model.fit(x, partial)
    x, y = x[labelled], y[labelled]
    if method == ONE_CLASS:
        parts = datasets.split_indices(len(y), model.seed, 0.0, 0.2)
        train, val = parts["train"], parts["val"]
        normal = train[y[train] == negative]
        if len(normal) == 0 or len(val) == 0:
            raise DataError("one-class: too few labelled examples of the negative class")
        return model.fit(x[normal], x[val], y[val] != negative)
    return model.fit(x, y)


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` that cannot take the run, before any work: an existing non-empty
    directory is replaced only with ``--overwrite`` and only when it is an elbokit run (the
    rules of :func:`elbokit.runs.create_run_dir`, which deletes at once; here the old run
    stays until the new one is complete)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(f"--out {out}: already exists; use --overwrite to replace it, "
                              "or another --out")
        if not (out / "config.json").exists():
            raise ConfigError(f"--out {out}: not an elbokit run directory; refusing to overwrite it")


def plain_label(value: object) -> object:
    """A (numpy) label as a JSON-able Python value."""
    return value.item() if isinstance(value, np.generic) else value


def undefined_scores(y_test: np.ndarray, positive: object,
                     scored: list[tuple[str, float | None, dict]]) -> list[str]:
    """What is not defined on the test examples ``y_test: [n]``, one sentence each: ROC AUC
    and PR AUC when they hold one class only (reported as n/a, JSON null), and the 0/0
    precision (nothing predicted ``positive``) or recall (no ``positive`` example) reported as
    ``ZERO_DIVISION``. ``scored``: (method, threshold or None for its own, report) per row."""
    lines, n = [], len(y_test)
    classes = np.unique(y_test)
    if len(classes) < 2:
        lines.append(f"the {n} test example{'s hold' if n != 1 else ' holds'} one class only "
                     f"({plain_label(classes[0])}): ROC AUC and PR AUC are not defined (n/a); "
                     "score on more test examples (--test-fraction, or --test FILE)")
    if not (y_test == positive).any():
        lines.append(f"no {positive} among the test examples: recall (and F1 where nothing was "
                     f"predicted {positive} either) is 0/0, reported as {ZERO_DIVISION:g} (none "
                     "was missed)")
    unflagged = [method if t is None else f"{method} at {t:g}"
                 for method, t, report in scored if report["n_predicted_positive"] == 0]
    if unflagged:
        lines.append(f"nothing predicted {positive} by {', '.join(unflagged)}: precision is 0/0, "
                     f"reported as {ZERO_DIVISION:g} (sklearn's zero_division: no false alarm)")
    return lines


def _source(spec: str) -> str:
    return spec if spec in ("sms-spam", *datasets.NAMED) else str(Path(spec).resolve())


def _image_shape(dataset) -> list[int] | None:
    shape = getattr(dataset, "image_shape", None)
    return list(shape) if shape else None


def _save_run(out: Path, config: dict, featurizer: BagOfWords | None, models: dict,
              metrics: dict, curves: tuple | None) -> list[str]:
    """Write the run into a temporary sibling of ``out`` and move it into place as a whole;
    returns the figures drawn (none when the test examples hold one class only).
    ``curves``: ``(y_test [n], {method: p(positive|x) [n]}, positive)`` for the figures."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(out) as tmp:
        if featurizer is not None:
            featurizer.save(tmp / "featurizer.json")
        for method in config["methods"]:
            models[method["name"]].save(tmp / method["path"])
        write_json(tmp / "metrics.json", metrics)
        figures = []
        if curves is not None and curves[1] and len(set(curves[0].tolist())) == 2:
            plots.precision_recall_curve(*curves, path=tmp / "pr_curve.png")
            plots.calibration_plot(*curves, path=tmp / "calibration.png")
            figures = ["pr_curve.png", "calibration.png"]
        runs.write_config(tmp, config | {"figures": figures})
    return figures
