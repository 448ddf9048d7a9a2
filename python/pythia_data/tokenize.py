"""Corpora to GPT-NeoX indexed datasets: what ``tools/preprocess_data.py --append-eod`` writes.

One item per document (its tokens, then the EOD id), empty texts skipped, input order kept,
uint16 tokens below 65,500 ids. Beside ``PREFIX.bin/.idx`` go ``PREFIX.subsets.npy`` (a uint16
code per item) and ``PREFIX.subsets.json`` (``{"key": ..., "names": [...]}``, code = index in
names), which tell which subset (the Pile's ``meta.pile_set_name``) each document came from;
a document without that string (or with a non-string there) gets the name ``""``. In Parquet
files and saved datasets, a ``datasets`` ClassLabel column (integers) gives its label names.

Runs are streaming, parallel, deterministic (byte-identical output for any thread count) and
resumable: a killed run, started again with the same arguments, continues from its last
checkpoint in ``PREFIX.partial/`` and ends byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import numbers
import operator
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from pythia_data import _core
from pythia_data.errors import PythiaDataError
from pythia_data.indexed import _strip_extension
from pythia_data.prefetch import prefetched
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

#: File names taken from a directory, in any case (compression is chosen by the last suffix).
INPUT_SUFFIXES = (
    ".jsonl", ".jsonl.zst", ".jsonl.zstd", ".jsonl.gz", ".json.zst", ".json.gz", ".parquet",
)  # fmt: skip

#: Files tokenized at once (``parallel_files``) go in parts of consecutive files of at least
#: this many bytes as stored: a part costs a work directory and a few syncs.
PART_BYTES = 64 << 20

#: progress(documents, tokens, input_bytes_read, input_bytes_total, text_bytes): the input
#: bytes (as stored) are those of the documents written, so they reach the total only at the end.
ProgressCallback = Callable[[int, int, int, int, int], None]


def _is_hf_dataset(p: Path) -> bool:
    """A directory written by Hugging Face ``datasets``' ``save_to_disk`` (Dataset or DatasetDict)."""
    return p.is_dir() and ((p / "state.json").is_file() or (p / "dataset_dict.json").is_file())


def _is_parquet(p: Path) -> bool:
    return p.suffix.lower() == ".parquet"


def _is_arrow_source(p: Path) -> bool:
    return _is_parquet(p) or _is_hf_dataset(p)


def find_inputs(paths: Iterable[PathLike], passed_over: list[Path] | None = None) -> list[Path]:
    """The input files: files as given, directories expanded (recursively, sorted by path);
    a ``save_to_disk`` dataset directory, given or found in a directory, is one input (a
    DatasetDict: one per split). JSON-lines files, Parquet files and saved datasets may be
    mixed.

    Directory expansion follows links to folders (cluster layouts link dataset folders into
    one tree), searching each real folder once: through the tree itself if it is part of it,
    else at its first link (a loop or an alias such as ``latest -> v2`` adds nothing). A broken
    link is an error, not a silent gap. It skips names starting with ``.`` (editor, VCS and
    download leftovers) and files whose resolved path is already listed (a link to an input read
    twice), as well as files it reaches both directly and through a link, whatever their names'
    order: such a file is read once, at its own place. A directory whose files are all listed
    already adds nothing. The ``.json`` files it passes over (``datasets``' ``to_json`` writes
    JSON lines under that name, but so much else is named so) are added to ``passed_over``."""
    files: list[Path] = []
    for p in map(Path, paths):
        if (p / "dataset_dict.json").is_file():
            files.extend(_dataset_dict_splits(p))
        elif _is_hf_dataset(p):
            files.append(p)
        elif p.is_dir():
            json_files: list[Path] = []
            found = _directory_files(p, json_files)
            if passed_over is not None:
                passed_over.extend(json_files)
            if not found:
                # A folder of `datasets`' to_json output holds only .json files.
                held = (
                    f"; it holds {len(json_files)} .json file(s), read as JSON lines only when "
                    "named (or renamed .jsonl)"
                    if json_files
                    else ""
                )
                raise FileNotFoundError(
                    f"{p}: no input files in this directory (looked for "
                    f"{', '.join(INPUT_SUFFIXES)} and save_to_disk datasets){held}"
                )
            files.extend(_unlisted(p, found, {f.resolve() for f in files}))
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    if not files:
        raise ValueError("no input files given")
    return files


def _dataset_dict_splits(p: Path) -> list[Path]:
    """The split directories a saved DatasetDict lists in its ``dataset_dict.json``."""
    listing = p / "dataset_dict.json"
    try:
        splits = json.loads(listing.read_text())["splits"]
    except (ValueError, KeyError, TypeError) as e:
        raise PythiaDataError(f"{listing}: no list of splits ({e!r})") from e
    if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
        raise PythiaDataError(f'{listing}: "splits" must be a list of split names')
    for split in splits:
        if not _is_hf_dataset(p / split):
            what = "has no state.json" if (p / split).exists() else "not found"
            raise PythiaDataError(f"{p / split}: split listed in dataset_dict.json {what}")
    return [p / split for split in splits]


def _directory_files(directory: Path, passed_over: list[Path] | None = None) -> list[Path]:
    """The inputs under ``directory``, sorted, without hidden ones: files with an input suffix,
    and ``save_to_disk`` datasets (a DatasetDict: its splits, in its listing's order), whose own
    files are not searched; ``.json`` files outside those go to ``passed_over``."""
    found: list[Path] = []
    datasets: list[Path] = []
    for f in sorted(_walk(directory)):
        if datasets and f.is_relative_to(datasets[-1]):
            continue  # sorted by path, a dataset's own files come right after it
        if f.name.lower().endswith(INPUT_SUFFIXES):
            if f.is_file():
                found.append(f)
        elif (f / "dataset_dict.json").is_file():
            datasets.append(f)
            found.extend(_dataset_dict_splits(f))
        elif _is_hf_dataset(f):
            datasets.append(f)
            found.append(f)
        elif passed_over is not None and f.name.lower().endswith(".json") and f.is_file():
            passed_over.append(f)
    return found


