"""Messy and hand-edited inputs: each must give a clear PythiaDataError (or a one-line CLI
error), never a Rust panic, a hang or silent garbage."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pythia_data
from pythia_data import (
    GPTDataset,
    IndexedDatasetBuilder,
    PreshuffledDataset,
    PythiaDataError,
    _core,
)


def small_index(tmp_path) -> GPTDataset:
    prefix = tmp_path / "d"
    with IndexedDatasetBuilder(prefix, np.uint16) as b:
        for n in (50, 3, 70, 9, 0, 31):
            b.add_document(np.arange(n))
    return GPTDataset(prefix, num_samples=20, seq_length=6, seed=0, build=True)


def reopen(ds: GPTDataset) -> GPTDataset:
    return GPTDataset(ds.prefix, seq_length=ds.seq_length, paths=ds.paths)


def reopen_edited(ds: GPTDataset) -> GPTDataset:
    """``ds`` reopened after an array was edited in place: refused by the digest its record
    keeps, so the record's digests are dropped to reach the reader's own checks, which are all
    that guard GPT-NeoX's caches (they have no record)."""
    with pytest.raises(PythiaDataError, match="not the array the build recorded"):
        reopen(ds)
    record = ds.paths[0].with_name(ds.paths[0].name.replace("_doc_idx.npy", "_meta.json"))
    meta = json.loads(record.read_text())
    del meta["sampled_sha256"]
    record.write_text(json.dumps(meta))
    return reopen(ds)


def test_negative_shuffle_idx_entry_is_an_error_not_a_panic(tmp_path):
    ds = small_index(tmp_path)
    shuffle = ds.paths[2]
    a = np.load(shuffle).astype(np.int64)  # int64 is a valid shuffle_idx dtype
    a[1] = -1
    np.save(shuffle, a)
    ds = reopen_edited(ds)
    with pytest.raises(PythiaDataError, match="shuffle_idx.npy: entry 1 is -1"):
        ds.rows(0, 2)
    with pytest.raises(PythiaDataError, match="entry 1 is -1"):
        ds.provenance(1)


def test_npy_shape_that_overflows_is_refused(tmp_path):
    # 2^62 int32 entries need 2^64 bytes: a product that wraps to 0 must not match empty data.
    ds = small_index(tmp_path)
    doc_idx = ds.paths[0]
    raw = doc_idx.read_bytes()
    hlen = int.from_bytes(raw[8:10], "little")
    header = raw[10 : 10 + hlen].decode("latin1")
    header = re.sub(r"'shape': \([^)]*\)", "'shape': (4611686018427387904,)", header)
    header = header.rstrip().ljust(hlen - 1) + "\n"
    assert len(header) == hlen
    doc_idx.write_bytes(raw[:10] + header.encode("latin1"))  # the header alone: no data
    with pytest.raises(PythiaDataError, match="doc_idx.npy: holds 0 bytes"):
        reopen(ds)


def test_export_preshuffled_onto_its_own_source_is_refused(tmp_path):
    from pythia_data.preshuffle import export_preshuffled

    ds = small_index(tmp_path)
    before = {p: p.read_bytes() for p in (tmp_path / "d.bin", tmp_path / "d.idx")}
    for out in (tmp_path / "d", tmp_path / "d.idx", tmp_path / "." / "d.bin"):
        with pytest.raises(PythiaDataError, match="would overwrite .*d\\.(bin|idx)"):
            export_preshuffled(ds, out, 4)
    assert {p: p.read_bytes() for p in before} == before


@pytest.mark.parametrize("size, seq_length", [(0, None), (1, None), (3, 0), (3, -1)])
def test_preshuffled_rows_need_two_tokens(tmp_path, size, seq_length):
    # Items of 0 tokens gave seq_length -1 and empty "rows" and batches: silent garbage.
    with IndexedDatasetBuilder(tmp_path / "p", np.uint16) as b:
        for _ in range(4):
            b.add_document(np.arange(size))
    with pytest.raises(PythiaDataError, match="p.idx: rows of seq_length"):
        PreshuffledDataset(tmp_path / "p", seq_length)


