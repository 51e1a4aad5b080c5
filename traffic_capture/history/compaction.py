"""When the writer merges parts, and which: pure decisions over a listing.

A flush writes small parts often (see writer.FLUSH_SECONDS); left alone, a month of them would
be thousands of files for every query to open. So:
- a closed period (ended GRACE_S before the newest window, so that late rows are in) is
  merged into one part per level, at each kind of its level's ladder (periods.ladder: hours,
  then days or months for the coarser resolutions);
- in the open period, every MERGE_FLUSHES flushes' parts are merged into one, so that a
  query over today never opens more than a few dozen files.
Each merge reads the parts with DuckDB and writes one part whose name covers theirs
(layout.Part.covers); the writer deletes the covered ones a while later.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from traffic_capture.history.layout import Part
from traffic_capture.history.periods import Period, period_of

# Late rows (a window closed again by late packets) come seconds after their window; an hour is
# compacted this long after its end, so that it is rewritten rarely. Later rows still count: they
# make a new flush part, merged in by the next compaction of that period.
GRACE_S = 300
# In the open period, merge the flushes' parts once there are this many (about 5 minutes of
# 30-second flushes): reads of today open at most ~12 merged parts per hour and level.
MERGE_FLUSHES = 10


@dataclass(frozen=True)
class Merge:
    """Parts of one level and period to merge into one."""

    level_s: int
    period: Period
    parts: tuple[Part, ...]

    @property
    def seq_lo(self) -> int:
        return min(part.seq_lo for part in self.parts)

    @property
    def seq_hi(self) -> int:
        return max(part.seq_hi for part in self.parts)

    @property
    def first_start_s(self) -> int:
        return min(part.first_start_s for part in self.parts)

    @property
    def last_end_s(self) -> int:
        return max(part.last_end_s for part in self.parts)


def merges_due(chosen: Sequence[Part], ladders: Mapping[int, Sequence[str]],
               newest_end_s: int, grace_s: int = GRACE_S,
               merge_flushes: int = MERGE_FLUSHES) -> list[Merge]:
    """The merges due among the chosen parts (layout.choose), coarsest periods first: a
    closed day is merged whole, which also takes its hours. `ladders` gives each level's
    period kinds, finest first; a level without one is left alone."""
    due: list[Merge] = []
    by_level: dict[int, list[Part]] = defaultdict(list)
    for part in chosen:
        by_level[part.level_s].append(part)
    for level_s, parts in sorted(by_level.items()):
        kinds = ladders.get(level_s)
        if not kinds:
            continue
        for rank in range(len(kinds) - 1, -1, -1):
            kind = kinds[rank]
            finer = set(kinds[:rank])
            groups: dict[Period, list[Part]] = defaultdict(list)
            for part in parts:
                period = period_of(kind, part.period.start_s)
                if period.contains(part.period):
                    groups[period].append(part)
            for period, members in sorted(groups.items()):
                closed = period.end_s + grace_s <= newest_end_s
                if closed:
                    if (len(members) > 1 or members[0].incoming
                            or members[0].period.kind in finer):
                        due.append(Merge(level_s, period, tuple(members)))
                elif rank == 0:
                    flushed = [part for part in members if part.incoming]
                    if len(flushed) >= merge_flushes:
                        due.append(Merge(level_s, period, tuple(flushed)))
    due.sort(key=lambda merge: (-(merge.period.end_s - merge.period.start_s),
                                merge.period.start_s, merge.level_s))
    return due
