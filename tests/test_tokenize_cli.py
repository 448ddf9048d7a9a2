"""`pythia-data tokenize` end to end: the output must be byte-identical to GPT-NeoX's layout
built from the reference tokenizer (Hugging Face ``tokenizers``) through the indexed builder."""

from __future__ import annotations

import functools
import gzip
import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import zstandard
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from progress_stops import stop_on_call

import pythia_data
from pythia_data import IndexedDataset, IndexedDatasetBuilder, PythiaDataError, merge_datasets
from pythia_data.cli import main
from pythia_data.data import DEFAULT_TOKENIZER, SAMPLE_CORPUS
from pythia_data.tokenize import find_inputs, merge_subsets, tokenize_files

tokenizers = pytest.importorskip("tokenizers")

# The subprocess must import the same pythia_data as this process (the installed wheel in CI).
PYTHIA_DATA_ROOT = Path(pythia_data.__file__).resolve().parents[1]


def sample_lines() -> list[str]:
    with open(SAMPLE_CORPUS, "rb") as f:
        raw = zstandard.ZstdDecompressor().stream_reader(f).read().decode("utf-8")
    return [line for line in io.StringIO(raw).read().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return sample_lines()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, lines):
    """GPT-NeoX's output for the sample, from the oracle tokenizer: (prefix, names, codes)."""
    ref = tokenizers.Tokenizer.from_file(str(DEFAULT_TOKENIZER))
    docs = [json.loads(line) for line in lines]
    docs = [d for d in docs if d["text"]]
    prefix = tmp_path_factory.mktemp("ref") / "sample"
    with IndexedDatasetBuilder(prefix, np.uint16) as b:
        for enc in ref.encode_batch([d["text"] for d in docs]):
            b.add_document(enc.ids + [0])
    names: list[str] = []
    for d in docs:
        if d["meta"]["pile_set_name"] not in names:
            names.append(d["meta"]["pile_set_name"])
    codes = [names.index(d["meta"]["pile_set_name"]) for d in docs]
    return prefix, names, codes


@functools.cache
def ours():
    return pythia_data.Tokenizer.from_file()


@functools.cache
def oracle():
    return tokenizers.Tokenizer.from_file(str(DEFAULT_TOKENIZER))


def run(*args: str) -> subprocess.CompletedProcess:
    return CliRunner().invoke(main, ["tokenize", "--quiet", *map(str, args)])


def dataset_bytes(prefix: Path, subsets: bool = True) -> bytes:
    names = [".bin", ".idx"] + ([".subsets.npy", ".subsets.json"] if subsets else [])
    return b"".join(Path(f"{prefix}{n}").read_bytes() for n in names)


def assert_matches_reference(prefix: Path, reference) -> None:
    ref_prefix, names, codes = reference
    assert Path(f"{prefix}.bin").read_bytes() == Path(f"{ref_prefix}.bin").read_bytes()
    assert Path(f"{prefix}.idx").read_bytes() == Path(f"{ref_prefix}.idx").read_bytes()
    assert np.load(f"{prefix}.subsets.npy").tolist() == codes
    table = json.loads(Path(f"{prefix}.subsets.json").read_text())
    assert table == {"key": "meta.pile_set_name", "names": names}
    assert not Path(f"{prefix}.partial").exists()


def run_with_files_limited_to_2mb(cmd: list[str], env: dict) -> subprocess.CompletedProcess:
    """Run `cmd` where writing past 2 MB of a file fails (EFBIG), as a full disk would."""
    import resource

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))

    return subprocess.run(cmd, env=env, capture_output=True, text=True, preexec_fn=limit_file_size)


def write_zst_frames(path: Path, lines: list[str], frames: int = 3) -> None:
    """Concatenated zstd frames, as the Pile's shards are written."""
    step = len(lines) // frames + 1
    with open(path, "wb") as f:
        for i in range(0, len(lines), step):
            f.write(
                zstandard.ZstdCompressor().compress(
                    "".join(x + "\n" for x in lines[i : i + step]).encode()
                )
            )


def test_sample_matches_gpt_neox_layout(tmp_path, reference):
    result = run(SAMPLE_CORPUS, "--output", tmp_path / "out" / "sample")
    assert result.exit_code == 0, result.output
    assert "296 documents" in result.output
    assert (
        "skipped 1 empty text\n" in result.output
        and "tokens (uint16) from 1 file\n" in result.output
    )
    assert_matches_reference(tmp_path / "out" / "sample", reference)
    ds = IndexedDataset(tmp_path / "out" / "sample")
    assert len(ds) == 296 and ds.doc_idx.tolist() == list(range(297))
    assert all(ds[i][-1] == 0 for i in range(len(ds)))


def test_input_formats_and_directories_agree(tmp_path, lines, reference):
    half = len(lines) // 2
    d = tmp_path / "in"
    d.mkdir()
    write_zst_frames(d / "a.jsonl.zst", lines[:half])
    with open(d / "b.jsonl.gz", "wb") as f:  # two gzip members
        f.write(gzip.compress("".join(x + "\n" for x in lines[half : half + 10]).encode()))
        f.write(gzip.compress("".join(x + "\n" for x in lines[half + 10 :]).encode()))
    (d / "ignored.txt").write_text("not an input")
    result = run(d, "--output", tmp_path / "dir")
    assert result.exit_code == 0, result.output
    assert_matches_reference(tmp_path / "dir", reference)
    plain = tmp_path / "all.jsonl"
    plain.write_text(
        "".join(x + "\n" for x in lines[:half]) + "\n" + "".join(x + "\n" for x in lines[half:])
    )
    result = run(plain, "--output", tmp_path / "plain", "--threads", "1")
    assert result.exit_code == 0, result.output
    assert_matches_reference(tmp_path / "plain", reference)


def test_output_independent_of_threads_and_chunking(tmp_path):
    outs = []
    # From 6 threads on, one thread of its own reads the input (the workers only tokenize).
    for threads, chunk in [(1, 1 << 20), (2, 3000), (4, 1), (6, 50_000), (9, 1)]:
        prefix = tmp_path / f"t{threads}"
        tokenize_files([SAMPLE_CORPUS], prefix, threads=threads, chunk_bytes=chunk)
        outs.append(dataset_bytes(prefix))
    assert all(out == outs[0] for out in outs[1:])


def test_text_key_and_no_meta(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text('{"content": "hello  world", "text": 1}\n{"content": ""}\n{"content": "a b"}\n')
    result = run(src, "--output", tmp_path / "c", "--text-key", "content", "--meta-key", "")
    assert result.exit_code == 0, result.output
    ds = IndexedDataset(tmp_path / "c")
    # "hello  world" → [25521, 50276, 10186] (shared/spec/tokenizer.md), then EOD.
    assert ds[0].tolist() == [25521, 50276, 10186, 0]
    assert ds[1].tolist() == [66, 270, 0]
    assert not (tmp_path / "c.subsets.npy").exists()


def test_a_meta_key_no_document_has_is_noted(tmp_path):
    # A --meta-key spelled wrong gave every document an empty subset, and no word of it.
    src = tmp_path / "c.jsonl"
    src.write_text('{"text": "a", "meta": {"pile_set_name": "ArXiv"}}\n{"text": "b"}\n')
    note = "note: no document has a subset name at --meta-key 'meta.pile_sett' (a string, not "
    result = run(src, "-o", tmp_path / "typo", "--meta-key", "meta.pile_sett")
    assert result.exit_code == 0, result.output
    held = 'so every subset is empty (a JSON line holds it as {"meta": {"pile_sett": "NAME"}})'
    assert f"{note}empty), {held}" in result.output, result.output
    assert np.load(tmp_path / "typo.subsets.npy").tolist() == [0, 0]
    # The key found in one document, or the default key (a corpus that is not the Pile need
    # not have it): nothing to say.
    for extra in (["--meta-key", "meta.pile_set_name"], []):
        result = run(src, "-o", tmp_path / "ok", *extra)
        assert result.exit_code == 0 and "note:" not in result.output, result.output
    (tmp_path / "plain.jsonl").write_text('{"text": "a"}\n')
    result = run(tmp_path / "plain.jsonl", "-o", tmp_path / "plain")
    assert result.exit_code == 0 and "note:" not in result.output, result.output


def test_a_flattened_meta_key_in_json_lines_is_the_subset(tmp_path):
    # pandas' json_normalize(...).to_json(lines=True) writes "meta.pile_set_name" as one key:
    # every document got the empty subset (Parquet read such a column already).
    src = tmp_path / "flat.jsonl"
    lines = [
        {"text": "a", "meta.pile_set_name": "ArXiv"},
        {"text": "b", "meta.pile_set_name": "Pile-CC"},
        {"text": "c", "meta": {"pile_set_name": "Nested"}, "meta.pile_set_name": "Flat"},
        {"text": "d", "meta": {}, "meta.pile_set_name": "ArXiv"},
        {"text": "e"},
    ]
    src.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = run(src, "-o", tmp_path / "out")
    assert result.exit_code == 0 and "note:" not in result.output, result.output
    names = json.loads((tmp_path / "out.subsets.json").read_text())["names"]
    got = [names[i] for i in np.load(tmp_path / "out.subsets.npy").tolist()]
    assert got == ["ArXiv", "Pile-CC", "Nested", "ArXiv", ""]


def test_json_files_passed_over_in_a_folder_are_noted(tmp_path):
    # `datasets`' to_json writes JSON lines as .json, which a folder's search passes over (as it
    # must: so much else is named .json): such a corpus lost those files without a word.
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "p.json").write_text('{"text": "a"}\n')
    (d / "z.jsonl").write_text('{"text": "b"}\n')
    result = run(d, "-o", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert f"note: passed over 1 .json file(s) in the input folders (such as {d}/sub/p.json)" in (
        result.output
    )
    assert len(IndexedDataset(tmp_path / "o")) == 1
    # A folder of only such files (`to_json` output) has no inputs: the error says what it has.
    result = run(d / "sub", "-o", tmp_path / "none")
    assert result.exit_code == 1, result.output
    assert "; it holds 1 .json file(s), read as JSON lines only when named" in result.output
    # Named, it is read, and there is nothing to note.
    result = run(d / "z.jsonl", d / "sub" / "p.json", "-o", tmp_path / "o")
    assert result.exit_code == 0 and "note:" not in result.output, result.output
    assert len(IndexedDataset(tmp_path / "o")) == 2


def test_an_output_in_its_input_folder_is_not_noted_as_passed_over(tmp_path):
    # With outputs written into the input folder, their PREFIX.subsets.json, a shard's
    # .shard.json and the work directory's checkpoint.json were noted as corpus files
    # passed over, on every rerun and in every shard of an array.
    d = tmp_path / "in"
    d.mkdir()
    for name in ("a", "b"):
        (d / f"{name}.jsonl").write_text("".join(f'{{"text": "{name}{i}"}}\n' for i in range(50)))
    with pytest.raises(KeyboardInterrupt):  # leaves the work directory, checkpoint and all
        tokenize_files(
            find_inputs([d]),
            d / "o",
            threads=1,
            chunk_bytes=64,
            checkpoint_seconds=0,
            progress_seconds=0,
            progress=stop_on_call(2),
        )
    assert (d / "o.partial" / "checkpoint.json").is_file()
    for _ in range(2):  # resumed, then over the finished output
        result = run(d, "-o", d / "o")
        assert result.exit_code == 0 and "note:" not in result.output, result.output
    for i in range(2):
        result = run(d, "-o", d / "p", "--shard-index", i, "--num-shards", 2)
        assert result.exit_code == 0 and "note:" not in result.output, result.output
    # A .json file of the corpus itself is still noted.
    (d / "c.json").write_text('{"text": "c"}\n')
    result = run(d, "-o", d / "o")
    assert f"note: passed over 1 .json file(s) in the input folders (such as {d}/c.json)" in (
        result.output
    )


def test_byte_order_mark_line_ends_and_last_line(tmp_path):
    # Messy files that are still valid: a UTF-8 BOM (Windows editors), CRLF line ends, a last
    # line without newline, gzip with a BOM inside the stream. All give the plain file's ids.
    body = '{"text": "hello"}\n{"text": "world"}\n'
    (tmp_path / "plain.jsonl").write_text(body)
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + body.encode())
    (tmp_path / "crlf.jsonl").write_bytes(body.replace("\n", "\r\n").encode())
    (tmp_path / "nonl.jsonl").write_text(body.rstrip("\n"))
    with gzip.open(tmp_path / "bom.jsonl.gz", "wb") as f:
        f.write(b"\xef\xbb\xbf" + body.encode())
    want = None
    for name in ("plain.jsonl", "bom.jsonl", "crlf.jsonl", "nonl.jsonl", "bom.jsonl.gz"):
        result = run(tmp_path / name, "--output", tmp_path / f"out-{name}", "-q")
        assert result.exit_code == 0, f"{name}: {result.output}"
        ds = IndexedDataset(tmp_path / f"out-{name}")
        got = [ds[i].tolist() for i in range(len(ds))]
        want = want or got
        assert got == want == [[25521, 0], [10186, 0]], name


