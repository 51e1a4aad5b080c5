"""The web's load figures (issue 11): /api/clients?seconds=3600 latency with 1,000 clients in
every window of an hour of 5-second windows, while 20 event-stream clients listen and 50 API
requests/s arrive; and the history's memory. Prints figures; not a test.

The 20 streams open at once (each gets its last 60 s: 12 windows of 2,000 rows) from a child
process, as browsers would: not from this one, whose GIL the server's threads would then share
with 20 Python readers of 4 MB each (--listeners-in-process measures it that way). The API
requests are made from this process (a thread each), so their latency includes that client.
One request of each kind first warms up what the server loads lazily on its first request.

    .venv/bin/python benchmarks/web_load.py [--clients 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from traffic_capture.web import answers  # noqa: E402
from traffic_capture.web.api import WebApp  # noqa: E402
from traffic_capture.web.http_server import WebServer  # noqa: E402
from traffic_capture.web.memory_store import MemoryStore  # noqa: E402

# The stream clients' process: prints "ready" before it opens them, and the events received
# once its standard input is closed.
LISTENER = r"""
import sys, threading, urllib.request
url, streams = sys.argv[1], int(sys.argv[2])
events = [0] * streams
def listen(i):
    with urllib.request.urlopen(url, timeout=60) as stream:
        for line in stream:
            if line.startswith(b"event:"):
                events[i] += 1
print("ready", flush=True)
for i in range(streams):
    threading.Thread(target=listen, args=(i,), daemon=True).start()
sys.stdin.read()
print(sum(events), flush=True)
"""


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--stream-seconds", type=int, default=60,
                        help="each new stream's backlog: its last S seconds")
    parser.add_argument("--listeners-in-process", action="store_true",
                        help="read the streams from threads of this process (the server's)")
    args = parser.parse_args()

    before = rss_mib()
    store = MemoryStore(5, 3600)
    clients = [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(args.clients)]
    names = clients * 2
    inbound = np.repeat([True, False], args.clients)
    rng = np.random.default_rng(1)
    start = 1_700_000_000
    built = time.perf_counter()
    for k in range(3600 // 5 + 10):  # an hour and a bit: the oldest are evicted
        counts = rng.integers(0, 100_000, size=(len(names), 5))
        store.add_window(start + 5 * k, start + 5 * k + 5, names, inbound, counts)
    built = time.perf_counter() - built
    summary = store.summary()
    print(f"history: {summary['history_windows']} windows, {summary['history_rows']:,} rows; "
          f"built in {built:.2f} s; peak RSS {before:.0f} -> {rss_mib():.0f} MiB")

    direct = []
    for _ in range(50):
        t = time.perf_counter()
        answers.clients(store, answers.last(store, 3600), 20)
        direct.append(time.perf_counter() - t)
    print(f"answers.clients(3600) alone: median {np.median(direct) * 1000:.1f} ms, "
          f"max {max(direct) * 1000:.1f} ms")

    web = WebApp(store, lambda: {"mode": "bench"})
    server = WebServer(web, "127.0.0.1", 0)
    server.start()
    stop = threading.Event()
    events = [0] * args.streams

    def listen(i: int) -> None:
        with urllib.request.urlopen(stream_url, timeout=60) as stream:
            while not stop.is_set():
                line = stream.readline()
                if not line:
                    return
                if line.startswith(b"event:"):
                    events[i] += 1

    # Warm-up: the first request of each kind imports and sets up what FastAPI, anyio and
    # uvicorn load lazily (~0.1 s of the event loop, once per process), not measured.
    for warm_up in ("api/clients?seconds=3600&limit=20", "api/stream?seconds=1"):
        with urllib.request.urlopen(server.url + warm_up, timeout=30) as response:
            response.readline()
    stream_url = server.url + f"api/stream?seconds={args.stream_seconds}"
    child = None
    if args.listeners_in_process:
        for i in range(args.streams):
            threading.Thread(target=listen, args=(i,), daemon=True).start()
    elif args.streams:
        child = subprocess.Popen([sys.executable, "-c", LISTENER, stream_url, str(args.streams)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert child.stdin is not None and child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
    latencies: list[float] = []
    lock = threading.Lock()

    def request() -> None:
        t = time.perf_counter()
        with urllib.request.urlopen(server.url + "api/clients?seconds=3600&limit=20",
                                    timeout=30) as response:
            response.read()
        with lock:
            latencies.append(time.perf_counter() - t)

    workers = []
    begin = time.perf_counter()
    for i in range(int(args.seconds * args.rate)):
        delay = begin + i / args.rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        worker = threading.Thread(target=request, daemon=True)
        worker.start()
        workers.append(worker)
    for worker in workers:
        worker.join(60)
    stop.set()
    if child is not None:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.close()
        events[0] = int(child.stdout.readline())
        child.wait(30)
    cached = web.events.cached_bytes / 2**20
    server.stop()
    ms = np.array(latencies) * 1000
    print(f"{len(ms)} requests of /api/clients?seconds=3600 at {args.rate:g}/s with "
          f"{args.streams} event streams open ({sum(events)} events received): "
          f"p50 {np.percentile(ms, 50):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms, "
          f"max {ms.max():.1f} ms; peak RSS {rss_mib():.0f} MiB (stream text cached: "
          f"{cached:.1f} MiB)")


if __name__ == "__main__":
    main()
