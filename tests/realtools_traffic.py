"""Real servers, real clients and real captures inside a `netns.Lab`.

Why: the daemon's parsing of link types, file formats, IPv6 and FTP data connections is only
trustworthy when checked on bytes that real tools wrote (tcpdump, dumpcap, curl, pyftpdlib,
dnsmasq, dig, ping), not on packets the tests forge themselves.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from tests.netns import (
    CLIENT_V4,
    CLIENT_V6,
    CLIENT_V6_EXT,
    SERVER_V4,
    SERVER_V6,
    Lab,
    netns_lab,
)

REPO = Path(__file__).resolve().parents[1]
SERVERS = (SERVER_V4, SERVER_V6)
DAEMON_TIMEOUT = 60.0
HTTP_BODY_SIZE = 20_000
HTTP_ALT_PORT = 8000
TCP_PLAIN_PORT = 2222  # Neither FTP nor HTTP: its bytes must land in tcp_bytes.
TCP_PLAIN_SEND, TCP_PLAIN_REPLY = 5_000, 30_000
DNS_NAME = "lab.example.test"
DNS_ANSWER = "192.0.2.80"

# Tools the traffic needs besides netns.REQUIRED_TOOLS: missing ones are a broken test setup
# (the CI script installs them), so they fail the tests rather than skip them.
TRAFFIC_TOOLS = ("curl", "dig", "ping", "dnsmasq", "ss", "editcap", "mergecap", "capinfos")

# The script of the plain TCP server: read the client's bytes, answer with a fixed amount.
_TCP_SERVER = f"""
import socket
s = socket.create_server(("::", {TCP_PLAIN_PORT}), family=socket.AF_INET6, dualstack_ipv6=True)
while True:
    c, _ = s.accept()
    got = 0
    while got < {TCP_PLAIN_SEND}:
        chunk = c.recv(65536)
        if not chunk:
            break
        got += len(chunk)
    c.sendall(b"s" * {TCP_PLAIN_REPLY})
    c.close()
"""
_TCP_CLIENT = f"""
import socket, sys
c = socket.create_connection((sys.argv[1], {TCP_PLAIN_PORT}), timeout=10,
                             source_address=(sys.argv[2], 0))
c.sendall(b"c" * {TCP_PLAIN_SEND})
got = 0
while True:
    chunk = c.recv(65536)
    if not chunk:
        break
    got += len(chunk)
c.close()
assert got == {TCP_PLAIN_REPLY}, got
"""

# IPv6 with extension headers, which the daemon must follow to TCP and UDP: an HTTP GET whose
# packets carry a Destination Options header, and a DNS query with a Hop-by-Hop header. Linux
# adds them through socket options (root only); the 8 bytes are the header with one PadN option.
_EXT_HEADER = "bytes([0, 0, 1, 4, 0, 0, 0, 0])"
_EXT6_CLIENT = f"""
import socket, struct, sys
server, client = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_DSTOPTS, {_EXT_HEADER})
s.settimeout(10)
s.bind((client, 0))
s.connect((server, {HTTP_ALT_PORT}))
s.sendall(b"GET /page.bin HTTP/1.0\\r\\nHost: lab\\r\\n\\r\\n")
got = b""
while chunk := s.recv(65536):
    got += chunk
