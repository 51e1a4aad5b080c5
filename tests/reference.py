"""The rules packet by packet, readable rule by rule: the statement the production batch path
(parse.parse_batch, classify.classify_batch, windows.WindowAggregator) is proven equal to by
the property tests (tests/test_batch.py). It ships in no package: nothing in production runs it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from traffic_capture.addresses import address_text
from traffic_capture.csvformat import Row
from traffic_capture.ftp import FtpDataTracker, announced_port
from traffic_capture.parse import Fields, parse_frame
from traffic_capture.rules import (
    CLASSES,
    CLOSE_DELAY_SECONDS,
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
from traffic_capture.servers import ServerSet

NS = 1_000_000_000
CLOSE_DELAY_NS = int(CLOSE_DELAY_SECONDS * NS)

# (client, direction, protocol class as an index into CLASSES, IP bytes)
Classified = tuple[bytes, str, int, int]


def classify(fields: Fields, frame: bytes, servers: ServerSet,
             ftp: FtpDataTracker) -> Classified | None:
    """Apply the direction and class rules; None for packets that don't involve a server."""
    src, dst = fields[0], fields[1]
    if dst in servers:
        client, direction = src, IN  # also server-to-server traffic, counted once, as `in`
    elif src in servers:
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
                port = announced_port(frame[payload_at:])
                if port is not None:
                    ftp.remember(src, port, dst)
            return FTP
        if ftp.is_data(src, sport, dst, dport):
            return FTP
        if sport in HTTP_PORTS or dport in HTTP_PORTS:
            return HTTP
        return TCP
    if proto == PROTO_UDP:
        return UDP
    return OTHER


def _row_order(key: tuple[bytes, str]) -> tuple[int, int, bool]:
    """IPv4 before IPv6, numeric order within each, `in` before `out`."""
    client, direction = key
    return (len(client), int.from_bytes(client, "big"), direction != IN)


class ReferencePipeline:
    """Frames one by one through parse -> classify -> windows, closing a window once the
    newest packet's time passes its end by the close delay; closed rows go to `emit`."""

    def __init__(self, servers: ServerSet, window_seconds: int,
                 emit: Callable[[Row], None]) -> None:
        self.servers = servers
        self.window_ns = window_seconds * NS
        self.ftp = FtpDataTracker()
        self._emit = emit
        # window start -> (client, direction) -> bytes per class
        self._open: dict[int, dict[tuple[bytes, str], list[int]]] = {}
        # When the oldest window must close: set when a window opens with none open, and after
        # each close (a late packet reopening an older window does not move it: that window
        # then closes with the next one due).
        self._close_due: int | None = None

    def feed(self, ts_ns: int, linktype: int, frame: bytes, wire_length: int | None = None
             ) -> None:
        fields = parse_frame(linktype, frame, wire_length)
        if fields is not None:
            packet = classify(fields, frame, self.servers, self.ftp)
            if packet is not None:
                client, direction, protocol_class_, ip_bytes = packet
                # floor(t / W) * W: windows aligned to the clock (:00, :05, :10...).
                window = self._open.setdefault(ts_ns // self.window_ns * self.window_ns, {})
                counts = window.setdefault((client, direction), [0] * len(CLASSES))
                counts[protocol_class_] += ip_bytes
                if self._close_due is None:
                    self._update_close_due()
        if self._close_due is not None and ts_ns >= self._close_due:
            for start in sorted(self._open):
                if start + self.window_ns <= ts_ns - CLOSE_DELAY_NS:
                    self._close(start)
            self._update_close_due()

    def _update_close_due(self) -> None:
        self._close_due = (min(self._open) + self.window_ns + CLOSE_DELAY_NS
                           if self._open else None)

    def finish(self) -> None:
        for start in sorted(self._open):
            self._close(start)

    def _close(self, start: int) -> None:
        window = self._open.pop(start)
        for key in sorted(window, key=_row_order):
            client, direction = key
            counts = window[key]
            self._emit(Row(start // NS, (start + self.window_ns) // NS, address_text(client),
                           direction, sum(counts), *counts))


def reference_pipeline(servers: list[str] | tuple[str, ...], window: int
                       ) -> tuple[ReferencePipeline, list[Row]]:
    rows: list[Row] = []
    pipeline = ReferencePipeline(
        ServerSet(ipaddress.ip_network(s) for s in servers), window, rows.append)
    return pipeline, rows
