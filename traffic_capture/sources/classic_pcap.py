"""Classic pcap (tcpdump's format): each chunk's records -> one Batch, their 16-byte record
headers decoded with numpy from the walk's table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from traffic_capture.frames import HEADER_BYTES, NS, Batch
from traffic_capture.sources import record_walk
from traffic_capture.sources.chunks import MAX_CAPTURED_BYTES, ChunkReader, too_long
from traffic_capture.sources.file_format import ClassicPcap

# A row of the walk's table: the record's own 16-byte header, then the frame's first bytes.
PCAP_ROW = 16 + HEADER_BYTES


def pcap_batches(header: ClassicPcap, chunks: ChunkReader) -> Iterator[list[Batch]]:
    """One batch per chunk (after the file header), up to the first damaged record."""
    big_endian = header.endian == ">"
    for slot, end in chunks:
        count, chunks.consumed = record_walk.walk(slot.data, 0, end, slot.offsets,
                                                  big_endian, slot.table, PCAP_ROW)
        chunks.handed_out = count > 0
        if count:
            walked = walked_records(header, slot.data, slot.offsets, slot.table, count)
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
    Batch: what a capture file's chunk and the live back end's spool both hold."""
    word = np.dtype(np.uint32).newbyteorder(">" if header.endian == ">" else "<")
    scale = 1 if header.nano else 1000
    table = table[:count]
    record = table[:, :16].view(word)  # seconds, fraction, captured, original
    seconds, fraction, captured, original = (record[:, k].astype(np.int64) for k in range(4))
    # Two reductions, and the masks only for a damaged chunk: this runs per chunk.
    usable, bad_timestamps = count, 0
    if captured.max() > MAX_CAPTURED_BYTES:  # the walk cannot be trusted past it
        usable = int(np.argmax(captured > MAX_CAPTURED_BYTES))
    if fraction.max() >= NS // scale:
        # One damaged packet, not the end of the file (libpcap and tshark read on): counted
        # in the window its seconds give, and said.
        bad = fraction >= NS // scale
        bad_timestamps = int(np.count_nonzero(bad[:usable]))
        fraction = np.where(bad, 0, fraction)
    batch = Batch(data, offsets[:usable] + 16, captured[:usable],
                  seconds[:usable] * NS + fraction[:usable] * scale, header.linktype,
                  headers=table[:usable], headers_at=16, wire_lengths=original[:usable],
                  fcs_bytes=header.fcs_bytes) if usable else None
    return Walked(batch, bad_timestamps, int(captured[usable]) if usable < count else 0)


def _claimed_length(data: np.ndarray, at: int, end: int, big_endian: bool) -> int:
    """The captured length the record header at `at` claims (0 when it is not all there)."""
    if end - at < 16:
        return 0
    return int.from_bytes(data[at + 8:at + 12].tobytes(), "big" if big_endian else "little")
