"""Shared fixtures: a linear-Gaussian model whose log p(x) and posterior are exact, and a tiny
data file for the command line.

Seed policy: every test that draws random numbers seeds torch/numpy itself with a fixed
seed, so the suite is deterministic; statistical tolerances are stated in standard errors
(SE) of the Monte-Carlo estimate they bound.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import distributions as D
from torch import nn

torch.set_default_dtype(torch.float32)
# Under `make test` each pytest-xdist worker computes on one thread: two workers of two
# intra-op threads each on two cores would make OpenMP's waiting threads spin against each
# other, and the suite's small models gain little from a second thread. (Processes a test
# starts choose their own; forked ones compute on one thread, see forked.py.)
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

# The files that take longest (measured: a minute or more of one core each), started first.
# `make test` hands pytest-xdist workers whole files in collection order; a long file that
# starts last keeps one worker busy while the others sit idle, so the slow ones lead.
SLOW_FILES = ("test_guide.py", "test_documented_numbers.py", "test_distributed.py",
              "test_reliability.py", "test_classifiers.py", "test_semisupervised.py",
              "test_defaults.py", "test_estimators.py", "test_imputation.py",
              "test_cli_tables.py", "test_docs.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FILES)))  # stable: order kept


class LinearGaussian(nn.Module):
    """z ~ N(0, I_q),  x | z ~ N(W z + b, s^2 I_D)  =>  p(x) = N(b, W W^T + s^2 I).

    ``posterior(x)`` is the exact posterior N(mu(x), Sigma) unless ``q_shift``/``q_scale``
    distort it (an arbitrary, worse q).
    """

    def __init__(self, dim: int = 5, latent: int = 2, s: float = 0.7, seed: int = 0,
                 q_shift: float = 0.0, q_scale: float = 1.0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(dim, latent, generator=g, dtype=torch.float64)
        self.b = torch.randn(dim, generator=g, dtype=torch.float64)
        self.s = s
        self.q_shift, self.q_scale = q_shift, q_scale
        self.latent = latent

    def prior(self) -> D.Distribution:
        return D.MultivariateNormal(torch.zeros(self.latent, dtype=torch.float64),
                                    torch.eye(self.latent, dtype=torch.float64))

    def likelihood(self, z: torch.Tensor) -> D.Distribution:
        return D.Independent(D.Normal(z @ self.W.T + self.b, self.s), 1)

    def exact_posterior_params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        precision = torch.eye(self.latent, dtype=torch.float64) + self.W.T @ self.W / self.s**2
        cov = torch.linalg.inv(precision)
        mean = (x - self.b) @ self.W @ cov / self.s**2  # cov symmetric
        return mean, cov

    def posterior(self, x: torch.Tensor) -> D.Distribution:
        mean, cov = self.exact_posterior_params(x)
        return D.MultivariateNormal(mean + self.q_shift, self.q_scale**2 * cov)

    def marginal(self) -> D.Distribution:
        noise = self.s**2 * torch.eye(self.W.shape[0], dtype=torch.float64)
        return D.MultivariateNormal(self.b, self.W @ self.W.T + noise)

    def sample_x(self, n: int, seed: int = 1) -> torch.Tensor:
        torch.manual_seed(seed)
        return self.marginal().sample((n,))


@pytest.fixture
def linear_gaussian() -> type[LinearGaussian]:
    return LinearGaussian


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """60 binary examples of width 10 as .npy (test_cli.py, test_runs.py; some modules have
    a ``tiny`` of their own)."""
    x = (np.random.default_rng(0).random((60, 10)) < 0.3).astype(np.float32)
    path = tmp_path / "tiny.npy"
    np.save(path, x)
    return path
