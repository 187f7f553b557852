"""Errors a user can act on.

Everything raised as an :class:`ElbokitError` is a problem with the input (data, arguments,
files), not a bug: the CLI prints its message on one line and exits with status 2.
"""

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


def describe_rows(mask: np.ndarray, limit: int = 5) -> str:
    """'rows 3, 17, 40 (and 12 more) (counting from 0)' for the rows where ``mask`` is true."""
    idx = np.flatnonzero(mask)
    shown = ", ".join(str(i) for i in idx[:limit])
    more = f" (and {len(idx) - limit} more)" if len(idx) > limit else ""
    return f"{'row' if len(idx) == 1 else 'rows'} {shown}{more} (counting from 0)"
