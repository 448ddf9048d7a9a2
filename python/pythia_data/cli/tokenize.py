"""`pythia-data tokenize`: corpora → GPT-NeoX indexed dataset (+ per-document subsets)."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import click
from click.core import ParameterSource

from pythia_data.cli import _stops
from pythia_data.cli._prefixes import output_prefix
from pythia_data.cli._stops import WORK_DIR_KEY, StopRequests
from pythia_data.indexed import _strip_extension
from pythia_data.progress import progress_bar
from pythia_data.shard_record import remove_shard_record, write_shard_record
from pythia_data.tokenize import (
    MAX_THREADS,
    _refuse_output_over_input,
    find_inputs,
    input_size,
    shard_inputs,
    shard_prefix,
    tokenize_files,
)
from pythia_data.tokenizer import Tokenizer


def _not_nan(param, value: float) -> float:
    if math.isnan(value):
        raise click.BadParameter("must be a number of seconds, not nan", param=param)
    return value


class _Bar:
    """tqdm over input bytes (for the ETA), with documents and text MB/s beside it; raises a
    requested stop."""

    def __init__(self, enabled: bool, stops: StopRequests):
        self.enabled = enabled
        self.stops = stops
        self.bar = None
        self.start = time.monotonic()
        self.postfix: dict[str, str] = {}

    def __call__(self, documents, tokens, read, total, text_bytes):
        self.stops.check()
        if not self.enabled:
            return
        rate = text_bytes / max(time.monotonic() - self.start, 1e-9) / 1e6
        self.postfix = {"docs": f"{documents:,}", "text": f"{rate:.1f}MB/s"}
        # All input written is not yet the end with files at once: the last parts are appended
        # to the output, a copy that can take minutes on the Pile.
        stage = {"stage": "finishing"} if read >= total else {}
        if self.bar is None:
            # Starting at the first position reported: what a resumed run finds done (or the
            # first moments of a new one) is no speed of this run's, and counted as one jump it
            # made tqdm's rate and ETA wrong for minutes and its log lines rare.
            self.bar = progress_bar(
                total=total,
                initial=read,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc="tokenize",
                dynamic_ncols=True,
            )
        # The postfix first: an update may print a line, which then shows these documents.
        self.bar.set_postfix(self.postfix | stage, refresh=False)
        self.bar.update(read - self.bar.n)

    def close(self):
        if self.bar is not None:
            # The last state shown is the finished one, or where an interruption stopped.
            self.bar.set_postfix(self.postfix, refresh=False)
            self.bar.close()
            self.bar = None


@click.command("tokenize")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(),
    callback=lambda ctx, param, value: output_prefix(value, "--output"),
    help="Dataset prefix: writes PREFIX.bin, PREFIX.idx, PREFIX.subsets.{npy,json}.",
)
@click.option(
    "--tokenizer",
    "tokenizer_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="A Hugging Face tokenizer.json (default: the bundled GPT-NeoX-20B).",
)
@click.option(
    "--text-key",
    default="text",
    show_default=True,
    help="The JSON field holding each document's text.",
)
@click.option(
    "--meta-key",
    default="meta.pile_set_name",
    show_default=True,
    help="Dotted path of a per-document string kept as PREFIX.subsets.* (a key or column "
    "named with the dots, as flattened data has it, counts too); '' for none.",
)
@click.option(
    "--on-error",
    type=click.Choice(["fail", "skip"]),
    default="fail",
    show_default=True,
    help="Bad JSON line, missing/non-string text, invalid UTF-8, truncated stream, corrupt "
    "Parquet row group: stop with an error naming file and line, or skip and count them. A "
    "compressed stream failing its checksum, an input changing during the run, and a Parquet "
    "file or saved dataset whose text column is missing or not text always stop the run.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=0, max=MAX_THREADS),
    default=0,
    show_default=True,
    help="Worker threads, each decompressing and tokenizing in turn (0: all cores; from 6 on, "
    "one more thread does all the decompressing). The output does not depend on it. JSON lines "
    "only: Parquet and saved datasets use all cores.",
)
@click.option(
    "--parallel-files",
    type=click.IntRange(min=0, max=MAX_THREADS),
    default=0,
    show_default=True,
    help="Input files to tokenize at once (0: 1 below 12 threads, else one per 2 threads). "
    "Decompressing one zstd stream feeds at most about 8 threads (0.4-0.8 GB/s of text), so "
    "on many cores with many files this keeps every core busy: each file (or run of "
    "consecutive files of at least 64 MB) becomes a part in PREFIX.partial/parts/, appended to "
    "the output in input order; once no file is left to start, the threads of finished ones "
    "join those still running. The output does not depend on it; the cost is writing the "
    "tokens twice, with up to 2 x N finished parts on disk at once.",
)
@click.option(
    "--shard-index",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Process only this share of the input files (with --num-shards).",
)
@click.option(
    "--num-shards",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Split the input files (in the order listed, directories expanded and sorted) into "
    "this many contiguous shares; each writes "
    "PREFIX-IIIII-of-NNNNN, and `pythia-data merge` joins them in order. Shares run on many "
    "machines (a SLURM array, say).",
)
@click.option(
    "--checkpoint-seconds",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    callback=lambda ctx, param, value: _not_nan(param, value),
    help="How often to checkpoint for resuming after a kill ('inf': never).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def command(
    inputs,
    output,
    tokenizer_path,
    text_key,
    meta_key,
    on_error,
    threads,
    parallel_files,
    shard_index,
    num_shards,
    checkpoint_seconds,
    quiet,
):
    """Tokenize INPUT... into a GPT-NeoX indexed dataset, as `preprocess_data.py --append-eod`
    does: one item per document, its tokens then the EOD id; empty texts skipped; input order
    kept. Inputs: .jsonl, .jsonl.zst (the Pile), .jsonl.gz or .parquet files (also .jsonl.zstd,
    .json.zst, .json.gz; suffixes in any case), directories of them (searched recursively, through
    linked folders too, and sorted, skipping names that start with "." and files listed before,
    whether named or found, directly or through a link; files with other suffixes, such as
    .json or .txt, are passed over there, but read when named), and
    Hugging Face datasets saved with `save_to_disk` (given, or found in a directory), in any mix
    (Parquet and saved datasets need pyarrow). A file named is always read, even when it was
    named or found before (as `merge` merges a dataset named twice): `DIR DIR/a.jsonl` reads
    a.jsonl twice, `DIR/a.jsonl DIR` once.
    Each line is read as Python's json.loads reads it (NaN and Infinity included; Python's
    limits on the digits of an integer and on nesting depth are not applied); lines of only
    spaces, tabs and CRs are no documents and are passed over.

    Killed runs continue from their last checkpoint when started again with the same command
    (one whose inputs changed since, in size, time or a digest of 16 sampled blocks, starts over);
    so do runs stopped by a full disk or another system error, whose work directory
    (PREFIX.partial/) is kept. Bad input stops the run and leaves nothing behind.
    """
    output = base = _strip_extension(output)
    passed_over: list[Path] = []
    files = all_files = find_inputs(inputs, passed_over)
    if shard_index >= num_shards:
        raise click.BadParameter(
            f"must be below --num-shards ({num_shards})", param_hint="--shard-index"
        )
    if num_shards > 1:
        # Refused by every shard of the array, not only by those left empty: the others'
        # parts would be work for a merge that refuses the set.
        if num_shards > len(all_files):
            total = len(all_files)
            raise click.BadParameter(
                f"{num_shards} shards of {total} input files would leave {num_shards - total} "
                f"empty: shards are made of whole files; use --num-shards {total} or fewer",
                param_hint="--num-shards",
            )
        files = shard_inputs(files, shard_index, num_shards)
        output = shard_prefix(output, shard_index, num_shards)
        # The input list as this run found it, for the part's record: measured once the run
        # was done, a file deleted meanwhile (another shard's, even) failed the finished part.
        all_sizes = [input_size(f) for f in all_files]
    click.get_current_context().meta[WORK_DIR_KEY] = f"{output}.partial"
    # Every shard's output against every input: shard 1 must not replace shard 0's input.
    every = [shard_prefix(base, i, num_shards) for i in range(num_shards)]
    if num_shards == 1:
        every = [output]
    try:
        _refuse_output_over_input(every, all_files)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    passed_over = [f for f in passed_over if not _is_own_file(f, every)]
    if passed_over:
        # Documented, but a folder of `datasets`' to_json output would give no documents of
        # those files without a word.
        click.echo(
            f"note: passed over {len(passed_over)} .json file(s) in the input folders (such as "
            f"{passed_over[0]}): they are read as JSON lines only when named, or renamed .jsonl",
            err=True,
        )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cores and threads > cores and not quiet:
        # Measured on 2 cores: 64 threads ran 35-53 % slower in 5x the memory.
        click.echo(
            f"note: --threads {threads} is more than the {cores} cores this process may use; "
            "threads beyond them only cost memory and time (0 uses every core)",
            err=True,
        )
    tokenizer = Tokenizer.from_file(tokenizer_path)
    if num_shards > 1:
        remove_shard_record(output)
    with StopRequests() as stops:
        bar = _Bar(enabled=not quiet, stops=stops)
        try:
            report = tokenize_files(
                files,
                output,
                tokenizer=tokenizer,
                text_key=text_key,
                meta_key=meta_key or None,
                on_error=on_error,
                threads=threads,
                parallel_files=parallel_files,
                checkpoint_seconds=checkpoint_seconds,
                progress=bar,
            )
        except KeyboardInterrupt:
            bar.close()
            click.echo(
                "interrupted; run the same command again to continue from the last checkpoint",
                err=True,
            )
            sys.exit(_stops.exit_status())
        finally:
            bar.close()
        if num_shards > 1:
            write_shard_record(
                output,
                shard_index,
                num_shards,
                all_files,
                all_sizes,
                tokenizer.sha256,
                text_key,
            )
        # Still under the handlers: a stop now finds the output complete.
        _print_summary(report, output, len(files))
        explicit = click.get_current_context().get_parameter_source("meta_key")
        if meta_key and report["documents"] and explicit != ParameterSource.DEFAULT:
            _note_missing_meta(output, meta_key)


def _is_own_file(path: Path, prefixes: list[Path]) -> bool:
    """Whether ``path`` is no corpus file but one pythia-data writes: in this run's work
    directory, or a dataset's ``.subsets.json`` or ``.shard.json`` (beside its ``.idx``, or of
    this run's output). With outputs written into an input folder, every rerun and every shard
    of an array noted these as corpus files passed over."""
    real = path.resolve()
    if any(real.is_relative_to(Path(f"{p}.partial").resolve()) for p in prefixes):
        return True
    for suffix in (".subsets.json", ".shard.json"):
        if path.name.endswith(suffix):
            prefix = path.with_name(path.name[: -len(suffix)])
            ours = {p.resolve() for p in prefixes}
            return prefix.with_name(prefix.name + ".idx").is_file() or prefix.resolve() in ours
    return False


def _note_missing_meta(output: Path, meta_key: str) -> None:
    """Say so when no document had the --meta-key asked for (a typo, or a key the corpus
    spells otherwise): every subset is then empty, which nothing else would show."""
    names = json.loads(Path(f"{output}.subsets.json").read_text())["names"]
    if names == [""]:
        example: object = "NAME"
        for key in reversed(meta_key.split(".")):
            example = {key: example}
        click.echo(
            f"note: no document has a subset name at --meta-key {meta_key!r} (a string, not "
            f"empty), so every subset is empty (a JSON line holds it as "
            f"{json.dumps(example, ensure_ascii=False)})",
            err=True,
        )


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _print_summary(report: dict, output: Path, files: int) -> None:
    if report.get("restart_note"):
        click.echo(f"note: {report['restart_note']}", err=True)
    if report["resumed_documents"]:
        click.echo(f"resumed after {report['resumed_documents']:,} documents from a checkpoint")
    click.echo(
        f"wrote {output}.bin and {output}.idx: {_count(report['documents'], 'document')}, "
        f"{_count(report['tokens'], 'token')} ({report['dtype']}) from {_count(files, 'file')}"
    )
    click.echo(f"skipped {_count(report['empty_skipped'], 'empty text')}")
    if report["errors_skipped"]:
        click.echo(f"skipped {report['errors_skipped']:,} bad lines or streams, e.g.:")
        for example in report["skipped_examples"]:
            click.echo(f"  {example}")
