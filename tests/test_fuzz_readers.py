"""Bad data, every reader: property-based tests (hypothesis) that feed malformed inputs to
the readers and to the commands that read data.

Every input must end in either a correct result or a :class:`~elbokit.errors.DataError`
whose message is one line naming the file; through the command line: exit status 2, one
line on stderr starting ``elbokit: error``, no traceback, nothing written (no run
directory, no ``--json`` or ``-o`` file).

Malformed inputs tried: random bytes under every file suffix; ``.npy`` files of every dtype
numpy writes (floats of each width, integers, bool, complex, strings, bytes, dates,
durations, records, Python objects: never unpickled) and 0-D to 4-D shapes, then truncated,
with bytes flipped or garbage appended, or a forged header (huge, negative or non-integer
shapes, bad dtypes, syntax errors); ``.npz`` archives with missing, extra, misnamed,
mis-shaped or mis-typed arrays and labels (one class, a third class, NaN labels, labels not
matching x); CSV/TSV tables with ragged rows, text in numeric columns, NaN/inf, huge values
(1e308, 1e400, overflow of float32), empty cells, quotes, BOMs, CRLF/CR line ends and
non-UTF-8 encodings; tables of mixed column types (numbers, counts, words, missing tokens)
read with inferred and given column types, then again with the schema fitted on them;
``label<TAB>text`` files; mail folders of random, empty, BOM-prefixed
and mbox files; the named MNIST sets replaced by random bytes; and ``fit --stream``.

Reproducible: ``derandomize=True`` (the same examples on every run, in CI too), no example
database. The module counts the inputs tried and prints the total at the end.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import pickle
import tempfile
import warnings
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from elbokit import data as datasets
from elbokit.cli import main
from elbokit.data import MAX_ABS_VALUE, NpyStream
from elbokit.data.columns import (
    KINDS,
    LEVEL_KINDS,
    MISSING_TOKENS,
    MixedTable,
    read_mixed,
    read_with_schema,
)
from elbokit.data.email import read_email_folder
from elbokit.data.text import read_labelled_text
from elbokit.errors import ConfigError, DataError, ElbokitError

TRIED: Counter[str] = Counter()  # inputs tried, per test
OUTCOMES: Counter[str] = Counter()  # read correctly / refused with a one-line error


def fuzz(max_examples: int):
    """Reproducible hypothesis settings: the same examples on every run."""
    return settings(max_examples=max_examples, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


@pytest.fixture(scope="module", autouse=True)
def report_inputs_tried(request):
    yield
    total = sum(TRIED.values())
    line = (f"test_fuzz_readers: {total} inputs tried "
            f"({', '.join(f'{k} {v}' for k, v in sorted(TRIED.items()))}); reader calls: "
            f"{OUTCOMES['read']} read correctly, {OUTCOMES['refused']} refused in one line; "
            f"commands: {OUTCOMES['exit 0']} exit 0, {OUTCOMES['exit 2']} exit 2 (one line)")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(line)


@contextlib.contextmanager
def workdir():
    with tempfile.TemporaryDirectory(prefix="elbokit-fuzz-") as tmp:
        yield Path(tmp)


def assert_one_line_error(error: BaseException, path: Path | str) -> None:
    """A DataError (or another input error) on one line that names the file."""
    assert isinstance(error, ElbokitError), repr(error)
    message = str(error)
    assert "\n" not in message and "\r" not in message, message
    assert str(path) in message, (str(path), message)


def outcome(read, path: Path):
    """``read(path)``'s result, or None after checking its error is a one-line DataError."""
    try:
        result = read(path)
    except DataError as e:
        assert_one_line_error(e, path)
        OUTCOMES["refused"] += 1
        return None
    OUTCOMES["read"] += 1
    return result


def check_dataset(d: datasets.Dataset) -> None:
    """What a reader promises of a data set it returns."""
    assert d.x.dtype == np.float64 and d.x.ndim == 2 and d.x.shape[0] > 0 and d.x.shape[1] > 0
    assert np.isfinite(d.x).all() and (np.abs(d.x) <= MAX_ABS_VALUE).all()
    if d.y is not None:
        assert d.y.ndim == 1 and len(d.y) == len(d.x) and d.y.dtype.kind in "biufU"


