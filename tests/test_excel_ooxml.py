"""The workbook checks' own speed-up: openxml-audit with its sibling positions counted once per
parent (tests/excel_ooxml.py) finds exactly what it finds alone, paths included."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tests.excel_data import traffic_rows, write_traffic_csv
from tests.excel_ooxml import audit_problems, positions_counted_once, read_parts
from traffic_capture.excel import dashboard

pytestmark = pytest.mark.filterwarnings("ignore:Slicer List extension:UserWarning")


def test_the_counted_once_positions_find_what_openxml_audit_finds_alone(tmp_path: Path) -> None:
    """A workbook with a wrong row height on the Data sheet's 20th row: the same finding, at
    the same path (row[n], n counted among the sheet's rows), with and without the speed-up."""
    from openxml_audit import FileFormat, OpenXmlValidator

    csv = write_traffic_csv(tmp_path / "traffic.csv", traffic_rows(windows=6))
    good = tmp_path / "good.xlsx"
    assert dashboard.main(["--csv", str(csv), "--out", str(good)]) == 0
    parts = read_parts(good)
    sheet = next(name for name in parts if name.startswith("xl/worksheets/")
                 and b'<row r="20"' in parts[name])
    at = parts[sheet].index(b'<row r="20"')
    position = parts[sheet][:at].count(b"<row ") + 1
    parts[sheet] = parts[sheet][:at] + b'<row ht="abc"' + parts[sheet][at + len(b"<row"):]
    bad = tmp_path / "bad.xlsx"
    with zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as out:
        for name, data in parts.items():
            out.writestr(name, data)

    validator = OpenXmlValidator(file_format=FileFormat.MICROSOFT_365, max_errors=0, strict=True)
    alone = [(e.part_uri, e.path, e.description) for e in validator.validate(str(bad)).errors]
    with positions_counted_once():
        counted_once = [(e.part_uri, e.path, e.description)
                        for e in validator.validate(str(bad)).errors]
    assert [path for _, path, _ in alone] == [f"/worksheet[1]/sheetData[1]/row[{position}]"]
    assert counted_once == alone
    assert audit_problems(good) == []
