"""The static report: pandas' numbers in openpyxl and after LibreOffice; text time axes."""

from __future__ import annotations

import re
import subprocess
from datetime import datetime
from pathlib import Path
from xml.etree import ElementTree as ET

import openpyxl
import pandas as pd
import pytest

from tests.conftest import REPO
from tests.excel_data import CLIENTS, day_rows, traffic_rows, write_traffic_csv
from tests.excel_ooxml import audit_problems, convert, convert_all, package_problems, read_parts
from tests.requirements import tool
from traffic_capture.csvformat import COLUMNS
from traffic_capture.excel import report
from traffic_capture.excel.read import read_traffic
from traffic_capture.rules import CLASSES

C = "{http://schemas.openxmlformats.org/drawingml/2006/chart}"
LABELS = ["HTTP", "FTP", "TCP", "UDP", "Other"]


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("report")
    csv = write_traffic_csv(folder / "traffic.csv", traffic_rows(windows=15, seed=3), ";")
    out = folder / "traffic_report.xlsx"
    assert report.main(["--csv", str(csv), "--out", str(out)]) == 0
    return out, read_traffic(csv)


@pytest.fixture(scope="session")
def lo_book(built, tmp_path_factory: pytest.TempPathFactory) -> openpyxl.Workbook:
    out, _ = built
    return openpyxl.load_workbook(convert(out, "xlsx", tmp_path_factory.mktemp("lo")),
                                  data_only=True)


def check_numbers(wb: openpyxl.Workbook, df: pd.DataFrame) -> None:
    """The workbook's tables hold pandas' sums, wherever they were opened."""
    summary = list(wb["Summary"].iter_rows(values_only=True))
    top = {}
    for row in summary[summary.index(next(r for r in summary if r[0] == "client_ip")) + 1:]:
        if row[0] is None:
            break
        top[row[0]] = row[1:4]
    inout = df.pivot_table(index="client_ip", columns="direction", values="total_bytes",
                           aggfunc="sum", fill_value=0)
    assert top == {ip: (inout.loc[ip, "in"], inout.loc[ip, "out"], inout.loc[ip].sum())
                   for ip in inout.index}
    totals = [t[2] for t in top.values()]
    assert totals == sorted(totals, reverse=True)

    per_protocol = list(wb["Per protocol"].iter_rows(min_row=report.TABLE_ROW + 1,
                                                     values_only=True))
    assert list(per_protocol[0][:6]) == ["window", *LABELS]
    expected = df.groupby("window_start")[[f"{c}_bytes" for c in CLASSES]].sum()
    got = [(datetime.strptime(r[0], "%Y-%m-%d %H:%M:%S"), *r[1:6]) for r in per_protocol[1:]]
    assert got == [(t.to_pydatetime(), *map(int, v)) for t, v in expected.iterrows()]

    per_client = list(wb["Per client"].iter_rows(min_row=report.TABLE_ROW + 1,
                                                 values_only=True))
    header = per_client[0]
    for col, name in enumerate(header[1:], start=1):
        if name is None:
            break
        column_sum = sum(r[col] for r in per_client[1:])
        assert column_sum == df.loc[df["client_ip"] == name, "total_bytes"].sum()

    data = wb["Data"]
    assert data.max_row == len(df) + 1
    assert sum(r[0] for r in data.iter_rows(min_row=2, min_col=5, max_col=5, values_only=True)) \
        == df["total_bytes"].sum()


def test_numbers_equal_pandas_in_openpyxl(built) -> None:
    out, df = built
    wb = openpyxl.load_workbook(out)
    check_numbers(wb, df)
    assert wb["Data"].auto_filter.ref == f"A1:J{len(df) + 1}"
    assert isinstance(wb["Data"]["A2"].value, datetime)
    assert [c.value for c in wb["Data"][1]] == list(COLUMNS)
    for ws in wb.worksheets:
        assert ws.page_setup.orientation == "landscape" and ws.page_setup.fitToHeight == 0
        assert ws.sheet_properties.pageSetUpPr.fitToPage  # one page wide (fitToWidth 1)


@pytest.mark.libreoffice
@pytest.mark.xdist_group("report-libreoffice")
def test_numbers_equal_pandas_after_libreoffice(built, lo_book) -> None:
    _, df = built
    check_numbers(lo_book, df)


def test_openxml_audit_passes(built) -> None:
    out, _ = built
    assert audit_problems(out) == []


def test_time_charts_are_stacked_with_text_axes(built) -> None:
    out, df = built
    assert package_problems(out) == []
    parts = read_parts(out)
    charts = [ET.fromstring(parts[n]) for n in parts if re.fullmatch(r"xl/charts/chart\d+\.xml", n)]
    time_charts = [c for c in charts if c.find(f".//{C}barChart/{C}barDir").get("val") == "col"]
    assert len(charts) == 3 and len(time_charts) == 2
    windows = df["window_start"].nunique()
    for chart in time_charts:
        assert chart.find(f".//{C}grouping").get("val") == "stacked"
        assert chart.find(f".//{C}dateAx") is None
        cat_ax = chart.find(f".//{C}catAx")
        val_ax = chart.find(f".//{C}valAx")
        assert val_ax.find(f"{C}numFmt").get("formatCode") == report.BYTES_FORMAT
        assert val_ax.find(f"{C}title").findtext(".//{*}t") == report.BYTES_AXIS
        assert cat_ax.find(f"{C}title").findtext(".//{*}t") == "window"
        # A text axis (no auto date detection): one column per window in Excel and LibreOffice.
        auto = cat_ax.find(f"{C}auto")
        assert auto is None or auto.get("val") == "0"
        for ser in chart.iter(f"{C}ser"):
            ref = ser.find(f"{C}cat/{C}strRef/{C}f").text
            first, last = (int(x) for x in re.findall(r"\$(\d+)", ref))
            assert last - first + 1 == windows
    series = {len(list(c.iter(f"{C}ser"))) for c in time_charts}
    assert series == {len(CLASSES), len(CLIENTS)}


