"""The fleet's ClickHouse schema on the real engine (chDB): the rendered DDL kept as test
data, `init` creating, re-running, migrating an older version, setting and changing the keep,
filling a rollup added over rows held, and what a TTL drops at insert."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.fleet_store import (
    GROUP,
    class_sums,
    engine,
    fresh_database,
    insert,
    tables,
)
from traffic_capture.errors import UsageError
from traffic_capture.fleet.connect import parse_url
from traffic_capture.fleet.migrate import init, read_state
from traffic_capture.fleet.schema import (
    DEDUPLICATION_WINDOW,
    DEFAULT_KEEP,
    MIGRATIONS,
    SCHEMA_VERSION,
    FleetError,
    expired_at_insert,
    fleet_levels,
    keep_in_engine,
    render,
    statements_of,
)
from traffic_capture.history.retention import KeepError, Level

pytestmark = pytest.mark.xdist_group(GROUP)
DDL = REPO / "tests" / "data" / "clickhouse"
UPDATE = os.environ.get("TRAFFIC_CAPTURE_UPDATE_DDL") == "1"
DAY = 86400
# The renderings kept: each version with the default keep, and from version 3 on with
# another.
RENDERINGS = {**{f"v{m.version}.sql": (m.version, DEFAULT_KEEP) for m in MIGRATIONS},
              **{f"v{m.version}-keep-2d-7d-30d-forever.sql":
                 (m.version, "5s=2d,1m=7d,1h=30d,1d=forever") for m in MIGRATIONS
                 if m.version >= 3}}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with engine(tmp_path_factory.mktemp("chdb")) as opened:
        yield opened


def now_window() -> int:
    return int(time.time()) // 5 * 5


def build(client: Any, version: int, database: str) -> None:
    """A database as an older traffic-capture left it: its rendered DDL, run."""
    text = (DDL / f"v{version}.sql").read_text()
    for statement in statements_of(text):
        client.command(re.sub(r"\btraffic(?=\.|$)", database, statement))


@pytest.mark.parametrize("name", sorted(RENDERINGS))
def test_the_rendered_ddl_is_the_test_data(name: str) -> None:
    """A change of the schema changes these files in the same commit (as Akvorado keeps its
    rendered DDL): TRAFFIC_CAPTURE_UPDATE_DDL=1 rewrites them. An older version's file is
    never rewritten: it is what databases of that version hold."""
    version, keep = RENDERINGS[name]
    rendered = render("traffic", fleet_levels(keep), version)
    path = DDL / name
    if UPDATE and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered)
    assert path.exists(), f"{path} is missing: run with TRAFFIC_CAPTURE_UPDATE_DDL=1"
    if UPDATE and version == SCHEMA_VERSION:
        path.write_text(rendered)
    assert rendered == path.read_text(), (
        f"the schema's DDL changed but {path} did not: a new version is a new migration;"
        " TRAFFIC_CAPTURE_UPDATE_DDL=1 rewrites the latest")


def test_init_creates_the_schema_and_a_rerun_changes_nothing(client: Any) -> None:
    database = fresh_database()
    first = init(client, database)
    assert (first.version_before, first.version) == (0, SCHEMA_VERSION)
    assert first.levels == fleet_levels(DEFAULT_KEEP)
    built = tables(client, database)
    assert set(built) == {"schema_migrations", "traffic_5s", "traffic_1m", "traffic_1h",
                          "traffic_1m_mv", "traffic_1h_mv", "traffic_servers",
                          "traffic_servers_mv"}
    recorded = client.query(f"SELECT version, description FROM {database}.schema_migrations"
                            " ORDER BY version").result_rows
    assert recorded == [(m.version, m.description) for m in MIGRATIONS]
    again = init(client, database)
    assert not again.changed and again.version == SCHEMA_VERSION and not again.warnings
    assert tables(client, database) == built
    assert client.query(f"SELECT count() FROM {database}.schema_migrations"
                        ).result_rows[0][0] == len(MIGRATIONS)
    # What ClickHouse keeps is what the rendering says (its own spelling aside).
    rendered = render(database, fleet_levels(DEFAULT_KEEP))
    assert "TTL window_start + INTERVAL 15 DAY" in rendered
    assert "toIntervalDay(15)" in built["traffic_5s"]
    assert "ttl_only_drop_parts = 1" in built["traffic_5s"]
    assert "PARTITION BY toDate(window_start)" in built["traffic_5s"]
    assert "ORDER BY (server, window_start, client_ip, direction)" in built["traffic_5s"]


@pytest.mark.parametrize("version", [1, 2, 3])
def test_an_older_version_is_migrated_and_its_rows_rolled_up(client: Any, version: int
                                                            ) -> None:
    """A database built by an older version's DDL, holding rows, becomes what a fresh init
    builds: the rollups it lacked are filled from the raw rows, the servers listed."""
    old, fresh = fresh_database("old"), fresh_database("fresh")
    build(client, version, old)
    assert read_state(client, old).version == version
    start = now_window() - 2 * 3600
    rows = [(server, start + 5 * n, f"192.0.2.{n % 7}", "in" if n % 3 else "out",
             [n, 2 * n, 3, 0, n % 11]) for n in range(1500) for server in ("web1", "web2")]
    insert(client, old, rows)
    result = init(client, old)
    init(client, fresh)
    assert (result.version_before, result.version) == (version, SCHEMA_VERSION)
    assert tables(client, old) == tables(client, fresh)
    want = [sum(row[4][index] for row in rows) for index in range(5)]
    for table in ("traffic_5s", "traffic_1m", "traffic_1h"):
        assert class_sums(client, old, table) == want, table
    servers = client.query(f"SELECT server, toUnixTimestamp(min(first_start)),"
                           f" toUnixTimestamp(max(last_end)) FROM {old}.traffic_servers"
                           " GROUP BY server ORDER BY server").result_rows
    assert servers == [("web1", start, start + 1500 * 5), ("web2", start, start + 1500 * 5)]
    assert not result.warnings


def insert_twice(client: Any, database: str, token: str) -> None:
    """One batch inserted twice with one deduplication token, as a sender retries it."""
    row = [["web1", now_window(), 5, "192.0.2.1", "in", 1, 2, 3, 4, 5]]
    for _ in range(2):
        client.insert(f"{database}.traffic_5s", row, column_names=[
            "server", "window_start", "window_seconds", "client_ip", "direction",
            "http_bytes", "ftp_bytes", "tcp_bytes", "udp_bytes", "other_bytes"],
            settings={"insert_deduplication_token": token,
                      "deduplicate_blocks_in_dependent_materialized_views": 1})


def test_every_resolutions_table_drops_a_retried_insert(client: Any) -> None:
    """Version 3's tables stored a batch retried with its token twice (a plain MergeTree
    keeps no deduplication window by default); version 4's, and a rollup a later --keep
    adds, store it once, in the raw table and in every rollup."""
    old = fresh_database("old")
    build(client, 3, old)
    insert_twice(client, old, "retried-batch")
    assert class_sums(client, old, "traffic_5s") == [2, 4, 6, 8, 10]  # the finding
    database = fresh_database()
    init(client, database)
    init(client, database, keep="5s=15d,1m=90d,5m=90d,1h=forever")
    built = tables(client, database)
    for table in ("traffic_5s", "traffic_1m", "traffic_5m", "traffic_1h"):
        assert (f"non_replicated_deduplication_window = {DEDUPLICATION_WINDOW}"
                in built[table]), table
    insert_twice(client, database, "retried-batch")
    for table in ("traffic_5s", "traffic_1m", "traffic_5m", "traffic_1h"):
        assert class_sums(client, database, table) == [1, 2, 3, 4, 5], table
    init(client, old)  # migrated: the same from then on
    insert_twice(client, old, "another-batch")
    assert class_sums(client, old, "traffic_5s") == [3, 6, 9, 12, 15]
    assert class_sums(client, old, "traffic_1h") == [3, 6, 9, 12, 15]


def test_the_keep_sets_the_ttls_and_another_keep_alters_them(client: Any) -> None:
    database = fresh_database()
    init(client, database, keep="5s=2d,1m=7d,1h=30d")
    assert _keeps(client, database) == {"traffic_5s": 2 * DAY, "traffic_1m": 7 * DAY,
                                        "traffic_1h": 30 * DAY}
    changed = init(client, database, keep=DEFAULT_KEEP)
    assert changed.done == ["keep traffic_5s: 2d -> 15d", "keep traffic_1m: 7d -> 90d",
                            "keep traffic_1h: 30d -> for ever"]
    assert _keeps(client, database) == {"traffic_5s": 15 * DAY, "traffic_1m": 90 * DAY,
                                        "traffic_1h": None}
    recorded = [description for (description,) in client.query(
        f"SELECT description FROM {database}.schema_migrations WHERE description LIKE"
        " 'keep %' ORDER BY applied_at, description").result_rows]
    assert sorted(recorded) == sorted(changed.done)
    # Without --keep, a re-run keeps what the database has.
    assert not init(client, database).changed
    assert _keeps(client, database)["traffic_5s"] == 15 * DAY


def _keeps(client: Any, database: str) -> dict[str, int | None]:
    return {name: keep_in_engine(engine_full) for name, engine_full in client.query(
        "SELECT name, engine_full FROM system.tables WHERE database = {database:String}"
        " AND name LIKE 'traffic\\\\_%' AND engine LIKE '%MergeTree'"
        " AND name != 'traffic_servers'",
        parameters={"database": database}).result_rows}


def test_a_shorter_keep_says_what_it_deletes(client: Any) -> None:
    database = fresh_database()
    init(client, database)
    now = now_window()
    insert(client, database, [("web1", now - 10 * DAY + 5 * n, "192.0.2.1", "in", [1] * 5)
                              for n in range(40)]
           + [("web1", now - 5 * n, "192.0.2.1", "in", [1] * 5) for n in range(1, 11)])
    result = init(client, database, keep="5s=7d,1m=90d,1h=forever", now=now)
    assert result.done == ["keep traffic_5s: 15d -> 7d"]
    assert len(result.warnings) == 1
    assert "traffic_5s: the new keep (7d) deletes its 40 stored rows from" in result.warnings[0]
    longer = init(client, database, keep="5s=30d,1m=90d,1h=forever", now=now)
    assert longer.done == ["keep traffic_5s: 7d -> 30d"] and not longer.warnings


def test_rows_past_the_keep_are_dropped_at_insert_as_expired_at_insert_counts(client: Any
                                                                            ) -> None:
    """A replay of old windows: the raw table keeps none of those past its keep (a day's
    part whose every row is expired is never written), the rollups keep them (their view
    sees the insert), and expired_at_insert counted exactly those."""
    database = fresh_database()
    init(client, database, keep="5s=2d,1m=30d,1h=forever")
    now = now_window()
    old_day = (now - 5 * DAY) // DAY * DAY
    rows = [("web1", old_day + 60 * n, "192.0.2.1", "out", [n, 0, 0, 0, 1]) for n in range(50)]
    recent = [("web1", now - 5 * n, "192.0.2.1", "out", [n, 0, 0, 0, 1]) for n in range(1, 20)]
    starts = [row[1] for row in rows + recent]
    levels = fleet_levels("5s=2d,1m=30d,1h=forever")
    assert expired_at_insert(levels, starts, time.time()) == {"traffic_5s": 50}
    insert(client, database, rows + recent)
    held = client.query(f"SELECT count() FROM {database}.traffic_5s").result_rows[0][0]
    assert held == len(recent)
    assert class_sums(client, database, "traffic_1m")[4] == len(rows) + len(recent)
    assert class_sums(client, database, "traffic_1h")[4] == len(rows) + len(recent)


def test_expired_at_insert_floors_to_each_step() -> None:
    levels = (Level(5, 100), Level(60, 200), Level(3600, None))
    now = 10_000
    # 9900 is exactly 100 s old: expired at 5 s; floored to 9840 it is 160 s old at 1 min.
    # 9800 floors to 9780 at 1 min: 220 s old, past 200.
    assert expired_at_insert(levels, [9900, 9905, 9800], now) == {"traffic_5s": 2,
                                                                   "traffic_1m": 1}
    assert expired_at_insert(levels, [], now) == {}
    assert expired_at_insert(levels, [now], now) == {}


def test_leaving_out_a_rollup_needs_drop_and_the_others_still_roll_up(client: Any) -> None:
    database = fresh_database()
    init(client, database)
    with pytest.raises(FleetError, match="--keep leaves out 1m: keep it in --keep, or add"
                                         " --drop to delete it"):
        init(client, database, keep="5s=15d,1h=forever")
    result = init(client, database, keep="5s=15d,1h=forever", drop_unlisted=True)
    assert result.done == ["traffic_1m: deleted (--drop), with its view"]
    assert "traffic_1m" not in tables(client, database)
    insert(client, database, [("web1", now_window(), "192.0.2.1", "in", [1, 2, 3, 4, 5])])
    assert class_sums(client, database, "traffic_1h") == [1, 2, 3, 4, 5]
    with pytest.raises(KeepError, match="the finest step is the daemons' 5-second window"):
        init(client, database, keep="1m=15d,1h=forever", drop_unlisted=True)


def test_a_rollup_added_over_rows_held_is_filled_from_the_table_reaching_furthest_back(
        client: Any) -> None:
    """5-minute windows added to a fleet whose minutes reach further back than its 5-second
    rows: filled from the minutes, its sums equal theirs, and new rows flow in."""
    database = fresh_database()
    init(client, database)
    now = now_window()
    insert(client, database, [("web1", now - 3600 + 5 * n, "192.0.2.1", "in", [1, 1, 1, 1, 1])
                              for n in range(100)])
    # Older minutes only (as if the 5-second rows had gone past their keep).
    client.insert(f"{database}.traffic_1m", [["web2", now - 20 * DAY, 60, "192.0.2.2", "out",
                                              7, 0, 0, 0, 0]],
                  column_names=["server", "window_start", "window_seconds", "client_ip",
                                "direction", "http_bytes", "ftp_bytes", "tcp_bytes",
                                "udp_bytes", "other_bytes"])
    result = init(client, database, keep="5s=15d,1m=90d,5m=90d,1h=forever")
    assert result.done == ["traffic_5m: filled from traffic_1m",
                           "traffic_5m: created (5m windows kept 90d), fed by traffic_5m_mv"]
    assert not result.warnings
    assert class_sums(client, database, "traffic_5m") == class_sums(client, database,
                                                                     "traffic_1m")
    insert(client, database, [("web1", now, "192.0.2.1", "in", [0, 0, 0, 0, 9])])
    assert class_sums(client, database, "traffic_5m")[4] == 109


def test_a_newer_schema_is_refused(client: Any) -> None:
    database = fresh_database()
    init(client, database)
    client.command(f"INSERT INTO {database}.schema_migrations (version, description)"
                   f" VALUES ({SCHEMA_VERSION + 1}, 'from the future')")
    with pytest.raises(FleetError, match=f"schema version {SCHEMA_VERSION + 1}, newer than"):
        init(client, database)


@pytest.mark.parametrize(("keep", "message"), [
    ("1m=15d,1h=forever", "the finest step is the daemons' 5-second window"),
    ("5s=15d,1m=1d", "--keep: 1m is kept less long than 5s"),
    ("5s=15d,8s=20d", "--keep: 8s is not a multiple of 5s"),
    ("5s", "--keep: '5s' is not STEP=KEEP"),
])
def test_a_keep_the_fleet_cannot_hold_is_one_line(keep: str, message: str) -> None:
    with pytest.raises(KeepError) as error:
        fleet_levels(keep)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(("url", "shown", "database"), [
    ("http://ch.example:8123/traffic", "http://ch.example:8123/traffic", "traffic"),
    ("https://ch.example/fleet", "https://ch.example:8443/fleet", "fleet"),
    ("http://[2001:db8::1]:9000/traffic/", "http://[2001:db8::1]:9000/traffic", "traffic"),
    ("chdb:///var/lib/tc/ch/traffic", "chdb:///var/lib/tc/ch/traffic", "traffic"),
])
def test_urls(url: str, shown: str, database: str) -> None:
    target = parse_url(url)
    assert (target.shown, target.database) == (shown, database)


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://host/traffic", "is not a ClickHouse URL"),
    ("http://host:8123", "name the server and the database"),
    ("http://user:secret@host:8123/traffic", "holds a password"),
    ("http://host:8123/traffic-1", "is not a database name"),
    ("http://host:8123/a;DROP TABLE x", "is not a database name"),
    ("http://host:99999/traffic", "the port is not a number"),
    ("chdb://traffic", "name the folder and the database"),
])
def test_urls_refused_in_one_line(url: str, message: str) -> None:
    with pytest.raises(UsageError) as error:
        parse_url(url)
    assert message in str(error.value) and "secret" not in str(error.value)


def test_a_database_name_is_the_only_name_in_statements(client: Any) -> None:
    """The rendering puts nothing else from outside into statements: a database name that
    is not an identifier never reaches one."""
    with pytest.raises(UsageError):
        render("x`; DROP DATABASE y; --", fleet_levels(DEFAULT_KEEP))
    assert Path(DDL / "v1.sql").read_text().count("CREATE DATABASE") == 1


# -- through the command


class FaultServer:
    """A local HTTP server that answers every request one way, and notes the credentials it
    was given."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        import http.server
        import threading

        seen: list[tuple[str, str]] = []
        self.seen = seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.answer()

            def do_GET(self) -> None:  # noqa: N802
                self.answer()

            def answer(self) -> None:
                import base64

                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                    seen.append((user, password))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_init_through_the_command(tmp_path: Path) -> None:
    """In a child process (its own chDB engine, on a folder of its own)."""
    from tests.conftest import run_cli

    target = f"chdb://{tmp_path / 'ch'}/traffic"
    first = run_cli(["clickhouse", "init", target], timeout=120)
    assert first.returncode == 0, first.stderr
    assert f"{target}: schema created (version {SCHEMA_VERSION})" in first.stdout
    assert ("traffic_5s: 5s windows kept 15d (rows older than that are dropped as they are"
            " inserted)") in first.stdout
    again = run_cli(["clickhouse", "init", target], timeout=120)
    assert f"schema at version {SCHEMA_VERSION}, nothing to change" in again.stdout
    changed = run_cli(["clickhouse", "init", target, "--keep", "5s=7d,1m=90d,1h=forever"],
                      timeout=120)
    assert "keep traffic_5s: 15d -> 7d" in changed.stdout and changed.returncode == 0
    info = run_cli(["clickhouse", "info", target, "--utc"], timeout=120)
    assert info.returncode == 0 and "5s: empty" in info.stdout and "0 servers" in info.stdout
    bad = run_cli(["clickhouse", "init", target, "--keep", "5s=7d,1m=1d"])
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "traffic-capture: error: --keep: 1m is kept less long than 5s; keep a coarser step"
        " at least as long"]


