"""IP fields + the server set -> client, direction, protocol class and bytes.

The rules are the product's contract (see rules.py and the README); each has a test.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import NamedTuple

from traffic_capture.ftp import FtpDataTracker
from traffic_capture.parse import Fields
from traffic_capture.rules import (
    FTP,
    FTP_CONTROL_PORT,
    FTP_PORTS,
    HTTP,
    HTTP_PORTS,
    IN,
    OTHER,
    OUT,
    PROTO_TCP,
    PROTO_UDP,
    TCP,
    UDP,
)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class InvalidServerAddress(ValueError):
    """A --server-ip value that is neither an address nor a network; the message says why."""


def parse_server(text: str) -> IPNetwork:
    """An address ('192.0.2.1', '2001:db8::1', 'fe80::1%eth0') or a network ('192.0.2.0/24')."""
    value = text.strip()
    if "%" in value:  # a zone (fe80::1%eth0) names the link, which packets don't carry
        value = value.split("%", 1)[0]
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError as error:
        if "/" in value and "host bits set" in str(error):
            address, _, prefix = value.partition("/")
            network = ipaddress.ip_network(value, strict=False)
            raise InvalidServerAddress(
                f"invalid server address {text!r}: {error}; did you mean {network} "
                f"(the network) or {address} (one server)?"
            ) from None
        raise InvalidServerAddress(
            f"invalid server address {text!r}: expected an IPv4 or IPv6 address or network, "
            "e.g. 192.168.1.10, 2001:db8::10 or 192.168.1.0/24"
        ) from None


class ServerSet:
    """Membership test for packed addresses, fast for single addresses, cached for networks."""

    def __init__(self, servers: Iterable[IPNetwork]) -> None:
        self.networks: tuple[IPNetwork, ...] = tuple(dict.fromkeys(servers))
        self._exact = frozenset(
            net.network_address.packed
            for net in self.networks
            if net.num_addresses == 1
        )
        self._ranges = tuple(
            (net.version, int(net.network_address), int(net.broadcast_address))
            for net in self.networks
            if net.num_addresses > 1
        )
        self._range_cache: dict[bytes, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, address: bytes) -> bool:
        if address in self._exact:
            return True
        if not self._ranges:
            return False
        known = self._range_cache.get(address)
        if known is None:
            version = 4 if len(address) == 4 else 6
            value = int.from_bytes(address, "big")
            known = any(v == version and low <= value <= high for v, low, high in self._ranges)
            if len(self._range_cache) > 1_000_000:  # a scan of a /8 must not grow memory forever
                self._range_cache.clear()
            self._range_cache[address] = known
        return known

    def __str__(self) -> str:
        return ", ".join(str(net.network_address) if net.num_addresses == 1 else str(net)
                         for net in self.networks)


class Classified(NamedTuple):
    client: bytes
    direction: str
    protocol_class: int  # index into rules.CLASSES
    ip_bytes: int


def classify(fields: Fields, frame: bytes, servers: ServerSet,
             ftp: FtpDataTracker) -> Classified | None:
    """Apply the direction and class rules; None for packets that don't involve a server."""
    src, dst = fields.src, fields.dst
    if dst in servers:
        client, direction = src, IN  # also server-to-server traffic, counted once, as `in`
    elif src in servers:
        client, direction = dst, OUT
    else:
        return None
    return Classified(client, direction, protocol_class(fields, frame, ftp), fields.ip_bytes)


def protocol_class(fields: Fields, frame: bytes, ftp: FtpDataTracker) -> int:
    proto = fields.proto
    if proto == PROTO_TCP:
        sport, dport = fields.sport, fields.dport
        if sport in FTP_PORTS or dport in FTP_PORTS:
            if ((sport == FTP_CONTROL_PORT or dport == FTP_CONTROL_PORT)
                    and 0 < fields.payload_at < len(frame)):
                ftp.observe_control(fields.src, fields.dst, frame[fields.payload_at:])
            return FTP
        if ftp.is_data(fields.src, sport, fields.dst, dport):
            return FTP
        if sport in HTTP_PORTS or dport in HTTP_PORTS:
            return HTTP
        return TCP
    if proto == PROTO_UDP:
        return UDP
    return OTHER
