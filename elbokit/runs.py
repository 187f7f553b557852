"""Run directories: what a CLI run writes and how later commands find it again.

    runs/NAME/config.json      how the run was made (data, split, model, training)
              model.json + model.safetensors    the best model so far (VAE.load(RUN))
              checkpoint/      the latest training state (resume)
              metrics.jsonl    one line per epoch
              summary.json     final scores per split
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import data as datasets
from .checkpoint import check_record, checkpoint_progress, read_json, stamp, write_json
from .errors import CheckpointError, ConfigError, DataError

FORMAT = "elbokit.run"  # the saved kind of config.json (elbokit.checkpoint.SAVED_KINDS)


@dataclass
class RunData:
    """The data of a run after preprocessing, and its split into train/val/test indices.

    A streamed run (``fit --stream``: data larger than memory) holds in ``dataset`` only its
    held-out rows and a sample of its training rows, its splits index those, and ``stream``
    reads the training rows from the file chunk by chunk."""

    dataset: datasets.Dataset
    splits: dict[str, np.ndarray]
    dynamic: bool = False  # --binarize dynamic: x holds probabilities, resampled in training
    stream: datasets.NpyStream | None = None

    def split(self, name: str) -> np.ndarray:
        """The examples of a split, as the model scores them (with dynamic binarization: one
        fixed binarization, drawn with seed 0, so every evaluation sees the same 0/1 data).
        A streamed run's ``train`` split is a bounded sample of its training rows."""
        x = self._fixed() if self.dynamic else self.dataset.x
        if name == "all":
            if self.stream is not None:
                raise ConfigError(f"{self.stream.where}: a streamed run scores its test and "
                                  "validation rows and a sample of its training rows, not the "
                                  "whole file (score it with evaluate --data on a smaller file)")
            return x
        if name not in self.splits:
            raise ConfigError(f"unknown split {name!r}; use train, val, test or all")
        return x[self.splits[name]]

    def file_rows(self, name: str) -> np.ndarray | None:
        """Where the examples of split ``name`` are in the data (rows counting from 0, a
        table's header not counted), for messages about them; None for a streamed run (its
        held rows are a sample of the file)."""
        if self.stream is not None:
            return None
        return np.arange(len(self.dataset.x)) if name == "all" else self.splits[name]

    def training(self) -> np.ndarray | datasets.NpyStream:
        """The training examples as training sees them (probabilities when dynamic); a
        streamed run's stream."""
        if self.stream is not None:
            return self.stream
        return self.dataset.x[self.splits["train"]]

    def _fixed(self) -> np.ndarray:
        if "fixed" not in self.dataset.meta:
            draw = np.random.default_rng(0).random(self.dataset.x.shape)
            self.dataset.meta["fixed"] = (draw < self.dataset.x).astype(np.float64)
        return self.dataset.meta["fixed"]


def load_data(spec: str, binarize: float | str | None = None, header: str = "auto",
              missing: Sequence[str] | None = None, column_types: dict[str, str] | None = None
              ) -> datasets.Dataset:
    """Read a data set (``header``: whether a table's first row names its columns;
    ``missing``: extra tokens of missing cells, None when not asked for; ``column_types``:
    ``{"name": type}``; see :func:`elbokit.data.read_file`) and apply the run's
    preprocessing: binarization at a threshold, or ``"dynamic"`` (values must be
    probabilities in [0, 1]; they are sampled in training)."""
    data = datasets.load(spec, header, missing, column_types)
    if binarize is not None and "schema" in data.meta:
        raise ConfigError("--binarize takes data of numbers alone, not a table of typed columns "
                          "or missing cells")
    if binarize == "dynamic":
        outside = ((data.x < 0) | (data.x > 1)).any(axis=1)
        if outside.any():
            raise DataError(f"{data.source}: --binarize dynamic needs values in [0, 1] (read as "
                            f"probabilities), but {datasets.describe_rows(outside)} are outside")
    elif binarize is not None:
        data.x = datasets.binarize(data.x, binarize)
    return data


def prepare_data(data_config: dict, data: datasets.Dataset | None = None) -> RunData:
    """The data and split described by a run's ``config["data"]`` (``data``: already loaded).
    Data sets with an official split (MNIST) keep it: their test examples, and validation
    examples where the set names them; otherwise seeded fractions."""
    if data_config.get("stream"):
        return prepare_stream(data_config)
    if data is None:
        data = load_data(data_config["source"], data_config.get("binarize"),
                         data_config.get("header") or "auto", data_config.get("missing"),
                         data_config.get("column_types"))
    split = data_config["split"]
    if "test_index" in data.meta:
        splits = datasets.official_split(len(data.x), data.meta["test_index"],
                                         data.meta.get("val_index"), split["seed"],
                                         split["val_fraction"])
    else:
        splits = datasets.split_indices(len(data.x), split["seed"], split["test_fraction"],
                                        split["val_fraction"])
    check_validation_split(len(splits["val"]), len(data.x), split["val_fraction"], data.source)
    return RunData(data, splits, dynamic=data_config.get("binarize") == "dynamic")


