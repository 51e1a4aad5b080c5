"""`traffic-capture report`: a static Excel report for people without pivots or on LibreOffice.

Everything is computed here with pandas and written as plain numbers and charts (XlsxWriter), so
any spreadsheet shows the same figures without refreshing anything.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from traffic_capture.csvformat import COLUMNS, TIME_FORMAT
from traffic_capture.excel.command import replacing, run_workbook_command, workbook_parser
from traffic_capture.rules import CLASSES

TOP_CLIENTS = 10  # series in the per-client chart; the rest become one "other clients" series
OTHER_CLIENTS = "other clients"
CHART_WINDOWS = 500  # newest windows charted; a column per window stops being readable past it
CLASS_LABELS = {"http": "HTTP", "ftp": "FTP", "tcp": "TCP", "udp": "UDP", "other": "Other"}
DATE_FORMAT = "yyyy-mm-dd hh:mm:ss"


@dataclass(frozen=True)
class ReportFrames:
    """The report's tables, each ready to write as is."""

    top_clients: pd.DataFrame  # client_ip, in, out, total, share
    per_client: pd.DataFrame  # window (text), one column per top client (+ other clients)
    per_protocol: pd.DataFrame  # window (text), HTTP..Other
    directions: pd.DataFrame  # direction, total and one column per class
    data: pd.DataFrame  # the rows


def top_clients(df: pd.DataFrame) -> pd.DataFrame:
    """Clients by total bytes, largest first, with their in/out split and share of all traffic."""
    by = df.pivot_table(index="client_ip", columns="direction", values="total_bytes",
                        aggfunc="sum", fill_value=0)
    by = by.reindex(columns=["in", "out"], fill_value=0)
    out = pd.DataFrame({"client_ip": by.index, "in_bytes": by["in"].to_numpy(),
                        "out_bytes": by["out"].to_numpy()})
    out["total_bytes"] = out["in_bytes"] + out["out_bytes"]
    grand = out["total_bytes"].sum()
    out["share"] = out["total_bytes"] / grand if grand else 0.0
    out = out.sort_values(["total_bytes", "client_ip"], ascending=[False, True])
    return out.reset_index(drop=True)


def window_labels(windows: pd.Series) -> pd.Series:
    """Windows as text, so the charts' category axis is a text axis with one column per window."""
    return windows.dt.strftime(TIME_FORMAT)


def per_client(df: pd.DataFrame, top: pd.DataFrame, limit: int = TOP_CLIENTS) -> pd.DataFrame:
    """Bytes per window for the `limit` biggest clients, the others summed in one column."""
    keep = list(top["client_ip"].head(limit))
    client = df["client_ip"].where(df["client_ip"].isin(keep), OTHER_CLIENTS)
    table = (df.assign(client=client)
             .pivot_table(index="window_start", columns="client", values="total_bytes",
                          aggfunc="sum", fill_value=0))
    order = keep + ([OTHER_CLIENTS] if OTHER_CLIENTS in table.columns else [])
    table = table.reindex(columns=order, fill_value=0).sort_index()
    table.insert(0, "window", window_labels(table.index.to_series()).to_numpy())
    table.columns.name = None
    return table.reset_index(drop=True)


def per_protocol(df: pd.DataFrame) -> pd.DataFrame:
    """Bytes per window and protocol class."""
    cols = [f"{c}_bytes" for c in CLASSES]
    table = df.groupby("window_start")[cols].sum().sort_index()
    table.columns = [CLASS_LABELS[c] for c in CLASSES]
    table.insert(0, "window", window_labels(table.index.to_series()).to_numpy())
    return table.reset_index(drop=True)


def directions(df: pd.DataFrame) -> pd.DataFrame:
    """Total and per-protocol bytes for each direction."""
    cols = ["total_bytes"] + [f"{c}_bytes" for c in CLASSES]
    table = df.groupby("direction")[cols].sum().reindex(["in", "out"], fill_value=0)
    return table.rename_axis("direction").reset_index()


def report_frames(df: pd.DataFrame) -> ReportFrames:
    top = top_clients(df)
    return ReportFrames(top, per_client(df, top), per_protocol(df), directions(df),
                        df.loc[:, list(COLUMNS)])


