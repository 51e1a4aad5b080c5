"""The viewer's own process, fed by the capture through a multiprocessing queue.

Messages (tuples, oldest first): ("packets", rows, sums, not_shown) with model.Row and
model.Sum lists and the running count of packets the capture could not send; ("end", text)
when the capture is over; ("close",) to close the window. Nothing is sent back: the capture
never waits for the window.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
import sys
from typing import Any

from traffic_capture.viewer.model import ViewModel

MESSAGES_PER_POLL = 200  # taken from the queue per redraw, so the window stays responsive


def run_fed(messages: Any, window_seconds: int) -> None:
    """The spawned process's entry: the window until it is closed, or told to close."""
    # Ctrl+C in the terminal reaches every process of the group: the capture decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from traffic_capture.viewer import window

    parent = multiprocessing.parent_process()
    model = ViewModel(window_seconds)

    def feed(model: ViewModel) -> bool:
        for _ in range(MESSAGES_PER_POLL):
            try:
                message = messages.get_nowait()
            except (queue.Empty, OSError, EOFError, ValueError):
                break
            kind = message[0]
            if kind == "packets":
                model.add(message[1], message[2])
                model.not_shown = message[3]
            elif kind == "end":
                model.ended = message[1]
            elif kind == "close":
                return False
        if parent is not None and not model.ended and not parent.is_alive():
            model.ended = "capture ended"
        return True

    try:
        window.run(model, feed)
    except window.NoDisplay as error:
        sys.stderr.write(f"traffic-capture: warning: {error}\n")
