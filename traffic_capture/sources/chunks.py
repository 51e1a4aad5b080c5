"""A capture file read in chunks into rotating buffers, for the record walk: the records a
chunk ends in the middle of are carried to the front of the next buffer."""

from __future__ import annotations

import contextlib
import gzip
import io
import mmap
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

CHUNK_BYTES = 4 * 1024 * 1024
FIRST_CHUNK_BYTES = 64 * 1024
# libpcap's MAXIMUM_SNAPLEN: a longer record is damage, as tcpdump and tshark say.
MAX_CAPTURED_BYTES = 262_144
# Room for what is carried from one chunk to the next: tcpdump's largest snaplen is 262,144,
# so a record that does not fit in this and a chunk means a damaged file.
MAX_RECORD_BYTES = 16 * 262_144


def too_long(captured: int) -> str:
    """The damage a record over MAX_CAPTURED_BYTES is, in pcap and pcapng alike."""
    return f"a packet claims {captured:,} captured bytes, over libpcap's {MAX_CAPTURED_BYTES:,}"


def untouched(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """Zeroed memory whose pages are taken only as they are written, so that the carry area
    and the table rows past a chunk's records cost nothing: an anonymous map, which malloc
    stops giving for large blocks once some were freed."""
    count = int(np.prod(shape))
    memory = mmap.mmap(-1, max(count * np.dtype(dtype).itemsize, 1))
    return np.frombuffer(memory, dtype=dtype, count=count).reshape(shape)


def gzip_damage(said: str) -> str:
    """Python's gzip error, as a user reads it."""
    if said.startswith("CRC check failed"):
        return "its gzip checksum does not match the data (some bytes may be damaged)"
    if said.startswith("Not a gzipped file"):
        return "bytes that are not gzip follow its compressed data"
    return f"its gzip data is damaged ({said})"


@dataclass
class Slot:
    """One of the rotating chunk buffers, with the walk's outputs for it."""

    data: np.ndarray  # uint8: the chunk
    offsets: np.ndarray  # int64: where each walked record starts
    table: np.ndarray  # uint8 (records, row width): each record's first bytes
    # (records walked, where the first record not walked begins), when the chunk was walked
    # while it was read; else None, and the format's reader walks it.
    walked: tuple[int, int] | None = None
    # The walked records' headers, decoded as they were walked (classic pcap: int64 starts,
    # captured and wire lengths, times in ns): (usable records, bad timestamps), else None.
    # A batch of them refers to these arrays, as to `data`, until the slot is filled again.
    decoded: tuple[int, int] | None = None
    starts: np.ndarray | None = None
    captured: np.ndarray | None = None
    wire: np.ndarray | None = None
    ts: np.ndarray | None = None


# A walk done while reading (classic_pcap.read_walker): (file descriptor, slot, where the new
# bytes go, how many to read) -> (bytes read, records walked from the slot's start, where the
# first record not walked begins).
ReadWalk = Callable[[int, Slot, int, int], tuple[int, int, int]]


class ChunkReader:
    """A file read in CHUNK_BYTES chunks into rotating buffers: READ_AHEAD + 2 when read ahead
    in a thread (one being filled, READ_AHEAD waiting, one in use), else one.

    The walker sets `consumed`, where the first record it could not take begins, and
    `handed_out`, whether batches refer to this buffer. The bytes from `consumed` on are
    carried to the front of the next buffer, or of the same one when nothing refers to it.
    A buffer full of one unfinished record ends the reading (a damaged file). A walker that
    meets records that cannot be right says why in `damaged` and stops.
    """

    def __init__(self, opener: Callable[[], io.BufferedIOBase | io.RawIOBase], compressed: bool,
                 start: int, row_width: int,
                 slots: int, read_walk: ReadWalk | None = None) -> None:
        self.opener, self.compressed, self.start = opener, compressed, start
        self.read_walk = read_walk  # given for a plain file only (not compressed, not a stream)
        size = MAX_RECORD_BYTES + CHUNK_BYTES
        # Records a walk takes at most: a chunk of smaller records takes several walks. (Not
        # sized for 16-byte records: Windows charges the whole table to its commit limit.)
        rows = max(CHUNK_BYTES // 64, 1)
        # The decoded headers' columns only for a walk done as the file is read (read_walk):
        # Windows charges untouched memory to its commit limit all the same.
        self.slots = [Slot(untouched((size,), np.uint8), untouched((rows,), np.int64),
                           untouched((rows, row_width), np.uint8), None, None,
                           *((untouched((rows,), np.int64) for _ in range(4)) if read_walk
                             else (None,) * 4))
                      for _ in range(slots)]
        self.consumed, self.handed_out = 0, True
        self.damaged: str | None = None  # why the walker stopped before the end
        self.bad_timestamps = 0  # packets whose time's fraction is a second or more
        self.truncated = False  # read to the end, which is in the middle of a record
        self.cut = False  # the decompressor met the end of a compressed file too early
        # What the decompressor found wrong after the data it gave (a checksum that does not
        # match, bytes after the compressed data): every packet before it was read.
        self.compression_damage: str | None = None
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

    def _walkable(self, capture: io.BufferedIOBase | io.RawIOBase) -> int | None:
        """The descriptor read_walk reads, placed after the skipped header (open_bytes opens
        the file unbuffered, so it is there already: the seek only makes sure); None without
        read_walk, or when the file cannot be read that way after all."""
        if self.read_walk is None:
            return None
        try:
            descriptor = capture.fileno()
            os.lseek(descriptor, self.start, os.SEEK_SET)
        except (OSError, ValueError):  # io.UnsupportedOperation is both
            return None
        return descriptor

    def _fill(self, capture: io.BufferedIOBase | io.RawIOBase, view: memoryview) -> int:
        """Bytes read into `view`. A compressed file is read in pieces, so that when it turns
        out cut short, the pieces before the cut still count."""
        if not self.compressed:
            return capture.readinto(view) or 0
        if self.cut or self.compression_damage:  # asked again, gzip would say something else
            return 0
        got = 0
        try:
            while got < len(view):
                piece = capture.read1(min(len(view) - got, 1 << 16))  # type: ignore[union-attr]
                if not piece:
                    break
                view[got:got + len(piece)] = piece
                got += len(piece)
        except EOFError:
            self.cut = True
        except gzip.BadGzipFile as error:  # met at the end of a member: its data was given
            self.compression_damage = gzip_damage(str(error))
        except zlib.error as error:  # inside the data: what follows is lost
            self.cut = True
            self.compression_damage = gzip_damage(str(error))
        return got

    @staticmethod
    def _view(slot: Slot) -> memoryview:
        return memoryview(slot.data)  # type: ignore[arg-type]  # numpy arrays are buffers

    def __iter__(self) -> Iterator[tuple[Slot, int]]:
        try:
            yield from self._chunks()
        finally:  # the buffers go now, not with the file (merges hold many files)
            self.slots = []

    def _chunks(self) -> Iterator[tuple[Slot, int]]:
        kept, previous, number, first, ended = 0, memoryview(b""), 0, True, False
        with self.opener() as capture:
            self._raw = getattr(capture, "fileobj", None)
            capture.read(self.start)  # skip the file header (seek is slow on gzip)
            descriptor = self._walkable(capture)
            while True:
                slot = self.slots[number]
                slot.walked = slot.decoded = None
                if kept:
                    slot.data[:kept] = previous  # the unfinished records of the last walk
                # The first chunk is small: merging many files, those whose turn has not come
                # yet hold no more than that.
                want, first = (FIRST_CHUNK_BYTES if first else CHUNK_BYTES), False
                want = min(want, len(slot.data) - kept)  # 0: one record fills the buffer
                if ended or not want:
                    got = 0
                elif descriptor is not None and self.read_walk is not None:
                    got, records, next_record = self.read_walk(descriptor, slot, kept, want)
                    slot.walked = (records, next_record)
                else:
                    got = self._fill(capture, self._view(slot)[kept:kept + want])
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
        self.truncated = kept > 0 or self.cut
