"""Two stochastic layers (elbokit.models.hierarchy): with linear-Gaussian conditionals log p(x)
is known in closed form, and so is the exact posterior, a ground truth for every bound."""

from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as D

from elbokit import bounds, diagnostics
from elbokit.errors import ConfigError
from elbokit.models.vae import VAEConfig, VAEModule

F64 = torch.float64
MIN_SCALE = 1e-5  # the floor GaussianLatent adds to softplus(raw scale)


def inverse_softplus(y: float) -> float:
    return math.log(math.expm1(y - MIN_SCALE))


def set_gaussian_head(layer: torch.nn.Linear, loc_weight, loc_bias: float, scale: float) -> None:
    """A linear layer with outputs [loc, raw scale]: loc = w . input + b, scale constant."""
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[0] = torch.as_tensor(loc_weight, dtype=F64)
        if layer.bias is not None:
            layer.bias.copy_(torch.tensor([loc_bias, inverse_softplus(scale)], dtype=F64))


class LinearGaussianTwoLayers:
    """z2 ~ N(0, 1); z1 | z2 ~ N(a z2 + c, s1^2); x | z1, z2 ~ N(w1 z1 + w2 z2 + b, diag sigma^2),
    as an elbokit model with linear networks, and its exact marginal and posteriors."""

    def __init__(self, seed: int = 0, dim: int = 3) -> None:
        g = torch.Generator().manual_seed(seed)
        self.a, self.c, self.s1 = 0.8, 0.3, 0.6
        self.w = torch.randn(dim, 2, generator=g, dtype=F64)  # columns: z1's, z2's
        self.b = torch.randn(dim, generator=g, dtype=F64)
        self.sigma = 0.3 + 0.4 * torch.rand(dim, generator=g, dtype=F64)
        config = VAEConfig(dim=dim, latent_dim=1, encoder="linear", decoder="linear",
                           stochastic_layers=2, likelihood={"name": "gaussian", "scale": "dim"})
        self.model = VAEModule(config).to(F64)
        m = self.model
        set_gaussian_head(m.generative_z1[0], [self.a], self.c, self.s1)
        with torch.no_grad():
            m.decoder[0].weight.copy_(self.w)
            m.decoder[0].bias.copy_(self.b)
            m.observation.log_scale.copy_((self.sigma - m.observation.min_scale).log())
        # The joint of v = (z2, z1, x) = L e + mu, e ~ N(0, I) of size 2 + dim.
        w1, w2 = self.w[:, 0], self.w[:, 1]
        L = torch.zeros(2 + dim, 2 + dim, dtype=F64)
        L[0, 0] = 1
        L[1, 0], L[1, 1] = self.a, self.s1
        L[2:, 0] = self.a * w1 + w2
        L[2:, 1] = self.s1 * w1
        L[2:, 2:] = torch.diag(self.sigma)
        self.cov = L @ L.T
        self.mu = torch.cat([torch.tensor([0.0, self.c], dtype=F64), w1 * self.c + self.b])
        self.set_posterior()

    def marginal(self) -> D.MultivariateNormal:
        return D.MultivariateNormal(self.mu[2:], self.cov[2:, 2:])

    def conditional(self, target: int, given: list[int]) -> tuple[torch.Tensor, float, float]:
        """v[target] | v[given] = N(coef . v[given] + intercept, var)."""
        S, mu = self.cov, self.mu
        coef = torch.linalg.solve(S[given][:, given], S[given, target])
        intercept = float(mu[target] - coef @ mu[given])
        var = float(S[target, target] - S[target, given] @ coef)
        return coef, intercept, var

    def set_posterior(self, shift: float = 0.0, widen: float = 1.0) -> None:
        """q(z2 | x) q(z1 | x, z2) = the exact posterior (``shift`` = 0, ``widen`` = 1), or
        one moved by ``shift`` of its standard deviations, which are multiplied by ``widen``."""
        dim = len(self.b)
        xs = list(range(2, 2 + dim))
        coef, intercept, var = self.conditional(0, xs)  # z2 | x
        set_gaussian_head(self.model.encoder[0], coef, intercept + shift * math.sqrt(var),
                          widen * math.sqrt(var))
        coef, intercept, var = self.conditional(1, [0, *xs])  # z1 | z2, x
        joint = self.model.inference_z1
        set_gaussian_head(joint.from_a, coef[1:], intercept + shift * math.sqrt(var),
                          widen * math.sqrt(var))
        with torch.no_grad():
            joint.from_b.weight.zero_()
            joint.from_b.weight[0, 0] = coef[0]

    def data(self, n: int, seed: int = 1) -> torch.Tensor:
        torch.manual_seed(seed)
        return self.marginal().sample((n,))


