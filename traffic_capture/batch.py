"""Vectorised parse + classify for a batch of frames: the path that keeps up with busy servers.

The rules are those of parse.py and classify.py, applied with numpy to the common frames
(IPv4, and IPv6 without extension headers, behind any supported link header). Frames it does
not handle (VLAN tags, IPv6 extension headers) are parsed by the scalar code and join the same
arrays, and FTP announcements are followed in packet order; a property test checks that a batch
gives exactly the rows of the packet-by-packet path, for any input and any batch boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from traffic_capture import parse
from traffic_capture.classify import ServerSet
from traffic_capture.ftp import FtpDataTracker, announced_port
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

# Where the IP header starts, and where the ethertype is (None: judged by the version nibble).
_LINK_LAYOUT: dict[int, tuple[int, int | None]] = {
    parse.DLT_EN10MB: (14, 12),
    parse.DLT_LINUX_SLL: (16, 14),
    parse.DLT_LINUX_SLL2: (20, 0),
    parse.DLT_NULL: (4, None),
    parse.DLT_LOOP: (4, None),
    parse.DLT_RAW: (0, None),
    parse.DLT_RAW_OPENBSD: (0, None),
    parse.DLT_IPV4: (0, None),
    parse.DLT_IPV6: (0, None),
}
_VLAN_TAGS = np.array(sorted(parse.ETHERTYPE_VLAN_TAGS), dtype=np.int64)
_IPV6_EXTENSIONS = np.array(sorted(parse.IPV6_EXTENSIONS), dtype=np.int64)
_FTP_PORTS = np.array(sorted(FTP_PORTS), dtype=np.int64)
_HTTP_PORTS = np.array(sorted(HTTP_PORTS), dtype=np.int64)


@dataclass
class Batch:
    """Frames of one link type in one buffer: frame i is data[starts[i]:starts[i] + lengths[i]]."""

    data: np.ndarray  # uint8
    starts: np.ndarray  # int64
    lengths: np.ndarray  # int64, captured bytes
    ts_ns: np.ndarray  # int64
    linktype: int

    def __len__(self) -> int:
        return len(self.starts)

    def frame(self, i: int) -> bytes:
        start = int(self.starts[i])
        return self.data[start:start + int(self.lengths[i])].tobytes()


def batch_of_frames(records: list[tuple[int, int, bytes]]) -> Batch:
    """Records of one link type -> a Batch (for sources that hand out frames one by one)."""
    frames = [frame for _, _, frame in records]
    lengths = np.fromiter((len(f) for f in frames), dtype=np.int64, count=len(frames))
    starts = np.zeros(len(frames), dtype=np.int64)
    if len(frames) > 1:
        np.cumsum(lengths[:-1], out=starts[1:])
    data = np.frombuffer(b"".join(frames) or b"\0", dtype=np.uint8)
    ts_ns = np.fromiter((ts for ts, _, _ in records), dtype=np.int64, count=len(records))
    return Batch(data, starts, lengths, ts_ns, records[0][1])


@dataclass
class Parsed:
    """Per frame of a batch: the parse.Fields, as arrays. Addresses are (is6, hi, lo) with an
    IPv4 address in the low 32 bits of lo."""

    is_ip: np.ndarray
    is6: np.ndarray
    src_hi: np.ndarray
    src_lo: np.ndarray
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    proto: np.ndarray
    sport: np.ndarray
    dport: np.ndarray
    ip_bytes: np.ndarray
    payload_at: np.ndarray  # frame-relative, -1 if none


def _gather(data: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Bytes at `index`, 0 past the end (callers mask those frames out by their lengths)."""
    last = len(data) - 1
    return np.where(index <= last, data[np.minimum(index, last)], 0).astype(np.int64)


def _u16(data: np.ndarray, index: np.ndarray) -> np.ndarray:
    return (_gather(data, index) << 8) | _gather(data, index + 1)


def _u64(data: np.ndarray, index: np.ndarray, count: int) -> np.ndarray:
    """Big-endian unsigned value of `count` (<= 8) bytes, as uint64."""
    value = np.zeros(len(index), dtype=np.uint64)
    for k in range(count):
        value = (value << np.uint64(8)) | _gather(data, index + k).astype(np.uint64)
    return value


