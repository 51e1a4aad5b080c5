"""--clickhouse URL: every closed window's rows also go to one ClickHouse that many servers
share, each row with the name of the server it was counted on (--server-name).

This module states the options and builds the sink (clickhouse_sink.py), which is imported only
with --clickhouse: a run without it loads none of the sending, the spool or their libraries.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from traffic_capture import argtypes
from traffic_capture.errors import UsageError
from traffic_capture.fleet.credential_names import PASSWORD_CREDENTIAL, PASSWORD_ENV, USER_ENV
from traffic_capture.secrets import FROM_CREDENTIAL, FROM_FILE
from traffic_capture.sinks import Credential, Output, OutputContext, Sink
from traffic_capture.sinks.clickhouse_settings import (
    DEFAULT_BATCH_ROWS,
    DEFAULT_BATCH_SECONDS,
    DEFAULT_SPOOL_MAX,
    DEFAULT_TIMEOUT_SECONDS,
    ClickHouseSettings,
)

SPOOL_FOLDER = "clickhouse-spool"  # beside the CSV unless --clickhouse-spool says otherwise
# Where `service-unit` keeps the password given in $TRAFFIC_CLICKHOUSE_PASSWORD (root's alone).
SERVICE_PASSWORD_FILE = Path("/etc/traffic-capture/clickhouse-password")
PASSWORD_OPTION = "--clickhouse-password-file"


def _rows(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of rows (1 or more)")
    return int(text)


def _no_password(text: str) -> str:
    """--clickhouse-password is refused without repeating its value (argparse would otherwise
    take it as an abbreviation of --clickhouse-password-file, and name it as a file)."""
    raise argparse.ArgumentTypeError(
        f"a password on the command line shows in every user's process list: put it in "
        f"${PASSWORD_ENV}, in a file named by --clickhouse-password-file, or in systemd's "
        f"credential '{PASSWORD_CREDENTIAL}'")


def server_name(given: str | None) -> str:
    """--server-name, else the host's name: what the fleet's views call this server."""
    import socket

    name = (given if given is not None else socket.gethostname()).strip()
    if not name or len(name) > 200 or any(c < " " for c in name):
        raise UsageError("--server-name must be 1 to 200 printable characters")
    return name


def default_spool(out: Path) -> Path:
    return out.parent / SPOOL_FOLDER


class ClickHouseOutput(Output[ClickHouseSettings]):
    """One ClickHouse shared by many servers, as an output of the capture run."""

    name = "clickhouse"
    title = "many servers into one ClickHouse (the 'clickhouse' extra)"
    secret_options = ("--clickhouse-password-file",)

    def add_options(self, group: argparse._ActionsContainer) -> None:
        add = group.add_argument
        add("--clickhouse", metavar="URL",
            help="also send every closed window's rows to ClickHouse: http://HOST:8123/DATABASE "
                 "or https://HOST:8443/DATABASE (chdb://FOLDER/DATABASE: ClickHouse's engine in "
                 f"this process, Linux, for trials). The user: the URL's (http://USER@HOST...), "
                 f"else ${USER_ENV}; the password: --clickhouse-password-file, "
                 f"${PASSWORD_ENV} or systemd's credential '{PASSWORD_CREDENTIAL}', never the "
                 "command line")
        add("--server-name", metavar="NAME",
            help="this server's name in ClickHouse's rows (default: the host's name)")
        add("--clickhouse-password-file", type=Path, metavar="PATH",
            help="read the ClickHouse password from the first line of PATH")
        add("--clickhouse-password", type=_no_password, help=argparse.SUPPRESS)
        add("--clickhouse-batch-seconds", type=argtypes.positive_seconds, metavar="SECONDS",
            help=f"send a batch at least this often (default {DEFAULT_BATCH_SECONDS:g})")
        add("--clickhouse-batch-rows", type=_rows, metavar="N",
            help=f"... or once it holds N rows (default {DEFAULT_BATCH_ROWS:,})")
        add("--clickhouse-spool", type=Path, metavar="PATH",
            help=f"folder where batches wait until ClickHouse took them (default: "
                 f"{SPOOL_FOLDER} beside --out); a run sends what an earlier one left")
        add("--clickhouse-spool-max", type=argtypes.size, metavar="SIZE",
            help="the spool takes at most SIZE (default 1G): past it the oldest batches are "
                 "given up, and counted")
        add("--clickhouse-timeout", type=argtypes.positive_seconds, metavar="SECONDS",
            help=f"wait this long for ClickHouse's answer (default "
                 f"{DEFAULT_TIMEOUT_SECONDS:g}); then the batch waits in the spool")

    def settings(self, args: argparse.Namespace) -> ClickHouseSettings | None:
        if not args.clickhouse:
            for flag in ("server_name", "clickhouse_password_file", "clickhouse_batch_seconds",
                         "clickhouse_batch_rows", "clickhouse_spool", "clickhouse_spool_max",
                         "clickhouse_timeout"):
                if getattr(args, flag) is not None:
                    raise UsageError(f"--{flag.replace('_', '-')} needs --clickhouse URL")
            return None
        from traffic_capture.fleet.connect import find_credentials, parse_url

        target = parse_url(args.clickhouse, "--clickhouse", PASSWORD_OPTION)
        return ClickHouseSettings(
            target, find_credentials(target, args.clickhouse_password_file, PASSWORD_OPTION),
            server_name(args.server_name), args.clickhouse_spool or default_spool(args.out),
            args.clickhouse_spool_max or DEFAULT_SPOOL_MAX,
            args.clickhouse_batch_seconds or DEFAULT_BATCH_SECONDS,
            args.clickhouse_batch_rows or DEFAULT_BATCH_ROWS,
            args.clickhouse_timeout or DEFAULT_TIMEOUT_SECONDS)

    def build(self, settings: ClickHouseSettings, context: OutputContext) -> Sink:
        from traffic_capture.sinks.clickhouse_sink import ClickHouseSink

        return ClickHouseSink(settings, context)

    def service_folders(self, settings: ClickHouseSettings) -> list[Path]:
        return [settings.spool]

    def service_credentials(self, settings: ClickHouseSettings) -> list[Credential]:
        """The password goes to a root-only file the unit loads: the one
        --clickhouse-password-file names, else SERVICE_PASSWORD_FILE (written with the
        password given in $TRAFFIC_CLICKHOUSE_PASSWORD)."""
        credentials = settings.credentials
        if credentials.user_from == f"${USER_ENV}":
            raise UsageError(f"the ClickHouse user comes from ${USER_ENV}, which the service "
                             "does not see: put it in the URL (http://USER@HOST:8123/DATABASE)")
        if credentials.password is None or credentials.password_from == FROM_CREDENTIAL:
            return []
        if credentials.password_from == FROM_FILE and credentials.password_file is not None:
            return [Credential(PASSWORD_CREDENTIAL, credentials.password_file)]
        return [Credential(PASSWORD_CREDENTIAL, SERVICE_PASSWORD_FILE, credentials.password)]


OUTPUT = ClickHouseOutput()


