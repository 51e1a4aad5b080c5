"""--packet-log against real traffic recorded by tcpdump, with tshark as the oracle; the file's
mode, rotation, stops, a full disk, and the command line's checks."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests import packetlog_traffic as traffic
from tests.conftest import (
    STEPS_IN_USE,
    Daemon,
    child_env,
    fill_disk,
    needs_root,
    needs_tools,
    ping,
    read_rows,
    run_cli,
    start_tcpdump,
    stop_tcpdump,
)
from tests.packetlog_traffic import CLIENT, SERVER, Packet, expected_preview, md5_hex
from traffic_capture.sinks.log_lines import KEYS

# One xdist worker: the recording (module fixture `recorded`) is made once.
pytestmark = [pytest.mark.root, pytest.mark.xdist_group("packet-log")]


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run_log(pcap: Path, out_dir: Path, *extra: str) -> tuple[list[dict], Path, Path]:
    """The daemon on a capture file with the packet log; its lines, the log and the CSV."""
    out_dir.mkdir(parents=True, exist_ok=True)
    log, csv = out_dir / "packets.jsonl", out_dir / "traffic.csv"
    result = run_cli(["--read", str(pcap), "--server-ip", SERVER, "--out", str(csv),
                      "--packet-log", str(log), "--quiet", *extra], TZ="UTC")
    assert result.returncode == 0, result.stderr
    return read_log(log), log, csv


@pytest.fixture(scope="session")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> traffic.Recorded:
    needs_root()
    needs_tools("ip", "tcpdump", "tshark", "curl", "ping", "ss")
    return traffic.record(tmp_path_factory.mktemp("packetlog"))


def check_line(line: dict, packet: Packet, with_payload: bool) -> None:
    """Every field of one line against tshark's reading of the same packet."""
    assert list(line) == list(KEYS)
    seconds, fraction = packet.epoch.split(".")
    second = datetime.fromtimestamp(int(seconds), timezone.utc)
    assert line["ts"] == f"{second:%Y-%m-%dT%H:%M:%S}.{fraction[:6]}+00:00"  # TZ=UTC
    assert (line["src"], line["dst"]) == (packet.src, packet.dst)
    assert (line["sport"], line["dport"]) == (packet.sport, packet.dport)
    assert line["proto"] == packet.proto
    inbound = packet.src == CLIENT
    assert line["direction"] == ("in" if inbound else "out")
    assert line["client"] == CLIENT
    assert line["class"] == {6: "http", 17: "udp", 1: "other"}[packet.proto]
    assert line["ip_bytes"] == packet.ip_bytes
    if packet.tcp_flags is None:
        assert line["tcp_flags"] is None
    else:
        letters = "".join(c for bit, c in enumerate("FSRPAUEC") if packet.tcp_flags >> bit & 1)
        assert line["tcp_flags"] == letters
    assert line["payload_len"] == packet.payload_len
    if packet.payload is None:  # ICMP: the payload is the IP payload; tshark has no field
        assert line["md5"] is not None and line["preview"] is not None
        return
    captured = packet.payload
    assert line["truncated"] is (len(captured) < packet.payload_len)
    assert line["md5"] == (md5_hex(captured) if captured else None)
    assert line["preview"] == expected_preview(captured)
    assert line["payload_hex"] == (captured.hex() if with_payload else None)


@pytest.mark.netns
def test_every_line_matches_tshark_field_by_field(recorded: traffic.Recorded, tmp_path: Path
                                                  ) -> None:
    lines, log, csv = run_log(recorded.whole, tmp_path)
    packets = traffic.tshark_packets(recorded.whole)
    assert len(lines) == len(packets) > 20
    for line, packet in zip(lines, packets, strict=True):
        check_line(line, packet, with_payload=False)
    assert not any(line["truncated"] for line in lines)
    # The bodies are in the log: MD5 over the payload bytes tshark shows, the preview rules.
    previews = "".join(line["preview"] for line in lines if line["preview"])
    assert 'say "hi"\\ then.tab..new line ... done.' in previews
    assert any(line["preview"].startswith(".." * 16) for line in lines if line["preview"])
    # Every counted byte once: the log's ip_bytes add up to the CSV's total.
    assert sum(line["ip_bytes"] for line in lines) == read_rows(csv)["total_bytes"].sum()
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


