"""What the API reads for a `server` parameter: a scope, the memory (closed windows, the window
in progress, the event stream's text) and the Reader of ranges of one server or of all.

A capture, a CSV or a history is one scope, asked with no `server`; a fleet (`serve
--clickhouse`, web/fleet.py) has one for all its servers and one per server asked for. No
FastAPI here: the app turns UnknownServer into a 404.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from traffic_capture.queries import FleetReader, Reader
from traffic_capture.web.events import StreamEvents
from traffic_capture.web.memory_store import MemoryStore


class UnknownServer(LookupError):
    """A `server` the dashboard does not hold; its message is the 404's."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "no such server"


@dataclass(frozen=True)
class Scope:
    """One server's windows, or all servers' summed (server None)."""

    store: MemoryStore
    reader: Reader
    events: StreamEvents
    server: str | None = None


class Scopes(Protocol):
    """The scopes a dashboard answers for."""

    @property
    def fleet(self) -> FleetReader | None:
        """The fleet's reader (every server summed), or None: one capture, CSV or history."""
        ...

    def scope(self, server: str | None) -> Scope:
        """The scope of `server` (None: everything held); UnknownServer when not held."""
        ...


class OneScope:
    """A dashboard of one capture, CSV or history: no servers to pick."""

    fleet: FleetReader | None = None

    def __init__(self, store: MemoryStore, reader: Reader) -> None:
        self._scope = Scope(store, reader, StreamEvents(store))

    def scope(self, server: str | None) -> Scope:
        if server is not None:
            raise UnknownServer(f"no server {server!r} here: this dashboard shows one capture "
                                "(servers are a fleet's: serve --clickhouse)")
        return self._scope
