"""`serve --clickhouse` over a chDB store of three servers, through the real command in a
child process: the fleet's answers and each server's equal the rows inserted (a client on
several servers summed in the fleet's, apart in each server's) at every resolution the range
picks, `server=` on every endpoint, /api/servers, the event stream fed by polling ClickHouse,
and the page in Chromium with its server picker."""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")

from tests.conftest import run_cli  # noqa: E402
from tests.fleet_store import (  # noqa: E402
    BYTE_COLUMNS,
    FLEET_CLIENTS,
    FLEET_END,
    FLEET_START,
    GROUP,
    FleetServe,
    fleet_rows,
    fresh_database,
    needs_module,
    rows_frame,
    write_fleet,
)
from tests.web_helpers import WebProcess, eventually, get  # noqa: E402
from traffic_capture.rules import CLASSES  # noqa: E402

pytestmark = pytest.mark.xdist_group(GROUP)
SERVERS = sorted(FLEET_CLIENTS)
WHOLE = f"from={FLEET_START}&to={FLEET_END}"
# (range, the resolution it is answered at): 10 days hourly, a day by the minute, the last
# quarter of an hour by 5 s; each a whole number of hours but the last, so every class's bytes
# are the same at every resolution.
RANGES = [(WHOLE, 3600), (f"from={FLEET_END - 86400}&to={FLEET_END}", 60),
          (f"from={FLEET_END - 900}&to={FLEET_END}", 5)]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Any]:
    """Ten days of three servers in chDB, closed (a child opens it); its URL and rows."""
    needs_module("chdb")
    needs_module("clickhouse_connect")
    rows = fleet_rows()
    return write_fleet(tmp_path_factory.mktemp("fleet-web"), fresh_database("web"),
                       rows), rows_frame(rows)


@pytest.fixture(scope="module")
def fleet_web(store: tuple[str, Any]) -> Iterator[WebProcess]:
    web = WebProcess(["serve", "--clickhouse", store[0], "--web", "127.0.0.1:0"])
    try:
        yield web
    finally:
        assert web.stop() == 0


def scoped(server: str | None) -> str:
    return "" if server is None else f"&server={server}"


def expected(frame: Any, server: str | None, first: int = FLEET_START,
             last: int = FLEET_END) -> Any:
    """The rows inserted of one server (or all), in [first, last)."""
    kept = frame[(frame["start"] >= first) & (frame["start"] < last)]
    return kept if server is None else kept[kept["server"] == server]


def per_class(answer: dict) -> list[int]:
    return [p["total"] for p in answer["protocols"]]


@pytest.mark.parametrize("server", [None, *SERVERS])
def test_the_fleets_totals_and_each_servers_equal_the_rows_inserted(
        fleet_web: WebProcess, store: tuple[str, Any], server: str | None) -> None:
    """/api/protocols and /api/clients over ranges answered at 1 h, 1 min and 5 s: each
    class's bytes, per client and direction, are the rows' (the fleet's: every server's rows
    of a client added up; a server's: its rows alone)."""
    frame = store[1]
    for query, resolution in RANGES:
        first, last = (int(part.split("=")[1]) for part in query.split("&"))
        rows = expected(frame, server, first, last)
        answer = get(fleet_web.url + f"api/protocols?{query}{scoped(server)}")[1]
        assert answer["resolution"] == resolution and answer["server"] == server
        assert per_class(answer) == rows[BYTE_COLUMNS].sum().tolist()
        clients = get(fleet_web.url + f"api/clients?{query}&limit=100{scoped(server)}")[1]
        assert clients["resolution"] == resolution
        got = {(c["ip"], way): [c[way][name] for name in CLASSES]
               for c in clients["clients"] for way in ("in", "out")}
        want = rows.groupby(["client_ip", "direction"])[BYTE_COLUMNS].sum()
        assert {key: got[key] for key in want.index} == {
            key: values.tolist() for key, values in want.iterrows()}
        assert {c["ip"] for c in clients["clients"]} == set(rows["client_ip"])


