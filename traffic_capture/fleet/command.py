"""`traffic-capture clickhouse init|info URL`: create or upgrade the fleet's schema, and say
what a fleet database holds.

`init` is run once by an administrator (a user allowed to create tables), before the daemons
send; again after an upgrade of traffic-capture (it migrates), or with another --keep (it
alters the TTLs). The daemons need INSERT on traffic_5s only; the readers SELECT.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from traffic_capture import argtypes
from traffic_capture.errors import EXIT_OK, PROG, TrafficCaptureError
from traffic_capture.fleet.schema import DEFAULT_KEEP

URL_HELP = ("the ClickHouse server and database: http://HOST:8123/DATABASE, https://HOST:8443/"
            "DATABASE, or chdb://FOLDER/DATABASE (ClickHouse's engine in this process, Linux)."
            " The user comes from the URL or TRAFFIC_CLICKHOUSE_USER, the password from"
            " --password-file, TRAFFIC_CLICKHOUSE_PASSWORD or the systemd credential"
            " clickhouse-password, never from the command line")


def build_parser() -> argtypes.Parser:
    parser = argtypes.Parser(prog=f"{PROG} clickhouse",
                             description="The fleet's ClickHouse database: many servers' "
                                         "windows in one place (--clickhouse URL).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=argtypes.Parser)
    init = commands.add_parser(
        "init", help="create or upgrade the schema",
        description="Create the fleet's tables in the URL's database, or bring an older "
                    "schema up to date; a re-run changes nothing. Rows older than a table's "
                    "keep are dropped by ClickHouse as they are inserted: replaying an old "
                    "capture needs a long enough keep first. A shorter keep than the rows "
                    "held deletes the older ones (said before it is done).")
    init.add_argument("url", metavar="URL", help=URL_HELP)
    init.add_argument("--keep", metavar="SPEC",
                      help="resolutions and how long each is kept (a new schema: "
                           f"{DEFAULT_KEEP}; an existing one keeps its own unless given); "
                           "the first is the daemons' 5s windows, 'forever' keeps all")
    init.add_argument("--drop", action="store_true",
                      help="delete the rollups --keep leaves out (refused without it)")
    showing = commands.add_parser("info", help="the servers and resolutions a fleet holds")
    showing.add_argument("url", metavar="URL", help=URL_HELP)
    showing.add_argument("--utc", action="store_true", help="times in UTC")
    for command in (init, showing):
        command.add_argument("--password-file", type=Path, metavar="PATH",
                             help="a file whose first line is the ClickHouse password "
                                  "(mode 0600)")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        from traffic_capture.fleet.connect import find_credentials, open_client, parse_url

        target = parse_url(args.url, option="URL")  # init's and info's argument
        credentials = find_credentials(target, args.password_file)
        client = open_client(target, credentials, with_database=args.command == "info")
        try:
            if args.command == "init":
                return _init(client, target.database, args.keep, args.drop, target.shown)
            return _info(client, args.utc)
        except Exception as error:
            _reraise_driver_error(error, target, credentials)
            raise
        finally:
            client.close()
    except TrafficCaptureError as error:
        sys.stderr.write(f"{PROG}: error: {error}\n")
        return error.exit_code


def _reraise_driver_error(error: Exception, target: Any, credentials: Any) -> None:
    """A ClickHouse error (no right to create, the server gone) as its one line."""
    from traffic_capture.fleet.connect import clickhouse_connect, describe
    from traffic_capture.fleet.schema import FleetError

    if isinstance(error, clickhouse_connect().driver.exceptions.ClickHouseError):
        raise FleetError(describe(target, error, credentials)) from None


def _init(client: Any, database: str, keep: str | None, drop: bool, shown: str) -> int:
    from traffic_capture.fleet.migrate import describe_levels, init

    result = init(client, database, keep, drop)
    for warning in result.warnings:
        sys.stderr.write(f"{PROG}: warning: {warning}\n")
    if result.version_before == 0:
        print(f"{shown}: schema created (version {result.version})")
    elif result.version != result.version_before:
        print(f"{shown}: schema at version {result.version} (was {result.version_before})")
    elif result.changed:
        print(f"{shown}: schema at version {result.version}, changed:")
    else:
        print(f"{shown}: schema at version {result.version}, nothing to change")
    for line in result.done:
        print(f"  {line}")
    for line in describe_levels(result.levels):
        print(f"  {line}")
    return EXIT_OK


def _info(client: Any, utc: bool) -> int:
    from traffic_capture.fleet.reader import ClickHouseReader
    from traffic_capture.history.retention import duration_text

    reader = ClickHouseReader(client)
    shown = time.gmtime if utc else time.localtime

    def when(epoch: int | None) -> str:
        return "-" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S", shown(epoch))

    for held in reader.resolutions():
        name = duration_text(held.seconds)
        if held.first_start_s is None:
            print(f"{name}: empty")
        else:
            print(f"{name}: {when(held.first_start_s)} to {when(held.last_end_s)}"
                  + (" UTC" if utc else ""))
    servers = reader.servers()
    print(f"{len(servers)} server{'s' if len(servers) != 1 else ''}")
    for server in servers:
        print(f"  {server.name}: {when(server.first_start_s)} to {when(server.last_end_s)}")
    return EXIT_OK
