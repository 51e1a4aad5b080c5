"""Capture files: classic pcap read here in chunks (the commonest, and the one that must be
fast), pcapng and gzip-compressed files through scapy's raw readers.

Batches and records come out in the shapes live capture gives (timestamp in ns, link type,
frame bytes), so a file and a live capture of the same packets go through the same pipeline.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, Queue
from typing import Any, TypeVar

import numpy as np

from traffic_capture.batch import HEADER_BYTES, Batch, batch_of_frames
from traffic_capture.parse import IP_OFFSET, link_type_name
from traffic_capture.sources import record_walk
from traffic_capture.sources.records import Record

NS = 1_000_000_000
T = TypeVar("T")
PCAP_HEADER_BYTES = 24
CHUNK_BYTES = 4 * 1024 * 1024
READ_AHEAD = 1  # chunks read before the consumer asks for them
# tcpdump's largest snaplen is 262,144; a record claiming far more means a damaged file.
MAX_RECORD_BYTES = 16 * 262_144


class CaptureFileError(Exception):
    """A capture file that cannot be read at all; the message names it and says why."""


def _scapy_readers():  # noqa: ANN202 - scapy's reader classes
    # Imported here: scapy's import costs ~1 s and prints warnings, which `--help` need not pay.
    logging.getLogger("scapy").setLevel(logging.ERROR)
    from scapy.error import Scapy_Exception
    from scapy.utils import RawPcapNgReader, RawPcapReader

    return RawPcapReader, RawPcapNgReader, Scapy_Exception


@dataclass
class _ClassicPcap:
    """What a classic pcap's 24-byte file header says, in the attribute names of scapy's
    RawPcapReader, so that both open files alike."""

    endian: str
    nano: bool
    linktype: int

    def close(self) -> None:
        """Nothing stays open: the file is opened again to be read."""


# The magic number as it lies on disk: byte order, and whether timestamps are nanoseconds.
_CLASSIC_MAGIC = {b"\xd4\xc3\xb2\xa1": ("<", False), b"\xa1\xb2\xc3\xd4": (">", False),
                  b"\x4d\x3c\xb2\xa1": ("<", True), b"\xa1\xb2\x3c\x4d": (">", True)}


def _classic_pcap_header(path: Path) -> _ClassicPcap | None:
    """The header of an uncompressed classic pcap; None for anything else (scapy decides)."""
    try:
        with path.open("rb") as capture:
            header = capture.read(PCAP_HEADER_BYTES)
    except OSError:
        return None
    kind = _CLASSIC_MAGIC.get(header[:4])
    if kind is None or len(header) < PCAP_HEADER_BYTES:
        return None
    endian, nano = kind
    (linktype,) = struct.unpack_from(endian + "I", header, 20)
    return _ClassicPcap(endian, nano, linktype)


class CaptureFile:
    """One open capture file: its records, where reading has got to, whether it was cut short."""

    def __init__(self, path: Path, shown_as: Path | None = None) -> None:
        self.path = path
        self.shown_as = shown_as or path  # the user's file, when `path` is a filtered copy
        if not path.exists():
            raise CaptureFileError(f"capture file {path} not found")
        if path.is_dir():
            raise CaptureFileError(f"{path} is a folder, not a capture file")
        try:
            self.size = path.stat().st_size
        except OSError as error:
            raise CaptureFileError(f"cannot read {path}: {error.strerror}") from None
        if self.size == 0:
            raise CaptureFileError(f"capture file {path} is empty")
        self.truncated = False
        self._chunked_position: int | None = None
        classic = _classic_pcap_header(path)
        if classic is not None:
            # Classic pcap, by far the commonest: read without scapy, whose import alone
            # costs 0.15 s, a fifth of the time a million-packet file takes.
            self._reader: Any = classic
            self.is_pcapng = self.compressed = False
            self._chunked_position = 0
        else:
            self._open_with_scapy()
        if not self.is_pcapng and self._reader.linktype not in IP_OFFSET:
            raise CaptureFileError(
                f"{path}: {link_type_name(self._reader.linktype)} is not a link type this tool "
                "reads (Ethernet, Linux cooked v1/v2, raw IP, BSD/Npcap loopback)"
            )

    def _open_with_scapy(self) -> None:
        path = self.path
        raw_reader, pcapng_reader, scapy_exception = _scapy_readers()
        try:
            self._reader = raw_reader(str(path))
        except scapy_exception:
            raise CaptureFileError(
                f"{path} is not a pcap or pcapng capture file (or it is damaged)"
            ) from None
        except OSError as error:
            raise CaptureFileError(f"cannot read {path}: {error.strerror or error}") from None
        self.is_pcapng = isinstance(self._reader, pcapng_reader)
        # gzip files: the compressed size says nothing about where reading has got to.
        self.compressed = hasattr(self._reader.f, "fileobj")

    def position(self) -> int:
        """Bytes of the file read so far, for the progress bar."""
        if self._chunked_position is not None:
            return self._chunked_position
        try:
            inner = getattr(self._reader.f, "fileobj", self._reader.f)
            return int(inner.tell())
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        self._reader.close()

    def records(self) -> Iterator[Record]:
        """One record at a time (to merge several files by time)."""
        if self.is_pcapng:
            yield from self._pcapng_records()
        elif self.compressed:
            yield from self._pcap_records()
        else:
            for batch in self._chunked_pcap_batches():
                for i in range(len(batch)):
                    yield (int(batch.ts_ns[i]), batch.linktype, batch.frame(i))

    def batches(self) -> Iterator[Batch]:
        """The whole file in batches, for the vectorised path."""
        if self.is_pcapng or self.compressed:
            return batches_of_records(self.records())
        return self._chunked_pcap_batches()

    def _chunked_pcap_batches(self) -> Iterator[Batch]:
        """Classic pcap in chunks, one batch per chunk, read and walked ahead in a thread.

        The record walk (compiled) copies each record's header and first frame bytes into a
        table while the chunk is still in the CPU cache, and numpy reads every field from
        there: 1 M records in ~0.05 s where reading them one by one (scapy's way) takes 20 s.
        Reading and walking release the interpreter lock, so the next chunk is read on the
        second core while this one is counted. A batch's bytes are valid until the next
        batch is asked for.
        """
        reader = self._reader
        linktype, scale = reader.linktype, (1 if reader.nano else 1000)
        word = np.dtype(np.uint32).newbyteorder(reader.endian)
        for data, offsets, table in _read_ahead(self._walked_chunks()):
            yield _pcap_batch(data, offsets, table, word, scale, linktype)

    def _walked_chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(chunk, record offsets, header table) per chunk; a chunk's buffers are reused
        READ_AHEAD + 2 chunks later (one being filled, READ_AHEAD waiting, one in use)."""
        big_endian = self._reader.endian == ">"
        # An unfinished record is carried to the front (at most MAX_RECORD_BYTES), then a chunk.
        size = MAX_RECORD_BYTES + CHUNK_BYTES
        buffers = [bytearray(size) for _ in range(READ_AHEAD + 2)]
        offsets = [np.empty(size // 16 + 1, dtype=np.int64) for _ in buffers]  # records >= 16 B
        # Pages of np.empty are only taken as rows are written: a few MiB, not size * 7.
        tables = [np.empty((size // 16 + 1, _RECORD_ROW), dtype=np.uint8) for _ in buffers]
        kept, previous = 0, memoryview(b"")
        self._chunked_position = PCAP_HEADER_BYTES
        with self.path.open("rb", buffering=0) as capture:
            capture.seek(PCAP_HEADER_BYTES)
            for k in itertools.cycle(range(len(buffers))):
                buffer = buffers[k]
                if kept:
                    buffer[:kept] = previous  # the unfinished record of the previous chunk
                got = capture.readinto(memoryview(buffer)[kept:kept + CHUNK_BYTES])
                if not got:
                    break
                end = kept + got
                count, at = record_walk.walk(buffer, 0, end, offsets[k], big_endian, tables[k],
                                             _RECORD_ROW)
                self._chunked_position += at
                if count:
                    yield (np.frombuffer(buffer, dtype=np.uint8), offsets[k][:count],
                           tables[k][:count])
                kept = end - at
                if kept > MAX_RECORD_BYTES:  # damaged: no capture has records this big
                    self.truncated = True
                    return
                previous = memoryview(buffer)[at:end]
        self.truncated = kept > 0

    def _raw_records(self) -> Iterator[tuple[bytes, Any]]:
        """scapy's records; at the end, whether the file stopped at a record boundary.

        scapy ends quietly on a record cut short (it reads what is left and stops), so the
        check is ours: a killed capture must be said, not silently taken as complete.
        """
        reader = self._reader
        tell = reader.f.tell
        start = 0
        while True:
            start = tell()
            try:
                yield next(reader)
            except StopIteration:
                break
        if self.compressed or start >= self.size:
            return
        # Bytes were left after the last packet: truncation, unless they are whole pcapng
        # blocks without packets (the interface statistics dumpcap writes at the end).
        self.truncated = not (self.is_pcapng and _whole_pcapng_blocks(
            self.path, start, self.size, reader.endian))

    def _pcap_records(self) -> Iterator[Record]:
        reader = self._reader
        linktype = reader.linktype
        scale = 1 if reader.nano else 1000
        for frame, meta in self._raw_records():
            if len(frame) < min(meta.caplen, 65535):
                self.truncated = True  # the last record of a killed capture
                return
            yield (meta.sec * NS + meta.usec * scale, linktype, frame)

    def _pcapng_records(self) -> Iterator[Record]:
        last_ts = 0
        for frame, meta in self._raw_records():
            if meta.tshigh is not None:
                # tsresol is units per second (10**6 by default, 10**9 for nanosecond files).
                last_ts = ((meta.tshigh << 32) | meta.tslow) * NS // meta.tsresol
            yield (last_ts, meta.linktype, frame)


def _read_ahead(items: Iterator[T], depth: int = READ_AHEAD) -> Iterator[T]:
    """The items of `items`, made in a thread up to `depth` ahead of the consumer.

    Its errors are raised here, in order; when the consumer stops early, the thread stops too.
    """
    queue: Queue[tuple[bool, Any]] = Queue(maxsize=depth)
    stopped = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stopped.is_set():
                    return
                queue.put((True, item))
            queue.put((False, None))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
            queue.put((False, error))

    thread = threading.Thread(target=produce, name="capture-file-reader", daemon=True)
    thread.start()
    try:
        while True:
            more, item = queue.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stopped.set()
        while thread.is_alive():  # unblock a put() waiting on a full queue
            with contextlib.suppress(Empty):
                queue.get(timeout=0.01)
        thread.join()


# A row of the walk's table: the 16-byte record header, then the frame's first bytes.
_RECORD_ROW = 16 + HEADER_BYTES


def _pcap_batch(data: np.ndarray, offsets: np.ndarray, table: np.ndarray, word: np.dtype,
                scale: int, linktype: int) -> Batch:
    record = table[:, :16].view(word)  # (n, 4): seconds, fraction, caplen, original length
    seconds, fraction, caplen = (record[:, k].astype(np.int64) for k in range(3))
    return Batch(data, offsets + 16, caplen, seconds * NS + fraction * scale, linktype,
                 headers=table, headers_at=16)


def batches_of_records(records: Iterator[Record], size: int = 4096) -> Iterator[Batch]:
    """Group records (of scapy's readers, or merged files) into batches of one link type."""
    pending: list[Record] = []
    for record in records:
        if pending and (len(pending) >= size or record[1] != pending[0][1]):
            yield batch_of_frames(pending)
            pending = []
        pending.append(record)
    if pending:
        yield batch_of_frames(pending)


def _whole_pcapng_blocks(path: Path, start: int, size: int, endian: str) -> bool:
    """Do the bytes from `start` to the end form complete pcapng blocks?"""
    with path.open("rb") as capture:
        capture.seek(start)
        position = start
        while position < size:
            header = capture.read(8)
            if len(header) < 8:
                return False
            (block_length,) = struct.unpack(endian + "I", header[4:])
            if block_length < 12 or position + block_length > size:
                return False
            position += block_length
            capture.seek(position)
    return True


class PrefilterError(ValueError):
    """--filter cannot be applied to a file (no tcpdump, or a filter it rejects)."""


def prefilter(path: Path, expression: str, folder: Path) -> tuple[Path, bool]:
    """A copy of a capture holding only the packets `expression` keeps, and whether the
    original was cut short.

    libpcap's filter compiler is the only faithful reading of tcpdump syntax, and it runs
    packets only inside tcpdump (as scapy's own offline sniff does): so a file gets exactly
    the filter a live capture would.
    """
    import shutil
    import subprocess

    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        raise PrefilterError("--filter with --read needs tcpdump (Debian: apt install tcpdump); "
                             "or filter the file first with Wireshark's File > Export "
                             "Specified Packets")
    if not path.is_file():
        raise CaptureFileError(f"capture file {path} not found")
    filtered = folder / f"{path.name}.filtered.pcap"
    result = subprocess.run([tcpdump, "-n", "-r", str(path), "-w", str(filtered), "--",
                             expression], capture_output=True, text=True, errors="replace")
    message = " ".join(line for line in result.stderr.splitlines()
                       if not line.startswith("reading from file")).strip()
    truncated = "truncated" in message
    if result.returncode != 0 and not truncated:
        raise CaptureFileError(f"{path}: {message or 'tcpdump could not read it'}")
    return filtered, truncated


def open_capture_files(paths: list[Path], shown_as: list[Path] | None = None
                       ) -> list[CaptureFile]:
    """Open every file first, so that a bad one is reported before any is read."""
    files: list[CaptureFile] = []
    try:
        for path, name in zip(paths, shown_as or paths, strict=True):
            files.append(CaptureFile(path, name))
    except CaptureFileError:
        for opened in files:
            opened.close()
        raise
    return files


def merged_batches(files: list[CaptureFile]) -> Iterator[Batch]:
    """All files' packets in timestamp order, as one live capture on several interfaces."""
    if len(files) == 1:
        return files[0].batches()
    return batches_of_records(
        heapq.merge(*(capture.records() for capture in files), key=lambda record: record[0]))


def total_size(files: list[CaptureFile]) -> int:
    return sum(capture.size for capture in files)


def read_position(files: list[CaptureFile]) -> int:
    return sum(capture.position() for capture in files)