def _walk(directory: Path) -> list[Path]:
    """Every entry under ``directory`` whose name does not start with ``.``. Each real folder is
    searched once: first the folders themselves, then those reached only through links to
    folders, fewest links first and then in name order. So a link to a folder of the tree
    (``latest -> v2``) adds nothing and moves nothing, a folder linked twice is read at its
    first link, and loops or many links to one folder cost nothing."""
    found: list[Path] = []
    seen = {directory.resolve()}
    level = [directory]
    while level:
        links: list[Path] = []
        for top in level:
            stack = [top]
            while stack:
                folder = stack.pop()
                for entry in _entries(folder):
                    path = folder / entry.name
                    if entry.is_symlink() and not path.exists():
                        raise PythiaDataError(
                            f"{path}: a broken link (to {os.readlink(path)}); a folder or file "
                            "it named would be left out: fix or remove it, or name the inputs"
                        )
                    found.append(path)
                    if not entry.is_dir(follow_symlinks=True):
                        continue
                    if entry.is_symlink():
                        links.append(path)
                        continue
                    real = path.resolve()
                    if real not in seen:  # a folder met again (under a linked one): once
                        seen.add(real)
                        stack.append(path)
        level = []
        for link in sorted(links):
            real = link.resolve()
            if real not in seen:
                seen.add(real)
                level.append(link)
    return found


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        entries = list(os.scandir(folder))
    except OSError as e:
        raise PythiaDataError(f"{folder}: cannot list this directory ({e.strerror})") from e
    return [e for e in entries if not e.name.startswith(".")]


def _unlisted(directory: Path, found: list[Path], listed: set[Path]) -> list[Path]:
    """``found`` (under ``directory``) without the files whose resolved path is in ``listed``
    or repeats an earlier one. A file reached through a link goes when the file itself is among
    ``found``, even when the link's name sorts first: keeping the link would move the file's
    documents to the link's place."""
    base = directory.resolve()
    reals = [f.resolve() for f in found]
    direct = {r for f, r in zip(found, reals, strict=True) if r == base / f.relative_to(directory)}
    taken = []
    for f, real in zip(found, reals, strict=True):
        if real in listed or (real in direct and real != base / f.relative_to(directory)):
            continue
        listed.add(real)
        taken.append(f)
    return taken


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


#: Most worker threads (and files at once) a run takes: far more than any machine's cores,
#: few enough that a mistyped count is refused rather than spawned.
MAX_THREADS = 4096
#: Largest work unit of JSON lines: each chunk in flight holds about 1.5 times this much.
MAX_CHUNK_BYTES = 1 << 30


