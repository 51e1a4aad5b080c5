"""The packet log: one JSON object per line (NDJSON) for every counted packet.

The keys (log_lines.KEYS) are an interface other tools read: they stay as they are, and a field
that does not apply is null, never missing. The file is created readable by its owner only
(payloads can hold passwords), rotated by size when asked, reopened on SIGHUP (logrotate), and
written on the sink's own thread: a full or locked disk holds lines in memory up to a bound,
then counts them as dropped from the log (the CSV never loses a byte for it), and the status
line says how many.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import errno
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from traffic_capture import argtypes
from traffic_capture.errors import TrafficCaptureError, UsageError
from traffic_capture.rules import RETRY_INTERVAL_SECONDS
from traffic_capture.sinks import Notes, Output, OutputContext, Say, Sink

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

    from traffic_capture.pipeline import CountedPackets
    from traffic_capture.sinks.log_lines import Lines

FILE_MODE = 0o600  # owner only: payloads can hold passwords and personal data
# Lines held in memory while the disk refuses them; beyond, they are dropped from the log.
MAX_WAITING_LINES = 200_000
# Queued frame bytes (the tap's copies) the capture may hand over before it drops batches.
MAX_QUEUED_BYTES = 64 * 1024 * 1024
# Threads laying out lines (C, without the GIL): each takes a part of every batch.
RENDER_THREADS = 2
# Their niceness in a live capture (Linux: a thread's own): on a busy server the CPU goes to
# the kernel and the capture first (the log then falls behind and drops lines, counted; the
# CSV keeps every byte). Reading a file, they run at full speed: nothing can be lost there.
RENDER_NICENESS = 10
DEFAULT_KEEP = 5


class PacketLogError(TrafficCaptureError):
    """The packet log cannot be used at all (a directory, no folder...); the message says why."""


def _lower_priority() -> None:
    """In a render thread: yield the CPU to the capture (Linux sets a thread's own nice)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), RENDER_NICENESS)


def _render_process_start(live: bool) -> None:
    """In the render process: the capture decides when to stop, and in a live capture the CPU
    goes to it first."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if live and hasattr(os, "nice"):
        with contextlib.suppress(OSError):
            os.nice(RENDER_NICENESS)


def renderer(lossless: bool) -> tuple[Executor, int, Callable[..., Lines]]:
    """Where lines are laid out: (the executor, how many parts a batch is cut into, the
    function to run there)."""
    # Imported here: the executors' modules (multiprocessing above all) cost every run's
    # start-up ~6 ms, and only a run with a packet log uses them.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    from traffic_capture.sinks.log_lines import USE_COMPILED, render, render_python

    if USE_COMPILED:
        return (ThreadPoolExecutor(RENDER_THREADS, "traffic-capture-log-render",
                                   None if lossless else _lower_priority), RENDER_THREADS, render)
    context = multiprocessing.get_context("spawn")  # no fork of a capturing process
    return (ProcessPoolExecutor(1, context, _render_process_start, (not lossless,)), 1,
            render_python)


def rotated_name(path: Path, number: int) -> Path:
    """The name of the number-th older file: traffic.jsonl.1 is the newest of them."""
    return path.with_name(f"{path.name}.{number}")


def open_owner_only(path: Path) -> int:
    """An append descriptor on `path`, created with mode 0600; an existing file readable by
    others is narrowed to 0600 too (it is about to receive payloads)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0),
                 FILE_MODE)
    if hasattr(os, "fchmod"):
        try:
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, FILE_MODE)
        except OSError:
            os.close(fd)
            raise
    return fd


