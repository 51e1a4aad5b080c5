"""The range an API call asks about: `seconds=S` (the last S seconds, counted back from the
newest window held), or `from` and `to` (epoch seconds, or ISO 8601 date-times). Pure: text
in, a `queries.TimeRange` out, or a ValueError whose message the API sends back (422).

A date-time without a zone is the server's local time (the TZ variable honoured, as the CSV's
times are), or UTC when the run has --utc: the times a user reads in the CSV mean the same
here. A `+` in an address's query string arrives as a space unless encoded (%2B), so
`2026-03-01T10:00:00 01:00` is read as `+01:00`.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone

from traffic_capture.queries import TimeRange

# The last second a date-time can name (9999-12-31 23:59:59 UTC): further is a typo.
LATEST_S = 253_402_300_799
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
# A zone's "+HH:MM" whose "+" a query string turned into a space.
_SPACED_ZONE = re.compile(r"(T\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?) (\d{2}(:?\d{2})?)$")


def parse_time(text: str, utc: bool = False, name: str = "from", end: bool = False) -> int:
    """Epoch seconds of `text`: a number of seconds since 1970 (a fraction is rounded out to
    whole seconds: down for a start, up for an `end`), or an ISO 8601 date or date-time."""
    value = text.strip()
    if not value:
        raise ValueError(f"{name} is empty: give epoch seconds or an ISO 8601 date-time")
    if _NUMBER.match(value):
        number = float(value)
        seconds = (math.ceil(number) if end else math.floor(number)) if math.isfinite(
            number) else LATEST_S + 1
    else:
        seconds = _iso_seconds(value, utc, name)
    if not 0 <= seconds <= LATEST_S:
        raise ValueError(f"{name}={_shown(text)} is outside 1970-01-01 to 9999-12-31")
    return seconds


def _shown(text: str) -> str:
    """The value as the message quotes it: a pasted page of text is cut."""
    value = text.strip()
    return repr(value if len(value) <= 40 else value[:40] + "...")


def _iso_seconds(value: str, utc: bool, name: str) -> int:
    if value[-1] in "Zz":
        value = value[:-1] + "+00:00"
    value = _SPACED_ZONE.sub(r"\1+\5", value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name}={_shown(value)} is neither epoch seconds nor an ISO 8601 "
                         "date-time (2026-03-01T10:00, 2026-03-01T10:00:00+01:00, "
                         "2026-03-01)") from None
    if moment.tzinfo is None and utc:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return math.floor(moment.timestamp())  # naive: local time, as the CSV's times
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"{name}={_shown(value)} is outside 1970-01-01 to 9999-12-31") from None


def asked_range(newest_end_s: int, seconds: int, start: str | None = None,
                end: str | None = None, utc: bool = False) -> TimeRange:
    """The range of a call: [from, to) when `from` is given (`seconds` then has no say), else
    the `seconds` before `to`; `to` defaults to the end of the newest window held."""
    end_s = newest_end_s if end is None else parse_time(end, utc, "to", end=True)
    if start is None:
        return TimeRange(end_s - seconds, end_s)
    start_s = parse_time(start, utc, "from")
    if start_s >= end_s:
        to_text = "the newest window held" if end is None else "to"
        raise ValueError(f"from must be before {to_text} (from={start_s}, to={end_s}, "
                         "epoch seconds)")
    return TimeRange(start_s, end_s)
