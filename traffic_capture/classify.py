"""IP fields + the server set -> client, direction, protocol class and bytes.

The rules are the product's contract (see rules.py and the README); each has a test. This is
their packet-by-packet statement, readable rule by rule; batch.py applies the same rules to
whole batches with numpy, and tests/test_batch.py checks that both give the same rows.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

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
        # Plain frozenset membership is what the per-packet path uses when there are no networks.
        self.exact = frozenset(
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
        self.has_ranges = bool(self._ranges)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, address: bytes) -> bool:
        if address in self.exact:
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


# (client, direction, protocol class as an index into rules.CLASSES, IP bytes), a plain tuple
# for the same reason as parse.Fields.
Classified = tuple[bytes, str, int, int]


def classify(fields: Fields, frame: bytes, servers: ServerSet,
             ftp: FtpDataTracker) -> Classified | None:
    """Apply the direction and class rules; None for packets that don't involve a server."""
    src, dst = fields[0], fields[1]
    # The frozenset first: a method call per packet costs more than the rest of this function.
    members = servers if servers.has_ranges else servers.exact
    if dst in members:
        client, direction = src, IN  # also server-to-server traffic, counted once, as `in`
    elif src in members:
        client, direction = dst, OUT
    else:
        return None
    return (client, direction, protocol_class(fields, frame, ftp), fields[5])


def protocol_class(fields: Fields, frame: bytes, ftp: FtpDataTracker) -> int:
    src, dst, proto, sport, dport, _, payload_at = fields
    if proto == PROTO_TCP:
        if sport in FTP_PORTS or dport in FTP_PORTS:
            if ((sport == FTP_CONTROL_PORT or dport == FTP_CONTROL_PORT)
                    and 0 < payload_at < len(frame)):
                ftp.observe_control(src, dst, frame[payload_at:])
            return FTP
        if ftp.endpoints and ftp.is_data(src, sport, dst, dport):
            return FTP
        if sport in HTTP_PORTS or dport in HTTP_PORTS:
            return HTTP
        return TCP
    if proto == PROTO_UDP:
        return UDP
    return OTHER
