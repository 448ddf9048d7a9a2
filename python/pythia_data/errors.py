"""The exception raised for corrupt or mismatched data files and invalid requests."""

from __future__ import annotations

from pathlib import Path

from pythia_data._core import PythiaDataError

__all__ = ["OutputError", "PythiaDataError", "output_error", "prepare_output_folder"]


class OutputError(OSError):
    """An output that could not be written, in one line naming what the user asked for: the
    text drops Python's "[Errno N]", and ``errno`` stays the system's (a full disk's hint reads
    it)."""

    def __str__(self) -> str:
        return str(self.strerror)


def output_error(e: OSError, output: str | Path, made: str | Path) -> OSError:
    """``e``, raised making or writing ``made`` (a hidden temporary, a work file or folder) for
    ``output``, in the engine's words: what could not be created is named by the folder that
    refused it, which is what lacks permission or room, and by the output ("FOLDER: REASON
    (writing OUTPUT)"); a write that names no file (a full disk) by the output. The user never
    named ``made``, and it is gone by the time the error is shown. An error about another file
    (an input) is ``e`` itself."""
    if e.filename is None:
        return OutputError(e.errno, f"{output}: {e.strerror}")
    if Path(e.filename) != Path(made):
        return e
    # The nearest folder that exists: missing ones above `made` are created with it.
    folder = Path(made).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return OutputError(e.errno, f"{folder}: {e.strerror} (writing {output})")


def prepare_output_folder(path: str | Path) -> None:
    """Create the missing folders above an output file (as ``tokenize`` and ``merge`` do), or
    refuse one that sits below a file, before any work: writing it would fail on the hidden
    temporary file beside it, and the error would name that file instead."""
    path = Path(path)
    folder = path.parent
    if folder.is_dir():
        return
    blocking = folder
    while not blocking.exists() and blocking != blocking.parent:
        blocking = blocking.parent
    if not blocking.is_dir():
        # In the words of the engine's check of dataset prefixes (tokenize, merge).
        raise PythiaDataError(
            f"cannot write {path}: its folder {folder} is not a folder"
            if blocking == folder
            else f"cannot write {path}: {blocking} is a file, not a folder"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a read-only folder above it: named, with the output
        raise output_error(e, path, e.filename or folder) from e
