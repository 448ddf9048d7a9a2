"""`pythia-data info / merge / unshard / verify` end to end."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_indexed import shard

from pythia_data import IndexedDataset
from pythia_data.cli import main

from golden import golden_case, golden_tokens


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_info_figures():
    code, out = run("info", golden_case("zero_len_docs"), "--json")
    assert code == 0
    d = json.loads(out)
    ds = IndexedDataset(golden_case("zero_len_docs"))
    assert d["items"] == 11 and d["tokens"] == 31 and d["dtype"] == "uint16"
    assert d["sizes"]["empty_items"] == int((ds.sizes == 0).sum()) > 0
    assert d["sizes"]["max"] == int(ds.sizes.max())
    code, out = run("info", golden_case("zero_len_docs"))
    assert code == 0 and "31" in out and "uint16" in out


def test_info_shards(tmp_path):
    prefix = shard(golden_case("long_docs"), tmp_path / "s", [300_000])
    code, out = run("info", prefix)
    assert code == 0 and "2 shards" in out


def test_info_subsets(tmp_path):
    src = golden_case("toy_e1")
    for ext in ("bin", "idx"):
        shutil.copyfile(src.with_name(f"toy_e1.{ext}"), tmp_path / f"t.{ext}")
    np.save(tmp_path / "t.subsets.npy", np.array([0, 1, 1, 0, 1, 1, 1], dtype=np.uint16))
    (tmp_path / "t.subsets.json").write_text(
        json.dumps({"key": "meta.pile_set_name", "names": ["Github", "Pile-CC"]})
    )
    code, out = run("info", tmp_path / "t", "--json")
    assert json.loads(out)["subsets"] == {"Github": 2, "Pile-CC": 5}


def test_info_of_a_file_beside_a_dataset_and_of_half_its_subsets(tmp_path):
    test_info_subsets(tmp_path)  # writes tmp_path / "t", with subsets
    code, out = run("info", tmp_path / "t", "--json")
    # A tab-completed name of a file beside the dataset means the dataset: it read
    # "t.subsets.json.idx: No such file or directory".
    for beside in ("t.subsets.json", "t.subsets.npy", "t.shard.json", "t.bin"):
        code, named = run("info", tmp_path / beside, "--json")
        assert code == 0 and named == out, named
    # With one of the two label files gone, no subsets can be shown: said, not silent.
    (tmp_path / "t.subsets.npy").unlink()
    code, out = run("info", tmp_path / "t")
    assert code == 0 and "documents per subset" not in out, out
    assert (
        f"note: {tmp_path / 't'}.subsets.json is here without {tmp_path / 't'}.subsets.npy, "
        "so no subsets are shown" in out
    )
    # No such dataset beside: the name is read as given.
    code, out = run("info", tmp_path / "u.subsets.json")
    assert code == 1 and f"{tmp_path / 'u.subsets.json'}.idx" in out, out


def test_outputs_named_like_files_beside_a_dataset_are_new_prefixes(tmp_path):
    # Reading "t.subsets.json" means dataset t; writing to it must not mean t (which it would
    # overwrite): a new prefix may end in anything.
    src = golden_case("toy_e1")
    for ext in ("bin", "idx"):
        shutil.copyfile(src.with_name(f"toy_e1.{ext}"), tmp_path / f"t.{ext}")
    before = sha256(tmp_path / "t.bin")
    code, out = run("merge", tmp_path / "t.subsets.json", tmp_path / "t", tmp_path / "t")
    assert code == 0, out
    assert sha256(tmp_path / "t.bin") == before
    assert (tmp_path / "t.subsets.json.bin").stat().st_size == 2 * (
        tmp_path / "t.bin"
    ).stat().st_size


def _whole_array_sizes(sizes: np.ndarray) -> dict:
    """What `info` printed when it took its figures from whole-array numpy calls."""
    q = np.percentile(sizes, [50, 99])
    return {
        "min": int(sizes.min()),
        "mean": float(sizes.mean(dtype=np.float64)),
        "median": float(q[0]),
        "p99": float(q[1]),
        "max": int(sizes.max()),
        "empty_items": int(np.count_nonzero(sizes == 0)),
    }


def test_info_figures_read_in_chunks_are_numpys_whole_array_ones(tmp_path, monkeypatch):
    # info held ~9 bytes per item at once (a sorted copy for np.percentile, a mask, the
    # subset codes widened to int64): 1.9 GB for the Pile. It now reads in chunks, and its
    # figures must stay numpy's to the last bit, interpolated percentiles included.
    from pythia_data import IndexedDatasetBuilder
    from pythia_data.cli import info

    monkeypatch.setattr(info, "_CHUNK", 7)  # many chunks, and a short last one
    rng = np.random.default_rng(5)
    cases = [np.array([0]), np.array([5]), np.array([3, 0]), np.full(50, 7)]
    for n in (2, 3, 10, 99, 100, 101, 1000):
        cases.append(rng.integers(0, 5, n))
        cases.append(rng.integers(0, 2**31 - 1, n))  # the values in many buckets of 2^16
        cases.append(rng.integers(65_530, 65_542, n))  # ranks on both sides of a bucket's edge
        cases.append(rng.lognormal(6, 2, n).astype(np.int64).clip(0, 2**31 - 1))
    for sizes in cases:
        sizes = np.asarray(sizes, dtype="<i4")
        got = info._size_stats(sizes)
        assert got == _whole_array_sizes(sizes), sizes
        assert [type(v) for v in got.values()] == [int, float, float, float, int, int]
    # End to end, subsets too (a code past the names is counted as such).
    with IndexedDatasetBuilder(tmp_path / "d", np.uint16) as b:
        for n in rng.integers(0, 40, 300):
            b.add_document(np.arange(n))
    codes = rng.integers(0, 4, 300).astype(np.uint16)
    codes[17] = 6
    np.save(tmp_path / "d.subsets.npy", codes)
    (tmp_path / "d.subsets.json").write_text(json.dumps({"names": ["A", "B", "C", "D", "E"]}))
    code, out = run("info", tmp_path / "d", "--json")
    assert code == 0, out
    d = json.loads(out)
    assert d["sizes"] == _whole_array_sizes(IndexedDataset(tmp_path / "d").sizes)
    counts = np.bincount(codes)
    want = {name: int(c) for name, c in zip("ABCD", counts, strict=False)}
    assert d["subsets"] == {**want, "E": 0, "<code 6>": 1}


def test_info_of_no_documents_lists_no_subsets(tmp_path):
    # tokenize writes subsets files naming no subset for a dataset of no documents: info
    # printed a "documents per subset:" heading with nothing under it.
    from pythia_data import IndexedDatasetBuilder

    with IndexedDatasetBuilder(tmp_path / "e", np.uint16):
        pass
    np.save(tmp_path / "e.subsets.npy", np.array([], dtype=np.uint16))
    (tmp_path / "e.subsets.json").write_text(json.dumps({"key": "k", "names": []}))
    code, out = run("info", tmp_path / "e")
    assert code == 0 and "documents  0" in out, out
    assert "subset" not in out
    assert json.loads(run("info", tmp_path / "e", "--json")[1])["subsets"] == {}


def test_info_json_has_the_same_keys_and_types_for_every_dataset(tmp_path):
    # "sizes" was left out for a dataset of no items and "subsets" without labels: a script
    # reading many datasets' JSON failed with a KeyError on the odd one.
    from pythia_data import IndexedDatasetBuilder

    with IndexedDatasetBuilder(tmp_path / "e", np.uint16):
        pass
    sharded = shard(golden_case("long_docs"), tmp_path / "s", [100_001])
    test_info_subsets(tmp_path)  # writes tmp_path / "t", with subsets
    seen = {}
    for prefix in (golden_case("zero_len_docs"), tmp_path / "e", sharded, tmp_path / "t"):
        code, out = run("info", prefix, "--json")
        assert code == 0, out
        seen[prefix.name] = {k: type(v) for k, v in json.loads(out).items()}
    assert all(set(keys) == set(seen["t"]) for keys in seen.values()), seen
    assert seen["e"]["sizes"] is type(None) and seen["e"]["subsets"] is type(None)
    assert seen["t"]["sizes"] is dict and seen["t"]["subsets"] is dict
    for key in ("prefix", "dtype", "idx_file"):
        assert {keys[key] for keys in seen.values()} == {str}
    for key in ("items", "documents", "tokens", "idx_bytes", "bin_bytes", "shards"):
        assert {keys[key] for keys in seen.values()} == {int}
    code, out = run("info", tmp_path / "e")
    assert code == 0 and "item sizes" not in out and "subset" not in out, out


def test_info_verify_unshard_take_a_directory_of_one_dataset(tmp_path):
    # Given a directory they said "DIR.idx: No such file or directory", where batch and
    # build-index take a directory of one dataset.
    src = golden_case("long_docs")
    prefix = shard(src, tmp_path / "s", [100_001, 500_000])
    d = prefix.parent
    code, out = run("info", d)
    assert code == 0 and f" {prefix}\n" in out and "3 shards" in out, out
    code, out = run("verify", d, "--quiet")
    assert code == 0 and "structure OK" in out, out
    code, out = run("unshard", d, "-o", tmp_path / "whole", "--quiet")
    assert code == 0, out
    assert (tmp_path / "whole.bin").read_bytes() == src.with_name("long_docs.bin").read_bytes()
    # A directory of several: which prefixes to choose from.
    shutil.copyfile(tmp_path / "whole.idx", d / "other.idx")
    shutil.copyfile(tmp_path / "whole.bin", d / "other.bin")
    empty = tmp_path / "empty"
    empty.mkdir()
    for cmd in ("info", "verify", "unshard"):
        code, out = run(cmd, d)
        assert code == 1 and out.count("\n") == 1 and "No such file" not in out, out
        assert f"{d} is a directory that holds 2 datasets: give one dataset's prefix" in out
        assert f"({prefix}, {d / 'other'})" in out and "--weights" not in out  # batch's alone
        code, out = run(cmd, empty)
        assert code == 1 and "no indexed dataset (*.idx) in this directory" in out, out


def test_merge(tmp_path):
    code, out = run("merge", tmp_path / "m", golden_case("toy_e1"), golden_case("toy_e2"))
    assert code == 0, out
    m = IndexedDataset(tmp_path / "m")
    assert np.array_equal(
        m.items(0, len(m)), np.concatenate([golden_tokens("toy_e1"), golden_tokens("toy_e2")])
    )
    code, out = run("merge", tmp_path / "bad", golden_case("toy_e1"), golden_case("int32_tokens"))
    assert code != 0 and "different dtypes" in out
    assert not list(tmp_path.glob("bad*"))


def test_unshard_and_verify(tmp_path):
    src = golden_case("long_docs")
    prefix = shard(src, tmp_path / "s", [100_001, 500_000])
    sums = tmp_path / "SHA256SUMS"
    code, out = run("verify", prefix, "--write-checksums", sums, "--quiet")
    assert code == 0, out
    listed = dict(line.split("  ")[::-1] for line in sums.read_text().splitlines())
    for p in (tmp_path / "s").iterdir():
        assert listed[p.name] == sha256(p)
    code, out = run("verify", prefix, "--checksums", sums, "--quiet")
    assert code == 0 and "all 4 files match" in out and "not checked" not in out
    # A list without one shard checks the others and says which were not checked.
    partial_list = tmp_path / "PARTIAL"
    lines = sums.read_text().splitlines()
    partial_list.write_text("".join(f"{line}\n" for line in lines if "00001-of" not in line))
    code, out = run("verify", prefix, "--checksums", partial_list, "--quiet")
    assert code == 0 and "all 3 files match" in out, out
    assert f"note: 1 file of the dataset is not in {partial_list}, so not checked: " in out

    code, out = run("unshard", prefix, "--checksums", sums, "-o", tmp_path / "whole", "--quiet")
    assert code == 0, out
    assert (tmp_path / "whole.bin").read_bytes() == src.with_name("long_docs.bin").read_bytes()
    assert (tmp_path / "whole.idx").read_bytes() == src.with_name("long_docs.idx").read_bytes()
    assert not list(tmp_path.glob(".whole*"))


def test_unshard_bad_checksum_resumes(tmp_path):
    src = golden_case("long_docs")
    prefix = shard(src, tmp_path / "s", [100_001, 500_000])
    sums = tmp_path / "SHA256SUMS"
    good = {p.name: sha256(p) for p in (tmp_path / "s").glob("*.bin")}
    bad = dict(good)
    bad["long_docs-00001-of-00003.bin"] = "0" * 64
    sums.write_text("".join(f"{v}  {k}\n" for k, v in bad.items()))
    code, out = run("unshard", prefix, "--checksums", sums, "--quiet")
    assert code == 1 and "long_docs-00001-of-00003.bin" in out and "does not match" in out
    assert not (tmp_path / "s" / "long_docs.bin").exists()
    record = json.loads((tmp_path / "s" / ".long_docs.bin.partial.json").read_text())
    assert record["shards_done"] == ["long_docs-00000-of-00003.bin"]
    # Fixed checksum file: the rerun continues after shard 0 and ends with the right file.
    sums.write_text("".join(f"{v}  {k}\n" for k, v in good.items()))
    code, out = run("unshard", prefix, "--checksums", sums, "--quiet")
    assert code == 0, out
    assert (tmp_path / "s" / "long_docs.bin").read_bytes() == src.with_name(
        "long_docs.bin"
    ).read_bytes()
    assert not list((tmp_path / "s").glob(".long_docs*"))


def test_unshard_interrupted_says_it_continues(tmp_path, monkeypatch):
    import pythia_data.unshard as u

    src = golden_case("long_docs")
    prefix = shard(src, tmp_path / "s", [100_001, 500_000])
    real = _stop_after_first_shard(monkeypatch)
    code, out = run("unshard", prefix, "--quiet")
    # The copied shard is kept for the rerun: the message must not claim nothing was left.
    assert code == 130 and "run the same command again" in out, out
    assert "no partial output" not in out
    monkeypatch.setattr(u, "_write_record", real)
    code, out = run("unshard", prefix, "--quiet")
    assert code == 0, out
    assert (tmp_path / "s" / "long_docs.bin").read_bytes() == src.with_name(
        "long_docs.bin"
    ).read_bytes()


def test_unshard_read_error_names_the_shard(tmp_path, monkeypatch):
    # A read error without a file name (EIO from a failing disk) was reported as the output's.
    import errno

    import pythia_data.unshard as u

    src = golden_case("long_docs")
    prefix = shard(src, tmp_path / "s", [100_001, 500_000])
    second = sorted(prefix.parent.glob("long_docs-*.bin"))[1]

    class Failing(io.FileIO):
        def read(self, n=-1):
            raise OSError(errno.EIO, "Input/output error")

    def fake_open(path, mode="r", *args, **kwargs):
        if Path(path) == second and mode == "rb":
            return Failing(path, "rb")
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(u, "open", fake_open, raising=False)
    code, out = run("unshard", prefix, "--quiet")
    assert code == 1, out
    assert "Input/output error" in out and str(second) in out, out
    # Only the shard: the output, which did not fail, was named in front of it.
    assert str(prefix.with_name(prefix.name + ".bin")) not in out, out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_command_exits_128_plus_the_signal(tmp_path, monkeypatch, sig):
    # SIGTERM exited 130, Ctrl-C's status, where pythia-train (and a shell, for a process the
    # signal kills) gives 143: a job script could not tell a scheduler's stop from a user's.
    # Both ways a command stops: with its own message (unshard keeps the copied shards) and
    # with the group's (merge, which keeps nothing).
    import pythia_data.unshard as u
    from pythia_data.indexed import IndexedDatasetBuilder

    prefix = shard(golden_case("long_docs"), tmp_path / "s", [100_001, 500_000])
    real, calls = u._write_record, []

    def signalled_after_first_shard(*args):
        calls.append(args)
        if len(calls) == 2:
            os.kill(os.getpid(), sig)
        real(*args)

    monkeypatch.setattr(u, "_write_record", signalled_after_first_shard)
    code, out = run("unshard", prefix, "--quiet")
    assert code == 128 + sig and "interrupted; run the same command again" in out, (code, out)
    assert (tmp_path / "s" / ".long_docs.bin.partial.json").exists()

    def signalled_while_appending(self, other):
        os.kill(os.getpid(), sig)

    monkeypatch.setattr(IndexedDatasetBuilder, "append_dataset", signalled_while_appending)
    code, out = run("merge", tmp_path / "m", golden_case("toy_e1"), golden_case("toy_e2"))
    assert code == 128 + sig and "interrupted; this run left no partial" in out, (code, out)
    assert not list(tmp_path.glob("m*")) and not list(tmp_path.glob(".m*"))


def _stop_after_first_shard(monkeypatch):
    """Make unshard stop (Ctrl-C) once shard 0 is copied and recorded; returns the real
    record writer, to put back."""
    import pythia_data.unshard as u

    real, calls = u._write_record, []

    def interrupt_after_first_shard(*args):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(*args)

    monkeypatch.setattr(u, "_write_record", interrupt_after_first_shard)
    return real


def _unshard_interrupted_after_first_shard(monkeypatch, prefix, checksums=None):
    """Run unshard through the API and stop it once shard 0 is copied and recorded."""
    import pythia_data.unshard as u

    real = _stop_after_first_shard(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        u.unshard(prefix, checksums=checksums, progress=False)
    monkeypatch.setattr(u, "_write_record", real)


def test_unshard_resumed_with_checksums_verifies_shards_copied_without(tmp_path, monkeypatch):
    # A run without checksums copied a corrupt shard 0; the resumed run with checksums only
    # compared shard names and sizes, and promoted the corrupt output with exit 0.
    src = golden_case("long_docs")
    prefix = shard(src, tmp_path / "s", [100_001, 500_000])
    sums = tmp_path / "SUMS"
    assert run("verify", prefix, "--write-checksums", sums, "--quiet")[0] == 0
    first = tmp_path / "s" / "long_docs-00000-of-00003.bin"
    intact = first.read_bytes()
    raw = bytearray(intact)
    raw[10] ^= 0xFF
    raw[5000] ^= 0x01
    first.write_bytes(bytes(raw))
    _unshard_interrupted_after_first_shard(monkeypatch, prefix)

    code, out = run("unshard", prefix, "--checksums", sums, "--quiet")
    assert code == 1 and first.name in out and "does not match" in out, out
    assert len(out.strip().splitlines()) == 1
    final = tmp_path / "s" / "long_docs.bin"
    assert not final.exists()
    # The shard downloaded again: the rerun copies it again and the output is right.
    first.write_bytes(intact)
    code, out = run("unshard", prefix, "--checksums", sums, "--quiet")
    assert code == 0, out
    assert sha256(final) == sha256(src.with_name("long_docs.bin"))
    assert not list((tmp_path / "s").glob(".long_docs*"))


def test_unshard_resumed_without_checksums_after_a_verified_start(tmp_path, monkeypatch):
    src = golden_case("long_docs")
    prefix = shard(src, tmp_path / "s", [100_001, 500_000])
    sums = tmp_path / "SUMS"
    assert run("verify", prefix, "--write-checksums", sums, "--quiet")[0] == 0
    _unshard_interrupted_after_first_shard(monkeypatch, prefix, checksums=sums)
    code, out = run("unshard", prefix, "--quiet")
    assert code == 0, out
    final = tmp_path / "s" / "long_docs.bin"
    assert sha256(final) == sha256(src.with_name("long_docs.bin"))
    assert not list((tmp_path / "s").glob(".long_docs*"))


def test_unshard_resumed_after_the_partial_file_was_damaged_copies_again(tmp_path, monkeypatch):
    # The kept shard was trusted from the record alone: damage to the partial file between
    # runs reached the output, which --help says appears only when complete and verified.
    src = golden_case("long_docs")
    prefix = shard(src, tmp_path / "s", [100_001, 500_000])
    _unshard_interrupted_after_first_shard(monkeypatch, prefix)
    partial = tmp_path / "s" / ".long_docs.bin.partial"
    raw = bytearray(partial.read_bytes())
    raw[1234] ^= 0xFF
    partial.write_bytes(bytes(raw))
    code, out = run("unshard", prefix, "--quiet")
    assert code == 0, out
    assert sha256(tmp_path / "s" / "long_docs.bin") == sha256(src.with_name("long_docs.bin"))


def test_unshard_resumed_after_a_shard_was_replaced_copies_it_again(tmp_path, monkeypatch):
    # Without checksums, shard 0 replaced between runs (downloaded again) left its old bytes.
    src = golden_case("long_docs")
    prefix = shard(src, tmp_path / "s", [100_001, 500_000])
    first = tmp_path / "s" / "long_docs-00000-of-00003.bin"
    intact = first.read_bytes()
    raw = bytearray(intact)
    raw[10] ^= 0xFF
    first.write_bytes(bytes(raw))
    _unshard_interrupted_after_first_shard(monkeypatch, prefix)
    first.write_bytes(intact)
    stat = first.stat()
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    code, out = run("unshard", prefix, "--quiet")
    assert code == 0, out
    assert sha256(tmp_path / "s" / "long_docs.bin") == sha256(src.with_name("long_docs.bin"))


def test_unshard_onto_one_of_its_shards_is_refused(tmp_path):
    # `-o s/long_docs-00000-of-00003` replaced shard 0 with the whole file: the shards were lost.
    src = golden_case("long_docs")
    prefix = shard(src, tmp_path / "s", [100_001, 500_000])
    first = tmp_path / "s" / "long_docs-00000-of-00003.bin"
    before = first.read_bytes()
    code, out = run("unshard", prefix, "-o", first.with_suffix(""), "--quiet")
    assert code == 1 and "is one of the shards" in out, out
    assert first.read_bytes() == before


def test_merge_onto_an_input_file_is_refused(tmp_path):
    # An output named like an input's shard was renamed over it once the merge was done.
    src = golden_case("long_docs")
    prefix = shard(src, tmp_path / "s", [100_001, 500_000])
    first = tmp_path / "s" / "long_docs-00000-of-00003.bin"
    before = first.read_bytes()
    code, out = run("merge", first.with_suffix(""), prefix)
    assert code == 2 and "would overwrite" in out and first.name in out, out
    assert first.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "s").iterdir() if p.name.startswith(".")) == []


def test_merge_onto_a_folder_name_is_a_usage_error(tmp_path, monkeypatch):
    # "." gave "error: PosixPath('.') has an empty name"; "new/" wrote new.bin beside the folder.
    monkeypatch.chdir(tmp_path)
    src = golden_case("long_docs")
    for output in [".", "..", "new/", "sub/.", str(tmp_path) + "/"]:
        code, out = run("merge", output, src)
        assert code == 2, (output, out)
        assert f"Invalid value for OUTPUT: {output!r} names a folder, not a dataset" in out, out
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_merge_of_a_folder_says_to_name_its_datasets(tmp_path, monkeypatch):
    # It said "error: DIR.idx: No such file or directory".
    monkeypatch.chdir(tmp_path)
    (tmp_path / "parts").mkdir()
    code, out = run("merge", "out", "parts")
    assert code == 2 and "parts is a folder: merge joins datasets in the order given" in out, out
    assert "parts/*.idx" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parts"]
    # The glob as a shell expands it: its '*' quoted, it reached merge as a literal name.
    (tmp_path / "my parts").mkdir()
    code, out = run("merge", "out", "my parts")
    assert code == 2 and "such as 'my parts'/*.idx gives" in " ".join(out.split()), out
    code, out = run("merge", "out", "parts")
    assert "'parts/*.idx'" not in out, out


def test_verify_detects_corruption(tmp_path):
    prefix = shard(golden_case("long_docs"), tmp_path / "s", [100_001])
    sums = tmp_path / "SUMS"
    assert run("verify", prefix, "--write-checksums", sums, "--quiet")[0] == 0
    p = tmp_path / "s" / "long_docs-00001-of-00002.bin"
    raw = bytearray(p.read_bytes())
    raw[1000] ^= 0xFF
    p.write_bytes(bytes(raw))
    code, out = run("verify", prefix, "--checksums", sums, "-q")  # -q as for tokenize
    assert code == 1 and "FAILED  long_docs-00001-of-00002.bin" in out
    sums.write_text("not a checksum line\n")
    code, out = run("verify", prefix, "--checksums", sums)
    assert code == 1 and "SUMS:1: not a sha256sum line" in out


def test_verify_rejects_doc_idx_not_ending_at_the_item_count(tmp_path):
    src = golden_case("toy_e1")
    shutil.copyfile(src.with_name("toy_e1.bin"), tmp_path / "t.bin")
    raw = bytearray(src.with_name("toy_e1.idx").read_bytes())
    n = int.from_bytes(raw[18:26], "little")
    docs = int.from_bytes(raw[26:34], "little")
    last = 34 + 12 * n + 8 * (docs - 1)  # header, sizes (int32), pointers (int64), doc_idx
    assert int.from_bytes(raw[last:], "little") == n == 7
    raw[last:] = (n - 1).to_bytes(8, "little")  # still non-decreasing, within the items
    (tmp_path / "t.idx").write_bytes(bytes(raw))
    code, out = run("verify", tmp_path / "t", "--quiet")
    assert code == 1 and "structure OK" not in out, out
    assert "t.idx" in out and "doc_idx" in out and len(out.strip().splitlines()) == 1
    assert run("verify", src, "--quiet") == (0, "structure OK: 7 items, 30 tokens (uint16)\n")


def write_pythia_preshuffled(dest, rows):
    """``dest/document.idx`` and Pythia-numbered shards (``-of-NNNNN`` names the last index)
    laid out as Pythia's released preshuffled data: uint16 items of one row each, and a
    doc_idx of [0] alone (its document.idx is 34 + 12·rows + 8 bytes)."""
    dest.mkdir()
    rows = np.asarray(rows, dtype=np.uint16)
    n, width = rows.shape
    pointers = np.arange(n, dtype=np.int64) * width * 2
    header = b"MMIDIDX\x00\x00" + (1).to_bytes(8, "little") + bytes([8])
    header += n.to_bytes(8, "little") + (1).to_bytes(8, "little")
    idx = header + np.full(n, width, np.int32).tobytes() + pointers.tobytes()
    (dest / "document.idx").write_bytes(idx + np.zeros(1, np.int64).tobytes())
    data, cut = rows.tobytes(), 7  # odd: shards end inside a token, as Pythia's byte cuts may
    last = (len(data) - 1) // cut
    for k in range(last + 1):
        (dest / f"document-{k:05d}-of-{last:05d}.bin").write_bytes(data[k * cut : (k + 1) * cut])
    return dest / "document", data


def test_verify_accepts_pythia_preshuffled_doc_idx(tmp_path):
    rows = np.arange(4 * 5, dtype=np.uint16).reshape(4, 5) * 997
    prefix, data = write_pythia_preshuffled(tmp_path / "hub", rows)
    assert len(IndexedDataset(prefix).doc_idx) == 1
    # Pythia's own checksum list (utils/shard_hashes.txt) puts the name first: "NAME HEX".
    sums = tmp_path / "shard_hashes.txt"
    sums.write_text("".join(f"{p.name} {sha256(p)}\n" for p in sorted(prefix.parent.iterdir())))
    code, out = run("verify", prefix, "--checksums", sums, "--quiet")
    assert code == 0, out
    assert "doc_idx is [0] alone" in out and "structure OK: 4 items, 20 tokens" in out
    assert "all 7 files match" in out
    code, out = run("unshard", prefix, "-o", tmp_path / "whole" / "document", "--quiet")
    assert code == 0, out
    assert (tmp_path / "whole" / "document.bin").read_bytes() == data
    assert run("verify", tmp_path / "whole", "--quiet")[0] == 0


def test_unshard_takes_pythias_single_shard(tmp_path):
    # Pythia's shard_memmap.py names a .bin smaller than one shard "-00000-of-00000.bin", and
    # its unshard_memmap.py --num_shards 1 makes PREFIX.bin of it.
    rows = np.arange(2 * 5, dtype=np.uint16).reshape(2, 5)
    prefix, data = write_pythia_preshuffled(tmp_path / "hub", rows)
    for p in prefix.parent.glob("document-*.bin"):
        p.unlink()
    (prefix.parent / "document-00000-of-00000.bin").write_bytes(data)
    code, out = run("unshard", prefix, "--quiet")
    assert code == 0, out
    assert prefix.with_name("document.bin").read_bytes() == data
    # A dataset already in one PREFIX.bin is still refused.
    code, out = run("unshard", prefix, "--quiet")
    assert code == 1 and "is not sharded" in out, out


def test_verify_checks_the_subset_labels(tmp_path):
    from pythia_data.tokenize import tokenize_files

    src = tmp_path / "d.jsonl"
    docs = [("a b", "Pile-CC"), ("c", "Github"), ("d e f", "Pile-CC")]
    src.write_text(
        "".join(json.dumps({"text": t, "meta": {"pile_set_name": m}}) + "\n" for t, m in docs)
    )
    tokenize_files([src], tmp_path / "d")
    code, out = run("verify", tmp_path / "d", "-q", "--write-checksums", tmp_path / "SUMS")
    assert code == 0 and "subsets OK: 2 names over 3 items" in out, out
    listed = sorted(line.split()[1] for line in (tmp_path / "SUMS").read_text().splitlines())
    assert listed == ["d.bin", "d.idx", "d.subsets.json", "d.subsets.npy"]

    codes_path = tmp_path / "d.subsets.npy"
    codes = np.load(codes_path)
    good = codes.copy()
    codes[1] = 2  # one past the two names
    np.save(codes_path, codes)
    code, out = run("verify", tmp_path / "d", "-q")
    assert code == 1 and "holds code 2" in out and "names 2 subsets" in out, out
    code, out = run("verify", tmp_path / "d", "-q", "--checksums", tmp_path / "SUMS")
    assert code == 1

    np.save(codes_path, good)
    src.write_text(src.read_text() + json.dumps({"text": "no meta"}) + "\n")
    tokenize_files([src], tmp_path / "e")
    code, out = run("info", tmp_path / "e")
    table = out.split("documents per subset:\n")[1].splitlines()
    assert code == 0 and sorted(table) == sorted(
        [
            "             2  Pile-CC",
            "             1  Github",
            "             1  (no subset recorded)",
        ]
    ), out
    (tmp_path / "d.subsets.json").unlink()
    code, out = run("verify", tmp_path / "d", "-q")
    assert code == 1 and "d.subsets.json is missing" in out, out
    # Both gone: the dataset alone is intact, but the checksum file says they belong to it.
    codes_path.unlink()
    assert run("verify", tmp_path / "d", "-q")[0] == 0
    code, out = run("verify", tmp_path / "d", "-q", "--checksums", tmp_path / "SUMS")
    assert code == 1 and "MISSING d.subsets.json" in out and "MISSING d.subsets.npy" in out, out
    assert "OK      d.bin" in out and "2 of 4 files do not match" in out, out


def test_cli_errors_have_no_traceback(tmp_path):
    (tmp_path / "x.idx").write_bytes(b"garbage")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from pythia_data.cli import run; run()",
            "info",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "x.idx" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(not hasattr(signal, "SIGPIPE"), reason="needs SIGPIPE")
def test_output_read_by_a_reader_that_went_away_stops_quietly():
    # `pythia-data info X | head -1` printed "error: [Errno 32] Broken pipe", exit 1.
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    try:
        proc = subprocess.run(
            [sys.executable, "-c", "from pythia_data.cli import run; run()", "info",
             str(golden_case("long_docs"))],
            stdout=write_end, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert proc.returncode == 128 + signal.SIGPIPE and proc.stderr == "", proc.stderr


@pytest.mark.parametrize("cmd", ["info", "merge", "unshard", "verify"])
def test_help(cmd):
    code, out = run(cmd, "--help")
    assert code == 0 and "Usage:" in out and len(out) > 200


def test_merge_refuses_damaged_subset_files_before_writing(tmp_path):
    from pythia_data import IndexedDatasetBuilder, PythiaDataError
    from pythia_data.tokenize import merge_subsets

    for name in ("a", "b"):
        with IndexedDatasetBuilder(tmp_path / name, np.uint16) as b:
            for n in (3, 5, 2):
                b.add_document(np.arange(n))
        (tmp_path / f"{name}.subsets.json").write_text('{"key": "k", "names": ["X", "Y"]}')
        np.save(tmp_path / f"{name}.subsets.npy", np.array([0, 1, 0], dtype=np.uint16))
    # b's codes cover one item of three: the merged labels were silently shifted.
    np.save(tmp_path / "b.subsets.npy", np.array([1], dtype=np.uint16))
    with pytest.raises(PythiaDataError, match="b.subsets.npy: holds 1 subset codes .* 3 items"):
        merge_subsets(tmp_path / "m", [tmp_path / "a", tmp_path / "b"])
    code, out = run("merge", tmp_path / "m", tmp_path / "a", tmp_path / "b")
    assert code == 1 and "b.subsets.npy" in out, out
    # One code per item, but in a column (3, 1): verify refused it, merge took it.
    np.save(tmp_path / "b.subsets.npy", np.array([[0], [1], [0]], dtype=np.uint16))
    with pytest.raises(PythiaDataError, match="b.subsets.npy: expected a 1-D array of integers"):
        merge_subsets(tmp_path / "m", [tmp_path / "a", tmp_path / "b"])
    # A bad names table was found only after m.bin/.idx were written: nothing may be left.
    np.save(tmp_path / "b.subsets.npy", np.array([0, 1, 0], dtype=np.uint16))
    (tmp_path / "b.subsets.json").write_text('{"names": 3}')
    code, out = run("merge", tmp_path / "m", tmp_path / "a", tmp_path / "b")
    assert code == 1 and "b.subsets.json" in out, out
    assert not list(tmp_path.glob("m.*"))


def write_dataset(prefix, sizes, subsets=None):
    """Documents of `sizes` tokens (0, 1, 2, ... on) and, given (key, names, codes), the
    PREFIX.subsets.* files tokenize writes."""
    from pythia_data import IndexedDatasetBuilder

    with IndexedDatasetBuilder(prefix, np.uint16) as b:
        for n in sizes:
            b.add_document(np.arange(n))
    if subsets is not None:
        key, names, codes = subsets
        (prefix.parent / f"{prefix.name}.subsets.json").write_text(
            json.dumps({"key": key, "names": names})
        )
        np.save(prefix.parent / f"{prefix.name}.subsets.npy", np.array(codes, dtype=np.uint16))


def leftovers(directory, name):
    """OUTPUT's files and hidden temporaries in `directory`."""
    return sorted(p.name for p in directory.iterdir() if p.name.lstrip(".").startswith(name + "."))


