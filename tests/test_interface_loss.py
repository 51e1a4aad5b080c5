"""An interface that disappears and comes back during a live capture (a VPN or veth restart):
one warning, capture resumes on the new interface of the same name, nothing counted is lost;
with --no-reopen the run stops with exit 1 after writing what it counted."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests import netns as lab_module
from tests.conftest import Daemon, read_rows
from tests.netns import SERVER_V4, Lab
from tests.requirements import needs_netns, needs_tools

ICMP_ECHO_IPV4 = 84


@pytest.fixture
def lab() -> Lab:
    needs_netns()
    needs_tools(*lab_module.REQUIRED_TOOLS)
    with lab_module.netns_lab("tl") as made:
        yield made


def ping(lab: Lab, count: int) -> None:
    lab.run(lab.client_ns, ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", SERVER_V4])


class LabDaemon(Daemon):
    """The daemon in the lab's server namespace, capturing on its veth end."""

    def __init__(self, lab: Lab, out: Path, *extra: str) -> None:
        super().__init__(lab.server_ns, ["--server-ip", SERVER_V4, "--iface", lab.srv_if,
                                         "--out", str(out), "--window", "1", *extra])


def exit_and_last_line(daemon: Daemon) -> tuple[int, str]:
    """A daemon that stops by itself: its exit status and the last line it wrote."""
    try:
        code = daemon.process.wait(15)
    finally:
        daemon.kill()
    daemon._reader.join(5)
    return code, daemon.stderr.strip().splitlines()[-1]


def bounce(lab: Lab) -> None:
    """Down, then up again: the same interface, as `ifdown; ifup` does."""
    lab.run(lab.server_ns, ["ip", "link", "set", lab.srv_if, "down"])
    time.sleep(1.5)
    lab.run(lab.server_ns, ["ip", "link", "set", lab.srv_if, "up"])
    lab._wait_link_up()


@pytest.mark.parametrize("change", ["deleted and made again", "down and up"])
def test_capture_resumes_on_an_interface_that_went_away_and_came_back(
        lab: Lab, tmp_path: Path, change: str) -> None:
    needs_tools("ping")
    out = tmp_path / "traffic.csv"
    daemon = LabDaemon(lab, out)
    try:
        ping(lab, 3)
        time.sleep(0.5)
        if change == "down and up":
            bounce(lab)
        else:
            lab.recreate_link()
        daemon.wait_for("went down or away", timeout=15)
        daemon.wait_for("is back: capturing on it again", timeout=15)
        ping(lab, 4)
        time.sleep(0.5)
    finally:
        code = daemon.stop(signal.SIGINT)
    assert code == 0, daemon.stderr
    assert daemon.stderr.count("went down or away") == 1
    rows = read_rows(out)
    # Every ping before and after (request in, reply out), none lost, none twice.
    by_direction = rows.groupby("direction")["other_bytes"].sum().to_dict()
    assert by_direction == {"in": 7 * ICMP_ECHO_IPV4, "out": 7 * ICMP_ECHO_IPV4}


def test_no_reopen_stops_with_exit_1_after_writing_what_was_counted(lab: Lab, tmp_path: Path
                                                                    ) -> None:
    needs_tools("ping")
    out = tmp_path / "traffic.csv"
    daemon = LabDaemon(lab, out, "--no-reopen")
    ping(lab, 3)
    time.sleep(0.5)
    lab.recreate_link()
    code, last = exit_and_last_line(daemon)
    assert code == 1, daemon.stderr
    assert last == (f"traffic-capture: error: capture stopped: {lab.srv_if} went down or away "
                    "(--no-reopen)"), daemon.stderr
    assert read_rows(out)["other_bytes"].sum() == 3 * 2 * ICMP_ECHO_IPV4


def test_an_interface_deleted_right_after_traffic_loses_none_of_it(lab: Lab, tmp_path: Path
                                                                  ) -> None:
    """The newest packets sit in a ring block the kernel hands over only at its timeout (50
    ms): the ring of a lost interface is read once more before it is closed (a new user saw
    `ping -c 5` then `ip link del` count 4 pings)."""
    needs_tools("ping")
    out = tmp_path / "traffic.csv"
    daemon = LabDaemon(lab, out)
    try:
        # The link goes the moment ping has its last reply, in the same shell.
        lab.run(lab.client_ns, ["sh", "-c", f"ping -n -q -c 5 -i 0.2 {SERVER_V4}; "
                                            f"ip -n {lab.server_ns} link del {lab.srv_if}"])
        daemon.wait_for("went down or away", timeout=15)
    finally:
        code = daemon.stop(signal.SIGINT)
    assert code == 0, daemon.stderr
    rows = read_rows(out)
    by_direction = rows.groupby("direction")["other_bytes"].sum().to_dict()
    assert by_direction == {"in": 5 * ICMP_ECHO_IPV4, "out": 5 * ICMP_ECHO_IPV4}


def test_the_portable_back_end_stops_with_exit_1_after_counting_all_before_the_loss(
        lab: Lab, tmp_path: Path) -> None:
    """libpcap (Npcap on Windows) says the interface went away: the run stops with one line
    and exit 1 (it does not wait for the interface), and every packet before is counted."""
    needs_tools("ping")
    out = tmp_path / "traffic.csv"
    daemon = LabDaemon(lab, out, "--backend", "pcap")
    lab.run(lab.client_ns, ["sh", "-c", f"ping -n -q -c 5 -i 0.2 {SERVER_V4}; "
                                        f"ip -n {lab.server_ns} link del {lab.srv_if}"])
    code, last = exit_and_last_line(daemon)
    assert code == 1, daemon.stderr
    assert last.startswith(f"traffic-capture: error: capture stopped: capture on {lab.srv_if} "
                           "failed: "), daemon.stderr
    by_direction = read_rows(out).groupby("direction")["other_bytes"].sum().to_dict()
    assert by_direction == {"in": 5 * ICMP_ECHO_IPV4, "out": 5 * ICMP_ECHO_IPV4}
