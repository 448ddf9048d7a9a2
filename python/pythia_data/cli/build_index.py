"""`pythia-data build-index`: GPT-NeoX v1.0's doc/sample/shuffle index, with Pythia's defaults."""

from __future__ import annotations

import errno
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from pythia_data import _core
from pythia_data.cli import _stops
from pythia_data.cli._index_options import (
    SPLIT_HELP,
    SPLITS,
    parse_weights,
    split_iters,
    split_name,
    split_num_samples,
    with_eval_options,
    with_index_options,
)
from pythia_data.errors import PythiaDataError
from pythia_data.index import (
    blend_component_name,
    build_blended_index,
    build_index,
    check_buildable,
    find_datasets,
    index_paths,
)
from pythia_data.indexed import IndexedDataset


@click.command("build-index")
@click.argument("path", type=click.Path())
@with_index_options
@click.option(
    "--split",
    "splits",
    type=click.Choice(SPLITS),
    multiple=True,
    default=("train",),
    show_default=True,
    help="Which of GPT-NeoX's datasets to build (repeatable): " + SPLIT_HELP + " --num-samples "
    "sizes a single split; with several it is refused.",
)
@with_eval_options
@click.option(
    "--weights",
    default=None,
    help="Comma-separated weights, one per dataset found: build a BlendableDataset blend "
    "(each component gets ceil(total · w · 1.005) samples, and its index the name "
    "train_{i} for the i-th dataset, as GPT-NeoX names it). Without it every dataset is "
    "indexed on its own.",
)
@click.option(
    "--separate-last-epoch",
    is_flag=True,
    help="Megatron-LM's variant (shuffle a short last epoch separately). GPT-NeoX and Pythia "
    "never used it: the rows differ from Pythia's.",
)
@click.option("--overwrite", is_flag=True, help="Rebuild even if an index with these names exists.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def command(
    path,
    name,
    train_iters,
    global_batch_size,
    num_samples,
    seq_length,
    seed,
    cache_dir,
    splits,
    eval_interval,
    eval_iters,
    weights,
    separate_last_epoch,
    overwrite,
    quiet,
):
    """Build the sample index GPT-NeoX v1.0 would build for PATH (a dataset prefix, its .idx,
    or a directory of datasets), as GPT-NeoX's own .npy cache files.

    An existing index with the same names is reused when it matches and refused when it was
    built with other parameters. Defaults are Pythia's: 143,000 steps of 1,024 rows of 2,048
    tokens, seed 1234, i.e. 147,164,160 samples, named train_0.
    """
    splits = tuple(dict.fromkeys(splits))  # `--split valid --split valid` is one split
    if num_samples is not None and len(splits) > 1:
        # One count cannot size splits GPT-NeoX sizes differently: build them one at a time.
        raise click.UsageError(
            f"--num-samples sizes one split, but {len(splits)} were given "
            f"({', '.join(splits)}): build each split with its own --num-samples"
        )
    prefixes = find_datasets(path)
    # Every dataset first: one that cannot be indexed (an empty one) failed the run after the
    # indexes of those before it were built, and left them.
    for split in splits:
        ns = split_num_samples(
            split, num_samples, train_iters, global_batch_size, eval_interval, eval_iters
        )
        for prefix in prefixes:
            check_buildable(prefix, None if weights is not None else ns, seq_length)
    for prefix in prefixes:
        _note_preshuffled(prefix)
    written = _Written()
    with _interrupt_names_complete(written), _cache_dir_hint(path, cache_dir):
        for split in splits:
            ds_name = split_name(split, name)
            iters = split_iters(split, train_iters, eval_interval, eval_iters)
            ns = split_num_samples(
                split, num_samples, train_iters, global_batch_size, eval_interval, eval_iters
            )
            rows_used = iters * global_batch_size
            # What a blend and a single index are built with alike.
            common = dict(
                name=ds_name,
                seq_length=seq_length,
                seed=seed,
                separate_last_epoch=separate_last_epoch,
                cache_dir=cache_dir,
                overwrite=overwrite,
                progress=not quiet,
            )
            if weights is not None:
                ws = parse_weights(weights, path, prefixes)
                base = split_num_samples(
                    split,
                    num_samples,
                    train_iters,
                    global_batch_size,
                    eval_interval,
                    eval_iters,
                    margin=False,
                )
                counts = _core.blend_num_samples(ws, base)[1]
                for i, (p, n) in enumerate(zip(prefixes, counts, strict=True)):
                    comp = blend_component_name(ds_name, i)
                    written.add(index_paths(p, comp, n, seq_length, seed, cache_dir))
                blend = build_blended_index(prefixes, ws, num_samples=base, **common)
                shown = ", ".join(f"{w:.6g}" for w in blend.weights)
                click.echo(
                    f"blend of {len(prefixes)} datasets, weights {shown}, length {blend.size:,}"
                    f" (GPT-NeoX's); rows [0, {blend.readable:,}) readable, where the first "
                    f"component runs out"
                )
                for info in blend.components:
                    click.echo(info.describe(split=split))
                continue
            for prefix in prefixes:
                written.add(index_paths(prefix, ds_name, ns, seq_length, seed, cache_dir))
                info = build_index(prefix, num_samples=ns, **common)
                click.echo(info.describe(rows_used=rows_used, split=split))


