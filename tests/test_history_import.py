"""`history import`: CSVs in every delimiter, a rotated series, local or UTC times, twice
without doubling, over what the daemon already wrote without doubling, and refusals that
leave the store as it was."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import SAMPLE
from tests.history_child import START, history_rows, prefix_sums
from traffic_capture.csvformat import Row, format_rows, header_line
from traffic_capture.excel.read import read_traffic
from traffic_capture.history.importer import ImportRefused, import_csv
from traffic_capture.history.reader import HistoryReader
from traffic_capture.history.writer import HistoryWriter
from traffic_capture.queries import TimeRange

EVERYTHING = TimeRange(0, 1 << 40)
H = 3600


def csv_rows(first: int, windows: int, shift: int = 0) -> list[Row]:
    """history_rows' windows as the CSV has them (`shift` seconds later)."""
    rows = []
    for number in range(first, first + windows):
        start, end, clients, inbound, counts = history_rows(number)
        rows += [Row(start + shift, end + shift, client, "in" if way else "out",
                     int(c.sum()), *c.tolist())
                 for client, way, c in zip(clients, inbound, counts, strict=True)]
    return rows


def write_csv(path: Path, rows: list[Row], delimiter: str = ",", utc: bool = False) -> Path:
    path.write_text(header_line(delimiter) + format_rows(rows, delimiter, utc),
                    encoding="utf-8")
    return path


def store_files(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_size for p in sorted(path.rglob("*"))
            if p.is_file() and p.name != "writer.lock"}


def totals(path: Path, resolution: int) -> list[int]:
    return HistoryReader(path).client_totals(EVERYTHING, resolution).sums.sum(
        axis=(0, 1)).tolist()


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_a_csv_in_any_delimiter_imported_twice_counts_once(tmp_path: Path,
                                                           delimiter: str) -> None:
    csv = write_csv(tmp_path / "traffic.csv", csv_rows(0, 900), delimiter, utc=True)
    store = tmp_path / "history"
    result = import_csv(store, [csv], utc=True)
    assert result.rows == 3600 and result.notes == [(csv, "3,600 rows")]
    for resolution in (5, 60, H):
        assert totals(store, resolution) == prefix_sums(900).tolist()
    again = import_csv(store, [csv], utc=True)
    assert again.rows == 0 and again.notes == [(csv, "already imported")]
    assert totals(store, 60) == prefix_sums(900).tolist()
    other = "|" if delimiter != "|" else ","
    copy = write_csv(tmp_path / "copy.csv", csv_rows(0, 900), other, utc=True)
    assert import_csv(store, [copy], utc=True).held_rows == 3600  # same windows, other bytes
    assert totals(store, H) == prefix_sums(900).tolist()


def test_a_rotated_series_split_inside_a_window(tmp_path: Path) -> None:
    rows = csv_rows(0, 2000)
    first = write_csv(tmp_path / "traffic-1.csv", rows[:4001], utc=True)  # mid-window
    second = write_csv(tmp_path / "traffic-2.csv", rows[4001:], utc=True)
    result = import_csv(tmp_path / "h", [first, second], utc=True)
    assert result.rows == len(rows)
    for resolution in (5, 60, H):
        assert totals(tmp_path / "h", resolution) == prefix_sums(2000).tolist()


def test_the_daemons_own_csv_fills_what_a_kill_lost_without_doubling(tmp_path: Path) -> None:
    """The writer had flushed 700 windows when it died; the CSV holds 1500: importing it
    adds the 800 missing ones only."""
    store = tmp_path / "h"
    with HistoryWriter(store, server_name="box") as writer:
        for number in range(700):
            writer.add_window(*history_rows(number))
    csv = write_csv(tmp_path / "traffic.csv", csv_rows(0, 1500), utc=True)
    result = import_csv(store, [csv], utc=True, server_name="box")
    assert (result.rows, result.held_rows) == (800 * 4, 700 * 4)
    for resolution in (5, 60, H):
        assert totals(store, resolution) == prefix_sums(1500).tolist()


