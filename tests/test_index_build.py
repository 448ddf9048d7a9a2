"""The index builder against GPT-NeoX v1.0's own outputs (goldens) and, on random cases, against
a numpy reference written here from shared/spec/data-pipeline.md §2."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from pythia_data import (
    GPTDataset,
    IndexedDatasetBuilder,
    PythiaDataError,
    _core,
    build_blended_index,
    build_index,
)
from pythia_data.index import index_paths, num_samples_for, split_num_samples

from golden import CASES, FIXTURES

KINDS = ("doc_idx", "sample_idx", "shuffle_idx")


def golden_files(name: str) -> dict[str, bytes]:
    c = CASES[name]
    base = f"{name}_train_0_indexmap_{c['num_samples']}ns_{c['seq_length']}sl_{c['seed']}s"
    return {k: (FIXTURES / f"{base}_{k}.npy").read_bytes() for k in KINDS}


# --- the reference, straight from the spec ------------------------------------------------


def reference_index(sizes, num_samples, seq_length, seed, separate_last_epoch=False):
    sizes = np.asarray(sizes, dtype=np.int32)
    docs = np.arange(len(sizes), dtype=np.int32)
    tokens = int(sizes.astype(np.int64).sum())
    epochs = 1
    while (epochs * tokens - 1) // seq_length < num_samples:
        epochs += 1
    rng = np.random.RandomState(seed)
    n = (epochs * tokens - 1) // seq_length
    separate = False
    if separate_last_epoch and epochs > 1:
        n_prev = ((epochs - 1) * tokens - 1) // seq_length
        separate = num_samples - n_prev < int(0.80 * ((tokens - 1) // seq_length))
    if separate:
        first = np.tile(docs, epochs - 1)
        rng.shuffle(first)
        last = docs.copy()
        rng.shuffle(last)
        doc_idx = np.concatenate([first, last])
    else:
        doc_idx = np.tile(docs, epochs)
        rng.shuffle(doc_idx)
    sample_idx = np.zeros((n + 1, 2), dtype=np.int32)
    pos, off = 0, 0
    for k in range(1, n + 1):
        rem = seq_length + 1
        while rem != 0:
            avail = int(sizes[doc_idx[pos]]) - off
            rem -= avail
            if rem <= 0:
                off += rem + avail - 1
                rem = 0
            else:
                pos += 1
                off = 0
        sample_idx[k] = (pos, off)
    n_first = n_prev if separate else n
    first = np.arange(n_first, dtype=np.uint32)
    rng.shuffle(first)
    last = np.arange(n_first, n, dtype=np.uint32)
    rng.shuffle(last)
    shuffle_idx = np.concatenate([first, last])
    return doc_idx, sample_idx, shuffle_idx, epochs


def make_dataset(prefix, sizes, dtype=np.uint16):
    with IndexedDatasetBuilder(prefix, dtype) as b:
        for i, n in enumerate(sizes):
            b.add_document((np.arange(n) * 31 + i) % 60000)
    return prefix


# --- goldens ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_index_is_byte_identical(name, tmp_path):
    c = CASES[name]
    # Only the .idx is needed to build: the stored one, no .bin regeneration.
    info = build_index(
        FIXTURES / name,
        num_samples=c["num_samples"],
        seq_length=c["seq_length"],
        seed=c["seed"],
        cache_dir=tmp_path,
    )
    assert not info.reused
    assert info.num_epochs == c["num_epochs"]
    assert info.dataset_len == c["dataset_len"]
    assert info.tokens_per_epoch == c["tokens"]
    want = golden_files(name)
    for kind, path in zip(KINDS, info.paths, strict=True):
        assert path.name.startswith(f"{name}_train_0_indexmap_")
        assert path.read_bytes() == want[kind], f"{name}: {kind} differs from GPT-NeoX's"


def test_golden_index_from_gpt_neox_is_reused(tmp_path):
    # A cache GPT-NeoX wrote (no record of ours beside it) is reused as is.
    c = CASES["lognormal_e3"]
    for f in FIXTURES.glob("lognormal_e3_train_0_*"):
        shutil.copy(f, tmp_path / f.name)
    info = build_index(
        FIXTURES / "lognormal_e3",
        num_samples=c["num_samples"],
        seq_length=c["seq_length"],
        seed=c["seed"],
        cache_dir=tmp_path,
    )
    assert info.reused and info.num_epochs == c["num_epochs"]


# --- random cases vs the reference ----------------------------------------------------------


def random_cases(count):
    rng = np.random.default_rng(20240601)
    for i in range(count):
        d = int(rng.integers(1, 60))
        sizes = rng.integers(0, 40, size=d)
        if i % 4 == 0:
            sizes[rng.integers(0, d, size=max(1, d // 3))] = 0
        if sizes.sum() == 0:
            sizes[0] = 1
        seq = int(rng.integers(1, 24))
        ns = int(rng.integers(0, 3 * sizes.sum() // seq + 3))
        seed = int(rng.integers(0, 2**32))
        yield i, sizes.astype(np.int32), ns, seq, seed


@pytest.mark.parametrize("separate", [False, True])
def test_random_cases_match_reference(tmp_path, separate):
    for i, sizes, ns, seq, seed in random_cases(60):
        info = _core.build_index_from_sizes(
            sizes, tmp_path / f"c{i}", "train_0", ns, seq, seed, None, separate
        )
        doc_idx, sample_idx, shuffle_idx, epochs = reference_index(sizes, ns, seq, seed, separate)
        assert info["num_epochs"] == epochs
        got = [np.load(info[f"{k}_path"]) for k in KINDS]
        for kind, g, w in zip(KINDS, got, (doc_idx, sample_idx, shuffle_idx), strict=True):
            assert g.dtype == w.dtype, (i, kind)
            np.testing.assert_array_equal(g, w, err_msg=f"case {i} {kind}")


def test_separate_last_epoch_changes_order_only_when_asked(tmp_path):
    # 3 epochs where the last contributes little: Megatron-LM splits it, GPT-NeoX does not.
    sizes = np.full(50, 20, dtype=np.int32)  # 1000 tokens/epoch, 99 samples of 10 per epoch
    ns = 205
    default = build_index(
        make_dataset(tmp_path / "d", sizes), num_samples=ns, seq_length=10, seed=3
    )
    assert not default.separate_last_epoch and default.num_epochs == 3
    sle = build_index(
        tmp_path / "d",
        num_samples=ns,
        seq_length=10,
        seed=3,
        separate_last_epoch=True,
        cache_dir=tmp_path / "sle",
    )
    assert sle.separate_last_epoch
    d0, d1 = np.load(default.doc_idx_path), np.load(sle.doc_idx_path)
    assert not np.array_equal(d0, d1)
    # Megatron-LM's last epoch is one whole copy of the documents, shuffled alone.
    assert sorted(d1[-50:].tolist()) == list(range(50))
    # The default index refuses to be confused with it.
    with pytest.raises(PythiaDataError, match="other parameters"):
        build_index(
            tmp_path / "d", num_samples=ns, seq_length=10, seed=3, cache_dir=tmp_path / "sle"
        )


def test_dataset_on_disk_uses_its_idx_and_gpt_neox_names(tmp_path):
    sizes = np.array([5, 0, 17, 3, 9, 1], dtype=np.int32)
    prefix = make_dataset(tmp_path / "pile", sizes)
    info = build_index(prefix, num_samples=12, seq_length=4, seed=1234)
    assert info.doc_idx_path == tmp_path / "pile_train_0_indexmap_12ns_4sl_1234s_doc_idx.npy"
    assert info.paths == index_paths(prefix, "train_0", 12, 4, 1234)
    want = reference_index(sizes, 12, 4, 1234)
    for path, w in zip(info.paths, want[:3], strict=True):
        np.testing.assert_array_equal(np.load(path), w)
    assert info.sample_idx_dtype == "int32" and info.shuffle_idx_dtype == "uint32"


# --- cache reuse and refusal ----------------------------------------------------------------


def test_reuse_and_refusal(tmp_path):
    a = make_dataset(tmp_path / "a" / "data", [7, 3, 11, 4])
    first = build_index(a, num_samples=5, seq_length=3, seed=9)
    stamps = [p.stat().st_mtime_ns for p in first.paths]
    again = build_index(a, num_samples=5, seq_length=3, seed=9)
    assert again.reused and [p.stat().st_mtime_ns for p in again.paths] == stamps
    # Same file names, other data (another dataset with the same name, same cache dir).
    b = make_dataset(tmp_path / "b" / "data", [2, 9, 1, 5, 8])
    with pytest.raises(PythiaDataError, match="other parameters or from other data"):
        build_index(b, num_samples=5, seq_length=3, seed=9, cache_dir=tmp_path / "a")
    # The same sizes in another order: every shape matches, only our record tells.
    c = make_dataset(tmp_path / "c" / "data", [11, 4, 7, 3])
    with pytest.raises(PythiaDataError, match="other parameters") as refused:
        build_index(c, num_samples=5, seq_length=3, seed=9, cache_dir=tmp_path / "a")
    # The field that differs named (both records were printed whole), and the flag as spelt.
    message = str(refused.value)
    assert "differs: sizes_fnv1a: recorded " in message and "seed" not in message, message
    assert "rebuild it with --overwrite (overwrite=True in Python)" in message
    # --overwrite alone would destroy the other dataset's index: its own folder is named too.
    assert "give each dataset its own --cache-dir" in message
    rebuilt = build_index(
        b, num_samples=5, seq_length=3, seed=9, cache_dir=tmp_path / "a", overwrite=True
    )
    assert not rebuilt.reused
    np.testing.assert_array_equal(
        np.load(rebuilt.doc_idx_path), reference_index([2, 9, 1, 5, 8], 5, 3, 9)[0]
    )


def test_truncated_cache_file_is_a_clear_error(tmp_path):
    a = make_dataset(tmp_path / "data", [7, 3, 11, 4, 9])
    info = build_index(a, num_samples=6, seq_length=3, seed=1)
    raw = info.sample_idx_path.read_bytes()
    info.sample_idx_path.write_bytes(raw[:-5])
    with pytest.raises(PythiaDataError, match=r"sample_idx\.npy.*truncated"):
        build_index(a, num_samples=6, seq_length=3, seed=1)


def test_partial_cache_is_rebuilt(tmp_path):
    a = make_dataset(tmp_path / "data", [7, 3, 11, 4, 9])
    info = build_index(a, num_samples=6, seq_length=3, seed=1)
    want = info.shuffle_idx_path.read_bytes()
    info.shuffle_idx_path.unlink()
    again = build_index(a, num_samples=6, seq_length=3, seed=1)
    assert not again.reused and again.shuffle_idx_path.read_bytes() == want
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"


# --- bad input ------------------------------------------------------------------------------


def test_bad_input(tmp_path):
    a = make_dataset(tmp_path / "data", [3, 4])
    with pytest.raises(PythiaDataError, match="seed 4294967296 is out of range"):
        build_index(a, num_samples=2, seq_length=2, seed=2**32)
    with pytest.raises(PythiaDataError, match="out of range"):
        build_index(a, num_samples=2, seq_length=2, seed=-1)
    # Opening one said "can't convert negative int to unsigned", or "index file not found".
    for seed in (-1, 2**32, 2**64):
        with pytest.raises(PythiaDataError, match=f"seed {seed} is out of range"):
            GPTDataset(a, num_samples=2, seq_length=2, seed=seed)
    empty = make_dataset(tmp_path / "empty", [0, 0, 0])
    with pytest.raises(PythiaDataError, match=r"empty\.idx.*no tokens"):
        build_index(empty, num_samples=2, seq_length=2, seed=1)
    with pytest.raises(FileNotFoundError, match="missing.idx"):
        build_index(tmp_path / "missing", num_samples=2, seq_length=2, seed=1)
    with pytest.raises(PythiaDataError, match="outside"):
        build_index(a, num_samples=2, seq_length=2, seed=1, documents=(1, 5))


@pytest.mark.parametrize(
    "bad",
    [
        {"seed": 5.9},
        {"seed": True},
        {"seq_length": 2.5},
        {"num_samples": 2.7},
        {"train_iters": 1.5},
    ],
)
def test_parameters_that_are_no_integers_are_refused(tmp_path, bad):
    # int() read seed 5.9 as 5 and True as 1: another index than the one asked for, built or
    # opened without a word.
    a = make_dataset(tmp_path / "data", [3, 4])
    kwargs = {"num_samples": 2, "seq_length": 2, "seed": 5, **bad}
    if "train_iters" in bad:
        del kwargs["num_samples"]
    name = next(iter(bad))
    with pytest.raises(TypeError, match=f"{name} must be an integer"):
        build_index(a, **kwargs)
    with pytest.raises(TypeError, match=f"{name} must be an integer"):
        build_blended_index([a], [1.0], **kwargs)
    with pytest.raises(TypeError, match=f"{name} must be an integer"):
        GPTDataset(a, build=True, **kwargs)
    assert not list(tmp_path.glob("*_idx.npy"))


# --- Pythia's numbers, blending -------------------------------------------------------------


def test_pythia_sample_counts():
    assert num_samples_for(143_000, 1024) == 147_164_160 == math.ceil(143_000 * 1024 * 1.0 * 1.005)
    assert split_num_samples("valid") == 41_165
    assert split_num_samples("test") == 10_292


def test_pythia_scale_plan_without_building(tmp_path):
    # The standard Pile's shape: E = 1 and N = 162,164,736 when T = 332,113,... tokens give it;
    # here only the plan arithmetic is checked on a synthetic size vector of that total.
    sizes = np.full(1000, 2048, dtype=np.int32)
    info = _core.build_index_from_sizes(sizes, tmp_path / "p", "train_0", 999, 2048, 1234)
    assert info["num_epochs"] == 1 and info["num_index_samples"] == (1000 * 2048 - 1) // 2048


def test_blend_matches_gpt_neox_rule(tmp_path):
    a = make_dataset(tmp_path / "a", np.full(40, 30))
    b = make_dataset(tmp_path / "b", np.full(25, 17))
    blend = build_blended_index([a, b], [3.0, 1.0], num_samples=100, seq_length=8, seed=5)
    want_counts = [math.ceil(100 * w * 1.005) for w in (0.75, 0.25)]
    assert [c.num_samples for c in blend.components] == want_counts
    assert blend.weights == (0.75, 0.25)
    assert blend.size == sum(c.dataset_len for c in blend.components)
    d_idx, s_idx = _core.blending_indices(list(blend.weights), blend.size)
    counts = [0, 0]
    for s in range(blend.size):
        errs = [w * max(s, 1) - counts[d] for d, w in enumerate(blend.weights)]
        d = max(range(2), key=lambda i: (errs[i], -i))
        assert d_idx[s] == d and s_idx[s] == counts[d], s
        counts[d] += 1


def test_blend_components_are_named_as_gpt_neox_names_them(tmp_path):
    # GPT-NeoX's build_weighted_datasets names component i "train_{i}" ("valid_{i}", ...): with
    # "train_0" for all, GPT-NeoX did not find our second component's index (nor we its).
    a = make_dataset(tmp_path / "a", np.full(40, 30))
    b = make_dataset(tmp_path / "b", np.full(25, 17))
    c = make_dataset(tmp_path / "c", np.full(9, 11))
    names = {"train_0": "train", "valid_0": "valid", "mix": "mix"}
    for name, stem in names.items():
        blend = build_blended_index(
            [a, b, c], [1.0, 2.0, 1.0], name=name, num_samples=50, seq_length=8, seed=5
        )
        for i, (comp, prefix) in enumerate(zip(blend.components, "abc", strict=True)):
            assert comp.name == f"{stem}_{i}"
            want = f"{prefix}_{stem}_{i}_indexmap_{comp.num_samples}ns_8sl_5s_doc_idx.npy"
            assert comp.doc_idx_path == tmp_path / want


def test_meta_record_is_json(tmp_path):
    a = make_dataset(tmp_path / "data", [7, 3, 11])
    info = build_index(a, num_samples=4, seq_length=3, seed=2)
    meta = json.loads(
        info.doc_idx_path.with_name(
            info.doc_idx_path.name.replace("_doc_idx.npy", "_meta.json")
        ).read_text()
    )
    assert meta["seed"] == 2 and meta["num_epochs"] == info.num_epochs


def test_an_unreadable_meta_record_is_not_taken_for_gpt_neox_files(tmp_path):
    # Only a missing record means "built by GPT-NeoX itself"; a binary one was reused too.
    a = make_dataset(tmp_path / "data", [7, 3, 11])
    info = build_index(a, num_samples=4, seq_length=3, seed=2)
    meta = info.doc_idx_path.with_name(info.doc_idx_path.name.replace("_doc_idx.npy", "_meta.json"))
    meta.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(PythiaDataError, match=f"its record {meta} cannot be read"):
        build_index(a, num_samples=4, seq_length=3, seed=2)
    meta.unlink()
    assert build_index(a, num_samples=4, seq_length=3, seed=2).reused


def test_valid_split_rows_equal_training_rows(tmp_path):
    # Spec §4: GPT-NeoX's valid_0 for Pythia uses the same files and seed; while both requests
    # fit in one epoch its three arrays are the training ones, so its rows are the first rows.
    prefix = make_dataset(tmp_path / "d", np.random.default_rng(1).integers(1, 400, 300))
    train = build_index(prefix, name="train_0", num_samples=900, seq_length=32, seed=1234)
    valid = build_index(prefix, name="valid_0", num_samples=41, seq_length=32, seed=1234)
    assert train.num_epochs == valid.num_epochs == 1
    assert valid.doc_idx_path.name.startswith("d_valid_0_indexmap_41ns_32sl_1234s")
    for a, b in zip(train.paths, valid.paths, strict=True):
        np.testing.assert_array_equal(np.load(a), np.load(b))


def test_interrupted_build_leaves_nothing(tmp_path):
    # Ctrl-C reaches the build through its progress callback; any exception there stops it.
    prefix = make_dataset(tmp_path / "d", np.full(3000, 40))

    def stop_in_sample_idx(stage, done, total):
        if stage == "sample_idx":
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        _core.build_index(
            tmp_path / "d.idx", prefix, "train_0", 5000, 16, 1, progress=stop_in_sample_idx
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.bin", "d.idx"]
    info = build_index(prefix, num_samples=5000, seq_length=16, seed=1, progress=True)
    assert not info.reused


def test_a_build_stopped_while_doc_idx_is_shuffled_returns(tmp_path):
    # doc_idx's draws come from a second thread through a channel of 4 chunks of 2^20: a stop
    # after the first chunk left that thread blocked on the full channel, and the build waited
    # for it for ever (build-index hung on Ctrl-C or SIGTERM). Run apart, so a hang fails.
    import subprocess
    import sys

    # 2,000 documents of one token, rows of 2,000 tokens: doc_idx holds 5,001 epochs, ten
    # million entries (ten chunks), for 5,000 samples.
    make_dataset(tmp_path / "d", np.full(2000, 1))
    script = f"""
