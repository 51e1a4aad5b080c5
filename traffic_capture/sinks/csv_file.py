"""The CSV output: appends each closed window to traffic.csv and never loses one.

When the file cannot be written (Excel holds it locked, the disk is full...) the rows stay
queued in order and are retried every second; at stop, rows the CSV still refuses go to a side
file next to it. A failed write is cut back to where it started: rows are never torn or
written twice.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from traffic_capture import argtypes, durable
from traffic_capture.csvformat import (
    DELIMITER_NAMES,
    header_line,
    holds_binary,
    local_time_text,
)
from traffic_capture.errors import TrafficCaptureError
from traffic_capture.rules import (
    CSV_SYNC_SECONDS,
    DEFAULT_OUT,
    EXCEL_MAX_ROWS,
    RETRY_INTERVAL_SECONDS,
    ROTATIONS,
)
from traffic_capture.sinks import Output, OutputContext, Say, Sink
from traffic_capture.sinks.csv_rotation import (
    SeriesFile,
    numbered,
    rotated_path,
    series_pattern,
    to_remove,
)

if TYPE_CHECKING:
    from traffic_capture.windows import ClosedWindow

# Text of rows written but not yet synced that the CSV keeps (to write it again if the sync
# fails): past it, the sync comes before its second is up.
MAX_UNSYNCED_BYTES = 8 * 2**20

# systemd's state folder of a service (StateDirectory=): where rows go when the CSV's own folder
# refuses them at stop. Never the temp folder: a unit's PrivateTmp= deletes it when it stops.
STATE_DIRECTORY_ENV = "STATE_DIRECTORY"


class OutputError(TrafficCaptureError):
    """The output cannot be used at all (a directory, a foreign header...); the message says why."""


def format_window(window: ClosedWindow, delimiter: str, utc: bool = False) -> str:
    """CSV text of a closed window, straight from its sums: the rows of format_rows, without
    building Row objects first (csv_rows.py: in C where it was built)."""
    # Imported here: it needs numpy, which --help and the Excel commands never load.
    from traffic_capture.sinks.csv_rows import window_text

    v4, texts = window.ipv4_and_texts()
    return window_text(local_time_text(window.start_s, utc), local_time_text(window.end_s, utc),
                       delimiter, texts, window.sums.inbound, window.sums.counts, v4)


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


def check_output(path: Path, delimiter: str) -> None:
    """Refuse, before anything starts, an output that is a folder or would mix two formats."""
    try:
        is_dir = path.is_dir()
    except OSError as error:  # a folder on the way that this user may not enter
        raise OutputError(f"cannot reach {path}: {error.strerror or error}") from None
    if is_dir:
        raise OutputError(
            f"output {path} is a directory; give a file name, e.g. {path / 'traffic.csv'}")
    try:
        with path.open("r", encoding="utf-8", errors="replace", newline="") as existing:
            first_line = existing.readline()
    except OSError:
        return  # absent (created later), or locked now: the writer will wait for it
    header = header_line(delimiter)
    if holds_binary(first_line):
        raise OutputError(f"{path} is not a traffic-capture CSV (it holds binary data: a capture "
                          "file?); refusing to append to it: choose another --out")
    if not first_line.endswith("\n") and header.startswith(first_line):
        return  # a header torn by a crash: repair_torn_end() starts the file afresh
    if first_line and first_line.rstrip("\r\n") != header.rstrip("\n"):
        raise OutputError(
            f"{path} already holds other columns or another delimiter "
            f"(its first line is {first_line.strip()[:80]!r}); refusing to mix rows into it: "
            f"choose another --out, or move that file away"
        )


def make_folder(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(
                f"cannot create the folder of {path}: {error.strerror or error}") from None


def create_output(path: Path, delimiter: str, sync: bool = True) -> bool:
    """Once capture can start: the folder, and the header in a new or empty file (synced to
    the disk with `sync`); whether the header was written.

    A file that exists but cannot be written now (Excel holds it) is not refused: rows wait for it.
    """
    make_folder(path)
    if not path.exists() or path.stat().st_size == 0:
        # The header at once: Excel and the dashboard can load the columns before any row.
        try:
            append_text(path, "", delimiter, sync=sync)
        except PermissionError:
            if path.exists():
                return False  # an empty file held by another program; the writer waits for it
            raise OutputError(f"cannot create {path}: permission denied") from None
        except OSError as error:
            raise OutputError(f"cannot create {path}: {error.strerror or error}") from None
        return True
    return False


def repair_torn_end(path: Path) -> bytes:
    """Cut off a last line without its newline (a crash or power loss in the middle of a
    write), so that the next row is not glued to it; return what was cut."""
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    except OSError:
        return b""  # absent, or locked now: nothing to repair, or the writer will wait
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        at = size
        while at > 0:  # back to the last newline, 64 KiB at a time
            step = min(at, 65536)
            os.lseek(fd, at - step, os.SEEK_SET)
            block = os.read(fd, step)
            newline = block.rfind(b"\n")
            if newline >= 0:
                at = at - step + newline + 1
                break
            at -= step
        if at == size:
            return b""
        os.lseek(fd, at, os.SEEK_SET)
        torn = os.read(fd, size - at)
        os.ftruncate(fd, at)
        os.fsync(fd)
        return torn
    finally:
        os.close(fd)


def append_text(path: Path, text: str, delimiter: str, sync_folder: bool = False,
                sync: bool = True) -> int:
    """Append rows (and the header, into a new or empty file) in one open-write-close; where
    they begin in the file.

    Open-write-close rather than a file kept open: Excel and other readers see complete rows,
    and a lock taken meanwhile only delays the next window. A write that fails half-way (full
    disk), or whose failure a network share reports only at close, is cut back to where it
    started, so a retry cannot duplicate rows. With `sync`, the file is flushed to the disk
    (fsync) before it is closed.
    """
    # Raw descriptor writes: a buffered file object would retry its flush on close after a
    # failed write and could leave a torn row behind the cut.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
    start = 0
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        new_file = start == 0
        data = ((header_line(delimiter) if new_file else "") + text).encode("utf-8")
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if sync:
                os.fsync(fd)
        except OSError:
            os.ftruncate(fd, start)
            raise
    finally:
        try:
            os.close(fd)
        except OSError:
            with contextlib.suppress(OSError):
                cut_back(path, start)
            raise
    if new_file and sync_folder:
        durable.sync_folder(path.parent)  # a file just created (a new day, a rotation)
    return start


def cut_back(path: Path, size: int) -> None:
    """The file cut back to `size` bytes (rows written after it are to be written again)."""
    fd = os.open(path, os.O_WRONLY | getattr(os, "O_BINARY", 0))
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def side_file_folders(path: Path) -> list[Path]:
    """Where rows the CSV refuses at stop may go, in order: beside it, the service's state
    folder, the working folder."""
    folders = [path.parent if str(path.parent) else Path(".")]
    state = os.environ.get(STATE_DIRECTORY_ENV, "").split(":")[0]
    if state:
        folders.append(Path(state))
    folders.append(Path.cwd())
    unique: list[Path] = []
    for folder in folders:
        if all(not _same_folder(folder, seen) for seen in unique):
            unique.append(folder)
    return unique


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return a == b


def write_side_file(path: Path, text: str, delimiter: str) -> Path:
    """Save rows that the CSV would not take at stop, next to it; return where they went."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    side = path.with_name(f"{path.stem}.pending-{stamp}{path.suffix or '.csv'}")
    try:
        with side.open("x", encoding="utf-8", newline="") as out:
            out.write(header_line(delimiter))
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
    except OSError:
        # A half-written side file would hold rows that also go elsewhere: remove it.
        with contextlib.suppress(OSError):
            side.unlink()
        raise
    return side


