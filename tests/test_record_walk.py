"""The compiled pcap record walk and its Python twin give the same offsets and header table
on any bytes."""

from __future__ import annotations

import gzip
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.requirements import missing
from traffic_capture.sources import capture_file, chunks, classic_pcap, record_walk
from traffic_capture.sources.capture_file import CaptureFile


def test_the_compiled_walk_was_built() -> None:
    """CI machines have a C compiler: the fast path must be the one tested and measured."""
    assert record_walk.COMPILED, "traffic_capture/sources/_record_walk.c was not compiled"


def assert_walks_agree(name: str, capture: tuple[bytes, bool], at: int, end: int,
                       capacity: int, width: int, table_rows: int) -> None:
    """The compiled walk `name` and its Python twin: same count, end, offsets and table."""
    compiled = getattr(record_walk, f"compiled_{name}")
    if compiled is None:
        missing("no compiled walk on this machine (a C compiler, then pip install -e .)")
    data, big_endian = capture
    results = []
    for walk in (compiled, getattr(record_walk, f"python_{name}")):
        offsets = np.full(capacity, -1, dtype=np.int64)
        table = np.full((table_rows, width), 0xAA, dtype=np.uint8)
        count, following = walk(data, at, end, offsets, big_endian, table, width)
        results.append((count, following, offsets[:count].tolist(), table.tobytes()))
    assert results[0] == results[1]


@st.composite
def capture_bytes(draw: st.DrawFn) -> tuple[bytes, bool]:
    big_endian = draw(st.booleans())
    endian = ">" if big_endian else "<"
    parts = []
    for frame in draw(st.lists(st.binary(max_size=300), max_size=30)):
        parts.append(struct.pack(endian + "IIII", 1_700_000_000, 0, len(frame), len(frame)))
        parts.append(frame)
    parts.append(draw(st.binary(max_size=40)))  # a cut record, garbage, or nothing
    return b"".join(parts), big_endian


@settings(max_examples=300, deadline=None)
@given(capture_bytes(), st.integers(0, 50), st.integers(0, 20_000), st.integers(0, 40),
       st.integers(0, 130), st.integers(0, 40))
def test_compiled_and_python_walks_agree(capture: tuple[bytes, bool], at: int, end: int,
                                         capacity: int, width: int, table_rows: int) -> None:
    assert_walks_agree("walk", capture, at, end, capacity, width, table_rows)


@st.composite
def pcapng_bytes(draw: st.DrawFn) -> tuple[bytes, bool]:
    """Enhanced Packet Blocks, now and then another block or lengths that do not add up."""
    big_endian = draw(st.booleans())
    endian = ">" if big_endian else "<"
    parts = []
    for frame in draw(st.lists(st.binary(max_size=100), max_size=20)):
        kind = draw(st.sampled_from([6, 6, 6, 5, 1]))
        body = struct.pack(endian + "5I", 0, 1, 2, len(frame), len(frame)) + frame
        body += b"\0" * (-len(body) % 4) + draw(st.sampled_from([b"", b"\1\0\4\0abcd"]))
        length = 12 + len(body) + draw(st.sampled_from([0, 0, 0, -4, 4, 1, -40]))
        parts.append(struct.pack(endian + "II", kind, length % 2**32) + body
                     + struct.pack(endian + "I", length % 2**32))
    parts.append(draw(st.binary(max_size=40)))
    return b"".join(parts), big_endian


@settings(max_examples=300, deadline=None)
@given(pcapng_bytes(), st.integers(0, 50), st.integers(0, 5_000), st.integers(0, 30),
       st.integers(0, 130), st.integers(0, 30))
def test_compiled_and_python_pcapng_walks_agree(capture: tuple[bytes, bool], at: int, end: int,
                                                capacity: int, width: int,
                                                table_rows: int) -> None:
    assert_walks_agree("walk_pcapng", capture, at, end, capacity, width, table_rows)


