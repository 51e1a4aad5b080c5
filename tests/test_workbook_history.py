"""`excel --history` and `report --history` through the real command: a history imported from a
CSV, ranges that pick its 5-second, 1-minute and 1-hour rows, the workbooks' totals per client
and class equal to the CSV's over the same range at every resolution, the note that says which
rows, and one-line errors."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

from tests.conftest import run_cli
from tests.excel_ooxml import audit_problems
from traffic_capture.csvformat import Row, format_rows, header_line
from traffic_capture.excel.from_history import pick
from traffic_capture.history.importer import import_csv
from traffic_capture.queries import Resolution
from traffic_capture.rules import CLASSES

# openpyxl cannot keep slicers and says so; reading is all these tests ask of it.
pytestmark = pytest.mark.filterwarnings("ignore:Slicer List extension:UserWarning")
DAY = "2026-03-02"
HOURS = 10
CLIENTS = ("10.0.0.2", "10.0.0.10", "192.0.2.7", "2001:db8::5")
CLASS_COLUMNS = [f"{c}_bytes" for c in CLASSES]


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """Ten hours of 5-second windows (4 clients, each direction in 3 windows of 10) as the
    daemon writes them in local time, imported into a history; and the CSV's rows."""
    folder = tmp_path_factory.mktemp("workbook-history")
    start = int(time.mktime(time.strptime(f"{DAY} 00:00:00", "%Y-%m-%d %H:%M:%S")))
    rng = np.random.default_rng(3)
    rows = []
    for window in range(HOURS * 720):
        at = start + 5 * window
        for client in CLIENTS:
            for direction in ("in", "out"):
                if rng.random() < 0.3:
                    counts = (rng.integers(0, 5000, 5) * (rng.random(5) < 0.7)).tolist()
                    rows.append(Row(at, at + 5, client, direction, sum(counts), *counts))
    csv = folder / "traffic.csv"
    csv.write_text(header_line(",") + format_rows(rows, ","), encoding="utf-8")
    import_csv(folder / "history", [csv])
    frame = pd.read_csv(csv, parse_dates=["window_start", "window_end"])
    return folder / "history", frame


def csv_sums(frame: pd.DataFrame, start: str, end: str) -> pd.DataFrame:
    """The CSV's bytes per client and direction, each class and the total, over [start, end)."""
    kept = frame[(frame["window_start"] >= pd.Timestamp(start))
                 & (frame["window_start"] < pd.Timestamp(end))]
    return kept.groupby(["client_ip", "direction"])[["total_bytes", *CLASS_COLUMNS]].sum()


def sheet_frame(ws) -> pd.DataFrame:
    values = list(ws.values)
    return pd.DataFrame(values[1:], columns=values[0])


def build(kind: str, store: Path, out: Path, *args: str) -> str:
    """Run `traffic-capture excel|report --history STORE ARGS`; its stderr."""
    done = run_cli([kind, "--history", str(store), "--out", str(out), *args], timeout=180)
    assert done.returncode == 0, done.stderr
    assert out.exists() and "Traceback" not in done.stderr
    return done.stderr


RANGES = [  # (--from, --to, the resolution auto picks, its text)
    (f"{DAY} 09:00", f"{DAY} 09:15", 5, "5-second"),
    (f"{DAY} 06:00", f"{DAY} 09:00", 60, "1-minute"),
    (f"{DAY} 01:00", f"{DAY} 09:00", 3600, "1-hour"),
]


@pytest.mark.parametrize(("start", "end", "seconds", "text"), RANGES)
def test_the_dashboard_of_a_range_is_built_from_the_rollup_that_fits_it(
        store, tmp_path: Path, start: str, end: str, seconds: int, text: str) -> None:
    path, frame = store
    out = tmp_path / "d.xlsx"
    stderr = build("excel", path, out, "--from", start, "--to", end)
    said = f"its {text} rows: {start}:00 to {end}:00 local time"
    assert said in stderr and len(stderr.strip().splitlines()) == 1
    wb = openpyxl.load_workbook(out)
    assert said in wb["Dashboard"]["A2"].value
    data = sheet_frame(wb["Data"])
    steps = (data["window_end"] - data["window_start"]).dt.total_seconds()
    assert set(steps) == {seconds}
    expected = csv_sums(frame, start, end)
    got = data.groupby(["client_ip", "direction"])[["total_bytes", *CLASS_COLUMNS]].sum()
    pd.testing.assert_frame_equal(got.sort_index(), expected.sort_index(), check_dtype=False)
    assert audit_problems(out) == []


