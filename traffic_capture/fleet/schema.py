"""The fleet's ClickHouse schema: the tables every sender writes and every reader reads, the
versions that built them, and how long each resolution is kept. Pure: names and levels in,
DDL out; `migrate` runs it against a server.

The contract with the senders (`--clickhouse URL`): they insert INSERT_COLUMNS into RAW_TABLE
(`traffic_5s`) of the URL's database, one row per closed window, client and direction, with the
CSV's five classes' bytes (the total is their sum, computed by readers, never stored). Nothing
else is written by them: materialized views sum the rows into one table per coarser resolution
(`traffic_1m`, `traffic_1h`) and each server's first and last window into `traffic_servers`.

As Akvorado's orchestrator (orchestrator/clickhouse/), the schema is a list of migrations, each
made of steps that are skipped when what they create is there already, so that a re-run
changes nothing and an older database is brought up to date; each version applied is recorded
in `schema_migrations`. How long each resolution is kept (--keep, the history's form) is not a
version but the state `init` brings the tables' TTLs to.

The database's name is the one name formatted into statements: it is checked against
DATABASE_PATTERN first. Every value a user gives goes in as a query parameter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from traffic_capture.errors import TrafficCaptureError, UsageError
from traffic_capture.history.retention import (
    DAY_SECONDS,
    KeepError,
    Level,
    duration_text,
    parse_duration,
    parse_keep,
)
from traffic_capture.rules import CLASSES, IN, OUT

if TYPE_CHECKING:
    import numpy as np

# The daemons' windows: the raw table holds them as they closed.
RAW_SECONDS = 5
DEFAULT_KEEP = "5s=15d,1m=90d,1h=forever"  # Akvorado keeps raw flows 15 days, too
MIGRATIONS_TABLE = "schema_migrations"
SERVERS_TABLE = "traffic_servers"
SERVERS_VIEW = "traffic_servers_mv"
BYTE_COLUMNS: tuple[str, ...] = tuple(f"{name}_bytes" for name in CLASSES)
COLUMNS: tuple[tuple[str, str], ...] = (
    ("server", "LowCardinality(String)"),  # a few names repeated millions of times
    ("window_start", "DateTime('UTC')"),
    ("window_seconds", "UInt32"),
    ("client_ip", "String"),  # the CSV's text: an address, or the flood row's 'other'
    ("direction", f"Enum8('{IN}' = 1, '{OUT}' = 2)"),
    *((name, "UInt64") for name in BYTE_COLUMNS),
)
INSERT_COLUMNS: tuple[str, ...] = tuple(name for name, _ in COLUMNS)
# The sorting key, also the key a rollup sums rows by. Readers always filter a range of
# window_start, often one server (the per-server view, its picker), sometimes one client (the
# drill-down), and group by client and direction: server first keeps one server's rows
# together (a per-server query reads only its granules; over all servers the primary index
# finds each server's run of the range, a binary search per server, which a leading column of
# a few hundred values costs little), window_start next makes every range a contiguous run
# within a server, and client_ip, direction last order a window's rows as the CSV has them and
# make the rows a rollup sums into one neighbours. Each column also compresses best there:
# the server repeats for whole granules and window_start barely changes.
SORTING_KEY: tuple[str, ...] = ("server", "window_start", "client_ip", "direction")
# Steps of an hour or more are partitioned by month: a table kept for ever would otherwise
# gather a partition a day (thousands of parts read by a long range); finer steps, by day, so
# that their keep (days) drops whole days. A partition key cannot be changed by ALTER, so it
# depends on the step alone, never on the keep.
MONTHLY_FROM_SECONDS = 3600
# The inserts of which each resolution's table keeps a hash, to drop a retried one. A sender's
# batch carries an insert_deduplication_token (the hash of its bytes); sent again (its answer
# was lost, its daemon killed before it heard it), ClickHouse drops it if the token is among
# the table's last N inserts, and with deduplicate_blocks_in_dependent_materialized_views each
# rollup does the same for what its view sums. A plain MergeTree keeps none unless told
# (non_replicated_deduplication_window is 0 by default: chDB stored a retried batch twice).
# N counts the whole fleet's inserts, not one sender's: it must outlast the time from a
# batch's first attempt to its last retry while the other servers go on inserting. 100,000
# is 17 to 24 minutes of a 1,000-server fleet (70 to 100 inserts a second, README's sizing),
# almost 3 hours at 50 servers, a day at 5: a lost answer retried (within 30 s), a daemon
# restarted, a short network cut. Past it, a retry is stored twice. The cost: a block id per
# insert in memory and in a log file beside each table (some 150 bytes each, an estimate:
# 15 MiB a table), looked up in a hash map (ClickHouse's warning that a large window slows
# inserts is about Replicated tables, whose hashes are in Keeper; theirs keep 10,000 for at
# most an hour by default).
# traffic_servers keeps none: min and max of a repeated insert change nothing.
DEDUPLICATION_WINDOW = 100_000
DATABASE_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_UNITS = (("DAY", DAY_SECONDS), ("HOUR", 3600), ("MINUTE", 60), ("SECOND", 1))
# A TTL as system.tables.engine_full spells it (toIntervalDay(15)), or as a statement may
# (INTERVAL 15 DAY): a table altered by hand is read too.
_TTL_IN_ENGINE = re.compile(r"\bTTL\s+window_start\s*\+\s*(?:toInterval(\w+?)\((\d+)\)|"
                            r"INTERVAL\s+(\d+)\s+(\w+?)S?\b)", re.IGNORECASE)
_SECONDS_OF = {"second": 1, "minute": 60, "hour": 3600, "day": DAY_SECONDS,
               "week": 7 * DAY_SECONDS,
               # Calendar months and years (never set by --keep), taken at their shortest: a
               # row is said expired only when ClickHouse surely dropped it.
               "month": 28 * DAY_SECONDS, "quarter": 89 * DAY_SECONDS,
               "year": 365 * DAY_SECONDS}


class FleetError(TrafficCaptureError):
    """A ClickHouse server or database the fleet cannot use, said in one line."""


def check_database(name: str, option: str = "") -> str:
    """The database's name, when it is a plain identifier (it goes into statements);
    `option`, the option that gave it, starts the message otherwise."""
    if not DATABASE_PATTERN.match(name):
        raise UsageError(f"{option + ': ' if option else ''}{name!r} is not a database name:"
                         " it must be letters, digits and _, not starting with a digit (e.g."
                         " traffic)")
    return name


def fleet_levels(text: str) -> tuple[Level, ...]:
    """--keep text -> the levels, finest first: the history's rules (retention.parse_keep),
    and the finest is the daemons' 5-second window, held in the raw table."""
    levels = parse_keep(text, "--keep")
    if levels[0].seconds != RAW_SECONDS:
        raise KeepError(f"--keep: the finest step is the daemons' {RAW_SECONDS}-second window"
                        f" (the raw table): start with {duration_text(RAW_SECONDS)}=...,"
                        f" e.g. {DEFAULT_KEEP}")
    return levels


