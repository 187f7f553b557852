"""Progress bars: drawn on stderr when it is a terminal and in a notebook, never into pipes,
files, tests or CI.

The ``elbokit`` command decides once (:func:`on_terminal`) and opens :func:`showing` around
the subcommand (rank 0 only, under torchrun); every long step (training epochs,
importance-sampled scoring, EM, each classifier's training) asks for a :func:`progress_bar`,
which is drawn inside that block and silent outside it. Library users get bars with an
estimator's ``progress=True`` or by opening :func:`showing` themselves; in a notebook (an
IPython kernel: :func:`in_notebook`) they get them without asking, and ``showing(False)``
turns them off. tqdm.auto draws them there as widgets when ipywidgets is installed
(``pip install elbokit[notebook]``), as text otherwise.

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
import warnings
from collections.abc import Iterable, Iterator

from tqdm.std import TqdmWarning

# In a notebook without ipywidgets, tqdm.auto warns "IProgress not found. Please update jupyter
# and ipywidgets" when imported (here: on `import elbokit`'s first model) and falls back to
# text bars. Those render well in a notebook (its output honours the carriage returns), so
# the warning would only put a red box under the first cell of every such notebook, and its
# advice is not what to do: docs/howto/notebooks.md says how to get widgets (the `notebook`
# extra). tqdm.auto itself already silences its TqdmExperimentalWarning.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="IProgress not found", category=TqdmWarning)
    from tqdm.auto import tqdm

FALLBACK_SIZE = (80, 24)  # columns, rows

# True/False inside showing(on); None outside any: in_notebook() decides.
_SHOWN: contextvars.ContextVar[bool | None] = contextvars.ContextVar("elbokit_progress",
                                                                    default=None)


def in_notebook() -> bool:
    """Whether this process is an IPython kernel (Jupyter, JupyterLab, VS Code's notebooks,
    Colab): IPython is loaded and its shell has a kernel. IPython is never imported here: a
    process that has not loaded it is no kernel. A terminal IPython is not one (its stderr
    is a terminal: :func:`on_terminal`)."""
    get_ipython = getattr(sys.modules.get("IPython"), "get_ipython", None)
    if get_ipython is None:
        return False
    try:
        shell = get_ipython()
    except Exception:  # an IPython half imported, or replaced by something else
        return False
    return getattr(shell, "kernel", None) is not None


def on_terminal(quiet: bool = False) -> bool:
    """Whether a command should draw progress bars: not ``quiet``, and stderr is a terminal
    or the command runs in a notebook's kernel (``elbokit.cli.main([...])`` in a cell)."""
    if quiet:
        return False
    try:
        if sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):  # stderr replaced by an object without a file, or closed
        pass
    return in_notebook()


@contextlib.contextmanager
def showing(on: bool = True) -> Iterator[None]:
    """Inside the block, :func:`progress_bar` draws its bars (``on=False``: it does not)."""
    token = _SHOWN.set(on)
    try:
        yield
    finally:
        _SHOWN.reset(token)


def shown() -> bool:
    """Whether bars are drawn here without being asked for: inside ``showing(True)``, or
    outside any :func:`showing` block in a notebook (:func:`in_notebook`)."""
    on = _SHOWN.get()
    return in_notebook() if on is None else on


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
