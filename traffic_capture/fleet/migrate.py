"""`clickhouse init`: brings a database to the fleet's schema and keep, saying what it did.

It reads what the database holds (system.tables, schema_migrations), applies the versions
not applied yet (each step skipped when what it creates is there), fills a rollup created
over rows already held from the finer table reaching furthest back, then sets each table's
TTL to the keep asked for. A re-run changes nothing and says so.

A rollup filled while senders insert may miss or double the rows of an insert that lands
between its view's creation and the copy: init compares the rollup's sums with its source's
afterwards and says when they differ (then run it again with the senders stopped: they spool).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from traffic_capture.fleet.schema import (
    BYTE_COLUMNS,
    DEFAULT_KEEP,
    MIGRATIONS,
    MIGRATIONS_TABLE,
    RAW_SECONDS,
    SCHEMA_VERSION,
    SERVERS_TABLE,
    FleetError,
    Step,
    create_database,
    drop,
    fill_level,
    fill_servers,
    fleet_levels,
    keep_in_engine,
    level_of_table,
    level_steps,
    record_migration,
    set_keep,
    table_name,
    view_name,
)
from traffic_capture.history.retention import Level, duration_text, keep_text

Say = Callable[[str], None]


@dataclass
class State:
    """What a database holds: its tables and views (name -> engine clause) and the newest
    version recorded (0: none)."""

    tables: dict[str, str]
    version: int

    def levels(self) -> tuple[Level, ...]:
        """The resolutions held, finest first, with the keep their TTL sets."""
        held = []
        for name, engine in self.tables.items():
            seconds = level_of_table(name)
            if seconds is not None and engine:  # a table, not the view of the same stem
                held.append(Level(seconds, keep_in_engine(engine)))
        return tuple(sorted(held, key=lambda level: level.seconds))


def read_state(client: Any, database: str) -> State:
    rows = client.query("SELECT name, engine_full FROM system.tables WHERE database ="
                        " {database:String}", parameters={"database": database}).result_rows
    tables = {str(name): str(engine) for name, engine in rows}
    version = 0
    if MIGRATIONS_TABLE in tables:
        version = int(client.query(f"SELECT max(version) FROM {database}.{MIGRATIONS_TABLE}"
                                   ).result_rows[0][0] or 0)
    return State(tables, version)


def schema_version(client: Any, database: str) -> int:
    """The version a database's schema is at (0: none): what a sender or reader checks
    before it relies on it."""
    return read_state(client, database).version


@dataclass
class InitResult:
    version_before: int
    version: int
    levels: tuple[Level, ...]
    done: list[str] = field(default_factory=list)  # what changed, one line each
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.done)


def wanted_levels(state: State, keep: str | None) -> tuple[Level, ...]:
    """The keep to reach: the one asked for; else the one the database has (a re-run without
    --keep changes nothing), with the default's rollups for a database older than them."""
    if keep is not None:
        return fleet_levels(keep)
    held = {level.seconds: level for level in state.levels()}
    if not held:
        return fleet_levels(DEFAULT_KEEP)
    if state.version < 2:
        for level in fleet_levels(DEFAULT_KEEP)[1:]:
            held.setdefault(level.seconds, level)
    if RAW_SECONDS not in held:
        held[RAW_SECONDS] = fleet_levels(DEFAULT_KEEP)[0]
    return fleet_levels(keep_text(sorted(held.values(), key=lambda level: level.seconds)))


def init(client: Any, database: str, keep: str | None = None, drop_unlisted: bool = False,
         now: float | None = None) -> InitResult:
    """Create or upgrade the schema in `database` and set its keep (see the module)."""
    client.command(create_database(database))
    state = read_state(client, database)
    if state.version > SCHEMA_VERSION:
        raise FleetError(f"database {database} is at schema version {state.version}, newer"
                         f" than this traffic-capture knows ({SCHEMA_VERSION}): upgrade"
                         " traffic-capture")
    levels = wanted_levels(state, keep)
    result = InitResult(state.version, state.version, levels)
    _drop_unlisted(client, database, state, levels, drop_unlisted, result)
    held_before = {level.seconds for level in read_state(client, database).levels()}
    for migration in MIGRATIONS:
        if migration.version <= state.version:
            continue
        _run_steps(client, database, migration.steps(database, levels), held_before, result)
        client.command(record_migration(database, migration.version, migration.description))
        result.version = migration.version
        result.done.append(f"schema version {migration.version}: {migration.description}")
    _reach_keep(client, database, levels, held_before, now if now is not None else time.time(),
                result)
    return result


def _drop_unlisted(client: Any, database: str, state: State, levels: Sequence[Level],
                   allowed: bool, result: InitResult) -> None:
    wanted = {level.seconds for level in levels}
    for level in state.levels():
        if level.seconds in wanted:
            continue
        name = table_name(level.seconds)  # never the raw table: every keep starts with it
        if not allowed:
            raise FleetError(f"{database}.{name} holds {_count(client, database, name):,}"
                             f" rows and --keep leaves out {level.name}: keep it in --keep,"
                             " or add --drop to delete it")
        client.command(drop(database, view_name(level.seconds), view=True))
        client.command(drop(database, name))
        result.done.append(f"{name}: deleted (--drop), with its view")


