"""Corpora to GPT-NeoX indexed datasets: what ``tools/preprocess_data.py --append-eod`` writes.

One item per document (its tokens, then the EOD id), empty texts skipped, input order kept,
uint16 tokens below 65,500 ids. Beside ``PREFIX.bin/.idx`` go ``PREFIX.subsets.npy`` (a uint16
code per item) and ``PREFIX.subsets.json`` (``{"key": ..., "names": [...]}``, code = index in
names), which tell which subset (the Pile's ``meta.pile_set_name``) each document came from.

Runs are streaming, parallel, deterministic (byte-identical output for any thread count) and
resumable: a killed run, started again with the same arguments, continues from its last
checkpoint in ``PREFIX.partial/`` and ends byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from pythia_data import _core
from pythia_data.tokenizer import Tokenizer

__all__ = [
    "INPUT_SUFFIXES",
    "find_inputs",
    "shard_inputs",
    "shard_prefix",
    "tokenize_files",
    "merge_subsets",
]

PathLike = str | os.PathLike

#: File names taken from a directory (compression is chosen by the last suffix).
INPUT_SUFFIXES = (".jsonl", ".jsonl.zst", ".jsonl.zstd", ".jsonl.gz", ".json.zst", ".json.gz")

#: progress(documents, tokens, input_bytes_read, input_bytes_total, text_bytes)
ProgressCallback = Callable[[int, int, int, int, int], None]


def find_inputs(paths: Iterable[PathLike]) -> list[Path]:
    """The input files: files as given, directories expanded (recursively, sorted by path)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*") if f.is_file() and f.name.endswith(INPUT_SUFFIXES)
            )
            if not found:
                raise FileNotFoundError(
                    f"{p}: no input files in this directory (looked for {', '.join(INPUT_SUFFIXES)})"
                )
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    if not files:
        raise ValueError("no input files given")
    return files


def shard_inputs(files: Sequence[Path], shard_index: int, num_shards: int) -> list[Path]:
    """Shard ``shard_index`` of ``num_shards``: a contiguous run of the files, so that merging the
    shards' outputs in shard order gives exactly what one run over all files writes."""
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(f"need 0 <= shard index < num shards, got {shard_index} of {num_shards}")
    n = len(files)
    return list(files[shard_index * n // num_shards : (shard_index + 1) * n // num_shards])


def shard_prefix(prefix: PathLike, shard_index: int, num_shards: int) -> Path:
    """Where shard ``shard_index`` writes: ``PREFIX-00003-of-00030``."""
    return Path(f"{os.fspath(prefix)}-{shard_index:05d}-of-{num_shards:05d}")


def tokenize_files(
    inputs: Sequence[PathLike],
    output: PathLike,
    *,
    tokenizer: Tokenizer | None = None,
    text_key: str = "text",
    meta_key: str | None = "meta.pile_set_name",
    on_error: str = "fail",
    threads: int = 0,
    checkpoint_seconds: float = 30.0,
    chunk_bytes: int = 1 << 20,
    progress: ProgressCallback | None = None,
) -> dict:
    """Tokenize JSON-lines files (plain, ``.zst``, ``.gz``) into ``output``.bin/.idx (+ subsets).

    ``on_error``: ``"fail"`` stops at the first bad line or stream with an error naming the file
    and line (nothing is kept); ``"skip"`` skips and counts them. ``meta_key``: dotted path of a
    per-document string to keep as subsets (None: no subset files). Returns the counts
    (documents, tokens, empty_skipped, errors_skipped, resumed_documents, skipped_examples, dtype).
    """
    tok = tokenizer or Tokenizer.from_file()
    return _core.tokenize_files(
        tok._core,
        [os.fspath(p) for p in inputs],
        os.fspath(output),
        text_key=text_key,
        meta_key=meta_key or None,
        on_error=on_error,
        threads=threads,
        chunk_bytes=chunk_bytes,
        checkpoint_seconds=checkpoint_seconds,
        progress=progress,
    )


def merge_subsets(output: PathLike, inputs: Sequence[PathLike]) -> None:
    """Join the subsets files of datasets merged in this order (as ``merge_datasets`` joins their
    ``.bin/.idx``); the result equals what one run over all their inputs writes."""
    _core.merge_subsets(os.fspath(output), [os.fspath(p) for p in inputs])
