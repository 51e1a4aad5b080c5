"""Unusual and hostile capture files, each built by its test: read as libpcap and tshark read
them, or counted up to the damage with one warning, never a traceback or a wrapped date."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from scapy.utils import wrpcap

from tests import pcapng_builder as ng
from tests.conftest import read_rows, run_cli
from tests.frames import IP, SERVER4, UDP, Ether, Raw
from tests.requirements import tool
from traffic_capture import linktypes
from traffic_capture.csvformat import local_time_text

CLIENT = "198.51.100.7"
T0 = 1_700_000_000


def packets(count: int = 4) -> list:
    made = []
    for i in range(count):
        packet = (Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                  / IP(src=CLIENT, dst=SERVER4) / UDP(sport=40000, dport=53) / Raw(b"q" * (10 + i)))
        packet.time = T0 + i
        made.append(packet)
    return made


def count(path: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], pd.DataFrame]:
    out = tmp_path / f"{path.stem}.csv"
    result = run_cli(["--read", str(path), "--server-ip", SERVER4, "--out", str(out), "--quiet"])
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result, read_rows(out)


def pcap_records(path: Path) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The file header and each (record header, frame) of a little-endian classic pcap."""
    data = path.read_bytes()
    at, records = 24, []
    while at < len(data):
        captured = struct.unpack_from("<I", data, at + 8)[0]
        records.append((data[at:at + 16], data[at + 16:at + 16 + captured]))
        at += 16 + captured
    return data[:24], records


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.pcap"
    wrpcap(str(path), packets())
    return path


def expected_bytes() -> int:
    return sum(len(p[IP]) for p in packets())


def test_fcs_bits_in_the_link_type_field_are_masked_as_libpcap_does(good: Path,
                                                                   tmp_path: Path) -> None:
    header, records = pcap_records(good)
    # LINKTYPE_ETHERNET with "FCS length 3 (x16 bits) present" in the upper bits: 0x34000001.
    path = tmp_path / "fcs.pcap"
    with_fcs = []
    for record, frame in records:
        captured, original = struct.unpack_from("<II", record, 8)
        with_fcs.append(record[:8] + struct.pack("<II", captured + 6, original + 6)
                        + frame + b"\xde\xad\xbe\xef\x00\x00")
    path.write_bytes(header[:20] + struct.pack("<I", 0x34000001) + b"".join(with_fcs))
    # The reference reads it too.
    assert subprocess.run([tool("tshark"), "-r", str(path)], capture_output=True,
                          timeout=60).returncode == 0
    _, rows = count(path, tmp_path)
    assert rows["total_bytes"].sum() == expected_bytes()  # IP bytes: the FCS is not counted


@pytest.mark.parametrize("number", [linktypes.DLT_RAW_12, linktypes.DLT_RAW,
                                    linktypes.DLT_RAW_OPENBSD])
def test_every_raw_ip_number_reads_alike(good: Path, tmp_path: Path, number: int) -> None:
    header, records = pcap_records(good)
    raw = []
    for record, frame in records:
        captured, original = struct.unpack_from("<II", record, 8)
        raw.append(record[:8] + struct.pack("<II", captured - 14, original - 14) + frame[14:])
    path = tmp_path / f"raw{number}.pcap"
    path.write_bytes(header[:20] + struct.pack("<I", number) + b"".join(raw))
    _, rows = count(path, tmp_path)
    assert rows["total_bytes"].sum() == rows["udp_bytes"].sum() == expected_bytes()


@pytest.mark.parametrize(("value", "present"), [
    (262_145, True),  # a record that long, for real: the walk must not stop short of it
    (20_000_000, False),  # claimed only (the file ends before): not "the middle of a packet"
    (0x7FFFFFFF, False),
])
def test_a_record_over_libpcaps_length_is_damage_counted_up_to(
        good: Path, tmp_path: Path, value: int, present: bool) -> None:
    """Issue 20 (7): a record claiming 0x7FFFFFFF or 20 MB is said to be over 262,144
    bytes, not a file that ends in the middle of a packet."""
    header, records = pcap_records(good)
    record, frame = records[2]
    if present:
        frame = frame + b"\0" * (value - len(frame))
    bad = record[:8] + struct.pack("<I", value) + record[12:]
    path = tmp_path / "bad.pcap"
    path.write_bytes(header + b"".join(r + f for r, f in records[:2]) + bad + frame
                     + b"".join(r + f for r, f in records[3:]))
    result, rows = count(path, tmp_path)
    assert rows["total_bytes"].sum() == sum(len(p[IP]) for p in packets()[:2])
    message = f"a packet claims {value:,} captured bytes, over libpcap's 262,144"
    assert f"is damaged ({message}" in result.stderr
    assert "middle of a packet" not in result.stderr


