"""The sink contract: every output has its own queue and thread, so a failing or stalled output
never stops the capture or another output; the per-packet tap owns its bytes.

Fed from the real sample capture through the real FileSource, Pipeline and CSV sink.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd

from tests.conftest import REPO, SAMPLE
from tests.frames import feed_file
from traffic_capture.addresses import address_text, join_address
from traffic_capture.frames import Batch
from traffic_capture.pipeline import CountedPackets, Pipeline
from traffic_capture.servers import ServerSet, parse_server
from traffic_capture.sinks import FanOut, Sink
from traffic_capture.sinks.csv_file import CsvSink
from traffic_capture.windows import ClosedWindow, empty_sums

SERVERS = ServerSet(parse_server(s) for s in ("192.0.2.1", "2001:db8::1"))


class Said:
    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.infos: list[str] = []


def run_sample(sinks: list[Sink], said: Said | None = None) -> Pipeline:
    """The sample through the pipeline into the sinks, as app.Run does, minus threads and
    signals; returns once the capture side is done (the sinks may still be working)."""
    fan_out = FanOut(sinks)
    fan_out.open()
    fan_out.start()
    pipeline = Pipeline(SERVERS, 5, fan_out.window, fan_out.packet_tap, fan_out.packet_frames)
    feed_file(pipeline, SAMPLE)
    return pipeline


def csv_sink(tmp_path: Path, said: Said) -> CsvSink:
    return CsvSink(tmp_path / "traffic.csv", ",", said.warnings.append, said.infos.append)


def expected_total() -> int:
    return int(pd.read_csv(REPO / "samples" / "traffic.csv")["total_bytes"].sum())


class Failing(Sink):
    name = "failing"

    def handle_window(self, window: ClosedWindow) -> None:
        raise RuntimeError("the disk caught fire")


class Stalled(Sink):
    """Blocks on its first window until released: a browser that stopped reading."""

    name = "stalled"

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.release = threading.Event()
        self.windows: list[ClosedWindow] = []

    def handle_window(self, window: ClosedWindow) -> None:
        self.release.wait()
        self.windows.append(window)


class Collecting(Sink):
    name = "collector"
    wants_packets = True
    wants_frames = True

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.received: list[CountedPackets] = []

    def handle_packets(self, packets: CountedPackets) -> None:
        self.received.append(packets)
        self.written += len(packets)


def test_a_failing_sink_stops_alone_and_the_csv_gets_every_row(tmp_path: Path) -> None:
    said = Said()
    csv, failing = csv_sink(tmp_path, said), Failing(said.warnings.append, said.infos.append)
    pipeline = run_sample([failing, csv], said)
    FanOut([failing, csv]).stop()
    assert pd.read_csv(csv.path)["total_bytes"].sum() == expected_total()
    assert csv.figures().written == pipeline.counters.rows_made and csv.figures().pending == 0
    figures = failing.figures()
    assert figures.failed == "RuntimeError: the disk caught fire"
    assert figures.dropped == pipeline.counters.windows_closed - 1  # all after the first
    assert [w for w in said.warnings if "failing" in w] == [
        "the failing output stopped (RuntimeError: the disk caught fire); capture and the "
        "other outputs go on"]


def test_a_stalled_sink_stalls_neither_the_capture_nor_the_csv(tmp_path: Path) -> None:
    said = Said()
    stalled, csv = Stalled(said.warnings.append, said.infos.append), csv_sink(tmp_path, said)
    pipeline = run_sample([stalled, csv])  # returns although `stalled` is blocked
    csv_done = threading.Thread(target=csv.stop)
    csv_done.start()
    csv_done.join(30)
    assert not csv_done.is_alive(), "the CSV waited for the stalled sink"
    assert pd.read_csv(csv.path)["total_bytes"].sum() == expected_total()
    # Every window is pending: in the queue, taken off it, or in the stalled hook.
    assert stalled.figures().pending == pipeline.counters.windows_closed
    stalled.release.set()
    stalled.stop()
    assert len(stalled.windows) == pipeline.counters.windows_closed  # nothing lost meanwhile


def test_a_bounded_sink_drops_and_counts_instead_of_blocking() -> None:
    said = Said()

    class Bounded(Stalled):
        max_queue = 1

    bounded = Bounded(said.warnings.append, said.infos.append)
    bounded.start()
    window = ClosedWindow(0, 5, empty_sums())
    for _ in range(100):  # the capture side: must never wait for the stalled thread
        bounded.window(window)
    bounded.release.set()
    bounded.stop()
    # At most one window in the hook and one in the queue; the rest dropped and counted.
    assert len(bounded.windows) + bounded.dropped == 100
    assert bounded.dropped >= 98


def test_the_tap_carries_every_counted_packet_with_bytes_of_its_own(tmp_path: Path) -> None:
    said = Said()
    collector, csv = Collecting(said.warnings.append, said.infos.append), csv_sink(tmp_path, said)
    pipeline = run_sample([collector, csv])
    FanOut([collector, csv]).stop()
    packets = collector.received
    assert sum(len(p) for p in packets) == pipeline.counters.packets_counted
    assert sum(int(p.ip_bytes.sum()) for p in packets) == expected_total()
    # The file reader reused its buffers long ago: the tap's frames must still be the file's.
    from scapy.utils import rdpcap

    originals = {bytes(p) for p in rdpcap(str(SAMPLE))}
    frames: list[Batch] = [p.frames for p in packets if p.frames is not None]
    assert len(frames) == len(packets)
    assert all(f.frame(i) in originals for f in frames for i in range(len(f)))
    clients = {address_text(join_address(bool(six), int(hi), int(lo)))
               for p in packets
               for six, hi, lo, inbound, shi, slo, dhi, dlo in zip(
                   p.is6, np.where(p.inbound, p.src_hi, p.dst_hi),
                   np.where(p.inbound, p.src_lo, p.dst_lo), p.inbound,
                   p.src_hi, p.src_lo, p.dst_hi, p.dst_lo, strict=True)}
    assert clients == set(pd.read_csv(csv.path)["client_ip"])


def test_without_a_packet_sink_the_tap_is_not_built(tmp_path: Path) -> None:
    said = Said()
    fan_out = FanOut([csv_sink(tmp_path, said)])
    assert fan_out.packet_tap is None and not fan_out.packet_frames
    fields_only = Collecting(said.warnings.append, said.infos.append)
    fields_only.wants_frames = False
    assert FanOut([fields_only]).packet_tap is not None
    assert not FanOut([fields_only]).packet_frames