def tokenize_files(
    inputs: Iterable[PathLike] | PathLike,
    output: PathLike,
    *,
    tokenizer: Tokenizer | PathLike | None = None,
    text_key: str = "text",
    meta_key: str | None = "meta.pile_set_name",
    on_error: str = "fail",
    threads: int = 0,
    parallel_files: int = 0,
    part_bytes: int | None = None,
    checkpoint_seconds: float = 30.0,
    chunk_bytes: int = 8 << 20,
    progress: ProgressCallback | None = None,
    progress_seconds: float = 0.1,
) -> dict:
    """Tokenize ``inputs`` into ``output``.bin/.idx (+ subsets): JSON-lines files (plain,
    ``.zst``, ``.gz``), Parquet files and ``save_to_disk`` dataset directories (pyarrow), in
    any mix (with Arrow inputs among them, each run of consecutive JSON-lines files is
    tokenized into the work directory first and then appended, a second copy of its tokens).

    ``on_error``: ``"fail"`` stops at the first bad line or stream with an error naming the file
    and line (nothing is kept); ``"skip"`` skips and counts them (all the rows of a Parquet row
    group that cannot be decoded). ``meta_key``: dotted path of a per-document string to keep
    as subsets (None or "": no subset files; a JSON key or an Arrow column named with the
    dots, as pandas' ``json_normalize`` and ``datasets``' ``flatten()`` write them, is that
    path too). Returns a dict: documents, tokens, empty_skipped,
    errors_skipped, resumed_documents, restart_note (why a checkpoint was not used, or None),
    skipped_examples (up to 10 messages), dtype. ``threads`` (0: all cores),
    ``parallel_files``, ``chunk_bytes`` and ``progress_seconds`` apply to JSON lines; Parquet
    and saved datasets are encoded a batch at a time on all cores, with ``progress`` after each
    batch. ``parallel_files``: how many input files to tokenize at once, each into a part in the
    work directory that is appended to the output in order (0: one per 2 threads from 12
    threads on, else 1); one zstd stream feeds at most about 8 threads. Such parts are runs of
    consecutive files of at least ``part_bytes`` (default ``PART_BYTES``, 64 MiB as stored).
    The output depends on none of these.
    ``progress`` is called about every ``progress_seconds``; an exception it raises (Ctrl-C)
    stops the run after a checkpoint, so the same call later continues where it stopped; so
    does an OSError (a full disk), which keeps the work up to the last checkpoint.
    ``inputs`` may be a single path or any iterable of paths (``Path.glob``'s); a saved
    DatasetDict is read split by split, in the order its ``dataset_dict.json`` lists them;
    ``tokenizer`` a ``Tokenizer`` or the path of a ``tokenizer.json`` (default: the bundled
    GPT-NeoX-20B tokenizer).
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]  # one file, not the characters of its name
    else:
        # Read twice below: an iterator (Path.glob's) was used up by the first read, and the
        # run then refused "no input files".
        inputs = list(inputs)
    if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
        tok = Tokenizer.from_file(tokenizer)
    elif isinstance(tokenizer, Tokenizer):
        tok = tokenizer
    else:
        raise TypeError(
            "tokenizer must be a pythia_data.Tokenizer or the path of a tokenizer.json, "
            f"not {type(tokenizer).__name__}"
        )
    if part_bytes is None:
        part_bytes = PART_BYTES  # read at call time, so that setting it applies to the CLI too
    for name, value, most in (
        ("threads", threads, MAX_THREADS),
        ("parallel_files", parallel_files, MAX_THREADS),
        ("part_bytes", part_bytes, 2**63 - 1),
        ("chunk_bytes", chunk_bytes, MAX_CHUNK_BYTES),
    ):
        if isinstance(value, bool | np.bool_):  # True ran one thread, False every core
            raise TypeError(f"{name} must be an integer, not bool")
        try:
            value = operator.index(value)  # "2" or 2.5 failed as a comparison of str and int
        except TypeError:
            raise TypeError(f"{name} must be an integer, not {type(value).__name__}") from None
        if value < 0:
            raise ValueError(f"{name} must be 0 or more, not {value}")
        if value > most:
            # 2**40 threads aborted the process on the memory for them.
            raise ValueError(f"{name} {value} is more than the most a run takes, {most}")
    for name, seconds in (
        ("checkpoint_seconds", checkpoint_seconds),
        ("progress_seconds", progress_seconds),
    ):
        if isinstance(seconds, bool | np.bool_) or not isinstance(seconds, numbers.Real):
            raise TypeError(f"{name} must be a number of seconds, not {type(seconds).__name__}")
        if math.isnan(seconds):
            raise ValueError(f"{name} must be a number of seconds, not NaN")
        if seconds < 0:
            raise ValueError(f"{name} must be 0 or more (0: at every chance), not {seconds}")
    if not isinstance(text_key, str) or not text_key:
        raise ValueError(
            f"the text key must name the field that holds each document's text (--text-key, "
            f"default 'text'), not {text_key!r}"
        )
    if meta_key and meta_key == text_key:
        raise ValueError(
            f"the meta key {meta_key!r} is the text key: subsets name a document's source (such "
            "as meta.pile_set_name), not its text; choose another --meta-key, or none with ''"
        )
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable, not {type(progress).__name__}")
    # "out.bin" names the dataset "out", as for IndexedDataset("out.bin") that reads it.
    output = _strip_extension(output)
    # A saved DatasetDict is its splits, in its listing's order (as `find_inputs` lists them).
    paths = [
        split
        for p in map(Path, inputs)
        for split in (_dataset_dict_splits(p) if (p / "dataset_dict.json").is_file() else [p])
    ]
    _refuse_output_over_input([output], paths)
    if any(_is_arrow_source(p) for p in paths):
        json_options = dict(
            threads=threads,
            parallel_files=parallel_files,
            part_bytes=part_bytes,
            chunk_bytes=chunk_bytes,
            progress_seconds=progress_seconds,
        )
        return _tokenize_with_writer(
            paths, output, tok, text_key, meta_key or None, on_error,
            checkpoint_seconds, progress, json_options,
        )  # fmt: skip
    return _core.tokenize_files(
        tok._core,
        [os.fspath(p) for p in inputs],
        os.fspath(output),
        text_key=text_key,
        meta_key=meta_key or None,
        on_error=on_error,
        threads=threads,
        parallel_files=parallel_files,
        part_bytes=part_bytes,
        chunk_bytes=chunk_bytes,
        checkpoint_seconds=checkpoint_seconds,
        progress=progress,
        progress_seconds=progress_seconds,
    )


def _refuse_output_over_input(outputs: Sequence[Path], inputs: Sequence[Path]) -> None:
    """Refuse outputs whose files would replace an input (``-o data`` with ``data.bin`` as an
    input): compared as resolved files, so links and relative paths do not hide it."""
    files = {
        Path(f"{os.fspath(output)}{ext}").resolve(): output
        for output in outputs
        for ext in (".bin", ".idx", ".subsets.npy", ".subsets.json")
    }
    for p in inputs:
        if (output := files.get(p.resolve())) is not None:
            raise ValueError(
                f"the output {output} would overwrite {p}, an input: choose another --output"
            )


def merge_subsets(output: PathLike, inputs: Sequence[PathLike]) -> None:
    """Join the subsets files of datasets merged in this order (as ``merge_datasets`` joins their
    ``.bin/.idx``); the result equals what one run over all their inputs writes."""
    _core.merge_subsets(_strip_extension(output), [_strip_extension(p) for p in inputs])


# --- Parquet and `save_to_disk` datasets, read with pyarrow and fed to the same output ----------


#: What a run stopped by a bad row can do instead (the skipped examples go without it).
SKIP_ROWS_HINT = "skip such rows with --on-error skip"

#: Rows per batch read from Parquet, and rows tokenized in parallel at a time.
ARROW_BATCH_ROWS = 2048

#: Text gathered from small batches before it is tokenized: enough to keep many cores busy.
PENDING_TEXT_BYTES = 64 << 20

#: With ``--on-error skip``, a Parquet row group is decoded whole before any row of it is used,
#: so that a damaged group is skipped whole: one of at most this many bytes decoded is kept in
#: memory meanwhile; a bigger one is decoded twice (for small groups, 3 % more CPU and time).
#: Consecutive small groups of at most this many bytes (and ``ARROW_BATCH_ROWS`` rows) in all
#: are decoded whole together, whatever ``on_error``.
HOLD_ROW_GROUP_BYTES = 64 << 20


def _is_damage(e: Exception) -> bool:
    """Whether pyarrow's ``e`` says the bytes read are not valid data, not that reading them
    failed: pyarrow raises both as OSError (corrupt compressed pages among them), but only a
    failed system call, which a rerun may get past, carries an errno."""
    import pyarrow as pa

    if isinstance(e, (MemoryError, pa.ArrowCancelled)):
        return False
    return e.errno is None if isinstance(e, OSError) else isinstance(e, pa.ArrowException)


def _one_line(e: Exception) -> str:
    """pyarrow's message for ``e``, whose lines (some span two) joined: errors are one line."""
    return " ".join(str(e).split())


