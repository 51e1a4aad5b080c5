"""The web sink: closed windows into the web's memory store, and the per-packet tap into the
window in progress and the services (bytes per server-side port name), on the sink's own
thread; and the dashboard's life in a capture run: its port taken before anything is created,
served from open() to finish(), up after capture files are read until Ctrl+C, --debug-inject.

Closed windows are never dropped (they are what the API must agree with the CSV on); packet
batches are, when the sink falls behind by more than PACKET_BATCHES_MAX of them: then only the
window in progress and the services miss them, and `dropped` says how many packets.
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from traffic_capture.addresses import AddressText
from traffic_capture.frames import NS
from traffic_capture.pipeline import CountedPackets
from traffic_capture.rules import PROTO_TCP, PROTO_UDP, SERVICE_OTHER
from traffic_capture.secrets import FROM_COMMAND_LINE
from traffic_capture.sinks import OutputContext, Say, Sink
from traffic_capture.web.memory_store import (
    SERVICE_NAMES,
    Current,
    MemoryStore,
    ServiceSums,
    service_tables,
)
from traffic_capture.windows import ClosedWindow, WindowAggregator

if TYPE_CHECKING:
    from traffic_capture.web import WebSettings
    from traffic_capture.web.http_server import WebServer

PACKET_BATCHES_MAX = 2048
CURRENT_EVERY_SECONDS = 0.5
_OTHER = SERVICE_NAMES.index(SERVICE_OTHER)


class _ServiceParts:
    """A window's packets as (client, direction, service, bytes) columns, summed at close."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []

    def summed(self, address: AddressText) -> ServiceSums:
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
        clients = address(is6[first], hi[first], lo[first])
        return ServiceSums(clients, inbound[first], service[first], sums.astype(np.int64))


class WebSink(Sink):
    name = "web"
    unit = "windows"
    wants_packets = True

    def __init__(self, store: MemoryStore, warn: Say, info: Say,
                 max_clients: int | None = None) -> None:
        super().__init__(warn, info)
        self.store = store
        self.settings: WebSettings | None = None  # serving: set by for_capture()
        self.context: OutputContext | None = None
        self._socket: socket.socket | None = None
        self.server: WebServer | None = None
        self.window_ns = store.window_seconds * NS
        # Capped as the pipeline's windows are: a flood must not grow the window in progress.
        self._live = WindowAggregator(store.window_seconds, max_clients)
        self._services: dict[int, _ServiceParts] = {}  # window start (ns) -> its packets
        self._addresses = AddressText()
        self._tcp_services, self._udp_services = service_tables()
        self._current_at = 0.0
        self._live_changed = False

    @classmethod
    def for_capture(cls, settings: WebSettings, context: OutputContext) -> WebSink:
        """The sink of a capture run's --web: it serves the dashboard too."""
        store = MemoryStore(context.window_seconds, settings.history_seconds, services=True)
        sink = cls(store, context.warn, context.info, context.max_clients)
        sink.settings, sink.context = settings, context
        return sink

    def check(self) -> None:
        """The extra installed, and the port taken now: a port in use stops the run before
        any file is created."""
        if self.settings is None:
            return
        from traffic_capture.web import require_web

        require_web()  # before the server's module, which imports FastAPI
        from traffic_capture.web.http_server import bind

        self._socket = bind(self.settings.host, self.settings.port)

    def open(self) -> None:
        """The CSV's recent history into the store (a restart shows the past), then serve:
        with --history, any range, from the store and the history behind it."""
        settings, context = self.settings, self.context
        if settings is None or context is None:
            return
        from traffic_capture.queries import Reader
        from traffic_capture.web.api import WebApp
        from traffic_capture.web.csv_follow import read_history
        from traffic_capture.web.http_server import WebServer
        from traffic_capture.web.stored_history import StoredHistory
        from traffic_capture.web.tiered import TieredReader

        if not settings.history_csv.is_dir():
            self.store.load_rows(read_history(settings.history_csv, settings.history_seconds,
                                              context.utc))
        inject = None
        if settings.debug_inject:
            from traffic_capture.web.inject import Injector

            injector = Injector(context.servers, context.inject)

            def inject(request: Any) -> int:
                return injector.inject(request.client, request.direction, request.protocol,
                                       request.bytes, request.count)

        reader: Reader = self.store
        stored = None
        if settings.history is not None:
            # The history output creates the store on its first flush: until then it is
            # answered empty.
            stored = StoredHistory(settings.history, self.warn)
            reader = TieredReader(self.store, stored)
        run_status = context.run_status

        def status() -> dict[str, Any]:
            return {**run_status(),
                    "history_store": None if stored is None else stored.summary()}

        assert self._socket is not None, "open() before check()"
        app = WebApp(self.store, status, settings.token, inject, reader, context.utc)
        self.server = WebServer(app, settings.host, settings.port, self._socket)
        self.server.start()
        if settings.token_from == FROM_COMMAND_LINE:
            self.warn("--web-token on the command line can be read by every user of this "
                      "machine (ps): give it in $TRAFFIC_WEB_TOKEN or --web-token-file")
        self.info(f"dashboard at {self.server.url}"
                  + (" (token required)" if settings.token else ""))

    def keeps_run_open(self) -> str | None:
        if self.server is None:
            return None
        return f"the dashboard stays at {self.server.url} until Ctrl+C"

    def finish(self) -> None:
        if self.server is not None:
            self.server.stop()

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
        services = (parts.summed(self._addresses) if parts is not None and parts.parts
                    else None)
        if self.store.services_known and services is None:
            services = ServiceSums([], np.zeros(0, bool), np.zeros(0, np.int16),
                                   np.zeros(0, np.int64))
        self.store.add_window(window.start_s, window.end_s, window.client_texts(),
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
            self.store.set_current(None)
            return
        newest = opened[-1]
        self.store.set_current(Current(newest.start_s, newest.end_s, newest.client_texts(),
                                       newest.sums.inbound.copy(), newest.sums.counts.copy()))

    def poll_seconds(self) -> float | None:
        return CURRENT_EVERY_SECONDS if self._live_changed else None
