"""A capture run: a source feeds the pipeline on the capture thread, the sinks write on theirs.

The main thread only starts things, waits, and handles signals, so it stays free for a window
or a web server loop. Whatever happens (Ctrl+C, SIGTERM, --duration, a bad packet, a locked
file), what was counted is handed to the sinks and written before exit.
"""

from __future__ import annotations

import errno
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from traffic_capture.config import Config
from traffic_capture.errors import EXIT_OK, PROG, TrafficCaptureError, UsageError
from traffic_capture.interfaces import (
    InterfaceError,
    default_interfaces,
    format_interface_list,
    interface_addresses,
    list_interfaces,
    npcap_missing_message,
    privilege_message,
)
from traffic_capture.interfaces import resolve_interfaces as resolve_names
from traffic_capture.linktypes import DLT_EN10MB
from traffic_capture.pipeline import Pipeline
from traffic_capture.rules import HTTP_PORTS
from traffic_capture.servers import ServerSet, parse_server
from traffic_capture.sinks import FanOut, Sink, wait_for
from traffic_capture.sinks.csv_file import CsvSink
from traffic_capture.sources import Source, open_live
from traffic_capture.sources.bpf import FilterError, check_filter, combined_filter
from traffic_capture.sources.file_source import FileSource
from traffic_capture.status import Reporter, Snapshot

if TYPE_CHECKING:
    from traffic_capture.web.http_server import WebServer
    from traffic_capture.web.inject import Injector
    from traffic_capture.web.memory_store import MemoryStore as WebState


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


def make_sinks(config: Config, reporter: Reporter, web_state: WebState | None = None
               ) -> list[Sink]:
    """The outputs a configuration asks for (the CSV always; the web's with --web, the packet
    log with --packet-log, the viewer window with --view)."""
    sinks: list[Sink] = [CsvSink(config.out, config.delimiter, reporter.warn, reporter.info,
                                 config.rotate, config.keep, config.max_disk, utc=config.utc,
                                 fsync=config.fsync)]
    if web_state is not None:
        from traffic_capture.web.sink import WebSink

        sinks.append(WebSink(web_state, reporter.warn, reporter.info, config.max_clients))
    # Reading files, the capture may wait for the packet log and the window: nothing is lost.
    lossless = bool(config.read)
    if config.packet_log:
        from traffic_capture.sinks.packet_log import PacketLogSink

        sinks.append(PacketLogSink(config.packet_log, config.packet_log_payload,
                                   config.packet_log_max_bytes, config.packet_log_keep,
                                   lossless, reporter.warn, reporter.info, fsync=config.fsync))
    if config.view:
        from traffic_capture.sinks.viewer import ViewerSink

        sinks.append(ViewerSink(config.window_seconds, lossless, reporter.warn, reporter.info))
    return sinks


def _web_state(config: Config) -> WebState:
    """The web's state, with the CSV's recent history (a restart shows the past too)."""
    from traffic_capture.web import require_web
    from traffic_capture.web.csv_follow import read_history
    from traffic_capture.web.memory_store import MemoryStore as WebState

    require_web()
    state = WebState(config.window_seconds, config.web_history, services=True)
    if not config.out.is_dir():
        state.load_rows(read_history(config.out, config.web_history, config.utc))
    return state


def run(config: Config) -> int:
    reporter = Reporter(config.quiet, config.status_interval)
    try:
        web_state = _web_state(config) if config.web else None
    except TrafficCaptureError as error:
        return fail(error)
    sinks = FanOut(make_sinks(config, reporter, web_state))
    try:
        sinks.check()
        source = FileSource(config.read, config.bpf_filter) if config.read else _open_live(
            config, reporter)
    except TrafficCaptureError as error:
        return fail(error)
    try:
        sinks.open()
    except TrafficCaptureError as error:
        source.close()
        return fail(error)
    capture = Run(config, source, sinks, reporter)
    if web_state is not None:
        try:
            capture.serve_web(web_state)
        except TrafficCaptureError as error:
            source.close()
            return fail(error)
    if config.http_ports != HTTP_PORTS:
        reporter.info(f"counting as http: TCP ports {ports_text(config.http_ports)} "
                      "(--http-ports)")
    if config.packet_log:
        reporter.info(f"packet log: {config.packet_log} (readable by its owner only; it holds "
                      "payload previews" + (" and payloads" if config.packet_log_payload else "")
                      + ")")
    if source.live:
        zone = "UTC" if config.utc else "local time"
        reporter.info(f"capturing on {source.description}; rows every {config.window_seconds} s "
                      f"({zone}) to {config.out}; Ctrl+C to stop")
    return capture.run()


def ports_text(ports: frozenset[int]) -> str:
    return ", ".join(map(str, sorted(ports)))


