"""ClickHouseReader on the real engine (chDB): bytes conserved at every resolution, the
Reader contract against a pandas groupby, servers read apart and together, and every value a
parameter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fleet_store import GROUP, engine, fresh_database, insert
from traffic_capture.csvformat import Row, format_rows, header_line
from traffic_capture.excel.read import read_traffic
from traffic_capture.fleet.migrate import init
from traffic_capture.fleet.reader import ClickHouseReader
from traffic_capture.fleet.schema import FleetError
from traffic_capture.queries import Reader, TimeRange, pick_resolution
from traffic_capture.rules import CLASSES

pytestmark = pytest.mark.xdist_group(GROUP)
H = 3600
START = 1_700_000_000 // 86400 * 86400  # a UTC midnight
EVERYTHING = TimeRange(0, 1 << 40)
BYTES = [f"{name}_bytes" for name in CLASSES]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with engine(tmp_path_factory.mktemp("chdb")) as opened:
        yield opened


def new_fleet(client: Any, keep: str = "5s=forever,1m=forever,1h=forever") -> str:
    """A fresh schema that keeps everything (the rows here are from 2023)."""
    database = fresh_database("fleet")
    init(client, database, keep=keep)
    return database


def reader_of(client: Any, database: str, servers: list[str] | None = None
              ) -> ClickHouseReader:
    return ClickHouseReader(client, servers=servers, database=database)


windows = st.lists(st.tuples(
    st.integers(0, 3 * 720),  # window number: three hours and a bit
    st.sampled_from(["web1", "web2", "db1"]),
    st.lists(st.tuples(st.sampled_from(["192.0.2.1", "192.0.2.9", "2001:db8::1", "other"]),
                       st.booleans(), st.lists(st.integers(0, 10**12), min_size=5,
                                               max_size=5)),
             min_size=1, max_size=4)),
    min_size=1, max_size=25)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(windows, st.lists(st.integers(1, 6), min_size=1, max_size=4), st.data())
def test_every_class_is_conserved_at_every_resolution(client: Any, given_windows: list,
                                                      batches: list[int], data: st.DataObject
                                                      ) -> None:
    """Rows of several servers inserted in batches of any size (a window given twice adds
    up): over any range aligned to the hour, every class's bytes are the same at 5 s, 1 min
    and 1 h, for all servers and for each, and equal to the rows inserted."""
    database = new_fleet(client)
    rows = [(server, START + 5 * number, client_ip, "in" if inbound else "out", counts)
            for number, server, window in given_windows
            for client_ip, inbound, counts in window]
    position, sizes = 0, iter(batches * len(rows))
    while position < len(rows):  # several inserts: several parts, merged or not
        size = next(sizes)
        insert(client, database, rows[position:position + size])
        position += size
    expected = pd.DataFrame([(server, start, *counts) for server, start, _, _, counts in rows],
                            columns=["server", "start", *CLASSES])
    fleet = reader_of(client, database)
    for _ in range(3):
        first = data.draw(st.integers(0, 3), "first hour")
        hours = data.draw(st.integers(1, 4), "hours")
        when = TimeRange(START + first * H, START + (first + hours) * H)
        server = data.draw(st.sampled_from([None, "web1", "web2", "db1"]), "server")
        inside = expected[(expected.start >= when.start_s) & (expected.start < when.end_s)
                          & ((expected.server == server) if server else True)]
        want = inside[list(CLASSES)].sum().to_numpy().tolist()
        read = fleet if server is None else fleet.of_servers([server])
        for resolution in (5, 60, H):
            got = read.client_totals(when, resolution).sums.sum(axis=(0, 1)).tolist()
            assert got == want, (resolution, server)


def contract_rows(client: Any) -> tuple[str, list[Row], list[tuple[str, Row]]]:
    """Two servers, 400 windows, six of 32 clients each: the fleet's rows, summed as the
    fleet's CSV would have them, and per server."""
    rng = np.random.default_rng(7)
    clients = [f"198.51.100.{n}" for n in range(30)] + ["2001:db8::5", "other"]
    database = new_fleet(client)
    per_server: list[tuple[str, Row]] = []
    for window in range(400):
        start = START + 5 * window
        batch = []
        for server in ("web1", "web2"):
            chosen = sorted(rng.choice(len(clients), 6, replace=False))
            inbound = rng.random(6) < 0.5
            counts = rng.integers(0, 10**6, (6, 5))
            for n, way, c in zip(chosen, inbound, counts, strict=True):
                direction = "in" if way else "out"
                batch.append((server, start, clients[n], direction, c.tolist()))
                per_server.append((server, Row(start, start + 5, clients[n], direction,
                                               int(c.sum()), *c.tolist())))
        insert(client, database, batch)
    frame = pd.DataFrame([row for _, row in per_server])
    summed = frame.groupby(["window_start", "window_end", "client_ip", "direction"],
                           as_index=False)[["total_bytes", *BYTES]].sum()
    fleet_rows = [Row(*values) for values in summed.itertuples(index=False)]
    return database, fleet_rows, per_server


