"""``elbokit classify`` end to end: SMS spam, digits, user files and folders, bad input."""

from __future__ import annotations

import json
import os
from email.message import EmailMessage

import matplotlib.image
import numpy as np
import pytest

from elbokit import classification
from elbokit.classifiers import Classifier
from elbokit.cli import main
from elbokit.data import load
from elbokit.data.text import BagOfWords, load_sms_spam
from elbokit.runs import write_config


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_sms_spam_generative_methods_with_json(capsys, tmp_path):
    code, out, err = run(capsys, "classify", "--method", "generative", "--threshold", "0.7",
                         "--json", tmp_path / "s.json")
    assert code == 0, err
    assert "naive-bayes" in out and "positive class: spam" in out
    scores = json.loads((tmp_path / "s.json").read_text())
    assert set(scores) == {"naive-bayes", "mixture-per-class"}
    for report in scores.values():
        assert {"accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "threshold"} <= set(report)
        assert report["threshold"] == 0.7 and report["f1"] > 0.9  # measured 0.94-0.95


def test_digits_report_accuracy_for_ten_classes(capsys):
    code, out, err = run(capsys, "classify", "--data", "digits", "--method", "generative")
    assert code == 0, err
    assert "accuracy" in out and "macro F1" in out


def _mail(folder, name, subject, body):
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = subject, "a@example.org", "b@example.org"
    message.set_content(body)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(bytes(message))


def test_own_mail_folders_and_a_held_out_file(capsys, tmp_path):
    for i in range(6):
        _mail(tmp_path / "train" / "ham", f"h{i}.eml", f"lunch {i}", "see you at noon, bring notes")
        _mail(tmp_path / "train" / "spam", f"s{i}.eml", f"WIN {i}", "free prize, click now to claim cash")
    _mail(tmp_path / "test" / "ham", "h.eml", "notes", "see you at noon")
    _mail(tmp_path / "test" / "spam", "s.eml", "prize", "claim your free cash prize now")
    code, out, err = run(capsys, "classify", "--data", tmp_path / "train", "--test",
                         tmp_path / "test", "--method", "generative", "--json", "-")
    assert code == 0, err
    scores = json.loads(out)  # stdout holds the JSON alone
    assert scores["naive-bayes"]["accuracy"] == 1.0


@pytest.mark.parametrize("files, argv, message", [
    ({"t.tsv": "ham\thi there\nspam\tfree money\n", "u.tsv": "eggs\thello\n"},
     ["--data", "@t.tsv", "--test", "@u.tsv"], "test labels ['eggs'] never occur"),
    ({"c.csv": "message,kind\nhi,ham\n"}, ["--data", "@c.csv"], "must name a 'label' and a 'text'"),
    ({"e.tsv": "ham\t\nspam\tfree\n"}, ["--data", "@e.tsv"], "empty text on line 1"),
    ({}, ["--threshold", "1.5"], "fraction"),
    ({}, ["--data", "nothing.tsv"], "no such file"),
])
def test_bad_input_is_one_line(capsys, tmp_path, files, argv, message):
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    argv = [tmp_path / a[1:] if a.startswith("@") else a for a in argv]  # @name: a file here
    code, out, err = run(capsys, "classify", *argv)
    assert code == 2 and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


# -- classify --out and predict ---------------------------------------------------------------

SPAM = "WINNER!! Claim your free prize now, call 09061701461"
HAM = "are we still meeting for lunch tomorrow?"


def _one_line_error(code: int, err: str, message: str) -> None:
    assert code == 2 and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def sms_run(tmp_path_factory):
    """A saved run of the generative methods on 400 SMS (the first 300 ham, 100 spam; a
    300-word vocabulary): small enough to fit in about two seconds."""
    root = tmp_path_factory.mktemp("sms")
    sms = load_sms_spam()
    rows = np.r_[np.flatnonzero(sms.labels == "ham")[:300], np.flatnonzero(sms.labels == "spam")[:100]]
    (root / "sms.tsv").write_text("".join(f"{sms.labels[i]}\t{sms.texts[i]}\n" for i in rows))
    assert main(["classify", "--data", str(root / "sms.tsv"), "--vocabulary", "300", "--method",
                 "generative", "--threshold", "0.7", "--out", str(root / "run")]) == 0
    return root / "run"


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("digits") / "run"
    assert main(["classify", "--data", "digits", "--method", "generative", "--out", str(run_dir)]) == 0
    return run_dir


def test_classify_out_saves_a_self_describing_run(sms_run):
    config = json.loads((sms_run / "config.json").read_text())
    assert config["kind"] == "classifier" and config["positive"] == "spam"
    assert config["threshold"] == 0.7 and config["split"] == {"seed": 0, "test_fraction": 0.2}
    assert config["features"]["vocabulary_size"] == 300 and config["data"]["type"] == "text"
    assert [m["name"] for m in config["methods"]] == ["naive-bayes", "mixture-per-class"]
    assert config["metrics"]["naive-bayes"]["threshold"] == 0.7
    metrics = json.loads((sms_run / "metrics.json").read_text())
    assert set(metrics["naive-bayes"]["by_threshold"]) == {"0.5", "0.7", "0.9"}
    assert len(BagOfWords.load(sms_run / "featurizer.json").vocabulary) == 300
    for method in config["methods"]:
        assert Classifier.load(sms_run / method["path"]).kind == method["kind"]
    for figure in ("pr_curve.png", "calibration.png"):
        pixels = matplotlib.image.imread(sms_run / figure)
        assert pixels.shape[:2] == (450, 600) and pixels[..., :3].var() > 1e-3
    assert not [p for p in sms_run.parent.iterdir() if p.name.startswith(".")]  # no temporaries


def test_predict_texts_as_the_saved_models_do(capsys, sms_run, tmp_path):
    (tmp_path / "texts.txt").write_text(f"{SPAM}\n\n{HAM}\n")
    code, out, err = run(capsys, "predict", sms_run, SPAM, "--file", tmp_path / "texts.txt",
                         "--json", tmp_path / "p.json")
    assert code == 0, err
    assert "p(spam|x)" in out and "decision (p > 0.7)" in out and "mixture-per-class" in out
    predictions = json.loads((tmp_path / "p.json").read_text())["predictions"]
    assert [p["input"] for p in predictions] == [SPAM, SPAM, HAM]
    nb = [p["methods"]["naive-bayes"] for p in predictions]
    assert nb[0]["p_positive"] > 0.5 and nb[0]["decision"] == "spam"
    assert nb[2]["p_positive"] < 0.5 and nb[2]["decision"] == "ham"
    x = BagOfWords.load(sms_run / "featurizer.json").transform([SPAM, SPAM, HAM])
    for method in ("naive-bayes", "mixture-per-class"):
        expected = Classifier.load(sms_run / "methods" / method).predict_proba(x)
        got = [[p["methods"][method]["proba"][c] for c in ("ham", "spam")] for p in predictions]
        np.testing.assert_array_equal(got, expected)  # exactly what the saved model says


def test_predict_notes_texts_without_known_words(capsys, sms_run):
    code, out, err = run(capsys, "predict", sms_run, "zzzz qqqq", "--method", "naive-bayes",
                         "--json", "-")
    assert code == 0, err
    result = json.loads(out)
    prior = np.exp(Classifier.load(sms_run / "methods" / "naive-bayes").class_log_prior_)
    prediction = result["predictions"][0]
    assert prediction["known_words"] == 0
    assert prediction["methods"]["naive-bayes"]["p_positive"] == pytest.approx(prior[1], abs=1e-12)
    code, out, err = run(capsys, "predict", sms_run, "zzzz qqqq")
    assert "note: input 0 has no word from the run's vocabulary" in out and "class prior" in out


def test_predict_numeric_rows(capsys, digits_run, tmp_path):
    x = load("digits").x[:6]
    np.save(tmp_path / "rows.npy", x)
    np.savetxt(tmp_path / "rows.csv", x, delimiter=",")
    model = Classifier.load(digits_run / "methods" / "mixture-per-class")
    for rows in ("rows.npy", "rows.csv"):
        code, out, err = run(capsys, "predict", digits_run, "--file", tmp_path / rows, "--json", "-")
        assert code == 0, err
        methods = [p["methods"]["mixture-per-class"] for p in json.loads(out)["predictions"]]
        assert [m["predicted"] for m in methods] == model.predict(x).tolist()
        np.testing.assert_array_equal([[m["proba"][str(c)] for c in range(10)] for m in methods],
                                      model.predict_proba(x))
    code, out, err = run(capsys, "predict", digits_run, "--file", tmp_path / "rows.npy")
    assert code == 0 and "p(predicted|x)" in out and "row 5" in out


@pytest.mark.parametrize("make, argv, message", [
    ("fit-run", ["hello"], "not a 'classifier' run"),
    ("plain-dir", ["hello"], "not an elbokit run"),
    ("sms", ["hello", "--method", "svm"], "--method svm: not in this run"),
    ("sms", [], "no texts to classify"),
    ("sms", ["--file", "@missing.txt"], "missing.txt: no such file"),
    ("sms", ["--file", "@latin1.txt"], "not UTF-8 text"),
    ("digits", ["hello"], "not texts"),
    ("digits", ["--file", "@narrow.csv"], "5 features per example, but the model expects 64"),
])
def test_predict_bad_input_is_one_line(capsys, tmp_path, sms_run, digits_run, make, argv, message):
    runs_by_name = {"sms": sms_run, "digits": digits_run, "plain-dir": tmp_path,
                    "fit-run": tmp_path / "fit"}
    (tmp_path / "fit").mkdir()
    write_config(tmp_path / "fit", {"kind": "vae", "data": {}})
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    np.savetxt(tmp_path / "narrow.csv", np.ones((2, 5)), delimiter=",")
    argv = [tmp_path / a[1:] if a.startswith("@") else a for a in argv]
    code, out, err = run(capsys, "predict", runs_by_name[make], *argv, "--json", tmp_path / "p.json")
    _one_line_error(code, err, message)
    assert not (tmp_path / "p.json").exists()


@pytest.fixture
def tiny_tsv(tmp_path):
    lines = [f"ham\tsee you at lunch {i} ok" for i in range(20)]
    lines += [f"spam\tfree prize call now {i} win" for i in range(10)]
    (tmp_path / "tiny.tsv").write_text("\n".join(lines) + "\n")
    return tmp_path / "tiny.tsv"


def test_classify_out_leaves_nothing_behind_on_failure(capsys, tmp_path, tiny_tsv, monkeypatch):
    out = tmp_path / "runs" / "r"
    code, _, err = run(capsys, "classify", "--data", tmp_path / "none.tsv", "--out", out)
    _one_line_error(code, err, "no such file")
    assert not (tmp_path / "runs").exists()

    code, _, err = run(capsys, "classify", "--data", tiny_tsv, "--method", "generative", "--out", out)
    assert code == 0, err
    config = (out / "config.json").read_text()
    code, _, err = run(capsys, "classify", "--data", tiny_tsv, "--out", out)
    _one_line_error(code, err, "already exists; use --overwrite")

    def full_disk(*args, path=None, **kwargs):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(classification.plots, "calibration_plot", full_disk)
    code, _, err = run(capsys, "classify", "--data", tiny_tsv, "--method", "generative",
                       "--threshold", "0.8", "--out", out, "--overwrite")
    _one_line_error(code, err, "No space left on device")
    assert (out / "config.json").read_text() == config  # the old run, whole
    assert sorted(p.name for p in out.parent.iterdir()) == ["r"]  # no temporary directories
    monkeypatch.undo()

    code, _, err = run(capsys, "classify", "--data", tiny_tsv, "--method", "generative",
                       "--threshold", "0.8", "--out", out, "--overwrite")
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["threshold"] == 0.8

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    code, _, err = run(capsys, "classify", "--data", tiny_tsv, "--out", tmp_path / "mine", "--overwrite")
    _one_line_error(code, err, "not an elbokit run directory")
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]
    code, _, err = run(capsys, "classify", "--data", tiny_tsv, "--overwrite")
    _one_line_error(code, err, "--overwrite needs --out")


