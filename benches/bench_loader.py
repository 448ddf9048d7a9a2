"""Assembling training batches: ours against GPT-NeoX v1.0's ``GPT2Dataset.__getitem__`` (its
``MMapIndexedDataset.get`` over np.memmap, ``np.concatenate``, int64), looped over the 1,024 rows
of a step and stacked, as GPT-NeoX's DataLoader does. Warm page cache (the data is read once
before timing).

Run: .venv/bin/python -m pytest benches/bench_loader.py --benchmark-only
Scale with PYTHIA_BENCH_LOADER_DOCS (default 60,000 Pile-shaped documents, ~95 M tokens).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from pythia_data import GPTDataset, IndexedDatasetBuilder

DOCS = int(os.environ.get("PYTHIA_BENCH_LOADER_DOCS", 60_000))
SEQ = 2048
BATCH = 1024


class GPTNeoXGPT2Dataset:
    """The anchor: GPT-NeoX v1.0's GPT2Dataset.__getitem__ over MMapIndexedDataset, verbatim
    in behaviour."""

    def __init__(self, prefix, doc_idx, sample_idx, shuffle_idx):
        idx = np.memmap(f"{prefix}.idx", dtype=np.uint8, mode="r")
        n = int(idx[18:26].view("<u8")[0])
        self.sizes = np.frombuffer(idx, dtype="<i4", count=n, offset=34)
        self.pointers = np.frombuffer(idx, dtype="<i8", count=n, offset=34 + 4 * n)
        self.bin = np.memmap(f"{prefix}.bin", dtype=np.uint8, mode="r")
        self.doc_idx = np.load(doc_idx, mmap_mode="r")
        self.sample_idx = np.load(sample_idx, mmap_mode="r")
        self.shuffle_idx = np.load(shuffle_idx, mmap_mode="r")

    def get(self, idx, offset=0, length=None):
        ptr, size = self.pointers[idx], self.sizes[idx]
        if length is None:
            length = size - offset
        ptr += offset * 2
        return np.frombuffer(self.bin, dtype=np.uint16, count=length, offset=ptr)

    def __getitem__(self, idx):
        idx = self.shuffle_idx[idx]
        doc_index_f = self.sample_idx[idx][0]
        doc_index_l = self.sample_idx[idx + 1][0]
        offset_f = self.sample_idx[idx][1]
        offset_l = self.sample_idx[idx + 1][1]
        if doc_index_f == doc_index_l:
            sample = self.get(
                self.doc_idx[doc_index_f], offset=offset_f, length=offset_l - offset_f + 1
            )
        else:
            sample_list = [self.get(self.doc_idx[doc_index_f], offset=offset_f)]
            for i in range(doc_index_f + 1, doc_index_l):
                sample_list.append(self.get(self.doc_idx[i]))
            sample_list.append(self.get(self.doc_idx[doc_index_l], length=offset_l + 1))
            sample = np.concatenate(sample_list)
        return {"text": np.array(sample, dtype=np.int64)}

    def batch(self, step):
        return np.stack([self[k]["text"] for k in range(step * BATCH, (step + 1) * BATCH)])


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    d = tmp_path_factory.mktemp("loader")
    rng = np.random.default_rng(0)
    sigma = 1.3
    sizes = np.clip(rng.lognormal(np.log(1577.0) - sigma**2 / 2, sigma, DOCS), 1, 200_000).astype(
        np.int64
    )
    with IndexedDatasetBuilder(d / "pile", np.uint16) as b:
        for i, n in enumerate(sizes):
            b.add_document((np.arange(n) * 7919 + i) % 50_000)
    steps = 8
    ours = GPTDataset(d / "pile", num_samples=steps * BATCH, seq_length=SEQ, seed=1234, build=True)
    anchor = GPTNeoXGPT2Dataset(d / "pile", *ours.paths)
    for s in range(min(steps, len(ours) // BATCH)):  # warm the page cache
        ours.batch(s)
    return ours, anchor


def test_batch_gpt_neox_getitem_loop(benchmark, datasets):
    _, anchor = datasets
    benchmark(anchor.batch, 3)


def test_batch_ours_int64(benchmark, datasets):
    ours, anchor = datasets
    got = benchmark(ours.batch, 3, BATCH, np.int64)
    np.testing.assert_array_equal(got, anchor.batch(3))


def test_batch_ours_int64_reused_buffer(benchmark, datasets):
    ours, _ = datasets
    out = np.empty((BATCH, SEQ + 1), dtype=np.int64)
    benchmark(ours.batch, 3, BATCH, None, out)


def test_batch_ours_uint16(benchmark, datasets):
    ours, _ = datasets
    benchmark(ours.batch, 3)


def test_one_row_ours(benchmark, datasets):
    ours, anchor = datasets
    got = benchmark(ours.__getitem__, 12_345 % len(ours))
    np.testing.assert_array_equal(got, anchor[12_345 % len(ours)]["text"])


def test_one_row_gpt_neox(benchmark, datasets):
    _, anchor = datasets
    benchmark(anchor.__getitem__, 12_345 % len(datasets[0]))
