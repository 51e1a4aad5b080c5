"""What every workbook command shares: the CSV in, a workbook out, errors in one line.

`traffic-capture excel` (dashboard.py) and `traffic-capture report` (report.py) are this
plus how they build their workbook.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pandas as pd

from traffic_capture.errors import EXIT_USAGE, PROG
from traffic_capture.excel.read import (
    EXCEL_MAX_DATA_ROWS,
    TrafficCsvError,
    newest_that_fit,
    read_traffic,
)


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
    """The options every workbook command shares: the CSV in, the workbook out."""
    parser = _Parser(prog=prog, description=description)
    parser.add_argument("--csv", default="traffic.csv", type=Path,
                        help="the capture CSV (any delimiter the daemon writes; "
                             "default: traffic.csv)")
    parser.add_argument("--out", default=default_out, type=Path,
                        help=f"workbook to write (default: {default_out})")
    return parser


def check_out(out: Path) -> None:
    if out.is_dir():
        raise TrafficCsvError(f"--out {out}: is a directory; give a file name ending in .xlsx")
    if not out.parent.exists() and str(out.parent):
        raise TrafficCsvError(f"--out {out}: folder {out.parent} does not exist")
    if out.suffix.lower() != ".xlsx":
        raise TrafficCsvError(f"--out {out}: must end in .xlsx (Excel checks the extension)")


def load_for_excel(csv: Path, limit: int = EXCEL_MAX_DATA_ROWS) -> pd.DataFrame:
    """Read the CSV and cut it to what a sheet holds, saying so in one line on stderr."""
    df = read_traffic(csv)
    df, dropped = newest_that_fit(df, limit)
    if dropped:
        print(f"note: {csv} has {dropped + limit:,} rows, more than an Excel sheet holds; "
              f"kept the newest {limit:,}", file=sys.stderr)
    return df


def run_workbook_command(prog: str, csv: Path, out: Path,
                         build: Callable[[pd.DataFrame], None]) -> int:
    """CSV in, workbook out, for `excel` and `report`: errors in one line, exit 1."""
    try:
        check_out(out)
        df = load_for_excel(csv)
        build(df)
    except TrafficCsvError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:
        # The package is not on PyPI: the install that works is the clone's, into this Python.
        print(f"{prog}: {exc.name} is not installed for {sys.executable}: "
              f"{sys.executable} -m pip install -e . (in the project's folder)", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{prog}: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({len(df):,} rows)")
    return 0
