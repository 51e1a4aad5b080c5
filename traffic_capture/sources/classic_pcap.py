"""Classic pcap (tcpdump's format): each chunk's records -> one Batch, their 16-byte record
headers decoded with numpy from the walk's table."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from traffic_capture.frames import HEADER_BYTES, NS, Batch
from traffic_capture.sources import record_walk
from traffic_capture.sources.chunks import MAX_CAPTURED_BYTES, ChunkReader
from traffic_capture.sources.file_format import ClassicPcap

# A row of the walk's table: the record's own 16-byte header, then the frame's first bytes.
PCAP_ROW = 16 + HEADER_BYTES


def pcap_batches(header: ClassicPcap, chunks: ChunkReader) -> Iterator[list[Batch]]:
    """One batch per chunk (after the file header), up to the first damaged record."""
    big_endian = header.endian == ">"
    word = np.dtype(np.uint32).newbyteorder(">" if big_endian else "<")
    scale = 1 if header.nano else 1000
    for slot, end in chunks:
        count, chunks.consumed = record_walk.walk(slot.data, 0, end, slot.offsets,
                                                  big_endian, slot.table, PCAP_ROW)
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
                chunks.damaged = _record_damage(int(fraction[usable]), NS // scale,
                                                int(captured[usable]))
                return


def _record_damage(fraction: int, fractions_per_second: int, captured: int) -> str:
    if fraction >= fractions_per_second:
        unit = "microseconds" if fractions_per_second == 1_000_000 else "nanoseconds"
        return f"a packet's timestamp has {fraction:,} {unit}, more than a second holds"
    return f"a packet claims {captured:,} captured bytes, over libpcap's {MAX_CAPTURED_BYTES:,}"
