"""Invariants over any input: bytes in = bytes out, total = sum of classes, parsers never crash."""

from __future__ import annotations

import io
import ipaddress

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.frames import (
    ICMP,
    IP,
    LINK_TYPES,
    SERVER4,
    SERVER6,
    TCP,
    UDP,
    ICMPv6EchoRequest,
    IPv6,
    Raw,
    collecting_pipeline,
)
from traffic_capture import linktypes, parse, windows
from traffic_capture.addresses import address_text, split_address
from traffic_capture.csvformat import COLUMNS, Row, format_rows, header_line
from traffic_capture.frames import NS, batch_of_frames
from traffic_capture.ftp import announced_port
from traffic_capture.rules import CLASSES
from traffic_capture.servers import parse_server

HOSTS4 = [SERVER4, "192.0.2.2", "198.51.100.7", "198.51.100.8", "203.0.113.9"]
HOSTS6 = [SERVER6, "2001:db8:1::7", "2001:db8:1::8"]
SERVERS = (SERVER4, "192.0.2.2", SERVER6)

packet_specs = st.tuples(
    st.sampled_from([4, 6]),
    st.integers(0, 4),  # source host index
    st.integers(0, 4),  # destination host index
    st.sampled_from(["tcp", "udp", "icmp"]),
    st.sampled_from([20, 21, 22, 53, 80, 443, 8000, 8080, 40000]),
    st.integers(0, 1400),  # payload bytes
    st.integers(0, 60 * NS),  # time offset within a minute
    st.sampled_from(sorted(LINK_TYPES)),
)


def build(spec: tuple) -> tuple[int, int, bytes, str, str, int]:
    version, src_i, dst_i, proto, port, size, offset, link = spec
    hosts = HOSTS4 if version == 4 else HOSTS6
    src, dst = hosts[src_i % len(hosts)], hosts[dst_i % len(hosts)]
    layer = IP(src=src, dst=dst) if version == 4 else IPv6(src=src, dst=dst)
    if proto == "tcp":
        upper = TCP(sport=41000, dport=port)
    elif proto == "udp":
        upper = UDP(sport=41000, dport=port)
    else:
        upper = ICMP() if version == 4 else ICMPv6EchoRequest()
    ip = layer / upper / Raw(b"\x01" * size)
    linktype, make = LINK_TYPES[link]
    return 1_700_000_000 * NS + offset, linktype, make(ip), src, dst, len(ip)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(packet_specs, max_size=25), st.sampled_from([1, 5, 60]))
def test_bytes_in_equal_bytes_out_and_total_is_the_sum_of_classes(specs: list, window: int
                                                                    ) -> None:
    servers = {parse_server(s).network_address.compressed for s in SERVERS}
    pipeline, rows = collecting_pipeline(SERVERS, window)
    expected_by_key: dict[tuple[str, str], int] = {}
    for spec in specs:
        ts_ns, linktype, frame, src, dst, ip_len = build(spec)
        pipeline.feed_batch(batch_of_frames([(ts_ns, linktype, frame)]))
        if dst in servers:
            key = (src, "in")
        elif src in servers:
            key = (dst, "out")
        else:
            continue
        expected_by_key[key] = expected_by_key.get(key, 0) + ip_len
    pipeline.finish()
    got_by_key: dict[tuple[str, str], int] = {}
    for row in rows:
        assert row.total_bytes == sum(row[5:10])
        assert row.window_end - row.window_start == window
        assert row.window_start % window == 0
        got_by_key[(row.client_ip, row.direction)] = (
            got_by_key.get((row.client_ip, row.direction), 0) + row.total_bytes)
    assert got_by_key == expected_by_key
    times = [spec[6] for spec in specs]
    if times == sorted(times):
        # In time order, one row per (window, client, direction). A packet arriving after its
        # window was written (out of order by more than the close delay) gets a row of its own
        # rather than being lost; the sums above hold either way.
        keys = [(r.window_start, r.client_ip, r.direction) for r in rows]
        assert len(keys) == len(set(keys))


@given(st.binary(max_size=200), st.sampled_from(sorted(linktypes.LINK_TYPES)))
def test_the_parser_never_raises_on_garbage(frame: bytes, linktype: int) -> None:
    fields = parse.parse_frame(linktype, frame)
    if fields is not None:
        src, dst, proto, sport, dport, ip_bytes, payload_at = fields
        assert ip_bytes >= 0 and len(src) in (4, 16) and len(dst) == len(src)


@given(st.integers(1, 65535), st.sampled_from(["227", "229", "PORT", "port", "EPRT"]),
       st.sampled_from(["\r\n", "\n", ""]))
