"""The producer: each frame goes through parse -> classify -> window; closed windows go out.

One rule decides when a window is written, for files and live capture alike, so that a file
gives the rows live capture of the same packets would: a window closes once the clock passes its
end by CLOSE_DELAY_SECONDS. The clock is the newest packet's timestamp, and in live capture also
the wall clock while the capture is idle (nothing is waiting in the kernel then).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from traffic_capture.classify import ServerSet, classify
from traffic_capture.ftp import FtpDataTracker
from traffic_capture.parse import UnknownLinkType, ip_offset_function, parse_ip
from traffic_capture.rules import CLOSE_DELAY_SECONDS
from traffic_capture.windows import NS, Row, WindowAggregator

CLOSE_DELAY_NS = int(CLOSE_DELAY_SECONDS * NS)


@dataclass
class Counters:
    """What the status line and the exit summary report. Written by the producer only."""

    packets_seen: int = 0
    packets_counted: int = 0
    bytes_counted: int = 0
    windows_closed: int = 0
    rows_made: int = 0


class Pipeline:
    def __init__(self, servers: ServerSet, window_seconds: int,
                 emit: Callable[[list[Row]], None]) -> None:
        self.servers = servers
        self.windows = WindowAggregator(window_seconds)
        self.ftp = FtpDataTracker()
        self.counters = Counters()
        self._emit = emit
        self._close_due_ns: int | None = None  # earliest clock at which a window must close
        self._offset_functions: dict[int, Callable[[bytes], int]] = {}

    def feed(self, ts_ns: int, linktype: int, frame: bytes) -> None:
        """Count one frame. Raises UnknownLinkType for a link type nobody can read."""
        counters = self.counters
        counters.packets_seen += 1
        offset_of = self._offset_functions.get(linktype)
        if offset_of is None:
            offset_of = self._offset_functions[linktype] = ip_offset_function(linktype)
        fields = parse_ip(frame, offset_of(frame))
        if fields is not None:
            packet = classify(fields, frame, self.servers, self.ftp)
            if packet is not None:
                client, direction, protocol_class, ip_bytes = packet
                counters.packets_counted += 1
                counters.bytes_counted += ip_bytes
                self.windows.add(ts_ns, client, direction, protocol_class, ip_bytes)
                if self._close_due_ns is None:
                    self._close_due_ns = self.windows.oldest_end_ns() + CLOSE_DELAY_NS  # type: ignore[operator]
        if self._close_due_ns is not None and ts_ns >= self._close_due_ns:
            self.advance(ts_ns)

    def advance(self, clock_ns: int) -> None:
        """Close the windows the clock has passed (by CLOSE_DELAY_SECONDS)."""
        if self._close_due_ns is None or clock_ns < self._close_due_ns:
            return
        self._send(self.windows.close_until(clock_ns - CLOSE_DELAY_NS))

    def finish(self) -> None:
        """At stop: the partial window too, with its real bounds."""
        self._send(self.windows.close_all())

    def _send(self, closed: list[list[Row]]) -> None:
        for rows in closed:
            self.counters.windows_closed += 1
            self.counters.rows_made += len(rows)
            self._emit(rows)
        oldest_end = self.windows.oldest_end_ns()
        self._close_due_ns = None if oldest_end is None else oldest_end + CLOSE_DELAY_NS


__all__ = ["Counters", "Pipeline", "UnknownLinkType"]
