"""The web's memory: the closed windows of the last --web-history seconds (and at most
`max_rows` rows) and the window in progress. One writer thread (the web sink, or `serve`'s
CSV follower), many readers (the API, the event stream). Pure: no I/O, no FastAPI.

Closed windows are kept as columns (numpy), one row per (window, client, direction) as in the
CSV, appended in the order they close; a sum over a range is one bincount per class over a
slice of them, so its cost does not depend on Python loops over rows. It answers the questions
every store answers (`queries.Reader`), at one resolution: the window length.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from traffic_capture.csvformat import Row
from traffic_capture.queries import (
    CLASS_COUNT,
    ClientTotals,
    Coverage,
    Resolution,
    ServiceTotals,
    TimeRange,
    WindowRows,
)
from traffic_capture.rules import (
    IN,
    SERVICE_OTHER,
    SERVICE_TCP_OTHER,
    SERVICE_UDP_OTHER,
    SERVICES,
    WEB_HISTORY_MAX_ROWS,
)

# Service names, by index: the rules' table, then the three catch-alls.
SERVICE_NAMES: tuple[str, ...] = (*SERVICES, SERVICE_TCP_OTHER, SERVICE_UDP_OTHER, SERVICE_OTHER)
# Sums kept until the next window: between two windows every answer over a range is the same,
# so 50 requests a second cost one sum per window (and per range asked for).
SUMS_CACHED = 16


def service_tables() -> tuple[np.ndarray, np.ndarray]:
    """Port -> service index, for TCP and for UDP (indexed by port, 0-65535)."""
    tcp = np.full(65536, SERVICE_NAMES.index(SERVICE_TCP_OTHER), dtype=np.int16)
    udp = np.full(65536, SERVICE_NAMES.index(SERVICE_UDP_OTHER), dtype=np.int16)
    for index, (tcp_ports, udp_ports) in enumerate(SERVICES.values()):
        tcp[list(tcp_ports)] = index
        udp[list(udp_ports)] = index
    return tcp, udp


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


@dataclass(frozen=True)
class _Selection:
    """The spans overlapping a range and their rows' columns (each row's span index too)."""

    spans: list[Span]
    keys: np.ndarray  # client id * 2 + (1 if out)
    counts: np.ndarray
    span_of_row: np.ndarray
    names: list[str]  # client names by id (the writer may append to it: see name_count)
    name_count: int  # names when the keys were read
    client_id: int | None = None  # the id of the client asked for, None if not named


def _coverage(spans: Sequence[Span]) -> Coverage:
    if not spans:
        return Coverage(0)
    return Coverage(len(spans), spans[0].start_s, max(span.end_s for span in spans))


def _newest_end(spans: Sequence[Span]) -> int | None:
    # A late window closed again is added after newer ones: the newest is among the last few.
    return max(span.end_s for span in spans[-8:]) if spans else None


Evicted = Callable[[int], None]


class MemoryStore:
    """Closed windows of the last `history_seconds` (and at most `max_rows` rows), the window
    in progress, and the bytes since start. Reads (`queries.Reader`) are safe from any
    thread: each takes what it needs under the lock, then computes."""

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
        self._sums: dict[tuple[int, int], tuple[int, ClientTotals]] = {}
        self._evicted: list[Evicted] = []

    # Writing (one writer thread).
    def on_evict(self, callback: Evicted) -> None:
        """Call `callback(first held span number)` after windows are evicted (on the writer's
        thread, outside the lock): what is kept per window elsewhere goes with it."""
        self._evicted.append(callback)

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
            evicted = self._evict()
            first_held = self._spans[0].number
        if evicted:
            for callback in self._evicted:
                callback(first_held)

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

    def _evict(self) -> bool:
        newest_end = _newest_end(self._spans)
        assert newest_end is not None
        cut = 0
        rows_held = len(self._rows)
        while cut < len(self._spans) - 1 and (
                self._spans[cut].end_s <= newest_end - self.history_seconds
                or rows_held > self.max_rows):
            rows_held -= self._spans[cut].rows[1] - self._spans[cut].rows[0]
            cut += 1
        if not cut:
            return False
        for span in self._spans[:cut]:
            if self._repeats.get(span.start_s) == span.repeat:  # no newer span of it held
                del self._repeats[span.start_s]
        del self._spans[:cut]
        self._rows.drop_before(self._spans[0].rows[0])
        self._services.drop_before(self._spans[0].services[0])
        if len(self._names) > 4096 and len(self._names) > 4 * len(self._rows):
            self._compact_names()
        return True

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

    # Reading (any thread): queries.Reader.
    def resolutions(self) -> tuple[Resolution, ...]:
        with self._lock:
            spans = self._spans
            return (Resolution(self.window_seconds, spans[0].start_s if spans else None,
                               _newest_end(spans)),)

    def _check(self, resolution: int) -> None:
        if resolution != self.window_seconds:
            raise ValueError(f"the web's memory holds {self.window_seconds}-second windows "
                             f"only, not {resolution}-second ones")

    def _overlapping(self, when: TimeRange) -> list[Span]:
        """Under the lock: the spans overlapping `when`, in the order they closed."""
        return [span for span in self._spans
                if span.end_s > when.start_s and span.start_s < when.end_s]

    def coverage(self, when: TimeRange, resolution: int) -> Coverage:
        self._check(resolution)
        with self._lock:
            return _coverage(self._overlapping(when))

    def client_totals(self, when: TimeRange, resolution: int) -> ClientTotals:
        """Every client seen since the names were last compacted, in the order first seen
        (zeros for those without bytes in the range). Cached until the next window."""
        self._check(resolution)
        key = (when.start_s, when.end_s)
        with self._lock:
            version = self.windows_added
            cached = self._sums.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        found = self._sum(when)
        with self._lock:
            if self.windows_added == version:
                if len(self._sums) > SUMS_CACHED:
                    self._sums.clear()
                self._sums[key] = (version, found)
        return found

    def _sum(self, when: TimeRange) -> ClientTotals:
        chosen = self._select(when)
        names = chosen.name_count
        sums = np.zeros((2 * names, CLASS_COUNT), dtype=np.int64)
        if len(chosen.keys):
            for c in range(CLASS_COUNT):
                sums[:, c] = np.bincount(chosen.keys, weights=chosen.counts[:, c],
                                         minlength=2 * names).astype(np.int64)
        return ClientTotals(chosen.names[:names], sums.reshape(names, 2, CLASS_COUNT),
                            self.window_seconds, _coverage(chosen.spans))

    def window_rows(self, when: TimeRange, resolution: int, client: str | None = None,
                    last_windows: int | None = None) -> WindowRows:
        """A window closed again by late packets is listed again, where it closed."""
        self._check(resolution)
        chosen = self._select(when, last_windows, client)
        keys, counts, span_of_row = chosen.keys, chosen.counts, chosen.span_of_row
        spans = chosen.spans
        if client is not None:
            if chosen.client_id is None:
                return WindowRows.empty(self.window_seconds)
            mine = np.flatnonzero((keys >> 1) == chosen.client_id)
            keys, counts, span_of_row = keys[mine], counts[mine], span_of_row[mine]
            held, per_span = np.unique(span_of_row, return_counts=True)
            spans = [spans[i] for i in held.tolist()]
            clients: list[str] = [client] * len(keys)
        else:
            per_span = np.array([span.rows[1] - span.rows[0] for span in spans], dtype=np.int64)
            names = chosen.names
            clients = [names[key] for key in (keys >> 1).tolist()]
        bounds = np.zeros(len(spans) + 1, dtype=np.int64)
        np.cumsum(per_span, out=bounds[1:])
        return WindowRows(np.array([span.start_s for span in spans], dtype=np.int64),
                          np.array([span.end_s for span in spans], dtype=np.int64), bounds,
                          clients, (keys & 1) == 0, counts, self.window_seconds)

    def service_totals(self, when: TimeRange, client: str | None = None
                       ) -> ServiceTotals | None:
        """Every service of the rules' table, in its order (zeros included); None when the
        windows come from a CSV alone, which has no ports."""
        if not self.services_known:
            return None
        with self._lock:
            pieces = [self._services.view(*span.services) for span in self._overlapping(when)]
            client_id = None if client is None else self._ids.get(client, -1)
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
        return ServiceTotals(SERVICE_NAMES, sums[:, 0], sums[:, 1])

    def _select(self, when: TimeRange, last_windows: int | None = None,
                client: str | None = None) -> _Selection:
        """The spans overlapping `when` (the last `last_windows` of them, if given) and their
        rows' columns: views taken under the lock, which stay valid (see _Columns)."""
        with self._lock:
            spans = self._overlapping(when)
            if last_windows is not None:
                spans = spans[-last_windows:] if last_windows > 0 else []
            names = self._names
            client_id = None if client is None else self._ids.get(client)
            if not spans:
                return _Selection([], np.zeros(0, np.int64),
                                  np.zeros((0, CLASS_COUNT), np.int64), np.zeros(0, np.int64),
                                  names, len(names), client_id)
            first, stop = spans[0].rows[0], spans[-1].rows[1]
            columns = self._rows.view(first, stop)
            name_count = len(names)
        sizes = np.array([span.rows[1] - span.rows[0] for span in spans], dtype=np.int64)
        if int(sizes.sum()) != stop - first:  # not a contiguous run (a late window): gather
            pieces = [{name: array[span.rows[0] - first:span.rows[1] - first]
                       for name, array in columns.items()} for span in spans]
            columns = {name: np.concatenate([piece[name] for piece in pieces])
                       for name in columns}
        return _Selection(spans, columns["key"], columns["counts"],
                          np.repeat(np.arange(len(spans)), sizes), names, name_count, client_id)

    # The rest of what the web shows: the window in progress, the history's state, and the
    # spans the event stream sends.
    def current(self) -> Current | None:
        """The window in progress (a reference read: it never waits for the writer)."""
        return self._current

    def knows(self, ip: str) -> bool:
        """Whether a client is still named (held rows name it, or names were not compacted
        since they did)."""
        with self._lock:
            return ip in self._ids

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
                "history_to": _newest_end(spans),
                "current_window": None if current is None else {
                    "start": current.start_s, "end": current.end_s},
                "services_known": self.services_known,
            }

    def held_spans(self) -> list[Span]:
        with self._lock:
            return list(self._spans)

    def first_held(self) -> int:
        """The number of the oldest span held (windows_added when none is)."""
        with self._lock:
            return self._spans[0].number if self._spans else self.windows_added

    def stream_spans(self, after: int | None, newest_seconds: int, wait: bool = True
                     ) -> list[Span] | None:
        """The spans added after span number `after`, or (None) those of the last
        `newest_seconds`; in the order they closed. wait=False: None at once when the writer
        holds the lock."""
        if not self._lock.acquire(blocking=wait):
            return None
        try:
            spans = self._spans
            if after is not None:  # spans held are consecutive numbers
                first = spans[0].number if spans else 0
                return spans[max(0, after + 1 - first):]
            newest_end = _newest_end(spans) or 0
            return [span for span in spans if span.end_s > newest_end - newest_seconds]
        finally:
            self._lock.release()

    def span_rows(self, span: Span) -> tuple[list[str], list[bool], np.ndarray] | None:
        """A held span's rows: clients, inbound, counts (None once it is evicted)."""
        with self._lock:
            if not self._spans or span.number < self._spans[0].number:
                return None
            view = self._rows.view(*span.rows)
            names = self._names
        keys = view["key"]
        return ([names[key] for key in (keys >> 1).tolist()], (keys & 1 == 0).tolist(),
                view["counts"])