# -- strategies ------------------------------------------------------------------------------

SUFFIXES = [".npy", ".npz", ".csv", ".tsv", ".txt", ".tab"]
REAL_DTYPES = ["<f8", "<f4", "<f2", ">f8", "<i8", "<i4", "|i1", "|u1", "<u2", "<u8", "|b1"]
OTHER_DTYPES = ["<c16", "<c8", "<U3", "|S2", "<M8[D]", "<m8[s]"]
shapes = st.lists(st.integers(0, 4), min_size=0, max_size=4).map(tuple)


@st.composite
def arrays(draw, dtypes=REAL_DTYPES + OTHER_DTYPES):
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    shape = draw(shapes)
    if dtype.kind == "f":
        elements = st.one_of(
            st.floats(width=8 * dtype.itemsize if dtype.itemsize in (2, 4, 8) else 64,
                      allow_nan=True, allow_infinity=True),
            st.sampled_from([0.0, 1.0, 1e18, -1e18, 1e19, 1e308, -1e308, 5e-324]).map(
                lambda v: _cast(v, dtype)))
        return draw(hnp.arrays(dtype, shape, elements=elements))
    return draw(hnp.arrays(dtype, shape))


def _cast(value: float, dtype: np.dtype) -> float:
    """``value`` in ``dtype`` (1e308 becomes inf in float32: that is the point)."""
    with np.errstate(over="ignore"):
        return np.asarray(value).astype(dtype).item()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=array.dtype.hasobject)
    return buffer.getvalue()


def header(text: str, version: int = 1) -> bytes:
    """An .npy header with dictionary ``text`` (any text: forged headers too)."""
    raw = text.encode("latin-1", "replace")
    size = 10 if version == 1 else 12
    raw += b" " * ((64 - (size + len(raw) + 1) % 64) % 64) + b"\n"
    length = len(raw).to_bytes(2 if version == 1 else 4, "little")
    return b"\x93NUMPY" + bytes([version, 0]) + length + raw


forged_headers = st.builds(
    lambda descr, fortran, shape, version, body: header(
        f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}", version) + body,
    st.sampled_from(["'<f8'", "'<f4'", "'|u1'", "'O'", "'<c16'", "'<U3'", "'<m8[s]'", "[('a', '<f8')]",
                     "'xyz'", "None", "3", "'<V8'"]),
    st.sampled_from(["False", "True", "0", "'no'"]),
    st.one_of(st.sampled_from(["(2, 3)", "(3,)", "()", "(-1, 2)", "(2, 2.5)", "(10**20, 10**20)",
                               "(9223372036854775807, 2)", "(4611686018427387904, 4)",
                               "(100000000000, 100000)", "(2**40, 2)",
                               "(2, 0)", "(0, 2)", "(2, 2, 2, 2)", "((", "(1, __import__('os'))",
                               "'(2, 2)'", "[2, 2]"]),
              st.lists(st.integers(-2, 10**12), max_size=4).map(lambda s: repr(tuple(s)))),
    st.sampled_from([1, 2]),
    st.binary(max_size=200))


@st.composite
def mutated(draw, content: bytes) -> bytes:
    """``content`` as it is, truncated, with bytes overwritten, or with garbage appended."""
    how = draw(st.sampled_from(["same", "truncate", "flip", "append", "header-only"]))
    if how == "truncate" and content:
        return content[:draw(st.integers(0, len(content) - 1))]
    if how == "flip" and content:
        data = bytearray(content)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    if how == "append":
        return content + draw(st.binary(min_size=1, max_size=64))
    if how == "header-only":
        return content[:min(len(content), 128)]
    return content


def expected_matrix(array: np.ndarray) -> np.ndarray | None:
    """What a reader must return for a well-formed array (None: it must refuse it)."""
    if array.dtype.kind not in "biuf" or array.ndim < 2 or 0 in array.shape:
        return None
    x = array.reshape(array.shape[0], -1).astype(np.float64)
    if not np.isfinite(x).all() or (np.abs(x) > MAX_ABS_VALUE).any():
        return None
    return x


# -- .npy --------------------------------------------------------------------------------

