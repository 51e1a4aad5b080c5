"""Pivot cache, its records, PivotTables, slicers and the PivotChart's pivot link, as XML strings.

The cache carries its records (as every workbook Excel saves with slicers does) and still asks for
a refresh on load, so Excel recomputes both pivots from the Data sheet when the file opens. The
pivots' cells are written by the dashboard too, so a file opened where nothing refreshes
(Protected View) shows the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

import pandas as pd

from traffic_capture.csvformat import COLUMNS
from traffic_capture.excel.addresses import in_address_order
from traffic_capture.excel.ooxml import rows
from traffic_capture.rules import CLASS_LABELS, CLASSES

MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
R_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
X14_NS = "http://schemas.microsoft.com/office/spreadsheetml/2009/9/main"
MC_NS = "http://schemas.openxmlformats.org/markup-compatibility/2006"
XML_DECL = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'

PIVOT_CACHE_ID = 1  # the x14 id slicer caches use to name the pivot cache
CLASS_COLUMNS = tuple(f"{c}_bytes" for c in CLASSES)
# Legend names of the protocol pivot's values; they must differ from every field name.
TEXT_FIELDS = ("client_ip", "direction", "server")  # server: a fleet's rows
GRAND_TOTAL = "Grand Total"
CLIENT_VALUES = "Total bytes"  # the client pivot's data field caption
VALUES_CAPTION = "Values"


@dataclass(frozen=True)
class CacheItems:
    """What the pivot cache must say about each field of the Data sheet.

    `listed` holds the sorted distinct values of the fields that pivots put on an axis or that
    slicers filter (their shared items are written out); the others are described by range only.
    """

    fields: tuple[str, ...]
    listed: dict[str, tuple[object, ...]]
    date_ranges: dict[str, tuple[pd.Timestamp, pd.Timestamp]]
    max_numbers: dict[str, int]
    rows: int

    def items(self, field: str) -> tuple[object, ...]:
        return self.listed[field]

    def index(self, field: str) -> int:
        return self.fields.index(field)


@dataclass(frozen=True)
class PivotLayout:
    """Where a pivot sits and which cells its chart reads."""

    name: str
    sheet: str
    top: int  # 1-based row of the pivot's first row
    n_rows: int  # row items, grand total excluded
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


def cache_items(df: pd.DataFrame, listed: Sequence[str]) -> CacheItems:
    """The cache's description of `df` (the Data sheet's columns, typed), listing `listed`."""
    dates = [c for c in df.columns if pd.api.types.is_datetime64_any_dtype(df[c])]
    numbers = [c for c in df.columns if pd.api.types.is_integer_dtype(df[c])]
    def ordered(field: str) -> list[object]:
        values = df[field].unique()
        return list(in_address_order(values) if field == "client_ip" else sorted(values))

    return CacheItems(
        fields=tuple(df.columns),
        listed={f: tuple(pd.Timestamp(v) if f in dates else v for v in ordered(f))
                for f in listed},
        date_ranges={c: (pd.Timestamp(df[c].min()), pd.Timestamp(df[c].max())) for c in dates},
        max_numbers={c: int(df[c].max()) for c in numbers},
        rows=len(df),
    )


def _iso(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S")


def _date_shared_items(values: Sequence[object], lo: pd.Timestamp, hi: pd.Timestamp,
                       listed: bool) -> str:
    attrs = (f'containsSemiMixedTypes="0" containsNonDate="0" containsDate="1" '
             f'containsString="0" minDate="{_iso(lo)}" maxDate="{_iso(hi)}"')
    if not listed:
        return f"<sharedItems {attrs}/>"
    body = "".join(f'<d v="{_iso(pd.Timestamp(v))}"/>' for v in values)
    return f'<sharedItems {attrs} count="{len(values)}">{body}</sharedItems>'


def worksheet_source(name: str, sheet: str | None = None) -> str:
    """The cache source: a Table's name, or a defined name local to `sheet`."""
    where = f" sheet={quoteattr(sheet)}" if sheet else ""
    return f'<cacheSource type="worksheet"><worksheetSource name={quoteattr(name)}{where}/>' \
           "</cacheSource>"


