"""Capture files: classic pcap and pcapng, either gzip-compressed, read in chunks.

Batches and records come out in the shapes live capture gives (timestamp in ns, link type,
frame bytes), so a file and a live capture of the same packets go through the same pipeline.
The bytes are walked in C (_record_walk.c) and decoded with numpy, on a thread one chunk
ahead: 1 M packets in ~0.05 s of walking where reading them one by one (scapy's readers,
which this module replaced) takes 20 s.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import mmap
import struct
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Queue
from typing import Any, TypeVar

import numpy as np

from traffic_capture.errors import TrafficCaptureError, UsageError
from traffic_capture.frames import HEADER_BYTES, Batch, Record, batch_of_frames
from traffic_capture.linktypes import LINK_TYPES, link_type_name, supported_names
from traffic_capture.sources import merge, pcapng, record_walk

NS = 1_000_000_000
T = TypeVar("T")
PCAP_HEADER_BYTES = 24
CHUNK_BYTES = 4 * 1024 * 1024
FIRST_CHUNK_BYTES = 64 * 1024
READ_AHEAD = 1  # chunks read before the consumer asks for them
# Room for what is carried from one chunk to the next: tcpdump's largest snaplen is 262,144,
# so a record that does not fit in this and a chunk means a damaged file.
MAX_RECORD_BYTES = 16 * 262_144
# A row of the walk's table: the record's own header (pcap 16 bytes, pcapng Enhanced Packet
# Block 28), then the frame's first bytes.
_PCAP_ROW = 16 + HEADER_BYTES
_PCAPNG_ROW = 28 + HEADER_BYTES
_GZIP_MAGIC = b"\x1f\x8b"
# libpcap's LT_LINKTYPE(): the link-type field's upper bits carry the FCS length and flags.
LINKTYPE_MASK = 0xFFFF
# libpcap's MAXIMUM_SNAPLEN: a longer record is damage, as tcpdump and tshark say.
MAX_CAPTURED_BYTES = 262_144


class CaptureFileError(TrafficCaptureError):
    """A capture file that cannot be read at all; the message names it and says why."""


@dataclass
class _ClassicPcap:
    """What a classic pcap's 24-byte file header says."""

    endian: str
    nano: bool
    linktype: int


# The magic number as it lies on disk: byte order, and whether timestamps are nanoseconds.
_CLASSIC_MAGIC = {b"\xd4\xc3\xb2\xa1": ("<", False), b"\xa1\xb2\xc3\xd4": (">", False),
                  b"\x4d\x3c\xb2\xa1": ("<", True), b"\xa1\xb2\x3c\x4d": (">", True)}


def _open_bytes(path: Path, compressed: bool) -> io.BufferedIOBase | io.RawIOBase:
    if compressed:
        return gzip.open(path, "rb")
    return path.open("rb", buffering=0)


def _file_format(head: bytes) -> _ClassicPcap | str | None:
    """A classic pcap's header, "pcapng", or None for anything else, from the first bytes."""
    kind = _CLASSIC_MAGIC.get(head[:4])
    if kind is not None and len(head) >= PCAP_HEADER_BYTES:
        endian, nano = kind
        (linktype,) = struct.unpack_from(endian + "I", head, 20)
        return _ClassicPcap(endian, nano, linktype & LINKTYPE_MASK)
    endian_ng = pcapng.section_byte_order(head)
    if endian_ng is not None and len(head) >= 14:
        (major,) = struct.unpack_from(endian_ng + "H", head, 12)
        if major == 1:
            return "pcapng"
    return None


def _head(opened: io.BufferedIOBase | io.RawIOBase) -> bytes:
    try:
        with opened as capture:
            return capture.read(PCAP_HEADER_BYTES + 4) or b""
    except (OSError, EOFError, zlib.error):
        return b""


STDIN = Path("-")
_PEEK_BYTES = 64 * 1024


class _Stream(io.RawIOBase):
    """A pipe (standard input, a named pipe) read once, its first bytes peeked: the format is
    told from them, then the reader gets them again before the rest."""

    def __init__(self, raw: io.RawIOBase) -> None:
        self._raw = raw
        self._prefix = b""
        while len(self._prefix) < PCAP_HEADER_BYTES + 4:
            more = raw.read(_PEEK_BYTES)
            if not more:
                break
            self._prefix += more

    def peeked(self) -> bytes:
        return self._prefix

    def close(self) -> None:
        self._raw.close()
        super().close()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._prefix:
            count = min(len(view), len(self._prefix))
            view[:count] = self._prefix[:count]
            self._prefix = self._prefix[count:]
            return count
        return self._raw.readinto(view) or 0


