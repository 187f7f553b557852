"""Diagnostics and objective controls against cases whose answer is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import distributions as D

from elbokit import bounds, diagnostics
from elbokit.errors import ConfigError
from elbokit.models.vae import VAEConfig, VAEModule
from elbokit.training import TrainConfig, Trainer


def linear_vae(dim: int = 6, latent: int = 4, seed: int = 0) -> VAEModule:
    torch.manual_seed(seed)
    config = VAEConfig(dim=dim, latent_dim=latent, encoder="linear", decoder="linear",
                       likelihood={"name": "gaussian", "scale": "shared"})
    return VAEModule(config).double()


@pytest.mark.parametrize("latent", ["gaussian", "bernoulli", "categorical"])
def test_kl_per_dimension_sums_to_the_kl(latent):
    torch.manual_seed(0)
    config = VAEConfig(dim=5, latent_dim=3, latent=latent, categories=4, hidden=(8,),
                       likelihood={"name": "bernoulli"})
    model = VAEModule(config).double()
    x = torch.bernoulli(torch.full((7, 5), 0.5)).double()
    q, p = model.posterior(x), model.prior()
    per = bounds.kl_per_dimension(q, p)
    assert per.shape == (7, 3)
    torch.testing.assert_close(per.sum(-1), bounds.kl_divergence(q, p), rtol=0, atol=1e-12)
    torch.testing.assert_close(diagnostics.kl_per_dimension(model, x), per.mean(0))


def test_free_bits_charge_at_least_lambda_and_free_the_small_dimensions():
    """sum_i max(lambda, mean_b KL_i); a dimension under lambda gets no gradient."""
    loc = torch.tensor([[0.0, 2.0], [0.1, -2.0]], requires_grad=True)
    q = D.Independent(D.Normal(loc, torch.ones(2, 2)), 1)
    p = D.Independent(D.Normal(torch.zeros(2), torch.ones(2)), 1)
    per_dim_mean = (0.5 * loc.detach() ** 2).mean(0)  # KL of N(m, 1) || N(0, 1) = m^2 / 2
    penalty = bounds.free_bits_penalty(q, p, free_bits=0.5)
    assert math.isclose(penalty.item(), 0.5 + per_dim_mean[1].item(), rel_tol=1e-6)
    penalty.backward()
    assert torch.all(loc.grad[:, 0] == 0) and torch.all(loc.grad[:, 1] != 0)


def test_free_bits_and_warmup_options():
    config = TrainConfig(beta=2.0, kl_warmup=4)
    assert config.beta_at(1, 0.0) == 0.0
    assert config.beta_at(2, 0.5) == pytest.approx(2.0 * 1.5 / 4)
    assert config.beta_at(5, 0.0) == config.beta_at(9, 0.3) == 2.0
    assert TrainConfig(beta=0.5).beta_at(1, 0.0) == 0.5
    with pytest.raises(ConfigError, match="kl-warmup"):
        TrainConfig(kl_warmup=-1)
    with pytest.raises(ConfigError, match="free-bits"):
        TrainConfig(free_bits=-0.1)
    with pytest.raises(ConfigError, match="IWAE"):
        TrainConfig(iwae_k=5, free_bits=0.1)


def test_warmup_is_recorded_and_the_reported_elbo_stays_true():
    torch.manual_seed(1)
    x = torch.randn(64, 6).double()
    model = linear_vae()
    history = Trainer(model, TrainConfig(epochs=3, batch_size=16, kl_warmup=2, free_bits=0.1,
                                         patience=None)).fit(x)
    assert [h["beta"] for h in history] == [0.5, 1.0, 1.0]
    for h in history:  # the objective was not the ELBO, the reported terms are
        assert h["train"]["elbo"] == pytest.approx(h["train"]["reconstruction"] - h["train"]["kl"])


def train_masked(ignored: list[int], steps: int = 1500) -> tuple[VAEModule, torch.Tensor]:
    """A linear VAE on data from a 2-factor linear-Gaussian model whose decoder ignores the
    latent dimensions ``ignored`` by construction (their weight columns held at 0)."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 2, generator=g, dtype=torch.float64) * 2
    x = torch.randn(512, 2, generator=g, dtype=torch.float64) @ w.T + 0.3 * torch.randn(
        512, 6, generator=g, dtype=torch.float64)
    model = linear_vae()
    (layer,) = model.decoder
    mask = torch.ones_like(layer.weight)
    mask[:, ignored] = 0
    with torch.no_grad():
        layer.weight.mul_(mask)
    layer.weight.register_hook(lambda grad: grad * mask)  # Adam never moves them off 0
    epochs = steps * 64 // 512
    Trainer(model, TrainConfig(epochs=epochs, batch_size=64, lr=1e-2, patience=None)).fit(x)
    return model, x


