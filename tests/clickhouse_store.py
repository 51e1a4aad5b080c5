"""The store the ClickHouse sender's tests send to: chDB (ClickHouse's engine in this process)
with the ingest table, captures to send, and the totals to compare with the CSVs.

INGEST_DDL stands in for the schema `traffic-capture clickhouse init` makes (built beside this
branch): the same columns, a plain MergeTree, with the deduplication window the schema must
keep and the raw table's TTL. When the two meet, `create_ingest_table` calls `init` instead.
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
from traffic_capture.rules import CLASSES

DATABASE = "traffic"
BYTES = [f"{name}_bytes" for name in CLASSES]
INGEST_DDL = f"""
CREATE TABLE {DATABASE}.traffic_5s (
    server LowCardinality(String),
    window_start DateTime('UTC'),
    window_seconds UInt32,
    client_ip String,
    direction Enum8('in' = 1, 'out' = 2),
    http_bytes UInt64, ftp_bytes UInt64, tcp_bytes UInt64, udp_bytes UInt64, other_bytes UInt64
) ENGINE = MergeTree
PARTITION BY toDate(window_start)
ORDER BY (server, window_start, client_ip, direction)
TTL window_start + INTERVAL 15 DAY
SETTINGS non_replicated_deduplication_window = 10000
"""


@contextlib.contextmanager
def chdb_client(folder: Path, database: str | None = DATABASE) -> Iterator[Any]:
    """A clickhouse-connect client on chDB's folder, closed on the way out: chDB holds one
    folder per process, and the next test may want another."""
    clickhouse_connect = needs_module("clickhouse_connect")
    needs_module("chdb")
    client = clickhouse_connect.get_client(dsn=f"chdb://{folder}", database=database)
    try:
        yield client
    finally:
        client.close()


def create_ingest_table(folder: Path, table: bool = True) -> None:
    """The database, and (unless table=False) the ingest table, in chDB's folder."""
    with chdb_client(folder, database=None) as client:
        client.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
        if table:
            client.command(INGEST_DDL)


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
