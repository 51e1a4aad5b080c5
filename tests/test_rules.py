"""The product's rules, one test each, on frames built by scapy in every link type."""

from __future__ import annotations

import pytest

from tests.frames import (
    CLIENT4,
    CLIENT6,
    ICMP,
    IP,
    LINK_TYPES,
    SERVER4,
    SERVER6,
    TCP,
    UDP,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    Packet,
    Raw,
    arp_frame,
    collecting_pipeline,
    ethernet,
    raw,
)
from traffic_capture import linktypes, parse
from traffic_capture.csvformat import Row
from traffic_capture.frames import NS, batch_of_frames
from traffic_capture.pipeline import Pipeline
from traffic_capture.servers import ServerSet, parse_server

T0 = 1_700_000_000 * NS  # a multiple of 5 s: 2023-11-14 22:13:20 UTC


def run(frames: list[tuple[int, int, bytes]], servers: tuple[str, ...] = (SERVER4, SERVER6),
        window: int = 5) -> list[Row]:
    pipeline, rows = collecting_pipeline(servers, window)
    for ts_ns, linktype, frame in frames:
        pipeline.feed_batch(batch_of_frames([(ts_ns, linktype, frame)]))
    pipeline.finish()
    return rows


def one(ip: Packet, link: str = "ethernet", servers: tuple[str, ...] = (SERVER4, SERVER6)
        ) -> Row | None:
    linktype, build = LINK_TYPES[link]
    rows = run([(T0, linktype, build(ip))], servers)
    assert len(rows) <= 1
    return rows[0] if rows else None


def classes(row: Row) -> dict[str, int]:
    return {name: value for name, value in row._asdict().items()
            if name.endswith("_bytes") and name != "total_bytes" and value}


# --- direction ---------------------------------------------------------------------------------

@pytest.mark.parametrize("link", sorted(LINK_TYPES))
@pytest.mark.parametrize("version", [4, 6])
def test_direction_and_client_in_every_link_type(link: str, version: int) -> None:
    server, client = (SERVER4, CLIENT4) if version == 4 else (SERVER6, CLIENT6)
    layer = IP if version == 4 else IPv6
    to_server = one(layer(src=client, dst=server) / UDP(sport=5000, dport=53), link)
    from_server = one(layer(src=server, dst=client) / UDP(sport=53, dport=5000), link)
    assert (to_server.client_ip, to_server.direction) == (client, "in")
    assert (from_server.client_ip, from_server.direction) == (client, "out")


def test_server_to_server_counts_once_as_in_with_the_source_as_client() -> None:
    row = one(IP(src="127.0.0.1", dst="127.0.0.1") / ICMP(), servers=("127.0.0.1",))
    assert (row.client_ip, row.direction, row.other_bytes) == ("127.0.0.1", "in", 28)
    row = one(IP(src=SERVER4, dst="192.0.2.99") / ICMP(), servers=(SERVER4, "192.0.2.99"))
    assert (row.client_ip, row.direction) == (SERVER4, "in")


def test_packets_not_involving_a_server_and_non_ip_frames_are_ignored() -> None:
    assert one(IP(src=CLIENT4, dst="203.0.113.9") / TCP(dport=80)) is None
    assert run([(T0, linktypes.DLT_EN10MB, arp_frame())]) == []


def test_a_server_network_matches_every_address_in_it() -> None:
    network = ("192.0.2.0/24",)
    row = one(IP(src=CLIENT4, dst="192.0.2.77") / TCP(sport=40000, dport=22), servers=network)
    assert (row.client_ip, row.direction, row.tcp_bytes) == (CLIENT4, "in", 40)
    outside = IP(src=CLIENT4, dst="192.0.3.1") / TCP(sport=40000, dport=22)
    assert one(outside, servers=network) is None


# --- bytes -------------------------------------------------------------------------------------

@pytest.mark.parametrize("link", sorted(LINK_TYPES))
def test_bytes_are_ip_bytes_whatever_the_link_type(link: str) -> None:
    ip4 = IP(src=CLIENT4, dst=SERVER4) / TCP(dport=443) / Raw(b"x" * 100)
    ip6 = IPv6(src=CLIENT6, dst=SERVER6) / TCP(dport=443) / Raw(b"x" * 100)
    assert one(ip4, link).total_bytes == 140  # IPv4 total length: 20 + 20 + 100
    assert one(ip6, link).total_bytes == 160  # IPv6 payload length 120 + 40


def test_ethernet_padding_is_not_counted() -> None:
    frame = ethernet(IP(src=CLIENT4, dst=SERVER4) / TCP(dport=443, flags="A"))
    frame = frame + b"\0" * (60 - len(frame))  # what a NIC puts on the wire
    assert len(frame) == 60
    (row,) = run([(T0, linktypes.DLT_EN10MB, frame)])
    assert row.total_bytes == 40


