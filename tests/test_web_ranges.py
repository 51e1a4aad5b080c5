"""Any range through the API: `from`/`to` as epoch seconds or ISO 8601 date-times (local time,
or UTC with --utc), beside `seconds`; each answer's `resolution`; bad values get 422 with a
message. Over the web's memory here; over a history: test_web_tiered.py, test_web_history.py."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from tests.web_helpers import T0, store_with, window_rows  # noqa: E402
from traffic_capture.queries import TimeRange  # noqa: E402
from traffic_capture.web.api import WebApp  # noqa: E402
from traffic_capture.web.ranges import asked_range, parse_time  # noqa: E402

# T0 = 2023-11-14 22:13:20 UTC; windows every 5 s for 10 minutes.
STATE = store_with([window_rows(T0 + 5 * k, {("10.0.0.1", "in"): [k, 0, 0, 0, 0],
                                             ("10.0.0.2", "out"): [0, 0, 2 * k, 0, 0]})
                    for k in range(120)])
NEWEST = T0 + 600


@pytest.fixture
def sao_paulo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The server's local time is UTC-3 (no summer time since 2019)."""
    monkeypatch.setenv("TZ", "America/Sao_Paulo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_times_as_epoch_seconds_or_iso_8601(sao_paulo: None) -> None:
    assert parse_time("1700000000") == parse_time(" 1700000000.9 ") == 1700000000
    assert parse_time("1700000000.1", end=True) == 1700000001
    assert parse_time("2023-11-14T22:13:20Z") == 1700000000
    assert parse_time("2023-11-14T22:13:20+00:00") == 1700000000
    assert parse_time("2023-11-14T23:13:20 01:00") == 1700000000  # '+' sent unencoded
    assert parse_time("2023-11-14T19:13:20") == 1700000000  # local time: UTC-3
    assert parse_time("2023-11-14T22:13:20", utc=True) == 1700000000
    assert parse_time("2023-11-14") == 1699930800  # local midnight
    assert parse_time("2023-11-14", utc=True) == 1699920000


@pytest.mark.parametrize(("text", "says"), [
    ("", "is empty"), ("yesterday", "neither epoch seconds nor an ISO 8601"),
    ("-1", "outside 1970"), ("9" * 400, "outside 1970"), ("1e9", "neither"),
    ("2023-13-01", "neither"), ("0001-01-01T00:00", "outside 1970"),
])
def test_bad_times_say_why_in_one_line(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as error:
        parse_time(text)
    assert "\n" not in str(error.value) and len(str(error.value)) < 200


def test_the_range_of_a_call() -> None:
    assert asked_range(NEWEST, 300) == TimeRange(NEWEST - 300, NEWEST)
    assert asked_range(NEWEST, 300, end=str(T0 + 100)) == TimeRange(T0 - 200, T0 + 100)
    assert asked_range(NEWEST, 300, str(T0)) == TimeRange(T0, NEWEST)  # seconds has no say
    assert asked_range(NEWEST, 300, str(T0), str(T0 + 60)) == TimeRange(T0, T0 + 60)
    with pytest.raises(ValueError, match="from must be before to"):
        asked_range(NEWEST, 300, str(T0 + 60), str(T0 + 60))
    with pytest.raises(ValueError, match="before the newest window held"):
        asked_range(NEWEST, 300, str(NEWEST + 5))


def test_from_to_answer_as_seconds_does_for_the_same_range() -> None:
    client = TestClient(WebApp(STATE, lambda: {}).app)
    for path in ("/api/clients", "/api/protocols", "/api/services", "/api/clients/10.0.0.1"):
        last = client.get(path, params={"seconds": 120}).json()
        ranged = client.get(path, params={"from": NEWEST - 120, "to": NEWEST}).json()
        assert last == ranged, path
        assert last["resolution"] == 5 and last["seconds"] == 120
        just_from = client.get(path, params={"from": NEWEST - 120, "seconds": 5}).json()
        assert just_from == last, path
    # The first minute, by ISO date-times (UTC given): 12 windows, k = 0..11.
    first = client.get("/api/clients", params={"from": "2023-11-14T22:13:20Z",
                                               "to": "2023-11-14T22:14:20Z"}).json()
    assert (first["from"], first["to"], first["windows"]) == (T0, T0 + 60, 12)
    assert {c["ip"]: c["total"] for c in first["clients"]} == {"10.0.0.2": 132, "10.0.0.1": 66}
    # `to` alone: the `seconds` before it.
    before = client.get("/api/protocols", params={"to": T0 + 60, "seconds": 60}).json()
    assert before["windows"] == 12 and before["from"] == T0
    drill = client.get("/api/clients/10.0.0.2", params={"from": T0, "to": T0 + 30}).json()
    assert [w["start"] for w in drill["history"]] == [T0 + 5 * k for k in range(6)]
    assert drill["resolution"] == 5


def test_naive_date_times_are_local_or_utc_with_the_run(sao_paulo: None) -> None:
    local = TestClient(WebApp(STATE, lambda: {}).app)
    utc = TestClient(WebApp(STATE, lambda: {}, utc=True).app)
    window = {"from": "2023-11-14T22:13:20", "to": "2023-11-14T22:14:20"}
    assert utc.get("/api/clients", params=window).json()["windows"] == 12
    assert local.get("/api/clients", params=window).json()["windows"] == 0  # 3 hours later
    local_window = {"from": "2023-11-14T19:13:20", "to": "2023-11-14T19:14:20"}
    assert local.get("/api/clients", params=local_window).json()["windows"] == 12


def test_bad_ranges_get_422_with_a_message() -> None:
    client = TestClient(WebApp(STATE, lambda: {}).app)
    for params, says in (({"from": "soon"}, "from='soon' is neither"),
                         ({"to": "-5"}, "to='-5' is outside"),
                         ({"from": T0 + 60, "to": T0}, "from must be before to"),
                         ({"from": NEWEST + 60}, "before the newest window held")):
        for path in ("/api/clients", "/api/protocols", "/api/services",
                     "/api/clients/10.0.0.1"):
            response = client.get(path, params=params)
            assert response.status_code == 422, (path, params)
            assert says in response.json()["detail"], response.json()
