"""The convolutional encoder/decoder option (``encoder="conv"``, ``decoder="conv"``): shapes for
square, odd and multi-channel images, the parameter layout the observation models read,
every estimator, training, save/load and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from elbokit import VAE, data
from elbokit.cli import main
from elbokit.errors import ConfigError
from elbokit.models.vae import VAEConfig, VAEModule
from elbokit.nets import ConvDecoder


@pytest.fixture(autouse=True)
def one_thread():
    """Small convolutions: threads cost more than they give, and CPUs are shared. Restored
    afterwards: the thread count changes float summation order in every later test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

LIKELIHOODS = [{"name": "bernoulli"}, {"name": "gaussian", "scale": "decoder"},
               {"name": "categorical", "n_categories": 3}]


def conv_module(dim: int, image_shape=None, likelihood=None, latent: str = "gaussian",
                latent_dim: int = 3, **options) -> VAEModule:
    torch.manual_seed(0)
    config = VAEConfig(dim=dim, latent_dim=latent_dim, latent=latent, hidden=(16,),
                       encoder=options.pop("encoder", "conv"), decoder=options.pop("decoder", "conv"),
                       image_shape=image_shape, likelihood=likelihood or {"name": "bernoulli"},
                       **options)
    return VAEModule(config)


@pytest.fixture(scope="module")
def digits_split():
    d = data.load("digits")
    parts = data.split_indices(len(d.x), 0, 0.2, 0.1)
    return d.x[parts["train"]], d.x[parts["val"]], d.x[parts["test"]]


# -- shapes and layout -----------------------------------------------------------------------

