"""The history on disk: Parquet parts named by what they hold, and the choice, from a folder
listing alone, of the parts that hold every row exactly once.

    PATH/traffic-history.v1                 what the folder is, and its format
    PATH/writer.lock                        held (an OS lock) by the one writer
    PATH/incoming/000000000042/             one flush, renamed into place whole
        5s.2026-03-01T13.1772370000-1772370060.parquet
        1m.2026-03-01T13.1772370000-1772370060.parquet
        1h.2026-03-01T13.1772370000-1772373600.parquet
        imported.<sha256>                   a CSV whose rows this flush holds (importer)
    PATH/5s/2026-03-01T13.000000000001-000000000120.1772370000-1772373600.parquet
    PATH/1m/2026-03-01.000000000001-000000002880.1772323200-1772409600.parquet
    PATH/imported/<sha256>                  CSVs imported whose flushes were compacted

A part holds the rows of one resolution (level) and one UTC period, from the flushes numbered
seq_lo..seq_hi, and its windows span first_start..last_end. A flush is one folder renamed into
place, so its levels appear together (the 1-minute sums never lack a 5-second row that is
there). A compacted part is written under a temporary name and renamed; it holds every row of
the parts it was made of, so it *covers* any part of its level whose period and flush numbers
lie within its own; readers skip covered parts, and the writer deletes them a while after (a
reader's listing is never older than that, so it sees one or the other). Flush numbers only
grow: a new flush's number is above every part on disk.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from traffic_capture.history.periods import KINDS, Period, parse_label, period_of
from traffic_capture.history.retention import UNITS, duration_text

FORMAT_VERSION = 1
MARKER_PREFIX = "traffic-history.v"
MARKER = f"{MARKER_PREFIX}{FORMAT_VERSION}"
LOCK = "writer.lock"
INCOMING = "incoming"
IMPORTED = "imported"
IMPORTED_PREFIX = "imported."  # a marker inside a flush folder
SUFFIX = ".parquet"
# Names starting with this are being written: never read, deleted by the next writer.
TEMPORARY = ".tmp-"
SEQ_DIGITS = 12

_STEP = r"(\d+[smhd])"
_SPAN = r"(\d+)-(\d+)"
_LABEL = r"(\d{4}-\d{2}(?:-\d{2}(?:T\d{2})?)?)"
_COMPACTED = re.compile(rf"^{_LABEL}\.(\d+)-(\d+)\.{_SPAN}\.parquet$")
_FLUSHED = re.compile(rf"^{_STEP}\.{_LABEL}\.{_SPAN}\.parquet$")
_SEQ = re.compile(r"^\d+$")
_LEVEL = re.compile(rf"^{_STEP}$")


@dataclass(frozen=True, order=True)
class Part:
    """One Parquet file of the history, as its name describes it."""

    level_s: int
    period: Period
    seq_lo: int
    seq_hi: int
    first_start_s: int
    last_end_s: int
    incoming: bool = False  # a flush's file, not yet compacted
    path: Path = field(default=Path(), compare=False)

    def covers(self, other: Part) -> bool:
        """Holds every row of `other` (and is not the same part)."""
        return (self.level_s == other.level_s and self.period.contains(other.period)
                and self.seq_lo <= other.seq_lo and other.seq_hi <= self.seq_hi
                and self != other)

    def overlaps(self, other: Part) -> bool:
        return (self.level_s == other.level_s and self.period.overlaps(other.period)
                and self.seq_lo <= other.seq_hi and other.seq_lo <= self.seq_hi)

    def holds_any_of(self, start_s: int, end_s: int) -> bool:
        """May hold windows overlapping [start_s, end_s)."""
        return self.first_start_s < end_s and start_s < self.last_end_s


def level_of(name: str) -> int | None:
    """A level folder's name (5s, 1m...) -> its seconds."""
    if _LEVEL.match(name) is None:
        return None
    return int(name[:-1]) * UNITS[name[-1]]


def flush_folder_name(seq: int) -> str:
    return f"{seq:0{SEQ_DIGITS}d}"


def flushed_name(level_s: int, period: Period, first_start_s: int, last_end_s: int) -> str:
    return f"{duration_text(level_s)}.{period.label}.{first_start_s}-{last_end_s}{SUFFIX}"


def compacted_path(root: Path, level_s: int, period: Period, seq_lo: int, seq_hi: int,
                   first_start_s: int, last_end_s: int) -> Path:
    return root / duration_text(level_s) / (
        f"{period.label}.{seq_lo:0{SEQ_DIGITS}d}-{seq_hi:0{SEQ_DIGITS}d}"
        f".{first_start_s}-{last_end_s}{SUFFIX}")


