"""`pythia-data verify`: structure and checksums of an indexed dataset."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

import click

from pythia_data.checksums import (
    check_writable,
    find_entry,
    find_expected,
    read_checksum_file,
    sha256_file,
    write_checksum_file,
)
from pythia_data.dataset import _read_subsets
from pythia_data.errors import PythiaDataError, prepare_output_folder
from pythia_data.index import find_one_dataset
from pythia_data.indexed import IndexedDataset
from pythia_data.progress import progress_bar


@click.command("verify")
@click.argument("prefix", type=click.Path(path_type=Path))
@click.option(
    "--checksums",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A checksum file to check the dataset's files (.idx, .bin or shards, .subsets.*) "
    "against: sha256sum's 'HEX  NAME' or --tag lines, or 'NAME HEX' as Pythia's "
    "shard_hashes.txt.",
)
@click.option(
    "--write-checksums",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the sha256 of the dataset's files (.idx, .bin or shards, .subsets.* when "
    "present) to this file (sha256sum format).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def command(
    prefix: Path, checksums: Path | None, write_checksums: Path | None, quiet: bool
) -> None:
    """Check that dataset PREFIX (or the one dataset in directory PREFIX) is intact.

    Always validates the structure (header, dtype, sizes against pointers, doc_idx from 0 to
    the item count, that the .bin or its shards hold exactly the indexed tokens) and, when
    present, the subset labels (one code per item, each naming a subset). With
    --checksums, also hashes each file the checksum file lists for this dataset and compares.
    Exits 1 on any mismatch.
    """
    prefix = find_one_dataset(prefix)
    ds = IndexedDataset(prefix)
    # Opening checks doc_idx starts at 0 and never decreases, but still reads a file whose last
    # entry falls short of the item count (a builder may leave items outside a document).
    # GPT-NeoX's preprocessing closes every document, so doc_idx must end at len(items).
    # Pythia's released preshuffled data (pile-{standard,deduped}-pythia-preshuffled) is the
    # exception: its document.idx holds doc_idx [0] alone (34 + 12·rows + 8 bytes), its rows
    # written without document ends. GPT-NeoX trains on every item whatever doc_idx says, and
    # rejecting it made `verify --checksums` unusable on the very files it is for.
    pythia_preshuffled = len(ds.doc_idx) == 1 and int(ds.doc_idx[0]) == 0 and len(ds) > 0
    if not pythia_preshuffled and (len(ds.doc_idx) == 0 or int(ds.doc_idx[-1]) != len(ds)):
        last = int(ds.doc_idx[-1]) if len(ds.doc_idx) else "absent"
        raise PythiaDataError(
            f"{ds.idx_path}: the last doc_idx entry is {last} but the index holds {len(ds)} "
            f"items (doc_idx must end at the item count): the .idx is corrupt or incomplete; "
            f"rebuild or download it again"
        )
    if pythia_preshuffled:
        click.echo(
            "note: doc_idx is [0] alone, as in Pythia's preshuffled document.idx: no document "
            "boundaries are recorded"
        )
    click.echo(f"structure OK: {len(ds):,} items, {ds.total_tokens:,} tokens ({ds.dtype.name})")
    subsets_files = _verify_subsets(ds)
    if not checksums and not write_checksums:
        return
    files = [ds.idx_path, *ds.bin_paths, *subsets_files]
    if write_checksums and write_checksums.resolve() in {f.resolve() for f in files}:
        raise PythiaDataError(
            f"--write-checksums {write_checksums} would overwrite a file of the dataset"
        )
    if write_checksums and checksums and write_checksums.resolve() == checksums.resolve():
        # The list would take the digests of the files it checks, corrupt ones too: the run
        # reported FAILED, and every later verify against the list passed.
        raise click.UsageError(
            f"--write-checksums {write_checksums} is the --checksums file the dataset is checked "
            "against: writing it would replace the expected digests with these files' own; "
            "write to another file"
        )
    if write_checksums:
        # Before the hashing, which takes an hour over Pythia's shards: a missing folder is
        # made, and one that cannot be written to is found now, not once the work is done.
        prepare_output_folder(write_checksums)
        check_writable(write_checksums)
    expected = read_checksum_file(checksums) if checksums else {}
    unlisted = []
    if checksums:
        unlisted = [f.name for f in files if find_expected(expected, f, checksums) is None]
        files = [f for f in files if find_expected(expected, f, checksums) is not None]
        if not files:
            raise click.UsageError(f"{checksums} lists none of the files of {prefix}")
    total = sum(f.stat().st_size for f in files)
    with progress_bar(total=total, unit="B", unit_scale=True, desc="sha256", disable=quiet) as bar:
        digests = _hash_all(files, bar.update)
    if write_checksums:
        write_checksum_file(write_checksums, {f.name: d for f, d in digests.items()})
        click.echo(f"wrote {write_checksums}")
    if checksums:
        # Subset labels are optional, so a dataset without them is fine, unless the checksum
        # file says they belong to it.
        subsets_names = {ds.prefix.name + s for s in (".subsets.npy", ".subsets.json")}
        # In a list of several datasets, those beside this dataset's .idx entry: another
        # dataset's labels of the same name (a/document.subsets.npy for b/document) are not
        # this one's missing.
        idx_entry = find_entry(expected, ds.idx_path, checksums)
        listed = {
            Path(name).name
            for name in expected
            if idx_entry is None or Path(name).parent == Path(idx_entry).parent
        } & subsets_names
        missing = sorted(listed - {f.name for f in subsets_files})
        for name in missing:
            click.echo(f"MISSING {name}")
        bad = len(missing)
        for f, digest in digests.items():
            ok = digest == find_expected(expected, f, checksums)
            bad += not ok
            click.echo(f"{'OK    ' if ok else 'FAILED'}  {f.name}")
        if unlisted:
            # A shard left out of the list is not checked: say so, rather than imply it was.
            shown = ", ".join(unlisted[:3]) + (", ..." if len(unlisted) > 3 else "")
            are = "file of the dataset is" if len(unlisted) == 1 else "files of the dataset are"
            click.echo(f"note: {len(unlisted)} {are} not in {checksums}, so not checked: {shown}")
        if bad:
            n = len(digests) + len(missing)
            click.echo(f"error: {bad} of {n} files do not match {checksums}", err=True)
            sys.exit(1)
        click.echo(f"all {len(digests)} files match {checksums}")


class _Stopped(Exception):
    """Raised in a hashing thread once the command is stopping."""


def _hash_all(files: list[Path], update) -> dict[Path, str]:
    """sha256 of each file. Hashing is I/O- and hash-bound and hashlib releases the GIL: one
    thread per core. A stop (Ctrl-C, SIGTERM) ends the threads at their next chunk: leaving the
    pool's block waited for every file still queued, an hour over Pythia's shards."""
    stopping = threading.Event()

    def progress(n: int) -> None:
        if stopping.is_set():
            raise _Stopped
        update(n)

    pool = ThreadPoolExecutor()
    try:
        futures = [pool.submit(sha256_file, f, progress) for f in files]
        # The first failure, whichever file: results taken in order waited for every file
        # before a failing one to be hashed first.
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            if future in done and future.exception() is not None:
                raise future.exception()
        return {f: future.result() for f, future in zip(files, futures, strict=True)}
    except BaseException:
        stopping.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _verify_subsets(ds: IndexedDataset) -> list[Path]:
    """Check ``PREFIX.subsets.{npy,json}`` (written by tokenize and merge) when present; their
    paths, for the checksums."""
    paths = [ds.prefix.with_name(ds.prefix.name + s) for s in (".subsets.npy", ".subsets.json")]
    present = [p for p in paths if p.exists()]
    if not present:
        return []
    if len(present) == 1:
        (missing,) = set(paths) - set(present)
        raise PythiaDataError(
            f"{present[0]} is there but {missing} is missing: copy it too, or remove both"
        )
    codes, names = _read_subsets(ds.prefix, len(ds))
    # Read in slices: the Pile's codes are 400 MB, and the check should not hold them in memory.
    for start in range(0, len(codes), 1 << 24):
        part = codes[start : start + (1 << 24)]
        bad = part[(part < 0) | (part >= len(names))]
        if len(bad):
            raise PythiaDataError(
                f"{paths[0]}: holds code {int(bad[0])} but {paths[1]} names {len(names)} "
                f"subsets: the two files do not belong together or are damaged"
            )
    click.echo(f"subsets OK: {len(names)} names over {len(codes):,} items")
    return paths
