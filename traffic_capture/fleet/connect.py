"""Reaching the fleet's ClickHouse, for every command that does (`clickhouse init|info`,
`serve` and `excel --clickhouse`, the daemon's --clickhouse): the URL, the credentials, the
clickhouse-connect client (the `clickhouse` extra, imported when a client is opened) and what
its failures mean. Every failure is one line that never holds the password.

A URL names the server and the database: `http://host:8123/traffic`, `https://host:8443/
traffic`, or `chdb://FOLDER/traffic`, ClickHouse's engine run in this process by chDB (Linux;
the tests and a one-machine trial). The user comes from the URL or TRAFFIC_CLICKHOUSE_USER
(default `default`); the password from a file (--password-file, the daemon's
--clickhouse-password-file), TRAFFIC_CLICKHOUSE_PASSWORD or the systemd credential
`clickhouse-password`, never from the command line or the URL (every user sees a process's
arguments).

Messages name the option the user gave: `option` (the daemon's `--clickhouse`, init's `URL`)
and `password_option` are parameters, never a rewrite of the text.
"""

from __future__ import annotations

import enum
import os
import re
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from traffic_capture.errors import PROG, UsageError
from traffic_capture.fleet.credential_names import PASSWORD_CREDENTIAL, PASSWORD_ENV, USER_ENV
from traffic_capture.fleet.schema import FleetError, check_database
from traffic_capture.secrets import FROM_CREDENTIAL, FROM_ENVIRONMENT, FROM_FILE, find_secret

# Installed from the clone (not from PyPI), with the interpreter that runs it.
INSTALL = f"{sys.executable} -m pip install -e '.[clickhouse]' (in the project's folder)"
INSTALL_CHDB = f"{sys.executable} -m pip install chdb (Linux only)"
INIT_COMMAND = f"{PROG} clickhouse init URL"
DEFAULT_USER = "default"
DEFAULT_PORTS = {"http": 8123, "https": 8443}
URL_FORMS = "http://HOST:8123/DATABASE, https://HOST:8443/DATABASE or chdb://FOLDER/DATABASE"
URL_OPTION = "--clickhouse"  # the daemon's, serve's and excel's; `clickhouse init` says URL
PASSWORD_OPTION = "--password-file"  # the commands'; the daemon's is --clickhouse-password-file

# ClickHouse's error codes (src/Common/ErrorCodes.cpp): who is asking is refused, a right is
# missing, the schema is missing, or the rows sent cannot be parsed.
REFUSED_USER = {192: "unknown user", 193: "wrong password", 194: "a password is required",
                516: "authentication failed"}
ACCESS_DENIED = 497
UNKNOWN_DATABASE, UNKNOWN_TABLE = 81, 60
UNPARSABLE_ROWS = frozenset({6, 26, 27, 38, 41, 70, 72, 117, 131, 691})
_CODE = re.compile(r"\bCode:\s*(\d+)")
_HTTP_STATUS = re.compile(r"HTTP status (\d{3})\b")
_VERSION_TRAILER = re.compile(r"\s*\(version [^)]*(\([^)]*\))?[^)]*\)\s*$")
_FOR_URL = re.compile(r"\s*\(for url [^)]*\)")
SAID_MAX = 300  # characters of a server's message kept in a line


# -- the URL


@dataclass(frozen=True)
class Target:
    """Where the fleet's database is: a server (scheme http or https) or a chDB folder."""

    scheme: str
    database: str
    host: str = ""
    port: int = 0
    folder: Path | None = None
    user: str | None = None  # from the URL

    @property
    def shown(self) -> str:
        """The URL as messages about the database show it (never a password)."""
        return self._written(with_user=False)

    @property
    def url(self) -> str:
        """The URL as given, its user too (the daemon's status and summary; never a
        password: one in the URL is refused)."""
        return self._written(with_user=True)

    def _written(self, with_user: bool) -> str:
        if self.folder is not None:
            return f"chdb://{self.folder}/{self.database}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if with_user and self.user else ""
        return f"{self.scheme}://{user}{host}:{self.port}/{self.database}"


