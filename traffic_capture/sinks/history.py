"""--history PATH: every closed window of the capture run into the history store as well, at
5 s, 1 min and 1 h (--history-keep), for `serve`, `excel` and `report` to read while it runs.

This module states the options and builds the sink; DuckDB (the `history` extra) is imported
only when --history is given. The sink never loses what the CSV has: rows the disk refuses
wait in memory (up to MAX_WAITING_ROWS) and are written when it takes them again; past that,
or at a stop that cannot write them, they are counted, and `history import` of the CSV fills
the gap later without doubling anything.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from traffic_capture import argtypes
from traffic_capture.errors import PROG, UsageError
from traffic_capture.history.retention import DEFAULT_KEEP, Level, check_window, parse_keep
from traffic_capture.rules import RETRY_INTERVAL_SECONDS, STOP_RETRY_SECONDS
from traffic_capture.sinks import Notes, Output, OutputContext, Say, Sink

if TYPE_CHECKING:
    from traffic_capture.history.writer import HistoryWriter
    from traffic_capture.windows import ClosedWindow

# Rows held in memory while the history's disk refuses them (a full disk): ~200 MB. Past
# this the oldest are given up (counted; the CSV has them: `history import` fills the gap).
MAX_WAITING_ROWS = 2_000_000
# How often the sink's thread looks whether a flush, a merge or a retention is due.
POLL_SECONDS = 5.0
# --history-flush: how late readers see the open period, and the most a kill -9 takes from the
# history (the CSV has it all). Each flush is a part to read until the next merge.
DEFAULT_FLUSH_SECONDS = 30.0
FILE_FLUSH_SECONDS = 1.0  # reading capture files (see HistoryOutput.build)


class HistorySettings(NamedTuple):
    path: Path
    levels: tuple[Level, ...]
    flush_seconds: float = DEFAULT_FLUSH_SECONDS


class HistoryOutput(Output[HistorySettings]):
    """The history store as an output of the capture run."""

    name = "history"
    title = "history (months of windows at 5 s, 1 min, 1 h, for serve/excel/report)"

    def add_options(self, group: argparse._ActionsContainer) -> None:
        add = group.add_argument
        add("--history", type=Path, metavar="PATH",
            help="also keep every closed window in the history store at PATH (a folder of "
                 "Parquet files read by DuckDB: the 'history' extra), with rollups at 1 "
                 "minute and 1 hour; readers (serve, excel, report) read it while it is "
                 "written")
        add("--history-keep", metavar="SPEC", default=None,
            help=f"each resolution and how long it is kept (default {DEFAULT_KEEP}): "
                 "STEP=KEEP,... with s, m, h, d, or 'forever'")
        add("--history-flush", type=argtypes.positive_seconds, metavar="SECONDS",
            default=None,
            help=f"write the windows to the history at least this often (default "
                 f"{DEFAULT_FLUSH_SECONDS:g}): how late readers see the last minutes, and the "
                 "most a crash takes from the history (the CSV keeps them)")

    def settings(self, args: argparse.Namespace) -> HistorySettings | None:
        if not args.history:
            for flag, given in (("--history-keep", args.history_keep),
                                ("--history-flush", args.history_flush)):
                if given is not None:
                    raise UsageError(f"{flag} needs --history PATH")
            return None
        levels = parse_keep(args.history_keep or DEFAULT_KEEP)
        try:
            check_window(levels, args.window_seconds)
        except UsageError as error:
            raise UsageError(f"{error}; give --history-keep with steps that are multiples of "
                             f"--window {args.window_seconds}") from None
        return HistorySettings(args.history, levels,
                               args.history_flush or DEFAULT_FLUSH_SECONDS)

    def build(self, settings: HistorySettings, context: OutputContext) -> Sink:
        # Reading files, windows come in bursts and a reader (the dashboard that stays up
        # after them) should not wait half a minute for their last rows: flush each second.
        flush_seconds = (min(settings.flush_seconds, FILE_FLUSH_SECONDS) if context.lossless
                         else settings.flush_seconds)
        return HistorySink(settings.path, settings.levels, context.warn, context.info,
                           flush_seconds=flush_seconds)

    def service_folders(self, settings: HistorySettings) -> list[Path]:
        return [settings.path]


OUTPUT = HistoryOutput()


class HistorySink(Sink):
    """Closed windows into a HistoryWriter, flushed on this sink's thread every few seconds
    (a merge of a busy hour holds it for seconds: the queue keeps every window meanwhile)."""

    name = "history"
    unit = "rows"
    label = "history rows"

    def __init__(self, path: Path, levels: tuple[Level, ...], warn: Say, info: Say,
                 max_waiting_rows: int = MAX_WAITING_ROWS,
                 flush_seconds: float = DEFAULT_FLUSH_SECONDS) -> None:
        super().__init__(warn, info)
        self.path, self.levels = path, levels
        self.flush_seconds = flush_seconds
        self.max_waiting_rows = max_waiting_rows
        self.writer: HistoryWriter | None = None
        self.rows_queued = 0  # put by the capture, not yet in the store
        self._taken = 0  # handed to the writer
        self._blocked_since: float | None = None

    def check(self) -> None:
        """DuckDB installed, a folder that is (or can become) a history, and no other writer:
        before anything is created."""
        from traffic_capture.history import duck
        from traffic_capture.history.store import HistoryError, check_folder

        duck.duckdb()
        if self.path.exists():
            from traffic_capture.history.store import WriterLock

            if not self.path.is_dir() or any(self.path.iterdir()):
                check_folder(self.path, create=False)  # a file, a foreign or newer folder
            WriterLock(self.path).close()  # a second daemon is refused now, in one line
            return
        folder = self.path.parent if str(self.path.parent) else Path(".")
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise HistoryError(f"history {self.path}: cannot create it: {folder} cannot be "
                               "written (permission denied, or a read-only file system)")

    def open(self) -> None:
        from traffic_capture.history.writer import HistoryWriter

        self.writer = HistoryWriter(self.path, self.levels, flush_seconds=self.flush_seconds)
        self.info(f"history: {self.path} ({', '.join(level.name for level in self.levels)}); "
                  f"'{PROG} serve --history {self.path}' reads it")

    def window(self, window: ClosedWindow) -> None:
        if len(window):
            self.rows_queued += len(window)
            super().window(window)

    def handle_window(self, window: ClosedWindow) -> None:
        assert self.writer is not None, "handle_window before open"
        self.writer.add_window(window.start_s, window.end_s, window.client_texts(),
                               window.sums.inbound, window.sums.counts)
        self._taken += len(window)

    def poll_seconds(self) -> float | None:
        if self._blocked_since is not None:
            return RETRY_INTERVAL_SECONDS
        return min(POLL_SECONDS, self.flush_seconds)

    def flush(self) -> None:
        writer = self.writer
        if writer is None:
            return
        try:
            writer.flush()
        except OSError as error:
            self._refused(error)
            return
        self._settle()
        self._writable_again()

    def _writable_again(self) -> None:
        if self._blocked_since is not None:
            waited = time.monotonic() - self._blocked_since
            self._blocked_since = None
            self.info(f"history {self.path} is writable again after {waited:.0f} s: the "
                      "waiting rows are written")

    def _settle(self) -> None:
        assert self.writer is not None
        self.written = self._taken - self.writer.buffered_rows - self.dropped

    def _refused(self, error: OSError) -> None:
        assert self.writer is not None
        if self._blocked_since is None:
            self._blocked_since = time.monotonic()
            self.warn(f"cannot write the history {self.path} ({error.strerror or error}): "
                      f"capture and the CSV go on; up to {self.max_waiting_rows:,} rows wait "
                      "in memory and are retried")
        if self.writer.buffered_rows > self.max_waiting_rows:
            self.dropped += self.writer.discard()
            self.warn(f"the history {self.path} still refuses rows: {self.dropped:,} rows "
                      f"given up (the CSV has them: '{PROG} history import' adds them later)")

    def pending(self) -> int:
        return self.rows_queued - self.written - self.dropped

    def finish(self) -> None:
        """Everything buffered to the store; a disk that still refuses is retried as the CSV
        is (STOP_RETRY_SECONDS, not after a second Ctrl+C), then its rows are counted."""
        writer = self.writer
        if writer is None:
            return
        deadline = time.monotonic() + STOP_RETRY_SECONDS
        while True:
            try:
                writer.flush(force=True, merges=0)
                self._writable_again()
                break
            except OSError as error:
                self._refused(error)
            if time.monotonic() >= deadline or self.hurry.wait(RETRY_INTERVAL_SECONDS):
                break
        if writer.buffered_rows:
            self.dropped += writer.discard()
        try:
            writer.close(merges=0)  # merges wait for the next run: a stop stays quick
        except OSError as error:  # only maintenance was left: the rows are in
            self.warn(f"history {self.path}: {error.strerror or error} while tidying up; "
                      "the next run goes on")
        self._settle()

    def summary_target(self) -> str:
        return str(self.path)

    def closing_notes(self) -> Notes:
        if not self.dropped:
            return []
        return [(True, f"history: {self.dropped:,} rows could not be written to {self.path} "
                       f"(the CSV has them): '{PROG} history import --history {self.path} "
                       "CSV...' adds them without doubling the rest")]

    def status_fields(self) -> dict[str, Any]:
        return {"history": str(self.path), "history_rows_written": self.written,
                "history_rows_pending": self.pending()}