def test_a_client_on_several_servers_is_summed_in_the_fleet_and_apart_per_server(
        fleet_web: WebProcess, store: tuple[str, Any]) -> None:
    """10.0.0.1 talks to all three servers: the fleet's drill-down is the sum of the three,
    window by window; a client a server never saw is a 404 there, not elsewhere."""
    frame = store[1]
    day = f"from={FLEET_END - 86400}&to={FLEET_END}"
    fleet = get(fleet_web.url + f"api/clients/10.0.0.1?{day}")[1]
    assert fleet["resolution"] == 60 and fleet["server"] is None
    each = {server: get(fleet_web.url + f"api/clients/10.0.0.1?{day}&server={server}")[1]
            for server in SERVERS}
    assert fleet["total"] == sum(answer["total"] for answer in each.values())
    for server, answer in each.items():
        assert answer["server"] == server
        assert answer["total"] == expected(frame, server, FLEET_END - 86400).query(
            "client_ip == '10.0.0.1'")["total_bytes"].sum()
    windows: dict[int, int] = {}
    for answer in each.values():
        for window in answer["history"]:
            windows[window["start"]] = windows.get(window["start"], 0) + sum(
                window["in"].values()) + sum(window["out"].values())
    assert {w["start"]: sum(w["in"].values()) + sum(w["out"].values())
            for w in fleet["history"]} == windows
    status, answer = get(fleet_web.url + f"api/clients/2001:db8::7?{day}&server=web1")
    assert status == 404 and answer["detail"] == (
        "no window held names client 2001:db8::7 on server web1")
    assert get(fleet_web.url + f"api/clients/2001:db8::7?{day}&server=db1")[0] == 200


@pytest.mark.parametrize("path", ["api/status", "api/windows", "api/windows/current",
                                  "api/clients", "api/clients/10.0.0.1", "api/protocols",
                                  "api/services", "api/stream", "metrics"])
def test_a_server_not_in_the_fleet_is_a_404_that_names_those_held(fleet_web: WebProcess,
                                                                   path: str) -> None:
    status, answer = get(fleet_web.url + f"{path}?server=web9")
    assert status == 404
    assert answer == {"detail": "no server 'web9' in the fleet; it holds db1, web1, web2"}


def test_api_servers_lists_each_server_with_its_bytes_over_the_range(
        fleet_web: WebProcess, store: tuple[str, Any]) -> None:
    frame = store[1]
    whole = get(fleet_web.url + f"api/servers?{WHOLE}")[1]
    assert whole["fleet"] is True and whole["resolution"] == 3600
    assert [s["name"] for s in whole["servers"]] == SERVERS
    for server in whole["servers"]:
        rows = expected(frame, server["name"])
        assert (server["held_from"], server["held_to"]) == (FLEET_START, FLEET_END - 600 + 5)
        assert server["total"] == rows["total_bytes"].sum()
        assert server["bytes_in"] == rows[rows["direction"] == "in"]["total_bytes"].sum()
        assert list(server["protocols"].values()) == rows[BYTE_COLUMNS].sum().tolist()
    recent = get(fleet_web.url + "api/servers?seconds=300")[1]  # the newest window only
    assert recent["resolution"] == 5 and recent["windows"] == 1
    newest = frame[frame["start"] == FLEET_END - 600]
    assert {s["name"]: s["total"] for s in recent["servers"]} == newest.groupby(
        "server")["total_bytes"].sum().to_dict()
    # A server's memory answers its stream and its windows: the last closed one, its rows.
    windows = get(fleet_web.url + "api/windows?limit=1&server=web2")[1]["windows"]
    assert [w["start"] for w in windows] == [FLEET_END - 600]
    assert sum(r["total_bytes"] for r in windows[0]["rows"]) == newest[
        newest["server"] == "web2"]["total_bytes"].sum()
    status = get(fleet_web.url + "api/status?server=web2")[1]
    assert status["server"] == "web2" and status["history_windows"] == 6  # its last hour
    assert [r["resolution"] for r in status["clickhouse"]["resolutions"]] == [5, 60, 3600]


@pytest.mark.parametrize(("args", "code", "says"), [
    (["--clickhouse", "URL", "--csv", "traffic.csv"], 2, "it cannot with --csv or --history"),
    (["--password-file", "pw"], 2, "--password-file is the ClickHouse password: it goes with"),
    (["--clickhouse", "http://reader:secret@ch.example:8123/traffic"], 2, "holds a password"),
    (["--clickhouse", "chdb://EMPTY/traffic"], 1, "no database 'traffic': create the schema"),
])
def test_serve_clickhouse_usage_and_store_errors_are_one_line(
        store: tuple[str, Any], tmp_path: Path, args: list[str], code: int, says: str) -> None:
    args = [store[0] if a == "URL" else a.replace("EMPTY", str(tmp_path)) for a in args]
    done = run_cli(["serve", *args, "--web", "127.0.0.1:0"])
    assert done.returncode == code, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and says in done.stderr
    assert "Traceback" not in done.stderr


