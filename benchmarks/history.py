"""The history engine's speed and memory (issue 17): figures printed, never asserted.

    python benchmarks/history.py                 # everything, a few minutes on 2 cores
    python benchmarks/history.py --only write    # or: month, web, import, layouts

- write: 10,000 clients x 2 directions a window (the --max-clients cap), 5-second windows,
  through HistoryWriter with its default flushing (every 30 s or 100,000 rows): seconds of
  the sink's thread per window, rows/s, and the merge of a busy hour.
- month: 30 days of 100 clients (both directions every window) laid out as the writer
  leaves a closed month (5-s parts per hour, 1-min per day, 1-h per month), then, at each
  resolution, the top 10 clients with their per-class totals over the month, one client's
  series, and the month's dashboard (Akvorado's pick: client totals and rows at 1 h); the
  size on disk per month; and pandas over the same month's rows as one CSV would give them
  (the CSV-only path), for the ratio.
- web: the same month through the web's API (the daemon's memory holding its last hour, the
  history the rest: web/tiered.py): /api/clients and one client's drill-down over the last
  hour, day, week and month, at the resolution each picks (needs the `web` extra).
- import: a 1,000,000-row CSV (20 clients) imported into an empty history, in a child
  process: seconds, rows/s and peak RSS (GNU time when present).
- layouts: the alternatives measured for the 5-second rows: a month of day parts instead
  of hour parts, one flush a window (5 s) against one every 30 s.
Everything is written under benchmarks/out/history/ (git-ignored).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from traffic_capture.history import duck  # noqa: E402
from traffic_capture.history.layout import (  # noqa: E402
    MARKER,
    choose,
    compacted_path,
    list_store,
)
from traffic_capture.history.periods import DAY, HOUR, MONTH, period_of  # noqa: E402
from traffic_capture.history.reader import HistoryReader  # noqa: E402
from traffic_capture.history.writer import HistoryWriter  # noqa: E402
from traffic_capture.queries import TimeRange, pick_resolution  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "history"
MONTH_START = 1_777_593_600  # 2026-05-01 00:00 UTC
DAYS = 30
CLIENTS = 100


def best_of(runs: int, action):  # noqa: ANN001, ANN201
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - started)
    return min(times), result


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench_write(windows: int = 60) -> None:
    path = OUT / "write"
    shutil.rmtree(path, ignore_errors=True)
    rng = np.random.default_rng(1)
    clients = [f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}" for n in range(10_000)]
    names = clients + clients
    inbound = np.repeat([True, False], 10_000)
    counts = rng.integers(0, 10**6, (20_000, 5))
    start = MONTH_START
    per_window = []
    writer = HistoryWriter(path, server_name="bench")
    for number in range(windows):
        began = time.perf_counter()
        writer.add_window(start + 5 * number, start + 5 * number + 5, names, inbound, counts)
        writer.flush()
        per_window.append(time.perf_counter() - began)
    began = time.perf_counter()
    writer.close()
    closing = time.perf_counter() - began
    rows = windows * 20_000
    total = sum(per_window) + closing
    print(f"write: {windows} windows of 20,000 rows ({rows:,} rows, {writer.flushes} flushes):"
          f" {rows / total:,.0f} rows/s; the sink's thread per window: median"
          f" {np.median(per_window) * 1000:.0f} ms, max {max(per_window) * 1000:.0f} ms"
          f" (a flush), close {closing:.2f} s; {folder_size(path) / 2**20:.1f} MiB")
    # A closed busy hour: 720 windows in the open hour's merged parts, merged into one.
    hour = OUT / "write-hour"
    shutil.rmtree(hour, ignore_errors=True)
    con = duck.connect()
    part = compacted_path(hour, 5, period_of(HOUR, start), 1, 1, start, start + 3600)
    part.parent.mkdir(parents=True)
    (hour / MARKER).touch()
    con.execute(f"""COPY (SELECT 'bench' AS server, {start} + 5 * w AS window_start,
        5 AS window_seconds, '10.0.' || (c // 256) || '.' || (c % 256) AS client_ip,
        CASE WHEN d = 0 THEN 'in' ELSE 'out' END AS direction,
        hash(w, c, d, 1) % 1000000 AS http_bytes, hash(w, c, d, 2) % 1000000 AS ftp_bytes,
        hash(w, c, d, 3) % 1000000 AS tcp_bytes, hash(w, c, d, 4) % 1000000 AS udp_bytes,
        hash(w, c, d, 5) % 1000000 AS other_bytes
        FROM range(720) t(w), range(10000) u(c), range(2) v(d))
        TO {duck.literal(str(part))} (FORMAT parquet, COMPRESSION zstd)""")
    writer = HistoryWriter(hour, server_name="bench", grace_s=0)
    writer.newest_end_s = start + 7200
    began = time.perf_counter()
    for level in (5, 60, 3600):  # the hour's parts as flushes would leave them, merged
        if level != 5:
            target = compacted_path(hour, level, period_of(HOUR, start), 1, 1, start,
                                    start + 3600)
            duck.copy_to(con, duck.rollup_select(duck.parts_source([part]), level), target)
    prepared = time.perf_counter() - began
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    began = time.perf_counter()
    copy = compacted_path(hour, 5, period_of(HOUR, start), 2, 2, start, start + 3600)
    shutil.copy(part, copy)  # two parts of the hour: the merge is due
    writer.maintain(merges=1)
    merged = time.perf_counter() - began
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    writer.close(merges=0)
    print(f"write: merging a closed hour of 5-s rows at 10,000 clients (2 x 14.4 M rows into"
          f" one part): {merged:.1f} s, peak RSS {max(rss_before, rss_after) / 1024:.0f} MiB"
          f" (its rollups took {prepared:.1f} s)")


def make_month(path: Path, five_second_kind: str = HOUR) -> None:
    """A closed month of CLIENTS clients, as the writer leaves it (or with 5-s day parts)."""
    made = path.with_name(path.name + ".made")
    if made.exists():
        return
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    (path / MARKER).touch()
    for level in ("5s", "1m", "1h"):
        (path / level).mkdir()
    con = duck.connect()
    clients = "'198.51.100.' || c"
    day_seconds = 86400
    for day in range(DAYS):
        day_start = MONTH_START + day * day_seconds
        con.execute(f"""CREATE OR REPLACE TEMP TABLE day AS SELECT 'bench' AS server,
            {day_start} + 5 * w AS window_start, 5 AS window_seconds, {clients} AS client_ip,
            CASE WHEN d = 0 THEN 'in' ELSE 'out' END AS direction,
            (hash(w, c, d, {day}, 1) % 100000)::BIGINT AS http_bytes,
            (hash(w, c, d, {day}, 2) % 100000)::BIGINT AS ftp_bytes,
            (hash(w, c, d, {day}, 3) % 100000)::BIGINT AS tcp_bytes,
            (hash(w, c, d, {day}, 4) % 100000)::BIGINT AS udp_bytes,
            (hash(w, c, d, {day}, 5) % 100000)::BIGINT AS other_bytes
            FROM range(17280) t(w), range({CLIENTS}) u(c), range(2) v(d)""")
        kinds = [(HOUR, h * 3600) for h in range(24)] if five_second_kind == HOUR else [
            (DAY, 0)]
        for kind, offset in kinds:
            period = period_of(kind, day_start + offset)
            duck.copy_to(con, f"SELECT * FROM day WHERE window_start >= {period.start_s}"
                              f" AND window_start < {period.end_s}",
                         compacted_path(path, 5, period, day + 1, day + 1, period.start_s,
                                        period.end_s))
        period = period_of(DAY, day_start)
        duck.copy_to(con, duck.rollup_select("day", 60), compacted_path(
            path, 60, period, day + 1, day + 1, period.start_s, period.end_s))
        con.execute(f"CREATE {'OR REPLACE ' if day else ''}TABLE hours AS"
                    f" {duck.rollup_select('day', 3600)}" if not day else
                    f"INSERT INTO hours {duck.rollup_select('day', 3600)}")
    month = period_of(MONTH, MONTH_START)
    duck.copy_to(con, "SELECT * FROM hours", compacted_path(
        path, 3600, month, 1, DAYS, MONTH_START, MONTH_START + DAYS * 86400))
    made.touch()


def bench_month() -> None:
    path = OUT / "month"
    began = time.perf_counter()
    make_month(path)
    print(f"month: {DAYS} days x {CLIENTS} clients x 2 directions = "
          f"{DAYS * 17280 * CLIENTS * 2:,} 5-s rows (made in {time.perf_counter() - began:.0f}"
          f" s, kept once made)")
    for level in ("5s", "1m", "1h"):
        print(f"  size on disk, {level}: {folder_size(path / level) / 2**20:.1f} MiB")
    reader = HistoryReader(path)
    when = TimeRange(MONTH_START, MONTH_START + DAYS * 86400)
    for resolution in (5, 60, 3600):
        seconds, totals = best_of(3, lambda r=resolution: reader.client_totals(when, r))
        top = totals.sums.sum(axis=(1, 2))[:10]
        one, rows = best_of(3, lambda r=resolution: reader.window_rows(when, r,
                                                                     "198.51.100.7"))
        print(f"  {resolution:>4} s: top 10 clients and per-class totals for the month"
              f" {seconds * 1000:.0f} ms ({totals.windows:,} windows, top {top[0]:,} B);"
              f" one client's series {one * 1000:.0f} ms ({len(rows):,} rows)")
    picked = pick_resolution(reader.resolutions(), when)

    def dashboard() -> int:
        totals = reader.client_totals(when, picked.seconds)
        rows = reader.window_rows(when, picked.seconds)
        return len(totals.clients) + len(rows)

    times = []
    for _ in range(20):
        began = time.perf_counter()
        dashboard()
        times.append(time.perf_counter() - began)
    print(f"  the month's dashboard at the picked {picked.seconds} s (client totals + every"
          f" row): median {np.median(times) * 1000:.0f} ms, p99 (max of 20)"
          f" {max(times) * 1000:.0f} ms")
    frame_s, frame = best_of(1, lambda: reader.rows_frame(when, picked.seconds))
    print(f"  excel --history's frame of the month at {picked.seconds} s: {len(frame):,} rows"
          f" in {frame_s * 1000:.0f} ms")
    csv_path = OUT / "month-day.csv"
    if not csv_path.exists():
        con = duck.connect()
        con.execute(f"""COPY (SELECT strftime(to_timestamp(window_start), '%Y-%m-%d %H:%M:%S')
            AS window_start, strftime(to_timestamp(window_start + 5), '%Y-%m-%d %H:%M:%S')
            AS window_end, client_ip, direction, http_bytes + ftp_bytes + tcp_bytes
            + udp_bytes + other_bytes AS total_bytes, http_bytes, ftp_bytes, tcp_bytes,
            udp_bytes, other_bytes FROM {duck.parts_source(sorted((path / '5s').glob(
            '*-01T*.parquet')) or sorted((path / '5s').glob('*.parquet'))[:24])})
            TO {duck.literal(str(csv_path))} (FORMAT csv, HEADER true)""")
    import pandas as pd

    began = time.perf_counter()
    day = pd.read_csv(csv_path, dtype={"client_ip": str})
    top = day.groupby("client_ip")[["total_bytes", "http_bytes"]].sum().nlargest(10,
                                                                                "total_bytes")
    day_s = time.perf_counter() - began
    print(f"  CSV-only path, pandas over one day's CSV ({len(day):,} rows,"
          f" {csv_path.stat().st_size / 2**20:.0f} MiB): top 10 in {day_s:.1f} s, so about"
          f" {day_s * DAYS:.0f} s for the month's 30 files (top {int(top.iloc[0, 0]):,} B)")


def bench_web() -> None:
    from fastapi.testclient import TestClient

    from traffic_capture.web.api import WebApp
    from traffic_capture.web.memory_store import MemoryStore
    from traffic_capture.web.stored_history import StoredHistory
    from traffic_capture.web.tiered import TieredReader

    path = OUT / "month"
    make_month(path)
    end = MONTH_START + DAYS * 86400
    memory = MemoryStore(5, 3600, services=True)
    rng = np.random.default_rng(1)
    clients = [f"198.51.100.{c}" for c in range(CLIENTS)]
    for window in range(720):  # the month's last hour again, as a daemon's memory holds it
        start = end - 3600 + 5 * window
        memory.add_window(start, start + 5, clients * 2, np.repeat([True, False], CLIENTS),
                          rng.integers(0, 100000, (2 * CLIENTS, 5)))
    app = TestClient(WebApp(memory, lambda: {}, reader=TieredReader(
        memory, StoredHistory(path))).app)
    print(f"web: the API over the month, {CLIENTS} clients (median and max of 20 calls)")
    for span, seconds in (("hour", 3600), ("day", 86400), ("week", 7 * 86400),
                          ("month", DAYS * 86400)):
        for what, url in (("/api/clients", f"/api/clients?seconds={seconds}&limit=1000"),
                          ("drill-down", f"/api/clients/198.51.100.7?seconds={seconds}")):
            times = []
            for _ in range(20):
                began = time.perf_counter()
                response = app.get(url)
                times.append(time.perf_counter() - began)
                assert response.status_code == 200, response.text
            print(f"  last {span:<5} {what:<12} at {response.json()['resolution']:>4} s:"
                  f" median {np.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms,"
                  f" {len(response.content) / 1024:.0f} KiB")


def bench_import() -> None:
    csv = OUT / "import-1m.csv"
    if not csv.exists():
        con = duck.connect()
        con.execute(f"""COPY (SELECT strftime(to_timestamp({MONTH_START} + 5 * w),
            '%Y-%m-%d %H:%M:%S') AS window_start,
            strftime(to_timestamp({MONTH_START} + 5 * w + 5), '%Y-%m-%d %H:%M:%S')
            AS window_end, '203.0.113.' || c AS client_ip,
            CASE WHEN d = 0 THEN 'in' ELSE 'out' END AS direction,
            h1 + h2 + h3 + h4 + h5 AS total_bytes, h1 AS http_bytes, h2 AS ftp_bytes,
            h3 AS tcp_bytes, h4 AS udp_bytes, h5 AS other_bytes
            FROM (SELECT w, c, d, hash(w, c, d, 1) % 100000 AS h1,
                  hash(w, c, d, 2) % 100000 AS h2, hash(w, c, d, 3) % 100000 AS h3,
                  hash(w, c, d, 4) % 100000 AS h4, hash(w, c, d, 5) % 100000 AS h5
                  FROM range(25000) t(w), range(20) u(c), range(2) v(d))
            ORDER BY 1, 3, 4) TO {duck.literal(str(csv))} (FORMAT csv, HEADER true)""")
    store = OUT / "import-store"
    shutil.rmtree(store, ignore_errors=True)
    code = ("import sys, time; from traffic_capture.history.importer import import_csv;"
            "t = time.perf_counter(); r = import_csv(sys.argv[1], [sys.argv[2]], utc=True);"
            "print(r.rows, time.perf_counter() - t)")
    command = [sys.executable, "-c", code, str(store), str(csv)]
    gnu_time = Path("/usr/bin/time")
    if gnu_time.exists():
        command = [str(gnu_time), "-f", "%M", *command]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    rows, seconds = done.stdout.split()
    peak = (f"{int(done.stderr.strip().splitlines()[-1]) / 1024:.0f} MiB"
            if gnu_time.exists() else "n/a (no GNU time)")
    print(f"import: {int(rows):,} rows ({csv.stat().st_size / 2**20:.0f} MiB CSV) in"
          f" {float(seconds):.1f} s = {int(rows) / float(seconds):,.0f} rows/s, peak RSS"
          f" {peak}; the store {folder_size(store) / 2**20:.1f} MiB")


def bench_layouts() -> None:
    hours, days = OUT / "month", OUT / "month-day-parts"
    make_month(hours)
    make_month(days, DAY)
    when = TimeRange(MONTH_START, MONTH_START + DAYS * 86400)
    week = TimeRange(MONTH_START + 23 * 86400, MONTH_START + DAYS * 86400)
    for name, path in (("hour parts (chosen)", hours), ("day parts", days)):
        reader = HistoryReader(path)
        month_s, _ = best_of(3, lambda r=reader: r.client_totals(when, 5))
        week_s, _ = best_of(3, lambda r=reader: r.client_totals(week, 5))
        hour_s, _ = best_of(3, lambda r=reader: r.window_rows(
            TimeRange(week.end_s - 3600, week.end_s), 5))
        files = len(list((path / "5s").glob("*.parquet")))
        print(f"layouts: 5-s rows of a month in {name}: {files} files,"
              f" {folder_size(path / '5s') / 2**20:.0f} MiB; client totals month"
              f" {month_s * 1000:.0f} ms, week {week_s * 1000:.0f} ms; the last hour's rows"
              f" {hour_s * 1000:.0f} ms")
    for every, label in ((1, "every window (5 s)"), (6, "every 30 s (chosen)")):
        path = OUT / f"flush-{every}"
        shutil.rmtree(path, ignore_errors=True)
        writer = HistoryWriter(path, server_name="bench", flush_seconds=1e9)
        names = [f"198.51.100.{n}" for n in range(CLIENTS)] * 2
        inbound = np.repeat([True, False], CLIENTS)
        counts = np.ones((2 * CLIENTS, 5), dtype=np.int64)
        began = time.perf_counter()
        for number in range(720):
            start = MONTH_START + 5 * number
            writer.add_window(start, start + 5, names, inbound, counts)
            if number % every == every - 1:
                writer.flush(force=True)
        spent = time.perf_counter() - began
        files = len(choose(list_store(path).parts).chosen)
        reader = HistoryReader(path)
        read_s, _ = best_of(3, lambda r=reader: r.client_totals(
            TimeRange(MONTH_START, MONTH_START + 3600), 5))
        writer.close(merges=0)
        print(f"layouts: an hour of {CLIENTS} clients flushed {label}: {spent:.1f} s of the"
              f" sink's thread, {files} parts read (all levels) before the hour's merge,"
              f" its client totals {read_s * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("write", "month", "web", "import", "layouts"))
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    import duckdb

    print(f"DuckDB {duckdb.__version__}, Python {sys.version.split()[0]},"
          f" {os.cpu_count()} cores")
    steps = {"write": bench_write, "month": bench_month, "web": bench_web,
             "import": bench_import, "layouts": bench_layouts}
    for name, step in steps.items():
        if args.only in (None, name):
            step()


if __name__ == "__main__":
    main()
