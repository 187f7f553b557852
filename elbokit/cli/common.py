"""Pieces every subcommand shares: a one-line-error parser, argument types, tables."""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from ..checkpoint import atomic_write
from ..data import HEADER_CHOICES
from ..errors import ConfigError, DataError, in_file_rows, memory_guard, numbered_rows  # noqa: F401 (re-exported)

# Option values beyond float32's range (about 3.4e38) overflow in the models' arithmetic.
MAX_FLOAT_OPTION = 1e38


def _number(kind: type, low: float | None, low_inclusive: bool, what: str,
            high: float | None = None):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        if low is not None and (value < low or (value == low and not low_inclusive)):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text!r} is too large for {what} "
                                             f"(at most {high:g})" if kind is float else
                                             f"{text!r} is too large for {what}")
        return value
    return parse


positive_int = _number(int, 1, True, "a positive integer")
nonnegative_int = _number(int, 0, True, "a non-negative integer")
positive_float = _number(float, 0, False, "a positive number", MAX_FLOAT_OPTION)
nonnegative_float = _number(float, 0, True, "a non-negative number", MAX_FLOAT_OPTION)
# Seeds reach torch's 64-bit generator (and seed + 1 is used too).
seed = _number(int, 0, True, "a seed (an integer from 0 to 2^63 - 1)", 2**63 - 1)


def fraction(text: str) -> float:
    value = nonnegative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction in [0, 1)")
    return value


def open_unit(text: str) -> float:
    """A float strictly between 0 and 1."""
    value = positive_float(text)
    if not value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def unit_interval(text: str) -> float:
    """A float in [0, 1)."""
    value = nonnegative_float(text)
    if not value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def add_header_option(group) -> None:
    """``--header``, on every command that reads a table of numbers (one declaration)."""
    group.add_argument("--header", default="auto", choices=HEADER_CHOICES,
                       help="whether a .csv/.tsv file's first row names its columns; auto: "
                       "when it holds a name, or numbers that are clearly column numbers or "
                       "years (with a warning) (default auto)")


def missing_option(text: str) -> tuple[str, ...]:
    """``--missing [TOKENS]``: ``""`` (the flag alone) -> (); ``"?,-"`` -> ("?", "-")."""
    return tuple(token.strip() for token in text.split(",")) if text.strip() else ()


def add_missing_option(group) -> None:
    """``--missing [TOKENS]``, on every command that reads a table with missing cells."""
    group.add_argument("--missing", nargs="?", const="", default=None, type=missing_option,
                       metavar="TOKENS",
                       help="cells that mark a missing value, besides the empty cell and NA, N/A, "
                       "NaN, NULL, None (e.g. --missing '?,-'); a table with missing cells is "
                       "read with them anyway, and the flag alone lets NaN in a .npy/.npz array "
                       "mark missing cells instead of being refused")


def add_run_and_table(p: argparse.ArgumentParser) -> None:
    """``RUN TABLE``: the run whose model reads the table, by the run's columns (``elbokit
    impute``, ``elbokit score``)."""
    p.add_argument("run", type=Path, metavar="RUN", help="run directory written by `elbokit fit`")
    p.add_argument("data", type=Path, metavar="TABLE", help="a .csv/.tsv/.parquet table with the "
                   "run's columns (by name)")


def add_table_reading_options(p: argparse.ArgumentParser) -> None:
    """How such a table is read and sampled: ``--header``, ``--missing``, ``--seed``,
    ``--model``."""
    add_header_option(p)
    add_missing_option(p)
    p.add_argument("--seed", type=seed, default=0, help="seeds the samples (default 0)")
    add_model_option(p)