def test_damaged_subset_files_are_clear_errors(tmp_path):
    from click.testing import CliRunner

    from pythia_data.cli import main

    ds = small_index(tmp_path)  # 6 items
    codes, names = tmp_path / "d.subsets.npy", tmp_path / "d.subsets.json"

    def info():
        r = CliRunner().invoke(main, ["info", str(tmp_path / "d")])
        assert r.exception is None or isinstance(r.exception, SystemExit), r.output
        return r.exit_code, r.output

    names.write_text('{"key": "meta.pile_set_name", "names": ["A", "B"]}')
    np.save(codes, np.array([0, 1, 1, 0, 0, 7], dtype=np.uint16))
    code, out = info()  # a code without a name is counted, not dropped
    assert code == 0 and re.search(r"3  A\n +2  B\n +1  <code 7>", out), out
    for bad_codes, bad_names, message in [
        # The damaged file named, in plain words: numpy took garbage for a pickle.
        (b"garbage", None, "d.subsets.npy: not a .npy file$"),
        (b"\x93NUMPY\x01\x00v\x00{'descr'", None, "d.subsets.npy: truncated or damaged"),
        (np.zeros(3, np.uint16), None, "d.subsets.npy: holds uint16 of shape \\(3,\\).* 6 items"),
        (np.zeros(6, np.float32), None, "d.subsets.npy: holds float32"),
        (None, '{"names": 5}', "d.subsets.json: 'names' must be a list of strings"),
        (None, "[1, 2]", "d.subsets.json: 'names' must be a list of strings"),
        (None, "{not json", "d.subsets.json: not valid JSON"),
        # It was a RecursionError traceback.
        (None, "[" * 100_000 + "]" * 100_000, "d.subsets.json: not valid JSON \\(nested"),
        # -1 named the last subset.
        (np.array([0, 0, 1, 0, -1, 0], np.int16), None, "d.subsets.npy: negative subset codes"),
    ]:
        np.save(codes, np.zeros(6, np.uint16))
        names.write_text('{"names": ["A"]}')
        if isinstance(bad_codes, bytes):
            codes.write_bytes(bad_codes)
        elif bad_codes is not None:
            np.save(codes, bad_codes)
        if bad_names is not None:
            names.write_text(bad_names)
        code, out = info()
        assert code == 1 and re.search("^error: .*" + message, out), out
        with pytest.raises(PythiaDataError, match=message):
            reopen(ds)


@pytest.mark.parametrize(
    "weights", [[0, 0], [1, -1], [-1, -1], [float("nan"), 1], [float("inf"), 1], [1e308, 1e308]]
)
def test_blend_weights_that_do_not_normalise_are_refused(tmp_path, weights):
    # These gave NaN, infinite or zero weights (or silently flipped signs) and a meaningless order.
    from pythia_data import BlendedDataset
    from pythia_data.index import build_blended_index

    ds = small_index(tmp_path)
    with pytest.raises(PythiaDataError, match="blend weights must be finite"):
        BlendedDataset([ds, ds], weights)
    with pytest.raises(PythiaDataError, match="weights must be finite"):
        build_blended_index([tmp_path / "d", tmp_path / "d"], weights, num_samples=10, seq_length=6)


def test_steps_times_batch_that_overflow_are_refused(tmp_path):
    # 2^40 steps of 2^30 rows wrapped round to 0 samples, and an index of 0 samples was built.
    from click.testing import CliRunner

    from pythia_data.cli import main

    small_index(tmp_path)
    args = ["--train-iters", str(2**40), "--global-batch-size", str(2**30), "--seq-length", "6"]
    for extra in ([], ["--weights", "1"]):
        r = CliRunner().invoke(main, ["build-index", str(tmp_path / "d"), *args, *extra, "-q"])
        assert r.exit_code == 1 and "more rows than an index can hold" in r.output, r.output
    assert not list(tmp_path.glob("*_0ns_*"))


