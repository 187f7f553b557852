"""elbokit.runs: run directories (made, refused, overwritten only when asked), their
config.json as later commands read and check it, the resume rules against a checkpoint and
an edited config, and the data and split a run's record describes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from commands import FAST, files, run

from elbokit import runs
from elbokit.errors import CheckpointError, ConfigError, DataError


def test_existing_run_is_not_overwritten_by_accident(capsys, tmp_path, tiny):
    out_dir = tmp_path / "run"
    assert run(capsys, "fit", "--data", tiny, "--out", out_dir, *FAST)[0] == 0
    before = (out_dir / "model.safetensors").read_bytes()
    code, _, err = run(capsys, "fit", "--data", tiny, "--out", out_dir, *FAST)
    assert code == 2 and "already exists" in err
    assert (out_dir / "model.safetensors").read_bytes() == before
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("keep me")
    code, _, err = run(capsys, "fit", "--data", tiny, "--out", tmp_path / "precious",
                       "--overwrite", *FAST)
    assert code == 2 and "not an elbokit run" in err
    assert (tmp_path / "precious" / "thesis.tex").exists()


def test_resume_with_fewer_epochs_than_trained_is_refused_and_changes_nothing(capsys, tmp_path, tiny):
    out = tmp_path / "run"
    assert run(capsys, "fit", "--data", tiny, "--out", out, "--patience", "0", *FAST[:1], "3",
               *FAST[2:])[0] == 0
    before = files(out)
    code, _, err = run(capsys, "fit", "--out", out, "--resume", "--epochs", "2", "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "already at epoch 3" in err and "--epochs must be at least 3" in err
    assert "or omitted to keep the run's own, 3" in err
    assert files(out) == before
    # As many epochs as trained: nothing to train, the run is finalized again.
    code, stdout, err = run(capsys, "fit", "--out", out, "--resume", "--epochs", "3", "--quiet")
    assert code == 0, err
    assert "nothing to train" in stdout
    after = files(out)
    for name in ("model.safetensors", "model.json", "metrics.jsonl", "config.json"):
        assert after[name] == before[name], name
    checkpoint = {n: b for n, b in before.items() if n.startswith("checkpoint")}
    assert {n: b for n, b in after.items() if n.startswith("checkpoint")} == checkpoint
    assert json.loads(after["summary.json"])["epochs_trained"] == 3


def test_resume_checks_epochs_against_a_mid_epoch_checkpoint_and_config(capsys, tmp_path, tiny):
    out = tmp_path / "run"
    assert run(capsys, "fit", "--data", tiny, "--out", out, "--patience", "0", *FAST)[0] == 0
    # As a Ctrl-C in epoch 3 leaves it: 2 epochs finished, 1 step into the third.
    record = json.loads((out / "checkpoint" / "state.json").read_text())
    record["state"]["step"] = 1
    (out / "checkpoint" / "state.json").write_text(json.dumps(record))
    before = files(out)
    code, _, err = run(capsys, "fit", "--out", out, "--resume", "--epochs", "2", "--quiet")
    assert code == 2 and "in the middle of epoch 3; --epochs must be at least 3 to resume it" in err
    assert files(out) == before
    # A config.json asking for fewer epochs than the checkpoint finished (edited by hand).
    config = json.loads((out / "config.json").read_text())
    config["params"]["epochs"] = 1
    (out / "config.json").write_text(json.dumps(config))
    before = files(out)
    code, _, err = run(capsys, "fit", "--out", out, "--resume", "--quiet")
    assert code == 2
    assert "config.json asks for 1 epochs, but the checkpoint is in the middle of epoch 3" in err
    assert files(out) == before


# -- direct tests of the module's rules --------------------------------------------------------


def test_create_run_dir_makes_refuses_and_replaces_only_runs(tmp_path):
    out = tmp_path / "a" / "b"
    runs.create_run_dir(out, overwrite=False)  # parents made
    assert out.is_dir()
    runs.create_run_dir(out, overwrite=False)  # an empty directory is taken as it is
    (out / "config.json").write_text("{}")
    (out / "model.json").write_text("{}")
    with pytest.raises(ConfigError, match="already exists; use --resume"):
        runs.create_run_dir(out, overwrite=False)
    runs.create_run_dir(out, overwrite=True)  # a run: replaced, so emptied
    assert out.is_dir() and not any(out.iterdir())
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not an elbokit run directory"):
        runs.create_run_dir(out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        runs.create_run_dir(tmp_path / "file", overwrite=True)


def _config(**changes) -> dict:
    config = {"kind": "vae", "params": {"epochs": 3},
              "data": {"source": "digits", "fingerprint": "abc",
                       "split": {"seed": 0, "test_fraction": 0.2, "val_fraction": 0.1}}}
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        target = config
        for key in path:
            target = target[key]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return config


def test_read_config_round_trips_what_write_config_wrote(tmp_path):
    runs.write_config(tmp_path, _config())
    read = runs.read_config(tmp_path, kinds=["vae", "mixture"])
    assert {k: read[k] for k in ("kind", "params", "data")} == _config()


@pytest.mark.parametrize("changes, message", [
    ({"data": None}, "malformed vae run configuration (missing data)"),
    ({"data__fingerprint": None}, "(missing data.fingerprint)"),
    ({"data__split__seed": "0"}, "(data.split.seed is a str)"),
    ({"data__split__seed": True}, "(data.split.seed is a bool)"),
    ({"data__split__val_fraction": [0.1]}, "(data.split.val_fraction is a list)"),
    ({"data__split": 3}, "(data.split is not an object)"),
    ({"params": []}, "(params is a list)"),
    ({"kind": 7}, "malformed run configuration (kind 7)"),
])
def test_read_config_names_what_is_missing_or_of_the_wrong_type(tmp_path, changes, message):
    runs.write_config(tmp_path, _config(**changes))
    with pytest.raises(CheckpointError) as caught:
        runs.read_config(tmp_path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_read_config_refuses_what_is_not_a_run_or_a_run_of_another_kind(tmp_path):
    with pytest.raises(CheckpointError, match="no such run directory"):
        runs.read_config(tmp_path / "nothing")
    (tmp_path / "file").write_text("")
    with pytest.raises(CheckpointError, match="not a run directory \\(a file\\)"):
        runs.read_config(tmp_path / "file")
    with pytest.raises(CheckpointError, match="not an elbokit run \\(no config.json\\)"):
        runs.read_config(tmp_path)
    runs.write_config(tmp_path, {"kind": "classifier", "features": {"type": "words"},
                                 "methods": ["naive-bayes"], "threshold": 0.5})
    with pytest.raises(CheckpointError, match="a 'classifier' run \\(from elbokit classify "
                       "--out\\), not a 'vae' or 'mixture' run"):
        runs.read_config(tmp_path, kinds=["vae", "mixture"])
    assert runs.read_config(tmp_path, kinds=["classifier"])["methods"] == ["naive-bayes"]


def test_check_resume_epochs_without_a_checkpoint_allows_anything(tmp_path):
    assert runs.check_resume_epochs(tmp_path, own=5, epochs=None) is None
    assert runs.check_resume_epochs(tmp_path, own=5, epochs=1) is None


def test_column_names_are_kept_only_when_they_name_every_column():
    assert runs.column_names({"columns": ["a", "b"], "dim": 2}) == ["a", "b"]
    for record in ({"columns": ["a"], "dim": 2}, {"columns": ["a", 3], "dim": 2},
                   {"columns": "ab", "dim": 2}, {"columns": None, "dim": 2}, {"dim": 2}):
        assert runs.column_names(record) is None, record


def test_a_validation_split_of_no_example_is_refused_only_when_one_is_needed():
    runs.check_validation_split(0, 5, 0.0, "x.npy")  # no early stopping: fine
    runs.check_validation_split(1, 5, 0.1, "x.npy")
    with pytest.raises(DataError, match="x.npy: 5 examples leave no validation example at "
                       "--val-fraction 0.1"):
        runs.check_validation_split(0, 5, 0.1, "x.npy")


def test_the_recorded_split_is_rebuilt_the_same_and_the_fingerprint_guards_the_data(tmp_path):
    """A run's record gives back the same disjoint, complete split of its examples; the data
    changing under the run is refused."""
    x = (np.random.default_rng(0).random((50, 4)) < 0.5).astype(np.float64)
    np.save(tmp_path / "x.npy", x)
    data = runs.load_data(str(tmp_path / "x.npy"))
    record = runs.data_record(str(tmp_path / "x.npy"), data, None, 3, 0.2, 0.1)
    assert (record["n_examples"], record["dim"]) == (50, 4)
    first, again = runs.prepare_data(record), runs.prepare_data(record)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(first.splits[name], again.splits[name])
    together = np.concatenate([first.splits[k] for k in ("train", "val", "test")])
    assert sorted(together.tolist()) == list(range(50))
    assert len(first.splits["test"]) == 10
    np.testing.assert_array_equal(first.split("test"), x[first.splits["test"]])
    np.testing.assert_array_equal(first.split("all"), x)
    with pytest.raises(ConfigError, match="unknown split 'dev'"):
        first.split("dev")
    config = {"data": record}
    runs.check_fingerprint(first, config)
    x[0, 0] = 1 - x[0, 0]
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(DataError, match="the data changed since the run was trained"):
        runs.check_fingerprint(runs.prepare_data(record), config)


def test_dynamic_binarization_scores_one_fixed_draw_of_the_probabilities(tmp_path):
    p = np.random.default_rng(1).random((400, 5))  # seed 0 would equal the fixed draw itself
    np.save(tmp_path / "p.npy", p)
    data = runs.load_data(str(tmp_path / "p.npy"), "dynamic")
    record = runs.data_record(str(tmp_path / "p.npy"), data, "dynamic", 0, 0.2, 0.1)
    run_data = runs.prepare_data(record)
    fixed = run_data.split("all")
    assert set(np.unique(fixed)) == {0.0, 1.0}
    np.testing.assert_array_equal(run_data.split("all"), fixed)  # the same draw every time
    # A draw of the probabilities: the mean of 2,000 Bernoulli(p) lies within 4 SE of p's.
    assert abs(fixed.mean() - p.mean()) < 4 * 0.5 / np.sqrt(fixed.size)
    np.testing.assert_array_equal(run_data.training(), p[run_data.splits["train"]])
    np.save(tmp_path / "bad.npy", p * 2)
    with pytest.raises(DataError, match="--binarize dynamic needs values in \\[0, 1\\]"):
        runs.load_data(str(tmp_path / "bad.npy"), "dynamic")
