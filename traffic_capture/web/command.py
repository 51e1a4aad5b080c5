"""`traffic-capture serve --csv traffic.csv --web [HOST:]PORT`: the dashboard of a CSV alone;
`serve --history PATH`: of a history store (any range, months back), with a CSV or without.

No capture and no privilege: the CSV's recent history is loaded, then what the daemon appends
is followed (through renames and rotations); without a CSV, the history's newest windows are
followed the same way. With a history, the answers over a range come from the memory for what
it holds and from the history for the rest (web/tiered.py). Ctrl+C or SIGTERM stops it
(exit 0).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from traffic_capture import argtypes
from traffic_capture.errors import EXIT_OK, EXIT_USAGE, PROG, TrafficCaptureError, UsageError
from traffic_capture.rules import DEFAULT_OUT, DEFAULT_WINDOW_SECONDS
from traffic_capture.stop_signals import handle_signals

if TYPE_CHECKING:
    from traffic_capture.queries import Reader

POLL_SECONDS = 1.0
# The history's newest windows are looked for this often (a daemon flushes every 30 s).
HISTORY_POLL_SECONDS = 5.0


def build_parser() -> argparse.ArgumentParser:
    from traffic_capture.web import add_web_options

    parser = argtypes.Parser(prog=f"{PROG} serve",
                     description="Serve the web dashboard, JSON API and event stream of a "
                                 "traffic-capture CSV, following what the daemon appends to it, "
                                 "or of a history store (no capture, no privilege).")
    parser.add_argument("--csv", type=Path, default=None, metavar="PATH",
                        help=f"the CSV the daemon writes (default {DEFAULT_OUT}, unless "
                             "--history is given alone); it may not exist yet")
    parser.add_argument("--history", type=Path, default=None, metavar="PATH",
                        help="also answer any range from the history store at PATH (a "
                             "daemon's --history, or 'history import'; the 'history' extra), "
                             "read while it is written; it may not exist yet. With --csv, "
                             "the CSV's recent rows are in memory and the history has the "
                             "rest")
    add_web_options(parser.add_argument)
    parser.add_argument("--quiet", action="store_true", help="no start-up message")
    parser.add_argument("--utc", action="store_true",
                        help="the CSV's times are UTC (the daemon ran with --utc); so is a "
                             "date-time without a zone in the API's from/to")
    return parser


def main(argv: list[str]) -> int:
    from traffic_capture.rules import WEB_DEFAULT_HOST
    from traffic_capture.web import check_exposure, web_token

    args = build_parser().parse_args(argv)
    host, port = args.web or (WEB_DEFAULT_HOST, 8000)
    try:
        token = web_token(args)
        check_exposure(host, token, False)
        csv = args.csv if args.csv is not None or args.history is not None else Path(DEFAULT_OUT)
        return _serve(csv, host, port, token, args.web_history, args.quiet, args.utc,
                      args.history)
    except TrafficCaptureError as error:
        prefix = f"{PROG}: error: "
        sys.stderr.write(f"{prefix}{error}\n")
        return EXIT_USAGE if isinstance(error, UsageError) else error.exit_code


def _serve(path: Path | None, host: str, port: int, token: str | None, history: int,
           quiet: bool, utc: bool = False, store_path: Path | None = None) -> int:
    from traffic_capture.web import require_web

    require_web()
    from traffic_capture.web.api import WebApp
    from traffic_capture.web.csv_follow import CsvFollower
    from traffic_capture.web.http_server import WebServer
    from traffic_capture.web.memory_store import MemoryStore
    from traffic_capture.web.store_follow import StoreFollower
    from traffic_capture.web.stored_history import StoredHistory
    from traffic_capture.web.tiered import TieredReader

    stored = None
    if store_path is not None:
        stored = StoredHistory(store_path)
        stored.check()
    follower = CsvFollower(path, utc) if path is not None else None
    rows = follower.poll(history) if follower is not None else []
    window = rows[-1].window_end - rows[-1].window_start if rows else _finest(stored)
    store = MemoryStore(max(window, 1), history)
    store.load_rows(rows)
    history_follower = (StoreFollower(stored, store.window_seconds)
                        if follower is None and stored is not None else None)
    reader: Reader = store if stored is None else TieredReader(store, stored)
    started = time.time()

    def status() -> dict[str, Any]:
        source = path if path is not None else store_path
        return {"mode": "serve", "live": False, "source": str(source),
                "csv": None if path is None else str(path),
                "started": int(started), "uptime_seconds": round(time.time() - started, 1),
                "rows_read": follower.rows_read if follower else None,
                "lines_skipped": follower.skipped if follower else None,
                "file_reopened": follower.reopened if follower else None,
                "servers": None, "packets_seen": None,
                "packets_counted": None, "kernel_drops": None, "rows_written": None,
                "rows_pending": None,
                "history_store": None if stored is None else stored.summary()}

    def follow_history() -> None:
        assert history_follower is not None
        for window in history_follower.poll(history):
            store.add_window(window.start_s, window.end_s, window.clients, window.inbound,
                             window.counts)

    stop = threading.Event()
    restore = handle_signals(stop.set)
    server = WebServer(WebApp(store, status, token, reader=reader, utc=utc), host, port)
    history_polled = 0.0
    try:
        server.start()
        if not quiet:
            shown = path if path is not None else store_path
            sys.stderr.write(f"{PROG}: serving {shown} at {server.url}"
                             + (f" (history {store_path})" if path and store_path else "")
                             + (" (token required)" if token else "") + "; Ctrl+C to stop\n")
            sys.stderr.flush()
        while True:
            if history_follower is not None and (
                    time.monotonic() - history_polled >= HISTORY_POLL_SECONDS):
                history_polled = time.monotonic()
                try:
                    follow_history()
                except TrafficCaptureError as error:  # a store that cannot be read just now
                    sys.stderr.write(f"{PROG}: warning: {error}\n")
                except OSError as error:  # its folder made unreadable
                    sys.stderr.write(f"{PROG}: warning: history {store_path}: "
                                     f"{error.strerror or error}\n")
            if stop.wait(POLL_SECONDS):
                break
            if follower is None:
                continue
            try:
                new = follower.poll()
            except TrafficCaptureError as error:  # a file replaced by a foreign one
                sys.stderr.write(f"{PROG}: warning: {error}\n")
                continue
            if new:
                store.load_rows(new)
    finally:
        server.stop()
        if follower is not None:
            follower.close()
        restore()
    return EXIT_OK


def _finest(stored: Reader | None) -> int:
    """The memory's window length without a CSV: the history's finest step (5 s until the
    store exists)."""
    held = stored.resolutions() if stored is not None else ()
    return held[0].seconds if held else DEFAULT_WINDOW_SECONDS
