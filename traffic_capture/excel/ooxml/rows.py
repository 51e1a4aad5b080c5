"""A sheet's data rows as XML, made a chunk of rows at a time, for Data sheets of a million rows.

XlsxWriter writes a cell in about 5 µs and keeps about 250 bytes per cell until it closes: a
million-row Data sheet (13 million cells) took 77 s and 3 GB. So the workbook commands let it
write the header and the first data row only (which fixes each column's style and the cells'
shape), and `fill_rows` replaces that row with every row, made here with one %-format per row
from the columns' arrays, streamed into the zip a chunk at a time. The cells are XlsxWriter's:
the styles it gave the first row, its shared strings (the new texts appended), numbers as it
writes them (`%.16G`; a formula's cached value as `str()`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd

from traffic_capture.excel.ooxml.package import Package

CHUNK_ROWS = 16_384  # rows made and compressed at a time: a few MB of text
SHARED_STRINGS = "xl/sharedStrings.xml"
# Integers below this are written with %d, which equals XlsxWriter's %.16G for them.
EXACT_INTEGERS = 10**15
KINDS = ("number", "text", "formula")


@dataclass(frozen=True)
class SheetColumn:
    """One column of the rows: a value per row, and how its cells are written.

    kind "number": a number (a date-time is its Excel serial); "text": a shared string;
    "formula": `formula` (with {row} for the cell's 1-based row) and its cached number.
    """

    values: np.ndarray | pd.Series
    kind: str = "number"
    formula: str = ""


@dataclass(frozen=True)
class _Cell:
    """The first data row's cell of a column, as XlsxWriter wrote it."""

    letters: str
    attributes: str  # ' s="9"', ' t="s"', ...


def fill_rows(pkg: Package, sheet: str, columns: Sequence[SheetColumn],
              chunk_rows: int = CHUNK_ROWS) -> None:
    """Replace the sheet's row 2 (its first data row, written by XlsxWriter from the first
    values of `columns`) with one row per value, streamed when the package is written. A
    Table of the sheet that ends on row 2 is stretched over them."""
    xml = pkg.text(sheet)
    found = re.search(r'<row r="2"[^>]*>.*?</row>', xml)
    if found is None:
        raise ValueError(f"{sheet}: no row 2 to take the cells' shape from")
    row_open = re.match(r"<row[^>]*>", found.group(0))
    assert row_open is not None
    cells = [_Cell(letters, attributes) for letters, attributes in
             re.findall(r'<c r="([A-Z]+)2"((?: [a-z]+="[^"]*")*)>', found.group(0))]
    if len(cells) != len(columns):
        raise ValueError(f"{sheet}: row 2 has {len(cells)} cells for {len(columns)} columns")
    n = len(columns[0].values)
    texts = _shared_strings(pkg, [c for c in columns if c.kind == "text"], n)
    template, row_slots = _row_template(row_open.group(0), cells, columns)
    numbers = ChunkValues(np.arange(2, n + 2))  # the rows' own numbers
    values = [numbers, _spans(row_open.group(0), cells, numbers)]
    for column, slots in zip(columns, row_slots, strict=True):
        values.extend([numbers] * (1 + slots))
        values.append(_column_values(column, texts))

    for table in pkg.rels_of(sheet).values():
        if "/tables/" in table:
            pkg.set_text(table, re.sub(r'ref="([A-Z]+\d+:[A-Z]+)2"', rf'ref="\g<1>{n + 1}"',
                                       pkg.text(table)))
    head = re.sub(r'(<dimension ref="[A-Z]+\d+:[A-Z]+)(\d+)"/>',
                  lambda m: f'{m.group(1)}{max(int(m.group(2)), n + 1)}"/>',
                  xml[:found.start()], count=1)
    tail = xml[found.end():]

    def chunks() -> Iterator[bytes]:
        yield head.encode("utf-8")
        yield from chunks_of(template, values, n, chunk_rows)
        yield tail.encode("utf-8")

    pkg.set_stream(sheet, chunks())


def _row_template(row_open: str, cells: Sequence[_Cell], columns: Sequence[SheetColumn]
                  ) -> tuple[str, list[int]]:
    """A row's %-format (its number and spans, then each cell's row-number slots and value)
    and each cell's count of row-number slots besides its reference."""
    parts = [re.sub(r' spans="[^"]*"', ' spans="%s"',
                    re.sub(r'r="2"', 'r="%d"', row_open.replace("%", "%%"), count=1))]
    if " spans=" not in row_open:
        parts[0] = parts[0].replace(">", "%s>", 1)  # its value: nothing
    slots = []
    for cell, column in zip(cells, columns, strict=True):
        if column.kind not in KINDS:
            raise ValueError(f"unknown cell kind {column.kind!r}")
        if (' t="s"' in cell.attributes) != (column.kind == "text"):
            raise ValueError(f"column {cell.letters}: row 2's cell is not a {column.kind}")
        opening = f'<c r="{cell.letters}%d"{cell.attributes.replace("%", "%%")}>'
        if column.kind == "formula":
            formula = escape(column.formula.lstrip("=")).replace("%", "%%")
            slots.append(formula.count("{row}"))
            parts.append(f"{opening}<f>{formula.replace('{row}', '%d')}</f><v>%s</v></c>")
        else:
            slots.append(0)
            parts.append(f"{opening}<v>%s</v></c>")
    parts.append("</row>")
    return "".join(parts), slots


def _spans(row_open: str, cells: Sequence[_Cell], numbers: ChunkValues) -> ChunkValues:
    """Each row's spans attribute as XlsxWriter gives it: the columns used in its block of
    16 rows (the first block's, row 2's, may count the header's)."""
    first = re.search(r' spans="([^"]*)"', row_open)
    if first is None:
        return ChunkValues(np.zeros(len(numbers), dtype=np.int64), lambda _: "")
    data = f"{_column_number(cells[0].letters)}:{_column_number(cells[-1].letters)}"
    block = ((numbers.values - 1) // 16 > 0).astype(np.int64)
    return ChunkValues(block, {0: first.group(1), 1: data}.__getitem__)


def _column_number(letters: str) -> int:
    number = 0
    for letter in letters:
        number = number * 26 + ord(letter) - 64
    return number


class ChunkValues:
    """A column's values by chunk of rows, as the ints or texts a %-format takes: integers as
    they are, anything else through `show`, each distinct value once."""

    def __init__(self, values: np.ndarray | pd.Series | pd.Categorical,
                 show: Callable[[Any], object] | None = None) -> None:
        array = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
        self.values = array
        self.plain: np.ndarray | None = None
        if show is None:
            self.plain = array.astype(np.int64)
        else:
            self.codes, uniques = pd.factorize(array)
            self.texts = np.array([show(value) for value in uniques], dtype=object)

    def __len__(self) -> int:
        return len(self.values)

    def chunk(self, first: int, stop: int) -> list[Any]:
        if self.plain is not None:
            return self.plain[first:stop].tolist()
        return self.texts[self.codes[first:stop]].tolist()


def _column_values(column: SheetColumn, shared: dict[str, int]) -> ChunkValues:
    array = column.values.to_numpy() if isinstance(column.values, pd.Series) else \
        np.asarray(column.values)
    if column.kind == "text":
        return ChunkValues(array, lambda text: shared[str(text)])
    if column.kind == "formula":
        return ChunkValues(array, lambda number: str(float(number)))
    if np.issubdtype(array.dtype, np.integer) and (
            len(array) == 0 or int(np.abs(array).max()) < EXACT_INTEGERS):
        return ChunkValues(array)
    return ChunkValues(array, lambda number: format(float(number), ".16G"))


def chunks_of(template: str, columns: Sequence[ChunkValues], rows: int,
              chunk_rows: int = CHUNK_ROWS) -> Iterator[bytes]:
    """`template` % each row's values (a tuple of one chunk per column), a chunk at a time."""
    for first in range(0, rows, chunk_rows):
        stop = min(first + chunk_rows, rows)
        made: dict[int, list[Any]] = {}  # a column given twice (a row's number) is made once
        for column in columns:
            if id(column) not in made:
                made[id(column)] = column.chunk(first, stop)
        yield "".join(map(template.__mod__, zip(*(made[id(c)] for c in columns), strict=True))
                      ).encode("utf-8")


def _shared_strings(pkg: Package, columns: Sequence[SheetColumn], rows: int) -> dict[str, int]:
    """The shared-string index of every text of `columns`, appending the texts the table
    lacks; its count grows by the cells added (the row replaced held one per column)."""
    if not columns:
        return {}
    xml = pkg.text(SHARED_STRINGS)
    entries = re.findall(r"<si>(.*?)</si>", xml, flags=re.S)
    held: dict[str, int] = {}
    for number, entry in enumerate(entries):
        held.setdefault(entry, number)
    index: dict[str, int] = {}
    added: list[str] = []
    for column in columns:
        for value in pd.unique(np.asarray(column.values, dtype=object)):
            text = str(value)
            if text in index:
                continue
            entry = _si_body(text)
            if entry not in held:
                held[entry] = len(entries) + len(added)
                added.append(entry)
            index[text] = held[entry]
    opening = re.search(r'<sst [^>]*count="(\d+)" uniqueCount="(\d+)">', xml)
    if opening is None:
        raise ValueError(f"{SHARED_STRINGS}: no count and uniqueCount")
    count = int(opening.group(1)) + (rows - 1) * len(columns)
    unique = int(opening.group(2)) + len(added)
    new_opening = re.sub(r'count="\d+" uniqueCount="\d+"',
                         f'count="{count}" uniqueCount="{unique}"', opening.group(0))
    body = "".join(f"<si>{entry}</si>" for entry in added)
    xml = xml[:opening.start()] + new_opening + xml[opening.end():]
    pkg.set_text(SHARED_STRINGS, xml.replace("</sst>", body + "</sst>"))
    return index


def _si_body(text: str) -> str:
    """A shared string's <t> as XlsxWriter writes it (excel_text), spaces at either end kept."""
    text = excel_text(text)
    space = ' xml:space="preserve"' if re.search(r"^\s|\s$", text) else ""
    return f"<t{space}>{escape(text)}</t>"


def excel_text(text: str) -> str:
    """A text with the characters XML cannot hold as Excel writes them, _xHHHH_ (a literal
    _xHHHH_ kept by escaping its underscore): control characters, U+FFFE and U+FFFF."""
    text = re.sub(r"(_x[0-9a-fA-F]{4}_)", r"_x005F\1", text)
    text = re.sub(r"([\x00-\x08\x0b-\x1f])", lambda m: f"_x{ord(m.group(1)):04X}_", text)
    return text.replace("\ufffe", "_xFFFE_").replace("\uffff", "_xFFFF_")
