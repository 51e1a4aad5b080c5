"""Coverage-guided fuzz targets (atheris) for the header parser and the capture-file readers.

    .venv/bin/python tests/fuzz_targets.py parser -max_total_time=600
    .venv/bin/python tests/fuzz_targets.py reader CORPUS_DIR -max_total_time=3600

`parser`: the bytes become frames of a link type the fuzzer picks; the batch parser must never
raise and must agree with the frame-by-frame one. `reader`: the bytes are a capture file (pcap,
pcapng, gzip); reading and counting it must end in rows, or in one clear TrafficCaptureError.
tests/test_fuzz_atheris.py runs both for a bounded number of inputs in CI.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from pathlib import Path

import atheris
import numpy as np  # noqa: F401 - imported before instrumentation: only our code is traced

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
_FILE = Path(tempfile.mkdtemp(prefix="traffic-fuzz-")) / "input"


def parser(data: bytes) -> None:
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
    _FILE.write_bytes(data)
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
    try:
        atheris.Fuzz()
    finally:
        _FILE.unlink(missing_ok=True)
        os.rmdir(_FILE.parent)


if __name__ == "__main__":
    main()
