"""docs/guide.md: every command in it runs, as written, and every figure it shows exists.

The commands run in a temporary directory (their ``runs/...`` outputs land there), in the
order of the guide, since later ones read the runs of earlier ones, through the mechanism
that runs every page's runnable blocks (tests/docs_pages.py). Each must exit 0.
"""

from __future__ import annotations

import json
import re

import pytest
from docs_pages import DOCS, commands, run_page, runnable_blocks
from documented import SPREAD

GUIDE = DOCS / "guide.md"


def guide_commands() -> list[str]:
    return [command for language, body in runnable_blocks(GUIDE) if language == "sh"
            for command in commands(body)]


def test_the_guide_shows_commands_and_existing_figures():
    found = guide_commands()
    assert len(found) >= 6 and all(c.startswith("elbokit ") for c in found)
    for name in ("classify", "fit", "evaluate", "sweep", "report"):
        assert any(c.split()[1] == name for c in found), name
    images = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", GUIDE.read_text())
    assert images and all((GUIDE.parent / image).is_file() for image in images)


def test_every_command_of_the_guide_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run_page(GUIDE, tmp_path, capsys)
    assert (tmp_path / "runs/guide/vae/report.html").is_file()
    assert (tmp_path / "runs/guide/sweep/report.html").is_file()
    # The numbers the guide quotes are the ones the commands produce: to the digits printed
    # on the machine that wrote the guide; on another CPU within 4 seed-to-seed standard
    # deviations of each number (SPREAD, measured by benchmarks/seed_spread.py; a floor of
    # 0.01 nats), since training carries a last-bit rounding difference that far.
    text = GUIDE.read_text().replace("−", "-")
    test = json.loads((tmp_path / "runs/guide/vae/summary.json").read_text())["splits"]["test"]
    quoted = float(re.search(r"the ELBO is (-[\d.]+) nats per image", text).group(1))
    assert test["elbo"] == pytest.approx(quoted, abs=tolerance("guide", "elbo"))
    for run in json.loads((tmp_path / "runs/guide/sweep/sweep.json").read_text())["runs"]:
        row = re.search(rf"\| {run['beta']:g} \| ([\d.]+) \| ([\d.]+) \| (-[\d.]+) \|", text)
        assert row, run["beta"]
        name = f"guide-beta-{run['beta']:g}"
        for key, value in zip(("rate", "distortion", "elbo"), row.groups(), strict=True):
            assert run[key] == pytest.approx(float(value), abs=tolerance(name, key)), (name, key)


def tolerance(name: str, key: str) -> float:
    return max(4 * SPREAD[name][key], 0.01)
