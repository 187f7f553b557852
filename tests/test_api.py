"""The scikit-learn style facade: fit, scores, latent space, sampling, save/load."""

from __future__ import annotations

import re

import numpy as np
import pytest
import sklearn
import torch

from elbokit import VAE, LatentModel, data
from elbokit.errors import CheckpointError, ConfigError, DataError


@pytest.fixture(scope="module")
def fitted():
    x = data.load("digits").x
    return VAE(latent_dim=3, hidden=(32,), epochs=3, seed=0).fit(x[:600]), x[600:700]


def test_shapes_of_every_method(fitted):
    vae, x = fitted
    assert vae.score_samples(x, k=20).shape == (100,)
    assert vae.transform(x).shape == (100, 3)
    assert vae.reconstruct(x).shape == (100, 64)
    assert 0 <= vae.reconstruct(x).min() and vae.reconstruct(x).max() <= 1  # probabilities
    samples = vae.sample(5, seed=1)
    assert samples.shape == (5, 64) and set(np.unique(samples)) <= {0.0, 1.0}
    assert np.array_equal(samples, vae.sample(5, seed=1))
    assert isinstance(vae.score(x, k=20), float)


def test_scores_are_seeded_and_leave_the_global_rng_alone(fitted):
    vae, x = fitted
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = vae.evaluate(x, k=50, iwae_k=5)
    assert torch.equal(state, torch.get_rng_state())
    assert a == vae.evaluate(x, k=50, iwae_k=5)
    assert a != vae.evaluate(x, k=50, iwae_k=5, seed=1)
    # log p(x) >= IWAE_5 >= ELBO (up to MC error; the margins here are several nats apart)
    assert a["log_likelihood"]["estimate"] > a["iwae"]["value"] - 0.05 > a["elbo"] - 0.1


def test_save_load_round_trip_gives_identical_scores(fitted, tmp_path):
    vae, x = fitted
    vae.save(tmp_path / "m")
    loaded = VAE.load(tmp_path / "m")
    assert np.array_equal(loaded.score_samples(x, k=30), vae.score_samples(x, k=30))
    assert np.array_equal(loaded.transform(x), vae.transform(x))
    assert loaded.get_params() == vae.get_params()


def test_load_refuses_tampered_or_foreign_files(fitted, tmp_path):
    vae, _ = fitted
    vae.save(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="checksum"):
        VAE.load(tmp_path / "m")
    with pytest.raises(CheckpointError, match="not a directory"):
        VAE.load(tmp_path / "nothing")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model.json").write_text('{"format": "pickle"}')
    with pytest.raises(CheckpointError, match="not an elbokit model"):
        VAE.load(tmp_path / "other")


def test_input_checks(fitted):
    vae, x = fitted
    with pytest.raises(DataError, match="expects 64"):
        vae.transform(x[:, :10])
    bad = x.copy()
    bad[3, 0] = np.nan
    with pytest.raises(DataError, match="row 3 "):
        vae.score_samples(bad)
    with pytest.raises(DataError, match="--binarize"):
        vae.transform(x * 0.5)
    with pytest.raises(ConfigError, match="not fitted"):
        VAE().transform(x)
    with pytest.raises(ConfigError, match="dtype"):
        VAE(dtype="float16").fit(x)


def test_gaussian_likelihood_on_grey_digits_and_float64():
    x = data.load("digits-gray").x
    vae = VAE(latent_dim=2, hidden=(16,), epochs=2, dtype="float64", seed=0).fit(x[:300])
    assert vae.module_.observation.name == "gaussian"
    assert next(vae.module_.parameters()).dtype == torch.float64
    assert np.isfinite(vae.score_samples(x[300:320], k=10)).all()


def test_categorical_and_multinomial_vaes_train_and_sample():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, size=(200, 6)).astype(float)
    vae = VAE(latent_dim=2, hidden=(16,), epochs=2, likelihood="categorical", seed=0).fit(codes)
    assert vae.module_.observation.n_categories == 4
    drawn = vae.sample(20, seed=0)
    assert drawn.shape == (20, 6) and set(np.unique(drawn)) <= {0.0, 1.0, 2.0, 3.0}
    assert np.isfinite(vae.score_samples(codes[:10], k=10)).all()
    with pytest.raises(DataError, match="below 4"):
        vae.transform(codes + 1)

    counts = rng.poisson(2.0, size=(200, 8)).astype(float)
    counts[:, 0] += 1  # no empty documents
    vae = VAE(latent_dim=2, hidden=(16,), epochs=2, likelihood="multinomial", seed=0).fit(counts)
    length = vae.module_.observation.sample_length
    assert length == int(np.median(counts.sum(1)))
    assert np.all(vae.sample(5, seed=0).sum(1) == length)
    assert (vae.score_samples(counts[:10], k=10) < 0).all()


