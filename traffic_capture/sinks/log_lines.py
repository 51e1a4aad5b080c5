"""The packet log's lines: CountedPackets -> NDJSON bytes, keys in KEYS order.

Every column is worked out per batch with numpy, and every text a line takes (times,
addresses, class names, TCP flags, directions) goes once into a table of texts that the
columns index. The lines are then laid out by the C renderer (_log_lines.c, built at install)
or, where it could not be compiled, by `render_python`, which gives the same bytes
(tests/test_log_lines.py checks that on random and real packets).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring_ascii

import numpy as np

from traffic_capture.addresses import AddressText
from traffic_capture.frames import PURE_PYTHON
from traffic_capture.pipeline import CountedPackets
from traffic_capture.rules import CLASSES, IN, OUT
from traffic_capture.sinks.payload import payload_spans, tcp_flags_text

# The stable keys, in the order every line has them.
KEYS = ("ts", "src", "dst", "sport", "dport", "proto", "class", "direction", "client",
        "ip_bytes", "tcp_flags", "payload_len", "md5", "preview", "truncated", "payload_hex")
PREVIEW_BYTES = 64  # payload bytes shown in `preview`

# The int64 columns of a batch, one row per packet (the C renderer's order: it is used only
# when its own list is this one). (text) columns index the batch's table of texts.
COLUMNS = ("ts",  # (text) 'YYYY-MM-DDTHH:MM:SS' and the UTC offset; microseconds go between
           "micro", "src", "dst",  # src, dst: (text)
           "sport", "dport",  # -1: null
           "proto", "class", "direction", "client",  # class, direction, client: (text)
           "ip_bytes", "flags",  # flags: (text)
           "payload_len",  # -1: null, and no payload at all
           "payload_at", "payload_size",  # the captured payload in the frames' bytes
           "truncated")  # 0 false, 1 true, 2 null
(TS, MICRO, SRC, DST, SPORT, DPORT, PROTO, CLASS, DIRECTION, CLIENT, IP_BYTES, FLAGS,
 PAYLOAD_LEN, PAYLOAD_AT, PAYLOAD_SIZE, TRUNCATED) = range(len(COLUMNS))
DATE_CHARS = len("2024-05-01T14:03:07")

try:
    from traffic_capture.sinks._log_lines import COLUMNS as _COMPILED_COLUMNS
    from traffic_capture.sinks._log_lines import render as _compiled_render
except ImportError:  # no C compiler at install: render_python gives the same lines
    _COMPILED_COLUMNS, _compiled_render = (), None
COMPILED = _compiled_render is not None and tuple(_COMPILED_COLUMNS) == COLUMNS
USE_COMPILED = COMPILED and not PURE_PYTHON

_PRINTABLE = bytes(b if 0x20 <= b < 0x7F else 0x2E for b in range(256))

# The texts every batch's table starts with: class names, directions, TCP flags (then null).
_CONSTANT = ([encode_basestring_ascii(name) for name in CLASSES]
             + [encode_basestring_ascii(IN), encode_basestring_ascii(OUT)]
             + [f'"{tcp_flags_text(flags)}"' for flags in range(256)] + ["null"])
_IN_TEXT, _OUT_TEXT = len(CLASSES), len(CLASSES) + 1
_FLAGS_TEXT = len(CLASSES) + 2  # + the flags byte; + 256: null
_CONSTANT_BYTES = [text.encode("ascii") for text in _CONSTANT]
_CONSTANT_ENDS = np.cumsum([len(text) for text in _CONSTANT_BYTES], dtype=np.int64)


def preview(payload: bytes, limit: int = PREVIEW_BYTES) -> str:
    """The first `limit` bytes as text: printable ASCII (space to ~) as it is, any other byte
    (control characters, tabs, newlines, bytes >= 0x7f) as '.'; one character per byte."""
    return payload[:limit].translate(_PRINTABLE).decode("ascii")


class TimeText:
    """ISO 8601 local time with microseconds and the UTC offset, e.g.
    2024-05-01T14:03:07.123456+02:00; the text of each second is worked out once."""

    def __init__(self) -> None:
        self._seconds: dict[int, str] = {}

    def __call__(self, ts_ns: int) -> str:
        second, micro = divmod(ts_ns // 1000, 1_000_000)
        text = self.second(second)
        return f"{text[:DATE_CHARS]}.{micro:06d}{text[DATE_CHARS:]}"

    def second(self, second: int) -> str:
        """'2024-05-01T14:03:07+02:00' for a second since the epoch."""
        text = self._seconds.get(second)
        if text is None:
            if len(self._seconds) > 4096:
                self._seconds.clear()
            text = datetime.fromtimestamp(second).astimezone().isoformat(timespec="seconds")
            self._seconds[second] = text
        return text


@dataclass(frozen=True)
class Lines:
    """Whole lines as one block of bytes: line i is data[ends[i - 1]:ends[i]] (ends[-1] is
    len(data)). Cut only at line ends, so no consumer can tear a line."""

    data: bytes
    ends: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.ends)

    @classmethod
    def of(cls, texts: list[str]) -> Lines:
        encoded = [text.encode("utf-8") for text in texts]
        ends = np.cumsum([len(line) for line in encoded], dtype=np.int64)
        return cls(b"".join(encoded), ends.astype(np.int64, copy=False))

    def size_of_first(self, count: int) -> int:
        return int(self.ends[count - 1]) if count > 0 else 0

    def after(self, count: int) -> Lines:
        """The lines after the first `count`."""
        cut = self.size_of_first(count)
        return Lines(self.data[cut:], self.ends[count:] - cut)

    def texts(self) -> list[str]:
        return self.data.decode("utf-8").splitlines(keepends=True)


@dataclass(frozen=True)
class LineColumns:
    """A batch ready to render: its texts (`text`, entry i ending at text_ends[i]), the
    packets' int64 columns (COLUMNS, one row each) and the frames' bytes the payload columns
    point into."""

    text: bytes
    text_ends: np.ndarray
    columns: np.ndarray
    frames: np.ndarray  # uint8

    def parts(self, count: int) -> list[LineColumns]:
        """The packets in `count` consecutive parts (fewer for a small batch), to render on
        as many threads; texts and frames are shared."""
        n = len(self.columns)
        count = max(1, min(count, n // 1024))
        cuts = [n * k // count for k in range(count + 1)]
        return [LineColumns(self.text, self.text_ends, self.columns[a:b], self.frames)
                for a, b in zip(cuts, cuts[1:], strict=False)]


class LineFormatter:
    """CountedPackets -> Lines. Remembers the texts of seconds and addresses across batches."""

    def __init__(self, with_payload: bool, compiled: bool = USE_COMPILED) -> None:
        self.with_payload = with_payload
        self.compiled = compiled
        self.time_text = TimeText()
        self.address = AddressText()

    def lines(self, packets: CountedPackets) -> Lines:
        return self.render(self.columns(packets))

    def render(self, prepared: LineColumns) -> Lines:
        """The lines; the C renderer runs without the GIL."""
        return (render(prepared, self.with_payload) if self.compiled
                else render_python(prepared, self.with_payload))

    def columns(self, packets: CountedPackets) -> LineColumns:
        """The batch's columns and texts (numpy; the packets need their frames)."""
        frames = packets.frames
        if frames is None:
            raise ValueError("the packet log needs the packets' frames")
        n = len(packets)
        texts: list[bytes] = list(_CONSTANT_BYTES)
        cols = np.empty((n, len(COLUMNS)), dtype=np.int64)

        micro = frames.ts_ns // 1000
        seconds, cols[:, MICRO] = np.divmod(micro, 1_000_000)
        unique_seconds, which = np.unique(seconds, return_inverse=True)
        cols[:, TS] = len(texts) + which.reshape(-1)
        texts += [self.time_text.second(s).encode("ascii") for s in unique_seconds.tolist()]

        is6 = np.concatenate([packets.is6, packets.is6]).astype(bool)
        hi = np.concatenate([packets.src_hi, packets.dst_hi])
        lo = np.concatenate([packets.src_lo, packets.dst_lo])
        chosen, which = distinct(is6, hi, lo)
        which += len(texts)
        texts += [text.encode("ascii")
                  for text in self.address(is6[chosen], hi[chosen], lo[chosen])]
        cols[:, SRC], cols[:, DST] = which[:n], which[n:]
        inbound = packets.inbound.astype(bool)
        cols[:, CLIENT] = np.where(inbound, cols[:, SRC], cols[:, DST])
        cols[:, DIRECTION] = np.where(inbound, _IN_TEXT, _OUT_TEXT)

        cols[:, SPORT], cols[:, DPORT] = packets.sport, packets.dport
        cols[:, PROTO], cols[:, CLASS] = packets.proto, packets.protocol_class
        cols[:, IP_BYTES] = packets.ip_bytes

        payload_at, payload_len, flags = payload_spans(frames)
        cols[:, FLAGS] = _FLAGS_TEXT + np.where(flags < 0, 256, flags)
        known = payload_at >= 0
        captured = np.where(known, np.clip(frames.lengths - payload_at, 0, payload_len), 0)
        cols[:, PAYLOAD_LEN] = np.where(known, payload_len, -1)
        cols[:, PAYLOAD_AT] = frames.starts + np.where(known, payload_at, 0)
        cols[:, PAYLOAD_SIZE] = captured
        cols[:, TRUNCATED] = np.where(known, captured < payload_len, 2)

        own = np.cumsum([len(text) for text in texts[len(_CONSTANT_BYTES):]], dtype=np.int64)
        ends = np.concatenate([_CONSTANT_ENDS, _CONSTANT_ENDS[-1] + own])
        return LineColumns(b"".join(texts), ends, cols, frames.data)


