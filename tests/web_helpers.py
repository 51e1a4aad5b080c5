"""The web's tests share these: a daemon or `serve` as a child process, its URL read from its
start-up line (it listens on a free port: `--web 127.0.0.1:0`), plain HTTP calls, and rows of
windows to load or append to a CSV."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import DAEMON, ChildProcess, child_env
from traffic_capture.csvformat import Row, format_rows, header_line
from traffic_capture.web import answers
from traffic_capture.web.memory_store import MemoryStore

URL = re.compile(r"(?:dashboard at|serving \S+ at) (http://\S+/)")
T0 = 1_700_000_000


def window_rows(start: int, clients: dict[tuple[str, str], list[int]], length: int = 5
                ) -> list[Row]:
    return [Row(start, start + length, ip, direction, sum(counts), *counts)
            for (ip, direction), counts in clients.items()]


def store_with(windows: list[list[Row]], history: int = 3600) -> MemoryStore:
    store = MemoryStore(5, history, services=True)
    for rows in windows:
        store.load_rows(rows)
    return store


def current_dict(store: MemoryStore) -> dict[str, Any] | None:
    """/api/windows/current's window, without the app."""
    current = store.current()
    return None if current is None else answers.window_dict(
        current.start_s, current.end_s, current.clients, current.inbound, current.counts)


def append(path: Path, rows: list[Row]) -> None:
    with path.open("a", encoding="utf-8", newline="") as out:
        if out.tell() == 0:
            out.write(header_line(";"))
        out.write(format_rows(rows, ";"))


class WebProcess(ChildProcess):
    """`traffic-capture ... --web` (or `serve`) in a child process, returned with its URL."""

    def __init__(self, args: list[str], prefix: list[str] | None = None,
                 program: list[str] | None = None, stdin: int = subprocess.DEVNULL,
                 **env: str) -> None:
        super().__init__([*(prefix or []), *(program or DAEMON), *args], env=child_env(**env),
                         stdin=stdin)
        self.url = self._wait_url()

    def _wait_url(self) -> str:
        deadline = time.monotonic() + 60
        while True:
            found = URL.search(self.stderr)
            if found:
                return found.group(1)
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"no dashboard URL; stderr:\n{self.stderr}")
            time.sleep(0.05)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            body = response.read()
            status = response.status
            kind = response.headers.get("content-type", "")
    except urllib.error.HTTPError as error:
        body, status, kind = error.read(), error.code, error.headers.get("content-type", "")
    return status, json.loads(body) if "json" in kind else body.decode()


def post(url: str, payload: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def eventually(check: Any, timeout: float = 30, interval: float = 0.2) -> Any:
    """Call `check` until it returns something truthy (no timing assertion: just patience)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition never held")
        time.sleep(interval)
