"""Imputing mixed tables: elbokit's VAE next to scikit-learn's imputers, on a user's CSV.

Each table is written to a CSV file and read back with ``elbokit.data.columns.read_mixed``,
as a user's file is (column types inferred; the schema is printed). Then, for each removal
rate (10%, 30%, 50% of the observed cells, removed completely at random with a seeded
generator, on top of the table's own gaps, never leaving a row without a modelled cell),
the cells are blanked in a copy of the CSV, that copy is read with ``read_mixed`` (if the
inferred types differ from the full file's, this is said and the copy is read with the full
file's schema, ``read_with_schema``, so that codes mean the same), and every method fills
the blanks:

- elbokit ``VAE`` (table likelihood from the schema; hidden (64, 64), 100 epochs, batch 64,
  seed 0; latent_dim 2 on the planted table, whose z is 2-d, 4 on the real ones; the
  default early stopping, 10% of the rows held out, patience 10: the epochs run are
  recorded), its conditional mean from ``impute(k=300)``;
- scikit-learn ``IterativeImputer(max_iter=20, random_state=0)``, ``KNNImputer(n_neighbors=10)``
  and ``SimpleImputer()`` (the mean: for a categorical column the mode, a binary one the
  mode, a positive one the geometric mean, a count the rounded mean), on numbers they can
  use: positive columns as logs, a categorical column one-hot with its first level dropped
  (with every level the indicators are collinear and IterativeImputer's regressions break
  down), every column standardized; read back as the largest indicator (the dropped level's
  being 1 - the sum of the others), binary at 1/2, counts rounded and >= 0.

Reported per column over the removed cells: RMSE / the column's standard deviation (real,
positive and count columns; positive ones compared on their own scale, not the log) or
accuracy (binary, categorical), against the values as read from the full CSV; per table and
rate the mean of each over its columns, per method. Time: wall clock (``perf_counter``) of
the VAE's ``fit`` + ``impute`` and of scikit-learn's ``fit_transform``, with torch at one
thread (``torch.set_num_threads``) and numpy's BLAS/OpenMP pools at one thread
(``threadpoolctl``), ``--threads`` to change both.

Also: on the planted table, the anomaly AUC (``planted_table(1000, seed=3, missing=0.1,
anomalies=20)``, the VAE fitted on it, ROC AUC of ``score_rows(...)["anomaly"]`` and of
``-log_likelihood`` for the 20 planted rows); on penguins and cars, the 5 rows the VAE fitted
on the whole table finds most unusual (highest ``anomaly``) as raw CSV rows, with the most
unusual cell of each: the largest (surprise - column median) / column IQR, the median and
IQR computed here over the table's rows (an IQR of 0: 1).

Tables (each skipped, saying why, when its package is missing):

- ``planted``: ``elbokit.data.planted.planted_table(2000, seed=0)``, complete (the removed
  cells are the only gaps): 3 real, 1 positive, 1 count, 1 binary, 1 categorical column
  drawn from a 2-d latent variable.
- ``penguins``: ``palmerpenguins.load_penguins()``, 344 penguins x 8 columns with their
  own missing cells. Horst, Hill & Gorman (2020), palmerpenguins: Palmer Archipelago
  (Antarctica) penguin data, doi:10.5281/zenodo.3960218; data collected by Dr. Kristen
  Gorman and the Palmer Station Long Term Ecological Research (LTER) Program, CC0 (as the
  Python package's own metadata says; the package's code is MIT, (c) 2020 Muhammad
  Chenariyan Nakhaee).
- ``cars``: ``vega_datasets.data.cars()``, 406 cars: the StatLib "auto mpg"/cars data
  (Donoho & Ramos 1982, PRIMDATA; lib.stat.cmu.edu/datasets) as shipped by vega-datasets.
  The package's metadata and LICENSE file say MIT (Copyright (c) 2018 Jake Vanderplas), not
  BSD-3-Clause; it states no separate licence for the data. ``Name`` stays in the CSV (it is
  printed with the unusual rows); elbokit leaves it out as identifier-like (311 distinct
  names in 406 rows), and ``column_types {"Name": "skip"}`` says so here too. ``Year`` (a date,
  1970-01-01 ... 1982-01-01, the model year) is written as an integer year (1970 ... 1982),
  since the date text would be read as a 12-level categorical with no order.

Run it on an otherwise idle machine:

    .venv/bin/python benchmarks/tables.py [--tables planted,penguins,cars] [--rates 0.1,0.3,0.5]
        [--out runs/tables] [--threads 1] [--columns] [--fresh] [--json FILE]
    .venv/bin/python benchmarks/tables.py --quick    # smoke run: 20 epochs, 30% only

``--quick`` checks that everything runs; its figures are not results (20 epochs are a
hundred-odd steps on the real tables, too few for the VAE to move from the mean and mode).

Resumable: each finished (table, rate) cell, the anomaly AUC and the unusual rows are kept
in ``DIR/results.json`` (``--out``, default ``runs/tables``; ``runs/tables-quick`` with
``--quick``) with the settings they were measured with, and skipped when the command runs
again with the same settings (``--fresh`` starts over). The Markdown tables are printed and
written to ``DIR/results.md``; the CSV files read are under ``DIR/data``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish  # noqa: E402

from elbokit import VAE  # noqa: E402
from elbokit.data.columns import (  # noqa: E402
    MixedTable,
    Schema,
    read_mixed,
    read_with_schema,
)
from elbokit.data.planted import planted_table  # noqa: E402

TABLES = ("planted", "penguins", "cars")
RATES = (0.1, 0.3, 0.5)
METHODS = ("elbokit VAE", "IterativeImputer", "KNNImputer", "SimpleImputer")
NUMERIC = ("real", "positive", "poisson", "negbin")
DISCRETE = ("binary", "categorical")
LATENT = {"planted": 2, "penguins": 4, "cars": 4}
COLUMN_TYPES = {"cars": {"Name": "skip"}}  # the only type given; the rest are inferred
UNUSUAL_ROWS = 5


# -- the tables, as CSV files -------------------------------------------------------------------

def write_rows(path: Path, header: list[str] | None, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        if header is not None:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def write_table(name: str, directory: Path) -> tuple[Path | None, str]:
    """The table ``name`` written to ``directory/NAME.csv`` and a line saying what it is; no
    path (and why) when its package is missing."""
    path = directory / f"{name}.csv"
    if name == "planted":
        cells, _, _ = planted_table(2000, seed=0)
        write_rows(path, cells[0], cells[1:])
        return path, "planted_table(2000, seed=0), complete"
    if name == "penguins":
        try:
            from palmerpenguins import load_penguins
        except ImportError as e:
            return None, f"palmerpenguins is not installed ({e}): pip install palmerpenguins"
        load_penguins().to_csv(path, index=False)
        return path, "palmerpenguins.load_penguins() (Horst, Hill & Gorman 2020; CC0 data)"
    try:
        from vega_datasets import data
    except ImportError as e:
        return None, f"vega_datasets is not installed ({e}): pip install vega_datasets"
    cars = data.cars()
    # The model year as an integer (1970 ... 1982), not its date text (a 12-level
    # categorical when read); Name stays, left out by COLUMN_TYPES.
    cars["Year"] = cars["Year"].dt.year
    cars.to_csv(path, index=False)
    return path, "vega_datasets.data.cars() (StatLib auto mpg), Year as an integer year"


def remove_cells(x: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """``removed: [rows, columns]``: ``rate`` of the observed cells of ``x`` chosen at random,
    less one per row that would lose its last cell (one of its chosen cells, at random)."""
    observed = np.flatnonzero(~np.isnan(x))
    removed = np.zeros(x.shape, dtype=bool)
    removed.flat[rng.choice(observed, size=round(rate * len(observed)), replace=False)] = True
    for i in np.flatnonzero((np.isnan(x) | removed).all(1)):
        removed[i, rng.choice(np.flatnonzero(removed[i]))] = False
    return removed


def write_holed(table: MixedTable, removed: np.ndarray, path: Path) -> Path:
    """The table's raw cells with the ``removed`` ones blanked, written to ``path``."""
    rows = [list(r) for r in table.cells]
    for j, column in enumerate(table.schema.columns):
        k = table.field(column.name)
        for i in np.flatnonzero(removed[:, j]):
            rows[i][k] = ""
    return write_rows(path, table.header_row, rows)


