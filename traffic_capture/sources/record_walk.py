"""Where the records of a classic pcap buffer start, and a table of their first bytes.

The C version (_record_walk.c) is used when it was compiled at install; this is the same loop
in Python, for machines without a C compiler. tests/test_record_walk.py checks they agree.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from traffic_capture.batch import rows_at


def python_walk(buffer: Any, at: int, end: int, offsets: np.ndarray, big_endian: bool,
                rows: np.ndarray, width: int) -> tuple[int, int]:
    """Offsets of the whole records from `at` up to `end` into `offsets` (int64), at most
    len(offsets) of them (and len(rows) // width): (how many, where the next record begins).
    With width > 0, row i of `rows` (uint8) gets the `width` bytes from record i's start,
    zeros past `end`."""
    caplen_at = struct.Struct(">I" if big_endian else "<I").unpack_from
    end = min(end, len(buffer))
    found: list[int] = []
    record_at = found.append
    capacity = min(len(offsets), rows.size // width) if width > 0 else len(offsets)
    while len(found) < capacity and at + 16 <= end:
        following = at + 16 + caplen_at(buffer, at + 8)[0]
        if following > end:
            break
        record_at(at)
        at = following
    offsets[:len(found)] = found
    if width > 0 and found:
        table = rows.reshape(-1)[:len(found) * width].reshape(len(found), width)
        table[:] = rows_at(np.frombuffer(buffer, dtype=np.uint8)[:end], offsets[:len(found)],
                           width)
    return len(found), at


try:
    from traffic_capture.sources._record_walk import walk as compiled_walk
except ImportError:  # no compiler at install time: same results, ~100x slower
    compiled_walk = None

walk = compiled_walk or python_walk
COMPILED = compiled_walk is not None
