"""Pivot cache, PivotTables, slicers and the PivotChart's pivot link, as XML strings.

The cache holds no records and asks for a refresh on load: Excel then recomputes both pivots from
the Data table when the file opens, so the file never shows stale numbers. The shared items are
written anyway so the slicers and pivot fields have their item lists before that refresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

import pandas as pd

from traffic_capture.csvformat import COLUMNS
from traffic_capture.rules import CLASSES

MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
R_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
X14_NS = "http://schemas.microsoft.com/office/spreadsheetml/2009/9/main"
MC_NS = "http://schemas.openxmlformats.org/markup-compatibility/2006"
XML_DECL = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'

PIVOT_CACHE_ID = 1  # the x14 id slicer caches use to name the pivot cache
FIELD = {name: i for i, name in enumerate(COLUMNS)}
CLASS_COLUMNS = tuple(f"{c}_bytes" for c in CLASSES)
# Legend names of the protocol pivot's values; they must differ from every field name.
CLASS_LABELS = {"http": "HTTP", "ftp": "FTP", "tcp": "TCP", "udp": "UDP", "other": "Other"}
NUMFMT_THOUSANDS = 3  # built-in "#,##0"
SLICER_FIELDS = ("client_ip", "direction")


@dataclass(frozen=True)
class CacheItems:
    """What the pivot cache must list: the distinct values of the fields pivots and slicers use."""

    windows: tuple[pd.Timestamp, ...]
    clients: tuple[str, ...]
    directions: tuple[str, ...]
    end_range: tuple[pd.Timestamp, pd.Timestamp]
    max_bytes: dict[str, int]
    rows: int

    def items(self, field: str) -> Sequence[object]:
        return {"window_start": self.windows, "client_ip": self.clients,
                "direction": self.directions}[field]


@dataclass(frozen=True)
class PivotLayout:
    """Where a pivot sits and which cells its chart reads (before Excel's own refresh)."""

    name: str
    sheet: str
    top: int  # 1-based row of the pivot's first row
    n_rows: int  # row items (windows), grand total excluded
    n_cols: int  # data columns (clients or classes), grand total excluded
    grand_total_col: bool

    @property
    def ref(self) -> str:
        last_col = 1 + self.n_cols + (1 if self.grand_total_col else 0)
        return f"A{self.top}:{col_letter(last_col - 1)}{self.top + self.n_rows + 2}"

    @property
    def first_data_row(self) -> int:
        return self.top + 2

    @property
    def last_data_row(self) -> int:
        return self.top + 1 + self.n_rows


def col_letter(index: int) -> str:
    """0-based column index to Excel letters."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def cache_items(df: pd.DataFrame) -> CacheItems:
    """Distinct sorted values of the pivot and slicer fields of a typed traffic DataFrame."""
    return CacheItems(
        windows=tuple(pd.Timestamp(t) for t in sorted(df["window_start"].unique())),
        clients=tuple(sorted(df["client_ip"].unique())),
        directions=tuple(sorted(df["direction"].unique())),
        end_range=(pd.Timestamp(df["window_end"].min()), pd.Timestamp(df["window_end"].max())),
        max_bytes={c: int(df[c].max()) for c in COLUMNS[4:]},
        rows=len(df),
    )


def _iso(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S")


def _date_shared_items(values: Sequence[pd.Timestamp], lo: pd.Timestamp, hi: pd.Timestamp,
                       listed: bool) -> str:
    attrs = (f'containsSemiMixedTypes="0" containsNonDate="0" containsDate="1" '
             f'containsString="0" minDate="{_iso(lo)}" maxDate="{_iso(hi)}"')
    if not listed:
        return f"<sharedItems {attrs}/>"
    body = "".join(f'<d v="{_iso(v)}"/>' for v in values)
    return f'<sharedItems {attrs} count="{len(values)}">{body}</sharedItems>'


def pivot_cache_xml(items: CacheItems, table_name: str, date_numfmt: int) -> str:
    """The pivot cache definition: sourced from the Data Table by name so it follows its growth."""
    fields = []
    for name in COLUMNS:
        if name == "window_start":
            shared = _date_shared_items(items.windows, items.windows[0], items.windows[-1], True)
            fmt = date_numfmt
        elif name == "window_end":
            shared = _date_shared_items((), *items.end_range, listed=False)
            fmt = date_numfmt
        elif name in ("client_ip", "direction"):
            values = items.items(name)
            body = "".join(f"<s v={quoteattr(str(v))}/>" for v in values)
            shared = f'<sharedItems count="{len(values)}">{body}</sharedItems>'
            fmt = 0
        else:
            shared = ('<sharedItems containsSemiMixedTypes="0" containsString="0" '
                      f'containsNumber="1" containsInteger="1" minValue="0" '
                      f'maxValue="{items.max_bytes[name]}"/>')
            fmt = 0
        fields.append(f'<cacheField name="{name}" numFmtId="{fmt}">{shared}</cacheField>')
    return (
        f'{XML_DECL}<pivotCacheDefinition xmlns="{MAIN_NS}" xmlns:r="{R_NS}" saveData="0" '
        f'refreshOnLoad="1" createdVersion="6" refreshedVersion="6" minRefreshableVersion="3" '
        f'recordCount="{items.rows}">'
        f'<cacheSource type="worksheet"><worksheetSource name={quoteattr(table_name)}/>'
        f'</cacheSource><cacheFields count="{len(fields)}">{"".join(fields)}</cacheFields>'
        f'<extLst><ext uri="{{725AE2AE-9491-48be-B2B4-4EB974FC3084}}" xmlns:x14="{X14_NS}">'
        f'<x14:pivotCacheDefinition pivotCacheId="{PIVOT_CACHE_ID}"/></ext></extLst>'
        "</pivotCacheDefinition>"
    )


def _pivot_field(name: str, items: CacheItems, axis: str | None, data: bool,
                 date_numfmt: int) -> str:
    attrs = []
    if axis:
        attrs.append(f'axis="{axis}"')
    if data:
        attrs.append('dataField="1"')
    attrs.append('compact="0" outline="0" showAll="0"')
    if name in ("window_start", "window_end"):
        attrs.append(f'numFmtId="{date_numfmt}"')
    attrs.append('defaultSubtotal="0"')
    head = f"<pivotField {' '.join(attrs)}"
    if name in ("window_start", "client_ip", "direction"):
        n = len(items.items(name))
        listed = "".join(f'<item x="{i}"/>' for i in range(n))
        return f'{head}><items count="{n}">{listed}</items></pivotField>'
    return head + "/>"


def _axis_items(tag: str, n: int, grand: bool) -> str:
    body = "<i><x/></i>" + "".join(f'<i><x v="{i}"/></i>' for i in range(1, n))
    count = n
    if grand:
        body += '<i t="grand"><x/></i>'
        count += 1
    return f'<{tag} count="{count}">{body}</{tag}>'


def _style() -> str:
    return ('<pivotTableStyleInfo name="PivotStyleMedium9" showRowHeaders="1" showColHeaders="1" '
            'showRowStripes="0" showColStripes="0" showLastColumn="1"/>')


def _definition_open(layout: PivotLayout, chart_formats: int) -> str:
    chart = f' chartFormat="{chart_formats}"' if chart_formats else ""
    return (
        f'{XML_DECL}<pivotTableDefinition xmlns="{MAIN_NS}" name={quoteattr(layout.name)} '
        f'cacheId="{PIVOT_CACHE_ID}" applyNumberFormats="0" applyBorderFormats="0" '
        f'applyFontFormats="0" applyPatternFormats="0" applyAlignmentFormats="0" '
        f'applyWidthHeightFormats="1" dataCaption="Values" updatedVersion="6" '
        f'minRefreshableVersion="3" useAutoFormatting="1" itemPrintTitles="1" '
        f'createdVersion="6" indent="0" compact="0" compactData="0" outline="1" '
        f'outlineData="1" multipleFieldFilters="0"{chart}>'
        f'<location ref="{layout.ref}" firstHeaderRow="1" firstDataRow="2" firstDataCol="1"/>'
    )


def client_pivot_xml(layout: PivotLayout, items: CacheItems, date_numfmt: int) -> str:
    """Rows window_start, columns client_ip, values sum of total_bytes."""
    fields = "".join(
        _pivot_field(name, items,
                     {"window_start": "axisRow", "client_ip": "axisCol"}.get(name),
                     name == "total_bytes", date_numfmt)
        for name in COLUMNS
    )
    return (
        _definition_open(layout, 0)
        + f'<pivotFields count="{len(COLUMNS)}">{fields}</pivotFields>'
        + f'<rowFields count="1"><field x="{FIELD["window_start"]}"/></rowFields>'
        + _axis_items("rowItems", len(items.windows), True)
        + f'<colFields count="1"><field x="{FIELD["client_ip"]}"/></colFields>'
        + _axis_items("colItems", len(items.clients), True)
        + f'<dataFields count="1"><dataField name="Total bytes" fld="{FIELD["total_bytes"]}" '
        f'baseField="0" baseItem="0" numFmtId="{NUMFMT_THOUSANDS}"/></dataFields>'
        + _style()
        + "</pivotTableDefinition>"
    )


def protocol_pivot_xml(layout: PivotLayout, items: CacheItems, date_numfmt: int) -> str:
    """Rows window_start, one value column per protocol class; the PivotChart's source."""
    fields = "".join(
        _pivot_field(name, items, "axisRow" if name == "window_start" else None,
                     name in CLASS_COLUMNS, date_numfmt)
        for name in COLUMNS
    )
    col_items = "<i><x/></i>" + "".join(
        f'<i i="{i}"><x v="{i}"/></i>' for i in range(1, len(CLASSES))
    )
    data_fields = "".join(
        f'<dataField name="{CLASS_LABELS[c]}" fld="{FIELD[f"{c}_bytes"]}" baseField="0" '
        f'baseItem="0" numFmtId="{NUMFMT_THOUSANDS}"/>'
        for c in CLASSES
    )
    # One chartFormat per series ties chart 0 (the PivotChart's fmtId) to each value field.
    chart_formats = "".join(
        f'<chartFormat chart="0" format="{i}" series="1"><pivotArea type="data" outline="0" '
        f'fieldPosition="0"><references count="1"><reference field="4294967294" count="1" '
        f'selected="0"><x v="{i}"/></reference></references></pivotArea></chartFormat>'
        for i in range(len(CLASSES))
    )
    return (
        _definition_open(layout, 1)
        + f'<pivotFields count="{len(COLUMNS)}">{fields}</pivotFields>'
        + f'<rowFields count="1"><field x="{FIELD["window_start"]}"/></rowFields>'
        + _axis_items("rowItems", len(items.windows), True)
        + '<colFields count="1"><field x="-2"/></colFields>'
        + f'<colItems count="{len(CLASSES)}">{col_items}</colItems>'
        + f'<dataFields count="{len(CLASSES)}">{data_fields}</dataFields>'
        + f'<chartFormats count="{len(CLASSES)}">{chart_formats}</chartFormats>'
        + _style()
        + "</pivotTableDefinition>"
    )


def slicer_cache_xml(field: str, items: CacheItems, pivots: Sequence[tuple[int, str]]) -> str:
    """A slicer cache on the shared pivot cache, connected to every pivot in `pivots`.

    One cache per field (Excel's rule); listing both pivots is what makes one click filter both.
    """
    tables = "".join(f'<pivotTable tabId="{tab}" name={quoteattr(name)}/>' for tab, name in pivots)
    n = len(items.items(field))
    listed = "".join(f'<i x="{i}" s="1"/>' for i in range(n))
    return (
        f'{XML_DECL}<slicerCacheDefinition xmlns="{X14_NS}" xmlns:mc="{MC_NS}" '
        f'mc:Ignorable="x" xmlns:x="{MAIN_NS}" name="{slicer_cache_name(field)}" '
        f'sourceName="{field}"><pivotTables>{tables}</pivotTables><data>'
        f'<tabular pivotCacheId="{PIVOT_CACHE_ID}"><items count="{n}">{listed}</items>'
        "</tabular></data></slicerCacheDefinition>"
    )


def slicer_cache_name(field: str) -> str:
    return f"Slicer_{field}"


def slicers_xml(fields: Sequence[str]) -> str:
    """The slicer views of one sheet: one per field, each on its own cache."""
    views = "".join(
        f'<slicer name="{f}" cache="{slicer_cache_name(f)}" caption="{f}" '
        f'{"columnCount=" + chr(34) + "2" + chr(34) + " " if f == "direction" else ""}'
        f'rowHeight="241300"/>'
        for f in fields
    )
    return (f'{XML_DECL}<slicers xmlns="{X14_NS}" xmlns:mc="{MC_NS}" mc:Ignorable="x" '
            f'xmlns:x="{MAIN_NS}">{views}</slicers>')


def slicer_anchor_xml(field: str, shape_id: int, from_cell: tuple[int, int],
                      to_cell: tuple[int, int]) -> str:
    """A drawing anchor for a slicer, with a text box for applications that lack slicers."""
    (c0, r0), (c1, r1) = from_cell, to_cell
    fallback = escape(f"Slicer: {field} (shown by Excel 2010 or later)")
    return (
        f"<xdr:twoCellAnchor editAs=\"oneCell\"><xdr:from><xdr:col>{c0}</xdr:col>"
        f"<xdr:colOff>0</xdr:colOff><xdr:row>{r0}</xdr:row><xdr:rowOff>0</xdr:rowOff></xdr:from>"
        f"<xdr:to><xdr:col>{c1}</xdr:col><xdr:colOff>0</xdr:colOff><xdr:row>{r1}</xdr:row>"
        f"<xdr:rowOff>0</xdr:rowOff></xdr:to>"
        f'<mc:AlternateContent xmlns:mc="{MC_NS}">'
        '<mc:Choice xmlns:a14="http://schemas.microsoft.com/office/drawing/2010/main" '
        'Requires="a14"><xdr:graphicFrame macro=""><xdr:nvGraphicFramePr>'
        f'<xdr:cNvPr id="{shape_id}" name="{field}"/><xdr:cNvGraphicFramePr/>'
        '</xdr:nvGraphicFramePr><xdr:xfrm><a:off x="0" y="0"/><a:ext cx="0" cy="0"/></xdr:xfrm>'
        '<a:graphic><a:graphicData uri="http://schemas.microsoft.com/office/drawing/2010/slicer">'
        '<sle:slicer xmlns:sle="http://schemas.microsoft.com/office/drawing/2010/slicer" '
        f'name="{field}"/></a:graphicData></a:graphic></xdr:graphicFrame></mc:Choice>'
        '<mc:Fallback><xdr:sp macro="" textlink=""><xdr:nvSpPr>'
        f'<xdr:cNvPr id="{shape_id}" name="{field} slicer"/><xdr:cNvSpPr txBox="1"/></xdr:nvSpPr>'
        '<xdr:spPr><a:xfrm><a:off x="0" y="0"/><a:ext cx="1828800" cy="1828800"/></a:xfrm>'
        '<a:prstGeom prst="rect"><a:avLst/></a:prstGeom><a:solidFill><a:srgbClr val="F2F2F2"/>'
        '</a:solidFill><a:ln w="9525"><a:solidFill><a:srgbClr val="A6A6A6"/></a:solidFill></a:ln>'
        '</xdr:spPr><xdr:txBody><a:bodyPr vertOverflow="clip" horzOverflow="clip" wrap="square"/>'
        f'<a:lstStyle/><a:p><a:r><a:rPr lang="en-US" sz="1000"/><a:t>{fallback}</a:t></a:r></a:p>'
        '</xdr:txBody></xdr:sp></mc:Fallback></mc:AlternateContent><xdr:clientData/>'
        "</xdr:twoCellAnchor>"
    )


def pivot_source_xml(workbook_file: str, sheet: str, pivot_name: str) -> str:
    """The chart element that makes a chart a PivotChart of `pivot_name`."""
    name = escape(f"[{workbook_file}]{sheet}!{pivot_name}")
    return f'<c:pivotSource><c:name>{name}</c:name><c:fmtId val="0"/></c:pivotSource>'


def connection_xml(csv_path: str, delimiter: str) -> str:
    """A legacy text connection to traffic.csv: Refresh All re-reads it into the Data table.

    UTF-8, header skipped by the query table, dates typed YMD so they stay date-times, client_ip
    and direction as text so Excel never guesses a number out of an address.
    """
    types = {"window_start": "YMD", "window_end": "YMD", "client_ip": "text",
             "direction": "text"}
    fields = "".join(
        f'<textField type="{types[c]}"/>' if c in types else "<textField/>" for c in COLUMNS
    )
    comma, semicolon = ("1", "0") if delimiter == "," else ("0", "1")
    return (
        f'{XML_DECL}<connections xmlns="{MAIN_NS}"><connection id="1" name="traffic_csv" '
        f'type="6" refreshedVersion="6" background="0" saveData="1">'
        f'<textPr prompt="0" codePage="65001" sourceFile={quoteattr(csv_path)} delimited="1" '
        f'tab="0" comma="{comma}" semicolon="{semicolon}">'
        f'<textFields count="{len(COLUMNS)}">{fields}</textFields></textPr></connection>'
        "</connections>"
    )


def query_table_xml() -> str:
    """The query table that lands the connection's rows in the Data Table, keeping its formats."""
    fields = "".join(
        f'<queryTableField id="{i}" name="{c}" tableColumnId="{i}"/>'
        for i, c in enumerate(COLUMNS, start=1)
    )
    return (
        f'{XML_DECL}<queryTable xmlns="{MAIN_NS}" name="traffic_csv" connectionId="1" '
        'autoFormatId="16" applyNumberFormats="0" applyBorderFormats="0" applyFontFormats="0" '
        'applyPatternFormats="0" applyAlignmentFormats="0" applyWidthHeightFormats="0" '
        f'adjustColumnWidth="0"><queryTableRefresh nextId="{len(COLUMNS) + 1}">'
        f'<queryTableFields count="{len(COLUMNS)}">{fields}</queryTableFields>'
        "</queryTableRefresh></queryTable>"
    )
