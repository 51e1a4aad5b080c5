"""The questions every store of closed windows answers, whatever holds them: the web's memory
of the last hour, the DuckDB history of months, a ClickHouse fleet (which also answers per
server: `FleetReader`).

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
# Further than any window from 1970, either way: the bounds of TimeRange.everything().
EVERYTHING_S = 2**62


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

    @classmethod
    def everything(cls) -> TimeRange:
        """Every window held, whenever it is."""
        return cls(-EVERYTHING_S, EVERYTHING_S)


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
    covers the start (the range reaches before everything held), the same over the part of
    the range held (from the oldest window held: "the last week" of a store two days old is
    those two days, hourly or by the minute, not 35,000 five-second windows); when none is
    fine enough, the finest that covers the start. `held` is finest first and not empty."""
    if not held:
        raise ValueError("a store holds at least one resolution")
    covering = [r for r in held if r.covers(when)]
    if not covering:
        reached = [r.first_start_s for r in held if r.first_start_s is not None]
        if not reached:
            return held[0]
        when = TimeRange(min(reached), max(when.end_s, min(reached) + 1))
        covering = [r for r in held if r.covers(when)]
    target = when.seconds / max(points, 1)
    fine_enough = [r for r in covering if r.seconds <= target]
    return fine_enough[-1] if fine_enough else covering[0]


@dataclass(frozen=True)
class Coverage:
    """The windows held that overlap a range: how many, where the first starts and where the
    last ends (None when there are none). An answer says it, so that "the last hour" of a
    store holding ten minutes says so. A store that keeps apart the rows late packets added
    to a window after it closed counts that window again."""

    windows: int
    first_start_s: int | None = None
    last_end_s: int | None = None


@dataclass(frozen=True)
class ClientTotals:
    """Bytes per client over a range: sums[i, 0] in, sums[i, 1] out, each (classes,). A client
    without bytes in the range may be listed, with zeros."""

    clients: Sequence[str]
    sums: np.ndarray  # int64 (clients, 2, classes)
    resolution: int  # seconds of the windows summed
    coverage: Coverage  # the windows summed

    @classmethod
    def empty(cls, resolution: int) -> ClientTotals:
        return cls([], np.zeros((0, 2, CLASS_COUNT), dtype=np.int64), resolution, Coverage(0))


@dataclass(frozen=True)
class WindowRows:
    """Rows as the CSV has them (one per window, client and direction), window by window in
    the order they closed (oldest first). Window i is [starts[i], ends[i]) and its rows are
    those from row_bounds[i] to row_bounds[i + 1]. A window without rows is listed too (unless
    a client was asked for); a store that keeps apart the rows late packets added after a
    window closed lists that window again, with those rows, where it closed (as the CSV has
    them)."""

    starts: np.ndarray  # int64 (windows,) epoch seconds
    ends: np.ndarray  # int64 (windows,)
    row_bounds: np.ndarray  # int64 (windows + 1,)
    clients: Sequence[str]  # per row
    inbound: np.ndarray  # bool (rows,)
    counts: np.ndarray  # int64 (rows, classes)
    resolution: int

    def __len__(self) -> int:
        return len(self.clients)

    @property
    def window_start(self) -> np.ndarray:
        """Each row's window start."""
        return np.repeat(self.starts, np.diff(self.row_bounds))

    @property
    def window_end(self) -> np.ndarray:
        return np.repeat(self.ends, np.diff(self.row_bounds))

    @classmethod
    def empty(cls, resolution: int) -> WindowRows:
        none = np.zeros(0, dtype=np.int64)
        return cls(none, none, np.zeros(1, dtype=np.int64), [], np.zeros(0, dtype=bool),
                   np.zeros((0, CLASS_COUNT), dtype=np.int64), resolution)


@dataclass(frozen=True)
class ServiceTotals:
    """Bytes per service of the server's port (rules.SERVICES names), in and out; a service
    without bytes may be listed, with zeros."""

    services: Sequence[str]
    bytes_in: np.ndarray  # int64
    bytes_out: np.ndarray  # int64


class Reader(Protocol):
    """A store of closed windows, read by range. Safe to call from several threads."""

    def resolutions(self) -> tuple[Resolution, ...]:
        """What is held at each resolution, finest first (the finest is the window length)."""
        ...

    def coverage(self, when: TimeRange, resolution: int) -> Coverage:
        """The windows of that resolution held that overlap `when`."""
        ...

    def client_totals(self, when: TimeRange, resolution: int) -> ClientTotals:
        """Every client's bytes over the windows of that resolution overlapping `when`."""
        ...

    def window_rows(self, when: TimeRange, resolution: int, client: str | None = None,
                    last_windows: int | None = None) -> WindowRows:
        """The rows of the windows overlapping `when`: of the last `last_windows` of them
        only, if given; then of one client only, if given (and only the windows holding its
        rows)."""
        ...

    def service_totals(self, when: TimeRange, client: str | None = None
                       ) -> ServiceTotals | None:
        """Bytes per server-side service, or None when the store has no ports (a CSV, the
        history): only live packets carry them."""
        ...


@dataclass(frozen=True)
class ServerSpan:
    """A server of a fleet and the windows held of it: from the start of the first to the end
    of the last (None: none held)."""

    name: str
    first_start_s: int | None
    last_end_s: int | None


@dataclass(frozen=True)
class ServerTotals:
    """Bytes per server over a range: sums[i, 0] in, sums[i, 1] out, each (classes,); servers
    by name."""

    servers: Sequence[str]
    sums: np.ndarray  # int64 (servers, 2, classes)
    resolution: int
    coverage: Coverage


class FleetReader(Reader, Protocol):
    """A store of many servers' windows: as a Reader, every server's rows summed (a client's
    bytes on two servers are added up); per server through `of_servers`."""

    def servers(self) -> list[ServerSpan]:
        """Every server held, by name."""
        ...

    def server_totals(self, when: TimeRange, resolution: int) -> ServerTotals:
        """Each server's bytes over the windows of that resolution overlapping `when`."""
        ...

    def of_servers(self, servers: Sequence[str] | None) -> FleetReader:
        """The same store read for these servers only (None: all of them)."""
        ...
