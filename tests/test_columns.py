"""Tables of mixed column types and missing cells (elbokit.data.columns): type inference,
missing tokens, column types given, columns left out, one-line errors naming line and
column, new data read with a fitted schema, and the wiring into elbokit.data.load."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from elbokit import data
from elbokit.data import columns
from elbokit.data.columns import (
    Column,
    Schema,
    parse_column_types,
    read_mixed,
    read_with_schema,
    schema_for_numbers,
    table_text,
)
from elbokit.errors import ConfigError, DataError, DataWarning


def write(path: Path, header: list[str] | None, rows: list[list[object]], sep: str = ",") -> Path:
    lines = ([sep.join(header)] if header is not None else []) + \
        [sep.join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def kinds_of(table) -> dict[str, str]:
    return {c.name: c.kind for c in table.schema.columns}


def one_line(error: BaseException, path: Path | None = None) -> str:
    message = str(error)
    assert "\n" not in message, message
    if path is not None:
        assert message.startswith(f"{path}: "), message
    return message


# -- inference ---------------------------------------------------------------------------------

@pytest.fixture
def mixed_csv(tmp_path) -> Path:
    """40 rows of one column per kind, drawn so that each kind is clear-cut."""
    rng = np.random.default_rng(0)
    n = 40
    real = rng.normal(size=n).round(3)
    positive = np.exp(rng.normal(size=n) * 1.2).round(4)
    poisson = np.tile([2, 3, 4, 1, 5, 3, 2, 4], 5)  # variance ~ mean
    negbin = np.tile([0, 0, 0, 1, 0, 25, 0, 40], 5)  # variance >> mean
    yes_no = rng.choice(["yes", "no"], n)
    one_two = rng.choice([1, 2], n)
    plan = rng.choice(["premium", "basic", "pro"], n)
    rows = [[real[i], positive[i], poisson[i], negbin[i], yes_no[i], one_two[i], plan[i]]
            for i in range(n)]
    return write(tmp_path / "mixed.csv", ["real", "pos", "pois", "nb", "smoker", "code", "plan"], rows)


def test_each_kind_is_inferred_from_its_values(mixed_csv):
    table = read_mixed(mixed_csv)
    assert kinds_of(table) == {"real": "real", "pos": "positive", "pois": "poisson", "nb": "negbin",
                               "smoker": "binary", "code": "binary", "plan": "categorical"}
    # The rules, checked against scipy on the same values: the skewed column and the counts.
    x = table.x
    pos = x[:, 1]
    assert stats.skew(pos) > 1 and abs(stats.skew(np.log(pos))) < abs(stats.skew(pos))
    assert x[:, 2].var(ddof=1) <= 1.5 * x[:, 2].mean() < 1.5 * x[:, 3].mean() < x[:, 3].var(ddof=1)
    real = x[:, 0]
    assert not (real > 0).all()


def test_measurements_and_years_are_not_counts_and_names_are_not_levels(tmp_path):
    """What the public tables taught (benchmarks/tables.py): integers written with a decimal
    point are measurements (penguins' flipper length 181.0), an underdispersed integer
    column is not a count (a year: variance / mean 0.0003), and a text column of mostly
    distinct values is identifier-like (cars' names: 311 in 406 rows)."""
    rng = np.random.default_rng(1)
    n = 60
    flipper = [f"{v:.1f}" for v in rng.integers(170, 230, n)]
    year = rng.integers(2007, 2010, n)
    counts = rng.poisson(3, n)
    names = [f"car {i % 40}" for i in range(n)]  # 40 distinct of 60: more than half
    group = [("a", "b", "c")[i % 3] for i in range(n)]
    rows = [[flipper[i], year[i], counts[i], names[i], group[i]] for i in range(n)]
    table = read_mixed(write(tmp_path / "t.csv", ["flipper", "year", "visits", "name", "group"], rows))
    assert kinds_of(table) == {"flipper": "real", "year": "real", "visits": "poisson",
                               "group": "categorical"}
    assert dict(table.schema.skipped)["name"] == "identifier-like: 40 distinct values in 60 cells"
    assert year.var(ddof=1) / year.mean() < 0.5 <= counts.var(ddof=1) / counts.mean()


def test_levels_are_kept_as_text_sorted_and_coded(mixed_csv):
    table = read_mixed(mixed_csv)
    by_name = {c.name: (j, c) for j, c in enumerate(table.schema.columns)}
    j, plan = by_name["plan"]
    assert plan.levels == ("basic", "premium", "pro")
    written = [row[6] for row in table.cells]
    assert [plan.levels[int(v)] for v in table.x[:, j]] == written
    j, code = by_name["code"]  # a numeric binary column: levels as number text, codes 0/1
    assert code.levels == ("1", "2")
    np.testing.assert_array_equal(table.x[:, j], [int(row[5]) - 1 for row in table.cells])
    j, smoker = by_name["smoker"]
    assert smoker.levels == ("no", "yes") and set(table.x[:, j]) == {0.0, 1.0}


def test_numeric_levels_sort_by_value_and_decimals_are_recorded(tmp_path):
    path = write(tmp_path / "t.csv", ["size", "w"], [[10, 1.5], [2, 2.25], [1, 3.125], [2, 1.0],
                                                     [10, 0.5]])
    table = read_mixed(path, column_types={"size": "categorical"})
    size, w = table.schema.columns
    assert size.levels == ("1", "2", "10")
    np.testing.assert_array_equal(table.x[:, 0], [2, 1, 0, 1, 2])
    assert w.kind == "real" and w.decimals == 3


def test_missing_tokens_default_and_given(tmp_path):
    rows = [[1.5, "a"], ["", "b"], ["NA", "a"], ["N/A", "a"], ["null", "b"], ["None", "a"],
            ["nan", "b"], [" NaN ", "a"], [2.5, "NULL"], [4.0, ""]]
    table = read_mixed(write(tmp_path / "t.csv", ["v", "c"], rows))
    assert np.isnan(table.x[:, 0]).tolist() == [False] + [True] * 7 + [False, False]
    assert np.isnan(table.x[:, 1]).tolist() == [False] * 8 + [True, True]
    # "?" is no token by default: in a column of numbers it is text, and the message says how
    # to read it as missing.
    path = write(tmp_path / "q.csv", ["v", "w"], [[1.5, 1], ["?", 2], [3.5, 1], [2.0, 2]])
    with pytest.raises(DataError, match=r"--missing '\?'") as info:
        read_mixed(path)
    one_line(info.value, path)
    table = read_mixed(path, missing=("?",))
    assert np.isnan(table.x[1, 0]) and table.x[2, 0] == 3.5


def test_columns_left_out_and_why(tmp_path):
    rows = [[i + 100, f"user{i}", "x", "", i % 3, (i * 7) % 5] for i in range(12)]
    path = write(tmp_path / "t.csv", ["id", "login", "const", "blank", "group", "score"], rows)
    table = read_mixed(path)
    assert [c.name for c in table.schema.columns] == ["group", "score"]
    assert dict(table.schema.skipped) == {
        "id": "identifier: all 12 values distinct", "login": "identifier: all 12 values distinct",
        "const": "constant: every value is 'x'", "blank": "every cell missing"}
    assert table.schema.names == ("id", "login", "const", "blank", "group", "score")
    assert table.x.shape == (12, 2)
    # Fewer than 10 distinct values are no identifier; a type given keeps a column.
    table = read_mixed(path, column_types={"id": "real", "group": "skip"})
    assert [c.name for c in table.schema.columns] == ["id", "score"]
    assert ("group", "left out by the column types given") in table.schema.skipped
    short = write(tmp_path / "s.csv", ["id", "v"], [[i, i % 2] for i in range(9)])
    assert [c.name for c in read_mixed(short).schema.columns] == ["id", "v"]


def test_a_table_without_header_names_columns_by_number(tmp_path):
    path = write(tmp_path / "t.csv", None, [[1.5, ""], [2.5, 3], [0.5, 4], [1.0, 3]])
    table = read_mixed(path)
    assert table.schema.names == ("1", "2") and not table.header and table.header_row is None
    assert table.lines.tolist() == [1, 2, 3, 4]


def test_an_index_column_is_dropped_but_kept_in_the_cells(tmp_path):
    path = write(tmp_path / "t.csv", ["", "h", "c"], [[0, 1.5, "a"], [1, "", "b"], [2, 3.5, "a"],
                                                      [3, 2.0, "c"]])
    with pytest.warns(DataWarning, match="unnamed row index"):
        table = read_mixed(path)
    assert table.schema.names == ("h", "c") and table.fields == ("", "h", "c")
    assert table.field("c") == 2 and table.cells[1] == ["1", "", "b"]


# -- column types given ------------------------------------------------------------------------

def test_column_types_from_text_and_json(tmp_path):
    assert parse_column_types("age=real, plan = Categorical,id=skip") == {
        "age": "real", "plan": "categorical", "id": "skip"}
    assert parse_column_types("a=b=binary") == {"a=b": "binary"}
    spec = tmp_path / "types.json"
    spec.write_text(json.dumps({"age": "positive", "visits": "negbin"}))
    assert parse_column_types(str(spec)) == {"age": "positive", "visits": "negbin"}


@pytest.mark.parametrize("text, message", [
    ("age=realish", r"age=realish: unknown type; choose from real, positive"),
    ("age", r"'age' is not NAME=TYPE"),
    ("=real", r"'=real' is not NAME=TYPE"),
    ("", "is empty"),
    ("a=real,a=binary", "two types, real and binary"),
    ("missing.json", "missing.json: no such file"),
])
def test_malformed_column_types_are_one_line_config_errors(tmp_path, monkeypatch, text, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message) as info:
        parse_column_types(text)
    one_line(info.value)


@pytest.mark.parametrize("content", ["[1, 2]", '{"a": 3}', "{not json"])
def test_a_json_file_of_other_things_is_refused(tmp_path, content):
    spec = tmp_path / "t.json"
    spec.write_text(content)
    with pytest.raises(ConfigError, match=str(spec)) as info:
        parse_column_types(str(spec))
    one_line(info.value)


# -- bad tables: one line, naming line and column ------------------------------------------------

@pytest.mark.parametrize("content, types, error, message", [
    ("a,b\n1,3.5\n2,abc\n1,4\n", None, DataError,
     r"numbers and text in one column \(if it holds categories, pass --column-types "
     r"b=categorical; if 'abc' marks missing values, --missing abc\): line 2 holds the number "
     r"3.5, but line 3, column \"b\" \(2\): 'abc' is not a number$"),
    ("a,b\n-1.5,1\n2,2\n", {"a": "poisson"}, DataError,
     r"line 2, column \"a\" \(1\): '-1.5' is not a count"),
    ("a,b\n1,0\n2,2\n", {"b": "positive"}, DataError,
     r"line 2, column \"b\" \(2\): '0' is not positive"),
    ("a,b\nx,1\ny,2\nz,1\n", {"a": "binary"}, DataError,
     r"line 4, column \"a\" \(1\): 'z' is a third value, but a binary column holds two"),
    ("a,b\nx,1\nx,2\n", {"a": "categorical"}, DataError,
     r"line 2, column \"a\" \(1\): a categorical column needs at least 2 levels"),
    ("a,b\nx,1\nx,2\n", {"c": "real"}, ConfigError,
     r"--column-types names 'c', which is not a column of .* \(its columns: a, b\)"),
    ("a,b\nx,1\nx,2\n", {"a": "ordinal"}, ConfigError, r"unknown type; choose from"),
    ("a,b\n,1\n,2\n", {"a": "real"}, DataError,
     r"column \"a\" \(1\): every cell is missing, so it cannot be read as real"),
    ("a,b\nx,1\nNA,\ny,2\n,NA\nz,\n", None, DataError, r": lines 3, 5 have every cell missing$"),
    # A line of empty fields only is a blank line, skipped as in a table of numbers.
    ("a,b\nx,1\n,\ny,2\n,NA\nz,\n", None, DataError, r": line 5 has every cell missing$"),
    ("a,b\nx,1\nNA,\ny,2\n", None, DataError, r": line 3 has every cell missing$"),
    ("a,b\n", None, DataError, r": no data rows$"),
    ("a,b\nx,1\ny\n", None, DataError, r": line 3 has 1 fields, expected 2$"),
    ("a,a\nx,1\ny,2\n", None, DataError, r"column \"a\" \(1\) and column \"a\" \(2\) have the same name"),
    ("a,b\n5,1\n5,2\n", None, None, None),  # a constant column is left out, not an error
    ("a,b\n5,x\n5,x\n", None, DataError, r"no column left to model: a \(constant"),
    ("a;b\n1,5;x\n2,5;y\n", None, DataError, r"line 2, column \"a\" \(1\): '1,5' is not a "
                                             r"number \(a decimal comma\?"),
    ("a,b\n1,inf\n2,3\n", None, DataError, r"line 2, column \"b\" \(2\): 'inf' is not a finite number"),
    ("1,x\n2,y\n3.5,x\n", {"1": "binary"}, DataError, r"line 3, column 1: '3.5' is a third value"),
])
def test_bad_tables_are_one_line_errors(tmp_path, content, types, error, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    if error is None:
        assert read_mixed(path, column_types=types).schema.skipped
        return
    with pytest.raises(error, match=message) as info:
        read_mixed(path, header="no" if content.startswith("1,x") else "auto", column_types=types)
    one_line(info.value, path if error is DataError else None)


def test_categorical_accepts_numbers_and_text_mixed(tmp_path):
    path = write(tmp_path / "t.csv", ["a", "b"], [[1, 3.5], [2, "abc"], [1, 4], [2, 3.50]])
    table = read_mixed(path, column_types={"b": "categorical"})
    b = table.schema.columns[1]
    assert b.levels == ("3.5", "4", "abc")  # numbers by value first; 3.5 and 3.50 are one
    np.testing.assert_array_equal(table.x[:, 1], [0, 2, 1, 0])


# -- new data with a fitted schema -----------------------------------------------------------

@pytest.fixture
def fitted(tmp_path) -> tuple[Path, columns.MixedTable]:
    rows = [[1.5, "basic", 3, "yes", 2.5], [2.0, "premium", 0, "no", 0.7],
            [0.5, "pro", 7, "yes", 12.0], ["", "basic", 1, "no", 1.1], [3.0, "pro", "", "yes", 3.3]]
    path = write(tmp_path / "train.csv", ["h", "plan", "visits", "smoker", "spend"], rows)
    table = read_mixed(path, column_types={"visits": "poisson", "spend": "positive"})
    return path, table


def test_the_same_file_read_with_its_schema_gives_the_same_codes(fitted):
    path, table = fitted
    again = read_with_schema(path, table.schema)
    np.testing.assert_array_equal(again.x, table.x)


def test_new_data_by_name_in_another_order(fitted, tmp_path):
    _, table = fitted
    path = write(tmp_path / "new.csv", ["smoker", "plan", "h", "spend", "visits"],
                 [["no", "pro", 1.0, 4.0, 2], ["yes", "", "", 1.5, 0]])
    x = read_with_schema(path, table.schema).x
    expected = np.array([[1.0, 2, 2, 0, 4.0], [np.nan, np.nan, 0, 1, 1.5]])
    np.testing.assert_array_equal(x, expected)


@pytest.mark.parametrize("rows, message", [
    ([["gold", 1, "yes", 2.0, 1.0]],
     r"line 2, column \"plan\" \(1\): 'gold' is a level not seen in training \(the column's 3: "
     r"'basic', 'premium', 'pro'\)"),
    ([["pro", -1, "yes", 2.0, 1.0]], r"line 2, column \"visits\" \(2\): '-1' is not a count"),
    ([["pro", 1, "maybe", 2.0, 1.0]],
     r"line 2, column \"smoker\" \(3\): 'maybe' is outside the column's two levels \('no', 'yes'\)"),
    ([["pro", 1, "yes", 0.0, 1.0]], r"line 2, column \"spend\" \(4\): '0.0' is not positive"),
    ([["pro", 1, "yes", 1.0, "tall"]],
     r"line 2, column \"h\" \(5\): 'tall' is not a number \(the column is real\)"),
    ([["pro", 1, "yes", 1.0, 2.0], ["", "", "", "", ""]], r"line 3 has every cell missing"),
])
def test_new_data_outside_the_schema_are_refused_with_their_line(fitted, tmp_path, rows, message):
    _, table = fitted
    path = write(tmp_path / "new.csv", ["plan", "visits", "smoker", "spend", "h"],
                 [r if any(str(v) for v in r) else ["NA"] * 5 for r in rows])
    with pytest.raises(DataError, match=message) as info:
        read_with_schema(path, table.schema)
    one_line(info.value, path)


def test_new_data_with_other_columns_are_refused_naming_them(fitted, tmp_path):
    _, table = fitted
    path = write(tmp_path / "new.csv", ["h", "plan", "visits", "smoker", "cost"],
                 [[1.0, "pro", 1, "yes", 2.0]])
    with pytest.raises(DataError, match=r"it lacks 'spend' and has 'cost' besides") as info:
        read_with_schema(path, table.schema)
    one_line(info.value, path)


# -- the schema ------------------------------------------------------------------------------

def test_schema_round_trips_through_json(fitted):
    _, table = fitted
    schema = table.schema
    again = Schema.from_dict(json.loads(json.dumps(schema.to_dict())))
    assert again == schema and again.columns[1].levels == ("basic", "premium", "pro")
    with pytest.raises(ConfigError):
        Schema.from_dict({"columns": [{"name": "a", "kind": "ordinal"}]})
    with pytest.raises(ConfigError):
        Column("a", "binary", ("x",))


def test_describe_lists_every_column_aligned(tmp_path):
    rows = [[i, ["a", "b", "c", "d", "e"][i % 5], "" if i % 4 == 0 else i % 3 + 0.5, "k"]
            for i in range(12)]
    table = read_mixed(write(tmp_path / "t.csv", ["id", "letter", "value", "const"], rows))
    text = table.schema.describe(table.x)
    lines = text.splitlines()
    assert lines[0].split() == ["column", "type", "values", "missing"]
    assert lines[1].split()[:2] == ["letter", "categorical"] and "a, b, c, d, ... (5 levels)" in lines[1]
    assert lines[2].split()[:2] == ["value", "real"] and "0.5 to 2.5" in lines[2]
    assert lines[2].endswith("3 (25.0%)") and lines[1].endswith("0 (0.0%)")
    assert len({line.index(kind) for line, kind in zip(lines[:3], ["type", "categorical", "real"],
                                                          strict=True)}) == 1
    assert lines[3] == "left out (2):"
    assert lines[4].split() == ["id", "identifier:", "all", "12", "values", "distinct"]
    assert lines[5].split(None, 1) == ["const", "constant: every value is 'k'"]


# -- writing back ------------------------------------------------------------------------------

def test_table_text_fills_only_the_missing_cells(fitted):
    path, table = fitted
    filled = np.nan_to_num(table.x, nan=1.25)
    text = table_text(table, filled)
    original = path.read_text().splitlines()
    lines = text.splitlines()
    assert lines[0] == original[0] and lines[1:3] == original[1:3]
    assert lines[4] == "1.2,basic,1,no,1.1"  # h: 1 decimal as written
    assert lines[5] == "3.0,pro,1,yes,3.3"  # visits: a count
    stacked = table_text(table, np.stack([filled, filled]))
    assert stacked.splitlines()[0] == "draw," + original[0] and len(stacked.splitlines()) == 11
    assert stacked.splitlines()[1].startswith("1,") and stacked.splitlines()[-1].startswith("2,")


# -- wiring into elbokit.data ------------------------------------------------------------------

def test_load_keeps_numeric_tables_as_they_were(tmp_path):
    path = write(tmp_path / "n.csv", ["a", "b"], [[1, 2], [3, 4.5], [5, 6]])
    got = data.load(str(path))
    np.testing.assert_array_equal(got.x, [[1, 2], [3, 4.5], [5, 6]])
    assert got.columns == ("a", "b") and "schema" not in got.meta and got.meta == {"header": True}
    # --missing given: typed, even without a missing cell.
    typed = data.load(str(path), missing=())
    assert typed.meta["schema"].names == ("a", "b") and typed.meta["table"].header


def test_load_types_a_table_with_an_empty_cell(tmp_path):
    path = write(tmp_path / "m.csv", ["a", "b", "c"], [[1.5, "x", 3], ["", "y", 4], [2.5, "x", ""],
                                                       [0.5, "z", 1]])
    got = data.load(str(path))
    schema = got.meta["schema"]
    assert isinstance(schema, Schema) and got.meta["table"].schema is schema
    assert got.columns == ("a", "b", "c") and schema.kinds == ("real", "categorical", "poisson")
    assert np.isnan(got.x[1, 0]) and np.isnan(got.x[2, 2]) and got.x[3, 1] == 2
    types = data.load(str(path), column_types={"c": "real"})
    assert types.meta["schema"].kinds[2] == "real"


def test_a_nan_in_a_table_of_numbers_is_refused_with_the_way_out(tmp_path):
    path = write(tmp_path / "n.csv", ["a", "b"], [[1, 2], ["nan", 4], [5, 6]])
    with pytest.raises(DataError, match=r"row 1 \(counting from 0\) contain NaN or inf; if NaN "
                                        r"marks missing cells, pass --missing"):
        data.load(str(path))
    assert np.isnan(data.load(str(path), missing=()).x[1, 0])


def test_arrays_take_nan_as_missing_only_when_asked(tmp_path):
    x = np.array([[0, 1.5, 3], [1, np.nan, 1], [1, 2.5, 2], [0, 0.5, np.nan]])
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(DataError, match="contain NaN"):
        data.load(str(tmp_path / "x.npy"))
    got = data.load(str(tmp_path / "x.npy"), missing=())
    np.testing.assert_array_equal(got.x, x)
    assert got.meta["schema"].kinds == ("binary", "real", "poisson")
    x[2] = np.nan
    np.save(tmp_path / "y.npy", x)
    with pytest.raises(DataError, match=r"row 2 \(counting from 0\) has every value missing"):
        data.load(str(tmp_path / "y.npy"), missing=())


def test_schema_for_numbers_keeps_every_column(tmp_path):
    x = np.array([[0, 3, 4.0], [0, 1, 1.0], [0, 2, 2.0], [0, 0, np.nan]])
    schema = schema_for_numbers(x, column_types={"2": "categorical"})
    assert schema.kinds == ("binary", "categorical", "poisson") and not schema.skipped
    assert schema.columns[1].levels == ("0", "1", "2", "3")
    with pytest.raises(DataError, match=r"column 3: a binary column of an array holds 0 or 1"):
        schema_for_numbers(x, column_types={"3": "binary"})
    with pytest.raises(ConfigError, match="keeps every column"):
        schema_for_numbers(x, column_types={"1": "skip"})


def test_check_matrix_with_missing_cells():
    x = np.array([[1.0, np.nan], [np.nan, np.nan], [2.0, 3.0]])
    with pytest.raises(DataError, match=r"rows 0, 1 \(counting from 0\) contain NaN or inf"):
        data.check_matrix(x, "x")
    with pytest.raises(DataError, match=r"x: row 1 \(counting from 0\) has every value missing"):
        data.check_matrix(x, "x", missing=True)
    data.check_matrix(x[[0, 2]], "x", missing=True)
    with pytest.raises(DataError, match="contain inf"):
        data.check_matrix(np.array([[np.inf, np.nan], [1.0, 2.0]]), "x", missing=True)


def test_outliers_ignore_missing_cells_and_codes():
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(size=50), np.repeat([0.0, 1.0], 25)])
    x[::7, 0] = np.nan
    x[3, 1] = 400.0  # as a code: a level far down the list, no outlier
    schema = Schema((Column("v", "real"), Column("c", "categorical", tuple(map(str, range(401))))),
                    ("v", "c"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.warn_outliers(x, "t", ("v", "c"), schema)
    with pytest.warns(DataWarning, match=r"row 3 \(counting from 0\) is an extreme outlier"):
        data.warn_outliers(x, "t", ("v", "c"))


def test_parquet_needs_pyarrow(tmp_path):
    path = tmp_path / "t.parquet"
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        path.write_bytes(b"PAR1")
        with pytest.raises(DataError, match=r"reading Parquet needs pyarrow: pip install pyarrow"):
            data.load(str(path))
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1.5, None, 2.5, 0.5], "b": ["x", "y", None, "x"]}), path)
    got = data.load(str(path))
    assert got.meta["schema"].kinds == ("real", "binary") and np.isnan(got.x[1, 0])


