"""Batch: the one shape every capture source produces and the rules consume.

Sources (files, live rings, libpcap) only frame bytes and timestamps; they know nothing of
servers, classes or windows. A source that hands out frames one by one builds its batches with
batch_of_frames.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

# TRAFFIC_CAPTURE_PURE_PYTHON=1: the compiled steps (CONTRIBUTING.md, "Compiled steps") are
# not used, as on a machine without a C compiler; the tests run the Python twins this way.
PURE_PYTHON = os.environ.get("TRAFFIC_CAPTURE_PURE_PYTHON") == "1"
F = TypeVar("F", bound=Callable[..., Any])


def compiled_or(compiled: F | None, python: F) -> F:
    """The compiled step when it was built (and not PURE_PYTHON), else its Python twin."""
    return python if PURE_PYTHON or compiled is None else compiled


# Nanoseconds a second: Batch.ts_ns, and every timestamp after it, is integer ns since the epoch.
NS = 1_000_000_000

# (timestamp in integer nanoseconds since the epoch, pcap link type, frame bytes)
Record = tuple[int, int, bytes]

# Header bytes read per frame: the largest link header (20, SLL2), the largest IPv4 header
# (60) and the 13 bytes of TCP up to its data offset all fit.
HEADER_BYTES = 96


@dataclass
class Batch:
    """Frames of one link type in one buffer: frame i is data[starts[i]:starts[i] + lengths[i]].

    The buffer may be reused by the source once the next batch is asked for: whoever keeps
    frames longer copies them. A source that already copied each frame's first bytes into a
    table (the capture-file walk) hands it over: row i holds frame i's first HEADER_BYTES from
    column `headers_at` on. `wire_lengths`, when the source knows them, are the frames' lengths
    on the wire (the captured ones may be cut by the snap length): where an IP header says 0
    (segmentation offload, jumbograms) they give the bytes, less `fcs_bytes`.
    """

    data: np.ndarray  # uint8
    starts: np.ndarray  # int64
    lengths: np.ndarray  # int64, captured bytes
    ts_ns: np.ndarray  # int64
    linktype: int
    headers: np.ndarray | None = None  # uint8, (frames, >= headers_at + HEADER_BYTES)
    headers_at: int = 0
    wire_lengths: np.ndarray | None = None  # int64; None: as captured
    fcs_bytes: int = 0  # the FCS that ends each frame on the wire (a capture file says so)

    def wire(self) -> np.ndarray:
        return self.lengths if self.wire_lengths is None else self.wire_lengths

    def __len__(self) -> int:
        return len(self.starts)

    def frame(self, i: int) -> bytes:
        start = int(self.starts[i])
        return self.data[start:start + int(self.lengths[i])].tobytes()


def batch_of_frames(records: list[Record]) -> Batch:
    """Records of one link type -> a Batch (for sources that hand out frames one by one)."""
    frames = [frame for _, _, frame in records]
    lengths = np.fromiter((len(f) for f in frames), dtype=np.int64, count=len(frames))
    starts = np.zeros(len(frames), dtype=np.int64)
    if len(frames) > 1:
        np.cumsum(lengths[:-1], out=starts[1:])
    data = np.frombuffer(b"".join(frames) or b"\0", dtype=np.uint8)
    ts_ns = np.fromiter((ts for ts, _, _ in records), dtype=np.int64, count=len(records))
    return Batch(data, starts, lengths, ts_ns, records[0][1])


def rows_at(data: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """(n, width) copy of data[start:start + width] for each start, zeros past the end.

    One row copy per frame through an overlapping strided view: numpy then copies `width`
    contiguous bytes per row, ~20x faster than indexing every byte.
    """
    rows = np.zeros((len(starts), width), dtype=np.uint8)
    whole = len(data) - width + 1  # rows that fit entirely in data
    fits = starts < whole
    if whole > 0:
        overlapping = np.lib.stride_tricks.as_strided(data, (whole, width), (1, 1),
                                                      writeable=False)
        if fits.all():
            return overlapping[starts]
        rows[fits] = overlapping[starts[fits]]
    for i in np.flatnonzero(~fits).tolist():  # the last few frames of a buffer
        tail = data[int(starts[i]):]
        rows[i, :len(tail)] = tail
    return rows


def python_gather(source: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                  target: np.ndarray, target_starts: np.ndarray) -> None:
    """source[starts[i]:starts[i] + lengths[i]] to target[target_starts[i]:...], one slice
    copy per frame (about 0.6 us each); _gather.c does the same without the GIL."""
    into, out_of = target.data, source.data  # memoryviews: slices copy at C speed
    for at, start, size in zip(target_starts.tolist(), starts.tolist(), lengths.tolist(),
                               strict=True):
        into[at:at + size] = out_of[start:start + size]


try:
    from traffic_capture._gather import gather as _compiled_gather
except ImportError:  # no C compiler at install: python_gather
    _compiled_gather = None
COMPILED_GATHER = _compiled_gather is not None
_copy_frames = compiled_or(_compiled_gather, python_gather)


def gather_frames(batch: Batch, chosen: np.ndarray, limit: int | None = None) -> Batch:
    """The chosen frames (indexes) copied into a buffer of their own: for consumers that keep
    frames after the source reuses its buffer. With `limit`, only each frame's first `limit`
    bytes (a snap length).

    One memcpy per frame (_gather.c, else python_gather): indexing every byte through a
    gathered index (np.repeat) costs 25 times as much as even the Python loop.
    """
    starts, lengths = batch.starts[chosen], batch.lengths[chosen]
    if limit is not None:
        lengths = np.minimum(lengths, limit)
    new_starts = np.zeros(len(chosen), dtype=np.int64)
    if len(chosen) > 1:
        np.cumsum(lengths[:-1], out=new_starts[1:])
    total = int(lengths.sum())
    data = np.empty(max(total, 1), dtype=np.uint8)
    if total:
        _copy_frames(batch.data, starts.astype(np.int64), lengths.astype(np.int64), data,
                     new_starts)
    return Batch(data, new_starts, np.array(lengths, copy=True), batch.ts_ns[chosen],
                 batch.linktype, wire_lengths=batch.wire()[chosen], fcs_bytes=batch.fcs_bytes)