@pytest.fixture
def berlin() -> Iterator[None]:
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is POSIX")
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.mark.usefixtures("berlin")
@pytest.mark.parametrize("utc", [False, True])
def test_local_or_utc_times_across_a_summer_time_change(tmp_path: Path, utc: bool) -> None:
    """Windows across Berlin's 2026-03-29 change (02:00 local becomes 03:00), written in
    local time (or UTC) and imported: the same windows, none merged or split."""
    change = 1_774_746_000
    rows = csv_rows(0, 2 * 720, shift=change - H - START)
    csv = write_csv(tmp_path / "t.csv", rows, ";", utc=utc)
    local_texts = {line.split(";")[0] for line in csv.read_text().splitlines()[1:]}
    assert len(local_texts) == 1440
    import_csv(tmp_path / "h", [csv], utc=utc)
    reader = HistoryReader(tmp_path / "h")
    held = reader.window_rows(EVERYTHING, 5)
    assert sorted(set(held.window_start.tolist())) == sorted({row.window_start for row in rows})
    hours = reader.window_rows(EVERYTHING, H)
    assert sorted(set(hours.window_start.tolist())) == [change - H, change]
    assert reader.client_totals(TimeRange(change, change + H), 5).coverage.windows == 720
    # And back as the Excel commands read the CSV: the same local (or UTC) times.
    pd.testing.assert_frame_equal(reader.rows_frame(EVERYTHING, 5, utc=utc), read_traffic(csv))


def test_files_that_are_not_ours_get_one_line_and_change_nothing(tmp_path: Path) -> None:
    store = tmp_path / "h"
    good = write_csv(tmp_path / "good.csv", csv_rows(0, 100), utc=True)
    import_csv(store, [good], utc=True)
    before = store_files(store)
    bad_header = tmp_path / "other.csv"
    bad_header.write_text("date,host,bytes\n2026-01-01,a,1\n")
    bad_row = write_csv(tmp_path / "bad.csv", csv_rows(200, 10), utc=True)
    lines = bad_row.read_text().splitlines()
    lines[7] = lines[7].replace(",in,", ",sideways,")
    bad_row.write_text("\n".join(lines) + "\n")
    bad_total = write_csv(tmp_path / "total.csv", csv_rows(300, 10), utc=True)
    lines = bad_total.read_text().splitlines()
    parts = lines[3].split(",")
    parts[4] = str(int(parts[4]) + 1)
    lines[3] = ",".join(parts)
    bad_total.write_text("\n".join(lines) + "\n")
    later = write_csv(tmp_path / "later.csv", csv_rows(400, 10), utc=True)
    cases = [
        ([SAMPLE], "binary file, not a traffic-capture CSV"),
        ([later, bad_header], "not a traffic-capture CSV: header is"),
        ([tmp_path / "missing.csv"], "no such file"),
        ([tmp_path], "is a folder"),
        ([bad_row], "line 8: bad direction value 'sideways'"),
        ([bad_total], "line 4: bad total_bytes (not the sum of the classes)"),
    ]
    for files, says in cases:
        with pytest.raises(ImportRefused) as error:
            import_csv(store, files, utc=True)
        assert says in str(error.value) and "\n" not in str(error.value), str(error.value)
        assert store_files(store) == before
    assert totals(store, 5) == prefix_sums(100).tolist()


def test_a_window_of_another_length_is_refused(tmp_path: Path) -> None:
    rows = [Row(START, START + 10, "192.0.2.1", "in", 3, 1, 1, 1, 0, 0)]
    csv = write_csv(tmp_path / "ten.csv", rows, utc=True)
    with pytest.raises(ImportRefused, match="does not fit the 5-second resolution"):
        import_csv(tmp_path / "h", [csv], utc=True)
    assert import_csv(tmp_path / "h10", [csv], utc=True, keep="10s=1d,1h=forever").rows == 1
    assert totals(tmp_path / "h10", H) == [1, 1, 1, 0, 0]
    assert np.array_equal(HistoryReader(tmp_path / "h10").window_rows(
        EVERYTHING, 10).window_start, [START])
