"""The history store (--history PATH) as the web reads it: a `queries.Reader` that answers
empty until the store exists (the daemon's history output creates it on its first flush, and
`serve --history` may start first), then reads it through `history.reader.HistoryReader`.

DuckDB and pandas are imported when the store is first read, not with this module.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from traffic_capture.history.layout import LOCK
from traffic_capture.queries import (
    ClientTotals,
    Coverage,
    Resolution,
    ServiceTotals,
    TimeRange,
    WindowRows,
)

if TYPE_CHECKING:
    from traffic_capture.history.reader import HistoryReader

Warn = Callable[[str], None]
# What the store holds at each resolution is looked up (a listing of its folders, ~10 ms for
# a month) at most this often: an API call asks it three times, the status once. A look a
# second old is still a right one to cut a range by (web/tiered.py): the history only grows
# at its new end, and each query lists its parts afresh.
HELD_SECONDS = 1.0


def not_yet_a_store(path: Path) -> bool:
    """No folder yet, or one its writer has only just made (nothing in it but the lock): a
    store still to come, not a mistake."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return True
    except NotADirectoryError:
        return False  # a file: HistoryReader says so in one line
    return set(names) <= {LOCK}


class StoredHistory:
    """queries.Reader over the history at `path`, empty while the store does not exist."""

    def __init__(self, path: Path, warn: Warn | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._warn = warn
        self._clock = clock
        self._reader: HistoryReader | None = None
        self._lock = threading.Lock()
        self._held: tuple[float, tuple[Resolution, ...]] | None = None

    def check(self) -> None:
        """At start: DuckDB installed, and the path a history if it is anything (one line
        each, a HistoryError); a store still to come is fine."""
        from traffic_capture.history import duck

        duck.duckdb()
        self.reader()

    def reader(self) -> HistoryReader | None:
        """The store's reader, opened once the store exists (None until then)."""
        if self._reader is None and not not_yet_a_store(self.path):
            from traffic_capture.history.reader import HistoryReader

            with self._lock:
                if self._reader is None:
                    self._reader = (HistoryReader(self.path) if self._warn is None
                                    else HistoryReader(self.path, warn=self._warn))
        return self._reader

    def summary(self) -> dict[str, Any]:
        """/api/status's `history_store`: the store, and what it holds at each resolution."""
        return {"path": str(self.path), "exists": self.reader() is not None,
                "resolutions": [{"resolution": held.seconds, "from": held.first_start_s,
                                 "to": held.last_end_s} for held in self.resolutions()]}

    # -- queries.Reader

    def resolutions(self) -> tuple[Resolution, ...]:
        """What the store holds, as looked up at most HELD_SECONDS ago."""
        now = self._clock()
        held = self._held
        if held is None or now - held[0] >= HELD_SECONDS:
            reader = self.reader()
            held = self._held = (now, () if reader is None else reader.resolutions())
        return held[1]

    def coverage(self, when: TimeRange, resolution: int) -> Coverage:
        reader = self.reader()
        return Coverage(0) if reader is None else reader.coverage(when, resolution)

    def client_totals(self, when: TimeRange, resolution: int) -> ClientTotals:
        reader = self.reader()
        return (ClientTotals.empty(resolution) if reader is None
                else reader.client_totals(when, resolution))

    def window_rows(self, when: TimeRange, resolution: int, client: str | None = None,
                    last_windows: int | None = None) -> WindowRows:
        reader = self.reader()
        return (WindowRows.empty(resolution) if reader is None
                else reader.window_rows(when, resolution, client, last_windows))

    def service_totals(self, when: TimeRange, client: str | None = None
                       ) -> ServiceTotals | None:
        return None  # the history keeps the CSV's classes, no ports
