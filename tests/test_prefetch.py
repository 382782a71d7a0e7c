"""prefetched: order, errors in place, early close stops the reader, one producing thread."""

from __future__ import annotations

import threading
import time

import pytest

from gtpt_deploy.runtime.prefetch import prefetched


def test_items_keep_their_order_and_come_from_one_other_thread():
    producers = set()

    def source():
        for i in range(50):
            producers.add(threading.get_ident())
            yield i

    assert list(prefetched(source(), 3)) == list(range(50))
    assert len(producers) == 1 and threading.get_ident() not in producers


def test_an_error_is_raised_at_its_place():
    def source():
        yield 1
        yield 2
        raise KeyError("third item")

    got = []
    with pytest.raises(KeyError, match="third item"):
        for item in prefetched(source(), 2):
            got.append(item)
    assert got == [1, 2]


def test_closing_early_stops_the_reader():
    pulled = []

    def source():
        for i in range(1000):
            pulled.append(i)
            yield i

    it = prefetched(source(), 2)
    assert next(it) == 0
    it.close()  # joins the reader thread
    n = len(pulled)
    time.sleep(0.05)
    assert len(pulled) == n and n <= 5  # read ahead by at most the depth (+ the item in hand), then stopped
    assert not any(t.name == "gtpt-prefetch" for t in threading.enumerate())


def test_depth_must_be_positive():
    with pytest.raises(ValueError):
        next(prefetched([1], 0))