@pytest.mark.parametrize("first", [b"\n", b"\r\n", b"{}\n"])
def test_byte_order_mark_after_a_short_first_line_is_not_skipped(tmp_path, first):
    # Only the file's first bytes can be a byte-order mark; one that starts a later line is a
    # bad line, as json.loads finds it. With chunks of 1-2 bytes after a first line that short,
    # the mark on line 2 was dropped and the line read as a document.
    bom_line = '\ufeff{"text": "hi"}'
    with pytest.raises(json.JSONDecodeError):
        json.loads(bom_line)
    src = tmp_path / "a.jsonl"
    src.write_bytes(first + bom_line.encode() + b'\n{"text": "x"}\n')
    want = [oracle().encode("x").ids + [0]]
    bad = 2 if first.strip() else 1  # "{}" (no text field) is a bad line too
    for chunk_bytes in (1, 2, 3, 1 << 20):
        out = tmp_path / f"out-{chunk_bytes}"
        report = tokenize_files(
            [src], out, tokenizer=ours(), on_error="skip", threads=1, chunk_bytes=chunk_bytes
        )
        assert report["errors_skipped"] == bad, chunk_bytes
        assert report["skipped_examples"][-1].startswith(f"{src}: line 2: invalid JSON")
        ds = IndexedDataset(out)
        assert [ds[i].tolist() for i in range(len(ds))] == want, chunk_bytes


def test_upper_case_extensions_are_decompressed(tmp_path, lines):
    # `.JSONL.ZST` or `.jsonl.GZ` (files from Windows or old tools) were read as plain text:
    # "line 1: invalid JSON" given as a file, silently left out of a directory.
    d = tmp_path / "in"
    d.mkdir()
    write_zst_frames(d / "A.JSONL.ZST", lines[:20], frames=2)
    (d / "B.Jsonl.Gz").write_bytes(gzip.compress("".join(x + "\n" for x in lines[20:30]).encode()))
    (d / "C.JSONL").write_text("".join(x + "\n" for x in lines[30:40]))
    ref = oracle()
    want = [ref.encode(t).ids + [0] for t in (json.loads(x)["text"] for x in lines[:40]) if t]
    for args in ([d], sorted(d.iterdir())):
        result = run(*args, "--output", tmp_path / "o")
        assert result.exit_code == 0, result.output
        ds = IndexedDataset(tmp_path / "o")
        assert [ds[i].tolist() for i in range(len(ds))] == want
        for f in tmp_path.glob("o.*"):
            f.unlink()
    write_parquet(tmp_path / "D.PARQUET", lines[:40], row_group_size=15)
    result = run(tmp_path / "D.PARQUET", "--output", tmp_path / "pq")
    assert result.exit_code == 0, result.output
    ds = IndexedDataset(tmp_path / "pq")
    assert [ds[i].tolist() for i in range(len(ds))] == want


BAD_LINES = [
    ("{not json}", "invalid JSON"),
    ('{"meta": {}}', 'no "text" field'),
    ('{"text": 42}', '"text" field is a number, not a string'),
    ('{"text": null}', '"text" field is null'),
    # serde_json's "at line 1 column 25" contradicted the line number given before it.
    ('{"text": "abc", "x": tru}', "invalid JSON: expected ident at column 25"),
    ('{"text": "a line cut short', "invalid JSON: the line ends inside a string"),
    # A line that is a JSON string was quoted whole, megabytes of it in one error line.
    ('"' + "x" * 5000 + '"', "not a JSON object: the line is a string; skip such lines"),
    # Not JSON's whitespace, so not a blank line (a form feed was passed over as one).
    ("\f", "invalid JSON"),
    ("\v", "invalid JSON"),
    ("\u00a0", "invalid JSON"),
]


@pytest.mark.parametrize("bad,message", BAD_LINES)
def test_bad_line_fails_naming_file_and_line(tmp_path, bad, message):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"text": "fine"}\n{"text": "also fine"}\n' + bad + '\n{"text": "x"}\n')
    result = run(src, "--output", tmp_path / "out")
    assert result.exit_code == 1
    assert f"{src}: line 3: " in result.output and message in result.output
    assert result.output.endswith("; skip such lines with --on-error skip\n")
    assert len(result.output) < 300 and "Traceback" not in result.output
    assert sorted(os.listdir(tmp_path)) == ["bad.jsonl"]  # nothing half-written


def test_invalid_utf8_fails_and_skips(tmp_path):
    src = tmp_path / "utf8.jsonl"
    src.write_bytes(b'{"text": "ok"}\n{"text": "bad \xff byte"}\n{"text": "fine"}\n')
    result = run(src, "--output", tmp_path / "out")
    assert result.exit_code == 1 and f"{src}: line 2: invalid JSON" in result.output
    result = run(src, "--output", tmp_path / "out", "--on-error", "skip")
    assert result.exit_code == 0, result.output
    assert "skipped 1 bad lines" in result.output
    # The skipped line is listed in the same words as the error that stops a run.
    assert f"{src}: line 2: invalid JSON" in result.output
    tok = tokenizers.Tokenizer.from_file(str(DEFAULT_TOKENIZER))
    ds = IndexedDataset(tmp_path / "out")
    assert [ds[i].tolist() for i in range(len(ds))] == [
        tok.encode("ok").ids + [0],
        tok.encode("fine").ids + [0],
    ]


def test_truncated_zstd(tmp_path, lines):
    whole = tmp_path / "whole.jsonl.zst"
    write_zst_frames(whole, lines[:60], frames=2)
    data = whole.read_bytes()
    cut = tmp_path / "cut.jsonl.zst"
    cut.write_bytes(data[: len(data) - 5000])
    result = run(cut, "--output", tmp_path / "out")
    assert result.exit_code == 1
    assert str(cut) in result.output and "truncated or corrupt zstd stream" in result.output
    assert not (tmp_path / "out.bin").exists() and not (tmp_path / "out.partial").exists()
    good = tmp_path / "good.jsonl"
    good.write_text('{"text": "after"}\n')
    result = run(cut, good, "--output", tmp_path / "skip", "--on-error", "skip")
    assert result.exit_code == 0, result.output
    ds = IndexedDataset(tmp_path / "skip")
    # Every whole line before the cut is kept, whatever the chunking; then the next file.
    assert 0 < len(ds) < 60
    again = tmp_path / "again"
    tokenize_files([cut, good], again, on_error="skip", chunk_bytes=1)
    assert dataset_bytes(again) == dataset_bytes(tmp_path / "skip")


