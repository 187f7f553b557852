"""``elbokit report``: (re)write a run's self-contained ``report.html`` from its files."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import report


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help="write a run's report.html (figures, scores, diagnostics)",
                       description="Write RUN/report.html: one self-contained page (no scripts, "
                       "no external resources, figures embedded) with the run's configuration, "
                       "scores, diagnostics explained, figures and training log, or for a sweep "
                       "its rate-distortion table and figure. Renders the files in RUN only: "
                       "nothing is trained or evaluated.")
    p.add_argument("run", type=Path, metavar="RUN",
                   help="run directory written by `elbokit fit` or `elbokit sweep`")


def run(args: argparse.Namespace) -> int:
    path = report.write_report(args.run)
    print(f"report: {path}")
    return 0
