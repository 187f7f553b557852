"""The CLI's defaults reach the optimum where one is known in closed form.

A linear decoder with a Gaussian likelihood is factor analysis (one noise variance per
dimension, ``--gaussian-scale dim``, the default) or probabilistic PCA (one shared variance
in the model's standardized units, ``--gaussian-scale shared``): the marginal p(x) is
Gaussian, so the trained model's held-out log-likelihood is exact
(``VAEModule.linear_gaussian_marginal``), and the maximum-likelihood fit of the same family
on the same training rows is known (scikit-learn's ``FactorAnalysis`` run to convergence;
pPCA in closed form, Tipping & Bishop 1999). The data are off-centre (offsets up to 100)
and off-scale (column scales from 0.03 to 30), and the command is what a user types: no
learning rate, epochs, encoder or schedule given.

Tolerances: the model must land within 0.02 nats per example of the MLE's held-out score
(the issue's bar; measured 0.0016 and 0.001 below here), and not above the true model by
more than 3 standard errors of the paired per-example difference (a model above the truth
by more would be overfitting or a wrong density).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import FactorAnalysis

from elbokit import VAE, runs
from elbokit.cli import main

N, DIM, FACTORS, HELD_OUT = 6000, 10, 3, 10000


def factor_model(seed: int, isotropic: bool):
    """x = scale * (W z + noise) + offset; returns (draw, mean, covariance) of x."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(DIM, FACTORS)) * np.linspace(2.0, 0.7, FACTORS)
    noise = np.full(DIM, 0.6) if isotropic else rng.uniform(0.3, 1.0, DIM)
    scale = np.ones(DIM) if isotropic else 10 ** rng.uniform(-1.5, 1.5, DIM)
    offset = rng.uniform(-100, 100, DIM)

    def draw(n: int, r: np.random.Generator) -> np.ndarray:
        return (r.normal(size=(n, FACTORS)) @ weight.T + noise * r.normal(size=(n, DIM))) * scale + offset

    covariance = (weight @ weight.T + np.diag(noise**2)) * np.outer(scale, scale)
    return draw, offset, covariance


def gaussian_log_prob(x: np.ndarray, mean: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    return torch.distributions.MultivariateNormal(
        torch.tensor(mean), torch.tensor(covariance)).log_prob(torch.tensor(x)).numpy()


def ppca_mle(train: np.ndarray, shift: np.ndarray, unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pPCA maximum-likelihood (mean, covariance) with isotropic noise in the units
    ``(x - shift) / unit``, mapped back to x's units."""
    u = (train - shift) / unit
    mean = u.mean(0)
    eigenvalues, vectors = np.linalg.eigh(np.cov(u.T, bias=True))
    eigenvalues, vectors = eigenvalues[::-1], vectors[:, ::-1]
    noise = eigenvalues[FACTORS:].mean()
    weight = vectors[:, :FACTORS] * np.sqrt(eigenvalues[:FACTORS] - noise)
    covariance = weight @ weight.T + noise * np.eye(DIM)
    return shift + unit * mean, covariance * np.outer(unit, unit)


@pytest.mark.parametrize("scale", ["dim", "shared"])
def test_cli_defaults_reach_the_maximum_likelihood_of_a_linear_gaussian_model(tmp_path, scale):
    draw, offset, covariance = factor_model(seed=11 if scale == "dim" else 12,
                                            isotropic=scale == "shared")
    rng = np.random.default_rng(2024)
    data, held_out = draw(N, rng), draw(HELD_OUT, rng)
    np.save(tmp_path / "data.npy", data.astype(np.float32))
    run = tmp_path / "run"
    argv = ["fit", "--data", str(tmp_path / "data.npy"), "--likelihood", "gaussian",
            "--decoder", "linear", "--latent-dim", str(FACTORS), "--out", str(run), "--no-report"]
    if scale == "shared":
        argv += ["--gaussian-scale", "shared"]
    assert main(argv) == 0

    config = runs.read_config(run)
    train = runs.prepare_data(config["data"]).split("train").astype(np.float64)
    module = VAE.load(run).module_.double()
    with torch.no_grad():
        marginal = module.linear_gaussian_marginal()
        model = marginal.log_prob(torch.tensor(held_out)).numpy()
        shift, unit = module.observation.shift.numpy(), module.observation.unit.numpy()
    if scale == "dim":
        mle = FactorAnalysis(FACTORS, tol=1e-10, max_iter=100_000).fit(train).score_samples(held_out)
    else:
        mle = gaussian_log_prob(held_out, *ppca_mle(train, shift, unit))
    truth = gaussian_log_prob(held_out, offset, covariance)

    assert model.mean() > mle.mean() - 0.02, (model.mean(), mle.mean())
    difference = model - truth
    stderr = difference.std(ddof=1) / np.sqrt(len(difference))
    assert difference.mean() < 3 * stderr, (model.mean(), truth.mean(), stderr)
