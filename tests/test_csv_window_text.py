"""The CSV's rows laid out in C (_csv_rows.c) and by their Python twin are the same text, byte
for byte, and both are the rows csvformat.format_rows writes for the same window."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.requirements import missing
from traffic_capture.csvformat import DELIMITERS, format_rows
from traffic_capture.rules import CLASSES
from traffic_capture.sinks import csv_rows
from traffic_capture.sinks.csv_file import format_window
from traffic_capture.windows import _OTHER_HI as OTHER_HI
from traffic_capture.windows import OTHER_CLIENT, ClosedWindow, Sums

CLIENTS = st.one_of(
    st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n))),
    st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n))),
    st.just(OTHER_CLIENT))
# Byte counts at the edges of their digits, int64's ends (a total may wrap, as numpy's sum).
COUNTS = st.one_of(st.integers(0, 10**6), st.sampled_from(
    [0, 9, 10, 99, 100, 2**31, 10**18 - 1, 10**18, 2**63 - 1, -1, -(2**63)]))
TIMES = st.sampled_from(["2026-01-01 00:00:00", "1999-12-31 23:59:55", "100%d", ""])


def compiled() -> object:
    if not csv_rows.COMPILED:
        missing("no compiled CSV rows on this machine (a C compiler, then pip install -e .)")
    return csv_rows._c_window_text


def test_the_compiled_rows_were_built() -> None:
    """CI machines have a C compiler: the fast path must be the one tested and measured."""
    assert csv_rows.COMPILED, "traffic_capture/sinks/_csv_rows.c was not compiled"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(CLIENTS, st.booleans(), st.lists(COUNTS, min_size=len(CLASSES),
                                                          max_size=len(CLASSES))),
                max_size=60),
       st.sampled_from(DELIMITERS), TIMES, TIMES)
def test_compiled_and_python_rows_agree(rows: list[tuple], delimiter: str, start: str,
                                        end: str) -> None:
    clients = [client for client, _, _ in rows]
    inbound = np.array([flag for _, flag, _ in rows], dtype=bool)
    counts = np.array([numbers for _, _, numbers in rows], dtype=np.int64).reshape(
        len(rows), len(CLASSES))
    texts = [write(start, end, delimiter, clients, inbound, counts)  # type: ignore[operator]
             for write in (compiled(), csv_rows.python_window_text)]
    assert texts[0] == texts[1]
    assert texts[0].count("\n") == len(rows)
    # The IPv4 clients given as addresses (the others as texts): the same text from both.
    v4 = np.array([int(ipaddress.IPv4Address(c)) if "." in c else -1 for c in clients],
                  dtype=np.int64)
    others = [c for c in clients if "." not in c]
    for write in (compiled(), csv_rows.python_window_text):
        assert write(start, end, delimiter, others, inbound, counts, v4) == texts[0]  # type: ignore[operator]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.booleans(),
                          st.lists(st.integers(0, 2**40), min_size=len(CLASSES),
                                   max_size=len(CLASSES))), max_size=40),
       st.sampled_from(DELIMITERS))
def test_a_closed_windows_text_is_its_rows_as_format_rows_writes_them(
        rows: list[tuple], delimiter: str) -> None:
    """format_window (what the CSV output writes) against the contract's own row writer."""
    n = len(rows)
    sums = Sums(np.zeros(n, dtype=bool), np.zeros(n, dtype=np.uint64),
                np.array([address for address, _, _ in rows], dtype=np.uint64),
                np.array([flag for _, flag, _ in rows], dtype=bool),
                np.array([numbers for _, _, numbers in rows], dtype=np.int64).reshape(
                    n, len(CLASSES)))
    window = ClosedWindow(1_767_225_600, 1_767_225_605, sums)
    assert format_window(window, delimiter, utc=True) == format_rows(window.rows(), delimiter,
                                                                     utc=True)


@pytest.mark.parametrize("clients, inbound, counts", [
    (["192.0.2.1"], [True, False], [[1] * len(CLASSES)] * 2),
    (["192.0.2.1", "192.0.2.2"], [True, False], [[1] * len(CLASSES)]),
])
def test_the_compiled_rows_refuse_columns_that_differ(clients: list[str], inbound: list[bool],
                                                      counts: list[list[int]]) -> None:
    with pytest.raises(ValueError, match="differ"):
        compiled()("2026-01-01 00:00:00", "2026-01-01 00:00:05", ",",  # type: ignore[operator]
                   clients, np.array(inbound), np.array(counts, dtype=np.int64))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["v4", "v6", "other"]), st.integers(0, 2**32 - 1),
                          st.integers(0, 2**64 - 1), st.booleans()), max_size=40),
       st.sampled_from(DELIMITERS))
def test_a_window_of_any_clients_is_its_rows_as_format_rows_writes_them(
        rows: list[tuple], delimiter: str) -> None:
    """IPv4, IPv6 and `other` rows mixed: the IPv4 ones laid out from their addresses, the
    rest from their texts, in row order."""
    n = len(rows)
    is6 = np.array([kind == "v6" for kind, _, _, _ in rows], dtype=bool)
    hi = np.array([high if kind == "v6" else (OTHER_HI if kind == "other" else 0)
                   for kind, _, high, _ in rows], dtype=np.uint64)
    lo = np.array([low if kind == "v4" else (0 if kind == "other" else low * 7919)
                   for kind, low, _, _ in rows], dtype=np.uint64)
    counts = np.arange(n * len(CLASSES), dtype=np.int64).reshape(n, len(CLASSES))
    window = ClosedWindow(1_767_225_600, 1_767_225_605, Sums(
        is6, hi, lo, np.array([flag for *_, flag in rows], dtype=bool), counts))
    v4, texts = window.ipv4_and_texts()
    assert v4.tolist() == [low if kind == "v4" else -1 for kind, low, _, _ in rows]
    assert texts == [text for text, (kind, *_) in zip(window.client_texts(), rows, strict=True)
                     if kind != "v4"]
    assert format_window(window, delimiter, utc=True) == format_rows(window.rows(), delimiter,
                                                                     utc=True)


@pytest.mark.parametrize(("v4", "texts"), [([2**32], []), ([-1, -1], ["2001:db8::1"]),
                                           ([1], ["2001:db8::1"])])
def test_the_compiled_rows_refuse_addresses_that_do_not_fit(v4: list[int], texts: list[str]
                                                            ) -> None:
    """An address past IPv4's, or texts that do not match the rows that need one."""
    n = len(v4)
    with pytest.raises(ValueError, match="out of range|differ"):
        compiled()("a", "b", ",", texts, np.ones(n, dtype=bool),  # type: ignore[operator]
                   np.ones((n, len(CLASSES)), dtype=np.int64), np.array(v4, dtype=np.int64))


def test_a_text_that_is_not_ascii_is_laid_out_by_the_twin() -> None:
    """Addresses and `other` are ASCII; anything else (never seen) is not a lost window."""
    columns = (["192.0.2.1", "cliente-são-paulo"], np.array([True, False]),
               np.ones((2, len(CLASSES)), dtype=np.int64))
    compiled()  # skipped where there is no C step
    with pytest.raises(UnicodeError):
        csv_rows._compiled_window_text("a,b,", ",", columns[0], "in", "out", columns[1],
                                       columns[2], len(CLASSES))
    assert csv_rows._c_window_text("a", "b", ",", *columns) == csv_rows.python_window_text(
        "a", "b", ",", *columns)
