"""The command line on tables of typed columns with missing cells: fit prints the column
types, impute fills only the missing cells, score ranks the rows, and bad tables get one
line and exit 2 with nothing written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from elbokit.cli import main
from elbokit.data.planted import planted_table

FAST = ["--epochs", "3", "--hidden", "16", "--latent-dim", "2", "--eval-k", "20", "--quiet",
        "--no-report"]


def write(path: Path, rows: list[list[str]], delimiter: str = ",") -> Path:
    path.write_text("\n".join(delimiter.join(r) for r in rows) + "\n")
    return path


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A run trained on a planted table with 20% of its cells empty and '?' marking more."""
    where = tmp_path_factory.mktemp("tables")
    cells, _, _ = planted_table(300, seed=0, missing=0.2)
    cells[5][2] = "?"  # a user's own missing-cell token
    path = write(where / "t.csv", cells)
    out = where / "run"
    assert main(["fit", "--data", str(path), "--missing", "?", "--out", str(out), *FAST]) == 0
    return path, out


def test_fit_prints_the_column_types_and_records_them(table_run, capsys):
    path, out = table_run
    config = json.loads((out / "config.json").read_text())
    schema = config["params"]["table_schema"]
    assert [c["kind"] for c in schema["columns"]] == \
        ["real", "real", "real", "positive", "negbin", "binary", "categorical"]
    assert config["data"]["missing"] == ["?"]
    assert config["params"]["likelihood"] == "auto"


def test_fit_prints_the_types_before_training(tmp_path, capsys):
    cells, _, _ = planted_table(120, seed=1, missing=0.1)
    path = write(tmp_path / "t.csv", cells)
    assert main(["fit", "--data", str(path), "--out", str(tmp_path / "r"), *FAST]) == 0
    printed = capsys.readouterr().out
    head = printed[:printed.index("split")]
    for name, kind in (("height", "real"), ("income", "positive"), ("region", "categorical")):
        assert any(line.split()[:2] == [name, kind] for line in head.splitlines()), head


def test_impute_fills_only_the_missing_cells(table_run, tmp_path):
    path, out = table_run
    filled = tmp_path / "filled.csv"
    assert main(["impute", str(out), str(path), "-o", str(filled)]) == 0
    before = list(csv.reader(path.open()))
    after = list(csv.reader(filled.open()))
    assert len(before) == len(after) and before[0] == after[0]
    changed = 0
    for old, new in zip(before[1:], after[1:], strict=True):
        for a, b in zip(old, new, strict=True):
            if a in ("", "?"):
                assert b not in ("", "?")
                changed += 1
            else:
                assert a == b  # observed cells as written, byte for byte
    assert changed > 300  # 20% of 2,100 cells
    regions = {row[6] for row in after[1:]}
    assert regions <= {"east", "north", "south", "west"}  # levels as their text
    assert all(r[4].isdigit() for r in after[1:])  # counts as integers


def test_impute_draws_are_stacked_and_numbered(table_run):
    path, out = table_run
    from contextlib import redirect_stdout
    from io import StringIO

    buffer = StringIO()
    with redirect_stdout(buffer):
        assert main(["impute", str(out), str(path), "--draws", "3", "--k", "20"]) == 0
    rows = list(csv.reader(StringIO(buffer.getvalue())))
    assert rows[0][0] == "draw" and len(rows) == 1 + 3 * 300
    assert [r[0] for r in rows[1::300]] == ["1", "2", "3"]


