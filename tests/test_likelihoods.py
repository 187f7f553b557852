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




# -- the table likelihood: mixed columns, missing cells --------------------------------------

TABLE_KINDS = ["real", "positive", "poisson", "negbin", "binary", "categorical", "categorical"]
TABLE_LEVELS = [0, 0, 0, 0, 2, 3, 5]


def table_rows(n: int = 8, seed: int = 0) -> np.ndarray:
    """``[n, 7]`` rows of every column kind, a few cells missing (NaN)."""
    g = np.random.default_rng(seed)
    x = np.stack([g.normal(5, 2, n), g.lognormal(1, 0.5, n), g.poisson(3, n), g.poisson(7, n),
                  g.integers(0, 2, n), g.integers(0, 3, n), g.integers(0, 5, n)], 1).astype(float)
    x[1, 0] = x[2, 5] = x[3, 3] = x[4, 6] = np.nan
    return x


def fitted_table(x: np.ndarray):
    from elbokit.likelihoods import Table

    table = Table.for_data(x, "x", column_kinds=TABLE_KINDS, column_levels=TABLE_LEVELS).double()
    with torch.no_grad():  # parameters away from their initial 0, so every term is exercised
        table.log_scale.normal_(generator=torch.Generator().manual_seed(1))
        table.log_dispersion.normal_(generator=torch.Generator().manual_seed(2))
    return table


def test_table_cells_match_scipy_and_leave_missing_cells_out():
    """Each cell's log-density against scipy's, on the column's own scale; missing cells 0."""
    x = table_rows()
    table = fitted_table(x)
    params = torch.randn(3, len(x), table.n_params, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(3))
    cells = table.cell_log_prob(params, torch.as_tensor(x)).detach().numpy()
    p = params.numpy()
    shift, unit = table.shift.numpy(), table.unit.numpy()
    sd = unit * (np.exp(table.log_scale.detach().numpy()) + table.min_scale)
    r = np.exp(table.log_dispersion.detach().numpy())
    starts = np.cumsum([0] + [k if kind == "categorical" else 1
                              for kind, k in zip(TABLE_KINDS, TABLE_LEVELS, strict=True)])
    expected = np.zeros_like(cells)
    for j, kind in enumerate(TABLE_KINDS):
        out, v = p[..., starts[j]], x[:, j]
        with np.errstate(invalid="ignore"):
            if kind == "real":
                lp = stats.norm.logpdf(v, shift[j] + unit[j] * out, sd[j])
            elif kind == "positive":
                lp = stats.lognorm.logpdf(v, sd[j], scale=np.exp(shift[j] + unit[j] * out))
            elif kind == "poisson":
                lp = stats.poisson.logpmf(v, np.exp(out + shift[j]))
            elif kind == "negbin":
                mean = np.exp(out + shift[j])
                lp = stats.nbinom.logpmf(v, r[j], r[j] / (r[j] + mean))
            elif kind == "binary":
                lp = stats.bernoulli.logpmf(v, 1 / (1 + np.exp(-out)))
            else:
                logits = p[..., starts[j]:starts[j] + TABLE_LEVELS[j]]
                log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
                codes = np.nan_to_num(v).astype(int)
                index = np.broadcast_to(codes[:, None], (*log_probs.shape[:-1], 1))
                lp = np.take_along_axis(log_probs, index, -1)[..., 0]
        expected[..., j] = np.where(np.isnan(v), 0.0, lp)
    np.testing.assert_allclose(cells, expected, rtol=1e-9, atol=1e-12)
    assert np.all(cells[:, np.isnan(x)] == 0)
    total = table(params).log_prob(torch.as_tensor(x)).detach().numpy()
    np.testing.assert_allclose(total, expected.sum(-1), rtol=1e-9)


