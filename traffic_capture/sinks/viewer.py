"""--view: the packet viewer window, in a process of its own, fed through a multiprocessing
queue that the capture never waits on.

The window is sent an update at most every UPDATE_SECONDS, for all the batches counted since
the last one: the rows of the latest ROWS_PER_UPDATE packets (time, direction, client, class,
bytes, preview) and every packet's share of the per-client sums. A window redrawn more often
than a person can read costs the capture CPU for nothing. When the window falls behind (its
queue is full), whole updates are dropped: never a packet from the CSV or the log; the count
is shown in the window and the status line.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import os
import queue
import sys
import time
from typing import TYPE_CHECKING, Any

from traffic_capture.errors import PROG, TrafficCaptureError, UsageError
from traffic_capture.sinks import Notes, Output, OutputContext, Say, Sink

if TYPE_CHECKING:
    from traffic_capture.pipeline import CountedPackets

ROWS_PER_UPDATE = 300  # a table of the latest packets needs no more from one update
UPDATE_SECONDS = 0.5  # the window gets at most two updates a second
QUEUE_MESSAGES = 50  # updates waiting for the window before they are dropped
CLOSE_WAIT_SECONDS = 3.0


class ViewerError(TrafficCaptureError):
    """The window cannot open (no desktop, no tkinter); the message says what to do."""


def check_display() -> None:
    """Refuse --view where no window can open, before the capture starts."""
    if importlib.util.find_spec("tkinter") is None:
        raise ViewerError("--view needs tkinter, Python's standard window toolkit (Debian: "
                          "apt install python3-tk)")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        raise UsageError("--view needs a desktop session (no $DISPLAY); use --packet-log and "
                         "'traffic-capture view --log PATH' where there is one")


class ViewerOutput(Output[bool]):
    """--view: the packets live in a desktop window."""

    name = "view"
    title = "packet log and viewer"
    keeps_payloads = True
    service_refusal = ("--view needs a desktop session, which a service has none of; use "
                       f"--packet-log and '{PROG} view --log PATH' on a desktop")

    def add_options(self, group: argparse._ActionsContainer) -> None:
        group.add_argument("--view", action="store_true",
                           help="show the packets live in a desktop window (tkinter, its own "
                                f"process); '{PROG} view --log PATH' follows a packet log "
                                "instead")

    def settings(self, args: argparse.Namespace) -> bool | None:
        return True if args.view else None

    def build(self, settings: bool, context: OutputContext) -> Sink:
        return ViewerSink(context.window_seconds, context.lossless, context.warn, context.info)


OUTPUT = ViewerOutput()


class ViewerSink(Sink):
    """--view: feeds the window's process; a closed window is left closed."""

    name = "view"
    unit = "packets"
    wants_windows = False
    wants_packets = True
    wants_frames = True
    max_queue = 64

    def __init__(self, window_seconds: int, wait_for_close: bool, warn: Say, info: Say) -> None:
        super().__init__(warn, info)
        self.window_seconds = window_seconds
        # Reading files: the window stays open on the result until the user closes it.
        self.wait_for_close = wait_for_close
        from traffic_capture.addresses import AddressText

        self.address = AddressText()
        self._messages: Any = None
        self._process: Any = None
        self._closed_said = False
        self._batches: list[CountedPackets] = []  # counted since the last update
        self._last_update = 0.0

    @staticmethod
    def size_of(item: object) -> int:
        return len(item)  # type: ignore[arg-type]  # only packets come (no windows)

    def check(self) -> None:
        check_display()

    def closing_notes(self) -> Notes:
        if not self.dropped:
            return []
        return [(False, f"viewer: {self.dropped:,} packets were not shown (the window fell "
                        "behind); the CSV and the log have them")]

    def open(self) -> None:
        import multiprocessing

        from traffic_capture.sinks.viewer_queue import QuietQueue
        from traffic_capture.viewer.process import run_fed

        context = multiprocessing.get_context("spawn")  # no fork of a capturing process
        self._messages = QuietQueue(QUEUE_MESSAGES, ctx=context)
        self._process = context.Process(target=run_fed, name="traffic-capture-view",
                                        args=(self._messages, self.window_seconds),
                                        daemon=True)
        self._process.start()
        self.info("viewer window opening (closing it leaves the capture running)")

    def _window_open(self) -> bool:
        if self._process is not None and self._process.is_alive():
            return True
        if not self._closed_said:
            self._closed_said = True
            self.info("the viewer window was closed; capture goes on")
        return False

    def handle_packets(self, packets: CountedPackets) -> None:
        if not self._window_open():
            self._batches.clear()  # a closed window is left closed; nothing is counted for it
            return
        self._batches.append(packets)
        # Only the latest ROWS_PER_UPDATE packets are shown as rows: older batches keep their
        # columns for the sums but let go of their frames' bytes.
        newer = 0
        for k in range(len(self._batches) - 1, -1, -1):
            if newer >= ROWS_PER_UPDATE:
                if self._batches[k].frames is None:
                    break
                self._batches[k] = dataclasses.replace(self._batches[k], frames=None)
            newer += len(self._batches[k])

    def poll_seconds(self) -> float | None:
        if not self._batches:
            return None
        return max(0.0, self._last_update + UPDATE_SECONDS - time.monotonic())

    def flush(self) -> None:
        if self._batches and time.monotonic() - self._last_update >= UPDATE_SECONDS:
            if self._window_open():
                self._update()
            else:
                self._batches.clear()

    def _update(self) -> None:
        """One message for the batches counted since the last (dropped whole, and counted,
        when the window's queue is full)."""
        batches, self._batches = self._batches, []
        self._last_update = time.monotonic()
        count = sum(len(packets) for packets in batches)
        from traffic_capture.sinks.viewer_feed import latest_rows, view_sums

        # `dropped` also holds the capture's own drops (this sink's queue overflowing).
        message = ("packets", latest_rows(batches, self.address, ROWS_PER_UPDATE),
                   view_sums(batches, self.window_seconds, self.address), self.dropped)
        try:
            self._messages.put_nowait(message)
        except (queue.Full, ValueError, OSError):
            self.dropped += count
            return
        self.written += count

    def finish(self) -> None:
        if self._process is None:
            return
        if self._batches and self._window_open():
            self._update()
        if self._window_open():
            with contextlib.suppress(queue.Full, ValueError, OSError):
                self._messages.put(("end", "capture ended"), timeout=1)
            if self.wait_for_close:
                self.info("the files are read: close the viewer window to exit")
                while self._process.is_alive() and not self.hurry.wait(0.2):
                    pass
            if self._process.is_alive():
                with contextlib.suppress(queue.Full, ValueError, OSError):
                    self._messages.put(("close",), timeout=1)
                self._process.join(CLOSE_WAIT_SECONDS)
            if self._process.is_alive():
                self._process.terminate()
        self._process.join(CLOSE_WAIT_SECONDS)
        self._messages.close()
        self._messages.cancel_join_thread()
