"""`traffic-capture report`: a static Excel report for people without pivots or on LibreOffice.

Everything is computed here with pandas and written as plain numbers and charts (XlsxWriter), so
any spreadsheet shows the same figures without refreshing anything. A fleet's rows of several
servers (a `server` column) add a sheet per server's totals and the column on the Data sheet,
whose filter picks a server; every other sheet sums the servers (a client's bytes on several
added up).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from traffic_capture.csvformat import COLUMNS
from traffic_capture.excel import timegroups as tg
from traffic_capture.excel.command import (
    parse_workbook_args,
    replacing,
    run_workbook_command,
    workbook_parser,
)
from traffic_capture.excel.formats import BYTES_AXIS, BYTES_FORMAT, COUNT_FORMAT
from traffic_capture.excel.ooxml import rows
from traffic_capture.excel.ooxml.package import Package
from traffic_capture.rules import CLASS_LABELS, CLASSES

TOP_CLIENTS = 10  # series in the per-client chart; the rest become one "other clients" series
OTHER_CLIENTS = "other clients"
CHART_WINDOWS = 500  # newest rows charted; a column per row stops being readable past it
DATE_FORMAT = "yyyy-mm-dd hh:mm:ss"
# The time sheets: the chart fills the first printed page, the table starts on the next.
CHART_SIZE = (1000, 460)
TABLE_ROW = 25
SPLIT_CLIENTS = 15  # clients in the summary's in/out chart
SERVER = "server"  # a fleet's rows of several servers


@dataclass(frozen=True)
class ReportFrames:
    """The report's tables, each ready to write as is."""

    top_clients: pd.DataFrame  # client_ip, in, out, total, share
    per_client: pd.DataFrame  # time label (text), one column per top client (+ other clients)
    per_protocol: pd.DataFrame  # time label (text), HTTP..Other
    directions: pd.DataFrame  # direction, total and one column per class
    data: pd.DataFrame  # the rows
    unit: str = "window"  # what one row of the time tables is: window, minute, hour, day
    source: str = ""  # where rows not from a CSV come from (a history: its rows and range)
    per_server: pd.DataFrame | None = None  # server, in, out, total, share (a fleet's rows)


def top_clients(df: pd.DataFrame, by_field: str = "client_ip") -> pd.DataFrame:
    """Clients (or servers) by total bytes, largest first, with their in/out split and share of
    all traffic."""
    by = df.pivot_table(index=by_field, columns="direction", values="total_bytes",
                        aggfunc="sum", fill_value=0)
    by = by.reindex(columns=["in", "out"], fill_value=0)
    out = pd.DataFrame({by_field: by.index, "in_bytes": by["in"].to_numpy(),
                        "out_bytes": by["out"].to_numpy()})
    out["total_bytes"] = out["in_bytes"] + out["out_bytes"]
    grand = out["total_bytes"].sum()
    out["share"] = out["total_bytes"] / grand if grand else 0.0
    out = out.sort_values(["total_bytes", by_field], ascending=[False, True])
    return out.reset_index(drop=True)


def time_labels(times: pd.Series, field: str = "window_start") -> pd.Series:
    """Times as text, so the charts' category axis is a text axis with one column per row."""
    return times.dt.strftime(tg.TEXT_FORMATS[field])


def window_labels(windows: pd.Series) -> pd.Series:
    return time_labels(windows)


def _by_time(df: pd.DataFrame, field: str) -> pd.Series:
    return tg.with_derived(df)[field] if field in tg.DERIVED else df[field]


