"""`pythia-data tokenize` when things go wrong around the run rather than in the text: a folder in
the way of the work directory, a crash inside the final step, a rerun with other arguments,
compressed streams that fail their checksums, odd option values."""

from __future__ import annotations

import gzip
import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import tokenizers
import zstandard
from click.testing import CliRunner
from progress_stops import stop_on_call

import pythia_data.tokenize
from pythia_data import IndexedDataset
from pythia_data.cli import main
from pythia_data.data import DEFAULT_TOKENIZER, SAMPLE_CORPUS
from pythia_data.tokenize import tokenize_files

DOCS = [f"document {i}: some text to tokenize, number {i * 7}" for i in range(40)]


def run(*args) -> object:
    return CliRunner().invoke(main, ["tokenize", "--quiet", *map(str, args)])


def write_jsonl(path: Path, texts=DOCS) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def oracle_ids(texts=DOCS) -> list[list[int]]:
    tok = tokenizers.Tokenizer.from_file(str(DEFAULT_TOKENIZER))
    return [tok.encode(t).ids + [0] for t in texts]


def items(prefix: Path) -> list[list[int]]:
    ds = IndexedDataset(prefix)
    return [ds[i].tolist() for i in range(len(ds))]


def output_bytes(prefix: Path) -> bytes:
    return b"".join(Path(f"{prefix}{ext}").read_bytes() for ext in (".bin", ".idx"))


def test_an_input_folder_named_like_the_work_directory_is_left_alone(tmp_path):
    # `-o data` makes data.partial/ the work directory; here that is the user's input folder.
    folder = tmp_path / "data.partial"
    folder.mkdir()
    src = write_jsonl(folder / "a.jsonl")
    result = run(folder, "-o", tmp_path / "data")
    assert result.exit_code == 1
    assert "not made by pythia-data tokenize" in result.output and "data.partial" in result.output
    assert src.read_text() == write_jsonl(tmp_path / "copy.jsonl").read_text()
    assert sorted(p.name for p in folder.iterdir()) == ["a.jsonl"]
    assert not (tmp_path / "data.bin").exists()


