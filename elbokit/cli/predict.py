"""``elbokit predict``: classify new texts (or rows of numbers) with a saved classify run.

The run's own featurizer turns each text into word counts over the training vocabulary, and
every saved classifier (or ``--method``) gives p(y | x); with two classes the table shows
p(positive | x) and the decision at the run's threshold (positive when p > threshold, as in
``elbokit classify``), otherwise the most probable class.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .. import data as datasets
from .. import runs
from ..classification import plain_label
from ..classifiers import Classifier, GenerativeClassifier, MultinomialNaiveBayes
from ..data.text import BagOfWords
from ..errors import CheckpointError, ConfigError, DataError
from ..novelty import NoveltyDetector
from . import COMMANDS
from .common import (
    add_header_option,
    add_json_option,
    check_output_file,
    format_table,
    fraction,
    human_output,
    naming,
    write_json_output,
)

SNIPPET = 40  # characters of each text shown in the table


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help=COMMANDS[name],
                       description="p(y|x) for new texts (or rows of numbers) from the "
                       "classifiers that elbokit classify --out saved.")
    p.add_argument("run", type=Path, metavar="RUN", help="a run directory from elbokit classify --out")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify (text runs)")
    p.add_argument("--file", type=Path, default=None, metavar="PATH",
                   help="text runs: a UTF-8 file of texts, one per line (blank lines skipped); "
                   "numeric runs: rows of numbers (.npy, .npz, .csv, .tsv), preprocessed like the "
                   "run's data (0/1 pixels for digits)")
    add_header_option(p)
    p.add_argument("--method", default=None, metavar="NAME",
                   help="only this saved method (default: every method in the run)")
    p.add_argument("--threshold", type=fraction, default=None,
                   help="decide positive when p(positive|x) > T (default: the run's threshold)")
    add_json_option(p, "the predictions")


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _inputs(args: argparse.Namespace, config: dict) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """``(a label per input for the table, x [n, dim], words in the vocabulary per text [n]
    (occurrences) or None for numeric runs)``."""
    features = config["features"]
    if features["type"] == "bag-of-words":
        texts = list(args.texts) + (_read_lines(args.file) if args.file is not None else [])
        if not texts:
            if args.file is not None:
                raise DataError(f"{args.file}: no texts (every line is blank)")
            raise ConfigError("no texts to classify: give TEXT arguments or --file PATH")
        bag = BagOfWords.load(args.run / features["file"])
        x = bag.transform(texts)
        return texts, x, x.sum(axis=1)
    if args.texts:
        raise ConfigError(f"{args.run}: classifies rows of {features['dim']} numbers, not texts: "
                          "give them with --file rows.npy|.csv")
    if args.file is None:
        raise ConfigError("no rows to classify: give --file rows.npy|.csv")
    rows = datasets.read_file(args.file, args.header)
    if "schema" in rows.meta:  # text or empty cells: not the numbers a classifier reads
        raise DataError(f"{args.file}: holds text or missing cells; the classifier takes rows of "
                        f"{features['dim']} numbers")
    x = rows.x
    datasets.check_matrix(x, str(args.file), features["dim"])
    return [f"row {i}" for i in range(len(x))], x, None


def _gives_prior(model: Classifier) -> bool:
    """Whether the model's documented answer for an empty document is the class prior."""
    return isinstance(model, MultinomialNaiveBayes) or (
        isinstance(model, GenerativeClassifier) and model.empty_as_prior_)


def _classifier_run(run_dir: Path) -> tuple[dict, dict[str, str]]:
    """The run's config and its saved methods ``{name: path}``, refusing other runs."""
    config = runs.read_config(run_dir, kinds=("classifier",))
    try:
        saved = {method["name"]: (method["path"], method.get("kind")) for method in config["methods"]}
        if "type" not in config["features"] or "threshold" not in config:
            raise KeyError("features.type or threshold")
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{run_dir}/config.json: malformed classifier run (missing {e})") from None
    return config, saved


