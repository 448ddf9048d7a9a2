"""Indexed-dataset reads: ours against the anchor, a plain np.memmap + Python reader that does what
GPT-NeoX's and Pythia's `MMapIndexedDataset` do (np.frombuffer over the mapped .bin at
pointers[i] with sizes[i]).

Run: .venv/bin/python -m pytest benches/bench_indexed.py --benchmark-only
Scale with PYTHIA_BENCH_DOCS (default 200,000 documents, ~115 M tokens).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from pythia_data import IndexedDataset, IndexedDatasetBuilder

DOCS = int(os.environ.get("PYTHIA_BENCH_DOCS", 200_000))
ACCESSES = 10_000


class NumpyMemmapReader:
    """The anchor: GPT-NeoX's MMapIndexedDataset reading path, in plain numpy."""

    def __init__(self, prefix):
        idx = np.memmap(f"{prefix}.idx", dtype=np.uint8, mode="r")
        n = int(idx[18:26].view("<u8")[0])
        self.dtype = np.uint16
        self.sizes = np.frombuffer(idx, dtype="<i4", count=n, offset=34)
        self.pointers = np.frombuffer(idx, dtype="<i8", count=n, offset=34 + 4 * n)
        self.bin = np.memmap(f"{prefix}.bin", dtype=np.uint8, mode="r")

    def get(self, i):
        ptr, size = self.pointers[i], self.sizes[i]
        return np.frombuffer(self.bin, dtype=self.dtype, count=size, offset=ptr)

    def items(self, start, stop):
        ptr = self.pointers[start]
        count = self.sizes[start:stop].sum(dtype=np.int64)
        return np.frombuffer(self.bin, dtype=self.dtype, count=count, offset=ptr)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    rng = np.random.default_rng(0)
    sizes = np.clip(rng.lognormal(6.3, 1.2, DOCS), 1, 60_000).astype(np.int64)
    prefix = tmp_path_factory.mktemp("bench") / "data"
    with IndexedDatasetBuilder(prefix, np.uint16) as b:
        tokens = rng.integers(0, 50_000, int(sizes.sum()), dtype=np.uint16)
        for doc in np.split(tokens, np.cumsum(sizes)[:-1]):
            b.add_document(doc)
    return prefix


@pytest.fixture(scope="module")
def picks():
    return np.random.default_rng(1).integers(0, DOCS, ACCESSES).tolist()


def random_items(reader, picks):
    total = 0
    for i in picks:
        total += int(reader.get(i)[-1])
    return total


def sequential_ranges(reader, n, width=1024):
    total = 0
    for start in range(0, n - width, width):
        total += int(reader.items(start, start + width)[0])
    return total


@pytest.mark.benchmark(group="random item access (10k items)")
def test_random_items_ours(benchmark, dataset, picks):
    ds = IndexedDataset(dataset)
    assert benchmark(random_items, ds, picks) == random_items(NumpyMemmapReader(dataset), picks)


@pytest.mark.benchmark(group="random item access (10k items)")
def test_random_items_numpy_memmap(benchmark, dataset, picks):
    benchmark(random_items, NumpyMemmapReader(dataset), picks)


@pytest.mark.benchmark(group="random item access (10k items)")
def test_random_items_ours_gather(benchmark, dataset, picks):
    ds = IndexedDataset(dataset)

    def gathered():
        tokens, offsets = ds.gather(picks)
        return int(tokens[offsets[1:] - 1].astype(np.int64).sum())

    assert benchmark(gathered) == random_items(NumpyMemmapReader(dataset), picks)


@pytest.mark.benchmark(group="sequential ranges of 1024 items")
def test_sequential_ours(benchmark, dataset):
    ds = IndexedDataset(dataset)
    assert benchmark(sequential_ranges, ds, DOCS) == sequential_ranges(
        NumpyMemmapReader(dataset), DOCS
    )


@pytest.mark.benchmark(group="sequential ranges of 1024 items")
def test_sequential_numpy_memmap(benchmark, dataset):
    benchmark(sequential_ranges, NumpyMemmapReader(dataset), DOCS)


@pytest.mark.benchmark(group="open dataset")
def test_open_ours(benchmark, dataset):
    benchmark(IndexedDataset, dataset)


@pytest.mark.benchmark(group="open dataset")
def test_open_numpy_memmap(benchmark, dataset):
    benchmark(NumpyMemmapReader, dataset)
