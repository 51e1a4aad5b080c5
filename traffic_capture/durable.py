"""What keeps files safe on disk, for every writer (the CSV, the history, the ClickHouse
spool): a file or a folder synced so that what was written or named survives a power loss, and a
one-process lock that the system drops when its holder dies (kill -9 too), on both systems."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def sync_file(path: Path) -> None:
    """fsync a file written earlier and closed since. Opened for reading where fsync takes
    that (a file made read-only since can still be synced); for writing on Windows, which
    flushes only through a handle that may write (and refuses it while Excel holds the file:
    the caller tries again later)."""
    if sys.platform == "win32":
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_BINARY)
    else:
        descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def sync_folder(folder: Path) -> None:
    """fsync a folder, so that the names made or renamed in it are on disk. Not on Windows:
    folders cannot be opened to sync there, and NTFS journals its renames."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


if sys.platform == "win32":
    import msvcrt

    def try_lock(descriptor: int) -> bool:
        """Take the open file's lock without waiting (on Windows, one byte at the file's
        current position); False if another process holds it. Closing the file releases it."""
        try:
            msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
else:
    import fcntl

    def try_lock(descriptor: int) -> bool:
        """Take the open file's lock without waiting (the whole file, flock); False if
        another process holds it. Closing the file releases it."""
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True
