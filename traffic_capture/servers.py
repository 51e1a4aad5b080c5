"""The servers: the addresses and networks whose traffic is counted, as the user gives them."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from traffic_capture.errors import UsageError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class InvalidServerAddress(UsageError):
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
    """The server addresses and networks; a packet counts when its source or destination is in
    one of them."""

    def __init__(self, servers: Iterable[IPNetwork]) -> None:
        self.networks: tuple[IPNetwork, ...] = tuple(dict.fromkeys(servers))

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, address: bytes) -> bool:
        """A packed address (4 or 16 bytes), as headers carry it."""
        value = ipaddress.ip_address(address)
        return any(value in network for network in self.networks)

    def __str__(self) -> str:
        return ", ".join(str(net.network_address) if net.num_addresses == 1 else str(net)
                         for net in self.networks)
