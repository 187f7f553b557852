"""Where the time of ``elbokit fit`` goes: set-up, training, evaluation, diagnostics, report.

Runs the command as a user does (a fresh process each time, default options but those
named) and splits its wall-clock by the phases it records in ``summary.json``
(``timings``); set-up is the rest (the interpreter, imports, reading and checking the
data). Cases, on the fixed binarized MNIST (``../shared/data/binarized_mnist``, skipped
with a message without it):

    mixture     --model mixture --components 50 --fit gradient --likelihood bernoulli
                --epochs 1 on the first 20,000 training images (z is enumerated: exact)
    vae-1       --likelihood bernoulli --hidden 400 --latent-dim 20 --epochs 1 on the
                50,000 training images (importance-sampled; k fitted to the training time)
    vae-20      the same with --epochs 20

The aims of issue 15: the mixture case under 15 s in all; the VAE's work after training
(evaluation, diagnostics, report) at most a quarter of its 20-epoch training time.

    .venv/bin/python benchmarks/fit_phases.py [--cases mixture,vae-1,vae-20] [--out DIR]
        [--repeats 1]

Resumable: each finished case's figures are kept in ``DIR/results.json`` and skipped when
the command runs again (``--fresh`` starts over). The table is printed and written to
``DIR/results.md``. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_DATA  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "mixture": ("train20k.npy", ["--model", "mixture", "--components", "50", "--fit", "gradient",
                                 "--likelihood", "bernoulli", "--epochs", "1"]),
    "vae-1": ("train50k.npy", ["--likelihood", "bernoulli", "--hidden", "400", "--latent-dim", "20",
                               "--epochs", "1"]),
    "vae-20": ("train50k.npy", ["--likelihood", "bernoulli", "--hidden", "400", "--latent-dim", "20",
                                "--epochs", "20"]),
}
PHASES = ("training", "evaluation", "diagnostics", "report")


def write_data(data: Path, out: Path) -> None:
    with np.load(data, allow_pickle=False) as archive:
        train = archive["x_train"].reshape(-1, 784).astype(np.float32)
    for name, rows in (("train20k.npy", 20000), ("train50k.npy", 50000)):
        if not (out / name).exists():
            np.save(out / name, train[:rows])


def run_case(name: str, out: Path) -> dict:
    data, options = CASES[name]
    run_dir = out / "runs" / name
    command = [sys.executable, "-m", "elbokit", "fit", "--data", str(out / data), *options,
               "--quiet", "--out", str(run_dir), "--overwrite"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    total = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{name}: elbokit fit failed:\n{done.stderr}")
    summary = json.loads((run_dir / "summary.json").read_text())
    timings = summary["timings"]
    row = {"case": name, "total": total, **{p: timings.get(p, 0.0) for p in PHASES},
           "k": summary["evaluation"]["k"], "chosen": summary["evaluation"]["chosen"],
           "train_rows": summary["evaluation"]["train_rows"],
           "test_log_px": summary["splits"]["test"]["log_likelihood"]["estimate"],
           "test_stderr": summary["splits"]["test"]["log_likelihood"]["stderr"]}
    row["setup"] = total - sum(row[p] for p in PHASES)
    row["after_training_share"] = (row["evaluation"] + row["diagnostics"] + row["report"]) / row["training"]
    return row


def table(rows: list[dict]) -> str:
    lines = ["| case | set-up (s) | training (s) | evaluation (s) | k | diagnostics (s) | report (s) "
             "| total (s) | after training / training | test log p(x) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        k = "exact" if r["chosen"] == "exact" else str(r["k"])
        lines.append(f"| {r['case']} | {r['setup']:.1f} | {r['training']:.1f} | {r['evaluation']:.1f} "
                     f"| {k} | {r['diagnostics']:.1f} | {r['report']:.1f} | {r['total']:.1f} "
                     f"| {r['after_training_share']:.2f} | {r['test_log_px']:.2f} ± {r['test_stderr']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--out", type=Path, default=Path("runs/fit-phases"))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeats", type=int, default=1, help="runs per case (the median is kept)")
    parser.add_argument("--fresh", action="store_true", help="forget earlier results")
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"skipped: the binarized MNIST file is not at {args.data}")
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        sys.exit(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    write_data(args.data, args.out)
    results_path = args.out / "results.json"
    results = {} if args.fresh or not results_path.exists() else json.loads(results_path.read_text())
    for name in names:
        if name in results:
            continue
        runs = [run_case(name, args.out) for _ in range(args.repeats)]
        results[name] = sorted(runs, key=lambda r: r["total"])[len(runs) // 2]
        tmp = results_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=2) + "\n")
        os.replace(tmp, results_path)
        print(f"{name}: {results[name]['total']:.1f} s", flush=True)
    text = table([results[n] for n in names if n in results])
    (args.out / "results.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
