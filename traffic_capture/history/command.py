"""`traffic-capture history import|info`: CSVs into a history store, and what a store holds.

`import` loads existing CSVs (any delimiter the daemon writes, a rotated series, local or UTC
times) into the history at --history; importing a file twice adds nothing, and a file that is
not a traffic-capture CSV is refused in one line, the store unchanged. It is the one writer
while it runs: a daemon writing the same store makes it wait for nothing: it is refused.
"""

from __future__ import annotations

import sys
from pathlib import Path

from traffic_capture import argtypes
from traffic_capture.errors import EXIT_OK, PROG, TrafficCaptureError
from traffic_capture.history.retention import DEFAULT_KEEP, duration_text


def build_parser() -> argtypes.Parser:
    parser = argtypes.Parser(prog=f"{PROG} history",
                             description="The history store (--history PATH): load CSVs into "
                                         "it, or say what it holds.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=argtypes.Parser)
    loading = commands.add_parser(
        "import", help="load traffic-capture CSVs into a history",
        description="Load traffic-capture CSVs into the history at --history (created if "
                    "absent). A file already imported adds nothing; windows the history "
                    "already holds (the daemon wrote them) are not added twice.")
    loading.add_argument("--history", type=Path, required=True, metavar="PATH",
                         help="the history store (a folder)")
    loading.add_argument("--utc", action="store_true",
                         help="the CSVs' times are UTC (the daemon ran with --utc)")
    loading.add_argument("--history-keep", metavar="SPEC", default=DEFAULT_KEEP,
                         help=f"resolutions and how long each is kept (default "
                              f"{DEFAULT_KEEP}), for a new store")
    loading.add_argument("files", nargs="+", type=Path, metavar="CSV",
                         help="the CSVs (a rotated series in any order)")
    showing = commands.add_parser("info", help="what a history holds, per resolution")
    showing.add_argument("--history", type=Path, required=True, metavar="PATH")
    showing.add_argument("--utc", action="store_true", help="times in UTC")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "import":
            return _import(args.history, args.files, args.utc, args.history_keep)
        return _info(args.history, args.utc)
    except TrafficCaptureError as error:
        sys.stderr.write(f"{PROG}: error: {error}\n")
        return error.exit_code


def _import(store: Path, files: list[Path], utc: bool, keep: str) -> int:
    from traffic_capture.history.importer import import_csv

    result = import_csv(store, files, utc=utc, keep=keep)
    for path, note in result.notes:
        print(f"{path}: {note}")
    print(f"{result.rows:,} rows added to {store}")
    return EXIT_OK


def _info(store: Path, utc: bool) -> int:
    import time

    from traffic_capture.history.reader import HistoryReader

    reader = HistoryReader(store)
    for held in reader.resolutions():
        name = duration_text(held.seconds)
        if held.first_start_s is None or held.last_end_s is None:
            print(f"{name}: empty")
            continue
        shown = time.gmtime if utc else time.localtime
        first = time.strftime("%Y-%m-%d %H:%M:%S", shown(held.first_start_s))
        last = time.strftime("%Y-%m-%d %H:%M:%S", shown(held.last_end_s))
        print(f"{name}: {first} to {last}" + (" UTC" if utc else ""))
    return EXIT_OK
