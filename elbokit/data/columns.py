"""Tables of mixed column types with missing cells: a type per column, inferred or given.

:func:`read_mixed` reads a CSV/TSV (or Parquet) table whose columns hold numbers, counts,
yes/no answers or categories, some cells empty, into a :class:`MixedTable`: ``x: [rows,
columns]`` float64 (numbers as read, levels as codes 0, 1, ..., NaN where a cell is missing)
and a :class:`Schema` that types each column. The file is split as a table of numbers is
(:func:`elbokit.data.table.split_table`: separator, header, index column, the same messages);
then each column is typed on its non-missing cells:

- **numbers**: exactly 2 distinct values: ``binary``; integers >= 0 written as integers
  (``181.0`` is a measurement) and not underdispersed (variance at least
  :data:`UNDERDISPERSION` times the mean; a year is not a count): counts, ``negbin`` when
  the variance exceeds :data:`OVERDISPERSION` times the mean, else ``poisson``; all > 0
  and right-skewed (skewness > 1, and log x less skewed): ``positive`` (log-normal);
  otherwise ``real``.
- **text**: 2 distinct values: ``binary``; more: ``categorical``. Levels are sorted, numbers
  by value (``"1", "2", "10"``), code ``i`` is ``levels[i]``.
- **left out** (in :attr:`Schema.skipped`, with why): constant columns, identifiers (text or
  integers, every value distinct, at least :data:`IDENTIFIER_ROWS` of them; text with more
  distinct values than :data:`IDENTIFIER_SHARE` of its cells) and columns with every cell
  missing -- unless the column types given name the column.

Cells in :data:`MISSING_TOKENS` (after stripping spaces), and numbers that parse as NaN,
are missing; ``missing`` adds tokens. A row with every modelled cell missing is refused
(naming its line), but a line of empty fields only (``,,``) is a blank line, skipped as in
a table of numbers. A column mixing numbers and text is refused, naming a
line of each, unless typed ``categorical``. New data to score or impute are read with the
fitted schema (:func:`read_with_schema`): each cell by its column's type, an unseen level
refused with its line. pandas DataFrames are read the same way (:func:`read_frame`); pandas
is imported only there, never by importing this module.
"""

from __future__ import annotations

import csv
import io
import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError, brief, describe_column, describe_rows
from .table import (
    RawTable,
    check_header_width,
    check_widths,
    hint,
    index_column,
    looks_numeric,
    numeric_header,
    split_table,
    warn_index_dropped,
    warn_numeric_header,
)

KINDS = ("real", "positive", "poisson", "negbin", "binary", "categorical")
COLUMN_TYPES = KINDS + ("skip",)  # what column types may say ("skip": leave the column out)
NUMERIC_KINDS = ("real", "positive", "poisson", "negbin")
COUNT_KINDS = ("poisson", "negbin")
LEVEL_KINDS = ("binary", "categorical")
MISSING_TOKENS = ("", "NA", "N/A", "NaN", "nan", "NULL", "null", "None")

IDENTIFIER_ROWS = 10  # an all-distinct column of fewer values may be a small sample, not ids
OVERDISPERSION = 1.5  # variance / mean above which counts are negative binomial (Poisson: 1)
# Variance / mean below which integers are not counts: counts are rarely underdispersed,
# while a year (2007-2009: 0.0003) or a cylinder count of an engine is a measurement.
UNDERDISPERSION = 0.5
# A text column with more distinct values than this share of its cells is identifier-like
# (names of cars: 311 in 406 rows): a categorical of them would have nothing to learn.
IDENTIFIER_SHARE = 0.5
SKEWNESS = 1.0  # the skewness above which positive numbers are log-normal candidates
MAX_DECIMALS = 17  # float64 holds no more significant digits
SHOWN_LEVELS = 4  # levels listed by Schema.describe and in messages


