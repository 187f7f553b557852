"""CSV/TSV tables of numbers: the field separator, the header and an index column.

:func:`read_table` reads a table into a :class:`~elbokit.data.Dataset` of ``x: [n, dim]``
with the header's names in ``columns``. Three guesses are made, each stated where it is made:

- **separator**: by the suffix (``.tsv``/``.tab``: tab, else comma), unless the first lines
  do not split into a table by it but do by exactly one of tab, ``;`` and ``|`` (a ``;``
  separated ``.csv`` from a spreadsheet); read then without a word. A number that does not
  parse because it holds a decimal comma or another separator says so in its error.
- **header** (``header="auto"``): a first row with a name in it is a header. A first row of
  numbers is a header only where that is clear (:func:`numeric_header`: column numbers or
  years above data of another range), with a one-line :class:`~elbokit.errors.DataWarning`
  that names ``--header no``. ``"yes"``/``"no"``: the first row is / is not a header.
- **index column**: a header whose first name is empty (pandas' ``to_csv``) or that names one
  column fewer than the rows hold (R's ``write.csv``), above a first column of distinct
  integers, marks a row index: it is dropped with a one-line note (a ``DataWarning``).

The steps are shared with :mod:`elbokit.data.columns` (tables of mixed column types and
missing cells): :func:`split_table` (text, separator, records, header), then here
:func:`numeric_table` (numbers, numeric header, index column), there its own typing of the
cells, both with the same header and index rules and the same messages.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, DataWarning, brief, describe_column

HEADER_CHOICES = ("auto", "yes", "no")
SEPARATORS = {",": "','", "\t": "tab", ";": "';'", "|": "'|'"}
SNIFF_LINES = 20  # the first non-blank lines that decide the separator
SNIFF_CHARACTERS = 1 << 16  # ... within the text's beginning
DECIMAL_COMMA = re.compile(r"\s*[-+]?\d*,\d+\s*")


def read_csv(text: str, where: str, delimiter: str = ",", quoting: int = csv.QUOTE_MINIMAL
             ) -> list[tuple[int, list[str]]]:
    """``(line, fields)`` for each record of CSV/TSV ``text`` (line: where the record starts,
    counting from 1). Any newline convention (LF, CRLF, CR alone) is accepted; malformed
    quoting (a quote never closed, text after a closing quote) and fields over the csv
    module's size limit are refused with the line, rather than read as something else."""
    stream = io.StringIO(text, newline=None)  # universal newlines: CR and CRLF become LF
    reader = csv.reader(stream, delimiter=delimiter, quoting=quoting,
                        strict=quoting != csv.QUOTE_NONE)
    rows: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for row in reader:
            rows.append((start, row))
            start = reader.line_num + 1
    except csv.Error as e:
        problem = (f"a field longer than {csv.field_size_limit():,} characters"
                   if "field limit" in str(e) else
                   f"malformed {'TSV' if delimiter == chr(9) else 'CSV'} ({brief(e)})")
        raise DataError(f"{where}: line {start}: {problem}") from None
    return rows


def is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


class NotANumber(DataError):
    """A cell of a table of numbers that is not a number (the message names its line and
    column). Readers of mixed tables catch it to read the table with column types instead,
    unless ``numeric``: the cell looks like numbers written otherwise (a decimal comma,
    another separator), which is an error of the file, not a column of text."""

    def __init__(self, message: str, line: int, column: int, cell: str, numeric: bool):
        super().__init__(message)
        self.line, self.column, self.cell, self.numeric = line, column, cell, numeric


def looks_numeric(cell: str, delimiter: str) -> bool:
    """Whether ``cell``, not a number, is numbers written otherwise: with a decimal comma
    (``1,5``) or several joined by another separator than ``delimiter`` (``1;2``, ``3;4,5``):
    a file mis-split or in another locale, not a word."""
    if DECIMAL_COMMA.fullmatch(cell):
        return True
    for other in SEPARATORS:
        if other != delimiter and other in cell:
            pieces = [p.strip().replace(",", ".") for p in cell.split(other)]
            if all(is_number(p) or not p for p in pieces) and any(pieces):
                return True
    return False


