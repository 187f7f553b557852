"""Saving and loading classifiers and the text featurizer: safetensors + JSON, no pickles.

Every facade must come back with the same predictions (naive Bayes to 1e-12, the others
exactly), its class labels of the same type, and refuse tampered, truncated or foreign files
with a one-line :class:`CheckpointError` naming the file. Small synthetic data keep it fast.
"""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest
import torch

from elbokit import VAE, Mixture, checkpoint, classifiers
from elbokit.classifiers import (
    CLASSIFIER_KINDS,
    Classifier,
    DiscriminativeClassifier,
    GenerativeClassifier,
    LogisticRegression,
    MLPClassifier,
    MultinomialNaiveBayes,
)
from elbokit.data.text import BagOfWords, load_sms_spam
from elbokit.errors import CheckpointError, ConfigError
from elbokit.semisupervised import SemiSupervisedClassifier
from elbokit.training import Trainer, TrainingInterrupted

FACADES = {
    "naive-bayes": lambda: MultinomialNaiveBayes(alpha=0.5, class_prior=np.array([0.3, 0.7])),
    "mixture": lambda: GenerativeClassifier(Mixture(n_components=2, likelihood="multinomial")),
    "vae": lambda: GenerativeClassifier(VAE(latent_dim=2, hidden=(8,), likelihood="multinomial",
                                            epochs=2), score_options={"k": 8}),
    "logistic-regression": lambda: LogisticRegression(epochs=2),
    "mlp": lambda: MLPClassifier(hidden=(8,), epochs=2),
    "discriminative": lambda: DiscriminativeClassifier(hidden=(4, 3), transform="tf", epochs=2,
                                                       dtype="float64"),
}


@pytest.fixture(scope="module")
def counts():
    """Word counts [120, 20] of two classes that differ in their first five words, a row of
    zeros (an empty message) among the test rows, and string labels."""
    rng = np.random.default_rng(0)
    x = rng.poisson(1.0, size=(120, 20)).astype(np.float64)
    y = np.array(["ham", "spam"] * 60)
    x[y == "spam", :5] += rng.poisson(2.0, size=(60, 5))
    x_test = np.vstack([x[:9] + 1, np.zeros(20)])
    return x, y, x_test


def _plain(params: dict) -> dict:
    """Parameters compared across a JSON round trip (tuples/arrays come back as lists)."""
    def plain(v):
        if isinstance(v, tuple | list | np.ndarray):
            return [plain(i) for i in v]
        if hasattr(v, "get_params"):
            return (type(v), plain(v.get_params()))
        if isinstance(v, dict):
            return {k: plain(i) for k, i in v.items()}
        return v
    return plain(params)


@pytest.mark.parametrize("name", FACADES)
def test_every_facade_round_trips(tmp_path, counts, name):
    x, y, x_test = counts
    model = FACADES[name]().fit(x, y)
    model.save(tmp_path / "m")
    loaded = Classifier.load(tmp_path / "m")
    assert type(loaded) is type(model) and CLASSIFIER_KINDS[loaded.kind] is type(model)
    assert _plain(loaded.get_params()) == _plain(model.get_params())
    assert loaded.classes_.dtype == model.classes_.dtype and list(loaded.classes_) == ["ham", "spam"]
    assert loaded.n_features_in_ == 20
    expected, got = model.predict_proba(x_test), loaded.predict_proba(x_test)
    if name == "naive-bayes":
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    else:
        np.testing.assert_array_equal(got, expected)
    assert type(loaded).load(tmp_path / "m").kind == loaded.kind  # the facade's own load too
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


@pytest.mark.parametrize("labels", [np.array([3, 7, 11] * 30), np.array([0.5, 2.5] * 45),
                                    np.array([False, True] * 45), np.array(["a", "bb", "c"] * 30,
                                                                           dtype=object)])
