"""The way to one ClickHouse for --clickhouse: its URL, the credentials, the client, and what
its answers mean. Every failure is one line that never holds the password.

clickhouse-connect (the `clickhouse` extra) is imported only when a store is opened. A
`chdb://PATH/DATABASE` URL opens ClickHouse's own engine inside this process (chDB, Linux
only): for the tests and for a trial on one machine.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import logging
import os
import re
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from traffic_capture.errors import PROG, TrafficCaptureError, UsageError
from traffic_capture.rules import CLASSES
from traffic_capture.secrets import FROM_CREDENTIAL, FROM_ENVIRONMENT, FROM_FILE, find_secret

# Installed from the clone (not from PyPI), with the interpreter that runs it.
INSTALL = f"{sys.executable} -m pip install -e '.[clickhouse]' (in the project's folder)"
INGEST_TABLE = "traffic_5s"  # the schema's raw table (`clickhouse init` makes it)
# Its columns as sent: the CSV's, less window_end and total_bytes (derived), plus where the
# rows come from. The history stores the same shape.
COLUMNS: tuple[str, ...] = ("server", "window_start", "window_seconds", "client_ip",
                            "direction", *(f"{name}_bytes" for name in CLASSES))
USER_ENV = "TRAFFIC_CLICKHOUSE_USER"
PASSWORD_ENV = "TRAFFIC_CLICKHOUSE_PASSWORD"
PASSWORD_CREDENTIAL = "clickhouse-password"  # systemd's LoadCredential= name (service-unit)
INIT_HINT = f"'{PROG} clickhouse init URL'"
URL_FORMS = "http://HOST:8123/DATABASE, https://HOST:8443/DATABASE or chdb://PATH/DATABASE"
DEFAULT_PORTS = {"http": 8123, "https": 8443}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # a database name quoted in SQL as is

# Sent with every batch. async_insert: the server gathers the inserts of the whole fleet into
# few parts (thousands of daemons each inserting every few seconds would otherwise make "too
# many parts"); wait_for_async_insert: it answers once the rows are stored, so an answer
# means stored. A retried batch carries the same insert_deduplication_token and is dropped by
# the server if its first attempt got in: deduplicate_insert on servers that have it,
# insert_deduplicate / async_insert_deduplicate on older ones (for async inserts), and the
# rollups' materialized views deduplicate theirs too. The table must keep a deduplication
# window (non_replicated_deduplication_window on a plain MergeTree; Replicated* keep one).
# A setting the server does not know is left out.
INSERT_SETTINGS: dict[str, str] = {
    "async_insert": "1",
    "wait_for_async_insert": "1",
    "deduplicate_insert": "enable",
    "insert_deduplicate": "1",
    "async_insert_deduplicate": "1",
    "deduplicate_blocks_in_dependent_materialized_views": "1",
}

# ClickHouse's error codes that say who is asking is refused, the schema is missing, or a
# batch cannot be read (src/Common/ErrorCodes.cpp).
REFUSED_USER = {192: "unknown user", 193: "wrong password", 194: "a password is required",
                516: "authentication failed"}
ACCESS_DENIED = 497
UNKNOWN_DATABASE, UNKNOWN_TABLE = 81, 60
# Parse errors (a value a column cannot hold): sending the batch again cannot help.
UNREADABLE_BATCH = {6, 26, 27, 38, 41, 70, 72, 117, 131, 691}


class StoreError(TrafficCaptureError):
    """ClickHouse cannot take the rows; the message says why in one line."""


class StoreUnavailable(StoreError):
    """No answer, or an answer that may change: down, slow, overloaded. Retried."""


class StoreRefused(StoreError):
    """An answer that will not change by itself: not ClickHouse, the user refused, no schema."""


class BatchRejected(StoreError):
    """ClickHouse cannot read this batch: sending it again would fail again."""


@dataclass(frozen=True)
class Target:
    """A --clickhouse URL taken apart; `url` is how it is shown (it never holds a password:
    one in the URL is refused)."""

    url: str
    scheme: str  # http, https or chdb
    database: str
    host: str = ""
    port: int = 0
    user: str | None = None  # the URL's user part
    chdb_folder: Path | None = None


def parse_url(text: str) -> Target:
    """--clickhouse URL -> Target; a UsageError that never repeats the URL (it may hold a
    password) when it is not one of URL_FORMS."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        raise UsageError(f"--clickhouse takes {URL_FORMS}; this URL cannot be read") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", "chdb"):
        raise UsageError(f"--clickhouse takes {URL_FORMS}")
    if parts.password is not None or "password" in parts.query.lower():
        raise UsageError(
            "--clickhouse: a password in the URL shows in every user's process list; remove "
            f"it and put it in ${PASSWORD_ENV}, in a file named by --clickhouse-password-file, "
            f"or in systemd's credential '{PASSWORD_CREDENTIAL}'")
    if parts.query or parts.fragment:
        raise UsageError(f"--clickhouse takes {URL_FORMS}, without '?' or '#' parts")
    if scheme == "chdb":
        return _chdb_target(parts.netloc + parts.path)
    database = unquote(parts.path).strip("/")
    if not parts.hostname or not database:
        raise UsageError(f"--clickhouse takes {URL_FORMS}: the host and the database (the "
                         "URL's path, e.g. http://clickhouse.example:8123/traffic) are needed")
    _check_database(database)
    user = unquote(parts.username) if parts.username else None
    port = port or DEFAULT_PORTS[scheme]
    host = parts.hostname
    shown_host = f"[{host}]" if ":" in host else host
    return Target(f"{scheme}://{f'{user}@' if user else ''}{shown_host}:{port}/{database}",
                  scheme, database, host, port, user)