def run(args: argparse.Namespace) -> int:
    config, saved = _classifier_run(args.run)
    check_output_file(args.json, "--json")
    if args.method is not None and args.method not in saved:
        raise ConfigError(f"--method {args.method}: not in this run (saved: {', '.join(saved)})")
    names = [args.method] if args.method else list(saved)
    labels, x, known = _inputs(args, config)
    models = {m: (NoveltyDetector if saved[m][1] == NoveltyDetector.kind else Classifier).load(
        args.run / saved[m][0]) for m in names}
    # {method: p(y|x) [n, C]}; the one-class detector gives a novelty score [n] instead.
    try:
        probas = {m: model.novelty_score(x) if isinstance(model, NoveltyDetector)
                  else model.predict_proba(x) for m, model in models.items()}
    except DataError as e:  # what a model refuses (negative counts, ...): name the file
        raise naming(e, str(args.file) if args.file is not None else "input") from None
    positive, threshold = config.get("positive"), args.threshold
    threshold = config["threshold"] if threshold is None else threshold
    classes = np.array(config["classes"])
    binary = positive is not None
    column = int(np.flatnonzero(classes == positive)[0]) if binary else None
    negative = classes[1 - column] if binary else None

    rows, records = [], []
    for i, label in enumerate(labels):
        shown = label if len(label) <= SNIPPET else label[:SNIPPET - 1] + "…"
        per_method = {}
        for j, m in enumerate(names):
            p, first = probas[m][i], [str(i), shown] if j == 0 else ["", ""]  # input once per group
            if isinstance(models[m], NoveltyDetector):  # binary runs only (classify ensures it)
                decision = positive if p > models[m].threshold_ else negative
                rows.append([*first, m, f"-log p(x) = {p + 0.0:.1f}", str(decision)])
                per_method[m] = {"novelty_score": float(p), "threshold": models[m].threshold_,
                                 "decision": plain_label(decision)}
                continue
            if binary:
                decision = positive if p[column] > threshold else negative
                rows.append([*first, m, float(p[column]), str(decision)])
                per_method[m] = {"p_positive": float(p[column]), "decision": plain_label(decision)}
            else:
                best = int(p.argmax())
                rows.append([*first, m, str(classes[best]), float(p[best])])
                per_method[m] = {"predicted": plain_label(classes[best])}
            per_method[m]["proba"] = {str(c): float(v) for c, v in zip(classes, p, strict=True)}
        records.append({"input": label, "methods": per_method,
                        **({"known_words": int(known[i])} if known is not None else {})})
    result = {"run": str(args.run), "classes": [plain_label(c) for c in classes],
              "positive": positive, "threshold": threshold, "predictions": records}
    out = human_output(args.json)
    if binary:
        print(format_table(("#", "input", "method", f"p({positive}|x)",
                            f"decision (p > {threshold:g})"), rows), file=out)
    else:
        print(format_table(("#", "input", "method", "predicted", "p(predicted|x)"), rows), file=out)
    novelty = [m for m in names if isinstance(models[m], NoveltyDetector)]
    for m in novelty:
        print(f"note: {m} gives no probability: it decides {positive} when -log p(x) under the "
              f"{negative} model exceeds {models[m].threshold_:.2f} nats (chosen on validation data)",
              file=out)
    if known is not None and (known == 0).any():
        prior = [m for m in names if _gives_prior(models[m])]
        other = [m for m in names if m not in prior and m not in novelty]
        what = "; ".join([f"{', '.join(prior)}: the class prior p(y), by design"] * bool(prior) +
                         [f"{', '.join(other)}: what the biases alone say"] * bool(other) +
                         [f"{', '.join(novelty)}: never novel (log p(x) = 0)"] * bool(novelty))
        for i in np.flatnonzero(known == 0):
            print(f"note: input {i} has no word from the run's vocabulary ({what})", file=out)
    if args.json is not None:
        write_json_output(args.json, result)
    return 0
