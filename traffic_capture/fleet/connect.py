"""Reaching the fleet's ClickHouse: the URL, the credentials and the clickhouse-connect client
(the `clickhouse` extra, imported when a client is opened), with every failure one line.

A URL names the server and the database: `http://host:8123/traffic`, `https://host:8443/
traffic`, or `chdb://FOLDER/traffic`, ClickHouse's engine run in this process by chDB (Linux;
the tests and a one-machine trial). The user comes from the URL or TRAFFIC_CLICKHOUSE_USER
(default `default`); the password from --password-file, TRAFFIC_CLICKHOUSE_PASSWORD or the
systemd credential `clickhouse-password`, never from the command line or the URL (every user
sees a process's arguments).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from traffic_capture.errors import UsageError
from traffic_capture.fleet.schema import FleetError, check_database
from traffic_capture.secrets import find_secret

# Installed from the clone (not from PyPI), with the interpreter that runs it.
INSTALL = f"{sys.executable} -m pip install -e '.[clickhouse]' (in the project's folder)"
INSTALL_CHDB = f"{sys.executable} -m pip install chdb (Linux only)"
USER_ENV = "TRAFFIC_CLICKHOUSE_USER"
PASSWORD_ENV = "TRAFFIC_CLICKHOUSE_PASSWORD"
PASSWORD_CREDENTIAL = "clickhouse-password"
DEFAULT_USER = "default"
DEFAULT_PORTS = {"http": 8123, "https": 8443}
URL_FORMS = "http://HOST:8123/DATABASE, https://HOST:8443/DATABASE or chdb://FOLDER/DATABASE"
# ClickHouse's code for a user or password it refuses (and for a user it does not know).
AUTHENTICATION_FAILED = (516, 192, 193)
_CODE = re.compile(r"\bCode:\s*(\d+)")
_VERSION_TRAILER = re.compile(r"\s*\(version [^)]*(\([^)]*\))?[^)]*\)\s*$")


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
        """The URL as messages show it (never a password)."""
        if self.folder is not None:
            return f"chdb://{self.folder}/{self.database}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/{self.database}"


def parse_url(text: str) -> Target:
    """A ClickHouse URL -> where it points; one line saying what is wrong otherwise."""
    scheme, _, rest = text.partition("://")
    scheme = scheme.lower()
    if not rest or scheme not in ("http", "https", "chdb"):
        raise UsageError(f"{text!r} is not a ClickHouse URL: {URL_FORMS}")
    if scheme == "chdb":
        folder, _, database = rest.rstrip("/").rpartition("/")
        if not folder:
            raise UsageError(f"{text!r}: name the folder and the database: chdb://FOLDER/"
                             "DATABASE (e.g. chdb:///var/lib/traffic-capture/ch/traffic)")
        return Target("chdb", check_database(database), folder=Path(folder).resolve())
    parts = urlsplit(text)
    if parts.password is not None:
        raise UsageError("the ClickHouse URL holds a password, which every user would see in"
                         f" the process list: give it in {PASSWORD_ENV} or --password-file")
    database = parts.path.strip("/")
    if not parts.hostname or not database or "/" in database:
        raise UsageError(f"{text!r}: name the server and the database: {URL_FORMS}")
    if parts.query or parts.fragment:
        raise UsageError(f"{text!r}: a ClickHouse URL here takes no ?options or #fragment")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise UsageError(f"{text!r}: the port is not a number from 1 to 65535") from None
    user = unquote(parts.username) if parts.username else None
    return Target(scheme, check_database(unquote(database)), parts.hostname, port, user=user)


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str
    source: str | None  # where the password came from (None: no password)


def find_credentials(target: Target, password_file: Path | None = None) -> Credentials:
    """The user (URL, then TRAFFIC_CLICKHOUSE_USER, then `default`) and the password
    (--password-file, TRAFFIC_CLICKHOUSE_PASSWORD, the systemd credential; none: empty)."""
    import os

    user = target.user or os.environ.get(USER_ENV) or DEFAULT_USER
    password, source = find_secret("the ClickHouse password", None, password_file,
                                   PASSWORD_ENV, PASSWORD_CREDENTIAL)
    return Credentials(user, password or "", source)


def clickhouse_connect() -> Any:
    """The clickhouse_connect module, or one line naming the install."""
    try:
        import clickhouse_connect as module
    except ImportError:
        raise FleetError(f"ClickHouse needs clickhouse-connect: {INSTALL}") from None
    # Its failures reach the user as our one line; without a handler of its own, logging's
    # last resort would print its warnings ("Unexpected Http Driver Exception") before it.
    import logging

    driver_log = logging.getLogger("clickhouse_connect")
    if not driver_log.handlers:
        driver_log.addHandler(logging.NullHandler())
    return module


def open_client(target: Target, credentials: Credentials | None = None,
                with_database: bool = True, timeout_s: float = 300,
                settings: dict[str, Any] | None = None) -> Any:
    """A clickhouse-connect client of the target, its default database the target's (which
    must exist) unless `with_database` is false (init creates it). A server that cannot be
    reached, refuses the credentials or is not ClickHouse: one line."""
    module = clickhouse_connect()
    database = target.database if with_database else None
    try:
        if target.folder is not None:
            try:
                import chdb  # noqa: F401 - clickhouse-connect's own message names its extra
            except ImportError:
                raise FleetError(f"{target.shown}: chdb:// needs chDB: {INSTALL_CHDB}"
                                 ) from None
            target.folder.mkdir(parents=True, exist_ok=True)
            return module.get_client(interface="chdb", path=str(target.folder),
                                     database=database, settings=settings or {})
        credentials = credentials or find_credentials(target)
        return module.get_client(
            interface=target.scheme, host=target.host, port=target.port,
            username=credentials.user, password=credentials.password, database=database,
            connect_timeout=10, send_receive_timeout=timeout_s, settings=settings or {},
            query_retries=0)
    except FleetError:
        raise
    except OSError as error:
        raise FleetError(f"{target.shown}: {error.strerror or error}") from None
    except Exception as error:  # the driver's errors have no common root with urllib3's
        raise FleetError(describe(target, error, credentials)) from None


def error_code(error: BaseException) -> int | None:
    """ClickHouse's numeric code in an error, when it carries one."""
    code = getattr(error, "code", None)
    if isinstance(code, int):
        return code
    match = _CODE.search(str(error))
    return int(match.group(1)) if match else None