@pytest.mark.netns
def test_payload_hex_and_a_cut_capture(recorded: traffic.Recorded, tmp_path: Path) -> None:
    lines, _, csv = run_log(recorded.cut, tmp_path, "--packet-log-payload")
    packets = traffic.tshark_packets(recorded.cut)
    assert len(lines) == len(packets)
    for line, packet in zip(lines, packets, strict=True):
        check_line(line, packet, with_payload=True)
    cut = [line for line in lines if line["truncated"]]
    assert len(cut) >= 4  # the HTTP request and the bodies are longer than 120 bytes
    for line in cut:  # the length comes from the headers, the MD5 from what was captured
        assert line["payload_len"] > len(bytes.fromhex(line["payload_hex"]))
    whole = traffic.tshark_packets(recorded.whole)
    assert [line["payload_len"] for line in lines] == [p.payload_len for p in whole]
    assert sum(line["ip_bytes"] for line in lines) == read_rows(csv)["total_bytes"].sum()


@pytest.mark.parametrize("capture", ["whole", "cut"])
@pytest.mark.netns
def test_without_the_compiled_steps_the_log_and_csv_are_byte_for_byte_the_same(
        recorded: traffic.Recorded, tmp_path: Path, capture: str) -> None:
    """TRAFFIC_CAPTURE_PURE_PYTHON=1 runs what a machine without a C compiler runs (Windows
    without Build Tools): the Python record walk, frame copy and line layout, the last in a
    process of its own. The log and the CSV must not change by a byte."""
    pcap = getattr(recorded, capture)
    outputs = []
    for pure in ("0", "1"):
        folder = tmp_path / pure
        folder.mkdir()
        log, csv = folder / "p.jsonl", folder / "t.csv"
        result = run_cli(["--read", str(pcap), "--server-ip", SERVER, "--out", str(csv),
                          "--packet-log", str(log), "--packet-log-payload", "--quiet"],
                         TZ="UTC", TRAFFIC_CAPTURE_PURE_PYTHON=pure)
        assert result.returncode == 0, result.stderr
        outputs.append((log.read_bytes(), csv.read_bytes()))
    assert outputs[0][0].count(b"\n") > 20
    assert outputs[0] == outputs[1]
    for pure, expected in (("0", "True False False False False"),
                           ("1", "False True True True True")):
        said = subprocess.run([sys.executable, "-c", STEPS_IN_USE], capture_output=True, text=True,
                              env=child_env(TRAFFIC_CAPTURE_PURE_PYTHON=pure), check=True)
        assert said.stdout.split() == expected.split()


@pytest.mark.netns
def test_rotation_keeps_the_newest_lines_in_owner_only_files(recorded: traffic.Recorded,
                                                             tmp_path: Path) -> None:
    full, _, _ = run_log(recorded.whole, tmp_path / "full")
    max_bytes = 2048
    _, log, _ = run_log(recorded.whole, tmp_path / "rotated", "--packet-log-max-mb",
                        str(max_bytes / 1024 / 1024), "--packet-log-keep", "2")
    files = [log.with_name(log.name + ".2"), log.with_name(log.name + ".1"), log]
    assert all(path.exists() for path in files)
    assert not log.with_name(log.name + ".3").exists()
    kept: list[dict] = []
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        text = path.read_text()
        assert len(text.encode()) <= max_bytes or text.count("\n") == 1
        assert text.endswith("\n")
        kept += [json.loads(line) for line in text.splitlines()]
    assert kept == full[-len(kept):]  # in order, nothing torn, the oldest files gone
    assert len(kept) < len(full)


