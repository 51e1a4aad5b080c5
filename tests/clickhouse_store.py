"""The store the ClickHouse sender's tests send to: chDB (ClickHouse's engine in this process)
with the schema users get (`traffic-capture clickhouse init`: fleet.migrate.init), captures to
send, and the totals to compare with the CSVs.
"""

from __future__ import annotations

import contextlib
import struct
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from tests.conftest import read_rows
from tests.frames import SERVER4
from tests.requirements import needs_module
from traffic_capture.fleet.connect import Target, open_client
from traffic_capture.rules import CLASSES

DATABASE = "traffic"
BYTES = [f"{name}_bytes" for name in CLASSES]


@contextlib.contextmanager
def chdb_client(folder: Path, database: str | None = DATABASE) -> Iterator[Any]:
    """A clickhouse-connect client on chDB's folder (made when no database is asked for),
    closed on the way out: chDB holds one folder per process, and the next test may want
    another."""
    needs_module("clickhouse_connect")
    needs_module("chdb")
    client = open_client(Target("chdb", database or DATABASE, folder=folder),
                         with_database=database is not None)
    try:
        yield client
    finally:
        client.close()


def create_store(folder: Path, schema: bool = True) -> None:
    """The database in chDB's folder, with the schema `clickhouse init` makes (default keep:
    traffic_5s 15 days, its rollups, the deduplication window), unless schema=False."""
    from traffic_capture.fleet.migrate import init

    with chdb_client(folder, database=None) as client:
        if schema:
            init(client, DATABASE)
        else:
            client.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")


def table_sums(client: Any, table: str) -> list[int]:
    """Every class's bytes in one of the schema's tables (summed: a rollup merges lazily)."""
    columns = ", ".join(f"toInt64(sum({b}))" for b in BYTES)
    return [int(v) for v in client.query(
        f"SELECT {columns} FROM {DATABASE}.{table}").result_rows[0]]


def store_sums(client: Any, server: str | None = None) -> dict[tuple[str, str], list[int]]:
    """Per (client, direction), each class's bytes held by the ingest table (one server's,
    or the fleet's)."""
    where = f"WHERE server = '{server}'" if server is not None else ""
    rows = client.query(
        f"SELECT client_ip, toString(direction), {', '.join(f'sum({b})' for b in BYTES)} "
        f"FROM {DATABASE}.traffic_5s {where} GROUP BY 1, 2").result_rows
    return {(row[0], row[1]): [int(v) for v in row[2:]] for row in rows}


def csv_sums(*csvs: Path) -> dict[tuple[str, str], list[int]]:
    """The same sums from one or more CSVs."""
    found: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * len(BYTES))
    for csv in csvs:
        for row in read_rows(csv).itertuples(index=False):
            sums = found[(row.client_ip, row.direction)]
            for i, column in enumerate(BYTES):
                sums[i] += int(getattr(row, column))
    return dict(found)


def stored_rows(client: Any) -> int:
    return int(client.command(f"SELECT count() FROM {DATABASE}.traffic_5s"))


PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)


def pcap_record(seconds: float, frame: bytes) -> bytes:
    whole = int(seconds)
    return struct.pack("<IIII", whole, int((seconds - whole) * 1e6), len(frame),
                       len(frame)) + frame


def traffic(start: int, seconds: int, clients: int = 3, every: float = 0.5,
            network: str = "198.51.100") -> bytes:
    """Packets between SERVER4 and a few clients every `every` seconds from `start`: web,
    SSH and DNS both ways, a classic pcap's records (no file header)."""
    records = []
    for i in range(int(seconds / every)):
        client = f"{network}.{i % clients + 1}"
        kind = i % 3
        upper = (TCP(sport=40000, dport=80) if kind == 0 else TCP(sport=40000, dport=22)
                 if kind == 1 else UDP(sport=40000, dport=53))
        src, dst = (client, SERVER4) if i % 2 else (SERVER4, client)
        frame = bytes(Ether() / IP(src=src, dst=dst) / upper / Raw(b"x" * (i % 40)))
        records.append(pcap_record(start + i * every + 0.25, frame))
    return b"".join(records)


def write_pcap(path: Path, start: int, seconds: int, **kwargs: Any) -> Path:
    path.write_bytes(PCAP_HEADER + traffic(start, seconds, **kwargs))
    return path
