"""The ClickHouse sender's small parts, alone: its URLs (fleet.connect's, with the daemon's
stricter checks), the TTL it reads, the rows it counts as expired, and the spool's files
(whole, in order, bounded, one daemon at a time)."""

from __future__ import annotations

import calendar
import hashlib
import time
from pathlib import Path

import pytest

from traffic_capture.errors import UsageError
from traffic_capture.fleet.connect import Credentials, parse_url
from traffic_capture.fleet.schema import expired_at_insert, keep_in_engine
from traffic_capture.history.retention import Level
from traffic_capture.sinks.clickhouse_link import batch_token
from traffic_capture.sinks.clickhouse_sink import batch_starts, csv_field, size_text
from traffic_capture.sinks.clickhouse_spool import (
    LOCK,
    REJECTED,
    Spool,
    SpoolError,
    new_identity,
)


@pytest.mark.parametrize(("url", "shown", "host", "port", "database", "user"), [
    ("http://clickhouse.example:8123/traffic", "http://clickhouse.example:8123/traffic",
     "clickhouse.example", 8123, "traffic", None),
    ("https://writer@ch.example/fleet", "https://writer@ch.example:8443/fleet",
     "ch.example", 8443, "fleet", "writer"),
    ("HTTP://[2001:db8::5]/traffic/", "http://[2001:db8::5]:8123/traffic", "2001:db8::5",
     8123, "traffic", None),
])
def test_urls_are_taken_apart(url: str, shown: str, host: str, port: int, database: str,
                              user: str | None) -> None:
    target = parse_url(url)
    assert (target.url, target.host, target.port, target.database, target.user) == (
        shown, host, port, database, user)


def test_a_chdb_url_names_a_folder_and_its_database(tmp_path: Path) -> None:
    target = parse_url(f"chdb://{tmp_path}/store/traffic")
    assert target.folder == tmp_path / "store" and target.database == "traffic"
    assert target.url == f"chdb://{tmp_path}/store/traffic"


@pytest.mark.parametrize("url", [
    "http://u:hunter2-secret@h:8123/traffic", "http://h:8123/traffic?password=hunter2-secret",
    "http://h:hunter2-secret/traffic",  # a port that is not one: never repeated
])
def test_a_url_with_a_password_is_refused_without_repeating_it(url: str) -> None:
    with pytest.raises(UsageError) as refused:
        parse_url(url)
    assert "hunter2-secret" not in str(refused.value)


def test_the_password_never_shows_in_a_repr_or_a_scrubbed_message() -> None:
    credentials = Credentials("writer", "pa55-word", "the URL", "environment")
    assert "pa55-word" not in repr(credentials)
    assert credentials.scrub("auth pa55-word failed") == "auth *** failed"


@pytest.mark.parametrize(("engine_full", "seconds"), [
    ("MergeTree ORDER BY (server, window_start) TTL window_start + toIntervalDay(15) "
     "SETTINGS index_granularity = 8192", 15 * 86400),
    ("MergeTree ORDER BY x TTL window_start + INTERVAL 3 HOUR", 3 * 3600),
    ("SummingMergeTree ORDER BY x TTL window_start + toIntervalMonth(1)", 28 * 86400),
    ("MergeTree ORDER BY x", None),
    ("MergeTree ORDER BY x TTL other_column + toIntervalDay(1)", None),
])
def test_the_raw_tables_ttl_is_read_from_its_engine(engine_full: str,
                                                    seconds: int | None) -> None:
    assert keep_in_engine(engine_full) == seconds


def test_expired_rows_are_counted_by_their_window_start() -> None:
    server = csv_field('a, "b"')  # quoted, with a comma: a CSV reader, not a split
    data = ("server,window_start,window_seconds,client_ip,direction,http_bytes,ftp_bytes,"
            "tcp_bytes,udp_bytes,other_bytes\n"
            f"{server},2026-01-01 00:00:00,5,198.51.100.1,in,1,0,0,0,0\n"
            f"{server},2026-03-01 00:00:05,5,198.51.100.1,out,1,0,0,0,0\n").encode()
    assert rows_older_than(data, "2026-02-01 00:00:00") == 1
    assert rows_older_than(data, "2025-01-01 00:00:00") == 0


