"""A run's figures and diagnostics, from its fitted model: what ``elbokit fit`` writes at the
end of training and ``elbokit report`` (re)draws.

This module only composes: the numbers come from :mod:`elbokit.diagnostics` and the model,
the drawing from :mod:`elbokit.plots`, the HTML from :mod:`elbokit.report`.

    run_dir/figures/training_curves.png   ELBO, reconstruction, KL per epoch (train, validation)
                    samples.png           E[x | z] for z drawn from the prior
                    reconstructions.png   held-out examples beside E[x | z = E_q[z | x]]
                    latent_space.png      posterior means, coloured by label (PCA beyond 2-D)
                    traversals.png        E[x | z] along each of the most used dimensions
                    kl_per_dimension.png  the rate each latent variable pays; inactive in grey
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from . import diagnostics, plots, runs
from .api import LatentModel, decode_mean
from .checkpoint import read_json, write_json
from .models.base import describe
from .progress import progress_bar

FIGURES = "figures"
N_SHOWN = 16  # examples in the reconstruction figure
N_SAMPLES = 64  # draws from the prior in the samples figure
TRAVERSAL_DIMS, TRAVERSAL_STEPS = 8, 9


def read_history(run_dir: Path) -> list[dict]:
    """The epoch records of ``run_dir/metrics.jsonl`` (empty when there is none); event
    lines (a rolled-back numerical fault: ``"event"``) are not epochs and are left out."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if "event" not in r]


def diagnose(model: LatentModel, x: np.ndarray, scores: dict | None = None) -> dict:
    """:func:`elbokit.diagnostics.diagnose` on ``x: [n, dim]``, with the gap from ``scores``
    (an ``evaluate()`` result on the same x) when given, and ``"model"``: the fitted module's
    one-line description (:func:`elbokit.models.base.describe`), which the report shows, so
    a model the report has never heard of describes itself."""
    elbo = scores["elbo"] if scores else None
    log_likelihood = scores["log_likelihood"]["estimate"] if scores else None
    if scores and scores.get("exact_log_likelihood") is not None:
        log_likelihood = scores["exact_log_likelihood"]
    module = model._fitted()
    found = diagnostics.diagnose(module, model.as_tensor(x), elbo, log_likelihood)
    return {"model": describe(module), **found}


@torch.no_grad()
def write_figures(model: LatentModel, run_dir: Path, x: np.ndarray, labels: np.ndarray | None,
                  image_shape: tuple[int, int] | None, found: dict | None = None,
                  seed: int = 0, columns: Sequence[str] | None = None) -> list[str]:
    """Draw every figure that applies to ``model`` into ``run_dir/figures/`` from the
    held-out examples ``x: [n, dim]`` (with ``labels: [n]`` when known) and the run's
    history; ``found``: :func:`diagnose`'s result (computed when None); ``columns``: the
    ``dim`` names of a table's columns. Returns the files."""
    out = Path(run_dir) / FIGURES
    out.mkdir(parents=True, exist_ok=True)
    module = model._fitted()
    found = found or diagnose(model, x)
    planned: list[tuple[str, object]] = []  # drawn at the end, under one progress bar

    def save(name: str, draw) -> None:
        planned.append((name, draw))

    history = read_history(run_dir)
    if history:
        save("training_curves.png", lambda p: plots.training_curves(history, path=p))
    save("samples.png", lambda p: plots.samples(model.sample(N_SAMPLES, seed=seed, mean=True),
                                                 image_shape, path=p, columns=columns))
    shown = x[:N_SHOWN]
    # What is drawn follows what the model can do, not its class: a posterior over
    # components (a mixture's predict_proba), or an encoder's codes and reconstructions.
    if hasattr(model, "predict_proba"):
        save("latent_space.png", lambda p: plots.latent_scatter(
            model.predict_proba(x), labels, path=p, title="Posterior p(z | x) over components"))
    else:
        save("reconstructions.png", lambda p: plots.reconstructions(
            shown, model.reconstruct(shown), image_shape, path=p, columns=columns))
        save("latent_space.png", lambda p: plots.latent_scatter(
            model.transform(x), labels, path=p))
    # A prior made of learned inputs (the VampPrior) shows them, as data.
    prior_inputs = getattr(module, "prior_inputs", None)
    learned = prior_inputs() if callable(prior_inputs) else None
    if learned is not None:
        save("pseudo_inputs.png", lambda p: plots.samples(
            learned[:N_SAMPLES].double().cpu().numpy(), image_shape, path=p, columns=columns,
            title=f"VampPrior pseudo-inputs (first {min(len(learned), N_SAMPLES)} of {len(learned)})"))
    kl = found.get("kl_per_dimension")
    # Traversals move one coordinate of a continuous z (one event dimension) through the decoder.
    event = module.prior().event_shape
    if math.isinf(getattr(module, "support_size", math.inf)) and len(event) == 1 and kl is not None:
        dims = np.argsort(kl)[::-1][:TRAVERSAL_DIMS].tolist()  # the dimensions that carry most
        values = np.linspace(-3, 3, TRAVERSAL_STEPS)
        z = torch.zeros(len(dims), len(values), event[0], dtype=next(module.parameters()).dtype)
        for row, d in enumerate(dims):
            z[row, :, d] = torch.as_tensor(values)
        decoded = decode_mean(module, z).double().numpy()
        save("traversals.png", lambda p: plots.latent_traversal(decoded, values, dims, image_shape,
                                                                path=p))
    if kl is not None and len(kl) > 1:
        save("kl_per_dimension.png", lambda p: plots.kl_per_dimension(
            np.asarray(kl), np.asarray(found["active"]), path=p))
    written = []
    for name, draw in progress_bar(planned, desc="figures", unit="figure"):
        draw(out / name)
        written.append(name)
    return written


def held_out_split(run_data: runs.RunData) -> str:
    """The split figures and diagnostics use: test, or train when there is no test split."""
    return "test" if len(run_data.splits["test"]) else "train"


def draw_run(model: LatentModel, run_dir: Path, run_data: runs.RunData,
             found: dict | None = None) -> list[str]:
    """Diagnostics (into ``summary.json`` when it lacks them) and every figure of a run, on
    its held-out split. ``found``: diagnostics already computed. Returns the figure files."""
    run_dir = Path(run_dir)
    split = held_out_split(run_data)
    index = run_data.splits[split]
    x = run_data.split(split)  # as the model scores it (one fixed draw if binarized dynamically)
    if found is None:
        summary_path = run_dir / "summary.json"
        summary = read_json(summary_path) if summary_path.exists() else None
        scores = summary["splits"].get(split) if summary else None
        found = {"split": split, **diagnose(model, x, scores)}
        if summary is not None:
            write_json(summary_path, {**summary, "diagnostics": found})
    labels = run_data.dataset.y
    return write_figures(model, run_dir, x, labels[index] if labels is not None else None,
                         run_data.dataset.image_shape, found, columns=run_data.dataset.columns)
