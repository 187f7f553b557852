"""elbokit.models (the package) and elbokit.models.base: the structural model protocol, the
one-line description of any model, and the package loading its VAE only on first use. (The
models themselves: test_vae.py, test_latents.py, test_mixture.py.)"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import distributions as D

import elbokit.models
from elbokit.models.base import LatentVariableModel, describe, family


def test_the_protocol_is_structural(linear_gaussian):
    """Anything with prior, likelihood and posterior is a model, whatever its class; a
    missing method is not."""
    assert isinstance(linear_gaussian(), LatentVariableModel)

    class NoEncoder:
        def prior(self):
            return None

        def likelihood(self, z):
            return None

    assert not isinstance(NoEncoder(), LatentVariableModel)


def test_family_looks_through_every_independent_wrapper():
    normal = D.Normal(torch.zeros(2, 3), torch.ones(2, 3))
    assert family(normal) == "Normal"
    assert family(D.Independent(normal, 1)) == "Normal"
    assert family(D.Independent(D.Independent(normal, 1), 1)) == "Normal"
    assert family(D.Independent(D.Bernoulli(logits=torch.zeros(3)), 1)) == "Bernoulli"


def test_a_model_with_describe_is_described_by_it(linear_gaussian):
    class Named(linear_gaussian):
        def describe(self):
            return "my model"

    assert describe(Named()) == "my model"
    # Without one: its class and the families found by running the protocol once.
    assert describe(linear_gaussian()) == ("LinearGaussian (prior MultivariateNormal, posterior "
                                          "MultivariateNormal, likelihood Normal)")


def test_the_package_loads_its_vae_on_first_use_only():
    code = ("import sys, elbokit.models as m; print('elbokit.models.vae' in sys.modules); "
            "m.VAEModule; print('elbokit.models.vae' in sys.modules)")
    lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.split()
    assert lines == ["False", "True"]
    from elbokit.models.vae import VAEModule

    assert elbokit.models.VAEModule is VAEModule
    assert elbokit.models.LatentVariableModel is LatentVariableModel
    with pytest.raises(AttributeError, match="has no attribute 'Nothing'"):
        elbokit.models.Nothing  # noqa: B018


def test_a_module_without_describe_is_described_by_its_distributions():
    """The report's one-line model description falls back, for a module elbokit has never
    heard of, to its class and the families of its prior, posterior and likelihood."""
    from elbokit.models.base import describe

    class Factor(torch.nn.Module):
        def prior(self):
            return D.Independent(D.Normal(torch.zeros(2), torch.ones(2)), 1)

        def likelihood(self, z):
            return D.Independent(D.Poisson(z.exp().sum(-1, keepdim=True).expand(*z.shape[:-1], 3)), 1)

        def posterior(self, x):
            return D.Independent(D.Laplace(torch.zeros(len(x), 2), torch.ones(len(x), 2)), 1)

    assert describe(Factor()) == "Factor (prior Normal, posterior Laplace, likelihood Poisson)"
