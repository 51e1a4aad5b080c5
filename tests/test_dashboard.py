"""The pivot dashboard: a consistent package, real pivots/slicers/PivotChart, LibreOffice's totals.

LibreOffice recomputes pivots from the Data table when it loads the file (the cache holds no
records), so its output cells are an independent check of what the pivots are wired to.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from xml.etree import ElementTree as ET

import openpyxl
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.excel_data import traffic_rows, write_traffic_csv
from tests.excel_ooxml import convert, package_problems, read_parts, rels
from traffic_capture.csvformat import COLUMNS
from traffic_capture.excel import command, dashboard
from traffic_capture.excel.ooxml import pivot as px
from traffic_capture.excel.read import read_traffic
from traffic_capture.rules import CLASSES

M = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
X14 = "{http://schemas.microsoft.com/office/spreadsheetml/2009/9/main}"
C = "{http://schemas.openxmlformats.org/drawingml/2006/chart}"
GRAND_TOTAL = ("Total Result", "Grand Total")  # LibreOffice's label, Excel's label
# openpyxl cannot keep slicers and says so; reading is all these tests ask of it.
pytestmark = pytest.mark.filterwarnings("ignore:Slicer List extension:UserWarning")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("dash")
    csv = write_traffic_csv(folder / "traffic.csv", traffic_rows(windows=14))
    out = folder / "traffic_dashboard.xlsx"
    assert dashboard.main(["--csv", str(csv), "--out", str(out)]) == 0
    return out, read_traffic(csv)


@pytest.fixture(scope="module")
def lo_values(built, tmp_path_factory: pytest.TempPathFactory) -> openpyxl.Workbook:
    """The workbook as LibreOffice computed and saved it (one conversion for the module)."""
    out, _ = built
    converted = convert(out, "xlsx", tmp_path_factory.mktemp("lo"))
    return openpyxl.load_workbook(converted, data_only=True)


def test_package_is_consistent(built) -> None:
    out, _ = built
    assert package_problems(out) == []


def test_opens_in_openpyxl_with_typed_data(built) -> None:
    out, df = built
    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == ["Dashboard", "Protocols", "Data"]
    data = wb["Data"]
    assert [c.value for c in data[1]] == list(COLUMNS)
    assert data.max_row == len(df) + 1
    first = data["A2"]
    assert isinstance(first.value, datetime)
    assert first.value == df["window_start"].iloc[0].to_pydatetime()
    assert "ss" in first.number_format
    assert isinstance(data["E2"].value, int) and data["E2"].value == df["total_bytes"].iloc[0]
    assert isinstance(data["C2"].value, str)
    table = data.tables["Traffic"]
    assert table.ref == f"A1:J{len(df) + 1}"


def _xml(parts: dict[str, bytes], name: str) -> ET.Element:
    return ET.fromstring(parts[name])


def test_pivots_share_one_cache_sourced_from_the_table(built) -> None:
    out, df = built
    parts = read_parts(out)
    caches = [n for n in parts if n.startswith("xl/pivotCache/pivotCacheDefinition")]
    pivots = sorted(n for n in parts if re.fullmatch(r"xl/pivotTables/pivotTable\d+\.xml", n))
    assert len(caches) == 1 and len(pivots) == 2
    cache = _xml(parts, caches[0])
    assert cache.get("refreshOnLoad") == "1"
    assert cache.find(f"{M}cacheSource/{M}worksheetSource").get("name") == "Traffic"
    fields = cache.findall(f"{M}cacheFields/{M}cacheField")
    assert [f.get("name") for f in fields] == list(COLUMNS)
    windows = fields[0].find(f"{M}sharedItems")
    assert int(windows.get("count")) == df["window_start"].nunique()
    clients = [s.get("v") for s in fields[2].find(f"{M}sharedItems")]
    assert clients == sorted(df["client_ip"].unique())

    by_name = {_xml(parts, p).get("name"): _xml(parts, p) for p in pivots}
    client, protocol = by_name["ByClient"], by_name["ByProtocol"]
    for pivot in (client, protocol):
        assert [f.get("x") for f in pivot.find(f"{M}rowFields")] == ["0"]
    assert [f.get("x") for f in client.find(f"{M}colFields")] == ["2"]
    assert [(d.get("fld"), d.get("subtotal", "sum")) for d in client.find(f"{M}dataFields")] \
        == [("4", "sum")]
    assert [int(d.get("fld")) for d in protocol.find(f"{M}dataFields")] == \
        [COLUMNS.index(f"{c}_bytes") for c in CLASSES]
    assert [f.get("x") for f in protocol.find(f"{M}colFields")] == ["-2"]
    for p in pivots:
        assert [t for t, _ in rels(parts, p).values()] == ["pivotCacheDefinition"]


def test_stacked_pivot_chart_on_the_protocol_pivot(built) -> None:
    out, _ = built
    parts = read_parts(out)
    charts = [n for n in parts if re.fullmatch(r"xl/charts/chart\d+\.xml", n)]
    assert len(charts) == 1
    chart = _xml(parts, charts[0])
    source = chart.find(f"{C}pivotSource/{C}name").text
    assert source.endswith("]Protocols!ByProtocol")
    bar = chart.find(f".//{C}barChart")
    assert bar.find(f"{C}grouping").get("val") == "stacked"
    assert len(bar.findall(f"{C}ser")) == len(CLASSES)
    assert chart.find(f".//{C}dateAx") is None
    for ser in bar.findall(f"{C}ser"):
        assert ser.find(f"{C}cat/{C}strRef") is not None  # a text axis: one bar per window
    assert chart.find(f"{C}chart/{C}pivotFmts") is not None


def test_two_slicers_each_with_its_own_cache_on_both_pivots(built) -> None:
    out, df = built
    parts = read_parts(out)
    workbook = _xml(parts, "xl/workbook.xml")
    sheet_ids = {s.get("name"): s.get("sheetId") for s in workbook.iter(f"{M}sheet")}
    cache_id = _xml(parts, "xl/pivotCache/pivotCacheDefinition1.xml").find(
        f".//{X14}pivotCacheDefinition").get("pivotCacheId")
    wb_rels = rels(parts, "xl/workbook.xml")
    listed = [wb_rels[e.get("{http://schemas.openxmlformats.org/officeDocument/2006/"
                            "relationships}id")][1] for e in workbook.iter(f"{X14}slicerCache")]
    assert len(listed) == 2
    sources = {}
    for part in listed:
        cache = _xml(parts, part)
        sources[cache.get("sourceName")] = cache
        assert cache.find(f"{X14}data/{X14}tabular").get("pivotCacheId") == cache_id
        assert {(p.get("tabId"), p.get("name")) for p in cache.iter(f"{X14}pivotTable")} == {
            (sheet_ids["Dashboard"], "ByClient"), (sheet_ids["Protocols"], "ByProtocol")}
    assert set(sources) == {"client_ip", "direction"}
    assert len(list(sources["client_ip"].iter(f"{X14}i"))) == df["client_ip"].nunique()
    assert len(list(sources["direction"].iter(f"{X14}i"))) == df["direction"].nunique()
    names = {d.get("name") for d in workbook.iter(f"{M}definedName")}
    assert {c.get("name") for c in sources.values()} <= names

    slicers = _xml(parts, "xl/slicers/slicer1.xml")
    assert sorted(s.get("cache") for s in slicers) == sorted(c.get("name")
                                                             for c in sources.values())
    dashboard_rels = rels(parts, "xl/worksheets/sheet1.xml")
    assert ("slicer", "xl/slicers/slicer1.xml") in dashboard_rels.values()
    drawing = next(t for k, t in dashboard_rels.values() if k == "drawing")
    assert parts[drawing].count(b"<sle:slicer ") == 2


def test_libreoffice_pivot_totals_equal_pandas(built, lo_values) -> None:
    _, df = built
    ws = lo_values["Dashboard"]
    rows = list(ws.iter_rows(values_only=True))
    header = next(r for r in rows if r[0] == "window_start")
    total = next(r for r in rows if r[0] in GRAND_TOTAL)
    per_client = df.groupby("client_ip")["total_bytes"].sum()
    lo_clients = {h: v for h, v in zip(header[1:], total[1:], strict=True)
                  if h is not None and h in per_client.index}
    assert lo_clients == per_client.to_dict()
    assert total[len(per_client) + 1] == df["total_bytes"].sum()
    windows = [r for r in rows if isinstance(r[0], datetime)]
    assert len(windows) == df["window_start"].nunique()

    prot = list(lo_values["Protocols"].iter_rows(values_only=True))
    prot_total = next(r for r in prot if r[0] in GRAND_TOTAL)
    assert list(prot_total[1:6]) == [int(df[f"{c}_bytes"].sum()) for c in CLASSES]


def test_link_makes_the_table_a_query_on_the_csv(tmp_path: Path) -> None:
    csv = write_traffic_csv(tmp_path / "traffic.csv", traffic_rows(windows=3), ";")
    out = tmp_path / "live.xlsx"
    assert dashboard.main(["--csv", str(csv), "--out", str(out), "--link"]) == 0
    assert package_problems(out) == []
    parts = read_parts(out)
    text = _xml(parts, "xl/connections.xml").find(f"{M}connection/{M}textPr")
    assert text.get("sourceFile") == str(csv.resolve())
    assert (text.get("semicolon"), text.get("comma"), text.get("codePage")) == ("1", "0", "65001")
    assert len(text.findall(f"{M}textFields/{M}textField")) == len(COLUMNS)
    table = _xml(parts, "xl/tables/table1.xml")
    assert table.get("tableType") == "queryTable"
    assert [t for t, _ in rels(parts, "xl/tables/table1.xml").values()] == ["queryTable"]
    query = _xml(parts, "xl/queryTables/queryTable1.xml")
    assert query.get("connectionId") == "1"
    openpyxl.load_workbook(out)


def _run_module(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "traffic_capture.excel.dashboard", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_script_defaults_and_missing_csv(tmp_path: Path) -> None:
    failed = _run_module(cwd=tmp_path)
    assert failed.returncode == 1
    assert "traffic.csv" in failed.stderr and "Traceback" not in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1
    write_traffic_csv(tmp_path / "traffic.csv", traffic_rows(windows=2))
    ok = _run_module(cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "traffic_dashboard.xlsx").stat().st_mode & 0o777 == 0o666 & ~umask


def test_rows_past_the_sheet_limit_keep_the_newest(tmp_path: Path, capsys) -> None:
    rows = traffic_rows(windows=4, late_duplicates=0)
    csv = write_traffic_csv(tmp_path / "t.csv", rows)
    df = command.load_for_excel(csv, limit=5)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"has {len(rows):,} rows" in err[0] and "newest 5" in err[0]
    assert df["total_bytes"].tolist() == [int(r[4]) for r in rows[-5:]]


@pytest.mark.parametrize("case", ["empty", "header", "out_dir", "usage"])
def test_bad_input_is_one_line_and_nonzero(tmp_path: Path, capsys, case: str) -> None:
    csv = tmp_path / "traffic.csv"
    args = ["--csv", str(csv), "--out", str(tmp_path / "d.xlsx")]
    expected = 1
    if case == "empty":
        csv.write_text("")
    elif case == "header":
        csv.write_text("time,ip,bytes\n2026-01-01 00:00:00,::1,5\n")
    else:
        write_traffic_csv(csv, traffic_rows(windows=1))
        if case == "out_dir":
            args[-1] = str(tmp_path)
        else:
            args.append("--bogus")
            expected = 2
    assert dashboard.main(args) == expected
    err = capsys.readouterr().err.strip()
    assert err and "Traceback" not in err
    if case != "usage":
        assert len(err.splitlines()) == 1
    assert not (tmp_path / "d.xlsx").exists()
    assert not list(tmp_path.glob(".d-*"))


def test_single_row_csv_builds(tmp_path: Path) -> None:
    csv = write_traffic_csv(tmp_path / "one.csv", traffic_rows(windows=1, late_duplicates=0)[:1])
    out = tmp_path / "one.xlsx"
    assert dashboard.main(["--csv", str(csv), "--out", str(out)]) == 0
    assert package_problems(out) == []
    assert openpyxl.load_workbook(out)["Data"].max_row == 2


names = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12)


@settings(max_examples=30, deadline=None)
@given(clients=st.lists(names, min_size=1, max_size=6, unique=True),
       windows=st.integers(1, 30))
def test_pivot_parts_are_well_formed_and_counted(clients: list[str], windows: int) -> None:
    start = pd.Timestamp("2026-05-01 10:00:00")
    df = pd.DataFrame([
        {"window_start": start + pd.Timedelta(seconds=5 * w),
         "window_end": start + pd.Timedelta(seconds=5 * w + 5),
         "client_ip": c, "direction": "in", "total_bytes": 3, "http_bytes": 1,
         "ftp_bytes": 0, "tcp_bytes": 2, "udp_bytes": 0, "other_bytes": 0}
        for w in range(windows) for c in clients
    ])
    items = px.cache_items(df)
    lay = dashboard.layouts(items)
    cache = ET.fromstring(px.pivot_cache_xml(items, "Traffic", 164))
    shared = cache.findall(f"{M}cacheFields/{M}cacheField")[2].find(f"{M}sharedItems")
    assert [s.get("v") for s in shared] == sorted(clients)
    client = ET.fromstring(px.client_pivot_xml(lay.client, items, 164))
    assert int(client.find(f"{M}rowItems").get("count")) == windows + 1
    assert int(client.find(f"{M}colItems").get("count")) == len(clients) + 1
    assert client.find(f"{M}location").get("ref").endswith(str(dashboard.CLIENT_PIVOT_TOP
                                                               + windows + 2))
    ET.fromstring(px.protocol_pivot_xml(lay.protocol, items, 164))
    slicer = ET.fromstring(px.slicer_cache_xml("client_ip", items, [(1, "ByClient")]))
    assert len(list(slicer.iter(f"{X14}i"))) == len(clients)
