"""Frame bytes -> the few header fields the product needs: for a whole batch with numpy
(parse_batch, the path that keeps up with busy servers), and frame by frame (parse_frame) for
the frames the batch path leaves to it (VLAN tags, IPv6 extension headers) and for tools that
look at single packets.

Pure functions over bytes, no scapy objects: building a scapy Packet per packet caps the daemon
at about 5,000 packets/s, while reading a dozen header bytes directly keeps up with busy servers.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from traffic_capture.addresses import split_address
from traffic_capture.frames import HEADER_BYTES, Batch, compiled_or, rows_at
from traffic_capture.linktypes import LinkType, link_type
from traffic_capture.rules import PROTO_TCP, PROTO_UDP

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
# 802.1Q, 802.1ad (QinQ outer tag), and the pre-standard QinQ tag still seen on some switches.
ETHERTYPE_VLAN_TAGS = frozenset({0x8100, 0x88A8, 0x9100})

# IPv6 extension headers that carry a next-header field and a length, followed to reach TCP/UDP.
# Fragment (44) is fixed at 8 bytes; AH (51) counts its length in 4-byte units, the others in 8.
IPV6_EXT_HOP_BY_HOP = 0
IPV6_EXT_ROUTING = 43
IPV6_EXT_FRAGMENT = 44
IPV6_EXT_AH = 51
IPV6_EXT_DEST_OPTS = 60
IPV6_EXT_OTHERS = frozenset({135, 139, 140, 253, 254})  # mobility, HIP, shim6, experiments
IPV6_EXTENSIONS = frozenset(
    {IPV6_EXT_HOP_BY_HOP, IPV6_EXT_ROUTING, IPV6_EXT_FRAGMENT, IPV6_EXT_AH, IPV6_EXT_DEST_OPTS}
    | IPV6_EXT_OTHERS
)

NO_PORT = -1


# What the classifier needs of one IP packet, as a plain tuple (a NamedTuple costs five times
# as much to build, once per packet):
#   src, dst     packed addresses, 4 or 16 bytes
#   proto        upper-layer protocol after IPv6 extension headers
#   sport, dport NO_PORT when the packet has no TCP/UDP header (fragments, other protocols)
#   ip_bytes     IPv4 total length, or IPv6 payload length + 40
#   payload_at   offset in the frame of the TCP payload (FTP commands), else -1
Fields = tuple[bytes, bytes, int, int, int, int, int]


def _ethertype_offset(frame: bytes, ethertype: int, at: int) -> int:
    """Skip VLAN tags; the offset of the IP header, or -1 for non-IP frames (ARP, LLDP...)."""
    while ethertype in ETHERTYPE_VLAN_TAGS:
        if len(frame) < at + 4:
            return -1
        ethertype = (frame[at + 2] << 8) | frame[at + 3]
        at += 4
    if ethertype in (ETHERTYPE_IPV4, ETHERTYPE_IPV6):
        return at
    return -1


def ip_offset(link: LinkType, frame: bytes) -> int:
    """Where the IP header starts in a frame of this link type, or -1 for non-IP frames."""
    if len(frame) < link.ip_at or (link.ethertype_at is None and len(frame) <= link.ip_at):
        return -1
    if link.ethertype_at is None:
        return link.ip_at
    at = link.ethertype_at
    return _ethertype_offset(frame, (frame[at] << 8) | frame[at + 1], link.ip_at)


def parse_ip(frame: bytes, at: int, wire_length: int | None = None,
             fcs_bytes: int = 0) -> Fields | None:
    """Parse the IP header starting at `at`; None when it is not a readable IPv4/IPv6 header.
    `wire_length`: the frame's length on the wire, when the capture cut it; `fcs_bytes`: the
    FCS it ends in, if the capture says so."""
    if at < 0 or len(frame) < at + 20:
        return None
    # What follows the link header on the wire (less an FCS): never less than what was
    # captured (a writer may claim a wire length of 0), and, when the wire length is known,
    # the most any IP length field may count (a source that gives none: no bound).
    after_link = max(max(len(frame), wire_length or 0) - fcs_bytes - at, 20)
    most = after_link if wire_length is not None else _NO_BOUND
    version = frame[at] >> 4
    if version == 4:
        return _parse_ipv4(frame, at, after_link, most)
    if version == 6 and len(frame) >= at + 40:
        return _parse_ipv6(frame, at, after_link, most)
    return None


_NO_BOUND = 2**62


def _parse_ipv4(frame: bytes, at: int, after_link: int, most: int) -> Fields | None:
    header_len = (frame[at] & 0x0F) * 4
    if header_len < 20:
        return None
    total_len = (frame[at + 2] << 8) | frame[at + 3]
    if total_len < header_len:
        # TCP segmentation offload can leave 0 here on the sending host: what follows the
        # link header on the wire is then the count (not the captured bytes, which the snap
        # length cuts).
        total_len = after_link
    total_len = min(total_len, most)  # a length field never counts past the wire
    proto = frame[at + 9]
    src = frame[at + 12 : at + 16]
    dst = frame[at + 16 : at + 20]
    fragment_offset = ((frame[at + 6] & 0x1F) << 8) | frame[at + 7]
    l4 = at + header_len
    if fragment_offset or (proto != PROTO_TCP and proto != PROTO_UDP):
        return (src, dst, proto, NO_PORT, NO_PORT, total_len, -1)
    return _with_ports(frame, src, dst, proto, l4, total_len)


def _parse_ipv6(frame: bytes, at: int, after_link: int, most: int) -> Fields | None:
    payload_len = (frame[at + 4] << 8) | frame[at + 5]
    next_header = frame[at + 6]
    src = frame[at + 8 : at + 24]
    dst = frame[at + 24 : at + 40]
    # A jumbogram says 0 here: its length is in a hop-by-hop Jumbo Payload option (RFC 2675),
    # else (BIG TCP, offload) what follows the link header on the wire is the count.
    ip_bytes = min(payload_len + 40 if payload_len else (
        _jumbo_length(frame, at) or after_link), most)
    next_header, l4, later_fragment, whole = ipv6_upper_layer(frame, at)
    if not whole:
        # Cut short by the snaplen: the protocol is known, the ports are not.
        return (src, dst, next_header, NO_PORT, NO_PORT, ip_bytes, -1)
    if later_fragment or (next_header != PROTO_TCP and next_header != PROTO_UDP):
        return (src, dst, next_header, NO_PORT, NO_PORT, ip_bytes, -1)
    return _with_ports(frame, src, dst, next_header, l4, ip_bytes)


def ipv6_upper_layer(frame: bytes, at: int) -> tuple[int, int, bool, bool]:
    """Past an IPv6 header's extension headers: (the next protocol, where it starts, whether
    this is a later fragment (no upper-layer header in it), whether the walk got there before
    the captured bytes ended)."""
    next_header = frame[at + 6]
    l4 = at + 40
    later_fragment = False
    while next_header in IPV6_EXTENSIONS:
        if len(frame) < l4 + 8:
            return next_header, l4, later_fragment, False
        following = frame[l4]
        if next_header == IPV6_EXT_FRAGMENT:
            l4 += 8
            if ((frame[l4 - 6] << 8) | frame[l4 - 5]) & 0xFFF8:
                # A later fragment: what follows is the fragmented packet's data, whose
                # first header type the fragment header names.
                return following, l4, True, True
        elif next_header == IPV6_EXT_AH:
            l4 += (frame[l4 + 1] + 2) * 4
        else:
            l4 += (frame[l4 + 1] + 1) * 8
        next_header = following
    return next_header, l4, later_fragment, True


def _jumbo_length(frame: bytes, at: int) -> int | None:
    """IPv6 bytes from a Jumbo Payload option (type 0xC2) in a hop-by-hop header, if any. A
    value under 65,536 is damage (RFC 2675 forbids it; tshark says so): None, and the wire
    gives the bytes, as for a jumbo option beside a non-zero payload length (never read)."""
    if frame[at + 6] != IPV6_EXT_HOP_BY_HOP or len(frame) < at + 48:
        return None
    end = min(at + 40 + (frame[at + 41] + 1) * 8, len(frame))
    option = at + 42
    while option + 2 <= end:
        kind = frame[option]
        if kind == 0:  # Pad1
            option += 1
            continue
        if kind == _JUMBO_PAYLOAD and frame[option + 1] == 4 and option + 6 <= end:
            jumbo = int.from_bytes(frame[option + 2:option + 6], "big")
            return jumbo + 40 if jumbo >= _JUMBO_MINIMUM else None
        option += 2 + frame[option + 1]
    return None


_JUMBO_PAYLOAD = 0xC2
_JUMBO_MINIMUM = 65_536


def _with_ports(
    frame: bytes, src: bytes, dst: bytes, proto: int, l4: int, ip_bytes: int
) -> Fields:
    if len(frame) < l4 + 4:
        return (src, dst, proto, NO_PORT, NO_PORT, ip_bytes, -1)
    sport = (frame[l4] << 8) | frame[l4 + 1]
    dport = (frame[l4 + 2] << 8) | frame[l4 + 3]
    payload_at = -1
    if proto == PROTO_TCP and len(frame) >= l4 + 13:
        payload_at = l4 + (frame[l4 + 12] >> 4) * 4
    return (src, dst, proto, sport, dport, ip_bytes, payload_at)


def parse_frame(linktype: int, frame: bytes, wire_length: int | None = None,
                fcs_bytes: int = 0) -> Fields | None:
    """One frame of a given link type -> its IP fields, or None for non-IP frames. Raises
    UnknownLinkType for a link type nobody reads."""
    return parse_ip(frame, ip_offset(link_type(linktype), frame), wire_length, fcs_bytes)


# The batch path.

# A lookup table (a gather is several times faster than np.isin on small sets).
IS_IPV6_EXTENSION = np.zeros(256, dtype=bool)
IS_IPV6_EXTENSION[sorted(IPV6_EXTENSIONS)] = True


class Parsed(NamedTuple):
    """Per frame of a batch: the Fields, as arrays. Addresses are (is6, hi, lo) with an
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
    malformed: int  # frames said to be IP (ethertype, version) whose header cannot be read


