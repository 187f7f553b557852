"""``elbokit score``: how likely each row of a table is under a run's model (anomalies)."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np

from .. import workflows
from ..imputation import most_unusual_cells
from . import COMMANDS
from .common import (
    add_run_and_table,
    add_table_reading_options,
    check_output_file,
    format_table,
    memory_guard,
    positive_int,
    write_bytes_output,
)

SHOWN = 10  # the least likely rows printed


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help=COMMANDS[name],
                       description="Score each row of a table with a run's model: log p(x) of its "
                       "observed cells, importance-sampled with a standard error; for each cell "
                       "its surprise, -log p(cell | the row's other cells), in nats; and the row's "
                       "anomaly score, its most unusual cell against the same column in the "
                       "run's training rows. Prints the most unusual rows; -o writes every row's "
                       "scores as CSV.")
    add_run_and_table(p)
    p.add_argument("-o", "--output", default=None, metavar="FILE.csv",
                   help="write every row's scores: line, anomaly, log_likelihood, stderr, "
                   "then surprise:COLUMN for each column")
    p.add_argument("--k", type=positive_int, default=1000,
                   help="importance samples per row for log p(x) (default 1000; the cells' "
                   "surprise takes at most 200)")
    add_table_reading_options(p)


def run(args: argparse.Namespace) -> int:
    check_output_file(args.output, "--output")
    run = workflows.Run.load(args.run, model=args.model)
    with memory_guard("the scores", "use a smaller --k"):
        table, scores = run.score_table(args.data, args.header, args.missing or (), k=max(args.k, 2),
                                        seed=args.seed)
    names = [c.name for c in table.schema.columns]
    log_p, stderr = scores["log_likelihood"], scores["stderr"]
    surprise, anomaly = scores["surprise"], scores["anomaly"]
    order = np.argsort(-anomaly)[:SHOWN]
    # A text file's line; a Parquet file's row (counting from 0).
    where = "row" if args.data.suffix.lower() == ".parquet" else "line"
    rows = []
    for i in order:
        worst = int(most_unusual_cells(surprise[i:i + 1], scores["reference_median"],
                                       scores["reference_spread"])[0])
        cell = table.cells[i][table.field(names[worst])]
        rows.append([int(table.lines[i]), float(anomaly[i]), float(log_p[i]), float(stderr[i]),
                     f"{names[worst]} = {cell}", float(surprise[i, worst])])
    print(f"the {len(order)} most unusual of {len(log_p)} rows (anomaly: the row's most unusual "
          "cell, its surprise against its column's in the training rows, in interquartile ranges; "
          "surprise: -log p(cell | the row's other cells), nats; log p(x) of the observed cells):")
    print(format_table((where, "anomaly", "log p(x)", "stderr", "most unusual cell", "surprise"), rows))
    if args.output is not None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([where, "anomaly", "log_likelihood", "stderr",
                         *(f"surprise:{n}" for n in names)])
        for i in range(len(log_p)):
            writer.writerow([int(table.lines[i]), f"{anomaly[i]:.4g}", f"{log_p[i]:.6g}", f"{stderr[i]:.3g}",
                             *("" if np.isnan(v) else f"{v:.4g}" for v in surprise[i])])
        if args.output == "-":
            sys.stdout.write(buffer.getvalue())
        else:
            write_bytes_output(Path(args.output), lambda b: b.write(buffer.getvalue().encode()))
    return 0
