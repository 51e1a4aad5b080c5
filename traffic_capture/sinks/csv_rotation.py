"""Which file a window's rows go to, and which old files go: rotation by hour or day, the
Excel sheet's row limit, and the retention caps (--keep, --max-disk). Pure functions over
names, sizes and times; the CSV sink does the I/O.

The files of one output form a series beside --out: `traffic.csv`, then `traffic-2.csv`... past
Excel's row limit; with rotation `traffic-2026-11-29.csv` (daily) or `traffic-2026-11-29-13.csv`
(hourly), each with its header and its own `-2`, `-3` if it fills a sheet.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import NamedTuple

_STAMP = {"hourly": "%Y-%m-%d-%H", "daily": "%Y-%m-%d"}


def rotated_path(base: Path, rotate: str, window_start_s: int, utc: bool = False) -> Path:
    """The file of the window starting at `window_start_s`, by its start in the CSV's time."""
    if rotate == "none":
        return base
    moment = time.gmtime(window_start_s) if utc else time.localtime(window_start_s)
    return base.with_name(f"{base.stem}-{time.strftime(_STAMP[rotate], moment)}"
                          f"{base.suffix or '.csv'}")


def numbered(path: Path, number: int) -> Path:
    """The series' next file once `path` holds a sheet's worth of rows: path, path-2, path-3."""
    if number == 1:
        return path
    return path.with_name(f"{path.stem}-{number}{path.suffix or '.csv'}")


def series_pattern(base: Path) -> re.Pattern[str]:
    """The names of the files of base's series (not its .pending side files)."""
    return re.compile(re.escape(base.stem) + r"(-\d{4}-\d\d-\d\d(-\d\d)?)?(-\d+)?"
                      + re.escape(base.suffix or ".csv") + "$")


class SeriesFile(NamedTuple):
    path: Path
    size: int
    modified: float


def to_remove(files: list[SeriesFile], current: set[Path], keep: int | None,
              max_bytes: int | None) -> list[Path]:
    """The oldest files to delete so that at most `keep` files besides the current ones
    remain, and the series takes at most `max_bytes` in all. The current files are never
    removed: a cap the current file alone passes cannot be met, and is said by the caller."""
    old = sorted((f for f in files if f.path not in current),
                 key=lambda f: (f.modified, f.path.name))
    total = sum(f.size for f in files)
    removed: list[Path] = []
    for file in old:
        over_count = keep is not None and len(old) - len(removed) > keep
        over_size = max_bytes is not None and total > max_bytes
        if not (over_count or over_size):
            break
        removed.append(file.path)
        total -= file.size
    return removed