def _note_preshuffled(prefix: Path) -> None:
    """An index over rows that are already in training order (Pythia's preshuffled data, or
    export-preshuffled's) takes each row as a document and shuffles them again, which is
    allowed (GPT-NeoX would do the same) but rarely meant: such data records no document ends."""
    ds = IndexedDataset(prefix)
    if len(ds) > 1 and len(ds.doc_idx) == 1:
        click.echo(
            f"note: {prefix} records no document ends (doc_idx [0] alone), as preshuffled data "
            "does: its items are indexed as documents and shuffled again; to read preshuffled "
            f"rows in their order, use `pythia-data batch {prefix} --preshuffled` (no index)",
            err=True,
        )


class _Written:
    """The indexes this run is about to write, to tell after an interrupt which are in place:
    one that comes just after an index was put in place must not report no output."""

    def __init__(self):
        self.planned: list[tuple[tuple, list]] = []

    def add(self, paths) -> None:
        self.planned.append((tuple(paths), [_stamp(p) for p in paths]))

    def complete(self) -> list[tuple]:
        done = []
        for paths, before in self.planned:
            now = [_stamp(p) for p in paths]
            record = paths[0].with_name(paths[0].name.replace("_doc_idx.npy", "_meta.json"))
            try:
                building = json.loads(record.read_text()).get("building")
            except (OSError, ValueError, AttributeError):
                building = True
            # New files (an atomic rename gives each a new inode), not the ones a reuse found.
            if (
                None not in now
                and not building
                and all(a != b for a, b in zip(now, before, strict=True))
            ):
                done.append(paths)
        return done


def _stamp(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns)


@contextmanager
def _interrupt_names_complete(written: _Written):
    """An interrupt after an index was put in place names it complete, rather than have the
    group say that this run left no output behind."""
    try:
        yield
    except KeyboardInterrupt:
        done = written.complete()
        if not done:
            raise  # nothing of this run's is there: the group says so
        files = ", ".join(str(p) for paths in done for p in paths)
        click.echo(f"interrupted after the index was written: {files} are complete", err=True)
        sys.exit(_stops.exit_status())


@contextmanager
def _cache_dir_hint(path, cache_dir):
    """A folder the index cannot be written to (read-only data) names the way out."""
    try:
        yield
    except OSError as e:
        # The engine's errors carry the system's words, not an errno.
        words = [os.strerror(n) for n in (errno.EACCES, errno.EPERM, errno.EROFS)]
        if cache_dir is not None or not any(w in str(e) for w in words):
            raise
        raise PythiaDataError(
            f"{e}: the index cannot be written beside the data; write it elsewhere with "
            "--cache-dir DIR (and give batch the same --cache-dir)"
        ) from e
