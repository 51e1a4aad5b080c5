"""The fleet's ClickHouse store on this machine (issue 18, the query half): figures printed,
never asserted. ClickHouse's own engine runs in this process (chDB), as in the tests.

    python benchmarks/fleet.py                       # a few minutes on 2 cores
    python benchmarks/fleet.py --servers 50 --clients 200 --days-1m 30 --hours-5s 24

- insert: windows of SERVERS x CLIENTS x 2 directions sent as the senders do (clickhouse-
  connect, column batches) into traffic_5s with its three materialized views feeding
  traffic_1m, traffic_1h and traffic_servers: rows/s, for batches of one window of the whole
  fleet (what async inserts gather in a few seconds) and of one server's window (what a
  sender without async inserts would send).
- month: SERVERS x CLIENTS x 2 rows every window (every client busy both ways all the time,
  the worst case), generated in the engine straight into each table: 30 days of hours,
  --days-1m days of minutes, --hours-5s hours of 5-second rows. Then, at each resolution, the
  top clients over what the table holds (ClickHouseReader.client_totals, as the web asks:
  per-class sums per client and direction, sorted, with the coverage), best of 3; and each
  table's rows and bytes on disk per day held. A month at a resolution held only for a part
  of it is extrapolated from the part, linearly in rows read (the query is a scan of the
  range: its time grows with the rows in it), and printed as such. Merges are stopped on
  each table once made: the queries read the parts as inserted (about a million rows each),
  without merges sharing the 2 cores.
Everything is written under benchmarks/out/fleet/ (git-ignored).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from traffic_capture.fleet.connect import Target, open_client  # noqa: E402
from traffic_capture.fleet.migrate import init  # noqa: E402
from traffic_capture.fleet.reader import ClickHouseReader  # noqa: E402
from traffic_capture.fleet.schema import (  # noqa: E402
    BYTE_COLUMNS,
    INSERT_COLUMNS,
    RAW_TABLE,
    SERVERS_VIEW,
    table_name,
    view_name,
)
from traffic_capture.queries import TimeRange  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "fleet"
DAY = 86400
START = 1_767_225_600  # 2026-01-01 00:00 UTC
KEEP_ALL = "5s=forever,1m=forever,1h=forever"


def generate(client: Any, database: str, seconds: int, span_s: int, servers: int,
             clients: int) -> tuple[int, float]:
    """Every server's clients both ways in every window of `span_s` from START, straight into
    the table of `seconds` (rows, seconds taken). Clients partly shared between servers (a
    client of several servers), bytes skewed as traffic is (web large, FTP rare, the rest
    small), so that compression is not flattered by constants nor ruined by noise."""
    per_window = servers * clients * 2
    rows = span_s // seconds * per_window
    started = time.perf_counter()
    client.command(
        f"INSERT INTO {database}.{table_name(seconds)} ({', '.join(INSERT_COLUMNS)})"
        f" SELECT concat('server-', toString(intDiv(number % {per_window}, {clients * 2})))"
        f" AS server, toDateTime({START} + intDiv(number, {per_window}) * {seconds}, 'UTC'),"
        f" {seconds}, concat('198.18.', toString(intDiv(client, 256)), '.',"
        f" toString(client % 256)), toInt8(number % 2 + 1),"
        f" rand(1) % 200000, if(rand(2) % 50 = 0, rand(3) % 1000000, 0),"
        f" rand(4) % 20000, rand(5) % 5000, rand(6) % 600"
        f" FROM (SELECT number, (intDiv(number % {clients * 2}, 2)"
        f" + intDiv(number % {per_window}, {clients * 2}) * 37) % 5000 AS client"
        f" FROM numbers({rows}))",
        settings={"max_partitions_per_insert_block": 1000})
    return rows, time.perf_counter() - started


def disk(client: Any, database: str, table: str) -> tuple[int, int]:
    """(rows, bytes on disk) of a table's active parts."""
    rows, size = client.query(
        "SELECT sum(rows), sum(bytes_on_disk) FROM system.parts WHERE active AND database ="
        " {database:String} AND table = {table:String}",
        parameters={"database": database, "table": table}).result_rows[0]
    return int(rows or 0), int(size or 0)


