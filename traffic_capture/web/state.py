"""The web's state: the closed windows of the last --web-history seconds, the window in
progress, and every query the API answers. Pure: no thread, no I/O, no FastAPI; safe to call
from several threads (one writer, the sink or the CSV follower; many readers, the API).

Closed windows are kept as columns (numpy), one row per (window, client, direction) as in the
CSV, appended in arrival order; a query over "the last S seconds" sums a slice of them with
one bincount per class, so its cost does not depend on Python loops over rows. "The last S
seconds" counts back from the newest window held (live, that is now), so a capture file or an
old CSV answers like a live capture.
"""

from __future__ import annotations

import ipaddress
import json
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from traffic_capture.csvformat import Row
from traffic_capture.rules import (
    CLASSES,
    IN,
    OUT,
    SERVICE_OTHER,
    SERVICE_TCP_OTHER,
    SERVICE_UDP_OTHER,
    SERVICES,
    WEB_HISTORY_MAX_ROWS,
    WEB_STREAM_CACHE_BYTES,
)

CLASS_COUNT = len(CLASSES)
# Service names, by index: the rules' table, then the three catch-alls.
SERVICE_NAMES: tuple[str, ...] = (*SERVICES, SERVICE_TCP_OTHER, SERVICE_UDP_OTHER, SERVICE_OTHER)


def service_tables() -> tuple[np.ndarray, np.ndarray]:
    """Port -> service index, for TCP and for UDP (indexed by port, 0-65535)."""
    tcp = np.full(65536, SERVICE_NAMES.index(SERVICE_TCP_OTHER), dtype=np.int16)
    udp = np.full(65536, SERVICE_NAMES.index(SERVICE_UDP_OTHER), dtype=np.int16)
    for index, (tcp_ports, udp_ports) in enumerate(SERVICES.values()):
        tcp[list(tcp_ports)] = index
        udp[list(udp_ports)] = index
    return tcp, udp


def canonical_ip(text: str) -> str:
    """An address as the CSV writes it (compressed IPv6); ValueError when it is not one."""
    return str(ipaddress.ip_address(text.strip()))


class _Columns:
    """Append-only columns; dropping rows at the front. Arrays are replaced, never shifted in
    place, so a slice handed to a reader stays valid while the writer goes on."""

    def __init__(self, shapes: dict[str, tuple[Any, int]]) -> None:
        self._shapes = shapes
        self.arrays: dict[str, np.ndarray] = {
            name: np.zeros((1024, width) if width else 1024, dtype=dtype)
            for name, (dtype, width) in shapes.items()}
        self.offset = 0  # rows dropped so far: row r is at r - offset
        self.end = 0  # rows appended so far (absolute)

    def __len__(self) -> int:
        return self.end - self.offset

    def append(self, values: dict[str, np.ndarray]) -> tuple[int, int]:
        count = len(next(iter(values.values())))
        used = self.end - self.offset
        capacity = len(next(iter(self.arrays.values())))
        if used + count > capacity:
            capacity = max(1024, 2 * (used + count))
            self.arrays = {name: _resized(array, used, capacity)
                           for name, array in self.arrays.items()}
        for name, array in self.arrays.items():
            array[used:used + count] = values[name]
        first = self.end
        self.end += count
        return first, self.end

    def drop_before(self, row: int) -> None:
        """Forget rows before absolute row `row` (copies the rest only once half is dead)."""
        dead = row - self.offset
        if dead <= 0:
            return
        used = self.end - self.offset
        capacity = len(next(iter(self.arrays.values())))
        keep = used - dead
        self.arrays = {name: _resized(array[dead:used], keep, max(1024, 2 * keep))
                       if dead * 2 >= capacity or keep * 4 < capacity else array[dead:]
                       for name, array in self.arrays.items()}
        self.offset = row

    def view(self, first: int, stop: int) -> dict[str, np.ndarray]:
        return {name: array[first - self.offset:stop - self.offset]
                for name, array in self.arrays.items()}

    def remap_keys(self, remap: np.ndarray) -> None:
        used = self.end - self.offset
        keys = self.arrays["key"]
        new = keys.copy()
        new[:used] = remap[keys[:used] >> 1] * 2 + (keys[:used] & 1)
        self.arrays = {**self.arrays, "key": new}


def _resized(array: np.ndarray, used: int, capacity: int) -> np.ndarray:
    new = np.zeros((capacity, *array.shape[1:]), dtype=array.dtype)
    new[:used] = array[:used]
    return new


