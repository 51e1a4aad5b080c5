"""One packet's payload, for the outputs that show packets (the packet log, the viewer): where
it starts, how long its headers say it is (it may be longer than what was captured), and the
TCP flags. The counting never needs these, so they live with their users, not in parse.py.
"""

from __future__ import annotations

import numpy as np

from traffic_capture.frames import HEADER_BYTES, Batch, rows_at
from traffic_capture.linktypes import link_type
from traffic_capture.parse import IS_IPV6_EXTENSION, ip_offset, ipv6_upper_layer, link_layer
from traffic_capture.rules import PROTO_TCP, PROTO_UDP

TCP_FLAG_LETTERS = "FSRPAUEC"  # FIN SYN RST PSH ACK URG ECE CWR, bit 0 first
UDP_HEADER_BYTES = 8

# (payload_at, payload_len, tcp_flags): payload_at is the payload's offset in the frame (-1: the
# headers before it were not captured, so neither it nor its length is known); payload_len
# counts the payload's bytes by the IP and TCP/UDP headers (Ethernet padding is not payload);
# tcp_flags is the TCP flags byte, -1 without a captured TCP header.
PayloadSpan = tuple[int, int, int]
NO_PAYLOAD_SPAN: PayloadSpan = (-1, -1, -1)


def payload_span(linktype: int, frame: bytes, wire_length: int | None = None) -> PayloadSpan:
    """Where one frame's payload is and how long its headers say it is.

    The payload is what follows the TCP or UDP header; for other protocols (ICMP...) and for
    fragments after the first, what follows the IP header(s). The captured part of it is
    frame[payload_at:payload_at + payload_len] (shorter when the capture cut the frame).
    """
    at = ip_offset(link_type(linktype), frame)
    if at < 0 or len(frame) < at + 20:
        return NO_PAYLOAD_SPAN
    wire = max(len(frame), wire_length or 0)  # a zero IP length: the bytes on the wire
    version = frame[at] >> 4
    if version == 4:
        header_len = (frame[at] & 0x0F) * 4
        if header_len < 20:
            return NO_PAYLOAD_SPAN
        total_len = (frame[at + 2] << 8) | frame[at + 3]
        if total_len < header_len:  # offloaded (0): the wire length stands in, as above
            total_len = wire - at
        proto = frame[at + 9]
        l4 = at + header_len
        first_fragment = not (((frame[at + 6] & 0x1F) << 8) | frame[at + 7])
        return _l4_span(frame, proto if first_fragment else -1, l4, at + total_len)
    if version != 6 or len(frame) < at + 40:
        return NO_PAYLOAD_SPAN
    payload_len = (frame[at + 4] << 8) | frame[at + 5]
    end = at + 40 + payload_len if payload_len else wire
    next_header, l4, later_fragment, whole = ipv6_upper_layer(frame, at)
    if not whole:
        return NO_PAYLOAD_SPAN
    return _l4_span(frame, -1 if later_fragment else next_header, l4, end)


def _l4_span(frame: bytes, proto: int, l4: int, end: int) -> PayloadSpan:
    """The payload after the upper-layer header at l4, in an IP packet ending at `end`."""
    if proto == PROTO_TCP:
        if len(frame) < l4 + 14:
            return NO_PAYLOAD_SPAN
        at = l4 + (frame[l4 + 12] >> 4) * 4
        return at, max(0, end - at), frame[l4 + 13]
    if proto == PROTO_UDP:
        at = l4 + UDP_HEADER_BYTES
        return at, max(0, end - at), -1
    return l4, max(0, end - l4), -1


def tcp_flags_text(flags: int) -> str:
    """The flags as letters, lowest bit first: SYN+ACK is "SA", PSH+ACK "PA"."""
    return "".join(letter for bit, letter in enumerate(TCP_FLAG_LETTERS) if flags >> bit & 1)


def payload_spans(batch: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """payload_span for every frame of a batch at once, as three int64 arrays (payload_at,
    payload_len, tcp_flags); frames with VLAN tags or IPv6 extension headers go through
    payload_span itself."""
    starts, lengths = batch.starts, batch.lengths
    n = len(starts)
    link = link_type(batch.linktype)
    ip = link.ip_at
    # int32 (not int64): the table is converted whole, and half the width is half the time.
    h = rows_at(batch.data, starts, HEADER_BYTES).astype(np.int32)
    link_ok, scalar = link_layer(ip, link.ethertype_at, h, lengths)
    first = h[:, ip]
    version, header_len = first >> 4, (first & 0x0F) * 4
    v4 = link_ok & (version == 4) & (lengths >= ip + 20) & (header_len >= 20)
    v6 = link_ok & (version == 6) & (lengths >= ip + 40)
    total_len = (h[:, ip + 2] << 8) | h[:, ip + 3]
    wire = np.maximum(batch.wire(), lengths)  # a zero IP length: the bytes on the wire
    total_len = np.where(total_len < header_len, wire - ip, total_len)
    first_fragment = (((h[:, ip + 6] & 0x1F) << 8) | h[:, ip + 7]) == 0
    payload_len6 = (h[:, ip + 4] << 8) | h[:, ip + 5]
    next_header = h[:, ip + 6]
    scalar |= v6 & IS_IPV6_EXTENSION[next_header]
    end = np.where(v6, np.where(payload_len6 > 0, ip + 40 + payload_len6, wire),
                   ip + total_len)
    proto = np.where(v6, next_header, np.where(first_fragment, h[:, ip + 9], -1))
    l4 = np.where(v6, ip + 40, ip + header_len)  # at most 20 + 60: l4 + 13 is in the table
    flat = h.reshape(-1)
    row = np.arange(n, dtype=np.int64) * HEADER_BYTES + l4
    tcp, udp = proto == PROTO_TCP, proto == PROTO_UDP
    payload_at = np.where(tcp, l4 + (flat[row + 12] >> 4) * 4,
                          np.where(udp, l4 + UDP_HEADER_BYTES, l4))
    flags = np.where(tcp, flat[row + 13], -1)
    ok = (v4 | v6) & ~scalar & ~(tcp & (lengths < l4 + 14))
    payload_len = np.where(ok, np.maximum(end - payload_at, 0), -1).astype(np.int64)
    payload_at = np.where(ok, payload_at, -1).astype(np.int64)
    flags = np.where(ok, flags, -1).astype(np.int64)
    for i in np.flatnonzero(scalar).tolist():
        payload_at[i], payload_len[i], flags[i] = payload_span(batch.linktype, batch.frame(i),
                                                               int(wire[i]))
    return payload_at, payload_len, flags
