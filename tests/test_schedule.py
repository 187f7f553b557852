"""The small parts around the training loop, each alone: the plateau learning-rate
schedule and early stopping with a tolerance, the KL warm-up, the NaN guard's decision, the
metrics log, Ctrl-C; and what the loop asks of them and of the objective: validation with
common random numbers on the objective's own score, and the averaged weights (Polyak
averaging) that are validated and returned."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch
from torch import nn

from elbokit import VAE, bounds, data
from elbokit.errors import ConfigError
from elbokit.estimators import Estimator
from elbokit.training import (
    EarlyStopping,
    Interrupts,
    MetricsLog,
    NaNGuard,
    TrainConfig,
    Trainer,
    improvement,
    schedules,
)


def small_trainer(**config) -> Trainer:
    vae = VAE(latent_dim=2, hidden=(16,), seed=0)
    module = vae.build(np.zeros((4, 64)) + np.eye(4, 64))
    return Trainer(module, TrainConfig(batch_size=64, seed=0, **config))


def fresh_state() -> dict:
    return {"best_val": None, "bad_epochs": 0, "lr_bad_epochs": 0, "stopped_early": False}


def test_the_plateau_schedule_lowers_the_rate_then_stops():
    stopping = EarlyStopping(patience=5, lr_patience=2, lr_factor=0.5, min_lr=2e-4)
    state, groups = fresh_state(), [{"lr": 1e-3}]
    rates, score = [], -100.0
    for improved in (True, False, False, False, False, True, False, False, False, False, False):
        score += 1.0 if improved else 0.0
        stopping.update(state, score, groups)
        rates.append(groups[0]["lr"])
        if state["stopped_early"]:
            break
    # Two epochs without improvement halve the rate; an improvement resets both counters;
    # the floor min_lr holds; five in a row stop.
    assert rates == [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4, 2.5e-4, 2e-4, 2e-4, 2e-4, 2e-4]
    assert state["stopped_early"]


def test_a_rate_already_below_the_floor_is_never_raised():
    state, groups = fresh_state(), [{"lr": 1e-5}]  # e.g. after NaN rollbacks halved it
    EarlyStopping(lr_patience=1, min_lr=1e-4).update(state, float("nan"), groups)
    assert groups[0]["lr"] == 1e-5


def test_a_constant_schedule_never_changes_the_rate():
    stopping = EarlyStopping(lr_schedule="constant", lr_patience=1, patience=None)
    state, groups = fresh_state(), [{"lr": 1e-3}]
    for _ in range(5):
        stopping.update(state, -1.0, groups)
    assert groups[0]["lr"] == 1e-3 and not state["stopped_early"]


def test_small_improvements_count_as_none():
    stopping, state, groups = EarlyStopping(tolerance=1e-3, patience=2), fresh_state(), [{"lr": 1.0}]
    assert stopping.update(state, -100.0, groups)
    assert stopping.update(state, -99.95, groups)  # a new best, but by less than 1e-3 of 100
    assert state["best_val"] == -99.95 and state["bad_epochs"] == 1
    assert stopping.update(state, -99.0, groups) and state["bad_epochs"] == 0


def test_improvement_ignores_values_that_are_not_finite():
    assert improvement(None, -5.0, 0.0) == (True, True)
    assert improvement(None, float("nan"), 0.0) == (False, False)
    assert improvement(-5.0, float("inf"), 0.0) == (False, False)
    assert improvement(-5.0, -5.0, 0.0) == (False, False)
    assert improvement(-5.0, -4.999, 1e-3) == (True, False)


def test_without_validation_the_rate_follows_but_nothing_stops():
    stopping, state, groups = EarlyStopping(patience=1, lr_patience=1), fresh_state(), [{"lr": 1.0}]
    for _ in range(3):
        stopping.update(state, -1.0, groups, best="best_train", stop=False)
    assert state["best_train"] == -1.0 and state["best_val"] is None
    assert not state["stopped_early"] and groups[0]["lr"] == 0.25


def test_kl_warmup_rises_per_step_and_leaves_the_full_weight_for_scoring():
    config = TrainConfig(beta=2.0, kl_warmup=2)
    (warmup,) = schedules(config)
    objective = Estimator(beta=2.0)
    warmup.before_step(objective, 1, 0, 4)
    assert objective.beta == 0.0
    warmup.before_step(objective, 2, 2, 4)
    assert objective.beta == pytest.approx(2.0 * 1.5 / 2)
    assert warmup.after_steps(objective, 1) == {"beta": 1.0} and objective.beta == 2.0
    assert schedules(TrainConfig()) == []


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


def test_the_nan_guard_retries_until_the_retries_run_out():
    guard = NaNGuard(max_retries=2)
    assert guard.retry(0) and guard.retry(1) and not guard.retry(2)
    assert guard.why_stop(1, 2.5e-4) == "still after 1 retry with a halved learning rate (now 0.00025)"
    stop = NaNGuard(on_nan="stop")
    assert not stop.retry(0) and stop.why_stop(0, 1e-3) == "on_nan is 'stop'"


def test_the_metrics_log_appends_and_trims_to_a_checkpoint(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.trim(3)  # nothing written yet: nothing to do
    for epoch in (1, 2, 3):
        log.append({"epoch": epoch, "train": {"elbo": -float(epoch)}})
    log.append({"epoch": 3, "event": "non-finite"})
    with log.path.open("a") as f:
        f.write('{"epoch": 4, "tr')  # a line a crash cut short
    log.trim(2)
    lines = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert lines == [{"epoch": 1, "train": {"elbo": -1.0}}, {"epoch": 2, "train": {"elbo": -2.0}}]


def test_ctrl_c_is_held_until_the_step_boundary_and_the_handler_put_back():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with Interrupts(enabled=True) as interrupts:
            os.kill(os.getpid(), signal.SIGINT)
            assert interrupts.pending  # no KeyboardInterrupt: the loop stops at its next step
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # a 2nd: at once
        with Interrupts(enabled=False) as off, pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        assert not off.pending
    finally:
        signal.signal(signal.SIGINT, previous)


class Scored(nn.Module):
    """The ELBO to train on, and a validation score of the objective's own: high at the
    first epoch's weights, lower after (minus the distance the first weight moved)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.start = inner, None

    def forward(self, model, x):
        return self.inner(model, x)

    @torch.no_grad()
    def validation_terms(self, model, x):
        terms = self.inner.validation_terms(model, x)
        weight = next(model.parameters())
        if self.start is None:
            self.start = weight.clone()
        far = (weight - self.start).abs().sum()
        return type(terms)(terms.elbo, terms.reconstruction, terms.kl, -far.expand_as(terms.elbo))