# TrainConfig fields without a command-line flag, and why.
NO_FLAG = {"log_every": "a logging cadence of the progress bar, not a training choice"}
# Facade parameters that default otherwise than their TrainConfig field, and why.
OWN_DEFAULTS = {
    "lr": "None: the model's own learning rate (VAE.learning_rate, Mixture: 1e-2)",
    "Mixture.epochs": "the mixture's gradient fit has its own defaults",
    "Mixture.batch_size": "the mixture's gradient fit has its own defaults",
}


def test_the_training_options_are_declared_once_in_trainconfig():
    """TrainConfig declares the training options, each with its command-line flag (help,
    metavar, choices, argument type); ``elbokit fit`` and ``elbokit sweep`` build their
    training flags from it (fit.FLAG_OVERRIDES: the few that differ); the facades take each
    as a parameter of the same name and default (scikit-learn needs them spelled in
    __init__'s signature: this test keeps the spellings one), train_config() passes them
    through, and a run's config.json (saved_params) records every one."""
    import inspect
    from dataclasses import fields

    from elbokit import LatentModel, Mixture
    from elbokit.cli import build_parser, fit
    from elbokit.cli.common import PARSERS
    from elbokit.training import TrainConfig

    cli_defaults = vars(build_parser().parse_args(["fit"]))
    sweep_defaults = vars(build_parser().parse_args(["sweep", "--out", "x"]))
    saved = VAE().saved_params()
    for field in fields(TrainConfig):
        if field.name in NO_FLAG:
            assert "cli" not in field.metadata, field.name
            continue
        declared = field.metadata["cli"]
        assert declared["help"], field.name
        assert declared["parse"] is None or declared["parse"] in PARSERS, field.name
        for cls in (VAE, LatentModel, Mixture):
            parameter = inspect.signature(cls).parameters.get(field.name)
            if parameter is None:
                assert cls is Mixture, (cls.__name__, field.name)  # no beta, estimator, ...
            elif field.name not in OWN_DEFAULTS and f"{cls.__name__}.{field.name}" not in OWN_DEFAULTS:
                assert parameter.default == field.default, (cls.__name__, field.name)
        assert field.name in cli_defaults, field.name
        assert field.name in sweep_defaults or fit.FLAG_OVERRIDES[field.name] == {"sweep": False}
        expected = fit.FLAG_OVERRIDES.get(field.name, {}).get("default", field.default)
        assert cli_defaults[field.name] == expected, field.name
        assert field.name in saved, field.name
    assert inspect.signature(VAE).parameters["lr"].default is None
    flags = fit.training_flags()
    assert list(flags) == [f.name for f in fields(TrainConfig) if f.name not in NO_FLAG]
    assert set(fit.FLAG_OVERRIDES) <= set(flags)
    options = {"batch_size": 7, "kl_warmup": 3, "ema": 0.5, "lr_patience": 9, "seed": 4}
    assert all(getattr(VAE(**options).train_config(), k) == v for k, v in options.items())


# Declared model options without a flag of their own, and why.
NO_MODEL_FLAG = {
    "VAEOptions.n_categories": "found in the training data (its largest code + 1)",
    "VAEOptions.column_types": "--column-types is a data option: the file is read with it",
    "VAEOptions.missing": "--missing is a data option: the file is read with it",
    "VAEOptions.table_schema": "read from the data (a table's typed columns)",
    "MixtureOptions.likelihood": "--likelihood serves both models (VAEOptions.likelihood, the "
                                 "same default)",
    "MixtureOptions.gaussian_scale": "--gaussian-scale serves both models (VAEOptions; its "
                                     "default dim gives a mixture this default, decoder)",
    "MixtureOptions.init": "EM's start: a library choice, not a command-line one",
    "MixtureOptions.tol": "EM's convergence tolerance: a library choice",
    "MixtureOptions.smoothing": "EM's pseudo-count: a library choice",
}


