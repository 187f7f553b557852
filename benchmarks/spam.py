"""Spam detection: elbokit's classifiers next to scikit-learn's, and the semi-supervised curve.

Data: the bundled SMS Spam Collection, the project's seed-0 split (80% train / 20% test,
``split_indices(5574, 0, 0.2, 0)``), bag-of-words counts over the 2,000 most frequent
training words (``BagOfWords``). Every model sees the same matrices.

Table 1 (all training labels): accuracy, precision, recall and F1 of spam at threshold 0.5,
ROC AUC and PR AUC (average precision) on the test split, and fit time: the median over
``--repeats`` fits (one fit for models taking over 5 s), and its ratio to scikit-learn's
MultinomialNB fitted in the same run (the reference). Contestants:

- elbokit naive Bayes (alpha 1), a 2-component multinomial mixture per class (EM, Laplace
  smoothing), a VAE per class (multinomial likelihood, 8-d z, k = 100 importance samples),
  logistic regression and an MLP (Adam, 10 epochs, log(1 + count) features), M2 with every
  label (30 epochs), and the one-class model (mixture on ham only, F1-optimal threshold
  on 20% of the training messages held out; its scores are -log p(x), not probabilities);
- scikit-learn MultinomialNB(alpha=1) and LogisticRegression(C=1) on log(1 + count).

Table 2 (semi-supervised curve): F1 of spam on the test split against the number of
labelled training messages (10, 20, 50, 100, 200, all), labels drawn by
``labelled_subset`` (stratified, at least one per class) with seeds ``0 .. --label-seeds-1``;
the median and the range over the draws. M2 (``--m2-epochs``) uses the labelled messages
plus every training message as unlabelled; the others see the labelled ones only: our
logistic regression trained to convergence (300 full-batch epochs), naive Bayes, and
scikit-learn's logistic regression.

    .venv/bin/python benchmarks/spam.py [--repeats 5] [--label-seeds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish  # noqa: E402

from elbokit import VAE, Mixture  # noqa: E402
from elbokit.classifiers import (  # noqa: E402
    GenerativeClassifier,
    LogisticRegression,
    MLPClassifier,
    MultinomialNaiveBayes,
)
from elbokit.data import labelled_subset, split_indices  # noqa: E402
from elbokit.data.text import BagOfWords, load_sms_spam  # noqa: E402
from elbokit.metrics import binary_report  # noqa: E402
from elbokit.novelty import NoveltyDetector  # noqa: E402
from elbokit.semisupervised import SemiSupervisedClassifier  # noqa: E402


class SklearnLogistic:
    """scikit-learn's LogisticRegression on log(1 + count), the transform ours uses."""

    def __init__(self) -> None:
        from sklearn.linear_model import LogisticRegression as Sk

        self.model = Sk(C=1.0, max_iter=2000)

    def fit(self, X, y):
        self.model.fit(np.log1p(X), y)
        return self

    def predict_proba(self, X):
        return self.model.predict_proba(np.log1p(X))


def sklearn_nb():
    from sklearn.naive_bayes import MultinomialNB

    return MultinomialNB(alpha=1.0)


SUPERVISED = {
    "naive Bayes": lambda: MultinomialNaiveBayes(alpha=1.0),
    "mixture per class": lambda: GenerativeClassifier(Mixture(
        n_components=2, likelihood="multinomial", max_iter=300, tol=1e-3, smoothing=1.0)),
    "VAE per class": lambda: GenerativeClassifier(VAE(
        likelihood="multinomial", latent_dim=8, hidden=(128,), epochs=50, batch_size=64,
        patience=5), score_options={"k": 100}),
    "logistic regression": lambda: LogisticRegression(),
    "MLP": lambda: MLPClassifier(hidden=(64,)),
    "M2 (all labels)": lambda: SemiSupervisedClassifier(epochs=30),
    "sklearn MultinomialNB": sklearn_nb,
    "sklearn LogisticRegression": SklearnLogistic,
}


def load(seed: int = 0) -> dict:
    data = load_sms_spam()
    parts = split_indices(len(data.texts), seed=seed, test_fraction=0.2, val_fraction=0.0)
    train = [data.texts[i] for i in parts["train"]]
    bag = BagOfWords(2000).fit(train)
    return {"X": bag.transform(train), "y": data.labels[parts["train"]],
            "X_test": bag.transform([data.texts[i] for i in parts["test"]]),
            "y_test": data.labels[parts["test"]]}


def timed_fit(make, X, y, repeats: int) -> tuple[object, list[float]]:
    """Fit ``repeats`` times (once when a fit takes over 5 s); the last model and the times."""
    times: list[float] = []
    while True:
        model, start = make(), time.perf_counter()
        model.fit(X, y)
        times.append(time.perf_counter() - start)
        if len(times) >= repeats or times[0] > 5.0:
            return model, times