def test_ignored_dimensions_are_inactive_and_the_rest_active():
    model, x = train_masked(ignored=[2, 3])
    found = diagnostics.diagnose(model, x)
    print("\nCov_x E[z|x]:", np.round(found["posterior_mean_variance"], 4),
          "KL per dim:", np.round(found["kl_per_dimension"], 4))
    assert found["active"] == [True, True, False, False] and found["active_units"] == 2
    assert found["inactive"] == [2, 3] and not found["collapsed"] and found["warnings"] == []
    kl = found["kl_per_dimension"]
    assert max(kl[2:]) < 0.01 < min(kl[:2])  # the ignored ones pay (almost) no rate
    assert 0 < found["mutual_information"] <= found["mutual_information_limit"]


def test_a_collapsed_encoder_has_no_information_and_says_so():
    model = linear_vae()
    with torch.no_grad():  # q(z | x) = q(z): the same posterior for every x
        model.encoder[0].weight.zero_()
    x = torch.randn(200, 6).double()
    found = diagnostics.diagnose(model, x, elbo=-10.0, log_likelihood=-9.5)
    assert found["active_units"] == 0 and found["collapsed"]
    assert found["mutual_information"] == pytest.approx(0.0, abs=1e-9)  # log q(z|x) = log q(z)
    assert found["gap"] == pytest.approx(0.5)
    assert len(found["warnings"]) == 1 and "posterior collapse" in found["warnings"][0]


class _WeakEncoder:
    """q(z | x) = N(eps x, I): z carries (almost, or with eps = 0 exactly) nothing about x."""

    def __init__(self, eps: float) -> None:
        self.eps = eps

    def posterior(self, x: torch.Tensor) -> D.Distribution:
        return D.Independent(D.Normal(self.eps * x, torch.ones_like(x)), 1)


def test_the_mutual_information_is_never_negative_nor_printed_as_minus_zero():
    """The one-sample estimate of I(x; z) >= 0 can come out below 0 (Monte-Carlo noise of
    about 1e-4 nats at eps = 0.01, rounding at eps = 0); it is reported as 0."""
    from elbokit.cli.common import diagnostics_lines

    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    for eps in (0.0, 0.01):
        for seed in range(10):
            estimate = diagnostics.mutual_information(_WeakEncoder(eps), x, seed=seed)
            assert estimate >= 0, (eps, seed, estimate)
            found = {"active_units": 0, "latent_dim": 2, "active_threshold": 0.01,
                     "mutual_information": estimate, "mutual_information_limit": math.log(50),
                     "warnings": []}
            assert "-0.00" not in diagnostics_lines(found, "test")[0]
    assert diagnostics.mutual_information(_WeakEncoder(1.0), x) > 0.1  # not always 0


def test_a_gap_of_rounding_noise_is_printed_as_zero_and_a_real_one_as_it_is():
    """An exact posterior's gap log p(x) - ELBO is 0 up to float32 rounding (a mixture's
    came out as -1e-6): printed 0.00, not -0.00; a gap that rounds to a nonzero value is
    printed as it is, sign included (a negative one would be worth seeing)."""
    from elbokit.cli.common import diagnostics_lines

    found = {"active_units": 1, "latent_dim": 1, "active_threshold": 0.01,
             "mutual_information": 1.0, "mutual_information_limit": 2.0, "warnings": []}
    for gap, shown in ((-1e-6, "0.00"), (-0.004, "0.00"), (0.0, "0.00"), (-0.02, "-0.02"),
                       (3.456, "3.46")):
        line = diagnostics_lines({**found, "gap": gap}, "test")[0]
        assert line.endswith(f"gap log p(x) - ELBO {shown} nats"), (gap, line)
    assert "gap" not in diagnostics_lines(found, "test")[0]


def test_a_near_deterministic_encoder_has_log_n_nats():
    """Well-separated, tiny posteriors: z identifies x, so I(x; z) = log N."""
    model = linear_vae(dim=4, latent=4)
    with torch.no_grad():
        model.encoder[0].weight.copy_(torch.cat([100 * torch.eye(4), torch.zeros(4, 4)]))
        model.encoder[0].bias.copy_(torch.cat([torch.zeros(4), torch.full((4,), -30.0)]))
    x = torch.randn(300, 4, generator=torch.Generator().manual_seed(3)).double()
    assert diagnostics.mutual_information(model, x) == pytest.approx(math.log(300), abs=1e-6)