def test_class_labels_keep_their_type(tmp_path, labels):
    x = np.random.default_rng(1).poisson(1.0, size=(90, 6)).astype(np.float64)
    model = MultinomialNaiveBayes().fit(x, labels)
    model.save(tmp_path / "m")
    loaded = Classifier.load(tmp_path / "m")
    assert loaded.classes_.dtype == model.classes_.dtype
    assert loaded.classes_.tolist() == model.classes_.tolist()
    assert [type(c) for c in loaded.classes_.tolist()] == [type(c) for c in model.classes_.tolist()]
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_empty_messages_still_get_the_prior_after_loading(tmp_path, counts):
    x, y, _ = counts
    model = GenerativeClassifier(Mixture(n_components=2, likelihood="multinomial")).fit(x, y)
    model.save(tmp_path / "m")
    loaded = Classifier.load(tmp_path / "m")
    assert loaded.empty_as_prior_ and len(loaded.densities_) == 2
    np.testing.assert_allclose(loaded.predict_proba(np.zeros(20))[0], [0.5, 0.5], atol=1e-12)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, counts):
    """A saved naive Bayes, logistic regression and mixture-per-class (read-only)."""
    x, y, _ = counts
    root = tmp_path_factory.mktemp("saved")
    for name in ("naive-bayes", "logistic-regression", "mixture"):
        FACADES[name]().fit(x, y).save(root / name)
    return root


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def _one_line_error(call, match: str) -> str:
    with pytest.raises(CheckpointError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_facade_refuses_another_kind(saved):
    message = _one_line_error(lambda: LogisticRegression.load(saved / "naive-bayes"),
                              "holds a 'naive-bayes' classifier")
    assert "not a LogisticRegression" in message
    _one_line_error(lambda: MLPClassifier.load(saved / "logistic-regression"),
                    "holds a 'logistic-regression'")
    # A parent class accepts its subclasses: a logistic regression is a discriminative classifier.
    assert type(DiscriminativeClassifier.load(saved / "logistic-regression")) is LogisticRegression


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_tampered_or_truncated_tensors_are_refused(tmp_path, saved, damage):
    path = _copy(saved / "naive-bayes", tmp_path / "nb") / "classifier.safetensors"
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-3] ^= 0x40
    path.write_bytes(bytes(data[: len(data) // 2] if damage == "truncate" else
                           b"" if damage == "empty" else data))
    message = _one_line_error(lambda: Classifier.load(path.parent), "checksum mismatch")
    assert str(path) in message


def test_a_tampered_density_is_refused(tmp_path, saved):
    path = _copy(saved / "mixture", tmp_path / "g") / "densities" / "1" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-8])
    assert str(path) in _one_line_error(lambda: Classifier.load(tmp_path / "g"), "checksum")


@pytest.mark.parametrize("edit, match", [
    (lambda r: r.update(kind="nope"), "unknown classifier kind 'nope'"),
    (lambda r: r.update(format="elbokit.model"), "holds an elbokit model, not an elbokit classifier"),
    (lambda r: r.update(format="pickle"), "not an elbokit classifier \\(format 'pickle'\\)"),
    (lambda r: r.update(version=99), r"newer elbokit \(version 99\); this one reads version 1"),
    (lambda r: r.pop("sha256"), "no checksum"),
    (lambda r: r.pop("classes"), "malformed classifier record"),
    (lambda r: r["params"].update(colour="red"), "malformed classifier record"),
    (lambda r: r.update(n_features_in=7), "does not fit together"),
    (lambda r: r.update(classes=["ham", "spam", "eggs"]), "does not fit together"),
])
def test_a_tampered_record_is_refused(tmp_path, saved, edit, match):
    directory = _copy(saved / "logistic-regression", tmp_path / "lr")
    record = json.loads((directory / "classifier.json").read_text())
    edit(record)
    (directory / "classifier.json").write_text(json.dumps(record))
    _one_line_error(lambda: Classifier.load(directory), match)


