"""--history-keep: which resolutions a history holds and how long each is kept.

`5s=7d,1m=90d,1h=forever` (the default) keeps the 5-second rows a week, their 1-minute sums 90
days and their 1-hour sums for ever. Pure: text in, a table out, one line for bad text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from traffic_capture.errors import UsageError

DEFAULT_KEEP = "5s=7d,1m=90d,1h=forever"
OPTION = "--history-keep"  # named in the messages; the fleet's `init` says --keep
FOREVER = "forever"
DAY_SECONDS = 86400
UNITS = {"s": 1, "m": 60, "h": 3600, "d": DAY_SECONDS}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$", re.IGNORECASE)


class KeepError(UsageError):
    """A --history-keep text that is not a table of resolutions and retentions."""


class Level(NamedTuple):
    """One resolution: windows of `seconds`, kept `keep_s` seconds (None: for ever)."""

    seconds: int
    keep_s: int | None

    @property
    def name(self) -> str:
        """Its short name, also its folder's: 5s, 1m, 1h."""
        return duration_text(self.seconds)


def duration_text(seconds: int) -> str:
    """Seconds in the largest unit that holds them exactly: 60 -> 1m, 90 -> 90s."""
    for unit, size in sorted(UNITS.items(), key=lambda item: -item[1]):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise ValueError(seconds)  # pragma: no cover - "s" always divides


def parse_duration(text: str, option: str = OPTION) -> int:
    match = _DURATION.match(text)
    if match is None or int(match.group(1)) == 0:
        raise KeepError(f"{option}: {text.strip()!r} is not a duration"
                        " (a whole number and s, m, h or d: 5s, 1m, 90d)")
    return int(match.group(1)) * UNITS[match.group(2).lower()]


def parse_keep(text: str, option: str = OPTION) -> tuple[Level, ...]:
    """'5s=7d,1m=90d,1h=forever' -> the levels, finest first. Each step divides a day (so
    windows never straddle a day, an hour or a month in UTC) and each coarser step is a multiple
    of the finer ones (so its windows are exact sums of theirs); a coarser one is kept at least
    as long (a shorter keep would be a mistake: its rows would go before their source)."""
    levels = []
    for item in text.split(","):
        step, sep, keep = item.partition("=")
        if not sep or not step.strip() or not keep.strip():
            raise KeepError(f"{option}: {item.strip()!r} is not STEP=KEEP"
                            f" (e.g. {DEFAULT_KEEP})")
        seconds = parse_duration(step, option)
        if DAY_SECONDS % seconds:
            raise KeepError(f"{option}: a step must divide a day, {step.strip()} does"
                            " not (e.g. 5s, 10s, 1m, 5m, 1h, 1d)")
        keep_s = None if keep.strip().lower() == FOREVER else parse_duration(keep, option)
        levels.append(Level(seconds, keep_s))
    return check_levels(levels, option)


def check_levels(given: Iterable[Level], option: str = OPTION) -> tuple[Level, ...]:
    levels = tuple(sorted(given, key=lambda level: level.seconds))
    for finer, coarser in zip(levels, levels[1:], strict=False):
        if finer.seconds == coarser.seconds:
            raise KeepError(f"{option}: {finer.name} is given twice")
        if coarser.seconds % finer.seconds:
            raise KeepError(f"{option}: {coarser.name} is not a multiple of"
                            f" {finer.name}: its windows would not be sums of {finer.name}'s")
        if kept(finer) > kept(coarser):
            raise KeepError(f"{option}: {coarser.name} is kept less long than"
                            f" {finer.name}; keep a coarser step at least as long")
    return levels


def kept(level: Level) -> float:
    return float("inf") if level.keep_s is None else level.keep_s


def keep_text(levels: Sequence[Level]) -> str:
    """The table back as --history-keep text."""
    return ",".join(f"{level.name}="
                    f"{FOREVER if level.keep_s is None else duration_text(level.keep_s)}"
                    for level in levels)


def check_window(levels: Sequence[Level], window_seconds: int) -> None:
    """Every step must be a whole number of capture windows (aligned on the epoch as the
    steps are), or a window's bytes would be split between two of its rows."""
    for level in levels:
        if level.seconds % window_seconds:
            raise KeepError(f"--history-keep: {level.name} is not a multiple of the"
                            f" {window_seconds}-second window")


def oldest_kept(level: Level, reference_s: int) -> int | None:
    """The start of what a level keeps, relative to `reference_s` (the newest window held,
    never past the clock: a capture file from last year keeps its fine rows, a clock gone
    wild a year ahead does not empty the store); None: everything."""
    return None if level.keep_s is None else reference_s - level.keep_s
