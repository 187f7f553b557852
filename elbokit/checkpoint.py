"""Checkpoints: safetensors for tensors, JSON for everything else; never pickles.

Every file is written atomically (temporary file in the same directory, fsync, rename), so a
crash leaves either the old file or the new one, never half of one. JSON records carry the
SHA-256 of the tensor files they describe, and loading verifies it, so a truncated or
swapped tensor file is refused instead of silently loaded. Nothing here unpickles: tensors
are read by the safetensors parser only (a pickle or ``torch.save`` file in place of one is
refused, never executed), everything else is JSON.

Nothing non-finite is written: a model, classifier or checkpoint whose floating-point
tensors hold a NaN or an infinity is refused (:class:`NonFiniteError`) before any file is
touched, so a good checkpoint is never replaced by a diverged one. A write that fails (full
disk, read-only directory) raises :class:`CheckpointWriteError` naming the directory and the
reason, and leaves the previous checkpoint or model as it was.

A training checkpoint is a directory (model, optimizer, state) replaced as a whole: it is
written to ``checkpoint.tmp/``, the old ``checkpoint/`` is moved to ``checkpoint.old/``, the
new one moved into place, and the old one removed. A crash between the two moves leaves
``checkpoint.old/``, which :func:`load_checkpoint` falls back to. :func:`atomic_directory`
does that swap for any directory (saved classifiers, ``elbokit classify --out`` runs).

Every JSON record elbokit saves names its kind and version (:func:`stamp`), and every reader
checks both the one way (:func:`check_record`): a file of another kind is named ("holds an
elbokit classifier, not an elbokit model"), one written by a newer elbokit is refused saying
so. A kind whose layout changes gets the next version here, and its reader keeps reading the
older ones (files saved before must still load). :func:`save_record`/:func:`load_record`
write and read a record with its safetensors file (checksummed). The saved kinds
(:data:`SAVED_KINDS`; all at version 1)::

    kind                   files                             written by
    elbokit.model          model.json + model.safetensors    LatentModel.save, elbokit fit
    elbokit.checkpoint     checkpoint/state.json + tensors   save_checkpoint (fit --out)
    elbokit.classifier     classifier.json + .safetensors    Classifier.save, classify --out
    elbokit.novelty        novelty.json + density/ (model)   NoveltyDetector.save
    elbokit.bag-of-words   any .json (featurizer.json)       BagOfWords.save, classify --out
    elbokit.run            config.json of a run              fit, classify --out, sweep
    elbokit.sweep          sweep.json                        elbokit sweep
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import CheckpointError
from .registry import Registry


@dataclass(frozen=True)
class SavedKind:
    """What the registry knows of one saved kind: the ``version`` written now (readers take
    1 to ``version``), the ``noun`` messages use ("an elbokit NOUN"), and the files
    :func:`save_record` writes (``record_file``; ``tensor_file``, None: JSON only) in a
    directory (None: the caller names the file, or writes several)."""

    version: int
    noun: str
    record_file: str | None = None
    tensor_file: str | None = None


#: Format name (the records' ``"format"``) -> :class:`SavedKind`; help: what it is, who writes it.
SAVED_KINDS: Registry[SavedKind] = Registry("saved kind")
SAVED_KINDS.add("elbokit.model", SavedKind(1, "model", "model.json", "model.safetensors"),
                "a fitted density model: LatentModel.save, the best model of elbokit fit")
SAVED_KINDS.add("elbokit.checkpoint", SavedKind(1, "checkpoint", "state.json"),
                "training state to resume from: save_checkpoint (elbokit fit, fit(run_dir=...))")
SAVED_KINDS.add("elbokit.classifier",
                SavedKind(1, "classifier", "classifier.json", "classifier.safetensors"),
                "a fitted classifier: Classifier.save, elbokit classify --out")
SAVED_KINDS.add("elbokit.novelty", SavedKind(1, "novelty detector", "novelty.json"),
                "a fitted one-class detector and its density: NoveltyDetector.save")
SAVED_KINDS.add("elbokit.bag-of-words", SavedKind(1, "bag-of-words featurizer"),
                "a vocabulary and tokenizer: BagOfWords.save, classify --out (featurizer.json)")
SAVED_KINDS.add("elbokit.run", SavedKind(1, "run configuration", "config.json"),
                "how a run was made: elbokit fit, classify --out, sweep")
SAVED_KINDS.add("elbokit.sweep", SavedKind(1, "sweep summary", "sweep.json"),
                "rate, distortion and ELBO per beta: elbokit sweep")


def stamp(kind: str, record: dict) -> dict:
    """``record`` with the ``"format"`` (``kind``) and current ``"version"`` of ``kind`` (a
    name in :data:`SAVED_KINDS`); they override any ``record`` carries (a record read back)."""
    return {**record, "format": kind, "version": SAVED_KINDS[kind].version}


def check_record(record: Any, kind: str, where: str | Path) -> dict:
    """``record`` (read from JSON) when it is a stamped record of ``kind`` that this elbokit
    reads (version 1 to the current one); else a one-line :class:`CheckpointError` naming
    ``where`` and what the record is instead: not a JSON object, another elbokit kind, not
    elbokit's, or written by a newer elbokit."""
    saved = SAVED_KINDS[kind]
    if not isinstance(record, dict):
        raise CheckpointError(f"{where}: not an elbokit {saved.noun} (not a JSON object)")
    found = record.get("format")
    if found != kind:
        if isinstance(found, str) and found in SAVED_KINDS:
            raise CheckpointError(f"{where}: holds an elbokit {SAVED_KINDS[found].noun}, "
                                  f"not an elbokit {saved.noun}")
        raise CheckpointError(f"{where}: not an elbokit {saved.noun} ("
                              + ("no format" if found is None else f"format {found!r}") + ")")
    version = record.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{where}: malformed elbokit {saved.noun} (version {version!r})")
    if version > saved.version:
        raise CheckpointError(f"{where}: written by a newer elbokit (version {version}); this "
                              f"one reads version {saved.version}")
    return record


