"""A capture run: a source feeds the pipeline on the capture thread, the sinks write on theirs.

The main thread only starts things, waits, and handles signals, so it stays free for a window
or a web server loop. Whatever happens (Ctrl+C, SIGTERM, --duration, a bad packet, a locked
file), what was counted is handed to the sinks and written before exit.
"""

from __future__ import annotations

import errno
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from traffic_capture.config import Config
from traffic_capture.errors import EXIT_OK, PROG, TrafficCaptureError, UsageError
from traffic_capture.interfaces import (
    Interface,
    InterfaceError,
    default_interfaces,
    format_interface_list,
    interface_addresses,
    list_interfaces,
    npcap_missing_message,
    privilege_message,
    servers_elsewhere,
)
from traffic_capture.interfaces import resolve_interfaces as resolve_names
from traffic_capture.linktypes import DLT_EN10MB
from traffic_capture.pipeline import Pipeline
from traffic_capture.rules import HTTP_PORTS
from traffic_capture.servers import ServerSet, parse_server
from traffic_capture.sinks import FanOut, OutputContext, Sink, wait_for
from traffic_capture.sources import Source, open_live
from traffic_capture.sources.bpf import FilterError, check_filter, combined_filter
from traffic_capture.sources.offline import FileSource
from traffic_capture.status import Reporter, Snapshot
from traffic_capture.stop_signals import handle_signals

if TYPE_CHECKING:
    from traffic_capture.frames import Batch


class CaptureUnavailable(TrafficCaptureError):
    """No right to capture, or no capture library: the message says what to do."""


def fail(error: TrafficCaptureError | str, exit_code: int | None = None) -> int:
    """One line on stderr; the exit status."""
    sys.stderr.write(f"{PROG}: error: {error}\n")
    if exit_code is None:
        exit_code = error.exit_code if isinstance(error, TrafficCaptureError) else 1
    return exit_code


def print_interfaces() -> int:
    try:
        print(format_interface_list(list_interfaces()))
    except OSError as error:
        return fail(f"cannot list interfaces: {error}")
    return EXIT_OK


def make_sinks(config: Config, reporter: Reporter,
               run_status: Callable[[], dict[str, Any]] | None = None,
               inject: Callable[[Batch], None] | None = None) -> list[Sink]:
    """The sinks of the outputs a configuration enables, each built by its own output."""
    context = OutputContext(
        reporter.warn, reporter.info, config.window_seconds, config.servers, utc=config.utc,
        fsync=config.fsync, max_clients=config.max_clients,
        # Reading files, the capture may wait for the packet log and the window: nothing is
        # lost.
        lossless=bool(config.read), run_status=run_status or dict,
        inject=inject or (lambda batch: None))
    return [enabled.output.build(enabled.settings, context) for enabled in config.outputs]


def run(config: Config) -> int:
    reporter = Reporter(config.quiet, config.status_interval)
    capture = Run(config, reporter)
    try:
        chosen = None if config.read else _choose_interfaces(config, reporter)
        sinks = FanOut(make_sinks(config, reporter, capture.status, capture.inject))
        sinks.check()  # before anything is created: a busy port leaves no header-only CSV
        source = FileSource(config.read, config.bpf_filter) if config.read else _open_live(
            config, chosen or [], reporter)
    except TrafficCaptureError as error:
        return fail(error)
    except KeyboardInterrupt:  # waiting for a named pipe's writer or standard input's start
        reporter.info("stopped (Ctrl+C) before the input began: nothing was read or written")
        return 0
    try:
        sinks.open()
    except TrafficCaptureError as error:
        source.close()
        return fail(error)
    if config.http_ports != HTTP_PORTS:
        reporter.info(f"counting as http: TCP ports {ports_text(config.http_ports)} "
                      "(--http-ports)")
    if source.live:
        zone = "UTC" if config.utc else "local time"
        reporter.info(f"capturing on {source.description}; rows every {config.window_seconds} s "
                      f"({zone}) to {', '.join(sinks.summary_targets())}; Ctrl+C to stop")
    return capture.execute(source, sinks)


def ports_text(ports: frozenset[int]) -> str:
    return ", ".join(map(str, sorted(ports)))