@pytest.mark.parametrize("snaplen", [34, 54, 68, 96])
def test_bytes_stay_exact_when_the_snaplen_cuts_packets(snaplen: int) -> None:
    frame = ethernet(IP(src=CLIENT4, dst=SERVER4) / TCP(sport=40000, dport=80) / Raw(b"y" * 1400))
    (row,) = run([(T0, linktypes.DLT_EN10MB, frame[:snaplen])])
    assert row.total_bytes == 1440
    # The ports survive any snaplen that keeps the first 4 bytes of TCP.
    assert classes(row) == ({"http_bytes": 1440} if snaplen >= 38 else {"tcp_bytes": 1440})


def test_a_zero_ipv4_length_from_segmentation_offload_falls_back_to_the_captured_length() -> None:
    frame = bytearray(ethernet(IP(src=SERVER4, dst=CLIENT4) / TCP(sport=443) / Raw(b"z" * 60)))
    frame[16:18] = b"\0\0"
    (row,) = run([(T0, linktypes.DLT_EN10MB, bytes(frame))])
    assert row.total_bytes == 100


# --- class -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("ports", "expected"), [
    ((40000, 21), "ftp_bytes"), ((21, 40000), "ftp_bytes"), ((20, 40000), "ftp_bytes"),
    ((40000, 20), "ftp_bytes"), ((21, 80), "ftp_bytes"),  # FTP wins over HTTP
    ((40000, 80), "http_bytes"), ((80, 40000), "http_bytes"), ((40000, 8080), "http_bytes"),
    ((8000, 40000), "http_bytes"),
    ((40000, 443), "tcp_bytes"), ((40000, 8443), "tcp_bytes"), ((40000, 22), "tcp_bytes"),
    ((40000, 81), "tcp_bytes"),
])
@pytest.mark.parametrize("version", [4, 6])
def test_tcp_class_by_port(ports: tuple[int, int], expected: str, version: int) -> None:
    ip = (IP(src=CLIENT4, dst=SERVER4) if version == 4 else IPv6(src=CLIENT6, dst=SERVER6))
    row = one(ip / TCP(sport=ports[0], dport=ports[1]))
    assert classes(row) == {expected: row.total_bytes}


@pytest.mark.parametrize("dport", [53, 80, 21, 123])
def test_udp_is_udp_whatever_the_port(dport: int) -> None:
    assert classes(one(IP(src=CLIENT4, dst=SERVER4) / UDP(dport=dport))) == {"udp_bytes": 28}


@pytest.mark.parametrize("ip", [
    IP(src=CLIENT4, dst=SERVER4) / ICMP(),
    IP(src=CLIENT4, dst=SERVER4, proto=47) / Raw(b"\0" * 24),  # GRE
    IP(src=CLIENT4, dst=SERVER4, proto=50) / Raw(b"\0" * 24),  # ESP
    IPv6(src=CLIENT6, dst=SERVER6) / ICMPv6EchoRequest(),
], ids=["icmp", "gre", "esp", "icmpv6"])
def test_everything_else_is_other(ip: Packet) -> None:
    row = one(ip)
    assert classes(row) == {"other_bytes": row.total_bytes}


