"""Live capture on Linux: packet sockets with a memory-mapped TPACKET_V3 receive ring.

The kernel fills blocks of packets in a ring shared with us; we read them in place, with no
system call and no allocation per packet (libpcap's own way on Linux, minus its per-packet
ctypes and copying costs through scapy). Done as libpcap does it: filter attached before bind,
kernel timestamps, loopback duplicates dropped.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np

from traffic_capture.frames import HEADER_BYTES, Batch

if sys.platform != "linux":  # packet sockets and their ring exist on Linux only
    raise ImportError("the packet-socket back end needs Linux; use --backend pcap")
from traffic_capture.linktypes import LINK_TYPE_BY_ARPHRD
from traffic_capture.rules import SNAPLEN_COUNTING
from traffic_capture.sources import record_walk
from traffic_capture.sources.lost_interfaces import LostInterfaces

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_IGNORE_OUTGOING = 23
TPACKET_V3 = 2
ARPHRD_LOOPBACK = 772
TP_STATUS_KERNEL = 0

# Ring geometry: 32 blocks of 2 MiB (64 MiB, a few hundred milliseconds of a busy 1 Gbit/s
# link). A block is handed over when full or after BLOCK_TIMEOUT_MS, which bounds the latency.
BLOCK_BYTES = 2 * 1024 * 1024
BLOCK_COUNT = 32
FRAME_BYTES = 2048  # only a unit of the ring's bookkeeping in V3; packets are packed
BLOCK_TIMEOUT_MS = 50
# The most packets a block can hold (a tpacket3_hdr and its sockaddr_ll take 68 bytes), and the
# most one batch takes: whole blocks, at least two.
BLOCK_PACKETS = BLOCK_BYTES // 64
BATCH_PACKETS = 2 * BLOCK_PACKETS
# The ring holds whole frames, read in place at no cost per byte: `snaplen` is not applied to
# them (counting reads the IP length fields), the per-packet tap cuts what outputs keep.
SNAPLEN = SNAPLEN_COUNTING
IDLE_SECONDS = 0.2
# How a packet socket says its interface went down or away (the kernel sets its error).
LOST_ERRORS = frozenset({errno.ENETDOWN, errno.ENODEV, errno.ENXIO})

# struct tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1: block_status (at
# 8), num_pkts, offset_to_first_pkt; the packets are read by record_walk.walk_ring.
_BLOCK_STATUS_AT = 8
_STATUS_KERNEL = struct.pack("=I", TP_STATUS_KERNEL)


class LinuxLiveSource:
    """Packet sockets on the given interfaces, with an optional kernel (BPF) filter.

    An interface that goes down or disappears (a VPN or veth restart) is said once through
    `warn`; with `reopen`, capture resumes on the interface of the same name when it is back,
    while windows go on closing by the clock; without, the capture stops with InterfaceLost
    (lost_interfaces.py).
    """

    live = True

    def __init__(self, interfaces: list[str], description: str, bpf_filter: str | None,
                 warn: Callable[[str], None] | None = None, reopen: bool = True,
                 snaplen: int = SNAPLEN) -> None:
        self.interfaces = interfaces
        self.description = description
        self._filter = bpf_filter
        self._snaplen = snaplen
        self._rings: list[_Ring] = []
        self._lost = LostInterfaces(warn or (lambda message: None), reopen, self._open_again)
        self._drops = 0
        # The kernel resets its drop counter on each read, and lost rings leave the list: the
        # status thread and the capture thread must not both read, add or change it.
        self._lock = threading.Lock()
        try:
            for name in interfaces:
                self._rings.append(_Ring(name, bpf_filter, snaplen))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        with self._lock:
            for ring in self._rings:
                self._drops += ring.take_drops()
                ring.close()
            self._rings = []

    def kernel_drops(self) -> int:
        with self._lock:
            for ring in self._rings:
                self._drops += ring.take_drops()
            return self._drops

    def progress(self) -> None:
        return None

    def warnings(self) -> list[str]:
        return []

    def batches(self, stop: threading.Event) -> Iterator[Batch | None]:
        while not stop.is_set():
            busy = False
            for ring in self._rings:
                batch = ring.take_ready()
                if batch is not None:
                    busy = True
                    if len(batch):
                        yield batch
                    ring.give_back()  # only once the batch is counted: it reads the ring
            if self._lost:
                for ring in self._lost.back():
                    with self._lock:
                        self._rings.append(ring)
            if not busy:
                readable, _, _ = select.select(self._rings, [], [], IDLE_SECONDS)
                for ring in readable:
                    if ring.lost():  # readable for an error, not for a block
                        yield from self._last_blocks([ring])
                        self._lose(ring)
                if not readable:
                    yield None
        yield from self._last_blocks(self._rings)

    @staticmethod
    def _last_blocks(rings: list[_Ring]) -> Iterator[Batch]:
        """The newest packets sit in a block the kernel hands over only after its timeout:
        wait for it, so that a stop, or an interface going away, loses nothing that was
        already captured."""
        time.sleep(2 * BLOCK_TIMEOUT_MS / 1000)
        for ring in rings:
            # A batch holds a few blocks: take them all (a flood does not stop when we do:
            # at most the ring's worth).
            for _ in range(BLOCK_COUNT):
                batch = ring.take_ready()
                if batch is None:
                    break
                if len(batch):
                    yield batch
                ring.give_back()

    def _lose(self, ring: _Ring) -> None:
        with self._lock:
            self._rings.remove(ring)
            self._drops += ring.take_drops()
        ring.close()
        self._lost.lose(ring.interface)

    def _open_again(self, name: str) -> _Ring | None:
        try:
            ring = _Ring(name, self._filter, self._snaplen)
        except OSError:  # not there yet
            return None
        if ring.lost():  # there, but still down
            ring.close()
            return None
        return ring


class _Ring:
    def __init__(self, interface: str, bpf_filter: str | None, snaplen: int = SNAPLEN) -> None:
        self.interface = interface
        self.snaplen = snaplen  # what the caller asked for; see SNAPLEN
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
            # The bound device's hardware type, from the kernel: its link type, and whether it
            # is a loopback.
            hardware_type = self.sock.getsockname()[3]
            self.loopback = hardware_type == ARPHRD_LOOPBACK
            if self.loopback:
                # lo shows each packet twice, leaving and coming back: have the kernel skip the
                # first copy (Linux 4.20+), half the work and honest drop counts; older kernels
                # deliver both and take_ready() skips it.
                with contextlib.suppress(OSError):
                    self.sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        except BaseException:
            self.sock.close()
            raise
        self.linktype = LINK_TYPE_BY_ARPHRD.get(hardware_type)  # None: a device we cannot read
        self._next_block = 0
        self._taken = 0
        self.view: np.ndarray | None = np.frombuffer(self.ring, dtype=np.uint8)
        # The walk's table of each packet's first bytes (parse reads them there), reused by
        # the next batch as the ring's blocks are.
        self._table = np.empty((BATCH_PACKETS, HEADER_BYTES), dtype=np.uint8)

    def fileno(self) -> int:
        return self.sock.fileno()

    def lost(self) -> bool:
        """Whether the kernel says the interface went down or away (reading clears it)."""
        try:
            error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError as failure:
            error = failure.errno or 0
        return error in LOST_ERRORS

    def take_drops(self) -> int:
        try:
            stats = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
        except OSError:
            return 0
        return int(struct.unpack_from("=II", stats)[1])  # the kernel resets it on each read

    def close(self) -> None:
        self.view = None
        # A batch still pointing into the ring keeps it alive; it goes with the last reference.
        with contextlib.suppress(BufferError):
            self.ring.close()
        self.sock.close()

    def take_ready(self) -> Batch | None:
        """The packets of the blocks the kernel has handed over (as many as one batch holds),
        as one Batch (None: no block ready). The blocks stay ours until give_back()."""
        view = self.view
        assert view is not None, "ring used after close()"
        table = self._table
        starts, captured, wire, ts_ns = (np.empty(BATCH_PACKETS, dtype=np.int64)
                                         for _ in range(4))
        count, self._taken = record_walk.walk_ring(
            self.ring, self._next_block, BLOCK_COUNT, BLOCK_BYTES, BLOCK_PACKETS,
            self.loopback, starts, captured, wire, ts_ns, table, HEADER_BYTES)
        if not self._taken:
            return None
        if self.linktype is None:  # a device we cannot read: its blocks are given back
            count = 0
        return Batch(view, starts[:count], captured[:count], ts_ns[:count], self.linktype or 0,
                     headers=table[:count], wire_lengths=wire[:count])

    def give_back(self) -> None:
        for _ in range(self._taken):
            base = self._next_block * BLOCK_BYTES
            self.ring[base + _BLOCK_STATUS_AT:base + _BLOCK_STATUS_AT + 4] = _STATUS_KERNEL
            self._next_block = (self._next_block + 1) % BLOCK_COUNT
        self._taken = 0