def test_corrupt_zstd_frame_keeps_the_same_lines_for_any_chunk_size(tmp_path):
    # One frame that declares its size, with a damaged block past the middle. zstd decoded it
    # in one go into a read as large as the frame (chunks of 1 MB: nothing kept, "line 1"),
    # block by block into smaller ones (the lines before the damage kept): the documents kept
    # and the line named changed with the chunk size.
    words = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"]
    body = "".join(
        json.dumps({"text": " ".join(words[(i * 7 + k * k) % 8] for k in range(40)) + f" {i}"})
        + "\n"
        for i in range(3000)
    ).encode()
    frame = zstandard.ZstdCompressor(level=3).compress(body)  # writes the content size
    src = tmp_path / "c.jsonl.zst"
    for at in range(len(frame) // 2, len(frame) - 16, 97):
        damaged = bytearray(frame)
        damaged[at] ^= 0x10
        try:
            zstandard.ZstdDecompressor().decompress(bytes(damaged))
        except zstandard.ZstdError:
            break  # a flip zstd detects
    else:
        pytest.fail("no flip made the frame fail to decode")
    src.write_bytes(bytes(damaged))
    results = set()
    for threads, chunk_bytes in ((1, 1 << 20), (2, 4096), (1, 1), (3, 100_000)):
        out = tmp_path / f"out-{threads}-{chunk_bytes}"
        report = tokenize_files(
            [src], out, tokenizer=ours(), on_error="skip", threads=threads, chunk_bytes=chunk_bytes
        )
        assert report["errors_skipped"] == 1
        with pytest.raises(pythia_data.PythiaDataError) as failed:
            tokenize_files([src], out, tokenizer=ours(), threads=threads, chunk_bytes=chunk_bytes)
        # The same error, which when it stops the run also says how to skip such files.
        hint = "; skip the unreadable rest of such files with --on-error skip"
        assert str(failed.value) == report["skipped_examples"][0] + hint
        # The documents kept are the lines before the damage, as the oracle tokenizes them.
        ds = IndexedDataset(out)
        texts = [json.loads(line)["text"] for line in body.decode().splitlines()[: len(ds)]]
        assert [ds[i].tolist() for i in range(len(ds))] == [
            oracle().encode(t).ids + [0] for t in texts
        ]
        results.add((dataset_bytes(out), str(failed.value)))
    assert len(results) == 1


def stop_sample_run_early(prefix: Path) -> None:
    """Tokenize the sample into ``prefix`` with a checkpoint at every chunk, stopped (as by
    Ctrl-C) at the third progress call: its work directory stays."""
    tokenize_files(
        [SAMPLE_CORPUS],
        prefix,
        threads=1,
        chunk_bytes=20_000,
        checkpoint_seconds=0,
        progress=stop_on_call(3),
        progress_seconds=0,
    )


def test_interrupt_then_resume_is_byte_identical(tmp_path):
    full = tmp_path / "full"
    tokenize_files([SAMPLE_CORPUS], full)
    prefix = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        stop_sample_run_early(prefix)
    assert not Path(f"{prefix}.idx").exists()
    assert (tmp_path / "resumed.partial" / "checkpoint.json").exists()
    report = tokenize_files([SAMPLE_CORPUS], prefix, threads=2)
    assert report["resumed_documents"] > 0
    assert dataset_bytes(prefix) == dataset_bytes(full)


def test_a_stop_before_the_work_begins_names_an_earlier_runs_work(tmp_path, monkeypatch):
    # Ctrl-C while the tokenizer loaded said "no partial output was left behind", though an
    # earlier run's work directory stayed (and the next run continued from it).
    import pythia_data.cli.tokenize as cli_tokenize

    prefix = tmp_path / "out"

    def stopped_while_loading(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_tokenize.Tokenizer, "from_file", stopped_while_loading)
    result = run(SAMPLE_CORPUS, "--output", prefix)
    assert result.exit_code == 130
    assert result.output == "interrupted; this run left no partial output behind\n"
    monkeypatch.undo()
    with pytest.raises(KeyboardInterrupt):
        stop_sample_run_early(prefix)
    monkeypatch.setattr(cli_tokenize.Tokenizer, "from_file", stopped_while_loading)
    result = run(SAMPLE_CORPUS, "--output", prefix)
    assert result.exit_code == 130
    assert result.output == (
        f"interrupted; an earlier run's work stays in {prefix}.partial: run the same command "
        "again to continue from it\n"
    )


@pytest.mark.parametrize(
    "sig, files_at_once", [(signal.SIGKILL, 1), (signal.SIGTERM, 1), (signal.SIGKILL, 3)]
)
def test_killed_process_resumes_to_identical_output(tmp_path, sig, files_at_once):
    inputs = tmp_path / "in"
    inputs.mkdir()
    # Enough text (75 MB) that a one-thread run lasts long enough to be killed midway.
    for i in range(12):
        shutil.copy(SAMPLE_CORPUS, inputs / f"part{i}.jsonl.zst")
    # Parts of one file each (the sample files are far below the default part size).
    code = (
        "import pythia_data.tokenize as t; t.PART_BYTES = 1; from pythia_data.cli import run; run()"
    )
    cmd = [
        sys.executable,
        "-c",
        code,
        "tokenize",
        "-q",
        str(inputs),
        "--output",
        str(tmp_path / "killed"),
        "--checkpoint-seconds",
        "0",
        "--threads",
        str(files_at_once),
        "--parallel-files",
        str(files_at_once),
    ]
    env = {**os.environ, "PYTHONPATH": str(PYTHIA_DATA_ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    checkpoint = tmp_path / "killed.partial" / "checkpoint.json"
    if files_at_once > 1:
        # The run's own checkpoint is written at its start; wait for one of a part's.
        checkpoint = checkpoint.parent / "parts" / "files-000000-000001.partial" / "checkpoint.json"
    deadline = time.monotonic() + 60
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(sig)
    _, stderr = proc.communicate()
    if not checkpoint.exists():
        pytest.skip("the run finished before it could be killed")
    if sig == signal.SIGTERM:  # a scheduler's stop: checkpoint, one clear line, status 143
        assert proc.returncode == 143, stderr
        assert b"run the same command again" in stderr and b"Traceback" not in stderr
    assert not (tmp_path / "killed.idx").exists()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "resumed after" in done.stdout
    tokenize_files(sorted(inputs.iterdir()), tmp_path / "clean")
    assert dataset_bytes(tmp_path / "killed") == dataset_bytes(tmp_path / "clean")


def test_shards_merge_to_a_single_run(tmp_path, lines):
    d = tmp_path / "in"
    d.mkdir()
    for i in range(5):
        write_zst_frames(d / f"{i:02d}.jsonl.zst", lines[i * 60 : (i + 1) * 60], frames=1)
    assert run(d, "--output", tmp_path / "single").exit_code == 0
    parts = []
    for i in range(3):
        result = run(d, "--output", tmp_path / "pile", "--shard-index", i, "--num-shards", 3)
        assert result.exit_code == 0, result.output
        parts.append(tmp_path / f"pile-{i:05d}-of-00003")
    merge_datasets(tmp_path / "merged", parts)
    merge_subsets(tmp_path / "merged", parts)
    assert dataset_bytes(tmp_path / "merged") == dataset_bytes(tmp_path / "single")
    # The CLI does both, and takes a shell glob that names each part's .bin, .idx, the
    # .subsets.json/.npy (which failed as "pile-….subsets.json.idx: No such file") and the
    # .shard.json record.
    globbed = sorted(tmp_path.glob("pile-*"))
    assert len(globbed) == 15
    result = CliRunner().invoke(main, ["merge", str(tmp_path / "cli"), *map(str, globbed)])
    assert result.exit_code == 0, result.output
    assert dataset_bytes(tmp_path / "cli") == dataset_bytes(tmp_path / "single")
    # A glob that matches only the subset files names no dataset: said, not "no input".
    subsets_only = sorted(tmp_path.glob("pile-*.subsets.*"))
    result = CliRunner().invoke(main, ["merge", str(tmp_path / "z"), *map(str, subsets_only)])
    assert result.exit_code == 2 and "only subset or shard record files" in result.output
    result = run(d, "--output", tmp_path / "x", "--shard-index", 3, "--num-shards", 3)
    assert result.exit_code != 0 and "--shard-index" in result.output
    # More shards than files: a usage error (status 2) naming the option to change.
    # Every shard of such an array refuses, not only those left empty (shard 1 of 7 over 5
    # files has one file: its part was work for a merge that refuses the set).
    files = len(find_inputs([d]))
    for i in (0, 1, files):
        result = run(d, "-o", tmp_path / "y", "--shard-index", i, "--num-shards", files + 2)
        assert result.exit_code == 2 and "--num-shards" in result.output, result.output
        assert f"use --num-shards {files} or fewer" in result.output
    assert not list(tmp_path.glob("y-*"))


def test_a_shard_finishes_when_another_shards_input_goes_during_its_run(
    tmp_path, lines, monkeypatch
):
    # Each part's record lists every input's size: measured after the run, a file deleted
    # meanwhile failed the finished part with a bare "[Errno 2] No such file or directory".
    from pythia_data.cli import tokenize as cli_tokenize

    d = tmp_path / "in"
    d.mkdir()
    for i in range(2):
        write_zst_frames(d / f"{i:02d}.jsonl.zst", lines[i * 60 : (i + 1) * 60], frames=1)
    assert run(d, "--output", tmp_path / "single").exit_code == 0
    first = run(d, "--output", tmp_path / "pile", "--shard-index", 0, "--num-shards", 2)
    assert first.exit_code == 0, first.output
    kept = (d / "00.jsonl.zst").read_bytes()
    report = cli_tokenize._Bar.__call__

    def deleting_shard_0s_input(self, *progress):
        (d / "00.jsonl.zst").unlink(missing_ok=True)
        return report(self, *progress)

    monkeypatch.setattr(cli_tokenize._Bar, "__call__", deleting_shard_0s_input)
    second = run(d, "--output", tmp_path / "pile", "--shard-index", 1, "--num-shards", 2)
    assert second.exit_code == 0, second.output
    assert not (d / "00.jsonl.zst").exists()
    (d / "00.jsonl.zst").write_bytes(kept)
    parts = [tmp_path / f"pile-{i:05d}-of-00002" for i in range(2)]
    result = CliRunner().invoke(main, ["merge", str(tmp_path / "merged"), *map(str, parts)])
    assert result.exit_code == 0, result.output
    assert dataset_bytes(tmp_path / "merged") == dataset_bytes(tmp_path / "single")


def _input_folder(tmp_path: Path, lines: list[str], files: int) -> Path:
    """A folder of `files` .jsonl.zst files of 60 lines each."""
    d = tmp_path / "in"
    d.mkdir()
    for i in range(files):
        write_zst_frames(d / f"{i:02d}.jsonl.zst", lines[i * 60 : (i + 1) * 60], frames=1)
    return d


def _shard(d: Path, prefix: Path, i: int, n: int, *extra) -> Path:
    result = run(d, "--output", prefix, "--shard-index", i, "--num-shards", n, *extra)
    assert result.exit_code == 0, result.output
    return Path(f"{prefix}-{i:05d}-of-{n:05d}")


def _merge(out: Path, *inputs) -> object:
    return CliRunner().invoke(main, ["merge", str(out), *map(str, inputs)])


def test_parts_of_different_inputs_or_tokenizers_are_not_merged(tmp_path, lines):
    # Their names alone looked like one run, and the merge silently differed from one.
    d = tmp_path / "in"
    d.mkdir()
    for i in range(4):
        write_zst_frames(d / f"{i:02d}.jsonl.zst", lines[i * 60 : (i + 1) * 60], frames=1)
    first = _shard(d, tmp_path / "p", 0, 2)
    write_zst_frames(d / "01b.jsonl.zst", lines[240:300], frames=1)  # between two array tasks
    second = _shard(d, tmp_path / "p", 1, 2)
    result = _merge(tmp_path / "m", first, second)
    assert result.exit_code == 2, result.output
    assert "was made from another list of input files than" in result.output
    assert "(5 files against 4" in result.output
    assert not (tmp_path / "m.bin").exists()
    # Asked for, parts of other input lists still merge as given.
    assert _merge(tmp_path / "m", first, second, "--allow-partial").exit_code == 0

    (d / "01b.jsonl.zst").unlink()
    second = _shard(d, tmp_path / "p", 1, 2)  # the inputs of the first again: merged
    assert _merge(tmp_path / "m", first, second).exit_code == 0
    other = tmp_path / "other_tokenizer.json"  # the same tokenizer, other bytes
    other.write_text(json.dumps(json.loads(DEFAULT_TOKENIZER.read_text(encoding="utf-8"))))
    second = _shard(d, tmp_path / "p", 1, 2, "--tokenizer", other)
    for extra in ([], ["--allow-partial"]):
        result = _merge(tmp_path / "m2", first, second, *extra)
        assert result.exit_code == 2 and "was tokenized with another tokenizer" in result.output

    # A part whose record is missing (its run stopped before writing it) is named.
    second = _shard(d, tmp_path / "p", 1, 2)
    Path(f"{second}.shard.json").unlink()
    result = _merge(tmp_path / "m3", first, second)
    assert result.exit_code == 2 and f"{second} has no .shard.json record" in result.output
    assert "run that shard's tokenize command again" in result.output
    assert _shard(d, tmp_path / "p", 1, 2) and _merge(tmp_path / "m3", first, second).exit_code == 0


def test_merge_names_an_unfinished_part(tmp_path, lines):
    d = _input_folder(tmp_path, lines, 2)
    first, second = (_shard(d, tmp_path / "p", i, 2) for i in range(2))
    # As an interrupted run of the second shard leaves it: its work directory, no .idx.
    Path(f"{second}.idx").unlink()
    Path(f"{second}.partial").mkdir()
    result = _merge(tmp_path / "m", first, second)
    assert result.exit_code == 2, result.output
    assert f"{second} has no .idx: its tokenize run has not finished" in result.output
    result = _merge(tmp_path / "m", *sorted(tmp_path.glob("p-*")))  # the glob finds the folder
    assert result.exit_code == 2, result.output
    assert f"{second}.partial is the work directory of an unfinished tokenize run" in result.output


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_while_a_finished_run_exits_keeps_its_success(tmp_path, sig):
    # The signal comes once the command has returned, while the process exits (an atexit
    # hook): the output is complete and the summary printed, so the status stays 0; it was 130
    # with "interrupted", or death by the signal.
    code = (
        "import atexit, os, signal; "
        f"atexit.register(lambda: os.kill(os.getpid(), {int(sig)})); "
        "from pythia_data.cli import run; run()"
    )
    cmd = [
        sys.executable,
        "-c",
        code,
        "tokenize",
        "-q",
        str(SAMPLE_CORPUS),
        "-o",
        str(tmp_path / "out"),
    ]
    env = {**os.environ, "PYTHONPATH": str(PYTHIA_DATA_ROOT)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and "interrupted" not in done.stderr
    assert "KeyboardInterrupt" not in done.stderr, done.stderr
    assert Path(f"{tmp_path / 'out'}.idx").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_second_stop_while_a_stopped_run_exits_keeps_its_status(tmp_path, sig):
    # A run stopped by a signal says so and exits 128 + its number (130 for Ctrl-C, 143 for
    # SIGTERM); a second signal while it exits (here from an atexit hook) killed it (status -2
    # or -15), the earlier handlers being back.
    code = (
        "import atexit, os, signal; "
        "import pythia_data.cli.tokenize as ct; "
        "real = ct.tokenize_files; "
        f"stop = lambda *a, **k: os.kill(os.getpid(), {int(sig)}); "
        "ct.tokenize_files = lambda *a, **k: real(*a, **{**k, 'progress': stop, "
        "'progress_seconds': 0, 'chunk_bytes': 1 << 16}); "
        f"atexit.register(lambda: os.kill(os.getpid(), {int(sig)})); "
        "from pythia_data.cli import run; run()"
    )
    cmd = [sys.executable, "-c", code, "tokenize", str(SAMPLE_CORPUS), "-o", str(tmp_path / "o")]
    env = {**os.environ, "PYTHONPATH": str(PYTHIA_DATA_ROOT)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 128 + sig, (done.returncode, done.stderr)
    assert "interrupted; run the same command again" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_files_tokenized_at_once_write_what_one_at_a_time_writes(tmp_path, lines, monkeypatch):
    d = tmp_path / "in"
    d.mkdir()
    # Unequal files, compressed and not, one of them with no documents at all.
    cuts = [0, 120, 130, 131, 200, len(lines)]
    for i, (a, b) in enumerate(itertools.pairwise(cuts)):
        if i % 2:
            (d / f"{i:02d}.jsonl").write_text("".join(x + "\n" for x in lines[a:b]))
        else:
            write_zst_frames(d / f"{i:02d}.jsonl.zst", lines[a:b], frames=2)
    (d / "05.jsonl").write_text("")
    result = run(d, "--output", tmp_path / "one", "--threads", 2)
    assert result.exit_code == 0, result.output
    documents = sum(1 for x in lines if json.loads(x)["text"])
    # Parts of one file each, of two or three, and all files in one (the default size here).
    for files_at_once, threads, part_bytes in [(2, 2, 1), (3, 5, 200_000), (6, 1, 1), (3, 3, None)]:
        if part_bytes:
            monkeypatch.setattr(pythia_data.tokenize, "PART_BYTES", part_bytes)
        else:
            monkeypatch.undo()
        prefix = tmp_path / f"at-once-{files_at_once}"
        result = run(d, "--output", prefix, "--threads", threads, "--parallel-files", files_at_once)
        assert result.exit_code == 0, result.output
        assert f"{documents:,} documents" in result.output
        assert dataset_bytes(prefix) == dataset_bytes(tmp_path / "one")
        assert not Path(f"{prefix}.partial").exists()
    # From 12 threads on, files are tokenized at once without asking (one per two threads).
    report = tokenize_files(sorted(d.iterdir()), tmp_path / "auto", threads=12, part_bytes=1)
    assert report["documents"] == documents
    assert dataset_bytes(tmp_path / "auto") == dataset_bytes(tmp_path / "one")


def test_files_at_once_interrupted_resume_one_at_a_time_and_back(tmp_path, lines):
    d = tmp_path / "in"
    d.mkdir()
    for i in range(4):
        write_zst_frames(d / f"{i}.jsonl.zst", lines[i * 70 : (i + 1) * 70], frames=1)
    files = sorted(d.iterdir())
    tokenize_files(files, tmp_path / "full", threads=1)
    prefix = tmp_path / "out"
    options = dict(chunk_bytes=20_000, checkpoint_seconds=0, progress_seconds=0)
    for files_at_once, calls in [(3, 4), (1, 3), (2, 6)]:
        with pytest.raises(KeyboardInterrupt):
            tokenize_files(
                files,
                prefix,
                threads=2,
                parallel_files=files_at_once,
                part_bytes=1,
                progress=stop_on_call(calls),
                **options,
            )
        assert not Path(f"{prefix}.idx").exists()
    report = tokenize_files(files, prefix, threads=2, parallel_files=2, part_bytes=1)
    assert report["resumed_documents"] > 0
    assert dataset_bytes(prefix) == dataset_bytes(tmp_path / "full")
    assert not Path(f"{prefix}.partial").exists()


def test_files_at_once_full_disk_keeps_every_part_to_resume(tmp_path, lines):

    d = tmp_path / "in"
    d.mkdir()
    for i in range(3):
        write_zst_frames(d / f"{i}.jsonl.zst", lines * 2, frames=2)
    prefix = tmp_path / "out"
    cmd = [
        sys.executable,
        "-c",
        "import pythia_data.tokenize as t; t.PART_BYTES = 1; from pythia_data.cli import run; run()",
        "tokenize",
        "-q",
        str(d),
        "--output",
        str(prefix),
        "--checkpoint-seconds",
        "0",
        "--threads",
        "3",
        "--parallel-files",
        "3",
    ]
    env = {**os.environ, "PYTHONPATH": str(PYTHIA_DATA_ROOT)}
    failed = run_with_files_limited_to_2mb(cmd, env)
    assert failed.returncode == 1, failed.stderr
    assert "File too large" in failed.stderr and "Traceback" not in failed.stderr
    work = Path(f"{prefix}.partial")
    assert f"kept in {work}" in failed.stderr
    assert not Path(f"{prefix}.idx").exists()
    assert any((work / "parts").glob("*.partial/checkpoint.json"))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "resumed after" in done.stdout
    tokenize_files(sorted(d.iterdir()), tmp_path / "clean")
    assert dataset_bytes(prefix) == dataset_bytes(tmp_path / "clean")


def test_python_api_takes_prefixes_with_or_without_extension(tmp_path):
    # As IndexedDataset, IndexedDatasetBuilder and merge_datasets do, and the CLI: "out.bin"
    # names the dataset "out", so IndexedDataset("out.bin") opens what was written.
    tokenize_files([SAMPLE_CORPUS], tmp_path / "single.bin")
    assert not (tmp_path / "single.bin.bin").exists()
    assert len(IndexedDataset(tmp_path / "single.bin")) == 296
    lines = sample_lines()
    parts = []
    for i, chunk in enumerate([lines[:100], lines[100:]]):
        (tmp_path / f"p{i}.jsonl").write_text("".join(x + "\n" for x in chunk))
        tokenize_files([tmp_path / f"p{i}.jsonl"], tmp_path / f"p{i}")
        parts.append(tmp_path / f"p{i}.idx")
    merge_datasets(tmp_path / "merged.bin", parts)
    merge_subsets(tmp_path / "merged.bin", parts)
    assert dataset_bytes(tmp_path / "merged") == dataset_bytes(tmp_path / "single")


def test_python_api_takes_an_iterator_of_inputs(tmp_path):
    # Path.glob gives a generator: it was used up listing the inputs, and the run then
    # refused "no input files".
    shutil.copy(SAMPLE_CORPUS, tmp_path / "a.jsonl.zst")
    report = tokenize_files(tmp_path.glob("*.jsonl.zst"), tmp_path / "globbed")
    assert report["documents"] == 296
    tokenize_files([SAMPLE_CORPUS], tmp_path / "listed")
    assert dataset_bytes(tmp_path / "globbed") == dataset_bytes(tmp_path / "listed")


def test_help_explains_options():
    result = CliRunner().invoke(main, ["tokenize", "--help"])
    assert result.exit_code == 0
    for option in [
        "--output",
        "--tokenizer",
        "--text-key",
        "--meta-key",
        "--on-error",
        "--threads",
        "--shard-index",
        "--num-shards",
        "--checkpoint-seconds",
    ]:
        assert option in result.output


# --- Parquet and save_to_disk datasets (pyarrow) ------------------------------------------------


def write_parquet(path: Path, lines: list[str], row_group_size: int = 50) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.Table.from_pylist([json.loads(x) for x in lines])
    pq.write_table(table, path, row_group_size=row_group_size)


def write_saved_dataset(path: Path, lines: list[str], files: int = 2) -> None:
    """The layout of `datasets.Dataset.save_to_disk`: Arrow IPC streams listed in state.json."""
    pa = pytest.importorskip("pyarrow")
    path.mkdir()
    table = pa.Table.from_pylist([json.loads(x) for x in lines])
    step = len(lines) // files + 1
    names = []
    for i in range(files):
        name = f"data-{i:05d}-of-{files:05d}.arrow"
        part = table.slice(i * step, step)
        with pa.OSFile(str(path / name), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
            for batch in part.to_batches(max_chunksize=40):
                w.write_batch(batch)
        names.append({"filename": name})
    (path / "state.json").write_text(json.dumps({"_data_files": names, "_split": "train"}))
    (path / "dataset_info.json").write_text("{}")


def test_parquet_and_saved_dataset_match_reference(tmp_path, lines, reference):
    half = len(lines) // 2
    write_parquet(tmp_path / "a.parquet", lines[:half])
    write_parquet(tmp_path / "b.parquet", lines[half:])
    result = run(tmp_path / "a.parquet", tmp_path / "b.parquet", "--output", tmp_path / "pq")
    assert result.exit_code == 0, result.output
    assert_matches_reference(tmp_path / "pq", reference)
    write_saved_dataset(tmp_path / "saved", lines)
    result = run(tmp_path / "saved", "--output", tmp_path / "hf")
    assert result.exit_code == 0, result.output
    assert_matches_reference(tmp_path / "hf", reference)


def test_parquet_interrupt_resume_and_bad_rows(tmp_path, lines, monkeypatch):
    import pythia_data.tokenize

    monkeypatch.setattr(pythia_data.tokenize, "ARROW_BATCH_ROWS", 20)
    write_parquet(tmp_path / "a.parquet", lines, row_group_size=20)
    tokenize_files([tmp_path / "a.parquet"], tmp_path / "full")
    stop_soon = stop_on_call(2)

    with pytest.raises(KeyboardInterrupt):
        tokenize_files(
            [tmp_path / "a.parquet"], tmp_path / "part", checkpoint_seconds=0, progress=stop_soon
        )
    assert not (tmp_path / "part.idx").exists()
    report = tokenize_files([tmp_path / "a.parquet"], tmp_path / "part")
    assert report["resumed_documents"] > 0
    assert dataset_bytes(tmp_path / "part") == dataset_bytes(tmp_path / "full")

    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"text": ["a", None, "b"]}), tmp_path / "null.parquet")
    result = run(tmp_path / "null.parquet", "--output", tmp_path / "n")
    assert result.exit_code == 1 and "null.parquet: row 2:" in result.output
    assert not (tmp_path / "n.partial").exists()
    result = run(tmp_path / "null.parquet", "--output", tmp_path / "n", "--on-error", "skip")
    assert result.exit_code == 0 and "skipped 1 bad lines" in result.output
    assert len(IndexedDataset(tmp_path / "n")) == 2
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "nocol.parquet")
    result = run(tmp_path / "nocol.parquet", "--output", tmp_path / "m")
    assert result.exit_code == 1 and "no 'text' column" in result.output


def mixed_corpus(directory: Path, lines: list[str]) -> list[Path]:
    """The sample cut into every kind of input, in one directory (sorted as listed here)."""
    cuts = [len(lines) * k // 6 for k in range(7)]
    part = [lines[a:b] for a, b in itertools.pairwise(cuts)]
    directory.mkdir()
    write_zst_frames(directory / "a.jsonl.zst", part[0])
    (directory / "b.jsonl").write_text("".join(x + "\n" for x in part[1]))
    write_parquet(directory / "c.parquet", part[2], row_group_size=20)
    write_saved_dataset(directory / "d-saved", part[3])
    with gzip.open(directory / "e.jsonl.gz", "wt") as f:
        f.write("".join(x + "\n" for x in part[4]))
    write_parquet(directory / "f.parquet", part[5], row_group_size=20)
    return [directory / n for n in ["a.jsonl.zst", "b.jsonl", "c.parquet", "d-saved",
                                    "e.jsonl.gz", "f.parquet"]]  # fmt: skip


def test_mixed_kinds_match_the_reference_and_their_shards(tmp_path, lines, reference):
    # A directory of JSON lines, Parquet and a saved dataset was refused ("inputs mix ..."),
    # while its shards, each of one kind, were not; and a saved dataset in it was not found.
    corpus = tmp_path / "corpus"
    files = mixed_corpus(corpus, lines)
    assert find_inputs([corpus]) == files
    result = run(corpus, "--output", tmp_path / "one", "--threads", "2")
    assert result.exit_code == 0, result.output
    assert "from 6 files\n" in result.output
    assert_matches_reference(tmp_path / "one", reference)
    for shard in range(4):
        result = run(corpus, "-o", tmp_path / "s", "--shard-index", shard, "--num-shards", 4)
        assert result.exit_code == 0, result.output
    parts = sorted(tmp_path.glob("s-*-of-00004.idx"))
    merged = CliRunner().invoke(main, ["merge", str(tmp_path / "merged"), *map(str, parts)])
    assert merged.exit_code == 0, merged.output
    assert dataset_bytes(tmp_path / "merged") == dataset_bytes(tmp_path / "one")


def test_mixed_kinds_resume_to_identical_output_wherever_stopped(tmp_path, lines, monkeypatch):
    import pythia_data.tokenize

    monkeypatch.setattr(pythia_data.tokenize, "ARROW_BATCH_ROWS", 20)
    files = mixed_corpus(tmp_path / "corpus", lines)
    full = tokenize_files(files, tmp_path / "full")
    often = dict(threads=1, chunk_bytes=100_000, progress_seconds=0)
    calls = []
    tokenize_files(files, tmp_path / "count", progress=lambda *a: calls.append(a), **often)
    assert len(calls) > 12
    # Every place a run can stop: inside JSON-lines parts, their appends and Arrow sources.
    for stop in range(1, len(calls)):
        out = tmp_path / f"stopped-{stop}"
        with pytest.raises(KeyboardInterrupt):
            tokenize_files(files, out, checkpoint_seconds=0, progress=stop_on_call(stop), **often)
        assert not Path(f"{out}.idx").exists()
        report = tokenize_files(files, out)
        assert dataset_bytes(out) == dataset_bytes(tmp_path / "full"), f"stopped at call {stop}"
        assert (report["documents"], report["tokens"]) == (full["documents"], full["tokens"])
        assert report["empty_skipped"] == full["empty_skipped"]
        assert not Path(f"{out}.partial").exists()


def test_mixed_kinds_bad_json_line_fails_naming_it_and_leaves_nothing(tmp_path, lines):
    files = mixed_corpus(tmp_path / "corpus", lines)
    with open(files[4], "ab") as f:  # e.jsonl.gz, after two Arrow sources
        f.write(gzip.compress(b'{"text": "unterminated\n'))
    result = run(tmp_path / "corpus", "--output", tmp_path / "out")
    assert result.exit_code == 1 and f"{files[4]}: line " in result.output, result.output
    assert list(tmp_path.glob("out*")) == []
    result = run(tmp_path / "corpus", "--output", tmp_path / "out", "--on-error", "skip")
    assert result.exit_code == 0 and "skipped 1 bad lines" in result.output, result.output
    assert f"{files[4]}: line " in result.output
    good = [x for x in lines if json.loads(x)["text"]]
    assert len(IndexedDataset(tmp_path / "out")) == len(good)


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_any_exception_from_progress_keeps_a_checkpoint(tmp_path, lines, kind):
    # tokenize_files' contract: an exception progress raises (not only Ctrl-C) stops the run
    # after a checkpoint, and the same call continues. Parquet discarded the work.
    if kind == "jsonl":
        src = tmp_path / "a.jsonl.zst"
        write_zst_frames(src, lines, frames=10)
    else:
        src = tmp_path / "a.parquet"
        write_parquet(src, lines, row_group_size=20)
    tokenize_files([src], tmp_path / "full")
    fail_soon = stop_on_call(2, RuntimeError("a progress display failed"))

    with pytest.raises(RuntimeError) as stopped:
        tokenize_files(
            [src], tmp_path / "part", threads=1, chunk_bytes=20_000, checkpoint_seconds=0,
            progress=fail_soon, progress_seconds=0,
        )  # fmt: skip
    assert (tmp_path / "part.partial" / "checkpoint.json").exists()
    # With the traceback still held (as a REPL holds it), the output is not left locked.
    report = tokenize_files([src], tmp_path / "part")
    assert stopped.value is not None and report["resumed_documents"] > 0
    assert dataset_bytes(tmp_path / "part") == dataset_bytes(tmp_path / "full")


def test_large_vocabulary_writes_int32(tmp_path):
    # GPT-NeoX's best_fitting_dtype: int32 from 65,500 ids on.
    cfg = json.loads(DEFAULT_TOKENIZER.read_text(encoding="utf-8"))
    # The reference numbers added tokens itself, one after another: fill 50,277..69,999 first.
    for i, content in enumerate([f"<|x{i}|>" for i in range(70000 - 50277)] + ["<|big|>"]):
        cfg["added_tokens"].append(
            {"id": 50277 + i, "content": content, "special": True, "single_word": False,
             "lstrip": False, "rstrip": False, "normalized": False}
        )  # fmt: skip
    tok_path = tmp_path / "big.json"
    tok_path.write_text(json.dumps(cfg))
    assert tokenizers.Tokenizer.from_file(str(tok_path)).token_to_id("<|big|>") == 70000
    src = tmp_path / "c.jsonl"
    src.write_text('{"text": "a<|big|>b"}\n')
    result = run(src, "--output", tmp_path / "big", "--tokenizer", tok_path, "--meta-key", "")
    assert result.exit_code == 0, result.output
    ds = IndexedDataset(tmp_path / "big")
    assert ds.dtype == np.int32
    ref = tokenizers.Tokenizer.from_file(str(DEFAULT_TOKENIZER))
    assert ds[0].tolist() == ref.encode("a").ids + [70000] + ref.encode("b").ids + [0]


def test_parquet_progress_counts_text_in_utf8_bytes(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    texts = ["日本語のテキスト", "héllo wörld", "plain", "🙂🙃 emoji"]
    pq.write_table(pa.table({"text": texts}), tmp_path / "a.parquet")
    seen = []
    tokenize_files(tmp_path / "a.parquet", tmp_path / "out", progress=lambda *a: seen.append(a[-1]))
    # Bytes, as the rate beside the bar says (MB/s), not characters.
    assert seen[-1] == sum(len(t.encode("utf-8")) for t in texts) == 56


def test_parquet_errors_name_the_file_and_its_columns(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["a"], "id": [1]}), tmp_path / "other.parquet")
    # A dotted --text-key into a struct column (as --meta-key reads one) was told to name the
    # column it had named.
    nested = pa.table({"doc": pa.StructArray.from_arrays([pa.array(["a"])], ["text"])})
    pq.write_table(nested, tmp_path / "nested.parquet")
    result = run(tmp_path / "nested.parquet", "-o", tmp_path / "o", "--text-key", "doc.text")
    assert result.exit_code == 1, result.output
    assert "the text must be a top-level column" in result.output, result.output
    (tmp_path / "nested.parquet").unlink()
    result = run(tmp_path / "other.parquet", "--output", tmp_path / "o")
    assert result.exit_code == 1
    assert f"{tmp_path / 'other.parquet'}: no 'text' column (columns: body, id)" in result.output
    # --on-error skip skips rows: a file without a usable text column is still an error, which
    # says what to do instead.
    hint = "; name the text column with --text-key (--on-error skip skips rows, not columns)\n"
    for skip in ([], ["--on-error", "skip"]):
        result = run(tmp_path / "other.parquet", "--output", tmp_path / "o", *skip)
        assert result.exit_code == 1 and result.output.endswith(hint), result.output
        result = run(tmp_path / "other.parquet", "-o", tmp_path / "o", "--text-key", "id", *skip)
        assert result.exit_code == 1, result.output
        assert result.output.endswith(f"the 'id' column is int64, not a string{hint}")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    result = run(tmp_path / "bad.parquet", "--output", tmp_path / "o")
    assert result.exit_code == 1, result.output
    assert f"error: {tmp_path / 'bad.parquet'}: not a readable Parquet file" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet", "other.parquet"]
    result = run(tmp_path / "other.parquet", "-o", tmp_path / "o", "--text-key", "body")
    assert result.exit_code == 0, result.output


def test_zstd_long_window_frames_are_read(tmp_path, lines):
    # `zstd --long=28` (or higher) writes frames whose window exceeds the decoder's default
    # limit of 128 MB: valid data, which failed as "truncated or corrupt zstd stream".
    params = zstandard.ZstdCompressionParameters.from_level(
        3, window_log=28, enable_ldm=True, write_content_size=False
    )
    raw = io.BytesIO()
    with zstandard.ZstdCompressor(compression_params=params).stream_writer(raw, closefd=False) as w:
        w.write("".join(x + "\n" for x in lines[:30]).encode())
    src = tmp_path / "long.jsonl.zst"
    src.write_bytes(raw.getvalue())
    with pytest.raises(zstandard.ZstdError, match="too much memory"):
        zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw.getvalue())).read()
    body = zstandard.ZstdDecompressor(max_window_size=1 << 31).stream_reader(src.open("rb"))
    texts = [json.loads(line)["text"] for line in io.TextIOWrapper(body, encoding="utf-8")]
    result = run(src, "--output", tmp_path / "o")
    assert result.exit_code == 0, result.output
    ds = IndexedDataset(tmp_path / "o")
    ref = oracle()
    assert [ds[i].tolist() for i in range(len(ds))] == [ref.encode(t).ids + [0] for t in texts if t]


