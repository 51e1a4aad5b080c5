"""Capture files as streams: standard input and named pipes (`tcpdump -w - | traffic-capture
--read -`, `ssh host tcpdump -w - | ...`). Windows close as the packets' time passes, rows are
written as they close, the run ends at the end of the input."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import (
    DAEMON,
    REPO,
    SAMPLE,
    child_env,
    in_netns,
    needs_tools,
    ping,
    read_rows,
    run_cli,
)

SERVERS = ["--server-ip", "192.0.2.1", "--server-ip", "2001:db8::1"]
EXPECTED = (REPO / "samples" / "traffic.csv").read_text()


def from_stdin(data: bytes, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DAEMON, "--read", "-", *SERVERS, "--out", str(out), "--quiet",
                           *extra], input=data.decode("latin-1"), capture_output=True,
                          text=True, encoding="latin-1", timeout=60, env=child_env(TZ="UTC"))


@pytest.mark.parametrize("compressed", [False, True])
def test_standard_input_gives_the_rows_of_the_file(tmp_path: Path, compressed: bool) -> None:
    data = SAMPLE.read_bytes()
    out = tmp_path / "t.csv"
    result = from_stdin(gzip.compress(data) if compressed else data, out)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == EXPECTED


def test_a_named_pipe_is_read_as_a_stream(tmp_path: Path) -> None:
    pipe = tmp_path / "capture.fifo"
    os.mkfifo(pipe)
    out = tmp_path / "t.csv"
    daemon = subprocess.Popen([*DAEMON, "--read", str(pipe), *SERVERS, "--out", str(out),
                               "--quiet"], env=child_env(TZ="UTC"), stderr=subprocess.PIPE,
                              text=True)
    with pipe.open("wb") as writer:  # opens once the daemon has opened its end
        writer.write(SAMPLE.read_bytes())
    _, stderr = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, stderr
    assert out.read_text() == EXPECTED


def test_bad_streams_are_one_line_errors(tmp_path: Path) -> None:
    result = from_stdin(b"", tmp_path / "t.csv")
    assert result.returncode == 1 and result.stderr.strip() == (
        "traffic-capture: error: standard input is empty: nothing was written to it")
    result = from_stdin(b"not a capture at all" * 10, tmp_path / "t.csv")
    assert result.returncode == 1 and "standard input is not a pcap" in result.stderr
    result = run_cli(["--read", "-", "--read", "-", *SERVERS, "--out", str(tmp_path / "t.csv")])
    assert result.returncode == 2 and "can be given once" in result.stderr
    result = run_cli(["--read", "-", *SERVERS, "--filter", "udp", "--out",
                      str(tmp_path / "t.csv")])
    assert result.returncode == 2 and "tcpdump -w -" in result.stderr


def test_tcpdump_piped_in_writes_rows_as_time_passes(netns: str, tmp_path: Path) -> None:
    needs_tools("tcpdump", "ping")
    out = tmp_path / "t.csv"
    # -U: tcpdump writes each packet to the pipe at once (else it buffers a block).
    tcpdump = subprocess.Popen(in_netns(netns, ["tcpdump", "-i", "lo", "-U", "-w", "-",
                                                "icmp"]),
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    daemon = subprocess.Popen([*DAEMON, "--read", "-", "--server-ip", "127.0.0.1", "--out",
                               str(out), "--window", "1", "--quiet"], stdin=tcpdump.stdout,
                              stderr=subprocess.PIPE, text=True, env=child_env())
    assert tcpdump.stdout is not None
    tcpdump.stdout.close()  # the daemon holds the pipe now
    try:
        time.sleep(1.5)  # tcpdump is listening
        ping(netns, 4)
        # Two seconds after the first packets, while the input is still open, their windows
        # have closed: the rows are there before the end of the input.
        deadline = time.monotonic() + 20
        while (not out.exists() or len(out.read_text().splitlines()) < 2) \
                and time.monotonic() < deadline:
            ping(netns, 1)
        assert daemon.poll() is None and len(out.read_text().splitlines()) >= 2
    finally:
        tcpdump.send_signal(signal.SIGINT)  # the end of the input ends the run
        tcpdump.wait(10)
        _, stderr = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, stderr
    rows = read_rows(out)
    # tcpdump on lo sees each packet once: request and reply, 84 bytes each.
    assert rows["other_bytes"].sum() % (2 * 84) == 0 and rows["other_bytes"].sum() >= 5 * 2 * 84


def waiting_in(pid: int, calls: set[str], timeout: float = 20) -> None:
    """Until the process sleeps in one of these kernel functions (its wchan)."""
    deadline = time.monotonic() + timeout
    wchan = ""
    while time.monotonic() < deadline:
        wchan = Path(f"/proc/{pid}/wchan").read_text()
        if wchan in calls:
            return
        time.sleep(0.05)
    raise AssertionError(f"the daemon did not wait as expected (wchan {wchan!r})")


@pytest.mark.parametrize("source", ["named pipe", "standard input"])
def test_ctrl_c_while_waiting_for_the_input_ends_like_any_ctrl_c(tmp_path: Path,
                                                                 source: str) -> None:
    """Issue 20 (6): Ctrl+C while a named pipe waits for its writer, or standard input for
    its first bytes, printed a KeyboardInterrupt traceback. One line, exit 0, no CSV."""
    pipe = tmp_path / "capture.fifo"
    os.mkfifo(pipe)
    out = tmp_path / "t.csv"
    read = str(pipe) if source == "named pipe" else "-"
    daemon = subprocess.Popen([*DAEMON, "--read", read, *SERVERS, "--out", str(out)],
                              env=child_env(), stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        # Opening a FIFO with no writer sleeps in fifo_open's wait_for_partner; reading an
        # empty pipe, in pipe_read (anon_pipe_read on newer kernels).
        waiting_in(daemon.pid, {"wait_for_partner", "fifo_open", "pipe_read", "anon_pipe_read"})
        daemon.send_signal(signal.SIGINT)
        _, stderr = daemon.communicate(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert daemon.returncode == 0, stderr
    assert stderr.strip().splitlines() == [
        "traffic-capture: stopped (Ctrl+C) before the input began: nothing was read or written"]
    assert not out.exists()