def _chdb_target(location: str) -> Target:
    if not sys.platform.startswith("linux"):
        raise UsageError("--clickhouse chdb://... runs ClickHouse's engine in this process "
                         "(chDB), which is for Linux only; give http(s)://HOST:PORT/DATABASE")
    folder, _, database = unquote(location).rstrip("/").rpartition("/")
    if not folder or not database:
        raise UsageError("--clickhouse chdb://PATH/DATABASE: give chDB's folder and the "
                         "database in it, e.g. chdb:///var/lib/traffic-store/traffic")
    _check_database(database)
    path = Path(folder).expanduser().absolute()
    return Target(f"chdb://{path}/{database}", "chdb", database, chdb_folder=path)


def _check_database(name: str) -> None:
    if not _NAME.match(name):
        raise UsageError(f"--clickhouse: the database name {name!r} must be letters, digits "
                         "and '_' (not starting with a digit)")


@dataclass(frozen=True)
class Credentials:
    """Who the sender is at ClickHouse. The password never shows in a repr, a log or a
    message (`scrub`)."""

    user: str | None = None  # None: ClickHouse's `default`
    password: str | None = field(default=None, repr=False)
    user_from: str | None = None  # "the URL", "$TRAFFIC_CLICKHOUSE_USER"
    password_from: str | None = None  # secrets.FROM_*
    password_file: Path | None = None  # --clickhouse-password-file

    def scrub(self, text: str) -> str:
        return text.replace(self.password, "***") if self.password else text

    def password_origin(self) -> str:
        """Where the password came from, in the words of the option or variable."""
        origin = {FROM_FILE: f"the file {self.password_file}",
                  FROM_ENVIRONMENT: f"${PASSWORD_ENV}",
                  FROM_CREDENTIAL: f"systemd's credential '{PASSWORD_CREDENTIAL}'",
                  }.get(self.password_from or "")
        return (f"from {origin}" if origin else
                f"none was given: ${PASSWORD_ENV}, --clickhouse-password-file or systemd's "
                f"credential '{PASSWORD_CREDENTIAL}'")


def find_credentials(target: Target, password_file: Path | None) -> Credentials:
    """The user from the URL, else $TRAFFIC_CLICKHOUSE_USER; the password from
    --clickhouse-password-file, else $TRAFFIC_CLICKHOUSE_PASSWORD, else systemd's credential
    (never from the command line)."""
    if target.user:
        user, user_from = target.user, "the URL"
    elif os.environ.get(USER_ENV):
        user, user_from = os.environ[USER_ENV], f"${USER_ENV}"
    else:
        user, user_from = None, None
    password, password_from = find_secret("the ClickHouse password", None, password_file,
                                          PASSWORD_ENV, PASSWORD_CREDENTIAL)
    return Credentials(user, password, user_from, password_from, password_file)


def batch_token(data: bytes) -> str:
    """A batch's insert_deduplication_token: the hash of its bytes, so that the same batch,
    sent again by this run or by the next one (from the spool), gets the same token."""
    return "traffic-capture-" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class TableInfo:
    ttl_seconds: int | None  # the raw table's TTL on window_start (None: none found)


