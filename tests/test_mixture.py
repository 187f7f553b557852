"""Mixture models: exact log p(x) and posterior against brute force, EM against
scikit-learn, monotone EM, recovery of planted components, gradient fitting.

Seed policy: every test draws from its own fixed-seed numpy Generator or torch seed, so the
suite is deterministic. Float64 modules (``.double()``) wherever a tolerance is near
machine precision.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

from elbokit import bounds
from elbokit.errors import ConfigError, DataError
from elbokit.likelihoods import likelihood_for_data
from elbokit.models.base import LatentVariableModel
from elbokit.models.mixture import (
    MixtureConfig,
    MixtureModule,
    fit_em,
    gaussian_parameters,
    init_from_data,
    set_gaussian_parameters,
)
from elbokit.training import TrainConfig, Trainer

# EM may lose this much (relative) between iterations to float64 rounding and to the
# O(reg) bias of the Gaussian variance floor; a real bug in an M-step costs far more.
MONOTONE_RTOL = 1e-9


# -- data with planted structure ----------------------------------------------------------


def bernoulli_data(rng: np.random.Generator, n: int, k: int, d: int,
                   separated: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Binary data and its component labels; ``separated``: every pixel probability is 0.1
    or 0.9, so two components differ in about d/2 pixels by 0.8 each."""
    protos = (np.where(rng.uniform(size=(k, d)) < 0.5, 0.1, 0.9) if separated
              else rng.uniform(0.05, 0.95, size=(k, d)))
    labels = rng.integers(0, k, n)
    return (rng.uniform(size=(n, d)) < protos[labels]).astype(float), labels


def gaussian_data(rng: np.random.Generator, n: int, k: int, d: int,
                  units: tuple[float, float] = (0.1, 10.0)) -> np.ndarray:
    """``units``: the smallest and largest column scale (geometrically spaced)."""
    centers = rng.normal(scale=2.0, size=(k, d))
    scales = rng.uniform(0.3, 2.0, size=(k, d))
    labels = rng.integers(0, k, n)
    # An offset and unequal units per dimension exercise the standardization.
    return 5.0 + np.geomspace(*units, d) * (centers[labels] + scales[labels] * rng.normal(size=(n, d)))


def standardized(module: MixtureModule, x: np.ndarray) -> tuple[np.ndarray, float]:
    """(x in the Gaussian model's standardized units, log|Jacobian| = sum_d log unit_d): a
    density fitted to the standardized data scores x with the Jacobian subtracted."""
    obs = module.observation
    shift, unit = obs.shift.numpy(), obs.unit.numpy()
    return (x - shift) / unit, float(np.log(unit).sum())


def multinomial_data(rng: np.random.Generator, n: int, k: int, d: int) -> np.ndarray:
    topics = rng.dirichlet(np.full(d, 2.0), size=k)  # overlapping topics: EM takes a while
    labels = rng.integers(0, k, n)
    lengths = rng.integers(5, 20, n)
    return np.stack([rng.multinomial(m, topics[j]) for m, j in zip(lengths, labels, strict=True)]
                    ).astype(float)


def categorical_data(rng: np.random.Generator, n: int, k: int, d: int, c: int) -> np.ndarray:
    probs = rng.dirichlet(np.ones(c), size=(k, d))  # [k, d, c]
    labels = rng.integers(0, k, n)
    cdf = probs[labels].cumsum(-1)  # [n, d, c]
    return (rng.uniform(size=(n, d, 1)) > cdf).sum(-1).clip(max=c - 1).astype(float)


def make(name: str, x: np.ndarray, k: int, **likelihood_options) -> MixtureModule:
    obs = likelihood_for_data(name, x, "x", **likelihood_options)
    return MixtureModule(MixtureConfig(x.shape[1], k, obs.config()), obs).double()