@fuzz(60)
@given(array=arrays())
def test_npy_files_of_every_dtype_and_shape(array):
    TRIED["npy arrays"] += 1
    with workdir() as tmp:
        path = tmp / "x.npy"
        path.write_bytes(npy_bytes(array))
        got = outcome(datasets.load, path)
        want = expected_matrix(array)
        if want is None:
            assert got is None, f"accepted {array.dtype} {array.shape}"
        else:
            assert got is not None and np.array_equal(got.x, want)
            assert got.image_shape == (tuple(array.shape[1:]) if array.ndim > 2 else None)


@fuzz(60)
@given(content=st.one_of(arrays().map(npy_bytes).flatmap(mutated), forged_headers,
                         forged_headers.flatmap(mutated), st.binary(max_size=300)))
def test_damaged_and_forged_npy_files(content):
    TRIED["npy damaged"] += 1
    with workdir() as tmp:
        path = tmp / "x.npy"
        path.write_bytes(content)
        got = outcome(datasets.load, path)
        if got is not None:
            check_dataset(got)
        stream = outcome(lambda p: NpyStream(p, ram_budget="1M"), path)
        if stream is not None:
            try:
                stream.scan()
            except DataError as e:
                assert_one_line_error(e, path)


def record_unpickling() -> None:
    os.environ["ELBOKIT_FUZZ_UNPICKLED"] = "1"


class Payload:
    """Unpickling this would run code: it records that it did."""

    def __reduce__(self):
        return (record_unpickling, ())


@fuzz(25)
@given(shape=st.sampled_from([(2, 2), (3, 1, 2), (1,)]), suffix=st.sampled_from([".npy", ".npz"]),
       key=st.sampled_from(["x", "y"]))
def test_object_arrays_are_never_unpickled(shape, suffix, key):
    TRIED["pickles"] += 1
    objects = np.empty(shape, dtype=object)
    objects.flat[0] = Payload()
    with workdir() as tmp:
        path = tmp / f"evil{suffix}"
        if suffix == ".npy":
            np.save(path, objects, allow_pickle=True)
        else:
            arrays_ = {"x": np.zeros((len(objects), 2)), key: objects}
            np.savez(path, **arrays_)
        os.environ.pop("ELBOKIT_FUZZ_UNPICKLED", None)
        assert outcome(datasets.load, path) is None
        assert outcome(lambda p: NpyStream(p), path) is None or suffix == ".npz"
        assert "ELBOKIT_FUZZ_UNPICKLED" not in os.environ
    assert pickle.dumps(0)  # (pickle itself still works: nothing was patched)


# -- .npz --------------------------------------------------------------------------------

label_arrays = st.one_of(
    arrays(REAL_DTYPES + OTHER_DTYPES),
    st.lists(st.sampled_from(["ham", "spam", "eggs", ""]), max_size=8).map(np.array),
    st.lists(st.sampled_from([0, 1, 2]), max_size=8).map(np.array),
    st.lists(st.sampled_from([0.0, 1.0, np.nan, np.inf]), max_size=8).map(np.array))


@fuzz(60)
@given(x=arrays(), y=st.none() | label_arrays,
       x_name=st.sampled_from(["x", "X", "data", "images"]), extra=st.booleans(),
       damage=st.booleans(), data=st.data())
def test_npz_archives(x, y, x_name, extra, damage, data):
    TRIED["npz"] += 1
    with workdir() as tmp:
        path = tmp / "d.npz"
        members = {x_name: x, **({"y": y} if y is not None else {}),
                   **({"other": np.arange(3)} if extra else {})}
        np.savez(path, **members)
        if damage:
            path.write_bytes(data.draw(mutated(path.read_bytes())))
        got = outcome(datasets.load, path)
        if got is None:
            return
        check_dataset(got)
        if not damage:
            assert np.array_equal(got.x, expected_matrix(x))
            if y is not None and x_name != "y":
                assert np.array_equal(got.y, y)


# -- CSV/TSV tables of numbers -----------------------------------------------------------

numbers = st.one_of(st.integers(-10**6, 10**6).map(str),
                    st.floats(-1e18, 1e18, allow_nan=False).map(repr))
