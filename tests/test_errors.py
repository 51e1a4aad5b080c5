"""Bad input: one line on stderr, a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.utils import wrpcap

from tests.conftest import (
    DAEMON,
    REPO,
    Daemon,
    child_env,
    needs_root,
    needs_tools,
    ping,
    read_rows,
    run_cli,
)
from tests.frames import IP, SERVER4, UDP, Ether, Raw
from traffic_capture.csvformat import COLUMNS
from traffic_capture.interfaces import npcap_missing_message, privilege_message

USAGE, RUNTIME = 2, 1


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("traffic-capture: error: ")
    return lines[0]


@pytest.fixture
def good_pcap(tmp_path: Path) -> Path:
    packets = []
    for i in range(6):
        packet = (Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                  / IP(src="198.51.100.7", dst=SERVER4) / UDP(sport=40000, dport=53)
                  / Raw(b"q" * 100))
        packet.time = 1_700_000_000 + i
        packets.append(packet)
    path = tmp_path / "good.pcap"
    wrpcap(str(path), packets)
    return path


def test_missing_capture_file(tmp_path: Path) -> None:
    line = one_line_error(run_cli(["--read", str(tmp_path / "nope.pcap"), "--server-ip",
                                   SERVER4, "--out", str(tmp_path / "t.csv")]), RUNTIME)
    assert "nope.pcap not found" in line


def test_empty_capture_file(tmp_path: Path) -> None:
    (tmp_path / "empty.pcap").write_bytes(b"")
    line = one_line_error(run_cli(["--read", str(tmp_path / "empty.pcap"), "--server-ip",
                                   SERVER4, "--out", str(tmp_path / "t.csv")]), RUNTIME)
    assert "empty" in line


def test_a_file_that_is_not_a_capture(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("window_start,window_end\nnot a capture\n")
    line = one_line_error(run_cli(["--read", str(tmp_path / "notes.txt"), "--server-ip",
                                   SERVER4, "--out", str(tmp_path / "t.csv")]), RUNTIME)
    assert "not a pcap or pcapng capture file" in line


def test_an_unknown_link_type_is_named(tmp_path: Path) -> None:
    path = tmp_path / "usb.pcap"
    wrpcap(str(path), [Raw(b"\0" * 40)], linktype=189)  # USB Linux
    line = one_line_error(run_cli(["--read", str(path), "--server-ip", SERVER4,
                                   "--out", str(tmp_path / "t.csv")]), RUNTIME)
    assert "link type 189" in line


@pytest.mark.parametrize("address", ["192.168.1.300", "server", "2001:db8::g", "10.0.0.1/33"])
def test_an_invalid_server_address(tmp_path: Path, good_pcap: Path, address: str) -> None:
    line = one_line_error(run_cli(["--read", str(good_pcap), "--server-ip", address,
                                   "--out", str(tmp_path / "t.csv")]), USAGE)
    assert repr(address) in line


def test_a_network_with_host_bits_suggests_both_meanings(tmp_path: Path, good_pcap: Path) -> None:
    line = one_line_error(run_cli(["--read", str(good_pcap), "--server-ip", "192.0.2.1/24",
                                   "--out", str(tmp_path / "t.csv")]), USAGE)
    assert "192.0.2.0/24" in line and "192.0.2.1" in line


def test_an_invalid_address_in_the_environment_says_where_it_came_from(tmp_path: Path) -> None:
    result = run_cli(["--out", str(tmp_path / "t.csv")], TRAFFIC_SERVER_IP="nonsense")
    assert "TRAFFIC_SERVER_IP" in one_line_error(result, USAGE)


@pytest.mark.parametrize("window", ["0", "-5", "2.5", "five"])
def test_an_invalid_window(tmp_path: Path, good_pcap: Path, window: str) -> None:
    line = one_line_error(run_cli(["--read", str(good_pcap), "--server-ip", SERVER4,
                                   "--window", window, "--out", str(tmp_path / "t.csv")]), USAGE)
    assert "--window" in line


def test_an_invalid_delimiter(tmp_path: Path, good_pcap: Path) -> None:
    line = one_line_error(run_cli(["--read", str(good_pcap), "--server-ip", SERVER4,
                                   "--delimiter", ":", "--out", str(tmp_path / "t.csv")]), USAGE)
    assert "';'" in line


def test_read_needs_a_server(tmp_path: Path, good_pcap: Path) -> None:
    line = one_line_error(run_cli(["--read", str(good_pcap), "--out", str(tmp_path / "t.csv")]),
                          USAGE)
    assert "--server-ip" in line


def test_an_output_that_is_a_directory(tmp_path: Path, good_pcap: Path) -> None:
    line = one_line_error(run_cli(["--read", str(good_pcap), "--server-ip", SERVER4,
                                   "--out", str(tmp_path)]), RUNTIME)
    assert "is a directory" in line


def test_an_output_that_cannot_be_created(tmp_path: Path, good_pcap: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = one_line_error(run_cli(["--read", str(good_pcap), "--server-ip", SERVER4,
                                   "--out", str(blocker / "sub" / "t.csv")]), RUNTIME)
    assert "cannot create" in line


def test_an_output_folder_is_created(tmp_path: Path, good_pcap: Path) -> None:
    out = tmp_path / "new" / "folder" / "t.csv"
    result = run_cli(["--read", str(good_pcap), "--server-ip", SERVER4, "--out", str(out),
                      "--quiet"])
    assert result.returncode == 0, result.stderr
    assert read_rows(out)["total_bytes"].sum() == 6 * 128


def test_appending_to_a_file_with_other_columns_is_refused(tmp_path: Path, good_pcap: Path
                                                          ) -> None:
    out = tmp_path / "t.csv"
    out.write_text(";".join(COLUMNS) + "\n")  # the same columns, another delimiter
    line = one_line_error(run_cli(["--read", str(good_pcap), "--server-ip", SERVER4,
                                   "--out", str(out)]), RUNTIME)
    assert "refusing to mix" in line
    assert out.read_text() == ";".join(COLUMNS) + "\n"


def test_appending_to_a_file_with_the_same_header_adds_rows_below(tmp_path: Path,
                                                                   good_pcap: Path) -> None:
    out = tmp_path / "t.csv"
    for _ in range(2):
        result = run_cli(["--read", str(good_pcap), "--server-ip", SERVER4, "--out", str(out),
                          "--delimiter", ";", "--quiet"])
        assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == ";".join(COLUMNS) and lines.count(lines[0]) == 1
    assert len(lines) == 1 + 2 * 2  # two windows per run, header once


def test_a_capture_cut_inside_a_record_header_warns_and_keeps_the_complete_packets(
        tmp_path: Path, good_pcap: Path) -> None:
    cut = tmp_path / "cut.pcap"
    data = good_pcap.read_bytes()
    last_record = len(data) - (16 + 142)  # 142 = 14 Ethernet + 128 IP
    cut.write_bytes(data[:last_record + 9])  # 9 bytes into the last record's header
    out = tmp_path / "t.csv"
    result = run_cli(["--read", str(cut), "--server-ip", SERVER4, "--out", str(out), "--quiet"])
    assert result.returncode == 0
    assert "ends in the middle of a packet" in result.stderr
    assert read_rows(out)["total_bytes"].sum() == 5 * 128


@pytest.mark.root
def test_an_unknown_interface_lists_the_real_ones(tmp_path: Path) -> None:
    needs_root()
    line = one_line_error(run_cli(["--iface", "nosuch0", "--server-ip", SERVER4,
                                   "--out", str(tmp_path / "t.csv")]), USAGE)
    assert "nosuch0" in line and "lo" in line


@pytest.mark.root
@pytest.mark.parametrize("backend", ["linux", "pcap"])
def test_no_capture_privilege_says_how_to_get_it(tmp_path: Path, backend: str) -> None:
    needs_root()
    needs_tools("setpriv")
    # Root without the capture capabilities: exactly what a plain user lacks.
    result = subprocess.run(
        ["setpriv", "--bounding-set=-net_raw,-net_admin", "--inh-caps=-net_raw,-net_admin",
         *DAEMON, "--server-ip", "127.0.0.1", "--out", str(tmp_path / "t.csv"),
         "--backend", backend],
        capture_output=True, text=True, timeout=60, env=child_env())
    line = one_line_error(result, RUNTIME)
    assert "sudo" in line and "traffic-capture service-unit" in line
    # Never the capability for the interpreter every program shares (this venv's python is a
    # symlink to it).
    assert os.path.realpath(sys.executable) not in line
    assert "venv --copies" in line


def test_the_privilege_and_npcap_messages_for_windows() -> None:
    assert "Administrator" in privilege_message("win32")
    assert "Npcap" in privilege_message("win32")
    assert "sudo" in privilege_message("linux") and "service-unit" in privilege_message("linux")
    # A venv made with --copies has an interpreter of its own: that one may get the right.
    assert privilege_message("linux", "/opt/tc/bin/python3", "/opt/tc").endswith(
        "sudo setcap cap_net_raw,cap_net_admin+eip /opt/tc/bin/python3")
    assert "/usr/bin/python3" not in privilege_message("linux", "/usr/bin/python3", "/opt/tc")
    assert "https://npcap.com" in npcap_missing_message()
    assert "loopback" in npcap_missing_message()


def test_list_interfaces_shows_loopback_with_its_address() -> None:
    result = run_cli(["--list-interfaces"])
    assert result.returncode == 0, result.stderr
    assert any(line.startswith("lo") and "127.0.0.1" in line
               for line in result.stdout.splitlines())


def test_the_script_form_and_its_constants(tmp_path: Path, good_pcap: Path) -> None:
    """`python traffic_capture.py` with SERVER_IP and WINDOW_SIZE edited, as the notes say."""
    repo = Path(__file__).resolve().parent.parent
    script = tmp_path / "traffic_capture.py"
    text = (repo / "traffic_capture.py").read_text()
    text = text.replace('SERVER_IP = ""', f'SERVER_IP = "{SERVER4}"')
    text = text.replace("WINDOW_SIZE = 5", "WINDOW_SIZE = 60")
    script.write_text(text)
    out = tmp_path / "t.csv"
    result = subprocess.run([sys.executable, str(script), "--read", str(good_pcap),
                             "--out", str(out), "--quiet"], capture_output=True, text=True,
                            timeout=60, env=child_env(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = read_rows(out)
    assert len(rows) == 1 and rows["total_bytes"].sum() == 6 * 128  # one 60-second window


def test_python_dash_m_and_the_console_script_agree() -> None:
    # The console script sits next to the interpreter of the venv it was installed into,
    # whether or not that folder is on PATH (it is not under .ci/run).
    console_script = Path(sys.executable).parent / "traffic-capture"
    assert console_script.exists(), "the package is not installed: pip install -e ."
    version_m = run_cli(["--version"]).stdout
    version_script = subprocess.run([str(console_script), "--version"], capture_output=True,
                                    text=True, timeout=60, env=os.environ.copy()).stdout
    assert version_m == version_script and version_m.startswith("traffic-capture ")


def test_help_says_where_the_default_server_comes_from_in_each_form(tmp_path: Path) -> None:
    console = " ".join(run_cli(["--help"]).stdout.split())
    assert "SERVER_IP in traffic_capture.py" not in console
    assert "Default: $TRAFFIC_SERVER_IP (comma-" in console
    script = subprocess.run([sys.executable, str(REPO / "traffic_capture.py"), "--help"],
                            capture_output=True, text=True, timeout=60, env=child_env())
    assert "Default: SERVER_IP in traffic_capture.py, then $TRAFFIC_SERVER_IP" in " ".join(
        script.stdout.split())


def test_an_invalid_filter_is_a_usage_error_and_creates_no_csv(tmp_path: Path, good_pcap: Path
                                                               ) -> None:
    needs_tools("tcpdump")
    out = tmp_path / "t.csv"
    line = one_line_error(run_cli(["--read", str(good_pcap), "--server-ip", SERVER4,
                                   "--filter", "port eighty", "--out", str(out)]), USAGE)
    assert "--filter" in line
    assert not out.exists()


def test_a_failed_start_leaves_no_csv_behind(tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    one_line_error(run_cli(["--read", str(tmp_path / "missing.pcap"), "--server-ip", SERVER4,
                            "--out", str(out)]), RUNTIME)
    assert not out.exists()


def test_an_npcap_loopback_capture_file_is_read(tmp_path: Path) -> None:
    """Windows' \\Device\\NPF_Loopback captures are DLT_NULL with AF_INET6 = 23."""
    import struct

    from tests.frames import ICMP, ICMPv6EchoRequest, IPv6

    path = tmp_path / "npf_loopback.pcap"
    # scapy's writers take link type 0 for "unset", so the pcap header is written here.
    data = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 0)
    for i, ip in enumerate([IP(src="127.0.0.1", dst="127.0.0.1") / ICMP() / Raw(b"a" * 32),
                            IPv6(src="::1", dst="::1") / ICMPv6EchoRequest() / Raw(b"b" * 32)]):
        frame = struct.pack("<I", 2 if ip.version == 4 else 23) + bytes(ip)
        data += struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)) + frame
    path.write_bytes(data)
    out = tmp_path / "t.csv"
    result = run_cli(["--read", str(path), "--server-ip", "127.0.0.1", "--server-ip", "::1",
                      "--out", str(out), "--quiet"])
    assert result.returncode == 0, result.stderr
    rows = read_rows(out)
    assert rows.set_index("client_ip")["other_bytes"].to_dict() == {"127.0.0.1": 60, "::1": 80}


