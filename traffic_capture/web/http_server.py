"""uvicorn on a thread of its own, on a socket bound here (a bind error is a one-line error
before anything starts). uvicorn installs no signal handler off the main thread, so the
program's own Ctrl+C/SIGTERM handling stays as it is."""

from __future__ import annotations

import socket
import threading
import time

from traffic_capture.errors import TrafficCaptureError
from traffic_capture.web.api import WebApp


class WebListenError(TrafficCaptureError):
    """The address cannot be listened on (in use, not local...)."""


def bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise WebListenError(f"--web {host}:{port}: unknown host ({error.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        sock.close()
        raise WebListenError(f"cannot listen on {host}:{port}: "
                             f"{error.strerror or error}") from None
    sock.setblocking(False)
    return sock


def url_of(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


class WebServer:
    """The dashboard's HTTP server; `start()` returns once it accepts connections."""

    def __init__(self, web: WebApp, host: str, port: int,
                 bound: socket.socket | None = None) -> None:
        import uvicorn

        self.web = web
        self.host = host
        self.socket = bound if bound is not None else bind(host, port)
        self.port = int(self.socket.getsockname()[1])
        config = uvicorn.Config(web.app, log_level="warning", lifespan="off", access_log=False,
                                timeout_graceful_shutdown=3, timeout_keep_alive=5)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="web", daemon=True)
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        return url_of(self.host, self.port)

    def _serve(self) -> None:
        try:
            self.server.run(sockets=[self.socket])
        except BaseException as error:  # noqa: BLE001 - reported by start(), never a traceback
            self.error = error

    def start(self) -> None:
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise WebListenError(f"the web server on {self.url} could not start: "
                                     f"{self.error!r}")
            time.sleep(0.02)

    def stop(self) -> None:
        self.web.closing.set()  # event streams end at their next tick
        self.server.should_exit = True
        self._thread.join(10)
        self.socket.close()
