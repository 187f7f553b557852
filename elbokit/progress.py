"""Progress bars: drawn on stderr when it is a terminal, never into pipes, files, tests or CI.

The ``elbokit`` command decides once (:func:`on_terminal`) and opens :func:`showing` around
the subcommand (rank 0 only, under torchrun); every long step (training epochs,
importance-sampled scoring, EM, each classifier's training) asks for a :func:`progress_bar`,
which is drawn inside that block and silent outside it. Library users get bars with an
estimator's ``progress=True`` or by opening :func:`showing` themselves.

A pseudo-terminal that reports a size of 0 x 0 (``script`` run from a process without a
terminal of its own, ``docker exec -t``, some CI runners and editors' terminals before they are
sized) made tqdm draw nothing at all: it takes 0 - 1 rows as the room it has and draws no
line. Such a terminal gets bars sized :data:`FALLBACK_SIZE`.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
from collections.abc import Iterable, Iterator

from tqdm.auto import tqdm

FALLBACK_SIZE = (80, 24)  # columns, rows

_SHOWN: contextvars.ContextVar[bool] = contextvars.ContextVar("elbokit_progress", default=False)


def on_terminal(quiet: bool = False) -> bool:
    """Whether a command should draw progress bars: stderr is a terminal and not ``quiet``."""
    try:
        return not quiet and sys.stderr.isatty()
    except (AttributeError, ValueError):  # stderr replaced by an object without a file, or closed
        return False


@contextlib.contextmanager
def showing(on: bool = True) -> Iterator[None]:
    """Inside the block, :func:`progress_bar` draws its bars (``on=False``: it does not)."""
    token = _SHOWN.set(on)
    try:
        yield
    finally:
        _SHOWN.reset(token)


def shown() -> bool:
    """Whether bars are drawn here without being asked for (inside ``showing(True)``)."""
    return _SHOWN.get()


def _fixed_size() -> dict:
    """tqdm's ``ncols`` and ``nrows`` of :data:`FALLBACK_SIZE` where stderr is a terminal that
    reports 0 columns or rows, else ``dynamic_ncols`` (tqdm follows the terminal as it is
    resized)."""
    try:
        columns, lines = os.get_terminal_size(sys.stderr.fileno())
    except (AttributeError, ValueError, OSError):  # not a terminal, or no file behind stderr
        return {"dynamic_ncols": True}
    if columns > 0 and lines > 0:
        return {"dynamic_ncols": True}
    return {"ncols": FALLBACK_SIZE[0], "nrows": FALLBACK_SIZE[1]}


def progress_bar(iterable: Iterable | None = None, *, total: float | None = None,
                 desc: str | None = None, unit: str = "it", show: bool | None = None,
                 **options) -> tqdm:
    """A tqdm bar on stderr: drawn when ``show`` is True, or when it is None inside
    :func:`showing`; otherwise a disabled bar that costs nothing and writes nothing. It
    clears its line when closed (``leave=False``): the command's own output follows, not a
    trail of finished bars."""
    on = shown() if show is None else show
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not on, file=sys.stderr,
                leave=False, **(_fixed_size() if on else {}), **options)


def write_line(line: str) -> None:
    """``line`` on stderr, above any bar being drawn (which is then redrawn below it)."""
    tqdm.write(line, file=sys.stderr)
