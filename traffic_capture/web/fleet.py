"""`serve --clickhouse`: the fleet as the web shows it. Every answer over a range reads
ClickHouse (all servers summed, or one server's rows); the event stream, and with it the page's
live spans, is fed by memories that follow ClickHouse's newest windows (web/store_follow.py):
one for the whole fleet, held for the run, and one per server asked for, made when first
asked and dropped once nothing asked for it for IDLE_SECONDS (an open stream asks every
second).

What ClickHouse holds at each resolution is looked up at most once a second (HELD_SECONDS):
an answer asks it several times, and per server it costs a few queries. No FastAPI here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from traffic_capture.queries import (
    ClientTotals,
    Coverage,
    FleetReader,
    Resolution,
    ServerSpan,
    ServerTotals,
    ServiceTotals,
    TimeRange,
    WindowRows,
)
from traffic_capture.web.events import StreamEvents
from traffic_capture.web.memory_store import MemoryStore
from traffic_capture.web.scopes import Scope, UnknownServer
from traffic_capture.web.store_follow import StoreFollower

HELD_SECONDS = 1.0
# The servers' list (the picker's) is read again at most this often, and at once when a name
# not in it is asked for (a server that just began sending).
SERVERS_SECONDS = 10.0
IDLE_SECONDS = 120.0


class HeldOnceASecond:
    """A FleetReader whose resolutions() is looked up at most every HELD_SECONDS (ClickHouse
    only grows at its new end: a look a second old still cuts ranges right)."""

    def __init__(self, reader: FleetReader, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.reader = reader
        self._clock = clock
        self._held: tuple[float, tuple[Resolution, ...]] | None = None

    def resolutions(self) -> tuple[Resolution, ...]:
        now = self._clock()
        held = self._held
        if held is None or now - held[0] >= HELD_SECONDS:
            held = self._held = (now, self.reader.resolutions())
        return held[1]

    def coverage(self, when: TimeRange, resolution: int) -> Coverage:
        return self.reader.coverage(when, resolution)

    def client_totals(self, when: TimeRange, resolution: int) -> ClientTotals:
        return self.reader.client_totals(when, resolution)

    def window_rows(self, when: TimeRange, resolution: int, client: str | None = None,
                    last_windows: int | None = None) -> WindowRows:
        return self.reader.window_rows(when, resolution, client, last_windows)

    def service_totals(self, when: TimeRange, client: str | None = None
                       ) -> ServiceTotals | None:
        return self.reader.service_totals(when, client)

    def servers(self) -> list[ServerSpan]:
        return self.reader.servers()

    def server_totals(self, when: TimeRange, resolution: int) -> ServerTotals:
        return self.reader.server_totals(when, resolution)

    def of_servers(self, servers: Sequence[str] | None) -> FleetReader:
        return HeldOnceASecond(self.reader.of_servers(servers), self._clock)


class _Followed:
    """A scope and the follower that fills its memory, polled by one thread at a time."""

    def __init__(self, scope: Scope, follower: StoreFollower, history_seconds: int) -> None:
        self.scope = scope
        self.follower = follower
        self.history_seconds = history_seconds
        self.used = time.monotonic()
        self._lock = threading.Lock()

    def poll(self) -> int:
        """The store's new windows (and late rows) into the memory; how many."""
        with self._lock:
            found = self.follower.poll(self.history_seconds)
            for window in found:
                self.scope.store.add_window(window.start_s, window.end_s, window.clients,
                                            window.inbound, window.counts)
        return len(found)


class FleetScopes:
    """The scopes of a fleet: all servers (server None), and each server by name."""

    def __init__(self, reader: FleetReader, history_seconds: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.fleet: FleetReader = HeldOnceASecond(reader, clock)
        self.history_seconds = history_seconds
        self._clock = clock
        held = self.fleet.resolutions()
        self.window_seconds = held[0].seconds
        self._lock = threading.Lock()
        self._servers: tuple[float, list[ServerSpan]] | None = None
        self._all = self._followed(None)
        self._each: dict[str, _Followed] = {}

    def _followed(self, server: str | None) -> _Followed:
        reader = self.fleet if server is None else self.fleet.of_servers([server])
        store = MemoryStore(self.window_seconds, self.history_seconds)
        return _Followed(Scope(store, reader, StreamEvents(store), server),
                         StoreFollower(reader, self.window_seconds), self.history_seconds)

    def servers(self, fresh: bool = False) -> list[ServerSpan]:
        """The fleet's servers, as read at most SERVERS_SECONDS ago (or now)."""
        now = self._clock()
        listed = self._servers
        if fresh or listed is None or now - listed[0] >= SERVERS_SECONDS:
            listed = self._servers = (now, self.fleet.servers())
        return listed[1]

    def scope(self, server: str | None) -> Scope:
        """The fleet's scope, or a server's (its memory made and filled when first asked)."""
        if server is None:
            return self._all.scope
        with self._lock:
            followed = self._each.get(server)
            if followed is not None:
                followed.used = self._clock()
                return followed.scope
        names = [span.name for span in self.servers()]
        if server not in names:
            names = [span.name for span in self.servers(fresh=True)]
        if server not in names:
            held = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            raise UnknownServer(f"no server {server!r} in the fleet"
                                + (f"; it holds {held}" if names else "; it holds none yet"))
        with self._lock:
            followed = self._each.get(server)
            if followed is None:
                followed = self._each[server] = self._followed(server)
            followed.used = self._clock()
        followed.poll()  # its last --web-history seconds, before the first answer
        return followed.scope

    def poll(self) -> int:
        """Every memory's new windows; a server's memory nothing asked for lately is
        dropped. How many windows came."""
        now = self._clock()
        with self._lock:
            for name in [name for name, followed in self._each.items()
                         if now - followed.used > IDLE_SECONDS]:
                del self._each[name]
            followed = [self._all, *self._each.values()]
        return sum(one.poll() for one in followed)

    def followed_servers(self) -> list[str]:
        """The servers whose memory is held now."""
        with self._lock:
            return sorted(self._each)
