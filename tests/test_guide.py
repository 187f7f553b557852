"""docs/guide.md: every command in it runs, as written, and every figure it shows exists.

The commands run in a temporary directory (their ``runs/...`` outputs land there), in the
order of the guide, since later ones read the runs of earlier ones. Each must exit 0.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from elbokit.cli import main

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide.md"


def commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_the_guide_shows_commands_and_existing_figures():
    found = commands()
    assert len(found) >= 6 and all(c.startswith("elbokit ") for c in found)
    for name in ("classify", "fit", "evaluate", "sweep", "report"):
        assert any(c.split()[1] == name for c in found), name
    images = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", GUIDE.read_text())
    assert images and all((GUIDE.parent / image).is_file() for image in images)


def test_every_command_of_the_guide_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for command in commands():
        code = main(shlex.split(command)[1:])
        out, err = capsys.readouterr()
        assert code == 0, f"{command}\n{err}"
    assert (tmp_path / "runs/guide/vae/report.html").is_file()
    assert (tmp_path / "runs/guide/sweep/report.html").is_file()
    # The numbers the guide quotes are the ones the commands produce. Same seed, same
    # numbers on this CPU; 0.05 nats allows for another CPU's float rounding.
    text = GUIDE.read_text().replace("−", "-")
    test = json.loads((tmp_path / "runs/guide/vae/summary.json").read_text())["splits"]["test"]
    assert test["elbo"] == pytest.approx(-20.50, abs=0.05) and "ELBO is -20.50" in text
    for run in json.loads((tmp_path / "runs/guide/sweep/sweep.json").read_text())["runs"]:
        row = re.search(rf"\| {run['beta']:g} \| ([\d.]+) \| ([\d.]+) \| (-[\d.]+) \|", text)
        assert row, run["beta"]
        quoted = [float(v) for v in row.groups()]
        assert quoted == pytest.approx([run["rate"], run["distortion"], run["elbo"]], abs=0.05)
