"""The web's answers: the JSON of /api/clients, /api/clients/{ip}, /api/protocols,
/api/services, /api/windows and /metrics' top clients, built from `queries.Reader` calls only,
so that they are the same over any store of closed windows (the web's memory, a history on
disk, a ClickHouse fleet); /api/servers from a `queries.FleetReader`'s. Pure functions: no
FastAPI, no store, no thread.

Every answer over a range says which windows it covers (`seconds`, `windows`, `from`, `to`)
and the resolution it was answered at (`resolution`, seconds: `queries.pick_resolution`, the
coarsest that still gives enough points): the last S seconds count back from the newest window
held, and a store may hold fewer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

import numpy as np

from traffic_capture.queries import (
    CLASS_COUNT,
    Coverage,
    FleetReader,
    Reader,
    TimeRange,
    WindowRows,
    pick_resolution,
)
from traffic_capture.rules import CLASSES, IN, OUT


def canonical_ip(text: str) -> str:
    """An address as the CSV writes it (compressed IPv6); ValueError when it is not one."""
    return str(ipaddress.ip_address(text.strip()))


def newest_end(reader: Reader) -> int:
    """Where the newest window the reader holds ends (0: none held), at its finest resolution
    holding any: a coarser one ends where its window in progress will (the end of this hour)."""
    ends = [held.last_end_s for held in reader.resolutions() if held.last_end_s is not None]
    return ends[0] if ends else 0


def last(reader: Reader, seconds: int) -> TimeRange:
    """The last `seconds`, counted back from the newest window the reader holds (live, that
    is now): a capture file or an old CSV answers like a live capture."""
    return TimeRange.last(seconds, newest_end(reader))


def classes(counts: Sequence[int]) -> dict[str, int]:
    return {name: int(value) for name, value in zip(CLASSES, counts, strict=True)}


def row_dict(client: str, inbound: bool, counts: Sequence[int]) -> dict[str, Any]:
    """A row as the CSV has it (its columns but the window's bounds)."""
    numbers = [int(value) for value in counts]
    return {"client_ip": client, "direction": IN if inbound else OUT,
            "total_bytes": sum(numbers),
            **{f"{name}_bytes": value for name, value in zip(CLASSES, numbers, strict=True)}}


def window_dict(start_s: int, end_s: int, clients: Sequence[str],
                inbound: Sequence[bool] | np.ndarray, counts: np.ndarray) -> dict[str, Any]:
    """A window with its rows: /api/windows, the window in progress, the stream's events."""
    return {"start": start_s, "end": end_s, "rows": [
        row_dict(client, bool(inbound_row), numbers) for client, inbound_row, numbers in zip(
            clients, list(inbound), np.asarray(counts).tolist(), strict=True)]}


def _covered(when: TimeRange, coverage: Coverage, resolution: int) -> dict[str, Any]:
    return {"seconds": when.seconds, "windows": coverage.windows,
            "from": coverage.first_start_s, "to": coverage.last_end_s, "resolution": resolution}


def _client_dict(ip: str, sums: np.ndarray) -> dict[str, Any]:
    """One client's bytes from its (2, classes) sums, [in, out]."""
    bytes_in, bytes_out = (int(value) for value in sums.sum(axis=1))
    return {"ip": ip, "bytes_in": bytes_in, "bytes_out": bytes_out,
            "total": bytes_in + bytes_out, "protocols": classes(sums.sum(axis=0)),
            "in": classes(sums[0]), "out": classes(sums[1])}


def _resolution(reader: Reader, when: TimeRange) -> int:
    return pick_resolution(reader.resolutions(), when).seconds


def clients(reader: Reader, when: TimeRange, limit: int, direction: str | None = None
            ) -> dict[str, Any]:
    """Top clients over `when`, by total bytes (or those of one direction); ties in the
    order the reader lists them."""
    totals = reader.client_totals(when, _resolution(reader, when))
    sums = totals.sums
    per_direction = sums.sum(axis=2)  # (clients, 2)
    if direction == IN:
        order_by = per_direction[:, 0]
    elif direction == OUT:
        order_by = per_direction[:, 1]
    else:
        order_by = per_direction.sum(axis=1)
    active = np.flatnonzero(order_by > 0)
    top = active[np.argsort(-order_by[active], kind="stable")][:max(limit, 0)]
    return {**_covered(when, totals.coverage, totals.resolution),
            "clients_active": int(len(active)),
            "clients": [_client_dict(totals.clients[i], sums[i]) for i in top.tolist()]}


def client(reader: Reader, ip: str, when: TimeRange) -> dict[str, Any] | None:
    """One client's per-window, per-class history over `when` (the drill-down), with its
    services; None when the reader names it nowhere: no rows in the range, and not among the
    clients its totals list (the web's memory lists every client it still names)."""
    resolution = _resolution(reader, when)
    totals = reader.client_totals(when, resolution)
    rows = reader.window_rows(when, resolution, client=ip)
    if not len(rows) and ip not in totals.clients:
        return None
    sums = np.zeros((2, CLASS_COUNT), dtype=np.int64)
    history = []
    for start, end, first, stop in zip(rows.starts.tolist(), rows.ends.tolist(),
                                       rows.row_bounds[:-1].tolist(),
                                       rows.row_bounds[1:].tolist(), strict=True):
        sides = np.zeros((2, CLASS_COUNT), dtype=np.int64)
        np.add.at(sides, (~rows.inbound[first:stop]).astype(np.int64), rows.counts[first:stop])
        sums += sides
        history.append({"start": start, "end": end, "in": classes(sides[0]),
                        "out": classes(sides[1])})
    history.sort(key=lambda window: window["start"])
    return {**_covered(when, totals.coverage, resolution), **_client_dict(ip, sums),
            "history": history, "services": _services(reader, when, ip)}


def protocols(reader: Reader, when: TimeRange) -> dict[str, Any]:
    """Bytes per class over `when`, in and out."""
    totals = reader.client_totals(when, _resolution(reader, when))
    per = totals.sums.sum(axis=0)  # (2, classes)
    return {**_covered(when, totals.coverage, totals.resolution), "protocols": [
        {"protocol": name, "bytes_in": int(per[0, c]), "bytes_out": int(per[1, c]),
         "total": int(per[0, c] + per[1, c])} for c, name in enumerate(CLASSES)]}


def _services(reader: Reader, when: TimeRange, ip: str | None = None
              ) -> list[dict[str, Any]] | None:
    found = reader.service_totals(when, ip)
    if found is None:
        return None
    listed = [{"service": name, "bytes_in": int(bytes_in), "bytes_out": int(bytes_out),
               "total": int(bytes_in + bytes_out)} for name, bytes_in, bytes_out in zip(
        found.services, found.bytes_in.tolist(), found.bytes_out.tolist(), strict=True)
        if bytes_in + bytes_out]
    return sorted(listed, key=lambda service: -service["total"])


def services(reader: Reader, when: TimeRange) -> dict[str, Any]:
    """Bytes per service of the server's port over `when` (`available: false` when the
    reader has no ports: a CSV's windows)."""
    listed = _services(reader, when)
    resolution = _resolution(reader, when)
    return {**_covered(when, reader.coverage(when, resolution), resolution),
            "available": listed is not None, "services": listed or []}


def windows(reader: Reader, limit: int) -> dict[str, Any]:
    """The last `limit` closed windows with their rows, in the order they closed."""
    rows: WindowRows = reader.window_rows(TimeRange.everything(),
                                          reader.resolutions()[0].seconds, last_windows=limit)
    bounds = rows.row_bounds.tolist()
    inbound = rows.inbound.tolist()
    return {"windows": [
        window_dict(start, end, rows.clients[bounds[i]:bounds[i + 1]],
                    inbound[bounds[i]:bounds[i + 1]], rows.counts[bounds[i]:bounds[i + 1]])
        for i, (start, end) in enumerate(zip(rows.starts.tolist(), rows.ends.tolist(),
                                             strict=True))]}


def servers(fleet: FleetReader, when: TimeRange) -> dict[str, Any]:
    """Every server of the fleet, by name: the windows held of it (`held_from`, `held_to`)
    and its bytes over `when` (zeros when it sent none then)."""
    resolution = _resolution(fleet, when)
    totals = fleet.server_totals(when, resolution)
    sums = dict(zip(totals.servers, totals.sums, strict=True))
    none = np.zeros((2, CLASS_COUNT), dtype=np.int64)
    listed = []
    for span in fleet.servers():
        found = _client_dict(span.name, sums.get(span.name, none))
        found["name"] = found.pop("ip")
        listed.append({"name": span.name, "held_from": span.first_start_s,
                       "held_to": span.last_end_s, **found})
    return {**_covered(when, totals.coverage, resolution), "fleet": True, "servers": listed}
