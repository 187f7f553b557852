"""The small parts around the training loop that decide how it converges: the plateau
learning-rate schedule, early stopping with a tolerance, validation with common random
numbers, and the averaged weights (Polyak averaging) that are validated and returned."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from elbokit import VAE, data
from elbokit.errors import ConfigError
from elbokit.training import TrainConfig, Trainer


def small_trainer(**config) -> Trainer:
    vae = VAE(latent_dim=2, hidden=(16,), seed=0)
    module = vae.build(np.zeros((4, 64)) + np.eye(4, 64))
    return Trainer(module, TrainConfig(batch_size=64, seed=0, **config))


def test_the_plateau_schedule_lowers_the_rate_then_stops():
    trainer = small_trainer(lr=1e-3, lr_patience=2, lr_factor=0.5, patience=5, min_lr=2e-4)
    rates = []
    for improved in (True, False, False, False, False, True, False, False, False, False, False):
        trainer._plateau(improved)
        rates.append(trainer.optimizer.param_groups[0]["lr"])
        if trainer.state["stopped_early"]:
            break
    # Two epochs without improvement halve the rate; an improvement resets both counters;
    # the floor min_lr holds; five in a row stop.
    assert rates == [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4, 2.5e-4, 2e-4, 2e-4, 2e-4, 2e-4]
    assert trainer.state["stopped_early"]


def test_a_rate_already_below_the_floor_is_never_raised():
    trainer = small_trainer(lr=1e-3, lr_patience=1, min_lr=1e-4)
    trainer.optimizer.param_groups[0]["lr"] = 1e-5  # e.g. after NaN rollbacks halved it
    trainer._plateau(False)
    assert trainer.optimizer.param_groups[0]["lr"] == 1e-5


def test_a_constant_schedule_never_changes_the_rate():
    trainer = small_trainer(lr=1e-3, lr_schedule="constant", lr_patience=1, patience=None)
    for _ in range(5):
        trainer._plateau(False)
    assert trainer.optimizer.param_groups[0]["lr"] == 1e-3 and not trainer.state["stopped_early"]


def test_small_improvements_count_as_none():
    trainer = small_trainer(tolerance=1e-3, patience=2)
    trainer._early_stopping(1, -100.0)
    trainer._early_stopping(2, -99.95)  # better, but by less than 1e-3 of 100: not significant
    assert trainer.state["best_val"] == -99.95 and trainer.state["bad_epochs"] == 1
    trainer._early_stopping(3, -99.0)
    assert trainer.state["bad_epochs"] == 0 and trainer.state["best_epoch"] == 3


@pytest.mark.parametrize("options", [{"lr_factor": 1.0}, {"lr_patience": 0}, {"ema": 1.0},
                                     {"lr_schedule": "cosine"}, {"tolerance": -1.0}])
def test_bad_schedule_options_are_refused(options):
    with pytest.raises(ConfigError):
        TrainConfig(**options)


def test_validation_draws_the_same_z_every_time_and_leaves_the_training_stream_alone():
    x = torch.tensor(data.load("digits").x[:200], dtype=torch.float32)
    trainer = small_trainer()
    torch.manual_seed(5)
    before = torch.get_rng_state()
    first, second = trainer._validate(x), trainer._validate(x)
    assert first == second  # common random numbers: a deterministic function of the weights
    assert torch.equal(torch.get_rng_state(), before)


def test_the_averaged_weights_are_validated_and_returned():
    x = data.load("digits").x.astype(np.float32)
    vae = VAE(latent_dim=2, hidden=(32,), epochs=3, batch_size=64, seed=0, ema=0.9,
              lr_schedule="constant", patience=None)
    trainer_weights = {}

    class Spy(Trainer):
        def fit(self, *args, **kwargs):
            history = super().fit(*args, **kwargs)
            trainer_weights["average"] = [t.clone() for t in self.average]
            return history

    import elbokit.api as api
    original, api.Trainer = api.Trainer, Spy
    try:
        vae.fit(x[:1000], X_val=x[1000:1200])
    finally:
        api.Trainer = original
    returned = [p.detach() for p in vae.module_.parameters()]
    # The model returned is the best epoch's average, here the last (the ELBO still rises
    # in 3 epochs), not the raw weights of the last step.
    assert vae.history_[-1]["val"]["elbo"] >= max(h["val"]["elbo"] for h in vae.history_)
    assert all(torch.equal(a, b) for a, b in zip(returned, trainer_weights["average"], strict=True))