def test_with_the_exact_posterior_every_bound_is_log_p_x():
    truth = LinearGaussianTwoLayers()
    x = truth.data(40)
    exact = truth.marginal().log_prob(x)
    with torch.no_grad():
        torch.manual_seed(2)
        terms = bounds.elbo(truth.model, x, n_samples=3)
        estimate, stderr = bounds.log_likelihood(truth.model, x, k=20, chunk=10)
    # log w = log p(x, z) - log q(z | x) = log p(x) for every z when q is the posterior.
    assert torch.allclose(terms.elbo, exact, atol=1e-9, rtol=0)
    assert torch.allclose(estimate, exact, atol=1e-9, rtol=0)
    assert float(stderr.max()) < 1e-6


def test_with_another_posterior_the_elbo_is_below_iwae_rises_and_is_sampling_estimates_log_p_x():
    truth = LinearGaussianTwoLayers()
    # Moved by half a standard deviation and widened (a wider proposal keeps the importance
    # weights bounded, so their standard error is trustworthy).
    truth.set_posterior(shift=0.5, widen=1.5)
    x = truth.data(40)
    exact = float(truth.marginal().log_prob(x).mean())
    torch.manual_seed(3)
    with torch.no_grad():
        # Each bound as a mean over 40 examples x 200 repeats, with its standard error.
        def mean_and_se(values: torch.Tensor) -> tuple[float, float]:
            per_example = values.mean(0)
            return float(per_example.mean()), float(values.mean(1).std() / math.sqrt(len(values)))
        elbo = mean_and_se(torch.stack([bounds.elbo(truth.model, x).elbo for _ in range(200)]))
        iwae10 = mean_and_se(torch.stack([bounds.iwae_bound(truth.model, x, 10) for _ in range(200)]))
        iwae100 = mean_and_se(torch.stack([bounds.iwae_bound(truth.model, x, 100) for _ in range(200)]))
        estimate, stderr = bounds.log_likelihood(truth.model, x, k=5000, chunk=500)
    assert elbo[0] + 3 * elbo[1] < iwae10[0] - 3 * iwae10[1]
    assert iwae10[0] + 3 * iwae10[1] < iwae100[0] - 3 * iwae100[1]
    assert iwae100[0] < exact + 3 * iwae100[1]
    assert exact - elbo[0] > 0.05  # the moved posterior is measurably worse
    se = float(stderr.square().sum().sqrt() / len(x))
    assert abs(float(estimate.mean()) - exact) < 3 * se, (float(estimate.mean()), exact, se)


def test_prior_samples_follow_the_generative_model():
    """z = [z1, z2] drawn from the prior: z2 ~ N(0, 1), z1 | z2 ~ N(a z2 + c, s1^2); the
    sample covariance matches within 4 standard errors (100,000 draws)."""
    truth = LinearGaussianTwoLayers()
    torch.manual_seed(4)
    z = truth.model.prior().sample((100_000,))  # [n, 2] = [z1, z2]
    assert z.shape == (100_000, 2)
    expected_cov = truth.cov[[1, 0]][:, [1, 0]][:2, :2]  # order (z1, z2)
    cov = torch.cov(z.T)
    # sd of a sample (co)variance of Gaussians ~ sqrt((S_ii S_jj + S_ij^2) / n)
    diag = expected_cov.diagonal()
    se = ((diag[:, None] * diag[None, :] + expected_cov.square()) / len(z)).sqrt()
    assert torch.all((cov - expected_cov).abs() < 4 * se)
    assert torch.all((z.mean(0) - truth.mu[[1, 0]]).abs() < 4 * (diag / len(z)).sqrt())


def test_two_layers_train_report_active_units_per_layer_and_refuse_what_they_cannot_do():
    torch.manual_seed(5)
    model = VAEModule(VAEConfig(dim=12, latent_dim=3, hidden=(16,), stochastic_layers=2,
                                prior="vamp:5"))
    x = (torch.rand(64, 12) < 0.3).float()
    bounds.elbo(model, x).surrogate.mean().backward()
    for part in (model.inference_z1, model.generative_z1, model.prior_module):
        assert all(p.grad is not None and torch.any(p.grad != 0) for p in part.parameters())
    found = diagnostics.diagnose(model, x)
    assert found["latent_dim"] == 6 and len(found["active_units_per_layer"]) == 2
    assert sum(found["active_units_per_layer"]) == found["active_units"]
    assert "2 stochastic layers" in model.describe() and "vamp:5 prior" in model.describe()
    with pytest.raises(ConfigError, match="must be 1 or 2"):
        VAEConfig(dim=4, stochastic_layers=3)
    with pytest.raises(ConfigError, match="diagonal posterior"):
        VAEConfig(dim=4, stochastic_layers=2, posterior="iaf:1")
    with pytest.raises(ConfigError, match="not conv"):
        VAEConfig(dim=4, stochastic_layers=2, encoder="conv", image_shape=(2, 2))
