"""The producer: each frame goes through parse -> classify -> window; closed windows go out.

One rule decides when a window is written, for files and live capture alike, so that a file
gives the rows live capture of the same packets would: a window closes once the clock passes its
end by CLOSE_DELAY_SECONDS. The clock is the newest packet's timestamp, and in live capture also
the wall clock while the capture is idle (nothing is waiting in the kernel then).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from traffic_capture.batch import Batch, classify_batch, parse_batch
from traffic_capture.classify import ServerSet, classify
from traffic_capture.ftp import FtpDataTracker
from traffic_capture.parse import UnknownLinkType, ip_offset_function, parse_ip
from traffic_capture.rules import CLOSE_DELAY_SECONDS
from traffic_capture.windows import NS, ClosedWindow, WindowAggregator

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
                 emit: Callable[[ClosedWindow], None]) -> None:
        self.servers = servers
        self.windows = WindowAggregator(window_seconds)
        self.ftp = FtpDataTracker()
        self.counters = Counters()
        self._emit = emit
        self._close_due_ns: int | None = None  # earliest clock at which a window must close
        self._offset_functions: dict[int, Callable[[bytes], int]] = {}

    def feed(self, ts_ns: int, linktype: int, frame: bytes) -> None:
        """Count one frame: the packet-by-packet reference that feed_batch must match (the
        sources all hand out batches). Raises UnknownLinkType for a link type nobody reads."""
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
                    self._update_close_due()
        if self._close_due_ns is not None and ts_ns >= self._close_due_ns:
            self.advance(ts_ns)

    def feed_batch(self, batch: Batch) -> None:
        """Count a batch of frames: the same rows as feeding them one by one, much faster.

        The batch is aggregated in segments cut where the packet-by-packet path would close
        windows, so that even packets more than the close delay out of order land alike.
        """
        parsed = parse_batch(batch)
        packets = classify_batch(batch, parsed, self.servers, self.ftp)
        self.counters.packets_seen += len(batch)
        ts_ns = batch.ts_ns
        counted = np.flatnonzero(packets.counted)
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
        """At stop: the partial window too, with its real bounds."""
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


__all__ = ["Counters", "Pipeline", "UnknownLinkType"]