@pytest.mark.netns
def test_an_existing_log_is_appended_to_and_narrowed_to_its_owner(recorded: traffic.Recorded,
                                                                   tmp_path: Path) -> None:
    log = tmp_path / "packets.jsonl"
    log.write_text('{"earlier": true}\n')
    os.chmod(log, 0o644)
    lines, _, _ = run_log(recorded.whole, tmp_path)
    assert lines[0] == {"earlier": True} and len(lines) > 1
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_live_capture_logs_every_counted_packet_up_to_sigint(netns: str, tmp_path: Path
                                                             ) -> None:
    """Live, on loopback: every packet tcpdump saw is a line once the daemon is stopped with
    Ctrl+C, payloads longer than the default snap length are logged as truncated, and the
    sum of ip_bytes is the CSV's total."""
    needs_tools("tcpdump", "tshark", "curl", "ping", "ss")
    log, csv, pcap = tmp_path / "logs" / "p.jsonl", tmp_path / "traffic.csv", tmp_path / "ref.pcap"
    servers = traffic.start_servers(netns, tmp_path / "www")
    dump = start_tcpdump(netns, ["-i", "lo", "-n", "-w", str(pcap), f"host {SERVER}"])
    daemon = Daemon(netns, ["--server-ip", SERVER, "--out", str(csv), "--packet-log", str(log),
                            "--window", "3600"])
    try:
        traffic.make_traffic(netns, tmp_path)
        # A 100 KB body: segments on loopback are longer than the 1536-byte snap length.
        (tmp_path / "www" / "big.bin").write_bytes(os.urandom(100_000))
        subprocess.run(["ip", "netns", "exec", netns, "curl", "-sS", "--noproxy", "*",
                        "--interface", CLIENT, "-o", "/dev/null",
                        f"http://{SERVER}:{traffic.HTTP_PORT}/big.bin"], check=True,
                       timeout=20)
        time.sleep(0.5)
        stop_tcpdump(dump)
    finally:
        code = daemon.stop(signal.SIGINT)
        for server in servers:
            server.kill()
    assert code == 0, daemon.stderr
    lines = read_log(log)
    packets = traffic.tshark_packets(pcap)

    def key(item: dict | Packet) -> tuple:
        if isinstance(item, dict):
            fields = (item["src"], item["dst"], item["sport"], item["dport"], item["ip_bytes"])
        else:
            fields = (item.src, item.dst, item.sport, item.dport, item.ip_bytes)
        return tuple(-1 if field is None else field for field in fields)

    assert sorted(map(key, lines)) == sorted(map(key, packets))
    assert sum(line["ip_bytes"] for line in lines) == read_rows(csv)["total_bytes"].sum()
    cut = [line for line in lines if line["truncated"]]
    assert cut, "no segment was longer than the snap length"
    for line in cut:
        assert line["ip_bytes"] > 1536 - 14 - 40 and line["payload_len"] > 1400
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


@pytest.mark.netns
@pytest.mark.slow
def test_a_full_disk_drops_log_lines_never_csv_rows(recorded: traffic.Recorded,
                                                    small_disk: Path, tmp_path: Path) -> None:
    """A 64 KiB disk under the log: the CSV is complete, the log holds whole lines only, and
    the lines it could not take are counted as dropped and said."""
    log, csv = small_disk / "p.jsonl", tmp_path / "traffic.csv"
    fill_disk(small_disk, 8 * 1024)  # the payloads in hex take ~30 KB
    started = time.monotonic()
    result = run_cli(["--read", str(recorded.whole), "--read", str(recorded.whole),
                      "--server-ip", SERVER, "--out", str(csv), "--packet-log", str(log),
                      "--packet-log-payload"], TZ="UTC")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 50
    assert "cannot write the packet log" in result.stderr
    assert "lines were dropped" in result.stderr, result.stderr
    assert log.read_text().endswith("\n") or log.stat().st_size == 0
    read_log(log)  # whole lines only
    packets = traffic.tshark_packets(recorded.whole)
    assert read_rows(csv)["total_bytes"].sum() == 2 * sum(p.ip_bytes for p in packets)


