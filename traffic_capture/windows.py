"""Tumbling windows: packets in, one row per (window, client, direction) out.

Pure: no clock, no thread, no I/O. Time is integer nanoseconds since the epoch so that a window
edge is exact for microsecond and nanosecond captures alike (a float would round
1700000004.9999999 into the next window).

Each batch is summed per client and class at once (_group_sums.c, or its numpy twin) into
per-window parts, and a window's parts are merged into row order when it closes: the cost per
packet does not depend on how many clients there are, and nothing loops in Python per client
until the writer thread turns a closed window into rows.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from traffic_capture.addresses import AddressText
from traffic_capture.csvformat import Row
from traffic_capture.frames import NS, compiled_or
from traffic_capture.rules import CLASSES, IN, OUT

_CLASS_COUNT = len(CLASSES)
# Packets kept per window before they are summed: small enough that one sum (a sort) never
# holds the capture thread for long (a few ms), while a busy live server fills its ring.
COMPACT_PACKETS = 1 << 16
# The client of the rows that hold what --max-clients folds, one per direction: an IPv4 client
# with a high half, which no address has (IPv4 lives in the low half), so no packet can ever
# be mistaken for it. Its row key sorts after every real client: `other` comes last.
OTHER_CLIENT = "other"
_OTHER_HI = np.uint64(1)


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


class Packets(NamedTuple):
    """Counted packets of a window, not yet summed: one element each, client as in Sums."""

    is6: np.ndarray  # bool
    hi: np.ndarray  # uint64
    lo: np.ndarray  # uint64
    inbound: np.ndarray  # bool
    protocol_class: np.ndarray  # int64, an index into CLASSES
    ip_bytes: np.ndarray  # int64

    def __len__(self) -> int:  # type: ignore[override]
        return len(self.is6)


class WindowAggregator:
    """Sums IP bytes per (window, client, direction, class) until a window is closed."""

    def __init__(self, window_seconds: int, max_clients: int | None = None) -> None:
        if window_seconds <= 0:
            raise ValueError("window must be a positive number of seconds")
        self.window_ns = window_seconds * NS
        self.max_clients = max_clients  # per window and direction; None: no cap
        # window start -> its batches' packets, summed per batch (not yet in row order)
        self._batches: dict[int, list[Sums]] = {}
        self._pending: dict[int, int] = {}  # window start -> how many packets those hold
        self._sums: dict[int, Sums] = {}  # window start -> sum of its packets so far

    def __len__(self) -> int:
        """Open windows."""
        return len(self._starts())

    def _starts(self) -> set[int]:
        return self._batches.keys() | self._sums.keys()

    def add_batch(self, ts_ns: np.ndarray, is6: np.ndarray, hi: np.ndarray, lo: np.ndarray,
                  inbound: np.ndarray, protocol_class: np.ndarray, ip_bytes: np.ndarray) -> None:
        """Counted packets of a batch, one array element each. They are summed per client and
        class at once (grouped), and those sums merged into row order when their window
        closes (or holds more than COMPACT_PACKETS packets, which bounds memory): one sort of
        sums per window, whatever the batch sizes."""
        if not len(ts_ns):
            return
        packets = Packets(is6, hi, lo, inbound, protocol_class, ip_bytes)
        window = ts_ns // self.window_ns
        first = int(window.min())
        if first == int(window.max()):  # the common case: the whole batch in one window
            self._add_packets(first * self.window_ns, packets)
            return
        # The distinct windows, sorted (np.unique would import numpy.ma: 7 ms of a file's run).
        ordered = np.sort(window)
        for value in ordered[np.flatnonzero(np.diff(ordered, prepend=ordered[0] - 1))].tolist():
            chosen = window == value
            self._add_packets(value * self.window_ns,
                              Packets(*(column[chosen] for column in packets)))

    def _add_packets(self, start: int, packets: Packets) -> None:
        kept = self._batches.setdefault(start, [])
        kept.append(grouped(packets))
        self._pending[start] = pending = self._pending.get(start, 0) + len(packets)
        if pending > COMPACT_PACKETS:
            self._sums[start] = self._summed([*self._sums_of(start), *kept])
            del self._batches[start], self._pending[start]

    def _summed(self, parts: list[Sums]) -> Sums:
        merged = _merged(parts)
        if self.max_clients is not None:
            merged = capped(merged, self.max_clients)
        return merged

    def _sums_of(self, start: int) -> list[Sums]:
        return [self._sums[start]] if start in self._sums else []

    def oldest_end_ns(self) -> int | None:
        """End of the oldest open window, so callers know when the next close is due."""
        starts = self._starts()
        if not starts:
            return None
        return min(starts) + self.window_ns

    def close_until(self, now_ns: int) -> list[ClosedWindow]:
        """Close every window that ended at or before `now_ns`, oldest first."""
        return [self._close(start) for start in sorted(self._starts())
                if start + self.window_ns <= now_ns]

    def open_windows(self) -> list[OpenWindow]:
        """The open windows' sums so far, oldest first, without closing them (the web's window
        in progress). Their packets are summed now and kept summed."""
        opened = []
        for start in sorted(self._starts()):
            batches = self._batches.pop(start, [])
            self._pending.pop(start, None)
            if batches:
                self._sums[start] = self._summed([*self._sums_of(start), *batches])
            opened.append(OpenWindow(start // NS, (start + self.window_ns) // NS,
                                       self._sums[start]))
        return opened

    def close_all(self) -> list[ClosedWindow]:
        """At stop: every open window, the partial one included (with its aligned bounds, so
        that pivots line up with the other windows)."""
        return [self._close(start) for start in sorted(self._starts())]

    def _close(self, start: int) -> ClosedWindow:
        sums = self._sums_of(start)
        self._sums.pop(start, None)
        batches = self._batches.pop(start, [])
        self._pending.pop(start, None)
        # A window summed once already is in row order; anything else is summed now.
        merged = sums[0] if len(sums) == 1 and not batches else self._summed([*sums, *batches])
        return ClosedWindow(start // NS, (start + self.window_ns) // NS, merged)


def _row_keys(is6: np.ndarray, hi: np.ndarray, lo: np.ndarray, inbound: np.ndarray
              ) -> np.ndarray:
    """One uint64 per (client, direction) whose numeric order is row order: IPv4 before
    IPv6, numeric order within each, `in` before `out` (what a reader scans for).

    IPv6 clients (128 bits) are numbered by rank first; one integer key then sorts several
    times faster than sorting on four columns.
    """
    keys = (lo << np.uint64(1)) | (~inbound).astype(np.uint64)
    v6 = np.flatnonzero(is6)
    if len(v6):
        hi6, lo6 = hi[v6], lo[v6]
        order = np.lexsort((lo6, hi6))
        hi6, lo6 = hi6[order], lo6[order]
        new = np.ones(len(v6), dtype=bool)
        new[1:] = (hi6[1:] != hi6[:-1]) | (lo6[1:] != lo6[:-1])
        rank = np.empty(len(v6), dtype=np.uint64)
        rank[order] = np.cumsum(new) - 1
        keys[v6] = _IPV6_KEYS + ((rank << np.uint64(1)) | (keys[v6] & np.uint64(1)))
    other = np.flatnonzero(_is_other(is6, hi))
    if len(other):  # after every client: IPv6 ranks stay far below 2**62
        keys[other] = _OTHER_KEYS | (~inbound[other]).astype(np.uint64)
    return keys


_IPV6_KEYS = np.uint64(1 << 40)  # above every IPv4 key (2**33)
_OTHER_KEYS = np.uint64(1 << 62)  # above every IPv6 key


def grouped(packets: Packets) -> Sums:
    """A batch's packets summed per (client, direction) and class, in order of first
    appearance: what a window keeps of them until it closes."""
    n = len(packets)
    first = np.empty(n, dtype=np.int64)
    counts = np.empty((n, _CLASS_COUNT), dtype=np.int64)
    groups = group_sums(*(np.ascontiguousarray(column) for column in packets), first, counts,
                        _CLASS_COUNT, _HASH_SEED)
    first = first[:groups]
    # A copy: a window keeps this batch's groups, not room for all its packets.
    return Sums(packets.is6[first], packets.hi[first], packets.lo[first],
                packets.inbound[first], counts[:groups].copy())


# The compiled grouping's secret hash key (see _group_sums.c), one per process.
_HASH_SEED = int.from_bytes(os.urandom(8), "little")


def python_group_sums(is6: np.ndarray, hi: np.ndarray, lo: np.ndarray, inbound: np.ndarray,
                      protocol_class: np.ndarray, ip_bytes: np.ndarray, first_out: np.ndarray,
                      counts_out: np.ndarray, classes: int, seed: int = 0) -> int:
    """The twin of _group_sums.c: each group's first packet into first_out, its bytes per
    class into the rows of counts_out, groups in order of first appearance; how many. (It
    sorts; `seed`, the C hash's key, changes nothing in the result.)"""
    n = len(is6)
    if n and (protocol_class.min() < 0 or protocol_class.max() >= classes):
        raise ValueError("group_sums: a class out of range")
    key = np.empty(n, dtype=[("hi", np.uint64), ("lo", np.uint64), ("flags", np.uint8)])
    key["hi"], key["lo"] = hi, lo
    key["flags"] = (is6.astype(np.uint8) << 1) | inbound.astype(np.uint8)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    order = np.argsort(first)  # groups by first appearance
    rank = np.empty(len(first), dtype=np.int64)
    rank[order] = np.arange(len(first))
    counts = counts_out.reshape(-1)[:len(first) * classes].reshape(len(first), classes)
    counts[:] = 0
    np.add.at(counts, (rank[inverse.reshape(-1)], protocol_class), ip_bytes)
    first_out[:len(first)] = first[order]
    return len(first)


try:
    from traffic_capture._group_sums import group_sums as compiled_group_sums
except ImportError:  # no C compiler at install: the same groups, from numpy
    compiled_group_sums = None

group_sums = compiled_or(compiled_group_sums, python_group_sums)


def _merged(parts: list[Sums]) -> Sums:
    """One sum per (client, direction), in row order (see _row_keys)."""
    if not parts:
        return empty_sums()
    is6, hi, lo, inbound = (np.concatenate([getattr(part, name) for part in parts])
                            for name in ("is6", "hi", "lo", "inbound"))
    keys = _row_keys(is6, hi, lo, inbound)
    order = np.argsort(keys)  # ties are the same row: the sort need not be stable
    sorted_keys = keys[order]
    new = np.ones(len(keys), dtype=bool)
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=new[1:])
    # Each row's counts: the sum of its run in key order (a tenth of np.add.at's time).
    counts = np.add.reduceat(np.concatenate([part.counts for part in parts])[order],
                             np.flatnonzero(new), axis=0)
    first = order[new]
    return Sums(is6[first], hi[first], lo[first], inbound[first], counts)


