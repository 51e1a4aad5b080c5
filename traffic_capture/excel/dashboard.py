"""`traffic-capture excel`: traffic.csv to a ready-made Excel dashboard.

The workbook holds the rows on the Data sheet (a Table, or with --link the range of a query table
over the CSV), two PivotTables on one cache (per client, per protocol) with their cells already
rendered, a stacked PivotChart with its points cached, and slicers wired to both pivots (one
more, `server`, when a fleet's rows of several servers are in).
XlsxWriter writes the sheets, the Table, the rendered cells and the chart; ooxml/ adds what it
cannot (pivot cache and records, pivots, slicers, the PivotChart link, the CSV connection) to the
zip it produced.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import pandas as pd

from traffic_capture.csvformat import COLUMNS
from traffic_capture.excel import timegroups as tg
from traffic_capture.excel.command import (
    WorkbookRows,
    parse_workbook_args,
    replacing,
    run_workbook_command,
    workbook_parser,
)
from traffic_capture.excel.formats import BYTES_AXIS, BYTES_FORMAT, COUNT_FORMAT
from traffic_capture.excel.ooxml import pivot as px
from traffic_capture.excel.ooxml import rows
from traffic_capture.excel.ooxml.package import Package, insert_before
from traffic_capture.excel.read import TrafficCsvError, csv_delimiter
from traffic_capture.rules import CLASS_LABELS, CLASSES

TABLE_NAME = "Traffic"
QUERY_NAME = "traffic_csv"  # the --link query table, its connection and its range's name
DASHBOARD, PROTOCOLS, DATA = "Dashboard", "Protocols", "Data"
CLIENT_PIVOT, PROTOCOL_PIVOT = "ByClient", "ByProtocol"
CLIENT_PIVOT_TOP = 24  # below the chart and slicers
PROTOCOL_PIVOT_TOP = 3
CHART_SCALE = (2.0, 1.3)
X14_NS = px.X14_NS
# client and direction pick who; date and hour pick when (the time-range picker).
SLICER_FIELDS = ("client_ip", "direction", "date", "hour")
SERVER = "server"  # a fleet's rows of several servers: a column and a slicer more
# Where each slicer sits on the dashboard: (column, row) of its top-left and bottom-right cells;
# with a server slicer, it takes the top of the client's.
SLICER_ANCHORS = {"client_ip": ((0, 2), (3, 10)), "direction": ((0, 10), (3, 13)),
                  "date": ((0, 13), (3, 17)), "hour": ((0, 17), (3, 21))}
SERVER_SLICER_ANCHORS = {**SLICER_ANCHORS, SERVER: ((0, 2), (3, 6)),
                         "client_ip": ((0, 6), (3, 10))}
# Excel keeps a text connection's file name in 255 characters at most.
EXCEL_MAX_PATH = 255
WINDOWS_PATH_FORBIDDEN = set('<>"|?*') | {chr(c) for c in range(32)}


@dataclass(frozen=True)
class Layouts:
    client: px.PivotLayout
    protocol: px.PivotLayout


@dataclass(frozen=True)
class Plan:
    """What the workbook shows: the Data sheet's columns, the pivots' row field and the
    slicers."""

    data: pd.DataFrame
    row_field: str
    items: px.CacheItems
    lay: Layouts
    slicers: tuple[str, ...] = SLICER_FIELDS

    @property
    def anchors(self) -> dict[str, tuple[tuple[int, int], tuple[int, int]]]:
        return SERVER_SLICER_ANCHORS if SERVER in self.slicers else SLICER_ANCHORS


def layouts(items: px.CacheItems, row_field: str) -> Layouts:
    n_rows = len(items.items(row_field))
    return Layouts(
        client=px.PivotLayout(CLIENT_PIVOT, DASHBOARD, CLIENT_PIVOT_TOP, n_rows,
                              len(items.items("client_ip")), True),
        protocol=px.PivotLayout(PROTOCOL_PIVOT, PROTOCOLS, PROTOCOL_PIVOT_TOP, n_rows,
                                len(CLASSES), False),
    )


def plan(df: pd.DataFrame, group: str = "auto") -> Plan:
    """The Data sheet (the CSV's columns, a fleet's server, then date, hour, minute) and the
    unit pivots group by."""
    server = [SERVER] if SERVER in df.columns else []
    data = tg.with_derived(df.loc[:, [*COLUMNS, *server]])
    row_field = tg.group_field(data, group)
    slicers = (*server, *SLICER_FIELDS)
    items = px.cache_items(data, tuple(dict.fromkeys((row_field, *slicers))))
    return Plan(data, row_field, items, layouts(items, row_field), slicers)


def unit(p: Plan) -> str:
    return tg.UNIT_NAMES[p.row_field]


def client_cells(p: Plan) -> pd.DataFrame:
    """The client pivot as Excel renders it: rows × clients sums (NaN where no row), totals."""
    table = p.data.pivot_table(index=p.row_field, columns="client_ip", values="total_bytes",
                               aggfunc="sum")
    table = table.reindex(index=list(p.items.items(p.row_field)),
                          columns=list(p.items.items("client_ip")))
    table[px.GRAND_TOTAL] = table.sum(axis=1)
    return table


def protocol_cells(p: Plan) -> pd.DataFrame:
    table = p.data.groupby(p.row_field)[list(px.CLASS_COLUMNS)].sum()
    table = table.reindex(index=list(p.items.items(p.row_field)))
    table.columns = [CLASS_LABELS[c] for c in CLASSES]
    return table


def write_pivot_cells(ws, layout: px.PivotLayout, table: pd.DataFrame, corner: str,
                      col_caption: str, row_caption: str, formats: dict) -> None:
    """The cells a refreshed pivot shows, so the file has numbers before any refresh."""
    top = layout.top - 1  # 0-based
    ws.write(top, 0, corner, formats["head"])
    ws.write(top, 1, col_caption, formats["head"])
    ws.write(top + 1, 0, row_caption, formats["head"])
    for col, name in enumerate(table.columns, start=1):
        ws.write_string(top + 1, col, str(name), formats["head"])
    serials = tg.excel_serials(pd.Series(table.index))
    for row, (serial, values) in enumerate(zip(serials, table.to_numpy(), strict=True),
                                           start=top + 2):
        ws.write_number(row, 0, float(serial), formats["label"])
        for col, value in enumerate(values, start=1):
            if not pd.isna(value):
                ws.write_number(row, col, int(value), formats["bytes"])
    total_row = top + 2 + len(table)
    ws.write_string(total_row, 0, px.GRAND_TOTAL, formats["total"])
    for col, value in enumerate(table.sum(axis=0).to_numpy(), start=1):
        ws.write_number(total_row, col, int(value), formats["total_bytes"])


def print_one_page_wide(ws, header_row: int) -> None:
    """Landscape, one page wide (a recomputed pivot sizes its columns to fit its numbers, and
    the protocols' last columns went to a second page), the header row on every page."""
    ws.set_landscape()
    ws.fit_to_pages(1, 0)
    ws.repeat_rows(header_row)


def data_sheet_columns(frame: pd.DataFrame, linked: bool) -> list[rows.SheetColumn]:
    """The Data sheet's cells: times as Excel serials; linked, the derived columns are
    formulas the query table fills down on each refresh (with their values cached)."""
    columns = []
    for name in frame.columns:
        if name in tg.EXCEL_FORMATS:
            kind = "formula" if linked and name in tg.FORMULAS else "number"
            columns.append(rows.SheetColumn(tg.excel_serials(frame[name]), kind,
                                            tg.FORMULAS.get(name, "")))
        elif pd.api.types.is_integer_dtype(frame[name]):
            columns.append(rows.SheetColumn(frame[name].to_numpy()))
        else:
            columns.append(rows.SheetColumn(frame[name].to_numpy(), "text"))
    return columns


def write_base(p: Plan, path: Path, title_note: str, linked: bool) -> None:
    """The sheets, the Data Table (or, linked, the query table's range), the rendered pivot
    cells and the chart; the pivots themselves come after."""
    import xlsxwriter

    wb = xlsxwriter.Workbook(str(path))
    int_fmt = wb.add_format({"num_format": COUNT_FORMAT})
    size_fmt = wb.add_format({"num_format": BYTES_FORMAT})
    title_fmt = wb.add_format({"bold": True, "font_size": 14})
    note_fmt = wb.add_format({"italic": True, "font_color": "#595959"})
    pivot_formats = {
        "head": wb.add_format({"bold": True, "bg_color": "#DCE6F1"}),
        "label": wb.add_format({"num_format": tg.EXCEL_FORMATS[p.row_field], "align": "left"}),
        "bytes": size_fmt,
        "total": wb.add_format({"bold": True, "top": 1}),
        "total_bytes": wb.add_format({"bold": True, "top": 1, "num_format": BYTES_FORMAT}),
    }
    lay = p.lay

    dash = wb.add_worksheet(DASHBOARD)
    protocols = wb.add_worksheet(PROTOCOLS)
    data = wb.add_worksheet(DATA)

    dash.write(0, 0, "Traffic per client and protocol", title_fmt)
    dash.write(1, 0, title_note, note_fmt)
    dash.write(CLIENT_PIVOT_TOP - 2, 0, f"Bytes per {unit(p)} and client (slicers filter both "
               "pivots; to regroup, drag date, hour, minute or window_start into Rows)", note_fmt)
    dash.set_column(0, 0, 21)
    dash.set_column(1, 1 + lay.client.n_cols, 16)
    dash.set_landscape()
    dash.fit_to_pages(1, 0)
    dash.hide_gridlines(2)
    write_pivot_cells(dash, lay.client, client_cells(p), px.CLIENT_VALUES, "client_ip",
                      p.row_field, pivot_formats)
    protocols.write(0, 0, f"Bytes per {unit(p)} and protocol (the chart's source)", note_fmt)
    protocols.set_column(0, 0, 21)
    protocols.set_column(1, len(CLASSES), 12)
    print_one_page_wide(protocols, header_row=lay.protocol.top)
    write_pivot_cells(protocols, lay.protocol, protocol_cells(p), "", px.VALUES_CAPTION,
                      p.row_field, pivot_formats)

    frame = p.data
    n, width = len(frame), frame.shape[1]
    date_fmts = {c: wb.add_format({"num_format": f}) for c, f in tg.EXCEL_FORMATS.items()}
    formats = [date_fmts[c] if c in date_fmts else
               int_fmt if c.endswith("_bytes") else None for c in frame.columns]
    if linked:
        # A text import lands in a plain range (Excel never binds one to a Table); the range's
        # name is the query table's, and the pivot cache reads through it.
        head = wb.add_format({"bold": True})
        for col, name in enumerate(frame.columns):
            data.write_string(0, col, name, head)
        last = f"${px.col_letter(width - 1)}${n + 1}"
        wb.define_name(f"{DATA}!{QUERY_NAME}", f"={DATA}!$A$1:{last}")
    else:
        # Over the first row only: XlsxWriter notes every cell of a table's range (a million
        # rows: 18 s and GBs); rows.fill_rows stretches it over the rows it adds.
        data.add_table(0, 0, 1, width - 1, {
            "name": TABLE_NAME,
            "style": "Table Style Medium 2",
            "columns": [{"header": c, "format": f} for c, f in zip(frame.columns, formats,
                                                                    strict=True)],
        })
    data.freeze_panes(1, 0)
    print_one_page_wide(data, header_row=0)
    data.set_column(0, 1, 20)
    data.set_column(2, 2, 26)
    data.set_column(3, 3, 9)
    data.set_column(4, width - 1, 12)
    data.set_column(len(COLUMNS), width - 1, 17)
    # XlsxWriter writes the first row (each column's style and shape); rows.fill_rows makes
    # them all from it.
    for col, column in enumerate(data_sheet_columns(frame, linked)):
        value = column.values[0]
        if column.kind == "text":
            data.write_string(1, col, str(value))
        elif column.kind == "formula":
            data.write_formula(1, col, column.formula.format(row=2), formats[col], float(value))
        else:
            data.write_number(1, col, value.item(), formats[col])

    chart = wb.add_chart({"type": "column", "subtype": "stacked"})
    pl = lay.protocol
    for i, _cls in enumerate(CLASSES):
        letter = px.col_letter(1 + i)
        chart.add_series({
            "name": f"={PROTOCOLS}!${letter}${pl.top + 1}",
            "categories": f"={PROTOCOLS}!$A${pl.first_data_row}:$A${pl.last_data_row}",
            "values": f"={PROTOCOLS}!${letter}${pl.first_data_row}:${letter}${pl.last_data_row}",
            "gap": 30,
        })
    chart.set_title({"name": f"Bytes per {unit(p)}, by protocol"})
    # The format draws numeric labels (LibreOffice's recomputed pivot) as dates too.
    chart.set_x_axis({"text_axis": True, "num_font": {"rotation": -45}, "name": unit(p),
                      "num_format": tg.EXCEL_FORMATS[p.row_field]})
    chart.set_y_axis({"num_format": BYTES_FORMAT, "name": BYTES_AXIS,
                      "major_gridlines": {"visible": True}})
    chart.set_legend({"position": "bottom"})
    dash.insert_chart("D3", chart, {"x_scale": CHART_SCALE[0], "y_scale": CHART_SCALE[1]})
    dash.activate()
    wb.close()


def numfmt_id(styles_xml: str, code: str, default: int) -> int:
    """The id XlsxWriter gave a number format, for the pivot fields to reuse."""
    match = re.search(r'<numFmt numFmtId="(\d+)" formatCode="'
                      + re.escape(escape(code, {'"': "&quot;"})) + '"', styles_xml)
    return int(match.group(1)) if match else default


def category_labels(p: Plan) -> list[str]:
    """The chart's category texts, as the pivot's row labels read."""
    return [pd.Timestamp(v).strftime(tg.TEXT_FORMATS[p.row_field])
            for v in p.items.items(p.row_field)]


def add_pivots(pkg: Package, p: Plan, workbook_file: str, source: str) -> None:
    """Pivot cache and records, both pivots, the PivotChart link and the slicers."""
    styles = pkg.text("xl/styles.xml")
    numfmts = {c: numfmt_id(styles, tg.EXCEL_FORMATS[c], 22) for c in p.items.date_ranges}
    value_id = numfmt_id(styles, BYTES_FORMAT, 3)
    items, lay = p.items, p.lay
    cache_part = "xl/pivotCache/pivotCacheDefinition1.xml"
    records_part = "xl/pivotCache/pivotCacheRecords1.xml"
    pkg.add_stream(records_part, px.pivot_records_chunks(p.data, items), "pivotCacheRecords")
    records_rid = pkg.relate(cache_part, records_part, "pivotCacheRecords")
    pkg.add_part(cache_part, px.pivot_cache_xml(items, source, numfmts, records_rid),
                 "pivotCacheDefinition")
    cache_rid = pkg.relate("xl/workbook.xml", cache_part, "pivotCacheDefinition")

    for n, (layout, xml) in enumerate(
        ((lay.client, px.client_pivot_xml(lay.client, items, p.row_field, numfmts, value_id)),
         (lay.protocol, px.protocol_pivot_xml(lay.protocol, items, p.row_field, numfmts,
                                              value_id))), start=1):
        part = f"xl/pivotTables/pivotTable{n}.xml"
        pkg.add_part(part, xml, "pivotTable")
        pkg.relate(part, cache_part, "pivotCacheDefinition")
        pkg.relate(pkg.sheet_part(layout.sheet), part, "pivotTable")

    # Slicer caches: one per field, each wired to both pivots.
    pivots = [(pkg.sheet_id(lay.client.sheet), lay.client.name),
              (pkg.sheet_id(lay.protocol.sheet), lay.protocol.name)]
    slicer_rids = []
    for n, field in enumerate(p.slicers, start=1):
        part = f"xl/slicerCaches/slicerCache{n}.xml"
        pkg.add_part(part, px.slicer_cache_xml(field, items, pivots), "slicerCache")
        slicer_rids.append(pkg.relate("xl/workbook.xml", part, "slicerCache"))

    workbook = pkg.text("xl/workbook.xml")
    names = "".join(f'<definedName name="{px.slicer_cache_name(f)}">#N/A</definedName>'
                    for f in p.slicers)
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
    pkg.add_part(slicers_part, px.slicers_xml(p.slicers), "slicer")
    rid = pkg.relate(sheet, slicers_part, "slicer")
    sheet_xml = pkg.text(sheet).replace(
        "</worksheet>",
        f'<extLst><ext uri="{{A8765BA9-456A-4dab-B4F3-ACF838C121DE}}" xmlns:x14="{X14_NS}">'
        f'<x14:slicerList><x14:slicer r:id="{rid}"/></x14:slicerList></ext></extLst>'
        "</worksheet>",
    )
    pkg.set_text(sheet, sheet_xml)
    drawing = next(t for t in pkg.rels_of(sheet).values() if "/drawings/" in t)
    anchors = "".join(px.slicer_anchor_xml(field, 1001 + i, *p.anchors[field])
                      for i, field in enumerate(p.slicers))
    pkg.set_text(drawing, pkg.text(drawing).replace("</xdr:wsDr>", anchors + "</xdr:wsDr>"))

    # The chart becomes a PivotChart of the protocol pivot.
    chart = next(t for t in pkg.rels_of(drawing).values() if "/charts/" in t)
    chart_xml = pkg.text(chart)
    chart_xml = insert_before(chart_xml, ("<c:chart>",),
                              px.pivot_source_xml(workbook_file, PROTOCOLS, PROTOCOL_PIVOT))
    chart_xml = insert_before(chart_xml, ("<c:plotArea>",), "<c:pivotFmts/>")
    # Row labels of a pivot are text to a chart: a text category axis, one bar per row item,
    # with the labels cached so the chart draws before any refresh.
    labels = category_labels(p)
    cache = (f'<c:strCache><c:ptCount val="{len(labels)}"/>'
             + "".join(f'<c:pt idx="{i}"><c:v>{escape(t)}</c:v></c:pt>'
                       for i, t in enumerate(labels))
             + "</c:strCache>")
    chart_xml = re.sub(
        r"<c:cat><c:numRef><c:f>([^<]+)</c:f><c:numCache>.*?</c:numCache></c:numRef></c:cat>",
        lambda m: f"<c:cat><c:strRef><c:f>{m.group(1)}</c:f>{cache}</c:strRef></c:cat>",
        chart_xml)
    pkg.set_text(chart, chart_xml)


def add_link(pkg: Package, p: Plan, csv_path: str, delimiter: str) -> None:
    """Bind the Data sheet's range to a query table over a text connection to the CSV."""
    pkg.add_part("xl/connections.xml", px.connection_xml(csv_path, delimiter, QUERY_NAME),
                 "connections")
    pkg.relate("xl/workbook.xml", "xl/connections.xml", "connections")
    query = "xl/queryTables/queryTable1.xml"
    pkg.add_part(query, px.query_table_xml(QUERY_NAME, tuple(p.data.columns)), "queryTable")
    pkg.relate(pkg.sheet_part(DATA), query, "queryTable")


def build_dashboard(df: pd.DataFrame, out: Path, link: str | None = None,
                    delimiter: str = ",", group: str = "auto", source: str = "",
                    source_option: str = "--history") -> None:
    """Write the dashboard workbook for a typed traffic DataFrame to `out` (atomically).

    `link` is the CSV's path as Excel will see it: the Data sheet becomes a query on it.
    `source` says where rows not from a CSV come from (a history or a fleet: its rows and
    range), `source_option` the option that reads them again. A `server` column (a fleet's
    rows of several servers) is a column of the Data table and a slicer.
    """
    p = plan(df, group)
    pick = ("Pick servers, clients, directions, days and hours in the slicers (all servers: "
            "a client's bytes on several servers added up)" if SERVER in p.slicers
            else "Pick clients, directions, days and hours in the slicers")
    if link:
        note = f"{pick}; Data > Refresh All re-reads {link_name(link)}."
    elif source:
        note = (f"From the {source}. {pick}. Rebuild with traffic-capture excel "
                f"{source_option} for newer rows.")
    else:
        note = f"{pick}. Rebuild with traffic-capture excel for newer rows."
    with replacing(out) as tmp:
        write_base(p, tmp, note, linked=link is not None)
        pkg = Package.read(tmp)
        rows.fill_rows(pkg, pkg.sheet_part(DATA), data_sheet_columns(p.data, link is not None))
        source = (px.worksheet_source(QUERY_NAME, DATA) if link is not None
                  else px.worksheet_source(TABLE_NAME))
        add_pivots(pkg, p, out.name, source)
        if link is not None:
            add_link(pkg, p, link, delimiter)
        pkg.write(tmp)


def link_name(link: str) -> str:
    """The file name of a Windows or POSIX path."""
    return re.split(r"[\\/]", link)[-1]


def check_link(link: str) -> str:
    """A --link path Excel can store and open: 255 characters, no characters Windows refuses."""
    if not link.strip():
        raise TrafficCsvError("--link: empty path")
    if len(link) > EXCEL_MAX_PATH:
        raise TrafficCsvError(f"--link: the path has {len(link)} characters; Excel keeps at most "
                              f"{EXCEL_MAX_PATH} (use a shorter share or mapped drive)")
    bad = sorted(set(link) & WINDOWS_PATH_FORBIDDEN)
    if bad:
        raise TrafficCsvError(f"--link {link!r}: Windows paths cannot hold {''.join(bad)!r}")
    return link


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = workbook_parser(
        "traffic-capture excel",
        "Build an Excel dashboard (PivotTables, stacked PivotChart, slicers) from traffic.csv "
        "or a history.",
        "traffic_dashboard.xlsx")
    parser.add_argument("--link", nargs="?", const="", default=None, metavar="PATH",
                        help="connect the workbook to the CSV so Data > Refresh All re-reads "
                             "it; PATH is the CSV as Excel will see it (e.g. "
                             "'\\\\server\\share\\traffic.csv' or 'C:\\logs\\traffic.csv'; "
                             "default: the --csv file's absolute path here)")
    parser.add_argument("--group", choices=tg.GROUP_CHOICES, default="auto",
                        help="time unit of the pivots' rows and the chart's bars: 5s windows, "
                             f"minute, hour or day (default auto: under {tg.MAX_BARS} bars)")
    args = parse_workbook_args(parser, argv)
    if args.link is not None and (args.history is not None or args.clickhouse is not None):
        parser.error("--link connects the workbook to a CSV; it cannot with "
                     + ("--history" if args.history is not None else "--clickhouse"))
    return args


def main(argv: list[str] | None = None) -> int:
    prog = "traffic-capture excel"
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # usage error (2) or --help (0): argparse already printed
        return int(exc.code or 0)
    link: str | None = None
    if args.link is not None:
        link = args.link or str(args.csv.resolve())
        try:
            check_link(link)
        except TrafficCsvError as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            return 1
        if link.startswith("/"):
            print(f"note: the workbook reads {link} on refresh; for Excel on Windows give the "
                  "path it sees: --link '\\\\server\\share\\traffic.csv'", file=sys.stderr)

    def build(rows: WorkbookRows) -> None:
        delimiter = csv_delimiter(args.csv) if link is not None else ","
        build_dashboard(rows.frame, args.out, link, delimiter, rows.group, rows.note,
                        rows.source_option)

    return run_workbook_command(prog, args, build)


if __name__ == "__main__":
    sys.exit(main())
