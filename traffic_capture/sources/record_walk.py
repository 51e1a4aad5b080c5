"""Where the records of a capture file buffer start, and a table of their first bytes.

The C version (_record_walk.c) is used when it was compiled at install; these are the same
loops in Python, for machines without a C compiler. tests/test_record_walk.py checks they agree.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from traffic_capture.frames import compiled_or, rows_at
from traffic_capture.sources.pcapng import ENHANCED_PACKET


def _pcap_record(word: Callable[[Any, int], tuple[int]]) -> Callable[[Any, int, int], int]:
    def length(buffer: Any, at: int, end: int) -> int:
        if at + 16 > end:
            return -1
        size = 16 + word(buffer, at + 8)[0]
        return size if at + size <= end else -1
    return length


def _pcapng_packet_block(word: Callable[[Any, int], tuple[int]]
                         ) -> Callable[[Any, int, int], int]:
    def length(buffer: Any, at: int, end: int) -> int:
        if at + 32 > end or word(buffer, at)[0] != ENHANCED_PACKET:
            return -1
        size, captured = word(buffer, at + 4)[0], word(buffer, at + 20)[0]
        if size < 32 or size % 4 or at + size > end or 28 + captured > size - 4:
            return -1
        return size
    return length


def _walker(kind: Callable[[Callable[[Any, int], tuple[int]]], Callable[[Any, int, int], int]]
            ) -> Callable[..., tuple[int, int]]:
    def walk(buffer: Any, at: int, end: int, offsets: np.ndarray, big_endian: bool,
             rows: np.ndarray, width: int) -> tuple[int, int]:
        """Offsets of the whole records from `at` up to `end` into `offsets` (int64), at most
        len(offsets) of them (and rows.size // width): (how many, where the next begins).
        With width > 0, row i of `rows` (uint8) gets the `width` bytes from record i's start,
        zeros past `end`."""
        length = kind(struct.Struct(">I" if big_endian else "<I").unpack_from)
        end = min(end, len(buffer))
        found: list[int] = []
        capacity = min(len(offsets), rows.size // width) if width > 0 else len(offsets)
        while len(found) < capacity and at >= 0:
            size = length(buffer, at, end)
            if size < 0:
                break
            found.append(at)
            at += size
        offsets[:len(found)] = found
        if width > 0 and found:
            table = rows.reshape(-1)[:len(found) * width].reshape(len(found), width)
            table[:] = rows_at(np.frombuffer(buffer, dtype=np.uint8)[:end],
                               offsets[:len(found)], width)
        return len(found), at
    return walk


python_walk = _walker(_pcap_record)
python_walk_pcapng = _walker(_pcapng_packet_block)

try:
    from traffic_capture.sources._record_walk import walk as compiled_walk
    from traffic_capture.sources._record_walk import walk_pcapng as compiled_walk_pcapng
except ImportError:  # no compiler at install time: same results, ~100x slower
    compiled_walk = compiled_walk_pcapng = None

walk = compiled_or(compiled_walk, python_walk)
walk_pcapng = compiled_or(compiled_walk_pcapng, python_walk_pcapng)
COMPILED = compiled_walk is not None
