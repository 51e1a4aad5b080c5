"""Live capture by the daemon as a child process, in a private network namespace."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import (
    Daemon,
    in_netns,
    needs_tools,
    ping,
    read_rows,
    run_cli,
    start_tcpdump,
    stop_tcpdump,
)

ICMP_ECHO_IPV4 = 84  # 20 IP + 8 ICMP + 56 data, ping's default
ICMP_ECHO_IPV6 = 104  # 40 IPv6 + 8 ICMPv6 + 56 data


@pytest.mark.parametrize("backend", ["linux", "pcap"])
def test_ping_on_loopback_counts_each_packet_once(netns: str, tmp_path: Path, backend: str
                                                  ) -> None:
    needs_tools("ping")
    out = tmp_path / "traffic.csv"
    daemon = Daemon(netns, ["--server-ip", "127.0.0.1", "--out", str(out), "--backend", backend])
    try:
        ping(netns, 7)
        time.sleep(0.5)
    finally:
        code = daemon.stop(signal.SIGINT)
    assert code == 0, daemon.stderr
    rows = read_rows(out)
    assert rows["total_bytes"].sum() == 7 * 2 * ICMP_ECHO_IPV4
    assert (rows["other_bytes"] == rows["total_bytes"]).all()
    assert set(rows["client_ip"]) == {"127.0.0.1"} and set(rows["direction"]) == {"in"}
    assert "kernel drops: 0" in daemon.stderr


def test_ipv6_ping_and_sigterm_write_the_partial_window_with_its_real_bounds(
        netns: str, tmp_path: Path) -> None:
    needs_tools("ping")
    out = tmp_path / "traffic.csv"
    daemon = Daemon(netns, ["--server-ip", "::1", "--out", str(out), "--window", "3600"])
    try:
        ping(netns, 3, "::1")
    finally:
        code = daemon.stop(signal.SIGTERM)
    assert code == 0, daemon.stderr
    rows = read_rows(out)
    assert rows["total_bytes"].sum() == 3 * 2 * ICMP_ECHO_IPV6
    start = rows["window_start"].iloc[0]
    assert start.endswith(":00:00")  # aligned to the hour, not to the stop
    end = rows["window_end"].iloc[0]
    assert int(end[11:13]) == (int(start[11:13]) + 1) % 24


@pytest.mark.xdist_group("timing")
def test_duration_stops_the_daemon_by_itself(netns: str, tmp_path: Path) -> None:
    out = tmp_path / "traffic.csv"
    started = time.monotonic()
    result = subprocess.run(
        in_netns(netns, [sys.executable, "-m", "traffic_capture", "--server-ip", "127.0.0.1",
                         "--out", str(out), "--duration", "1.5", "--quiet"]),
        capture_output=True, text=True, timeout=30, cwd=Path(__file__).parent.parent)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 15
    assert out.read_text().startswith("window_start,")  # header only: nothing was sent


def test_the_default_interface_for_a_loopback_server_is_loopback(netns: str, tmp_path: Path
                                                                  ) -> None:
    needs_tools("ping")
    out = tmp_path / "traffic.csv"
    daemon = Daemon(netns, ["--server-ip", "127.0.0.1", "--out", str(out)])
    try:
        ping(netns, 2)
    finally:
        daemon.stop()
    assert "capturing on lo" in daemon.stderr
    assert read_rows(out)["total_bytes"].sum() == 2 * 2 * ICMP_ECHO_IPV4


def test_live_capture_and_a_file_of_the_same_packets_give_the_same_rows(
        netns: str, tmp_path: Path) -> None:
    """Both back ends and tcpdump watch the same packets; all three give identical rows."""
    needs_tools("ping", "tcpdump", "curl")
    pcap = tmp_path / "same.pcap"
    tcpdump = start_tcpdump(netns, ["-i", "lo", "-w", str(pcap), "-s", "0", "host", "127.0.0.1"])
    linux = Daemon(netns, ["--server-ip", "127.0.0.1", "--out", str(tmp_path / "linux.csv"),
                           "--backend", "linux", "--window", "1"])
    pcap_daemon = Daemon(netns, ["--server-ip", "127.0.0.1", "--out", str(tmp_path / "pcap.csv"),
                                 "--backend", "pcap", "--window", "1"])
    server = subprocess.Popen(in_netns(netns, [sys.executable, "-m", "http.server", "8000",
                                               "--bind", "127.0.0.1",
                                               "--directory", str(tmp_path)]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        (tmp_path / "page.bin").write_bytes(b"p" * 200_000)
        ping(netns, 3)
        subprocess.run(in_netns(netns, ["curl", "-s", "-o", "/dev/null", "--retry", "5",
                                        "--retry-connrefused",
                                        "http://127.0.0.1:8000/page.bin"]),
                       check=True, timeout=30)
        time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(10)
        assert linux.stop() == 0
        assert pcap_daemon.stop() == 0
        stop_tcpdump(tcpdump)
    result = run_cli(["--read", str(pcap), "--server-ip", "127.0.0.1", "--window", "1",
                      "--out", str(tmp_path / "file.csv"), "--quiet"])
    assert result.returncode == 0, result.stderr
    linux_rows = read_rows(tmp_path / "linux.csv")
    assert linux_rows["http_bytes"].sum() > 200_000
    assert linux_rows["other_bytes"].sum() == 3 * 2 * ICMP_ECHO_IPV4
    for other in ("pcap.csv", "file.csv"):
        assert (tmp_path / "linux.csv").read_text() == (tmp_path / other).read_text(), other


UDP_SENDER = ("import socket, sys\n"
              "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              "for _ in range(5):\n"
              "    s.sendto(b'x' * 100, ('127.0.0.1', 9))\n")


def test_a_filter_applies_alike_to_live_capture_and_to_files(netns: str, tmp_path: Path) -> None:
    needs_tools("ping", "tcpdump")
    pcap = tmp_path / "all.pcap"
    tcpdump = start_tcpdump(netns, ["-i", "lo", "-w", str(pcap)])
    daemon = Daemon(netns, ["--server-ip", "127.0.0.1", "--out", str(tmp_path / "live.csv"),
                            "--filter", "udp", "--window", "60"])
    try:
        ping(netns, 2)
        # 5 UDP datagrams of 128 IP bytes; each draws an ICMP port-unreachable the filter drops.
        subprocess.run(in_netns(netns, [sys.executable, "-c", UDP_SENDER]), check=True,
                       timeout=30)
        time.sleep(0.5)
    finally:
        assert daemon.stop() == 0
        stop_tcpdump(tcpdump)
    live = read_rows(tmp_path / "live.csv")
    assert live["total_bytes"].sum() == live["udp_bytes"].sum() == 5 * 128
    result = run_cli(["--read", str(pcap), "--server-ip", "127.0.0.1", "--filter", "udp",
                      "--window", "60", "--out", str(tmp_path / "file.csv"), "--quiet"])
    assert result.returncode == 0, result.stderr
    assert live.equals(read_rows(tmp_path / "file.csv"))
    unfiltered = run_cli(["--read", str(pcap), "--server-ip", "127.0.0.1", "--window", "60",
                          "--out", str(tmp_path / "unfiltered.csv"), "--quiet"])
    assert unfiltered.returncode == 0
    assert read_rows(tmp_path / "unfiltered.csv")["other_bytes"].sum() > 2 * 2 * ICMP_ECHO_IPV4


def test_without_a_server_the_interface_addresses_are_the_servers(netns: str, tmp_path: Path
                                                                  ) -> None:
    needs_tools("ping")
    out = tmp_path / "traffic.csv"
    daemon = Daemon(netns, ["--iface", "lo", "--out", str(out)])
    try:
        ping(netns, 2, "::1")
    finally:
        daemon.stop()
    assert "server addresses: 127.0.0.1, ::1 (from the capture interfaces' addresses)" \
        in daemon.stderr
    assert read_rows(out)["total_bytes"].sum() == 2 * 2 * ICMP_ECHO_IPV6


UDP_BURSTS = ("import socket, sys, time\n"
              "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              "for burst in range(int(sys.argv[1])):\n"
              "    for port in range(1000, 2000):\n"
              "        s.sendto(b'x' * 1000, ('127.0.0.1', port))\n"
              "    time.sleep(0.02)\n")


def test_a_busy_portable_capture_restarts_its_spool_and_counts_like_a_file(
        netns: str, tmp_path: Path) -> None:
    """60,000 datagrams: several pcap_dispatch calls of 16,384 packets and a restart of the
    16 MiB spool (records of 16 + 384 bytes) on the way; the rows are those of tcpdump's
    file of the same packets."""
    needs_tools("tcpdump")
    pcap = tmp_path / "busy.pcap"
    tcpdump = start_tcpdump(netns, ["-i", "lo", "-Q", "in", "-s", "2000", "-w", str(pcap),
                                    "udp"])
    daemon = Daemon(netns, ["--server-ip", "127.0.0.1", "--out", str(tmp_path / "live.csv"),
                            "--backend", "pcap", "--filter", "udp", "--window", "60"])
    try:
        subprocess.run(in_netns(netns, [sys.executable, "-c", UDP_BURSTS, "60"]), check=True,
                       timeout=60)
        time.sleep(0.5)
    finally:
        assert daemon.stop() == 0
        stop_tcpdump(tcpdump)
    live = read_rows(tmp_path / "live.csv")
    assert live["udp_bytes"].sum() == 60_000 * 1028
    assert "kernel drops: 0" in daemon.stderr
    result = run_cli(["--read", str(pcap), "--server-ip", "127.0.0.1", "--window", "60",
                      "--out", str(tmp_path / "file.csv"), "--quiet"])
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "live.csv").read_text() == (tmp_path / "file.csv").read_text()


@pytest.mark.parametrize("backend", ["linux", "pcap"])
def test_packets_waiting_in_the_kernel_at_stop_are_all_counted(netns: str, tmp_path: Path,
                                                               backend: str) -> None:
    """The daemon is frozen while 60,000 small datagrams arrive, then thawed and stopped at
    once: many ring blocks (libpcap batches) wait, more than one batch takes, and the stop
    counts them all."""
    out = tmp_path / "stop.csv"
    daemon = Daemon(netns, ["--server-ip", "127.0.0.1", "--out", str(out), "--backend", backend,
                            "--filter", "udp", "--window", "60"])
    daemon.process.send_signal(signal.SIGSTOP)
    try:
        # At full speed: the ring's 32 blocks are handed over by their 50 ms timeout while
        # the daemon is frozen, so a slow sender would fill the ring (kernel drops).
        subprocess.run(in_netns(netns, [sys.executable, "-c", UDP_BURSTS.replace(
            "b'x' * 1000", "b'x' * 18").replace("time.sleep(0.02)", "pass"), "60"]),
            check=True, timeout=60)
        time.sleep(0.2)
    finally:
        # Ctrl+C first, so that the stop is under way as soon as the daemon runs again.
        daemon.process.send_signal(signal.SIGINT)
        daemon.process.send_signal(signal.SIGCONT)
    assert daemon.stop(signal.SIGCONT) == 0, daemon.stderr
    assert read_rows(out)["udp_bytes"].sum() == 60_000 * 46, daemon.stderr
