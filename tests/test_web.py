"""The web dashboard: the API (status codes, the token, /metrics, the event stream over HTTP),
its answers equal to the CSV's, `serve` following a CSV that grows and rotates, and --web
without the extra. The store, the answers and the stream's text alone: test_web_store.py,
test_web_answers.py, test_web_events.py."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from tests import pcapng_builder  # noqa: E402
from tests.conftest import (  # noqa: E402
    DAEMON,
    REPO,
    SAMPLE,
    child_env,
    in_netns,
    needs_tools,
    read_rows,
    run_cli,
)
from tests.web_helpers import (  # noqa: E402
    T0,
    WebProcess,
    append,
    current_dict,
    eventually,
    get,
    post,
    store_with,
    window_rows,
)
from traffic_capture.csvformat import COLUMNS  # noqa: E402
from traffic_capture.rules import CLASSES  # noqa: E402
from traffic_capture.web import answers  # noqa: E402
from traffic_capture.web.api import WebApp  # noqa: E402
from traffic_capture.web.csv_follow import CsvFollower  # noqa: E402
from traffic_capture.web.http_server import WebServer  # noqa: E402
from traffic_capture.web.memory_store import Current, MemoryStore  # noqa: E402

SERVERS = ["--server-ip", "192.0.2.1", "--server-ip", "2001:db8::1"]


# The API, in process.
def test_api_status_codes_and_token() -> None:
    state = store_with([window_rows(T0, {("10.0.0.1", "in"): [1, 2, 3, 4, 5]})])
    client = TestClient(WebApp(state, lambda: {"mode": "test"}).app)
    assert client.get("/api/clients", params={"seconds": 0}).status_code == 422
    assert client.get("/api/clients", params={"direction": "sideways"}).status_code == 422
    assert client.get("/api/windows", params={"limit": "many"}).status_code == 422
    assert client.get("/api/clients/not-an-ip").status_code == 422
    assert client.get("/api/clients/10.9.9.9").status_code == 404
    assert client.get("/api/clients/10.0.0.1").json()["total"] == 15
    assert client.get("/api/windows").json()["windows"][0]["rows"][0]["total_bytes"] == 15
    assert client.post("/api/debug/inject", json={}).status_code in (404, 405)  # not enabled
    page = client.get("/")
    assert page.status_code == 200 and 'id="back"' in page.text
    assert client.get("/static/plotly.min.js").status_code == 200

    secured = TestClient(WebApp(state, lambda: {}, token="s3cret").app)
    assert secured.get("/api/status").status_code == 401
    assert secured.get("/").status_code == 401
    assert secured.get("/api/status", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert secured.get("/api/status",
                       headers={"Authorization": "Bearer s3cret"}).status_code == 200
    link = secured.get("/?token=s3cret", follow_redirects=False)
    assert link.status_code == 303 and link.headers["location"] == "/"
    assert secured.get("/api/status").status_code == 200  # the cookie the link set


def test_metrics_label_only_the_top_clients() -> None:
    state = store_with([window_rows(T0, {(f"10.0.{i // 250}.{i % 250}", "in"): [i + 1, 0, 0, 0, 0]
                                         for i in range(500)})])
    text = TestClient(WebApp(state, lambda: {"packets_seen": 7}).app).get("/metrics").text
    assert 'traffic_capture_bytes_total{class="http",direction="in"} 125250' in text
    assert "traffic_capture_packets_seen_total 7" in text
    assert text.count("traffic_capture_client_bytes{") == 2 * 20


def read_stream(url: str, headers: dict[str, str], until: bytes,
                opened: threading.Event | None = None) -> list[bytes]:
    """The raw events of /api/stream (blocks between blank lines) until one that contains
    `until` is whole; `opened` is set once the first `current` event is in."""
    import httpx

    buffer = b""
    with httpx.stream("GET", url, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            buffer += chunk
            if opened is not None and b"event: current" in buffer:
                opened.set()
            at = buffer.find(until)
            if at >= 0 and buffer.find(b"\n\n", at) >= 0:
                break
    return buffer.split(b"\n\n")[:-1]


def window_events(blocks: list[bytes]) -> list[bytes]:
    return [block for block in blocks if block.startswith(b"id: ")]


def test_streams_get_identical_window_events_and_resume_exactly() -> None:
    state = store_with([window_rows(T0 + 5 * k, {("10.0.0.1", "in"): [k, 1, 2, 3, 4],
                                                 ("2001:db8::7", "out"): [0, 0, 5 * k, 0, 9]})
                        for k in range(6)])
    state.add_window(T0 + 30, T0 + 35, [], np.zeros(0, bool), np.zeros((0, len(CLASSES))))
    expected = [f"id: {w['start']}\nevent: window\ndata: {json.dumps(w)}".encode()
                for w in answers.windows(state, 100)["windows"]]
    assert len(expected) == 7
    server = WebServer(WebApp(state, lambda: {}), "127.0.0.1", 0)
    server.start()
    url = server.url + "api/stream?seconds=3600"
    try:
        # Two streams opening at once: the same bytes, the windows API's JSON; then a window
        # closed while they are open reaches both, the same again.
        live = f"id: {T0 + 40}\n".encode()
        opened = [threading.Event(), threading.Event()]
        with ThreadPoolExecutor(2) as pool:
            streams = [pool.submit(read_stream, url, {}, live, event) for event in opened]
            for event in opened:
                assert event.wait(30)
            state.load_rows(window_rows(T0 + 40, {("10.0.0.9", "out"): [7, 0, 0, 0, 0]}))
            first, second = (window_events(stream.result(60)) for stream in streams)
        assert first == second
        assert first[:-1] == expected
        assert first[-1] == (f"id: {T0 + 40}\nevent: window\ndata: "
                             f"{json.dumps(answers.windows(state, 1)['windows'][0])}").encode()
        # A new stream's backlog is its last `seconds`; a resumed one gets exactly the windows
        # after its Last-Event-ID, whatever `seconds` says.
        recent = window_events(read_stream(server.url + "api/stream?seconds=15", {},
                                           b"event: current"))
        assert recent == first[-2:]
        for k, block in enumerate(first):
            last_id = block.split(b"\n")[0][4:].decode()
            resumed = window_events(read_stream(server.url + "api/stream?seconds=5",
                                                {"Last-Event-ID": last_id},
                                                b"event: current"))
            assert resumed == first[k + 1:], last_id
        # The window in progress: the same `current` event for every stream.
        state.set_current(Current(T0 + 45, T0 + 50, ["10.0.0.1", "2001:db8::7"],
                                  np.array([True, False]), np.array([[1, 2, 3, 4, 5],
                                                                     [0, 0, 0, 0, 6]])))
        currents = [[block for block in read_stream(url, {"Last-Event-ID": str(T0 + 40)},
                                                    b"event: current")
                     if block.startswith(b"event: current")] for _ in range(2)]
        assert currents[0] == currents[1] == [
            f"event: current\ndata: {json.dumps(current_dict(state))}".encode()]
    finally:
        server.stop()


def test_an_open_stream_gets_a_window_closed_again_after_newer_ones() -> None:
    """Before, an open stream asked for windows starting after the last one it sent, so a
    window closed again by late packets never reached it."""
    state = MemoryStore(5, 3600)
    for start in (T0, T0 + 5):
        state.add_window(start, start + 5, ["10.0.0.1"], np.array([True]),
                         np.array([[1, 0, 0, 0, 0]]))
    server = WebServer(WebApp(state, lambda: {}), "127.0.0.1", 0)
    server.start()
    try:
        opened = threading.Event()
        with ThreadPoolExecutor(1) as pool:
            stream = pool.submit(read_stream, server.url + "api/stream?seconds=3600", {},
                                 f"id: {T0}.1\n".encode(), opened)
            assert opened.wait(30)
            state.add_window(T0, T0 + 5, ["10.0.0.2"], np.array([False]),
                             np.array([[0, 0, 7, 0, 0]]))
            got = [block.split(b"\n")[0] for block in window_events(stream.result(60))]
        assert got == [f"id: {T0}".encode(), f"id: {T0 + 5}".encode(), f"id: {T0}.1".encode()]
    finally:
        server.stop()


# The daemon, fed from a capture file and injected packets.
def api_equals_csv(url: str, csv: Path) -> bool:
    rows = read_rows(csv)
    if rows.empty:
        return False
    status, answer = get(url + "api/clients?seconds=36000000&limit=1000")
    assert status == 200
    from_csv = rows.groupby(["client_ip", "direction"])[
        [f"{c}_bytes" for c in CLASSES]].sum()
    from_api = {}
    for client in answer["clients"]:
        for direction in ("in", "out"):
            numbers = [client[direction][c] for c in CLASSES]
            if any(numbers):
                from_api[(client["ip"], direction)] = numbers
    expected = {key: [int(v) for v in values] for key, values in
                zip(from_csv.index, from_csv.to_numpy().tolist(), strict=True)}
    return from_api == expected


def test_daemon_from_a_capture_file_and_injected_packets(tmp_path: Path) -> None:
    csv = tmp_path / "traffic.csv"
    web = WebProcess(["--read", str(SAMPLE), *SERVERS, "--out", str(csv), "--window", "1",
                      "--web", "127.0.0.1:0", "--debug-inject", "--web-history", "999999999"],
                     TZ="UTC")
    try:
        web.wait_for("the dashboard stays at")
        assert api_equals_csv(web.url, csv)
        status, answer = get(web.url + "api/status")
        assert (status, answer["packets_counted"], answer["rows_pending"]) == (200, 157, 0)
        windows = get(web.url + "api/windows?limit=100")[1]["windows"]
        assert sum(len(w["rows"]) for w in windows) == len(read_rows(csv))
        services = {s["service"] for s in get(web.url + "api/services?seconds=3600")[1][
            "services"]}
        assert {"http", "ftp", "dns"} <= services
        # Injected packets: classified and windowed like captured ones, into the CSV too.
        for client, direction, protocol, size in (("198.51.100.9", "in", "http", 1000),
                                                  ("198.51.100.9", "out", "udp", 200),
                                                  ("2001:db8::99", "in", "other", 80)):
            assert post(web.url + "api/debug/inject", {
                "client": client, "direction": direction, "protocol": protocol,
                "bytes": size, "count": 3})[0] == 200
        assert post(web.url + "api/debug/inject", {"client": "x", "direction": "in",
                                                   "protocol": "tcp", "bytes": 100})[0] == 422
        eventually(lambda: len(read_rows(csv).query("client_ip == '2001:db8::99'")) > 0)
        eventually(lambda: api_equals_csv(web.url, csv))
        client = get(web.url + "api/clients/198.51.100.9?seconds=60")[1]
        assert (client["in"]["http"], client["out"]["udp"]) == (3000, 600)
        assert get(web.url + "api/clients/203.0.113.1")[0] == 404
    finally:
        code = web.stop()
    assert code == 0, web.stderr
    assert "Traceback" not in web.stderr


def test_stream_resumes_after_last_event_id(tmp_path: Path) -> None:
    csv = tmp_path / "traffic.csv"
    web = WebProcess(["--read", str(SAMPLE), *SERVERS, "--out", str(csv), "--window", "1",
                      "--web", "127.0.0.1:0"])
    try:
        web.wait_for("the dashboard stays at")
        import httpx

        def events(headers: dict[str, str]) -> list[str]:
            ids = []
            with httpx.stream("GET", web.url + "api/stream?seconds=36000000", headers=headers,
                              timeout=20) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    if line.startswith("id: "):
                        ids.append(line[4:])
                    if line.startswith("event: current"):
                        break
            return ids

        every = events({})
        starts = sorted({int(start) for start in read_rows(csv)["window_start"].map(
            lambda t: pd.Timestamp(t).timestamp())})
        assert len(every) == len(starts) >= 3
        assert events({"Last-Event-ID": every[1]}) == every[2:]
    finally:
        assert web.stop(15) == 0  # SIGTERM also ends it cleanly


def test_web_without_the_extra_says_the_fix(tmp_path: Path) -> None:
    hide = ("import sys; sys.modules['fastapi'] = None; from traffic_capture.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    for args in (["--read", str(SAMPLE), *SERVERS, "--out", str(tmp_path / "t.csv"),
                  "--web", "8000"], ["serve", "--csv", str(tmp_path / "t.csv")]):
        result = subprocess.run([sys.executable, "-c", hide, *args], capture_output=True,
                                text=True, env=child_env(), timeout=60)
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "-m pip install -e '.[web]'" in lines[0], lines
    assert not (tmp_path / "t.csv").exists()


def test_web_usage_errors(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*DAEMON, *args], capture_output=True, text=True,
                              env=child_env(TRAFFIC_WEB_TOKEN=""), timeout=60)

    for args in (["--web", "0.0.0.0:8000"], ["--web", "nope"], ["--web", "127.0.0.1:99999"],
                 ["--debug-inject"], ["--web", "192.0.2.1:8000", "--web-token", "t",
                                      "--debug-inject"]):
        result = run("--read", str(SAMPLE), *SERVERS, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    result = run("serve", "--csv", str(tmp_path / "x.csv"), "--web", "0.0.0.0:0")
    assert result.returncode == 2 and "--web-token" in result.stderr


# `serve`, following a CSV.
def test_follower_reads_appends_and_rotations(tmp_path: Path) -> None:
    path = tmp_path / "traffic.csv"
    follower = CsvFollower(path)
    assert follower.poll() == []  # not there yet
    append(path, window_rows(T0, {("10.0.0.1", "in"): [1, 0, 0, 0, 0]}))
    assert [r.client_ip for r in follower.poll()] == ["10.0.0.1"]
    with path.open("a") as out:
        out.write("2023-11-14 22:13:25;2023-11-14 22:13:30;10.0.0.2;in;5;5;0")  # torn row
    assert follower.poll() == []
    with path.open("a") as out:
        out.write(";0;0;0\n")
    assert [r.client_ip for r in follower.poll()] == ["10.0.0.2"]
    append(path, window_rows(T0 + 5, {("10.0.0.3", "in"): [1, 0, 0, 0, 0]}))
    path.rename(tmp_path / "traffic.csv.1")  # rotation: the old file's last rows, then the new
    append(path, window_rows(T0 + 10, {("10.0.0.4", "out"): [0, 0, 0, 0, 7]}))
    assert [r.client_ip for r in follower.poll()] == ["10.0.0.3", "10.0.0.4"]
    assert follower.reopened == 1
    follower.close()


def test_serve_follows_an_appended_and_rotated_csv(tmp_path: Path) -> None:
    path = tmp_path / "traffic.csv"
    old = [window_rows(T0 - 7200, {("10.9.9.9", "in"): [1, 0, 0, 0, 0]})]  # beyond the history
    append(path, old[0] + window_rows(T0, {("10.0.0.1", "in"): [100, 0, 0, 0, 0]}))
    web = WebProcess(["serve", "--csv", str(path), "--web", "127.0.0.1:0"])
    try:
        def total(ip: str) -> int | None:
            status, answer = get(web.url + f"api/clients/{ip}?seconds=36000000")
            return answer["total"] if status == 200 else None

        assert total("10.0.0.1") == 100
        assert total("10.9.9.9") is None  # older than --web-history before the newest row
        append(path, window_rows(T0 + 5, {("10.0.0.1", "out"): [0, 0, 0, 50, 0]}))
        eventually(lambda: total("10.0.0.1") == 150)
        path.rename(tmp_path / "traffic.csv.1")
        append(path, window_rows(T0 + 10, {("10.0.0.2", "in"): [0, 0, 0, 0, 9]}))
        eventually(lambda: total("10.0.0.2") == 9)
        status = get(web.url + "api/status")[1]
        assert (status["mode"], status["file_reopened"], status["services_known"]) == (
            "serve", 1, False)
        assert get(web.url + "api/services")[1]["available"] is False
        last = get(web.url + "api/clients?seconds=5")[1]["clients"]
        assert [c["ip"] for c in last] == ["10.0.0.2"]  # counted back from the newest window
    finally:
        assert web.stop() == 0


@pytest.mark.parametrize("kind", ["pcap", "pcapng", "gzip", "random bytes"])
def test_serve_says_in_one_line_that_a_capture_file_is_not_the_csv(tmp_path: Path,
                                                                   kind: str) -> None:
    """`serve --csv capture.pcap` printed the capture's bytes as its header; `excel` says what
    the file is. One line, no bytes of it, exit 1, before anything listens."""
    if kind == "pcap":
        path = SAMPLE
    else:
        path = tmp_path / f"capture.{kind.split()[0]}"
        path.write_bytes({"pcapng": pcapng_builder.section() + pcapng_builder.interface(1),
                          "gzip": gzip.compress(SAMPLE.read_bytes()),
                          "random bytes": bytes(range(256)) * 64}[kind])
    result = run_cli(["serve", "--csv", str(path), "--web", "127.0.0.1:0"])
    assert result.returncode == 1, result.stderr
    assert result.stderr == (f"traffic-capture: error: {path} is not a traffic-capture CSV "
                             "(it holds binary data: a capture file?)\n")


# The token off loopback, in a network namespace of the test's own.
def test_token_required_off_loopback(netns: str, tmp_path: Path) -> None:
    needs_tools("curl")
    subprocess.run(in_netns(netns, ["ip", "link", "add", "tcweb0", "type", "veth", "peer",
                                    "name", "tcweb1"]), check=True, timeout=10)
    for command in (["ip", "addr", "add", "192.0.2.80/24", "dev", "tcweb0"],
                    ["ip", "link", "set", "tcweb0", "up"], ["ip", "link", "set", "tcweb1", "up"]):
        subprocess.run(in_netns(netns, command), check=True, timeout=10)
    csv = tmp_path / "traffic.csv"
    append(csv, window_rows(T0, {("10.0.0.1", "in"): [1, 0, 0, 0, 0]}))
    refused = subprocess.run(in_netns(netns, [*DAEMON, "serve", "--csv", str(csv), "--web",
                                              "192.0.2.80:8000"]), capture_output=True,
                             text=True, env=child_env(TRAFFIC_WEB_TOKEN=""), timeout=60)
    assert refused.returncode == 2 and "--web-token" in refused.stderr
    web = WebProcess(["serve", "--csv", str(csv), "--web", "192.0.2.80:0"],
                     prefix=in_netns(netns, []), TRAFFIC_WEB_TOKEN="tok-123")
    try:
        assert web.url.startswith("http://192.0.2.80:")

        def curl(*args: str) -> str:
            return subprocess.run(in_netns(netns, ["curl", "-s", "-o", "/dev/null", "-w",
                                                   "%{http_code}", *args]),
                                  capture_output=True, text=True, timeout=30).stdout

        assert curl(web.url + "api/status") == "401"
        assert curl(web.url) == "401"
        assert curl("-H", "Authorization: Bearer wrong", web.url + "api/status") == "401"
        assert curl("-H", "Authorization: Bearer tok-123", web.url + "api/status") == "200"
        assert curl(web.url + "?token=tok-123") == "303"
    finally:
        assert web.stop() == 0


def test_core_does_not_need_the_web_extra() -> None:
    """The core modules import without FastAPI, uvicorn or plotly."""
    code = ("import sys\n"
            "for name in ('fastapi', 'uvicorn', 'plotly', 'starlette'): sys.modules[name] = None\n"
            "import traffic_capture.app, traffic_capture.cli, traffic_capture.web, "
            "traffic_capture.web.memory_store, traffic_capture.web.answers, "
            "traffic_capture.web.events, traffic_capture.web.sink, "
            "traffic_capture.web.csv_follow\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=child_env(), timeout=60)
    assert result.returncode == 0, result.stderr
    assert os.path.exists(REPO / "traffic_capture" / "web" / "static" / "app.js")
    assert COLUMNS[0] == "window_start"


def test_a_live_capture_shows_on_the_dashboard(netns: str, tmp_path: Path) -> None:
    """The done-when's live case: the daemon capturing on lo of a test namespace serves the
    page, the window in progress and the closed windows, equal to its CSV."""
    needs_tools("ping", "curl")
    from tests.conftest import Daemon

    out = tmp_path / "traffic.csv"
    port = 18999
    daemon = Daemon(netns, ["--server-ip", "127.0.0.1", "--out", str(out), "--window", "1",
                            "--web", f"127.0.0.1:{port}"])

    def api(path: str) -> dict:
        text = subprocess.run(in_netns(netns, ["curl", "-s", f"http://127.0.0.1:{port}/{path}"]),
                              capture_output=True, text=True, timeout=30, check=True).stdout
        return json.loads(text)

    try:
        pinging = subprocess.Popen(in_netns(netns, ["ping", "-n", "-q", "-c", "10", "-i", "0.2",
                                                    "127.0.0.1"]), stdout=subprocess.DEVNULL)
        # While the packets come: the window in progress holds them before it closes.
        eventually(lambda: bool((api("api/windows/current")["window"] or {}).get("rows")))
        assert pinging.wait(30) == 0
        time.sleep(2.5)  # past the windows' close
        clients = api("api/clients?seconds=3600")["clients"]
        assert [(c["ip"], c["in"]["other"]) for c in clients] == [("127.0.0.1", 10 * 2 * 84)]
        assert clients[0]["in"]["tcp"] > 0  # the requests above
        # The pings, and the API's own requests (TCP to 127.0.0.1, the server here) too.
        assert api("api/status")["packets_counted"] >= 20
        page = subprocess.run(in_netns(netns, ["curl", "-s", f"http://127.0.0.1:{port}/"]),
                              capture_output=True, text=True, timeout=30).stdout
        assert "plotly" in page
    finally:
        code = daemon.stop(signal.SIGINT)
    assert code == 0, daemon.stderr
    assert read_rows(out)["other_bytes"].sum() == 10 * 2 * 84