def parse_url(text: str, option: str = URL_OPTION, password_option: str = PASSWORD_OPTION
              ) -> Target:
    """A ClickHouse URL -> where it points; a UsageError naming `option` otherwise, which
    never repeats the URL (it may hold a password)."""
    try:
        parts = urlsplit(text.strip())
    except ValueError:
        raise UsageError(f"{option}: this URL cannot be read; {option} takes {URL_FORMS}"
                         ) from None
    scheme = parts.scheme.lower()
    try:
        port = parts.port if scheme != "chdb" else None
    except ValueError:  # its text would repeat what stands there, maybe a password
        raise UsageError(f"{option}: the port is not a number from 1 to 65535") from None
    if scheme not in ("http", "https", "chdb"):
        raise UsageError(f"{option}: this is not a ClickHouse URL; {option} takes {URL_FORMS}")
    if parts.password is not None or "password" in parts.query.lower():
        raise UsageError(
            f"{option}: this URL holds a password; a password in the URL shows in every "
            f"user's process list: remove it and put it in ${PASSWORD_ENV}, in a file named "
            f"by {password_option}, or in systemd's credential '{PASSWORD_CREDENTIAL}'")
    if parts.query or parts.fragment:
        raise UsageError(f"{option} takes {URL_FORMS}, without '?' or '#' parts")
    if scheme == "chdb":
        return _chdb_target(unquote(parts.netloc + parts.path), option)
    database = unquote(parts.path).strip("/")
    if not parts.hostname or not database:
        raise UsageError(f"{option} takes {URL_FORMS}: name the server and the database (the "
                         "host and the database, the URL's path, e.g. "
                         "http://clickhouse.example:8123/traffic)")
    user = unquote(parts.username) if parts.username else None
    return Target(scheme, check_database(database, option), parts.hostname,
                  port or DEFAULT_PORTS[scheme], user=user)


def _chdb_target(location: str, option: str) -> Target:
    if not sys.platform.startswith("linux"):
        raise UsageError(f"{option} chdb://... runs ClickHouse's engine in this process (chDB),"
                         " which is for Linux only; give http(s)://HOST:PORT/DATABASE")
    folder, _, database = location.rstrip("/").rpartition("/")
    if not folder or not database:
        raise UsageError(f"{option} chdb://FOLDER/DATABASE: name the folder and the database "
                         "in it, e.g. chdb:///var/lib/traffic-capture/ch/traffic")
    return Target("chdb", check_database(database, option),
                  folder=Path(folder).expanduser().resolve())


# -- the credentials


@dataclass(frozen=True)
class Credentials:
    """Who asks ClickHouse. The password never shows in a repr, a log or a message
    (`scrub`)."""

    user: str = DEFAULT_USER
    password: str | None = field(default=None, repr=False)
    user_from: str | None = None  # "the URL", "$TRAFFIC_CLICKHOUSE_USER"; None: the default
    password_from: str | None = None  # secrets.FROM_*
    password_file: Path | None = None
    password_option: str = PASSWORD_OPTION  # the option that names password_file

    def scrub(self, text: str) -> str:
        return text.replace(self.password, "***") if self.password else text

    def password_origin(self) -> str:
        """Where the password came from, in the words of the option or variable."""
        origin = {FROM_FILE: f"the file {self.password_file}",
                  FROM_ENVIRONMENT: f"${PASSWORD_ENV}",
                  FROM_CREDENTIAL: f"systemd's credential '{PASSWORD_CREDENTIAL}'",
                  }.get(self.password_from or "")
        return (f"from {origin}" if origin else
                f"none was given: ${PASSWORD_ENV}, {self.password_option} or systemd's "
                f"credential '{PASSWORD_CREDENTIAL}'")


def find_credentials(target: Target, password_file: Path | None = None,
                     password_option: str = PASSWORD_OPTION) -> Credentials:
    """The user (the URL's, else $TRAFFIC_CLICKHOUSE_USER, else `default`) and the password
    (the file `password_option` named, else $TRAFFIC_CLICKHOUSE_PASSWORD, else systemd's
    credential; none: empty)."""
    if target.user:
        user, user_from = target.user, "the URL"
    elif os.environ.get(USER_ENV):
        user, user_from = os.environ[USER_ENV], f"${USER_ENV}"
    else:
        user, user_from = DEFAULT_USER, None
    password, password_from = find_secret("the ClickHouse password", None, password_file,
                                          PASSWORD_ENV, PASSWORD_CREDENTIAL)
    return Credentials(user, password, user_from, password_from, password_file,
                       password_option)


# -- the client


def clickhouse_connect() -> Any:
    """The clickhouse_connect module, or one line naming the install."""
    try:
        import clickhouse_connect as module
    except ImportError:
        raise FleetError(f"ClickHouse needs clickhouse-connect: {INSTALL}") from None
    # Its failures reach the user as our one line; without a handler of its own, logging's
    # last resort would print its warnings ("Unexpected Http Driver Exception", with a
    # traceback) before it.
    import logging

    driver_log = logging.getLogger("clickhouse_connect")
    if not driver_log.handlers:
        driver_log.addHandler(logging.NullHandler())
    driver_log.propagate = False
    return module


