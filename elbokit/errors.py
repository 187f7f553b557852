"""Errors a user can act on.

Everything raised as an :class:`ElbokitError` is a problem with the input (data, arguments,
files), not a bug: the CLI prints its message on one line and exits with status 2.
"""

import contextlib
import contextvars
import json
import re
from collections.abc import Iterator, Sequence

import numpy as np
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError


class ElbokitError(Exception):
    """A problem with what the user gave us; the message says what and where."""


class DataError(ElbokitError, ValueError):
    """Data that cannot be read or does not fit the model (shape, values, NaN, ...)."""


class ConfigError(ElbokitError, ValueError):
    """An impossible option value or combination of options."""


class NotFittedError(ConfigError, _SklearnNotFittedError):
    """A model used before ``fit`` (or ``load``); scikit-learn's ``NotFittedError`` too."""


class DataWarning(UserWarning):
    """Data that can be read but look wrong (a numeric header, an extreme outlier, absurd
    scores), or were read with a guess the user should know about (an index column dropped)."""


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


def describe_column(j: int, columns: Sequence[str] | None = None) -> str:
    """``column "height" (3)`` for column ``j`` (counting from 0; shown from 1, as in a
    spreadsheet) of a table whose header names it, else ``column 3``."""
    name = columns[j] if columns is not None and j < len(columns) else ""
    if not name:
        return f"column {j + 1}"
    shown = name if len(name) <= 40 else name[:37] + "..."
    # JSON quoting: a name with quotes, tabs or newlines still gives a one-line message.
    return f"column {json.dumps(shown, ensure_ascii=False)} ({j + 1})"


def brief(error: BaseException, limit: int = 160) -> str:
    """An exception's message on one short line (numpy quotes whole headers in its own)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


@contextlib.contextmanager
def memory_guard(what: str, advice: str) -> Iterator[None]:
    """Turn a failed allocation inside the block (a model or a batch sized by the options:
    ``--hidden 100000000``, ``-n 10**12``) into a one-line :class:`ConfigError`:
    ``"<what> does not fit in memory (<n> bytes asked for); <advice>"``."""
    try:
        yield
    except MemoryError:
        raise ConfigError(f"{what} does not fit in memory; {advice}") from None
    except RuntimeError as e:  # torch's allocator: "... can't allocate memory: you tried to ..."
        if "allocate" not in str(e):
            raise
        asked = re.search(r"allocate (\d+) bytes", str(e))
        size = f" ({int(asked.group(1)):,} bytes asked for)" if asked else ""
        raise ConfigError(f"{what} does not fit in memory{size}; {advice}") from None


def in_file_rows(rows: np.ndarray | None) -> contextlib.AbstractContextManager:
    """Inside the block, messages name example ``i`` of a split as row ``rows[i]`` of the
    data (see :func:`elbokit.errors.numbered_rows`); ``None``: as given."""
    return numbered_rows(rows) if rows is not None else contextlib.nullcontext()
