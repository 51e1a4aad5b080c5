"""The web's answers (web/answers.py): what /api/clients, /api/clients/{ip}, /api/protocols,
/api/services and /api/windows say, and that they say the same over any queries.Reader (the
web's memory, and a plain list of windows read the simplest way)."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings

from tests.web_helpers import T0, store_with, window_rows
from tests.web_windows import POOL, Given, ListReader, fed, given_windows, ranges
from traffic_capture.queries import Reader
from traffic_capture.web import answers
from traffic_capture.web.memory_store import MemoryStore, ServiceSums


def test_last_seconds_count_back_from_the_newest_window() -> None:
    state = store_with([
        window_rows(T0, {("10.0.0.1", "in"): [1, 0, 0, 0, 0]}),
        window_rows(T0 + 5, {("10.0.0.1", "out"): [0, 2, 0, 0, 0],
                             ("10.0.0.2", "in"): [0, 0, 30, 0, 0]}),
        window_rows(T0 + 10, {("10.0.0.2", "in"): [0, 0, 0, 400, 0]}),
    ])
    last5 = answers.clients(state, answers.last(state, 5), 10)
    assert [c["ip"] for c in last5["clients"]] == ["10.0.0.2"]
    assert last5["clients"][0]["protocols"]["udp"] == 400
    everything = answers.clients(state, answers.last(state, 3600), 10)
    assert [(c["ip"], c["bytes_in"], c["bytes_out"]) for c in everything["clients"]] == [
        ("10.0.0.2", 430, 0), ("10.0.0.1", 1, 2)]
    assert answers.clients(state, answers.last(state, 3600), 10, "out")["clients"][0][
        "ip"] == "10.0.0.1"
    assert answers.clients(state, answers.last(state, 3600), 1)["clients_active"] == 2
    protocols = {p["protocol"]: p["total"]
                 for p in answers.protocols(state, answers.last(state, 10))["protocols"]}
    assert protocols == {"http": 0, "ftp": 2, "tcp": 30, "udp": 400, "other": 0}


def test_drill_down_and_unknown_client() -> None:
    state = store_with([window_rows(T0, {("2001:db8::7", "in"): [5, 0, 0, 0, 1]}),
                        window_rows(T0 + 5, {("2001:db8::7", "out"): [0, 0, 9, 0, 0]})])
    client = answers.client(state, "2001:db8::7", answers.last(state, 3600))
    assert client is not None
    assert [(w["start"], w["in"]["http"], w["out"]["tcp"]) for w in client["history"]] == [
        (T0, 5, 0), (T0 + 5, 0, 9)]
    assert client["total"] == 15
    assert answers.client(state, "2001:db8::8", answers.last(state, 3600)) is None


def test_services_sum_per_name() -> None:
    state = MemoryStore(5, 3600, services=True)
    state.add_window(T0, T0 + 5, ["10.0.0.1"], np.array([True]), np.array([[0, 0, 100, 0, 0]]),
                     ServiceSums(["10.0.0.1", "10.0.0.1"], np.array([True, False]),
                                 np.array([1, 1], dtype=np.int16), np.array([60, 40])))
    services = answers.services(state, answers.last(state, 60))["services"]
    assert services == [{"service": "https", "bytes_in": 60, "bytes_out": 40, "total": 100}]



def every_answer(reader: Reader, windows: list[Given]) -> list[str]:
    """Every answer the API gives, over the ranges worth asking, as the JSON sent."""
    found = []
    for when in ranges(windows):
        for limit in (1, 3, 100):
            for direction in (None, "in", "out"):
                found.append(answers.clients(reader, when, limit, direction))
        for ip in [*POOL, "203.0.113.1"]:
            found.append(answers.client(reader, ip, when))
        found += [answers.protocols(reader, when), answers.services(reader, when)]
    for seconds in (5, 60):
        found.append(answers.clients(reader, answers.last(reader, seconds), 20))
    for limit in (1, 3, 100):
        found.append(answers.windows(reader, limit))
    return [json.dumps(answer) for answer in found]


@settings(max_examples=60, deadline=None)
@given(given_windows())
def test_the_answers_are_the_same_over_any_reader(windows: list[Given]) -> None:
    """The web's memory (numpy columns, cached sums, late windows kept apart) and a plain
    list give the same JSON, byte for byte: the answers ask only what every Reader says."""
    assert every_answer(fed(windows), windows) == every_answer(ListReader(windows), windows)


def test_a_client_is_unknown_only_where_the_reader_names_it_nowhere() -> None:
    """A client of a window older than the range asked for gets an empty history (the page
    shows nothing), a client the reader never named a 404."""
    store = store_with([window_rows(T0, {("10.0.0.1", "in"): [1, 0, 0, 0, 0]}),
                        window_rows(T0 + 60, {("10.0.0.2", "in"): [2, 0, 0, 0, 0]})])
    old = answers.client(store, "10.0.0.1", answers.last(store, 5))
    assert old is not None and (old["history"], old["total"], old["windows"]) == ([], 0, 1)
    assert answers.client(store, "10.0.0.3", answers.last(store, 3600)) is None
    assert answers.canonical_ip(" 2001:DB8:0::7 ") == "2001:db8::7"


def test_the_window_in_progress_and_a_closed_one_have_the_same_shape() -> None:
    store = MemoryStore(5, 3600)
    store.add_window(T0, T0 + 5, ["10.0.0.1", "2001:db8::7"], np.array([True, False]),
                     np.array([[1, 2, 3, 4, 5], [0, 0, 0, 0, 6]]))
    closed = answers.windows(store, 1)["windows"][0]
    assert closed == answers.window_dict(T0, T0 + 5, ["10.0.0.1", "2001:db8::7"],
                                         np.array([True, False]),
                                         np.array([[1, 2, 3, 4, 5], [0, 0, 0, 0, 6]]))
    assert closed["rows"][1] == {"client_ip": "2001:db8::7", "direction": "out",
                                 "total_bytes": 6, "http_bytes": 0, "ftp_bytes": 0,
                                 "tcp_bytes": 0, "udp_bytes": 0, "other_bytes": 6}