def table_name(seconds: int) -> str:
    """traffic_5s, traffic_1m, traffic_1h: the table of one resolution."""
    return f"traffic_{duration_text(seconds)}"


def view_name(seconds: int) -> str:
    return f"{table_name(seconds)}_mv"


RAW_TABLE = table_name(RAW_SECONDS)
_LEVEL_TABLE = re.compile(r"^traffic_(\d+[smhd])$")


def level_of_table(name: str) -> int | None:
    """traffic_1m -> 60; None for a name that is not a resolution's table."""
    match = _LEVEL_TABLE.match(name)
    if match is None:
        return None
    try:
        seconds = parse_duration(match.group(1))
    except KeepError:
        return None
    return seconds if table_name(seconds) == name else None


def interval_text(seconds: int) -> str:
    """INTERVAL 15 DAY: the largest unit that holds the keep exactly."""
    for unit, size in _UNITS:
        if seconds % size == 0:
            return f"INTERVAL {seconds // size} {unit}"
    raise ValueError(seconds)  # pragma: no cover - SECOND always divides


def ttl_expression(keep_s: int) -> str:
    return f"window_start + {interval_text(keep_s)}"


def keep_in_engine(engine_full: str) -> int | None:
    """The keep a table's engine clause (system.tables.engine_full) sets on window_start, in
    seconds; None: no TTL this reads (kept for ever)."""
    match = _TTL_IN_ENGINE.search(engine_full)
    if match is None:
        return None
    unit, number = ((match.group(1), match.group(2)) if match.group(1)
                    else (match.group(4), match.group(3)))
    seconds = _SECONDS_OF.get(unit.lower())
    return None if seconds is None else seconds * int(number)


