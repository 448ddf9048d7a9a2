"""Concatenating a sharded `.bin` into one file, verifying checksums on the way, resumably.

Pythia's data ships as `.bin` shards cut at fixed byte counts. Reading them in place
(`IndexedDataset` does) needs no unsharding; this is for tools that want the single file.
An interrupted run leaves `.NAME.bin.partial` and a small progress record beside the output;
running the same command again continues after the last complete shard.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from pythia_data import _core
from pythia_data.checksums import CHUNK, find_expected, read_checksum_file
from pythia_data.errors import PythiaDataError, output_error, prepare_output_folder
from pythia_data.indexed import IndexedDataset, _strip_extension
from pythia_data.progress import progress_bar


def unshard(
    prefix: str | os.PathLike,
    output: str | os.PathLike | None = None,
    checksums: str | os.PathLike | None = None,
    progress: bool = True,
) -> Path:
    """Write the shards of dataset `prefix` as `output.bin` (+ copies of the `.idx` and the
    subset labels when the output prefix differs). Returns the output prefix."""
    prefix = _strip_extension(prefix)
    ds = IndexedDataset(prefix)  # validates the index and that the shards add up
    out = _strip_extension(output) if output is not None else prefix
    _core.check_output_prefix(out)
    prepare_output_folder(out.with_name(out.name + ".bin"))
    # Not `ds.is_sharded` (two shards or more): Pythia's shard_memmap.py names a .bin smaller
    # than one shard `PREFIX-00000-of-00000.bin`, and its unshard_memmap.py (--num_shards 1)
    # turns that into PREFIX.bin; refusing it said the tokens were "already" in that shard.
    if len(ds.bin_paths) == 1 and ds.bin_paths[0].name == prefix.name + ".bin":
        raise PythiaDataError(
            f"{prefix} is not sharded: its tokens are already in {ds.bin_paths[0]}"
        )
    expected = read_checksum_file(checksums) if checksums else {}
    if expected:
        missing = [p.name for p in ds.bin_paths if find_expected(expected, p, checksums) is None]
        if missing:
            raise PythiaDataError(
                f"{checksums} lists no checksum for {len(missing)} shard(s), e.g. {missing[0]}"
            )

    final = out.with_name(out.name + ".bin")
    if final.resolve() in {p.resolve() for p in ds.bin_paths}:
        raise PythiaDataError(f"the output {final} is one of the shards it would be joined from")
    partial = out.with_name(f".{out.name}.bin.partial")
    record_path = out.with_name(f".{out.name}.bin.partial.json")
    shards = [(p, p.stat().st_size) for p in ds.bin_paths]
    stamps = [_stamp(p) for p, _ in shards]
    done, digests = _resume_point(record_path, partial, shards, stamps)
    done = _kept_intact(partial, shards, digests[:done], progress)
    digests = digests[:done]
    if expected:
        # An earlier run may have copied shards without checksums (or against other ones): the
        # bytes it copied must match this run's checksums too, or the output would be promoted
        # with a corrupt shard inside. A mismatching shard and those after it are copied again
        # below, and the copy fails with the usual error if the shard itself is still corrupt.
        for k in range(done):
            if digests[k] != find_expected(expected, shards[k][0], checksums):
                done, digests = k, digests[:k]
                # So that a rerun after a failed copy still keeps the k shards before it.
                names = [p.name for p, _ in shards[:k]]
                size = sum(s for _, s in shards[:k])
                _write_record(record_path, names, digests, stamps[:k], size)
                break
    total = sum(size for _, size in shards)
    try:
        with (
            open(partial, "r+b" if done else "wb") as f,
            progress_bar(
                total=total,
                initial=sum(size for _, size in shards[:done]),
                unit="B",
                unit_scale=True,
                desc="unshard",
                disable=not progress,
            ) as bar,
        ):
            f.truncate(sum(size for _, size in shards[:done]))
            f.seek(0, os.SEEK_END)
            for k in range(done, len(shards)):
                path, size = shards[k]
                h, left = hashlib.sha256(), size
                with open(path, "rb") as src:
                    # The size the run began with, no more: the index was checked against it.
                    while left and (chunk := _read_shard(src, path, min(CHUNK, left))):
                        h.update(chunk)
                        f.write(chunk)
                        bar.update(len(chunk))
                        left -= len(chunk)
                if left or _stamp(path) != stamps[k]:
                    # Copied on to its end, a shard that grew meanwhile (a download still running)
                    # put a .bin of the wrong size in place, and the check after it failed with
                    # the broken output left under its real name; one rewritten meanwhile mixed two
                    # versions.
                    f.truncate(sum(s for _, s in shards[:k]))
                    raise PythiaDataError(
                        f"{path} changed while it was copied (its size or time is not what it was "
                        f"when the run began): wait until it is complete, then run the same command "
                        f"again (the {k} shards before it are kept and will not be copied again)"
                    )
                want = find_expected(expected, path, checksums) if expected else None
                if want is not None and h.hexdigest() != want:
                    f.truncate(sum(s for _, s in shards[:k]))
                    raise PythiaDataError(
                        f"{path}: sha256 {h.hexdigest()} does not match {want} from {checksums}: the "
                        f"shard is corrupt or incomplete; download it again and rerun (the {k} shards "
                        f"before it are kept and will not be copied again)"
                    )
                f.flush()
                os.fsync(f.fileno())
                digests.append(h.hexdigest())
                names = [p.name for p, _ in shards[: k + 1]]
                _write_record(record_path, names, digests, stamps[: k + 1], f.tell())
    except OSError as e:
        # A read-only folder refused the hidden partial file or its record, and a full disk's
        # error named no file: named by the output (whose partial file keeps the shards copied
        # so far for the same command to continue from), not by those.
        made = record_path.with_name(record_path.name + ".tmp")
        if e.filename is not None and Path(e.filename) == made:
            raise output_error(e, final, made) from e
        raise output_error(e, final, partial) from e
    staged = _stage_companions(prefix, out) if out != prefix else []
    # Imported here: the cli package imports this module.
    from pythia_data.cli._stops import StopRequests

    # A stop (Ctrl-C, SIGTERM) from the first rename on lets the step end: raised there, it
    # reported an interrupted run to continue, with the output in place and its partial file
    # gone, and the same command then failed ("PREFIX is not sharded: its tokens are already
    # in PREFIX.bin"). A second stop is raised at once.
    with StopRequests():
        try:
            os.replace(partial, final)
            record_path.unlink(missing_ok=True)
            for tmp, dest in staged:
                os.replace(tmp, dest)
        finally:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
        IndexedDataset(out)  # the result must open and validate
    return out


def _stage_companions(prefix: Path, out: Path) -> list[tuple[Path, Path]]:
    """Copies, beside their places, of the files that go with the tokens to another output
    prefix: the .idx and the subset labels tokenize and merge write. Labels an earlier dataset
    left at the output are removed when the source has none: `info` showed them against these
    documents."""
    staged = []
    try:
        for suffix in (".idx", ".subsets.npy", ".subsets.json"):
            src = prefix.with_name(prefix.name + suffix)
            dest = out.with_name(out.name + suffix)
            if not src.exists():
                dest.unlink(missing_ok=True)
                continue
            tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
            staged.append((tmp, dest))
            shutil.copyfile(src, tmp)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    return staged


def _read_shard(src, path: Path, n: int) -> bytes:
    """``n`` bytes of the shard ``path``: a read error (EIO) names no file, and the copy's own
    handler below would have named the output, which was not what failed. The shard goes in
    as the error's file name: in its message only, that handler still put the output's name
    in front of it ("OUT.bin: SHARD.bin: Input/output error")."""
    try:
        return src.read(n)
    except OSError as e:
        if e.filename is not None:
            raise
        raise OSError(e.errno, e.strerror, str(path)) from e


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _write_record(
    path: Path, shards_done: list[str], sha256: list[str], stamps: list[str], size: int
) -> None:
    # sha256 of the bytes copied for each shard: a resumed run checks them against its checksums
    # and the partial file; the shards' sizes and times, which it checks are unchanged.
    tmp = path.with_name(path.name + ".tmp")
    record = {"shards_done": shards_done, "sha256": sha256, "stamps": stamps, "bytes": size}
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def _kept_intact(
    partial: Path, shards: list[tuple[Path, int]], digests: list[str], progress: bool
) -> int:
    """How many of the shards an earlier run copied are still intact in ``partial``: each is
    hashed again, since the output is promised verified and the partial file may have been
    damaged between runs. Those from the first damaged one on are copied again."""
    if not digests:
        return 0
    with (
        open(partial, "rb") as f,
        progress_bar(
            total=sum(size for _, size in shards[: len(digests)]),
            unit="B",
            unit_scale=True,
            desc="check kept",
            disable=not progress,
        ) as bar,
    ):
        for k, ((_, size), want) in enumerate(zip(shards, digests, strict=False)):
            h, left = hashlib.sha256(), size
            while left and (chunk := f.read(min(CHUNK, left))):
                h.update(chunk)
                left -= len(chunk)
                bar.update(len(chunk))
            if left or h.hexdigest() != want:
                return k
    return len(digests)


def _resume_point(
    record_path: Path, partial: Path, shards: list[tuple[Path, int]], stamps: list[str]
) -> tuple[int, list[str]]:
    """How many leading shards an earlier interrupted run already copied from shards that are
    still as they were (size and time), and the sha256 of the bytes it copied for each."""
    if not (record_path.exists() and partial.exists()):
        return 0, []
    try:
        record = json.loads(record_path.read_text())
        names = record["shards_done"]
        digests = record["sha256"]
    except (ValueError, KeyError, TypeError):
        return 0, []
    # A record without a digest per shard (e.g. written by an older version) is not trusted.
    if not (isinstance(names, list) and isinstance(digests, list)) or len(digests) != len(names):
        return 0, []
    if names != [p.name for p, _ in shards[: len(names)]]:
        return 0, []
    if partial.stat().st_size < sum(size for _, size in shards[: len(names)]):
        return 0, []
    # A record without stamps (an older version's) is not trusted either.
    kept = record.get("stamps")
    if not isinstance(kept, list) or len(kept) != len(names):
        return 0, []
    same = next((k for k, (a, b) in enumerate(zip(kept, stamps, strict=False)) if a != b), None)
    done = len(names) if same is None else same
    return done, digests[:done]
