"""The event stream's text (web/events.py): each window's event built once for every stream,
the same JSON as /api/windows, evicted with its window; ids that let a stream resume exactly,
late windows included; a quick look that never waits for the writer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.web_helpers import T0, current_dict, window_rows
from traffic_capture.web import answers
from traffic_capture.web.events import StreamEvents, window_json
from traffic_capture.web.memory_store import Current, MemoryStore


def test_stream_events_are_the_apis_json_built_once_and_evicted_with_the_history() -> None:
    state = MemoryStore(5, 30)
    stream = StreamEvents(state)
    odd = ["10.0.0.1", "2001:db8::7", 'x"y\\z', "caf\u00e9"]  # the last two need escaping
    for k in range(4):
        clients = odd if k == 2 else odd[:2]
        state.add_window(T0 + 5 * k, T0 + 5 * k + 5, clients,
                         np.array([True, False, True, False][:len(clients)]),
                         np.arange(len(clients) * 5).reshape(-1, 5) * 10 ** (5 * k))
    state.add_window(T0 + 20, T0 + 25, [], np.zeros(0, bool), np.zeros((0, 5)))
    assert stream.windows(None, 3600, build=False) is None  # a quick look: not built
    events = stream.windows(None, 3600)
    assert stream.windows(None, 3600, build=False) == events
    assert events is not None and [text for _, text in events] == [
        f"id: {w['start']}\nevent: window\ndata: {json.dumps(w)}\n\n".encode()
        for w in answers.windows(state, 100)["windows"]]
    assert [number for number, _ in events] == [0, 1, 2, 3, 4]
    again = stream.windows(stream.position(str(T0 + 5)), 5)  # whatever `seconds`
    assert again is not None and [number for number, _ in again] == [2, 3, 4]
    assert all(a is b for (_, a), (_, b) in zip(again, events[2:], strict=True))  # built once
    assert stream.current() == b"event: current\ndata: null\n\n"
    state.set_current(Current(T0 + 25, T0 + 30, odd, np.array([True, True, False, False]),
                              np.arange(20).reshape(4, 5)))
    assert stream.current(build=False) is None
    current = stream.current()
    assert current == f"event: current\ndata: {json.dumps(current_dict(state))}\n\n".encode()
    assert stream.current() is current
    # Evicted with its window; and at most cache_bytes of it, the newest kept.
    for k in range(5, 12):
        state.add_window(T0 + 5 * k, T0 + 5 * k + 5, odd[:1], np.array([True]),
                         np.array([[k, 0, 0, 0, 0]]))
    assert state.summary()["history_from"] == T0 + 30
    assert not stream._texts and stream._size == 0
    first = stream.windows(None, 3600)
    assert first is not None
    assert sorted(stream._texts) == list(range(6, 12))
    stream.forget_before(12)
    stream.cache_bytes = 2 * len(first[-1][1])
    assert stream.windows(stream.position(str(T0 - 1)), 5) == first  # rebuilt
    assert sorted(stream._texts) == [10, 11]
    stream.windows(stream.position(str(T0 + 30)), 5)  # older ones asked again
    assert sorted(stream._texts) == [10, 11]
    assert stream._size == sum(len(text) for text in stream._texts.values())


def test_a_window_closed_again_by_late_packets_gets_its_own_id_and_reaches_every_stream(
        ) -> None:
    """Late packets close a window a second time (the CSV gets a second set of rows for it):
    its event comes after the windows closed in between, with the id start.1, and a stream
    resuming from any id gets exactly what was sent after that one."""
    state = MemoryStore(5, 3600)
    stream = StreamEvents(state)
    for start in (T0, T0 + 5, T0 + 10, T0, T0 + 15, T0 + 5):
        state.add_window(start, start + 5, ["10.0.0.1"], np.array([True]),
                         np.array([[start - T0 + 1, 0, 0, 0, 0]]))
    events = stream.windows(None, 3600)
    assert events is not None
    ids = [text.split(b"\n")[0].decode() for _, text in events]
    assert ids == [f"id: {T0}", f"id: {T0 + 5}", f"id: {T0 + 10}", f"id: {T0}.1",
                   f"id: {T0 + 15}", f"id: {T0 + 5}.1"]
    for k, line in enumerate(ids):
        resumed = stream.windows(stream.position(line[4:]), 5)
        assert resumed == events[k + 1:], line
    # An id not held: from the first window held that starts after it, late ones included.
    assert stream.windows(stream.position(str(T0 + 12)), 5) == events[4:]
    assert stream.windows(stream.position(str(T0 - 60)), 5) == events
    assert stream.windows(stream.position(str(T0 + 60)), 5) == []
    with pytest.raises(ValueError):
        stream.position("yesterday")



@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=12), st.booleans(),
                          st.lists(st.integers(0, 2**62), min_size=5, max_size=5)),
                max_size=600),
       st.integers(0, 2**40))
def test_a_windows_text_is_json_dumps_of_the_answer(
        rows: list[tuple[str, bool, list[int]]], start: int) -> None:
    """Built as one %-format per row, in pieces of 256 rows, for speed; any client text
    (quotes, backslashes, any Unicode) gives json.dumps' bytes."""
    clients, inbound = [r[0] for r in rows], [r[1] for r in rows]
    counts = np.array([r[2] for r in rows], dtype=np.int64).reshape(-1, 5) // 8  # no overflow
    assert window_json(start, start + 5, clients, inbound, counts) == json.dumps(
        answers.window_dict(start, start + 5, clients, inbound, counts))


def test_a_quick_look_never_waits_for_the_writer() -> None:
    """The event loop asks with build=False: while the writer holds the store's lock, or
    another stream is building, it gets None at once (and asks a thread instead)."""
    store = MemoryStore(5, 3600)
    stream = StreamEvents(store)
    store.load_rows(window_rows(T0, {("10.0.0.1", "in"): [1, 0, 0, 0, 0]}))
    built = stream.windows(None, 3600)
    assert built is not None and stream.windows(None, 3600, build=False) == built
    with store._lock:
        assert stream.windows(None, 3600, build=False) is None
    with stream._lock:
        assert stream.windows(None, 3600, build=False) is None
        assert stream.current(build=False) is None
    assert stream.current(build=False) == b"event: current\ndata: null\n\n"


def test_a_window_evicted_before_its_text_is_built_is_left_out() -> None:
    store = MemoryStore(5, 10)
    stream = StreamEvents(store)
    store.load_rows(window_rows(T0, {("10.0.0.1", "in"): [1, 0, 0, 0, 0]}))
    span = store.held_spans()[0]
    for k in range(1, 4):
        store.load_rows(window_rows(T0 + 5 * k, {("10.0.0.1", "in"): [k, 0, 0, 0, 0]}))
    assert stream._build(span) is None and not stream._texts
    found = stream.windows(-1, 3600)
    assert found is not None and [number for number, _ in found] == [2, 3]