def sniff_separator(text: str, expected: str) -> str:
    """The field separator of ``text``: ``expected`` unless its first :data:`SNIFF_LINES`
    non-blank lines all split into the same number (2 or more) of fields by exactly one
    other of :data:`SEPARATORS` while by ``expected`` they do not (their number varies or
    is 1), or do only as a decimal comma does (``expected`` is the comma)."""
    head = io.StringIO(text[:SNIFF_CHARACTERS], newline=None).read()
    lines = [line for line in head.split("\n") if line.strip()][:SNIFF_LINES]

    def widths(delimiter: str) -> set[int]:
        try:
            return {len(r) for r in csv.reader(lines, delimiter=delimiter)}
        except csv.Error:  # a NUL byte, a runaway field: not this separator's table
            return set()

    def table(found: set[int]) -> bool:
        return len(found) == 1 and min(found) >= 2

    if not lines:
        return expected
    others = [d for d in SEPARATORS if d != expected and table(widths(d))]
    if len(others) != 1:
        return expected
    if not table(widths(expected)):
        return others[0]
    # Both split every line evenly ("1,5;2,3"): the comma is a decimal comma, and its error
    # then says so, naming the right column.
    return others[0] if expected == "," else expected


def numeric_header(first: np.ndarray, body: np.ndarray) -> str | None:
    """Why the first row of numbers ``first: [dim]`` above the rows ``body: [m, dim]`` is a
    header (column names that are numbers), or None when it may be data.

    Only distinct integers may be names, and only a row that lies apart from the data below
    is taken: a value is *far* when it lies outside its column's range in ``body`` by more
    than that range's width (outside at all, for a constant column). A header is

    - a run of 3 or more consecutive integers (column numbers 0, 1, 2, ...; years 2019,
      2020, ...), far in at least half of the columns; or
    - 2 or more distinct integers, far in every column (years 1990, 2000, 2010 above values
      of another scale).

    ``body`` needs 2 or more rows to have ranges; with fewer, None. A data row of distinct
    integers far from every later row is possible (a gross outlier): it is then taken as a
    header, with the warning that says how to read it as data.
    """
    if len(body) < 2 or len(first) < 2:
        return None
    if not (np.all(first == np.round(first)) and len(np.unique(first)) == len(first)):
        return None
    low, high = body.min(axis=0), body.max(axis=0)
    gap = np.maximum(low - first, first - high)  # > 0: outside the column's range
    far = gap > high - low
    dim = len(first)
    if dim >= 3 and np.all(np.diff(first) == 1) and far.sum() * 2 >= dim:
        return (f"its values run {first[0]:.0f}, {first[1]:.0f}, ... {first[-1]:.0f} like column "
                f"numbers or years, outside the range of the rows below in {far.sum()} of "
                f"{dim} columns")
    if far.all():
        return ("its values are distinct integers outside the range of the rows below in every "
                "column, each by more than that range")
    return None


def index_column(column: np.ndarray, names: list[str], width: int) -> bool:
    """Whether the first column, ``column: [rows]`` (NaN where it is not a number), of a
    table ``width`` fields wide is a row index: the header leaves it unnamed (pandas: an
    empty first name; R: one name fewer than fields) and it holds distinct integers."""
    unnamed = (len(names) == width and names[0] == "" and any(names[1:])) or \
        len(names) == width - 1
    return (unnamed and width > 1 and bool(np.all(column == np.round(column)))
            and len(np.unique(column)) == len(column))


def warn_index_dropped(where: str, column: np.ndarray) -> None:
    """The one-line note that the first column, ``column: [rows]``, was dropped as an index."""
    shown = ", ".join(f"{v:.0f}" for v in column[:3])
    warnings.warn(f"{where}: dropped the first column, an unnamed row index (distinct "
                  f"integers {shown}{', ...' if len(column) > 3 else ''}) as pandas' "
                  "to_csv and R's write.csv write one", DataWarning, stacklevel=3)


def warn_numeric_header(where: str, line: int, first: list[str], reason: str) -> None:
    """The one-line warning that the first row (``first``, on ``line``) was taken as names."""
    shown = ", ".join(c.strip() for c in first[:4]) + (", ..." if len(first) > 4 else "")
    warnings.warn(f"{where}: took line {line} ({shown}) as a header of column names: "
                  f"{reason}; to read it as data, pass --header no", DataWarning, stacklevel=3)


def check_header_width(names: list[str], width: int, line: int, where: str) -> None:
    """Refuse a header naming another number of columns than the rows hold."""
    if len(names) != width:
        raise DataError(f"{where}: the header (line {line}) names {len(names)} columns, but "
                        f"the rows have {width} fields")


def check_widths(records: list[tuple[int, list[str]]], where: str) -> int:
    """The number of fields of every record (the first one's), or a one-line error at the
    first ragged one."""
    width = len(records[0][1])
    for line, row in records:
        if len(row) != width:
            raise DataError(f"{where}: line {line} has {len(row)} fields, expected {width}")
    return width


