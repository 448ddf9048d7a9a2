"""From a pythia_data row source to the micro-batches of each (step, rank, micro-batch).

GPT-NeoX v1.0's ``make_data_loader`` walks the rows in order with a ``DistributedBatchSampler``
whose batch is ``micro_batch × world`` rows: each such chunk gives rank r the rows
``[r·mb, (r+1)·mb)``, and gradient accumulation takes consecutive chunks. So optimizer step s
covers rows ``[s·G, (s+1)·G)`` whatever the layout, and micro-batch m of rank r starts at
``s·G + m·mb·world + r·mb``.
"""

from __future__ import annotations

import hashlib
import os
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from pythia_data.dataset import micro_batch_rows

__all__ = [
    "RowSource",
    "ArrayRows",
    "batch_digest",
    "micro_batch_range",
    "micro_batch",
    "open_rows",
]


@runtime_checkable
class RowSource(Protocol):
    """What the trainer needs from a dataset: ``rows(a, b)`` is training rows a..b-1 in order."""

    seq_length: int

    def __len__(self) -> int: ...

    def rows(self, start: int, stop: int) -> np.ndarray: ...


class ArrayRows:
    """Rows held in memory, shape (n, seq_length + 1): for benchmarks and experiments."""

    def __init__(self, rows: np.ndarray):
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.shape[1] < 2:
            raise ValueError(f"rows must have shape (n, seq_length + 1), got {rows.shape}")
        if not np.issubdtype(rows.dtype, np.integer):
            raise ValueError(f"rows must hold integer token ids, got dtype {rows.dtype}")
        self._rows = rows
        self.seq_length = rows.shape[1] - 1

    def __len__(self) -> int:
        return len(self._rows)

    def rows(self, start: int, stop: int) -> np.ndarray:
        return self._rows[start:stop]


def batch_digest(source: RowSource, step: int, global_batch: int) -> str | None:
    """SHA-256 of the token ids of optimizer step ``step``'s rows (None past the data's end):
    a checkpoint records it so that a resume can tell that it continues on the same rows,
    wherever the data now lives and whichever format reads it."""
    start, stop = step * global_batch, (step + 1) * global_batch
    if step < 0 or stop > len(source):
        return None
    ids = np.ascontiguousarray(source.rows(start, stop), dtype=np.int64)
    return hashlib.sha256(ids.tobytes()).hexdigest()


def open_rows(prefix: str | os.PathLike, seq_length: int | None = None) -> RowSource:
    """Preshuffled data (item k is training row k), read by ``pythia_data.PreshuffledDataset``."""
    from pythia_data import PreshuffledDataset

    return PreshuffledDataset(prefix, seq_length)


def micro_batch_range(
    step: int, micro: int, rank: int, world: int, micro_batch: int, global_batch: int
) -> tuple[int, int]:
    """Rows ``[start, stop)`` of micro-batch ``micro`` of data-parallel ``rank`` at ``step``
    (GPT-NeoX's order: ``pythia_data.dataset.micro_batch_rows``)."""
    r = micro_batch_rows(step, micro, rank, world, micro_batch, global_batch)
    return r.start, r.stop


def micro_batch(
    source: RowSource,
    step: int,
    micro: int,
    rank: int,
    world: int,
    micro_batch_size: int,
    global_batch: int,
    device=None,
    vocab_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) as int64 tensors: ``row[:-1]`` and ``row[1:]`` of each row.

    With ``vocab_size``, a token id outside the model's vocabulary is a ValueError.
    """
    start, stop = micro_batch_range(step, micro, rank, world, micro_batch_size, global_batch)
    if stop > len(source):
        raise ValueError(
            f"step {step} needs rows up to {stop}, but the dataset has {len(source)} rows"
        )
    array = np.array(source.rows(start, stop), dtype=np.int64)
    if vocab_size is not None and array.size and (array.max() >= vocab_size or array.min() < 0):
        bad = int(array.min()) if array.min() < 0 else int(array.max())
        row = start + int(np.argwhere(array == bad)[0][0])
        name = getattr(source, "prefix", None)
        where = f"{name}: " if name is not None else ""
        if bad < 0:
            # No vocabulary holds it: the bytes are not read as the ids they were written as.
            dtype = getattr(source, "dtype", None)
            read_as = (
                f" (read as {np.dtype(dtype).name}, the dtype its .idx declares)"
                if dtype is not None
                else ""
            )
            raise ValueError(
                f"{where}row {row} has the negative token id {bad}, which no vocabulary holds: "
                f"the data is not token ids{read_as}; its dtype is wrong or its files are "
                f"damaged (a larger --vocab-size cannot help)"
            )
        raise ValueError(
            f"{where}row {row} has token id {bad}, outside the model's vocabulary of "
            f"{vocab_size}; pass a --vocab-size above the data's largest id (Pythia: 50304)"
        )
    rows = torch.from_numpy(array)
    if device is not None:
        rows = rows.to(device, non_blocking=True)
    return rows[:, :-1], rows[:, 1:]
