"""Building GPT-NeoX's index: ours against a numpy reference doing what GPT-NeoX v1.0 does
(``RandomState.shuffle`` of doc_idx and shuffle_idx, ``np.save``), with sample_idx computed by a
vectorised closed form (GPT-NeoX uses a C++ loop of the same cost class).

Synthetic Pile-shaped document sizes (lognormal, mean ≈ 1,577 tokens as 332 B / 210.6 M).
Scale with PYTHIA_BENCH_INDEX_SCALE (fraction of the standard Pile: 210.6 M documents and
147,164,160 samples of 2048; default 0.02). Full-scale figures for docs/benchmarks.md come from
running this file as a script, one implementation per process so peak memory is its own:

    python benches/bench_index.py ours 1.0
    python benches/bench_index.py numpy 1.0

Run as a suite: .venv/bin/python -m pytest benches/bench_index.py --benchmark-only
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from pythia_data import _core

PILE_DOCS = 210_607_728
PILE_SAMPLES = 147_164_160
SEQ = 2048
SEED = 1234
SCALE = float(os.environ.get("PYTHIA_BENCH_INDEX_SCALE", 0.02))


def pile_sizes(scale: float) -> np.ndarray:
    n = int(PILE_DOCS * scale)
    rng = np.random.default_rng(0)
    sigma = 1.3
    mu = np.log(1577.0) - sigma**2 / 2
    out = np.empty(n, dtype=np.int32)
    step = 10_000_000
    for a in range(0, n, step):
        b = min(n, a + step)
        out[a:b] = np.clip(rng.lognormal(mu, sigma, b - a), 1, 2**31 - 1)
    return out


def numpy_reference(sizes: np.ndarray, num_samples: int, seq_length: int, seed: int, prefix: str):
    tokens = int(sizes.sum(dtype=np.int64))
    epochs = 1
    while (epochs * tokens - 1) // seq_length < num_samples:
        epochs += 1
    rng = np.random.RandomState(seed)
    doc_idx = np.tile(np.arange(len(sizes), dtype=np.int32), epochs)
    rng.shuffle(doc_idx)
    np.save(f"{prefix}_doc_idx.npy", doc_idx)
    n = (epochs * tokens - 1) // seq_length
    doc_sizes = sizes[doc_idx]
    cum = np.cumsum(doc_sizes, dtype=np.int64)
    del doc_sizes
    targets = np.arange(1, n + 1, dtype=np.int64) * seq_length
    pos = np.searchsorted(cum, targets, side="right")
    sample_idx = np.zeros((n + 1, 2), dtype=np.int32)
    sample_idx[1:, 0] = pos
    sample_idx[1:, 1] = targets - (cum[pos] - sizes[doc_idx[pos]])
    del cum, targets, pos
    np.save(f"{prefix}_sample_idx.npy", sample_idx)
    del sample_idx
    shuffle_idx = np.arange(n, dtype=np.uint32)
    rng.shuffle(shuffle_idx)
    np.save(f"{prefix}_shuffle_idx.npy", shuffle_idx)


def ours(sizes: np.ndarray, num_samples: int, seq_length: int, seed: int, prefix: str):
    return _core.build_index_from_sizes(
        sizes, prefix, "train_0", num_samples, seq_length, seed, overwrite=True
    )


@pytest.fixture(scope="module")
def sizes():
    return pile_sizes(SCALE)


@pytest.mark.parametrize("impl", ["ours", "numpy"])
def test_build_index(benchmark, sizes, impl, tmp_path):
    ns = int(PILE_SAMPLES * SCALE)
    fn = ours if impl == "ours" else numpy_reference
    benchmark.pedantic(
        fn, args=(sizes, ns, SEQ, SEED, str(tmp_path / impl)), rounds=3, iterations=1
    )


def test_outputs_identical(sizes, tmp_path):
    """Not a timing: the two implementations' files must be equal (same run, same sizes)."""
    ns = int(PILE_SAMPLES * SCALE)
    info = ours(sizes, ns, SEQ, SEED, str(tmp_path / "o"))
    numpy_reference(sizes, ns, SEQ, SEED, str(tmp_path / "n"))
    for kind in ("doc_idx", "sample_idx", "shuffle_idx"):
        a = np.load(info[f"{kind}_path"], mmap_mode="r")
        b = np.load(tmp_path / f"n_{kind}.npy", mmap_mode="r")
        assert a.dtype == b.dtype and np.array_equal(a, b), kind


if __name__ == "__main__":
    impl, scale = sys.argv[1], float(sys.argv[2])
    sz = pile_sizes(scale)
    ns = int(PILE_SAMPLES * scale)
    before = resource.getrusage(resource.RUSAGE_SELF)
    base_rss = before.ru_maxrss
    with tempfile.TemporaryDirectory(dir=os.environ.get("PYTHIA_BENCH_DIR")) as d:
        t = time.perf_counter()
        (ours if impl == "ours" else numpy_reference)(sz, ns, SEQ, SEED, str(Path(d) / impl))
        dt = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_SELF)
    peak = after.ru_maxrss
    print(
        f"{impl}: scale {scale} ({len(sz):,} docs, {int(sz.sum(dtype=np.int64)):,} tokens, "
        f"{ns:,} samples): {dt:.2f} s, peak RSS {peak / 1e6:.2f} GB "
        f"(of which the sizes array and Python {base_rss / 1e6:.2f} GB); CPU user "
        f"{after.ru_utime - before.ru_utime:.2f} s, system {after.ru_stime - before.ru_stime:.2f} s"
    )
