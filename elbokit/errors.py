"""Errors a user can act on.

Everything raised as an :class:`ElbokitError` is a problem with the input (data, arguments,
files), not a bug: the CLI prints its message on one line and exits with status 2.
"""


class ElbokitError(Exception):
    """A problem with what the user gave us; the message says what and where."""


class DataError(ElbokitError):
    """Data that cannot be read or does not fit the model (shape, values, NaN, ...)."""


class ConfigError(ElbokitError):
    """An impossible option value or combination of options."""


class CheckpointError(ElbokitError):
    """A run directory or checkpoint that is missing, corrupt or of another kind."""