def connect_client(target: Target, credentials: Credentials | None = None,
                   with_database: bool = True, timeout_s: float = 300,
                   settings: dict[str, Any] | None = None, compress: bool = True) -> Any:
    """A clickhouse-connect client of the target, its default database the target's (which
    must exist) unless `with_database` is false (init creates it). What is missing here
    (clickhouse-connect, chDB, a chDB folder) is a FleetError; a server that cannot be
    reached, refuses or is not ClickHouse raises the driver's own error: `diagnose` it."""
    module = clickhouse_connect()
    database = target.database if with_database else None
    if target.folder is not None:
        return _chdb_client(module, target, database, settings)
    credentials = credentials or find_credentials(target)
    return module.get_client(
        interface=target.scheme, host=target.host, port=target.port,
        username=credentials.user, password=credentials.password or "", database=database,
        connect_timeout=min(timeout_s, 10), send_receive_timeout=timeout_s,
        settings=settings or {}, query_retries=0, autogenerate_session_id=False,
        compress=compress)


def _chdb_client(module: Any, target: Target, database: str | None,
                 settings: dict[str, Any] | None) -> Any:
    folder = target.folder
    assert folder is not None
    try:
        import chdb  # noqa: F401 - clickhouse-connect's own message names its extra
    except ImportError:
        raise FleetError(f"{target.shown}: chdb:// needs chDB: {INSTALL_CHDB}") from None
    if database is not None and not folder.is_dir():  # never a stray folder for a typo
        raise FleetError(f"{target.shown}: no database {target.database!r}: chDB's folder "
                         f"{folder} does not exist; create the schema first with "
                         f"'{INIT_COMMAND}'")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FleetError(f"{target.shown}: {error.strerror or error}") from None
    return module.get_client(interface="chdb", path=str(folder), database=database,
                             settings=settings or {})


def open_client(target: Target, credentials: Credentials | None = None,
                with_database: bool = True, timeout_s: float = 300,
                settings: dict[str, Any] | None = None) -> Any:
    """connect_client, with every failure one line (`describe`)."""
    if credentials is None and target.folder is None:
        credentials = find_credentials(target)
    try:
        return connect_client(target, credentials, with_database, timeout_s, settings)
    except FleetError:
        raise
    except Exception as error:  # the driver's errors have no common root with urllib3's
        raise FleetError(describe(target, error, credentials)) from None


# -- what a failure means


class Failure(enum.Enum):
    """What went wrong in reaching ClickHouse or in its answer."""

    REFUSED_USER = "the user or password refused"
    ACCESS_DENIED = "a right missing"
    NO_DATABASE = "no such database"
    NO_TABLE = "no such table"
    UNPARSABLE = "rows it cannot parse"
    CLICKHOUSE_ERROR = "another error of ClickHouse's"
    SERVER_ERROR = "an HTTP 5xx without ClickHouse's code (a proxy, an overload)"
    NO_SUCH_HOST = "a host name that does not resolve"
    TLS = "a TLS handshake that failed"
    TIMEOUT = "no answer in time"
    CONNECTION_REFUSED = "nothing listens"
    UNREACHABLE = "another network failure"
    NOT_CLICKHOUSE = "an answer that is not ClickHouse's"


@dataclass(frozen=True)
class Diagnosis:
    failure: Failure
    said: str  # the server's or the network's own words, one short line
    code: int | None = None  # ClickHouse's error code
    status: str | None = None  # the HTTP status, when no ClickHouse code came with it


# Network failures as their text says them, when no exception object tells.
_SYMPTOMS = (("connection refused", Failure.CONNECTION_REFUSED),
             ("name or service not known", Failure.NO_SUCH_HOST),
             ("nodename nor servname", Failure.NO_SUCH_HOST),
             ("failed to resolve", Failure.NO_SUCH_HOST),
             ("timed out", Failure.TIMEOUT),
             ("network is unreachable", Failure.UNREACHABLE),
             ("certificate verify failed", Failure.TLS))


def diagnose(error: BaseException) -> Diagnosis:
    """A client's exception -> what it means: the network first (the cause under the
    driver's error), then ClickHouse's code, then the HTTP status."""
    cause = _transport_cause(error)
    if cause is not None:
        return Diagnosis(_network_failure(cause), first_line(cause))
    text = str(error)
    said = first_line(error)
    code = error_code(error)
    found = _HTTP_STATUS.search(text)
    status = found.group(1) if found and code is None else None
    if code in REFUSED_USER or "AUTHENTICATION_FAILED" in text or status in ("401", "403"):
        failure = Failure.REFUSED_USER
    elif code == ACCESS_DENIED:
        failure = Failure.ACCESS_DENIED
    elif code == UNKNOWN_DATABASE or "UNKNOWN_DATABASE" in text:
        failure = Failure.NO_DATABASE
    elif code == UNKNOWN_TABLE:
        failure = Failure.NO_TABLE
    elif code in UNPARSABLE_ROWS:
        failure = Failure.UNPARSABLE
    elif code is not None:
        failure = Failure.CLICKHOUSE_ERROR
    else:
        failure = _symptom(text) or (Failure.SERVER_ERROR if status in
                                     ("500", "502", "503", "504") else Failure.NOT_CLICKHOUSE)
    return Diagnosis(failure, said, code, status)