def _parquet_file(source: Path):
    """``pq.ParquetFile``, with a file that is not Parquet reported under its name. Pages that
    carry a CRC are checked against it: a damaged uncompressed page otherwise reads as text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(source, page_checksum_verification=True)
    except (pa.ArrowException, OSError) as e:
        if not _is_damage(e):
            raise
        raise PythiaDataError(f"{source}: not a readable Parquet file ({_one_line(e)})") from e


class _Unreadable(NamedTuple):
    """A Parquet row group that cannot be decoded, or a damaged batch of an Arrow file, skipped
    whole in place of its batches."""

    num_rows: int
    message: str


def _arrow_batches(
    source: Path, columns: list[str], meta_key: str | None, skip_damaged: bool
) -> Iterator:
    """Record batches of a Parquet file or of a saved dataset's Arrow files, in order, each
    with the bytes of the source (as stored) read up to its end, for the progress (estimated
    from the rows in a Parquet file); ``columns[0]`` (the text) must be there, the others are
    read along the path ``meta_key``. With
    ``skip_damaged``, a Parquet row group that cannot be decoded, or a damaged batch of an
    Arrow file, comes as one ``_Unreadable``."""

    if _is_parquet(source):
        pf = _parquet_file(source)
        names = pf.schema_arrow.names
        if columns[0] not in names:  # named here: the batches below only hold `present`
            raise _no_text_column(source, columns[0], names)
        present = [c for c in columns if c in names]
        size, total = input_size(source), max(pf.metadata.num_rows, 1)
        first_row, group, join = 0, 0, True
        while group < pf.num_row_groups:
            run = _small_groups(pf, group) if join else range(group, group + 1)
            joined = _joined_groups(pf, run, present) if len(run) > 1 else None
            if joined is not None:
                for batch in joined:
                    first_row += batch.num_rows
                    yield batch, size * first_row // total
            else:
                # A group at a time: a big one, or a run that could not be read as one. That
                # is damage in one of its groups, kept apart so (kept, skipped or reported
                # alone, as ever), or else dictionaries nested in structs, which pyarrow cannot
                # join across groups in any run of this file: read alone from then on.
                damaged = False
                for g in run:
                    for batch in _row_group_batches(
                        source, pf, g, first_row, present, skip_damaged
                    ):
                        damaged = damaged or isinstance(batch, _Unreadable)
                        first_row += batch.num_rows
                        yield batch, size * first_row // total
                join = join and (len(run) == 1 or damaged)
            group = run.stop
        return
    first_row = read_before = 0
    for path in _saved_data_files(source):
        for batch, read in _arrow_stream(path):
            damage = _damage(batch, columns, meta_key)
            if damage is not None:
                rows = f"rows {first_row + 1}-{first_row + batch.num_rows}"
                message = f"{source}: damaged Arrow data in {rows} ({path.name}: {damage})"
                if not skip_damaged:
                    hint = "save the dataset again, or skip such batches with --on-error skip"
                    raise PythiaDataError(f"{message}; {hint}")
                yield _Unreadable(batch.num_rows, message), read_before + read
            else:
                yield batch, read_before + read
            first_row += batch.num_rows
        read_before += path.stat().st_size


def _row_group_bytes(pf, group: int) -> int:
    """The bytes of row group ``group``'s columns decoded (all of them: a bound on those read),
    as its writer recorded them."""
    return pf.metadata.row_group(group).total_byte_size


def _small_groups(pf, group: int) -> range:
    """The row groups read as one from ``group`` on: consecutive ones of at most
    ``ARROW_BATCH_ROWS`` rows and ``HOLD_ROW_GROUP_BYTES`` decoded in all (``group`` at least).
    A reader per group cost about 0.13 ms: most of the time of a file of groups of a few rows."""
    rows = size = 0
    end = group
    while end < pf.num_row_groups:
        meta = pf.metadata.row_group(end)
        rows += meta.num_rows
        size += meta.total_byte_size
        if end > group and (rows > ARROW_BATCH_ROWS or size > HOLD_ROW_GROUP_BYTES):
            break
        end += 1
    return range(group, end)


def _joined_groups(pf, run: range, columns) -> list | None:
    """The batches of the row groups ``run``, decoded whole before any is used; None where
    pyarrow cannot read them as one (damage in one of them, or nested dictionaries), to be
    read a group at a time instead, which tells which."""
    import pyarrow as pa

    try:
        # Batches across the groups: one a group (`read_row_groups`) cost as much again.
        return list(pf.iter_batches(batch_size=ARROW_BATCH_ROWS, row_groups=run, columns=columns))
    except (pa.ArrowException, OSError) as e:
        if not _is_damage(e):
            raise
        return None


def _row_group_batches(source: Path, pf, group: int, first_row: int, columns, skip_damaged):
    """The batches of one row group. Read a group at a time, damage stays within its group, and
    dictionary columns nested in structs can be read (pyarrow cannot join them across groups)."""
    import pyarrow as pa

    rows = pf.metadata.row_group(group).num_rows

    def batches():
        return pf.iter_batches(batch_size=ARROW_BATCH_ROWS, row_groups=[group], columns=columns)

    def message(e: Exception) -> str:
        where = f"row group {group}, rows {first_row + 1}-{first_row + rows}"
        return f"{source}: corrupt Parquet data in {where} ({_one_line(e)})"

    if skip_damaged:
        # Decoded whole before any row is used, so that a group is kept or skipped whole,
        # whatever the batch size: kept decoded when it is small, else decoded again.
        held: list | None = [] if _row_group_bytes(pf, group) <= HOLD_ROW_GROUP_BYTES else None
        try:
            for batch in batches():
                if held is not None:
                    held.append(batch)
        except (pa.ArrowException, OSError) as e:
            if not _is_damage(e):
                raise
            yield _Unreadable(rows, message(e))
            return
        if held is not None:
            yield from held
            return
    try:
        yield from batches()
    except (pa.ArrowException, OSError) as e:
        if not _is_damage(e):
            raise
        hint = "re-create or re-download the file, or skip such row groups with --on-error skip"
        raise PythiaDataError(f"{message(e)}; {hint}") from e


def _saved_data_files(source: Path) -> list[Path]:
    """The Arrow files a ``save_to_disk`` directory lists in its ``state.json``."""
    state = source / "state.json"
    try:
        return [
            source / entry["filename"] for entry in json.loads(state.read_text())["_data_files"]
        ]
    except (ValueError, KeyError, TypeError) as e:
        raise PythiaDataError(f"{state}: not a save_to_disk state.json ({e!r})") from e


def _as_binary(type_):
    """``type_`` with every string type inside it as the binary type of the same layout."""
    import pyarrow as pa
    import pyarrow.types as pat

    if pat.is_string(type_):
        return pa.binary()
    if pat.is_large_string(type_):
        return pa.large_binary()
    if pat.is_string_view(type_):
        return pa.binary_view()
    if pat.is_dictionary(type_):
        return pa.dictionary(type_.index_type, _as_binary(type_.value_type), type_.ordered)
    if pat.is_struct(type_):
        return pa.struct([f.with_type(_as_binary(f.type)) for f in type_])
    if pat.is_map(type_):
        return pa.map_(_as_binary(type_.key_type), _as_binary(type_.item_type))
    if pat.is_list(type_) or pat.is_large_list(type_) or pat.is_fixed_size_list(type_):
        field = type_.value_field.with_type(_as_binary(type_.value_type))
        if pat.is_fixed_size_list(type_):
            return pa.list_(field, type_.list_size)
        return pa.large_list(field) if pat.is_large_list(type_) else pa.list_(field)
    return type_


def _read_part(col, fields: list[str]):
    """``col`` with, inside its structs, only the field on the path ``fields``: what the subset
    lookup reads of it (``_meta_column``), so that damage in a field nobody reads stops
    nothing. A struct holding the path's field twice, or at an offset, is kept whole."""
    import pyarrow as pa
    import pyarrow.types as pat

    if not fields or not pat.is_struct(col.type) or col.offset != 0:
        return col
    names = [col.type.field(k).name for k in range(col.type.num_fields)]
    if names.count(fields[0]) > 1:
        return col
    kept = []
    if fields[0] in names:
        k = names.index(fields[0])
        child = _read_part(col.field(k), fields[1:])
        kept.append((col.type.field(k).with_type(child.type), child))
    return pa.Array.from_buffers(
        pa.struct([f for f, _ in kept]),
        len(col),
        [col.buffers()[0]],
        null_count=col.null_count,
        children=[c for _, c in kept],
    )


