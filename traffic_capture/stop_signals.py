"""The signals that end a command (Ctrl+C, SIGTERM from systemctl stop, Windows' Ctrl+Break)
and SIGHUP (logrotate), handled alike by every long-running command."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGBREAK")  # those this platform has


def handle_signals(on_stop: Callable[[], None],
                   on_hangup: Callable[[], None] | None = None) -> Callable[[], None]:
    """Call `on_stop` on a stop signal, `on_hangup` on SIGHUP (None: SIGHUP stops too, as for
    a command with nothing to reopen); returns what puts the previous handlers back."""
    def stop(signum: int, frame: Any) -> None:
        on_stop()

    def hangup(signum: int, frame: Any) -> None:
        (on_hangup or on_stop)()

    previous = {}
    for name in (*STOP_SIGNALS, "SIGHUP"):
        number = getattr(signal, name, None)
        if number is not None:
            previous[number] = signal.signal(number, hangup if name == "SIGHUP" else stop)

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)

    return restore
