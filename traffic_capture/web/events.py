"""The event stream's text (/api/stream), built once for all streams: each held window's
`window` event, by span number, and the `current` event of the window in progress.

Streams opening together, or resuming with Last-Event-ID, send the same bytes without building
them again: a window's text is built by the first stream that needs it and evicted with its
window (and, oldest first, beyond `cache_bytes`). A window's id is its start in seconds, with
'.N' added when late packets closed it again ('1700000000.1'), so a resumed stream gets exactly
the windows added after the one it last received, late ones included.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Sequence

import numpy as np

from traffic_capture.rules import CLASSES, IN, OUT, WEB_STREAM_CACHE_BYTES
from traffic_capture.web.memory_store import Current, MemoryStore, Span

# A row's JSON as json.dumps writes answers.row_dict (same keys, order and separators), as
# one %-format: 2,000 rows in a few ms, where dicts then json.dumps take several times that.
# The client goes in as it is when no address of the window needs escaping (the usual case).
_ROW_JSON = ("{" + ", ".join([f"{json.dumps('client_ip')}: %s", f"{json.dumps('direction')}: %s",
                              f"{json.dumps('total_bytes')}: %d",
                              *(f"{json.dumps(f'{name}_bytes')}: %d" for name in CLASSES)])
             + "}")
_ROW_JSON_PLAIN = _ROW_JSON.replace(": %s", ': "%s"', 1)
_PLAIN = re.compile(r"[0-9A-Za-z.:%_\-]*")  # JSON strings as they are: no quote, no escape
_DIRECTION_JSON = (json.dumps(OUT), json.dumps(IN))  # by inbound
_ROWS_AT_ONCE = 256  # ~0.5 ms of work


def window_json(start_s: int, end_s: int, clients: Sequence[str], inbound: Sequence[bool],
                counts: np.ndarray) -> str:
    """json.dumps(answers.window_dict(...)), byte for byte, built faster; in pieces that let
    other threads have the GIL in between (the API's requests wait less)."""
    numbers = np.column_stack([counts.sum(axis=1), counts]).tolist()  # total, then classes
    directions = [_DIRECTION_JSON[bool(inb)] for inb in inbound]
    if _PLAIN.fullmatch("".join(clients)):
        template, texts = _ROW_JSON_PLAIN, clients
    else:
        template, texts = _ROW_JSON, [json.dumps(client) for client in clients]
    pieces = []
    for first in range(0, len(numbers), _ROWS_AT_ONCE):
        if first:
            time.sleep(0)  # releases the GIL
        stop = first + _ROWS_AT_ONCE
        pieces.append(", ".join([template % (text, direction, *row) for text, direction, row in zip(
            texts[first:stop], directions[first:stop], numbers[first:stop], strict=True)]))
    rows = ", ".join(pieces)
    return f'{{"start": {json.dumps(start_s)}, "end": {json.dumps(end_s)}, "rows": [{rows}]}}'


def event_id(span: Span) -> str:
    """The stream's id of a window: its start, '.N' added when it closed before ('1700.1')."""
    return f"{span.start_s}.{span.repeat}" if span.repeat else str(span.start_s)


def current_event(data: bytes) -> bytes:
    return b"event: current\ndata: " + data + b"\n\n"


class StreamEvents:
    """The events' text over a store, cached for every stream."""

    def __init__(self, store: MemoryStore, cache_bytes: int = WEB_STREAM_CACHE_BYTES) -> None:
        self.store = store
        self.cache_bytes = cache_bytes
        self._texts: dict[int, bytes] = {}  # span number -> its `window` event
        self._size = 0
        self._lock = threading.Lock()  # the texts; held for dictionary steps only
        self._building = threading.Lock()  # one builder: streams opening at once wait for it
        self._current: tuple[Current | None, bytes] = (None, current_event(b"null"))
        store.on_evict(self.forget_before)

    @property
    def cached_bytes(self) -> int:
        return self._size

    def position(self, last_event_id: str) -> int:
        """A resumed stream's place: the number of the span whose event id it last received
        (for a window no longer held: just before the first held one that starts after it);
        windows(position) then gives what was added after it, late windows included.
        ValueError for an id this stream never sends."""
        start_text, _, repeat_text = last_event_id.strip().partition(".")
        start, repeat = int(start_text), int(repeat_text or 0)
        spans = self.store.held_spans()
        for span in reversed(spans):
            if (span.start_s, span.repeat) == (start, repeat):
                return span.number
        later = [span.number for span in spans if span.start_s > start]
        if later:  # not held (evicted, or from a run before): from the first window after it
            return min(later) - 1
        return self.store.windows_added - 1

    def windows(self, after: int | None, newest_seconds: int, build: bool = True
                ) -> list[tuple[int, bytes]] | None:
        """(span number, `window` event text) of the windows added after span number `after`
        (a stream's place: see position), or, for a new stream, of the last `newest_seconds`;
        in the order they closed. With build=False, None when some text is not built yet or
        a lock is busy (a quick look that never waits, for the event loop: the rest goes to a
        thread). A window evicted while its text was being built is left out."""
        spans = self.store.stream_spans(after, newest_seconds, wait=build)
        if spans is None or not self._lock.acquire(blocking=build):
            return None
        try:
            cached = [self._texts.get(span.number) for span in spans]
        finally:
            self._lock.release()
        if not build:
            return [(span.number, text) for span, text in zip(spans, cached, strict=True)
                    if text is not None] if all(cached) else None
        found = []
        for span, text in zip(spans, cached, strict=True):
            text = text or self._build(span)
            if text is not None:
                found.append((span.number, text))
        return found

    def _build(self, span: Span) -> bytes | None:
        """A window's event text, built once: a stream that waited here for another one
        building it takes that."""
        with self._building:
            with self._lock:
                text = self._texts.get(span.number)
            if text is not None:
                return text
            rows = self.store.span_rows(span)
            if rows is None:
                return None
            data = window_json(span.start_s, span.end_s, *rows)
            text = f"id: {event_id(span)}\nevent: window\ndata: {data}\n\n".encode()
            with self._lock:  # the store evicts, then calls forget_before, which waits here
                if span.number >= self.store.first_held():
                    self._texts[span.number] = text
                    self._size += len(text)
                    while self._size > self.cache_bytes and len(self._texts) > 1:
                        self._size -= len(self._texts.pop(min(self._texts)))
            return text

    def forget_before(self, first_held: int) -> None:
        """Drop the text of windows before span number `first_held` (evicted)."""
        with self._lock:
            for number in [number for number in self._texts if number < first_held]:
                self._size -= len(self._texts.pop(number))

    def current(self, build: bool = True) -> bytes | None:
        """The `current` event's text (the window in progress as JSON, or null), built once
        per update of the window in progress, for all streams (build=False: None when not
        built yet or a lock is busy)."""
        current = self.store.current()
        if not self._lock.acquire(blocking=build):
            return None
        try:
            cached_for, text = self._current
        finally:
            self._lock.release()
        if current is cached_for:
            return text
        if not build:
            return None
        with self._building:
            with self._lock:
                cached_for, text = self._current
            if current is cached_for:
                return text
            text = current_event(b"null" if current is None else window_json(
                current.start_s, current.end_s, current.clients, current.inbound.tolist(),
                current.counts).encode())
            with self._lock:
                self._current = (current, text)
            return text
