"""`traffic-capture excel`: traffic.csv to a ready-made Excel dashboard.

The workbook holds the rows as a Table, two PivotTables on one cache (per client, per protocol),
a stacked PivotChart and two slicers wired to both pivots. XlsxWriter writes the sheets, the Table
and the chart; excel_parts adds what it cannot (pivots, slicers, the PivotChart link, the CSV
connection) to the zip it produced.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from traffic_capture.csvformat import COLUMNS
from traffic_capture.excel.command import replacing, run_workbook_command, workbook_parser
from traffic_capture.excel.ooxml import pivot as px
from traffic_capture.excel.ooxml.package import Package, insert_before
from traffic_capture.excel.read import csv_delimiter
from traffic_capture.rules import CLASSES

DATE_FORMAT = "yyyy-mm-dd hh:mm:ss"
TABLE_NAME = "Traffic"
DASHBOARD, PROTOCOLS, DATA = "Dashboard", "Protocols", "Data"
CLIENT_PIVOT, PROTOCOL_PIVOT = "ByClient", "ByProtocol"
CLIENT_PIVOT_TOP = 24  # below the chart and slicers
PROTOCOL_PIVOT_TOP = 3
CHART_SCALE = (2.0, 1.3)
X14_NS = px.X14_NS


@dataclass(frozen=True)
class Layouts:
    client: px.PivotLayout
    protocol: px.PivotLayout


def layouts(items: px.CacheItems) -> Layouts:
    return Layouts(
        client=px.PivotLayout(CLIENT_PIVOT, DASHBOARD, CLIENT_PIVOT_TOP, len(items.windows),
                              len(items.clients), True),
        protocol=px.PivotLayout(PROTOCOL_PIVOT, PROTOCOLS, PROTOCOL_PIVOT_TOP,
                                len(items.windows), len(CLASSES), False),
    )


def excel_serial(times: pd.Series) -> pd.Series:
    """Date-times as Excel serial days (1900 system), so cells are real dates, not text."""
    return (times - pd.Timestamp("1899-12-30")) / pd.Timedelta(days=1)


def write_base(df: pd.DataFrame, path: Path, lay: Layouts, title_note: str) -> None:
    """The sheets, Table and chart XlsxWriter can write; pivots come after."""
    import xlsxwriter

    wb = xlsxwriter.Workbook(str(path))
    date_fmt = wb.add_format({"num_format": DATE_FORMAT})
    int_fmt = wb.add_format({"num_format": "#,##0"})
    title_fmt = wb.add_format({"bold": True, "font_size": 14})
    note_fmt = wb.add_format({"italic": True, "font_color": "#595959"})

    dash = wb.add_worksheet(DASHBOARD)
    protocols = wb.add_worksheet(PROTOCOLS)
    data = wb.add_worksheet(DATA)

    dash.write(0, 0, "Traffic per client and protocol", title_fmt)
    dash.write(1, 0, title_note, note_fmt)
    dash.write(CLIENT_PIVOT_TOP - 2, 0, "Bytes per window and client (slicers filter both pivots)",
               note_fmt)
    dash.set_column(0, 0, 21)
    dash.set_column(1, 1 + len(df["client_ip"].unique()), 16)
    dash.set_landscape()
    dash.fit_to_pages(1, 0)
    dash.hide_gridlines(2)
    protocols.write(0, 0, "Bytes per window and protocol (the chart's source)", note_fmt)
    protocols.set_column(0, 0, 21)
    protocols.set_column(1, len(CLASSES), 12)

    n = len(df)
    data.add_table(0, 0, n, len(COLUMNS) - 1, {
        "name": TABLE_NAME,
        "style": "Table Style Medium 2",
        "columns": [
            {"header": c, "format": date_fmt if c.startswith("window_") else
             int_fmt if c.endswith("_bytes") else None}
            for c in COLUMNS
        ],
    })
    data.freeze_panes(1, 0)
    data.set_column(0, 1, 20)
    data.set_column(2, 2, 26)
    data.set_column(3, 3, 9)
    data.set_column(4, len(COLUMNS) - 1, 12)
    columns = [excel_serial(df["window_start"]).to_numpy(),
               excel_serial(df["window_end"]).to_numpy(),
               df["client_ip"].to_numpy(), df["direction"].to_numpy()]
    columns += [df[c].to_numpy() for c in COLUMNS[4:]]
    formats = [date_fmt, date_fmt, None, None] + [int_fmt] * (len(COLUMNS) - 4)
    write_number, write_string = data.write_number, data.write_string
    for row, values in enumerate(zip(*columns, strict=True), start=1):
        for col, (value, fmt) in enumerate(zip(values, formats, strict=True)):
            if col in (2, 3):
                write_string(row, col, value)
            else:
                write_number(row, col, float(value) if col < 2 else int(value), fmt)

    chart = wb.add_chart({"type": "column", "subtype": "stacked"})
    p = lay.protocol
    for i, _cls in enumerate(CLASSES):
        letter = px.col_letter(1 + i)
        chart.add_series({
            "name": f"={PROTOCOLS}!${letter}${p.top + 1}",
            "categories": f"={PROTOCOLS}!$A${p.first_data_row}:$A${p.last_data_row}",
            "values": f"={PROTOCOLS}!${letter}${p.first_data_row}:${letter}${p.last_data_row}",
            "gap": 30,
        })
    chart.set_title({"name": "Bytes per window, by protocol"})
    chart.set_x_axis({"text_axis": True, "num_format": DATE_FORMAT, "num_font": {"rotation": -45}})
    chart.set_y_axis({"num_format": "#,##0", "major_gridlines": {"visible": True}})
    chart.set_legend({"position": "bottom"})
    dash.insert_chart("D3", chart, {"x_scale": CHART_SCALE[0], "y_scale": CHART_SCALE[1]})
    dash.activate()
    wb.close()


def date_numfmt_id(styles_xml: str) -> int:
    """The id XlsxWriter gave the date-time format, for the pivot fields to reuse."""
    match = re.search(r'<numFmt numFmtId="(\d+)" formatCode="' + re.escape(DATE_FORMAT) + '"',
                      styles_xml)
    return int(match.group(1)) if match else 22


def add_pivots(pkg: Package, items: px.CacheItems, lay: Layouts, workbook_file: str) -> None:
    """Pivot cache, both pivots, the PivotChart link and the slicers, into the package."""
    numfmt = date_numfmt_id(pkg.text("xl/styles.xml"))
    cache_part = "xl/pivotCache/pivotCacheDefinition1.xml"
    pkg.add_part(cache_part, px.pivot_cache_xml(items, TABLE_NAME, numfmt),
                 "pivotCacheDefinition")
    cache_rid = pkg.relate("xl/workbook.xml", cache_part, "pivotCacheDefinition")

    for n, (layout, xml) in enumerate(
        ((lay.client, px.client_pivot_xml(lay.client, items, numfmt)),
         (lay.protocol, px.protocol_pivot_xml(lay.protocol, items, numfmt))), start=1):
        part = f"xl/pivotTables/pivotTable{n}.xml"
        pkg.add_part(part, xml, "pivotTable")
        pkg.relate(part, cache_part, "pivotCacheDefinition")
        pkg.relate(pkg.sheet_part(layout.sheet), part, "pivotTable")

    # Slicer caches: one per field, each wired to both pivots.
    pivots = [(pkg.sheet_id(lay.client.sheet), lay.client.name),
              (pkg.sheet_id(lay.protocol.sheet), lay.protocol.name)]
    slicer_rids = []
    for n, field in enumerate(px.SLICER_FIELDS, start=1):
        part = f"xl/slicerCaches/slicerCache{n}.xml"
        pkg.add_part(part, px.slicer_cache_xml(field, items, pivots), "slicerCache")
        slicer_rids.append(pkg.relate("xl/workbook.xml", part, "slicerCache"))

    workbook = pkg.text("xl/workbook.xml")
    names = "".join(f'<definedName name="{px.slicer_cache_name(f)}">#N/A</definedName>'
                    for f in px.SLICER_FIELDS)
    if "<definedNames>" in workbook:
        workbook = workbook.replace("<definedNames>", "<definedNames>" + names, 1)
    else:
        workbook = insert_before(workbook, ("<calcPr",), f"<definedNames>{names}</definedNames>")
    caches = f'<pivotCaches><pivotCache cacheId="{px.PIVOT_CACHE_ID}" r:id="{cache_rid}"/>' \
             "</pivotCaches>"
    workbook = workbook.replace("</workbook>", caches + "</workbook>")
    slicer_caches = "".join(f'<x14:slicerCache r:id="{rid}"/>' for rid in slicer_rids)
    workbook = workbook.replace(
        "</workbook>",
        f'<extLst><ext uri="{{BBE1A952-AA13-448e-AADC-164F8A28A991}}" xmlns:x14="{X14_NS}">'
        f"<x14:slicerCaches>{slicer_caches}</x14:slicerCaches></ext></extLst></workbook>",
    )
    pkg.set_text("xl/workbook.xml", workbook)

    # Slicer views on the dashboard sheet: a slicers part plus anchors in its drawing.
    sheet = pkg.sheet_part(DASHBOARD)
    slicers_part = "xl/slicers/slicer1.xml"
    pkg.add_part(slicers_part, px.slicers_xml(px.SLICER_FIELDS), "slicer")
    rid = pkg.relate(sheet, slicers_part, "slicer")
    sheet_xml = pkg.text(sheet).replace(
        "</worksheet>",
        f'<extLst><ext uri="{{A8765BA9-456A-4dab-B4F3-ACF838C121DE}}" xmlns:x14="{X14_NS}">'
        f'<x14:slicerList><x14:slicer r:id="{rid}"/></x14:slicerList></ext></extLst>'
        "</worksheet>",
    )
    pkg.set_text(sheet, sheet_xml)
    drawing = next(t for t in pkg.rels_of(sheet).values() if "/drawings/" in t)
    anchors = (px.slicer_anchor_xml("client_ip", 1001, (0, 2), (3, 14))
               + px.slicer_anchor_xml("direction", 1002, (0, 15), (3, 20)))
    pkg.set_text(drawing, pkg.text(drawing).replace("</xdr:wsDr>", anchors + "</xdr:wsDr>"))

    # The chart becomes a PivotChart of the protocol pivot.
    chart = next(t for t in pkg.rels_of(drawing).values() if "/charts/" in t)
    chart_xml = pkg.text(chart)
    chart_xml = insert_before(chart_xml, ("<c:chart>",),
                              px.pivot_source_xml(workbook_file, PROTOCOLS, PROTOCOL_PIVOT))
    chart_xml = insert_before(chart_xml, ("<c:plotArea>",), "<c:pivotFmts/>")
    # Row labels of a pivot are text: a text category axis keeps one bar per window.
    chart_xml = re.sub(
        r"<c:cat><c:numRef><c:f>([^<]+)</c:f><c:numCache>.*?</c:numCache></c:numRef></c:cat>",
        r"<c:cat><c:strRef><c:f>\1</c:f></c:strRef></c:cat>", chart_xml)
    pkg.set_text(chart, chart_xml)


def add_link(pkg: Package, csv_path: Path, delimiter: str) -> None:
    """Make the Data Table a query table over a text connection to the CSV itself."""
    pkg.add_part("xl/connections.xml", px.connection_xml(str(csv_path), delimiter),
                 "connections")
    pkg.relate("xl/workbook.xml", "xl/connections.xml", "connections")
    table = next(t for t in pkg.rels_of(pkg.sheet_part(DATA)).values() if "/tables/" in t)
    query = "xl/queryTables/queryTable1.xml"
    pkg.add_part(query, px.query_table_xml(), "queryTable")
    pkg.relate(table, query, "queryTable")
    xml = pkg.text(table)
    xml = xml.replace("<table ", '<table tableType="queryTable" ', 1)
    for i in range(1, len(COLUMNS) + 1):
        xml = xml.replace(f'<tableColumn id="{i}" ',
                          f'<tableColumn id="{i}" uniqueName="{i}" queryTableFieldId="{i}" ', 1)
    pkg.set_text(table, xml)


def build_dashboard(df: pd.DataFrame, out: Path, link_csv: Path | None = None,
                    delimiter: str = ",") -> None:
    """Write the dashboard workbook for a typed traffic DataFrame to `out` (atomically)."""
    items = px.cache_items(df)
    lay = layouts(items)
    note = ("Pick clients and directions in the slicers; Data > Refresh All re-reads "
            f"{link_csv.name}." if link_csv else
            "Pick clients and directions in the slicers. Rebuild with traffic-capture excel "
            "for newer rows.")
    with replacing(out) as tmp:
        write_base(df, tmp, lay, note)
        pkg = Package.read(tmp)
        add_pivots(pkg, items, lay, out.name)
        if link_csv is not None:
            add_link(pkg, link_csv, delimiter)
        pkg.write(tmp)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = workbook_parser(
        "traffic-capture excel",
        "Build an Excel dashboard (PivotTables, stacked PivotChart, slicers) from traffic.csv.",
        "traffic_dashboard.xlsx")
    parser.add_argument("--link", action="store_true",
                        help="connect the workbook to the CSV so Data > Refresh All re-reads it")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # usage error (2) or --help (0): argparse already printed
        return int(exc.code or 0)
    link = args.csv.resolve() if args.link else None

    def build(df: pd.DataFrame) -> None:
        delimiter = csv_delimiter(args.csv) if args.link else ","
        build_dashboard(df, args.out, link, delimiter)

    return run_workbook_command("traffic-capture excel", args.csv, args.out, build)


if __name__ == "__main__":
    sys.exit(main())