# -- the schema ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    """One modelled column: its ``kind`` (one of :data:`KINDS`); for ``binary`` and
    ``categorical``, ``levels``: the values as text, sorted (numbers by value), code ``i``
    meaning ``levels[i]``; for ``real`` and ``positive``, ``decimals``: the most digits after
    the point seen, to write values back as the file wrote them."""

    name: str
    kind: str
    levels: tuple[str, ...] = ()
    decimals: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(str(v) for v in self.levels))
        if self.kind not in KINDS:
            raise ConfigError(f"column {self.name!r}: unknown type {self.kind!r}; choose from "
                              f"{', '.join(KINDS)}")
        if self.kind == "binary" and len(self.levels) != 2:
            raise ConfigError(f"column {self.name!r}: a binary column has 2 levels, not "
                              f"{len(self.levels)}")
        if self.kind == "categorical" and len(self.levels) < 2:
            raise ConfigError(f"column {self.name!r}: a categorical column needs at least 2 "
                              "levels")
        if self.kind in NUMERIC_KINDS and self.levels:
            raise ConfigError(f"column {self.name!r}: a {self.kind} column has no levels")

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "levels": list(self.levels),
                "decimals": self.decimals}

    @classmethod
    def from_dict(cls, d: dict) -> Column:
        try:
            return cls(name=str(d["name"]), kind=str(d["kind"]),
                       levels=tuple(str(v) for v in d.get("levels", ())),
                       decimals=int(d.get("decimals", 0)))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError("a table column must be a dictionary with 'name', 'kind' and "
                              f"optional 'levels' and 'decimals', not {brief(ValueError(repr(d)), 80)}"
                              ) from None


@dataclass(frozen=True)
class Schema:
    """The typed columns of a table: ``columns`` the modelled ones in file order (one per
    column of ``x``), ``names`` every column of the file in order (modelled or not),
    ``skipped`` ``(name, why)`` for the columns left out."""

    columns: tuple[Column, ...]
    names: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "skipped", tuple((str(n), str(w)) for n, w in self.skipped))

    @property
    def kinds(self) -> tuple[str, ...]:
        """Each modelled column's kind, in order."""
        return tuple(c.kind for c in self.columns)

    def to_dict(self) -> dict:
        """A JSON-safe dictionary (:meth:`from_dict` reads it back)."""
        return {"columns": [c.to_dict() for c in self.columns], "names": list(self.names),
                "skipped": [[n, why] for n, why in self.skipped]}

    @classmethod
    def from_dict(cls, d: dict) -> Schema:
        if not isinstance(d, dict) or not isinstance(d.get("columns"), list):
            raise ConfigError("a table schema must be a dictionary with a list of 'columns'")
        columns = tuple(Column.from_dict(c) for c in d["columns"])
        try:
            names = tuple(str(n) for n in d.get("names", [c.name for c in columns]))
            skipped = tuple((str(n), str(why)) for n, why in d.get("skipped", []))
        except (TypeError, ValueError):
            raise ConfigError("a table schema's 'names' must be a list of names and 'skipped' "
                              "a list of [name, why] pairs") from None
        return cls(columns=columns, names=names, skipped=skipped)

    def describe(self, x: np.ndarray) -> str:
        """The table as a model will see it, ``x: [rows, len(columns)]`` (NaN: missing), for
        printing before training: one line per column (name, type, levels or range and mean,
        missing cells and their share), then the columns left out and why. Plain text, in
        aligned columns."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.columns):
            raise DataError(f"the table has {len(self.columns)} typed columns, but the values "
                            f"have shape {x.shape}")
        n = len(x)
        rows = [("column", "type", "values", "missing")]
        for j, column in enumerate(self.columns):
            v = x[:, j]
            absent = int(np.isnan(v).sum())
            rows.append((_shown(column.name), column.kind, _summary(column, v[~np.isnan(v)]),
                         f"{absent} ({100 * absent / n if n else 0:.1f}%)"))
        sizes = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.rjust(sizes[i]) if i == 3 else c.ljust(sizes[i])
                           for i, c in enumerate(r)).rstrip() for r in rows]
        if self.skipped:
            width = max(len(_shown(name)) for name, _ in self.skipped)
            lines.append(f"left out ({len(self.skipped)}):")
            lines += [f"  {_shown(name).ljust(width)}  {why}" for name, why in self.skipped]
        return "\n".join(lines)


def _shown(name: str) -> str:
    """A column name on one line (JSON-quoted when it holds a newline or a tab), at most 40
    characters."""
    shown = name if len(name) <= 40 else name[:37] + "..."
    return shown if shown.isprintable() else json.dumps(shown, ensure_ascii=False)


def _summary(column: Column, v: np.ndarray) -> str:
    """Levels (the first few) or range and mean of a column's observed values ``v``."""
    if column.kind in LEVEL_KINDS:
        shown = ", ".join(_shown(level) for level in column.levels[:SHOWN_LEVELS])
        more = ", ..." if len(column.levels) > SHOWN_LEVELS else ""
        return f"{shown}{more} ({len(column.levels)} levels)"
    if len(v) == 0:
        return "no values"
    digits = column.decimals if column.kind in ("real", "positive") else 0

    def number(value: float) -> str:
        return f"{value:.{digits}f}" if abs(value) < 1e15 else f"{value:.6g}"

    return f"{number(v.min())} to {number(v.max())}, mean {v.mean():.4g}"


@dataclass
class MixedTable:
    """A table read with column types: ``x: [rows, len(schema.columns)]`` float64 (numbers as
    read, binary and categorical cells as codes, NaN where missing), its ``schema``, and to
    write it back: ``cells`` every data row's raw fields (every field of the file, a dropped
    row index too), ``fields`` the column name of each field (``""`` for a dropped row
    index), ``header_row`` the header's raw fields (None without one), ``delimiter``;
    ``lines``: the file line each row starts on (a DataFrame's or Parquet file's: the row's
    position, counting from 0), for messages."""

    x: np.ndarray
    schema: Schema
    cells: list[list[str]]
    lines: np.ndarray
    header: bool
    delimiter: str
    header_row: list[str] | None = None
    fields: tuple[str, ...] = ()

    def field(self, name: str) -> int:
        """The position of column ``name`` in each row of ``cells``."""
        return (self.fields or self.schema.names).index(name)


# -- column types given by the user -------------------------------------------------------------