def same_types(a: Schema, b: Schema) -> bool:
    return [(c.name, c.kind, c.levels) for c in a.columns] == [(c.name, c.kind, c.levels)
                                                               for c in b.columns]


# -- the methods ----------------------------------------------------------------------------------

def make_vae(name: str, schema: Schema, args: argparse.Namespace) -> VAE:
    return VAE(latent_dim=LATENT[name], hidden=(64, 64), epochs=args.epochs, batch_size=64,
               table_schema=schema.to_dict(), seed=0)


def encode(x: np.ndarray, schema: Schema) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Numbers scikit-learn's imputers can use (NaN kept): positive columns as logs, a
    categorical column as indicators of its levels but the first; and the ``(start,
    width)`` of each column's part."""
    parts, spans, start = [], [], 0
    for j, column in enumerate(schema.columns):
        v = x[:, j]
        if column.kind == "categorical":
            seen = ~np.isnan(v)
            part = np.full((len(v), len(column.levels) - 1), np.nan)
            part[seen] = np.eye(len(column.levels))[v[seen].astype(int), 1:]
        else:
            part = (np.log(v) if column.kind == "positive" else v)[:, None]
        parts.append(part)
        spans.append((start, part.shape[1]))
        start += part.shape[1]
    return np.concatenate(parts, axis=1), spans


