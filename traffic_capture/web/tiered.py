"""One `queries.Reader` over the web's memory and a history behind it, so that the API answers
any range from the store that holds it: the memory for what it holds (the last --web-history
seconds at the window length, the windows the history has not flushed yet, the services), the
history for the rest (older windows, and the coarser resolutions of long ranges).

Time is cut in pieces that never share a window, so no byte is counted twice and none is left
out, whatever the history flushes between two calls:

- at the window length: the history before the memory's oldest window, the memory from there
  to its newest window's end, the history after that (a history newer than the memory: `serve`
  whose memory follows the history, a few seconds late);
- at a coarser step (1 min, 1 h): the history's rows of that step up to the step holding the
  history's newest flushed window, whose rows it has whole; from that step on, the window
  length's pieces above, summed into steps. The step in progress is then whole too: the part
  the history flushed, and the part only the memory holds yet.

Pure logic over two Readers (no I/O of its own, no FastAPI, neither store's class).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from traffic_capture.queries import (
    CLASS_COUNT,
    ClientTotals,
    Coverage,
    Reader,
    Resolution,
    ServiceTotals,
    TimeRange,
    WindowRows,
)


@dataclasses.dataclass(frozen=True)
class _Held:
    """Both stores' extents at one moment: every piece of one call is cut from the same."""

    fine: int  # the memory's window length
    memory_from: int | None  # its oldest window's start
    memory_to: int | None  # its newest window's end
    history: tuple[Resolution, ...]

    def history_at(self, seconds: int) -> Resolution | None:
        return next((held for held in self.history if held.seconds == seconds), None)

    @property
    def history_fine(self) -> bool:
        """Whether the history holds windows of the memory's length (to go before or after
        the memory's)."""
        return self.history_at(self.fine) is not None

    @property
    def flushed_to(self) -> int | None:
        """The end of the history's newest window at its finest step: all its steps are
        written together, so every coarser step before it is whole."""
        ends = [held.last_end_s for held in self.history if held.last_end_s is not None]
        return ends[0] if ends else None

    @property
    def history_from(self) -> int | None:
        starts = [held.first_start_s for held in self.history if held.first_start_s is not None]
        return min(starts, default=None)


def _range(start_s: int, end_s: int) -> TimeRange | None:
    return TimeRange(start_s, end_s) if start_s < end_s else None


def _floor(value: int, step: int) -> int:
    return value // step * step


