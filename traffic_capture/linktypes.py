"""The link types read, in one table: every part (file readers, parsers, live sockets) derives
from it, so a link type is added in one place and a missing one is a clear error, never a
KeyError.

A link type is the pcap LINKTYPE_/DLT_ number a capture says its frames are in.
"""

from __future__ import annotations

from typing import NamedTuple

from traffic_capture.errors import TrafficCaptureError

DLT_NULL = 0  # BSD loopback, Npcap's \Device\NPF_Loopback: 4-byte address family, host order
DLT_EN10MB = 1  # Ethernet, with 802.1Q / 802.1ad tags
DLT_RAW = 101  # raw IP, no link header
DLT_RAW_OPENBSD = 14  # DLT_RAW's number on OpenBSD, found in old files
DLT_RAW_12 = 12  # DLT_RAW's number on other BSDs and in some old Linux files
DLT_LOOP = 108  # OpenBSD loopback: DLT_NULL with the family in network order
DLT_LINUX_SLL = 113  # Linux cooked v1: `tcpdump -i any` before libpcap 1.10
DLT_IPV4 = 228
DLT_IPV6 = 229
DLT_LINUX_SLL2 = 276  # Linux cooked v2: `tcpdump -i any` since libpcap 1.10


class LinkType(NamedTuple):
    """How to reach the IP header in a frame of this link type.

    `ip_at`: the fixed link header's length. `ethertype_at`: where its ethertype is (VLAN tags
    after it are skipped), or None when the IP version nibble alone tells IPv4 from IPv6 (the
    loopback family field differs by OS, so it is not trusted). `arphrd`: the Linux device
    hardware types whose packet sockets deliver frames of this link type.
    """

    number: int
    name: str
    ip_at: int
    ethertype_at: int | None
    arphrd: tuple[int, ...] = ()


LINK_TYPES: dict[int, LinkType] = {link.number: link for link in (
    LinkType(DLT_NULL, "NULL (BSD/Npcap loopback)", 4, None),
    LinkType(DLT_LOOP, "LOOP (OpenBSD loopback)", 4, None),
    # lo carries a zeroed Ethernet header; veth, bridges, bonds and VLAN devices are Ethernet.
    LinkType(DLT_EN10MB, "EN10MB (Ethernet)", 14, 12, arphrd=(1, 772)),
    # tun and WireGuard (ARPHRD_NONE), PPP, IPIP, SIT, GRE and IP6GRE tunnels carry bare IP.
    LinkType(DLT_RAW, "RAW (IP)", 0, None, arphrd=(65534, 512, 768, 776, 778, 823)),
    LinkType(DLT_RAW_OPENBSD, "RAW (IP)", 0, None),
    LinkType(DLT_RAW_12, "RAW (IP)", 0, None),
    LinkType(DLT_IPV4, "IPV4", 0, None),
    LinkType(DLT_IPV6, "IPV6", 0, None),
    LinkType(DLT_LINUX_SLL, "LINUX_SLL (Linux cooked v1)", 16, 14),
    LinkType(DLT_LINUX_SLL2, "LINUX_SLL2 (Linux cooked v2)", 20, 0),
)}

# Linux device hardware type -> the link type its packet sockets deliver.
LINK_TYPE_BY_ARPHRD: dict[int, int] = {
    hardware: link.number for link in LINK_TYPES.values() for hardware in link.arphrd}


class UnknownLinkType(TrafficCaptureError):
    """A capture in a link type this product cannot read; the message names it."""


def link_type_name(number: int) -> str:
    link = LINK_TYPES.get(number)
    return link.name if link is not None else f"link type {number}"


def supported_names() -> str:
    return ", ".join(sorted({link.name for link in LINK_TYPES.values()}))


def link_type(number: int) -> LinkType:
    """The table's entry; raises UnknownLinkType naming the number and what is read."""
    link = LINK_TYPES.get(number)
    if link is None:
        raise UnknownLinkType(f"unsupported link type {number}; supported: {supported_names()}")
    return link
