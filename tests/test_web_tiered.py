"""The web's tiered reader (web/tiered.py) over a real MemoryStore and a real HistoryReader
(DuckDB, Parquet parts on disk): every window counted once, from whichever store holds it, at
every resolution; the answers' `resolution`; services from the memory only; and the same
totals when the history flushes in the middle of a call."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("duckdb")

from tests.history_child import CLIENTS, START, history_rows  # noqa: E402
from traffic_capture.history.reader import HistoryReader  # noqa: E402
from traffic_capture.history.writer import HistoryWriter  # noqa: E402
from traffic_capture.queries import (  # noqa: E402
    ClientTotals,
    Coverage,
    Resolution,
    ServiceTotals,
    TimeRange,
    WindowRows,
)
from traffic_capture.web import answers  # noqa: E402
from traffic_capture.web.memory_store import MemoryStore, ServiceSums  # noqa: E402
from traffic_capture.web.stored_history import StoredHistory  # noqa: E402
from traffic_capture.web.tiered import TieredReader, rolled_up  # noqa: E402

H = 3600
HOURS = 3
WINDOWS = HOURS * H // 5  # window w starts at START + 5 w (history_child's rows)


def write_history(path: Path, windows: Iterable[int]) -> HistoryWriter:
    writer = HistoryWriter(path, "5s=7d,1m=90d,1h=forever", "test", flush_seconds=0.0,
                           merge_flushes=3, grace_s=0, delete_after_s=0.0)
    for window in windows:
        writer.add_window(*history_rows(window))
    writer.flush(force=True, merges=None)
    return writer


def memory_of(windows: Iterable[int], services: bool = True) -> MemoryStore:
    store = MemoryStore(5, 10**7, services=services)
    for window in windows:
        start, end, clients, inbound, counts = history_rows(window)
        store.add_window(start, end, clients, inbound, counts, ServiceSums(
            ["192.0.2.1"], np.array([True]), np.array([1], dtype=np.int16),
            np.array([window + 1], dtype=np.int64)) if services else None)
    return store


def expected(windows: Iterable[int], when: TimeRange, step: int = 5) -> dict[str, np.ndarray]:
    """Each client's (2, classes) bytes over the windows of `step` overlapping `when`."""
    totals = {client: np.zeros((2, 5), dtype=np.int64) for client in CLIENTS}
    for window in windows:
        start, _, clients, inbound, counts = history_rows(window)
        bucket = start // step * step
        if bucket + step > when.start_s and bucket < when.end_s:
            for client, way, row in zip(clients, inbound, counts, strict=True):
                totals[client][0 if way else 1] += row
    return totals


def as_dict(totals: ClientTotals) -> dict[str, np.ndarray]:
    found = {client: np.zeros((2, 5), dtype=np.int64) for client in CLIENTS}
    for client, sums in zip(totals.clients, totals.sums, strict=True):
        found[client] = found[client] + sums
    return found


