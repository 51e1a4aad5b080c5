"""Counting what the admin means: --http-ports (443 as web traffic, say) and --utc (no
repeated hour when the clocks go back), through the real command."""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import TCP
from scapy.utils import wrpcap

from tests.conftest import read_rows, run_cli
from tests.frames import IP, SERVER4, Ether, Raw

CLIENT = "198.51.100.7"


def tls_and_web(path: Path, times: list[float]) -> Path:
    packets = []
    for when in times:
        for port in (443, 80, 21):
            packet = (Ether() / IP(src=CLIENT, dst=SERVER4) / TCP(sport=40000, dport=port)
                      / Raw(b"x" * 100))
            packet.time = when
            packets.append(packet)
    wrpcap(str(path), packets)
    return path


def count(pcap: Path, out: Path, *extra: str, tz: str = "UTC"
          ) -> tuple[str, dict[str, int]]:
    result = run_cli(["--read", str(pcap), "--server-ip", SERVER4, "--out", str(out), *extra],
                     TZ=tz)
    assert result.returncode == 0, result.stderr
    rows = read_rows(out)
    return result.stderr, {name: int(rows[f"{name}_bytes"].sum())
                           for name in ("http", "ftp", "tcp")}


def test_http_ports_count_tls_as_web_traffic_and_say_so(tmp_path: Path) -> None:
    pcap = tls_and_web(tmp_path / "t.pcap", [1_700_000_000])
    said, default = count(pcap, tmp_path / "default.csv")
    assert default == {"http": 140, "ftp": 140, "tcp": 140}  # 443 is tcp by default
    assert "counting as http" not in said
    said, web = count(pcap, tmp_path / "web.csv", "--http-ports", "80,443")
    assert web == {"http": 280, "ftp": 140, "tcp": 0}
    assert "counting as http: TCP ports 80, 443 (--http-ports)" in said
    _, ftp_wins = count(pcap, tmp_path / "ftp.csv", "--http-ports", "443,21")
    assert ftp_wins == {"http": 140, "ftp": 140, "tcp": 140}  # 21 stays FTP, 80 is tcp now


def test_bad_http_ports_are_usage_errors(tmp_path: Path) -> None:
    for value in ("80,https", "0", "70000", ""):
        result = run_cli(["--read", "x.pcap", "--server-ip", SERVER4, "--http-ports", value])
        assert result.returncode == 2 and "is not a TCP port" in result.stderr, value


def test_utc_keeps_the_hour_the_clocks_go_back_apart(tmp_path: Path) -> None:
    # 2026-10-25 in Berlin: 00:30 UTC is 02:30 summer time, 01:30 UTC is 02:30 winter time.
    pcap = tls_and_web(tmp_path / "t.pcap", [1_792_888_200, 1_792_891_800])
    count(pcap, tmp_path / "local.csv", tz="Europe/Berlin")
    local = read_rows(tmp_path / "local.csv")
    assert local["window_start"].unique().tolist() == ["2026-10-25 02:30:00"]  # one, twice
    assert len(local) == 2  # two rows a pivot would add together
    said, _ = count(pcap, tmp_path / "utc.csv", "--utc", tz="Europe/Berlin")
    utc = read_rows(tmp_path / "utc.csv")
    assert utc["window_start"].tolist() == ["2026-10-25 00:30:00", "2026-10-25 01:30:00"]
    assert utc["window_end"].tolist() == ["2026-10-25 00:30:05", "2026-10-25 01:30:05"]


def test_a_utc_csv_reads_back_to_the_same_windows_in_the_web(tmp_path: Path) -> None:
    """serve --utc (and --web with --utc) read the times as the daemon wrote them."""
    from tests.requirements import needs_module

    needs_module("fastapi", extra="web")
    from traffic_capture.csvformat import Row, format_rows, header_line
    from traffic_capture.web.csv_follow import read_history

    rows = [Row(1_792_888_200, 1_792_888_205, CLIENT, "in", 10, 10, 0, 0, 0, 0),
            Row(1_792_891_800, 1_792_891_805, CLIENT, "in", 20, 20, 0, 0, 0, 0)]
    path = tmp_path / "t.csv"
    path.write_text(header_line(",") + format_rows(rows, ",", utc=True))
    assert read_history(path, 10**9, utc=True) == rows
