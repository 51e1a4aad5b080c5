"""The command line: arguments -> a checked Config, then the daemon (or a subcommand).

Every option is documented in --help and in the README's table; errors are one line on stderr,
exit 2 for a usage error, 1 for a runtime error, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

from traffic_capture import __version__
from traffic_capture.config import SERVER_IP_ENV, Config
from traffic_capture.csvformat import DELIMITER_NAMES
from traffic_capture.errors import EXIT_USAGE, PROG
from traffic_capture.rules import (
    DEFAULT_OUT,
    DEFAULT_WINDOW_SECONDS,
    SNAPLEN_COUNTING,
    SNAPLEN_MAX,
    SNAPLEN_MIN,
    SNAPLEN_PACKETS,
)
from traffic_capture.servers import InvalidServerAddress, ServerSet, parse_server

SUBCOMMANDS = {
    "excel": "traffic_capture.excel.dashboard",
    "report": "traffic_capture.excel.report",
    "view": "traffic_capture.viewer.command",  # with --log; without, a capture with --view
}
SCRIPT_CONSTANT = "SERVER_IP in traffic_capture.py"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{PROG}: error: {message} (see {PROG} --help)\n")
        sys.exit(EXIT_USAGE)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1 second, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def _megabytes(text: str) -> int:
    """--packet-log-max-mb -> bytes (0: no rotation)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of megabytes") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 (no rotation) or more, got {text}")
    return int(value * 1024 * 1024)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _snaplen(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of bytes") from None
    if not SNAPLEN_MIN <= value <= SNAPLEN_MAX:
        raise argparse.ArgumentTypeError(
            f"must be {SNAPLEN_MIN} to {SNAPLEN_MAX} bytes (counting needs {SNAPLEN_MIN}), "
            f"got {text}")
    return value


def _delimiter(text: str) -> str:
    try:
        return DELIMITER_NAMES[text]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"{text!r} cannot separate fields; use ',' (default), ';' (pt-BR, de-DE Excel), "
            "'tab' or '|'") from None


