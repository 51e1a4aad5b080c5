"""Pytest fixtures and skips for the real-capture tests (the lab, the tool checks).

Why a module of its own: other test modules can use the `lab` fixture by importing it
(`from tests.realtools_fixtures import lab`) or a conftest can register it, without pulling in
the capture tests themselves.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import netns
from tests import realtools_traffic as rt


def require_lab() -> None:
    """Skip when the machine can't build a lab (no root, no ip/tcpdump/tshark); fail when only
    a traffic tool is missing, since CI installs those and a skip would hide a broken setup."""
    reason = netns.unavailable_reason()
    if reason:
        pytest.skip(f"real-capture tests: {reason}")
    missing = rt.missing_traffic_tools()
    if missing:
        pytest.fail("real-capture tests need: " + ", ".join(missing))


@pytest.fixture
def lab() -> Iterator[netns.Lab]:
    """A fresh two-namespace lab for one test, torn down whatever the test's outcome."""
    require_lab()
    with netns.netns_lab() as made:
        yield made