@dataclass(frozen=True)
class Span:
    """A closed window held: its bounds and where its rows are in the columns."""

    start_s: int
    end_s: int
    rows: tuple[int, int]
    services: tuple[int, int]
    number: int  # windows added before it: spans held are consecutive numbers
    # Earlier spans of the same window (its late packets close it again): 0 for the first.
    repeat: int = 0

    @property
    def event_id(self) -> str:
        """The stream's id: the window's start, '.N' added when it closed before ('1700.1')."""
        return f"{self.start_s}.{self.repeat}" if self.repeat else str(self.start_s)


@dataclass(frozen=True)
class ServiceSums:
    """A window's bytes per (client, direction, service of the server's port)."""

    clients: Sequence[str]
    inbound: np.ndarray  # bool
    service: np.ndarray  # index into SERVICE_NAMES
    ip_bytes: np.ndarray  # int64


@dataclass(frozen=True)
class Current:
    """The window in progress so far."""

    start_s: int
    end_s: int
    clients: Sequence[str]
    inbound: np.ndarray
    counts: np.ndarray  # (rows, classes)


def _classes(counts: Sequence[int]) -> dict[str, int]:
    return {name: int(value) for name, value in zip(CLASSES, counts, strict=True)}


# A row's JSON as json.dumps writes the _row_dict below (same keys, order and separators), as
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


def _window_json(start_s: int, end_s: int, clients: Sequence[str], inbound: Sequence[bool],
                 counts: np.ndarray) -> str:
    """json.dumps({"start", "end", "rows": [_row_dict...]}), byte for byte, built faster; in
    pieces that let other threads have the GIL in between (the API's requests wait less)."""
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


def _row_dict(client: str, inbound: bool, counts: Sequence[int]) -> dict[str, Any]:
    numbers = [int(value) for value in counts]
    return {"client_ip": client, "direction": IN if inbound else OUT,
            "total_bytes": sum(numbers),
            **{f"{name}_bytes": value for name, value in zip(CLASSES, numbers, strict=True)}}