def _network_failure(cause: BaseException) -> Failure:
    names = {kind.__name__ for kind in type(cause).__mro__}
    if isinstance(cause, socket.gaierror) or "NameResolutionError" in names:
        return Failure.NO_SUCH_HOST
    if "SSLError" in names:  # ssl's, or urllib3's around it (ssl is not imported for this)
        return Failure.TLS
    if isinstance(cause, TimeoutError) or any("Timeout" in name for name in names):
        return Failure.TIMEOUT
    if isinstance(cause, ConnectionRefusedError):
        return Failure.CONNECTION_REFUSED
    return _symptom(str(cause)) or Failure.UNREACHABLE


def _symptom(text: str) -> Failure | None:
    lowered = text.lower()
    return next((failure for symptom, failure in _SYMPTOMS if symptom in lowered), None)


def _transport_cause(error: BaseException) -> BaseException | None:
    """The network failure under a client error (urllib3's, the socket's), if it is one."""
    seen: set[int] = set()
    current: BaseException | None = error
    found: BaseException | None = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        module = type(current).__module__
        if isinstance(current, OSError) or module.startswith("urllib3"):
            found = current
            if isinstance(current, (socket.gaierror, ConnectionRefusedError, TimeoutError)) \
                    or "SSLError" in {kind.__name__ for kind in type(current).__mro__}:
                return current
        reason = getattr(current, "reason", None)  # urllib3's MaxRetryError holds the cause
        current = reason if isinstance(reason, BaseException) else (
            current.__cause__ or current.__context__)
    return found


def error_code(error: BaseException) -> int | None:
    """ClickHouse's numeric code in an error, when it carries one."""
    code = getattr(error, "code", None)
    if isinstance(code, int):
        return code
    match = _CODE.search(str(error))
    return int(match.group(1)) if match else None


def describe(target: Target, error: BaseException, credentials: Credentials | None = None
             ) -> str:
    """One line for a failure to reach or query ClickHouse, for the commands: refused
    credentials, a server that cannot be reached, a database missing, or something that does
    not answer as ClickHouse. (The daemon words its own, saying what it retries.)"""
    diagnosis = diagnose(error)
    failure = diagnosis.failure
    said = credentials.scrub(diagnosis.said) if credentials else diagnosis.said
    if failure is Failure.REFUSED_USER:
        user = credentials.user if credentials else DEFAULT_USER
        option = credentials.password_option if credentials else PASSWORD_OPTION
        return (f"{target.shown}: ClickHouse refused user {user!r} (wrong user or password;"
                f" they come from {USER_ENV} and {PASSWORD_ENV} or {option})")
    if failure is Failure.NO_DATABASE:
        return (f"{target.shown}: no database {target.database!r}: create the schema with"
                f" `{PROG} clickhouse init {target.shown}`")
    if failure in (Failure.ACCESS_DENIED, Failure.NO_TABLE, Failure.UNPARSABLE,
                   Failure.CLICKHOUSE_ERROR):
        return f"{target.shown}: ClickHouse error: {said}"
    reached = {Failure.CONNECTION_REFUSED: "connection refused",
               Failure.NO_SUCH_HOST: "no such host", Failure.TIMEOUT: "timed out",
               Failure.TLS: ("its TLS certificate is not trusted"
                             if "certificate verify failed" in said.lower()
                             else f"the TLS handshake failed ({said})"),
               Failure.UNREACHABLE: ("network unreachable"
                                     if "network is unreachable" in said.lower() else said),
               }.get(failure)
    if reached is not None:
        return f"{target.shown}: cannot reach ClickHouse: {reached}"
    return f"{target.shown}: does not answer as ClickHouse: {said}"


def first_line(error: BaseException | str) -> str:
    """ClickHouse's message alone, in one short line: its first line with neither the
    driver's words before it ('Code: N. DB::Exception:', 'server response:') nor the URL and
    the server's version after it."""
    text = str(error).strip()
    _, found, response = text.partition("server response: ")
    text = response if found else text
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(error).__name__ if isinstance(error, BaseException) else "error"
    line = next((line.split("DB::Exception:", 1)[1].strip() for line in lines
                 if "DB::Exception:" in line), lines[0])
    return _VERSION_TRAILER.sub("", _FOR_URL.sub("", line))[:SAID_MAX]
