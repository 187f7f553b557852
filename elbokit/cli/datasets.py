"""``elbokit datasets``: the named data sets."""

from __future__ import annotations

import argparse

from ..data import NAMED, READERS
from .common import format_table


def add_parser(sub, name: str) -> None:
    sub.add_parser(name, help="list the named data sets",
                   description="List the data sets that --data accepts by name.")


def run(args: argparse.Namespace) -> int:
    rows = [(n, d) for n, (_, d) in NAMED.items()]
    rows.append(("sms-spam", "5,574 SMS labelled ham/spam (CC BY 4.0), for `elbokit classify`; bundled"))
    print(format_table(("name", "description"), rows))
    print(f"\n--data also accepts a path to a {', '.join(READERS)} file "
          "(classify: labelled text files and e-mail folders too).")
    return 0
