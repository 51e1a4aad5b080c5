"""Coverage-guided fuzz targets (atheris) for the header parser and the capture-file readers.

    .venv/bin/python tests/fuzz_targets.py parser -max_total_time=600
    .venv/bin/python tests/fuzz_targets.py reader CORPUS_DIR -max_total_time=3600

`parser`: the bytes become frames of a link type the fuzzer picks; the batch parser must never
raise and must agree with the frame-by-frame one. `reader`: the bytes are a capture file (pcap,
pcapng, gzip); reading and counting it must end in rows, or in one clear TrafficCaptureError.
tests/test_fuzz_atheris.py runs both for a bounded number of inputs in CI.
"""

from __future__ import annotations

import operator
import sys
import tempfile
import threading
from pathlib import Path

import atheris
import numpy as np  # noqa: F401 - imported before instrumentation: only our code is traced
from atheris.version_dependent import CMP_OP_SHIFT_AMOUNT

with atheris.instrument_imports():
    from traffic_capture.addresses import join_address
    from traffic_capture.errors import TrafficCaptureError
    from traffic_capture.frames import batch_of_frames
    from traffic_capture.linktypes import LINK_TYPES
    from traffic_capture.parse import parse_batch, parse_frame
    from traffic_capture.pipeline import Pipeline
    from traffic_capture.servers import ServerSet, parse_server
    from traffic_capture.sources.offline import FileSource

SERVERS = ServerSet([parse_server("192.0.2.1"), parse_server("2001:db8::1")])
LINKS = sorted(LINK_TYPES)
# The reader's input file: unlinked at once, read through /proc/self/fd. libFuzzer ends the
# process from C (a `finally` never runs), and the kernel frees an unlinked file however the
# process ends: no traffic-fuzz-* file or folder is left in the temp folder.
_INPUT = tempfile.TemporaryFile(prefix="traffic-fuzz-")  # noqa: SIM115 - lives as long as we do
_FILE = Path(f"/proc/self/fd/{_INPUT.fileno()}")

# atheris replaces each `a OP b` of the instrumented modules with `atheris._trace_cmp(a, b, OP,
# ...)`, whose native code (atheris 3.0.0 and earlier) returns the comparison's result with one
# reference too many (a new reference returned as a pybind11 handle, which pybind11 increments
# again): a result that is a new object is never freed. The product's numpy code compares whole
# arrays (`version == 4` gives a new boolean array), so every input leaked its arrays: 2.6 KB
# per parser input, 15-20 KB per reader input, until libFuzzer's -rss_limit_mb (2 GB) stopped
# the run. The native tracer reports only int/int, bytes/bytes and str/str comparisons to
# libFuzzer, and their results are the True/False singletons (an extra reference frees
# nothing): those still go through it; any other comparison is done here, with the same
# result, and nothing is kept.
_COMPARE = (operator.lt, operator.le, operator.eq, operator.ne, operator.gt, operator.ge)
_native_trace_cmp = atheris._trace_cmp


def _trace_cmp(left: object, right: object, op: int, idx: int, left_is_const: bool) -> object:
    if (isinstance(left, int) and isinstance(right, int)
            or isinstance(left, bytes) and isinstance(right, bytes)
            or isinstance(left, str) and isinstance(right, str)):
        return _native_trace_cmp(left, right, op, idx, left_is_const)
    return _COMPARE[op >> CMP_OP_SHIFT_AMOUNT](left, right)


def _untraced_array_compares() -> None:
    """Put _trace_cmp in atheris's place. atheris.Fuzz() installs its fuzzing-time tracer
    before the first input, so this is done from the targets."""
    global _native_trace_cmp
    if atheris._trace_cmp is not _trace_cmp:
        _native_trace_cmp = atheris._trace_cmp
        atheris._trace_cmp = _trace_cmp


def parser(data: bytes) -> None:
    _untraced_array_compares()
    given = atheris.FuzzedDataProvider(data)
    linktype = LINKS[given.ConsumeIntInRange(0, len(LINKS) - 1)]
    frames = [given.ConsumeBytes(given.ConsumeIntInRange(0, 120))
              for _ in range(given.ConsumeIntInRange(1, 8))]
    parsed = parse_batch(batch_of_frames([(0, linktype, frame) for frame in frames]))
    for i, frame in enumerate(frames):
        fields = parse_frame(linktype, frame)
        assert bool(parsed.is_ip[i]) == (fields is not None), (linktype, frame)
        if fields is not None:
            is6 = bool(parsed.is6[i])
            src = join_address(is6, int(parsed.src_hi[i]), int(parsed.src_lo[i]))
            assert src == fields[0] and int(parsed.ip_bytes[i]) == fields[5], (linktype, frame)


def reader(data: bytes) -> None:
    _untraced_array_compares()
    _INPUT.seek(0)
    _INPUT.truncate()
    _INPUT.write(data)
    _INPUT.flush()
    pipeline = Pipeline(SERVERS, 5, lambda window: None)
    try:
        source = FileSource([_FILE])
        for batch in source.batches(threading.Event()):
            assert batch is not None
            pipeline.feed_batch(batch)
        pipeline.finish()
        source.warnings()
    except TrafficCaptureError as error:
        assert "\n" not in str(error)


def main() -> None:
    targets = {"parser": parser, "reader": reader}
    if len(sys.argv) < 2 or sys.argv[1] not in targets:
        sys.exit(f"usage: {sys.argv[0]} parser|reader [libFuzzer options, corpus dirs]")
    target = targets[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
