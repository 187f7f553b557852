"""The ``elbokit`` command: one module per subcommand, each with ``add_parser`` and ``run``.

Input problems (:class:`~elbokit.errors.ElbokitError` and argument errors) end in one line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence

from .. import distributed, plugins
from ..allocator import keep_freed_memory
from ..errors import ElbokitError
from ..progress import on_terminal, showing, write_line
from . import classify, datasets, evaluate, fit, impute, predict, report, sample, score, sweep
from .common import Parser

COMMANDS = {"fit": fit, "evaluate": evaluate, "sample": sample, "sweep": sweep,
            "report": report, "classify": classify, "predict": predict, "datasets": datasets,
            "impute": impute, "score": score}


def build_parser() -> Parser:
    parser = Parser(prog="elbokit", description="Learn latent-variable generative models by "
                    "maximizing the evidence lower bound (ELBO).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name, module in COMMANDS.items():
        module.add_parser(sub, name)
    return parser


def one_line(message: str) -> str:
    """``message`` on one line (a multi-line message's lines joined by " / ")."""
    return " / ".join(part.strip() for part in message.splitlines() if part.strip())


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    write_line(f"elbokit: warning: {one_line(str(message))}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input, 130 interrupted, 141 when
    the reader of a pipe stopped reading)."""
    with warnings.catch_warnings():  # warnings as one line each, restored afterwards
        warnings.showwarning = _one_line_warning
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    try:
        plugins.load_components()  # installed packages' observation models, estimators, ...
        args = build_parser().parse_args(argv)
        keep_freed_memory()  # large tensors reuse freed memory rather than fault it in anew
        # Progress bars on a terminal only (never in pipes, files, tests, CI), and from one
        # process under torchrun.
        bars = on_terminal(getattr(args, "quiet", False)) and distributed.launched_rank() == 0
        with showing(bars):
            return COMMANDS[args.command].run(args) or 0
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else 2
    except ElbokitError as e:
        print(f"elbokit: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `elbokit ... | head`: the reader has what it wanted
        # Python flushes stdout on exit: point it at /dev/null, or that flush fails again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a command ended by SIGPIPE
    except OSError as e:  # unwritable --out, full disk, ...: say which file and why
        where = f"{e.filename}: " if e.filename else ""
        print(f"elbokit: error: {where}{one_line(str(e.strerror or e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("elbokit: interrupted", file=sys.stderr)
        return 130
