"""--clickhouse URL: every closed window's rows also go to one ClickHouse that many servers
share, each row with the name of the server it was counted on (--server-name).

Rows go in batches (every few seconds, or N rows) over HTTP as async inserts, each batch with
a deduplication token so that a retry never counts it twice. Every batch is first written to
the spool (clickhouse_spool.py), then sent, then removed: while ClickHouse is down, slow or
refusing, capture and the CSV go on, batches wait there (bounded: the oldest are given up and
counted) and are sent in order once it takes them again, also by the next run when this one
was killed. This module and clickhouse-connect (the `clickhouse` extra) are imported only with
--clickhouse (clickhouse.py states the options and builds this sink).
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any, NamedTuple

from traffic_capture.fleet.schema import INSERT_COLUMNS, RAW_SECONDS, RAW_TABLE, expired_at_insert
from traffic_capture.history.retention import Level
from traffic_capture.rules import RETRY_INTERVAL_SECONDS, STOP_RETRY_SECONDS
from traffic_capture.sinks import Notes, OutputContext, Sink
from traffic_capture.sinks.clickhouse_link import (
    BatchRejected,
    Store,
    StoreError,
    StoreUnavailable,
    TableInfo,
)
from traffic_capture.sinks.clickhouse_spool import Spool, SpooledBatch, new_identity

if TYPE_CHECKING:
    from traffic_capture.sinks.clickhouse_settings import ClickHouseSettings
    from traffic_capture.windows import ClosedWindow


class ClosedBatch(NamedTuple):
    """A closed batch before the spool took it (or while its disk refuses)."""

    data: bytes
    rows: int
    oldest: int  # its oldest window_start (epoch seconds)
    identity: str  # clickhouse_spool.new_identity: its deduplication token's part


MAX_RETRY_SECONDS = 30.0  # retries back off from RETRY_INTERVAL_SECONDS to this
REMIND_SECONDS = 600.0  # a long outage is said again this often, for the journal
SEND_SLICE_SECONDS = 1.0  # sending a backlog yields to new windows this often
# Closed batches held in memory while the spool's disk refuses them: past this, the oldest
# are given up (counted; the CSV has them).
MAX_UNSPOOLED_ROWS = 2_000_000
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def csv_field(text: str) -> str:
    """A text field of ClickHouse's CSV: quoted, quotes doubled."""
    return '"' + text.replace('"', '""') + '"'


def utc_text(epoch_seconds: float) -> str:
    """A DateTime('UTC') value as ClickHouse's CSV reads it."""
    return time.strftime(TIME_FORMAT, time.gmtime(epoch_seconds))


HEADER = ",".join(INSERT_COLUMNS) + "\n"


def window_lines(window: ClosedWindow, server_field: str) -> str:
    """A closed window's rows as CSVWithNames lines (the columns of INSERT_COLUMNS), from its
    sums."""
    prefix = f"{server_field},{utc_text(window.start_s)},{window.end_s - window.start_s},"
    template = prefix.replace("%", "%%") + "%s,%s,%d,%d,%d,%d,%d\n"
    return "".join([template % (client, direction, *numbers)
                    for client, direction, numbers in zip(
                        window.client_texts(), window.directions(),
                        window.sums.counts.tolist(), strict=True)])


def batch_starts(data: bytes) -> list[int]:
    """The window_start of every row of a batch (CSVWithNames), in epoch seconds."""
    import calendar
    import csv
    import io

    reader = csv.reader(io.StringIO(data.decode("utf-8")))
    next(reader, None)
    at = INSERT_COLUMNS.index("window_start")
    return [calendar.timegm(time.strptime(row[at], TIME_FORMAT)) for row in reader if row]


