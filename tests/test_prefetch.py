"""`prefetched`: items in order, errors in their place, and a reader that stops when the
consumer does (so an interrupted tokenize run leaves no thread decoding a file)."""

from __future__ import annotations

import threading
import time

import pytest

from pythia_data.prefetch import prefetched


def test_items_come_in_order_and_at_most_ahead_items_early():
    produced = []

    def items():
        for i in range(50):
            produced.append(i)
            yield i

    seen = []
    for item in prefetched(items(), ahead=2):
        time.sleep(0.001)
        # The reader holds at most `ahead` items in the queue and one it is putting.
        assert len(produced) <= item + 1 + 3
        seen.append(item)
    assert seen == list(range(50))


def test_an_error_is_raised_in_its_place_after_the_items_before_it():
    def items():
        yield from range(3)
        raise KeyError("bad row group")

    seen = []
    with pytest.raises(KeyError, match="bad row group"):
        for item in prefetched(items()):
            seen.append(item)
    assert seen == [0, 1, 2]


def test_leaving_early_closes_the_source_in_its_reader_thread():
    closed_in = []
    main = threading.current_thread()

    def items():
        try:
            yield from range(10**9)
        finally:
            closed_in.append(threading.current_thread())

    threads_before = threading.active_count()
    batches = prefetched(items())
    for item in batches:
        if item == 5:
            break
    batches.close()
    assert len(closed_in) == 1 and closed_in[0] is not main
    assert threading.active_count() == threads_before


def test_an_empty_source_ends_at_once():
    assert list(prefetched(iter(()))) == []