def _run_steps(client: Any, database: str, steps: Sequence[Step], held_before: set[int],
               result: InitResult) -> None:
    existing = set(read_state(client, database).tables)
    for step in steps:
        if step.alters:
            if step.name in existing:
                client.command(step.ddl)
            continue
        if step.name in existing:
            continue
        empty = step.feeds is not None and _count(client, database, step.feeds) == 0
        client.command(step.ddl)
        existing.add(step.name)
        if empty and step.feeds is not None:
            _fill(client, database, step.feeds, held_before, result)


def _fill(client: Any, database: str, target: str, held_before: set[int],
          result: InitResult) -> None:
    """Rows held before a view existed, into the table it feeds."""
    sources = sorted(seconds for seconds in held_before
                     if _count(client, database, table_name(seconds)))
    if target == SERVERS_TABLE:
        for seconds in sources:
            client.command(fill_servers(database, seconds))
        return
    step = level_of_table(target)
    assert step is not None
    finer = [seconds for seconds in sources if seconds < step and step % seconds == 0]
    if not finer:
        return
    # The finer table reaching furthest back; among equals the coarsest (fewest rows).
    source = min(finer, key=lambda seconds: (_oldest(client, database, seconds), -seconds))
    client.command(fill_level(database, Level(step, None), source))
    source_name = table_name(source)
    result.done.append(f"{target}: filled from {source_name}")
    if _sums(client, database, target) != _sums(client, database, source_name):
        result.warnings.append(
            f"{target}: rows arrived while it was filled from {source_name}, so its sums"
            f" differ from {source_name}'s: stop the senders (they spool), then run init"
            f" with --keep leaving out {duration_text(step)} and --drop, and init again")


def _reach_keep(client: Any, database: str, levels: Sequence[Level], held_before: set[int],
                now: float, result: InitResult) -> None:
    state = read_state(client, database)
    held = {level.seconds: level for level in state.levels()}
    for level in levels:
        name = table_name(level.seconds)
        if level.seconds not in held:  # added to a database past the version that made it
            _run_steps(client, database, level_steps(database, level), held_before, result)
            fed = "" if level.seconds == RAW_SECONDS else f", fed by {view_name(level.seconds)}"
            result.done.append(f"{name}: created ({_kept(level)}){fed}")
            continue
        before = held[level.seconds].keep_s
        if before == level.keep_s:
            continue
        if level.keep_s is not None and (before is None or level.keep_s < before):
            _warn_shorter(client, database, level, now, result)
        client.command(set_keep(database, level))
        description = (f"keep {name}: {_keep_name(before)} -> {_keep_name(level.keep_s)}")
        client.command(record_migration(database, result.version, description))
        result.done.append(description)


def _warn_shorter(client: Any, database: str, level: Level, now: float,
                  result: InitResult) -> None:
    assert level.keep_s is not None
    name = table_name(level.seconds)
    cut = int(now) - level.keep_s
    rows = client.query(f"SELECT count(), toUnixTimestamp(min(window_start)) FROM {database}."
                        f"{name} WHERE window_start < toDateTime({{cut:Int64}}, 'UTC')",
                        parameters={"cut": max(cut, 0)}).result_rows
    count, oldest = (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)
    if count:
        result.warnings.append(
            f"{name}: the new keep ({_keep_name(level.keep_s)}) deletes its {count:,} stored"
            f" rows from {_utc(oldest)} to {_utc(cut)} UTC")


def _count(client: Any, database: str, name: str) -> int:
    return int(client.query(f"SELECT count() FROM {database}.{name}").result_rows[0][0])


def _oldest(client: Any, database: str, seconds: int) -> int:
    return int(client.query(f"SELECT toUnixTimestamp(min(window_start)) FROM {database}."
                            f"{table_name(seconds)}").result_rows[0][0])


def _sums(client: Any, database: str, name: str) -> list[int]:
    columns = ", ".join(f"sum({column})" for column in BYTE_COLUMNS)
    return [int(value) for value in
            client.query(f"SELECT {columns} FROM {database}.{name}").result_rows[0]]


def _kept(level: Level) -> str:
    return f"{level.name} windows kept {_keep_name(level.keep_s)}"


def _keep_name(keep_s: int | None) -> str:
    return "for ever" if keep_s is None else duration_text(keep_s)


def _utc(epoch: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(epoch))


def describe_levels(levels: Sequence[Level]) -> list[str]:
    """What each table keeps, one line each, with the caveat that goes with a keep."""
    lines = []
    for level in levels:
        line = f"{table_name(level.seconds)}: {_kept(level)}"
        if level.keep_s is not None:
            line += " (rows older than that are dropped as they are inserted)"
        lines.append(line)
    return lines