def test_score_ranks_rows_and_writes_every_row(table_run, tmp_path, capsys):
    path, out = table_run
    scores = tmp_path / "scores.csv"
    assert main(["score", str(out), str(path), "-o", str(scores), "--k", "50"]) == 0
    printed = capsys.readouterr().out
    assert "most unusual" in printed
    rows = list(csv.DictReader(scores.open()))
    assert len(rows) == 300
    anomaly = np.array([float(r["anomaly"]) for r in rows])
    shown = [int(line.split()[0]) for line in printed.splitlines()[3:13]]
    assert shown == [int(rows[i]["line"]) for i in np.argsort(-anomaly)[:10]]
    assert all(float(r["stderr"]) >= 0 for r in rows)
    # A missing cell has no surprise; an observed one has.
    first = next(r for r in rows if r["line"] == "3")
    assert first["surprise:weight"] == ""


def test_evaluate_and_sample_read_and_write_the_runs_columns(table_run, tmp_path, capsys):
    path, out = table_run
    assert main(["evaluate", str(out), "--data", str(path), "--k", "20", "--missing", "?"]) == 0
    samples = tmp_path / "s.csv"
    assert main(["sample", str(out), "-n", "5", "-o", str(samples)]) == 0
    rows = list(csv.reader(samples.open()))
    assert rows[0] == ["height", "weight", "score", "income", "visits", "member", "region"]
    assert all(r[5] in ("no", "yes") and r[6] in ("east", "north", "south", "west") for r in rows[1:])


def test_resume_of_a_table_run_equals_an_unbroken_one(tmp_path):
    cells, _, _ = planted_table(150, seed=2, missing=0.2)
    path = write(tmp_path / "t.csv", cells)
    options = ["--hidden", "16", "--latent-dim", "2", "--eval-k", "20", "--quiet", "--no-report"]
    assert main(["fit", "--data", str(path), "--epochs", "4", "--out", str(tmp_path / "a"), *options]) == 0
    assert main(["fit", "--data", str(path), "--epochs", "2", "--out", str(tmp_path / "b"), *options]) == 0
    assert main(["fit", "--out", str(tmp_path / "b"), "--resume", "--epochs", "4", "--eval-k", "20",
                 "--quiet", "--no-report"]) == 0
    a = json.loads((tmp_path / "a" / "summary.json").read_text())["splits"]["test"]
    b = json.loads((tmp_path / "b" / "summary.json").read_text())["splits"]["test"]
    assert a["elbo"] == b["elbo"]