def test_windows_interfaces_are_listed_with_friendly_and_npf_names() -> None:
    from traffic_capture.interfaces import Interface, format_interface_list, resolve_interfaces

    interfaces = [
        Interface("Ethernet", "\\Device\\NPF_{0C2F0B3A-1111-2222-3333-444455556666}",
                  "Intel(R) Ethernet Connection", ("192.168.1.10",)),
        Interface("Adapter for loopback traffic capture", "\\Device\\NPF_Loopback",
                  "Adapter for loopback traffic capture", ("127.0.0.1", "::1"), True),
    ]
    text = format_interface_list(interfaces)
    assert "Ethernet  [\\Device\\NPF_{0C2F0B3A" in text and "192.168.1.10" in text
    assert resolve_interfaces(["\\Device\\NPF_Loopback"], interfaces)[0].name.startswith("Adapter")
    assert resolve_interfaces(["Ethernet"], interfaces)[0].device.endswith("6666}")


def test_an_unknown_link_type_inside_a_pcapng_is_named(tmp_path: Path) -> None:
    """pcapng names link types per interface, so this one shows only when a packet comes."""
    needs_tools("editcap")
    usb = tmp_path / "usb.pcap"
    wrpcap(str(usb), [Raw(b"\0" * 40)], linktype=189)
    pcapng = tmp_path / "usb.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(usb), str(pcapng)], check=True, timeout=30)
    line = one_line_error(run_cli(["--read", str(pcapng), "--server-ip", SERVER4,
                                   "--out", str(tmp_path / "t.csv"), "--quiet"]), RUNTIME)
    assert "link type 189" in line