def test_the_pcapng_walk_takes_packet_blocks_and_stops_at_any_other() -> None:
    def block(kind: int, frame: bytes) -> bytes:
        body = struct.pack("<5I", 0, 0, 0, len(frame), len(frame)) + frame
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    packets = block(6, b"abc") + block(6, b"defgh")
    data = packets + block(5, b"") + block(6, b"x")
    offsets = np.zeros(8, dtype=np.int64)
    count, following = record_walk.walk_pcapng(data, 0, len(data), offsets, False,
                                               np.zeros(0, dtype=np.uint8), 0)
    assert (count, following, offsets[:2].tolist()) == (2, len(packets), [0, 32 + 4])


def test_each_row_of_the_table_holds_a_record_s_first_bytes() -> None:
    records = b"".join(struct.pack("<IIII", 7, 9, n, n) + bytes(range(n)) for n in (10, 20))
    offsets, table = np.zeros(4, dtype=np.int64), np.full((4, 40), 0xAA, dtype=np.uint8)
    count, _ = record_walk.walk(records, 0, len(records), offsets, False, table, 40)
    assert count == 2
    assert table[0].tobytes() == records[:40]  # past its own end: the next record's bytes
    assert table[1].tobytes() == records[26:] + bytes(40 - 36)  # zeros past the buffer
    assert table[2:].tobytes() == b"\xaa" * 80  # rows past `count` are left alone


def test_the_walk_stops_before_a_record_that_does_not_fit() -> None:
    records = b"".join(struct.pack("<IIII", 0, 0, n, n) + b"x" * n for n in (10, 20, 30))
    offsets = np.zeros(8, dtype=np.int64)
    count, following = record_walk.walk(records + records[:20], 0, len(records) + 20, offsets,
                                        False, np.zeros(0, dtype=np.uint8), 0)
    assert (count, following) == (3, len(records))
    assert offsets[:3].tolist() == [0, 26, 62]


@st.composite
def ring_blocks(draw: st.DrawFn) -> tuple[bytearray, int, int]:
    """A TPACKET_V3 ring: blocks handed over or not, each with packets (tpacket3_hdr, the
    sockaddr_ll's packet type, a frame at tp_mac) chained by tp_next_offset; now and then a
    chain that runs off its block or stops early, as a damaged ring would."""
    block_bytes = draw(st.sampled_from([512, 1024]))
    block_count = draw(st.integers(1, 4))
    ring = bytearray(draw(st.binary(min_size=block_bytes * block_count,
                                     max_size=block_bytes * block_count)))
    for block in range(block_count):
        base = block * block_bytes
        at, packets = 48, 0
        for _ in range(draw(st.integers(0, 6))):
            frame = draw(st.binary(max_size=80))
            mac = 68 + draw(st.integers(0, 4)) * 2
            size = (mac + len(frame) + 7) // 8 * 8
            if at + size > block_bytes:
                break
            struct.pack_into("=IIIIIIH", ring, base + at, 0, draw(st.integers(0, 2**32 - 1)),
                             draw(st.integers(0, 999_999_999)), len(frame),
                             len(frame) + draw(st.integers(0, 9000)), 1, mac)
            ring[base + at + 58] = draw(st.sampled_from([0, 4, 4, 3]))
            ring[base + at + mac:base + at + mac + len(frame)] = frame
            previous, at, packets = at, at + size, packets + 1
            struct.pack_into("=I", ring, base + previous,
                             draw(st.sampled_from([size, size, size, 0, 3000])))
        struct.pack_into("=III", ring, base + 8, draw(st.sampled_from([1, 1, 0, 5])),
                         packets + draw(st.sampled_from([0, 0, 1])), 48)
    return ring, block_bytes, block_count


@settings(max_examples=300, deadline=None)
@given(ring_blocks(), st.integers(0, 5), st.integers(1, 8), st.booleans(),
       st.integers(0, 40), st.integers(0, 130))
