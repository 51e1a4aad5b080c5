"""`traffic-capture excel` and `report` on a big CSV (issue 17): seconds and peak RSS, printed,
never asserted.

    python benchmarks/excel_big.py                        # 1,000,000 rows, this checkout
    python benchmarks/excel_big.py --rows 239294          # the issue's 24 h of 15 clients
    python benchmarks/excel_big.py --baseline 64d0c53     # also that commit's code, same CSV
    python benchmarks/excel_big.py --repeat 3             # best of 3 runs each
    python benchmarks/excel_big.py --history              # from a month's history instead

The CSV is written as the daemon writes it (csvformat.format_rows, local time, ','): 5-second
windows, 15 clients each talking in and out in about 46 % of the windows (the issue's 24 hours
of 15 clients held 239,294 rows: 13.85 rows a window), so the span grows with the rows (a
million rows: about 100 hours). Each command runs in a child process, measured by GNU time
(wall seconds, and the peak RSS of the whole command, interpreter included). With
--baseline REV, REV's traffic_capture/ is exported with `git archive` beside the CSV and run
on the same CSV in the same run, the two taking turns, so that the ratio holds on a shared
machine (with --repeat N, the best time of N runs and the highest peak RSS).
With --history, the commands read the month benchmarks/history.py makes (30 days of 100
clients, both directions every 5-second window: 51.8 M rows, and its rollups) instead: the
month and the default week (from its hourly rows), the last hour (1-minute rows) and the
last quarter of an hour (5-second rows).
Everything is written under benchmarks/out/excel/ (git-ignored).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tarfile
import time
from io import BytesIO
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from traffic_capture.csvformat import Row, format_rows, header_line  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "excel"
START_S = 1_772_409_600  # 2026-03-02 00:00 UTC
CLIENTS = 15
TALKING = 13.85 / (2 * CLIENTS)  # share of (client, direction) slots with a row in a window
GNU_TIME = Path("/usr/bin/time")


def make_csv(path: Path, rows: int, seed: int = 17) -> None:
    """`rows` rows of the daemon's CSV, window by window, clients in address order."""
    rng = np.random.default_rng(seed)
    clients = [f"192.0.2.{n}" for n in range(10, 10 + CLIENTS - 3)] + [
        f"2001:db8::{n:x}" for n in range(0x10, 0x13)]
    weight = 1.0 / np.arange(1, CLIENTS + 1)  # a few heavy clients, a long tail
    written = 0
    window = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(header_line(","))
        while written < rows:
            batch: list[Row] = []
            while written + len(batch) < rows and len(batch) < 100_000:
                start = START_S + 5 * window
                talking = rng.random((CLIENTS, 2)) < TALKING
                scale = (weight * 2e6)[:, None, None] * rng.random((CLIENTS, 2, 5))
                counts = (scale * (rng.random((CLIENTS, 2, 5)) < 0.6)).astype(np.int64)
                for index, client in enumerate(clients):
                    for side, direction in enumerate(("in", "out")):
                        if talking[index, side] and written + len(batch) < rows:
                            numbers = counts[index, side].tolist()
                            batch.append(Row(start, start + 5, client, direction,
                                             sum(numbers), *numbers))
                window += 1
            out.write(format_rows(batch, ","))
            written += len(batch)


def export(revision: str) -> Path:
    """REV's package, exported once (no compiled modules: the workbooks need none)."""
    tree = OUT / f"tree-{revision}"
    if not (tree / "traffic_capture").is_dir():
        archive = subprocess.run(["git", "-C", str(REPO), "archive", revision,
                                  "traffic_capture"], check=True, capture_output=True).stdout
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
    return tree


def check_code(tree: Path) -> None:
    """The package a child started as measure() starts it imports is the tree's."""
    found = subprocess.run([sys.executable, "-c", "import traffic_capture as t; print(t.__file__)"],
                           env={**os.environ, "PYTHONPATH": str(tree)}, cwd=tree,
                           capture_output=True, text=True, check=True).stdout.strip()
    if Path(found).resolve() != (tree / "traffic_capture" / "__init__.py").resolve():
        raise SystemExit(f"the child imports {found}, not the code in {tree}")


