"""``elbokit report``: (re)write a run's self-contained ``report.html`` from its files."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import report, runs, workflows
from ..api import MODEL_KINDS
from . import COMMANDS
from .common import add_model_option


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help=COMMANDS[name],
                       description="Write RUN/report.html: one self-contained page (no scripts, "
                       "no external resources, figures embedded) with the run's configuration, "
                       "scores, diagnostics explained, figures and training log, or for a sweep "
                       "its rate-distortion table and figure. Nothing is trained: a model run "
                       "without figures (or with --redraw) gets its diagnostics and figures "
                       "from the saved model first.")
    p.add_argument("run", type=Path, metavar="RUN",
                   help="run directory written by `elbokit fit` or `elbokit sweep`")
    p.add_argument("--redraw", action="store_true",
                   help="model runs: recompute the diagnostics and redraw every figure (done "
                   "anyway when the run has no figures yet, e.g. after fit --no-report)")
    add_model_option(p)


def run(args: argparse.Namespace) -> int:
    config = runs.read_config(args.run, kinds=report.REPORT_KINDS)
    if config.get("kind", "vae") in MODEL_KINDS:
        path = workflows.Run.load(args.run, model=args.model).report(redraw=args.redraw)
    else:  # a sweep or a classifier comparison: its report from its files
        path = report.write_report(args.run)
    print(f"report: {path}")
    return 0