def test_the_reader_answers_the_contract(client: Any, tmp_path: Path) -> None:
    """client_totals is a pandas groupby of the same rows; window_rows and rows_frame give
    the CSV's rows (rows_frame as excel reads the CSV); service_totals has no ports."""
    database, rows, _ = contract_rows(client)
    reader: Reader = reader_of(client, database)
    frame = pd.DataFrame(rows)
    when = TimeRange(START + 600, START + 1800)
    inside = frame[(frame.window_start >= when.start_s) & (frame.window_start < when.end_s)]
    totals = reader.client_totals(when, 5)
    grouped = inside.groupby(["client_ip", "direction"])[BYTES].sum()
    for index, client_ip in enumerate(totals.clients):
        for way, direction in enumerate(("in", "out")):
            want = (grouped.loc[(client_ip, direction)].tolist()
                    if (client_ip, direction) in grouped.index else [0] * 5)
            assert totals.sums[index, way].tolist() == want
    assert set(totals.clients) == set(inside.client_ip)
    assert list(totals.sums.sum(axis=(1, 2))) == sorted(totals.sums.sum(axis=(1, 2)),
                                                        reverse=True)
    assert (totals.coverage.windows, totals.coverage.first_start_s,
            totals.coverage.last_end_s) == (240, when.start_s, when.end_s)
    held = reader.resolutions()
    assert [(r.seconds, r.first_start_s, r.last_end_s) for r in held] == [
        (5, START, START + 2000), (60, START, START + 2040), (H, START, START + H)]
    assert reader.service_totals(when) is None

    last = reader.window_rows(when, 5, last_windows=3)
    assert sorted(set(last.window_start.tolist())) == [when.end_s - 15, when.end_s - 10,
                                                       when.end_s - 5]
    one = reader.window_rows(when, 60, client="2001:db8::5")
    assert set(one.clients) <= {"2001:db8::5"} and (one.window_end - one.window_start
                                                    == 60).all()
    assert len(one) and one.counts.sum() == inside[inside.client_ip == "2001:db8::5"][
        BYTES].to_numpy().sum()  # the range is whole minutes
    assert reader.window_rows(when, 5, last_windows=0).counts.shape == (0, 5)

    csv = tmp_path / "traffic.csv"
    csv.write_text(header_line(",") + format_rows(
        sorted(rows, key=lambda row: (row.window_start, row.client_ip, row.direction)), ","))
    from_csv = read_traffic(csv)
    from_fleet = reader_of(client, database).rows_frame(EVERYTHING, 5)
    pd.testing.assert_frame_equal(from_fleet, from_csv, check_dtype=True)