def test_every_announced_data_port_is_read_back(port: int, kind: str, end: str) -> None:
    text = {
        "227": f"227 Entering Passive Mode (192,0,2,1,{port // 256},{port % 256}){end}",
        "229": f"229 Entering Extended Passive Mode (|||{port}|){end}",
        "PORT": f"PORT 198,51,100,7,{port // 256},{port % 256}{end}",
        "port": f"port 198,51,100,7,{port // 256},{port % 256}{end}",
        "EPRT": f"EPRT |2|2001:db8::7|{port}|{end}",
    }[kind]
    assert announced_port(text.encode()) == port


@given(st.binary(max_size=300))
def test_the_ftp_parser_never_raises(payload: bytes) -> None:
    port = announced_port(payload)
    assert port is None or 0 < port < 65536


def test_out_of_range_announcements_are_ignored() -> None:
    assert announced_port(b"227 Entering Passive Mode (192,0,2,1,256,1)\r\n") is None
    assert announced_port(b"229 Entering Extended Passive Mode (|||70000|)\r\n") is None
    assert announced_port(b"229 Entering Extended Passive Mode (|||0|)\r\n") is None
    assert announced_port(b"530 Login incorrect\r\n") is None


row_values = st.builds(
    lambda start, client, direction, counts: Row(start, start + 5, client, direction,
                                                 sum(counts), *counts),
    st.integers(0, 2_000_000_000).map(lambda t: t - t % 5),
    st.sampled_from(HOSTS4 + HOSTS6 + ["::1", "fe80::1"]),
    st.sampled_from(["in", "out"]),
    st.lists(st.integers(0, 10**12), min_size=5, max_size=5),
)


@given(st.lists(row_values, max_size=20), st.sampled_from([",", ";", "\t", "|"]))
def test_csv_text_reads_back_with_pandas_for_every_delimiter(rows: list[Row], delimiter: str
                                                             ) -> None:
    text = header_line(delimiter) + format_rows(rows, delimiter)
    frame = pd.read_csv(io.StringIO(text), sep=delimiter, dtype={"client_ip": str})
    assert tuple(frame.columns) == COLUMNS
    assert frame["client_ip"].tolist() == [r.client_ip for r in rows]
    assert frame["total_bytes"].tolist() == [r.total_bytes for r in rows]
    assert frame["other_bytes"].tolist() == [r.other_bytes for r in rows]


window_packets = st.lists(st.tuples(
    st.integers(0, 14 * NS),  # time: three 5-second windows
    st.one_of(st.integers(0, 2**32 - 1).map(lambda n: ipaddress.ip_address(n)),
              st.tuples(st.sampled_from([0, 1, 2**63, 2**64 - 1]), st.integers(0, 2**64 - 1))
              .map(lambda hl: ipaddress.ip_address((hl[0] << 64) | hl[1]))),
    st.booleans(),  # inbound
    st.integers(0, len(CLASSES) - 1),
    st.integers(0, 65535),  # bytes
), max_size=60)


@settings(max_examples=150, deadline=None)
@given(window_packets, st.integers(1, 60), st.sampled_from([1, 3, 1 << 16]))
def test_windows_sum_every_packet_into_one_row_per_client_and_direction_in_row_order(
        packets: list, batch: int, compact: int) -> None:
    """Whatever the batches and however often a window is summed on the way (COMPACT_PACKETS):
    bytes per (window, client, direction, class) are exact, and rows come IPv4 before IPv6,
    numeric within each, `in` before `out`."""
    aggregator = windows.WindowAggregator(5)
    compact_every, windows.COMPACT_PACKETS = windows.COMPACT_PACKETS, compact
    try:
        for at in range(0, len(packets), batch):
            part = packets[at:at + batch]
            split = [split_address(address.packed) for _, address, _, _, _ in part]
            aggregator.add_batch(
                np.array([p[0] for p in part], dtype=np.int64),
                np.array([p[1].version == 6 for p in part], dtype=bool),
                np.array([hi for hi, _ in split], dtype=np.uint64),
                np.array([lo for _, lo in split], dtype=np.uint64),
                np.array([p[2] for p in part], dtype=bool),
                np.array([p[3] for p in part], dtype=np.int64),
                np.array([p[4] for p in part], dtype=np.int64))
        closed = aggregator.close_all()
    finally:
        windows.COMPACT_PACKETS = compact_every
    expected: dict[tuple[int, str, str], list[int]] = {}
    for ts, address, inbound, protocol_class, size in packets:
        key = (ts // NS // 5 * 5, address_text(address.packed), "in" if inbound else "out")
        expected.setdefault(key, [0] * len(CLASSES))[protocol_class] += size
    rows = [row for window in closed for row in window.rows()]
    assert {(r.window_start, r.client_ip, r.direction): list(r[5:]) for r in rows} == expected
    assert len(rows) == len(expected)
    by_text = {address_text(p[1].packed): p[1] for p in packets}
    in_row_order = sorted(rows, key=lambda r: (r.window_start, by_text[r.client_ip].version,
                                               by_text[r.client_ip], r.direction != "in"))
    assert rows == in_row_order
