"""A closed window's rows as the CSV's text, laid out by _csv_rows.c (built at install) or, where
it could not be compiled, by its twin `python_window_text`, which is where the layout is
written; tests/test_csv_window_text.py checks both give the same text.

The window's times are the same on every row, so each row is a prefix, the client and
direction texts, and the total and class counts in decimal. In Python that is one %-format
per row, holding the interpreter lock on the CSV writer's thread (0.1 s for the 100,000 rows
of a 1 M-packet trace, while the capture thread waits for the lock); the C step writes the
digits without it. An IPv4 client (nine rows in ten of the benchmark's trace) is given as its
address and written by the C step too, so that no Python string is made for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from traffic_capture.addresses import address_text, join_address
from traffic_capture.csvformat import row_template
from traffic_capture.frames import compiled_or
from traffic_capture.rules import IN, OUT

try:
    from traffic_capture.sinks._csv_rows import window_text as _compiled_window_text
except ImportError:  # no C compiler at install: python_window_text gives the same text
    _compiled_window_text = None
COMPILED = _compiled_window_text is not None


def python_window_text(start: str, end: str, delimiter: str, clients: Sequence[str],
                       inbound: np.ndarray, counts: np.ndarray, v4: np.ndarray | None = None
                       ) -> str:
    """Per row: start, end, the client, its direction, the row's total, then its class
    counts (int64 (rows, classes)), delimited, and a newline. With `v4` (int64 per row), a
    row's client is that IPv4 address, or for -1 the next of `clients` (IPv6, `other`)."""
    if v4 is not None:
        clients = with_ipv4(clients, v4)
    template = row_template(start, end, delimiter)
    directions = [IN if flag else OUT for flag in inbound.tolist()]
    numbers = np.column_stack([counts.sum(axis=1), counts]).tolist()
    return "".join([template % (client, direction, *row)
                    for client, direction, row in zip(clients, directions, numbers, strict=True)])


def with_ipv4(clients: Sequence[str], v4: np.ndarray) -> list[str]:
    """Every row's client text: its IPv4 address's, or the next of `clients` where v4 is -1."""
    addresses = v4.tolist()
    if sum(1 for address in addresses if address < 0) != len(clients) or any(
            address > 0xFFFFFFFF for address in addresses):
        raise ValueError("csv_rows: clients, directions and counts differ")
    texts = iter(clients)
    return [next(texts) if address < 0 else address_text(join_address(False, 0, address))
            for address in addresses]


def _c_window_text(start: str, end: str, delimiter: str, clients: Sequence[str],
                   inbound: np.ndarray, counts: np.ndarray, v4: np.ndarray | None = None
                   ) -> str:
    """The C layout. It takes ASCII texts only, as every address and `other` are; anything
    else (never seen) is laid out by the twin rather than lose the window."""
    assert _compiled_window_text is not None
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    ipv4 = () if v4 is None else (np.ascontiguousarray(v4, dtype=np.int64),)
    try:
        return _compiled_window_text(start + delimiter + end + delimiter, delimiter, clients, IN,
                                     OUT, np.ascontiguousarray(inbound, dtype=np.bool_), counts,
                                     counts.shape[1] if counts.ndim == 2 else 0, *ipv4)
    except UnicodeError:
        return python_window_text(start, end, delimiter, clients, inbound, counts, v4)


window_text = compiled_or(_c_window_text if COMPILED else None, python_window_text)
