"""A private X server (Xvfb) on a display of its own, for the viewer's tests and benchmark."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator


@contextlib.contextmanager
def private_display() -> Iterator[str]:
    """Xvfb on the first free display, which it reports itself (-displayfd); the display's
    name, e.g. ':3'. The server is stopped on the way out."""
    read, write = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24",
                               "-nolisten", "tcp"], pass_fds=(write,),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as number:
        name = ":" + number.readline().strip()
    try:
        yield name
    finally:
        server.terminate()
        server.wait(10)
