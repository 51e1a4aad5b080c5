"""The resolution a range is answered at (the read interface every store shares)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from traffic_capture.queries import Resolution, TimeRange, pick_resolution

DAY = 86400
NOW = 1_780_000_000 // 3600 * 3600
HELD = (Resolution(5, NOW - 7 * DAY, NOW), Resolution(60, NOW - 90 * DAY, NOW),
        Resolution(3600, NOW - 400 * DAY, NOW))


@pytest.mark.parametrize(("seconds", "expected"), [
    (3600, 5),  # an hour in 5-s windows is 720 points: enough
    (DAY, 60),  # a day: 1,440 one-minute points, 17,280 five-second ones: 1 min is coarsest
    (7 * DAY, 60),  # a week: 168 hourly points is under 200, so 1 min (10,080)
    (30 * DAY, 3600),
    (365 * DAY, 3600),
])
def test_the_coarsest_table_that_gives_enough_points(seconds: int, expected: int) -> None:
    when = TimeRange.last(seconds, NOW)
    target = seconds / 200
    picked = pick_resolution(HELD, when)
    # Akvorado's rule, spelled out: the coarsest step <= range / points that covers the start.
    fits = [r.seconds for r in HELD if r.seconds <= target and r.covers(when)]
    assert picked.seconds == (max(fits) if fits else 5) == expected


def test_a_range_older_than_the_fine_rows_takes_a_table_that_still_covers_it() -> None:
    # Ten days ago, one hour long: 5-s rows are gone (7 days), 1-min rows cover it.
    when = TimeRange(NOW - 10 * DAY, NOW - 10 * DAY + 3600)
    assert pick_resolution(HELD, when).seconds == 60
    # 100 days ago: only the hourly rows reach back that far.
    when = TimeRange(NOW - 100 * DAY, NOW - 100 * DAY + 3600)
    assert pick_resolution(HELD, when).seconds == 3600


def test_a_range_before_everything_takes_what_reaches_furthest_back() -> None:
    when = TimeRange(NOW - 1000 * DAY, NOW)
    assert pick_resolution(HELD, when).seconds == 3600
    only_fine = (Resolution(5, NOW - DAY, NOW), Resolution(60, None, None))
    assert pick_resolution(only_fine, when).seconds == 5


def test_a_range_before_everything_is_answered_as_the_part_held() -> None:
    """A store two days old asked for the last week: every resolution reaches as far back,
    and the two days are answered by the minute (2,880 points), not in 34,560 five-second
    windows (the finest among equals, before); an hour held, asked for a day: at 5 s."""
    young = (Resolution(5, NOW - 2 * DAY, NOW), Resolution(60, NOW - 2 * DAY, NOW),
             Resolution(3600, NOW - 2 * DAY, NOW))
    assert pick_resolution(young, TimeRange.last(7 * DAY, NOW)).seconds == 60
    assert pick_resolution(young, TimeRange.last(30 * DAY, NOW)).seconds == 60
    ten_days = (Resolution(5, NOW - 7 * DAY, NOW), Resolution(60, NOW - 10 * DAY, NOW),
                Resolution(3600, NOW - 10 * DAY, NOW))
    assert pick_resolution(ten_days, TimeRange.last(30 * DAY, NOW)).seconds == 3600
    an_hour = (Resolution(5, NOW - 3600, NOW), Resolution(60, NOW - 3600, NOW))
    assert pick_resolution(an_hour, TimeRange.last(DAY, NOW)).seconds == 5


def test_an_empty_store_answers_at_its_finest() -> None:
    empty = (Resolution(5), Resolution(60), Resolution(3600))
    assert pick_resolution(empty, TimeRange.last(DAY, NOW)).seconds == 5
    with pytest.raises(ValueError):
        pick_resolution((), TimeRange.last(DAY, NOW))


@given(st.integers(1, 1000 * DAY), st.integers(0, 1000 * DAY), st.integers(1, 2000))
def test_the_pick_is_held_and_covers_the_start_when_any_does(seconds: int, back: int,
                                                             points: int) -> None:
    when = TimeRange(NOW - back - seconds, NOW - back)
    picked = pick_resolution(HELD, when, points)
    assert picked in HELD
    if any(r.covers(when) for r in HELD):
        assert picked.covers(when)
        finer_fits = [r for r in HELD if r.covers(when) and r.seconds <= seconds / points]
        if finer_fits:
            assert picked.seconds == max(r.seconds for r in finer_fits)