def parse_compacted(path: Path, level_s: int) -> Part | None:
    match = _COMPACTED.match(path.name)
    if match is None:
        return None
    label, lo, hi, first, last = match.groups()
    period = parse_label(label)
    if period is None:
        return None
    return Part(level_s, period, int(lo), int(hi), int(first), int(last), False, path)


def parse_flushed(path: Path, seq: int) -> Part | None:
    match = _FLUSHED.match(path.name)
    if match is None:
        return None
    step, label, first, last = match.groups()
    level_s, period = level_of(step), parse_label(label)
    if level_s is None or period is None:
        return None
    return Part(level_s, period, seq, seq, int(first), int(last), True, path)


def _names(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []  # a flush folder removed once all its parts were compacted


@dataclass(frozen=True)
class Listing:
    """What a listing of the store found: its parts, the levels it has folders for, and the
    CSVs imported (by content hash)."""

    parts: tuple[Part, ...]
    levels: tuple[int, ...]
    imported: frozenset[str]
    flush_folders: tuple[Path, ...]


def list_store(root: Path, level_s: int | None = None) -> Listing:
    """Every part of the store (of one level only, if given), from folder listings only (no
    file is opened). The flushes are listed before the compacted parts: a compaction renamed
    in after the first listing is seen by the second, and the parts it covers are deleted
    only a while later."""
    parts: list[Part] = []
    imported: set[str] = set()
    flush_folders = []
    for name in sorted(_names(root / INCOMING)):
        if _SEQ.match(name) is None:
            continue
        folder = root / INCOMING / name
        flush_folders.append(folder)
        for file_name in _names(folder):
            if file_name.startswith(IMPORTED_PREFIX):
                imported.add(file_name[len(IMPORTED_PREFIX):])
                continue
            part = parse_flushed(folder / file_name, int(name))
            if part is not None and level_s in (None, part.level_s):
                parts.append(part)
    levels = []
    for name in sorted(_names(root)):
        folder_level = level_of(name)
        if folder_level is None:
            continue
        levels.append(folder_level)
        if level_s not in (None, folder_level):
            continue
        for file_name in _names(root / name):
            part = parse_compacted(root / name / file_name, folder_level)
            if part is not None:
                parts.append(part)
    imported.update(_names(root / IMPORTED))
    levels = sorted(set(levels) | {part.level_s for part in parts})
    return Listing(tuple(parts), tuple(levels), frozenset(imported), tuple(flush_folders))


@dataclass(frozen=True)
class Choice:
    """The parts to read (every row once), the covered ones (each with a part covering it)
    and any pair that overlaps without one covering the other (never made by the writer; the
    first of the pair is read, and the pair is reported)."""

    chosen: tuple[Part, ...]
    covered: dict[Part, Part]
    conflicts: tuple[tuple[Part, Part], ...]

    def of_level(self, level_s: int) -> list[Part]:
        return [part for part in self.chosen if part.level_s == level_s]


def _widest_first(part: Part) -> tuple[int, int, bool, int, int]:
    return (-(part.period.end_s - part.period.start_s), -(part.seq_hi - part.seq_lo),
            part.incoming, part.seq_lo, part.first_start_s)


def choose(parts: Iterable[Part]) -> Choice:
    """The parts that hold every row of the store exactly once: the widest (compacted) parts
    win over those they cover. Pure, so that it can be tested on any listing.

    Periods are whole UTC hours, days and months, so two that overlap are one inside the
    other, and the parts taken before a part (widest first) can only overlap it through a
    period holding its own: those few are the only ones looked at."""
    taken: dict[tuple[int, Period], list[Part]] = {}
    covered: dict[Part, Part] = {}
    conflicts = []
    for part in sorted(set(parts), key=_widest_first):
        near = [other for kind in KINDS
                for other in taken.get((part.level_s, period_of(kind, part.period.start_s)), ())]
        cover = next((other for other in near if other.covers(part)), None)
        if cover is not None:
            covered[part] = cover
            continue
        clash = next((other for other in near if other.overlaps(part)), None)
        if clash is not None:
            conflicts.append((clash, part))
            continue
        taken.setdefault((part.level_s, part.period), []).append(part)
    chosen = sorted((part for group in taken.values() for part in group),
                    key=lambda part: (part.level_s, part.period.start_s, part.seq_lo))
    return Choice(tuple(chosen), covered, tuple(conflicts))


def next_seq(parts: Sequence[Part], flush_folders: Sequence[Path]) -> int:
    """A flush number above every one on disk."""
    highest = max((part.seq_hi for part in parts), default=0)
    folders = max((int(folder.name) for folder in flush_folders), default=0)
    return max(highest, folders) + 1
