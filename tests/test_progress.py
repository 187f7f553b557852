"""Progress bars: on stderr when it is a terminal (even one that reports no size, as under
``script``) and in a notebook's kernel, and not a byte of them in a pipe."""

from __future__ import annotations

import fcntl
import importlib
import importlib.util
import os
import pty
import struct
import sys
import termios
import threading
import types
import warnings
from pathlib import Path

import forked
import numpy as np
import pytest
from tqdm.std import TqdmWarning
from tqdm.std import tqdm as std_tqdm

from elbokit import progress

FAST = ["--epochs", "2", "--hidden", "16", "--latent-dim", "2", "--eval-k", "20", "--no-report"]
BAR = "%|"  # tqdm's "42%|####     |"


def elbokit(argv: list, cwd: Path, terminal: tuple[int, int] | None) -> tuple[int, str, str]:
    """Run ``python -m elbokit ARGV`` (forked: tests/forked.py) with stdout captured and
    stderr a pseudo-terminal of ``terminal`` (rows, columns) -- (0, 0): one that reports no
    size, as ``script`` makes under a process without a terminal -- or captured (None).
    Returns (code, stdout, stderr)."""
    if terminal is None:
        process = forked.elbokit(argv, cwd)
        out, err = process.communicate(timeout=300)
        return process.returncode, out, err
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", *terminal, 0, 0))
    chunks: list[bytes] = []

    def drain() -> None:  # while the command runs: a full terminal buffer would block it
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                return
            if not chunk:
                return
            chunks.append(chunk)

    try:
        process = forked.elbokit(argv, cwd, stderr=follower)
        os.close(follower)
        reader = threading.Thread(target=drain)  # started after the fork: the child has none
        reader.start()
        out, _ = process.communicate(timeout=300)
        reader.join(timeout=30)
    finally:
        os.close(leader)
    return process.returncode, out, b"".join(chunks).decode("utf-8", "replace")


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("progress")
    np.save(folder / "x.npy", np.random.default_rng(0).normal(size=(200, 4)))
    return folder


@pytest.mark.parametrize("terminal", [(0, 0), (24, 80)], ids=["unsized", "24x80"])
def test_fit_and_evaluate_draw_progress_on_a_terminal(table, terminal):
    out_dir = table / f"run-{terminal[1]}"
    code, out, err = elbokit(["fit", "--data", "x.npy", "--out", out_dir, *FAST], table, terminal)
    assert code == 0, err
    assert "training:" in err and "log p(x), k=20:" in err and BAR in err  # epochs, final scores
    assert "ELBO" in out and BAR not in out and "\r" not in out  # the table alone on stdout
    code, out, err = elbokit(["evaluate", out_dir, "--k", "10"], table, terminal)
    assert code == 0 and "log p(x), k=10:" in err and BAR in err, err
    assert "\r" not in out


def test_em_and_classify_draw_progress_on_a_terminal(table):
    code, _, err = elbokit(["fit", "--data", "x.npy", "--out", table / "mixture", "--model",
                            "mixture", "--components", "2", "--no-report"], table, (0, 0))
    assert code == 0 and "EM:" in err and BAR in err, err
    code, out, err = elbokit(["classify", "--data", "digits", "--method", "discriminative"], table,
                             (0, 0))
    assert code == 0 and "classify:" in err and "training:" in err and BAR in err, err
    assert "logistic-regression" in out


def test_quiet_draws_no_bar_on_a_terminal(table):
    code, _, err = elbokit(["fit", "--data", "x.npy", "--out", table / "quiet", *FAST, "--quiet"],
                           table, (0, 0))
    assert code == 0 and BAR not in err and "\r" not in err, err


def test_no_progress_bytes_in_a_pipe(table):
    code, out, err = elbokit(["fit", "--data", "x.npy", "--out", table / "piped", *FAST], table, None)
    assert code == 0, err
    assert err == "" and "\r" not in out and BAR not in out
    code, out, err = elbokit(["classify", "--data", "digits", "--method", "discriminative"], table,
                             None)
    assert code == 0 and err == "" and "\r" not in out


