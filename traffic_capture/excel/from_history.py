"""A workbook's rows from a store of several resolutions (a history, or a fleet's ClickHouse:
excel/from_fleet.py): the range asked, the rollup that fits it, and the note that says which
rows and which range the workbook shows.

The time unit of the bars comes first (`--group`, or for `auto` the finest that keeps the
chart under MAX_BARS bars over the range), then the resolution, with
queries.pick_resolution: the coarsest the history holds whose step is at most one bar and
which reaches back to the range's start. A 30-day dashboard is thus made of the hourly rows
(720 per client and direction), a quarter of an hour of the 5-second ones; never finer than
the bars need.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd

from traffic_capture.csvformat import local_time_text
from traffic_capture.errors import TrafficCaptureError, UsageError
from traffic_capture.excel import timegroups as tg
from traffic_capture.excel.timespan import When
from traffic_capture.queries import Coverage, Resolution, TimeRange, pick_resolution

# Without --from: the last week, in hour bars (168 of them; the 5-second rows are kept a week
# by default, but the week's dashboard needs only the hourly ones).
DEFAULT_SPAN_S = 7 * 86400
UNITS = ("5s", "minute", "hour", "day")  # finest first
UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


class HistoryRangeError(TrafficCaptureError):
    """A range the store holds no rows of; one line."""


class StoreOfRows(Protocol):
    """What a workbook asks of a store: what it holds, and how many windows of a range."""

    def resolutions(self) -> tuple[Resolution, ...]: ...

    def coverage(self, when: TimeRange, resolution: int) -> Coverage: ...


Frame = Callable[[TimeRange, int], pd.DataFrame]  # rows of a range at a resolution


@dataclass(frozen=True)
class Pick:
    """What a workbook is made of: the range, the resolution read, the unit of the bars."""

    when: TimeRange
    resolution: Resolution
    group: str  # a key of timegroups.GROUP_FIELDS
    regrouped: bool = False  # the unit asked for was finer than the rows held that far back


def unit_seconds(group: str, held: Sequence[Resolution]) -> int:
    """A unit's length; `5s` is a window of the finest rows."""
    return held[0].seconds if group == "5s" else UNIT_SECONDS[group]


def start_within(held: Sequence[Resolution], start_s: int, step_s: int) -> int:
    """The range's start, or, when it reaches before everything held (the default week of a
    young history), the first window the rows fine enough for `step_s` hold: a history begun
    at 13:27 starts its minute bars there, not at its first hour's 13:00."""
    starts = [r.first_start_s for r in held if r.first_start_s is not None]
    if not starts or start_s >= min(starts):
        return start_s
    fine = [r.first_start_s for r in held if r.first_start_s is not None and r.seconds <= step_s]
    return max(start_s, min(fine) if fine else min(starts))


def pick(held: Sequence[Resolution], start_s: int, end_s: int, group: str) -> Pick:
    """The unit, then the resolution (pick_resolution, one point per bar)."""
    for unit in UNITS if group == "auto" else (group,):
        step = unit_seconds(unit, held)
        start = start_within(held, start_s, step)
        bars = max(math.ceil((end_s - start) / step), 1)
        if bars <= tg.MAX_BARS:
            break
    when = TimeRange(start, end_s)
    resolution = pick_resolution(held, when, bars)
    if resolution.seconds <= step:
        return Pick(when, resolution, unit)
    coarser = next((u for u in UNITS if unit_seconds(u, held) >= resolution.seconds), "day")
    return Pick(when, resolution, coarser, regrouped=group != "auto")


def resolution_text(seconds: int) -> str:
    for size, name in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds % size == 0:
            return f"{seconds // size}-{name}"
    return f"{seconds}-second"


@dataclass(frozen=True)
class HistoryRows:
    """The rows read, the unit to group them by, what to tell the user."""

    frame: pd.DataFrame  # as excel.read.read_traffic gives a CSV's
    group: str
    note: str  # where the rows come from and the range they cover, one line
    warnings: tuple[str, ...] = ()


def read_history(path: Path, start: When | None, end: When | None, group: str,
                 utc: bool) -> HistoryRows:
    """The rows of the history at `path` for a workbook; one-line errors (HistoryError for
    the store itself, HistoryRangeError for a range without rows, UsageError for --from not
    before --to)."""
    from traffic_capture.history.reader import HistoryReader

    reader = HistoryReader(path)
    return read_store(reader, f"history {path}", start, end, group, utc,
                      lambda when, seconds: reader.rows_frame(when, seconds, utc))


def read_store(reader: StoreOfRows, shown: str, start: When | None, end: When | None,
               group: str, utc: bool, frame_of: Frame) -> HistoryRows:
    """The rows of a store (`shown` in messages and the note: "history PATH") for a workbook,
    read by `frame_of` at the resolution that fits the range."""
    held = reader.resolutions()
    ends = [r.last_end_s for r in held if r.last_end_s is not None]
    if not ends:
        raise HistoryRangeError(f"{shown}: holds no rows yet")
    newest = max(ends)
    end_s = end.epoch(newest, utc) if end is not None else newest
    start_s = start.epoch(newest, utc) if start is not None else end_s - DEFAULT_SPAN_S
    zone = "UTC" if utc else "local time"
    if start is not None and end is not None and start_s >= end_s:
        raise UsageError(f"--from {local_time_text(start_s, utc)} is not before --to "
                         f"{local_time_text(end_s, utc)} ({zone})")
    oldest = min(r.first_start_s for r in held if r.first_start_s is not None)
    holds = f"it holds {local_time_text(oldest, utc)} to {local_time_text(newest, utc)} ({zone})"
    if start_s >= min(end_s, newest) or end_s <= oldest:
        asked = (f"from {local_time_text(start_s, utc)}" if end is None else
                 f"before {local_time_text(end_s, utc)}" if start is None else
                 f"from {local_time_text(start_s, utc)} to {local_time_text(end_s, utc)}")
        raise HistoryRangeError(f"{shown}: no rows {asked}; {holds}")
    chosen = pick(held, start_s, min(end_s, newest), group)
    seconds = chosen.resolution.seconds
    covered = reader.coverage(chosen.when, seconds)
    if not covered.windows or covered.first_start_s is None or covered.last_end_s is None:
        raise HistoryRangeError(f"{shown}: no rows from "
                                f"{local_time_text(chosen.when.start_s, utc)} to "
                                f"{local_time_text(chosen.when.end_s, utc)}; {holds}")
    frame = frame_of(chosen.when, seconds)
    note = (f"{shown}, its {resolution_text(seconds)} rows: "
            f"{local_time_text(covered.first_start_s, utc)} to "
            f"{local_time_text(covered.last_end_s, utc)} {zone} ({covered.windows:,} windows)")
    warnings: tuple[str, ...] = ()
    if chosen.regrouped:
        warnings = (f"--group {group}: {shown} keeps {resolution_text(seconds)} rows only "
                    f"that far back; grouped per {tg.UNIT_NAMES[tg.GROUP_FIELDS[chosen.group]]}",)
    return HistoryRows(frame, chosen.group, note, warnings)
