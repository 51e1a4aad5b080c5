"""Interfaces that go down or away during a live capture (a VPN or veth restart, an adapter
reset or a laptop's sleep), the same way on both back ends: said once, tried again every
REOPEN_SECONDS while windows go on closing by the clock, said again when back. With
--no-reopen the capture stops instead (InterfaceLost: exit 1, every row counted written)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

REOPEN_SECONDS = 1.0  # between attempts to capture again on a lost interface

H = TypeVar("H")


class InterfaceLost(OSError):
    """An interface went down or away and the run was asked not to wait for it."""


class LostInterfaces(Generic[H]):
    """The back end's lost interfaces. `open_again(name)` is its capture on that interface
    again, or None while the interface is not back (absent, or there but down)."""

    def __init__(self, warn: Callable[[str], None], reopen: bool,
                 open_again: Callable[[str], H | None]) -> None:
        self._warn, self._reopen, self._open_again = warn, reopen, open_again
        self._due: dict[str, float] = {}  # interface -> when to try it again (monotonic)

    def __bool__(self) -> bool:
        return bool(self._due)

    def lose(self, name: str, reason: str = "") -> None:
        """The capture on `name` failed and is closed; raises InterfaceLost with --no-reopen.
        `reason`: what the capture library said, if it said something."""
        said = f" ({reason})" if reason else ""
        if not self._reopen:
            raise InterfaceLost(f"{name} went down or away{said} (--no-reopen)")
        self._due[name] = time.monotonic() + REOPEN_SECONDS
        self._warn(f"{name} went down or away{said}: nothing is captured on it until it is "
                   "back, then capture resumes on it; rows counted so far are written as usual")

    def back(self) -> list[H]:
        """Captures on the lost interfaces that are back, opened again now."""
        now, opened = time.monotonic(), []
        for name, due in list(self._due.items()):
            if now < due:
                continue
            capture = self._open_again(name)
            if capture is None:
                self._due[name] = now + REOPEN_SECONDS
                continue
            del self._due[name]
            opened.append(capture)
            self._warn(f"{name} is back: capturing on it again")
        return opened