class CheckpointWriteError(CheckpointError, OSError):
    """A checkpoint or model that could not be written (full disk, read-only directory, ...);
    what was there before is intact. Also an :class:`OSError` (``errno`` is the cause's)."""

    def __init__(self, message: str, cause: OSError | None = None) -> None:
        super().__init__(message)
        self.errno = cause.errno if cause is not None else None
        self.strerror = cause.strerror if cause is not None else None

    def __str__(self) -> str:
        return str(self.args[0])


class NonFiniteError(CheckpointError):
    """A state holding NaN or infinite values, refused instead of saved."""


def check_finite(tensors: dict[str, torch.Tensor], what: str) -> None:
    """Raise :class:`NonFiniteError` naming the first floating-point tensor of ``tensors``
    that holds a NaN or an infinity (``what``: e.g. "model", for the message)."""
    for name, tensor in tensors.items():
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
            kind = "NaN" if bool(torch.isnan(tensor).any()) else "infinite values"
            raise NonFiniteError(f"{what} tensor {name!r} holds {kind}")


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fresh_sibling(path: Path, suffix: str, create):
    """``create(name)`` on a fresh hidden sibling name ``.NAME.XXXXXXXX<suffix>`` of ``path``
    (``create`` must refuse an existing name with FileExistsError); ``(its result, name)``."""
    for _ in range(100):
        name = path.parent / f".{path.name}.{secrets.token_hex(4)}{suffix}"
        try:
            return create(name), name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name next to it", str(path))


# Temporaries are created with the modes open() and mkdir() use (0o666 / 0o777, less the
# umask, which the kernel applies), not tempfile's private 0o600 / 0o700: what a run writes
# goes into place by a rename and keeps the temporary's mode, so it must be the mode any new
# file would get (0644 under umask 022, 0600 under 077).
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


def temporary_file(path: str | Path, suffix: str = ".tmp") -> tuple[int, Path]:
    """A new empty hidden sibling of ``path`` to write and then rename onto it:
    ``(a file descriptor open for writing, its path)``; mode 0o666 less the umask."""
    return _fresh_sibling(Path(path), suffix, lambda name: os.open(name, _FILE_FLAGS, 0o666))


def temporary_directory(path: str | Path, suffix: str = ".tmp") -> Path:
    """A new empty hidden sibling directory of ``path``; mode 0o777 less the umask."""
    return _fresh_sibling(Path(path), suffix, lambda name: os.mkdir(name, 0o777))[1]


