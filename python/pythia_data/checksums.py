"""sha256 checksum files in `sha256sum` format (``HEX  NAME`` per line), as Pythia publishes
for its shards."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

from pythia_data.errors import PythiaDataError

CHUNK = 16 << 20
_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")


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
        m = _LINE.match(line)
        if not m:
            raise PythiaDataError(
                f"{path}:{lineno}: not a sha256sum line (expected 64 hex digits, two spaces, a "
                f"file name): {line[:80]!r}"
            )
        out[m.group(2)] = m.group(1).lower()
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


def write_checksum_file(path: str | os.PathLike, entries: dict[str, str]) -> None:
    """Write ``HEX  NAME`` lines atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text("".join(f"{digest}  {name}\n" for name, digest in entries.items()))
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, f"{path}: {e.strerror}") from e


def find_expected(checksums: dict[str, str], file: Path) -> str | None:
    """The expected digest of `file`, matched by its name (checksum files list bare names or
    relative paths)."""
    for name, digest in checksums.items():
        if name == file.name or Path(name).name == file.name:
            return digest
    return None
