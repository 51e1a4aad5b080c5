"""`history import`: existing traffic CSVs into a history, as if the daemon had written them.

Each file is read by DuckDB's CSV reader in the delimiter its header shows (csvformat's
detection), checked whole (a foreign or damaged file is one line and writes nothing), and
written as one flush together with a marker named by the file's SHA-256: the rows and the
marker appear at once, so importing a file again adds nothing, even after a crash. Rows of
windows the history already held when the import began are skipped as well (the daemon
wrote them; its CSV is imported to fill what a `kill -9` lost, never to double the rest).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from traffic_capture.csvformat import (
    COLUMNS,
    TIME_FORMAT,
    NotTrafficCsv,
    detect_delimiter,
    epoch_of,
)
from traffic_capture.history import duck
from traffic_capture.history.layout import Part, choose, list_store
from traffic_capture.history.retention import DEFAULT_KEEP, Level
from traffic_capture.history.store import HistoryError
from traffic_capture.history.writer import HistoryWriter
from traffic_capture.rules import IN, OUT

HEAD_BYTES = 4096
_HASH_CHUNK = 1 << 20


class ImportRefused(HistoryError):
    """A file that cannot be imported; nothing of it was written."""


@dataclass
class ImportResult:
    """What an import did, per file and in all."""

    notes: list[tuple[Path, str]] = field(default_factory=list)
    rows: int = 0  # rows added (5-second rows, before any rollup)
    held_rows: int = 0  # rows skipped: their windows were already in the history


def import_csv(store: str | Path, csv_files: Sequence[str | Path], utc: bool = False,
               keep: str | Sequence[Level] = DEFAULT_KEEP,
               server_name: str | None = None) -> ImportResult:
    """Load CSVs (any delimiter the daemon writes; `utc`: their times are UTC, else local
    time as TZ says) into the history at `store`. Every file's header is checked before
    anything is written; each file is then one flush."""
    files = [Path(name) for name in csv_files]
    delimiters = [_delimiter(path) for path in files]
    result = ImportResult()
    with HistoryWriter(store, keep, server_name, flush_seconds=float("inf"),
                       flush_rows=1 << 62) as writer:
        con = writer.connection
        done = set(list_store(writer.root).imported)
        held = _held_before(writer)
        for path, delimiter in zip(files, delimiters, strict=True):
            digest = _sha256(path)
            if digest in done:
                result.notes.append((path, "already imported"))
                continue
            rows, skipped = _load(con, path, delimiter, utc, writer.levels[0].seconds, held,
                                  writer.server)
            writer.write_table("import_rows", digest)
            done.add(digest)
            result.rows += rows
            result.held_rows += skipped
            note = f"{rows:,} rows"
            if skipped:
                note += f" ({skipped:,} more already in the history)"
            result.notes.append((path, note))
            con.execute("DROP TABLE import_rows")
        writer.maintain(merges=None)
    return result


def _delimiter(path: Path) -> str:
    """The file's delimiter, or one line saying why it is not a traffic CSV."""
    try:
        with path.open("rb") as raw:
            head = raw.read(HEAD_BYTES)
    except FileNotFoundError:
        raise ImportRefused(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImportRefused(f"{path}: is a folder, not a CSV file") from None
    except OSError as exc:
        raise ImportRefused(f"{path}: cannot read: {exc.strerror or exc}") from None
    if b"\x00" in head:
        raise ImportRefused(f"{path}: binary file, not a traffic-capture CSV")
    first = head.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    if not first.strip():
        raise ImportRefused(f"{path}: empty file (no header line)")
    try:
        return detect_delimiter(first)
    except NotTrafficCsv as error:
        raise ImportRefused(f"{path}: {error}") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as raw:
        while chunk := raw.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Held:
    """What one level decides for: windows from `lo` (its oldest) to `hi` (the finer
    level's oldest) are held when its parts have them."""

    level_s: int
    lo: int
    hi: int
    parts: tuple[Part, ...]


def _held_before(writer: HistoryWriter) -> list[Held]:
    """The parts the history had when this import began, per level: a CSV row is skipped
    when its window is held at the finest level still keeping its time. Taken once (and
    nothing is merged or deleted until the end): a window split between two files of a
    series is taken whole."""
    chosen = choose(list_store(writer.root).parts)
    held = []
    upper = 1 << 62
    for level in writer.levels:
        parts = tuple(part for part in chosen.of_level(level.seconds)
                      if part.holds_any_of(0, upper))
        if parts:
            lo = min(part.first_start_s for part in parts)
            held.append(Held(level.seconds, lo, upper, parts))
            upper = lo
    return held


def _drop_held(con: Any, held: Sequence[Held], server: str) -> None:
    """Delete from import_rows the rows of windows already held (reading only the parts
    that span the file's windows)."""
    first, last = con.execute("SELECT min(window_start), max(window_start + window_seconds)"
                              " FROM import_rows").fetchall()[0]
    if first is None:
        return
    for level in held:
        lo, hi = max(level.lo, int(first)), min(level.hi, int(last))
        parts = [part.path for part in level.parts if part.holds_any_of(lo, hi)]
        if lo >= hi or not parts:
            continue
        step = level.level_s
        con.execute(
            f"DELETE FROM import_rows WHERE window_start >= {lo} AND window_start < {hi}"
            f" AND window_start // {step} * {step} IN (SELECT window_start"
            f" FROM {duck.parts_source(parts)} WHERE server = {duck.literal(server)}"
            f" AND window_start > {lo - step} AND window_start < {hi})")


def _load(con: Any, path: Path, delimiter: str, utc: bool, finest_s: int,
          held: Sequence[Held], server: str) -> tuple[int, int]:
    """The file's rows into the table import_rows (the windows not held); (rows, held)."""
    names = ", ".join(f"{duck.literal(name)}: 'VARCHAR'" for name in COLUMNS)
    numbers = ", ".join(f"TRY_CAST(trim({name}) AS BIGINT) AS {name}"
                        for name in ("total_bytes", *duck.BYTE_COLUMNS))
    try:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE raw AS SELECT row_number() OVER () + 1 AS line,"
            " trim(window_start) AS start_text, trim(window_end) AS end_text,"
            f" trim(client_ip) AS client_ip, trim(direction) AS direction, {numbers}"
            f" FROM read_csv({duck.literal(str(path))}, delim = {duck.literal(delimiter)},"
            f" header = true, columns = {{{names}}}, quote = '', escape = '',"
            " auto_detect = false, null_padding = false, encoding = 'utf-8')")
    except duck.duckdb().Error as exc:
        text = str(exc).strip().splitlines()
        raise ImportRefused(f"{path}: cannot read as a traffic CSV:"
                            f" {text[0] if text else type(exc).__name__}") from None
    # Each distinct time once: as written (wall: what the writing clock showed, read as
    # UTC), and as epoch seconds (local time as TZ says, with mktime's rules, or UTC).
    times = con.execute(
        f"SELECT text, epoch(try_strptime(text, {duck.literal(TIME_FORMAT)}))::BIGINT AS wall"
        " FROM (SELECT start_text AS text FROM raw UNION SELECT end_text FROM raw)"
        ).fetchnumpy()
    walls = np.ma.filled(np.ma.asarray(times["wall"]).astype(np.float64), np.nan)
    frame = pd.DataFrame({"text": [str(text) for text in times["text"]], "wall": walls})
    frame["epoch"] = walls if utc else [_local_epoch(wall) for wall in walls.tolist()]
    con.register("times", frame)
    try:
        seconds = _check(con, path, delimiter, finest_s)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE import_rows AS SELECT"
            f" s.epoch::BIGINT AS window_start, {seconds} AS window_seconds, client_ip,"
            f" direction, {', '.join(duck.BYTE_COLUMNS)}"
            " FROM raw JOIN times s ON raw.start_text = s.text")
    finally:
        con.unregister("times")
        con.execute("DROP TABLE raw")
    total = con.execute("SELECT count(*) FROM import_rows").fetchall()[0][0]
    _drop_held(con, held, server)
    rows = con.execute("SELECT count(*) FROM import_rows").fetchall()[0][0]
    return int(rows), int(total - rows)


