"""From a pythia_data row source to the micro-batches of each (step, rank, micro-batch).

GPT-NeoX v1.0's ``make_data_loader`` walks the rows in order with a ``DistributedBatchSampler``
whose batch is ``micro_batch × world`` rows: each such chunk gives rank r the rows
``[r·mb, (r+1)·mb)``, and gradient accumulation takes consecutive chunks. So optimizer step s
covers rows ``[s·G, (s+1)·G)`` whatever the layout, and micro-batch m of rank r starts at
``s·G + m·mb·world + r·mb``.
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

import numpy as np
import torch

__all__ = ["RowSource", "PackedRows", "ArrayRows", "micro_batch_range", "micro_batch", "open_rows"]


@runtime_checkable
class RowSource(Protocol):
    """What the trainer needs from a dataset: ``rows(a, b)`` is training rows a..b-1 in order."""

    seq_length: int

    def __len__(self) -> int: ...

    def rows(self, start: int, stop: int) -> np.ndarray: ...


class PackedRows:
    """Rows of a preshuffled indexed dataset: item i is row i, every item seq_length + 1 tokens.

    A thin reader over ``pythia_data.IndexedDataset`` for use until ``pythia_data``'s own
    preshuffled loader is available; it checks the one thing it relies on, the item size.
    """

    def __init__(self, prefix: str | os.PathLike, seq_length: int | None = None):
        from pythia_data import IndexedDataset

        self.dataset = IndexedDataset(prefix)
        sizes = self.dataset.sizes
        if len(sizes) == 0:
            raise ValueError(f"{self.dataset.prefix}: dataset has no items")
        size = int(sizes[0])
        if seq_length is not None and size != seq_length + 1:
            raise ValueError(
                f"{self.dataset.prefix}: items have {size} tokens, seq_length {seq_length} needs "
                f"{seq_length + 1}"
            )
        if not bool((sizes == size).all()):
            raise ValueError(
                f"{self.dataset.prefix}: items differ in length; a preshuffled dataset has "
                "every item exactly seq_length + 1 tokens"
            )
        self.seq_length = size - 1

    def __len__(self) -> int:
        return len(self.dataset)

    def rows(self, start: int, stop: int) -> np.ndarray:
        return self.dataset.items(start, stop).reshape(-1, self.seq_length + 1)


class ArrayRows:
    """Rows held in memory, shape (n, seq_length + 1): for benchmarks and experiments."""

    def __init__(self, rows: np.ndarray):
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.shape[1] < 2:
            raise ValueError(f"rows must have shape (n, seq_length + 1), got {rows.shape}")
        self._rows = rows
        self.seq_length = rows.shape[1] - 1

    def __len__(self) -> int:
        return len(self._rows)

    def rows(self, start: int, stop: int) -> np.ndarray:
        return self._rows[start:stop]


def open_rows(prefix: str | os.PathLike, seq_length: int | None = None) -> RowSource:
    """A preshuffled dataset: pythia_data's ``PreshuffledDataset`` if present, else PackedRows."""
    import pythia_data

    cls = getattr(pythia_data, "PreshuffledDataset", None)
    if cls is None:
        return PackedRows(prefix, seq_length)
    ds = cls(prefix)
    if seq_length is not None and ds.seq_length != seq_length:
        raise ValueError(f"{prefix}: rows have seq_length {ds.seq_length}, expected {seq_length}")
    return ds


def micro_batch_range(
    step: int, micro: int, rank: int, world: int, micro_batch: int, global_batch: int
) -> tuple[int, int]:
    """Rows ``[start, stop)`` of micro-batch ``micro`` of data-parallel ``rank`` at ``step``."""
    per_pass = micro_batch * world
    if global_batch % per_pass:
        raise ValueError(f"global batch {global_batch} is not a multiple of {micro_batch}×{world}")
    if not (0 <= rank < world and 0 <= micro < global_batch // per_pass):
        raise ValueError(f"rank {rank}/{world}, micro-batch {micro} is outside the step")
    start = step * global_batch + micro * per_pass + rank * micro_batch
    return start, start + micro_batch


def micro_batch(
    source: RowSource,
    step: int,
    micro: int,
    rank: int,
    world: int,
    micro_batch_size: int,
    global_batch: int,
    device=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) as int64 tensors: ``row[:-1]`` and ``row[1:]`` of each row."""
    start, stop = micro_batch_range(step, micro, rank, world, micro_batch_size, global_batch)
    if stop > len(source):
        raise ValueError(
            f"step {step} needs rows up to {stop}, but the dataset has {len(source)} rows"
        )
    rows = torch.from_numpy(np.array(source.rows(start, stop), dtype=np.int64))
    if device is not None:
        rows = rows.to(device, non_blocking=True)
    return rows[:, :-1], rows[:, 1:]