@pytest.mark.parametrize(("nano", "fraction"), [(False, 1_000_000), (False, 0xFFFFFFFF),
                                                 (True, 1_000_000_000)])
def test_one_bad_timestamp_is_one_damaged_packet_not_the_end_of_the_file(
        tmp_path: Path, nano: bool, fraction: int) -> None:
    """Issue 20 (4): a record whose microseconds (or nanoseconds) make a second or more
    stopped the read there. Its lengths are sound: it is counted in the window of its
    seconds, said once, and the packets after it are counted too."""
    made = packets(40)
    frames = [bytes(p) for p in made]
    bad = 17
    records = b"".join(
        struct.pack("<IIII", T0 + k // 4, fraction if k == bad else 0, len(f), len(f)) + f
        for k, f in enumerate(frames))
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    path = tmp_path / "time.pcap"
    path.write_bytes(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, 65535, linktypes.DLT_EN10MB)
                     + records)
    result, rows = count(path, tmp_path)
    assert rows["total_bytes"].sum() == sum(len(p[IP]) for p in made)
    window = rows[rows.window_start == local_time_text(T0 + bad // 4 // 5 * 5)]
    assert window["total_bytes"].sum() == sum(len(made[k][IP]) for k in range(len(made))
                                              if (T0 + k // 4) // 5 == (T0 + bad // 4) // 5)
    (said,) = [line for line in result.stderr.splitlines() if "timestamp" in line]
    assert ": 1 packet has a damaged timestamp" in said and "damaged (" not in result.stderr


def _pcapng(tmp_path: Path, interface: bytes, *packets_: bytes) -> Path:
    path = tmp_path / "t.pcapng"
    path.write_bytes(ng.section() + interface + b"".join(packets_))
    return path


@pytest.mark.parametrize(("tsoffset", "units"), [
    (None, 2**64 - 1),  # microseconds up to the year 584,554
    (10**10, T0 * 10**6),  # an offset of 10^10 s: year 2340
    (-(T0 + 10), T0 * 10**6),  # before 1970
    (2**63 - 1, 0),  # the largest offset there is
])
def test_pcapng_times_out_of_range_are_damage_not_a_wrapped_date(tmp_path: Path,
                                                                 tsoffset: int | None,
                                                                 units: int) -> None:
    frames = [bytes(p) for p in packets(3)]
    first_fits = T0 - (tsoffset or 0) >= 0  # else the first packet is out of range too
    first_units = max(T0 - (tsoffset or 0), 0) * 10**6
    path = _pcapng(tmp_path, ng.interface(linktypes.DLT_EN10MB, tsoffset=tsoffset),
                   ng.enhanced(0, first_units, frames[0]),
                   ng.enhanced(0, units, frames[1]),
                   ng.enhanced(0, first_units + 2 * 10**6, frames[2]))
    result, rows = count(path, tmp_path)
    assert "is damaged (a packet's time, with its interface's offset, is before 1970 or past " \
        "2262)" in result.stderr
    if first_fits:
        assert rows["total_bytes"].sum() == len(packets(1)[0][IP])
        assert rows["window_start"].str.startswith("2023-11-").all()
    else:
        assert rows.empty


def test_an_interface_block_of_an_unknown_type_is_damage_not_a_traceback(tmp_path: Path
                                                                        ) -> None:
    frame = bytes(packets(1)[0])
    interface = bytearray(ng.interface(linktypes.DLT_EN10MB))
    interface[0] = 0x71  # one byte of its type changed: the packets name an undescribed one
    path = _pcapng(tmp_path, bytes(interface), ng.enhanced(0, T0 * 10**6, frame))
    result, rows = count(path, tmp_path)
    assert "is damaged (a packet names interface 0, but its section describes 0)" \
        in result.stderr
    assert rows.empty


def test_an_absurd_time_resolution_does_not_overflow(tmp_path: Path) -> None:
    """if_tsresol 0x7F claims 10**127 units a second (found by tests/test_fuzz_readers.py)."""
    frame = bytes(packets(1)[0])
    path = _pcapng(tmp_path, ng.interface(linktypes.DLT_EN10MB, tsresol=0x7F,
                                          tsoffset=T0),
                   ng.enhanced(0, 2**64 - 1, frame))
    _, rows = count(path, tmp_path)
    assert rows["total_bytes"].sum() == len(packets(1)[0][IP])  # at T0 + 0.000...1 s


def _zero_length_packets() -> list:
    """IP headers that say 0 bytes: an IPv4 TSO segment as the sending host captures it, an
    IPv6 BIG TCP segment, and an IPv6 jumbogram with its Jumbo Payload option."""
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop, Jumbo

    ether = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    tso = ether / IP(src=SERVER4, dst=CLIENT, len=0) / TCP(sport=443, dport=40000) \
        / Raw(b"t" * 3000)
    big = ether / IPv6(src="2001:db8::1", dst="2001:db8:1::7", plen=0) \
        / TCP(sport=443, dport=40000) / Raw(b"b" * 5000)
    jumbo = ether / IPv6(src="2001:db8::1", dst="2001:db8:1::7", plen=0) \
        / IPv6ExtHdrHopByHop(options=[Jumbo(jumboplen=8 + 20 + 70000)]) \
        / TCP(sport=443, dport=40000) / Raw(b"j" * 2000)  # the capture holds 2000 of them
    # ... of a frame that was whole on the wire (a packet never counts more than its wire).
    jumbo.wirelen = 14 + 40 + 8 + 20 + 70000
    made = [tso, big, jumbo]
    for i, packet in enumerate(made):
        packet.time = T0 + i
    return made


def test_a_zero_ip_length_counts_the_wire_bytes_whatever_the_snap_length(tmp_path: Path
                                                                         ) -> None:
    editcap = tool("editcap")
    full = tmp_path / "full.pcap"
    wrpcap(str(full), _zero_length_packets())
    expected = {"in": 0, "out": 3000 + 40 + 5000 + 60 + 40 + 8 + 20 + 70000}
    for snaplen in (0, 96, 200):  # 0: the whole frames
        for kind in ("pcap", "pcapng"):
            cut = tmp_path / f"cut{snaplen}.{kind}"
            args = [editcap, "-F", kind] + (["-s", str(snaplen)] if snaplen else [])
            subprocess.run([*args, str(full), str(cut)], check=True, capture_output=True,
                           timeout=60)
            out = tmp_path / f"cut{snaplen}{kind}.csv"
            result = run_cli(["--read", str(cut), "--server-ip", SERVER4, "--server-ip",
                              "2001:db8::1", "--out", str(out), "--quiet"])
            assert result.returncode == 0, result.stderr
            rows = read_rows(out)
            assert rows.groupby("direction")["total_bytes"].sum().to_dict() == {
                "out": expected["out"]}, (snaplen, kind)


def test_packets_said_to_be_ip_with_unreadable_headers_are_skipped_and_counted(
        tmp_path: Path) -> None:
    good = [bytes(p) for p in packets(2)]
    bad_ihl = bytearray(good[0])
    bad_ihl[14] = 0x43  # IPv4 with a 12-byte header
    bad_version = bytearray(good[0])
    bad_version[14] = 0x75  # version 7 behind an IPv4 ethertype
    cut = good[0][:14 + 12]  # the IP header cut short
    path = _classic(tmp_path / "malformed.pcap",
                    [(frame, len(frame)) for frame in [good[0], bytes(bad_ihl),
                                                      bytes(bad_version), cut, good[1]]])
    result, rows = count(path, tmp_path)
    assert rows["total_bytes"].sum() == sum(len(p[IP]) for p in packets(2))
    assert "3 packets said to be IP had a header that cannot be read" in result.stderr


def test_payload_spans_of_a_zero_ip_length_count_the_wire_bytes() -> None:
    """The packet log's payload length follows the byte count's rule: with the IP length 0
    and the frame cut by the snap length, the wire length gives it, on both paths."""
    import numpy as np

    from traffic_capture.frames import batch_of_frames
    from traffic_capture.sinks.payload import payload_span, payload_spans

    tso, big, _ = (bytes(p) for p in _zero_length_packets())
    cut = [tso[:96], big[:96]]
    batch = batch_of_frames([(0, linktypes.DLT_EN10MB, frame) for frame in cut])
    batch.wire_lengths = np.array([len(tso), len(big)], dtype=np.int64)
    _, lengths, _ = payload_spans(batch)
    assert lengths.tolist() == [3000, 5000]
    assert payload_span(linktypes.DLT_EN10MB, cut[0], len(tso))[1] == 3000


def _classic(path: Path, frames: list[tuple[bytes, int]],
             linktype: int = linktypes.DLT_EN10MB) -> Path:
    """A little-endian classic pcap of (frame, the wire length its record claims)."""
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype)
                     + b"".join(struct.pack("<IIII", T0 + k, 0, len(frame), wire) + frame
                                for k, (frame, wire) in enumerate(frames)))
    return path


def test_a_zero_ip_length_in_a_record_claiming_no_wire_bytes_never_counts_below_zero(
        tmp_path: Path) -> None:
    """Issue 20 (1): IPv4 of total length 0 behind a VLAN tag, and IPv6 of payload length 0
    with an extension header, each in a record whose original length is 0, count what was
    captured after the link header (the frame-by-frame parser took -18 and -14)."""
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt
    from scapy.layers.l2 import Dot1Q

    ether = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    tagged = bytes(ether / Dot1Q(vlan=7) / IP(src=CLIENT, dst=SERVER4, len=0)
                   / TCP(sport=40000, dport=80) / Raw(b"h" * 30))
    ext = bytes(ether / IPv6(src="2001:db8:1::7", dst="2001:db8::1", plen=0)
                / IPv6ExtHdrDestOpt() / UDP(sport=40000, dport=53) / Raw(b"u" * 30))
    path = _classic(tmp_path / "zero.pcap", [(tagged, 0), (ext, 0)])
    out = tmp_path / "zero.csv"
    result = run_cli(["--read", str(path), "--server-ip", SERVER4, "--server-ip", "2001:db8::1",
                      "--out", str(out), "--quiet"])
    assert result.returncode == 0, result.stderr
    rows = read_rows(out).set_index("client_ip")
    assert rows.loc[CLIENT, "http_bytes"] == len(tagged) - 18
    assert rows.loc["2001:db8:1::7", "udp_bytes"] == len(ext) - 14


@pytest.mark.parametrize(("jumbo", "why"), [
    (2**32 - 1, "more than the wire holds"),
    (65_535, "under 65,536: RFC 2675 forbids it"),
])
def test_a_jumbo_option_never_counts_more_than_the_wire(tmp_path: Path, jumbo: int,
                                                        why: str) -> None:
    """Issue 20 (2): a 208-byte frame whose Jumbo Payload option says 4 GB was counted as
    4,294,967,335 bytes. A packet never counts more than its wire length less its link header;
    a jumbo option under 65,536 is damage, and the wire gives the bytes."""
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop, Jumbo

    frame = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                  / IPv6(src="2001:db8:1::7", dst="2001:db8::1", plen=0)
                  / IPv6ExtHdrHopByHop(options=[Jumbo(jumboplen=jumbo)])
                  / UDP(sport=40000, dport=53) / Raw(b"j" * 138))
    assert len(frame) == 208
    path = _classic(tmp_path / "jumbo.pcap", [(frame, 208)])
    out = tmp_path / "jumbo.csv"
    result = run_cli(["--read", str(path), "--server-ip", "2001:db8::1", "--out", str(out),
                      "--quiet"])
    assert result.returncode == 0, result.stderr
    assert read_rows(out)["total_bytes"].sum() == 208 - 14, why


def test_link_type_reserved_bits_are_refused_as_libpcap_and_tshark_do(good: Path,
                                                                     tmp_path: Path) -> None:
    """Issue 20 (5): libpcap's linktype-reserved-field-not-zero.pcap (0x00010001) was read as
    Ethernet; it is refused with the message of any unknown link type."""
    header, records = pcap_records(good)
    path = tmp_path / "reserved.pcap"
    path.write_bytes(header[:20] + struct.pack("<I", 0x00010001)
                     + b"".join(r + f for r, f in records))
    assert subprocess.run([tool("tshark"), "-r", str(path)], capture_output=True,
                          timeout=60).returncode != 0
    result = run_cli(["--read", str(path), "--server-ip", SERVER4, "--out",
                      str(tmp_path / "r.csv")])
    assert result.returncode != 0 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "link type 65537 is not a link type this tool reads" in line
    assert not (tmp_path / "r.csv").exists()


def test_an_fcs_is_not_counted_where_the_ip_length_says_0(tmp_path: Path) -> None:
    """Issue 20 (5): with the FCS bits set (4 bytes) and an IPv4 total length of 0, the bytes
    after the link header less the FCS are the count: 1,040, not 1,044."""
    ip = IP(src=CLIENT, dst=SERVER4, len=0) / UDP(sport=40000, dport=53) / Raw(b"f" * 1012)
    frame = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / ip)
    assert len(frame) == 14 + 1040
    with_fcs = frame + b"\xde\xad\xbe\xef"
    path = _classic(tmp_path / "fcs0.pcap", [(with_fcs, len(with_fcs)), (frame + b"\0" * 4, 0)],
                    linktype=0x24000001)  # Ethernet, FCS of 2 16-bit words present
    _, rows = count(path, tmp_path)
    assert rows["udp_bytes"].tolist() == [2 * 1040]  # one window


