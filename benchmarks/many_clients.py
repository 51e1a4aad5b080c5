"""How a window's cost grows with its number of clients (issue: 100 k clients must not stall).

Prints, for 1 k, 10 k and 100 k distinct clients in one window: the time to count their
packets through the batch path, the time the capture thread spends closing the window, and
the time the writer thread spends turning it into CSV text. Run: python benchmarks/many_clients.py
"""

from __future__ import annotations

import time

import numpy as np

from traffic_capture.frames import Batch
from traffic_capture.linktypes import DLT_RAW
from traffic_capture.pipeline import Pipeline
from traffic_capture.servers import ServerSet, parse_server
from traffic_capture.sinks.csv_file import format_window
from traffic_capture.windows import ClosedWindow

SERVER = "192.0.2.1"


def udp_batch(clients: int, packets_per_client: int) -> Batch:
    """Raw-IP UDP packets from `clients` distinct addresses to the server, all in one window."""
    count = clients * packets_per_client
    frame = np.zeros((count, 28), dtype=np.uint8)
    frame[:, 0], frame[:, 3], frame[:, 9] = 0x45, 28, 17  # IPv4, total length 28, UDP
    client = 0xC6330000 + (np.arange(count) % clients)  # from 198.51.0.0 upwards
    for k in range(4):
        frame[:, 12 + k] = (client >> (24 - 8 * k)) & 0xFF
    frame[:, 16:20] = (192, 0, 2, 1)
    starts = np.arange(count, dtype=np.int64) * 28
    ts_ns = np.full(count, 1_700_000_000 * 1_000_000_000, dtype=np.int64)
    return Batch(frame.reshape(-1), starts, np.full(count, 28, dtype=np.int64), ts_ns, DLT_RAW)


def main() -> None:
    print(f"{'clients':>8} {'packets':>9} {'count (s)':>10} {'close, capture thread (s)':>26} "
          f"{'rows + CSV text, writer thread (s)':>35}")
    for clients in (1_000, 10_000, 100_000):
        batch = udp_batch(clients, 4)
        closed: list[ClosedWindow] = []
        pipeline = Pipeline(ServerSet([parse_server(SERVER)]), 5, closed.append)
        started = time.perf_counter()
        pipeline.feed_batch(batch)
        counted = time.perf_counter()
        pipeline.finish()
        closing = time.perf_counter()
        text = format_window(closed[0], ",")
        written = time.perf_counter()
        assert text.count("\n") == clients
        print(f"{clients:>8,} {len(batch):>9,} {counted - started:>10.3f} "
              f"{closing - counted:>26.6f} {written - closing:>35.3f}")


if __name__ == "__main__":
    main()
