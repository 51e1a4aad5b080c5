"""The resolved configuration of a capture run: what the command line (or a caller) decided."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from traffic_capture.rules import SNAPLEN_COUNTING, SNAPLEN_PACKETS
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
