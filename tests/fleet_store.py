"""What the fleet's tests share: ClickHouse's engine in this process (chDB) and rows to put in.

chDB runs one engine per process, on one folder at a time: a test module opens it on a folder
of its own (`engine`), every client of the module uses that folder (a database per test keeps
them apart), and it is closed when the module ends, so that the next module can open another.
The fleet's tests share one pytest-xdist group, so that they never run in two processes
reaching for the same folder.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tests.requirements import needs_module
from traffic_capture.fleet.connect import Target, open_client
from traffic_capture.fleet.schema import INSERT_COLUMNS, RAW_TABLE
from traffic_capture.rules import CLASSES

GROUP = "chdb"
_numbers = itertools.count(1)


@contextlib.contextmanager
def engine(folder: Path) -> Iterator[Any]:
    """A client of chDB on `folder` (no default database), closed on the way out."""
    needs_module("chdb")
    needs_module("clickhouse_connect")
    client = open_client(Target("chdb", "default", folder=folder), with_database=False)
    try:
        yield client
    finally:
        client.close()


def fresh_database(tag: str = "t") -> str:
    """A database name no other test of the process uses."""
    return f"{tag}_{next(_numbers)}"


def url(folder: Path, database: str) -> str:
    return f"chdb://{folder}/{database}"


Row = tuple[str, int, str, str, Sequence[int]]  # server, window start, client, in/out, bytes


def insert(client: Any, database: str, rows: Iterable[Row], window_seconds: int = 5) -> None:
    """Rows into the raw table, as a sender inserts them."""
    data = [[server, start, window_seconds, client_ip, direction, *counts]
            for server, start, client_ip, direction, counts in rows]
    if data:
        client.insert(f"{database}.{RAW_TABLE}", data, column_names=list(INSERT_COLUMNS))


def class_sums(client: Any, database: str, table: str, where: str = "1",
               **parameters: Any) -> list[int]:
    """Every class's bytes in a table (summed: a rollup merges lazily)."""
    columns = ", ".join(f"toInt64(sum({name}_bytes))" for name in CLASSES)
    return [int(value) for value in client.query(
        f"SELECT {columns} FROM {database}.{table} WHERE {where}",
        parameters=parameters).result_rows[0]]


def tables(client: Any, database: str) -> dict[str, str]:
    """Each table's and view's CREATE statement, the database's name taken out (so two
    databases built two ways compare)."""
    rows = client.query("SELECT name, create_table_query FROM system.tables WHERE database ="
                        " {database:String}", parameters={"database": database}).result_rows
    return {str(name): str(query).replace(f"{database}.", "DB.") for name, query in rows}