def test_gzip_zero_padding_is_read_as_python_and_gzip_do(tmp_path, lines):
    # Zero bytes after a member (padding to a block size, as tape and some tools write) end
    # the data for Python's gzip and `gzip -d`; they were "invalid gzip header" errors.
    first, second = (
        "".join(x + "\n" for x in part).encode() for part in (lines[:15], lines[15:30])
    )
    padded = gzip.compress(first) + bytes(700) + gzip.compress(second) + bytes(512)
    src = tmp_path / "padded.jsonl.gz"
    src.write_bytes(padded)
    with gzip.open(src) as f:
        texts = [json.loads(line)["text"] for line in f]
    ref = oracle()
    result = run(src, "--output", tmp_path / "o")
    assert result.exit_code == 0, result.output
    ds = IndexedDataset(tmp_path / "o")
    assert [ds[i].tolist() for i in range(len(ds))] == [ref.encode(t).ids + [0] for t in texts if t]
    # Anything else after a member is still damage, as it is for Python.
    src.write_bytes(gzip.compress(first) + bytes(3) + b"garbage")
    with pytest.raises(gzip.BadGzipFile), gzip.open(src) as f:
        f.read()
    result = run(src, "--output", tmp_path / "bad")
    assert result.exit_code == 1 and f"{src}: reading line 16: " in result.output, result.output