def test_huge_numbers_on_the_command_line(tmp_path):
    # num_samples · seq_length beyond 2^64 wrapped inside the index plan and build-index looped
    # forever (and could not be interrupted); numbers beyond 2^64 gave an OverflowError traceback.
    from click.testing import CliRunner

    from pythia_data.cli import main

    small_index(tmp_path)
    for extra, code, message in [
        (["--num-samples", str(2**63 - 1)], 1, "doc_idx would have"),
        (["--num-samples", str(2**62), "--seq-length", str(2**30)], 1, "doc_idx would have"),
        (["--seq-length", str(2**62)], 1, "at most 2147483646"),
        # Beyond int64: a usage error naming the option.
        (["--num-samples", str(2**64 - 1)], 2, "Invalid value for '--num-samples'"),
        (["--num-samples", str(2**70)], 2, "Invalid value for '--num-samples'"),
        (["--seq-length", str(2**70)], 2, "Invalid value for '--seq-length'"),
    ]:
        r = CliRunner().invoke(main, ["build-index", str(tmp_path / "d"), *extra, "-q"])
        assert r.exit_code == code and message in r.output, r.output
        assert "Traceback" not in r.output


def test_binary_checksum_file_is_named_in_the_error(tmp_path):
    from click.testing import CliRunner

    from pythia_data.cli import main

    small_index(tmp_path)
    sums = tmp_path / "SHA256SUMS"
    sums.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    r = CliRunner().invoke(main, ["verify", str(tmp_path / "d"), "--checksums", str(sums)])
    assert r.exit_code == 1 and f"error: {sums}: not a sha256sum text file" in r.output, r.output


def test_batch_output_onto_a_file_it_reads_is_refused(tmp_path):
    # `batch -o d.idx` (or onto the .bin or an index .npy) replaced that file with the .npy.
    from click.testing import CliRunner

    from pythia_data.cli import main

    ds = small_index(tmp_path)
    args = ["--num-samples", "20", "--seq-length", "6", "--seed", "0", "--batch-size", "2"]
    for target in (tmp_path / "d.idx", tmp_path / "d.bin", ds.paths[2]):
        before = target.read_bytes()
        for extra in ([], ["--decode"]):
            r = CliRunner().invoke(
                main,
                ["batch", str(tmp_path / "d"), "--step", "0", *args, "-o", str(target), *extra],
            )
            if not extra and target.suffix != ".npy":  # rows go to .npy files only
                assert r.exit_code == 2 and "written as a .npy array" in r.output, r.output
            else:
                assert r.exit_code == 1 and "which the rows are read from" in r.output, r.output
        assert target.read_bytes() == before
    r = CliRunner().invoke(
        main, ["batch", str(tmp_path / "d"), "--step", "0", *args, "-o", str(tmp_path / "b.npy")]
    )
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("cmd", ["batch", "batch --decode", "unshard"])
def test_output_below_a_file_names_the_output(tmp_path, cmd):
    # The error named only the hidden temporary file: "[Errno 2] ... '.b.npy.tmp-15924'".
    # A missing folder is created, as tokenize and merge create theirs.
    from click.testing import CliRunner
    from test_indexed import shard

    from pythia_data.cli import main

    from golden import golden_case

    small_index(tmp_path)
    (tmp_path / "afile").write_bytes(b"")
    for folder, error in (
        (tmp_path / "afile", "its folder {} is not a folder"),
        (tmp_path / "afile" / "sub", "{} is a file, not a folder"),
        (tmp_path / "x" / "new", None),
    ):
        if cmd == "unshard":
            prefix = shard(golden_case("long_docs"), tmp_path / f"s-{folder.name}", [100_001])
            out = folder / "whole.bin"
            args = ["unshard", str(prefix), "-o", str(folder / "whole"), "--quiet"]
        else:
            out = folder / "b.npy"
            index = ["--num-samples", "20", "--seq-length", "6", "--seed", "0"]
            args = ["batch", str(tmp_path / "d"), "--step", "0", "--batch-size", "2", *index]
            args += ["-o", str(out), *cmd.split()[1:]]
        r = CliRunner().invoke(main, args)
        if error is None:
            assert r.exit_code == 0, r.output
            assert out.is_file()
            continue
        assert r.exit_code == 1, r.output
        line = f"error: cannot write {out}: {error.format(tmp_path / 'afile')}"
        assert r.output.startswith(line) and ".tmp" not in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1


