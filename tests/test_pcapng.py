"""pcapng read natively (Wireshark's and dumpcap's default format), compressed or not: the rows
tshark's reading gives, whatever the sections, byte orders, link types, time units, blocks and
chunk boundaries. dumpcap-made pcapng files are also checked in test_real_captures.py."""

from __future__ import annotations

import gzip
import random
import struct
from pathlib import Path

import pytest

from tests import pcapng_builder as ng
from tests import tshark_oracle as oracle
from tests.conftest import needs_tools, run_cli
from tests.pcapng_builder import DLT_EN10MB, DLT_RAW, SERVER4, SERVER6, T0, mixed_file
from tests.realtools_traffic import run_daemon
from traffic_capture.sources import chunks
from traffic_capture.sources.capture_file import CaptureFile


@pytest.fixture(scope="session")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pcapng") / "mixed.pcapng"
    path.write_bytes(mixed_file())
    return path


def records(path: Path) -> list[tuple[int, int, bytes]]:
    return list(CaptureFile(path).records())


def test_a_hand_built_pcapng_gives_the_rows_tshark_reads_in_it(mixed: Path,
                                                                 tmp_path: Path) -> None:
    needs_tools("tshark")
    expected = oracle.expected_rows(mixed, (SERVER4, SERVER6))
    assert len(expected) > 50  # the file really holds traffic of many keys
    result = run_daemon([mixed], tmp_path / "out.csv")
    assert result.returncode == 0 and not result.stderr, result.stderr
    differences = oracle.diff(expected, oracle.read_csv(tmp_path / "out.csv"))
    assert not differences, differences


@pytest.mark.parametrize("chunk", [64, 1000, 4096, 65536])
def test_chunk_boundaries_change_nothing(mixed: Path, chunk: int,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    whole = records(mixed)
    monkeypatch.setattr(chunks, "CHUNK_BYTES", chunk)
    assert records(mixed) == whole


def test_a_pcap_in_small_chunks_gives_the_same_records(sample_pcap: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    whole = records(sample_pcap)
    monkeypatch.setattr(chunks, "CHUNK_BYTES", 777)
    assert records(sample_pcap) == whole


@pytest.fixture
def sample_pcap() -> Path:
    return Path(__file__).resolve().parents[1] / "samples" / "sample.pcap"


def test_gzip_compressed_files_read_as_the_originals(mixed: Path, sample_pcap: Path,
                                                     tmp_path: Path) -> None:
    for original in (mixed, sample_pcap):
        packed = tmp_path / (original.name + ".gz")
        packed.write_bytes(gzip.compress(original.read_bytes()))
        capture = CaptureFile(packed)
        assert capture.compressed
        assert list(capture.records()) == records(original)
        assert not capture.truncated and capture.position() == packed.stat().st_size


def test_a_cut_gzip_file_counts_what_came_before_and_says_so(sample_pcap: Path,
                                                             tmp_path: Path) -> None:
    packed = gzip.compress(sample_pcap.read_bytes())
    cut = tmp_path / "cut.pcap.gz"
    cut.write_bytes(packed[:len(packed) // 2])
    capture = CaptureFile(cut)
    got = list(capture.records())
    assert capture.truncated
    assert 0 < len(got) < len(records(sample_pcap))
    assert got == records(sample_pcap)[:len(got)]


def test_simple_packet_blocks_take_the_time_of_the_packet_before(tmp_path: Path) -> None:
    rng = random.Random(1)
    first, second = ng.random_frame(rng, DLT_EN10MB), ng.random_frame(rng, DLT_EN10MB)
    path = tmp_path / "spb.pcapng"
    path.write_bytes(ng.section() + ng.interface(DLT_EN10MB, snaplen=40)
                     + ng.enhanced(0, T0 * 10**6 + 1, first) + ng.simple(second))
    assert records(path) == [((T0 * 10**6 + 1) * 1000, DLT_EN10MB, first),
                             ((T0 * 10**6 + 1) * 1000, DLT_EN10MB, second[:40])]


def test_a_packet_of_an_undescribed_interface_is_damage_counted_up_to(tmp_path: Path) -> None:
    rng = random.Random(2)
    before = [ng.random_frame(rng, DLT_EN10MB) for _ in range(3)]
    path = tmp_path / "damaged.pcapng"
    path.write_bytes(ng.section() + ng.interface(DLT_EN10MB)
                     + b"".join(ng.enhanced(0, T0 * 10**6 + k, f) for k, f in enumerate(before))
                     + ng.enhanced(5, T0 * 10**6 + 9, before[0])
                     + ng.enhanced(0, T0 * 10**6 + 10, before[1]))
    capture = CaptureFile(path)
    assert [frame for _, _, frame in capture.records()] == before
    assert capture.damaged and "interface 5" in capture.damaged


def test_damage_is_one_warning_and_the_packets_before_it_are_written(mixed: Path,
                                                                     tmp_path: Path) -> None:
    data = bytearray(mixed.read_bytes())
    # Break the length of the block that starts the second half: nothing after it is sure.
    position = 0
    while position < len(data) // 2:  # the first section is little-endian
        position += int.from_bytes(data[position + 4:position + 8], "little")
    data[position + 4:position + 8] = (13).to_bytes(4, "little")
    broken = tmp_path / "broken.pcapng"
    broken.write_bytes(bytes(data))
    result = run_cli(["--read", str(broken), "--server-ip", SERVER4, "--server-ip", SERVER6,
                      "--out", str(tmp_path / "t.csv"), "--quiet"])
    assert result.returncode == 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is damaged (block length 13)" in lines[0], result.stderr
    read = records(broken)
    assert 0 < len(read) < len(records(mixed)) and read == records(mixed)[:len(read)]
    assert (tmp_path / "t.csv").stat().st_size > 200


def test_files_of_tiny_records_take_several_walks_per_chunk(tmp_path: Path) -> None:
    """More records in a chunk than its table holds (4-byte frames): every one still read."""
    frames = [bytes([k % 251, 1, 2, 3]) for k in range(150_000)]
    pcap = tmp_path / "tiny.pcap"
    pcap.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, DLT_RAW)
                     + b"".join(struct.pack("<IIII", T0, k % 10**6, 4, 4) + f
                                for k, f in enumerate(frames)))
    ng_file = tmp_path / "tiny.pcapng"
    ng_file.write_bytes(ng.section() + ng.interface(DLT_RAW)
                        + b"".join(ng.enhanced(0, T0 * 10**6 + k, f)
                                   for k, f in enumerate(frames)))
    for path in (pcap, ng_file):
        capture = CaptureFile(path)
        assert [frame for _, _, frame in capture.records()] == frames, path.name
        assert not capture.truncated and not capture.damaged


def test_a_record_claiming_gigabytes_ends_the_reading_after_the_records_before(
        tmp_path: Path, sample_pcap: Path) -> None:
    data = sample_pcap.read_bytes()
    whole = records(sample_pcap)
    at, kept = 24, 0
    for _ in range(100):  # past the first 100 records
        at += 16 + struct.unpack_from("<I", data, at + 8)[0]
        kept += 1
    broken = tmp_path / "broken.pcap"
    broken.write_bytes(data[:at + 8] + struct.pack("<I", 3 * 2**30) + data[at + 12:])
    capture = CaptureFile(broken)
    assert list(capture.records()) == whole[:kept]
    # Said as what it is (issue 20, 7), not as a file that ends in the middle of a packet.
    assert capture.damaged == "a packet claims 3,221,225,472 captured bytes, over libpcap's " \
        "262,144"
