"""The browsers' side of issue 11's live figure: while `run.py` replays at 300,000 packets/s
into a daemon started with `--web 127.0.0.1:PORT`, this opens 20 event streams and sends 50
API requests/s to it, inside the capture's private namespace, until the daemon goes away; then
prints the requests' latency and the events received. run.py prints the capture's share.

    sudo .venv/bin/python benchmarks/web_live_load.py --port 18080 &
    sudo .venv/bin/python benchmarks/run.py --live-only --rates 300000 \
        --daemon-args '--web 127.0.0.1:18080'

Only the namespace run.py creates (tcb<pid>rx) is used. Prints figures; not a test.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

# Run inside the namespace: streams in threads, requests at a steady rate, until refused.
CLIENT = r"""
import sys, threading, time, urllib.request, urllib.error
base, streams, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
events, latencies, stop = [0] * streams, [], threading.Event()
def listen(i):
    try:
        with urllib.request.urlopen(base + "api/stream?seconds=60", timeout=30) as stream:
            for line in stream:
                if line.startswith(b"event:"):
                    events[i] += 1
    except Exception:
        pass
for i in range(streams):
    threading.Thread(target=listen, args=(i,), daemon=True).start()
def ask():
    start = time.perf_counter()
    try:
        urllib.request.urlopen(base + "api/clients?seconds=3600&limit=20", timeout=10).read()
        latencies.append(time.perf_counter() - start)
    except Exception:
        stop.set()
next_at = time.perf_counter()
while not stop.is_set():
    threading.Thread(target=ask, daemon=True).start()
    next_at += 1 / rate
    time.sleep(max(0.0, next_at - time.perf_counter()))
latencies.sort()
if latencies:
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
    print(f"{len(latencies)} requests at {rate:g}/s with {streams} streams open "
          f"({sum(events)} events): p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, "
          f"max {latencies[-1] * 1000:.1f} ms")
"""


def namespace() -> str | None:
    names = Path("/var/run/netns").iterdir() if Path("/var/run/netns").is_dir() else []
    return next((n.name for n in names if re.fullmatch(r"tcb\d+rx", n.name)), None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--wait", type=float, default=300.0, help="seconds to wait for run.py")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("web_live_load.py: run it as root (it enters run.py's namespace)", file=sys.stderr)
        return 2
    deadline = time.monotonic() + args.wait
    base = f"http://127.0.0.1:{args.port}/"
    while time.monotonic() < deadline:
        name = namespace()
        if name and subprocess.run(["ip", "netns", "exec", name, sys.executable, "-c",
                                    f"import urllib.request; urllib.request.urlopen('{base}"
                                    "api/status', timeout=1)"],
                                   capture_output=True, timeout=10).returncode == 0:
            result = subprocess.run(["ip", "netns", "exec", name, sys.executable, "-c", CLIENT,
                                     base, str(args.streams), str(args.rate)],
                                    capture_output=True, text=True, timeout=600)
            print(result.stdout.strip() or result.stderr.strip()[-500:])
            return 0
        time.sleep(0.2)
    print("web_live_load.py: no daemon with --web appeared", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