def scores(y_test, p, threshold=0.5, scores_=False) -> dict:
    report = binary_report(y_test, p, threshold=threshold, positive="spam", scores=scores_)
    return {k: report[k] for k in ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc")}


def supervised_table(d: dict, repeats: int) -> list[dict]:
    rows = []
    for name, make in SUPERVISED.items():
        model, times = timed_fit(make, d["X"], d["y"], repeats)
        p = model.predict_proba(d["X_test"])[:, 1]
        rows.append({"method": name, **scores(d["y_test"], p), "fit_seconds": statistics.median(times),
                     "fits": len(times)})
        print(f"  {name}: done", file=sys.stderr, flush=True)
    # One-class: ham only, threshold on held-out training messages.
    parts = split_indices(len(d["y"]), 0, 0.0, 0.2)
    tr, va = parts["train"], parts["val"]
    start = time.perf_counter()
    detector = NoveltyDetector(Mixture(n_components=2, likelihood="multinomial", max_iter=300,
                                       tol=1e-3)).fit(d["X"][tr][d["y"][tr] == "ham"],
                                                      d["X"][va], d["y"][va] == "spam")
    seconds = time.perf_counter() - start
    rows.append({"method": "one-class (ham only)",
                 **scores(d["y_test"], detector.novelty_score(d["X_test"]), detector.threshold_, True),
                 "fit_seconds": seconds, "fits": 1})
    reference = next(r["fit_seconds"] for r in rows if r["method"] == "sklearn MultinomialNB")
    for r in rows:
        r["fit_ratio"] = r["fit_seconds"] / reference
    return rows


def curve(d: dict, counts: list[int | None], seeds: int, m2_epochs: int) -> list[dict]:
    methods = {
        "M2 (+ unlabelled)": lambda: SemiSupervisedClassifier(epochs=m2_epochs),
        "logistic regression": lambda: LogisticRegression(epochs=300, batch_size=10_000),
        "naive Bayes": lambda: MultinomialNaiveBayes(alpha=1.0),
        "sklearn LogisticRegression": SklearnLogistic,
    }
    rows = []
    for n in counts:
        for name, make in methods.items():
            f1s = []
            for seed in range(seeds if n is not None else 1):
                labelled = (np.arange(len(d["y"])) if n is None else labelled_subset(d["y"], n, seed))
                if name.startswith("M2"):
                    y = np.full(len(d["y"]), -1, dtype=object)
                    y[labelled] = d["y"][labelled]
                    model = make().fit(d["X"], y)
                else:
                    model = make().fit(d["X"][labelled], d["y"][labelled])
                f1s.append(scores(d["y_test"], model.predict_proba(d["X_test"])[:, 1])["f1"])
            rows.append({"labels": "all" if n is None else n, "method": name,
                         "f1_median": statistics.median(f1s), "f1_min": min(f1s),
                         "f1_max": max(f1s), "draws": len(f1s)})
            print(f"  {n} {name}: {rows[-1]['f1_median']:.3f}", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="fits per fast model (median)")
    parser.add_argument("--label-seeds", type=int, default=3, help="label draws per count")
    parser.add_argument("--m2-epochs", type=int, default=10)
    parser.add_argument("--counts", default="10,20,50,100,200,all")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    d = load()
    print(f"SMS Spam Collection, seed-0 split: {len(d['y'])} training / {len(d['y_test'])} test "
          f"messages, {int((d['y_test'] == 'spam').sum())} test spam, 2,000 words; torch "
          f"{torch.__version__}, {args.threads} thread(s)\n")
    table = supervised_table(d, args.repeats)
    print("Table 1: every training label (threshold 0.5; one-class: F1-optimal on validation)")
    header = ("method", "accuracy", "precision", "recall", "F1", "ROC AUC", "PR AUC", "fit s",
              "x MultinomialNB")
    print(" | ".join(header))
    for r in table:
        print(" | ".join([r["method"], *(f"{r[k]:.4f}" for k in ("accuracy", "precision", "recall",
                                                                  "f1", "roc_auc", "pr_auc")),
                          f"{r['fit_seconds']:.3f}", f"{r['fit_ratio']:.0f}"]))
    counts = [None if c == "all" else int(c) for c in args.counts.split(",")]
    rows = curve(d, counts, args.label_seeds, args.m2_epochs)
    print(f"\nTable 2: F1 (spam, threshold 0.5) vs labelled training messages; median "
          f"[min, max] over {args.label_seeds} label draws")
    methods = list(dict.fromkeys(r["method"] for r in rows))
    print(" | ".join(["labels", *methods]))
    for n in dict.fromkeys(r["labels"] for r in rows):
        cells = [f"{r['f1_median']:.3f} [{r['f1_min']:.2f}, {r['f1_max']:.2f}]"
                 for m in methods for r in rows if r["labels"] == n and r["method"] == m]
        print(" | ".join([str(n), *cells]))
    result = {"supervised": table, "semi_supervised": rows, "threads": args.threads,
              "total_seconds": time.perf_counter() - began}
    return finish(result, args.json)


if __name__ == "__main__":
    main()