@pytest.mark.parametrize(("damage", "said"), [
    ("garbage", "bytes that are not gzip follow its compressed data, after its last packet: "
                "every packet in it was read and counted"),
    ("crc", "its gzip checksum does not match the data (some bytes may be damaged), after its "
            "last packet: every packet in it was read and counted"),
    ("cut", "ends in the middle of a packet (a capture that was killed?)"),
])
def test_a_gzip_file_says_what_is_wrong_with_it(good: Path, tmp_path: Path, damage: str,
                                                said: str) -> None:
    """Issue 20 (7): trailing garbage and a bad CRC got the warning of a cut file although
    every packet was counted."""
    import gzip

    packed = gzip.compress(good.read_bytes())
    path = tmp_path / "t.pcap.gz"
    path.write_bytes({"garbage": packed + b"garbage!",
                      "crc": packed[:-8] + b"\0\0\0\0" + packed[-4:],
                      "cut": packed[:-30]}[damage])
    result, rows = count(path, tmp_path)
    if damage != "cut":
        assert rows["total_bytes"].sum() == expected_bytes()
    (line,) = [line for line in result.stderr.splitlines() if "t.pcap.gz" in line]
    assert said in line


@pytest.mark.parametrize("block", ["enhanced", "obsolete"])
@pytest.mark.parametrize(("tsresol", "offset"), [
    (6, -10**10),  # microseconds, an offset of -10**10 s
    (10, T0 - 10**9),  # 10**10 units a second (its 64 bits hold 58 years: an offset)
    (12, T0 - 10**7),  # finer
])
def test_a_large_time_offset_or_a_fine_resolution_landing_in_range_is_read(
        tmp_path: Path, block: str, tsresol: int, offset: int) -> None:
    """Issue 20 (3): an interface offset of -10**10 s whose packets land in 2023 (tshark reads
    them) stopped with an OverflowError ("unexpected error", no rows), in both packet blocks;
    so did an Obsolete Packet Block with a resolution of 10**10 or finer."""
    made = packets(3)
    write = ng.enhanced if block == "enhanced" else ng.obsolete
    path = _pcapng(tmp_path, ng.interface(linktypes.DLT_EN10MB, tsresol=tsresol,
                                          tsoffset=offset),
                   *(write(0, (T0 + k - offset) * 10**tsresol, bytes(p))
                     for k, p in enumerate(made)))
    result, rows = count(path, tmp_path)
    assert rows["total_bytes"].sum() == sum(len(p[IP]) for p in made)
    assert rows["window_start"].str.startswith("2023-11-").all()
    assert "damaged" not in result.stderr