def decode(filled: np.ndarray, spans: list[tuple[int, int]], schema: Schema) -> np.ndarray:
    """Values and codes of the table from the imputers' numbers: a categorical column the
    level of the largest indicator, binary at 1/2, positive from the log, counts rounded."""
    out = np.empty((len(filled), len(schema.columns)))
    for j, (column, (start, width)) in enumerate(zip(schema.columns, spans, strict=True)):
        part = filled[:, start:start + width]
        if column.kind == "categorical":
            first = 1 - part.sum(1, keepdims=True)
            out[:, j] = np.concatenate([first, part], axis=1).argmax(1)
        elif column.kind == "binary":
            out[:, j] = part[:, 0] > 0.5
        elif column.kind == "positive":
            out[:, j] = np.exp(part[:, 0])
        elif column.kind in ("poisson", "negbin"):
            out[:, j] = np.maximum(np.round(part[:, 0]), 0)
        else:
            out[:, j] = part[:, 0]
    return out


def sklearn_imputer(method: str):
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401 (enables the import)
    from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer

    return {"IterativeImputer": lambda: IterativeImputer(max_iter=20, random_state=0),
            "KNNImputer": lambda: KNNImputer(n_neighbors=10),
            "SimpleImputer": lambda: SimpleImputer()}[method]()


def impute(method: str, name: str, x: np.ndarray, schema: Schema, args: argparse.Namespace
           ) -> tuple[np.ndarray, float, dict]:
    """``x`` filled by ``method``, the seconds it took (fit + impute, or fit_transform) and
    what else there is to know: the warnings raised, the VAE's epochs (early stopping)."""
    extra = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if method == "elbokit VAE":
            start = time.perf_counter()
            vae = make_vae(name, schema, args).fit(x)
            filled = vae.impute(x, k=args.impute_k)
            seconds = time.perf_counter() - start
            extra["epochs_trained"] = int(vae.epochs_trained_)
        else:
            values, spans = encode(x, schema)
            mean, sd = np.nanmean(values, 0), np.nanstd(values, 0)
            sd = np.where(sd > 0, sd, 1.0)
            imputer = sklearn_imputer(method)
            start = time.perf_counter()
            out = imputer.fit_transform((values - mean) / sd)
            seconds = time.perf_counter() - start
            filled = decode(out * sd + mean, spans, schema)
    filled = np.where(np.isnan(x), filled, x)
    extra["warnings"] = sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0][:160]}"
                                for w in caught})
    return filled, seconds, extra