AUTH_FAILED = (b"Code: 516. DB::Exception: admin: Authentication failed: password is"
               b" incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)"
               b" (version 24.8.4.13 (official build))\n")


@pytest.mark.parametrize(("status", "body", "headers", "said"), [
    (401, AUTH_FAILED, {"X-ClickHouse-Exception-Code": "516"},
     "ClickHouse refused user 'admin' (wrong user or password; they come from"
     " TRAFFIC_CLICKHOUSE_USER and TRAFFIC_CLICKHOUSE_PASSWORD or --password-file)"),
    (404, b"<html><body>Not Found</body></html>", {"Content-Type": "text/html"},
     "does not answer as ClickHouse"),
    (200, b"<html><body>Welcome to nginx!</body></html>", {"Content-Type": "text/html"},
     "does not answer as ClickHouse"),
])
def test_init_refused_in_one_line(tmp_path: Path, status: int, body: bytes,
                                  headers: dict[str, str], said: str) -> None:
    """Refused credentials and a server that is not ClickHouse: one line, exit 1; the
    password came from the file, never from the command line."""
    from tests.conftest import run_cli

    server = FaultServer(status, body, headers)
    try:
        secret = tmp_path / "password"
        secret.write_text("s3cret-from-file\n")
        url = f"http://127.0.0.1:{server.port}/traffic"
        result = run_cli(["clickhouse", "init", url, "--password-file", str(secret)],
                         TRAFFIC_CLICKHOUSE_USER="admin")
    finally:
        server.close()
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"traffic-capture: error: {url}: "), lines
    assert said in lines[0]
    assert server.seen and set(server.seen) == {("admin", "s3cret-from-file")}
    assert "s3cret" not in result.stderr + result.stdout


def test_init_of_a_server_not_reached_and_without_the_extra(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    url = f"http://127.0.0.1:{closed_port()}/traffic"
    result = run_cli(["clickhouse", "init", url], TRAFFIC_CLICKHOUSE_PASSWORD="pw")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"traffic-capture: error: {url}: cannot reach ClickHouse: connection refused"]
    # Without clickhouse-connect: the install that works, in one line.
    import subprocess
    import sys

    from tests.conftest import child_env

    blocked = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['clickhouse_connect'] = None;"
         " from traffic_capture.cli import main; sys.exit(main(['clickhouse', 'init', "
         f"'{url}']))"], capture_output=True, text=True, env=child_env(), timeout=60)
    assert blocked.returncode == 1
    assert blocked.stderr.strip().splitlines() == [
        f"traffic-capture: error: ClickHouse needs clickhouse-connect: {sys.executable} -m"
        " pip install -e '.[clickhouse]' (in the project's folder)"]
