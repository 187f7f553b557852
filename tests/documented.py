"""The commands whose results README.md quotes, in one place: the README's tables show them,
``benchmarks/seed_spread.py`` measures their seed-to-seed spread and
``tests/test_documented_numbers.py`` re-runs them against the quoted figures.

Each command is run with ``--seed 0`` for the quoted figure (plus ``--out``); the scores
read from a run are its test split's ELBO and log-likelihood (exact where z is enumerated,
else importance-sampled).
"""

from __future__ import annotations

import json
from pathlib import Path

COMMANDS = {
    "demo": "elbokit fit --data digits --latent-dim 8 --hidden 256,256 --batch-size 32 "
            "--epochs 100 --patience 20 --eval-k 5000",
    "mixture": "elbokit fit --model mixture --components 10",
    "categorical": "elbokit fit --latent categorical:10 --hidden 128 --epochs 20",
    "gumbel-st": "elbokit fit --latent categorical:20x10 --estimator gumbel-st --hidden 128 --epochs 30",
    "gumbel": "elbokit fit --latent categorical:20x10 --estimator gumbel --hidden 128 --epochs 30",
    "reinforce": "elbokit fit --latent bernoulli:16 --estimator reinforce --hidden 128 --epochs 30",
    "vimco": "elbokit fit --latent bernoulli:16 --estimator vimco --n-samples 5 --hidden 128 --epochs 30",
}


def scores(run: Path) -> dict[str, float]:
    """The test split's ELBO and log p(x) of a finished run directory."""
    test = json.loads((Path(run) / "summary.json").read_text())["splits"]["test"]
    exact = test.get("exact_log_likelihood")
    return {"elbo": test["elbo"],
            "log_likelihood": exact if exact is not None else test["log_likelihood"]["estimate"]}