def test_dataframes_are_read_like_files():
    pd = pytest.importorskip("pandas", reason="pandas is optional: DataFrames need it")
    frame = pd.DataFrame({"age": [34.0, np.nan, 51.0, 28.0, 45.0],
                          "plan": pd.Categorical(["basic", "pro", None, "pro", "basic"]),
                          "smoker": [True, False, True, None, False],
                          "mixed": [1, "a", 2, 3, 4]})
    with pytest.raises(DataError, match=r"DataFrame: numbers and text in one column .* row 1 "
                                        r"\(counting from 0\), column \"mixed\" \(4\): 'a' is not"):
        columns.read_frame(frame)
    table = columns.read_frame(frame, column_types={"mixed": "skip"})
    # A float column (pandas stores whole numbers with a gap as floats) is written 34.0: a
    # measurement, not counts, unless the column types say so.
    assert kinds_of(table) == {"age": "real", "plan": "binary", "smoker": "binary"}
    typed = columns.read_frame(frame, column_types={"mixed": "skip", "age": "negbin"})
    assert kinds_of(typed)["age"] == "negbin"
    assert np.isnan(table.x[1, 0]) and np.isnan(table.x[2, 1]) and np.isnan(table.x[3, 2])
    again = columns.frame_with_schema(frame, table.schema)
    np.testing.assert_array_equal(again.x, table.x)
    filled = columns.frame_from_rows(frame, np.nan_to_num(table.x, nan=1.0), table.schema)
    assert filled["age"].tolist() == [34.0, 1.0, 51.0, 28.0, 45.0]
    assert filled["plan"].tolist() == ["basic", "pro", "pro", "pro", "basic"]
    assert filled["smoker"].tolist() == [True, False, True, True, False]
    assert columns.is_frame(frame) and not columns.is_frame(table.x)
