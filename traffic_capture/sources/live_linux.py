"""Live capture on Linux: packet sockets read directly, one system call per packet, no libpcap.

Done the way libpcap does it (socket, filter attached before bind, kernel timestamps, loopback
duplicates dropped), minus the per-packet ctypes and copying costs.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
from collections.abc import Iterator

from traffic_capture.parse import DLT_EN10MB, DLT_RAW
from traffic_capture.sources.records import Record

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
ARPHRD_LOOPBACK = 772

# Device hardware types -> the link type of what a SOCK_RAW packet socket returns on them.
ARPHRD_TO_DLT = {
    1: DLT_EN10MB,  # Ethernet, veth, bridges, bonds, VLAN devices
    ARPHRD_LOOPBACK: DLT_EN10MB,  # lo carries a zeroed Ethernet header
    65534: DLT_RAW,  # ARPHRD_NONE: tun, WireGuard
    512: DLT_RAW,  # PPP
    768: DLT_RAW,  # IPIP tunnel
    776: DLT_RAW,  # SIT
    778: DLT_RAW,  # GRE
    823: DLT_RAW,  # IP6GRE
}

# Keep the headers and enough TCP payload to read an FTP 227/229/PORT/EPRT line; the byte
# counts come from the IP length fields, so they stay exact.
SNAPLEN = 384
RECEIVE_BUFFER_BYTES = 64 * 1024 * 1024
BATCH = 256  # packets read from one socket before the stop flag and the others are looked at
IDLE_SECONDS = 0.2


class LinuxLiveSource:
    """Packet sockets on the given interfaces, with an optional kernel (BPF) filter."""

    def __init__(self, interfaces: list[str], bpf_filter: str | None) -> None:
        self.interfaces = interfaces
        self._sockets: list[socket.socket] = []
        self._drops = 0
        self._kernel_seen = 0
        try:
            for name in interfaces:
                self._sockets.append(_open_socket(name, bpf_filter))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for sock in self._sockets:
            self._collect_stats(sock)
            sock.close()
        self._sockets = []

    def kernel_drops(self) -> int:
        for sock in self._sockets:
            self._collect_stats(sock)
        return self._drops

    def _collect_stats(self, sock: socket.socket) -> None:
        try:
            packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        except OSError:
            return
        # The kernel resets these counters on each read.
        self._kernel_seen += packets
        self._drops += drops

    def records(self, stop: threading.Event) -> Iterator[Record | None]:
        sockets = self._sockets
        ancillary_size = socket.CMSG_SPACE(16)
        while not stop.is_set():
            readable, _, _ = select.select(sockets, [], [], IDLE_SECONDS)
            if not readable:
                yield None
                continue
            for sock in readable:
                for _ in range(BATCH):
                    try:
                        frame, ancillary, _flags, address = sock.recvmsg(
                            SNAPLEN, ancillary_size, socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        break
                    # lo shows each packet twice, leaving and coming back; libpcap keeps one.
                    if address[2] == PACKET_OUTGOING and address[3] == ARPHRD_LOOPBACK:
                        continue
                    linktype = ARPHRD_TO_DLT.get(address[3])
                    if linktype is None:
                        continue
                    ts_ns = _timestamp_ns(ancillary)
                    yield (ts_ns, linktype, frame)


def _timestamp_ns(ancillary: list[tuple[int, int, bytes]]) -> int:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            seconds, nanoseconds = struct.unpack("qq", data[:16])
            return seconds * 1_000_000_000 + nanoseconds
    import time

    return time.time_ns()


def _open_socket(interface: str, bpf_filter: str | None) -> socket.socket:
    # Protocol 0 receives nothing until bind: the filter is in place before the first packet.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER_BYTES)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        if bpf_filter:
            from traffic_capture.sources.bpf import attach_filter

            attach_filter(sock, bpf_filter, interface)
        sock.bind((interface, ETH_P_ALL))
    except BaseException:
        sock.close()
        raise
    return sock
