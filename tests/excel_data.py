"""Synthetic traffic.csv files shaped like the daemon's, for the Excel-side tests."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

from traffic_capture.csvformat import COLUMNS, TIME_FORMAT
from traffic_capture.rules import CLASSES

CLIENTS = ("192.168.10.21", "192.168.10.35", "10.0.0.7", "2001:db8::17", "fe80::1c2b:3aff:fe4d:1")


def traffic_rows(windows: int = 12, seed: int = 7, late_duplicates: int = 2) -> list[list[str]]:
    """Rows of (window, client, direction); not every client talks in every window."""
    rng = random.Random(seed)
    start = datetime(2026, 3, 2, 23, 59, 40)  # crosses midnight: dates, not just times
    rows = []
    for w in range(windows):
        ws = start + timedelta(seconds=5 * w)
        we = ws + timedelta(seconds=5)
        for client in CLIENTS:
            if rng.random() < 0.25:
                continue
            for direction in ("in", "out"):
                per_class = [rng.choice((0, rng.randint(1, 90_000))) for _ in CLASSES]
                rows.append([ws.strftime(TIME_FORMAT), we.strftime(TIME_FORMAT), client,
                             direction, str(sum(per_class)), *map(str, per_class)])
    # A late packet: the same (window, client, direction) again on a later row.
    for i in range(late_duplicates):
        late = list(rows[i])
        per_class = [0, 0, 60 + i, 0, 0]
        late[4:] = [str(sum(per_class)), *map(str, per_class)]
        rows.append(late)
    return rows


def write_traffic_csv(
    path: Path, rows: list[list[str]] | None = None, delimiter: str = ","
) -> Path:
    rows = traffic_rows() if rows is None else rows
    lines = [delimiter.join(COLUMNS)] + [delimiter.join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def day_rows(hours: int = 24, seed: int = 11) -> list[list[str]]:
    """A row per 5-second window for `hours` hours (one client at a time, in turn): a day's span
    at a size that builds and converts in seconds."""
    rng = random.Random(seed)
    start = datetime(2026, 3, 2, 0, 0, 0)
    rows = []
    for w in range(hours * 720):
        ws = start + timedelta(seconds=5 * w)
        per_class = [rng.randint(0, 50_000) for _ in CLASSES]
        rows.append([ws.strftime(TIME_FORMAT), (ws + timedelta(seconds=5)).strftime(TIME_FORMAT),
                     CLIENTS[w % 3], ("in", "out")[w % 2], str(sum(per_class)),
                     *map(str, per_class)])
    return rows
