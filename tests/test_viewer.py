"""The viewer window for real: tkinter under an Xvfb server the test starts, driven with
xdotool, the daemon as a child process reading a capture tcpdump wrote, capturing live in a
network namespace, or `view --log` following a packet log."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import packetlog_traffic as traffic
from tests.conftest import DAEMON, Daemon, child_env, needs_root, needs_tools, ping, read_rows
from tests.packetlog_traffic import OTHER_CLIENT, PING_COUNT, SERVER
from tests.xserver import private_display

# One xdist worker: the recording (module fixture `recorded`) is made once.
pytestmark = [pytest.mark.root, pytest.mark.xdist_group("viewer")]
ICMP_ECHO_IPV4 = 84
TITLE = "traffic-capture view"


@pytest.fixture
def display() -> Iterator[str]:
    """A private X server (Xvfb) for one test; its display name, e.g. ':3'."""
    needs_tools("Xvfb", "xdotool", "import", "identify")
    with private_display() as name:
        yield name


def x(display: str, *args: str, check: bool = True) -> str:
    result = subprocess.run(["xdotool", *args], capture_output=True, text=True, timeout=20,
                            env=dict(os.environ, DISPLAY=display))
    if check and result.returncode != 0:
        raise AssertionError(f"xdotool {args}: {result.stderr}")
    return result.stdout.strip()


def find_window(display: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = x(display, "search", "--name", f"^{TITLE}", check=False).split()
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError("the viewer window never opened")


def window_gone(display: str) -> bool:
    return not x(display, "search", "--name", f"^{TITLE}", check=False)


def wait_title(display: str, window: str, wanted: Callable[[str], bool], timeout: float = 30
               ) -> str:
    deadline = time.monotonic() + timeout
    title = ""
    while time.monotonic() < deadline:
        title = x(display, "getwindowname", window, check=False)
        if wanted(title):
            return title
        time.sleep(0.2)
    raise AssertionError(f"the title never matched; last: {title!r}")


def number(title: str, what: str) -> int:
    found = re.search(rf"([\d,]+) {what}", title)
    return int(found.group(1).replace(",", "")) if found else -1


def keys(display: str, window: str, *names: str) -> None:
    x(display, "windowfocus", "--sync", window)
    for name in names:
        x(display, "key", name)
        time.sleep(0.3)  # the window handles each key before the next (focus moves)


def screenshot(display: str, path: Path) -> None:
    subprocess.run(["import", "-display", display, "-window", "root", str(path)], check=True,
                   timeout=30)
    colours = subprocess.run(["identify", "-format", "%k", str(path)], capture_output=True,
                             text=True, check=True, timeout=30).stdout
    assert int(colours) > 20, "the screen is blank"


@pytest.fixture(scope="session")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> traffic.Recorded:
    needs_root()
    needs_tools("ip", "tcpdump", "tshark", "curl", "ping", "ss")
    return traffic.record(tmp_path_factory.mktemp("viewer"), other_client=True)


@pytest.mark.netns
@pytest.mark.slow
def test_a_capture_file_fills_the_window_the_filter_and_pause_work_close_ends_the_run(
        recorded: traffic.Recorded, display: str, tmp_path: Path) -> None:
    counted = len(traffic.tshark_packets(recorded.whole))
    out = tmp_path / "traffic.csv"
    process = subprocess.Popen(DAEMON + ["--read", str(recorded.whole), "--server-ip", SERVER,
                                         "--out", str(out), "--view"],
                               env=child_env(DISPLAY=display), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        window = find_window(display)
        title = wait_title(display, window, lambda t: number(t, "packets") == counted)
        assert number(title, "rows shown") == counted
        screenshot(display, tmp_path / "window.png")
        # The filter box has the focus: typing a client keeps its rows (2 pings, each way).
        x(display, "windowfocus", "--sync", window)
        x(display, "type", "--delay", "30", OTHER_CLIENT)
        wait_title(display, window, lambda t: number(t, "rows shown") == 2 * PING_COUNT
                   and f"client filter {OTHER_CLIENT}" in t)
        keys(display, window, *["BackSpace"] * len(OTHER_CLIENT))
        wait_title(display, window, lambda t: number(t, "rows shown") == counted)
        keys(display, window, "shift+Tab", "space")  # Pause, left of the filter box
        wait_title(display, window, lambda t: t.endswith("paused, capture ended"))
        keys(display, window, "space")  # Resume
        wait_title(display, window, lambda t: "paused" not in t)
        keys(display, window, "Tab", "Tab", "space")  # the filter box, then Close
        deadline = time.monotonic() + 20
        while not window_gone(display) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert window_gone(display)
        assert process.wait(30) == 0  # reading files, the run waits for the window to close
    finally:
        if process.poll() is None:
            process.kill()
        stderr = process.communicate(timeout=10)[1]
    assert "close the viewer window to exit" in stderr
    packets = traffic.tshark_packets(recorded.whole)
    assert read_rows(out)["total_bytes"].sum() == sum(p.ip_bytes for p in packets)


def test_closing_the_window_leaves_a_live_capture_running(netns: str, display: str,
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    needs_tools("ping")
    monkeypatch.setenv("DISPLAY", display)
    out = tmp_path / "traffic.csv"
    daemon = Daemon(netns, ["--server-ip", "127.0.0.1", "--out", str(out), "--view",
                            "--window", "3600"])
    try:
        window = find_window(display)
        ping(netns, 3)
        wait_title(display, window, lambda t: number(t, "packets") == 6)
        keys(display, window, "Tab", "space")  # from the filter box to Close
        deadline = time.monotonic() + 20
        while not window_gone(display) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert window_gone(display)
        assert daemon.process.poll() is None, daemon.stderr
        ping(netns, 3)  # still counted
        time.sleep(0.5)
    finally:
        code = daemon.stop(signal.SIGINT)
    assert code == 0, daemon.stderr
    assert read_rows(out)["total_bytes"].sum() == 12 * ICMP_ECHO_IPV4
    assert "viewer window was closed; capture goes on" in daemon.stderr


@pytest.mark.netns
def test_view_log_follows_a_growing_packet_log(recorded: traffic.Recorded, display: str,
                                               tmp_path: Path) -> None:
    counted = len(traffic.tshark_packets(recorded.whole))
    log = tmp_path / "packets.jsonl"

    def log_once() -> None:
        result = subprocess.run(DAEMON + ["--read", str(recorded.whole), "--server-ip", SERVER,
                                          "--out", str(tmp_path / "t.csv"), "--packet-log",
                                          str(log), "--quiet"], capture_output=True, text=True,
                                timeout=60, env=child_env())
        assert result.returncode == 0, result.stderr

    log_once()
    viewer = subprocess.Popen(DAEMON + ["view", "--log", str(log)],
                              env=child_env(DISPLAY=display), stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        window = find_window(display)
        wait_title(display, window, lambda t: number(t, "packets") == counted)
        log_once()  # the log grows while the window follows it
        wait_title(display, window, lambda t: number(t, "packets") == 2 * counted)
        keys(display, window, "Escape")
        assert viewer.wait(20) == 0
    finally:
        if viewer.poll() is None:
            viewer.kill()
        viewer.communicate(timeout=10)


def test_view_without_a_display_or_a_log_is_one_clear_line(tmp_path: Path) -> None:
    env = child_env()
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    sample = Path(__file__).parent.parent / "samples" / "sample.pcap"
    result = subprocess.run(DAEMON + ["--read", str(sample), "--server-ip", "192.0.2.1",
                                      "--out", str(tmp_path / "t.csv"), "--view"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2 and "--view needs a desktop session" in result.stderr
    assert "Traceback" not in result.stderr
    result = subprocess.run(DAEMON + ["view", "--log", str(tmp_path / "absent.jsonl")],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 1 and "cannot read" in result.stderr
    assert "Traceback" not in result.stderr
    result = subprocess.run([sys.executable, "-m", "traffic_capture", "view", "--help"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0 and "--log PATH" in result.stdout
