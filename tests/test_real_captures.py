"""The daemon against captures made by real tools, with tshark as the independent oracle.

Traffic: curl (HTTP and FTP in PASV, EPSV, PORT, EPRT modes, FTP over IPv6) against
http.server and pyftpdlib, dig against dnsmasq (UDP and TCP), ping and ping -6, plain TCP on
2222, between two network namespaces; recorded at once by tcpdump (Ethernet, Linux cooked v1
and v2, nanosecond pcap, 160-byte snap length) and dumpcap (pcapng).
"""

from __future__ import annotations

import shutil
import signal
import struct
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests import netns
from tests import realtools_traffic as rt
from tests import tshark_oracle as oracle
from tests.realtools_fixtures import require_lab
from tests.realtools_traffic import SERVERS, Recording, record, run_daemon

# One xdist worker: the lab recording (module fixture `rec`) is made once.
pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.xdist_group("real-captures")]

FTP_FILE_SIZE = 150_000
CAPTURED = ("eth.pcap", "sll.pcap", "sll2.pcap", "eth.pcapng", "snap160.pcap", "eth.nsec.pcap")
# What each file must really be, so the coverage claimed by the names is real (capinfos -t -E).
FORMATS = {
    "eth.pcap": ("pcap", "ether"),
    "sll.pcap": ("pcap", "linux-sll"),
    "sll2.pcap": ("pcap", "linux-sll2"),
    "eth.pcapng": ("pcapng", "ether"),
    "snap160.pcap": ("pcap", "ether"),
    "eth.nsec.pcap": ("nsecpcap", "ether"),
    "sll2.pcapng": ("pcapng", "linux-sll2"),
}


@pytest.fixture(scope="session")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    """One traffic session recorded by every capture kind (built once for the module)."""
    require_lab()
    dest = tmp_path_factory.mktemp("realcap")
    recording = record(dest, CAPTURED, FTP_FILE_SIZE)
    # A format no tool here writes live: cooked v2 inside pcapng, converted by editcap.
    converted = dest / "sll2.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(recording.files["sll2.pcap"]),
                    str(converted)], check=True, capture_output=True, timeout=30)
    recording.files["sll2.pcapng"] = converted
    return recording


def daemon_rows(reads: list[Path], out: Path, window: int = 5, tz: str = "UTC") -> pd.DataFrame:
    """Run the daemon, require exit 0, return its rows grouped per key."""
    res = run_daemon(reads, out, window=window, tz=tz)
    assert res.returncode == 0, f"daemon exited {res.returncode}: {res.stderr}"
    return oracle.read_csv(out)


def assert_same(expected: pd.DataFrame, got: pd.DataFrame, what: str) -> None:
    differences = oracle.diff(expected, got)
    assert not differences, f"{what}: daemon vs tshark oracle\n{differences}"


def totals(rows: pd.DataFrame, client: str, direction: str) -> pd.Series:
    """A client's bytes per column in one direction, over all windows."""
    sel = rows[(rows.client_ip == client) & (rows.direction == direction)]
    return sel[oracle.BYTE_COLUMNS].sum()


@pytest.mark.parametrize("name", list(FORMATS))
def test_capture_is_the_format_it_claims(rec: Recording, name: str) -> None:
    res = subprocess.run(["capinfos", "-t", "-E", "-T", "-r", str(rec.files[name])],
                         capture_output=True, text=True, timeout=30, check=True)
    fields = res.stdout.strip().split("\t")
    assert tuple(fields[1:3]) == FORMATS[name], res.stdout


@pytest.mark.parametrize("name", list(FORMATS))
def test_daemon_matches_tshark(rec: Recording, name: str, tmp_path: Path) -> None:
    expected = oracle.expected_rows(rec.files[name], SERVERS)
    assert expected.window_start.nunique() >= 2, "the traffic should span two windows"
    assert_same(expected, daemon_rows([rec.files[name]], tmp_path / "out.csv"), name)


@pytest.mark.parametrize(("window", "tz"), [(1, "Asia/Kolkata"), (60, "America/New_York")])
def test_other_windows_and_time_zones(rec: Recording, window: int, tz: str,
                                      tmp_path: Path) -> None:
    path = rec.files["eth.pcap"]
    expected = oracle.expected_rows(path, SERVERS, window=window, tz=tz)
    got = daemon_rows([path], tmp_path / "out.csv", window=window, tz=tz)
    assert_same(expected, got, f"--window {window} TZ={tz}")