s.close()
assert len(got) > {HTTP_BODY_SIZE}, len(got)
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_HOPOPTS, {_EXT_HEADER})
u.settimeout(5)
u.bind((client, 0))
qname = b"".join(bytes([len(p)]) + p for p in b"{DNS_NAME}".split(b".")) + b"\\0"
u.sendto(struct.pack("!6H", 0x5151, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!2H", 1, 1),
         (server, 53))
reply, _ = u.recvfrom(4096)
assert reply[:2] == b"\\x51\\x51", reply
"""


def missing_traffic_tools() -> list[str]:
    """Traffic tools not installed (pyftpdlib counts as one)."""
    missing = [t for t in TRAFFIC_TOOLS if shutil.which(t) is None]
    try:
        import pyftpdlib  # noqa: F401
    except ImportError:
        missing.append("pyftpdlib (pip)")
    return missing


# -- servers ------------------------------------------------------------------------------------
def start_servers(lab: Lab, root: Path, ftp_file_size: int) -> dict[str, Path]:
    """Start HTTP (80, 8000), FTP (21, IPv4 and IPv6), DNS (53) and plain TCP (2222) servers."""
    www, ftp = root / "www", root / "ftp"
    www.mkdir(parents=True, exist_ok=True)
    ftp.mkdir(parents=True, exist_ok=True)
    (www / "page.bin").write_bytes(os.urandom(HTTP_BODY_SIZE))
    (ftp / "file.bin").write_bytes(os.urandom(ftp_file_size))
    # The children keep their own copies of the log descriptor.
    with (root / "servers.log").open("ab") as log:
        ns = lab.server_ns
        py = sys.executable
        for port in (80, HTTP_ALT_PORT):
            lab.popen(ns, [py, "-m", "http.server", str(port), "--bind", "::", "-d", www],
                      stdout=log, stderr=log)
        for addr in (SERVER_V4, SERVER_V6):
            lab.popen(ns, [py, "-m", "pyftpdlib", "-i", addr, "-p", "21", "-d", ftp],
                      stdout=log, stderr=log)
        lab.popen(ns, ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
                       "--no-hosts", "--bind-interfaces", f"--listen-address={SERVER_V4}",
                       f"--listen-address={SERVER_V6}", "--except-interface=lo",
                       f"--address=/{DNS_NAME}/{DNS_ANSWER}", "--user=root", "--pid-file=",
                       "--log-facility=-"], stdout=log, stderr=log)
        lab.popen(ns, [py, "-c", _TCP_SERVER], stdout=log, stderr=log)
    wait_listening(lab, tcp=(80, HTTP_ALT_PORT, 21, TCP_PLAIN_PORT, 53), udp=(53,))
    return {"www": www, "ftp": ftp, "log": root / "servers.log"}


def wait_listening(lab: Lab, tcp: Iterable[int], udp: Iterable[int],
                   timeout: float = 15.0) -> None:
    """Poll `ss` in the server namespace until every port listens, so no request is refused."""
    want = {("tcp", p) for p in tcp} | {("udp", p) for p in udp}
    deadline = time.monotonic() + timeout
    seen: set[tuple[str, int]] = set()
    while time.monotonic() < deadline:
        out = lab.run(lab.server_ns, ["ss", "-Hlntu"], timeout=10).stdout
        seen = set()
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 5:
                seen.add((parts[0], int(parts[4].rsplit(":", 1)[1])))
        if want <= seen:
            return
        time.sleep(0.1)
    raise TimeoutError(f"servers not listening after {timeout}s: {sorted(want - seen)}")


# -- captures -----------------------------------------------------------------------------------
@dataclass
class Capture:
    """One capture process on the server side; `ready` is the stderr text that means 'live'."""

    name: str
    path: Path
    argv: list[str]
    ready: str
    proc: subprocess.Popen[bytes] | None = None
    stderr_lines: list[str] = field(default_factory=list)
    _ready_event: threading.Event = field(default_factory=threading.Event)

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace")
            self.stderr_lines.append(line)
            if self.ready in line:
                self._ready_event.set()


def capture_specs(lab: Lab, out: Path, names: Sequence[str]) -> list[Capture]:
    """The capture kinds by name: the link types and file formats the daemon must read.

    eth.pcap: veth, Ethernet (DLT 1), microsecond pcap, written by tcpdump.
    sll.pcap: `-i any`, Linux cooked v1 (DLT 113). sll2.pcap: `-i any -y LINUX_SLL2` (DLT 276).
    eth.pcapng: dumpcap's pcapng (tcpdump 4.99 can't write pcapng).
    snap160.pcap: Ethernet with a 160-byte snap length, so IP lengths exceed captured lengths
    (160 keeps the FTP replies that announce data ports whole, also over IPv6).
    eth.nsec.pcap: Ethernet, nanosecond-resolution pcap (magic a1b23c4d).
    """
    dev = lab.srv_if
    # A 16 MiB buffer: with the default 2 MiB, `-i any` silently lost 64 KB GSO frames.
    tcpdump = ["tcpdump", "-n", "-U", "--immediate-mode", "-B", "16384", "-Z", "root"]
    known = {
        "eth.pcap": (tcpdump + ["-i", dev, "-w"], "listening on"),
        "sll.pcap": (tcpdump + ["-i", "any", "-y", "LINUX_SLL", "-w"], "listening on"),
        "sll2.pcap": (tcpdump + ["-i", "any", "-y", "LINUX_SLL2", "-w"], "listening on"),
        # dumpcap says "Capturing on" before it opens the interface (a loaded machine's
        # first packets were missed), "File:" once it has opened it and its file.
        "eth.pcapng": (["dumpcap", "-n", "-B", "16", "-i", dev, "-w"], "File: "),
        "snap160.pcap": (tcpdump + ["-s", "160", "-i", dev, "-w"], "listening on"),
        "eth.nsec.pcap": (tcpdump + ["--time-stamp-precision=nano", "-i", dev, "-w"],
                          "listening on"),
    }
    specs = []
    for name in names:
        argv, ready = known[name]
        specs.append(Capture(name, out / name, [*argv, str(out / name)], ready))
    return specs


def start_captures(lab: Lab, caps: Sequence[Capture], timeout: float = 15.0) -> None:
    """Start every capture and wait until each says it is capturing (bounded)."""
    for cap in caps:
        cap.proc = lab.popen(lab.server_ns, cap.argv, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        threading.Thread(target=cap._pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    for cap in caps:
        if not cap._ready_event.wait(max(0.0, deadline - time.monotonic())):
            raise TimeoutError(f"{cap.name} not capturing: {''.join(cap.stderr_lines)!r}")


def stop_captures(lab: Lab, caps: Sequence[Capture]) -> None:
    """SIGINT lets tcpdump/dumpcap flush and close their files; check they exited cleanly."""
    time.sleep(0.3)  # the last replies are still in flight when the clients return
    # All at once: stopped one after another, a late packet (the kernel's own neighbour
    # solicitation) reached the captures still running and not the first, which then differ.
    for cap in caps:
        assert cap.proc is not None
        with suppress(ProcessLookupError):
            os.killpg(cap.proc.pid, signal.SIGINT)
    for cap in caps:
        assert cap.proc is not None
        try:
            code = cap.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = lab.stop(cap.proc, sig=signal.SIGKILL)
        if code != 0 or not cap.path.is_file():
            raise RuntimeError(f"{cap.name} exited {code}: {''.join(cap.stderr_lines)!r}")


# -- clients ------------------------------------------------------------------------------------
@dataclass
class Traffic:
    """What the clients did, for the tests' specific checks."""

    ftp_modes: dict[str, str] = field(default_factory=dict)  # client address -> FTP mode
    ftp_file_size: int = 0
    http_clients: list[str] = field(default_factory=list)
    dns_clients: list[str] = field(default_factory=list)
    ping_clients: list[str] = field(default_factory=list)
    tcp_plain_clients: list[str] = field(default_factory=list)
    ext6_clients: list[str] = field(default_factory=list)
    server_self: bool = False
    closed_port_client: str = ""


