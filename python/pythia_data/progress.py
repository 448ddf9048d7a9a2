"""Progress bars for long jobs: tqdm on a terminal, plain lines in a log.

Under SLURM or with stderr redirected, tqdm would still rewrite its line with ``\\r`` ten times a
second, which turns an hours-long tokenize run into megabytes of one unreadable log line. There
it prints one whole line per ``LOG_SECONDS`` instead (and the final state on close).
"""

from __future__ import annotations

import sys
from typing import IO, Any

LOG_SECONDS = 60.0


class _LineWriter:
    """A file for tqdm that turns each in-place redraw into one line of its own."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.encoding = getattr(stream, "encoding", None)

    def write(self, s: str) -> None:
        # tqdm writes "\r" + status (+ padding to clear the previous one), "\n" on close, and
        # "\r" + spaces to erase a bar that does not stay: keep only the statuses.
        text = s.replace("\r", "").strip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(**kwargs: Any):
    """A ``tqdm`` with ``kwargs``, written to stderr; a line per minute when that is no terminal."""
    from tqdm import tqdm

    stream = sys.stderr
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return tqdm(file=stream, **kwargs)
    kwargs.pop("dynamic_ncols", None)
    # A bar that clears itself on a terminal still ends with its final line in a log.
    kwargs["leave"] = True
    return tqdm(
        file=_LineWriter(stream),
        mininterval=LOG_SECONDS,
        maxinterval=LOG_SECONDS,
        ncols=100,
        **kwargs,
    )