def _damage(batch, columns: list[str], meta_key: str | None) -> str | None:
    """What is structurally wrong with what will be read of ``batch``'s columns, or None
    (``columns[0]`` is the text; the others are read along the path ``meta_key``). pyarrow
    checks nothing of an Arrow file's buffers when it reads one, and reads through damaged
    offsets, dictionary indices or string views past their buffers (a crash, or other memory
    read as text). Checked as binary, so that a text that is not UTF-8 stays a bad row of its
    own, as in JSON lines; the checks cost a pass over the offsets."""
    import pyarrow as pa

    for i, name in enumerate(batch.schema.names):
        if name in columns:
            col, where = batch.column(i), f"column {name!r}"
            if name != columns[0] and meta_key:
                fields = meta_key.split(".")[name.count(".") + 1 :]
                col = _read_part(col, fields)
                if fields:  # pyarrow numbers the children of the struct as narrowed
                    where += f", read at {'.'.join([name, *fields])!r}"
            try:
                col.view(_as_binary(col.type)).validate(full=True)
            except (pa.ArrowException, ValueError) as e:
                return f"{where}: {_one_line(e)}"
    return None


def _arrow_stream(path: Path, schema_only: bool = False) -> Iterator:
    """Record batches of one Arrow IPC stream file, each with the bytes of the file read up to
    its end; damage is reported naming the file, and a failed system call raised as the
    OSError it is (a run keeps its work for those). Read, not memory-mapped: a mapped file
    that shrinks while it is read (``save_to_disk`` rewrites its files in place) kills the
    process with SIGBUS. With ``schema_only``, the file is opened and its schema read, and
    nothing is yielded."""
    import pyarrow as pa

    try:
        with pa.OSFile(str(path)) as f:
            reader = pa.ipc.open_stream(f)
            if schema_only:
                return
            for batch in reader:
                yield batch, f.tell()
    except (pa.ArrowException, OSError) as e:
        if isinstance(e, OSError) and e.errno is not None:
            error = type(e)(f"{path}: {os.strerror(e.errno)}")
            error.errno = e.errno
            raise error from e
        if not _is_damage(e):
            raise
        # The rest of the file cannot be read past it, so --on-error skip cannot help.
        raise PythiaDataError(
            f"{path}: unreadable Arrow file ({_one_line(e)}); it must be an Arrow stream as "
            "`datasets`' save_to_disk writes: save the dataset again"
        ) from e


def _check_opens(source: Path) -> None:
    """Open a Parquet file's footer, or each Arrow file of a saved dataset and its schema:
    a source that cannot be read fails before any output is started."""
    if _is_parquet(source):
        _parquet_file(source)
        return
    for path in _saved_data_files(source):
        for _ in _arrow_stream(path, schema_only=True):
            pass


def _stamp(source: Path) -> str:
    """Sizes, modification times and sampled-block digests of the files ``source`` is read
    from, which a resumed run checks are unchanged. A saved dataset's are its own files':
    ``save_to_disk`` over an earlier save rewrites them in place, which leaves the directory's
    time as it was."""
    saved = _is_hf_dataset(source)
    files = [source / "state.json", *_saved_data_files(source)] if saved else [source]
    # Not a file (a directory given by mistake): refused later, with a message that says so.
    return " ".join(
        f"{st.st_size}:{st.st_mtime_ns}:{_core.sampled_digest(f) if f.is_file() else '-'}"
        for f, st in zip(files, map(Path.stat, files), strict=True)
    )


def input_size(source: Path) -> int:
    """Bytes of an input file, or of the files of a saved dataset's folder."""
    if source.is_dir():
        return sum(f.stat().st_size for f in source.iterdir() if f.is_file())
    return source.stat().st_size


def _string_array(col):
    """``col`` as a string or large_string array, or None when it holds something else: the
    dictionary-encoded and string_view columns other writers make (pandas categoricals,
    Polars) hold the same strings, and a column of nulls only (pandas and ``datasets`` give
    an all-None column that type) holds no string in any row."""
    import pyarrow as pa
    import pyarrow.types as pat

    if pat.is_null(col.type):
        return pa.nulls(len(col), pa.string())
    if pat.is_dictionary(col.type):
        values = _string_array(col.dictionary)
        if values is None:
            return None
        # 64-bit offsets: a few long texts repeated over a batch pass 2 GiB.
        return values.cast(pa.large_string()).take(col.indices)
    if pat.is_string_view(col.type):
        col = col.cast(pa.large_string())
    return col if pat.is_string(col.type) or pat.is_large_string(col.type) else None