def random_module(name: str, seed: int = 0, k: int = 4) -> tuple[MixtureModule, torch.Tensor]:
    """A float64 mixture with random parameters and 12 examples of its data type."""
    rng = np.random.default_rng(seed)
    x = {
        "bernoulli": lambda: bernoulli_data(rng, 40, 3, 6)[0],
        "gaussian": lambda: gaussian_data(rng, 40, 3, 5),
        "multinomial": lambda: multinomial_data(rng, 40, 3, 7),
        "categorical": lambda: categorical_data(rng, 40, 3, 5, 3),
    }[name]()
    module = make(name, x, k, **({"gaussian_scale": "decoder"} if name == "gaussian" else {}))
    torch.manual_seed(seed)
    with torch.no_grad():
        module.mixing_logits.copy_(torch.randn(k, dtype=torch.float64))
        module.component_params.copy_(torch.randn_like(module.component_params))
    return module, torch.as_tensor(x[:12])


# -- configuration ------------------------------------------------------------------------


def test_config_validates_and_round_trips():
    config = MixtureConfig(5, 3, {"name": "gaussian", "scale": "decoder", "min_scale": 1e-3})
    assert MixtureConfig(**config.to_dict()) == config
    for bad in (dict(dim=0), dict(n_components=0), dict(likelihood={"name": "poisson"}),
                dict(likelihood={"name": "gaussian", "scale": "full"}),
                dict(likelihood={"name": "bernoulli", "scale": "dim"}), dict(likelihood="bernoulli")):
        with pytest.raises(ConfigError):
            MixtureConfig(**({"dim": 5, "n_components": 3} | bad))
    with pytest.raises(ConfigError, match="dimensions"):
        MixtureModule(MixtureConfig(5, 3), likelihood_for_data("bernoulli", np.zeros((2, 4)), "x"))
    module = MixtureModule(MixtureConfig(4, 3, {"name": "multinomial"}))
    assert isinstance(module, LatentVariableModel)
    assert module.prior().event_shape == (3,)
    assert module.component_params.shape == (3, 4)


def test_fitting_refuses_bad_data_and_options():
    module = make("bernoulli", np.eye(4), 2)
    with pytest.raises(DataError, match="0/1"):
        fit_em(module, np.full((3, 4), 0.5))
    with pytest.raises(DataError, match="shape"):
        fit_em(module, np.zeros((3, 5)))
    with pytest.raises(DataError, match="at least 2"):
        init_from_data(module, np.zeros((1, 4)))
    with pytest.raises(ConfigError, match="init method"):
        init_from_data(module, np.eye(4), method="spectral")
    with pytest.raises(ConfigError, match="alpha"):
        fit_em(module, np.eye(4), alpha=0.0)
    with pytest.raises(ConfigError, match="Gaussian mixture"):
        gaussian_parameters(module)


# -- exact quantities against brute force --------------------------------------------------


@pytest.mark.parametrize("name", ["bernoulli", "gaussian", "multinomial", "categorical"])
def test_log_marginal_and_posterior_match_brute_force(name):
    module, x = random_module(name)
    k = module.n_components
    with torch.no_grad():
        one_hot = torch.eye(k, dtype=torch.float64)
        # log pi_k + log p(x | k) through the protocol's distributions, one component at a time.
        joint = torch.stack([module.prior().log_prob(one_hot[j]) + module.likelihood(one_hot[j]).log_prob(x)
                             for j in range(k)], dim=-1)  # [B, K]
        brute = torch.logsumexp(joint, -1)
        assert torch.allclose(module.log_marginal(x), brute, rtol=0, atol=1e-10)
        bayes = joint.exp() / joint.exp().sum(-1, keepdim=True)
        q = module.posterior(x)
        assert q.batch_shape == (12,) and q.event_shape == (k,)
        assert torch.allclose(q.probs, bayes, rtol=0, atol=1e-12)
        assert torch.allclose(module.responsibilities(x), bayes, rtol=0, atol=1e-12)
        # The enumeration fast path and the generic bounds agree with it.
        assert torch.allclose(bounds.exact_log_likelihood(module, x), brute, rtol=0, atol=1e-10)
        assert torch.allclose(bounds.enumerated_elbo(module, x).elbo, brute, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["bernoulli", "gaussian"])
