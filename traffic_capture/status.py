"""What the user sees: one-line messages, and the status drawn from one Snapshot (the
pipeline's counters, the source's kernel drops and progress, each sink's figures).

On a terminal the status is a tqdm line refreshed twice a second (messages go through
tqdm.write so they never tear it; tqdm is imported only then). Anywhere else (a service's
journal, a log file) it is one plain, timestamped line every --status-interval seconds, so
a daemon that runs for weeks writes a few lines an hour, not a redrawn line five times a
second. The capture loop only bumps integers.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from traffic_capture.errors import PROG
from traffic_capture.pipeline import Counters
from traffic_capture.rules import DEFAULT_STATUS_INTERVAL
from traffic_capture.sinks import SinkFigures

if TYPE_CHECKING:
    from tqdm import tqdm

REFRESH_SECONDS = 0.5


class Snapshot(NamedTuple):
    counters: Counters
    kernel_drops: int | None  # None: not a live capture
    sinks: list[SinkFigures]
    progress: tuple[int, int] | None  # (bytes read, bytes in all) of capture files


def describe(snapshot: Snapshot) -> str:
    """The status line's text."""
    c = snapshot.counters
    packets = f"packets {c.packets_seen:,} seen, {c.packets_counted:,} counted"
    if c.packets_malformed:
        packets += f", {c.packets_malformed:,} malformed"
    parts = [packets, f"windows {c.windows_closed:,}"]
    for sink in snapshot.sinks:
        text = f"{sink.status_label} {sink.written:,} written, {sink.pending:,} pending"
        if sink.dropped:
            text += f", {sink.dropped:,} dropped"
        if sink.failed:
            text += ", stopped"
        parts.append(text)
    if snapshot.kernel_drops is not None:
        parts.append(f"kernel drops {snapshot.kernel_drops:,}")
    return " | ".join(parts)


class Reporter:
    def __init__(self, quiet: bool, status_interval: float = DEFAULT_STATUS_INTERVAL,
                 terminal: bool | None = None) -> None:
        self.quiet = quiet
        self.status_interval = status_interval  # off a terminal; 0: no status lines
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
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
        """Live: a status line. Files: a progress bar by bytes read, the status as its postfix.
        Off a terminal: a plain line every status_interval seconds."""
        if self.quiet:
            return
        if not self.terminal:
            if self.status_interval > 0:
                self._thread = threading.Thread(target=self._plain_lines, args=(snapshot,),
                                                name="status", daemon=True)
                self._thread.start()
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

    def _plain_lines(self, snapshot: Callable[[], Snapshot]) -> None:
        while not self._stopped.wait(self.status_interval):
            self._plain(snapshot())

    def _plain(self, snapshot: Snapshot) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self._write(f"{PROG}: status {stamp}: {describe(snapshot)}")

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
        if not self.quiet and not self.terminal and self.status_interval > 0:
            self._plain(snapshot())
        if self._bar is not None:
            self._update(snapshot())
            self._bar.close()
            self._bar = None