def test_output_error_names_the_folder_and_the_output_not_the_temporary(tmp_path):
    from pythia_data.errors import output_error

    out, tmp = tmp_path / "new" / "x.npy", tmp_path / "new" / ".x.npy.tmp-1"
    e = output_error(PermissionError(13, "Permission denied", str(tmp)), out, tmp)
    # Named by the nearest folder that exists (the one that refused it) and the output.
    assert str(e) == f"{tmp_path}: Permission denied (writing {out})" and e.errno == 13
    e = output_error(OSError(28, "No space left on device"), out, tmp)  # a write names no file
    assert str(e) == f"{out}: No space left on device" and e.errno == 28
    other = OSError(5, "Input/output error", str(tmp_path / "shard.bin"))  # an input's error
    assert output_error(other, out, tmp) is other


def _enforcing_permissions(cmd: list[str]) -> list[str]:
    """``cmd`` with file permissions enforced: root writes anywhere unless it drops that
    capability."""
    import shlex
    import shutil

    if os.geteuid() != 0:
        return cmd
    if shutil.which("capsh") is None:
        pytest.skip("running as root without capsh to drop CAP_DAC_OVERRIDE")
    return ["capsh", "--drop=cap_dac_override,cap_dac_read_search", "--", "-c",
            " ".join(map(shlex.quote, cmd))]  # fmt: skip


