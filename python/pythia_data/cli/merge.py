"""`pythia-data merge`: concatenate indexed datasets, in order, like GPT-NeoX's merge tool."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
from pathlib import Path

import click

from pythia_data import _core
from pythia_data.cli._prefixes import output_prefix
from pythia_data.cli._stops import StopRequests
from pythia_data.errors import PythiaDataError
from pythia_data.indexed import IndexedDataset, IndexedDatasetBuilder, _strip_extension
from pythia_data.progress import progress_bar
from pythia_data.shard_record import SUFFIX as SHARD_RECORD_SUFFIX
from pythia_data.shard_record import check_shard_records, record_path

SUBSET_SUFFIXES = (".subsets.npy", ".subsets.json")
# Files a glob of a run's parts also matches, which travel with their dataset.
SIDE_SUFFIXES = (*SUBSET_SUFFIXES, SHARD_RECORD_SUFFIX)
# What `pythia-data tokenize --shard-index I --num-shards N` names its output (shard_prefix).
SHARD_NAME = re.compile(r"(.*)-(\d{5,})-of-(\d{5,})")


def _dataset_args(inputs: tuple[Path, ...]) -> list[Path]:
    """Prefixes from the arguments. A shell glob such as `part-*` names each dataset twice in
    a row (its .bin, then its .idx): such a pair counts once. The glob also matches tokenize's
    PREFIX.subsets.npy/.json and PREFIX.shard.json, which travel with their dataset anyway:
    they are skipped. A dataset named twice on purpose (its prefix twice, or apart) is merged
    twice."""
    out: list[Path] = []
    previous: Path | None = None
    for arg in inputs:
        if arg.name.endswith(SIDE_SUFFIXES):
            continue
        if arg.name.endswith(".partial") and arg.is_dir():
            raise click.UsageError(
                f"{arg} is the work directory of an unfinished tokenize run of "
                f"{arg.with_suffix('')}: run that command again to finish it, then merge"
            )
        if arg.is_dir() and not arg.with_name(arg.name + ".idx").exists():
            raise click.UsageError(
                f"{arg} is a folder: merge joins datasets in the order given, so name them "
                # The folder quoted, the * not: a quoted glob reaches merge unexpanded.
                f"(a shell glob such as {shlex.quote(str(arg))}/*.idx gives them in name order)"
            )
        prefix = _strip_extension(arg)
        pair = (
            previous is not None
            and prefix == _strip_extension(previous)
            and arg.suffix != previous.suffix
        )
        if pair and {arg.suffix, previous.suffix} == {".bin", ".idx"}:
            previous = None
            continue
        out.append(prefix)
        previous = arg
    if not out and inputs:
        raise click.UsageError(
            "only subset or shard record files were given: name the datasets (PREFIX, PREFIX.bin "
            "or PREFIX.idx); their PREFIX.subsets.npy/.json are merged with them"
        )
    return out


def _check_shard_set(prefixes: list[Path]) -> None:
    """Refuse the parts of a sharded tokenize run unless all are given, in order, one after
    another: a missing or misplaced part silently drops or reorders documents. A run is the
    parts in one folder with one PREFIX and N; other inputs may come before or after it. Parts
    of one run spread over folders count as runs with parts missing (two complete runs of the
    same name in two folders are fine)."""
    runs: dict[tuple[Path, str, int], list[tuple[int, int]]] = {}
    for k, p in enumerate(prefixes):
        m = SHARD_NAME.fullmatch(p.name)
        if m is None:
            continue
        i, n = int(m[2]), int(m[3])
        if i >= n:
            raise click.UsageError(
                f"{p}: part {m[2]} of {m[3]} is no tokenize shard (--num-shards N names parts "
                "00000 to N-1); rename it, or pass --allow-partial to merge it as given"
            )
        runs.setdefault((p.parent.resolve(), m[1], n), []).append((k, i))
    for (folder, name, n), parts in runs.items():
        stem = prefixes[parts[0][0]].with_name(name)
        got = [i for _, i in parts]
        missing = sorted(set(range(n)) - set(got))
        if missing:
            shown = ", ".join(f"{i:05d}" for i in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            problem = f"part(s) {shown}{more} missing"
            unfinished = [i for i in missing if Path(f"{stem}-{i:05d}-of-{n:05d}.partial").is_dir()]
            if unfinished:
                problem += (
                    f" (part {unfinished[0]:05d}'s tokenize run has not finished: its work is in "
                    f"{stem}-{unfinished[0]:05d}-of-{n:05d}.partial/; run that shard's command "
                    "again to finish it)"
                )
            elsewhere = sorted(str(f) for f, o, m in runs if (o, m) == (name, n) and f != folder)
            if elsewhere:
                problem += f" (parts of one run are counted per folder; others in {elsewhere[0]})"
        elif got != list(range(n)):
            k = next(k for k, i in enumerate(got) if i != k)
            # A repeat past the last part ([0, 1, 2, 2] of 3) has no place it "belongs" in.
            where = f"where {k:05d} belongs" if k < n else "again, after the last part"
            problem = f"parts out of order or repeated: {got[k]:05d} is given {where}"
        elif parts[-1][0] - parts[0][0] != n - 1:
            k = next(k for k, (at, _) in enumerate(parts) if at != parts[0][0] + k)
            between = prefixes[parts[0][0] + k]
            problem = f"{between} is given between parts {k - 1:05d} and {k:05d}"
        else:
            continue
        raise click.UsageError(
            f"{stem}-*-of-{n:05d}: {problem}; give parts 00000 to {n - 1:05d} in order, one "
            f"after another (a glob like {stem}-*-of-{n:05d}.idx does), or pass --allow-partial "
            "to merge them as given"
        )


def _check_runs_records(prefixes: list[Path], allow_partial: bool) -> None:
    """Refuse parts made with another tokenizer, and parts of one sharded run (one folder,
    PREFIX and N) made from other inputs, by the records tokenize writes beside them."""
    runs: dict[tuple[Path, str, int], list[tuple[Path, int, int]]] = {}
    for p in prefixes:
        m = SHARD_NAME.fullmatch(p.name)
        if m is not None:
            key = (p.parent.resolve(), m[1], int(m[3]))
            runs.setdefault(key, []).append((p, int(m[2]), int(m[3])))
    try:
        check_shard_records(list(runs.values()), inputs_may_differ=allow_partial)
    except PythiaDataError as e:
        raise click.UsageError(str(e)) from None


def _open_input(prefix: Path) -> IndexedDataset:
    idx = prefix.with_name(prefix.name + ".idx")
    if not idx.exists() and prefix.with_name(prefix.name + ".partial").is_dir():
        raise click.UsageError(
            f"{prefix} has no .idx: its tokenize run has not finished ({prefix}.partial/ holds "
            "its work); run that command again to finish it, then merge"
        )
    return IndexedDataset(prefix)


def _check_doc_idx(datasets: list[IndexedDataset]) -> None:
    """Refuse inputs whose doc_idx leaves items outside any document. Appended with its doc_idx
    shifted (GPT-NeoX's merge_file_), such a part's trailing items join the next input's first
    document, and the output looks whole: `verify` finds nothing wrong with it, though it
    refuses the part. Pythia's preshuffled data (doc_idx [0] alone, no document ends) merges
    only with its like: the output is then [0] alone too, where beside document datasets its
    items would be glued into their documents, leaving an output `verify` calls corrupt."""

    def preshuffled(ds: IndexedDataset) -> bool:
        return len(ds.doc_idx) == 1 and len(ds) > 0

    no_ends = [ds for ds in datasets if preshuffled(ds)]
    for ds in datasets:
        if not preshuffled(ds) and (len(ds.doc_idx) == 0 or int(ds.doc_idx[-1]) != len(ds)):
            last = int(ds.doc_idx[-1]) if len(ds.doc_idx) else "absent"
            raise PythiaDataError(
                f"{ds.idx_path}: the last doc_idx entry is {last} but the index holds {len(ds)} "
                "items (doc_idx must end at the item count): the .idx is corrupt or incomplete, "
                "and merged its items would join the next input's first document"
            )
    ended = [ds for ds in datasets if not preshuffled(ds) and len(ds)]
    if no_ends and ended:
        raise click.UsageError(
            f"{no_ends[0].prefix} records no document ends (doc_idx [0] alone, as in Pythia's "
            f"preshuffled data) but {ended[0].prefix} does: merged, the output's doc_idx would "
            "not cover its items; merge preshuffled datasets only with each other"
        )


def _join_subsets(output: Path, datasets: list[IndexedDataset]) -> tuple[bytes, bytes] | None:
    """The merged subset files (npy, json) when every input has them, so the merged parts equal
    one tokenize run over all the inputs; read and checked before any output is written."""
    has = [ds.prefix.with_name(ds.prefix.name + ".subsets.json").exists() for ds in datasets]
    if all(has):
        return _core.join_subsets([ds.prefix for ds in datasets])
    if any(has):
        missing = next(ds.prefix for ds, h in zip(datasets, has, strict=True) if not h)
        click.echo(
            f"note: {missing} has no .subsets files, so {output} gets none (subset provenance "
            "is only kept when every input has it)",
            err=True,
        )
    return None


def _subsets_paths(output: Path) -> list[Path]:
    return [output.with_name(output.name + s) for s in SUBSET_SUFFIXES]


def _temp(dest: Path) -> Path:
    """The engine's temporary name for `dest` (atomic.rs), so a killed run's is found stale."""
    return dest.with_name(f".{dest.name}.tmp-{os.getpid()}")


def _stage_subsets(output: Path, joined: tuple[bytes, bytes]) -> None:
    for dest, data in zip(_subsets_paths(output), joined, strict=True):
        try:
            with open(_temp(dest), "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:  # a failed write names no file
            raise PythiaDataError(f"{dest}: {e.strerror}") from e


def _move_into_place(output: Path, builder: IndexedDatasetBuilder, staged: bool) -> None:
    """The builder writes and syncs its files; then, within moments, an earlier OUTPUT's .idx
    goes (so that a new .bin never pairs with it), and its subsets unless new ones replace
    them, and the staged subsets, the .bin and the .idx last are renamed into place. Only a
    complete output ever has an .idx, and a full disk or a stop while the large files are
    written leaves an earlier OUTPUT as it was and nothing new at a final name."""
    idx = output.with_name(output.name + ".idx")
    subsets = _subsets_paths(output)
    # A part's record describes that part, not a merge written over it.
    stale = [record_path(output)] + ([] if staged else subsets)
    try:
        builder._core.finish([(_temp(dest), dest) for dest in subsets] if staged else [], stale)
    except BaseException:
        if not idx.exists():  # an interrupt can land after finish: a complete output stays
            _remove_half_output(output)
        raise


def _remove_half_output(output: Path) -> None:
    """Without its .idx, OUTPUT is no dataset: a .bin or subsets left of it (new or from an
    earlier run) would only be mistaken for part of one."""
    for dest in [output.with_name(output.name + ".bin"), *_subsets_paths(output)]:
        with contextlib.suppress(OSError):  # best effort: the first error is the one to report
            dest.unlink(missing_ok=True)


@click.command("merge")
@click.argument("output", callback=lambda ctx, param, value: output_prefix(value, "OUTPUT"))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--allow-partial",
    is_flag=True,
    help="Merge parts of a sharded tokenize run (PREFIX-IIIII-of-NNNNN) even when some are "
    "missing, out of order, apart, numbered past NNNNN, or made from other input lists (parts "
    "tokenized with another tokenizer or --text-key are refused all the same).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def command(output: Path, inputs: tuple[Path, ...], allow_partial: bool, quiet: bool) -> None:
    """Concatenate the datasets INPUTS..., in the order given, into OUTPUT.

    OUTPUT and INPUTS are dataset prefixes (PREFIX.bin/.idx, with or without the extension;
    a glob like `out/pile-*-of-00030*` lists the parts of a sharded tokenize run in order, and
    its PREFIX.subsets.* files are skipped). Parts of a sharded run (those in one folder with one
    PREFIX-*-of-NNNNN) must all be given, in order and one after another, unless --allow-partial;
    other inputs may come before or after them. The result is byte-identical to GPT-NeoX's
    tools/merge_datasets.py: items appended in order, doc_idx shifted. When every input has the
    PREFIX.subsets.* files of `pythia-data tokenize`, they are joined too. The parts of a
    sharded run must come from the same input files and tokenizer (each part's
    PREFIX.shard.json says what it was made from). All inputs must share
    one dtype, and each input's doc_idx must end at its item count (Pythia's preshuffled data,
    doc_idx [0] alone, merges only with its like). OUTPUT appears only when the merge is complete; an interrupted merge leaves
    nothing behind.
    """
    output = _strip_extension(output)
    prefixes = _dataset_args(inputs)
    if not allow_partial:
        _check_shard_set(prefixes)
    datasets = [_open_input(p) for p in prefixes]
    _check_doc_idx(datasets)
    _check_runs_records(prefixes, allow_partial)
    # Compared as files: an output named like an input's shard would be renamed over it.
    outputs = {output.with_name(output.name + ext).resolve() for ext in (".bin", ".idx")}
    for ds in datasets:
        for f in [*ds.bin_paths, ds.idx_path]:
            if f.resolve() in outputs:
                raise click.UsageError(f"the output {output} would overwrite {f}, an input")
    dtypes = {ds.dtype.name for ds in datasets}
    if len(dtypes) > 1:
        detail = ", ".join(f"{ds.prefix} ({ds.dtype.name})" for ds in datasets)
        raise click.UsageError(f"inputs have different dtypes: {detail}")
    subsets = _join_subsets(output, datasets)
    for dest in _subsets_paths(output):  # a killed merge's, whether or not this one stages any
        _core.remove_stale_temps(dest)
    total = sum(ds.total_tokens * ds.dtype.itemsize for ds in datasets)
    builder = IndexedDatasetBuilder(output, datasets[0].dtype)
    try:
        with progress_bar(
            total=total, unit="B", unit_scale=True, desc="merge", disable=quiet
        ) as bar:
            for ds in datasets:
                builder.append_dataset(ds)
                bar.update(ds.total_tokens * ds.dtype.itemsize)
        if subsets is not None:
            _stage_subsets(output, subsets)
        # A stop now lets the output be finished (its fsync can take a while) rather than
        # report an interrupted merge whose complete output is there; a second one stops it.
        with StopRequests():
            _move_into_place(output, builder, staged=subsets is not None)
    except BaseException:
        builder.abort()
        for dest in _subsets_paths(output):
            _temp(dest).unlink(missing_ok=True)
        raise
    items = sum(len(ds) for ds in datasets)
    tokens = sum(ds.total_tokens for ds in datasets)
    click.echo(
        f"wrote {output} ({len(datasets)} input{'' if len(datasets) == 1 else 's'}, {items:,} items, "
        f"{tokens:,} tokens)"
    )
