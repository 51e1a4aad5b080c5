"""--clickhouse through the real command: rows reach ClickHouse's engine (chDB) with their
server's name and the CSV's totals; a wrong URL, refused credentials or a missing schema stop
the run in one line before anything is created, and the password shows nowhere; a ClickHouse
that hangs, fails or is down leaves capture and the CSV alone, batches wait in the bounded
spool and are sent in order, each retry with its token, so that nothing doubles, also after a
kill -9; three daemons of three servers fill one store.

The success path runs chDB (chdb://); the HTTP side runs against local servers that fail on
purpose (tests/clickhouse_servers.py), one of which hands what it receives to chDB.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.clickhouse_servers import (
    ChdbOverHttp,
    NeverAnswers,
    NotClickHouse,
    RefusesEveryone,
    unused_port,
)
from tests.clickhouse_store import (
    DATABASE,
    PCAP_HEADER,
    chdb_client,
    create_store,
    csv_sums,
    store_sums,
    stored_rows,
    table_sums,
    traffic,
    write_pcap,
)
from tests.conftest import DAEMON, child_env, fill_disk, read_rows, run_cli
from tests.frames import SERVER4
from tests.requirements import needs_module
from traffic_capture.fleet.connect import Credentials, parse_url
from traffic_capture.fleet.reader import ClickHouseReader
from traffic_capture.queries import TimeRange
from traffic_capture.sinks.clickhouse_link import Store
from traffic_capture.sinks.clickhouse_sink import HEADER, utc_text
from traffic_capture.sinks.clickhouse_spool import BATCH_NAME, REJECTED, Spool

NOW = int(time.time()) // 60 * 60
RECENT = NOW - 1200  # well inside the ingest table's TTL of 15 days
SECRETS = ("TRAFFIC_CLICKHOUSE_USER", "TRAFFIC_CLICKHOUSE_PASSWORD", "CREDENTIALS_DIRECTORY")


def sender_env(**extra: str) -> dict[str, str]:
    env = child_env(**extra)
    for name in SECRETS:
        if name not in extra:
            env.pop(name, None)
    return env


def send(args: list[str], timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    """The daemon reading files (`--server-ip` given), in UTC so CSV and store share times."""
    return subprocess.run([*DAEMON, "--server-ip", SERVER4, "--utc", *args],
                          capture_output=True, text=True, timeout=timeout,
                          env=sender_env(**env), stdin=subprocess.DEVNULL)


def spooled(folder: Path) -> list[tuple[int, int]]:
    """(sequence, rows) of the batches waiting in a spool, in order."""
    found = [BATCH_NAME.match(p.name) for p in folder.iterdir()] if folder.exists() else []
    return sorted((int(m.group(1)), int(m.group(2))) for m in found if m)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    folder = tmp_path / "store"
    create_store(folder)
    return folder


def test_rows_reach_chdb_with_their_server_name_and_the_csvs_totals(
        tmp_path: Path, store: Path) -> None:
    pcap, csv = write_pcap(tmp_path / "a.pcap", RECENT, 120), tmp_path / "t.csv"
    name = 'web "1", east'  # a comma and quotes: the CSV's quoting, as ClickHouse reads it
    url = f"chdb://{store}/{DATABASE}"
    result = send(["--read", str(pcap), "--out", str(csv), "--clickhouse", url,
                   "--server-name", name, "--clickhouse-batch-rows", "40"])
    assert result.returncode == 0, result.stderr
    rows = read_rows(csv)
    assert f"written to {csv}, {url} (server '{name}')" in result.stderr
    assert f"clickhouse rows {len(rows)} written, 0 pending" in result.stderr
    with chdb_client(store) as client:
        assert store_sums(client) == csv_sums(csv)
        assert stored_rows(client) == len(rows)
        held = client.query(f"SELECT DISTINCT server, window_seconds, "
                            f"toString(window_start) FROM {DATABASE}.traffic_5s").result_rows
    assert {(server, seconds) for server, seconds, _ in held} == {(name, 5)}
    assert {start for _, _, start in held} == set(rows["window_start"])
    assert spooled(tmp_path / "clickhouse-spool") == []  # sent, then removed


def test_clickhouse_options_are_checked_and_a_password_is_never_taken_from_the_command_line(
        tmp_path: Path) -> None:
    pcap, csv = write_pcap(tmp_path / "a.pcap", RECENT, 10), tmp_path / "t.csv"
    base = ["--read", str(pcap), "--out", str(csv)]
    secret = "Sup3r-s3cret-pw"
    cases = [
        (["--server-name", "web-1"], "--server-name needs --clickhouse URL"),
        (["--clickhouse-spool-max", "1G"], "--clickhouse-spool-max needs --clickhouse URL"),
        (["--clickhouse", f"http://writer:{secret}@127.0.0.1:8123/traffic"],
         "a password in the URL shows in every user's process list"),
        (["--clickhouse", f"http://127.0.0.1:8123/traffic?password={secret}"],
         "a password in the URL"),
        (["--clickhouse", "http://127.0.0.1:8123/traffic", "--clickhouse-password", secret],
         "a password on the command line shows in every user's process list"),
        (["--clickhouse", "http://127.0.0.1:8123"], "the host and the database"),
        (["--clickhouse", "ftp://127.0.0.1/traffic"], "--clickhouse takes http://"),
        (["--clickhouse", "http://127.0.0.1:8123/traffic; DROP"], "must be letters, digits"),
        (["--clickhouse", "http://127.0.0.1:8123/traffic", "--clickhouse-password-file",
          str(tmp_path / "absent")], "cannot read the ClickHouse password"),
    ]
    for args, message in cases:
        result = send([*base, *args])
        assert result.returncode == 2, (args, result.stderr)
        assert message in one_line(result), (args, result.stderr)
        assert secret not in result.stderr + result.stdout
    assert not csv.exists()


def test_without_clickhouse_connect_it_is_one_line_naming_the_install(tmp_path: Path) -> None:
    hide = ("import sys; sys.modules['clickhouse_connect'] = None; "
            "from traffic_capture.cli import main; sys.exit(main(sys.argv[1:]))")
    pcap, csv = write_pcap(tmp_path / "a.pcap", RECENT, 10), tmp_path / "t.csv"
    result = subprocess.run([sys.executable, "-c", hide, "--read", str(pcap), "--server-ip",
                             SERVER4, "--out", str(csv), "--clickhouse",
                             "http://127.0.0.1:8123/traffic"],
                            capture_output=True, text=True, timeout=60, env=sender_env())
    assert result.returncode == 1
    assert "-m pip install -e '.[clickhouse]' (in the project's folder)" in one_line(result)
    assert not csv.exists() and not (tmp_path / "clickhouse-spool").exists()


def test_refused_credentials_stop_the_run_in_one_line_that_never_shows_the_password(
        tmp_path: Path, store: Path) -> None:
    pcap, csv = write_pcap(tmp_path / "a.pcap", RECENT, 10), tmp_path / "t.csv"
    wrong, right = "wr0ng-Passw0rd-xyz", "r1ght-Passw0rd-abc"
    password_file = tmp_path / "password"
    password_file.write_text(wrong + "\n")
    with ChdbOverHttp(store, password=right) as clickhouse:
        from_environment = send(["--read", str(pcap), "--out", str(csv), "--clickhouse",
                                 clickhouse.url()], TRAFFIC_CLICKHOUSE_PASSWORD=wrong)
        from_file = send(["--read", str(pcap), "--out", str(csv), "--clickhouse",
                          clickhouse.url(), "--clickhouse-password-file", str(password_file)])
        asked = list(clickhouse.requests)
    for result, origin in ((from_environment, "$TRAFFIC_CLICKHOUSE_PASSWORD"),
                           (from_file, f"the file {password_file}")):
        assert result.returncode == 1, result.stderr
        line = one_line(result)
        assert "refused the user 'default' (authentication failed)" in line, line
        assert f"(from {origin})" in line
        assert wrong not in result.stderr + result.stdout
    assert asked and all(wrong not in path for path, _ in asked)  # the password: a header
    with RefusesEveryone(status=403) as proxy:
        result = send(["--read", str(pcap), "--out", str(csv), "--clickhouse", proxy.url()],
                      TRAFFIC_CLICKHOUSE_PASSWORD=wrong)
    assert result.returncode == 1 and "refused the user 'default'" in one_line(result)
    assert wrong not in result.stderr + result.stdout
    assert not csv.exists() and not (tmp_path / "clickhouse-spool").exists()


def test_a_url_that_is_not_clickhouse_stops_the_run_in_one_line(tmp_path: Path) -> None:
    needs_module("clickhouse_connect")
    pcap, csv = write_pcap(tmp_path / "a.pcap", RECENT, 10), tmp_path / "t.csv"
    with NotClickHouse() as web_server:
        result = send(["--read", str(pcap), "--out", str(csv), "--clickhouse",
                       web_server.url()])
    assert result.returncode == 1
    line = one_line(result)
    assert f"{web_server.url()} answers, but not as ClickHouse" in line
    assert "ClickHouse's HTTP port is 8123" in line
    with NotClickHouse() as web_server:  # https to a port that speaks plain http
        url = web_server.url().replace("http://", "https://")
        result = send(["--read", str(pcap), "--out", str(csv), "--clickhouse", url])
    assert result.returncode == 1
    assert f"{url}: the TLS handshake failed" in one_line(result)
    assert not csv.exists()


def test_a_missing_schema_stops_the_run_in_one_line_naming_init(tmp_path: Path) -> None:
    pcap, csv = write_pcap(tmp_path / "a.pcap", RECENT, 10), tmp_path / "t.csv"
    empty, no_table, old = tmp_path / "empty", tmp_path / "no-table", tmp_path / "old"
    with chdb_client(empty, database=None) as client:
        client.command("SELECT 1")
    create_store(no_table, schema=False)
    create_store(old, schema=False)
    with chdb_client(old) as client:
        client.command(f"CREATE TABLE {DATABASE}.traffic_5s (server String, window_start "
                       "DateTime('UTC')) ENGINE = MergeTree ORDER BY server")
    init = "create the schema with 'traffic-capture clickhouse init URL'"
    cases = [(ChdbOverHttp(empty), f"has no database {DATABASE}: {init}"),
             (ChdbOverHttp(no_table), f"has no table {DATABASE}.traffic_5s: {init}"),
             (ChdbOverHttp(old), "lacks window_seconds, client_ip, direction, http_bytes")]
    for server, message in cases:
        with server:
            result = send(["--read", str(pcap), "--out", str(csv), "--clickhouse",
                           server.url()])
        assert result.returncode == 1, result.stderr
        assert message in one_line(result)
    result = send(["--read", str(pcap), "--out", str(csv), "--clickhouse",
                   f"chdb://{tmp_path / 'nowhere'}/{DATABASE}"])
    assert result.returncode == 1 and "does not exist; create the schema first" in \
        one_line(result)
    assert not (tmp_path / "nowhere").exists() and not csv.exists()


@pytest.mark.slow
def test_a_clickhouse_that_never_answers_leaves_capture_and_the_csv_alone(
        tmp_path: Path) -> None:
    """Timeouts: the rows all reach the CSV (as without --clickhouse), the batches wait in
    the spool, /api/status says so, and the run ends normally."""
    needs_module("clickhouse_connect")
    needs_module("fastapi", "web")
    import httpx

    pcap = write_pcap(tmp_path / "a.pcap", RECENT, 60)
    alone, csv = tmp_path / "alone.csv", tmp_path / "t.csv"
    assert send(["--read", str(pcap), "--out", str(alone)]).returncode == 0
    with NeverAnswers() as silent:
        daemon = subprocess.Popen(
            [*DAEMON, "--server-ip", SERVER4, "--utc", "--read", str(pcap), "--out", str(csv),
             "--clickhouse", silent.url(), "--clickhouse-timeout", "1",
             "--clickhouse-batch-rows", "10", "--web", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "stderr").open("w"), env=sender_env())
        try:
            status = wait_for_status(tmp_path / "stderr", httpx, lambda s: (
                s["source_done"] and s["clickhouse_rows_pending"] == s["rows_written"] > 0))
        finally:
            daemon.send_signal(signal.SIGINT)
            code = daemon.wait(60)
        assert silent.asked >= 2
    stderr = (tmp_path / "stderr").read_text()
    assert code == 0, stderr
    assert csv.read_bytes() == alone.read_bytes()
    rows = len(read_rows(csv))
    assert "did not answer within 1 s. Capture and the CSV go on" in stderr
    assert status["clickhouse_rows_sent"] == 0 and "did not answer" in status["clickhouse_error"]
    assert status["clickhouse_spool_bytes"] > 0
    assert sum(r for _, r in spooled(tmp_path / "clickhouse-spool")) == rows
    assert f"clickhouse: {rows:,} rows wait in {tmp_path / 'clickhouse-spool'}" in stderr


def wait_for_status(stderr: Path, httpx: object, ready: object, timeout: float = 60) -> dict:
    """/api/status of the daemon whose stderr names its dashboard, once `ready(status)`."""
    from tests.web_helpers import URL

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = URL.search(stderr.read_text())
        if found:
            status = httpx.get(found.group(1) + "api/status", timeout=10).json()  # type: ignore[attr-defined]
            if ready(status):  # type: ignore[operator]
                return status
        time.sleep(0.2)
    raise AssertionError(f"no such status; stderr:\n{stderr.read_text()}")


def test_failures_then_acceptance_keep_the_order_and_double_nothing(
        tmp_path: Path, store: Path) -> None:
    """The first batch is stored but its answer lost, then refused once, then taken: on the
    wire the three attempts carry one token, the batches are stored in the order they were
    made, and ClickHouse holds each row once."""
    pcap, csv = write_pcap(tmp_path / "a.pcap", RECENT, 90), tmp_path / "t.csv"
    with ChdbOverHttp(store) as clickhouse:
        clickhouse.script = ["lose", "fail"]
        result = send(["--read", str(pcap), "--out", str(csv), "--clickhouse",
                       clickhouse.url(), "--clickhouse-batch-rows", "20"])
        assert result.returncode == 0, result.stderr
        inserts = clickhouse.inserts
        assert [i.outcome for i in inserts[:3]] == ["lost", "failed", "stored"]
        assert len({i.token for i in inserts[:3]}) == 1
        assert len({i.body for i in inserts[:3]}) == 1  # the same bytes, from the spool
        for insert in inserts:  # async inserts, answered once stored, deduplicated
            assert insert.settings is not None
            assert {k: insert.settings.get(k) for k in (
                "async_insert", "wait_for_async_insert", "deduplicate_insert",
                "async_insert_deduplicate",
                "deduplicate_blocks_in_dependent_materialized_views")} == {
                "async_insert": "1", "wait_for_async_insert": "1", "deduplicate_insert":
                "enable", "async_insert_deduplicate": "1",
                "deduplicate_blocks_in_dependent_materialized_views": "1"}
        tokens = [i.token for i in inserts]
        first_seen = list(dict.fromkeys(tokens))
        assert [i.token for i in inserts if i.outcome == "stored"] == first_seen
        assert len(first_seen) >= 4 and all(t and t.startswith("traffic-capture-")
                                            for t in first_seen)
        starts = [min(line.split(b",")[-9] for line in i.body.splitlines()[1:])
                  for i in inserts if i.outcome == "stored"]
        assert starts == sorted(starts)  # in order
        client = clickhouse.query_client()
        assert store_sums(client) == csv_sums(csv)
        assert stored_rows(client) == len(read_rows(csv))  # the lost batch: once
    assert "takes rows again after" in result.stderr
    assert "clickhouse rows" in result.stderr and ", 0 pending" in result.stderr


@pytest.mark.slow
def test_the_spool_is_bounded_the_oldest_given_up_and_counted(
        tmp_path: Path, store: Path) -> None:
    """ClickHouse down (nothing listens): batches pile up in a spool of 3 KiB; the oldest go,
    counted in the status line and the summary; what is kept is sent by the next run."""
    pcap, csv = write_pcap(tmp_path / "a.pcap", RECENT, 120), tmp_path / "t.csv"
    spool = tmp_path / "spool"
    with unused_port() as port:
        result = send(["--read", str(pcap), "--out", str(csv), "--clickhouse",
                       f"http://127.0.0.1:{port}/{DATABASE}", "--clickhouse-spool", str(spool),
                       "--clickhouse-spool-max", "3K", "--clickhouse-batch-rows", "6"])
    assert result.returncode == 0, result.stderr
    assert "refuses connections (down, or nothing listens on port" in result.stderr
    rows = len(read_rows(csv))
    kept = spooled(spool)
    kept_rows = sum(r for _, r in kept)
    dropped = rows - kept_rows
    assert kept and dropped > 0
    assert sum(p.stat().st_size for p in spool.glob("*.csv")) <= 3 * 1024
    sequences = [s for s, _ in kept]
    assert sequences == list(range(sequences[0], sequences[-1] + 1))
    assert sequences[0] > 1  # the newest are kept
    assert "passed --clickhouse-spool-max (3 KiB)" in result.stderr
    assert f"clickhouse rows 0 written, {kept_rows:,} pending, {dropped:,} dropped" in \
        result.stderr
    assert f"clickhouse: {dropped:,} rows were given up when the spool passed" in result.stderr
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(PCAP_HEADER)
    later = send(["--read", str(empty), "--out", str(tmp_path / "u.csv"), "--clickhouse",
                  f"chdb://{store}/{DATABASE}", "--clickhouse-spool", str(spool)])
    assert later.returncode == 0, later.stderr
    assert f"{kept_rows:,} rows an earlier run left in {spool} are sent first" in later.stderr
    with chdb_client(store) as client:
        assert stored_rows(client) == kept_rows
        newest = client.command(f"SELECT toString(max(window_start)) FROM "
                                f"{DATABASE}.traffic_5s")
    assert newest == read_rows(csv)["window_start"].max()
    assert spooled(spool) == []


def test_a_spool_left_by_kill_9_is_sent_by_the_next_run_without_doubling(
        tmp_path: Path, store: Path) -> None:
    """A daemon reads a stream while ClickHouse stores its first batch but loses the answer
    and then refuses; killed with SIGKILL, it leaves its batches in the spool. The next run
    sends them first (the stored one again, with its token: ClickHouse drops it), then its
    own: the store holds both CSVs' rows once."""
    spool, first_csv, second_csv = tmp_path / "spool", tmp_path / "1.csv", tmp_path / "2.csv"
    with ChdbOverHttp(store) as clickhouse:
        clickhouse.script = ["lose"] + ["fail"] * 10_000
        daemon = subprocess.Popen(
            [*DAEMON, "--server-ip", SERVER4, "--utc", "--read", "-", "--out", str(first_csv),
             "--clickhouse", clickhouse.url(), "--clickhouse-spool", str(spool),
             "--clickhouse-batch-seconds", "0.2", "--clickhouse-batch-rows", "10",
             "--server-name", "web-1"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=sender_env())
        assert daemon.stdin is not None
        try:
            daemon.stdin.write(PCAP_HEADER + traffic(RECENT, 60))
            daemon.stdin.flush()  # and kept open: the daemon waits for more
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                written = len(read_rows(first_csv)) if first_csv.exists() else 0
                waiting = spooled(spool)
                if written and len(waiting) >= 3 and sum(r for _, r in waiting) == written:
                    break
                time.sleep(0.1)
            else:
                raise AssertionError("the batches never all reached the spool")
        finally:
            daemon.kill()
            daemon.wait(10)
        assert clickhouse.inserts[0].outcome == "lost"
        lost_token = clickhouse.inserts[0].token
        second = write_pcap(tmp_path / "b.pcap", RECENT + 600, 40)
        clickhouse.script = []
        result = send(["--read", str(second), "--out", str(second_csv), "--clickhouse",
                       clickhouse.url(), "--clickhouse-spool", str(spool),
                       "--server-name", "web-1"])
        assert result.returncode == 0, result.stderr
        assert "an earlier run left in" in result.stderr
        again = [i.outcome for i in clickhouse.inserts if i.token == lost_token]
        assert again[0] == "lost" and again[-1] == "stored"  # sent again by the next run
        client = clickhouse.query_client()
        assert store_sums(client) == csv_sums(first_csv, second_csv)
        assert stored_rows(client) == len(read_rows(first_csv)) + len(read_rows(second_csv))
    assert spooled(spool) == []


def test_a_clickhouse_down_at_start_gets_the_waiting_batches_once_it_is_up(
        tmp_path: Path, store: Path) -> None:
    """Nothing listens at start: capture and the CSV start anyway, batches wait; once
    ClickHouse listens on that port, the running daemon checks its table and sends them."""
    with unused_port() as port:
        pass
    csv, spool, stderr = tmp_path / "t.csv", tmp_path / "clickhouse-spool", tmp_path / "err"
    daemon = subprocess.Popen(
        [*DAEMON, "--server-ip", SERVER4, "--utc", "--read", "-", "--out", str(csv),
         "--clickhouse", f"http://127.0.0.1:{port}/{DATABASE}", "--clickhouse-batch-seconds",
         "0.2", "--clickhouse-batch-rows", "10"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr.open("w"),
        env=sender_env())
    assert daemon.stdin is not None
    try:
        daemon.stdin.write(PCAP_HEADER + traffic(RECENT, 40))
        daemon.stdin.flush()
        wait_until(lambda: "refuses connections" in stderr.read_text() and csv.exists()
                   and sum(r for _, r in spooled(spool)) == len(read_rows(csv)) > 0)
        with ChdbOverHttp(store, port=port) as clickhouse:
            wait_until(lambda: "takes rows again" in stderr.read_text()
                       and not spooled(spool))
            daemon.stdin.close()  # the stream ends: the last window is written, and sent
            assert daemon.wait(60) == 0, stderr.read_text()
            assert store_sums(clickhouse.query_client()) == csv_sums(csv)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(10)


def wait_until(ready: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("it never happened")
        time.sleep(0.1)


def test_three_daemons_of_three_servers_fill_one_store(tmp_path: Path, store: Path) -> None:
    """Three captures read at once by three daemons, each with its server's name, into one
    ClickHouse (chDB behind the local HTTP server: chDB opens a folder in one process only);
    the fleet's reader gives each server's totals and the fleet's, equal to the CSVs', at
    5 s, 1 min and 1 h."""
    names = ("web-1", "web-2", "db-1")
    with ChdbOverHttp(store) as clickhouse:
        daemons = []
        for index, name in enumerate(names):
            pcap = write_pcap(tmp_path / f"{name}.pcap", RECENT + 7 * index, 60 + 20 * index,
                              clients=2 + index, network=f"198.51.{100 + index}")
            daemons.append(subprocess.Popen(
                [*DAEMON, "--server-ip", SERVER4, "--read", str(pcap), "--out",
                 str(tmp_path / f"{name}.csv"), "--server-name", name, "--clickhouse",
                 clickhouse.url(), "--clickhouse-spool", str(tmp_path / f"{name}-spool"),
                 "--clickhouse-batch-rows", "15"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                env=sender_env()))
        for daemon in daemons:
            _, stderr = daemon.communicate(timeout=120)
            assert daemon.returncode == 0, stderr
        client = clickhouse.query_client()
        csvs = [tmp_path / f"{name}.csv" for name in names]
        for name, csv in zip(names, csvs, strict=True):
            assert store_sums(client, server=name) == csv_sums(csv), name
        assert store_sums(client) == csv_sums(*csvs)
        assert stored_rows(client) == sum(len(read_rows(csv)) for csv in csvs)
        fleet = ClickHouseReader(client, database=DATABASE)
        assert [server.name for server in fleet.servers()] == sorted(names)
        for resolution in (5, 60, 3600):
            for name, csv in zip(names, csvs, strict=True):
                assert reader_sums(fleet.of_servers([name]), resolution) == csv_sums(csv), (
                    name, resolution)
            assert reader_sums(fleet, resolution) == csv_sums(*csvs), resolution


def reader_sums(reader: ClickHouseReader, resolution: int
                ) -> dict[tuple[str, str], list[int]]:
    """csv_sums' shape from the fleet reader's client totals over everything it holds."""
    totals = reader.client_totals(TimeRange(0, 1 << 40), resolution)
    assert totals.resolution == resolution
    return {(client, direction): [int(v) for v in sums]
            for client, both in zip(totals.clients, totals.sums, strict=True)
            for direction, sums in zip(("in", "out"), both, strict=True) if sums.any()}


def test_a_batch_sent_twice_with_its_token_is_stored_once_in_every_table(
        tmp_path: Path) -> None:
    """On the schema `clickhouse init` makes (the command, in a child), the sender's Store
    inserts a batch, then the same batch again as a retry does (the same bytes, so the same
    token): traffic_5s holds it once, and so do traffic_1m and traffic_1h (their views
    deduplicate with it); another batch is stored, and so are two batches of the same bytes
    (each its own identity)."""
    folder = tmp_path / "store"
    url = f"chdb://{folder}/{DATABASE}"
    made = run_cli(["clickhouse", "init", url], timeout=120)
    assert made.returncode == 0, made.stderr
    lines = [f'"web-1",{utc_text(RECENT + 5 * n)},5,198.51.100.{n % 3},{"in" if n % 2 else "out"},'
             f"{n},1,2,3,4\n" for n in range(30)]  # two and a half minutes
    batch = (HEADER + "".join(lines)).encode()
    other = (HEADER + lines[0].replace('"web-1"', '"web-2"')).encode()
    store = Store(parse_url(url), Credentials(), timeout=30)
    try:
        assert store.verify().keep_s == 15 * 86400
        store.insert(batch, "1" * 16)
        store.insert(batch, "1" * 16)  # its answer was lost: sent again
        store.insert(other, "2" * 16)
        late = (HEADER + lines[5]).encode()  # a window closed again, with the same bytes
        store.insert(late, "3" * 16)
        store.insert(late, "4" * 16)  # ... twice: two batches of the same bytes both count
    finally:
        store.close()
    once = [sum(range(30)) + 0 + 2 * 5, 33, 66, 99, 132]
    with chdb_client(folder) as client:
        assert stored_rows(client) == 33
        for table in ("traffic_5s", "traffic_1m", "traffic_1h"):
            assert table_sums(client, table) == once, table


def test_rows_older_than_the_ttl_are_counted_and_said_once(tmp_path: Path,
                                                           store: Path) -> None:
    old = write_pcap(tmp_path / "old.pcap", NOW - 30 * 86400, 30)
    recent = write_pcap(tmp_path / "recent.pcap", RECENT, 30)
    csv = tmp_path / "t.csv"
    result = send(["--read", str(old), "--read", str(recent), "--out", str(csv),
                   "--clickhouse", f"chdb://{store}/{DATABASE}",
                   "--clickhouse-batch-rows", "8"])
    assert result.returncode == 0, result.stderr
    rows = read_rows(csv)
    cutoff = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(NOW - 15 * 86400))
    expired = int((rows["window_start"] < cutoff).sum())
    assert 0 < expired < len(rows)
    assert result.stderr.count("older than traffic_5s's TTL (15 days)") == 2  # said, summed
    assert (f"clickhouse: {expired:,} rows sent were older than traffic_5s's TTL (15 days): "
            "ClickHouse dropped them from that table at insert") in result.stderr
    with chdb_client(store) as client:
        assert stored_rows(client) == len(rows) - expired


def test_a_batch_clickhouse_cannot_read_is_set_aside_and_the_rest_goes_on(
        tmp_path: Path, store: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    bad = spool / "000000000001-1-0.csv"
    bad.write_text("server,window_start,window_seconds,client_ip,direction,http_bytes,"
                   "ftp_bytes,tcp_bytes,udp_bytes,other_bytes\n"
                   '"web-1",not a time,5,198.51.100.1,in,1,2,3,4,5\n')
    pcap, csv = write_pcap(tmp_path / "a.pcap", RECENT, 30), tmp_path / "t.csv"
    result = send(["--read", str(pcap), "--out", str(csv), "--clickhouse",
                   f"chdb://{store}/{DATABASE}", "--clickhouse-spool", str(spool)])
    assert result.returncode == 0, result.stderr
    assert "cannot read the batch" in result.stderr
    assert (spool / REJECTED / bad.name).exists() and not bad.exists()
    assert "1 rows were refused by ClickHouse as unreadable" in result.stderr
    with chdb_client(store) as client:
        assert store_sums(client) == csv_sums(csv)


def test_a_full_disk_under_the_spool_sends_the_batches_from_memory(
        small_disk: Path, tmp_path: Path, store: Path) -> None:
    spool = small_disk / "spool"
    made = Spool(spool, 1 << 20)
    made.open()  # made while there is room (its lock file), then let go
    made.close()
    fill_disk(small_disk, leave_free=0)
    pcap, csv = write_pcap(tmp_path / "a.pcap", RECENT, 60), tmp_path / "t.csv"
    result = send(["--read", str(pcap), "--out", str(csv), "--clickhouse",
                   f"chdb://{store}/{DATABASE}", "--clickhouse-spool", str(spool),
                   "--clickhouse-batch-rows", "10"])
    assert result.returncode == 0, result.stderr
    assert f"cannot write the ClickHouse spool {spool} (No space left on device)" in \
        result.stderr
    assert ", 0 pending" in result.stderr and "given up" not in result.stderr
    with chdb_client(store) as client:
        assert store_sums(client) == csv_sums(csv)
        assert stored_rows(client) == len(read_rows(csv))


def test_the_service_unit_loads_the_password_and_keeps_it_out_of_the_unit(
        tmp_path: Path) -> None:
    password = "unit-Passw0rd-987"
    password_file = tmp_path / "clickhouse-password"
    password_file.write_text(password + "\n")
    url = "http://writer@clickhouse.example:8123/traffic"
    result = subprocess.run(
        [*DAEMON, "service-unit", "--server-ip", "192.0.2.1", "--clickhouse", url,
         "--clickhouse-password-file", str(password_file), "--server-name", "web-1"],
        capture_output=True, text=True, timeout=60, env=sender_env())
    assert result.returncode == 0, result.stderr
    assert password not in result.stdout + result.stderr
    keys = dict(line.split("=", 1) for line in result.stdout.splitlines()
                if "=" in line and not line.startswith("#"))
    assert keys["LoadCredential"] == f"clickhouse-password:{password_file}"
    assert f"--clickhouse {url}" in keys["ExecStart"]
    assert "--clickhouse-password-file" not in keys["ExecStart"]
    assert "ReadWritePaths" not in result.stdout  # the spool: in the state folder
    elsewhere = subprocess.run(
        [*DAEMON, "service-unit", "--server-ip", "192.0.2.1", "--clickhouse", url,
         "--clickhouse-spool", "/srv/traffic-spool"],
        capture_output=True, text=True, timeout=60, env=sender_env())
    assert "ReadWritePaths=/srv/traffic-spool" in elsewhere.stdout, elsewhere.stderr
    from_environment = subprocess.run(
        [*DAEMON, "service-unit", "--server-ip", "192.0.2.1", "--clickhouse",
         "http://clickhouse.example:8123/traffic"], capture_output=True, text=True,
        timeout=60, env=sender_env(TRAFFIC_CLICKHOUSE_USER="writer"))
    assert from_environment.returncode == 2
    assert "put it in the URL (http://USER@HOST:8123/DATABASE)" in one_line(from_environment)


def test_the_daemon_reads_the_password_from_systemds_credential(tmp_path: Path,
                                                                store: Path) -> None:
    password = "cred-Passw0rd-456"
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "clickhouse-password").write_text(password + "\n")
    pcap, csv = write_pcap(tmp_path / "a.pcap", RECENT, 30), tmp_path / "t.csv"
    with ChdbOverHttp(store, user="writer", password=password) as clickhouse:
        result = send(["--read", str(pcap), "--out", str(csv), "--clickhouse",
                       clickhouse.url(user="writer")], CREDENTIALS_DIRECTORY=str(credentials))
        assert result.returncode == 0, result.stderr
        assert password not in result.stderr + result.stdout
        assert store_sums(clickhouse.query_client()) == csv_sums(csv)


def test_a_second_daemon_on_the_same_spool_is_refused_before_anything_is_created(
        tmp_path: Path, store: Path) -> None:
    spool = Spool(tmp_path / "spool", 1 << 20)
    spool.open()
    try:
        pcap, csv = write_pcap(tmp_path / "a.pcap", RECENT, 10), tmp_path / "t.csv"
        result = send(["--read", str(pcap), "--out", str(csv), "--clickhouse",
                       f"chdb://{store}/{DATABASE}", "--clickhouse-spool",
                       str(tmp_path / "spool")])
    finally:
        spool.close()
    assert result.returncode == 1
    assert "is used by another running daemon" in one_line(result)
    assert not csv.exists()


def test_the_help_names_where_the_password_comes_from() -> None:
    result = subprocess.run([*DAEMON, "--help"], capture_output=True, text=True, timeout=60,
                            env=sender_env())
    assert "--clickhouse URL" in result.stdout and "--server-name NAME" in result.stdout
    assert "--clickhouse-password " not in result.stdout  # refused, so not offered
    assert "$TRAFFIC_CLICKHOUSE_PASSWORD" in result.stdout