def floor_expression(seconds: int) -> str:
    """window_start floored to a step, counted from the epoch (steps divide a day, so that is
    the UTC minute, hour or day)."""
    return f"toDateTime(intDiv(toUInt32(window_start), {seconds}) * {seconds}, 'UTC')"


def _sums() -> str:
    return ",\n    ".join(f"sum({name}) AS {name}" for name in BYTE_COLUMNS)


def create_database(database: str) -> str:
    return f"CREATE DATABASE IF NOT EXISTS {check_database(database)}"


def create_migrations_table(database: str) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {database}.{MIGRATIONS_TABLE}\n(\n"
            "    `version` UInt32,\n    `description` String,\n"
            "    `applied_at` DateTime('UTC') DEFAULT now()\n)\n"
            "ENGINE = MergeTree\nORDER BY (version, applied_at)")


def record_migration(database: str, version: int, description: str) -> str:
    """The row a version leaves (its description is this module's text, never a user's)."""
    return (f"INSERT INTO {database}.{MIGRATIONS_TABLE} (version, description)"
            f" VALUES ({int(version)}, '{_quoted(description)}')")


def create_level_table(database: str, level: Level) -> str:
    """A resolution's table: the raw one a MergeTree, a rollup a SummingMergeTree that adds
    the bytes of rows with the same key when it merges (lazily: readers always sum)."""
    columns = ",\n".join(f"    `{name}` {kind}" for name, kind in COLUMNS)
    engine = ("MergeTree" if level.seconds == RAW_SECONDS else
              f"SummingMergeTree(({', '.join(BYTE_COLUMNS)}))")
    partition = ("toYYYYMM(window_start)" if level.seconds >= MONTHLY_FROM_SECONDS
                 else "toDate(window_start)")
    ttl = "" if level.keep_s is None else f"TTL {ttl_expression(level.keep_s)}\n"
    return (f"CREATE TABLE IF NOT EXISTS {database}.{table_name(level.seconds)}\n(\n"
            f"{columns}\n)\nENGINE = {engine}\nPARTITION BY {partition}\n"
            f"ORDER BY ({', '.join(SORTING_KEY)})\n{ttl}"
            "SETTINGS ttl_only_drop_parts = 1")


def _rollup_select(database: str, seconds: int, source_seconds: int) -> str:
    # GROUP BY window_start groups by the floored alias (ClickHouse prefers a SELECT alias to
    # the column it shadows), so that a view's block arrives summed per step.
    return (f"SELECT\n    server,\n    {floor_expression(seconds)} AS window_start,\n"
            f"    toUInt32({seconds}) AS window_seconds,\n    client_ip,\n    direction,\n"
            f"    {_sums()}\nFROM {database}.{table_name(source_seconds)}\n"
            f"GROUP BY {', '.join(SORTING_KEY)}")


def create_level_view(database: str, level: Level) -> str:
    """A rollup's feed: every insert into the raw table, summed to the rollup's step.

    Each view reads the raw table, as Akvorado's do, not the next finer rollup: an insert
    into traffic_5s then feeds every rollup directly, no rollup depends on another (a keep
    without 1m still has 1h; dropping one never stops another), and the cost is the same,
    since a sender's batch holds a few seconds of windows, which a 1-minute step barely
    shortens. Rows too old for the raw table's keep still feed the rollups: a view sees the
    insert before the TTL drops it."""
    return (f"CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.{view_name(level.seconds)}"
            f" TO {database}.{table_name(level.seconds)}\nAS "
            + _rollup_select(database, level.seconds, RAW_SECONDS))


