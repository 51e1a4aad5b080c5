"""Kernel capture filters: only the server's packets cross into user space.

Compiled by libpcap (through scapy), so `--filter` takes tcpdump's syntax.
"""

from __future__ import annotations

import socket

from traffic_capture.errors import UsageError
from traffic_capture.servers import ServerSet


class FilterError(UsageError):
    """A --filter that libpcap cannot compile; the message quotes libpcap."""


def server_filter(servers: ServerSet) -> str:
    """tcpdump syntax matching every packet to or from a server, VLAN-tagged or not."""
    terms = " or ".join(
        f"host {net.network_address}" if net.num_addresses == 1 else f"net {net}"
        for net in servers.networks
    )
    # `vlan` shifts the offsets of everything after it, so it comes last.
    return f"({terms}) or (vlan and ({terms}))"


def combined_filter(servers: ServerSet, user_filter: str | None) -> str:
    if not user_filter:
        return server_filter(servers)
    return f"({user_filter}) and ({server_filter(servers)})"


def check_filter(expression: str, linktype: int) -> None:
    """Compile once without capturing, so a typo is a usage error before capture starts."""
    from scapy.arch.common import compile_filter
    from scapy.error import Scapy_Exception

    try:
        compile_filter(expression, linktype=linktype)
    except ImportError:
        raise FilterError("--filter needs libpcap (Debian: apt install libpcap0.8; "
                          "Windows: install Npcap)") from None
    except (Scapy_Exception, OSError) as error:
        raise FilterError(f"invalid --filter {expression!r}: {error}") from None


def attach_filter(sock: socket.socket, expression: str, interface: str) -> None:
    from scapy.arch.linux import attach_filter as scapy_attach_filter

    scapy_attach_filter(sock, expression, interface)
