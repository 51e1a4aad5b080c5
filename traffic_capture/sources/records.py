"""The one shape every capture source produces."""

from __future__ import annotations

# (timestamp in integer nanoseconds since the epoch, pcap link type, frame bytes)
Record = tuple[int, int, bytes]
