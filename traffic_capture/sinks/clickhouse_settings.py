"""What --clickhouse was given: the settings the command line makes (clickhouse.py) and the
sink is built with (clickhouse_sink.py), and their defaults."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from traffic_capture.fleet.connect import Credentials, Target

DEFAULT_BATCH_SECONDS = 5.0
# ClickHouse prefers inserts of thousands to a hundred thousand rows; async inserts gather
# the fleet's small ones besides.
DEFAULT_BATCH_ROWS = 50_000
# About 11 million rows (a CSVWithNames row is some 90 bytes): a week of 20 rows a second.
DEFAULT_SPOOL_MAX = 1 << 30
DEFAULT_TIMEOUT_SECONDS = 10.0


class ClickHouseSettings(NamedTuple):
    target: Target
    credentials: Credentials
    server_name: str
    spool: Path
    spool_max: int = DEFAULT_SPOOL_MAX
    batch_seconds: float = DEFAULT_BATCH_SECONDS
    batch_rows: int = DEFAULT_BATCH_ROWS
    timeout: float = DEFAULT_TIMEOUT_SECONDS
