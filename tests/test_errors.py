"""elbokit.errors: what each error class also is, and the helpers that make messages one
line naming rows and columns as the user counts them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sklearn.exceptions
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from elbokit.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    ElbokitError,
    NotFittedError,
    brief,
    describe_column,
    describe_rows,
    in_file_rows,
    memory_guard,
    numbered_rows,
)


def test_every_user_error_is_an_elbokit_error_and_what_callers_expect():
    for cls in (DataError, ConfigError, CheckpointError, NotFittedError):
        assert issubclass(cls, ElbokitError)
    # Value problems are ValueErrors (numpy and scikit-learn callers catch those) ...
    assert issubclass(DataError, ValueError) and issubclass(ConfigError, ValueError)
    # ... and a model used before fit is scikit-learn's NotFittedError, as its tools expect.
    with pytest.raises(sklearn.exceptions.NotFittedError):
        raise NotFittedError("fit first")
    with pytest.raises(sklearn.exceptions.NotFittedError):  # the class sklearn itself raises
        check_is_fitted(LogisticRegression())


@pytest.mark.parametrize("n, limit", [(1, 5), (3, 5), (5, 5), (6, 5), (40, 5), (12, 3)])
def test_describe_rows_names_the_first_rows_and_counts_the_rest(n, limit):
    rng = np.random.default_rng(n)
    rows = np.sort(rng.choice(100, size=n, replace=False))
    mask = np.zeros(100, dtype=bool)
    mask[rows] = True
    text = describe_rows(mask, limit)
    head, _, _ = text.partition(" (")
    word, _, shown = head.partition(" ")
    assert word == ("row" if n == 1 else "rows")
    assert [int(s) for s in shown.split(", ")] == rows[:limit].tolist()
    assert (f"(and {n - limit} more)" in text) == (n > limit)
    assert text.endswith("(counting from 0)")


def test_numbered_rows_names_rows_by_their_place_in_the_file_and_is_undone_after():
    mask = np.array([False, True, False, True])
    assert describe_rows(mask) == "rows 1, 3 (counting from 0)"
    with numbered_rows(np.array([100, 101, 102, 103])):
        assert describe_rows(mask) == "rows 101, 103 (counting from 0)"
        with numbered_rows(np.array([7, 8, 9, 10])):  # nested: the innermost numbering
            assert describe_rows(mask) == "rows 8, 10 (counting from 0)"
        many = describe_rows(np.ones(4, dtype=bool), limit=2)
        assert many == "rows 100, 101 (and 2 more among rows 100-103) (counting from 0)"
    assert describe_rows(mask) == "rows 1, 3 (counting from 0)"
    with pytest.raises(RuntimeError):  # undone when the block raises, too
        with numbered_rows(np.array([5, 6, 7, 8])):
            raise RuntimeError
    assert describe_rows(mask) == "rows 1, 3 (counting from 0)"
    with in_file_rows(None):
        assert describe_rows(mask) == "rows 1, 3 (counting from 0)"
    with in_file_rows(np.array([10, 20, 30, 40])):
        assert describe_rows(mask) == "rows 20, 40 (counting from 0)"


@pytest.mark.parametrize("name", ["height", 'say "hi"', "tab\there", "two\nlines", "é" * 50, ""])
def test_describe_column_is_one_line_and_numbers_from_one(name):
    columns = ["a", name, "c"]
    text = describe_column(1, columns)
    assert "\n" not in text and "\t" not in text
    if not name:
        assert text == "column 2"
        return
    assert text.endswith(" (2)") and text.startswith("column ")
    quoted = json.loads(text[len("column "):-len(" (2)")])  # the name, JSON-quoted
    assert quoted == name if len(name) <= 40 else quoted == name[:37] + "..."
    assert describe_column(1) == "column 2" and describe_column(5, columns) == "column 6"


def test_brief_is_one_line_of_at_most_the_limit():
    error = ValueError("could not convert\n  'a,b,c'\t to float " + "x" * 500)
    text = brief(error)
    assert "\n" not in text and "\t" not in text and "  " not in text
    assert len(text) == 160 and text.endswith("...")
    assert text.startswith("could not convert 'a,b,c' to float x")
    assert brief(ValueError("short  one")) == "short one"
    assert brief(KeyError()) == "KeyError"  # no message: the type names it
    assert len(brief(error, limit=20)) == 20


def test_memory_guard_turns_failed_allocations_into_one_line_config_errors():
    with pytest.raises(ConfigError) as caught:
        with memory_guard("a model of 10^12 weights", "use smaller --hidden"):
            raise MemoryError
    assert str(caught.value) == "a model of 10^12 weights does not fit in memory; use smaller --hidden"
    torch_message = ("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't "
                     "allocate memory: you tried to allocate 4000000000000 bytes.\nError code 12")
    with pytest.raises(ConfigError) as caught:
        with memory_guard("the batch", "lower -n"):
            raise RuntimeError(torch_message)
    assert str(caught.value) == ("the batch does not fit in memory (4,000,000,000,000 bytes asked "
                                 "for); lower -n")
    with pytest.raises(RuntimeError, match="shape mismatch"):  # other errors pass unchanged
        with memory_guard("the batch", "lower -n"):
            raise RuntimeError("shape mismatch")


def test_memory_guard_catches_a_real_failed_torch_allocation():
    with pytest.raises(ConfigError, match=r"^x does not fit in memory \([\d,]+ bytes asked for\); y$"):
        with memory_guard("x", "y"):
            torch.empty(2**62, dtype=torch.uint8)