def pivot_cache_xml(items: CacheItems, source: str, numfmts: dict[str, int],
                    records_rid: str) -> str:
    """The pivot cache definition, with its records part (`records_rid`) and refresh on load.

    `source` is worksheet_source()'s element; `numfmts` the number format of each date field.
    """
    fields = []
    for name in items.fields:
        if name in items.date_ranges:
            shared = _date_shared_items(items.listed.get(name, ()), *items.date_ranges[name],
                                        listed=name in items.listed)
        elif name in TEXT_FIELDS:
            values = items.items(name)
            body = "".join(f"<s v={quoteattr(rows.excel_text(str(v)))}/>" for v in values)
            shared = f'<sharedItems count="{len(values)}">{body}</sharedItems>'
        else:
            shared = ('<sharedItems containsSemiMixedTypes="0" containsString="0" '
                      f'containsNumber="1" containsInteger="1" minValue="0" '
                      f'maxValue="{items.max_numbers[name]}"/>')
        fields.append(f'<cacheField name={quoteattr(name)} numFmtId="{numfmts.get(name, 0)}">'
                      f"{shared}</cacheField>")
    return (
        f'{XML_DECL}<pivotCacheDefinition xmlns="{MAIN_NS}" xmlns:r="{R_NS}" r:id="{records_rid}" '
        f'refreshOnLoad="1" createdVersion="6" refreshedVersion="6" minRefreshableVersion="3" '
        f'recordCount="{items.rows}">{source}'
        f'<cacheFields count="{len(fields)}">{"".join(fields)}</cacheFields>'
        f'<extLst><ext uri="{{725AE2AE-9491-48be-B2B4-4EB974FC3084}}" xmlns:x14="{X14_NS}">'
        f'<x14:pivotCacheDefinition pivotCacheId="{PIVOT_CACHE_ID}"/></ext></extLst>'
        "</pivotCacheDefinition>"
    )


def pivot_records_chunks(df: pd.DataFrame, items: CacheItems) -> Iterator[bytes]:
    """One record per Data row: listed fields as indexes into their shared items, the others as
    values; made a chunk of rows at a time, one %-format per record (a million records: a
    few seconds, and a few MB at a time)."""
    cells: list[str] = []
    columns: list[rows.ChunkValues] = []
    for name in items.fields:
        column = df[name]
        if name in items.listed:
            codes = pd.Categorical(column, categories=list(items.listed[name])).codes
            cells.append('<x v="%d"/>')
            columns.append(rows.ChunkValues(codes))
        elif name in items.date_ranges:
            cells.append('<d v="%s"/>')
            columns.append(rows.ChunkValues(column, lambda t: pd.Timestamp(t).strftime(
                "%Y-%m-%dT%H:%M:%S")))
        elif name in TEXT_FIELDS:
            cells.append("<s v=%s/>")
            columns.append(rows.ChunkValues(
                column, lambda text: quoteattr(rows.excel_text(str(text)))))
        else:
            cells.append('<n v="%d"/>')
            columns.append(rows.ChunkValues(column))
    yield (f'{XML_DECL}<pivotCacheRecords xmlns="{MAIN_NS}" xmlns:r="{R_NS}" '
           f'count="{len(df)}">').encode()
    yield from rows.chunks_of("<r>" + "".join(cells) + "</r>", columns, len(df))
    yield b"</pivotCacheRecords>"


def pivot_records_xml(df: pd.DataFrame, items: CacheItems) -> str:
    """The records part as one text (pivot_records_chunks joined)."""
    return b"".join(pivot_records_chunks(df, items)).decode("utf-8")


def _pivot_field(name: str, items: CacheItems, axis: str | None, data: bool,
                 numfmts: dict[str, int]) -> str:
    attrs = []
    if axis:
        attrs.append(f'axis="{axis}"')
    if data:
        attrs.append('dataField="1"')
    attrs.append('compact="0" outline="0" showAll="0"')
    if name in numfmts:
        attrs.append(f'numFmtId="{numfmts[name]}"')
    attrs.append('defaultSubtotal="0"')
    head = f"<pivotField {' '.join(attrs)}"
    if name in items.listed:
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
        f'applyWidthHeightFormats="1" dataCaption="{VALUES_CAPTION}" updatedVersion="6" '
        f'minRefreshableVersion="3" useAutoFormatting="1" itemPrintTitles="1" '
        f'createdVersion="6" indent="0" compact="0" compactData="0" outline="1" '
        f'outlineData="1" multipleFieldFilters="0"{chart}>'
        f'<location ref="{layout.ref}" firstHeaderRow="1" firstDataRow="2" firstDataCol="1"/>'
    )


