"""The packet log's compiled pieces against their Python twins: the line renderer
(_log_lines.c vs render_python), its MD5 (vs hashlib) and the frame copy (_gather.c vs
python_gather), on random inputs and on the packets of a real capture."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import SAMPLE
from tests.frames import counted_batches
from traffic_capture import frames as frames_module
from traffic_capture.sinks import log_lines
from traffic_capture.sinks.log_lines import (
    COLUMNS,
    KEYS,
    LineColumns,
    LineFormatter,
    Lines,
    distinct,
    render,
    render_python,
)

(TS, MICRO, SRC, DST, SPORT, DPORT, PROTO, CLASS, DIRECTION, CLIENT, IP_BYTES, FLAGS,
 PAYLOAD_LEN, PAYLOAD_AT, PAYLOAD_SIZE, TRUNCATED) = range(len(COLUMNS))
assert COLUMNS[PAYLOAD_SIZE] == "payload_size"


def test_the_compiled_pieces_were_built() -> None:
    """CI machines have a C compiler: the fast paths must be the ones tested and measured."""
    assert log_lines.COMPILED, "traffic_capture/sinks/_log_lines.c was not compiled"
    assert frames_module.COMPILED_GATHER, "traffic_capture/_gather.c was not compiled"


compiled_only = pytest.mark.skipif(not log_lines.COMPILED, reason="no C renderer here")


@compiled_only
def test_the_md5_is_hashlibs_at_every_length_over_three_blocks() -> None:
    """Every way the last block can be padded (55, 56, 63, 64... bytes)."""
    from traffic_capture.sinks._log_lines import md5

    for size in range(200):
        data = bytes((i * 37 + size) % 256 for i in range(size))
        assert md5(data) == hashlib.md5(data).hexdigest(), size


@compiled_only
@given(st.binary(max_size=3000))
def test_the_md5_is_hashlibs_on_any_bytes(data: bytes) -> None:
    from traffic_capture.sinks._log_lines import md5

    assert md5(data) == hashlib.md5(data).hexdigest()


TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)


@st.composite
def prepared_batches(draw: st.DrawFn) -> LineColumns:
    """A batch as LineFormatter.columns makes it: a table of texts (times of at least 19
    characters), frames' bytes, and columns whose indexes and spans lie inside them."""
    times = draw(st.lists(st.from_regex(r"[0-9T:\-]{19}([+-][0-9]{2}:[0-9]{2}|Z)?",
                                        fullmatch=True), min_size=1, max_size=3))
    others = draw(st.lists(TEXT, min_size=1, max_size=8))
    texts = [t.encode("ascii") for t in times + others]
    data = draw(st.binary(max_size=600))
    n = draw(st.integers(0, 12))
    rows = []
    for _ in range(n):
        at = draw(st.integers(0, len(data)))
        size = draw(st.integers(0, len(data) - at))
        length = draw(st.one_of(st.just(-1), st.integers(size, size + 2000)))
        if length < 0:
            size = 0
        row = [draw(st.integers(0, len(times) - 1)), draw(st.integers(0, 999_999))]
        row += [draw(st.integers(len(times), len(texts) - 1)) for _ in (SRC, DST)]
        row += [draw(st.integers(-1, 65535)) for _ in (SPORT, DPORT)]
        row += [draw(st.integers(-1, 255))]
        row += [draw(st.integers(0, len(texts) - 1)) for _ in (CLASS, DIRECTION, CLIENT)]
        row += [draw(st.integers(0, 2**40)), draw(st.integers(0, len(texts) - 1))]
        row += [length, at, size, draw(st.integers(0, 2))]
        rows.append(row)
    columns = np.array(rows, dtype=np.int64).reshape(n, len(COLUMNS))
    ends = np.cumsum([len(t) for t in texts], dtype=np.int64)
    return LineColumns(b"".join(texts), ends, columns, np.frombuffer(data, dtype=np.uint8))


@compiled_only
@settings(max_examples=300, deadline=None)
@given(prepared_batches(), st.booleans())
def test_the_c_renderer_gives_the_python_renderers_bytes(prepared: LineColumns,
                                                         with_payload: bool) -> None:
    compiled, python = render(prepared, with_payload), render_python(prepared, with_payload)
    assert compiled.data == python.data
    assert compiled.ends.tolist() == python.ends.tolist()
    assert len(compiled.texts()) == len(prepared.columns)


@compiled_only
@settings(max_examples=300, deadline=None)
@given(prepared_batches(), st.integers(0, len(COLUMNS) - 1), st.sampled_from(
    [-2**63, -5, 10**6, 2**40, 2**63 - 1]))
def test_a_column_out_of_range_is_a_value_error_never_a_crash(prepared: LineColumns,
                                                                column: int, value: int) -> None:
    """Columns are our own, but a renderer that trusts them could read outside its buffers;
    every index and span is checked before a byte is written."""
    if not len(prepared.columns):
        return
    prepared.columns[0, column] = value
    at, size = prepared.columns[0, PAYLOAD_AT], prepared.columns[0, PAYLOAD_SIZE]
    frames = len(prepared.frames)
    # The values drawn are outside every table, and no time has 10**6 microseconds; a span
    # is read only when its size is not 0.
    valid = (column in (SPORT, DPORT, PROTO, IP_BYTES, PAYLOAD_LEN, TRUNCATED)
             or (column in (PAYLOAD_AT, PAYLOAD_SIZE)
                 and (size == 0 or (size > 0 and at >= 0 and size <= frames - at))))
    if valid:
        render(prepared, True)  # may be odd, never refused
        return
    with pytest.raises(ValueError, match="out of range"):
        render(prepared, True)


