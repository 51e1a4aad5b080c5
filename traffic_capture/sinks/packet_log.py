"""The packet log: one JSON object per line (NDJSON) for every counted packet.

The keys (KEYS) are an interface other tools read: they stay as they are, and a field that does
not apply is null, never missing. The file is created readable by its owner only (payloads can
hold passwords), rotated by size when asked, and written on the sink's own thread: a full or
locked disk holds lines in memory up to a bound, then counts them as dropped from the log (the
CSV never loses a byte for it), and the status line says how many.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import multiprocessing
import os
import queue
import signal
import threading
import time
from datetime import datetime
from json.encoder import encode_basestring_ascii
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from traffic_capture.errors import TrafficCaptureError
from traffic_capture.parse import address_text, payload_spans, tcp_flags_text
from traffic_capture.pipeline import CountedPackets
from traffic_capture.rules import CLASSES, IN, OUT, RETRY_INTERVAL_SECONDS
from traffic_capture.sinks import Say, Sink

# The stable keys, in the order every line has them.
KEYS = ("ts", "src", "dst", "sport", "dport", "proto", "class", "direction", "client",
        "ip_bytes", "tcp_flags", "payload_len", "md5", "preview", "truncated", "payload_hex")
PREVIEW_BYTES = 64  # payload bytes shown in `preview`
FILE_MODE = 0o600  # owner only: payloads can hold passwords and personal data
# Lines held in memory while the disk refuses them; beyond, they are dropped from the log.
MAX_WAITING_LINES = 200_000
# Queued frame bytes (the tap's copies) the capture may hand over before it drops batches.
MAX_QUEUED_BYTES = 64 * 1024 * 1024
# The formatting process's niceness: on a busy server the CPU goes to the kernel and the
# capture first (the log then falls behind and drops lines, counted; the CSV keeps every byte).
FORMAT_NICENESS = 10

_PRINTABLE = bytes(b if 0x20 <= b < 0x7F else 0x2E for b in range(256))


class PacketLogError(TrafficCaptureError):
    """The packet log cannot be used at all (a directory, no folder...); the message says why."""


def preview(payload: bytes, limit: int = PREVIEW_BYTES) -> str:
    """The first `limit` bytes as text: printable ASCII (space to ~) as it is, any other byte
    (control characters, tabs, newlines, bytes >= 0x7f) as '.'; one character per byte."""
    return payload[:limit].translate(_PRINTABLE).decode("ascii")


class TimeText:
    """ISO 8601 local time with microseconds and the UTC offset, e.g.
    2024-05-01T14:03:07.123456+02:00; the text of each second is worked out once."""

    def __init__(self) -> None:
        self._seconds: dict[int, tuple[str, str]] = {}

    def __call__(self, ts_ns: int) -> str:
        second, micro = divmod(ts_ns // 1000, 1_000_000)
        date, offset = self.parts(second)
        return f"{date}.{micro:06d}{offset}"

    def parts(self, second: int) -> tuple[str, str]:
        """('2024-05-01T14:03:07', '+02:00') for a second since the epoch."""
        parts = self._seconds.get(second)
        if parts is None:
            if len(self._seconds) > 4096:
                self._seconds.clear()
            text = datetime.fromtimestamp(second).astimezone().isoformat(timespec="seconds")
            parts = self._seconds[second] = (text[:19], text[19:])
        return parts


class AddressText:
    """Address texts for the tap's (is6, hi, lo) columns, each distinct address converted once
    and remembered (a few hosts send most packets)."""

    def __init__(self) -> None:
        # An IPv4 address by its int, an IPv6 one by (hi, lo).
        self._known: dict[int | tuple[int, int], str] = {}

    def __call__(self, is6: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> list[str]:
        keys: list[int] | list[int | tuple[int, int]]
        if is6.any():
            keys = [(h, low) if six else low
                    for six, h, low in zip(is6.tolist(), hi.tolist(), lo.tolist(), strict=True)]
        else:
            keys = lo.tolist()
        known = self._known
        return [known.get(key) or self._learn(key) for key in keys]

    def _learn(self, key: int | tuple[int, int]) -> str:
        if len(self._known) > 65536:
            self._known.clear()
        if isinstance(key, tuple):
            packed = key[0].to_bytes(8, "big") + key[1].to_bytes(8, "big")
        else:
            packed = key.to_bytes(4, "big")
        text = self._known[key] = address_text(packed)
        return text


# JSON text by value, looked up rather than formatted per packet (-1, "absent", is the last).
_PORT_TEXT = [str(port) for port in range(65536)] + ["null"]
_FLAGS_TEXT = [f'"{tcp_flags_text(flags)}"' for flags in range(256)] + ["null"]
_CLASS_TEXT = [encode_basestring_ascii(name) for name in CLASSES]


def _number(value: int) -> str:
    return _PORT_TEXT[value] if value < 65536 else str(value)


class LineFormatter:
    """CountedPackets -> NDJSON lines (with the newline), keys in KEYS order. Columns are worked
    out per batch with numpy; only the payload's MD5, preview and the line are per packet."""

    def __init__(self, with_payload: bool) -> None:
        self.with_payload = with_payload
        self.time_text = TimeText()
        self.address = AddressText()

    def times(self, ts_ns: np.ndarray) -> list[str]:
        micro = ts_ns // 1000
        seconds, micros = (micro // 1_000_000).tolist(), (micro % 1_000_000).tolist()
        text = self.time_text.parts
        return [f"{p[0]}.{m:06d}{p[1]}" for p, m in zip(map(text, seconds), micros,
                                                         strict=True)]

    def lines(self, packets: CountedPackets) -> list[str]:
        frames = packets.frames
        if frames is None or not len(packets):
            return []
        buffer = frames.data.tobytes()
        payload_at, payload_len, flags = payload_spans(frames)
        known = payload_at >= 0
        begin = frames.starts + np.where(known, payload_at, 0)
        captured = np.where(known, np.clip(frames.lengths - payload_at, 0, payload_len), 0)
        truncated = np.where(known, np.where(captured < payload_len, 1, 0), 2).tolist()
        truncated_text = ("false", "true", "null")
        src = self.address(packets.is6, packets.src_hi, packets.src_lo)
        dst = self.address(packets.is6, packets.dst_hi, packets.dst_lo)
        inbound = packets.inbound.tolist()
        md5, with_payload = hashlib.md5, self.with_payload
        ports, flag_text = _PORT_TEXT, _FLAGS_TEXT
        out = []
        for (ts, source, destination, sport, dport, proto, protocol_class, is_in, ip_bytes,
             tcp_flags, length, start, size, cut) in zip(
                self.times(frames.ts_ns), src, dst, packets.sport.tolist(),
                packets.dport.tolist(), packets.proto.tolist(), packets.protocol_class.tolist(),
                inbound, packets.ip_bytes.tolist(), flags.tolist(), payload_len.tolist(),
                begin.tolist(), captured.tolist(), truncated, strict=True):
            if size:
                payload = buffer[start:start + size]
                digest = f'"{md5(payload).hexdigest()}"'
                shown = encode_basestring_ascii(
                    payload[:PREVIEW_BYTES].translate(_PRINTABLE).decode("ascii"))
                payload_text = f'"{payload.hex()}"' if with_payload else "null"
            else:
                digest = "null"
                shown = '""' if length >= 0 else "null"
                payload_text = '""' if with_payload and length >= 0 else "null"
            out.append(
                f'{{"ts":"{ts}","src":"{source}","dst":"{destination}",'
                f'"sport":{ports[sport]},"dport":{ports[dport]},"proto":{proto},'
                f'"class":{_CLASS_TEXT[protocol_class]},"direction":"{IN if is_in else OUT}",'
                f'"client":"{source if is_in else destination}","ip_bytes":{ip_bytes},'
                f'"tcp_flags":{flag_text[tcp_flags]},"payload_len":{_number(length)},'
                f'"md5":{digest},"preview":{shown},"truncated":{truncated_text[cut]},'
                f'"payload_hex":{payload_text}}}\n')
        return out


class FormatWorker:
    """Formats lines in a process of its own: the capture thread never shares the GIL with the
    formatting (a thread waiting for the GIL loses up to a switch interval, 5 ms, at each of
    its numpy calls, and a live capture then falls behind the kernel). Batches go one at a
    time; the sink's bounded queue holds the next ones."""

    def __init__(self, with_payload: bool) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a capturing process
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_format_lines, args=(child, with_payload),
                                        name="traffic-capture-log", daemon=True)
        self._process.start()
        child.close()

    def lines(self, packets: CountedPackets) -> list[str]:
        self._conn.send(packets)
        text: str = self._conn.recv()
        return text.splitlines(keepends=True)

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._conn.send(None)
        self._process.join(5)
        if self._process.is_alive():
            self._process.terminate()
        self._conn.close()


