"""Running the ``elbokit`` command in-process, for the test modules that drive it
(test_cli.py, test_runs.py); the ``tiny`` data file they train on is a fixture in
conftest.py."""

from __future__ import annotations

from pathlib import Path

from elbokit.cli import main

# A run that trains in a second: 2 epochs of a 16-unit network, a 2-d z, 20 importance samples.
FAST = ["--epochs", "2", "--hidden", "16", "--latent-dim", "2", "--eval-k", "20", "--quiet"]


def run(capsys, *argv: object) -> tuple[int, str, str]:
    """``elbokit ARGV...``: its exit status, stdout and stderr."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def files(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (relative path -> bytes), to show a command changed nothing."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file()}
