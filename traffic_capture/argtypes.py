"""Checks of command-line values, shared by every command (capture, serve, view...): each
turns a text into a value, or raises argparse.ArgumentTypeError with the line to show."""

from __future__ import annotations

import argparse
import re

from traffic_capture.rules import SNAPLEN_MAX, SNAPLEN_MIN

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'500M', '2G', '1.5GiB', '100000' -> bytes (powers of 1024); ValueError otherwise."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size; e.g. 500M, 2G")
    number, unit = match.groups()
    return int(float(number) * 1024 ** " KMGT".index(unit.upper() or " "))


def seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1 second, got {text}")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def ports(text: str) -> frozenset[int]:
    ports = set()
    for part in text.replace(" ", "").split(","):
        if not part.isdigit() or not 0 < int(part) < 65536:
            raise argparse.ArgumentTypeError(
                f"{part!r} is not a TCP port (1-65535); give a list such as 80,443,8080")
        ports.add(int(part))
    return frozenset(ports)


def megabytes(text: str) -> int:
    """--packet-log-max-mb -> bytes (0: no rotation)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of megabytes") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 (no rotation) or more, got {text}")
    return int(value * 1024 * 1024)


def count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def size(text: str) -> int:
    try:
        value = parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def seconds_or_zero(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text}")
    return value


def snaplen(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of bytes") from None
    if not SNAPLEN_MIN <= value <= SNAPLEN_MAX:
        raise argparse.ArgumentTypeError(
            f"must be {SNAPLEN_MIN} to {SNAPLEN_MAX} bytes (counting needs {SNAPLEN_MIN}), "
            f"got {text}")
    return value

