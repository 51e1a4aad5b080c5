"""The command line: arguments -> a checked Config, then the daemon (or a subcommand).

Every option is documented in --help and in the README's table; errors are one line on stderr,
exit 2 for a usage error, 1 for a runtime error, never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from traffic_capture import argtypes
from traffic_capture.config import SERVER_IP_ENV, Config, Enabled
from traffic_capture.errors import PROG, UsageError
from traffic_capture.outputs import registered
from traffic_capture.rules import (
    DEFAULT_MAX_CLIENTS,
    DEFAULT_STATUS_INTERVAL,
    DEFAULT_WINDOW_SECONDS,
    HTTP_PORTS,
    SNAPLEN_COUNTING,
    SNAPLEN_MAX,
    SNAPLEN_MIN,
    SNAPLEN_PACKETS,
)
from traffic_capture.servers import InvalidServerAddress, ServerSet, parse_server
from traffic_capture.version import __version__

BLAS_THREADS_ENV = "OPENBLAS_NUM_THREADS"  # numpy's Windows and Linux wheels use OpenBLAS
SUBCOMMANDS = {
    "excel": "traffic_capture.excel.dashboard",
    "report": "traffic_capture.excel.report",
    "serve": "traffic_capture.web.command",
    "history": "traffic_capture.history.command",
    "clickhouse": "traffic_capture.fleet.command",
    "view": "traffic_capture.viewer.command",  # with --log; without, a capture with --view
}
SCRIPT_CONSTANT = "SERVER_IP in traffic_capture.py"


def build_parser(default_window: int, script: bool = False) -> argparse.ArgumentParser:
    """The capture run's options, then each registered output's, in its own group."""
    parser = argtypes.Parser(
        prog=PROG,
        description="Count the traffic of one or more servers per client, direction and protocol "
                    "in tumbling windows, appending rows to a CSV that Excel reads.",
        epilog=f"Other commands: '{PROG} excel --help' (ready-made pivot dashboard), "
               f"'{PROG} report --help' (static report), '{PROG} serve --help' (the web dashboard "
               f"of a CSV or a history), '{PROG} history --help' (load CSVs into a history), "
               f"'{PROG} view --help' (the packet viewer window), '{PROG} service-unit "
               "--help' (a systemd unit). Exit status: 0 done (Ctrl+C, SIGTERM "
               "and --duration are normal ends), 1 runtime error, 2 usage error.",
    )
    add = parser.add_argument
    add("--server-ip", action="append", default=[], metavar="ADDR",
        help="server address (IPv4, IPv6) or network (CIDR); repeat for several. Default: "
             + (f"{SCRIPT_CONSTANT}, then " if script else "")
             + f"${SERVER_IP_ENV} (comma-separated), then the capture interfaces' addresses")
    add("--iface", dest="interfaces", action="append", default=[], metavar="NAME",
        help="interface to capture on; repeat for several. Default: the interfaces holding a "
             "server address (loopback for 127.0.0.1), else the default route's")
    add("--list-interfaces", action="store_true",
        help="print the interfaces with their addresses and exit")
    add("--read", action="append", default=[], type=Path, metavar="FILE",
        help="read a pcap/pcapng file (also gzip) instead of capturing; repeat to merge several "
             "by time. '-' reads standard input as a stream (tcpdump -w - | ...), as does a "
             "named pipe: rows are written as the packets' time passes")
    add("--window", dest="window_seconds", type=argtypes.seconds, default=default_window,
        metavar="SECONDS", help=f"window length in whole seconds (default {default_window})")
    add("--filter", dest="bpf_filter", metavar="BPF",
        help="extra capture filter in tcpdump syntax, e.g. 'tcp port 443'")
    add("--http-ports", type=argtypes.ports, default=HTTP_PORTS, metavar="LIST",
        help="TCP ports whose bytes count as http, comma-separated (default "
             f"{','.join(map(str, sorted(HTTP_PORTS)))}); e.g. 80,443,8080 to count TLS web "
             "traffic as http too. FTP's 20 and 21 still win")
    add("--utc", action="store_true",
        help="write window times in UTC instead of local time (no repeated hour when the "
             "clocks go back; for servers in several time zones)")
    add("--fsync", action="store_true",
        help="for those who cannot lose a window on power loss: rows are always flushed to "
             "the disk within a second (a live capture's windows: as they are written); with "
             "--fsync every window is, however fast a file is read, and so are a new file's "
             "folder entry (a new day, a rotation) and each batch of packet-log lines")
    add("--max-clients", type=argtypes.limit, default=DEFAULT_MAX_CLIENTS, metavar="N",
        help=f"clients per window and direction (default {DEFAULT_MAX_CLIENTS:,}); under a "
             "flood of spoofed sources the rest are folded into one row per direction with "
             "client_ip 'other', bytes conserved, and a client with 1/N of the window's bytes "
             "always keeps its own row. 0: no limit")
    add("--duration", type=argtypes.positive_seconds, metavar="SECONDS",
        help="stop by itself after this long (live capture)")
    add("--no-reopen", dest="reopen", action="store_false",
        help="stop (exit 1) when a capture interface goes down or away, instead of resuming "
             "on it when it is back")
    add("--quiet", action="store_true", help="no status line nor start-up messages")
    add("--status-interval", type=argtypes.seconds_or_zero, default=DEFAULT_STATUS_INTERVAL,
        metavar="SECONDS",
        help="when stderr is not a terminal (a service, a log file): one status line every "
             f"SECONDS (default {DEFAULT_STATUS_INTERVAL:g}; 0: none)")
    add("--backend", choices=("auto", "linux", "pcap"), default="auto",
        help="live capture back end: 'linux' packet sockets (fast, Linux only), 'pcap' "
             "libpcap/Npcap (portable); auto picks linux on Linux")
    add("--snaplen", type=argtypes.snaplen, metavar="BYTES",
        help=f"bytes kept of each live packet: {SNAPLEN_COUNTING} for counting, "
             f"{SNAPLEN_PACKETS} (a full Ethernet packet) with an output that shows payloads "
             f"(--packet-log, --view); {SNAPLEN_MIN}-{SNAPLEN_MAX}")
    add("--version", action="version", version=f"{PROG} {__version__}")
    groups: dict[str, argparse._ActionsContainer] = {}
    for output in registered():
        group: argparse._ActionsContainer = parser
        if output.title is not None:
            if output.title not in groups:
                groups[output.title] = parser.add_argument_group(output.title,
                                                                 output.description)
            group = groups[output.title]
        output.add_options(group)
    return parser


def servers_from_sources(cli_values: list[str], constant: str,
                         environment: str | None) -> tuple[ServerSet | None, str]:
    """The first non-empty source in the documented order; None means 'use the interfaces'."""
    for values, origin in ((cli_values, "--server-ip"),
                           (_split(constant), SCRIPT_CONSTANT),
                           (_split(environment or ""), f"${SERVER_IP_ENV}")):
        if values:
            try:
                return ServerSet(parse_server(v) for v in values), origin
            except InvalidServerAddress as error:
                raise InvalidServerAddress(f"{error} (from {origin})") from None
    return None, "the capture interfaces' addresses"


def _split(text: str) -> list[str]:
    return [part for part in text.replace(",", " ").split() if part]


def parse_config(argv: list[str], default_server_ip: str = "",
                 default_window: int = DEFAULT_WINDOW_SECONDS, script: bool = False
                 ) -> Config | None:
    """None when the command only lists interfaces."""
    return config_of(build_parser(default_window, script), argv, default_server_ip)


def config_of(parser: argparse.ArgumentParser, argv: list[str],
              default_server_ip: str = "") -> Config | None:
    args = parser.parse_args(argv)
    if args.list_interfaces:
        return None
    if args.read and args.interfaces:
        parser.error("--read and --iface exclude each other: read files or capture live")
    if args.read and args.duration:
        parser.error("--duration applies to live capture, not to --read")
    if args.read and args.snaplen:
        parser.error("--snaplen applies to live capture; a capture file keeps what it holds")
    try:
        servers, origin = servers_from_sources(args.server_ip, default_server_ip,
                                               os.environ.get(SERVER_IP_ENV))
    except InvalidServerAddress as error:
        parser.error(str(error))
    if servers is None and args.read:
        parser.error("--read needs --server-ip: a capture file does not say which host is the "
                     "server")
    outputs = []
    for output in registered():
        try:
            settings = output.settings(args)
        except UsageError as error:
            parser.error(str(error))
        if settings is not None:
            outputs.append(Enabled(output, settings))
    special = {"servers", "servers_from", "outputs"}
    given: dict[str, Any] = {f.name: getattr(args, f.name) for f in fields(Config)
                             if f.name not in special and hasattr(args, f.name)}
    return Config(servers=servers or ServerSet(()), servers_from=origin, outputs=outputs,
                  **given)


def service_unit(argv: list[str]) -> int:
    """Print a systemd unit running the daemon with these capture options, checked first."""
    if argv and argv[0] in ("-h", "--help"):
        print(f"usage: {PROG} service-unit [capture options...]\n\nPrint a systemd unit that "
              f"runs '{PROG} [capture options]' as a dedicated user holding only the capture "
              "capabilities, writing to /var/lib/traffic-capture/traffic.csv unless --out says "
              f"otherwise. The capture options are those of '{PROG} --help' (not --read). A "
              "web token is never written into the unit: the unit loads it from a file only "
              "root can read (LoadCredential=), which this command writes when it is given "
              "the token.")
        return 0
    from traffic_capture import service_unit as unit

    parser = build_parser(DEFAULT_WINDOW_SECONDS)
    if not any(a == "--out" or a.startswith("--out=") for a in argv):
        argv = [*argv, "--out", str(unit.DEFAULT_CSV)]  # the state folder systemd makes
    if not any(a == "--history" or a.startswith("--history=") for a in argv):
        argv = [*argv, "--history", str(unit.DEFAULT_HISTORY)]
    config = config_of(parser, argv)
    if config is None or config.read:
        parser.error("service-unit takes live capture options, not --read or "
                     "--list-interfaces")
    try:
        unit.check_for_service(config)
        print(unit.unit_for(sys.executable, parser, argv, config), end="")
    except UsageError as error:
        parser.error(str(error))
    return 0


def _follows_a_log(argv: list[str]) -> bool:
    return any(a == "--log" or a.startswith("--log=") or a in ("-h", "--help") for a in argv)


def main(argv: list[str] | None = None, default_server_ip: str = "",
         default_window: int = DEFAULT_WINDOW_SECONDS, script: bool = False) -> int:
    """The console script, `python -m traffic_capture` and (with script=True and the file's
    constants) `python traffic_capture.py`."""
    # numpy's BLAS starts a thread per core at import, which spins for a while; nothing here
    # multiplies matrices, so that is CPU taken from the capture (0.1 s of a 1 M-packet file).
    os.environ.setdefault(BLAS_THREADS_ENV, "1")
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "service-unit":
        return service_unit(argv[1:])
    if argv and argv[0] == "view" and not _follows_a_log(argv[1:]):
        argv = [*argv[1:], "--view"]  # `view` without --log: a capture run with its window
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        module = importlib.import_module(SUBCOMMANDS[argv[0]])
        return int(module.main(argv[1:]))
    # Start-up makes long-lived objects (modules, classes, options): searching them for
    # garbage, then and at every later full collection, is wasted time (5 ms of a run's start).
    # (What exists now is frozen for good: a caller that runs main() in its own process keeps
    # its objects of that moment.)
    collecting = gc.isenabled()
    gc.disable()
    try:
        config = parse_config(argv, default_server_ip, default_window, script)
        from traffic_capture import app
    finally:
        gc.freeze()  # what exists now is never searched again
        if collecting:
            gc.enable()

    if config is None:
        return app.print_interfaces()
    return app.run(config)
