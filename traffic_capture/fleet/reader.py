"""Reading the fleet: queries.Reader over its ClickHouse tables, of every server or of some.

One table per resolution (traffic_5s, traffic_1m, traffic_1h...): a query names the
resolution it reads (the caller picks it with queries.pick_resolution, from resolutions()),
and always sums, since a rollup's SummingMergeTree adds up its rows only when it merges,
lazily, and many servers' rows of one client are summed into the fleet's. Every value is a
query parameter; the only names put in the text are the database (checked when the schema
was found) and the tables of the resolutions it holds.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from traffic_capture.fleet.migrate import read_state
from traffic_capture.fleet.schema import (
    BYTE_COLUMNS,
    RAW_TABLE,
    SCHEMA_VERSION,
    SERVERS_TABLE,
    FleetError,
    check_database,
    level_of_table,
)
from traffic_capture.history.reader import FRAME_COLUMNS, date_times
from traffic_capture.queries import (
    CLASS_COUNT,
    ClientTotals,
    Coverage,
    Resolution,
    ServerSpan,
    ServerTotals,
    ServiceTotals,
    TimeRange,
    WindowRows,
)
from traffic_capture.rules import IN, OUT

__all__ = ["ClickHouseReader", "ServerSpan"]

# DateTime's range: a bound outside it selects everything on that side.
LAST_DATETIME = 2**32 - 1
SUMS = ", ".join(f"toInt64(sum({name})) AS {name}" for name in BYTE_COLUMNS)


class ClickHouseReader:
    """queries.Reader over the fleet's tables, through a clickhouse-connect client whose
    database is the fleet's (or `database`): the rows of every server summed, or of
    `servers` only. Safe to call from several threads (one query at a time)."""

    def __init__(self, client: Any, servers: Sequence[str] | None = None,
                 database: str | None = None) -> None:
        self.client = client
        self.database = check_database(database or client.database or "")
        self.servers_read: tuple[str, ...] | None = (None if servers is None
                                                     else tuple(servers))
        self._lock = threading.Lock()
        state = read_state(client, self.database)
        if RAW_TABLE not in state.tables or state.version < SCHEMA_VERSION:
            found = ("no traffic-capture schema" if RAW_TABLE not in state.tables else
                     f"schema version {state.version}, older than this traffic-capture's")
            raise FleetError(f"database {self.database} holds {found}: run `traffic-capture"
                             " clickhouse init URL`")
        if state.version > SCHEMA_VERSION:
            raise FleetError(f"database {self.database} is at schema version {state.version},"
                             f" newer than this traffic-capture's ({SCHEMA_VERSION}): upgrade"
                             " traffic-capture")

    def of_servers(self, servers: Sequence[str] | None) -> ClickHouseReader:
        """The same fleet read for other servers (None: all), on the same client."""
        reader = object.__new__(ClickHouseReader)
        reader.client, reader.database, reader._lock = self.client, self.database, self._lock
        reader.servers_read = None if servers is None else tuple(servers)
        return reader

    # -- queries

    def _columns(self, width: int, sql: str, **parameters: Any) -> list[list[Any]]:
        """A query's `width` columns (empty ones when it has no row); a ClickHouse error as
        its one line."""
        if self.servers_read is not None:
            parameters["servers"] = list(self.servers_read)
        try:
            with self._lock:
                result = self.client.query(sql, parameters=parameters)
        except Exception as error:
            if type(error).__module__.startswith("clickhouse_connect"):
                from traffic_capture.fleet.connect import first_line

                raise FleetError(f"ClickHouse: {first_line(error)}") from None
            raise
        columns = result.result_columns
        return [list(column) for column in columns] if columns else [[] for _ in range(width)]

    def _table(self, resolution: int) -> str:
        held = self._level_tables()
        if resolution not in held:
            raise ValueError(f"the fleet holds no {resolution}-second table")
        return f"{self.database}.{held[resolution]}"

    def _level_tables(self) -> dict[int, str]:
        # A cluster's tables of these names are Distributed ones over each shard's own.
        names = self._columns(1, "SELECT name FROM system.tables WHERE database ="
                              " {database:String} AND (engine LIKE '%MergeTree'"
                              " OR engine = 'Distributed')", database=self.database)[0]
        tables = {}
        for name in names:
            seconds = level_of_table(str(name))
            if seconds is not None:
                tables[seconds] = str(name)
        return dict(sorted(tables.items()))

    def _where(self, when: TimeRange | None, resolution: int, client: str | None = None
               ) -> tuple[str, dict[str, Any]]:
        """Rows of windows overlapping `when` (on window_start alone: the sorting key's
        second column), of the servers read, of one client if given."""
        conditions: list[str] = ["1"]
        parameters: dict[str, Any] = {}
        if when is not None:
            low, high = when.start_s - resolution, when.end_s
            if low >= 0:
                conditions.append("window_start > toDateTime({low:Int64}, 'UTC')")
                parameters["low"] = min(low, LAST_DATETIME)
            if high <= LAST_DATETIME:
                conditions.append("window_start < toDateTime({high:Int64}, 'UTC')")
                parameters["high"] = max(high, 0)
        if self.servers_read is not None:
            conditions.append("server IN {servers:Array(String)}")
        if client is not None:
            conditions.append("client_ip = {client:String}")
            parameters["client"] = client
        return " AND ".join(conditions), parameters

    # -- queries.Reader

    def resolutions(self) -> tuple[Resolution, ...]:
        """What each table holds. Over every server, from the parts' minimum and maximum
        (ClickHouse answers min/max of the partition key without reading rows); over some
        servers, clamped to their first and last windows (exact when each server sent from
        its first window on, the usual case)."""
        held = []
        for seconds, name in self._level_tables().items():
            count, first, last = (column[0] for column in self._columns(
                3, f"SELECT count(), toUnixTimestamp(min(window_start)),"
                f" toUnixTimestamp(max(window_start)) FROM {self.database}.{name}"))
            if not count:
                held.append(Resolution(seconds))
                continue
            first_s, last_end_s = int(first), int(last) + seconds
            if self.servers_read is not None:
                spans = [span for span in self.servers()
                         if span.name in self.servers_read and span.first_start_s is not None
                         and span.last_end_s is not None]
                if not spans:
                    held.append(Resolution(seconds))
                    continue
                first_s = max(first_s, min(span.first_start_s or 0 for span in spans)
                              // seconds * seconds)
                last_end_s = min(last_end_s, -(-max(span.last_end_s or 0 for span in spans)
                                               // seconds) * seconds)
                if last_end_s <= first_s:
                    held.append(Resolution(seconds))
                    continue
            held.append(Resolution(seconds, first_s, last_end_s))
        return tuple(held)

    def coverage(self, when: TimeRange, resolution: int) -> Coverage:
        where, parameters = self._where(when, resolution)
        windows, first, last = (column[0] for column in self._columns(
            3, f"SELECT uniqExact(window_start), toUnixTimestamp(min(window_start)),"
            f" toUnixTimestamp(max(window_start)) FROM {self._table(resolution)}"
            f" WHERE {where}", **parameters))
        if not windows:
            return Coverage(0)
        return Coverage(int(windows), int(first), int(last) + resolution)

    def client_totals(self, when: TimeRange, resolution: int) -> ClientTotals:
        where, parameters = self._where(when, resolution)
        columns = self._columns(
            2 + CLASS_COUNT, f"SELECT client_ip, direction = '{IN}' AS inbound, {SUMS}"
            f" FROM {self._table(resolution)} WHERE {where} GROUP BY client_ip, direction",
            **parameters)
        if not columns[0]:
            return ClientTotals.empty(resolution)
        clients, row_of = np.unique(np.array(columns[0], dtype=object).astype(str),
                                    return_inverse=True)
        totals = np.zeros((len(clients), 2, CLASS_COUNT), dtype=np.int64)
        counts = np.array(columns[2:], dtype=np.int64).T
        totals[row_of, np.where(np.array(columns[1], dtype=bool), 0, 1)] = counts
        order = np.lexsort((clients, -totals.sum(axis=(1, 2))))  # most bytes first
        return ClientTotals([str(c) for c in clients[order]], totals[order], resolution,
                            self.coverage(when, resolution))

    def window_rows(self, when: TimeRange, resolution: int, client: str | None = None,
                    last_windows: int | None = None) -> WindowRows:
        if last_windows is not None and last_windows <= 0:
            return WindowRows.empty(resolution)
        where, parameters = self._where(when, resolution, client)
        table = self._table(resolution)
        recent = ""
        if last_windows is not None:
            recent = (f" AND window_start >= (SELECT min(window_start) FROM (SELECT DISTINCT"
                      f" window_start FROM {table} WHERE {where} ORDER BY window_start DESC"
                      " LIMIT {last_windows:UInt64}))")
            parameters["last_windows"] = int(last_windows)
        columns = self._columns(
            3 + CLASS_COUNT, f"SELECT toUnixTimestamp(window_start) AS start, client_ip,"
            f" direction = '{IN}' AS inbound, {SUMS} FROM {table} WHERE {where}{recent}"
            f" GROUP BY window_start, client_ip, direction"
            f" ORDER BY window_start, client_ip, direction", **parameters)
        if not columns[0]:
            return WindowRows.empty(resolution)
        start = np.array(columns[0], dtype=np.int64)
        starts, first_rows = np.unique(start, return_index=True)  # rows come by window_start
        return WindowRows(starts, starts + resolution,
                          np.append(first_rows, len(start)).astype(np.int64),
                          [str(c) for c in columns[1]], np.array(columns[2], dtype=bool),
                          np.array(columns[3:], dtype=np.int64).T.reshape(-1, CLASS_COUNT),
                          resolution)

    def service_totals(self, when: TimeRange, client: str | None = None
                       ) -> ServiceTotals | None:
        return None  # the fleet keeps the CSV's classes; ports are live only

    # -- the fleet's own (queries.FleetReader)

    def server_totals(self, when: TimeRange, resolution: int) -> ServerTotals:
        """Each server's bytes (of those read) over the range, by name."""
        where, parameters = self._where(when, resolution)
        columns = self._columns(
            2 + CLASS_COUNT, f"SELECT server, direction = '{IN}' AS inbound, {SUMS}"
            f" FROM {self._table(resolution)} WHERE {where} GROUP BY server, direction",
            **parameters)
        names = sorted({str(name) for name in columns[0]})
        sums = np.zeros((len(names), 2, CLASS_COUNT), dtype=np.int64)
        if names:
            row_of = np.searchsorted(names, np.array(columns[0], dtype=object).astype(str))
            sums[row_of, np.where(np.array(columns[1], dtype=bool), 0, 1)] = np.array(
                columns[2:], dtype=np.int64).T
        return ServerTotals(names, sums, resolution, self.coverage(when, resolution))

    def servers(self) -> list[ServerSpan]:
        """Every server of the fleet (whichever are read), by name, with the first and last
        window held of it. From traffic_servers, so that the picker reads a row per server,
        not the rows; a first window older than every table holds (past its keep) is moved
        to the oldest window held."""
        names, firsts, lasts = self._columns(
            3, f"SELECT server, toUnixTimestamp(min(first_start)), toUnixTimestamp(max(last_end))"
            f" FROM {self.database}.{SERVERS_TABLE} GROUP BY server ORDER BY server")
        if not names:
            return []
        oldest = min((held.first_start_s for held in self.of_servers(None).resolutions()
                      if held.first_start_s is not None), default=None)
        spans = []
        for name, first, last in zip(names, firsts, lasts, strict=True):
            first_s = int(first) if oldest is None else max(int(first), oldest)
            spans.append(ServerSpan(str(name), first_s, max(int(last), first_s)))
        return spans

    def rows_frame(self, when: TimeRange, resolution: int, utc: bool = False,
                   client: str | None = None, server_column: bool = False) -> pd.DataFrame:
        """The rows of a range at a resolution as the Excel commands read a CSV
        (excel.read.read_traffic): the CSV's columns, times as local (or UTC) date-times;
        with `server_column`, a row per server too, its name in a first column `server`."""
        if not server_column:
            rows = self.window_rows(when, resolution, client)
            servers: list[str] | None = None
            starts, clients, inbound, counts = (rows.window_start, list(rows.clients),
                                                rows.inbound, rows.counts)
        else:
            where, parameters = self._where(when, resolution, client)
            columns = self._columns(
                4 + CLASS_COUNT, f"SELECT server, toUnixTimestamp(window_start), client_ip,"
                f" direction = '{IN}', {SUMS} FROM {self._table(resolution)} WHERE {where}"
                f" GROUP BY server, window_start, client_ip, direction"
                f" ORDER BY window_start, server, client_ip, direction", **parameters)
            servers = [str(name) for name in columns[0]]
            starts = np.array(columns[1], dtype=np.int64)
            clients = [str(c) for c in columns[2]]
            inbound = np.array(columns[3], dtype=bool)
            counts = np.array(columns[4:], dtype=np.int64).T.reshape(-1, CLASS_COUNT)
        frame: dict[str, Any] = {}
        if servers is not None:
            frame["server"] = pd.Series(servers, dtype=object).astype(str)
        frame.update({
            "window_start": date_times(starts, utc),
            "window_end": date_times(starts + resolution, utc),
            "client_ip": pd.Series(clients, dtype=object).astype(str),
            "direction": np.where(inbound, IN, OUT),
            "total_bytes": counts.sum(axis=1),
        })
        for index, name in enumerate(BYTE_COLUMNS):
            frame[name] = counts[:, index]
        return pd.DataFrame(frame, columns=["server"] * (servers is not None)
                            + list(FRAME_COLUMNS))
