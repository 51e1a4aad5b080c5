"""The web over a history store: `serve --history` reading while a real child process writes
the store (it need not exist yet), with and without a CSV; the daemon's web sink with
--history (its memory for the recent windows, the history for the rest)."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("duckdb")

from tests.conftest import DAEMON, REPO, child_env  # noqa: E402
from tests.history_child import START, history_rows, prefix_sums  # noqa: E402
from tests.web_helpers import WebProcess, append, eventually, get  # noqa: E402
from traffic_capture.csvformat import Row  # noqa: E402
from traffic_capture.history.writer import HistoryWriter  # noqa: E402
from traffic_capture.servers import ServerSet, parse_server  # noqa: E402
from traffic_capture.sinks import OutputContext  # noqa: E402
from traffic_capture.web import WebSettings  # noqa: E402
from traffic_capture.web.sink import WebSink  # noqa: E402

CHILD = [sys.executable, str(REPO / "tests" / "history_child.py")]
WINDOWS = 3000
FLUSH_EVERY = 30


def per_class(answer: dict) -> list[int]:
    """/api/protocols' bytes per class, in and out together."""
    return [p["total"] for p in answer["protocols"]]


def test_serve_reads_a_history_while_a_child_writes_it(tmp_path: Path) -> None:
    """`serve --history` starts before the store exists; a child then writes 3,000 windows,
    flushing every 30 and merging: every answer over the whole range holds whole flushes
    only (no window twice, none missing), at the resolution it says; the last answer holds
    them all, and the last 5 minutes come from the memory that follows the history."""
    path = tmp_path / "h"
    web = WebProcess(["serve", "--history", str(path), "--web", "127.0.0.1:0"])
    try:
        status = get(web.url + "api/status")[1]
        assert status["history_store"] == {"path": str(path), "exists": False,
                                           "resolutions": []}
        assert status["csv"] is None
        whole = f"api/protocols?from={START}&to={START + 5 * WINDOWS}"
        assert per_class(get(web.url + whole)[1]) == [0] * 5
        child = subprocess.Popen([*CHILD, str(path), "0", str(WINDOWS), str(FLUSH_EVERY)],
                                 stdout=subprocess.PIPE, text=True, env=child_env())
        seen = []
        try:
            while child.poll() is None:
                status_code, answer = get(web.url + whole)
                assert status_code == 200, answer
                got = per_class(answer)
                k = next((k for k in range(0, WINDOWS + 1, FLUSH_EVERY)
                          if prefix_sums(k).tolist() == got), None)
                assert k is not None, got  # whole flushes only
                assert not seen or k >= seen[-1]
                assert answer["resolution"] in (5, 60)
                seen.append(k)
        finally:
            child.wait(timeout=120)
        assert child.returncode == 0
        assert len(set(seen)) > 2, seen  # it read the store while it grew
        final = eventually(lambda: (lambda a: a if per_class(a) == prefix_sums(
            WINDOWS).tolist() else None)(get(web.url + whole)[1]))
        assert final["resolution"] == 60 and final["from"] == START
        # The whole range at every resolution: the same bytes (the answers pick; the drill-
        # down of one client at the answer's resolution sums to its total).
        drill = get(web.url + f"api/clients/192.0.2.2?from={START}&to={START + 5 * WINDOWS}")[1]
        assert drill["resolution"] == 60 and len(drill["history"]) == WINDOWS * 5 // 60
        assert drill["total"] == sum(sum(w["in"].values()) + sum(w["out"].values())
                                     for w in drill["history"])
        # The last 5 minutes: the memory, which follows the history's newest windows.
        recent = eventually(lambda: (lambda a: a if (a["windows"], a["to"]) == (
            60, START + 5 * WINDOWS) else None)(get(web.url + "api/protocols?seconds=300")[1]))
        want = prefix_sums(WINDOWS) - prefix_sums(WINDOWS - 60)
        assert per_class(recent) == want.tolist() and recent["resolution"] == 5
        # The memory looks at the history every 5 s: the child may have written it all since
        # the last look.
        status = eventually(lambda: (lambda a: a if a["history_to"] == START + 5 * WINDOWS
                                     else None)(get(web.url + "api/status")[1]))
        assert status["history_windows"] == 720  # the memory: its last hour
        assert [r["resolution"] for r in status["history_store"]["resolutions"]] == [5, 60, 3600]
        assert status["history_store"]["resolutions"][0]["to"] == START + 5 * WINDOWS
    finally:
        assert web.stop() == 0


def test_serve_a_csv_and_a_history_together(tmp_path: Path) -> None:
    """The CSV's rows in memory (the recent ones), the history for the rest: a range across
    both counts each window once; a path that is not a history is one line."""
    path = tmp_path / "h"
    with HistoryWriter(path, "5s=7d,1m=90d,1h=forever", "t", flush_seconds=0.0) as writer:
        for window in range(2880):  # four hours
            writer.add_window(*history_rows(window))
    csv = tmp_path / "traffic.csv"
    rows = []
    for window in range(2850, 2950):  # overlaps the history, then goes past it
        start, end, clients, inbound, counts = history_rows(window)
        rows += [Row(start, end, client, "in" if way else "out", int(c.sum()), *c.tolist())
                 for client, way, c in zip(clients, inbound, counts, strict=True)]
    append(csv, rows)
    web = WebProcess(["serve", "--csv", str(csv), "--history", str(path), "--web",
                      "127.0.0.1:0"])
    try:
        answer = get(web.url + f"api/protocols?from={START}&to={START + 5 * 2950}")[1]
        assert per_class(answer) == prefix_sums(2950).tolist()
        assert answer["resolution"] == 60
        assert get(web.url + "api/status")[1]["csv"] == str(csv)
    finally:
        assert web.stop() == 0
    (tmp_path / "file").write_text("not a history")
    result = subprocess.run([*DAEMON, "serve", "--history", str(tmp_path / "file"),
                             "--web", "127.0.0.1:0"], capture_output=True, text=True,
                            env=child_env(), timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"traffic-capture: error: history {tmp_path / 'file'}: is a file, not a history folder"]