def test_merge_checks_every_subsets_key_before_writing(tmp_path):
    # b's key was found to differ only after m.bin/.idx had been renamed into place.
    write_dataset(tmp_path / "a", [3, 5], ("meta.pile_set_name", ["X"], [0, 0]))
    write_dataset(tmp_path / "b", [2], ("meta.other", ["Y"], [0]))
    code, out = run("merge", tmp_path / "m", tmp_path / "a", tmp_path / "b")
    assert (
        code == 1 and out.splitlines()[-1].startswith("error: ") and "b: subsets of key" in out
    ), out
    assert leftovers(tmp_path, "m") == []


@pytest.mark.parametrize("dtype", ["u1", "i1", "<i2", ">u2", "<i4", ">i4", "<u8", "<i8"])
def test_merge_reads_subset_codes_of_any_integer_dtype(tmp_path, dtype):
    # info, verify and GPTDataset read codes of any integer dtype (a uint8 array is the
    # natural one for a few names), but merge refused all but little-endian uint16.
    write_dataset(tmp_path / "a", [3, 5], ("meta.pile_set_name", ["X", "Y"], [1, 0]))
    write_dataset(tmp_path / "b", [2, 4, 1], ("meta.pile_set_name", ["Z", "", "X"], [0, 2, 1]))
    np.save(tmp_path / "b.subsets.npy", np.array([0, 2, 1], dtype=dtype))
    assert run("verify", tmp_path / "b")[0] == 0
    code, out = run("merge", tmp_path / "m", tmp_path / "a", tmp_path / "b")
    assert code == 0, out
    names = json.loads((tmp_path / "m.subsets.json").read_text())["names"]
    codes = np.load(tmp_path / "m.subsets.npy")
    assert codes.dtype == np.uint16
    assert [names[c] for c in codes] == ["Y", "X", "Z", "X", ""]
    # A negative code names nothing: refused, as verify refuses it.
    if dtype[-2] == "i":
        np.save(tmp_path / "b.subsets.npy", np.array([0, -1, 1], dtype=dtype))
        code, out = run("merge", tmp_path / "m2", tmp_path / "a", tmp_path / "b")
        assert code == 1 and "b.subsets.npy: negative subset codes" in out, out