cells = st.one_of(  # mostly numbers: a correct result is an outcome too
    numbers, numbers, numbers, numbers,
    st.floats(allow_nan=False, allow_infinity=False, width=64).map(repr),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "1e308", "-1e308", "1e400", "3.5e38", "1e19",
                     "", " ", "abc", "1,5", '"7"', '"8', "0x1F", "1_000", "\u00e9", "\x00",
                     "\ufeff1", "١٢", "1e-400", "  2  "]),
    st.text(max_size=4))


@st.composite
def tables(draw):
    """A table of numbers with 0-3 faults: any cell, a ragged row, an odd header."""
    width = draw(st.integers(1, 4))
    rows = draw(st.lists(st.lists(numbers, min_size=width, max_size=width), max_size=6))
    for _ in range(draw(st.integers(0, 3)) if rows else 0):
        row = rows[draw(st.integers(0, len(rows) - 1))]
        if draw(st.integers(0, 4)) == 0:
            row.append(draw(cells))  # ragged
        else:
            row[draw(st.integers(0, len(row) - 1))] = draw(cells)
    head = draw(st.sampled_from([None, ["a"] * width, ["1"] + ["b"] * (width - 1), [""] * width]))
    return ([head] if head else []) + rows


@fuzz(60)
@given(rows=tables(), suffix=st.sampled_from([".csv", ".tsv", ".txt"]),
       newline=st.sampled_from(["\n", "\r\n", "\r"]), bom=st.booleans(),
       encoding=st.sampled_from(["utf-8", "utf-8", "latin-1", "utf-16"]))
def test_numeric_tables(rows, suffix, newline, bom, encoding):
    TRIED["tables"] += 1
    delimiter = "\t" if suffix == ".tsv" else ","
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator=newline).writerows(rows)
    text = ("\ufeff" if bom else "") + buffer.getvalue()
    try:
        content = text.encode(encoding)
    except UnicodeEncodeError:
        content = text.encode("utf-8", "surrogatepass")
    with workdir() as tmp:
        path = tmp / f"t{suffix}"
        path.write_bytes(content)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = outcome(datasets.load, path)
        if got is None:
            return
        if "table" in got.meta:  # an empty or text cell: read with column types
            check_mixed(got.meta["table"])
            return
        check_dataset(got)
        said = " ".join(str(w.message) for w in caught)
        # A table read must be the numbers written, row for row (after a header, if any) ...
        body = [r for r in rows if any(c.strip() for c in r)]
        if body and any(c.strip() and not _number(c) for c in body[0]):
            body = body[1:]
        expected = np.array([[float(c) for c in r] for r in body])
        # ... but for a first row of numbers taken as column names, or a first column taken
        # as a row index, each said in a warning.
        if got.x.shape[0] == len(expected) - 1 and "as a header" in said:
            expected = expected[1:]
        if got.x.shape[1] == expected.shape[1] - 1 and "unnamed row index" in said:
            expected = expected[:, 1:]
        assert np.array_equal(got.x, expected)


def _number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


# -- tables of mixed column types ----------------------------------------------------------

def check_mixed(table: MixedTable, tokens: tuple[str, ...] = ()) -> None:
    """What a typed table promises: each modelled cell of ``x`` is its file cell read by the
    column's type (the number; the level's code), NaN exactly where the cell is missing; no
    row is missing every cell; the schema describes the values in one line per column."""
    x, schema = table.x, table.schema
    assert x.dtype == np.float64 and x.shape == (len(table.cells), len(schema.columns))
    assert len(table.lines) == len(x) and not np.isinf(x).any()
    assert not np.isnan(x).all(axis=1).any()
    missing = set(MISSING_TOKENS) | {t.strip() for t in tokens}
    for j, column in enumerate(schema.columns):
        assert column.kind in KINDS
        k = table.field(column.name)
        for row, value in zip(table.cells, x[:, j], strict=True):
            cell = row[k].strip()
            if cell in missing or (_number(cell) and np.isnan(float(cell))):
                assert np.isnan(value), (column, cell, value)
            elif column.kind in LEVEL_KINDS:
                level = column.levels[int(value)]
                assert value == int(value) and (level == cell or (
                    _number(level) and _number(cell) and float(level) == float(cell))), (column, cell)
            else:
                assert value == float(cell), (column, cell, value)
    described = schema.describe(x).splitlines()
    assert len(described) == 1 + len(schema.columns) + (1 + len(schema.skipped) if schema.skipped else 0)