def test_compiled_and_python_ring_walks_agree(ring: tuple[bytearray, int, int], block: int,
                                              room: int, skip_outgoing: bool, capacity: int,
                                              width: int) -> None:
    data, block_bytes, block_count = ring
    if record_walk.compiled_walk_ring is None:
        missing("no compiled walk on this machine (a C compiler, then pip install -e .)")
    results = []
    for walk in (record_walk.compiled_walk_ring, record_walk.python_walk_ring):
        columns = [np.full(capacity, -1, dtype=np.int64) for _ in range(4)]
        table = np.full((capacity, width), 0xAA, dtype=np.uint8)
        count, taken = walk(data, block % block_count, block_count, block_bytes, room,
                            skip_outgoing, *columns, table, width)
        results.append((count, taken, [c[:count].tolist() for c in columns], table.tobytes()))
    assert results[0] == results[1]


# Record header words at the edges of what decode_pcap tells apart: fractions around a second
# (in us and ns), captured lengths around libpcap's largest.
WORDS = st.sampled_from([0, 1, 999_999, 1_000_000, 999_999_999, 1_000_000_000, 262_144,
                         262_145, 2**31, 2**32 - 1])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(WORDS, WORDS, WORDS, WORDS), max_size=40),
       st.booleans(), st.booleans(), st.integers(16, 40))