def _decompressed_head(data: bytes) -> bytes:
    """The first bytes a gzip stream's peeked start decompresses to."""
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, PCAP_HEADER_BYTES + 4)
    except zlib.error:
        return b""


class CaptureFile:
    """One open capture file: its packets, where reading has got to, whether it was cut short."""

    def __init__(self, path: Path, shown_as: Path | None = None) -> None:
        self.path = path
        self.shown_as = shown_as or path  # the user's file, when `path` is a filtered copy
        self.truncated = False  # ends in the middle of a packet
        self.damaged: str | None = None  # why reading stopped before the end
        self._chunks: _ChunkReader | None = None
        self._stream: _Stream | None = None  # a pipe: read once, as it comes
        if path == STDIN:
            self.shown_as = Path("standard input")
            # Unbuffered: a read returns what the pipe holds, so windows close as packets come.
            stdin = open(sys.stdin.fileno(), "rb", buffering=0, closefd=False)  # noqa: SIM115
            self._stream = _Stream(stdin)  # closed with the stream
        else:
            self._check_path(path)
        if self._stream is not None:
            self.size = 0
            head = self._stream.peeked()
            self.compressed = head[:2] == _GZIP_MAGIC
            if self.compressed:
                head = _decompressed_head(head)
            if not head:
                raise CaptureFileError(f"{self.shown_as} is empty: nothing was written to it")
        else:
            head = _head(_open_bytes(path, self.compressed))
        kind = _file_format(head)
        if kind is None:
            raise CaptureFileError(
                f"{self.shown_as} is not a pcap or pcapng capture file (or it is damaged)")
        self.is_pcapng = kind == "pcapng"
        self._pcap = None if isinstance(kind, str) else kind
        if self._pcap is not None and self._pcap.linktype not in LINK_TYPES:
            raise CaptureFileError(
                f"{self.shown_as}: {link_type_name(self._pcap.linktype)} is not a link type "
                f"this tool reads ({supported_names()})"
            )

    def _check_path(self, path: Path) -> None:
        """A file (size, gzip or not), or a named pipe to read as a stream."""
        try:
            exists, is_dir = path.exists(), path.is_dir()
        except OSError as error:  # a folder on the way that this user may not enter
            raise CaptureFileError(f"cannot read {path}: {error.strerror}") from None
        if not exists:
            raise CaptureFileError(f"capture file {path} not found")
        if is_dir:
            raise CaptureFileError(f"{path} is a folder, not a capture file")
        try:
            if not path.is_file():  # a named pipe, a device: what comes, once
                raw = path.open("rb", buffering=0)
                assert isinstance(raw, io.RawIOBase)
                self._stream = _Stream(raw)
                return
            self.size = path.stat().st_size
            with path.open("rb") as capture:
                self.compressed = capture.read(2) == _GZIP_MAGIC
        except OSError as error:
            raise CaptureFileError(f"cannot read {path}: {error.strerror}") from None
        if self.size == 0:
            raise CaptureFileError(f"capture file {path} is empty")

    @property
    def is_stream(self) -> bool:
        return self._stream is not None

    def _open(self) -> io.BufferedIOBase | io.RawIOBase:
        """The file's bytes (decompressed), from the start; a stream's only once."""
        if self._stream is None:
            return _open_bytes(self.path, self.compressed)
        stream, self._stream = self._stream, None
        if stream is None:
            raise CaptureFileError(f"{self.shown_as} can be read only once")
        if self.compressed:
            return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
        return stream

    def position(self) -> int:
        """Bytes of the file read so far, for the progress bar (of a compressed file: of its
        compressed bytes, so that the bar ends at the file's size)."""
        return self._chunks.position() if self._chunks is not None else 0

    def records(self) -> Iterator[Record]:
        """One record at a time (for tests and tools that want packets, not batches)."""
        for batch in self.batches():
            for i in range(len(batch)):
                yield (int(batch.ts_ns[i]), batch.linktype, batch.frame(i))

    def batches(self, read_ahead: bool = True) -> Iterator[Batch]:
        """The whole file in batches. A batch's bytes are valid until the next batch is asked
        for. Read ahead, the next chunk is read in a thread while this one is counted
        (reading and walking release the interpreter lock, so that runs on the other core);
        without, one buffer is all the file takes (merging many files)."""
        slots = READ_AHEAD + 2 if read_ahead else 1
        walked = self._pcapng_batches(slots) if self.is_pcapng else self._pcap_batches(slots)
        for batches in (_read_ahead(walked) if read_ahead else walked):
            yield from batches

    def _pcap_batches(self, slots: int) -> Iterator[list[Batch]]:
        """Classic pcap: one batch per chunk."""
        assert self._pcap is not None
        header = self._pcap
        big_endian = header.endian == ">"
        word = np.dtype(np.uint32).newbyteorder(">" if big_endian else "<")
        scale = 1 if header.nano else 1000
        self._chunks = chunks = _ChunkReader(self._open, self.compressed, PCAP_HEADER_BYTES,
                                             _PCAP_ROW, slots)
        for slot, end in chunks:
            count, chunks.consumed = record_walk.walk(slot.data, 0, end, slot.offsets,
                                                      big_endian, slot.table, _PCAP_ROW)
            chunks.handed_out = count > 0
            if count:
                table = slot.table[:count]
                record = table[:, :16].view(word)  # seconds, fraction, captured, original
                seconds, fraction, captured, original = (record[:, k].astype(np.int64)
                                                         for k in range(4))
                # Two reductions, and the mask only for a damaged chunk: this runs per chunk.
                usable = count
                if fraction.max() >= NS // scale or captured.max() > MAX_CAPTURED_BYTES:
                    bad = (fraction >= NS // scale) | (captured > MAX_CAPTURED_BYTES)
                    usable = int(np.argmax(bad))
                if usable:
                    yield [Batch(slot.data, slot.offsets[:usable] + 16, captured[:usable],
                                 seconds[:usable] * NS + fraction[:usable] * scale,
                                 header.linktype, headers=table[:usable], headers_at=16,
                                 wire_lengths=original[:usable])]
                if usable < count:
                    self.damaged = _record_damage(int(fraction[usable]), NS // scale,
                                                  int(captured[usable]))
                    return
        self.truncated = chunks.left > 0 or chunks.cut

    def _pcapng_batches(self, slots: int) -> Iterator[list[Batch]]:
        """pcapng: the batches of each chunk's packets."""
        self._chunks = chunks = _ChunkReader(self._open, self.compressed, 0, _PCAPNG_ROW, slots)
        section = _Section()
        for slot, end in chunks:
            batches: list[Batch] = []
            try:
                chunks.consumed = section.read(slot, end, batches)
            except pcapng.DamagedBlock as error:
                self.damaged = str(error)
            chunks.handed_out = bool(batches)
            if batches:
                yield batches
            if self.damaged:
                return
        self.truncated = chunks.left > 0 or chunks.cut


def _record_damage(fraction: int, fractions_per_second: int, captured: int) -> str:
    if fraction >= fractions_per_second:
        unit = "microseconds" if fractions_per_second == 1_000_000 else "nanoseconds"
        return f"a packet's timestamp has {fraction:,} {unit}, more than a second holds"
    return f"a packet claims {captured:,} captured bytes, over libpcap's {MAX_CAPTURED_BYTES:,}"


@dataclass
class _Section:
    """The pcapng section being read: its byte order and interfaces, and the last packet's
    time (a Simple Packet Block has none of its own)."""

    endian: str = ""
    interfaces: list[pcapng.Interface] = field(default_factory=list)
    last_ts: int = 0

    def read(self, slot: _Slot, end: int, batches: list[Batch]) -> int:
        """Append the batches of the chunk's packets; return where its whole blocks end.

        The Enhanced Packet Blocks, nearly all of a file, are walked in C up to any other
        block, which is read here (a new section, an interface, statistics...).
        """
        at, used = 0, 0
        while True:
            if self.endian:
                count, following = record_walk.walk_pcapng(
                    slot.data, at, end, slot.offsets[used:], self.endian == ">",
                    slot.table[used:], _PCAPNG_ROW)
                if count:
                    self._packet_batches(slot, used, count, batches)
                used, at = used + count, following
                if used == len(slot.offsets):
                    return at  # the table is full: the next walk goes on from here
            if end - at < 12:
                return at
            head = bytes(slot.data[at:at + 12])
            length = pcapng.block_length(head, pcapng.section_byte_order(head) or self.endian)
            if at + length > end:
                return at  # the rest comes with the next chunk
            record = self._read_block(bytes(slot.data[at:at + length]))
            if record is not None:
                batches.append(batch_of_frames([record]))
            at += length

    def _read_block(self, block: bytes) -> Record | None:
        """A block other than a well-formed Enhanced Packet Block; its packet, if it holds one."""
        endian = pcapng.section_byte_order(block)
        if endian is not None:  # a new section: its own byte order and interfaces
            self.endian, self.interfaces = endian, []
            return None
        (kind,) = struct.unpack_from(self.endian + "I", block)
        if kind == pcapng.INTERFACE:
            self.interfaces.append(pcapng.interface(block, self.endian))
        elif kind == pcapng.ENHANCED_PACKET:  # one the walk refused: its lengths disagree
            raise pcapng.DamagedBlock("an enhanced packet block's lengths disagree")
        elif kind in (pcapng.SIMPLE_PACKET, pcapng.OBSOLETE_PACKET):
            record = pcapng.packet(block, self.endian, self.interfaces, self.last_ts)
            self.last_ts = record[0]
            return record
        return None  # statistics, name resolution, secrets, custom blocks: nothing to count

    def _packet_batches(self, slot: _Slot, first: int, count: int, batches: list[Batch]
                        ) -> None:
        """Batches (one per run of a link type) of the `count` walked packet blocks from row
        `first` of the slot's table: those before the first damaged one (a packet of an
        undescribed interface, an impossible time or length), and then the damage is raised."""
        table = slot.table[first:first + count]
        word = np.dtype(np.uint32).newbyteorder(">" if self.endian == ">" else "<")
        fields = table[:, :28].view(word)  # type, length, interface, high, low, captured, orig.
        index = fields[:, 2].astype(np.int64)
        captured = fields[:, 5].astype(np.int64)
        wire = fields[:, 6].astype(np.int64)
        units = (fields[:, 3].astype(np.uint64) << np.uint64(32)) | fields[:, 4]
        ts_ns = np.zeros(count, dtype=np.int64)
        linktype = np.zeros(count, dtype=np.int64)
        damage = np.full(count, "", dtype=object)
        damage[captured > MAX_CAPTURED_BYTES] = "length"
        unknown = index >= len(self.interfaces)
        damage[unknown] = "interface"
        for number in np.unique(index[~unknown]).tolist():
            chosen = np.flatnonzero(index == number)
            interface = self.interfaces[number]
            fits = pcapng.representable(units[chosen], interface)
            damage[chosen[~fits]] = "time"
            if fits.any():
                ts_ns[chosen[fits]] = pcapng.timestamps_ns(units[chosen[fits]], interface)
            linktype[chosen] = interface.linktype
        bad = np.flatnonzero(damage != "")
        usable = int(bad[0]) if len(bad) else count
        starts = slot.offsets[first:first + usable] + 28
        # Runs of one link type (nearly always one run: the whole chunk).
        runs = linktype[:usable]
        cuts = (np.flatnonzero(runs[1:] != runs[:-1]) + 1).tolist()
        for start, stop in zip([0, *cuts], [*cuts, usable], strict=True):
            if stop > start:
                batches.append(Batch(slot.data, starts[start:stop], captured[start:stop],
                                     ts_ns[start:stop], int(linktype[start]),
                                     headers=table[start:stop], headers_at=28,
                                     wire_lengths=wire[start:stop]))
        if usable:
            self.last_ts = int(ts_ns[usable - 1])
        if usable < count:
            kind = damage[usable]
            if kind == "interface":
                pcapng.described(self.interfaces, int(index[usable]))  # raises, saying why
            if kind == "time":
                raise pcapng.DamagedBlock("a packet's time, with its interface's offset, is "
                                          "before 1970 or past 2262")
            raise pcapng.DamagedBlock(f"a packet claims {int(captured[usable]):,} captured "
                                      f"bytes, over libpcap's {MAX_CAPTURED_BYTES:,}")


def _untouched(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """Zeroed memory whose pages are taken only as they are written, so that the carry area
    and the table rows past a chunk's records cost nothing: an anonymous map, which malloc
    stops giving for large blocks once some were freed."""
    count = int(np.prod(shape))
    memory = mmap.mmap(-1, max(count * np.dtype(dtype).itemsize, 1))
    return np.frombuffer(memory, dtype=dtype, count=count).reshape(shape)


@dataclass
class _Slot:
    """One of the rotating chunk buffers, with the walk's outputs for it."""

    data: np.ndarray  # uint8: the chunk
    offsets: np.ndarray  # int64: where each walked record starts
    table: np.ndarray  # uint8 (records, row width): each record's first bytes


class _ChunkReader:
    """A file read in CHUNK_BYTES chunks into rotating buffers: READ_AHEAD + 2 when read ahead
    in a thread (one being filled, READ_AHEAD waiting, one in use), else one.

    The walker sets `consumed`, where the first record it could not take begins, and
    `handed_out`, whether batches refer to this buffer. The bytes from `consumed` on are
    carried to the front of the next buffer, or of the same one when nothing refers to it.
    A buffer full of one unfinished record ends the reading (a damaged file).
    """

    def __init__(self, opener: Callable[[], io.BufferedIOBase | io.RawIOBase], compressed: bool,
                 start: int, row_width: int,
                 slots: int) -> None:
        self.opener, self.compressed, self.start = opener, compressed, start
        size = MAX_RECORD_BYTES + CHUNK_BYTES
        # Records a walk takes at most: a chunk of smaller records takes several walks. (Not
        # sized for 16-byte records: Windows charges the whole table to its commit limit.)
        rows = max(CHUNK_BYTES // 64, 1)
        self.slots = [_Slot(_untouched((size,), np.uint8), _untouched((rows,), np.int64),
                            _untouched((rows, row_width), np.uint8))
                      for _ in range(slots)]
        self.consumed, self.handed_out = 0, True
        self.left = 0  # bytes of an unfinished record at the end
        self.cut = False  # the decompressor met the end of a compressed file too early
        self._consumed_total = start
        self._raw: Any = None  # a compressed file's own file, for the progress bar
        self._raw_position = 0

    def position(self) -> int:
        """Bytes read so far; of a compressed file, compressed bytes (what its size counts)."""
        if not self.compressed:
            return self._consumed_total
        with contextlib.suppress(OSError, ValueError, AttributeError):  # closed: at the end
            self._raw_position = int(self._raw.tell())
        return self._raw_position

    def _fill(self, capture: io.BufferedIOBase | io.RawIOBase, view: memoryview) -> int:
        """Bytes read into `view`. A compressed file is read in pieces, so that when it turns
        out cut short, the pieces before the cut still count."""
        if not self.compressed:
            return capture.readinto(view) or 0
        got = 0
        try:
            while got < len(view):
                piece = capture.read1(min(len(view) - got, 1 << 16))  # type: ignore[union-attr]
                if not piece:
                    break
                view[got:got + len(piece)] = piece
                got += len(piece)
        except (EOFError, zlib.error, gzip.BadGzipFile):
            self.cut = True
        return got

    @staticmethod
    def _view(slot: _Slot) -> memoryview:
        return memoryview(slot.data)  # type: ignore[arg-type]  # numpy arrays are buffers

    def __iter__(self) -> Iterator[tuple[_Slot, int]]:
        try:
            yield from self._chunks()
        finally:  # the buffers go now, not with the file (merges hold many files)
            self.slots = []

    def _chunks(self) -> Iterator[tuple[_Slot, int]]:
        kept, previous, number, first, ended = 0, memoryview(b""), 0, True, False
        with self.opener() as capture:
            self._raw = getattr(capture, "fileobj", None)
            capture.read(self.start)  # skip the file header (seek is slow on gzip)
            while True:
                slot = self.slots[number]
                if kept:
                    slot.data[:kept] = previous  # the unfinished records of the last walk
                # The first chunk is small: merging many files, those whose turn has not come
                # yet hold no more than that.
                want, first = (FIRST_CHUNK_BYTES if first else CHUNK_BYTES), False
                want = min(want, len(slot.data) - kept)  # 0: one record fills the buffer
                got = 0 if ended or not want else self._fill(
                    capture, self._view(slot)[kept:kept + want])
                ended = ended or (want > 0 and got == 0)
                end = kept + got
                if not end:
                    break
                self.position()  # noted while the file is open
                self.consumed, self.handed_out = 0, True
                yield slot, end
                at = self.consumed
                self._consumed_total += at
                kept = end - at
                if not at and not got:
                    break  # nothing new and nothing taken: an unfinished record is left
                following = (number + 1) % len(self.slots) if self.handed_out else number
                previous = self._view(slot)[at:end]
                if following == number:
                    previous = memoryview(bytes(previous))  # the same buffer: copy it first
                number = following
        self.left = kept


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


class PrefilterError(UsageError):
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
    """Open every file first, so that a bad one is reported before any is read. (Nothing stays
    open: each file is opened again when it is read.)"""
    return [CaptureFile(path, name) for path, name in zip(paths, shown_as or paths, strict=True)]


def merged_batches(files: list[CaptureFile]) -> Iterator[Batch]:
    """All files' packets in timestamp order, as one live capture on several interfaces."""
    if len(files) == 1:
        return files[0].batches()
    # The merge copies each batch's frames out at once: the files need no buffers to spare.
    return merge.merged_batches([capture.batches(read_ahead=False) for capture in files])


def total_size(files: list[CaptureFile]) -> int:
    return sum(capture.size for capture in files)


def read_position(files: list[CaptureFile]) -> int:
    return sum(capture.position() for capture in files)


