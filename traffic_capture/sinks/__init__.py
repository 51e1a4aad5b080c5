"""Outputs: each an `Output` (its options, its settings, its sink) and a `Sink` with its own
queue and thread, all fed by one FanOut.

The capture thread only puts items on queues, so a slow or failing output (a CSV that Excel
locks, a browser that stops reading, a full disk under a packet log) never stalls the capture
or another output. The command line imports every output for its options (`--help`), so this
module and an output's own module import nothing heavy at the top (numpy comes with a run).
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NamedTuple, TypeVar

from traffic_capture.rules import RETRY_INTERVAL_SECONDS, STOP_RETRY_SECONDS
from traffic_capture.servers import ServerSet

if TYPE_CHECKING:
    from traffic_capture.frames import Batch
    from traffic_capture.pipeline import CountedPackets
    from traffic_capture.windows import ClosedWindow

Say = Callable[[str], None]  # one line for the user (a warning, or information)
Notes = list[tuple[bool, str]]  # (a warning?, the line) for the closing summary


class SinkFigures(NamedTuple):
    """What a sink reports for the status line and the closing summary."""

    name: str  # the output's short name, e.g. "csv"
    unit: str  # what it writes: "rows", "lines", "events"
    written: int
    pending: int  # queued or waiting to be written
    dropped: int = 0  # given up on by design (a bounded queue overflowing), never silently
    side_files: tuple[Path, ...] = ()  # where waiting items went when the output refused them
    failed: str | None = None  # why the sink stopped, if it did
    label: str | None = None  # its part of the status line; None: "<name> <unit>"

    @property
    def status_label(self) -> str:
        return self.label or f"{self.name} {self.unit}"


_STOP = object()
_REOPEN = object()


class OutputContext(NamedTuple):
    """What a run gives every output it builds: the run's choices that outputs share, how to
    speak to the user, and the run's own figures and injection (for a dashboard)."""

    warn: Say
    info: Say
    window_seconds: int
    servers: ServerSet
    utc: bool = False  # window times in UTC, not local time
    fsync: bool = False  # sync every CSV window, new files' folders and each batch of lines
    max_clients: int | None = None  # per window and direction; the rest fold into `other`
    # Reading files: the capture may wait for an output rather than have it drop anything.
    lossless: bool = False
    # The run's figures (source, packets, kernel drops, each sink's status_fields()).
    run_status: Callable[[], dict[str, Any]] = lambda: {}
    # Hands synthetic packets to the capture thread, which counts them like captured ones.
    inject: Callable[[Batch], None] = lambda batch: None


S = TypeVar("S")


class Credential(NamedTuple):
    """A secret a service loads from a root-only file (systemd's LoadCredential=NAME:PATH);
    `value`, when known, is written to PATH by `service-unit`."""

    name: str
    path: Path
    value: str | None = None


class Output(Generic[S]):
    """An output a capture run can write to: it states its command-line options, turns the
    parsed options into its settings (None: not asked for), and builds its sink. The command
    line and the run loop only iterate over the registry (traffic_capture/outputs.py).

    - `add_options(group)` adds its options to its own --help group (`title`, `description`).
    - `settings(args)` reads them (argparse dests) into a settings object, or None when the
      output is off; a combination that cannot work raises UsageError with one line.
    - `build(settings, context)` makes the Sink; import heavy modules (numpy, an engine's
      client) here, not at the top of the output's module.
    - `keeps_payloads`: its sink wants frame bytes, so live capture keeps whole packets.
    - For `service-unit`: `service_refusal` says why it cannot run as a service (None: it
      can); `service_folders(settings)` are folders the service must be allowed to write;
      `secret_options` never go into the unit file; `service_credentials(settings)` are
      the Credentials the unit loads with LoadCredential=.
    """

    name: ClassVar[str] = "output"
    title: ClassVar[str | None] = None  # its --help group; None: among the general options
    description: ClassVar[str | None] = None
    keeps_payloads: ClassVar[bool] = False
    service_refusal: ClassVar[str | None] = None
    secret_options: ClassVar[tuple[str, ...]] = ()

    def add_options(self, group: argparse._ActionsContainer) -> None:
        """Add this output's options (their dests must not clash with another's)."""

    def settings(self, args: argparse.Namespace) -> S | None:
        raise NotImplementedError

    def build(self, settings: S, context: OutputContext) -> Sink:
        raise NotImplementedError

    def service_folders(self, settings: S) -> list[Path]:
        return []

    def service_credentials(self, settings: S) -> list[Credential]:
        return []


