"""Data: named data sets, file readers, validation and seeded splits.

Everything returns a :class:`Dataset` of ``x: [n, dim]`` float64 (images are flattened and
their shape remembered). Any problem raises :class:`~elbokit.errors.DataError` with the file
and the rows or line at fault.

A table with empty cells or text is read with column types (:mod:`elbokit.data.columns`):
its ``x`` holds numbers and codes, NaN where a cell is missing, and ``meta["schema"]`` types
its columns; a table of numbers is read as before, without a schema.
"""

from __future__ import annotations

import hashlib
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import ConfigError, DataError, DataWarning, ElbokitError, brief, describe_column, describe_rows
from ..registry import Registry
from .columns import (
    LEVEL_KINDS,
    MixedTable,
    Schema,
    missing_tokens,
    mixed_table,
    read_mixed,
    schema_for_numbers,
)
from .stream import NpyStream as NpyStream  # data larger than memory
from .stream import parse_size as parse_size
from .table import HEADER_CHOICES as HEADER_CHOICES
from .table import NotANumber, numeric_table, split_table
from .table import read_csv as read_csv  # text.py's labelled tables use the same rules


@dataclass
class Dataset:
    """``x: [n, dim]`` (float64), optional labels ``y: [n]``, and where it came from;
    ``columns``: the ``dim`` names a table's header gave its columns."""

    x: np.ndarray
    source: str
    y: np.ndarray | None = None
    image_shape: tuple[int, ...] | None = None
    description: str = ""
    meta: dict = field(default_factory=dict)
    columns: tuple[str, ...] | None = None

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the values, to tell whether a run's data changed since training."""
        return hashlib.sha256(np.ascontiguousarray(self.x, dtype=np.float64).tobytes()).hexdigest()


# -- named data sets -----------------------------------------------------------------------

# Loaders of the data sets --data accepts by name (a loader takes no argument and returns the
# Dataset). ``NAMED`` is the same registry under its older name.
DATASETS: Registry[Callable[[], Dataset]] = Registry("data set")
NAMED = DATASETS


def _digits(binary: bool) -> Dataset:
    from sklearn.datasets import load_digits  # ships with scikit-learn: no download

    bunch = load_digits()
    x = bunch.data / 16.0  # pixel intensities 0..16 -> [0, 1]
    if binary:
        x = (x > 0.5).astype(np.float64)
    kind = "binarized at 8/16" if binary else "grey levels scaled to [0, 1]"
    return Dataset(x=x, y=bunch.target.astype(np.int64), source="digits-gray" if not binary
                   else "digits", image_shape=(8, 8),
                   description=f"scikit-learn handwritten digits, 1797 x 8x8, {kind}")


@DATASETS.register("digits", help="1797 handwritten digits, 8x8 pixels binarized (0/1), "
                   "labels 0-9; bundled")
def _binary_digits() -> Dataset:
    return _digits(True)


@DATASETS.register("digits-gray", help="the same digits as grey levels in [0, 1] (Gaussian "
                   "likelihood); bundled")
def _gray_digits() -> Dataset:
    return _digits(False)


@DATASETS.register("mnist", help="MNIST, 70000 x 28x28 grey levels in [0, 1], labels; official "
                   "60k/10k split; from $ELBOKIT_DATA (--binarize dynamic for a Bernoulli "
                   "likelihood)")
def _mnist() -> Dataset:
    from .mnist import load_mnist

    return load_mnist()


@DATASETS.register("binarized-mnist", help="the fixed binarized MNIST (Larochelle & Murray), "
                   "50k/10k/10k official split, no labels; from $ELBOKIT_DATA")
def _binarized_mnist() -> Dataset:
    from .mnist import load_binarized_mnist

    return load_binarized_mnist()


# -- files ---------------------------------------------------------------------------------

