"""The web's tests share these: a daemon or `serve` as a child process, its URL read from its
start-up line (it listens on a free port: `--web 127.0.0.1:0`), and plain HTTP calls."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from tests.conftest import DAEMON, child_env

URL = re.compile(r"(?:dashboard at|serving \S+ at) (http://\S+/)")


class WebProcess:
    """`traffic-capture ... --web` in a child process; stderr drained in a thread."""

    def __init__(self, args: list[str], prefix: list[str] | None = None, **env: str) -> None:
        self.process = subprocess.Popen([*(prefix or []), *DAEMON, *args],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, env=child_env(**env))
        self._stderr: list[str] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        self.url = self._wait_url()

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for chunk in iter(lambda: self.process.stderr.read1(4096), b""):  # type: ignore[union-attr]
            self._stderr.append(chunk.decode(errors="replace"))

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

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

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"never said {text!r}; stderr:\n{self.stderr}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.process.send_signal(sig)
        try:
            code = self.process.wait(40)
        finally:
            self.kill()
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


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
