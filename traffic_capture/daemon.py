"""The daemon: a source feeds the pipeline in this thread, the writer thread appends the rows.

Threads, signals and the clock live here, around the pure core. Whatever happens (Ctrl+C,
SIGTERM, --duration, a bad packet, a locked file), what was counted is written before exit.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from traffic_capture.batch import Batch
from traffic_capture.classify import InvalidServerAddress, ServerSet, parse_server
from traffic_capture.cli import EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, PROG, Config
from traffic_capture.csv_sink import OutputError, check_output, create_output
from traffic_capture.interfaces import (
    InterfaceError,
    default_interfaces,
    format_interface_list,
    interface_addresses,
    list_interfaces,
    npcap_missing_message,
    privilege_message,
    resolve_interfaces,
)
from traffic_capture.parse import DLT_EN10MB, UnknownLinkType
from traffic_capture.pipeline import Pipeline
from traffic_capture.sources.bpf import FilterError, check_filter, combined_filter
from traffic_capture.sources.files import (
    CaptureFile,
    CaptureFileError,
    PrefilterError,
    merged_batches,
    open_capture_files,
    prefilter,
    read_position,
    total_size,
)
from traffic_capture.status import Reporter
from traffic_capture.writer import CsvWriter


class LiveSource(Protocol):
    interfaces: list[str]

    def batches(self, stop: threading.Event) -> Iterator[Batch | None]:
        """Batches of packets as they come; None when idle (windows then close by the clock)."""

    def kernel_drops(self) -> int: ...

    def close(self) -> None: ...


class StartError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_RUNTIME) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def fail(message: str, exit_code: int = EXIT_RUNTIME) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return exit_code


def print_interfaces() -> int:
    try:
        print(format_interface_list(list_interfaces()))
    except OSError as error:
        return fail(f"cannot list interfaces: {error}")
    return EXIT_OK


def run(config: Config) -> int:
    reporter = Reporter(config.quiet)
    try:
        check_output(config.out, config.delimiter)
        if config.read:
            return _read_files(config, reporter)
        source = _open_live(config, reporter)
    except StartError as error:
        return fail(str(error), error.exit_code)
    except (OutputError, CaptureFileError) as error:
        return fail(str(error))
    try:
        create_output(config.out, config.delimiter)
    except OutputError as error:
        source.close()
        return fail(str(error))
    return _run_live(config, source, reporter)


def _open_live(config: Config, reporter: Reporter) -> LiveSource:
    backend = config.backend
    if backend == "auto":
        backend = "linux" if sys.platform.startswith("linux") else "pcap"
    try:
        known = list_interfaces()
    except (OSError, ImportError) as error:
        raise StartError(_capture_unavailable(error)) from None
    try:
        if config.interfaces:
            chosen = resolve_interfaces(config.interfaces, known)
        else:  # with no server yet, the set is empty and the default route's interface wins
            chosen = default_interfaces(config.servers, known)
    except InterfaceError as error:
        raise StartError(str(error), EXIT_USAGE) from None
    if not config.servers:
        addresses = interface_addresses(chosen)
        if not addresses:
            raise StartError(f"{', '.join(i.name for i in chosen)} has no address to use as the "
                             "server: give --server-ip", EXIT_USAGE)
        try:
            config.servers = ServerSet(parse_server(a) for a in addresses)
        except InvalidServerAddress as error:
            raise StartError(str(error), EXIT_USAGE) from None
    bpf = _kernel_filter(config, reporter)
    devices = [i.device for i in chosen]
    try:
        if backend == "linux":
            from traffic_capture.sources.live_linux import LinuxLiveSource

            source: LiveSource = LinuxLiveSource(devices, bpf)
        else:
            from traffic_capture.sources.live_pcap import PcapLiveSource

            source = PcapLiveSource(devices, bpf)
    except PermissionError:
        raise StartError(privilege_message(sys.platform)) from None
    except ImportError as error:
        raise StartError(_capture_unavailable(error)) from None
    except OSError as error:
        if "permission" in str(error).lower() or "operation not permitted" in str(error).lower():
            raise StartError(privilege_message(sys.platform)) from None
        raise StartError(f"cannot capture on {', '.join(devices)}: {error}") from None
    reporter.info(f"server addresses: {config.servers} (from {config.servers_from})")
    reporter.info(f"capturing on {', '.join(i.name for i in chosen)}; rows every "
                  f"{config.window_seconds} s to {config.out}; Ctrl+C to stop")
    return source


def _capture_unavailable(error: BaseException) -> str:
    if sys.platform.startswith("win"):
        return npcap_missing_message()
    return f"packet capture is not available: {error}"


def _kernel_filter(config: Config, reporter: Reporter) -> str | None:
    expression = combined_filter(config.servers, config.bpf_filter)
    try:
        check_filter(expression, DLT_EN10MB)
    except FilterError as error:
        if config.bpf_filter:
            raise StartError(str(error), EXIT_USAGE) from None
        reporter.info(f"{error}; filtering in user space instead")
        return None
    return expression


def _install_stop_signals(stop: threading.Event, writer: CsvWriter) -> Callable[[], None]:
    """Stop on Ctrl+C, SIGTERM...; returns what puts the previous handlers back."""
    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():
            writer.hurry.set()  # a second Ctrl+C: don't wait for a locked file any longer
        stop.set()

    previous = {}
    for name in ("SIGINT", "SIGTERM", "SIGBREAK", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is not None:
            previous[number] = signal.signal(number, on_signal)

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)

    return restore


def _describe(pipeline: Pipeline, writer: CsvWriter,
              drops: Callable[[], int] | None = None) -> Callable[[], str]:
    counters = pipeline.counters

    def describe() -> str:
        text = (f"packets {counters.packets_seen:,} seen, {counters.packets_counted:,} counted | "
                f"windows {counters.windows_closed:,} | rows {writer.rows_written:,} written, "
                f"{writer.rows_pending:,} pending")
        if drops is not None:
            text += f" | kernel drops {drops():,}"
        return text

    return describe


@dataclass
class _Run:
    """The moving parts of one run, from start to finish."""

    pipeline: Pipeline
    writer: CsvWriter
    stop: threading.Event
    restore_signals: Callable[[], None]


def _start(config: Config, reporter: Reporter) -> _Run:
    writer = CsvWriter(config.out, config.delimiter, reporter.warn, reporter.info)
    pipeline = Pipeline(config.servers, config.window_seconds, writer.put)
    stop = threading.Event()
    restore = _install_stop_signals(stop, writer)
    writer.start()
    return _Run(pipeline, writer, stop, restore)


def _finish(config: Config, run: _Run, reporter: Reporter) -> None:
    pipeline, writer = run.pipeline, run.writer
    pipeline.finish()
    writer.stop()
    run.restore_signals()
    c = pipeline.counters
    where = f"{config.out}" + (f" (and {writer.side_file})" if writer.side_file else "")
    reporter.info(f"done: {c.packets_seen:,} packets, {c.packets_counted:,} counted "
                  f"({c.bytes_counted:,} bytes) in {c.rows_made:,} rows over "
                  f"{c.windows_closed:,} windows, written to {where}")


def _read_files(config: Config, reporter: Reporter) -> int:
    if not config.bpf_filter:
        return _run_files(config, open_capture_files(config.read), reporter, set())
    try:
        check_filter(config.bpf_filter, DLT_EN10MB)
    except FilterError as error:
        return fail(str(error), EXIT_USAGE)
    with tempfile.TemporaryDirectory(prefix="traffic-capture-") as folder:
        paths, cut_short = [], set()
        for path in config.read:
            try:
                filtered, truncated = prefilter(path, config.bpf_filter, Path(folder))
            except PrefilterError as error:
                return fail(str(error), EXIT_USAGE)
            paths.append(filtered)
            if truncated:
                cut_short.add(path)
        files = open_capture_files(paths, shown_as=config.read)
        return _run_files(config, files, reporter, cut_short)


def _run_files(config: Config, files: list[CaptureFile], reporter: Reporter,
               cut_short: set[Path]) -> int:
    try:
        create_output(config.out, config.delimiter)
    except OutputError as error:
        return fail(str(error))
    run = _start(config, reporter)
    pipeline, stop = run.pipeline, run.stop
    describe = _describe(pipeline, run.writer)
    reporter.start(describe, total_bytes=total_size(files),
                   position=lambda: read_position(files))
    error_message = ""
    try:
        for batch in merged_batches(files):
            pipeline.feed_batch(batch)
            if stop.is_set():
                break
    except UnknownLinkType as error:
        error_message = f"{', '.join(map(str, config.read))}: {error}"
    finally:
        reporter.stop(describe, position=lambda: read_position(files))
        _finish(config, run, reporter)
    for capture in files:
        if capture.damaged:
            reporter.warn(f"{capture.shown_as} is damaged ({capture.damaged}): counted every "
                          "packet before the damage, nothing after it")
        elif capture.truncated or capture.shown_as in cut_short:
            reporter.warn(f"{capture.shown_as} ends in the middle of a packet (a capture that was "
                          "killed?): counted every complete packet before the cut")
    # Last, once the status line is gone and what was counted is written.
    return fail(error_message) if error_message else EXIT_OK


def _run_live(config: Config, source: LiveSource, reporter: Reporter) -> int:
    run = _start(config, reporter)
    pipeline, stop = run.pipeline, run.stop
    describe = _describe(pipeline, run.writer, source.kernel_drops)
    reporter.start(describe)
    timer = None
    if config.duration:
        timer = threading.Timer(config.duration, stop.set)
        timer.daemon = True
        timer.start()
    error_message = ""
    try:
        for batch in source.batches(stop):
            if batch is None:
                pipeline.advance(time.time_ns())
            else:
                pipeline.feed_batch(batch)
    except UnknownLinkType as error:
        error_message = str(error)
    except OSError as error:
        error_message = f"capture stopped: {error}"
    finally:
        if timer is not None:
            timer.cancel()
        drops = source.kernel_drops()
        reporter.stop(describe)
        source.close()
        _finish(config, run, reporter)
    if drops:
        reporter.warn(f"kernel drops: {drops:,} packets were dropped by the kernel before they "
                      "could be counted (the capture could not keep up); the rows miss them")
    else:
        reporter.info("kernel drops: 0")
    return fail(error_message) if error_message else EXIT_OK
