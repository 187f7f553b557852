"""Errors a user can act on.

Everything raised as an :class:`ElbokitError` is a problem with the input (data, arguments,
files), not a bug: the CLI prints its message on one line and exits with status 2.
"""

import contextlib
import contextvars
from collections.abc import Iterator

import numpy as np


class ElbokitError(Exception):
    """A problem with what the user gave us; the message says what and where."""


class DataError(ElbokitError):
    """Data that cannot be read or does not fit the model (shape, values, NaN, ...)."""


class ConfigError(ElbokitError):
    """An impossible option value or combination of options."""


class ConvergenceWarning(UserWarning):
    """An iterative fit (EM) stopped at its iteration limit before converging."""


class CheckpointError(ElbokitError):
    """A run directory or checkpoint that is missing, corrupt or of another kind."""


# The numbers of the rows being checked, when they are not 0, 1, ... (see numbered_rows).
_ROW_NUMBERS: contextvars.ContextVar[np.ndarray | None] = contextvars.ContextVar(
    "row_numbers", default=None)


@contextlib.contextmanager
def numbered_rows(numbers: np.ndarray) -> Iterator[None]:
    """Inside the block, :func:`describe_rows` calls row ``i`` of a mask ``numbers[i]``.

    Data read in chunks (:mod:`elbokit.data.stream`) is checked piece by piece with the
    checks written for a whole array; this lets their messages name a bad row by its place
    in the file instead of its place in the piece."""
    token = _ROW_NUMBERS.set(np.asarray(numbers))
    try:
        yield
    finally:
        _ROW_NUMBERS.reset(token)


def describe_rows(mask: np.ndarray, limit: int = 5) -> str:
    """'rows 3, 17, 40 (and 12 more) (counting from 0)' for the rows where ``mask`` is true."""
    idx = np.flatnonzero(mask)
    numbers = _ROW_NUMBERS.get()
    among = ""
    if numbers is not None:  # a piece of a file: the count covers the piece, not the file
        idx, among = numbers[idx], f" among rows {numbers[0]}-{numbers[-1]}"
    shown = ", ".join(str(i) for i in idx[:limit])
    more = f" (and {len(idx) - limit} more{among})" if len(idx) > limit else ""
    return f"{'row' if len(idx) == 1 else 'rows'} {shown}{more} (counting from 0)"
