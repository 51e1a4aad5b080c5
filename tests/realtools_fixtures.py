"""Pytest fixtures and requirements for the real-capture tests (the lab, the tool checks).

Why a module of its own: other test modules can use the `lab` fixture by importing it
(`from tests.realtools_fixtures import lab`) or a conftest can register it, without pulling in
the capture tests themselves.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import netns
from tests import realtools_traffic as rt
from tests.requirements import needs_module, needs_netns, needs_tools


def require_lab() -> None:
    """Root, network namespaces, the lab's capture tools and its traffic tools (CI installs
    them all: tests/requirements.py says what a missing one does)."""
    needs_netns()
    needs_tools(*netns.REQUIRED_TOOLS, *rt.TRAFFIC_TOOLS)
    needs_module("pyftpdlib")


@pytest.fixture
def lab() -> Iterator[netns.Lab]:
    """A fresh two-namespace lab for one test, torn down whatever the test's outcome."""
    require_lab()
    with netns.netns_lab() as made:
        yield made