def test_the_web_sink_answers_from_its_memory_and_the_history(tmp_path: Path) -> None:
    """The capture run's --web with --history: the sink's memory has the last windows (some
    not flushed to the history yet), the history the rest; /api/status says the history's
    span per resolution. The store is made after the dashboard started."""
    path = tmp_path / "h"
    settings = WebSettings("127.0.0.1", 0, None, 3600, tmp_path / "none.csv", history=path)
    context = OutputContext(print, print, 5, ServerSet([parse_server("192.0.2.100")]), utc=True,
                            run_status=lambda: {"mode": "test"})
    sink = WebSink.for_capture(settings, context)
    sink.check()
    sink.open()
    try:
        assert sink.server is not None
        url = sink.server.url
        for window in range(2780, 2880):  # the memory: windows the CSV would have
            start, end, clients, inbound, counts = history_rows(window)
            sink.store.add_window(start, end, clients, inbound, counts)
        status = get(url + "api/status")[1]
        assert status["history_store"]["exists"] is False and status["mode"] == "test"
        with HistoryWriter(path, "5s=7d,1m=90d,1h=forever", "t", flush_seconds=0.0) as writer:
            for window in range(2870):  # the history lags the memory by 10 windows
                writer.add_window(*history_rows(window))
        # What the store holds is looked up once a second.
        eventually(lambda: get(url + "api/status")[1]["history_store"]["resolutions"])
        # The last 4 hours, from/to as epoch seconds and as a date-time (UTC: the run's --utc).
        start_utc = datetime.fromtimestamp(START, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        for query in ("seconds=14400", f"from={START}", f"from={start_utc}"):
            answer = get(url + f"api/protocols?{query}")[1]
            assert per_class(answer) == prefix_sums(2880).tolist(), query
            assert answer["resolution"] == 60
        recent = get(url + "api/protocols?seconds=50")[1]
        assert per_class(recent) == (prefix_sums(2880) - prefix_sums(2870)).tolist()
        assert recent["resolution"] == 5
        held = get(url + "api/status")[1]["history_store"]["resolutions"]
        assert [(r["resolution"], r["from"], r["to"]) for r in held] == [
            (5, START, START + 5 * 2870), (60, START, START + 14400),
            (3600, START, START + 14400)]
    finally:
        sink.finish()


def test_a_week_at_the_minute_sums_as_the_hour(tmp_path: Path) -> None:
    """Bytes conserved through the web: /api/clients over an aligned week answers at 1 min,
    and a from/to of the same week's days at 1 h gives every client the same bytes."""
    path = tmp_path / "h"
    end = START + 7 * 86400
    with HistoryWriter(path, "5s=7d,1m=90d,1h=forever", "t", flush_seconds=0.0) as writer:
        for window in range(0, 7 * 86400 // 5, 97):  # a window every ~8 minutes
            writer.add_window(*history_rows(window))
    web = WebProcess(["serve", "--history", str(path), "--web", "127.0.0.1:0"])
    try:
        week = get(web.url + f"api/clients?from={START}&to={end}&limit=100")[1]
        forty_days = get(web.url + f"api/clients?from={START}&to={START + 40 * 86400}"
                                   "&limit=100")[1]
        assert (week["resolution"], forty_days["resolution"]) == (60, 3600)
        assert {c["ip"]: (c["in"], c["out"]) for c in week["clients"]} == {
            c["ip"]: (c["in"], c["out"]) for c in forty_days["clients"]}
        total = sum(history_rows(w)[4].sum() for w in range(0, 7 * 86400 // 5, 97))
        assert sum(c["total"] for c in week["clients"]) == int(total)
    finally:
        assert web.stop() == 0



def test_a_path_that_turns_out_not_a_history_is_a_503_with_its_line(tmp_path: Path) -> None:
    """The store did not exist at start; what appeared there is some other folder: each
    answer is a 503 saying so in one line (the page shows it, and asks again later)."""
    from fastapi.testclient import TestClient

    from traffic_capture.web.api import WebApp
    from traffic_capture.web.memory_store import MemoryStore
    from traffic_capture.web.stored_history import StoredHistory
    from traffic_capture.web.tiered import TieredReader

    path = tmp_path / "h"
    memory = MemoryStore(5, 3600)
    app = TestClient(WebApp(memory, lambda: {}, reader=TieredReader(
        memory, StoredHistory(path))).app)
    assert app.get("/api/clients").status_code == 200
    path.mkdir()
    (path / "notes.txt").write_text("mine")
    # What the store holds is looked up once a second: the next look says it.
    response = eventually(lambda: (lambda r: r if r.status_code != 200 else None)(
        app.get("/api/clients", params={"seconds": 86400})))
    assert response.status_code == 503
    assert response.json() == {"detail": f"history {path}: not a traffic-capture history (no "
                                         "traffic-history.v1 in it, and not empty)"}
