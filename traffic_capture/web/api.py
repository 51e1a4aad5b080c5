"""The FastAPI application: the page, the JSON API, the event stream and /metrics, all read-only
views of the web's memory or of any `queries.Reader` given (the memory and a history together,
web/tiered.py), or of a fleet's servers, all or one (`server=`, web/scopes.py) (plus, with
--debug-inject, one endpoint that feeds synthetic packets to the capture through the same
pipeline). The handlers parse and check; the JSON comes from `answers` (over the scope's
`queries.Reader`), the stream's text from `events`.

Bad parameters get 422 with a message, an unknown client or server 404; queries are plain numpy
over the store, so nothing here should raise: a 500 is a bug (the schemathesis test looks for
one).
"""

from __future__ import annotations

import asyncio
import hmac
import threading
import time
from collections.abc import AsyncIterator, Callable
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import FastAPI, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from pydantic import BaseModel, Field

from traffic_capture.errors import TrafficCaptureError
from traffic_capture.queries import Reader, TimeRange
from traffic_capture.rules import (
    CLASSES,
    IN,
    OUT,
    WEB_CURRENT_EVENT_SECONDS,
    WEB_METRICS_SECONDS,
    WEB_METRICS_TOP,
)
from traffic_capture.version import __version__
from traffic_capture.web import answers
from traffic_capture.web.answers import canonical_ip
from traffic_capture.web.memory_store import MemoryStore
from traffic_capture.web.ranges import asked_range
from traffic_capture.web.scopes import OneScope, Scope, Scopes, UnknownServer

TOKEN_COOKIE = "traffic_web_token"
Status = Callable[[], dict[str, Any]]
MAX_SECONDS = 10 * 366 * 86400  # ten years: any real history fits
Seconds = Annotated[int, Query(ge=1, le=MAX_SECONDS,
                               description="the last S seconds, counted back from the newest "
                                           "window held")]
RangeSeconds = Annotated[int, Query(ge=1, le=MAX_SECONDS,
                                    description="the last S seconds, counted back from the "
                                                "newest window held, or from `to`; unused "
                                                "with `from`")]
From = Annotated[str | None, Query(alias="from",
                                   description="the range's start: epoch seconds, or an ISO "
                                               "8601 date-time (without a zone: the server's "
                                               "local time, UTC with --utc)")]
To = Annotated[str | None, Query(alias="to",
                                 description="the range's end, as `from`; default: the end "
                                             "of the newest window held")]
ServerName = Annotated[str | None, Query(
    description="a server of the fleet (serve --clickhouse): its windows alone; without it, "
                "every server's, a client's bytes on several servers added up. A server not "
                "held: 404")]
STATIC = resources.files("traffic_capture.web") / "static"


class InjectRequest(BaseModel):
    """Synthetic packets (--debug-inject): `count` packets of `bytes` IP bytes each between the
    server and `client`, classified and windowed like captured ones."""

    client: str = Field(description="the client's IPv4 or IPv6 address")
    direction: Literal["in", "out"] = Field(description="in: client to server")
    protocol: Literal["http", "ftp", "tcp", "udp", "other"]
    bytes: int = Field(ge=40, le=65535, description="IP bytes per packet (header included)")
    count: int = Field(default=1, ge=1, le=10000)


Inject = Callable[[InjectRequest], int]