class Stream:
    """An /api/stream read in a thread: its `window` events' ids and data."""

    def __init__(self, url: str) -> None:
        self.events: list[tuple[str, dict]] = []
        self._response = urllib.request.urlopen(url, timeout=60)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError, http.client.HTTPException):
            self._lines()  # until close() shuts the response under it

    def _lines(self) -> None:
        event_id = kind = None
        for raw in self._response:
            line = raw.decode().rstrip("\n")
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "window":
                self.events.append((str(event_id), json.loads(line[6:])))
            elif not line:
                event_id = kind = None

    def close(self) -> None:
        self._response.close()


def test_the_event_stream_gets_windows_inserted_after_it_opened(tmp_path: Path) -> None:
    """ClickHouse is polled: a window two servers send after the streams opened reaches the
    fleet's stream summed and web2's with web2's rows alone; db1's rows of that window sent
    later come to the fleet's stream as that window again (`start.1`) with those rows only."""
    needs_module("chdb")
    needs_module("clickhouse_connect")
    before = [("web1", FLEET_START, "10.0.0.1", "in", [1, 0, 0, 0, 0]),
              ("web2", FLEET_START, "10.0.0.1", "in", [2, 0, 0, 0, 0])]
    fleet_url = write_fleet(tmp_path / "ch", fresh_database("stream"), before)
    web = FleetServe(fleet_url, ["--web", "127.0.0.1:0"])
    streams: list[Stream] = []
    try:
        fleet = Stream(web.url + "api/stream?seconds=60")
        web2 = Stream(web.url + "api/stream?seconds=60&server=web2")
        streams = [fleet, web2]
        eventually(lambda: fleet.events and web2.events)
        assert [(i, [r["total_bytes"] for r in w["rows"]]) for i, w in fleet.events] == [
            (str(FLEET_START), [3])]
        assert [(i, [r["total_bytes"] for r in w["rows"]]) for i, w in web2.events] == [
            (str(FLEET_START), [2])]
        new = FLEET_START + 5
        web.send([("web1", new, "10.0.0.1", "in", [10, 0, 0, 0, 0]),
                  ("web2", new, "10.0.0.1", "in", [0, 20, 0, 0, 0]),
                  ("web2", new, "10.0.0.9", "out", [0, 0, 0, 5, 0])])
        eventually(lambda: len(fleet.events) == 2 and len(web2.events) == 2)
        rows_of = {(r["client_ip"], r["direction"]): [r[name] for name in BYTE_COLUMNS]
                   for r in fleet.events[1][1]["rows"]}
        assert fleet.events[1][0] == str(new)
        assert rows_of == {("10.0.0.1", "in"): [10, 20, 0, 0, 0],
                           ("10.0.0.9", "out"): [0, 0, 0, 5, 0]}
        assert {(r["client_ip"], r["total_bytes"]) for r in web2.events[1][1]["rows"]} == {
            ("10.0.0.1", 20), ("10.0.0.9", 5)}
        web.send([("db1", new, "10.0.0.1", "in", [0, 0, 7, 0, 0])])  # db1's batch, later
        eventually(lambda: len(fleet.events) == 3)
        assert fleet.events[2][0] == f"{new}.1"
        assert [(r["client_ip"], r["tcp_bytes"], r["total_bytes"])
                for r in fleet.events[2][1]["rows"]] == [("10.0.0.1", 7, 7)]
        assert len(web2.events) == 2  # not web2's
        # The answers over ClickHouse have it all.
        answer = get(web.url + f"api/protocols?from={FLEET_START}&to={new + 5}")[1]
        assert sum(per_class(answer)) == 3 + 30 + 5 + 7
    finally:
        for stream in streams:
            stream.close()
        assert web.stop() == 0