def parse_column_types(text: str) -> dict[str, str]:
    """``{"age": "real", ...}`` from ``"age=real,plan=categorical"`` or from the path of a
    ``.json`` file holding such an object; a type is one of :data:`KINDS` or ``"skip"``
    (leave the column out). A malformed text or file, or an unknown type:
    :class:`~elbokit.errors.ConfigError`."""
    text = str(text).strip()
    if not text:
        raise ConfigError("--column-types is empty: give NAME=TYPE,... or a .json file")
    if text.lower().endswith(".json"):
        try:
            found = json.loads(Path(text).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{text}: no such file (--column-types)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{text}: cannot read column types ({brief(e)})") from None
        if not isinstance(found, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in found.items()):
            raise ConfigError(f"{text}: expected an object of column names and types, like "
                              '{"age": "real", "plan": "categorical"}')
        pairs = list(found.items())
    else:
        pairs = []
        for item in text.split(","):
            if not item.strip():
                continue
            name, equals, kind = item.rpartition("=")
            if not equals or not name.strip():
                raise ConfigError(f"--column-types: {item.strip()!r} is not NAME=TYPE (types: "
                                  f"{', '.join(COLUMN_TYPES)})")
            pairs.append((name.strip(), kind))
    types: dict[str, str] = {}
    for name, kind in pairs:
        kind = kind.strip().lower()
        if kind not in COLUMN_TYPES:
            raise ConfigError(f"--column-types {name}={kind}: unknown type; choose from "
                              f"{', '.join(COLUMN_TYPES)}")
        if types.get(name, kind) != kind:
            raise ConfigError(f"--column-types gives column {name!r} two types, {types[name]} "
                              f"and {kind}")
        types[name] = kind
    return types


def _check_types(column_types: dict[str, str] | None, names: Sequence[str], where: str
                 ) -> dict[str, str]:
    """The column types given, checked against the table's column ``names``."""
    if not column_types:
        return {}
    if not isinstance(column_types, dict):
        raise ConfigError(f"column types must be a dictionary of names and types, not "
                          f"{type(column_types).__name__}")
    for name, kind in column_types.items():
        if kind not in COLUMN_TYPES:
            raise ConfigError(f"--column-types {name}={kind}: unknown type; choose from "
                              f"{', '.join(COLUMN_TYPES)}")
        if name not in names:
            listed = ", ".join(_shown(n) for n in names[:20]) + (", ..." if len(names) > 20 else "")
            raise ConfigError(f"--column-types names {name!r}, which is not a column of "
                              f"{where} (its columns: {listed})")
    return dict(column_types)


def missing_tokens(missing: Sequence[str] | str | None = ()) -> frozenset[str]:
    """The cell texts (stripped) read as missing: :data:`MISSING_TOKENS` and ``missing``."""
    extra = (missing,) if isinstance(missing, str) else tuple(missing or ())
    return frozenset(MISSING_TOKENS) | {str(t).strip() for t in extra}


# -- one column's cells -----------------------------------------------------------------------

@dataclass
class _Cells:
    """One column's cells: ``text`` as written (stripped), ``values: [rows]`` the numbers
    (NaN where missing or text), ``missing``/``words: [rows]``: missing cells, text cells."""

    text: list[str]
    values: np.ndarray
    missing: np.ndarray
    words: np.ndarray

    @classmethod
    def parse(cls, cells: Sequence[str], tokens: frozenset[str]) -> _Cells:
        text = [c.strip() for c in cells]
        values = np.full(len(text), np.nan)
        missing = np.zeros(len(text), dtype=bool)
        words = np.zeros(len(text), dtype=bool)
        for i, cell in enumerate(text):
            if cell in tokens:
                missing[i] = True
                continue
            try:
                value = float(cell)
            except ValueError:
                words[i] = True
                continue
            if value != value:  # "NAN", "-nan": a number that says it is none
                missing[i] = True
            else:
                values[i] = value
        return cls(text, values, missing, words)

    def without_first(self) -> _Cells:
        return _Cells(self.text[1:], self.values[1:], self.missing[1:], self.words[1:])

    @property
    def numeric(self) -> bool:
        """Every cell a number."""
        return not (self.missing.any() or self.words.any())


@dataclass
class _Site:
    """Where a column's cells are, for messages: ``place(i)`` is "line 7, column "age" (2)"."""

    where: str
    name: str
    label: str  # describe_column's
    lines: np.ndarray  # [rows]
    unit: str = "line"  # or "row" (a DataFrame's, counting from 0)
    width: int = 1  # fields per row (for the separator hint)
    delimiter: str = ","

    def place(self, i: int) -> str:
        counting = " (counting from 0)" if self.unit == "row" else ""
        return f"{self.unit} {self.lines[i]}{counting}, {self.label}"

    def error(self, i: int, what: str) -> DataError:
        return DataError(f"{self.where}: {self.place(i)}: {what}")


def _word(text: str) -> str:
    """``text`` as one shell word on one line, for a suggested option."""
    return shlex.quote(text) if text.isprintable() else json.dumps(text, ensure_ascii=False)


def _mixed_error(cells: _Cells, site: _Site) -> DataError:
    """Numbers and text in one column: name a line of each, and the two ways out."""
    t = int(np.flatnonzero(cells.words)[0])
    n = int(np.flatnonzero(~cells.words & ~cells.missing)[0])
    word = cells.text[t]
    counting = " (counting from 0)" if site.unit == "row" else ""
    return DataError(
        f"{site.where}: numbers and text in one column (if it holds categories, pass "
        f"--column-types {_word(site.name + '=categorical')}; if {word!r} marks missing "
        f"values, --missing {_word(word)}): {site.unit} {site.lines[n]}{counting} holds the "
        f"number {cells.text[n]}, but {site.place(t)}: {word!r} is not a number"
        f"{hint(word, site.delimiter, site.width)}")


def _decimals(cell: str) -> int:
    """Digits after the point of a number as written (``1.25e-1``: 3)."""
    mantissa, _, exponent = cell.lower().partition("e")
    digits = len(mantissa.partition(".")[2].strip())
    try:
        shift = int(exponent) if exponent else 0
    except ValueError:
        shift = 0
    return max(0, min(MAX_DECIMALS, digits - shift))


def _most_decimals(cells: Sequence[str]) -> int:
    """The most digits after the point among numbers as written (a fast path for the
    plain ``12.345``)."""
    most = 0
    for cell in cells:
        if "e" in cell or "E" in cell:
            most = max(most, _decimals(cell))
        else:
            point = cell.find(".")
            if point >= 0 and len(cell) - point - 1 > most:
                most = len(cell) - point - 1
    return min(most, MAX_DECIMALS)


def _skewness(v: np.ndarray) -> float:
    """The sample skewness (third standardized moment) of ``v: [n]``; 0 when constant."""
    with np.errstate(all="ignore"):
        d = v - v.mean()
        sd = np.sqrt(np.mean(d * d))
        skew = float(np.mean((d / sd) ** 3)) if sd > 0 else 0.0
    return skew if np.isfinite(skew) else 0.0


def numeric_kind(v: np.ndarray, table: bool = True, integers_written: bool = True) -> str:
    """The type of a column of numbers ``v: [n]`` (the non-missing ones, finite): one of
    :data:`KINDS` but categorical, or, in a table, ``"constant"`` / ``"identifier"`` (to be
    left out). ``table=False`` (an array's column, which keeps its place): binary means
    values 0 and 1 (codes already), and nothing is left out. Counts are integers >= 0
    written as integers (``integers_written``: no decimal point or exponent in the file,
    so 181.0 is a measurement) and not underdispersed (variance at least
    :data:`UNDERDISPERSION` times the mean)."""
    distinct = np.unique(v)
    integer = bool(np.all(v == np.round(v)))
    if table:
        if len(distinct) == 1:
            return "constant"
        if len(distinct) == 2:
            return "binary"
        if integer and len(distinct) == len(v) >= IDENTIFIER_ROWS:
            return "identifier"
    elif np.all((distinct == 0) | (distinct == 1)):
        return "binary"
    if integer and integers_written and distinct[0] >= 0:
        with np.errstate(all="ignore"):
            ratio = v.var(ddof=1) / v.mean() if len(v) > 1 and v.mean() > 0 else 1.0
        if ratio >= UNDERDISPERSION:
            return "negbin" if ratio > OVERDISPERSION else "poisson"
    if distinct[0] > 0:
        skew = _skewness(v)
        if skew > SKEWNESS and abs(_skewness(np.log(v))) < abs(skew):
            return "positive"
    return "real"


def _level_order(key: float | str) -> tuple[int, float, str]:
    """Numbers first, by value; then text, alphabetically."""
    return (0, key, "") if isinstance(key, float) else (1, 0.0, key)


def _levelled(cells: _Cells, kind: str | None, site: _Site
              ) -> tuple[Column | None, np.ndarray | None, str]:
    """A binary or categorical column (``kind``; None: inferred, or left out): ``(column,
    codes [rows], why left out)``. A number is a level by its value (``1`` and ``1.0`` are
    one), its text the first written."""
    first: dict[float | str, int] = {}
    keys: list[float | str | None] = [None] * len(cells.text)
    for i in np.flatnonzero(~cells.missing):
        key = cells.text[i] if cells.words[i] else float(cells.values[i])
        keys[i] = key
        first.setdefault(key, int(i))
    present = int((~cells.missing).sum())
    rows = sorted(first.values())
    if kind is None:
        if len(first) == 1:
            return None, None, f"constant: every value is {cells.text[rows[0]]!r}"
        if len(first) == present >= IDENTIFIER_ROWS:
            return None, None, f"identifier: all {present} values distinct"
        if cells.words.any() and present >= IDENTIFIER_ROWS and len(first) > IDENTIFIER_SHARE * present:
            return None, None, f"identifier-like: {len(first)} distinct values in {present} cells"
        kind = "binary" if len(first) == 2 else "categorical"
    elif kind == "binary" and len(first) > 2:
        a, b, c = (cells.text[i] for i in rows[:3])
        raise site.error(rows[2], f"{c!r} is a third value, but a binary column holds two "
                                  f"({a!r} and {b!r})")
    elif len(first) < 2:
        need = "two values" if kind == "binary" else "at least 2 levels"
        raise site.error(rows[0], f"a {kind} column needs {need}, but every value is "
                                  f"{cells.text[rows[0]]!r}")
    ordered = sorted(first, key=_level_order)
    code = {key: c for c, key in enumerate(ordered)}
    codes = np.array([np.nan if key is None else code[key] for key in keys], dtype=np.float64)
    levels = tuple(cells.text[first[key]] for key in ordered)
    return Column(site.name, kind, levels), codes, ""


def _typed(cells: _Cells, kind: str | None, site: _Site
           ) -> tuple[Column | None, np.ndarray | None, str]:
    """A table column typed (``kind`` given, or inferred): ``(column, x values [rows], why
    left out)``; a column left out has ``(None, None, why)``."""
    if kind == "skip":
        return None, None, "left out by the column types given"
    present = ~cells.missing
    if not present.any():
        if kind is not None:
            raise DataError(f"{site.where}: {site.label}: every cell is missing, so it cannot be "
                            f"read as {kind}")
        return None, None, "every cell missing"
    words = cells.words
    if kind is None and words.any():
        if (present & ~words).any():
            raise _mixed_error(cells, site)
        rows = np.flatnonzero(words)
        if all(looks_numeric(cells.text[i], site.delimiter) for i in rows):
            # Numbers in another locale or a mis-split file: an error of the file, which
            # would read as categories.
            raise site.error(int(rows[0]), f"{cells.text[rows[0]]!r} is not a number"
                                           f"{hint(cells.text[rows[0]], site.delimiter, site.width)}")
    if kind in LEVEL_KINDS or (kind is None and words.any()):
        return _levelled(cells, kind, site)
    if words.any():
        i = int(np.flatnonzero(words)[0])
        raise site.error(i, f"{cells.text[i]!r} is not a number, but the column types given "
                            f"make it {kind}{hint(cells.text[i], site.delimiter, site.width)}")
    rows = np.flatnonzero(present)
    v = cells.values[rows]
    infinite = ~np.isfinite(v)
    if infinite.any():
        i = int(rows[np.argmax(infinite)])
        raise site.error(i, f"{cells.text[i]!r} is not a finite number")
    if kind is None:
        written = all(not any(c in cells.text[i] for c in ".eE") for i in rows)
        kind = numeric_kind(v, integers_written=written)
        if kind == "constant":
            return None, None, f"constant: every value is {cells.text[rows[0]]!r}"
        if kind == "identifier":
            return None, None, f"identifier: all {len(rows)} values distinct"
        if kind == "binary":
            return _levelled(cells, kind, site)
    else:
        _check_support(v, rows, kind, site, [cells.text[i] for i in rows])
    decimals = _most_decimals([cells.text[i] for i in rows]) if kind in ("real", "positive") else 0
    return Column(site.name, kind, decimals=decimals), cells.values.copy(), ""


def _check_support(v: np.ndarray, rows: np.ndarray, kind: str, site: _Site,
                   text: Sequence[str]) -> None:
    """Refuse the first of the numbers ``v`` (of ``rows``; written ``text``) outside a
    numeric ``kind``'s values."""
    if kind == "positive":
        bad = v <= 0
        need = "not positive (a positive column holds values > 0)"
    elif kind in COUNT_KINDS:
        bad = (v < 0) | (v != np.round(v))
        need = f"not a count (a {kind} column holds integers >= 0)"
    else:
        return
    if bad.any():
        j = int(np.argmax(bad))
        raise site.error(int(rows[j]), f"{text[j]!r} is {need}")


# -- whole tables ------------------------------------------------------------------------------

def _names(names: Sequence[str] | None, width: int, where: str,
           header_names: Sequence[str] | None) -> list[str]:
    """Every column's name: the header's, or its number ("1", "2", ...) where the header
    leaves it empty or there is none; refused when two are the same."""
    found = [n if n else str(k + 1) for k, n in enumerate(names)] if names is not None \
        else [str(k + 1) for k in range(width)]
    seen: dict[str, int] = {}
    for k, name in enumerate(found):
        if name in seen:
            raise DataError(f"{where}: {describe_column(seen[name], header_names)} and "
                            f"{describe_column(k, header_names)} have the same name; a table's "
                            "columns are typed by name")
        seen[name] = k
    return found


def _refuse_empty_rows(x: np.ndarray, lines: np.ndarray, where: str, unit: str) -> None:
    """Refuse rows of ``x: [rows, columns]`` whose every cell is missing, naming them."""
    empty = np.flatnonzero(np.isnan(x).all(axis=1))
    if len(empty) == 0:
        return
    shown = ", ".join(str(lines[i]) for i in empty[:5])
    more = f" (and {len(empty) - 5} more)" if len(empty) > 5 else ""
    counting = " (counting from 0)" if unit == "row" else ""
    verb = "has" if len(empty) == 1 else "have"
    raise DataError(f"{where}: {unit}{'s' if len(empty) > 1 else ''} {shown}{more}{counting} "
                    f"{verb} every cell missing")


def _typed_table(where: str, names: list[str], header_names: Sequence[str] | None,
                 columns: list[_Cells], lines: np.ndarray, column_types: dict | None,
                 unit: str, delimiter: str) -> tuple[np.ndarray, Schema]:
    """``(x [rows, modelled columns], schema)`` of parsed ``columns`` named ``names``."""
    given = _check_types(column_types, names, where)
    modelled, values, skipped = [], [], []
    for k, (name, cells) in enumerate(zip(names, columns, strict=True)):
        site = _Site(where, name, describe_column(k, header_names), lines, unit, len(columns),
                     delimiter)
        column, x, why = _typed(cells, given.get(name), site)
        if column is None:
            skipped.append((name, why))
        else:
            modelled.append(column)
            values.append(x)
    if not modelled:
        listed = "; ".join(f"{_shown(n)} ({why})" for n, why in skipped[:5])
        raise DataError(f"{where}: no column left to model: {listed}"
                        f"{' ...' if len(skipped) > 5 else ''}")
    x = np.column_stack(values)
    _refuse_empty_rows(x, lines, where, unit)
    return x, Schema(tuple(modelled), tuple(names), tuple(skipped))


@dataclass
class _Split:
    """A file's records cut into parsed columns, the header and index column settled."""

    where: str
    names: list[str]  # every column's name
    header_names: list[str] | None  # the header's (for messages), None without one
    columns: list[_Cells]
    lines: np.ndarray
    cells: list[list[str]]
    header_row: list[str] | None
    fields: tuple[str, ...]
    delimiter: str
    unit: str = "line"
    extra: dict[str, Any] = field(default_factory=dict)


def _split(raw: RawTable, header: str, tokens: frozenset[str],
           header_if: Sequence[str] | None = None) -> _Split:
    """Parse ``raw``'s cells by column, taking a header of numbers (``header`` "auto":
    :func:`~elbokit.data.table.numeric_header` on the columns of numbers, or the first row
    when it is exactly ``header_if``) and dropping an index column, as tables of numbers."""
    where = raw.where
    width = check_widths(raw.records, where)
    records, names = raw.records, raw.names
    columns = [_Cells.parse([r[k] for _, r in records], tokens) for k in range(width)]
    if header == "auto" and names is None and len(records) > 1:
        first = [c.strip() for c in raw.first]
        reason = None
        if header_if is not None and first == list(header_if):
            reason = ""
        elif all(not (c.missing[0] or c.words[0]) for c in columns):
            numeric = [c.values for c in columns if c.numeric]
            if numeric:
                body = np.column_stack(numeric)
                reason = numeric_header(body[0], body[1:])
        if reason is not None:
            if reason:
                warn_numeric_header(where, raw.first_line, raw.first, reason)
            names, records = first, records[1:]
            columns = [c.without_first() for c in columns]
    cells = [r for _, r in records]
    header_row = list(raw.first) if names is not None else None
    index = False
    if names is not None:
        if index_column(columns[0].values, names, width):
            warn_index_dropped(where, columns[0].values)
            index, columns, width = True, columns[1:], width - 1
            names = names[-width:]
        check_header_width(names, width, raw.first_line, where)
    all_names = _names(names, width, where, names)
    return _Split(where, all_names, names, columns, np.array([line for line, _ in records]),
                  cells, header_row, (("",) if index else ()) + tuple(all_names), raw.delimiter)


def _table(split: _Split, x: np.ndarray, schema: Schema) -> MixedTable:
    return MixedTable(x=x, schema=schema, cells=split.cells, lines=split.lines,
                      header=split.header_names is not None, delimiter=split.delimiter,
                      header_row=split.header_row, fields=split.fields)


def mixed_table(raw: RawTable, header: str = "auto", missing: Sequence[str] = (),
                column_types: dict[str, str] | None = None) -> MixedTable:
    """:func:`read_mixed` of a table already split (:func:`~elbokit.data.table.split_table`):
    a reader that tried it as numbers goes on here without reading the file again."""
    split = _split(raw, header, missing_tokens(missing))
    x, schema = _typed_table(split.where, split.names, split.header_names, split.columns,
                             split.lines, column_types, split.unit, split.delimiter)
    return _table(split, x, schema)


def read_mixed(path: Path | str, header: str = "auto", missing: Sequence[str] = (),
               column_types: dict[str, str] | None = None) -> MixedTable:
    """A CSV/TSV (or ``.parquet``) table of typed columns: ``x: [rows, modelled columns]``
    and its :class:`Schema`, each column's type inferred (see the module docstring) unless
    ``column_types`` gives it (``{"name": kind or "skip"}``, see :func:`parse_column_types`);
    ``missing``: tokens marking missing cells on top of :data:`MISSING_TOKENS`; ``header``
    as for tables of numbers ("auto", "yes", "no"). A table without a header names its
    columns "1", "2", .... Problems: one-line :class:`~elbokit.errors.DataError` (the data)
    or :class:`~elbokit.errors.ConfigError` (the column types), naming line and column."""
    path = Path(path)
    tokens = missing_tokens(missing)
    if path.suffix.lower() == ".parquet":
        split = _parquet(path, tokens)
    else:
        split = _split(split_table(path, header, tokens), header, tokens)
    x, schema = _typed_table(split.where, split.names, split.header_names, split.columns,
                             split.lines, column_types, split.unit, split.delimiter)
    return _table(split, x, schema)


def cell_text(column: Column, value: float) -> str:
    """A model's value of ``column`` as the file would write it: a level's text, a count,
    a number with the column's decimals."""
    if column.kind in LEVEL_KINDS:
        return column.levels[int(np.clip(np.rint(value), 0, len(column.levels) - 1))]
    if column.kind in COUNT_KINDS:
        return str(int(np.rint(value)))
    return f"{value:.{column.decimals}f}" if abs(value) < 1e15 else repr(float(value))


def table_text(table: MixedTable, filled: np.ndarray) -> str:
    """``table`` written back as CSV/TSV text, in its own layout (header, delimiter, every
    cell as it was), its missing modelled cells filled from ``filled: [rows, columns]``
    (numbers and codes, as ``x``); ``[draws, rows, columns]``: the filled tables stacked,
    numbered from 1 in a first column ``draw``."""
    filled = np.asarray(filled, dtype=np.float64)
    stack = filled if filled.ndim == 3 else filled[None]
    if stack.shape[1:] != table.x.shape:
        raise DataError(f"filled values of shape {filled.shape} for a table of shape "
                        f"{table.x.shape}")
    draws = filled.ndim == 3
    holes = np.isnan(table.x)
    positions = [table.field(c.name) for c in table.schema.columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=table.delimiter, lineterminator="\n")
    if table.header_row is not None:
        writer.writerow((["draw"] if draws else []) + list(table.header_row))
    for d, values in enumerate(stack):
        for r, cells in enumerate(table.cells):
            row = list(cells)
            for j in np.flatnonzero(holes[r] & ~np.isnan(values[r])):
                row[positions[j]] = cell_text(table.schema.columns[j], values[r, j])
            writer.writerow(([str(d + 1)] if draws else []) + row)
    return buffer.getvalue()


def rows_text(schema: Schema, rows: np.ndarray) -> str:
    """Rows of model values ``[n, len(schema.columns)]`` (numbers and codes, as ``x``) as
    CSV text under the modelled columns' names, each cell written as its column's values
    are (levels as their text, counts as integers, NaN as an empty cell): what ``elbokit
    sample -o x.csv`` writes for a table."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.name for c in schema.columns])
    for values in np.asarray(rows, dtype=np.float64):
        writer.writerow(["" if np.isnan(v) else cell_text(c, v)
                         for c, v in zip(schema.columns, values, strict=True)])
    return buffer.getvalue()


# -- new data read with a fitted schema ---------------------------------------------------------

def _encode(column: Column, cells: _Cells, site: _Site) -> np.ndarray:
    """``x: [rows]`` of one column of new data, by its fitted type; a cell outside it
    refused with its line."""
    rows = np.flatnonzero(~cells.missing)
    if column.kind in NUMERIC_KINDS:
        if cells.words.any():
            i = int(np.flatnonzero(cells.words)[0])
            raise site.error(i, f"{cells.text[i]!r} is not a number (the column is "
                                f"{column.kind}){hint(cells.text[i], site.delimiter, site.width)}")
        v = cells.values[rows]
        infinite = ~np.isfinite(v)
        if infinite.any():
            i = int(rows[np.argmax(infinite)])
            raise site.error(i, f"{cells.text[i]!r} is not a finite number")
        _check_support(v, rows, column.kind, site, [cells.text[i] for i in rows])
        return cells.values.copy()
    by_text, by_value = {}, {}
    for code, level in enumerate(column.levels):
        try:
            by_value[float(level)] = code
        except ValueError:
            by_text[level] = code
    codes = np.full(len(cells.text), np.nan)
    for i in rows:
        code = by_text.get(cells.text[i]) if cells.words[i] else by_value.get(cells.values[i])
        if code is None:
            levels = ", ".join(repr(v) for v in column.levels[:SHOWN_LEVELS])
            more = ", ..." if len(column.levels) > SHOWN_LEVELS else ""
            what = (f"outside the column's two levels ({levels})" if column.kind == "binary" else
                    f"a level not seen in training (the column's {len(column.levels)}: "
                    f"{levels}{more})")
            raise site.error(int(i), f"{cells.text[i]!r} is {what}")
        codes[i] = code
    return codes


def _with_schema(split: _Split, schema: Schema) -> MixedTable:
    """Encode ``split``'s columns by ``schema``, matched by name."""
    absent = [n for n in schema.names if n not in split.names]
    extra = [n for n in split.names if n not in schema.names]
    if absent or extra:
        said = [f"lacks {', '.join(map(repr, absent))}" if absent else "",
                f"has {', '.join(map(repr, extra))} besides" if extra else ""]
        raise DataError(f"{split.where}: the columns differ from the table the model was "
                        f"fitted on: it {' and '.join(s for s in said if s)}")
    values = []
    for column in schema.columns:
        k = split.names.index(column.name)
        site = _Site(split.where, column.name, describe_column(k, split.header_names),
                     split.lines, split.unit, len(split.columns), split.delimiter)
        values.append(_encode(column, split.columns[k], site))
    x = np.column_stack(values) if values else np.zeros((len(split.lines), 0))
    _refuse_empty_rows(x, split.lines, split.where, split.unit)
    return _table(split, x, schema)


def read_with_schema(path: Path | str, schema: Schema, header: str = "auto",
                     missing: Sequence[str] = ()) -> MixedTable:
    """New data (to score or impute) read with a fitted ``schema``: the file must hold the
    same columns, by name (a table without a header: "1", "2", ...); each cell is read by
    its column's type. A level not seen in training, a non-number in a numeric column, a
    negative or fractional count, a value <= 0 in a positive column, a third value in a
    binary one: :class:`~elbokit.errors.DataError` naming line and column."""
    path = Path(path)
    tokens = missing_tokens(missing)
    if path.suffix.lower() == ".parquet":
        split = _parquet(path, tokens)
    else:
        # A first row of numbers that are the fitted names is the header (unless the fitted
        # table had none: its names are the column numbers, and the row is data).
        numbered = schema.names == tuple(str(k + 1) for k in range(len(schema.names)))
        split = _split(split_table(path, header, tokens), header, tokens,
                       header_if=None if numbered else schema.names)
    return _with_schema(split, schema)


# -- DataFrames and Parquet ---------------------------------------------------------------------

def is_frame(x: object) -> bool:
    """Whether ``x`` is a pandas DataFrame (told without importing pandas)."""
    return any(c.__name__ == "DataFrame" and c.__module__.split(".")[0] == "pandas"
               for c in type(x).__mro__)


def _cell_text(value: object) -> str:
    """A DataFrame's or Parquet value as a table cell ("" for None or NaN)."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _columns_split(where: str, names: list[str], texts: list[list[str]],
                   tokens: frozenset[str]) -> _Split:
    """A split table from columns of text cells (a DataFrame's, a Parquet file's)."""
    if not texts:
        raise DataError(f"{where}: no columns")
    n = len(texts[0])
    if n == 0:
        raise DataError(f"{where}: no data rows")
    names = _names(names, len(names), where, names)
    columns = [_Cells.parse(t, tokens) for t in texts]
    return _Split(where, names, names, columns, np.arange(n), [list(r) for r in zip(*texts, strict=True)],
                  list(names), tuple(names), ",", unit="row")


def _frame_split(df: Any, where: str, tokens: frozenset[str]) -> _Split:
    if not is_frame(df):
        raise ConfigError(f"{where}: expected a pandas DataFrame, not {type(df).__name__}")
    import pandas as pd  # only here: pandas stays optional

    texts = []
    for k in range(df.shape[1]):
        series = df.iloc[:, k]
        absent = np.asarray(pd.isna(series), dtype=bool)
        # tolist, not to_numpy: a nullable integer column (Int64) keeps its whole numbers
        # as ints there (to_numpy makes them floats, written 4.0: a measurement).
        texts.append(["" if a else _cell_text(v) for v, a in zip(series.tolist(), absent, strict=True)])
    return _columns_split(where, [str(c) for c in df.columns], texts, tokens)


def read_frame(df: Any, missing: Sequence[str] = (), column_types: dict[str, str] | None = None,
               where: str = "DataFrame") -> MixedTable:
    """:func:`read_mixed` of a pandas DataFrame: its cells as text (object, string and
    category columns are text, numbers numbers), NaN/None/NA missing; messages name rows by
    position (counting from 0)."""
    split = _frame_split(df, where, missing_tokens(missing))
    x, schema = _typed_table(split.where, split.names, split.header_names, split.columns,
                             split.lines, column_types, split.unit, split.delimiter)
    return _table(split, x, schema)


def frame_with_schema(df: Any, schema: Schema, where: str = "DataFrame",
                      missing: Sequence[str] = ()) -> MixedTable:
    """:func:`read_with_schema` of a pandas DataFrame."""
    return _with_schema(_frame_split(df, where, missing_tokens(missing)), schema)


def frame_from_rows(df: Any, rows: np.ndarray, schema: Schema) -> Any:
    """``df`` with its missing modelled cells filled from ``rows: [n, len(schema.columns)]``
    (numbers, codes), or ``[draws, n, ...]``: the filled frames stacked, numbered in a
    first column ``draw``. Levels come back as the column held them (text, or numbers and
    booleans for a numeric or boolean column); counts rounded; observed cells unchanged."""
    import pandas as pd  # only here: pandas stays optional

    rows = np.asarray(rows, dtype=np.float64)
    stack = rows if rows.ndim == 3 else rows[None]
    holes = np.isnan(frame_with_schema(df, schema).x)  # [n, columns]: the cells to fill
    positions = {str(c): k for k, c in enumerate(df.columns)}
    frames = []
    for filled in stack:
        out = df.copy()
        for j, column in enumerate(schema.columns):
            hole = np.flatnonzero(holes[:, j])
            if len(hole) == 0:
                continue
            k = positions[column.name]
            values = _decoded(column, filled[hole, j], df.iloc[:, k])
            if out.iloc[:, k].dtype.kind in "biu" and any(isinstance(v, float) for v in values):
                out[out.columns[k]] = out.iloc[:, k].astype(np.float64)
            for i, value in zip(hole, values, strict=True):
                out.iat[int(i), k] = value
        frames.append(out)
    if rows.ndim != 3:
        return frames[0]
    stacked = pd.concat(frames)
    stacked.insert(0, "draw", np.repeat(np.arange(1, len(frames) + 1), len(df)), allow_duplicates=True)
    return stacked


def _decoded(column: Column, values: np.ndarray, original: Any) -> list:
    """Model values of one column as the DataFrame column ``original`` holds its values."""
    if column.kind in COUNT_KINDS:
        return [int(np.rint(v)) for v in values]
    if column.kind in NUMERIC_KINDS:
        return [float(v) for v in values]
    codes = np.clip(np.rint(values), 0, len(column.levels) - 1).astype(int)
    levels = [column.levels[c] for c in codes]
    held = [v for v in original.dropna().tolist()][:100]
    if held and all(isinstance(v, bool | np.bool_) for v in held):
        return [level == "True" for level in levels]
    if held and all(isinstance(v, int | float | np.number) and not isinstance(v, bool)
                    for v in held):
        return [int(float(v)) if float(v).is_integer() else float(v) for v in levels]
    return levels


def _parquet(path: Path, tokens: frozenset[str]) -> _Split:
    """A Parquet file's columns as text cells (nulls missing); needs pyarrow."""
    try:
        import pyarrow.parquet as pq  # optional: only Parquet files need it
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow: pip install pyarrow") from None
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        table = pq.read_table(path)
        texts = [[_cell_text(v) for v in table.column(k).to_pylist()]
                 for k in range(table.num_columns)]
    except Exception as e:  # whatever pyarrow raises on bytes that are not Parquet
        raise DataError(f"{path}: cannot read as Parquet ({brief(e)})") from None
    return _columns_split(str(path), [str(n) for n in table.column_names], texts, tokens)


# -- arrays -------------------------------------------------------------------------------------

def _array_decimals(v: np.ndarray) -> int:
    """The fewest digits after the point that write every value of ``v`` (a sample of it)."""
    sample = v[::max(1, len(v) // 10_000)]
    for digits in range(16):
        if np.allclose(np.round(sample, digits), sample, rtol=1e-12, atol=0):
            return digits
    return 15


def schema_for_numbers(x: np.ndarray, column_types: dict[str, str] | None = None,
                       where: str = "data", names: Sequence[str] | None = None) -> Schema:
    """The types of the columns of an array ``x: [n, dim]`` of numbers (NaN: missing), by
    the rules of tables, except that every column keeps its place (none is left out; "skip"
    is refused) and binary means the values 0 and 1 (the codes a model reads). Columns are
    named ``names`` or "1", "2", ...; ``column_types`` may set ``categorical`` for integer
    codes 0..K-1 (levels "0".."K-1")."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise DataError(f"{where}: expected [examples, features], found shape {x.shape}")
    names = [str(n) for n in names] if names is not None else [str(j + 1) for j in range(x.shape[1])]
    given = _check_types(column_types, names, where)
    if "skip" in given.values():
        raise ConfigError(f"{where}: an array keeps every column: 'skip' applies to tables")
    columns = []
    for j, name in enumerate(names):
        v = x[:, j]
        seen = ~np.isnan(v)
        label = describe_column(j, None if names[j] == str(j + 1) else names)
        if not seen.any():
            raise DataError(f"{where}: {label}: every value is missing (NaN)")
        if not np.isfinite(v[seen]).all():
            raise DataError(f"{where}: {describe_rows(np.isinf(v))}, {label}: inf")
        u = v[seen]
        kind = given.get(name) or numeric_kind(u, table=False)
        levels: tuple[str, ...] = ()
        if kind in LEVEL_KINDS:
            integer = (v >= 0) & (v == np.round(v))
            top = 1 if kind == "binary" else int(u.max()) if integer[seen].all() else 0
            bad = seen & (~integer | (v > top))
            if bad.any() or top < 1:
                need = ("0 or 1" if kind == "binary" else
                        "integer codes 0, 1, ..., K-1 with K >= 2 (a categorical column needs at "
                        "least 2 levels)")
                raise DataError(f"{where}: {describe_rows(bad if bad.any() else seen)}, {label}: "
                                f"a {kind} column of an array holds {need}")
            levels = tuple(str(c) for c in range(top + 1))
        elif kind in ("positive",) + COUNT_KINDS:
            bad = seen & ((v <= 0) if kind == "positive" else ((v < 0) | (v != np.round(v))))
            if bad.any():
                need = "values > 0" if kind == "positive" else "counts (integers >= 0)"
                raise DataError(f"{where}: {describe_rows(bad)}, {label}: a {kind} column holds "
                                f"{need}")
        decimals = _array_decimals(u) if kind in ("real", "positive") else 0
        columns.append(Column(name, kind, levels, decimals))
    return Schema(tuple(columns), tuple(names), ())
