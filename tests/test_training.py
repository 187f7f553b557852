"""Training against ground truth (probabilistic PCA), on digits, and resumability."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from elbokit import VAE, data, training
from elbokit.checkpoint import load_checkpoint
from elbokit.errors import ConfigError
from elbokit.models.vae import VAEConfig, VAEModule
from elbokit.training import TrainConfig, Trainer, epoch_order


def ppca_log_likelihood(train: np.ndarray, test: np.ndarray, q: int) -> float:
    """Held-out log p(x) of the maximum-likelihood probabilistic PCA fit (Tipping & Bishop
    1999): mean = sample mean, sigma^2 = mean of the discarded eigenvalues of the sample
    covariance, W = U_q (Lambda_q - sigma^2 I)^(1/2)."""
    mean = train.mean(0)
    eigenvalues, vectors = np.linalg.eigh(np.cov(train.T, bias=True))
    eigenvalues, vectors = eigenvalues[::-1], vectors[:, ::-1]
    noise = eigenvalues[q:].mean()
    weight = vectors[:, :q] * np.sqrt(eigenvalues[:q] - noise)
    cov = weight @ weight.T + noise * np.eye(len(mean))
    dist = torch.distributions.MultivariateNormal(torch.tensor(mean), torch.tensor(cov))
    return float(dist.log_prob(torch.tensor(test)).mean())


def test_linear_vae_reaches_the_ppca_maximum_likelihood():
    rng = np.random.default_rng(0)
    dim, q = 8, 2
    weight, bias = rng.normal(size=(dim, q)) * [2.0, 1.0], rng.normal(size=dim)

    def draw(n: int) -> np.ndarray:
        return rng.normal(size=(n, q)) @ weight.T + bias + 0.5 * rng.normal(size=(n, dim))

    train, test = draw(2000), draw(1000)
    reference = ppca_log_likelihood(train, test, q)
    vae = VAE(latent_dim=q, encoder="linear", decoder="linear", likelihood="gaussian",
              gaussian_scale="shared", epochs=100, lr=1e-2, batch_size=100, val_fraction=0,
              patience=None, dtype="float64").fit(train)
    with torch.no_grad():
        marginal = vae.module_.linear_gaussian_marginal()  # the VAE's exact log p(x)
        held_out = float(marginal.log_prob(torch.tensor(test)).mean())
        exact = marginal.log_prob(torch.tensor(test[:200])).numpy()
    assert abs(held_out - reference) < 0.05, (held_out, reference)
    # Its ELBO is a lower bound on its own exact log-likelihood, and nearly tight (linear
    # VAE: the optimal diagonal q is the exact posterior, Lucas et al. 2019). The ELBO's MC
    # error (1000 examples x 100 samples) is below 0.001 nats, so 0.01 is > 10 SE.
    elbo = vae.elbo(test, n_samples=100)["elbo"]
    assert elbo <= held_out + 0.01
    assert held_out - elbo < 0.05
    # The importance-sampled estimate agrees with the closed form.
    estimate, stderr = vae.log_likelihood(test[:200], k=500)
    combined = np.sqrt((stderr**2).sum()) / 200
    assert abs(estimate.mean() - exact.mean()) < 3 * combined + 1e-6


@pytest.fixture(scope="module")
def digits_split():
    d = data.load("digits")
    parts = data.split_indices(len(d.x), 0, 0.2, 0.1)
    return d.x[parts["train"]], d.x[parts["val"]], d.x[parts["test"]]


def test_training_on_digits_improves_the_held_out_elbo(digits_split):
    train, val, test = digits_split
    vae = VAE(latent_dim=8, hidden=(128, 128), epochs=40, batch_size=64, seed=0)
    untrained = vae.build(train)
    vae.module_ = untrained.eval()
    before = vae.elbo(test, n_samples=10)["elbo"]
    vae.fit(train, X_val=val)
    after = vae.elbo(test, n_samples=10)["elbo"]
    # Untrained: about -44 nats (64 coin flips, 64 log 2 = 44.4); trained: about -19.
    # A margin of 15 nats is far beyond the MC noise (SE < 0.1 nats with 359 x 10 samples).
    assert after - before > 15, (before, after)
    history = vae.history_
    assert history[-1]["train"]["elbo"] > history[0]["train"]["elbo"]
    # Reported ELBO = reconstruction - KL (up to float32 rounding of the per-batch sums).
    assert all(abs(h["train"]["elbo"] - (h["train"]["reconstruction"] - h["train"]["kl"])) < 1e-4
               for h in history)


def test_iwae_training_runs_and_scores(digits_split):
    train, val, test = digits_split
    vae = VAE(latent_dim=4, hidden=(64,), epochs=3, iwae_k=5, seed=0).fit(train, X_val=val)
    scores = vae.evaluate(test, k=100, iwae_k=20)
    assert scores["log_likelihood"]["estimate"] >= scores["elbo"] - 0.5
    assert scores["iwae"]["k"] == 20 and scores["n_examples"] == len(test)


def test_epoch_order_is_a_seeded_permutation():
    a, b = epoch_order(50, 0, 1), epoch_order(50, 0, 1)
    assert torch.equal(a, b) and sorted(a.tolist()) == list(range(50))
    assert not torch.equal(a, epoch_order(50, 0, 2))
    assert not torch.equal(a, epoch_order(50, 1, 1))


@pytest.mark.parametrize("bad, message", [
    ({"epochs": 0}, "epochs"), ({"lr": -1.0}, "learning rate"), ({"beta": -0.1}, "beta"),
    ({"iwae_k": 0}, "iwae-k"), ({"kl": "exact"}, "kl"), ({"n_samples": 0}, "n-samples"),
])
def test_impossible_training_options_are_refused(bad, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**bad)


def _tensors_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_continues_bit_for_bit(tmp_path, digits_split):
    train, val, _ = digits_split
    options = dict(latent_dim=4, hidden=(32,), batch_size=128, patience=None, seed=3)
    VAE(epochs=4, **options).fit(train, X_val=val, run_dir=tmp_path / "straight")
    VAE(epochs=2, **options).fit(train, X_val=val, run_dir=tmp_path / "split")
    state, *_ = load_checkpoint(tmp_path / "split")
    assert state["epoch"] == 2
    resumed = VAE(epochs=4, **options).fit(train, X_val=val, run_dir=tmp_path / "split", resume=True)
    assert [h["epoch"] for h in resumed.history_] == [3, 4]
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "split")
    assert a[0] == b[0]  # epoch, best validation ELBO, early-stopping counters
    assert _tensors_equal(a[1], b[1])  # weights
    assert _tensors_equal(a[2]["state"][0], b[2]["state"][0])  # Adam moments
    assert torch.equal(a[3], b[3])  # RNG state
    lines = [json.loads(line) for line in (tmp_path / "split" / "metrics.jsonl").open()]
    assert [line["epoch"] for line in lines] == [1, 2, 3, 4]
    with pytest.raises(ConfigError, match="resume=True"):
        VAE(epochs=4, **options).fit(train, X_val=val, run_dir=tmp_path / "split")


def test_early_stopping_keeps_the_best_model(tmp_path, digits_split):
    train, val, _ = digits_split
    vae = VAE(latent_dim=4, hidden=(32,), epochs=60, patience=2, lr=3e-2, seed=0)
    vae.fit(train, X_val=val, run_dir=tmp_path)
    history = vae.history_
    best = max(history, key=lambda h: h["val"]["elbo"])
    assert len(history) < 60 and history[-1]["epoch"] - best["epoch"] == 2
    saved = VAE.load(tmp_path)
    for name, tensor in vae.module_.state_dict().items():
        assert torch.equal(tensor, saved.module_.state_dict()[name])


def test_adam_is_fused_and_a_checkpoint_keeps_its_own_implementation():
    """The Trainer's Adam runs one fused kernel (measured +20-27% throughput); a run whose
    checkpointed optimizer was not fused (older runs) resumes unfused, so its resumed steps
    round exactly as its first ones did. Fused and per-tensor Adam agree to float rounding."""
    from elbokit.training import adam
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(50))
    fused = adam([w], 1e-2)
    assert fused.param_groups[0]["fused"] is True
    old = torch.optim.Adam([torch.nn.Parameter(w.detach().clone())], lr=1e-2)
    for opt, param in ((fused, w), (old, old.param_groups[0]["params"][0])):
        for _ in range(20):
            opt.zero_grad()
            (param.sin() * torch.arange(50.0)).sum().backward()
            opt.step()
    assert torch.allclose(w, old.param_groups[0]["params"][0], rtol=0, atol=1e-5)
    resumed = adam([torch.nn.Parameter(torch.zeros(50))], 1e-2)
    resumed.load_state_dict(old.state_dict())
    assert not resumed.param_groups[0]["fused"]


def test_a_small_step_trains_on_one_thread_unless_the_count_was_chosen(monkeypatch):
    """Below SMALL_STEP_WORK (batch x samples x parameters) the Trainer fits on one CPU
    thread and puts torch's count back after; a large step, a count set by
    torch.set_num_threads since import, or one in OMP_NUM_THREADS / MKL_NUM_THREADS is kept."""
    previous = torch.get_num_threads()
    monkeypatch.setattr(training, "DEFAULT_THREADS", 2)  # as if torch's default were 2
    for variable in training.THREAD_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    seen: list[int] = []
    original = training.Trainer._fit

    def spy(self, *args):
        seen.append(torch.get_num_threads())
        return original(self, *args)

    monkeypatch.setattr(training.Trainer, "_fit", spy)
    x = torch.bernoulli(torch.full((64, 6), 0.5))

    def fit(batch_size: int = 32) -> None:
        torch.manual_seed(0)
        module = VAEModule(VAEConfig(dim=6, latent_dim=2, hidden=(8,), likelihood={"name": "bernoulli"}))
        trainer = Trainer(module, TrainConfig(epochs=1, batch_size=batch_size, patience=None))
        work = training.step_work(trainer.params, trainer.config)
        assert work == batch_size * sum(p.numel() for p in trainer.params)
        trainer.fit(x)

    try:
        torch.set_num_threads(2)
        fit()
        assert seen[-1] == 1 and torch.get_num_threads() == 2  # one thread, then put back
        monkeypatch.setattr(training, "SMALL_STEP_WORK", 100)  # the same step, now "large"
        fit()
        assert seen[-1] == 2
        monkeypatch.undo()  # SMALL_STEP_WORK and DEFAULT_THREADS as they were
        monkeypatch.setattr(training, "DEFAULT_THREADS", 2)
        monkeypatch.setattr(training.Trainer, "_fit", spy)
        torch.set_num_threads(3)  # the caller's own count
        fit()
        assert seen[-1] == 3 and torch.get_num_threads() == 3
        torch.set_num_threads(2)
        monkeypatch.setenv("OMP_NUM_THREADS", "2")  # chosen in the environment
        fit()
        assert seen[-1] == 2
    finally:
        torch.set_num_threads(previous)


def test_training_flushes_subnormals_and_puts_the_mode_back(monkeypatch):
    """Subnormal floats are flushed to zero while a Trainer fits (the IWAE weights' slow
    path), and the mode is as before afterwards; a caller's own flushing is left on."""
    from elbokit.training import flushed_subnormals, subnormals_flushed

    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero mode")
    seen = []
    original = training.Trainer._fit

    def spy(self, *args):
        seen.append(subnormals_flushed())
        return original(self, *args)

    monkeypatch.setattr(training.Trainer, "_fit", spy)
    torch.manual_seed(0)
    module = VAEModule(VAEConfig(dim=6, latent_dim=2, hidden=(8,), likelihood={"name": "bernoulli"}))
    x = torch.bernoulli(torch.full((64, 6), 0.5))
    Trainer(module, TrainConfig(epochs=1, batch_size=32, patience=None)).fit(x)
    assert seen == [True] and not subnormals_flushed()
    assert float(torch.full((), 1e-40) * 1.5) > 0  # subnormals computed again
    torch.set_flush_denormal(True)
    try:
        with flushed_subnormals():
            pass
        assert subnormals_flushed()  # the caller's setting stays
    finally:
        torch.set_flush_denormal(False)
