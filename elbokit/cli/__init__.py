"""The ``elbokit`` command: one module per subcommand, each with ``add_parser`` and ``run``.

Input problems (:class:`~elbokit.errors.ElbokitError` and argument errors) end in one line on
stderr and exit status 2, never a traceback.

A command's module (and torch, scikit-learn and matplotlib with it) is imported only when
that command runs: ``elbokit --help`` lists the commands from :data:`COMMANDS` alone, and
``elbokit fit ...`` builds only ``fit``'s options.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

DESCRIPTION = "Learn latent-variable generative models by maximizing the evidence lower bound (ELBO)."
# Each command's one line, declared here once (its module's parser takes it from here), in
# the order `elbokit --help` lists them.
COMMANDS: dict[str, str] = {
    "fit": "train a model by maximizing the ELBO",
    "evaluate": "score a trained run (ELBO, IWAE, log p(x))",
    "sample": "draw samples from a trained run",
    "sweep": "train one model per beta and draw the rate-distortion plane",
    "report": "write a run's report.html (figures, scores, diagnostics)",
    "classify": "generative vs discriminative classifiers (e.g. spam)",
    "predict": "classify new texts or rows with a saved classify run",
    "datasets": "list the named data sets (or download MNIST)",
    "impute": "fill the missing cells of a table with a trained run",
    "score": "score each row of a table (anomaly detection)",
}


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``elbokit fit: error: ... (see --help)``, exit 2."""

    def error(self, message: str):  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def version() -> str:
    """elbokit's version (the package's ``__version__``: importing it loads nothing else)."""
    from .. import __version__

    return __version__


def command(name: str) -> ModuleType:
    """The module of command ``name`` (imported now)."""
    return importlib.import_module(f"{__name__}.{name}")


def build_parser(only: str | None = None) -> Parser:
    """The ``elbokit`` parser: every command with its options (``only=None``), or only
    command ``only``'s options, the others listed by name and help line (``only=""``: none;
    nothing of elbokit's beyond this module is imported then)."""
    parser = Parser(prog="elbokit", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"elbokit {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name, line in COMMANDS.items():
        if only is None or name == only:
            command(name).add_parser(sub, name)
        else:
            sub.add_parser(name, help=line)
    return parser


def one_line(message: str) -> str:
    """``message`` on one line (a multi-line message's lines joined by " / ")."""
    return " / ".join(part.strip() for part in message.splitlines() if part.strip())


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    from ..progress import write_line

    write_line(f"elbokit: warning: {one_line(str(message))}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input, 130 interrupted, 141 when
    the reader of a pipe stopped reading)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv in (["-h"], ["--help"]):  # the list of commands: no command module is imported
        build_parser(only="").print_help()
        return 0
    with warnings.catch_warnings():  # warnings as one line each, restored afterwards
        warnings.showwarning = _one_line_warning
        return _main(argv)


def _main(argv: list[str]) -> int:
    # No command, or a name that is none: refused with the list of commands before anything
    # else (torch, scikit-learn, installed plugins) is imported.
    chosen = next((a for a in argv if not a.startswith("-")), "")
    if chosen not in COMMANDS:
        try:
            build_parser(only="").parse_args(argv)
        except SystemExit as e:  # --version (0) or a usage error (2)
            return e.code if isinstance(e.code, int) else 2
    from .. import distributed, plugins
    from ..allocator import keep_freed_memory
    from ..errors import ElbokitError
    from ..progress import on_terminal, showing

    try:
        plugins.load_components()  # installed packages' observation models, estimators, ...
        args = build_parser(only=chosen).parse_args(argv)  # the command's own options only
        keep_freed_memory()  # large tensors reuse freed memory rather than fault it in anew
        # Progress bars on a terminal only (never in pipes, files, tests, CI), and from one
        # process under torchrun.
        bars = on_terminal(getattr(args, "quiet", False)) and distributed.launched_rank() == 0
        with showing(bars):
            return command(args.command).run(args) or 0
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