mixed_cells = st.one_of(
    numbers, st.integers(0, 6).map(str),
    st.sampled_from(["", " ", "NA", "null", "?", "red", "blue", " green ", "yes", "no", "1,5",
                     "2;3", "inf", "-0", "0", "1", "2.50", "NaN", "\u00e9t\u00e9", '"q"']),
    st.text(max_size=4))
column_styles = {
    "numbers": numbers, "counts": st.integers(0, 30).map(str),
    "words": st.sampled_from(["red", "blue", "green", "plum"]),
    "yes/no": st.sampled_from(["yes", "no"]), "any": mixed_cells,
}


@st.composite
def mixed_tables(draw) -> list[list[str]]:
    """A header and columns each of one style (numbers, counts, words, yes/no, anything),
    with missing tokens sprinkled in and 0-2 faults: any cell, a ragged row."""
    width = draw(st.integers(1, 4))
    # Mostly columns of one kind each, so that most tables are read (a correct result is an
    # outcome); "any" and the faults make the refusals.
    styles = [draw(st.sampled_from(["numbers", "counts", "words", "yes/no"] * 3 + ["any"]))
              for _ in range(width)]
    rows = [[draw(st.one_of(column_styles[s], column_styles[s], column_styles[s],
                            st.sampled_from(["", "NA", " "]))) for s in styles]
            for _ in range(draw(st.integers(0, 14)))]
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2])) if rows else 0):
        row = rows[draw(st.integers(0, len(rows) - 1))]
        if draw(st.integers(0, 5)) == 0:
            row.append(draw(mixed_cells))  # ragged
        else:
            row[draw(st.integers(0, len(row) - 1))] = draw(mixed_cells)
    head = draw(st.sampled_from([None, list("abcd")[:width], ["", *"bcd"][:width],
                                 ["a"] * width, [str(k + 1) for k in range(width)]]))
    return ([head] if head else []) + rows


@fuzz(120)
@given(rows=mixed_tables(), suffix=st.sampled_from([".csv", ".tsv"]),
       types=st.dictionaries(st.sampled_from(["a", "b", "c", "zz"]),
                             st.sampled_from([*KINDS, "skip", "bad"]), max_size=2),
       tokens=st.lists(st.sampled_from(["?", "-", "red", ""]), max_size=2))
def test_mixed_tables(rows, suffix, types, tokens):
    TRIED["mixed tables"] += 1
    buffer = io.StringIO()
    csv.writer(buffer, delimiter="\t" if suffix == ".tsv" else ",").writerows(rows)
    with workdir() as tmp:
        path = tmp / f"m{suffix}"
        path.write_text(buffer.getvalue(), encoding="utf-8")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a numeric header, an index column: said, not tested here
            try:
                got = read_mixed(path, missing=tokens, column_types=types or None)
            except ConfigError as e:  # the column types: names not in the file, unknown types
                assert "\n" not in str(e), str(e)
                assert ("which is not a column of" in str(e) and str(path) in str(e)) or (
                    "unknown type" in str(e) and "bad" in types.values()), str(e)
                OUTCOMES["refused"] += 1
                return
            except DataError as e:
                assert_one_line_error(e, path)
                OUTCOMES["refused"] += 1
                return
            OUTCOMES["read"] += 1
            check_mixed(got, tuple(tokens))
            assert set(types) <= set(got.schema.names)
            for name, kind in types.items():
                assert kind == "skip" or got.schema.columns[
                    [c.name for c in got.schema.columns].index(name)].kind == kind
            # The same file read with the schema fitted on it: the same values and codes.
            again = read_with_schema(path, got.schema, missing=tokens)
        assert np.array_equal(again.x, got.x, equal_nan=True)


# -- label<TAB>text and CSV text ---------------------------------------------------------

texts = st.one_of(st.text(max_size=30),
                  st.sampled_from(["hello there", "free prize \t now", '"quoted', 'a"b"c',
                                   "line\rbreak", "nul\x00here", "\u2028sep", "", "  "]))


