"""``elbokit classify``: generative vs discriminative classifiers on labelled data.

Text (the bundled SMS Spam Collection, a ``label<TAB>text`` file, a CSV with ``label`` and
``text`` columns, or a folder of e-mails with one sub-folder per label) becomes bag-of-words
counts with a vocabulary fitted on the training messages only; labelled numeric data
(``digits``, an ``.npz`` with ``x`` and ``y``) is used as it is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .. import data as datasets
from ..api import Mixture
from ..data.email import read_email_folder
from ..data.text import BagOfWords, TextDataset, load_sms_spam, read_labelled_text
from ..errors import DataError
from ..metrics import binary_report, multiclass_report
from ..models.classifiers import (
    GenerativeClassifier,
    LogisticRegression,
    MLPClassifier,
    MultinomialNaiveBayes,
)
from .common import format_table, fraction, nonnegative_int, positive_int, write_json_output

METHODS = {
    "generative": ("naive-bayes", "mixture-per-class"),
    "discriminative": ("logistic-regression", "mlp"),
}


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
    p.add_argument("--method", default="all", choices=("generative", "discriminative", "all"))
    p.add_argument("--threshold", type=fraction, default=0.5,
                   help="p(positive|x) above which to decide positive, in [0, 1) (0.5); the "
                   "table also shows 0.5 and 0.9")
    p.add_argument("--vocabulary", type=positive_int, default=2000,
                   help="text: keep the most frequent N training words (2000)")
    p.add_argument("--components", type=positive_int, default=2,
                   help="mixture-per-class: components per class (2)")
    p.add_argument("--test-fraction", type=fraction, default=0.2)
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--json", default=None, metavar="FILE",
                   help="write the scores per method as JSON ('-' for stdout)")


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


def _features(train, test, vocabulary: int) -> tuple[np.ndarray, np.ndarray, str]:
    if isinstance(train, TextDataset):
        bag = BagOfWords(vocabulary).fit(train.texts)
        return bag.transform(train.texts), bag.transform(test.texts), "multinomial"
    return train.x, test.x, "auto"


def _subset(dataset, index: np.ndarray):
    if isinstance(dataset, TextDataset):
        return TextDataset([dataset.texts[i] for i in index], dataset.labels[index], dataset.source)
    return datasets.Dataset(x=dataset.x[index], y=dataset.y[index], source=dataset.source)


def _labels(dataset) -> np.ndarray:
    return dataset.labels if isinstance(dataset, TextDataset) else dataset.y


def _model(method: str, likelihood: str, components: int, seed: int):
    return {
        "naive-bayes": lambda: MultinomialNaiveBayes(alpha=1.0),
        "mixture-per-class": lambda: GenerativeClassifier(Mixture(
            n_components=components, likelihood=likelihood, max_iter=300, tol=1e-3, seed=seed)),
        "logistic-regression": lambda: LogisticRegression(seed=seed),
        "mlp": lambda: MLPClassifier(hidden=(64,), seed=seed),
    }[method]()


def run(args: argparse.Namespace) -> int:
    dataset = _read(args.data)
    if args.test is not None:
        train, test = dataset, _read(args.test)
        if type(train) is not type(test):
            raise DataError(f"{args.test}: not the same kind of data as {args.data}")
    else:
        parts = datasets.split_indices(len(_labels(dataset)), args.seed, args.test_fraction, 0.0)
        if len(parts["test"]) == 0:
            raise DataError("--test-fraction leaves no test examples")
        train, test = _subset(dataset, parts["train"]), _subset(dataset, parts["test"])
    y_train, y_test = _labels(train), _labels(test)
    unseen = sorted(set(y_test.tolist()) - set(y_train.tolist()))
    if unseen:
        raise DataError(f"test labels {unseen} never occur in the training data "
                        f"(training labels: {sorted(set(y_train.tolist()))})")
    x_train, x_test, likelihood = _features(train, test, args.vocabulary)
    methods = [m for group, names in METHODS.items() if args.method in (group, "all")
               for m in names]
    binary = len(set(y_train.tolist())) == 2
    thresholds = sorted({0.5, 0.9, args.threshold})
    results, rows = {}, []
    for method in methods:
        model = _model(method, likelihood, args.components, args.seed).fit(x_train, y_train)
        proba = model.predict_proba(x_test)
        if binary:
            positive = model.classes_[-1]
            for t in thresholds:
                report = binary_report(y_test, proba[:, -1], threshold=t, positive=positive)
                rows.append([method, t, report["accuracy"], report["precision"],
                             report["recall"], report["f1"], report["roc_auc"], report["pr_auc"]])
            results[method] = binary_report(y_test, proba[:, -1], threshold=args.threshold,
                                            positive=positive) | {"positive": str(positive)}
        else:
            report = multiclass_report(y_test, model.classes_[proba.argmax(1)],
                                       labels=model.classes_)
            rows.append([method, report["accuracy"], report["macro_f1"]])
            results[method] = {k: report[k] for k in ("accuracy", "balanced_accuracy", "macro_f1")}
    if binary:
        print(format_table(("method", "threshold", "accuracy", "precision", "recall", "F1",
                            "ROC AUC", "PR AUC"), rows))
        print(f"(positive class: {results[methods[0]]['positive']}; {len(y_test)} test examples, "
              f"{len(y_train)} training examples)")
    else:
        print(format_table(("method", "accuracy", "macro F1"), rows))
        print(f"({len(y_test)} test examples, {len(y_train)} training examples)")
    if args.json is not None:
        write_json_output(args.json, {m: {k: v for k, v in r.items() if k != "confusion"}
                                      for m, r in results.items()})
    return 0
