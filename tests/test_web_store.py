"""The web's memory (web/memory_store.py): the history it keeps and forgets, and its answers to
the read interface every store shares (queries.Reader), against a plain reading of the windows
it was given; one writer and many readers at once."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.web_helpers import T0, window_rows
from tests.web_windows import Given, coverage_of, fed, given_windows, overlapping, ranges
from traffic_capture.queries import CLASS_COUNT, Resolution, TimeRange
from traffic_capture.web import answers
from traffic_capture.web.memory_store import SERVICE_NAMES, MemoryStore


def test_history_is_bounded_by_span_and_rows() -> None:
    state = MemoryStore(5, 60, max_rows=50)
    for k in range(100):
        state.load_rows(window_rows(T0 + 5 * k, {(f"10.0.{k}.{i}", "in"): [1, 0, 0, 0, 0]
                                                  for i in range(3)}))
    summary = state.summary()
    assert summary["history_windows"] == 12  # 60 s of 5-s windows
    assert summary["history_from"] == T0 + 5 * 88
    small = MemoryStore(5, 3600, max_rows=10)
    for k in range(20):
        small.load_rows(window_rows(T0 + 5 * k, {(f"10.1.{k}.{i}", "in"): [1, 0, 0, 0, 0]
                                                  for i in range(3)}))
    assert small.summary()["history_rows"] <= 12
    # Clients no held window names are forgotten (a scan must not grow memory forever).
    many = MemoryStore(5, 10)
    for k in range(40):
        many.load_rows(window_rows(T0 + 5 * k, {(f"10.2.{k}.{i}", "in"): [1, 0, 0, 0, 0]
                                                 for i in range(500)}))
    assert len(many._names) < 5000
    assert answers.clients(many, answers.last(many, 10), 5000)["clients_active"] == 1000
    assert not many.knows("10.2.0.0") and many.knows("10.2.39.499")




@settings(max_examples=80, deadline=None)
@given(given_windows(), st.integers(1, 40), st.integers(3, 200))
def test_the_reader_answers_as_a_plain_reading_of_the_windows_held(
        windows: list[Given], history_windows: int, max_rows: int) -> None:
    store = fed(windows, history=5 * history_windows, max_rows=max_rows)
    held = [windows[span.number] for span in store.held_spans()]
    for when in ranges(windows):
        chosen = overlapping(held, when)
        coverage = store.coverage(when, 5)
        assert coverage == coverage_of(chosen)
        totals = store.client_totals(when, 5)
        assert totals.coverage == coverage and totals.resolution == 5
        expected: dict[str, np.ndarray] = {}
        for window in chosen:
            for client, inbound, counts in window.rows:
                expected.setdefault(client, np.zeros((2, CLASS_COUNT), dtype=np.int64))[
                    0 if inbound else 1] += counts
        assert {client: sums.tolist() for client, sums in zip(totals.clients, totals.sums,
                                                               strict=True) if sums.any()} == {
            client: sums.tolist() for client, sums in expected.items() if sums.any()}
        for last in (None, 1, 3):
            for client in (None, "10.0.0.1", "2001:db8::8", "203.0.113.1"):
                rows = store.window_rows(when, 5, client=client, last_windows=last)
                picked = chosen if last is None else chosen[-last:]
                listed = [(w.start_s, w.end_s, [r for r in w.rows if client in (None, r[0])])
                          for w in picked]
                if client is not None:
                    listed = [item for item in listed if item[2]]
                bounds = rows.row_bounds.tolist()
                assert [(start, end, [(rows.clients[i], bool(rows.inbound[i]),
                                       rows.counts[i].tolist()) for i in range(first, stop)])
                        for start, end, first, stop in zip(
                            rows.starts.tolist(), rows.ends.tolist(), bounds[:-1], bounds[1:],
                            strict=True)] == listed
                assert rows.window_start.tolist() == [s for s, _, r in listed for _ in r]
        for client in (None, "10.0.0.1", "203.0.113.1"):
            found = store.service_totals(when, client)
            assert found is not None and list(found.services) == list(SERVICE_NAMES)
            sums = np.zeros((len(SERVICE_NAMES), 2), dtype=np.int64)
            for window in chosen:
                for name, inbound, service, ip_bytes in window.services:
                    if client in (None, name):
                        sums[service, 0 if inbound else 1] += ip_bytes
            assert (found.bytes_in.tolist(), found.bytes_out.tolist()) == (
                sums[:, 0].tolist(), sums[:, 1].tolist())


def test_one_resolution_the_window_length_with_what_it_holds() -> None:
    store = MemoryStore(5, 3600)
    assert store.resolutions() == (Resolution(5),)
    for start in (T0, T0 + 5):
        store.load_rows(window_rows(start, {("10.0.0.1", "in"): [1, 0, 0, 0, 0]}))
    assert store.resolutions() == (Resolution(5, T0, T0 + 10),)
    with pytest.raises(ValueError):
        store.client_totals(TimeRange.everything(), 60)
    assert store.service_totals(TimeRange.everything()) is None  # a CSV's rows: no ports


def test_client_sums_are_kept_until_the_next_window() -> None:
    """50 requests a second over the same range cost one sum per window."""
    store = MemoryStore(5, 3600)
    store.load_rows(window_rows(T0, {("10.0.0.1", "in"): [1, 0, 0, 0, 0]}))
    when = answers.last(store, 3600)
    first = store.client_totals(when, 5)
    assert store.client_totals(when, 5) is first
    store.load_rows(window_rows(T0 + 5, {("10.0.0.1", "in"): [2, 0, 0, 0, 0]}))
    assert store.client_totals(when, 5) is not first  # summed again
    assert store.client_totals(answers.last(store, 3600), 5).sums[0, 0, 0] == 3


def test_eviction_is_announced_outside_the_lock() -> None:
    """What is kept per window elsewhere (the stream's text) goes with it; the callback may
    read the store (under the lock, it would wait for itself forever)."""
    store = MemoryStore(5, 10)
    announced: list[tuple[int, int]] = []
    store.on_evict(lambda first: announced.append((first, store.first_held())))

    def write() -> None:
        for k in range(5):
            store.load_rows(window_rows(T0 + 5 * k, {("10.0.0.1", "in"): [1, 0, 0, 0, 0]}))

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    writer.join(10)
    assert not writer.is_alive()
    assert announced == [(1, 1), (2, 2), (3, 3)]  # 10 s: two windows held
    span = store.held_spans()[0]
    assert store.span_rows(span) is not None
    store.load_rows(window_rows(T0 + 25, {("10.0.0.2", "in"): [1, 0, 0, 0, 0]}))
    assert store.span_rows(span) is None


def test_readers_see_whole_windows_while_the_writer_adds_evicts_and_compacts() -> None:
    """Window k holds k + 1 bytes from a client of its own (a scan: names are compacted
    again and again). Every sum a reader gets while the writer goes on is the sum of the
    windows its coverage names, and every row set is whole."""
    store = MemoryStore(5, 60)
    stop = threading.Event()
    failures: list[str] = []
    checked = [0]

    def client(k: int) -> str:
        return f"10.{k // 65536}.{k // 256 % 256}.{k % 256}"

    def read() -> None:
        while not stop.is_set():
            when = answers.last(store, 60)
            totals = store.client_totals(when, 5)
            coverage = totals.coverage
            if coverage.windows:
                assert coverage.first_start_s is not None and coverage.last_end_s is not None
                first = (coverage.first_start_s - T0) // 5
                last = (coverage.last_end_s - T0) // 5
                expected = sum(k + 1 for k in range(first, last))
                if (last - first, int(totals.sums.sum())) != (coverage.windows, expected):
                    failures.append(f"{coverage}: {int(totals.sums.sum())} != {expected}")
            rows = store.window_rows(when, 5, last_windows=3)
            for start, name, counts in zip(rows.window_start.tolist(), rows.clients,
                                           rows.counts.tolist(), strict=True):
                k = (start - T0) // 5
                if (name, counts) != (client(k), [k + 1, 0, 0, 0, 0]):
                    failures.append(f"window {k}: {name} {counts}")
            checked[0] += 1

    readers = [threading.Thread(target=read, daemon=True) for _ in range(2)]
    for reader in readers:
        reader.start()
    for k in range(6000):
        store.add_window(T0 + 5 * k, T0 + 5 * k + 5, [client(k)], np.array([True]),
                         np.array([[k + 1, 0, 0, 0, 0]]))
    stop.set()
    for reader in readers:
        reader.join(30)
    assert not failures, failures[:5]
    assert checked[0] > 10
    assert len(store._names) < 5000  # compacted: 6,000 clients were seen
