"""Converged MNIST: richer priors, flow posteriors and two stochastic layers, each trained to
convergence (early stopping) within a CPU budget, scored on the full test set.

Data: the fixed binarized MNIST (Larochelle & Murray), 50,000 training / 10,000 validation
(early stopping) / 10,000 test images, from ``../shared/data/binarized_mnist`` (skipped with a
message without it). Every contestant is an elbokit VAE built by the facade (the options of
``elbokit fit``) with the same networks: 784-300-300 MLPs (ReLU), 40-dimensional Gaussian z per
stochastic layer, Bernoulli pixels, Adam 1e-3, batches of 100, the KL weight warmed up over
the first 10 epochs, early stopping after 30 epochs without a better validation ELBO (the
learning rate halves after 10), the weights' moving average (elbokit's default). These are the
sizes of Tomczak & Welling (2018)'s MLP models (300-300, 40 latents, K = 500 pseudo-inputs)
without their gated layers: one set of networks for every contestant, so that the rows differ
by the prior, the posterior, the bound and the layers alone.

    vae         the diagonal-Gaussian VAE (standard-normal prior)
    vamp        VampPrior, K = 500 pseudo-inputs
    hvae-vamp   two stochastic layers (z2 -> z1 -> x, q(z2|x) q(z1|x,z2)) + VampPrior on z2
    iaf         IAF posterior, 2 steps
    iwae5       the same networks trained on IWAE k = 5 (no KL warm-up: no KL term)

Budget: at most ``--budget-minutes`` (60) of CPU time of one thread per contestant, counted
as the training process's own CPU time (``time.process_time``, one torch thread), so that
the budget means the same on a busy machine; wall-clock is reported beside it. Training runs
in chunks of epochs (``VAE.fit(..., resume=True)``), stopping at the first of: early stopping,
the budget (no chunk starts that the measured epoch time says would pass it). ``--parallel``
(2) contestants run side by side, one per core.

Score: log p(x) by importance sampling, k = ``--k`` (5,000) samples per image (elbokit's
``bounds.log_likelihood``), on all ``--n-test`` (10,000) test images, in nats, with the
standard error of the mean over images (the spread of the per-image estimates; the per-image
Monte-Carlo errors are reported too). Also the validation ELBO at the best epoch.

Everything is resumable: each contestant's run directory holds its checkpoint, a
``progress.json`` (CPU seconds spent, chunks done, whether it converged) and the test scores
computed so far (``scores.npz``, by blocks of images). Run the same command again to continue.

    .venv/bin/python benchmarks/mnist_convergence.py [--budget-minutes 60] [--parallel 2]
        [--contestants vae,vamp,...] [--out runs/mnist-convergence] [--k 5000]

The table (markdown) and ``results.json`` are written to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_DATA  # noqa: E402

COMMON = dict(hidden=(300, 300), latent_dim=40, likelihood="bernoulli", activation="relu",
              batch_size=100, lr=1e-3, kl_warmup=10, patience=30, lr_patience=10, seed=0)
CONTESTANTS: dict[str, dict] = {
    "vae": {},
    "vamp": {"prior": "vamp:500"},
    "hvae-vamp": {"stochastic_layers": 2, "prior": "vamp:500"},
    "iaf": {"posterior": "iaf:2"},
    "iwae5": {"iwae_k": 5, "kl_warmup": 0},  # the IWAE bound has no KL term to warm up
}
# Published test negative log-likelihoods on the statically binarized MNIST (nats).
REFERENCES = [
    ("VAE, diagonal Gaussian, 1 stochastic layer", "89.9", "89.78"),
    ("IWAE k = 50", "87.1", "86.82"),
    ("VAE + VampPrior (K = 500)", "85.57", "85.79"),
    ("Hamiltonian VAE", "86.40", "86.21"),
    ("two stochastic layers + VampPrior (Tomczak & Welling 2018)", "83.19", "-"),
]
BLOCK = 250  # test images scored per saved block


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {split: archive[f"x_{split}"].reshape(-1, 784).astype(np.float32)
                for split in ("train", "valid", "test")}


def write_json(path: Path, value: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(tmp, path)


def read_json(path: Path, default: dict) -> dict:
    return json.loads(path.read_text()) if path.exists() else dict(default)


def train(name: str, out: Path, data_path: Path, budget_s: float) -> None:
    """Train contestant ``name`` in chunks until it converges or the budget is spent."""
    import torch

    from elbokit.api import VAE

    torch.set_num_threads(1)
    run = out / name
    run.mkdir(parents=True, exist_ok=True)
    progress_path = run / "progress.json"
    progress = read_json(progress_path, {"cpu_seconds": 0.0, "wall_seconds": 0.0, "epochs": 0,
                                         "converged": False, "budget_spent": False, "chunks": []})
    if progress["converged"] or progress["budget_spent"]:
        return
    state_path = run / "checkpoint" / "state.json"
    if state_path.exists():
        # A chunk stopped part-way (the process was killed) left epochs in the checkpoint
        # that progress.json has not counted: count their time, from metrics.jsonl.
        saved = int(json.loads(state_path.read_text())["state"]["epoch"])
        if saved > progress["epochs"]:
            history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            # metrics.jsonl has each epoch's wall-clock, an upper bound on its CPU time unless
            # the machine was suspended mid-epoch (a sitting ended): then the pause would be
            # charged. Cap each at twice the CPU seconds per epoch measured so far.
            cap = (2 * progress["cpu_seconds"] / progress["epochs"]) if progress["epochs"] else math.inf
            extra = sum(min(h["seconds"], cap) for h in history
                        if progress["epochs"] < h["epoch"] <= saved)
            progress["cpu_seconds"] += extra
            progress["wall_seconds"] += extra
            progress["epochs"] = saved
    data = load(data_path)
    options = {**COMMON, **CONTESTANTS[name]}
    while True:
        spent = progress["cpu_seconds"]
        per_epoch = (spent / progress["epochs"]) if progress["epochs"] else None
        remaining = budget_s - spent
        if per_epoch is not None and remaining < per_epoch:
            progress["budget_spent"] = True
            break
        # Chunks of about 5 minutes, never planned past the budget.
        chunk = 1 if per_epoch is None else max(1, min(int(300 / per_epoch), int(remaining / per_epoch)))
        target = progress["epochs"] + chunk
        cpu0, wall0 = time.process_time(), time.perf_counter()
        VAE(**options, epochs=target).fit(data["train"], X_val=data["valid"], run_dir=run,
                                          resume=progress["epochs"] > 0)
        state = json.loads((run / "checkpoint" / "state.json").read_text())["state"]
        progress["cpu_seconds"] += time.process_time() - cpu0
        progress["wall_seconds"] += time.perf_counter() - wall0
        progress["epochs"] = int(state["epoch"])
        progress["chunks"].append({"epochs": progress["epochs"],
                                   "cpu_seconds": round(progress["cpu_seconds"], 1)})
        progress["converged"] = bool(state["stopped_early"])
        write_json(progress_path, progress)
        print(f"{name}: {progress['epochs']} epochs, {progress['cpu_seconds'] / 60:.1f} CPU min",
              flush=True)
        if progress["converged"]:
            break
    write_json(progress_path, progress)


def score(name: str, out: Path, data_path: Path, k: int, n_test: int) -> None:
    """log p(x) of the first ``n_test`` test images under the trained model, in blocks."""
    import torch

    from elbokit import bounds
    from elbokit.allocator import keep_freed_memory
    from elbokit.api import VAE
    from elbokit.rng import seeded

    torch.set_num_threads(1)
    keep_freed_memory()  # after training: the contestants' budgets mean the same as before
    run = out / name
    path = run / "scores.npz"
    done: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path, allow_pickle=False) as archive:
            done = {key: archive[key] for key in archive.files}
    estimates = list(done.get("estimate", np.zeros(0)))
    errors = list(done.get("stderr", np.zeros(0)))
    if len(estimates) >= n_test:
        return
    test = torch.from_numpy(load(data_path)["test"][:n_test])
    module = VAE.load(run).module_
    start = time.perf_counter()
    while len(estimates) < n_test:
        lo = len(estimates)
        x = test[lo:lo + BLOCK]
        with seeded(lo):
            estimate, stderr = bounds.log_likelihood(module, x, k=k, chunk=100)
        estimates += estimate.double().tolist()
        errors += stderr.double().tolist()
        tmp = run / "scores.tmp.npz"
        np.savez(tmp, estimate=np.array(estimates), stderr=np.array(errors), k=k)
        os.replace(tmp, path)
        print(f"{name}: scored {len(estimates)} / {n_test} test images "
              f"(mean {np.mean(estimates):.2f}; {time.perf_counter() - start:.0f} s so far)",
              flush=True)


def contestant(name: str, out: Path, data_path: Path, budget_s: float, k: int, n_test: int) -> None:
    train(name, out, data_path, budget_s)
    score(name, out, data_path, k, n_test)


def summarize(out: Path, names: list[str], n_test: int) -> dict:
    rows = []
    for name in names:
        run = out / name
        progress = read_json(run / "progress.json", {})
        row = {"contestant": name, "options": {**COMMON, **CONTESTANTS[name]}, **progress}
        row.pop("chunks", None)
        metrics = run / "metrics.jsonl"
        if metrics.exists():
            history = [json.loads(line) for line in metrics.read_text().splitlines() if line]
            vals = [h["val"]["elbo"] for h in history if "val" in h]
            if vals:
                best = int(np.argmax(vals))
                row["best_val_elbo"], row["best_epoch"] = vals[best], best + 1
                row["last_val_elbo"] = vals[-1]
        if (run / "scores.npz").exists():
            with np.load(run / "scores.npz", allow_pickle=False) as archive:
                est, err = archive["estimate"], archive["stderr"]
            row["n_scored"] = len(est)
            row["test_log_px"] = float(est.mean())
            row["test_se"] = float(est.std(ddof=1) / math.sqrt(len(est))) if len(est) > 1 else None
            row["mean_mc_stderr"] = float(err.mean())
        rows.append(row)
    return {"rows": rows, "n_test": n_test, "references": REFERENCES}


def table(result: dict) -> str:
    lines = ["| contestant | epochs | converged | CPU min | wall min | best val ELBO | "
             "test log p(x) | ± SE | images scored |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        fmt = lambda v, f: f.format(v) if isinstance(v, (int, float)) else "-"  # noqa: E731
        lines.append(
            f"| {r['contestant']} | {r.get('epochs', '-')} | "
            f"{'yes' if r.get('converged') else 'no (budget)' if r.get('budget_spent') else '-'} | "
            f"{fmt(r.get('cpu_seconds', 0) / 60 if 'cpu_seconds' in r else None, '{:.1f}')} | "
            f"{fmt(r.get('wall_seconds', 0) / 60 if 'wall_seconds' in r else None, '{:.1f}')} | "
            f"{fmt(r.get('best_val_elbo'), '{:.2f}')} | {fmt(r.get('test_log_px'), '{:.2f}')} | "
            f"{fmt(r.get('test_se'), '{:.2f}')} | {r.get('n_scored', 0)} |")
    lines += ["", "| reference | published NLL | reproduced (pythae) |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in result["references"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-minutes", type=float, default=60.0)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--contestants", default=",".join(CONTESTANTS))
    parser.add_argument("--out", type=Path, default=Path("runs/mnist-convergence"))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--k", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=10000)
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # one contestant, in its own process
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"skipped: the binarized MNIST file is not at {args.data}")
    names = [n.strip() for n in args.contestants.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTESTANTS]
    if unknown:
        sys.exit(f"unknown contestant(s) {', '.join(unknown)}; choose from {', '.join(CONTESTANTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.worker:
        contestant(args.worker, args.out, args.data, args.budget_minutes * 60, args.k, args.n_test)
        return
    pending = list(names)
    running: list[tuple[str, subprocess.Popen]] = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    while pending or running:
        while pending and len(running) < args.parallel:
            name = pending.pop(0)
            command = [sys.executable, __file__, "--worker", name, "--out", str(args.out),
                       "--data", str(args.data), "--budget-minutes", str(args.budget_minutes),
                       "--k", str(args.k), "--n-test", str(args.n_test)]
            running.append((name, subprocess.Popen(command, env=env)))
        time.sleep(5)
        for name, process in list(running):
            if process.poll() is not None:
                running.remove((name, process))
                if process.returncode:
                    print(f"{name}: exited {process.returncode}", file=sys.stderr)
    result = summarize(args.out, names, args.n_test)
    write_json(args.out / "results.json", result)
    text = table(result)
    (args.out / "results.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
