"""`serve --history PATH` without a CSV: the web's memory follows the history's finest windows
(as `csv_follow` follows a CSV), so that the event stream, and with it the page's live spans,
work as over a CSV: the last --web-history seconds at start, then each flush's new windows.

Rows a flush adds to a window already taken (late packets) reach the answers over the history,
not the memory. Pure but for the Reader it asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from traffic_capture.queries import EVERYTHING_S, Reader, TimeRange


@dataclass(frozen=True)
class HeldWindow:
    """A window as the memory takes it (MemoryStore.add_window's arguments)."""

    start_s: int
    end_s: int
    clients: Sequence[str]
    inbound: np.ndarray
    counts: np.ndarray


class HistoryFollower:
    """The history's windows of `window_seconds` (the memory's length) not taken yet."""

    def __init__(self, history: Reader, window_seconds: int) -> None:
        self.history = history
        self.window_seconds = window_seconds
        self.taken_to: int | None = None  # the end of the newest window taken

    def poll(self, history_seconds: int) -> list[HeldWindow]:
        """The windows after those taken; the first time, those of the last
        `history_seconds` before the newest."""
        held = next((step for step in self.history.resolutions()
                     if step.seconds == self.window_seconds), None)
        if held is None or held.last_end_s is None:
            return []
        since = held.last_end_s - history_seconds if self.taken_to is None else self.taken_to
        if held.last_end_s <= since:
            return []
        rows = self.history.window_rows(TimeRange(since, EVERYTHING_S), self.window_seconds)
        bounds = rows.row_bounds.tolist()
        found = [HeldWindow(start, end, rows.clients[bounds[i]:bounds[i + 1]],
                            rows.inbound[bounds[i]:bounds[i + 1]],
                            rows.counts[bounds[i]:bounds[i + 1]])
                 for i, (start, end) in enumerate(zip(rows.starts.tolist(), rows.ends.tolist(),
                                                      strict=True))
                 if start >= since]
        if found:
            self.taken_to = max(window.end_s for window in found)
        return found
