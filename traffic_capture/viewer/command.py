"""`traffic-capture view --log PATH`: the viewer window following a packet log, as `tail -f`
would (no capture, so no privilege). Without --log, `traffic-capture view [options]` is a
capture run with --view (the command line turns it into one)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from pathlib import Path

from traffic_capture import argtypes
from traffic_capture.errors import EXIT_OK, EXIT_RUNTIME, PROG
from traffic_capture.viewer.model import Row, ViewModel

FIRST_READ_BYTES = 4 * 1024 * 1024  # of an existing log, only its end is shown at start
READ_BYTES = 1024 * 1024  # read per poll, so a fast-growing log never freezes the window


class LogFollower:
    """New complete lines of a packet log, across rotations (PATH renamed to PATH.1 and a new
    PATH started: the new file is read from its start)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("rb")
        self._identity = os.fstat(self._file.fileno())[1:3]  # (inode, device)
        size = os.fstat(self._file.fileno()).st_size
        self._partial = b""
        self.bad_lines = 0
        if size > FIRST_READ_BYTES:
            self._file.seek(size - FIRST_READ_BYTES)
            self._file.readline()  # the first line there is cut: skip it

    def close(self) -> None:
        self._file.close()

    def new_rows(self) -> list[Row]:
        data = self._file.read(READ_BYTES)
        if not data and self._rotated():
            self._reopen()
            data = self._file.read(READ_BYTES)
        data = self._partial + data
        complete, _, self._partial = data.rpartition(b"\n")
        rows = []
        for line in complete.splitlines():
            row = row_of_line(line)
            if row is None:
                self.bad_lines += 1
            else:
                rows.append(row)
        return rows

    def _rotated(self) -> bool:
        try:
            now = os.stat(self.path)
        except OSError:
            return False  # between the rename and the new file
        return (now.st_ino, now.st_dev) != self._identity or now.st_size < self._file.tell()

    def _reopen(self) -> None:
        self._file.close()
        self._file = self.path.open("rb")
        self._identity = os.fstat(self._file.fileno())[1:3]
        self._partial = b""


def row_of_line(line: bytes) -> Row | None:
    """A log line -> the window's row; None for a line that is not one (a foreign line)."""
    try:
        record = json.loads(line)
        ts = datetime.fromisoformat(record["ts"]).timestamp()
        return (ts, str(record["direction"]), str(record["client"]), str(record["class"]),
                int(record["ip_bytes"]), str(record.get("preview") or ""))
    except (ValueError, KeyError, TypeError):
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = argtypes.Parser(
        prog=f"{PROG} view",
        description="A window of the latest packets and the current window's clients, with "
                    "pause, a client filter and a Close button. With --log it follows a packet "
                    "log (no privilege needed); without it, it captures like the daemon with "
                    f"--view: '{PROG} view --server-ip ADDR [other capture options]'.")
    parser.add_argument("--log", type=Path, required=True, metavar="PATH",
                        help="the packet log to follow (written by --packet-log)")
    parser.add_argument("--window", type=argtypes.seconds, default=5, metavar="SECONDS",
                        help="length of the per-client window shown (default 5)")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from traffic_capture.viewer import window

    try:
        follower = LogFollower(args.log)
    except OSError as error:
        sys.stderr.write(f"{PROG} view: error: cannot read {args.log}: "
                         f"{error.strerror or error}\n")
        return EXIT_RUNTIME
    model = ViewModel(args.window)

    def feed(model: ViewModel) -> bool:
        rows = follower.new_rows()
        if rows:
            model.add(rows)
        return True

    try:
        window.run(model, feed)
    except window.NoDisplay as error:
        sys.stderr.write(f"{PROG} view: error: {error}\n")
        return EXIT_RUNTIME
    finally:
        follower.close()
    return EXIT_OK
