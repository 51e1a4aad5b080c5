"""The vectorised batch path gives exactly the rows of the packet-by-packet path."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet6 import Jumbo

from tests.frames import (
    ICMP,
    IP,
    LINK_TYPES,
    TCP,
    UDP,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    Raw,
    arp_frame,
    collecting_pipeline,
    ethernet_vlan,
)
from tests.reference import reference_pipeline
from traffic_capture import linktypes, windows
from traffic_capture.csvformat import Row
from traffic_capture.frames import NS, batch_of_frames
from traffic_capture.linktypes import link_type
from traffic_capture.parse import ip_offset, parse_frame

HOSTS4 = ["192.0.2.1", "192.0.2.2", "198.51.100.7", "198.51.100.8", "203.0.113.9"]
HOSTS6 = ["2001:db8::1", "2001:db8:1::7", "2001:db8:1::8"]
T0 = 1_700_000_000 * NS

# Announcements as servers and clients write them (second line, lower case, extended forms),
# and near misses that must announce nothing.
REPLIES = [b"227 Entering Passive Mode (192,0,2,1,11,184).\r\n",
           b"150 Here it comes.\r\n227 Entering Passive Mode (192,0,2,1,11,184)\r\n",
           b"229 Entering Extended Passive Mode (|||3000|)\r\n",
           b"227-Passive 192,0,2,1,11,184\r\n",
           b"227 Entering Passive Mode (192,0,2,1,11,999)\r\n",
           b"226 Transfer complete, 227 bytes, port 3000\r\n"]
COMMANDS = [b"PORT 198,51,100,7,11,184\r\n", b"port 198,51,100,7,11,184\r\n",
            b"EPRT |2|2001:db8:1::8|3000|\r\n", b"eprt |1|198.51.100.7|3000|\r\n",
            b"NOOP\r\nPORT 198,51,100,7,11,184\r\n", b"REPORT 198,51,100,7,11,184\r\n"]

packet_kinds = st.sampled_from(
    ["tcp", "udp", "icmp", "fragment", "ext6", "frag6", "ftp227", "ftp-data", "port", "vlan",
     "arp", "short", "zero", "jumbo"])

# A record's length on the wire, as a writer may claim it: the captured length (None), 0 (a
# damaged record), a few bytes more (an FCS the capture left out) or anything.
wire_lengths = st.one_of(st.none(), st.just(0), st.integers(0, 70_000))


@st.composite
def packets(draw: st.DrawFn) -> tuple[int, object, str]:
    kind = draw(packet_kinds)
    version = draw(st.sampled_from([4, 6]))
    hosts = HOSTS4 if version == 4 else HOSTS6
    src, dst = draw(st.sampled_from(hosts)), draw(st.sampled_from(hosts))
    if kind in ("ftp227", "port", "ftp-data"):
        # One control connection's pair, so that announcements and data really meet.
        src, dst = hosts[0], hosts[2]
        if draw(st.booleans()):
            src, dst = dst, src
    layer = IP(src=src, dst=dst) if version == 4 else IPv6(src=src, dst=dst)
    port = draw(st.sampled_from([20, 21, 22, 53, 80, 443, 3000, 8080, 40000]))
    size = draw(st.integers(0, 300))
    offset = draw(st.integers(0, 30 * NS))
    if kind == "tcp":
        ip = layer / TCP(sport=41000, dport=port) / Raw(b"t" * size)
    elif kind == "udp":
        ip = layer / UDP(sport=41000, dport=port) / Raw(b"u" * size)
    elif kind == "icmp":
        ip = layer / (ICMP() if version == 4 else ICMPv6EchoRequest()) / Raw(b"i" * size)
    elif kind == "fragment" and version == 4:
        ip = IP(src=src, dst=dst, proto=6, frag=10) / Raw(b"\0\x50" * 20)
    elif kind in ("ext6", "frag6") and version == 6:
        ext = IPv6ExtHdrDestOpt() if kind == "ext6" else IPv6ExtHdrFragment(offset=0, m=1)
        ip = layer / ext / TCP(sport=41000, dport=port) / Raw(b"e" * size)
    elif kind == "ftp227":
        ip = layer / TCP(sport=21, dport=41000, flags="PA") / Raw(draw(st.sampled_from(REPLIES)))
    elif kind == "port":
        ip = layer / TCP(sport=41000, dport=21, flags="PA") / Raw(draw(st.sampled_from(COMMANDS)))
    elif kind == "ftp-data":
        ip = layer / TCP(sport=3000, dport=41001) / Raw(b"d" * size)
    elif kind == "vlan":
        return offset, ("vlan", layer / UDP(sport=41000, dport=port) / Raw(b"v" * size)), kind
    elif kind == "arp":
        return offset, ("arp", None), kind
    elif kind == "zero":  # an IP length field of 0 (segmentation offload, or damage)
        if version == 4:
            ip = IP(src=src, dst=dst, len=0) / UDP(sport=41000, dport=port) / Raw(b"z" * size)
        else:
            ext = [IPv6ExtHdrDestOpt()] if draw(st.booleans()) else []
            ip = IPv6(src=src, dst=dst, plen=0)
            for header in ext:
                ip = ip / header
            ip = ip / UDP(sport=41000, dport=port) / Raw(b"z" * size)
        return offset, ("zero", ip, draw(st.booleans()), draw(wire_lengths)), kind
    elif kind == "jumbo":  # RFC 2675's option, sound (>= 65,536) or not, any wire length
        jumbo = draw(st.one_of(st.integers(0, 2**32 - 1), st.integers(65_536, 70_000)))
        ip = (IPv6(src=hosts6(src), dst=hosts6(dst), plen=0)
              / IPv6ExtHdrHopByHop(options=[Jumbo(jumboplen=jumbo)])
              / UDP(sport=41000, dport=port) / Raw(b"j" * size))
        return offset, ("zero", ip, False, draw(wire_lengths)), kind
    else:  # short: a frame cut inside its headers
        ip = layer / TCP(sport=41000, dport=port) / Raw(b"s" * size)
        return offset, ("short", ip, draw(st.integers(1, 60))), kind
    return offset, ("ip", ip), kind


def hosts6(address: str) -> str:
    """An IPv4 host drawn for a jumbogram, as one of the IPv6 hosts."""
    return address if ":" in address else HOSTS6[HOSTS4.index(address) % len(HOSTS6)]


Record = tuple[int, int, bytes, int | None]  # time, link type, frame, wire length (or None)


def frames(linktype_name: str, specs: list) -> list[Record]:
    linktype, build = LINK_TYPES[linktype_name]
    records: list[Record] = []
    for offset, spec, _ in specs:
        if spec[0] == "zero":
            _, ip, tagged, wire = spec
            tagged = tagged and linktype == linktypes.DLT_EN10MB
            records.append((T0 + offset, linktype, ethernet_vlan(ip) if tagged else build(ip),
                            wire))
            continue
        if spec[0] == "ip":
            frame = build(spec[1])
        elif spec[0] == "vlan":
            if linktype != linktypes.DLT_EN10MB:
                continue
            frame = ethernet_vlan(spec[1])
        elif spec[0] == "arp":
            if linktype != linktypes.DLT_EN10MB:
                continue
            frame = arp_frame()
        else:
            frame = build(spec[1])[:spec[2]]
        records.append((T0 + offset, linktype, frame, None))
    if any(wire is not None for *_, wire in records):  # a source knows them all, or none
        records = [(ts, link, frame, len(frame) if wire is None else wire)
                   for ts, link, frame, wire in records]
    return records


def as_batch(records: list[Record]):  # noqa: ANN201 - a frames.Batch
    """Records -> one Batch, with the wire lengths they claim."""
    batch = batch_of_frames([(ts, linktype, frame) for ts, linktype, frame, _ in records])
    if records[0][3] is None:  # frames handed out one by one: no wire lengths
        return batch
    wire = np.array([wire for *_, wire in records], dtype=np.int64)
    return dataclasses.replace(batch, wire_lengths=wire)


def scalar_rows(records: list, servers: list[str], window: int) -> list[Row]:
    pipeline, rows = reference_pipeline(servers, window)
    for record in records:
        pipeline.feed(*record)
    pipeline.finish()
    return rows


def batch_rows(records: list, servers: list[str], window: int, cuts: list[int]) -> list[Row]:
    pipeline, rows = collecting_pipeline(servers, window)
    bounds = sorted({0, len(records), *(c % (len(records) + 1) for c in cuts)})
    for start, stop in zip(bounds, bounds[1:], strict=False):
        if stop > start:
            pipeline.feed_batch(as_batch(records[start:stop]))
    pipeline.finish()
    return rows


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(packets(), max_size=40), st.sampled_from(sorted(LINK_TYPES)),
       st.sampled_from([["192.0.2.1", "2001:db8::1"], ["192.0.2.0/24", "2001:db8::/64"],
                        ["198.51.100.7"]]),
       st.sampled_from([1, 5]), st.lists(st.integers(0, 40), max_size=4), st.booleans())
def test_a_batch_gives_the_rows_of_packet_by_packet(specs: list, link: str, servers: list[str],
                                                    window: int, cuts: list[int],
                                                    in_order: bool) -> None:
    if in_order:
        specs = sorted(specs, key=lambda spec: spec[0])
    records = frames(link, specs)
    expected = scalar_rows(records, servers, window)
    assert all(min(row[4:]) >= 0 for row in expected)  # a byte count is never negative
    assert batch_rows(records, servers, window, cuts) == expected
    # Again with a window's packets summed every 3 packets (busy servers: COMPACT_PACKETS).
    compact_every, windows.COMPACT_PACKETS = windows.COMPACT_PACKETS, 3
    try:
        assert batch_rows(records, servers, window, cuts) == expected
    finally:
        windows.COMPACT_PACKETS = compact_every


@pytest.mark.parametrize("payload", REPLIES + COMMANDS)
def test_every_form_of_ftp_announcement_is_seen_by_the_batch_path(payload: bytes) -> None:
    """The batch path looks for announcements only in segments with a marker substring; each
    form (second line, lower case, extended, near misses) must still give the scalar rows."""
    server, client = "192.0.2.1", "198.51.100.7"
    if payload in REPLIES:  # the server announces a port of its own, the client connects
        control = IP(src=server, dst=client) / TCP(sport=21, dport=41000) / Raw(payload)
        data = IP(src=client, dst=server) / TCP(sport=41001, dport=3000) / Raw(b"d" * 100)
    else:  # the client announces a port of its own, the server connects
        control = IP(src=client, dst=server) / TCP(sport=41000, dport=21) / Raw(payload)
        data = IP(src=server, dst=client) / TCP(sport=40020, dport=3000) / Raw(b"d" * 100)
    noise = IP(src=client, dst=server) / TCP(sport=41002, dport=22) / Raw(payload * 3)
    records = frames("ethernet", [(k * NS // 10, ("ip", ip), "") for k, ip in
                                  enumerate([noise, control, data, data, noise])])
    expected = scalar_rows(records, [server], 5)
    assert batch_rows(records, [server], 5, []) == expected
    announces = b"999" not in payload and not payload.startswith((b"226", b"REPORT"))
    data_bytes = 2 * len(data) if announces else 0
    assert sum(row.ftp_bytes for row in expected) == len(control) + data_bytes


@settings(max_examples=300, deadline=None)
@given(st.lists(packets(), min_size=1, max_size=10), st.sampled_from(sorted(LINK_TYPES)))
def test_a_packet_counts_between_nothing_and_its_wire_length_less_its_link_header(
        specs: list, link: str) -> None:
    """Issue 20 (1, 2): whatever its length fields say (0 behind a VLAN tag or an extension
    header, a jumbo option of 2**32 - 1 or under 65,536), and whatever wire length its record
    claims (0 too), a packet counts at least nothing and at most what followed its link header
    on the wire (or was captured, if more). A source that knows no wire length (frames handed
    out one by one, as scapy does) is not bounded: its snap length may have cut them."""
    for _, linktype, frame, wire in frames(link, specs):
        fields = parse_frame(linktype, frame, wire)
        if fields is None:
            continue
        assert fields[5] >= 0
        if wire is not None:
            most = max(len(frame), wire) - ip_offset(link_type(linktype), frame)
            assert fields[5] <= most, (fields[5], most)