def per_client(df: pd.DataFrame, top: pd.DataFrame, limit: int = TOP_CLIENTS,
               field: str = "window_start") -> pd.DataFrame:
    """Bytes per time unit for the `limit` biggest clients, the others summed in one column."""
    keep = list(top["client_ip"].head(limit))
    client = df["client_ip"].where(df["client_ip"].isin(keep), OTHER_CLIENTS)
    table = (df.assign(client=client, when=_by_time(df, field))
             .pivot_table(index="when", columns="client", values="total_bytes",
                          aggfunc="sum", fill_value=0))
    order = keep + ([OTHER_CLIENTS] if OTHER_CLIENTS in table.columns else [])
    table = table.reindex(columns=order, fill_value=0).sort_index()
    table.insert(0, tg.UNIT_NAMES[field], time_labels(table.index.to_series(), field).to_numpy())
    table.columns.name = None
    return table.reset_index(drop=True)


def per_protocol(df: pd.DataFrame, field: str = "window_start") -> pd.DataFrame:
    """Bytes per time unit and protocol class."""
    cols = [f"{c}_bytes" for c in CLASSES]
    table = df.assign(when=_by_time(df, field)).groupby("when")[cols].sum().sort_index()
    table.columns = [CLASS_LABELS[c] for c in CLASSES]
    table.insert(0, tg.UNIT_NAMES[field], time_labels(table.index.to_series(), field).to_numpy())
    return table.reset_index(drop=True)


def directions(df: pd.DataFrame) -> pd.DataFrame:
    """Total and per-protocol bytes for each direction."""
    cols = ["total_bytes"] + [f"{c}_bytes" for c in CLASSES]
    table = df.groupby("direction")[cols].sum().reindex(["in", "out"], fill_value=0)
    return table.rename_axis("direction").reset_index()


def report_frames(df: pd.DataFrame, group: str = "auto", source: str = "") -> ReportFrames:
    field = tg.group_field(df, group)
    top = top_clients(df)
    fleet = SERVER in df.columns
    return ReportFrames(top, per_client(df, top, field=field), per_protocol(df, field),
                        directions(df), df.loc[:, [*COLUMNS, *([SERVER] if fleet else [])]],
                        tg.UNIT_NAMES[field], source,
                        top_clients(df, SERVER) if fleet else None)


def _stacked_chart(wb, sheet: str, frame: pd.DataFrame, title: str, first_row: int = 0):
    """A stacked column chart of `frame` (column 0: time text, the rest: series), whose header
    row is `first_row`."""
    n = len(frame)
    first = max(n - CHART_WINDOWS, 0) + first_row + 1  # newest rows only
    last = first_row + n
    chart = wb.add_chart({"type": "column", "subtype": "stacked"})
    for col in range(1, frame.shape[1]):
        chart.add_series({
            "name": [sheet, first_row, col],
            "categories": [sheet, first, 0, last, 0],
            "values": [sheet, first, col, last, col],
            "gap": 30,
        })
    shown = f" (newest {CHART_WINDOWS})" if n > CHART_WINDOWS else ""
    chart.set_title({"name": title + shown})
    chart.set_x_axis({"text_axis": True, "num_font": {"rotation": -45},
                      "name": frame.columns[0]})
    chart.set_y_axis({"num_format": BYTES_FORMAT, "name": BYTES_AXIS,
                      "major_gridlines": {"visible": True}})
    chart.set_legend({"position": "bottom"})
    chart.set_size({"width": CHART_SIZE[0], "height": CHART_SIZE[1]})
    return chart


def write_report(frames: ReportFrames, out: Path) -> None:
    """Write the report workbook (atomically: a half-written file never replaces a good one)."""
    with replacing(out) as tmp:
        _write(frames, tmp)
        pkg = Package.read(tmp)
        rows.fill_rows(pkg, pkg.sheet_part("Data"), data_sheet_columns(frames.data))
        pkg.write(tmp)


def data_sheet_columns(data: pd.DataFrame) -> list[rows.SheetColumn]:
    """The Data sheet's cells: times as Excel serials, the rest as they are."""
    return [rows.SheetColumn(tg.excel_serials(data[name]))
            if pd.api.types.is_datetime64_any_dtype(data[name]) else
            rows.SheetColumn(data[name].to_numpy())
            if pd.api.types.is_integer_dtype(data[name]) else
            rows.SheetColumn(data[name].to_numpy(), "text")
            for name in data.columns]


