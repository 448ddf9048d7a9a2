"""The PyTorch loader yields GPT-NeoX's order for any data-parallel layout, resumably."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pythia_data import GPTDataset  # noqa: E402
from pythia_data.torch_data import GPTNeoXBatchSampler, TorchRowDataset, make_data_loader  # noqa: E402

from golden import CASES, FIXTURES, golden_case  # noqa: E402


def dataset():
    c = CASES["lognormal_e1"]
    return GPTDataset(
        golden_case("lognormal_e1"),
        num_samples=c["num_samples"],
        seq_length=c["seq_length"],
        seed=c["seed"],
        cache_dir=FIXTURES,
    )


def gpt_neox_order(num_rows, micro, rank, world, gas, start_step):
    """GPT-NeoX v1.0's DistributedBatchSampler over a SequentialSampler, written out: batches
    of micro·world consecutive indices (drop_last), rank r keeps [r·micro, (r+1)·micro);
    resuming at iteration i skips i·gas of them."""
    per = micro * world
    out = []
    for m in range(num_rows // per):
        batch = list(range(m * per, (m + 1) * per))
        out.append(batch[rank * micro : (rank + 1) * micro])
    full_steps = num_rows // (per * gas)
    return out[start_step * gas : full_steps * gas]


@pytest.mark.parametrize("world,micro,gas", [(1, 16, 1), (2, 8, 2), (4, 4, 4), (3, 5, 2)])
def test_sampler_matches_distributed_batch_sampler(world, micro, gas):
    n = len(dataset())
    for rank in range(world):
        for start in (0, 3):
            got = list(GPTNeoXBatchSampler(n, micro, rank, world, gas, start_step=start))
            assert got == gpt_neox_order(n, micro, rank, world, gas, start)


def test_loader_yields_the_rows_of_each_step_across_ranks():
    ds = dataset()
    world, micro, gas = 2, 4, 2
    b = world * micro * gas
    loaders = [
        make_data_loader(ds, micro, r, world, gas, start_step=5, end_step=8) for r in range(world)
    ]
    per_rank = [list(dl) for dl in loaders]
    assert all(len(p) == 3 * gas for p in per_rank)
    for s, step in enumerate(range(5, 8)):
        want = ds.batch(step, b, np.int64)
        got = torch.cat(
            [per_rank[r][s * gas + m] for m in range(gas) for r in range(world)]
        ).numpy()
        np.testing.assert_array_equal(got, want)
        assert per_rank[0][s * gas].dtype == torch.int64


def test_rows_reach_torch_without_a_copy():
    ds = TorchRowDataset(dataset(), dtype=None)
    rows = dataset()
    filled = []  # the arrays the engine filled, as the loader got them
    engine_rows = rows.rows
    rows.rows = lambda *a, **kw: filled.append(engine_rows(*a, **kw)) or filled[-1]
    batch = next(iter(make_data_loader(rows, micro_batch_size=8, start_step=1, dtype=None)))
    assert batch.shape == (8, 513) and len(filled) == 1
    np.testing.assert_array_equal(batch.numpy(), dataset().rows(8, 16))
    # The tensor wraps the array the engine filled (a tensor's own .numpy() always shares its
    # memory, so only the engine's array tells a copy): writing through one shows in the other.
    assert np.shares_memory(batch.numpy(), filled[0])
    batch[0, 0] = 12345
    assert filled[0][0, 0] == 12345
    np.testing.assert_array_equal(ds[8].numpy(), dataset()[8])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_plain_data_loader_over_the_rows(num_workers):
    # DataLoader's own batching (batch_size, any sampler, default_collate) failed at the first
    # batch: __getitems__ gave one tensor where collate_fn takes a list of rows.
    rows = dataset()
    ds = TorchRowDataset(rows)
    order = [7, 3, 4, 5, 0, 9, 1, 2]
    loader = torch.utils.data.DataLoader(ds, batch_size=4, sampler=order, num_workers=num_workers)
    got = torch.cat(list(loader)).numpy()
    np.testing.assert_array_equal(got, rows.rows(0, 10, np.int64)[order])
    shuffled = next(iter(torch.utils.data.DataLoader(ds, batch_size=3, shuffle=True)))
    assert shuffled.shape == (3, rows.seq_length + 1) and shuffled.dtype == torch.int64
    # Negative indices count from the end, as for the rows themselves.
    np.testing.assert_array_equal(ds[-1].numpy(), rows[-1])
    np.testing.assert_array_equal(torch.stack(ds.__getitems__([-2, -1])).numpy(), rows[-2:])


def test_rows_read_in_place_from_a_mapped_file_give_writable_tensors(tmp_path):
    # A tensor over the read-only mapped .bin killed the process at its first in-place write.
    from pythia_data import IndexedDatasetBuilder, PreshuffledDataset

    rows = np.arange(6 * 9, dtype=np.uint16).reshape(6, 9)
    with IndexedDatasetBuilder(tmp_path / "p", np.uint16) as b:
        for row in rows:
            b.add_document(row)
    pre = PreshuffledDataset(tmp_path / "p")
    batch = next(iter(make_data_loader(pre, micro_batch_size=4, dtype=None)))
    assert batch.dtype == torch.uint16
    np.testing.assert_array_equal(batch.numpy(), rows[:4])
    batch[0, 0] = 1  # in place, as a training script may (masking, shifting)
    assert int(batch[0, 0]) == 1 and pre.rows(0, 1)[0][0] == 0  # the file is untouched
    single = TorchRowDataset(pre, dtype=None)[5]
    single[0] = 7
    assert pre.rows(5, 6)[0][0] == rows[5, 0]


def test_forked_workers_after_the_parent_used_the_engine():
    # The parent assembles a batch on all cores first; forked DataLoader workers must still
    # work (rayon's threads do not survive fork) and yield the same rows in the same order.
    ds = dataset()
    ds.batch(0, 64)
    loader = make_data_loader(ds, 64, 0, 1, 1, start_step=2, end_step=4, num_workers=2)
    loader.timeout = 20  # a hung worker fails the test instead of hanging it
    got = torch.cat(list(loader)).numpy()
    np.testing.assert_array_equal(got, ds.rows(128, 256, np.int64))


def test_data_loader_workers_started_with_spawn(tmp_path):
    # spawn / forkserver workers (macOS; Linux from Python 3.14) receive the dataset pickled:
    # "cannot pickle 'pythia_data._core.IndexedDataset' object" before datasets could be.
    import pickle

    from pythia_data import BlendedDataset, PreshuffledDataset

    ds = dataset()
    again = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(again.rows(0, len(again)), ds.rows(0, len(ds)))
    blend = pickle.loads(pickle.dumps(BlendedDataset([ds, ds], [1, 2])))
    np.testing.assert_array_equal(blend.rows(0, 5), BlendedDataset([ds, ds], [1, 2]).rows(0, 5))
    from pythia_data.preshuffle import export_preshuffled

    pre = PreshuffledDataset(export_preshuffled(ds, tmp_path / "pre", 8))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(pre)).rows(0, 8), pre.rows(0, 8))
    loader = make_data_loader(ds, micro_batch_size=2, end_step=3, num_workers=2)
    loader.multiprocessing_context = "spawn"
    got = torch.cat(list(loader))
    want = torch.from_numpy(ds.rows(0, len(got), np.int64))
    assert torch.equal(got, want)


def test_negative_steps_are_refused_up_front():
    # start_step=-1 yielded rows [-2, -1] and one step too many, failing only at the first batch.
    for kwargs in ({"start_step": -1}, {"end_step": -2}):
        with pytest.raises(ValueError, match="must be 0 or more"):
            GPTNeoXBatchSampler(1000, 2, **kwargs)
    with pytest.raises(ValueError, match="must be 0 or more"):
        make_data_loader(dataset(), 16, start_step=-1)


def test_steps_past_the_index_are_refused_up_front():
    # end_step=1000 stopped quietly after the steps there were; start_step=1000 gave an empty
    # loader.
    ds = dataset()  # 5,639 rows: 352 full steps of 16, 0..351
    assert len(ds) // 16 == 352
    for kwargs in ({"start_step": 350, "end_step": 1000}, {"start_step": 353}):
        with pytest.raises(ValueError, match="hold steps 0..351 of 16 rows") as e:
            make_data_loader(ds, 16, **kwargs)
        assert "at most 352" in str(e.value)
    with pytest.raises(ValueError, match="hold no full step of 6,000 rows"):
        GPTNeoXBatchSampler(len(ds), 6000, start_step=1)
    with pytest.raises(ValueError, match="end_step 2 is before start_step 3"):
        GPTNeoXBatchSampler(len(ds), 16, start_step=3, end_step=2)
    # The last steps, and a resume after the last step, are what the rows hold.
    assert len(make_data_loader(ds, 16, start_step=350, end_step=352)) == 2
    assert len(make_data_loader(ds, 16, start_step=352)) == 0


def test_steps_must_be_integers():
    # ds.batch(1.5) was step 1, ds.batch("3") step 3, checkpoint_rows(2.7) range(0, 32).
    ds = dataset()
    for bad in (1.5, "3", True, 2.0):
        with pytest.raises(TypeError, match="must be an integer"):
            ds.batch(bad, 4)
        with pytest.raises(TypeError, match="must be an integer"):
            ds.checkpoint_rows(bad, 4)
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        ds.batch(1, 4.0)
    with pytest.raises(TypeError, match="end_step must be an integer"):
        ds.batches(0, 1.0, 4)
    np.testing.assert_array_equal(ds.batch(np.int64(3), np.uint8(4)), ds.rows(12, 16))


def test_sampler_steps_and_ranks_must_be_integers():
    # start_step=True was step 1; 1.5 failed only when iterated; rank=True was rank 1.
    for bad in (True, 1.5):
        with pytest.raises(TypeError, match="start_step must be an integer"):
            GPTNeoXBatchSampler(1000, 2, start_step=bad)
    with pytest.raises(TypeError, match="rank must be an integer"):
        dataset().data_parallel_rows(0, True, 2, 4, 16)
    # These failed only when iterated (or at len), in range's words for floats.
    for what, kw in (
        ("micro_batch_size", dict(micro_batch_size=2.0)),
        ("micro_batch_size", dict(micro_batch_size=True)),
        ("gradient_accumulation_steps", dict(micro_batch_size=2, gradient_accumulation_steps=2.0)),
        ("rank", dict(micro_batch_size=2, rank=True, world_size=2)),
        ("world_size", dict(micro_batch_size=2, world_size=2.0)),
    ):
        with pytest.raises(TypeError, match=f"{what} must be an integer"):
            GPTNeoXBatchSampler(1000, **kw)
    for bad in (1000.0, True):  # failed at len() or the first batch, or was one row
        with pytest.raises(TypeError, match="num_rows must be an integer"):
            GPTNeoXBatchSampler(bad, 2)
    with pytest.raises(ValueError, match="num_rows must be 0 or more"):
        GPTNeoXBatchSampler(-8, 2)
    numpy_ints = GPTNeoXBatchSampler(1000, np.int64(2), np.int32(1), np.uint8(2), np.int16(2))
    assert list(numpy_ints)[:2] == [[2, 3], [6, 7]]


def test_datasets_opened_by_a_relative_name_are_reopened_from_anywhere(tmp_path, monkeypatch):
    # Pickled by a relative name, a dataset unpickled in another working directory (a script
    # that changed directory before its spawned workers started) opened the files found there:
    # other data, silently.
    import pickle

    from pythia_data import IndexedDataset, IndexedDatasetBuilder, PreshuffledDataset

    for folder, first in (("here", 1), ("there", 100)):
        with IndexedDatasetBuilder(tmp_path / folder / "d", np.uint16) as b:
            for k in range(3):
                b.add_document(np.arange(first + k, first + k + 5, dtype=np.uint16))
        GPTDataset(tmp_path / folder / "d", num_samples=4, seq_length=2, build=True)
    monkeypatch.chdir(tmp_path / "here")
    opened = (
        IndexedDataset("d"),
        PreshuffledDataset("d"),
        GPTDataset("d", num_samples=4, seq_length=2),
    )
    blobs = [pickle.dumps(x) for x in opened]
    monkeypatch.chdir(tmp_path / "there")
    for before, blob in zip(opened, blobs, strict=True):
        after = pickle.loads(blob)
        if isinstance(after, IndexedDataset):
            np.testing.assert_array_equal(after.items(0, 3), before.items(0, 3))
        else:
            np.testing.assert_array_equal(after.rows(0, 3), before.rows(0, 3))