@pytest.mark.root
def test_an_output_in_a_folder_this_user_cannot_enter_is_one_line(tmp_path: Path,
                                                                  good_pcap: Path) -> None:
    needs_root()
    needs_tools("setpriv")
    locked = tmp_path / "locked"  # pytest's folders are root's alone, 0700
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             *DAEMON, "--read", str(good_pcap), "--server-ip", SERVER4,
                             "--out", str(locked / "t.csv")],
                            capture_output=True, text=True, timeout=60, env=child_env())
    line = one_line_error(result, RUNTIME)
    assert "cannot reach" in line or "Permission denied" in line
    # The capture file there too (the output elsewhere).
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             *DAEMON, "--read", str(good_pcap), "--server-ip", SERVER4,
                             "--out", "/tmp/never-written.csv"],
                            capture_output=True, text=True, timeout=60, env=child_env())
    assert "cannot read" in one_line_error(result, RUNTIME)


def test_the_script_form_outside_its_venv_says_what_to_install(tmp_path: Path) -> None:
    """A Python without the project's packages (a fresh venv here) runs traffic_capture.py."""
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True,
                   timeout=120)
    python = bare / "bin" / "python"
    result = subprocess.run([str(python), str(REPO / "traffic_capture.py"), "--read",
                             "x.pcap", "--server-ip", SERVER4], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    line = one_line_error(result, RUNTIME)
    assert "is not installed for" in line and f"{python} -m pip install -e ." in line


def test_a_binary_file_as_out_is_named_not_printed(tmp_path: Path, good_pcap: Path) -> None:
    out = tmp_path / "capture.pcap.csv"
    out.write_bytes(good_pcap.read_bytes())
    line = one_line_error(run_cli(["--read", str(good_pcap), "--server-ip", SERVER4,
                                   "--out", str(out)]), RUNTIME)
    assert "holds binary data" in line and "\\x" not in line and "\ufffd" not in line


def test_a_busy_web_port_leaves_no_csv_behind(tmp_path: Path, good_pcap: Path) -> None:
    pytest.importorskip("fastapi")
    out = tmp_path / "t.csv"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        line = one_line_error(run_cli(["--read", str(good_pcap), "--server-ip", SERVER4,
                                       "--out", str(out), "--web", str(port)]), RUNTIME)
    assert f"cannot listen on 127.0.0.1:{port}" in line
    assert not out.exists()


@pytest.mark.root
def test_a_read_only_packet_log_folder_leaves_no_csv_behind(tmp_path: Path,
                                                            good_pcap: Path) -> None:
    needs_root()  # chattr +i: even root cannot write an immutable folder
    needs_tools("chattr")
    out, folder = tmp_path / "t.csv", tmp_path / "logs"
    folder.mkdir()
    subprocess.run(["chattr", "+i", str(folder)], check=True, timeout=10)
    try:
        line = one_line_error(run_cli(["--read", str(good_pcap), "--server-ip", SERVER4,
                                       "--out", str(out), "--packet-log",
                                       str(folder / "sub" / "p.jsonl")]), RUNTIME)
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True, timeout=10)
    assert "cannot create the packet log" in line and str(folder) in line
    assert not out.exists()


