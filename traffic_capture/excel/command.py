"""What every workbook command shares: the rows in (a CSV, or the rollup that fits the range
of a history or of a fleet's ClickHouse), a workbook out, errors in one line.

`traffic-capture excel` (dashboard.py) and `traffic-capture report` (report.py) are this
plus how they build their workbook.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pandas as pd

from traffic_capture.errors import EXIT_USAGE, PROG, TrafficCaptureError, UsageError
from traffic_capture.excel.read import (
    EXCEL_MAX_DATA_ROWS,
    TrafficCsvError,
    newest_that_fit,
    read_traffic,
)
from traffic_capture.excel.timespan import EXAMPLES, When, parse_when


@contextmanager
def replacing(out: Path) -> Iterator[Path]:
    """A temporary file next to `out` that replaces it on success: a failed or interrupted build
    never leaves a half-written workbook where the last good one was."""
    fd, tmp_name = tempfile.mkstemp(suffix=".xlsx", prefix=f".{out.stem}-", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from other users
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


class _Parser(argparse.ArgumentParser):
    """A usage error in one line, as every other command says it (argparse prints the whole
    usage first, which buries the message)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{PROG}: error: {message} (see {self.prog} --help)\n")
        sys.exit(EXIT_USAGE)


def workbook_parser(prog: str, description: str, default_out: str) -> argparse.ArgumentParser:
    """The options every workbook command shares: the rows in, the workbook out."""
    parser = _Parser(prog=prog, description=description)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--csv", default="traffic.csv", type=Path,
                        help="the capture CSV (any delimiter the daemon writes; "
                             "default: traffic.csv)")
    source.add_argument("--history", type=Path, metavar="PATH",
                        help="build from the history at PATH instead (the daemon's --history), "
                             "from its rollup that fits the range: a month from its hourly "
                             "rows, an hour from its 5-second ones")
    source.add_argument("--clickhouse", metavar="URL",
                        help="build from a fleet's ClickHouse database instead (http://HOST:"
                             "8123/DATABASE, https://HOST:8443/DATABASE or chdb://FOLDER/"
                             "DATABASE; the 'clickhouse' extra), from its rollup that fits "
                             "the range, every server's rows with a server slicer. The user "
                             "comes from the URL or TRAFFIC_CLICKHOUSE_USER, the password from "
                             "--password-file, TRAFFIC_CLICKHOUSE_PASSWORD or the systemd "
                             "credential clickhouse-password")
    parser.add_argument("--server", action="append", metavar="NAME",
                        help="with --clickhouse: this server's rows only (repeat for several)")
    parser.add_argument("--password-file", type=Path, metavar="PATH",
                        help="with --clickhouse: a file whose first line is the password")
    parser.add_argument("--from", dest="start", type=_when, metavar="WHEN",
                        help=f"first time shown: {EXAMPLES}, a span back from the newest "
                             "window held. Default: with --history or --clickhouse, 7 days "
                             "before --to; with --csv, the first row")
    parser.add_argument("--to", dest="end", type=_when, metavar="WHEN",
                        help="time the range ends (same forms; default: the newest window)")
    parser.add_argument("--utc", action="store_true",
                        help="with --history or --clickhouse: show times, and read "
                             "--from/--to, in UTC rather than local time")
    parser.add_argument("--out", default=default_out, type=Path,
                        help=f"workbook to write (default: {default_out})")
    return parser


