"""Labelled text: the bundled SMS Spam Collection, ``label<TAB>text`` files, and
bag-of-words features.

A :class:`TextDataset` holds raw texts and their labels; :class:`BagOfWords` turns texts into
word counts ``[n, vocabulary]`` with a vocabulary fitted on training texts only (so nothing
about held-out messages leaks into the features); ``save``/``load`` keep a fitted one as JSON
(its vocabulary and tokenizer settings), so a saved run featurizes new texts identically.
Problems raise :class:`~elbokit.errors.DataError` naming the file and line.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..checkpoint import check_record, read_json, stamp, write_json
from ..errors import CheckpointError, DataError

SMS_SHA256 = "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d"


@dataclass
class TextDataset:
    """``texts[i]`` with label ``labels[i]``; ``classes`` sorted, the positive class last
    when there are two (``ham``, ``spam``)."""

    texts: list[str]
    labels: np.ndarray
    source: str
    description: str = ""

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels.tolist()))


def load_sms_spam() -> TextDataset:
    """The bundled SMS Spam Collection v.1 (5,574 messages; CC BY 4.0, see
    ``elbokit/data/sms_spam/ATTRIBUTION.md``), checked against its SHA-256."""
    raw = gzip.decompress(resources.files(__package__).joinpath("sms_spam/SMSSpamCollection.gz")
                          .read_bytes())
    if hashlib.sha256(raw).hexdigest() != SMS_SHA256:
        raise DataError("the bundled SMS Spam Collection is corrupt (checksum mismatch)")
    data = parse_labelled_text(raw.decode("utf-8"), "sms-spam", delimiter="\t", header=False)
    data.description = "SMS Spam Collection v.1: 5,574 SMS, ham 4,827 / spam 747 (CC BY 4.0)"
    return data


def parse_labelled_text(text: str, where: str, delimiter: str = "\t",
                        header: bool | None = None) -> TextDataset:
    """Rows of ``label<delimiter>text``; a first row naming ``label`` and ``text`` (any order,
    any case) is a header, and CSV (``delimiter=","``) must have one. Quoted CSV fields may
    hold commas. Rows whose text is empty are refused with their line numbers; blank lines
    are skipped; LF, CRLF and CR line ends are all accepted. Malformed CSV quoting is refused
    with its line."""
    from . import read_csv  # the numeric readers' CSV rules; data imports nothing from here

    records = read_csv(text, where, delimiter,
                       quoting=csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE)
    rows = [(line, row) for line, row in records if row and any(c.strip() for c in row)]
    if not rows:
        raise DataError(f"{where}: no rows")
    label_col, text_col = 0, 1
    first = [c.strip().lower() for c in rows[0][1]]
    if header is None and delimiter == ",":
        header = True  # CSV files say what their columns are; TSV lines are label<TAB>text
    if header or (header is None and ("text" in first or "label" in first)):
        if "label" not in first or "text" not in first:
            raise DataError(f"{where}: the header must name a 'label' and a 'text' column "
                            f"(found {', '.join(first)})")
        label_col, text_col = first.index("label"), first.index("text")
        rows = rows[1:]
    labels, texts, empty = [], [], []
    for line, row in rows:
        if len(row) <= max(label_col, text_col):
            raise DataError(f"{where}: line {line} has no text column (expected label"
                            f"{'<TAB>' if delimiter == chr(9) else ','}text)")
        label = row[label_col].strip()
        # With no quoting, a tab inside the message splits it: rejoin the rest.
        body = delimiter.join(row[text_col:]) if text_col > label_col else row[text_col]
        if not label:
            raise DataError(f"{where}: line {line} has an empty label")
        if not body.strip():
            empty.append(line)
        labels.append(label)
        texts.append(body)
    if empty:
        shown = ", ".join(map(str, empty[:5])) + (f" (and {len(empty) - 5} more)" if len(empty) > 5 else "")
        raise DataError(f"{where}: empty text on line{'s' if len(empty) > 1 else ''} {shown}")
    if not texts:
        raise DataError(f"{where}: no messages after the header")
    return TextDataset(texts=texts, labels=np.array(labels), source=where)


def read_labelled_text(path: str | Path) -> TextDataset:
    """A ``.tsv``/``.txt`` of ``label<TAB>text`` lines (header optional) or a ``.csv`` whose
    header names a ``label`` and a ``text`` column."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    delimiter = "," if path.suffix.lower() == ".csv" else "\t"
    return parse_labelled_text(text, str(path), delimiter=delimiter)


TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # scikit-learn's default, spelled out so that saved featurizers record it
FORMAT = "elbokit.bag-of-words"  # the saved kind (elbokit.checkpoint.SAVED_KINDS)


