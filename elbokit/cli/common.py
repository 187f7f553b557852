"""Pieces every subcommand shares: a one-line-error parser, argument types, tables."""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from ..checkpoint import atomic_write


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``elbokit fit: error: ... (see --help)``, exit 2."""

    def error(self, message: str):  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _number(kind: type, low: float | None, low_inclusive: bool, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        if low is not None and (value < low or (value == low and not low_inclusive)):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value
    return parse


positive_int = _number(int, 1, True, "a positive integer")
nonnegative_int = _number(int, 0, True, "a non-negative integer")
positive_float = _number(float, 0, False, "a positive number")
nonnegative_float = _number(float, 0, True, "a non-negative number")


def fraction(text: str) -> float:
    value = nonnegative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction in [0, 1)")
    return value


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


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned text table: text left-aligned, numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [[_cell(c) for c in row] for row in rows]
    sizes = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(isinstance(row[i], int | float) for row in rows) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(s) if num else c.ljust(s)
                       for c, s, num in zip(row, sizes, numeric, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * s for s in sizes))
    return "\n".join(lines)


def _cell(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


SCORE_HEADERS = ("split", "n", "ELBO", "reconstruction", "KL", "IWAE", "log p(x)", "± stderr",
                 "exact log p(x)")


def score_row(split: str, scores: dict) -> list[object]:
    ll = scores["log_likelihood"]
    exact = scores.get("exact_log_likelihood")
    return [split, scores["n_examples"], scores["elbo"], scores["reconstruction"], scores["kl"],
            scores["iwae"]["value"], ll["estimate"], ll["stderr"], "n/a" if exact is None else exact]


def score_note(scores: dict) -> str:
    ll = scores["log_likelihood"]
    return (f"nats per example; IWAE with k={scores['iwae']['k']}, log p(x) importance-sampled "
            f"with k={ll['k']} (stderr: Monte-Carlo error of the mean)")


def diagnostics_lines(found: dict, split: str) -> list[str]:
    """What :func:`elbokit.diagnostics.diagnose` found, as lines for the terminal."""
    lines = [f"diagnostics ({split}): {found['active_units']} of {found['latent_dim']} latent "
             f"variables active (Cov_x E[z_i|x] > {found['active_threshold']:g}); mutual "
             f"information I(x; z) ~ {found['mutual_information']:.2f} nats (at most "
             f"{found['mutual_information_limit']:.2f})"
             + (f"; gap log p(x) - ELBO {found['gap']:.2f} nats" if "gap" in found else "")]
    return lines + [f"warning: {w}" for w in found["warnings"]]


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
