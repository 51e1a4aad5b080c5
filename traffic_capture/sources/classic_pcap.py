"""Classic pcap (tcpdump's format): each chunk's records -> one Batch, their 16-byte record
headers decoded from the walk's table in one pass (record_walk.decode_pcap)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from traffic_capture.frames import HEADER_BYTES, NS, Batch
from traffic_capture.sources import record_walk
from traffic_capture.sources.chunks import (
    MAX_CAPTURED_BYTES,
    ChunkReader,
    ReadWalk,
    Slot,
    too_long,
)
from traffic_capture.sources.file_format import ClassicPcap

# A row of the walk's table: the record's own 16-byte header, then the frame's first bytes.
PCAP_ROW = 16 + HEADER_BYTES


# A plain file is read this much at a time and walked after each read, while the piece is in
# the CPU's cache (record_walk.read_walk_decode): 256 KiB fits a core's share of the L2
# cache.
READ_PIECE = 256 * 1024


def read_walker(header: ClassicPcap) -> ReadWalk | None:
    """The walk of this file's records done as its chunks are read (ChunkReader.read_walk),
    each record's header decoded as it is walked (into the slot: Slot.decoded); None without
    the compiled step: in Python the many small reads and walks cost more than the cache
    saves (2.1 s against 2.0 s a million packets), so a chunk is read, then walked, which
    finds the same records (tests/test_record_walk.py)."""
    if record_walk.read_walk_decode is record_walk.python_read_walk_decode:
        return None
    big_endian = header.endian == ">"
    scale = _scale(header)

    def read_walk(descriptor: int, slot: Slot, start: int, want: int) -> tuple[int, int, int]:
        assert slot.starts is not None and slot.captured is not None
        assert slot.wire is not None and slot.ts is not None
        got, count, at, usable, bad = record_walk.read_walk_decode(
            descriptor, slot.data, start, want, 0, slot.offsets, big_endian, slot.table,
            PCAP_ROW, READ_PIECE, scale, NS // scale, MAX_CAPTURED_BYTES, slot.starts,
            slot.captured, slot.wire, slot.ts)
        slot.decoded = (usable, bad)
        return got, count, at
    return read_walk


def _scale(header: ClassicPcap) -> int:
    """Nanoseconds per unit of the records' time fractions."""
    return 1 if header.nano else 1000


def pcap_batches(header: ClassicPcap, chunks: ChunkReader) -> Iterator[list[Batch]]:
    """One batch per chunk (after the file header), up to the first damaged record."""
    big_endian = header.endian == ">"
    for slot, end in chunks:
        if slot.walked is not None:  # walked while it was read
            count, chunks.consumed = slot.walked
        else:
            count, chunks.consumed = record_walk.walk(slot.data, 0, end, slot.offsets,
                                                      big_endian, slot.table, PCAP_ROW)
        chunks.handed_out = count > 0
        if count:
            walked = (decoded_records(header, slot, count) if slot.decoded is not None
                      else walked_records(header, slot.data, slot.offsets, slot.table, count))
            chunks.bad_timestamps += walked.bad_timestamps
            if walked.batch is not None:
                yield [walked.batch]
            if walked.too_long:
                chunks.damaged = too_long(walked.too_long)
                return
        if count < len(slot.offsets):  # the walk stopped short of a record: too long?
            claimed = _claimed_length(slot.data, chunks.consumed, end, big_endian)
            if claimed > MAX_CAPTURED_BYTES:
                chunks.damaged = too_long(claimed)
                return


class Walked(NamedTuple):
    batch: Batch | None  # the records up to the first one too long to trust
    bad_timestamps: int  # among them, those whose time's fraction is a second or more
    too_long: int  # the captured length the first untrusted record claims (0: none)


def walked_records(header: ClassicPcap, data: np.ndarray, offsets: np.ndarray,
                   table: np.ndarray, count: int) -> Walked:
    """The `count` records a walk found (their offsets in `data`, their walk table) as a
    Batch: what a capture file's chunk and the live back end's spool both hold.

    A record claiming more than MAX_CAPTURED_BYTES ends the batch (the walk cannot be trusted
    past it). A time whose fraction is a second or more is one damaged packet, not the end of
    the file (libpcap and tshark read on): it is counted in the window its seconds give, and
    said. The headers are decoded in one pass (record_walk.decode_pcap)."""
    scale = _scale(header)
    starts, captured, wire, ts = (np.empty(count, dtype=np.int64) for _ in range(4))
    usable, bad_timestamps = record_walk.decode_pcap(
        table, count, table.shape[1], header.endian == ">", scale, NS // scale,
        MAX_CAPTURED_BYTES, offsets, starts, captured, wire, ts)
    return _walked(header, data, offsets, table, count, (usable, bad_timestamps),
                   (starts, captured, wire, ts))


def decoded_records(header: ClassicPcap, slot: Slot, count: int) -> Walked:
    """walked_records for a chunk whose headers were decoded as it was walked (read_walker)."""
    assert slot.decoded is not None and slot.starts is not None and slot.captured is not None
    assert slot.wire is not None and slot.ts is not None
    return _walked(header, slot.data, slot.offsets, slot.table, count, slot.decoded,
                   (slot.starts, slot.captured, slot.wire, slot.ts))


def _walked(header: ClassicPcap, data: np.ndarray, offsets: np.ndarray, table: np.ndarray,
            count: int, decoded: tuple[int, int], columns: tuple[np.ndarray, ...]) -> Walked:
    (usable, bad_timestamps), (starts, captured, wire, ts) = decoded, columns
    batch = Batch(data, starts[:usable], captured[:usable], ts[:usable], header.linktype,
                  headers=table[:usable], headers_at=16, wire_lengths=wire[:usable],
                  fcs_bytes=header.fcs_bytes) if usable else None
    too_long = 0
    if usable < count:  # what the first untrusted record claims
        too_long = _claimed_length(data, int(offsets[usable]), len(data), header.endian == ">")
    return Walked(batch, bad_timestamps, too_long)


def _claimed_length(data: np.ndarray, at: int, end: int, big_endian: bool) -> int:
    """The captured length the record header at `at` claims (0 when it is not all there)."""
    if end - at < 16:
        return 0
    return int.from_bytes(data[at + 8:at + 12].tobytes(), "big" if big_endian else "little")
