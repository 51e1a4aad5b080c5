"""pcapng files written block by block from the specification (draft-ietf-opsawg-pcapng), to
reach what dumpcap never writes: several sections and byte orders, link types mixed in one
file, time units other than microseconds, Simple and obsolete Packet Blocks, odd blocks; and
`mixed_file`, all of them at once around random packets, which the reader tests share."""

from __future__ import annotations

import random
import struct

from tests.frames import ICMP, IP, TCP, UDP, Ether, IPv6, Raw


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


# -- a file of every kind of block, around random packets ---------------------------------------
SERVER4, SERVER6 = "192.0.2.1", "2001:db8::1"
T0 = 1_700_000_000  # seconds
DLT_EN10MB, DLT_RAW, DLT_LINUX_SLL = 1, 101, 113


def _ip_packet(rng: random.Random, version: int) -> bytes:
    host = rng.randrange(2, 9)
    client = f"198.51.100.{host}" if version == 4 else f"2001:db8:1::{host}"
    server = SERVER4 if version == 4 else SERVER6
    src, dst = (client, server) if rng.random() < 0.5 else (server, client)
    layer = IP(src=src, dst=dst) if version == 4 else IPv6(src=src, dst=dst)
    upper = rng.choice([TCP(sport=40000, dport=80), TCP(sport=40000, dport=22),
                        UDP(sport=40000, dport=53), ICMP()])
    return bytes(layer / upper / Raw(b"z" * rng.randrange(0, 300)))


def random_frame(rng: random.Random, linktype: int) -> bytes:
    """A packet framed for the link type (IPv6 on Ethernet only, to keep SLL and RAW simple)."""
    if linktype == DLT_EN10MB:
        version = rng.choice([4, 6])
        return bytes(Ether(type=0x86DD if version == 6 else 0x0800)
                     / Raw(_ip_packet(rng, version)))
    if linktype == DLT_LINUX_SLL:  # incoming, ARPHRD_ETHER, 6-byte address, IPv4
        return bytes.fromhex("0000000100060202020202020000" "0800") + _ip_packet(rng, 4)
    return _ip_packet(rng, 4)


def mixed_file(seed: int = 7, packets: int = 600) -> bytes:
    """Two sections (little- then big-endian), three link types, microsecond, nanosecond and
    2**-20 s time units, a time offset, obsolete packet blocks, statistics, name resolution
    and custom blocks between packets, EPB options, frames of every length modulo 4."""
    rng = random.Random(seed)
    out = [section("<"), interface(DLT_EN10MB), name_resolution(),
           interface(DLT_RAW, tsresol=9), interface(DLT_LINUX_SLL, tsresol=0x80 | 20),
           interface(DLT_EN10MB, tsoffset=3)]
    units = {0: 10**6, 1: 10**9, 2: 2**20, 3: 10**6}
    links = {0: DLT_EN10MB, 1: DLT_RAW, 2: DLT_LINUX_SLL, 3: DLT_EN10MB}
    for k in range(packets):
        at = T0 + k * 0.05 + rng.random() * 0.01  # 30 s: six windows
        iface = rng.choice([0, 0, 0, 1, 2, 3])
        offset = 3 if iface == 3 else 0
        stamp = int((at - offset) * units[iface])
        frame = random_frame(rng, links[iface])
        if rng.random() < 0.05:
            out.append(obsolete(iface, stamp, frame))
        else:
            out.append(enhanced(iface, stamp, frame, comment=b"c" if k % 9 == 0 else None))
        if rng.random() < 0.03:
            out.append(rng.choice([statistics(0, stamp), custom(), name_resolution()]))
    # A second section: big-endian, its own interfaces (numbered from 0 again).
    out += [section(">"), interface(DLT_RAW, ">", tsresol=9),
            interface(DLT_EN10MB, ">")]
    for k in range(packets // 3):
        at = T0 + 30 + k * 0.05
        iface = rng.choice([0, 1])
        stamp = int(at * (10**9 if iface == 0 else 10**6))
        out.append(enhanced(iface, stamp, random_frame(rng, DLT_RAW if iface == 0 else DLT_EN10MB),
                               ">"))
    out.append(statistics(0, T0 * 10**6, ">"))
    return b"".join(out)
