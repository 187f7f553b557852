"""Labelled text: the bundled SMS collection, label<TAB>text files, bag-of-words."""

from __future__ import annotations

import numpy as np
import pytest

from elbokit.data.text import BagOfWords, load_sms_spam, read_labelled_text
from elbokit.errors import DataError


def test_the_bundled_sms_collection_is_complete():
    data = load_sms_spam()
    assert len(data.texts) == 5574 and data.classes == ["ham", "spam"]
    assert int((data.labels == "spam").sum()) == 747
    assert data.texts[0].startswith("Go until jurong point")


def test_tsv_and_csv_files(tmp_path):
    (tmp_path / "a.tsv").write_text("spam\tWIN a prize now\nham\tsee you at 5\n\n")
    (tmp_path / "b.csv").write_text('text,label\n"hello, friend",ham\nbuy now,spam\n')
    a = read_labelled_text(tmp_path / "a.tsv")
    assert a.texts == ["WIN a prize now", "see you at 5"] and a.labels.tolist() == ["spam", "ham"]
    b = read_labelled_text(tmp_path / "b.csv")
    assert b.texts == ["hello, friend", "buy now"] and b.labels.tolist() == ["ham", "spam"]


@pytest.mark.parametrize("name, content, message", [
    ("e.tsv", "ham\thi\nspam\t \n", "empty text on line 2"),
    ("n.tsv", "ham\thi\nspam\n", "line 2 has no text column"),
    ("h.csv", "label,message\nham,hi\n", "must name a 'label' and a 'text' column"),
    ("z.tsv", "", "no rows"),
    ("l.tsv", "\thi\n", "line 1 has an empty label"),
])
def test_bad_label_files_say_where(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=message):
        read_labelled_text(tmp_path / name)


def test_bag_of_words_is_fitted_on_training_texts_only():
    bag = BagOfWords(max_features=3).fit(["free prize free", "prize call", "call me free"])
    assert bag.vocabulary == ["call", "free", "prize"]
    counts = bag.transform(["free free unknownword", "nothing known here"])
    np.testing.assert_array_equal(counts, [[0, 2, 0], [0, 0, 0]])  # unknown words are dropped
    with pytest.raises(DataError, match="vocabulary"):
        BagOfWords().fit(["!!!", "?"])


def test_the_vocabulary_breaks_ties_by_the_words_not_by_the_cpu():
    """The most frequent words, ties at the cut broken alphabetically: the same vocabulary
    on every machine (an unstable sort's tie order follows the CPU's SIMD sort)."""
    from elbokit.data.text import BagOfWords

    texts = ["zeta alpha beta", "gamma beta delta", "beta epsilon eta", "theta iota beta"]
    bag = BagOfWords(3).fit(texts)
    # beta: 4; the other 9 words once each: the first two of them alphabetically.
    assert bag.vocabulary == ["alpha", "beta", "delta"]
    assert bag.transform(["beta beta delta zeta"]).tolist() == [[0.0, 2.0, 1.0]]