@pytest.mark.parametrize(
    "suffix, content, message",
    [
        # gzip's decoder read these as no data: 0 documents, no error, however corrupt the file.
        (".gz", b"", "an empty file, not a gzip stream"),
        (".gz", b"garbage", "not a gzip stream: empty, truncated or not gzip-compressed"),
        (".gz", b"\x1f", "not a gzip stream: empty, truncated or not gzip-compressed"),
        # zstd's called an empty file truncated, which sends the user looking for a cut.
        (".zst", b"", "an empty file, not a zstd stream"),
    ],
)
def test_compressed_input_that_is_empty_or_not_compressed_is_an_error(
    tmp_path, suffix, content, message
):
    src = tmp_path / f"in.jsonl{suffix}"
    src.write_bytes(content)
    result = run(src, "--output", tmp_path / "o")
    assert result.exit_code == 1 and f"{src}: {message}" in result.output, result.output
    good = tmp_path / "good.jsonl"
    good.write_text('{"text": "after"}\n')
    result = run(src, good, "--output", tmp_path / "s", "--on-error", "skip")
    assert result.exit_code == 0 and "skipped 1 bad lines or streams" in result.output
    assert len(IndexedDataset(tmp_path / "s")) == 1


def test_damaged_saved_dataset_errors_name_the_file(tmp_path, lines):
    pytest.importorskip("pyarrow")
    saved = tmp_path / "saved"
    write_saved_dataset(saved, lines[:20], files=1)
    state = saved / "state.json"
    arrow = saved / "data-00000-of-00001.arrow"
    for what, damage, message in [
        ("state", lambda: state.write_text('{"x": 1}'), f"{state}: not a save_to_disk state.json"),
        ("state", lambda: state.write_text("not json"), f"{state}: not a save_to_disk state.json"),
        ("arrow", lambda: arrow.write_bytes(b"garbage!" * 4), f"{arrow}: unreadable Arrow file"),
        ("arrow", lambda: arrow.unlink(), f"{arrow}: No such file or directory"),
        # Cut short, or in Arrow's file format, it said only what pyarrow expected to read.
        ("cut", lambda: arrow.write_bytes(arrow.read_bytes()[:-100]), f"{arrow}: unreadable"),
    ]:
        shutil.rmtree(saved)
        write_saved_dataset(saved, lines[:20], files=1)
        damage()
        result = run(saved, "--output", tmp_path / "o")
        assert result.exit_code == 1 and f"error: {message}" in result.output, (what, result.output)
        if "unreadable" in message:
            assert result.output.endswith("save_to_disk writes: save the dataset again\n")
        assert not list(tmp_path.glob("o*")), what


