"""Training data larger than memory: the rows of a ``.npy`` file, read chunk by chunk.

    >>> from elbokit import VAE
    >>> from elbokit.data import NpyStream
    >>> VAE(latent_dim=16).fit(NpyStream("big.npy", ram_budget="512M"))  # [n, dim] or [n, h, w]

The RAM budget bounds the file data held at once: half of it goes to one *chunk* of raw
rows, a sixteenth to each held-out set (validation, test; float64 rows) and to the sample
the model is built on; the rest is headroom for the conversions (per piece or per batch,
never per chunk). The process itself (Python, torch, the model) is not part of it.

One epoch reads every training row exactly once, in a shuffled order fixed by (seed, epoch):

- the file's rows are cut into blocks, the blocks are put in a random order of (seed,
  epoch), and consecutive groups of ``blocks_per_chunk`` of them form the epoch's chunks, so
  each chunk holds rows from many places in the file (a file sorted by class still gives
  mixed batches), read block by block in file order;
- every block is read into the chunk with positioned reads at offsets from the header
  (numpy's memory map of the file gives its shape, dtype and data offset; its pages are never
  touched). Reading rows through the map instead would put the file's pages in the process's
  resident memory (RSS) for as long as the map is open, so one map held for the epoch grows
  RSS to the size of the file, and even a short-lived map lets the kernel map whole
  page-cache folios around each touched row (measured on Linux 6.18, ext4: reading 32
  scattered rows of 8 KB through a map made 41 MB resident).
  Reads copy the bytes and map nothing; the kernel's page cache may keep the file, but that
  memory is reclaimable and not the process's;
- the chunk's rows are shuffled by a permutation of (seed, epoch, chunk) and served as
  batches converted to the model's dtype one batch at a time; a batch that the chunk cannot
  fill takes its remaining rows from the next chunk, so every batch but the epoch's last is
  full and an epoch has ceil(n / batch_size) steps, as in memory.

A file whose rows fit in one chunk is one chunk shuffled by exactly the permutation of the
in-memory trainer (:func:`elbokit.training.epoch_order`), so training on it is bit for bit
training on the array. Batches depend on (file, seed, epoch) only, so a resumed run reads
what the uninterrupted one did.

Values are checked when the file is scanned (:meth:`NpyStream.scan`, once before training:
finite values, then the caller's check, e.g. 0/1 for a Bernoulli likelihood), piece by
piece, with errors naming the file and its rows. A file that changes afterwards (size or
modification time) is refused rather than trained on unchecked.
"""

from __future__ import annotations

import copy
import math
import mmap
import re
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from ..errors import ConfigError, DataError, numbered_rows

UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
DEFAULT_BUDGET = "512M"
BLOCKS_PER_CHUNK = 16
# Extra bytes per chunk row besides the row itself: its file row number, the permutation
# and the shuffled order (int64 each).
INDEX_BYTES = 24

Check = Callable[[np.ndarray, str], None]


def parse_size(text: str | int) -> int:
    """Bytes from ``512M``, ``2G``, ``1.5G``, ``64MiB``, ``100000`` (binary units: K = 2^10,
    M = 2^20, G = 2^30, T = 2^40; a trailing ``B``/``iB`` is allowed); ConfigError otherwise."""
    if isinstance(text, int | np.integer) and not isinstance(text, bool):
        value = float(text)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGT]?)(?:I?B)?\s*", str(text).upper())
        if match is None:
            raise ConfigError(f"RAM budget {text!r} is not a size like 512M, 2G or 1000000 (bytes)")
        value = float(match.group(1)) * UNITS[match.group(2)]
    if not value >= 1:
        raise ConfigError(f"RAM budget {text!r} must be at least 1 byte")
    return int(value)


def permutation(n: int, *key: int) -> torch.Tensor:
    """A permutation of ``range(n)`` fixed by the integers ``key`` (torch's ``randperm`` with
    a generator seeded from ``SeedSequence(key)``): the batch order of the in-memory trainer
    for ``key = (seed, epoch)``, and of a stream's chunks."""
    state = np.random.SeedSequence(list(key)).generate_state(2, dtype=np.uint64)
    generator = torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))
    return torch.randperm(n, generator=generator)


