"""Soak: the daemon live for a long time at a steady rate, with rotation on (issue 12).

A veth pair between two private namespaces (only namespaces this run creates; deleted at the
end, on Ctrl+C and SIGTERM): tcpreplay sends the benchmark trace at --rate packets/s, looping,
for --minutes; the daemon captures on the other end with --rotate hourly. Every minute it
prints the daemon's memory (RSS) and CPU; at the end, the bytes of every rotated file against
what tcpreplay sent. Prints figures; not a test. Needs root, tcpreplay, iproute2.

    sudo .venv/bin/python benchmarks/soak.py                    # 30 minutes at 20,000 pps
    sudo .venv/bin/python benchmarks/soak.py --minutes 5 --rate 50000
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_trace  # noqa: E402  (sibling scripts, not a package)
import run as bench  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=20_000, help="packets per second")
    parser.add_argument("--packets", type=int, default=100_000, help="trace length (looped)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("soak.py: run it as root (network namespaces, packet capture)", file=sys.stderr)
        return 2
    atexit.register(bench._cleanup)
    signal.signal(signal.SIGTERM, bench._on_signal)
    signal.signal(signal.SIGINT, bench._on_signal)
    pcap = bench.ensure_trace(args.packets)
    meta, clients = gen_trace.load_meta(pcap)
    seconds = args.minutes * 60
    want = int(args.rate * seconds)
    ns = bench.Netns("veth").up()
    work = Path(tempfile.mkdtemp(prefix="tcsoak-"))
    out = work / "traffic.csv"
    daemon = bench._popen(ns.exec(ns.rx_ns, bench.daemon_cmd(
        "--iface", ns.rx_if, "--out", str(out), "--rotate", "hourly")),
        cwd=bench.REPO, env=bench.daemon_env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while ns.packet_sockets() < 1 and daemon.poll() is None:
        time.sleep(0.1)
    time.sleep(0.5)
    pid = bench.leaf_pid(daemon.pid)
    replay = bench._popen(ns.exec(ns.tx_ns, [
        "tcpreplay", "-i", ns.tx_if, f"--pps={args.rate}", f"--limit={want}",
        f"--loop={want // args.packets + 1}", "--preload-pcap", str(pcap)]),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    print(f"soak: {args.minutes:g} min at {args.rate:,} packets/s into {ns.rx_if}, "
          f"--rotate hourly, trace {pcap.name} looped", flush=True)
    print(f"{'minute':>6} {'RSS MiB':>8} {'CPU %':>6} {'files':>5} {'rows':>10}", flush=True)
    start, cpu_before, minute, samples = time.monotonic(), bench.cpu_seconds(pid), 0, []
    while replay.poll() is None:
        time.sleep(max(0.0, start + 60 * (minute + 1) - time.monotonic()))
        minute += 1
        cpu_now = bench.cpu_seconds(pid)
        files = sorted(work.glob("traffic*.csv"))
        rows = sum(max(len(f.read_bytes().splitlines()) - 1, 0) for f in files)
        samples.append(rss_mib(pid))
        print(f"{minute:>6} {samples[-1]:>8.1f} {100 * (cpu_now - cpu_before) / 60:>6.1f} "
              f"{len(files):>5} {rows:>10,}", flush=True)
        cpu_before = cpu_now
    assert replay.stdout is not None
    sent_text = replay.stdout.read().decode(errors="replace")
    time.sleep(2.5)  # the last window is due
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGINT)
    _, stderr = daemon.communicate(timeout=60)
    stats = bench.parse_tcpreplay(sent_text)
    sent = int(stats["successful"] or stats["actual_packets"] or 0)
    got = pd.concat([bench.read_rows(f) for f in sorted(work.glob("traffic*.csv"))])
    totals = bench.compare_totals(got, bench.expected_by_key(meta, clients, sent))
    settled = samples[2:] or samples
    print(f"sent {sent:,} packets at {stats['pps'] or 0:,.0f} pps; "
          f"daemon exit {daemon.returncode}; "
          f"{bench.parse_drops(stderr.decode(errors='replace'))}")
    print(f"bytes: {totals['got_bytes']:,} of {totals['expected_bytes']:,} "
          f"({100 * totals['share']:.3f} %), missing {totals['missing_bytes']:,}, "
          f"excess {totals['excess_bytes']:,}")
    if settled:
        print(f"memory after minute 2: {min(settled):.1f} to {max(settled):.1f} MiB "
              f"(growth {max(settled) - settled[0]:+.1f} MiB)")
    ns.down()
    return 0 if totals["missing_bytes"] == totals["excess_bytes"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
