"""Atomic writes, checksums and the checkpoint directory swap."""

from __future__ import annotations

import json
import os

import pytest
import torch

from elbokit import checkpoint
from elbokit.errors import CheckpointError


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "f.json"
    checkpoint.write_json(path, {"a": 1})
    checkpoint.write_json(path, {"a": 2})
    assert checkpoint.read_json(path) == {"a": 2}
    assert os.listdir(tmp_path) == ["f.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    checkpoint.atomic_write(path, b"good")

    def broken_replace(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "replace", broken_replace)
    with pytest.raises(OSError):
        checkpoint.atomic_write(path, b"new")
    assert path.read_bytes() == b"good" and os.listdir(tmp_path) == ["f.bin"]


def test_tensors_round_trip_and_checksum(tmp_path):
    tensors = {"a": torch.randn(3, 2), "b": torch.arange(4)}
    digest = checkpoint.save_tensors(tmp_path / "t.safetensors", tensors)
    loaded = checkpoint.load_tensors(tmp_path / "t.safetensors", digest)
    assert all(torch.equal(tensors[k], loaded[k]) for k in tensors)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        checkpoint.load_tensors(tmp_path / "t.safetensors", "0" * 64)
    (tmp_path / "p.safetensors").write_bytes(b"\x80\x04\x95 a pickle, not safetensors")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        checkpoint.load_tensors(tmp_path / "p.safetensors")


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_a_safetensors_header_that_starts_like_a_pickle_still_loads(tmp_path, protocol):
    """A header of 0x0380 bytes is stored as 80 03 00 ..., the two bytes that open a pickle of
    protocol 3 (a VampPrior's moving-average weights hit this). Such a file is safetensors,
    framed as one, and loads; a real pickle is still refused (the test above)."""
    from safetensors.torch import save

    path = tmp_path / "t.safetensors"
    # A tensor name of the length that gives the header the pickle's first bytes.
    length = next(n for n in range(1, 3000)
                  if save({"w" * n: torch.zeros(2)})[:2] == bytes([0x80, protocol]))
    checkpoint.save_tensors(path, {"w" * length: torch.zeros(2)})
    assert path.read_bytes()[:2] == bytes([0x80, protocol])
    assert torch.equal(checkpoint.load_tensors(path)["w" * length], torch.zeros(2))


def _model_and_optimizer():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    return model, optimizer


def test_checkpoint_round_trip_and_crash_between_renames(tmp_path):
    model, optimizer = _model_and_optimizer()
    checkpoint.save_checkpoint(tmp_path, model, optimizer, {"epoch": 1})
    checkpoint.save_checkpoint(tmp_path, model, optimizer, {"epoch": 2})
    rng_at_save = torch.get_rng_state()
    assert sorted(os.listdir(tmp_path)) == ["checkpoint"]
    state, weights, opt_state, rng, extra = checkpoint.load_checkpoint(tmp_path)
    assert extra == {}
    assert state == {"epoch": 2}
    assert torch.equal(weights["weight"], model.weight)
    fresh = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=0.1)
    fresh.load_state_dict(opt_state)
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"],
                       optimizer.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(rng, rng_at_save)
    # A crash after the old checkpoint was moved aside, before the new one moved in:
    os.replace(tmp_path / "checkpoint", tmp_path / "checkpoint.old")
    assert checkpoint.load_checkpoint(tmp_path)[0] == {"epoch": 2}


def test_checkpoint_refuses_tampering(tmp_path):
    model, optimizer = _model_and_optimizer()
    checkpoint.save_checkpoint(tmp_path, model, optimizer, {"epoch": 1})
    path = tmp_path / "checkpoint" / "optimizer.safetensors"
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(CheckpointError, match="optimizer.safetensors: checksum"):
        checkpoint.load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        checkpoint.load_checkpoint(tmp_path / "nothing")


# -- saved kinds: one stamp, one format/version check ------------------------------------

def test_every_saved_kind_is_in_the_module_table():
    for name, kind in checkpoint.SAVED_KINDS.items():
        assert name in checkpoint.__doc__ and kind.version >= 1 and checkpoint.SAVED_KINDS.help(name)


def test_stamp_and_check_round_trip():
    record = checkpoint.stamp("elbokit.novelty", {"threshold": 1.5, "format": "old", "version": 0})
    assert record == {"threshold": 1.5, "format": "elbokit.novelty", "version": 1}
    assert checkpoint.check_record(json.loads(json.dumps(record)), "elbokit.novelty", "d") == record


@pytest.mark.parametrize("record, message", [
    ({"format": "elbokit.classifier", "version": 1},
     "f.json: holds an elbokit classifier, not an elbokit model"),
    ({"format": "pickle", "version": 1}, "f.json: not an elbokit model (format 'pickle')"),
    ({"weights": []}, "f.json: not an elbokit model (no format)"),
    ([1, 2], "f.json: not an elbokit model (not a JSON object)"),
    ({"format": "elbokit.model"}, "f.json: malformed elbokit model (version None)"),
    ({"format": "elbokit.model", "version": "1"}, "f.json: malformed elbokit model (version '1')"),
    ({"format": "elbokit.model", "version": 3},
     "f.json: written by a newer elbokit (version 3); this one reads version 1"),
])
def test_check_refuses_in_one_line(record, message):
    with pytest.raises(CheckpointError) as info:
        checkpoint.check_record(record, "elbokit.model", "f.json")
    assert str(info.value) == message


def test_save_and_load_record_with_tensors(tmp_path):
    tensors = {"w": torch.randn(2, 3)}
    written = checkpoint.save_record(tmp_path / "c", "elbokit.classifier", {"kind": "x"}, tensors)
    assert sorted(os.listdir(tmp_path / "c")) == ["classifier.json", "classifier.safetensors"]
    record, loaded = checkpoint.load_record(tmp_path / "c", "elbokit.classifier")
    assert record == written and record["format"] == "elbokit.classifier"
    assert torch.equal(loaded["w"], tensors["w"])
    with pytest.raises(CheckpointError, match=r"c: holds an elbokit classifier \(classifier.json\), not"):
        checkpoint.load_model(tmp_path / "c")  # no model.json, but another kind's record
    os.replace(tmp_path / "c" / "classifier.json", tmp_path / "c" / "model.json")
    with pytest.raises(CheckpointError, match="model.json: holds an elbokit classifier, not"):
        checkpoint.load_model(tmp_path / "c")
    with pytest.raises(checkpoint.NonFiniteError, match="classifier tensor 'w' holds NaN"):
        checkpoint.save_record(tmp_path / "c", "elbokit.classifier", {}, {"w": torch.tensor([float("nan")])})
    assert not (tmp_path / "c" / "classifier.json").exists()  # nothing written


@pytest.mark.parametrize("content, message", [
    ({"format": "elbokit.classifier", "version": 1, "kind": "vae"},
     "config.json: holds an elbokit classifier, not an elbokit run configuration"),
    ({"format": "elbokit.run", "version": 2, "kind": "vae"},
     "config.json: written by a newer elbokit (version 2); this one reads version 1"),
])
def test_the_cli_names_another_kind_or_a_newer_version_in_one_line(tmp_path, capsys, content,
                                                                   message):
    from elbokit.cli import main

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps(content))
    assert main(["evaluate", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("elbokit: error: ") and message in err