def _curl(lab: Lab, args: Sequence[str], expect_size: int, dest: Path) -> None:
    dest.unlink(missing_ok=True)
    lab.run(lab.client_ns, ["curl", "-sS", "--noproxy", "*", "--max-time", "15",
                            "-o", str(dest), *args], timeout=20)
    size = dest.stat().st_size
    if size != expect_size:
        raise AssertionError(f"curl {args}: got {size} bytes, expected {expect_size}")


def run_http(lab: Lab, work: Path, t: Traffic) -> None:
    """Plain HTTP on port 80 (IPv4) and 8000 (second IPv4 client and IPv6).

    Every client binds its source address: with two IPv6 addresses the kernel's choice varies.
    """
    _curl(lab, ["--interface", CLIENT_V4[0], f"http://{SERVER_V4}/page.bin"],
          HTTP_BODY_SIZE, work / "http1.out")
    _curl(lab, ["--interface", CLIENT_V4[1], f"http://{SERVER_V4}:{HTTP_ALT_PORT}/page.bin"],
          HTTP_BODY_SIZE, work / "http2.out")
    _curl(lab, ["--interface", CLIENT_V6, "-g", f"http://[{SERVER_V6}]:{HTTP_ALT_PORT}/page.bin"],
          HTTP_BODY_SIZE, work / "http6.out")
    t.http_clients += [CLIENT_V4[0], CLIENT_V4[1], CLIENT_V6]