def test_compiled_and_python_header_decodes_agree(records: list[tuple], big_endian: bool,
                                                  nano: bool, width: int) -> None:
    """decode_pcap (the walk table's record headers -> starts, lengths, times) and its twin:
    same usable count, damaged times, and outputs, byte for byte."""
    if record_walk.compiled_decode_pcap is None:
        missing("no compiled walk on this machine (a C compiler, then pip install -e .)")
    endian = ">" if big_endian else "<"
    table = np.zeros((len(records) + 3, width), dtype=np.uint8)
    for row, words in zip(table, records, strict=False):
        row[:16] = np.frombuffer(struct.pack(endian + "IIII", *words), dtype=np.uint8)
    offsets = np.arange(len(table), dtype=np.int64) * 1000
    scale = 1 if nano else 1000
    results = []
    for decode in (record_walk.compiled_decode_pcap, record_walk.python_decode_pcap):
        outputs = [np.full(len(table), -5, dtype=np.int64) for _ in range(4)]
        found = decode(table, len(records), width, big_endian, scale, 10**9 // scale,
                       262_144, offsets, *outputs)
        results.append((found, [column.tolist() for column in outputs]))
    assert results[0] == results[1]
    usable, bad = results[0][0]
    assert usable == next((i for i, r in enumerate(records) if r[2] > 262_144), len(records))
    assert bad == sum(1 for r in records[:usable] if r[1] >= 10**9 // scale)


def read_walk_results(read_walk: Any, capture: tuple[bytes, bool], start: int, want: int,
                      piece: int, capacity: int, width: int, table_rows: int
                      ) -> tuple[tuple[int, int, int], list[int], bytes, bytes]:
    """read_walk over a real file holding the capture's bytes from `start` on, into a buffer
    that holds its first `start` bytes already (as a chunk holds the records it carried)."""
    contents, big_endian = capture
    data = np.full(start + want + 7, 0x55, dtype=np.uint8)
    data[:start] = np.frombuffer(contents[:start].ljust(start, b"\0"), dtype=np.uint8)
    offsets = np.full(capacity, -1, dtype=np.int64)
    table = np.full((table_rows, width), 0xAA, dtype=np.uint8)
    with tempfile.TemporaryFile() as file:
        file.write(contents[start:])
        file.flush()
        os.lseek(file.fileno(), 0, os.SEEK_SET)
        found = read_walk(file.fileno(), data, start, want, 0, offsets, big_endian, table, width,
                          piece)
    return found, offsets[:found[1]].tolist(), table.tobytes(), data.tobytes()


@settings(max_examples=300, deadline=None)
@given(capture_bytes(), st.integers(0, 40), st.integers(0, 12_000), st.integers(1, 700),
       st.integers(0, 40), st.integers(0, 130), st.integers(0, 40))
def test_compiled_and_python_read_walks_agree_and_find_what_a_walk_after_reading_finds(
        capture: tuple[bytes, bool], start: int, want: int, piece: int, capacity: int,
        width: int, table_rows: int) -> None:
    """read_walk (a file read in pieces, the records walked after each) and its twin: the same
    bytes read, records, offsets, table and buffer; and the same records as walk() over the
    buffer once it is read (the carried prefix is the file's own first bytes)."""
    if record_walk.compiled_read_walk is None:
        missing("no compiled walk on this machine (a C compiler, then pip install -e .)")
    results = [read_walk_results(read_walk, capture, start, want, piece, capacity, width,
                                 table_rows)
               for read_walk in (record_walk.compiled_read_walk, record_walk.python_read_walk)]
    assert results[0] == results[1]
    (got, count, following), offsets, _, data = results[0]
    assert got == min(want, max(len(capture[0]) - start, 0))
    # Only the records: a row's bytes past its record are zeros where the read had stopped
    # when it was taken, so the tables of the two ways may differ there (the parse reads a
    # row only as far as its frame's captured length).
    walked = np.full(capacity, -1, dtype=np.int64)
    rows = np.zeros((table_rows, width), dtype=np.uint8)
    buffer = np.frombuffer(data, dtype=np.uint8)
    once = record_walk.compiled_walk(buffer, 0, start + got, walked, capture[1], rows, width)
    assert (count, following) == once
    assert offsets == walked[:count].tolist()


@st.composite
def timed_capture_bytes(draw: st.DrawFn) -> tuple[bytes, bool]:
    """Records whose time fractions are around a second (in us and ns), then a cut record,
    garbage or nothing."""
    big_endian = draw(st.booleans())
    endian = ">" if big_endian else "<"
    parts = []
    for frame, fraction in draw(st.lists(st.tuples(st.binary(max_size=300), WORDS),
                                         max_size=30)):
        parts.append(struct.pack(endian + "IIII", 1_700_000_000, fraction, len(frame),
                                 len(frame) + 4))
        parts.append(frame)
    parts.append(draw(st.binary(max_size=40)))
    return b"".join(parts), big_endian


@settings(max_examples=300, deadline=None)
@given(timed_capture_bytes(), st.integers(0, 40), st.integers(0, 12_000),
       st.integers(1, 700), st.integers(0, 40), st.integers(16, 130), st.integers(0, 40),
       st.integers(0, 40), st.booleans(), st.sampled_from([40, 262_144]))
def test_compiled_and_python_read_walk_decodes_agree_with_a_decode_after_the_walk(
        capture: tuple[bytes, bool], start: int, want: int, piece: int, capacity: int,
        width: int, table_rows: int, room: int, nano: bool, max_captured: int) -> None:
    """read_walk_decode (each record's header decoded as it is walked) and its twin: the
    same records, usable count, damaged times and decoded columns; and those are what
    read_walk then decode_pcap give (`room`: the decoded columns' length, which also bounds
    the walk; `max_captured` 40 makes some records too long to trust)."""
    if record_walk.compiled_read_walk_decode is None:
        missing("no compiled walk on this machine (a C compiler, then pip install -e .)")
    scale = 1 if nano else 1000
    results = []
    for read_walk_decode in (record_walk.compiled_read_walk_decode,
                             record_walk.python_read_walk_decode):
        columns = [np.full(room, -5, dtype=np.int64) for _ in range(4)]

        def walker(*arguments: Any, decode: Any = read_walk_decode, out: Any = columns) -> Any:
            return decode(*arguments, scale, 10**9 // scale, max_captured, *out)
        found, offsets, _, data = read_walk_results(walker, capture, start, want, piece,
                                                    capacity, width, table_rows)
        usable = found[3]
        results.append((found, offsets, data, [c[:usable].tolist() for c in columns]))
    assert results[0] == results[1]
    # The same as a walk while reading, then a decode of the table it filled.
    (got, count, following, usable, bad), offsets, data, decoded = results[0]
    walked = read_walk_results(record_walk.compiled_read_walk, capture, start, want, piece,
                               min(capacity, room), width, table_rows)
    assert walked[0] == (got, count, following) and walked[1] == offsets
    table = np.frombuffer(walked[2], dtype=np.uint8).reshape(table_rows, width)
    columns = [np.full(count, -5, dtype=np.int64) for _ in range(4)]
    assert record_walk.compiled_decode_pcap(
        table, count, width, capture[1], scale, 10**9 // scale, max_captured,
        np.array(offsets, dtype=np.int64), *columns) == (usable, bad)
    assert decoded == [c[:usable].tolist() for c in columns]


@pytest.mark.parametrize("read_walk", ["compiled_read_walk", "python_read_walk"])
def test_a_read_error_is_an_os_error(read_walk: str, tmp_path: Path) -> None:
    """A file that cannot be read (here, opened for writing only) raises OSError, as
    readinto does."""
    walker = getattr(record_walk, read_walk)
    if walker is None:
        missing("no compiled walk on this machine (a C compiler, then pip install -e .)")
    descriptor = os.open(tmp_path / "capture.pcap", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError):
            walker(descriptor, np.zeros(64, dtype=np.uint8), 0, 64, 0,
                   np.zeros(4, dtype=np.int64), False, np.zeros((4, 32), dtype=np.uint8), 32,
                   16)
    finally:
        os.close(descriptor)


# Frame sizes of the file below: mostly small, so that a chunk holds more records than its
# table's rows (CHUNK_BYTES // 64), now and then one that spans pieces and chunks.
SIZES, SHARES = [14, 20, 40, 60, 1500], [0.245, 0.245, 0.245, 0.245, 0.02]


@pytest.mark.parametrize("chunk, piece", [(777, 100), (4096, 1000), (65536, 256 * 1024)])
def test_a_file_walked_as_it_is_read_gives_the_records_of_its_gzip_copy(
        chunk: int, piece: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain pcap is walked while its chunks are read (read_walk); a gzip one is read, then
    walked: the same records, across chunks, pieces, and chunks whose table fills before the
    chunk ends (small frames: the records after it are carried, also at the file's end)."""
    rng = np.random.default_rng(7)
    parts = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for number in range(3000):
        frame = rng.integers(0, 256, int(rng.choice(SIZES, p=SHARES))).astype(
            np.uint8).tobytes()
        parts.append(struct.pack("<IIII", 1_700_000_000 + number, number, len(frame),
                                 len(frame)) + frame)
    plain = tmp_path / "capture.pcap"
    plain.write_bytes(b"".join(parts))
    packed = tmp_path / "capture.pcap.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    if record_walk.compiled_read_walk is None:
        missing("no compiled walk on this machine (a C compiler, then pip install -e .)")
    monkeypatch.setattr(chunks, "CHUNK_BYTES", chunk)
    monkeypatch.setattr(classic_pcap, "READ_PIECE", piece)
    reads = []
    walker = capture_file.read_walker

    def counted(header: Any) -> Any:
        read_walk = walker(header)

        def counting(*arguments: Any) -> Any:
            reads.append(arguments[3])
            return read_walk(*arguments)
        return counting
    monkeypatch.setattr(capture_file, "read_walker", counted)
    walked_while_read = list(CaptureFile(plain).records())
    assert reads and sum(reads) >= plain.stat().st_size - 24  # the whole file went that way
    assert len(walked_while_read) == 3000
    assert walked_while_read == list(CaptureFile(packed).records())


@pytest.mark.parametrize("name", ["walk", "walk_pcapng"])
def test_a_far_start_or_a_huge_claimed_length_is_no_record(name: str) -> None:
    """A start past the buffer (up to the largest index) and lengths near 2^32 take no record
    and read nothing outside the buffer (the C compares them with what is left)."""
    compiled = getattr(record_walk, f"compiled_{name}")
    if compiled is None:
        missing("no compiled walk on this machine (a C compiler, then pip install -e .)")
    data = np.zeros(4096, dtype=np.uint8)
    data[:64].view("<u4")[:] = 0xFFFFFFF0  # every length field of the first record: huge
    data[:4].view("<u4")[:] = 6  # a packet block's type, for the pcapng walk
    offsets = np.zeros(8, dtype=np.int64)
    table = np.zeros((8, 32), dtype=np.uint8)
    for walk in (compiled, getattr(record_walk, f"python_{name}")):
        for at in (0, 4096, 2**63 - 8):
            assert walk(data, at, len(data), offsets, False, table, 32) == (0, at)
