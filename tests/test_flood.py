"""Bounded under floods: --max-clients folds clients past the cap into one `other` row per
direction. Bytes are conserved class by class, rows per window stay under 2 * (N + 1), a
client carrying 1/N of a window's bytes always keeps its own row, and a 1,000,000-source
flood is counted in bounded memory."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import DAEMON, child_env
from tests.requirements import tool
from traffic_capture import windows
from traffic_capture.frames import NS
from traffic_capture.rules import CLASSES
from traffic_capture.windows import OTHER_CLIENT, WindowAggregator

POOL = 12  # clients 198.51.100.1-12; some of them heavy


@st.composite
def flood(draw: st.DrawFn) -> tuple[list[tuple[int, int, bool, int, int]], int, int]:
    """Packets (time, client, inbound, class, bytes), a cap, and how often to compact. Sizes
    are drawn freely: the hard case for a cap is a client heavy by many small packets that
    come after a few big ones from others."""
    packets = []
    for _ in range(draw(st.integers(1, 120))):
        client = draw(st.integers(0, POOL - 1))
        size = draw(st.sampled_from([40, 60, 100, 576, 1500, 9000, 30000]))
        packets.append((draw(st.integers(0, 12 * NS)), client, draw(st.booleans()),
                        draw(st.integers(0, len(CLASSES) - 1)), size))
    return packets, draw(st.integers(1, 5)), draw(st.integers(1, 20))


# Two big senders first, then client 0 heavy by five small packets (2,000 of 3,900 bytes, over
# 1/2 of the window): keeping the top two clients exact and folding the rest would fold it at
# every compaction; the Misra-Gries decrements make room for it.
ADVERSARIAL = ([(0, 2, True, 0, 1000), (0, 1, True, 0, 900)] + [(0, 0, True, 0, 400)] * 5,
               2, 1)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(ADVERSARIAL, 1)
@given(flood(), st.integers(1, 7))
def test_folding_conserves_bytes_bounds_rows_and_keeps_heavy_clients(
        case: tuple[list[tuple[int, int, bool, int, int]], int, int], batch: int) -> None:
    packets, cap, compact = case
    saved, windows.COMPACT_PACKETS = windows.COMPACT_PACKETS, compact
    try:
        aggregator = WindowAggregator(5, max_clients=cap)
        for at in range(0, len(packets), batch):
            part = packets[at:at + batch]
            aggregator.add_batch(
                np.array([p[0] for p in part], dtype=np.int64),
                np.zeros(len(part), dtype=bool), np.zeros(len(part), dtype=np.uint64),
                np.array([0xC6336400 + p[1] + 1 for p in part], dtype=np.uint64),
                np.array([p[2] for p in part], dtype=bool),
                np.array([p[3] for p in part], dtype=np.int64),
                np.array([p[4] for p in part], dtype=np.int64))
        rows = [row for window in aggregator.close_all() for row in window.rows()]
    finally:
        windows.COMPACT_PACKETS = saved
    got = pd.DataFrame(rows)
    truth = pd.DataFrame(packets, columns=["t", "client", "inbound", "cls", "bytes"])
    truth["window_start"] = truth["t"] // (5 * NS) * 5
    truth["direction"] = np.where(truth["inbound"], "in", "out")
    for (start, direction), exact in truth.groupby(["window_start", "direction"]):
        mine = got[(got["window_start"] == start) & (got["direction"] == direction)]
        # Every class's bytes, exactly.
        for k, name in enumerate(CLASSES):
            assert mine[f"{name}_bytes"].sum() == exact.loc[exact["cls"] == k, "bytes"].sum()
        assert len(mine[mine["client_ip"] != OTHER_CLIENT]) <= cap
        assert (mine["client_ip"] == OTHER_CLIENT).sum() <= 1
        # Heavy hitters: at least 1/cap of the window's bytes (both directions) -> own row.
        window_bytes = truth.loc[truth["window_start"] == start, "bytes"].sum()
        per_client = exact.groupby("client")["bytes"].sum()
        for client, total in per_client.items():
            if total * cap >= window_bytes:
                assert f"198.51.100.{client + 1}" in set(mine["client_ip"]), (client, total)
        # No client is credited more than it sent.
        for _, row in mine[mine["client_ip"] != OTHER_CLIENT].iterrows():
            sent = per_client[int(row["client_ip"].rsplit(".", 1)[1]) - 1]
            assert row["total_bytes"] <= sent


def spoofed_flood(path: Path, packets: int, seconds: int, heavy_share: float) -> int:
    """A pcap of UDP packets to 192.0.2.1 from a new random source each (a spoofed flood),
    one heavy client among them, `seconds` long; returns the IP bytes of all."""
    rng = np.random.default_rng(20261129)
    frame = bytearray(14 + 28)
    frame[12:14] = b"\x08\x00"
    frame[14:24] = bytes([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17])
    frame[30:34] = bytes([192, 0, 2, 1])
    frame[34:42] = bytes([0x9C, 0x40, 0, 53, 0, 8, 0, 0])
    records = np.zeros((packets, 16 + len(frame)), dtype=np.uint8)
    ts = np.sort(rng.integers(0, seconds * 1_000_000, packets)) + 1_700_000_000 * 1_000_000
    header = np.zeros((packets, 4), dtype="<u4")
    header[:, 0], header[:, 1] = ts // 1_000_000, ts % 1_000_000
    header[:, 2] = header[:, 3] = len(frame)
    records[:, :16] = header.view(np.uint8).reshape(packets, 16)
    records[:, 16:] = np.frombuffer(bytes(frame), dtype=np.uint8)
    sources = rng.integers(0x0B000000, 0xDF000000, packets, dtype=np.uint32)
    heavy = rng.random(packets) < heavy_share
    sources[heavy] = 0xC6336407  # 198.51.100.7
    records[:, 16 + 26:16 + 30] = sources.astype(">u4").view(np.uint8).reshape(packets, 4)
    pcap_header = np.array([0xA1B2C3D4, 0x00040002, 0, 0, 65535, 1], dtype="<u4")
    with path.open("wb") as out:
        out.write(pcap_header.tobytes()[:24])
        out.write(records.tobytes())
    return packets * 28


@pytest.mark.xdist_group("timing")
def test_a_million_spoofed_sources_are_counted_in_bounded_memory(tmp_path: Path) -> None:
    gnu_time = tool("/usr/bin/time")  # GNU time: a child's own peak memory
    pcap = tmp_path / "flood.pcap"
    total = spoofed_flood(pcap, 1_000_000, 50, heavy_share=0.02)
    out, cap = tmp_path / "t.csv", 10_000
    result = subprocess.run([gnu_time, "-f", "maxrss_kb=%M", *DAEMON, "--read", str(pcap),
                             "--server-ip", "192.0.2.1", "--out", str(out), "--quiet",
                             "--max-clients", str(cap)],
                            capture_output=True, text=True, timeout=300, env=child_env())
    assert result.returncode == 0, result.stderr
    peak_mib = int(result.stderr.rsplit("maxrss_kb=", 1)[1]) / 1024
    assert peak_mib < 200, f"peak memory {peak_mib:.0f} MiB"
    rows = pd.read_csv(out, dtype={"client_ip": str})
    assert rows["total_bytes"].sum() == rows["udp_bytes"].sum() == total  # exact
    per_window = rows.groupby(["window_start", "direction"]).size()
    assert per_window.max() <= cap + 1 and len(rows) <= 10 * 2 * (cap + 1)
    # 2 % of the packets (far over 1/10,000 of any window) come from one client: its row is
    # there in every window, never folded.
    heavy = rows[rows["client_ip"] == "198.51.100.7"]
    assert heavy["window_start"].nunique() == rows["window_start"].nunique()
    assert (rows["client_ip"] == OTHER_CLIENT).sum() == rows["window_start"].nunique()


def test_no_real_address_is_taken_for_the_other_row() -> None:
    """Found by the window property test: the all-ones IPv6 address is a client like any."""
    aggregator = WindowAggregator(5, max_clients=1)
    ones = np.uint64(2**64 - 1)
    aggregator.add_batch(np.zeros(4, dtype=np.int64), np.array([True, True, False, False]),
                         np.array([ones, ones, 0, 0], dtype=np.uint64),
                         np.array([ones, ones, 0xC6336401, 0], dtype=np.uint64),
                         np.ones(4, dtype=bool), np.zeros(4, dtype=np.int64),
                         np.array([500, 500, 10, 20], dtype=np.int64))
    (window,) = aggregator.close_all()
    # Misra-Gries with a cap of 1 takes the second largest total (20) from every client:
    # the heavy one keeps 980, the 50 taken are `other`, and the row sorts last.
    assert [(row.client_ip, row.total_bytes) for row in window.rows()] == [
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 980), ("other", 50)]
