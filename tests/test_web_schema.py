"""schemathesis against the API's own OpenAPI spec: no generated request gets a 500.

The event stream never ends, so it is left to test_web's stream test; everything else,
injection included, is generated from the spec.
"""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402

from tests.web_helpers import T0, store_with, window_rows  # noqa: E402
from traffic_capture.web.api import WebApp  # noqa: E402

injected: list[object] = []
STATE = store_with([window_rows(T0 + 5 * k, {(f"10.0.0.{k}", "in"): [k, 1, 2, 3, 4],
                                             ("2001:db8::5", "out"): [0, 0, 0, 0, k]})
                    for k in range(10)])
APP = WebApp(STATE, lambda: {"mode": "test", "packets_seen": 1},
             inject=lambda request: injected.append(request) or request.count).app
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(path="/api/stream")


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case) -> None:
    response = case.call()
    assert response.status_code < 500, (case.method, case.path, case.query, response.text)
