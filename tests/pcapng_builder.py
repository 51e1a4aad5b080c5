"""pcapng files written block by block from the specification (draft-ietf-opsawg-pcapng), to
reach what dumpcap never writes: several sections and byte orders, link types mixed in one
file, time units other than microseconds, Simple and obsolete Packet Blocks, odd blocks."""

from __future__ import annotations

import struct


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def block(kind: int, body: bytes, endian: str = "<") -> bytes:
    body = _pad(body)
    length = 12 + len(body)
    return struct.pack(endian + "II", kind, length) + body + struct.pack(endian + "I", length)


def options(pairs: list[tuple[int, bytes]], endian: str = "<") -> bytes:
    if not pairs:
        return b""
    out = b"".join(struct.pack(endian + "HH", code, len(value)) + _pad(value)
                   for code, value in pairs)
    return out + struct.pack(endian + "HH", 0, 0)


def section(endian: str = "<") -> bytes:
    body = struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1)
    return block(0x0A0D0D0A, body, endian)


def interface(linktype: int, endian: str = "<", snaplen: int = 262144,
              tsresol: int | None = None, tsoffset: int | None = None) -> bytes:
    pairs = [(2, b"test0")]
    if tsresol is not None:
        pairs.append((9, bytes([tsresol])))
    if tsoffset is not None:
        pairs.append((14, struct.pack(endian + "q", tsoffset)))
    return block(1, struct.pack(endian + "HHI", linktype, 0, snaplen) + options(pairs, endian),
                 endian)


def enhanced(interface_id: int, units: int, frame: bytes, endian: str = "<",
             comment: bytes | None = None) -> bytes:
    head = struct.pack(endian + "IIIII", interface_id, units >> 32, units & 0xFFFFFFFF,
                       len(frame), len(frame))
    return block(6, head + _pad(frame) + options([(1, comment)] if comment else [], endian),
                 endian)


def simple(frame: bytes, endian: str = "<") -> bytes:
    return block(3, struct.pack(endian + "I", len(frame)) + frame, endian)


def obsolete(interface_id: int, units: int, frame: bytes, endian: str = "<") -> bytes:
    head = struct.pack(endian + "HHIIII", interface_id, 0, units >> 32, units & 0xFFFFFFFF,
                       len(frame), len(frame))
    return block(2, head + frame, endian)


def statistics(interface_id: int, units: int, endian: str = "<") -> bytes:
    return block(5, struct.pack(endian + "III", interface_id, units >> 32, units & 0xFFFFFFFF)
                 + options([(4, struct.pack(endian + "Q", 7))], endian), endian)


def name_resolution(endian: str = "<") -> bytes:
    record = struct.pack(endian + "HH", 1, 12) + bytes([192, 0, 2, 1]) + b"srv\0\0\0\0\0"
    return block(4, record + struct.pack(endian + "HH", 0, 0), endian)


def custom(endian: str = "<") -> bytes:
    return block(0x00000BAD, struct.pack(endian + "I", 32473) + b"vendor data", endian)