def _open_live(config: Config, reporter: Reporter) -> Source:
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

    def __init__(self, config: Config, source: Source, sinks: FanOut, reporter: Reporter
                 ) -> None:
        self.config, self.source, self.sinks, self.reporter = config, source, sinks, reporter
        self.pipeline = Pipeline(config.servers, config.window_seconds, sinks.window,
                                 sinks.packet_tap, sinks.packet_frames, config.max_clients,
                                 config.http_ports,
                                 frames_limit=config.live_snaplen() if source.live else None)
        self.stop = threading.Event()
        self.error: str | None = None
        self._capture = threading.Thread(target=self._capture_loop, name="capture", daemon=True)
        self.started = time.time()
        self._source_done = threading.Event()
        self.web: WebServer | None = None
        self.injector: Injector | None = None

    def serve_web(self, state: WebState) -> None:
        """Start the dashboard (before capture, so that a port in use stops nothing)."""
        from traffic_capture.web.api import WebApp
        from traffic_capture.web.http_server import WebServer

        assert self.config.web is not None
        inject = None
        if self.config.debug_inject:
            from traffic_capture.web.inject import Injector

            injector = self.injector = Injector(self.config.servers)

            def inject(request: Any) -> int:
                return injector.inject(request.client, request.direction, request.protocol,
                                       request.bytes, request.count)

        web = WebApp(state, self.web_status, self.config.web_token, inject)
        self.web = WebServer(web, *self.config.web)
        self.web.start()
        self.reporter.info(f"dashboard at {self.web.url}"
                           + (" (token required)" if self.config.web_token else ""))

    def web_status(self) -> dict[str, Any]:
        """/api/status's capture part."""
        snapshot = self.snapshot()
        c = snapshot.counters
        csv = next(f for f in snapshot.sinks if f.name == "csv")
        return {
            "mode": "capture", "live": self.source.live, "source": self.source.description,
            "servers": [str(network) for network in self.config.servers.networks],
            "csv": str(self.config.out), "started": int(self.started),
            "uptime_seconds": round(time.time() - self.started, 1),
            "packets_seen": c.packets_seen, "packets_counted": c.packets_counted,
            "bytes_counted": c.bytes_counted, "windows_closed": c.windows_closed,
            "kernel_drops": snapshot.kernel_drops, "rows_written": csv.written,
            "rows_pending": csv.pending, "source_done": self._source_done.is_set(),
        }

    def snapshot(self) -> Snapshot:
        """What the status line shows, read in one go from any thread."""
        progress = self.source.progress()
        return Snapshot(self.pipeline.counters, self.source.kernel_drops(),
                        self.sinks.figures(), progress)

    def run(self) -> int:
        restore = self._install_stop_signals()
        timer = None
        try:
            self.sinks.start()
            self.reporter.start(self.snapshot, with_progress=not self.source.live)
            if self.config.duration and self.source.live:
                timer = threading.Timer(self.config.duration, self.stop.set)
                timer.daemon = True
                timer.start()
            self._capture.start()
            wait_for(self._capture)
            if self.web is not None:
                self.web.stop()
            self.stop.set()  # the capture is over: a Ctrl+C now hurries the outputs
            self.sinks.stop()
        finally:
            if timer is not None:
                timer.cancel()
            if self.web is not None:
                self.web.stop()
            self.reporter.stop(self.snapshot)
            restore()
        self._summarise()
        return fail(self.error) if self.error else EXIT_OK

    def _capture_loop(self) -> None:
        pipeline, source = self.pipeline, self.source
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
        if self.web is not None and not self.stop.is_set() and self.error is None:
            # A file read with --web: once its rows are written (the CSV and the dashboard
            # agree), the dashboard stays up (injected packets counted by the wall clock) until
            # Ctrl+C or SIGTERM.
            while any(f.pending for f in self.sinks.figures() if not f.failed) \
                    and not self.stop.wait(0.05):
                pass
            self.reporter.info(f"{source.description} read; the dashboard stays at "
                               f"{self.web.url} until Ctrl+C")
            while not self.stop.wait(0.2):
                self._feed_injected()
                pipeline.advance(time.time_ns())
            pipeline.finish()

    def _feed_injected(self) -> None:
        if self.injector is not None:
            batch = self.injector.drain()
            if batch is not None:
                self.pipeline.feed_batch(batch)

    def _summarise(self) -> None:
        reporter, c = self.reporter, self.pipeline.counters
        figures = self.sinks.figures()
        names = {"csv": str(self.config.out), "log": str(self.config.packet_log)}
        where = ", ".join(names.get(f.name, f.name) for f in figures if f.name != "view")
        side = [str(path) for f in figures for path in f.side_files]
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
        for f in figures:
            if f.dropped and f.name == "log":
                reporter.warn(f"packet log: {f.dropped:,} of {f.written + f.dropped:,} lines "
                              "were dropped (the log could not keep up, or the disk refused "
                              "them); the CSV counts every packet")
            elif f.dropped and f.name == "view":
                reporter.info(f"viewer: {f.dropped:,} packets were not shown (the window "
                              "fell behind); the CSV and the log have them")
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
        def on_signal(signum: int, frame: Any) -> None:
            if self.stop.is_set():
                self.sinks.hurry()  # a second Ctrl+C: don't wait for a locked file any longer
            self.stop.set()

        def on_hangup(signum: int, frame: Any) -> None:
            self.sinks.reopen()

        previous = {}
        for name in ("SIGINT", "SIGTERM", "SIGBREAK", "SIGHUP"):
            number = getattr(signal, name, None)
            if number is not None:
                previous[number] = signal.signal(
                    number, on_hangup if name == "SIGHUP" else on_signal)

        def restore() -> None:
            for number, handler in previous.items():
                signal.signal(number, handler)

        return restore


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")