@fuzz(60)
@given(rows=st.lists(st.tuples(st.sampled_from(["ham", "spam", "eggs", "", " ", "h\x00m"]), texts),
                     max_size=8),
       suffix=st.sampled_from([".tsv", ".txt", ".csv"]), head=st.booleans(),
       newline=st.sampled_from(["\n", "\r\n", "\r"]), bom=st.booleans(),
       encoding=st.sampled_from(["utf-8", "utf-8", "latin-1", "utf-16"]), raw=st.binary(max_size=40))
def test_labelled_text_files(rows, suffix, head, newline, bom, encoding, raw):
    TRIED["labelled text"] += 1
    if suffix == ".csv":
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator=newline).writerows(([("label", "text")] if head else []) + rows)
        text = buffer.getvalue()
    else:
        text = newline.join(f"{label}\t{body}" for label, body in
                            ([("label", "text")] if head else []) + rows)
    try:
        content = (("\ufeff" if bom else "") + text).encode(encoding)
    except UnicodeEncodeError:
        content = raw
    with workdir() as tmp:
        path = tmp / f"m{suffix}"
        path.write_bytes(content)
        got = outcome(read_labelled_text, path)
        if got is not None:
            assert len(got.texts) == len(got.labels) > 0
            assert all(t.strip() for t in got.texts) and all(str(c).strip() for c in got.labels)


# -- mail folders ------------------------------------------------------------------------

MESSAGE = b"From: a@example.org\nSubject: %s\n\n%s\n"
mail_files = st.one_of(
    st.builds(lambda s, b: MESSAGE % (s.encode("utf-8", "replace"), b.encode("utf-8", "replace")),
              st.text(max_size=10), st.text(max_size=20)),
    st.binary(max_size=200),
    st.just(b""),
    st.just(b"\xef\xbb\xbfSubject: bom\r\n\r\nwith a BOM and CRLF\r\n"),
    st.builds(lambda b: b"From x@y Sat Jan  1 00:00:00 2000\n" + MESSAGE % (b"m", b"1") +
              b"\nFrom z@y Sat Jan  1 00:00:00 2000\n" + b, st.binary(max_size=80)),
    st.builds(lambda c, b: b"Subject: cs\nContent-Type: text/plain; charset=" + c + b"\n\n" + b,
              st.sampled_from([b"utf-8", b"x-unknown", b"rot13", b"utf-16", b'"\x00"', b"latin-1"]),
              st.binary(max_size=40)))


@fuzz(40)
@given(layout=st.dictionaries(
    st.tuples(st.sampled_from(["ham", "spam", ".hidden", "eggs"]),
              st.sampled_from(["1.eml", "2", "box.mbox", "cur/3", ".x"])),
    mail_files, max_size=6), stray=st.booleans())
def test_mail_folders(layout, stray):
    TRIED["mail folders"] += 1
    with workdir() as tmp:
        root = tmp / "mail"
        root.mkdir()
        for (label, name), content in layout.items():
            (root / label / name).parent.mkdir(parents=True, exist_ok=True)
            (root / label / name).write_bytes(content)
        if stray:
            (root / "README").write_bytes(b"not mail")
        got = outcome(read_email_folder, root)
        if got is not None:
            assert len(got.texts) == len(got.labels) and len(got.classes) >= 2
            assert all("\n" not in p for p in got.problems)


# -- named data sets and data specs ------------------------------------------------------

@fuzz(30)
@given(name=st.sampled_from(["mnist", "binarized-mnist"]), content=st.binary(max_size=300),
       where=st.sampled_from(["sub", "flat", "none"]))
def test_named_sets_refuse_files_that_are_not_theirs(name, content, where):
    TRIED["named sets"] += 1
    from elbokit.data import mnist

    folder, file, _, _ = mnist.FILES[name]
    with workdir() as tmp:
        path = tmp / folder / file if where == "sub" else tmp / file
        if where != "none":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        old = os.environ.get(mnist.ENV)
        os.environ[mnist.ENV] = str(tmp)
        try:
            with pytest.raises(DataError) as caught:
                datasets.load(name)
        finally:
            os.environ.pop(mnist.ENV) if old is None else os.environ.__setitem__(mnist.ENV, old)
        message = str(caught.value)
        assert "\n" not in message
        assert (str(path) in message) if where != "none" else (str(tmp) in message)