def describe(target: Target, error: BaseException, credentials: Credentials | None = None
             ) -> str:
    """One line for a failure to connect: refused credentials, a server that cannot be
    reached, a database missing, or something that does not answer as ClickHouse."""
    text = str(error)
    code = error_code(error)
    if code in AUTHENTICATION_FAILED or "AUTHENTICATION_FAILED" in text:
        user = credentials.user if credentials else DEFAULT_USER
        return (f"{target.shown}: ClickHouse refused user {user!r} (wrong user or password;"
                f" they come from {USER_ENV} and {PASSWORD_ENV} or --password-file)")
    if code == 81 or "UNKNOWN_DATABASE" in text:
        return (f"{target.shown}: no database {target.database!r}: create the schema with"
                f" `traffic-capture clickhouse init {target.shown}`")
    if code is not None:
        return f"{target.shown}: ClickHouse error: {first_line(error)}"
    lowered = text.lower()
    for symptom, said in (("connection refused", "connection refused"),
                          ("name or service not known", "no such host"),
                          ("nodename nor servname", "no such host"),
                          ("failed to resolve", "no such host"),
                          ("timed out", "timed out"),
                          ("network is unreachable", "network unreachable"),
                          ("certificate verify failed", "its TLS certificate is not trusted")):
        if symptom in lowered:
            return f"{target.shown}: cannot reach ClickHouse: {said}"
    return f"{target.shown}: does not answer as ClickHouse: {first_line(error)}"


def first_line(error: BaseException) -> str:
    """ClickHouse's message alone: its first line with no 'Code: N. DB::Exception:' before
    it nor the server's version after it."""
    text = str(error).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:  # the driver puts its own line (the URL, the HTTP status) first
        if "DB::Exception:" in line:
            return _VERSION_TRAILER.sub("", line.split("DB::Exception:", 1)[1].strip())
    return _VERSION_TRAILER.sub("", lines[0]) if lines else type(error).__name__