def test_other_clients_column_past_the_top(tmp_path: Path) -> None:
    df = read_traffic(write_traffic_csv(tmp_path / "t.csv", traffic_rows(windows=6)))
    frames = report.report_frames(df)
    narrow = report.per_client(df, frames.top_clients, limit=2)
    assert list(narrow.columns) == ["window", *frames.top_clients["client_ip"][:2],
                                    report.OTHER_CLIENTS]
    assert narrow.iloc[:, 1:].to_numpy().sum() == df["total_bytes"].sum()
    assert frames.directions["total_bytes"].sum() == df["total_bytes"].sum()


def test_bad_header_is_one_line(tmp_path: Path, capsys) -> None:
    csv = tmp_path / "traffic.csv"
    csv.write_text("when;who;bytes\n")
    assert report.main(["--csv", str(csv), "--out", str(tmp_path / "r.xlsx")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a traffic-capture CSV" in err
    assert not (tmp_path / "r.xlsx").exists()



@pytest.fixture(scope="session")
def pdf_pages(built, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The report as LibreOffice prints it, one text per page (pdftotext, poppler-utils)."""
    out, _ = built
    pdf = convert_all([out], "pdf", tmp_path_factory.mktemp("pdf"))[0]
    text = subprocess.run([tool("pdftotext"), "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True, timeout=60).stdout
    return text.split("\f")[:-1]


@pytest.mark.libreoffice
@pytest.mark.xdist_group("report-libreoffice")
def test_first_printed_page_has_the_totals_that_matter(pdf_pages, built) -> None:
    _, df = built
    first = pdf_pages[0]
    for text in ("Traffic report", "All traffic", "direction in", "direction out",
                 "Bytes per protocol", "Top clients", "In/out per client", *LABELS,
                 *df["client_ip"].unique()):
        assert text in first, text


@pytest.mark.libreoffice
@pytest.mark.xdist_group("report-libreoffice")
def test_charts_print_whole_each_on_one_page(pdf_pages) -> None:
    """A chart cut by a page break leaves its title on one page and its axis or legend on the
    next: each chart's title, axis titles and legend are on one page, landscape."""
    for title, legend in (("Bytes per window, by client", CLIENTS[:2]),
                          ("Bytes per window, by protocol", LABELS)):
        pages = [p for p in pdf_pages if title in p]
        assert len(pages) == 1, title
        page = pages[0]
        assert page.count(title) == 2  # the sheet's heading and the chart's title
        for text in (report.BYTES_AXIS, "window", *legend):
            assert text in page, (title, text)


def test_a_day_groups_the_report_by_hour(tmp_path: Path) -> None:
    csv = write_traffic_csv(tmp_path / "day.csv", day_rows(hours=24))
    frames = report.report_frames(read_traffic(csv))
    assert frames.unit == "hour"
    assert len(frames.per_protocol) == len(frames.per_client) == 24
    assert list(frames.per_protocol.columns) == ["hour", *LABELS]
    assert frames.per_protocol.iloc[:, 1:].to_numpy().sum() == read_traffic(csv)[
        [f"{c}_bytes" for c in CLASSES]].to_numpy().sum()


SPLIT_CASES = (1, 2, 3, report.SPLIT_CLIENTS)


def split_case(n: int) -> pd.DataFrame:
    """The sample's first n clients; past its three, clients of the synthetic rows renamed."""
    sample = read_traffic(REPO / "samples" / "traffic.csv")
    if n <= 3:
        return sample[sample["client_ip"].isin(sample["client_ip"].unique()[:n])]
    rows = traffic_rows(windows=n, seed=9, late_duplicates=0)
    for i, row in enumerate(rows):
        row[2] = f"198.51.100.{i % n + 1}"
    return pd.DataFrame(rows, columns=list(COLUMNS))


@pytest.fixture(scope="session")
def split_printed(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[list[str], str]]:
    """The clients and the first printed page of the report of 1, 2 and 3 clients (3: the
    sample's CSV) and of as many as the in/out chart shows."""
    folder = tmp_path_factory.mktemp("split")
    reports, clients = [], []
    for n in SPLIT_CASES:
        out = folder / f"r{n}.xlsx"
        csv = folder / f"r{n}.csv"
        split_case(n).to_csv(csv, index=False, date_format="%Y-%m-%d %H:%M:%S")
        df = read_traffic(csv)
        report.write_report(report.report_frames(df), out)
        assert audit_problems(out) == []
        reports.append(out)
        clients.append(list(df["client_ip"].unique()))
    pdfs = convert_all(reports, "pdf", folder / "pdf")
    return {n: (names, subprocess.run(["pdftotext", "-layout", "-l", "1", str(pdf), "-"],
                                      capture_output=True, text=True, check=True,
                                      timeout=60).stdout)
            for n, names, pdf in zip(SPLIT_CASES, clients, pdfs, strict=True)}


@pytest.mark.parametrize("n", SPLIT_CASES)
@pytest.mark.libreoffice
@pytest.mark.xdist_group("report-libreoffice")
def test_the_in_out_chart_labels_every_client(split_printed, n: int) -> None:
    """Issue 16 (6): the in/out chart of the sample's three clients named two of them, of two
    one (a chart too short for its labels skips some): each client is named twice on the
    first page, in the table and on the chart."""
    clients, page = split_printed[n]
    assert len(clients) == n
    for client in clients:
        named = re.findall(rf"(?<![\w:.]){re.escape(client)}(?![\w:.])", page)
        assert len(named) == 2, (client, page)
