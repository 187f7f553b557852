"""Bounds against the closed-form log p(x) of a linear-Gaussian model (tests 1 and 2)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import distributions as D

from elbokit import bounds
from elbokit.models.latents import StandardNormal
from elbokit.models.vae import VAEConfig, VAEModule


def test_elbo_is_below_log_px_for_an_arbitrary_q(linear_gaussian):
    model = linear_gaussian(q_shift=0.8, q_scale=1.7)
    x = model.sample_x(16)
    exact = model.marginal().log_prob(x)
    torch.manual_seed(0)
    s = 4000
    weights = bounds.sample_log_weights(model, x, s)
    terms = bounds.elbo(model, x, n_samples=s)
    # The ELBO's only MC error is its reconstruction term: SE = sd(log p(x|z)) / sqrt(S).
    se = weights.log_likelihood.std(0) / math.sqrt(s)
    gap = exact - terms.elbo
    assert torch.all(gap > 4 * se), "ELBO must lie below log p(x) beyond 4 SE for a poor q"
    # The gap is KL(q || exact posterior), known in closed form here.
    mean, cov = model.exact_posterior_params(x)
    kl_to_posterior = D.kl_divergence(model.posterior(x), D.MultivariateNormal(mean, cov))
    assert torch.allclose(gap, kl_to_posterior, atol=float(4 * se.max()))


def test_elbo_equals_log_px_with_the_exact_posterior(linear_gaussian):
    model = linear_gaussian()
    x = model.sample_x(16)
    exact = model.marginal().log_prob(x)
    torch.manual_seed(1)
    # Monte-Carlo KL: every sample's log-weight is exactly log p(x), so the match is exact.
    mc = bounds.elbo(model, x, n_samples=3, kl="mc")
    assert torch.allclose(mc.elbo, exact, atol=1e-9)
    # Analytic KL: the reconstruction term is still an MC mean; within 4 SE.
    s = 4000
    weights = bounds.sample_log_weights(model, x, s)
    se = weights.log_likelihood.std(0) / math.sqrt(s)
    analytic = bounds.elbo(model, x, n_samples=s, kl="analytic")
    assert torch.all((analytic.elbo - exact).abs() < 4 * se)


def test_iwae_rises_with_k_towards_log_px(linear_gaussian):
    model = linear_gaussian(q_shift=0.5, q_scale=1.5)
    x = model.sample_x(8)
    exact = model.marginal().log_prob(x).mean()
    torch.manual_seed(2)
    repeats = 200
    means, ses = [], []
    for k in (1, 10, 100, 1000):
        values = torch.stack([bounds.iwae_bound(model, x, k).mean() for _ in range(repeats)])
        means.append(values.mean())
        ses.append(values.std() / math.sqrt(repeats))
    for i in range(len(means) - 1):
        rise = means[i + 1] - means[i]
        assert rise > 3 * math.hypot(ses[i], ses[i + 1]), "IWAE_k must increase with k"
    assert all(m < exact + 4 * s for m, s in zip(means, ses, strict=True)), "IWAE <= log p(x)"
    assert exact - means[-1] < 0.1 * (exact - means[0]), "IWAE_1000 closes most of the ELBO gap"


def test_log_likelihood_within_3_standard_errors(linear_gaussian):
    model = linear_gaussian(q_shift=0.3, q_scale=1.3)
    n = 200
    x = model.sample_x(n)
    exact = model.marginal().log_prob(x)
    torch.manual_seed(3)
    estimate, stderr = bounds.log_likelihood(model, x, k=5000, chunk=700)
    error = estimate - exact
    assert torch.all(stderr > 0)
    # 200 independent checks at 3 SE: ~0.54 expected outside by chance; P(>= 4) ~ 0.2%.
    assert int((error.abs() > 3 * stderr).sum()) <= 3
    # The mean over examples, against the combined SE of the mean.
    combined = torch.sqrt((stderr**2).sum()) / n
    assert abs(float(error.mean())) < 3 * float(combined)
    # The reported SE is calibrated: every example here has the same weight distribution,
    # so the spread of the errors estimates the true SE (relative SE of a 200-sample sd ~5%).
    ratio = float(error.std() / stderr.median())
    assert 0.8 < ratio < 1.25


def test_log_likelihood_chunking_does_not_change_the_estimate(linear_gaussian):
    model = linear_gaussian(q_shift=0.3, q_scale=1.3)
    x = model.sample_x(5)
    torch.manual_seed(4)
    one = bounds.log_likelihood(model, x, k=1000, chunk=1000)
    torch.manual_seed(4)
    many = bounds.log_likelihood(model, x, k=1000, chunk=1000)  # same stream, one chunk
    assert torch.equal(one[0], many[0])
    # Chunks of 37 see the same number of proposals; estimates agree within 4 combined SE.
    torch.manual_seed(5)
    chunked = bounds.log_likelihood(model, x, k=1000, chunk=37)
    assert torch.all((chunked[0] - one[0]).abs() < 4 * torch.hypot(chunked[1], one[1]))


def test_log_likelihood_rejects_bad_arguments(linear_gaussian):
    model = linear_gaussian()
    x = model.sample_x(2)
    with pytest.raises(ValueError, match="k >= 2"):
        bounds.log_likelihood(model, x, k=1)
    with pytest.raises(ValueError, match="chunk"):
        bounds.log_likelihood(model, x, k=10, chunk=0)


def test_importance_scores_are_the_bounds_of_the_same_draws(linear_gaussian):
    """IWAE_m, the ELBO's terms and the log p(x) estimate of importance_scores are exactly
    what the k draws of sample_log_weights (same random stream) give by hand."""
    model = linear_gaussian(q_shift=0.4, q_scale=1.4)
    x = model.sample_x(6)
    torch.manual_seed(7)
    scores = bounds.importance_scores(model, x, k=120, chunk=100, iwae_k=30)
    torch.manual_seed(7)  # chunks are whole groups: 90 draws, then 30
    weights = [bounds.sample_log_weights(model, x, n) for n in (90, 30)]
    log_w = torch.cat([w.log_w for w in weights])  # [120, 6]
    assert torch.allclose(scores.estimate, bounds.log_mean_exp(log_w), atol=1e-10)
    groups = bounds.log_mean_exp(log_w.reshape(4, 30, 6), 1).mean(0)
    assert scores.iwae_k == 30 and torch.allclose(scores.iwae, groups, atol=1e-10)
    reconstruction = torch.cat([w.log_likelihood for w in weights]).mean(0)
    assert torch.allclose(scores.reconstruction, reconstruction, atol=1e-10)
    closed = bounds.closed_form_kl(model.posterior(x), model.prior())
    assert torch.allclose(scores.kl, closed, atol=1e-12)
    assert torch.allclose(scores.elbo, reconstruction - closed, atol=1e-10)
    sd = log_w.exp().std(0) / log_w.exp().mean(0) / math.sqrt(120)  # sd(w) / (sqrt(k) mean w)
    assert torch.allclose(scores.stderr, sd, rtol=1e-8)
    # The Monte-Carlo KL of the same draws, when asked for.
    torch.manual_seed(7)
    mc = bounds.importance_scores(model, x, k=120, chunk=100, iwae_k=30, kl="mc")
    log_q_over_p = torch.cat([w.log_posterior - w.log_prior for w in weights]).mean(0)
    assert torch.allclose(mc.kl, log_q_over_p, atol=1e-10)
    # Fewer draws than a group: no IWAE; log_likelihood() is the same estimate and error.
    torch.manual_seed(8)
    few = bounds.importance_scores(model, x, k=20, iwae_k=30)
    torch.manual_seed(8)
    assert few.iwae is None and few.iwae_k is None
    estimate, stderr = bounds.log_likelihood(model, x, k=20)
    assert torch.equal(estimate, few.estimate) and torch.equal(stderr, few.stderr)


def test_importance_scores_order_and_truth_with_the_exact_posterior(linear_gaussian):
    model = linear_gaussian()  # q is the exact posterior: every log w is log p(x)
    x = model.sample_x(8)
    exact = model.marginal().log_prob(x)
    torch.manual_seed(9)
    scores = bounds.importance_scores(model, x, k=200, iwae_k=50, kl="mc")
    for value in (scores.estimate, scores.iwae, scores.elbo):
        assert torch.allclose(value, exact, atol=1e-9)
    assert torch.all(scores.stderr < 1e-6)
    # A moved q: ELBO < IWAE_50 < estimate, each beyond 3 SE of the mean over 400 examples.
    model = linear_gaussian(q_shift=0.8, q_scale=1.7)
    x = model.sample_x(400)
    torch.manual_seed(10)
    scores = bounds.importance_scores(model, x, k=1000, chunk=500, iwae_k=50)
    for low, high in ((scores.elbo, scores.iwae), (scores.iwae, scores.estimate)):
        difference = high - low
        assert float(difference.mean()) > 3 * float(difference.std() / math.sqrt(len(x)))
    assert float((model.marginal().log_prob(x) - scores.estimate).mean()) > -3 * float(
        torch.sqrt((scores.stderr ** 2).sum()) / len(x))


def test_importance_scores_reject_bad_arguments(linear_gaussian):
    model = linear_gaussian()
    x = model.sample_x(2)
    with pytest.raises(ValueError, match="iwae_k"):
        bounds.importance_scores(model, x, k=10, iwae_k=0)


def _vae(latent: int = 4, dim: int = 6) -> VAEModule:
    torch.manual_seed(0)
    return VAEModule(VAEConfig(dim=dim, latent_dim=latent, hidden=(16,),
                               likelihood={"name": "bernoulli"})).double()


def test_analytic_and_monte_carlo_kl_agree_within_4_se():
    model = _vae()
    x = torch.bernoulli(torch.full((10, 6), 0.4, dtype=torch.float64))
    torch.manual_seed(6)
    s = 20000
    weights = bounds.sample_log_weights(model, x, s)
    mc = bounds.kl_divergence(weights.posterior, model.prior(), weights, kl="mc")
    se = (weights.log_posterior - weights.log_prior).std(0) / math.sqrt(s)
    analytic = bounds.kl_divergence(weights.posterior, model.prior(), kl="analytic")
    assert torch.all((mc - analytic).abs() < 4 * se)
    assert torch.all(analytic >= 0)


def test_kl_auto_falls_back_to_monte_carlo_and_analytic_refuses():
    q = D.Independent(D.StudentT(5.0, torch.zeros(3, 2), torch.ones(3, 2)), 1)
    p = D.Independent(D.Normal(torch.zeros(2), torch.ones(2)), 1)
    with pytest.raises(NotImplementedError):
        D.kl_divergence(q, p)  # premise: no closed form registered
    with pytest.raises(NotImplementedError, match="kl='mc'"):
        bounds.kl_divergence(q, p, kl="analytic")
    torch.manual_seed(7)
    z = q.sample((4000,))
    weights = bounds.LogWeights(z, torch.zeros(4000, 3), p, q)
    auto = bounds.kl_divergence(q, p, weights, kl="auto")
    assert torch.allclose(auto, (q.log_prob(z) - p.log_prob(z)).mean(0))


def test_beta_weights_only_the_surrogate():
    model = _vae()
    x = torch.bernoulli(torch.full((7, 6), 0.5, dtype=torch.float64))
    torch.manual_seed(8)
    plain = bounds.elbo(model, x)
    torch.manual_seed(8)
    weighted = bounds.elbo(model, x, beta=3.0)
    assert torch.equal(plain.elbo, weighted.elbo)
    assert torch.equal(weighted.elbo, weighted.reconstruction - weighted.kl)
    assert torch.allclose(weighted.surrogate, weighted.reconstruction - 3.0 * weighted.kl)


def test_iwae_with_one_sample_is_the_elbo_with_monte_carlo_kl():
    model = _vae()
    x = torch.bernoulli(torch.full((7, 6), 0.5, dtype=torch.float64))
    torch.manual_seed(9)
    one = bounds.iwae_bound(model, x, 1)
    torch.manual_seed(9)
    assert torch.allclose(one, bounds.elbo(model, x, kl="mc").elbo)
    torch.manual_seed(9)
    terms = bounds.iwae(model, x, 5)
    assert terms.surrogate.shape == terms.elbo.shape == (7,)


# -- the training step's direct formulas equal torch.distributions' values -------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("standard", [True, False])
def test_diagonal_gaussian_kl_formula_equals_the_registry(dtype, standard):
    """closed_form_kl's diagonal-Gaussian path (general diagonal prior; the StandardNormal
    prior's registered short form) gives torch's KL(Normal || Normal) of the expanded
    Independent distributions."""
    torch.manual_seed(0)
    q = D.Independent(D.Normal(3 * torch.randn(4, 6, 5, dtype=dtype),
                               torch.rand(4, 6, 5, dtype=dtype) * 3 + 1e-3), 1)
    if standard:
        p = D.Independent(StandardNormal(torch.zeros(5, dtype=dtype), torch.ones(5, dtype=dtype)), 1)
    else:
        p = D.Independent(D.Normal(torch.randn(5, dtype=dtype), torch.rand(5, dtype=dtype) + 0.2), 1)
    registry = D.kl_divergence(D.Independent(D.Normal(q.base_dist.loc, q.base_dist.scale), 1),
                               D.Independent(D.Normal(p.base_dist.loc, p.base_dist.scale), 1)
                               .expand(q.batch_shape))
    ours = bounds.closed_form_kl(q, p)
    assert ours.shape == (4, 6)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert torch.allclose(ours, registry, rtol=tol, atol=tol)


@pytest.mark.parametrize("k", [1, 3])
def test_elbo_terms_equal_the_distribution_objects_reference(k):
    """bounds.elbo (one-sample shortcut, direct Bernoulli log-likelihood, KL formula) computes
    what the plain torch.distributions recipe computes from the same random numbers."""
    torch.manual_seed(0)
    model = VAEModule(VAEConfig(dim=12, latent_dim=3, hidden=(7,)))
    x = torch.bernoulli(torch.full((9, 12), 0.3))
    torch.manual_seed(5)
    terms = bounds.elbo(model, x, n_samples=k)
    torch.manual_seed(5)
    q = model.posterior(x)
    z = q.rsample((k,))
    reconstruction = D.Independent(D.Bernoulli(logits=model.decoder(z)), 1).log_prob(x).mean(0)
    kl = D.kl_divergence(D.Independent(D.Normal(q.base_dist.loc, q.base_dist.scale), 1),
                         D.Independent(D.Normal(torch.zeros(3), torch.ones(3)), 1).expand((9,)))
    assert torch.allclose(terms.reconstruction, reconstruction, rtol=1e-6, atol=1e-5)
    assert torch.allclose(terms.kl, kl, rtol=1e-6, atol=1e-6)
    assert torch.equal(terms.elbo, terms.reconstruction - terms.kl)
    # Gradients too: the surrogate's gradient is the reference ELBO's.
    grads = torch.autograd.grad(terms.surrogate.sum(), list(model.parameters()))
    torch.manual_seed(5)
    q = model.posterior(x)
    z = q.rsample((k,))
    reference = (D.Independent(D.Bernoulli(logits=model.decoder(z)), 1).log_prob(x).mean(0)
                 - D.kl_divergence(q, model.prior().expand((9,))))
    expected = torch.autograd.grad(reference.sum(), list(model.parameters()))
    for got, want in zip(grads, expected, strict=True):
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)


def test_log_mean_exp_is_the_log_of_the_mean_without_overflow():
    from elbokit.bounds import log_mean_exp

    values = torch.randn(7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for dim in (0, 1, -1):
        expected = values.exp().mean(dim).log()
        assert torch.allclose(log_mean_exp(values, dim), expected, rtol=0, atol=1e-12)
    # exp(1000) overflows float64; the shifted form does not, and shifting commutes.
    assert torch.allclose(log_mean_exp(values + 1000.0), log_mean_exp(values) + 1000.0, atol=1e-9)


# -- bounds import no model (the standard-normal KL itself: test_latents.py) ----------------

def test_bounds_imports_no_model_module():
    """``import elbokit.bounds`` (the package's names load lazily) pulls in nothing of
    models, likelihoods, estimators, training, api or cli: checked in a fresh interpreter."""
    code = "import sys, elbokit.bounds; print(' '.join(m for m in sys.modules if m.startswith('elbokit.')))"
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=True)
    loaded = done.stdout.split()
    assert "elbokit.bounds" in loaded
    forbidden = ("models", "likelihoods", "estimators", "training", "api", "cli")
    assert not [m for m in loaded if m.split(".")[1] in forbidden], loaded


# -- the enumeration policy -----------------------------------------------------------------

def test_one_enumeration_policy_for_scoring_and_training():
    def listed(size: float) -> object:
        return type("Listed", (), {"support_size": size})()

    assert bounds.enumeration_limit("score") == bounds.SCORING_LIMIT == 2**16
    assert bounds.enumeration_limit("train") == bounds.TRAINING_LIMIT == 2**10
    for use, limit in (("score", 2**16), ("train", 2**10)):
        assert bounds.enumerable(listed(limit), use)
        assert not bounds.enumerable(listed(limit + 1), use)
        assert not bounds.enumerable(listed(math.inf), use)
        assert not bounds.enumerable(object(), use)  # no support_size: a continuous z
    with pytest.raises(ValueError, match="'score' or 'train'"):
        bounds.enumerable(listed(2), "always")