def check_array_kind(dtype: np.dtype, shape: tuple[int, ...], where: str) -> None:
    """Refuse arrays that cannot be data: not real numbers (objects, strings, records,
    complex numbers, dates and durations), or fewer than 2 axes. Shared by the readers here
    and the memory-mapped stream, which sees only an array's header."""
    if dtype.kind == "c":
        raise DataError(f"{where}: expected real numbers, found dtype {dtype}")
    if dtype.kind not in "biuf":  # bool, int, unsigned, float
        raise DataError(f"{where}: expected numbers, found dtype {dtype}")
    if len(shape) < 2:
        raise DataError(f"{where}: expected a 2-D array [examples, features] "
                        f"(or images [n, h, w]), found shape {shape}")


def _as_matrix(array: np.ndarray, where: str) -> tuple[np.ndarray, tuple[int, ...] | None]:
    """Numeric ``[n, dim]`` float64 from an array of 2 or more axes (images get flattened)."""
    check_array_kind(array.dtype, array.shape, where)
    image_shape = tuple(array.shape[1:]) if array.ndim > 2 else None
    return array.reshape(array.shape[0], int(np.prod(array.shape[1:]))).astype(np.float64), image_shape


def read_npy_header(file: BinaryIO, size: int, where: str
                    ) -> tuple[np.dtype, tuple[int, ...], bool, int]:
    """``(dtype, shape, fortran_order, data bytes)`` from the header of the ``.npy`` bytes
    in ``file`` (``size`` bytes in all), refusing before any array is allocated: what is not
    ``.npy``, a malformed header, object arrays (which would need unpickling, never done),
    and data shorter than the header promises (a truncated file, or a header claiming
    petabytes)."""
    try:
        version = np.lib.format.read_magic(file)
        if version not in ((1, 0), (2, 0), (3, 0)):
            raise ValueError(f"unsupported .npy format version {version}")
        # Version 3 differs from 2 only in allowing UTF-8 field names (records: refused).
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read(file)  # headers over 10,000 bytes are refused
    except Exception as e:  # ValueError, EOFError, SyntaxError, TokenError, ... on bad bytes
        raise DataError(f"{where}: cannot read as .npy ({brief(e)})") from None
    if dtype.hasobject:
        raise DataError(f"{where}: holds Python objects (dtype {dtype}), which elbokit never "
                        "unpickles; save an array of numbers")
    if any(n < 0 for n in shape):
        raise DataError(f"{where}: cannot read as .npy (negative size in shape {tuple(shape)})")
    needed = dtype.itemsize
    for n in shape:
        needed *= n  # Python integers: a huge shape cannot overflow
    held = size - file.tell()
    if needed > held:
        raise DataError(f"{where}: truncated: its header says shape {tuple(shape)} of {dtype} "
                        f"({needed:,} bytes), but the file holds {max(held, 0):,} bytes of data")
    return dtype, tuple(shape), fortran, needed


def _read_npy(path: Path) -> Dataset:
    with path.open("rb") as f:
        dtype, shape, _, _ = read_npy_header(f, path.stat().st_size, str(path))
    check_array_kind(dtype, shape, str(path))
    array = np.load(path, allow_pickle=False)
    x, shape = _as_matrix(array, str(path))
    return Dataset(x=x, source=str(path), image_shape=shape)


def _npz_array(archive: zipfile.ZipFile, name: str, where: str) -> np.ndarray:
    """Member ``name.npy`` of an ``.npz``, its header checked before it is read."""
    info = archive.getinfo(f"{name}.npy")
    with archive.open(info) as f:
        read_npy_header(f, info.file_size, where)
        f.seek(0)
        return np.lib.format.read_array(f, allow_pickle=False)