def build_parser(default_window: int, script: bool = False) -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Count the traffic of one or more servers per client, direction and protocol "
                    "in tumbling windows, appending rows to a CSV that Excel reads.",
        epilog=f"Other commands: '{PROG} excel --help' (ready-made pivot dashboard), "
               f"'{PROG} report --help' (static report), '{PROG} view --help' (the packet "
               "viewer window). Exit status: 0 done (Ctrl+C, SIGTERM "
               "and --duration are normal ends), 1 runtime error, 2 usage error.",
    )
    add = parser.add_argument
    add("--server-ip", action="append", default=[], metavar="ADDR",
        help="server address (IPv4, IPv6) or network (CIDR); repeat for several. Default: "
             + (f"{SCRIPT_CONSTANT}, then " if script else "")
             + f"${SERVER_IP_ENV} (comma-separated), then the capture interfaces' addresses")
    add("--iface", action="append", default=[], metavar="NAME",
        help="interface to capture on; repeat for several. Default: the interfaces holding a "
             "server address (loopback for 127.0.0.1), else the default route's")
    add("--list-interfaces", action="store_true",
        help="print the interfaces with their addresses and exit")
    add("--read", action="append", default=[], type=Path, metavar="FILE",
        help="read a pcap/pcapng file instead of capturing; repeat to merge several by time")
    add("--window", type=_positive_int, default=default_window, metavar="SECONDS",
        help=f"window length in whole seconds (default {default_window})")
    add("--out", type=Path, default=Path(DEFAULT_OUT), metavar="PATH",
        help=f"CSV to append to (default {DEFAULT_OUT})")
    add("--filter", dest="bpf_filter", metavar="BPF",
        help="extra capture filter in tcpdump syntax, e.g. 'tcp port 443'")
    add("--delimiter", type=_delimiter, default=",", metavar="CHAR",
        help="field separator: ',' (default) or ';' for Excel set to pt-BR, de-DE...; "
             "also 'tab', '|'")
    add("--duration", type=_positive_float, metavar="SECONDS",
        help="stop by itself after this long (live capture)")
    add("--quiet", action="store_true", help="no status line nor start-up messages")
    add("--backend", choices=("auto", "linux", "pcap"), default="auto",
        help="live capture back end: 'linux' packet sockets (fast, Linux only), 'pcap' "
             "libpcap/Npcap (portable); auto picks linux on Linux")
    log = parser.add_argument_group(
        "packet log and viewer", "every counted packet, with a preview and MD5 of its payload: "
        "payloads can hold passwords and personal data; the log is created readable by its "
        "owner only")
    log.add_argument("--packet-log", type=Path, metavar="PATH",
                     help="also write one JSON object per counted packet to PATH (NDJSON)")
    log.add_argument("--packet-log-payload", action="store_true",
                     help="add each packet's captured payload in hex (payload_hex)")
    log.add_argument("--packet-log-max-mb", type=_megabytes, default=0, metavar="MB",
                     help="rotate the log when it would pass MB megabytes: PATH becomes PATH.1, "
                          "PATH.1 PATH.2... (default: no rotation)")
    log.add_argument("--packet-log-keep", type=_count, default=5, metavar="N",
                     help="rotated files kept besides PATH (default 5)")
    log.add_argument("--snaplen", type=_snaplen, metavar="BYTES",
                     help=f"bytes kept of each live packet: {SNAPLEN_COUNTING} for counting, "
                          f"{SNAPLEN_PACKETS} (a full Ethernet packet) with --packet-log or "
                          f"--view; {SNAPLEN_MIN}-{SNAPLEN_MAX}")
    log.add_argument("--view", action="store_true",
                     help="show the packets live in a desktop window (tkinter, its own process); "
                          f"'{PROG} view --log PATH' follows a packet log instead")
    add("--version", action="version", version=f"{PROG} {__version__}")
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
    parser = build_parser(default_window, script)
    args = parser.parse_args(argv)
    if args.list_interfaces:
        return None
    if args.read and args.iface:
        parser.error("--read and --iface exclude each other: read files or capture live")
    if args.read and args.duration:
        parser.error("--duration applies to live capture, not to --read")
    if args.read and args.snaplen:
        parser.error("--snaplen applies to live capture; a capture file keeps what it holds")
    if not args.packet_log:
        for flag, given in (("--packet-log-payload", args.packet_log_payload),
                            ("--packet-log-max-mb", args.packet_log_max_mb),
                            ("--packet-log-keep", args.packet_log_keep != 5)):
            if given:
                parser.error(f"{flag} needs --packet-log PATH")
    try:
        servers, origin = servers_from_sources(args.server_ip, default_server_ip,
                                               os.environ.get(SERVER_IP_ENV))
    except InvalidServerAddress as error:
        parser.error(str(error))
    if servers is None and args.read:
        parser.error("--read needs --server-ip: a capture file does not say which host is the "
                     "server")
    return Config(
        servers=servers or ServerSet(()),
        servers_from=origin,
        read=args.read,
        interfaces=args.iface,
        window_seconds=args.window,
        out=args.out,
        bpf_filter=args.bpf_filter,
        delimiter=args.delimiter,
        duration=args.duration,
        quiet=args.quiet,
        backend=args.backend,
        packet_log=args.packet_log,
        packet_log_payload=args.packet_log_payload,
        packet_log_max_bytes=args.packet_log_max_mb,
        packet_log_keep=args.packet_log_keep,
        snaplen=args.snaplen,
        view=args.view,
    )


def _follows_a_log(argv: list[str]) -> bool:
    return any(a == "--log" or a.startswith("--log=") or a in ("-h", "--help") for a in argv)


def main(argv: list[str] | None = None, default_server_ip: str = "",
         default_window: int = DEFAULT_WINDOW_SECONDS, script: bool = False) -> int:
    """The console script, `python -m traffic_capture` and (with script=True and the file's
    constants) `python traffic_capture.py`."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "view" and not _follows_a_log(argv[1:]):
        argv = [*argv[1:], "--view"]  # `view` without --log: a capture run with its window
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        module = importlib.import_module(SUBCOMMANDS[argv[0]])
        return int(module.main(argv[1:]))
    config = parse_config(argv, default_server_ip, default_window, script)
    from traffic_capture import app

    if config is None:
        return app.print_interfaces()
    return app.run(config)
