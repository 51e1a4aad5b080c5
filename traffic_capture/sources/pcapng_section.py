"""pcapng: each chunk's blocks -> Batches, read section by section. The Enhanced Packet
Blocks are walked in C and decoded with numpy here; the other blocks are read by pcapng.py."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from traffic_capture.frames import HEADER_BYTES, Batch, Record, batch_of_frames
from traffic_capture.sources import pcapng, record_walk
from traffic_capture.sources.chunks import MAX_CAPTURED_BYTES, ChunkReader, Slot, too_long

# A row of the walk's table: the Enhanced Packet Block's first 28 bytes, then the frame's.
PCAPNG_ROW = 28 + HEADER_BYTES
# What is wrong with a packet block (0: nothing).
_LENGTH, _INTERFACE, _TIME = 1, 2, 3


def pcapng_batches(chunks: ChunkReader) -> Iterator[list[Batch]]:
    """The batches of each chunk's packets, up to the first damaged block."""
    section = Section()
    for slot, end in chunks:
        batches: list[Batch] = []
        try:
            chunks.consumed = section.read(slot, end, batches)
        except pcapng.DamagedBlock as error:
            chunks.damaged = str(error)
        chunks.handed_out = bool(batches)
        if batches:
            yield batches
        if chunks.damaged:
            return


@dataclass
class Section:
    """The pcapng section being read: its byte order and interfaces, and the last packet's
    time (a Simple Packet Block has none of its own)."""

    endian: str = ""
    interfaces: list[pcapng.Interface] = field(default_factory=list)
    last_ts: int = 0

    def read(self, slot: Slot, end: int, batches: list[Batch]) -> int:
        """Append the batches of the chunk's packets; return where its whole blocks end.

        The Enhanced Packet Blocks, nearly all of a file, are walked in C up to any other
        block, which is read here (a new section, an interface, statistics...).
        """
        at, used = 0, 0
        while True:
            if self.endian:
                count, following = record_walk.walk_pcapng(
                    slot.data, at, end, slot.offsets[used:], self.endian == ">",
                    slot.table[used:], PCAPNG_ROW)
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

    def _packet_batches(self, slot: Slot, first: int, count: int, batches: list[Batch]
                        ) -> None:
        """Batches (one per run of a link type) of the `count` walked packet blocks from row
        `first` of the slot's table: those before the first damaged one (a packet of an
        undescribed interface, an impossible time or length), and then the damage is raised."""
        table = slot.table[first:first + count]
        word = np.dtype(np.uint32).newbyteorder(">" if self.endian == ">" else "<")
        fields = table[:, :28].view(word)  # type, length, interface, high, low, captured, orig.
        index = fields[:, 2]
        captured = fields[:, 5].astype(np.int64)
        wire = fields[:, 6].astype(np.int64)
        units = (fields[:, 3].astype(np.uint64) << np.uint64(32)) | fields[:, 4]
        ts_ns = np.zeros(count, dtype=np.int64)
        linktype = np.zeros(count, dtype=np.int64)
        # What is wrong with each packet, the later test winning (a time over a length).
        damage = np.zeros(count, dtype=np.uint8)
        damage[captured > MAX_CAPTURED_BYTES] = _LENGTH
        unknown = index >= len(self.interfaces)
        damage[unknown] = _INTERFACE
        # Nearly always one interface for the whole chunk: its packets need not be picked out.
        one = int(index[0]) if count and index.min() == index.max() else None
        numbers = [one] if one is not None else sorted(set(index[~unknown].tolist()))
        for number in numbers:
            if number >= len(self.interfaces):
                continue
            interface = self.interfaces[number]
            chosen = slice(None) if one is not None else np.flatnonzero(index == number)
            fits = pcapng.representable(units[chosen], interface)
            if fits.all():
                ts_ns[chosen] = pcapng.timestamps_ns(units[chosen], interface)
            else:
                picked = np.arange(count)[chosen]
                damage[picked[~fits]] = _TIME
                ts_ns[picked[fits]] = pcapng.timestamps_ns(units[picked[fits]], interface)
            linktype[chosen] = interface.linktype
        bad = np.flatnonzero(damage)
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
            if kind == _INTERFACE:
                pcapng.described(self.interfaces, int(index[usable]))  # raises, saying why
            if kind == _TIME:
                raise pcapng.DamagedBlock(pcapng.TIME_DAMAGE)
            raise pcapng.DamagedBlock(too_long(int(captured[usable])))