def test_merge_refuses_items_outside_any_document(tmp_path):
    # A part whose doc_idx ends short of its items (verify calls it corrupt) was merged: its
    # trailing items joined the next input's first document, and verify passed the output.
    # A preshuffled part (doc_idx [0] alone) beside document datasets gave an output verify
    # calls corrupt, with exit status 0.
    from pythia_data import IndexedDatasetBuilder

    write_dataset(tmp_path / "a", [3, 5])
    with IndexedDatasetBuilder(tmp_path / "short", np.uint16) as b:
        b.add_document(np.arange(2))
        b.add_item(np.arange(4))  # no end_document: doc_idx [0, 1] over 2 items
    with IndexedDatasetBuilder(tmp_path / "pre", np.uint16) as b:
        b.add_item(np.arange(4))
        b.add_item(np.arange(2))
    assert run("verify", tmp_path / "short")[0] == 1 and run("verify", tmp_path / "pre")[0] == 0
    code, out = run("merge", tmp_path / "m", tmp_path / "short", tmp_path / "a")
    assert code == 1 and "short.idx: the last doc_idx entry is 1" in out, out
    code, out = run("merge", tmp_path / "m", tmp_path / "a", tmp_path / "pre")
    assert code == 2 and "pre records no document ends" in out, out
    assert leftovers(tmp_path, "m") == []
    # Preshuffled data merges with its like, and an empty dataset goes with either.
    write_dataset(tmp_path / "empty", [])
    code, out = run("merge", tmp_path / "m", tmp_path / "pre", tmp_path / "empty", tmp_path / "pre")
    assert code == 0, out
    assert IndexedDataset(tmp_path / "m").doc_idx.tolist() == [0]
    assert run("verify", tmp_path / "m")[0] == 0