def distinct(*keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of equal-length key columns: (the index of one row of each, and each
    row's number among them, int64). np.unique with axis=0 or on a structured array sorts
    whole rows and is 50 times slower than this lexsort."""
    n = len(keys[0])
    order = np.lexsort(keys[::-1])  # the first key sorts first
    first = np.ones(n, dtype=bool)
    for key in keys:
        ordered = key[order]
        first[1:] &= ordered[1:] == ordered[:-1]
    first[1:] = ~first[1:]
    which = np.empty(n, dtype=np.int64)
    which[order] = np.cumsum(first) - 1
    return order[first], which


def render(prepared: LineColumns, with_payload: bool) -> Lines:
    """The lines, laid out in C."""
    ends = np.empty(len(prepared.columns), dtype=np.int64)
    data = _compiled_render(prepared.text, prepared.text_ends,
                             np.ascontiguousarray(prepared.columns, dtype=np.int64),
                             prepared.frames, with_payload, ends)
    return Lines(data, ends)


def render_python(prepared: LineColumns, with_payload: bool) -> Lines:
    """The lines, laid out in Python: the same bytes as `render`, for machines where the C
    renderer could not be built."""
    starts = np.concatenate([[0], prepared.text_ends[:-1]]).tolist()
    table = [prepared.text[a:b].decode("ascii")
             for a, b in zip(starts, prepared.text_ends.tolist(), strict=True)]
    frames, md5 = prepared.frames.tobytes(), hashlib.md5
    out = []
    for (ts, micro, src, dst, sport, dport, proto, protocol_class, direction, client,
         ip_bytes, flags, length, at, size, cut) in prepared.columns.tolist():
        stamp = table[ts]
        if size:
            payload = frames[at:at + size]
            digest = f'"{md5(payload).hexdigest()}"'
            shown = encode_basestring_ascii(preview(payload))
            payload_text = f'"{payload.hex()}"' if with_payload else "null"
        else:
            digest = "null"
            shown = '""' if length >= 0 else "null"
            payload_text = '""' if with_payload and length >= 0 else "null"
        out.append(
            f'{{"ts":"{stamp[:DATE_CHARS]}.{micro:06d}{stamp[DATE_CHARS:]}",'
            f'"src":"{table[src]}","dst":"{table[dst]}",'
            f'"sport":{_count(sport)},"dport":{_count(dport)},"proto":{proto},'
            f'"class":{table[protocol_class]},"direction":{table[direction]},'
            f'"client":"{table[client]}","ip_bytes":{ip_bytes},'
            f'"tcp_flags":{table[flags]},"payload_len":{_count(length)},'
            f'"md5":{digest},"preview":{shown},"truncated":{_TRUTH[cut]},'
            f'"payload_hex":{payload_text}}}\n')
    return Lines.of(out)


_TRUTH = ("false", "true", "null")


def _count(value: int) -> str:
    return "null" if value < 0 else str(value)


__all__ = ["COMPILED", "KEYS", "LineFormatter", "Lines", "TimeText", "distinct", "preview"]
