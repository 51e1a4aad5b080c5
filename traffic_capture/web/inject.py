"""--debug-inject: synthetic packets as real raw-IP frames (DLT_RAW), stamped with the wall
clock and handed to the capture thread, which feeds them through the same parse, classify and
windows as captured ones (so they reach the CSV too)."""

from __future__ import annotations

import ipaddress
import struct
import time
from collections.abc import Callable

from traffic_capture.frames import Batch, batch_of_frames
from traffic_capture.linktypes import DLT_RAW
from traffic_capture.servers import ServerSet

# The server-side port (or IP protocol, for "other") each class is injected on: ports the
# rules classify into that class.
PORT_OF_CLASS = {"http": 80, "ftp": 21, "tcp": 443, "udp": 53}
CLIENT_PORT = 40000


def server_address(servers: ServerSet, version: int) -> bytes:
    """The packed address of the first server of that IP version (a network's first host)."""
    for network in servers.networks:
        if network.version == version:
            if network.num_addresses == 1:
                return network.network_address.packed
            return (network.network_address + 1).packed
    raise ValueError(f"no IPv{version} server address to inject IPv{version} packets with")


def frame(src: bytes, dst: bytes, protocol: str, size: int, inbound: bool) -> bytes:
    """One raw IP packet of `size` IP bytes, header included."""
    port = PORT_OF_CLASS.get(protocol)
    sport, dport = (CLIENT_PORT, port) if inbound else (port, CLIENT_PORT)
    if protocol == "udp":
        proto, upper = 17, struct.pack("!HHHH", sport, dport, 0, 0)
    elif port is not None:
        proto, upper = 6, struct.pack("!HHIIBBHHH", sport, dport, 0, 0, 5 << 4, 0x18, 65535, 0, 0)
    else:
        proto = 1 if len(src) == 4 else 58
        upper = bytes([8 if len(src) == 4 else 128, 0, 0, 0, 0, 0, 0, 0])
    if len(src) == 4:
        header_size = 20
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, 0, 0, 64, proto, 0, src, dst)
    else:
        header_size = 40
        header = struct.pack("!IHBB16s16s", 6 << 28, size - 40, proto, 64, src, dst)
    if size < header_size + len(upper):
        raise ValueError(f"{size} bytes cannot hold the IP and {protocol} headers "
                         f"({header_size + len(upper)} bytes)")
    return header + upper + bytes(size - header_size - len(upper))


class Injector:
    """Requests from the web's thread in, a Batch each to the capture thread (`feed`)."""

    def __init__(self, servers: ServerSet, feed: Callable[[Batch], None]) -> None:
        self.servers = servers
        self.feed = feed

    def inject(self, client: str, direction: str, protocol: str, size: int, count: int) -> int:
        address = ipaddress.ip_address(client)
        server = server_address(self.servers, address.version)
        inbound = direction == "in"
        src, dst = (address.packed, server) if inbound else (server, address.packed)
        data = frame(src, dst, protocol, size, inbound)
        now = time.time_ns()
        self.feed(batch_of_frames([(now, DLT_RAW, data)] * count))
        return count