def fill_level(database: str, level: Level, source_seconds: int) -> str:
    """The rows a new rollup gets from a finer table already holding rows (its view only
    sees inserts from its creation on)."""
    return (f"INSERT INTO {database}.{table_name(level.seconds)} ({', '.join(INSERT_COLUMNS)})\n"
            + _rollup_select(database, level.seconds, source_seconds))


def create_servers_table(database: str) -> str:
    """Each server's first and last window, one row per server once merged: the server
    picker without a scan of billions of rows."""
    return (f"CREATE TABLE IF NOT EXISTS {database}.{SERVERS_TABLE}\n(\n"
            "    `server` LowCardinality(String),\n"
            "    `first_start` SimpleAggregateFunction(min, DateTime('UTC')),\n"
            "    `last_end` SimpleAggregateFunction(max, DateTime('UTC'))\n)\n"
            "ENGINE = AggregatingMergeTree\nORDER BY server")


def create_servers_view(database: str) -> str:
    return (f"CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.{SERVERS_VIEW}"
            f" TO {database}.{SERVERS_TABLE}\nAS SELECT\n    server,\n"
            "    min(window_start) AS first_start,\n"
            "    max(window_start + window_seconds) AS last_end\n"
            f"FROM {database}.{RAW_TABLE}\nGROUP BY server")


def fill_servers(database: str, source_seconds: int) -> str:
    """Servers from a table already holding rows, filled finest first. min and max are
    idempotent, so several sources (and a repeat) add nothing wrong. A rollup's windows are
    floored to its step, so it tells only of the servers the finer tables do not know, or
    whose rows it holds from an earlier step than theirs; and its last window's start, never
    past the true end, so that the raw table's exact end wins where it has the server."""
    source = f"{database}.{table_name(source_seconds)}"
    if source_seconds == RAW_SECONDS:
        return (f"INSERT INTO {database}.{SERVERS_TABLE} (server, first_start, last_end)\n"
                "SELECT server, min(window_start), max(window_start + window_seconds)\n"
                f"FROM {source}\nGROUP BY server")
    known = (f"toDateTime(intDiv(toUInt32(known.first_start), {source_seconds})"
             f" * {source_seconds}, 'UTC')")
    return (f"INSERT INTO {database}.{SERVERS_TABLE} (server, first_start, last_end)\n"
            "SELECT held.server, held.first_start, held.last_start\n"
            "FROM (SELECT server, min(window_start) AS first_start,"
            f" max(window_start) AS last_start FROM {source} GROUP BY server) AS held\n"
            "LEFT JOIN (SELECT server, min(first_start) AS first_start"
            f" FROM {database}.{SERVERS_TABLE} GROUP BY server) AS known\n"
            "ON held.server = known.server\n"
            "WHERE toUInt32(known.first_start) = 0"  # not known (the join's default)
            f" OR held.first_start < {known}")


def drop(database: str, name: str, view: bool = False) -> str:
    return f"DROP {'VIEW' if view else 'TABLE'} IF EXISTS {database}.{name}"


def set_keep(database: str, level: Level) -> str:
    """The statement that brings a table's TTL to a level's keep. ClickHouse then drops the
    parts whose every row is past it (ttl_only_drop_parts), at once and at each merge."""
    table = f"{database}.{table_name(level.seconds)}"
    if level.keep_s is None:
        return f"ALTER TABLE {table} REMOVE TTL"
    return f"ALTER TABLE {table} MODIFY TTL {ttl_expression(level.keep_s)}"


def set_deduplication_window(database: str, seconds: int) -> str:
    """The statement that makes a resolution's table drop a retried insert (see
    DEDUPLICATION_WINDOW)."""
    return (f"ALTER TABLE {database}.{table_name(seconds)} MODIFY SETTING"
            f" non_replicated_deduplication_window = {DEDUPLICATION_WINDOW}")


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


# -- the versions


@dataclass(frozen=True)
class Step:
    """One object a migration creates (`name`, a table or view, looked for in
    system.tables), by an idempotent statement: skipped when it is there. A view that feeds a
    table created in the same run names it in `feeds`: the rows held before it existed are
    filled in. A step that `alters` changes `name` instead, when it is there (a resolution
    the keep adds later is made by level_steps, already altered)."""

    name: str
    ddl: str
    feeds: str | None = None
    alters: bool = False


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    steps: Callable[[str, Sequence[Level]], tuple[Step, ...]]  # (database, levels)


