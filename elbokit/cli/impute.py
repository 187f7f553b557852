"""``elbokit impute``: fill the missing cells of a table with a run's model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import workflows
from . import COMMANDS
from .common import (
    add_run_and_table,
    add_table_reading_options,
    check_output_file,
    memory_guard,
    positive_int,
    write_bytes_output,
)


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help=COMMANDS[name],
                       description="Fill the missing cells of a table (the columns a run trained "
                       "on) by the model: each cell its conditional mean given the row's observed "
                       "cells (a level or count: the most probable level, the rounded mean), from "
                       "importance samples of q(z|x_observed) (Mattei & Frellsen 2019); or, with "
                       "--draws N, N multiple imputations by importance resampling. Every other "
                       "cell, the header and the layout are kept as they were.")
    add_run_and_table(p)
    p.add_argument("-o", "--output", default=None, metavar="FILE",
                   help="where to write the filled table (default: stdout; '-': stdout)")
    p.add_argument("--draws", type=positive_int, default=None, metavar="N",
                   help="N multiple imputations, stacked, numbered in a first column 'draw'")
    p.add_argument("--k", type=positive_int, default=100,
                   help="importance samples per row (default 100)")
    add_table_reading_options(p)


def run(args: argparse.Namespace) -> int:
    check_output_file(args.output, "--output")
    run = workflows.Run.load(args.run, model=args.model)
    with memory_guard("the imputation", "use a smaller --k"):
        text = run.impute(args.data, args.header, args.missing or (), k=args.k,
                          draws=args.draws, seed=args.seed)
    if args.output is None or args.output == "-":
        sys.stdout.write(text)
    else:
        write_bytes_output(Path(args.output), lambda buffer: buffer.write(text.encode()))
    return 0