@fuzz(40)
@given(spec=st.text(max_size=12))
def test_any_data_spec_is_a_data_set_or_a_one_line_error(spec):
    TRIED["data specs"] += 1
    with workdir() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)  # relative specs resolve to nothing (or this empty folder)
        try:
            got = datasets.load(spec)
        except DataError as e:
            assert "\n" not in str(e)
        else:
            assert spec in datasets.NAMED
            check_dataset(got)
        finally:
            os.chdir(cwd)


# -- through the command line ------------------------------------------------------------

FAST = ["--epochs", "1", "--hidden", "8", "--latent-dim", "2", "--eval-k", "10", "--no-report",
        "--quiet"]


def cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    OUTCOMES[f"exit {code}"] += 1
    return code, out.getvalue(), err.getvalue()


def assert_refused(code: int, out: str, err: str, path: Path | str) -> None:
    assert "Traceback" not in out + err, err
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("elbokit: error"), err
    assert str(path) in lines[0], lines[0]


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


fuzzed_files = st.one_of(
    st.tuples(st.just(".npy"), arrays().map(npy_bytes).flatmap(mutated)),
    st.tuples(st.just(".npy"), forged_headers),
    st.tuples(st.sampled_from(SUFFIXES), st.binary(max_size=120)),
    st.tuples(st.sampled_from([".csv", ".tsv"]), tables().map(
        lambda rows: "\n".join(",".join(r) for r in rows).encode("utf-8", "replace"))),
    # Valid-looking data too: a correct result is an outcome.
    st.tuples(st.just(".npy"), hnp.arrays(np.float64, st.tuples(st.integers(0, 12), st.integers(0, 3)),
                                          elements=st.sampled_from([0.0, 1.0, 0.5, -2.0, np.nan])
                                          ).map(npy_bytes)))


@fuzz(40)
@given(file=fuzzed_files, stream=st.booleans())
def test_fit_on_fuzzed_files(file, stream):
    TRIED["cli fit"] += 1
    suffix, content = file
    with workdir() as tmp:
        path = tmp / f"data{suffix}"
        path.write_bytes(content)
        out_dir = tmp / "run"
        before = listing(tmp)
        code, out, err = cli("fit", "--data", path, "--out", out_dir, *FAST,
                             *(["--stream", "--ram-budget", "1M"] if stream else []))
        if code == 0:
            assert (out_dir / "summary.json").exists() and "Traceback" not in err
        else:
            # --stream refuses other files than .npy by name
            assert_refused(code, out, err, path)
            assert listing(tmp) == before, "nothing written"


@pytest.fixture(scope="module")
def trained_run():
    with tempfile.TemporaryDirectory(prefix="elbokit-fuzz-run-") as tmp:
        x = (np.random.default_rng(0).random((40, 3)) < 0.5).astype(np.float64)
        np.save(Path(tmp) / "train.npy", x)
        code, _, err = cli("fit", "--data", Path(tmp) / "train.npy", "--out", Path(tmp) / "run", *FAST)
        assert code == 0, err
        yield Path(tmp) / "run"


@fuzz(30)
@given(file=fuzzed_files)
def test_evaluate_on_fuzzed_files(trained_run, file):
    TRIED["cli evaluate"] += 1
    suffix, content = file
    with workdir() as tmp:
        path = tmp / f"data{suffix}"
        path.write_bytes(content)
        before = listing(trained_run)
        code, out, err = cli("evaluate", trained_run, "--data", path, "--k", "4", "--iwae-k", "2",
                             "--json", tmp / "scores.json")
        if code == 0:
            assert json.loads((tmp / "scores.json").read_text())["n_examples"] > 0
        else:
            assert_refused(code, out, err, path)
            assert not (tmp / "scores.json").exists()
        assert listing(trained_run) == before


@pytest.fixture(scope="module")
def classify_runs():
    """A numeric classify run (3 features) and a text one, to predict with."""
    with tempfile.TemporaryDirectory(prefix="elbokit-fuzz-classify-") as tmp:
        tmp = Path(tmp)
        x = (np.random.default_rng(0).random((40, 3)) < 0.5).astype(np.float64)
        np.savez(tmp / "xy.npz", x=x, y=np.arange(40) % 2)
        (tmp / "t.tsv").write_text("".join(f"{'ham' if i % 3 else 'spam'}\t"
                                           f"{'see you at lunch' if i % 3 else 'win a prize now'} {i}\n"
                                           for i in range(30)))
        for name, data in (("numeric", tmp / "xy.npz"), ("text", tmp / "t.tsv")):
            code, _, err = cli("classify", "--data", data, "--method", "generative",
                               "--out", tmp / name)
            assert code == 0, err
        yield {"numeric": tmp / "numeric", "text": tmp / "text"}


