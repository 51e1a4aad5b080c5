"""The compiled batch parse (_parse_rows.c) and its numpy twin give the same arrays, byte for
byte, on any rows: real link headers, IPv4 and IPv6 headers of any field values, cut frames,
wire lengths known or not."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.requirements import missing
from traffic_capture import parse
from traffic_capture.frames import HEADER_BYTES
from traffic_capture.linktypes import LINK_TYPES

ETHERTYPES = [0x0800, 0x86DD, 0x8100, 0x88A8, 0x9100, 0x0806, 0x0000]


def test_the_compiled_parse_was_built() -> None:
    """CI machines have a C compiler: the fast path must be the one tested and measured."""
    assert parse.compiled_parse_rows is not None, "traffic_capture/_parse_rows.c not compiled"


@st.composite
def rows(draw: st.DrawFn) -> tuple[np.ndarray, int, int, int, np.ndarray, np.ndarray]:
    """(table, base, ip_at, ethertype_at, lengths, wire) for up to 40 frames of one link type;
    most rows carry an IP version nibble and a real protocol, so every branch is taken."""
    link = draw(st.sampled_from(sorted(LINK_TYPES.values(), key=lambda k: k.number)))
    base = draw(st.sampled_from([0, 16]))
    count = draw(st.integers(0, 40))
    width = base + HEADER_BYTES
    table = np.frombuffer(draw(st.binary(min_size=count * width, max_size=count * width)),
                          dtype=np.uint8).reshape(count, width).copy()
    ip = link.ip_at
    for row in table:
        if link.ethertype_at is not None:
            ethertype = draw(st.sampled_from(ETHERTYPES))
            row[base + link.ethertype_at:base + link.ethertype_at + 2] = divmod(ethertype, 256)
        version = draw(st.sampled_from([4, 4, 6, 6, 5]))
        row[base + ip] = (version << 4) | draw(st.integers(0, 15))
        protocol = draw(st.sampled_from([6, 17, 1, 0, 44, 58]))
        row[base + ip + (6 if version == 6 else 9)] = protocol
        if draw(st.booleans()):  # not a fragment
            row[base + ip + 6:base + ip + 8] &= np.array([0xE0, 0], dtype=np.uint8) \
                if version == 4 else 0xFF
    lengths = np.array(draw(st.lists(st.integers(0, 200), min_size=count, max_size=count)),
                       dtype=np.int64)
    wire = np.array(draw(st.lists(st.integers(0, 70_000), min_size=count, max_size=count)),
                    dtype=np.int64)
    return table, base, ip, -1 if link.ethertype_at is None else link.ethertype_at, lengths, \
        wire


def outputs(n: int) -> list[np.ndarray]:
    """Parsed's arrays, filled with a pattern the parse must overwrite."""
    flags = [np.full(n, True) for _ in range(2)]
    addresses = [np.full(n, 0xA5A5, dtype=np.uint64) for _ in range(4)]
    columns = [np.full(n, -7, dtype=np.int64) for _ in range(5)]
    return [*flags, *addresses, *columns, np.full(n, True)]


@settings(max_examples=400, deadline=None)
@given(rows(), st.booleans(), st.sampled_from([0, 2, 4]))
def test_compiled_and_numpy_parses_agree(batch: tuple[np.ndarray, int, int, int, np.ndarray,
                                                      np.ndarray],
                                         bounded: bool, fcs_bytes: int) -> None:
    if parse.compiled_parse_rows is None:
        missing("no compiled parse on this machine (a C compiler, then pip install -e .)")
    table, base, ip, ethertype_at, lengths, wire = batch
    results = []
    for parse_rows in (parse.compiled_parse_rows, parse.python_parse_rows):
        out = outputs(len(lengths))
        malformed = parse_rows(table, base + HEADER_BYTES, base, ip, ethertype_at, lengths,
                               wire, bounded, fcs_bytes, *out)
        results.append((malformed, [array.tobytes() for array in out]))
    assert results[0] == results[1]


def test_rows_too_narrow_for_the_link_type_are_refused_not_read_past() -> None:
    if parse.compiled_parse_rows is None:
        missing("no compiled parse on this machine (a C compiler, then pip install -e .)")
    table = np.zeros((3, 40), dtype=np.uint8)
    lengths = np.full(3, 40, dtype=np.int64)
    try:
        parse.compiled_parse_rows(table, 40, 0, 14, 12, lengths, lengths, True, 0, *outputs(3))
    except ValueError as error:
        assert "too narrow" in str(error)
    else:
        raise AssertionError("a 40-byte row was parsed as if it held 96")


@pytest.mark.parametrize("parse_rows", ["compiled_parse_rows", "python_parse_rows"])
def test_an_empty_raw_ip_frame_is_not_ip_whatever_bytes_follow_it(parse_rows: str) -> None:
    """A frame of 0 captured bytes on a link without a link header (raw IP) is not IP, as the
    packet-by-packet parse says (ip_offset): its row's bytes are whatever followed it in the
    chunk, or zeros, and must not make it a malformed IP packet."""
    parse_function = getattr(parse, parse_rows)
    if parse_function is None:
        missing("no compiled parse on this machine (a C compiler, then pip install -e .)")
    table = np.zeros((2, HEADER_BYTES), dtype=np.uint8)
    table[:, 0] = 0x45  # what an IPv4 packet after it would start with
    lengths = np.array([0, 0], dtype=np.int64)
    out = outputs(2)
    assert parse_function(table, HEADER_BYTES, 0, 0, -1, lengths, lengths, True, 0, *out) == 0
    assert not out[0].any()  # is_ip