@pytest.mark.parametrize("dim, given, expected", [
    (784, None, (1, 28, 28)),   # MNIST, inferred
    (64, None, (1, 8, 8)),      # scikit-learn digits, inferred
    (63, (7, 9), (1, 7, 9)),    # odd sides, H != W: 7 -> 4 -> 2 and 9 -> 5 -> 3 and back
    (72, (3, 4, 6), (3, 4, 6)),  # 3 channels
    (1, None, (1, 1, 1)),       # a 1-pixel map stays 1 pixel
])
@pytest.mark.parametrize("likelihood", LIKELIHOODS, ids=lambda spec: spec["name"])
def test_shapes_for_any_image_size_and_leading_sample_dims(dim, given, expected, likelihood):
    model = conv_module(dim, given, likelihood)
    assert model.config.image_shape == expected
    n_params = model.observation.n_params
    x = torch.rand(5, dim)
    assert model.encoder(x).shape == (5, 6)
    assert model.posterior(x).batch_shape == (5,)
    # The transposed convolutions end on exactly C x H x W maps (no crop, no padding left).
    c, h, w = expected
    maps = model.decoder.features(model.decoder.head(torch.randn(4, 3)).reshape(4, *model.decoder.start))
    assert maps.shape == (4, n_params // dim * c, h, w)
    for lead in [(), (5,), (2, 5), (3, 2, 5)]:  # e.g. [k, batch, latent] for IWAE
        z = torch.randn(*lead, 3)
        assert model.decoder(z).shape == (*lead, n_params)
        assert model.likelihood(z).batch_shape == lead
    z = torch.randn(2, 5, 3)  # folding the leading dims changes nothing, sample by sample
    torch.testing.assert_close(model.decoder(z)[1, 3], model.decoder(z[1, 3]))
    assert model.likelihood_log_prob(z, (x > 0.5).float() if likelihood["name"] != "categorical"
                                     else (x * 3).floor()).shape == (2, 5)


def test_outputs_are_laid_out_as_the_observation_model_reads_them():
    """A Gaussian with a decoder scale splits [..., 2 * dim] into locations then scales; a
    categorical likelihood reads [..., dim, K]: channel j * C + c of the last transposed
    convolution must land at parameter j of pixel (c, h, w) in both."""
    shape = (2, 3, 5)
    dim = 30
    for layout, per_pixel in [("parameter-major", 2), ("parameter-minor", 4)]:
        torch.manual_seed(0)
        decoder = ConvDecoder(3, shape, (4, 6), (8,), per_pixel, "relu", layout)
        z = torch.randn(7, 3)
        maps = decoder.features(decoder.head(z).reshape(7, *decoder.start))  # [7, P*C, H, W]
        per_parameter = maps.reshape(7, per_pixel, dim)  # parameter j: channels j*C .. j*C+C-1
        out = decoder(z)
        if layout == "parameter-major":
            torch.testing.assert_close(out.reshape(7, per_pixel, dim), per_parameter)
        else:
            torch.testing.assert_close(out.reshape(7, dim, per_pixel), per_parameter.transpose(1, 2))
    gaussian = conv_module(64, likelihood={"name": "gaussian", "scale": "decoder"})
    categorical = conv_module(64, likelihood={"name": "categorical", "n_categories": 3})
    assert gaussian.decoder.layout == "parameter-major"
    assert categorical.decoder.layout == "parameter-minor"
    assert categorical.likelihood(torch.randn(2, 3)).sample().shape == (2, 64)


def test_parameter_count_matches_a_hand_count():
    # 1x5x6 images, conv channels (2, 3), dense (4,), Gaussian z of 2, Gaussian x with a
    # decoder scale (2 outputs per pixel, no free scale parameter). Feature maps 5x6 -> 3x3 -> 2x2.
    model = VAEModule(VAEConfig(dim=30, latent_dim=2, hidden=(4,), encoder="conv", decoder="conv",
                                image_shape=(1, 5, 6), conv_channels=(2, 3),
                                likelihood={"name": "gaussian", "scale": "decoder"}))
    encoder = ((1 * 2 * 9 + 2)        # conv 1 -> 2 channels, 3x3 kernel, biases
               + (2 * 3 * 9 + 3)      # conv 2 -> 3
               + (3 * 2 * 2 * 4 + 4)  # flatten 3x2x2 = 12 -> dense 4
               + (4 * 4 + 4))         # dense 4 -> mu, log sigma (2 + 2)
    decoder = ((2 * 4 + 4)            # z -> dense 4
               + (4 * 12 + 12)        # -> 3x2x2 feature map
               + (3 * 2 * 9 + 2)      # transposed conv 3 -> 2
               + (2 * 2 * 9 + 2))     # transposed conv 2 -> 2 * 1 (location, scale)
    assert (encoder, decoder) == (149, 166)
    assert sum(p.numel() for p in model.encoder.parameters()) == encoder
    assert sum(p.numel() for p in model.decoder.parameters()) == decoder
    assert sum(p.numel() for p in model.parameters()) == encoder + decoder


# -- training with every estimator, save/load --------------------------------------------------

@pytest.mark.parametrize("latent, estimator, options", [
    ("gaussian:3", "reparameterize", {}),
    ("gaussian:3", "reparameterize", {"iwae_k": 4}),
    ("gaussian:3", "dreg", {"iwae_k": 4}),
    ("bernoulli:3", "enumerate", {}),
    ("categorical:2x3", "gumbel", {}),
    ("categorical:2x3", "gumbel-st", {}),
    ("bernoulli:3", "reinforce", {}),
    ("bernoulli:3", "vimco", {"iwae_k": 3}),
])
def test_every_estimator_trains_a_conv_vae(digits_split, latent, estimator, options):
    train = torch.as_tensor(digits_split[0][:32], dtype=torch.float32)
    vae = VAE(latent=latent, estimator=estimator, hidden=(16,), encoder="conv", decoder="conv",
              **options)
    model = vae.build(digits_split[0][:32])
    objective = vae.train_config().objective(model)
    objective(model, train).surrogate.sum().backward()
    for name in ("encoder", "decoder"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert any(g.abs().sum() > 0 for g in grads), name


def test_a_short_fit_improves_the_held_out_elbo_and_save_load_keeps_the_scores(tmp_path, digits_split):
    train, val, test = digits_split
    vae = VAE(latent_dim=8, hidden=(64,), encoder="conv", decoder="conv", epochs=4, lr=3e-3, seed=0)
    vae.module_ = vae.build(train).eval()
    before = vae.elbo(test, n_samples=5)["elbo"]
    vae.fit(train, X_val=val)
    after = vae.elbo(test, n_samples=5)["elbo"]
    # Untrained about -50 nats; after 4 epochs about -25 (measured). The MC error of a
    # 359-example, 5-sample mean is ~0.1 nats: a 15-nat margin is not noise.
    assert after - before > 15, (before, after)
    vae.save(tmp_path / "m")
    record = json.loads((tmp_path / "m" / "model.json").read_text())
    assert record["module"]["image_shape"] == [1, 8, 8] and record["module"]["encoder"] == "conv"
    loaded = VAE.load(tmp_path / "m")
    assert loaded.elbo(test, n_samples=5) == vae.elbo(test, n_samples=5)
    np.testing.assert_array_equal(loaded.score_samples(test[:20], k=20),
                                  vae.score_samples(test[:20], k=20))
    np.testing.assert_array_equal(loaded.reconstruct(test[:5]), vae.reconstruct(test[:5]))


@pytest.mark.parametrize("encoder, decoder", [("conv", "mlp"), ("mlp", "conv"), ("conv", "linear")])
def test_mixed_architectures(digits_split, encoder, decoder):
    train, _, test = digits_split
    vae = VAE(latent_dim=4, hidden=(32,), encoder=encoder, decoder=decoder, epochs=1,
              val_fraction=0).fit(train[:256])
    assert np.isfinite(vae.elbo(test[:50])["elbo"])
    assert vae.sample(3, seed=0).shape == (3, 64)


def test_a_gaussian_conv_vae_with_a_decoder_scale_and_an_explicit_shape():
    x = np.random.default_rng(0).normal(size=(64, 3 * 4 * 6))
    vae = VAE(latent_dim=2, hidden=(8,), encoder="conv", decoder="conv", image_shape=[3, 4, 6],
              likelihood="gaussian", gaussian_scale="decoder", epochs=1, val_fraction=0).fit(x)
    assert vae.module_.config.image_shape == (3, 4, 6)
    assert np.isfinite(vae.score_samples(x[:4], k=10)).all()
    with pytest.raises(ConfigError, match="not a square"):
        VAE(encoder="conv").fit(x)


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "binarized_mnist" / "binarized_mnist.npz").is_file(),
                    reason="../shared/data/binarized_mnist not present")