@pytest.mark.browser
@pytest.mark.parametrize(("language", "all_note", "web2_note", "per_hour", "separator"), [
    ("en-US", "all servers: a client's bytes on several servers are added up",
     "server web2 only", "per hour", ","),
    ("pt-BR", "todos os servidores: os bytes de um cliente em vários servidores são somados",
     "só o servidor web2", "por hora", "."),
])
def test_the_page_picks_a_server_and_a_range_at_420_px(
        fleet_web: WebProcess, language: str, all_note: str, web2_note: str, per_hour: str,
        separator: str) -> None:
    """At a phone's width: the picker lists the servers; web2 and the last month show web2's
    clients, their totals its own, per hour; all servers show every client, 10.0.0.1's total
    the three servers' sum. The page says which it shows."""
    pytest.importorskip("selenium")
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from tests.web_browser import (
        browser,
        console_errors,
        narrow,
        pick_span,
        release,
        shown_resolution,
    )

    def bars(d: Any) -> set[str]:
        try:
            return {el.get_attribute("data-client")
                    for el in d.find_elements(By.CSS_SELECTOR, "#chart [data-client]")}
        except StaleElementReferenceException:
            return set()

    def row(d: Any, ip: str) -> str:
        try:
            return d.find_element(By.CSS_SELECTOR, f'#clients tr[data-client="{ip}"]').text
        except Exception:
            return ""

    def total(server: str | None) -> str:
        answer = get(fleet_web.url + f"api/clients?seconds=2592000&limit=100{scoped(server)}")[1]
        found = next(c["total"] for c in answer["clients"] if c["ip"] == "10.0.0.1")
        return f"{found:,}".replace(",", separator)

    driver = browser(language)
    try:
        narrow(driver, 420)
        driver.get(fleet_web.url)
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_element(By.ID, "fleet").is_displayed())
        picker = Select(driver.find_element(By.ID, "server"))
        wait.until(lambda d: [o.get_attribute("value") for o in picker.options] == ["", *SERVERS])
        note = driver.find_element(By.ID, "scope-note")
        assert note.text == all_note
        picker.select_by_value("web2")
        wait.until(lambda d: d.find_element(By.ID, "scope-note").text == web2_note)
        pick_span(driver, "2592000")
        wait.until(lambda d: shown_resolution(d) == "3600")
        assert driver.find_element(By.ID, "resolution").text == per_hour
        wait.until(lambda d: bars(d) == set(FLEET_CLIENTS["web2"]))
        web2_total = total("web2")
        wait.until(lambda d: web2_total in row(d, "10.0.0.1"))
        assert driver.execute_script("return document.documentElement.scrollWidth") <= 420
        Select(driver.find_element(By.ID, "server")).select_by_value("")
        wait.until(lambda d: bars(d) == {c for clients in FLEET_CLIENTS.values()
                                         for c in clients})
        fleet_total = total(None)
        assert fleet_total != web2_total
        wait.until(lambda d: fleet_total in row(d, "10.0.0.1"))
        assert driver.find_element(By.ID, "scope-note").text == all_note
        assert shown_resolution(driver) == "3600"
        assert driver.execute_script("return document.documentElement.scrollWidth") <= 420
        assert not console_errors(driver)
    finally:
        release(driver)


def test_no_generated_request_gets_a_500_over_a_fleet(tmp_path: Path) -> None:
    """schemathesis against the API's spec over a fleet (chDB in this process, a store of its
    own): every operation but the endless stream, servers held and not, ranges of any kind."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.fleet_store import KEEP_ALL, engine, insert
    from traffic_capture.fleet.migrate import init
    from traffic_capture.fleet.reader import ClickHouseReader
    from traffic_capture.web.api import WebApp
    from traffic_capture.web.fleet import FleetScopes

    with engine(tmp_path / "ch") as client:
        database = fresh_database("schema")
        init(client, database, keep=KEEP_ALL)
        insert(client, database, [(server, FLEET_START + 5 * k, "10.0.0.1", "in",
                                   [k, 1, 2, 3, 4]) for k in range(50) for server in SERVERS])
        scopes = FleetScopes(ClickHouseReader(client, database=database), 3600)
        scopes.poll()
        app = WebApp(scopes.scope(None).store, lambda: {"mode": "test"}, scopes=scopes).app
        schema = schemathesis.openapi.from_asgi("/openapi.json", app).exclude(
            path="/api/stream")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == 9
        for operation in operations:
            @given(operation.as_strategy(), st.sampled_from([None, *SERVERS]))
            @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
            def no_500(case: Any, server: str | None) -> None:
                if server is not None and isinstance(case.query, dict):
                    case.query["server"] = server
                response = case.call()
                assert response.status_code < 500, (case.path, case.query, response.text)

            no_500()
