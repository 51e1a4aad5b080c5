"""Parsed header fields + the servers -> which packets count, and their client, direction,
protocol class and IP bytes, for a whole batch at once.

The rules are the product's contract (rules.py and the README, each pinned by a test); the
packet-by-packet statement they are checked against lives in tests/reference.py.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from traffic_capture.addresses import join_address
from traffic_capture.frames import Batch
from traffic_capture.ftp import ANNOUNCEMENT_MARKS, FtpDataTracker, announced_port
from traffic_capture.parse import Parsed
from traffic_capture.rules import (
    FTP,
    FTP_CONTROL_PORT,
    FTP_PORTS,
    HTTP,
    HTTP_PORTS,
    OTHER,
    PROTO_TCP,
    PROTO_UDP,
    TCP,
    UDP,
)
from traffic_capture.servers import ServerSet

_FTP_FLAG, _HTTP_FLAG = 1, 2


@functools.lru_cache(maxsize=8)
def port_flags(http_ports: frozenset[int] = HTTP_PORTS) -> np.ndarray:
    """Per port + 1 (NO_PORT is -1): whether it is an FTP port, an http one (--http-ports)."""
    flags = np.zeros(65536 + 1, dtype=np.int64)
    flags[[port + 1 for port in http_ports]] |= _HTTP_FLAG
    flags[[port + 1 for port in FTP_PORTS]] |= _FTP_FLAG
    return flags
# Class by (TCP port flags 0-3, or 4 for UDP, 5 for anything else): FTP ports win over HTTP.
_CLASS_BY_CODE = np.array([TCP, FTP, HTTP, FTP, UDP, OTHER], dtype=np.int64)


def _member(servers: ServerSet, is6: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    member = np.zeros(len(is6), dtype=bool)
    for network in servers.networks:
        prefix = network.prefixlen
        value = int(network.network_address)
        if network.version == 4:
            mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
            member |= ~is6 & ((lo & np.uint64(mask)) == np.uint64(value & mask))
        else:
            mask = ((1 << 128) - 1) ^ ((1 << (128 - prefix)) - 1)
            mask_hi, mask_lo = np.uint64(mask >> 64), np.uint64(mask & (2**64 - 1))
            member |= is6 & ((hi & mask_hi) == np.uint64((value >> 64) & int(mask_hi))) & (
                (lo & mask_lo) == np.uint64(value & int(mask_lo)))
    return member


@dataclass
class Classified:
    """Per frame: whether it counts, and its client, direction and class."""

    counted: np.ndarray
    is6: np.ndarray
    client_hi: np.ndarray
    client_lo: np.ndarray
    inbound: np.ndarray
    protocol_class: np.ndarray
    ip_bytes: np.ndarray


def classify_batch(batch: Batch, parsed: Parsed, servers: ServerSet,
                   ftp: FtpDataTracker, http_ports: frozenset[int] = HTTP_PORTS) -> Classified:
    p = parsed
    dst_server = p.is_ip & _member(servers, p.is6, p.dst_hi, p.dst_lo)
    src_server = p.is_ip & _member(servers, p.is6, p.src_hi, p.src_lo)
    counted = dst_server | src_server
    inbound = dst_server  # server-to-server counts once, as `in`, like the scalar rule
    client_hi = np.where(inbound, p.src_hi, p.dst_hi)
    client_lo = np.where(inbound, p.src_lo, p.dst_lo)
    tcp = p.proto == PROTO_TCP
    table = port_flags(http_ports)
    flags = table[p.sport + 1] | table[p.dport + 1]
    ftp_port = tcp & ((flags & _FTP_FLAG) != 0)
    protocol_class = _CLASS_BY_CODE[np.where(tcp, flags, np.where(p.proto == PROTO_UDP, 4, 5))]
    _follow_ftp(batch, p, counted, tcp, ftp_port, protocol_class, ftp)
    return Classified(counted, p.is6, client_hi, client_lo, inbound, protocol_class, p.ip_bytes)


def _follow_ftp(batch: Batch, p: Parsed, counted: np.ndarray, tcp: np.ndarray,
                ftp_port: np.ndarray, protocol_class: np.ndarray, ftp: FtpDataTracker) -> None:
    """FTP announcements and data connections, in packet order (an announcement only covers
    the packets after it). Only packets on an announced port pay the per-packet cost."""
    control = np.flatnonzero(counted & ftp_port & (
        (p.sport == FTP_CONTROL_PORT) | (p.dport == FTP_CONTROL_PORT)) & (
        p.payload_at > 0) & (p.payload_at < batch.lengths))
    announcements = {}
    for i in _may_announce(batch, p.payload_at, control):
        port = announced_port(batch.frame(i)[int(p.payload_at[i]):])
        if port is not None:
            announcements[i] = port
    ports = ftp.ports() | set(announcements.values())
    if not ports:
        return
    port_list = np.fromiter(ports, dtype=np.int64)
    candidates = counted & tcp & ~ftp_port & (
        np.isin(p.sport, port_list) | np.isin(p.dport, port_list))
    order = sorted(set(np.flatnonzero(candidates).tolist()) | set(announcements))
    for i in order:
        src = join_address(bool(p.is6[i]), int(p.src_hi[i]), int(p.src_lo[i]))
        dst = join_address(bool(p.is6[i]), int(p.dst_hi[i]), int(p.dst_lo[i]))
        if i in announcements:
            ftp.remember(src, announcements[i], dst)
        elif ftp.is_data(src, int(p.sport[i]), dst, int(p.dport[i])):
            protocol_class[i] = FTP


def _may_announce(batch: Batch, payload_at: np.ndarray, control: np.ndarray) -> list[int]:
    if not len(control):
        return []
    view = batch.data.data  # the array's own memoryview: slices of it copy nothing
    begin = (batch.starts[control] + payload_at[control]).tolist()
    end = (batch.starts[control] + batch.lengths[control]).tolist()
    # "\n" between payloads: no mark spans it, and it keeps each payload's first line a line.
    text = b"\n".join([view[b:e] for b, e in zip(begin, end, strict=True)]).lower()
    after = np.cumsum(np.array(end) - np.array(begin) + 1)  # where each payload's next starts
    found: set[int] = set()
    for mark in ANNOUNCEMENT_MARKS:
        at = text.find(mark)
        while at >= 0:
            found.add(int(np.searchsorted(after, at, side="right")))
            at = text.find(mark, at + 1)
    return sorted(int(control[k]) for k in found)