def plotly_js() -> Path:
    """plotly.min.js from the installed plotly package (never a CDN, never in this repo)."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def current_window(store: MemoryStore) -> dict[str, Any] | None:
    """The window in progress with its rows so far (None: none, or `serve`)."""
    current = store.current()
    return None if current is None else answers.window_dict(
        current.start_s, current.end_s, current.clients, current.inbound, current.counts)


def _ip(text: str) -> str:
    try:
        return canonical_ip(text)
    except ValueError:
        raise HTTPException(422, f"{text!r} is not an IPv4 or IPv6 address") from None


class WebApp:
    """The app and what its handlers share; `closing` ends the event streams at shutdown."""

    def __init__(self, store: MemoryStore, status: Status, token: str | None = None,
                 inject: Inject | None = None, reader: Reader | None = None,
                 utc: bool = False, scopes: Scopes | None = None) -> None:
        self.store, self.status, self.token, self.inject = store, status, token, inject
        # What the answers over a range ask: the memory alone, or with a history behind it;
        # a fleet's scopes instead, one per server asked for.
        self.reader: Reader = reader if reader is not None else store
        self.scopes: Scopes = scopes if scopes is not None else OneScope(store, self.reader)
        self.utc = utc  # a date-time without a zone is UTC, not local time
        self.closing = threading.Event()
        self.started = time.time()
        self.app = self._build()

    def _authorised(self, request: Request) -> bool:
        assert self.token is not None
        expected = self.token.encode()
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected):
            return True
        cookie = request.cookies.get(TOKEN_COOKIE, "")
        return hmac.compare_digest(cookie.encode(), expected)

    def _scope(self, server: str | None) -> Scope:
        try:
            return self.scopes.scope(server)
        except UnknownServer as error:
            raise HTTPException(404, str(error)) from None

    def _range(self, reader: Reader, seconds: int, start: str | None, end: str | None
               ) -> TimeRange:
        try:
            return asked_range(answers.newest_end(reader), seconds, start, end, self.utc)
        except ValueError as error:
            raise HTTPException(422, str(error)) from None

    def _build(self) -> FastAPI:
        # No /docs or /redoc: FastAPI's load Swagger UI and ReDoc from a CDN (blank offline),
        # and the Swagger UI on PyPI is too old for the OpenAPI 3.1 schema at /openapi.json.
        app = FastAPI(title="traffic-capture", version=__version__,
                      description="Per-client bytes of the server, by window, class and "
                                  "direction: the same numbers as traffic.csv.",
                      docs_url=None, redoc_url=None)
        not_held: dict[int | str, dict[str, Any]] = {
            404: {"description": "no such server held"}}

        @app.exception_handler(TrafficCaptureError)
        async def store_failed(request: Request, error: TrafficCaptureError) -> JSONResponse:
            # A history that cannot be read just now (a part vanishing under a retry loop, a
            # folder made unreadable): its one line, and the page tries again later.
            return JSONResponse({"detail": str(error)}, status_code=503)

        @app.exception_handler(OSError)
        async def store_unreadable(request: Request, error: OSError) -> JSONResponse:
            where = f" ({error.filename})" if error.filename else ""
            return JSONResponse({"detail": f"cannot read the history{where}: "
                                           f"{error.strerror or error}"}, status_code=503)

        if self.token is not None:
            @app.middleware("http")
            async def require_token(request: Request, call_next: Any) -> Response:
                link_token = request.query_params.get("token")
                if link_token is not None and self.token is not None and hmac.compare_digest(
                        link_token.encode(), self.token.encode()):
                    # The one-time link: set the cookie, and drop the token from the address.
                    rest = [(k, v) for k, v in request.query_params.multi_items()
                            if k != "token"]
                    target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
                    redirect = RedirectResponse(target, status_code=303)
                    redirect.set_cookie(TOKEN_COOKIE, self.token, httponly=True,
                                        samesite="strict")
                    return redirect
                if not self._authorised(request):
                    return JSONResponse({"detail": "a token is required: an 'Authorization: "
                                                   "Bearer <token>' header, or open the "
                                                   "dashboard once with ?token=<token>"},
                                        status_code=401,
                                        headers={"WWW-Authenticate": "Bearer"})
                response: Response = await call_next(request)
                return response

        @app.get("/", include_in_schema=False)
        def page() -> Response:
            return Response((STATIC / "index.html").read_bytes(), media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

        @app.get("/static/{name}", include_in_schema=False)
        def static(name: str) -> Response:
            if name == "plotly.min.js":
                return FileResponse(plotly_js(), media_type="text/javascript",
                                    headers={"Cache-Control": "max-age=86400"})
            if name not in ("app.js", "app.css"):
                raise HTTPException(404, "no such file")
            kind = "text/javascript" if name.endswith(".js") else "text/css"
            return Response((STATIC / name).read_bytes(), media_type=kind,
                            headers={"Cache-Control": "no-cache"})

        @app.get("/api/status", summary="What is captured, counted and written",
                 responses=not_held)
        def status(server: ServerName = None) -> dict[str, Any]:
            scope = self._scope(server)
            fleet = {"server": scope.server} if self.scopes.fleet is not None else {}
            return {**self.status(), **scope.store.summary(), **fleet,
                    "web_uptime_seconds": round(time.time() - self.started, 1)}

        @app.get("/api/servers", summary="The fleet's servers, with the windows held of each "
                                         "and their bytes over the last S seconds, or from/to")
        def servers(seconds: RangeSeconds = 300, start: From = None, end: To = None
                    ) -> dict[str, Any]:
            fleet = self.scopes.fleet
            if fleet is None:
                return {"fleet": False, "servers": []}
            return answers.servers(fleet, self._range(fleet, seconds, start, end))

        @app.get("/api/windows", summary="The last closed windows with their rows",
                 responses=not_held)
        def windows(limit: Annotated[int, Query(ge=1, le=100_000)] = 12,
                    server: ServerName = None) -> dict[str, Any]:
            return answers.windows(self._scope(server).store, limit)

        @app.get("/api/windows/current", summary="The window in progress so far",
                 responses=not_held)
        def current(server: ServerName = None) -> dict[str, Any]:
            return {"window": current_window(self._scope(server).store)}

        @app.get("/api/clients", summary="Top clients over the last S seconds, or from/to",
                 responses=not_held)
        def clients(seconds: RangeSeconds = 300,
                    limit: Annotated[int, Query(ge=1, le=100_000)] = 20,
                    direction: Literal["in", "out"] | None = None,
                    start: From = None, end: To = None, server: ServerName = None
                    ) -> dict[str, Any]:
            reader = self._scope(server).reader
            return {**answers.clients(reader, self._range(reader, seconds, start, end), limit,
                                      direction), **self._server(server)}

        @app.get("/api/clients/{ip}", summary="One client's per-window history (drill-down)",
                 responses={404: {"description": "no held window names this client, or no "
                                                 "such server"}})
        def client(ip: Annotated[str, PathParam(description="IPv4 or IPv6 address")],
                   seconds: RangeSeconds = 300, start: From = None, end: To = None,
                   server: ServerName = None) -> dict[str, Any]:
            address = _ip(ip)
            reader = self._scope(server).reader
            found = answers.client(reader, address, self._range(reader, seconds, start, end))
            if found is None:
                on = f" on server {server}" if server is not None else ""
                raise HTTPException(404, f"no window held names client {address}{on}")
            return {**found, **self._server(server)}

        @app.get("/api/protocols", summary="Bytes per class over the last S seconds, or "
                                           "from/to", responses=not_held)
        def protocols(seconds: RangeSeconds = 300, start: From = None, end: To = None,
                      server: ServerName = None) -> dict[str, Any]:
            reader = self._scope(server).reader
            return {**answers.protocols(reader, self._range(reader, seconds, start, end)),
                    **self._server(server)}

        @app.get("/api/services", summary="Bytes per service (server-side port) over the "
                                          "last S seconds, or from/to", responses=not_held)
        def services(seconds: RangeSeconds = 300, start: From = None, end: To = None,
                     server: ServerName = None) -> dict[str, Any]:
            reader = self._scope(server).reader
            return {**answers.services(reader, self._range(reader, seconds, start, end)),
                    **self._server(server)}

        @app.get("/api/stream", summary="Server-sent events: `window` (with an id) per closed "
                                        "window, `current` every second",
                 response_class=StreamingResponse, responses=not_held)
        async def stream(request: Request, seconds: Seconds = 300,
                         last_event_id: Annotated[str | None, Header()] = None,
                         server: ServerName = None) -> StreamingResponse:
            # A server's memory is made and filled when first asked: off the event loop.
            scope = await asyncio.to_thread(self._scope, server)
            after: int | None = None
            if last_event_id is not None and last_event_id.strip():
                try:
                    after = scope.events.position(last_event_id)
                except ValueError:
                    raise HTTPException(422, "Last-Event-ID must be an id as sent: a window "
                                             "start in whole seconds, maybe with .N") from None
            return StreamingResponse(self._events(request, after, seconds, scope),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache",
                                              "X-Accel-Buffering": "no"})

        @app.get("/metrics", response_class=PlainTextResponse,
                 summary="Prometheus text format", responses=not_held)
        def metrics(server: ServerName = None) -> str:
            return self._metrics(self._scope(server).store)

        if self.inject is not None:
            inject = self.inject

            @app.post("/api/debug/inject", summary="Synthetic packets through the pipeline "
                                                   "(--debug-inject, loopback only)")
            def debug_inject(request: InjectRequest) -> dict[str, Any]:
                try:
                    address = canonical_ip(request.client)
                except ValueError:
                    raise HTTPException(422, f"{request.client!r} is not an IPv4 or IPv6 "
                                             "address") from None
                try:
                    packets = inject(request.model_copy(update={"client": address}))
                except ValueError as error:
                    raise HTTPException(422, str(error)) from None
                return {"injected": packets}

        return app

    def _server(self, server: str | None) -> dict[str, Any]:
        """A fleet's answer says whose windows it sums: a server's, or all (null)."""
        return {"server": server} if self.scopes.fleet is not None else {}

    async def _events(self, request: Request, after: int | None, seconds: int, scope: Scope
                      ) -> AsyncIterator[bytes]:
        events = scope.events

        def cached(after: int | None) -> tuple[list[tuple[int, bytes]], bytes] | None:
            windows = events.windows(after, seconds, build=False)
            current = events.current(build=False)
            return None if windows is None or current is None else (windows, current)

        def built(after: int | None) -> tuple[list[tuple[int, bytes]], bytes]:
            windows, current = events.windows(after, seconds), events.current()
            assert windows is not None and current is not None
            return windows, current

        yield b"retry: 2000\n\n"
        last_current: bytes | None = None
        while not self.closing.is_set():
            # The events' text is built once for all streams (a window's by the first stream
            # that needs it, the current one once per update) and cached: streams opening
            # together, or resuming, send the same bytes without building them. A look at the
            # cache is quick (no thread hop, 20 streams); a build goes off the event loop.
            found = cached(after)
            if found is None:
                found = await asyncio.to_thread(built, after)
            windows, current = found
            for number, text in windows:
                after = number
                yield text
            if current is not last_current and current != last_current:
                last_current = current
                yield current
            else:
                yield b": idle\n\n"
            if await request.is_disconnected():
                return
            await asyncio.sleep(WEB_CURRENT_EVENT_SECONDS)
            if scope.server is not None:  # an open stream keeps its server's memory held
                scope = await asyncio.to_thread(self._scope, scope.server)
                if scope.events is not events:  # dropped and made again: start afresh
                    return

    def _metrics(self, store: MemoryStore) -> str:
        status = self.status()
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str,
                   samples: list[tuple[dict[str, str], float | int | None]]) -> None:
            lines.append(f"# HELP traffic_capture_{name} {help_text}")
            lines.append(f"# TYPE traffic_capture_{name} {kind}")
            for labels, value in samples:
                if value is None:
                    continue
                text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
                lines.append(f"traffic_capture_{name}{{{text}}} {value}" if text
                             else f"traffic_capture_{name} {value}")

        totals = store.totals
        metric("bytes_total", "counter", "IP bytes in closed windows, by class and direction",
               [({"class": name, "direction": direction}, int(totals[d, c]))
                for d, direction in enumerate((IN, OUT)) for c, name in enumerate(CLASSES)])
        for key, kind, help_text in (
                ("packets_seen", "counter", "packets read from the capture"),
                ("packets_counted", "counter", "packets to or from a server"),
                ("kernel_drops", "counter", "packets the kernel dropped before capture"),
                ("rows_written", "counter", "CSV rows written"),
                ("rows_pending", "gauge", "CSV rows waiting to be written")):
            value = status.get(key)
            metric(key if kind == "gauge" else f"{key}_total", kind, help_text,
                   [({}, value)] if isinstance(value, int) else [])
        metric("windows_total", "counter", "closed windows held or seen by the web",
               [({}, store.windows_added)])
        top = answers.clients(store, answers.last(store, WEB_METRICS_SECONDS),
                              WEB_METRICS_TOP)["clients"]
        metric("client_bytes", "gauge",
               f"IP bytes over the last {WEB_METRICS_SECONDS} s of the top "
               f"{WEB_METRICS_TOP} clients only (bounded label cardinality)",
               [({"client": c["ip"], "direction": direction}, c[f"bytes_{direction}"])
                for c in top for direction in (IN, OUT)])
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
