"""The web dashboard, REST API and event stream (the optional `web` extra).

This package's modules import FastAPI, uvicorn and plotly only when the web is asked for
(`--web`, `serve`): the core install runs without them. What is here needs nothing beyond the
standard library: the listen address, the exposure rules, and the one-line error when the
extra is missing.
"""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from traffic_capture import argtypes
from traffic_capture.errors import TrafficCaptureError, UsageError
from traffic_capture.rules import WEB_DEFAULT_HOST, WEB_HISTORY_SECONDS
from traffic_capture.secrets import find_secret

WEB_TOKEN_ENV = "TRAFFIC_WEB_TOKEN"
WEB_TOKEN_CREDENTIAL = "web-token"  # systemd's LoadCredential= name (service-unit)

# The package is installed from its clone (not from PyPI), with the interpreter that runs it.
INSTALL_HINT = f"{sys.executable} -m pip install -e '.[web]' (in the project's folder)"
WEB_MODULES = ("fastapi", "uvicorn", "plotly")


class WebSettings(NamedTuple):
    host: str
    port: int
    token: str | None
    history_seconds: int  # closed windows kept in memory
    history_csv: Path  # whose recent rows the dashboard shows at start (a restart shows the past)
    debug_inject: bool = False
    token_from: str | None = None  # secrets.FROM_*: the command line is said once (`ps`)
    token_file: Path | None = None  # --web-token-file
    # The run's --history store: the answers over a range read it for what the memory does
    # not hold (older windows, coarser resolutions).
    history: Path | None = None


class WebUnavailable(TrafficCaptureError):
    """The `web` extra is not installed; the message gives the one command that fixes it."""


def require_web() -> None:
    """Raise WebUnavailable, naming the fix, when a module of the extra is missing."""
    missing = []
    for name in WEB_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise WebUnavailable(f"the web dashboard needs {', '.join(missing)}, which are not "
                             f"installed: {INSTALL_HINT}")


def parse_listen(text: str) -> tuple[str, int]:
    """'[HOST:]PORT' -> (host, port); IPv6 hosts in brackets ('[::1]:8000'). ValueError says why."""
    value = text.strip()
    host, port_text = WEB_DEFAULT_HOST, value
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or value[end + 1:end + 2] != ":":
            raise ValueError(f"{text!r}: an IPv6 host goes in brackets, e.g. [::1]:8000")
        host, port_text = value[1:end], value[end + 2:]
    elif ":" in value:
        host, _, port_text = value.rpartition(":")
        if ":" in host:
            raise ValueError(f"{text!r}: put an IPv6 host in brackets, e.g. [::1]:8000")
    if not host:
        raise ValueError(f"{text!r}: the host before ':' is empty")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{text!r}: expected [HOST:]PORT, e.g. 8000 or 0.0.0.0:8000") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{text!r}: port must be 0-65535")
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def check_exposure(host: str, token: str | None, debug_inject: bool) -> None:
    """Refuse an address other hosts can reach without a token, and injection off loopback."""
    if debug_inject and not is_loopback(host):
        raise UsageError(f"--debug-inject works only on a loopback address (127.0.0.1, ::1), "
                         f"not {host}")
    if not is_loopback(host) and not token:
        raise UsageError(f"--web {host} is reachable from other hosts: give --web-token (or "
                         "$TRAFFIC_WEB_TOKEN), which every request must then carry")


def _listen(text: str) -> tuple[str, int]:
    try:
        return parse_listen(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_web_options(add: Callable[..., Any]) -> None:
    """The web options, shared by the capture run and `serve` (the extra is not needed to
    parse them: --web without it is refused when the run starts, naming the fix)."""
    add("--web", type=_listen, metavar="[HOST:]PORT",
        help="serve the live dashboard, JSON API and event stream (the 'web' extra); HOST "
             f"defaults to {WEB_DEFAULT_HOST} (loopback); any other address needs --web-token")
    add("--web-token", metavar="TOKEN",
        help="token every web request must then carry (Authorization: Bearer, or open the "
             f"page once with ?token=TOKEN); required off loopback. Every user sees a command "
             f"line: prefer ${WEB_TOKEN_ENV} or --web-token-file")
    add("--web-token-file", type=Path, metavar="PATH",
        help=f"read the token from the first line of PATH (default: ${WEB_TOKEN_ENV}, then "
             f"systemd's credential '{WEB_TOKEN_CREDENTIAL}')")
    add("--web-history", type=argtypes.seconds, default=WEB_HISTORY_SECONDS, metavar="SECONDS",
        help=f"closed windows the web keeps in memory, loaded from the CSV at start "
             f"(default {WEB_HISTORY_SECONDS})")


def web_token(args: argparse.Namespace) -> str | None:
    """The token from --web-token, --web-token-file, $TRAFFIC_WEB_TOKEN or the service's
    credential, in that order (None: no token)."""
    return web_token_and_source(args)[0]


def web_token_and_source(args: argparse.Namespace) -> tuple[str | None, str | None]:
    return find_secret("the web token", args.web_token, args.web_token_file, WEB_TOKEN_ENV,
                       WEB_TOKEN_CREDENTIAL)
