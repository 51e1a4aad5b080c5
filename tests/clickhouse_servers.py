"""Local HTTP servers (127.0.0.1 only) for the ClickHouse sender's tests: one that speaks
enough of ClickHouse's HTTP interface to take the sender's queries and inserts, executed by
ClickHouse's real engine in this process (chDB), and told to fail on purpose; and servers that
are not ClickHouse at all, that refuse every user, or that never answer.

`ChdbOverHttp` is a test double of the *transport* only: it reads the request as ClickHouse's
HTTP interface does (the SQL in the `query` parameter or the body, settings as parameters, an
INSERT's data after its first line), hands the statement and the settings to chDB as they came
(an INSERT through clickhouse-connect's chDB client, which applies them as ClickHouse does),
and answers as ClickHouse does (X-ClickHouse-Exception-Code on errors). Deduplication, parsing,
TTL and storage are chDB's, never the double's. Every insert it sees is recorded (token, rows,
body, what it did), to check the wire.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.clickhouse_store import DATABASE
from tests.requirements import needs_module

LOOPBACK = "127.0.0.1"
VERSION = "26.9.2.1"
# Request parameters ClickHouse's HTTP interface reads itself: never settings.
TRANSPORT = {"query", "database", "query_id", "session_id", "session_timeout", "session_check",
             "default_format", "wait_end_of_query", "send_progress_in_http_headers",
             "http_headers_progress_interval_ms", "client_protocol_version",
             "enable_http_compression", "user", "password", "quota_key", "compress",
             "decompress", "buffer_size"}
# HTTP statuses ClickHouse gives some error codes (HTTPHandler.cpp); the rest are 500.
STATUS_OF_CODE = {516: 401, 192: 401, 193: 401, 194: 401, 497: 403, 60: 404, 81: 404,
                  62: 400, 27: 400, 6: 400, 26: 400, 41: 400, 72: 400, 117: 400}
INSERT = re.compile(rb"\s*INSERT\s+INTO\s+(\S+)\s*\(([^)]*)\)\s*FORMAT\s+(\w+)\s*\n",
                    re.IGNORECASE)


@dataclass
class Insert:
    token: str | None
    rows: int
    body: bytes
    outcome: str  # "stored", "failed" (500, nothing stored), "lost" (stored, then 500)
    settings: dict[str, str] | None = None  # as they came, on the wire


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # a fleet of senders connecting at once (the benchmark)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up waiting (its timeout) closed the connection: not news."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LocalServer:
    """An HTTP server on 127.0.0.1 in a thread; `answer(handler, body)` is what it does."""

    def __init__(self, port: int = 0) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                owner.answer(self, b"")

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                owner.answer(self, self.rfile.read(length))

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.release = threading.Event()  # ends a hang
        self._server = _Server((LOOPBACK, port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, database: str = DATABASE, user: str | None = None) -> str:
        return f"http://{user + '@' if user else ''}{LOOPBACK}:{self.port}/{database}"

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        raise NotImplementedError


def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes,
          headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def clickhouse_error(handler: BaseHTTPRequestHandler, code: int, message: str,
                     status: int | None = None) -> None:
    """An error as ClickHouse's HTTP interface gives it."""
    reply(handler, status or STATUS_OF_CODE.get(code, 500),
          f"Code: {code}. DB::Exception: {message} (version {VERSION})\n".encode(),
          {"X-ClickHouse-Exception-Code": str(code), "Content-Type": "text/plain"})


class NotClickHouse(LocalServer):
    """A web server that is not ClickHouse: a page for everything (a wrong port)."""

    def answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        reply(handler, 200, b"<html><body><h1>It works!</h1></body></html>\n",
              {"Content-Type": "text/html"})


class RefusesEveryone(LocalServer):
    """ClickHouse refusing the user: 401 with code 516, or a proxy in front saying 403."""

    def __init__(self, status: int = 401) -> None:
        super().__init__()
        self.status = status
        self.seen: list[tuple[str, dict[str, str]]] = []  # (path, headers) asked

    def answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        self.seen.append((handler.path, dict(handler.headers)))
        if self.status == 403:
            reply(handler, 403, b"<html><body>403 Forbidden</body></html>\n",
                  {"Content-Type": "text/html"})
        else:
            clickhouse_error(handler, 516, "default: Authentication failed: password is "
                             "incorrect, or there is no user with such name. "
                             "(AUTHENTICATION_FAILED)")


