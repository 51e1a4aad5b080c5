"""The ClickHouse sender's half of the fleet benchmark (issue 18): figures printed, never
asserted. (The query half, over 30 days of a fleet, is benchmarks/fleet.py.)

    python benchmarks/fleet_send.py                       # 5 and 50 servers x 200 clients
    python benchmarks/fleet_send.py --servers 1000 --clients 20 --windows 4

N simulated servers, each a real ClickHouseSink (its own thread, spool and server name) as
the daemon runs it, are fed M clients x 2 directions a window for W 5-second windows, as fast
as they take them, with one batch a window (what a live daemon sends every 5 s), to one
store: a process of its own serving ClickHouse's HTTP interface over chDB (the tests' local
server: ClickHouse's engine, async inserts and deduplication tokens included). Printed:

- rows/s and inserts/s the store took, from the first window to the last row stored;
- the sender's CPU per row in the daemon: this process's CPU (all N senders: formatting the
  rows, the spool's files, the token's hash, clickhouse-connect's HTTP) / rows; and the
  store process's CPU per row, apart;
- with --direct, the same rows inserted into chDB in this process (chdb://), no HTTP: the
  engine's own rate.

Everything is written under benchmarks/out/fleet_send/ (git-ignored). chDB takes one
folder per process, so the HTTP store runs in a child process.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.clickhouse_store import DATABASE, create_store  # noqa: E402
from traffic_capture.fleet.connect import Credentials, parse_url  # noqa: E402
from traffic_capture.servers import ServerSet  # noqa: E402
from traffic_capture.sinks import OutputContext  # noqa: E402
from traffic_capture.sinks.clickhouse_settings import ClickHouseSettings  # noqa: E402
from traffic_capture.sinks.clickhouse_sink import ClickHouseSink  # noqa: E402
from traffic_capture.windows import ClosedWindow, Sums  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "fleet_send"
WINDOW = 5


def windows(clients: int, count: int, seed: int) -> list[ClosedWindow]:
    """`count` closed windows of `clients` IPv4 clients x 2 directions, recent (inside the
    raw table's TTL), with random bytes in every class."""
    rng = np.random.default_rng(seed)
    start = (int(time.time()) - 3600) // WINDOW * WINDOW
    addresses = np.arange(clients, dtype=np.uint64) + (10 << 24)
    made = []
    for index in range(count):
        rows = 2 * clients
        sums = Sums(np.zeros(rows, dtype=bool), np.zeros(rows, dtype=np.uint64),
                    np.concatenate([addresses, addresses]),
                    np.repeat([True, False], clients),
                    rng.integers(0, 1 << 20, size=(rows, 5), dtype=np.int64))
        begin = start + index * WINDOW
        made.append(ClosedWindow(begin, begin + WINDOW, sums))
    return made


def serve_store(folder: Path) -> None:
    """The child: the tests' HTTP server over chDB, its port on stdout, until stdin closes."""
    from tests.clickhouse_servers import ChdbOverHttp

    create_store(folder)
    with ChdbOverHttp(folder) as store:
        store.query_client().command("SELECT 1")  # the engine loaded before the clock starts
        cpu = time.process_time()
        print(store.port, flush=True)
        sys.stdin.read()
        print(time.process_time() - cpu, flush=True)  # the store's CPU while it took rows


def run(servers: int, clients: int, count: int, url: str, work: Path) -> dict[str, float]:
    warnings: list[str] = []
    context = OutputContext(warn=warnings.append, info=lambda line: None,
                            window_seconds=WINDOW, servers=ServerSet(()))
    target = parse_url(url)
    sinks = []
    for number in range(servers):
        settings = ClickHouseSettings(target, Credentials(), f"server-{number:04d}",
                                      work / f"spool-{number}", batch_rows=2 * clients,
                                      batch_seconds=3600)
        sink = ClickHouseSink(settings, context)
        sink.check()
        sink.open()
        sinks.append(sink)
    made = [windows(clients, count, seed) for seed in range(min(servers, 8))]
    cpu, wall = time.process_time(), time.perf_counter()
    for sink in sinks:
        sink.start()
    for index in range(count):  # every server's window, then the next window
        for number, sink in enumerate(sinks):
            sink.window(made[number % len(made)][index])
    for sink in sinks:
        sink.stop()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rows = sum(sink.written for sink in sinks)
    expected = servers * count * 2 * clients
    if rows != expected or any(sink.pending() for sink in sinks):
        print(f"  {rows:,} rows sent of {expected:,}")
    if warnings:  # each sender says an outage once: the store fell behind, they waited
        print(f"  {len(warnings):,} senders warned, e.g.: {warnings[0]}")
    return {"rows": rows, "seconds": wall, "inserts": servers * count, "cpu": cpu}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="5,50", help="N, comma-separated (default 5,50)")
    parser.add_argument("--clients", type=int, default=200, help="M per server (default 200)")
    parser.add_argument("--windows", type=int, default=12, help="W per server (default 12)")
    parser.add_argument("--direct", action="store_true",
                        help="also chdb:// in this process, without HTTP")
    parser.add_argument("--serve-store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_store:
        serve_store(args.serve_store)
        return 0
    print(f"{'servers':>8} {'clients':>8} {'rows':>10} {'inserts':>8} {'seconds':>8} "
          f"{'rows/s':>10} {'inserts/s':>10} {'sender µs/row':>14} {'store µs/row':>13}")
    for servers in (int(n) for n in args.servers.split(",")):
        work = OUT / f"{servers}x{args.clients}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        store = subprocess.Popen([sys.executable, __file__, "--serve-store",
                                  str(work / "store")], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        assert store.stdout is not None and store.stdin is not None
        port = int(store.stdout.readline())
        try:
            figures = run(servers, args.clients, args.windows,
                          f"http://127.0.0.1:{port}/{DATABASE}", work)
        finally:
            store.stdin.close()
            store_cpu = float(store.stdout.readline() or "nan")
            store.wait(60)
        rows = figures["rows"]
        print(f"{servers:>8} {args.clients:>8} {rows:>10,} {figures['inserts']:>8,.0f} "
              f"{figures['seconds']:>8.2f} {rows / figures['seconds']:>10,.0f} "
              f"{figures['inserts'] / figures['seconds']:>10,.0f} "
              f"{figures['cpu'] / rows * 1e6:>14.1f} {store_cpu / rows * 1e6:>13.1f}")
        if args.direct:
            direct = OUT / f"{servers}x{args.clients}-direct"
            shutil.rmtree(direct, ignore_errors=True)
            direct.mkdir(parents=True)
            create_store(direct / "store")
            figures = run(servers, args.clients, args.windows,
                          f"chdb://{direct / 'store'}/{DATABASE}", direct)
            rows = figures["rows"]
            print(f"{'direct':>8} {args.clients:>8} {rows:>10,} {figures['inserts']:>8,.0f} "
                  f"{figures['seconds']:>8.2f} {rows / figures['seconds']:>10,.0f} "
                  f"{figures['inserts'] / figures['seconds']:>10,.0f} "
                  f"{'(sender and engine together)':>28}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