def run_with_read_only(
    folder: Path, cmd: list[str], env: dict, timeout: int
) -> subprocess.CompletedProcess:
    """``cmd`` run while ``folder`` is read-only (permissions enforced for root too), which it
    is no longer once it returns."""
    folder.chmod(0o555)
    try:
        return subprocess.run(
            _enforcing_permissions(cmd), capture_output=True, text=True, env=env, timeout=timeout
        )
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize(
    "cmd",
    ["unshard", "unshard -o", "build-index", "build-index sub", "batch", "batch --decode",
     "export-preshuffled"],
)  # fmt: skip
def test_a_read_only_output_folder_is_named_with_the_output(tmp_path, cmd):
    # The errors named the hidden file written first: "[Errno 13] Permission denied:
    # '.../.whole.bin.partial'", "ro/.d_train_0_..._sample_idx.npy.tmp-1234: Permission denied".
    from test_indexed import shard

    from golden import golden_case

    small_index(tmp_path)
    ro = tmp_path / "ro"
    index = ["--num-samples", "20", "--seq-length", "6", "--seed", "0"]
    if cmd == "unshard":
        args = ["unshard", str(shard(golden_case("long_docs"), ro, [100_001])), "-q"]
        out = ro / "long_docs.bin"
    else:
        ro.mkdir()
        if cmd == "unshard -o":
            prefix = shard(golden_case("long_docs"), tmp_path / "s", [100_001])
            out = ro / "sub" / "whole.bin"
            args = ["unshard", str(prefix), "-o", str(out.with_suffix("")), "-q"]
        elif cmd.startswith("build-index"):
            cache = ro / "sub" if cmd.endswith("sub") else ro
            args = ["build-index", str(tmp_path / "d"), *index[:-1], "1", "-q", "--cache-dir"]
            args.append(str(cache))
            # The arrays are written at once: whichever is refused first is named.
            out = cache / "d_train_0_indexmap_20ns_6sl_1s_"
        elif cmd.startswith("batch"):
            out = ro / "b.npy"
            args = ["batch", str(tmp_path / "d"), "--step", "0", "--batch-size", "2", *index]
            args += ["-o", str(out), *cmd.split()[1:]]
        else:
            out = ro / "pre.bin"
            args = ["export-preshuffled", str(tmp_path / "d"), str(ro / "pre"), "--rows", "2"]
            args += [*index, "-q"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    r = run_with_read_only(ro, [sys.executable, "-m", "pythia_data.cli", *args], env, 120)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith(f"error: {ro}: Permission denied (writing {out}"), r.stderr
    assert len(r.stderr.splitlines()) == 1 and ".tmp" not in r.stderr, r.stderr
    assert ".partial" not in r.stderr and "Errno" not in r.stderr, r.stderr


@pytest.mark.parametrize("cache", [False, True])
def test_build_index_refuses_a_read_only_folder_before_building(tmp_path, cache):
    # It failed only once doc_idx was built and shuffled (minutes to an hour at Pythia's size):
    # the timing laps of that work came before the error. Now the folder is probed first.
    small_index(tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    args = ["build-index", str(tmp_path / "d"), "--num-samples", "30", "--seq-length", "6", "-q"]
    if cache:
        args += ["--cache-dir", str(ro)]
    else:  # the data's own folder
        for ext in (".bin", ".idx"):
            (tmp_path / f"d{ext}").rename(ro / f"d{ext}")
        args[1] = str(ro / "d")
    base = "d_train_0_indexmap_30ns_6sl_1234s_"
    out = ro / f"{base}doc_idx.npy"
    before = sorted(os.listdir(ro))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHIA_INDEX_TIMING": "1"}
    run = [sys.executable, "-m", "pythia_data.cli", *args]
    r = run_with_read_only(ro, run, env, 120)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith(f"error: {ro}: Permission denied (writing {out})"), r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr  # no "[build-index] ... doc_idx shuffled"
    assert ("--cache-dir" in r.stderr) != cache, r.stderr
    # Once writable, the same command builds it, and the probe left nothing behind.
    ok = subprocess.run(run, capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    made = sorted(set(os.listdir(ro)) - set(before))
    files = ("doc_idx.npy", "sample_idx.npy", "shuffle_idx.npy", "meta.json")
    assert made == sorted(base + f for f in files), made


@pytest.mark.parametrize("cmd", ["unshard", "batch"])
def test_a_refused_temporary_is_named_by_its_folder_and_the_output(tmp_path, monkeypatch, cmd):
    # As above, for any user: the hidden file made first is refused, as a read-only folder does.
    import builtins

    from click.testing import CliRunner
    from test_indexed import shard

    from pythia_data.cli import main

    from golden import golden_case

    real_open = builtins.open

    def refusing_hidden_files(file, *args, **kwargs):
        if Path(file).name.startswith(".") and Path(file).parent == tmp_path / "o":
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_hidden_files)
    small_index(tmp_path)
    (tmp_path / "o").mkdir()
    if cmd == "unshard":
        prefix = shard(golden_case("long_docs"), tmp_path / "s", [100_001])
        out = tmp_path / "o" / "whole.bin"
        args = ["unshard", str(prefix), "-o", str(out.with_suffix("")), "-q"]
    else:
        out = tmp_path / "o" / "b.npy"
        index = ["--num-samples", "20", "--seq-length", "6", "--seed", "0"]
        args = ["batch", str(tmp_path / "d"), "--step", "0", "--batch-size", "2", *index]
        args += ["-o", str(out)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1, r.output
    assert r.output == f"error: {tmp_path / 'o'}: Permission denied (writing {out})\n", r.output


def test_verify_write_checksums_onto_the_dataset_is_refused(tmp_path):
    from click.testing import CliRunner

    from pythia_data.cli import main

    small_index(tmp_path)
    idx = tmp_path / "d.idx"
    before = idx.read_bytes()
    r = CliRunner().invoke(main, ["verify", str(tmp_path / "d"), "--write-checksums", str(idx)])
    assert r.exit_code == 1 and "would overwrite a file of the dataset" in r.output, r.output
    assert idx.read_bytes() == before


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_leaves_no_temporary_file(tmp_path):
    # The temporary output is made a link to /dev/full, where every write fails with ENOSPC.
    # The last flush (in finish) failing left `.NAME.tmp-PID` behind for good.
    from click.testing import CliRunner

    from pythia_data.cli import main

    small_index(tmp_path)
    d = str(tmp_path / "d")
    index = ["--num-samples", "20", "--seq-length", "6", "--seed", "0"]
    runs = [
        ("m.bin", ["merge", str(tmp_path / "m"), d]),
        (
            "x_train_0_indexmap_20ns_6sl_0s_doc_idx.npy",
            ["build-index", d, *index, "-q", "--cache-dir", str(tmp_path / "c")],
        ),
        ("sums", ["verify", d, "--write-checksums", str(tmp_path / "sums")]),
        (
            "b.npy",
            ["batch", d, "--step", "0", "--batch-size", "2", *index, "-o", str(tmp_path / "b.npy")],
        ),
    ]
    (tmp_path / "c").mkdir()
    for name, args in runs:
        where = tmp_path / "c" if args[0] == "build-index" else tmp_path
        name = name.replace("x_", "d_")
        temp = where / f".{name}.tmp-{os.getpid()}"
        if args[0] == "build-index":  # written by several jobs at once: host and token too
            temp = _core.shared_temp_path(where / name)
        temp.symlink_to("/dev/full")
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 1 and "No space left on device" in r.output, (args, r.output)
        assert name.split("_")[0].split(".")[0] in r.output, r.output  # the file is named
        assert "free space on that file system" in r.output  # and what to do
        assert not [p.name for p in where.iterdir() if ".tmp-" in p.name], args


@pytest.mark.parametrize("documents", ['"ab"', '["a", "b"]', "[1]", "[0, null]"])
def test_hand_edited_index_record_is_a_clear_error(tmp_path, documents):
    ds = small_index(tmp_path)
    record = ds.paths[0].with_name(ds.paths[0].name.replace("_doc_idx.npy", "_meta.json"))
    meta = record.read_text()
    record.write_text(re.sub(r'"documents": \[[^]]*\]', f'"documents": {documents}', meta))
    with pytest.raises(PythiaDataError, match="meta.json: unreadable index record"):
        reopen(ds)


@pytest.mark.parametrize("batch_size", [0, -4])
def test_batch_size_below_one_is_refused(tmp_path, batch_size):
    # batch(step, 0) returned an empty (0, seq_length + 1) batch for every step.
    ds = small_index(tmp_path)
    with pytest.raises(PythiaDataError, match="batch_size must be at least 1"):
        ds.batch(0, batch_size)
    with pytest.raises(PythiaDataError, match="batch_size must be at least 1"):
        ds.batches(0, 1, batch_size)


def test_outputs_that_name_no_file_are_refused(tmp_path, monkeypatch):
    """`-o ""` or `-o out/` (an existing directory) once wrote hidden files like `out/.bin`.
    Each is a usage error (status 2): `-o out`, the folder without its slash, was status 1."""
    from click.testing import CliRunner

    from pythia_data.cli import main
    from pythia_data.data import SAMPLE_CORPUS

    monkeypatch.chdir(tmp_path)
    small_index(tmp_path)  # tmp_path/d.bin + d.idx
    (tmp_path / "out").mkdir()
    for args in (
        ["tokenize", "-q", str(SAMPLE_CORPUS), "-o", ""],
        ["tokenize", "-q", str(SAMPLE_CORPUS), "-o", "out/"],
        ["tokenize", "-q", str(SAMPLE_CORPUS), "-o", "."],
        ["tokenize", "-q", str(SAMPLE_CORPUS), "-o", "out"],
        ["merge", "out", str(tmp_path / "d")],
        ["unshard", str(tmp_path / "d"), "-o", "out"],
        ["export-preshuffled", str(tmp_path / "d"), "out", "--seq-length", "6",
         "--train-iters", "1", "--global-batch-size", "2", "--seed", "0"],
    ):  # fmt: skip
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2 and "not a dataset prefix" in r.output, (args, r.output)
        assert r.exception is None or isinstance(r.exception, SystemExit), r.output
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("d")) == ["out"]
    assert list((tmp_path / "out").iterdir()) == []
    with pytest.raises(PythiaDataError, match="not a dataset prefix"):
        IndexedDatasetBuilder(tmp_path / "out", np.uint16)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("name", ["d.idx", "d.bin", "d.subsets.npy"])
def test_a_fifo_or_directory_in_place_of_a_data_file_is_refused_not_waited_on(tmp_path, name):
    # Opening a FIFO blocked until some writer came: IndexedDataset, info and verify hung.
    small_index(tmp_path)
    (tmp_path / "d.subsets.json").write_text('{"names": ["A"]}')
    np.save(tmp_path / "d.subsets.npy", np.zeros(6, np.uint16))
    target = tmp_path / name
    target.unlink()
    os.mkfifo(target)
    script = f"import pythia_data.cli as c; c.main(['info', {str(tmp_path / 'd')!r}])"
    env = {**os.environ, "PYTHONPATH": str(Path(pythia_data.__file__).resolve().parents[1])}
    r = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert r.returncode == 1 and f"{target}: not a regular file" in r.stderr, r.stderr
    target.unlink()
    target.mkdir()  # was "No such device" for the .idx
    r = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert r.returncode == 1 and str(target) in r.stderr and "directory" in r.stderr, r.stderr


def test_a_sample_ending_past_its_document_is_an_error_naming_the_index(tmp_path):
    # provenance() returned a span far past the document's end, and rows() refused it with
    # "offset ... is beyond the end of item ...", naming no file (GPT-NeoX reads on silently).
    ds = small_index(tmp_path)
    sample_idx = ds.paths[1]
    a = np.load(sample_idx)
    a[2:, 1] = np.iinfo(a.dtype).max  # every sample from 1 on ends far past its document
    np.save(sample_idx, a)
    ds = reopen_edited(ds)
    shuffle = np.load(ds.paths[2])
    k = int(np.flatnonzero(shuffle >= 1)[0])
    message = r"sample_idx.npy: sample \d+ ends at offset \d+ of document \d+, which has \d+ tokens"
    with pytest.raises(PythiaDataError, match=message):
        ds.provenance(k)
    with pytest.raises(PythiaDataError, match=message):
        ds.rows(0, len(ds))


def test_preshuffled_rows_of_another_length_name_the_length_to_give(tmp_path):
    with IndexedDatasetBuilder(tmp_path / "p", np.uint16) as b:
        for _ in range(4):
            b.add_document(np.arange(9))
    with pytest.raises(PythiaDataError, match="give seq_length 8, or leave it out"):
        PreshuffledDataset(tmp_path / "p", 2048)
    assert PreshuffledDataset(tmp_path / "p", 8).seq_length == 8


def test_a_negative_offset_or_length_is_an_index_error(tmp_path):
    # It reached the engine as a raw OverflowError.
    prefix = tmp_path / "d"
    with IndexedDatasetBuilder(prefix, np.uint16) as b:
        b.add_document(np.arange(9))
    ds = pythia_data.IndexedDataset(prefix)
    for kwargs in ({"offset": -1}, {"length": -2}):
        with pytest.raises(IndexError, match="must be 0 or more"):
            ds.get(0, **kwargs)
    assert ds.get(0, offset=2, length=3).tolist() == [2, 3, 4]


def _open_dataset(prefix: str) -> None:
    pythia_data.IndexedDataset(prefix)


def test_the_error_crosses_process_boundaries(tmp_path):
    # As _core.PythiaDataError it could not be pickled (no module "_core"): raised in a
    # multiprocessing worker, it reached the parent as an encoding error without its message.
    import multiprocessing
    import pickle

    e = pickle.loads(pickle.dumps(PythiaDataError("a message")))
    assert type(e) is PythiaDataError and str(e) == "a message"
    assert PythiaDataError.__module__ == "pythia_data"
    (tmp_path / "junk.idx").write_bytes(b"garbage")
    (tmp_path / "junk.bin").write_bytes(b"")
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        with pytest.raises(PythiaDataError, match="shorter than the 34-byte .idx header"):
            pool.map(_open_dataset, [str(tmp_path / "junk")])
