"""The questions every store of closed windows answers, whatever holds them: the web's memory
of the last hour, the DuckDB history of months, a ClickHouse fleet.

A store implements `Reader` (a few range aggregates, in numpy columns); the web's API, `excel`
and `report` ask through it and never know which store, or which SQL, answered. The shapes
are the CSV's: per client and direction, the five classes' bytes.

Times are epoch seconds (UTC). A `TimeRange` selects the windows that overlap it: a window
[start, end) is in it when end > range.start_s and start < range.end_s. A store may hold its
windows at several resolutions (5 s, 1 min, 1 h): the caller picks one with
`pick_resolution`, as Akvorado's console does, and each answer says which it used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from traffic_capture.rules import CLASSES

CLASS_COUNT = len(CLASSES)
# A chart wants about this many points: the resolution picked gives at least that many steps
# over the range when the store holds one fine enough.
DEFAULT_POINTS = 200


@dataclass(frozen=True)
class TimeRange:
    """Windows overlapping [start_s, end_s)."""

    start_s: int
    end_s: int

    @property
    def seconds(self) -> int:
        return self.end_s - self.start_s

    @classmethod
    def last(cls, seconds: int, newest_end_s: int) -> TimeRange:
        """"The last S seconds", counted back from the newest window held (live, that is now):
        a capture file or an old CSV answers like a live capture."""
        return cls(newest_end_s - seconds, newest_end_s)


@dataclass(frozen=True)
class Resolution:
    """What a store holds at one step: windows of `seconds`, the first starting at
    `first_start_s` and the last ending at `last_end_s` (None: none held yet)."""

    seconds: int
    first_start_s: int | None = None
    last_end_s: int | None = None

    def covers(self, when: TimeRange) -> bool:
        return self.first_start_s is not None and self.first_start_s <= when.start_s


def pick_resolution(held: Sequence[Resolution], when: TimeRange,
                    points: int = DEFAULT_POINTS) -> Resolution:
    """The coarsest resolution whose step is at most range / points and whose oldest window
    still covers the range's start (Akvorado's console, console/clickhouse.go). When none
    covers the start (the range reaches before everything held), the one reaching furthest
    back, finest among equals; when none is fine enough, the finest that covers the start.
    `held` is finest first and not empty."""
    if not held:
        raise ValueError("a store holds at least one resolution")
    target = when.seconds / max(points, 1)
    covering = [r for r in held if r.covers(when)]
    if not covering:
        reached = [r for r in held if r.first_start_s is not None]
        if not reached:
            return held[0]
        oldest = min(r.first_start_s for r in reached if r.first_start_s is not None)
        return next(r for r in reached if r.first_start_s == oldest)
    fine_enough = [r for r in covering if r.seconds <= target]
    return fine_enough[-1] if fine_enough else covering[0]


@dataclass(frozen=True)
class ClientTotals:
    """Bytes per client over a range: sums[i, 0] in, sums[i, 1] out, each (classes,)."""

    clients: Sequence[str]
    sums: np.ndarray  # int64 (clients, 2, classes)
    resolution: int  # seconds of the windows summed
    windows: int  # windows (at that resolution) that held rows in the range
    first_start_s: int | None  # the first and last of those windows: what was really summed
    last_end_s: int | None

    @classmethod
    def empty(cls, resolution: int) -> ClientTotals:
        return cls([], np.zeros((0, 2, CLASS_COUNT), dtype=np.int64), resolution, 0, None,
                   None)


@dataclass(frozen=True)
class WindowRows:
    """Rows as the CSV has them (one per window, client and direction), oldest window first."""

    window_start: np.ndarray  # int64 epoch seconds
    window_end: np.ndarray  # int64
    clients: Sequence[str]
    inbound: np.ndarray  # bool
    counts: np.ndarray  # int64 (rows, classes)
    resolution: int

    def __len__(self) -> int:
        return len(self.clients)


@dataclass(frozen=True)
class ServiceTotals:
    """Bytes per service of the server's port (rules.SERVICES names), in and out."""

    services: Sequence[str]
    bytes_in: np.ndarray  # int64
    bytes_out: np.ndarray  # int64


class Reader(Protocol):
    """A store of closed windows, read by range. Safe to call from several threads."""

    def resolutions(self) -> tuple[Resolution, ...]:
        """What is held at each resolution, finest first (the finest is the window length)."""
        ...

    def client_totals(self, when: TimeRange, resolution: int) -> ClientTotals:
        """Every client's bytes over the windows of that resolution overlapping `when`."""
        ...

    def window_rows(self, when: TimeRange, resolution: int, client: str | None = None,
                    last_windows: int | None = None) -> WindowRows:
        """The rows of the windows overlapping `when` (of one client only, if given; of the
        last `last_windows` windows only, if given)."""
        ...

    def service_totals(self, when: TimeRange, client: str | None = None
                       ) -> ServiceTotals | None:
        """Bytes per server-side service, or None when the store has no ports (a CSV, the
        history): only live packets carry them."""
        ...