import sys
from pythia_data import _core

def stop_in_doc_idx(stage, done, total):
    if stage == "doc_idx" and done > 0:
        raise RuntimeError("stop")

try:
    _core.build_index({str(tmp_path / "d.idx")!r}, {str(tmp_path / "d")!r}, "train_0", 5000,
                      2000, 1, progress=stop_in_doc_idx)
except RuntimeError as e:
    print("stopped:", e)
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    try:
        r = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the build stopped during doc_idx never returned")
    assert r.returncode == 0 and r.stdout == "stopped: stop\n", (r.stdout, r.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.bin", "d.idx"]


def test_corrupt_idx_is_a_clear_error(tmp_path):
    make_dataset(tmp_path / "d", [5, 6, 7])
    idx = tmp_path / "d.idx"
    raw = bytearray(idx.read_bytes())
    (tmp_path / "t.idx").write_bytes(raw[:-3])
    with pytest.raises(PythiaDataError, match=r"t\.idx.*truncated"):
        build_index(tmp_path / "t", num_samples=3, seq_length=2, seed=1)
    raw[34:38] = (-4).to_bytes(4, "little", signed=True)
    (tmp_path / "n.idx").write_bytes(raw)
    with pytest.raises(PythiaDataError, match=r"n\.idx.*negative size -4"):
        build_index(tmp_path / "n", num_samples=3, seq_length=2, seed=1)
    (tmp_path / "m.idx").write_bytes(b"not an index at all, not at all, no" * 3)
    with pytest.raises(PythiaDataError, match=r"m\.idx.*bad magic"):
        build_index(tmp_path / "m", num_samples=3, seq_length=2, seed=1)


def test_reuse_removes_temporaries_of_killed_builds(tmp_path):
    # A build killed by SIGKILL or SIGTERM (a job's time limit) while an index it was rebuilding
    # was already in place left hidden `.NAME.tmp-PID` files as large as the index: a later run
    # reused the index and kept them for good.
    prefix = make_dataset(tmp_path / "d", [7, 3, 11, 4, 9])
    info = build_index(prefix, num_samples=6, seq_length=3, seed=1)
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())  # no process has this PID
    stale = [p.with_name(f".{p.name}.tmp-{pid_max + 1}") for p in info.paths]
    ours = info.doc_idx_path.with_name(f".{info.doc_idx_path.name}.tmp-{os.getpid()}")
    for p in [*stale, ours]:
        p.write_bytes(b"half an array")
    assert build_index(prefix, num_samples=6, seq_length=3, seed=1).reused
    assert not any(p.exists() for p in stale)
    assert ours.exists()  # a running process's temporary is its own


