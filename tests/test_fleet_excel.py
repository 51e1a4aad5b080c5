"""`excel --clickhouse` and `report --clickhouse` through the real command, over a chDB store of
three servers (written here, closed, then read by the child): the rollup that fits the range,
a `server` column in the Data table and a slicer on the dashboard when several servers are in,
--server for one (or some), totals per server, client, direction and class equal the rows
inserted at every resolution, workbooks that pass openxml-audit, errors in one line."""

from __future__ import annotations

import re
import time
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
import pytest

from tests.conftest import run_cli
from tests.excel_ooxml import audit_problems
from tests.fleet_store import (
    BYTE_COLUMNS,
    FLEET_CLIENTS,
    FLEET_END,
    FLEET_START,
    GROUP,
    fleet_rows,
    fresh_database,
    needs_module,
    rows_frame,
    write_fleet,
)

# openpyxl cannot keep slicers and says so; reading is all these tests ask of it.
pytestmark = [pytest.mark.xdist_group(GROUP),
              pytest.mark.filterwarnings("ignore:Slicer List extension:UserWarning")]
SERVERS = sorted(FLEET_CLIENTS)
KEYS = ["server", "client_ip", "direction"]


def utc(epoch: int, form: str = "%Y-%m-%d %H:%M") -> str:
    return time.strftime(form, time.gmtime(epoch))


# (--from, --to, the rows auto picks for them, their seconds): a quarter of an hour, three
# hours, eight days, all whole hours but the first so every resolution holds the same bytes.
RANGES = [(FLEET_END - 900, FLEET_END, "5-second", 5),
          (FLEET_END - 3 * 3600, FLEET_END, "1-minute", 60),
          (FLEET_END - 8 * 86400, FLEET_END, "1-hour", 3600)]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, pd.DataFrame]:
    needs_module("chdb")
    needs_module("clickhouse_connect")
    rows = fleet_rows(seed=9)
    return write_fleet(tmp_path_factory.mktemp("fleet-excel"), fresh_database("excel"),
                       rows), rows_frame(rows)


def build(kind: str, fleet_url: str, out: Path, *args: str) -> str:
    """`traffic-capture excel|report --clickhouse URL --utc ARGS`; its stderr."""
    done = run_cli([kind, "--clickhouse", fleet_url, "--utc", "--out", str(out), *args],
                   timeout=180)
    assert done.returncode == 0, done.stderr
    assert out.exists() and "Traceback" not in done.stderr
    return done.stderr


def sheet_frame(ws: Any, header_row: int = 1) -> pd.DataFrame:
    """A sheet's table whose header is on `header_row`, as a frame."""
    values = list(ws.iter_rows(min_row=header_row, values_only=True))
    return pd.DataFrame(values[1:], columns=values[0])


def inserted(frame: pd.DataFrame, first: int, last: int, servers: list[str] = SERVERS
             ) -> pd.DataFrame:
    kept = frame[(frame["start"] >= first) & (frame["start"] < last)
                 & frame["server"].isin(servers)]
    return kept.groupby(KEYS)[["total_bytes", *BYTE_COLUMNS]].sum().sort_index()


def slicers(path: Path) -> list[str]:
    """The fields the dashboard's slicers filter, in order."""
    with zipfile.ZipFile(path) as package:
        text = package.read("xl/slicers/slicer1.xml").decode()
    return re.findall(r'<slicer name="([^"]+)"', text)


