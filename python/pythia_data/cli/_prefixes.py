"""Dataset prefixes given as a command's output."""

from __future__ import annotations

import os
from pathlib import Path

import click


def output_prefix(value: str, param_hint: str) -> Path:
    """``value`` as the prefix of a dataset to write, refused when it names a folder: Path()
    drops a trailing slash or "/.", so "new/" would write new.bin beside the folder, and "."
    has no name to add ".bin" to. An existing folder given without the slash is refused here
    too: the engine refused it later, as an input error (status 1), where "new/" was a usage
    error (status 2)."""
    if (
        value.endswith(("/", os.sep))
        or os.path.basename(value) in ("", ".", "..")
        or os.path.isdir(value)
    ):
        raise click.BadParameter(
            f"{value!r} names a folder, not a dataset prefix: give a prefix inside it, such as "
            f"{os.path.join(value, 'pile')!r} (writes pile.bin and pile.idx there)",
            param_hint=param_hint,
        )
    return Path(value)