class WebState:
    """Closed windows of the last `history_seconds` (and at most `max_rows` rows), the window in
    progress, and the queries over them."""

    def __init__(self, window_seconds: int, history_seconds: int,
                 max_rows: int = WEB_HISTORY_MAX_ROWS, services: bool = False) -> None:
        self.window_seconds = window_seconds
        self.history_seconds = history_seconds
        self.max_rows = max_rows
        self.services_known = services  # False for a CSV alone: it has no ports
        self._lock = threading.Lock()
        self._names: list[str] = []
        self._ids: dict[str, int] = {}
        self._rows = _Columns({"key": (np.int64, 0), "counts": (np.int64, CLASS_COUNT)})
        self._services = _Columns({"key": (np.int64, 0), "service": (np.int16, 0),
                                   "bytes": (np.int64, 0)})
        self._spans: list[Span] = []
        self._repeats: dict[int, int] = {}  # window start -> the repeat of its newest span
        self._current: Current | None = None
        self.totals = np.zeros((2, CLASS_COUNT), dtype=np.int64)  # [in, out] since start
        self.windows_added = 0
        self._sums_cache: dict[int | None, tuple[int, tuple[np.ndarray, list[str],
                                                            list[Span]]]] = {}
        # The event stream's text, built once for all streams: each held window's `window`
        # event by span number (evicted with the window, and oldest first beyond
        # event_cache_bytes), and the `current` event of the window in progress.
        self.event_cache_bytes = WEB_STREAM_CACHE_BYTES
        self._events: dict[int, bytes] = {}
        self._events_size = 0
        self._events_lock = threading.Lock()  # one builder: streams opening at once wait
        self._current_event: tuple[Current | None, bytes] = (None, self._current_sse(b"null"))

    # Writing (one writer thread).
    def _keys(self, clients: Sequence[str], inbound: np.ndarray) -> np.ndarray:
        ids = np.empty(len(clients), dtype=np.int64)
        for i, client in enumerate(clients):
            found = self._ids.get(client)
            if found is None:
                found = self._ids[client] = len(self._names)
                self._names.append(client)
            ids[i] = found
        return ids * 2 + (~np.asarray(inbound, dtype=bool)).astype(np.int64)

    def add_window(self, start_s: int, end_s: int, clients: Sequence[str], inbound: np.ndarray,
                   counts: np.ndarray, services: ServiceSums | None = None) -> None:
        """A closed window's rows (one per client and direction, as in the CSV)."""
        counts = np.asarray(counts, dtype=np.int64).reshape(-1, CLASS_COUNT)
        with self._lock:
            rows = self._rows.append({"key": self._keys(clients, inbound), "counts": counts})
            if services is not None and len(services.clients):
                service_rows = self._services.append({
                    "key": self._keys(services.clients, services.inbound),
                    "service": services.service, "bytes": services.ip_bytes})
            else:
                service_rows = (self._services.end, self._services.end)
            repeat = self._repeats.get(start_s, -1) + 1
            self._repeats[start_s] = repeat
            self._spans.append(Span(start_s, end_s, rows, service_rows, self.windows_added,
                                    repeat))
            inbound = np.asarray(inbound, dtype=bool)
            self.totals[0] += counts[inbound].sum(axis=0)
            self.totals[1] += counts[~inbound].sum(axis=0)
            self.windows_added += 1
            if self._current is not None and self._current.start_s <= start_s:
                self._current = None
            self._evict()

    def load_rows(self, rows: Iterable[Row]) -> int:
        """CSV rows, in file order: consecutive rows of one window make one window. Returns
        how many windows were added."""
        added = 0
        group: list[Row] = []
        for row in rows:
            if group and (row.window_start, row.window_end) != (group[0].window_start,
                                                                  group[0].window_end):
                self._add_rows(group)
                added += 1
                group = []
            group.append(row)
        if group:
            self._add_rows(group)
            added += 1
        return added

    def _add_rows(self, rows: list[Row]) -> None:
        counts = np.array([row[5:] for row in rows], dtype=np.int64).reshape(-1, CLASS_COUNT)
        self.add_window(rows[0].window_start, rows[0].window_end,
                        [row.client_ip for row in rows],
                        np.array([row.direction == IN for row in rows], dtype=bool), counts)

    def set_current(self, current: Current | None) -> None:
        with self._lock:
            newest = self._spans[-1].start_s if self._spans else None
            if current is not None and newest is not None and current.start_s <= newest:
                current = None  # already closed
            self._current = current

    def _evict(self) -> None:
        newest_end = max(span.end_s for span in self._spans[-8:])
        cut = 0
        rows_held = len(self._rows)
        while cut < len(self._spans) - 1 and (
                self._spans[cut].end_s <= newest_end - self.history_seconds
                or rows_held > self.max_rows):
            rows_held -= self._spans[cut].rows[1] - self._spans[cut].rows[0]
            cut += 1
        if not cut:
            return
        for span in self._spans[:cut]:
            if self._repeats.get(span.start_s) == span.repeat:  # no newer span of it held
                del self._repeats[span.start_s]
        del self._spans[:cut]
        self._drop_events(self._spans[0].number)
        self._rows.drop_before(self._spans[0].rows[0])
        self._services.drop_before(self._spans[0].services[0])
        if len(self._names) > 4096 and len(self._names) > 4 * len(self._rows):
            self._compact_names()

    def _compact_names(self) -> None:
        """Forget clients no held row names (a scan of many addresses must not grow memory)."""
        live = np.unique(np.concatenate([self._rows.view(self._rows.offset, self._rows.end)[
            "key"] >> 1, self._services.view(self._services.offset, self._services.end)[
            "key"] >> 1]))
        remap = np.full(len(self._names), -1, dtype=np.int64)
        remap[live] = np.arange(len(live))
        self._names = [self._names[i] for i in live.tolist()]
        self._ids = {name: i for i, name in enumerate(self._names)}
        self._rows.remap_keys(remap)
        self._services.remap_keys(remap)

    # Reading (any thread). Each query takes what it needs under the lock, then computes.
    def _selection(self, seconds: int | None) -> tuple[list[Span], dict[str, np.ndarray],
                                                       np.ndarray, int]:
        """Spans overlapping the last `seconds` (None: all held), their rows' columns, each
        row's span index, and the number of client names."""
        with self._lock:
            spans = list(self._spans)
            if seconds is not None and spans:
                newest_end = max(span.end_s for span in spans[-8:])
                spans = [span for span in spans if span.end_s > newest_end - seconds]
            if not spans:
                return [], {"key": np.zeros(0, np.int64),
                            "counts": np.zeros((0, CLASS_COUNT), np.int64)}, np.zeros(
                    0, np.int64), len(self._names)
            first, stop = spans[0].rows[0], spans[-1].rows[1]
            columns = self._rows.view(first, stop)
            names = len(self._names)
        sizes = np.array([span.rows[1] - span.rows[0] for span in spans], dtype=np.int64)
        if int(sizes.sum()) != stop - first:  # not a contiguous run (a late window): gather
            pieces = [self._rows_of(span, first, columns) for span in spans]
            columns = {name: np.concatenate([piece[name] for piece in pieces])
                       for name in columns}
        span_of_row = np.repeat(np.arange(len(spans)), sizes)
        return spans, columns, span_of_row, names

    @staticmethod
    def _rows_of(span: Span, first: int, columns: dict[str, np.ndarray]
                 ) -> dict[str, np.ndarray]:
        return {name: array[span.rows[0] - first:span.rows[1] - first]
                for name, array in columns.items()}

    def newest_end(self) -> int | None:
        with self._lock:
            return max(span.end_s for span in self._spans[-8:]) if self._spans else None

    def summary(self) -> dict[str, Any]:
        with self._lock:
            spans = self._spans
            current = self._current
            return {
                "window_seconds": self.window_seconds,
                "history_seconds": self.history_seconds,
                "history_windows": len(spans),
                "history_rows": len(self._rows),
                "history_from": spans[0].start_s if spans else None,
                "history_to": max(span.end_s for span in spans[-8:]) if spans else None,
                "current_window": None if current is None else {
                    "start": current.start_s, "end": current.end_s},
                "services_known": self.services_known,
            }

    def _window_dict(self, span: Span, keys: np.ndarray, counts: np.ndarray,
                     names: list[str]) -> dict[str, Any]:
        return {"start": span.start_s, "end": span.end_s,
                "rows": [_row_dict(names[key >> 1], not key & 1, numbers)
                         for key, numbers in zip(keys.tolist(), counts.tolist(), strict=True)]}

    def windows(self, limit: int) -> list[dict[str, Any]]:
        """The last `limit` closed windows with their rows, oldest first."""
        with self._lock:
            spans = self._spans[-limit:] if limit > 0 else []
            views = [self._rows.view(*span.rows) for span in spans]
            names = self._names
        return [self._window_dict(span, view["key"], view["counts"], names)
                for span, view in zip(spans, views, strict=True)]

    def stream_position(self, event_id: str) -> int:
        """A resumed stream's place: the number of the span whose event id it last received
        (for a window no longer held: just before the first held one that starts after it);
        window_events(position) then gives what was added after it, late windows included.
        ValueError for an id this stream never sends."""
        start_text, _, repeat_text = event_id.strip().partition(".")
        start, repeat = int(start_text), int(repeat_text or 0)
        with self._lock:
            spans = list(self._spans)
        for span in reversed(spans):
            if (span.start_s, span.repeat) == (start, repeat):
                return span.number
        later = [span.number for span in spans if span.start_s > start]
        if later:  # not held (evicted, or from a run before): from the first window after it
            return min(later) - 1
        return self.windows_added - 1

    def window_events(self, after: int | None, newest_seconds: int, build: bool = True
                      ) -> list[tuple[int, bytes]] | None:
        """For the event stream: (span number, `window` event text) of the windows added after
        span number `after` (a stream's place: see stream_position), or, for a new stream, of
        the last `newest_seconds`; in the order they closed. Each window's text is built once,
        by whichever stream asks first, and shared. With build=False, None when some text is
        not built yet or the writer holds the lock (a quick look that never waits, for the
        event loop: the rest goes to a thread)."""
        if not build:
            if not self._lock.acquire(blocking=False):
                return None
            try:
                spans = self._stream_spans(after, newest_seconds)
                cached = [self._events.get(span.number) for span in spans]
            finally:
                self._lock.release()
            return [(span.number, text) for span, text in zip(spans, cached, strict=True)
                    if text is not None] if all(cached) else None
        with self._lock:
            spans = self._stream_spans(after, newest_seconds)
            found: list[bytes | tuple[dict[str, np.ndarray], list[str]]] = [
                self._events.get(span.number) or (self._rows.view(*span.rows), self._names)
                for span in spans]
        return [(span.number, text if isinstance(text, bytes) else self._window_event(
            span, *text)) for span, text in zip(spans, found, strict=True)]

    def _stream_spans(self, after: int | None, newest_seconds: int) -> list[Span]:
        if after is not None:  # spans held are consecutive numbers
            first = self._spans[0].number if self._spans else 0
            return self._spans[max(0, after + 1 - first):]
        newest_end = max((span.end_s for span in self._spans[-8:]), default=0)
        return [span for span in self._spans if span.end_s > newest_end - newest_seconds]

    def _window_event(self, span: Span, view: dict[str, np.ndarray], names: list[str]
                      ) -> bytes:
        """A window's event text from its rows (a view taken under the lock: it stays valid),
        built once: a stream that waited here for another one building it takes that."""
        with self._events_lock:
            with self._lock:
                text = self._events.get(span.number)
            if text is not None:
                return text
            keys = view["key"]
            data = _window_json(span.start_s, span.end_s,
                                [names[key] for key in (keys >> 1).tolist()],
                                (keys & 1 == 0).tolist(), view["counts"])
            text = f"id: {span.event_id}\nevent: window\ndata: {data}\n\n".encode()
            with self._lock:
                if self._spans and span.number >= self._spans[0].number:  # still held
                    self._events[span.number] = text
                    self._events_size += len(text)
                    while self._events_size > self.event_cache_bytes and len(self._events) > 1:
                        self._events_size -= len(self._events.pop(min(self._events)))
            return text

    def _drop_events(self, first_held: int) -> None:
        for number in [number for number in self._events if number < first_held]:
            self._events_size -= len(self._events.pop(number))

    @staticmethod
    def _current_sse(data: bytes) -> bytes:
        return b"event: current\ndata: " + data + b"\n\n"

    def current_event(self, build: bool = True) -> bytes | None:
        """The `current` event's text (the window in progress as JSON, or null), built once
        per update of the window in progress, for all streams (build=False: None when not
        built yet or the writer holds the lock)."""
        if not self._lock.acquire(blocking=build):
            return None
        try:
            current = self._current
            cached_for, text = self._current_event
        finally:
            self._lock.release()
        if current is cached_for:
            return text
        if not build:
            return None
        with self._events_lock:
            with self._lock:
                cached_for, text = self._current_event
            if current is cached_for:
                return text
            text = self._current_sse(b"null" if current is None else _window_json(
                current.start_s, current.end_s, current.clients, current.inbound.tolist(),
                current.counts).encode())
            with self._lock:
                self._current_event = (current, text)
            return text

    def newest_start(self) -> int | None:
        with self._lock:
            return max(span.start_s for span in self._spans[-8:]) if self._spans else None

    def current(self) -> dict[str, Any] | None:
        with self._lock:
            current = self._current
        if current is None:
            return None
        return {"start": current.start_s, "end": current.end_s, "rows": [
            _row_dict(client, bool(inbound), numbers) for client, inbound, numbers in zip(
                current.clients, current.inbound.tolist(), current.counts.tolist(),
                strict=True)]}

    def _per_key(self, seconds: int | None) -> tuple[np.ndarray, list[str], list[Span]]:
        """(clients, 2, classes) byte sums over the last `seconds`: [:, 0] in, [:, 1] out.
        Cached until the next window: between two windows every answer is the same, so 50
        requests a second cost one sum per window (and per span asked for)."""
        with self._lock:
            version = self.windows_added
            cached = self._sums_cache.get(seconds)
        if cached is not None and cached[0] == version:
            return cached[1]
        found = self._sum_per_key(seconds)
        with self._lock:
            if self.windows_added == version:
                if len(self._sums_cache) > 16:
                    self._sums_cache.clear()
                self._sums_cache[seconds] = (version, found)
        return found

    def _sum_per_key(self, seconds: int | None) -> tuple[np.ndarray, list[str], list[Span]]:
        spans, columns, _, names_count = self._selection(seconds)
        with self._lock:
            names = self._names[:names_count]
        keys, counts = columns["key"], columns["counts"]
        sums = np.zeros((2 * names_count, CLASS_COUNT), dtype=np.int64)
        if len(keys):
            for c in range(CLASS_COUNT):
                sums[:, c] = np.bincount(keys, weights=counts[:, c],
                                         minlength=2 * names_count).astype(np.int64)
        return sums.reshape(names_count, 2, CLASS_COUNT), names, spans

    def clients(self, seconds: int, limit: int, direction: str | None = None
                ) -> dict[str, Any]:
        """Top clients over the last `seconds`, by total bytes (or those of one direction)."""
        sums, names, spans = self._per_key(seconds)
        per_direction = sums.sum(axis=2)  # (clients, 2)
        if direction == IN:
            order_by = per_direction[:, 0]
        elif direction == OUT:
            order_by = per_direction[:, 1]
        else:
            order_by = per_direction.sum(axis=1)
        active = np.flatnonzero(order_by > 0)
        # Largest first; ties by address text order of first sight (stable).
        top = active[np.argsort(-order_by[active], kind="stable")][:max(limit, 0)]
        return {**self._span_info(spans, seconds), "clients_active": int(len(active)),
                "clients": [self._client_dict(names[i], sums[i]) for i in top.tolist()]}

    @staticmethod
    def _client_dict(ip: str, sums: np.ndarray) -> dict[str, Any]:
        bytes_in, bytes_out = (int(value) for value in sums.sum(axis=1))
        return {"ip": ip, "bytes_in": bytes_in, "bytes_out": bytes_out,
                "total": bytes_in + bytes_out, "protocols": _classes(sums.sum(axis=0)),
                "in": _classes(sums[0]), "out": _classes(sums[1])}

    @staticmethod
    def _span_info(spans: list[Span], seconds: int | None) -> dict[str, Any]:
        return {"seconds": seconds, "windows": len(spans),
                "from": spans[0].start_s if spans else None,
                "to": max(span.end_s for span in spans) if spans else None}

    def knows(self, ip: str) -> bool:
        with self._lock:
            return ip in self._ids

    def client(self, ip: str, seconds: int) -> dict[str, Any] | None:
        """One client's per-window, per-class history over the last `seconds` (the drill-down),
        with its services; None when no held window names it."""
        with self._lock:
            client_id = self._ids.get(ip)
        if client_id is None:
            return None
        spans, columns, span_of_row, _ = self._selection(seconds)
        mine = np.flatnonzero((columns["key"] >> 1) == client_id)
        per_window: dict[int, dict[str, Any]] = {}
        totals = np.zeros((2, CLASS_COUNT), dtype=np.int64)
        for row in mine.tolist():
            span = spans[int(span_of_row[row])]
            out = int(columns["key"][row] & 1)
            counts = columns["counts"][row]
            totals[out] += counts
            entry = per_window.setdefault(id(span), {
                "start": span.start_s, "end": span.end_s,
                "in": _classes([0] * CLASS_COUNT), "out": _classes([0] * CLASS_COUNT)})
            side = entry[OUT if out else IN]
            for name, value in zip(CLASSES, counts.tolist(), strict=True):
                side[name] += value
        services = self._service_sums(seconds, client_id)
        return {**self._span_info(spans, seconds), **self._client_dict(ip, totals),
                "history": sorted(per_window.values(), key=lambda w: w["start"]),
                "services": services}

    def protocols(self, seconds: int) -> dict[str, Any]:
        sums, _, spans = self._per_key(seconds)
        per = sums.sum(axis=0)  # (2, classes)
        return {**self._span_info(spans, seconds), "protocols": [
            {"protocol": name, "bytes_in": int(per[0, c]), "bytes_out": int(per[1, c]),
             "total": int(per[0, c] + per[1, c])} for c, name in enumerate(CLASSES)]}

    def _service_sums(self, seconds: int | None, client_id: int | None = None
                      ) -> list[dict[str, Any]] | None:
        if not self.services_known:
            return None
        with self._lock:
            spans = list(self._spans)
            if seconds is not None and spans:
                newest_end = max(span.end_s for span in spans[-8:])
                spans = [span for span in spans if span.end_s > newest_end - seconds]
            pieces = [self._services.view(*span.services) for span in spans]
        if pieces:
            keys = np.concatenate([piece["key"] for piece in pieces])
            service = np.concatenate([piece["service"] for piece in pieces]).astype(np.int64)
            ip_bytes = np.concatenate([piece["bytes"] for piece in pieces])
        else:
            keys = service = ip_bytes = np.zeros(0, dtype=np.int64)
        if client_id is not None:
            chosen = (keys >> 1) == client_id
            keys, service, ip_bytes = keys[chosen], service[chosen], ip_bytes[chosen]
        sums = np.bincount(service * 2 + (keys & 1), weights=ip_bytes,
                           minlength=2 * len(SERVICE_NAMES)).astype(np.int64).reshape(-1, 2)
        found = [{"service": name, "bytes_in": int(sums[i, 0]), "bytes_out": int(sums[i, 1]),
                  "total": int(sums[i].sum())} for i, name in enumerate(SERVICE_NAMES)
                 if sums[i].sum()]
        return sorted(found, key=lambda s: -s["total"])

    def services(self, seconds: int) -> dict[str, Any]:
        spans, _, _, _ = self._selection(seconds)
        return {**self._span_info(spans, seconds), "available": self.services_known,
                "services": self._service_sums(seconds) or []}
