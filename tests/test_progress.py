"""Progress bars: on stderr when it is a terminal (even one that reports no size, as under
``script``), and not a byte of them in a pipe."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import termios
import threading
from pathlib import Path

import forked
import numpy as np
import pytest

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
