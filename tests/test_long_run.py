"""What a daemon that runs for weeks needs from its terminal and its signals: a few plain
status lines off a terminal (a journal, a log file), and SIGHUP reopening the output after
logrotate moved it, instead of stopping."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import Daemon, needs_tools, ping, read_rows, run_cli
from traffic_capture.csvformat import COLUMNS

ICMP_ECHO_IPV4 = 84
STATUS = re.compile(r"^traffic-capture: status \d{4}-\d\d-\d\d \d\d:\d\d:\d\d: packets [\d,]+ "
                    r"seen, [\d,]+ counted \| windows [\d,]+ \| rows [\d,]+ written, [\d,]+ "
                    r"pending \| kernel drops \d+$")


@pytest.mark.xdist_group("timing")
def test_off_a_terminal_the_status_is_a_plain_line_per_interval(netns: str, tmp_path: Path
                                                                 ) -> None:
    needs_tools("ping")
    # stderr is a pipe here, as under systemd or with 2>log: no progress bar, no carriage
    # returns, one line per interval and one at the end.
    daemon = Daemon(netns, ["--server-ip", "127.0.0.1", "--out", str(tmp_path / "t.csv"),
                            "--status-interval", "1"])
    try:
        ping(netns, 3)
        time.sleep(2.5)
    finally:
        code = daemon.stop(signal.SIGINT)
    assert code == 0, daemon.stderr
    assert "\r" not in daemon.stderr
    status = [line for line in daemon.stderr.splitlines()
              if line.startswith("traffic-capture: status ")]
    assert len(status) >= 3 and all(STATUS.match(line) for line in status), daemon.stderr
    assert "rows 1 written" in status[-1] or "rows 2 written" in status[-1]


def test_status_interval_zero_writes_no_status_lines(tmp_path: Path) -> None:
    from tests.conftest import REPO

    result = run_cli(["--read", str(REPO / "samples" / "sample.pcap"), "--server-ip",
                      "192.0.2.1", "--out", str(tmp_path / "t.csv"), "--status-interval", "0"])
    assert result.returncode == 0 and "done:" in result.stderr
    assert "traffic-capture: status" not in result.stderr
    result = run_cli(["--status-interval", "-1"])
    assert result.returncode == 2 and "must be 0 or more seconds" in result.stderr


def test_sighup_after_logrotate_moved_the_csv_goes_on_in_a_new_file(netns: str,
                                                                   tmp_path: Path) -> None:
    needs_tools("ping")
    out = tmp_path / "traffic.csv"
    daemon = Daemon(netns, ["--server-ip", "127.0.0.1", "--out", str(out), "--window", "1"])
    try:
        ping(netns, 2)
        deadline = time.monotonic() + 15
        while len(out.read_text().splitlines()) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)  # the first rows are written
        rotated = out.rename(tmp_path / "traffic.csv.1")  # what logrotate does
        daemon.process.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert daemon.process.poll() is None, "SIGHUP stopped the daemon"
        ping(netns, 2)
        time.sleep(2.5)
    finally:
        code = daemon.stop(signal.SIGINT)
    assert code == 0, daemon.stderr
    before, after = read_rows(rotated), read_rows(out)
    assert list(after.columns) == list(COLUMNS)  # the new file starts with its header
    assert before["total_bytes"].sum() + after["total_bytes"].sum() == 4 * 2 * ICMP_ECHO_IPV4
    assert after["total_bytes"].sum() > 0


def _sample_run(out: Path) -> str:
    from tests.conftest import REPO

    result = run_cli(["--read", str(REPO / "samples" / "sample.pcap"), "--server-ip",
                      "192.0.2.1", "--server-ip", "2001:db8::1", "--out", str(out), "--quiet"],
                     TZ="UTC")
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_a_restart_repairs_a_line_torn_by_a_crash_before_appending(tmp_path: Path) -> None:
    out = tmp_path / "traffic.csv"
    _sample_run(out)
    whole = out.read_bytes()
    out.write_bytes(whole[:-17])  # power lost in the middle of the last row
    said = _sample_run(out)
    assert "ended in a partial line" in said and "removed it" in said
    lines = out.read_bytes().splitlines()
    rows = len(whole.splitlines()) - 1
    # The header, the rows before the torn one, then the second run's rows, none glued.
    assert len(lines) == 1 + (rows - 1) + rows
    assert all(len(line.split(b",")) == len(COLUMNS) for line in lines)
    assert read_rows(out)["total_bytes"].sum() > 0


def test_a_header_torn_by_a_crash_is_written_again(tmp_path: Path) -> None:
    out = tmp_path / "traffic.csv"
    out.write_text(",".join(COLUMNS)[:17])
    assert "ended in a partial line" in _sample_run(out)
    assert out.read_text().splitlines()[0] == ",".join(COLUMNS)
    assert len(read_rows(out)) == 10
