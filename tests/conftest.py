"""Shared fixtures: a private network namespace, and the daemon as a real child process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Generator, Iterator
from pathlib import Path

import pandas as pd
import pluggy
import pytest

from tests import requirements
from tests.requirements import needs_netns, needs_root, needs_tools

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "sample.pcap"  # a small real capture (samples/README.md)
DAEMON = [sys.executable, "-m", "traffic_capture"]
# Python that prints, for each compiled step, which one runs: the packet log's line layout
# (True: the C), then whether the Python twin runs for the record walk, the frame copy, the
# CSV's rows and the classification. "True False False False False" where everything was
# compiled; "False True True True True" with TRAFFIC_CAPTURE_PURE_PYTHON=1 or no compiler.
STEPS_IN_USE = ("from traffic_capture.sinks import log_lines as l; "
                "from traffic_capture.sources import record_walk as w; "
                "from traffic_capture import frames as f; "
                "from traffic_capture.sinks import csv_rows as c; "
                "from traffic_capture import classify as k; "
                "print(l.USE_COMPILED, w.walk is w.python_walk, f._copy_frames is "
                "f.python_gather, c.window_text is c.python_window_text, "
                "k.classify_rows is k.python_classify_rows)")


# Fixtures that bring their need with them: a test using one carries its markers without
# saying so (tryfirst: before -m deselects by markers).
MARKERS_OF_FIXTURE = {"netns": ("root", "netns"), "small_disk": ("root",),
                      "lab": ("root", "netns"), "display": ("xvfb",)}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture in getattr(item, "fixturenames", ()):
            for marker in MARKERS_OF_FIXTURE.get(fixture, ()):
                item.add_marker(marker)
    give_each_test_its_own_node_id(items)
    group_by_session_fixtures(items)
    suffix_groups_for_pytest_9(items)


def group_by_session_fixtures(items: list[pytest.Item]) -> None:
    """A test module's session fixture (a 30-day history served, a day's workbook, a
    recorded lab) is built once in each worker that runs one of its tests: spread over four
    workers, the browser's 30-day history was built four times. The module's tests that use
    one go to one worker (a group named after the module), unless they have a group already."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None or any(item.iter_markers("xdist_group")):
            continue
        for name in item.fixturenames:
            definitions = info.name2fixturedefs.get(name)
            if definitions and definitions[-1].scope == "session" \
                    and definitions[-1].baseid.endswith(".py"):
                module = definitions[-1].baseid.rsplit("/", 1)[-1].removesuffix(".py")
                item.add_marker(pytest.mark.xdist_group(module))
                break


def suffix_groups_for_pytest_9(items: list[pytest.Item]) -> None:
    """pytest-xdist's --dist loadgroup schedules by a node id ending in @GROUP, which it sets
    on `_nodeid`; pytest 9 derives the node id from `_id`, so that suffix never showed and
    every group's tests were spread over the workers (each worker then built the group's
    costly fixtures again). Here the suffix goes where pytest 9 reads it."""
    for item in items:
        names = sorted({str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                        for mark in item.iter_markers("xdist_group")})
        if names and hasattr(item, "_id") and "@" not in item.nodeid:
            from _pytest.nodeid import coerce_node_id

            item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(names)}")


def give_each_test_its_own_node_id(items: list[pytest.Item]) -> None:
    """schemathesis gives every API operation of one test the same node id (only the name
    differs: test_no_server_errors[GET /api/status]), and pytest-xdist's --dist loadgroup
    schedules by node id: it ran the first operation alone. Such items get the id of their
    name; a node id that is still shared is an error, never a test silently left out."""
    shared = {nodeid for nodeid, count in Counter(item.nodeid for item in items).items()
              if count > 1}
    for item in items:
        if item.nodeid in shared and item.parent is not None:
            if hasattr(item, "_id"):  # pytest 9: a NodeId object
                item._id = item.parent._id.child(item.name)
            else:
                item._nodeid = f"{item.parent.nodeid}::{item.name}"
    still = [nodeid for nodeid, count in Counter(item.nodeid for item in items).items()
             if count > 1]
    if still:
        raise pytest.UsageError(f"tests that share a node id (xdist would run one): {still}")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test's markers say what it needs: check that before its fixtures run."""
    markers = {mark.name for mark in item.iter_markers()}
    requirements.running_markers = markers
    if "root" in markers:
        needs_root()
    for marker in sorted(markers & requirements.TOOLS_OF_MARKER.keys()):
        needs_tools(*requirements.TOOLS_OF_MARKER[marker])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    outcome = yield
    skip_fails_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector
                               ) -> Generator[None, pluggy.Result[pytest.CollectReport], None]:
    outcome = yield
    skip_fails_in_ci(outcome.get_result())