def _choose_interfaces(config: Config, reporter: Reporter) -> list[Interface]:
    """The capture interfaces, and the servers when none were given (their addresses)."""
    try:
        known = list_interfaces()
    except (OSError, ImportError) as error:
        raise CaptureUnavailable(_capture_unavailable(error)) from None
    try:
        if config.interfaces:
            chosen = resolve_names(config.interfaces, known)
        else:  # with no server yet, the set is empty and the default route's interface wins
            chosen = default_interfaces(config.servers, known)
    except InterfaceError as error:
        raise UsageError(str(error)) from None
    if not config.servers:
        addresses = interface_addresses(chosen)
        if not addresses:
            raise UsageError(f"{', '.join(i.name for i in chosen)} has no address to use as the "
                             "server: give --server-ip")
        config.servers = ServerSet(parse_server(a) for a in addresses)
    elsewhere = servers_elsewhere(config.servers, chosen)
    if elsewhere:
        names = ", ".join(i.name for i in chosen)
        reporter.warn(f"{', '.join(map(str, elsewhere))} is on none of the capture interfaces "
                      f"({names}): only its packets that pass {names} are counted (a mirror "
                      "port, a router); if it is this machine's address, give --iface with the "
                      "interface that holds it (see --list-interfaces)")
    return chosen


def _open_live(config: Config, chosen: list[Interface], reporter: Reporter) -> Source:
    bpf = _kernel_filter(config, reporter)
    devices = [i.device for i in chosen]
    try:
        source = open_live(config.backend, devices, ", ".join(i.name for i in chosen), bpf,
                           reporter.warn, config.reopen, config.live_snaplen())
    except PermissionError:
        raise CaptureUnavailable(privilege_message(sys.platform)) from None
    except ImportError as error:
        raise CaptureUnavailable(_capture_unavailable(error)) from None
    except OSError as error:
        # No CAP_NET_RAW comes as a plain OSError (EPERM) from some calls.
        if error.errno in (errno.EPERM, errno.EACCES):
            raise CaptureUnavailable(privilege_message(sys.platform)) from None
        raise TrafficCaptureError(f"cannot capture on {', '.join(devices)}: {error}") from None
    reporter.info(f"server addresses: {config.servers} (from {config.servers_from})")
    return source


def _capture_unavailable(error: BaseException) -> str:
    if isinstance(error, ModuleNotFoundError) and error.name:
        return (f"packet capture needs {error.name.split('.')[0]}, which is not installed for "
                f"{sys.executable}: {sys.executable} -m pip install -e . (in the project's "
                "folder), or run .venv/bin/traffic-capture")
    if sys.platform.startswith("win"):
        return npcap_missing_message()
    return f"packet capture is not available: {error}"


def _kernel_filter(config: Config, reporter: Reporter) -> str | None:
    expression = combined_filter(config.servers, config.bpf_filter)
    try:
        check_filter(expression, DLT_EN10MB)
    except FilterError as error:
        if config.bpf_filter:
            raise
        reporter.info(f"{error}; filtering in user space instead")
        return None
    return expression


