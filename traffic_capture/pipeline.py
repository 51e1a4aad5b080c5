"""The producer: each batch goes through parse -> classify -> window; closed windows go out,
and, for outputs that want packets rather than sums, the counted packets themselves (the tap).

One rule decides when a window is written, for files and live capture alike, so that a file
gives the rows live capture of the same packets would: a window closes once the clock passes its
end by CLOSE_DELAY_SECONDS. The clock is the newest packet's timestamp, and in live capture also
the wall clock while the capture is idle (nothing is waiting in the kernel then).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from traffic_capture.classify import Classified, classify_batch
from traffic_capture.frames import NS, Batch, gather_frames
from traffic_capture.ftp import FtpDataTracker
from traffic_capture.parse import Parsed, parse_batch
from traffic_capture.rules import CLOSE_DELAY_SECONDS, HTTP_PORTS
from traffic_capture.servers import ServerSet
from traffic_capture.windows import ClosedWindow, WindowAggregator

CLOSE_DELAY_NS = int(CLOSE_DELAY_SECONDS * NS)


@dataclass
class Counters:
    """What the status line and the exit summary report. Written by the producer only."""

    packets_seen: int = 0
    packets_malformed: int = 0  # said to be IP, but the header cannot be read: skipped
    packets_counted: int = 0
    bytes_counted: int = 0
    windows_closed: int = 0
    rows_made: int = 0


@dataclass(frozen=True)
class CountedPackets:
    """The tap: one batch's counted packets, in capture order, with their classification.

    It owns its bytes (`frames` is a copy of just these frames, or None when no sink asked for
    frame bytes; the source reuses its buffers), so a sink may keep it on its own thread for as
    long as it likes. Addresses are (is6, hi,
    lo) as in parse.Parsed; the client is the source when `inbound`, else the destination.
    """

    frames: Batch | None
    ts_ns: np.ndarray  # int64, the packets' own timestamps (also without frames)
    is6: np.ndarray
    src_hi: np.ndarray
    src_lo: np.ndarray
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    proto: np.ndarray
    sport: np.ndarray  # NO_PORT (-1) without a TCP/UDP header
    dport: np.ndarray
    payload_at: np.ndarray  # TCP payload's offset in the frame, -1 if none
    inbound: np.ndarray
    protocol_class: np.ndarray  # index into rules.CLASSES
    ip_bytes: np.ndarray

    def __len__(self) -> int:
        return len(self.ip_bytes)


def counted_packets(batch: Batch, parsed: Parsed, packets: Classified, counted: np.ndarray,
                    with_frames: bool, frames_limit: int | None = None) -> CountedPackets:
    p = parsed
    return CountedPackets(
        gather_frames(batch, counted, frames_limit) if with_frames else None,
        batch.ts_ns[counted],
        p.is6[counted], p.src_hi[counted], p.src_lo[counted],
        p.dst_hi[counted], p.dst_lo[counted], p.proto[counted], p.sport[counted],
        p.dport[counted], p.payload_at[counted], packets.inbound[counted],
        packets.protocol_class[counted], packets.ip_bytes[counted])


class Pipeline:
    """Feeds batches through the rules; `emit_window` gets each closed window, and
    `emit_packets`, when given, each batch's counted packets (nothing is copied without it;
    frame bytes only with `packet_frames`, at most `frames_limit` bytes of each)."""

    def __init__(self, servers: ServerSet, window_seconds: int,
                 emit_window: Callable[[ClosedWindow], None],
                 emit_packets: Callable[[CountedPackets], None] | None = None,
                 packet_frames: bool = False, max_clients: int | None = None,
                 http_ports: frozenset[int] = HTTP_PORTS, frames_limit: int | None = None
                 ) -> None:
        self.servers = servers
        self.windows = WindowAggregator(window_seconds, max_clients)
        self.http_ports = http_ports
        self.ftp = FtpDataTracker()
        self.counters = Counters()
        self._emit = emit_window
        self._emit_packets = emit_packets
        self._packet_frames = packet_frames
        self._frames_limit = frames_limit
        self._close_due_ns: int | None = None  # earliest clock at which a window must close

    def feed_batch(self, batch: Batch) -> None:
        """Count a batch of frames: the same rows as the packet-by-packet reference
        (tests/reference.py) would give, feeding them one by one.

        The batch is aggregated in segments cut where the packet-by-packet path would close
        windows, so that even packets more than the close delay out of order land alike.
        """
        parsed = parse_batch(batch)
        packets = classify_batch(batch, parsed, self.servers, self.ftp, self.http_ports)
        self.counters.packets_seen += len(batch)
        self.counters.packets_malformed += parsed.malformed
        ts_ns = batch.ts_ns
        counted = np.flatnonzero(packets.counted)
        if self._emit_packets is not None and len(counted):
            self._emit_packets(counted_packets(batch, parsed, packets, counted,
                                              self._packet_frames, self._frames_limit))
        if not len(counted):
            if len(ts_ns):
                self.advance(int(ts_ns.max()))  # the clock still moves on
            return
        # The counted packets' columns, once; segments are then slices of them.
        columns = (ts_ns[counted], packets.is6[counted], packets.client_hi[counted],
                   packets.client_lo[counted], packets.inbound[counted],
                   packets.protocol_class[counted], packets.ip_bytes[counted])
        at, end = 0, len(batch)
        while at < end:
            if self._close_due_ns is None:
                # No window open: the first counted packet opens one (and cannot close it).
                k = int(np.searchsorted(counted, at))
                if k == len(counted):
                    return
                first = int(counted[k])
                self._add_segment(columns, k, k + 1)
                self._update_close_due()
                at = first + 1
                continue
            due = np.flatnonzero(ts_ns[at:] >= self._close_due_ns)
            stop = end if not len(due) else at + int(due[0]) + 1
            self._add_segment(columns, int(np.searchsorted(counted, at)),
                              int(np.searchsorted(counted, stop)))
            if not len(due):
                return
            self.advance(int(ts_ns[stop - 1]))
            at = stop

    def _add_segment(self, columns: tuple[np.ndarray, ...], start: int, stop: int) -> None:
        """Counted packets start..stop (indexes into the counted columns)."""
        if stop <= start:
            return
        ts_ns, is6, hi, lo, inbound, protocol_class, ip_bytes = (
            column[start:stop] for column in columns)
        self.counters.packets_counted += stop - start
        self.counters.bytes_counted += int(ip_bytes.sum())
        self.windows.add_batch(ts_ns, is6, hi, lo, inbound, protocol_class, ip_bytes)

    def advance(self, clock_ns: int) -> None:
        """Close the windows the clock has passed (by CLOSE_DELAY_SECONDS)."""
        if self._close_due_ns is None or clock_ns < self._close_due_ns:
            return
        self._send(self.windows.close_until(clock_ns - CLOSE_DELAY_NS))

    def finish(self) -> None:
        """At stop: the partial window too (with its aligned bounds)."""
        self._send(self.windows.close_all())

    def _send(self, closed: list[ClosedWindow]) -> None:
        for window in closed:
            self.counters.windows_closed += 1
            self.counters.rows_made += len(window)
            self._emit(window)
        self._update_close_due()

    def _update_close_due(self) -> None:
        """The clock at which the oldest open window must close (None: none is open)."""
        oldest_end = self.windows.oldest_end_ns()
        self._close_due_ns = None if oldest_end is None else oldest_end + CLOSE_DELAY_NS


__all__ = ["CountedPackets", "Counters", "Pipeline"]