_INTERVAL_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400,
                     # Calendar months and years, taken at their shortest: a row is said
                     # expired only when ClickHouse surely dropped it.
                     "month": 28 * 86400, "quarter": 89 * 86400, "year": 365 * 86400}
_TTL = re.compile(r"\bTTL\s+window_start\s*\+\s*(?:toInterval(\w+?)\((\d+)\)|"
                  r"INTERVAL\s+(\d+)\s+(\w+?)S?\b)", re.IGNORECASE)


def ttl_seconds(engine_full: str) -> int | None:
    """The TTL on window_start in a table's engine_full (system.tables), in seconds; None
    when it has none this function reads."""
    match = _TTL.search(engine_full)
    if match is None:
        return None
    unit, number = (match.group(1), match.group(2)) if match.group(1) else (
        match.group(4), match.group(3))
    seconds = _INTERVAL_SECONDS.get(unit.lower())
    return None if seconds is None else seconds * int(number)


def rows_older_than(data: bytes, cutoff: str) -> int:
    """Rows of a batch (CSVWithNames) whose window_start (UTC text) is before `cutoff`."""
    reader = csv.reader(io.StringIO(data.decode("utf-8")))
    next(reader, None)
    at = COLUMNS.index("window_start")
    return sum(1 for row in reader if row and row[at] < cutoff)


def _quiet_library() -> None:
    """clickhouse-connect logs warnings with tracebacks; Python prints those on stderr when
    nothing handles them. The sink says what happened itself, in one line."""
    logger = logging.getLogger("clickhouse_connect")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    logger.propagate = False


def _client_module() -> Any:
    try:
        import clickhouse_connect
    except ImportError:
        raise StoreRefused(f"--clickhouse needs clickhouse-connect: {INSTALL}") from None
    _quiet_library()
    return clickhouse_connect