def test_the_model_options_are_declared_once_in_the_options_dataclasses():
    """VAEOptions and MixtureOptions declare the facades' model options, each with its
    command-line flag, as TrainConfig declares the training options: every field is a
    parameter of its facade with the same default, every field but those of NO_MODEL_FLAG
    has a flag in ``elbokit fit`` and ``elbokit sweep`` with that default, the "model" group
    has no other flag than --model and --model-options, and the command line's defaults
    build facades with the declared defaults."""
    import inspect
    from dataclasses import fields

    from elbokit import Mixture
    from elbokit.api import OPTION_PARAMETERS, MixtureOptions, VAEOptions
    from elbokit.cli import build_parser, fit
    from elbokit.cli.common import PARSERS

    parser = build_parser()
    cli_defaults = vars(parser.parse_args(["fit"]))
    sweep_defaults = vars(parser.parse_args(["sweep", "--out", "x"]))
    flagged = set()
    for facade, options in ((VAE, VAEOptions), (Mixture, MixtureOptions)):
        parameters = inspect.signature(facade).parameters
        for field in fields(options):
            assert parameters[field.name].default == field.default, (facade.__name__, field.name)
            if f"{options.__name__}.{field.name}" in NO_MODEL_FLAG:
                assert "cli" not in field.metadata, field.name
                continue
            declared = field.metadata["cli"]
            assert declared["help"], field.name
            assert declared["parse"] is None or declared["parse"] in PARSERS, field.name
            name = declared["flag"] or field.name
            assert OPTION_PARAMETERS.get(name, name) == field.name
            assert cli_defaults[name] == sweep_defaults[name] == field.default, field.name
            flagged.add(name)
    assert set(NO_MODEL_FLAG) <= {f"{o.__name__}.{f.name}" for o in (VAEOptions, MixtureOptions)
                                  for f in fields(o)}
    assert list(fit.model_flags()) == [  # the order of --help: the mixture's, then the VAE's
        f.metadata["cli"]["flag"] or f.name for o in (MixtureOptions, VAEOptions)
        for f in fields(o) if "cli" in f.metadata]
    for command in ("fit", "sweep"):
        sub = next(a for a in parser._actions if a.dest == "command").choices[command]
        group = next(g for g in sub._action_groups if g.title == "model")
        assert {a.dest for a in group._group_actions} == flagged | {"model", "model_options"}
    vae = fit._estimator(parser.parse_args(["fit"]))
    mixture = fit._estimator(parser.parse_args(["fit", "--model", "mixture"]))
    for model, options in ((vae, VAEOptions), (mixture, MixtureOptions)):
        params = model.get_params()
        assert all(params[f.name] == f.default for f in fields(options)), options.__name__


# -- tables: DataFrames in and out ---------------------------------------------------------------

def planted_frame(n: int = 200, seed: int = 0, missing: float = 0.2):
    pd = pytest.importorskip("pandas", reason="pandas is optional (pip install 'elbokit[tables]')")
    from elbokit.data.planted import planted_table

    cells, _, _ = planted_table(n, seed=seed, missing=missing)
    frame = pd.DataFrame(cells[1:], columns=cells[0]).replace("", None)
    for name in ("height", "weight", "score", "income"):
        frame[name] = pd.to_numeric(frame[name])
    frame["visits"] = pd.to_numeric(frame["visits"]).astype("Int64")  # whole numbers with gaps
    return frame


def test_a_dataframe_is_fitted_imputed_and_scored_as_a_table(tmp_path):
    frame = planted_frame()
    vae = VAE(latent_dim=2, hidden=(16,), epochs=3, seed=0).fit(frame)
    assert [c.kind for c in vae.schema_.columns] == \
        ["real", "real", "real", "positive", "negbin", "binary", "categorical"]
    filled = vae.impute(frame)
    assert list(filled.columns) == list(frame.columns) and len(filled) == len(frame)
    assert not filled.isna().any().any()
    seen = frame.notna()
    assert (filled[seen] == frame[seen]).sum().sum() == seen.sum().sum()  # observed cells kept
    assert set(filled["region"]) <= {"east", "north", "south", "west"}
    assert filled["height"].dtype.kind == "f" and set(filled["member"]) <= {"no", "yes"}
    draws = vae.impute(frame, draws=2)
    assert list(draws.columns) == ["draw", *frame.columns] and len(draws) == 2 * len(frame)
    scores = vae.score_rows(frame, k=20)
    assert scores["surprise"].shape == frame.shape and np.isnan(scores["surprise"][~seen.values]).all()
    # Saved and loaded, the model reads DataFrames by the same columns and levels.
    vae.save(tmp_path / "m")
    again = VAE.load(tmp_path / "m")
    assert again.schema_ == vae.schema_
    np.testing.assert_allclose(again.score_samples(frame, k=20), vae.score_samples(frame, k=20))


