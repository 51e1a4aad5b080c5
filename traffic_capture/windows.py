"""Tumbling windows: packets in, one row per (window, client, direction) out.

Pure: no clock, no thread, no I/O. Time is integer nanoseconds since the epoch so that a window
edge is exact for microsecond and nanosecond captures alike (a float would round
1700000004.9999999 into the next window).

Batches are summed with numpy into per-window parts, and a window's parts are summed once more
when it closes: the cost per packet does not depend on how many clients there are, and nothing
loops in Python per client until the writer thread turns a closed window into rows.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from traffic_capture.parse import address_text, join_address, split_address
from traffic_capture.rules import CLASSES, IN, OUT

NS = 1_000_000_000
_CLASS_COUNT = len(CLASSES)
# Packets kept per window before they are summed: small enough that one sum (a sort) never
# holds the capture thread for long (a few ms), while a busy live server fills its ring.
COMPACT_PACKETS = 1 << 16


class Row(NamedTuple):
    """One CSV row; times are epoch seconds, turned into local time by the CSV sink."""

    window_start: int
    window_end: int
    client_ip: str
    direction: str
    total_bytes: int
    http_bytes: int
    ftp_bytes: int
    tcp_bytes: int
    udp_bytes: int
    other_bytes: int


class Sums(NamedTuple):
    """Bytes per (client, direction) and class, as arrays: client = (is6, hi, lo), an IPv4
    address in the low 32 bits of lo; counts has one column per class."""

    is6: np.ndarray  # bool
    hi: np.ndarray  # uint64
    lo: np.ndarray  # uint64
    inbound: np.ndarray  # bool
    counts: np.ndarray  # int64, (n, classes)

    def __len__(self) -> int:  # type: ignore[override]
        return len(self.is6)


class WindowAggregator:
    """Sums IP bytes per (window, client, direction, class) until a window is closed."""

    def __init__(self, window_seconds: int) -> None:
        if window_seconds <= 0:
            raise ValueError("window must be a positive number of seconds")
        self.window_ns = window_seconds * NS
        self._parts: dict[int, list[Sums]] = {}  # window start -> packets or sums of batches
        self._pending: dict[int, int] = {}  # window start -> rows in its parts
        self._scalar: dict[int, dict[tuple[bytes, str], list[int]]] = {}  # of single packets

    def __len__(self) -> int:
        """Open windows."""
        return len(self._parts.keys() | self._scalar.keys())

    def add(self, ts_ns: int, client: bytes, direction: str, protocol_class: int,
            ip_bytes: int) -> None:
        """One packet (the packet-by-packet reference path)."""
        # floor(t / W) * W: windows aligned to the clock (:00, :05, :10...).
        window = self._scalar.setdefault(ts_ns // self.window_ns * self.window_ns, {})
        counts = window.get((client, direction))
        if counts is None:
            counts = window[(client, direction)] = [0] * _CLASS_COUNT
        counts[protocol_class] += ip_bytes

    def add_batch(self, ts_ns: np.ndarray, is6: np.ndarray, hi: np.ndarray, lo: np.ndarray,
                  inbound: np.ndarray, protocol_class: np.ndarray, ip_bytes: np.ndarray) -> None:
        """Counted packets of a batch, one array element each. They are kept as they are
        and summed when their window closes (or grows past COMPACT_PACKETS, which bounds
        memory): one sort per window, whatever the batch sizes."""
        if not len(ts_ns):
            return
        counts = np.zeros((len(ts_ns), _CLASS_COUNT), dtype=np.int64)
        counts[np.arange(len(ts_ns)), protocol_class] = ip_bytes
        packets = Sums(is6, hi, lo, inbound, counts)
        window = ts_ns // self.window_ns
        first = int(window.min())
        if first == int(window.max()):  # the common case: the whole batch in one window
            self._add_part(first * self.window_ns, packets)
            return
        for value in np.unique(window).tolist():
            chosen = window == value
            self._add_part(value * self.window_ns, Sums(*(column[chosen] for column in packets)))

    def _add_part(self, start: int, part: Sums) -> None:
        parts = self._parts.setdefault(start, [])
        parts.append(part)
        self._pending[start] = pending = self._pending.get(start, 0) + len(part)
        if pending > COMPACT_PACKETS:
            parts[:] = [_merged(parts)]
            self._pending[start] = len(parts[0])

    def oldest_end_ns(self) -> int | None:
        """End of the oldest open window, so callers know when the next close is due."""
        starts = self._parts.keys() | self._scalar.keys()
        if not starts:
            return None
        return min(starts) + self.window_ns

    def close_until(self, now_ns: int) -> list[ClosedWindow]:
        """Close every window that ended at or before `now_ns`, oldest first."""
        starts = self._parts.keys() | self._scalar.keys()
        return [self._close(start) for start in sorted(starts)
                if start + self.window_ns <= now_ns]

    def close_all(self) -> list[ClosedWindow]:
        """At stop: every open window, the partial one included, with its real bounds."""
        return [self._close(start) for start in sorted(self._parts.keys() | self._scalar.keys())]

    def _close(self, start: int) -> ClosedWindow:
        parts = self._parts.pop(start, [])
        self._pending.pop(start, None)
        scalar = self._scalar.pop(start, None)
        if scalar:
            parts.append(_sums_of_dict(scalar))
        return ClosedWindow(start // NS, (start + self.window_ns) // NS, _merged(parts))


def _sums_of_dict(counts_by_key: dict[tuple[bytes, str], list[int]]) -> Sums:
    keys = list(counts_by_key)
    split = [split_address(client) for client, _ in keys]
    return Sums(np.array([len(client) == 16 for client, _ in keys], dtype=bool),
                np.array([hi for hi, _ in split], dtype=np.uint64),
                np.array([lo for _, lo in split], dtype=np.uint64),
                np.array([direction == IN for _, direction in keys], dtype=bool),
                np.array(list(counts_by_key.values()), dtype=np.int64))


def _merged(parts: list[Sums]) -> Sums:
    """One sum per (client, direction), in row order: IPv4 before IPv6, numeric order within
    each, `in` before `out` (what a reader scans for)."""
    if len(parts) == 1 and len(parts[0]) <= 1:
        return parts[0]
    is6, hi, lo, inbound, counts = (np.concatenate(column) for column in zip(*parts,
                                                                             strict=True))
    if is6.any():
        order = np.lexsort((~inbound, lo, hi, is6))
    else:  # IPv4 only (the common case): one integer key, sorted several times faster
        order = np.argsort((lo << np.uint64(1)) | (~inbound).astype(np.uint64), kind="stable")
    is6, hi, lo, inbound, counts = is6[order], hi[order], lo[order], inbound[order], counts[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (is6[1:] != is6[:-1]) | (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1]) | (
        inbound[1:] != inbound[:-1])
    starts = np.flatnonzero(new)
    return Sums(is6[starts], hi[starts], lo[starts], inbound[starts],
                np.add.reduceat(counts, starts, axis=0))


_TEXT_CACHE: dict[tuple[bool, int, int], str] = {}


def _client_text(is6: bool, hi: int, lo: int) -> str:
    """Address text, cached: the same clients come back window after window."""
    key = (is6, hi, lo)
    text = _TEXT_CACHE.get(key)
    if text is None:
        if len(_TEXT_CACHE) > 1_000_000:  # a scan of a /8 must not grow memory forever
            _TEXT_CACHE.clear()
        text = _TEXT_CACHE[key] = address_text(join_address(is6, hi, lo))
    return text


class ClosedWindow(NamedTuple):
    """A closed window's sums. Closing costs little; turning 100,000 clients into rows takes a
    good half second, which the writer thread pays, not the capture."""

    start_s: int
    end_s: int
    sums: Sums

    def __len__(self) -> int:  # type: ignore[override]
        """Rows it makes."""
        return len(self.sums)

    def client_texts(self) -> list[str]:
        s = self.sums
        return [_client_text(is6, hi, lo) for is6, hi, lo in zip(
            s.is6.tolist(), s.hi.tolist(), s.lo.tolist(), strict=True)]

    def directions(self) -> list[str]:
        return [IN if inbound else OUT for inbound in self.sums.inbound.tolist()]

    def totals_and_counts(self) -> np.ndarray:
        """(rows, 1 + classes): total_bytes, then each class's bytes."""
        counts = self.sums.counts
        return np.column_stack([counts.sum(axis=1), counts])

    def rows(self) -> list[Row]:
        return [Row(self.start_s, self.end_s, client, direction, *numbers)
                for client, direction, numbers in zip(
                    self.client_texts(), self.directions(), self.totals_and_counts().tolist(),
                    strict=True)]


def empty_sums() -> Sums:
    return Sums(np.zeros(0, dtype=bool), np.zeros(0, dtype=np.uint64),
                np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=bool),
                np.zeros((0, _CLASS_COUNT), dtype=np.int64))
