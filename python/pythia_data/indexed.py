"""Megatron / GPT-NeoX indexed datasets (``PREFIX.bin`` + ``PREFIX.idx``).

Every array handed out is a read-only numpy view over the engine's memory maps: nothing is
copied, and the maps stay alive as long as any view does.
"""

from __future__ import annotations

import os
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


class IndexedDataset:
    """A read-only indexed dataset; ``ds[i]`` is item i as a numpy view."""

    def __init__(self, prefix: PathLike):
        self.prefix = _strip_extension(prefix)
        self._core = _core.IndexedDataset(self.prefix)
        self.dtype = np.dtype(self._core.dtype).newbyteorder("<")
        n = len(self._core)
        idx = self._core.idx_buffer()
        sizes_at, pointers_at, doc_idx_at = self._core.array_offsets
        self.sizes: np.ndarray = np.frombuffer(idx, dtype="<i4", count=n, offset=sizes_at)
        self.pointers: np.ndarray = np.frombuffer(idx, dtype="<i8", count=n, offset=pointers_at)
        self.doc_idx: np.ndarray = np.frombuffer(
            idx, dtype="<i8", count=self._core.doc_count, offset=doc_idx_at
        )
        self._tokens: np.ndarray = np.frombuffer(self._core.bin_buffer(), dtype=self.dtype)

    def __len__(self) -> int:
        return len(self.sizes)

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
    def tokens(self) -> np.ndarray:
        """Every token of the ``.bin``, in order, as one flat view."""
        return self._tokens

    def get(self, i: int, offset: int = 0, length: int | None = None) -> np.ndarray:
        """Tokens ``[offset, offset + length)`` of item ``i`` (to its end when length is None)."""
        i = self._check_index(i)
        start, stop = self._core.byte_range(i, offset, length)
        size = self.dtype.itemsize
        return self._tokens[start // size : stop // size]

    def _check_index(self, i: int) -> int:
        n = len(self)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"item {i} is out of range for {self.prefix} ({n} items)")
        return i

    def __getitem__(self, key: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(key, slice):
            return [self.get(i) for i in range(*key.indices(len(self)))]
        return self.get(key)

    def items(self, start: int, stop: int) -> np.ndarray:
        """Items ``[start, stop)`` concatenated, as one view (they are contiguous in ``.bin``)."""
        n = len(self)
        if not 0 <= start <= stop <= n:
            raise IndexError(f"item range [{start}, {stop}) is outside [0, {n})")
        if start == stop:
            return self._tokens[:0]
        first = int(self.pointers[start]) // self.dtype.itemsize
        count = int(self.sizes[start:stop].sum(dtype=np.int64))
        return self._tokens[first : first + count]


class IndexedDatasetBuilder:
    """Writes ``PREFIX.bin``/``PREFIX.idx`` byte-for-byte like GPT-NeoX, atomically.

    Use as a context manager: the files appear only when the block ends without an exception.
    """

    def __init__(self, prefix: PathLike, dtype: np.dtype | str | type = np.uint16):
        self.prefix = _strip_extension(prefix)
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self._core = _core.IndexedDatasetBuilder(self.prefix, self.dtype.name)

    def add_item(self, tokens: Sequence[int] | np.ndarray) -> None:
        """Append one item (no document boundary); values must fit the dtype."""
        arr = np.asarray(tokens)
        if arr.ndim != 1:
            raise PythiaDataError(f"an item must be one-dimensional, got shape {arr.shape}")
        if arr.dtype == self.dtype:
            self._core.add_item_bytes(arr.tobytes())
        elif arr.size == 0 or np.issubdtype(arr.dtype, np.integer):
            self._core.add_item(np.ascontiguousarray(arr, dtype=np.int64))
        else:
            raise PythiaDataError(f"tokens must be integers, got dtype {arr.dtype}")

    def end_document(self) -> None:
        self._core.end_document()

    def add_document(self, tokens: Sequence[int] | np.ndarray) -> None:
        """One item that is one document, as GPT-NeoX's preprocessing writes."""
        self.add_item(tokens)
        self.end_document()

    def add_documents(self, documents: Iterable[Sequence[int] | np.ndarray]) -> None:
        for doc in documents:
            self.add_document(doc)

    def append_dataset(self, other: IndexedDataset | PathLike) -> None:
        """Append every item of another dataset of the same dtype (GPT-NeoX's ``merge_file_``)."""
        ds = other if isinstance(other, IndexedDataset) else IndexedDataset(other)
        self._core.append_dataset(ds._core)

    def finish(self) -> Path:
        return Path(self._core.finish())

    def abort(self) -> None:
        self._core.abort()

    def __enter__(self) -> IndexedDatasetBuilder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.abort()


def merge_datasets(output: PathLike, inputs: Sequence[PathLike]) -> Path:
    """Concatenate datasets in order into ``output`` (GPT-NeoX's ``merge_datasets.py``)."""
    return Path(_core.merge_datasets(_strip_extension(output), [_strip_extension(p) for p in inputs]))
