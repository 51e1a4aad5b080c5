"""`traffic-capture serve --csv traffic.csv --web [HOST:]PORT`: the dashboard of a CSV alone.

No capture and no privilege: the CSV's recent history is loaded, then what the daemon appends
is followed (through renames and rotations). Ctrl+C or SIGTERM stops it (exit 0).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

from traffic_capture import argtypes
from traffic_capture.errors import EXIT_OK, EXIT_USAGE, PROG, TrafficCaptureError, UsageError
from traffic_capture.rules import DEFAULT_OUT, DEFAULT_WINDOW_SECONDS
from traffic_capture.stop_signals import handle_signals

POLL_SECONDS = 1.0


def build_parser() -> argparse.ArgumentParser:
    from traffic_capture.web import add_web_options

    parser = argtypes.Parser(prog=f"{PROG} serve",
                     description="Serve the web dashboard, JSON API and event stream of a "
                                 "traffic-capture CSV, following what the daemon appends to it "
                                 "(no capture, no privilege).")
    parser.add_argument("--csv", type=Path, default=Path(DEFAULT_OUT), metavar="PATH",
                        help=f"the CSV the daemon writes (default {DEFAULT_OUT}); it may not "
                             "exist yet")
    add_web_options(parser.add_argument)
    parser.add_argument("--quiet", action="store_true", help="no start-up message")
    parser.add_argument("--utc", action="store_true",
                        help="the CSV's times are UTC (the daemon ran with --utc)")
    return parser


def main(argv: list[str]) -> int:
    from traffic_capture.rules import WEB_DEFAULT_HOST
    from traffic_capture.web import check_exposure, web_token

    args = build_parser().parse_args(argv)
    host, port = args.web or (WEB_DEFAULT_HOST, 8000)
    try:
        token = web_token(args)
        check_exposure(host, token, False)
        return _serve(args.csv, host, port, token, args.web_history, args.quiet, args.utc)
    except TrafficCaptureError as error:
        prefix = f"{PROG}: error: "
        sys.stderr.write(f"{prefix}{error}\n")
        return EXIT_USAGE if isinstance(error, UsageError) else error.exit_code


def _serve(path: Path, host: str, port: int, token: str | None, history: int,
           quiet: bool, utc: bool = False) -> int:
    from traffic_capture.web import require_web

    require_web()
    from traffic_capture.web.api import WebApp
    from traffic_capture.web.csv_follow import CsvFollower
    from traffic_capture.web.http_server import WebServer
    from traffic_capture.web.memory_store import MemoryStore

    follower = CsvFollower(path, utc)
    rows = follower.poll(history)
    window = rows[-1].window_end - rows[-1].window_start if rows else DEFAULT_WINDOW_SECONDS
    store = MemoryStore(max(window, 1), history)
    store.load_rows(rows)
    started = time.time()

    def status() -> dict[str, Any]:
        return {"mode": "serve", "live": False, "source": str(path), "csv": str(path),
                "started": int(started), "uptime_seconds": round(time.time() - started, 1),
                "rows_read": follower.rows_read, "lines_skipped": follower.skipped,
                "file_reopened": follower.reopened, "servers": None, "packets_seen": None,
                "packets_counted": None, "kernel_drops": None, "rows_written": None,
                "rows_pending": None}

    stop = threading.Event()
    restore = handle_signals(stop.set)
    server = WebServer(WebApp(store, status, token), host, port)
    try:
        server.start()
        if not quiet:
            sys.stderr.write(f"{PROG}: serving {path} at {server.url}"
                             + (" (token required)" if token else "") + "; Ctrl+C to stop\n")
            sys.stderr.flush()
        while not stop.wait(POLL_SECONDS):
            try:
                new = follower.poll()
            except TrafficCaptureError as error:  # a file replaced by a foreign one
                sys.stderr.write(f"{PROG}: warning: {error}\n")
                continue
            if new:
                store.load_rows(new)
    finally:
        server.stop()
        follower.close()
        restore()
    return EXIT_OK