def errors(filled: np.ndarray, x: np.ndarray, truth: np.ndarray, schema: Schema) -> dict:
    """Per column over the cells of ``truth`` blank in ``x``: RMSE / the column's sd
    (numbers, sd over the column's observed values in ``truth``) or accuracy (levels)."""
    out = {}
    for j, column in enumerate(schema.columns):
        hole = np.isnan(x[:, j]) & ~np.isnan(truth[:, j])
        if not hole.any():
            continue
        if column.kind in DISCRETE:
            out[column.name] = float(np.mean(filled[hole, j] == truth[hole, j]))
        else:
            rmse = np.sqrt(np.mean((filled[hole, j] - truth[hole, j]) ** 2))
            out[column.name] = float(rmse / np.nanstd(truth[:, j]))
    return out


def summary(column_errors: dict, schema: Schema) -> dict:
    kinds = {c.name: c.kind for c in schema.columns}
    numeric = [v for n, v in column_errors.items() if kinds[n] in NUMERIC]
    discrete = [v for n, v in column_errors.items() if kinds[n] in DISCRETE]
    return {"rmse_mean": float(np.mean(numeric)) if numeric else None,
            "accuracy_mean": float(np.mean(discrete)) if discrete else None}


# -- the cells of the benchmark -------------------------------------------------------------------

def imputation_cell(name: str, table: MixedTable, rate: float, args: argparse.Namespace) -> dict:
    rng = np.random.default_rng([args.seed, TABLES.index(name), round(100 * rate)])
    removed = remove_cells(table.x, rate, rng)
    path = write_holed(table, removed, args.out / "data" / f"{name}-{round(100 * rate)}.csv")
    holed = read_mixed(path, column_types=COLUMN_TYPES.get(name))
    note = None
    if not same_types(holed.schema, table.schema):
        note = (f"types inferred from the holed file differ ({', '.join(holed.schema.kinds)}); "
                "read with the full file's schema")
        print(f"  {name} {rate:.0%}: {note}", flush=True)
        holed = read_with_schema(path, table.schema)
    x = holed.x
    if not np.array_equal(np.isnan(x), np.isnan(table.x) | removed):
        raise RuntimeError(f"{path}: the blank cells read back are not the ones removed")
    cell = {"table": name, "rate": rate, "removed_cells": int(removed.sum()),
            "removed_fraction": float(removed.sum() / (~np.isnan(table.x)).sum()),
            "missing_fraction": float(np.isnan(x).mean()), "schema_note": note, "methods": {}}
    for method in METHODS:
        filled, seconds, extra = impute(method, name, x, table.schema, args)
        column_errors = errors(filled, x, table.x, table.schema)
        cell["methods"][method] = {"seconds": seconds, "columns": column_errors,
                                   **summary(column_errors, table.schema), **extra}
        s = cell["methods"][method]
        epochs = f", {extra['epochs_trained']} epochs" if "epochs_trained" in extra else ""
        print(f"  {name} {rate:.0%} {method}: RMSE {fmt(s['rmse_mean'])}, accuracy "
              f"{fmt(s['accuracy_mean'])}, {seconds:.1f} s{epochs}", flush=True)
    return cell


def anomaly_cell(args: argparse.Namespace) -> dict:
    from sklearn.metrics import roc_auc_score

    cells, _, anomalous = planted_table(1000, seed=3, missing=0.1, anomalies=20)
    table = read_mixed(write_rows(args.out / "data" / "planted-anomalies.csv", cells[0], cells[1:]))
    start = time.perf_counter()
    vae = make_vae("planted", table.schema, args).fit(table.x)
    scores = vae.score_rows(table.x, k=args.score_k)
    seconds = time.perf_counter() - start
    return {"rows": len(table.x), "anomalies": int(anomalous.sum()), "score_k": args.score_k,
            "auc_anomaly": float(roc_auc_score(anomalous, scores["anomaly"])),
            "auc_neg_log_likelihood": float(roc_auc_score(anomalous, -scores["log_likelihood"])),
            "seconds": seconds, "epochs_trained": int(vae.epochs_trained_)}


