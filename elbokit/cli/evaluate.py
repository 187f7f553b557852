"""``elbokit evaluate``: score a run on its held-out split or on any file of the same width."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import runs, workflows
from ..errors import ConfigError
from . import COMMANDS
from .common import (
    SCORE_HEADERS,
    add_header_option,
    add_json_option,
    add_missing_option,
    add_model_option,
    check_output_file,
    diagnostics_lines,
    format_table,
    human_output,
    in_file_rows,
    memory_guard,
    positive_int,
    score_note,
    score_row,
    seed,
    write_json_output,
)


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help=COMMANDS[name],
                       description="Score a run: ELBO with its reconstruction and KL terms, the "
                       "IWAE bound and an importance-sampled log p(x) with its standard error, "
                       "in nats per example, and diagnostics: KL per latent variable, active "
                       "units, the gap log p(x) - ELBO, the mutual information I(x; z) and "
                       "posterior collapse. Seeded: the same command gives the same numbers.")
    p.add_argument("run", type=Path, metavar="RUN", help="run directory written by `elbokit fit`")
    p.add_argument("--data", default=None, metavar="PATH",
                   help="score this file (same width, same preprocessing as the run) instead "
                   "of the run's own data")
    add_header_option(p)
    add_missing_option(p)
    p.add_argument("--split", default="test", choices=("train", "val", "test", "all"),
                   help="which part of the run's data to score (default test; ignored with --data)")
    p.add_argument("--k", type=positive_int, default=None,
                   help="importance samples per example for log p(x), IWAE and the ELBO "
                   "(default 5000; at least 2; where z can be summed over, log p(x) is exact "
                   "and nothing is sampled unless --k is given)")
    p.add_argument("--iwae-k", type=positive_int, default=50, help="k of the IWAE bound (50)")
    p.add_argument("--seed", type=seed, default=0,
                   help="seeds the samples of z: the same seed gives the same numbers (default 0)")
    add_model_option(p)
    add_json_option(p, "the scores", default="RUN/evaluation.json")


def run(args: argparse.Namespace) -> int:
    check_output_file(args.json, "--json")
    if args.k is not None and args.k < 2:
        raise ConfigError("--k must be at least 2 (the standard error needs two samples)")
    run = workflows.Run.load(args.run, model=args.model)
    run.fitted()  # the model loads (or is refused) before any data is read
    rows = None  # the file's own rows
    if args.data is not None:
        if getattr(run.fitted(), "schema_", None) is not None:  # a table: by the run's columns
            x = run.read_table(args.data, args.header, args.missing or ()).x
        else:
            x = runs.load_data(args.data, run.config["data"].get("binarize"), args.header).x
        split, where = "file", args.data
    else:
        (x, rows), split, where = run.examples(args.split), args.split, run.config["data"]["source"]
    run.fitted().as_tensor(x, where=where)  # width and support checked before any work
    with memory_guard("the evaluation", "use a smaller --k or --iwae-k"), in_file_rows(rows):
        scores = run.evaluate(x, k=args.k, iwae_k=args.iwae_k, seed=args.seed)
    found = scores.pop("diagnostics")
    result = {**scores, "split": split, "source": str(where), "seed": args.seed,
              "diagnostics": found}
    out = human_output(args.json)
    print(format_table(SCORE_HEADERS, [score_row(split, scores)]), file=out)
    print(f"({score_note(scores)})", file=out)
    for line in diagnostics_lines(found, split):
        print(line, file=sys.stderr if line.startswith("warning") else out)
    write_json_output(args.json or str(args.run / "evaluation.json"), result)
    return 0
