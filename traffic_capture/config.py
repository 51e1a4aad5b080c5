"""The resolved configuration of a capture run: what is captured and how it is counted, and
each enabled output's own settings (grouped per output, as each output states them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from traffic_capture.rules import (
    DEFAULT_MAX_CLIENTS,
    DEFAULT_STATUS_INTERVAL,
    HTTP_PORTS,
    SNAPLEN_COUNTING,
    SNAPLEN_PACKETS,
)
from traffic_capture.servers import ServerSet
from traffic_capture.sinks import Output

SERVER_IP_ENV = "TRAFFIC_SERVER_IP"


class Enabled(NamedTuple):
    """An output asked for, with its settings."""

    output: Output[Any]
    settings: Any


@dataclass
class Config:
    """Field names are the command line's option names (argparse dests): the command line
    fills them by name, never field by field."""

    servers: ServerSet  # empty: the capture interfaces' addresses, found at start
    servers_from: str  # where the server list came from, said at start-up
    read: list[Path]
    interfaces: list[str]
    window_seconds: int
    bpf_filter: str | None = None
    duration: float | None = None
    quiet: bool = False
    backend: str = "auto"
    max_clients: int | None = DEFAULT_MAX_CLIENTS  # per window and direction; None: no limit
    http_ports: frozenset[int] = HTTP_PORTS  # TCP ports whose bytes count as http
    utc: bool = False  # window times in UTC instead of local time
    fsync: bool = False  # every CSV window, new files' folders and the packet log to the disk
    reopen: bool = True  # resume on an interface that went away and came back
    status_interval: float = DEFAULT_STATUS_INTERVAL  # off a terminal, between status lines
    snaplen: int | None = None  # live capture; None: SNAPLEN_COUNTING, or SNAPLEN_PACKETS
    outputs: list[Enabled] = field(default_factory=list)  # the registry's order

    def settings_of(self, name: str) -> Any | None:
        """An enabled output's settings by its name (None: not enabled)."""
        return next((e.settings for e in self.outputs if e.output.name == name), None)

    def live_snaplen(self) -> int:
        """Bytes kept of each live packet: what the outputs show (see rules.py)."""
        if self.snaplen is not None:
            return self.snaplen
        keeps = any(enabled.output.keeps_payloads for enabled in self.outputs)
        return SNAPLEN_PACKETS if keeps else SNAPLEN_COUNTING
