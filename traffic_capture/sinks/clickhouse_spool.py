"""The spool of --clickhouse: batches waiting for ClickHouse, one file each, sent in order and
removed once ClickHouse took them; bounded, the oldest given up first (and counted).

Every batch goes through the spool, so a batch never exists only in memory once it is closed:
one that a killed daemon left is sent by the next run, with the same deduplication token
(the batch's identity and the hash of its bytes: see clickhouse_link.batch_token). A file
is ClickHouse's CSVWithNames format, the bytes sent as they are: the column names, then one
line a row (read it with any CSV reader, or `clickhouse local`). It is written whole under a
temporary name and renamed, so the spool never holds half a batch. Its name holds its place in the
order, its rows, its oldest window and its identity (random, made when the batch closed):
NNNNNNNNNNNN-ROWS-OLDEST-IDENTITY.csv. A spool of a version before identities holds names
without one; those batches keep the token they had.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from traffic_capture.durable import sync_folder, try_lock
from traffic_capture.errors import TrafficCaptureError

BATCH_NAME = re.compile(r"(\d{12})-(\d+)-(\d+)(?:-([0-9a-f]{16}))?\.csv\Z")
LOCK = "spool.lock"
REJECTED = "rejected"  # batches ClickHouse cannot read, set aside (never sent again)
_TEMPORARY = ".tmp-"


class SpoolError(TrafficCaptureError):
    """The spool folder cannot be used (not writable, or another daemon's)."""


@dataclass(frozen=True)
class SpooledBatch:
    path: Path
    sequence: int
    rows: int
    oldest_start: int  # the oldest window_start in it (epoch seconds)
    size: int
    identity: str = ""  # see new_identity ("" in a spool an older version wrote)

    def read(self) -> bytes:
        return self.path.read_bytes()


def new_identity() -> str:
    """A closed batch's own name: two batches of the same bytes (a window closed again with
    the same late bytes as an earlier batch) are two inserts, never one deduplicated."""
    return secrets.token_hex(8)


def batch_name(sequence: int, rows: int, oldest_start: int, identity: str) -> str:
    return f"{sequence:012d}-{rows}-{oldest_start}-{identity}.csv"


class Spool:
    """The folder of waiting batches, oldest first. One daemon at a time (a lock file)."""

    def __init__(self, folder: Path, max_bytes: int, fsync: bool = False) -> None:
        self.folder, self.max_bytes, self.fsync = folder, max_bytes, fsync
        self.batches: list[SpooledBatch] = []  # in sending order
        self.size = 0
        self._next = 1
        self._lock: int | None = None

    @property
    def rows(self) -> int:
        return sum(batch.rows for batch in self.batches)

    def check(self) -> None:
        """Before anything is created: the folder is (or can become) writable, and no other
        daemon uses it."""
        folder = self.folder
        if folder.exists():
            if not folder.is_dir():
                raise SpoolError(f"--clickhouse-spool {folder} is not a folder")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise SpoolError(f"--clickhouse-spool {folder} cannot be written (permission "
                                 "denied, or a read-only file system)")
            if (folder / LOCK).exists():
                self._take_lock()
                self.close()
            return
        parent = folder.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise SpoolError(f"--clickhouse-spool {folder}: cannot create it: {parent} cannot "
                             "be written (permission denied, or a read-only file system)")

    def open(self) -> list[SpooledBatch]:
        """Create the folder, hold it, and take up what an earlier run left (returned)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise SpoolError(f"cannot create --clickhouse-spool {self.folder}: "
                             f"{error.strerror or error}") from None
        self._take_lock()
        found = []
        for entry in os.scandir(self.folder):
            if entry.name.startswith(_TEMPORARY):  # a write a crash cut short: never sent
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                continue
            match = BATCH_NAME.match(entry.name)
            if match and entry.is_file():
                sequence, rows, oldest = (int(part) for part in match.groups()[:3])
                found.append(SpooledBatch(Path(entry.path), sequence, rows, oldest,
                                          entry.stat().st_size, match.group(4) or ""))
        found.sort(key=lambda batch: batch.sequence)
        self.batches = found
        self.size = sum(batch.size for batch in found)
        self._next = found[-1].sequence + 1 if found else 1
        return list(found)

    def add(self, data: bytes, rows: int, oldest_start: int,
            identity: str) -> list[SpooledBatch]:
        """Write a batch whole; past max_bytes, the oldest batches go (returned), never the
        newest. OSError when the disk refuses it (nothing is left behind then)."""
        name = batch_name(self._next, rows, oldest_start, identity)
        path = self.folder / name
        temporary = self.folder / f"{_TEMPORARY}{name}"
        try:
            with temporary.open("xb") as out:
                out.write(data)
                out.flush()
                if self.fsync:
                    os.fsync(out.fileno())
            os.replace(temporary, path)
        except OSError:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
        if self.fsync:
            sync_folder(self.folder)
        self._next += 1
        self.batches.append(SpooledBatch(path, self._next - 1, rows, oldest_start, len(data),
                                          identity))
        self.size += len(data)
        return self.trim()

    def trim(self) -> list[SpooledBatch]:
        """The oldest batches out while the spool passes max_bytes (returned)."""
        dropped = []
        while self.size > self.max_bytes and len(self.batches) > 1:
            oldest = self.batches[0]
            self.remove(oldest)
            dropped.append(oldest)
        return dropped

    def oldest(self) -> SpooledBatch | None:
        return self.batches[0] if self.batches else None

    def remove(self, batch: SpooledBatch) -> None:
        """A batch ClickHouse took (or one given up): gone from the folder and the order."""
        with contextlib.suppress(FileNotFoundError):
            batch.path.unlink()
        self.batches.remove(batch)
        self.size -= batch.size

    def set_aside(self, batch: SpooledBatch) -> Path:
        """A batch ClickHouse cannot read: kept for a look, never sent again."""
        aside = self.folder / REJECTED
        aside.mkdir(exist_ok=True)
        target = aside / batch.path.name
        os.replace(batch.path, target)
        self.batches.remove(batch)
        self.size -= batch.size
        return target

    def close(self) -> None:
        """Let go of the folder (the files stay for the next run)."""
        if self._lock is not None:
            os.close(self._lock)  # closing the file releases the lock, on both systems
            self._lock = None

    def _take_lock(self) -> None:
        path = self.folder / LOCK
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise SpoolError(f"--clickhouse-spool {self.folder}: cannot open {LOCK}: "
                             f"{error.strerror or error}") from None
        if not try_lock(descriptor):
            os.close(descriptor)
            raise SpoolError(f"--clickhouse-spool {self.folder} is used by another running "
                             "daemon; give each its own --clickhouse-spool")
        self._lock = descriptor