def test_early_stopping_follows_the_objectives_score_not_the_elbo():
    x = torch.tensor(data.load("digits").x[:400], dtype=torch.float32)
    trainer = small_trainer(epochs=4, patience=2)
    trainer = Trainer(trainer.model, trainer.config, objective=Scored(trainer.objective))
    history = trainer.fit(x[:300], x[300:])
    # The ELBO rises every epoch, the score only falls after the first: the first is kept,
    # and two epochs without a better score stop the run.
    assert history[-1]["val"]["elbo"] > history[0]["val"]["elbo"]
    assert trainer.state["best_epoch"] == 1 and len(history) == 3 and trainer.state["stopped_early"]


def test_iwae_estimators_are_scored_by_the_iwae_bound_and_the_rest_by_the_beta_elbo():
    trainer = small_trainer()
    x = torch.tensor(data.load("digits").x[:50], dtype=torch.float32)
    for config in (TrainConfig(iwae_k=5), TrainConfig(estimator="dreg", iwae_k=5)):
        objective = config.objective(trainer.model)
        torch.manual_seed(0)
        terms = objective.validation_terms(trainer.model, x)
        torch.manual_seed(0)
        elbo = bounds.elbo(trainer.model, x)
        expected = bounds.iwae_bound(trainer.model, x, 5)
        torch.testing.assert_close(terms.elbo, elbo.elbo)  # the reported ELBO: one draw
        torch.testing.assert_close(terms.surrogate, expected)
    objective = TrainConfig(beta=4.0).objective(trainer.model)
    terms = objective.validation_terms(trainer.model, x)
    torch.testing.assert_close(terms.surrogate, terms.reconstruction - 4.0 * terms.kl)
    assert objective.score(-10.0, 2.0) == -18.0