def month_history() -> Path:
    """benchmarks/history.py's month, made once."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import history as bench_history  # benchmarks/history.py

    path = bench_history.OUT / "month"
    bench_history.make_month(path)
    return path


def measure(tree: Path, command: str, source: list[str], out: Path
            ) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) and stderr of `traffic-capture COMMAND SOURCE` run from
    `tree`."""
    rss_file = out.with_suffix(".rss")
    argv = [sys.executable, "-m", "traffic_capture", command, *source, "--out", str(out)]
    if GNU_TIME.exists():
        argv = [str(GNU_TIME), "-f", "%M", "-o", str(rss_file), *argv]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    began = time.perf_counter()
    # From the tree's folder: `python -m` puts the working folder first on the path.
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=tree)
    seconds = time.perf_counter() - began
    if done.returncode:
        raise SystemExit(f"{command} from {tree} failed: {done.stderr.strip()}")
    rss = int(rss_file.read_text().split()[-1]) / 1024 if rss_file.exists() else float("nan")
    return seconds, rss, done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline", metavar="REV",
                        help="also run this git revision's code on the same CSV")
    parser.add_argument("--only", choices=("excel", "report"), action="append",
                        help="one command (repeatable; default both)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each command and code; the best time is kept")
    parser.add_argument("--history", action="store_true",
                        help="read benchmarks/history.py's month instead of a CSV")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.history:
        bench_history(month_history(), args.only or ("excel", "report"))
        return
    csv = OUT / f"traffic-{args.rows}.csv"
    if not csv.exists():
        began = time.perf_counter()
        make_csv(csv, args.rows)
        print(f"made {csv} ({csv.stat().st_size / 2**20:.0f} MiB) in "
              f"{time.perf_counter() - began:.0f} s")
    trees = [("this checkout", "this", REPO)]
    if args.baseline:
        trees.insert(0, (args.baseline, "base", export(args.baseline)))
    for _name, _tag, tree in trees:
        check_code(tree)
    print(f"{'code':<16} {'command':<8} {'rows':>10} {'seconds':>8} {'peak RSS':>10} "
          f"{'xlsx':>9}")
    figures: dict[tuple[str, str], tuple[float, float]] = {}
    for command in args.only or ("excel", "report"):
        runs: dict[str, list[tuple[float, float, str]]] = {name: [] for name, _, _ in trees}
        for _ in range(args.repeat):
            for name, tag, tree in trees:
                runs[name].append(measure(tree, command, ["--csv", str(csv)],
                                          OUT / f"{command}-{args.rows}-{tag}.xlsx"))
        for name, tag, _tree in trees:
            out = OUT / f"{command}-{args.rows}-{tag}.xlsx"
            seconds = min(run[0] for run in runs[name])
            rss = max(run[1] for run in runs[name])
            figures[name, command] = seconds, rss
            print(f"{name:<16} {command:<8} {args.rows:>10,} {seconds:>8.1f} "
                  f"{rss:>7.0f} MiB {out.stat().st_size / 2**20:>5.1f} MiB", flush=True)
    if args.baseline:
        for command in args.only or ("excel", "report"):
            (t0, m0), (t1, m1) = figures[args.baseline, command], figures["this checkout",
                                                                          command]
            print(f"{command}: {t0 / t1:.1f}x faster, {m0 / m1:.1f}x less memory")


def bench_history(store: Path, commands: list[str] | tuple[str, ...]) -> None:
    ranges = {"month": ["--from", "2026-05-01", "--to", "2026-05-31"],
              "default week": [], "last hour": ["--from", "-1h"],
              "last 15 min": ["--from", "-15m"]}
    print(f"{'history range':<14} {'command':<8} {'seconds':>8} {'peak RSS':>10} {'rows':>8}"
          "  read")
    for command in commands:
        for name, extra in ranges.items():
            out = OUT / f"{command}-history-{name.replace(' ', '-')}.xlsx"
            seconds, rss, said = measure(REPO, command,
                                         ["--history", str(store), "--utc", *extra], out)
            read = re.search(r"its (\S+) rows", said)
            print(f"{name:<14} {command:<8} {seconds:>8.1f} {rss:>7.0f} MiB "
                  f"{_data_rows(out):>8,}  {read.group(1) if read else '?'}", flush=True)


def _data_rows(out: Path) -> int:
    """The Data sheet's rows, from its dimension (the last sheet of the workbook)."""
    import zipfile

    with zipfile.ZipFile(out) as book:
        sheets = sorted(name for name in book.namelist()
                        if re.fullmatch(r"xl/worksheets/sheet\d+.xml", name))
        with book.open(sheets[-1]) as sheet:
            head = sheet.read(4096).decode("utf-8", "replace")
    found = re.search(r'<dimension ref="[A-Z]+\d+:[A-Z]+(\d+)"', head)
    return int(found.group(1)) - 1 if found else 0


if __name__ == "__main__":
    main()
