"""The consumer: a thread that appends closed windows to the CSV and never loses one.

The capture side only puts rows on a queue; all waiting on disk happens here. When the CSV
cannot be written (Excel holds it locked, the disk is full...) the rows stay queued in order
and are retried; at stop, rows the CSV still refuses go to a side file.
"""

from __future__ import annotations

import errno
import queue
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from traffic_capture.csv_sink import append_text, format_window, write_side_file
from traffic_capture.rules import RETRY_INTERVAL_SECONDS, STOP_RETRY_SECONDS
from traffic_capture.windows import ClosedWindow, empty_sums

_STOP = ClosedWindow(0, 0, empty_sums())  # the stop request, told apart by identity


def blocked_advice(path: Path, error: OSError) -> str:
    """Why the CSV cannot be written and what the user can do, in one line."""
    if error.errno == errno.ENOSPC:
        cause = "the disk is full; free some space"
    elif isinstance(error, PermissionError):
        cause = ("it is locked or read-only, most likely open in Excel: close it there, or load "
                 "it with Data > From Text/CSV, which reads it without locking it")
    else:
        cause = error.strerror or str(error)
    return (f"cannot write {path} ({type(error).__name__}: {error.strerror or error}): {cause}. "
            f"Capture goes on; rows wait in memory and are retried every "
            f"{RETRY_INTERVAL_SECONDS:g} s")


class CsvWriter(threading.Thread):
    def __init__(self, path: Path, delimiter: str, warn: Callable[[str], None],
                 info: Callable[[str], None]) -> None:
        super().__init__(name="csv-writer", daemon=True)
        self.path = path
        self.delimiter = delimiter
        self._warn = warn
        self._info = info
        self._queue: queue.SimpleQueue[ClosedWindow] = queue.SimpleQueue()
        self._pending: deque[tuple[str, int]] = deque()  # (CSV text, rows) per window
        self._blocked_since: float | None = None
        self.rows_written = 0
        self.rows_queued = 0  # put by the producer, not yet written
        self.side_file: Path | None = None
        self.hurry = threading.Event()  # a second Ctrl+C: stop retrying, save to a side file now

    @property
    def rows_pending(self) -> int:
        return self.rows_queued - self.rows_written

    def put(self, window: ClosedWindow) -> None:
        """Producer side: never blocks, and leaves building the rows to this thread."""
        if len(window):
            self.rows_queued += len(window)
            self._queue.put(window)

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to drain and finish; wait for it."""
        self._queue.put(_STOP)
        self.join(timeout)

    def run(self) -> None:
        stopping = False
        while not stopping:
            wait = RETRY_INTERVAL_SECONDS if self._pending else None
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = None
            stopping = self._take(item)
            stopping = self._take_waiting() or stopping
            self._try_write()
        deadline = time.monotonic() + STOP_RETRY_SECONDS
        while self._pending and time.monotonic() < deadline:
            if self.hurry.wait(RETRY_INTERVAL_SECONDS):
                break
            self._try_write()
        if self._pending:
            self._save_to_side_file()

    def _take(self, item: ClosedWindow | None) -> bool:
        if item is _STOP:
            return True
        if item is not None:
            self._pending.append((format_window(item, self.delimiter), len(item)))
        return False

    def _take_waiting(self) -> bool:
        stopping = False
        while True:
            try:
                stopping = self._take(self._queue.get_nowait()) or stopping
            except queue.Empty:
                return stopping

    def _try_write(self) -> None:
        if not self._pending:
            return
        text, rows = self._waiting()
        try:
            append_text(self.path, text, self.delimiter)
        except OSError as error:
            if self._blocked_since is None:
                self._blocked_since = time.monotonic()
                self._warn(blocked_advice(self.path, error))
            return
        self._pending.clear()
        self.rows_written += rows
        if self._blocked_since is not None:
            waited = time.monotonic() - self._blocked_since
            self._blocked_since = None
            self._info(f"{self.path} is writable again: wrote {rows} waiting rows "
                       f"after {waited:.0f} s")

    def _waiting(self) -> tuple[str, int]:
        """The text and row count of every waiting window (only this thread touches them)."""
        return ("".join(text for text, _ in self._pending),
                sum(rows for _, rows in self._pending))

    def _save_to_side_file(self) -> None:
        text, rows = self._waiting()
        candidates = [self.path, Path(tempfile.gettempdir()) / self.path.name]
        for base in candidates:
            try:
                self.side_file = write_side_file(base, text, self.delimiter)
            except OSError:
                continue
            self._pending.clear()
            self.rows_written += rows
            self._warn(f"{self.path} still cannot be written: its {rows} waiting rows were "
                       f"saved to {self.side_file}; append them to it once it is free")
            return
        # Nowhere on disk takes them: the terminal is the last place they are not lost.
        self._warn(f"{self.path} and its side files cannot be written: printing the "
                   f"{rows} waiting rows here")
        sys.stderr.write(text)
        sys.stderr.flush()
        self._pending.clear()