class Store:
    """A connection to the ingest table: verify it, insert batches. Errors come out as
    StoreUnavailable, StoreRefused or BatchRejected."""

    def __init__(self, target: Target, credentials: Credentials, timeout: float) -> None:
        self.target, self.credentials, self.timeout = target, credentials, timeout
        self._client: Any = None

    def connect(self) -> None:
        module = _client_module()
        target = self.target
        try:
            if target.scheme == "chdb":
                self._client = self._chdb_client(module)
            else:
                self._client = module.get_client(
                    host=target.host, port=target.port, username=self.credentials.user,
                    password=self.credentials.password or "", database=target.database,
                    secure=target.scheme == "https", connect_timeout=min(self.timeout, 10),
                    send_receive_timeout=self.timeout, autogenerate_session_id=False,
                    query_retries=0, compress=False)
        except Exception as error:  # noqa: BLE001 - every failure is said in one line
            raise self.explain(error) from None

    def _chdb_client(self, module: Any) -> Any:
        folder = self.target.chdb_folder
        assert folder is not None
        try:
            import chdb  # noqa: F401 - clickhouse-connect's chdb:// needs it
        except ImportError:
            raise StoreRefused(f"chdb:// needs chDB: {sys.executable} -m pip install chdb "
                               "(Linux only)") from None
        if not folder.is_dir():
            raise StoreRefused(f"{self.target.url}: chDB's folder {folder} does not exist; "
                               f"create the schema first with {INIT_HINT}")
        return module.get_client(dsn=f"chdb://{folder}", database=self.target.database)

    def verify(self) -> TableInfo:
        """The ingest table is there with its columns; its TTL."""
        if self._client is None:
            self.connect()
        database = self.target.database
        found = self._rows(f"SELECT engine_full FROM system.tables WHERE database = "
                           f"'{database}' AND name = '{INGEST_TABLE}'")
        if not found:
            raise StoreRefused(f"ClickHouse at {self.target.url} has no table "
                               f"{database}.{INGEST_TABLE}: create the schema with {INIT_HINT}")
        held = {row[0] for row in self._rows(
            f"SELECT name FROM system.columns WHERE database = '{database}' "
            f"AND table = '{INGEST_TABLE}'")}
        missing = [column for column in COLUMNS if column not in held]
        if missing:
            raise StoreRefused(f"ClickHouse table {database}.{INGEST_TABLE} at "
                               f"{self.target.url} lacks {', '.join(missing)}: upgrade the "
                               f"schema with {INIT_HINT}")
        return TableInfo(ttl_seconds(str(found[0][0])))

    def _rows(self, sql: str) -> list[Any]:
        try:
            return list(self._client.query(sql).result_rows)
        except Exception as error:  # noqa: BLE001
            raise self.explain(error) from None

    def insert(self, data: bytes) -> None:
        """One batch (CSVWithNames), with its deduplication token."""
        if self._client is None:
            self.connect()
        known = self._client.server_settings
        settings = {name: value for name, value in INSERT_SETTINGS.items() if name in known}
        settings["insert_deduplication_token"] = batch_token(data)
        try:
            self._client.raw_insert(INGEST_TABLE, COLUMNS, data, settings=settings,
                                    fmt="CSVWithNames")
        except Exception as error:  # noqa: BLE001
            raise self.explain(error) from None

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing a connection that failed
                client.close()

    def explain(self, error: BaseException) -> StoreError:
        """A client's exception as one of ours, in one line without the password."""
        if isinstance(error, StoreError):
            return error
        url, database = self.target.url, self.target.database
        code = getattr(error, "code", None)
        said = self.credentials.scrub(_said(error))
        found = re.search(r"HTTP status (\d{3})\b", str(error))
        status = found.group(1) if found else None
        transport = _transport_cause(error)
        if transport is not None:
            return self._transport(transport)
        if code in REFUSED_USER or (code is None and status in ("401", "403")):
            user = self.credentials.user or "default"
            reason = REFUSED_USER.get(code or 0, "refused")
            return StoreRefused(f"ClickHouse at {url} refused the user '{user}' ({reason}): "
                                f"check the user and the password "
                                f"({self.credentials.password_origin()})")
        if code == ACCESS_DENIED:
            return StoreRefused(f"ClickHouse at {url} denies the user "
                                f"'{self.credentials.user or 'default'}' a right it needs "
                                f"(INSERT and SELECT on {database}.{INGEST_TABLE}, see the "
                                f"README): {said}")
        if code == UNKNOWN_DATABASE:
            return StoreRefused(f"ClickHouse at {url} has no database {database}: create the "
                                f"schema with {INIT_HINT}")
        if code == UNKNOWN_TABLE:
            return StoreRefused(f"ClickHouse at {url} has no table {database}.{INGEST_TABLE}: "
                                f"create the schema with {INIT_HINT}")
        if code in UNREADABLE_BATCH:
            return BatchRejected(f"ClickHouse at {url} cannot read the batch: {said}")
        if code is not None:  # ClickHouse answered with an error it may not give next time
            return StoreUnavailable(f"ClickHouse at {url} failed: {said}")
        if status in ("500", "502", "503", "504"):
            return StoreUnavailable(f"{url} answered HTTP {status}: {said}")
        return StoreRefused(
            f"{url} answers, but not as ClickHouse"
            + (f" (HTTP {status})" if status else "")
            + ": check the host, the port (ClickHouse's HTTP port is 8123, 8443 with TLS) and "
            "http or https")

    def _transport(self, cause: BaseException) -> StoreError:
        url, target = self.target.url, self.target
        if isinstance(cause, socket.gaierror) or "NameResolution" in type(cause).__name__:
            return StoreRefused(f"--clickhouse {url}: the host {target.host} is not known "
                                "(DNS)")
        if type(cause).__name__ == "SSLError":  # ssl's, or urllib3's around it
            return StoreRefused(f"{url}: the TLS handshake failed ({_first_line(cause)}): is "
                                "it an http port given as https, or a certificate this "
                                "machine does not trust?")
        if isinstance(cause, TimeoutError) or "Timeout" in type(cause).__name__:
            return StoreUnavailable(f"ClickHouse at {url} did not answer within "
                                    f"{self.timeout:g} s")
        if isinstance(cause, ConnectionRefusedError):
            return StoreUnavailable(f"ClickHouse at {url} refuses connections (down, or "
                                    f"nothing listens on port {target.port})")
        return StoreUnavailable(f"cannot reach ClickHouse at {url} "
                                f"({self.credentials.scrub(_first_line(cause))})")


def _said(error: BaseException) -> str:
    """What an error says, its server response first, in one short line."""
    text = str(error)
    _, found, response = text.partition("server response: ")
    text = response if found else text
    text = re.sub(r"\s*\(for url [^)]*\)", "", text)
    text = re.sub(r"\s*\(version [^)]*\)\s*$", "", _first_line(text))
    return text[:300]


def _first_line(error: BaseException | str) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


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
                    or type(current).__name__ == "SSLError":
                return current
        reason = getattr(current, "reason", None)  # urllib3's MaxRetryError holds the cause
        current = reason if isinstance(reason, BaseException) else (
            current.__cause__ or current.__context__)
    return found