def test_semi_supervised_with_fifty_labels_and_one_class(capsys, tmp_path):
    code, out, err = run(capsys, "classify", "--method", "semi-supervised", "--labels", 50,
                         "--epochs", 2, "--json", tmp_path / "m2.json")
    assert code == 0, err
    assert "4459 training examples, 50 of them labelled" in out
    report = json.loads((tmp_path / "m2.json").read_text())["m2"]
    assert {"accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "threshold"} <= set(report)
    code, out, err = run(capsys, "classify", "--method", "one-class", "--json", tmp_path / "o.json")
    assert code == 0, err
    report = json.loads((tmp_path / "o.json").read_text())["one-class"]
    assert report["threshold_rule"] == "f1" and report["score"] == "-log p(x)"
    assert report["roc_auc"] > 0.85  # measured 0.89 (ham-only mixture, Laplace smoothing)


@pytest.mark.parametrize("argv, message", [
    (["--labels", "1"], "between 2"),
    (["--labels", "100000"], "between 2"),
    (["--data", "digits", "--method", "one-class"], "two classes"),
    (["--model", "gmm"], "invalid choice"),
])
def test_classify_bad_method_options(capsys, tmp_path, argv, message):
    argv = [str(tmp_path / "run") if a == "OUT" else a for a in argv]
    code, out, err = run(capsys, "classify", *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_third_label_makes_a_three_class_problem(capsys, tmp_path):
    """Documented behaviour: labels are whatever the file holds; a third one (here a typo,
    'spma') is a third class, reported by accuracy and macro F1, and named in the table's
    note, never silently merged."""
    rows = [f"ham\tsee you at {i} today" for i in range(30)] + \
        [f"spam\twin a free prize {i} now" for i in range(30)] + ["spma\tfree prize call"] * 5
    (tmp_path / "three.tsv").write_text("\n".join(rows) + "\n")
    code, out, err = run(capsys, "classify", "--data", tmp_path / "three.tsv", "--method",
                         "generative", "--json", tmp_path / "s.json")
    assert code == 0, err
    assert "macro F1" in out and "3 classes: ham, spam, spma" in out
    assert set(json.loads((tmp_path / "s.json").read_text())["naive-bayes"]) >= {"accuracy", "macro_f1"}


def test_digits_semi_supervised_with_a_hundred_labels(capsys, tmp_path):
    code, out, err = run(capsys, "classify", "--data", "digits", "--method", "semi-supervised",
                         "--labels", 100, "--epochs", 2, "--out", tmp_path / "run")
    assert code == 0, err
    assert "10 classes" in out and "100 of them labelled" in out
    np.save(tmp_path / "rows.npy", load("digits").x[:3])
    code, out, err = run(capsys, "predict", tmp_path / "run", "--file", tmp_path / "rows.npy")
    assert code == 0, err
    assert "m2" in out and len(out.strip().splitlines()) >= 5  # header, rule, 3 rows


def test_the_one_class_detector_is_saved_and_predicts(capsys, tmp_path):
    code, _, err = run(capsys, "classify", "--method", "one-class", "--out", tmp_path / "run")
    assert code == 0, err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["methods"] == [{"name": "one-class", "path": "methods/one-class", "kind": "one-class"}]
    long_spam = " ".join(["WINNER claim your free prize cash award call now txt STOP"] * 4)
    code, out, err = run(capsys, "predict", tmp_path / "run", long_spam, HAM, "zzqx", "--json", "-")
    assert code == 0, err
    rows = [r["methods"]["one-class"] for r in json.loads(out)["predictions"]]
    assert rows[0]["decision"] == "spam" and rows[1]["decision"] == "ham"
    assert rows[2]["novelty_score"] == 0.0 and rows[2]["decision"] == "ham"  # the empty document
    assert rows[0]["threshold"] == config["metrics"]["one-class"]["threshold"]


def test_a_one_example_test_split_reports_auc_as_not_defined(capsys, tmp_path):
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 5)
    x = (rng.random((10, 4)) < np.where(y[:, None] == 1, 0.8, 0.2)).astype(np.float64)
    np.savez(tmp_path / "tiny.npz", x=x, y=y)
    code, out, err = run(capsys, "classify", "--data", tmp_path / "tiny.npz", "--test-fraction",
                         "0.1", "--method", "discriminative", "--json", "-", "--out", tmp_path / "run")
    assert code == 0, err

    def strict(text: str):  # NaN and Infinity are not JSON
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))

    scores = strict(out)
    for method in ("logistic-regression", "mlp"):
        assert scores[method]["n_examples"] == 1
        assert scores[method]["roc_auc"] is None and scores[method]["pr_auc"] is None
    warning = [line for line in err.splitlines() if "one class only" in line]
    assert len(warning) == 1 and warning[0].startswith("elbokit: warning: the 1 test example holds")
    assert "ROC AUC and PR AUC are not defined (n/a)" in warning[0]
    table = [line for line in err.splitlines() if line.startswith("mlp")]
    assert table and all(line.split()[-2:] == ["n/a", "n/a"] for line in table)
    assert "nan" not in err.lower().replace("nans", "")
    strict((tmp_path / "run" / "metrics.json").read_text())
    strict((tmp_path / "run" / "config.json").read_text())


def test_undefined_scores_say_why():
    def report(predicted: int) -> dict:
        return {"n_predicted_positive": predicted}

    lines = classification.undefined_scores(np.array(["ham"]), "spam",
                                          [("naive-bayes", 0.5, report(0)), ("mlp", 0.5, report(1)),
                                           ("one-class", None, report(0))])
    assert len(lines) == 3
    assert lines[0].startswith("the 1 test example holds one class only (ham)")
    assert lines[1].startswith("no spam among the test examples: recall (and F1 where nothing was "
                               "predicted spam either) is 0/0, reported as 1")
    assert lines[2].startswith("nothing predicted spam by naive-bayes at 0.5, one-class: precision "
                               "is 0/0, reported as 1 (sklearn's zero_division")
    both = classification.undefined_scores(np.array(["ham", "spam"]), "spam", [("mlp", 0.9, report(1))])
    assert both == []
