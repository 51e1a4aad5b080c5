"""Where the records of a capture file buffer (or of a Linux capture ring's blocks) start, and
a table of their first bytes.

The C version (_record_walk.c) is used when it was compiled at install; these are the same
loops in Python, for machines without a C compiler. tests/test_record_walk.py checks they agree.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from traffic_capture.frames import compiled_or, rows_at
from traffic_capture.sources.pcapng import ENHANCED_PACKET


def _pcap_record(word: Callable[[Any, int], tuple[int]]) -> Callable[[Any, int, int], int]:
    def length(buffer: Any, at: int, end: int) -> int:
        if at + 16 > end:
            return -1
        size = 16 + word(buffer, at + 8)[0]
        return size if at + size <= end else -1
    return length


def _pcapng_packet_block(word: Callable[[Any, int], tuple[int]]
                         ) -> Callable[[Any, int, int], int]:
    def length(buffer: Any, at: int, end: int) -> int:
        if at + 32 > end or word(buffer, at)[0] != ENHANCED_PACKET:
            return -1
        size, captured = word(buffer, at + 4)[0], word(buffer, at + 20)[0]
        if size < 32 or size % 4 or at + size > end or 28 + captured > size - 4:
            return -1
        return size
    return length


def _walker(kind: Callable[[Callable[[Any, int], tuple[int]]], Callable[[Any, int, int], int]]
            ) -> Callable[..., tuple[int, int]]:
    def walk(buffer: Any, at: int, end: int, offsets: np.ndarray, big_endian: bool,
             rows: np.ndarray, width: int) -> tuple[int, int]:
        """Offsets of the whole records from `at` up to `end` into `offsets` (int64), at most
        len(offsets) of them (and rows.size // width): (how many, where the next begins).
        With width > 0, row i of `rows` (uint8) gets the `width` bytes from record i's start,
        zeros past `end`."""
        length = kind(struct.Struct(">I" if big_endian else "<I").unpack_from)
        end = min(end, len(buffer))
        found: list[int] = []
        capacity = min(len(offsets), rows.size // width) if width > 0 else len(offsets)
        while len(found) < capacity and at >= 0:
            size = length(buffer, at, end)
            if size < 0:
                break
            found.append(at)
            at += size
        offsets[:len(found)] = found
        if width > 0 and found:
            table = rows.reshape(-1)[:len(found) * width].reshape(len(found), width)
            table[:] = rows_at(np.frombuffer(buffer, dtype=np.uint8)[:end],
                               offsets[:len(found)], width)
        return len(found), at
    return walk


# struct tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1: block_status (at 8),
# num_pkts, offset_to_first_pkt. struct tpacket3_hdr: tp_next_offset, tp_sec, tp_nsec,
# tp_snaplen, tp_len, tp_status (u32), tp_mac (u16, at 24); its sockaddr_ll follows at
# TPACKET_ALIGN(sizeof(tpacket3_hdr)) = 48, where sll_pkttype is at +10.
_RING_WORD = struct.Struct("=I").unpack_from
PACKET_OUTGOING = 4  # sll_pkttype of a packet this host sent
TPACKET3_MINIMUM = 68  # tpacket3_hdr (48, aligned) and the sockaddr_ll after it (20)


def python_walk_ring(ring: Any, block: int, block_count: int, block_bytes: int,
                     block_room: int, skip_outgoing: bool, starts: np.ndarray,
                     captured: np.ndarray, wire: np.ndarray, ts: np.ndarray, rows: np.ndarray,
                     width: int) -> tuple[int, int]:
    """The packets of a Linux TPACKET_V3 ring's blocks that the kernel handed over
    (TP_STATUS_USER), from `block` on, whole blocks only, while the outputs have room for
    `block_room` more: where each frame starts, its captured and wire lengths, its time in
    ns, and its first `width` bytes in a row of `rows` (zeros past the ring's end). With
    skip_outgoing, the packets the host sent (lo's first copy) are left out.
    (packets, blocks taken)."""
    capacity = min(len(starts), len(captured), len(wire), len(ts),
                   rows.size // width if width > 0 else len(starts))
    length = len(ring)
    found: list[tuple[int, int, int, int]] = []
    taken = 0
    if block_bytes < TPACKET3_MINIMUM or block_count < 1 or block_room < 0:
        block_count = 0  # no block to walk: a ring's blocks hold their header and a packet
    while (taken < block_count and block >= 0 and (block + 1) * block_bytes <= length
           and len(found) + block_room <= capacity):
        base = block * block_bytes
        end = base + block_bytes
        if not _RING_WORD(ring, base + 8)[0] & 1:  # TP_STATUS_USER
            break
        packets, at = _RING_WORD(ring, base + 12)[0], base + _RING_WORD(ring, base + 16)[0]
        for _ in range(packets):
            if not (at >= base and at + TPACKET3_MINIMUM <= end):
                break
            if not (skip_outgoing and ring[at + 58] == PACKET_OUTGOING):
                _, seconds, nanoseconds, snap, on_wire = struct.unpack_from("=IIIII", ring, at)
                mac = struct.unpack_from("=H", ring, at + 24)[0]
                found.append((at + mac, snap, on_wire, seconds * 1_000_000_000 + nanoseconds))
                if len(found) == capacity:
                    break
            next_at = _RING_WORD(ring, at)[0]
            if not next_at:
                break
            at += next_at
        taken += 1
        block = (block + 1) % block_count
    count = len(found)
    if count:
        columns = np.array(found, dtype=np.int64).reshape(count, 4)
        starts[:count], captured[:count], wire[:count], ts[:count] = columns.T
        if width > 0:
            table = rows.reshape(-1)[:count * width].reshape(count, width)
            table[:] = rows_at(np.frombuffer(ring, dtype=np.uint8), starts[:count], width)
    return count, taken


def python_decode_pcap(rows: np.ndarray, count: int, width: int, big_endian: bool, scale: int,
                       fraction_limit: int, max_captured: int, offsets: np.ndarray,
                       starts: np.ndarray, captured: np.ndarray, wire: np.ndarray,
                       ts: np.ndarray) -> tuple[int, int]:
    """The pcap record headers in the first 16 bytes of a walk table's first `count` rows:
    each frame's start (its record's offset + 16), captured and wire lengths and time in ns,
    into the outputs, up to the first record claiming more than `max_captured` bytes. A time
    whose fraction reaches `fraction_limit` counts from its seconds alone.
    (usable records, those among them with such a time)."""
    word = np.dtype(np.uint32).newbyteorder(">" if big_endian else "<")
    table = rows.reshape(-1)[:count * width].reshape(count, width)
    header = np.ascontiguousarray(table[:, :16]).view(word)
    seconds, fraction, length, original = (header[:, k].astype(np.int64) for k in range(4))
    too_long = np.flatnonzero(length > max_captured)
    usable = int(too_long[0]) if len(too_long) else count
    bad = fraction[:usable] >= fraction_limit
    starts[:usable] = offsets[:usable] + 16
    captured[:usable], wire[:usable] = length[:usable], original[:usable]
    ts[:usable] = seconds[:usable] * 1_000_000_000 + np.where(bad, 0, fraction[:usable]) * scale
    return usable, int(np.count_nonzero(bad))


python_walk = _walker(_pcap_record)
python_walk_pcapng = _walker(_pcapng_packet_block)


def python_read_walk(fd: int, data: np.ndarray, start: int, want: int, at: int,
                     offsets: np.ndarray, big_endian: bool, rows: np.ndarray, width: int,
                     piece: int) -> tuple[int, int, int]:
    """The pcap records from `at` walked (as walk) in data[:start] (uint8), then up to `want`
    bytes of the file `fd` read into data[start:], `piece` bytes at a time, walked on after
    each read while the piece is in the CPU's cache: (bytes read, records walked, where the
    next record begins). Fewer bytes only at the file's end."""
    if not (0 <= start <= len(data) and 0 <= want <= len(data) - start and piece >= 1
            and width >= 0 and at >= 0):
        raise ValueError("read_walk: start, want, at, width or piece out of range")
    capacity = min(len(offsets), rows.size // width) if width > 0 else len(offsets)
    flat = rows.reshape(-1)
    got = count = 0
    while True:  # walk what is there (first, what `start` holds already), then read more
        if count < capacity:
            found, at = python_walk(data, at, start + got, offsets[count:capacity], big_endian,
                                    flat[count * width:], width)
            count += found
        if got >= want:
            break
        read = os.read(fd, min(piece, want - got))
        if not read:
            break
        data[start + got:start + got + len(read)] = np.frombuffer(read, dtype=np.uint8)
        got += len(read)
    return got, count, at


def python_read_walk_decode(fd: int, data: np.ndarray, start: int, want: int, at: int,
                            offsets: np.ndarray, big_endian: bool, rows: np.ndarray,
                            width: int, piece: int, scale: int, fraction_limit: int,
                            max_captured: int, starts: np.ndarray, captured: np.ndarray,
                            wire: np.ndarray, ts: np.ndarray
                            ) -> tuple[int, int, int, int, int]:
    """read_walk, then its records' headers decoded as decode_pcap does them (the C step
    decodes each as soon as it is walked): (bytes read, records walked, where the next
    begins, usable records, bad timestamps). Walks take no more records than the decode's
    outputs hold."""
    if width < 16 or scale <= 0 or fraction_limit <= 0:
        raise ValueError("read_walk_decode: rows too narrow for a record header, or a bad "
                         "scale")
    room = min(len(starts), len(captured), len(wire), len(ts))
    got, count, at = python_read_walk(fd, data, start, want, at, offsets[:room], big_endian,
                                      rows, width, piece)
    usable, bad = python_decode_pcap(rows, count, width, big_endian, scale, fraction_limit,
                                     max_captured, offsets, starts, captured, wire, ts)
    return got, count, at, usable, bad


try:
    from traffic_capture.sources._record_walk import walk as compiled_walk
    from traffic_capture.sources._record_walk import walk_pcapng as compiled_walk_pcapng
except ImportError:  # no compiler at install time: same results, ~100x slower
    compiled_walk = compiled_walk_pcapng = None
try:  # apart: a module built before walk_ring existed still walks files
    from traffic_capture.sources._record_walk import walk_ring as compiled_walk_ring
except ImportError:
    compiled_walk_ring = None
try:  # the same
    from traffic_capture.sources._record_walk import decode_pcap as compiled_decode_pcap
except ImportError:
    compiled_decode_pcap = None
try:  # the same
    from traffic_capture.sources._record_walk import read_walk as compiled_read_walk
except ImportError:
    compiled_read_walk = None
try:  # the same
    from traffic_capture.sources._record_walk import read_walk_decode as compiled_read_walk_decode
except ImportError:
    compiled_read_walk_decode = None

walk = compiled_or(compiled_walk, python_walk)
walk_pcapng = compiled_or(compiled_walk_pcapng, python_walk_pcapng)
walk_ring = compiled_or(compiled_walk_ring, python_walk_ring)
decode_pcap = compiled_or(compiled_decode_pcap, python_decode_pcap)
read_walk_decode = compiled_or(compiled_read_walk_decode, python_read_walk_decode)
COMPILED = compiled_walk is not None
