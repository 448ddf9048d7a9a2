"""Indexed datasets against GPT-NeoX v1.0's own files (tests/fixtures/gpt-neox-v1.0)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import pythia_data as pd
from pythia_data import IndexedDataset, IndexedDatasetBuilder, PythiaDataError

from golden import CASES, FIXTURES, golden_case, golden_tokens


def split_items(name: str) -> list[np.ndarray]:
    """The items of a golden case, from the formula and the sizes (independent of our reader)."""
    tokens = golden_tokens(name)
    raw = (FIXTURES / f"{name}.idx").read_bytes()
    n = int.from_bytes(raw[18:26], "little")
    sizes = np.frombuffer(raw, dtype="<i4", count=n, offset=34).astype(np.int64)
    return np.split(tokens, np.cumsum(sizes)[:-1]) if n else []


@pytest.mark.parametrize("name", sorted(CASES))
def test_reads_golden(name):
    case = CASES[name]
    ds = IndexedDataset(golden_case(name))
    assert len(ds) == case["num_documents"]
    assert ds.num_documents == case["num_documents"]
    assert ds.total_tokens == case["tokens"]
    assert ds.dtype == np.dtype(case["dtype"])
    items = split_items(name)
    assert np.array_equal(ds.sizes, [len(x) for x in items])
    assert np.array_equal(ds.doc_idx, np.arange(len(items) + 1))
    expected_pointers = np.concatenate([[0], np.cumsum(ds.sizes[:-1], dtype=np.int64)])
    assert np.array_equal(ds.pointers, expected_pointers * ds.dtype.itemsize)
    for i in sorted({0, len(items) // 2, len(items) - 1}):
        assert np.array_equal(ds[i], items[i])
    assert np.array_equal(ds.items(0, len(ds)), golden_tokens(name))


@pytest.mark.parametrize("name", sorted(CASES))
def test_rewrites_golden_byte_for_byte(name, tmp_path):
    case = CASES[name]
    out = tmp_path / name
    with IndexedDatasetBuilder(out, np.dtype(case["dtype"])) as b:
        for item in split_items(name):
            b.add_document(item)
    assert (tmp_path / f"{name}.idx").read_bytes() == (FIXTURES / f"{name}.idx").read_bytes()
    golden_bin = golden_case(name).with_name(name + ".bin")
    assert (tmp_path / f"{name}.bin").read_bytes() == golden_bin.read_bytes()


def test_views_are_zero_copy_and_read_only():
    ds = IndexedDataset(golden_case("long_docs"))
    item = ds[3]
    assert not item.flags.writeable and not ds.sizes.flags.writeable
    assert not item.flags.owndata
    with pytest.raises(ValueError):
        item[0] = 1
    with pytest.raises(ValueError):
        ds.sizes[0] = 1
    # The view keeps the memory map alive after the dataset object is gone.
    expected = item.copy()
    del ds
    assert np.array_equal(item, expected)


def test_get_offset_length_like_gpt_neox():
    ds = IndexedDataset(golden_case("lognormal_e1"))
    full = ds[7]
    assert np.array_equal(ds.get(7, 5, 10), full[5:15])
    assert np.array_equal(ds.get(7, 5), full[5:])
    assert np.array_equal(ds.get(7, len(full)), full[:0])
    assert np.array_equal(ds[-1], ds[len(ds) - 1])
    with pytest.raises(PythiaDataError, match="outside item 7"):
        ds.get(7, 5, len(full))
    with pytest.raises(IndexError):
        ds[len(ds)]
    # Named as given: it read "item -1 is out of range", an index that is in range.
    with pytest.raises(IndexError, match=f"item {-len(ds) - 1} is out of range"):
        ds[-len(ds) - 1]
    with pytest.raises(IndexError):
        ds.items(3, len(ds) + 1)
    assert len(ds.items(4, 4)) == 0
    assert [len(x) for x in ds[2:5]] == list(ds.sizes[2:5])


def test_builder_dtypes_and_ranges(tmp_path):
    with IndexedDatasetBuilder(tmp_path / "a", "int32") as b:
        b.add_document([1, 2, 70000])
        b.add_document(np.array([5], dtype=np.int8))
        b.add_item([])
        b.add_item(np.array([-3, 4], dtype=np.int64))
        b.end_document()
    ds = IndexedDataset(tmp_path / "a")
    assert ds.dtype == np.int32
    assert [list(ds[i]) for i in range(len(ds))] == [[1, 2, 70000], [5], [], [-3, 4]]
    assert list(ds.doc_idx) == [0, 1, 2, 4]
    b = IndexedDatasetBuilder(tmp_path / "b", np.uint16)
    with pytest.raises(PythiaDataError, match="does not fit dtype uint16"):
        b.add_document([65536])
    with pytest.raises(PythiaDataError, match="does not fit dtype uint16"):
        b.add_document([-1])
    with pytest.raises(PythiaDataError, match="integers"):
        b.add_document([1.5])
    # uint64 ids past int64 (numpy's dtype for [2**63]) were cast to int64 and wrapped: an
    # int64 dataset stored -2**63, and uint16 named the wrapped id.
    with pytest.raises(PythiaDataError, match=f"token {2**63 + 5} does not fit dtype uint16"):
        b.add_document(np.array([1, 2**63 + 5], dtype=np.uint64))
    b64 = IndexedDatasetBuilder(tmp_path / "d", np.int64)
    with pytest.raises(PythiaDataError, match=f"token {2**63} does not fit dtype int64"):
        b64.add_document([2**63])
    b64.add_document(np.array([2**63 - 1], dtype=np.uint64))
    b64.finish()
    assert list(IndexedDataset(tmp_path / "d")[0]) == [2**63 - 1]
    with pytest.raises(PythiaDataError, match="unsupported token dtype"):
        IndexedDatasetBuilder(tmp_path / "c", np.float32)
    assert pd.best_fitting_dtype(50277) == np.uint16
    assert pd.best_fitting_dtype(65500) == np.int32


def test_builder_is_atomic(tmp_path):
    with pytest.raises(RuntimeError):
        with IndexedDatasetBuilder(tmp_path / "x", np.uint16) as b:
            b.add_document([1, 2, 3])
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    # An existing dataset stays intact until the new one is complete.
    with IndexedDatasetBuilder(tmp_path / "x", np.uint16) as b:
        b.add_document([1, 2, 3])
    b = IndexedDatasetBuilder(tmp_path / "x", np.uint16)
    b.add_document([9, 9])
    assert list(IndexedDataset(tmp_path / "x")[0]) == [1, 2, 3]
    b.finish()
    assert list(IndexedDataset(tmp_path / "x")[0]) == [9, 9]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin", "x.idx"]
    with pytest.raises(PythiaDataError, match="already finished"):
        b.add_document([1])


def test_merge_like_gpt_neox(tmp_path):
    a, b = golden_case("toy_e1"), golden_case("zero_len_docs")
    out = pd.merge_datasets(tmp_path / "m", [a, b])
    m, da, db = IndexedDataset(out), IndexedDataset(a), IndexedDataset(b)
    assert len(m) == len(da) + len(db)
    assert np.array_equal(m.sizes, np.concatenate([da.sizes, db.sizes]))
    # GPT-NeoX's merge_file_: doc_idx.extend((offset + other.doc_idx)[1:])
    assert np.array_equal(m.doc_idx, np.concatenate([da.doc_idx, len(da) + db.doc_idx[1:]]))
    assert np.array_equal(
        m.items(0, len(m)),
        np.concatenate([golden_tokens("toy_e1"), golden_tokens("zero_len_docs")]),
    )
    with pytest.raises(PythiaDataError, match="dtypes differ"):
        pd.merge_datasets(tmp_path / "bad", [a, golden_case("int32_tokens")])
    assert not (tmp_path / "bad.bin").exists() and not (tmp_path / "bad.idx").exists()


def shard(prefix, dest, cuts):
    """Cut PREFIX.bin at byte offsets `cuts` into Pythia-style shards under dest/."""
    data = prefix.with_name(prefix.name + ".bin").read_bytes()
    bounds = [0, *cuts, len(data)]
    n = len(bounds) - 1
    dest.mkdir()
    for k in range(n):
        (dest / f"{prefix.name}-{k:05d}-of-{n:05d}.bin").write_bytes(
            data[bounds[k] : bounds[k + 1]]
        )
    shutil.copyfile(prefix.with_name(prefix.name + ".idx"), dest / f"{prefix.name}.idx")
    return dest / prefix.name


def test_sharded_bin_reads_in_place(tmp_path):
    src = golden_case("long_docs")
    # Odd cuts split tokens themselves, as fixed byte counts do.
    prefix = shard(src, tmp_path / "s", [100_001, 300_000, 300_000, 555_555])
    ds, ref = IndexedDataset(prefix), IndexedDataset(src)
    assert ds.is_sharded and len(ds.bin_paths) == 5
    for i in range(len(ref)):
        assert np.array_equal(ds[i], ref[i]), i
    assert np.array_equal(ds.items(0, len(ds)), ref.items(0, len(ref)))
    assert np.array_equal(ds.get(3, 17, 4000), ref.get(3, 17, 4000))


def test_pythia_shard_numbering(tmp_path):
    """Pythia names its shards 0..N as '-of-N' (21 files of '-of-00020'); both numberings read."""
    src = golden_case("long_docs")
    data = src.with_name("long_docs.bin").read_bytes()
    d = tmp_path / "p"
    d.mkdir()
    cuts = [0, 250_001, 500_000, len(data)]
    for k in range(3):
        (d / f"document-{k:05d}-of-00002.bin").write_bytes(data[cuts[k] : cuts[k + 1]])
    shutil.copyfile(src.with_name("long_docs.idx"), d / "document.idx")
    ds = IndexedDataset(d / "document")
    assert len(ds.bin_paths) == 3
    assert np.array_equal(ds.items(0, len(ds)), IndexedDataset(src).items(0, len(ds)))
    (d / "document-00002-of-00002.bin").unlink()
    with pytest.raises(PythiaDataError, match="is shard N missing"):
        IndexedDataset(d / "document")


def test_sharded_missing_or_wrong_shards(tmp_path):
    prefix = shard(golden_case("long_docs"), tmp_path / "s", [200_000, 400_000])
    (tmp_path / "s" / "long_docs-00001-of-00003.bin").unlink()
    with pytest.raises(PythiaDataError, match="shard 1 of .*long_docs is missing"):
        IndexedDataset(prefix)
    prefix = shard(golden_case("long_docs"), tmp_path / "t", [200_000, 400_000])
    p = tmp_path / "t" / "long_docs-00002-of-00003.bin"
    p.write_bytes(p.read_bytes()[:-2])
    with pytest.raises(PythiaDataError, match="3 shards hold"):
        IndexedDataset(prefix)


# --- corrupt files: every one a clear PythiaDataError naming the file ------------------------


@pytest.fixture
def toy(tmp_path):
    for ext in ("idx", "bin"):
        shutil.copyfile(FIXTURES / f"toy_e1.{ext}", tmp_path / f"toy.{ext}")
    return tmp_path / "toy"


def patch(path, offset, data):
    raw = bytearray(path.read_bytes())
    raw[offset : offset + len(data)] = data
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda idx: patch(idx, 0, b"XXIDIDX"), "bad magic"),
        (lambda idx: patch(idx, 9, (2).to_bytes(8, "little")), "version 2"),
        (lambda idx: patch(idx, 17, b"\x06"), "float type"),
        (lambda idx: patch(idx, 17, b"\x07"), "float type"),
        (lambda idx: patch(idx, 17, b"\x09"), "unknown dtype code 9"),
        (lambda idx: idx.write_bytes(idx.read_bytes()[:-3]), "truncated or corrupt"),
        (lambda idx: idx.write_bytes(idx.read_bytes()[:20]), "shorter than the 34-byte"),
        (lambda idx: idx.write_bytes(b""), "shorter than the 34-byte"),
        (lambda idx: patch(idx, 18, (8).to_bytes(8, "little")), "truncated or corrupt"),
        (lambda idx: patch(idx, 34 + 4, (-1).to_bytes(4, "little", signed=True)), "negative size"),
        (lambda idx: patch(idx, 34 + 4, (4).to_bytes(4, "little")), "sizes and pointers disagree"),
        (lambda idx: patch(idx, 34 + 12 * 7 + 8, (9).to_bytes(8, "little")), "doc_idx"),
    ],
)
def test_corrupt_index(toy, mutate, message):
    idx = toy.with_name("toy.idx")
    mutate(idx)
    with pytest.raises(PythiaDataError, match=message) as e:
        IndexedDataset(toy)
    assert "toy.idx" in str(e.value)


def test_bin_does_not_match(toy):
    b = toy.with_name("toy.bin")
    b.write_bytes(b.read_bytes()[:-2])
    with pytest.raises(PythiaDataError, match="toy.bin.*do not belong together"):
        IndexedDataset(toy)
    b.write_bytes(b.read_bytes() + b"\0\0\0\0")
    with pytest.raises(PythiaDataError, match="toy.bin"):
        IndexedDataset(toy)


def test_missing_files(toy):
    toy.with_name("toy.bin").unlink()
    with pytest.raises(FileNotFoundError, match="toy.bin"):
        IndexedDataset(toy)
    with pytest.raises(FileNotFoundError, match="nothing.idx"):
        IndexedDataset(toy.with_name("nothing"))


def test_prefix_may_name_an_extension(toy):
    assert len(IndexedDataset(str(toy) + ".idx")) == len(IndexedDataset(str(toy) + ".bin")) == 7


@pytest.mark.parametrize("sharded", [False, True])
def test_gather(tmp_path, sharded):
    prefix = golden_case("long_docs")
    if sharded:
        prefix = shard(prefix, tmp_path / "s", [123_457, 600_000])
    ds = IndexedDataset(prefix)
    picks = [5, 0, -1, 5, 39, 17]
    tokens, offsets = ds.gather(picks)
    assert tokens.dtype == ds.dtype and offsets.dtype == np.int64
    assert np.array_equal(np.diff(offsets), ds.sizes[picks])
    for k, i in enumerate(picks):
        assert np.array_equal(tokens[offsets[k] : offsets[k + 1]], ds[i])
    assert len(ds.gather([])[0]) == 0
    # An IndexError, as ds[40] raises (`except IndexError` missed it), and still what it was.
    for picks in ([0, 40], [-41, 3]):
        with pytest.raises(IndexError, match="out of range") as refused:
            ds.gather(picks)
        assert isinstance(refused.value, PythiaDataError)
    # Float indices were cast silently (1.5 read item 1); numpy refuses them too.
    with pytest.raises(IndexError, match="must be integers"):
        ds.gather([0, 1.5])
    # 2**64 - 1 wrapped to -1 as int64, and read the last item.
    with pytest.raises(IndexError, match="18446744073709551615 is outside"):
        ds.gather(np.array([0, 2**64 - 1], np.uint64))
    # A 2-D list failed with "'ndarray' object cannot be cast as 'ndarray'".
    for bad in ([[1, 2], [3, 4]], 3, np.zeros((2, 0), np.int64)):
        with pytest.raises(ValueError, match="a 1-D sequence of item indices, got an array of"):
            ds.gather(bad)


def test_item_indices_must_be_integers(toy):
    # ds[1.7] and ds.get(True) were item 1; get(1, True) started at offset 1.
    ds = IndexedDataset(toy)
    for bad in (1.7, True, np.bool_(True), "1", np.float64(1.0)):
        with pytest.raises(TypeError, match="item indices must be integers"):
            ds[bad]
        with pytest.raises(TypeError, match="item indices must be integers"):
            ds.get(bad)
    with pytest.raises(TypeError, match="offsets must be integers"):
        ds.get(1, True)
    with pytest.raises(TypeError, match="lengths must be integers"):
        ds.get(1, 0, 2.0)
    np.testing.assert_array_equal(ds[np.int64(1)], ds[1])
    np.testing.assert_array_equal(ds.get(np.uint8(1), np.int16(1), np.int64(2)), ds[1][1:3])
    # items(0.0, 2) failed in numpy's words ("only integers, slices ...").
    with pytest.raises(TypeError, match="item indices must be integers, not float"):
        ds.items(0.0, 2)
    np.testing.assert_array_equal(ds.items(np.int64(0), np.uint8(2)), ds.items(0, 2))


def test_merge_datasets_onto_an_input_shard_is_refused(tmp_path):
    from pythia_data import merge_datasets

    prefix = shard(golden_case("long_docs"), tmp_path / "s", [100_001, 500_000])
    first = tmp_path / "s" / "long_docs-00000-of-00003.bin"
    before = first.read_bytes()
    with pytest.raises(PythiaDataError, match="would overwrite .*long_docs-00000-of-00003.bin"):
        merge_datasets(first.with_suffix(""), [prefix])
    assert first.read_bytes() == before


def test_a_dataset_reopened_after_its_files_were_replaced_says_so(tmp_path):
    # Spawned DataLoader workers reopen a pickled dataset by name: after the .bin/.idx were
    # rewritten in place (same shape, other tokens) a worker read the new items while the
    # parent's maps still held the old ones, silently.
    import pickle

    from pythia_data import PreshuffledDataset

    def write(base):
        with IndexedDatasetBuilder(tmp_path / "d") as b:
            for i in range(4):
                b.add_document(np.full(3, base + i))

    write(0)
    ds = IndexedDataset(tmp_path / "d")
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(ds))[2], ds[2])
    blobs = [pickle.dumps(ds), pickle.dumps(PreshuffledDataset(ds))]
    write(100)
    for blob in blobs:
        with pytest.raises(PythiaDataError, match="replaced or changed after this dataset"):
            pickle.loads(blob)
    np.testing.assert_array_equal(ds[2], [2, 2, 2])  # the parent still reads what it opened
    again = IndexedDataset(tmp_path / "d")
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(again))[2], [102, 102, 102])


def test_one_builder_fed_from_many_threads(tmp_path):
    # Each engine call runs without the GIL: another thread's call meanwhile failed with
    # "RuntimeError: Already borrowed", even between add_document's item and its boundary.
    import threading

    errors = []
    b = IndexedDatasetBuilder(tmp_path / "t", np.uint16)

    def feed(k):
        doc = np.full(100_000, k, np.int32)  # converted by the engine, the GIL released
        try:
            for _ in range(10):
                b.add_document(doc)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=feed, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    b.finish()
    ds = IndexedDataset(tmp_path / "t")
    assert len(ds) == ds.num_documents == 40
    assert sorted(int(ds[i][0]) for i in range(40)) == sorted(list(range(4)) * 10)
    assert all(len(np.unique(ds[i])) == 1 for i in range(40))  # no item mixes two documents
