"""Interfaces and privileges: the thin platform-specific part.

Interface names differ (Linux `eth0`; Windows a friendly name such as `Ethernet` next to an
NPF device name `\\Device\\NPF_{GUID}`, loopback `\\Device\\NPF_Loopback`); so do the ways to
get the right to capture. The messages are pure functions of the platform so Linux tests pin
the Windows wording too.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from typing import NamedTuple

from traffic_capture.errors import UsageError
from traffic_capture.servers import IPNetwork, ServerSet


class Interface(NamedTuple):
    name: str  # what --iface takes: the friendly name on Windows
    device: str  # the capture device: the NPF name on Windows, same as name elsewhere
    description: str
    addresses: tuple[str, ...] = ()
    is_loopback: bool = False


class InterfaceError(UsageError):
    """An --iface that does not exist; the message lists the real ones."""


def privilege_message(platform: str, executable: str | None = None,
                      prefix: str | None = None) -> str:
    """How to get the right to capture, for the user's system, in one line."""
    if platform.startswith("win"):
        return ("no permission to capture packets: run the command from an Administrator prompt "
                "(right-click Command Prompt > Run as administrator), with Npcap installed "
                "(https://npcap.com)")
    # The right goes to this program alone: never to an interpreter other programs share,
    # which a venv's symlinked python is (setcap follows it to /usr/bin/python3).
    real = os.path.realpath(executable or sys.executable)
    own = real.startswith(os.path.realpath(prefix or sys.prefix) + os.sep)
    copy = (f"sudo setcap cap_net_raw,cap_net_admin+eip {real}" if own else
            "python3 -m venv --copies /opt/traffic-capture, install it there, then sudo setcap "
            "cap_net_raw,cap_net_admin+eip /opt/traffic-capture/bin/python3")
    return ("no permission to capture packets: run it with sudo, or as a service holding the "
            "capture right alone (traffic-capture service-unit), or give that right to an "
            f"interpreter of its own: {copy}")


def npcap_missing_message() -> str:
    return ("Npcap is not installed, so packets cannot be captured: install it from "
            "https://npcap.com (tick 'Install Npcap in WinPcap API-compatible Mode' and "
            "'Support loopback traffic'), then open a new Administrator prompt")


def _scapy_conf():  # noqa: ANN202 - scapy's config object
    # Importing scapy.route loads the interfaces and the routes (hence conf.iface, the default).
    import scapy.route  # noqa: F401
    from scapy.config import conf

    return conf


def list_interfaces() -> list[Interface]:
    """Every capture interface scapy knows, with its addresses."""
    conf = _scapy_conf()
    found = []
    for iface in conf.ifaces.values():
        ips = getattr(iface, "ips", None) or {}
        addresses = tuple(str(a) for version in (4, 6) for a in ips.get(version, []))
        loopback = iface.name == conf.loopback_name or getattr(iface, "type", 0) == 772
        found.append(Interface(iface.name, iface.network_name, iface.description or "",
                               addresses, loopback))
    return sorted(found, key=lambda i: (not i.is_loopback, i.name))


def format_interface_list(interfaces: list[Interface]) -> str:
    lines = []
    for iface in interfaces:
        device = f"  [{iface.device}]" if iface.device != iface.name else ""
        description = f"  {iface.description}" if iface.description not in ("", iface.name) else ""
        addresses = ", ".join(iface.addresses) or "no address"
        lines.append(f"{iface.name}{device}{description}: {addresses}")
    return "\n".join(lines)


def resolve_interfaces(names: list[str], known: list[Interface]) -> list[Interface]:
    """Accept a friendly name or a device name; refuse others, listing the real ones."""
    resolved = []
    for name in names:
        match = next((i for i in known if name in (i.name, i.device)), None)
        if match is None:
            real = ", ".join(i.name for i in known) or "none found"
            raise InterfaceError(f"unknown interface {name!r}; interfaces here: {real} "
                                 "(see --list-interfaces)")
        resolved.append(match)
    return resolved


def default_interfaces(servers: ServerSet, known: list[Interface]) -> list[Interface]:
    """Where the servers' traffic shows: the interfaces holding a server address (loopback for
    127.0.0.1 and ::1), else the interface of the default route."""
    holding = [
        i for i in known
        if any(_in_any(address, servers.networks) for address in i.addresses)
        or (i.is_loopback and any(net.network_address.is_loopback for net in servers.networks))
    ]
    if holding:
        return holding
    conf = _scapy_conf()
    default_name = getattr(conf.iface, "name", str(conf.iface or ""))
    default = next((i for i in known if default_name in (i.name, i.device)), None)
    if default is not None:
        return [default]
    candidates = [i for i in known if not i.is_loopback and i.addresses]
    if candidates:
        return candidates[:1]
    raise InterfaceError("no default interface found; name one with --iface "
                         "(see --list-interfaces)")


def servers_elsewhere(servers: ServerSet, interfaces: list[Interface]) -> list[IPNetwork]:
    """The server addresses none of the capture interfaces holds (loopback ones held by a
    loopback interface): their packets show there only through a mirror port or a router."""
    return [net for net in servers.networks
            if not any(_in_any(address, (net,)) for i in interfaces for address in i.addresses)
            and not (net.network_address.is_loopback and any(i.is_loopback for i in interfaces))]


def _in_any(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        value = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return any(value in net for net in networks)


def interface_addresses(interfaces: list[Interface]) -> list[str]:
    """The addresses of the capture interfaces, the servers when none is named."""
    return [a.split("%", 1)[0] for i in interfaces for a in i.addresses]