def test_merge_drops_old_subsets_of_the_output(tmp_path):
    # A merge without subsets into an OUTPUT that had some kept them: with the same item count,
    # `info` showed the old labels against the new documents.
    write_dataset(tmp_path / "a", [3, 5], ("meta.pile_set_name", ["X", "Y"], [1, 0]))
    write_dataset(tmp_path / "b", [2, 4])
    write_dataset(tmp_path / "c", [1, 1])
    assert run("merge", tmp_path / "m", tmp_path / "a")[0] == 0
    assert (tmp_path / "m.subsets.npy").exists()
    code, out = run("merge", tmp_path / "m", tmp_path / "b", tmp_path / "c")
    assert code == 0, out
    assert leftovers(tmp_path, "m") == ["m.bin", "m.idx"]
    code, out = run("info", tmp_path / "m", "--json")
    assert code == 0, out
    info = json.loads(out)
    assert info["items"] == 4 and info["tokens"] == 8 and info["subsets"] is None


def test_merge_failing_in_the_final_step_leaves_nothing(tmp_path):
    write_dataset(tmp_path / "a", [3, 5], ("k", ["X", "Y"], [1, 0]))
    write_dataset(tmp_path / "b", [2], ("k", ["Y"], [0]))
    # The .bin cannot be renamed into place, after the subsets were: they must go again.
    (tmp_path / "m.bin").mkdir()
    (tmp_path / "m.bin" / "keep").write_text("")
    code, out = run("merge", tmp_path / "m", tmp_path / "a", tmp_path / "b")
    assert code == 1 and out.splitlines()[-1].startswith("error: ") and "m.bin" in out, out
    assert leftovers(tmp_path, "m") == ["m.bin"] and (tmp_path / "m.bin").is_dir()
    (tmp_path / "m.bin" / "keep").unlink()
    (tmp_path / "m.bin").rmdir()
    code, out = run("merge", tmp_path / "m", tmp_path / "a", tmp_path / "b")
    assert code == 0, out
    assert np.load(tmp_path / "m.subsets.npy").tolist() == [0, 1, 0]  # codes by first appearance
    assert json.loads((tmp_path / "m.subsets.json").read_text()) == {
        "key": "k",
        "names": ["Y", "X"],
    }


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_during_the_final_step_of_a_merge_keeps_the_complete_output(
    tmp_path, monkeypatch, sig
):
    # A signal while the output is finished (its fsync, in native code) was raised when that
    # returned: "interrupted; no partial output was left behind", status 130, though the
    # complete output was there. Now the step ends and the merge reports what it wrote.
    from pythia_data.indexed import IndexedDatasetBuilder

    finish = IndexedDatasetBuilder.finish

    def signalled_while_finishing(self):
        os.kill(os.getpid(), sig)
        return finish(self)

    monkeypatch.setattr(IndexedDatasetBuilder, "finish", signalled_while_finishing)
    code, out = run("merge", tmp_path / "m", golden_case("toy_e1"), golden_case("toy_e2"))
    assert code == 0 and "wrote" in out and "interrupted" not in out, out
    m = IndexedDataset(tmp_path / "m")
    want = np.concatenate([golden_tokens("toy_e1"), golden_tokens("toy_e2")])
    assert np.array_equal(m.items(0, len(m)), want)