def rows_older_than(data: bytes, cutoff: str) -> int:
    """The rows of a batch the raw table drops at insert when `cutoff` is its keep ago, as
    the sender counts them (its batch's starts, the schema's rule)."""
    keep_s = 30 * 86400
    now = calendar.timegm(time.strptime(cutoff, "%Y-%m-%d %H:%M:%S")) + keep_s
    return expired_at_insert((Level(5, keep_s),), batch_starts(data), now).get("traffic_5s", 0)


def test_a_batchs_token_is_its_identity_and_its_contents() -> None:
    """A retry (the same identity, the same bytes) has the same token; another batch of the
    same bytes (a window closed again with the same late bytes) has another; a batch an older
    version spooled (no identity) keeps the token it had."""
    one, two = new_identity(), new_identity()
    assert one != two and len(one) == 16
    assert batch_token(b"a", one) == batch_token(b"a", one) != batch_token(b"b", one)
    assert batch_token(b"a", one) != batch_token(b"a", two)
    assert batch_token(b"a", "") == "traffic-capture-" + hashlib.sha256(b"a").hexdigest()


def test_sizes_read_as_the_option_takes_them() -> None:
    assert [size_text(n) for n in (900, 3 << 10, 500 << 20, 1 << 30)] == [
        "900 bytes", "3 KiB", "500 MiB", "1 GiB"]


def test_the_spool_keeps_whole_batches_in_order_and_the_newest_past_its_bound(
        tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=250)
    spool.check()
    assert not (tmp_path / "spool").exists()  # check() creates nothing
    assert spool.open() == []
    dropped = []
    for number in range(5):
        dropped += spool.add(bytes([65 + number]) * 100, rows=number + 1, oldest_start=number,
                             identity=f"{number:016x}")
    assert [b.rows for b in dropped] == [1, 2, 3] and spool.size == 200
    assert [b.rows for b in spool.batches] == [4, 5]
    assert spool.oldest() is not None and spool.oldest().read() == b"D" * 100
    spool.add(b"huge" * 100, rows=9, oldest_start=9,  # bigger than the bound: kept alone
              identity="9" * 16)
    assert [b.rows for b in spool.batches] == [9]
    spool.close()
    (tmp_path / "spool" / ".tmp-000000000009-1-1.csv").write_bytes(b"half a batch")
    again = Spool(tmp_path / "spool", max_bytes=1000)
    (tmp_path / "spool" / "000000000001-2-3.csv").write_bytes(b"an older version's batch")
    left = again.open()  # a new run takes up what is left, and numbers on from it
    assert [(b.sequence, b.rows, b.oldest_start, b.identity) for b in left] == [
        (1, 2, 3, ""), (6, 9, 9, "9" * 16)]
    again.remove(left[0])
    assert not (tmp_path / "spool" / ".tmp-000000000009-1-1.csv").exists()
    again.add(b"x", rows=1, oldest_start=10, identity="a" * 16)
    assert again.batches[-1].path.name == f"000000000007-1-10-{'a' * 16}.csv"
    aside = again.set_aside(again.batches[0])
    assert aside == tmp_path / "spool" / REJECTED / f"000000000006-9-9-{'9' * 16}.csv"
    assert aside.exists()
    assert [b.sequence for b in again.batches] == [7]
    again.close()


def test_one_daemon_at_a_time_holds_a_spool(tmp_path: Path) -> None:
    first = Spool(tmp_path / "spool", 1 << 20)
    first.open()
    second = Spool(tmp_path / "spool", 1 << 20)
    with pytest.raises(SpoolError, match="used by another running daemon"):
        second.check()
    first.close()
    second.check()  # free again
    assert (tmp_path / "spool" / LOCK).exists()


def test_a_spool_path_that_is_a_file_is_refused_before_anything_starts(
        tmp_path: Path) -> None:
    (tmp_path / "spool").write_text("")
    with pytest.raises(SpoolError, match="is not a folder"):
        Spool(tmp_path / "spool", 1 << 20).check()