FTP_MODES = {
    "PASV": ["--ftp-pasv", "--disable-epsv"],
    "EPSV": ["--ftp-pasv"],
    "PORT": ["--ftp-port", "-", "--disable-eprt"],
    "EPRT": ["--ftp-port", "-"],
}
# Each mode downloads from its own client address, so a test can find each mode's bytes.
FTP_CLIENTS = dict(zip(FTP_MODES, CLIENT_V4, strict=False))


def run_ftp(lab: Lab, work: Path, t: Traffic, modes: Sequence[str]) -> None:
    """Download the FTP file once per mode (curl as the client, pyftpdlib as the server)."""
    for mode in modes:
        client = FTP_CLIENTS[mode]
        _curl(lab, [*FTP_MODES[mode], "--interface", client, f"ftp://{SERVER_V4}/file.bin"],
              t.ftp_file_size, work / f"ftp_{mode}.out")
        t.ftp_modes[client] = mode


def run_ftp6(lab: Lab, work: Path, t: Traffic) -> None:
    """FTP over IPv6 (EPSV, the only passive mode IPv6 has)."""
    _curl(lab, ["--ftp-pasv", "--interface", CLIENT_V6, "-g", f"ftp://[{SERVER_V6}]/file.bin"],
          t.ftp_file_size, work / "ftp6.out")
    t.ftp_modes[CLIENT_V6] = "EPSV6"


DNS_QUERIES = {
    "udp4": ["-b", CLIENT_V4[0], f"@{SERVER_V4}", DNS_NAME, "A"],
    "udp6": ["-b", CLIENT_V6, f"@{SERVER_V6}", DNS_NAME, "AAAA"],
    # DNS over TCP port 53 is neither FTP nor HTTP: class tcp.
    "tcp4": ["+tcp", "-b", CLIENT_V4[4], f"@{SERVER_V4}", DNS_NAME, "A"],
}


def run_dns(lab: Lab, t: Traffic, kinds: Sequence[str] = ("udp4", "udp6")) -> None:
    """dig against dnsmasq; every answer is checked, so a lost query fails here, not later."""
    for kind in kinds:
        q = DNS_QUERIES[kind]
        res = lab.run(lab.client_ns, ["dig", "+tries=1", "+time=3", "+short", *q], timeout=15)
        if q[-1] == "A" and res.stdout.strip() != DNS_ANSWER:
            raise AssertionError(f"dig {q}: {res.stdout!r} {res.stderr!r}")
        if kind.startswith("udp"):
            t.dns_clients.append(q[1])


def run_ping(lab: Lab, t: Traffic, count: int = 3) -> None:
    """ICMP echo and ICMPv6 echo: class `other`."""
    lab.run(lab.client_ns, ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "2",
                            "-I", CLIENT_V4[0], SERVER_V4], timeout=15)
    lab.run(lab.client_ns, ["ping", "-6", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "2",
                            "-I", CLIENT_V6, SERVER_V6], timeout=15)
    t.ping_clients += [CLIENT_V4[0], CLIENT_V6]


def run_tcp_plain(lab: Lab, t: Traffic) -> None:
    """TCP on port 2222, TLS-like opaque bytes: class `tcp`."""
    client = CLIENT_V4[4]
    lab.run(lab.client_ns, [sys.executable, "-c", _TCP_CLIENT, SERVER_V4, client], timeout=20)
    t.tcp_plain_clients.append(client)


CLOSED_PORT_PAYLOAD = 10
_CLOSED_PORT_CLIENT = f"""
import socket, sys, time
for family, server, client in ((socket.AF_INET, sys.argv[1], sys.argv[2]),
                               (socket.AF_INET6, sys.argv[3], sys.argv[4])):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((client, 0))
    s.sendto(b"x" * {CLOSED_PORT_PAYLOAD}, (server, 9))
    time.sleep(0.1)
"""


def run_udp_to_closed_port(lab: Lab, t: Traffic) -> None:
    """One UDP datagram to a closed port: the server answers with an ICMP error that quotes the
    UDP header, which must not make the error count as udp (tshark: first occurrence = outer)."""
    lab.run(lab.client_ns, [sys.executable, "-c", _CLOSED_PORT_CLIENT, SERVER_V4,
                            CLIENT_V4[4], SERVER_V6, CLIENT_V6_EXT], timeout=15)
    t.closed_port_client = CLIENT_V4[4]


