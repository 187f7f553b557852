"""``elbokit classify``: generative vs discriminative classifiers on labelled data.

A thin face over :func:`elbokit.classification.classify` (also ``workflows.classify``), which
reads the data, splits it, fits and scores each method and saves the run (``--out DIR``, for
``elbokit predict``; its layout is in :mod:`elbokit.classification`): this module parses the
options, calls it and prints the table and notes it returns.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from ..classification import METHODS, ONE_CLASS, Classification, classify
from ..errors import DataError
from . import COMMANDS
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


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help=COMMANDS[name],
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


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except DataError as e:  # e.g. a class too small for its model: say which data
        raise naming(e, args.data, args.test) from None


def _run(args: argparse.Namespace) -> int:
    check_output_file(args.json, "--json")
    result = classify(args.data, args.method, test=args.test, model=args.model,
                      labels=args.labels, epochs=args.epochs, threshold=args.threshold,
                      vocabulary=args.vocabulary, components=args.components,
                      test_fraction=args.test_fraction, seed=args.seed, out=args.out,
                      overwrite=args.overwrite)
    out = human_output(args.json)
    _print_table(result, out)
    if args.json is not None:
        write_json_output(args.json, result.scores)
    if result.path is not None:
        if result.binary and result.probabilities and not result.figures:
            print("(no figures: the test examples hold only one class)", file=out)
        print(f"run directory: {result.path}", file=out)
    return 0


def _print_table(result: Classification, out) -> None:
    if result.binary:
        print(format_table(("method", "threshold", "accuracy", "precision", "recall", "F1",
                            "ROC AUC", "PR AUC"), result.rows), file=out)
        print(f"(positive class: {result.scores[result.methods[0]]['positive']}; "
              f"{result.n_test} test examples, {result.training_note()})", file=out)
        if ONE_CLASS in result.methods:
            one_class = result.scores[ONE_CLASS]
            print(f"(one-class: flags -log p(x) > {one_class['threshold']:.2f} nats, the "
                  f"threshold chosen on validation ({one_class['threshold_rule']}))", file=out)
        for line in result.undefined:
            warnings.warn(line, stacklevel=2)  # one line, as every CLI warning (cli.main)
    else:
        print(format_table(("method", "accuracy", "macro F1"), result.rows), file=out)
        classes = result.classes
        shown = ", ".join(str(c) for c in classes[:12]) + (", ..." if len(classes) > 12 else "")
        print(f"({len(classes)} classes: {shown}; {result.n_test} test examples, "
              f"{result.training_note()})", file=out)
