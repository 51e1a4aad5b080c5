"""`traffic-capture serve --csv traffic.csv --web [HOST:]PORT`: the dashboard of a CSV alone;
`serve --history PATH`: of a history store (any range, months back), with a CSV or without;
`serve --clickhouse URL`: of a fleet, many servers in one ClickHouse (all of them, or one).

No capture and no privilege: the CSV's recent history is loaded, then what the daemon appends
is followed (through renames and rotations); without a CSV, the history's newest windows are
followed the same way. With a history, the answers over a range come from the memory for what
it holds and from the history for the rest (web/tiered.py). A fleet's answers come from
ClickHouse, its event stream from memories that follow it (web/fleet.py). Ctrl+C or SIGTERM
stops it (exit 0).
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
# A history's or a fleet's newest windows are looked for this often (a daemon flushes its
# history every 30 s; a sender sends a batch to ClickHouse every 5 s).
STORE_POLL_SECONDS = 5.0


def build_parser() -> argparse.ArgumentParser:
    from traffic_capture.web import add_web_options

    parser = argtypes.Parser(prog=f"{PROG} serve",
                     description="Serve the web dashboard, JSON API and event stream of a "
                                 "traffic-capture CSV, following what the daemon appends to it, "
                                 "of a history store, or of a fleet's ClickHouse database (no "
                                 "capture, no privilege).")
    parser.add_argument("--csv", type=Path, default=None, metavar="PATH",
                        help=f"the CSV the daemon writes (default {DEFAULT_OUT}, unless "
                             "--history is given alone); it may not exist yet")
    parser.add_argument("--history", type=Path, default=None, metavar="PATH",
                        help="also answer any range from the history store at PATH (a "
                             "daemon's --history, or 'history import'; the 'history' extra), "
                             "read while it is written; it may not exist yet. With --csv, "
                             "the CSV's recent rows are in memory and the history has the "
                             "rest")
    parser.add_argument("--clickhouse", metavar="URL",
                        help="serve a fleet instead: the servers that send to this ClickHouse "
                             "database (http://HOST:8123/DATABASE, https://HOST:8443/DATABASE or"
                             " chdb://FOLDER/DATABASE; the 'clickhouse' extra), all of them or "
                             "one picked in the page. The user comes from the URL or "
                             "TRAFFIC_CLICKHOUSE_USER, the password from --password-file, "
                             "TRAFFIC_CLICKHOUSE_PASSWORD or the systemd credential "
                             "clickhouse-password, never from the command line")
    parser.add_argument("--password-file", type=Path, metavar="PATH",
                        help="with --clickhouse: a file whose first line is the ClickHouse "
                             "password (mode 0600)")
    add_web_options(parser.add_argument)
    parser.add_argument("--quiet", action="store_true", help="no start-up message")
    parser.add_argument("--utc", action="store_true",
                        help="the CSV's times are UTC (the daemon ran with --utc); so is a "
                             "date-time without a zone in the API's from/to")
    return parser


def main(argv: list[str]) -> int:
    from traffic_capture.rules import WEB_DEFAULT_HOST
    from traffic_capture.web import check_exposure, web_token

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.clickhouse is not None and (args.csv is not None or args.history is not None):
        parser.error("--clickhouse serves a fleet's windows; it cannot with --csv or "
                     "--history")
    if args.password_file is not None and args.clickhouse is None:
        parser.error("--password-file is the ClickHouse password: it goes with --clickhouse")
    host, port = args.web or (WEB_DEFAULT_HOST, 8000)
    try:
        token = web_token(args)
        check_exposure(host, token, False)
        if args.clickhouse is not None:
            return _serve_fleet(args.clickhouse, args.password_file, host, port, token,
                                args.web_history, args.quiet, args.utc)
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
                    time.monotonic() - history_polled >= STORE_POLL_SECONDS):
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


def _serve_fleet(url: str, password_file: Path | None, host: str, port: int,
                 token: str | None, history: int, quiet: bool, utc: bool) -> int:
    """The fleet's dashboard: ClickHouse's answers, the memories polled every
    STORE_POLL_SECONDS; a ClickHouse that fails a poll is one warning, and the next poll
    tries again."""
    from traffic_capture.web import require_web

    require_web()
    from traffic_capture.fleet.connect import find_credentials, open_client, parse_url
    from traffic_capture.fleet.reader import ClickHouseReader
    from traffic_capture.web.api import WebApp
    from traffic_capture.web.fleet import FleetScopes
    from traffic_capture.web.http_server import WebServer

    target = parse_url(url)
    client = open_client(target, find_credentials(target, password_file), timeout_s=60)
    try:
        scopes = FleetScopes(ClickHouseReader(client), history)
        scopes.poll()
        started = time.time()

        def status() -> dict[str, Any]:
            return {"mode": "serve", "live": False, "source": target.shown, "csv": None,
                    "started": int(started), "uptime_seconds": round(time.time() - started, 1),
                    "rows_read": None, "lines_skipped": None, "file_reopened": None,
                    "servers": None, "packets_seen": None, "packets_counted": None,
                    "kernel_drops": None, "rows_written": None, "rows_pending": None,
                    "history_store": None,
                    "clickhouse": {"url": target.shown, "resolutions": [
                        {"resolution": held.seconds, "from": held.first_start_s,
                         "to": held.last_end_s} for held in scopes.fleet.resolutions()],
                        "servers_followed": scopes.followed_servers()}}

        fleet_store = scopes.scope(None).store
        stop = threading.Event()
        restore = handle_signals(stop.set)
        server = WebServer(WebApp(fleet_store, status, token, utc=utc, scopes=scopes),
                           host, port)
        failing = False
        try:
            server.start()
            if not quiet:
                count = len(scopes.servers())
                sys.stderr.write(f"{PROG}: serving {target.shown} at {server.url} ({count} "
                                 f"server{'s' if count != 1 else ''}"
                                 + (", token required" if token else "") + "); Ctrl+C to stop\n")
                sys.stderr.flush()
            while not stop.wait(STORE_POLL_SECONDS):
                try:
                    scopes.poll()
                except TrafficCaptureError as error:  # ClickHouse gone, or refusing
                    if not failing:
                        sys.stderr.write(f"{PROG}: warning: {error}; trying again every "
                                         f"{STORE_POLL_SECONDS:g} s\n")
                    failing = True
                else:
                    if failing:
                        sys.stderr.write(f"{PROG}: {target.shown} answers again\n")
                    failing = False
        finally:
            server.stop()
            restore()
    finally:
        client.close()
    return EXIT_OK


def _finest(stored: Reader | None) -> int:
    """The memory's window length without a CSV: the history's finest step (5 s until the
    store exists)."""
    held = stored.resolutions() if stored is not None else ()
    return held[0].seconds if held else DEFAULT_WINDOW_SECONDS