def _raw_steps(database: str, levels: Sequence[Level]) -> tuple[Step, ...]:
    return (Step(MIGRATIONS_TABLE, create_migrations_table(database)),
            Step(RAW_TABLE, create_level_table(database, levels[0])))


def _rollup_steps(database: str, levels: Sequence[Level]) -> tuple[Step, ...]:
    return tuple(step for level in levels[1:] for step in rollup_steps(database, level))


def rollup_steps(database: str, level: Level) -> tuple[Step, ...]:
    """A rollup: its table, then the view feeding it (created after, so nothing is summed
    into a table that is not there)."""
    return (Step(table_name(level.seconds), create_level_table(database, level)),
            Step(view_name(level.seconds), create_level_view(database, level),
                 feeds=table_name(level.seconds)))


def deduplication_step(database: str, level: Level) -> Step:
    return Step(table_name(level.seconds), set_deduplication_window(database, level.seconds),
                alters=True)


def _deduplication_steps(database: str, levels: Sequence[Level]) -> tuple[Step, ...]:
    return tuple(deduplication_step(database, level) for level in levels)


def level_steps(database: str, level: Level) -> tuple[Step, ...]:
    """A resolution's table as the latest version makes it, for one `--keep` adds to a
    database past the versions that made the others: created, given its deduplication
    window, then (a rollup) fed by its view."""
    made = (Step(table_name(level.seconds), create_level_table(database, level)),
            deduplication_step(database, level))
    if level.seconds == RAW_SECONDS:
        return made
    return (*made, rollup_steps(database, level)[1])


def _servers_steps(database: str, levels: Sequence[Level]) -> tuple[Step, ...]:
    return (Step(SERVERS_TABLE, create_servers_table(database)),
            Step(SERVERS_VIEW, create_servers_view(database), feeds=SERVERS_TABLE))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "the raw 5-second table", _raw_steps),
    Migration(2, "rollups fed by materialized views", _rollup_steps),
    Migration(3, "each server's first and last window", _servers_steps),
    Migration(4, "a deduplication window on each resolution's table, so that a retried"
                 " batch is stored once", _deduplication_steps),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def render(database: str, levels: Sequence[Level], version: int = SCHEMA_VERSION) -> str:
    """The DDL of a fresh database at `version` (and the rows recording it), as `init` runs
    it: kept as test data (tests/data/clickhouse/), so that a change of the schema shows in a
    review and an older version can be built again to test its migration."""
    statements = [create_database(database)]
    for migration in MIGRATIONS:
        if migration.version > version:
            break
        statements += [step.ddl for step in migration.steps(database, levels)]
        statements.append(record_migration(database, migration.version, migration.description))
    return "".join(f"{statement};\n\n" for statement in statements).rstrip("\n") + "\n"


def statements_of(text: str) -> list[str]:
    """The statements of a rendered file (they hold no ';' but at their ends)."""
    return [part.strip() for part in text.split(";\n") if part.strip()]


# -- rows a keep drops


def expired_at_insert(levels: Iterable[Level], starts: Sequence[int] | np.ndarray,
                      now: float) -> dict[str, int]:
    """How many of the rows starting at `starts` (epoch seconds) each table will not keep:
    those whose window, floored to the table's step, is `keep` or more before `now`. ClickHouse
    drops them as they are inserted (a part whose every row is past the TTL is never written)
    or, when they share a day with newer rows, as soon as that day's part is past it; either
    way they are gone. The raw table's view still sums them into a rollup that keeps them.
    Only the tables that drop some are named."""
    import numpy as np  # not at the top: the daemon's --help imports this module

    values = np.asarray(starts, dtype=np.int64)
    dropped = {}
    for level in levels:
        if level.keep_s is None or not len(values):
            continue
        floored = values // level.seconds * level.seconds
        count = int(np.count_nonzero(floored + level.keep_s <= now))
        if count:
            dropped[table_name(level.seconds)] = count
    return dropped