def test_two_servers_read_apart_and_together(client: Any) -> None:
    database, rows, per_server = contract_rows(client)
    fleet = reader_of(client, database)
    both = fleet.client_totals(EVERYTHING, 60)
    apart = {server: reader_of(client, database, [server]).client_totals(EVERYTHING, 60)
             for server in ("web1", "web2")}
    for server, totals in apart.items():
        mine = pd.DataFrame([row for name, row in per_server if name == server])
        assert totals.sums.sum(axis=(0, 1)).tolist() == mine[BYTES].sum().tolist()
        assert set(totals.clients) == set(mine.client_ip)
    assert (apart["web1"].sums.sum(axis=(0, 1)) + apart["web2"].sums.sum(axis=(0, 1))
            ).tolist() == both.sums.sum(axis=(0, 1)).tolist()
    assert fleet.of_servers(["web1", "web2"]).client_totals(EVERYTHING, H).sums.sum() == \
        both.sums.sum()
    assert fleet.of_servers(["nobody"]).client_totals(EVERYTHING, 5).clients == []
    assert fleet.of_servers(["nobody"]).resolutions()[0].first_start_s is None

    spans = fleet.servers()
    assert [(s.name, s.first_start_s, s.last_end_s) for s in spans] == [
        ("web1", START, START + 2000), ("web2", START, START + 2000)]

    framed = fleet.rows_frame(EVERYTHING, H, utc=True, server_column=True)
    assert list(framed.columns[:2]) == ["server", "window_start"]
    by_server = framed.groupby("server")[BYTES].sum()
    for server in ("web1", "web2"):
        mine = pd.DataFrame([row for name, row in per_server if name == server])
        assert by_server.loc[server].tolist() == mine[BYTES].sum().tolist()
    assert (framed.window_start == pd.Timestamp(START, unit="s")).all()


def test_pick_resolution_over_the_fleet(client: Any) -> None:
    """Akvorado's rule on the fleet's tables: a few minutes from the 5-second rows, a day
    from the hours; a range reaching before the minutes' oldest from the hours."""
    database = new_fleet(client)
    insert(client, database, [("web1", START + 5 * n, "192.0.2.1", "in", [1, 0, 0, 0, 0])
                              for n in range(0, 2 * 17280, 60)])  # two days, a row a minute
    held = reader_of(client, database).resolutions()
    assert pick_resolution(held, TimeRange(START, START + 600)).seconds == 5
    assert pick_resolution(held, TimeRange(START, START + 86400)).seconds == 60
    assert pick_resolution(held, TimeRange(START, START + 2 * 86400), points=24).seconds == H
    # Minutes dropped by their keep: an older range falls to the hours.
    client.command(f"ALTER TABLE {database}.traffic_1m DELETE WHERE window_start"
                   f" < toDateTime({START + 86400}, 'UTC') SETTINGS mutations_sync = 1")
    client.command(f"ALTER TABLE {database}.traffic_5s DELETE WHERE window_start"
                   f" < toDateTime({START + 86400}, 'UTC') SETTINGS mutations_sync = 1")
    held = reader_of(client, database).resolutions()
    assert pick_resolution(held, TimeRange(START, START + 600)).seconds == H


def test_values_are_parameters_never_text(client: Any) -> None:
    """A client or server name holding SQL is a value like any other."""
    database = new_fleet(client)
    odd = "x' OR 1=1 --"
    insert(client, database, [(odd, START, odd, "in", [1, 2, 3, 4, 5]),
                              ("web1", START, "192.0.2.1", "out", [9, 9, 9, 9, 9])])
    reader = reader_of(client, database)
    assert reader.window_rows(EVERYTHING, 5, client=odd).clients == [odd]
    assert reader.window_rows(EVERYTHING, 5, client="' OR ''='").clients == []
    only = reader.of_servers([odd]).client_totals(EVERYTHING, H)
    assert only.clients == [odd] and only.sums.sum() == 15
    assert [span.name for span in reader.servers()] == sorted([odd, "web1"])


def test_a_database_without_the_schema_is_one_line(client: Any) -> None:
    database = fresh_database("empty")
    client.command(f"CREATE DATABASE {database}")
    with pytest.raises(FleetError, match=f"database {database} holds no traffic-capture"
                                         " schema: run `traffic-capture clickhouse init URL`"):
        reader_of(client, database)
    with pytest.raises(ValueError, match="no 300-second table"):
        reader_of(client, new_fleet(client)).client_totals(EVERYTHING, 300)
