"""elbokit.evaluation: the default k and rows of a fitted run's scoring (the workflow's use
of it is tested in test_workflows.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from elbokit import evaluation
from elbokit.models.vae import VAEConfig, VAEModule


def test_choose_k_and_the_training_sample():
    assert evaluation.choose_k(1e-6, 1000, 1.0) == 1000  # exactly affordable
    assert evaluation.choose_k(1e-6, 1000, 0.99) == 500
    assert evaluation.choose_k(1.0, 10**6, 1.0) == evaluation.K_CHOICES[0]  # never below 50
    assert evaluation.choose_k(1e-12, 10, 1e3) == evaluation.K_CHOICES[-1]
    assert evaluation.budget_seconds(1.0) == evaluation.FLOOR_SECONDS
    assert evaluation.budget_seconds(1000.0) == pytest.approx(1000 * evaluation.SHARE)
    assert evaluation.training_sample(100, seed=0, rows=100) is None
    sample = evaluation.training_sample(1000, seed=3, rows=100)
    assert len(np.unique(sample)) == 100 and np.all(np.diff(sample) > 0) and sample.max() < 1000
    assert np.array_equal(sample, evaluation.training_sample(1000, seed=3, rows=100))
    assert not np.array_equal(sample, evaluation.training_sample(1000, seed=4, rows=100))


def test_the_pilot_measures_a_positive_cost_and_leaves_the_random_stream_alone():
    torch.manual_seed(0)
    module = VAEModule(VAEConfig(dim=6, latent_dim=2, hidden=(8,), likelihood={"name": "bernoulli"}))
    x = torch.bernoulli(torch.full((40, 6), 0.5))
    torch.manual_seed(5)
    state = torch.get_rng_state()
    cost = evaluation.seconds_per_draw(module, x)
    assert cost > 0 and np.isfinite(cost)
    assert torch.equal(torch.get_rng_state(), state)


def test_describe_says_how_k_was_chosen():
    assert evaluation.describe(200, None) == "k=200 as given"
    assert evaluation.describe(200, 12.34).startswith("k=200 chosen to fit about 12.3 s of scoring")