def choose(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``min(k, n)`` distinct sorted positions of ``range(n)``, drawn by ``rng`` in O(k)
    memory: a permutation of a large file's row count would not fit the budget."""
    if k >= n:
        return np.arange(n)
    if n <= 4 * k:  # n is then bounded by the sample's size: a permutation is affordable
        return np.sort(rng.permutation(n)[:k])
    chosen = np.empty(0, dtype=np.int64)
    while len(chosen) < k:  # draws with replacement, duplicates dropped; few rounds as k <= n/4
        chosen = np.union1d(chosen, rng.integers(0, n, size=k - len(chosen) + k // 8 + 1))
    return np.sort(rng.choice(chosen, k, replace=False))


@dataclass(frozen=True)
class ScanResult:
    """What a full pass over a file found, for building a model like the data: whether
    every value is 0 or 1 (after any binarization), and the largest value."""

    binary: bool
    max: float


class NpyStream:
    """The rows of a ``.npy`` file of ``[n, dim]`` (or images ``[n, h, w]``, flattened) of
    any real numeric dtype (uint8, bool, float32, float64, ...), served as shuffled batches
    with bounded RAM (see the module docstring).

    ``ram_budget``: bytes (or a size such as ``"512M"``, ``"2G"``) of file data held at once.
    ``binarize``: a threshold; values above it read as 1, others as 0 (``elbokit fit
    --binarize T``). ``len(stream)`` counts the rows it trains on (the file's rows minus
    :meth:`excluding`'s).
    """

    def __init__(self, path: str | Path, ram_budget: str | int = DEFAULT_BUDGET,
                 binarize: float | None = None) -> None:
        self.path = Path(path)
        self.ram_budget = parse_size(ram_budget)
        self.binarize = binarize
        where = self.where
        if self.path.suffix.lower() != ".npy":
            raise DataError(f"{where}: streaming reads .npy files (an array [n, dim] or images "
                            "[n, h, w], as numpy.save writes them); convert it with numpy.save")
        if not self.path.is_file():
            raise DataError(f"{where}: no such file" if not self.path.exists() else f"{where}: not a file")
        # The readers' rules; imported here: data imports us.
        from . import check_array_kind, read_npy_header

        try:
            with self.path.open("rb") as f:
                # A clear message for what is not .npy, a bad header or a truncated file,
                # before numpy maps anything.
                dtype, shape, _, _ = read_npy_header(f, self.path.stat().st_size, where)
            check_array_kind(dtype, shape, where)
            header = np.load(self.path, mmap_mode="r", allow_pickle=False)  # reads the header only
        except (OSError, ValueError, EOFError) as e:
            raise DataError(f"{where}: cannot read as .npy ({e})") from None
        check_array_kind(header.dtype, header.shape, where)
        if np.issubdtype(header.dtype, np.complexfloating):
            raise DataError(f"{where}: expected real numbers, found dtype {header.dtype}")
        self.shape: tuple[int, ...] = tuple(header.shape)
        self.dtype: np.dtype = header.dtype
        self._offset = int(header.offset)
        fortran = header.flags.f_contiguous and not header.flags.c_contiguous
        del header  # never touched: its pages were never read
        if fortran:
            raise DataError(f"{where}: stored in column-major (Fortran) order, so each row is "
                            "scattered over the file; streaming reads rows: save the array in "
                            "C order (numpy.save of numpy.ascontiguousarray(x))")
        self.n_rows, self.dim = self.shape[0], math.prod(self.shape[1:])
        self.image_shape = self.shape[1:] if len(self.shape) > 2 else None
        if self.n_rows == 0:
            raise DataError(f"{where}: no examples")
        if self.dim == 0:
            raise DataError(f"{where}: no features (0 columns)")
        self.row_bytes = self.dim * self.dtype.itemsize
        # At least one row in a chunk (half the budget) and in a held-out set (a sixteenth).
        minimum = max(2 * (self.row_bytes + INDEX_BYTES), 16 * 8 * self.dim)
        if self.ram_budget < minimum:
            raise ConfigError(f"{where}: a RAM budget of {self.ram_budget} bytes is too small for "
                              f"rows of {self.dim} values ({self.dtype}); it takes at least "
                              f"{minimum} bytes")
        self.chunk_rows = (self.ram_budget // 2) // (self.row_bytes + INDEX_BYTES)
        # Blocks: BLOCKS_PER_CHUNK (or more) of them make a chunk of at most chunk_rows rows.
        self.block_rows = max(1, self.chunk_rows // BLOCKS_PER_CHUNK)
        self.blocks_per_chunk = self.chunk_rows // self.block_rows
        self.exclude = np.empty(0, dtype=np.int64)  # sorted file rows not trained on
        self._stamp = self._file_stamp()
        self._scans: dict[Hashable, ScanResult] = {}  # shared by the streams excluding() makes

    # -- description -------------------------------------------------------------------
    @property
    def where(self) -> str:
        return str(self.path)

    def __len__(self) -> int:
        return self.n_rows - len(self.exclude)

    def __repr__(self) -> str:
        return (f"NpyStream({self.where!r}, ram_budget={self.ram_budget}, shape={self.shape}, "
                f"dtype={self.dtype}, rows trained on={len(self)})")

    @property
    def holdout_rows(self) -> int:
        """The most rows one held-out set (or build sample) may have: a sixteenth of the
        budget as float64 rows."""
        return (self.ram_budget // 16) // (8 * self.dim)

    def _piece_rows(self) -> int:
        """Rows checked at once: a sixteenth of the budget for a float64 copy and the checks'
        temporaries (about 4 bytes per value more)."""
        return max(1, (self.ram_budget // 16) // (12 * self.dim))

    def _file_stamp(self) -> tuple[int, int]:
        stat = self.path.stat()
        return stat.st_size, stat.st_mtime_ns

    def _check_unchanged(self) -> None:
        try:
            same = self._file_stamp() == self._stamp
        except OSError:
            same = False
        if not same:
            raise DataError(f"{self.where}: the file changed (or went away) after it was opened "
                            "and checked; start again on the new file")

    # -- derived streams ---------------------------------------------------------------
    def excluding(self, rows: np.ndarray) -> NpyStream:
        """This stream without the file rows ``rows`` (held out for validation or testing;
        a bounded number): the same file, budget and scan results."""
        other = copy.copy(self)  # shallow: the scan cache stays shared
        other.exclude = np.union1d(self.exclude, np.asarray(rows, dtype=np.int64))
        return other

    def pick(self, counts: Sequence[int], seed: int) -> list[np.ndarray]:
        """Disjoint sets of ``counts`` rows of this stream (sorted file row numbers; each count
        at most what remains), drawn from (seed): held-out splits and samples."""
        rng = np.random.default_rng(seed)
        total = min(sum(counts), len(self))
        positions = choose(len(self), total, rng)
        # A position among the rows not excluded -> its file row: skip every excluded row
        # at or before it (e_i - i counts the kept rows before the i-th excluded one).
        rows = positions + np.searchsorted(self.exclude - np.arange(len(self.exclude)),
                                           positions, side="right")
        rows = rows[rng.permutation(len(rows))]  # which set each row joins
        out, start = [], 0
        for count in counts:
            part = rows[start:start + count]
            out.append(np.sort(part))
            start += len(part)
        return out

    # -- reading -----------------------------------------------------------------------
    def _open(self) -> BinaryIO:
        """The file, unbuffered: reads go straight into our arrays."""
        return self.path.open("rb", buffering=0)

    def _read_into(self, file: BinaryIO, start: int, out: np.ndarray) -> None:
        """File rows ``start, start + 1, ...`` into ``out: [rows, dim]`` (file dtype,
        C-contiguous) by positioned reads: nothing of the file is mapped into the process."""
        view = memoryview(out).cast("B")
        file.seek(self._offset + start * self.row_bytes)
        done = 0
        while done < len(view):  # a read may return less than asked
            got = file.readinto(view[done:])
            if not got:
                raise DataError(f"{self.where}: ends before row {start + len(out) - 1} "
                                "(truncated?)")
            done += got

    def _values(self, raw: np.ndarray) -> np.ndarray:
        """Rows as the model reads them: float64 (the in-memory readers' type, so that the
        model's dtype is reached by the same rounding), binarized at the threshold if any."""
        x = np.asarray(raw, dtype=np.float64)
        return (x > self.binarize).astype(np.float64) if self.binarize is not None else x

    def _checked(self, raw: np.ndarray, numbers: np.ndarray, check: Check | None) -> np.ndarray:
        """:meth:`_values` of ``raw`` rows after the checks, whose messages name the rows by
        their file row ``numbers``: finite values (before binarization, which would hide a
        NaN), then ``check`` on the values the model sees."""
        from . import check_matrix

        with numbered_rows(numbers):
            check_matrix(np.asarray(raw, dtype=np.float64), self.where)
            x = self._values(raw)
            if check is not None:
                check(x, self.where)
        return x

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        """The file rows ``rows`` (row numbers, a bounded number) as checked float64 values
        ``[len(rows), dim]``: held-out sets and samples."""
        self._check_unchanged()
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:  # an empty split of a small file: nothing to read or check
            return np.empty((0, self.dim))
        raw = np.empty((len(rows), self.dim), dtype=self.dtype)
        # One read per run of consecutive rows (a dense sample of a small file: one read).
        starts = np.flatnonzero(np.diff(rows, prepend=-2) != 1)
        with self._open() as file:
            for first, stop in zip(starts.tolist(), [*starts[1:].tolist(), len(rows)], strict=True):
                self._read_into(file, int(rows[first]), raw[first:stop])
        return self._checked(raw, rows, None)

    def scan(self, check: Check | None = None, key: Hashable = None) -> ScanResult:
        """Read every row of the file once, in order, in pieces: refuse NaN/inf (and what
        ``check(x, where)`` refuses; ``x: [rows, dim]`` float64 as the model reads it) with a
        message naming the file and its first bad rows; return what the model's construction
        needs to know about all of it. Cached under ``key`` (this stream and those derived
        from it share the cache): a run checks its data once, not once per use."""
        self._check_unchanged()
        if key is not None and key in self._scans:
            return self._scans[key]
        binary, largest = True, -math.inf
        piece = min(self._piece_rows(), self.n_rows)
        raw = np.empty((piece, self.dim), dtype=self.dtype)
        with self._open() as file:
            for start in range(0, self.n_rows, piece):
                stop = min(start + piece, self.n_rows)
                self._read_into(file, start, raw[:stop - start])
                x = self._checked(raw[:stop - start], np.arange(start, stop), check)
                binary = binary and bool(np.all((x == 0) | (x == 1)))
                largest = max(largest, float(x.max()))
        result = ScanResult(binary=binary, max=largest)
        if key is not None:
            self._scans[key] = result
        return result

    # -- an epoch ----------------------------------------------------------------------
    def chunks(self, seed: int, epoch: int) -> list[list[tuple[int, int]]]:
        """The chunks of ``epoch`` in the order they are read: each a list of row ranges
        ``(start, stop)`` in file order, of at most ``chunk_rows`` rows together."""
        if self.n_rows <= self.chunk_rows:
            return [[(0, self.n_rows)]]
        n_blocks = -(-self.n_rows // self.block_rows)
        order = permutation(n_blocks, seed, epoch).numpy()
        return [[(b * self.block_rows, min((b + 1) * self.block_rows, self.n_rows))
                 for b in np.sort(order[i:i + self.blocks_per_chunk]).tolist()]
                for i in range(0, n_blocks, self.blocks_per_chunk)]

    def _chunk_buffer(self, rows: int) -> np.ndarray:
        """An uninitialized ``[rows, dim]`` array of the file's dtype in an anonymous memory
        map of its own, unmapped the moment the array is freed. Why not ``np.empty``: malloc
        keeps a freed block this large for reuse, the next chunk's block need not fit in it
        once batches have been allocated in between, and RSS then creeps up by parts of
        chunks (measured: 17 to 30 MiB for a 16 MiB chunk from run to run)."""
        mapped = mmap.mmap(-1, max(1, rows * self.row_bytes))
        return np.frombuffer(mapped, dtype=self.dtype, count=rows * self.dim).reshape(rows, self.dim)

    def _read_chunk(self, file: BinaryIO, ranges: list[tuple[int, int]]
                    ) -> tuple[np.ndarray, np.ndarray]:
        """The raw rows of a chunk ``[rows, dim]`` (file dtype) and the positions in it of
        the rows trained on (not excluded), in file order."""
        raw = self._chunk_buffer(sum(b - a for a, b in ranges))
        keep = np.ones(len(raw), dtype=bool)
        at = 0
        for start, stop in ranges:
            self._read_into(file, start, raw[at:at + stop - start])
            lo, hi = np.searchsorted(self.exclude, [start, stop])
            keep[self.exclude[lo:hi] - start + at] = False
            at += stop - start
        return raw, np.flatnonzero(keep)

    def batches(self, batch_size: int, seed: int, epoch: int,
                dtype: torch.dtype = torch.float32) -> Iterator[torch.Tensor]:
        """The training batches of ``epoch``: ``ceil(len(self) / batch_size)`` tensors
        ``[batch_size, dim]`` (the last may be smaller) of ``dtype`` on the CPU, every row of
        the stream exactly once."""
        self._check_unchanged()
        chunks = self.chunks(seed, epoch)
        carry: torch.Tensor | None = None  # rows of a batch the previous chunk began
        with self._open() as file:
            for number, ranges in enumerate(chunks):
                raw, keep = self._read_chunk(file, ranges)
                # One chunk: the in-memory trainer's own permutation (bit-identical runs).
                key = (seed, epoch) if len(chunks) == 1 else (seed, epoch, 1 + number)
                order = keep[permutation(len(keep), *key).numpy()]
                del keep
                start = 0
                if carry is not None:
                    start = min(batch_size - len(carry), len(order))
                    carry = torch.cat([carry, self._batch(raw, order[:start], dtype)])
                    if len(carry) == batch_size:
                        yield carry
                        carry = None
                full = start + (len(order) - start) // batch_size * batch_size
                for begin in range(start, full, batch_size):
                    yield self._batch(raw, order[begin:begin + batch_size], dtype)
                if full < len(order):  # (carry is None here: a chunk that cannot complete
                    carry = self._batch(raw, order[full:], dtype)  # it ends at full)
                del raw, order  # before the next chunk is read: one chunk in RAM at a time
        if carry is not None:
            yield carry

    def _batch(self, raw: np.ndarray, rows: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        """Rows ``rows`` of a chunk, gathered and converted: a tensor of its own (a view
        would keep the chunk alive while the next one is read)."""
        return torch.from_numpy(self._values(raw[rows])).to(dtype)
