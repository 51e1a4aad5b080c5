"""--from and --to: the times a sysadmin types, made into the range a workbook shows.

A time is a date (`2026-11-01`: its midnight), a date and time (`2026-11-01 13:00`, seconds
optional, `T` for the space allowed), or a span back from the newest window held (`-7d`,
`-24h`, `-30m`, `-90s`, `-2w`). Dates and times are wall-clock times, local (TZ honoured) or
UTC; spans count back from the newest window held, as the web's "last hour" does, so that a
store or a CSV that stopped last week answers like a live one.
"""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

SPAN_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
WALL_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")
EXAMPLES = "2026-11-01, '2026-11-01 13:00' or -7d (also -24h, -30m, -90s, -2w)"


@dataclass(frozen=True)
class When:
    """A --from or --to: a wall-clock time, or seconds back from the newest window held."""

    wall: datetime | None = None
    back_s: int | None = None

    def epoch(self, newest_end_s: int, utc: bool) -> int:
        """Epoch seconds, the wall time read as local time (or UTC)."""
        if self.wall is None:
            return newest_end_s - int(self.back_s or 0)
        moment = self.wall.timetuple()
        return calendar.timegm(moment) if utc else int(time.mktime(moment))

    def as_written(self, newest_end: datetime) -> datetime:
        """A wall time in the CSV's own terms (its times as written, local or UTC)."""
        if self.wall is None:
            return newest_end - timedelta(seconds=int(self.back_s or 0))
        return self.wall


def parse_when(text: str) -> When:
    """A --from/--to value; ValueError with one line for anything else."""
    value = text.strip()
    span = re.fullmatch(r"-\s*(\d+)\s*([smhdw])", value)
    if span:
        return When(back_s=int(span.group(1)) * SPAN_UNITS[span.group(2)])
    for form in WALL_FORMATS:
        try:
            return When(wall=datetime.strptime(value.replace("T", " ", 1), form))
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a time: give {EXAMPLES}")
