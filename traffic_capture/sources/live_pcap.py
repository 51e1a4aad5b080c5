"""Live capture through libpcap/Npcap (via scapy): the portable back end, and Windows' only one.

It yields exactly what the Linux back end yields for the same packets (a contract test checks
this on Linux, where both run).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from traffic_capture.frames import Batch, Record, batch_of_frames
from traffic_capture.rules import SNAPLEN_COUNTING

SNAPLEN = SNAPLEN_COUNTING  # by default, as the Linux back end (rules.py says why)
BATCH = 1024  # packets taken from one handle at a time
TIMEOUT_MS = 200


def _open_pcap(interface: str, snaplen: int) -> Any:
    from scapy.config import conf

    conf.use_pcap = True
    from scapy.arch.libpcap import open_pcap

    return open_pcap(interface, snaplen=snaplen, promisc=False, to_ms=TIMEOUT_MS)


class PcapLiveSource:
    """libpcap/Npcap handles on the given devices, with an optional kernel (BPF) filter."""

    live = True

    def __init__(self, interfaces: list[str], description: str, bpf_filter: str | None,
                 snaplen: int = SNAPLEN) -> None:
        self.interfaces = interfaces
        self.description = description
        self._handles: list[Any] = []
        self._drops = 0  # at close, the handles' last figures
        # The status thread reads the figures while the capture thread may close the handles.
        self._lock = threading.Lock()
        try:
            for name in interfaces:
                handle = _open_pcap(name, snaplen)
                handle.setnonblock(True)  # select() says when to read; next() must not wait
                if bpf_filter:
                    handle.setfilter(bpf_filter)
                self._handles.append(handle)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        with self._lock:
            if self._handles:
                self._drops = self._read_drops()
            for handle in self._handles:
                handle.close()
            self._handles = []

    def progress(self) -> None:
        return None

    def warnings(self) -> list[str]:
        return []

    def kernel_drops(self) -> int:
        with self._lock:
            return self._read_drops() if self._handles else self._drops

    def _read_drops(self) -> int:
        from ctypes import byref

        from scapy.libs.winpcapy import pcap_stat, pcap_stats

        drops = 0
        for handle in self._handles:
            stats = pcap_stat()
            if pcap_stats(handle.pcap, byref(stats)) == 0:
                drops += stats.ps_drop + stats.ps_ifdrop
        return drops

    def batches(self, stop: threading.Event) -> Iterator[Batch | None]:
        from scapy.automaton import select_objects

        handles = self._handles
        readers = [_Readable(handle, handle.datalink()) for handle in handles]
        while not stop.is_set():
            ready = select_objects(readers, TIMEOUT_MS / 1000)
            if not ready:
                yield None
                continue
            for reader in ready:
                records: list[Record] = []
                for _ in range(BATCH):
                    ts, frame = reader.handle.next()
                    if frame is None:
                        break
                    # libpcap's timestamps are whole microseconds; round away the float error.
                    records.append((round(ts * 1_000_000) * 1000, reader.linktype, frame))
                if records:
                    yield batch_of_frames(records)


class _Readable:
    """What scapy's select_objects needs: a fileno (Linux) or an event handle (Windows)."""

    def __init__(self, handle: Any, linktype: int) -> None:
        self.handle = handle
        self.linktype = linktype

    def fileno(self) -> int:
        return int(self.handle.fileno())