def test_temporaries_of_builds_on_other_hosts_are_left_alone(tmp_path):
    # A job on another host sharing the folder, building the same index: its PIDs cannot be
    # seen from here, so only age tells its temporaries from a killed run's.
    prefix = make_dataset(tmp_path / "d", [7, 3, 11, 4, 9])
    info = build_index(prefix, num_samples=6, seq_length=3, seed=1)
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    ours = _core.shared_temp_path(info.doc_idx_path)
    host = ours.name.split("-", 2)[2].rsplit("-", 1)[0]
    assert ours.name == f".{info.doc_idx_path.name}.tmp-{os.getpid()}-{host}-" + ours.name[-16:]
    foreign = [p.with_name(f".{p.name}.tmp-{pid_max + 1}-other-host-{7:016x}") for p in info.paths]
    old_foreign = foreign[0].with_name(foreign[0].name.replace("-other-", "-old-"))
    dead_here = foreign[0].with_name(foreign[0].name.replace("other-host", host))
    for p in [*foreign, old_foreign, dead_here]:
        p.write_bytes(b"half an array")
    two_days_ago = time.time() - 2 * 86400
    os.utime(old_foreign, (two_days_ago, two_days_ago))
    assert build_index(prefix, num_samples=6, seq_length=3, seed=1).reused
    assert build_index(prefix, num_samples=6, seq_length=3, seed=1, overwrite=True)
    assert all(p.exists() for p in foreign)
    assert not old_foreign.exists()  # written two days ago: no build runs that long
    assert not dead_here.exists()  # this host's, and its process is gone