# Rows kept in memory while the CSV refuses them (Excel holding it for hours, a full disk):
# past this, the oldest go to a side file. About 600,000 rows.
MAX_WAITING_BYTES = 64 * 2**20


def count_rows(path: Path) -> int:
    """Data rows of an existing CSV (its lines but the header); 0 for none."""
    try:
        with path.open("rb") as existing:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: existing.read(1 << 20), b""))
    except FileNotFoundError:
        return 0
    return max(lines - 1, 0)


def delimiter(text: str) -> str:
    """--delimiter: a name or character -> the character written."""
    try:
        return DELIMITER_NAMES[text]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"{text!r} cannot separate fields; use ',' (default), ';' (pt-BR, de-DE Excel), "
            "'tab' or '|'") from None


class CsvSettings(NamedTuple):
    out: Path = Path(DEFAULT_OUT)
    delimiter: str = ","
    rotate: str = "none"  # none, hourly, daily
    keep: int | None = None  # files of the series kept besides the current one
    max_disk: int | None = None  # bytes the series may take


class CsvOutput(Output[CsvSettings]):
    """The CSV, always written: its options and its sink."""

    name = "csv"
    title = "the CSV (always written)"

    def add_options(self, group: argparse._ActionsContainer) -> None:
        add = group.add_argument
        add("--out", type=Path, default=Path(DEFAULT_OUT), metavar="PATH",
            help=f"CSV to append to (default {DEFAULT_OUT})")
        add("--delimiter", type=delimiter, default=",", metavar="CHAR",
            help="field separator: ',' (default) or ';' for Excel set to pt-BR, de-DE...; "
                 "also 'tab', '|'")
        add("--rotate", choices=ROTATIONS, default="none",
            help="hourly or daily: rows go to traffic-YYYY-MM-DD[-HH].csv beside --out, by the "
                 "window's start, each file with its header (default none). Any file that "
                 "would pass an Excel sheet's 1,048,576 rows goes on in the next, "
                 "traffic-2.csv...")
        add("--keep", type=argtypes.count, metavar="N",
            help="keep at most N files of the series besides the current one; older ones are "
                 "removed")
        add("--max-disk", type=argtypes.size, metavar="SIZE",
            help="the CSV files together take at most SIZE (e.g. 500M, 2G): the oldest are "
                 "removed first, never the current one")

    def settings(self, args: argparse.Namespace) -> CsvSettings:
        return CsvSettings(args.out, args.delimiter, args.rotate, args.keep, args.max_disk)

    def build(self, settings: CsvSettings, context: OutputContext) -> Sink:
        return CsvSink(settings.out, settings.delimiter, context.warn, context.info,
                       settings.rotate, settings.keep, settings.max_disk, utc=context.utc,
                       fsync=context.fsync)

    def service_folders(self, settings: CsvSettings) -> list[Path]:
        return [settings.out.parent]