def test_enumeration_by_bayes_rule_equals_the_generic_enumeration(name):
    """A mixture declares ``exact_posterior``: the enumerated ELBO then takes log q from its
    prior and likelihood tables instead of a second pass through ``posterior(x)``. Both ways
    give the same terms and the same gradients (beta = 0.5, so reconstruction and KL are
    weighted differently and each term's gradient counts)."""
    module, x = random_module(name, seed=3)
    results = {}
    for exact in (True, False):
        module.exact_posterior = exact  # the instance's attribute hides the class's
        module.zero_grad(set_to_none=True)
        terms = bounds.enumerated_elbo(module, x, beta=0.5)
        terms.surrogate.sum().backward()
        results[exact] = (terms, [p.grad.clone() for p in module.parameters()])
    del module.exact_posterior
    (fast, fast_grads), (generic, generic_grads) = results[True], results[False]
    for field in ("elbo", "reconstruction", "kl", "surrogate"):
        assert torch.allclose(getattr(fast, field), getattr(generic, field), rtol=0, atol=1e-10)
    assert torch.allclose(fast.elbo, module.log_marginal(x), rtol=0, atol=1e-10)
    for a, b in zip(fast_grads, generic_grads, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["bernoulli", "gaussian"])
def test_elbo_with_the_exact_posterior_is_log_px(name):
    module, x = random_module(name, seed=1)
    with torch.no_grad():
        exact = module.log_marginal(x)
        torch.manual_seed(2)
        # q = p(z|x): log p(x|z) + log p(z) - log q(z|x) = log p(x) for every sample z, so a
        # Monte-Carlo KL over the same samples makes the ELBO exact.
        mc = bounds.elbo(module, x, n_samples=5, kl="mc")
        assert torch.allclose(mc.elbo, exact, rtol=0, atol=1e-10)
        # Analytic KL: only the reconstruction term is Monte Carlo, with SE = sd_q(log p(x|z))
        # / sqrt(S); the sd is exact here, by enumeration (a sample sd is 0 whenever the
        # posterior's rare components were not drawn). Within 4 SE of log p(x).
        s = 4000
        q = module.posterior(x).probs  # [B, K]
        table = module.likelihood_table(module.support(16), x)  # [B, K]
        mean = (q * table).sum(-1, keepdim=True)
        se = ((q * (table - mean).square()).sum(-1) / s).sqrt()
        analytic = bounds.elbo(module, x, n_samples=s, kl="analytic")
        assert torch.all((analytic.elbo - exact).abs() <= 4 * se + 1e-10)


# -- EM ---------------------------------------------------------------------------------------


def assert_monotone(history: list[float]) -> None:
    h = np.asarray(history)
    drops = h[:-1] - h[1:]
    assert np.all(drops <= MONOTONE_RTOL * np.abs(h[:-1])), f"largest drop {drops.max():.3g} nats"


@pytest.mark.parametrize("name,options", [
    ("bernoulli", {}),
    ("gaussian", {"gaussian_scale": "decoder"}),
    ("gaussian", {"gaussian_scale": "dim"}),
    ("gaussian", {"gaussian_scale": "shared"}),
])
def test_em_never_decreases_the_log_likelihood(name, options):
    rng = np.random.default_rng(3)
    x = bernoulli_data(rng, 500, 4, 30)[0] if name == "bernoulli" else gaussian_data(rng, 500, 4, 5)
    module = make(name, x, 4, **options)
    init_from_data(module, x, seed=0, method="random")
    history = fit_em(module, x, max_iter=300, tol=1e-12)
    assert len(history) > 20, "too easy a problem to say anything about monotonicity"
    assert_monotone(history)
    assert history[-1] == pytest.approx(module.log_marginal(torch.as_tensor(x)).mean().item(), abs=1e-12)


