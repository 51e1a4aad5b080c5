"""traffic.csv for the web: the recent history at start, then what the daemon appends, followed
as `tail -F` does (a rename, rotation or truncation of the file is noticed and the new file is
read from its start, after the rest of the old one). Read with csvformat's contract, in any
delimiter the daemon writes.
"""

from __future__ import annotations

import os
from pathlib import Path

from traffic_capture.csvformat import COLUMNS, Row, detect_delimiter, epoch_of, holds_binary
from traffic_capture.errors import TrafficCaptureError
from traffic_capture.rules import IN, OUT

_WIDTH = len(COLUMNS)
_HEAD_BYTES = 4096  # where a CSV's header is, and a capture file shows it is not one


class CsvReadError(TrafficCaptureError):
    """The CSV cannot be read (not a traffic-capture CSV, a folder...)."""


class RowParser:
    """CSV lines -> Rows; the local times of each window are parsed once."""

    def __init__(self, delimiter: str, utc: bool = False) -> None:
        self.delimiter = delimiter
        self.utc = utc
        self._times: dict[str, int] = {}
        self.skipped = 0  # lines that are not rows (a torn or foreign line)

    def epoch(self, text: str) -> int:
        value = self._times.get(text)
        if value is None:
            if len(self._times) > 100_000:
                self._times.clear()
            value = self._times[text] = epoch_of(text, self.utc)
        return value

    def parse(self, line: str) -> Row | None:
        parts = line.rstrip("\r\n").split(self.delimiter)
        if len(parts) != _WIDTH:
            self.skipped += 1
            return None
        try:
            numbers = [int(part) for part in parts[4:]]
            row = Row(self.epoch(parts[0].strip()), self.epoch(parts[1].strip()),
                      parts[2].strip(), parts[3].strip(), *numbers)
        except ValueError:
            self.skipped += 1
            return None
        if row.direction not in (IN, OUT) or min(numbers) < 0:
            self.skipped += 1
            return None
        return row


def _read_at(fd: int, size: int, offset: int) -> bytes:
    """pread, also on Windows (which has no os.pread)."""
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, size)


