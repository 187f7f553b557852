"""How much evaluation a fitted run gets: which rows are scored, with how many samples.

After training, ``elbokit fit`` scores the held-out split and the training split. Where z can
be enumerated (a mixture, a small discrete code) log p(x) is exact and nothing is sampled.
Elsewhere log p(x) is importance-sampled, and its cost is k decoder passes per example: at a
fixed k = 1000 the evaluation of a five-epoch MNIST VAE took 25 times its training. The
default here keeps evaluation in proportion to training instead:

- the held-out split is scored in full; the training split on a seeded sample of at most
  :data:`TRAIN_ROWS` rows (its mean has a standard error over examples of a few tenths of a
  nat on MNIST, enough to see over-fitting);
- k is the largest of :data:`K_CHOICES` whose measured cost (a pilot of a few draws on 256
  held-out rows) fits :func:`budget_seconds`: :data:`SHARE` of the training time, at least
  :data:`FLOOR_SECONDS`. k never goes below ``K_CHOICES[0]`` = 50 (IWAE_50 comes from the
  same draws, and fewer would make the log p(x) estimate little better than the bound).

The chosen k and the standard error are printed and saved with the scores; an explicit
``--eval-k`` (``eval_k=``) is used as given. Because the default k follows the measured
speed, two machines may choose different k: pass ``--eval-k`` for numbers that compare
across machines.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from . import bounds

K_CHOICES = (50, 100, 200, 500, 1000, 2000, 5000)
SHARE = 0.15  # of the training time, for the importance-sampled scores (figures and report come on top)
FLOOR_SECONDS = 1.0  # a short training still gets this much evaluation
TRAIN_ROWS = 2000  # rows of the training split scored by default
# The pilot: PILOT_DRAWS draws for each of PILOT_ROWS held-out rows, twice (the first pass
# warms up allocations). Sized like a real pass (256 rows x 100 draws) within a factor of 5:
# a pilot of 10 x 100 was overhead-bound and measured MNIST's cost per draw 2x too high.
PILOT_DRAWS = 20
PILOT_ROWS = 256


def budget_seconds(training_seconds: float) -> float:
    """Seconds the default evaluation may spend after ``training_seconds`` of training."""
    return max(FLOOR_SECONDS, SHARE * training_seconds)


def choose_k(seconds_per_draw: float, n_examples: int, budget: float) -> int:
    """The largest k of :data:`K_CHOICES` for which ``n_examples`` examples at
    ``seconds_per_draw`` per (draw, example) fit in ``budget`` seconds (at least the smallest)."""
    affordable = budget / max(seconds_per_draw * n_examples, 1e-12)
    fitting = [k for k in K_CHOICES if k <= affordable]
    return fitting[-1] if fitting else K_CHOICES[0]


@torch.no_grad()
def seconds_per_draw(module: torch.nn.Module, x: torch.Tensor) -> float:
    """Measured seconds of one importance draw for one example, from a pilot on the rows
    ``x: [n, dim]`` (on the model's device; :data:`PILOT_ROWS` of them suffice). The random
    state is put back afterwards: the caller's seeded stream is left as it was."""
    pilot = x
    state = torch.random.get_rng_state()
    try:
        bounds.importance_scores(module, pilot, PILOT_DRAWS, chunk=PILOT_DRAWS, iwae_k=None)
        start = time.perf_counter()
        bounds.importance_scores(module, pilot, PILOT_DRAWS, chunk=PILOT_DRAWS, iwae_k=None)
        if pilot.is_cuda:
            torch.cuda.synchronize(pilot.device)
        return (time.perf_counter() - start) / (PILOT_DRAWS * len(pilot))
    finally:
        torch.random.set_rng_state(state)


def training_sample(n: int, seed: int, rows: int | None = None) -> np.ndarray | None:
    """Indices of the training rows scored by default: a seeded sample of ``rows``
    (:data:`TRAIN_ROWS`) of the ``n`` (sorted, so the rows keep their order), or None when
    all ``n`` are scored."""
    rows = TRAIN_ROWS if rows is None else rows
    if n <= rows:
        return None
    return np.sort(np.random.default_rng([seed, 0xE7A1]).choice(n, rows, replace=False))


def describe(k: int, budget: float | None) -> str:
    """How k was chosen, for the command's note."""
    if budget is None:
        return f"k={k} as given"
    return f"k={k} chosen to fit about {budget:.1f} s of scoring ({SHARE:.0%} of the " \
           "training time; --eval-k sets it)"
