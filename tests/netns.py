"""A private two-namespace network lab for tests that need real traffic between real tools.

Why namespaces: real servers (http.server, an FTP server, dnsmasq) and real clients (curl, dig,
ping) can talk over a veth pair and be captured with tcpdump, without touching the host's
network. Every address is in the documentation ranges 192.0.2.0/24 and 2001:db8::/64, and the
only links are the veth pair and each namespace's loopback, so no packet can leave the lab.

Names carry the pid and a counter, so parallel test runs never collide, and `close()` always
kills what the lab started and deletes both namespaces, also when a test fails.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

SERVER_V4 = "192.0.2.1"
SERVER_V6 = "2001:db8::1"
# The client namespace holds several addresses, so one lab yields several clients.
CLIENT_V4 = ("192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5", "192.0.2.6")
CLIENT_V6 = "2001:db8::2"
# A second IPv6 client, whose packets carry IPv6 extension headers (see realtools_traffic).
CLIENT_V6_EXT = "2001:db8::3"

REQUIRED_TOOLS = ("ip", "tcpdump", "tshark")
_counter = itertools.count(1)


def unavailable_reason() -> str | None:
    """Why a lab can't be built here (not root, a tool missing), or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        return "missing tools: " + ", ".join(missing)
    return None


class Lab:
    """A server and a client namespace joined by a veth pair; use via `netns_lab()`.

    `srv_if` and `cli_if` are the veth ends; `popen()` starts tracked processes that `close()`
    stops, so a failing test leaves nothing running.
    """

    def __init__(self, tag: str = "tc") -> None:
        token = f"{os.getpid()}x{next(_counter)}"
        self.server_ns = f"{tag}srv{token}"
        self.client_ns = f"{tag}cli{token}"
        # Interface names are limited to 15 characters: "tc" + pid (<= 7) + "x" + n + "s".
        self.srv_if = f"tc{token}s"[:15]
        self.cli_if = f"tc{token}c"[:15]
        self.procs: list[subprocess.Popen[bytes]] = []
        self._made: list[str] = []

    # -- building -------------------------------------------------------------------------------
    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=15)

    def setup(self) -> Lab:
        """Create the namespaces, the veth pair, addresses and routes; raise on any failure."""
        for ns in (self.server_ns, self.client_ns):
            self._ip("netns", "add", ns)
            self._made.append(ns)
            self._ip("-n", ns, "link", "set", "lo", "up")
        self._link()
        return self

    def recreate_link(self) -> None:
        """Delete the veth pair and make it again, same names and addresses (a VPN or veth
        restart): the server's interface gets a new index, as after a real re-creation."""
        self._ip("-n", self.server_ns, "link", "del", self.srv_if)
        self._link()

    def _link(self) -> None:
        self._ip("link", "add", self.srv_if, "netns", self.server_ns,
                 "type", "veth", "peer", "name", self.cli_if, "netns", self.client_ns)
        self._ip("-n", self.server_ns, "addr", "add", f"{SERVER_V4}/24", "dev", self.srv_if)
        self._ip("-n", self.server_ns, "addr", "add", f"{SERVER_V6}/64", "dev", self.srv_if,
                 "nodad")
        for addr in CLIENT_V4:
            self._ip("-n", self.client_ns, "addr", "add", f"{addr}/24", "dev", self.cli_if)
        for addr6 in (CLIENT_V6, CLIENT_V6_EXT):
            self._ip("-n", self.client_ns, "addr", "add", f"{addr6}/64", "dev", self.cli_if,
                     "nodad")
        for ns, dev in ((self.server_ns, self.srv_if), (self.client_ns, self.cli_if)):
            self._ip("-n", ns, "link", "set", dev, "up")
        self._pin_neighbours()
        self._wait_link_up()

    def _pin_neighbours(self) -> None:
        """Permanent neighbour entries both ways: the kernels then send no neighbour
        solicitation (ICMPv6, counted as traffic) at moments of their own, which a capture
        stopped a moment earlier or later would see or miss."""
        server_mac = self._mac(self.server_ns, self.srv_if)
        client_mac = self._mac(self.client_ns, self.cli_if)
        for address in (*CLIENT_V4, CLIENT_V6, CLIENT_V6_EXT):
            self._ip("-n", self.server_ns, "neigh", "replace", address, "lladdr", client_mac,
                     "dev", self.srv_if, "nud", "permanent")
        for address in (SERVER_V4, SERVER_V6):
            self._ip("-n", self.client_ns, "neigh", "replace", address, "lladdr", server_mac,
                     "dev", self.cli_if, "nud", "permanent")

    @staticmethod
    def _mac(namespace: str, device: str) -> str:
        shown = subprocess.run(["ip", "-n", namespace, "-br", "link", "show", device],
                               check=True, capture_output=True, text=True, timeout=15).stdout
        return shown.split()[2]

    def _wait_link_up(self, timeout: float = 10.0) -> None:
        """veth carriers come up asynchronously; traffic sent before that is silently lost."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [
                subprocess.run(["ip", "-n", ns, "-br", "link", "show", dev], capture_output=True,
                               text=True, timeout=10).stdout
                for ns, dev in ((self.server_ns, self.srv_if), (self.client_ns, self.cli_if))
            ]
            if all(" UP " in s for s in states):
                return
            time.sleep(0.05)
        raise TimeoutError(f"veth {self.srv_if}/{self.cli_if} did not come up in {timeout}s")

    # -- running --------------------------------------------------------------------------------
    @staticmethod
    def _in(ns: str, args: Sequence[str | os.PathLike[str]]) -> list[str]:
        return ["ip", "netns", "exec", ns, *map(str, args)]

    def run(self, ns: str, args: Sequence[str | os.PathLike[str]], timeout: float = 30.0,
            check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run a command to completion inside `ns` (bounded by `timeout`), output captured."""
        return subprocess.run(self._in(ns, args), capture_output=True, text=True,
                              timeout=timeout, check=check, **kwargs)

    def popen(self, ns: str, args: Sequence[str | os.PathLike[str]],
              **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start a tracked background process inside `ns`, in its own process group."""
        # `ip netns exec` execs the command, so the pid is the tool's own.
        proc = subprocess.Popen(self._in(ns, args), start_new_session=True, **kwargs)
        self.procs.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
             timeout: float = 5.0) -> int:
        """Signal one process group and wait; SIGKILL it if it outlives `timeout`."""
        if proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        return proc.returncode

    # -- tearing down ---------------------------------------------------------------------------
    def close(self) -> None:
        """Stop every process the lab started (and any left in its namespaces), delete both."""
        for proc in reversed(self.procs):
            with suppress(Exception):
                self.stop(proc, timeout=3)
        for ns in self._made:
            # Whatever still runs in a namespace we made was started by us (e.g. a daemonized
            # child); a namespace with live processes would outlive `ip netns del`.
            with suppress(Exception):
                out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                                     timeout=10).stdout
                for pid in out.split():
                    with suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
            with suppress(Exception):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=15)
        self._made.clear()


@contextmanager
def netns_lab(tag: str = "tc") -> Iterator[Lab]:
    """Build a lab, yield it, and always tear it down (also when setup itself fails midway)."""
    lab = Lab(tag)
    try:
        yield lab.setup()
    finally:
        lab.close()


def namespaces_left(tag: str = "tc") -> list[str]:
    """This process's lab namespaces still present: a test asserts it's empty after `close()`."""
    run = Path("/var/run/netns")
    prefixes = tuple(f"{tag}{role}{os.getpid()}x" for role in ("srv", "cli"))
    return [p.name for p in run.iterdir() if p.name.startswith(prefixes)] if run.is_dir() else []