class CsvFollower:
    """Reads complete lines as they are appended to `path`; `poll()` returns the new Rows."""

    def __init__(self, path: Path, utc: bool = False) -> None:
        self.utc = utc  # the CSV's times are UTC (written with --utc), not local
        self.path = path
        self._file: int | None = None
        self._identity: tuple[int, int] | None = None
        self._position = 0
        self._partial = b""
        self._parser: RowParser | None = None
        self.rows_read = 0
        self.reopened = 0  # renames, rotations, truncations noticed

    @property
    def skipped(self) -> int:
        return self._parser.skipped if self._parser else 0

    def _open(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except FileNotFoundError:
            return False
        except IsADirectoryError:
            raise CsvReadError(f"{self.path} is a directory, not a CSV file") from None
        except OSError as error:
            raise CsvReadError(f"cannot read {self.path}: {error.strerror or error}") from None
        info = os.fstat(fd)
        self._file, self._identity = fd, (info.st_dev, info.st_ino)
        self._position, self._partial, self._parser = 0, b"", None
        return True

    def _refuse_binary(self) -> None:
        """A capture file (or any binary file) given as the CSV: one line saying so, never its
        bytes, found from its first line before it is read through (and never read again)."""
        assert self._file is not None
        head = _read_at(self._file, _HEAD_BYTES, 0)
        first, newline, _ = head.lstrip(b"\r\n").partition(b"\n")
        text = first.decode("utf-8", errors="replace")
        if not newline:
            text = text.rstrip("\ufffd")  # a character cut by the end of the head
        if b"\x00" in head or holds_binary(text):
            self._position = os.fstat(self._file).st_size
            raise self._binary()

    def _binary(self) -> CsvReadError:
        return CsvReadError(f"{self.path} is not a traffic-capture CSV (it holds binary data: "
                            "a capture file?)")

    def _header(self, line: str) -> RowParser:
        """The parser for the CSV whose header this is."""
        if holds_binary(line):
            raise self._binary()
        try:
            return RowParser(detect_delimiter(line), self.utc)
        except TrafficCaptureError as error:
            raise CsvReadError(f"{self.path}: {error}") from None

    def close(self) -> None:
        if self._file is not None:
            os.close(self._file)
            self._file = None

    def _replaced(self) -> bool:
        try:
            info = os.stat(self.path)
        except OSError:
            return False  # gone for now (between a rename and the new file): keep the old
        return (info.st_dev, info.st_ino) != self._identity or info.st_size < self._position

    def poll(self, history_seconds: int | None = None) -> list[Row]:
        """New rows since the last poll. Reading a file from its start, with `history_seconds`,
        only the rows of that span before the file's newest row are read (the history)."""
        rows: list[Row] = []
        if self._file is None and not self._open():
            return rows
        replaced = self._replaced()
        rows += self._read_new(history_seconds)  # the old file's last rows first
        if replaced:
            self.close()
            self.reopened += 1
            if self._open():
                rows += self._read_new(None)
        return rows

    def _read_new(self, history_seconds: int | None) -> list[Row]:
        assert self._file is not None
        if self._position == 0 and self._parser is None:
            self._refuse_binary()
        skip_before = None
        if self._position == 0 and history_seconds is not None:
            skip_before = self._skip_to_recent(history_seconds)
        chunks = []
        while True:
            chunk = _read_at(self._file, 1 << 20, self._position)
            if not chunk:
                break
            self._position += len(chunk)
            chunks.append(chunk)
        data = self._partial + b"".join(chunks)
        complete, _, self._partial = data.rpartition(b"\n")
        if not complete and not data.endswith(b"\n"):
            return []
        lines = complete.decode("utf-8", errors="replace").split("\n")
        rows = []
        for line in lines:
            if self._parser is None:
                if not line.strip():
                    continue
                self._parser = self._header(line)
                continue
            if line.startswith(COLUMNS[0]):
                continue  # a header again (a file rotated into the same name)
            row = self._parser.parse(line)
            if row is not None and (skip_before is None or row.window_end > skip_before):
                rows.append(row)
        self.rows_read += len(rows)
        return rows

    def _skip_to_recent(self, history_seconds: int) -> int | None:
        """At start: read the header and the newest row, then jump near the first row of the
        history span before it, by blocks from the end, doubling until one starts before it (a
        CSV of months reads in a blink). Returns the end before which rows are left out."""
        assert self._file is not None
        size = os.fstat(self._file).st_size
        head = _read_at(self._file, 4096, 0)
        header, newline, _ = head.partition(b"\n")
        if not newline:
            return None
        parser = self._header(header.decode("utf-8", errors="replace"))
        tail = _read_at(self._file, 4096, max(0, size - 4096)).rstrip(b"\r\n")
        newest = parser.parse(tail.rpartition(b"\n")[2].decode("utf-8", errors="replace"))
        parser.skipped = 0
        if newest is None:
            return None
        since = newest.window_end - history_seconds
        block = 1 << 20
        start = len(header) + 1
        while size - block > start:
            at = size - block
            piece = _read_at(self._file, 4096, at)
            first_line = piece.split(b"\n")[1] if b"\n" in piece else b""
            row = parser.parse(first_line.decode("utf-8", errors="replace"))
            if row is not None and row.window_end <= since:
                start = at + piece.index(b"\n") + 1
                break
            block *= 2
        parser.skipped = 0
        self._parser = parser
        self._position = start
        return since


def read_history(path: Path, history_seconds: int, utc: bool = False) -> list[Row]:
    """The rows of a CSV's last `history_seconds` before its newest (none if it is absent)."""
    follower = CsvFollower(path, utc)
    try:
        return follower.poll(history_seconds)
    finally:
        follower.close()
