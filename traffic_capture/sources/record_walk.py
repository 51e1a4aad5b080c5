"""Where the records of a classic pcap buffer start.

The C version (_record_walk.c) is used when it was compiled at install; this is the same loop
in Python, for machines without a C compiler. tests/test_record_walk.py checks they agree.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np


def python_walk(buffer: Any, at: int, end: int, offsets: np.ndarray, big_endian: bool
                ) -> tuple[int, int]:
    """Offsets of the whole records from `at` up to `end` into `offsets` (int64), at most
    len(offsets) of them: (how many, where the next record begins)."""
    caplen_at = struct.Struct(">I" if big_endian else "<I").unpack_from
    end = min(end, len(buffer))
    found: list[int] = []
    record_at = found.append
    capacity = len(offsets)
    while len(found) < capacity and at + 16 <= end:
        following = at + 16 + caplen_at(buffer, at + 8)[0]
        if following > end:
            break
        record_at(at)
        at = following
    offsets[:len(found)] = found
    return len(found), at


try:
    from traffic_capture.sources._record_walk import walk as compiled_walk
except ImportError:  # no compiler at install time: same results, ~100x slower
    compiled_walk = None

walk = compiled_walk or python_walk
COMPILED = compiled_walk is not None
