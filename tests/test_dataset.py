"""GPTDataset / PreshuffledDataset / BlendedDataset rows and batches against GPT-NeoX's own
samples (goldens) and against the stream arithmetic of shared/spec/data-pipeline.md §2.8 and §4."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pythia_data import (
    BlendedDataset,
    GPTDataset,
    IndexedDataset,
    IndexedDatasetBuilder,
    PreshuffledDataset,
    PythiaDataError,
)
from pythia_data.preshuffle import export_preshuffled

from golden import CASES, FIXTURES, golden_case, golden_tokens


def golden_dataset(name, tmp_path=None) -> GPTDataset:
    c = CASES[name]
    # The goldens' index files sit in the fixtures under GPT-NeoX's names: open them in place.
    return GPTDataset(
        golden_case(name),
        num_samples=c["num_samples"],
        seq_length=c["seq_length"],
        seed=c["seed"],
        cache_dir=FIXTURES,
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_rows_equal_gpt_neox_samples(name):
    ds = golden_dataset(name)
    c = CASES[name]
    assert len(ds) == c["dataset_len"]
    picks = np.load(FIXTURES / f"{name}_sample_picks.npy")
    want = np.load(FIXTURES / f"{name}_samples.npy")
    for k, row in zip(picks, want, strict=True):
        got = ds[int(k)]
        assert got.dtype == ds.indexed.dtype
        np.testing.assert_array_equal(got.astype(np.int64), row, err_msg=f"{name} row {k}")
        np.testing.assert_array_equal(ds.row(int(k), np.int64), row)


@pytest.mark.parametrize("name", ["toy_e2", "zero_len_docs", "lognormal_e3", "int32_tokens"])
def test_every_row_is_its_slice_of_the_stream(name):
    # Spec §2: with S the documents concatenated in doc_idx order, sample j = S[jL ..= jL+L],
    # and row k = sample shuffle_idx[k].
    ds = golden_dataset(name)
    L = ds.seq_length
    tokens = golden_tokens(name).astype(np.int64)
    indexed = IndexedDataset(golden_case(name))
    starts = np.concatenate([[0], np.cumsum(indexed.sizes.astype(np.int64))])
    doc_idx, _, shuffle_idx = (np.load(p) for p in ds.paths)
    stream = np.concatenate([tokens[starts[d] : starts[d + 1]] for d in doc_idx])
    rows = ds.rows(0, len(ds), np.int64)
    assert rows.shape == (len(ds), L + 1)
    for k in range(len(ds)):
        j = int(shuffle_idx[k])
        np.testing.assert_array_equal(rows[k], stream[j * L : j * L + L + 1])


def test_batches_steps_and_checkpoints():
    ds = golden_dataset("lognormal_e1")  # 5,639 rows of 513
    b = 64
    full = ds.rows(0, len(ds))
    np.testing.assert_array_equal(ds.batch(3, b), full[3 * b : 4 * b])
    many = ds.batches(2, 5, b)  # inclusive end: 4 steps, each complete
    assert many.shape == (4, b, 513)
    np.testing.assert_array_equal(many.reshape(-1, 513), full[2 * b : 6 * b])
    last = len(ds) // b - 1
    assert ds.batch(last, b).shape == (b, 513)
    with pytest.raises(IndexError, match=f"last full step is {last}"):
        ds.batch(last + 1, b)
    with pytest.raises(IndexError, match="beyond the index"):
        ds.rows(len(ds) - 1, len(ds) + 1)
    assert ds.checkpoint_rows(0) == range(0)
    # 5,639 rows: checkpoint step5 has trained on all of 5 full steps of 1024; step6 cannot be.
    assert ds.checkpoint_rows(5) == range(0, 5 * 1024)
    assert ds.checkpoint_rows(last + 1, b) == range(0, (last + 1) * b)
    np.testing.assert_array_equal(ds[-1], full[-1])
    with pytest.raises(IndexError, match="out of range"):
        ds[len(ds)]
    np.testing.assert_array_equal(ds[10:13], full[10:13])


def test_the_global_batch_size_given_is_the_default_batch_size():
    # batch(10) of a dataset opened with global_batch_size=16 read 1,024 rows from row 10,240.
    c = CASES["lognormal_e1"]
    ds = GPTDataset(
        golden_case("lognormal_e1"), num_samples=c["num_samples"], seq_length=c["seq_length"],
        seed=c["seed"], cache_dir=FIXTURES, global_batch_size=16,
    )  # fmt: skip
    full = ds.rows(0, len(ds))
    np.testing.assert_array_equal(ds.batch(10), full[160:176])
    np.testing.assert_array_equal(ds.batches(2, 3).reshape(-1, 513), full[32:64])
    assert ds.checkpoint_rows(10) == range(0, 160)
    np.testing.assert_array_equal(
        ds.data_parallel_rows(10, 1, 2, 4), full[160:176].reshape(2, 2, 4, 513)[:, 1]
    )
    assert golden_dataset("lognormal_e1").checkpoint_rows(3) == range(0, 3 * 1024)


@pytest.mark.parametrize("world,micro", [(1, 64), (2, 32), (4, 8), (8, 2)])
def test_data_parallel_slices_follow_distributed_batch_sampler(world, micro):
    ds = golden_dataset("lognormal_e1")
    b = 64
    gas = b // (world * micro)
    step = 7
    full = ds.batch(step, b)
    # GPT-NeoX: SequentialSampler → batches of micro·world rows → rank r takes
    # [r·micro, (r+1)·micro) of each; `gas` such micro-steps make one optimizer step.
    for rank in range(world):
        got = ds.data_parallel_rows(step, rank, world, micro, b)
        assert got.shape == (gas, micro, 513)
        for m in range(gas):
            lo = m * micro * world + rank * micro
            np.testing.assert_array_equal(got[m], full[lo : lo + micro])
    with pytest.raises(PythiaDataError, match="not a multiple"):
        ds.data_parallel_rows(step, 0, 3, micro, b)


def test_provenance_rebuilds_the_row_and_names_subsets(tmp_path):
    name = "zero_len_docs"
    ds = golden_dataset(name)
    indexed = IndexedDataset(golden_case(name))
    for k in range(len(ds)):
        spans = ds.provenance(k)
        assert all(s["length"] > 0 for s in spans)
        rebuilt = np.concatenate(
            [indexed.get(s["document"], s["offset"], s["length"]) for s in spans]
        )
        np.testing.assert_array_equal(rebuilt, ds[k])
    # With the tokenizer's subset labels beside the data, each span names its subset.
    prefix = tmp_path / "sub"
    sizes = [9, 4, 12, 7]
    with IndexedDatasetBuilder(prefix, np.uint16) as b:
        for i, n in enumerate(sizes):
            b.add_document(np.full(n, i + 1))
    np.save(tmp_path / "sub.subsets.npy", np.array([2, 0, 1, 2], dtype=np.uint16))
    (tmp_path / "sub.subsets.json").write_text(
        json.dumps({"key": "pile_set_name", "names": ["ArXiv", "Pile-CC", "Wikipedia (en)"]})
    )
    ds = GPTDataset(prefix, num_samples=3, seq_length=5, seed=1, build=True)
    names = {1: "Wikipedia (en)", 2: "ArXiv", 3: "Pile-CC", 4: "Wikipedia (en)"}
    for k in range(len(ds)):
        for s in ds.provenance(k):
            token = int(indexed_token(prefix, s["document"]))
            assert s["subset"] == names[token]


def small_dataset(tmp_path, **kw) -> GPTDataset:
    prefix = tmp_path / "small"
    with IndexedDatasetBuilder(prefix, np.uint16) as b:
        for i, n in enumerate([40, 7, 25, 60]):
            b.add_document(np.arange(n) + 100 * i)
    return GPTDataset(prefix, num_samples=10, seq_length=8, seed=3, build=True, **kw)


def test_row_indices_must_be_integers_and_errors_name_them(tmp_path):
    ds = small_dataset(tmp_path)
    n = len(ds)
    full = ds.rows(0, n)
    # A float, a bool or a string was read as row int(key).
    for bad in (1.7, True, "1", np.float64(1.0), np.bool_(True)):
        with pytest.raises(TypeError, match="must be integers"):
            ds[bad]
    np.testing.assert_array_equal(ds[np.int64(1)], full[1])
    np.testing.assert_array_equal(ds[np.uint8(2)], full[2])
    # The error named the index after wrapping (-n-1 → -1).
    with pytest.raises(IndexError, match=rf"^row {-n - 1} is out of range for {n} rows$"):
        ds[-n - 1]
    # An empty stepped slice failed in np.stack.
    for key in (slice(5, 5, 2), slice(5, 2, 2), slice(0, n, -1)):
        empty = ds[key]
        assert empty.shape == (0, 9) and empty.dtype == np.uint16
    np.testing.assert_array_equal(ds[::3], full[::3])


def test_a_global_batch_size_must_be_a_whole_positive_number(tmp_path):
    # 4.7 was read as 4 and True as 1: the default batch of batch() and checkpoint_rows(),
    # which refuse batch_size=4.0 and True themselves.
    small_dataset(tmp_path)  # builds the index the refusals below must not reach
    for bad, error in ((4.7, TypeError), (True, TypeError), (0, PythiaDataError)):
        with pytest.raises(error, match="global_batch_size must be"):
            small_dataset(tmp_path, global_batch_size=bad)


def test_row_ranges_must_be_integers(tmp_path):
    # rows(0.5, 2) was rows(0, 2), where row(0.5) and batch(1.0) refuse floats.
    ds = small_dataset(tmp_path)
    full = ds.rows(0, len(ds))
    for start, stop in ((0.5, 2), (0, 2.0), (True, 2), (0, "2"), (np.float32(0), 2)):
        with pytest.raises(TypeError, match="must be an integer"):
            ds.rows(start, stop)
    np.testing.assert_array_equal(ds.rows(np.int32(1), np.uint64(3)), full[1:3])
    pre = tmp_path / "pre"
    with IndexedDatasetBuilder(pre, np.uint16) as b:
        for row in full:
            b.add_document(row)
    with pytest.raises(TypeError, match="stop must be an integer"):
        PreshuffledDataset(pre).rows(0, 1.5)


def test_provenance_indices_like_row(tmp_path):
    ds = small_dataset(tmp_path)
    n = len(ds)
    # These raised OverflowError (and n a PythiaDataError) where row() raises IndexError.
    for k in (n, -n - 1, 2**64, -(2**64)):
        with pytest.raises(IndexError, match=rf"^row {k} is out of range for {n} rows$"):
            ds.provenance(k)
    with pytest.raises(TypeError, match="must be integers"):
        ds.provenance(1.5)
    assert ds.provenance(-1) == ds.provenance(n - 1)


def test_range_errors_count_steps_of_the_dataset_batch(tmp_path):
    ds = small_dataset(tmp_path, global_batch_size=4)
    n = len(ds)
    # The count was of hard-coded steps of 1024.
    with pytest.raises(IndexError, match=rf"\({n // 4} full steps of 4\)"):
        ds.rows(0, n + 1)
    with pytest.raises(IndexError, match=rf"\(no full step of {n + 1}\)"):
        small_dataset(tmp_path, global_batch_size=n + 1).rows(0, n + 1)
    # With no full step it said "the last full step is -1".
    with pytest.raises(IndexError, match=rf"it holds no full step of {n + 1}$"):
        ds.batch(0, n + 1)
    # IndexError, as batch() gives for a step outside the index.
    with pytest.raises(IndexError, match="checkpoint step -5 is negative"):
        ds.checkpoint_rows(-5)


def test_a_checkpoint_step_past_the_index_is_refused():
    # checkpoint_rows(10**6) was range(0, 1_024_000_000) for an index of 5,639 rows.
    ds = golden_dataset("lognormal_e1")
    assert len(ds) == 5639  # 5 full steps of 1024, 88 of 64
    assert ds.checkpoint_rows(5) == range(0, 5120)
    assert ds.checkpoint_rows(88, 64) == range(0, 5632)
    for step, b, last in ((6, None, 5), (10**6, None, 5), (89, 64, 88)):
        with pytest.raises(IndexError, match=f"the last checkpoint step it holds is {last} "):
            ds.checkpoint_rows(step, b)
    # A batch of no rows, or fewer, gave range(0, 0) and range(0, -4).
    for b in (0, -4):
        with pytest.raises(PythiaDataError, match=f"batch_size must be at least 1, not {b}"):
            ds.checkpoint_rows(1, b)


def indexed_token(prefix, doc):
    return IndexedDataset(prefix).get(doc)[0]


def test_int64_on_request_and_dtype():
    ds = golden_dataset("int32_tokens")
    assert ds.rows(0, 4).dtype == np.int32
    np.testing.assert_array_equal(ds.rows(0, 4, np.int64), ds.rows(0, 4).astype(np.int64))


def test_a_dtype_that_cannot_hold_the_tokens_is_refused(tmp_path):
    # uint16 ids above 32,767 came back from dtype=np.int16 wrapped negative, without a word.
    with IndexedDatasetBuilder(tmp_path / "p", np.uint16) as b:
        b.add_document(np.array([50_000, 1, 2, 3], np.uint16))
    pre = PreshuffledDataset(tmp_path / "p")
    gpt = golden_dataset("lognormal_e1")
    blend = BlendedDataset([gpt, gpt], [1, 1])
    for ds in (pre, gpt, blend):
        for dtype in (np.int16, np.int8, np.float16):
            with pytest.raises(PythiaDataError, match="cannot hold every uint16 token"):
                ds.rows(0, 1, dtype)
            with pytest.raises(PythiaDataError, match="cannot hold"):
                ds.row(0, dtype)
        for dtype in (np.uint16, np.int32, np.int64, np.float32):
            np.testing.assert_array_equal(ds.rows(0, 1, dtype), ds.rows(0, 1).astype(dtype))
    assert pre.rows(0, 1, np.int32)[0, 0] == 50_000
    for ds in (pre, blend):
        with pytest.raises(PythiaDataError, match="cannot hold"):
            ds.rows(0, 1, out=np.empty((1, ds.seq_length + 1), np.int16))
    int32 = golden_dataset("int32_tokens")
    with pytest.raises(PythiaDataError, match="cannot hold every int32 token"):
        int32.rows(0, 1, np.uint16)


@pytest.mark.parametrize("dtype", [np.uint16, np.int64])
def test_rows_into_a_reused_buffer(dtype):
    ds = golden_dataset("lognormal_e1")
    out = np.full((32, 513), 7, dtype=dtype)
    for step in (0, 5):
        got = ds.batch(step, 32, out=out)
        assert got is out
        np.testing.assert_array_equal(out, ds.batch(step, 32).astype(dtype))
    with pytest.raises(PythiaDataError, match="shape"):
        ds.rows(0, 4, out=out)
    with pytest.raises(PythiaDataError, match="dtype"):
        ds.rows(0, 32, out=np.zeros((32, 513), dtype=np.float32))
    # Fortran order is "contiguous" too, but rows written as row-major bytes came out scrambled.
    with pytest.raises(PythiaDataError, match="C-contiguous"):
        ds.rows(0, 32, out=np.zeros((32, 513), dtype=dtype, order="F"))


def test_preshuffled_round_trip(tmp_path):
    ds = golden_dataset("long_docs")
    out = export_preshuffled(ds, tmp_path / "document", 150)
    pre = PreshuffledDataset(out, seq_length=ds.seq_length)
    assert len(pre) == 150
    np.testing.assert_array_equal(pre.rows(0, 150), ds.rows(0, 150))
    np.testing.assert_array_equal(pre.batch(2, 16), ds.batch(2, 16))
    # Each row sits at byte k·(L+1)·2 of the .bin, as in Pythia's release.
    raw = np.fromfile(tmp_path / "document.bin", dtype="<u2")
    np.testing.assert_array_equal(raw[37 * 2049 : 38 * 2049], ds[37])
    # Pythia's document.idx records no document ends: doc_idx [0] alone, 34 + 12·rows + 8
    # bytes (the deduped one is 1,757,184,042 bytes for 146,432,000 rows). One document per
    # row made the .idx 8 bytes a row longer, so its sha256 could never match Pythia's.
    assert (tmp_path / "document.idx").stat().st_size == 34 + 12 * 150 + 8
    np.testing.assert_array_equal(IndexedDataset(out).doc_idx, [0])
    with pytest.raises(PythiaDataError, match="every item of a preshuffled dataset"):
        PreshuffledDataset(out, seq_length=1024)
    assert PreshuffledDataset(out).seq_length == 2048  # inferred from the items
    with IndexedDatasetBuilder(tmp_path / "empty", np.uint16):
        pass
    with pytest.raises(PythiaDataError, match="no items"):
        PreshuffledDataset(tmp_path / "empty")


def test_blended_dataset_interleaves_by_weight(tmp_path):
    a = golden_dataset("toy_e2")
    b = golden_dataset("zero_len_docs")
    with pytest.raises(PythiaDataError, match="share seq_length"):
        BlendedDataset([a, b], [1, 1])
    c = golden_dataset("lognormal_e1")
    d = golden_dataset("lognormal_e3")
    blend = BlendedDataset([c, d], [2.0, 1.0])
    assert blend.size == len(c) + len(d)  # GPT-NeoX's length
    # 2:1 over 5,639 and 6,490 rows: c runs out first, at about 1.5 · 5,639 positions.
    assert len(blend) == int(np.flatnonzero(blend.dataset_sample_index >= len(c))[0])
    assert 8_400 < len(blend) < 8_500
    want = f"BlendedDataset([{c!r}, {d!r}], weights=[0.6667, 0.3333], rows={len(blend):,})"
    assert repr(blend) == want  # it was the default <... object at 0x...>
    rows = blend.rows(0, 300)
    seen = [0, 0]
    for s in range(300):
        w = blend.weights
        errs = [w[i] * max(s, 1) - seen[i] for i in range(2)]
        i = 0 if errs[0] >= errs[1] else 1
        np.testing.assert_array_equal(rows[s], (c, d)[i][seen[i]])
        seen[i] += 1


def test_blended_dataset_normalises_weights_as_gpt_neox_does():
    # GPT-NeoX normalises train_data_weights in Python, then again in numpy (BlendableDataset);
    # normalising [1, 4, 1] once gave other last bits, and another dataset at position 2.
    c, d = golden_dataset("lognormal_e1"), golden_dataset("lognormal_e3")
    raw = [1.0, 4.0, 1.0]
    total = 0.0
    for w in raw:  # Python's sum(), as GPT-NeoX v1.0's Python 3.8 added them
        total += w
    neox = np.array([w / total for w in raw])
    neox = neox / neox.sum()
    blend = BlendedDataset([c, d, c], raw)
    np.testing.assert_array_equal(blend.weights, neox)
    counts, want = [0, 0, 0], []
    for s in range(200):
        errs = [w * max(s, 1) - counts[i] for i, w in enumerate(neox)]
        i = max(range(3), key=lambda j: (errs[j], -j))
        want.append(i)
        counts[i] += 1
    assert list(blend.dataset_index[:200]) == want
    assert want[2] == 1


def test_blend_built_then_read(tmp_path):
    from pythia_data import build_blended_index

    prefixes = []
    for name, n in (("x", 40), ("y", 25)):
        with IndexedDatasetBuilder(tmp_path / name, np.uint16) as b:
            for i in range(n):
                b.add_document(np.full(30 + i, 100 * len(prefixes) + i))
        prefixes.append(tmp_path / name)
    info = build_blended_index(prefixes, [1.0, 3.0], num_samples=60, seq_length=8, seed=3)
    blend = BlendedDataset.from_blend(info)
    x, y = (GPTDataset(c.prefix, seq_length=8, paths=c.paths) for c in info.components)
    assert blend.size == info.size == len(x) + len(y)
    # Its length is the positions that have rows: all of them up to the first that needs a row
    # past the end of its component (GPT-NeoX's length counts those too; a loader failed there).
    assert 60 <= len(blend) <= blend.size
    assert blend.rows(0, len(blend)).shape == (len(blend), 9)
    if len(blend) < blend.size:
        d = int(blend.dataset_index[len(blend)])
        assert int(blend.dataset_sample_index[len(blend)]) >= len((x, y)[d])
    # The length the build reports, from counts alone, is the first position of the order
    # past the end of its component.
    past = [
        np.flatnonzero((blend.dataset_index == d) & (blend.dataset_sample_index >= len(c)))
        for d, c in enumerate((x, y))
    ]
    assert info.readable == len(blend) == min([int(p[0]) for p in past if p.size] + [info.size])
    assert len(blend) < blend.size  # so the line above is tested where it matters
    rows = blend.rows(0, 40)
    # Weights 0.25/0.75: position 0 goes to y (largest error 0.75·1), then the rule interleaves.
    seen = [0, 0]
    for s in range(40):
        errs = [w * max(s, 1) - seen[i] for i, w in enumerate(info.weights)]
        i = 0 if errs[0] >= errs[1] else 1
        np.testing.assert_array_equal(rows[s], (x, y)[i][seen[i]])
        seen[i] += 1
    assert seen[1] > 2 * seen[0]


def test_a_pickled_blend_is_rebuilt_not_copied(tmp_path):
    # Pickled whole (spawned DataLoader workers), a Pythia-size blend index is 1.3 GB per
    # worker: the blend is rebuilt from its weights instead, to the same order bit for bit.
    import pickle

    from pythia_data import build_blended_index

    prefixes = []
    for name, n in (("x", 40), ("y", 25), ("z", 30)):
        with IndexedDatasetBuilder(tmp_path / name, np.uint16) as b:
            for i in range(n):
                b.add_document(np.full(30 + i, 100 * len(prefixes) + i))
        prefixes.append(tmp_path / name)
    info = build_blended_index(prefixes, [1.0, 4.0, 1.0], num_samples=3000, seq_length=8, seed=3)
    for blend in (
        BlendedDataset.from_blend(info),
        BlendedDataset(
            [GPTDataset(c.prefix, seq_length=8, paths=c.paths) for c in info.components], [1, 4, 1]
        ),
    ):
        data = pickle.dumps(blend)
        assert len(data) < blend.dataset_index.nbytes, len(data)
        again = pickle.loads(data)
        np.testing.assert_array_equal(again.dataset_index, blend.dataset_index)
        np.testing.assert_array_equal(again.dataset_sample_index, blend.dataset_sample_index)
        np.testing.assert_array_equal(again.weights, blend.weights)
        assert len(again) == len(blend)
        np.testing.assert_array_equal(again.rows(0, len(blend)), blend.rows(0, len(blend)))


def test_missing_and_mismatched_index(tmp_path):
    name = "toy_e1"
    c = CASES[name]
    with pytest.raises(FileNotFoundError, match="doc_idx.npy.*build-index"):
        GPTDataset(
            golden_case(name),
            num_samples=c["num_samples"],
            seq_length=4,
            seed=1234,
            cache_dir=tmp_path,
        )
    # lognormal_e3's index put under toy_e1's names: it names documents toy_e1 lacks.
    for kind in ("doc_idx", "sample_idx", "shuffle_idx"):
        src = FIXTURES / f"lognormal_e3_train_0_indexmap_4000ns_512sl_0s_{kind}.npy"
        (tmp_path / f"toy_e1_train_0_indexmap_6ns_4sl_1234s_{kind}.npy").write_bytes(
            src.read_bytes()
        )
    with pytest.raises(PythiaDataError, match="another dataset"):
        GPTDataset(golden_case(name), num_samples=6, seq_length=4, seed=1234, cache_dir=tmp_path)
    # Same documents and sizes, so only a wrong seq_length shows: rows must not be silent garbage.
    with pytest.raises(PythiaDataError, match="seq_length"):
        GPTDataset(
            golden_case(name),
            num_samples=6,
            seq_length=5,
            seed=1234,
            paths=golden_dataset(name).paths,
        )
    trunc = tmp_path / "toy_e1_train_0_indexmap_6ns_4sl_1234s_shuffle_idx.npy"
    trunc.write_bytes(trunc.read_bytes()[:-2])
    with pytest.raises(PythiaDataError, match="shuffle_idx.npy.*truncated"):
        GPTDataset(golden_case(name), num_samples=6, seq_length=4, seed=1234, cache_dir=tmp_path)


def test_index_of_other_data_is_refused_on_open(tmp_path):
    for name, sizes in (("a", [40, 7, 90, 13]), ("b", [41, 7, 90, 13])):
        with IndexedDatasetBuilder(tmp_path / name, np.uint16) as b:
            for n in sizes:
                b.add_document(np.arange(n))
    a = GPTDataset(tmp_path / "a", num_samples=10, seq_length=8, seed=2, build=True)
    with pytest.raises(PythiaDataError, match="built from other data") as refused:
        GPTDataset(tmp_path / "b", num_samples=10, seq_length=8, seed=2, paths=a.paths)
    # --overwrite alone would destroy the other dataset's index: its own folder is named too.
    assert "give each its own --cache-dir" in str(refused.value)


def test_build_on_open(tmp_path):
    prefix = tmp_path / "d"
    with IndexedDatasetBuilder(prefix, np.uint16) as b:
        for n in (50, 3, 70, 9):
            b.add_document(np.arange(n))
    ds = GPTDataset(prefix, num_samples=20, seq_length=6, seed=0, build=True)
    assert ds.info is not None and len(ds) == ds.info.dataset_len
    again = GPTDataset(prefix, num_samples=20, seq_length=6, seed=0, build=True)
    assert again.info.reused
    np.testing.assert_array_equal(ds.rows(0, len(ds)), again.rows(0, len(again)))


def test_sharded_data_read_in_place(tmp_path):
    from test_indexed import shard

    ds = golden_dataset("long_docs")
    # Raw dataset cut at odd byte counts (inside tokens), as Pythia's shards are.
    sharded = shard(golden_case("long_docs"), tmp_path / "raw", [100_001, 300_000, 555_555])
    c = CASES["long_docs"]
    raw = GPTDataset(
        sharded, num_samples=c["num_samples"], seq_length=2048, seed=1234, paths=ds.paths
    )
    np.testing.assert_array_equal(raw.rows(0, len(raw)), ds.rows(0, len(ds)))
    # Preshuffled rows exported, then sharded like document-000NN-of-000MM.bin.
    export_preshuffled(ds, tmp_path / "document", 150)
    pre = PreshuffledDataset(shard(tmp_path / "document", tmp_path / "pre", [77_777, 300_001]))
    np.testing.assert_array_equal(pre.rows(0, 150), ds.rows(0, 150))
    np.testing.assert_array_equal(pre.batch(3, 32, np.int64), ds.batch(3, 32, np.int64))


def test_micro_batch_arithmetic_refuses_what_is_no_step():
    from pythia_data.dataset import gradient_accumulation_steps, micro_batch_rows

    assert micro_batch_rows(np.int64(2), 1, 1, 2, 4, 16) == range(44, 48)
    assert gradient_accumulation_steps(np.int64(16), 2, 4) == 2
    # A negative step gave rows counted from the end; batches of 0 or fewer gave 0 or -2
    # micro-steps, and floats a float count.
    with pytest.raises(PythiaDataError, match="step -1 is negative"):
        micro_batch_rows(-1, 0, 0, 1, 16, 16)
    for batch in (0, -16):
        with pytest.raises(PythiaDataError, match=f"batch_size must be at least 1, not {batch}"):
            gradient_accumulation_steps(batch, 1, 8)
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        gradient_accumulation_steps(16.0, 1, 8)
    for bad in (1.5, True):
        with pytest.raises(TypeError, match="step must be an integer"):
            micro_batch_rows(bad, 0, 0, 1, 8, 16)
