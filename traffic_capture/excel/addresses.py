"""Clients in the CSV's order: IPv4 before IPv6, each by number, anything else (the `other` row
of --max-clients) last. Sorted as text, 10.0.0.10 would come before 10.0.0.2."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable


def address_key(client: str) -> tuple[int, int, str]:
    """Sort key of a client_ip value: (family rank, number, text)."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return (2, 0, client)
    return (0 if address.version == 4 else 1, int(address), client)


def in_address_order(clients: Iterable[str]) -> list[str]:
    return sorted(clients, key=address_key)
