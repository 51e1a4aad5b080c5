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

from traffic_capture.batch import Batch, classify_batch, join_address, parse_batch
from traffic_capture.batch import Classified as BatchClassified
from traffic_capture.classify import ServerSet, classify
from traffic_capture.ftp import FtpDataTracker
from traffic_capture.parse import UnknownLinkType, ip_offset_function, parse_ip
from traffic_capture.rules import CLOSE_DELAY_SECONDS, IN, OUT
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
        self._client_bytes: dict[tuple[int, int, int], bytes] = {}  # batch client -> address

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
        ts_ns, counted = batch.ts_ns, packets.counted
        at, end = 0, len(batch)
        while at < end:
            if self._close_due_ns is None:
                # No window open: the first counted packet opens one (and cannot close it).
                following = np.flatnonzero(counted[at:])
                if not len(following):
                    return
                first = at + int(following[0])
                self._add_segment(batch, packets, first, first + 1)
                self._update_close_due()
                at = first + 1
                continue
            due = np.flatnonzero(ts_ns[at:] >= self._close_due_ns)
            if not len(due):
                self._add_segment(batch, packets, at, end)
                return
            closing = at + int(due[0])
            self._add_segment(batch, packets, at, closing + 1)
            self.advance(int(ts_ns[closing]))
            at = closing + 1

    def _add_segment(self, batch: Batch, packets: BatchClassified, start: int, stop: int
                     ) -> None:
        chosen = np.flatnonzero(packets.counted[start:stop]) + start
        if not len(chosen):
            return
        window_ns = self.windows.window_ns
        window = batch.ts_ns[chosen] // window_ns
        is6, hi, lo = packets.is6[chosen], packets.client_hi[chosen], packets.client_lo[chosen]
        inbound = packets.inbound[chosen]
        protocol_class = packets.protocol_class[chosen]
        ip_bytes = packets.ip_bytes[chosen]
        kind = (is6.astype(np.int64) << 4) | (inbound.astype(np.int64) << 3) | protocol_class
        order = np.lexsort((kind, lo, hi, window))
        keys = (window[order], hi[order], lo[order], kind[order])
        boundary = np.ones(len(order), dtype=bool)
        boundary[1:] = np.any([k[1:] != k[:-1] for k in keys], axis=0)
        starts = np.flatnonzero(boundary)
        totals = np.add.reduceat(ip_bytes[order], starts)
        counters = self.counters
        counters.packets_counted += len(chosen)
        counters.bytes_counted += int(totals.sum())
        kinds = keys[3][starts]
        clients = self._clients(((kinds >> 4) & 1).tolist(), keys[1][starts].tolist(),
                                keys[2][starts].tolist())
        self.windows.add_totals((keys[0][starts] * window_ns).tolist(), clients,
                                [IN if kind & 8 else OUT for kind in kinds.tolist()],
                                (kinds & 7).tolist(), totals.tolist())

    def _clients(self, is6: list[int], hi: list[int], lo: list[int]) -> list[bytes]:
        """Packed client addresses, cached: the same clients come back window after window."""
        cache = self._client_bytes
        if len(cache) > 1_000_000:  # a scan of a /8 must not grow memory forever
            cache.clear()
        clients = []
        for address in zip(is6, hi, lo, strict=True):
            client = cache.get(address)
            if client is None:
                client = cache[address] = join_address(*address)  # type: ignore[arg-type]
            clients.append(client)
        return clients

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