class BagOfWords:
    """Word counts with a capped vocabulary, fitted on training texts only.

    Tokens: lower-cased runs of 2+ letters or digits (scikit-learn's ``CountVectorizer``
    does the counting). ``max_features`` keeps the most frequent words. A text with no known
    word maps to a row of zeros; models say what they do with it.
    """

    def __init__(self, max_features: int = 2000, min_df: int = 1) -> None:
        if max_features < 1:
            raise DataError(f"vocabulary size must be >= 1, not {max_features}")
        self.max_features, self.min_df = max_features, min_df
        self.token_pattern, self.lowercase = TOKEN_PATTERN, True

    def fit(self, texts: list[str]) -> BagOfWords:
        """Keep the ``max_features`` most frequent words (total count), ties broken by the
        words' alphabetical order. Why not ``CountVectorizer(max_features=...)``: it breaks
        ties with an unstable sort, whose order numpy's SIMD sorting makes depend on the
        CPU (on the SMS data, 589 words tie for the last 68 places, and an AVX-512 and an
        AVX2 machine kept 110 different words)."""
        counter = self._vectorizer(min_df=self.min_df)
        try:
            counts = counter.fit_transform(texts)
        except ValueError as e:  # no tokens at all
            raise DataError(f"cannot build a vocabulary: {e}") from None
        words = counter.get_feature_names_out()  # alphabetical
        totals = np.asarray(counts.sum(axis=0)).ravel()
        kept = np.sort(np.argsort(-totals, kind="stable")[:self.max_features])
        return self._use_vocabulary(words[kept].tolist())

    def _use_vocabulary(self, words: list[str]) -> BagOfWords:
        """Count exactly ``words`` (column ``j``: ``words[j]``)."""
        self.vectorizer_ = self._vectorizer(vocabulary=words)
        self.vectorizer_.fit([])  # a fixed vocabulary: fitting only validates it
        return self

    def _vectorizer(self, **options):
        from sklearn.feature_extraction.text import CountVectorizer

        return CountVectorizer(lowercase=self.lowercase, token_pattern=self.token_pattern,
                               dtype=np.float64, **options)

    @classmethod
    def from_vocabulary(cls, vocabulary: Sequence[str], max_features: int | None = None,
                        min_df: int = 1, token_pattern: str = TOKEN_PATTERN,
                        lowercase: bool = True) -> BagOfWords:
        """A fitted featurizer with a given vocabulary (column ``j`` counts ``vocabulary[j]``);
        the other arguments are the settings it was fitted with (recorded, and the tokenizer's
        used)."""
        words = [] if isinstance(vocabulary, str) else list(vocabulary)
        if not words or not all(isinstance(w, str) and w for w in words):
            raise DataError("a vocabulary must be a non-empty list of non-empty words")
        if len(set(words)) != len(words):
            raise DataError("a vocabulary must not repeat words")
        bag = cls(max_features or len(words), min_df)
        bag.token_pattern, bag.lowercase = token_pattern, lowercase
        return bag._use_vocabulary(words)

    def to_dict(self) -> dict:
        """The fitted featurizer as JSON data: vocabulary (column order) and settings."""
        return stamp(FORMAT, {"vocabulary": self.vocabulary, "max_features": self.max_features,
                              "min_df": self.min_df, "token_pattern": self.token_pattern,
                              "lowercase": self.lowercase})

    @classmethod
    def from_dict(cls, record: dict, where: str = "featurizer") -> BagOfWords:
        """Inverse of :meth:`to_dict`; refuses anything else with a
        :class:`~elbokit.errors.CheckpointError` naming ``where``."""
        check_record(record, FORMAT, where)
        try:
            return cls.from_vocabulary(record["vocabulary"], record["max_features"],
                                       record["min_df"], record["token_pattern"],
                                       record["lowercase"])
        except (KeyError, TypeError, ValueError, DataError) as e:
            raise CheckpointError(f"{where}: malformed featurizer ({e})") from None

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_dict` as a JSON file, atomically."""
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> BagOfWords:
        """A featurizer saved by :meth:`save`: ``transform`` gives the same counts."""
        return cls.from_dict(read_json(path), str(path))

    @property
    def vocabulary(self) -> list[str]:
        return self.vectorizer_.get_feature_names_out().tolist()

    def transform(self, texts: list[str]) -> np.ndarray:
        """Counts ``[len(texts), vocabulary size]`` (dense float64)."""
        return self.vectorizer_.transform(texts).toarray()

    def fit_transform(self, texts: list[str]) -> np.ndarray:
        return self.fit(texts).transform(texts)