@pytest.mark.parametrize("name", ["multinomial", "categorical"])
def test_em_for_counts_is_monotone(name):
    """With the pseudo-count alpha, EM is MAP-EM: log p(x) + log Dirichlet(theta; 1 + alpha)
    (= log-likelihood + alpha sum log theta + const) never decreases, while the
    log-likelihood alone may dip by O(alpha) near the MAP point. A tiny alpha leaves
    maximum-likelihood EM, which must be monotone in the log-likelihood itself."""
    rng = np.random.default_rng(4)
    x = multinomial_data(rng, 400, 4, 30) if name == "multinomial" else categorical_data(rng, 400, 4, 8, 3)
    n = x.shape[0]
    for alpha in (1e-2, 1e-9):
        module = make(name, x, 4)
        init_from_data(module, x, seed=0, method="random", alpha=alpha)
        penalized = []
        for _ in range(150):  # one M-step at a time, to read theta after each
            log_theta = module.component_params.detach()
            if name == "categorical":
                log_theta = log_theta.unflatten(-1, (8, 3))
            log_theta = log_theta.log_softmax(-1)
            ll = module.log_marginal(torch.as_tensor(x)).mean().item()
            penalized.append((ll, ll + alpha * log_theta.sum().item() / n))
            fit_em(module, x, max_iter=1, alpha=alpha)
        log_likelihood, objective = map(list, zip(*penalized, strict=True))
        assert log_likelihood[-1] - log_likelihood[0] > 0.25, "EM should have improved the fit"
        assert_monotone(objective)
        if alpha < 1e-6:
            assert_monotone(log_likelihood)