def _format_lines(conn: Connection, with_payload: bool) -> None:
    """The formatting process: CountedPackets in, their lines (one str) out, until None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the capture decides when to stop
    if hasattr(os, "nice"):
        with contextlib.suppress(OSError):
            os.nice(FORMAT_NICENESS)
    formatter = LineFormatter(with_payload)
    while True:
        try:
            packets = conn.recv()
        except (EOFError, OSError):
            return
        if packets is None:
            return
        conn.send("".join(formatter.lines(packets)))


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

    def write_lines(self, lines: list[str]) -> tuple[int, OSError | None]:
        """Append the lines, rotating where one would take the file past the limit (a line
        longer than the limit gets a file of its own). Returns how many lines were written and
        the error that stopped the rest (a failed write is cut back: no line is torn)."""
        if not self.max_bytes:
            return self._write_piece("".join(lines).encode("utf-8"), len(lines), 0)
        try:
            size = self._current_size()
        except OSError as open_error:
            return 0, open_error
        piece: list[bytes] = []
        piece_bytes, done = 0, 0
        for line in lines:
            data = line.encode("utf-8")
            if size + piece_bytes + len(data) > self.max_bytes and (size or piece):
                done, failure = self._write_piece(b"".join(piece), len(piece), done)
                if failure is None:
                    try:
                        self._rotate()
                    except OSError as rotate_error:
                        failure = rotate_error
                if failure is not None:
                    return done, failure
                piece, piece_bytes, size = [], 0, 0
            piece.append(data)
            piece_bytes += len(data)
        return self._write_piece(b"".join(piece), len(piece), done)

    def _current_size(self) -> int:
        self._ensure_open()
        return self._size

    def _write_piece(self, data: bytes, lines: int, done: int) -> tuple[int, OSError | None]:
        try:
            self._write(data)
        except OSError as error:
            return done, error
        return done + lines, None

    def _write(self, data: bytes) -> None:
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
    if path.is_dir():
        raise PacketLogError(f"packet log {path} is a directory; give a file name, e.g. "
                             f"{path / 'traffic.jsonl'}")


class PacketLogSink(Sink):
    """--packet-log PATH: a line per counted packet."""

    name = "log"
    unit = "lines"
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
        self.worker: FormatWorker | None = None
        # Reading files: the capture waits for the log rather than dropping lines, as long as
        # the disk takes them.
        self.lossless = lossless
        self.accepted = 0  # packets queued (capture thread)
        self.settled = 0  # packets written or dropped after being queued (sink thread)
        self._queued_bytes = 0
        self._bytes_lock = threading.Lock()
        self._waiting: list[str] = []  # formatted, not yet written
        self._blocked_since: float | None = None

    @staticmethod
    def size_of(item: object) -> int:
        return len(item) if isinstance(item, CountedPackets) else 1

    def check(self) -> None:
        check_log_path(self.path)

    def open(self) -> None:
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            os.close(open_owner_only(self.path))
        except OSError as error:
            raise PacketLogError(f"cannot create the packet log {self.path}: "
                                 f"{error.strerror or error}") from None
        self.worker = FormatWorker(self.with_payload)

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
                    if self.lossless:
                        self._queue.put(packets, timeout=0.2)
                    else:
                        self._queue.put_nowait(packets)
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
        if len(self._waiting) + len(packets) > MAX_WAITING_LINES:
            self.dropped += len(packets)
            self.settled += len(packets)
            return
        assert self.worker is not None, "handle_packets before open"
        self._waiting.extend(self.worker.lines(packets))

    def poll_seconds(self) -> float | None:
        return RETRY_INTERVAL_SECONDS if self._waiting else None

    def flush(self) -> None:
        if not self._waiting:
            return
        done, error = self.file.write_lines(self._waiting)
        if done and self.fsync:
            try:
                self.file.sync()
            except OSError as failure:
                error = error or failure
        if done:
            del self._waiting[:done]
            self.written += done
            self.settled += done
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
        self.retry_until_given_up(lambda: bool(self._waiting))
        if self._waiting:
            lost = len(self._waiting)
            self._waiting.clear()
            self.dropped += lost
            self.settled += lost
            self.warn(f"the packet log {self.path} still cannot be written: {lost:,} lines "
                      "were dropped from it (the CSV has their bytes)")
        with contextlib.suppress(OSError):
            self.file.sync()
        self.file.close()
        if self.worker is not None:
            self.worker.close()


__all__ = ["KEYS", "LineFormatter", "LogFile", "PacketLogSink", "preview"]
