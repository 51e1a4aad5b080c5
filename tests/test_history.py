"""The history engine with the real DuckDB, real files and real child processes: bytes
conserved at every resolution, the Reader contract, one writer, reading while a child writes
and merges, `kill -9`, retention, CSV import."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import REPO, child_env
from tests.history_child import START, history_rows, prefix_sums
from traffic_capture.csvformat import Row, format_rows, header_line
from traffic_capture.excel.read import read_traffic
from traffic_capture.history.layout import list_store
from traffic_capture.history.reader import HistoryReader
from traffic_capture.history.store import HistoryError
from traffic_capture.history.writer import HistoryWriter
from traffic_capture.queries import Reader, TimeRange
from traffic_capture.rules import CLASSES

H = 3600
EVERYTHING = TimeRange(0, 1 << 40)
CHILD = [sys.executable, str(REPO / "tests" / "history_child.py")]


def quick_writer(path: Path, keep: str = "5s=7d,1m=90d,1h=forever", **options: object
                 ) -> HistoryWriter:
    """A writer that merges and deletes at once (the defaults wait minutes)."""
    settings_ = {"flush_seconds": 0.0, "merge_flushes": 3, "grace_s": 0,
                 "delete_after_s": 0.0, **options}
    return HistoryWriter(path, keep, "test", **settings_)  # type: ignore[arg-type]


def sums_of(reader: HistoryReader, resolution: int, when: TimeRange = EVERYTHING
            ) -> np.ndarray:
    return reader.client_totals(when, resolution).sums.sum(axis=(0, 1))


windows = st.lists(st.tuples(
    st.integers(0, 3 * 720),  # window number: three hours and a bit
    st.lists(st.tuples(st.sampled_from(["192.0.2.1", "192.0.2.9", "2001:db8::1", "other"]),
                       st.booleans(), st.lists(st.integers(0, 10**12), min_size=5,
                                               max_size=5)),
             min_size=1, max_size=4),
    st.booleans()),  # flush after it
    min_size=1, max_size=25)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(windows, st.data())
def test_every_class_is_conserved_at_every_resolution(tmp_path_factory: pytest.TempPathFactory,
                                                      given_windows: list, data: st.DataObject
                                                      ) -> None:
    """Windows in any order (late rows: a window given again adds up), flushed and merged at
    random points: over any range aligned to the hour, every class's bytes are the same at
    5 s, 1 min and 1 h, and equal to the rows given."""
    path = tmp_path_factory.mktemp("history")
    given_rows = []
    with quick_writer(path) as writer:
        for number, rows, flush in given_windows:
            start = START + 5 * number
            clients = [client for client, _, _ in rows]
            inbound = np.array([inbound for _, inbound, _ in rows])
            counts = np.array([counts for _, _, counts in rows], dtype=np.int64)
            writer.add_window(start, start + 5, clients, inbound, counts)
            given_rows += [(start, *counts_) for counts_ in counts.tolist()]
            if flush:
                writer.flush(merges=None)
    reader = HistoryReader(path)
    expected = pd.DataFrame(given_rows, columns=["start", *CLASSES])
    for _ in range(3):
        first = data.draw(st.integers(0, 3), "first hour")
        hours = data.draw(st.integers(1, 4), "hours")
        when = TimeRange(START + first * H, START + (first + hours) * H)
        inside = expected[(expected.start >= when.start_s) & (expected.start < when.end_s)]
        want = inside[list(CLASSES)].sum().to_numpy()
        for resolution in (5, 60, H):
            assert sums_of(reader, resolution, when).tolist() == want.tolist()


def test_the_reader_answers_the_contract(tmp_path: Path) -> None:
    """client_totals is a pandas groupby of the same rows; window_rows and rows_frame give
    the CSV's rows (rows_frame as excel reads the CSV); service_totals has no ports."""
    rng = np.random.default_rng(7)
    clients = [f"198.51.100.{n}" for n in range(30)] + ["2001:db8::5", "other"]
    rows = []
    with quick_writer(tmp_path / "h") as writer:
        for window in range(400):
            start = START + 5 * window
            chosen = sorted(rng.choice(len(clients), 6, replace=False))
            names = [clients[n] for n in chosen]
            inbound = rng.random(6) < 0.5
            counts = rng.integers(0, 10**6, (6, 5))
            writer.add_window(start, start + 5, names, inbound, counts)
            rows += [Row(start, start + 5, name, "in" if way else "out", int(c.sum()),
                         *c.tolist()) for name, way, c in zip(names, inbound, counts,
                                                              strict=True)]
            if window % 50 == 49:
                writer.flush(merges=None)
    reader: Reader = HistoryReader(tmp_path / "h")
    frame = pd.DataFrame(rows)
    when = TimeRange(START + 600, START + 1800)
    inside = frame[(frame.window_start >= when.start_s) & (frame.window_start < when.end_s)]
    totals = reader.client_totals(when, 5)
    grouped = inside.groupby(["client_ip", "direction"])[[f"{c}_bytes" for c in CLASSES]].sum()
    for index, client in enumerate(totals.clients):
        for way, direction in enumerate(("in", "out")):
            want = (grouped.loc[(client, direction)].tolist()
                    if (client, direction) in grouped.index else [0] * 5)
            assert totals.sums[index, way].tolist() == want
    assert set(totals.clients) == set(inside.client_ip)
    assert list(totals.sums.sum(axis=(1, 2))) == sorted(totals.sums.sum(axis=(1, 2)),
                                                        reverse=True)
    assert (totals.coverage.windows, totals.coverage.first_start_s,
            totals.coverage.last_end_s) == (
        240, when.start_s, when.end_s)
    assert [r.seconds for r in reader.resolutions()] == [5, 60, H]
    assert reader.resolutions()[0].first_start_s == START
    assert reader.service_totals(when) is None

    last = reader.window_rows(when, 5, last_windows=3)
    assert sorted(set(last.window_start.tolist())) == [when.end_s - 15, when.end_s - 10,
                                                       when.end_s - 5]
    one = reader.window_rows(when, 60, client="2001:db8::5")
    assert set(one.clients) <= {"2001:db8::5"} and (one.window_end - one.window_start
                                                    == 60).all()

    csv = tmp_path / "traffic.csv"
    csv.write_text(header_line(",") + format_rows(
        sorted(rows, key=lambda row: (row.window_start, row.client_ip, row.direction)), ","))
    from_csv = read_traffic(csv)
    from_history = HistoryReader(tmp_path / "h").rows_frame(EVERYTHING, 5)
    pd.testing.assert_frame_equal(from_history, from_csv, check_dtype=True)