def test_merge_refuses_incomplete_shard_sets(tmp_path):
    parts = [tmp_path / f"p-{i:05d}-of-00003" for i in range(3)]
    for i, part in enumerate(parts):
        write_dataset(part, [i + 1])
    code, out = run("merge", tmp_path / "m", parts[0], parts[2])
    assert code == 2 and "p-*-of-00003: part(s) 00001 missing" in out, out
    code, out = run("merge", tmp_path / "m", parts[0], parts[2], parts[1])
    assert code == 2 and "out of order or repeated: 00002 is given where 00001 belongs" in out, out
    assert leftovers(tmp_path, "m") == []
    # The last part given twice: there is no part 00003 for it to be given "where" belongs.
    code, out = run("merge", tmp_path / "m", *parts, parts[2])
    assert code == 2 and "00002 is given again, after the last part" in out, out
    assert "00003" not in out.replace("of-00003", ""), out
    code, out = run("merge", tmp_path / "m", parts[0], parts[2], "--allow-partial")
    assert code == 0, out
    assert IndexedDataset(tmp_path / "m").sizes.tolist() == [1, 3]
    code, out = run("merge", tmp_path / "m", *parts)
    assert code == 0, out
    assert IndexedDataset(tmp_path / "m").sizes.tolist() == [1, 2, 3]
    # Complete runs of two names go in either order.
    write_dataset(tmp_path / "q-00000-of-00001", [4])
    code, out = run("merge", tmp_path / "m", tmp_path / "q-00000-of-00001", *parts)
    assert code == 0, out
    assert IndexedDataset(tmp_path / "m").sizes.tolist() == [4, 1, 2, 3]