def unusual_cell(name: str, table: MixedTable, args: argparse.Namespace) -> dict:
    """The rows of the table the VAE fitted on it finds most unusual, with the most unusual
    cell of each, by (surprise - median) / IQR of the cell's column over the table's rows."""
    vae = make_vae(name, table.schema, args).fit(table.x)
    scores = vae.score_rows(table.x, k=args.score_k)
    surprise = scores["surprise"]
    median = np.nanmedian(surprise, axis=0)
    q75, q25 = np.nanpercentile(surprise, [75, 25], axis=0)
    iqr = np.where(q75 - q25 > 0, q75 - q25, 1.0)
    excess = (surprise - median) / iqr
    excess = np.where(np.isnan(excess), -np.inf, excess)
    rows = []
    for i in np.argsort(-scores["anomaly"], kind="stable")[:UNUSUAL_ROWS]:
        j = int(np.argmax(excess[i]))
        column = table.schema.columns[j]
        rows.append({"row": int(i), "line": int(table.lines[i]),
                     "anomaly": float(scores["anomaly"][i]),
                     "log_likelihood": float(scores["log_likelihood"][i]),
                     "cell": column.name, "value": table.cells[i][table.field(column.name)],
                     "excess": float(excess[i, j]), "surprise": float(surprise[i, j]),
                     "column_median": float(median[j]), "column_iqr": float(iqr[j]),
                     "raw": list(table.cells[i])})
    return {"header": table.header_row, "score_k": args.score_k, "rows": rows,
            "epochs_trained": int(vae.epochs_trained_),
            "largest_excess_matches_anomaly": bool(np.allclose(
                [r["excess"] for r in rows], [r["anomaly"] for r in rows]))}


# -- printing ------------------------------------------------------------------------------------

def fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def report(names: list[str], rates: list[float], results: dict, args: argparse.Namespace) -> str:
    parts = []
    for name in names:
        cells = {r: results.get(f"{name}/{r:g}") for r in rates}
        shown = [r for r in rates if cells[r] is not None]
        if not shown:
            continue
        heads = ["method", *(f"{r:.0%} removed" for r in shown)]
        parts.append(f"**{name}**: imputation of the removed cells, mean RMSE / sd over the "
                     "numeric columns / mean accuracy over the discrete columns (lower / higher "
                     "is better)\n\n" + markdown(heads, [
                         [m, *(f"{fmt(cells[r]['methods'][m]['rmse_mean'])} / "
                               f"{fmt(cells[r]['methods'][m]['accuracy_mean'])}" for r in shown)]
                         for m in METHODS]))
        parts.append(f"**{name}**: seconds (VAE: fit + impute; scikit-learn: fit_transform), "
                     f"{args.threads} thread(s)\n\n" + markdown(heads, [
                         [m, *(f"{cells[r]['methods'][m]['seconds']:.2f}" for r in shown)]
                         for m in METHODS]))
        if args.columns:
            for r in shown:
                columns = list(cells[r]["methods"][METHODS[0]]["columns"])
                parts.append(f"**{name}**, {r:.0%} removed, per column (RMSE / sd, or accuracy)"
                             "\n\n" + markdown(["method", *columns], [
                                 [m, *(fmt(cells[r]["methods"][m]["columns"].get(c)) for c in columns)]
                                 for m in METHODS]))
        if name == "planted" and "planted/anomaly" in results:
            a = results["planted/anomaly"]
            parts.append(f"**planted**: anomaly ranking, {a['anomalies']} planted anomalies in "
                         f"{a['rows']} rows (10% of cells missing), ROC AUC\n\n" + markdown(
                             ["score", "AUC"], [['score_rows()["anomaly"]', fmt(a["auc_anomaly"])],
                                                ["-log_likelihood", fmt(a["auc_neg_log_likelihood"])]]))
        if f"{name}/unusual" in results:
            u = results[f"{name}/unusual"]
            text = [f"**{name}**: the {len(u['rows'])} most unusual rows (VAE fitted on the whole "
                    "table), most unusual cell = largest (surprise - median) / IQR of its column",
                    "", "    line  anomaly  cell: value  |  " + ",".join(u["header"] or [])]
            for r in u["rows"]:
                text.append(f"    {r['line']:4d}  {r['anomaly']:7.2f}  {r['cell']}: {r['value']}  "
                            f"|  {','.join(r['raw'])}")
            parts.append("\n".join(text))
    return "\n\n".join(parts)