@pytest.mark.parametrize("units", [(0.1, 10.0), (1e-4, 1e4)])
def test_diagonal_gaussian_em_matches_scikit_learn(units):
    """EM step by step is scikit-learn's on standardized data: reg is a fraction of each
    column's variance (reg_covar=1e-6 on standardized data), so columns 1e-4 .. 1e4 fit as
    well as columns 0.1 .. 10 (with reg in data units the 1e-4 column lost ~2 nats)."""
    rng = np.random.default_rng(5)
    k, d = 3, 4
    x = gaussian_data(rng, 900, k, d, units)
    train, test = x[:600], x[600:]
    module = make("gaussian", train, k, gaussian_scale="decoder")
    (u_train, log_jacobian), (u_test, _) = standardized(module, train), standardized(module, test)
    unit, shift = module.observation.unit.numpy(), module.observation.shift.numpy()
    # One starting point for both: equal weights, k training points as means, the data's
    # variance for every component.
    weights = np.full(k, 1 / k)
    start = rng.choice(len(train), k, replace=False)
    means, variances = train[start], np.tile(train.var(0), (k, 1))
    sklearn_start = dict(weights_init=weights, means_init=u_train[start],
                         precisions_init=unit**2 / variances, covariance_type="diag",
                         reg_covar=1e-6, init_params="random", random_state=0)

    # Converged: the same held-out log-likelihood.
    set_gaussian_parameters(module, weights, means, variances)
    history = fit_em(module, train, max_iter=1000, tol=1e-10, reg=1e-6)
    reference = GaussianMixture(k, tol=1e-10, max_iter=1000, **sklearn_start).fit(u_train)
    assert reference.converged_ and len(history) < 1001
    ours = module.log_marginal(torch.as_tensor(test)).mean().item()
    # nats per example; measured 1.2e-7 (both units): scikit-learn stops one M-step later.
    assert abs(ours - (reference.score(u_test) - log_jacobian)) < 1e-3
    assert_monotone(history)

    # The same number of iterations: the same parameters (the same algorithm, step by step).
    set_gaussian_parameters(module, weights, means, variances)
    fit_em(module, train, max_iter=10, tol=-math.inf, reg=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = GaussianMixture(k, tol=0, max_iter=10, **sklearn_start).fit(u_train)
    fitted = [t.numpy() for t in gaussian_parameters(module)]
    expected = (reference.weights_, shift + unit * reference.means_, unit**2 * reference.covariances_)
    for ours_, theirs in zip(fitted, expected, strict=True):
        np.testing.assert_allclose(ours_, theirs, rtol=1e-8)


def column_gaussian_log_pdf(x: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """log N(x; loc, scale^2) summed over columns: ``[n, D] -> [n]``."""
    return (-0.5 * ((x - loc) / scale) ** 2 - np.log(scale) - 0.5 * math.log(2 * math.pi)).sum(-1)


def test_gaussian_mixture_fits_columns_of_any_scale():
    """Issue 12 (6): a column of standard deviation 1e-4 cost ~1.8 nats per example, because
    EM's variance floor reg was absolute (1e-6 in data units, 100 times that column's
    variance). Now the fit is equivariant: rescaling columns only adds the Jacobian."""
    from elbokit import Mixture

    rng = np.random.default_rng(12)
    scales = np.geomspace(1e-4, 1e4, 6)
    x = 3.0 + scales * rng.normal(size=(300, 6))

    # K = 1: the per-column Gaussian MLE, in closed form. reg moves each column's variance by
    # the fraction 1e-6, and the MLE is a stationary point, so log p(x) moves by
    # O(D reg^2) ~ 1e-11 nats: the tolerance is float64 rounding of terms of size ~10.
    closed_form = np.mean(column_gaussian_log_pdf(x, x.mean(0), x.std(0)))
    one = Mixture(n_components=1, dtype="float64").fit(x)
    assert one.score(x) == pytest.approx(closed_form, abs=1e-9)  # was 2.3 nats lower
    # float32 (the default): rounding of 6 columns' log-densities of size ~10 (measured 2e-5).
    assert Mixture(n_components=1).fit(x).score(x) == pytest.approx(closed_form, abs=1e-4)

    # K = 3, well-separated planted components, each fitted from 5 k-means starts. The
    # scale-free reference is scikit-learn on standardized data (its reg_covar is absolute,
    # so on the raw data it pays for the 1e-4 column as we did). Both converge (tol 1e-8) to
    # the same optimum; allowed: 1e-4 nats per example of convergence slack.
    x = 3.0 + scales * gaussian_data(rng, 600, 3, 6, units=(1.0, 1.0))
    ours = Mixture(n_components=3, n_init=5, tol=1e-8, max_iter=1000, dtype="float64").fit(x)
    u, log_jacobian = standardized(ours.module_, x)
    reference = GaussianMixture(3, covariance_type="diag", n_init=5, tol=1e-8, max_iter=1000,
                                random_state=0).fit(u)
    raw = GaussianMixture(3, covariance_type="diag", n_init=5, tol=1e-8, max_iter=1000,
                          random_state=0).fit(x)
    assert ours.converged_ and reference.converged_
    assert ours.score(x) >= reference.score(u) - log_jacobian - 1e-4
    assert ours.score(x) >= raw.score(x) - 1e-4
    # Equivariance: the same data in unit scale scores the same, up to the Jacobian.
    rescaled = Mixture(n_components=3, n_init=5, tol=1e-8, max_iter=1000, dtype="float64").fit(u)
    assert ours.score(x) == pytest.approx(rescaled.score(u) - log_jacobian, abs=1e-6)


def test_gaussian_parameters_round_trip_and_respect_the_variance_floor():
    rng = np.random.default_rng(6)
    x = gaussian_data(rng, 50, 2, 3)
    module = make("gaussian", x, 2, gaussian_scale="decoder")
    unit2 = module.observation.unit.numpy() ** 2
    # From just above the floor (min_scale * unit)^2 = 1e-6 unit^2 to where softplus is linear.
    variances = unit2 * np.array([[1e-5, 1e-2, 1.0], [1e2, 1e4, 1e8]])
    weights, means = np.array([0.3, 0.7]), x[:2]
    got = [t.numpy() for t in gaussian_parameters(set_gaussian_parameters(module, weights, means,
                                                                          variances))]
    for ours, expected in zip(got, (weights, means, variances), strict=True):
        np.testing.assert_allclose(ours, expected, rtol=1e-10)
    # Below the floor the model keeps sigma = min_scale (standardized units).
    set_gaussian_parameters(module, weights, means, unit2 * np.full((2, 3), 1e-12))
    np.testing.assert_allclose(gaussian_parameters(module)[2], np.tile(unit2 * 1e-6, (2, 1)), rtol=1e-9)


def test_bernoulli_mixture_recovers_planted_components():
    rng = np.random.default_rng(7)
    x, labels = bernoulli_data(rng, 600, 4, 50, separated=True)
    xt = torch.as_tensor(x, dtype=torch.float32)

    def fit(seed: int, method: str) -> tuple[float, float, float]:
        """(ARI at the start, ARI after EM, final log-likelihood), in float32 (the default)."""
        module = init_from_data(make("bernoulli", x, 4).float(), x, seed, method)
        start = adjusted_rand_score(labels, module.responsibilities(xt).argmax(-1).numpy())
        history = fit_em(module, x, max_iter=200)
        return start, adjusted_rand_score(labels, module.responsibilities(xt).argmax(-1).numpy()), history[-1]

    ari = fit(0, "kmeans")[1]
    assert ari >= 0.9, f"ARI {ari:.3f} from k-means++"  # measured: 1.0
    # From random responsibilities EM itself must find the clusters; like scikit-learn's
    # n_init, keep the best of 3 restarts by training log-likelihood (EM finds local maxima).
    runs = [fit(seed, "random") for seed in range(3)]
    start, ari, _ = max(runs, key=lambda run: run[2])
    assert start < 0.9 and ari >= 0.9, f"ARI {start:.3f} at the start, {ari:.3f} after EM"  # 0.47, 1.0


def test_kmeans_initialization_is_seeded_and_beats_random():
    rng = np.random.default_rng(8)
    x = gaussian_data(rng, 400, 4, 5)
    xt = torch.as_tensor(x)
    runs = {}
    for key, seed, method in (("a", 0, "kmeans"), ("b", 0, "kmeans"), ("random", 0, "random")):
        module = init_from_data(make("gaussian", x, 4, gaussian_scale="decoder"), x, seed, method)
        runs[key] = module.log_marginal(xt).mean().item()
    assert runs["a"] == runs["b"]
    assert runs["a"] > runs["random"] + 0.5


# -- gradient fitting (the generic trainer) ---------------------------------------------


def test_gradient_training_through_the_trainer_increases_the_log_likelihood():
    """With q = the exact posterior, the enumerated ELBO is log p(x): the generic Trainer with
    the enumerate estimator is gradient ascent on the exact marginal likelihood."""
    rng = np.random.default_rng(9)
    x = gaussian_data(rng, 400, 3, 4)
    xt = torch.as_tensor(x)
    module = make("gaussian", x, 3, gaussian_scale="decoder")
    torch.manual_seed(0)
    with torch.no_grad():
        module.component_params.copy_(torch.randn_like(module.component_params))
        start = module.log_marginal(xt).mean().item()
        terms = bounds.enumerated_elbo(module, xt)
        assert torch.allclose(terms.elbo, module.log_marginal(xt), atol=1e-10)
    config = TrainConfig(epochs=60, batch_size=200, lr=0.05, patience=None, seed=0)
    history = Trainer(module, config).fit(xt)
    assert len(history) == 60
    with torch.no_grad():
        end = module.log_marginal(xt).mean().item()
    assert end > start + 5.0  # measured: -21.7 -> about -7.7 nats per example
    assert history[-1]["train"]["elbo"] > history[len(history) // 2]["train"]["elbo"]


# -- the facade and the command line -------------------------------------------------------

def test_mixture_facade_scores_exactly_and_round_trips(tmp_path):
    from elbokit import Mixture, data
    from elbokit.api import LatentModel

    x = data.load("digits").x
    mixture = Mixture(n_components=4, seed=0).fit(x[:500])
    scores = mixture.evaluate(x[500:600], k=20, iwae_k=5)
    # q(z|x) is the exact posterior: ELBO, IWAE, the IS estimate and the exact sum coincide.
    exact = scores["exact_log_likelihood"]
    assert abs(scores["elbo"] - exact) < 1e-4 and abs(scores["iwae"]["value"] - exact) < 1e-4
    assert abs(scores["log_likelihood"]["estimate"] - exact) < 1e-4
    # Not told a k, it samples nothing: log p(x) is the exact sum, no IWAE is drawn.
    default = mixture.evaluate(x[500:600])
    assert default["iwae"] is None and default["exact_log_likelihood"] == exact
    assert default["log_likelihood"] == {"estimate": exact, "stderr": 0.0, "k": None, "exact": True}
    assert abs(default["elbo"] - exact) < 1e-4
    assert np.allclose(mixture.predict_proba(x[:5]).sum(-1), 1)
    mixture.save(tmp_path / "m")
    loaded = LatentModel.load(tmp_path / "m")
    assert isinstance(loaded, Mixture) and loaded.get_params() == mixture.get_params()
    assert np.array_equal(loaded.score_samples(x[:20]), mixture.score_samples(x[:20]))
    with pytest.raises(Exception, match="not a vae"):
        __import__("elbokit").VAE.load(tmp_path / "m")


def test_mixture_from_the_command_line(tmp_path, capsys):
    import json

    from elbokit.cli import main

    code = main(["fit", "--model", "mixture", "--components", "3", "--out", str(tmp_path / "r"),
                 "--eval-k", "10", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "adjusted Rand index" in out
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert 0 < summary["adjusted_rand_index"] <= 1
    history = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").open()]
    values = [h["train"]["log_likelihood"] for h in history]
    # EM never decreases it, up to the rounding of a float32 mean over n = 1,294 examples:
    # pairwise summation errs by ~ log2(n) eps |value| = 11 * 6e-8 ~ 7e-7 relative, so a
    # step may read as a dip of ~1e-5 nats at |log p| ~ 22 near convergence (measured: up to
    # 2 ulps, 3.8e-6). Allowed: 1e-6 relative, i.e. 2.2e-5 nats.
    assert all(b >= a - 1e-6 * abs(a) for a, b in zip(values, values[1:], strict=False))
    code = main(["fit", "--model", "mixture", "--fit", "gradient", "--epochs", "2", "--components",
                 "2", "--out", str(tmp_path / "g"), "--eval-k", "10", "--quiet"])
    assert code == 0
    assert main(["sample", str(tmp_path / "g"), "-n", "4", "-o", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (4, 64)


def test_restarts_keep_the_best_start_and_unconverged_em_warns(capsys, tmp_path):
    from elbokit import Mixture, data
    from elbokit.cli import main
    from elbokit.errors import ConvergenceWarning

    x = data.load("digits").x[:400]
    single = [Mixture(n_components=5, seed=s, init="random").fit(x) for s in (0, 1, 2)]
    best = Mixture(n_components=5, seed=0, init="random", n_init=3).fit(x)
    finals = [m.history_[-1]["train"]["log_likelihood"] for m in single]
    assert best.history_[-1]["train"]["log_likelihood"] == pytest.approx(max(finals), abs=1e-9)
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        assert not Mixture(n_components=5, max_iter=2).fit(x).converged_
    code = main(["fit", "--model", "mixture", "--components", "3", "--max-iter", "1",
                 "--out", str(tmp_path / "r"), "--eval-k", "10", "--quiet"])
    err = capsys.readouterr().err
    assert code == 0 and err.strip().startswith("elbokit: warning: EM stopped after max_iter=1")
    assert len(err.strip().splitlines()) == 1


def test_a_gradient_fit_into_a_run_with_a_checkpoint_is_refused_and_changes_nothing(tmp_path):
    """The run-directory rule (training.check_run_dir) comes before anything changes: the
    fitted mixture keeps its parameters when its next fit is refused."""
    from elbokit import Mixture

    x = (np.random.default_rng(0).random((80, 6)) < 0.4).astype(np.float32)
    options = dict(n_components=2, fit="gradient", epochs=2, batch_size=40, seed=0)
    Mixture(**options).fit(x, run_dir=tmp_path / "run")
    model = Mixture(**options).fit(x)
    before = {k: v.clone() for k, v in model.module_.state_dict().items()}
    with pytest.raises(ConfigError, match="already holds a training checkpoint"):
        model.fit(x, run_dir=tmp_path / "run")
    after = model.module_.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
