"""The record a sharded tokenize run writes beside each part (``PREFIX-IIIII-of-NNNNN.shard.json``):
what the part was made from, so that `pythia-data merge` can refuse parts of different runs. Part
names alone cannot tell that the input folder changed between two array tasks (a file then falls
between two shards, or lands in both) or that one task was given another tokenizer; either makes
the merge differ from one run over all the inputs."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from pythia_data import _core
from pythia_data.errors import PythiaDataError

SUFFIX = ".shard.json"
FORMAT = "pythia-data tokenize shard 1"


def record_path(prefix: Path) -> Path:
    return prefix.with_name(prefix.name + SUFFIX)


def inputs_digest(files: Sequence[Path], sizes: Sequence[int]) -> str:
    """The list of all inputs, before sharding, by name and size: array tasks on nodes that
    mount the data at other paths still agree, and a file added, removed or replaced by one of
    another size between tasks does not."""
    listing = json.dumps([[f.name, size] for f, size in zip(files, sizes, strict=True)])
    return hashlib.sha256(listing.encode()).hexdigest()


def remove_shard_record(prefix: Path) -> None:
    """Before a part is (re)made: until its run completes, the record of an earlier part of
    that name must not vouch for it."""
    record_path(prefix).unlink(missing_ok=True)


def write_shard_record(
    prefix: Path,
    shard_index: int,
    num_shards: int,
    all_files: Sequence[Path],
    sizes: Sequence[int],
    tokenizer_sha256: str,
    text_key: str,
) -> None:
    """Written atomically once the part is complete (a rerun of the same command, finding the
    part done, writes it if a stop came in between)."""
    record = {
        "format": FORMAT,
        "shard_index": shard_index,
        "num_shards": num_shards,
        "input_files": len(all_files),
        "inputs_sha256": inputs_digest(all_files, sizes),
        "tokenizer_sha256": tokenizer_sha256,
        "text_key": text_key,
    }
    path = record_path(prefix)
    _core.remove_stale_temps(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(json.dumps(record, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise PythiaDataError(f"{path}: {e.strerror}") from e


REMAKE = "run that shard's tokenize command again to remake the part and its record"


def read_shard_record(prefix: Path, shard_index: int, num_shards: int) -> dict | None:
    """The part's record; None when it has none (written by an earlier version)."""
    path = record_path(prefix)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise PythiaDataError(f"{path}: not a readable shard record ({e}); {REMAKE}") from e
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise PythiaDataError(
            f"{path}: not a shard record of this version of pythia-data; {REMAKE}"
        )
    said = (record.get("shard_index"), record.get("num_shards"))
    if said != (shard_index, num_shards):
        raise PythiaDataError(
            f"{path}: the record of part {said[0]} of {said[1]}, beside part {shard_index} of "
            f"{num_shards} (renamed?); {REMAKE}"
        )
    return record


# What must agree across parts, and what a difference means.
_SAME = {
    "tokenizer_sha256": "was tokenized with another tokenizer than",
    "text_key": "read another --text-key than",
    "inputs_sha256": "was made from another list of input files than",
}


def check_shard_records(
    runs: Sequence[Sequence[tuple[Path, int, int]]], inputs_may_differ: bool
) -> None:
    """Refuse parts that were not made with the same tokenizer and text key (whatever run they
    belong to: merged, they would mix vocabularies), and parts of one run (``runs``: each a
    list of (prefix, shard index, num shards)) made from other inputs. Parts without a record
    (made by an earlier version) pass when none in their run has one; one without among parts
    with records was stopped before writing it, or comes from another run."""
    everyone: list[tuple[Path, dict]] = []
    for parts in runs:
        records = [(p, read_shard_record(p, i, n)) for p, i, n in parts]
        if all(r is None for _, r in records):
            continue
        missing = next((p for p, r in records if r is None), None)
        if missing is not None:
            raise PythiaDataError(
                f"{missing} has no {SUFFIX} record (its run was stopped before writing it, or "
                f"an earlier version made it); {REMAKE}"
            )
        _compare(records, ["inputs_sha256"] if not inputs_may_differ else [])
        everyone += records
    _compare(everyone, ["tokenizer_sha256", "text_key"])


def _compare(records: list[tuple[Path, dict]], keys: list[str]) -> None:
    if not records:
        return
    first, want = records[0]
    for p, got in records[1:]:
        for key in keys:
            if got.get(key) != want.get(key):
                why = ""
                if key == "inputs_sha256":
                    why = (
                        f" ({got.get('input_files')} files against {want.get('input_files')}, or "
                        "files renamed or resized: the inputs changed between the shards' runs, "
                        "so a file would be left out or read twice)"
                    )
                raise PythiaDataError(
                    f"{p} {_SAME[key]} {first}{why}; run every shard on the same inputs with "
                    "the same options"
                )