def hint(cell: str, delimiter: str, fields: int) -> str:
    """Why a cell that is not a number may be one: a decimal comma, another separator (and,
    when commas split its row of ``fields`` too, decimal commas)."""
    if DECIMAL_COMMA.fullmatch(cell):
        return " (a decimal comma? elbokit reads numbers written like 1.5)"
    for other, name in SEPARATORS.items():
        if other != delimiter and other in cell:
            comma = " with decimal commas" if delimiter == "," and fields > 1 else ""
            return (f" (the fields look separated by {name}{comma}, not "
                    f"{SEPARATORS[delimiter]}; elbokit reads numbers written like 1.5)")
    return ""


def _numbers(records: list[tuple[int, list[str]]], names: list[str] | None, where: str,
             delimiter: str) -> np.ndarray:
    """The records' cells as float64 ``[rows, fields]``, or a one-line error at the first
    ragged row or cell that is not a number (naming its line and column)."""
    width = len(records[0][1])
    values = np.empty((len(records), width))
    for row_index, (line, row) in enumerate(records):
        if len(row) != width:
            raise DataError(f"{where}: line {line} has {len(row)} fields, expected {width}")
        for col, cell in enumerate(row):
            try:
                values[row_index, col] = float(cell)
            except ValueError:
                raise NotANumber(f"{where}: line {line}, {describe_column(col, names)}: "
                                 f"{cell.strip()!r} is not a number"
                                 f"{hint(cell, delimiter, len(row))}", line, col, cell,
                                 looks_numeric(cell.strip(), delimiter)) from None
    return values


@dataclass
class RawTable:
    """A table file split into records, before its cells are read: ``records`` the data rows
    as ``(line, fields)`` (the header taken off), ``names`` the header's (stripped) or None,
    ``first`` the file's first record and its ``first_line`` (the header's, if any)."""

    where: str
    delimiter: str
    records: list[tuple[int, list[str]]]
    names: list[str] | None
    first: list[str]
    first_line: int


def decode(path: Path) -> str:
    """The text of ``path``: UTF-8 (a byte-order mark dropped), or a one-line error."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start})") from None


def split_table(path: Path, header: str = "auto", not_names: Collection[str] = ()) -> RawTable:
    """The records of the CSV/TSV table ``path``: separator guessed (:func:`sniff_separator`),
    blank lines dropped, and a first row taken as a header when ``header`` is "yes", or
    "auto" and a cell of it is a name: not a number, a decimal comma or one of
    ``not_names`` (tokens of missing values, ``NA``). A header of numbers is decided later,
    once the cells are read (:func:`numeric_header`)."""
    if header not in HEADER_CHOICES:
        raise ConfigError(f"header must be one of {', '.join(HEADER_CHOICES)}, not {header!r}")
    where = str(path)
    text = decode(path)
    delimiter = sniff_separator(text, "\t" if path.suffix.lower() in (".tsv", ".tab") else ",")
    records = [(line, r) for line, r in read_csv(text, where, delimiter)
               if r and any(c.strip() for c in r)]
    if not records:
        raise DataError(f"{where}: no data rows")
    first_line, first = records[0]
    names: list[str] | None = None
    # A name in the first row makes it a header; a first row of numbers with an empty cell
    # is data (and refused, or read as missing, later), not a header that would silently
    # drop the row, and so is one of decimal commas (refused later, with a hint).
    named = any(c.strip() and not is_number(c) and not DECIMAL_COMMA.fullmatch(c)
                and c.strip() not in not_names for c in first)
    if header == "yes" or (header == "auto" and named):
        names = [c.strip() for c in first]
        records = records[1:]
        if not records:
            raise DataError(f"{where}: no data rows")
    return RawTable(where, delimiter, records, names, first, first_line)


def numeric_table(raw: RawTable, header: str = "auto"
                  ) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """``(x [rows, columns] float64, the header's names or None)`` of a split table of
    numbers: a numeric header taken (``header`` "auto") or an index column dropped, each
    with a warning; :class:`NotANumber` at the first cell that is not a number."""
    where, names = raw.where, raw.names
    values = _numbers(raw.records, names, where, raw.delimiter)
    if header == "auto" and names is None:
        reason = numeric_header(values[0], values[1:])
        if reason:
            warn_numeric_header(where, raw.first_line, raw.first, reason)
            names, values = [c.strip() for c in raw.first], values[1:]
    if names is not None:
        if index_column(values[:, 0], names, values.shape[1]):
            warn_index_dropped(where, values[:, 0])
            values = values[:, 1:]
            names = names[-values.shape[1]:]
        check_header_width(names, values.shape[1], raw.first_line, where)
    return values, tuple(names) if names is not None else None


def read_table(path: Path, header: str = "auto") -> tuple[np.ndarray, tuple[str, ...] | None]:
    """``(x [rows, columns] float64, the header's names or None)`` of a CSV/TSV table of
    numbers; see the module docstring for the separator, ``header`` ("auto", "yes", "no")
    and index columns."""
    return numeric_table(split_table(path, header), header)
