"""The history's folder: what it is (a marker naming the format), and the one writer's lock.

The lock is an OS lock on PATH/writer.lock (fcntl on POSIX, msvcrt on Windows): the kernel
drops it when the process ends however it ends, so a `kill -9` never leaves a stale lock, and a
second writer (another daemon, an import) is refused in one line while the first runs.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from traffic_capture.durable import try_lock
from traffic_capture.errors import TrafficCaptureError
from traffic_capture.history.layout import FORMAT_VERSION, LOCK, MARKER, MARKER_PREFIX

# Windows locks a byte range, and a locked byte cannot be read: the pid is written before it.
_LOCKED_OFFSET = 64


class HistoryError(TrafficCaptureError):
    """A history folder that cannot be used as asked; the message is one line."""


def check_folder(root: Path, create: bool) -> None:
    """Refuse what is not a history of this format; with `create`, make an empty one."""
    if root.exists() and not root.is_dir():
        raise HistoryError(f"history {root}: is a file, not a history folder")
    if not root.exists():
        if not create:
            raise HistoryError(f"history {root}: no such folder")
        try:
            root.mkdir(parents=True)
        except OSError as exc:
            raise HistoryError(f"history {root}: cannot create: {exc.strerror or exc}"
                               ) from None
    names = set(os.listdir(root))
    versions = sorted(int(name[len(MARKER_PREFIX):]) for name in names
                      if name.startswith(MARKER_PREFIX) and name[len(MARKER_PREFIX):].isdigit())
    if any(version > FORMAT_VERSION for version in versions):
        raise HistoryError(f"history {root}: written by a newer traffic-capture (format"
                           f" {max(versions)}; this one reads format {FORMAT_VERSION})")
    if MARKER in names:
        return
    if names - {LOCK}:
        raise HistoryError(f"history {root}: not a traffic-capture history (no {MARKER} in"
                           " it, and not empty)")
    if not create:
        raise HistoryError(f"history {root}: empty folder, not a history yet")
    try:
        (root / MARKER).touch()
    except OSError as exc:
        raise HistoryError(f"history {root}: cannot write: {exc.strerror or exc}") from None


class WriterLock:
    """Held while a writer has the folder; released by close() or by the process's end."""

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise HistoryError(f"history {root}: cannot open {LOCK}:"
                               f" {exc.strerror or exc}") from None
        os.lseek(self._fd, _LOCKED_OFFSET, os.SEEK_SET)  # Windows locks the byte there
        if not try_lock(self._fd):
            holder = _read_pid(self._fd)
            os.close(self._fd)
            who = f" (pid {holder})" if holder else ""
            raise HistoryError(f"history {root}: another process is writing it{who};"
                               " one writer at a time")
        os.lseek(self._fd, 0, os.SEEK_SET)
        os.write(self._fd, f"{os.getpid()}\n".encode().ljust(_LOCKED_OFFSET - 1, b" "))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the file releases the lock, on both systems
            self._fd = -1


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        os.lseek(fd, 0, os.SEEK_SET)
        return int(os.read(fd, _LOCKED_OFFSET - 1).split()[0])
    return None
