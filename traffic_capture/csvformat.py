"""traffic.csv's contract: columns, time format, header, delimiters and their detection.

The one place both sides of the file meet: the CSV sink writes with it, the Excel commands and
the web's `serve` read with it, so a delimiter the daemon writes is always one they read.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterable
from typing import NamedTuple

from traffic_capture.errors import TrafficCaptureError
from traffic_capture.rules import CLASSES

# The Excel dashboard, the report and users' own sheets read these names.
COLUMNS: tuple[str, ...] = (
    "window_start", "window_end", "client_ip", "direction", "total_bytes",
    *(f"{name}_bytes" for name in CLASSES),
)
BYTE_COLUMNS: tuple[str, ...] = COLUMNS[4:]

# Local time, no time zone: what Excel parses as a date-time in every locale.
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

# What --delimiter accepts -> the character written. Values contain '.', ':', '-' and ' '
# (IPv6, dates), so those can never separate fields.
DELIMITER_NAMES: dict[str, str] = {",": ",", ";": ";", "tab": "\t", "\\t": "\t", "\t": "\t",
                                   "|": "|"}
# Every character the daemon may write, in the order readers try them.
DELIMITERS: tuple[str, ...] = tuple(dict.fromkeys(DELIMITER_NAMES.values()))


class Row(NamedTuple):
    """One CSV row; times are epoch seconds, written in local time."""

    window_start: int
    window_end: int
    client_ip: str
    direction: str
    total_bytes: int
    http_bytes: int
    ftp_bytes: int
    tcp_bytes: int
    udp_bytes: int
    other_bytes: int


class NotTrafficCsv(TrafficCaptureError):
    """A file whose header is not the contract's, in any delimiter the daemon writes."""


def header_line(delimiter: str) -> str:
    return delimiter.join(COLUMNS) + "\n"


def detect_delimiter(header: str) -> str:
    """The delimiter that splits a header line into exactly the contract's columns."""
    line = header.lstrip("\ufeff").strip("\r\n")
    for delimiter in DELIMITERS:
        if tuple(part.strip() for part in line.split(delimiter)) == COLUMNS:
            return delimiter
    shown = line if len(line) <= 120 else line[:117] + "..."
    raise NotTrafficCsv(
        f"not a traffic-capture CSV: header is {shown!r}, expected {','.join(COLUMNS)!r}"
        " (with ',', ';', tab or '|')"
    )


def holds_binary(line: str) -> bool:
    """Whether a line read as UTF-8 (bad bytes replaced) holds what no line of the CSV does:
    bytes that are not text, or control characters. A capture file given as the CSV does."""
    return any(c == "\ufffd" or (c < " " and c not in "\t\r\n") for c in line)


def local_time_text(epoch_seconds: int, utc: bool = False) -> str:
    """Local time (TZ honoured), or UTC with --utc, without zone: the form every Excel locale
    reads as a date-time."""
    moment = time.gmtime(epoch_seconds) if utc else time.localtime(epoch_seconds)
    return time.strftime(TIME_FORMAT, moment)


def epoch_of(text: str, utc: bool = False) -> int:
    """A window time as the CSV writes it -> epoch seconds; ValueError for anything else.
    (Local times in the autumn's repeated hour are ambiguous: the reason for --utc.)"""
    moment = time.strptime(text, TIME_FORMAT)
    return calendar.timegm(moment) if utc else int(time.mktime(moment))


def row_template(start: str, end: str, delimiter: str) -> str:
    """One row's text with the window's times filled in and %-fields for the rest: one
    C-level % per row formats ints a third faster than str() and join. No quoting is ever
    needed: fields are addresses, words and numbers."""
    start, end, delimiter = (text.replace("%", "%%") for text in (start, end, delimiter))
    return delimiter.join((start, end, "%s", "%s", *("%d",) * (len(COLUMNS) - 4))) + "\n"


def format_rows(rows: Iterable[Row], delimiter: str, utc: bool = False) -> str:
    """CSV text of rows."""
    templates: dict[tuple[int, int], str] = {}
    lines = []
    for row in rows:
        template = templates.get(row[:2])
        if template is None:
            template = templates[row[:2]] = row_template(
                local_time_text(row.window_start, utc), local_time_text(row.window_end, utc),
                delimiter)
        lines.append(template % row[2:])
    return "".join(lines)