def test_one_writer_at_a_time_and_the_lock_dies_with_its_process(tmp_path: Path) -> None:
    path = tmp_path / "h"
    with quick_writer(path), pytest.raises(HistoryError) as error:
        quick_writer(path)
    assert "another process is writing it" in str(error.value)
    assert f"pid {os.getpid()}" in str(error.value) and "\n" not in str(error.value)
    child = subprocess.Popen([*CHILD, str(path), "0", "1000000", "12"],
                             stdout=subprocess.PIPE, text=True, env=child_env())
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    with pytest.raises(HistoryError, match=f"pid {child.pid}"):
        quick_writer(path)
    child.kill()
    child.wait()
    quick_writer(path).close()  # no stale lock


def test_folders_that_are_not_a_history(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(HistoryError, match="is a file, not a history folder"):
        quick_writer(a_file)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(HistoryError, match="not a traffic-capture history"):
        quick_writer(other)
    assert os.listdir(other) == ["notes.txt"]
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / "traffic-history.v2").touch()
    with pytest.raises(HistoryError, match="newer traffic-capture"):
        HistoryReader(newer)
    with pytest.raises(HistoryError, match="no such folder"):
        HistoryReader(tmp_path / "missing")


def test_retention_deletes_whole_parts_past_their_keep(tmp_path: Path) -> None:
    """5-s rows kept 2 hours, minutes 12 hours, hours for ever, over 2 days of windows: the
    old parts go, what is kept still sums to the rows given."""
    path = tmp_path / "h"
    minute_windows = range(0, 2 * 86400 // 5, 12)  # a window a minute, 2 days
    newest = START + 2 * 86400
    with quick_writer(path, "5s=2h,1m=12h,1h=forever", wall_clock=lambda: newest) as writer:
        for number in minute_windows:
            writer.add_window(*history_rows(number))
            if number % 720 == 0:
                writer.flush(merges=None)
    reader = HistoryReader(path)
    held = {r.seconds: r for r in reader.resolutions()}
    assert held[5].first_start_s is not None and held[5].first_start_s >= newest - 3 * H
    # The newest window ends 55 s before `newest`: 12 hours before that falls in the 35th
    # hour, whose part is the oldest kept whole (the day is still open: hourly parts).
    assert held[60].first_start_s == START + 35 * H
    assert held[H].first_start_s == START
    everything = sum((history_rows(n)[4].sum(axis=0) for n in minute_windows),
                     np.zeros(5, dtype=np.int64))
    assert sums_of(reader, H).tolist() == everything.tolist()
    recent = TimeRange(newest - H, newest)
    assert sums_of(reader, 5, recent).tolist() == sums_of(reader, 60, recent).tolist() == \
        sums_of(reader, H, recent).tolist()
    parts = list_store(path).parts
    assert all(part.period.end_s > newest - 3 * H for part in parts if part.level_s == 5)
    assert all(part.period.end_s > newest - 13 * H for part in parts if part.level_s == 60)
    assert any(part.period.end_s <= newest - 86400 for part in parts if part.level_s == H)


def test_reading_while_a_child_writes_and_merges(tmp_path: Path) -> None:
    """A child writes windows, flushes and merges (deleting what merges covered after 0.2
    s); every read meanwhile sees the first K windows exactly, at each resolution: no row
    counted twice or missed, whatever the merges were doing."""
    path = tmp_path / "h"
    child = subprocess.Popen([*CHILD, str(path), "0", "3000", "30"], stdout=subprocess.PIPE,
                             text=True, env=child_env())
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    reader = HistoryReader(path)
    reads = 0
    seen = set()
    try:
        while child.poll() is None or reads == 0:
            for resolution in (5, 60, H):
                totals = reader.client_totals(EVERYTHING, resolution)
                got = totals.sums.sum(axis=(0, 1))
                windows = round(got[0] / prefix_sums(1)[0] * 2) if got.any() else 0
                k = int((np.sqrt(1 + 4 * windows) - 1) / 2)  # windows*(windows+1)/2 -> k
                assert got.tolist() == prefix_sums(k).tolist(), (resolution, k)
                assert k % 30 == 0  # whole flushes only
                seen.add(k)
                reads += 1
    finally:
        child.wait(timeout=120)
    assert child.returncode == 0
    assert len(seen) > 5  # it read many states of the store, not just the end
    assert sums_of(reader, 5).tolist() == prefix_sums(3000).tolist()


def test_kill_9_loses_at_most_the_rows_not_flushed(tmp_path: Path) -> None:
    """A writing child killed at random moments, again and again: the store keeps every
    flush before the kill, stays readable, and the next writer (no stale lock) goes on."""
    path = tmp_path / "h"
    rng = np.random.default_rng(1)
    written = 0
    for _round in range(20):  # the "at least 20 times"
        child = subprocess.Popen([*CHILD, str(path), str(written), "100000", "24"],
                                 stdout=subprocess.PIPE, text=True, env=child_env())
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        flushed = written
        deadline = time.monotonic() + rng.uniform(0.1, 0.6)
        while time.monotonic() < deadline:
            line = child.stdout.readline()
            if line.startswith("flushed"):
                flushed = int(line.split()[1])
        child.send_signal(signal.SIGKILL)
        child.wait()
        for line in child.stdout:
            if line.startswith("flushed"):
                flushed = int(line.split()[1])
        reader = HistoryReader(path)
        for resolution in (5, 60, H):
            assert sums_of(reader, resolution).tolist() == prefix_sums(flushed).tolist()
        assert flushed > written
        written = flushed
    with quick_writer(path) as writer:
        writer.add_window(*history_rows(written))
    assert sums_of(HistoryReader(path), 60).tolist() == prefix_sums(written + 1).tolist()


def test_a_damaged_part_is_named_once_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "h"
    with quick_writer(path) as writer:
        for number in range(3 * 720):
            writer.add_window(*history_rows(number))
            if number % 720 == 719:
                writer.flush(merges=None)
    (victim,) = [p.path for p in list_store(path).parts
                 if p.level_s == 5 and p.period.start_s == START + H]
    victim.write_bytes(victim.read_bytes()[:100])
    warnings: list[str] = []
    reader = HistoryReader(path, warn=warnings.append)
    got = sums_of(reader, 5)
    first_and_last = prefix_sums(3 * 720) - (prefix_sums(1440) - prefix_sums(720))
    assert got.tolist() == first_and_last.tolist()
    sums_of(reader, 5)
    assert len(warnings) == 1 and str(victim) in warnings[0] and "\n" not in warnings[0]
    assert sums_of(reader, H).tolist() == prefix_sums(3 * 720).tolist()


def test_a_failed_flush_keeps_its_rows_for_the_next(tmp_path: Path) -> None:
    """The flush folder cannot be made (here: `incoming` became a file, as a full or broken
    disk would refuse it): the error is the writer's caller's to count, the rows wait, and
    the next flush writes each of them once."""
    path = tmp_path / "h"
    writer = quick_writer(path)
    for number in range(30):
        writer.add_window(*history_rows(number))
    writer.flush()
    (path / "incoming").rename(tmp_path / "aside")
    (path / "incoming").write_text("not a folder")
    for number in range(30, 60):
        writer.add_window(*history_rows(number))
    for _ in range(2):
        with pytest.raises(OSError):
            writer.flush()
        assert writer.buffered_rows == 30 * 4
    (path / "incoming").unlink()
    (tmp_path / "aside").rename(path / "incoming")
    writer.add_window(*history_rows(60))
    writer.close(merges=None)
    for resolution in (5, 60, H):
        assert sums_of(HistoryReader(path), resolution).tolist() == prefix_sums(61).tolist()
    writer = quick_writer(path)
    writer.add_window(*history_rows(61))
    assert writer.discard() == 4 and writer.buffered_rows == 0
    writer.close()
    assert sums_of(HistoryReader(path), 5).tolist() == prefix_sums(61).tolist()
