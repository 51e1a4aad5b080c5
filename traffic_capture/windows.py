"""Tumbling windows: packets in, one row per (window, client, direction) out.

Pure: no clock, no thread, no I/O. Time is integer nanoseconds since the epoch so that a window
edge is exact for microsecond and nanosecond captures alike (a float would round
1700000004.9999999 into the next window).
"""

from __future__ import annotations

from typing import NamedTuple

from traffic_capture.parse import address_text
from traffic_capture.rules import CLASSES, IN

NS = 1_000_000_000
_CLASS_COUNT = len(CLASSES)


class Row(NamedTuple):
    """One CSV row; times are epoch seconds, turned into local time by the CSV sink."""

    window_start: int
    window_end: int
    client_ip: str
    direction: str
    total_bytes: int
    http_bytes: int
    ftp_bytes: int
    tcp_bytes: int
    udp_bytes: int
    other_bytes: int


class WindowAggregator:
    """Sums IP bytes per (window, client, direction, class) until a window is closed."""

    def __init__(self, window_seconds: int) -> None:
        if window_seconds <= 0:
            raise ValueError("window must be a positive number of seconds")
        self.window_ns = window_seconds * NS
        self._windows: dict[int, dict[tuple[bytes, str], list[int]]] = {}
        # The window most packets fall in, kept at hand: the per-packet path is one comparison.
        self._current_start = -1
        self._current: dict[tuple[bytes, str], list[int]] = {}

    def __len__(self) -> int:
        """Open windows."""
        return len(self._windows)

    def add(self, ts_ns: int, client: bytes, direction: str, protocol_class: int,
            ip_bytes: int) -> None:
        start = self._current_start
        if not start <= ts_ns < start + self.window_ns:
            # floor(t / W) * W: windows aligned to the clock (:00, :05, :10...).
            start = self._current_start = ts_ns // self.window_ns * self.window_ns
            current = self._windows.get(start)
            if current is None:
                current = self._windows[start] = {}
            self._current = current
        counts = self._current.get((client, direction))
        if counts is None:
            counts = self._current[(client, direction)] = [0] * _CLASS_COUNT
        counts[protocol_class] += ip_bytes

    def add_totals(self, window_starts_ns: list[int], clients: list[bytes],
                   directions: list[str], protocol_classes: list[int], totals: list[int]
                   ) -> None:
        """Many already-summed (window, client, direction, class) totals at once (batches)."""
        windows = self._windows
        for start, client, direction, protocol_class, total in zip(
                window_starts_ns, clients, directions, protocol_classes, totals, strict=True):
            window = windows.get(start)
            if window is None:
                window = windows[start] = {}
            counts = window.get((client, direction))
            if counts is None:
                counts = window[(client, direction)] = [0] * _CLASS_COUNT
            counts[protocol_class] += total

    def oldest_end_ns(self) -> int | None:
        """End of the oldest open window, so callers know when the next close is due."""
        if not self._windows:
            return None
        return min(self._windows) + self.window_ns

    def close_until(self, now_ns: int) -> list[ClosedWindow]:
        """Close every window that ended at or before `now_ns`, oldest first."""
        due = sorted(start for start in self._windows if start + self.window_ns <= now_ns)
        return [self._close(start) for start in due]

    def close_all(self) -> list[ClosedWindow]:
        """At stop: every open window, the partial one included, with its real bounds."""
        return [self._close(start) for start in sorted(self._windows)]

    def _close(self, start: int) -> ClosedWindow:
        counts_by_key = self._windows.pop(start)
        if start == self._current_start:
            self._current_start = -1
            self._current = {}
        return ClosedWindow(start // NS, (start + self.window_ns) // NS, counts_by_key)


class ClosedWindow(NamedTuple):
    """A closed window's sums. Closing costs nothing; turning 100,000 clients into sorted rows
    takes a good half second, which the writer thread pays, not the capture."""

    start_s: int
    end_s: int
    counts_by_key: dict[tuple[bytes, str], list[int]]

    def __len__(self) -> int:  # type: ignore[override]
        """Rows it makes."""
        return len(self.counts_by_key)

    def rows(self) -> list[Row]:
        return rows_of_window(self.start_s, self.end_s, self.counts_by_key)


def _row_order(key: tuple[bytes, str]) -> tuple[int, bytes, bool]:
    client, direction = key
    # IPv4 before IPv6, numeric order within each, `in` before `out`: what a reader scans for.
    return (len(client), client, direction != IN)


def rows_of_window(start_s: int, end_s: int,
                   counts_by_key: dict[tuple[bytes, str], list[int]]) -> list[Row]:
    rows = []
    for key in sorted(counts_by_key, key=_row_order):
        client, direction = key
        counts = counts_by_key[key]
        rows.append(Row(start_s, end_s, address_text(client), direction, sum(counts), *counts))
    return rows