def _decoded(strings) -> tuple[list[str | None], dict[int, str]]:
    """The values of a string array, None for nulls and for values that are not UTF-8 (Arrow
    does not check when reading), with why for each of the latter, by row."""
    import pyarrow as pa

    try:
        return strings.to_pylist(), {}
    except UnicodeDecodeError:
        pass  # which rows: below, one at a time
    values: list[str | None] = []
    invalid: dict[int, str] = {}
    for i, raw in enumerate(strings.cast(pa.large_string()).view(pa.large_binary()).to_pylist()):
        try:
            values.append(None if raw is None else raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            values.append(None)
            invalid[i] = f"invalid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})"
    return values, invalid


def _refuse_repeated(names: list[str], name: str, what: str, kind: str = "columns") -> None:
    """Refuse a column or struct field written twice: which one is meant is anyone's guess."""
    if (n := names.count(name)) > 1:
        raise PythiaDataError(
            f"{what} has {n} {kind} named {name!r}: which one to read is unclear; "
            "rename or drop all but one"
        )


def _string_buffers(strings) -> tuple:
    """A string array as ``_core``'s string-column functions take it: uint8 numpy views (no
    copy) of its 64-bit offsets, its data and its validity bitmap (None when no row is null),
    then its offset into them and its length. The text reaches the tokenizer as Arrow holds
    it: no Python string per row, decoded from UTF-8 and encoded back."""
    import pyarrow as pa
    import pyarrow.types as pat

    if not pat.is_large_string(strings.type):
        strings = strings.cast(pa.large_string())  # new offsets over the same data
    validity, offsets, data = strings.buffers()

    def view(buffer):
        return np.empty(0, np.uint8) if buffer is None else np.frombuffer(buffer, np.uint8)

    nulls = None if validity is None else view(validity)
    return view(offsets), view(data), nulls, strings.offset, len(strings)


def _rows_without_text(column: tuple, source: Path) -> list[tuple[int, str | None]]:
    """``_core.string_column_problems``, with a column that does not fit its buffers (which
    ``_damage`` finds first in Arrow files) reported under the file's name."""
    try:
        return _core.string_column_problems(column)
    except PythiaDataError as e:
        raise PythiaDataError(f"{source}: {e}") from e


# A column is the same for every row of a file: no row of it can be skipped into a usable
# dataset, so --on-error skip does not apply; the remedy is naming the right column.
_TEXT_COLUMN_HINT = "name the text column with --text-key (--on-error skip skips rows, not columns)"


def _no_text_column(source: Path, text_key: str, names: list[str]) -> PythiaDataError:
    """The refusal of a source without the text column: a dotted key naming a field inside a
    struct column (read for --meta-key) got the advice to name the column it had named."""
    message = f"{source}: no {text_key!r} column (columns: {', '.join(names)}); "
    if "." in text_key and text_key.split(".")[0] in names:
        return PythiaDataError(
            message + "the text must be a top-level column (a field inside a struct column, "
            "such as this, is read only for --meta-key): flatten the data first"
        )
    return PythiaDataError(message + _TEXT_COLUMN_HINT)


def _texts_of(batch, source: Path, text_key: str) -> tuple[tuple, dict[int, str]]:
    """The buffers of the batch's text column (``_string_buffers``), and why for each row
    without a usable text."""
    if text_key not in batch.schema.names:
        raise _no_text_column(source, text_key, batch.schema.names)
    _refuse_repeated(batch.schema.names, text_key, str(source))
    col = batch.column(text_key)
    strings = _string_array(col)
    if strings is None:
        raise PythiaDataError(
            f"{source}: the {text_key!r} column is {col.type}, not a string; {_TEXT_COLUMN_HINT}"
        )
    column = _string_buffers(strings)
    # Worded as for JSON lines, so that a run's skipped examples read alike whatever the kind.
    field = json.dumps(text_key, ensure_ascii=False)
    problems = {
        i: f"the {field} field is null, not a string"
        if why is None
        else f"{why} in the {field} field"
        for i, why in _rows_without_text(column, source)
    }
    return column, problems


def _meta_columns(meta_key: str) -> list[str]:
    """The column names ``meta_key`` may start with: its dotted prefixes."""
    parts = meta_key.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts) + 1)]


