"""Every figure README.md quotes from a training command comes with that command, and
re-running it gives the figure again: on this machine to the last digit printed, on another
CPU within the seed-to-seed spread.

The commands are listed once, in ``tests/documented.py``; the README shows each beside its
numbers (the test checks that the README row holds the command and the figures). The
tolerance is 4 seed-to-seed standard deviations (``SPREAD`` in ``documented.py``, measured by
``benchmarks/seed_spread.py`` on seeds 1-4), with a floor of 0.01 nats: another machine
follows another float trajectory from the same seed, and training amplifies a last-bit
difference to about the size of a change of seed (see docs/design.md).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from documented import COMMANDS, QUOTED, SPREAD, scores

from elbokit.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def quoted_row(command: str) -> str:
    rows = [line for line in README.read_text().splitlines() if f"`{command}`" in line]
    assert len(rows) == 1, f"README has {len(rows)} rows showing `{command}`"
    return rows[0].replace("−", "-")


@pytest.mark.parametrize("name", sorted(QUOTED))
def test_the_readme_shows_each_command_with_its_figures(name):
    row = quoted_row(COMMANDS[name])
    for value in QUOTED[name].values():
        assert f"{value:.2f}" in row, (name, value, row)


@pytest.mark.parametrize("name", sorted(QUOTED))
def test_each_documented_command_gives_its_quoted_figures(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = shlex.split(COMMANDS[name])[1:] + ["--seed", "0", "--out", "run", "--no-report"]
    assert main(argv) == 0
    got = scores(tmp_path / "run")
    for key, value in QUOTED[name].items():
        tolerance = max(4 * SPREAD[name][key], 0.01)
        assert abs(got[key] - value) <= tolerance, (name, key, got[key], value, tolerance)


def test_every_documented_command_has_a_measured_spread():
    assert set(QUOTED) <= set(SPREAD) <= set(COMMANDS)
    assert all(re.fullmatch(r"elbokit fit [^`]*", command) for command in COMMANDS.values())
