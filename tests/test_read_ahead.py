"""Capture files are read one chunk ahead in a thread: order, errors and early stops."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from traffic_capture.sources.read_ahead import in_thread


def test_items_come_in_order_and_the_reader_thread_ends() -> None:
    assert list(in_thread(iter(range(1000)))) == list(range(1000))
    assert not [t for t in threading.enumerate() if t.name == "capture-file-reader"]


def test_an_error_in_the_reader_is_raised_to_the_consumer_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for item in in_thread(items()):
            got.append(item)
    assert got == [1, 2]


def test_a_consumer_that_stops_early_stops_the_reader() -> None:
    made = []

    def items() -> Iterator[int]:
        for n in range(10_000):
            made.append(n)
            yield n

    ahead = in_thread(items(), depth=1)
    assert [next(ahead) for _ in range(3)] == [0, 1, 2]
    ahead.close()
    assert not [t for t in threading.enumerate() if t.name == "capture-file-reader"]
    assert len(made) <= 3 + 3  # what was taken, the one queued, the one being put, one more