def _when(text: str) -> When:
    try:
        return parse_when(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_workbook_args(parser: argparse.ArgumentParser,
                        argv: list[str] | None) -> argparse.Namespace:
    """Parse, refusing in one line what cannot go together."""
    args = parser.parse_args(_spans_joined(sys.argv[1:] if argv is None else argv))
    if args.utc and args.history is None and args.clickhouse is None:
        parser.error("--utc goes with --history or --clickhouse (a CSV's times are shown as "
                     "written)")
    for given, flag in ((args.server, "--server"), (args.password_file, "--password-file")):
        if given and args.clickhouse is None:
            parser.error(f"{flag} goes with --clickhouse")
    if (args.start is not None and args.end is not None and args.start.wall is not None
            and args.end.wall is not None and args.start.wall >= args.end.wall):
        parser.error(f"--from {args.start.wall} is not before --to {args.end.wall}")
    return args


def _spans_joined(argv: list[str]) -> list[str]:
    """`--from -7d` as `--from=-7d`: argparse takes a value that starts with '-' (and is no
    number) for an option of its own."""
    joined: list[str] = []
    for arg in argv:
        if joined and joined[-1] in ("--from", "--to") and re.match(r"-\s*\d", arg):
            joined[-1] += f"={arg}"
        else:
            joined.append(arg)
    return joined


@dataclass(frozen=True)
class WorkbookRows:
    """What a workbook is built from: the rows (with a `server` column when several servers of
    a fleet are in), the --group to build with, where they come from ("" for a CSV; for a
    history or a fleet its resolution and the range covered) and the option that reads them
    again ("--history", "--clickhouse")."""

    frame: pd.DataFrame
    group: str
    note: str = ""
    source_option: str = ""


def check_out(out: Path) -> None:
    if out.is_dir():
        raise TrafficCsvError(f"--out {out}: is a directory; give a file name ending in .xlsx")
    if not out.parent.exists() and str(out.parent):
        raise TrafficCsvError(f"--out {out}: folder {out.parent} does not exist")
    if out.suffix.lower() != ".xlsx":
        raise TrafficCsvError(f"--out {out}: must end in .xlsx (Excel checks the extension)")


def load_for_excel(csv: Path, limit: int = EXCEL_MAX_DATA_ROWS, start: When | None = None,
                   end: When | None = None) -> pd.DataFrame:
    """Read the CSV, keep the rows of the windows in [start, end), and cut them to what a
    sheet holds, saying so in one line on stderr."""
    df = read_traffic(csv)
    if start is not None or end is not None:
        df = _in_range(df, csv, start, end)
    return _fit(df, str(csv), limit)


def _in_range(df: pd.DataFrame, csv: Path, start: When | None, end: When | None
              ) -> pd.DataFrame:
    newest = df["window_end"].max()
    first = start.as_written(newest) if start is not None else df["window_start"].min()
    last = end.as_written(newest) if end is not None else newest
    if first >= last:
        raise UsageError(f"--from {first} is not before --to {last}")
    kept = df[(df["window_end"] > first) & (df["window_start"] < last)]
    if kept.empty:
        raise TrafficCsvError(f"{csv}: no rows from {first} to {last}; it holds "
                              f"{df['window_start'].min()} to {newest}")
    return kept.reset_index(drop=True)


def _fit(df: pd.DataFrame, source: str, limit: int = EXCEL_MAX_DATA_ROWS) -> pd.DataFrame:
    df, dropped = newest_that_fit(df, limit)
    if dropped:
        print(f"note: {source} has {dropped + limit:,} rows, more than an Excel sheet holds; "
              f"kept the newest {limit:,}", file=sys.stderr)
    return df


def load_rows(args: argparse.Namespace) -> WorkbookRows:
    """The rows the options ask for: the CSV's, or the history's at the resolution that fits
    the range (said on stderr, as the workbook says it)."""
    if args.history is None and args.clickhouse is None:
        return WorkbookRows(load_for_excel(args.csv, start=args.start, end=args.end),
                            args.group)
    if args.history is not None:
        from traffic_capture.excel.from_history import read_history

        read = read_history(args.history, args.start, args.end, args.group, args.utc)
        source, option = f"history {args.history}", "--history"
    else:
        from traffic_capture.excel.from_fleet import read_fleet

        read = read_fleet(args.clickhouse, args.password_file, args.server, args.start,
                          args.end, args.group, args.utc)
        source, option = f"ClickHouse {args.clickhouse}", "--clickhouse"
    for warning in read.warnings:
        print(f"note: {warning}", file=sys.stderr)
    print(f"note: {read.note}", file=sys.stderr)
    return WorkbookRows(_fit(read.frame, source), read.group, read.note, option)


def run_workbook_command(prog: str, args: argparse.Namespace,
                         build: Callable[[WorkbookRows], None]) -> int:
    """Rows in, workbook out, for `excel` and `report`: errors in one line, exit 1 (2 for a
    range that cannot be)."""
    out = args.out
    try:
        check_out(out)
        rows = load_rows(args)
        build(rows)
    except UsageError as exc:
        print(f"{PROG}: error: {exc} (see {prog} --help)", file=sys.stderr)
        return EXIT_USAGE
    except TrafficCaptureError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return exc.exit_code
    except ImportError as exc:
        # The package is not on PyPI: the install that works is the clone's, into this Python.
        print(f"{prog}: {exc.name} is not installed for {sys.executable}: "
              f"{sys.executable} -m pip install -e . (in the project's folder)", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{prog}: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({len(rows.frame):,} rows)")
    return 0
