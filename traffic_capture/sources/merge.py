"""Several capture files read as one capture, in time order (rotated captures: `tcpdump -G`,
`dumpcap -b`, one file per interface...), batch by batch rather than packet by packet.

The order is exactly heapq.merge's over the files' packets by timestamp (ties: the file given
first), which is also right for files that are not quite in time order: such a merge puts a
packet where its file's running maximum timestamp falls, so merging by that running maximum,
a sorted key, gives the same order with numpy. tests/test_merge.py checks the two agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from traffic_capture.frames import HEADER_BYTES, Batch, rows_at


@dataclass
class _Pending:
    """What is left of one file's batches: frames in their own copy, so that the file's
    reader may reuse its buffers."""

    data: np.ndarray  # uint8
    starts: np.ndarray
    lengths: np.ndarray
    ts_ns: np.ndarray
    keys: np.ndarray  # the file's running maximum timestamp at each frame
    linktypes: np.ndarray
    headers: np.ndarray  # (frames, HEADER_BYTES)
    wire: np.ndarray  # lengths on the wire

    def __len__(self) -> int:
        return len(self.starts)

    def split(self, count: int) -> tuple[_Pending, _Pending]:
        """The first `count` frames, and the rest (without the bytes once nothing is left)."""
        def part(frames: slice) -> _Pending:
            return _Pending(self.data, self.starts[frames], self.lengths[frames],
                            self.ts_ns[frames], self.keys[frames], self.linktypes[frames],
                            self.headers[frames], self.wire[frames])
        rest = part(slice(count, None)) if count < len(self) else _empty()
        return part(slice(0, count)), rest


def _owned(batch: Batch, running_max: int) -> _Pending:
    """A batch's frames copied out of its reader's buffer, with their merge keys."""
    if not len(batch):
        return _empty()
    if batch.headers is None:
        headers = rows_at(batch.data, batch.starts, HEADER_BYTES)
    else:
        at = batch.headers_at
        headers = np.array(batch.headers[:, at:at + HEADER_BYTES])  # a copy, always
    keys = np.maximum.accumulate(np.maximum(batch.ts_ns, running_max))
    owned = _trimmed(_Pending(batch.data, batch.starts, batch.lengths, batch.ts_ns, keys,
                              np.full(len(batch), _link_key(batch), dtype=np.int64), headers,
                              batch.wire()))
    # The reader reuses its columns too (a chunk's decoded headers), not only its bytes.
    owned.data, owned.lengths = owned.data.copy(), owned.lengths.copy()
    owned.ts_ns, owned.wire = owned.ts_ns.copy(), owned.wire.copy()
    return owned


def _empty() -> _Pending:
    none = np.zeros(0, dtype=np.int64)
    return _Pending(np.zeros(0, dtype=np.uint8), none, none, none, none, none,
                    np.zeros((0, HEADER_BYTES), dtype=np.uint8), none)


def _joined(parts: list[_Pending]) -> _Pending:
    if len(parts) == 1:
        return parts[0]
    sizes = np.cumsum([0, *(len(p.data) for p in parts)])
    return _Pending(np.concatenate([p.data for p in parts]),
                    np.concatenate([p.starts + sizes[k] for k, p in enumerate(parts)]),
                    *(np.concatenate([getattr(p, name) for p in parts])
                      for name in ("lengths", "ts_ns", "keys", "linktypes", "headers", "wire")))


class _File:
    """One file's stream of batches, as _Pending frames with merge keys."""

    def __init__(self, batches: Iterator[Batch]) -> None:
        self._batches = batches
        self.pending = _empty()
        self.ended = False
        self._running_max = np.iinfo(np.int64).min

    def refill(self) -> None:
        """With nothing pending, the file's next batch (or the file has ended)."""
        while not self.ended and not len(self.pending):
            batch = next(self._batches, None)
            if batch is None:
                self.ended = True
            elif len(batch):
                self.pending = _owned(batch, self._running_max)
                self._running_max = int(self.pending.keys[-1])

    def last_key(self) -> float:
        """No frame still to come from this file has a smaller key."""
        return float("inf") if self.ended else int(self.pending.keys[-1])


def merged_batches(streams: list[Iterator[Batch]]) -> Iterator[Batch]:
    """The frames of every stream in one time order (see the module docstring)."""
    files = [_File(stream) for stream in streams]
    while True:
        for file in files:
            file.refill()
        if not any(len(file.pending) for file in files):
            return
        last = [file.last_key() for file in files]
        parts = []
        for i, file in enumerate(files):
            # A frame (key k, file i) is final once no file can still bring one that sorts
            # before it: from an earlier file, a frame with a key <= k; from a later file,
            # < k. No file brings a key below its last one.
            before = min(last[:i], default=float("inf"))
            after = min(last[i + 1:], default=float("inf"))
            keys = file.pending.keys
            count = min(len(keys) if before == float("inf") else
                        int(np.searchsorted(keys, before, side="left")),
                        len(keys) if after == float("inf") else
                        int(np.searchsorted(keys, after, side="right")))
            taken, file.pending = file.pending.split(count)
            parts.append(taken)
        # The file with the smallest last key (the first such) always gives all it holds.
        yield from _in_order(parts)


def _trimmed(part: _Pending) -> _Pending:
    """Only the bytes of the part's own frames (its data may hold other frames), as a view."""
    first, last = int(part.starts.min()), int((part.starts + part.lengths).max())
    return _Pending(part.data[first:last], part.starts - first, part.lengths, part.ts_ns,
                    part.keys, part.linktypes, part.headers, part.wire)


def _in_order(parts: list[_Pending]) -> Iterator[Batch]:
    """One batch per run of a link type, of the parts' frames sorted by (key, file, place)."""
    present = [k for k, part in enumerate(parts) if len(part)]
    joined = _joined([_trimmed(parts[k]) for k in present]) if len(present) > 1 else \
        parts[present[0]]
    file_of = np.concatenate([np.full(len(parts[k]), k, dtype=np.int64) for k in present])
    order = np.lexsort((np.arange(len(joined)), file_of, joined.keys))
    linktypes = joined.linktypes[order]
    cuts = (np.flatnonzero(linktypes[1:] != linktypes[:-1]) + 1).tolist()
    for start, stop in zip([0, *cuts], [*cuts, len(order)], strict=True):
        run = order[start:stop]
        key = int(linktypes[start])
        yield Batch(joined.data, joined.starts[run], joined.lengths[run], joined.ts_ns[run],
                    key & 0xFFFFFFFF, headers=joined.headers[run], headers_at=0,
                    wire_lengths=joined.wire[run], fcs_bytes=key >> 32)


def _link_key(batch: Batch) -> int:
    """A frame's link type and FCS length in one number: a merged batch holds one of each."""
    return batch.linktype | (batch.fcs_bytes << 32)