def _print_setup(ws, header_row: int | None = None) -> None:
    """Landscape, one page wide, the table's header repeated on every printed page."""
    ws.set_landscape()
    ws.set_paper(9)  # A4; Letter users' printers scale it
    ws.fit_to_pages(1, 0)
    ws.set_margins(left=0.4, right=0.4, top=0.5, bottom=0.5)
    if header_row is not None:
        ws.repeat_rows(header_row)


def _write(frames: ReportFrames, path: Path) -> None:
    with pd.ExcelWriter(path, engine="xlsxwriter", datetime_format=DATE_FORMAT) as writer:
        wb = writer.book
        title = wb.add_format({"bold": True, "font_size": 16})
        heading = wb.add_format({"bold": True, "font_size": 12})
        note = wb.add_format({"italic": True, "font_color": "#595959"})
        head = wb.add_format({"bold": True, "bottom": 1, "bg_color": "#DCE6F1"})
        label = wb.add_format({"bold": True})
        sizes = wb.add_format({"num_format": BYTES_FORMAT})
        big = wb.add_format({"num_format": BYTES_FORMAT, "bold": True, "font_size": 12})
        ints = wb.add_format({"num_format": COUNT_FORMAT})
        pct = wb.add_format({"num_format": "0.0%"})

        # Summary: the first printed page, the totals that matter without scrolling.
        summary = wb.add_worksheet("Summary")
        writer.sheets["Summary"] = summary
        data = frames.data
        span = (f"{data['window_start'].min():%Y-%m-%d %H:%M:%S} to "
                f"{data['window_end'].max():%Y-%m-%d %H:%M:%S}")
        summary.write(0, 0, "Traffic report", title)
        servers = ("" if frames.per_server is None else
                   f"{len(frames.per_server):,} servers, added up (Per server: each one's); ")
        summary.write(1, 0, f"{span}; {data['window_start'].nunique():,} windows, "
                            f"{data['client_ip'].nunique():,} clients; {servers}time sheets "
                            f"per {frames.unit}", note)
        if frames.source:
            summary.write(2, 0, f"From the {frames.source}", note)
        dirs = frames.directions.set_index("direction")
        summary.write(3, 0, "All traffic", label)
        summary.write_number(3, 1, int(dirs["total_bytes"].sum()), big)
        for i, direction in enumerate(("in", "out"), start=4):
            summary.write(i, 0, f"direction {direction}")
            summary.write_number(i, 1, int(dirs.loc[direction, "total_bytes"]), sizes)

        summary.write(7, 0, "Bytes per protocol", heading)
        for col, name in enumerate(("protocol", "in", "out", "total")):
            summary.write(8, col, name, head)
        for i, cls in enumerate(CLASSES, start=9):
            column = f"{cls}_bytes"
            summary.write(i, 0, CLASS_LABELS[cls])
            values = [int(dirs.loc["in", column]), int(dirs.loc["out", column])]
            for col, value in enumerate((*values, sum(values)), start=1):
                summary.write_number(i, col, value, sizes)

        top_row = 10 + len(CLASSES)
        summary.write(top_row, 0, "Top clients (bytes in + out)", heading)
        top = frames.top_clients
        for col, name in enumerate(top.columns):
            summary.write(top_row + 1, col, name, head)
        for i, row in enumerate(top.itertuples(index=False), start=top_row + 2):
            summary.write_string(i, 0, row.client_ip)
            for col, value in enumerate(row[1:4], start=1):
                summary.write_number(i, col, int(value), sizes)
            summary.write_number(i, 4, float(row.share), pct)
        summary.set_column(0, 0, 28)
        summary.set_column(1, 4, 14)

        split = wb.add_chart({"type": "bar", "subtype": "stacked"})
        shown = min(len(top), SPLIT_CLIENTS)
        first = top_row + 2
        for col, name in ((1, "in"), (2, "out")):
            split.add_series({"name": name,
                              "categories": ["Summary", first, 0, first + shown - 1, 0],
                              "values": ["Summary", first, col, first + shown - 1, col],
                              "gap": 40})
        more = f" (top {shown})" if len(top) > shown else ""
        split.set_title({"name": f"In/out per client{more}"})
        # Every client named: a chart skips category labels it thinks too close together
        # (LibreOffice named one of two clients).
        split.set_y_axis({"reverse": True, "name": "client", "interval_unit": 1})
        split.set_x_axis({"num_format": BYTES_FORMAT, "name": BYTES_AXIS,
                          "num_font": {"rotation": -45}})
        split.set_legend({"position": "bottom"})
        split.set_size({"width": 640, "height": 210 + 24 * shown})
        summary.insert_chart(3, 6, split)
        _print_setup(summary)
        summary.activate()

        if frames.per_server is not None:
            per_server = wb.add_worksheet("Per server")
            per_server.write(0, 0, "Bytes per server (in + out)", heading)
            for col, name in enumerate(frames.per_server.columns):
                per_server.write(1, col, name, head)
            for i, row in enumerate(frames.per_server.itertuples(index=False), start=2):
                per_server.write_string(i, 0, str(row[0]))
                for col, value in enumerate(row[1:4], start=1):
                    per_server.write_number(i, col, int(value), sizes)
                per_server.write_number(i, 4, float(row[4]), pct)
            per_server.set_column(0, 0, 28)
            per_server.set_column(1, 4, 14)
            _print_setup(per_server, 1)

        for sheet, frame, chart_title in (
            ("Per client", frames.per_client, f"Bytes per {frames.unit}, by client"),
            ("Per protocol", frames.per_protocol, f"Bytes per {frames.unit}, by protocol"),
        ):
            frame.to_excel(writer, sheet_name=sheet, index=False, startrow=TABLE_ROW)
            ws = writer.sheets[sheet]
            ws.write(0, 0, chart_title, heading)
            ws.set_column(0, 0, 20)
            ws.set_column(1, frame.shape[1] - 1, 15, sizes)
            ws.insert_chart(1, 0, _stacked_chart(wb, sheet, frame, chart_title, TABLE_ROW))
            ws.freeze_panes(TABLE_ROW + 1, 1)
            ws.set_h_pagebreaks([TABLE_ROW])  # the chart alone on the first page
            _print_setup(ws, TABLE_ROW)

        # The first row only: rows.fill_rows makes the others from it (XlsxWriter's cell by
        # cell writing takes minutes and GBs for a million rows).
        data.head(1).to_excel(writer, sheet_name="Data", index=False)
        ws = writer.sheets["Data"]
        ws.autofilter(0, 0, len(data), data.shape[1] - 1)  # a fleet's: its server's too
        ws.freeze_panes(1, 0)
        ws.set_column(0, 1, 20)
        ws.set_column(2, 2, 26)
        ws.set_column(4, len(COLUMNS) - 1, 12, ints)
        ws.set_column(len(COLUMNS), data.shape[1] - 1, 20)
        _print_setup(ws, 0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = workbook_parser(
        "traffic-capture report",
        "Build a static Excel report (totals, top clients, stacked charts per client and per "
        "protocol, in/out split, filterable data) from traffic.csv or a history.",
        "traffic_report.xlsx")
    parser.add_argument("--group", choices=tg.GROUP_CHOICES, default="auto",
                        help="time unit of the per-client and per-protocol sheets: 5s windows, "
                             f"minute, hour or day (default auto: under {tg.MAX_BARS} bars)")
    return parse_workbook_args(parser, argv)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # usage error (2) or --help (0): argparse already printed
        return int(exc.code or 0)
    return run_workbook_command(
        "traffic-capture report", args,
        lambda rows: write_report(report_frames(rows.frame, rows.group, rows.note), args.out))


if __name__ == "__main__":
    sys.exit(main())
