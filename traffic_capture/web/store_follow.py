"""`serve` over a store without a CSV (a history, a ClickHouse fleet): the web's memory follows
the store's finest windows (as `csv_follow` follows a CSV), so that the event stream, and with
it the page's live spans, work as over a CSV: the last --web-history seconds at start, then
the new windows at each look.

Rows can reach a window the memory already took: late packets a history's next flush brings,
or, in a fleet, another server's batch of the same window (each server sends every few
seconds, not all at once). Each look reads again the last LATE_SECONDS before the newest
window taken, and a window whose rows grew comes again with the growth only, as a window
closed again (the memory adds it to the first rows, the stream sends it as `start.1`). Rows
later than that reach the answers over the store, not the memory. Pure but for the Reader it
asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from traffic_capture.queries import CLASS_COUNT, EVERYTHING_S, Reader, TimeRange

# A fleet's sender sends a batch every 5 s by default (10-15 s for a thousand servers), and a
# history flushes every 30 s: rows later than this after their window are not looked for.
LATE_SECONDS = 60

Key = tuple[str, bool]  # client, inbound


@dataclass(frozen=True)
class HeldWindow:
    """A window as the memory takes it (MemoryStore.add_window's arguments)."""

    start_s: int
    end_s: int
    clients: Sequence[str]
    inbound: np.ndarray
    counts: np.ndarray


def _sums(clients: Sequence[str], inbound: np.ndarray, counts: np.ndarray,
          into: dict[Key, np.ndarray] | None = None) -> dict[Key, np.ndarray]:
    """A window's rows by client and direction (rows of one key added up)."""
    found = {} if into is None else into
    for client, way, row in zip(clients, inbound.tolist(), counts, strict=True):
        key = (client, bool(way))
        held = found.get(key)
        found[key] = row.copy() if held is None else held + row
    return found


def _window(start_s: int, end_s: int, rows: dict[Key, np.ndarray]) -> HeldWindow:
    keys = list(rows)
    counts = np.array([rows[key] for key in keys], dtype=np.int64).reshape(-1, CLASS_COUNT)
    return HeldWindow(start_s, end_s, [client for client, _ in keys],
                      np.array([way for _, way in keys], dtype=bool), counts)


class StoreFollower:
    """The store's windows of `window_seconds` (the memory's length) not taken yet, and what
    was added to those taken in the last `late_seconds`."""

    def __init__(self, store: Reader, window_seconds: int,
                 late_seconds: int = LATE_SECONDS) -> None:
        self.store = store
        self.window_seconds = window_seconds
        self.late_seconds = late_seconds
        self.taken_to: int | None = None  # the end of the newest window taken
        self.followed_from = 0  # the first look's start
        self._taken: dict[int, dict[Key, np.ndarray]] = {}  # recent windows' rows, by start

    def poll(self, history_seconds: int) -> list[HeldWindow]:
        """The windows after those taken (the first time, those of the last
        `history_seconds` before the newest), then the growth of recent ones taken."""
        held = next((step for step in self.store.resolutions()
                     if step.seconds == self.window_seconds), None)
        if held is None or held.last_end_s is None:
            return []
        if self.taken_to is None:
            since = self.followed_from = held.last_end_s - history_seconds
        else:  # never before the first look's start: those windows were never taken
            since = max(self.taken_to - self.late_seconds, self.followed_from)
        rows = self.store.window_rows(TimeRange(since, EVERYTHING_S), self.window_seconds)
        now: dict[int, tuple[int, dict[Key, np.ndarray]]] = {}
        bounds = rows.row_bounds.tolist()
        for i, (start, end) in enumerate(zip(rows.starts.tolist(), rows.ends.tolist(),
                                             strict=True)):
            if start < since:
                continue
            first_row, stop = bounds[i], bounds[i + 1]
            window = now.setdefault(start, (end, {}))
            _sums(rows.clients[first_row:stop], rows.inbound[first_row:stop],
                  rows.counts[first_row:stop], window[1])
        found = []
        for start, (end, window_rows) in sorted(now.items()):
            before = self._taken.get(start)
            if before is None:  # new, or a whole window late
                found.append(_window(start, end, window_rows))
            else:
                grown = {key: row - before.get(key, 0) for key, row in window_rows.items()}
                grown = {key: row for key, row in grown.items()
                         if row.any() and (row >= 0).all()}
                if grown:
                    found.append(_window(start, end, grown))
            self._taken[start] = window_rows
        if now:
            self.taken_to = max(self.taken_to or 0, max(end for end, _ in now.values()))
        elif self.taken_to is None:
            self.taken_to = held.last_end_s
        assert self.taken_to is not None
        self._taken = {start: sums for start, sums in self._taken.items()
                       if start >= self.taken_to - self.late_seconds}
        return found