def test_all_link_types_see_the_same_bytes(rec: Recording) -> None:
    """The captures saw the same packets, so their per-client bytes agree (windows aside)."""
    sums = {}
    for name, path in rec.files.items():
        pk = oracle.packets(path, SERVERS)
        pk = pk[~pk.client_ip.isin(SERVERS)]  # loopback traffic: only `-i any` sees it
        sums[name] = pk.groupby(["client_ip", "direction", "cls"])["bytes"].sum()
    first = sums["eth.pcap"]
    for name, series in sums.items():
        pd.testing.assert_series_equal(series, first, check_names=False, obj=name)


def test_tshark_tracks_passive_ftp_and_oracle_tracks_all_modes(rec: Recording) -> None:
    """tshark tags PASV/EPSV data connections itself; active ones come from the announcements.

    Checks the oracle's own FTP logic: every passive stream tshark tagged is one the oracle
    derives from the announced endpoints, and there is one data connection per download.
    """
    rows = oracle.tshark_fields(rec.files["eth.pcap"])
    tagged, announced = oracle.ftp_data_streams(rows)
    assert len(announced) == len(rec.traffic.ftp_modes) == 5
    assert tagged and tagged <= announced
    # tshark 4.0 tags the three passive downloads (PASV, EPSV, EPSV over IPv6), and not the
    # active ones (it expects PORT data from port 20, and mis-registers EPRT).
    assert len(tagged) >= 3


def test_ftp_file_bytes_are_ftp_bytes(rec: Recording, tmp_path: Path) -> None:
    """The file travels on the data connection: its bytes must be ftp, in every FTP mode."""
    got = daemon_rows([rec.files["eth.pcap"]], tmp_path / "out.csv")
    assert set(rec.traffic.ftp_modes.values()) == {"PASV", "EPSV", "PORT", "EPRT", "EPSV6"}
    for client, mode in rec.traffic.ftp_modes.items():
        out = totals(got, client, "out")
        assert out["ftp_bytes"] >= FTP_FILE_SIZE, f"{mode} from {client}: {out.to_dict()}"
        assert out["tcp_bytes"] == 0, f"{mode} data counted as plain tcp: {out.to_dict()}"


def test_http_dns_ping_and_plain_tcp_classes(rec: Recording, tmp_path: Path) -> None:
    got = daemon_rows([rec.files["eth.pcap"]], tmp_path / "out.csv")
    t = rec.traffic
    for client in t.http_clients:
        assert totals(got, client, "out")["http_bytes"] >= rt.HTTP_BODY_SIZE, client
    for client in t.dns_clients:
        for direction in ("in", "out"):
            assert totals(got, client, direction)["udp_bytes"] > 0, (client, direction)
    # 3 echo requests and 3 replies of 84 IPv4 bytes (20 IP + 8 ICMP + 56 data) each.
    v4 = netns.CLIENT_V4[0]
    assert totals(got, v4, "in")["other_bytes"] == 3 * 84
    assert totals(got, v4, "out")["other_bytes"] == 3 * 84
    # 3 ICMPv6 echoes of 104 bytes each way; neighbour discovery may add some.
    assert totals(got, netns.CLIENT_V6, "in")["other_bytes"] >= 3 * 104
    assert totals(got, netns.CLIENT_V6, "out")["other_bytes"] >= 3 * 104
    # Extension headers (Destination Options on TCP, Hop-by-Hop on UDP) are followed.
    for client in t.ext6_clients:
        inn, out = totals(got, client, "in"), totals(got, client, "out")
        assert inn["http_bytes"] > 0 and out["http_bytes"] >= rt.HTTP_BODY_SIZE, client
        assert inn["udp_bytes"] > 0 and out["udp_bytes"] > 0, client
    # The ICMP port-unreachable quotes the UDP header: still other. Its client sent nothing
    # else over UDP and received no other ICMP: 20 + 8 IPv4/UDP headers + payload, and the
    # error is 20 + 8 IPv4/ICMP headers + the quoted datagram.
    sent = 20 + 8 + rt.CLOSED_PORT_PAYLOAD
    assert totals(got, t.closed_port_client, "in")["udp_bytes"] == sent
    assert totals(got, t.closed_port_client, "out")["other_bytes"] == 20 + 8 + sent
    assert totals(got, t.closed_port_client, "out")["udp_bytes"] == 0
    for client in t.tcp_plain_clients:
        out, inn = totals(got, client, "out"), totals(got, client, "in")
        assert out["tcp_bytes"] >= rt.TCP_PLAIN_REPLY and inn["tcp_bytes"] >= rt.TCP_PLAIN_SEND
        assert out["http_bytes"] == out["ftp_bytes"] == 0


