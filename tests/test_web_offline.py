"""The web works without internet (issue 16, 5): the page, its script and its style load nothing
from another host, and there is no /docs page (FastAPI's loads Swagger UI from a CDN and was
blank offline); the OpenAPI schema stays at /openapi.json."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from tests.web_helpers import WebProcess, get  # noqa: E402

STATIC = Path(__file__).resolve().parents[1] / "traffic_capture" / "web" / "static"


def test_no_docs_page_and_the_schema_is_served(tmp_path: Path) -> None:
    web = WebProcess(["serve", "--csv", str(tmp_path / "traffic.csv"), "--web", "127.0.0.1:0"])
    try:
        for page in ("docs", "redoc", "docs/oauth2-redirect"):
            status, _ = get(web.url + page)
            assert status == 404, page
        status, schema = get(web.url + "openapi.json")
        assert status == 200
        assert schema["openapi"].startswith("3.")
        assert {"/api/status", "/api/clients", "/api/clients/{ip}", "/api/stream"} <= set(
            schema["paths"])
        status, page = get(web.url)
        assert status == 200
        sources = re.findall(r'(?:src|href)="([^"]+)"', page)
        assert sources and not [s for s in sources if re.match(r"(https?:)?//", s)], sources
    finally:
        assert web.stop() == 0


@pytest.mark.parametrize("name", ["index.html", "app.js", "app.css"])
def test_the_page_names_no_other_host(name: str) -> None:
    text = (STATIC / name).read_text(encoding="utf-8")
    assert not re.findall(r"https?://", text), name
