"""The exception raised for corrupt or mismatched data files and invalid requests."""

from __future__ import annotations

from pathlib import Path

from pythia_data._core import PythiaDataError

__all__ = ["PythiaDataError", "prepare_output_folder"]


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
    folder.mkdir(parents=True, exist_ok=True)