def test_unreadable_records_and_missing_directories(tmp_path, saved):
    directory = _copy(saved / "naive-bayes", tmp_path / "nb")
    text = (directory / "classifier.json").read_text()
    (directory / "classifier.json").write_text(text[: len(text) // 2])
    assert "classifier.json" in _one_line_error(lambda: Classifier.load(directory), "not a readable JSON")
    _one_line_error(lambda: Classifier.load(tmp_path / "none"), "not a directory")
    (tmp_path / "empty").mkdir()
    _one_line_error(lambda: Classifier.load(tmp_path / "empty"), "no such file")


def test_save_replaces_a_saved_classifier_only_and_atomically(tmp_path, counts, monkeypatch):
    x, y, x_test = counts
    first = MultinomialNaiveBayes(alpha=1.0).fit(x, y)
    second = MultinomialNaiveBayes(alpha=5.0).fit(x, y)
    first.save(tmp_path / "m")
    second.save(tmp_path / "m")  # replaces a saved classifier
    assert Classifier.load(tmp_path / "m").alpha == 5.0

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "atomic_write_many", broken)
    with pytest.raises(OSError):
        first.save(tmp_path / "m")
    monkeypatch.undo()
    assert Classifier.load(tmp_path / "m").alpha == 5.0  # the old one, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary left behind

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(ConfigError, match="not a saved classifier"):
        first.save(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_what_cannot_be_saved(tmp_path, counts):
    x, y, _ = counts
    with pytest.raises(ConfigError, match="not fitted"):
        MultinomialNaiveBayes().save(tmp_path / "a")
    factory = GenerativeClassifier(lambda: Mixture(n_components=2, likelihood="multinomial")).fit(x, y)
    with pytest.raises(ConfigError, match="parameter density"):
        factory.save(tmp_path / "b")

    class Tweaked(MultinomialNaiveBayes):  # no kind of its own: would load as its parent
        pass

    with pytest.raises(ConfigError, match="no kind of its own"):
        Tweaked().fit(x, y).save(tmp_path / "c")
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_a_new_facade_plugs_in_with_two_hooks(tmp_path, counts, monkeypatch):
    monkeypatch.setattr(classifiers, "CLASSIFIER_KINDS", dict(CLASSIFIER_KINDS))

    class Prior(Classifier):
        """p(y | x) = the training class frequencies."""

        kind = "test-prior"

        def __init__(self, smoothing: float = 1.0) -> None:
            self.smoothing = smoothing

        def _fit(self, X, codes):
            self.log_prior_ = torch.log(torch.bincount(torch.as_tensor(codes)) + self.smoothing)

        def _log_proba(self, X):
            return np.tile(self.log_prior_.log_softmax(-1).numpy(), (len(X), 1))

        def _fitted_tensors(self):
            return {"log_prior": self.log_prior_}

        def _restore(self, tensors, state, directory):
            self.log_prior_ = tensors["log_prior"]

    x, y, x_test = counts
    Prior(smoothing=2.0).fit(x, y).save(tmp_path / "p")
    loaded = Classifier.load(tmp_path / "p")
    assert type(loaded) is Prior and loaded.smoothing == 2.0
    np.testing.assert_array_equal(loaded.predict_proba(x_test), Prior(2.0).fit(x, y).predict_proba(x_test))


def test_loading_leaves_the_callers_random_numbers_alone(saved):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    Classifier.load(saved / "logistic-regression")
    assert torch.equal(torch.get_rng_state(), state)


def test_saved_featurizer_gives_identical_counts(tmp_path):
    texts = load_sms_spam().texts[:400]
    bag = BagOfWords(max_features=300).fit(texts[:300])
    bag.save(tmp_path / "bag.json")
    loaded = BagOfWords.load(tmp_path / "bag.json")
    assert loaded.vocabulary == bag.vocabulary and loaded.max_features == 300
    np.testing.assert_array_equal(loaded.transform(texts), bag.transform(texts))
    rebuilt = BagOfWords.from_vocabulary(bag.vocabulary)
    np.testing.assert_array_equal(rebuilt.transform(texts[300:]), bag.transform(texts[300:]))
    assert os.listdir(tmp_path) == ["bag.json"]
    record = json.loads((tmp_path / "bag.json").read_text())
    record["vocabulary"] = ["free", "free"]
    (tmp_path / "bag.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="bag.json: malformed featurizer"):
        BagOfWords.load(tmp_path / "bag.json")


# -- training checkpoints: fit(X, y, run_dir=..., resume=...) ---------------------------------

TRAINED = {
    # The validation score is best after epoch 2 (of 3), so the model kept predates the
    # interruption (in epoch 3) and must come back from the checkpoint.
    "mlp": lambda: MLPClassifier(hidden=(8,), epochs=3, lr=0.3, batch_size=32, val_fraction=0.25,
                                 seed=1),
    "semi-supervised": lambda: SemiSupervisedClassifier(latent_dim=2, hidden=(8,), epochs=2,
                                                        batch_size=32, labelled_batch=4),
}


def _labels(name: str, y: np.ndarray) -> np.ndarray:
    """The training labels: M2's with all but 20 marked unlabelled (-1)."""
    if name != "semi-supervised":
        return y
    y = y.astype(object)
    y[20:] = -1
    return y


def _interrupt(monkeypatch, how: str, epoch: int, step: int) -> None:
    """At ``epoch``'s batch ``step``: a Ctrl-C (what the trainer's SIGINT handler does: the
    state at the next step boundary is checkpointed) or a crash (a KeyboardInterrupt out of
    the step: only the last epoch's checkpoint is left)."""
    batches, take = Trainer._batches, Trainer._step

    def hooked(self, x, e, first=0):
        for i, batch in enumerate(batches(self, x, e, first), start=first):
            if (e, i) == (epoch, step) and how == "ctrl-c":
                self._interrupts.pending = True
            yield batch

    def crashing(self, e, i, *args):
        if (e, i) == (epoch, step) and how == "crash":
            raise KeyboardInterrupt
        return take(self, e, i, *args)

    monkeypatch.setattr(Trainer, "_batches", hooked)
    monkeypatch.setattr(Trainer, "_step", crashing)


@pytest.mark.parametrize("name, how", [("mlp", "ctrl-c"), ("semi-supervised", "crash")])
def test_an_interrupted_fit_resumes_bit_for_bit(tmp_path, counts, monkeypatch, name, how):
    """Interrupted in its last epoch, after its first step, then resumed: the weights, the
    history and the predictions are an uninterrupted fit's, bit for bit."""
    x, y, x_test = counts
    y = _labels(name, y)
    straight = TRAINED[name]().fit(x, y, run_dir=tmp_path / "straight")
    epochs = straight.epochs
    assert checkpoint.has_checkpoint(tmp_path / "straight")
    assert checkpoint.checkpoint_progress(tmp_path / "straight") == (epochs, 0)
    lines = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(1, epochs + 1))

    _interrupt(monkeypatch, how, epoch=epochs, step=1)
    with pytest.raises(KeyboardInterrupt) as caught:
        TRAINED[name]().fit(x, y, run_dir=tmp_path / "split")
    assert isinstance(caught.value, TrainingInterrupted) == (how == "ctrl-c")
    monkeypatch.undo()
    saved_at = (epochs - 1, 2 if how == "ctrl-c" else 0)  # (epochs done, steps into the next)
    assert checkpoint.checkpoint_progress(tmp_path / "split") == saved_at

    resumed = TRAINED[name]().fit(x, y, run_dir=tmp_path / "split", resume=True)
    assert resumed.history_ == straight.history_ and len(resumed.history_) == epochs
    a, b = straight.module_.state_dict(), resumed.module_.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    np.testing.assert_array_equal(resumed.predict_proba(x_test), straight.predict_proba(x_test))
    if name == "mlp":
        best = [json.loads(line)["val"]["elbo"] for line in lines]
        assert int(np.argmax(best)) == 1  # the model kept is epoch 2's, from the checkpoint
        assert resumed.stopped_early_ == straight.stopped_early_


@pytest.mark.parametrize("name", TRAINED)
def test_a_fit_into_a_run_with_a_checkpoint_is_refused_without_resume(tmp_path, counts, name):
    x, y, x_test = counts
    y = _labels(name, y)
    run = tmp_path / "run"
    model = TRAINED[name]().fit(x, y, run_dir=run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    proba, weights = model.predict_proba(x_test), copy.deepcopy(model.module_.state_dict())
    with pytest.raises(ConfigError, match="already holds a training checkpoint; pass resume=True") as info:
        model.fit(x[:60], y[:60], run_dir=run)
    assert "\n" not in str(info.value)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    np.testing.assert_array_equal(model.predict_proba(x_test), proba)  # still the fitted model
    assert all(torch.equal(weights[k], v) for k, v in model.module_.state_dict().items())

