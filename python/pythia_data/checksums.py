"""sha256 checksum files: ``sha256sum``'s ``HEX  NAME`` lines (``HEX *NAME`` in binary mode,
``HEX NAME`` as ``sha256sum`` also reads), its ``--tag`` form ``SHA256 (NAME) = HEX``, and the
``NAME HEX`` lines of Pythia's own list of shard hashes (``utils/shard_hashes.txt``)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from pythia_data.errors import PythiaDataError

CHUNK = 16 << 20
_HEX_NAME = re.compile(r"^([0-9a-fA-F]{64})[ \t]+\*?(.+)$")
_TAG = re.compile(r"^SHA256 ?\((.+)\) ?= ?([0-9a-fA-F]{64})$")
# Pythia's repository lists its shards name first: "NAME HEX".
_NAME_HEX = re.compile(r"^(.+?)[ \t]+([0-9a-fA-F]{64})$")


def _parse_line(line: str) -> tuple[str, str] | None:
    """(name, digest) of one checksum line, or None when it is none of the known forms."""
    if m := _HEX_NAME.match(line):
        return m.group(2), m.group(1)
    if m := _TAG.match(line) or _NAME_HEX.match(line):
        return m.group(1), m.group(2)
    return None


def read_checksum_file(path: str | os.PathLike) -> dict[str, str]:
    """Map file name -> lowercase sha256 hex. Blank lines and ``#`` comments are ignored."""
    path = Path(path)
    out: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise PythiaDataError(f"{path}: not a sha256sum text file ({e})") from e
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = _parse_line(line)
        if entry is None:
            raise PythiaDataError(
                f"{path}:{lineno}: not a sha256sum line (expected 64 hex digits, two spaces, a "
                f"file name, or a name then the 64 hex digits): {line[:80]!r}"
            )
        name, digest = entry[0], entry[1].lower()
        if out.get(name, digest) != digest:
            # Which one holds would depend on the order of the lines: neither can be trusted.
            raise PythiaDataError(
                f"{path}:{lineno}: {name} is listed twice, with different checksums: fix the file"
            )
        out[name] = digest
    if not out:
        raise PythiaDataError(f"{path}: no checksums in this file")
    return out


def sha256_file(path: str | os.PathLike, progress: Callable[[int], object] | None = None) -> str:
    """sha256 of a file, reading it in large chunks (hashlib releases the GIL on them)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return h.hexdigest()


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def check_writable(path: str | os.PathLike) -> None:
    """Raise if a file could not be created beside ``path`` (a read-only file system, no
    permission), as ``write_checksum_file(path, ...)`` does, by creating and removing one."""
    path = Path(path)
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.probe-", dir=path.parent)
    except OSError as e:
        raise PythiaDataError(f"cannot write {path}: {e.strerror}") from e
    os.close(fd)
    os.unlink(probe)


def write_checksum_file(path: str | os.PathLike, entries: dict[str, str]) -> None:
    """Write ``HEX  NAME`` lines atomically."""
    path = Path(path)
    tmp = _temporary(path)
    try:
        tmp.write_text("".join(f"{digest}  {name}\n" for name, digest in entries.items()))
        os.replace(tmp, path)
    except OSError as e:
        # On a read-only file system even removing a file that is not there fails (EROFS), and
        # that error named the temporary file instead of the output.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise OSError(e.errno, f"{path}: {e.strerror}") from e


def find_expected(
    checksums: dict[str, str], file: Path, source: str | os.PathLike | None = None
) -> str | None:
    """The expected digest of `file`: that of its entry (``find_entry``), None if unlisted."""
    name = find_entry(checksums, file, source)
    return None if name is None else checksums[name]


def find_entry(
    checksums: dict[str, str], file: Path, source: str | os.PathLike | None = None
) -> str | None:
    """The entry of `file`, matched by its name (checksum files list bare names or relative
    paths). A file listing several datasets whose files share names (Pythia's standard and
    deduplicated preshuffled data are both ``document-*``) names them by relative paths: then
    the entry that is this very file counts, read as ``sha256sum -c`` does from the current
    folder, or from the folder of the checksum file `source`, else the one whose path is how
    this file's path ends."""
    same_name = [name for name in checksums if Path(name).name == file.name]
    if len(same_name) <= 1:
        return next(iter(same_name), None)
    target = file.resolve()
    roots = [Path.cwd()] + ([Path(source).parent] if source is not None else [])
    for name in same_name:
        if any((root / name).resolve() == target for root in roots):
            return name
    # Else the one entry whose path is how this file's own path ends (`deduped/document.idx`).
    ending = [
        name for name in same_name if target.parts[-len(Path(name).parts) :] == Path(name).parts
    ]
    # The longest such path: a bare name ends every path, `deduped/document.idx` only these.
    longest = max((len(Path(name).parts) for name in ending), default=0)
    ending = [name for name in ending if len(Path(name).parts) == longest]
    if len(ending) == 1:
        return ending[0]
    if len({checksums[name] for name in same_name}) == 1:
        return same_name[0]  # one digest whichever entry is this file's
    where = f"{source} lists" if source is not None else "the checksums list"
    raise PythiaDataError(
        f"{where} {len(same_name)} different files named {file.name} "
        f"({', '.join(same_name[:3])}) and none of them is {file}: run from the folder "
        f"its paths are relative to, or give a checksum file of this dataset alone"
    )
