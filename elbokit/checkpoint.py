"""Checkpoints: safetensors for tensors, JSON for everything else; never pickles.

Every file is written atomically (temporary file in the same directory, fsync, rename), so a
crash leaves either the old file or the new one, never half of one. JSON records carry the
SHA-256 of the tensor files they describe, and loading verifies it, so a truncated or
swapped tensor file is refused instead of silently loaded.

A training checkpoint is a directory (model, optimizer, state) replaced as a whole: it is
written to ``checkpoint.tmp/``, the old ``checkpoint/`` is moved to ``checkpoint.old/``, the
new one moved into place, and the old one removed. A crash between the two moves leaves
``checkpoint.old/``, which :func:`load_checkpoint` falls back to. :func:`atomic_directory`
does that swap for any directory (saved classifiers, ``elbokit classify --out`` runs).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import CheckpointError

FORMAT_VERSION = 1


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new, never a mix."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@contextmanager
def atomic_directory(path: str | Path, tmp: str | Path | None = None,
                     old: str | Path | None = None) -> Iterator[Path]:
    """Build a directory that replaces ``path`` as a whole: readers see the old one or the
    complete new one, never a half-written one.

    Yields an empty sibling directory to fill (``tmp``; default a fresh hidden
    ``.NAME.XXXX.tmp``). When the block ends normally it is moved into place: an existing
    ``path`` is first moved to ``old`` (default a fresh hidden sibling) and removed after the
    swap. When the block raises (or is interrupted), the temporary directory is removed and
    ``path`` is untouched. Fixed ``tmp``/``old`` names let a reader fall back to ``old``
    after a crash between the two renames (see :func:`load_checkpoint`).
    """
    path = Path(path)
    if tmp is None:
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    else:
        tmp = Path(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    moved = False
    try:
        yield tmp
        _fsync_dir(tmp)
        if path.exists():
            if old is None:  # a fresh name: never clobber anything that happens to be there
                old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
                old.rmdir()
            else:
                shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            moved = True
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if moved and not path.exists():
            os.replace(old, path)  # the swap failed half-way: put the old directory back
        raise
    _fsync_dir(path.parent)
    if old is not None:  # also a stale one left by an earlier crash
        shutil.rmtree(old, ignore_errors=True)


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable JSON file ({e})") from None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor]) -> str:
    """Write ``tensors`` as safetensors atomically; returns the file's SHA-256."""
    data = st_save({k: v.detach().contiguous().cpu() for k, v in tensors.items()})
    atomic_write(path, data)
    return sha256(data)


def load_tensors(path: str | Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Read a safetensors file, refusing it when its checksum differs from the record."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
    if expected_sha256 is not None and sha256(data) != expected_sha256:
        raise CheckpointError(f"{path}: checksum mismatch (file truncated or modified)")
    try:
        return st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a safetensors file ({e})") from None


# -- models -----------------------------------------------------------------------------

def save_model(directory: str | Path, module: torch.nn.Module, record: dict) -> None:
    """``directory/model.safetensors`` (weights) + ``directory/model.json`` (``record`` and
    the weights' checksum). The JSON is written last, so it never points at missing weights."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    digest = save_tensors(directory / "model.safetensors", module.state_dict())
    write_json(directory / "model.json",
               {"format": "elbokit.model", "version": FORMAT_VERSION, "sha256": digest, **record})


def load_model(directory: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The record and state dict saved by :func:`save_model`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a directory (expected a saved elbokit model)")
    record = read_json(directory / "model.json")
    if not isinstance(record, dict) or record.get("format") != "elbokit.model":
        raise CheckpointError(f"{directory}/model.json: not an elbokit model record")
    if record.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{directory}/model.json: unsupported version {record.get('version')}")
    return record, load_tensors(directory / "model.safetensors", record.get("sha256"))


# -- training checkpoints ---------------------------------------------------------------

def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into tensors (for safetensors) and JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict] = {}
    for index, per_param in state["state"].items():
        for name, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value
            else:
                plain.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "plain": plain}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, values in meta["plain"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(run_dir: str | Path, module: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, state: dict, config: dict | None = None,
                    extra: dict[str, dict[str, torch.Tensor]] | None = None) -> None:
    """Replace ``run_dir/checkpoint/`` with the current training state as a whole.

    ``state`` (JSON-able: epoch, early-stopping counters, ...) is stored with the torch RNG
    state, so that a resumed run draws the same random numbers as an uninterrupted one, and
    with ``config`` (model and training configuration) so that the checkpoint describes itself.
    ``extra``: further state dicts (e.g. an estimator's learned baseline), one file each.
    """
    run_dir = Path(run_dir)
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    with atomic_directory(run_dir / "checkpoint", run_dir / "checkpoint.tmp",
                          run_dir / "checkpoint.old") as tmp:
        record = {
            "format": "elbokit.checkpoint",
            "version": FORMAT_VERSION,
            "state": state,
            "config": config,
            "optimizer": opt_meta,
            "sha256": {
                "model": save_tensors(tmp / "model.safetensors", module.state_dict()),
                "optimizer": save_tensors(tmp / "optimizer.safetensors", opt_tensors),
                "rng": save_tensors(tmp / "rng.safetensors", {"torch": torch.get_rng_state()}),
            },
            "extra": {name: save_tensors(tmp / f"extra-{name}.safetensors", tensors)
                      for name, tensors in (extra or {}).items()},
        }
        write_json(tmp / "state.json", record)


def has_checkpoint(run_dir: str | Path) -> bool:
    run_dir = Path(run_dir)
    return (run_dir / "checkpoint").is_dir() or (run_dir / "checkpoint.old").is_dir()


def load_checkpoint(run_dir: str | Path) -> tuple[dict, dict, dict, torch.Tensor, dict]:
    """``(state, model_state_dict, optimizer_state_dict, torch_rng_state, extra)`` of the
    last complete checkpoint in ``run_dir``."""
    run_dir = Path(run_dir)
    directory = run_dir / "checkpoint"
    if not directory.is_dir():
        directory = run_dir / "checkpoint.old"  # crash between the two renames
    if not directory.is_dir():
        raise CheckpointError(f"{run_dir}: no checkpoint to resume from")
    record = read_json(directory / "state.json")
    if not isinstance(record, dict) or record.get("format") != "elbokit.checkpoint":
        raise CheckpointError(f"{directory}/state.json: not an elbokit checkpoint")
    digests = record["sha256"]
    model = load_tensors(directory / "model.safetensors", digests["model"])
    opt = load_tensors(directory / "optimizer.safetensors", digests["optimizer"])
    rng = load_tensors(directory / "rng.safetensors", digests["rng"])["torch"]
    extra = {name: load_tensors(directory / f"extra-{name}.safetensors", digest)
             for name, digest in record.get("extra", {}).items()}
    return record["state"], model, _unflatten_optimizer(opt, record["optimizer"]), rng, extra
