"""Capture files (pcap, pcapng, gzip-compressed either) read with scapy's raw readers.

Records come out as (timestamp in ns, link type, frame bytes): the same shape live capture
gives, so a file and a live capture of the same packets go through the same pipeline.
"""

from __future__ import annotations

import array
import heapq
import logging
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from traffic_capture.batch import Batch, batch_of_frames
from traffic_capture.parse import IP_OFFSET, link_type_name
from traffic_capture.sources.records import Record

NS = 1_000_000_000
PCAP_HEADER_BYTES = 24
CHUNK_BYTES = 4 * 1024 * 1024
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
        if not self.is_pcapng and self._reader.linktype not in IP_OFFSET:
            raise CaptureFileError(
                f"{path}: {link_type_name(self._reader.linktype)} is not a link type this tool "
                "reads (Ethernet, Linux cooked v1/v2, raw IP, BSD/Npcap loopback)"
            )
        self.truncated = False
        self._chunked_position: int | None = None

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
        """Classic pcap in large chunks, one batch each: Python only walks from record to
        record (their lengths vary), numpy reads the rest. Twenty times faster than one read
        per record (scapy's way), which busy servers' multi-gigabyte captures need."""
        reader = self._reader
        linktype, scale = reader.linktype, (1 if reader.nano else 1000)
        caplen_at = struct.Struct(reader.endian + "I").unpack_from
        word = np.dtype(np.uint32).newbyteorder("<" if reader.endian == "<" else ">")
        self._chunked_position = PCAP_HEADER_BYTES
        buffer, at = b"", 0
        with self.path.open("rb") as capture:
            capture.seek(PCAP_HEADER_BYTES)
            while True:
                chunk = capture.read(CHUNK_BYTES)
                if not chunk:
                    break
                buffer, at = buffer[at:] + chunk, 0
                end = len(buffer)
                offsets = array.array("q")
                record_at = offsets.append
                while at + 16 <= end:
                    following = at + 16 + caplen_at(buffer, at + 8)[0]
                    if following > end:
                        break
                    record_at(at)
                    at = following
                self._chunked_position = capture.tell() - (end - at)
                if offsets:
                    yield _pcap_batch(buffer, np.frombuffer(offsets, dtype=np.int64), word,
                                      scale, linktype)
                if end - at > MAX_RECORD_BYTES:  # damaged: no capture has records this big
                    self.truncated = True
                    return
        self.truncated = at < len(buffer)

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


def _pcap_batch(buffer: bytes, offsets: np.ndarray, word: np.dtype, scale: int,
                linktype: int) -> Batch:
    data = np.frombuffer(buffer, dtype=np.uint8)
    headers = data[offsets[:, None] + np.arange(16)].copy().view(word)  # (n, 4) record headers
    seconds, fraction, caplen = (headers[:, k].astype(np.int64) for k in range(3))
    return Batch(data, offsets + 16, caplen, seconds * NS + fraction * scale, linktype)


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


