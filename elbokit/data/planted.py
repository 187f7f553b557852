"""A synthetic table with known structure, for tests, benchmarks and trying things out.

:func:`planted_table` draws rows from a small latent-variable model, z ~ N(0, I_2), whose
columns are of every type the table likelihood knows (:class:`~elbokit.likelihoods.Table`),
each depending on z:

===========  ===========  =================================================================
column       type         given z
===========  ===========  =================================================================
height       real         170 + 8 (z1 + 0.5 z2) + N(0, 2^2)
weight       real         70 + 10 (z1 - 0.3 z2) + N(0, 3^2)
score        real         0.5 z2 + N(0, 0.1^2)
income       positive     exp(10 + 0.4 z1 + 0.3 z2 + N(0, 0.2^2))
visits       count        Poisson(exp(1 + 0.6 z2))
member       binary       Bernoulli(sigmoid(2 z1)), levels "no"/"yes"
region       categorical  softmax(2.5 (z . d_k)), d_k the unit vectors at 0, 90, 270, 180
                          degrees, levels "east", "north", "south", "west"
===========  ===========  =================================================================

Cells are then removed completely at random (``missing``: the fraction). Anomalous rows
(``anomalies``) have their ``height`` and ``weight`` swapped in sign around the means (a
person tall and light where the rest are tall and heavy): each value is ordinary on its own,
only the pair is unlikely.
"""

from __future__ import annotations

import numpy as np

NAMES = ("height", "weight", "score", "income", "visits", "member", "region")
KINDS = ("real", "real", "real", "positive", "poisson", "binary", "categorical")
LEVELS = {"member": ("no", "yes"), "region": ("east", "north", "south", "west")}  # sorted


def planted_table(n: int, seed: int = 0, missing: float = 0.0, anomalies: int = 0
                  ) -> tuple[list[list[str]], np.ndarray, np.ndarray]:
    """``(cells, complete, anomalous)``: ``n`` rows as text cells (a header row first, empty
    cells missing), the same rows complete as numbers ``[n, 7]`` (levels as their index in
    :data:`LEVELS`), and a boolean ``[n]`` marking the last ``anomalies`` rows, the anomalous
    ones. A row never loses every cell. The same arguments give the same table."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    anomalous = np.zeros(n, dtype=bool)
    anomalous[n - anomalies:] = anomalies > 0
    # Anomalous rows sit 2 sd out along z1, where flipping the weight moves it by ~40 kg.
    z[anomalous, 0] = 2.0 * rng.choice([-1.0, 1.0], anomalous.sum())
    height = 170 + 8 * (z[:, 0] + 0.5 * z[:, 1]) + 2 * rng.standard_normal(n)
    weight = 70 + 10 * (z[:, 0] - 0.3 * z[:, 1]) + 3 * rng.standard_normal(n)
    score = 0.5 * z[:, 1] + 0.1 * rng.standard_normal(n)
    income = np.exp(10 + 0.4 * z[:, 0] + 0.3 * z[:, 1] + 0.2 * rng.standard_normal(n))
    visits = rng.poisson(np.exp(1 + 0.6 * z[:, 1])).astype(float)
    member = (rng.random(n) < 1 / (1 + np.exp(-2 * z[:, 0]))).astype(float)
    angles = np.deg2rad([0, 90, 270, 180])  # LEVELS["region"]'s directions
    logits = 2.5 * z @ np.stack([np.cos(angles), np.sin(angles)])
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    region = (probs.cumsum(1) > rng.random((n, 1))).argmax(1).astype(float)
    complete = np.stack([height, weight, score, income, visits, member, region], 1)
    complete[anomalous, 1] = 140 - complete[anomalous, 1]  # heavy <-> light around 70 kg
    removed = rng.random(complete.shape) < missing
    empty = removed.all(1)  # a row keeps at least one cell: one chosen at random
    removed[np.flatnonzero(empty), rng.integers(0, len(NAMES), empty.sum())] = False
    cells = [list(NAMES)]
    for i in range(n):
        row = []
        for j, name in enumerate(NAMES):
            v = complete[i, j]
            text = (LEVELS[name][int(v)] if name in LEVELS else
                    f"{v:.0f}" if KINDS[j] == "poisson" else f"{v:.2f}" if name != "score" else f"{v:.3f}")
            row.append("" if removed[i, j] else text)
        cells.append(row)
    return cells, complete, anomalous