def test_arrays_with_nan_need_the_missing_flag(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(100, 3))
    x[3, 1] = np.nan
    path = tmp_path / "x.npy"
    np.save(path, x)
    assert main(["fit", "--data", str(path), "--out", str(tmp_path / "no"), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--missing" in err and "row 3" in err
    assert not (tmp_path / "no").exists()
    assert main(["fit", "--data", str(path), "--missing", "--out", str(tmp_path / "yes"), *FAST]) == 0
    kinds = json.loads((tmp_path / "yes" / "config.json").read_text())["params"]["table_schema"]
    assert [c["kind"] for c in kinds["columns"]] == ["real"] * 3


BAD_TABLES = {
    "mixed": ([["a", "b"], ["1.5", "x"], ["2.5", "3"], ["abc", "4"], ["3.5", "5"]], [],
              "column \"a\""),
    "one level": ([["a", "b"], ["1", "x"], ["2", "x"], ["3", "x"]], ["--column-types", "b=categorical"],
                  "at least 2 levels"),
    "header only": ([["a", "b"]], [], "no data rows"),
    "ragged": ([["a", "b"], ["1", "x"], ["2"], ["3", "y"]], [], "line 3"),
    "unknown column": ([["a", "b"], ["1", "x"], ["2", "y"], ["3", "x"]], ["--column-types", "c=real"],
                       "'c'"),
    "unknown type": ([["a", "b"], ["1", "x"], ["2", "y"], ["3", "x"]], ["--column-types", "a=weird"],
                     "weird"),
    "every cell missing": ([["a", "b"], ["1", "x"], ["NA", "NA"], ["3", "y"], ["4", "x"]], [],
                           "line 3"),
}


@pytest.mark.parametrize("name", sorted(BAD_TABLES))
def test_bad_tables_get_one_line_and_nothing_written(name, tmp_path, capsys):
    rows, extra, wording = BAD_TABLES[name]
    path = write(tmp_path / "bad.csv", rows)
    out = tmp_path / "run"
    assert main(["fit", "--data", str(path), "--out", str(out), *extra, *FAST]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: " in err and wording in err, err
    assert "Traceback" not in err and not out.exists()


def test_impute_refuses_a_table_that_is_not_the_runs(table_run, tmp_path, capsys):
    _, out = table_run
    cells, _, _ = planted_table(20, seed=4, missing=0.2)
    cells[3][6] = "up"  # a level never seen in training
    path = write(tmp_path / "new.csv", cells)
    filled = tmp_path / "filled.csv"
    assert main(["impute", str(out), str(path), "-o", str(filled)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 4" in err and "up" in err
    assert not filled.exists()
    numbers = tmp_path / "n.npy"
    np.save(numbers, np.zeros((3, 2)))
    run_numbers = tmp_path / "plain"
    assert main(["fit", "--data", "digits", "--out", str(run_numbers), *FAST]) == 0
    assert main(["impute", str(run_numbers), str(path)]) == 2
    assert "not trained on a table" in capsys.readouterr().err


def test_the_palmer_penguins_table_as_a_user_brings_it(tmp_path, capsys):
    """The penguins CSV (palmerpenguins ships it; CC0) with its own missing cells: the
    types a user would give by hand are inferred (the year, 2007-2009, is no count; the
    lengths written 181.0 are measurements), and every missing cell gets filled."""
    penguins = pytest.importorskip("palmerpenguins", reason="palmerpenguins is a test extra "
                                   "(pip install -e '.[dev]')")
    path = tmp_path / "penguins.csv"
    penguins.load_penguins().to_csv(path, index=False)
    out = tmp_path / "run"
    assert main(["fit", "--data", str(path), "--out", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].endswith("8 columns, typed as follows (--column-types "
                                            "NAME=TYPE,... overrides):")
    kinds = {line.split()[0]: line.split()[1] for line in printed.splitlines()[2:10]}
    assert kinds == {"species": "categorical", "island": "categorical", "bill_length_mm": "real",
                     "bill_depth_mm": "real", "flipper_length_mm": "real", "body_mass_g": "real",
                     "sex": "binary", "year": "real"}
    filled = tmp_path / "filled.csv"
    assert main(["impute", str(out), str(path), "-o", str(filled)]) == 0
    before, after = list(csv.reader(path.open())), list(csv.reader(filled.open()))
    assert sum(c == "" for r in before for c in r) == 19  # the table's own gaps
    assert not any(c == "" for r in after for c in r)
    assert {r[6] for r in after[1:]} == {"female", "male"}


def test_the_report_of_a_table_run_shows_its_most_unusual_rows(tmp_path):
    """With the report: the figures are drawn (a missing cell blank in the reconstructions),
    and summary.json and report.html list the held-out rows of highest anomaly score, each
    with its line in the file and its most unusual cell as written there."""
    cells, _, _ = planted_table(200, seed=5, missing=0.2)
    path = write(tmp_path / "t.csv", cells)
    out = tmp_path / "run"
    options = [o for o in FAST if o != "--no-report"]
    assert main(["fit", "--data", str(path), "--out", str(out), *options]) == 0
    assert (out / "figures" / "reconstructions.png").is_file()
    found = json.loads((out / "summary.json").read_text())["unusual_rows"]
    assert len(found) == 10
    assert [r["anomaly"] for r in found] == sorted((r["anomaly"] for r in found), reverse=True)
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    for r in found:
        assert lines[r["line"] - 1].split(",")[header.index(r["cell"])] == r["value"]
    html = (out / "report.html").read_text()
    assert "Most unusual rows" in html and f"{found[0]['cell']}</code> = {found[0]['value']}" in html
