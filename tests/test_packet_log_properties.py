"""Properties of the packet log's pure parts: the preview, the payload span against scapy (an
independent packet library), the batch and frame-by-frame spans agreeing, rotation, times."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SAMPLE
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
    counted_batches,
)
from traffic_capture import linktypes
from traffic_capture.frames import batch_of_frames, gather_frames
from traffic_capture.sinks.log_lines import PREVIEW_BYTES, Lines, TimeText, preview
from traffic_capture.sinks.packet_log import LogFile, PacketLogSink
from traffic_capture.sinks.payload import payload_span, payload_spans


@given(st.binary(max_size=300))
def test_the_preview_shows_printable_ascii_and_dots(payload: bytes) -> None:
    shown = preview(payload)
    assert len(shown) == min(len(payload), PREVIEW_BYTES)
    for byte, char in zip(payload, shown, strict=False):
        if 0x20 <= byte <= 0x7E:
            assert char == chr(byte)
        else:
            assert char == "."
    # Safe to show and to put in JSON: one line, ASCII, and it survives a round trip.
    assert shown.isascii() and "\n" not in shown and "\t" not in shown
    assert json.loads(json.dumps(shown)) == shown


packets = st.tuples(
    st.sampled_from([4, 6]),
    st.sampled_from(["tcp", "udp", "icmp"]),
    st.sampled_from([None, "hop", "dest", "dest+hop"]),  # IPv6 extension headers
    st.binary(max_size=600),
    st.sampled_from(sorted(LINK_TYPES)),
    st.integers(0, 255),  # TCP flags
    st.integers(0, 40),  # TCP option bytes (x4 rounding by scapy)
)


def build(spec: tuple) -> tuple[int, bytes, bytes, int | None]:
    """(link type, frame, payload, TCP flags or None) built by scapy."""
    version, proto, ext, payload, link, flags, options = spec
    if version == 4:
        layer = IP(src="192.0.2.1", dst="198.51.100.7")
    else:
        layer = IPv6(src="2001:db8::1", dst="2001:db8:1::7")
        if ext and "hop" in ext:
            layer = layer / IPv6ExtHdrHopByHop()
        if ext and "dest" in ext:
            layer = layer / IPv6ExtHdrDestOpt()
    if proto == "tcp":
        upper = TCP(sport=41000, dport=80, flags=flags,
                    options=[("NOP", None)] * options)
    elif proto == "udp":
        upper = UDP(sport=41000, dport=53)
    else:
        upper = ICMP() if version == 4 else ICMPv6EchoRequest()
    linktype, make = LINK_TYPES[link]
    packet = layer / upper / Raw(payload)
    frame = make(packet)
    if proto == "icmp":  # the payload of other protocols is the whole IP payload
        payload = bytes(packet)[-len(bytes(upper / Raw(payload))):]
    return linktype, frame, payload, flags if proto == "tcp" else None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(packets, st.integers(0, 700))
def test_the_payload_span_is_scapys_payload_even_when_the_capture_cut_it(spec: tuple,
                                                                         cut: int) -> None:
    linktype, frame, payload, flags = build(spec)
    at, length, tcp_flags = payload_span(linktype, frame)
    assert frame[at:at + length] == payload and length == len(payload)
    assert tcp_flags == (-1 if flags is None else flags)
    # Cut by a snap length: the length still comes from the headers, the bytes are a prefix.
    short = frame[:len(frame) - cut] if cut < len(frame) else b""
    cut_at, cut_length, _ = payload_span(linktype, short)
    if cut_at >= 0:
        assert (cut_at, cut_length) == (at, length)
        assert payload.startswith(short[cut_at:cut_at + cut_length])
    else:  # the headers themselves were cut
        assert len(short) < at


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(packets, st.integers(0, 700)), min_size=1, max_size=20),
       st.sampled_from(sorted(LINK_TYPES)))
def test_the_batch_spans_are_the_frame_by_frame_spans(specs: list, link: str) -> None:
    records = []
    for spec, cut in specs:
        linktype, frame, _, _ = build((*spec[:4], link, *spec[5:]))
        records.append((0, linktype, frame[:max(1, len(frame) - cut)]))
    batch = batch_of_frames(records)
    spans = payload_spans(batch)
    for i, (_, linktype, frame) in enumerate(records):
        assert tuple(int(column[i]) for column in spans) == payload_span(linktype, frame)


@given(st.binary(max_size=200), st.sampled_from(sorted(linktypes.LINK_TYPES)))
def test_the_payload_span_never_raises_on_garbage(frame: bytes, linktype: int) -> None:
    at, length, flags = payload_span(linktype, frame)
    assert (at < 0) == (length < 0) and -1 <= flags <= 255
    spans = payload_spans(batch_of_frames([(0, linktype, frame or b"\0")]))
    assert tuple(int(c[0]) for c in spans) == payload_span(linktype, frame or b"\0")


def test_a_fragment_after_the_first_has_its_ip_payload_as_payload() -> None:
    fragment = IP(src="192.0.2.1", dst="198.51.100.7", proto=6, frag=100) / Raw(b"x" * 30)
    linktype, make = LINK_TYPES["ethernet"]
    assert payload_span(linktype, make(fragment))[1:] == (30, -1)
    later = IPv6(src="2001:db8::1", dst="2001:db8:1::7") / IPv6ExtHdrFragment(
        offset=10, nh=6) / Raw(b"y" * 12)
    frame = make(later)
    at, length, flags = payload_span(linktype, frame)
    assert frame[at:at + length] == b"y" * 12 and flags == -1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 300), min_size=1, max_size=60), st.integers(50, 2000),
       st.integers(0, 3), st.lists(st.integers(1, 20), max_size=5))
def test_rotation_keeps_lines_whole_in_order_and_within_the_limit(
        sizes: list[int], max_bytes: int, keep: int, groups: list[int]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.jsonl"
        log = LogFile(path, max_bytes, keep)
        lines = [f"{i:06d}" + "x" * size + "\n" for i, size in enumerate(sizes)]
        at = 0
        for size in [*groups, len(lines)]:  # written in groups of several lines
            done, error = log.write_lines(Lines.of(lines[at:at + size]))
            assert error is None and done == len(lines[at:at + size])
            at += size
        log.close()
        files = [path.with_name(f"p.jsonl.{n}") for n in range(keep, 0, -1)] + [path]
        kept: list[str] = []
        for file in files:
            if not file.exists():
                continue
            assert stat.S_IMODE(file.stat().st_mode) == 0o600
            text = file.read_text()
            assert len(text) <= max_bytes or text.count("\n") == 1
            kept += text.splitlines(keepends=True)
        assert not path.with_name(f"p.jsonl.{keep + 1}").exists()
        assert kept == lines[len(lines) - len(kept):]  # the newest, in order
        assert sorted(os.listdir(folder)) == sorted(f.name for f in files if f.exists())


@given(st.integers(0, 4_000_000_000 * 10**9))
def test_times_are_iso_8601_local_with_microseconds_and_offset(ts_ns: int) -> None:
    text = TimeText()(ts_ns)
    parsed = datetime.fromisoformat(text)
    assert parsed.utcoffset() is not None
    second, micro = divmod(ts_ns // 1000, 1_000_000)
    assert parsed.microsecond == micro
    assert parsed.replace(microsecond=0) == datetime.fromtimestamp(second).astimezone()
    assert len(text.split(".")[1]) == 6 + 6  # microseconds, then +HH:MM


def _log_sink(path: Path) -> tuple[PacketLogSink, list[str]]:
    said: list[str] = []
    sink = PacketLogSink(path, False, 0, 2, True, said.append, said.append)
    sink.open()
    return sink, said


def test_a_batch_that_cannot_be_rendered_is_counted_dropped_and_stops_the_log_alone(
        tmp_path: Path) -> None:
    """The lines rendered before are written, the failed batch is counted as dropped (not left
    pending), the warning says why, and the file is closed."""
    batches = counted_batches(SAMPLE, ["192.0.2.1", "2001:db8::1"])
    sink, said = _log_sink(tmp_path / "p.jsonl")
    sink.start()
    sink.packets(batches[0])
    sink.wake()
    deadline = time.monotonic() + 10
    while sink.written < len(batches[0]) and time.monotonic() < deadline:
        time.sleep(0.01)

    def fails(*_: object) -> Lines:
        raise RuntimeError("render failed")

    sink._render = fails
    sink.packets(batches[1])
    sink.stop()
    assert sink.failed == "RuntimeError: render failed"
    assert (sink.written, sink.dropped) == (len(batches[0]), len(batches[1]))
    assert sink.pending() == 0
    assert any("render failed" in line for line in said)
    assert (tmp_path / "p.jsonl").read_bytes().count(b"\n") == len(batches[0])


def test_an_empty_batch_is_no_line_and_no_hang(tmp_path: Path) -> None:
    batch = counted_batches(SAMPLE, ["192.0.2.1", "2001:db8::1"])[0]
    none = np.zeros(0, dtype=np.int64)
    empty = dataclasses.replace(
        batch, frames=gather_frames(batch.frames, none),
        **{f.name: getattr(batch, f.name)[:0] for f in dataclasses.fields(batch)
           if f.name != "frames"})
    sink, _ = _log_sink(tmp_path / "p.jsonl")
    sink.start()
    sink.packets(empty)
    sink.packets(batch)
    sink.stop()
    assert sink.written == len(batch) and sink.pending() == 0
