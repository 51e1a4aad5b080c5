"""The program's name, its exit codes and the one root of every error a user must act on.

A leaf: every layer raises these, and only the command line turns them into a line on stderr
and an exit status, so no layer needs to know which layer will report it.
"""

from __future__ import annotations

PROG = "traffic-capture"
EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


class TrafficCaptureError(Exception):
    """Something the user must fix, said in one line; `exit_code` is the command's exit status.

    Subclasses name the kind (a bad file, an output that cannot be written...); the edge
    catches this root alone.
    """

    exit_code = EXIT_RUNTIME


class UsageError(TrafficCaptureError):
    """The command line asks for something impossible (a bad address, filter, interface...)."""

    exit_code = EXIT_USAGE
