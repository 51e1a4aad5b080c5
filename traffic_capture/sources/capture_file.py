"""Capture files: classic pcap and pcapng, either gzip-compressed, read in chunks.

Batches and records come out in the shapes live capture gives (timestamp in ns, link type,
frame bytes), so a file and a live capture of the same packets go through the same pipeline.
The bytes are walked in C (_record_walk.c) and decoded with numpy, on a thread one chunk
ahead: 1 M packets in ~0.05 s of walking where reading them one by one (scapy's readers,
which this module replaced) takes 20 s.

The parts: file_format.py tells the format, stream.py reads standard input and named pipes,
chunks.py the chunks, classic_pcap.py and pcapng_section.py turn them into batches,
read_ahead.py reads the next chunk in a thread, and merge.py merges several files by time.
"""

from __future__ import annotations

import gzip
import io
import sys
from collections.abc import Iterator
from pathlib import Path

from traffic_capture.errors import TrafficCaptureError
from traffic_capture.frames import Batch, Record
from traffic_capture.linktypes import LINK_TYPES, link_type_name, supported_names
from traffic_capture.sources import merge
from traffic_capture.sources.chunks import ChunkReader
from traffic_capture.sources.classic_pcap import PCAP_ROW, pcap_batches, read_walker
from traffic_capture.sources.file_format import (
    PCAP_HEADER_BYTES,
    decompressed_head,
    file_format,
    is_gzip,
    open_bytes,
    read_head,
)
from traffic_capture.sources.pcapng_section import PCAPNG_ROW, pcapng_batches
from traffic_capture.sources.read_ahead import READ_AHEAD, in_thread
from traffic_capture.sources.stream import STDIN, Stream


class CaptureFileError(TrafficCaptureError):
    """A capture file that cannot be read at all; the message names it and says why."""


class CaptureFile:
    """One open capture file: its packets, where reading has got to, whether it was cut short."""

    def __init__(self, path: Path, shown_as: Path | None = None) -> None:
        self.path = path
        self.shown_as = shown_as or path  # the user's file, when `path` is a filtered copy
        self._chunks: ChunkReader | None = None
        self._stream: Stream | None = None  # a pipe: read once, as it comes
        if path == STDIN:
            self.shown_as = Path("standard input")
            # Unbuffered: a read returns what the pipe holds, so windows close as packets come.
            stdin = open(sys.stdin.fileno(), "rb", buffering=0, closefd=False)  # noqa: SIM115
            self._stream = Stream(stdin)  # closed with the stream
        else:
            self._check_path(path)
        if self._stream is not None:
            self.size = 0
            head = self._stream.peeked()
            self.compressed = is_gzip(head)
            if self.compressed:
                head = decompressed_head(head)
            if not head:
                raise CaptureFileError(f"{self.shown_as} is empty: nothing was written to it")
        else:
            head = read_head(open_bytes(path, self.compressed))
        kind = file_format(head)
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
                self._stream = Stream(raw)
                return
            self.size = path.stat().st_size
            with path.open("rb") as capture:
                self.compressed = is_gzip(capture.read(2))
        except OSError as error:
            raise CaptureFileError(f"cannot read {path}: {error.strerror}") from None
        if self.size == 0:
            raise CaptureFileError(f"capture file {path} is empty")

    @property
    def is_stream(self) -> bool:
        return self._stream is not None

    @property
    def truncated(self) -> bool:
        """Read to the end, which is in the middle of a packet."""
        return self._chunks is not None and self._chunks.truncated

    @property
    def damaged(self) -> str | None:
        """Why reading stopped before the end, if it did."""
        return self._chunks.damaged if self._chunks is not None else None

    @property
    def compression_damage(self) -> str | None:
        """What the decompressor found wrong after the last data it gave, if anything."""
        return self._chunks.compression_damage if self._chunks is not None else None

    @property
    def bad_timestamps(self) -> int:
        """Packets whose timestamp's fraction was a second or more (counted, in the window
        of their seconds)."""
        return self._chunks.bad_timestamps if self._chunks is not None else 0

    def _open(self) -> io.BufferedIOBase | io.RawIOBase:
        """The file's bytes (decompressed), from the start; a stream's only once."""
        if self._stream is None:
            return open_bytes(self.path, self.compressed)
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
        walked = self._walked(slots)
        for batches in (in_thread(walked) if read_ahead else walked):
            yield from batches

    def _walked(self, slots: int) -> Iterator[list[Batch]]:
        """The batches of each chunk, in the file's format."""
        if self.is_pcapng:
            self._chunks = chunks = ChunkReader(self._open, self.compressed, 0, PCAPNG_ROW,
                                                slots)
            yield from pcapng_batches(chunks)
            return
        assert self._pcap is not None
        # A plain file is walked as it is read; a stream or a gzip file is read, then walked.
        plain = not self.compressed and not self.is_stream
        self._chunks = chunks = ChunkReader(self._open, self.compressed, PCAP_HEADER_BYTES,
                                            PCAP_ROW, slots,
                                            read_walker(self._pcap) if plain else None)
        yield from pcap_batches(self._pcap, chunks)



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
