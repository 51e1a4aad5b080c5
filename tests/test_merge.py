"""Several files read as one: the batch merge gives exactly heapq.merge's packet order by
timestamp (ties: the file given first), for files in time order or not, whatever the batches."""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from traffic_capture.frames import Batch, batch_of_frames
from traffic_capture.sources.capture_file import CaptureFile, merged_batches
from traffic_capture.sources.merge import merged_batches as merge_streams

Record = tuple[int, int, bytes]


def records_of(batches: Iterator[Batch]) -> list[Record]:
    return [(int(b.ts_ns[i]), b.linktype, b.frame(i)) for b in batches for i in range(len(b))]


def in_batches(records: list[Record], cuts: list[int]) -> Iterator[Batch]:
    """The records as batches cut at `cuts` and wherever the link type changes."""
    at = 0
    for size in [*cuts, len(records)]:
        part = records[at:at + max(size, 1)]
        at += len(part)
        while part:
            run = 1
            while run < len(part) and part[run][1] == part[0][1]:
                run += 1
            yield batch_of_frames(part[:run])
            part = part[run:]
        if at >= len(records):
            return


files_of_records = st.lists(
    st.tuples(
        st.lists(st.tuples(st.integers(0, 20), st.sampled_from([1, 101]),
                           st.binary(min_size=0, max_size=30)), max_size=40),
        st.lists(st.integers(1, 15), max_size=6),  # batch sizes
        st.booleans(),  # in time order
    ),
    min_size=2, max_size=4)


@settings(max_examples=300, deadline=None)
@given(files_of_records)
def test_the_batch_merge_is_heapq_merge_by_timestamp(files: list) -> None:
    streams, expected_inputs = [], []
    for records, cuts, ordered in files:
        if ordered:
            records = sorted(records, key=lambda r: r[0])
        streams.append(in_batches(records, cuts))
        expected_inputs.append(records)
    expected = list(heapq.merge(*expected_inputs, key=lambda r: r[0]))
    assert records_of(merge_streams(streams)) == expected


def test_rotated_pcap_files_merge_into_the_original_order(tmp_path: Path) -> None:
    """Two real files (the sample cut in alternating runs) through the file readers."""
    sample = Path(__file__).resolve().parents[1] / "samples" / "sample.pcap"
    whole = list(CaptureFile(sample).records())
    rng = random.Random(3)
    halves: list[list[Record]] = [[], []]
    for record in whole:
        halves[rng.random() < 0.5].append(record)
    paths = []
    for k, half in enumerate(halves):
        path = tmp_path / f"part{k}.pcap"
        write_pcap(path, half)
        paths.append(path)
    got = records_of(merged_batches([CaptureFile(p) for p in paths]))
    assert got == list(heapq.merge(*halves, key=lambda r: r[0]))
    assert sorted(got) == sorted(whole)


def write_pcap(path: Path, records: list[Record]) -> None:
    import struct

    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, records[0][1]))
        for ts, _, frame in records:
            out.write(struct.pack("<IIII", ts // 10**9, ts % 10**9 // 1000, len(frame),
                                  len(frame)))
            out.write(frame)