def _fields(header: np.ndarray, size: int) -> np.ndarray:
    """The IP header rows as big-endian words of `size` bytes: column k is bytes
    k*size..(k+1)*size-1 (one view, no copy)."""
    return header.view(f">u{size}")


def link_layer(ip: int, ethertype_at: int | None, h: np.ndarray, lengths: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Per frame (h: its first bytes, one row each): whether its link header says IP, and
    whether it is left to the frame-by-frame parser (VLAN tags)."""
    n = len(lengths)
    scalar = np.zeros(n, dtype=bool)
    if ethertype_at is None:  # IP right after the link header, if a byte of it was captured
        return lengths > ip, scalar
    ethertype = (h[:, ethertype_at].astype(np.int64) << 8) | h[:, ethertype_at + 1]
    for tag in ETHERTYPE_VLAN_TAGS:
        scalar |= ethertype == tag
    scalar &= lengths >= ip
    link_ok = (lengths >= ip) & ((ethertype == ETHERTYPE_IPV4) | (ethertype == ETHERTYPE_IPV6))
    return link_ok, scalar


def parse_batch(batch: Batch) -> Parsed:
    """Every frame of a batch at once; frames with VLAN tags or IPv6 extension headers go
    through parse_frame and join the same arrays."""
    starts, lengths = batch.starts, batch.lengths
    n = len(starts)
    # Bytes past a frame's end (the next frame's, or zeros) are masked by its length.
    if batch.headers is None:
        table, base = rows_at(batch.data, starts, HEADER_BYTES), 0
    else:
        table, base = np.ascontiguousarray(batch.headers), batch.headers_at
    link = link_type(batch.linktype)  # raises UnknownLinkType, naming it
    flags = np.empty((3, n), dtype=bool)  # is_ip, is6, left to the frame-by-frame parser
    addresses = np.empty((4, n), dtype=np.uint64)
    columns = np.empty((5, n), dtype=np.int64)  # proto, sport, dport, ip_bytes, payload_at
    lengths = np.ascontiguousarray(lengths, dtype=np.int64)
    wire = np.ascontiguousarray(batch.wire(), dtype=np.int64)
    malformed = parse_rows(table, table.shape[1], base,
                           link.ip_at, -1 if link.ethertype_at is None else link.ethertype_at,
                           lengths, wire, batch.wire_lengths is not None, batch.fcs_bytes,
                           flags[0], flags[1], *addresses, *columns, flags[2])
    src_hi, src_lo, dst_hi, dst_lo = addresses
    proto, sport, dport, ip_bytes, payload_at = columns
    parsed = Parsed(flags[0], flags[1], src_hi, src_lo, dst_hi, dst_lo, proto, sport, dport,
                    ip_bytes, payload_at, malformed)
    for i in np.flatnonzero(flags[2]):
        _fill_from_scalar(parsed, int(i), parse_frame(
            batch.linktype, batch.frame(int(i)),
            None if batch.wire_lengths is None else int(wire[i]), batch.fcs_bytes))
    return parsed


def python_parse_rows(table: np.ndarray, width: int, base: int, ip: int, ethertype_at: int,
                      lengths: np.ndarray, wire: np.ndarray, bounded: bool, fcs_bytes: int,
                      *out: np.ndarray) -> int:
    """The fields of each frame from its row of `table` (its first bytes from column
    `base`), into the twelve arrays `out` (Parsed's, then the frames left to parse_frame);
    the count of malformed frames. _parse_rows.c is the same in one pass."""
    (is_ip_out, is6_out, src_hi_out, src_lo_out, dst_hi_out, dst_lo_out, proto_out, sport_out,
     dport_out, ip_bytes_out, payload_at_out, scalar_out) = out
    n = len(lengths)
    table = table.reshape(-1)[:n * width].reshape(n, width)
    h = table[:, base:base + HEADER_BYTES]
    link_ok, scalar = link_layer(ip, None if ethertype_at < 0 else ethertype_at, h, lengths)
    header = np.ascontiguousarray(h[:, ip:ip + 40])  # the IPv6 header, or IPv4's and more
    words, longs, quads = _fields(header, 2), _fields(header, 4), _fields(header, 8)
    first = header[:, 0].astype(np.int64)
    version = first >> 4
    v4 = link_ok & (version == 4) & (lengths >= ip + 20) & ((first & 0x0F) >= 5)
    v6 = link_ok & (version == 6) & (lengths >= ip + 40)

    # IPv4 (a length of 0: segmentation offload; the bytes on the wire after the link header)
    # (A writer may claim a wire length under the captured one: never count less than that.)
    after_link = np.maximum(np.maximum(wire, lengths) - fcs_bytes - ip, 20)
    most = after_link if bounded else _NO_BOUND  # as parse_ip
    header_len = (first & 0x0F) * 4
    total_len = words[:, 1].astype(np.int64)
    v4_bytes = np.minimum(np.where(total_len < header_len, after_link, total_len), most)
    fragment = words[:, 3].astype(np.int64) & 0x1FFF
    proto4 = header[:, 9].astype(np.int64)
    # IPv6 (extension headers, and so jumbograms: the scalar parser follows them)
    payload_len = words[:, 2].astype(np.int64)
    next_header = header[:, 6].astype(np.int64)
    scalar |= v6 & IS_IPV6_EXTENSION[next_header]
    v6_bytes = np.minimum(np.where(payload_len > 0, payload_len + 40, after_link), most)

    proto = np.where(v6, next_header, proto4)
    l4 = np.where(v6, ip + 40, ip + header_len)  # frame-relative, at most 20 + 60
    with_ports = ((proto == PROTO_TCP) | (proto == PROTO_UDP)) & (lengths >= l4 + 4) & (
        v6 | (fragment == 0))
    flat = table.reshape(-1)  # C-contiguous: a view
    at = np.arange(n, dtype=np.int64) * width + base + l4

    def byte(offset: int) -> np.ndarray:
        return flat[at + offset].astype(np.int64)

    sport_out[:] = np.where(with_ports, (byte(0) << 8) | byte(1), NO_PORT)
    dport_out[:] = np.where(with_ports, (byte(2) << 8) | byte(3), NO_PORT)
    has_payload_at = with_ports & (proto == PROTO_TCP) & (lengths >= l4 + 13)
    payload_at_out[:] = np.where(has_payload_at, l4 + (byte(12) >> 4) * 4, -1)

    # Addresses: IPv6 at bytes 8-23 and 24-39, IPv4 at 12-15 and 16-19.
    zero = np.uint64(0)
    src_hi_out[:] = np.where(v6, quads[:, 1], zero)
    src_lo_out[:] = np.where(v6, quads[:, 2], longs[:, 3].astype(np.uint64))
    dst_hi_out[:] = np.where(v6, quads[:, 3], zero)
    dst_lo_out[:] = np.where(v6, quads[:, 4], longs[:, 4].astype(np.uint64))
    is_ip = v4 | v6
    is_ip_out[:], is6_out[:], scalar_out[:] = is_ip, v6, scalar
    proto_out[:], ip_bytes_out[:] = proto, np.where(v6, v6_bytes, v4_bytes)
    # Counted, not masked (this runs per batch): a readable header implies a good link header.
    claims_ip = link_ok if ethertype_at >= 0 else (link_ok & ((version == 4) | (version == 6)))
    return int(np.count_nonzero(claims_ip)) - int(np.count_nonzero(is_ip))


try:
    from traffic_capture._parse_rows import parse_rows as compiled_parse_rows
except ImportError:  # no C compiler at install: the same arrays, from numpy
    compiled_parse_rows = None

parse_rows = compiled_or(compiled_parse_rows, python_parse_rows)


def _fill_from_scalar(parsed: Parsed, i: int, fields: Fields | None) -> None:
    if fields is None:
        parsed.is_ip[i] = False
        return
    src, dst, proto, sport, dport, ip_bytes, payload_at = fields
    parsed.is_ip[i] = True
    parsed.is6[i] = len(src) == 16
    parsed.src_hi[i], parsed.src_lo[i] = split_address(src)
    parsed.dst_hi[i], parsed.dst_lo[i] = split_address(dst)
    parsed.proto[i], parsed.sport[i], parsed.dport[i] = proto, sport, dport
    parsed.ip_bytes[i], parsed.payload_at[i] = ip_bytes, payload_at
