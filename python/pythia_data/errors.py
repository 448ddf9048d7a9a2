"""The exception raised for corrupt or mismatched data files and invalid requests."""

from __future__ import annotations

from pathlib import Path

from pythia_data._core import PythiaDataError

__all__ = ["PythiaDataError", "check_output_folder"]


def check_output_folder(path: str | Path) -> None:
    """Refuse an output file whose folder is missing, before any work: writing it would fail on
    the hidden temporary file beside it, and the error would name that file instead."""
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise PythiaDataError(
            f"cannot write {path}: its folder {folder} {what}; create the folder or choose "
            f"another output"
        )
