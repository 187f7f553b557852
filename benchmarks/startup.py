"""Start-up time as a user feels it: fresh processes, wall-clock, medians.

Each case is a new interpreter, timed from before it starts to its exit, interleaved with
the others round by round (so a slow spell of the machine touches every case alike), and
reported as the median over ``--repeats`` rounds next to two references measured in the same
rounds: a bare interpreter (``python -c pass``) and ``import torch``, the floor of anything
that computes.

``fit: first step`` is the time from the process's start to the first training step of
``elbokit fit --data digits --epochs 1`` (the step itself excluded), read in the process by
wrapping :meth:`elbokit.training.Trainer._step`; the rest of that run (evaluation, report)
is not part of it.

    .venv/bin/python benchmarks/startup.py --repeats 7      # about a minute on 2 cores

The figures are in docs/howto/startup.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The first training step, timed inside the `elbokit fit` process.
FIRST_STEP = """
import sys, time
start = time.perf_counter()
from elbokit import training
from elbokit.cli import main
step = training.Trainer._step
seen = []
def timed(self, *args, **kwargs):
    if not seen:
        seen.append(time.perf_counter() - start)
    return step(self, *args, **kwargs)
training.Trainer._step = timed
code = main(sys.argv[1:])
print("FIRST_STEP", seen[0], file=sys.stderr)
sys.exit(code)
"""


def cases(python: str, elbokit: str, out: Path) -> dict[str, list[str]]:
    return {
        "python -c pass (reference)": [python, "-c", "pass"],
        "import torch (reference)": [python, "-c", "import torch"],
        "import sklearn.base": [python, "-c", "import sklearn.base"],
        "import elbokit": [python, "-c", "import elbokit"],
        "from elbokit import VAE": [python, "-c", "from elbokit import VAE"],
        "elbokit --help": [elbokit, "--help"],
        "elbokit --version": [elbokit, "--version"],
        "elbokit fitt (unknown command)": [elbokit, "fitt"],
        "elbokit fit --help": [elbokit, "fit", "--help"],
        "elbokit fit --epochs abc (argument error)": [elbokit, "fit", "--epochs", "abc"],
        "fit: first step": [python, "-c", FIRST_STEP, "fit", "--data", "digits", "--epochs", "1",
                            "--quiet", "--no-report", "--eval-k", "50", "--out", str(out),
                            "--overwrite"],
    }


def time_once(argv: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if "FIRST_STEP" in result.stderr:
        return float(result.stderr.rsplit("FIRST_STEP", 1)[1].split()[0])
    if result.returncode not in (0, 2):
        raise SystemExit(f"{argv}: exit {result.returncode}\n{result.stderr}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="also write the medians here")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        todo = cases(sys.executable, str(bin_dir / "elbokit"), Path(tmp) / "run")
        times: dict[str, list[float]] = {name: [] for name in todo}
        for _ in range(args.repeats):
            for name, argv in todo.items():
                times[name].append(time_once(argv))
    medians = {name: statistics.median(values) for name, values in times.items()}
    torch_s = medians["import torch (reference)"]
    print(f"{'case':44s} {'median (s)':>10s} {'min (s)':>8s} {'/ import torch':>14s}")
    for name, values in times.items():
        print(f"{name:44s} {medians[name]:10.2f} {min(values):8.2f} {medians[name] / torch_s:14.2f}")
    if args.json:
        args.json.write_text(json.dumps(medians, indent=1) + "\n")


if __name__ == "__main__":
    main()
