"""``elbokit datasets``: the named data sets, and fetching the ones that do not ship."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data import DATASETS, READERS, mnist
from . import COMMANDS
from .common import format_table


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help=COMMANDS[name],
                       description="List the data sets that --data accepts by name. MNIST and "
                       f"binarized MNIST are read from ${mnist.ENV} (default "
                       "~/.cache/elbokit/data); --download fetches them there, verified by "
                       "SHA-256. Nothing else ever downloads.")
    p.add_argument("--download", choices=tuple(mnist.FILES), default=None, metavar="NAME",
                   help=f"fetch a data set ({', '.join(mnist.FILES)}) and verify its checksum")
    p.add_argument("--to", type=Path, default=None, metavar="DIR",
                   help=f"where to put it (default ${mnist.ENV} or ~/.cache/elbokit/data)")


def run(args: argparse.Namespace) -> int:
    if args.download is not None:
        path = mnist.download(args.download, args.to)
        print(f"{args.download}: verified in {path}")
        if args.to is not None:
            print(f"(set {mnist.ENV}={args.to} for --data {args.download} to find it)")
        return 0
    rows = [(name, DATASETS.help(name)) for name in DATASETS]
    rows.append(("sms-spam", "5,574 SMS labelled ham/spam (CC BY 4.0), for `elbokit classify`; bundled"))
    print(format_table(("name", "description"), rows))
    print(f"\n--data also accepts a path to a {', '.join(READERS)} file "
          "(classify: labelled text files and e-mail folders too).")
    print(f"MNIST sets are read from {mnist.data_root()} (${mnist.ENV}).")
    return 0