class LogFile:
    """The log file and its rotation: when the next lines would take it past `max_bytes`, it
    becomes PATH.1 (PATH.1 becomes PATH.2... and the oldest beyond `keep` is removed) and a new
    PATH is started. max_bytes 0: no rotation. Lines are never split across files."""

    def __init__(self, path: Path, max_bytes: int, keep: int) -> None:
        self.path, self.max_bytes, self.keep = path, max_bytes, keep
        self._fd: int | None = None
        self._size = 0

    def _ensure_open(self) -> int:
        if self._fd is None:
            self._fd = open_owner_only(self.path)
            self._size = os.lseek(self._fd, 0, os.SEEK_END)
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def write_lines(self, lines: Lines) -> tuple[int, OSError | None]:
        """Append the lines, rotating where one would take the file past the limit (a line
        longer than the limit gets a file of its own). Returns how many lines were written and
        the error that stopped the rest (a failed write is cut back: no line is torn)."""
        if not self.max_bytes:
            return self._write_piece(lines.data, len(lines), 0)
        data, ends = memoryview(lines.data), lines.ends
        done = written = 0  # lines, and their bytes
        while done < len(ends):
            try:
                size = self._current_size()
            except OSError as open_error:
                return done, open_error
            fit = bisect.bisect_right(ends, written + self.max_bytes - size)
            if fit <= done:  # the next line does not fit
                if size:
                    try:
                        self._rotate()
                    except OSError as rotate_error:
                        return done, rotate_error
                    continue
                fit = done + 1  # longer than the limit: alone in a file
            end = int(ends[fit - 1])
            done, failure = self._write_piece(data[written:end], fit - done, done)
            if failure is not None:
                return done, failure
            written = end
        return done, None

    def _current_size(self) -> int:
        self._ensure_open()
        return self._size

    def _write_piece(self, data: bytes | memoryview, lines: int, done: int
                     ) -> tuple[int, OSError | None]:
        try:
            self._write(data)
        except OSError as error:
            return done, error
        return done + lines, None

    def _write(self, data: bytes | memoryview) -> None:
        if not data:
            return
        fd = self._ensure_open()
        start = self._size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            self.close()
            raise
        self._size = start + len(data)

    def _rotate(self) -> None:
        self.close()
        oldest = rotated_name(self.path, self.keep)
        if self.keep:
            with contextlib.suppress(FileNotFoundError):
                oldest.unlink()
            for number in range(self.keep - 1, 0, -1):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(rotated_name(self.path, number),
                               rotated_name(self.path, number + 1))
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.path, rotated_name(self.path, 1))
        else:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._size = 0

    def sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)


def _frame_bytes(packets: CountedPackets) -> int:
    return int(packets.frames.data.nbytes) if packets.frames is not None else 0


def check_log_path(path: Path) -> None:
    """Refuse, before anything is created, a log that is a folder or whose folder cannot be
    made or written."""
    if path.is_dir():
        raise PacketLogError(f"packet log {path} is a directory; give a file name, e.g. "
                             f"{path / 'traffic.jsonl'}")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise PacketLogError(f"cannot write the packet log {path}: permission denied")
        return
    folder = path.parent if str(path.parent) else Path(".")
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the nearest folder that exists: it is where one is created
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise PacketLogError(f"cannot create the packet log {path}: {folder} cannot be "
                             "written (permission denied, or a read-only file system)")


class PacketLogSettings(NamedTuple):
    path: Path
    payload: bool = False  # each packet's captured payload in hex too
    max_bytes: int = 0  # rotate past this size; 0: no rotation
    keep: int = DEFAULT_KEEP  # rotated files kept besides PATH


class PacketLogOutput(Output[PacketLogSettings]):
    """--packet-log PATH and its options."""

    name = "log"
    title = "packet log and viewer"
    description = ("every counted packet, with a preview and MD5 of its payload: payloads can "
                   "hold passwords and personal data; the log is created readable by its owner "
                   "only")
    keeps_payloads = True

    def add_options(self, group: argparse._ActionsContainer) -> None:
        add = group.add_argument
        add("--packet-log", type=Path, metavar="PATH",
            help="also write one JSON object per counted packet to PATH (NDJSON)")
        add("--packet-log-payload", action="store_true",
            help="add each packet's captured payload in hex (payload_hex)")
        add("--packet-log-max-mb", type=argtypes.megabytes, default=0, metavar="MB",
            help="rotate the log when it would pass MB megabytes: PATH becomes PATH.1, "
                 "PATH.1 PATH.2... (default: no rotation)")
        add("--packet-log-keep", type=argtypes.count, default=DEFAULT_KEEP, metavar="N",
            help=f"rotated files kept besides PATH (default {DEFAULT_KEEP})")

    def settings(self, args: argparse.Namespace) -> PacketLogSettings | None:
        if not args.packet_log:
            for flag, given in (("--packet-log-payload", args.packet_log_payload),
                                ("--packet-log-max-mb", args.packet_log_max_mb),
                                ("--packet-log-keep", args.packet_log_keep != DEFAULT_KEEP)):
                if given:
                    raise UsageError(f"{flag} needs --packet-log PATH")
            return None
        return PacketLogSettings(args.packet_log, args.packet_log_payload,
                                 args.packet_log_max_mb, args.packet_log_keep)

    def build(self, settings: PacketLogSettings, context: OutputContext) -> Sink:
        return PacketLogSink(settings.path, settings.payload, settings.max_bytes, settings.keep,
                             context.lossless, context.warn, context.info, fsync=context.fsync)

    def service_folders(self, settings: PacketLogSettings) -> list[Path]:
        return [settings.path.parent]


