"""Frames built with scapy (a real packet library, independent of our parser) in every link type."""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
from scapy.packet import Packet, Raw

from traffic_capture import linktypes
from traffic_capture.csvformat import Row
from traffic_capture.pipeline import CountedPackets, Pipeline
from traffic_capture.servers import ServerSet, parse_server
from traffic_capture.sources.offline import FileSource

SERVER4 = "192.0.2.1"
SERVER6 = "2001:db8::1"
CLIENT4 = "198.51.100.7"
CLIENT6 = "2001:db8:1::7"


def ethernet(ip: Packet) -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / ip)


def ethernet_vlan(ip: Packet) -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / Dot1Q(vlan=42) / ip)


def ethernet_qinq(ip: Packet) -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                 / Dot1AD(vlan=7) / Dot1Q(vlan=42) / ip)


def linux_sll(ip: Packet) -> bytes:
    proto = 0x86DD if ip.version == 6 else 0x0800
    return bytes(CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, proto=proto) / ip)


def linux_sll2(ip: Packet) -> bytes:
    proto = 0x86DD if ip.version == 6 else 0x0800
    return bytes(CookedLinuxV2(proto=proto, ifindex=2, pkttype=0) / ip)


def null_le(ip: Packet) -> bytes:
    # DLT_NULL written by a little-endian host; Windows (Npcap) says 23 for IPv6.
    family = 23 if ip.version == 6 else 2
    return struct.pack("<I", family) + bytes(ip)


def null_be(ip: Packet) -> bytes:
    family = 30 if ip.version == 6 else 2  # macOS's AF_INET6
    return struct.pack(">I", family) + bytes(ip)


def loop(ip: Packet) -> bytes:
    # DLT_LOOP: the family in network byte order (OpenBSD's AF_INET6 is 24).
    return struct.pack(">I", 24 if ip.version == 6 else 2) + bytes(ip)


def raw(ip: Packet) -> bytes:
    return bytes(ip)


# (link type, builder) for every link type the product reads.
LINK_TYPES: dict[str, tuple[int, Callable[[Packet], bytes]]] = {
    "ethernet": (linktypes.DLT_EN10MB, ethernet),
    "ethernet-802.1q": (linktypes.DLT_EN10MB, ethernet_vlan),
    "ethernet-802.1ad": (linktypes.DLT_EN10MB, ethernet_qinq),
    "linux-sll": (linktypes.DLT_LINUX_SLL, linux_sll),
    "linux-sll2": (linktypes.DLT_LINUX_SLL2, linux_sll2),
    "null-little-endian": (linktypes.DLT_NULL, null_le),
    "null-big-endian": (linktypes.DLT_NULL, null_be),
    "loop": (linktypes.DLT_LOOP, loop),
    "raw": (linktypes.DLT_RAW, raw),
    # The other raw-IP numbers: the version nibble decides, whatever the number promises.
    "raw-openbsd": (linktypes.DLT_RAW_OPENBSD, raw),
    "raw-12": (linktypes.DLT_RAW_12, raw),
    "ipv4": (linktypes.DLT_IPV4, raw),
    "ipv6": (linktypes.DLT_IPV6, raw),
}


def collecting_pipeline(servers: Iterable[str], window: int) -> tuple[Pipeline, list[Row]]:
    """A pipeline whose closed windows land, as rows, in the returned list."""
    rows: list[Row] = []
    pipeline = Pipeline(ServerSet(parse_server(s) for s in servers), window,
                        lambda closed: rows.extend(closed.rows()))
    return pipeline, rows


def feed_file(pipeline: Pipeline, path: Path) -> list[str]:
    """Every batch of a capture file through the pipeline, then its finish, as app.Run does
    minus threads and signals; the reader's warnings."""
    source = FileSource([path])
    try:
        for batch in source.batches(threading.Event()):
            assert batch is not None
            pipeline.feed_batch(batch)
        pipeline.finish()
        return source.warnings()
    finally:
        source.close()


def counted_batches(pcap: Path, servers: Iterable[str], limit: int | None = None
                    ) -> list[CountedPackets]:
    """The tap's batches for a capture file, with their frames, as the packet log gets them
    (each frame cut to `limit` bytes)."""
    got: list[CountedPackets] = []
    feed_file(Pipeline(ServerSet(parse_server(s) for s in servers), 5, lambda _: None,
                       emit_packets=got.append, packet_frames=True, frames_limit=limit), pcap)
    return got


def arp_frame() -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff")
                 / ARP(hwsrc="02:00:00:00:00:01", psrc=CLIENT4, pdst=SERVER4))


__all__ = [
    "ICMP", "IP", "TCP", "UDP", "IPv6", "ICMPv6EchoRequest", "IPv6ExtHdrDestOpt",
    "IPv6ExtHdrFragment", "IPv6ExtHdrHopByHop", "IPv6ExtHdrRouting", "Raw", "Packet",
]
