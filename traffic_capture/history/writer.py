"""The one writer of a history: closed windows in, Parquet parts out.

Called on an output's own thread with one closed window at a time (`add_window`), and
`flush()` every few seconds: that writes what is due as one flush (every level's rows of the
buffered windows, in a folder renamed into place whole), merges parts (compaction.py),
deletes the parts compaction covered and those past their keep (retention.py). No thread of
its own, no clock but the one `flush` is given.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from traffic_capture.durable import sync_folder
from traffic_capture.history import duck
from traffic_capture.history.compaction import GRACE_S, MERGE_FLUSHES, Merge, merges_due
from traffic_capture.history.layout import (
    IMPORTED,
    IMPORTED_PREFIX,
    INCOMING,
    TEMPORARY,
    Choice,
    Listing,
    Part,
    choose,
    compacted_path,
    flush_folder_name,
    flushed_name,
    list_store,
    next_seq,
)
from traffic_capture.history.periods import ladder, period_of
from traffic_capture.history.retention import DEFAULT_KEEP, Level, oldest_kept, parse_keep
from traffic_capture.history.store import HistoryError, WriterLock, check_folder
from traffic_capture.rules import CLASSES, IN, OUT

# A flush every 30 seconds: a `kill -9` loses at most that much of the history (the CSV has
# it), readers see the open period at most that late, and the open hour makes ~120 flushes,
# merged every MERGE_FLUSHES. Or sooner when this many rows wait (10,000 clients x 2
# directions a window: 5 windows, ~20 MB of memory).
FLUSH_SECONDS = 30.0
FLUSH_ROWS = 100_000
# A covered part is deleted this long after the part covering it was written: a reader's
# listing that missed the new part (renamed in while it listed) still finds the old ones.
DELETE_AFTER_S = 60.0
# Merges per flush() call: each may take seconds on a busy server's hour, and the output's
# thread has windows to take. close() and the importer do all that is due.
MERGES_PER_FLUSH = 1


class HistoryWriter:
    """Appends closed windows to the history at PATH; the one writer (others are refused)."""

    def __init__(self, path: str | Path, keep: str | Sequence[Level] = DEFAULT_KEEP,
                 server_name: str | None = None, *, flush_seconds: float = FLUSH_SECONDS,
                 flush_rows: int = FLUSH_ROWS, merge_flushes: int = MERGE_FLUSHES,
                 grace_s: int = GRACE_S, delete_after_s: float = DELETE_AFTER_S,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.root = Path(path)
        self.levels = parse_keep(keep) if isinstance(keep, str) else tuple(keep)
        self.server = server_name if server_name is not None else _host_name()
        self.flush_seconds, self.flush_rows = flush_seconds, flush_rows
        self.merge_flushes, self.grace_s = merge_flushes, grace_s
        self.delete_after_s = delete_after_s
        self._clock, self._wall_clock = clock, wall_clock
        duck.duckdb()  # the one-line error before anything is created
        check_folder(self.root, create=True)
        self._lock = WriterLock(self.root)
        try:
            self._con = duck.connect(threads=1)  # the capture has the other core
            # Big sums spill to the disk rather than take the machine's memory.
            self._con.execute("SET memory_limit = '1GB'")
            self._con.execute("SET temp_directory ="
                              f" {duck.literal(str(self.root / (TEMPORARY + 'duckdb')))}")
            for level in self.levels:
                (self.root / level.name).mkdir(exist_ok=True)
            (self.root / INCOMING).mkdir(exist_ok=True)
            _remove_temporary(self.root)
            listing = list_store(self.root)
        except BaseException:
            self._lock.close()
            raise
        self._seq = next_seq(listing.parts, listing.flush_folders)
        self.newest_end_s = max((part.last_end_s for part in listing.parts), default=0)
        self._frames: list[pd.DataFrame] = []
        # Windows as given, made into one frame at the flush (a frame per window costs more).
        self._windows: list[tuple[int, int, Sequence[str], np.ndarray, np.ndarray]] = []
        self._markers: list[str] = []
        self._buffered = 0
        self._first_buffered: float | None = None
        self.closed = False
        # Figures for the status line and the summary.
        self.rows_written = 0
        self.flushes = 0
        self.merges = 0
        self.deleted = 0

    # -- taking windows

    def add_window(self, start_s: int, end_s: int, clients: Sequence[str],
                   inbound: np.ndarray, counts: np.ndarray) -> None:
        """One closed window's rows, as the CSV gets them (a window may come again with late
        rows: they add up)."""
        finest = self.levels[0].seconds
        seconds = end_s - start_s
        if seconds <= 0 or finest % seconds or start_s % seconds:
            raise ValueError(f"a {seconds}-second window at {start_s} does not fit the"
                             f" {self.levels[0].name} resolution")
        if not len(clients):
            return
        self._windows.append((start_s, seconds, clients, inbound, counts))
        self._count(len(clients), end_s)

    def add_frame(self, rows: pd.DataFrame) -> None:
        """Rows with columns window_start, window_seconds, client_ip, direction and the
        classes' *_bytes (the importer's way in)."""
        if len(rows):
            self._frames.append(rows)
            self._count(len(rows), int((rows["window_start"] + rows["window_seconds"]).max()))

    def _count(self, rows: int, end_s: int) -> None:
        self._buffered += rows
        if self._first_buffered is None:
            self._first_buffered = self._clock()
        self.newest_end_s = max(self.newest_end_s, end_s)

    def add_marker(self, name: str) -> None:
        """An imported CSV's hash, written in the same flush as its rows."""
        self._markers.append(name)

    @property
    def buffered_rows(self) -> int:
        """Rows waiting for a flush (also those of flushes that failed: the disk full, the
        folder gone read-only); the output decides when to give them up (discard)."""
        return self._buffered

    def discard(self) -> int:
        """Give up the rows waiting (an output whose disk stays full); how many."""
        dropped = self._buffered
        self._frames, self._windows, self._markers = [], [], []
        self._buffered, self._first_buffered = 0, None
        return dropped

    def due(self) -> bool:
        if not self._buffered:
            return bool(self._markers)
        waited = self._clock() - (self._first_buffered or self._clock())
        return self._buffered >= self.flush_rows or waited >= self.flush_seconds

    # -- writing

    def flush(self, force: bool = False, merges: int | None = MERGES_PER_FLUSH) -> None:
        """Write what is due (everything with `force`), then merge, delete what is covered
        and what is past its keep."""
        if self.closed:
            raise HistoryError(f"history {self.root}: writer closed")
        try:
            self._write_flush(force)
            self.maintain(merges)
        except duck.duckdb().IOException as error:  # the rows stay buffered for a retry
            raise duck.as_os_error(error) from None

    def close(self, merges: int | None = MERGES_PER_FLUSH) -> None:
        """Write everything buffered and let the folder go to the next writer."""
        if self.closed:
            return
        try:
            self.flush(force=True, merges=merges)
        finally:
            self.closed = True
            with contextlib.suppress(Exception):
                self._con.close()
            self._lock.close()

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connection(self) -> Any:
        """The writer's DuckDB connection (the importer loads CSVs in it)."""
        return self._con

    def write_table(self, table: str, marker: str | None = None) -> None:
        """One flush of the rows of `table` (in `connection`, with the columns add_frame
        takes), with an imported CSV's marker: the rows and the marker appear together."""
        self._write_flush(force=True)
        newest = self._con.execute(
            f"SELECT max(window_start + window_seconds) FROM {table}").fetchall()[0][0]
        if newest is not None:
            self.newest_end_s = max(self.newest_end_s, int(newest))
        self._write_folder(table if newest is not None else None,
                           [marker] if marker else [])

    def _write_flush(self, force: bool = False) -> None:
        if not (force or self.due()) or (not self._buffered and not self._markers):
            return
        if self._windows:  # once: a flush that fails keeps its rows for the next try
            self._frames, self._windows = [pd.concat([*self._frames, _frame(self._windows)],
                                                     ignore_index=True)], []
        rows = pd.concat(self._frames, ignore_index=True) if self._frames else None
        if rows is not None:
            self._con.register("buffered", rows)
        try:
            self._write_folder("buffered" if rows is not None else None, self._markers)
        finally:
            if rows is not None:
                self._con.unregister("buffered")
        self.rows_written += self._buffered
        self._frames, self._windows, self._markers = [], [], []
        self._buffered, self._first_buffered = 0, None

    def _write_folder(self, source: str | None, markers: Sequence[str]) -> None:
        """One flush folder: every level's parts of `source`, and markers; renamed into
        place whole."""
        seq, self._seq = self._seq, self._seq + 1
        incoming = self.root / INCOMING
        temporary = incoming / f"{TEMPORARY}{flush_folder_name(seq)}-{uuid.uuid4().hex[:8]}"
        temporary.mkdir()
        try:
            if source is not None:
                self._write_levels(source, temporary)
            for marker in markers:
                (temporary / f"{IMPORTED_PREFIX}{marker}").touch()
            sync_folder(temporary)
            os.rename(temporary, incoming / flush_folder_name(seq))
            sync_folder(incoming)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        self.flushes += 1

    def _write_levels(self, source: str, folder: Path) -> None:
        """Each level's rows of `source`, one part per period: one query per level, cut by
        DuckDB's PARTITION_BY (an import of days of rows is not read once per hour)."""
        starts = self._con.execute(f"SELECT DISTINCT window_start FROM {source}"
                                   ).fetchnumpy()["window_start"].astype(np.int64)
        reference = min(self.newest_end_s, int(self._wall_clock()))
        for level in self.levels:
            kind = ladder(level.seconds)[0]
            floored = np.unique(starts // level.seconds * level.seconds)
            oldest = oldest_kept(level, reference)
            periods = [period for period in sorted({period_of(kind, start)
                                                    for start in floored.tolist()})
                       if oldest is None or period.end_s > oldest]  # else: gone at once
            if not periods:
                continue
            size = periods[0].end_s - periods[0].start_s  # an hour or a day: fixed in UTC
            scratch = folder / f"{TEMPORARY}{level.name}"
            select = duck.rollup_select(source, level.seconds, self.server,
                                        f"window_start >= {periods[0].start_s}")
            self._con.execute(
                f"COPY (SELECT *, window_start // {size} * {size} AS period FROM ({select})"
                f" ORDER BY window_start, client_ip, direction) TO {duck.literal(str(scratch))}"
                " (FORMAT parquet, PARTITION_BY (period), COMPRESSION zstd)")
            for period in periods:
                inside = floored[(floored >= period.start_s) & (floored < period.end_s)]
                target = folder / flushed_name(level.seconds, period, int(inside.min()),
                                               int(inside.max()) + level.seconds)
                written = sorted((scratch / f"period={period.start_s}").glob("*.parquet"))
                if len(written) == 1:
                    os.rename(written[0], target)
                else:  # DuckDB cut a large period in several files: one part per period
                    duck.copy_to(self._con, f"SELECT * FROM {duck.parts_source(written)}",
                                 target)
                _sync_file(target)
            shutil.rmtree(scratch)

    # -- upkeep

    def listing(self) -> tuple[Listing, Choice]:
        listing = list_store(self.root)
        return listing, choose(listing.parts)

    def maintain(self, merges: int | None = None) -> None:
        """Delete what is past its keep, do up to `merges` merges (None: all due), delete
        covered parts old enough, and empty flush folders."""
        listing, choice = self.listing()
        self._apply_retention(choice)
        done = 0
        while merges is None or done < merges:
            listing, choice = self.listing()
            ladders = {level.seconds: ladder(level.seconds) for level in self.levels}
            due = merges_due(choice.chosen, ladders, self.newest_end_s, self.grace_s,
                             self.merge_flushes)
            if not due:
                break
            self._merge(due[0])
            done += 1
        listing, choice = self.listing()
        self._delete_covered(choice)
        self._tidy_flush_folders(listing)

    def _merge(self, merge: Merge) -> None:
        target = compacted_path(self.root, merge.level_s, merge.period, merge.seq_lo,
                                merge.seq_hi, merge.first_start_s, merge.last_end_s)
        temporary = target.with_name(f"{TEMPORARY}{uuid.uuid4().hex}.parquet")
        parts = sorted(merge.parts, key=lambda part: (part.period.start_s, part.seq_lo))
        source = duck.parts_source([part.path for part in parts])
        # Parts of distinct periods share no window, and the finest rows are windows as
        # given (a late row may stay a row of its own): those are only put together, in
        # order, streaming; summing 14 M rows of a busy hour would take gigabytes.
        plain = merge.level_s == self.levels[0].seconds or _disjoint(parts)
        try:
            if not _linked(merge, temporary):
                if plain:
                    duck.copy_to(self._con, duck.plain_select(source), temporary, False)
                else:
                    duck.copy_to(self._con, duck.rollup_select(source, merge.level_s),
                                 temporary)
                _sync_file(temporary)
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(temporary)
            raise
        sync_folder(target.parent)
        self.merges += 1

    def _delete_covered(self, choice: Choice) -> None:
        now = self._wall_clock()
        for part, cover in choice.covered.items():
            try:
                if now - os.stat(cover.path).st_mtime >= self.delete_after_s:
                    self._delete(part)
            except FileNotFoundError:
                continue

    def _apply_retention(self, choice: Choice) -> None:
        reference = min(self.newest_end_s, int(self._wall_clock()))
        for level in self.levels:
            oldest = oldest_kept(level, reference)
            if oldest is None:
                continue
            for part in expired(choice, level.seconds, oldest):
                self._delete(part)

    def _delete(self, part: Part) -> None:
        try:
            os.remove(part.path)
            self.deleted += 1
        except FileNotFoundError:
            pass
        except PermissionError:
            pass  # Windows: a reader has it open; covered or expired, it is retried later

    def _tidy_flush_folders(self, listing: Listing) -> None:
        """A flush folder whose parts are all gone: its import markers move to imported/,
        then it goes."""
        for folder in listing.flush_folders:
            try:
                names = os.listdir(folder)
            except FileNotFoundError:
                continue
            if any(not name.startswith(IMPORTED_PREFIX) for name in names):
                continue
            if names:
                (self.root / IMPORTED).mkdir(exist_ok=True)
                for name in names:
                    (self.root / IMPORTED / name[len(IMPORTED_PREFIX):]).touch()
                sync_folder(self.root / IMPORTED)
                for name in names:
                    os.remove(folder / name)
            with contextlib.suppress(OSError):
                os.rmdir(folder)


def _disjoint(parts: Sequence[Part]) -> bool:
    """Parts (sorted by period) whose periods never overlap."""
    return all(before.period.end_s <= after.period.start_s
               for before, after in zip(parts, parts[1:], strict=False))


def _linked(merge: Merge, temporary: Path) -> bool:
    """A closed period held by one flush's part alone: that file, already summed, becomes the
    compacted part by a second name (the flush's name goes later, as any covered part)."""
    if len(merge.parts) != 1 or merge.parts[0].period != merge.period:
        return False
    try:
        os.link(merge.parts[0].path, temporary)
    except OSError:
        return False  # a file system without hard links: rewritten instead
    return True


def expired(choice: Choice, level_s: int, oldest_s: int) -> list[Part]:
    """The parts of a level (read or covered) whose whole period ended before `oldest_s`."""
    parts: Iterable[Part] = (*choice.chosen, *choice.covered)
    return [part for part in parts
            if part.level_s == level_s and part.period.end_s <= oldest_s]


def _frame(windows: Sequence[tuple[int, int, Sequence[str], np.ndarray, np.ndarray]]
           ) -> pd.DataFrame:
    """Windows' rows as one frame with add_frame's columns."""
    sizes = [len(clients) for _, _, clients, _, _ in windows]
    counts = np.concatenate([np.asarray(c, dtype=np.int64).reshape(-1, len(CLASSES))
                             for _, _, _, _, c in windows])
    columns: dict[str, Any] = {
        "window_start": np.repeat([start for start, *_ in windows], sizes).astype(np.int64),
        "window_seconds": np.repeat([seconds for _, seconds, *_ in windows], sizes
                                    ).astype(np.int64),
        "client_ip": [client for _, _, clients, _, _ in windows for client in clients],
        "direction": np.where(np.concatenate(
            [np.asarray(inbound, dtype=bool) for _, _, _, inbound, _ in windows]), IN, OUT),
    }
    for index, name in enumerate(duck.BYTE_COLUMNS):
        columns[name] = counts[:, index]
    return pd.DataFrame(columns)


def _remove_temporary(root: Path) -> None:
    """What a writer killed while writing left: never visible to readers, now gone."""
    for folder in (root, root / INCOMING, *(p for p in root.iterdir() if p.is_dir())):
        for path in folder.glob(f"{TEMPORARY}*"):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    path.unlink()


def _host_name() -> str:
    import socket

    return socket.gethostname() or "localhost"


def _sync_file(path: Path) -> None:
    """On the disk before it is renamed into place: a power cut leaves the old parts or the
    new one, never a new name over lost data."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