@pytest.mark.parametrize(("tsresol", "tsoffset", "units"), [
    (6, None, 2**64 - 1),  # microseconds up to the year 584,554: it landed in 1969
    (6, 2**62, T0 * 10**6),  # a large offset
    (12, 2**62, 10**19),  # a fine resolution, and a large offset
])
def test_an_obsolete_packet_blocks_time_out_of_range_is_damage_as_an_enhanced_ones(
        tmp_path: Path, tsresol: int, tsoffset: int | None, units: int) -> None:
    """Issue 20 (3): an Obsolete Packet Block (type 2) with a large offset or a resolution of
    10**10 or finer raised OverflowError; one at 2**64 - 1 us landed silently in 1969. It is
    one path with the Enhanced Packet Block's: counted up to it, then one warning."""
    made = packets(2)
    per_second = 10**tsresol
    path = _pcapng(tmp_path, ng.interface(linktypes.DLT_EN10MB, tsresol=tsresol,
                                          tsoffset=tsoffset),
                   ng.obsolete(0, (T0 - (tsoffset or 0)) * per_second, bytes(made[0]))
                   if (tsoffset or 0) <= T0 else b"",
                   ng.obsolete(0, units, bytes(made[1])))
    result, rows = count(path, tmp_path)
    assert "is damaged (a packet's time, with its interface's offset, is before 1970 or past " \
        "2262)" in result.stderr
    if (tsoffset or 0) <= T0:
        assert rows["total_bytes"].sum() == len(made[0][IP])
        assert rows["window_start"].str.startswith("2023-11-").all()
    else:
        assert rows.empty