def _local_epoch(wall: float) -> float:
    """A local time (given as the UTC epoch of the same clock reading) -> epoch seconds, as
    csvformat.epoch_of reads it: mktime, summer time guessed (-1)."""
    if wall != wall:  # NaN: not a time
        return wall
    try:
        return float(time.mktime((*time.gmtime(int(wall))[:8], -1)))
    except (OverflowError, ValueError):
        return float("nan")


def _check(con: Any, path: Path, delimiter: str, finest_s: int) -> int:
    """The file's window length; or the first line that is not a traffic row, in one line
    (nothing is written then)."""
    joins = (" FROM raw LEFT JOIN times s ON raw.start_text = s.text"
             " LEFT JOIN times e ON raw.end_text = e.text")
    usual = con.execute(f"SELECT mode(e.wall - s.wall){joins}").fetchall()[0][0]
    seconds = int(usual) if usual is not None and usual > 0 else finest_s
    fits = "TRUE" if finest_s % seconds == 0 else "FALSE"
    checks = {
        "window_start": "isnan(s.epoch)",
        "window_end": (f"isnan(e.epoch) OR NOT {fits} OR s.epoch::BIGINT % {seconds} <> 0"
                       f" OR (e.wall - s.wall - {seconds})::BIGINT % 1800 <> 0"),
        "direction": f"direction NOT IN ({duck.literal(IN)}, {duck.literal(OUT)})",
        "client_ip": "client_ip = '' OR client_ip IS NULL",
        **{name: f"{name} IS NULL OR {name} < 0" for name in ("total_bytes",
                                                             *duck.BYTE_COLUMNS)},
        "total_bytes ": f"total_bytes <> {' + '.join(duck.BYTE_COLUMNS)}",
    }
    selects = ", ".join(f"min(line) FILTER (WHERE {condition})" for condition in
                        checks.values())
    first = con.execute(f"SELECT {selects}{joins}").fetchall()[0]
    bad = [(line, name) for line, name in zip(first, checks, strict=True) if line is not None]
    if not bad:
        return seconds
    line, name = min(bad)
    value = _field(path, delimiter, line, COLUMNS.index(name.strip()))
    what = ("total_bytes (not the sum of the classes)" if name.endswith(" ") else
            f"window_end (the window does not fit the {finest_s}-second resolution)"
            if name == "window_end" and _epoch(value.strip(), True) is not None
            else name)
    raise ImportRefused(f"{path}: line {line}: bad {what} value {value!r}")


def _epoch(text: str, utc: bool) -> int | None:
    try:
        return epoch_of(text, utc)
    except (ValueError, OverflowError):
        return None


def _field(path: Path, delimiter: str, line: int, column: int) -> str:
    """One field of one line, for the message about it."""
    with path.open(encoding="utf-8", errors="replace", newline="") as text:
        for number, content in enumerate(text, start=1):
            if number == line:
                fields = content.rstrip("\r\n").split(delimiter)
                return fields[column] if column < len(fields) else ""
    return ""