@pytest.mark.parametrize("args, message", [
    (["--packet-log-payload"], "--packet-log-payload needs --packet-log"),
    (["--packet-log-max-mb", "5"], "--packet-log-max-mb needs --packet-log"),
    (["--packet-log", "x.jsonl", "--packet-log-max-mb", "-1"], "must be 0"),
    (["--snaplen", "100"], "must be 384 to 262144"),
    (["--read", "f.pcap", "--snaplen", "2000"], "--snaplen applies to live capture"),
])
def test_bad_packet_log_options_are_usage_errors(args: list[str], message: str,
                                                 tmp_path: Path) -> None:
    result = run_cli(["--server-ip", "192.0.2.1", "--out", str(tmp_path / "t.csv"), *args])
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_log_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    result = run_cli(["--read", str(Path(__file__).parent.parent / "samples" / "sample.pcap"),
                      "--server-ip", "192.0.2.1", "--out", str(tmp_path / "t.csv"),
                      "--packet-log", str(tmp_path)])
    assert result.returncode == 1
    assert "is a directory" in result.stderr and "Traceback" not in result.stderr


def test_without_the_log_no_packet_is_copied_and_with_it_the_status_line_counts_drops(
        tmp_path: Path) -> None:
    from traffic_capture.app import make_sinks
    from traffic_capture.cli import parse_config
    from traffic_capture.pipeline import Counters
    from traffic_capture.sinks import FanOut, SinkFigures
    from traffic_capture.status import Reporter, Snapshot, describe

    base = ["--server-ip", "192.0.2.1", "--out", str(tmp_path / "t.csv")]
    config = parse_config(base)
    assert config is not None and config.live_snaplen() == 384
    plain = FanOut(make_sinks(config, Reporter(quiet=True)))
    assert plain.packet_tap is None and not plain.packet_frames  # the tap is not even built
    config = parse_config([*base, "--packet-log", str(tmp_path / "p.jsonl")])
    assert config is not None and config.live_snaplen() == 1536
    logged = FanOut(make_sinks(config, Reporter(quiet=True)))
    assert logged.packet_tap is not None and logged.packet_frames
    line = describe(Snapshot(Counters(), 0, [SinkFigures("log", "lines", 10, 2, 5)], None))
    assert "log lines 10 written, 2 pending, 5 dropped" in line


def test_sighup_reopens_the_log_that_logrotate_moved(netns: str, tmp_path: Path) -> None:
    """`mv p.jsonl p.jsonl.1; kill -HUP`: later lines go to a new p.jsonl (owner-only), none
    into the moved file, none lost; the summary names a file that exists."""
    log, csv = tmp_path / "p.jsonl", tmp_path / "t.csv"
    moved = tmp_path / "p.jsonl.1"
    daemon = Daemon(netns, ["--server-ip", "127.0.0.1", "--out", str(csv),
                            "--packet-log", str(log)])
    try:
        ping(netns, 3)
        deadline = time.monotonic() + 20
        while (not log.exists() or len(read_log(log)) < 6) and time.monotonic() < deadline:
            time.sleep(0.1)
        log.rename(moved)
        daemon.process.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        ping(netns, 2)
        time.sleep(0.5)
    finally:
        code = daemon.stop()
    assert code == 0, daemon.stderr
    # Each ping on lo is a request and a reply, both to and from the server: two lines.
    assert len(read_log(moved)) == 6
    assert len(read_log(log)) == 4
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert f"written to {csv}, {log}" in daemon.stderr
    assert read_rows(csv)["other_bytes"].sum() == 5 * 2 * 84
