"""The follower that keeps `serve`'s memory on a store's newest windows (a history's, a
fleet's): each window once, and rows that reach a window after it was taken (a late flush,
another server's batch) as its growth only, within LATE_SECONDS."""

from __future__ import annotations

import numpy as np

from traffic_capture.queries import TimeRange
from traffic_capture.web.memory_store import MemoryStore
from traffic_capture.web.store_follow import LATE_SECONDS, StoreFollower

T0 = 1_700_000_000


def add(store: MemoryStore, start: int, rows: dict[tuple[str, bool], list[int]]) -> None:
    store.add_window(start, start + 5, [client for client, _ in rows],
                     np.array([way for _, way in rows], dtype=bool),
                     np.array(list(rows.values()), dtype=np.int64))


def totals(store: MemoryStore) -> dict[tuple[str, bool], list[int]]:
    """Every client's bytes held, by direction (those with none left out)."""
    found = store.client_totals(TimeRange.everything(), 5)
    return {(client, way == 0): found.sums[i, way].tolist()
            for i, client in enumerate(found.clients) for way in (0, 1)
            if found.sums[i, way].any()}


def follow(source: MemoryStore, memory: MemoryStore, follower: StoreFollower,
           history_seconds: int = 3600) -> list[int]:
    """One look: the windows taken into `memory`; their starts."""
    found = follower.poll(history_seconds)
    for window in found:
        memory.add_window(window.start_s, window.end_s, window.clients, window.inbound,
                          window.counts)
    return [window.start_s for window in found]


def test_each_window_once_then_the_growth_of_recent_ones() -> None:
    source = MemoryStore(5, 10**9)  # the store followed (any queries.Reader)
    for k in range(20):
        add(source, T0 + 5 * k, {("10.0.0.1", True): [k, 0, 0, 0, 1]})
    memory = MemoryStore(5, 3600)
    follower = StoreFollower(source, 5)
    assert follow(source, memory, follower, history_seconds=50) == [
        T0 + 5 * k for k in range(10, 20)]  # the last 50 s at first
    assert follow(source, memory, follower) == []  # nothing new
    # A new window, and another server's rows of a window taken 30 s ago: the first whole,
    # the second as its growth only (a window closed again, as the stream sends it).
    add(source, T0 + 100, {("10.0.0.1", True): [7, 0, 0, 0, 0]})
    add(source, T0 + 70, {("10.0.0.1", True): [0, 100, 0, 0, 0],
                          ("10.0.0.2", False): [0, 0, 0, 5, 0]})
    assert follow(source, memory, follower) == [T0 + 70, T0 + 100]
    held = memory.held_spans()
    assert [(span.start_s, span.repeat) for span in held[-2:]] == [(T0 + 70, 1), (T0 + 100, 0)]
    rows = memory.window_rows(TimeRange(T0 + 70, T0 + 75), 5)
    assert rows.counts.tolist() == [[14, 0, 0, 0, 1], [0, 100, 0, 0, 0], [0, 0, 0, 5, 0]]
    recent = TimeRange(T0 + 50, T0 + 105)
    assert (memory.client_totals(recent, 5).sums.sum(axis=0).tolist()
            == source.client_totals(recent, 5).sums.sum(axis=0).tolist())
    assert follow(source, memory, follower) == []  # taken once


def test_rows_later_than_the_late_horizon_reach_the_store_only() -> None:
    source = MemoryStore(5, 10**9)
    memory = MemoryStore(5, 10**9)
    follower = StoreFollower(source, 5)
    for k in range(40):
        add(source, T0 + 5 * k, {("192.0.2.1", False): [1, 2, 3, 4, 5]})
    follow(source, memory, follower, history_seconds=10**6)
    assert totals(memory) == totals(source)
    # The newest window taken ends at T0 + 200: rows of windows starting LATE_SECONDS before.
    add(source, T0 + 200 - LATE_SECONDS, {("192.0.2.1", False): [10, 0, 0, 0, 0]})
    add(source, T0 + 195 - LATE_SECONDS, {("192.0.2.9", True): [0, 0, 0, 0, 99]})  # too late
    assert follow(source, memory, follower) == [T0 + 200 - LATE_SECONDS]
    assert totals(memory) == {("192.0.2.1", False): [50, 80, 120, 160, 200]}


def test_a_store_holding_nothing_yet() -> None:
    source = MemoryStore(5, 3600)
    memory = MemoryStore(5, 3600)
    follower = StoreFollower(source, 5)
    assert follow(source, memory, follower) == []
    add(source, T0, {("10.0.0.1", True): [1, 0, 0, 0, 0]})
    assert follow(source, memory, follower) == [T0]