@pytest.mark.parametrize("limit", [None, 60])
@pytest.mark.parametrize("with_payload", [False, True])
def test_real_packets_give_the_same_lines_either_way(limit: int | None,
                                                     with_payload: bool) -> None:
    """The sample capture (real traffic, written by tcpdump; the last case cut to 60 bytes),
    through both renderers: the same bytes, and every line JSON with the stable keys."""
    batches = counted_batches(SAMPLE, ["192.0.2.1", "2001:db8::1"], limit)
    assert sum(len(b) for b in batches) > 100
    compiled = LineFormatter(with_payload)
    python = LineFormatter(with_payload, compiled=False)
    for batch in batches:
        lines = python.lines(batch)
        if log_lines.COMPILED:
            assert compiled.lines(batch).data == lines.data
        texts = lines.texts()
        assert len(texts) == len(batch)
        for text in texts:
            assert list(json.loads(text)) == list(KEYS)


def test_lines_cut_only_at_line_ends() -> None:
    lines = Lines.of(["a\n", "bb\n", "ccc\n"])
    assert lines.ends.tolist() == [2, 5, 9] and len(lines) == 3
    rest = lines.after(1)
    assert rest.data == b"bb\nccc\n" and rest.ends.tolist() == [3, 7]
    assert rest.texts() == ["bb\n", "ccc\n"]
    assert len(lines.after(3)) == 0 and lines.after(3).data == b""


@st.composite
def spans(draw: st.DrawFn) -> tuple[bytes, np.ndarray, np.ndarray]:
    source = draw(st.binary(min_size=1, max_size=400))
    n = draw(st.integers(0, 20))
    starts = [draw(st.integers(0, len(source))) for _ in range(n)]
    lengths = [draw(st.integers(0, len(source) - s)) for s in starts]
    return source, np.array(starts, dtype=np.int64), np.array(lengths, dtype=np.int64)


@pytest.mark.skipif(not frames_module.COMPILED_GATHER, reason="no C gather here")
@given(spans())
def test_the_compiled_gather_copies_what_python_gather_copies(
        case: tuple[bytes, np.ndarray, np.ndarray]) -> None:
    source, starts, lengths = case
    data = np.frombuffer(source, dtype=np.uint8)
    target_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) \
        if len(lengths) else np.zeros(0, dtype=np.int64)
    size = int(lengths.sum()) + 1
    results = []
    for copy in (frames_module._compiled_gather, frames_module.python_gather):
        assert copy is not None
        target = np.full(size, 0xAA, dtype=np.uint8)
        copy(data, starts, lengths, target, target_starts)
        results.append(target.tobytes())
    assert results[0] == results[1]
    if len(starts):
        compiled = frames_module._compiled_gather
        assert compiled is not None
        with pytest.raises(ValueError, match="outside"):
            compiled(data, starts, lengths + len(source) + 1, np.zeros(size, dtype=np.uint8),
                     target_starts)


@given(st.lists(st.tuples(st.integers(0, 3), st.booleans(), st.integers(0, 2**64 - 1)),
                min_size=1, max_size=60))
def test_distinct_rows_are_numpys_unique_rows(rows: list[tuple[int, bool, int]]) -> None:
    keys = (np.array([r[0] for r in rows], dtype=np.int64),
            np.array([r[1] for r in rows], dtype=bool),
            np.array([r[2] for r in rows], dtype=np.uint64))
    chosen, which = distinct(*keys)
    picked = [tuple(int(k[i]) for k in keys) for i in chosen.tolist()]
    assert len(set(picked)) == len(picked) == len(set(rows))
    for i, row in enumerate(rows):  # each row's number leads to a row equal to it
        assert picked[which[i]] == (row[0], int(row[1]), row[2])


@compiled_only
def test_line_ends_that_share_memory_with_the_columns_cannot_move_a_checked_span() -> None:
    """Line 0's end lands in row 1's payload size: the renderer must use the values it
    checked (its own copy), not what the shared memory holds by then."""
    from traffic_capture.sinks._log_lines import render as c_render

    text = b"2024-05-01T14:03:07+02:00" + b"x" * 100_000
    ends = np.array([25, len(text)], dtype=np.int64)
    cols = np.zeros((2, len(COLUMNS)), dtype=np.int64)
    cols[0, [SRC, DST, CLIENT]] = 1  # a long text: line 0 ends past 100,000
    cols[:, PAYLOAD_LEN] = -1
    expected = render(LineColumns(text, ends, cols.copy(), np.zeros(16, np.uint8)), False)
    shared = cols.reshape(-1)[len(COLUMNS) + PAYLOAD_SIZE:]
    data = c_render(text, ends, cols, np.zeros(16, np.uint8), False, shared)
    assert data == expected.data
    assert shared[0] == expected.ends[0]


@pytest.mark.skipif(not frames_module.COMPILED_GATHER, reason="no C gather here")
def test_a_gather_target_that_shares_memory_with_the_spans_cannot_move_a_checked_span() -> None:
    source = np.zeros(64, np.uint8)
    source[:8] = np.frombuffer(np.int64(1 << 40).tobytes(), np.uint8)
    starts = np.array([0, 0], np.int64)
    target = starts.view(np.uint8)  # span 0 writes 2**40 over starts[1]
    assert frames_module._compiled_gather is not None
    frames_module._compiled_gather(source, starts, np.array([8, 8], np.int64), target,
                                   np.array([8, 0], np.int64))
    assert starts.tolist() == [1 << 40, 1 << 40]  # both spans copied from offset 0
