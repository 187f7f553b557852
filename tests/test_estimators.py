"""Discrete latents and gradient estimators against exact enumeration.

Seed policy: every test seeds torch itself. Statistical assertions compare a Monte-Carlo
mean with an exact value within 4 standard errors (SE = sample sd / sqrt(number of draws)),
per parameter; with ~100 parameters the chance of a false alarm at 4 SE is about 0.6%.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from elbokit import VAE, bounds, data, estimators
from elbokit.errors import ConfigError
from elbokit.models.latents import LatentSpec
from elbokit.models.vae import VAEConfig, VAEModule
from elbokit.training import TrainConfig, Trainer


def tiny_model(latent: str, dim: int = 4, seed: int = 0) -> VAEModule:
    spec = LatentSpec.parse(latent)
    torch.manual_seed(seed)
    return VAEModule(VAEConfig(dim=dim, latent_dim=spec.n, latent=spec.kind,
                               categories=spec.categories, hidden=(8,),
                               likelihood={"name": "bernoulli"})).double()


def tiny_data(n: int = 3, dim: int = 4, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, dim), 0.4, dtype=torch.float64), generator=g)


# -- enumeration -----------------------------------------------------------------------------

def brute_force(model: VAEModule, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """ELBO terms and log p(x) by a plain Python loop over every value of z."""
    spec = model.config.latent_spec
    if spec.kind == "bernoulli":
        values = [torch.tensor(v, dtype=torch.float64) for v in itertools.product((0.0, 1.0),
                                                                                   repeat=spec.n)]
    else:
        values = [torch.nn.functional.one_hot(torch.tensor(c), spec.categories).double()
                  for c in itertools.product(range(spec.categories), repeat=spec.n)]
    q, p = model.posterior(x), model.prior()
    reconstruction = kl = 0
    joint = []
    for z in values:
        zb = z.expand(len(x), *z.shape)
        log_q, log_p = q.log_prob(zb), p.log_prob(z)
        log_lik = model.likelihood(zb).log_prob(x)
        reconstruction = reconstruction + log_q.exp() * log_lik
        kl = kl + log_q.exp() * (log_q - log_p)
        joint.append(log_p + log_lik)
    return reconstruction, kl, torch.logsumexp(torch.stack(joint), 0)


@pytest.mark.parametrize("latent", ["bernoulli:3", "categorical:4", "categorical:2x3"])
def test_enumeration_equals_a_brute_force_sum(latent):
    model, x = tiny_model(latent), tiny_data()
    with torch.no_grad():
        terms = bounds.enumerated_elbo(model, x)
        exact = bounds.exact_log_likelihood(model, x)
        generic = bounds.likelihood_table(type("NoTable", (), {  # the broadcast fall-back
            "likelihood": model.likelihood})(), model.support(100), x)
        reconstruction, kl, log_px = brute_force(model, x)
    assert torch.allclose(terms.reconstruction, reconstruction, atol=1e-6, rtol=0)
    assert torch.allclose(terms.kl, kl, atol=1e-6, rtol=0)
    assert torch.allclose(exact, log_px, atol=1e-6, rtol=0)
    assert torch.allclose(generic, model.likelihood_table(model.support(100), x), atol=1e-10)


@pytest.mark.parametrize("latent", ["bernoulli:4", "categorical:2x3"])
def test_exact_log_likelihood_bounds_iwae_which_bounds_the_elbo(latent):
    torch.manual_seed(5)
    for seed in range(3):  # random models and data
        model, x = tiny_model(latent, dim=6, seed=seed), tiny_data(5, 6, seed=seed + 10)
        with torch.no_grad():
            exact = bounds.exact_log_likelihood(model, x)
            elbo = bounds.enumerated_elbo(model, x).elbo
            gaps = []
            for k in (1, 10, 100, 1000):
                draws = torch.stack([bounds.iwae_bound(model, x, k) for _ in range(200)])
                mean, se = draws.mean(0), draws.std(0) / math.sqrt(200)
                assert torch.all(mean <= exact + 4 * se + 1e-9), "IWAE_k <= log p(x)"
                assert torch.all(mean >= elbo - 4 * se - 1e-9), "IWAE_k >= ELBO"
                gaps.append(float((exact - mean).mean()))
        assert gaps[-1] < 0.05 * gaps[0] + 1e-3, gaps  # IWAE_1000 closes the ELBO gap
        assert all(a >= b - 1e-3 for a, b in zip(gaps, gaps[1:], strict=False)), gaps


def test_auto_enumerates_up_to_the_training_limit():
    """auto and training share bounds' policy: bernoulli:10 (2^10 values) is summed over,
    bernoulli:11 is not (but its exact log p(x) is still within the scoring limit)."""
    assert estimators.resolve("auto", tiny_model("bernoulli:10")) == "enumerate"
    larger = tiny_model("bernoulli:11")
    assert estimators.resolve("auto", larger) == "gumbel-st"
    assert bounds.enumerable(larger, "score") and not bounds.enumerable(larger, "train")
    with pytest.raises(ConfigError, match=r"2048 values \(bernoulli:11\).*up to 1,024"):
        estimators.build("enumerate", larger, 4)


def test_enumeration_refuses_large_supports_with_advice():
    model = tiny_model("categorical:20x10")
    with pytest.raises(ConfigError, match=r"1e\+20 values \(categorical:20x10\).*gumbel"):
        estimators.build("enumerate", model, 4)
    assert estimators.resolve("auto", model) == "gumbel-st"
    assert estimators.resolve("auto", tiny_model("bernoulli:3")) == "enumerate"
    with pytest.raises(ConfigError, match="cannot be reparameterized"):
        estimators.build("reparameterize", model, 4)


# -- unbiasedness and variance ---------------------------------------------------------------

def flat_grad(model: torch.nn.Module, value: torch.Tensor) -> torch.Tensor:
    model.zero_grad(set_to_none=False)
    value.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def draws_of(estimator, model, x, n: int) -> torch.Tensor:
    return torch.stack([flat_grad(model, estimator(model, x).surrogate.sum()) for _ in range(n)])


def exact_elbo_gradient(model, x) -> torch.Tensor:
    return flat_grad(model, bounds.enumerated_elbo(model, x).surrogate.sum())


def exact_iwae2_gradient(model, x) -> torch.Tensor:
    """Gradient of E[IWAE_2] = sum_{i,j} q_i q_j log((w_i + w_j) / 2), enumerated over pairs."""
    e = bounds.enumerate_latents(model, x)
    log_w = e.table + e.log_prior - e.log_posterior  # [B, S]
    pair = torch.logaddexp(log_w[:, :, None], log_w[:, None, :]) - math.log(2)
    weight = (e.log_posterior[:, :, None] + e.log_posterior[:, None, :]).exp()
    return flat_grad(model, (weight * pair).sum())


def within_4_se(draws: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    se = draws.std(0) / math.sqrt(len(draws))
    return (draws.mean(0) - exact).abs() <= 4 * se + 1e-12


@pytest.mark.parametrize("baseline", ["none", "mean", "both"])
def test_reinforce_is_unbiased(baseline):
    model, x = tiny_model("bernoulli:3"), tiny_data()
    exact = exact_elbo_gradient(model, x)
    torch.manual_seed(11)
    estimator = estimators.Reinforce(4, baseline=baseline).double()
    draws = draws_of(estimator, model, x, 3000)
    assert within_4_se(draws, exact).all()


def test_vimco_is_unbiased_for_the_iwae_bound():
    model, x = tiny_model("bernoulli:3"), tiny_data()
    exact = exact_iwae2_gradient(model, x)
    torch.manual_seed(12)
    draws = draws_of(estimators.VIMCO(k=2), model, x, 3000)
    assert within_4_se(draws, exact).all()


def test_gumbel_bias_shrinks_as_the_temperature_falls():
    model, x = tiny_model("categorical:3", dim=4), tiny_data()
    exact = exact_elbo_gradient(model, x)
    torch.manual_seed(13)
    squared_bias = []
    for tau in (3.0, 1.0, 0.3):
        estimator = estimators.Gumbel(temperature=tau, min_temperature=tau, anneal_rate=0)
        draws = draws_of(estimator, model, x, 2000)
        # ||mean - exact||^2 minus its variance (sum var / n): an unbiased estimate of ||bias||^2
        excess = ((draws.mean(0) - exact) ** 2 - draws.var(0) / len(draws)).sum()
        squared_bias.append(float(excess))
    print(f"\ngumbel squared bias of the gradient at tau 3, 1, 0.3: {squared_bias}")
    assert squared_bias[0] > squared_bias[1] > squared_bias[2]


def test_baselines_reduce_the_variance_of_reinforce():
    model, x = tiny_model("bernoulli:3"), tiny_data()
    torch.manual_seed(14)
    variances = {}
    for baseline in ("none", "mean", "learned", "both"):
        estimator = estimators.Reinforce(4, baseline=baseline).double()
        if estimator.net is not None:  # fit the learned baseline first (model held fixed)
            optimizer = torch.optim.Adam(estimator.net.parameters(), lr=1e-2)
            for _ in range(300):
                optimizer.zero_grad()
                (-estimator(model, x).surrogate.sum()).backward()
                optimizer.step()
        draws_of(estimator, model, x, 50)  # warm up the moving average
        variances[baseline] = float(draws_of(estimator, model, x, 1000).var(0).sum())
    print("\nREINFORCE gradient variance (sum over parameters) by baseline: "
          + ", ".join(f"{k}: {v:.4g}" for k, v in variances.items()))
    assert variances["mean"] < variances["none"]
    assert variances["both"] < variances["none"]


# -- training --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits_split():
    d = data.load("digits")
    parts = data.split_indices(len(d.x), 0, 0.2, 0.1)
    return d.x[parts["train"]], d.x[parts["val"]], d.x[parts["test"]]


@pytest.mark.parametrize("estimator, n_samples", [("gumbel", 1), ("gumbel-st", 1),
                                                  ("reinforce", 1), ("vimco", 5)])
def test_discrete_vae_trains_on_digits_with_each_estimator(digits_split, estimator, n_samples):
    train, val, test = digits_split
    vae = VAE(latent="categorical:20x10", estimator=estimator, n_samples=n_samples,
              hidden=(128,), epochs=25, lr=3e-3, seed=0)
    vae.module_ = vae.build(train).eval()
    before = vae.elbo(test, n_samples=20)["elbo"]
    vae.fit(train, X_val=val)
    after = vae.elbo(test, n_samples=20)["elbo"]
    # Untrained: about -45 nats; trained: -21 to -24 (measured). The ELBO's MC error here
    # (359 examples x 20 samples) is below 0.1 nats, so a 15-nat margin is far beyond noise.
    assert after - before > 15, (before, after)


def test_enumerated_training_reaches_the_exact_likelihood_scale(digits_split):
    train, val, test = digits_split
    vae = VAE(latent="categorical:10", hidden=(128,), epochs=25, lr=3e-3, seed=0).fit(train, X_val=val)
    scores = vae.evaluate(test, k=200, iwae_k=10)
    exact = scores["exact_log_likelihood"]
    assert exact is not None
    assert exact >= scores["iwae"]["value"] - 1e-6 >= scores["elbo"] - 2e-6
    assert abs(scores["log_likelihood"]["estimate"] - exact) < 0.05
    gaussian = VAE(latent_dim=2, hidden=(16,), epochs=1).fit(train[:100])
    assert gaussian.evaluate(test[:10], k=10, iwae_k=2)["exact_log_likelihood"] is None


def test_estimator_state_survives_a_checkpoint(tmp_path, digits_split):
    train, val, _ = digits_split
    options = dict(latent="bernoulli:12", estimator="reinforce", hidden=(16,), patience=None, seed=0)
    VAE(epochs=2, **options).fit(train, X_val=val, run_dir=tmp_path / "a")
    VAE(epochs=1, **options).fit(train, X_val=val, run_dir=tmp_path / "b")
    VAE(epochs=2, **options).fit(train, X_val=val, run_dir=tmp_path / "b", resume=True)
    a = (tmp_path / "a" / "checkpoint" / "model.safetensors").read_bytes()
    b = (tmp_path / "b" / "checkpoint" / "model.safetensors").read_bytes()
    assert a == b  # the moving average and learned baseline were restored exactly
    assert np.isfinite(VAE.load(tmp_path / "a").transform(train[:3])).all()


# -- the registry ------------------------------------------------------------------------------

@pytest.fixture
def toy_elbo():
    """A plain reparameterized ELBO registered from outside the library, as a user's own
    estimator would be, as "test-toy-elbo": for one test (removed afterwards, so no other
    test sees it)."""

    @estimators.ESTIMATORS.register("test-toy-elbo", help="a plain reparameterized ELBO (tests)")
    class ToyELBO(estimators.Reparameterize):
        """The reparameterized ELBO under another name."""

    yield ToyELBO
    estimators.ESTIMATORS.remove("test-toy-elbo")


def test_every_estimator_is_registered_once_and_names_start_with_auto():
    names = estimators.NAMES
    assert names[0] == "auto" and names[1:] == estimators.ESTIMATORS.names()
    assert names[:8] == ("auto", "reparameterize", "enumerate", "gumbel", "gumbel-st",
                         "reinforce", "vimco", "dreg")
    classes = [cls for _, cls in estimators.ESTIMATORS.items()]
    assert len(set(classes)) == len(classes)
    assert all(estimators.ESTIMATORS.help(name) for name in names[1:])
    st = estimators.build("gumbel-st", tiny_model("categorical:4"), 4)
    assert st.straight_through and st.name == "gumbel-st"
    assert not estimators.build("gumbel", tiny_model("categorical:4"), 4).straight_through
    with pytest.raises(ConfigError, match="unknown estimator 'magic'; choose from auto, "):
        estimators.build("magic", tiny_model("gaussian:2"), 4)


@pytest.mark.parametrize("name, options, message", [
    ("enumerate", {"free_bits": 0.5}, "--free-bits applies to the reparameterized ELBO, not to "
                                      "enumerate$"),
    ("reparameterize", {"free_bits": 0.5, "iwae_k": 3}, "not to reparameterize with --iwae-k$"),
    ("gumbel-st", {"iwae_k": 3}, "use reparameterize, dreg or vimco, not gumbel-st$"),
    ("reinforce", {"iwae_k": 3}, "not reinforce$"),
    ("vimco", {"beta": 2.0}, "vimco trains the IWAE bound, which has no beta"),
])
def test_each_estimator_refuses_the_options_that_do_not_apply(name, options, message):
    model = tiny_model("gaussian:2" if name == "reparameterize" else "bernoulli:2")
    with pytest.raises(ConfigError, match=message):
        estimators.build(name, model, 4, **options)


def test_a_user_registered_estimator_is_built_by_name_and_trains(toy_elbo):
    model = tiny_model("gaussian:2")
    x = tiny_data(8)
    toy = estimators.build("test-toy-elbo", model, 4, n_samples=2, beta=0.5)
    assert isinstance(toy, toy_elbo) and toy.name == "test-toy-elbo" and "test-toy-elbo" in estimators.NAMES
    torch.manual_seed(3)
    got = toy(model, x)
    torch.manual_seed(3)
    expected = bounds.elbo(model, x, n_samples=2, beta=0.5)
    assert torch.equal(got.surrogate, expected.surrogate) and torch.equal(got.elbo, expected.elbo)
    with pytest.raises(ConfigError, match="is for discrete latents; a Gaussian z uses "
                                          "reparameterize, dreg or test-toy-elbo"):
        estimators.build("reinforce", model, 4)
    config = TrainConfig(estimator="test-toy-elbo", epochs=3, batch_size=8, lr=1e-2, patience=None)
    trainer = Trainer(model, config)
    assert isinstance(trainer.objective, toy_elbo)
    history = trainer.fit(x)
    assert len(history) == 3 and all(math.isfinite(r["train"]["elbo"]) for r in history)
