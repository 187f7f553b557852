"""Every figure the documentation quotes from a training command comes with that command,
and re-running it gives the figure again: on this machine to the last digit printed, on
another CPU within the seed-to-seed spread.

The commands are listed once, in ``tests/documented.py``; the table of
docs/tutorials/discrete.md shows each beside its numbers (the test checks that the row
holds the command and the figures), and README.md's headline table quotes the demo's. The
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

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "docs" / "tutorials" / "discrete.md"  # the table of every documented command
README = ROOT / "README.md"


def quoted_row(page: Path, needle: str) -> str:
    rows = [line for line in page.read_text().splitlines() if needle in line and line.startswith("|")]
    assert len(rows) == 1, f"{page.name} has {len(rows)} table rows showing {needle}"
    return rows[0].replace("−", "-")


@pytest.mark.parametrize("name", sorted(QUOTED))
def test_the_docs_show_each_command_with_its_figures(name):
    row = quoted_row(TABLE, f"`{COMMANDS[name]}`")
    for value in QUOTED[name].values():
        assert f"{value:.2f}" in row, (name, value, row)


def test_the_readme_quotes_the_demo_figures():
    # `make demo` runs the documented command (with --seed 0), so its figures are the demo's.
    recipe = re.sub(r"\s*\\\n\s*", " ", (ROOT / "Makefile").read_text())
    assert COMMANDS["demo"].replace("elbokit ", "$(BIN)/elbokit ", 1) + " --seed 0" in recipe
    row = quoted_row(README, "`make demo`")
    for value in QUOTED["demo"].values():
        assert f"{value:.2f}" in row, (value, row)


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