def _write_temporary(path: Path, data: bytes) -> Path:
    """``data`` in a fresh, fsynced temporary sibling of ``path`` (removed again on failure).
    An OSError names ``path``, the file being written, not the temporary."""
    try:
        fd, tmp = temporary_file(path)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    return tmp


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new, never a mix."""
    atomic_write_many({Path(path): data})


def atomic_write_many(files: dict[Path, bytes]) -> None:
    """Write several files of one directory so that every one is replaced only after all
    were written: a failure while writing (full disk, ...) leaves all of them as they were.
    The renames come last, in the order given (a crash between two of them, a window of
    microseconds, can still leave the earlier ones new and the later ones old)."""
    written: list[tuple[Path, Path]] = []
    try:
        for path, data in files.items():
            written.append((path, _write_temporary(path, data)))
        for path, tmp in written:
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise OSError(e.errno, e.strerror, str(path)) from e
    except BaseException:
        for _, tmp in written:
            tmp.unlink(missing_ok=True)
        raise
    for parent in {path.parent for path in files}:
        _fsync_dir(parent)


def remove_temporaries(directory: str | Path) -> None:
    """Remove what writes interrupted by a crash left in ``directory``: the hidden
    ``.NAME.XXXX.tmp`` files of :func:`atomic_write`, a stale ``checkpoint.tmp/``, and a
    ``checkpoint.old/`` next to a ``checkpoint/`` (which is complete whenever it exists: it
    only ever appears by the rename of a finished ``checkpoint.tmp/``)."""
    directory = Path(directory)
    for path in directory.glob(".*.tmp"):
        if path.is_file():
            path.unlink(missing_ok=True)
    shutil.rmtree(directory / "checkpoint.tmp", ignore_errors=True)
    if (directory / "checkpoint").is_dir():
        shutil.rmtree(directory / "checkpoint.old", ignore_errors=True)


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
        tmp = temporary_directory(path)
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
                old = temporary_directory(path, ".old")
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


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write(path, _json_bytes(obj))


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


def tensor_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    """``tensors`` serialized as a safetensors file."""
    return st_save({k: v.detach().contiguous().cpu() for k, v in tensors.items()})


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor]) -> str:
    """Write ``tensors`` as safetensors atomically; returns the file's SHA-256."""
    data = tensor_bytes(tensors)
    atomic_write(path, data)
    return sha256(data)


def _safetensors_framed(data: bytes) -> bool:
    """Whether ``data`` is framed as safetensors: an 8-byte little-endian header length N,
    then N bytes of header starting with ``{``, within the file."""
    if len(data) < 9:
        return False
    return 8 + int.from_bytes(data[:8], "little") <= len(data) and data[8:9] == b"{"


def _looks_pickled(data: bytes) -> str | None:
    """What ``data`` is when it is a pickle or a ``torch.save`` file (a zip holding one).
    A safetensors file is never one, although its header length can begin with the same
    two bytes as a pickle (a header of 0x380 bytes starts 80 03, pickle protocol 3's mark)."""
    if _safetensors_framed(data):
        return None
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a pickle"
    if data[:4] == b"PK\x03\x04":
        return "a zip archive (torch.save's format, holding a pickle)"
    return None