def _read_npz(path: Path) -> Dataset:
    with zipfile.ZipFile(path) as archive:
        keys = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
        name = next((k for k in ("x", "X", "data") if k in keys), keys[0] if len(keys) == 1 else None)
        if name is None:
            raise DataError(f"{path}: cannot tell which array holds the data (found "
                            f"{', '.join(keys) or 'none'}); name it 'x' (labels, if any, 'y')")
        where = f"{path}[{name}]"
        array = _npz_array(archive, name, where)
        check_array_kind(array.dtype, array.shape, where)
        x, shape = _as_matrix(array, where)
        y = _npz_array(archive, "y", f"{path}[y]") if "y" in keys and name != "y" else None
    if y is not None:
        check_labels(y, len(x), f"{path}[y]")
    return Dataset(x=x, source=str(path), y=y, image_shape=shape)


def check_labels(y: np.ndarray, n: int, where: str) -> None:
    """Refuse labels that are not one per example, or not usable as classes: one axis of
    ``n`` integers, booleans, strings or finite numbers."""
    if y.ndim != 1:
        raise DataError(f"{where}: expected one label per example (shape ({n},)), found shape "
                        f"{y.shape}")
    if len(y) != n:
        raise DataError(f"{where}: {len(y)} labels for {n} examples")
    if y.dtype.kind not in "biufU":
        raise DataError(f"{where}: labels must be integers, booleans, strings or numbers, "
                        f"found dtype {y.dtype}")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        bad = ~np.isfinite(y)
        raise DataError(f"{where}: {describe_rows(bad)} {'has' if bad.sum() == 1 else 'have'} "
                        "a NaN or inf label")


def _read_table(path: Path, header: str = "auto", missing: Sequence[str] | None = None,
                column_types: dict[str, str] | None = None) -> Dataset:
    """A CSV/TSV table: of numbers (see :mod:`elbokit.data.table`) unless a cell is missing
    or text, or ``missing`` or ``column_types`` is given: then typed by column (see
    :mod:`elbokit.data.columns`). The file is read and split once either way."""
    raw = split_table(path, header, missing_tokens(missing))
    if missing is None and column_types is None:
        try:
            x, columns = numeric_table(raw, header)
        except NotANumber as e:
            if e.numeric:  # numbers written otherwise (1,5; 1;2): the file's error, not text
                raise
        else:
            return Dataset(x=x, source=str(path), columns=columns,
                           meta={"header": columns is not None})
    return _mixed_dataset(mixed_table(raw, header, missing or (), column_types), path)


def _read_parquet(path: Path, header: str = "auto", missing: Sequence[str] | None = None,
                  column_types: dict[str, str] | None = None) -> Dataset:
    """A Parquet table, typed by column (needs pyarrow)."""
    return _mixed_dataset(read_mixed(path, header, missing or (), column_types), path)


def _mixed_dataset(table: MixedTable, path: Path) -> Dataset:
    """A table of typed columns as a Dataset: ``x`` its numbers and codes (NaN: missing)."""
    return Dataset(x=table.x, source=str(path), columns=tuple(c.name for c in table.schema.columns),
                   meta={"schema": table.schema, "table": table, "header": table.header})


READERS: dict[str, Callable[..., Dataset]] = {
    ".npy": _read_npy, ".npz": _read_npz, ".csv": _read_table, ".tsv": _read_table,
    ".tab": _read_table, ".txt": _read_table,
}
TABLE_READERS = (_read_table, _read_parquet)  # readers that take header, missing, column types
PARQUET = ".parquet"  # read when pyarrow is installed; not in READERS, whose list messages show


