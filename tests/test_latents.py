"""elbokit.models.latents: the ``--latent`` spellings, the sizes each latent space states, its
support against a brute-force listing, and the standard-normal KL it registers with torch."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import distributions as D

from elbokit.errors import ConfigError
from elbokit.models.latents import LATENTS, LatentSpec, StandardNormal, latent_help


@pytest.mark.parametrize("text, kind, n, categories, shown", [
    ("gaussian:16", "gaussian", 16, 2, "gaussian:16"),
    ("categorical:10", "categorical", 1, 10, "categorical:1x10"),
    ("categorical:20x10", "categorical", 20, 10, "categorical:20x10"),
    ("bernoulli:32", "bernoulli", 32, 2, "bernoulli:32"),
    (" bernoulli:3 ", "bernoulli", 3, 2, "bernoulli:3"),
])
def test_a_spec_parses_and_prints_back_as_it_parses(text, kind, n, categories, shown):
    spec = LatentSpec.parse(text)
    assert (spec.kind, spec.n, spec.categories) == (kind, n, categories)
    assert str(spec) == shown and LatentSpec.parse(str(spec)) == spec


@pytest.mark.parametrize("text, message", [
    ("gaussian:2x3", "is not one of gaussian:N"),
    ("bernoulli:4x2", "is not one of"),
    ("poisson:3", "is not one of"),
    ("gaussian", "is not one of"),
    ("gaussian:0", "latent size must be >= 1"),
    ("categorical:1", "needs >= 2 states"),
    ("categorical:3x1", "needs >= 2 states"),
])
def test_bad_specs_are_refused_in_one_line(text, message):
    with pytest.raises(ConfigError, match=message) as caught:
        LatentSpec.parse(text)
    assert "\n" not in str(caught.value)


def test_every_registered_kind_is_in_the_help():
    text = latent_help()
    for name, kind in LATENTS.items():
        assert all(form in text for form in kind.syntax), name


@pytest.mark.parametrize("text", ["bernoulli:1", "bernoulli:4", "categorical:3", "categorical:3x4"])
def test_the_support_is_every_value_once_and_the_prior_sums_to_one_over_it(text):
    """Against itertools.product over each variable's states: the same set, no repeats, and
    the stated size; the prior's probabilities over it sum to 1 and are uniform."""
    spec = LatentSpec.parse(text)
    space = spec.build()
    support = space.support(10_000)
    states = spec.categories if spec.kind == "categorical" else 2
    assert spec.support_size == states ** spec.n == len(support)
    if spec.kind == "categorical":
        assert support.shape == (len(support), spec.n, states)
        assert (support.sum(-1) == 1).all()  # one-hot
        digits = support.argmax(-1)
    else:
        assert support.shape == (len(support), spec.n)
        digits = support.long()
    listed = sorted(map(tuple, digits.tolist()))
    assert listed == sorted(itertools.product(range(states), repeat=spec.n))
    log_p = space.prior().log_prob(support)
    assert torch.logsumexp(log_p, 0).item() == pytest.approx(0.0, abs=1e-6)
    assert torch.allclose(log_p, torch.full_like(log_p, -math.log(len(support))))
    # The decoder sees a flat code of flat_dim numbers; the encoder gives n_params numbers.
    assert space.flatten(support).shape == (len(support), spec.flat_dim)
    encoded = torch.randn(5, spec.n_params)
    assert space.posterior(encoded).sample().shape == (5, *support.shape[1:])


def test_enumeration_is_refused_beyond_its_limit_and_for_a_continuous_z():
    with pytest.raises(ConfigError, match="1e\\+20 values"):
        LatentSpec.parse("categorical:20x10").build().support(10_000)
    with pytest.raises(ConfigError, match="continuous latent"):
        LatentSpec.parse("gaussian:2").build().support(10_000)
    assert math.isinf(LatentSpec.parse("gaussian:2").support_size)


def test_the_gaussian_posterior_scale_is_positive_and_the_prior_standard_normal():
    space = LatentSpec.parse("gaussian:3").build()
    q = space.posterior(torch.tensor([[0.0, 1.0, -2.0, -1e4, 0.0, 50.0]]))
    assert torch.equal(q.mean, torch.tensor([[0.0, 1.0, -2.0]]))
    assert (q.stddev > 0).all() and q.stddev[0, 2] == pytest.approx(50.0, rel=1e-4)
    p = space.prior()
    assert torch.equal(p.mean, torch.zeros(3)) and torch.equal(p.stddev, torch.ones(3))


def test_the_standard_normal_kl_is_registered_and_equals_the_general_form():
    """KL(N(m, s^2) || StandardNormal) is found by torch's registry (so by any caller of
    kl_divergence) and equals the general normal-normal form in float64, broadcasting q's
    batch with p's as the general form does."""
    from elbokit.models import latents

    assert D.kl._dispatch_kl(D.Normal, StandardNormal) is latents._kl_normal_standard_normal
    g = torch.Generator().manual_seed(0)
    q = D.Normal(3 * torch.randn(4, 5, generator=g, dtype=torch.float64),
                 torch.rand(4, 5, generator=g, dtype=torch.float64) * 3 + 1e-3)
    for p_shape in [(5,), (4, 5), (2, 4, 5)]:
        p = StandardNormal(torch.zeros(p_shape, dtype=torch.float64),
                           torch.ones(p_shape, dtype=torch.float64))
        general = D.kl_divergence(q, D.Normal(p.loc, p.scale))
        short = D.kl_divergence(q, p)
        assert short.shape == general.shape
        assert torch.allclose(short, general, rtol=1e-13, atol=1e-13)
