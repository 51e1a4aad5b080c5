"""The history's pure rules: --history-keep, UTC periods, part names, the choice of parts that
holds every row once (whatever merges, crashes and late rows did), and when merges are due."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traffic_capture.history.compaction import merges_due
from traffic_capture.history.layout import (
    Part,
    choose,
    compacted_path,
    flushed_name,
    level_of,
    parse_compacted,
    parse_flushed,
)
from traffic_capture.history.periods import DAY, HOUR, MONTH, Period, ladder, parse_label, period_of
from traffic_capture.history.retention import (
    DEFAULT_KEEP,
    KeepError,
    Level,
    check_window,
    keep_text,
    parse_keep,
)

H = 3600
D = 86400
T0 = 1_780_000_000 // D * D


def test_the_default_keep() -> None:
    assert parse_keep(DEFAULT_KEEP) == (Level(5, 7 * D), Level(60, 90 * D), Level(H, None))
    assert keep_text(parse_keep(DEFAULT_KEEP)) == DEFAULT_KEEP
    assert parse_keep(" 1h = forever , 5s=2h ") == (Level(5, 2 * H), Level(H, None))
    assert [level.name for level in parse_keep("10s=1d,5m=30d,1d=forever")] == [
        "10s", "5m", "1d"]


@pytest.mark.parametrize(("text", "says"), [
    ("", "is not STEP=KEEP"),
    ("5s", "is not STEP=KEEP"),
    ("5s=", "is not STEP=KEEP"),
    ("5x=7d", "'5x' is not a duration"),
    ("0s=7d", "'0s' is not a duration"),
    ("5s=7 days", "'7 days' is not a duration"),
    ("7s=7d", "must divide a day"),
    ("5s=7d,5s=8d", "5s is given twice"),
    ("10s=7d,15s=8d", "15s is not a multiple of 10s"),
    ("5s=7d,1m=1d", "1m is kept less long than 5s"),
    ("5s=forever,1h=90d", "1h is kept less long than 5s"),
])
def test_bad_keep_texts_get_one_line(text: str, says: str) -> None:
    with pytest.raises(KeepError) as error:
        parse_keep(text)
    assert says in str(error.value) and "\n" not in str(error.value)
    assert error.value.exit_code == 2


def test_every_step_is_a_whole_number_of_windows() -> None:
    check_window(parse_keep(DEFAULT_KEEP), 5)
    check_window(parse_keep("10s=1d,1h=forever"), 10)
    with pytest.raises(KeepError, match="5s is not a multiple of the 10-second window"):
        check_window(parse_keep(DEFAULT_KEEP), 10)


def test_period_labels_and_bounds() -> None:
    hour = period_of(HOUR, T0 + 13 * H + 59)
    assert (hour.start_s, hour.end_s, hour.label) == (T0 + 13 * H, T0 + 14 * H,
                                                      time.strftime("%Y-%m-%dT13",
                                                                    time.gmtime(T0)))
    february = period_of(MONTH, 1_772_000_000)  # 2026-02-25
    assert february.label == "2026-02" and february.end_s - february.start_s == 28 * D
    for period in (hour, period_of(DAY, T0), february, period_of(MONTH, 1_704_067_200)):
        assert parse_label(period.label) == period
    assert parse_label("2026-02-30") is None and parse_label("2026-13") is None
    assert parse_label("tmp") is None
    assert ladder(5) == (HOUR,) and ladder(60) == (HOUR, DAY)
    assert ladder(H) == (HOUR, DAY, MONTH) and ladder(D) == (DAY, MONTH)


@pytest.fixture(params=["Europe/Berlin", "America/Sao_Paulo"])
def zone(request: pytest.FixtureRequest) -> Iterator[str]:
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is POSIX")
    before = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    yield request.param
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


# Summer time changes: Berlin 2026-03-29 01:00 UTC (forward) and 2026-10-25 01:00 UTC (back);
# Sao Paulo had its last one on 2019-02-17 02:00 UTC (back).
CHANGES = {"Europe/Berlin": (1_774_746_000, 1_792_890_000),
           "America/Sao_Paulo": (1_550_368_800,)}


def test_a_dst_change_neither_merges_nor_splits_a_period(zone: str) -> None:
    for change in CHANGES[zone]:
        local_offsets = {time.localtime(t).tm_gmtoff for t in (change - H, change + H)}
        assert len(local_offsets) == 2  # the machine's clock really changes there
        for t in range(change - 3 * H, change + 3 * H, 5):
            hour = period_of(HOUR, t)
            assert hour.end_s - hour.start_s == H and hour.start_s % H == 0
            assert parse_label(hour.label) == hour


def test_part_names_round_trip(tmp_path: Path) -> None:
    hour = period_of(HOUR, T0)
    path = compacted_path(tmp_path, 60, hour, 3, 17, T0 + 60, T0 + H)
    assert path.parent.name == "1m" and level_of("1m") == 60 and level_of("x") is None
    assert parse_compacted(path, 60) == Part(60, hour, 3, 17, T0 + 60, T0 + H, False, path)
    flushed = tmp_path / "000000000009" / flushed_name(5, hour, T0, T0 + 25)
    assert parse_flushed(flushed, 9) == Part(5, hour, 9, 9, T0, T0 + 25, True, flushed)
    assert parse_flushed(tmp_path / ".tmp-1.parquet", 9) is None
    assert parse_compacted(tmp_path / "2026-01-01.1-2.3-4.parquet.tmp", 60) is None


# -- The choice of parts: a model of the writer (flushes, merges, crashes) over row ids.

LEVELS = {5: ladder(5), 60: ladder(60), H: ladder(H)}


def _flush(seq: int, hours: list[int], rows: dict[Part, frozenset[int]],
           next_row: list[int]) -> None:
    for level in LEVELS:
        for hour in sorted(set(hours)):
            period = period_of(HOUR, T0 + hour * H)
            part = Part(level, period, seq, seq, period.start_s, period.end_s, True)
            rows[part] = frozenset(range(next_row[0], next_row[0] + 3))
            next_row[0] += 3


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(0, 60), min_size=1, max_size=3),
                          st.integers(0, 72), st.booleans(), st.integers(0, 2)),
                min_size=1, max_size=40))
def test_the_choice_holds_every_row_once(steps: list[tuple[list[int], int, bool, int]]
                                         ) -> None:
    """Flush rows into random hours (late rows: any hour, any time), merge what is due at a
    random newest time, sometimes stop before deleting what a merge covered (a crash): the
    chosen parts of each level always hold each row flushed exactly once, and no two parts
    overlap without one covering the other."""
    rows: dict[Part, frozenset[int]] = {}
    flushed: dict[int, set[int]] = {level: set() for level in LEVELS}
    next_row = [0]
    for seq, (hours, newest_hour, delete, merges) in enumerate(steps, start=1):
        before = set(rows)
        _flush(seq, hours, rows, next_row)
        for part in set(rows) - before:
            flushed[part.level_s] |= rows[part]
        for _ in range(merges):
            choice = choose(rows)
            due = merges_due(choice.chosen, LEVELS, T0 + newest_hour * H, grace_s=0,
                             merge_flushes=2)
            if not due:
                break
            merge = due[0]
            merged = Part(merge.level_s, merge.period, merge.seq_lo, merge.seq_hi,
                          merge.first_start_s, merge.last_end_s)
            assert merged not in rows
            rows[merged] = frozenset().union(*(rows[part] for part in merge.parts))
            if delete:
                for part in merge.parts:
                    del rows[part]
        choice = choose(rows)
        assert not choice.conflicts
        for level in LEVELS:
            seen = [row for part in choice.of_level(level) for row in rows[part]]
            assert len(seen) == len(set(seen))  # never twice
            assert set(seen) == flushed[level]  # never missed
        for part, cover in choice.covered.items():
            assert rows[part] <= rows[cover]


def test_merges_due_close_periods_and_bound_the_open_one() -> None:
    hour = period_of(HOUR, T0)
    flushes = [Part(5, hour, seq, seq, T0, T0 + H, True) for seq in range(1, 5)]
    # Open hour: merged once there are merge_flushes flushes.
    assert merges_due(flushes[:3], LEVELS, T0 + H - 5, merge_flushes=4) == []
    (merge,) = merges_due(flushes, LEVELS, T0 + H - 5, merge_flushes=4)
    assert (merge.seq_lo, merge.seq_hi, merge.period) == (1, 4, hour)
    # Closed (after the grace time): even one flush moves into a compacted part.
    assert merges_due(flushes[:1], LEVELS, T0 + H + 299, grace_s=300) == []
    assert len(merges_due(flushes[:1], LEVELS, T0 + H + 300, grace_s=300)) == 1
    # A closed day of minutes is merged whole, hours and all, before its hours alone.
    hours = [Part(60, period_of(HOUR, T0 + h * H), h, h, T0 + h * H, T0 + h * H + H)
             for h in range(24)]
    due = merges_due(hours, LEVELS, T0 + D + H)
    assert due[0].period == Period(T0, T0 + D, DAY) and len(due[0].parts) == 24
    # 5-second rows are never merged past an hour.
    fives = [Part(5, period_of(HOUR, T0 + h * H), h, h, T0 + h * H, T0 + h * H + H)
             for h in range(24)]
    assert merges_due(fives, LEVELS, T0 + 40 * D) == []