def test_merge_refuses_incomplete_shard_sets_among_other_inputs(tmp_path):
    # With any other input given, the parts were not checked: part 00001 was silently dropped.
    parts = [tmp_path / f"p-{i:05d}-of-00003" for i in range(3)]
    for i, part in enumerate(parts):
        write_dataset(part, [i + 1])
    write_dataset(tmp_path / "whole", [7])
    write_dataset(tmp_path / "other", [8])
    code, out = run(
        "merge", tmp_path / "m", tmp_path / "other", parts[0], parts[2], tmp_path / "whole"
    )
    assert code == 2 and "p-*-of-00003: part(s) 00001 missing" in out, out
    # Parts must come one after another: another input between them is refused too.
    code, out = run("merge", tmp_path / "m", parts[0], tmp_path / "whole", parts[1], parts[2])
    assert code == 2, out
    assert f"{tmp_path / 'whole'} is given between parts 00000 and 00001" in out, out
    assert leftovers(tmp_path, "m") == []
    code, out = run("merge", tmp_path / "m", tmp_path / "other", *parts, tmp_path / "whole")
    assert code == 0, out
    assert IndexedDataset(tmp_path / "m").sizes.tolist() == [8, 1, 2, 3, 7]
    code, out = run(
        "merge", tmp_path / "m", parts[0], tmp_path / "whole", parts[2], "--allow-partial"
    )
    assert code == 0, out
    assert IndexedDataset(tmp_path / "m").sizes.tolist() == [1, 7, 3]


