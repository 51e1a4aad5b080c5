"""Windows for the web's stores: drawn by hypothesis (in the order they close, late ones and
empty ones included), fed to the web's memory, and read back the plainest way (`ListReader`, a
queries.Reader over a list) to compare with."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from tests.web_helpers import T0
from traffic_capture.queries import (
    CLASS_COUNT,
    ClientTotals,
    Coverage,
    Resolution,
    ServiceTotals,
    TimeRange,
    WindowRows,
)
from traffic_capture.web.memory_store import SERVICE_NAMES, MemoryStore, ServiceSums

POOL = ["10.0.0.1", "10.0.0.2", "192.0.2.9", "2001:db8::7", "2001:db8::8", "other"]


@dataclass
class Given:
    """A window as given to the store: its rows (client, inbound, counts) and services
    (client, inbound, service index, bytes)."""

    start_s: int
    rows: list[tuple[str, bool, list[int]]]
    services: list[tuple[str, bool, int, int]]

    @property
    def end_s(self) -> int:
        return self.start_s + 5


@st.composite
def given_windows(draw: st.DrawFn, most: int = 25) -> list[Given]:
    """Windows in the order they close: mostly the next one, sometimes one closed again by
    late packets (never more than 3 in a row: the store looks for the newest window among the
    last 8 closed), sometimes one without rows."""
    found: list[Given] = []
    newest = 0
    late_in_a_row = 0
    for _ in range(draw(st.integers(0, most))):
        late = bool(found) and late_in_a_row < 3 and draw(st.integers(0, 5)) == 0
        late_in_a_row = late_in_a_row + 1 if late else 0
        k = draw(st.integers(max(0, newest - 6), newest)) if late else newest + draw(
            st.integers(0, 2))
        newest = max(newest, k + 1)
        keys = draw(st.lists(st.tuples(st.sampled_from(POOL), st.booleans()), unique=True,
                             max_size=6))
        rows = [(client, inbound, draw(st.lists(st.integers(0, 10**6), min_size=CLASS_COUNT,
                                                 max_size=CLASS_COUNT)))
                for client, inbound in keys]
        services = [(client, inbound, draw(st.integers(0, len(SERVICE_NAMES) - 1)),
                     draw(st.integers(1, 10**5)))
                    for client, inbound in draw(st.lists(st.sampled_from(keys), max_size=4))
                    ] if keys else []
        found.append(Given(T0 + 5 * k, rows, services))
    return found


def fed(windows: list[Given], history: int = 10**6, max_rows: int = 10**6) -> MemoryStore:
    store = MemoryStore(5, history, max_rows=max_rows, services=True)
    for window in windows:
        store.add_window(window.start_s, window.end_s, [r[0] for r in window.rows],
                         np.array([r[1] for r in window.rows], dtype=bool),
                         np.array([r[2] for r in window.rows], dtype=np.int64),
                         ServiceSums([s[0] for s in window.services],
                                     np.array([s[1] for s in window.services], dtype=bool),
                                     np.array([s[2] for s in window.services], dtype=np.int16),
                                     np.array([s[3] for s in window.services], dtype=np.int64)))
    return store


def overlapping(windows: list[Given], when: TimeRange) -> list[Given]:
    return [w for w in windows if w.end_s > when.start_s and w.start_s < when.end_s]


def ranges(windows: list[Given]) -> list[TimeRange]:
    newest = max((w.end_s for w in windows[-8:]), default=0)
    return [TimeRange.last(seconds, newest) for seconds in (1, 5, 12, 30, 3600)] + [
        TimeRange(T0 + 7, T0 + 31), TimeRange.everything()]


def coverage_of(windows: list[Given]) -> Coverage:
    if not windows:
        return Coverage(0)
    return Coverage(len(windows), windows[0].start_s, max(w.end_s for w in windows))


class ListReader:
    """queries.Reader over a list of windows, read the plainest way (no numpy tricks, no
    cache): every client of every window listed in the order first seen, zeros included."""

    def __init__(self, windows: list[Given]) -> None:
        self.windows = windows
        self.clients: list[str] = []
        for window in windows:
            for client in [r[0] for r in window.rows] + [s[0] for s in window.services]:
                if client not in self.clients:
                    self.clients.append(client)

    def resolutions(self) -> tuple[Resolution, ...]:
        if not self.windows:
            return (Resolution(5),)
        return (Resolution(5, self.windows[0].start_s, max(w.end_s for w in self.windows)),)

    def coverage(self, when: TimeRange, resolution: int) -> Coverage:
        return coverage_of(overlapping(self.windows, when))

    def client_totals(self, when: TimeRange, resolution: int) -> ClientTotals:
        sums = np.zeros((len(self.clients), 2, CLASS_COUNT), dtype=np.int64)
        chosen = overlapping(self.windows, when)
        for window in chosen:
            for client, inbound, counts in window.rows:
                sums[self.clients.index(client), 0 if inbound else 1] += counts
        return ClientTotals(list(self.clients), sums, 5, coverage_of(chosen))

    def window_rows(self, when: TimeRange, resolution: int, client: str | None = None,
                    last_windows: int | None = None) -> WindowRows:
        chosen = overlapping(self.windows, when)
        if last_windows is not None:
            chosen = chosen[-last_windows:] if last_windows > 0 else []
        listed = [(w, [r for r in w.rows if client in (None, r[0])]) for w in chosen]
        if client is not None:
            listed = [(w, rows) for w, rows in listed if rows]
        rows = [row for _, some in listed for row in some]
        return WindowRows(np.array([w.start_s for w, _ in listed], dtype=np.int64),
                          np.array([w.end_s for w, _ in listed], dtype=np.int64),
                          np.cumsum([0] + [len(some) for _, some in listed]),
                          [r[0] for r in rows], np.array([r[1] for r in rows], dtype=bool),
                          np.array([r[2] for r in rows], dtype=np.int64).reshape(
                              -1, CLASS_COUNT), 5)

    def service_totals(self, when: TimeRange, client: str | None = None
                       ) -> ServiceTotals | None:
        sums = np.zeros((len(SERVICE_NAMES), 2), dtype=np.int64)
        for window in overlapping(self.windows, when):
            for name, inbound, service, ip_bytes in window.services:
                if client in (None, name):
                    sums[service, 0 if inbound else 1] += ip_bytes
        return ServiceTotals(SERVICE_NAMES, sums[:, 0], sums[:, 1])
