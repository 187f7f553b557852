"""``elbokit classify``: generative vs discriminative classifiers on labelled data.

Text (the bundled SMS Spam Collection, a ``label<TAB>text`` file, a CSV with ``label`` and
``text`` columns, or a folder of e-mails with one sub-folder per label) becomes bag-of-words
counts with a vocabulary fitted on the training messages only; labelled numeric data
(``digits``, an ``.npz`` with ``x`` and ``y``) is used as it is.

``--out DIR`` saves a run that ``elbokit predict`` reads, built in a temporary sibling and
moved into place only when complete (a failure leaves nothing, or the old run, behind)::

    DIR/config.json            kind "classifier": data, split, features, methods, threshold,
                               positive class, the metrics per method
       featurizer.json         text runs: the vocabulary and tokenizer (BagOfWords.load)
       methods/<method>/       one saved classifier each (Classifier.load; the one-class
                               detector: NoveltyDetector.load)
       metrics.json            the scores per method (and per threshold, for two classes)
       pr_curve.png, calibration.png    two classes: precision-recall and reliability diagrams
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

from .. import data as datasets
from .. import plots, runs
from ..api import VAE, Mixture
from ..checkpoint import atomic_directory, write_json
from ..classifiers import (
    GenerativeClassifier,
    LogisticRegression,
    MLPClassifier,
    MultinomialNaiveBayes,
)
from ..data.email import read_email_folder
from ..data.text import BagOfWords, TextDataset, load_sms_spam, read_labelled_text
from ..errors import ConfigError, DataError
from ..metrics import ZERO_DIVISION, binary_report, multiclass_report
from ..novelty import NoveltyDetector
from ..progress import progress_bar
from ..semisupervised import SemiSupervisedClassifier
from .common import (
    add_json_option,
    check_output_file,
    format_table,
    fraction,
    human_output,
    naming,
    positive_int,
    seed,
    write_json_output,
)

METHODS = {
    "generative": ("naive-bayes", "{model}-per-class"),
    "discriminative": ("logistic-regression", "mlp"),
    "semi-supervised": ("m2",),
    "one-class": ("one-class",),
}
ONE_CLASS = "one-class"  # scores -log p(x), not probabilities: its own row, not in the figures


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help="generative vs discriminative classifiers (e.g. spam)",
                       description="Fit generative (p(x|y) p(y), Bayes' rule) and discriminative "
                       "(p(y|x)) classifiers and score them on held-out data.")
    p.add_argument("--data", default="sms-spam", metavar="NAME|PATH",
                   help="sms-spam (bundled), digits, a label<TAB>text .tsv/.txt, a .csv with label "
                   "and text columns, a folder of e-mails with one sub-folder per label, or an "
                   ".npz with x and y (default sms-spam)")
    p.add_argument("--test", default=None, metavar="PATH",
                   help="score this labelled file (same kind as --data) instead of a held-out split")
    p.add_argument("--method", default="all", choices=(*METHODS, "all"),
                   help="generative: naive Bayes and a latent-variable model per class (--model); "
                   "discriminative: logistic regression and an MLP; semi-supervised: M2 (labelled "
                   "plus unlabelled training examples); one-class: p(x) of the negative class "
                   "only, flagged below a log-likelihood threshold chosen on validation data "
                   "(two classes); all: every one (default all)")
    p.add_argument("--model", default="mixture", choices=("mixture", "vae"),
                   help="the class-conditional density of the generative method (mixture)")
    p.add_argument("--labels", type=positive_int, default=None, metavar="N",
                   help="keep only N training labels (stratified, --seed): supervised methods "
                   "learn from those, M2 also from the other training examples, unlabelled")
    p.add_argument("--epochs", type=positive_int, default=30, help="M2's training epochs (30)")
    p.add_argument("--threshold", type=fraction, default=0.5,
                   help="p(positive|x) above which to decide positive, in [0, 1) (0.5); the "
                   "table also shows 0.5 and 0.9")
    p.add_argument("--vocabulary", type=positive_int, default=2000,
                   help="text: keep the most frequent N training words (2000)")
    p.add_argument("--components", type=positive_int, default=2,
                   help="mixture-per-class: components per class (2)")
    p.add_argument("--test-fraction", type=fraction, default=0.2,
                   help="share of the examples held out for testing, without --test (default 0.2)")
    p.add_argument("--seed", type=seed, default=0,
                   help="seeds the test split, the --labels subset and the models' initial "
                   "weights (default 0)")
    add_json_option(p, "the scores per method")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="save a run directory: featurizer, classifiers (for elbokit predict), "
                   "config, metrics and, for two classes, pr_curve.png and calibration.png")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")


def _read(spec: str) -> TextDataset | datasets.Dataset:
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


def _model(method: str, likelihood: str, args: argparse.Namespace, text: bool):
    seed = args.seed
    density = _density(args.model, likelihood, args.components, seed)
    return {
        "naive-bayes": lambda: MultinomialNaiveBayes(alpha=1.0),
        "mixture-per-class": lambda: GenerativeClassifier(density),
        "vae-per-class": lambda: GenerativeClassifier(density, score_options={"k": 100}),
        "logistic-regression": lambda: LogisticRegression(seed=seed),
        "mlp": lambda: MLPClassifier(hidden=(64,), seed=seed),
        "m2": lambda: SemiSupervisedClassifier(
            likelihood=likelihood, transform="log1p" if text else "identity", epochs=args.epochs,
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


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except DataError as e:  # e.g. a class too small for its model: say which data
        raise naming(e, args.data, args.test) from None


def _run(args: argparse.Namespace) -> int:
    if args.out is not None:
        check_out(args.out, args.overwrite)
    elif args.overwrite:
        raise ConfigError("--overwrite needs --out")
    check_output_file(args.json, "--json")
    dataset = _read(args.data)
    if args.test is not None:
        train, test = dataset, _read(args.test)
        if type(train) is not type(test):
            raise DataError(f"{args.test}: not the same kind of data as {args.data}")
    else:
        parts = datasets.split_indices(len(_labels(dataset)), args.seed, args.test_fraction, 0.0)
        if len(parts["test"]) == 0:
            raise DataError(f"{args.data}: --test-fraction {args.test_fraction:g} of "
                            f"{len(_labels(dataset))} examples leaves no test examples")
        train, test = _subset(dataset, parts["train"]), _subset(dataset, parts["test"])
    y_train, y_test = _labels(train), _labels(test)
    if len(set(y_train.tolist())) < 2:
        raise DataError(f"{args.data}: the training examples hold one class only "
                        f"({plain_label(y_train[0]) if len(y_train) else 'none'}); a "
                        "classifier needs at least two classes")
    unseen = sorted(set(y_test.tolist()) - set(y_train.tolist()))
    if unseen:
        raise DataError(f"{args.test or args.data}: test labels {unseen} never occur in the "
                        f"training data (training labels: {sorted(set(y_train.tolist()))})")
    featurizer, x_train, x_test, likelihood = _features(train, test, args.vocabulary)
    binary = len(set(y_train.tolist())) == 2
    methods = [m.format(model=args.model) for group, names in METHODS.items()
               if args.method in (group, "all") for m in names
               if m != ONE_CLASS or binary]
    if not methods:
        raise ConfigError("--method one-class needs two classes (normal and novel)")
    labelled = (np.arange(len(y_train)) if args.labels is None
                else datasets.labelled_subset(y_train, args.labels, args.seed))
    thresholds = sorted({0.5, 0.9, args.threshold})
    negative = np.unique(y_train)[0]
    results, rows, models, scores, details = {}, [], {}, {}, {}
    scored: list[tuple[str, float | None, dict]] = []  # (method, threshold, binary report) per row
    with progress_bar(methods, desc="classify", unit="method") as bar:
        for method in bar:
            bar.set_postfix_str(method)  # each method's own training draws its bar below this one
            model = _fit(method, _model(method, likelihood, args, featurizer is not None),
                         x_train, y_train, labelled, negative)
            if method == ONE_CLASS:
                report = binary_report(y_test, model.novelty_score(x_test), threshold=model.threshold_,
                                       positive=np.unique(y_train)[-1], scores=True)
                rows.append([method, "val", report["accuracy"], report["precision"], report["recall"],
                             report["f1"], report["roc_auc"], report["pr_auc"]])
                scored.append((method, None, report))
                results[method] = report | {"positive": str(np.unique(y_train)[-1]),
                                            "score": "-log p(x)", "threshold_rule": model.rule_}
                details[method] = {"at_threshold": results[method]}
                models[method] = model
                continue
            models[method] = model
            proba = model.predict_proba(x_test)
            if binary:
                positive = model.classes_[-1]
                scores[method] = proba[:, -1]
                by_threshold = {}
                for t in thresholds:
                    report = by_threshold[f"{t:g}"] = binary_report(y_test, proba[:, -1], threshold=t,
                                                                    positive=positive)
                    rows.append([method, t, report["accuracy"], report["precision"],
                                 report["recall"], report["f1"], report["roc_auc"], report["pr_auc"]])
                    scored.append((method, t, report))
                results[method] = binary_report(y_test, proba[:, -1], threshold=args.threshold,
                                                positive=positive) | {"positive": str(positive)}
                details[method] = {"at_threshold": results[method], "by_threshold": by_threshold}
            else:
                report = multiclass_report(y_test, model.classes_[proba.argmax(1)],
                                           labels=model.classes_)
                rows.append([method, report["accuracy"], report["macro_f1"]])
                results[method] = {k: report[k] for k in ("accuracy", "balanced_accuracy", "macro_f1")}
                details[method] = report
    out = human_output(args.json)
    if binary:
        print(format_table(("method", "threshold", "accuracy", "precision", "recall", "F1",
                            "ROC AUC", "PR AUC"), rows), file=out)
        print(f"(positive class: {results[methods[0]]['positive']}; {len(y_test)} test examples, "
              f"{_training_note(y_train, labelled)})", file=out)
        if ONE_CLASS in methods:
            print(f"(one-class: flags -log p(x) > {results[ONE_CLASS]['threshold']:.2f} nats, the "
                  f"threshold chosen on validation ({results[ONE_CLASS]['threshold_rule']}))",
                  file=out)
        for line in undefined_scores(y_test, np.unique(y_train)[-1], scored):
            warnings.warn(line, stacklevel=2)  # one line, as every CLI warning (cli.main)
    else:
        print(format_table(("method", "accuracy", "macro F1"), rows), file=out)
        classes = np.unique(y_train)
        shown = ", ".join(str(c) for c in classes[:12]) + (", ..." if len(classes) > 12 else "")
        print(f"({len(classes)} classes: {shown}; {len(y_test)} test examples, "
              f"{_training_note(y_train, labelled)})", file=out)
    summary = {m: {k: v for k, v in r.items() if k != "confusion"} for m, r in results.items()}
    if args.json is not None:
        write_json_output(args.json, summary)
    saved = [m for m in methods if m in models]
    if args.out is not None:
        classes = [plain_label(c) for c in np.unique(y_train)]
        config = {
            "kind": "classifier",
            "data": {"source": _source(args.data), "test": _source(args.test) if args.test else None,
                     "type": "text" if featurizer is not None else "numeric",
                     "n_train": len(y_train), "n_test": len(y_test)},
            "split": None if args.test else {"seed": args.seed, "test_fraction": args.test_fraction},
            "features": ({"type": "bag-of-words", "file": "featurizer.json",
                          "vocabulary_size": len(featurizer.vocabulary),
                          "max_features": args.vocabulary} if featurizer is not None else
                         {"type": "numeric", "dim": int(x_train.shape[1]),
                          "image_shape": _image_shape(dataset)}),
            # A list: JSON objects are written with sorted keys, and the order is the table's.
            "methods": [{"name": m, "path": f"methods/{m}", "kind": models[m].kind}
                        for m in saved],
            "components": args.components, "model": args.model, "labels": args.labels,
            "seed": args.seed,
            "classes": classes, "positive": classes[-1] if binary else None,
            "threshold": args.threshold, "thresholds": thresholds, "metrics": summary,
        }
        figures = _save_run(args.out, config, featurizer, models, details,
                            (y_test, scores, classes[-1]) if binary else None)
        if binary and scores and not figures:
            print("(no figures: the test examples hold only one class)", file=out)
        print(f"run directory: {args.out}", file=out)
    return 0


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


def _training_note(y_train: np.ndarray, labelled: np.ndarray) -> str:
    if len(labelled) == len(y_train):
        return f"{len(y_train)} training examples"
    return f"{len(y_train)} training examples, {len(labelled)} of them labelled"


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
