"""What a test needs from the machine (root, a tool, a Python module) and the one policy when it
is missing: a skip with the install hint on a developer's machine, a failure with the same hint
in CI (`TRAFFIC_CAPTURE_CI=1`, exported by .ci/run), which installs everything, so that a skip
there would hide a broken set-up. tests/conftest.py turns every skip into a failure in CI, also
those of pytest.importorskip and skipif.

Needs that a developer may want to leave out have a marker (pyproject.toml declares them, e.g.
`-m "not root"`), and a test that calls a helper below without its marker fails: the markers
then stay true where they matter.
"""

from __future__ import annotations

import importlib
import os
import shutil
from types import ModuleType
from typing import NoReturn

import pytest

IN_CI = os.environ.get("TRAFFIC_CAPTURE_CI") == "1"

# The Debian package of each tool the tests drive (.ci/run installs them all).
DEBIAN_PACKAGES = {
    "ip": "iproute2", "ss": "iproute2", "tcpdump": "tcpdump", "tshark": "tshark",
    "editcap": "tshark", "mergecap": "tshark", "capinfos": "tshark", "ping": "iputils-ping",
    "curl": "curl", "dig": "bind9-dnsutils", "dnsmasq": "dnsmasq-base", "chattr": "e2fsprogs",
    "setpriv": "util-linux", "soffice": "libreoffice-calc", "pdftotext": "poppler-utils",
    "chromium": "chromium", "chromedriver": "chromium-driver", "/usr/bin/time": "time",
    "strace": "strace", "Xvfb": "xvfb", "xdotool": "xdotool", "import": "imagemagick",
    "identify": "imagemagick", "systemd-analyze": "systemd",
}

# The marker that a test needing this tool must carry, so that `-m "not <marker>"` leaves it out.
MARKER_OF_TOOL = {"soffice": "libreoffice", "chromium": "browser", "chromedriver": "browser",
                  "Xvfb": "xvfb", "xdotool": "xvfb"}

# What each marker needs, checked before each test that carries it (tests/conftest.py).
TOOLS_OF_MARKER = {"libreoffice": ("soffice",), "browser": ("chromium", "chromedriver"),
                   "xvfb": ("Xvfb", "xdotool"), "netns": ("ip",)}

# The markers of the test running now (set by tests/conftest.py; None outside a test, e.g. in
# a benchmark that borrows a helper).
running_markers: set[str] | None = None


def missing(what: str) -> NoReturn:
    """The single exit for a missing need: a failure in CI, a skip elsewhere."""
    if IN_CI:
        pytest.fail(f"{what} (TRAFFIC_CAPTURE_CI=1: CI must have it)", pytrace=False)
    pytest.skip(what)


def declared(marker: str) -> None:
    """Fail a test that needs what `marker` stands for but does not carry it."""
    if running_markers is not None and marker not in running_markers:
        pytest.fail(f"this test needs what @pytest.mark.{marker} declares: mark it",
                    pytrace=False)


def needs_root() -> None:
    declared("root")
    if os.geteuid() != 0:
        missing("needs root (network namespaces, packet sockets, chattr, mount): "
                "sudo bash .ci/run, or leave it out with -m 'not root'")


def needs_netns() -> None:
    """A network namespace of the test's own: root and iproute2."""
    declared("netns")
    needs_root()
    needs_tools("ip")


def tool(name: str) -> str:
    """The path of a tool the test runs (a path such as /usr/bin/time is looked up as is)."""
    marker = MARKER_OF_TOOL.get(name)
    if marker:
        declared(marker)
    folder, _, command = name.rpartition("/")
    found = shutil.which(command, path=folder or None)
    if found is None:
        package = DEBIAN_PACKAGES.get(name, name)
        missing(f"needs {name} (Debian package {package}; .ci/run installs it)")
    return found


def needs_tools(*names: str) -> None:
    for name in names:
        tool(name)


def needs_module(name: str, extra: str = "test") -> ModuleType:
    """A Python module of a pip extra, imported (pytest.importorskip under this policy)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"needs the Python module {name} (.venv/bin/pip install -e '.[{extra}]')")
