"""Posterior families (elbokit.models.flows): the IAF's log-determinant, its autoregressive
structure, its inverse, and that its log q is a normalized density, all against ground truth."""

from __future__ import annotations

import pytest
import torch
from torch import distributions as D

from elbokit import bounds
from elbokit.errors import ConfigError
from elbokit.models.flows import IAF, MADE, FlowPosterior, PosteriorSpec
from elbokit.models.vae import VAEConfig, VAEModule


def made_outputs(made: MADE, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    m, s = made(z, h)
    return torch.cat([m, s], -1)


def test_made_output_i_depends_on_earlier_inputs_only():
    torch.manual_seed(0)
    n = 5
    made = MADE(n, context_dim=3, hidden=(12, 12)).double()
    z, h = torch.randn(n, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda v: made_outputs(made, v, h), z)  # [2n, n]
    for block in (jacobian[:n], jacobian[n:]):  # d m / d z and d s / d z
        assert torch.all(block.triu() == 0), "output i must not depend on z_j for j >= i"
        assert torch.any(block.tril(-1) != 0)  # and does depend on earlier ones
    # The first output sees the context alone: it moves with h.
    jh = torch.autograd.functional.jacobian(lambda c: made_outputs(made, z, c), h)
    assert torch.any(jh[0] != 0) and torch.any(jh[n] != 0)


@pytest.mark.parametrize("steps", [1, 3])
def test_iaf_log_determinant_is_that_of_the_autograd_jacobian(steps):
    torch.manual_seed(1)
    n = 4
    flow = IAF(n, steps, context_dim=3, hidden=(16, 16)).double()
    h = torch.randn(3, dtype=torch.float64)
    for _ in range(3):
        z0 = torch.randn(n, dtype=torch.float64)
        _, log_det = flow(z0, h)
        jacobian = torch.autograd.functional.jacobian(lambda v: flow(v, h)[0], z0)
        assert float(log_det.detach()) == pytest.approx(float(torch.linalg.slogdet(jacobian)[1]),
                                                        abs=1e-9)
        if steps == 1:  # one step is itself triangular (later steps reverse the order)
            assert torch.all(jacobian.triu(1) == 0)


def test_inverse_undoes_the_flow_and_log_prob_matches_the_sampled_density():
    torch.manual_seed(2)
    n, batch = 6, 5
    flow = IAF(n, 2, context_dim=4, hidden=(24, 24)).double()
    base = D.Independent(D.Normal(torch.randn(batch, n, dtype=torch.float64),
                                  torch.rand(batch, n, dtype=torch.float64) + 0.2), 1)
    q = FlowPosterior(base, flow, torch.randn(batch, 4, dtype=torch.float64))
    z, log_q = q.rsample_and_log_prob(torch.Size([3]))
    assert z.shape == (3, batch, n) and log_q.shape == (3, batch)
    z0, _ = flow.inverse(z, q.context)
    assert torch.allclose(flow(z0, q.context)[0], z, atol=1e-12)
    assert torch.allclose(q.log_prob(z), log_q, atol=1e-10)


def test_the_flow_density_integrates_to_one():
    """q(z | x) of a 2-d flow posterior, summed over a fine grid (the midpoint rule on
    [-10, 10]^2, 600^2 cells), is 1: the log-determinants make it a normalized density. The
    rule's error for a smooth density with negligible mass outside the box is far below 1e-4."""
    torch.manual_seed(3)
    n = 2
    flow = IAF(n, 2, context_dim=2, hidden=(16, 16)).double()
    base = D.Independent(D.Normal(torch.tensor([[0.3, -0.2]], dtype=torch.float64),
                                  torch.tensor([[1.0, 0.7]], dtype=torch.float64)), 1)
    q = FlowPosterior(base, flow, torch.randn(1, 2, dtype=torch.float64))
    edges = torch.linspace(-10, 10, 601, dtype=torch.float64)
    mids, cell = (edges[1:] + edges[:-1]) / 2, float(edges[1] - edges[0])
    grid = torch.cartesian_prod(mids, mids)[:, None, :]  # [600^2, 1 (batch), 2]
    with torch.no_grad():
        total = float(q.log_prob(grid).exp().sum()) * cell**2
    assert total == pytest.approx(1.0, abs=1e-4)


def test_a_vae_with_an_iaf_posterior_trains_its_flow_and_bounds_order():
    torch.manual_seed(4)
    model = VAEModule(VAEConfig(dim=12, latent_dim=3, hidden=(16,), posterior="iaf:2"))
    x = (torch.rand(32, 12) < 0.4).float()
    terms = bounds.elbo(model, x)
    terms.surrogate.mean().backward()
    made_grads = [p.grad for p in model.posterior_module.parameters()]
    assert all(g is not None and torch.any(g != 0) for g in made_grads)
    # The encoder's context outputs (beyond the Gaussian's 2n) receive gradient too.
    last = model.encoder[-1]
    assert torch.any(last.weight.grad[2 * 3:] != 0)
    with torch.no_grad():
        torch.manual_seed(5)
        elbo = bounds.elbo(model, x, n_samples=2000).elbo
        iwae = bounds.iwae_bound(model, x, 50)
    assert float(elbo.mean()) < float(iwae.mean())


def test_specs_parse_and_refuse_in_one_line():
    assert PosteriorSpec.parse("iaf:3") == PosteriorSpec("iaf", 3)
    assert str(PosteriorSpec.parse(" diagonal ")) == "diagonal"
    for bad, message in (("iaf", "iaf:S"), ("iaf:0", "iaf:S"), ("diagonal:2", "diagonal takes no S"),
                         ("flow:2", "is not one of diagonal, iaf:S")):
        with pytest.raises(ConfigError, match=message):
            PosteriorSpec.parse(bad)
    with pytest.raises(ConfigError, match="needs a Gaussian latent"):
        VAEConfig(dim=4, latent="bernoulli", posterior="iaf:1")
