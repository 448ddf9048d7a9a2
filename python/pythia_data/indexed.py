"""Megatron / GPT-NeoX indexed datasets (``PREFIX.bin`` + ``PREFIX.idx``).

Items (``ds[i]``, ``get``, ``items``) and ``sizes``/``pointers``/``doc_idx`` are read-only numpy
views over the engine's memory maps, which stay alive as long as any view does; ``gather``, and
a read that spans two ``.bin`` shards, return a copy.
"""

from __future__ import annotations

import bisect
import operator
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from pythia_data import _core
from pythia_data.errors import PythiaDataError

__all__ = ["IndexedDataset", "IndexedDatasetBuilder", "merge_datasets", "best_fitting_dtype"]

PathLike = str | os.PathLike


def best_fitting_dtype(vocab_size: int) -> np.dtype:
    """GPT-NeoX's choice: uint16 below 65,500 ids, else int32."""
    return np.dtype(np.uint16) if vocab_size < 65_500 else np.dtype(np.int32)


def _strip_extension(prefix: PathLike) -> Path:
    p = Path(prefix)
    if p.suffix in (".bin", ".idx"):
        return p.with_suffix("")
    return p


#: Files tokenize and shard write beside PREFIX.idx: naming one (a tab-completed path) to read
#: means the dataset, where "PREFIX.subsets.json.idx: no such file" helped nobody.
_BESIDE_SUFFIXES = (".subsets.json", ".subsets.npy", ".shard.json")


def _dataset_prefix(path: PathLike) -> Path:
    """The prefix of the dataset ``path`` names to be read: a prefix, its .bin or .idx, or a
    file written beside an existing one. Outputs keep ``_strip_extension``: a new prefix may
    end in anything."""
    p = _strip_extension(path)
    for suffix in _BESIDE_SUFFIXES:
        if p.name.endswith(suffix) and len(p.name) > len(suffix):
            stripped = p.with_name(p.name[: -len(suffix)])
            if stripped.with_name(stripped.name + ".idx").is_file():
                return stripped
    return p


def _integer(value, what: str, kind: str = "an integer") -> int:
    """``value`` as an int (numpy integers too), as indexing takes one: int() read 1.7, True
    and "3" as 1, 1 and 3."""
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"{what} must be {kind}, not {type(value).__name__}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be {kind}, not {type(value).__name__}") from None


class _ItemIndexError(PythiaDataError, IndexError):
    """An item index outside the dataset, from ``gather``: both what ``ds[i]`` raises and what
    ``gather`` raised before it was checked here."""


def _file_stamps(paths) -> tuple | None:
    """What identifies the files opened: replacing one (a rename into place) gives a new inode,
    and rewriting it a new size or mtime. None when a file is gone already."""
    try:
        return tuple((st.st_ino, st.st_size, st.st_mtime_ns) for st in map(os.stat, paths))
    except OSError:
        return None


def _reopen_indexed(prefix: Path, stamps: tuple | None = None) -> IndexedDataset:
    """An unpickled ``IndexedDataset``: reopened by name, and refused when its files are no
    longer those the pickled one read (it would give other items than the parent's, silently)."""
    ds = IndexedDataset(prefix)
    if stamps is not None and ds._stamps != stamps:
        raise PythiaDataError(
            f"{prefix}: its .bin/.idx were replaced or changed after this dataset was opened, so "
            "a process reopening it would read other data; open the dataset again"
        )
    return ds