def read_file(path: str | Path, header: str = "auto", missing: Sequence[str] | None = None,
              column_types: dict[str, str] | None = None) -> Dataset:
    """Read ``.npy``, ``.npz`` (array ``x``, optional ``y``), a CSV/TSV table or a Parquet
    file (``header``: whether a table's first row names the columns: "auto", "yes" or "no";
    see :mod:`elbokit.data.table`).

    A table with a missing (empty, ``NA``, ...) or text cell, or read with ``missing`` (a
    tuple of extra missing-cell tokens, possibly empty; None: not given) or ``column_types``
    (``{"name": kind}``), is typed by column (:func:`elbokit.data.columns.read_mixed`):
    ``meta["schema"]``, ``meta["table"]``, NaN where a cell is missing. An array read with
    ``missing`` or ``column_types`` gets ``meta["schema"]`` from its numbers
    (:func:`~elbokit.data.columns.schema_for_numbers`; with ``missing``, NaN marks a missing
    cell)."""
    path = Path(path)
    reader = _read_parquet if path.suffix.lower() == PARQUET else READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unknown file type {path.suffix!r}; "
                        f"use one of {', '.join(READERS)}")
    if not path.is_file():
        raise DataError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        if reader in TABLE_READERS:
            data = reader(path, header, missing, column_types)
        else:
            data = reader(path)
            if missing is not None or column_types:
                data.meta["schema"] = schema_for_numbers(data.x, column_types, str(path))
    except ElbokitError:
        raise
    except MemoryError:
        raise DataError(f"{path}: too large to read into memory") from None
    except Exception as e:  # whatever numpy, zipfile or zlib raise on bytes that are not data
        raise DataError(f"{path}: cannot read as {path.suffix} ({brief(e)})") from None
    return data


def load(spec: str, header: str = "auto", missing: Sequence[str] | None = None,
         column_types: dict[str, str] | None = None) -> Dataset:
    """A named data set (see :data:`DATASETS`) or a file path (``header``, ``missing``,
    ``column_types``: see :func:`read_file`); validated for finite values (NaN allowed, as a
    missing cell, in a typed table and in an array read with ``missing``), and a file's rows
    for extreme outliers (a one-line warning, see :func:`warn_outliers`)."""
    if spec in DATASETS:
        if column_types:
            raise ConfigError(f"column types apply to table files, not to the data set {spec!r}")
        data = DATASETS[spec]()
    elif Path(spec).suffix.lower() in (*READERS, PARQUET) or Path(spec).exists():
        data = read_file(spec, header, missing, column_types)
    else:
        raise DataError(f"unknown data set {spec!r}: use one of {', '.join(DATASETS)} "
                        f"or a path to a {', '.join(READERS)} file")
    schema = data.meta.get("schema")
    # NaN in a file of numbers read without --missing: refused, check_matrix saying how.
    check_matrix(data.x, data.source,
                 missing="table" in data.meta or (schema is not None and missing is not None))
    if spec not in DATASETS:
        warn_outliers(data.x, data.source, data.columns, schema)
    return data


# The largest magnitude data may have: the models square differences of values (a Gaussian
# density's variance, standardization), which overflows float32 (about 3.4e38, the default
# precision) beyond about 1.8e19.
MAX_ABS_VALUE = 1e18


def check_matrix(x: np.ndarray, where: str, dim: int | None = None, missing: bool = False) -> None:
    """Refuse empty data, a wrong width, NaN/inf and values beyond :data:`MAX_ABS_VALUE`
    (naming the rows). ``missing``: NaN marks a missing cell and is allowed, but not in
    every cell of a row (inf still is refused)."""
    if x.ndim != 2:
        raise DataError(f"{where}: expected [examples, features], found shape {x.shape}")
    if x.shape[0] == 0:
        raise DataError(f"{where}: no examples")
    if x.shape[1] == 0:
        raise DataError(f"{where}: no features (0 columns)")
    if dim is not None and x.shape[1] != dim:
        raise DataError(f"{where}: {x.shape[1]} features per example, but the model "
                        f"expects {dim}")
    if missing:
        bad = np.isinf(x).any(axis=1)
        if bad.any():
            raise DataError(f"{where}: {describe_rows(bad)} contain inf")
        empty = np.isnan(x).all(axis=1)
        if empty.any():
            raise DataError(f"{where}: {describe_rows(empty)} {'has' if empty.sum() == 1 else 'have'} "
                            "every value missing (NaN)")
    else:
        bad = ~np.isfinite(x).all(axis=1)
        if bad.any():
            hint = ("; if NaN marks missing cells, pass --missing (missing=True in Python)"
                    if np.isnan(x[bad]).any() else "")
            raise DataError(f"{where}: {describe_rows(bad)} contain NaN or inf{hint}")
    huge = (np.abs(x) > MAX_ABS_VALUE).any(axis=1)
    if huge.any():
        raise DataError(f"{where}: {describe_rows(huge)} "
                        f"{'has' if huge.sum() == 1 else 'have'} values of magnitude above "
                        f"{MAX_ABS_VALUE:g}, whose squares overflow float32; rescale the data")


