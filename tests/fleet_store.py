"""What the fleet's tests share: ClickHouse's engine in this process (chDB) and rows to put in.

chDB runs one engine per process, on one folder at a time: a test module opens it on a folder
of its own (`engine`), every client of the module uses that folder (a database per test keeps
them apart), and it is closed when the module ends, so that the next module can open another.
The fleet's tests share one pytest-xdist group, so that they never run in two processes
reaching for the same folder.

Another process cannot open a folder while this one has it open (chDB locks it: "Another
server instance in same directory is already running"), but can once it is closed: a store
the readers' commands read (`serve`, `excel`, `report` as child processes) is written here and
closed first (`write_fleet`). A store written while `serve` reads it is written by the serve
process itself (`tests/fleet_child.py`, `FleetServe`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tests.conftest import REPO
from tests.requirements import needs_module
from tests.web_helpers import WebProcess
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
    if data:  # a token of its own, as the sender's: the schema's tables deduplicate inserts
        client.insert(f"{database}.{RAW_TABLE}", data, column_names=list(INSERT_COLUMNS),
                      settings={"insert_deduplication_token": uuid.uuid4().hex})


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


KEEP_ALL = "5s=forever,1m=forever,1h=forever"  # the rows here are years old
FLEET_START = 1_700_000_000 // 86400 * 86400  # a UTC midnight
FLEET_DAYS = 10
FLEET_STEP = 600  # a 5-second window every 10 minutes
FLEET_END = FLEET_START + FLEET_DAYS * 86400
# Who talks to which server: 10.0.0.1 to all three (summed in the fleet's answers, apart in
# each server's), 10.0.0.2 to the web servers, 192.0.2.9 to web2 alone, 2001:db8::7 to db1.
FLEET_CLIENTS = {"web1": ("10.0.0.1", "10.0.0.2"),
                 "web2": ("10.0.0.1", "10.0.0.2", "192.0.2.9"),
                 "db1": ("10.0.0.1", "2001:db8::7")}
BYTE_COLUMNS = [f"{name}_bytes" for name in CLASSES]


def fleet_rows(seed: int = 5) -> list[Row]:
    """Ten days of three servers' windows (one every FLEET_STEP seconds), every class's bytes
    random, some zero."""
    rng = np.random.default_rng(seed)
    rows: list[Row] = []
    for start in range(FLEET_START, FLEET_END, FLEET_STEP):
        for server, clients in FLEET_CLIENTS.items():
            for client_ip in clients:
                for direction in ("in", "out"):
                    counts = rng.integers(0, 10_000, 5) * (rng.random(5) < 0.7)
                    if counts.any():
                        rows.append((server, start, client_ip, direction, counts.tolist()))
    return rows


def rows_frame(rows: Iterable[Row]) -> pd.DataFrame:
    """Rows as a frame: server, start, client_ip, direction, each class's bytes, total."""
    frame = pd.DataFrame([(server, start, client_ip, direction, *counts)
                          for server, start, client_ip, direction, counts in rows],
                         columns=["server", "start", "client_ip", "direction", *BYTE_COLUMNS])
    frame["total_bytes"] = frame[BYTE_COLUMNS].sum(axis=1)
    return frame


def write_fleet(folder: Path, database: str, rows: Iterable[Row], keep: str = KEEP_ALL) -> str:
    """A fleet's schema and rows in chDB at `folder`, closed afterwards so that a child process
    can open it; its URL."""
    from traffic_capture.fleet.migrate import init

    with engine(folder) as client:
        init(client, database, keep=keep)
        insert(client, database, rows)
    return url(folder, database)


class FleetServe(WebProcess):
    """`serve --clickhouse URL ARGS` in a child that also inserts what `send` gives it, as a
    sender would (tests/fleet_child.py: chDB lets no other process in while serve reads)."""

    def __init__(self, fleet_url: str, args: list[str]) -> None:
        super().__init__([fleet_url, *args], program=[sys.executable,
                                                       str(REPO / "tests" / "fleet_child.py")],
                         stdin=subprocess.PIPE)

    def send(self, rows: Sequence[Row]) -> None:
        """Insert `rows` in the child, and wait until they are in."""
        assert self.process.stdin is not None
        said = self.stderr.count("inserted ")
        self.process.stdin.write(json.dumps([list(row) for row in rows]).encode() + b"\n")
        self.process.stdin.flush()
        self.wait_for_count("inserted ", said + 1)

    def wait_for_count(self, text: str, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.stderr.count(text) < count:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"never said {text!r} {count} times; stderr:\n"
                                     f"{self.stderr}")
            time.sleep(0.05)