def test_an_array_with_nan_is_refused_unless_missing_is_given():
    x = np.random.default_rng(0).normal(size=(60, 3))
    x[2, 1] = np.nan
    with pytest.raises(DataError, match="--missing"):
        VAE(latent_dim=2, hidden=(8,), epochs=1).fit(x)
    vae = VAE(latent_dim=2, hidden=(8,), epochs=1, missing=True).fit(x)
    filled = vae.impute(x)
    assert np.isfinite(filled).all() and filled[0, 0] == x[0, 0]
    with pytest.raises(ConfigError, match="table likelihood takes|table of typed columns takes"):
        VAE(latent_dim=2, hidden=(8,), epochs=1, missing=True, likelihood="gaussian").fit(x)


class DescribesItselfOddly(torch.nn.Module):
    """A user's module whose own description is markup and a URL."""

    def describe(self) -> str:
        return "<img src=x onerror=alert(1)> see http://example.org"


def test_the_html_repr_shows_parameters_unfitted_and_the_training_log_fitted(fitted, tmp_path,
                                                                            linear_gaussian):
    # Unfitted: not fitted, the text repr, every parameter with those changed in bold; escaped.
    odd = VAE(latent_dim=3, likelihood="<script>alert('x')</script>")
    html = odd._repr_html_()
    assert "<strong>VAE</strong>, not fitted" in html and "<script" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert re.findall(r"<strong><code>(\w+)</code></strong>", html) == ["latent_dim", "likelihood"]
    assert html.count('<th scope="row">') == len(odd.get_params(deep=False))
    assert "<thead>" not in html  # no training log before a fit
    assert odd._repr_mimebundle_() == {"text/plain": repr(odd), "text/html": html}
    with sklearn.config_context(display="text"):  # scikit-learn's switch to text reprs
        assert odd._repr_mimebundle_() == {"text/plain": repr(odd)}
        assert not hasattr(odd, "_repr_html_")

    # Fitted: what it is, its width, the training log of history_; nothing recomputed.
    vae, _ = fitted
    html = vae._repr_html_()
    assert "fitted: VAE (latent gaussian:3, bernoulli likelihood), on 64 features" in html
    assert re.findall(r"<strong><code>(\w+)</code></strong>", html) == ["epochs", "hidden",
                                                                         "latent_dim"]
    best = max(vae.history_, key=lambda r: r["val"]["elbo"])
    assert (f"{len(vae.history_)} epochs logged; best validation ELBO {best['val']['elbo']:.3f} "
            f"nats at epoch {best['epoch']}") in html
    rows = re.findall(r"<tr><td class=\"num\">(\d+)</td>(.*?)</tr>", html)
    assert [int(epoch) for epoch, _ in rows] == [r["epoch"] for r in vae.history_]
    last = vae.history_[-1]
    cells = re.findall(r"<td class=\"num\">([^<]+)</td>", rows[-1][1])
    assert cells == [f"{last[part][term]:.3f}" for part in ("train", "val")
                     for term in ("elbo", "reconstruction", "kl")]
    vae.save(tmp_path / "m")
    assert "No training log here" in VAE.load(tmp_path / "m")._repr_html_()

    # A user's module: its description escaped; described by its protocol, which draws from
    # p(z) without touching the caller's torch RNG.
    model = LatentModel(DescribesItselfOddly)
    model.module_ = DescribesItselfOddly()
    html = model._repr_html_()
    assert "&lt;img src=x onerror=alert(1)&gt; see http&#58;//example.org" in html
    assert "<img" not in html and "http://" not in html
    model = LatentModel(linear_gaussian)
    model.module_ = linear_gaussian()
    torch.manual_seed(5)
    state = torch.get_rng_state()
    assert "fitted: LinearGaussian (prior MultivariateNormal" in model._repr_html_()
    assert torch.equal(state, torch.get_rng_state())