OUTPUT = PacketLogOutput()


class PacketLogSink(Sink):
    """--packet-log PATH: a line per counted packet."""

    name = "log"
    unit = "lines"
    wants_windows = False
    wants_packets = True
    wants_frames = True
    max_queue = 1024  # batches; MAX_QUEUED_BYTES bounds their frames' bytes too

    def __init__(self, path: Path, with_payload: bool, max_bytes: int, keep: int,
                 lossless: bool, warn: Say, info: Say, fsync: bool = False) -> None:
        super().__init__(warn, info)
        self.path = path
        self.fsync = fsync  # each batch of lines to the disk before the next
        self.file = LogFile(path, max_bytes, keep)
        self.with_payload = with_payload
        from traffic_capture.sinks.log_lines import LineFormatter, render_python

        self.formatter = LineFormatter(with_payload)
        # Lines are laid out (in C, without the GIL) on a thread of their own while this one
        # prepares the next batch's columns: one batch at a time is rendering.
        self._renderer: Executor | None = None
        self._parts = 1
        self._render: Callable[..., Lines] = render_python
        self._rendering: list[Future[Lines]] = []  # the parts of one batch, in order
        self._rendering_lines = 0
        # Reading files: the capture waits for the log rather than dropping lines, as long as
        # the disk takes them.
        self.lossless = lossless
        self.accepted = 0  # packets queued (capture thread)
        self.settled = 0  # packets written or dropped after being queued (sink thread)
        self._queued_bytes = 0
        self._bytes_lock = threading.Lock()
        self._waiting: deque[Lines] = deque()  # formatted, not yet written
        self._waiting_lines = 0
        self._blocked_since: float | None = None

    @staticmethod
    def size_of(item: object) -> int:
        return len(item)  # type: ignore[arg-type]  # only packets come (no windows)

    def check(self) -> None:
        check_log_path(self.path)

    def summary_target(self) -> str:
        return str(self.path)

    def closing_notes(self) -> Notes:
        if not self.dropped:
            return []
        return [(True, f"packet log: {self.dropped:,} of {self.written + self.dropped:,} lines "
                       "were dropped (the log could not keep up, or the disk refused them); "
                       "the CSV counts every packet")]

    def handle_reopen(self) -> None:
        """SIGHUP (logrotate moved the log): the next lines go to a new file at PATH."""
        self.file.close()

    def open(self) -> None:
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            os.close(open_owner_only(self.path))
        except OSError as error:
            raise PacketLogError(f"cannot create the packet log {self.path}: "
                                 f"{error.strerror or error}") from None
        self._renderer, self._parts, self._render = renderer(self.lossless)
        self.info(f"packet log: {self.path} (readable by its owner only; it holds payload "
                  "previews" + (" and payloads" if self.with_payload else "") + ")")

    def pending(self) -> int:
        return self.accepted - self.settled

    # The capture thread's side: bounded by batches and by bytes; live capture never waits.
    def packets(self, packets: CountedPackets) -> None:
        count = len(packets)
        size = _frame_bytes(packets)
        while True:
            with self._bytes_lock:
                room = self._queued_bytes + size <= MAX_QUEUED_BYTES or not self._queued_bytes
                if room:
                    self._queued_bytes += size
            if room:
                try:
                    item = (self.handle_packets, packets)
                    if self.lossless:
                        self._queue.put(item, timeout=0.2)
                    else:
                        self._queue.put_nowait(item)
                except queue.Full:
                    with self._bytes_lock:
                        self._queued_bytes -= size
                else:
                    self.accepted += count
                    return
            if not self.lossless or self._blocked_since is not None or self.failed:
                self.dropped += count
                return
            time.sleep(0.01)  # reading a file: let the log catch up

    # The sink's thread.
    def handle_packets(self, packets: CountedPackets) -> None:
        with self._bytes_lock:
            self._queued_bytes -= _frame_bytes(packets)
        if not len(packets):
            return
        if self._waiting_lines + self._rendering_lines + len(packets) > MAX_WAITING_LINES:
            self.dropped += len(packets)
            self.settled += len(packets)
            return
        assert self._renderer is not None, "handle_packets before open"
        prepared = self.formatter.columns(packets)
        self._collect(wait=True)
        self._rendering = [self._renderer.submit(self._render, part, self.with_payload)
                           for part in prepared.parts(self._parts)]
        for part in self._rendering:
            part.add_done_callback(lambda _: self.wake())
        self._rendering_lines = len(packets)

    def _collect(self, wait: bool) -> None:
        """The rendered batch into the waiting lines (`wait`: once it is rendered). A batch
        that could not be rendered is counted as dropped, and the error stops the sink."""
        if not wait and not all(part.done() for part in self._rendering):
            return
        rendering, lines_in_it = self._rendering, self._rendering_lines
        self._rendering, self._rendering_lines = [], 0
        try:
            parts = [part.result() for part in rendering]
        except BaseException:
            self.dropped += lines_in_it
            self.settled += lines_in_it
            with contextlib.suppress(Exception):
                self.flush()  # the lines rendered before
            self._close(wait=False)
            raise
        for lines in parts:
            self._waiting.append(lines)
            self._waiting_lines += len(lines)

    def poll_seconds(self) -> float | None:
        return RETRY_INTERVAL_SECONDS if self._waiting else None

    def flush(self) -> None:
        self._collect(wait=False)
        if not self._waiting:
            return
        error: OSError | None = None
        wrote = False
        while self._waiting and error is None:
            block = self._waiting[0]
            done, error = self.file.write_lines(block)
            if done == len(block):
                self._waiting.popleft()
            elif done:
                self._waiting[0] = block.after(done)
            if done:
                wrote = True
                self._waiting_lines -= done
                self.written += done
                self.settled += done
        if wrote and self.fsync:
            try:
                self.file.sync()
            except OSError as failure:
                error = error or failure
        if error is not None:
            if self._blocked_since is None:
                self._blocked_since = time.monotonic()
                self.warn(self._blocked_advice(error))
            return
        if self._blocked_since is not None:
            self._blocked_since = None
            self.info(f"{self.path} is writable again: the waiting lines are written")

    def _blocked_advice(self, error: OSError) -> str:
        cause = ("the disk is full" if error.errno == errno.ENOSPC
                 else error.strerror or str(error))
        return (f"cannot write the packet log {self.path} ({cause}); capture and the CSV go "
                f"on, up to {MAX_WAITING_LINES:,} lines wait in memory, the rest are dropped "
                "from the log")

    def finish(self) -> None:
        self._collect(wait=True)
        self.flush()
        self.retry_until_given_up(lambda: bool(self._waiting))
        self._close(wait=True)

    def _close(self, wait: bool) -> None:
        """At the end (or when the sink stops on an error): lines still waiting are counted as
        dropped, the file is synced and closed, the renderers are let go."""
        if self._waiting:
            lost = self._waiting_lines
            self._waiting.clear()
            self._waiting_lines = 0
            self.dropped += lost
            self.settled += lost
            self.warn(f"the packet log {self.path} still cannot be written: {lost:,} lines "
                      "were dropped from it (the CSV has their bytes)")
        with contextlib.suppress(OSError):
            self.file.sync()
        self.file.close()
        if self._renderer is not None:
            self._renderer.shutdown(wait=wait, cancel_futures=True)
            self._renderer = None


__all__ = ["OUTPUT", "LogFile", "PacketLogSink"]