# A value this many interquartile ranges from its column's median is an extreme outlier: for
# normal data 67 standard deviations (a log-density of -2,250 nats in that value alone),
# while long-tailed data rarely reach it (a lognormal's largest of 10^5 values, sigma = 1:
# about 50).
OUTLIER_IQRS = 100
QUANTILE_ROWS = 10_000  # the quantiles come from at most this many rows, evenly spaced


def warn_outliers(x: np.ndarray, where: str, columns: tuple[str, ...] | None = None,
                  schema: Schema | None = None) -> None:
    """Warn (one line, :class:`~elbokit.errors.DataWarning`) when rows of ``x: [n, dim]``
    hold a value more than :data:`OUTLIER_IQRS` interquartile ranges from its column's
    median: a header read as data, a typo, a value in another unit. Such a row dominates a
    Gaussian model's standardization, its fit and its scores. Columns whose quartiles
    coincide (mostly one value: binary pixels, sparse counts) are not judged; nor are fewer
    than 4 rows, missing cells (NaN), or a typed table's binary and categorical columns
    (``schema``: their values are codes); its positive (log-normal) columns are judged by
    log x."""
    n = len(x)
    if n < 4:
        return
    kinds = schema.kinds if schema is not None and len(schema.columns) == x.shape[1] else ()
    values = x  # as written, for the message
    positive = [j for j, kind in enumerate(kinds) if kind == "positive"]
    if positive:  # log-normal columns: judged on the scale they are modelled on
        x = x.copy()
        with np.errstate(all="ignore"):
            x[:, positive] = np.log(x[:, positive])
    sample = x[::max(1, n // QUANTILE_ROWS)]
    if np.isnan(sample).any():
        with warnings.catch_warnings():  # a column missing in every sampled row: not judged
            warnings.simplefilter("ignore", RuntimeWarning)
            q1, median, q3 = np.nanpercentile(sample, [25, 50, 75], axis=0)
    else:
        q1, median, q3 = np.percentile(sample, [25, 50, 75], axis=0)
    codes = np.array([j < len(kinds) and kinds[j] in LEVEL_KINDS for j in range(x.shape[1])],
                     dtype=bool)
    judged = np.flatnonzero((q3 > q1) & ~codes)
    if len(judged) == 0:
        return
    center, iqr = median[judged], (q3 - q1)[judged]
    outlying = np.zeros(n, dtype=bool)
    for start in range(0, n, 4096):  # a block of rows at a time: no copy of the whole of x
        far = np.abs(x[start:start + 4096, judged] - center) > OUTLIER_IQRS * iqr
        outlying[start:start + len(far)] = far.any(axis=1)
    if not outlying.any():
        return
    rows = np.flatnonzero(outlying)  # the rare case: measure how far
    distance = np.nan_to_num(np.abs(x[rows][:, judged] - center) / iqr, nan=-1.0)
    i, j = np.unravel_index(np.argmax(distance), distance.shape)
    row, col, distance = int(rows[i]), int(judged[j]), float(distance[i, j])
    what = (f"are extreme outliers (the worst: {values[row, col]:.6g} in row {row}, "
            if outlying.sum() > 1 else f"is an extreme outlier ({values[row, col]:.6g} in ")
    scale = "log " if col in positive else ""
    shown = np.exp(median[col]) if col in positive else median[col]
    warnings.warn(f"{where}: {describe_rows(outlying)} {what}{describe_column(col, columns)} "
                  f"is {distance:.3g} {scale}interquartile ranges from the column's median "
                  f"{shown:.6g}): a header read as data, a typo or another unit? Such rows "
                  "dominate a Gaussian model's fit and scores", DataWarning, stacklevel=3)


def check_probabilities(x: np.ndarray, where: str) -> None:
    """Refuse values outside [0, 1] in ``x: [n, dim]`` read as probabilities (dynamic
    binarization draws x ~ Bernoulli(values)), naming the rows."""
    outside = ((x < 0) | (x > 1)).any(axis=1)
    if outside.any():
        raise DataError(f"{where}: dynamic binarization needs values in [0, 1], but "
                        f"{describe_rows(outside)} are outside")


def as_matrix(x: object, where: str, dim: int | None = None) -> np.ndarray:
    """``x`` as checked float64 ``[n, dim]`` (one example may be given as a vector): refuses
    what is not numbers, then as :func:`check_matrix`."""
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{where}: expected numbers") from None
    if x.ndim == 1:
        x = x[None, :]
    check_matrix(x, where, dim)
    return x


def binarize(x: np.ndarray, threshold: float) -> np.ndarray:
    """1 where ``x > threshold``, else 0."""
    return (x > threshold).astype(np.float64)


def split_indices(n: int, seed: int, test_fraction: float, val_fraction: float
                  ) -> dict[str, np.ndarray]:
    """Seeded disjoint ``train``/``val``/``test`` index arrays covering ``range(n)``.

    ``test_fraction`` of all examples is held out for testing; ``val_fraction`` of the rest
    for validation (early stopping). The same arguments always give the same split.
    """
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    n_val = int(round((n - n_test) * val_fraction))
    if n - n_test - n_val < 1:
        raise DataError(f"{n} examples leave none for training after the test and "
                        "validation splits")
    return {"test": np.sort(perm[:n_test]), "val": np.sort(perm[n_test:n_test + n_val]),
            "train": np.sort(perm[n_test + n_val:])}


def labelled_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` examples to keep labelled (semi-supervised experiments).

    Stratified: each class gets a share proportional to its frequency, rounded by largest
    remainder, and at least one example (so 10 labels of SMS spam hold one spam message,
    not, with probability 0.24, none); which examples is fixed by ``seed``.
    """
    classes, codes = np.unique(np.asarray(labels), return_inverse=True)
    counts = np.bincount(codes)
    if not len(classes) <= n <= len(codes):
        raise DataError(f"cannot keep {n} labels: need between {len(classes)} (one per class) "
                        f"and {len(codes)} (every example)")
    quota = n * counts / counts.sum()
    take = np.minimum(np.maximum(np.floor(quota).astype(int), 1), counts)
    while take.sum() != n:  # largest remainder first, within each class's size
        room = np.where(take < counts, quota - take, -np.inf) if take.sum() < n else \
            np.where(take > 1, take - quota, -np.inf)
        take[int(np.argmax(room))] += 1 if take.sum() < n else -1
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(codes == c), k, replace=False)
                                   for c, k in enumerate(take)]))


def official_split(n: int, test_index: np.ndarray, val_index: np.ndarray | None, seed: int,
                   val_fraction: float) -> dict[str, np.ndarray]:
    """A data set's own split: its ``test_index`` (and ``val_index`` when it has one; else a
    seeded ``val_fraction`` of the remaining examples) and the rest for training."""
    rest = np.setdiff1d(np.arange(n), test_index)
    if val_index is None:
        perm = np.random.default_rng(seed).permutation(rest)
        val_index = np.sort(perm[:int(round(len(rest) * val_fraction))])
    train = np.setdiff1d(rest, val_index)
    return {"test": np.sort(test_index), "val": np.sort(val_index), "train": train}
