"""The resolved configuration of a capture run: what the command line (or a caller) decided."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from traffic_capture.rules import (
    DEFAULT_MAX_CLIENTS,
    HTTP_PORTS,
    SNAPLEN_COUNTING,
    SNAPLEN_PACKETS,
    WEB_HISTORY_SECONDS,
)
from traffic_capture.servers import ServerSet

SERVER_IP_ENV = "TRAFFIC_SERVER_IP"


@dataclass
class Config:
    servers: ServerSet  # empty: the capture interfaces' addresses, found at start
    servers_from: str  # where the server list came from, said at start-up
    read: list[Path]
    interfaces: list[str]
    window_seconds: int
    out: Path
    bpf_filter: str | None
    delimiter: str
    duration: float | None
    quiet: bool
    backend: str
    max_clients: int | None = DEFAULT_MAX_CLIENTS  # per window and direction
    http_ports: frozenset[int] = HTTP_PORTS  # TCP ports whose bytes count as http
    utc: bool = False  # window times in UTC instead of local time
    fsync: bool = False  # also new files' folders, and the packet log, to the disk
    rotate: str = "none"  # none, hourly, daily
    keep: int | None = None  # rotated files kept besides the current one
    max_disk: int | None = None  # bytes the CSV series may take
    reopen: bool = True  # resume on an interface that went away and came back
    status_interval: float = 60.0  # seconds between status lines when stderr is no terminal
    web: tuple[str, int] | None = None  # (host, port) of the dashboard, None: no web
    web_token: str | None = None
    web_history: int = WEB_HISTORY_SECONDS
    debug_inject: bool = False
    # The packet log (--packet-log...) and the viewer window (--view): off by default.
    packet_log: Path | None = None
    packet_log_payload: bool = False
    packet_log_max_bytes: int = 0  # 0: no rotation
    packet_log_keep: int = 5
    snaplen: int | None = None  # live capture; None: SNAPLEN_COUNTING, or SNAPLEN_PACKETS
    view: bool = False

    def live_snaplen(self) -> int:
        """Bytes kept of each live packet: what the outputs show (see rules.py)."""
        if self.snaplen is not None:
            return self.snaplen
        return SNAPLEN_PACKETS if self.packet_log or self.view else SNAPLEN_COUNTING