@pytest.mark.parametrize(("start", "end", "seconds", "text"), RANGES)
def test_the_report_of_a_range_totals_the_csvs_bytes(store, tmp_path: Path, start: str,
                                                      end: str, seconds: int,
                                                      text: str) -> None:
    path, frame = store
    out = tmp_path / "r.xlsx"
    stderr = build("report", path, out, "--from", start, "--to", end)
    assert f"its {text} rows: {start}:00 to {end}:00" in stderr
    summary = openpyxl.load_workbook(out)["Summary"]
    assert f"its {text} rows" in summary["A3"].value
    expected = csv_sums(frame, start, end)
    by_direction = expected.groupby(level="direction").sum()
    for row, column in enumerate(CLASS_COLUMNS, start=10):  # bytes per protocol, in and out
        assert [summary.cell(row, c).value for c in (2, 3)] == \
            [by_direction.loc["in", column], by_direction.loc["out", column]]
    by_client = expected["total_bytes"].unstack(fill_value=0)
    top = {summary.cell(row, 1).value: (summary.cell(row, 2).value, summary.cell(row, 3).value)
           for row in range(18, 18 + len(CLIENTS))}
    assert top == {client: (by_client.loc[client, "in"], by_client.loc[client, "out"])
                   for client in CLIENTS}


def test_every_class_is_conserved_at_every_resolution(store, tmp_path: Path) -> None:
    """The same eight hours grouped by 5 s, minute and hour read the 5-second, 1-minute and
    1-hour rows: the same bytes, per client, direction and class, as the CSV."""
    path, frame = store
    start, end = f"{DAY} 01:00", f"{DAY} 09:00"
    expected = csv_sums(frame, start, end).sort_index()
    for group, text in (("5s", "5-second"), ("minute", "1-minute"), ("hour", "1-hour")):
        out = tmp_path / f"{group}.xlsx"
        stderr = build("excel", path, out, "--from", start, "--to", end, "--group", group)
        assert f"its {text} rows" in stderr
        data = sheet_frame(openpyxl.load_workbook(out, read_only=True)["Data"])
        got = data.groupby(["client_ip", "direction"])[["total_bytes", *CLASS_COLUMNS]].sum()
        pd.testing.assert_frame_equal(got.sort_index(), expected, check_dtype=False)


def test_without_a_range_the_whole_of_a_young_history_and_spans_back_from_its_end(
        store, tmp_path: Path) -> None:
    """The default week reaches before this history began: it shows all of it (ten hours, in
    hours); -15m is the last quarter of an hour it holds, in 5-second rows."""
    path, frame = store
    whole = build("excel", path, tmp_path / "w.xlsx")
    assert f"its 1-hour rows: {DAY} 00:00:00 to {DAY} 10:00:00 local time (10 windows)" in whole
    last = build("report", path, tmp_path / "l.xlsx", "--from", "-15m")
    assert f"its 5-second rows: {DAY} 09:45:00 to {DAY} 10:00:00" in last
    summary = openpyxl.load_workbook(tmp_path / "l.xlsx")["Summary"]
    assert summary["B4"].value == csv_sums(frame, f"{DAY} 09:45", f"{DAY} 10:00")[
        "total_bytes"].sum()


def test_a_csv_cut_to_a_range(store, tmp_path: Path) -> None:
    """--from and --to on a CSV keep the windows in the range (spans back from its end)."""
    path, frame = store
    csv = path.parent / "traffic.csv"
    out = tmp_path / "c.xlsx"
    done = run_cli(["excel", "--csv", str(csv), "--out", str(out), "--from", "-2h", "--to",
                    "-1h"], timeout=180)
    assert done.returncode == 0, done.stderr
    data = sheet_frame(openpyxl.load_workbook(out, read_only=True)["Data"])
    assert data["total_bytes"].sum() == csv_sums(frame, f"{DAY} 08:00", f"{DAY} 09:00")[
        "total_bytes"].sum()


