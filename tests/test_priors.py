"""Priors (elbokit.models.priors): the VampPrior and the learned mixture against explicit
torch.distributions mixtures, gradients to the pseudo-inputs, and the Monte-Carlo KL against
the closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import distributions as D

from elbokit import bounds, diagnostics
from elbokit.api import VAE
from elbokit.errors import ConfigError
from elbokit.models.priors import GaussianMixture, PriorSpec
from elbokit.models.vae import VAEConfig, VAEModule


def vamp_module(dim=10, latent=3, k=7, likelihood="bernoulli", dtype=torch.float64):
    torch.manual_seed(0)
    config = VAEConfig(dim=dim, latent_dim=latent, hidden=(16,), prior=f"vamp:{k}",
                       likelihood={"name": likelihood})
    return VAEModule(config).to(dtype)


def test_vamp_prior_is_the_mixture_of_the_posteriors_at_the_pseudo_inputs():
    model = vamp_module()
    u = model.prior_module.pseudo_inputs()
    assert u.shape == (7, 10)
    q = model.posterior(u)  # the encoder's posterior at each pseudo-input (x = u)
    explicit = D.MixtureSameFamily(D.Categorical(logits=torch.zeros(7, dtype=torch.float64)),
                                   D.Independent(D.Normal(q.base_dist.loc, q.base_dist.scale), 1))
    z = torch.randn(4, 5, 3, dtype=torch.float64) * 2
    assert torch.allclose(model.prior().log_prob(z), explicit.log_prob(z), atol=1e-10, rtol=0)


def test_gradients_reach_the_pseudo_inputs_and_the_encoder_through_the_prior():
    model = vamp_module(dtype=torch.float32)
    x = (torch.rand(16, 10) < 0.5).float()
    bounds.elbo(model, x).surrogate.mean().backward()
    assert torch.any(model.prior_module.raw_inputs.grad != 0)
    # log p(z) alone also moves the encoder (the prior is made of its outputs).
    model.zero_grad()
    model.prior().log_prob(torch.randn(8, 3)).sum().backward()
    assert torch.any(model.encoder[0].weight.grad != 0)


def test_pseudo_inputs_stay_in_the_range_of_bounded_inputs():
    model = vamp_module(dtype=torch.float32)
    with torch.no_grad():
        model.prior_module.raw_inputs.mul_(40)  # far outside [0, 1]
    u = model.prior_module.pseudo_inputs()
    assert float(u.min()) >= 0 and float(u.max()) <= 1
    unbounded = vamp_module(likelihood="gaussian")  # standardized real data: no clipping
    assert unbounded.prior_module.input_range is None


def test_the_facade_starts_the_pseudo_inputs_at_training_rows():
    rng = np.random.default_rng(0)
    x = (rng.random((200, 10)) < 0.3).astype(np.float32)
    module = VAE(hidden=(8,), latent_dim=2, prior="vamp:5", likelihood="bernoulli").build(x)
    u = module.prior_module.raw_inputs.detach().numpy()
    # Each pseudo-input is a training row plus N(0, 0.01^2) noise: within 0.06 of a row.
    nearest = np.abs(u[:, None, :] - x[None]).max(-1).min(-1)
    assert np.all(nearest < 0.06)


def test_gaussian_mixture_matches_torch_and_samples_its_weights():
    torch.manual_seed(1)
    loc, scale = torch.randn(6, 4, dtype=torch.float64), torch.rand(6, 4, dtype=torch.float64) + 0.1
    logits = torch.randn(6, dtype=torch.float64)
    mixture = GaussianMixture(loc, scale, logits)
    explicit = D.MixtureSameFamily(D.Categorical(logits=logits), D.Independent(D.Normal(loc, scale), 1))
    z = torch.randn(3, 9, 4, dtype=torch.float64) * 3
    assert torch.allclose(mixture.log_prob(z), explicit.log_prob(z), atol=1e-10, rtol=0)
    # Samples follow the mixture: the mean of 100,000 draws is within 4 SE of sum_k pi_k m_k.
    draws = mixture.sample((100_000,))
    se = draws.std(0) / math.sqrt(len(draws))
    assert torch.all((draws.mean(0) - mixture.mean).abs() < 4 * se)


def test_a_one_component_mixture_has_the_closed_form_kl_by_monte_carlo():
    """KL(q || p) estimated from samples (what the bounds use for mixture priors) agrees with
    the closed form of two diagonal Gaussians within 4 standard errors."""
    torch.manual_seed(2)
    q = D.Independent(D.Normal(torch.randn(5, 3, dtype=torch.float64),
                               torch.rand(5, 3, dtype=torch.float64) + 0.3), 1)
    m, s = torch.randn(1, 3, dtype=torch.float64), torch.rand(1, 3, dtype=torch.float64) + 0.5
    p = GaussianMixture(m, s, torch.zeros(1, dtype=torch.float64))
    exact = D.kl_divergence(q, D.Independent(D.Normal(m[0], s[0]), 1))
    z = q.sample((40_000,))
    samples = q.log_prob(z) - p.log_prob(z)  # [k, batch]
    assert bounds.closed_form_kl(q, p) is None  # no closed form registered: Monte Carlo
    se = samples.std(0) / math.sqrt(len(samples))
    assert torch.all((samples.mean(0) - exact).abs() < 4 * se)


def test_a_vamp_or_mog_vae_trains_and_its_bounds_order():
    torch.manual_seed(3)
    x = (torch.rand(64, 10) < 0.3).float()
    for prior in ("mog:3", "vamp:4"):
        model = VAEModule(VAEConfig(dim=10, latent_dim=2, hidden=(16,), prior=prior))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        start = float(bounds.elbo(model, x, n_samples=200).elbo.mean())
        for _ in range(100):
            optimizer.zero_grad()
            (-bounds.elbo(model, x).surrogate.mean()).backward()
            optimizer.step()
        with torch.no_grad():
            elbo = float(bounds.elbo(model, x, n_samples=500).elbo.mean())
            iwae = float(bounds.iwae_bound(model, x, 100).mean())
        assert elbo > start + 1 and iwae > elbo, prior
        # No closed-form KL per dimension against a mixture: the diagnostics leave it out.
        found = diagnostics.diagnose(model, x)
        assert "kl_per_dimension" not in found and found["latent_dim"] == 2


def test_specs_parse_and_refuse_in_one_line():
    assert PriorSpec.parse("vamp:500") == PriorSpec("vamp", 500)
    assert str(PriorSpec.parse("standard")) == "standard"
    for bad, message in (("vamp", "vamp:K, e.g. vamp:500"), ("mog:0", "mog:K"),
                         ("standard:3", "standard takes no K"), ("flow", "is not one of")):
        with pytest.raises(ConfigError, match=message):
            PriorSpec.parse(bad)
    with pytest.raises(ConfigError, match="needs a Gaussian latent"):
        VAEConfig(dim=4, latent="categorical", latent_dim=2, prior="mog:2")