def client_pivot_xml(layout: PivotLayout, items: CacheItems, row_field: str,
                     numfmts: dict[str, int], value_numfmt: int) -> str:
    """Rows `row_field` (a time unit), columns client_ip, values sum of total_bytes."""
    fields = "".join(
        _pivot_field(name, items,
                     {row_field: "axisRow", "client_ip": "axisCol"}.get(name),
                     name == "total_bytes", numfmts)
        for name in items.fields
    )
    return (
        _definition_open(layout, 0)
        + f'<pivotFields count="{len(items.fields)}">{fields}</pivotFields>'
        + f'<rowFields count="1"><field x="{items.index(row_field)}"/></rowFields>'
        + _axis_items("rowItems", len(items.items(row_field)), True)
        + f'<colFields count="1"><field x="{items.index("client_ip")}"/></colFields>'
        + _axis_items("colItems", len(items.items("client_ip")), True)
        + f'<dataFields count="1"><dataField name="{CLIENT_VALUES}" '
        f'fld="{items.index("total_bytes")}" baseField="0" baseItem="0" '
        f'numFmtId="{value_numfmt}"/></dataFields>'
        + _style()
        + "</pivotTableDefinition>"
    )


def protocol_pivot_xml(layout: PivotLayout, items: CacheItems, row_field: str,
                       numfmts: dict[str, int], value_numfmt: int) -> str:
    """Rows `row_field`, one value column per protocol class; the PivotChart's source."""
    fields = "".join(
        _pivot_field(name, items, "axisRow" if name == row_field else None,
                     name in CLASS_COLUMNS, numfmts)
        for name in items.fields
    )
    col_items = "<i><x/></i>" + "".join(
        f'<i i="{i}"><x v="{i}"/></i>' for i in range(1, len(CLASSES))
    )
    data_fields = "".join(
        f'<dataField name="{CLASS_LABELS[c]}" fld="{items.index(f"{c}_bytes")}" baseField="0" '
        f'baseItem="0" numFmtId="{value_numfmt}"/>'
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
        + f'<pivotFields count="{len(items.fields)}">{fields}</pivotFields>'
        + f'<rowFields count="1"><field x="{items.index(row_field)}"/></rowFields>'
        + _axis_items("rowItems", len(items.items(row_field)), True)
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


def connection_xml(csv_path: str, delimiter: str, name: str) -> str:
    """A text connection to traffic.csv: Refresh All re-reads it into the Data sheet's range.

    UTF-8, the CSV's own delimiter, dates typed YMD so they stay date-times, client_ip and
    direction as text so Excel never guesses a number out of an address.
    """
    types = {"window_start": "YMD", "window_end": "YMD", "client_ip": "text",
             "direction": "text"}
    fields = "".join(
        f'<textField type="{types[c]}"/>' if c in types else "<textField/>" for c in COLUMNS
    )
    flags = {"tab": "\t", "comma": ",", "semicolon": ";"}
    attrs = " ".join(f'{flag}="{int(delimiter == char)}"' for flag, char in flags.items())
    if delimiter not in flags.values():
        attrs += f" delimiter={quoteattr(delimiter)}"
    return (
        f'{XML_DECL}<connections xmlns="{MAIN_NS}"><connection id="1" name={quoteattr(name)} '
        f'type="6" refreshedVersion="6" background="0" saveData="1">'
        f'<textPr prompt="0" codePage="65001" sourceFile={quoteattr(csv_path)} delimited="1" '
        f'{attrs}><textFields count="{len(COLUMNS)}">{fields}</textFields></textPr></connection>'
        "</connections>"
    )


def query_table_xml(name: str, fields: Sequence[str]) -> str:
    """The query table that lands the connection's rows in a worksheet range (Excel binds text
    imports to ranges, never to Tables). Its name is also the defined name of that range. Fields
    past the CSV's columns are formulas the refresh fills down (dataBound="0")."""
    body = "".join(
        f'<queryTableField id="{i}" name={quoteattr(c)}/>' if c in COLUMNS else
        f'<queryTableField id="{i}" name={quoteattr(c)} dataBound="0" fillFormulas="1"/>'
        for i, c in enumerate(fields, start=1)
    )
    formulas = ' fillFormulas="1"' if len(fields) > len(COLUMNS) else ""
    return (
        f'{XML_DECL}<queryTable xmlns="{MAIN_NS}" name={quoteattr(name)} connectionId="1" '
        f'backgroundRefresh="0" adjustColumnWidth="0"{formulas} autoFormatId="16" '
        'applyNumberFormats="0" applyBorderFormats="0" applyFontFormats="0" '
        'applyPatternFormats="0" applyAlignmentFormats="0" applyWidthHeightFormats="0">'
        f'<queryTableRefresh nextId="{len(fields) + 1}">'
        f'<queryTableFields count="{len(fields)}">{body}</queryTableFields>'
        "</queryTableRefresh></queryTable>"
    )