class ClickHouseSink(Sink):
    """Closed windows into batches, each through the spool to ClickHouse, in order, on this
    sink's own thread: a ClickHouse that hangs holds this thread (up to --clickhouse-timeout),
    never the capture or the CSV."""

    name = "clickhouse"
    unit = "rows"
    label = "clickhouse rows"

    def __init__(self, settings: ClickHouseSettings, context: OutputContext) -> None:
        super().__init__(context.warn, context.info)
        self.settings = settings
        self.url = settings.target.url
        self.store = Store(settings.target, settings.credentials, settings.timeout)
        self.spool = Spool(settings.spool, settings.spool_max, fsync=context.fsync)
        self.table: TableInfo | None = None  # known once ClickHouse answered
        self._server_field = csv_field(settings.server_name)
        self._lines: list[str] = []  # the open batch
        self._batch_rows = 0
        self._batch_oldest = 0
        self._batch_since: float | None = None
        # closed batches the spool's disk refused, in order
        self._unspooled: deque[ClosedBatch] = deque()
        self._spool_refused = False
        self.rows_queued = 0  # put by the capture
        self.carried = 0  # rows an earlier run left in the spool
        self.dropped_over_max = 0
        self.rejected = 0
        self.expired = 0  # sent rows older than the ingest table's TTL
        self._failing_since: float | None = None
        self._next_try = 0.0
        self._delay = RETRY_INTERVAL_SECONDS
        self._last_warned = 0.0
        self.last_error: str | None = None

    # Start.
    def check(self) -> None:
        """The spool can be used; ClickHouse answers, takes this user and has the table. One
        that cannot be reached (down, a network away) does not stop capture: its batches
        wait in the spool."""
        self.spool.check()
        try:
            self.table = self.store.verify()
        except StoreUnavailable as error:
            self._failed(error)

    def open(self) -> None:
        left = self.spool.open()
        self.carried = sum(batch.rows for batch in left)
        self._over_max(self.spool.trim())
        if left:
            self.info(f"clickhouse: {self.carried:,} rows an earlier run left in "
                      f"{self.spool.folder} are sent first")
        if self.table is not None:
            self.info(f"clickhouse: rows go to {self.url} ({self.settings.target.database}."
                      f"{RAW_TABLE}) as server '{self.settings.server_name}'")

    # The capture thread's side.
    def window(self, window: ClosedWindow) -> None:
        if len(window):
            self.rows_queued += len(window)
            super().window(window)

    # This sink's thread.
    def handle_window(self, window: ClosedWindow) -> None:
        self._lines.append(window_lines(window, self._server_field))
        self._batch_oldest = (window.start_s if not self._batch_rows
                              else min(self._batch_oldest, window.start_s))
        self._batch_rows += len(window)
        if self._batch_since is None:
            self._batch_since = time.monotonic()
        if self._batch_rows >= self.settings.batch_rows:
            self._close_batch()

    def poll_seconds(self) -> float | None:
        now = time.monotonic()
        waits = []
        if self._batch_since is not None:
            waits.append(self._batch_since + self.settings.batch_seconds - now)
        if self._unspooled:
            waits.append(RETRY_INTERVAL_SECONDS)
        if self.spool.batches or self._unspooled:
            waits.append(self._next_try - now)
        return max(0.01, min(waits)) if waits else None

    def flush(self) -> None:
        if self._batch_since is not None and \
                time.monotonic() - self._batch_since >= self.settings.batch_seconds:
            self._close_batch()
        self._spool_waiting()
        self._send(SEND_SLICE_SECONDS)

    def _close_batch(self) -> None:
        data = (HEADER + "".join(self._lines)).encode("utf-8")
        self._unspooled.append(ClosedBatch(data, self._batch_rows, self._batch_oldest,
                                           new_identity()))
        self._lines, self._batch_rows, self._batch_since = [], 0, None

    def _spool_waiting(self) -> None:
        """Closed batches into the spool, in order; a disk that refuses keeps them in memory
        (bounded), and they are sent from there."""
        while self._unspooled:
            data, rows, oldest, identity = self._unspooled[0]
            try:
                dropped = self.spool.add(data, rows, oldest, identity)
            except OSError as error:
                if not self._spool_refused:
                    self._spool_refused = True
                    self.warn(f"cannot write the ClickHouse spool {self.spool.folder} "
                              f"({error.strerror or error}): batches wait in memory (up to "
                              f"{MAX_UNSPOOLED_ROWS:,} rows) and are sent from there")
                while self._unspooled_rows() > MAX_UNSPOOLED_ROWS:
                    rows = self._unspooled.popleft().rows
                    self.dropped += rows
                    self.warn(f"clickhouse: {rows:,} rows neither spooled nor sent are given "
                              f"up, past {MAX_UNSPOOLED_ROWS:,} in memory (the CSV has them)")
                return
            self._unspooled.popleft()
            self._over_max(dropped)
            if self._spool_refused:
                self._spool_refused = False
                self.info(f"the ClickHouse spool {self.spool.folder} is writable again")

    def _over_max(self, batches: list[SpooledBatch]) -> None:
        """Batches the spool gave up to stay under --clickhouse-spool-max: counted, said once."""
        if not batches:
            return
        rows = sum(batch.rows for batch in batches)
        self.dropped += rows
        if not self.dropped_over_max:
            self.warn(f"the ClickHouse spool {self.spool.folder} passed --clickhouse-spool-max "
                      f"({size_text(self.settings.spool_max)}): its oldest batches are given "
                      f"up ({rows:,} rows so far; the CSV has them)")
        self.dropped_over_max += rows

    def _send(self, budget: float) -> None:
        """Waiting batches to ClickHouse, oldest first, for about `budget` seconds; the first
        failure ends it until the next try is due."""
        deadline = time.monotonic() + budget
        while time.monotonic() < deadline and time.monotonic() >= self._next_try:
            batch = self.spool.oldest()
            if batch is not None:
                try:
                    data = batch.read()
                except OSError as error:  # removed by hand, or unreadable
                    self.spool.remove(batch)
                    self.dropped += batch.rows
                    self.warn(f"cannot read {batch.path} ({error.strerror or error}): its "
                              f"{batch.rows:,} rows are given up")
                    continue
                outcome = self._deliver(data, batch.rows, batch.oldest_start, batch.identity)
                if outcome is None:
                    return
                if outcome:
                    self.spool.remove(batch)
                else:
                    aside = self.spool.set_aside(batch)
                    self.warn(f"{self.last_error}; its {batch.rows:,} rows were set aside in "
                              f"{aside} (the CSV has them) and the next batches go on")
            elif self._unspooled:
                data, rows, oldest, identity = self._unspooled[0]
                outcome = self._deliver(data, rows, oldest, identity)
                if outcome is None:
                    return
                if not outcome:
                    self.warn(f"{self.last_error}; its {rows:,} rows are given up (the CSV has "
                              "them)")
                self._unspooled.popleft()
            else:
                return

    def _deliver(self, data: bytes, rows: int, oldest: int, identity: str) -> bool | None:
        """True: ClickHouse took the batch; False: it cannot read it (given up and counted);
        None: not now (an outage: retried later)."""
        try:
            if self.table is None:
                self.table = self.store.verify()
            self.store.insert(data, identity)
        except BatchRejected as error:
            self.last_error = str(error)
            self.dropped += rows
            self.rejected += rows
            return False
        except StoreError as error:
            self._failed(error)
            return None
        self.written += rows
        self._count_expired(data, oldest)
        self._taken_again(rows)
        return True

    def _count_expired(self, data: bytes, oldest: int) -> None:
        """Rows of a batch ClickHouse drops from the raw table as they are inserted (past its
        TTL: schema.expired_at_insert), counted and said once."""
        keep_s = self.table.keep_s if self.table is not None else None
        now = time.time()
        if keep_s is None or oldest + keep_s > now:
            return
        found = expired_at_insert((Level(RAW_SECONDS, keep_s),), batch_starts(data),
                                  now).get(RAW_TABLE, 0)
        if found and not self.expired:
            self.warn(f"clickhouse: {found:,} rows sent are older than {RAW_TABLE}'s TTL "
                      f"({_duration(keep_s)}): ClickHouse drops them from that table at "
                      "insert (an old capture?); the summary gives the total")
        self.expired += found

    def _failed(self, error: StoreError) -> None:
        """An outage begins or goes on: say it (once, then every REMIND_SECONDS), back off."""
        now = time.monotonic()
        self.last_error = str(error)
        if self._failing_since is None:
            self._failing_since, self._delay, self._last_warned = now, RETRY_INTERVAL_SECONDS, now
            self.warn(f"{error}. Capture and the CSV go on; batches wait in {self.spool.folder} "
                      f"(up to {size_text(self.settings.spool_max)}) and are sent in order once "
                      "ClickHouse takes them")
        else:
            self._delay = min(self._delay * 2, MAX_RETRY_SECONDS)
            if now - self._last_warned >= REMIND_SECONDS:
                self._last_warned = now
                self.warn(f"{error}; for {now - self._failing_since:.0f} s now: "
                          f"{self.pending():,} rows wait in {self.spool.folder}")
        self._next_try = now + self._delay

    def _unspooled_rows(self) -> int:
        return sum(batch.rows for batch in self._unspooled)

    def _taken_again(self, rows_taken: int) -> None:
        if self._failing_since is None:
            return
        waited = time.monotonic() - self._failing_since
        self._failing_since, self._next_try, self.last_error = None, 0.0, None
        waiting = self.spool.rows + self._unspooled_rows() - rows_taken
        self.info(f"ClickHouse at {self.url} takes rows again after {waited:.0f} s"
                  + (f": the {waiting:,} rows waiting in the spool are sent in order"
                     if waiting > 0 else ""))

    def finish(self) -> None:
        """The last batch, then everything waiting, sent: ClickHouse is tried again at once,
        and one that fails is retried as the CSV is (STOP_RETRY_SECONDS, not after a second
        Ctrl+C). What it did not take stays in the spool for the next run."""
        if self._batch_since is not None:
            self._close_batch()
        self._spool_waiting()
        self._next_try, self._delay = 0.0, RETRY_INTERVAL_SECONDS
        give_up_at = time.monotonic() + STOP_RETRY_SECONDS
        while (self.spool.batches or self._unspooled) and not self.hurry.is_set():
            now = time.monotonic()
            if now >= self._next_try:
                self._send(float("inf"))
            elif now >= give_up_at or self.hurry.wait(min(self._next_try, give_up_at) - now):
                break
        if self._unspooled:  # neither the spool nor ClickHouse took them
            rows = self._unspooled_rows()
            self.dropped += rows
            self._unspooled.clear()
            self.warn(f"clickhouse: {rows:,} rows could neither be sent nor spooled: given up "
                      "(the CSV has them)")
        self.store.close()
        self.spool.close()

    def pending(self) -> int:
        return self.rows_queued + self.carried - self.written - self.dropped

    # What the user reads.
    def summary_target(self) -> str:
        return f"{self.url} (server '{self.settings.server_name}')"

    def closing_notes(self) -> Notes:
        notes: Notes = []
        waiting = self.spool.rows
        if waiting:
            notes.append((True, f"clickhouse: {waiting:,} rows wait in {self.spool.folder} "
                                f"({self.last_error or 'not sent yet'}); the next run with "
                                "--clickhouse sends them first"))
        if self.dropped_over_max:
            notes.append((True, f"clickhouse: {self.dropped_over_max:,} rows were given up "
                                "when the spool passed --clickhouse-spool-max (the CSV has "
                                "them)"))
        if self.rejected:
            notes.append((True, f"clickhouse: {self.rejected:,} rows were refused by ClickHouse "
                                f"as unreadable; set aside in {self.spool.folder}"))
        if self.expired:
            keep_s = self.table.keep_s if self.table is not None else None
            notes.append((True, f"clickhouse: {self.expired:,} rows sent were older than "
                                f"{RAW_TABLE}'s TTL ({_duration(keep_s or 0)}): ClickHouse "
                                "dropped them from that table at insert"))
        return notes

    def status_fields(self) -> dict[str, Any]:
        return {"clickhouse": self.url, "clickhouse_server_name": self.settings.server_name,
                "clickhouse_rows_sent": self.written,
                "clickhouse_rows_pending": self.pending(),
                "clickhouse_rows_dropped": self.dropped,
                "clickhouse_rows_expired": self.expired,
                "clickhouse_spool": str(self.spool.folder),
                "clickhouse_spool_bytes": self.spool.size,
                "clickhouse_error": self.last_error}


def size_text(size: int) -> str:
    """Bytes as --clickhouse-spool-max takes them: 1 GiB, 500 MiB, 64 KiB, 900 bytes."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


def _duration(seconds: int) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
