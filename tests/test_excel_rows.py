"""The Data sheets' rows made in chunks (excel/ooxml/rows.py) are the cells XlsxWriter writes
one by one: the same XML, the same shared strings, at every chunk boundary."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xlsxwriter
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.excel_ooxml import package_problems
from traffic_capture.excel.ooxml import rows
from traffic_capture.excel.ooxml.package import Package

SHEET = "xl/worksheets/sheet1.xml"
FORMULA = "=INT(A{row})+HOUR(A{row})/24"


def _write(path: Path, columns: list[rows.SheetColumn], first_only: bool) -> None:
    """A header, then the rows cell by cell (all of them, or the first only), as the
    workbook commands write them with XlsxWriter."""
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("Data")
    date = wb.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    count = wb.add_format({"num_format": "#,##0"})
    for col in range(len(columns)):
        ws.write_string(0, col, f"column {col}")
    ws.write_string(0, len(columns) + 1, "in")  # a text the rows use, already shared
    n = len(columns[0].values)
    for row in range(1 if first_only else n):
        for col, column in enumerate(columns):
            value = column.values[row]
            if column.kind == "text":
                ws.write_string(row + 1, col, str(value))
            elif column.kind == "formula":
                ws.write_formula(row + 1, col, column.formula.format(row=row + 2), date,
                                 float(value))
            else:
                ws.write_number(row + 1, col, value.item(), count if col % 2 else date)
    wb.close()


def _resolved(path: Path) -> tuple[str, list[str], int]:
    """The sheet with each shared-string index replaced by its text; the table's entries,
    and its count of references."""
    with zipfile.ZipFile(path) as zf:
        sheet = zf.read(SHEET).decode()
        sst = zf.read("xl/sharedStrings.xml").decode()
    entries = re.findall(r"<si>(.*?)</si>", sst, flags=re.S)
    count, unique = map(int, re.search(r'count="(\d+)" uniqueCount="(\d+)"', sst).groups())
    assert unique == len(entries)
    sheet = re.sub(r'( t="s"><v>)(\d+)(</v>)',
                   lambda m: m.group(1) + entries[int(m.group(2))] + m.group(3), sheet)
    return sheet, sorted(entries), count


def _same_as_xlsxwriter(tmp_path: Path, columns: list[rows.SheetColumn], chunk: int) -> None:
    reference, made = tmp_path / "reference.xlsx", tmp_path / "made.xlsx"
    _write(reference, columns, first_only=False)
    _write(made, columns, first_only=True)
    pkg = Package.read(made)
    rows.fill_rows(pkg, SHEET, columns, chunk_rows=chunk)
    pkg.write(made)
    assert _resolved(made) == _resolved(reference)
    assert package_problems(made) == []


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)


@settings(max_examples=40, deadline=None)
@given(cells=st.lists(st.tuples(texts, st.sampled_from(["in", "out", " x", "_x0041_"]),
                                st.integers(0, 2**53), st.floats(40000, 50000)),
                      min_size=1, max_size=25),
       chunk=st.integers(1, 7))
def test_rows_made_in_chunks_are_xlsxwriters_cells(tmp_path_factory: pytest.TempPathFactory,
                                                   cells: list[tuple], chunk: int) -> None:
    client, direction, number, serial = map(list, zip(*cells, strict=True))
    columns = [
        rows.SheetColumn(np.array(serial)),
        rows.SheetColumn(np.array(number, dtype=np.int64)),
        rows.SheetColumn(np.array(client, dtype=object), "text"),
        rows.SheetColumn(pd.Series(direction), "text"),
        rows.SheetColumn(np.floor(np.array(serial) * 24) / 24, "formula", FORMULA),
    ]
    _same_as_xlsxwriter(tmp_path_factory.mktemp("rows"), columns, chunk)


def test_a_table_over_the_first_row_grows_with_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "t.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("Data")
    ws.add_table(0, 0, 1, 1, {"name": "T", "columns": [{"header": "a"}, {"header": "b"}]})
    ws.write_number(1, 0, 1)
    ws.write_string(1, 1, "x")
    wb.close()
    pkg = Package.read(path)
    rows.fill_rows(pkg, SHEET, [rows.SheetColumn(np.arange(1, 8)),
                                rows.SheetColumn(np.array(list("xyzxyzx"), dtype=object),
                                                 "text")])
    pkg.write(path)
    with zipfile.ZipFile(path) as zf:
        table = zf.read("xl/tables/table1.xml").decode()
        sheet = zf.read(SHEET).decode()
    assert 'ref="A1:B8"' in table and '<autoFilter ref="A1:B8"/>' in table
    assert '<dimension ref="A1:B8"/>' in sheet and '<row r="8"' in sheet
    assert package_problems(path) == []