def test_merge_counts_shard_parts_per_folder(tmp_path):
    # Parts of one run in two folders were taken as two names: nothing was checked.
    a = [tmp_path / "a" / f"p-{i:05d}-of-00002" for i in range(2)]
    b = [tmp_path / "b" / f"p-{i:05d}-of-00002" for i in range(2)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_dataset(a[0], [1])
    write_dataset(b[1], [2])
    code, out = run("merge", tmp_path / "m", a[0], b[1])
    assert code == 2, out
    assert f"{tmp_path / 'a' / 'p'}-*-of-00002: part(s) 00001 missing" in out, out
    assert f"others in {tmp_path / 'b'}" in out, out
    code, out = run("merge", tmp_path / "m", a[0], b[1], "--allow-partial")
    assert code == 0, out
    assert IndexedDataset(tmp_path / "m").sizes.tolist() == [1, 2]
    # Complete runs of one name in two folders are two runs.
    write_dataset(a[1], [3])
    write_dataset(b[0], [4])
    code, out = run("merge", tmp_path / "m", *b, *a)
    assert code == 0, out
    assert IndexedDataset(tmp_path / "m").sizes.tolist() == [4, 2, 1, 3]


@pytest.mark.parametrize("names", [["y-00000-of-00002", "y-00001-of-00002", "y-00002-of-00002"],
                                   ["x-00000-of-00000"]])  # fmt: skip
def test_merge_refuses_part_numbers_past_the_count(tmp_path, names):
    # It was a traceback (StopIteration).
    for i, name in enumerate(names):
        write_dataset(tmp_path / name, [i + 1])
    code, out = run("merge", tmp_path / "m", *(tmp_path / n for n in names))
    assert code == 2, out
    error = out.splitlines()[-1]
    assert error == (
        f"Error: {tmp_path / names[-1]}: part {names[-1][2:7]} of {names[-1][-5:]} is no tokenize "
        "shard (--num-shards N names parts 00000 to N-1); rename it, or pass --allow-partial to "
        "merge it as given"
    ), out
    assert "Traceback" not in out and leftovers(tmp_path, "m") == []
    code, out = run("merge", tmp_path / "m", *(tmp_path / n for n in names), "--allow-partial")
    assert code == 0, out
    assert IndexedDataset(tmp_path / "m").sizes.tolist() == list(range(1, len(names) + 1))


def test_merge_glob_skips_subsets_files(tmp_path):
    write_dataset(tmp_path / "a", [3, 5], ("k", ["X", "Y"], [1, 0]))
    write_dataset(tmp_path / "b", [2], ("k", ["Y"], [0]))
    globbed = sorted(p for p in tmp_path.iterdir() if p.name[0] in "ab")
    assert [p.name for p in globbed][:4] == ["a.bin", "a.idx", "a.subsets.json", "a.subsets.npy"]
    code, out = run("merge", tmp_path / "m", *globbed)
    assert code == 0 and "2 inputs, 3 items" in out, out
    assert np.load(tmp_path / "m.subsets.npy").tolist() == [0, 1, 0]


def test_a_killed_merge_leaves_a_temporary_the_next_merge_removes(tmp_path):
    from pythia_data import IndexedDatasetBuilder

    with IndexedDatasetBuilder(tmp_path / "big", np.uint16) as b:
        b.add_document(np.zeros(25_000_000, dtype=np.uint16))  # 50 MB
    cmd = [sys.executable, "-c", "from pythia_data.cli import run; run()", "merge"]
    cmd += [str(tmp_path / "m")] + [str(tmp_path / "big")] * 8
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    temps = []
    while not temps and proc.poll() is None and time.monotonic() < deadline:
        temps = list(tmp_path.glob(".m.bin.tmp-*"))
    proc.kill()
    proc.wait()
    if not temps or (tmp_path / "m.idx").exists():
        pytest.skip("the merge finished before it could be killed")
    assert [p.name for p in tmp_path.glob(".m.bin.tmp-*")] == [f".m.bin.tmp-{proc.pid}"]
    write_dataset(tmp_path / "small", [2, 3])
    code, out = run("merge", tmp_path / "m", tmp_path / "small")
    assert code == 0, out
    assert leftovers(tmp_path, "m") == ["m.bin", "m.idx"]
    assert IndexedDataset(tmp_path / "m").sizes.tolist() == [2, 3]


def test_unshard_to_another_output_takes_the_subsets_along(tmp_path):
    # `unshard -o OUT` copied the .idx but not the subset labels, and left OUT's old labels (of
    # another dataset with as many items): `info OUT` showed them against these documents.
    write_dataset(tmp_path / "d", [3, 5, 2], ("meta.pile_set_name", ["A", "B"], [1, 0, 1]))
    prefix = shard(tmp_path / "d", tmp_path / "s", [5])
    for ext in ("subsets.npy", "subsets.json"):
        shutil.copyfile(tmp_path / f"d.{ext}", tmp_path / "s" / f"d.{ext}")
    write_dataset(tmp_path / "out", [1, 1, 1], ("meta.pile_set_name", ["OLD"], [0, 0, 0]))
    code, out = run("unshard", prefix, "-o", tmp_path / "out", "--quiet")
    assert code == 0, out
    assert json.loads(run("info", tmp_path / "out", "--json")[1])["subsets"] == {"A": 1, "B": 2}
    assert run("verify", tmp_path / "out")[0] == 0
    # A source without labels: the output has none either, not the old ones.
    for ext in ("subsets.npy", "subsets.json"):
        (tmp_path / "s" / f"d.{ext}").unlink()
    code, out = run("unshard", prefix, "-o", tmp_path / "out", "--quiet")
    assert code == 0, out
    assert leftovers(tmp_path, "out") == ["out.bin", "out.idx"]


def test_unshard_of_a_shard_that_grows_while_copied_leaves_no_broken_output(tmp_path, monkeypatch):
    # Shards were copied to their end, whatever size the run began with: a shard still being
    # downloaded put a .bin of the wrong size in place, and the check after the rename failed
    # with that broken dataset left under its real name (beside the shards, where it then
    # shadowed them).
    import pythia_data.unshard as u

    src = golden_case("long_docs")
    prefix = shard(src, tmp_path / "s", [100_001, 500_000])
    second = tmp_path / "s" / "long_docs-00001-of-00003.bin"
    intact = second.read_bytes()
    real, calls = u._write_record, []

    def grow_the_next_shard(*args):
        real(*args)
        calls.append(args)
        if len(calls) == 1:  # shard 0 is copied: shard 1 grows before it is read
            with open(second, "ab") as f:
                f.write(b"\0\0")

    monkeypatch.setattr(u, "_write_record", grow_the_next_shard)
    code, out = run("unshard", prefix, "--quiet")
    assert code == 1 and f"{second} changed while it was copied" in out, out
    assert len(out.strip().splitlines()) == 1
    final = tmp_path / "s" / "long_docs.bin"
    assert not final.exists()
    # Complete again: the rerun keeps shard 0 and ends with the right file.
    second.write_bytes(intact)
    code, out = run("unshard", prefix, "--quiet")
    assert code == 0, out
    assert final.read_bytes() == src.with_name("long_docs.bin").read_bytes()
    assert not list((tmp_path / "s").glob(".long_docs*"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_during_the_final_step_of_unshard_keeps_the_complete_output(
    tmp_path, monkeypatch, sig
):
    # A signal once the output was renamed into place (while it was validated) said
    # "interrupted; run the same command again to continue", status 130; the partial file
    # was gone, so the same command failed: "... is not sharded: its tokens are already in".
    import pythia_data.unshard as u

    src = golden_case("long_docs")
    prefix = shard(src, tmp_path / "s", [100_001, 500_000])
    real, calls = u.IndexedDataset, []

    def signalled_while_validating(p):
        calls.append(p)
        if len(calls) == 2:  # the output's check, after the rename
            os.kill(os.getpid(), sig)
        return real(p)

    monkeypatch.setattr(u, "IndexedDataset", signalled_while_validating)
    code, out = run("unshard", prefix, "--quiet")
    assert code == 0 and "wrote" in out and "interrupted" not in out, out
    final = tmp_path / "s" / "long_docs.bin"
    assert final.read_bytes() == src.with_name("long_docs.bin").read_bytes()
    assert not list((tmp_path / "s").glob(".long_docs*"))


def test_unshard_on_a_full_disk_names_the_output_and_continues(tmp_path, monkeypatch):
    # The error was "[Errno 28] No space left on device", naming no file.
    import builtins

    import pythia_data.unshard as u

    src = golden_case("long_docs")
    prefix = shard(src, tmp_path / "s", [100_001, 500_000])
    final = tmp_path / "s" / "long_docs.bin"

    class FillsUp:
        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, data):
            if self.written + len(data) > 300_000:  # shard 0 fits, shard 1 does not
                raise OSError(28, "No space left on device")
            self.written += len(data)
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

    def full_disk_open(path, *args, **kwargs):
        f = builtins.open(path, *args, **kwargs)
        return FillsUp(f) if Path(path).name.endswith(".partial") else f

    monkeypatch.setattr(u, "open", full_disk_open, raising=False)
    code, out = run("unshard", prefix, "--quiet")
    assert code == 1 and f"{final}: No space left on device" in out, out
    assert "run the same command again" in out
    monkeypatch.undo()
    code, out = run("unshard", prefix, "--quiet")
    assert code == 0, out
    assert final.read_bytes() == src.with_name("long_docs.bin").read_bytes()