def test_binarized_mnist_is_seen_as_28x28_images(monkeypatch):
    monkeypatch.setenv("ELBOKIT_DATA", str(SHARED))
    x = data.load("binarized-mnist").x
    # 600 training images, one epoch: the real 784-wide rows through the conv path (the
    # whole set takes ~20 s an epoch on one core; see docs/conv.md).
    vae = VAE(latent_dim=8, hidden=(), encoder="conv", decoder="conv", epochs=1, lr=3e-3,
              batch_size=64, val_fraction=0).fit(x[:600])
    assert vae.module_.config.image_shape == (1, 28, 28)
    assert vae.module_.decoder(torch.zeros(2, 8)).shape == (2, 784)
    assert -784 * np.log(2) + 100 < vae.elbo(x[60000:60100])["elbo"] < -60


# -- command line ------------------------------------------------------------------------------

def test_fit_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["fit", "--data", "digits", "--encoder", "conv", "--decoder", "conv", "--epochs", "2",
                 "--hidden", "64", "--eval-k", "20", "--quiet", "--out", str(out)])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert "run directory:" in stdout and (out / "report.html").is_file()
    assert (out / "figures" / "traversals.png").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["params"]["encoder"] == "conv" and config["params"]["image_shape"] == [1, 8, 8]
    summary = json.loads((out / "summary.json").read_text())
    assert -44 < summary["splits"]["test"]["elbo"] < -25  # better than coin flips after 2 epochs
    assert main(["evaluate", str(out), "--k", "20", "--iwae-k", "5", "--json", str(tmp_path / "e.json")]) == 0
    evaluation = json.loads((tmp_path / "e.json").read_text())
    assert evaluation["elbo"] == pytest.approx(summary["splits"]["test"]["elbo"], abs=0.5)
    assert main(["sample", str(out), "-n", "4", "-o", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (4, 64)


def test_the_data_sets_own_image_shape_is_used(tmp_path, capsys):
    images = (np.random.default_rng(0).random((40, 5, 7)) < 0.3).astype(np.float32)
    np.save(tmp_path / "x.npy", images)  # 35 values per row: not a square
    out = tmp_path / "run"
    code = main(["fit", "--data", str(tmp_path / "x.npy"), "--encoder", "conv", "--decoder", "conv",
                 "--epochs", "1", "--hidden", "8", "--eval-k", "5", "--quiet", "--no-report",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert json.loads((out / "model.json").read_text())["module"]["image_shape"] == [1, 5, 7]


@pytest.mark.parametrize("argv, message", [
    (["--image-shape", "7x9"], "image shape 1x7x9 has 63 values, but the data has 64"),
    (["--image-shape", "8x"], "is not an image shape like 28x28"),
    (["--image-shape", "0x8x8"], "is not an image shape like 28x28"),
    (["--data", "TINY"], "35 values per example are not a square"),
])
def test_bad_image_shapes_end_in_one_line_and_no_run(tmp_path, capsys, argv, message):
    np.save(tmp_path / "tiny.npy", (np.random.default_rng(0).random((20, 35)) < 0.5).astype(np.float32))
    argv = [str(tmp_path / "tiny.npy") if a == "TINY" else a for a in argv]
    out = tmp_path / "run"
    code = main(["fit", "--data", "digits", "--encoder", "conv", "--epochs", "1", "--out", str(out),
                 *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
