"""Parsed header fields + the servers -> which packets count, and their client, direction,
protocol class and IP bytes, for a whole batch at once: in one pass of _classify_rows.c where
it was built, else by its numpy twin python_classify_rows (where the rules are written);
FTP's announcements and data connections are then followed in packet order, in Python (the
C step only says which control packets' payloads hold an announcement's mark).

The rules are the product's contract (rules.py and the README, each pinned by a test); the
packet-by-packet statement they are checked against lives in tests/reference.py.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from traffic_capture.addresses import join_address
from traffic_capture.frames import Batch, compiled_or
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
from traffic_capture.servers import IPNetwork, ServerSet

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


@functools.lru_cache(maxsize=8)
def server_table(servers: tuple[IPNetwork, ...]) -> np.ndarray:
    """The server networks as uint64 rows (is6, mask_hi, mask_lo, value_hi, value_lo), each
    value masked: an address is in a network when (hi & mask_hi, lo & mask_lo) equals its
    value, an IPv4 address living in the low 32 bits of lo (parse.Parsed)."""
    low = 2**64 - 1
    rows = []
    for network in servers:
        mask, value = int(network.netmask), int(network.network_address)
        rows.append((int(network.version == 6), mask >> 64, mask & low, value >> 64,
                     value & low))
    return np.array(rows, dtype=np.uint64).reshape(-1, 5)


def _member(servers: np.ndarray, is6: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    member = np.zeros(len(is6), dtype=bool)
    for network_is6, mask_hi, mask_lo, value_hi, value_lo in servers:
        member |= (is6 == bool(network_is6)) & ((hi & mask_hi) == value_hi) & (
            (lo & mask_lo) == value_lo)
    return member


def python_classify_rows(is_ip: np.ndarray, is6: np.ndarray, src_hi: np.ndarray,
                         src_lo: np.ndarray, dst_hi: np.ndarray, dst_lo: np.ndarray,
                         proto: np.ndarray, sport: np.ndarray, dport: np.ndarray,
                         payload_at: np.ndarray, lengths: np.ndarray, servers: np.ndarray,
                         flags_by_port: np.ndarray, class_by_code: np.ndarray,
                         ftp_control_port: int, *out: np.ndarray) -> None:
    """The rules, per packet of a batch (Parsed's columns), into the seven arrays `out`:
    whether it counts, whether it goes to a server, its client (hi, lo), its class before
    FTP's data connections are followed, whether a port is an FTP one, and whether it is an
    FTP control packet with a payload (an announcement may be in it). _classify_rows.c is the
    same in one pass."""
    counted_out, inbound_out, client_hi_out, client_lo_out, class_out, ftp_port_out, \
        control_out = out
    if len(sport) and (min(sport.min(), dport.min()) < -1
                       or max(sport.max(), dport.max()) > 65535):
        raise ValueError("classify_rows: a port out of range")
    to_server = is_ip & _member(servers, is6, dst_hi, dst_lo)
    from_server = is_ip & _member(servers, is6, src_hi, src_lo)
    counted = to_server | from_server
    # Server-to-server counts once, as `in`, like the scalar rule.
    counted_out[:], inbound_out[:] = counted, to_server
    client_hi_out[:] = np.where(to_server, src_hi, dst_hi)
    client_lo_out[:] = np.where(to_server, src_lo, dst_lo)
    tcp = proto == PROTO_TCP
    flags = flags_by_port[sport + 1] | flags_by_port[dport + 1]
    ftp_port = tcp & ((flags & _FTP_FLAG) != 0)
    class_out[:] = class_by_code[np.where(tcp, flags & 3, np.where(proto == PROTO_UDP, 4, 5))]
    ftp_port_out[:] = ftp_port
    control_out[:] = counted & ftp_port & (
        (sport == ftp_control_port) | (dport == ftp_control_port)) & (payload_at > 0) & (
        payload_at < lengths)


try:
    from traffic_capture._classify_rows import classify_rows as compiled_classify_rows
except ImportError:  # no C compiler at install: the same arrays, from numpy
    compiled_classify_rows = None

classify_rows = compiled_or(compiled_classify_rows, python_classify_rows)


class Classified(NamedTuple):
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
    n = len(p.is_ip)
    counted, inbound, ftp_port, control = (np.empty(n, dtype=bool) for _ in range(4))
    client_hi, client_lo = np.empty(n, dtype=np.uint64), np.empty(n, dtype=np.uint64)
    protocol_class = np.empty(n, dtype=np.int64)
    classify_rows(p.is_ip, p.is6, p.src_hi, p.src_lo, p.dst_hi, p.dst_lo, p.proto, p.sport,
                  p.dport, p.payload_at, np.ascontiguousarray(batch.lengths, dtype=np.int64),
                  server_table(servers.networks), port_flags(http_ports), _CLASS_BY_CODE,
                  FTP_CONTROL_PORT, counted, inbound, client_hi, client_lo, protocol_class,
                  ftp_port, control)
    _follow_ftp(batch, p, counted, ftp_port, control, protocol_class, ftp)
    return Classified(counted, p.is6, client_hi, client_lo, inbound, protocol_class, p.ip_bytes)


def _follow_ftp(batch: Batch, p: Parsed, counted: np.ndarray, ftp_port: np.ndarray,
                control: np.ndarray, protocol_class: np.ndarray, ftp: FtpDataTracker) -> None:
    """FTP announcements and data connections, in packet order (an announcement only covers
    the packets after it). Only packets on an announced port pay the per-packet cost."""
    announcements = {}
    for i in may_announce(batch, p.payload_at, control).tolist():
        port = announced_port(batch.frame(i)[int(p.payload_at[i]):])
        if port is not None:
            announcements[i] = port
    ports = ftp.ports() | set(announcements.values())
    if not ports:
        return
    port_list = np.fromiter(ports, dtype=np.int64)
    candidates = counted & (p.proto == PROTO_TCP) & ~ftp_port & (
        np.isin(p.sport, port_list) | np.isin(p.dport, port_list))
    order = sorted(set(np.flatnonzero(candidates).tolist()) | set(announcements))
    for i in order:
        src = join_address(bool(p.is6[i]), int(p.src_hi[i]), int(p.src_lo[i]))
        dst = join_address(bool(p.is6[i]), int(p.dst_hi[i]), int(p.dst_lo[i]))
        if i in announcements:
            ftp.remember(src, announcements[i], dst)
        elif ftp.is_data(src, int(p.sport[i]), dst, int(p.dport[i])):
            protocol_class[i] = FTP


def python_may_announce(batch: Batch, payload_at: np.ndarray, control: np.ndarray
                        ) -> np.ndarray:
    """The control packets (a bool per packet) whose payloads hold an announcement's mark, in
    any case: only those are read by announced_port. _classify_rows.c's may_announce is the
    same, without copying the payloads."""
    indexes = np.flatnonzero(control)
    if not len(indexes):
        return indexes
    view = batch.data.data  # the array's own memoryview: slices of it copy nothing
    begin = (batch.starts[indexes] + payload_at[indexes]).tolist()
    end = (batch.starts[indexes] + batch.lengths[indexes]).tolist()
    # "\n" between payloads: no mark spans it, and it keeps each payload's first line a line.
    text = b"\n".join([view[b:e] for b, e in zip(begin, end, strict=True)]).lower()
    after = np.cumsum(np.array(end) - np.array(begin) + 1)  # where each payload's next starts
    found: set[int] = set()
    for mark in ANNOUNCEMENT_MARKS:
        at = text.find(mark)
        while at >= 0:
            found.add(int(np.searchsorted(after, at, side="right")))
            at = text.find(mark, at + 1)
    return indexes[sorted(found)]


try:
    from traffic_capture._classify_rows import may_announce as _compiled_may_announce
except ImportError:  # no C compiler at install: the same packets, through bytes.find
    _compiled_may_announce = None


def _c_may_announce(batch: Batch, payload_at: np.ndarray, control: np.ndarray) -> np.ndarray:
    assert _compiled_may_announce is not None
    found = np.empty(len(control), dtype=np.int64)
    count = _compiled_may_announce(
        batch.data, np.ascontiguousarray(batch.starts, dtype=np.int64),
        np.ascontiguousarray(batch.lengths, dtype=np.int64),
        np.ascontiguousarray(payload_at, dtype=np.int64),
        np.ascontiguousarray(control, dtype=np.bool_), ANNOUNCEMENT_MARKS, found)
    return found[:count]


may_announce = compiled_or(_c_may_announce if _compiled_may_announce else None,
                           python_may_announce)