def test_ipv6_extension_headers_are_followed_to_tcp() -> None:
    ip = (IPv6(src=CLIENT6, dst=SERVER6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
          / IPv6ExtHdrRouting() / TCP(sport=40000, dport=80) / Raw(b"GET /"))
    row = one(ip)
    assert classes(row) == {"http_bytes": len(ip)}


def test_ipv6_fragments_first_by_ports_later_by_protocol() -> None:
    first = (IPv6(src=CLIENT6, dst=SERVER6) / IPv6ExtHdrFragment(nh=6, offset=0, m=1, id=9)
             / TCP(sport=40000, dport=80) / Raw(b"a" * 64))
    later = (IPv6(src=CLIENT6, dst=SERVER6) / IPv6ExtHdrFragment(nh=6, offset=11, m=0, id=9)
             / Raw(b"\0\x50" * 32))  # bytes that would read as port 80 if taken for TCP
    assert classes(one(first)) == {"http_bytes": len(first)}
    assert classes(one(later)) == {"tcp_bytes": len(later)}


def test_ipv4_fragments_without_ports_take_the_class_of_their_protocol() -> None:
    first = IP(src=CLIENT4, dst=SERVER4, flags="MF", frag=0) / TCP(sport=40000, dport=8080)
    tcp_later = IP(src=CLIENT4, dst=SERVER4, proto=6, frag=100) / Raw(b"\0\x50" * 100)
    udp_later = IP(src=CLIENT4, dst=SERVER4, proto=17, frag=100) / Raw(b"\0\x35" * 100)
    icmp_later = IP(src=CLIENT4, dst=SERVER4, proto=1, frag=100) / Raw(b"\0" * 200)
    assert classes(one(first)) == {"http_bytes": 40}
    assert classes(one(tcp_later)) == {"tcp_bytes": 220}
    assert classes(one(udp_later)) == {"udp_bytes": 220}
    assert classes(one(icmp_later)) == {"other_bytes": 220}


# --- FTP data connections ----------------------------------------------------------------------

def _ftp_session(announcement: Packet, data: list[Packet]) -> list[Row]:
    before = [IP(src=CLIENT4, dst=SERVER4) / TCP(sport=50000, dport=3000) / Raw(b"p" * 10)]
    frames = [(T0, linktypes.DLT_EN10MB, ethernet(p)) for p in before]
    frames.append((T0 + 1, linktypes.DLT_EN10MB, ethernet(announcement)))
    frames += [(T0 + 2 + i, linktypes.DLT_EN10MB, ethernet(p)) for i, p in enumerate(data)]
    return run(frames)


def test_passive_ftp_227_makes_the_data_connection_ftp_both_ways() -> None:
    # 3000 = 11 * 256 + 184: the port was plain tcp until the server announced it.
    reply = (IP(src=SERVER4, dst=CLIENT4) / TCP(sport=21, dport=50001, flags="PA")
             / Raw(b"227 Entering Passive Mode (192,0,2,1,11,184).\r\n"))
    download = IP(src=SERVER4, dst=CLIENT4) / TCP(sport=3000, dport=50002) / Raw(b"d" * 1000)
    ack = IP(src=CLIENT4, dst=SERVER4) / TCP(sport=50002, dport=3000, flags="A")
    rows = {r.direction: r for r in _ftp_session(reply, [download, ack])}
    assert rows["out"].ftp_bytes == len(reply) + 1040 and rows["out"].tcp_bytes == 0
    assert rows["in"].tcp_bytes == 50 and rows["in"].ftp_bytes == 40


def test_passive_ftp_229_epsv_ipv6() -> None:
    reply = (IPv6(src=SERVER6, dst=CLIENT6) / TCP(sport=21, dport=50001, flags="PA")
             / Raw(b"229 Entering Extended Passive Mode (|||8080|)\r\n"))
    upload = IPv6(src=CLIENT6, dst=SERVER6) / TCP(sport=50003, dport=8080) / Raw(b"u" * 500)
    frames = [(T0, linktypes.DLT_EN10MB, ethernet(reply)),
              (T0 + 1, linktypes.DLT_EN10MB, ethernet(upload))]
    rows = {r.direction: r for r in run(frames)}
    assert classes(rows["in"]) == {"ftp_bytes": 40 + 20 + 500}  # FTP wins over the HTTP port


def test_active_ftp_port_and_eprt_commands() -> None:
    port = (IP(src=CLIENT4, dst=SERVER4) / TCP(sport=50001, dport=21, flags="PA")
            / Raw(b"PORT 198,51,100,7,195,80\r\n"))  # 195 * 256 + 80 = 50000
    data = IP(src=SERVER4, dst=CLIENT4) / TCP(sport=33333, dport=50000) / Raw(b"d" * 100)
    rows = {r.direction: r for r in _ftp_session(port, [data])}
    assert rows["out"].ftp_bytes == 140 and rows["out"].tcp_bytes == 0
    eprt = (IPv6(src=CLIENT6, dst=SERVER6) / TCP(sport=50001, dport=21, flags="PA")
            / Raw(b"EPRT |2|2001:db8:1::7|5282|\r\n"))
    data6 = IPv6(src=SERVER6, dst=CLIENT6) / TCP(sport=33333, dport=5282) / Raw(b"d" * 10)
    frames = [(T0, linktypes.DLT_EN10MB, ethernet(eprt)),
              (T0 + 1, linktypes.DLT_EN10MB, ethernet(data6))]
    rows6 = {r.direction: r for r in run(frames)}
    assert classes(rows6["out"]) == {"ftp_bytes": 70}


def test_an_announcement_only_covers_the_hosts_of_its_control_connection() -> None:
    reply = (IP(src=SERVER4, dst=CLIENT4) / TCP(sport=21, dport=50001, flags="PA")
             / Raw(b"227 Entering Passive Mode (192,0,2,1,11,184).\r\n"))
    stranger = IP(src="203.0.113.50", dst=SERVER4) / TCP(sport=50009, dport=3000)
    rows = {r.client_ip: r for r in _ftp_session(reply, [stranger])}
    assert classes(rows["203.0.113.50"]) == {"tcp_bytes": 40}


# --- windows -----------------------------------------------------------------------------------

def test_windows_are_aligned_to_the_clock_and_one_row_per_window_client_direction() -> None:
    udp = ethernet(IP(src=CLIENT4, dst=SERVER4) / UDP(dport=53) / Raw(b"q" * 12))  # 40 bytes
    answer = ethernet(IP(src=SERVER4, dst=CLIENT4) / UDP(sport=53) / Raw(b"a" * 52))  # 80 bytes
    frames = [
        (T0 + 3 * NS + 200_000_000, linktypes.DLT_EN10MB, udp),  # 3.2 s -> [0, 5)
        (T0 + 4 * NS + 999_999_999, linktypes.DLT_EN10MB, udp),  # last ns of [0, 5)
        (T0 + 4 * NS + 999_999_999, linktypes.DLT_EN10MB, answer),
        (T0 + 5 * NS, linktypes.DLT_EN10MB, udp),  # first ns of [5, 10)
        (T0 + 17 * NS, linktypes.DLT_EN10MB, udp),  # [15, 20): no empty row for [10, 15)
    ]
    rows = run(frames)
    start = T0 // NS
    assert [(r.window_start - start, r.window_end - start, r.direction, r.total_bytes)
            for r in rows] == [(0, 5, "in", 80), (0, 5, "out", 80), (5, 10, "in", 40),
                               (15, 20, "in", 40)]


def test_window_length_is_configurable_and_aligned_to_multiples_of_it() -> None:
    udp = ethernet(IP(src=CLIENT4, dst=SERVER4) / UDP(dport=53))
    rows = run([(T0 + 61 * NS, linktypes.DLT_EN10MB, udp)], window=60)
    # 1700000061 s -> the minute that starts at 1700000040 s (22:14:00 UTC).
    assert (rows[0].window_start, rows[0].window_end) == (1_700_000_040, 1_700_000_100)


def test_rows_within_a_window_are_ordered_v4_then_v6_numerically_in_before_out() -> None:
    frames = [
        (T0, linktypes.DLT_EN10MB, ethernet(IPv6(src=CLIENT6, dst=SERVER6) / UDP())),
        (T0, linktypes.DLT_EN10MB, ethernet(IP(src=SERVER4, dst="198.51.100.10") / UDP())),
        (T0, linktypes.DLT_EN10MB, ethernet(IP(src="198.51.100.10", dst=SERVER4) / UDP())),
        (T0, linktypes.DLT_EN10MB, ethernet(IP(src="198.51.100.9", dst=SERVER4) / UDP())),
    ]
    assert [(r.client_ip, r.direction) for r in run(frames)] == [
        ("198.51.100.9", "in"), ("198.51.100.10", "in"), ("198.51.100.10", "out"),
        (CLIENT6, "in")]


def test_a_window_is_emitted_once_the_trace_passes_its_end_by_the_close_delay() -> None:
    emitted: list[list[Row]] = []
    pipeline = Pipeline(ServerSet([parse_server(SERVER4)]), 5,
                        lambda closed: emitted.append(closed.rows()))
    udp = ethernet(IP(src=CLIENT4, dst=SERVER4) / UDP(dport=53))
    pipeline.feed_batch(batch_of_frames([(T0, linktypes.DLT_EN10MB, udp)]))
    # 0.999 s after the end
    pipeline.feed_batch(batch_of_frames([(T0 + 5 * NS + 999_000_000, linktypes.DLT_EN10MB, udp)]))
    assert emitted == []
    pipeline.advance(T0 + 6 * NS)  # the clock (an idle live capture's wall clock) moves on
    assert [r.window_start for rows in emitted for r in rows] == [T0 // NS]
    pipeline.finish()  # the partial window, with its real bounds
    assert [r.window_start - T0 // NS for rows in emitted for r in rows] == [0, 5]


def test_every_link_type_in_the_table_has_frames_in_the_tests() -> None:
    """The property and rules tests run over tests/frames.LINK_TYPES: a link type added to the
    product's table without frames to test it with fails here."""
    assert {number for number, _ in LINK_TYPES.values()} == set(linktypes.LINK_TYPES)


def test_an_unknown_link_type_is_a_clear_error_on_both_paths() -> None:
    frame = raw(IP(src=CLIENT4, dst=SERVER4) / UDP())
    with pytest.raises(linktypes.UnknownLinkType, match="unsupported link type 147; supported:"):
        parse.parse_frame(147, frame)
    with pytest.raises(linktypes.UnknownLinkType, match="unsupported link type 147; supported:"):
        run([(T0, 147, frame)])
