"""Reading a history while its writer writes: queries.Reader over the chosen Parquet parts.

Every query lists the folder, chooses the parts that hold each row once (layout.choose), and
has an in-memory DuckDB read them. A part deleted between the listing and the read (merged
or past its keep) makes the query list again and retry; a part that cannot be read (damaged,
truncated) is named in one warning and skipped from then on.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from traffic_capture.errors import PROG
from traffic_capture.history import duck
from traffic_capture.history.layout import Part, choose, list_store
from traffic_capture.history.store import HistoryError, check_folder
from traffic_capture.queries import (
    CLASS_COUNT,
    ClientTotals,
    Coverage,
    Resolution,
    ServiceTotals,
    TimeRange,
    WindowRows,
)
from traffic_capture.rules import IN

# Listings and reads a query tries before giving up: each retry follows a part that vanished
# under it, which takes a merge or a deletion finishing in between (seconds apart).
ATTEMPTS = 8
FRAME_COLUMNS: tuple[str, ...] = ("window_start", "window_end", "client_ip", "direction",
                                  "total_bytes", *duck.BYTE_COLUMNS)


def _stderr_warning(message: str) -> None:
    sys.stderr.write(f"{PROG}: warning: {message}\n")


class HistoryReader:
    """queries.Reader over the history at PATH (rows of every server, or of `server`)."""

    def __init__(self, path: str | Path, server: str | None = None,
                 warn: Callable[[str], None] = _stderr_warning) -> None:
        self.root = Path(path)
        self.server = server
        self._warn = warn
        duck.duckdb()
        check_folder(self.root, create=False)
        self._con = duck.connect()
        self._lock = threading.Lock()
        self.damaged: dict[Path, str] = {}  # part -> why it was skipped

    # -- which parts

    def _parts(self, level_s: int, when: TimeRange | None) -> list[Part]:
        parts = choose(list_store(self.root, level_s).parts).of_level(level_s)
        return [part for part in parts if part.path not in self.damaged
                and (when is None or part.holds_any_of(when.start_s, when.end_s))]

    def _fetch(self, level_s: int, when: TimeRange | None,
               sql_of: Callable[[str], str]) -> dict[str, np.ndarray] | None:
        """Run a query over the parts of a level holding the range; None: no part does."""
        module = duck.duckdb()
        for _attempt in range(ATTEMPTS):
            parts = self._parts(level_s, when)
            if not parts:
                return None
            with self._lock:
                cursor = self._con.cursor()
            try:
                return cursor.execute(sql_of(duck.parts_source([p.path for p in parts]))
                                      ).fetchnumpy()
            except module.Error as exc:
                if all(part.path.exists() for part in parts) and not self._find_damaged(
                        parts, exc):
                    raise HistoryError(f"history {self.root}: {_first_line(exc)}") from None
            finally:
                cursor.close()
        raise HistoryError(f"history {self.root}: parts kept changing while reading;"
                           " try again")

    def _find_damaged(self, parts: list[Part], error: Exception) -> bool:
        """After a failed read: the parts that cannot be read alone are set aside (one
        warning each). False when none is at fault."""
        found = False
        with self._lock:
            cursor = self._con.cursor()
        try:
            for part in parts:
                try:
                    cursor.execute(f"SELECT count(*) FROM {duck.parts_source([part.path])}"
                                   ).fetchall()
                except duck.duckdb().Error as exc:
                    if not part.path.exists():
                        continue
                    self.damaged[part.path] = _first_line(exc)
                    self._warn(f"history: skipping damaged part {part.path}:"
                               f" {_first_line(exc)}")
                    found = True
        finally:
            cursor.close()
        return found

    def _where(self, level_s: int, when: TimeRange | None, client: str | None = None
               ) -> str:
        """Rows of windows overlapping `when` (on window_start alone, so that Parquet's
        row-group statistics skip the rest)."""
        conditions = ["TRUE"]
        if when is not None:
            conditions.append(f"window_start > {when.start_s - level_s}"
                              f" AND window_start < {when.end_s}")
        if client is not None:
            conditions.append(f"client_ip = {duck.literal(client)}")
        if self.server is not None:
            conditions.append(f"server = {duck.literal(self.server)}")
        return " AND ".join(conditions)

    # -- queries.Reader

    def resolutions(self) -> tuple[Resolution, ...]:
        listing = list_store(self.root)
        chosen = choose(listing.parts)
        held = []
        for level_s in listing.levels:
            parts = chosen.of_level(level_s)
            held.append(Resolution(
                level_s, min((part.first_start_s for part in parts), default=None),
                max((part.last_end_s for part in parts), default=None)))
        return tuple(held)

    def coverage(self, when: TimeRange, resolution: int) -> Coverage:
        where = self._where(resolution, when)
        span = self._fetch(resolution, when, lambda source: (
            f"SELECT count(DISTINCT window_start) AS windows, min(window_start) AS first,"
            f" max(window_start) + {resolution} AS last FROM {source} WHERE {where}"))
        if span is None or not int(span["windows"][0]):
            return Coverage(0)
        return Coverage(int(span["windows"][0]), int(span["first"][0]), int(span["last"][0]))

    def client_totals(self, when: TimeRange, resolution: int) -> ClientTotals:
        """One scan: the sums per client and direction, and (the grouping set of all rows)
        the windows they came from."""
        where = self._where(resolution, when)
        found = self._fetch(resolution, when, lambda source: (
            f"SELECT client_ip, direction = {duck.literal(IN)} AS inbound, {duck.SUMS},"
            f" count(DISTINCT window_start) AS windows, min(window_start) AS first,"
            f" max(window_start) + {resolution} AS last, GROUPING(client_ip) AS everything"
            f" FROM {source} WHERE {where}"
            f" GROUP BY GROUPING SETS ((client_ip, direction), ())"))
        if found is None:
            return ClientTotals.empty(resolution)
        overall = found["everything"].astype(bool)
        if not overall.any() or not int(found["windows"][overall][0]):
            return ClientTotals.empty(resolution)
        coverage = Coverage(int(found["windows"][overall][0]), int(found["first"][overall][0]),
                            int(found["last"][overall][0]))
        sums = {name: column[~overall] for name, column in found.items()}
        clients, row_of = np.unique(sums["client_ip"].astype(str), return_inverse=True)
        totals = np.zeros((len(clients), 2, CLASS_COUNT), dtype=np.int64)
        counts = np.column_stack([sums[name] for name in duck.BYTE_COLUMNS]).astype(np.int64)
        totals[row_of, np.where(sums["inbound"], 0, 1)] = counts
        order = np.lexsort((clients, -totals.sum(axis=(1, 2))))  # most bytes first
        return ClientTotals([str(c) for c in clients[order]], totals[order], resolution,
                            coverage)

    def window_rows(self, when: TimeRange, resolution: int, client: str | None = None,
                    last_windows: int | None = None) -> WindowRows:
        where = self._where(resolution, when, client)
        recent = "" if last_windows is None else (
            f" WHERE window_start >= (SELECT min(window_start) FROM (SELECT DISTINCT"
            f" window_start FROM in_range ORDER BY window_start DESC"
            f" LIMIT {max(int(last_windows), 0)}))")
        rows = self._fetch(resolution, when, lambda source: (
            f"WITH in_range AS (SELECT * FROM {source} WHERE {where})"
            f" SELECT window_start, client_ip, direction = {duck.literal(IN)} AS inbound,"
            f" {duck.SUMS} FROM in_range{recent}"
            f" GROUP BY window_start, client_ip, direction"
            f" ORDER BY window_start, client_ip, direction"))
        if rows is None or (last_windows is not None and last_windows <= 0):
            return WindowRows.empty(resolution)
        start = rows["window_start"].astype(np.int64)
        starts, first_rows = np.unique(start, return_index=True)  # rows come by window_start
        return WindowRows(starts, starts + resolution,
                          np.append(first_rows, len(start)).astype(np.int64),
                          [str(c) for c in rows["client_ip"]], rows["inbound"].astype(bool),
                          np.column_stack([rows[name] for name in duck.BYTE_COLUMNS]
                                          ).astype(np.int64).reshape(-1, CLASS_COUNT),
                          resolution)

    def service_totals(self, when: TimeRange, client: str | None = None
                       ) -> ServiceTotals | None:
        return None  # the history keeps the CSV's classes; ports are live only

    # -- for excel --history and report --history

    def rows_frame(self, when: TimeRange, resolution: int, utc: bool = False,
                   client: str | None = None) -> pd.DataFrame:
        """The rows of a range at a resolution as the Excel commands read a CSV
        (excel.read.read_traffic): the CSV's columns, times as local (or UTC) date-times."""
        rows = self.window_rows(when, resolution, client)
        counts = rows.counts
        frame: dict[str, Any] = {
            "window_start": date_times(rows.window_start, utc),
            "window_end": date_times(rows.window_end, utc),
            "client_ip": pd.Series(list(rows.clients), dtype=object).astype(str),
            "direction": np.where(rows.inbound, IN, "out"),
            "total_bytes": counts.sum(axis=1),
        }
        for index, name in enumerate(duck.BYTE_COLUMNS):
            frame[name] = counts[:, index]
        return pd.DataFrame(frame, columns=list(FRAME_COLUMNS))


def date_times(epochs: np.ndarray, utc: bool) -> np.ndarray:
    """Epoch seconds -> naive date-times in local time (TZ honoured, as the CSV writes them)
    or UTC; each distinct time converted once."""
    values, index = np.unique(epochs, return_inverse=True)
    zone = timezone.utc if utc else None
    converted = np.array([
        np.datetime64(datetime.fromtimestamp(int(value), zone).replace(tzinfo=None), "ns")
        for value in values.tolist()], dtype="datetime64[ns]")
    return converted[index] if len(values) else np.zeros(0, dtype="datetime64[ns]")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