class IndexedDataset:
    """A read-only indexed dataset; ``ds[i]`` is item i as a numpy view."""

    def __init__(self, prefix: PathLike):
        self.prefix = _dataset_prefix(prefix)
        self._core = _core.IndexedDataset(self.prefix)
        # Pickled absolute: a process that reopens a relative prefix from another working
        # directory (the script's chdir before its spawned workers started) read other data.
        self._abs_prefix = Path(os.path.abspath(self.prefix))
        self.dtype = np.dtype(self._core.dtype).newbyteorder("<")
        n = len(self._core)
        idx = self._core.idx_buffer()
        sizes_at, pointers_at, doc_idx_at = self._core.array_offsets
        self.sizes: np.ndarray = np.frombuffer(idx, dtype="<i4", count=n, offset=sizes_at)
        self.pointers: np.ndarray = np.frombuffer(idx, dtype="<i8", count=n, offset=pointers_at)
        self.doc_idx: np.ndarray = np.frombuffer(
            idx, dtype="<i8", count=self._core.doc_count, offset=doc_idx_at
        )
        # One uint8 view per .bin shard; reads within a shard are views, a read spanning two
        # shards (they are cut at arbitrary byte counts) is the only one that copies.
        self._shard_bytes = [np.frombuffer(b, dtype=np.uint8) for b in self._core.bin_buffers()]
        self._shard_starts = [int(x) for x in self._core.shard_starts]
        self.bin_paths: list[Path] = [Path(p) for p in self._core.bin_paths]
        # Unsharded (the common case): one typed view, so a read is a single slice.
        self._flat = self._shard_bytes[0].view(self.dtype) if len(self._shard_bytes) == 1 else None
        self._len, self._itemsize = len(self.sizes), self.dtype.itemsize  # for ds[i]'s fast path
        # Which files were opened: a process that reopens the dataset by name (a spawned
        # DataLoader worker) read the new data, silently, after the files were replaced.
        self._stamps = _file_stamps([self.idx_path, *self.bin_paths])

    def __len__(self) -> int:
        return len(self.sizes)

    def __reduce__(self):
        # Pickled by name and reopened (memory maps cannot travel): DataLoader workers started
        # with spawn or forkserver (macOS; Linux from Python 3.14) receive the dataset this way.
        return (_reopen_indexed, (self._abs_prefix, self._stamps))

    def __repr__(self) -> str:
        return (
            f"IndexedDataset({str(self.prefix)!r}, items={len(self)}, "
            f"tokens={self.total_tokens}, dtype={self.dtype.name})"
        )

    @property
    def total_tokens(self) -> int:
        return int(self._core.total_tokens)

    @property
    def num_documents(self) -> int:
        return max(len(self.doc_idx) - 1, 0)

    @property
    def idx_path(self) -> Path:
        return Path(self._core.idx_path)

    @property
    def is_sharded(self) -> bool:
        return len(self.bin_paths) > 1

    def _read(self, start: int, stop: int) -> np.ndarray:
        """Tokens in bytes ``[start, stop)`` of the logical ``.bin``."""
        if self._flat is not None:
            size = self.dtype.itemsize
            return self._flat[start // size : stop // size]
        k = bisect.bisect_right(self._shard_starts, start) - 1
        shard = self._shard_bytes[k]
        a = start - self._shard_starts[k]
        b = stop - self._shard_starts[k]
        if b <= len(shard):
            return shard[a:b].view(self.dtype)
        copied = np.frombuffer(self._core.read_bin(start, stop), dtype=self.dtype)
        return copied

    def get(self, i: int, offset: int = 0, length: int | None = None) -> np.ndarray:
        """Tokens ``[offset, offset + length)`` of item ``i`` (to its end when length is None),
        like GPT-NeoX's ``MMapIndexedDataset.get``."""
        if (
            type(i) is int
            and type(offset) is int
            and offset == 0
            and length is None
            and self._flat is not None
        ):
            item = self._whole_item(i)
            if item is not None:
                return item
        i = self._check_index(i)
        offset = _integer(offset, "offsets", "integers")
        length = None if length is None else _integer(length, "lengths", "integers")
        # Negative values reached the engine as an OverflowError from the type conversion.
        if offset < 0 or (length is not None and length < 0):
            raise IndexError(f"offset ({offset}) and length ({length}) must be 0 or more")
        start, stop = self._core.byte_range(i, offset, length)
        return self._read(start, stop)

    def _whole_item(self, key: int) -> np.ndarray | None:
        """Item ``key`` (a plain int) of an unsharded dataset, or None where it is out of range:
        a training loop's read, without the general checks of offsets and index types, which
        made it slower than np.frombuffer over a map."""
        k = key + self._len if key < 0 else key
        if not 0 <= k < self._len:
            return None
        start, stop = self._core.byte_range(k, 0, None)
        return self._flat[start // self._itemsize : stop // self._itemsize]

    def _check_index(self, i: int) -> int:
        n = len(self)
        k = _integer(i, "item indices", "integers")
        i = k + n if k < 0 else k
        if not 0 <= i < n:
            # The index as given: item -297 of 296 was reported as "item -1 is out of range".
            raise IndexError(f"item {k} is out of range for {self.prefix} ({n} items)")
        return i

    def gather(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Items ``indices`` copied into one flat array, with int64 ``offsets`` of length
        ``len(indices) + 1`` (item k is ``tokens[offsets[k]:offsets[k+1]]``). One native call,
        GIL released: the fast way to read many random items."""
        arr = np.asarray(indices)
        if arr.ndim != 1:  # the engine's own words were "'ndarray' object cannot be cast"
            raise ValueError(
                f"gather takes a 1-D sequence of item indices, got an array of shape {arr.shape}"
            )
        if arr.size and arr.dtype.kind not in "iu":  # 1.5 was silently read as item 1
            raise IndexError(f"item indices must be integers, got dtype {arr.dtype}")
        if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
            # As int64 it would wrap to a negative index, which counts from the end.
            raise IndexError(f"item index {int(arr.max())} is outside the dataset's {len(self)}")
        idx = np.ascontiguousarray(arr, dtype=np.int64)
        if idx.size:
            # An IndexError, as ds[i] raises: the engine's PythiaDataError escaped `except
            # IndexError` (it stays a PythiaDataError too, for code that caught that).
            n, lo, hi = len(self), int(idx.min()), int(idx.max())
            if hi >= n or lo < -n:
                k = hi if hi >= n else lo
                raise _ItemIndexError(f"item {k} is out of range for {self.prefix} ({n} items)")
        data, offsets = self._core.gather(idx)
        return data.view(self.dtype), offsets

    def __getitem__(self, key: int | slice) -> np.ndarray | list[np.ndarray]:
        if type(key) is int and self._flat is not None:
            item = self._whole_item(key)
            if item is not None:
                return item
        if isinstance(key, slice):
            return [self.get(i) for i in range(*key.indices(len(self)))]
        return self.get(key)

    def items(self, start: int, stop: int) -> np.ndarray:
        """Items ``[start, stop)`` concatenated, as one view (they are contiguous in ``.bin``)."""
        start, stop = (
            _integer(start, "item indices", "integers"),
            _integer(stop, "item indices", "integers"),
        )
        n = len(self)
        if not 0 <= start <= stop <= n:
            raise IndexError(f"item range [{start}, {stop}) is outside [0, {n})")
        if start == stop:
            return np.empty(0, dtype=self.dtype)
        # Opening checked that each item starts where the one before ends, so the range ends
        # where its last item does: no sum over the sizes of the items in between.
        first = int(self.pointers[start])
        end = int(self.pointers[stop - 1]) + int(self.sizes[stop - 1]) * self._itemsize
        return self._read(first, end)


class IndexedDatasetBuilder:
    """Writes ``PREFIX.bin``/``PREFIX.idx`` byte-for-byte like GPT-NeoX, atomically.

    Use as a context manager: the files appear only when the block ends without an exception.
    """

    def __init__(self, prefix: PathLike, dtype: np.dtype | str | type = np.uint16):
        self.prefix = _strip_extension(prefix)
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self._core = _core.IndexedDatasetBuilder(self.prefix, self.dtype.name)
        # One call at a time, from any thread: the engine call runs without the GIL, and a
        # second thread's call meanwhile failed with "RuntimeError: Already borrowed", which
        # could fall between add_document's item and its boundary (two documents then merged).
        self._lock = threading.Lock()

    def _item(self, tokens: Sequence[int] | np.ndarray):
        """The engine's call that appends ``tokens`` as one item, checked and converted."""
        arr = np.asarray(tokens)
        if arr.ndim != 1:
            raise PythiaDataError(f"an item must be one-dimensional, got shape {arr.shape}")
        if arr.dtype == self.dtype:
            data = arr.tobytes()
            return lambda: self._core.add_item_bytes(data)
        if arr.size == 0 or np.issubdtype(arr.dtype, np.integer):
            if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
                # As int64 it wraps negative: an int64 dataset stored -2**63 for 2**63 (numpy
                # reads [2**63] as uint64), and the others named the wrapped value.
                info = np.iinfo(self.dtype)
                raise PythiaDataError(
                    f"token {int(arr.max())} does not fit dtype {self.dtype.name} "
                    f"(range {info.min}..={info.max})"
                )
            ids = np.ascontiguousarray(arr, dtype=np.int64)
            return lambda: self._core.add_item(ids)
        raise PythiaDataError(f"tokens must be integers, got dtype {arr.dtype}")

    def add_item(self, tokens: Sequence[int] | np.ndarray) -> None:
        """Append one item (no document boundary); values must fit the dtype."""
        append = self._item(tokens)
        with self._lock:
            append()

    def end_document(self) -> None:
        with self._lock:
            self._core.end_document()

    def add_document(self, tokens: Sequence[int] | np.ndarray) -> None:
        """One item that is one document, as GPT-NeoX's preprocessing writes."""
        append = self._item(tokens)
        with self._lock:  # the item and its boundary together, whatever other threads do
            append()
            self._core.end_document()

    def add_documents(self, documents: Iterable[Sequence[int] | np.ndarray]) -> None:
        for doc in documents:
            self.add_document(doc)

    def append_dataset(self, other: IndexedDataset | PathLike) -> None:
        """Append every item of another dataset of the same dtype (GPT-NeoX's ``merge_file_``)."""
        ds = other if isinstance(other, IndexedDataset) else IndexedDataset(other)
        with self._lock:
            self._core.append_dataset(ds._core)

    def finish(self) -> Path:
        with self._lock:
            return Path(self._core.finish())

    def abort(self) -> None:
        with self._lock:
            self._core.abort()

    def __enter__(self) -> IndexedDatasetBuilder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.abort()


def merge_datasets(output: PathLike, inputs: Sequence[PathLike]) -> Path:
    """Concatenate datasets in order into ``output`` (GPT-NeoX's ``merge_datasets.py``): the
    ``.bin/.idx`` only; ``pythia_data.tokenize.merge_subsets`` joins their subsets files, and
    ``pythia-data merge`` does both."""
    return Path(
        _core.merge_datasets(_strip_extension(output), [_strip_extension(p) for p in inputs])
    )