def load_tensors(path: str | Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Read a safetensors file, refusing it when its checksum differs from the record, and
    refusing pickles (``torch.save`` files) outright: they are never unpickled."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
    pickled = _looks_pickled(data)
    if pickled is not None:
        raise CheckpointError(f"{path}: {pickled}, not a safetensors file; refused (elbokit "
                              "never unpickles: a pickle can run any code)")
    if expected_sha256 is not None and sha256(data) != expected_sha256:
        raise CheckpointError(f"{path}: checksum mismatch (file truncated or modified)")
    try:
        return st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a safetensors file ({e})") from None


# -- records with their tensors ------------------------------------------------------------

def save_record(directory: str | Path, kind: str, record: dict,
                tensors: dict[str, torch.Tensor] | None = None) -> dict:
    """Write ``directory/<record_file>`` (``record`` stamped, with the SHA-256 of the tensors)
    and, for a kind with a ``tensor_file``, ``tensors`` (name -> tensor of any shape) there;
    returns the record written. Both files are written in full before either replaces its
    old version, so a failed write (full disk, ...) leaves the old pair whole; non-finite
    tensors are refused (:class:`NonFiniteError`) and a failed write raises
    :class:`CheckpointWriteError`."""
    directory, saved = Path(directory), SAVED_KINDS[kind]
    files: dict[Path, bytes] = {}
    if saved.tensor_file is not None:
        check_finite(tensors, saved.noun)
        data = tensor_bytes(tensors)
        record = {**record, "sha256": sha256(data)}
        files[directory / saved.tensor_file] = data
    record = stamp(kind, record)
    files[directory / saved.record_file] = _json_bytes(record)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_many(files)
    except OSError as e:
        raise CheckpointWriteError(f"{directory}: cannot write the {saved.noun}: {_reason(e)}",
                                   e) from e
    return record


def load_record(directory: str | Path, kind: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(record, tensors)`` written by :func:`save_record` (``tensors`` empty for a kind
    without a ``tensor_file``): the record checked by :func:`check_record`, the tensors
    against its SHA-256. A directory holding another kind's record instead is named as such."""
    directory, saved = Path(directory), SAVED_KINDS[kind]
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a directory (expected a saved elbokit "
                              f"{saved.noun})")
    where = directory / saved.record_file
    if not where.exists():  # another kind's directory: say which (not a run's config.json:
        for other in SAVED_KINDS:  # a run not trained yet holds no model.json but is one)
            found = SAVED_KINDS[other].record_file
            if other != "elbokit.run" and found is not None and (directory / found).is_file():
                raise CheckpointError(f"{directory}: holds an elbokit {SAVED_KINDS[other].noun} "
                                      f"({found}), not an elbokit {saved.noun}")
    record = check_record(read_json(where), kind, where)
    if saved.tensor_file is None:
        return record, {}
    if not isinstance(record.get("sha256"), str):
        raise CheckpointError(f"{where}: no checksum for {saved.tensor_file}")
    return record, load_tensors(directory / saved.tensor_file, record["sha256"])


def save_model(directory: str | Path, module: torch.nn.Module, record: dict) -> None:
    """``directory/model.safetensors`` (``module``'s weights) + ``directory/model.json``
    (``record``, stamped, and the weights' checksum): :func:`save_record` of a model."""
    save_record(directory, "elbokit.model", record, module.state_dict())


def load_model(directory: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The record and state dict saved by :func:`save_model`."""
    return load_record(directory, "elbokit.model")


# -- training checkpoints ---------------------------------------------------------------

STATE_FILE = SAVED_KINDS["elbokit.checkpoint"].record_file  # the record; tensors: one file each

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
                    optimizer: Any, state: dict, config: dict | None = None,
                    extra: dict[str, dict[str, torch.Tensor]] | None = None) -> None:
    """Replace ``run_dir/checkpoint/`` with the current training state as a whole.

    ``state`` (JSON-able: epoch, early-stopping counters, ...) is stored with the torch RNG
    state, so that a resumed run draws the same random numbers as an uninterrupted one, and
    with ``config`` (model and training configuration) so that the checkpoint describes itself.
    ``extra``: further state dicts (e.g. an estimator's learned baseline), one file each.
    ``optimizer``: anything whose ``state_dict()`` has torch's optimizer format
    (``torch.optim.Adam``, :class:`elbokit.optimizer.Adam`).

    A state holding NaN or infinite values is refused (:class:`NonFiniteError`) before
    anything is written; a failed write raises :class:`CheckpointWriteError`. Either way the
    previous checkpoint stays as it was.
    """
    run_dir = Path(run_dir)
    model_state = module.state_dict()
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    extra = extra or {}
    try:
        check_finite(model_state, "model")
        check_finite(opt_tensors, "optimizer")
        for name, tensors in extra.items():
            check_finite(tensors, name)
    except NonFiniteError as e:
        raise NonFiniteError(f"{run_dir}: not checkpointed: the {e}; the last good checkpoint "
                             "is kept") from None
    try:
        with atomic_directory(run_dir / "checkpoint", run_dir / "checkpoint.tmp",
                              run_dir / "checkpoint.old") as tmp:
            record = stamp("elbokit.checkpoint", {
                "state": state,
                "config": config,
                "optimizer": opt_meta,
                "sha256": {
                    "model": save_tensors(tmp / "model.safetensors", model_state),
                    "optimizer": save_tensors(tmp / "optimizer.safetensors", opt_tensors),
                    "rng": save_tensors(tmp / "rng.safetensors", {"torch": torch.get_rng_state()}),
                },
                "extra": {name: save_tensors(tmp / f"extra-{name}.safetensors", tensors)
                          for name, tensors in extra.items()},
            })
            write_json(tmp / STATE_FILE, record)
    except OSError as e:
        raise CheckpointWriteError(f"{run_dir}: cannot write checkpoint: {_reason(e)}", e) from e


def has_checkpoint(run_dir: str | Path) -> bool:
    run_dir = Path(run_dir)
    return (run_dir / "checkpoint").is_dir() or (run_dir / "checkpoint.old").is_dir()


def _plain(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples as lists, ...), for comparisons."""
    return json.loads(json.dumps(obj))


def _checkpoint_record(run_dir: str | Path) -> tuple[Path, dict]:
    """``(the directory of the last complete checkpoint in run_dir, its state.json record)``,
    the record's format, version and fields checked (not yet the tensors)."""
    run_dir = Path(run_dir)
    directory = run_dir / "checkpoint"
    if not directory.is_dir():
        directory = run_dir / "checkpoint.old"  # crash between the two renames
    if not directory.is_dir():
        raise CheckpointError(f"{run_dir}: no checkpoint to resume from")
    where = directory / STATE_FILE
    record = check_record(read_json(where), "elbokit.checkpoint", where)
    digests, state, extra_digests = record.get("sha256"), record.get("state"), record.get("extra", {})
    if (not isinstance(digests, dict) or not all(isinstance(digests.get(k), str)
                                                 for k in ("model", "optimizer", "rng"))
            or not isinstance(state, dict) or not isinstance(state.get("epoch"), int)
            or isinstance(state["epoch"], bool) or state["epoch"] < 0
            or not isinstance(state.get("step", 0), int)
            or not isinstance(extra_digests, dict)
            or not all(isinstance(d, str) for d in extra_digests.values())
            or not isinstance(record.get("optimizer"), dict)):
        raise CheckpointError(f"{where}: incomplete or malformed checkpoint record")
    return directory, record


def checkpoint_progress(run_dir: str | Path) -> tuple[int, int] | None:
    """``(epochs finished, steps taken into the next one)`` by the last checkpoint in
    ``run_dir`` (steps > 0: written at a Ctrl-C in the middle of an epoch); None when there is
    no checkpoint. Reads the record only (:func:`load_checkpoint` verifies the tensors)."""
    if not has_checkpoint(run_dir):
        return None
    state = _checkpoint_record(run_dir)[1]["state"]
    return state["epoch"], int(state.get("step", 0))


def load_checkpoint(run_dir: str | Path, model_config: dict | None = None
                    ) -> tuple[dict, dict, dict, torch.Tensor, dict]:
    """``(state, model_state_dict, optimizer_state_dict, torch_rng_state, extra)`` of the
    last complete checkpoint in ``run_dir``.

    Every tensor file is checked against the SHA-256 its ``state.json`` records (a truncated,
    modified or swapped file is refused), read by the safetensors parser only (a pickle is
    refused, never loaded), and the record's format and version are checked. With
    ``model_config`` (the resuming model's ``config.to_dict()``), a checkpoint written for
    another model configuration is refused too."""
    directory, record = _checkpoint_record(run_dir)
    where = directory / STATE_FILE
    digests, state, extra_digests = record["sha256"], record["state"], record.get("extra", {})
    saved = (record.get("config") or {}).get("model") if isinstance(record.get("config"), dict) else None
    if model_config is not None and saved is not None and saved != _plain(model_config):
        wanted = _plain(model_config)
        differ = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
        raise CheckpointError(f"{directory}: written for another model configuration "
                              f"({', '.join(differ)} differ); not resuming from it")
    model = load_tensors(directory / "model.safetensors", digests["model"])
    opt = load_tensors(directory / "optimizer.safetensors", digests["optimizer"])
    rng = load_tensors(directory / "rng.safetensors", digests["rng"]).get("torch")
    if rng is None or rng.dtype != torch.uint8:
        raise CheckpointError(f"{directory}/rng.safetensors: no torch RNG state in it")
    extra = {name: load_tensors(directory / f"extra-{name}.safetensors", digest)
             for name, digest in extra_digests.items()}
    try:
        optimizer = _unflatten_optimizer(opt, record["optimizer"])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise CheckpointError(f"{where}: malformed optimizer state") from None
    return state, model, optimizer, rng, extra