# -- main ----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default=",".join(TABLES))
    parser.add_argument("--rates", default=None, help="removal rates (default 0.1,0.3,0.5; "
                        "--quick: 0.3)")
    parser.add_argument("--epochs", type=int, default=None, help="VAE epochs (100; --quick: 20)")
    parser.add_argument("--impute-k", type=int, default=300)
    parser.add_argument("--score-k", type=int, default=None,
                        help="importance samples of score_rows (1000; --quick: 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cells removed")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 epochs, 30%% only")
    parser.add_argument("--columns", action="store_true", help="also print per-column tables")
    parser.add_argument("--out", type=Path, default=None,
                        help="results and CSV files (default runs/tables, runs/tables-quick)")
    parser.add_argument("--fresh", action="store_true", help="forget earlier results")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    args.rates = args.rates or ("0.3" if args.quick else ",".join(f"{r:g}" for r in RATES))
    args.epochs = args.epochs or (20 if args.quick else 100)
    args.score_k = args.score_k or (200 if args.quick else 1000)
    args.out = args.out or Path("runs/tables-quick" if args.quick else "runs/tables")
    names = [n.strip() for n in args.tables.split(",") if n.strip()]
    unknown = sorted(set(names) - set(TABLES))
    if unknown:
        sys.exit(f"unknown table(s) {', '.join(unknown)}; choose from {', '.join(TABLES)}")
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    if not all(0 < r < 1 for r in rates):
        sys.exit(f"--rates must be in (0, 1), not {args.rates}")
    from threadpoolctl import threadpool_limits  # scikit-learn's dependency

    torch.set_num_threads(args.threads)
    limits = threadpool_limits(args.threads)  # noqa: F841 (in force until the process ends)
    began = time.perf_counter()
    (args.out / "data").mkdir(parents=True, exist_ok=True)
    settings = {"format": 2, "epochs": args.epochs, "impute_k": args.impute_k, "score_k": args.score_k,
                "seed": args.seed, "threads": args.threads, "hidden": [64, 64], "batch_size": 64,
                "latent_dim": LATENT}
    results_path = args.out / "results.json"
    results = {} if args.fresh or not results_path.exists() else json.loads(results_path.read_text())

    def keep(key: str, compute) -> None:
        if key in results and results[key].get("settings") == settings:
            return
        if key in results:
            print(f"  {key}: measured with other settings, measuring again", flush=True)
        results[key] = {**compute(), "settings": settings}
        tmp = results_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=2) + "\n")
        os.replace(tmp, results_path)

    print(f"VAE: hidden (64, 64), {args.epochs} epochs, batch 64, impute k = {args.impute_k}; "
          f"torch {torch.__version__}, {args.threads} thread(s) (torch and BLAS/OpenMP)", flush=True)
    schemas, skipped = {}, {}
    for name in names:
        path, what = write_table(name, args.out / "data")
        if path is None:
            skipped[name] = what
            print(f"\n{name}: skipped, {what}", flush=True)
            continue
        table = read_mixed(path, column_types=COLUMN_TYPES.get(name))
        schemas[name] = table.schema.to_dict()
        print(f"\n{name}: {what}; {len(table.x)} rows, {path}\n{table.schema.describe(table.x)}",
              flush=True)
        for rate in rates:
            keep(f"{name}/{rate:g}",
                 lambda name=name, table=table, rate=rate: imputation_cell(name, table, rate, args))
        if name == "planted":
            keep("planted/anomaly", lambda: anomaly_cell(args))
        else:
            keep(f"{name}/unusual", lambda name=name, table=table: unusual_cell(name, table, args))
    text = report(names, rates, results, args)
    (args.out / "results.md").write_text(text + "\n")
    print("\n" + text + "\n")
    return finish({"benchmark": "tables", "settings": settings, "rates": rates,
                   "tables": names, "skipped": skipped, "schemas": schemas, "results": results,
                   "markdown": text, "total_seconds": time.perf_counter() - began}, args.json)


if __name__ == "__main__":
    main()