def check_validation_split(n_val: int, n: int, val_fraction: float, where: str) -> None:
    """Refuse a validation split that rounds to no example while early stopping needs one
    (training would fail after the run directory is made)."""
    if val_fraction > 0 and n_val == 0:
        raise DataError(f"{where}: {n} example{'s leave' if n != 1 else ' leaves'} no validation "
                        f"example at --val-fraction {val_fraction:g}; use more data or "
                        "--val-fraction 0")


def data_record(spec: str, data: datasets.Dataset, binarize: float | None, seed: int,
                test_fraction: float, val_fraction: float,
                missing: Sequence[str] | None = None,
                column_types: dict[str, str] | None = None) -> dict:
    """``config["data"]`` of a new run. A table's header is recorded as read ("yes"/"no",
    whatever "auto" decided), so later commands read the file the same way, and its column
    names (``elbokit sample -o x.csv`` writes them, figures label columns with them); so are
    the missing-cell tokens and column types it was read with, when given."""
    source = spec if spec in datasets.NAMED else str(Path(spec).resolve())
    header = data.meta.get("header")
    return {
        "source": source, "binarize": binarize,
        **({} if header is None else {"header": "yes" if header else "no"}),
        **({} if missing is None else {"missing": list(missing)}),
        **({} if not column_types else {"column_types": dict(column_types)}),
        "columns": list(data.columns) if data.columns is not None else None,
        "split": {"seed": seed, "test_fraction": test_fraction, "val_fraction": val_fraction,
                  **({"official": True} if "test_index" in data.meta else {})},
        "n_examples": int(data.x.shape[0]), "dim": int(data.x.shape[1]),
        "image_shape": list(data.image_shape) if data.image_shape else None,
        "fingerprint": data.fingerprint,
    }


def column_names(data_config: dict) -> list[str] | None:
    """The names a run's table header gave its ``dim`` columns (``config["data"]``), or None
    (no header, not a table, a run from before they were recorded, or a hand-edited
    config.json whose names are not ``dim`` strings)."""
    names = data_config.get("columns")
    if (isinstance(names, list) and len(names) == data_config.get("dim")
            and all(isinstance(n, str) for n in names)):
        return names
    return None


def prepare_stream(data_config: dict) -> RunData:
    """A streamed run's data (``config["data"]`` with ``stream: {"ram_budget": bytes}``):
    seeded test and validation rows (the configured fractions, each at most a sixteenth of
    the budget as float64 rows) held out of the training stream, and a sample of as many
    training rows to score as the train split. Reads only those rows, not the file."""
    binarize = data_config.get("binarize")
    stream = datasets.NpyStream(data_config["source"], data_config["stream"]["ram_budget"],
                                binarize=None if binarize in (None, "dynamic") else binarize)
    if "n_examples" in data_config and (stream.n_rows, stream.dim) != (
            data_config["n_examples"], data_config["dim"]):
        raise DataError(f"{stream.where}: the file changed since the run was made (now "
                        f"{stream.n_rows} x {stream.dim}, then {data_config['n_examples']} x "
                        f"{data_config['dim']})")
    split, n, cap = data_config["split"], stream.n_rows, stream.holdout_rows
    n_test = min(round(n * split["test_fraction"]), cap)
    n_val = min(round((n - n_test) * split["val_fraction"]), cap)
    if n - n_test - n_val < 1:
        raise DataError(f"{n} examples leave none for training after the test and "
                        "validation splits")
    check_validation_split(n_val, n, split["val_fraction"], stream.where)
    test, val = stream.pick([n_test, n_val], split["seed"])
    training = stream.excluding(np.concatenate([test, val]))
    (sample,) = training.pick([cap], split["seed"] + 1)
    parts = [stream.read_rows(rows) for rows in (test, val, sample)]
    ends = np.cumsum([0, *map(len, parts)])
    dataset = datasets.Dataset(
        x=np.concatenate(parts), source=stream.where, image_shape=stream.image_shape,
        description=f"{stream.where}: {n} x {stream.dim} {stream.dtype}, streamed")
    splits = {name: np.arange(ends[i], ends[i + 1]) for i, name in enumerate(("test", "val", "train"))}
    return RunData(dataset, splits, dynamic=binarize == "dynamic", stream=training)


def stream_run(path: str, ram_budget: int, binarize: float | str | None, seed: int,
               test_fraction: float, val_fraction: float) -> tuple[dict, RunData]:
    """``config["data"]`` of a new streamed run, and its data (see :func:`prepare_stream`).
    The fingerprint covers the rows the run holds in memory (held out and sampled), not
    every row: hashing a file larger than memory on every later command would read all of
    it; the file's shape is checked too."""
    record: dict = {
        "source": str(Path(path).resolve()), "binarize": binarize,
        "stream": {"ram_budget": ram_budget},
        "split": {"seed": seed, "test_fraction": test_fraction, "val_fraction": val_fraction},
    }
    run = prepare_stream(record)
    assert run.stream is not None
    record.update(n_examples=run.stream.n_rows, dim=run.stream.dim,
                  image_shape=list(run.stream.image_shape) if run.stream.image_shape else None,
                  dtype=str(run.stream.dtype), fingerprint=run.dataset.fingerprint)
    return record, run