def widths(text: str) -> tuple[int, ...]:
    """``"256,256"`` -> (256, 256); ``""`` or ``"none"`` -> () (no hidden layer)."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        return tuple(positive_int(part) for part in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of positive widths like 256,256"
        ) from None


def image_shape(text: str) -> tuple[int, int, int]:
    """``--image-shape``: ``28x28`` -> (1, 28, 28); ``3x32x32`` -> (3, 32, 32)."""
    parts = text.lower().split("x")
    try:
        values = tuple(positive_int(part) for part in parts)
    except argparse.ArgumentTypeError:
        values = ()
    if len(values) not in (2, 3):
        raise argparse.ArgumentTypeError(f"{text!r} is not an image shape like 28x28 or 1x28x28")
    return values if len(values) == 3 else (1, *values)  # type: ignore[return-value]


# The argument types by name: a declared option (a TrainConfig field, a facade's model
# option; elbokit.training.option) names the one its flag takes (the declaring layers do not
# import argparse).
PARSERS = {"positive_int": positive_int, "nonnegative_int": nonnegative_int,
           "positive_float": positive_float, "nonnegative_float": nonnegative_float,
           "open_unit": open_unit, "unit_interval": unit_interval, "seed": seed,
           "fraction": fraction, "widths": widths, "image_shape": image_shape}


def add_model_option(p: argparse.ArgumentParser) -> None:
    """``--model``: the user's model class a run was trained with, named again (elbokit
    never imports code because a run's files say so; see :mod:`elbokit.plugins`)."""
    p.add_argument("--model", default=None, metavar="PATH.py:Class|module:Class",
                   help="a run of a user's own model: the same --model it was trained with "
                   "(not needed for built-in models and installed plugins)")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned text table: text left-aligned, numbers right-aligned; None (a value
    that is not defined) shows as n/a."""
    cells = [[str(h) for h in headers]] + [[_cell(c) for c in row] for row in rows]
    sizes = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(isinstance(row[i], int | float | None) for row in rows) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(s) if num else c.ljust(s)
                       for c, s, num in zip(row, sizes, numeric, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * s for s in sizes))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


SCORE_HEADERS = ("split", "n", "ELBO", "reconstruction", "KL", "IWAE", "log p(x)", "± stderr",
                 "exact log p(x)")


def score_row(split: str, scores: dict) -> list[object]:
    ll, iwae = scores["log_likelihood"], scores.get("iwae")
    exact = scores.get("exact_log_likelihood")
    return [split, scores["n_examples"], scores["elbo"], scores["reconstruction"], scores["kl"],
            iwae["value"] if iwae else None, ll["estimate"],
            None if ll.get("exact") else ll["stderr"], exact]


def score_note(scores: dict) -> str:
    ll, iwae = scores["log_likelihood"], scores.get("iwae")
    if ll.get("exact"):
        return "nats per example; log p(x) exact: a sum over every value of z, nothing sampled"
    bound = f"IWAE with k={iwae['k']} from the same draws, " if iwae else ""
    if iwae and iwae["k"] == ll["k"]:  # one group of all the draws: the same number
        bound = f"IWAE with k={iwae['k']}: all the draws, so it equals the estimate; "
    return (f"nats per example; {bound}log p(x) importance-sampled with k={ll['k']} "
            "(stderr: Monte-Carlo error of the mean)")


def diagnostics_lines(found: dict, split: str) -> list[str]:
    """What :func:`elbokit.diagnostics.diagnose` found, as lines for the terminal."""
    per_layer = found.get("active_units_per_layer")
    layers = (f" (by stochastic layer, bottom first: {', '.join(map(str, per_layer))})"
              if per_layer else "")
    # An exact posterior's gap is 0 up to float rounding: shown as 0.00, not -0.00.
    gap = (round(found["gap"], 2) or 0.0) if "gap" in found else None
    lines = [f"diagnostics ({split}): {found['active_units']} of {found['latent_dim']} latent "
             f"variables active{layers} (Cov_x E[z_i|x] > {found['active_threshold']:g}); mutual "
             f"information I(x; z) ~ {found['mutual_information']:.2f} nats (at most "
             f"{found['mutual_information_limit']:.2f})"
             + (f"; gap log p(x) - ELBO {gap:.2f} nats" if gap is not None else "")]
    return lines + [f"warning: {w}" for w in found["warnings"]]


def naming(error: DataError, where: str, *known: str | Path | None) -> DataError:
    """``error`` with the file ``where`` named in front (the models call their input
    ``data``), unless its message names one of ``where`` and ``known`` already."""
    message = str(error)
    if any(str(name) in message for name in (where, *known) if name):
        return error
    return DataError(f"{where}: {message.removeprefix('data: ')}")


def check_output_file(path: str | Path | None, option: str) -> None:
    """Refuse an output file that cannot be written, before any work: a directory, or a
    file in a directory that does not exist (``None`` and ``-``, stdout, pass)."""
    if path is None or str(path) == "-":
        return
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a directory; give a file name")
    if not path.parent.is_dir():
        raise ConfigError(f"{option} {path}: directory {path.parent} does not exist")


def add_json_option(p: argparse.ArgumentParser, what: str, default: str | None = None) -> None:
    """``--json FILE`` for a command that prints a table: ``what`` it writes (e.g. "the
    scores"), ``default``: the file written without the option (None: none)."""
    p.add_argument("--json", default=None, metavar="FILE",
                   help=f"write {what} as JSON to FILE ('-': to stdout, which then holds the "
                   "JSON alone, and the table and notes go to stderr"
                   + (f"; default {default})" if default else ")"))


def human_output(json_path: str | None) -> TextIO:
    """Where a command prints its table and notes: stdout, unless ``--json -`` puts the JSON
    there; then stderr, so that stdout holds the JSON alone (``... --json - | jq``)."""
    return sys.stderr if json_path == "-" else sys.stdout


def write_json_output(path: str, obj: object) -> None:
    """``--json FILE``: atomically; ``-`` writes to stdout."""
    text = json.dumps(obj, indent=2) + "\n"
    if path == "-":
        sys.stdout.write(text)
    else:
        atomic_write(Path(path), text.encode())


def write_bytes_output(path: Path, write) -> None:
    """Let ``write(buffer)`` fill a buffer, then place it at ``path`` atomically."""
    buffer = io.BytesIO()
    write(buffer)
    atomic_write(path, buffer.getvalue())