class Run:
    """One run, from start to finish: the capture thread, the sinks, signals and the status."""

    def __init__(self, config: Config, reporter: Reporter) -> None:
        self.config, self.reporter = config, reporter
        self.source: Source | None = None
        self.sinks = FanOut([])
        self.pipeline: Pipeline | None = None
        self.stop = threading.Event()
        self.error: str | None = None
        self.started = time.time()
        self._source_done = threading.Event()
        self._injected: queue.SimpleQueue[Batch] = queue.SimpleQueue()

    def inject(self, batch: Batch) -> None:
        """From any thread (an output's): synthetic packets for the capture thread to count."""
        self._injected.put(batch)

    def status(self) -> dict[str, Any]:
        """The run's figures for an output that shows them (the dashboard's /api/status)."""
        source, pipeline = self.source, self.pipeline
        counters = pipeline.counters if pipeline is not None else None
        return {
            "mode": "capture", "live": bool(source and source.live),
            "source": source.description if source else None,
            "servers": [str(network) for network in self.config.servers.networks],
            "started": int(self.started), "uptime_seconds": round(time.time() - self.started, 1),
            "packets_seen": counters.packets_seen if counters else 0,
            "packets_counted": counters.packets_counted if counters else 0,
            "bytes_counted": counters.bytes_counted if counters else 0,
            "windows_closed": counters.windows_closed if counters else 0,
            "kernel_drops": source.kernel_drops() if source else None,
            **self.sinks.status_fields(),
            "source_done": self._source_done.is_set(),
        }

    def snapshot(self) -> Snapshot:
        """What the status line shows, read in one go from any thread."""
        assert self.source is not None and self.pipeline is not None
        progress = self.source.progress()
        return Snapshot(self.pipeline.counters, self.source.kernel_drops(),
                        self.sinks.figures(), progress)

    def execute(self, source: Source, sinks: FanOut) -> int:
        """Capture until the source ends or a stop; every counted window reaches the sinks."""
        config = self.config
        self.source, self.sinks = source, sinks
        self.pipeline = Pipeline(config.servers, config.window_seconds, sinks.window,
                                 sinks.packet_tap, sinks.packet_frames, config.max_clients,
                                 config.http_ports,
                                 frames_limit=config.live_snaplen() if source.live else None)
        capture = threading.Thread(target=self._capture_loop, name="capture", daemon=True)
        restore = self._install_stop_signals()
        timer = None
        try:
            sinks.start()
            self.reporter.start(self.snapshot, with_progress=not source.live)
            if config.duration and source.live:
                timer = threading.Timer(config.duration, self.stop.set)
                timer.daemon = True
                timer.start()
            capture.start()
            wait_for(capture)
            self.stop.set()  # the capture is over: a Ctrl+C now hurries the outputs
            sinks.stop()
        finally:
            if timer is not None:
                timer.cancel()
            self.reporter.stop(self.snapshot)
            restore()
        self._summarise()
        return fail(self.error) if self.error else EXIT_OK

    def _capture_loop(self) -> None:
        pipeline, source = self.pipeline, self.source
        assert pipeline is not None and source is not None
        try:
            for batch in source.batches(self.stop):
                self._feed_injected()
                if batch is None:
                    pipeline.advance(time.time_ns())
                else:
                    pipeline.feed_batch(batch)
        except TrafficCaptureError as error:
            self.error = f"{source.description}: {error}"
        except OSError as error:
            self.error = f"capture stopped: {error}"
        except Exception as error:  # noqa: BLE001 - a bug: still write what was counted
            self.error = (f"capture stopped by an unexpected error (please report it): "
                          f"{type(error).__name__}: {error}")
        finally:
            source.close()
            pipeline.finish()
        self._source_done.set()
        reasons = self.sinks.keeps_run_open()
        if reasons and not self.stop.is_set() and self.error is None:
            # Files read with an output that stays up (a dashboard): once their rows are
            # written (the CSV and the dashboard agree), the run goes on (injected packets
            # counted by the wall clock) until Ctrl+C or SIGTERM.
            while any(f.pending for f in self.sinks.figures() if not f.failed) \
                    and not self.stop.wait(0.05):
                pass
            self.reporter.info(f"{source.description} read; {'; '.join(reasons)}")
            while not self.stop.wait(0.2):
                self._feed_injected()
                pipeline.advance(time.time_ns())
            pipeline.finish()

    def _feed_injected(self) -> None:
        assert self.pipeline is not None
        while True:
            try:
                batch = self._injected.get_nowait()
            except queue.Empty:
                return
            self.pipeline.feed_batch(batch)

    def _summarise(self) -> None:
        assert self.pipeline is not None and self.source is not None
        reporter, c = self.reporter, self.pipeline.counters
        where = ", ".join(self.sinks.summary_targets())
        side = [str(path) for f in self.sinks.figures() for path in f.side_files]
        if side:
            where += f" (and {', '.join(side)})"
        reporter.info(f"done: {c.packets_seen:,} packets, {c.packets_counted:,} counted "
                      f"({c.bytes_counted:,} bytes) in {plural(c.rows_made, 'row')} over "
                      f"{plural(c.windows_closed, 'window')}, written to {where}")
        for line in self.source.warnings():
            reporter.warn(line)
        if c.packets_malformed:
            reporter.warn(f"{c.packets_malformed:,} packets said to be IP had a header that "
                          "cannot be read (damaged, or crafted): skipped, not counted")
        if not c.packets_counted and self.error is None:
            reporter.warn(f"no packet to or from a server address ({self.config.servers}) "
                          f"was seen in {c.packets_seen:,} packets: nothing was counted. Check "
                          "--server-ip" + ("" if self.config.read else " and --iface"))
        for is_warning, line in self.sinks.closing_notes():
            (reporter.warn if is_warning else reporter.info)(line)
        drops = self.source.kernel_drops()
        if drops:
            reporter.warn(f"kernel drops: {drops:,} packets were dropped by the kernel before "
                          "they could be counted (the capture could not keep up); the rows "
                          "miss them")
        elif drops is not None:
            reporter.info("kernel drops: 0")

    def _install_stop_signals(self) -> Callable[[], None]:
        """Stop on Ctrl+C, SIGTERM...; SIGHUP reopens the outputs (logrotate); returns what
        puts the previous handlers back."""
        def on_stop() -> None:
            if self.stop.is_set():
                self.sinks.hurry()  # a second Ctrl+C: don't wait for a locked file any longer
            self.stop.set()

        return handle_signals(on_stop, self.sinks.reopen)


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")
