"""elbokit.models.vae: VAEConfig's checks and saved form, VAEModule's protocol shapes for
every latent kind, its fast log-densities against the distribution objects, and the
closed-form marginal of a linear-Gaussian VAE against numerical integration."""

from __future__ import annotations

import json

import pytest
import torch

from elbokit.errors import ConfigError
from elbokit.models.base import LatentVariableModel
from elbokit.models.vae import VAEConfig, VAEModule, infer_image_shape

LATENTS = [("gaussian", 3, 2), ("bernoulli", 3, 2), ("categorical", 2, 4)]


def module(latent: str = "gaussian", latent_dim: int = 3, categories: int = 2, **options):
    torch.manual_seed(0)
    return VAEModule(VAEConfig(dim=6, latent_dim=latent_dim, latent=latent,
                               categories=categories, hidden=(8,), **options)).double()


@pytest.mark.parametrize("latent, n, categories", LATENTS)
def test_the_protocol_shapes_for_every_latent_kind(latent, n, categories):
    model = module(latent, n, categories)
    assert isinstance(model, LatentVariableModel)
    event = (n, categories) if latent == "categorical" else (n,)
    assert model.prior().batch_shape == () and model.prior().event_shape == event
    x = (torch.rand(5, 6, dtype=torch.float64) < 0.5).double()
    q = model.posterior(x)
    assert q.batch_shape == (5,) and q.event_shape == event
    z = q.sample((4,))  # [k, batch, *event], as the IWAE bound draws
    assert model.likelihood(z).batch_shape == (4, 5)
    assert model.likelihood(z).event_shape == (6,)
    assert model.decode_mean(z).shape == (4, 5, 6)
    assert model.describe() == f"VAE (latent {model.config.latent_spec}, bernoulli likelihood)"


@pytest.mark.parametrize("latent, n, categories", LATENTS)
def test_the_fast_log_densities_equal_the_distribution_objects(latent, n, categories):
    """likelihood_log_prob (the training step's path) and likelihood_table (enumeration's)
    equal log_prob of the distribution likelihood(z) returns."""
    model = module(latent, n, categories)
    x = (torch.rand(5, 6, dtype=torch.float64) < 0.5).double()
    z = model.posterior(x).sample((3,))
    torch.testing.assert_close(model.likelihood_log_prob(z, x), model.likelihood(z).log_prob(x),
                               rtol=1e-12, atol=1e-12)
    codes = model.prior().sample((7,))  # [S, *event]
    table = model.likelihood_table(codes, x)  # [B, S]
    broadcast = model.likelihood(codes[:, None]).log_prob(x).T  # [S, B] -> [B, S]
    torch.testing.assert_close(table, broadcast, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("scale", ["shared", "dim"])
def test_the_linear_gaussian_marginal_equals_the_integral_over_z(scale):
    """p(x) = integral of p(z) p(x | z) dz, by the trapezoidal rule on a fine grid of a 1-d z,
    using the module's own prior and likelihood: the closed form agrees to 1e-6 nats."""
    torch.manual_seed(0)
    model = VAEModule(VAEConfig(dim=3, latent_dim=1, encoder="linear", decoder="linear",
                                likelihood={"name": "gaussian", "scale": scale})).double()
    with torch.no_grad():
        model.observation.log_scale.uniform_(-1.0, 0.5)  # unequal noise where scale="dim"
        marginal = model.linear_gaussian_marginal()
        x = torch.randn(10, 3, dtype=torch.float64) * 2
        grid = torch.linspace(-12, 12, 20001, dtype=torch.float64)[:, None]  # [G, 1]
        log_joint = model.prior().log_prob(grid)[:, None] + model.likelihood(grid[:, None]).log_prob(x)
        peak = log_joint.max(0).values
        integral = torch.trapezoid((log_joint - peak).exp(), grid[:, 0], dim=0).log() + peak
    torch.testing.assert_close(marginal.log_prob(x), integral, rtol=0, atol=1e-6)


def test_the_marginal_is_refused_where_it_is_not_closed_form():
    for options in ({"decoder": "mlp", "likelihood": {"name": "gaussian"}},
                    {"decoder": "linear", "likelihood": {"name": "bernoulli"}},
                    {"decoder": "linear", "likelihood": {"name": "gaussian", "scale": "decoder"}}):
        with pytest.raises(ConfigError, match="closed-form only"):
            VAEModule(VAEConfig(dim=4, latent_dim=2, **options)).linear_gaussian_marginal()


@pytest.mark.parametrize("options, message", [
    ({"dim": 0}, "data dimension must be >= 1"),
    ({"hidden": (8, 0)}, "hidden widths must be >= 1"),
    ({"encoder": "rnn"}, "encoder must be one of mlp, linear, conv"),
    ({"decoder": "rnn"}, "decoder must be one of mlp, linear, conv"),
    ({"activation": "gelu"}, "activation must be one of relu, tanh, elu"),
    ({"conv_channels": (4, 0)}, "conv channel widths must be >= 1"),
    ({"latent": "categorical", "categories": 1}, "needs >= 2 states"),
])
def test_impossible_configurations_are_refused_in_one_line(options, message):
    with pytest.raises(ConfigError, match=message) as caught:
        VAEConfig(**{"dim": 4, **options})
    assert "\n" not in str(caught.value)


def test_a_config_survives_json_and_rebuilds_the_same_network():
    config = VAEConfig(dim=6, latent="categorical", latent_dim=2, categories=3, hidden=(5, 4))
    again = VAEConfig(**json.loads(json.dumps(config.to_dict())))
    assert again == config
    a, b = VAEModule(config), VAEModule(again)
    assert {k: v.shape for k, v in a.state_dict().items()} == \
        {k: v.shape for k, v in b.state_dict().items()}


def test_a_square_number_of_values_is_one_grey_image():
    squares = {side * side: side for side in range(1, 40)}
    for dim in range(1, 40 * 40):
        side = squares.get(dim)
        assert infer_image_shape(dim) == ((1, side, side) if side else None), dim


def test_image_shapes_are_checked_and_old_configs_still_load():
    with pytest.raises(ConfigError, match="63 values per example are not a square"):
        VAEConfig(dim=63, encoder="conv")
    with pytest.raises(ConfigError, match="image shape 1x7x8 has 56 values, but the data has 63"):
        VAEConfig(dim=63, decoder="conv", image_shape=(7, 8))
    for bad in [(0, 63), (63,), (1, 1, 7, 9), "7x9", (7.5, 8.4)]:
        with pytest.raises(ConfigError, match="image shape must be"):
            VAEConfig(dim=63, encoder="conv", image_shape=bad)
    assert VAEConfig(dim=63).image_shape is None  # an MLP needs no image shape
    config = VAEConfig(dim=64, encoder="conv")
    assert VAEConfig(**json.loads(json.dumps(config.to_dict()))) == config
    old = VAEConfig(dim=64).to_dict()
    del old["image_shape"], old["conv_channels"]  # a model.json from before the conv option
    assert VAEConfig(**old) == VAEConfig(dim=64)