class Sink:
    """An output. Subclass it and override the `handle_*` hooks it needs.

    The contract:
    - `check()` runs before capture starts, creates nothing, and raises a TrafficCaptureError
      (usage or runtime) for an output that cannot work; `open()` runs once the source is
      open (create files, bind sockets) and raises the same way.
    - `window()` and `packets()` are called on the capture thread and only queue; the
      `handle_*` hooks then run on the sink's own thread, in order. Set `wants_packets` to get
      the per-packet tap (CountedPackets); without it, packets cost the capture nothing. Set
      `wants_frames` too for the frames' bytes (payloads): copying them is the tap's main cost.
    - `max_queue` None keeps every item (the CSV: nothing counted may be lost); a number bounds
      the queue and counts what overflows as dropped (a log, a display).
    - `flush()` runs after each group of items taken from the queue; `poll_seconds()` says how
      long the thread may sleep without items (None: until the next one), for retries.
    - `finish()` runs once at stop, after every item was handled; it may wait (retry a locked
      file) but must give up at once when `hurry` is set (a second Ctrl+C).
    - `handle_reopen()` runs, in order with the items, after SIGHUP: a sink that keeps a file
      open closes it and opens the path again (logrotate moved it).
    - An exception escaping a hook stops this sink alone: one warning names it, `abandon()`
      keeps what it can, its later items are counted as dropped, and the capture and the
      other sinks go on.
    - `figures()` is read from other threads: keep it to plain attribute reads.
    - What the user reads: `label` (its part of the status line), `summary_target()` (where
      it wrote, for the closing summary), `closing_notes()` (lines after it),
      `status_fields()` (its figures in the run's status: /api/status).
    - `keeps_run_open()`: a message when the run should go on after capture files are read
      (a dashboard stays up until Ctrl+C), else None.
    """

    name = "sink"
    unit = "items"
    label: str | None = None
    wants_windows = True  # False: closed windows are not even queued (a per-packet output)
    wants_packets = False
    wants_frames = False
    max_queue: int | None = None

    def __init__(self, warn: Say, info: Say) -> None:
        self.warn, self.info = warn, info
        self.hurry = threading.Event()
        self.written = 0
        self.dropped = 0
        self.failed: str | None = None
        self._queue: queue.Queue[Any] | queue.SimpleQueue[Any] = (
            queue.SimpleQueue() if self.max_queue is None else queue.Queue(self.max_queue))
        self._thread = threading.Thread(target=self._run, name=f"sink-{self.name}", daemon=True)
        self._reopen_wanted = threading.Event()
        self._in_hand = 0  # items taken off the queue, not yet handled

    # The hooks.
    def check(self) -> None:
        """Refuse an output that cannot work, before anything starts."""

    def open(self) -> None:
        """Create what the output needs, once the source is open."""

    def handle_window(self, window: ClosedWindow) -> None:
        """A closed window (its sums), on the sink's thread."""

    def handle_packets(self, packets: CountedPackets) -> None:
        """A batch's counted packets (only with wants_packets), on the sink's thread."""

    def flush(self) -> None:
        """After each group of handled items."""

    def handle_reopen(self) -> None:
        """After SIGHUP: reopen what the sink keeps open."""

    def poll_seconds(self) -> float | None:
        return None

    def finish(self) -> None:
        """At stop, after every item was handled."""

    def abandon(self) -> None:
        """Once, when a hook's exception stops this sink: keep what can be kept (never raises
        a second time: its errors are ignored)."""

    def pending(self) -> int:
        return self._queue.qsize() + self._in_hand

    def retry_until_given_up(self, waiting: Callable[[], bool]) -> None:
        """For finish(): flush every retry interval while `waiting()`, for at most
        STOP_RETRY_SECONDS, and not at all once `hurry` is set (a second Ctrl+C)."""
        deadline = time.monotonic() + STOP_RETRY_SECONDS
        while waiting() and time.monotonic() < deadline:
            if self.hurry.wait(RETRY_INTERVAL_SECONDS):
                return
            self.flush()

    def side_files(self) -> tuple[Path, ...]:
        return ()

    def figures(self) -> SinkFigures:
        return SinkFigures(self.name, self.unit, self.written, self.pending(), self.dropped,
                           self.side_files(), self.failed, self.label)

    def summary_target(self) -> str | None:
        """Where it wrote, as the closing summary names it (None: it writes no place)."""
        return None

    def closing_notes(self) -> Notes:
        """What the user must read after the summary: (a warning?, the line)."""
        return []

    def status_fields(self) -> dict[str, Any]:
        """Its figures for the run's status (the dashboard's /api/status)."""
        return {}

    def keeps_run_open(self) -> str | None:
        return None

    # The capture thread's side.
    def window(self, window: ClosedWindow) -> None:
        self._put((self.handle_window, window))

    def packets(self, packets: CountedPackets) -> None:
        self._put((self.handle_packets, packets))

    def reopen(self) -> None:
        """From a signal handler: ask for handle_reopen() (never dropped, never blocking)."""
        self._reopen_wanted.set()
        with contextlib.suppress(queue.Full):  # a full queue: the thread is awake anyway
            self._queue.put_nowait(_REOPEN)

    def wake(self) -> None:
        """From any thread: have the sink's thread run flush() soon (never blocking)."""
        with contextlib.suppress(queue.Full):  # a full queue: the thread is awake anyway
            self._queue.put_nowait(None)

    def _put(self, item: tuple[Callable[[Any], None], object]) -> None:
        """An item is (the hook that handles it, its payload)."""
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += self.size_of(item[1])

    @staticmethod
    def size_of(item: object) -> int:
        """How many of the sink's units a payload stands for, when it is dropped."""
        return 1

    # The sink's own thread.
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Let the thread handle what is queued, finish, and end; wait for it."""
        self._queue.put(_STOP)
        wait_for(self._thread)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            try:
                first = self._queue.get(timeout=self.poll_seconds())
            except queue.Empty:
                first = None
            items = [first]
            while True:  # what else is waiting, handled as one group
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._in_hand = sum(1 for item in items
                                if item is not None and item is not _STOP and item is not _REOPEN)
            for item in items:
                if item is _STOP:
                    stopping = True
                elif item is not None:
                    self._handle(item)
                    if item is not _REOPEN:
                        self._in_hand -= 1
            if self._reopen_wanted.is_set():
                self._reopen_wanted.clear()
                self._guarded(self.handle_reopen)
            self._guarded(self.flush)
        self._guarded(self.finish)

    def _handle(self, item: Any) -> None:
        if item is _REOPEN:
            return  # only wakes the thread: the request is _reopen_wanted
        hook, payload = item
        if self.failed is not None:
            self.dropped += self.size_of(payload)
        else:
            self._guarded(hook, payload)

    def _guarded(self, hook: Callable[..., None], *args: Any) -> None:
        if self.failed is not None:
            return
        try:
            hook(*args)
        except Exception as error:  # noqa: BLE001 - one output's fault must not end the others
            self.failed = f"{type(error).__name__}: {error}"
            self.warn(f"the {self.name} output stopped ({self.failed}); capture and the other "
                      "outputs go on")
            with contextlib.suppress(Exception):
                self.abandon()


def wait_for(thread: threading.Thread) -> None:
    """Join in short waits: the main thread stays free to run signal handlers (a second
    Ctrl+C must reach `hurry`; Windows delivers Ctrl+C only between waits)."""
    while thread.is_alive():
        thread.join(0.2)


class FanOut:
    """Every sink, as one: what the pipeline emits goes to each sink's queue."""

    def __init__(self, sinks: Iterable[Sink]) -> None:
        self.sinks = list(sinks)
        self._window_sinks = [sink for sink in self.sinks if sink.wants_windows]
        self._packet_sinks = [sink for sink in self.sinks if sink.wants_packets]

    def window(self, window: ClosedWindow) -> None:
        for sink in self._window_sinks:
            sink.window(window)

    def packets(self, packets: CountedPackets) -> None:
        for sink in self._packet_sinks:
            sink.packets(packets)

    @property
    def packet_frames(self) -> bool:
        return any(sink.wants_frames for sink in self._packet_sinks)

    @property
    def packet_tap(self) -> Callable[[CountedPackets], None] | None:
        """For the pipeline: None when no sink wants packets, so that none are copied."""
        return self.packets if self._packet_sinks else None

    def check(self) -> None:
        for sink in self.sinks:
            sink.check()

    def open(self) -> None:
        for sink in self.sinks:
            sink.open()

    def start(self) -> None:
        for sink in self.sinks:
            sink.start()

    def hurry(self) -> None:
        for sink in self.sinks:
            sink.hurry.set()

    def reopen(self) -> None:
        for sink in self.sinks:
            sink.reopen()

    def stop(self) -> None:
        """Drain every sink, each on its own thread at once (a locked CSV does not delay the
        others' draining), and wait for all."""
        stoppers = [threading.Thread(target=sink.stop, name=f"stop-{sink.name}")
                    for sink in self.sinks]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            wait_for(stopper)

    def figures(self) -> list[SinkFigures]:
        return [sink.figures() for sink in self.sinks]

    def status_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for sink in self.sinks:
            fields.update(sink.status_fields())
        return fields

    def summary_targets(self) -> list[str]:
        return [target for sink in self.sinks if (target := sink.summary_target()) is not None]

    def closing_notes(self) -> Notes:
        return [note for sink in self.sinks for note in sink.closing_notes()]

    def keeps_run_open(self) -> list[str]:
        """Why the run should go on after capture files are read (one message a sink)."""
        return [reason for sink in self.sinks if not sink.failed
                and (reason := sink.keeps_run_open()) is not None]