def capped(sums: Sums, max_clients: int) -> Sums:
    """At most `max_clients` rows per direction, plus one `other` row holding the rest, with
    every class's bytes conserved exactly.

    A weighted Misra-Gries summary per direction: when more clients than the cap hold bytes,
    the (cap+1)-th largest total c is taken from every client, those left with nothing are
    folded, and all that was taken goes to `other`. Summaries merge (each compaction of a
    window's packets, each close), and after any merging a client's row falls short of its
    true bytes by at most the direction's bytes / (cap + 1): a client carrying at least
    1/cap of the window's bytes always keeps its own row, whatever the order packets came in.
    Space-Saving would count heavy clients no better and add bytes they never sent.
    """
    other = _is_other(sums.is6, sums.hi)
    parts_is6, parts_hi, parts_lo, parts_in, parts_counts = [], [], [], [], []
    changed = False
    for inbound in (True, False):
        side = sums.inbound == inbound
        clients = np.flatnonzero(side & ~other)
        folded = sums.counts[side & other].sum(axis=0)
        counts = sums.counts[clients]
        if len(clients) > max_clients:
            changed = True
            totals = counts.sum(axis=1)
            c = np.partition(totals, len(totals) - max_clients - 1)[len(totals) - max_clients - 1]
            taken = _take(counts, np.minimum(totals, c))
            folded = folded + taken.sum(axis=0)
            counts = counts - taken
            left = counts.sum(axis=1) > 0
            clients, counts = clients[left], counts[left]
        parts_is6.append(sums.is6[clients])
        parts_hi.append(sums.hi[clients])
        parts_lo.append(sums.lo[clients])
        parts_in.append(np.full(len(clients), inbound))
        parts_counts.append(counts)
        if folded.any():
            parts_is6.append(np.array([False]))
            parts_hi.append(np.array([_OTHER_HI]))
            parts_lo.append(np.array([0], dtype=np.uint64))
            parts_in.append(np.array([inbound]))
            parts_counts.append(folded.reshape(1, -1))
    if not changed:
        return sums
    return _merged([Sums(np.concatenate(parts_is6), np.concatenate(parts_hi),
                         np.concatenate(parts_lo), np.concatenate(parts_in),
                         np.concatenate(parts_counts).astype(np.int64))])