def test_saved_dataset_files_changed_during_a_run(tmp_path, lines):
    # A data file deleted while the run goes is a system error: the work is kept (it was
    # discarded, as for damage). One rewritten (here shorter, ending where a batch ends) was
    # read as if nothing had happened: the run mixed two versions of the dataset.
    pytest.importorskip("pyarrow")
    saved = tmp_path / "saved"
    write_saved_dataset(saved, lines, files=3)
    last = saved / "data-00002-of-00003.arrow"

    def delete_last(*_):
        last.unlink(missing_ok=True)

    prefix = tmp_path / "out"
    with pytest.raises(OSError, match=f"{last}: No such file or directory; the work up to"):
        tokenize_files([saved], prefix, checkpoint_seconds=0, progress=delete_last)
    assert (tmp_path / "out.partial" / "checkpoint.json").is_file()

    shutil.rmtree(saved)
    shutil.rmtree(tmp_path / "out.partial")
    write_saved_dataset(saved, lines, files=3)
    shorter = tmp_path / "shorter"
    write_saved_dataset(shorter, lines[: len(lines) // 9], files=1)

    def shorten_last(*_):
        # Replaced as save_to_disk replaces it, once the run has counted the rows.
        if not last.samefile(shorter / "data-00000-of-00001.arrow"):
            os.replace(shorter / "data-00000-of-00001.arrow", last)
            os.link(last, shorter / "data-00000-of-00001.arrow")

    with pytest.raises(PythiaDataError, match="saved: changed during the run .its files"):
        tokenize_files([saved], prefix, checkpoint_seconds=0, progress=shorten_last)
    assert not list(tmp_path.glob("out*"))

    # Cut short in place (it read as damage: "unreadable Arrow file (Expected to be able to
    # read ...)", which said nothing of the change).
    shutil.rmtree(saved)
    write_saved_dataset(saved, lines, files=3)

    def cut_last(*_):
        if last.stat().st_size > 1000:
            os.truncate(last, last.stat().st_size // 2)

    with pytest.raises(PythiaDataError, match="saved: changed during the run .its files"):
        tokenize_files([saved], prefix, checkpoint_seconds=0, progress=cut_last)
    assert not list(tmp_path.glob("out*"))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    docs=st.lists(
        st.tuples(
            st.text(st.characters(codec="utf-8"), max_size=200),
            st.text(st.characters(codec="utf-8"), max_size=12),
            st.booleans(),
            st.dictionaries(
                st.text(max_size=5),
                st.integers() | st.floats(allow_nan=False, allow_infinity=False),
            ),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_any_json_python_writes_reads_back_exactly(tmp_path, docs):
    """Lines as Python's json writes them (ASCII-only escapes with surrogate pairs, or raw
    UTF-8), with other fields around the text: the tokens are the oracle's for json.loads."""
    ref = oracle()
    lines = [
        json.dumps({**extra, "text": text, "meta": {"pile_set_name": name}}, ensure_ascii=ascii_)
        for text, name, ascii_, extra in docs
    ]
    path = tmp_path / f"{uuid.uuid4().hex}.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / uuid.uuid4().hex
    tokenize_files([path], out, tokenizer=ours())
    ds = IndexedDataset(out)
    texts = [t for t, *_ in docs if t]
    assert len(ds) == len(texts)
    for i, text in enumerate(texts):
        assert ds[i].tolist() == ref.encode(text).ids + [0]


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE")
@pytest.mark.parametrize("kind", ["jsonl.zst", "parquet"])
@pytest.mark.parametrize("checkpoint_seconds", ["0", "3600"])
def test_a_full_disk_keeps_the_work_to_resume(tmp_path, lines, kind, checkpoint_seconds):
    # A file-size limit makes the token file's writes fail past 2 MB (EFBIG), as a full disk
    # would with ENOSPC. With checkpoints written, the work so far stays and the message says
    # how to continue; the same command then finishes byte-identical to an undisturbed run.
    # Without a checkpoint there is nothing to continue from and nothing is left behind.

    source = tmp_path / f"in.{kind}"
    if kind == "parquet":
        write_parquet(source, lines * 2, row_group_size=40)
    else:
        write_zst_frames(source, lines * 2, frames=4)
    prefix = tmp_path / "out"
    # Small Parquet batches, so that there are checkpoints before the limit is reached.
    code = "import pythia_data.tokenize as t; t.ARROW_BATCH_ROWS = 40; from pythia_data.cli import run; run()"
    cmd = [
        sys.executable,
        "-c",
        code,
        "tokenize",
        "-q",
        str(source),
        "--output",
        str(prefix),
        "--checkpoint-seconds",
        checkpoint_seconds,
    ]
    env = {**os.environ, "PYTHONPATH": str(PYTHIA_DATA_ROOT)}
    failed = run_with_files_limited_to_2mb(cmd, env)
    assert failed.returncode == 1, failed.stderr
    assert "File too large" in failed.stderr and "Traceback" not in failed.stderr
    assert not Path(f"{prefix}.idx").exists()
    work = Path(f"{prefix}.partial")
    if checkpoint_seconds == "3600":
        assert "kept in" not in failed.stderr
        assert not work.exists()
        return
    assert f"kept in {work}" in failed.stderr and "run the same command again" in failed.stderr
    assert (work / "checkpoint.json").exists()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "resumed after" in done.stdout
    tokenize_files([source], tmp_path / "clean")
    assert dataset_bytes(prefix) == dataset_bytes(tmp_path / "clean")


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE")
@pytest.mark.parametrize("json_first", [True, False])
def test_a_full_disk_in_a_mixed_run_keeps_the_work_to_resume(tmp_path, lines, json_first):
    # JSON lines first: the disk fills inside the JSON-lines part (whose own message named its
    # directory inside the run's); Parquet first: while the part is appended to the output.
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_zst_frames(corpus / ("a.jsonl.zst" if json_first else "b.jsonl.zst"), lines * 2)
    write_parquet(corpus / ("b.parquet" if json_first else "a.parquet"), lines, 40)
    prefix = tmp_path / "out"
    code = "import pythia_data.tokenize as t; t.ARROW_BATCH_ROWS = 40; from pythia_data.cli import run; run()"
    cmd = [sys.executable, "-c", code, "tokenize", "-q", str(corpus), "-o", str(prefix),
           "--checkpoint-seconds", "0"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(PYTHIA_DATA_ROOT)}
    failed = run_with_files_limited_to_2mb(cmd, env)
    assert failed.returncode == 1, failed.stderr
    assert "File too large" in failed.stderr and "Traceback" not in failed.stderr
    work = Path(f"{prefix}.partial")
    assert failed.stderr.count("kept in") == 1 and f"kept in {work}: " in failed.stderr
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    tokenize_files([corpus / n for n in sorted(os.listdir(corpus))], tmp_path / "clean")
    assert dataset_bytes(prefix) == dataset_bytes(tmp_path / "clean")
    assert not work.exists()


def test_outputs_in_the_way_are_refused_before_any_work(tmp_path):
    # A directory named PREFIX.bin failed the run only when the output was moved into place,
    # after PREFIX.subsets.* had been; a file where the output's folder belongs was reported
    # on the hidden work directory ("FILE/x.partial: Not a directory (os error 20)").
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "a"}\n')
    (tmp_path / "out.bin").mkdir()
    result = run(src, "--output", tmp_path / "out")
    assert result.exit_code == 1
    assert result.output == (
        f"error: cannot write {tmp_path / 'out.bin'}: a directory of that name is in the way; "
        "move it away or choose another output\n"
    )
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl", "out.bin"]
    result = run(src, "--output", src / "x")
    assert result.exit_code == 1
    assert (
        result.output == f"error: cannot write {src / 'x.bin'}: its folder {src} is not a folder\n"
    )
    result = run(src, "--output", src / "sub" / "x")
    assert result.exit_code == 1
    assert result.output == (
        f"error: cannot write {src / 'sub' / 'x.bin'}: {src} is a file, not a folder\n"
    )
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl", "out.bin"]
    # merge too, before it reads and copies every input.
    with IndexedDatasetBuilder(tmp_path / "a", np.uint16) as b:
        b.add_document(np.arange(3))
    result = CliRunner().invoke(main, ["merge", str(tmp_path / "out"), str(tmp_path / "a")])
    assert result.exit_code == 1 and "a directory of that name is in the way" in result.output
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "a.idx", "in.jsonl", "out.bin"]


def test_tokenize_files_given_a_directory_says_how_to_list_it(tmp_path):
    # It said only "DIR: not a file"; the CLI expands directories, the function does not.
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.jsonl").write_text('{"text": "a"}\n')
    with pytest.raises(
        pythia_data.PythiaDataError, match="a directory, not an input file.*find_inputs"
    ):
        tokenize_files([tmp_path / "corpus"], tmp_path / "out")
    assert sorted(os.listdir(tmp_path)) == ["corpus"]


def test_a_meta_key_that_is_the_text_key_is_refused(tmp_path, lines):
    # JSON lines gave every document the subset "" and Parquet each text its own subset.
    src = tmp_path / "a.jsonl"
    src.write_text("\n".join(lines[:5]) + "\n")
    result = run(src, "--output", tmp_path / "o", "--meta-key", "text")
    assert result.exit_code == 1 and "the meta key 'text' is the text key" in result.output
    assert list(tmp_path.glob("o*")) == []
    # An empty --text-key failed every line with 'no "" field'.
    result = run(src, "--output", tmp_path / "o", "--text-key", "")
    assert result.exit_code == 1 and "the text key must name the field" in result.output
    assert list(tmp_path.glob("o*")) == []


def test_a_directory_among_arrow_inputs_says_to_list_its_files(tmp_path, lines):
    # It was taken for a saved dataset: "FileNotFoundError: .../state.json".
    (tmp_path / "jsonl").mkdir()
    (tmp_path / "jsonl" / "a.jsonl").write_text(lines[0] + "\n")
    write_parquet(tmp_path / "b.parquet", lines[1:5])
    with pytest.raises(PythiaDataError, match="a directory, not an input file: pass the files"):
        tokenize_files([tmp_path / "jsonl", tmp_path / "b.parquet"], tmp_path / "o")
    assert list(tmp_path.glob("o*")) == []


def test_parquet_meta_in_a_map_column_gives_its_subset_names(tmp_path):
    # Spark writes a JSON object as map<string, string>: its names were silently "".
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    meta = pa.array(
        [
            [("pile_set_name", "Pile-CC")],
            [("x", "y"), ("pile_set_name", "ArXiv")],
            None,
            [("pile_set_name", "a"), ("pile_set_name", "Pile-CC")],  # the last, as json.loads
        ],
        pa.map_(pa.string(), pa.string()),
    )
    pq.write_table(pa.table({"text": ["a", "b", "c", "d"], "meta": meta}), tmp_path / "m.parquet")
    result = run(tmp_path / "m.parquet", "--output", tmp_path / "o")
    assert result.exit_code == 0, result.output
    table = json.loads((tmp_path / "o.subsets.json").read_text())
    codes = np.load(tmp_path / "o.subsets.npy").tolist()
    assert [table["names"][c] for c in codes] == ["Pile-CC", "ArXiv", "", "Pile-CC"]


@pytest.mark.parametrize("where", ["text column", "meta column", "meta field"])
def test_parquet_column_or_field_named_twice_is_refused(tmp_path, where):
    # Which one was meant is unclear: a KeyError traceback, or silently no subset names.
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    text, meta = pa.array(["a", "b"]), pa.array([{"pile_set_name": "P"}] * 2)
    if where == "text column":
        table = pa.Table.from_arrays([text, text], names=["text", "text"])
        message = "has 2 columns named 'text'"
    elif where == "meta column":
        table = pa.Table.from_arrays([text, meta, meta], names=["text", "meta", "meta"])
        message = "has 2 columns named 'meta'"
    else:
        twice = pa.StructArray.from_arrays(
            [pa.array(["P", "Q"]), pa.array(["R", "S"])], names=["pile_set_name"] * 2
        )
        table = pa.Table.from_arrays([text, twice], names=["text", "meta"])
        message = "the struct at 'meta' has 2 fields named 'pile_set_name'"
    pq.write_table(table, tmp_path / "d.parquet")
    result = run(tmp_path / "d.parquet", "--output", tmp_path / "o")
    assert result.exit_code == 1, result.output
    assert f"error: {tmp_path / 'd.parquet'}" in result.output and message in result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.parquet"]


def test_a_full_disk_while_finishing_leaves_no_file_at_a_final_name(tmp_path, lines):
    # The .bin and the subsets were renamed into place before the .idx was written: a disk
    # filling up there left them beside no .idx, with the work said to be kept elsewhere.
    source = tmp_path / "in.jsonl.zst"
    write_zst_frames(source, lines, frames=2)
    prefix = tmp_path / "out"
    work = Path(f"{prefix}.partial")

    def fill_the_disk_at_finish(*_):
        if work.is_dir() and not (work / "final.idx").is_symlink():
            (work / "final.idx").symlink_to("/dev/full")  # every write: ENOSPC

    with pytest.raises(OSError, match="No space left on device"):
        tokenize_files([source], prefix, progress=fill_the_disk_at_finish)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl.zst", "out.partial"]
    (work / "final.idx").unlink()
    resumed = tokenize_files([source], prefix)
    clean = tokenize_files([source], tmp_path / "clean")
    assert resumed["documents"] == clean["documents"] > 0
    assert dataset_bytes(prefix) == dataset_bytes(tmp_path / "clean")


def test_merge_checks_tokenizers_across_folders_and_records_against_their_part(tmp_path, lines):
    d = _input_folder(tmp_path, lines, 2)
    (tmp_path / "node0").mkdir()
    (tmp_path / "node1").mkdir()
    first = _shard(d, tmp_path / "node0" / "p", 0, 2)
    other = tmp_path / "other_tokenizer.json"  # the same tokenizer, other bytes
    other.write_text(json.dumps(json.loads(DEFAULT_TOKENIZER.read_text(encoding="utf-8"))))
    second = _shard(d, tmp_path / "node1" / "p", 1, 2, "--tokenizer", other)
    # Parts of one array spread over folders need --allow-partial, which does not excuse this.
    result = _merge(tmp_path / "m", first, second, "--allow-partial")
    assert result.exit_code == 2 and "was tokenized with another tokenizer" in result.output
    # A record beside a part it does not describe.
    second = _shard(d, tmp_path / "node1" / "p", 1, 2)
    record = Path(f"{first}.shard.json")
    record.write_text(record.read_text().replace('"shard_index": 0', '"shard_index": 1'))
    result = _merge(tmp_path / "m", first, second, "--allow-partial")
    assert (
        result.exit_code == 2 and "the record of part 1 of 2, beside part 0 of 2" in result.output
    )
    # A part that is not there is named as such, not as a part without its record.
    result = _merge(tmp_path / "m", tmp_path / "node0" / "p-00001-of-00002", "--allow-partial")
    assert result.exit_code == 1 and "record" not in result.output, result.output


def test_a_full_disk_in_merge_keeps_an_earlier_output_whole(tmp_path, lines):
    # The earlier OUTPUT.idx was deleted before the new files were written: a full disk or a
    # kill there left the earlier output without its .idx, or deleted it.
    d = _input_folder(tmp_path, lines, 2)
    first, second = (_shard(d, tmp_path / "p", i, 2) for i in range(2))
    assert _merge(tmp_path / "m", first, "--allow-partial").exit_code == 0
    before = dataset_bytes(tmp_path / "m")
    (tmp_path / f".m.idx.tmp-{os.getpid()}").symlink_to("/dev/full")  # its writes: ENOSPC
    result = _merge(tmp_path / "m", first, second)
    assert result.exit_code == 1 and "No space left on device" in result.output
    assert f"{tmp_path / 'm.idx'}: No space" in result.output  # the file, not its temporary
    assert dataset_bytes(tmp_path / "m") == before
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name and not p.is_symlink()]


def test_merge_over_a_part_drops_its_record_and_cleans_a_killed_merges_temporaries(tmp_path, lines):
    d = _input_folder(tmp_path, lines, 2)
    first, second = (_shard(d, tmp_path / "p", i, 2) for i in range(2))
    # The part's record stayed beside a merge written over the part, and vouched for it.
    assert _merge(second, first, "--allow-partial").exit_code == 0
    assert not Path(f"{second}.shard.json").exists()
    result = _merge(tmp_path / "all", first, second)
    assert result.exit_code == 2 and f"{second} has no .shard.json record" in result.output
    # Subset temporaries of a killed merge went only when a later merge wrote subsets too.
    plain = tmp_path / "plain"
    with IndexedDatasetBuilder(plain, np.uint16) as b:
        b.add_document([1, 2])
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())  # no process has this PID
    stale = tmp_path / f".m.subsets.npy.tmp-{pid_max + 1}"
    stale.write_bytes(b"half")
    assert _merge(tmp_path / "m", plain).exit_code == 0
    assert not stale.exists()


def test_more_threads_than_cores_are_noted(tmp_path, lines):
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines[:20]) + "\n")
    cores = len(os.sched_getaffinity(0))
    result = CliRunner().invoke(main, ["tokenize", str(src), "-o", str(tmp_path / "o"),
                                       "--threads", str(cores + 1)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"note: --threads {cores + 1} is more than the {cores} cores" in result.output
    result = CliRunner().invoke(main, ["tokenize", str(src), "-o", str(tmp_path / "p")])
    assert "note: --threads" not in result.output
