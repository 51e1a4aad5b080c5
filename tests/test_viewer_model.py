"""The viewer's pure parts: the model (rows kept, per-client sums of the current window, the
filter) and the log follower (partial lines, rotation), without a display."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from traffic_capture.viewer.command import LogFollower, row_of_line
from traffic_capture.viewer.model import ViewModel

CLIENTS = ["192.0.2.2", "192.0.2.23", "2001:db8::2", "198.51.100.7"]

rows = st.lists(st.tuples(st.integers(0, 60_000), st.booleans(), st.sampled_from(CLIENTS),
                          st.integers(20, 1500)), max_size=80)


def as_rows(specs: list) -> list:
    return [(ms / 1000, "in" if inbound else "out", client, "tcp", size, "x")
            for ms, inbound, client, size in sorted(specs)]


@given(rows, st.integers(1, 60), st.integers(1, 50), st.sampled_from(["", "192.0.2.2", "2001"]))
def test_the_model_keeps_the_latest_rows_and_sums_the_current_window(
        specs: list, window: int, max_rows: int, wanted: str) -> None:
    model = ViewModel(window, max_rows=max_rows)
    packets = as_rows(specs)
    for start in range(0, len(packets), 7):  # in batches, as the capture sends them
        before = model.version()
        model.add(packets[start:start + 7])
        assert model.version() != before  # the window redraws for every batch
    unchanged = model.version()
    model.add([])
    assert model.version() == unchanged  # and for nothing new, not
    model.filter_text = wanted
    assert list(model.rows) == packets[-max_rows:]
    assert model.shown_rows() == [r for r in packets[-max_rows:] if wanted in r[2]]
    assert model.received == len(packets)
    if packets:
        current = int(packets[-1][0] // window) * window
        assert model.window_start == current
        expected: dict[str, list[int]] = {}
        for ts, direction, client, _, size, _ in packets:
            if int(ts // window) * window == current and wanted in client:
                sums = expected.setdefault(client, [0, 0, 0])
                sums[0 if direction == "in" else 1] += size
                sums[2] += 1
        got = {client: [s.bytes_in, s.bytes_out, s.packets]
               for client, s in model.shown_clients()}
        assert got == expected
    assert model.title().startswith("traffic-capture view - ")
    assert f"{len(packets):,} packets" in model.title()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 5), st.booleans()), min_size=1, max_size=12),
       st.integers(1, 200))
def test_the_follower_reads_every_line_once_across_partial_writes_and_rotation(
        writes: list, cut: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.jsonl"
        path.write_bytes(b"")
        follower = LogFollower(path)
        seen: list = []
        written: list = []
        serial = 0
        try:
            for count, rotate in writes:
                if rotate:  # what is left of the old file is still read, then the new one
                    os.replace(path, path.with_name("p.jsonl.1"))
                    path.write_bytes(b"")
                text = b""
                for _ in range(count):
                    serial += 1
                    text += json.dumps({"ts": f"2026-01-01T00:00:{serial % 60:02d}.000001+00:00",
                                        "direction": "in", "client": f"198.51.100.{serial % 250}",
                                        "class": "udp", "ip_bytes": serial,
                                        "preview": "a"}).encode() + b"\n"
                    written.append(serial)
                with path.open("ab") as log:  # a line may arrive in two pieces
                    log.write(text[:cut])
                    log.flush()
                    seen += follower.new_rows()
                    log.write(text[cut:])
                seen += follower.new_rows()
            seen += follower.new_rows()
        finally:
            follower.close()
        assert [row[4] for row in seen] == written


def test_a_foreign_line_is_skipped() -> None:
    assert row_of_line(b"not json") is None
    assert row_of_line(b'{"ts": "yesterday"}') is None
    row = row_of_line(b'{"ts": "2026-01-01T00:00:01.5+00:00", "direction": "out", '
                      b'"client": "192.0.2.2", "class": "http", "ip_bytes": 60, "preview": null}')
    assert row == (1767225601.5, "out", "192.0.2.2", "http", 60, "")
