"""What the CSV's tests share: real closed windows and captures to feed the CSV sink, a file
made immutable (chattr) to refuse it, and waits on what it wrote."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
from scapy.utils import wrpcap

from tests.frames import IP, SERVER4, UDP, Ether, Raw

T0 = 1_700_000_000  # 2023-11-14 22:13:20 UTC
HOUR = 3600


def chattr(flag: str, path: Path) -> None:
    subprocess.run(["chattr", flag, str(path)], check=True, timeout=10)


def wait_until(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def data_rows(path: Path) -> int:
    return max(0, len(path.read_text().splitlines()) - 1)


def closed_windows(count: int) -> list:
    """`count` real closed windows of three clients each, one a second apart."""
    from traffic_capture.frames import NS
    from traffic_capture.windows import WindowAggregator

    aggregator = WindowAggregator(1)
    for second in range(count):
        aggregator.add_batch(np.full(3, (T0 + second) * NS, dtype=np.int64),
                             np.zeros(3, dtype=bool), np.zeros(3, dtype=np.uint64),
                             np.array([0xC6336401, 0xC6336402, 0xC6336403], dtype=np.uint64),
                             np.ones(3, dtype=bool), np.full(3, 3, dtype=np.int64),
                             np.full(3, 100 + second, dtype=np.int64))
    return aggregator.close_all()


def udp_capture(path: Path, offsets: list[int], clients: int = 1) -> Path:
    """A pcap of one UDP packet per client to SERVER4 at T0 + each offset (seconds)."""
    packets = []
    for offset in offsets:
        for client in range(clients):
            packet = (Ether() / IP(src=f"198.51.100.{client + 1}", dst=SERVER4)
                      / UDP(sport=40000, dport=53) / Raw(b"q" * 50))
            packet.time = T0 + offset
            packets.append(packet)
    wrpcap(str(path), packets)
    return path
