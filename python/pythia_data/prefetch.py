"""Iterate in a background thread, a bounded number of items ahead: Parquet pages are decoded
(pyarrow releases the GIL) while the tokenizer works on the batch before, instead of both
cores waiting for each read in turn."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Raised:
    def __init__(self, error: BaseException):
        self.error = error


def prefetched(items: Iterator[T], ahead: int = 1) -> Iterator[T]:
    """The items of ``items`` in order, read up to ``ahead`` items before they are asked for.
    An exception ``items`` raises is raised here, in its place in the sequence. Closing this
    generator (or leaving a ``for`` loop over it early, by ``break`` or an exception) stops
    the reading within one item, and closes ``items`` in the thread that read it."""
    ready: queue.Queue = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as e:  # noqa: BLE001 - every error belongs to the consumer
            put(_Raised(e))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    reader = threading.Thread(target=read, name="pythia-data-prefetch", daemon=True)
    reader.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.error
            yield item
    finally:
        stop.set()
        reader.join()
