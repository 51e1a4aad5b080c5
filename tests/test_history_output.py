"""--history through the real command: the store holds the CSV's bytes at every resolution;
it is read while a live daemon writes it; a kill -9 costs it at most a flush, and an import of
the CSV fills that in without doubling; one writer at a time, refused before anything is
created; a full disk loses nothing; the service unit turns it on."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP
from scapy.utils import wrpcap

from tests.conftest import (
    DAEMON,
    Daemon,
    child_env,
    fill_disk,
    in_netns,
    needs_root,
    needs_tools,
    read_rows,
    run_cli,
)
from tests.frames import IP, SERVER4, TCP, UDP, Ether, Raw
from traffic_capture.history.reader import HistoryReader
from traffic_capture.history.writer import HistoryWriter
from traffic_capture.queries import TimeRange
from traffic_capture.rules import CLASSES

T0 = 1_780_000_000 // 3600 * 3600  # an hour's start
EVERYTHING = TimeRange.everything()
BYTES = [f"{name}_bytes" for name in CLASSES]


def four_hours_pcap(path: Path) -> None:
    """Three clients talking to the server every 13 s for four hours: windows that roll up
    into minutes and four hours, enough for a range answered per minute."""
    packets = []
    for i in range(1100):
        client = f"198.51.100.{i % 3 + 1}"
        kind = i % 4
        upper = (TCP(sport=40000, dport=80) if kind == 0 else TCP(sport=40000, dport=22)
                 if kind == 1 else UDP(sport=40000, dport=53) if kind == 2 else ICMP())
        src, dst = (client, SERVER4) if i % 2 else (SERVER4, client)
        packet = Ether() / IP(src=src, dst=dst) / upper / Raw(b"x" * (i % 50))
        packet.time = T0 + 13 * i + 0.5
        packets.append(packet)
    wrpcap(str(path), packets)


def csv_sums(csv: Path) -> dict[tuple[str, str], list[int]]:
    rows = read_rows(csv)
    grouped = rows.groupby(["client_ip", "direction"])[BYTES].sum()
    return {key: [int(v) for v in values] for key, values in zip(
        grouped.index, grouped.to_numpy().tolist(), strict=True)}


def history_sums(path: Path, resolution: int) -> dict[tuple[str, str], list[int]]:
    totals = HistoryReader(path).client_totals(EVERYTHING, resolution)
    found = {}
    for client, sums in zip(totals.clients, totals.sums, strict=True):
        for side, direction in enumerate(("in", "out")):
            if sums[side].any():
                found[(client, direction)] = [int(v) for v in sums[side]]
    return found


def test_a_file_read_with_history_holds_the_csvs_bytes_at_every_resolution(
        tmp_path: Path) -> None:
    pcap, csv, store = tmp_path / "t.pcap", tmp_path / "t.csv", tmp_path / "history"
    four_hours_pcap(pcap)
    result = run_cli(["--read", str(pcap), "--server-ip", SERVER4, "--out", str(csv),
                      "--history", str(store)])
    assert result.returncode == 0, result.stderr
    assert f"written to {csv}, {store}" in result.stderr
    expected = csv_sums(csv)
    assert len(expected) == 6
    for resolution in (5, 60, 3600):
        assert history_sums(store, resolution) == expected, resolution
    held = {r.seconds: r for r in HistoryReader(store).resolutions()}
    assert held[3600].first_start_s == T0 and held[3600].last_end_s == T0 + 4 * 3600
    # History options without --history are usage errors, as a bad keep is.
    for args, message in ((["--history-keep", "5s=1d"], "--history-keep needs --history"),
                          (["--history", str(store), "--history-keep", "5s=1d,1m=1h"],
                           "1m is kept less long than 5s"),
                          (["--history", str(store), "--window", "7"],
                           "multiples of --window 7")):
        refused = run_cli(["--read", str(pcap), "--server-ip", SERVER4,
                           "--out", str(tmp_path / "u.csv"), *args])
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1


def test_a_second_writer_is_refused_before_anything_is_created(tmp_path: Path) -> None:
    store, csv = tmp_path / "history", tmp_path / "t.csv"
    pcap = tmp_path / "t.pcap"
    four_hours_pcap(pcap)
    with HistoryWriter(store):
        result = run_cli(["--read", str(pcap), "--server-ip", SERVER4, "--out", str(csv),
                          "--history", str(store)])
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "another process is writing it" in lines[0], result.stderr
    assert not csv.exists()


def ping_for(namespace: str, seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(in_netns(namespace, ["ping", "-n", "-q", "-i", "0.1", "-w",
                                                 str(int(seconds)), "127.0.0.1"]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_reader_reads_while_a_live_daemon_writes(netns: str, tmp_path: Path) -> None:
    csv, store = tmp_path / "t.csv", tmp_path / "history"
    daemon = Daemon(netns, ["--server-ip", "127.0.0.1", "--out", str(csv), "--window", "1",
                            "--history", str(store), "--history-flush", "1"])
    seen: list[int] = []
    errors: list[BaseException] = []

    def read_all_along(stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                if store.exists() and (store / "traffic-history.v1").exists():
                    totals = HistoryReader(store).client_totals(EVERYTHING, 5)
                    seen.append(int(totals.sums.sum()))
            except BaseException as error:  # noqa: BLE001 - the test's verdict
                errors.append(error)
            time.sleep(0.2)

    stop = threading.Event()
    reader = threading.Thread(target=read_all_along, args=(stop,))
    reader.start()
    try:
        ping_for(netns, 6).wait(30)
        time.sleep(2.5)  # a window closes, then a flush
    finally:
        stop.set()
        reader.join(30)
        code = daemon.stop()
    assert code == 0, daemon.stderr
    assert not errors, errors
    # It read the open period while the daemon ran: totals that only grew, and were there.
    assert seen and seen == sorted(seen) and seen[-1] > 0, seen
    final = csv_sums(csv)
    for resolution in (5, 60, 3600):
        assert history_sums(store, resolution) == final


def test_kill_9_costs_the_history_at_most_a_flush_and_an_import_fills_it(
        netns: str, tmp_path: Path) -> None:
    """Killed while pings go on, in 5-second windows as a user runs it: the history holds no
    more than the CSV (each window whole or not at all), and an import of the CSV adds what the
    last flush had not written, once."""
    csv, store = tmp_path / "t.csv", tmp_path / "history"
    daemon = Daemon(netns, ["--server-ip", "127.0.0.1", "--out", str(csv),
                            "--history", str(store), "--history-flush", "1"])
    pings = ping_for(netns, 30)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
                (store / "incoming").exists() and any((store / "incoming").iterdir())
                and len(read_rows(csv)) >= 2):
            time.sleep(0.2)
        time.sleep(2.2)  # a window or two closed since, maybe flushed, maybe not
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(10)
    finally:
        pings.kill()
        pings.wait(10)
    written = csv_sums(csv)
    held = history_sums(store, 5)
    assert held, "nothing reached the history"
    for key, values in held.items():  # never more than the CSV
        assert all(h <= w for h, w in zip(values, written[key], strict=True))
    # The lock died with the process: the import writes, and adds only what was missing.
    result = run_cli(["history", "import", "--history", str(store), str(csv)])
    assert result.returncode == 0, result.stderr
    for resolution in (5, 60, 3600):
        assert history_sums(store, resolution) == written
    again = run_cli(["history", "import", "--history", str(store), str(csv)])
    assert again.returncode == 0 and "already imported" in again.stdout
    assert history_sums(store, 5) == written


def test_a_full_disk_under_the_history_loses_no_row(small_disk: Path, tmp_path: Path) -> None:
    pcap, csv = tmp_path / "t.pcap", tmp_path / "t.csv"
    four_hours_pcap(pcap)
    store = small_disk / "history"
    HistoryWriter(store).close()  # made while there is room
    filler = fill_disk(small_disk, leave_free=0)
    process = subprocess.Popen(
        [*DAEMON, "--read", str(pcap), "--server-ip", SERVER4, "--out", str(csv),
         "--history", str(store)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
        text=True, env=child_env())
    stderr: list[str] = []
    lines = threading.Thread(target=lambda: stderr.extend(iter(process.stderr.readline, "")))
    lines.start()
    deadline = time.monotonic() + 30
    while "cannot write the history" not in "".join(stderr) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "cannot write the history" in "".join(stderr), "".join(stderr)
    filler.unlink()  # room again while the history retries
    assert process.wait(60) == 0, "".join(stderr)
    lines.join(5)
    assert "writable again" in "".join(stderr), "".join(stderr)
    assert history_sums(store, 5) == csv_sums(csv)


def test_the_service_unit_keeps_a_history_in_its_state_folder() -> None:
    result = run_cli(["service-unit", "--server-ip", "192.0.2.1"])
    assert result.returncode == 0, result.stderr
    start = next(line for line in result.stdout.splitlines() if line.startswith("ExecStart="))
    assert "--history /var/lib/traffic-capture/history" in start
    assert "ReadWritePaths" not in result.stdout  # the state folder is the service's own


def test_history_import_refuses_what_is_not_our_csv_in_one_line(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("a,b,c\n1,2,3\n")
    store = tmp_path / "history"
    result = run_cli(["history", "import", "--history", str(store), str(foreign)])
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "not a traffic-capture CSV" in result.stderr or "foreign" in result.stderr, \
        result.stderr


def test_without_duckdb_history_is_one_line_naming_the_install(tmp_path: Path) -> None:
    hide = ("import sys; sys.modules['duckdb'] = None; from traffic_capture.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    pcap, csv = tmp_path / "t.pcap", tmp_path / "t.csv"
    four_hours_pcap(pcap)
    result = subprocess.run([sys.executable, "-c", hide, "--read", str(pcap), "--server-ip",
                             SERVER4, "--out", str(csv), "--history", str(tmp_path / "h")],
                            capture_output=True, text=True, timeout=60, env=child_env())
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "-m pip install -e '.[history]'" in lines[0], lines
    assert not csv.exists() and not (tmp_path / "h").exists()


@pytest.mark.root
def test_a_read_only_history_folder_waits_and_catches_up(tmp_path: Path) -> None:
    """chattr +i: even root cannot add a flush to the folder; rows wait, the CSV goes on, and
    once the folder takes writes again every row is in."""
    needs_root()
    needs_tools("chattr")
    pcap, csv, store = tmp_path / "t.pcap", tmp_path / "t.csv", tmp_path / "history"
    four_hours_pcap(pcap)
    HistoryWriter(store).close()
    incoming = store / "incoming"
    subprocess.run(["chattr", "+i", str(incoming)], check=True, timeout=10)
    try:
        process = subprocess.Popen(
            [*DAEMON, "--read", str(pcap), "--server-ip", SERVER4, "--out", str(csv),
             "--history", str(store)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
            text=True, env=child_env())
        stderr: list[str] = []
        lines = threading.Thread(
            target=lambda: stderr.extend(iter(process.stderr.readline, "")))
        lines.start()
        deadline = time.monotonic() + 30
        while "cannot write the history" not in "".join(stderr) and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        assert "cannot write the history" in "".join(stderr), "".join(stderr)
    finally:
        subprocess.run(["chattr", "-i", str(incoming)], check=True, timeout=10)
    assert process.wait(60) == 0, "".join(stderr)
    lines.join(5)
    assert "writable again" in "".join(stderr)
    assert history_sums(store, 5) == csv_sums(csv)


def test_the_daemons_dashboard_answers_any_range_from_its_history(tmp_path: Path) -> None:
    """--read with --history and --web: once the file is read, a range beyond the memory is
    answered from the history at a coarser resolution, with the CSV's bytes."""
    pytest.importorskip("fastapi")
    from tests.web_helpers import WebProcess, get

    pcap, csv, store = tmp_path / "t.pcap", tmp_path / "t.csv", tmp_path / "history"
    four_hours_pcap(pcap)
    web = WebProcess(["--read", str(pcap), "--server-ip", SERVER4, "--out", str(csv),
                      "--history", str(store), "--web", "127.0.0.1:0", "--web-history",
                      "600"])
    try:
        web.wait_for("the dashboard stays at")
        time.sleep(1.5)  # the web looks at what the store holds once a second
        # Four hours held: 200 points want 72-second steps, so minutes.
        status, answer = get(f"{web.url}api/clients?from={T0}&to={T0 + 4 * 3600}&limit=10")
        assert status == 200, answer
        assert answer["resolution"] == 60, answer
        found = {(c["ip"], d): [c[d][name] for name in CLASSES]
                 for c in answer["clients"] for d in ("in", "out") if any(c[d].values())}
        assert found == csv_sums(csv)
        status, recent = get(f"{web.url}api/clients?seconds=300")
        assert status == 200 and recent["resolution"] == 5
    finally:
        assert web.stop() == 0, web.stderr
