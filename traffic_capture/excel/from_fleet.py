"""A workbook's rows from a fleet's ClickHouse (excel/report --clickhouse): every server's, or
those of --server, from the rollup that fits the range (excel/from_history.py's choice), with
a `server` column when more than one server is in, for the dashboard's slicer and the Data
table's filter.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from traffic_capture.excel.from_history import HistoryRangeError, HistoryRows, read_store
from traffic_capture.excel.timespan import When
from traffic_capture.queries import TimeRange


def servers_text(names: Sequence[str]) -> str:
    """'server web1', or 'servers db1, web1, web2' (the first 10 named)."""
    if len(names) == 1:
        return f"server {names[0]}"
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return f"{len(names)} servers: {shown}"


def read_fleet(url: str, password_file: Path | None, servers: Sequence[str] | None,
               start: When | None, end: When | None, group: str, utc: bool) -> HistoryRows:
    """The rows of the fleet at `url` (of `servers`, or all) for a workbook; one-line errors
    (FleetError for the server and the schema, or a server it does not hold;
    HistoryRangeError for a range without rows)."""
    from traffic_capture.fleet.connect import find_credentials, open_client, parse_url
    from traffic_capture.fleet.reader import ClickHouseReader
    from traffic_capture.fleet.schema import FleetError

    target = parse_url(url)
    client = open_client(target, find_credentials(target, password_file))
    try:
        fleet = ClickHouseReader(client)
        held = [span.name for span in fleet.servers()]
        if not held:
            raise HistoryRangeError(f"ClickHouse {target.shown}: holds no rows yet")
        unknown = [name for name in dict.fromkeys(servers or ()) if name not in held]
        if unknown:
            raise FleetError(f"ClickHouse {target.shown}: no server {unknown[0]!r}; it holds "
                             f"{', '.join(held[:20])}" + (", ..." if len(held) > 20 else ""))
        names = list(dict.fromkeys(servers)) if servers else held
        reader = fleet if not servers else fleet.of_servers(names)
        several = len(names) > 1

        def frame_of(when: TimeRange, seconds: int) -> pd.DataFrame:
            return reader.rows_frame(when, seconds, utc, server_column=several)

        return read_store(reader, f"ClickHouse {target.shown} ({servers_text(names)})",
                          start, end, group, utc, frame_of)
    finally:
        client.close()