def create_run_dir(out: Path, overwrite: bool) -> None:
    """Make ``out`` for a new run; an existing run is replaced only with ``overwrite``."""
    if out.exists():
        if not out.is_dir():
            raise ConfigError(f"--out {out}: exists and is not a directory")
        is_run = (out / "config.json").exists()
        if any(out.iterdir()):
            if not overwrite:
                raise ConfigError(f"--out {out}: already exists; use --resume to continue it, "
                                  "--overwrite to replace it, or another --out")
            if not is_run:
                raise ConfigError(f"--out {out}: not an elbokit run directory; refusing to "
                                  "overwrite it")
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def check_resume_epochs(run_dir: Path, own: int, epochs: int | None) -> int | None:
    """Refuse to resume ``run_dir`` for fewer epochs than its checkpoint has trained (training
    would stop at once while config.json said fewer epochs than summary.json), before
    anything is written. ``own``: the run's epochs (config.json); ``epochs``: ``--epochs``
    (None: keep ``own``). Returns the epochs the checkpoint has finished (None: no checkpoint).
    As many as it has finished: nothing is trained, the run is finalized again."""
    progress = checkpoint_progress(run_dir)
    if progress is None:
        return None
    finished, step = progress
    # A checkpoint written mid-epoch (Ctrl-C) needs that epoch to be finished.
    needed, at = ((finished + 1, f"in the middle of epoch {finished + 1}") if step
                  else (finished, f"already at epoch {finished}"))
    if epochs is not None and epochs < needed:
        raise ConfigError(f"{run_dir}: the run is {at}; --epochs must be at least {needed} "
                          + (f"(or omitted to keep the run's own, {own})" if own >= needed
                             else "to resume it"))
    if epochs is None and own < needed:
        raise CheckpointError(f"{run_dir}/config.json asks for {own} epochs, but the checkpoint is "
                              f"{at}; pass --epochs {needed} or more")
    return finished


def write_config(run_dir: Path, config: dict) -> None:
    write_json(run_dir / "config.json", stamp(FORMAT, config))


RUN_ORIGINS = {"classifier": "elbokit classify --out"}  # other kinds: elbokit fit


def read_config(run_dir: str | Path, kinds: Sequence[str] | None = None) -> dict:
    """A run's config.json, refusing directories that are not elbokit runs and, with
    ``kinds``, runs of another kind (a classifier run given to ``evaluate``, ...)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: not a run directory (a file)" if run_dir.exists()
                              else f"{run_dir}: no such run directory")
    if not (run_dir / "config.json").is_file():
        raise CheckpointError(f"{run_dir}: not an elbokit run (no config.json)")
    config = check_record(read_json(run_dir / "config.json"), FORMAT, run_dir / "config.json")
    kind = config.get("kind", "vae")
    if not isinstance(kind, str):
        raise CheckpointError(f"{run_dir}/config.json: malformed run configuration (kind "
                              f"{kind!r})")
    if kinds is not None and kind not in kinds:
        raise CheckpointError(f"{run_dir}: a {kind!r} run (from "
                              f"{RUN_ORIGINS.get(kind, 'elbokit fit')}), not a "
                              f"{' or '.join(repr(k) for k in kinds)} run")
    missing = _malformed(config, REQUIRED.get(kind, {}))
    if missing:
        raise CheckpointError(f"{run_dir}/config.json: malformed {kind} run configuration "
                              f"({missing})")
    return config


# What the commands read from a run's config.json, by kind: key -> type, or a nested
# {key: type} for the keys of a JSON object. Runs of other kinds are checked by their reader.
_DATA = {"source": str, "fingerprint": str,
         "split": {"seed": int, "test_fraction": (int, float), "val_fraction": (int, float)}}
REQUIRED: dict[str, dict] = {
    "vae": {"data": _DATA, "params": dict},
    "mixture": {"data": _DATA, "params": dict},
    "custom": {"data": _DATA, "params": dict, "model": {"reference": str}},
    "sweep": {"betas": list, "params": dict},
    "classifier": {"features": {"type": str}, "methods": list, "threshold": (int, float)},
}


def _malformed(record: dict, required: dict, prefix: str = "") -> str:
    """What of ``required`` is missing or of the wrong type in ``record`` ('' when nothing)."""
    for key, kind in required.items():
        value = record.get(key)
        if value is None:
            return f"missing {prefix}{key}"
        if isinstance(kind, dict):
            if not isinstance(value, dict):
                return f"{prefix}{key} is not an object"
            found = _malformed(value, kind, f"{prefix}{key}.")
            if found:
                return found
        elif not isinstance(value, kind) or isinstance(value, bool):
            return f"{prefix}{key} is a {type(value).__name__}"
    return ""


def check_fingerprint(run: RunData, config: dict) -> None:
    if run.dataset.fingerprint != config["data"]["fingerprint"]:
        raise DataError(f"{config['data']['source']}: the data changed since the run was "
                        "trained; pass --data to score a file explicitly")
