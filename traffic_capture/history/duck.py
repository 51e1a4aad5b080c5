"""DuckDB for the history: the one import of it (a one-line error without the extra), and the
SQL pieces every reader and writer share.

Only in-memory DuckDB connections are used: the data lives in Parquet parts that any number of
processes read, so no process ever holds a database file open (DuckDB lets one process open a
database file for writing, and then no other may open it).
"""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from traffic_capture.history.store import HistoryError
from traffic_capture.rules import CLASSES

# Installed from the clone (not from PyPI), with the interpreter that runs it.
INSTALL = f"{sys.executable} -m pip install -e '.[history]' (in the project's folder)"
BYTE_COLUMNS: tuple[str, ...] = tuple(f"{name}_bytes" for name in CLASSES)
# The stored columns, as the CSV names them (total_bytes is their sum, computed by readers),
# with `server` first so that many machines' rows can share the shape (the fleet).
COLUMNS: tuple[str, ...] = ("server", "window_start", "window_seconds", "client_ip",
                            "direction", *BYTE_COLUMNS)
SUMS = ", ".join(f"SUM({column})::BIGINT AS {column}" for column in BYTE_COLUMNS)


def duckdb() -> Any:
    """The duckdb module, or one line naming the extra to install."""
    try:
        import duckdb as module
    except ImportError:
        raise HistoryError(f"--history needs DuckDB: {INSTALL}") from None
    return module


def as_os_error(error: BaseException) -> OSError:
    """DuckDB's IO error (a full disk, a folder gone read-only) as the OSError it reports:
    callers handle the disk refusing a write once, whoever wrote."""
    text = str(error)
    found = re.search(r'"errno"\s*:\s*"?(\d+)', text)
    number = int(found.group(1)) if found else errno.EIO
    return OSError(number, os.strerror(number), text.splitlines()[0] if text else None)


def connect(threads: int | None = None) -> Any:
    con = duckdb().connect(":memory:")
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")
    return con


def literal(text: str) -> str:
    """A SQL string literal (file names and the server's name go into statements)."""
    return "'" + text.replace("'", "''") + "'"


def parts_source(paths: Sequence[Path]) -> str:
    """A FROM clause over Parquet parts."""
    return (f"read_parquet([{', '.join(literal(str(path)) for path in paths)}],"
            " hive_partitioning = false)")  # a folder named a=b in PATH adds no column


def rollup_select(source: str, step_s: int, server: str | None = None,
                  where: str = "") -> str:
    """Rows of `source` summed into windows of `step_s` (window_start floored). `server`
    sets the column when the source has none (rows from a capture or a CSV)."""
    server_column = "server" if server is None else f"{literal(server)} AS server"
    group = "server, " if server is None else ""
    return (f"SELECT {server_column}, window_start // {step_s} * {step_s} AS window_start,"
            f" {step_s} AS window_seconds, client_ip, direction, {SUMS}"
            f" FROM {source} {('WHERE ' + where) if where else ''}"
            f" GROUP BY {group}window_start // {step_s} * {step_s}, client_ip, direction")


def copy_to(con: Any, select: str, path: Path, ordered: bool = True) -> None:
    """Write a query's rows as one Parquet file (zstd; ordered by window, then client, unless
    the rows come in window order already)."""
    order = " ORDER BY window_start, client_ip, direction" if ordered else ""
    con.execute(f"COPY ({select}{order}) TO {literal(str(path))}"
                " (FORMAT parquet, COMPRESSION zstd)")


def plain_select(source: str) -> str:
    return f"SELECT {', '.join(COLUMNS)} FROM {source}"
