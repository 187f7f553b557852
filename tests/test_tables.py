"""Tables that used to be read silently wrong: numeric headers, index columns, other
separators; column names in messages, run records, samples and figures; absurd scores."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from elbokit import data, plots
from elbokit.api import VAE
from elbokit.cli import main
from elbokit.data.table import numeric_header, sniff_separator
from elbokit.errors import DataError, DataWarning

FAST = ["--epochs", "2", "--hidden", "16", "--latent-dim", "2", "--eval-k", "20", "--quiet"]


def write(path: Path, rows, header=None, delimiter: str = ",") -> Path:
    lines = [] if header is None else [delimiter.join(header)]
    lines += [delimiter.join(f"{v:.6g}" for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def read(path: Path, header: str = "auto") -> tuple[data.Dataset, list[str]]:
    """The data set and the messages of the DataWarnings its reading gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = data.load(str(path), header)
    return dataset, [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


@pytest.fixture
def values() -> np.ndarray:
    """40 rows of 5 columns of very different scales (1e-4 to 1e4)."""
    rng = np.random.default_rng(0)
    return rng.normal(size=(40, 5)) * np.array([1e-4, 1.0, 10.0, 1e4, 1.0]) + 3.0


# -- numeric headers -------------------------------------------------------------------------

@pytest.mark.parametrize("names, picked, scale", [
    (["2019", "2020", "2021", "2022", "2023"], [0, 1, 2, 3, 4], 1.0),  # a run, outside 4 of 5
    (["1990", "2000", "2010", "2020", "2030"], [0, 1, 2, 4, 1], 1.0),  # far in every column
    (["0", "1", "2", "3", "4"], [1, 4, 1, 4, 1], 0.1),  # column numbers above values ~[0, 1]
])
def test_a_numeric_header_is_taken_as_one_with_a_warning(tmp_path, values, names, picked, scale):
    rows = np.abs(values[:, picked]) * scale
    dataset, said = read(write(tmp_path / "t.csv", rows, names))
    np.testing.assert_allclose(dataset.x, rows, rtol=1e-5)
    assert dataset.columns == tuple(names)
    assert len(said) == 1 and "as a header" in said[0] and "--header no" in said[0]


def test_an_unclear_numeric_first_row_is_data_but_never_silent(tmp_path, values):
    # 0..4 above columns whose ranges hold 1..4: may be data; far from column 0's 3.0000.
    path = write(tmp_path / "t.csv", values, ["0", "1", "2", "3", "4"])
    dataset, said = read(path)
    assert dataset.x.shape == (41, 5) and dataset.columns is None
    assert len(said) == 1 and "row 0 (counting from 0) is an extreme outlier (0 in column 1" in said[0]


def test_header_override_reads_the_first_row_as_data_and_flags_it(tmp_path, values):
    path = write(tmp_path / "t.csv", values, ["2019", "2020", "2021", "2022", "2023"])
    dataset, said = read(path, header="no")
    assert dataset.x.shape == (41, 5) and dataset.columns is None
    # The row is an extreme outlier in columns of scale 1e-4 ... 10: one line says so.
    assert len(said) == 1 and said[0].startswith(f"{path}: row 0 (counting from 0) is an extreme outlier")
    # --header yes: a first row of data taken as names, on request.
    dataset, said = read(write(tmp_path / "u.csv", values), header="yes")
    assert dataset.x.shape == (39, 5) and dataset.columns == tuple(f"{v:.6g}" for v in values[0])


@pytest.mark.parametrize("first, body, header", [
    ([1, 2, 3], [[0.1, 0.5, 0.9], [0.2, 0.4, 0.3], [0.0, 1.0, 0.5]], True),  # column numbers
    ([3, 4, 5], [[1, 7, 2], [6, 0, 9], [2, 5, 7]], False),  # counts: in range
    ([2019, 2021], [[0.5, 1.5], [1.0, 0.2], [0.3, 0.9]], True),  # far in every column
    ([2019, 1.5], [[0.5, 1.5], [1.0, 0.2]], False),  # not all integers
    ([7, 7, 7], [[0, 0, 0], [1, 1, 1]], False),  # not distinct
    ([5, 6, 7], [[0, 0, 0]], False),  # one row below: no range to judge by
])
def test_numeric_header_rule(first, body, header):
    assert (numeric_header(np.array(first, float), np.array(body, float)) is not None) == header


def test_ordinary_data_give_no_warning(tmp_path, values):
    rng = np.random.default_rng(1)
    for rows in (values, rng.lognormal(size=(500, 3)), (rng.random((200, 8)) < 0.1) * 1.0,
                 rng.poisson(2.0, size=(300, 4)) * 1.0):
        dataset, said = read(write(tmp_path / "t.csv", rows, [f"c{j}" for j in range(rows.shape[1])]))
        assert said == [] and dataset.x.shape == rows.shape


# -- index columns ---------------------------------------------------------------------------

def test_a_pandas_index_column_is_dropped_with_a_note(tmp_path, values):
    path = tmp_path / "p.csv"
    lines = [",height,weight"] + [f"{i},{a:.6g},{b:.6g}" for i, (a, b) in enumerate(values[:, 1:3])]
    path.write_text("\n".join(lines) + "\n")
    dataset, said = read(path)
    assert dataset.columns == ("height", "weight")
    np.testing.assert_allclose(dataset.x, values[:, 1:3], rtol=1e-5)
    assert len(said) == 1 and "dropped the first column, an unnamed row index" in said[0]
    # R's write.csv: one name fewer than fields, row names 1..n (quoted).
    lines = ['"height","weight"'] + [f'"{i + 1}",{a:.6g},{b:.6g}' for i, (a, b) in enumerate(values[:, 1:3])]
    path.write_text("\n".join(lines) + "\n")
    dataset, said = read(path)
    assert dataset.columns == ("height", "weight") and dataset.x.shape == (40, 2) and len(said) == 1


def test_an_unnamed_first_column_of_measurements_is_kept(tmp_path, values):
    dataset, said = read(write(tmp_path / "p.csv", values[:, :3], ["", "b", "c"]))
    assert dataset.x.shape == (40, 3) and said == []
    with pytest.raises(DataError, match=r"the header \(line 1\) names 2 columns, but the rows have 3"):
        data.load(str(write(tmp_path / "q.csv", values[:, :3], ["b", "c"])))


# -- separators and messages -----------------------------------------------------------------

@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_other_separators_in_a_csv_are_read(tmp_path, values, delimiter):
    dataset, said = read(write(tmp_path / "t.csv", values, list("abcde"), delimiter))
    np.testing.assert_allclose(dataset.x, values, rtol=1e-5)
    assert dataset.columns == tuple("abcde") and said == []


def test_sniffing_keeps_the_suffix_separator_when_it_splits_the_table():
    assert sniff_separator("a,b\n1,2\n", ",") == ","
    assert sniff_separator("a;b\n1;2\n", ",") == ";"
    assert sniff_separator("1\n2\n", ",") == ","  # one column
    assert sniff_separator("a;b|c\n1;2|3\n", ",") == ","  # ambiguous: the suffix's
    assert sniff_separator("1,5;2,5\n3,5;4,5\n", ",") == ";"  # decimal commas


@pytest.mark.parametrize("content, message", [
    ("a;b\n1,5;2,5\n", r"line 2, column \"a\" \(1\): '1,5' is not a number \(a decimal comma\?"),
    ("1,5;2,5\n3,5;4,5\n", r"line 1, column 1: '1,5' is not a number \(a decimal comma\?"),
    ("a,b\n1;2\n3;4\n5,6\n", r"line 2, column \"a\" \(1\): '1;2' is not a number \(the fields "
                                r"look separated by ';', not ','"),
    ("x,y\n1,2\n3;4,5\n", r"line 3, column \"x\" \(1\): '3;4' is not a number \(the fields look "
                          r"separated by ';'"),
    ("height,weight\n1,2\n3,abc\n", r"line 3, column \"weight\" \(2\): 'abc' is not a number$"),
    ('"a ""b""\nc",d\n1,2\nx,3\n', r'line 4, column "a \\"b\\"\\nc" \(1\)'),
])
def test_errors_name_the_column_and_the_likely_separator(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        data.load(str(path))
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


# -- through the command line ----------------------------------------------------------------

def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_run_records_the_header_and_sample_writes_it(capsys, tmp_path, values):
    path = write(tmp_path / "t.csv", values, ["2019", "2020", "2021", "2022", "2023"])
    code, _, err = cli(capsys, "fit", "--data", path, "--out", tmp_path / "run", *FAST)
    assert code == 0, err
    assert err.count("elbokit: warning:") == 1 and "as a header" in err
    record = json.loads((tmp_path / "run" / "config.json").read_text())["data"]
    assert record["header"] == "yes" and record["columns"] == ["2019", "2020", "2021", "2022", "2023"]
    # Later commands read the file as the run did (no new guess, no warning).
    code, _, err = cli(capsys, "evaluate", tmp_path / "run", "--k", "4")
    assert code == 0 and "warning" not in err, err
    code, _, err = cli(capsys, "sample", tmp_path / "run", "-n", "3", "-o", tmp_path / "s.csv")
    assert code == 0, err
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == "2019,2020,2021,2022,2023" and len(lines) == 4
    assert data.load(str(tmp_path / "s.csv"), "yes").columns == tuple(record["columns"])
    # A header-less table: no header line in the samples either.
    write(tmp_path / "plain.csv", values)
    code, _, err = cli(capsys, "fit", "--data", tmp_path / "plain.csv", "--out", tmp_path / "run2", *FAST)
    assert code == 0, err
    cli(capsys, "sample", tmp_path / "run2", "-n", "2", "-o", tmp_path / "s2.csv")
    assert len((tmp_path / "s2.csv").read_text().splitlines()) == 2


def test_header_option_is_refused_when_unknown(capsys, tmp_path, values):
    code, _, err = cli(capsys, "fit", "--data", write(tmp_path / "t.csv", values), "--header", "maybe")
    assert code == 2 and err.count("\n") == 1 and "--header" in err


def test_an_absurd_elbo_is_flagged_with_the_rows_behind_it(tmp_path, values):
    x = values[:, 1:3]
    model = VAE(latent_dim=2, hidden=(8,), epochs=3, val_fraction=0.0).fit(x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.evaluate(x[:10], k=4, iwae_k=2)
    assert not [w for w in caught if issubclass(w.category, DataWarning)]
    shifted = x[:10].copy()
    shifted[3] = [2019.0, 2020.0]  # a header row read as data, ~200 sd from the training data
    with pytest.warns(DataWarning, match=r"nats per feature: the data lie far outside .*; row 3 "
                      r"\(counting from 0\) scores below"):
        model.evaluate(shifted, k=4, iwae_k=2)


def test_table_figures_name_the_columns_and_scale_each(values):
    names = ["tiny", "b", "c", "huge", "e"]
    figure = plots.reconstructions(values[:8], values[:8] * 1.01, None, columns=names)
    top, bottom = figure.axes[:2]
    assert [t.get_text() for t in bottom.get_xticklabels()] == names
    shown = top.images[0].get_array()
    # Every column, 1e-4 or 1e4, spans the colour scale alike: standardized per column.
    np.testing.assert_allclose(shown.std(axis=0), 1.0, rtol=1e-6)
    assert top.images[0].get_clim() == bottom.images[0].get_clim() == (-3.0, 3.0)
    # The reconstructions on the originals' scale: their error is visible in those units.
    expected = (values[:8] * 1.01 - values[:8].mean(0)) / values[:8].std(0)
    np.testing.assert_allclose(bottom.images[0].get_array(), expected)
    samples = plots.samples(values, None, columns=names).axes[0]
    assert [t.get_text() for t in samples.get_xticklabels()] == names
    np.testing.assert_allclose(samples.images[0].get_array().std(axis=0), 1.0, rtol=1e-6)
