"""A writer of a history in a process of its own, for the tests that read while it writes
and kill it: `python tests/history_child.py PATH FIRST_WINDOW WINDOWS [flush-every]`.

Window w holds known rows (history_rows(w)), so a reader can tell exactly which windows it
sees; after each flush the child prints `flushed N` (windows written so far, in all).
"""

from __future__ import annotations

import sys

import numpy as np

START = 1_780_000_000 // 86400 * 86400  # a UTC midnight
CLIENTS = ["192.0.2.1", "192.0.2.2", "2001:db8::7", "other"]


def history_rows(window: int) -> tuple[int, int, list[str], np.ndarray, np.ndarray]:
    """Window number -> (start, end, clients, inbound, counts): every class's bytes differ
    from window to window, so that a sum tells which windows it holds."""
    start = START + 5 * window
    inbound = np.array([True, False, True, False])
    counts = (np.arange(20, dtype=np.int64).reshape(4, 5) + 1) * (window + 1)
    return start, start + 5, CLIENTS, inbound, counts


def prefix_sums(windows: int) -> np.ndarray:
    """Every class's bytes of windows 0..windows-1."""
    base = (np.arange(20, dtype=np.int64).reshape(4, 5) + 1).sum(axis=0)
    return base * (windows * (windows + 1) // 2)


def main() -> None:
    from traffic_capture.history.writer import HistoryWriter

    path, first, windows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    every = int(sys.argv[4]) if len(sys.argv) > 4 else 12
    writer = HistoryWriter(path, "5s=7d,1m=90d,1h=forever", "child", flush_seconds=1e9,
                           merge_flushes=3, grace_s=0, delete_after_s=0.2)
    print("ready", flush=True)
    for window in range(first, first + windows):
        writer.add_window(*history_rows(window))
        if (window + 1) % every == 0:
            writer.flush(force=True, merges=None)
            print(f"flushed {window + 1}", flush=True)
    writer.close(merges=None)
    print("closed", flush=True)


if __name__ == "__main__":
    main()
