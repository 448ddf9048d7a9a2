"""PyTorch access in GPT-NeoX's exact order (torch is an optional extra: imported only here).

GPT-NeoX v1.0 feeds each data-parallel rank through a ``DistributedBatchSampler`` over a
``SequentialSampler``: the rows are walked in micro-steps of ``micro_batch_size · world_size``,
rank r taking the r-th contiguous slice of each; an optimizer step is
``gradient_accumulation_steps`` micro-steps, so step s covers rows
``[s·B, (s+1)·B)`` with ``B = micro_batch_size · world_size · gradient_accumulation_steps``.
Resuming at step s starts at micro-step ``s · gradient_accumulation_steps``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pythia_data.dataset import RowDataset, micro_batch_rows

__all__ = ["TorchRowDataset", "GPTNeoXBatchSampler", "make_data_loader"]


class TorchRowDataset(Dataset):
    """Map-style dataset over any ``RowDataset``: item k is row k as a tensor.

    With a DataLoader's ``batch_size`` (and any sampler), the rows of a batch are read in one
    engine call when contiguous (``__getitems__``) and collated as usual. ``make_data_loader``
    goes further: its micro-batch reaches torch with ``torch.from_numpy``, no copy after the
    engine fills the array (rows read in place from a read-only mapped file, ``dtype=None``,
    are copied once, so that the tensor is writable like any other).
    """

    def __init__(self, rows: RowDataset, dtype: np.dtype | type | None = np.int64):
        self.rows = rows
        self.dtype = dtype

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> torch.Tensor:
        return _tensor(self.rows.row(k, self.dtype))

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        # A list of rows, as DataLoader's collate_fn takes (default_collate stacks them): the
        # batch tensor itself failed there ("stack(): argument 'tensors' ... must be tuple of
        # Tensors, not Tensor"). The rows are views of one batch, read at once.
        return list(self._batch(indices).unbind(0))

    def _batch(self, indices: list[int]) -> torch.Tensor:
        """Rows ``indices`` as one (len(indices), seq_length + 1) tensor."""
        if (
            indices
            and indices[0] >= 0
            and indices[-1] - indices[0] + 1 == len(indices)
            and all(b - a == 1 for a, b in zip(indices, indices[1:], strict=False))
        ):
            arr = self.rows.rows(indices[0], indices[-1] + 1, self.dtype)
        else:
            arr = np.stack([self.rows.row(k, self.dtype) for k in indices])
        return _tensor(arr)


class _MicroBatches(TorchRowDataset):
    """``make_data_loader``'s dataset: a micro-batch comes back as the one tensor the engine
    filled (collated by ``_as_batch``, which keeps it as is), never copied by a stack."""

    def __getitems__(self, indices: list[int]) -> torch.Tensor:  # type: ignore[override]
        return self._batch(indices)


def _tensor(arr: np.ndarray) -> torch.Tensor:
    """``arr`` as a tensor without a copy when it owns writable memory. Rows read in place
    (``dtype=None`` over a preshuffled file) view the read-only mapped dataset: a tensor over
    them killed the process (SIGSEGV) at its first in-place write, so they are copied."""
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:
        arr = arr.copy()
    return torch.from_numpy(arr)


class GPTNeoXBatchSampler(Sampler[list[int]]):
    """Yields this rank's micro-batches (lists of row indices) in GPT-NeoX's order, from
    ``start_step`` to ``end_step`` (exclusive; default: as many full steps as the rows allow).
    A step beyond the full steps the rows hold is a ValueError."""

    def __init__(
        self,
        num_rows: int,
        micro_batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        gradient_accumulation_steps: int = 1,
        start_step: int = 0,
        end_step: int | None = None,
    ):
        # Floats and bools (micro_batch_size=2.0, rank=True) failed only at the first batch, in
        # numpy's or range's words, or len(sampler) did; refused here like the steps.
        # num_rows too: 1000.0 (a float from a computed count) failed the same way, at len().
        num_rows = RowDataset._integer(num_rows, "num_rows")
        if num_rows < 0:
            raise ValueError(f"num_rows must be 0 or more, got {num_rows}")
        micro_batch_size = RowDataset._integer(micro_batch_size, "micro_batch_size")
        gradient_accumulation_steps = RowDataset._integer(
            gradient_accumulation_steps, "gradient_accumulation_steps"
        )
        rank = RowDataset._integer(rank, "rank")
        world_size = RowDataset._integer(world_size, "world_size")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside [0, {world_size})")
        if micro_batch_size < 1 or gradient_accumulation_steps < 1:
            raise ValueError("micro_batch_size and gradient_accumulation_steps must be >= 1")
        start_step = RowDataset._integer(start_step, "start_step")
        end_step = None if end_step is None else RowDataset._integer(end_step, "end_step")
        # A negative start gave negative row indices and a length one step too long.
        if start_step < 0 or (end_step is not None and end_step < 0):
            raise ValueError(
                f"start_step ({start_step}) and end_step ({end_step}) must be 0 or more"
            )
        self.micro = micro_batch_size
        self.rank = rank
        self.world = world_size
        self.gas = gradient_accumulation_steps
        self.global_batch = micro_batch_size * world_size * gradient_accumulation_steps
        full_steps = num_rows // self.global_batch
        # A step past the rows made a loader that stopped early or yielded nothing, silently.
        # end_step is exclusive, and starting at full_steps (resuming after the last step) is
        # an empty loader by right.
        held = (
            f"steps 0..{full_steps - 1:,} of {self.global_batch:,} rows"
            if full_steps
            else f"no full step of {self.global_batch:,} rows"
        )
        for what, step in (("start_step", start_step), ("end_step", end_step)):
            if step is not None and step > full_steps:
                raise ValueError(
                    f"{what} {step} is beyond the index: its {num_rows:,} rows hold {held}, so "
                    f"{what} can be at most {full_steps:,}"
                )
        if end_step is not None and end_step < start_step:
            raise ValueError(f"end_step {end_step} is before start_step {start_step}")
        self.start_step = start_step
        self.end_step = full_steps if end_step is None else end_step

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step) * self.gas

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.end_step):
            for m in range(self.gas):
                rows = micro_batch_rows(
                    step, m, self.rank, self.world, self.micro, self.global_batch
                )
                yield list(rows)


def _as_batch(x: torch.Tensor) -> torch.Tensor:
    return x


def make_data_loader(
    rows: RowDataset,
    micro_batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    gradient_accumulation_steps: int = 1,
    start_step: int = 0,
    end_step: int | None = None,
    dtype: np.dtype | type | None = np.int64,
    num_workers: int = 0,
) -> DataLoader:
    """A DataLoader yielding (micro_batch_size, seq_length + 1) tensors for this rank, in
    GPT-NeoX's order, resumable at any step: optimizer steps ``start_step`` to ``end_step``,
    end exclusive as in ``range`` (where ``batches()`` and ``pythia-data batch --end-step``
    include it), ``gradient_accumulation_steps`` tensors per step."""
    sampler = GPTNeoXBatchSampler(
        len(rows),
        micro_batch_size,
        rank,
        world_size,
        gradient_accumulation_steps,
        start_step,
        end_step,
    )
    return DataLoader(
        _MicroBatches(rows, dtype),
        batch_sampler=sampler,
        collate_fn=_as_batch,
        num_workers=num_workers,
    )