def _is_other(is6: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return ~is6 & (hi != 0)


def _take(counts: np.ndarray, amounts: np.ndarray) -> np.ndarray:
    """Per row, `amounts` bytes (at most its total) taken from its classes, largest class
    first: exact integers (a proportional split would multiply bytes by bytes, past int64 on a
    busy link), and the row keeps its main classes' shape."""
    order = np.argsort(-counts, axis=1, kind="stable")
    largest_first = np.take_along_axis(counts, order, axis=1)
    taken_so_far = np.minimum(np.cumsum(largest_first, axis=1), amounts[:, None])
    taken = np.empty_like(counts)
    np.put_along_axis(taken, order, np.diff(taken_so_far, axis=1, prepend=0), axis=1)
    return taken


# The same clients come back window after window; a scan of a /8 must not grow memory forever.
_CLIENT_TEXT = AddressText(limit=1_000_000)


class WindowSums(NamedTuple):
    """A window's sums, per client and direction. Closing costs little; turning 100,000
    clients into rows takes a good half second, which the writer thread pays, not the
    capture."""

    start_s: int
    end_s: int
    sums: Sums

    def __len__(self) -> int:  # type: ignore[override]
        """Rows it makes."""
        return len(self.sums)

    def client_texts(self) -> list[str]:
        s = self.sums
        texts = _CLIENT_TEXT(s.is6, s.hi, s.lo)
        for row in np.flatnonzero(_is_other(s.is6, s.hi)).tolist():
            texts[row] = OTHER_CLIENT
        return texts

    def ipv4_and_texts(self) -> tuple[np.ndarray, list[str]]:
        """The rows' IPv4 clients (int64 per row, -1 for the others) and the texts of the
        others, in row order: a writer that lays IPv4 addresses out itself (the CSV's C step)
        needs no Python string for them, most rows of most windows."""
        s = self.sums
        others = s.is6 | _is_other(s.is6, s.hi)
        v4 = np.where(others, -1, s.lo.astype(np.int64))
        rest = np.flatnonzero(others)
        texts = _CLIENT_TEXT(s.is6[rest], s.hi[rest], s.lo[rest])
        for k in np.flatnonzero(~s.is6[rest]).tolist():  # not IPv6 and not IPv4: `other`
            texts[k] = OTHER_CLIENT
        return v4, texts

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


class ClosedWindow(WindowSums):
    """A closed window: what the outputs write (late packets may close it again, with rows of
    their own)."""

    __slots__ = ()


class OpenWindow(WindowSums):
    """A window still open: its sums so far (the dashboard's window in progress)."""

    __slots__ = ()


def empty_sums() -> Sums:
    return Sums(np.zeros(0, dtype=bool), np.zeros(0, dtype=np.uint64),
                np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=bool),
                np.zeros((0, _CLASS_COUNT), dtype=np.int64))
