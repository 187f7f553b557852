"""File readers, named data sets, validation and splits."""

from __future__ import annotations

import numpy as np
import pytest

from elbokit import data
from elbokit.errors import DataError


def test_digits_are_bundled_and_binary():
    d = data.load("digits")
    assert d.x.shape == (1797, 64) and d.image_shape == (8, 8)
    assert set(np.unique(d.x)) == {0.0, 1.0}
    gray = data.load("digits-gray")
    assert gray.x.min() == 0 and gray.x.max() == 1 and len(np.unique(gray.x)) == 17


def test_csv_with_and_without_header(tmp_path):
    (tmp_path / "a.csv").write_text("a,b,c\n1,2,3\n4,5,6\n\n")
    (tmp_path / "b.tsv").write_text("1\t2\n3\t4\n")
    np.testing.assert_array_equal(data.load(str(tmp_path / "a.csv")).x, [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(data.load(str(tmp_path / "b.tsv")).x, [[1, 2], [3, 4]])


@pytest.mark.parametrize("content, message", [
    ("1,2\n3\n", "line 2 has 1 fields, expected 2"),
    ("1,2\n3,x\n", r"line 2, column 2: 'x' is not a number"),
    ("1,2\nnan,4\n5,6\ninf,0\n", r"rows 1, 3 \(counting from 0\) contain NaN or inf"),
    ("", "no data rows"),
    ("a,b\n", "no data rows"),
])
def test_csv_errors_say_where(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        data.load(str(path))
    assert str(path) in str(info.value)


def test_npy_npz_and_images(tmp_path):
    images = np.random.default_rng(0).random((5, 3, 4))
    np.save(tmp_path / "img.npy", images)
    d = data.load(str(tmp_path / "img.npy"))
    assert d.x.shape == (5, 12) and d.image_shape == (3, 4)
    np.savez(tmp_path / "xy.npz", x=images[:, 0], y=np.arange(5))
    d = data.load(str(tmp_path / "xy.npz"))
    assert d.x.shape == (5, 4) and list(d.y) == [0, 1, 2, 3, 4]
    np.savez(tmp_path / "two.npz", a=images, b=images)
    with pytest.raises(DataError, match="name it 'x'"):
        data.load(str(tmp_path / "two.npz"))


def test_unreadable_and_unknown_inputs(tmp_path):
    (tmp_path / "junk.npy").write_bytes(b"\x00\x01 not numpy")
    with pytest.raises(DataError, match="junk.npy: cannot read"):
        data.load(str(tmp_path / "junk.npy"))
    np.save(tmp_path / "obj.npy", np.array(["a", "b"]))
    with pytest.raises(DataError, match="expected numbers"):
        data.load(str(tmp_path / "obj.npy"))
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    with pytest.raises(DataError, match="no examples"):
        data.load(str(tmp_path / "empty.npy"))
    with pytest.raises(DataError, match="no such file"):
        data.load(str(tmp_path / "missing.csv"))
    with pytest.raises(DataError, match="unknown data set 'mnistt'"):
        data.load("mnistt")
    (tmp_path / "latin1.csv").write_bytes(b"1,2\n\xe9,3\n")
    with pytest.raises(DataError, match="not UTF-8"):
        data.load(str(tmp_path / "latin1.csv"))


def test_splits_are_seeded_disjoint_and_complete():
    a = data.split_indices(100, 3, 0.2, 0.1)
    b = data.split_indices(100, 3, 0.2, 0.1)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert (len(a["test"]), len(a["val"]), len(a["train"])) == (20, 8, 72)
    assert sorted(np.concatenate(list(a.values())).tolist()) == list(range(100))
    assert not np.array_equal(a["test"], data.split_indices(100, 4, 0.2, 0.1)["test"])
    with pytest.raises(DataError, match="none for training"):
        data.split_indices(2, 0, 0.5, 0.9)
