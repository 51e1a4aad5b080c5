"""What the user sees on the terminal: one-line messages and the tqdm status line.

Messages go through tqdm.write while the status line is up, so they never tear it; tqdm itself
is imported only then (--quiet runs start faster). A thread refreshes the line twice a second;
the capture loop only bumps integers.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tqdm import tqdm

PROG = "traffic-capture"
REFRESH_SECONDS = 0.5


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

    def start(self, describe: Callable[[], str], total_bytes: int | None = None,
              position: Callable[[], int] | None = None) -> None:
        """Live: a status line. Files: a progress bar by bytes read, the status as its postfix."""
        if self.quiet:
            return
        from tqdm import tqdm

        if total_bytes is None:
            self._bar = tqdm(total=None, bar_format="{desc}", file=sys.stderr, leave=True)
        else:
            self._bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024,
                             file=sys.stderr, leave=True, dynamic_ncols=True)

        def refresh() -> None:
            while not self._stopped.wait(REFRESH_SECONDS):
                self._update(describe, position)

        self._thread = threading.Thread(target=refresh, name="status", daemon=True)
        self._thread.start()

    def _update(self, describe: Callable[[], str], position: Callable[[], int] | None) -> None:
        bar = self._bar
        if bar is None:
            return
        if position is None:
            bar.set_description_str(describe(), refresh=True)
        else:
            bar.n = min(position(), bar.total or 0)
            bar.set_postfix_str(describe(), refresh=True)

    def stop(self, describe: Callable[[], str], position: Callable[[], int] | None = None) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
        if self._bar is not None:
            self._update(describe, position)
            self._bar.close()
            self._bar = None

