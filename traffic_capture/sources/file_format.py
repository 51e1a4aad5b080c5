"""What a capture file is, told from its first bytes: gzip or not, classic pcap (its byte
order, time unit and link type) or pcapng, or neither. The magic numbers live here."""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from traffic_capture.sources import pcapng

PCAP_HEADER_BYTES = 24
HEAD_BYTES = PCAP_HEADER_BYTES + 4  # enough to tell every format read
GZIP_MAGIC = b"\x1f\x8b"
# libpcap's LT_LINKTYPE(): the link-type field's upper bits carry the FCS length and flags.
LINKTYPE_MASK = 0xFFFF
# LT_RESERVED1(): bits that must be 0; libpcap and tshark refuse a file that sets them, and so
# does this reader (the whole number is then an unknown link type).
LINKTYPE_RESERVED = 0x03FF0000
# LT_FCS_LENGTH_PRESENT() and LT_FCS_LENGTH(): each frame ends in an FCS of that many 16-bit
# words, which is no part of the IP packet.
LINKTYPE_FCS_PRESENT = 0x04000000


@dataclass
class ClassicPcap:
    """What a classic pcap's 24-byte file header says."""

    endian: str
    nano: bool
    linktype: int
    fcs_bytes: int = 0  # the FCS each frame ends in (LT_FCS_LENGTH), 0 when none is said


# The magic number as it lies on disk: byte order, and whether timestamps are nanoseconds.
CLASSIC_MAGIC = {b"\xd4\xc3\xb2\xa1": ("<", False), b"\xa1\xb2\xc3\xd4": (">", False),
                 b"\x4d\x3c\xb2\xa1": ("<", True), b"\xa1\xb2\x3c\x4d": (">", True)}


def is_gzip(head: bytes) -> bool:
    return head[:2] == GZIP_MAGIC


def open_bytes(path: Path, compressed: bool) -> io.BufferedIOBase | io.RawIOBase:
    """A file's bytes from the start, decompressed."""
    if compressed:
        return gzip.open(path, "rb")
    return path.open("rb", buffering=0)


def file_format(head: bytes) -> ClassicPcap | str | None:
    """A classic pcap's header, "pcapng", or None for anything else, from the first bytes."""
    kind = CLASSIC_MAGIC.get(head[:4])
    if kind is not None and len(head) >= PCAP_HEADER_BYTES:
        endian, nano = kind
        (field,) = struct.unpack_from(endian + "I", head, 20)
        if field & LINKTYPE_RESERVED:
            return ClassicPcap(endian, nano, field)
        fcs = (field >> 28) * 2 if field & LINKTYPE_FCS_PRESENT else 0
        return ClassicPcap(endian, nano, field & LINKTYPE_MASK, fcs)
    endian_ng = pcapng.section_byte_order(head)
    if endian_ng is not None and len(head) >= 14:
        (major,) = struct.unpack_from(endian_ng + "H", head, 12)
        if major == 1:
            return "pcapng"
    return None


def read_head(opened: io.BufferedIOBase | io.RawIOBase) -> bytes:
    """The first HEAD_BYTES of an opened file (which it closes); b"" if they cannot be read."""
    try:
        with opened as capture:
            return capture.read(HEAD_BYTES) or b""
    except (OSError, EOFError, zlib.error):
        return b""


def decompressed_head(data: bytes) -> bytes:
    """The first bytes a gzip stream's peeked start decompresses to."""
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, HEAD_BYTES)
    except zlib.error:
        return b""