def _ceil(value: int, step: int) -> int:
    return -(-value // step) * step


class TieredReader:
    """queries.Reader: `memory` (one resolution, the window length: the web's MemoryStore)
    for what it holds, `history` (any Reader: the DuckDB history) for the rest."""

    def __init__(self, memory: Reader, history: Reader) -> None:
        self.memory = memory
        self.history = history

    # -- where each piece of a range is

    def _held(self) -> _Held:
        memory = self.memory.resolutions()[0]
        return _Held(memory.seconds, memory.first_start_s, memory.last_end_s,
                     tuple(self.history.resolutions()))

    def _fine_pieces(self, held: _Held, when: TimeRange) -> list[tuple[Reader, TimeRange]]:
        """`when` at the window length, store by store, oldest first."""
        if held.memory_from is None or held.memory_to is None:
            return [(self.history, when)] if held.history_fine else []
        pieces: list[tuple[Reader, TimeRange | None]] = [
            (self.history, _range(when.start_s, min(when.end_s, held.memory_from))),
            (self.memory, _range(max(when.start_s, held.memory_from),
                                 min(when.end_s, held.memory_to))),
            (self.history, _range(max(when.start_s, held.memory_to), when.end_s))]
        return [(reader, piece) for reader, piece in pieces if piece is not None
                and (reader is self.memory or held.history_fine)]

    def _split(self, held: _Held, when: TimeRange, resolution: int
               ) -> tuple[TimeRange | None, TimeRange | None]:
        """A coarser step's range: (what the history's rows of that step answer, what the
        window length's pieces answer, in whole steps)."""
        flushed = held.flushed_to
        cut = (_floor(flushed, resolution) if flushed is not None
               and held.history_at(resolution) is not None else when.start_s)
        coarse = _range(when.start_s, min(when.end_s, cut))
        fine = _range(max(_floor(when.start_s, resolution), cut), _ceil(when.end_s, resolution))
        return coarse, fine

    def _kind(self, held: _Held, resolution: int) -> str:
        """'fine' (the window length), 'rolled' (a multiple of it: the history's rows of that
        step, then the recent steps summed from the window length's; all of them summed when
        the history has none) or 'history' (the history's alone: a step finer than the
        memory's, or not a multiple of it)."""
        if resolution == held.fine:
            return "fine"
        if resolution % held.fine == 0:
            return "rolled"
        if held.history_at(resolution) is None:
            raise ValueError(f"no store holds {resolution}-second windows")
        return "history"

    # -- queries.Reader

    def resolutions(self) -> tuple[Resolution, ...]:
        """The memory's window length (reaching back as far as the history's windows of that
        length), then the history's other steps."""
        held = self._held()
        history_fine = held.history_at(held.fine) or Resolution(held.fine)
        starts = [start for start in (held.memory_from, history_fine.first_start_s)
                  if start is not None]
        ends = [end for end in (held.memory_to, history_fine.last_end_s) if end is not None]
        offered = [Resolution(held.fine, min(starts, default=None), max(ends, default=None))]
        for step in held.history:
            if step.seconds == held.fine:
                continue
            last = step.last_end_s
            if step.seconds % held.fine == 0 and held.memory_to is not None:
                last = max(last or 0, _ceil(held.memory_to, step.seconds))
            offered.append(Resolution(step.seconds, step.first_start_s, last))
        return tuple(sorted(offered, key=lambda step: step.seconds))

    def coverage(self, when: TimeRange, resolution: int) -> Coverage:
        held = self._held()
        kind = self._kind(held, resolution)
        if kind == "history":
            return self.history.coverage(when, resolution)
        if kind == "fine":
            return _joined([reader.coverage(piece, held.fine)
                            for reader, piece in self._fine_pieces(held, when)])
        coarse, fine = self._split(held, when, resolution)
        return self._rolled_coverage(held, coarse, fine, resolution)

    def _rolled_coverage(self, held: _Held, coarse: TimeRange | None, fine: TimeRange | None,
                         resolution: int) -> Coverage:
        found = [self.history.coverage(coarse, resolution)] if coarse is not None else []
        if fine is not None:
            found.append(_in_steps(_joined([
                reader.coverage(piece, held.fine)
                for reader, piece in self._fine_pieces(held, fine)]), resolution))
        return _joined(found)

    def client_totals(self, when: TimeRange, resolution: int) -> ClientTotals:
        held = self._held()
        kind = self._kind(held, resolution)
        if kind == "history":
            return self.history.client_totals(when, resolution)
        if kind == "fine":
            parts = [reader.client_totals(piece, held.fine)
                     for reader, piece in self._fine_pieces(held, when)]
            return _summed(parts, resolution, _joined([part.coverage for part in parts]))
        coarse, fine = self._split(held, when, resolution)
        parts = [self.history.client_totals(coarse, resolution)] if coarse is not None else []
        fine_parts = [] if fine is None else [reader.client_totals(piece, held.fine)
                                              for reader, piece in self._fine_pieces(held, fine)]
        covered = [part.coverage for part in parts]
        if fine_parts:
            covered.append(_in_steps(_joined([part.coverage for part in fine_parts]),
                                     resolution))
        return _summed([*parts, *fine_parts], resolution, _joined(covered))

    def window_rows(self, when: TimeRange, resolution: int, client: str | None = None,
                    last_windows: int | None = None) -> WindowRows:
        held = self._held()
        kind = self._kind(held, resolution)
        if kind == "history":
            return self.history.window_rows(when, resolution, client, last_windows)
        if kind == "fine":
            return self._fine_rows(held, when, client, last_windows)
        coarse, fine = self._split(held, when, resolution)
        recent = WindowRows.empty(resolution)
        if fine is not None:
            # Every client's rows when the last windows are asked for: which windows are the
            # last does not depend on the client.
            recent = rolled_up(self._fine_rows(held, fine, None if last_windows is not None
                                               else client, None), resolution)
            if last_windows is not None:
                recent = only_client(newest(recent, last_windows), client)
        older = WindowRows.empty(resolution)
        if coarse is not None:
            remaining = None if last_windows is None else last_windows - len(recent.starts)
            if remaining is None or remaining > 0:
                older = self.history.window_rows(coarse, resolution, client, remaining)
        return joined_rows([older, recent], resolution)

    def _fine_rows(self, held: _Held, when: TimeRange, client: str | None,
                   last_windows: int | None) -> WindowRows:
        """The pieces' rows, oldest first; the last `last_windows` windows taken from the
        newest piece back."""
        pieces = self._fine_pieces(held, when)
        if last_windows is None:
            return joined_rows([reader.window_rows(piece, held.fine, client)
                                for reader, piece in pieces], held.fine)
        found: list[WindowRows] = []
        remaining = last_windows
        for reader, piece in reversed(pieces):
            if remaining <= 0:
                break
            found.insert(0, reader.window_rows(piece, held.fine, client, remaining))
            remaining -= reader.coverage(piece, held.fine).windows
        return joined_rows(found, held.fine)

    def service_totals(self, when: TimeRange, client: str | None = None
                       ) -> ServiceTotals | None:
        """Only the memory has ports: None when the range reaches windows the history holds
        and the memory does not."""
        held = self._held()
        history_from, flushed = held.history_from, held.flushed_to
        if held.memory_from is None or held.memory_to is None:
            if history_from is not None:
                return None
        elif (history_from is not None and when.start_s < held.memory_from
              and history_from < held.memory_from) or (
                flushed is not None and when.end_s > held.memory_to
                and flushed > held.memory_to):
            return None
        return self.memory.service_totals(when, client)


def _joined(found: Sequence[Coverage]) -> Coverage:
    """Coverages of pieces that share no window."""
    held = [cover for cover in found if cover.windows]
    if not held:
        return Coverage(0)
    return Coverage(sum(cover.windows for cover in held),
                    min(cover.first_start_s for cover in held if cover.first_start_s is not None),
                    max(cover.last_end_s for cover in held if cover.last_end_s is not None))


def _in_steps(found: Coverage, step: int) -> Coverage:
    """The steps the windows of `found` fall in: each step from the first's to the last's
    (exact when they are at most two, as the recent steps are; more only when the history
    lags behind the memory by a step or more, where a step without a window counts too)."""
    if not found.windows or found.first_start_s is None or found.last_end_s is None:
        return Coverage(0)
    first, last = _floor(found.first_start_s, step), _ceil(found.last_end_s, step)
    return Coverage(min(found.windows, (last - first) // step), first, last)


def _summed(parts: Sequence[ClientTotals], resolution: int, coverage: Coverage
            ) -> ClientTotals:
    """Totals of pieces added client by client (clients in the order first listed)."""
    if len(parts) == 1:
        return dataclasses.replace(parts[0], resolution=resolution, coverage=coverage)
    index: dict[str, int] = {}
    for part in parts:
        for name in part.clients:
            index.setdefault(name, len(index))
    sums = np.zeros((len(index), 2, CLASS_COUNT), dtype=np.int64)
    for part in parts:
        if len(part.clients):
            sums[np.array([index[name] for name in part.clients], dtype=np.int64)] += part.sums
    return ClientTotals(list(index), sums, resolution, coverage)


def joined_rows(parts: Sequence[WindowRows], resolution: int) -> WindowRows:
    """Rows of pieces one after the other."""
    parts = [part for part in parts if len(part.starts)]
    if not parts:
        return WindowRows.empty(resolution)
    if len(parts) == 1:
        return dataclasses.replace(parts[0], resolution=resolution)
    offsets = np.cumsum([0] + [len(part) for part in parts[:-1]])
    bounds = np.concatenate([parts[0].row_bounds[:1]] + [
        part.row_bounds[1:] + offset for part, offset in zip(parts, offsets, strict=True)])
    return WindowRows(np.concatenate([part.starts for part in parts]),
                      np.concatenate([part.ends for part in parts]), bounds.astype(np.int64),
                      [name for part in parts for name in part.clients],
                      np.concatenate([part.inbound for part in parts]),
                      np.concatenate([part.counts for part in parts]), resolution)


def rolled_up(rows: WindowRows, step: int) -> WindowRows:
    """Rows of shorter windows summed into windows of `step` (aligned on the epoch, as the
    history's are): one row per step, client and direction; steps oldest first, rows in the
    order their client and direction first come."""
    if not len(rows.starts):
        return WindowRows.empty(step)
    row_steps = rows.window_start // step * step
    steps = np.unique(rows.starts // step * step)
    codes, names = pd.factorize(pd.Series(list(rows.clients), dtype=object), sort=False)
    step_of_row = np.searchsorted(steps, row_steps)
    key = (step_of_row * len(names) + codes) * 2 + (~rows.inbound).astype(np.int64)
    keys, first_row, row_key = np.unique(key, return_index=True, return_inverse=True)
    order = np.lexsort((first_row, keys // (2 * max(len(names), 1))))  # by step, then first
    sums = np.zeros((len(keys), CLASS_COUNT), dtype=np.int64)
    np.add.at(sums, row_key.reshape(-1), rows.counts)
    keys, sums = keys[order], sums[order]
    key_steps = keys // (2 * len(names))
    bounds = np.searchsorted(key_steps, np.arange(len(steps) + 1))
    return WindowRows(steps.astype(np.int64), (steps + step).astype(np.int64),
                      bounds.astype(np.int64),
                      [str(names[code]) for code in ((keys // 2) % len(names)).tolist()],
                      (keys % 2) == 0, sums, step)


def newest(rows: WindowRows, windows: int) -> WindowRows:
    """The last `windows` windows' rows."""
    keep = max(len(rows.starts) - max(windows, 0), 0)
    first_row = int(rows.row_bounds[keep])
    return WindowRows(rows.starts[keep:], rows.ends[keep:], rows.row_bounds[keep:] - first_row,
                      list(rows.clients[first_row:]), rows.inbound[first_row:],
                      rows.counts[first_row:], rows.resolution)


def only_client(rows: WindowRows, client: str | None) -> WindowRows:
    """One client's rows, and only the windows holding some (None: every row)."""
    if client is None:
        return rows
    mine = np.array([name == client for name in rows.clients], dtype=bool)
    window_of_row = np.repeat(np.arange(len(rows.starts)), np.diff(rows.row_bounds))
    held, per_window = np.unique(window_of_row[mine], return_counts=True)
    bounds = np.zeros(len(held) + 1, dtype=np.int64)
    np.cumsum(per_window, out=bounds[1:])
    return WindowRows(rows.starts[held], rows.ends[held], bounds,
                      [client] * int(mine.sum()), rows.inbound[mine], rows.counts[mine],
                      rows.resolution)