def same(found: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> bool:
    return all(found[client].tolist() == want[client].tolist() for client in CLIENTS)


RANGES = [TimeRange(START, START + HOURS * H),  # everything, aligned to the hour
          TimeRange(START + H, START + 2 * H),
          TimeRange(START + 600, START + HOURS * H - 600),  # aligned to the minute
          TimeRange(START + 2 * H - 60, START + HOURS * H)]


# (history holds windows [0, flushed), memory holds [memory_from, memory_to)): a daemon whose
# history lags its memory by a flush (mid-minute, on the minute, on the hour), one whose
# history holds nothing yet, and `serve --history` whose memory lags the history.
@pytest.mark.parametrize(("flushed", "memory_from", "memory_to"), [
    (WINDOWS - 7, WINDOWS - 720, WINDOWS),
    (WINDOWS - 12, WINDOWS - 720, WINDOWS),
    (2 * 720, 720 + 100, WINDOWS),
    (0, WINDOWS - 720, WINDOWS),
    (WINDOWS, WINDOWS - 720, WINDOWS - 30),
])
def test_every_window_once_at_every_resolution(tmp_path: Path, flushed: int, memory_from: int,
                                               memory_to: int) -> None:
    """The union of what both hold, each window once: at 5 s, 1 min and 1 h over ranges
    aligned to the minute, the same client totals (bytes conserved), and the drill-down's
    rows summing to them step by step."""
    if flushed:
        write_history(tmp_path / "h", range(flushed)).close()
    held = set(range(flushed)) | set(range(memory_from, memory_to))
    tiered = TieredReader(memory_of(range(memory_from, memory_to)),
                          StoredHistory(tmp_path / "h"))
    for when in RANGES:
        for step in (5, 60, H):
            if step > 5 and not flushed:
                continue  # no coarse step held
            want = expected(held, when, step)
            totals = tiered.client_totals(when, step)
            assert totals.resolution == step
            assert same(as_dict(totals), want), (when, step)
            if when.start_s % step == 0 and when.end_s % step == 0:  # bytes conserved
                assert same(as_dict(totals), expected(held, when, 5)), (when, step)
            rows = tiered.window_rows(when, step, client="192.0.2.2")
            assert set(rows.clients) <= {"192.0.2.2"}
            assert rows.counts.sum(axis=0).tolist() == want["192.0.2.2"].sum(axis=0).tolist()
            assert (np.diff(rows.starts) > 0).all() and (rows.starts % step == 0).all()
            steps_held = {(w * 5 + START) // step for w in held
                          if (START + 5 * w) // step * step + step > when.start_s
                          and (START + 5 * w) // step * step < when.end_s}
            assert len(rows.starts) == len(steps_held)
            assert tiered.coverage(when, step).windows == len(steps_held) or step == 5


def test_the_answers_say_the_resolution_they_picked(tmp_path: Path) -> None:
    """A day held (5 s for its last hour in memory, the history for all of it): the last
    hour answers at 5 s, the day at 1 min, from/to over the first hour at 5 s; the totals
    are the same wherever they came from."""
    day = 86400 // 5
    write_history(tmp_path / "h", range(0, day, 6)).close()  # a window every 30 s
    memory = memory_of(range(day - 720, day, 6))
    tiered = TieredReader(memory, StoredHistory(tmp_path / "h"))
    held = set(range(0, day, 6))
    assert [r.seconds for r in tiered.resolutions()] == [5, 60, H]
    assert answers.newest_end(tiered) == START + 5 * (day - 6) + 5
    for when, resolution in ((answers.last(tiered, H), 5), (TimeRange(START, START + 86400), 60),
                             (answers.last(tiered, 86400 - 60), 60),
                             (TimeRange(START, START + H), 5)):
        found = answers.clients(tiered, when, 10)
        assert found["resolution"] == resolution
        want = expected(held, when, resolution)
        assert {c["ip"]: c["total"] for c in found["clients"]} == {
            client: int(sums.sum()) for client, sums in want.items() if sums.sum()}
        drill = answers.client(tiered, "2001:db8::7", when)
        assert drill is not None and drill["resolution"] == resolution
        assert all(w["end"] - w["start"] == resolution for w in drill["history"])
        assert drill["total"] == int(want["2001:db8::7"].sum())
        assert answers.protocols(tiered, when)["resolution"] == resolution


def test_services_only_where_the_memory_holds_the_whole_range(tmp_path: Path) -> None:
    write_history(tmp_path / "h", range(WINDOWS - 6)).close()
    memory = memory_of(range(WINDOWS - 720, WINDOWS))
    tiered = TieredReader(memory, StoredHistory(tmp_path / "h"))
    recent = answers.last(tiered, 600)
    found = tiered.service_totals(recent)
    assert isinstance(found, ServiceTotals)
    assert found.bytes_in.tolist() == memory.service_totals(recent).bytes_in.tolist()
    assert tiered.service_totals(answers.last(tiered, 2 * H)) is None
    assert answers.services(tiered, answers.last(tiered, 2 * H))["available"] is False
    # Without a history yet, the memory's own answer (a CSV's: none).
    assert TieredReader(memory, StoredHistory(tmp_path / "none")).service_totals(
        recent) is not None
    assert TieredReader(memory_of(range(5), services=False),
                        StoredHistory(tmp_path / "none")).service_totals(recent) is None


def test_a_store_still_to_come_answers_empty_then_reads(tmp_path: Path) -> None:
    path = tmp_path / "later"
    now = [0.0]
    stored = StoredHistory(path, clock=lambda: now[0])
    stored.check()
    tiered = TieredReader(memory_of([]), stored)
    assert [r.seconds for r in tiered.resolutions()] == [5]
    assert answers.clients(tiered, answers.last(tiered, 600), 5)["clients"] == []
    assert stored.summary() == {"path": str(path), "exists": False, "resolutions": []}
    path.mkdir()
    (path / "writer.lock").touch()  # a writer that has only just begun
    assert tiered.client_totals(TimeRange(START, START + H), 5).coverage == Coverage(0)
    write_history(path, range(720)).close()
    # What it holds is looked up once a second: until then, as it was (empty)...
    assert tiered.client_totals(TimeRange(START, START + H), 60).coverage.windows == 0
    now[0] += 1
    assert tiered.client_totals(TimeRange(START, START + H), 60).coverage.windows == 60
    summary = stored.summary()
    assert summary["exists"] and [r["resolution"] for r in summary["resolutions"]] == [5, 60, H]
    assert summary["resolutions"][0]["from"] == START


class FlushingHistory:
    """The real history, with its writer flushing the next windows right after the tiered
    reader has looked at what each store holds: the race between a call and a flush."""

    def __init__(self, reader: HistoryReader, writer: HistoryWriter, windows: range) -> None:
        self.reader, self.writer, self.windows = reader, writer, iter(windows)

    def resolutions(self) -> tuple[Resolution, ...]:
        held = self.reader.resolutions()
        for window in self.windows:
            self.writer.add_window(*history_rows(window))
        self.writer.flush(force=True, merges=None)
        return held

    def coverage(self, when: TimeRange, resolution: int) -> Coverage:
        return self.reader.coverage(when, resolution)

    def client_totals(self, when: TimeRange, resolution: int) -> ClientTotals:
        return self.reader.client_totals(when, resolution)

    def window_rows(self, when: TimeRange, resolution: int, client: str | None = None,
                    last_windows: int | None = None) -> WindowRows:
        return self.reader.window_rows(when, resolution, client, last_windows)

    def service_totals(self, when: TimeRange, client: str | None = None) -> None:
        return None


@pytest.mark.parametrize("step", [5, 60, H])
def test_a_flush_during_a_call_counts_nothing_twice(tmp_path: Path, step: int) -> None:
    """The memory has every window (a daemon's); the history had all but the last 40 and
    flushes 30 of them while the call runs: each window is still counted once."""
    writer = write_history(tmp_path / "h", range(WINDOWS - 40))
    try:
        history = FlushingHistory(HistoryReader(tmp_path / "h"), writer,
                                  range(WINDOWS - 40, WINDOWS - 10))
        tiered = TieredReader(memory_of(range(WINDOWS - 720, WINDOWS)), history)
        when = TimeRange(START, START + HOURS * H)
        assert same(as_dict(tiered.client_totals(when, step)),
                    expected(range(WINDOWS), when))
    finally:
        writer.close()


def test_rolled_up_sums_rows_into_steps() -> None:
    memory = memory_of(range(30))
    rows = memory.window_rows(TimeRange(START, START + 150), 5)
    minutes = rolled_up(rows, 60)
    assert minutes.starts.tolist() == [START, START + 60, START + 120]
    assert minutes.ends.tolist() == [START + 60, START + 120, START + 180]
    assert minutes.row_bounds.tolist() == [0, 4, 8, 12]
    assert list(minutes.clients[:4]) == CLIENTS
    first_minute = sum(history_rows(w)[4] for w in range(12))
    assert minutes.counts[:4].tolist() == first_minute.tolist()
    assert minutes.counts.sum() == rows.counts.sum()