class NeverAnswers(LocalServer):
    """Takes the connection and the request, and never answers (until the test ends)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    def answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        self.asked += 1
        self.release.wait(120)
        handler.close_connection = True


class ChdbOverHttp(LocalServer):
    """Enough of ClickHouse's HTTP interface over chDB in this process (see the module's
    docstring). `script` says what the next inserts do ("fail", "lose", "hang"; then
    "store" for good); `password`, when set, is required (HTTP Basic, as clickhouse-connect
    sends it)."""

    def __init__(self, folder: Path, user: str = "default", password: str | None = None,
                 port: int = 0) -> None:
        super().__init__(port)
        clickhouse_connect = needs_module("clickhouse_connect")
        needs_module("chdb")
        self._connect = clickhouse_connect.get_client
        self.folder = folder
        self.user, self.password = user, password
        self.script: list[str] = []
        self.inserts: list[Insert] = []
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, headers), every one
        self._clients: dict[str | None, Any] = {}
        self._lock = threading.Lock()

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        for client in self._clients.values():
            client.close()

    def query_client(self) -> Any:
        """A client on the same chDB (this process holds its folder), to check the store."""
        with self._lock:
            return self._client(DATABASE)

    def answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        parts = urlsplit(handler.path)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        self.requests.append((handler.path, dict(handler.headers)))
        if parts.path == "/ping":
            reply(handler, 200, b"Ok.\n")
            return
        if not self._authorized(handler):
            clickhouse_error(handler, 516, f"{self.user}: Authentication failed: password is "
                             "incorrect, or there is no user with such name. "
                             "(AUTHENTICATION_FAILED)")
            return
        sql = params.get("query", "").encode() + (b"\n" if params.get("query") else b"") + body
        settings = {k: v for k, v in params.items()
                    if k not in TRANSPORT and not k.startswith("param_")}
        found = INSERT.match(sql)
        step = (self.script.pop(0) if self.script else "store") if found else ""
        if step == "hang":
            self.inserts.append(Insert(settings.get("insert_deduplication_token"), 0, b"", step))
            self.release.wait(120)
            handler.close_connection = True
            return
        with self._lock:
            try:
                client = self._client(params.get("database"))
                if found:
                    self._insert(handler, client, found, sql[found.end():], settings, step)
                    return
                result = client.raw_query(sql.decode())
            except Exception as error:  # noqa: BLE001 - answered as ClickHouse answers
                code = getattr(error, "code", None) or _code_in(str(error)) or 1002
                clickhouse_error(handler, code, _message(str(error)))
                return
        reply(handler, 200, result, {"X-ClickHouse-Timezone": "UTC",
                                     "Content-Type": "application/octet-stream"})

    def _authorized(self, handler: BaseHTTPRequestHandler) -> bool:
        if self.password is None:
            return True
        given = handler.headers.get("Authorization", "")
        if not given.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(given[6:]).decode().partition(":")
        return user == self.user and password == self.password

    def _client(self, database: str | None) -> Any:
        if database not in self._clients:
            self._clients[database] = self._connect(dsn=f"chdb://{self.folder}",
                                                    database=database)
        return self._clients[database]

    def _insert(self, handler: BaseHTTPRequestHandler, client: Any, found: re.Match[bytes],
                data: bytes, settings: dict[str, str], step: str) -> None:
        table = found.group(1).decode()
        columns = [c.strip().strip("`\"") for c in found.group(2).decode().split(",")]
        record = Insert(settings.get("insert_deduplication_token"),
                        max(data.count(b"\n") - 1, 0), data,
                        {"fail": "failed", "lose": "lost"}.get(step, "stored"), settings)
        self.inserts.append(record)
        if step == "fail":
            clickhouse_error(handler, 1002, "a fault on purpose, nothing stored")
            return
        known = client.server_settings
        client.raw_insert(table, columns, data, fmt=found.group(3).decode(),
                          settings={k: v for k, v in settings.items() if k in known})
        if step == "lose":  # stored, but the answer never arrives whole
            clickhouse_error(handler, 1002, "a fault on purpose, after storing")
            return
        summary = json.dumps({"written_rows": str(record.rows)})
        reply(handler, 200, b"", {"X-ClickHouse-Summary": summary})


def _code_in(message: str) -> int | None:
    found = re.search(r"\bCode:\s*(\d+)", message)
    return int(found.group(1)) if found else None


def _message(text: str) -> str:
    _, found, rest = text.partition("DB::Exception: ")
    return (rest if found else text).splitlines()[0] if text else "error"


@contextlib.contextmanager
def unused_port() -> Iterator[int]:
    """A port nothing listens on (a ClickHouse that is down): refused connections."""
    with _Server((LOOPBACK, 0), BaseHTTPRequestHandler) as server:
        port = server.server_address[1]
    yield port