def skip_fails_in_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    """In CI a skip (a helper's, pytest.importorskip's, skipif's) is a failure: CI installs
    every tool and module and runs as root, so a skip there hides a broken set-up."""
    if requirements.IN_CI and report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (TRAFFIC_CAPTURE_CI=1), which must not be: {reason}"


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_cli(args: list[str], timeout: float = 60, cwd: Path | None = None,
            **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(DAEMON + args, capture_output=True, text=True, timeout=timeout,
                          env=child_env(**env), cwd=cwd, stdin=subprocess.DEVNULL)


def read_rows(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"client_ip": str})


@pytest.fixture
def netns() -> Iterator[str]:
    """A private network namespace with loopback up: its traffic touches nothing else."""
    needs_netns()
    with loopback_namespace("tc-test") as name:
        yield name


@contextlib.contextmanager
def loopback_namespace(tag: str) -> Iterator[str]:
    """A network namespace of its own with only loopback, up; whatever runs in it is killed
    and the namespace deleted on the way out, also when the test fails."""
    requirements.declared("netns")
    name = f"{tag}-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True, timeout=10)
        yield name
    finally:
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True,
                              timeout=10).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", name], timeout=10)


def in_netns(namespace: str, command: list[str]) -> list[str]:
    return ["ip", "netns", "exec", namespace, *command]


class ChildProcess:
    """A command in a child process; stderr is drained in a thread so it never blocks."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None,
                 stdin: int = subprocess.DEVNULL) -> None:
        self.process = subprocess.Popen(command, stdin=stdin,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        env=env if env is not None else child_env())
        self._stderr: list[str] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for chunk in iter(lambda: self.process.stderr.read1(4096), b""):  # type: ignore[union-attr]
            self._stderr.append(chunk.decode(errors="replace"))

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"never said {text!r}; stderr:\n{self.stderr}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 40) -> int:
        self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


class Daemon(ChildProcess):
    """The daemon in a network namespace, returned once it is capturing."""

    def __init__(self, namespace: str, args: list[str], ready_text: str = "capturing on") -> None:
        super().__init__(in_netns(namespace, DAEMON + args))
        self.wait_for(ready_text, timeout=30)
        time.sleep(0.3)  # the socket is bound just before the message; give it a moment


def start_tcpdump(namespace: str, args: list[str]) -> subprocess.Popen[bytes]:
    """tcpdump writing a file, returned once it is really capturing."""
    # --immediate-mode: without it libpcap holds packets up to a second, and a stop loses them.
    # -B 32768: a 32 MiB kernel buffer, so that a loaded CI machine does not make tcpdump drop
    # the 64 KiB loopback segments the daemon under test sees.
    process = subprocess.Popen(in_netns(namespace, ["tcpdump", "-U", "--immediate-mode",
                                                    "-B", "32768", *args]),
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert process.stderr is not None
    deadline = time.monotonic() + 20
    seen = b""
    while b"listening on" not in seen:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"tcpdump did not start: {seen.decode(errors='replace')}")
        seen += process.stderr.read1(4096)  # type: ignore[attr-defined]
    return process


def stop_tcpdump(process: subprocess.Popen[bytes]) -> None:
    """Stop tcpdump and fail loudly if it dropped packets: its file is the reference."""
    process.send_signal(signal.SIGINT)
    _, tail = process.communicate(timeout=10)
    stats = tail.decode(errors="replace")
    assert "\n0 packets dropped by kernel" in stats, f"tcpdump lost packets: {stats}"


def ping(namespace: str, count: int, address: str = "127.0.0.1", interval: float = 0.2) -> None:
    subprocess.run(in_netns(namespace, ["ping", "-n", "-q", "-c", str(count), "-i", str(interval),
                                        address]), check=True, capture_output=True,
                   timeout=count * interval + 20)


@pytest.fixture
def small_disk(tmp_path: Path):  # noqa: ANN201
    """A 64 KiB tmpfs, a disk that really fills up."""
    needs_root()
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True,
                   timeout=10)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], timeout=10)


def fill_disk(disk: Path, leave_free: int) -> Path:
    """Fill a small disk up, then free `leave_free` bytes of it; returns the filler file."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    stat = os.statvfs(disk)
    assert stat.f_bavail * stat.f_frsize < 4096
    os.truncate(filler, max(0, filler.stat().st_size - leave_free))
    return filler
