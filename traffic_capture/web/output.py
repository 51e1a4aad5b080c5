"""--web: the dashboard, JSON API and event stream as an output of the capture run.

This module states the options and builds the sink; the sink (web/sink.py, which needs numpy
and, once open, FastAPI) is imported only when --web is given.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from traffic_capture.errors import UsageError
from traffic_capture.secrets import FROM_FILE
from traffic_capture.sinks import Credential, Output, OutputContext, Sink
from traffic_capture.web import (
    WEB_TOKEN_CREDENTIAL,
    WebSettings,
    add_web_options,
    check_exposure,
    web_token_and_source,
)


class WebOutput(Output[WebSettings]):
    name = "web"
    title = "web dashboard"

    def add_options(self, group: argparse._ActionsContainer) -> None:
        add_web_options(group.add_argument)
        group.add_argument(
            "--debug-inject", action="store_true",
            help="with --web on loopback: POST /api/debug/inject feeds synthetic packets "
                 "through the pipeline (for tests)")

    def settings(self, args: argparse.Namespace) -> WebSettings | None:
        if args.debug_inject and not args.web:
            raise UsageError("--debug-inject needs --web")
        if not args.web:
            return None
        host, port = args.web
        token, token_from = web_token_and_source(args)
        check_exposure(host, token, args.debug_inject)
        # --history is the history output's option (absent from a parser without it).
        return WebSettings(host, port, token, args.web_history, args.out, args.debug_inject,
                           token_from, args.web_token_file, getattr(args, "history", None))

    def build(self, settings: WebSettings, context: OutputContext) -> Sink:
        from traffic_capture.web.sink import WebSink

        return WebSink.for_capture(settings, context)

    secret_options = ("--web-token", "--web-token-file")

    def service_credentials(self, settings: WebSettings) -> list[Credential]:
        """The token goes to a root-only file the unit loads: the one --web-token-file names
        (written with the token given, if one was given besides), else SERVICE_TOKEN_FILE."""
        if settings.token is None:
            return []
        if settings.token_from == FROM_FILE and settings.token_file is not None:
            return [Credential(WEB_TOKEN_CREDENTIAL, settings.token_file)]
        return [Credential(WEB_TOKEN_CREDENTIAL, settings.token_file or SERVICE_TOKEN_FILE,
                           settings.token)]


# Where `service-unit` keeps the token of a dashboard open to other hosts (root's alone).
SERVICE_TOKEN_FILE = Path("/etc/traffic-capture/web-token")

OUTPUT = WebOutput()