def parse_batch(batch: Batch) -> Parsed:
    data, starts, lengths = batch.data, batch.starts, batch.lengths
    n = len(starts)
    parse.ip_offset_function(batch.linktype)  # raises UnknownLinkType, naming it
    ip_offset, ethertype_at = _LINK_LAYOUT[batch.linktype]
    ip = starts + ip_offset
    end = starts + lengths
    scalar = np.zeros(n, dtype=bool)  # frames left to parse.parse_frame
    if ethertype_at is not None:
        ethertype = _u16(data, starts + ethertype_at)
        tagged = np.isin(ethertype, _VLAN_TAGS)
        scalar |= tagged & (lengths >= ip_offset)
        link_ok = (lengths >= ip_offset) & (
            (ethertype == parse.ETHERTYPE_IPV4) | (ethertype == parse.ETHERTYPE_IPV6))
    else:
        link_ok = lengths > ip_offset if ip_offset else np.ones(n, dtype=bool)
    first = _gather(data, ip)
    version = first >> 4
    v4 = link_ok & (version == 4) & (end >= ip + 20) & ((first & 0x0F) >= 5)
    v6 = link_ok & (version == 6) & (end >= ip + 40)

    # IPv4
    header_len = (first & 0x0F) * 4
    total_len = _u16(data, ip + 2)
    v4_bytes = np.where(total_len < header_len, end - ip, total_len)
    fragment = ((_gather(data, ip + 6) & 0x1F) << 8) | _gather(data, ip + 7)
    proto4 = _gather(data, ip + 9)
    # IPv6 (extension headers: the scalar parser follows them)
    payload_len = _u16(data, ip + 4)
    next_header = _gather(data, ip + 6)
    scalar |= v6 & np.isin(next_header, _IPV6_EXTENSIONS)
    v6_bytes = np.where(payload_len > 0, payload_len + 40, end - ip)

    is6 = v6
    proto = np.where(v6, next_header, proto4)
    ip_bytes = np.where(v6, v6_bytes, v4_bytes)
    l4 = np.where(v6, ip + 40, ip + header_len)
    with_ports = ((proto == PROTO_TCP) | (proto == PROTO_UDP)) & (end >= l4 + 4) & (
        v6 | (fragment == 0))
    sport = np.where(with_ports, _u16(data, l4), parse.NO_PORT)
    dport = np.where(with_ports, _u16(data, l4 + 2), parse.NO_PORT)
    has_payload_at = with_ports & (proto == PROTO_TCP) & (end >= l4 + 13)
    payload_at = np.where(has_payload_at, l4 - starts + (_gather(data, l4 + 12) >> 4) * 4, -1)

    src_hi = np.where(v6, _u64(data, ip + 8, 8), np.uint64(0))
    src_lo = np.where(v6, _u64(data, ip + 16, 8), _u64(data, ip + 12, 4))
    dst_hi = np.where(v6, _u64(data, ip + 24, 8), np.uint64(0))
    dst_lo = np.where(v6, _u64(data, ip + 32, 8), _u64(data, ip + 16, 4))
    parsed = Parsed(v4 | v6, is6, src_hi, src_lo, dst_hi, dst_lo, proto, sport, dport,
                    ip_bytes, payload_at)
    for i in np.flatnonzero(scalar):
        _fill_from_scalar(parsed, int(i), parse.parse_frame(batch.linktype, batch.frame(int(i))))
    return parsed


def _fill_from_scalar(parsed: Parsed, i: int, fields: parse.Fields | None) -> None:
    if fields is None:
        parsed.is_ip[i] = False
        return
    src, dst, proto, sport, dport, ip_bytes, payload_at = fields
    parsed.is_ip[i] = True
    parsed.is6[i] = len(src) == 16
    parsed.src_hi[i], parsed.src_lo[i] = _split_address(src)
    parsed.dst_hi[i], parsed.dst_lo[i] = _split_address(dst)
    parsed.proto[i], parsed.sport[i], parsed.dport[i] = proto, sport, dport
    parsed.ip_bytes[i], parsed.payload_at[i] = ip_bytes, payload_at


def _split_address(address: bytes) -> tuple[int, int]:
    if len(address) == 4:
        return 0, int.from_bytes(address, "big")
    return int.from_bytes(address[:8], "big"), int.from_bytes(address[8:], "big")


def join_address(is6: bool, hi: int, lo: int) -> bytes:
    if is6:
        return hi.to_bytes(8, "big") + lo.to_bytes(8, "big")
    return lo.to_bytes(4, "big")


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
                   ftp: FtpDataTracker) -> Classified:
    p = parsed
    dst_server = p.is_ip & _member(servers, p.is6, p.dst_hi, p.dst_lo)
    src_server = p.is_ip & _member(servers, p.is6, p.src_hi, p.src_lo)
    counted = dst_server | src_server
    inbound = dst_server  # server-to-server counts once, as `in`, like the scalar rule
    client_hi = np.where(inbound, p.src_hi, p.dst_hi)
    client_lo = np.where(inbound, p.src_lo, p.dst_lo)
    tcp = p.proto == PROTO_TCP
    ftp_port = tcp & (np.isin(p.sport, _FTP_PORTS) | np.isin(p.dport, _FTP_PORTS))
    http_port = tcp & (np.isin(p.sport, _HTTP_PORTS) | np.isin(p.dport, _HTTP_PORTS))
    protocol_class = np.select(
        [ftp_port, http_port, tcp, p.proto == PROTO_UDP], [FTP, HTTP, TCP, UDP], OTHER)
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
    for i in control.tolist():
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
