"""Observation models against scipy's log-densities, and their data checks."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from torch import distributions as D

import elbokit
from elbokit.errors import ConfigError, DataError
from elbokit.likelihoods import (
    LIKELIHOODS,
    Bernoulli,
    Categorical,
    Gaussian,
    Multinomial,
    build_likelihood,
    choose_likelihood,
    likelihood_for_data,
)

rng = np.random.default_rng(0)


def test_bernoulli_matches_scipy():
    logits = torch.randn(4, 6, dtype=torch.float64)
    x = torch.bernoulli(torch.full((4, 6), 0.5, dtype=torch.float64))
    ours = Bernoulli(6)(logits).log_prob(x)
    p = torch.sigmoid(logits).numpy()
    ref = stats.bernoulli.logpmf(x.numpy(), p).sum(-1)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-10)


@pytest.mark.parametrize("scale", ["dim", "shared", "decoder"])
def test_gaussian_density_is_on_the_data_scale(scale):
    x = rng.normal(loc=50.0, scale=[1.0, 10.0, 100.0], size=(200, 3))
    model = likelihood_for_data("gaussian", x, "x", gaussian_scale=scale).double()
    params = torch.randn(5, model.n_params, dtype=torch.float64)
    xt = torch.as_tensor(x[:5])
    with torch.no_grad():
        dist = model(params)
        ours = dist.log_prob(xt).numpy()
    loc, sd = dist.base_dist.loc.numpy(), dist.base_dist.scale.numpy()
    np.testing.assert_allclose(ours, stats.norm.logpdf(x[:5], loc, sd).sum(-1), rtol=1e-10)
    # Standardized-unit location maps back through shift + unit * loc.
    if scale != "decoder":
        np.testing.assert_allclose(model.mean(params).detach().numpy(), loc)
    if scale == "shared":
        assert torch.allclose(model.unit, model.unit[0].expand(3))  # isotropic unit


def test_gaussian_standardization_changes_nothing_but_units():
    """A density on the data's own scale: rescaling x by c shifts log p by -D log c exactly
    when the model is rescaled too."""
    x = rng.normal(size=(100, 4))
    a = likelihood_for_data("gaussian", x, "x").double()
    b = likelihood_for_data("gaussian", 10 * x, "x").double()
    params = torch.randn(3, 4, dtype=torch.float64)
    xa = torch.as_tensor(x[:3])
    diff = a(params).log_prob(xa) - b(params).log_prob(10 * xa)
    assert torch.allclose(diff, torch.full((3,), 4 * np.log(10.0), dtype=torch.float64))


def test_categorical_matches_scipy():
    model = Categorical(3, 4)
    params = torch.randn(2, 12, dtype=torch.float64)
    x = torch.tensor([[0, 3, 1], [2, 2, 0]], dtype=torch.float64)
    ours = model(params).log_prob(x)
    probs = params.reshape(2, 3, 4).softmax(-1).numpy()
    ref = [sum(np.log(probs[i, d, int(x[i, d])]) for d in range(3)) for i in range(2)]
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-10)
    expected_mean = (probs * np.arange(4)).sum(-1)
    np.testing.assert_allclose(model.mean(params).numpy(), expected_mean)


def test_multinomial_handles_documents_of_any_length():
    model = Multinomial(5, sample_length=7)
    params = torch.randn(3, 5, dtype=torch.float64)
    x = torch.tensor([[1, 0, 2, 0, 0], [0, 0, 0, 0, 9], [3, 1, 1, 1, 1]], dtype=torch.float64)
    ours = model(params).log_prob(x)
    probs = params.softmax(-1).numpy()
    ref = [stats.multinomial.logpmf(x[i].numpy(), int(x[i].sum()), probs[i]) for i in range(3)]
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-10)
    assert model(params).sample().sum(-1).eq(7).all()
    # The direct path (training and scoring): parameters of k = 4 samples of z per example,
    # [4, 3, 5], against the 3 documents [3, 5].
    params = torch.randn(4, 3, 5, dtype=torch.float64)
    direct = model.log_prob(params, x)
    assert direct.shape == (4, 3)
    ref = [[stats.multinomial.logpmf(x[i].numpy(), int(x[i].sum()), params[s, i].softmax(-1).numpy())
            for i in range(3)] for s in range(4)]
    np.testing.assert_allclose(direct.numpy(), ref, rtol=1e-10)
    np.testing.assert_allclose(direct.numpy(), model(params).log_prob(x).numpy(), rtol=1e-12)


def test_data_checks_name_the_rows_and_suggest_fixes():
    x = np.zeros((6, 3))
    x[[1, 4], 0] = 0.5
    with pytest.raises(DataError, match=r"rows 1, 4 \(counting from 0\).*--likelihood gaussian.*--binarize"):
        Bernoulli.check(x, "f.csv")
    with pytest.raises(DataError, match="row 2 "):
        Multinomial.check(np.array([[1, 2.0], [0, 1], [1.5, 0]]), "f")
    with pytest.raises(DataError, match="empty documents"):
        Multinomial.check(np.array([[1, 2.0], [0, 0]]), "f")
    with pytest.raises(DataError, match="below 3"):
        Categorical.check(np.array([[0, 1.0], [3, 1]]), "f", 3)


def test_auto_choice_and_rebuild_from_config():
    binary = rng.integers(0, 2, size=(10, 4)).astype(float)
    assert choose_likelihood(binary) == "bernoulli"
    assert choose_likelihood(binary + 0.1) == "gaussian"
    model = likelihood_for_data("categorical", np.array([[0, 1.0], [4, 2]]), "f")
    assert model.n_categories == 5 and model.n_params == 10
    rebuilt = build_likelihood(model.config(), 2)
    assert isinstance(rebuilt, Categorical) and rebuilt.n_categories == 5
    with pytest.raises(ConfigError, match="unknown likelihood"):
        likelihood_for_data("poisson", binary, "f")
    with pytest.raises(ConfigError, match="scale"):
        Gaussian(3, scale="full")


@pytest.mark.parametrize("name", ["bernoulli", "gaussian", "categorical", "multinomial"])
def test_log_prob_table_equals_broadcast_log_prob(name):
    """The matrix-product enumeration path equals the plain broadcast one, in float64."""
    g = np.random.default_rng(1)
    data = {"bernoulli": g.integers(0, 2, (9, 5)), "gaussian": g.normal(3.0, 5.0, (9, 5)),
            "categorical": g.integers(0, 4, (9, 5)), "multinomial": g.integers(0, 5, (9, 5)) + 1}
    x = data[name].astype(float)
    model = likelihood_for_data(name, x, "x").double()
    params = torch.randn(7, model.n_params, dtype=torch.float64)
    xt = torch.as_tensor(x)
    with torch.no_grad():
        table = model.log_prob_table(params, xt)
        reference = model(params.unsqueeze(1)).log_prob(xt.unsqueeze(0)).T
    assert table.shape == (9, 7)
    assert torch.allclose(table, reference, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("shape", [(5, 7), (3, 5, 7)])
def test_observation_log_prob_is_the_distributions_log_prob(shape):
    """``ObservationModel.log_prob(params, x)`` (the training step's direct path; Bernoulli's
    own formula) equals ``model(params).log_prob(x)`` for every observation model: the same
    op where a gradient is taken; Bernoulli's scoring path (no gradient: x . logit - sum
    softplus) to float64 rounding, for 0/1 data and for probabilities in [0, 1]."""
    torch.manual_seed(0)
    x_binary = torch.bernoulli(torch.full((5, 7), 0.4))
    x_real = torch.randn(5, 7)
    for config, x in (({"name": "bernoulli"}, x_binary), ({"name": "gaussian"}, x_real),
                      ({"name": "gaussian", "scale": "decoder"}, x_real)):
        obs = build_likelihood(config, 7)
        params = torch.randn(*shape[:-1], obs.n_params, requires_grad=True)
        assert torch.equal(obs.log_prob(params, x), obs(params).log_prob(x)), config
    bernoulli = build_likelihood({"name": "bernoulli"}, 7)
    logits = 5 * torch.randn(*shape[:-1], 7, dtype=torch.float64)
    for x in (x_binary.double(), torch.rand(5, 7, dtype=torch.float64)):
        reference = -torch.nn.functional.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none").sum(-1)
        with torch.no_grad():
            assert torch.allclose(bernoulli.log_prob(logits, x), reference, rtol=0, atol=1e-12)
    reference = torch.distributions.Independent(torch.distributions.Bernoulli(logits=logits), 1)
    assert torch.allclose(bernoulli.log_prob(logits, x_binary.double()),
                          reference.log_prob(x_binary.double()), rtol=0, atol=1e-12)


@pytest.mark.parametrize("scale", ["dim", "decoder"])
def test_vae_gaussian_fit_is_equivariant_to_column_scales(scale):
    """Issue 12 (6), the VAE side: the Gaussian sigma floor (min_scale) is in standardized
    units, so a column of scale 1e-4 next to one of 1e4 trains exactly as the standardized
    data do, its ELBO shifted by the Jacobian sum_d log unit_d only. An absolute floor (say
    sigma >= 1e-3 in data units) would cost the 1e-4 column ~2.3 nats from the first step."""
    from elbokit import VAE

    rng_ = np.random.default_rng(12)
    z = rng_.normal(size=(240, 2))
    u = z @ rng_.normal(size=(2, 6)) + 0.3 * rng_.normal(size=(240, 6))
    u = (u - u.mean(0)) / u.std(0)  # unit scale: what the model sees either way
    x = 3.0 + np.geomspace(1e-4, 1e4, 6) * u
    log_jacobian = np.log(np.geomspace(1e-4, 1e4, 6)).sum()

    def trained(data: np.ndarray) -> VAE:
        return VAE(latent_dim=2, hidden=(16,), likelihood="gaussian", gaussian_scale=scale,
                   epochs=3, batch_size=40, dtype="float64", patience=None).fit(data)

    raw, standard = trained(x), trained(u)
    # The two runs see the same standardized numbers up to float64 rounding (the offset 3.0
    # leaves the 1e-4 column ~4e-12 relative error), which 3 epochs of Adam amplify to
    # measured 3e-9 ("dim") and 5e-8 ("decoder") nats; a floor problem costs nats.
    assert raw.elbo(x)["elbo"] == pytest.approx(standard.elbo(u)["elbo"] - log_jacobian, abs=1e-6)


@pytest.fixture
def poisson():
    """A user's observation model, docs/examples/poisson.py (one class, one decorator),
    registered by running the file and unregistered afterwards so that no other test sees
    it among the choices."""
    example = Path(__file__).resolve().parents[1] / "docs" / "examples" / "poisson.py"
    yield runpy.run_path(str(example))["Poisson"]
    LIKELIHOODS.remove("poisson")


def test_a_registered_likelihood_trains_through_the_facade(poisson):
    """Counts from one shared Gaussian factor, x_d ~ Poisson(exp(0.5 z + log 3)), z ~ N(0, 1):
    the factor makes the counts overdispersed and correlated, which an independent Poisson per
    feature (rate = the training mean) cannot express. The true log p(x) (Monte Carlo over z)
    bounds what any model can score; a VAE with the registered Poisson likelihood must close
    at least half of the gap from the independent baseline to it (it closes about 90% in 10
    epochs; an observation model whose decoder output were ignored, or a VAE whose z
    carried nothing, would stay at the baseline)."""
    g = torch.Generator().manual_seed(0)
    w, log_rate = 0.5, np.log(3.0)

    def draw(n: int) -> torch.Tensor:  # [n, 8] counts
        z = torch.randn(n, 1, generator=g, dtype=torch.float64)
        return torch.poisson((w * z + log_rate).exp().expand(n, 8), generator=g)

    x, x_test = draw(400), draw(200)
    independent = D.Poisson(x.mean(0)).log_prob(x_test).sum(-1).mean().item()
    z = torch.randn(4000, 1, generator=g, dtype=torch.float64)
    log_p = D.Poisson((w * z + log_rate).exp().expand(-1, 8)).log_prob(x_test[:, None]).sum(-1)
    true = (log_p.logsumexp(-1) - np.log(len(z))).mean().item()

    vae = elbokit.VAE(likelihood="poisson", latent_dim=1, hidden=(16,), epochs=10, batch_size=50,
                      lr=0.01, val_fraction=0.0, patience=None, seed=0).fit(x.numpy())
    assert isinstance(vae.module_.observation, poisson)
    assert vae.module_.observation.config() == {"name": "poisson"}
    score = vae.score(x_test.numpy(), k=100)
    assert np.isfinite(score) and score <= true + 0.5  # a bound's estimate, up to MC noise
    assert score > independent + 0.5 * (true - independent), (score, independent, true)
    with pytest.raises(DataError, match="needs counts"):
        elbokit.VAE(likelihood="poisson").build(x.numpy() + 0.5)