def best_of(runs: int, action: Any) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def insert_rate(client: Any, servers: int, clients: int, windows: int, per_server: bool
                ) -> tuple[int, float]:
    database = f"insert_{'server' if per_server else 'fleet'}"
    client.command(f"DROP DATABASE IF EXISTS {database}")
    init(client, database, keep=KEEP_ALL)
    rng = np.random.default_rng(1)
    names = [f"server-{n}" for n in range(servers)]
    ips = [f"198.18.{n // 256}.{n % 256}" for n in range(clients)]
    batches = []
    for window in range(windows):
        start = START + 5 * window
        for server_group in ([[name] for name in names] if per_server else [names]):
            size = len(server_group) * clients * 2
            columns = [
                [name for name in server_group for _ in range(clients * 2)],
                [start] * size, [5] * size,
                [ip for _ in server_group for ip in ips for _ in (0, 1)],
                ["in", "out"] * (size // 2),
                *(rng.integers(0, 100000, size).tolist() for _ in BYTE_COLUMNS)]
            batches.append(columns)
    started = time.perf_counter()
    for columns in batches:
        client.insert(f"{database}.{RAW_TABLE}", columns, column_names=list(INSERT_COLUMNS),
                      column_oriented=True)
    taken = time.perf_counter() - started
    rows = windows * servers * clients * 2
    held = client.query(f"SELECT count() FROM {database}.{RAW_TABLE}").result_rows[0][0]
    assert held == rows, (held, rows)
    return rows, taken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", type=int, default=50)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--days-1m", type=int, default=3, help="days of minutes generated")
    parser.add_argument("--hours-5s", type=int, default=3,
                        help="hours of 5-second rows generated")
    parser.add_argument("--insert-windows", type=int, default=60,
                        help="windows sent in the insert measure")
    parser.add_argument("--only", choices=("insert", "month"))
    args = parser.parse_args()
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    client = open_client(Target("chdb", "default", folder=OUT / "chdb"), with_database=False)
    import chdb

    print(f"chDB {chdb.__version__} (ClickHouse {client.server_version}), {args.servers}"
          f" servers x {args.clients} clients x 2 directions = "
          f"{args.servers * args.clients * 2:,} rows a window")
    try:
        if args.only in (None, "insert"):
            for per_server in (False, True):
                rows, taken = insert_rate(client, args.servers, args.clients,
                                          args.insert_windows if not per_server
                                          else max(args.insert_windows // 6, 1), per_server)
                batch = args.clients * 2 * (1 if per_server else args.servers)
                whose = "one server" if per_server else "the fleet"
                print(f"insert, batches of {batch:,} rows ({whose}'s window),"
                      f" 3 views fed: {rows:,} rows in {taken:.1f} s ="
                      f" {rows / taken:,.0f} rows/s, {rows / batch / taken:,.1f} inserts/s")
        if args.only in (None, "month"):
            month(client, args)
    finally:
        client.close()


def month(client: Any, args: argparse.Namespace) -> None:
    database = "month"
    client.command(f"DROP DATABASE IF EXISTS {database}")
    init(client, database, keep=KEEP_ALL)
    for name in (view_name(60), view_name(3600), SERVERS_VIEW):  # each table made alone
        client.command(f"DROP VIEW {database}.{name}")
    spans = {3600: 30 * DAY, 60: args.days_1m * DAY, 5: args.hours_5s * 3600}
    reader = ClickHouseReader(client, database=database)
    print(f"\nmonth: {args.servers} servers x {args.clients} clients, every client both ways"
          " every window")
    print(f"{'table':<12}{'held':>10}{'rows':>16}{'made in':>10}{'rows/day':>16}"
          f"{'disk/day':>12}{'top clients':>13}{'30 days':>12}")
    for seconds in (3600, 60, 5):
        span = spans[seconds]
        rows, made = generate(client, database, seconds, span, args.servers, args.clients)
        # The parts as inserted (about a million rows each), not merged meanwhile: merges
        # would share the 2 cores with the queries timed, and with the next table's making.
        client.command(f"SYSTEM STOP MERGES {database}.{table_name(seconds)}")
        held_rows, size = disk(client, database, table_name(seconds))
        days = span / DAY
        when = TimeRange(START, START + span)
        answer = reader.client_totals(when, seconds)
        assert answer.coverage.windows == span // seconds, answer.coverage
        taken = best_of(3, lambda when=when, seconds=seconds:
                        reader.client_totals(when, seconds))
        month_s = taken * (30 * DAY / span)
        note = "" if span == 30 * DAY else f" (x{30 * DAY / span:.0f})"
        held = (f"{span // DAY} d" if span >= DAY else f"{span // 3600} h")
        print(f"{table_name(seconds):<12}{held:>10}{held_rows:>16,}{made:>9.1f}s"
              f"{held_rows / days:>16,.0f}{size / days / 2**20:>10.0f}MiB"
              f"{taken:>12.2f}s{month_s:>11.1f}s{note}")
        top = [(name, int(sums.sum())) for name, sums in zip(answer.clients[:3],
                                                             answer.sums[:3], strict=True)]
        print(f"{'':<12}top 3: {top}")


if __name__ == "__main__":
    main()