def run_server_to_itself(lab: Lab, work: Path, t: Traffic) -> None:
    """Server-to-server and localhost traffic, over the server's loopback.

    Only the `-i any` captures see it. 192.0.2.1 -> 192.0.2.1 has a server on both sides, so it
    is `in` with the server as client; 127.0.0.1 is no server address, so it counts nowhere.
    """
    lab.run(lab.server_ns, ["ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "2",
                            "-I", SERVER_V4, SERVER_V4], timeout=15)
    for url, source in ((f"http://{SERVER_V4}/page.bin", SERVER_V4),
                        ("http://127.0.0.1/page.bin", "127.0.0.1")):
        dest = work / "self.out"
        lab.run(lab.server_ns, ["curl", "-sS", "--noproxy", "*", "--max-time", "15",
                                "--interface", source, "-o", str(dest), url], timeout=20)
        if dest.stat().st_size != HTTP_BODY_SIZE:
            raise AssertionError(f"curl {url}: {dest.stat().st_size} bytes")
    t.server_self = True


def run_ipv6_extension_headers(lab: Lab, t: Traffic) -> None:
    """HTTP over TCP with a Destination Options header, DNS over UDP with Hop-by-Hop."""
    lab.run(lab.client_ns, [sys.executable, "-c", _EXT6_CLIENT, SERVER_V6, CLIENT_V6_EXT],
            timeout=20)
    t.ext6_clients.append(CLIENT_V6_EXT)


def sleep_past_window_boundary(window: int = 5, margin: float = 0.3) -> None:
    """Make the next traffic fall in a later window than the traffic so far."""
    now = time.time()
    time.sleep((now // window + 1) * window - now + margin)


# -- whole sessions and the daemon -------------------------------------------------------------
def run_daemon(reads: Sequence[Path], out: Path, window: int = 5, tz: str = "UTC",
               servers: Sequence[str] = SERVERS,
               timeout: float = DAEMON_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """`python -m traffic_capture --read ... --out out` with TZ set, from the repo's sources."""
    argv = [sys.executable, "-m", "traffic_capture"]
    for path in reads:
        argv += ["--read", str(path)]
    for server in servers:
        argv += ["--server-ip", server]
    argv += ["--out", str(out), "--window", str(window), "--quiet"]
    env = dict(os.environ, TZ=tz)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=out.parent)


@dataclass
class Recording:
    """Capture files of one traffic session (by capture name) and what the clients did."""

    files: dict[str, Path]
    traffic: Traffic


def record(dest: Path, captures: Sequence[str], ftp_file_size: int,
           full: bool = True) -> Recording:
    """Run a lab, capture the traffic with every kind in `captures`, return the files.

    full=False is the sample's traffic: HTTP and passive FTP (PASV, EPSV), then in the next
    window DNS over UDP and ping, so every capture spans at least two windows. full=True adds
    active FTP (PORT, EPRT), FTP over IPv6, DNS over TCP, plain TCP, IPv6 packets with
    extension headers, server-to-itself and localhost traffic and ICMP errors to the second
    window.
    """
    dest.mkdir(parents=True, exist_ok=True)
    work = dest / "work"
    traffic = Traffic(ftp_file_size=ftp_file_size)
    with netns_lab() as lab:
        start_servers(lab, work, ftp_file_size)
        caps = capture_specs(lab, dest, captures)
        start_captures(lab, caps)
        run_http(lab, work, traffic)
        run_ftp(lab, work, traffic, ["PASV", "EPSV"])
        sleep_past_window_boundary()
        run_dns(lab, traffic)
        run_ping(lab, traffic)
        if full:
            run_ftp(lab, work, traffic, ["PORT", "EPRT"])
            run_ftp6(lab, work, traffic)
            run_dns(lab, traffic, ["tcp4"])
            run_tcp_plain(lab, traffic)
            run_ipv6_extension_headers(lab, traffic)
            run_server_to_itself(lab, work, traffic)
            run_udp_to_closed_port(lab, traffic)
        stop_captures(lab, caps)
    return Recording({c.name: c.path for c in caps}, traffic)
