"""Live capture on Linux: packet sockets with a memory-mapped TPACKET_V3 receive ring.

The kernel fills blocks of packets in a ring shared with us; we read them in place, with no
system call and no allocation per packet (libpcap's own way on Linux, minus its per-packet
ctypes and copying costs through scapy). Done as libpcap does it: filter attached before bind,
kernel timestamps, loopback duplicates dropped.
"""

from __future__ import annotations

import mmap
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator

from traffic_capture.parse import DLT_EN10MB, DLT_RAW
from traffic_capture.sources.records import Record

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
TPACKET_V3 = 2
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33
ARPHRD_LOOPBACK = 772
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1

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

# Ring geometry: 32 blocks of 2 MiB (64 MiB, a few hundred milliseconds of a busy 1 Gbit/s
# link). A block is handed over when full or after BLOCK_TIMEOUT_MS, which bounds the latency.
BLOCK_BYTES = 2 * 1024 * 1024
BLOCK_COUNT = 32
FRAME_BYTES = 2048  # only a unit of the ring's bookkeeping in V3; packets are packed
BLOCK_TIMEOUT_MS = 50
# Keep the headers and enough TCP payload to read an FTP 227/229/PORT/EPRT line; the byte
# counts come from the IP length fields, so they stay exact.
SNAPLEN = 384
IDLE_SECONDS = 0.2

# struct tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1: block_status,
# num_pkts, offset_to_first_pkt.
_BLOCK = struct.Struct("=IIIII")
_BLOCK_STATUS_AT = 8
# struct tpacket3_hdr: tp_next_offset, tp_sec, tp_nsec, tp_snaplen, tp_len, tp_status,
# tp_mac (u16); its sockaddr_ll follows at TPACKET_ALIGN(sizeof(tpacket3_hdr)) = 48, where
# sll_hatype is at +8 and sll_pkttype at +10.
_PACKET = struct.Struct("=IIIIIIH")
_SLL_HATYPE_AT = 48 + 8
_SLL_PKTTYPE_AT = 48 + 10
_STATUS_KERNEL = struct.pack("=I", TP_STATUS_KERNEL)


class LinuxLiveSource:
    """Packet sockets on the given interfaces, with an optional kernel (BPF) filter."""

    def __init__(self, interfaces: list[str], bpf_filter: str | None) -> None:
        self.interfaces = interfaces
        self._rings: list[_Ring] = []
        self._drops = 0
        try:
            for name in interfaces:
                self._rings.append(_Ring(name, bpf_filter))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for ring in self._rings:
            self._drops += ring.take_drops()
            ring.close()
        self._rings = []

    def kernel_drops(self) -> int:
        for ring in self._rings:
            self._drops += ring.take_drops()
        return self._drops

    def records(self, stop: threading.Event) -> Iterator[Record | None]:
        rings = self._rings
        while not stop.is_set():
            busy = False
            for ring in rings:
                for record in ring.ready_blocks():
                    busy = True
                    yield record
            if not busy:
                readable, _, _ = select.select(rings, [], [], IDLE_SECONDS)
                if not readable:
                    yield None
        # The newest packets sit in a block the kernel hands over only after its timeout:
        # wait for it, so that a stop loses nothing that was already captured.
        time.sleep(2 * BLOCK_TIMEOUT_MS / 1000)
        for ring in rings:
            yield from ring.ready_blocks()


class _Ring:
    def __init__(self, interface: str, bpf_filter: str | None) -> None:
        # Protocol 0 receives nothing until bind: the filter is in place before the first packet.
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            self.sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            request = struct.pack("=IIIIIII", BLOCK_BYTES, BLOCK_COUNT, FRAME_BYTES,
                                  BLOCK_BYTES // FRAME_BYTES * BLOCK_COUNT, BLOCK_TIMEOUT_MS,
                                  0, 0)
            self.sock.setsockopt(SOL_PACKET, PACKET_RX_RING, request)
            self.ring = mmap.mmap(self.sock.fileno(), BLOCK_BYTES * BLOCK_COUNT,
                                  mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            if bpf_filter:
                from traffic_capture.sources.bpf import attach_filter

                attach_filter(self.sock, bpf_filter, interface)
            self.sock.bind((interface, ETH_P_ALL))
        except BaseException:
            self.sock.close()
            raise
        self._next_block = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def take_drops(self) -> int:
        try:
            stats = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
        except OSError:
            return 0
        return int(struct.unpack_from("=II", stats)[1])  # the kernel resets it on each read

    def close(self) -> None:
        self.ring.close()
        self.sock.close()

    def ready_blocks(self) -> Iterator[Record]:
        """Records of the blocks the kernel has handed over, each block given back at once."""
        ring = self.ring
        unpack_block, unpack_packet = _BLOCK.unpack_from, _PACKET.unpack_from
        while True:
            base = self._next_block * BLOCK_BYTES
            _, _, status, count, offset = unpack_block(ring, base)
            if not status & TP_STATUS_USER:
                return
            at = base + offset
            for _ in range(count):
                next_offset, seconds, nanoseconds, snaplen, _, _, mac = unpack_packet(ring, at)
                hatype = ring[at + _SLL_HATYPE_AT] | (ring[at + _SLL_HATYPE_AT + 1] << 8)
                # lo shows each packet twice, leaving and coming back; libpcap keeps one.
                if not (ring[at + _SLL_PKTTYPE_AT] == PACKET_OUTGOING
                        and hatype == ARPHRD_LOOPBACK):
                    linktype = ARPHRD_TO_DLT.get(hatype)
                    if linktype is not None:
                        start = at + mac
                        yield (seconds * 1_000_000_000 + nanoseconds, linktype,
                               ring[start:start + min(snaplen, SNAPLEN)])
                at += next_offset
            ring[base + _BLOCK_STATUS_AT:base + _BLOCK_STATUS_AT + 4] = _STATUS_KERNEL
            self._next_block = (self._next_block + 1) % BLOCK_COUNT
