"""--read: capture files as a Source, beside the live ones (live_linux.py, live_pcap.py): one
file, or several merged by time as one capture on several interfaces, optionally through a
--filter applied by tcpdump first."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from traffic_capture.errors import UsageError
from traffic_capture.frames import Batch
from traffic_capture.sources.bpf import check_filter
from traffic_capture.sources.capture_file import (
    merged_batches,
    open_capture_files,
    read_position,
    total_size,
)
from traffic_capture.sources.prefilter import prefilter
from traffic_capture.sources.stream import STDIN


class FileSource:
    """The packets of capture files, in time order. Opening checks every file first, so a bad
    one is reported before any is read; a --filter is checked, then applied to copies."""

    live = False

    def __init__(self, paths: list[Path], bpf_filter: str | None = None) -> None:
        self.description = ", ".join(map(str, paths))
        if paths.count(STDIN) > 1:
            raise UsageError("--read - (standard input) can be given once")
        if bpf_filter and STDIN in paths:
            raise UsageError("--filter does not apply to --read - (standard input): filter in "
                             "the command that writes it, e.g. tcpdump -w - 'not port 22'")
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._cut_short: set[Path] = set()
        if not bpf_filter:
            self.files = open_capture_files(paths)
            return
        from traffic_capture.linktypes import DLT_EN10MB

        check_filter(bpf_filter, DLT_EN10MB)
        self._folder = tempfile.TemporaryDirectory(prefix="traffic-capture-")
        try:
            filtered = []
            for path in paths:
                copy, truncated = prefilter(path, bpf_filter, Path(self._folder.name))
                filtered.append(copy)
                if truncated:
                    self._cut_short.add(path)
            self.files = open_capture_files(filtered, shown_as=paths)
        except BaseException:
            self.close()
            raise

    def batches(self, stop: threading.Event) -> Iterator[Batch | None]:
        for batch in merged_batches(self.files):
            yield batch
            if stop.is_set():
                return

    def kernel_drops(self) -> None:
        return None

    def progress(self) -> tuple[int, int] | None:
        """None for a stream (standard input, a named pipe): its size is not known."""
        if any(capture.is_stream for capture in self.files):
            return None
        return read_position(self.files), total_size(self.files)

    def close(self) -> None:
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def warnings(self) -> list[str]:
        said = []
        for capture in self.files:
            if capture.bad_timestamps:
                many = capture.bad_timestamps
                said.append(f"{capture.shown_as}: {many:,} "
                            f"{'packet has' if many == 1 else 'packets have'} a "
                            "damaged timestamp (its fraction of a second is a second or more): "
                            "counted in the window of their whole seconds")
            if capture.damaged:
                said.append(f"{capture.shown_as} is damaged ({capture.damaged}): counted every "
                            "packet before the damage, nothing after it")
            elif capture.truncated or capture.shown_as in self._cut_short:
                why = capture.compression_damage
                said.append(f"{capture.shown_as} ends in the middle of a packet "
                            + (f"where {why}" if why else "(a capture that was killed?)")
                            + ": counted every complete packet before the cut")
            elif capture.compression_damage:
                said.append(f"{capture.shown_as}: {capture.compression_damage}, after its "
                            "last packet: every packet in it was read and counted")
        return said