@pytest.mark.parametrize(("first", "last", "text", "seconds"), RANGES)
def test_the_dashboard_of_the_fleet_has_a_server_column_and_slicer(
        store: tuple[str, pd.DataFrame], tmp_path: Path, first: int, last: int, text: str,
        seconds: int) -> None:
    """The note says the rows read and the windows they cover (a window every 10 minutes:
    from the first in the range to the end of the last's row)."""
    fleet_url, frame = store
    out = tmp_path / "d.xlsx"
    stderr = build("excel", fleet_url, out, "--from", utc(first), "--to", utc(last))
    starts = sorted(set(frame["start"][(frame["start"] >= first) & (frame["start"] < last)]))
    covered = (utc(starts[0] // seconds * seconds, "%Y-%m-%d %H:%M:%S"),
               utc(starts[-1] // seconds * seconds + seconds, "%Y-%m-%d %H:%M:%S"))
    said = (f"(3 servers: db1, web1, web2), its {text} rows: {covered[0]} to {covered[1]} "
            "UTC")
    assert said in stderr and len(stderr.strip().splitlines()) == 1
    wb = openpyxl.load_workbook(out)
    assert said in wb["Dashboard"]["A2"].value
    assert "Rebuild with traffic-capture excel --clickhouse" in wb["Dashboard"]["A2"].value
    assert "Traffic" in wb["Data"].tables
    data = sheet_frame(wb["Data"])
    assert set(data["server"]) == set(SERVERS)
    got = data.groupby(KEYS)[["total_bytes", *BYTE_COLUMNS]].sum().sort_index()
    pd.testing.assert_frame_equal(got, inserted(frame, first, last), check_dtype=False)
    assert slicers(out) == ["server", "client_ip", "direction", "date", "hour"]
    assert audit_problems(out) == []


def test_server_keeps_one_servers_rows_without_the_column(store: tuple[str, pd.DataFrame],
                                                           tmp_path: Path) -> None:
    fleet_url, frame = store
    first, last, _, _ = RANGES[1]
    out = tmp_path / "web2.xlsx"
    stderr = build("excel", fleet_url, out, "--server", "web2", "--from", utc(first), "--to",
                   utc(last))
    assert "(server web2), its 1-minute rows" in stderr
    data = sheet_frame(openpyxl.load_workbook(out)["Data"])
    assert "server" not in data.columns
    assert set(data["client_ip"]) == set(FLEET_CLIENTS["web2"])
    got = data.groupby(KEYS[1:])[["total_bytes", *BYTE_COLUMNS]].sum().sort_index()
    want = inserted(frame, first, last, ["web2"]).droplevel("server")
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert slicers(out) == ["client_ip", "direction", "date", "hour"]
    assert audit_problems(out) == []


def test_every_class_is_conserved_at_every_resolution(store: tuple[str, pd.DataFrame],
                                                      tmp_path: Path) -> None:
    """The same eight hours grouped by 5 s, minute and hour read the fleet's 5-second,
    1-minute and 1-hour rows: the same bytes per server, client, direction and class."""
    fleet_url, frame = store
    first, last = FLEET_END - 8 * 3600, FLEET_END
    want = inserted(frame, first, last)
    for group, text in (("5s", "5-second"), ("minute", "1-minute"), ("hour", "1-hour")):
        out = tmp_path / f"{group}.xlsx"
        stderr = build("excel", fleet_url, out, "--from", utc(first), "--to", utc(last),
                       "--group", group)
        assert f"its {text} rows" in stderr
        data = sheet_frame(openpyxl.load_workbook(out, read_only=True)["Data"])
        got = data.groupby(KEYS)[["total_bytes", *BYTE_COLUMNS]].sum().sort_index()
        pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_the_report_totals_each_server_and_the_fleet(store: tuple[str, pd.DataFrame],
                                                     tmp_path: Path) -> None:
    """Per server: each one's in, out and total; the Summary and the top clients: every
    server's added up (10.0.0.1's bytes on three servers are one client's); the Data sheet's
    server column to filter on."""
    fleet_url, frame = store
    out = tmp_path / "r.xlsx"
    stderr = build("report", fleet_url, out, "--from", utc(FLEET_START), "--to",
                   utc(FLEET_END))
    assert "its 1-hour rows" in stderr
    wb = openpyxl.load_workbook(out)
    want = inserted(frame, FLEET_START, FLEET_END)
    per_server = sheet_frame(wb["Per server"], header_row=2).set_index("server")
    by_server = want["total_bytes"].groupby(level=["server", "direction"]).sum().unstack()
    assert per_server["in_bytes"].to_dict() == by_server["in"].to_dict()
    assert per_server["out_bytes"].to_dict() == by_server["out"].to_dict()
    assert per_server["total_bytes"].to_dict() == want["total_bytes"].groupby(
        level="server").sum().to_dict()
    summary = wb["Summary"]
    assert summary["B4"].value == want["total_bytes"].sum()
    assert "3 servers, added up" in summary["A2"].value
    by_client = want["total_bytes"].groupby(level=["client_ip", "direction"]).sum().unstack(
        fill_value=0)
    clients = len(by_client)
    top = {summary.cell(row, 1).value: (summary.cell(row, 2).value, summary.cell(row, 3).value)
           for row in range(18, 18 + clients)}
    assert top == {client: (by_client.loc[client, "in"], by_client.loc[client, "out"])
                   for client in by_client.index}
    data = sheet_frame(wb["Data"])
    assert data.columns[-1] == "server" and wb["Data"].auto_filter.ref.startswith("A1:K")
    assert data.groupby("server")["total_bytes"].sum().to_dict() == per_server[
        "total_bytes"].to_dict()
    assert audit_problems(out) == []


def test_two_servers_of_three(store: tuple[str, pd.DataFrame], tmp_path: Path) -> None:
    fleet_url, frame = store
    out = tmp_path / "two.xlsx"
    stderr = build("report", fleet_url, out, "--server", "web1", "--server", "db1",
                   "--from", utc(FLEET_END - 86400))
    assert "(2 servers: web1, db1)" in stderr
    wb = openpyxl.load_workbook(out)
    per_server = sheet_frame(wb["Per server"], header_row=2)
    want = inserted(frame, FLEET_END - 86400, FLEET_END, ["web1", "db1"])
    assert dict(zip(per_server["server"], per_server["total_bytes"], strict=True)) == want[
        "total_bytes"].groupby(level="server").sum().to_dict()


@pytest.mark.parametrize(("command", "args", "says"), [
    ("excel", ["--csv", "traffic.csv", "--clickhouse", "URL"], "not allowed with"),
    ("report", ["--history", "h", "--clickhouse", "URL"], "not allowed with"),
    ("excel", ["--clickhouse", "URL", "--link"], "cannot with --clickhouse"),
    ("report", ["--server", "web1"], "--server goes with --clickhouse"),
    ("excel", ["--password-file", "pw"], "--password-file goes with --clickhouse"),
    ("excel", ["--clickhouse", "http://me:pw@ch.example:8123/traffic"], "holds a password"),
])
def test_usage_errors_are_one_line_exit_2(store: tuple[str, pd.DataFrame], tmp_path: Path,
                                         command: str, args: list[str], says: str) -> None:
    out = tmp_path / "x.xlsx"
    done = run_cli([command, *[store[0] if a == "URL" else a for a in args], "--out",
                    str(out)], cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and says in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()


@pytest.mark.parametrize(("what", "says"), [
    ("unknown server", "no server 'web9'; it holds db1, web1, web2"),
    ("no schema", "create the schema first with 'traffic-capture clickhouse init"),
    ("empty range", "no rows from 2020-01-01 00:00:00 to 2020-01-02 00:00:00; it holds"),
])
@pytest.mark.parametrize("command", ["excel", "report"])
def test_a_fleet_or_range_that_cannot_be_read_is_one_line_exit_1(
        store: tuple[str, pd.DataFrame], tmp_path: Path, command: str, what: str,
        says: str) -> None:
    fleet_url, args = store[0], []
    if what == "unknown server":
        args = ["--server", "web9"]
    elif what == "no schema":
        fleet_url = f"chdb://{tmp_path / 'ch'}/traffic"
    else:
        args = ["--from", "2020-01-01", "--to", "2020-01-02"]
    out = tmp_path / "x.xlsx"
    done = run_cli([command, "--clickhouse", fleet_url, "--utc", "--out", str(out), *args])
    assert done.returncode == 1, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and says in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()