# -- notebooks: an IPython kernel found without importing IPython (no kernel needed here) --


class Shell:
    """An IPython shell: a kernel's (ZMQInteractiveShell) holds its kernel, a terminal's none."""

    def __init__(self, kernel: object | None) -> None:
        if kernel is not None:
            self.kernel = kernel


def fake_ipython(shell: object | None = None, fails: bool = False) -> types.ModuleType:
    """A stand-in for an imported IPython whose ``get_ipython()`` returns ``shell`` (or raises)."""
    module = types.ModuleType("IPython")

    def get_ipython() -> object | None:
        if fails:
            raise RuntimeError("half imported")
        return shell

    module.get_ipython = get_ipython
    return module


def test_bars_are_drawn_in_a_notebook_kernel_and_off_when_told(monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert not progress.in_notebook() and not progress.shown()
    assert "IPython" not in sys.modules  # asking did not import it
    for ipython in (fake_ipython(None), fake_ipython(Shell(None)), fake_ipython(fails=True)):
        # IPython imported by a script, a terminal IPython (its stderr is a terminal), a
        # broken import: no kernel, and no bar outside showing(True).
        monkeypatch.setitem(sys.modules, "IPython", ipython)
        assert not progress.in_notebook() and not progress.shown() and not progress.on_terminal()
        assert progress.progress_bar(range(3)).disable
    monkeypatch.setitem(sys.modules, "IPython", fake_ipython(Shell(kernel=object())))
    assert progress.in_notebook() and progress.shown()
    # stderr is pytest's capture, no terminal: the kernel alone makes the command draw bars.
    assert progress.on_terminal() and not progress.on_terminal(quiet=True)
    with progress.progress_bar(range(3), desc="in a cell") as bar:
        assert not bar.disable
        list(bar)
    assert "in a cell" in capsys.readouterr().err
    assert progress.progress_bar(range(3), show=False).disable
    with progress.showing(False):  # explicitly off (the CLI's --quiet opens this block)
        assert not progress.shown() and progress.progress_bar(range(3)).disable
        with progress.showing(True):
            assert progress.shown()
    assert progress.shown()


def test_a_kernel_without_ipywidgets_gets_text_bars_and_no_warning(monkeypatch):
    """tqdm.auto's import in a kernel without ipywidgets, simulated: IPython and ipykernel's
    shell module stand-ins loaded, ipywidgets not installed, tqdm's automatic modules not yet
    imported. tqdm warns there ("IProgress not found"); elbokit.progress imports it quietly."""
    monkeypatch.setitem(sys.modules, "IPython", fake_ipython(Shell(kernel=object())))
    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", types.ModuleType("ipykernel.zmqshell"))
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # `import ipywidgets` fails
    chosen = ("tqdm.auto", "tqdm.autonotebook", "tqdm.notebook")
    before = {name: sys.modules.pop(name) for name in chosen if name in sys.modules}
    try:
        # What elbokit.progress guards against: the warning, under these conditions.
        with pytest.warns(TqdmWarning, match="IProgress not found"):
            importlib.import_module("tqdm.autonotebook")
        for name in chosen:
            sys.modules.pop(name, None)
        spec = importlib.util.spec_from_file_location("progress_in_a_kernel", progress.__file__)
        fresh = importlib.util.module_from_spec(spec)
        # Recorded, not raised: tqdm's warning is raised inside a try block that would catch it.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            spec.loader.exec_module(fresh)
        assert [str(w.message) for w in caught] == []
        assert issubclass(fresh.tqdm, std_tqdm)
        assert not any(c.__module__ == "tqdm.notebook" for c in fresh.tqdm.__mro__)  # text bars
    finally:
        for name in chosen:
            sys.modules.pop(name, None)
        sys.modules.update(before)
