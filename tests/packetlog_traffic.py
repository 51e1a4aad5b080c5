"""Real traffic for the packet-log tests, and tshark's reading of it as the oracle.

In a network namespace of its own: http.server answered by curl (a binary body and a text one
with quotes, backslashes and control characters), a UDP exchange with non-printable bytes, and
ping; on loopback, client 127.0.0.2 and server 127.0.0.1. tcpdump records it twice at once:
whole packets, and cut at 120 bytes (payloads longer than the capture).
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import in_netns, loopback_namespace, start_tcpdump, stop_tcpdump

SERVER = "127.0.0.1"
CLIENT = "127.0.0.2"
OTHER_CLIENT = "127.0.0.3"  # only pings, when asked for (the viewer's filter)
HTTP_PORT = 8000
UDP_PORT = 9999
BINARY_BODY = bytes(range(256)) * 8 + b"end"
TEXT_BODY = b'say "hi"\\ then\ttab\r\nnew line \x7f\xc3\xa9 done\n' * 3
UDP_MESSAGE = b'\x00\x01udp "payload" \\ \xff\xfe\n'
CUT_SNAPLEN = 120
PING_COUNT = 2

_UDP_SERVER = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("{SERVER}", {UDP_PORT}))
while True:
    data, peer = s.recvfrom(4096)
    s.sendto(data[::-1], peer)
"""
_UDP_CLIENT = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("{CLIENT}", 0))
s.settimeout(5)
s.sendto({UDP_MESSAGE!r}, ("{SERVER}", {UDP_PORT}))
assert s.recvfrom(4096)[0] == {UDP_MESSAGE[::-1]!r}
"""


def namespace() -> contextlib.AbstractContextManager[str]:
    return loopback_namespace("tc-plog")


def start_servers(ns: str, www: Path) -> list[subprocess.Popen[bytes]]:
    www.mkdir(parents=True, exist_ok=True)
    (www / "page.bin").write_bytes(BINARY_BODY)
    (www / "text.txt").write_bytes(TEXT_BODY)
    servers = [
        subprocess.Popen(in_netns(ns, [sys.executable, "-m", "http.server", str(HTTP_PORT),
                                       "--bind", SERVER, "-d", str(www)]),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen(in_netns(ns, [sys.executable, "-c", _UDP_SERVER]),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    deadline = time.monotonic() + 15
    while True:
        listening = subprocess.run(in_netns(ns, ["ss", "-Hlntu"]), capture_output=True,
                                   text=True, timeout=10).stdout
        if f":{HTTP_PORT}" in listening and f":{UDP_PORT}" in listening:
            return servers
        if time.monotonic() > deadline:
            raise TimeoutError(f"servers not listening: {listening}")
        time.sleep(0.1)


def make_traffic(ns: str, work: Path, other_client: bool = False) -> None:
    """The clients: every exchange is checked, so a lost packet fails here."""
    for name, body in (("page.bin", BINARY_BODY), ("text.txt", TEXT_BODY)):
        got = work / f"got-{name}"
        subprocess.run(in_netns(ns, ["curl", "-sS", "--noproxy", "*", "--max-time", "10",
                                     "--interface", CLIENT, "-o", str(got),
                                     f"http://{SERVER}:{HTTP_PORT}/{name}"]),
                       check=True, timeout=20)
        assert got.read_bytes() == body
    subprocess.run(in_netns(ns, [sys.executable, "-c", _UDP_CLIENT]), check=True, timeout=20)
    for client in (CLIENT, OTHER_CLIENT) if other_client else (CLIENT,):
        subprocess.run(in_netns(ns, ["ping", "-n", "-q", "-c", str(PING_COUNT), "-i", "0.2",
                                     "-I", client, SERVER]), check=True, capture_output=True,
                       timeout=20)


@dataclass
class Recorded:
    whole: Path  # tcpdump, whole packets
    cut: Path  # tcpdump -s 120


def record(dest: Path, other_client: bool = False) -> Recorded:
    whole, cut = dest / "whole.pcap", dest / "cut.pcap"
    with namespace() as ns:
        servers = start_servers(ns, dest / "www")
        try:
            dumps = [start_tcpdump(ns, ["-i", "lo", "-n", "-w", str(whole)]),
                     start_tcpdump(ns, ["-i", "lo", "-n", "-s", str(CUT_SNAPLEN), "-w",
                                        str(cut)])]
            make_traffic(ns, dest, other_client)
            time.sleep(0.3)
            for dump in dumps:
                stop_tcpdump(dump)
        finally:
            for server in servers:
                server.kill()
                server.wait(10)
    return Recorded(whole, cut)


# -- the oracle -------------------------------------------------------------------------------
TSHARK_FIELDS = ("frame.time_epoch", "ip.src", "ip.dst", "tcp.srcport", "tcp.dstport",
                 "udp.srcport", "udp.dstport", "ip.proto", "ip.len", "ip.hdr_len", "tcp.flags",
                 "tcp.len", "udp.length", "tcp.payload", "udp.payload", "frame.cap_len",
                 "frame.len")


@dataclass(frozen=True)
class Packet:
    """One packet as tshark reads it."""

    epoch: str
    src: str
    dst: str
    sport: int | None
    dport: int | None
    proto: int
    ip_bytes: int
    tcp_flags: int | None
    payload_len: int  # TCP/UDP payload by the headers; other protocols: the IP payload
    payload: bytes | None  # the captured TCP/UDP payload, None for other protocols
    cut: bool  # the capture holds fewer bytes than the frame had


def tshark_packets(path: Path) -> list[Packet]:
    command = ["tshark", "-n", "-r", str(path), "-o", "tcp.desegment_tcp_streams:FALSE",
               "-Y", "ip", "-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"]
    for name in TSHARK_FIELDS:
        command += ["-e", name]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout
    packets = []
    for line in out.splitlines():
        f = dict(zip(TSHARK_FIELDS, line.split("\t"), strict=True))
        proto = int(f["ip.proto"])
        ip_bytes, header = int(f["ip.len"]), int(f["ip.hdr_len"])
        if proto == 6:
            sport, dport, payload_len = int(f["tcp.srcport"]), int(f["tcp.dstport"]), int(
                f["tcp.len"])
            payload: bytes | None = bytes.fromhex(f["tcp.payload"].replace(":", ""))
        elif proto == 17:
            sport, dport = int(f["udp.srcport"]), int(f["udp.dstport"])
            payload_len = int(f["udp.length"]) - 8
            payload = bytes.fromhex(f["udp.payload"].replace(":", ""))
        else:
            sport = dport = None
            payload_len, payload = ip_bytes - header, None
        flags = int(f["tcp.flags"], 16) if f["tcp.flags"] else None
        packets.append(Packet(f["frame.time_epoch"], f["ip.src"], f["ip.dst"], sport, dport,
                              proto, ip_bytes, flags, payload_len, payload,
                              int(f["frame.cap_len"]) < int(f["frame.len"])))
    return packets


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def expected_preview(payload: bytes) -> str:
    """The rule, written independently: the first 64 bytes, printable ASCII as is, others '.'."""
    return "".join(chr(b) if 32 <= b <= 126 else "." for b in payload[:64])