def test_a_foreign_folder_in_the_way_is_not_emptied_but_an_empty_one_is_used(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl")
    keep = tmp_path / "keep.partial"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    result = run(src, "-o", tmp_path / "keep")
    assert result.exit_code == 1 and "move it away or choose another --output" in result.output
    assert (keep / "notes.txt").read_text() == "mine"
    (tmp_path / "empty.partial").mkdir()
    result = run(src, "-o", tmp_path / "empty")
    assert result.exit_code == 0, result.output
    assert items(tmp_path / "empty") == oracle_ids()
    assert not (tmp_path / "empty.partial").exists()


def test_a_failed_run_removes_the_folders_it_made_for_its_output(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": 5}\n')
    result = run(bad, "-o", tmp_path / "new" / "deeper" / "out")
    assert result.exit_code == 1 and "line 2" in result.output
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    result = run(bad, "-o", tmp_path / "kept" / "new" / "out")
    assert result.exit_code == 1
    assert (tmp_path / "kept").is_dir() and list((tmp_path / "kept").iterdir()) == []


def test_a_symbolic_link_or_a_stray_checkpoint_does_not_make_a_folder_ours(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl")
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "link.partial").symlink_to(target)
    result = run(src, "-o", tmp_path / "link")
    assert result.exit_code == 1 and "a symbolic link" in result.output
    assert list(target.iterdir()) == []
    stray = tmp_path / "stray.partial"
    stray.mkdir()
    (stray / "checkpoint.json").write_text("[]")
    (stray / "notes.txt").write_text("mine")
    result = run(src, "-o", tmp_path / "stray")
    assert result.exit_code == 1 and "not made by pythia-data tokenize" in result.output
    assert (stray / "notes.txt").read_text() == "mine"


def interrupt_sample_run(prefix: Path, meta_key: str | None = "meta.pile_set_name") -> None:
    """Tokenize the sample into `prefix` and stop it (Ctrl-C) after a few checkpoints."""
    progress = stop_on_call(3)

    with pytest.raises(KeyboardInterrupt):
        tokenize_files(
            [SAMPLE_CORPUS], prefix, meta_key=meta_key, threads=1, chunk_bytes=20_000,
            checkpoint_seconds=0, progress=progress, progress_seconds=0,
        )  # fmt: skip


@pytest.mark.parametrize("meta_key", ["meta.pile_set_name", None])
def test_an_interrupted_run_resumes_with_or_without_a_meta_key(tmp_path, meta_key):
    prefix = tmp_path / "out"
    interrupt_sample_run(prefix, meta_key)
    report = tokenize_files([SAMPLE_CORPUS], prefix, meta_key=meta_key)
    assert report["resumed_documents"] > 0 and report["restart_note"] is None
    tokenize_files([SAMPLE_CORPUS], tmp_path / "clean", meta_key=meta_key)
    assert output_bytes(prefix) == output_bytes(tmp_path / "clean")


def test_an_unreadable_checkpoint_is_reported(tmp_path):
    prefix = tmp_path / "out"
    interrupt_sample_run(prefix)
    (tmp_path / "out.partial" / "checkpoint.json").write_text('{"format": 1, "fingerpr')
    report = tokenize_files([SAMPLE_CORPUS], prefix)
    assert "could not be read" in report["restart_note"] and report["resumed_documents"] == 0
    tokenize_files([SAMPLE_CORPUS], tmp_path / "clean")
    assert output_bytes(prefix) == output_bytes(tmp_path / "clean")


@pytest.mark.parametrize("meta_key", ["meta.pile_set_name", None])
def test_a_run_killed_inside_its_final_step_is_finished_by_the_same_command(tmp_path, meta_key):
    src = write_jsonl(tmp_path / "in.jsonl")
    prefix = tmp_path / "out"
    work = tmp_path / "out.partial"
    blocker = work / "final.idx"

    def block_the_index(*_):
        # Every write of the .idx fails (ENOSPC), after the checkpoint that says the run is
        # finished: the work stays, and nothing is renamed into place yet.
        if work.is_dir() and not blocker.is_symlink():
            blocker.symlink_to("/dev/full")

    with pytest.raises(OSError, match="run the same command again"):
        tokenize_files(
            [src], prefix, meta_key=meta_key, progress=block_the_index, progress_seconds=0
        )
    blocker.unlink()
    # Then the renames, as far as a kill between the .bin's and the .idx's leaves them.
    for name in ["subsets.npy", "subsets.json"] if meta_key else []:
        (work / name).rename(tmp_path / f"out.{name}")
    (work / "tokens.bin").rename(tmp_path / "out.bin")
    assert not (tmp_path / "out.idx").exists()
    report = tokenize_files([src], prefix, meta_key=meta_key)
    # Nothing was tokenized again: every document came from the interrupted run.
    assert report["resumed_documents"] == report["documents"] == len(DOCS)
    assert items(prefix) == oracle_ids()
    assert not (tmp_path / "out.partial").exists()
    tokenize_files([src], tmp_path / "clean", meta_key=meta_key)
    assert output_bytes(prefix) == output_bytes(tmp_path / "clean")


def test_a_rerun_with_other_arguments_says_it_starts_over(tmp_path):
    prefix = tmp_path / "out"
    interrupt_sample_run(prefix)
    assert (tmp_path / "out.partial" / "checkpoint.json").exists()
    result = run(SAMPLE_CORPUS, "-o", prefix, "--meta-key", "")
    assert result.exit_code == 0, result.output
    assert "note: the checkpoint in" in result.output and "starts over" in result.output
    assert "made by a different command (another --meta-key)" in result.output
    assert "resumed after" not in result.output
    tokenize_files([SAMPLE_CORPUS], tmp_path / "clean", meta_key=None)
    assert output_bytes(prefix) == output_bytes(tmp_path / "clean")


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_an_input_named_by_another_path_resumes(tmp_path, monkeypatch, kind):
    # `in/a.jsonl` and `../link/a.jsonl` (link -> in) are one input: the run started over.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    if kind == "parquet":
        pa = pytest.importorskip("pyarrow")
        pq = pytest.importorskip("pyarrow.parquet")
        pq.write_table(pa.table({"text": DOCS * 20}), "in/a.parquet", row_group_size=5)
        # Small groups are read together up to this many rows: many batches, to stop between.
        monkeypatch.setattr(pythia_data.tokenize, "ARROW_BATCH_ROWS", 10)
        src = Path("in/a.parquet")
    else:
        src = write_jsonl(Path("in/a.jsonl"), DOCS * 20)
    with pytest.raises(KeyboardInterrupt):
        tokenize_files(
            [src], "out", threads=1, chunk_bytes=2_000, checkpoint_seconds=0,
            progress=stop_on_call(3), progress_seconds=0,
        )  # fmt: skip
    (tmp_path / "link").symlink_to("in")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")  # then by `..`, through a linked folder
    report = tokenize_files([Path("../link") / src.name], tmp_path / "out")
    assert report["restart_note"] is None and report["resumed_documents"] > 0
    # Another input in its place is named.
    other = tmp_path / "in" / f"b{src.suffix}"
    shutil.copy(tmp_path / src, other)
    with pytest.raises(KeyboardInterrupt):
        tokenize_files(
            [tmp_path / src], tmp_path / "out2", threads=1, chunk_bytes=2_000, checkpoint_seconds=0,
            progress=stop_on_call(3), progress_seconds=0,
        )  # fmt: skip
    note = tokenize_files([other], tmp_path / "out2")["restart_note"]
    assert f"(input {other}, which it did not read)" in note


def _edit_keeping_size_and_time(path: Path, old: bytes, new: bytes) -> None:
    st = path.stat()
    data = path.read_bytes()
    assert len(old) == len(new) and old in data
    path.write_bytes(data.replace(old, new, 1))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def test_an_input_edited_in_place_with_its_size_and_time_kept_is_not_resumed(tmp_path):
    # As `cp -p` or `rsync -t` of an edited copy leaves it: the resumed run mixed the first
    # run's documents with the edited file's rest.
    src = write_jsonl(tmp_path / "in.jsonl", DOCS * 50)
    prefix = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        tokenize_files(
            [src], prefix, threads=1, chunk_bytes=2_000, checkpoint_seconds=0,
            progress=stop_on_call(3), progress_seconds=0,
        )  # fmt: skip
    _edit_keeping_size_and_time(src, b"document 0:", b"DOCUMENT 0:")
    report = tokenize_files([src], prefix)
    assert "starts over" in report["restart_note"] and report["resumed_documents"] == 0
    assert f"({src} changed since: its size, time or content)" in report["restart_note"]
    edited = ["DOCUMENT 0:" + DOCS[0][len("document 0:") :], *DOCS[1:], *DOCS * 49]
    assert items(prefix) == oracle_ids(edited)


def test_a_parquet_rerun_with_other_arguments_says_it_starts_over(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": DOCS, "title": DOCS[::-1]}), src, row_group_size=5)
    prefix = tmp_path / "out"

    def stop(*_):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tokenize_files([src], prefix, checkpoint_seconds=0, progress=stop)
    assert (tmp_path / "out.partial" / "checkpoint.json").exists()
    report = tokenize_files([src], prefix, text_key="title")
    assert "starts over" in report["restart_note"] and report["resumed_documents"] == 0
    assert "(another --text-key)" in report["restart_note"]
    assert items(prefix) == oracle_ids(DOCS[::-1])
    assert tokenize_files([src], tmp_path / "fresh")["restart_note"] is None


def zstd_with_bad_checksum(path: Path) -> Path:
    data = zstandard.ZstdCompressor(write_checksum=True).compress(
        write_jsonl(path.with_suffix(".tmp")).read_bytes()
    )
    # The frame's last 4 bytes are its checksum: the data decodes, the check then fails.
    path.write_bytes(data[:-4] + bytes(b ^ 0xFF for b in data[-4:]))
    return path


def gzip_with_bad_checksum(path: Path) -> Path:
    data = bytearray(gzip.compress(write_jsonl(path.with_suffix(".tmp")).read_bytes()))
    data[-8] ^= 0xFF  # the CRC-32 in the member's trailer
    path.write_bytes(bytes(data))
    return path


def gzip_with_bad_header_checksum(path: Path) -> Path:
    """A member whose header carries a CRC-16 (FHCRC) that does not match it."""
    header = bytearray(b"\x1f\x8b\x08\x02\0\0\0\0\0\xff")  # FLG = FHCRC
    header += struct.pack("<H", (zlib.crc32(bytes(header)) & 0xFFFF) ^ 0xFFFF)
    text = write_jsonl(path.with_suffix(".tmp")).read_bytes()
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = deflate.compress(text) + deflate.flush()
    path.write_bytes(bytes(header) + body + struct.pack("<II", zlib.crc32(text), len(text)))
    return path


@pytest.mark.parametrize(
    "make, name",
    [
        (zstd_with_bad_checksum, "in.jsonl.zst"),
        (gzip_with_bad_checksum, "in.jsonl.gz"),
        (gzip_with_bad_header_checksum, "in.jsonl.gz"),
    ],
)
def test_a_stream_failing_its_checksum_is_not_skipped(tmp_path, make, name):
    src = make(tmp_path / name)
    good = write_jsonl(tmp_path / "good.jsonl", ["after"])
    for extra in ([], ["--on-error", "skip"]):
        result = run(src, good, "-o", tmp_path / "out", *extra)
        assert result.exit_code == 1, result.output
        assert str(src) in result.output and "fails a checksum" in result.output
        assert "cannot be skipped" in result.output
        if make is gzip_with_bad_header_checksum:  # nothing was read from it before
            assert "line 1: " in result.output and "lines already read" not in result.output
        assert not (tmp_path / "out.bin").exists() and not (tmp_path / "out.partial").exists()


def test_bad_utf8_in_a_field_that_is_not_read_is_still_an_error(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(
        b'{"text": "ok", "meta": {"pile_set_name": "A"}}\n'
        b'{"text": "bad", "other": "caf\xe9"}\n'
        b'{"text": "fine"}\n'
    )
    result = run(src, "-o", tmp_path / "out")
    assert result.exit_code == 1 and f"{src}: line 2: invalid JSON" in result.output
    assert "invalid UTF-8" in result.output
    result = run(src, "-o", tmp_path / "out", "--on-error", "skip")
    assert result.exit_code == 0 and "skipped 1 bad lines" in result.output
    assert items(tmp_path / "out") == oracle_ids(["ok", "fine"])


def test_checkpoint_seconds_infinite_means_never_and_nan_is_refused(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl")
    result = run(src, "-o", tmp_path / "inf", "--checkpoint-seconds", "inf")
    assert result.exit_code == 0, result.output
    assert items(tmp_path / "inf") == oracle_ids()
    result = run(src, "-o", tmp_path / "nan", "--checkpoint-seconds", "nan")
    assert result.exit_code == 2 and "not nan" in result.output
    for value in (math.inf, 1e300):
        tokenize_files([src], tmp_path / "api", checkpoint_seconds=value, progress_seconds=value)
        assert items(tmp_path / "api") == oracle_ids()
    with pytest.raises(ValueError, match="checkpoint_seconds must be a number of seconds"):
        tokenize_files([src], tmp_path / "api", checkpoint_seconds=math.nan)


def test_the_python_api_takes_one_path_and_a_tokenizer_path_and_checks_its_options(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl")
    # One path is one input (not the characters of its name); a tokenizer may be given by path.
    for one in (str(src), src):
        tokenize_files(one, tmp_path / "one", tokenizer=str(DEFAULT_TOKENIZER))
        assert items(tmp_path / "one") == oracle_ids()
    # Bad options are refused by name before anything is written.
    for kwargs, error, message in [
        ({"tokenizer": object()}, TypeError, "tokenizer must be a pythia_data.Tokenizer"),
        ({"threads": -1}, ValueError, "threads must be 0 or more"),
        ({"chunk_bytes": -1}, ValueError, "chunk_bytes must be 0 or more"),
        ({"progress": 5}, TypeError, "progress must be callable"),
        # 2**40 threads (or a chunk of 2**50 bytes) aborted the process on the memory for them;
        # ten million threads spawned for minutes; "2" failed comparing str and int.
        ({"threads": 2**40}, ValueError, "threads 1099511627776 is more than the most a run"),
        ({"threads": 10**7}, ValueError, "threads 10000000 is more than the most a run"),
        ({"chunk_bytes": 2**50}, ValueError, "chunk_bytes .* is more than the most a run"),
        ({"parallel_files": 10**6}, ValueError, "parallel_files 1000000 is more than the most"),
        ({"threads": "2"}, TypeError, "threads must be an integer, not str"),
        ({"chunk_bytes": 2.5}, TypeError, "chunk_bytes must be an integer, not float"),
        ({"checkpoint_seconds": -1}, ValueError, "checkpoint_seconds must be 0 or more"),
        # True ran one thread and False every core; "5" failed in Python's own words.
        ({"threads": True}, TypeError, "threads must be an integer, not bool"),
        ({"parallel_files": False}, TypeError, "parallel_files must be an integer, not bool"),
        ({"part_bytes": 2**70}, ValueError, "part_bytes .* is more than the most a run takes"),
        ({"checkpoint_seconds": "5"}, TypeError, "checkpoint_seconds must be a number of sec"),
        ({"checkpoint_seconds": True}, TypeError, "checkpoint_seconds must be a number of sec"),
        ({"progress_seconds": -1}, ValueError, "progress_seconds must be 0 or more"),
    ]:
        with pytest.raises(error, match=message):
            tokenize_files([src], tmp_path / "bad", **kwargs)
    assert not list(tmp_path.glob("bad*"))


def test_a_temporary_left_by_a_run_killed_while_writing_the_subsets_is_removed(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl")
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())  # no process has this PID
    stale = tmp_path / f".out.subsets.json.tmp-{pid_max + 1}"
    stale.write_text('{"key": "meta.pile')
    assert run(src, "-o", tmp_path / "out").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".", "out"))) == [
        f"out{ext}" for ext in (".bin", ".idx", ".subsets.json", ".subsets.npy")
    ]


def finished_but_for_the_work_directory(tmp_path: Path, src: Path, prefix: Path) -> None:
    """Leave `prefix` as a run killed after writing its .idx, while deleting its work directory
    (the last thing it does), leaves it: the output complete, the work directory still there."""
    work = tmp_path / f"{prefix.name}.partial"
    blocker = work / "final.idx"

    def block_the_index(*_):
        if work.is_dir() and not blocker.is_symlink():
            blocker.symlink_to("/dev/full")  # ENOSPC, after the checkpoint that says finished

    with pytest.raises(OSError, match="run the same command again"):
        tokenize_files([src], prefix, progress=block_the_index, progress_seconds=0)
    blocker.unlink()
    # Then every rename, and the .idx that final step writes: an undisturbed run's.
    for name in ["subsets.npy", "subsets.json"]:
        (work / name).rename(f"{prefix}.{name}")
    (work / "tokens.bin").rename(f"{prefix}.bin")
    tokenize_files([src], tmp_path / "clean")
    Path(f"{prefix}.idx").write_bytes((tmp_path / "clean.idx").read_bytes())


@pytest.mark.parametrize("deleted", [[], ["sizes.i32", "subsets.u16"]])
def test_a_run_killed_while_deleting_its_work_directory_is_not_done_again(tmp_path, deleted):
    src = write_jsonl(tmp_path / "in.jsonl")
    prefix = tmp_path / "out"
    finished_but_for_the_work_directory(tmp_path, src, prefix)
    for name in deleted:  # killed further into the deletion
        (tmp_path / "out.partial" / name).unlink()
    report = tokenize_files([src], prefix)
    # It used to find the checkpoint "no longer matches the files beside it" and start over.
    assert report["restart_note"] is None
    assert report["resumed_documents"] == report["documents"] == len(DOCS)
    assert not (tmp_path / "out.partial").exists()
    assert items(prefix) == oracle_ids()
    assert output_bytes(prefix) == output_bytes(tmp_path / "clean")


def write_with_bad_lines(path: Path) -> Path:
    """DOCS with a bad line after every third: 14 bad lines, more than a report shows."""
    lines = []
    for i, text in enumerate(DOCS):
        lines.append(json.dumps({"text": text}))
        if i % 3 == 0:
            lines.append(f'{{"text": {i}}}')
    path.write_text("\n".join(lines) + "\n")
    return path


def write_parquet_with_nulls(path: Path) -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    texts = [None if i % 3 == 0 else t for i, t in enumerate(DOCS)]
    pq.write_table(pa.table({"text": texts}), path, row_group_size=5)
    return path


@pytest.mark.parametrize(
    "make, name", [(write_with_bad_lines, "in.jsonl"), (write_parquet_with_nulls, "in.parquet")]
)
def test_a_resumed_run_reports_the_skipped_lines_of_the_run_it_continues(
    tmp_path, monkeypatch, make, name
):
    # The examples of skipped lines used to be those the last run met itself: none at all when
    # the interrupted run had read past every bad line.
    src = make(tmp_path / name)
    # Small Parquet groups are read together up to this many rows: many batches, to stop between.
    monkeypatch.setattr(pythia_data.tokenize, "ARROW_BATCH_ROWS", 10)
    clean = tokenize_files([src], tmp_path / "clean", on_error="skip")
    stop = stop_on_call(4)

    with pytest.raises(KeyboardInterrupt):
        tokenize_files(
            [src], tmp_path / "out", on_error="skip", threads=1, chunk_bytes=300,
            checkpoint_seconds=0, progress=stop, progress_seconds=0,
        )  # fmt: skip
    resumed = tokenize_files([src], tmp_path / "out", on_error="skip")
    assert resumed["resumed_documents"] > 0
    assert clean["errors_skipped"] == 14 and len(clean["skipped_examples"]) == 10
    for key in ("documents", "tokens", "empty_skipped", "errors_skipped", "skipped_examples"):
        assert resumed[key] == clean[key], key
    assert output_bytes(tmp_path / "out") == output_bytes(tmp_path / "clean")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_during_the_final_step_keeps_the_complete_output(tmp_path, monkeypatch, sig):
    # A signal that arrives while the output is moved into place (native code, which calls no
    # progress) is handled when that step returns. It used to be raised there: "interrupted"
    # with status 130 and no summary though the output was complete, and the same command (a
    # requeued job) then tokenized everything again.
    import pythia_data.cli.tokenize as cli_tokenize

    def signalled_at_the_end(*args, **kwargs):
        report = tokenize_files(*args, **kwargs)
        os.kill(os.getpid(), sig)
        return report

    monkeypatch.setattr(cli_tokenize, "tokenize_files", signalled_at_the_end)
    src = write_jsonl(tmp_path / "in.jsonl")
    result = run(src, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert f"{len(DOCS)} documents" in result.output and "interrupted" not in result.output
    assert items(tmp_path / "out") == oracle_ids()
    assert not (tmp_path / "out.partial").exists()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_process_forked_during_a_run_does_not_keep_the_output_locked(tmp_path):
    # A DataLoader worker or multiprocessing pool forked while a run holds its lock (here from
    # the progress callback) lives on after the run stops; the parent's rerun must not be
    # refused as if another run were writing.
    src = write_jsonl(tmp_path / "in.jsonl", DOCS * 50)
    read_end, write_end = os.pipe()
    children = []

    class Stop(Exception):
        pass

    def fork_then_stop(*_):
        if not children:
            pid = os.fork()
            if pid == 0:  # the child waits for the parent's rerun, holding what it inherited
                os.close(write_end)
                os.read(read_end, 1)
                os._exit(0)
            children.append(pid)
        raise Stop

    try:
        with pytest.raises(Stop):
            tokenize_files(
                [src], tmp_path / "out", threads=1, chunk_bytes=256, checkpoint_seconds=0,
                progress=fork_then_stop, progress_seconds=0,
            )  # fmt: skip
        assert children and (tmp_path / "out.partial").is_dir()
        report = tokenize_files([src], tmp_path / "out", threads=1)
        assert report["resumed_documents"] > 0
        assert items(tmp_path / "out") == oracle_ids(DOCS * 50)
    finally:
        os.close(write_end)
        os.close(read_end)
        for pid in children:
            os.waitpid(pid, 0)


def test_a_run_that_only_has_to_delete_its_work_directory_survives_another_stop(tmp_path):
    # The rerun of a run killed while deleting its work directory can itself be stopped (Ctrl-C,
    # a second SIGTERM) before that deletion. Its stop used to record an unfinished checkpoint
    # beside empty work files, and the run after it tokenized everything again.
    src = write_jsonl(tmp_path / "in.jsonl")
    prefix = tmp_path / "out"
    finished_but_for_the_work_directory(tmp_path, src, prefix)

    def stop(*_):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tokenize_files([src], prefix, progress=stop, progress_seconds=0)
    assert output_bytes(prefix) == output_bytes(tmp_path / "clean")
    report = tokenize_files([src], prefix)
    assert report["restart_note"] is None
    assert report["resumed_documents"] == report["documents"] == len(DOCS)
    assert not (tmp_path / "out.partial").exists()
    assert output_bytes(prefix) == output_bytes(tmp_path / "clean")


def test_the_checkpoint_is_the_last_file_of_the_work_directory_deleted(tmp_path):
    # Deleting the work directory of a complete output stops (here: the marker cannot be
    # removed, standing for a kill at that moment). The checkpoint must still be there, so that
    # the same command finishes; deleted before the marker, the next run started over.
    src = write_jsonl(tmp_path / "in.jsonl")
    prefix = tmp_path / "out"
    marker = tmp_path / "out.partial" / ".pythia-data-tokenize"

    def block_the_marker(*_):
        if marker.is_file():
            marker.unlink()
            (marker / "x").mkdir(parents=True)

    with pytest.raises(OSError, match="run the same command again"):
        tokenize_files([src], prefix, progress=block_the_marker, progress_seconds=0)
    (marker / "x").rmdir()
    marker.rmdir()
    report = tokenize_files([src], prefix)
    assert report["restart_note"] is None
    assert report["resumed_documents"] == report["documents"] == len(DOCS)
    assert not (tmp_path / "out.partial").exists()
    assert items(prefix) == oracle_ids()


@pytest.mark.parametrize("work_directory_left", [True, False])
def test_a_finished_checkpoint_moved_out_of_the_work_directory_finishes_the_run(
    tmp_path, work_directory_left
):
    # What a kill leaves after the checkpoint of a complete output left its emptied work
    # directory (moved beside it, hidden, until the directory is gone), without strace.
    src = write_jsonl(tmp_path / "in.jsonl")
    prefix = tmp_path / "out"
    finished_but_for_the_work_directory(tmp_path, src, prefix)
    work = tmp_path / "out.partial"
    record = tmp_path / ".out.partial-finished.json"
    (work / "checkpoint.json").rename(record)
    shutil.rmtree(work)
    if work_directory_left:
        work.mkdir()
    report = tokenize_files([src], prefix)
    assert report["restart_note"] is None
    assert report["resumed_documents"] == report["documents"] == len(DOCS)
    assert not work.exists() and not record.exists()
    assert output_bytes(prefix) == output_bytes(tmp_path / "clean")
    # One left by another command: deleted, and that command starts over as after a clean end.
    finished_but_for_the_work_directory(tmp_path, src, prefix)
    (work / "checkpoint.json").rename(record)
    shutil.rmtree(work)
    report = tokenize_files([src], prefix, meta_key=None)
    assert report["restart_note"] is None and report["resumed_documents"] == 0
    assert not work.exists() and not record.exists()
    assert items(prefix) == oracle_ids()


def _strace_works() -> bool:
    if shutil.which("strace") is None:
        return False
    return subprocess.run(["strace", "-o", os.devnull, "true"], capture_output=True).returncode == 0


#: The calls that put an output in place and delete its work directory.
FINISHING_CALLS = "rename,renameat,renameat2,unlink,unlinkat,rmdir"


@pytest.mark.skipif(not _strace_works(), reason="needs strace, allowed to trace")
@pytest.mark.parametrize("name", ["in.jsonl", "in.parquet"])
def test_a_run_killed_at_any_step_of_finishing_is_not_done_again(tmp_path, name):
    # SIGKILL (strace's fault injection) before each call that moves the output into place or
    # deletes the work directory, once its checkpoint says finished. Killed between deleting
    # that checkpoint and the emptied directory, the next run found an empty work directory
    # and tokenized everything again.
    if name.endswith(".parquet"):
        pa = pytest.importorskip("pyarrow")
        pq = pytest.importorskip("pyarrow.parquet")
        src = tmp_path / name
        pq.write_table(pa.table({"text": DOCS}), src, row_group_size=10)
    else:
        src = write_jsonl(tmp_path / name)
    tokenize_files([src], tmp_path / "clean")
    env = {**os.environ, "PYTHONPATH": str(Path(pythia_data.__file__).resolve().parents[1])}

    def run_traced(folder: Path, *strace: str) -> int:
        folder.mkdir()
        command = [
            "strace", "-qq", *strace, sys.executable, "-m", "pythia_data.cli", "tokenize",
            "--quiet", "--checkpoint-seconds", "inf", str(src), "-o", str(folder / "out"),
        ]  # fmt: skip
        return subprocess.run(command, env=env, capture_output=True).returncode

    def calls_on(folder: Path, *strace: str) -> list[str]:
        log = tmp_path / f"{folder.name}.log"
        options = ["-o", str(log), *strace, "-e", f"trace={FINISHING_CALLS}"]
        assert run_traced(folder, *options) == 0
        return [c for c in log.read_text().splitlines() if str(folder) in c]

    calls = calls_on(tmp_path / "traced")
    # The last checkpoint written (renamed into place): the one that says finished.
    finished = max(i for i, c in enumerate(calls) if "/.checkpoint.json.tmp-" in c)
    finishing = len(calls) - finished - 1
    assert finishing >= 8, calls
    # Only the calls on the paths the finishing calls name are counted: the same ones in every
    # run (strace's -P also leaves out some the run made on them before).
    paths = sorted({p for c in calls[finished + 1 :] for p in c.split('"')[1::2]})

    def only(folder: Path) -> list[str]:
        traced = str(tmp_path / "traced")
        return [a for p in paths for a in ("-P", p.replace(traced, str(folder)))]

    counted = tmp_path / "counted"
    calls = calls_on(counted, *only(counted))
    for k in range(len(calls) - finishing, len(calls)):
        call = calls[k].split("(")[0]
        nth = sum(c.startswith(call + "(") for c in calls[: k + 1])
        folder = tmp_path / f"killed-{k}"
        kill = f"inject={call}:signal=KILL:when={nth}"
        returncode = run_traced(folder, *only(folder), "-e", f"trace={call}", "-e", kill)
        assert returncode == -signal.SIGKILL, calls[k]
        report = tokenize_files([src], folder / "out")
        # Finished, not tokenized again: every document came from the killed run.
        assert report["restart_note"] is None, calls[k]
        assert report["resumed_documents"] == report["documents"] == len(DOCS), calls[k]
        assert sorted(p.name for p in folder.iterdir()) == [
            f"out{ext}" for ext in (".bin", ".idx", ".subsets.json", ".subsets.npy")
        ], calls[k]
        for ext in (".bin", ".idx", ".subsets.json", ".subsets.npy"):
            clean = (tmp_path / f"clean{ext}").read_bytes()
            assert (folder / f"out{ext}").read_bytes() == clean, (calls[k], ext)


def test_a_signal_the_parent_ignores_stays_ignored(tmp_path, monkeypatch):
    # A job started in the background by a script (`cmd &`) ignores SIGINT, as does one a
    # scheduler told to; Python keeps that. The run's stop handlers used to replace it, so a
    # Ctrl-C meant for the script stopped the background run too.
    import pythia_data.cli.tokenize as cli_tokenize

    def signalled_during_the_run(*args, progress, **kwargs):
        def progress_after_a_signal(*p):
            os.kill(os.getpid(), signal.SIGINT)
            progress(*p)

        return tokenize_files(*args, progress=progress_after_a_signal, **kwargs)

    monkeypatch.setattr(cli_tokenize, "tokenize_files", signalled_during_the_run)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = run(write_jsonl(tmp_path / "in.jsonl"), "-o", tmp_path / "out")
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result.exit_code == 0, result.output
    assert items(tmp_path / "out") == oracle_ids()


def test_a_saved_dataset_saved_again_in_place_is_not_resumed(tmp_path):
    # save_to_disk over an earlier save rewrites its files in place: the directory's size and
    # time stayed the same, and the rerun resumed, writing the first save's documents first.
    pa = pytest.importorskip("pyarrow")
    texts = [f"document {i:02d} of the first save" for i in range(40)]
    src = tmp_path / "saved"
    src.mkdir()
    (src / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data.arrow"}]}))

    def save(texts):
        table = pa.table({"text": texts})
        with pa.OSFile(str(src / "data.arrow"), "wb") as sink:
            with pa.ipc.new_stream(sink, table.schema) as w:
                for batch in table.to_batches(max_chunksize=10):
                    w.write_batch(batch)

    save(texts)
    stop = stop_on_call(2)

    with pytest.raises(KeyboardInterrupt):
        tokenize_files(src, tmp_path / "out", checkpoint_seconds=0, progress=stop)
    size, directory_time = (src / "data.arrow").stat().st_size, src.stat().st_mtime_ns
    save(texts[::-1])
    stamp = (src / "data.arrow").stat().st_mtime_ns + 10**9  # whatever the clock's resolution
    os.utime(src / "data.arrow", ns=(stamp, stamp))
    assert (src / "data.arrow").stat().st_size == size and src.stat().st_mtime_ns == directory_time
    report = tokenize_files(src, tmp_path / "out")
    assert "starts over" in report["restart_note"] and report["resumed_documents"] == 0
    assert items(tmp_path / "out") == oracle_ids(texts[::-1])
