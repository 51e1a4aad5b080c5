"""What the user sees on the terminal: one-line messages and the tqdm status line.

The status line is drawn from one Snapshot (the pipeline's counters, the source's kernel drops
and progress, each sink's figures), taken by a thread twice a second; the capture loop only
bumps integers. Messages go through tqdm.write while the line is up, so they never tear it;
tqdm itself is imported only then (--quiet runs start faster).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from traffic_capture.errors import PROG
from traffic_capture.pipeline import Counters
from traffic_capture.sinks import SinkFigures

if TYPE_CHECKING:
    from tqdm import tqdm

REFRESH_SECONDS = 0.5


@dataclass(frozen=True)
class Snapshot:
    counters: Counters
    kernel_drops: int | None  # None: not a live capture
    sinks: list[SinkFigures]
    progress: tuple[int, int] | None  # (bytes read, bytes in all) of capture files


def describe(snapshot: Snapshot) -> str:
    """The status line's text."""
    c = snapshot.counters
    parts = [f"packets {c.packets_seen:,} seen, {c.packets_counted:,} counted",
             f"windows {c.windows_closed:,}"]
    for sink in snapshot.sinks:
        label = sink.unit if sink.name == "csv" else f"{sink.name} {sink.unit}"
        text = f"{label} {sink.written:,} written, {sink.pending:,} pending"
        if sink.dropped:
            text += f", {sink.dropped:,} dropped"
        if sink.failed:
            text += ", stopped"
        parts.append(text)
    if snapshot.kernel_drops is not None:
        parts.append(f"kernel drops {snapshot.kernel_drops:,}")
    return " | ".join(parts)


class Reporter:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._bar: tqdm | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def info(self, message: str) -> None:
        if not self.quiet:
            self._write(f"{PROG}: {message}")

    def warn(self, message: str) -> None:
        self._write(f"{PROG}: warning: {message}")

    def _write(self, line: str) -> None:
        """Through tqdm while the status line is up, so that it is not torn."""
        bar = self._bar  # once: other threads warn while the capture stops
        if bar is not None:
            bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def start(self, snapshot: Callable[[], Snapshot], with_progress: bool) -> None:
        """Live: a status line. Files: a progress bar by bytes read, the status as its postfix."""
        if self.quiet:
            return
        from tqdm import tqdm

        first = snapshot()
        if with_progress and first.progress is not None:
            self._bar = tqdm(total=first.progress[1], unit="B", unit_scale=True,
                             unit_divisor=1024, file=sys.stderr, leave=True, dynamic_ncols=True)
        else:
            self._bar = tqdm(total=None, bar_format="{desc}", file=sys.stderr, leave=True)

        def refresh() -> None:
            while not self._stopped.wait(REFRESH_SECONDS):
                self._update(snapshot())

        self._thread = threading.Thread(target=refresh, name="status", daemon=True)
        self._thread.start()

    def _update(self, snapshot: Snapshot) -> None:
        bar = self._bar
        if bar is None:
            return
        if bar.total is None:
            bar.set_description_str(describe(snapshot), refresh=True)
        else:
            if snapshot.progress is not None:
                bar.n = min(snapshot.progress[0], bar.total)
            bar.set_postfix_str(describe(snapshot), refresh=True)

    def stop(self, snapshot: Callable[[], Snapshot]) -> None:
        """The last refresh, with the final figures, then the line is left as it is."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
        if self._bar is not None:
            self._update(snapshot())
            self._bar.close()
            self._bar = None
