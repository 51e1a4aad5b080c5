"""Addresses in the three forms the package uses: packed bytes (as headers carry them), the
(is6, hi, lo) columns of the batch arrays (an IPv4 address in the low 64 bits), and text.

AddressText names the columns of every output that shows clients (the CSV's windows, the
packet log, the viewer), so that an address is written the same way everywhere.
"""

from __future__ import annotations

import socket

import numpy as np


def address_text(address: bytes) -> str:
    """Compressed text form, as `ip addr`, tshark and Python's ipaddress write it."""
    family = socket.AF_INET if len(address) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, address)


def split_address(address: bytes) -> tuple[int, int]:
    """(hi, lo) 64-bit halves of an address as the batch arrays hold it (IPv4 in lo)."""
    if len(address) == 4:
        return 0, int.from_bytes(address, "big")
    return int.from_bytes(address[:8], "big"), int.from_bytes(address[8:], "big")


def join_address(is6: bool, hi: int, lo: int) -> bytes:
    if is6:
        return hi.to_bytes(8, "big") + lo.to_bytes(8, "big")
    return lo.to_bytes(4, "big")


class AddressText:
    """Address texts for (is6, hi, lo) columns, each distinct address converted once and
    remembered: a few hosts send most packets, and the same clients come back window after
    window. At most `limit` are remembered (then forgotten at once), so that a scan of a
    large network does not grow memory for ever."""

    def __init__(self, limit: int = 65536) -> None:
        self.limit = limit
        # An IPv4 address by its int, an IPv6 one by (hi, lo).
        self._known: dict[int | tuple[int, int], str] = {}

    def __len__(self) -> int:
        """Addresses remembered now."""
        return len(self._known)

    def __call__(self, is6: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> list[str]:
        keys: list[int] | list[int | tuple[int, int]]
        if is6.any():
            keys = [(h, low) if six else low
                    for six, h, low in zip(is6.tolist(), hi.tolist(), lo.tolist(), strict=True)]
        else:
            keys = lo.tolist()
        known = self._known
        return [known.get(key) or self._learn(key) for key in keys]

    def _learn(self, key: int | tuple[int, int]) -> str:
        if len(self._known) > self.limit:
            self._known.clear()
        is6 = isinstance(key, tuple)
        hi, lo = key if isinstance(key, tuple) else (0, key)
        text = self._known[key] = address_text(join_address(is6, hi, lo))
        return text