OUTPUT = CsvOutput()


class CsvSink(Sink):
    """traffic.csv: every closed window's rows, appended in order, nothing lost.

    With rotation, each window goes to the file of its hour or day; any file that would pass
    an Excel sheet's rows goes on in the next of its series (traffic-2.csv...); after each
    write, the oldest files of the series go when --keep or --max-disk asks.
    """

    name = "csv"
    unit = "rows"
    label = "rows"

    def __init__(self, path: Path, delimiter: str, warn: Say, info: Say, rotate: str = "none",
                 keep: int | None = None, max_bytes: int | None = None,
                 max_rows: int = EXCEL_MAX_ROWS - 1, utc: bool = False,
                 max_waiting_bytes: int = MAX_WAITING_BYTES, fsync: bool = False,
                 sync_seconds: float = CSV_SYNC_SECONDS) -> None:
        super().__init__(warn, info)
        self.path = path
        self.delimiter = delimiter
        self.rotate, self.keep, self.max_bytes, self.max_rows = rotate, keep, max_bytes, max_rows
        self.utc = utc
        self.max_waiting_bytes = max_waiting_bytes
        self.fsync = fsync  # every window synced, and the folder when a file is created
        self.sync_seconds = sync_seconds
        # Per file written since its last sync: where those writes began, and their windows
        # (file, CSV text, rows), kept until the sync: a sync that fails means they may not
        # be on the disk, and they are written again.
        self._unsynced: dict[Path, tuple[int, list[tuple[Path, str, int]]]] = {}
        self._unsynced_bytes = 0
        self._sync_next = -math.inf  # when the next sync is due (monotonic)
        self._sync_error: OSError | None = None  # the last sync refused, if the file still waits
        self._waiting_bytes = 0  # text held while the CSV refuses it
        self._spill: dict[Path, Path] = {}  # a refused file -> its side file, this outage
        # (file, CSV text, rows) per window, in order
        self._waiting: deque[tuple[Path, str, int]] = deque()
        self._blocked_since: float | None = None
        self.rows_queued = 0  # put by the capture, not yet written
        self.side_files_made: list[Path] = []
        # Per file a window may go to (its rotation's name): the number of its series' file in
        # use (numbered()), and the rows that file holds with those queued for it.
        self._files: dict[Path, tuple[int, int]] = {}
        self._over_cap_said = False
        self._newest: Path | None = None  # the rotation name of the newest window's file

    def check(self) -> None:
        check_output(self.path, self.delimiter)

    def open(self) -> None:
        if self.rotate == "none":
            # The header is synced by the sink's thread, at once: not on the capture's way.
            created = create_output(self.path, self.delimiter, sync=False)
            self._repair(self.path)
            # The header, if that was all it held
            created = create_output(self.path, self.delimiter, sync=False) or created
            if created:  # nothing to write again if its sync fails: the header is rewritten
                self._unsynced[self.path] = (0, [])
        else:  # files come with their hours or days; only the folder now
            make_folder(self.path)

    def _repair(self, path: Path) -> None:
        try:
            torn = repair_torn_end(path)
        except OSError as error:
            raise OutputError(f"cannot repair {path}: {error.strerror or error}") from None
        if torn:
            shown = torn[:100].decode("utf-8", "replace")
            self.warn(f"{path} ended in a partial line (a crash or power loss while it was "
                      f"written); removed it so that no row is glued to it: {shown!r}")

    def window(self, window: ClosedWindow) -> None:
        """Never blocks, and leaves building the rows to the sink's thread."""
        if len(window):
            self.rows_queued += len(window)
            super().window(window)

    def pending(self) -> int:
        return self.rows_queued - self.written

    def side_files(self) -> tuple[Path, ...]:
        return tuple(self.side_files_made)

    def summary_target(self) -> str:
        return str(self.path)

    def status_fields(self) -> dict[str, Any]:
        return {"csv": str(self.path), "rows_written": self.written,
                "rows_pending": self.pending()}

    def handle_window(self, window: ClosedWindow) -> None:
        target = rotated_path(self.path, self.rotate, window.start_s, self.utc)
        if self._newest is None or target.name >= self._newest.name:  # names sort by time
            self._newest = target
        text = format_window(window, self.delimiter, self.utc)
        self._waiting.append((self._file_for(target, len(window)), text, len(window)))
        self._waiting_bytes += len(text)

    def _file_for(self, target: Path, rows: int) -> Path:
        """The file of target's series that takes `rows` more without passing a sheet."""
        if target not in self._files:
            self._files[target] = self._current_of(target)
        number, held = self._files[target]
        if held and held + rows > self.max_rows:
            full = numbered(target, number)
            number, held = number + 1, count_rows(numbered(target, number + 1))
            self.info(f"{full} holds the {self.max_rows:,} rows an Excel sheet takes: the next "
                      f"rows go to {numbered(target, number)}")
        self._files[target] = (number, held + rows)
        return numbered(target, number)

    def _current_of(self, target: Path) -> tuple[int, int]:
        """On first use (a restart appends): the last existing file of the series."""
        number = 1
        while numbered(target, number + 1).exists():
            number += 1
        path = numbered(target, number)
        if path.exists() and path != self.path:  # --out itself was repaired at open
            self._repair(path)
        return number, count_rows(path)

    def poll_seconds(self) -> float | None:
        if self.failed is not None:
            return None
        if self._waiting:
            return RETRY_INTERVAL_SECONDS
        if self._unsynced:
            return max(0.0, self._sync_next - time.monotonic())
        return None

    def _sync_due(self) -> bool:
        return (self.fsync or time.monotonic() >= self._sync_next
                or self._unsynced_bytes > MAX_UNSYNCED_BYTES)

    def _synced(self, path: Path) -> None:
        """The file is on the disk as written so far."""
        _, windows = self._unsynced.pop(path, (0, []))
        self._unsynced_bytes -= sum(len(text) for _, text, _ in windows)
        if not self._unsynced:
            self._sync_next = time.monotonic() + self.sync_seconds
            self._sync_error = None

    def flush(self) -> None:
        self._write_waiting()
        if self._unsynced and self._sync_due():
            self._sync_written()

    def _sync_written(self) -> None:
        """fsync the files written since their last sync. When one refuses, the rows written
        since may not be on the disk (Linux reports a failed write-back once, then forgets
        it): the file is cut back to where they began and they are written again, as after
        a failed write. A file that cannot even be cut back (Excel holds it, on Windows) is
        tried again a second later."""
        for path in sorted(self._unsynced):
            try:
                durable.sync_file(path)
            except FileNotFoundError:  # removed since (--keep, --max-disk): nothing to sync
                pass
            except OSError as error:
                self._sync_error = error
                self._sync_next = time.monotonic() + RETRY_INTERVAL_SECONDS
                self._write_again(path, error)
                continue
            self._synced(path)

    def _write_again(self, path: Path, error: OSError) -> None:
        start, windows = self._unsynced[path]
        if not windows:  # a new file's header alone: its sync is tried again
            return
        try:
            cut_back(path, start)
        except OSError:  # not even that now (Excel holds it): the sync is tried again later
            return
        del self._unsynced[path]
        texts = sum(len(text) for _, text, _ in windows)
        self._unsynced_bytes -= texts
        self._waiting.extendleft(reversed(windows))  # before the later ones, in order
        self._waiting_bytes += texts
        self.written -= sum(rows for _, _, rows in windows)
        if self._blocked_since is None:
            self._blocked_since = time.monotonic()
            self.warn(blocked_advice(path, error))

    def abandon(self) -> None:
        """The sink stopped on an error: what it wrote is synced, if it can be."""
        for path in list(self._unsynced):
            with contextlib.suppress(OSError):
                durable.sync_file(path)

    def _write_waiting(self) -> None:
        written = 0
        while self._waiting:
            path, group, text, rows = self._next_group()
            try:  # synced by flush() (_sync_written), which writes again what a sync loses
                start = append_text(path, text, self.delimiter, self.fsync, sync=False)
            except OSError as error:
                self._waiting.extendleft(reversed(group))  # in order, for the next try
                if self._blocked_since is None:
                    self._blocked_since = time.monotonic()
                    self.warn(blocked_advice(path, error))
                if path in self._unsynced:  # a write-back that failed may hold them too
                    self._write_again(path, error)
                if self._waiting_bytes > self.max_waiting_bytes:
                    self._spill_oldest()
                return
            self._unsynced.setdefault(path, (start, []))[1].extend(group)
            self._unsynced_bytes += len(text)
            self._waiting_bytes -= len(text)
            self.written += rows
            written += rows
        if self._blocked_since is not None:
            waited = time.monotonic() - self._blocked_since
            self._blocked_since = None
            self._spill.clear()
            self.info(f"{self.path} is writable again: wrote {written} waiting rows "
                      f"after {waited:.0f} s")
        if written and (self.keep is not None or self.max_bytes is not None):
            self._apply_caps()

    def _spill_oldest(self) -> None:
        """Memory is bounded while the CSV refuses rows for hours: the oldest half of what
        waits goes, in order, to a side file beside its file (one per outage, appended to)."""
        while self._waiting and self._waiting_bytes > self.max_waiting_bytes // 2:
            path, text, rows = self._waiting[0]
            side = self._spill.get(path)
            try:
                if side is None:
                    side = self._spill[path] = write_side_file(path, text, self.delimiter)
                    self.side_files_made.append(side)
                    self.warn(f"{path} has refused rows for {self._blocked_for():.0f} s and "
                              f"they pass {self.max_waiting_bytes // 2**20} MiB in memory: the "
                              f"oldest go to {side} in order; append it to {path} later")
                else:
                    append_text(side, text, self.delimiter)
            except OSError as error:
                self.warn(f"cannot spill the waiting rows beside {path} either "
                          f"({error.strerror or error}): they stay in memory")
                return
            self._waiting.popleft()
            self._waiting_bytes -= len(text)
            self.written += rows

    def _blocked_for(self) -> float:
        return 0.0 if self._blocked_since is None else time.monotonic() - self._blocked_since

    def _apply_caps(self) -> None:
        """Remove the series' oldest files past --keep / --max-disk, never a current one."""
        pattern = series_pattern(self.path)
        files = []
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.path.parent if str(self.path.parent) else "."):
                if pattern.fullmatch(entry.name) and entry.is_file():
                    stat = entry.stat()
                    files.append(SeriesFile(Path(entry.path), stat.st_size, stat.st_mtime))
        # The file the newest rows go to; older hours' and days' files, and the full sheets
        # before it, may go.
        assert self._newest is not None
        number, _ = self._files[self._newest]
        current = {f.path for f in files if f.path.name == numbered(self._newest, number).name}
        for path in to_remove(files, current, self.keep, self.max_bytes):
            try:
                path.unlink()
            except OSError as error:
                self.warn(f"cannot remove {path} (--keep/--max-disk): {error.strerror}")
            else:
                self.info(f"removed {path} (--keep/--max-disk)")
        kept = sum(f.size for f in files if f.path.exists())
        if self.max_bytes is not None and kept > self.max_bytes and not self._over_cap_said:
            self._over_cap_said = True
            self.warn(f"the current file alone takes more than --max-disk "
                      f"({kept:,} > {self.max_bytes:,} bytes): rotate more often "
                      "(--rotate hourly) or raise the cap")

    def finish(self) -> None:
        self._sync_next = -math.inf  # at the end, whatever was written is synced
        self.flush()
        self.retry_until_given_up(lambda: bool(self._waiting or self._unsynced))
        if self._waiting:
            self._save_to_side_files()
        if self._unsynced:
            error = self._sync_error
            reason = f" ({error.strerror or error})" if error is not None else ""
            self.warn(f"could not flush {', '.join(map(str, sorted(self._unsynced)))} to the "
                      f"disk{reason}: its rows are written, but a power loss now could lose the "
                      "last second's")

    def _next_group(self) -> tuple[Path, list[tuple[Path, str, int]], str, int]:
        """The waiting windows at the front that go to one file: taken off, with their text
        and row count (put them back in front, in order, if the write fails)."""
        path = self._waiting[0][0]
        group = []
        while self._waiting and self._waiting[0][0] == path:
            group.append(self._waiting.popleft())
        return path, group, "".join(t for _, t, _ in group), sum(r for _, _, r in group)

    def _save_to_side_files(self) -> None:
        """What each file still refuses, to a side file beside it (or in the state folder)."""
        while self._waiting:
            path, _, text, rows = self._next_group()
            self._waiting_bytes -= len(text)
            self._save_group(path, text, rows)

    def _save_group(self, path: Path, text: str, rows: int) -> None:
        for base in (folder / path.name for folder in side_file_folders(path)):
            try:
                side = write_side_file(base, text, self.delimiter)
            except OSError:
                continue
            self.side_files_made.append(side)
            self.written += rows
            self.warn(f"{path} still cannot be written: its {rows} waiting rows were "
                      f"saved to {side}; append them to it once it is free")
            return
        # Nowhere on disk takes them: the terminal is the last place they are not lost.
        self.warn(f"{path} and its side files cannot be written: printing the "
                  f"{rows} waiting rows here")
        sys.stderr.write(text)
        sys.stderr.flush()
