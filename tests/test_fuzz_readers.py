"""Mutation fuzzing of the capture-file readers (hypothesis; atheris is not needed for this
depth): whatever bytes a pcap, pcapng or gzip file holds, reading it through the real
FileSource and pipeline ends either in rows and at most a damage warning, or in one clear
TrafficCaptureError (not a capture file, an unsupported link type). Never another exception.

`TRAFFIC_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz_readers.py` runs it longer.
"""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.utils import wrpcap

from tests.frames import IP, SERVER4, UDP, Ether, Raw, feed_file
from tests.pcapng_builder import mixed_file
from traffic_capture.csvformat import Row
from traffic_capture.errors import TrafficCaptureError
from traffic_capture.pipeline import Pipeline
from traffic_capture.servers import ServerSet, parse_server

EXAMPLES = int(os.environ.get("TRAFFIC_FUZZ_EXAMPLES", "150"))
SERVERS = ServerSet([parse_server(SERVER4), parse_server("2001:db8::1")])


def _pcap() -> bytes:
    packets = []
    for i in range(40):
        packet = (Ether() / IP(src="198.51.100.7", dst=SERVER4) / UDP(dport=53)
                  / Raw(b"q" * (i * 7 % 90)))
        packet.time = 1_700_000_000 + i * 0.3
        packets.append(packet)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "base.pcap"
        wrpcap(str(path), packets)
        return path.read_bytes()


BASES = {"pcap": _pcap(), "pcapng": mixed_file(seed=3, packets=60)}
BASES["pcap.gz"] = gzip.compress(BASES["pcap"])
BASES["pcapng.gz"] = gzip.compress(BASES["pcapng"])


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(sorted(BASES)))
    data = bytearray(BASES[kind])
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data) - 1))
        if draw(st.booleans()):
            data[at] = draw(st.integers(0, 255))  # one byte changed
        else:  # a 32-bit field set to an edge value: lengths, types, times
            value = draw(st.sampled_from([0, 1, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]))
            data[at:at + 4] = value.to_bytes(4, "little")
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]  # cut short too
    return kind, bytes(data)


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated())
def test_no_mutated_capture_file_raises_anything_but_a_clear_error(case: tuple[str, bytes]
                                                                  ) -> None:
    kind, data = case
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz.{kind}"
        path.write_bytes(data)
        rows: list[Row] = []
        pipeline = Pipeline(SERVERS, 5, lambda window: rows.extend(window.rows()))
        try:
            feed_file(pipeline, path)
        except TrafficCaptureError as error:
            assert "\n" not in str(error)  # one line for the user
            return
        # Whatever was read is in the rows, byte for byte, and no packet is counted twice.
        counters = pipeline.counters
        assert sum(row.total_bytes for row in rows) == counters.bytes_counted
        assert counters.packets_counted + counters.packets_malformed <= counters.packets_seen