def test_table_gradients_are_finite_with_missing_cells():
    """A missing cell is replaced before it is masked: no NaN reaches a gradient."""
    x = torch.as_tensor(table_rows())
    table = fitted_table(x.numpy())
    params = torch.randn(len(x), table.n_params, dtype=torch.float64, requires_grad=True)
    table.log_prob(params, x).sum().backward()
    assert torch.isfinite(params.grad).all()
    assert torch.isfinite(table.log_scale.grad).all() and torch.isfinite(table.log_dispersion.grad).all()
    # A missing cell's own outputs get no gradient at all (it is not in the density).
    assert params.grad[1, 0] == 0 and params.grad[3, 3] == 0


def test_table_encoder_input_codes_values_and_mask():
    x = table_rows()
    table = fitted_table(x)
    u = table.network_input(torch.as_tensor(x))
    n_numeric, n_one_hot = 5, 3 + 5
    assert u.shape == (len(x), n_numeric + n_one_hot + 7) == (len(x), table.input_dim)
    mask = u[:, -7:].numpy()
    np.testing.assert_array_equal(mask, ~np.isnan(x))
    one_hot = u[:, n_numeric:n_numeric + n_one_hot].numpy()
    for i in range(len(x)):
        for j, (start, k) in ((5, (0, 3)), (6, (3, 5))):
            block = one_hot[i, start:start + k]
            if np.isnan(x[i, j]):
                assert block.sum() == 0
            else:
                assert block[int(x[i, j])] == 1 and block.sum() == 1
    # Numeric columns standardized on their own scale (positive: log x), 0 where missing.
    assert u[1, 0] == 0
    np.testing.assert_allclose(u[0, 0].item(), (x[0, 0] - np.nanmean(x[:, 0])) / np.nanstd(x[:, 0]))
    logs = np.log(x[:, 1])
    np.testing.assert_allclose(u[0, 1].item(), (logs[0] - logs.mean()) / logs.std())
    # And back: the data of an encoder input (the VampPrior's pseudo-inputs).
    np.testing.assert_allclose(table.from_network_input(u).numpy(), x, rtol=1e-9)


def test_table_draws_have_each_columns_support_and_mean():
    x = table_rows(200)
    table = fitted_table(x)
    params = torch.zeros(table.n_params, dtype=torch.float64)
    torch.manual_seed(0)
    draws = table(params).sample((20000,)).numpy()
    assert draws.shape == (20000, 7)
    assert np.all(draws[:, 1] > 0) and np.all(draws[:, 2:4] == np.round(draws[:, 2:4]))
    assert set(np.unique(draws[:, 4])) <= {0, 1} and set(np.unique(draws[:, 5])) <= {0, 1, 2}
    assert set(np.unique(draws[:, 6])) <= set(range(5))
    mean = table.mean(params).detach().numpy()
    se = draws.std(0) / np.sqrt(len(draws))
    for j in range(5):  # numeric columns: the sample mean within 4 standard errors of mean()
        assert abs(draws[:, j].mean() - mean[j]) < 4 * se[j], (j, draws[:, j].mean(), mean[j])


def test_table_refuses_values_outside_a_columns_support():
    x = table_rows()
    from elbokit.likelihoods import Table

    for j, bad in ((1, -1.0), (2, 1.5), (4, 2.0), (6, 5.0)):
        y = x.copy()
        y[0, j] = bad
        with pytest.raises(DataError, match=f"column {j + 1}"):
            Table.for_data(y, "t.csv", column_kinds=TABLE_KINDS, column_levels=TABLE_LEVELS)
    y = x.copy()
    y[2] = np.nan
    with pytest.raises(DataError, match="row 2.*every cell missing"):
        Table.for_data(y, "t.csv", column_kinds=TABLE_KINDS, column_levels=TABLE_LEVELS)
    with pytest.raises(ConfigError, match="at least 2 levels"):
        Table(2, ["real", "categorical"], [0, 1])
    restored = build_likelihood(fitted_table(x).config(), 7)
    assert restored.kinds == tuple(TABLE_KINDS) and restored.levels == (0, 0, 0, 0, 2, 3, 5)
