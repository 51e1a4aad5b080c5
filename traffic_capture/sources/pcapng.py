"""pcapng, the format Wireshark and dumpcap write by default: its blocks other than packets.

The Enhanced Packet Blocks, nearly every block of a file, are walked in C (_record_walk.c) and
decoded with numpy in pcapng_section.py; this module reads what they refer to: the section's byte
order (Section Header Block), the interfaces' link types and time units (Interface
Description Blocks), and the two rare packet blocks (Simple and obsolete Packet Blocks),
as the pcapng specification (draft-ietf-opsawg-pcapng) defines them.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

from traffic_capture.frames import NS

SECTION_HEADER = 0x0A0D0D0A  # the same bytes in either byte order
INTERFACE = 1
OBSOLETE_PACKET = 2
SIMPLE_PACKET = 3
ENHANCED_PACKET = 6
BYTE_ORDER_MAGIC = {b"\x1a\x2b\x3c\x4d": ">", b"\x4d\x3c\x2b\x1a": "<"}
_OPTION_END, _OPTION_TSRESOL, _OPTION_TSOFFSET = 0, 9, 14


class DamagedBlock(ValueError):
    """A block whose lengths cannot be right: nothing after it can be trusted."""


class Interface(NamedTuple):
    linktype: int
    snaplen: int
    units_per_second: int = 1_000_000  # if_tsresol; microseconds when absent
    offset_seconds: int = 0  # if_tsoffset


def section_byte_order(head: bytes) -> str | None:
    """'<' or '>' if `head` (12 bytes or more) starts a Section Header Block, else None."""
    if len(head) < 12 or struct.unpack_from("<I", head)[0] != SECTION_HEADER:
        return None
    return BYTE_ORDER_MAGIC.get(bytes(head[8:12]))


def block_length(head: bytes, endian: str) -> int:
    """The length of the block starting `head` (12 bytes or more), checked for sense."""
    (length,) = struct.unpack_from(endian + "I", head, 4)
    if length < 12 or length % 4:
        raise DamagedBlock(f"block length {length}")
    return length


def interface(block: bytes, endian: str) -> Interface:
    """An Interface Description Block (the whole block, header and trailer included)."""
    if len(block) < 20:
        raise DamagedBlock("interface description block too short")
    linktype, snaplen = struct.unpack_from(endian + "HxxI", block, 8)
    units, offset = 1_000_000, 0
    at, end = 16, len(block) - 4
    while at + 4 <= end:
        code, length = struct.unpack_from(endian + "HH", block, at)
        value = block[at + 4:at + 4 + length]
        if code == _OPTION_END:
            break
        if code == _OPTION_TSRESOL and len(value) == 1:
            # Bit 7 set: a negative power of 2, else of 10 (10**-6 s when absent).
            units = (2 if value[0] & 0x80 else 10) ** (value[0] & 0x7F)
        elif code == _OPTION_TSOFFSET and len(value) == 8:
            (offset,) = struct.unpack(endian + "q", value)
        at += 4 + length + (-length % 4)
    return Interface(linktype, snaplen, units, offset)


# The last second whose nanoseconds fit the int64 timestamps (2262-04-11).
MAX_SECONDS = (2**63 - 1) // NS - 1


def representable(units: np.ndarray, interface: Interface) -> np.ndarray:
    """Which timestamps (uint64, the interface's units), with its offset, fall between 1970
    and 2262: the range integer nanoseconds hold. Others are damage, never a wrapped date."""
    per_second = interface.units_per_second
    # if_tsresol may claim up to 10**127 units a second: then no 64-bit count reaches one.
    seconds = units // np.uint64(per_second) if per_second < 2**64 else np.zeros_like(units)
    offset = interface.offset_seconds
    if offset > MAX_SECONDS:
        return np.zeros(len(units), dtype=bool)
    fits = seconds <= np.uint64(MAX_SECONDS - offset)
    if offset < 0:
        fits &= seconds >= np.uint64(-offset)
    return fits


def timestamps_ns(units: np.ndarray, interface: Interface) -> np.ndarray:
    """Timestamps in the interface's units (uint64) -> integer ns since the epoch, exactly
    floor(units * 10**9 / units_per_second) + the offset, as the scalar reading gives. Only
    for representable() ones: the offset is applied to the seconds (an offset of -10**10 s
    is -10**19 ns, past int64, while the time it gives is not)."""
    per_second = interface.units_per_second
    offset = interface.offset_seconds
    if per_second * NS >= 2**63:  # finer than 10**-10 s: exact Python integers instead
        return np.array([int(u) * NS // per_second + offset * NS for u in units.tolist()],
                        dtype=np.int64)
    seconds, rest = np.divmod(units, np.uint64(per_second))
    # representable(): seconds + offset is within 0..MAX_SECONDS, so is each step here.
    seconds = seconds + np.uint64(offset) if offset >= 0 else seconds - np.uint64(-offset)
    nanoseconds = seconds * np.uint64(NS) + rest * np.uint64(NS) // np.uint64(per_second)
    return nanoseconds.astype(np.int64)


# Said of a packet whose time is not representable, whichever block holds it.
TIME_DAMAGE = "a packet's time, with its interface's offset, is before 1970 or past 2262"


def packet(block: bytes, endian: str, interfaces: list[Interface], last_ts: int
           ) -> tuple[int, int, bytes]:
    """(ts, link type, frame) of a Simple or obsolete Packet Block. A Simple Packet Block has
    no time of its own: it gets the previous packet's."""
    (kind,) = struct.unpack_from(endian + "I", block)
    if kind == SIMPLE_PACKET:
        if len(block) < 16:
            raise DamagedBlock("simple packet block too short")
        first = described(interfaces, 0)
        (original,) = struct.unpack_from(endian + "I", block, 8)
        captured = min(original, len(block) - 16, first.snaplen or original)
        return last_ts, first.linktype, bytes(block[12:12 + captured])
    if len(block) < 32:
        raise DamagedBlock("packet block too short")
    index, high, low, captured = struct.unpack_from(endian + "HxxIII", block, 8)
    if 28 + captured > len(block) - 4:
        raise DamagedBlock(f"a packet block of {len(block)} bytes claims {captured}")
    interface = described(interfaces, index)
    units = np.array([(high << 32) | low], dtype=np.uint64)
    if not representable(units, interface)[0]:  # as for an Enhanced Packet Block
        raise DamagedBlock(TIME_DAMAGE)
    return int(timestamps_ns(units, interface)[0]), interface.linktype, bytes(
        block[28:28 + captured])


def described(interfaces: list[Interface], index: int) -> Interface:
    """The interface a packet names; one its section did not describe is damage (tshark
    stops there too)."""
    if index >= len(interfaces):
        raise DamagedBlock(f"a packet names interface {index}, but its section describes "
                           f"{len(interfaces)}")
    return interfaces[index]