@fuzz(40)
@given(file=fuzzed_files, kind=st.sampled_from(["numeric", "text"]))
def test_predict_on_fuzzed_files(classify_runs, file, kind):
    TRIED["cli predict"] += 1
    suffix, content = file
    run = classify_runs[kind]
    with workdir() as tmp:
        path = tmp / f"rows{suffix}"
        path.write_bytes(content)
        before = listing(run)
        code, out, err = cli("predict", run, "--file", path, "--json", tmp / "p.json")
        if code == 0:
            assert json.loads((tmp / "p.json").read_text())["predictions"]
        else:
            assert_refused(code, out, err, path)
            assert not (tmp / "p.json").exists()
        assert listing(run) == before


@st.composite
def labelled_archives(draw):
    """An .npz of 0/1 rows and labels that may be wrong: one class, a third class, NaN, a
    length that does not match x, 2-D, other dtypes."""
    n = draw(st.integers(1, 24))
    x = (np.random.default_rng(draw(st.integers(0, 9))).random((n, 3)) < 0.5).astype(np.float64)
    kind = draw(st.sampled_from(["ok", "one-class", "three", "nan", "short", "2-d", "strings",
                                 "complex", "dates", "bytes", "none"]))
    y = {"ok": np.arange(n) % 2, "one-class": np.zeros(n), "three": np.arange(n) % 3,
         "nan": np.where(np.arange(n) == 0, np.nan, np.arange(n) % 2),
         "short": np.arange(max(n - 1, 0)) % 2, "2-d": np.zeros((n, 2)),
         "strings": np.array(["ham", "spam"] * n)[:n], "complex": np.arange(n) % 2 + 0j,
         "dates": np.zeros(n, dtype="M8[D]"), "bytes": np.array([b"a", b"b"] * n)[:n],
         "none": None}[kind]
    buffer = io.BytesIO()
    np.savez(buffer, x=x, **({"y": y} if y is not None else {}))
    return buffer.getvalue()


@fuzz(30)
@given(content=labelled_archives(), test=st.none() | labelled_archives(),
       mode=st.sampled_from(["npz", "tsv"]), tsv=st.lists(st.tuples(
           st.sampled_from(["ham", "spam", "eggs"]), st.sampled_from(["hello you", "buy now", "!!"])),
           max_size=12))
def test_classify_on_fuzzed_labels(content, test, mode, tsv):
    TRIED["cli classify"] += 1
    with workdir() as tmp:
        if mode == "npz":
            path = tmp / "d.npz"
            path.write_bytes(content)
        else:
            path = tmp / "d.tsv"
            path.write_text("".join(f"{label}\t{text}\n" for label, text in tsv))
        extra = []
        if test is not None and mode == "npz":
            (tmp / "t.npz").write_bytes(test)
            extra = ["--test", tmp / "t.npz"]
        before = listing(tmp)
        code, out, err = cli("classify", "--data", path, *extra, "--method", "generative",
                             "--out", tmp / "run", "--json", tmp / "m.json")
        assert "Traceback" not in out + err
        if code == 0:
            assert (tmp / "run" / "config.json").exists() and (tmp / "m.json").exists()
        else:
            assert code == 2, err
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("elbokit: error"), err
            assert str(path) in lines[0] or (extra and str(extra[1]) in lines[0]), lines[0]
            assert listing(tmp) == before, "nothing written"


def test_zip_members_that_are_not_arrays(tmp_path):
    """A .npz whose members are not .npy files (or are encrypted) is one line too."""
    path = tmp_path / "odd.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", b"\x93NUMPY garbage")
        archive.writestr("notes.txt", "hello")
    with pytest.raises(DataError) as caught:
        datasets.load(str(path))
    assert_one_line_error(caught.value, path)
