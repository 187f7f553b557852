"""Seed-to-seed spread of the numbers the docs quote: the tolerances of their tests.

A number a document quotes (the demo's test ELBO, a row of a table of the docs, the guide's
scores) comes from one run on one machine. Another machine follows another float
trajectory from the same seed (summation order, vector kernels per instruction set), and
training amplifies a last-bit difference into a difference of the same order as changing
the seed. So the tests that re-run a documented command compare with a tolerance of a few
seed-to-seed standard deviations, measured here: each command is run with ``--seed`` s for
every s in ``--seeds`` and the mean and standard deviation of its scores are printed (and
kept in ``--results``, so an interrupted measurement resumes where it stopped).

    python benchmarks/seed_spread.py                   # every documented command, seeds 1-4
    python benchmarks/seed_spread.py --only demo --seeds 1,2,3,4,5,6

The commands and the scores read from each run are listed in ``COMMANDS``; the tests cite
the figures this prints (tests/test_documented_numbers.py, tests/test_guide.py).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from documented import COMMANDS, scores  # noqa: E402

from elbokit.cli import main as elbokit  # noqa: E402


def run(command: str, seed: int, where: Path) -> dict[str, float]:
    argv = shlex.split(command)[1:] + ["--seed", str(seed), "--out", str(where / "run"),
                                       "--overwrite", "--no-report", "--quiet"]
    if elbokit(argv) != 0:
        raise SystemExit(f"failed: {shlex.join(argv)}")
    return scores(where / "run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3,4", help="comma-separated seeds (1,2,3,4)")
    parser.add_argument("--only", default=None, help="comma-separated command names")
    parser.add_argument("--results", type=Path, default=ROOT / "runs" / "seed_spread.json")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    names = args.only.split(",") if args.only else list(COMMANDS)
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    for name in names:
        command = COMMANDS[name]
        done = results.setdefault(name, {"command": command, "runs": {}})
        if done["command"] != command:  # the command changed: measure again
            done.update(command=command, runs={})
        for seed in seeds:
            if str(seed) in done["runs"]:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                done["runs"][str(seed)] = run(command, seed, Path(tmp))
            args.results.parent.mkdir(parents=True, exist_ok=True)
            args.results.write_text(json.dumps(results, indent=1))
        values = list(done["runs"].values())
        print(f"{name}: {command}")
        for key in values[0]:
            column = [v[key] for v in values]
            sd = statistics.stdev(column) if len(column) > 1 else float("nan")
            print(f"  {key:>14}: mean {statistics.fmean(column):9.3f}  sd {sd:.3f}  "
                  f"(seeds {','.join(done['runs'])})")


if __name__ == "__main__":
    main()
