"""The compiled batch classification (_classify_rows.c) and its numpy twin give the same
arrays, byte for byte: which packets count, their direction, client and class, and which are
FTP control packets to read, for any fields, server networks and http ports."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.requirements import missing
from traffic_capture import classify
from traffic_capture.rules import FTP_CONTROL_PORT, HTTP_PORTS

# Few distinct halves, so that packets fall in and out of the networks, at their edges too.
HALVES = st.sampled_from([0, 1, 0xC0000201, 0xC0000200, 0xC00002FF, 2**32 - 1,
                          0x20010DB800000000, 0x20010DB800000001, 2**63, 2**64 - 1])
NETWORKS = st.one_of(
    st.sampled_from(["192.0.2.1/32", "192.0.2.0/24", "0.0.0.0/0", "2001:db8::1/128",
                     "2001:db8::/32", "2001:db8:0:1::/64", "::/0"]),
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)).map(
        lambda a: str(ipaddress.ip_network((a[0], a[1]), strict=False))),
    st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128)).map(
        lambda a: str(ipaddress.ip_network((a[0], a[1]), strict=False))))
PORTS = st.sampled_from([-1, 0, 20, 21, 22, 80, 443, 8080, 65535])


def compiled() -> object:
    if classify.compiled_classify_rows is None:
        missing("no compiled classification here (a C compiler, then pip install -e .)")
    return classify.compiled_classify_rows


def test_the_compiled_classification_was_built() -> None:
    """CI machines have a C compiler: the fast path must be the one tested and measured."""
    assert classify.compiled_classify_rows is not None, "_classify_rows.c was not compiled"


def outputs(n: int) -> list[np.ndarray]:
    """The seven outputs, filled with a pattern the classification must overwrite."""
    return [np.full(n, True), np.full(n, True), np.full(n, 0xA5A5, dtype=np.uint64),
            np.full(n, 0xA5A5, dtype=np.uint64), np.full(n, -7, dtype=np.int64),
            np.full(n, True), np.full(n, True)]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans(), HALVES, HALVES, HALVES, HALVES,
                          st.sampled_from([6, 17, 1, 0, 58]), PORTS, PORTS,
                          st.integers(-1, 80), st.integers(0, 100)), max_size=60),
       st.lists(NETWORKS, max_size=4), st.frozensets(st.integers(0, 65535), max_size=4))
def test_compiled_and_numpy_classification_agree(packets: list[tuple], networks: list[str],
                                                  http_extra: frozenset[int]) -> None:
    columns = list(zip(*packets, strict=True)) if packets else [()] * 11
    dtypes = (bool, bool, *(np.uint64,) * 4, *(np.int64,) * 5)
    arrays = [np.array(column, dtype=dtype) for column, dtype in zip(columns, dtypes,
                                                                      strict=True)]
    servers = classify.server_table(tuple(ipaddress.ip_network(n) for n in networks))
    flags = classify.port_flags(HTTP_PORTS | http_extra)
    results = []
    for classify_rows in (compiled(), classify.python_classify_rows):
        out = outputs(len(packets))
        classify_rows(*arrays, servers, flags, classify._CLASS_BY_CODE,  # type: ignore[operator]
                      FTP_CONTROL_PORT, *out)
        results.append([column.tolist() for column in out])
    assert results[0] == results[1]


def test_a_packet_counts_by_its_server_as_the_rules_say() -> None:
    """The table of networks against plain address arithmetic, for one v4 and one v6 server."""
    table = classify.server_table((ipaddress.ip_network("192.0.2.0/24"),
                                   ipaddress.ip_network("2001:db8::/32")))
    assert table.tolist() == [[0, 0, 0xFFFFFF00, 0, 0xC0000200],
                              [1, 0xFFFFFFFF00000000, 0, 0x20010DB800000000, 0]]


@pytest.mark.parametrize("port", [-2, 65536])
def test_a_port_out_of_range_is_refused_by_both(port: int) -> None:
    arrays = [np.ones(1, dtype=bool), np.zeros(1, dtype=bool),
              *(np.zeros(1, dtype=np.uint64) for _ in range(4)),
              *(np.array([value], dtype=np.int64) for value in (6, port, 80, -1, 60))]
    for classify_rows in (compiled(), classify.python_classify_rows):
        with pytest.raises(ValueError, match="out of range"):
            classify_rows(*arrays, classify.server_table(()),  # type: ignore[operator]
                          classify.port_flags(), classify._CLASS_BY_CODE, FTP_CONTROL_PORT,
                          *outputs(1))


# Payload bytes where marks begin, end and nearly match, in both cases, across frames' edges.
PIECES = st.sampled_from([b"227 ", b"227-", b"229 ", b"229-", b"PORT ", b"port ", b"EpRt ",
                          b"22", b"7 ", b"PORT", b" ", b"\n", b"\r\n", b"por", b"x", b"\xc0",
                          b"226 ", b"PASV"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.lists(PIECES, max_size=8).map(b"".join), st.integers(0, 12),
                          st.booleans()), min_size=1, max_size=30))
def test_compiled_and_python_find_the_same_announcing_packets(
        frames: list[tuple[bytes, int, bool]]) -> None:
    """Which FTP control packets are read for an announcement: a mark anywhere in the payload
    (after payload_at), in any case, never one across two frames."""
    if classify._compiled_may_announce is None:
        missing("no compiled classification here (a C compiler, then pip install -e .)")
    from traffic_capture.frames import batch_of_frames

    batch = batch_of_frames([(0, 1, frame) for frame, _, _ in frames])
    payload_at = np.array([min(at, len(frame)) for frame, at, _ in frames], dtype=np.int64)
    control = np.array([flag for _, _, flag in frames], dtype=bool)
    python = classify.python_may_announce(batch, payload_at, control).tolist()
    assert classify._c_may_announce(batch, payload_at, control).tolist() == python
    # And what the twin finds is what a search of each payload alone finds.
    assert python == [i for i, (frame, _, flag) in enumerate(frames) if flag and any(
        mark in frame[payload_at[i]:].lower() for mark in classify.ANNOUNCEMENT_MARKS)]