def _stacked_chart(wb, sheet: str, frame: pd.DataFrame, title: str, first_row: int = 0):
    """A stacked column chart of `frame` (column 0: window text, the rest: series)."""
    n = len(frame)
    first = max(n - CHART_WINDOWS, 0) + first_row + 1  # newest windows only
    last = first_row + n
    chart = wb.add_chart({"type": "column", "subtype": "stacked"})
    for col in range(1, frame.shape[1]):
        chart.add_series({
            "name": [sheet, first_row, col],
            "categories": [sheet, first, 0, last, 0],
            "values": [sheet, first, col, last, col],
            "gap": 30,
        })
    shown = f" (newest {CHART_WINDOWS} windows)" if n > CHART_WINDOWS else ""
    chart.set_title({"name": title + shown})
    chart.set_x_axis({"text_axis": True, "num_font": {"rotation": -45}})
    chart.set_y_axis({"num_format": "#,##0", "name": "bytes"})
    chart.set_legend({"position": "bottom"})
    chart.set_size({"width": 960, "height": 420})
    return chart


def write_report(frames: ReportFrames, out: Path) -> None:
    """Write the report workbook (atomically: a half-written file never replaces a good one)."""
    with replacing(out) as tmp:
        _write(frames, tmp)


def _write(frames: ReportFrames, path: Path) -> None:
    with pd.ExcelWriter(path, engine="xlsxwriter", datetime_format=DATE_FORMAT) as writer:
        wb = writer.book
        bold = wb.add_format({"bold": True, "font_size": 14})
        ints = wb.add_format({"num_format": "#,##0"})
        pct = wb.add_format({"num_format": "0.0%"})

        frames.top_clients.to_excel(writer, sheet_name="Summary", startrow=2, index=False)
        summary = writer.sheets["Summary"]
        summary.write(0, 0, "Top clients (bytes in + out)", bold)
        summary.set_column(0, 0, 26)
        summary.set_column(1, len(CLASSES) + 1, 14, ints)
        n_top = len(frames.top_clients)
        for i, share in enumerate(frames.top_clients["share"]):
            summary.write_number(3 + i, 4, float(share), pct)
        split = wb.add_chart({"type": "bar", "subtype": "stacked"})
        shown = min(n_top, 20)
        for col, name in ((1, "in"), (2, "out")):
            split.add_series({"name": name, "categories": ["Summary", 3, 0, 2 + shown, 0],
                              "values": ["Summary", 3, col, 2 + shown, col], "gap": 40})
        split.set_title({"name": "In/out split per client"})
        split.set_y_axis({"reverse": True})
        split.set_x_axis({"num_format": "#,##0"})
        split.set_legend({"position": "bottom"})
        split.set_size({"width": 620, "height": 120 + 24 * shown})
        summary.insert_chart(2, len(CLASSES) + 3, split)

        dir_row = 4 + n_top
        summary.write(dir_row, 0, "In/out split per protocol", bold)
        frames.directions.to_excel(writer, sheet_name="Summary", startrow=dir_row + 1,
                                   index=False)

        for sheet, frame, title in (
            ("Per client", frames.per_client, "Bytes per window, by client"),
            ("Per protocol", frames.per_protocol, "Bytes per window, by protocol"),
        ):
            frame.to_excel(writer, sheet_name=sheet, index=False)
            ws = writer.sheets[sheet]
            ws.set_column(0, 0, 20)
            ws.set_column(1, frame.shape[1] - 1, 15, ints)
            ws.freeze_panes(1, 1)
            ws.set_landscape()
            ws.insert_chart(1, frame.shape[1] + 1, _stacked_chart(wb, sheet, frame, title))

        data = frames.data
        data.to_excel(writer, sheet_name="Data", index=False)
        ws = writer.sheets["Data"]
        ws.autofilter(0, 0, len(data), len(COLUMNS) - 1)
        ws.freeze_panes(1, 0)
        ws.set_column(0, 1, 20)
        ws.set_column(2, 2, 26)
        ws.set_column(4, len(COLUMNS) - 1, 12, ints)
        summary.set_landscape()
        summary.fit_to_pages(1, 0)
        summary.activate()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return workbook_parser(
        "traffic-capture report",
        "Build a static Excel report (top clients, stacked charts per client and per protocol, "
        "in/out split, filterable data) from traffic.csv.",
        "traffic_report.xlsx").parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # usage error (2) or --help (0): argparse already printed
        return int(exc.code or 0)
    return run_workbook_command("traffic-capture report", args.csv, args.out,
                                lambda df: write_report(report_frames(df), args.out))


if __name__ == "__main__":
    sys.exit(main())
