"""What the window shows, without tkinter: the latest rows, the current window's per-client
sums, pause and the client filter (pure, so it is tested without a display)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

# One packet as the window shows it: (time in seconds since the epoch, direction, client,
# class, IP bytes, payload preview).
Row = tuple[float, str, str, str, int, str]
# One client's sums over part of a window: (window start in seconds, client, bytes in,
# bytes out, packets).
Sum = tuple[int, str, int, int, int]

MAX_ROWS = 500  # the latest packets kept for the table


@dataclass
class ClientSums:
    bytes_in: int = 0
    bytes_out: int = 0
    packets: int = 0


@dataclass
class ViewModel:
    window_seconds: int
    max_rows: int = MAX_ROWS
    rows: deque[Row] = field(default_factory=deque)
    window_start: int | None = None  # the current window's start (seconds since the epoch)
    clients: dict[str, ClientSums] = field(default_factory=dict)
    received: int = 0  # packets the window heard of (rows or sums)
    not_shown: int = 0  # packets the capture could not send (the window fell behind)
    ended: str | None = None  # why nothing more will come
    filter_text: str = ""
    paused: bool = False

    def __post_init__(self) -> None:
        self.rows = deque(self.rows, maxlen=self.max_rows)

    def add(self, rows: Iterable[Row], sums: Iterable[Sum] | None = None) -> None:
        """Packets from the capture: rows to show, and the sums of all of the batch's packets
        (None: sum the rows themselves, as when following a log)."""
        rows = list(rows)
        self.rows.extend(rows)
        if sums is None:
            sums = [(self.window_of(ts), client, size if direction == "in" else 0,
                     0 if direction == "in" else size, 1)
                    for ts, direction, client, _, size, _ in rows]
        for start, client, bytes_in, bytes_out, packets in sums:
            if self.window_start is None or start > self.window_start:
                self.window_start = start  # a new window: its sums start from nothing
                self.clients = {}
            if start < self.window_start:
                self.received += packets
                continue  # late packets of a window already replaced
            sums_of = self.clients.setdefault(client, ClientSums())
            sums_of.bytes_in += bytes_in
            sums_of.bytes_out += bytes_out
            sums_of.packets += packets
            self.received += packets

    def version(self) -> tuple[int, int, str | None, int | None]:
        """Changes whenever what the window draws changes, but for the filter and pause (which
        redraw at once): a poll that brought nothing new skips the redraw."""
        return self.received, self.not_shown, self.ended, self.window_start

    def window_of(self, ts: float) -> int:
        return int(ts // self.window_seconds) * self.window_seconds

    def matches(self, client: str) -> bool:
        """The filter: a client matches when its address contains the filter text (so
        '192.0.2.' keeps a subnet); an empty filter keeps every client."""
        text = self.filter_text.strip()
        return not text or text in client

    def shown_rows(self) -> list[Row]:
        return [row for row in self.rows if self.matches(row[2])]

    def shown_clients(self) -> list[tuple[str, ClientSums]]:
        """The current window's clients that match, the busiest first."""
        chosen = [(client, s) for client, s in self.clients.items() if self.matches(client)]
        return sorted(chosen, key=lambda item: (-(item[1].bytes_in + item[1].bytes_out),
                                                item[0]))

    def title(self) -> str:
        """The window's title: what it holds at a glance (also how tests read it)."""
        parts = [f"{self.received:,} packets", f"{len(self.shown_rows()):,} rows shown"]
        if self.filter_text.strip():
            parts.append(f"client filter {self.filter_text.strip()}")
        if self.paused:
            parts.append("paused")
        if self.ended:
            parts.append(self.ended)
        return "traffic-capture view - " + ", ".join(parts)

    def status(self) -> str:
        if not self.not_shown:
            return ""
        return (f"{self.not_shown:,} packets not shown: the window fell behind the capture "
                "(they are all counted in the CSV and the packet log)")