def _meta_column(batch, meta_key: str, source: Path):
    """The batch's column at the dotted path ``meta_key``, into struct columns and maps with
    string keys (Spark writes a JSON object as one), and that path as (column name,
    fields...); (None, None) when there is none. A column's own name may hold dots:
    ``datasets``' ``flatten()`` names the field ``pile_set_name`` of the struct column ``meta``
    ``meta.pile_set_name``. A field is null in a row where its struct is (Arrow keeps the values
    written beneath a null struct; JSON lines' ``"meta": null`` has no name); a key a map
    holds twice takes its last value, as ``json.loads`` keeps the last of a repeated key."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pat

    parts = meta_key.split(".")
    for k, name in enumerate(_meta_columns(meta_key), start=1):
        if name not in batch.schema.names:
            continue
        _refuse_repeated(batch.schema.names, name, str(source))
        col = batch.column(name)
        for depth, field in enumerate(parts[k:], start=k):
            if pat.is_struct(col.type):
                fields = [col.type.field(i).name for i in range(col.type.num_fields)]
                if field not in fields:
                    break
                where = f"{source}: the struct at {'.'.join(parts[:depth])!r}"
                _refuse_repeated(fields, field, where, "fields")
                col = pc.struct_field(col, [fields.index(field)])
            elif pat.is_map(col.type) and (
                pat.is_string(col.type.key_type) or pat.is_large_string(col.type.key_type)
            ):
                col = pc.map_lookup(col, pa.scalar(field, col.type.key_type), "last")
            else:
                break
        else:
            return col, [name, *parts[k:]]
    return None, None


def _class_label_names(schema, path: list[str]) -> list[str] | None:
    """The names of a ``datasets`` ClassLabel feature at ``path`` (its integers index them),
    from the ``huggingface`` schema metadata ``datasets`` writes into its Arrow and Parquet
    files; None where the column is not one."""
    try:
        node = json.loads((schema.metadata or {})[b"huggingface"])["info"]["features"]
        for field in path:
            node = node[field]
        names = node["names"] if node["_type"] == "ClassLabel" else None
    except (ValueError, KeyError, TypeError):
        return None
    ok = isinstance(names, list) and all(isinstance(n, str) for n in names)
    return names if ok else None


def _metas_of(batch, meta_key: str, source: Path) -> tuple[list[str | None], dict[int, str]]:
    """The batch's subset names (None where there is none), and why for each row whose name
    is not UTF-8. A ``datasets`` ClassLabel column gives its label names (a row without a
    label, -1, none)."""
    import pyarrow.types as pat

    col, path = _meta_column(batch, meta_key, source)
    if col is not None and pat.is_integer(col.type):
        names = _class_label_names(batch.schema, path)
        if names is not None:
            codes = col.to_pylist()
            return [names[c] if c is not None and 0 <= c < len(names) else None for c in codes], {}
    strings = None if col is None else _string_array(col)
    if strings is None:
        return [None] * batch.num_rows, {}
    metas, invalid = _decoded(strings)
    field = json.dumps(meta_key, ensure_ascii=False)
    return metas, {i: f"{why} in the {field} field" for i, why in invalid.items()}


class _PendingRows:
    """Batches' text columns waiting to be tokenized together. Tiny row groups give batches of
    a few rows, too few to keep every core busy, so rows gather (without a copy) until there
    are ``ARROW_BATCH_ROWS`` of them or ``PENDING_TEXT_BYTES`` of text."""

    def __init__(self, with_metas: bool):
        self.columns: list[tuple] = []
        self.skip: list[int] = []  # rows of all the columns taken as one
        self.metas: list[str | None] | None = [] if with_metas else None
        self.skipped = 0
        self.examples: list[str] = []
        self.rows = 0
        self.text_bytes = 0

    def add(self, column: tuple, problems: dict[int, str], metas, examples: list[str]) -> None:
        """A batch's text column (``_string_buffers``), its rows' problems, subset names and
        examples of the problems."""
        self.skip.extend(self.rows + i for i in sorted(problems))
        self.columns.append(column)
        self.rows += column[4]
        self.text_bytes += column[1].nbytes  # its whole data buffer: a bound, not a count
        if self.metas is not None:
            self.metas.extend(metas)
        self.skipped += len(problems)
        self.examples.extend(examples)

    def full(self) -> bool:
        return self.rows >= ARROW_BATCH_ROWS or self.text_bytes >= PENDING_TEXT_BYTES

    def flush(self, writer, source: int, end_row: int) -> int:
        """Tokenize and append the rows waiting, then start afresh; the output's position
        becomes (``source``, ``end_row``). Returns the bytes of text appended."""
        if not self.columns and not self.skipped:
            return 0
        added = writer.add_strings(
            self.columns, self.skip, self.metas, source, end_row, self.skipped, self.examples
        )
        self.__init__(with_metas=self.metas is not None)
        return added


def _changed_during_run(source: Path) -> PythiaDataError:
    return PythiaDataError(
        f"{source}: changed during the run (its files' sizes, times or contents); "
        "run the same command again to start over"
    )


def _tokenize_with_writer(
    sources: list[Path],
    output: Path,
    tok: Tokenizer,
    text_key: str,
    meta_key: str | None,
    on_error: str,
    checkpoint_seconds: float,
    progress: ProgressCallback | None,
    json_options: dict,
) -> dict:
    """Parquet files and saved datasets, read with pyarrow and fed to one output; JSON-lines
    files among them go, a run of consecutive ones at a time, through the JSON-lines pipeline
    into a dataset in the output's work directory that is then appended whole (a second copy
    of their tokens, the price of mixing kinds in one run). The checkpoint's position is
    (source, row) within Arrow sources and the start of a JSON-lines run otherwise."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise PythiaDataError(
            "reading Parquet files or saved datasets needs pyarrow: pip install pyarrow"
        ) from None
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', not {on_error!r}")
    arrow = [_is_arrow_source(p) for p in sources]
    for source, is_arrow in zip(sources, arrow, strict=True):
        if is_arrow:
            _check_opens(source)
    stamps = [_stamp(p) for p in sources]
    fingerprint = "\n".join(
        [f"arrow text_key={text_key!r} meta_key={meta_key!r} on_error={on_error}"]
        + [f"{Path(p).resolve()} {stamp}" for p, stamp in zip(sources, stamps, strict=True)]
    )
    writer = _core.TokenizeWriter(tok._core, os.fspath(output), fingerprint, meta_key)
    resumed = writer.resumed_documents
    restart_note = writer.restart_note
    start_source, start_row = writer.position
    sizes = [input_size(p) for p in sources]
    before = list(itertools.accumulate(sizes, initial=0))  # bytes of the sources before each
    bytes_total = before[-1]
    text_bytes = 0
    meta_columns = _meta_columns(meta_key) if meta_key else []
    columns = [text_key] + [c for c in meta_columns if c != text_key]
    last_checkpoint = time.monotonic()
    in_progress = False  # an exception raised meanwhile is the caller's, not bad input
    appending = False  # whether the output ends inside a JSON-lines part being appended

    def report(documents: int, tokens: int, read: int, text: int) -> None:
        nonlocal in_progress
        if progress is not None:
            in_progress = True
            progress(documents, tokens, read, bytes_total, text)
            in_progress = False

    def flush(pending: _PendingRows, si: int, row: int, read: int) -> None:
        """Tokenize the rows waiting, which end at row ``row`` of source ``si``, ``read``
        bytes into it."""
        nonlocal text_bytes
        text_bytes += pending.flush(writer, si, row)
        docs, tokens, *_ = writer.counts
        report(docs, tokens, before[si] + min(read, sizes[si]), text_bytes)

    try:
        si = start_source
        while si < len(sources):
            if not arrow[si]:
                end = next((k for k in range(si, len(sources)) if arrow[k]), len(sources))
                part = _json_lines_part(writer, si, end)
                done, text_before = None, text_bytes
                # The part's start recorded first: an interruption then keeps the work
                # directory, the part's own checkpoint in it, and this place to append it from.
                writer.checkpoint()
                if part.done.is_file():
                    done = _read_part_report(part)
                if done is None:
                    docs, tokens, *_ = writer.counts

                    def part_progress(
                        d, t, read, _total, text, docs=docs, tokens=tokens, si=si, base=text_before
                    ):
                        nonlocal text_bytes
                        text_bytes = base + text
                        report(docs + d, tokens + t, before[si] + read, text_bytes)

                    done = _core.tokenize_files(
                        tok._core,
                        [os.fspath(p) for p in sources[si:end]],
                        os.fspath(part.prefix),
                        text_key=text_key,
                        meta_key=meta_key,
                        on_error=on_error,
                        checkpoint_seconds=checkpoint_seconds,
                        progress=part_progress if progress is not None else None,
                        **json_options,
                    )
                    part.write_report(done)
                    resumed += done["resumed_documents"]
                    restart_note = restart_note or done["restart_note"]
                else:
                    resumed += done["documents"]
                appending = True
                writer.append_dataset(
                    os.fspath(part.prefix),
                    end,
                    done["empty_skipped"],
                    done["errors_skipped"],
                    done["skipped_examples"],
                    progress=lambda d, t, end=end, text=text_bytes: report(d, t, before[end], text),
                )
                appending = False
                writer.checkpoint()
                last_checkpoint = time.monotonic()
                part.remove()
                si = end
                continue
            source, row, read = sources[si], 0, 0
            read = _arrow_batches(source, columns, meta_key, skip_damaged=on_error == "skip")
            pending = _PendingRows(with_metas=bool(meta_key))
            try:
                with contextlib.closing(prefetched(read)) as batches:
                    for batch, read in batches:
                        n = batch.num_rows
                        skip = max(start_row - row, 0) if si == start_source else 0
                        if skip >= n:
                            row += n
                            continue
                        if isinstance(batch, _Unreadable):
                            flush(pending, si, row, read)  # the rows before it
                            metas = [] if meta_key else None
                            writer.add_strings(
                                [], [], metas, si, row + n, n - skip, [batch.message]
                            )
                        else:
                            if skip > 0:
                                batch = batch.slice(skip)
                            first_row = row + skip
                            column, problems = _texts_of(batch, source, text_key)
                            metas, messages = None, []
                            if meta_key:
                                metas, meta_problems = _metas_of(batch, meta_key, source)
                                problems = meta_problems | problems
                            if problems:
                                messages = [
                                    f"{source}: row {first_row + i + 1}: {problems[i]}"
                                    for i in sorted(problems)[:10]
                                ]
                                if on_error == "fail":
                                    raise PythiaDataError(f"{messages[0]}; {SKIP_ROWS_HINT}")
                            pending.add(column, problems, metas, messages)
                        row += n
                        checkpoint_due = time.monotonic() - last_checkpoint >= checkpoint_seconds
                        if pending.full() or checkpoint_due:
                            flush(pending, si, row, read)
                        if checkpoint_due:
                            writer.checkpoint()
                            last_checkpoint = time.monotonic()
            except PythiaDataError as e:
                # Damage that a rewrite in place made (a file cut short, another one's bytes)
                # is said to be what it is.
                if _stamp(source) != stamps[si]:
                    raise _changed_during_run(source) from e
                raise
            if _stamp(source) != stamps[si]:
                # Rewritten since the run began (save_to_disk rewrites a dataset's files in
                # place): what was read may mix two versions, and no read error need show it.
                raise _changed_during_run(source)
            flush(pending, si, row, sizes[si])  # all of it, with the files beside the data
            si += 1
        examples = writer.skipped_examples  # with those of the run resumed
        documents, tokens, empty, errors = writer.finish()
    except BaseException as e:
        if in_progress or isinstance(e, KeyboardInterrupt):
            # Stopped by the caller (Ctrl-C, or progress raising), as the JSON-lines path is:
            # keep the work, and let go of the output's lock now, not when the traceback goes
            # (a REPL keeps it, and the same call would find the output locked). Stopped
            # inside an append, the output holds part of a part: the checkpoint before it stands.
            if not appending:
                writer.checkpoint()
            writer.keep_if_resumable()
            raise
        if isinstance(e, OSError):
            # A full disk or a lost mount is no reason to lose the work up to the last checkpoint.
            hint = writer.keep_if_resumable()
            if hint is None:
                raise
            # A JSON-lines part's error names its own directory in the output's: name that.
            message = str(e).split(_KEPT_HINT)[0]
            raise OSError(f"{message}; {hint}") from e
        writer.discard()
        raise
    return {
        "documents": documents,
        "tokens": tokens,
        "empty_skipped": empty,
        "errors_skipped": errors,
        "resumed_documents": resumed,
        "restart_note": restart_note,
        "skipped_examples": examples,
        "dtype": "uint16" if tok.vocab_size < 65_500 else "int32",
    }


#: How the engine's resume hint starts (rust/engine/src/tokenize/output.rs, `resume_hint`).
_KEPT_HINT = "; the work up to the last checkpoint is kept in "


class _Part(NamedTuple):
    """A run of consecutive JSON-lines files tokenized into the work directory."""

    prefix: Path
    done: Path  # its report, once it is complete

    def write_report(self, report: dict) -> None:
        temp = self.done.with_name(self.done.name + ".tmp")
        temp.write_text(json.dumps(report))
        os.replace(temp, self.done)

    def remove(self) -> None:
        for suffix in (".bin", ".idx", ".subsets.npy", ".subsets.json"):
            self.prefix.with_name(self.prefix.name + suffix).unlink(missing_ok=True)
        self.done.unlink(missing_ok=True)


def _json_lines_part(writer, start: int, end: int) -> _Part:
    prefix = Path(writer.work_dir) / f"files-{start:06d}-{end:06d}"
    return _Part(prefix, prefix.with_name(prefix.name + ".done.json"))


def _read_part_report(part: _Part) -> dict | None:
    """The report of a part an interrupted run completed, if the part is still whole."""
    try:
        done = json.loads(part.done.read_text())
        return done if len(_core.IndexedDataset(part.prefix)) == done["documents"] else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