@pytest.mark.parametrize(("command", "args", "says"), [
    ("excel", ["--csv", "traffic.csv", "--history", "STORE"], "not allowed with"),
    ("report", ["--history", "STORE", "--from", "yesterday"], "is not a time"),
    ("excel", ["--history", "STORE", "--from", f"{DAY} 03:00", "--to", f"{DAY} 02:00"],
     "is not before"),
    ("report", ["--history", "STORE", "--from", "-1h", "--to", f"{DAY} 02:00"],
     "is not before"),
    ("excel", ["--history", "STORE", "--link"], "cannot with --history"),
    ("report", ["--utc"], "--utc goes with --history"),
])
def test_usage_errors_are_one_line_exit_2(store, tmp_path: Path, command: str,
                                         args: list[str], says: str) -> None:
    out = tmp_path / "x.xlsx"
    args = [str(store[0]) if a == "STORE" else a for a in args]
    done = run_cli([command, *args, "--out", str(out)], cwd=tmp_path)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and says in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()


@pytest.mark.parametrize(("what", "says"), [
    ("missing", "no such folder"),
    ("file", "is a file, not a history folder"),
    ("other", "not a traffic-capture history"),
    ("newer", "written by a newer traffic-capture"),
    ("empty range", "no rows from 2026-03-01 00:00:00 to 2026-03-01 12:00:00; it holds"),
])
@pytest.mark.parametrize("command", ["excel", "report"])
def test_a_store_or_range_that_cannot_be_read_is_one_line_exit_1(
        store, tmp_path: Path, command: str, what: str, says: str) -> None:
    path = tmp_path / "history"
    args = []
    if what == "file":
        path.write_text("window_start\n")
    elif what == "other":
        path.mkdir()
        (path / "notes.txt").write_text("mine\n")
    elif what == "newer":
        path.mkdir()
        (path / "traffic-history.v99").touch()
    elif what == "empty range":
        path = store[0]
        args = ["--from", "2026-03-01", "--to", "2026-03-01 12:00"]
    out = tmp_path / "x.xlsx"
    done = run_cli([command, "--history", str(path), "--out", str(out), *args])
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and says in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()


H, D = 3600, 86400
YOUNG = (Resolution(5, 1000 * H + 27 * 60, 1002 * H),  # begun at 13:27, at 15:00 now
         Resolution(60, 1000 * H + 27 * 60, 1002 * H),
         Resolution(H, 1000 * H, 1002 * H))
OLD = (Resolution(5, 100 * D, 107 * D),  # the default keep: 5 s a week, 1 min 90 days
       Resolution(60, 17 * D, 107 * D),
       Resolution(H, 0, 107 * D))


@pytest.mark.parametrize(("held", "start", "end", "group", "seconds", "unit", "first"), [
    # The default week of a young history reaches before it began: the minute bars start at
    # 13:27, where the minute rows do, not at 13:00 in hourly rows.
    (YOUNG, 1002 * H - 7 * D, 1002 * H, "auto", 60, "minute", 1000 * H + 27 * 60),
    (YOUNG, 1001 * H, 1001 * H + 900, "auto", 5, "5s", 1001 * H),
    (YOUNG, 1001 * H, 1002 * H, "minute", 60, "minute", 1001 * H),
    (OLD, 100 * D, 107 * D, "auto", H, "hour", 100 * D),  # a week: hours, from hourly rows
    (OLD, 77 * D, 107 * D, "auto", H, "day", 77 * D),  # a month: days, from hourly rows
    (OLD, 50 * D, 51 * D, "minute", 60, "minute", 50 * D),
    # Minutes asked from before the minute rows begin: the hourly rows reach back, per hour.
    (OLD, 10 * D, 11 * D, "minute", H, "hour", 10 * D),
])
def test_the_unit_then_the_coarsest_rows_that_fit_it(held: tuple[Resolution, ...], start: int,
                                                      end: int, group: str, seconds: int,
                                                      unit: str, first: int) -> None:
    chosen = pick(held, start, end, group)
    assert (chosen.resolution.seconds, chosen.group, chosen.when.start_s) == \
        (seconds, unit, first)
    assert chosen.regrouped == (group != "auto" and unit != group)
