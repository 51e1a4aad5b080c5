"""The command lines' shared parts (capture, serve, view, excel...): the parser every command
uses, whose errors are one line, and the checks of values, each turning a text into a value or
raising argparse.ArgumentTypeError with the line to show."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from traffic_capture.errors import EXIT_USAGE, PROG
from traffic_capture.rules import SNAPLEN_MAX, SNAPLEN_MIN


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line that names the help, and exit 2 (not three
    lines of usage: the user reads the error first)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{PROG}: error: {message} (see {self.prog} --help)\n")
        sys.exit(EXIT_USAGE)

T = TypeVar("T", int, float)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'500M', '2G', '1.5GiB', '100000' -> bytes (powers of 1024); ValueError otherwise."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size; e.g. 500M, 2G")
    number, unit = match.groups()
    return int(float(number) * 1024 ** " KMGT".index(unit.upper() or " "))


def _number(convert: Callable[[str], T], what: str, fits: Callable[[T], bool], rule: str
            ) -> Callable[[str], T]:
    """A check: `convert` the text (else "'x' is not <what>"), then `fits` (else "must be
    <rule>, got x"). NaN fits no rule."""
    def check(text: str) -> T:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not fits(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value
    return check


seconds = _number(int, "a whole number of seconds", lambda v: v > 0, "at least 1 second")
positive_seconds = _number(float, "a number of seconds", lambda v: v > 0,
                           "more than 0 seconds")
seconds_or_zero = _number(float, "a number of seconds", lambda v: v >= 0,
                          "0 or more seconds")
count = _number(int, "a whole number", lambda v: v >= 0, "0 or more")


def limit(text: str) -> int | None:
    """A count where 0 means no limit (None)."""
    return count(text) or None
_megabytes = _number(float, "a number of megabytes", lambda v: v >= 0,
                     "0 (no rotation) or more")


def megabytes(text: str) -> int:
    """--packet-log-max-mb -> bytes (0: no rotation)."""
    return int(_megabytes(text) * 1024 * 1024)


def ports(text: str) -> frozenset[int]:
    ports = set()
    for part in text.replace(" ", "").split(","):
        if not part.isdigit() or not 0 < int(part) < 65536:
            raise argparse.ArgumentTypeError(
                f"{part!r} is not a TCP port (1-65535); give a list such as 80,443,8080")
        ports.add(int(part))
    return frozenset(ports)


def size(text: str) -> int:
    try:
        value = parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


snaplen = _number(int, "a whole number of bytes", lambda v: SNAPLEN_MIN <= v <= SNAPLEN_MAX,
                  f"{SNAPLEN_MIN} to {SNAPLEN_MAX} bytes (counting needs {SNAPLEN_MIN})")
