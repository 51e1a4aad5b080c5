"""The web sink: closed windows into the web state, and the per-packet tap into the window in
progress and the services (bytes per server-side port name), on the sink's own thread.

Closed windows are never dropped (they are what the API must agree with the CSV on); packet
batches are, when the sink falls behind by more than PACKET_BATCHES_MAX of them: then only the
window in progress and the services miss them, and `dropped` says how many packets.
"""

from __future__ import annotations

import time

import numpy as np

from traffic_capture.parse import address_text, join_address
from traffic_capture.pipeline import CountedPackets
from traffic_capture.rules import PROTO_TCP, PROTO_UDP, SERVICE_OTHER
from traffic_capture.sinks import Say, Sink
from traffic_capture.web.memory_store import SERVICE_NAMES, Current, ServiceSums, service_tables
from traffic_capture.web.memory_store import MemoryStore as WebState
from traffic_capture.windows import NS, ClosedWindow, WindowAggregator

PACKET_BATCHES_MAX = 2048
CURRENT_EVERY_SECONDS = 0.5
_OTHER = SERVICE_NAMES.index(SERVICE_OTHER)


class _ServiceParts:
    """A window's packets as (client, direction, service, bytes) columns, summed at close."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []

    def summed(self) -> ServiceSums:
        is6, hi, lo, inbound, service, ip_bytes = (np.concatenate(column)
                                                   for column in zip(*self.parts, strict=True))
        order = np.lexsort((service, inbound, lo, hi, is6))
        is6, hi, lo, inbound, service, ip_bytes = (column[order] for column in (
            is6, hi, lo, inbound, service, ip_bytes))
        new = np.ones(len(order), dtype=bool)
        new[1:] = ((is6[1:] != is6[:-1]) | (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
                   | (inbound[1:] != inbound[:-1]) | (service[1:] != service[:-1]))
        first = np.flatnonzero(new)
        sums = np.add.reduceat(ip_bytes, first) if len(first) else ip_bytes[:0]
        clients = [address_text(join_address(six, h, low)) for six, h, low in zip(
            is6[first].tolist(), hi[first].tolist(), lo[first].tolist(), strict=True)]
        return ServiceSums(clients, inbound[first], service[first], sums.astype(np.int64))


class WebSink(Sink):
    name = "web"
    unit = "windows"
    wants_packets = True

    def __init__(self, state: WebState, warn: Say, info: Say,
                 max_clients: int | None = None) -> None:
        super().__init__(warn, info)
        self.state = state
        self.window_ns = state.window_seconds * NS
        # Capped as the pipeline's windows are: a flood must not grow the window in progress.
        self._live = WindowAggregator(state.window_seconds, max_clients)
        self._services: dict[int, _ServiceParts] = {}  # window start (ns) -> its packets
        self._tcp_services, self._udp_services = service_tables()
        self._current_at = 0.0
        self._live_changed = False

    def packets(self, packets: CountedPackets) -> None:
        """Drop packet batches (never windows) when the sink is far behind."""
        if self.pending() > PACKET_BATCHES_MAX:
            self.dropped += len(packets)
            return
        super().packets(packets)

    @staticmethod
    def size_of(item: object) -> int:
        return len(item) if isinstance(item, CountedPackets) else 0

    def handle_packets(self, p: CountedPackets) -> None:
        inbound = p.inbound
        hi = np.where(inbound, p.src_hi, p.dst_hi)
        lo = np.where(inbound, p.src_lo, p.dst_lo)
        self._live.add_batch(p.ts_ns, p.is6, hi, lo, inbound, p.protocol_class, p.ip_bytes)
        self._live_changed = True
        port = np.where(inbound, p.dport, p.sport)
        has_port = port >= 0
        safe = np.where(has_port, port, 0)
        service = np.where(
            has_port & (p.proto == PROTO_TCP), self._tcp_services[safe],
            np.where(has_port & (p.proto == PROTO_UDP), self._udp_services[safe], _OTHER))
        window = p.ts_ns // self.window_ns
        for value in np.unique(window).tolist():
            chosen = window == value
            self._services.setdefault(value * self.window_ns, _ServiceParts()).parts.append(
                tuple(column[chosen] for column in (p.is6, hi, lo, inbound, service,
                                                    p.ip_bytes)))

    def handle_window(self, window: ClosedWindow) -> None:
        start_ns = window.start_s * NS
        parts = self._services.pop(start_ns, None)
        for stale in [start for start in self._services if start < start_ns]:
            del self._services[stale]  # packets of a window closed without them (dropped)
        services = parts.summed() if parts is not None and parts.parts else None
        if self.state.services_known and services is None:
            services = ServiceSums([], np.zeros(0, bool), np.zeros(0, np.int16),
                                   np.zeros(0, np.int64))
        self.state.add_window(window.start_s, window.end_s, window.client_texts(),
                              window.sums.inbound, window.sums.counts, services)
        self._live.close_until(window.end_s * NS)  # the closed ones are no longer in progress
        self._live_changed = True
        self.written += 1

    def flush(self) -> None:
        now = time.monotonic()
        if not self._live_changed or now - self._current_at < CURRENT_EVERY_SECONDS:
            return
        self._current_at = now
        self._live_changed = False
        opened = self._live.open_windows()
        if not opened:
            self.state.set_current(None)
            return
        newest = opened[-1]
        self.state.set_current(Current(newest.start_s, newest.end_s, newest.client_texts(),
                                       newest.sums.inbound.copy(), newest.sums.counts.copy()))

    def poll_seconds(self) -> float | None:
        return CURRENT_EVERY_SECONDS if self._live_changed else None
