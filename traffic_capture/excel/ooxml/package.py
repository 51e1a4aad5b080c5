"""An .xlsx as a dict of parts: read, add relationships and content types, write back.

Kept tiny on purpose: string edits on the few XML parts XlsxWriter wrote, whose shape we know.
A part too big to hold as one text (a million rows, their pivot records) is a stream of chunks,
made and compressed as the package is written.
"""

from __future__ import annotations

import posixpath
import re
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path
from xml.sax.saxutils import quoteattr

CT_PREFIX = "application/vnd.openxmlformats-officedocument.spreadsheetml."
CT = {
    "pivotCacheDefinition": CT_PREFIX + "pivotCacheDefinition+xml",
    "pivotCacheRecords": CT_PREFIX + "pivotCacheRecords+xml",
    "pivotTable": CT_PREFIX + "pivotTable+xml",
    "connections": CT_PREFIX + "connections+xml",
    "queryTable": CT_PREFIX + "queryTable+xml",
    "slicerCache": "application/vnd.ms-excel.slicerCache+xml",
    "slicer": "application/vnd.ms-excel.slicer+xml",
}
REL_PREFIX = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/"
REL = {
    "pivotCacheDefinition": REL_PREFIX + "pivotCacheDefinition",
    "pivotCacheRecords": REL_PREFIX + "pivotCacheRecords",
    "pivotTable": REL_PREFIX + "pivotTable",
    "connections": REL_PREFIX + "connections",
    "queryTable": REL_PREFIX + "queryTable",
    "slicerCache": "http://schemas.microsoft.com/office/2007/relationships/slicerCache",
    "slicer": "http://schemas.microsoft.com/office/2007/relationships/slicer",
}
RELS_NS = "http://schemas.openxmlformats.org/package/2006/relationships"


class Package:
    """The parts of a zip package, edited in memory."""

    def __init__(self, parts: dict[str, bytes]) -> None:
        self.parts = parts
        self.streams: dict[str, Iterable[bytes]] = {}

    @classmethod
    def read(cls, path: Path) -> Package:
        with zipfile.ZipFile(path) as zf:
            return cls({name: zf.read(name) for name in zf.namelist()})

    def write(self, path: Path) -> None:
        # [Content_Types].xml first, as Office writes it; some readers sniff the first entry.
        names = sorted(self.parts, key=lambda n: (n != "[Content_Types].xml", n))
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in names:
                if name in self.streams:
                    entry = zipfile.ZipInfo(name, time.localtime(time.time())[:6])
                    entry.compress_type = zipfile.ZIP_DEFLATED
                    with zf.open(entry, "w") as out:
                        for chunk in self.streams[name]:
                            out.write(chunk)
                else:
                    zf.writestr(name, self.parts[name])

    def text(self, name: str) -> str:
        if name in self.streams:
            raise ValueError(f"{name} is streamed: its text is made as the package is written")
        return self.parts[name].decode("utf-8")

    def set_text(self, name: str, xml: str) -> None:
        self.streams.pop(name, None)
        self.parts[name] = xml.encode("utf-8")

    def set_stream(self, name: str, chunks: Iterable[bytes]) -> None:
        """The part is `chunks`, consumed once, when the package is written."""
        self.parts[name] = b""
        self.streams[name] = chunks

    def add_part(self, name: str, xml: str, kind: str) -> None:
        """Add a part and its content-type override."""
        self.set_text(name, xml)
        self._add_type(name, kind)

    def add_stream(self, name: str, chunks: Iterable[bytes], kind: str) -> None:
        """Add a streamed part (set_stream) and its content-type override."""
        self.set_stream(name, chunks)
        self._add_type(name, kind)

    def _add_type(self, name: str, kind: str) -> None:
        types = self.text("[Content_Types].xml")
        override = f'<Override PartName="/{name}" ContentType="{CT[kind]}"/>'
        self.set_text("[Content_Types].xml", types.replace("</Types>", override + "</Types>"))

    def relate(self, source: str, target: str, kind: str) -> str:
        """Add a relationship from part `source` to part `target`; return its r:id."""
        folder, base = posixpath.split(source)
        rels_name = posixpath.join(folder, "_rels", base + ".rels")
        if rels_name in self.parts:
            rels = self.text(rels_name)
        else:
            rels = f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' \
                   f'<Relationships xmlns="{RELS_NS}"></Relationships>'
        used = {int(n) for n in re.findall(r'Id="rId(\d+)"', rels)}
        rid = f"rId{max(used, default=0) + 1}"
        relative = posixpath.relpath(target, folder or ".")
        rel = (f'<Relationship Id="{rid}" Type="{REL.get(kind, kind)}" '
               f"Target={quoteattr(relative)}/>")
        self.set_text(rels_name, rels.replace("</Relationships>", rel + "</Relationships>"))
        return rid

    def sheet_part(self, sheet_name: str) -> str:
        """The worksheet part of the sheet called `sheet_name`."""
        workbook = self.text("xl/workbook.xml")
        match = re.search(rf'<sheet name={quoteattr(sheet_name)} sheetId="\d+" r:id="(rId\d+)"',
                          workbook)
        if not match:
            raise KeyError(sheet_name)
        rels = self.text("xl/_rels/workbook.xml.rels")
        target = re.search(rf'Id="{match.group(1)}"[^>]*Target="([^"]+)"', rels)
        if not target:
            raise KeyError(sheet_name)
        return posixpath.normpath(posixpath.join("xl", target.group(1)))

    def sheet_id(self, sheet_name: str) -> int:
        workbook = self.text("xl/workbook.xml")
        match = re.search(rf'<sheet name={quoteattr(sheet_name)} sheetId="(\d+)"', workbook)
        if not match:
            raise KeyError(sheet_name)
        return int(match.group(1))

    def rels_of(self, part: str) -> dict[str, str]:
        """r:id -> absolute target part name, for `part`'s relationships."""
        folder, base = posixpath.split(part)
        rels_name = posixpath.join(folder, "_rels", base + ".rels")
        if rels_name not in self.parts:
            return {}
        out = {}
        for rel in re.findall(r"<Relationship [^>]*>", self.text(rels_name)):
            rid = re.search(r'Id="([^"]+)"', rel)
            target = re.search(r'Target="([^"]+)"', rel)
            if not rid or not target or 'TargetMode="External"' in rel:
                continue
            path = target.group(1)
            path = path[1:] if path.startswith("/") else posixpath.join(folder, path)
            out[rid.group(1)] = posixpath.normpath(path)
        return out


def insert_before(xml: str, anchors: tuple[str, ...], fragment: str) -> str:
    """Insert `fragment` before the first of `anchors` found (schema order matters to Excel)."""
    for anchor in anchors:
        pos = xml.find(anchor)
        if pos >= 0:
            return xml[:pos] + fragment + xml[pos:]
    raise ValueError(f"none of {anchors} found")