@pytest.mark.parametrize("name", ["sll.pcap", "sll2.pcap"])
def test_server_talking_to_itself_is_in(rec: Recording, name: str, tmp_path: Path) -> None:
    """Both ends are servers: direction `in`, client = source; localhost counts nowhere."""
    assert rec.traffic.server_self
    got = daemon_rows([rec.files[name]], tmp_path / "out.csv")
    server = got[got.client_ip == netns.SERVER_V4]
    assert set(server.direction) == {"in"}
    inn = totals(got, netns.SERVER_V4, "in")
    assert inn["http_bytes"] >= rt.HTTP_BODY_SIZE and inn["other_bytes"] >= 4 * 84
    assert "127.0.0.1" not in set(got.client_ip)


def _split(path: Path, dest: Path, chunk: int = 20) -> tuple[Path, Path]:
    """Two files holding alternate runs of `chunk` packets, so reading must merge by time."""
    count = int(subprocess.run(["capinfos", "-c", "-M", "-T", "-r", str(path)], check=True,
                               capture_output=True, text=True, timeout=30).stdout.split()[-1])
    runs = [(i, min(i + chunk - 1, count)) for i in range(1, count + 1, chunk)]
    parts = []
    for side in (0, 1):
        out = dest / f"part{side}{path.suffix}"
        ranges = [f"{a}-{b}" for a, b in runs[side::2]]
        subprocess.run(["editcap", "-r", str(path), str(out), *ranges], check=True,
                       capture_output=True, timeout=30)
        parts.append(out)
    return parts[0], parts[1]


@pytest.mark.parametrize("name", ["eth.pcap", "eth.pcapng"])
def test_two_reads_merge_like_one_file(rec: Recording, name: str, tmp_path: Path) -> None:
    path = rec.files[name]
    a, b = _split(path, tmp_path)
    # The pieces are a real split: each holds packets, and mergecap rebuilds the whole.
    merged = tmp_path / f"merged{path.suffix}"
    subprocess.run(["mergecap", "-w", str(merged), str(a), str(b)], check=True,
                   capture_output=True, timeout=30)
    expected = oracle.expected_rows(path, SERVERS)
    assert_same(expected, oracle.expected_rows(merged, SERVERS), "mergecap (oracle)")
    assert len(oracle.packets(a, SERVERS)) and len(oracle.packets(b, SERVERS))
    assert_same(expected, daemon_rows([a, b], tmp_path / "ab.csv"), "--read a --read b")
    assert_same(expected, daemon_rows([b, a], tmp_path / "ba.csv"), "--read b --read a")


def _cut_last_packet(path: Path, cut: int = 7) -> None:
    """Truncate the file `cut` bytes into its last packet record, dropping what follows it.

    dumpcap ends pcapng with an interface-statistics block; cutting that would cut no packet.
    """
    data = path.read_bytes()
    end = len(data)
    if path.suffix == ".pcapng":
        order = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        offset, last_packet_end = 0, 0
        while offset + 8 <= len(data):
            block_type, length = struct.unpack_from(order + "II", data, offset)
            offset += length
            if block_type in (3, 6):  # simple or enhanced packet block
                last_packet_end = offset
        end = last_packet_end
    with path.open("r+b") as f:
        f.truncate(end - cut)


@pytest.mark.parametrize("name", ["eth.pcap", "sll2.pcap", "eth.pcapng"])
def test_file_cut_short_mid_packet(rec: Recording, name: str, tmp_path: Path) -> None:
    """A capture whose writer died mid-record: the complete packets still count, exit 0."""
    path = tmp_path / name
    shutil.copyfile(rec.files[name], path)
    frames = len(oracle.tshark_fields(path))
    _cut_last_packet(path)
    # tshark reads every record but the cut one, and says the file was cut short.
    rows = oracle.tshark_fields(path, allow_truncated=True)
    assert len(rows) == frames - 1
    pk = oracle.packets(path, SERVERS, allow_truncated=True)
    res = run_daemon([path], tmp_path / "out.csv")
    assert res.returncode == 0, f"daemon exited {res.returncode}: {res.stderr}"
    assert_same(oracle.rows_from_packets(pk), oracle.read_csv(tmp_path / "out.csv"), name)
    assert res.stderr.strip(), "the daemon should warn that the file was cut short"


def test_lab_cleans_up_after_a_failure() -> None:
    """A test that fails inside the lab leaves no namespace and no process behind."""
    require_lab()
    with pytest.raises(RuntimeError, match="boom"), netns.netns_lab() as made:
        proc = made.popen(made.server_ns, ["sleep", "30"])
        made.run(made.client_ns, ["ping", "-c", "1", "-W", "2", netns.SERVER_V4], timeout=10)
        raise RuntimeError("boom")
    assert proc.poll() == -signal.SIGTERM
    assert not netns.namespaces_left()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            timeout=10).stdout
    assert made.server_ns not in listed and made.client_ns not in listed
