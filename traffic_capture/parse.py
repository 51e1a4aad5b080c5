"""Frame bytes -> the few header fields the product needs.

Pure functions over bytes, no scapy objects: building a scapy Packet per packet caps the daemon
at about 5,000 packets/s, while reading a dozen header bytes directly keeps up with busy servers.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from traffic_capture.rules import PROTO_TCP, PROTO_UDP

# Link types (the pcap LINKTYPE_/DLT_ numbers), the ones a sysadmin's captures come in.
DLT_NULL = 0  # BSD loopback, Npcap's \Device\NPF_Loopback: 4-byte address family, host order
DLT_EN10MB = 1  # Ethernet, with 802.1Q / 802.1ad tags
DLT_RAW = 101  # raw IP, no link header
DLT_RAW_OPENBSD = 14  # DLT_RAW's number on OpenBSD, found in old files
DLT_LOOP = 108  # OpenBSD loopback: DLT_NULL with the family in network order
DLT_LINUX_SLL = 113  # Linux cooked v1: `tcpdump -i any` before libpcap 1.10
DLT_IPV4 = 228
DLT_IPV6 = 229
DLT_LINUX_SLL2 = 276  # Linux cooked v2: `tcpdump -i any` since libpcap 1.10

LINK_TYPE_NAMES: dict[int, str] = {
    DLT_NULL: "NULL (BSD/Npcap loopback)",
    DLT_EN10MB: "EN10MB (Ethernet)",
    DLT_RAW: "RAW (IP)",
    DLT_RAW_OPENBSD: "RAW (IP)",
    DLT_LOOP: "LOOP (OpenBSD loopback)",
    DLT_LINUX_SLL: "LINUX_SLL (Linux cooked v1)",
    DLT_IPV4: "IPV4",
    DLT_IPV6: "IPV6",
    DLT_LINUX_SLL2: "LINUX_SLL2 (Linux cooked v2)",
}

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
# 802.1Q, 802.1ad (QinQ outer tag), and the pre-standard QinQ tag still seen on some switches.
ETHERTYPE_VLAN_TAGS = frozenset({0x8100, 0x88A8, 0x9100})

# IPv6 extension headers that carry a next-header field and a length, followed to reach TCP/UDP.
# Fragment (44) is fixed at 8 bytes; AH (51) counts its length in 4-byte units, the others in 8.
IPV6_EXT_HOP_BY_HOP = 0
IPV6_EXT_ROUTING = 43
IPV6_EXT_FRAGMENT = 44
IPV6_EXT_AH = 51
IPV6_EXT_DEST_OPTS = 60
IPV6_EXT_OTHERS = frozenset({135, 139, 140, 253, 254})  # mobility, HIP, shim6, experiments
IPV6_EXTENSIONS = frozenset(
    {IPV6_EXT_HOP_BY_HOP, IPV6_EXT_ROUTING, IPV6_EXT_FRAGMENT, IPV6_EXT_AH, IPV6_EXT_DEST_OPTS}
    | IPV6_EXT_OTHERS
)

NO_PORT = -1


# What the classifier needs of one IP packet, as a plain tuple (a NamedTuple costs five times
# as much to build, once per packet):
#   src, dst     packed addresses, 4 or 16 bytes
#   proto        upper-layer protocol after IPv6 extension headers
#   sport, dport NO_PORT when the packet has no TCP/UDP header (fragments, other protocols)
#   ip_bytes     IPv4 total length, or IPv6 payload length + 40
#   payload_at   offset in the frame of the TCP payload (FTP commands), else -1
Fields = tuple[bytes, bytes, int, int, int, int, int]


class UnknownLinkType(ValueError):
    """A capture in a link type this product cannot read; the message names it."""


def link_type_name(linktype: int) -> str:
    return LINK_TYPE_NAMES.get(linktype, f"link type {linktype}")


def _ethertype_offset(frame: bytes, ethertype: int, at: int) -> int:
    """Skip VLAN tags; the offset of the IP header, or -1 for non-IP frames (ARP, LLDP...)."""
    while ethertype in ETHERTYPE_VLAN_TAGS:
        if len(frame) < at + 4:
            return -1
        ethertype = (frame[at + 2] << 8) | frame[at + 3]
        at += 4
    if ethertype in (ETHERTYPE_IPV4, ETHERTYPE_IPV6):
        return at
    return -1


def _ethernet(frame: bytes) -> int:
    if len(frame) < 14:
        return -1
    ethertype = (frame[12] << 8) | frame[13]
    if ethertype in (ETHERTYPE_IPV4, ETHERTYPE_IPV6):
        return 14
    return _ethertype_offset(frame, ethertype, 14)


def _linux_sll(frame: bytes) -> int:
    if len(frame) < 16:
        return -1
    return _ethertype_offset(frame, (frame[14] << 8) | frame[15], 16)


def _linux_sll2(frame: bytes) -> int:
    if len(frame) < 20:
        return -1
    return _ethertype_offset(frame, (frame[0] << 8) | frame[1], 20)


def _loopback(frame: bytes) -> int:
    # The 4-byte family is in the capturing host's byte order and its IPv6 value differs by OS
    # (24, 28, 30; 23 on Windows): the IP version nibble is the one reliable signal.
    return 4 if len(frame) > 4 else -1


def _raw(frame: bytes) -> int:
    return 0


IP_OFFSET: dict[int, Callable[[bytes], int]] = {
    DLT_NULL: _loopback,
    DLT_LOOP: _loopback,
    DLT_EN10MB: _ethernet,
    DLT_RAW: _raw,
    DLT_RAW_OPENBSD: _raw,
    DLT_IPV4: _raw,
    DLT_IPV6: _raw,
    DLT_LINUX_SLL: _linux_sll,
    DLT_LINUX_SLL2: _linux_sll2,
}


def ip_offset_function(linktype: int) -> Callable[[bytes], int]:
    """The link-layer decoder for a link type; raises UnknownLinkType naming it."""
    try:
        return IP_OFFSET[linktype]
    except KeyError:
        raise UnknownLinkType(
            f"unsupported link type {linktype}; supported: "
            + ", ".join(sorted({name for name in LINK_TYPE_NAMES.values()}))
        ) from None


def parse_ip(frame: bytes, at: int) -> Fields | None:
    """Parse the IP header starting at `at`; None when it is not a readable IPv4/IPv6 header."""
    if at < 0 or len(frame) < at + 20:
        return None
    version = frame[at] >> 4
    if version == 4:
        return _parse_ipv4(frame, at)
    if version == 6 and len(frame) >= at + 40:
        return _parse_ipv6(frame, at)
    return None


def _parse_ipv4(frame: bytes, at: int) -> Fields | None:
    header_len = (frame[at] & 0x0F) * 4
    if header_len < 20:
        return None
    total_len = (frame[at + 2] << 8) | frame[at + 3]
    if total_len < header_len:
        # TCP segmentation offload can leave 0 here on the sending host; the captured length is
        # then the best count there is.
        total_len = len(frame) - at
    proto = frame[at + 9]
    src = frame[at + 12 : at + 16]
    dst = frame[at + 16 : at + 20]
    fragment_offset = ((frame[at + 6] & 0x1F) << 8) | frame[at + 7]
    l4 = at + header_len
    if fragment_offset or (proto != PROTO_TCP and proto != PROTO_UDP):
        return (src, dst, proto, NO_PORT, NO_PORT, total_len, -1)
    return _with_ports(frame, src, dst, proto, l4, total_len)


def _parse_ipv6(frame: bytes, at: int) -> Fields | None:
    payload_len = (frame[at + 4] << 8) | frame[at + 5]
    next_header = frame[at + 6]
    src = frame[at + 8 : at + 24]
    dst = frame[at + 24 : at + 40]
    # A jumbogram says 0 here (its length is in a hop-by-hop option); the captured length is
    # the best count there is.
    ip_bytes = payload_len + 40 if payload_len else len(frame) - at
    l4 = at + 40
    fragment_without_ports = False
    while next_header in IPV6_EXTENSIONS:
        if len(frame) < l4 + 8:
            # Cut short by the snaplen: the protocol is known, the ports are not.
            return (src, dst, next_header, NO_PORT, NO_PORT, ip_bytes, -1)
        following = frame[l4]
        if next_header == IPV6_EXT_FRAGMENT:
            if ((frame[l4 + 2] << 8) | frame[l4 + 3]) & 0xFFF8:
                fragment_without_ports = True
            l4 += 8
        elif next_header == IPV6_EXT_AH:
            l4 += (frame[l4 + 1] + 2) * 4
        else:
            l4 += (frame[l4 + 1] + 1) * 8
        next_header = following
    if fragment_without_ports or (next_header != PROTO_TCP and next_header != PROTO_UDP):
        return (src, dst, next_header, NO_PORT, NO_PORT, ip_bytes, -1)
    return _with_ports(frame, src, dst, next_header, l4, ip_bytes)


def _with_ports(
    frame: bytes, src: bytes, dst: bytes, proto: int, l4: int, ip_bytes: int
) -> Fields:
    if len(frame) < l4 + 4:
        return (src, dst, proto, NO_PORT, NO_PORT, ip_bytes, -1)
    sport = (frame[l4] << 8) | frame[l4 + 1]
    dport = (frame[l4 + 2] << 8) | frame[l4 + 3]
    payload_at = -1
    if proto == PROTO_TCP and len(frame) >= l4 + 13:
        payload_at = l4 + (frame[l4 + 12] >> 4) * 4
    return (src, dst, proto, sport, dport, ip_bytes, payload_at)


def parse_frame(linktype: int, frame: bytes) -> Fields | None:
    """One frame of a given link type -> its IP fields, or None for non-IP frames."""
    return parse_ip(frame, ip_offset_function(linktype)(frame))


def address_text(address: bytes) -> str:
    """Compressed text form, as `ip addr`, tshark and Python's ipaddress write it."""
    family = socket.AF_INET if len(address) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, address)


def split_address(address: bytes) -> tuple[int, int]:
    """(hi, lo) 64-bit halves of an address as the batch arrays hold it (IPv4 in lo)."""
    if len(address) == 4:
        return 0, int.from_bytes(address, "big")
    return int.from_bytes(address[:8], "big"), int.from_bytes(address[8:], "big")


def join_address(is6: bool, hi: int, lo: int) -> bytes:
    if is6:
        return hi.to_bytes(8, "big") + lo.to_bytes(8, "big")
    return lo.to_bytes(4, "big")
