"""Standard input and named pipes: a capture read once, as it comes, whose format is told
from its first bytes before the reader gets them."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from traffic_capture.sources.file_format import HEAD_BYTES

STDIN = Path("-")
PEEK_BYTES = 64 * 1024


class Stream(io.RawIOBase):
    """A pipe (standard input, a named pipe) read once, its first bytes peeked: the format is
    told from them, then the reader gets them again before the rest."""

    def __init__(self, raw: io.RawIOBase) -> None:
        self._raw = raw
        self._prefix = b""
        while len(self._prefix) < HEAD_BYTES:
            more = raw.read(PEEK_BYTES)
            if not more:
                break
            self._prefix += more

    def peeked(self) -> bytes:
        return self._prefix

    def close(self) -> None:
        self._raw.close()
        super().close()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._prefix:
            count = min(len(view), len(self._prefix))
            view[:count] = self._prefix[:count]
            self._prefix = self._prefix[count:]
            return count
        return self._raw.readinto(view) or 0
