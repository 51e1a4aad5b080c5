"""The periods a history's parts are cut by: UTC hours, days and months.

A part holds the windows of one period, so that compaction can merge a period's parts into one
and retention can delete whole parts. Periods are UTC: epoch seconds have no summer time, so a
DST change neither merges nor splits a period (nor a window), whatever the machine's zone.
"""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass

HOUR, DAY, MONTH = "hour", "day", "month"
KINDS: tuple[str, ...] = (HOUR, DAY, MONTH)  # finest first
# The longest each kind can be, for choosing which kinds a resolution is compacted into.
NOMINAL_SECONDS = {HOUR: 3600, DAY: 86400, MONTH: 31 * 86400}
# A part holds at most about this many windows of its resolution: an hour of 5-s windows, a
# day of minutes, a month of hours. Larger parts would make each compaction rewrite too much.
MAX_WINDOWS_PER_PART = 1440

_LABEL = {HOUR: "%Y-%m-%dT%H", DAY: "%Y-%m-%d", MONTH: "%Y-%m"}
_LABEL_TEXT = re.compile(r"^(\d{4})-(\d{2})(?:-(\d{2})(?:T(\d{2}))?)?$")


@dataclass(frozen=True, order=True)
class Period:
    """One UTC hour, day or month, from start_s (included) to end_s (excluded)."""

    start_s: int
    end_s: int
    kind: str

    @property
    def label(self) -> str:
        """Its name in a part's file name: 2026-03-01T13, 2026-03-01 or 2026-03."""
        return time.strftime(_LABEL[self.kind], time.gmtime(self.start_s))

    def contains(self, other: Period) -> bool:
        return self.start_s <= other.start_s and other.end_s <= self.end_s

    def overlaps(self, other: Period) -> bool:
        return self.start_s < other.end_s and other.start_s < self.end_s


def period_of(kind: str, epoch_s: int) -> Period:
    """The period of that kind holding the second `epoch_s`."""
    if kind == HOUR:
        start = epoch_s // 3600 * 3600
        return Period(start, start + 3600, HOUR)
    if kind == DAY:
        start = epoch_s // 86400 * 86400
        return Period(start, start + 86400, DAY)
    if kind == MONTH:
        moment = time.gmtime(epoch_s)
        year, month = moment.tm_year, moment.tm_mon
        following = (year + month // 12, month % 12 + 1)
        return Period(calendar.timegm((year, month, 1, 0, 0, 0)),
                      calendar.timegm((*following, 1, 0, 0, 0)), MONTH)
    raise ValueError(f"no period kind {kind!r}")


def parse_label(text: str) -> Period | None:
    """A label back into its period; None for anything else."""
    match = _LABEL_TEXT.match(text)
    if match is None:
        return None
    year, month, day, hour = match.groups()
    kind = HOUR if hour is not None else DAY if day is not None else MONTH
    try:
        start = calendar.timegm((int(year), int(month), int(day or 1), int(hour or 0), 0, 0))
        if not 1 <= int(month) <= 12 or time.gmtime(start)[:4] != (
                int(year), int(month), int(day or 1), int(hour or 0)):
            return None
    except (ValueError, OverflowError):
        return None
    return period_of(kind, start)


def ladder(step_s: int) -> tuple[str, ...]:
    """The period kinds a resolution of `step_s` is cut by, finest first: the first is what a
    flush writes, each next one what closed parts are compacted into."""
    kinds = tuple(kind for kind in KINDS
                  if NOMINAL_SECONDS[kind] >= step_s
                  and NOMINAL_SECONDS[kind] // step_s <= MAX_WINDOWS_PER_PART)
    return kinds or (KINDS[-1],)