def test_a_server_address_the_file_never_shows_is_said_at_the_end(tmp_path: Path,
                                                                  good_pcap: Path) -> None:
    result = run_cli(["--read", str(good_pcap), "--server-ip", "203.0.113.99",
                      "--out", str(tmp_path / "t.csv")])
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if "no packet to or from" in line]
    assert warning == ["traffic-capture: warning: no packet to or from a server address "
                       "(203.0.113.99) was seen in 6 packets: nothing was counted. Check "
                       "--server-ip"], result.stderr
    counted = run_cli(["--read", str(good_pcap), "--server-ip", SERVER4,
                       "--out", str(tmp_path / "u.csv")])
    assert counted.returncode == 0 and "no packet to or from" not in counted.stderr


def test_a_server_address_on_no_capture_interface_is_said_at_start(netns: str,
                                                                   tmp_path: Path) -> None:
    """Live: 192.0.2.10 is not on lo (the namespace's only interface): a warning at start,
    and at the end, since nothing was counted."""
    daemon = Daemon(netns, ["--server-ip", "192.0.2.10", "--iface", "lo",
                            "--out", str(tmp_path / "t.csv")])
    assert "192.0.2.10/32 is on none of the capture interfaces (lo)" in daemon.stderr
    ping(netns, 2)
    assert daemon.stop() == 0, daemon.stderr
    assert "no packet to or from a server address (192.0.2.10) was seen" in daemon.stderr
    assert "and --iface" in daemon.stderr
